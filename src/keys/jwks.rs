//! A static JWKS document (RFC 7517 §5) as a key source.

use std::path::Path;

use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

use super::set::{AlgSet, KeyEntry, check_strength};
use super::{algs_for_secret, min_secret_len};
use crate::BuildError;

/// A JWK Set read from a string or a file, for
/// [`JwtAuthBuilder::jwks`](crate::JwtAuthBuilder::jwks).
///
/// Each key is judged on its own: one that is malformed, meant for encryption (`use` other
/// than `sig`, RFC 7517 §4.2), declares an `alg` that does not fit its key type, or is too weak
/// is skipped and the rest are kept. [`Jwks::skipped`] says how many were.
///
/// A key without `alg` verifies the layer's allowed algorithms of its key type (without an
/// allow-list: RS256, ES256/ES384 by curve, EdDSA, HS256). An HMAC (`oct`) key is never used
/// with a hash longer than itself (RFC 7518 §3.2): under an allow-list of HS256 and HS512, a
/// 32-byte `oct` key without `alg` verifies HS256 tokens only, and one too short for every
/// allowed HMAC algorithm makes [`build`](crate::JwtAuthBuilder::build) fail with
/// [`BuildError::WeakSecret`].
///
/// ```
/// use tower_jwt_auth::Jwks;
///
/// let jwks = Jwks::from_json(r#"{"keys":[
///   {"kty":"oct","kid":"enc","use":"enc","k":"c2VjcmV0"},
///   {"kty":"OKP","crv":"Ed25519","kid":"ed","alg":"EdDSA",
///    "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
/// ]}"#).unwrap();
/// assert_eq!(jwks.len(), 1);
/// assert_eq!(jwks.skipped(), 1);
/// ```
#[derive(Clone, Default)]
pub struct Jwks {
    pub(crate) keys: Vec<JwkEntry>,
    skipped: usize,
}

/// A usable JWK: `algs` is `None` when the JWK names no `alg` and the layer's allow-list
/// decides which algorithms of its family it verifies.
#[derive(Clone)]
pub(crate) struct JwkEntry {
    pub kid: Option<String>,
    pub alg: Option<Algorithm>,
    /// For EC keys, the one algorithm the curve allows.
    pub curve_alg: Option<Algorithm>,
    pub key: DecodingKey,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<_> = self.keys.iter().map(|k| k.kid.as_deref()).collect();
        f.debug_struct("Jwks")
            .field("kids", &kids)
            .field("skipped", &self.skipped)
            .finish()
    }
}

impl Jwks {
    /// Parses a JWKS document. Fails only when the document itself is unusable (not JSON, no
    /// `keys` array); individual bad keys are skipped.
    pub fn from_json(json: &str) -> Result<Jwks, BuildError> {
        // RFC 7517 §5: a JWK Set is a JSON *object* with a `keys` array (serde's derive would
        // also take an array for a struct, so the object is read as a map).
        let mut doc: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(json).map_err(|e| BuildError::InvalidJwks(e.to_string()))?;
        let Some(serde_json::Value::Array(keys)) = doc.remove("keys") else {
            return Err(BuildError::InvalidJwks("no \"keys\" array".into()));
        };
        let mut jwks = Jwks::default();
        for value in keys {
            match parse_jwk(value) {
                Some(entry) => jwks.keys.push(entry),
                None => jwks.skipped += 1,
            }
        }
        Ok(jwks)
    }

    /// Reads and parses a JWKS file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Jwks, BuildError> {
        let path = path.as_ref();
        let json = std::fs::read_to_string(path).map_err(|source| BuildError::Io {
            path: path.to_owned(),
            source,
        })?;
        Jwks::from_json(&json)
    }

    /// The number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key was usable.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The number of keys that were skipped as malformed, unsupported or not for signatures.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// The key entries for a layer whose allow-list is `allowed` (`None`: not configured).
    /// A JWK without `alg` verifies the allowed algorithms of its family, or that family's
    /// customary one when no allow-list was given; an `oct` one only those HMAC algorithms it
    /// is long enough for (RFC 7518 §3.2).
    pub(crate) fn entries(&self, allowed: Option<AlgSet>) -> Vec<KeyEntry> {
        self.keys
            .iter()
            .filter_map(|k| {
                let algs = k.algs(allowed);
                (!algs.is_empty()).then(|| KeyEntry::new(k.kid.clone(), algs, k.key.clone()))
            })
            .collect()
    }

    /// Refuses an `oct` JWK without `alg` that the allow-list `allowed` offers HMAC
    /// algorithms to but that is too short for every one of them: a configuration mistake, like
    /// [`Key::hmac`](crate::Key::hmac) with a short secret. (One long enough for some of them
    /// verifies those only, see [`entries`](Self::entries).)
    pub(crate) fn check_secret_lengths(&self, allowed: Option<AlgSet>) -> Result<(), BuildError> {
        // Without an allow-list such a key verifies HS256 only, checked when it was parsed.
        let Some(allowed) = allowed else {
            return Ok(());
        };
        let offered = AlgSet::family(AlgorithmFamily::Hmac).intersect(allowed);
        for k in &self.keys {
            if k.alg.is_some() || k.key.family() != AlgorithmFamily::Hmac {
                continue;
            }
            // The weakest offered algorithm: HS256, then HS384, then HS512.
            if let Some(alg) = offered.iter().next()
                && k.algs(Some(allowed)).is_empty()
            {
                return Err(BuildError::WeakSecret {
                    alg: match alg {
                        Algorithm::HS384 => crate::Algorithm::HS384,
                        Algorithm::HS512 => crate::Algorithm::HS512,
                        _ => crate::Algorithm::HS256,
                    },
                    len: k.key.try_get_as_bytes().map_or(0, <[u8]>::len),
                    min: min_secret_len(alg),
                });
            }
        }
        Ok(())
    }
}

impl JwkEntry {
    /// The algorithms this key verifies under the allow-list `allowed` (`None`: not
    /// configured). An HMAC key never gets an algorithm whose hash output is longer than it
    /// (RFC 7518 §3.2): an `oct` JWK without `alg` is offered every allowed HMAC algorithm,
    /// and its length was checked at parse time against HS256 only.
    fn algs(&self, allowed: Option<AlgSet>) -> AlgSet {
        let algs = match (self.alg, self.curve_alg, allowed) {
            (Some(alg), _, _) | (None, Some(alg), _) => AlgSet::of(alg),
            (None, None, Some(allowed)) => AlgSet::family(self.key.family()).intersect(allowed),
            (None, None, None) => AlgSet::of(customary(self.key.family())),
        };
        let algs = match allowed {
            Some(allowed) => algs.intersect(allowed),
            None => algs,
        };
        algs_for_secret(algs, &self.key)
    }
}

fn customary(family: AlgorithmFamily) -> Algorithm {
    match family {
        AlgorithmFamily::Hmac => Algorithm::HS256,
        AlgorithmFamily::Rsa => Algorithm::RS256,
        AlgorithmFamily::Ec => Algorithm::ES256,
        AlgorithmFamily::Ed => Algorithm::EdDSA,
    }
}

fn parse_jwk(value: serde_json::Value) -> Option<JwkEntry> {
    let jwk: Jwk = serde_json::from_value(value).ok()?;
    match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(_) => return None,
    }
    // RFC 7517 §4.3: a key whose operations do not include `verify` is not for us (an
    // encryption key must never double as a verification key).
    if let Some(ops) = &jwk.common.key_operations
        && !ops.iter().any(|op| matches!(op, KeyOperations::Verify))
    {
        return None;
    }
    let alg = match &jwk.common.key_algorithm {
        None => None,
        Some(ka) => Some(signing_alg(*ka)?),
    };
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    let curve_alg = match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Some(Algorithm::ES256),
            EllipticCurve::P384 => Some(Algorithm::ES384),
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve != EllipticCurve::Ed25519 => return None,
        _ => None,
    };
    if let Some(alg) = alg
        && (alg.family() != key.family() || curve_alg.is_some_and(|c| c != alg))
    {
        return None;
    }
    let check_alg = alg.or(curve_alg).unwrap_or_else(|| customary(key.family()));
    check_strength(check_alg, &key).ok()?;
    if !KeyEntry::new(None, AlgSet::of(check_alg), key.clone()).is_usable() {
        return None;
    }
    if key.family() == AlgorithmFamily::Hmac {
        let len = key.try_get_as_bytes().ok()?.len();
        if len < min_secret_len(check_alg) {
            return None;
        }
    }
    Some(JwkEntry {
        kid: jwk.common.key_id.clone(),
        alg,
        curve_alg,
        key,
    })
}

fn signing_alg(ka: KeyAlgorithm) -> Option<Algorithm> {
    Some(match ka {
        KeyAlgorithm::HS256 => Algorithm::HS256,
        KeyAlgorithm::HS384 => Algorithm::HS384,
        KeyAlgorithm::HS512 => Algorithm::HS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}
