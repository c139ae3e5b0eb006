//! One test per secure default: what a layer does when the user configured nothing more than
//! a key. Each test also shows the opt-out (or opt-in) that changes the default, so a test
//! fails if the default silently flips.

use crate::common;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use http::{Method, Request, StatusCode, header};
use serde_json::json;
use tower_jwt_auth::revocation::{MemoryRevocation, Revocation, RevocationError, TokenId};
use tower_jwt_auth::{
    Algorithm, AuthError, BuildError, DEFAULT_MAX_TOKEN_SIZE, JwtAuthBuilder, JwtAuthLayer, Key,
};

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// A refusal with exactly the challenge `Bearer realm="api", error="invalid_token",
/// error_description="<reason>"`, the inner service untouched.
#[track_caller]
fn assert_refused_exactly(out: &Outcome, reason: &AuthError) {
    assert_invalid_token(out, std::slice::from_ref(reason));
    let want =
        format!("Bearer realm=\"api\", error=\"invalid_token\", error_description=\"{reason}\"");
    assert_eq!(out.challenge(), want);
}

/// A layer with nothing but an HS256 key: every default in force.
fn plain() -> JwtAuthLayer<TestClaims> {
    builder().build().unwrap()
}

fn builder() -> JwtAuthBuilder<TestClaims> {
    JwtAuthLayer::<TestClaims>::builder().hs256(SECRET)
}

fn verify(layer: &JwtAuthLayer<TestClaims>, token: &str) -> Result<String, AuthError> {
    layer.verify(token).map(|c| c.sub.clone())
}

/// An HS256 token with `header` as given and the default claims with `overrides`.
fn token_with_header(header: serde_json::Value, overrides: serde_json::Value) -> String {
    sign_raw(
        &header,
        &claims_with(overrides),
        Algorithm::HS256,
        &hs256_key(),
    )
}

// ---------------------------------------------------------------------------------------------
// Claims
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn exp_is_required_by_default() {
    let no_exp = hs256_token(json!({ "exp": null }));
    assert_eq!(verify(&plain(), &no_exp), Err(AuthError::MissingClaim));
    assert_refused_exactly(
        &send(&plain(), bearer(&no_exp)).await,
        &AuthError::MissingClaim,
    );
    // Opt-out, by name only.
    let lax = builder().allow_missing_exp().build().unwrap();
    assert_eq!(verify(&lax, &no_exp).as_deref(), Ok("alice"));
    // An expired token is still refused with the opt-out.
    let expired = hs256_token(json!({ "exp": now() - 3600 }));
    assert_eq!(verify(&lax, &expired), Err(AuthError::Expired));
}

#[tokio::test]
async fn nbf_is_checked_by_default() {
    let future = hs256_token(json!({ "nbf": now() + 3600 }));
    assert_eq!(verify(&plain(), &future), Err(AuthError::NotYetValid));
    assert_refused_exactly(
        &send(&plain(), bearer(&future)).await,
        &AuthError::NotYetValid,
    );
    let past = hs256_token(json!({ "nbf": now() - 3600 }));
    assert_eq!(verify(&plain(), &past).as_deref(), Ok("alice"));
    // A wrongly typed nbf is refused, not skipped.
    let typed = hs256_token(json!({ "nbf": (now() + 3600).to_string() }));
    assert_eq!(verify(&plain(), &typed), Err(AuthError::MalformedClaims));
}

#[tokio::test]
async fn iss_and_aud_are_required_once_configured() {
    let strict = builder().issuer(ISSUER).audience(AUDIENCE).build().unwrap();
    let good = hs256_token(json!({}));
    assert_eq!(verify(&strict, &good).as_deref(), Ok("alice"));
    // Absent: refused (jsonwebtoken alone checks them only when present).
    for missing in ["iss", "aud"] {
        let token = hs256_token(json!({ missing: null }));
        assert_eq!(
            verify(&strict, &token),
            Err(AuthError::MissingClaim),
            "{missing}"
        );
    }
    let wrong_iss = hs256_token(json!({ "iss": "https://evil.example" }));
    assert_eq!(verify(&strict, &wrong_iss), Err(AuthError::WrongIssuer));
    let wrong_aud = hs256_token(json!({ "aud": ["other-api"] }));
    assert_eq!(verify(&strict, &wrong_aud), Err(AuthError::WrongAudience));
    assert_refused_exactly(
        &send(&strict, bearer(&wrong_aud)).await,
        &AuthError::WrongAudience,
    );
    // Not configured: not required (the user has said nothing about them).
    let bare = hs256_token(json!({ "iss": null, "aud": null }));
    assert_eq!(verify(&plain(), &bare).as_deref(), Ok("alice"));
}

#[tokio::test]
async fn typ_is_checked_once_configured() {
    let at = builder().token_type("at+jwt").build().unwrap();
    let typed = |typ: Option<&str>| match typ {
        Some(t) => token_with_header(json!({ "alg": "HS256", "typ": t }), json!({})),
        None => token_with_header(json!({ "alg": "HS256" }), json!({})),
    };
    for ok in ["at+jwt", "application/at+jwt", "AT+JWT"] {
        assert_eq!(
            verify(&at, &typed(Some(ok))).as_deref(),
            Ok("alice"),
            "{ok}"
        );
    }
    for bad in [Some("JWT"), Some("refresh+jwt"), Some(""), None] {
        assert_eq!(
            verify(&at, &typed(bad)),
            Err(AuthError::WrongType),
            "{bad:?}"
        );
    }
    assert_refused_exactly(
        &send(&at, bearer(&typed(Some("JWT")))).await,
        &AuthError::WrongType,
    );
    // Not configured: any typ (or none) is fine.
    for any in [Some("JWT"), None] {
        assert_eq!(verify(&plain(), &typed(any)).as_deref(), Ok("alice"));
    }
}

/// A token issued in the future would outlive a subject revocation's "not before", which
/// compares `iat`.
#[tokio::test]
async fn iat_in_the_future_is_refused_by_default() {
    let future = hs256_token(json!({ "iat": now() + 3600 }));
    assert_eq!(verify(&plain(), &future), Err(AuthError::NotYetValid));
    assert_refused_exactly(
        &send(&plain(), bearer(&future)).await,
        &AuthError::NotYetValid,
    );
    // Within the leeway it is clock skew, not a future token.
    let skewed = hs256_token(json!({ "iat": now() + 30 }));
    assert_eq!(verify(&plain(), &skewed).as_deref(), Ok("alice"));
    // The leeway is the only setting that moves it.
    let wide = builder().leeway(Duration::from_secs(7200)).build().unwrap();
    assert_eq!(verify(&wide, &future).as_deref(), Ok("alice"));
}

#[tokio::test]
async fn leeway_defaults_to_60_seconds() {
    let layer = plain();
    // 30 s on the wrong side of exp / nbf: inside the leeway (margins keep the test stable).
    let just_expired = hs256_token(json!({ "exp": now() - 30 }));
    assert_eq!(verify(&layer, &just_expired).as_deref(), Ok("alice"));
    let nearly_valid = hs256_token(json!({ "nbf": now() + 30 }));
    assert_eq!(verify(&layer, &nearly_valid).as_deref(), Ok("alice"));
    // 90 s: beyond it.
    let expired = hs256_token(json!({ "exp": now() - 90 }));
    assert_eq!(verify(&layer, &expired), Err(AuthError::Expired));
    let early = hs256_token(json!({ "nbf": now() + 90 }));
    assert_eq!(verify(&layer, &early), Err(AuthError::NotYetValid));
    // The setting moves it.
    let tight = builder().leeway(Duration::ZERO).build().unwrap();
    assert_eq!(verify(&tight, &just_expired), Err(AuthError::Expired));
}

// ---------------------------------------------------------------------------------------------
// Token form
// ---------------------------------------------------------------------------------------------

/// A valid token of exactly `len` bytes (padded through a custom claim).
fn token_of_len(len: usize) -> String {
    for pad in 0..len {
        let token = hs256_token(json!({ "pad": "x".repeat(pad) }));
        if token.len() == len {
            return token;
        }
        if token.len() > len {
            break;
        }
    }
    // Base64url cannot end on every length; shift by one byte of `sub` and try again.
    for pad in 0..len {
        let token = hs256_token(json!({ "pad": "x".repeat(pad), "sub": "alice", "x": 1 }));
        if token.len() == len {
            return token;
        }
    }
    panic!("no token of {len} bytes");
}

#[tokio::test]
async fn token_size_cap_is_8_kib_by_default() {
    assert_eq!(DEFAULT_MAX_TOKEN_SIZE, 8192);
    let layer = plain();
    // Exactly the cap: passes the size check (and, being valid, is accepted).
    let at_cap = token_of_len(8192);
    assert_eq!(at_cap.len(), 8192);
    assert_eq!(verify(&layer, &at_cap).as_deref(), Ok("alice"));
    assert_accepted(&send(&layer, bearer(&at_cap)).await);
    // One byte more: refused before anything is decoded.
    let over = format!("{at_cap}A");
    assert_eq!(over.len(), 8193);
    assert_eq!(verify(&layer, &over), Err(AuthError::TokenTooLarge));
    assert_eq!(layer.verify_signature(&over), Err(AuthError::TokenTooLarge));
    assert_refused_exactly(
        &send(&layer, bearer(&over)).await,
        &AuthError::TokenTooLarge,
    );
    // Far more: the same, cheaply.
    let huge = format!("{at_cap}.{}", "A".repeat(1 << 20));
    assert_eq!(verify(&layer, &huge), Err(AuthError::TokenTooLarge));
}

#[tokio::test]
async fn crit_header_is_rejected() {
    // RFC 7515 §4.1.11: a recipient must refuse `crit` extensions it does not understand; the
    // layer understands none, so any `crit` is refused, even an empty or a registered one.
    for crit in [json!(["exp"]), json!(["b64"]), json!([]), json!("x")] {
        let token = token_with_header(
            json!({ "alg": "HS256", "crit": crit, "exp": now() + 60, "b64": true }),
            json!({}),
        );
        assert_eq!(
            verify(&plain(), &token),
            Err(AuthError::CriticalHeader),
            "{crit}"
        );
        assert_refused_exactly(
            &send(&plain(), bearer(&token)).await,
            &AuthError::CriticalHeader,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Sources
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn query_parameter_tokens_are_ignored_by_default() {
    let token = hs256_token(json!({}));
    let req = || {
        Request::get(format!("/resource?access_token={token}"))
            .body(String::new())
            .unwrap()
    };
    // Not read: the request has no token (401 without an error code, RFC 6750 §3.1).
    let out = send(&plain(), req()).await;
    assert_eq!(out.status, StatusCode::UNAUTHORIZED);
    assert_eq!(out.challenge(), "Bearer realm=\"api\"");
    assert_eq!(out.hits, 0);
    // Opt-in reads it.
    let query = builder().token_from_query("access_token").build().unwrap();
    assert_accepted(&send(&query, req()).await);
}

#[tokio::test]
async fn authentication_is_required_by_default() {
    let out = send(&plain(), Request::get("/").body(String::new()).unwrap()).await;
    assert_eq!(out.status, StatusCode::UNAUTHORIZED);
    assert_eq!(out.challenge(), "Bearer realm=\"api\"");
    assert_eq!(out.hits, 0);
    let optional = builder().optional().build().unwrap();
    let out = send(&optional, Request::get("/").body(String::new()).unwrap()).await;
    assert_eq!(
        (out.status, out.body.as_str()),
        (StatusCode::OK, "<no claims>")
    );
}

// ---------------------------------------------------------------------------------------------
// Keys, refused at build time
// ---------------------------------------------------------------------------------------------

#[test]
fn weak_hmac_secret_is_refused_at_build() {
    for (alg, min) in [
        (Algorithm::HS256, 32),
        (Algorithm::HS384, 48),
        (Algorithm::HS512, 64),
    ] {
        let short = vec![7u8; min - 1];
        let err = JwtAuthLayer::<TestClaims>::builder()
            .key(Key::hmac(alg, &short))
            .build()
            .unwrap_err();
        assert!(
            matches!(err, BuildError::WeakSecret { len, min: m, .. } if len == min - 1 && m == min),
            "{alg:?}: {err:?}"
        );
        let enough = vec![7u8; min];
        assert!(
            JwtAuthLayer::<TestClaims>::builder()
                .key(Key::hmac(alg, &enough))
                .build()
                .is_ok(),
            "{alg:?} with {min} bytes"
        );
    }
    let empty = JwtAuthLayer::<TestClaims>::builder().hs256(b"").build();
    assert!(matches!(empty, Err(BuildError::WeakSecret { len: 0, .. })));
}

#[test]
fn rsa_under_2048_bits_is_refused_at_build() {
    for (file, bits) in [("rsa_1024_public.pem", 1024), ("rsa_2044_public.pem", 2044)] {
        let err = JwtAuthLayer::<TestClaims>::builder()
            .rs256_pem(data(file))
            .build()
            .unwrap_err();
        assert!(
            matches!(err, BuildError::WeakRsaKey { bits: b } if b == bits),
            "{file}: {err:?}"
        );
    }
    assert!(
        JwtAuthLayer::<TestClaims>::builder()
            .rs256_pem(data("rsa_2048_public.pem"))
            .build()
            .is_ok()
    );
}

// ---------------------------------------------------------------------------------------------
// Browser-facing defaults
// ---------------------------------------------------------------------------------------------

fn preflight() -> Request<String> {
    Request::builder()
        .method(Method::OPTIONS)
        .uri("/resource")
        .header(header::ORIGIN, "https://app.example")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .body(String::new())
        .unwrap()
}

#[tokio::test]
async fn cors_preflight_is_authenticated_by_default() {
    // A `CorsLayer` outside the layer answers preflights before they arrive; one that does
    // arrive is a request like any other.
    let out = send(&plain(), preflight()).await;
    assert_eq!(out.status, StatusCode::UNAUTHORIZED);
    assert_eq!(out.hits, 0);
    // Opt-in, for a `CorsLayer` inside the layer: it passes, without claims.
    let lenient = builder().pass_cors_preflight().build().unwrap();
    let out = send(&lenient, preflight()).await;
    assert_eq!(out.status, StatusCode::OK);
    assert_eq!(out.hits, 1);
    assert_eq!(out.body, "<no claims>");
}

fn cookie_request(method: Method, token: &str, origin: Option<&str>) -> Request<String> {
    let mut req = Request::builder()
        .method(method)
        .uri("/resource")
        .header(header::HOST, "api.example")
        .header(header::COOKIE, format!("theme=dark; access_token={token}"));
    if let Some(origin) = origin {
        req = req.header(header::ORIGIN, origin);
    }
    req.body(String::new()).unwrap()
}

#[tokio::test]
async fn csrf_protection_is_on_by_default_with_cookie_sources() {
    let token = hs256_token(json!({}));
    let cookies = builder().token_from_cookie("access_token").build().unwrap();
    // A state-changing request carried by cookie alone, with no proof of origin: 403.
    for (method, origin) in [
        (Method::POST, None),
        (Method::DELETE, Some("https://evil.example")),
        (Method::PUT, Some("null")),
    ] {
        let out = send(&cookies, cookie_request(method.clone(), &token, origin)).await;
        assert_eq!(out.status, StatusCode::FORBIDDEN, "{method} {origin:?}");
        assert_eq!(out.hits, 0);
    }
    // Same origin, or a safe method: passes.
    assert_accepted(
        &send(
            &cookies,
            cookie_request(Method::POST, &token, Some("https://api.example")),
        )
        .await,
    );
    assert_accepted(&send(&cookies, cookie_request(Method::GET, &token, None)).await);
    // The same token in the Authorization header needs no CSRF proof.
    let mut req = cookie_request(Method::POST, &token, None);
    req.headers_mut().insert(
        header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    assert_accepted(&send(&cookies, req).await);
    // Opt-out, by name only.
    let off = builder()
        .token_from_cookie("access_token")
        .disable_csrf_protection()
        .build()
        .unwrap();
    assert_accepted(&send(&off, cookie_request(Method::POST, &token, None)).await);
}

// ---------------------------------------------------------------------------------------------
// Revocation
// ---------------------------------------------------------------------------------------------

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A store that can never be reached.
struct Unreachable;

impl Revocation for Unreachable {
    fn is_revoked<'a>(&'a self, _: TokenId<'a>) -> BoxFut<'a, Result<bool, RevocationError>> {
        Box::pin(async { Err(RevocationError("connection refused".into())) })
    }
    fn retention_margin(&self) -> std::time::Duration {
        tower_jwt_auth::revocation::DEFAULT_RETENTION_MARGIN
    }
}

#[tokio::test]
async fn revocation_fails_closed_by_default() {
    let token = hs256_token(json!({ "jti": "t-1" }));
    let closed = builder().revocation(Arc::new(Unreachable)).build().unwrap();
    let out = send(&closed, bearer(&token)).await;
    assert_eq!(out.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(out.headers[header::RETRY_AFTER], "1");
    assert_eq!(out.hits, 0);
    // A token without `jti` is not waved through either.
    let no_jti = hs256_token(json!({}));
    let out = send(&closed, bearer(&no_jti)).await;
    assert_eq!(out.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(out.hits, 0);
    // Opt-out, by name only.
    let open = builder()
        .revocation(Arc::new(Unreachable))
        .revocation_fail_open()
        .build()
        .unwrap();
    assert_accepted(&send(&open, bearer(&token)).await);
}

/// With a store configured, a token with neither `jti` nor `sub` is refused: no revocation
/// could ever reach it. Without a store it passes (the claims type here needs no `sub`).
#[tokio::test]
async fn unrevocable_tokens_are_refused_while_a_store_is_configured() {
    let layer = |store: Option<Arc<MemoryRevocation>>| {
        let b = JwtAuthLayer::<serde_json::Value>::builder().hs256(SECRET);
        match store {
            Some(store) => b.revocation(store),
            None => b,
        }
        .build()
        .unwrap()
    };
    let with_store = layer(Some(Arc::new(MemoryRevocation::new())));
    let anonymous = hs256_token(json!({ "sub": null }));
    assert_eq!(
        with_store.verify(&anonymous).err(),
        Some(AuthError::MissingClaim)
    );
    assert!(layer(None).verify(&anonymous).is_ok());
    // Either claim makes a token revocable.
    assert!(with_store.verify(&hs256_token(json!({}))).is_ok());
    let jti_only = hs256_token(json!({ "sub": null, "jti": "j-1" }));
    assert!(with_store.verify(&jti_only).is_ok());
}

/// A store forgets an entry its retention margin after the token's `exp`; a layer that still
/// accepted the token later than that (a longer leeway) would let it back in.
#[test]
fn a_leeway_longer_than_the_stores_retention_margin_is_refused_at_build() {
    let store = || Arc::new(MemoryRevocation::new().retain_past_expiry(Duration::from_secs(60)));
    let err = builder()
        .leeway(Duration::from_secs(61))
        .revocation(store())
        .build()
        .err();
    assert!(
        matches!(err, Some(BuildError::InvalidSetting(m)) if m.contains("retention margin")),
        "{err:?}"
    );
    assert!(
        builder()
            .leeway(Duration::from_secs(60))
            .revocation(store())
            .build()
            .is_ok()
    );
}
