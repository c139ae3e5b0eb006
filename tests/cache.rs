//! The verified-token cache behind a real axum server (feature `cache`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use common::*;
use reqwest::StatusCode;
use serde_json::json;
use tower_jwt_auth::cache::CacheConfig;
use tower_jwt_auth::revocation::{MemoryRevocation, Revocation};
use tower_jwt_auth::{Claims, JwtAuthLayer, TokenIssuer};

async fn server(layer: JwtAuthLayer<TestClaims>) -> String {
    let app = Router::new()
        .route(
            "/me",
            get(|c: Claims<TestClaims>| async move { c.sub.clone() }),
        )
        .layer(layer);
    format!("http://{}/me", serve(app).await)
}

fn layer() -> tower_jwt_auth::JwtAuthBuilder<TestClaims> {
    JwtAuthLayer::<TestClaims>::builder()
        .hs256(SECRET)
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .cache(CacheConfig::default())
}

#[tokio::test]
async fn second_use_is_a_hit_and_a_forged_lookalike_never_is() {
    let layer = layer().build().unwrap();
    let url = server(layer.clone()).await;
    let client = reqwest::Client::new();
    let token = hs256_token(json!({}));
    for _ in 0..3 {
        let res = client.get(&url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.text().await.unwrap(), "alice");
    }
    let stats = layer.cache_stats().unwrap();
    assert_eq!((stats.entries, stats.hits, stats.misses), (1, 2, 1));

    // Same header and payload, different signature: shares all but the last bytes.
    let mut forged = token.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let res = client.get(&url).bearer_auth(&forged).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // Same claims signed with another key, so the payload segment is identical.
    let other_key = jsonwebtoken::EncodingKey::from_secret(b"another secret of thirty-two bytes!!");
    let mut claims = good_claims();
    merge(&mut claims, json!({}));
    let other = sign_raw(
        &json!({"alg": "HS256", "typ": "JWT"}),
        &claims,
        jsonwebtoken::Algorithm::HS256,
        &other_key,
    );
    let res = client.get(&url).bearer_auth(&other).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        layer.cache_stats().unwrap().hits,
        2,
        "a forged token was served from the cache"
    );
}

#[tokio::test]
async fn revocation_is_checked_on_every_hit() {
    let store = Arc::new(MemoryRevocation::new());
    let layer = layer().revocation(store.clone()).build().unwrap();
    let url = server(layer.clone()).await;
    let client = reqwest::Client::new();
    let issued = TokenIssuer::hs256(SECRET)
        .unwrap()
        .with_issuer(ISSUER)
        .with_audience(AUDIENCE)
        .issue("alice", &json!({ "roles": [] }))
        .unwrap();
    for _ in 0..2 {
        let res = client
            .get(&url)
            .bearer_auth(&issued.token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert_eq!(layer.cache_stats().unwrap().hits, 1);
    store.revoke(&issued.jti, issued.expires_at).await.unwrap();
    let res = client
        .get(&url)
        .bearer_auth(&issued.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let challenge = res.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("token revoked"), "{challenge}");
    assert_eq!(
        layer.cache_stats().unwrap().hits,
        2,
        "the refusal came from a cache hit"
    );
}

#[tokio::test]
async fn expiry_is_honoured_on_a_hit() {
    let layer = layer().leeway(Duration::ZERO).build().unwrap();
    let url = server(layer.clone()).await;
    let client = reqwest::Client::new();
    let exp = now() + 2;
    let token = hs256_token(json!({ "exp": exp }));
    let res = client.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // Nothing to await but the clock: the token's own `exp` must pass.
    while now() < exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let res = client.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let challenge = res.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("token expired"), "{challenge}");
}
