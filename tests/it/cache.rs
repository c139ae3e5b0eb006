//! The verified-token cache behind a real axum server (feature `cache`).

use crate::common;

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use common::*;
use reqwest::StatusCode;
use serde_json::json;
use tower_jwt_auth::cache::CacheConfig;
use tower_jwt_auth::revocation::{MemoryRevocation, RevocationStore};
use tower_jwt_auth::{Clock, JwtAuthLayer};

/// `/me` behind `layer`: its URL.
async fn server(layer: JwtAuthLayer<TestClaims>) -> String {
    me_server(layer).await.0
}

fn layer() -> tower_jwt_auth::JwtAuthBuilder<TestClaims> {
    hs256_builder().cache(CacheConfig::default())
}

#[tokio::test]
async fn second_use_is_a_hit_and_a_forged_lookalike_never_is() {
    let layer = layer().build().unwrap();
    let url = server(layer.clone()).await;
    let client = client();
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
    let other = sign_raw(
        &json!({"alg": "HS256", "typ": "JWT"}),
        &good_claims(),
        tower_jwt_auth::Algorithm::HS256,
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
    let client = client();
    let issued = access_issuer()
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
    let challenge = www_authenticate(&res).unwrap();
    assert!(challenge.contains("token revoked"), "{challenge}");
    assert_eq!(
        layer.cache_stats().unwrap().hits,
        2,
        "the refusal came from a cache hit"
    );
}

/// A cached token is refused once the layer's clock passes `exp` + leeway, by the time check
/// of the hit path itself: the cache has no clock of its own (entries leave it by eviction),
/// so the entry is still cached when the token expires, and only the hit path's `exp` check
/// keeps it from being served. That check removes the entry and counts the request a miss.
#[tokio::test]
async fn expiry_is_honoured_on_a_hit() {
    const LEEWAY: Duration = Duration::from_secs(60);
    const LIFETIME: u64 = 600;
    // A whole second, so that `exp + leeway` is an exact instant on the manual clock.
    let start = now();
    let clock = Clock::manual(UNIX_EPOCH + Duration::from_secs(start));
    let layer = layer().leeway(LEEWAY).clock(clock.clone()).build().unwrap();
    let url = server(layer.clone()).await;
    let client = client();
    let token = hs256_token(json!({ "iat": start, "exp": start + LIFETIME }));
    let get = || client.get(&url).bearer_auth(&token).send();
    let stats = || {
        let s = layer.cache_stats().unwrap();
        (s.entries, s.hits, s.misses)
    };

    // A miss verifies the token and caches it; the next request is a hit.
    for _ in 0..2 {
        assert_eq!(get().await.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(stats(), (1, 1, 1));

    // One second before `exp + leeway`: still valid, still served from the cache.
    clock.advance(Duration::from_secs(LIFETIME) + LEEWAY - Duration::from_secs(1));
    assert_eq!(get().await.unwrap().status(), StatusCode::OK);
    assert_eq!(stats(), (1, 2, 1));

    // At `exp + leeway` the token has expired (RFC 7519 §4.1.4: now must be before it).
    clock.advance(Duration::from_secs(1));
    let res = get().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let challenge = www_authenticate(&res).unwrap();
    assert!(
        challenge.contains("error=\"invalid_token\"")
            && challenge.contains("error_description=\"token expired\""),
        "{challenge}"
    );
    // The entry was still cached just before (1 entry above); the hit path's time check
    // declined it, removed it and fell through to full verification, which reports the reason.
    assert_eq!(
        stats(),
        (0, 2, 2),
        "the expired entry was not declined by the hit path"
    );
}
