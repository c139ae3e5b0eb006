//! The layer with a [`RemoteJwks`], end to end: a real axum API on 127.0.0.1 behind
//! `JwtAuthLayer::builder().remote_jwks(..)`, a real JWKS server on 127.0.0.1 that counts its
//! requests and can rotate its keys, answer 500 or hang (`common::jwks_server`), and a
//! reqwest client.
//!
//! Every test also counts the requests that reached the API's handler: a rejected request must
//! never get there.
//!
//! Refresh limits are real time and short (the HTTP exchanges are real, so Tokio's paused
//! clock would fire the request timeouts early); the policies under the default limit (2
//! tokens, one per 6 s) are unit tests in `src/keys/remote/tests.rs`, and `RemoteJwks` alone
//! is tested in `remote_jwks`.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use jsonwebtoken::EncodingKey;
use serde_json::{Value, json};
use tower_jwt_auth::Algorithm;
use tower_jwt_auth::JwtAuthLayer;
use tower_jwt_auth::remote::{RemoteJwks, RemoteJwksBuilder};

use common::api::Api;
use common::jwks_server::{JwksServer, Mode};
use common::{AUDIENCE, ISSUER, Reply, claims_with, data, good_claims, jwk, private_key};
use common::{rsa_key, sign_jwt, sign_raw};

// ---------------------------------------------------------------------------------------------
// Keys and tokens

/// A valid token (issuer, audience, one hour left) signed by test key `which`, naming `kid`.
fn token(which: &str, kid: &str) -> String {
    let (key, alg) = private_key(which);
    sign_jwt(alg, &key, Some(kid), &good_claims())
}

// ---------------------------------------------------------------------------------------------
// The identity provider

/// A [`JwksServer`] publishing `keys`, fresh for ten minutes (`Cache-Control: max-age=600`);
/// its discovery document names it as the issuer.
async fn provider(keys: &[Value]) -> JwksServer {
    let server = JwksServer::start(keys).await;
    server.cache_control("max-age=600");
    server
}

// ---------------------------------------------------------------------------------------------
// The API behind the layer

/// The layer taking its keys from `keys` and requiring the test issuer and audience.
fn layer(keys: RemoteJwks) -> JwtAuthLayer<Value> {
    JwtAuthLayer::<Value>::builder()
        .remote_jwks(keys)
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .unwrap()
}

/// What `/me` answers to a token made by [`token`].
trait TestToken {
    /// 200 with the claims of a token made by [`token`].
    fn assert_ok(&self);
}

impl TestToken for Reply {
    #[track_caller]
    fn assert_ok(&self) {
        assert_eq!(self.status, StatusCode::OK, "body {:?}", self.body);
        let claims: Value = serde_json::from_str(&self.body).unwrap();
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["iss"], ISSUER);
        assert_eq!(claims["aud"], AUDIENCE);
        assert_eq!(claims["roles"], json!(["admin"]));
    }
}

fn remote(server: &JwksServer) -> RemoteJwksBuilder {
    RemoteJwks::from_jwks_uri(server.jwks_url())
        .allow_http_for_loopback()
        .timeouts(Duration::from_millis(500), Duration::from_secs(2))
}

/// `n` concurrent requests with tokens validly signed by the published key but naming random
/// `kid`s; returns their statuses and how long the flood took.
/// A provider publishing the key `rsa-a`, remote keys fetched from it with this refresh
/// cooldown, and an API behind a layer using them.
async fn started(cooldown: Duration) -> (JwksServer, RemoteJwks, Api) {
    let server = provider(&[jwk("rsa", "rsa-a")]).await;
    let keys = remote(&server)
        .refresh_cooldown(cooldown)
        .build()
        .await
        .unwrap();
    let api = Api::start(layer(keys.clone())).await;
    (server, keys, api)
}

async fn flood(api: &Api, n: usize) -> (Vec<StatusCode>, Duration) {
    let tokens: Vec<String> = (0..n)
        .map(|_| token("rsa", &format!("random-{:016x}", rand::random::<u64>())))
        .collect();
    let started = Instant::now();
    let replies = futures_util::future::join_all(tokens.iter().map(|t| api.me(t))).await;
    (
        replies.into_iter().map(|r| r.status).collect(),
        started.elapsed(),
    )
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_signed_by_a_published_key_is_accepted() {
    let server = provider(&[jwk("rsa", "rsa-a"), jwk("ec", "ec-a"), jwk("ed", "ed-a")]).await;
    let keys = remote(&server).build().await.unwrap();
    let api = Api::start(layer(keys.clone())).await;

    api.me(&token("rsa", "rsa-a")).await.assert_ok();
    api.me(&token("ec", "ec-a")).await.assert_ok();
    api.me(&token("ed", "ed-a")).await.assert_ok();
    assert_eq!(api.handled(), 3);

    // Known kids are verified from memory: no request beyond the initial fetch.
    assert_eq!(server.hits(), 1);
    assert_eq!(keys.stats().fetches, 1);

    // A published kid with another key's signature, and no token at all.
    api.me(&token("rsa-b", "rsa-a"))
        .await
        .assert_invalid_token("invalid signature");
    let missing = common::get_with(&api.url(), None).await;
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        common::www_authenticate(&missing),
        Some("Bearer realm=\"api\"")
    );
    assert_eq!(api.handled(), 3);
    assert_eq!(server.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_is_followed_and_the_retired_key_is_refused() {
    let cooldown = Duration::from_secs(1);
    let (server, keys, api) = started(cooldown).await;
    let old = token("rsa", "rsa-a");
    let new = token("rsa-b", "rsa-b");
    api.me(&old).await.assert_ok();

    // The provider rotates: a new key under a new kid, the old one withdrawn.
    server.publish(&[jwk("rsa-b", "rsa-b")]);
    // Until a refresh shows the old key is gone, tokens naming it still verify (the layer
    // never fetches for a kid it knows).
    api.me(&old).await.assert_ok();
    assert_eq!(server.hits(), 1);

    tokio::time::sleep(cooldown + Duration::from_millis(50)).await;
    // The new kid is unknown: one refresh, then the token verifies with the new key.
    api.me(&new).await.assert_ok();
    assert_eq!(server.hits(), 2);
    assert_eq!(keys.kids(), ["rsa-b"]);
    assert_eq!(keys.stats().rotations, 1);

    // The old key is gone: its tokens are now unknown, refused without another fetch (within
    // the cooldown) ...
    api.me(&old)
        .await
        .assert_invalid_token("unknown signing key");
    assert_eq!(server.hits(), 2);
    // ... and after it, with one fetch that confirms the key is gone.
    tokio::time::sleep(cooldown + Duration::from_millis(50)).await;
    api.me(&old)
        .await
        .assert_invalid_token("unknown signing key");
    assert_eq!(server.hits(), 3);
    api.me(&new).await.assert_ok();

    // A rotation that keeps the previous key published (the usual overlap): both verify.
    server.publish(&[jwk("rsa-b", "rsa-b"), jwk("ec", "ec-c")]);
    tokio::time::sleep(cooldown + Duration::from_millis(50)).await;
    api.me(&token("ec", "ec-c")).await.assert_ok();
    api.me(&new).await.assert_ok();
    assert_eq!(server.hits(), 4);
    assert_eq!(keys.kids(), ["ec-c", "rsa-b"]);

    assert_eq!(api.handled(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_while_the_provider_fails_is_503_and_known_kids_still_pass() {
    let cooldown = Duration::from_secs(1);
    let (server, keys, api) = started(cooldown).await;
    let known = token("rsa", "rsa-a");
    // Maybe the provider rotated to this key: we cannot know while it answers 500.
    let unknown = token("rsa-b", "rsa-b");

    server.mode(Mode::Status(500));
    tokio::time::sleep(cooldown + Duration::from_millis(50)).await;
    let wait = api.me(&unknown).await.assert_unavailable();
    assert_eq!(server.hits(), 2, "one refresh attempt");
    let stats = keys.stats();
    assert_eq!((stats.failures, stats.consecutive_failures), (1, 1));
    assert!(
        stats
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("500"),
        "{:?}",
        stats.last_error
    );
    println!("503 Retry-After: {wait} s (cooldown {cooldown:?})");

    // Stale-if-error: the key fetched before still verifies its tokens.
    api.me(&known).await.assert_ok();
    // Within the cooldown the unknown kid is answered 503 again, without a request.
    api.me(&unknown).await.assert_unavailable();
    assert_eq!(server.hits(), 2);

    // The provider recovers, now publishing the new key: the next refresh picks it up.
    server.publish(&[jwk("rsa", "rsa-a"), jwk("rsa-b", "rsa-b")]);
    server.mode(Mode::Keys);
    tokio::time::sleep(cooldown + Duration::from_millis(50)).await;
    api.me(&unknown).await.assert_ok();
    api.me(&known).await.assert_ok();
    assert_eq!(server.hits(), 3);
    assert_eq!(keys.stats().consecutive_failures, 0);

    assert_eq!(api.handled(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_provider_is_503_after_the_timeout_and_never_delays_known_kids() {
    let cooldown = Duration::from_millis(200);
    let server = provider(&[jwk("rsa", "rsa-a")]).await;
    let keys = remote(&server)
        .refresh_cooldown(cooldown)
        .timeouts(Duration::from_millis(500), Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    let api = Arc::new(Api::start(layer(keys)).await);

    server.mode(Mode::Hang);
    tokio::time::sleep(cooldown + Duration::from_millis(50)).await;
    let started = Instant::now();
    let hanging = {
        let api = api.clone();
        tokio::spawn(async move { api.me(&token("rsa-b", "rsa-b")).await })
    };
    // Wait until the refresh is in flight at the server.
    while server.hits() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A known kid is verified from memory while the refresh hangs.
    api.me(&token("rsa", "rsa-a")).await.assert_ok();
    assert!(
        !hanging.is_finished(),
        "the refresh finished before a known kid was answered"
    );
    hanging.await.unwrap().assert_unavailable();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert_eq!(server.hits(), 2);
    assert_eq!(api.handled(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_at_a_healthy_provider_is_401() {
    let cooldown = Duration::from_secs(1);
    let (server, keys, api) = started(cooldown).await;
    tokio::time::sleep(cooldown + Duration::from_millis(50)).await;

    // Signed by the published key, but naming a kid the provider does not have.
    let stranger = token("rsa", "no-such-kid");
    api.me(&stranger)
        .await
        .assert_invalid_token("unknown signing key");
    assert_eq!(server.hits(), 2, "one refresh to look for the kid");
    // Asked again at once: remembered as absent, no request.
    api.me(&stranger)
        .await
        .assert_invalid_token("unknown signing key");
    assert_eq!(server.hits(), 2);
    let stats = keys.stats();
    assert_eq!(stats.unknown_kid_refreshes, 1);
    assert_eq!(stats.negative_cache_hits + stats.unknown_kid_throttled, 1);

    // A token without any kid, while the set has one key: still verified by that key's
    // signature check, or refused; never let through unverified.
    let (key, _) = private_key("rsa-b");
    let no_kid = sign_raw(
        &json!({"alg": "RS256", "typ": "JWT"}),
        &good_claims(),
        Algorithm::RS256,
        &key,
    );
    let reply = api.me(&no_kid).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{:?}", reply.body);
    assert_eq!(api.handled(), 0);
}

/// A bucket of 2 tokens, one more per `refill`, every fetch taking one: in any span `t` a
/// flood costs the provider at most `2 + ⌈t / refill⌉` fetches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_random_kids_costs_the_provider_the_burst_then_one_fetch_per_refill() {
    const N: usize = 200;
    let refill = Duration::from_secs(3);
    let server = provider(&[jwk("rsa", "rsa-a")]).await;
    let keys = remote(&server)
        .refresh_limit(2, refill)
        .build()
        .await
        .unwrap();
    let built = Instant::now();
    let api = Api::start(layer(keys.clone())).await;
    let initial = server.hits();
    assert_eq!(initial, 1);

    // Right after the initial fetch, which left a token: the flood shares exactly one fetch.
    let (statuses, took) = flood(&api, N).await;
    let first = server.hits() - initial;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    assert_eq!(
        first, 1,
        "the second token fetches, once for the whole flood"
    );
    println!(
        "flood 1 ({N} random kids, right after the initial fetch): {first} JWKS fetch, all \
         {N} answered 401, in {took:?}"
    );

    // At once, again: the bucket is empty until a refill after the initial fetch.
    let before = server.hits();
    let (statuses, took) = flood(&api, N).await;
    let empty = server.hits() - before;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    assert!(
        built.elapsed() >= refill || empty == 0,
        "{empty} fetches with an empty bucket"
    );
    println!(
        "flood 2 ({N} random kids, bucket empty): {empty} JWKS fetches beyond those, all {N} \
         answered 401, in {took:?}"
    );

    // After a refill: the flood shares exactly one fetch.
    tokio::time::sleep(refill.saturating_sub(built.elapsed()) + Duration::from_millis(100)).await;
    let before = server.hits();
    let (statuses, took) = flood(&api, N).await;
    let after_refill = server.hits() - before;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    assert_eq!(
        after_refill, 1,
        "the first unknown kid after the refill fetches, once for the whole flood"
    );
    println!(
        "flood 3 ({N} random kids, after a refill): {after_refill} JWKS fetch, all {N} \
         answered 401, in {took:?}"
    );

    // Straight after, again: nothing.
    let before = server.hits();
    let (statuses, _) = flood(&api, N).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED));
    let again = server.hits() - before;
    assert_eq!(again, 0);
    println!("flood 4 ({N} random kids, right after flood 3): {again} JWKS fetches");

    // The flood starves neither known kids nor a real rotation: at the next token, a new
    // key is found even amid another flood.
    api.me(&token("rsa", "rsa-a")).await.assert_ok();
    server.publish(&[jwk("rsa", "rsa-a"), jwk("rsa-b", "rsa-b")]);
    tokio::time::sleep(refill + Duration::from_millis(100)).await;
    let before = server.hits();
    let new = token("rsa-b", "rsa-b");
    let (flooded, rotated) = tokio::join!(flood(&api, N), async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        api.me(&new).await
    });
    rotated.assert_ok();
    assert!(flooded.0.iter().all(|s| *s == StatusCode::UNAUTHORIZED));
    let with_rotation = server.hits() - before;
    assert!(with_rotation <= 1, "{with_rotation}");
    println!(
        "flood 5 ({N} random kids + 1 token of a newly published key): {with_rotation} JWKS \
         fetch, the new key's token answered 200"
    );

    let stats = keys.stats();
    println!(
        "stats: fetches {}, unknown-kid refreshes {}, throttled {}, negative-cache hits {}",
        stats.fetches,
        stats.unknown_kid_refreshes,
        stats.unknown_kid_throttled,
        stats.negative_cache_hits
    );
    assert_eq!(stats.fetches as usize, server.hits());
    // Only the two valid tokens reached the handler.
    assert_eq!(api.handled(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn algorithm_confusion_with_the_public_rsa_key_is_refused() {
    let server = provider(&[jwk("rsa", "rsa-a")]).await;
    let keys = remote(&server).build().await.unwrap();
    let api = Api::start(layer(keys)).await;
    let published = jwk("rsa", "rsa-a");

    // HS256 "signed" with the RSA public key's bytes as the HMAC secret, naming the RSA kid:
    // the classic attack on verifiers that let the token pick the algorithm.
    let secrets: [(&str, Vec<u8>); 4] = [
        ("PEM", data("rsa_2048_public.pem")),
        ("PKCS#1 DER", data("rsa_2048_public_pkcs1.der")),
        ("JWK JSON", published.to_string().into_bytes()),
        (
            "modulus",
            published["n"].as_str().unwrap().as_bytes().to_vec(),
        ),
    ];
    for (what, secret) in secrets {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            for kid in [Some("rsa-a"), None] {
                let mut header = json!({ "alg": format!("{alg:?}"), "typ": "JWT" });
                if let Some(kid) = kid {
                    header["kid"] = kid.into();
                }
                let forged = sign_raw(
                    &header,
                    &good_claims(),
                    alg,
                    &EncodingKey::from_secret(&secret),
                );
                let reply = api.me(&forged).await;
                assert_eq!(
                    reply.status,
                    StatusCode::UNAUTHORIZED,
                    "{alg:?} with the {what} as secret, kid {kid:?}"
                );
                reply.assert_invalid_token("algorithm not allowed");
            }
        }
    }

    // `alg: none` under the RSA kid.
    let unsigned = format!(
        "{}.{}.",
        common::b64(
            json!({"alg": "none", "kid": "rsa-a"})
                .to_string()
                .as_bytes()
        ),
        common::b64(good_claims().to_string().as_bytes())
    );
    assert_eq!(api.me(&unsigned).await.status, StatusCode::UNAUTHORIZED);

    // None of it made the layer fetch, and none reached the handler.
    assert_eq!(server.hits(), 1);
    assert_eq!(api.handled(), 0);
    // The genuine token still passes.
    api.me(&token("rsa", "rsa-a")).await.assert_ok();
    assert_eq!(api.handled(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_kid_with_another_algorithm_is_refused_without_a_fetch() {
    let server = provider(&[jwk("rsa", "rsa-a"), jwk("ec", "ec-a")]).await;
    let keys = remote(&server)
        .refresh_cooldown(Duration::ZERO)
        .build()
        .await
        .unwrap();
    // The published JWK pins `alg` RS256.
    assert_eq!(jwk("rsa", "rsa-a")["alg"], "RS256");
    let api = Api::start(layer(keys)).await;

    // Signed by the right private key, but PS256: the JWK's `alg` rules it out.
    let (rsa, _) = private_key("rsa");
    let ps256 = sign_raw(
        &json!({"alg": "PS256", "typ": "JWT", "kid": "rsa-a"}),
        &good_claims(),
        Algorithm::PS256,
        &rsa,
    );
    let reply = api.me(&ps256).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{:?}", reply.body);
    // An ES256 token naming the RSA kid (signed by the published EC key).
    let (ec, _) = private_key("ec");
    let es256 = sign_raw(
        &json!({"alg": "ES256", "typ": "JWT", "kid": "rsa-a"}),
        &good_claims(),
        Algorithm::ES256,
        &ec,
    );
    let reply = api.me(&es256).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{:?}", reply.body);

    // The kid is in the set, so even with a zero cooldown nothing is fetched for them.
    assert_eq!(server.hits(), 1);
    assert_eq!(api.handled(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_down_from_the_start_is_503_until_it_recovers() {
    let cooldown = Duration::from_secs(10);
    let server = provider(&[jwk("rsa", "rsa-a")]).await;
    server.mode(Mode::Status(500));
    let keys = remote(&server)
        .refresh_cooldown(cooldown)
        .lazy()
        .build()
        .await
        .unwrap();
    let api = Api::start(layer(keys.clone())).await;
    let good = token("rsa", "rsa-a");

    // No key at all: even a token of the real key may not be judged, so 503, not 401.
    let wait = api.me(&good).await.assert_unavailable();
    assert!(server.hits() >= 1);
    let hits = server.hits();
    println!("no keys yet: 503 with Retry-After {wait} s (cooldown {cooldown:?})");
    assert!(wait <= 10, "Retry-After {wait} beyond the cooldown");
    // Within the cooldown: 503 again, no fetch per request.
    api.me(&good).await.assert_unavailable();
    api.me(&token("rsa", "whatever")).await.assert_unavailable();
    assert_eq!(server.hits(), hits);

    // The provider recovers: the background retry (1 s, then backing off) loads the keys.
    server.mode(Mode::Keys);
    let mut changes = keys.subscribe();
    tokio::time::timeout(Duration::from_secs(10), changes.reached(1))
        .await
        .expect("the background retry loads the keys")
        .expect("the key source is alive");
    api.me(&good).await.assert_ok();
    assert_eq!(api.handled(), 1);
}

/// A token signed by the `rsa` test key under kid `rsa-a`, with `overrides` merged into the
/// claims (`null` removes one).
fn token_with(overrides: Value) -> String {
    sign_jwt(
        Algorithm::RS256,
        &rsa_key(),
        Some("rsa-a"),
        &claims_with(overrides),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_discovered_issuer_is_required_and_no_other_can_be_configured() {
    let server = provider(&[jwk("rsa", "rsa-a")]).await;
    let issuer = server.issuer();
    let keys = RemoteJwks::from_issuer(&issuer)
        .allow_http_for_loopback()
        .build()
        .await
        .unwrap();
    assert_eq!(keys.issuer(), Some(issuer.as_str()));
    assert_eq!(keys.jwks_uri(), Some(server.jwks_url().as_str()));

    // No `.issuer()`: the discovered one is required.
    let api = Api::start(
        JwtAuthLayer::<Value>::builder()
            .remote_jwks(keys.clone())
            .audience(AUDIENCE)
            .build()
            .unwrap(),
    )
    .await;
    let reply = api.me(&token_with(json!({ "iss": issuer }))).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.www_authenticate);
    // Signed by the provider's own key, but claiming another issuer, or none.
    api.me(&token_with(json!({ "iss": ISSUER })))
        .await
        .assert_invalid_token("wrong issuer");
    api.me(&token_with(json!({ "iss": format!("{issuer}/") })))
        .await
        .assert_invalid_token("wrong issuer");
    api.me(&token_with(json!({ "iss": null })))
        .await
        .assert_invalid_token("missing required claim");
    assert_eq!(api.handled(), 1);

    // An explicit `.issuer()` other than the discovered one would let tokens claiming it be
    // verified with the discovered issuer's keys: a build error naming both, also when it is
    // one of several configured issuers, and issuers compare byte for byte (OpenID Connect
    // Discovery 1.0 §4.3: a trailing `/` is another issuer).
    let slash = format!("{issuer}/");
    for configured in [
        vec![ISSUER],
        vec![issuer.as_str(), ISSUER],
        vec![ISSUER, issuer.as_str()],
        vec![slash.as_str()],
    ] {
        let mut builder = JwtAuthLayer::<Value>::builder()
            .remote_jwks(keys.clone())
            .audience(AUDIENCE);
        for iss in &configured {
            builder = builder.issuer(*iss);
        }
        let err = builder.build().unwrap_err();
        let text = err.to_string();
        match err {
            tower_jwt_auth::BuildError::IssuerMismatch {
                configured: c,
                discovered: d,
            } => {
                assert_ne!(c, issuer, "{configured:?}");
                assert_eq!(d, issuer, "{configured:?}");
                assert!(text.contains(&c) && text.contains(&d), "{text}");
            }
            other => panic!("{configured:?}: {other:?}"),
        }
    }

    // Configuring the discovered issuer itself is fine.
    let explicit = Api::start(
        JwtAuthLayer::<Value>::builder()
            .remote_jwks(keys)
            .issuer(&issuer)
            .audience(AUDIENCE)
            .build()
            .unwrap(),
    )
    .await;
    let reply = explicit.me(&token_with(json!({ "iss": issuer }))).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.www_authenticate);
    explicit
        .me(&token_with(json!({})))
        .await
        .assert_invalid_token("wrong issuer");
    assert_eq!(explicit.handled(), 1);
    // One key set fetch (the discovery request is not counted in `hits`) for both layers.
    assert_eq!(server.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_keys_serve_past_expiry_until_max_stale_then_503() {
    let server = provider(&[jwk("rsa", "rsa-a")]).await;
    let keys = remote(&server)
        // Every response is fresh for one second, then stale for at most two more.
        .ttl_bounds(Duration::from_secs(1), Duration::from_secs(1))
        .max_stale(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    let api = Api::start(layer(keys.clone())).await;
    let good = token("rsa", "rsa-a");
    api.me(&good).await.assert_ok();

    server.mode(Mode::Status(500));
    // Past the lifetime, within max_stale: the keys are stale but still used.
    let mut changes = keys.subscribe();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stats = keys.stats();
    assert!(stats.failures >= 1, "{stats:?}");
    assert!(stats.stale, "{stats:?}");
    api.me(&good).await.assert_ok();

    // Past max_stale: the keys are dropped, and even a token of the old key cannot be judged.
    tokio::time::timeout(Duration::from_secs(10), changes.reached(2))
        .await
        .expect("the keys are dropped after max_stale")
        .expect("the key source is alive");
    assert!(keys.kids().is_empty());
    api.me(&good).await.assert_unavailable();

    // Back up: the next retry loads the keys again.
    server.mode(Mode::Keys);
    tokio::time::timeout(Duration::from_secs(30), changes.reached(3))
        .await
        .expect("the keys come back")
        .expect("the key source is alive");
    api.me(&good).await.assert_ok();
    assert_eq!(api.handled(), 3);
}
