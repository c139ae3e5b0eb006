//! A static JWKS document (RFC 7517 §5) as a key source.

use std::path::Path;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
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
    keys: Vec<JwkEntry>,
    skipped: usize,
}

/// A usable JWK and the algorithms it permits: its `alg`; else, for an EC key, its curve's;
/// else every algorithm of its key type. `fallback` is the one it verifies when the layer has
/// no allow-list: its `alg`, its curve's, or its key type's customary one.
#[derive(Clone)]
pub(crate) struct JwkEntry {
    kid: Option<String>,
    algs: AlgSet,
    fallback: Algorithm,
    key: DecodingKey,
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

    /// The key entries for a layer whose allow-list is `allowed` (`None`: not configured): each
    /// JWK verifies the algorithms it permits that are allowed, or its fallback without an
    /// allow-list; an `oct` one only those HMAC algorithms it is long enough for (RFC 7518
    /// §3.2). Keys left with no algorithm are dropped.
    pub(crate) fn entries(&self, allowed: Option<AlgSet>) -> Vec<KeyEntry> {
        self.keys
            .iter()
            .filter_map(|k| {
                let algs = k.algs(allowed);
                (!algs.is_empty()).then(|| KeyEntry::new(k.kid.clone(), algs, k.key.clone()))
            })
            .collect()
    }

    /// Refuses an `oct` JWK without `alg` that the allow-list offers HMAC algorithms to but
    /// that is too short for every one of them: a configuration mistake, like
    /// [`Key::hmac`](crate::Key::hmac) with a short secret.
    pub(crate) fn check_secret_lengths(&self, allowed: Option<AlgSet>) -> Result<(), BuildError> {
        for k in &self.keys {
            let offered = k.algs.intersect(allowed.unwrap_or(k.algs));
            // The weakest offered HMAC algorithm names the failure: HS256, then HS384, HS512.
            if let Some(alg) = offered.iter().next()
                && k.key.family() == AlgorithmFamily::Hmac
                && k.algs(allowed).is_empty()
            {
                return Err(BuildError::WeakSecret {
                    alg: crate::algorithm::from_jwt(alg),
                    len: k.key.try_get_as_bytes().map_or(0, <[u8]>::len),
                    min: min_secret_len(alg),
                });
            }
        }
        Ok(())
    }
}

impl JwkEntry {
    /// The algorithms this key verifies under the allow-list `allowed`, never an HMAC one
    /// whose hash output is longer than the key (RFC 7518 §3.2).
    fn algs(&self, allowed: Option<AlgSet>) -> AlgSet {
        let algs = allowed.map_or(AlgSet::of(self.fallback), |a| self.algs.intersect(a));
        algs_for_secret(algs, &self.key)
    }
}

/// A JWK usable for signatures (RFC 7517 §4.2 `use`, §4.3 `key_ops`), with an `alg` that fits
/// its key type and curve, and strong enough for its fallback algorithm; `None` otherwise.
fn parse_jwk(value: serde_json::Value) -> Option<JwkEntry> {
    let alg = match value.get("alg") {
        None => None,
        Some(name) => Some(crate::algorithm::from_name(name.as_str()?)?.jwt()),
    };
    let jwk: Jwk = serde_json::from_value(value).ok()?;
    // RFC 7517 §4.2, §4.3: an encryption key must never double as a verification key.
    let common = &jwk.common;
    let for_signatures = matches!(common.public_key_use, None | Some(PublicKeyUse::Signature));
    let verifies =
        (common.key_operations.as_ref()).is_none_or(|ops| ops.contains(&KeyOperations::Verify));
    if !for_signatures || !verifies {
        return None;
    }
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
    let family = key.family();
    let algs = match alg.or(curve_alg) {
        Some(a) if a.family() != family || curve_alg.is_some_and(|c| c != a) => return None,
        Some(a) => AlgSet::of(a),
        None => AlgSet::family(family),
    };
    let fallback = alg.or(curve_alg).unwrap_or(match family {
        AlgorithmFamily::Hmac => Algorithm::HS256,
        AlgorithmFamily::Rsa => Algorithm::RS256,
        AlgorithmFamily::Ec => Algorithm::ES256,
        AlgorithmFamily::Ed => Algorithm::EdDSA,
    });
    check_strength(fallback, &key).ok()?;
    let entry = KeyEntry::new(None, AlgSet::of(fallback), key.clone());
    // `KeyEntry::new` drops an HMAC algorithm the secret is too short for.
    if !entry.is_usable() || entry.algs.is_empty() {
        return None;
    }
    Some(JwkEntry {
        kid: jwk.common.key_id,
        algs,
        fallback,
        key,
    })
}
