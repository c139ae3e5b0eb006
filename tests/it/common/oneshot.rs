//! One request through a layer in process (`tower::ServiceExt::oneshot`), around an inner
//! service that counts its calls and answers the `sub` of the claims the layer handed it: what
//! the layer decided, without a socket.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{HeaderMap, Request, Response, StatusCode, header};
use tower::{Layer, ServiceExt, service_fn};
use tower_jwt_auth::{AuthError, Claims, JwtAuthLayer};

use super::TestClaims;

/// What the inner service answers when the layer handed it no claims.
pub const NO_CLAIMS: &str = "<no claims>";

/// What came back for one request, and how often the inner service ran.
#[derive(Debug)]
pub struct Outcome {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The `sub` the inner service saw, or [`NO_CLAIMS`]; empty when the layer answered.
    pub body: String,
    pub hits: usize,
    /// Named in the assertions' messages (see [`Outcome::about`]).
    what: String,
}

impl Outcome {
    /// The `WWW-Authenticate` header, or `""`.
    pub fn challenge(&self) -> &str {
        self.headers
            .get(header::WWW_AUTHENTICATE)
            .map_or("", |v| v.to_str().expect("ASCII challenge"))
    }

    /// The value of `param="…"` in the challenge.
    pub fn param(&self, name: &str) -> Option<String> {
        let challenge = self.challenge();
        let start = challenge.find(&format!("{name}=\""))? + name.len() + 2;
        let end = challenge[start..].find('"')? + start;
        Some(challenge[start..end].to_owned())
    }

    /// The `sub` the inner service saw, if it ran.
    pub fn reached(&self) -> Option<&str> {
        (self.hits > 0).then_some(self.body.as_str())
    }

    /// Names what was sent, for the assertions' messages.
    pub fn about(mut self, what: &str) -> Outcome {
        self.what = what.to_owned();
        self
    }
}

/// Sends `req` through `layer` around a service that counts its calls and answers the `sub`
/// of the claims the layer handed it (or [`NO_CLAIMS`]).
pub async fn send<B: Send + 'static>(layer: &JwtAuthLayer<TestClaims>, req: Request<B>) -> Outcome {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let svc = layer.layer(service_fn(move |req: Request<B>| {
        h.fetch_add(1, Ordering::SeqCst);
        let sub = req
            .extensions()
            .get::<Claims<TestClaims>>()
            .map_or_else(|| NO_CLAIMS.to_owned(), |c| c.sub.clone());
        async move { Ok::<_, Infallible>(Response::new(sub)) }
    }));
    let res = svc.oneshot(req).await.expect("infallible");
    let (parts, body) = res.into_parts();
    Outcome {
        status: parts.status,
        headers: parts.headers,
        body,
        hits: hits.load(Ordering::SeqCst),
        what: String::new(),
    }
}

/// `GET /resource` with `token` as the bearer token.
pub fn bearer(token: &str) -> Request<String> {
    Request::get("/resource")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(String::new())
        .unwrap()
}

/// [`send`] of [`bearer`]`(token)`.
pub async fn send_bearer(layer: &JwtAuthLayer<TestClaims>, token: &str) -> Outcome {
    send(layer, bearer(token)).await
}

/// Asserts a pass: 200, the inner service ran once and saw `alice`.
#[track_caller]
pub fn assert_accepted(out: &Outcome) {
    let what = &out.what;
    assert_eq!(
        out.status,
        StatusCode::OK,
        "{what} challenge: {}",
        out.challenge()
    );
    assert_eq!(out.hits, 1, "{what}");
    assert_eq!(out.body, "alice", "{what}");
}

/// Asserts a rejection: `status`, `error=code`, an `error_description` among `reasons`
/// (unchecked when empty), and an untouched inner service.
#[track_caller]
pub fn assert_rejected(out: &Outcome, status: StatusCode, code: &str, reasons: &[AuthError]) {
    let what = &out.what;
    assert_eq!(out.status, status, "{what} challenge: {}", out.challenge());
    assert_eq!(
        out.param("error").as_deref(),
        Some(code),
        "{what} challenge: {}",
        out.challenge()
    );
    if !reasons.is_empty() {
        let got = out.param("error_description").unwrap_or_default();
        assert!(
            reasons.iter().any(|r| r.to_string() == got),
            "{what} error_description {got:?}, expected one of {:?}",
            reasons.iter().map(ToString::to_string).collect::<Vec<_>>()
        );
    }
    assert_eq!(out.hits, 0, "{what}: the inner service must not be reached");
}

/// [`assert_rejected`] with 401 `invalid_token`.
#[track_caller]
pub fn assert_invalid_token(out: &Outcome, reasons: &[AuthError]) {
    assert_rejected(out, StatusCode::UNAUTHORIZED, "invalid_token", reasons);
}
