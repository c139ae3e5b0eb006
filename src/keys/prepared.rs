//! Keys parsed once for the request path (backend aws-lc-rs).
//!
//! jsonwebtoken builds a boxed verifier from its `DecodingKey` on every call, and its aws-lc
//! verifier re-parses an RSA/EC public key each time (≈ 2.4 µs of 15 µs for RS256) and
//! re-derives the HMAC key schedule. Here each key is turned into aws-lc-rs's own parsed form
//! when it is loaded, so a request pays for the signature check alone. Under the `rust-crypto`
//! backend this module is absent and verification goes through jsonwebtoken's provider.

use aws_lc_rs::{hmac, signature};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};

/// A key ready to verify one algorithm.
pub(crate) enum Prepared {
    // Boxed: an HMAC key schedule is ~1.2 KiB, a parsed public key a pointer.
    Hmac(Box<hmac::Key>),
    Public(signature::ParsedPublicKey),
}

impl Prepared {
    /// Parses `key` for `alg`; `None` when aws-lc-rs refuses the key material.
    pub(crate) fn new(alg: Algorithm, key: &DecodingKey) -> Option<Prepared> {
        if let Some(hmac_alg) = hmac_algorithm(alg) {
            return key
                .try_get_as_bytes()
                .ok()
                .map(|secret| Prepared::Hmac(Box::new(hmac::Key::new(hmac_alg, secret))));
        }
        let verification = verification_algorithm(alg)?;
        let bytes = match key.kind() {
            DecodingKeyKind::SecretOrDer(der) => der.clone(),
            DecodingKeyKind::RsaModulusExponent { n, e } => rsa_public_key_der(n, e),
        };
        signature::ParsedPublicKey::new(verification, bytes)
            .ok()
            .map(Prepared::Public)
    }

    /// Checks `signature` over `message`; constant-time for HMAC.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Prepared::Hmac(key) => hmac::verify(key, message, signature).is_ok(),
            Prepared::Public(key) => key.verify_sig(message, signature).is_ok(),
        }
    }
}

fn hmac_algorithm(alg: Algorithm) -> Option<hmac::Algorithm> {
    Some(match alg {
        Algorithm::HS256 => hmac::HMAC_SHA256,
        Algorithm::HS384 => hmac::HMAC_SHA384,
        Algorithm::HS512 => hmac::HMAC_SHA512,
        _ => return None,
    })
}

/// The same verification algorithms jsonwebtoken's aws-lc provider uses: RSA moduli of 2048 to
/// 8192 bits, ECDSA with fixed-length (JWS, RFC 7518 §3.4) signatures.
fn verification_algorithm(alg: Algorithm) -> Option<&'static dyn signature::VerificationAlgorithm> {
    Some(match alg {
        Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
        Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
        Algorithm::EdDSA => &signature::ED25519,
        _ => return None,
    })
}

/// PKCS#1 `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` (RFC 8017
/// A.1.1) in DER, from the big-endian `n` and `e` of a JWK (RFC 7518 §6.3.1).
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(n.len() + e.len() + 16);
    der_integer(&mut body, n);
    der_integer(&mut body, e);
    let mut out = Vec::with_capacity(body.len() + 4);
    out.push(0x30);
    der_length(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

fn der_integer(out: &mut Vec<u8>, magnitude: &[u8]) {
    let start = magnitude
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(magnitude.len().saturating_sub(1));
    let digits = &magnitude[start.min(magnitude.len())..];
    // A positive INTEGER whose top bit is set needs a leading zero byte (X.690 §8.3.2).
    let pad = digits.first().is_none_or(|b| b & 0x80 != 0);
    out.push(0x02);
    der_length(out, digits.len() + usize::from(pad));
    if pad {
        out.push(0);
    }
    out.extend_from_slice(digits);
}

fn der_length(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
        return;
    }
    let bytes = len.to_be_bytes();
    let skip = len.leading_zeros() as usize / 8;
    out.push(0x80 | (bytes.len() - skip) as u8);
    out.extend_from_slice(&bytes[skip..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_of_small_integers() {
        // n = 0x80 needs a pad byte, e = 65537 does not.
        assert_eq!(
            rsa_public_key_der(&[0x80], &[1, 0, 1]),
            vec![0x30, 0x09, 0x02, 0x02, 0x00, 0x80, 0x02, 0x03, 1, 0, 1]
        );
        let mut long = Vec::new();
        der_length(&mut long, 300);
        assert_eq!(long, vec![0x82, 0x01, 0x2c]);
    }
}
