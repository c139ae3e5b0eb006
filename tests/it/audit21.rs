//! Audit 21: the responder a layer lends the handlers behind it is keyed by claims type and
//! response body type (`LayerResponder<C, B>`), and the verified-token cache shares the
//! revocation identity (`Arc<TokenId>`) between hits and hashes with foldhash. Claimed: a
//! handler answers a refusal with the responder of the nearest layer for its own claims type;
//! a refusal never becomes a pass; gRPC callers get status 16/7; a cache hit serves exactly the
//! cached token, re-checks its times (with leeway), runs the hooks and asks the revocation
//! store each time. Every test runs real servers on 127.0.0.1 with real clients (reqwest,
//! tonic).
//!
//! `regression_*` tests failed on the audited snapshot and pass since their fix; `holds_*`
//! tests are attacks the code resisted.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::routing::{MethodRouter, get};
use common::grpc::grpc_server;
use common::*;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tonic::Code;
use tower::ServiceBuilder;
use tower_jwt_auth::authorize::RequireClaimsLayer;
use tower_jwt_auth::cache::CacheConfig;
use tower_jwt_auth::resource_metadata::ResourceMetadata;
use tower_jwt_auth::revocation::{MemoryRevocation, RevocationStore};
use tower_jwt_auth::{Claims, Clock, ProblemJson};

/// A `GET` handler taking `Claims<C>` (not `Option`), counting its calls: an anonymous request
/// is answered by the extractor's rejection.
fn strict<C: Subject + Send + Sync + 'static>(hits: &Hits) -> MethodRouter {
    let hits = hits.clone();
    get(move |c: Claims<C>| {
        let hits = hits.clone();
        async move {
            hits.hit();
            c.subject().to_owned()
        }
    })
}

/// A token for the test policy with these roles.
fn token(sub: &str, roles: &[&str]) -> String {
    hs256_token(json!({ "sub": sub, "roles": roles, "jti": format!("jti-{sub}") }))
}

// ---------------------------------------------------------------------------------------------
// The lent responder across layers

/// Serves `/v1/me` (`Claims` extractor), `/v1/admin` (`RequireClaims`, role `root`) and
/// `/v1/async` (`RequireClaims`, asynchronous predicate that refuses) behind an inner
/// `JwtAuthLayer<TestClaims>` (optional, realm `inner`) whose routes answer through a
/// body-boxing `map_response`, all nested in a router behind `$outer`; the base URL.
macro_rules! behind_body_mapping {
    ($h:expr, $outer:expr) => {{
        let inner_auth = hs256_builder::<TestClaims>()
            .optional()
            .realm("inner")
            .build()
            .unwrap();
        let inner_routes = Router::new()
            .route("/me", strict::<TestClaims>($h))
            .route(
                "/admin",
                strict::<TestClaims>($h)
                    .route_layer(RequireClaimsLayer::<TestClaims>::any_role(["root"])),
            )
            .route(
                "/async",
                strict::<TestClaims>($h).route_layer(
                    RequireClaimsLayer::<TestClaims>::predicate_async(
                        "never",
                        |_c: Claims<TestClaims>| async { false },
                    ),
                ),
            )
            .layer(ServiceBuilder::new().layer(inner_auth).map_response(
                |res: http::Response<Body>| {
                    res.map(|b| -> UnsyncBoxBody<Bytes, axum::Error> { b.boxed_unsync() })
                },
            ));
        let app = Router::new().nest("/v1", inner_routes).layer($outer);
        format!("http://{}/v1", serve(app).await)
    }};
}

/// Attack: two layers for the same claims type. The outer one answers with its own responder
/// (`ProblemJson` realm `outer` with RFC 9728 resource metadata; or RFC 6750 realm `outer`
/// with DPoP); the inner one, nearer to the handlers, is a plain RFC 6750 layer with realm
/// `inner`, and between it and the routes sits a middleware that changes the response body
/// type (here a boxing `map_response`; compression does the same), so the inner layer's
/// `ResBody` is not axum's `Body` and it cannot replace the outer layer's
/// `LayerResponder<C, Body>`. Expected: the `Claims<C>` extractor and `RequireClaims<C>`
/// (synchronous and asynchronous) never answer with the outer layer's responder (its realm,
/// problem document, `resource_metadata` URL or DPoP challenge), since the claims and the
/// anonymous mark they read name the inner layer; they answer as `Rfc6750::default()`, as
/// documented behind a body-changing middleware. A user relies on it so that clients of the
/// inner API are not sent to another API's protection space, metadata and token type.
#[tokio::test]
async fn regression_behind_a_body_mapping_the_outer_layers_responder_does_not_answer_for_the_inner()
{
    let h = Hits::default();
    let problem = behind_body_mapping!(
        &h,
        hs256_builder::<TestClaims>()
            .optional()
            .resource_metadata(ResourceMetadata::new("https://outer.example"))
            .responder(ProblemJson::with_realm("outer"))
            .build()
            .unwrap()
    );
    let dpop = behind_body_mapping!(
        &h,
        hs256_builder::<TestClaims>()
            .optional()
            .realm("outer")
            .dpop(tower_jwt_auth::dpop::Dpop::allowed("https://outer.example"))
            .build()
            .unwrap()
    );
    let alice = token("alice", &["user"]);
    let mut wrong = Vec::new();
    for base in [problem, dpop] {
        for (path, tok, status) in [
            ("/me", None, 401),
            ("/admin", Some(alice.as_str()), 403),
            ("/async", Some(alice.as_str()), 403),
        ] {
            let seen = see(&format!("{base}{path}"), tok, false).await;
            assert_eq!(seen.status.as_u16(), status, "{path}: {seen:?}");
            if seen.challenge.contains("outer")
                || seen.challenge.contains("DPoP")
                || seen.content_type.contains("problem+json")
                || seen.challenge.contains("resource_metadata")
            {
                wrong.push(format!("{path}: {seen:?}"));
            }
            // gRPC callers get the gRPC status whichever responder answers.
            let grpc = see(&format!("{base}{path}"), tok, true).await;
            let code = if status == 401 { "16" } else { "7" };
            assert_eq!(grpc.grpc_status.as_deref(), Some(code), "{path}: {grpc:?}");
        }
    }
    assert_eq!(h.count(), 0, "a refused request reached the handler");
    assert!(
        wrong.is_empty(),
        "the handlers behind the inner layer for TestClaims answered with the outer \
         layer's responder:\n{}",
        wrong.join("\n")
    );
}

/// Attack: layers for two claims types stacked both ways round (`TestClaims` with
/// `ProblemJson` realm `tc` and resource metadata; `Value` with realm `val`), both optional.
/// Handlers for each type refuse (extractor on an anonymous request, `RequireClaims` sync and
/// async predicate) and must answer with their own type's layer, never the other's realm,
/// document or metadata; gRPC-labelled callers get 16/7; `Option<Claims<_>>` sees `None` and
/// no handler behind a refusal runs.
#[tokio::test]
async fn holds_mixed_type_stacks_answer_with_the_layer_for_the_handlers_type() {
    for tc_outside in [true, false] {
        let h = Hits::default();
        let tc_auth = hs256_builder::<TestClaims>()
            .optional()
            .resource_metadata(ResourceMetadata::new("https://tc.example"))
            .responder(ProblemJson::with_realm("tc"))
            .build()
            .unwrap();
        let val_auth = hs256_builder::<Value>()
            .optional()
            .realm("val")
            .build()
            .unwrap();
        let never_tc = RequireClaimsLayer::<TestClaims>::predicate_async(
            "never-tc",
            |_c: Claims<TestClaims>| async { false },
        );
        let never_val =
            RequireClaimsLayer::<Value>::predicate_async("never-val", |_c: Claims<Value>| async {
                false
            });
        let opt = get(|c: Option<Claims<TestClaims>>| async move { format!("{}", c.is_some()) });
        let routes = Router::new()
            .route("/tc/me", strict::<TestClaims>(&h))
            .route("/val/me", strict::<Value>(&h))
            .route(
                "/tc/admin",
                strict::<TestClaims>(&h)
                    .route_layer(RequireClaimsLayer::<TestClaims>::any_role(["root"])),
            )
            .route(
                "/val/admin",
                strict::<Value>(&h).route_layer(RequireClaimsLayer::<Value>::any_role(["root"])),
            )
            .route("/tc/async", strict::<TestClaims>(&h).route_layer(never_tc))
            .route("/val/async", strict::<Value>(&h).route_layer(never_val))
            .route("/tc/opt", opt);
        let app = if tc_outside {
            routes.layer(val_auth).layer(tc_auth)
        } else {
            routes.layer(tc_auth).layer(val_auth)
        };
        let base = format!("http://{}", serve(app).await);
        let alice = token("alice", &["user"]);
        for (path, tok, status) in [
            ("/tc/me", None, 401),
            ("/val/me", None, 401),
            ("/tc/admin", Some(alice.as_str()), 403),
            ("/val/admin", Some(alice.as_str()), 403),
            ("/tc/async", Some(alice.as_str()), 403),
            ("/val/async", Some(alice.as_str()), 403),
        ] {
            let seen = see(&format!("{base}{path}"), tok, false).await;
            let what = format!("tc_outside={tc_outside} {path}: {seen:?}");
            assert_eq!(seen.status.as_u16(), status, "{what}");
            if path.starts_with("/tc") {
                assert!(seen.challenge.starts_with("Bearer realm=\"tc\""), "{what}");
                assert!(seen.challenge.contains("resource_metadata="), "{what}");
                assert!(seen.content_type.contains("problem+json"), "{what}");
            } else {
                assert!(seen.challenge.starts_with("Bearer realm=\"val\""), "{what}");
                assert!(!seen.challenge.contains("resource_metadata"), "{what}");
                assert!(!seen.content_type.contains("problem+json"), "{what}");
                assert!(seen.body.is_empty(), "{what}");
            }
            let grpc = see(&format!("{base}{path}"), tok, true).await;
            let code = if status == 401 { "16" } else { "7" };
            assert_eq!(grpc.grpc_status.as_deref(), Some(code), "{what}: {grpc:?}");
        }
        let seen = see(&format!("{base}/tc/opt"), None, false).await;
        assert_eq!((seen.status, seen.body.as_str()), (StatusCode::OK, "false"));
        assert_eq!(h.count(), 0, "a refused request reached a handler");
    }
}

/// Attack: two layers for the same claims type in plain axum (no body change): an outer
/// `ProblemJson` layer (realm `outer`, resource metadata) and an inner default one (no realm:
/// it lends nothing, and what the outer lent must not answer for it), or an inner one with
/// realm `inner`. A `RequireClaimsLayer` with its own `.realm` answers with that realm
/// whatever the layers.
/// Expected: the inner layer wins in every case, nothing of the outer leaks.
#[tokio::test]
async fn holds_same_type_inner_layer_wins_over_outer_problem_json() {
    for inner_realm in [None, Some("inner")] {
        let h = Hits::default();
        let mut inner = hs256_builder::<TestClaims>().optional();
        if let Some(realm) = inner_realm {
            inner = inner.realm(realm);
        }
        let outer = hs256_builder::<TestClaims>()
            .optional()
            .resource_metadata(ResourceMetadata::new("https://outer.example"))
            .responder(ProblemJson::with_realm("outer"))
            .build()
            .unwrap();
        let app = Router::new()
            .route("/me", strict::<TestClaims>(&h))
            .route(
                "/admin",
                strict::<TestClaims>(&h)
                    .route_layer(RequireClaimsLayer::<TestClaims>::any_role(["root"])),
            )
            .route(
                "/own",
                strict::<TestClaims>(&h)
                    .route_layer(RequireClaimsLayer::<TestClaims>::any_role(["root"]).realm("own")),
            )
            .route(
                "/async",
                strict::<TestClaims>(&h).route_layer(
                    RequireClaimsLayer::<TestClaims>::predicate_async(
                        "never",
                        |_c: Claims<TestClaims>| async { false },
                    ),
                ),
            )
            .layer(inner.build().unwrap())
            .layer(outer);
        let base = format!("http://{}", serve(app).await);
        let alice = token("alice", &["user"]);
        let want = inner_realm.unwrap_or("api");
        for (path, tok, status, realm) in [
            ("/me", None, 401, want),
            ("/admin", Some(alice.as_str()), 403, want),
            ("/async", Some(alice.as_str()), 403, want),
            ("/own", Some(alice.as_str()), 403, "own"),
            ("/own", None, 401, "own"),
        ] {
            let seen = see(&format!("{base}{path}"), tok, false).await;
            let what = format!("inner={inner_realm:?} {path}: {seen:?}");
            assert_eq!(seen.status.as_u16(), status, "{what}");
            assert!(
                seen.challenge
                    .starts_with(&format!("Bearer realm=\"{realm}\"")),
                "{what}"
            );
            assert!(!seen.challenge.contains("resource_metadata"), "{what}");
            assert!(!seen.content_type.contains("problem+json"), "{what}");
        }
        assert_eq!(h.count(), 0);
    }
}

/// Attack over gRPC (tonic server, tonic client): a `TestClaims` layer with a realm, a `Value`
/// layer between it and `RequireClaims<TestClaims>` (synchronous role, asynchronous predicate),
/// then the service. Expected: the call is refused with `PERMISSION_DENIED` (7), a call
/// without a token with `UNAUTHENTICATED` (16); never OK, never INTERNAL.
#[tokio::test]
async fn holds_grpc_mixed_stack_refusals_keep_their_codes() {
    let alice = token("alice", &["user"]);
    let asyncs = [false, true];
    for use_async in asyncs {
        let require = if use_async {
            RequireClaimsLayer::<TestClaims>::predicate_async(
                "never",
                |_c: Claims<TestClaims>| async { false },
            )
        } else {
            RequireClaimsLayer::<TestClaims>::any_role(["root"])
        };
        let stack = ServiceBuilder::new()
            .layer(hs256_builder::<TestClaims>().realm("tc").build().unwrap())
            .layer(hs256_builder::<Value>().realm("val").build().unwrap())
            .layer(require);
        let channel = grpc_server(stack).await;
        let refused = common::grpc::health_check(
            channel.clone(),
            &[("authorization", format!("Bearer {alice}"))],
        )
        .await
        .unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "async={use_async}");
        let anonymous = common::grpc::health_check(channel, &[]).await.unwrap_err();
        assert_eq!(anonymous.code(), Code::Unauthenticated, "async={use_async}");
    }
}

// ---------------------------------------------------------------------------------------------
// The verified-token cache

fn at(secs: f64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs_f64(secs)
}

/// `/me` behind `layer`, served; its URL.
async fn me_url(layer: tower_jwt_auth::JwtAuthLayer<TestClaims>) -> String {
    let app = Router::new()
        .route("/me", strict::<TestClaims>(&Hits::default()))
        .layer(layer);
    format!("http://{}/me", serve(app).await)
}

/// Attack: a token with `jti` is verified and cached (two 200s, the second a hit), then
/// revoked by `jti` in a `MemoryRevocation`; a second token of the same subject is cached,
/// then its subject is revoked (`revoke_subject`). Expected: the next request with each,
/// served from the cache, is refused 401 `invalid_token` (the shared `Arc<TokenId>` still names
/// the right token), and the other, unrevoked token of another subject still passes. A user
/// would otherwise lose logout for as long as the token stays cached.
#[tokio::test]
async fn holds_revocation_is_asked_on_every_cache_hit() {
    let store = Arc::new(MemoryRevocation::new());
    let layer = hs256_builder::<TestClaims>()
        .cache(CacheConfig::default())
        .revocation(store.clone())
        .build()
        .unwrap();
    let stats = layer.clone();
    let url = me_url(layer).await;
    let t1 = hs256_token(json!({ "sub": "alice", "jti": "a-1" }));
    let t2 = hs256_token(json!({ "sub": "bob", "jti": "b-1" }));
    let t3 = hs256_token(json!({ "sub": "carol", "jti": "c-1" }));
    for t in [&t1, &t2, &t3, &t1, &t2, &t3] {
        assert_eq!(see(&url, Some(t), false).await.status, StatusCode::OK);
    }
    let hits = stats.cache_stats().unwrap().hits;
    assert!(hits >= 3, "{:?}", stats.cache_stats());
    store.revoke("a-1", now() + 3600).await.unwrap();
    store
        .revoke_subject(Some(ISSUER), "bob", now() + 1, now() + 3600)
        .await
        .unwrap();
    for t in [&t1, &t2] {
        let seen = see(&url, Some(t), false).await;
        assert_eq!(seen.status, StatusCode::UNAUTHORIZED, "{seen:?}");
        assert!(seen.challenge.contains("invalid_token"), "{seen:?}");
    }
    assert_eq!(see(&url, Some(&t3), false).await.status, StatusCode::OK);
    assert!(stats.cache_stats().unwrap().hits > hits);
}

/// Attack: many concurrent requests with one cached token, while the token is revoked.
/// Expected: every request sent after `revoke` returned is refused; none of them is served a
/// 200 from the cache (each hit asks the store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_concurrent_hits_while_revoking() {
    let store = Arc::new(MemoryRevocation::new());
    let layer = hs256_builder::<TestClaims>()
        .cache(CacheConfig::default())
        .revocation(store.clone())
        .build()
        .unwrap();
    let url = me_url(layer).await;
    let tok = hs256_token(json!({ "sub": "alice", "jti": "conc-1" }));
    assert_eq!(see(&url, Some(&tok), false).await.status, StatusCode::OK);
    let revoked = Arc::new(AtomicBool::new(false));
    let late_passes = Arc::new(AtomicUsize::new(0));
    let late_sent = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (url, tok, revoked, late_passes, late_sent) = (
            url.clone(),
            tok.clone(),
            revoked.clone(),
            late_passes.clone(),
            late_sent.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let c = client();
            for _ in 0..40 {
                let after = revoked.load(Ordering::SeqCst);
                let status = c.get(&url).bearer_auth(&tok).send().await.unwrap().status();
                if after {
                    late_sent.fetch_add(1, Ordering::SeqCst);
                    if status == StatusCode::OK {
                        late_passes.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }));
    }
    tokio::task::yield_now().await;
    store.revoke("conc-1", now() + 3600).await.unwrap();
    revoked.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(late_passes.load(Ordering::SeqCst), 0);
    assert!(late_sent.load(Ordering::SeqCst) > 0);
    assert_eq!(
        see(&url, Some(&tok), false).await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// Attack: the expiry windows on a cache hit, with a manual clock. A token cached with `exp`
/// just ahead (fractional `exp`, leeway 5 s) is asked for at `exp + leeway - ε` (passes) and at
/// exactly `exp + leeway` (must be refused, as full verification refuses it); a token with
/// `nbf` in the future is cached once valid, then the clock steps back before `nbf - leeway`;
/// a token with `iat` ahead of the clock (within the leeway) is cached, then the clock steps
/// back. Expected: each hit is re-checked as a fresh verification would be: refusals stay
/// refusals, and a token refused once is not served from the cache afterwards.
#[tokio::test]
async fn holds_time_checks_on_a_cache_hit_match_full_verification() {
    let t0 = 2_000_000_000.0;
    let clock = Clock::manual(at(t0));
    let layer = hs256_builder::<TestClaims>()
        .leeway(Duration::from_secs(5))
        .clock(clock.clone())
        .cache(CacheConfig::default())
        .build()
        .unwrap();
    let stats = layer.clone();
    let url = me_url(layer).await;

    // exp
    let exp = t0 + 10.5;
    let tok = hs256_token(json!({ "sub": "e", "iat": t0 as u64, "exp": exp }));
    assert_eq!(see(&url, Some(&tok), false).await.status, StatusCode::OK);
    clock.set(at(exp + 5.0 - 0.001));
    let hits = stats.cache_stats().unwrap().hits;
    assert_eq!(see(&url, Some(&tok), false).await.status, StatusCode::OK);
    assert_eq!(
        stats.cache_stats().unwrap().hits,
        hits + 1,
        "served from the cache"
    );
    clock.set(at(exp + 5.0));
    let seen = see(&url, Some(&tok), false).await;
    assert_eq!(seen.status, StatusCode::UNAUTHORIZED, "{seen:?}");
    assert!(seen.challenge.contains("expired"), "{seen:?}");
    // The clock back in the window: the token is valid again (verified afresh, not refused
    // from a poisoned entry), and later refused again.
    clock.set(at(exp + 4.0));
    assert_eq!(see(&url, Some(&tok), false).await.status, StatusCode::OK);
    clock.set(at(exp + 100.0));
    assert_eq!(
        see(&url, Some(&tok), false).await.status,
        StatusCode::UNAUTHORIZED
    );

    // nbf, cached once valid, then the clock steps back.
    let t1 = t0 + 1000.0;
    clock.set(at(t1));
    let nbf = t1 + 20.0;
    let tok = hs256_token(json!({ "sub": "n", "iat": t1 as u64, "nbf": nbf, "exp": t1 + 600.0 }));
    assert_eq!(
        see(&url, Some(&tok), false).await.status,
        StatusCode::UNAUTHORIZED
    );
    clock.set(at(nbf - 5.0));
    assert_eq!(see(&url, Some(&tok), false).await.status, StatusCode::OK);
    assert_eq!(see(&url, Some(&tok), false).await.status, StatusCode::OK);
    clock.set(at(nbf - 5.001));
    let seen = see(&url, Some(&tok), false).await;
    assert_eq!(seen.status, StatusCode::UNAUTHORIZED, "{seen:?}");

    // iat ahead of the clock, within the leeway; then the clock steps back.
    let t2 = t0 + 2000.0;
    clock.set(at(t2));
    let tok = hs256_token(json!({ "sub": "i", "iat": (t2 + 5.0) as u64, "exp": t2 + 600.0 }));
    assert_eq!(see(&url, Some(&tok), false).await.status, StatusCode::OK);
    assert_eq!(see(&url, Some(&tok), false).await.status, StatusCode::OK);
    clock.set(at(t2 - 0.5));
    let seen = see(&url, Some(&tok), false).await;
    assert_eq!(seen.status, StatusCode::UNAUTHORIZED, "{seen:?}");
}

/// Attack: tokens that differ from a cached one only in the tail: one character of the
/// signature changed (including a change of the last character's unused low bits, which a
/// lax base64 decoder maps to the same signature bytes), a character appended, a character
/// cut, a trailing `=`/`.`. Expected: none is served from the cache (a hit compares the whole
/// token) and each is refused as full verification refuses it.
#[tokio::test]
async fn holds_tail_variants_of_a_cached_token_are_refused() {
    let layer = hs256_builder::<TestClaims>()
        .cache(CacheConfig::default())
        .build()
        .unwrap();
    let stats = layer.clone();
    let url = me_url(layer).await;
    let tok = token("alice", &[]);
    assert_eq!(see(&url, Some(&tok), false).await.status, StatusCode::OK);
    assert_eq!(see(&url, Some(&tok), false).await.status, StatusCode::OK);
    let last = tok.chars().last().unwrap();
    // Base64url alphabet index of the last char: a 32-byte signature leaves 2 unused bits.
    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = ALPHABET.find(last).unwrap();
    let low_bits = ALPHABET.chars().nth(idx ^ 1).unwrap();
    let high_bits = ALPHABET.chars().nth(idx ^ 32).unwrap();
    let stem = &tok[..tok.len() - 1];
    let variants = [
        format!("{stem}{low_bits}"),
        format!("{stem}{high_bits}"),
        format!("{tok}A"),
        stem.to_owned(),
        format!("{tok}="),
        format!("{tok}."),
    ];
    let hits = stats.cache_stats().unwrap().hits;
    for v in &variants {
        let seen = see(&url, Some(v), false).await;
        assert_eq!(seen.status, StatusCode::UNAUTHORIZED, "{v}: {seen:?}");
    }
    assert_eq!(
        stats.cache_stats().unwrap().hits,
        hits,
        "a variant was a cache hit"
    );
    assert_eq!(see(&url, Some(&tok), false).await.status, StatusCode::OK);
}

/// Attack: a `validate` hook whose answer changes after the token was cached (an account
/// disabled). Expected: the next request, a cache hit, is refused; the hook is asked again.
#[tokio::test]
async fn holds_hooks_run_on_every_cache_hit() {
    let disabled = Arc::new(AtomicBool::new(false));
    let d = disabled.clone();
    let layer = hs256_builder::<TestClaims>()
        .cache(CacheConfig::default())
        .validate(move |_c: &TestClaims| !d.load(Ordering::SeqCst))
        .build()
        .unwrap();
    let url = me_url(layer).await;
    let tok = token("alice", &[]);
    assert_eq!(see(&url, Some(&tok), false).await.status, StatusCode::OK);
    assert_eq!(see(&url, Some(&tok), false).await.status, StatusCode::OK);
    disabled.store(true, Ordering::SeqCst);
    assert_eq!(
        see(&url, Some(&tok), false).await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// Attack: a token signed by a remote key (`rsa-a`) is verified and cached; the provider then
/// withdraws that key (publishes only `rsa-b`), and a token naming `rsa-b` makes the layer
/// refresh its keys. Expected: the cached `rsa-a` token is no longer served from the cache
/// (the generation changed) and is refused; the `rsa-b` token passes. A user would otherwise
/// keep accepting tokens of a retired (possibly compromised) key until they fall out of the
/// cache.
#[cfg(feature = "remote")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_a_key_rotation_empties_the_cache() {
    use common::jwks_server::JwksServer;
    use tower_jwt_auth::remote::RemoteJwks;

    let server = JwksServer::start(&[jwk("rsa", "rsa-a")]).await;
    server.cache_control("max-age=600");
    let keys = RemoteJwks::from_jwks_uri(server.jwks_url())
        .allow_http_for_loopback()
        .refresh_cooldown(Duration::ZERO)
        .build()
        .await
        .unwrap();
    let layer = tower_jwt_auth::JwtAuthLayer::<TestClaims>::builder()
        .remote_jwks(keys.clone())
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .cache(CacheConfig::default())
        .build()
        .unwrap();
    let stats = layer.clone();
    let url = me_url(layer).await;
    let sign = |which: &str, kid: &str| {
        let (key, alg) = private_key(which);
        sign_jwt(alg, &key, Some(kid), &good_claims())
    };
    let old = sign("rsa", "rsa-a");
    let new = sign("rsa-b", "rsa-b");
    assert_eq!(see(&url, Some(&old), false).await.status, StatusCode::OK);
    assert_eq!(see(&url, Some(&old), false).await.status, StatusCode::OK);
    assert!(stats.cache_stats().unwrap().hits >= 1);
    server.publish(&[jwk("rsa-b", "rsa-b")]);
    assert_eq!(see(&url, Some(&new), false).await.status, StatusCode::OK);
    assert_eq!(keys.kids(), ["rsa-b"]);
    let seen = see(&url, Some(&old), false).await;
    assert_ne!(seen.status, StatusCode::OK, "{seen:?}");
    assert_eq!(see(&url, Some(&new), false).await.status, StatusCode::OK);
}

/// Attack: revocation through a real Redis (`redis-server` on 127.0.0.1) on cache hits: a
/// token is cached, then revoked by `jti` through a second connection (another instance of
/// the fleet); another token's subject is revoked. Expected: the next hits are refused 401.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_redis_revocation_on_a_cache_hit() {
    use common::redis_server::RedisServer;
    use tower_jwt_auth::revocation::RedisRevocation;

    let redis = RedisServer::start().await;
    let store = Arc::new(RedisRevocation::connect(&redis.url()).await.unwrap());
    let admin = RedisRevocation::connect(&redis.url()).await.unwrap();
    let layer = hs256_builder::<TestClaims>()
        .cache(CacheConfig::default())
        .revocation(store)
        .build()
        .unwrap();
    let stats = layer.clone();
    let url = me_url(layer).await;
    let t1 = hs256_token(json!({ "sub": "alice", "jti": "r-1" }));
    let t2 = hs256_token(json!({ "sub": "bob", "jti": "r-2" }));
    for t in [&t1, &t2, &t1, &t2] {
        assert_eq!(see(&url, Some(t), false).await.status, StatusCode::OK);
    }
    assert!(stats.cache_stats().unwrap().hits >= 2);
    admin.revoke("r-1", now() + 3600).await.unwrap();
    admin
        .revoke_subject(Some(ISSUER), "bob", now() + 1, now() + 3600)
        .await
        .unwrap();
    for t in [&t1, &t2] {
        let seen = see(&url, Some(t), false).await;
        assert_eq!(seen.status, StatusCode::UNAUTHORIZED, "{seen:?}");
    }
}
