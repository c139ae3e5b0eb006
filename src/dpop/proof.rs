//! The DPoP proof JWT, checked as RFC 9449 §4.3 lists, and the access token's binding to its
//! key (§6.1, §7.1).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::Jwk;
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::thumbprint::thumbprint;
use crate::AuthError;
use crate::backend::sha256;
use crate::keys::{AlgSet, KeyEntry, KeySet, check_strength};
use crate::token::{decode, is_jws_alphabet};

/// JWK members that hold private or symmetric key material (RFC 7518 §6.2.2, §6.3.2, §6.4;
/// RFC 8037 §2): a proof's `jwk` must be a public key (RFC 9449 §4.3 point 7).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// A proof that passed every check but the replay check.
#[derive(Debug)]
pub(crate) struct Proof {
    /// The RFC 7638 thumbprint of the proof's key.
    pub thumbprint: String,
    pub jti: String,
    /// `iat`, seconds since the epoch.
    pub iat: f64,
    /// The server-provided nonce it carries (§4.2), checked by the caller.
    pub nonce: Option<String>,
}

/// What a proof is checked against.
pub(crate) struct Expected<'a> {
    /// The algorithms a proof may be signed with: asymmetric only.
    pub algs: AlgSet,
    /// The request's method.
    pub htm: &'a str,
    /// The request's URL, normalised ([`super::htu::normalize`]).
    pub htu: &'a str,
    /// The access token the proof goes with.
    pub token: &'a str,
    /// Now, and how far `iat` may be from it, in seconds.
    pub now: f64,
    pub window: f64,
}

#[derive(Deserialize)]
struct Header {
    typ: String,
    alg: String,
    jwk: Map<String, Value>,
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

#[derive(Deserialize)]
struct Claims {
    jti: String,
    htm: String,
    htu: String,
    iat: f64,
    ath: Option<String>,
    nonce: Option<String>,
}

/// True whenever the member is there, whatever its value.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(d).map(|_| true)
}

/// A JSON object with unique members (serde's derived readers refuse a repeated known member;
/// unknown ones are skipped), read from strict UTF-8.
fn json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, AuthError> {
    let text = std::str::from_utf8(bytes).map_err(|_| AuthError::InvalidDpopProof)?;
    serde_json::from_str(text).map_err(|_| AuthError::InvalidDpopProof)
}

/// Checks the `DPoP` header value `proof` (RFC 9449 §4.3 points 2 to 9 and 11's time half;
/// the caller has checked point 1, exactly one header, and the size, and does 10, the nonce,
/// and 11, the replay check; §6.1 and §7.1, the token's binding, after this).
pub(crate) fn check(proof: &[u8], expected: &Expected<'_>) -> Result<Proof, AuthError> {
    let bad = AuthError::InvalidDpopProof;
    // Point 2: a well-formed JWT, here a compact JWS of three non-empty segments.
    if !is_jws_alphabet(proof) {
        return Err(bad);
    }
    let proof = std::str::from_utf8(proof).map_err(|_| AuthError::InvalidDpopProof)?;
    let mut parts = proof.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad);
    };
    if header_b64.is_empty() || claims_b64.is_empty() || signature_b64.is_empty() {
        return Err(bad);
    }
    let header: Header = json(&decode(header_b64, AuthError::InvalidDpopProof)?)?;
    // We understand no extension (RFC 7515 §4.1.11).
    if header.crit {
        return Err(bad);
    }
    // Point 4: `typ` is `dpop+jwt` (a media type: case-insensitive).
    if !header.typ.eq_ignore_ascii_case("dpop+jwt") {
        return Err(bad);
    }
    // Point 5: an asymmetric algorithm from the allow-list; never `none` or a MAC.
    let alg = crate::algorithm::from_name(&header.alg)
        .map(crate::Algorithm::jwt)
        .filter(|alg| expected.algs.contains(*alg))
        .ok_or(AuthError::InvalidDpopProof)?;
    // Point 7: a public key, of the algorithm's type and curve.
    let key = public_key(&header.jwk, alg)?;
    // Point 6: the signature verifies with that key.
    let signature = decode(signature_b64, AuthError::InvalidDpopProof)?;
    let signing_input = &proof[..header_b64.len() + 1 + claims_b64.len()];
    KeySet::new(vec![key])
        .verify(alg, None, signing_input.as_bytes(), &signature)
        .map_err(|_| AuthError::InvalidDpopProof)?;
    // Point 3: the claims this specification requires.
    let claims: Claims = json(&decode(claims_b64, AuthError::InvalidDpopProof)?)?;
    if claims.jti.is_empty() {
        return Err(bad);
    }
    // Point 8: the request's method (methods are case-sensitive, RFC 9110 §9.1).
    if claims.htm != expected.htm {
        return Err(bad);
    }
    // Point 9: the request's URL, without query and fragment.
    if super::htu::normalize(&claims.htu).as_deref() != Some(expected.htu) {
        return Err(bad);
    }
    // Point 11's time half: created within the acceptable window (§11.1).
    if !claims.iat.is_finite() || (claims.iat - expected.now).abs() > expected.window {
        return Err(bad);
    }
    // §4.3 point 12 (§7.1): `ath` is the hash of the access token presented with it.
    let ath = sha256(expected.token.as_bytes())
        .map(|hash| URL_SAFE_NO_PAD.encode(hash))
        .ok_or(AuthError::InvalidDpopProof)?;
    if claims.ath.as_deref() != Some(ath.as_str()) {
        return Err(bad);
    }
    Ok(Proof {
        thumbprint: thumbprint(&header.jwk).ok_or(AuthError::InvalidDpopProof)?,
        jti: claims.jti,
        iat: claims.iat,
        nonce: claims.nonce,
    })
}

/// The proof's `jwk` as a key that verifies `alg`: no private member, the key type and curve
/// of `alg`, and strong enough (RSA ≥ 2048 bits, RFC 7518 §3.3), as configured keys must be.
fn public_key(
    jwk: &Map<String, Value>,
    alg: jsonwebtoken::Algorithm,
) -> Result<KeyEntry, AuthError> {
    use jsonwebtoken::Algorithm as A;
    let bad = AuthError::InvalidDpopProof;
    if PRIVATE_MEMBERS.iter().any(|m| jwk.contains_key(*m)) {
        return Err(bad);
    }
    let kty = jwk.get("kty").and_then(Value::as_str);
    let crv = jwk.get("crv").and_then(Value::as_str);
    let fits = match alg {
        A::RS256 | A::RS384 | A::RS512 | A::PS256 | A::PS384 | A::PS512 => kty == Some("RSA"),
        A::ES256 => kty == Some("EC") && crv == Some("P-256"),
        A::ES384 => kty == Some("EC") && crv == Some("P-384"),
        A::EdDSA => kty == Some("OKP") && crv == Some("Ed25519"),
        _ => false,
    };
    if !fits {
        return Err(bad);
    }
    let parsed: Jwk =
        serde_json::from_value(Value::Object(jwk.clone())).map_err(|_| bad.clone())?;
    let key = DecodingKey::from_jwk(&parsed).map_err(|_| bad.clone())?;
    check_strength(alg, &key).map_err(|_| bad.clone())?;
    let entry = KeyEntry::new(None, AlgSet::of(alg), key);
    if !entry.is_usable() {
        return Err(bad);
    }
    Ok(entry)
}
