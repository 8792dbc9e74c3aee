//! age's post-quantum recipients and identities (`age1pq1...`, `AGE-SECRET-KEY-PQ-1...`), as
//! age 1.3 and sops 3.12 write them; the `age` crate 0.12 has none.
//!
//! The construction is the one of C2SP's age.md: the 16-byte file key is sealed with HPKE
//! (RFC 9180) in base mode, KDF HKDF-SHA256, AEAD ChaCha20-Poly1305, `info` the label
//! `age-encryption.org/mlkem768x25519`, to a public key of the MLKEM768-X25519 KEM (X-Wing:
//! ML-KEM-768 and X25519, the two shared secrets combined with SHA3-256). The stanza is
//! `-> mlkem768x25519 <enc>` with the sealed file key as its body. An identity is a 32-byte seed
//! that SHAKE256 expands into the ML-KEM-768 seed (d, z) and the X25519 scalar.
//!
//! The pieces are those the `age` crate already builds on: `hpke` for the key schedule and the
//! AEAD, RustCrypto's `ml-kem` (FIPS 203), `x25519-dalek` and `sha3`. Tested against C2SP's
//! CCTV vectors (core/tests/cctv.rs) and the real age 1.3 (tests/age_pq.rs).

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use age_core::format::{FileKey, Stanza};
use age_core::primitives::{bech32_decode, bech32_encode, hpke_open, hpke_seal};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use hpke::generic_array::GenericArray;
use hpke::generic_array::typenum::{U32, Unsigned};
use hpke::kem::SharedSecret;
use hpke::{Deserializable, HpkeError, Serializable};
use ml_kem::kem::{Decapsulate, Encapsulate};
use ml_kem::{EncodedSizeUser, KemCore, MlKem768};
use sha3::digest::{ExtendableOutput, Update, XofReader};
use sha3::{Digest, Sha3_256, Shake256};
use x25519_dalek::{PublicKey as X25519Public, StaticSecret};
use zeroize::{Zeroize, Zeroizing};

/// The stanza's type.
const TAG: &str = "mlkem768x25519";
/// HPKE's `info`.
const LABEL: &[u8] = b"age-encryption.org/mlkem768x25519";
/// X-Wing's label in its combiner: the ASCII art `\./` over `/^\`.
const XWING_LABEL: &[u8] = b"\\.//^\\";
const RECIPIENT_HRP: &str = "age1pq";
const IDENTITY_HRP: &str = "age-secret-key-pq-";
/// What a file key sealed with ChaCha20-Poly1305 takes: 16 bytes and the tag.
const BODY_BYTES: usize = 16 + 16;

type EncapsulationKey = <MlKem768 as KemCore>::EncapsulationKey;
type DecapsulationKey = <MlKem768 as KemCore>::DecapsulationKey;
type PqKeyBytes = <EncapsulationKey as EncodedSizeUser>::EncodedSize;
type PqCiphertextBytes = <MlKem768 as KemCore>::CiphertextSize;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PqKeyError {
    #[error("not a post-quantum age recipient (age1pq1...)")]
    Recipient,
    #[error("not a post-quantum age identity (AGE-SECRET-KEY-PQ-1...)")]
    Identity,
}

/// The KEM's private key: the seed, and what it expands to.
#[derive(Clone)]
struct Private {
    seed: Zeroizing<[u8; 32]>,
    pq: DecapsulationKey,
    x25519: StaticSecret,
    public: Public,
}

impl PartialEq for Private {
    fn eq(&self, other: &Self) -> bool {
        *self.seed == *other.seed
    }
}

impl Eq for Private {}

impl Private {
    /// X-Wing's key expansion: SHAKE256(seed) gives 64 bytes of ML-KEM seed (d, then z) and
    /// then the X25519 scalar (every 32 bytes are one, clamped when used).
    fn expand(seed: [u8; 32]) -> Private {
        let seed = Zeroizing::new(seed);
        let mut xof = Shake256::default().chain(seed.as_slice()).finalize_xof();
        let mut expanded = Zeroizing::new([0u8; 96]);
        xof.read(expanded.as_mut());
        let (mut d, mut z, mut scalar) = (ml_kem::B32::default(), ml_kem::B32::default(), Zeroizing::new([0u8; 32]));
        d.copy_from_slice(&expanded[..32]);
        z.copy_from_slice(&expanded[32..64]);
        scalar.copy_from_slice(&expanded[64..]);
        let (pq, pq_public) = MlKem768::generate_deterministic(&d, &z);
        d.as_mut_slice().zeroize();
        z.as_mut_slice().zeroize();
        let x25519 = StaticSecret::from(*scalar);
        let public = Public { pq: pq_public, x25519: X25519Public::from(&x25519) };
        Private { seed, pq, x25519, public }
    }
}

impl Serializable for Private {
    type OutputSize = U32;

    fn write_exact(&self, buf: &mut [u8]) {
        buf.copy_from_slice(self.seed.as_slice());
    }
}

impl Deserializable for Private {
    fn from_bytes(encoded: &[u8]) -> Result<Self, HpkeError> {
        let seed = encoded.try_into().map_err(|_| HpkeError::IncorrectInputLength(32, encoded.len()))?;
        Ok(Private::expand(seed))
    }
}

/// The KEM's public key: ML-KEM-768's encapsulation key, then the X25519 point.
#[derive(Clone, Debug, PartialEq)]
struct Public {
    pq: EncapsulationKey,
    x25519: X25519Public,
}

impl Eq for Public {}

/// ML-KEM's shared key, moved into memory that is wiped on drop (and the original wiped).
fn wiped(mut shared: ml_kem::SharedKey<MlKem768>) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(shared.as_slice());
    shared.as_mut_slice().zeroize();
    out
}

impl Serializable for Public {
    type OutputSize = hpke::generic_array::typenum::Sum<PqKeyBytes, U32>;

    fn write_exact(&self, buf: &mut [u8]) {
        let (pq, x25519) = buf.split_at_mut(PqKeyBytes::USIZE);
        pq.copy_from_slice(&self.pq.as_bytes());
        x25519.copy_from_slice(self.x25519.as_bytes());
    }
}

impl Deserializable for Public {
    fn from_bytes(encoded: &[u8]) -> Result<Self, HpkeError> {
        let want = Self::OutputSize::USIZE;
        if encoded.len() != want {
            return Err(HpkeError::IncorrectInputLength(want, encoded.len()));
        }
        let (pq_bytes, x25519) = encoded.split_at(PqKeyBytes::USIZE);
        let pq_bytes =
            ml_kem::Encoded::<EncapsulationKey>::try_from(pq_bytes).map_err(|_| HpkeError::ValidationError)?;
        let pq = EncapsulationKey::from_bytes(&pq_bytes);
        // FIPS 203's modulus check: every coefficient below q, i.e. the key encodes again to
        // the same bytes (as Go's crypto/mlkem checks).
        if pq.as_bytes() != pq_bytes {
            return Err(HpkeError::ValidationError);
        }
        let x25519: [u8; 32] = x25519.try_into().map_err(|_| HpkeError::ValidationError)?;
        Ok(Public { pq, x25519: X25519Public::from(x25519) })
    }
}

/// The KEM's `enc`: ML-KEM-768's ciphertext, then the ephemeral X25519 point.
#[derive(Clone)]
struct Encapsulated {
    pq: ml_kem::Ciphertext<MlKem768>,
    x25519: [u8; 32],
}

impl Serializable for Encapsulated {
    type OutputSize = hpke::generic_array::typenum::Sum<PqCiphertextBytes, U32>;

    fn write_exact(&self, buf: &mut [u8]) {
        let (pq, x25519) = buf.split_at_mut(PqCiphertextBytes::USIZE);
        pq.copy_from_slice(&self.pq);
        x25519.copy_from_slice(&self.x25519);
    }
}

impl Deserializable for Encapsulated {
    fn from_bytes(encoded: &[u8]) -> Result<Self, HpkeError> {
        let want = Self::OutputSize::USIZE;
        if encoded.len() != want {
            return Err(HpkeError::IncorrectInputLength(want, encoded.len()));
        }
        let (pq, x25519) = encoded.split_at(PqCiphertextBytes::USIZE);
        Ok(Encapsulated {
            pq: ml_kem::Ciphertext::<MlKem768>::try_from(pq).map_err(|_| HpkeError::ValidationError)?,
            x25519: x25519.try_into().map_err(|_| HpkeError::ValidationError)?,
        })
    }
}

/// X-Wing's combiner: SHA3-256(ss_M || ss_X || ct_X || pk_X || label).
fn combine(pq_shared: &[u8], x25519_shared: &[u8], x25519_enc: &[u8], x25519_public: &[u8]) -> SharedSecret<XWing> {
    let digest = Sha3_256::new()
        .chain_update(pq_shared)
        .chain_update(x25519_shared)
        .chain_update(x25519_enc)
        .chain_update(x25519_public)
        .chain_update(XWING_LABEL)
        .finalize();
    SharedSecret(GenericArray::clone_from_slice(&digest))
}

/// MLKEM768-X25519 as an HPKE KEM (its id in draft-ietf-hpke-pq: 0x647a).
struct XWing;

impl hpke::Kem for XWing {
    type PublicKey = Public;
    type PrivateKey = Private;
    type EncappedKey = Encapsulated;
    type NSecret = U32;
    const KEM_ID: u16 = 0x647a;

    fn sk_to_pk(sk: &Private) -> Public {
        sk.public.clone()
    }

    /// Not used by age (identities are seeds); draft-ietf-hpke-pq's SHAKE256 derivation would
    /// go here.
    fn derive_keypair(_ikm: &[u8]) -> (Private, Public) {
        unimplemented!("age does not derive MLKEM768-X25519 keys from input keying material")
    }

    fn decap(sk: &Private, sender: Option<&Public>, enc: &Encapsulated) -> Result<SharedSecret<Self>, HpkeError> {
        if sender.is_some() {
            return Err(HpkeError::DecapError);
        }
        // ML-KEM rejects implicitly: a wrong ciphertext gives a wrong secret, found by the AEAD.
        let pq_shared = wiped(sk.pq.decapsulate(&enc.pq).map_err(|()| HpkeError::DecapError)?);
        let x25519_shared = sk.x25519.diffie_hellman(&X25519Public::from(enc.x25519));
        // The all-zero secret of a low-order point is refused, as RFC 7748 and age's Go say.
        if !x25519_shared.was_contributory() {
            return Err(HpkeError::DecapError);
        }
        Ok(combine(pq_shared.as_slice(), x25519_shared.as_bytes(), &enc.x25519, sk.public.x25519.as_bytes()))
    }

    fn encap<R: hpke::rand_core::CryptoRng + hpke::rand_core::RngCore>(
        pk: &Public,
        sender: Option<(&Private, &Public)>,
        rng: &mut R,
    ) -> Result<(SharedSecret<Self>, Encapsulated), HpkeError> {
        if sender.is_some() {
            return Err(HpkeError::EncapError);
        }
        let (pq, pq_shared) = pk.pq.encapsulate(rng).map_err(|()| HpkeError::EncapError)?;
        let pq_shared = wiped(pq_shared);
        let mut scalar = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(scalar.as_mut());
        let ephemeral = StaticSecret::from(*scalar);
        let x25519 = X25519Public::from(&ephemeral).to_bytes();
        let x25519_shared = ephemeral.diffie_hellman(&pk.x25519);
        if !x25519_shared.was_contributory() {
            return Err(HpkeError::EncapError);
        }
        let shared = combine(pq_shared.as_slice(), x25519_shared.as_bytes(), &x25519, pk.x25519.as_bytes());
        Ok((shared, Encapsulated { pq, x25519 }))
    }
}

/// A post-quantum age recipient, `age1pq1...`.
#[derive(Clone)]
pub struct HybridRecipient(Public);

impl FromStr for HybridRecipient {
    type Err = PqKeyError;

    fn from_str(s: &str) -> Result<Self, PqKeyError> {
        // Lower case only, as age's recipients are written.
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(PqKeyError::Recipient);
        }
        let bytes: Vec<u8> = bech32_decode(
            s,
            |_| PqKeyError::Recipient,
            |hrp| (hrp.as_str() == RECIPIENT_HRP).then_some(()).ok_or(PqKeyError::Recipient),
            |_, bytes| Ok(bytes.collect()),
        )?;
        Public::from_bytes(&bytes).map(HybridRecipient).map_err(|_| PqKeyError::Recipient)
    }
}

impl fmt::Display for HybridRecipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hrp = bech32::Hrp::parse_unchecked(RECIPIENT_HRP);
        f.write_str(&bech32_encode(hrp, &self.0.to_bytes()))
    }
}

impl fmt::Debug for HybridRecipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HybridRecipient({self})")
    }
}

impl age::Recipient for HybridRecipient {
    fn wrap_file_key(&self, file_key: &FileKey) -> Result<(Vec<Stanza>, HashSet<String>), age::EncryptError> {
        // age's trait gives no randomness source; like age itself, use the OS's.
        let (enc, body) = hpke_seal::<XWing, _>(&self.0, LABEL, file_key.expose_secret(), &mut hpke::rand_core::OsRng);
        let stanza = Stanza { tag: TAG.to_owned(), args: vec![STANDARD_NO_PAD.encode(enc.to_bytes())], body };
        // The label keeps it from being mixed with classic recipients, which would give away
        // its post-quantum security (age's rule; the `age` crate refuses mixed labels).
        Ok((vec![stanza], HashSet::from(["postquantum".to_owned()])))
    }
}

/// A post-quantum age identity, `AGE-SECRET-KEY-PQ-1...`: a 32-byte seed.
pub struct HybridIdentity(Private);

impl HybridIdentity {
    /// A new identity from 32 bytes of the caller's randomness.
    pub fn generate(rng: &mut (impl rand::CryptoRng + ?Sized)) -> HybridIdentity {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        HybridIdentity(Private::expand(*seed))
    }

    pub fn to_public(&self) -> HybridRecipient {
        HybridRecipient(self.0.public.clone())
    }

    /// The identity in upper case, as age-keygen writes it. A secret: never log it.
    pub fn to_secret_string(&self) -> Zeroizing<String> {
        let hrp = bech32::Hrp::parse_unchecked(IDENTITY_HRP);
        Zeroizing::new(bech32_encode(hrp, self.0.seed.as_slice()).to_uppercase())
    }
}

impl FromStr for HybridIdentity {
    type Err = PqKeyError;

    fn from_str(s: &str) -> Result<Self, PqKeyError> {
        let seed: Zeroizing<Vec<u8>> = bech32_decode(
            s,
            |_| PqKeyError::Identity,
            |hrp| hrp.as_str().eq_ignore_ascii_case(IDENTITY_HRP).then_some(()).ok_or(PqKeyError::Identity),
            |_, bytes| Ok(Zeroizing::new(bytes.collect())),
        )?;
        let seed: [u8; 32] = seed.as_slice().try_into().map_err(|_| PqKeyError::Identity)?;
        Ok(HybridIdentity(Private::expand(seed)))
    }
}

impl fmt::Debug for HybridIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HybridIdentity([REDACTED], {})", self.to_public())
    }
}

impl age::Identity for HybridIdentity {
    fn unwrap_stanza(&self, stanza: &Stanza) -> Option<Result<FileKey, age::DecryptError>> {
        if stanza.tag != TAG {
            return None;
        }
        // Malformed stanzas fail the header (age's rule), whoever they were for.
        let [enc] = stanza.args.as_slice() else { return Some(Err(age::DecryptError::InvalidHeader)) };
        let Some(enc) = STANDARD_NO_PAD.decode(enc).ok().and_then(|bytes| Encapsulated::from_bytes(&bytes).ok()) else {
            return Some(Err(age::DecryptError::InvalidHeader));
        };
        if stanza.body.len() != BODY_BYTES {
            return Some(Err(age::DecryptError::InvalidHeader));
        }
        match hpke_open::<XWing>(&enc, &self.0, LABEL, &stanza.body) {
            Ok(plain) => {
                let plain = Zeroizing::new(plain);
                Some(FileKey::try_init_with_mut(|key| {
                    key.copy_from_slice(&plain);
                    Ok(())
                }))
            }
            // A low-order X25519 share: a malformed header, not another recipient's stanza.
            Err(HpkeError::DecapError) => Some(Err(age::DecryptError::InvalidHeader)),
            // The AEAD refused it: sealed to somebody else.
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_reads_back_and_its_recipient_is_age1pq() {
        let identity = HybridIdentity::generate(&mut rand::rng());
        let text = identity.to_secret_string();
        assert!(text.starts_with("AGE-SECRET-KEY-PQ-1"));
        let again: HybridIdentity = text.parse().unwrap();
        let recipient = again.to_public().to_string();
        assert!(recipient.starts_with("age1pq1"), "{recipient}");
        assert_eq!(recipient, identity.to_public().to_string());
        assert_eq!(recipient.parse::<HybridRecipient>().unwrap().to_string(), recipient);
        assert!(!format!("{identity:?}").contains(&text[20..40]));
    }

    #[test]
    fn recipients_of_another_kind_or_case_are_refused() {
        let recipient = HybridIdentity::generate(&mut rand::rng()).to_public().to_string();
        assert!(recipient.to_uppercase().parse::<HybridRecipient>().is_err());
        assert!("age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq".parse::<HybridRecipient>().is_err());
        assert!(recipient[..recipient.len() - 1].parse::<HybridRecipient>().is_err());
    }
}
