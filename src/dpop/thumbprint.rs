//! JWK thumbprints (RFC 7638), the key identity a DPoP-bound token names in `cnf.jkt`
//! (RFC 9449 §6.1).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::backend::sha256;

/// The RFC 7638 §3 SHA-256 thumbprint of a public JWK, base64url without padding; `None`
/// when the key type is not RSA, EC or OKP or a required member is missing or not a string.
///
/// §3.2: the hash input is the JSON object of the key type's required members only (RSA: `e`,
/// `kty`, `n`; EC: `crv`, `kty`, `x`, `y`, §3.2.1; OKP: `crv`, `kty`, `x`, RFC 8037 §2), in
/// lexicographic order, without whitespace, each value as a JSON string.
pub(crate) fn thumbprint(jwk: &Map<String, Value>) -> Option<String> {
    let members: &[&str] = match jwk.get("kty")?.as_str()? {
        "RSA" => &["e", "kty", "n"],
        "EC" => &["crv", "kty", "x", "y"],
        "OKP" => &["crv", "kty", "x"],
        _ => return None,
    };
    let mut canonical = String::with_capacity(512);
    canonical.push('{');
    for (i, name) in members.iter().enumerate() {
        let value = jwk.get(*name)?.as_str()?;
        if i > 0 {
            canonical.push(',');
        }
        canonical.push('"');
        canonical.push_str(name);
        canonical.push_str("\":");
        // Serializing a string cannot fail; it escapes as RFC 7638 §3.3 requires.
        canonical.push_str(&serde_json::to_string(value).ok()?);
    }
    canonical.push('}');
    Some(URL_SAFE_NO_PAD.encode(sha256(canonical.as_bytes())?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// RFC 7638 §3.1's example key and its thumbprint.
    #[test]
    fn rfc_7638_example() {
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        assert_eq!(
            thumbprint(jwk.as_object().unwrap()).as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
    }

    #[test]
    fn only_required_members_count_and_unknown_types_have_none() {
        let a = json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        let b = json!({"x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "use": "sig", "crv": "Ed25519", "kty": "OKP", "kid": "k"});
        let ta = thumbprint(a.as_object().unwrap()).unwrap();
        assert_eq!(Some(ta), thumbprint(b.as_object().unwrap()));
        assert_eq!(
            thumbprint(json!({"kty": "oct", "k": "AAAA"}).as_object().unwrap()),
            None
        );
        assert_eq!(
            thumbprint(
                json!({"kty": "EC", "crv": "P-256", "x": "AA"})
                    .as_object()
                    .unwrap()
            ),
            None
        );
        assert_eq!(
            thumbprint(
                json!({"kty": "RSA", "e": 3, "n": "AA"})
                    .as_object()
                    .unwrap()
            ),
            None
        );
    }
}
