//! Audit 19: the DPoP key carried by the verified claims (`Claims::dpop_key`). Claimed: a
//! handler sees `Some(key)` only when this layer verified, on this request, a DPoP proof whose
//! key is the `cnf.jkt` of these claims' token, and `None` only for claims that came with a
//! Bearer token. Attacked through the verified-token cache, layers of the same claims type
//! stacked, claims smuggled into the extensions past every verdict that lets a request through
//! without a token (optional, public path, CORS preflight) or refuses it, tonic, the
//! asynchronous paths (revocation), tenants, nonces, `RequireClaims::predicate_async` and
//! `JwtAuthLayer::verify`.
//!
//! Every test runs real servers on 127.0.0.1 with real clients (reqwest, tonic); `holds_*`
//! tests are attacks the code resisted.

use crate::common;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::get;
use common::dpop::Holder;
use common::grpc::{HEALTH, grpc_server, health_check};
use common::*;
use jsonwebtoken::EncodingKey;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tonic::Code;
use tower::ServiceBuilder;
use tower::util::MapRequestLayer;
use tower_jwt_auth::authorize::RequireClaimsLayer;
use tower_jwt_auth::cache::CacheConfig;
use tower_jwt_auth::dpop::Dpop;
use tower_jwt_auth::revocation::{MemoryRevocation, RevocationStore};
use tower_jwt_auth::{Algorithm, AuthError, Claims, JwtAuthLayer, Key, Tenant, TokenSource};

const BASE: &str = "https://api.example.com";

/// A slot holding claims captured from one request, to be replayed into others.
type Stash = Arc<Mutex<Option<Claims<TestClaims>>>>;

/// `(status, body)` of `method url` with the extra headers.
async fn send_h(method: &str, url: &str, headers: &[(&str, String)]) -> (StatusCode, String) {
    let mut req = client().request(method.parse().unwrap(), url);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let res = req.send().await.unwrap();
    (res.status(), res.text().await.unwrap())
}

async fn get_h(url: &str, headers: &[(&str, String)]) -> (StatusCode, String) {
    send_h("GET", url, headers).await
}

/// A token of the test policy for `sub`, bound to `holder`'s key.
fn bound(sub: &str, holder: &Holder) -> String {
    hs256_token(json!({ "sub": sub, "cnf": { "jkt": holder.jkt } }))
}

/// A proof by `holder` of `htm <BASE><path>` for `token`.
fn proof(holder: &Holder, htm: &str, path: &str, token: &str) -> String {
    holder.sign(
        htm,
        &format!("{BASE}{path}"),
        json!(now()),
        token,
        json!({}),
        json!({}),
    )
}

/// The headers of a DPoP request for `GET <path>`.
fn dpop_headers(holder: &Holder, path: &str, token: &str) -> Vec<(&'static str, String)> {
    vec![
        ("authorization", format!("DPoP {token}")),
        ("dpop", proof(holder, "GET", path, token)),
    ]
}

fn bearer(token: &str) -> Vec<(&'static str, String)> {
    vec![("authorization", format!("Bearer {token}"))]
}

/// What a handler answers: `<sub> <thumbprint>`, `<sub> no-key`, or `anonymous`.
fn describe(claims: Option<&Claims<TestClaims>>) -> String {
    match claims {
        Some(c) => {
            let key = c.dpop_key().map(|k| k.thumbprint().to_owned());
            format!("{} {}", c.sub, key.unwrap_or_else(|| "no-key".into()))
        }
        None => "anonymous".into(),
    }
}

/// `/me` (and every other path) answering [`describe`] of its `Option<Claims<TestClaims>>`,
/// counting its calls.
fn me(hits: &Hits) -> Router {
    let h = hits.clone();
    let handler = move |c: Option<Claims<TestClaims>>| {
        h.hit();
        async move { describe(c.as_ref()) }
    };
    Router::new()
        .route("/me", get(handler.clone()).options(handler.clone()))
        .route("/public", get(handler.clone()))
        .fallback(handler)
}

// ---------------------------------------------------------------------------------------------
// The verified-token cache

/// Attack: a layer with DPoP allowed and the verified-token cache. A bound token verified with
/// its holder's proof is cached; then it is sent again as a Bearer token, with another key's
/// proof, with its holder's proof replayed, and with no proof. A token without `cnf` is cached
/// as a Bearer token, then sent under the `DPoP` scheme with a valid proof of some key.
/// Expected: only the bound token with a fresh proof of its own key reaches the handler, with
/// that key; the Bearer token reaches it without a key, and never gains one from the cache.
/// A user would lose the binding: a stolen bound token replayed from the cache, or a Bearer
/// token dressed as DPoP-bound.
#[tokio::test]
async fn holds_a_cache_hit_never_lends_or_keeps_a_key() {
    let hits = Hits::default();
    let layer = hs256_builder::<TestClaims>()
        .cache(CacheConfig::default())
        .dpop(Dpop::allowed(BASE))
        .build()
        .unwrap();
    let stats = layer.clone();
    let base = format!("http://{}", serve(me(&hits).layer(layer)).await);
    let url = format!("{base}/me");
    let ec = Holder::new("ec");
    let ed = Holder::new("ed");
    let token = bound("dora", &ec);

    let first = dpop_headers(&ec, "/me", &token);
    let answer = get_h(&url, &first).await;
    assert_eq!(answer, (StatusCode::OK, format!("dora {}", ec.jkt)));
    assert_eq!(hits.take(), 1);

    assert_eq!(
        get_h(&url, &bearer(&token)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get_h(&url, &dpop_headers(&ed, "/me", &token)).await.0,
        StatusCode::UNAUTHORIZED,
        "another key's proof"
    );
    assert_eq!(
        get_h(&url, &first).await.0,
        StatusCode::UNAUTHORIZED,
        "replayed proof"
    );
    assert_eq!(
        get_h(&url, &[("authorization", format!("DPoP {token}"))])
            .await
            .0,
        StatusCode::UNAUTHORIZED,
        "no proof"
    );
    assert_eq!(hits.take(), 0, "a refused request reached the handler");

    // A fresh proof of the bound key, served from the cache: the key of this proof.
    let answer = get_h(&url, &dpop_headers(&ec, "/me", &token)).await;
    assert_eq!(answer, (StatusCode::OK, format!("dora {}", ec.jkt)));

    // A Bearer token (no `cnf`) is cached without a key, and gets none under the DPoP scheme.
    let plain = hs256_token(json!({ "sub": "bert" }));
    assert_eq!(
        get_h(&url, &bearer(&plain)).await,
        (StatusCode::OK, "bert no-key".to_owned())
    );
    assert_eq!(
        get_h(&url, &bearer(&plain)).await,
        (StatusCode::OK, "bert no-key".to_owned()),
        "cache hit"
    );
    assert_eq!(
        get_h(&url, &dpop_headers(&ec, "/me", &plain)).await.0,
        StatusCode::UNAUTHORIZED,
        "an unbound token with a proof"
    );
    assert_eq!(hits.take(), 3);
    let stats = stats.cache_stats().unwrap();
    assert!(stats.hits >= 3, "{stats:?}");
}

// ---------------------------------------------------------------------------------------------
// Layers of the same claims type

/// Attack: two layers for the same claims type on one request. (1) outer layer with DPoP
/// verifies a token bound to the holder's key; inner layer reads another subject's Bearer token
/// from `x-a`. (2) the reverse. (3) outer DPoP layer, inner optional Bearer layer that finds no
/// token. (4) two DPoP layers with their own replay stores; (5) sharing one. Expected: the
/// claims the handler sees are the inner layer's, with the key only when the inner layer
/// checked a proof for that very token: (1) `alice no-key`; (2) `dora <jkt>`; (3) anonymous;
/// (4) `dora <jkt>`; (5) refused (the proof is spent by the outer layer). A user would lose the
/// binding: one subject's claims read as bound to another token's key.
#[tokio::test]
async fn holds_same_type_stack_the_key_belongs_to_the_inner_layers_token() {
    let hits = Hits::default();
    let ec = Holder::new("ec");
    let dora = bound("dora", &ec);
    let alice = hs256_token(json!({ "sub": "alice" }));
    let dpop_layer = |store: Option<Arc<MemoryRevocation>>| {
        let mut dpop = Dpop::required(BASE);
        if let Some(store) = store {
            dpop = dpop.replay_store(store);
        }
        hs256_builder::<TestClaims>().dpop(dpop).build().unwrap()
    };
    let x_a = || {
        hs256_builder::<TestClaims>()
            .token_sources([TokenSource::header("x-a")])
            .build()
            .unwrap()
    };

    // (1) outer DPoP, inner Bearer in `x-a`.
    let app = me(&hits).layer(x_a()).layer(dpop_layer(None));
    let url = format!("http://{}/me", serve(app).await);
    let mut headers = dpop_headers(&ec, "/me", &dora);
    headers.push(("x-a", alice.clone()));
    assert_eq!(
        get_h(&url, &headers).await,
        (StatusCode::OK, "alice no-key".to_owned())
    );

    // (2) outer Bearer in `x-a`, inner DPoP.
    let app = me(&hits).layer(dpop_layer(None)).layer(x_a());
    let url = format!("http://{}/me", serve(app).await);
    let mut headers = dpop_headers(&ec, "/me", &dora);
    headers.push(("x-a", alice.clone()));
    assert_eq!(
        get_h(&url, &headers).await,
        (StatusCode::OK, format!("dora {}", ec.jkt))
    );

    // (3) outer DPoP, inner optional Bearer layer: no Bearer token, so no claims.
    let optional = hs256_builder::<TestClaims>().optional().build().unwrap();
    let app = me(&hits).layer(optional).layer(dpop_layer(None));
    let url = format!("http://{}/me", serve(app).await);
    assert_eq!(
        get_h(&url, &dpop_headers(&ec, "/me", &dora)).await,
        (StatusCode::OK, "anonymous".to_owned())
    );

    // (4) two DPoP layers, each with its own replay store.
    let app = me(&hits).layer(dpop_layer(None)).layer(dpop_layer(None));
    let url = format!("http://{}/me", serve(app).await);
    assert_eq!(
        get_h(&url, &dpop_headers(&ec, "/me", &dora)).await,
        (StatusCode::OK, format!("dora {}", ec.jkt))
    );
    assert_eq!(hits.take(), 4);

    // (5) two DPoP layers sharing a store: the inner one sees the proof as replayed.
    let store = Arc::new(MemoryRevocation::new());
    let app = me(&hits)
        .layer(dpop_layer(Some(store.clone())))
        .layer(dpop_layer(Some(store)));
    let url = format!("http://{}/me", serve(app).await);
    assert_eq!(
        get_h(&url, &dpop_headers(&ec, "/me", &dora)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(hits.take(), 0);
}

// ---------------------------------------------------------------------------------------------
// Smuggled claims

/// Attack: a middleware in front of a DPoP layer (optional, a public path, CORS preflights let
/// through) inserts claims carrying a DPoP key, captured from an earlier legitimate DPoP
/// request, into every request (as a buggy session or caching middleware would). Sent: a
/// request without a token, one to the public path, a CORS preflight, a Bearer token of
/// another subject, a token the layer refuses, and a bound token without a proof. Expected: no
/// handler sees the captured claims or key: anonymous for the first three, `bert no-key` for
/// the Bearer token, and 401 without reaching the handler for the last two (and for the bound
/// token sent as a Bearer token). A user would lose the binding: a key vouched for by the
/// layer on a request that proved nothing.
#[tokio::test]
async fn holds_smuggled_claims_with_a_key_never_pass_any_verdict() {
    let hits = Hits::default();
    let stash: Stash = Arc::default();
    let capture = {
        let stash = stash.clone();
        get(move |c: Claims<TestClaims>| {
            *stash.lock().unwrap() = Some(c.clone());
            async move { describe(Some(&c)) }
        })
    };
    let smuggle = {
        let stash = stash.clone();
        MapRequestLayer::new(move |mut req: http::Request<axum::body::Body>| {
            if let Some(claims) = stash.lock().unwrap().clone() {
                req.extensions_mut().insert(claims);
            }
            req
        })
    };
    let layer = hs256_builder::<TestClaims>()
        .dpop(Dpop::allowed(BASE))
        .optional()
        .public_path("/public")
        .pass_cors_preflight()
        .build()
        .unwrap();
    let app = me(&hits)
        .route("/capture", capture)
        .layer(layer)
        .layer(smuggle);
    let base = format!("http://{}", serve(app).await);
    let ec = Holder::new("ec");
    let dora = bound("dora", &ec);
    let answer = get_h(
        &format!("{base}/capture"),
        &dpop_headers(&ec, "/capture", &dora),
    )
    .await;
    assert_eq!(answer, (StatusCode::OK, format!("dora {}", ec.jkt)));
    assert!(stash.lock().unwrap().is_some(), "claims captured");

    let me_url = format!("{base}/me");
    let anonymous = (StatusCode::OK, "anonymous".to_owned());
    assert_eq!(get_h(&me_url, &[]).await, anonymous, "no token");
    assert_eq!(
        get_h(
            &format!("{base}/public"),
            &dpop_headers(&ec, "/public", &dora)
        )
        .await,
        anonymous,
        "public path"
    );
    let preflight = [
        ("origin", "https://app.example".to_owned()),
        ("access-control-request-method", "GET".to_owned()),
    ];
    assert_eq!(
        send_h("OPTIONS", &me_url, &preflight).await,
        anonymous,
        "CORS preflight"
    );
    assert_eq!(hits.take(), 3);
    let bert = hs256_token(json!({ "sub": "bert" }));
    assert_eq!(
        get_h(&me_url, &bearer(&bert)).await,
        (StatusCode::OK, "bert no-key".to_owned())
    );
    assert_eq!(hits.take(), 1);
    assert_eq!(
        get_h(&me_url, &bearer(&other_key_token())).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get_h(&me_url, &[("authorization", format!("DPoP {dora}"))])
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get_h(&me_url, &bearer(&dora)).await.0,
        StatusCode::UNAUTHORIZED,
        "a bound token as Bearer is refused, not let through as anonymous"
    );
    assert_eq!(hits.take(), 0);
}

// ---------------------------------------------------------------------------------------------
// tonic

/// Attack: a real tonic server; a middleware in front of a DPoP layer (allowed, optional)
/// inserts claims with a key captured from an earlier DPoP call into every call; behind the
/// layer, what the service would read (`Claims<TestClaims>` in the extensions, as
/// `grpc::claims` reads them) is recorded. Calls: a DPoP call (POST to the method's path), a
/// call without a token, a Bearer call of another subject. Expected: the DPoP call carries its
/// own key, the tokenless call no claims, the Bearer call no key.
#[tokio::test]
async fn holds_tonic_calls_see_only_their_own_key() {
    let stash: Stash = Arc::default();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let smuggle = {
        let stash = stash.clone();
        MapRequestLayer::new(move |mut req: http::Request<tonic::body::Body>| {
            if let Some(claims) = stash.lock().unwrap().clone() {
                req.extensions_mut().insert(claims);
            }
            req
        })
    };
    let record = {
        let (stash, seen) = (stash.clone(), seen.clone());
        MapRequestLayer::new(move |req: http::Request<tonic::body::Body>| {
            let claims = req.extensions().get::<Claims<TestClaims>>();
            seen.lock().unwrap().push(describe(claims));
            if stash.lock().unwrap().is_none() {
                *stash.lock().unwrap() = claims.cloned();
            }
            req
        })
    };
    let layer = hs256_builder::<TestClaims>()
        .dpop(Dpop::allowed(BASE))
        .optional()
        .build()
        .unwrap();
    let stack = ServiceBuilder::new()
        .layer(smuggle)
        .layer(layer)
        .layer(record)
        .into_inner();
    let channel = grpc_server(stack).await;
    let ec = Holder::new("ec");
    let dora = bound("dora", &ec);
    let dpop_call = |token: &str| {
        vec![
            ("authorization", format!("DPoP {token}")),
            ("dpop", proof(&ec, "POST", HEALTH, token)),
        ]
    };
    health_check(channel.clone(), &dpop_call(&dora))
        .await
        .unwrap();
    health_check(channel.clone(), &[]).await.unwrap();
    let bert = hs256_token(json!({ "sub": "bert" }));
    health_check(channel.clone(), &bearer(&bert)).await.unwrap();
    // A bound token without a proof is refused before the service.
    let s = health_check(
        channel.clone(),
        &[("authorization", format!("DPoP {dora}"))],
    )
    .await
    .unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
    assert_eq!(
        *seen.lock().unwrap(),
        [
            format!("dora {}", ec.jkt),
            "anonymous".to_owned(),
            "bert no-key".to_owned(),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// The asynchronous paths, tenants, nonces, RequireClaims

/// Attack: a DPoP layer with a revocation store (the path where the claims join the request
/// after a wait, the proof spent before the revocation check). A bound token with its proof,
/// then the token revoked and sent with a fresh proof. Expected: the first reaches the handler
/// with its key; the revoked one is refused (401), its proof never lending the key to
/// anything. A user would lose revocation of DPoP-bound tokens.
#[tokio::test]
async fn holds_revocation_path_carries_the_key_and_still_refuses_revoked_tokens() {
    let hits = Hits::default();
    let store = Arc::new(MemoryRevocation::new());
    let layer = hs256_builder::<TestClaims>()
        .revocation(store.clone())
        .dpop(Dpop::required(BASE))
        .build()
        .unwrap();
    let url = format!("http://{}/me", serve(me(&hits).layer(layer)).await);
    let ec = Holder::new("ec");
    let token = hs256_token(json!({ "sub": "dora", "jti": "a19-1", "cnf": { "jkt": ec.jkt } }));
    assert_eq!(
        get_h(&url, &dpop_headers(&ec, "/me", &token)).await,
        (StatusCode::OK, format!("dora {}", ec.jkt))
    );
    store.revoke("a19-1", now() + 3600).await.unwrap();
    assert_eq!(
        get_h(&url, &dpop_headers(&ec, "/me", &token)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(hits.count(), 1);
}

/// Attack: a multi-tenant layer with DPoP allowed; tenant B has its own secret. Tokens: A's
/// bound to the EC key, B's bound to the Ed25519 key, B's unbound. Sent: each bound token with
/// its holder's proof, B's bound token with the EC holder's proof, B's unbound token as Bearer.
/// Expected: each bound token carries its own key; the cross-key proof is refused; the Bearer
/// token has no key. A user would lose the binding across issuers.
#[tokio::test]
async fn holds_tenants_each_token_gets_its_own_key() {
    const A: &str = "https://a.test";
    const B: &str = "https://b.test";
    const B_SECRET: &[u8] = b"tenant b's own secret, at least 32 bytes long";
    let hits = Hits::default();
    let layer = JwtAuthLayer::<TestClaims>::builder()
        .tenant(Tenant::new(A).key(Key::hmac(Algorithm::HS256, SECRET)))
        .tenant(Tenant::new(B).key(Key::hmac(Algorithm::HS256, B_SECRET)))
        .audience(AUDIENCE)
        .dpop(Dpop::allowed(BASE))
        .build()
        .unwrap();
    let url = format!("http://{}/me", serve(me(&hits).layer(layer)).await);
    let ec = Holder::new("ec");
    let ed = Holder::new("ed");
    let b_token = |overrides: Value| {
        let mut claims = claims_with(json!({ "iss": B }));
        merge(&mut claims, overrides);
        sign_jwt(
            Algorithm::HS256,
            &EncodingKey::from_secret(B_SECRET),
            None,
            &claims,
        )
    };
    let a_bound = hs256_token(json!({ "iss": A, "sub": "ann", "cnf": { "jkt": ec.jkt } }));
    let b_bound = b_token(json!({ "sub": "bob", "cnf": { "jkt": ed.jkt } }));
    let b_plain = b_token(json!({ "sub": "bea" }));
    assert_eq!(
        get_h(&url, &dpop_headers(&ec, "/me", &a_bound)).await,
        (StatusCode::OK, format!("ann {}", ec.jkt))
    );
    assert_eq!(
        get_h(&url, &dpop_headers(&ed, "/me", &b_bound)).await,
        (StatusCode::OK, format!("bob {}", ed.jkt))
    );
    assert_eq!(
        get_h(&url, &dpop_headers(&ec, "/me", &b_bound)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get_h(&url, &bearer(&b_plain)).await,
        (StatusCode::OK, "bea no-key".to_owned())
    );
    assert_eq!(hits.count(), 3);
}

/// Attack: DPoP required with nonces. A proof without a nonce, then one with the nonce handed
/// out but made by another key than the token's, then the holder's with the nonce. Expected:
/// the first two are refused without reaching the handler (the nonce refusal hands out a nonce,
/// never claims); the last carries the holder's key.
#[tokio::test]
async fn holds_nonce_refusals_never_reach_the_handler() {
    let hits = Hits::default();
    let layer = hs256_builder::<TestClaims>()
        .dpop(Dpop::required(BASE).nonce(b"the nonce secret of audit nineteen!!"))
        .build()
        .unwrap();
    let url = format!("http://{}/me", serve(me(&hits).layer(layer)).await);
    let ec = Holder::new("ec");
    let ed = Holder::new("ed");
    let token = bound("dora", &ec);
    let res = client()
        .get(&url)
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", proof(&ec, "GET", "/me", &token))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let nonce = res.headers()["dpop-nonce"].to_str().unwrap().to_owned();
    let with_nonce = |h: &Holder| {
        h.sign(
            "GET",
            &format!("{BASE}/me"),
            json!(now()),
            &token,
            json!({ "nonce": nonce }),
            json!({}),
        )
    };
    let headers = |p: String| vec![("authorization", format!("DPoP {token}")), ("dpop", p)];
    assert_eq!(
        get_h(&url, &headers(with_nonce(&ed))).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(hits.count(), 0);
    assert_eq!(
        get_h(&url, &headers(with_nonce(&ec))).await,
        (StatusCode::OK, format!("dora {}", ec.jkt))
    );
}

/// Attack: `RequireClaimsLayer::predicate_async` requiring a DPoP key, behind a layer with DPoP
/// allowed. Sent: a Bearer token, and a bound token with its proof. Expected: the Bearer token
/// is refused 403 (its claims carry no key), the bound one passes with its key. A user relying
/// on the predicate would otherwise admit Bearer tokens where proof of possession is required.
#[tokio::test]
async fn holds_require_claims_sees_the_key_of_the_request() {
    let hits = Hits::default();
    let require = RequireClaimsLayer::<TestClaims>::predicate_async(
        "dpop",
        |c: Claims<TestClaims>| async move { c.dpop_key().is_some() },
    );
    let layer = hs256_builder::<TestClaims>()
        .dpop(Dpop::allowed(BASE))
        .build()
        .unwrap();
    let app = me(&hits).layer(require).layer(layer);
    let url = format!("http://{}/me", serve(app).await);
    let ec = Holder::new("ec");
    let plain = hs256_token(json!({ "sub": "bert" }));
    assert_eq!(get_h(&url, &bearer(&plain)).await.0, StatusCode::FORBIDDEN);
    assert_eq!(hits.count(), 0);
    let token = bound("dora", &ec);
    assert_eq!(
        get_h(&url, &dpop_headers(&ec, "/me", &token)).await,
        (StatusCode::OK, format!("dora {}", ec.jkt))
    );
}

/// Attack: `JwtAuthLayer::verify` (tokens outside a request, e.g. in a WebSocket message) on a
/// token bound to a key. Expected: with DPoP on it is refused (no proof can come with it), in
/// required mode every token is; an unbound token's claims carry no key; with DPoP off and
/// `accept_bound_tokens_as_bearer`, a bound token's claims carry no key either (it was taken as
/// a Bearer token). `verify` never yields a key.
#[test]
fn holds_verify_never_yields_a_key() {
    let ec = Holder::new("ec");
    let token = bound("dora", &ec);
    let plain = hs256_token(json!({ "sub": "bert" }));
    let allowed = hs256_builder::<TestClaims>()
        .dpop(Dpop::allowed(BASE))
        .build()
        .unwrap();
    assert_eq!(allowed.verify(&token).unwrap_err(), AuthError::DpopRequired);
    let claims = allowed.verify(&plain).unwrap();
    assert_eq!((claims.sub.as_str(), claims.dpop_key()), ("bert", None));
    let required = hs256_builder::<TestClaims>()
        .dpop(Dpop::required(BASE))
        .build()
        .unwrap();
    assert_eq!(
        required.verify(&plain).unwrap_err(),
        AuthError::DpopRequired
    );
    assert_eq!(
        required.verify(&token).unwrap_err(),
        AuthError::DpopRequired
    );
    let off = hs256_builder::<TestClaims>()
        .accept_bound_tokens_as_bearer()
        .build()
        .unwrap();
    let claims = off.verify(&token).unwrap();
    assert_eq!((claims.sub.as_str(), claims.dpop_key()), ("dora", None));
}

/// Attack: two layers of the same claims type where one takes the asynchronous path (a
/// revocation store: its claims join the request after a wait, the proof spent first). (1)
/// outer DPoP layer with revocation, inner Bearer layer reading `x-a`; (2) the reverse.
/// Expected: as on the synchronous path, the inner layer's claims, with a key only for the
/// token whose proof that layer checked: (1) `alice no-key`, (2) `dora <jkt>`. A user would
/// lose the binding if the claims arriving after the wait were paired with the other token's
/// key, or the other way round.
#[tokio::test]
async fn holds_same_type_stack_on_the_asynchronous_path() {
    let hits = Hits::default();
    let ec = Holder::new("ec");
    let dora = hs256_token(json!({ "sub": "dora", "jti": "a19-s", "cnf": { "jkt": ec.jkt } }));
    let alice = hs256_token(json!({ "sub": "alice", "jti": "a19-a" }));
    let dpop_layer = || {
        hs256_builder::<TestClaims>()
            .revocation(Arc::new(MemoryRevocation::new()))
            .dpop(Dpop::required(BASE))
            .build()
            .unwrap()
    };
    let x_a = || {
        hs256_builder::<TestClaims>()
            .token_sources([TokenSource::header("x-a")])
            .revocation(Arc::new(MemoryRevocation::new()))
            .build()
            .unwrap()
    };
    let app = me(&hits).layer(x_a()).layer(dpop_layer());
    let url = format!("http://{}/me", serve(app).await);
    let mut headers = dpop_headers(&ec, "/me", &dora);
    headers.push(("x-a", alice.clone()));
    assert_eq!(
        get_h(&url, &headers).await,
        (StatusCode::OK, "alice no-key".to_owned())
    );
    let app = me(&hits).layer(dpop_layer()).layer(x_a());
    let url = format!("http://{}/me", serve(app).await);
    let mut headers = dpop_headers(&ec, "/me", &dora);
    headers.push(("x-a", alice));
    assert_eq!(
        get_h(&url, &headers).await,
        (StatusCode::OK, format!("dora {}", ec.jkt))
    );
    assert_eq!(hits.count(), 2);
}

/// Attack: many concurrent requests through one layer with DPoP allowed and the cache (whose
/// hits share one `Arc` of claims): tokens bound to three different keys, each with its
/// holder's proofs, interleaved with Bearer tokens. Expected: every answer names its own
/// subject and its own key (or none for Bearer); no key crosses to another request's claims.
#[tokio::test]
async fn holds_concurrent_requests_keep_their_own_keys() {
    let hits = Hits::default();
    let layer = hs256_builder::<TestClaims>()
        .cache(CacheConfig::default())
        .dpop(Dpop::allowed(BASE))
        .build()
        .unwrap();
    let url = format!("http://{}/me", serve(me(&hits).layer(layer)).await);
    let holders: Arc<Vec<(String, Holder)>> = Arc::new(
        ["ec", "ed", "rsa"]
            .iter()
            .map(|which| (format!("user-{which}"), Holder::new(which)))
            .collect(),
    );
    let mut tasks = Vec::new();
    for i in 0..60usize {
        let (url, holders) = (url.clone(), holders.clone());
        tasks.push(tokio::spawn(async move {
            if i % 4 == 3 {
                let sub = format!("bearer-{i}");
                let answer = get_h(&url, &bearer(&hs256_token(json!({ "sub": sub })))).await;
                return (answer, (StatusCode::OK, format!("{sub} no-key")));
            }
            let (sub, holder) = &holders[i % 3];
            let token = bound(sub, holder);
            let answer = get_h(&url, &dpop_headers(holder, "/me", &token)).await;
            (answer, (StatusCode::OK, format!("{sub} {}", holder.jkt)))
        }));
    }
    for task in tasks {
        let (answer, want) = task.await.unwrap();
        assert_eq!(answer, want);
    }
    assert_eq!(hits.count(), 60);
}

/// Attack: claims an application builds itself (`Claims::new`, `Claims::from(Arc)`, as in
/// tests of handlers or a middleware inserting claims of its own) taken for claims the layer
/// verified with a proof. Expected: they never carry a key (`DpopKey` has no public
/// constructor); a clone of the layer's claims keeps the key of the request they came with, and
/// `into_inner` gives the claims alone.
#[test]
fn holds_claims_built_by_the_application_carry_no_key() {
    let c = TestClaims {
        sub: "mallory".into(),
        roles: vec!["admin".into()],
    };
    assert!(Claims::new(c.clone()).dpop_key().is_none());
    assert!(Claims::from(Arc::new(c.clone())).dpop_key().is_none());
    let cloned = Claims::new(c.clone()).clone();
    assert!(cloned.dpop_key().is_none());
    assert_eq!(cloned.into_inner(), c);
}

/// Attack: remote keys; a token bound to the EC key, signed under a `kid` the provider
/// publishes only after the layer loaded its keys, so the request takes the key-refresh path
/// inside the DPoP step (refresh, verify, spend the proof, then the claims). Then the same
/// token as a Bearer token, and with another key's proof. Expected: the first reaches the
/// handler with the EC key; the others are refused. A user would lose the binding on the path
/// where the claims are made after a wait.
#[cfg(feature = "remote")]
#[tokio::test]
async fn holds_key_refresh_path_attaches_the_proofs_key() {
    use common::jwks_server::JwksServer;
    use tower_jwt_auth::remote::RemoteJwks;

    let server = JwksServer::start(&[jwk("rsa", "rsa-a")]).await;
    let keys = RemoteJwks::from_jwks_uri(server.jwks_url())
        .allow_http_for_loopback()
        .build()
        .await
        .unwrap();
    let hits = Hits::default();
    let layer = JwtAuthLayer::<TestClaims>::builder()
        .remote_jwks(keys)
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .cache(CacheConfig::default())
        .dpop(Dpop::allowed(BASE))
        .build()
        .unwrap();
    let url = format!("http://{}/me", serve(me(&hits).layer(layer)).await);
    server.publish(&[jwk("rsa", "rsa-a"), jwk("rsa-b", "rsa-b")]);
    let ec = Holder::new("ec");
    let (signer, alg) = private_key("rsa-b");
    let token = sign_jwt(
        alg,
        &signer,
        Some("rsa-b"),
        &claims_with(json!({ "sub": "dora", "cnf": { "jkt": ec.jkt } })),
    );
    assert_eq!(
        get_h(&url, &dpop_headers(&ec, "/me", &token)).await,
        (StatusCode::OK, format!("dora {}", ec.jkt))
    );
    assert_eq!(
        get_h(&url, &bearer(&token)).await.0,
        StatusCode::UNAUTHORIZED
    );
    let ed = Holder::new("ed");
    assert_eq!(
        get_h(&url, &dpop_headers(&ed, "/me", &token)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(hits.count(), 1);
}
