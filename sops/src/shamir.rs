//! Shamir secret sharing over GF(2^8) (the AES polynomial), as sops splits a data key among
//! key groups.

use zeroize::Zeroizing;

/// GF(2^8) multiplication with the AES polynomial.
pub(crate) fn gf_mul(mut a: u8, mut b: u8) -> u8 {
    let mut p = 0u8;
    while b != 0 {
        if b & 1 != 0 {
            p ^= a;
        }
        let carry = a & 0x80;
        a <<= 1;
        if carry != 0 {
            a ^= 0x1b;
        }
        b >>= 1;
    }
    p
}

pub(crate) fn gf_inv(a: u8) -> u8 {
    // a^254 = a^-1 in GF(2^8).
    let mut result = 1u8;
    let mut base = a;
    let mut exp = 254u32;
    while exp > 0 {
        if exp & 1 == 1 {
            result = gf_mul(result, base);
        }
        base = gf_mul(base, base);
        exp >>= 1;
    }
    result
}

/// Combine Shamir shares (`y-bytes ‖ x`) by Lagrange interpolation at 0.
pub(crate) fn shamir_combine(parts: &[Zeroizing<Vec<u8>>]) -> Option<Zeroizing<Vec<u8>>> {
    let len = parts.first()?.len().checked_sub(1)?;
    if parts.iter().any(|p| p.len() != len + 1) {
        return None;
    }
    let xs: Vec<u8> = parts.iter().map(|p| p[len]).collect();
    let mut secret = Zeroizing::new(vec![0u8; len]);
    for (i, part) in parts.iter().enumerate() {
        // basis_i(0) = prod_{j != i} x_j / (x_j - x_i); subtraction is xor.
        let mut basis = 1u8;
        for (j, xj) in xs.iter().enumerate() {
            if i != j {
                basis = gf_mul(basis, gf_mul(*xj, gf_inv(xj ^ xs[i])));
            }
        }
        for (byte, y) in secret.iter_mut().zip(part.iter().take(len)) {
            *byte ^= gf_mul(*y, basis);
        }
    }
    Some(secret)
}

/// Split `secret` into `n` Shamir shares (`y-bytes ‖ x`, x = 1..n) needing `threshold`.
pub(crate) fn shamir_split<R: rand::CryptoRng + ?Sized>(
    rng: &mut R,
    secret: &[u8],
    n: usize,
    threshold: usize,
) -> Vec<Zeroizing<Vec<u8>>> {
    let mut shares: Vec<Zeroizing<Vec<u8>>> =
        (1..=n).map(|_| Zeroizing::new(Vec::with_capacity(secret.len() + 1))).collect();
    let mut coefficients = Zeroizing::new(vec![0u8; threshold.saturating_sub(1)]);
    for byte in secret {
        rng.fill_bytes(&mut coefficients);
        for (i, share) in shares.iter_mut().enumerate() {
            let x = (i + 1) as u8;
            // Horner: ((a_{t-1} x + ...) x + a_1) x + secret.
            let mut y = 0u8;
            for c in coefficients.iter().rev() {
                y = gf_mul(y, x) ^ c;
            }
            share.push(gf_mul(y, x) ^ byte);
        }
    }
    for (i, share) in shares.iter_mut().enumerate() {
        share.push((i + 1) as u8);
    }
    shares
}
