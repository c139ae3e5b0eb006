mod config;
mod jwks;
#[cfg(feature = "aws-lc-rs")]
mod prepared;
#[cfg(feature = "remote")]
pub mod remote;
mod set;
#[cfg(all(feature = "rust-crypto", not(feature = "aws-lc-rs")))]
mod validate;

pub(crate) use config::KeyConfig;
pub use jwks::Jwks;
#[cfg(feature = "dpop")]
pub(crate) use set::check_strength;
pub(crate) use set::{AlgSet, KeyEntry, KeySet};

use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

use crate::{AuthError, BuildError};

/// Where a verifier's keys come from.
pub(crate) enum Keys {
    /// Keys fixed at build time.
    Static(KeySet),
    /// Keys from an identity provider, refreshed and rotated behind a lock-free snapshot.
    #[cfg(feature = "remote")]
    Remote(remote::RemoteJwks),
}

impl Keys {
    /// Verifies `signature` over `input` with the key that `kid` and `alg` select.
    pub(crate) fn verify(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
        input: &[u8],
        signature: &[u8],
    ) -> Result<(), AuthError> {
        match self {
            Keys::Static(set) => set.verify(alg, kid, input, signature),
            #[cfg(feature = "remote")]
            Keys::Remote(remote) => remote.snapshot().verify(alg, kid, input, signature),
        }
    }

    /// Changes whenever the keys verification uses do (always 0 for static keys); `None` while
    /// a remote set is unusable (past `max_stale`). A cached verification holds only under the
    /// generation it was made with.
    #[cfg_attr(not(feature = "cache"), allow(dead_code))]
    pub(crate) fn generation(&self) -> Option<u64> {
        match self {
            Keys::Static(_) => Some(0),
            #[cfg(feature = "remote")]
            Keys::Remote(remote) => remote.usable_generation(),
        }
    }

    /// The remote source, when the keys come from one.
    #[cfg(feature = "remote")]
    pub(crate) fn remote(&self) -> Option<&remote::RemoteJwks> {
        match self {
            Keys::Remote(remote) => Some(remote),
            Keys::Static(_) => None,
        }
    }
}

/// One verification key and the algorithm it verifies.
///
/// Constructors never fail; what is wrong with the material is reported by
/// [`build`](crate::JwtAuthBuilder::build).
///
/// Keys are parsed once, when the layer is built, and checked there: an HMAC secret shorter
/// than its hash (RFC 7518 §3.2), an RSA modulus under 2048 bits (RFC 7518 §3.3), an EC key on
/// the wrong curve for its algorithm, or HMAC secrets mixed with public keys (the set-up that
/// makes algorithm confusion possible, RFC 8725 §2.1) are build errors, not per-request ones.
///
/// A token picks its key by `kid`; the algorithm always comes from the key's configuration
/// and the allow-list, never from the token alone.
///
/// ```
/// use tower_jwt_auth::{Algorithm, JwtAuthLayer, Key};
///
/// #[derive(Clone, serde::Deserialize)]
/// struct MyClaims { sub: String }
///
/// let pem = std::fs::read("tests/data/rsa_2048_public.pem").unwrap();
/// let layer = JwtAuthLayer::<MyClaims>::builder()
///     .key(Key::pem(Algorithm::RS256, &pem).kid("2024-01"))
///     .key(Key::pem(Algorithm::PS256, &pem).kid("2024-01"))
///     .build()
///     .unwrap();
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct Key {
    pub(crate) kid: Option<String>,
    pub(crate) alg: crate::Algorithm,
    pub(crate) material: Result<DecodingKey, String>,
    /// Length of an HMAC secret, checked against the hash output at build time.
    pub(crate) secret_len: Option<usize>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// An HMAC secret for `HS256`, `HS384` or `HS512`. It must be at least as long as the hash
    /// output (32, 48 or 64 bytes, RFC 7518 §3.2).
    pub fn hmac(alg: crate::Algorithm, secret: impl AsRef<[u8]>) -> Key {
        let secret = secret.as_ref();
        Key {
            kid: None,
            alg,
            material: Ok(DecodingKey::from_secret(secret)),
            secret_len: Some(secret.len()),
        }
    }

    /// A PEM public key (`PUBLIC KEY`, or `RSA PUBLIC KEY` for RSA) for an RSA, ECDSA or
    /// EdDSA algorithm.
    pub fn pem(alg: crate::Algorithm, pem: impl AsRef<[u8]>) -> Key {
        Key::public(alg, pem.as_ref(), true)
    }

    /// A DER public key: PKCS#1 `RSAPublicKey` for RSA, the uncompressed point for ECDSA,
    /// the 32 raw bytes for Ed25519.
    pub fn der(alg: crate::Algorithm, der: impl AsRef<[u8]>) -> Key {
        Key::public(alg, der.as_ref(), false)
    }

    fn public(alg: crate::Algorithm, bytes: &[u8], pem: bool) -> Key {
        let material = match (alg.jwt().family(), pem) {
            (AlgorithmFamily::Rsa, true) => DecodingKey::from_rsa_pem(bytes),
            (AlgorithmFamily::Ec, true) => DecodingKey::from_ec_pem(bytes),
            (AlgorithmFamily::Ed, true) => DecodingKey::from_ed_pem(bytes),
            (AlgorithmFamily::Rsa, false) => Ok(DecodingKey::from_rsa_der(bytes)),
            (AlgorithmFamily::Ec, false) => Ok(DecodingKey::from_ec_der(bytes)),
            (AlgorithmFamily::Ed, false) => Ok(DecodingKey::from_ed_der(bytes)),
            (AlgorithmFamily::Hmac, _) => {
                let form = if pem { "PEM" } else { "DER" };
                return Key::broken(alg, format!("a {form} key cannot verify an HMAC algorithm"));
            }
        };
        Key {
            kid: None,
            alg,
            material: material.map_err(|e| e.to_string()),
            secret_len: None,
        }
    }

    /// One JWK (RFC 7517 §4) given as JSON text, for `alg`; its `kid` is not taken over (use
    /// [`kid`](Self::kid)), and its `use`, `key_ops` and `alg` members are not
    /// consulted: the key verifies `alg`, as configured. For a JWK Set, see [`Jwks`], which
    /// does honour them.
    pub fn jwk(alg: crate::Algorithm, json: &str) -> Key {
        let parsed = serde_json::from_str::<jsonwebtoken::jwk::Jwk>(json)
            .map_err(|e| e.to_string())
            .and_then(|jwk| DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string()));
        let key = match parsed {
            Ok(key) => key,
            Err(reason) => return Key::broken(alg, reason),
        };
        // An HMAC key keeps its length check (RFC 7518 §3.2) whichever way it was made.
        let secret_len = match key.family() {
            AlgorithmFamily::Hmac => key.try_get_as_bytes().ok().map(<[u8]>::len),
            _ => None,
        };
        Key {
            kid: None,
            alg,
            material: Ok(key),
            secret_len,
        }
    }

    /// Tokens whose header names this `kid` are verified with this key (RFC 7515 §4.1.4).
    pub fn kid(mut self, kid: impl Into<String>) -> Key {
        self.kid = Some(kid.into());
        self
    }

    fn broken(alg: crate::Algorithm, reason: String) -> Key {
        Key {
            kid: None,
            alg,
            material: Err(reason),
            secret_len: None,
        }
    }

    /// Checks the key and turns it into the form the request path uses.
    pub(crate) fn into_entry(self) -> Result<KeyEntry, BuildError> {
        let alg = self.alg.jwt();
        let invalid = |reason: String| BuildError::InvalidKey {
            kid: self.kid.clone(),
            reason,
        };
        // A PEM/DER key for HS*, a secret for a public-key algorithm, a key of another family,
        // or a public key's PEM text used as an HMAC secret: algorithm confusion by hand, since
        // that text is known to anyone who can read the public key (RFC 8725 §2.1).
        let is_hmac = alg.family() == AlgorithmFamily::Hmac;
        let mismatch = BuildError::KeyAlgorithmMismatch { alg: self.alg };
        if is_hmac != self.secret_len.is_some() {
            return Err(mismatch);
        }
        let key = self.material.clone().map_err(invalid)?;
        if key.family() != alg.family()
            || (is_hmac && key.try_get_as_bytes().is_ok_and(looks_like_pem))
        {
            return Err(mismatch);
        }
        if let Some(len) = self.secret_len {
            let min = min_secret_len(alg);
            if len < min {
                return Err(BuildError::WeakSecret {
                    alg: self.alg,
                    len,
                    min,
                });
            }
        }
        set::check_strength(alg, &key).map_err(|e| match e {
            BuildError::InvalidKey { reason, .. } => invalid(reason),
            other => other,
        })?;
        let entry = KeyEntry::new(self.kid.clone(), AlgSet::of(alg), key);
        if !entry.is_usable() {
            return Err(invalid("the crypto backend refuses this key".into()));
        }
        Ok(entry)
    }
}

/// Whether `secret` is PEM text (public keys are not secrets).
pub(crate) fn looks_like_pem(secret: &[u8]) -> bool {
    // A UTF-8 byte order mark, as editors write it, does not make it any less a PEM text.
    let text = secret.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(secret);
    text.trim_ascii_start().starts_with(b"-----BEGIN")
}

/// RFC 7518 §3.2: "A key of the same size as the hash output ... or larger MUST be used".
pub(crate) fn min_secret_len(alg: Algorithm) -> usize {
    match alg {
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => 32,
    }
}

/// `algs` without the HMAC algorithms whose hash output is longer than the secret `key`
/// (RFC 7518 §3.2: "A key of the same size as the hash output ... or larger MUST be used").
/// A 32-byte secret thus keeps HS256 and loses HS384 and HS512. Keys of other families keep
/// `algs` unchanged; an HMAC key whose bytes cannot be read keeps no HMAC algorithm.
pub(crate) fn algs_for_secret(algs: AlgSet, key: &DecodingKey) -> AlgSet {
    if key.family() != AlgorithmFamily::Hmac {
        return algs;
    }
    let len = key.try_get_as_bytes().map_or(0, <[u8]>::len);
    AlgSet::from_iter(
        algs.iter()
            .filter(|alg| alg.family() != AlgorithmFamily::Hmac || len >= min_secret_len(*alg)),
    )
}
