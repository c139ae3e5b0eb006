use http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use std::sync::{Arc, LazyLock};

use http::{HeaderMap, HeaderValue, Response};

use crate::AuthError;

/// Turns a rejection into a response with body type `B`: how a refused request is answered.
///
/// The default, [`Rfc6750`], writes what RFC 6750 §3 prescribes for HTTP callers and a
/// trailers-only gRPC response for gRPC callers (`content-type: application/grpc*`), whose
/// clients read `grpc-status` rather than the HTTP status:
///
/// | reason | HTTP | `WWW-Authenticate` | gRPC |
/// |---|---|---|---|
/// | no token | 401 | `Bearer realm="…"` | 16 `UNAUTHENTICATED` |
/// | bad token (signature, expiry, claims, …) | 401 | `Bearer realm="…", error="invalid_token", error_description="…"` | 16 |
/// | malformed request (two tokens, bad syntax) | 400 | `…, error="invalid_request", …` | 16 |
/// | missing scope or role (`RequireClaims`) | 403 | `…, error="insufficient_scope", …, scope="…"` | 7 `PERMISSION_DENIED` |
/// | cookie-authenticated write without CSRF proof | 403 | none | 7 |
/// | key source or revocation store unreachable | 503 + `Retry-After` | none | 14 `UNAVAILABLE` |
/// | middleware wired wrongly | 500 | none | 13 `INTERNAL` |
///
/// The body is empty (`B::default()`), so the layer works with any body type that has a
/// default: axum's, tonic's, and `http_body_util::Full`/`Empty`.
///
/// A different shape, say a JSON problem document, comes from an own [`ErrorResponder`]:
///
/// ```
/// use http::{HeaderMap, Response, StatusCode};
/// use tower_jwt_auth::{AuthError, ErrorResponder, JwtAuthLayer};
///
/// #[derive(Clone)]
/// struct Json;
///
/// impl ErrorResponder<String> for Json {
///     fn respond(&self, error: &AuthError, _request: &HeaderMap) -> Response<String> {
///         let mut res = Response::new(format!(r#"{{"error":"{}"}}"#, error.reason()));
///         *res.status_mut() = error.status();
///         res
///     }
/// }
///
/// #[derive(Clone, serde::Deserialize)]
/// struct MyClaims { sub: String }
///
/// let layer = JwtAuthLayer::<MyClaims>::builder()
///     .hs256(b"an example secret that is 32 bytes+")
///     .responder(Json)
///     .build()
///     .unwrap();
/// # let _ = layer;
/// ```
pub trait ErrorResponder<B>: Send + Sync + 'static {
    /// The response for `error`; `request` holds the refused request's headers (for example
    /// to tell gRPC callers apart). Must not echo the token.
    fn respond(&self, error: &AuthError, request: &HeaderMap) -> Response<B>;
}

/// The RFC 6750 §3 responder (and gRPC status for gRPC callers).
#[derive(Debug, Clone)]
pub struct Rfc6750 {
    realm: Arc<str>,
    /// The challenge of every fixed reason, by `AuthError::slot`: a refusal clones a prepared
    /// header instead of formatting one.
    challenges: Arc<[HeaderValue]>,
}

impl Default for Rfc6750 {
    fn default() -> Self {
        static DEFAULT: LazyLock<Rfc6750> = LazyLock::new(|| Rfc6750::with_realm("api"));
        DEFAULT.clone()
    }
}

impl Rfc6750 {
    /// A responder naming `realm` in its challenges (RFC 6750 §3). Quotes and backslashes in
    /// the realm are escaped.
    pub fn with_realm(realm: impl Into<String>) -> Rfc6750 {
        let realm: Arc<str> = realm.into().into();
        let challenges = AuthError::FIXED
            .iter()
            .map(|e| build_challenge(&realm, e))
            .collect();
        Rfc6750 { realm, challenges }
    }

    /// The `WWW-Authenticate` challenge for `error`.
    pub fn challenge(&self, error: &AuthError) -> HeaderValue {
        match error.slot().and_then(|i| self.challenges.get(i)) {
            Some(prepared) => prepared.clone(),
            None => build_challenge(&self.realm, error),
        }
    }
}

fn build_challenge(realm: &str, error: &AuthError) -> HeaderValue {
    let scope = match error {
        AuthError::InsufficientScope { scope } => Some(scope.as_str()),
        _ => None,
    };
    challenge(realm, error.error_code(), &error.to_string(), scope)
}

/// Builds `Bearer realm="…"[, error="…", error_description="…"][, scope="…"]`.
pub(crate) fn challenge(
    realm: &str,
    code: Option<&str>,
    description: &str,
    scope: Option<&str>,
) -> HeaderValue {
    let mut v = String::with_capacity(96);
    v.push_str("Bearer realm=\"");
    push_quoted(&mut v, realm);
    v.push('"');
    if let Some(code) = code {
        v.push_str(", error=\"");
        v.push_str(code);
        v.push_str("\", error_description=\"");
        push_quoted(&mut v, description);
        v.push('"');
    }
    if let Some(scope) = scope {
        v.push_str(", scope=\"");
        push_quoted(&mut v, scope);
        v.push('"');
    }
    // Every byte pushed is visible ASCII or a space (push_quoted drops the rest).
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
}

/// RFC 9110 §5.6.4 quoted-string content; RFC 6750 §3 limits the values to %x20-21 / %x23-5B /
/// %x5D-7E, so `"` and `\` are escaped and anything else outside visible ASCII is dropped.
fn push_quoted(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => {}
        }
    }
}

/// True for gRPC requests (gRPC over HTTP/2 spec: `application/grpc` and its `+proto` etc.).
pub fn is_grpc(request: &HeaderMap) -> bool {
    request
        .get(CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
}

/// A trailers-only gRPC response: HTTP 200 with `grpc-status` and `grpc-message` headers.
pub(crate) fn grpc_response<B: Default>(status: u16, message: &str) -> Response<B> {
    let mut res = Response::new(B::default());
    let headers = res.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(status));
    // Our messages are fixed ASCII text, which needs no percent-encoding.
    if let Ok(msg) = HeaderValue::from_str(message) {
        headers.insert("grpc-message", msg);
    }
    res
}

impl<B: Default> ErrorResponder<B> for Rfc6750 {
    fn respond(&self, error: &AuthError, request: &HeaderMap) -> Response<B> {
        if is_grpc(request) {
            return grpc_response(error.grpc_status(), &error.to_string());
        }
        let mut res = Response::new(B::default());
        *res.status_mut() = error.status();
        if error.has_challenge() {
            res.headers_mut()
                .insert(WWW_AUTHENTICATE, self.challenge(error));
        }
        if let Some(secs) = error.retry_after() {
            res.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    #[test]
    fn challenges() {
        let r = Rfc6750::with_realm("my \"realm\"");
        assert_eq!(
            r.challenge(&AuthError::MissingToken),
            "Bearer realm=\"my \\\"realm\\\"\""
        );
        assert_eq!(
            r.challenge(&AuthError::Expired),
            "Bearer realm=\"my \\\"realm\\\"\", error=\"invalid_token\", error_description=\"token expired\""
        );
    }

    #[test]
    fn prepared_challenges_match_the_formatted_ones() {
        let r = Rfc6750::with_realm("r");
        for (i, error) in AuthError::FIXED.iter().enumerate() {
            assert_eq!(error.slot(), Some(i), "{error:?}");
            assert_eq!(r.challenge(error), build_challenge("r", error), "{error:?}");
        }
        let scope = AuthError::InsufficientScope {
            scope: "admin".into(),
        };
        assert!(
            r.challenge(&scope)
                .to_str()
                .unwrap()
                .ends_with("scope=\"admin\"")
        );
    }

    #[test]
    fn grpc() {
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/grpc+proto"),
        );
        let res: Response<()> = Rfc6750::default().respond(&AuthError::Expired, &h);
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["grpc-status"], "16");
    }
}
