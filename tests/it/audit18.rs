//! Audit 18: the anonymous mark is typed by claims type (`Anonymous<C>`), so a
//! layer for another claims type neither creates nor removes it. Claimed: a request is
//! anonymous for `C` only if a layer for `C` said so on this request; nothing passes
//! `RequireClaims<C>` or reaches a `Claims<C>` handler without a layer for `C`; no 500 for a
//! valid request with layers of different claims types stacked. Every test runs real servers
//! on 127.0.0.1 with real clients (reqwest, tonic).
//!
//! `regression_*` tests failed on the audited snapshot and pass since their fix; `holds_*`
//! tests are attacks the code resisted.

use crate::common;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use common::dpop::Holder;
use common::grpc::{HEALTH, grpc_server, health_check};
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tonic::Code;
use tower::ServiceBuilder;
use tower_jwt_auth::authorize::RequireClaimsLayer;
use tower_jwt_auth::dpop::Dpop;
use tower_jwt_auth::revocation::MemoryRevocation;
use tower_jwt_auth::{Claims, TokenSource};

const BASE: &str = "https://api.example.com";

fn token(sub: &str, roles: &[&str]) -> String {
    hs256_token(json!({ "sub": sub, "roles": roles }))
}

/// `(status, body)` of `GET url` with the extra headers.
async fn get_h(url: &str, headers: &[(&str, String)]) -> (StatusCode, String) {
    let mut req = client().get(url);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let res = req.send().await.unwrap();
    (res.status(), res.text().await.unwrap())
}

/// A DPoP-bound token for `holder` and a proof of `GET <BASE><path>` for it.
fn dpop_pair(holder: &Holder, path: &str) -> (String, String) {
    let token = hs256_token(json!({ "sub": "dora", "cnf": { "jkt": holder.jkt } }));
    let proof = holder.sign(
        "GET",
        &format!("{BASE}{path}"),
        json!(now()),
        &token,
        json!({}),
        json!({}),
    );
    (token, proof)
}

/// `/me` answering `<sub> <thumbprint of the claims' DPoP key, or no-key>`.
fn me_with_key() -> Router {
    Router::new().route(
        "/me",
        get(|c: Claims<TestClaims>| async move {
            let key = c.dpop_key().map(|k| k.thumbprint().to_owned());
            format!("{} {}", c.sub, key.unwrap_or("no-key".into()))
        }),
    )
}

// ---------------------------------------------------------------------------------------------
// The anonymous mark across claims types

/// Attack: a layer for `Value` in optional mode lets a tokenless request through (its mark is
/// `Anonymous<Value>`); behind it, no layer for `TestClaims`, but `RequireClaims<TestClaims>`
/// with `allow_anonymous`, a `Claims<TestClaims>` handler and an `Option<Claims<TestClaims>>`
/// handler. Expected: none takes the request for anonymous-for-`TestClaims`: all three answer
/// 500 (wiring error), no handler body runs; the same with the layer's public path and a CORS
/// preflight it passes.
#[tokio::test]
async fn holds_anonymous_for_another_type_is_not_anonymous_for_c() {
    let h = Hits::default();
    let opt = {
        let h = h.clone();
        get(move |c: Option<Claims<TestClaims>>| async move {
            h.hit();
            format!("{}", c.is_some())
        })
        .options(|| async { "preflight" })
    };
    let app = Router::new()
        .route(
            "/allow",
            subject::<TestClaims>(&h)
                .options(|| async { "preflight" })
                .route_layer(
                    RequireClaimsLayer::<TestClaims>::any_role(["admin"]).allow_anonymous(),
                ),
        )
        .route("/extractor", subject::<TestClaims>(&h))
        .route("/optional", opt.clone())
        .route("/open/optional", opt)
        .layer(
            hs256_builder::<Value>()
                .optional()
                .public_path("/open/optional")
                .pass_cors_preflight()
                .build()
                .unwrap(),
        );
    let base = format!("http://{}", serve(app).await);
    for path in ["/allow", "/extractor", "/optional", "/open/optional"] {
        let (status, body) = get_h(&format!("{base}{path}"), &[]).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{path}: {body}");
    }
    // A CORS preflight the Value layer passes: RequireClaims<TestClaims> still sees no layer.
    let res = client()
        .request(reqwest::Method::OPTIONS, format!("{base}/allow"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(h.count(), 0);
}

/// Attack: two layers of different claims types in both orders, the outer or inner one
/// optional and reading its own header, the other strict; a request with only the strict
/// layer's token. Expected: 200 in both orders, `Option<Claims<optional type>>` is `None`,
/// `Claims<strict type>` has the token's subject; a request with both tokens sees both.
#[tokio::test]
async fn holds_optional_and_strict_layers_of_different_types_in_both_orders() {
    let handler = get(
        |a: Option<Claims<Value>>, b: Claims<TestClaims>| async move {
            format!(
                "{} {}",
                a.map(|a| a["sub"].as_str().unwrap().to_owned())
                    .unwrap_or("-".into()),
                b.sub
            )
        },
    );
    let optional = || {
        hs256_builder::<Value>()
            .optional()
            .token_sources([TokenSource::header("x-a")])
            .build()
            .unwrap()
    };
    let outer_optional = Router::new()
        .route("/", handler.clone())
        .layer(hs256_layer::<TestClaims>())
        .layer(optional());
    let inner_optional = Router::new()
        .route("/", handler)
        .layer(optional())
        .layer(hs256_layer::<TestClaims>());
    for app in [outer_optional, inner_optional] {
        let base = format!("http://{}/", serve(app).await);
        let t = token("bob", &[]);
        let (s, body) = get_h(&base, &[("authorization", format!("Bearer {t}"))]).await;
        assert_eq!((s, body.as_str()), (StatusCode::OK, "- bob"));
        let a = token("alice", &[]);
        let (s, body) = get_h(
            &base,
            &[("authorization", format!("Bearer {t}")), ("x-a", a)],
        )
        .await;
        assert_eq!((s, body.as_str()), (StatusCode::OK, "alice bob"));
    }
}

/// Attack: the same claims type layered twice. (1) Outer strict layer verifies a token (as
/// admin); inner optional layer reading a cookie finds none. (2) Outer optional layer with no
/// token (anonymous mark); inner strict layer reading another header verifies a user token.
/// Expected: (1) the inner layer's verdict wins and fails closed: `RequireClaims` admin
/// answers 401, `Option<Claims>` is `None` (no stale admin claims); (2) the stale anonymous mark
/// is gone: `RequireClaims(admin).allow_anonymous()` refuses the user with 403, the handler
/// sees the user's claims.
#[tokio::test]
async fn holds_same_type_twice_inner_verdict_wins() {
    let h = Hits::default();
    let routes = || {
        Router::new()
            .route(
                "/admin",
                subject::<TestClaims>(&h).route_layer(
                    RequireClaimsLayer::<TestClaims>::any_role(["admin"]).allow_anonymous(),
                ),
            )
            .route(
                "/who",
                get(|c: Option<Claims<TestClaims>>| async move {
                    c.map(|c| c.sub.clone()).unwrap_or("-".into())
                }),
            )
    };
    let strict_then_optional = routes()
        .layer(
            hs256_builder::<TestClaims>()
                .optional()
                .token_sources([TokenSource::cookie("at")])
                .build()
                .unwrap(),
        )
        .layer(hs256_layer::<TestClaims>());
    let base = format!("http://{}", serve(strict_then_optional).await);
    let admin = token("root", &["admin"]);
    let auth = [("authorization", format!("Bearer {admin}"))];
    // allow_anonymous: the inner layer's anonymous verdict passes, with no claims.
    let (s, _) = get_h(&format!("{base}/admin"), &auth).await;
    assert_eq!(s, StatusCode::OK);
    let (s, body) = get_h(&format!("{base}/who"), &auth).await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "-"));

    let optional_then_strict = routes()
        .layer(
            hs256_builder::<TestClaims>()
                .token_sources([TokenSource::header("x-b")])
                .build()
                .unwrap(),
        )
        .layer(hs256_builder::<TestClaims>().optional().build().unwrap());
    let base = format!("http://{}", serve(optional_then_strict).await);
    let user = [("x-b", token("bob", &["user"]))];
    let (s, _) = get_h(&format!("{base}/admin"), &user).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, body) = get_h(&format!("{base}/who"), &user).await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "bob"));
}

/// Attack: request headers named like the marks (`x-anonymous`, `anonymous`) sent to a
/// `RequireClaims<TestClaims>::allow_anonymous()` route behind only an optional layer for
/// `Value`. Expected: nothing a client sends makes the request anonymous for `TestClaims`:
/// 500 (wiring error), the handler never runs.
#[tokio::test]
async fn holds_headers_do_not_make_a_request_anonymous() {
    let h = Hits::default();
    let app = Router::new()
        .route(
            "/allow",
            subject::<TestClaims>(&h)
                .route_layer(RequireClaimsLayer::<TestClaims>::any_role(["x"]).allow_anonymous()),
        )
        .layer(hs256_builder::<Value>().optional().build().unwrap());
    let base = format!("http://{}", serve(app).await);
    let (s, _) = get_h(
        &format!("{base}/allow"),
        &[("x-anonymous", "1".into()), ("anonymous", "true".into())],
    )
    .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(h.count(), 0);
}

/// Attack: a layer for `Value` verifies a token that also deserialises as `TestClaims` (an
/// admin); handlers for `TestClaims` (extractor, `RequireClaims`) sit behind it with no layer
/// for `TestClaims`. Expected: 500 for both, the claims of one type are never seen as another's.
#[tokio::test]
async fn holds_value_claims_are_not_typed_claims() {
    let h = Hits::default();
    let app = Router::new()
        .route("/extractor", subject::<TestClaims>(&h))
        .route(
            "/admin",
            subject::<TestClaims>(&h)
                .route_layer(RequireClaimsLayer::<TestClaims>::any_role(["admin"])),
        )
        .layer(hs256_layer::<Value>());
    let base = format!("http://{}", serve(app).await);
    let admin = token("root", &["admin"]);
    for path in ["/extractor", "/admin"] {
        let res = get_with(&format!("{base}{path}"), Some(&admin)).await;
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR, "{path}");
    }
    assert_eq!(h.count(), 0);
}

/// Attack: outer optional layer for `TestClaims` (anonymous mark), inner strict layer of the
/// same type with a revocation store (the asynchronous path that adds the claims after a
/// wait). Expected: after the wait the request carries the claims and no stale anonymous mark:
/// `RequireClaims` admin (no `allow_anonymous`) passes an admin, 403s a user.
#[tokio::test]
async fn holds_async_revocation_path_drops_the_stale_mark() {
    let h = Hits::default();
    let app = Router::new()
        .route(
            "/admin",
            subject::<TestClaims>(&h)
                .route_layer(RequireClaimsLayer::<TestClaims>::any_role(["admin"])),
        )
        .layer(
            hs256_builder::<TestClaims>()
                .token_sources([TokenSource::header("x-b")])
                .revocation(Arc::new(MemoryRevocation::new()))
                .build()
                .unwrap(),
        )
        .layer(hs256_builder::<TestClaims>().optional().build().unwrap());
    let base = format!("http://{}", serve(app).await);
    let admin = hs256_token(json!({ "sub": "root", "roles": ["admin"], "jti": "j1" }));
    let user = hs256_token(json!({ "sub": "bob", "roles": ["user"], "jti": "j2" }));
    let (s, body) = get_h(&format!("{base}/admin"), &[("x-b", admin)]).await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "root"));
    let (s, _) = get_h(&format!("{base}/admin"), &[("x-b", user)]).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

// ---------------------------------------------------------------------------------------------
// DpopKey: still untyped

// ---------------------------------------------------------------------------------------------
// The responder handlers of C answer with (untyped LayerResponder)

// ---------------------------------------------------------------------------------------------
// tonic

/// Attack: a real tonic server; a layer for `Value` whose public path is the health check,
/// a strict layer for `TestClaims` behind it reading `x-b`, then
/// `RequireClaims<Value>::allow_anonymous()` and `RequireClaims<TestClaims>` admin. Metadata
/// named like the marks (`anonymous`, `x-anonymous`) is sent along. Expected: the public path
/// makes the call anonymous for `Value` only: with an admin `TestClaims` token it passes; with
/// a user token `PermissionDenied`; with no token `Unauthenticated` (the strict layer); and
/// `RequireClaims<TestClaims>` with `allow_anonymous` behind only the `Value` layer is a wiring
/// error (`Internal`/`Unknown`, never OK).
#[tokio::test]
async fn holds_tonic_public_path_is_anonymous_for_its_type_only() {
    let stack = ServiceBuilder::new()
        .layer(
            hs256_builder::<Value>()
                .public_path(HEALTH)
                .build()
                .unwrap(),
        )
        .layer(
            hs256_builder::<TestClaims>()
                .token_sources([TokenSource::header("x-b")])
                .build()
                .unwrap(),
        )
        .layer(RequireClaimsLayer::<Value>::any_role(["nobody"]).allow_anonymous())
        .layer(RequireClaimsLayer::<TestClaims>::any_role(["admin"]))
        .into_inner();
    let channel = grpc_server(stack).await;
    let marks = |extra: Option<(&'static str, String)>| {
        let mut m = vec![
            ("anonymous", "1".to_owned()),
            ("x-anonymous", "1".to_owned()),
        ];
        m.extend(extra);
        m
    };
    health_check(
        channel.clone(),
        &marks(Some(("x-b", token("root", &["admin"])))),
    )
    .await
    .unwrap();
    let s = health_check(
        channel.clone(),
        &marks(Some(("x-b", token("bob", &["user"])))),
    )
    .await
    .unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    let s = health_check(channel.clone(), &marks(None))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");

    let miswired = ServiceBuilder::new()
        .layer(
            hs256_builder::<Value>()
                .public_path(HEALTH)
                .build()
                .unwrap(),
        )
        .layer(RequireClaimsLayer::<TestClaims>::any_role(["admin"]).allow_anonymous())
        .into_inner();
    let channel = grpc_server(miswired).await;
    let s = health_check(channel, &marks(None)).await.unwrap_err();
    assert!(matches!(s.code(), Code::Internal | Code::Unknown), "{s:?}");
}

// ---------------------------------------------------------------------------------------------
// The DPoP key belongs to the claims

/// A layer for `TestClaims` with DPoP required verifies a DPoP-bound token and its proof; an
/// optional layer for another claims type (reading a cookie) behind it finds no token. The
/// `TestClaims` handler still sees the proof's key in its claims: a layer for another claims
/// type neither removes nor replaces it.
#[tokio::test]
async fn regression_a_layer_for_another_type_keeps_the_dpop_key() {
    let holder = Holder::new("ec");
    let app = me_with_key()
        .layer(
            hs256_builder::<Value>()
                .optional()
                .token_sources([TokenSource::cookie("other")])
                .build()
                .unwrap(),
        )
        .layer(
            hs256_builder::<TestClaims>()
                .dpop(Dpop::required(BASE))
                .build()
                .unwrap(),
        );
    let base = format!("http://{}", serve(app).await);
    let (token, proof) = dpop_pair(&holder, "/me");
    let (s, body) = get_h(
        &format!("{base}/me"),
        &[("authorization", format!("DPoP {token}")), ("dpop", proof)],
    )
    .await;
    assert_eq!((s, body), (StatusCode::OK, format!("dora {}", holder.jkt)));
}

/// A layer for `TestClaims` (no DPoP) verifies a bearer token in `x-a`; a layer for `Value`
/// with DPoP behind it verifies another subject's DPoP-bound token and its proof. The
/// `TestClaims` claims carry no DPoP key: the other layer's key is not theirs.
#[tokio::test]
async fn regression_the_dpop_key_of_another_types_token_is_not_these_claims() {
    let holder = Holder::new("ec");
    let app = me_with_key()
        .layer(
            hs256_builder::<Value>()
                .dpop(Dpop::required(BASE))
                .build()
                .unwrap(),
        )
        .layer(
            hs256_builder::<TestClaims>()
                .token_sources([TokenSource::header("x-a")])
                .build()
                .unwrap(),
        );
    let base = format!("http://{}", serve(app).await);
    let (bound, proof) = dpop_pair(&holder, "/me");
    let (s, body) = get_h(
        &format!("{base}/me"),
        &[
            ("x-a", token("alice", &[])),
            ("authorization", format!("DPoP {bound}")),
            ("dpop", proof),
        ],
    )
    .await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "alice no-key"));
}
