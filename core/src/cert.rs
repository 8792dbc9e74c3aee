//! Certificates: lenient parsing (as kubeseal: public key and validity only) and generation of
//! controller-style self-signed certificates.

use std::time::Duration;

use der::{Decode, Encode, EncodePem};
use rand::CryptoRng;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_cert::builder::{Builder, CertificateBuilder, profile::BuilderProfile};
use x509_cert::certificate::TbsCertificate;
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};
use x509_cert::time::Validity;

use crate::keys::{KeyError, PrivateKey, PublicKey, pem_blocks};
use crate::secret::SecretBytes;

/// The controller's default key size.
pub const DEFAULT_KEY_BITS: usize = 4096;
/// The controller's default `--key-ttl`: 10 × 365 days, not ten calendar years.
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(3650 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    #[error("no PEM certificate found")]
    NoCertificate,
    #[error("the certificate PEM is not valid base64")]
    Pem,
    #[error("cannot parse the certificate")]
    Der(#[source] der::Error),
    #[error("the certificate's public key is not an RSA key")]
    NotRsa,
    #[error("the certificate expired on {0}")]
    Expired(String),
    #[error("cannot generate the RSA key")]
    Generate(#[source] rsa::Error),
    #[error("cannot build the certificate")]
    Build(String),
    #[error(transparent)]
    Key(KeyError),
}

/// A parsed certificate: only what sealing needs, plus the original PEM.
#[derive(Clone, Debug)]
pub struct Certificate {
    pem: String,
    public_key: PublicKey,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

impl Certificate {
    /// The first `CERTIFICATE` block of `text`. Extensions are not interpreted, so the
    /// controller's encipherOnly KeyUsage is accepted.
    pub fn from_pem(text: &str) -> Result<Self, CertError> {
        let (_, block) =
            pem_blocks(text).into_iter().find(|(label, _)| *label == "CERTIFICATE").ok_or(CertError::NoCertificate)?;
        let (_, der) = der::pem::decode_vec(block.as_bytes()).map_err(|_| CertError::Pem)?;
        Self::from_der(&der, block)
    }

    fn from_der(der: &[u8], pem: &str) -> Result<Self, CertError> {
        let cert = x509_cert::Certificate::from_der(der).map_err(CertError::Der)?;
        let tbs = cert.tbs_certificate();
        let spki = tbs.subject_public_key_info().to_der().map_err(CertError::Der)?;
        let public_key = PublicKey::from_spki_der(&spki).map_err(|e| match e {
            KeyError::FipsKeySize(_) | KeyError::Size(_) => CertError::Key(e),
            _ => CertError::NotRsa,
        })?;
        let to_time = |t: x509_cert::time::Time| {
            OffsetDateTime::from_unix_timestamp(t.to_unix_duration().as_secs() as i64)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        };
        Ok(Self {
            pem: format!("{}\n", pem.trim_end()),
            public_key,
            not_before: to_time(tbs.validity().not_before),
            not_after: to_time(tbs.validity().not_after),
        })
    }

    pub fn pem(&self) -> &str {
        &self.pem
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// Refuse a certificate that has expired at `now`, as kubeseal does before sealing.
    pub fn check_not_expired(&self, now: OffsetDateTime) -> Result<(), CertError> {
        if now > self.not_after {
            let day = self
                .not_after
                .format(&time::macros::format_description!("[month repr:long] [day padding:none], [year]"))
                .unwrap_or_else(|_| self.not_after.to_string());
            return Err(CertError::Expired(day));
        }
        Ok(())
    }
}

/// A new key pair and its certificate, shaped like the ones the controller generates.
#[derive(Debug)]
pub struct GeneratedKey {
    pub key: PrivateKey,
    pub certificate: Certificate,
    /// PKCS#1 PEM of the key (`tls.key`).
    pub key_pem: SecretBytes,
}

/// The controller's certificate profile: empty (or CN-only) subject and issuer, KeyUsage
/// critical encipherOnly, BasicConstraints critical CA:TRUE, and a SubjectKeyId.
struct ControllerProfile {
    name: Name,
}

const OID_KEY_USAGE: der::asn1::ObjectIdentifier = der::asn1::ObjectIdentifier::new_unwrap("2.5.29.15");
const OID_BASIC_CONSTRAINTS: der::asn1::ObjectIdentifier = der::asn1::ObjectIdentifier::new_unwrap("2.5.29.19");
const OID_SUBJECT_KEY_ID: der::asn1::ObjectIdentifier = der::asn1::ObjectIdentifier::new_unwrap("2.5.29.14");

fn extension(oid: der::asn1::ObjectIdentifier, critical: bool, value: &[u8]) -> x509_cert::builder::Result<Extension> {
    Ok(Extension { extn_id: oid, critical, extn_value: der::asn1::OctetString::new(value)? })
}

impl BuilderProfile for ControllerProfile {
    fn get_issuer(&self, subject: &Name) -> Name {
        subject.clone()
    }

    fn get_subject(&self) -> Name {
        self.name.clone()
    }

    fn build_extensions(
        &self,
        spk: SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: SubjectPublicKeyInfoRef<'_>,
        _tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        // Go ≥ 1.25 derives the key id from SHA-256 of the public key bits, truncated to 160 bits.
        let digest = Sha256::digest(spk.subject_public_key.raw_bytes());
        let mut key_id = vec![0x04, 20];
        key_id.extend_from_slice(&digest[..20]);
        Ok(vec![
            // BIT STRING, 0 unused bits, encipherOnly (bit 7): exactly what Go writes.
            extension(OID_KEY_USAGE, true, &[0x03, 0x02, 0x00, 0x01])?,
            extension(OID_BASIC_CONSTRAINTS, true, &[0x30, 0x03, 0x01, 0x01, 0xff])?,
            extension(OID_SUBJECT_KEY_ID, false, &key_id)?,
        ])
    }
}

/// When a new key's certificate should start: now, but strictly after the newest existing
/// key's NotBefore. Certificates count in whole seconds, and a key made in the same second as
/// the newest one would otherwise not sort after it and would never become the sealing key.
pub fn next_not_before(now: OffsetDateTime, newest: Option<OffsetDateTime>) -> OffsetDateTime {
    match newest {
        Some(newest) if newest >= now.replace_nanosecond(0).unwrap_or(now) => newest + time::Duration::seconds(1),
        _ => now,
    }
}

/// Generate a key pair and a self-signed certificate valid from `now` for `valid_for`.
pub fn generate<R: CryptoRng + ?Sized>(
    rng: &mut R,
    bits: usize,
    valid_for: Duration,
    common_name: &str,
    now: OffsetDateTime,
) -> Result<GeneratedKey, CertError> {
    let rsa_key = rsa::PrivateKey::new(rng, bits).map_err(CertError::Generate)?;
    let key = PrivateKey::from_rsa(rsa_key).map_err(CertError::Key)?;
    let build = |e: &dyn std::fmt::Display| CertError::Build(e.to_string());

    let name = if common_name.is_empty() {
        Name::default()
    } else {
        format!("CN={common_name}").parse::<Name>().map_err(|e| build(&e))?
    };
    let mut serial = [0u8; 16];
    rng.fill_bytes(&mut serial);
    // A positive INTEGER: clear the top bit rather than pad, keeping 127 random bits.
    serial[0] &= 0x7f;
    let serial = SerialNumber::new(&serial).map_err(|e| build(&e))?;
    let not_before = std::time::UNIX_EPOCH + Duration::from_secs(now.unix_timestamp().max(0) as u64);
    let validity = Validity::new(
        x509_cert::time::Time::try_from(not_before).map_err(|e| build(&e))?,
        x509_cert::time::Time::try_from(not_before + valid_for).map_err(|e| build(&e))?,
    );
    let spki_der = key.public().to_spki_der().map_err(|e| build(&e))?;
    let spki = SubjectPublicKeyInfoOwned::from_der(&spki_der).map_err(|e| build(&e))?;
    let builder = CertificateBuilder::new(ControllerProfile { name }, serial, validity, spki).map_err(|e| build(&e))?;
    let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new(key.rsa().clone());
    let cert = builder.build::<_, rsa::pkcs1v15::Signature>(&signer).map_err(|e| build(&e))?;
    let pem = cert.to_pem(der::pem::LineEnding::LF).map_err(|e| build(&e))?;
    let certificate = Certificate::from_pem(&pem)?;
    let key_pem = key.to_pkcs1_pem().map_err(|e| build(&e))?;
    Ok(GeneratedKey { key, certificate, key_pem })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_starts_after_the_newest() {
        let now = time::macros::datetime!(2026-01-01 12:00:00.5 UTC);
        assert_eq!(next_not_before(now, None), now);
        assert_eq!(next_not_before(now, Some(time::macros::datetime!(2025-01-01 0:00 UTC))), now);
        let same_second = time::macros::datetime!(2026-01-01 12:00:00 UTC);
        assert_eq!(next_not_before(now, Some(same_second)), time::macros::datetime!(2026-01-01 12:00:01 UTC));
    }
}
