use http::header::{CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use std::marker::PhantomData;
use std::sync::{Arc, LazyLock};

use http::{HeaderMap, HeaderValue, Response};

use crate::AuthError;
use crate::claims::LayerId;

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
/// [`ProblemJson`] answers HTTP callers with an RFC 9457 `application/problem+json` document
/// instead. Any other shape comes from an own [`ErrorResponder`]; [`grpc_response`] gives it
/// the built-in answer for gRPC callers in one call:
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
pub(crate) fn push_quoted(out: &mut String, s: &str) {
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

/// The trailers-only gRPC response for `error`, exactly as [`Rfc6750`] and [`ProblemJson`]
/// answer gRPC callers: HTTP 200, `content-type: application/grpc`, `grpc-status`
/// ([`AuthError::grpc_status`]) and `grpc-message` (the reason's fixed text, never the token),
/// and an empty body.
///
/// An own [`ErrorResponder`] that answers HTTP callers in its own way hands gRPC callers
/// ([`is_grpc`]) to this function, and they get what the built-in responders send:
///
/// ```
/// use http::{HeaderMap, HeaderValue, Response};
/// use tower_jwt_auth::{AuthError, ErrorResponder, Rfc6750, grpc_response, is_grpc};
///
/// #[derive(Clone)]
/// struct Plain;
///
/// impl ErrorResponder<String> for Plain {
///     fn respond(&self, error: &AuthError, request: &HeaderMap) -> Response<String> {
///         if is_grpc(request) {
///             return grpc_response(error);
///         }
///         let mut res = Response::new(format!("refused: {}", error.reason()));
///         *res.status_mut() = error.status();
///         res
///     }
/// }
///
/// let mut grpc = HeaderMap::new();
/// grpc.insert("content-type", HeaderValue::from_static("application/grpc"));
/// let ours = Plain.respond(&AuthError::Expired, &grpc);
/// let builtin: Response<String> = Rfc6750::default().respond(&AuthError::Expired, &grpc);
/// assert_eq!(ours.status(), builtin.status()); // 200: gRPC carries the status in a header
/// assert_eq!(ours.headers(), builtin.headers());
/// assert_eq!(ours.headers()["grpc-status"], "16"); // UNAUTHENTICATED
/// assert_eq!(ours.headers()["grpc-message"], "token expired");
/// ```
pub fn grpc_response<B: Default>(error: &AuthError) -> Response<B> {
    let mut res = Response::new(B::default());
    let headers = res.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-status", HeaderValue::from(error.grpc_status()));
    // Our messages are fixed ASCII text, which needs no percent-encoding.
    if let Ok(msg) = HeaderValue::from_str(&error.to_string()) {
        headers.insert("grpc-message", msg);
    }
    res
}

/// The headers both built-in responders put on an HTTP refusal: the status, the RFC 6750
/// challenge where there is one, and `Retry-After` where a retry may succeed.
fn http_refusal<B>(body: B, challenges: &Rfc6750, error: &AuthError) -> Response<B> {
    let mut res = Response::new(body);
    *res.status_mut() = error.status();
    if error.has_challenge() {
        res.headers_mut()
            .insert(WWW_AUTHENTICATE, challenges.challenge(error));
    }
    if let Some(secs) = error.retry_after() {
        res.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    res
}

impl<B: Default> ErrorResponder<B> for Rfc6750 {
    fn respond(&self, error: &AuthError, request: &HeaderMap) -> Response<B> {
        if is_grpc(request) {
            return grpc_response(error);
        }
        http_refusal(B::default(), self, error)
    }
}

/// An RFC 9457 responder: refusals as `application/problem+json` documents.
///
/// The document has four members with fixed texts, never the token or anything else taken
/// from the request:
///
/// ```json
/// {"type":"about:blank","title":"Unauthorized","status":401,"detail":"token expired"}
/// ```
///
/// `title` is the status's reason phrase (RFC 9457 §4.2.1 for `about:blank`), `detail` the
/// reason's text ([`AuthError`]'s `Display`). Everything else is as with [`Rfc6750`]: the
/// same statuses, the RFC 6750 `WWW-Authenticate` challenge (naming the realm) on every 400,
/// 401 and `insufficient_scope` 403, `Retry-After` on a 503 where
/// [`AuthError::retry_after`] gives one, and gRPC callers ([`is_grpc`]) get the gRPC status
/// ([`grpc_response`]), not a document.
///
/// The body type needs `From<String>` (for the document) and `Default` (for gRPC): axum's
/// body, `String`, `http_body_util::Full<Bytes>` are fine.
///
/// ```
/// use tower_jwt_auth::{JwtAuthLayer, ProblemJson};
///
/// #[derive(serde::Deserialize)]
/// struct MyClaims { sub: String }
///
/// let layer = JwtAuthLayer::<MyClaims>::builder()
///     .hs256(b"an example secret that is 32 bytes+")
///     .responder(ProblemJson::with_realm("orders"))
///     .build()
///     .unwrap();
/// # let _ = layer;
/// ```
///
/// The `Claims` extractor and `RequireClaimsLayer` behind this layer answer in the same way.
#[derive(Debug, Clone, Default)]
pub struct ProblemJson {
    challenges: Rfc6750,
}

impl ProblemJson {
    /// A responder naming `realm` in its challenges (default `"api"`).
    pub fn with_realm(realm: impl Into<String>) -> ProblemJson {
        ProblemJson {
            challenges: Rfc6750::with_realm(realm),
        }
    }

    /// The problem document for `error`, as a JSON text.
    ///
    /// ```
    /// use tower_jwt_auth::{AuthError, ProblemJson};
    ///
    /// assert_eq!(
    ///     ProblemJson::document(&AuthError::MissingToken),
    ///     r#"{"type":"about:blank","title":"Unauthorized","status":401,"detail":"no bearer token"}"#,
    /// );
    /// ```
    pub fn document(error: &AuthError) -> String {
        /// The members in RFC 9457's order.
        #[derive(serde::Serialize)]
        struct Problem<'a> {
            r#type: &'static str,
            title: &'static str,
            status: u16,
            detail: &'a str,
        }
        let status = error.status();
        let detail = error.to_string();
        let problem = Problem {
            r#type: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: &detail,
        };
        // Serializing four plain members cannot fail; the fallback keeps the status anyway.
        serde_json::to_string(&problem)
            .unwrap_or_else(|_| format!(r#"{{"status":{}}}"#, status.as_u16()))
    }
}

impl<B: Default + From<String>> ErrorResponder<B> for ProblemJson {
    fn respond(&self, error: &AuthError, request: &HeaderMap) -> Response<B> {
        if is_grpc(request) {
            return grpc_response(error);
        }
        let mut res = http_refusal(B::from(Self::document(error)), &self.challenges, error);
        res.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        res
    }
}

/// The responder a [`JwtAuth`](crate::JwtAuth) for claims type `C` lends the handlers behind
/// it, in the request's extensions (keyed by `C` and the response body type `B`), so that the
/// `Claims<C>` extractor and `RequireClaims` for `C` answer as that layer does.
///
/// It names the layer that lent it, and counts only for that layer's claims or anonymous mark
/// ([`lent_by`](Self::lent_by)): one lent by a layer further out, which a nearer layer for `C`
/// did not replace (the nearer one lends none, or lends it for another body type), is not
/// used.
pub(crate) struct LayerResponder<C, B> {
    layer: LayerId,
    responder: Arc<dyn ErrorResponder<B>>,
    claims: PhantomData<fn() -> C>,
}

impl<C: 'static, B: 'static> LayerResponder<C, B> {
    pub(crate) fn new(layer: LayerId, responder: Arc<dyn ErrorResponder<B>>) -> Self {
        LayerResponder {
            layer,
            responder,
            claims: PhantomData,
        }
    }

    /// The responder `layer` lent, if it lent one for this body type.
    pub(crate) fn lent_by(
        extensions: &http::Extensions,
        layer: LayerId,
    ) -> Option<&Arc<dyn ErrorResponder<B>>> {
        extensions
            .get::<LayerResponder<C, B>>()
            .filter(|lent| lent.layer == layer)
            .map(|lent| &lent.responder)
    }
}

impl<C, B> Clone for LayerResponder<C, B> {
    fn clone(&self) -> Self {
        LayerResponder {
            layer: self.layer,
            responder: Arc::clone(&self.responder),
            claims: PhantomData,
        }
    }
}

impl<C, B> std::fmt::Debug for LayerResponder<C, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LayerResponder")
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
        let problem: Response<String> = ProblemJson::default().respond(&AuthError::Expired, &h);
        assert_eq!(problem.status(), StatusCode::OK);
        assert_eq!(problem.headers(), res.headers());
        assert_eq!(problem.body(), "");
    }

    #[test]
    fn problem_json() {
        let responder = ProblemJson::with_realm("orders");
        let http = HeaderMap::new();
        let scope = AuthError::InsufficientScope {
            scope: "admin".into(),
        };
        let cases = [
            (AuthError::Expired, 401, Some("invalid_token"), None),
            (AuthError::MissingToken, 401, None, None),
            (
                AuthError::MultipleTokens,
                400,
                Some("invalid_request"),
                None,
            ),
            (scope, 403, Some("insufficient_scope"), None),
            (AuthError::CsrfRejected, 403, None, None),
            (AuthError::RevocationUnavailable, 503, None, Some("1")),
            (AuthError::Misconfigured, 500, None, None),
        ];
        for (error, status, code, retry) in cases {
            let res: Response<String> = responder.respond(&error, &http);
            assert_eq!(res.status().as_u16(), status, "{error:?}");
            assert_eq!(res.headers()[CONTENT_TYPE], "application/problem+json");
            let doc: serde_json::Value = serde_json::from_str(res.body()).unwrap();
            assert_eq!(doc["status"], status, "{error:?}");
            assert_eq!(doc["type"], "about:blank");
            assert_eq!(doc["title"], res.status().canonical_reason().unwrap());
            assert_eq!(doc["detail"], error.to_string());
            assert_eq!(doc.as_object().unwrap().len(), 4);
            let rfc: Response<()> = Rfc6750::with_realm("orders").respond(&error, &http);
            assert_eq!(
                res.headers().get(WWW_AUTHENTICATE),
                rfc.headers().get(WWW_AUTHENTICATE),
                "{error:?}"
            );
            if let Some(code) = code {
                let challenge = res.headers()[WWW_AUTHENTICATE].to_str().unwrap();
                assert!(
                    challenge.starts_with("Bearer realm=\"orders\""),
                    "{challenge}"
                );
                assert!(challenge.contains(code), "{challenge}");
            }
            assert_eq!(
                res.headers().get(RETRY_AFTER).map(|v| v.to_str().unwrap()),
                retry,
                "{error:?}"
            );
        }
    }
}
