//! The token's confirmation claim, `cnf` (RFC 7800 §3.1): the key (`jkt`, RFC 9449 §6.1) or
//! client certificate (`x5t#S256`, RFC 8705 §3.1) a sender-constrained token is bound to.

use serde::Deserialize;

use crate::AuthError;
use crate::token::decode;

/// The confirmation members the layer checks.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Confirmation {
    /// RFC 9449 §6.1: the RFC 7638 thumbprint of the DPoP key.
    #[cfg_attr(not(feature = "dpop"), allow(dead_code))]
    pub jkt: Option<String>,
    /// RFC 8705 §3.1: base64url(SHA-256(DER of the client certificate)).
    #[serde(rename = "x5t#S256")]
    pub x5t_s256: Option<String>,
}

/// The token's `cnf`, read from its payload segment (an empty one when it has none). The
/// token's signature is checked by the layer's verifier, which refuses the request if it
/// fails, so a request passes only when this value was signed by the issuer. `Err` for a
/// payload that is not a JSON object, or whose `cnf` is not an object with string members.
pub(crate) fn read(token: &str) -> Result<Confirmation, AuthError> {
    #[derive(Deserialize)]
    struct Payload {
        cnf: Option<Confirmation>,
    }
    let payload = token.split('.').nth(1).ok_or(AuthError::Malformed)?;
    let bytes = decode(payload, AuthError::MalformedClaims)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| AuthError::MalformedClaims)?;
    let payload: Payload = serde_json::from_str(text).map_err(|_| AuthError::MalformedClaims)?;
    Ok(payload.cnf.unwrap_or_default())
}
