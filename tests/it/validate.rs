//! `JwtAuthBuilder::validate`: the application's own claim checks, through a real axum server.
//! A refusal is a 401 `invalid_token` from the layer's responder (never the handler), a pass
//! delivers the claims; the hooks compose with AND, run on a cache hit, and apply to every
//! tenant.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tower_jwt_auth::{Algorithm, JwtAuthLayer, Key, ProblemJson, Tenant};

use crate::common::*;

/// `/me` answering the claims as JSON behind `layer`: its URL and its count.
async fn claims_server(layer: JwtAuthLayer<TestClaims>) -> (String, Hits) {
    let hits = Hits::default();
    let app = Router::new()
        .route("/me", claims_json::<TestClaims>(&hits))
        .layer(layer);
    (format!("http://{}/me", serve(app).await), hits)
}

#[tokio::test]
async fn refusing_hook_is_401_invalid_token_and_passing_hook_delivers_the_claims() {
    let layer = hs256_builder::<TestClaims>()
        .validate(|c: &TestClaims| c.roles.iter().any(|r| r == "staff"))
        .build()
        .unwrap();
    let (url, hits) = claims_server(layer).await;

    let staff = hs256_token(json!({ "sub": "carol", "roles": ["staff", "admin"] }));
    let reply = fetch(&url, Some(&staff)).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let claims: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(
        claims,
        json!({ "sub": "carol", "roles": ["staff", "admin"] })
    );
    assert_eq!(hits.take(), 1);

    // A secret-looking claim value must not come back in the refusal.
    let guest = hs256_token(json!({ "sub": "mallory-7f3e", "roles": ["guest"] }));
    let reply = fetch(&url, Some(&guest)).await;
    reply.assert_invalid_token("claims not accepted");
    assert!(!reply.challenge().contains("mallory-7f3e"), "{reply:?}");
    assert!(!reply.challenge().contains("guest"), "{reply:?}");
    assert_eq!(hits.count(), 0, "a refused request reached the handler");
}

#[tokio::test]
async fn hooks_compose_with_and_and_come_after_the_claims_policy() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let layer = hs256_builder::<TestClaims>()
        .validate(move |_: &TestClaims| {
            counted.fetch_add(1, Ordering::SeqCst);
            true
        })
        .validate(|c: &TestClaims| c.sub.starts_with("emp-"))
        .validate(|c: &TestClaims| !c.roles.is_empty())
        .build()
        .unwrap();
    let (url, hits) = claims_server(layer).await;

    let both = hs256_token(json!({ "sub": "emp-1", "roles": ["user"] }));
    assert_eq!(fetch(&url, Some(&both)).await.status, StatusCode::OK);
    assert_eq!(hits.take(), 1);
    let first_only = hs256_token(json!({ "sub": "emp-2", "roles": [] }));
    let second_only = hs256_token(json!({ "sub": "bob", "roles": ["user"] }));
    for token in [first_only, second_only] {
        fetch(&url, Some(&token))
            .await
            .assert_invalid_token("claims not accepted");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // The signature and the claims policy refuse first, with their own reasons; the hooks never
    // see those tokens.
    let expired = hs256_token(json!({ "sub": "emp-3", "exp": now() - 3600 }));
    fetch(&url, Some(&expired))
        .await
        .assert_invalid_token("token expired");
    let wrong_aud = hs256_token(json!({ "sub": "emp-3", "aud": "other-api" }));
    fetch(&url, Some(&wrong_aud))
        .await
        .assert_invalid_token("wrong audience");
    let forged = tamper_signature(&both);
    fetch(&url, Some(&forged))
        .await
        .assert_invalid_token("invalid signature");
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(hits.count(), 0);
}

/// A revocation store that counts the questions it is asked and knows no revoked token.
struct Counting(Arc<AtomicUsize>);

impl tower_jwt_auth::revocation::Revocation for Counting {
    fn is_revoked<'a>(
        &'a self,
        _: tower_jwt_auth::revocation::TokenId<'a>,
    ) -> futures_util::future::BoxFuture<
        'a,
        Result<bool, tower_jwt_auth::revocation::RevocationError>,
    > {
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(false) })
    }

    fn retention_margin(&self) -> std::time::Duration {
        std::time::Duration::from_secs(3600)
    }
}

/// The hooks run before the revocation store is asked: a refused token costs no store round
/// trip; an accepted one is still checked there.
#[tokio::test]
async fn hooks_run_before_the_revocation_check() {
    let asked = Arc::new(AtomicUsize::new(0));
    let layer = hs256_builder::<TestClaims>()
        .revocation(Arc::new(Counting(asked.clone())))
        .validate(|c: &TestClaims| c.sub != "blocked")
        .build()
        .unwrap();
    let (url, hits) = claims_server(layer).await;
    fetch(&url, Some(&hs256_token(json!({ "sub": "blocked" }))))
        .await
        .assert_invalid_token("claims not accepted");
    assert_eq!(asked.load(Ordering::SeqCst), 0);
    assert_eq!(
        fetch(&url, Some(&hs256_token(json!({})))).await.status,
        StatusCode::OK
    );
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    assert_eq!(hits.count(), 1);
}

/// A token served from the verified-token cache still goes through the hooks: once the
/// application's rule changes, the cached token is refused, on the cache-hit path.
#[cfg(feature = "cache")]
#[tokio::test]
async fn hook_runs_on_a_cache_hit() {
    use std::sync::atomic::AtomicBool;
    use tower_jwt_auth::cache::CacheConfig;

    let enabled = Arc::new(AtomicBool::new(true));
    let switch = enabled.clone();
    let layer = hs256_builder::<TestClaims>()
        .cache(CacheConfig::default())
        .validate(move |_: &TestClaims| switch.load(Ordering::SeqCst))
        .build()
        .unwrap();
    let (url, hits) = claims_server(layer.clone()).await;
    let token = hs256_token(json!({}));
    for _ in 0..2 {
        assert_eq!(fetch(&url, Some(&token)).await.status, StatusCode::OK);
    }
    let stats = layer.cache_stats().unwrap();
    assert_eq!((stats.entries, stats.hits, stats.misses), (1, 1, 1));
    assert_eq!(hits.take(), 2);

    enabled.store(false, Ordering::SeqCst);
    fetch(&url, Some(&token))
        .await
        .assert_invalid_token("claims not accepted");
    let stats = layer.cache_stats().unwrap();
    assert_eq!((stats.hits, stats.misses), (2, 1), "not refused on a hit");
    assert_eq!(hits.count(), 0);

    enabled.store(true, Ordering::SeqCst);
    assert_eq!(fetch(&url, Some(&token)).await.status, StatusCode::OK);
}

/// A token that a hook refuses is never cached: the next request verifies it again.
#[cfg(feature = "cache")]
#[tokio::test]
async fn refused_tokens_are_not_cached() {
    use tower_jwt_auth::cache::CacheConfig;

    let layer = hs256_builder::<TestClaims>()
        .cache(CacheConfig::default())
        .validate(|c: &TestClaims| c.sub != "blocked")
        .build()
        .unwrap();
    let (url, _hits) = claims_server(layer.clone()).await;
    let token = hs256_token(json!({ "sub": "blocked" }));
    for _ in 0..2 {
        fetch(&url, Some(&token))
            .await
            .assert_invalid_token("claims not accepted");
    }
    let stats = layer.cache_stats().unwrap();
    assert_eq!((stats.entries, stats.hits), (0, 0));
}

#[tokio::test]
async fn hook_applies_to_every_tenant() {
    let secret_b = b"the second tenant's secret, 32 bytes or more";
    let layer = JwtAuthLayer::<TestClaims>::builder()
        .tenant(Tenant::new(ISSUER).key(Key::hmac(Algorithm::HS256, SECRET)))
        .tenant(Tenant::new("https://b.test").key(Key::hmac(Algorithm::HS256, secret_b)))
        .audience(AUDIENCE)
        .validate(|c: &TestClaims| c.sub != "suspended")
        .build()
        .unwrap();
    let (url, hits) = claims_server(layer).await;
    let b_key = jsonwebtoken::EncodingKey::from_secret(secret_b);
    let b_token = |sub: &str| {
        sign_jwt(
            Algorithm::HS256,
            &b_key,
            None,
            &claims_with(json!({ "sub": sub, "iss": "https://b.test" })),
        )
    };
    assert_eq!(
        fetch(&url, Some(&hs256_token(json!({})))).await.status,
        StatusCode::OK
    );
    assert_eq!(
        fetch(&url, Some(&b_token("bob"))).await.status,
        StatusCode::OK
    );
    assert_eq!(hits.take(), 2);
    for token in [
        hs256_token(json!({ "sub": "suspended" })),
        b_token("suspended"),
    ] {
        fetch(&url, Some(&token))
            .await
            .assert_invalid_token("claims not accepted");
    }
    assert_eq!(hits.count(), 0);
}

/// The refusal goes through the configured responder: a problem document, and a gRPC status
/// for gRPC callers.
#[tokio::test]
async fn hook_refusal_through_problem_json_and_grpc() {
    let layer = hs256_builder::<TestClaims>()
        .responder(ProblemJson::with_realm("test"))
        .validate(|_: &TestClaims| false)
        .build()
        .unwrap();
    let hits = Hits::default();
    let app = Router::new()
        .route("/me", claims_json::<TestClaims>(&hits))
        .route(
            "/grpc",
            axum::routing::post(subject_handler::<TestClaims>(&hits)),
        )
        .layer(layer);
    let base = format!("http://{}", serve(app).await);
    let token = hs256_token(json!({}));

    let res = get_with(&format!("{base}/me"), Some(&token)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert_eq!(
        www_authenticate(&res),
        Some(
            "Bearer realm=\"test\", error=\"invalid_token\", error_description=\"claims not accepted\""
        )
    );
    let problem: Value = res.json().await.unwrap();
    assert_eq!(problem["status"], 401);
    assert_eq!(problem["detail"], "claims not accepted");

    let res = client()
        .post(format!("{base}/grpc"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["grpc-status"], "16");
    assert_eq!(res.headers()["grpc-message"], "claims not accepted");
    assert_eq!(hits.count(), 0);
}

/// `JwtAuthLayer::verify`, outside a request, runs the hooks too.
#[test]
fn verify_outside_a_request_runs_the_hooks() {
    let layer = hs256_builder::<TestClaims>()
        .validate(|c: &TestClaims| c.sub == "alice")
        .build()
        .unwrap();
    assert_eq!(layer.verify(&hs256_token(json!({}))).unwrap().sub, "alice");
    assert_eq!(
        layer
            .verify(&hs256_token(json!({ "sub": "bob" })))
            .unwrap_err(),
        tower_jwt_auth::AuthError::ClaimsRejected
    );
}
