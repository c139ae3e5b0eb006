//! Key validation for the rust-crypto backend.
//!
//! jsonwebtoken's RustCrypto verifiers parse a key only when they verify, so a key no token can
//! ever verify with (an RSA exponent of 1, an EC point off its curve) would load and then fail
//! every request. The RustCrypto types themselves refuse such keys: they are asked here, once,
//! when the key is loaded — what aws-lc-rs's parsed keys do for the other backend.

use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind};

use crate::backend::provider;

/// Whether the RustCrypto implementation of `alg` accepts `key`.
pub(crate) fn accepts(alg: Algorithm, key: &DecodingKey) -> bool {
    match (alg.family(), key.kind()) {
        (AlgorithmFamily::Hmac, _) => true,
        (AlgorithmFamily::Rsa, DecodingKeyKind::RsaModulusExponent { n, e }) => rsa_ok(n, e),
        (AlgorithmFamily::Rsa, DecodingKeyKind::SecretOrDer(der)) => {
            (provider().key_utils.rsa_pub_components_from_public_key)(der)
                .is_ok_and(|(n, e)| rsa_ok(&n, &e))
        }
        (AlgorithmFamily::Ec, DecodingKeyKind::SecretOrDer(point)) => match alg {
            Algorithm::ES384 => p384::PublicKey::from_sec1_bytes(point).is_ok(),
            _ => p256::PublicKey::from_sec1_bytes(point).is_ok(),
        },
        (AlgorithmFamily::Ed, DecodingKeyKind::SecretOrDer(x)) => {
            <[u8; 32]>::try_from(x.as_slice())
                .is_ok_and(|x| ed25519_dalek::VerifyingKey::from_bytes(&x).is_ok())
        }
        _ => false,
    }
}

/// `RsaPublicKey::new` checks the exponent (odd, at least 3 in practice: 1 is refused) and the
/// modulus.
fn rsa_ok(n: &[u8], e: &[u8]) -> bool {
    let n = rsa::BigUint::from_bytes_be(n);
    let e = rsa::BigUint::from_bytes_be(e);
    e > rsa::BigUint::from(1u8) && rsa::RsaPublicKey::new(n, e).is_ok()
}
