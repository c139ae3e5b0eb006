//! The `Set-Cookie` header for an access token.

use std::net::IpAddr;

use http::HeaderValue;

use super::IssuedToken;
use crate::BuildError;

/// Builds the `Set-Cookie` header that stores an access token in the browser:
/// `HttpOnly` (page scripts cannot read it), `Secure` (never over plain http),
/// `SameSite=Strict` (not sent on cross-site requests), `Path=/`, and `Max-Age` equal to the
/// token's remaining lifetime (RFC 6265 §4.1).
///
/// `Secure` can be dropped only for a server bound to a loopback address, where a browser on
/// the same machine talks plain http during development.
///
/// ```
/// use tower_jwt_auth::issue::AccessTokenCookie;
/// use tower_jwt_auth::issue::TokenIssuer;
///
/// let issued = TokenIssuer::hs256(b"an example secret that is 32 bytes+").unwrap()
///     .issue("alice", &serde_json::json!({})).unwrap();
/// let header = AccessTokenCookie::new("access_token", &issued).to_header_value();
/// let text = header.to_str().unwrap();
/// assert!(text.contains("HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=900"));
///
/// let dev = AccessTokenCookie::new("access_token", &issued)
///     .insecure_on_loopback("127.0.0.1".parse().unwrap())
///     .unwrap();
/// assert!(!dev.to_header_value().to_str().unwrap().contains("Secure"));
/// assert!(AccessTokenCookie::new("access_token", &issued)
///     .insecure_on_loopback("203.0.113.7".parse().unwrap())
///     .is_err());
/// ```
#[derive(Debug, Clone)]
pub struct AccessTokenCookie {
    name: String,
    value: String,
    max_age: u64,
    secure: bool,
}

impl AccessTokenCookie {
    /// The cookie `name` holding `token`.
    pub fn new(name: impl Into<String>, token: &IssuedToken) -> AccessTokenCookie {
        AccessTokenCookie {
            name: name.into(),
            value: token.token.clone(),
            max_age: token.expires_in,
            secure: true,
        }
    }

    /// A cookie that deletes `name` from the browser (logout).
    pub fn removal(name: impl Into<String>) -> AccessTokenCookie {
        AccessTokenCookie {
            name: name.into(),
            value: String::new(),
            max_age: 0,
            secure: true,
        }
    }

    /// Leaves out `Secure`, which only a server listening on a loopback address may do.
    pub fn insecure_on_loopback(
        mut self,
        bound_to: IpAddr,
    ) -> Result<AccessTokenCookie, BuildError> {
        if !bound_to.is_loopback() {
            return Err(BuildError::InvalidSetting(
                "cookies without Secure are only for loopback servers",
            ));
        }
        self.secure = false;
        Ok(self)
    }

    /// The header value.
    pub fn to_header_value(&self) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let text = format!(
            "{}={}; HttpOnly{secure}; SameSite=Strict; Path=/; Max-Age={}",
            self.name, self.value, self.max_age
        );
        // Token and name are base64url/tchar text, always a valid header value.
        HeaderValue::from_str(&text)
            .unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
    }
}
