//! `RemoteJwks` against a real JWKS server on 127.0.0.1 that counts its requests and can be
//! switched at runtime: rotate keys, answer 500, hang, send garbage, a 5 MiB body (with and
//! without `Content-Length`), an empty set, a redirect, `ETag` / `304`, `Cache-Control`; and
//! serve an OpenID Connect discovery document.
//!
//! Refresh limits here are real time (the HTTP exchanges are real, so Tokio's paused clock
//! would fire the request timeouts early); they are short, and where a test waits for the
//! server, it awaits the server's request counter rather than sleeping. The same policies
//! under the default limit (2 tokens, one per 6 s), with a paused clock, are unit tests in
//! `src/keys/remote/tests.rs`.
//! The server is `common::jwks_server`.

use crate::common;

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;
use tower_jwt_auth::BuildError;
use tower_jwt_auth::remote::{KeysUnavailable, RemoteJwks, RemoteJwksBuilder};

use common::jwk;
use common::jwks_server::{JwksServer, Mode};

// ---------------------------------------------------------------------------------------------
// Helpers

fn remote(server: &JwksServer) -> RemoteJwksBuilder {
    RemoteJwks::from_jwks_uri(server.url("/jwks"))
        .allow_http_for_loopback()
        .timeouts(Duration::from_millis(500), Duration::from_secs(1))
}

/// `n` concurrent lookups of random unknown kids, plus `extra` ones; returns the answers to
/// the `extra` kids.
async fn flood(
    keys: &RemoteJwks,
    n: usize,
    extra: &[&str],
) -> (
    Vec<Result<bool, KeysUnavailable>>,
    Vec<Result<bool, KeysUnavailable>>,
) {
    let random = (0..n).map(|_| {
        let keys = keys.clone();
        let kid = format!("random-{:016x}", rand::random::<u64>());
        tokio::spawn(async move { keys.resolve_kid(&kid).await })
    });
    let named = extra.iter().map(|kid| {
        let keys = keys.clone();
        let kid = kid.to_string();
        tokio::spawn(async move { keys.resolve_kid(&kid).await })
    });
    let (random, named) = tokio::join!(
        futures_util::future::join_all(random.collect::<Vec<_>>()),
        futures_util::future::join_all(named.collect::<Vec<_>>())
    );
    (
        random.into_iter().map(Result::unwrap).collect(),
        named.into_iter().map(Result::unwrap).collect(),
    )
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn fetches_the_keys_and_reports_them() {
    let server =
        JwksServer::start(&[jwk("rsa", "rsa-1"), jwk("ec", "ec-1"), jwk("ed", "ed-1")]).await;
    let keys = remote(&server).build().await.unwrap();
    assert_eq!(keys.kids(), ["ec-1", "ed-1", "rsa-1"]);
    assert!(keys.contains_kid("rsa-1"));
    assert!(!keys.contains_kid("rsa-2"));
    assert_eq!(keys.generation(), 1);
    assert_eq!(keys.issuer(), None);
    assert_eq!(keys.jwks_uri(), Some(server.url("/jwks").as_str()));
    let stats = keys.stats();
    assert_eq!((stats.requests, stats.fetches, stats.failures), (1, 1, 0));
    assert_eq!((stats.keys, stats.kids, stats.skipped_keys), (3, 3, 0));
    assert!(stats.last_success_age.unwrap() < Duration::from_secs(5));
    assert_eq!(stats.last_error, None);
    assert!(!stats.stale);
    assert_eq!(server.hits(), 1);
    assert!(format!("{keys:?}").contains("rsa-1"));
}

#[tokio::test]
async fn one_broken_jwk_among_good_ones_is_skipped() {
    let mut encryption = jwk("ec", "enc");
    encryption["use"] = "enc".into();
    let mut mismatch = jwk("rsa", "rsa-as-es256");
    mismatch["alg"] = "ES256".into();
    let mut bad_modulus = jwk("rsa", "bad-n");
    bad_modulus["n"] = "!!!not base64!!!".into();
    let keys = [
        jwk("rsa", "good-rsa"),
        bad_modulus,
        encryption,
        mismatch,
        json!({"kty": "oct", "kid": "hmac", "alg": "HS256",
               "k": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}),
        json!({"kty": "XYZ", "kid": "unknown-kty"}),
        json!("not even an object"),
        jwk("ed", "good-ed"),
    ];
    let server = JwksServer::start(&keys).await;
    let remote = remote(&server).build().await.unwrap();
    assert_eq!(remote.kids(), ["good-ed", "good-rsa"]);
    assert_eq!(remote.stats().skipped_keys, 6);
}

#[tokio::test]
async fn a_rotation_is_picked_up_after_the_cooldown() {
    let cooldown = Duration::from_millis(200);
    let server = JwksServer::start(&[jwk("rsa", "2026-01")]).await;
    let keys = remote(&server)
        .refresh_cooldown(cooldown)
        .build()
        .await
        .unwrap();
    let built = Instant::now();

    server.publish(&[jwk("rsa", "2026-01"), jwk("rsa-b", "2026-02")]);
    // Within the cooldown of the first fetch: not asked again, the kid is unknown (401).
    assert_eq!(keys.resolve_kid("2026-02").await, Ok(false));
    assert_eq!(server.hits(), 1);

    tokio::time::sleep_until(built + cooldown).await;
    assert_eq!(keys.resolve_kid("2026-02").await, Ok(true));
    assert_eq!(server.hits(), 2);
    assert_eq!(keys.kids(), ["2026-01", "2026-02"]);
    assert_eq!(keys.generation(), 2);
    assert_eq!(keys.stats().rotations, 1);
    assert_eq!(keys.stats().unknown_kid_refreshes, 1);
}

/// The rule, on real time with a short refill (the default 6 s, paused, is a unit test): a
/// bucket of 2 tokens, one more per refill, every fetch takes one. In any span `t` a flood
/// costs at most `2 + ⌈t / refill⌉` fetches.
#[tokio::test]
async fn a_flood_of_random_kids_costs_the_burst_then_one_fetch_per_refill() {
    let refill = Duration::from_secs(1);
    let server = JwksServer::start(&[jwk("rsa", "k1")]).await;
    let keys = remote(&server)
        .refresh_limit(2, refill)
        .build()
        .await
        .unwrap();
    let built = Instant::now();

    // Wave 1, at once: the initial fetch left a token; 500 concurrent callers share one
    // request.
    let (answers, _) = flood(&keys, 500, &[]).await;
    assert!(answers.iter().all(|a| *a == Ok(false)));
    let wave1 = server.hits() - 1;

    // Wave 2, at once: the bucket is empty until a refill after the initial fetch.
    let (answers, _) = flood(&keys, 500, &[]).await;
    assert!(
        built.elapsed() < refill,
        "the waves took too long to be meaningful"
    );
    assert!(answers.iter().all(|a| *a == Ok(false)));
    let wave2 = server.hits() - 1 - wave1;

    // Wave 3, one refill after the build: a token, one shared request.
    tokio::time::sleep_until(built + refill).await;
    let (answers, _) = flood(&keys, 500, &[]).await;
    assert!(answers.iter().all(|a| *a == Ok(false)));
    let wave3 = server.hits() - 1 - wave1 - wave2;

    // Wave 4, at once: no token.
    let (_, _) = flood(&keys, 500, &[]).await;
    assert!(
        built.elapsed() < refill * 2,
        "the waves took too long to be meaningful"
    );
    let wave4 = server.hits() - 1 - wave1 - wave2 - wave3;

    // The provider rotates. Wave 5, at the next token, random kids and the new one mixed:
    // the one fetch picks up the new key.
    server.publish(&[jwk("rsa", "k1"), jwk("ec", "k2")]);
    tokio::time::sleep_until(built + refill * 2).await;
    let (answers, named) = flood(&keys, 500, &["k2", "k2", "k2"]).await;
    assert!(answers.iter().all(|a| *a == Ok(false)));
    assert_eq!(named, [Ok(true), Ok(true), Ok(true)]);
    let wave5 = server.hits() - 1 - wave1 - wave2 - wave3 - wave4;

    println!(
        "requests to the JWKS server per wave of 500 concurrent random kids (bucket of 2, one \
         token per {refill:?}): initial 1, right after it {wave1}, again {wave2}, after a \
         refill {wave3}, again {wave4}, after a refill with a rotation {wave5}; stats: {:?}",
        keys.stats()
    );
    assert_eq!((wave1, wave2, wave3, wave4, wave5), (1, 0, 1, 0, 1));
    assert_eq!(keys.stats().unknown_kid_refreshes, 3);
}

/// A key the provider starts using without publishing it ahead: accepted at once when the
/// bucket has a token (as right after a fetch that was not itself a burst), else at the next
/// token, at most one refill after its first use.
#[tokio::test]
async fn an_unannounced_key_is_accepted_within_one_refill_of_its_first_use() {
    let refill = Duration::from_millis(600);
    let server = JwksServer::start(&[jwk("rsa", "k1")]).await;
    let keys = remote(&server)
        .refresh_limit(2, refill)
        .build()
        .await
        .unwrap();

    // Published after the initial fetch, used shortly after it: accepted at once.
    server.publish(&[jwk("rsa", "k1"), jwk("ec", "k2")]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(keys.resolve_kid("k2").await, Ok(true));
    assert_eq!(server.hits(), 2);

    // Published after that fetch, which took the last token: refused until the next token,
    // then accepted.
    server.publish(&[jwk("rsa", "k1"), jwk("ec", "k2"), jwk("ed", "k3")]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let first_use = Instant::now();
    assert_eq!(keys.resolve_kid("k3").await, Ok(false));
    assert_eq!(server.hits(), 2);
    while keys.resolve_kid("k3").await != Ok(true) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let waited = first_use.elapsed();
    println!("an unannounced key used with an empty bucket: accepted after {waited:?}");
    assert_eq!(server.hits(), 3);
    // The next token came a refill after the initial fetch, which was before `first_use`;
    // the margin is for the fetch itself and the polling.
    assert!(waited <= refill + Duration::from_millis(300), "{waited:?}");
    let stats = keys.stats();
    assert_eq!(stats.unknown_kid_refreshes, 2);
    assert!(stats.negative_cache_hits > 0);
}

/// 200 lookups of random kids a second (one every 5 ms) for 25 refills, and a key published
/// right after one of the flood's fetches and used from then on: the provider sees at most
/// `2 + ⌈t / refill⌉` fetches, and the new key is accepted within one refill of its first
/// use. On real time with a short refill; the default 6 s over a minute, paused, is a unit
/// test.
#[tokio::test]
async fn a_flood_of_random_kids_does_not_starve_an_unannounced_key() {
    let refill = Duration::from_millis(200);
    let server = JwksServer::start(&[jwk("rsa", "k1")]).await;
    let keys = remote(&server)
        .refresh_limit(2, refill)
        .build()
        .await
        .unwrap();
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_millis(5));
    let mut lookups = Vec::new();
    let mut published_at_hits = None;
    let mut first_use = None;
    let mut accepted = None;
    while started.elapsed() < refill * 25 {
        ticks.tick().await;
        let keys_for_task = keys.clone();
        let kid = format!("random-{:016x}", rand::random::<u64>());
        lookups.push(tokio::spawn(async move {
            keys_for_task.resolve_kid(&kid).await
        }));
        if published_at_hits.is_none() && server.hits() >= 10 {
            // Right after a fetch of the flood: the bucket is empty.
            server.publish(&[jwk("rsa", "k1"), jwk("ec", "new")]);
            published_at_hits = Some(server.hits());
        }
        if published_at_hits.is_some() && accepted.is_none() {
            let now = Instant::now();
            first_use.get_or_insert(now);
            if keys.resolve_kid("new").await == Ok(true) {
                accepted = Some(Instant::now());
            }
        }
    }
    let elapsed = started.elapsed();
    for lookup in lookups {
        assert_eq!(lookup.await.unwrap(), Ok(false));
    }
    let fetches = server.hits() - 1;
    let waited = accepted.expect("the new key was accepted") - first_use.unwrap();
    let bound = 2 + elapsed.as_millis().div_ceil(refill.as_millis()) as usize;
    println!(
        "{} random kids over {elapsed:?} (refill {refill:?}): {fetches} fetches (bound \
         {bound}); the new key accepted {waited:?} after its first use",
        keys.stats().unknown_kid_throttled + keys.stats().unknown_kid_refreshes
    );
    assert!(fetches <= bound, "{fetches} fetches > {bound}");
    // The flood takes the tokens as they come (some slack for a busy machine).
    assert!(fetches >= 12, "{fetches}");
    assert!(waited <= refill + Duration::from_millis(150), "{waited:?}");
}

#[tokio::test]
async fn a_flood_while_the_provider_hangs_shares_one_request() {
    let server = JwksServer::start(&[jwk("rsa", "k1")]).await;
    let keys = remote(&server)
        .refresh_cooldown(Duration::ZERO)
        .build()
        .await
        .unwrap();
    server.mode(Mode::Hang);
    let started = Instant::now();
    let (answers, _) = flood(&keys, 500, &[]).await;
    // One request, which timed out after the 1 s total timeout; everybody waited for it.
    assert_eq!(server.hits(), 2);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(answers.iter().all(|a| {
        a.as_ref()
            .is_err_and(|e| e.retry_after >= Duration::from_secs(1))
    }));
    assert!(keys.contains_kid("k1"));
    assert!(keys.stats().last_error.unwrap().ends_with("timed out"));
}

/// Every way the provider can fail: the last good keys keep working, an unknown kid is
/// answered `KeysUnavailable`, and the failure is counted and explained.
#[tokio::test]
async fn provider_failures_keep_the_last_good_keys() {
    let cases: [(Mode, &str); 8] = [
        (Mode::Status(500), "HTTP 500"),
        (Mode::Status(404), "HTTP 404"),
        (Mode::Hang, "timed out"),
        (Mode::Garbage, "invalid JWKS document"),
        (Mode::Empty, "no usable signing key"),
        (Mode::Huge, "larger than 1048576 bytes"),
        (Mode::HugeChunked, "larger than 1048576 bytes"),
        (Mode::Redirect, "HTTP 302"),
    ];
    for (mode, expected) in cases {
        let server = JwksServer::start(&[jwk("rsa", "k1"), jwk("ed", "k2")]).await;
        let keys = remote(&server)
            .refresh_cooldown(Duration::ZERO)
            .build()
            .await
            .unwrap();
        server.mode(mode.clone());
        let err = keys.resolve_kid("rotated").await.unwrap_err();
        assert!(err.retry_after >= Duration::from_secs(1), "{mode:?}");
        assert!(err.to_string().contains("cannot be reached"));
        assert!(
            keys.contains_kid("k1") && keys.contains_kid("k2"),
            "{mode:?}"
        );
        // A kid the old set has is still fine.
        assert_eq!(keys.resolve_kid("k2").await, Ok(true), "{mode:?}");
        let stats = keys.stats();
        assert_eq!(stats.failures, 1, "{mode:?}");
        assert_eq!(stats.keys, 2, "{mode:?}");
        let error = stats.last_error.unwrap();
        assert!(error.contains(expected), "{mode:?}: {error}");
        assert_eq!(keys.generation(), 1);

        // The provider recovers: an unknown kid is again a plain "not in the set".
        server.mode(Mode::Keys);
        assert_eq!(keys.resolve_kid("rotated").await, Ok(false), "{mode:?}");
        assert_eq!(keys.stats().consecutive_failures, 0);
    }
}

#[tokio::test]
async fn provider_down_keeps_the_last_good_keys() {
    let server = JwksServer::start(&[jwk("rsa", "k1")]).await;
    let keys = remote(&server)
        .refresh_cooldown(Duration::ZERO)
        .build()
        .await
        .unwrap();
    server.stop();
    let err = keys.resolve_kid("rotated").await.unwrap_err();
    assert!(err.retry_after >= Duration::from_secs(1));
    assert!(keys.contains_kid("k1"));
    assert_eq!(keys.stats().failures, 1);
    // Within the cooldown (zero here, so every call tries; each fails the same way).
    assert!(keys.resolve_kid("rotated").await.is_err());
    assert_eq!(keys.stats().failures, 2);
}

#[tokio::test]
async fn a_body_over_the_cap_is_refused_while_it_streams() {
    // The body never ends: buffering it first would only end at the (30 s) timeout.
    let server = JwksServer::start(&[jwk("rsa", "k1")]).await;
    server.mode(Mode::Endless);
    let started = Instant::now();
    let err = remote(&server)
        .timeouts(Duration::from_secs(1), Duration::from_secs(30))
        .max_body_size(64 * 1024)
        .build()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("larger than 65536 bytes"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopped at the cap, not the timeout"
    );
}

#[tokio::test]
async fn etag_revalidation_keeps_the_keys() {
    let server = JwksServer::start(&[jwk("rsa", "k1")]).await;
    server.etag("\"v1\"");
    server.cache_control("public, max-age=3600");
    let keys = remote(&server)
        .refresh_cooldown(Duration::ZERO)
        .build()
        .await
        .unwrap();
    let expires_in = keys.stats().expires_in.unwrap();
    assert!(expires_in > Duration::from_secs(3590) && expires_in <= Duration::from_secs(3600));

    assert_eq!(keys.resolve_kid("k2").await, Ok(false));
    assert_eq!(server.if_none_match(), [None, Some("\"v1\"".to_owned())]);
    let stats = keys.stats();
    assert_eq!(
        (stats.fetches, stats.not_modified, stats.failures),
        (2, 1, 0)
    );
    assert_eq!(keys.generation(), 1);
    assert!(keys.contains_kid("k1"));

    server.publish(&[jwk("rsa", "k1"), jwk("ec", "k2")]);
    server.etag("\"v2\"");
    assert_eq!(keys.resolve_kid("k2").await, Ok(true));
    assert_eq!(keys.generation(), 2);
    assert_eq!(
        server.if_none_match().last().unwrap().as_deref(),
        Some("\"v1\"")
    );
}

#[tokio::test]
async fn cache_control_max_age_is_clamped() {
    let bounds = (Duration::from_secs(60), Duration::from_secs(600));
    for (cache_control, expected) in [
        (Some("max-age=30"), 60),
        (Some("max-age=300"), 300),
        (Some("public, max-age=100000"), 600),
        (Some("no-store"), 60),
        (None, 60),
    ] {
        let server = JwksServer::start(&[jwk("rsa", "k1")]).await;
        if let Some(cc) = cache_control {
            server.cache_control(cc);
        }
        let keys = remote(&server)
            .ttl_bounds(bounds.0, bounds.1)
            .build()
            .await
            .unwrap();
        let expires_in = keys.stats().expires_in.unwrap();
        let expected = Duration::from_secs(expected);
        assert!(
            expires_in <= expected && expires_in > expected - Duration::from_secs(5),
            "{cache_control:?}: {expires_in:?}"
        );
    }
}

#[tokio::test]
async fn keys_are_refreshed_in_the_background_before_they_expire() {
    let server = JwksServer::start(&[jwk("rsa", "k1")]).await;
    let keys = remote(&server)
        .ttl_bounds(Duration::from_secs(1), Duration::from_secs(1))
        .build()
        .await
        .unwrap();
    let mut changes = keys.subscribe();
    server.publish(&[jwk("ec", "k2")]);
    // No token asks for k2: the background refresh (at 80–90 % of the 1 s lifetime) finds it.
    let generation = tokio::time::timeout(Duration::from_secs(5), changes.changed())
        .await
        .expect("a background refresh within 5 s");
    assert_eq!(generation, Some(2));
    assert_eq!(keys.kids(), ["k2"]);
    server.wait_for_hits(3).await;
}

#[tokio::test]
async fn lazy_build_returns_at_once_and_loads_in_the_background() {
    let server = JwksServer::start(&[jwk("rsa", "k1")]).await;
    server.mode(Mode::Hang);
    let keys = remote(&server).lazy().build().await.unwrap();
    assert!(keys.kids().is_empty());
    assert_eq!(keys.generation(), 0);
    server.mode(Mode::Keys);
    let mut changes = keys.subscribe();
    // Subscribed first, so a load that lands after this check is seen by `changed`.
    if keys.generation() == 0 {
        let generation = tokio::time::timeout(Duration::from_secs(10), changes.changed())
            .await
            .expect("keys within 10 s");
        assert_eq!(generation, Some(1));
    }
    assert_eq!(keys.kids(), ["k1"]);
}

#[tokio::test]
async fn build_fails_when_the_first_fetch_does() {
    let server = JwksServer::start(&[jwk("rsa", "k1")]).await;
    server.mode(Mode::Status(503));
    let err = remote(&server).build().await.unwrap_err();
    assert!(
        matches!(&err, BuildError::KeySourceUnreachable { url, reason }
            if url.ends_with("/jwks") && reason.contains("HTTP 503")),
        "{err}"
    );
    server.mode(Mode::Redirect);
    let err = remote(&server).build().await.unwrap_err();
    assert!(
        matches!(&err, BuildError::KeySourceUnreachable { reason, .. } if reason.contains("HTTP 302")),
        "redirects are not followed: {err}"
    );
    // A document that arrives but is unusable is the document's fault, not the network's.
    server.mode(Mode::Garbage);
    let err = remote(&server).build().await.unwrap_err();
    assert!(matches!(&err, BuildError::InvalidJwks(_)), "{err}");
    server.mode(Mode::Empty);
    let err = remote(&server).build().await.unwrap_err();
    assert!(
        matches!(&err, BuildError::InvalidJwks(m) if m.contains("no usable signing key")),
        "{err}"
    );
    server.mode(Mode::Huge);
    let err = remote(&server).build().await.unwrap_err();
    assert!(
        matches!(&err, BuildError::KeySourceUnreachable { reason, .. } if reason.contains("larger than")),
        "{err}"
    );
}

#[tokio::test]
async fn discovery_finds_the_jwks_uri() {
    let server = JwksServer::start(&[jwk("ed", "ed-1")]).await;
    // An issuer with a path and a trailing slash (OpenID Connect Discovery §4.1).
    let issuer = server.url("/tenant/");
    server.discovery(
        "/tenant/.well-known/openid-configuration",
        json!({ "issuer": issuer, "jwks_uri": server.url("/jwks"),
                "id_token_signing_alg_values_supported": ["EdDSA"] }),
    );
    let keys = RemoteJwks::from_issuer(&issuer)
        .allow_http_for_loopback()
        .build()
        .await
        .unwrap();
    assert_eq!(keys.issuer(), Some(issuer.as_str()));
    assert_eq!(keys.jwks_uri(), Some(server.url("/jwks").as_str()));
    assert_eq!(keys.kids(), ["ed-1"]);
    assert_eq!(keys.stats().requests, 2);
}

#[tokio::test]
async fn discovery_with_another_issuer_is_a_build_error() {
    let server = JwksServer::start(&[jwk("ed", "ed-1")]).await;
    let issuer = server.url("");
    for claimed in [
        server.url("/other"),
        server.url("/"),
        "https://id.example".into(),
    ] {
        server.discovery(
            "/.well-known/openid-configuration",
            json!({ "issuer": claimed, "jwks_uri": server.url("/jwks") }),
        );
        let err = RemoteJwks::from_issuer(&issuer)
            .allow_http_for_loopback()
            .build()
            .await
            .unwrap_err();
        assert!(
            matches!(&err, BuildError::Discovery { issuer: i, reason }
                if *i == issuer && reason.contains("is not the configured issuer")),
            "{claimed}: {err}"
        );
    }
    assert_eq!(
        server.hits(),
        0,
        "the JWKS of a mismatched issuer is never fetched"
    );

    // Lazily built, the mismatch shows in the stats instead, and no key is ever used.
    let keys = RemoteJwks::from_issuer(&issuer)
        .allow_http_for_loopback()
        .lazy()
        .build()
        .await
        .unwrap();
    let err = keys.resolve_kid("ed-1").await.unwrap_err();
    assert!(err.retry_after >= Duration::from_secs(1));
    assert!(
        keys.stats()
            .last_error
            .unwrap()
            .contains("is not the configured issuer")
    );
    assert_eq!(server.hits(), 0);
}

#[tokio::test]
async fn discovery_rejects_a_plain_http_jwks_uri_elsewhere_and_bad_documents() {
    let server = JwksServer::start(&[jwk("ed", "ed-1")]).await;
    let issuer = server.url("");
    for (doc, expected) in [
        (
            json!({ "issuer": issuer, "jwks_uri": "http://id.example/jwks" }),
            "jwks_uri \"http://id.example/jwks\": the JWKS URI must use https",
        ),
        (json!({ "issuer": issuer }), "missing field `jwks_uri`"),
        (
            json!({ "jwks_uri": server.url("/jwks") }),
            "missing field `issuer`",
        ),
    ] {
        server.discovery("/.well-known/openid-configuration", doc);
        let err = RemoteJwks::from_issuer(&issuer)
            .allow_http_for_loopback()
            .build()
            .await
            .unwrap_err();
        assert!(
            matches!(&err, BuildError::Discovery { reason, .. } if reason.contains(expected)),
            "{err}"
        );
    }
}

#[tokio::test]
async fn plain_http_is_refused_except_for_loopback_when_allowed() {
    for (uri, allow) in [
        ("http://id.example/jwks", true),
        ("http://10.1.2.3/jwks", true),
        ("http://localhost.id.example/jwks", true),
        ("http://127.0.0.1:9/jwks", false),
        ("http://localhost:9/jwks", false),
    ] {
        let mut builder = RemoteJwks::from_jwks_uri(uri);
        if allow {
            builder = builder.allow_http_for_loopback();
        }
        let err = builder.build().await.unwrap_err();
        assert!(
            matches!(err, BuildError::InvalidSetting(m) if m.contains("must use https")),
            "{uri}"
        );
        let mut builder = RemoteJwks::from_issuer(uri.trim_end_matches("/jwks"));
        if allow {
            builder = builder.allow_http_for_loopback();
        }
        let err = builder.build().await.unwrap_err();
        assert!(
            matches!(err, BuildError::InvalidSetting(m) if m.contains("issuer must use https")),
            "{uri}"
        );
    }
    for uri in [
        "ftp://id.example/jwks",
        "not a url",
        "file:///etc/jwks.json",
    ] {
        assert!(
            matches!(
                RemoteJwks::from_jwks_uri(uri)
                    .allow_http_for_loopback()
                    .build()
                    .await,
                Err(BuildError::InvalidSetting(_))
            ),
            "{uri}"
        );
    }
}

#[tokio::test]
async fn https_is_spoken_by_the_default_client() {
    // A plain-http server behind an https URL: the TLS handshake fails (rustls is in use
    // and needs no system certificates to get this far), and the failure is explained.
    let server = JwksServer::start(&[jwk("rsa", "k1")]).await;
    let uri = format!("https://{}/jwks", server.addr);
    let err = RemoteJwks::from_jwks_uri(uri)
        .timeouts(Duration::from_millis(500), Duration::from_secs(2))
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BuildError::KeySourceUnreachable { url, .. } if url.starts_with("https://")),
        "{err}"
    );
}
