//! Ephemeral private keys, made by the crypto backend the crate links, in the DER form the
//! backend signs with: PKCS#1 `RSAPrivateKey` for RSA, PKCS#8 for ECDSA and Ed25519.
//!
//! With `aws-lc-rs` enabled (alone or beside `rust-crypto`) aws-lc-rs makes the keys; with
//! `rust-crypto` alone the RustCrypto crates do. Both generators are compiled whenever their
//! feature is on, so an `--all-features` build checks both.

use jsonwebtoken::{AlgorithmFamily, EncodingKey};

use crate::Algorithm;

/// A new private key for `alg` (not HMAC), as the crate's backend signs with it.
///
/// # Panics
///
/// If the backend cannot make a key (no randomness), or `alg` is HMAC.
pub(crate) fn private_key(alg: Algorithm) -> EncodingKey {
    #[cfg(feature = "aws-lc-rs")]
    use aws::{ec, ed25519, rsa};
    #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc-rs")))]
    use rc::{ec, ed25519, rsa};
    match alg.jwt().family() {
        AlgorithmFamily::Rsa => EncodingKey::from_rsa_der(&rsa()),
        AlgorithmFamily::Ec => EncodingKey::from_ec_der(&ec(alg)),
        AlgorithmFamily::Ed => EncodingKey::from_ed_der(&ed25519()),
        AlgorithmFamily::Hmac => panic!("TestIssuer: {alg} is an HMAC algorithm, not a key pair"),
    }
}

/// A random HMAC secret of `len` bytes.
pub(crate) fn secret(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    getrandom::fill(&mut bytes).expect("TestIssuer: the operating system has no randomness");
    bytes
}

#[cfg(feature = "aws-lc-rs")]
mod aws {
    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
        Ed25519KeyPair,
    };

    use crate::Algorithm;

    const FAILED: &str = "TestIssuer: aws-lc-rs could not generate a key";

    /// A 2048-bit RSA key, PKCS#1 DER (aws-lc-rs writes PKCS#8 only: the PKCS#1 structure is
    /// the `privateKey` OCTET STRING inside it).
    pub(super) fn rsa() -> Vec<u8> {
        let pair =
            aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect(FAILED);
        let pkcs8: Pkcs8V1Der<'static> = pair.as_der().expect(FAILED);
        super::pkcs8_private_key(pkcs8.as_ref())
            .expect("TestIssuer: aws-lc-rs wrote an RSA PKCS#8 document we cannot read")
            .to_vec()
    }

    /// A P-256 (ES256) or P-384 (ES384) key, PKCS#8 DER.
    pub(super) fn ec(alg: Algorithm) -> Vec<u8> {
        let curve = match alg {
            Algorithm::ES384 => &ECDSA_P384_SHA384_FIXED_SIGNING,
            _ => &ECDSA_P256_SHA256_FIXED_SIGNING,
        };
        let pair = EcdsaKeyPair::generate(curve).expect(FAILED);
        pair.to_pkcs8v1().expect(FAILED).as_ref().to_vec()
    }

    /// An Ed25519 key, PKCS#8 v1 DER.
    pub(super) fn ed25519() -> Vec<u8> {
        let pair = Ed25519KeyPair::generate().expect(FAILED);
        pair.to_pkcs8v1().expect(FAILED).as_ref().to_vec()
    }
}

#[cfg(feature = "rust-crypto")]
#[cfg_attr(feature = "aws-lc-rs", allow(dead_code))]
mod rc {
    use ed25519_dalek::pkcs8::EncodePrivateKey as _;
    use rsa::pkcs1::EncodeRsaPrivateKey as _;
    use rsa::rand_core::{CryptoRng, Error, RngCore};

    use crate::Algorithm;

    const FAILED: &str = "TestIssuer: the RustCrypto crates could not generate a key";

    /// The operating system's random source, for `rsa`'s key generation.
    struct OsRandom;

    impl RngCore for OsRandom {
        fn next_u32(&mut self) -> u32 {
            let mut b = [0u8; 4];
            self.fill_bytes(&mut b);
            u32::from_le_bytes(b)
        }

        fn next_u64(&mut self) -> u64 {
            let mut b = [0u8; 8];
            self.fill_bytes(&mut b);
            u64::from_le_bytes(b)
        }

        fn fill_bytes(&mut self, dest: &mut [u8]) {
            getrandom::fill(dest).expect("TestIssuer: the operating system has no randomness");
        }

        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }

    impl CryptoRng for OsRandom {}

    /// A 2048-bit RSA key, PKCS#1 DER.
    pub(super) fn rsa() -> Vec<u8> {
        let key = rsa::RsaPrivateKey::new(&mut OsRandom, 2048).expect(FAILED);
        key.to_pkcs1_der().expect(FAILED).as_bytes().to_vec()
    }

    /// A P-256 (ES256) or P-384 (ES384) key, PKCS#8 DER.
    pub(super) fn ec(alg: Algorithm) -> Vec<u8> {
        // A random scalar is out of range with negligible probability: draw again then.
        loop {
            let doc = if alg == Algorithm::ES384 {
                use p384::pkcs8::EncodePrivateKey as _;
                p384::ecdsa::SigningKey::from_slice(&super::secret(48))
                    .ok()
                    .map(|k| k.to_pkcs8_der())
            } else {
                use p256::pkcs8::EncodePrivateKey as _;
                p256::ecdsa::SigningKey::from_slice(&super::secret(32))
                    .ok()
                    .map(|k| k.to_pkcs8_der())
            };
            if let Some(doc) = doc {
                return doc.expect(FAILED).as_bytes().to_vec();
            }
        }
    }

    /// An Ed25519 key, PKCS#8 DER.
    pub(super) fn ed25519() -> Vec<u8> {
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&super::secret(32));
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        key.to_pkcs8_der().expect(FAILED).as_bytes().to_vec()
    }

    #[cfg(test)]
    #[test]
    fn keys_are_usable_by_the_backend() {
        for alg in [
            Algorithm::RS256,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::EdDSA,
        ] {
            let der = match alg {
                Algorithm::RS256 => rsa(),
                Algorithm::EdDSA => ed25519(),
                _ => ec(alg),
            };
            let key = match alg {
                Algorithm::RS256 => jsonwebtoken::EncodingKey::from_rsa_der(&der),
                Algorithm::EdDSA => jsonwebtoken::EncodingKey::from_ed_der(&der),
                _ => jsonwebtoken::EncodingKey::from_ec_der(&der),
            };
            (crate::backend::provider().signer_factory)(&alg.jwt(), &key).unwrap();
        }
    }
}

/// The `privateKey` OCTET STRING of a PKCS#8 v1 `PrivateKeyInfo` (RFC 5208 §5): `SEQUENCE {
/// INTEGER version, SEQUENCE algorithm, OCTET STRING privateKey, ... }`.
#[cfg_attr(not(feature = "aws-lc-rs"), allow(dead_code))]
pub(super) fn pkcs8_private_key(der: &[u8]) -> Option<&[u8]> {
    let (tag, body, _) = der_element(der)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, _, rest) = der_element(body)?;
    if tag != 0x02 {
        return None;
    }
    let (tag, _, rest) = der_element(rest)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, key, _) = der_element(rest)?;
    (tag == 0x04).then_some(key)
}

/// One DER element: its tag, its contents and what follows it.
fn der_element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    let (contents, rest) = rest.split_at(len);
    Some((tag, contents, rest))
}
