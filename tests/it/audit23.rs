//! Audit 23: every `JwtAuthLayer` has a process-unique identity; its claims, its anonymous
//! mark and the responder it lends the handlers name it, and the `Claims<C>` extractor and
//! `RequireClaims<C>` answer with a lent responder only when it is the one of the layer whose
//! claims or mark they read. Claimed: a refusal never becomes a pass; handlers answer with the
//! responder of the nearest layer for their claims type (never a stale one of a layer further
//! out, on a nested router, or of a layer whose async check runs); gRPC callers keep 16/7;
//! `grpc::claims` tells an anonymous call (16) from a missing layer (13). Every test runs real
//! servers on 127.0.0.1 with real clients (reqwest, tonic).
//!
//! `holds_*` tests are attacks the code resisted.

use crate::common;

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{MethodRouter, get};
use common::grpc::{grpc_server, health_check};
use common::*;
use futures_util::future::BoxFuture;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};
use tonic::Code;
use tower::ServiceBuilder;
use tower_jwt_auth::authorize::RequireClaimsLayer;
use tower_jwt_auth::resource_metadata::ResourceMetadata;
use tower_jwt_auth::revocation::{Revocation, RevocationError, TokenId};
use tower_jwt_auth::{Claims, JwtAuthLayer, ProblemJson, grpc};

/// `Claims<TestClaims>` (not `Option`): an anonymous request is answered by the rejection.
fn strict(hits: &Hits) -> MethodRouter {
    let hits = hits.clone();
    get(move |c: Claims<TestClaims>| {
        let hits = hits.clone();
        async move {
            hits.hit();
            c.sub.clone()
        }
    })
}

/// `Option<Claims<TestClaims>>`: the subject or `anonymous`.
fn lenient(hits: &Hits) -> MethodRouter {
    get(subject_handler::<TestClaims>(hits))
}

fn token(sub: &str, roles: &[&str]) -> String {
    hs256_token(json!({ "sub": sub, "roles": roles, "jti": format!("jti-{sub}") }))
}

fn optional(realm: Option<&str>) -> JwtAuthLayer<TestClaims> {
    let b = hs256_builder::<TestClaims>().optional();
    match realm {
        Some(realm) => b.realm(realm).build().unwrap(),
        None => b.build().unwrap(),
    }
}

fn root() -> RequireClaimsLayer<TestClaims> {
    RequireClaimsLayer::<TestClaims>::any_role(["root"])
}

fn root_async() -> RequireClaimsLayer<TestClaims> {
    RequireClaimsLayer::<TestClaims>::predicate_async("root", |c: Claims<TestClaims>| async move {
        c.roles.iter().any(|r| r == "root")
    })
}

/// Middleware of the application that puts `Claims::new(root)` into every request.
async fn forge(mut req: Request, next: Next) -> Response {
    req.extensions_mut().insert(Claims::new(TestClaims {
        sub: "forged".into(),
        roles: vec!["root".into()],
    }));
    next.run(req).await
}

// ---------------------------------------------------------------------------------------------
// Claims an application's middleware made (LayerId::NONE)

/// Attack: an application middleware in front of an optional layer (realm `inner`) inserts
/// `Claims::new` of a `root` subject into every request. Expected: the layer replaces them:
/// an anonymous request reaches `Option<Claims>` as `None`, `Claims<C>` and `RequireClaims`
/// (sync and async) refuse it with the layer's realm; a token's own claims (no `root`) are
/// refused 403 by `RequireClaims`, with the layer's realm. A user would otherwise lose the
/// guarantee that only the layer vouches for claims.
#[tokio::test]
async fn holds_claims_made_in_front_of_the_layer_are_replaced() {
    let h = Hits::default();
    let app = Router::new()
        .route("/lenient", lenient(&h))
        .route("/strict", strict(&h))
        .route("/root", strict(&h).route_layer(root()))
        .route("/root-async", strict(&h).route_layer(root_async()))
        .layer(optional(Some("inner")))
        .layer(middleware::from_fn(forge));
    let base = format!("http://{}", serve(app).await);
    let seen = see(&format!("{base}/lenient"), None, false).await;
    assert_eq!(
        (seen.status, seen.body.as_str()),
        (StatusCode::OK, "anonymous")
    );
    let seen = see(&format!("{base}/lenient"), Some(&token("bob", &[])), false).await;
    assert_eq!((seen.status, seen.body.as_str()), (StatusCode::OK, "bob"));
    h.take();
    for path in ["/strict", "/root", "/root-async"] {
        let seen = see(&format!("{base}{path}"), None, false).await;
        assert_eq!(seen.status, StatusCode::UNAUTHORIZED, "{path} {seen:?}");
        assert_eq!(seen.challenge, "Bearer realm=\"inner\"", "{path}");
    }
    for path in ["/root", "/root-async"] {
        let seen = see(&format!("{base}{path}"), Some(&token("bob", &[])), false).await;
        assert_eq!(seen.status, StatusCode::FORBIDDEN, "{path} {seen:?}");
        assert!(
            seen.challenge
                .starts_with("Bearer realm=\"inner\", error=\"insufficient_scope\""),
            "{path} {seen:?}"
        );
    }
    assert_eq!(h.count(), 0);
}

/// Attack: behind a lending layer (realm `outer`), an application middleware replaces the
/// verified claims by `Claims::new` (no layer) of a subject without roles. Expected: the
/// `RequireClaims` refusal does not use the layer's lent responder for claims no layer
/// verified (it answers as `Rfc6750::default()`, realm `api`), and it is still a refusal; an
/// anonymous request made non-anonymous this way passes `Claims<C>` (the application's own
/// choice) but `RequireClaims` still judges the forged claims. A user relies on lent
/// responders answering only for their own layer's claims.
#[tokio::test]
async fn holds_claims_made_behind_the_layer_get_no_lent_responder() {
    async fn demote(mut req: Request, next: Next) -> Response {
        req.extensions_mut().insert(Claims::new(TestClaims {
            sub: "demoted".into(),
            roles: vec![],
        }));
        next.run(req).await
    }
    let h = Hits::default();
    let app = Router::new()
        .route("/root", strict(&h).route_layer(root()))
        .route("/root-async", strict(&h).route_layer(root_async()))
        .layer(middleware::from_fn(demote))
        .layer(optional(Some("outer")));
    let base = format!("http://{}", serve(app).await);
    for path in ["/root", "/root-async"] {
        for tok in [None, Some(token("root", &["root"]))] {
            let seen = see(&format!("{base}{path}"), tok.as_deref(), false).await;
            assert_eq!(seen.status, StatusCode::FORBIDDEN, "{path} {seen:?}");
            assert!(
                seen.challenge
                    .starts_with("Bearer realm=\"api\", error=\"insufficient_scope\""),
                "{path} {seen:?}"
            );
        }
    }
    assert_eq!(h.count(), 0);
}

// ---------------------------------------------------------------------------------------------
// Stacks of layers for one claims type

/// Attack: two optional layers for one claims type; the outer lends a `ProblemJson` responder
/// (realm `outer`, RFC 9728 metadata), the inner one is a default layer (lends none). Routes on
/// a nested router, a merged router and the outer router. Expected: requests that reach the
/// inner layer are answered as `Rfc6750::default()` (realm `api`, no problem document, no
/// `resource_metadata`) by `Claims<C>` and `RequireClaims` (sync, async); routes only the outer
/// layer covers are answered by the outer responder. The reverse stack (outer default, inner
/// realm `inner`) answers `inner`. A user would otherwise send clients to another API's realm.
#[tokio::test]
async fn holds_nearest_layer_answers_across_nest_and_merge() {
    let h = Hits::default();
    let outer = hs256_builder::<TestClaims>()
        .optional()
        .responder(ProblemJson::with_realm("outer"))
        .resource_metadata(ResourceMetadata::new("https://outer.example"))
        .build()
        .unwrap();
    let inner_routes = Router::new()
        .route("/strict", strict(&h))
        .route("/root", strict(&h).route_layer(root()))
        .route("/root-async", strict(&h).route_layer(root_async()));
    let merged = Router::new()
        .route("/m/strict", strict(&h))
        .route("/m/root", strict(&h).route_layer(root()))
        .layer(optional(None));
    let app = Router::new()
        .nest("/n", inner_routes.layer(optional(None)))
        .merge(merged)
        .route("/o/strict", strict(&h))
        .layer(outer);
    let base = format!("http://{}", serve(app).await);
    let bob = token("bob", &[]);
    for (path, tok, status) in [
        ("/n/strict", None, 401),
        ("/n/root", None, 401),
        ("/n/root-async", None, 401),
        ("/n/root", Some(bob.as_str()), 403),
        ("/n/root-async", Some(bob.as_str()), 403),
        ("/m/strict", None, 401),
        ("/m/root", Some(bob.as_str()), 403),
    ] {
        let seen = see(&format!("{base}{path}"), tok, false).await;
        assert_eq!(seen.status.as_u16(), status, "{path} {seen:?}");
        assert!(
            seen.challenge.starts_with("Bearer realm=\"api\""),
            "{path} {seen:?}"
        );
        assert!(
            !seen.challenge.contains("resource_metadata"),
            "{path} {seen:?}"
        );
        assert!(!seen.content_type.contains("problem"), "{path} {seen:?}");
        assert!(seen.body.is_empty(), "{path} {seen:?}");
    }
    let seen = see(&format!("{base}/o/strict"), None, false).await;
    assert_eq!(seen.status, StatusCode::UNAUTHORIZED);
    assert!(
        seen.challenge.starts_with("Bearer realm=\"outer\""),
        "{seen:?}"
    );
    assert!(seen.challenge.contains("resource_metadata="), "{seen:?}");
    assert_eq!(seen.content_type, "application/problem+json");
    assert_eq!(h.count(), 0);

    // The reverse: the outer layer lends nothing, the inner one lends realm `inner`.
    let app = Router::new()
        .route("/strict", strict(&h))
        .route("/root", strict(&h).route_layer(root_async()))
        .layer(optional(Some("inner")))
        .layer(optional(None));
    let base = format!("http://{}", serve(app).await);
    let seen = see(&format!("{base}/strict"), None, false).await;
    assert_eq!(seen.challenge, "Bearer realm=\"inner\"", "{seen:?}");
    let seen = see(&format!("{base}/root"), Some(&bob), false).await;
    assert_eq!(seen.status, StatusCode::FORBIDDEN);
    assert!(
        seen.challenge.starts_with("Bearer realm=\"inner\""),
        "{seen:?}"
    );
    assert_eq!(h.count(), 0);
}

/// Attack: one layer (realm `twice`, optional) and its clone stacked, and the same layer on
/// the outer router and a nested one (same identity twice on one request). Expected: nothing
/// changes: anonymous requests are refused by `Claims<C>`/`RequireClaims` with realm `twice`,
/// tokens pass, refusals stay refusals. A user stacking one layer twice (by accident, or a
/// shared `layer` value on two routers) must not lose its responder or its checks.
#[tokio::test]
async fn holds_one_layer_stacked_twice() {
    let h = Hits::default();
    let layer = optional(Some("twice"));
    let nested = Router::new()
        .route("/strict", strict(&h))
        .route("/root", strict(&h).route_layer(root()))
        .route("/lenient", lenient(&h))
        .layer(layer.clone());
    let app = Router::new()
        .nest("/n", nested)
        .layer(layer.clone())
        .layer(layer.clone());
    let base = format!("http://{}", serve(app).await);
    let seen = see(&format!("{base}/n/strict"), None, false).await;
    assert_eq!(
        (seen.status, seen.challenge.as_str()),
        (StatusCode::UNAUTHORIZED, "Bearer realm=\"twice\"")
    );
    let seen = see(&format!("{base}/n/root"), Some(&token("bob", &[])), false).await;
    assert_eq!(seen.status, StatusCode::FORBIDDEN);
    assert!(
        seen.challenge.starts_with("Bearer realm=\"twice\""),
        "{seen:?}"
    );
    let seen = see(&format!("{base}/n/strict"), Some(&other_key_token()), false).await;
    assert_eq!(seen.status, StatusCode::UNAUTHORIZED);
    assert!(seen.challenge.contains("invalid_token"), "{seen:?}");
    assert_eq!(h.take(), 0);
    let seen = see(
        &format!("{base}/n/root"),
        Some(&token("ro", &["root"])),
        false,
    )
    .await;
    assert_eq!((seen.status, seen.body.as_str()), (StatusCode::OK, "ro"));
    let seen = see(&format!("{base}/n/lenient"), None, false).await;
    assert_eq!(
        (seen.status, seen.body.as_str()),
        (StatusCode::OK, "anonymous")
    );
}

/// Attack: a non-optional outer layer for `Value` (realm `other-type`) and an optional inner
/// layer for `TestClaims` (default). Expected: the `TestClaims` extractor never answers with
/// the `Value` layer's responder (realm `api`), and `RequireClaims::allow_anonymous` lets
/// anonymous callers through but still refuses a token without the role (403, realm `api`).
#[tokio::test]
async fn holds_other_claims_type_and_allow_anonymous() {
    let h = Hits::default();
    let app = Router::new()
        .route("/strict", strict(&h))
        .route("/maybe", lenient(&h).route_layer(root().allow_anonymous()))
        .layer(optional(None))
        .layer(
            hs256_builder::<Value>()
                .optional()
                .realm("other-type")
                .build()
                .unwrap(),
        );
    let base = format!("http://{}", serve(app).await);
    let seen = see(&format!("{base}/strict"), None, false).await;
    assert_eq!(
        (seen.status, seen.challenge.as_str()),
        (StatusCode::UNAUTHORIZED, "Bearer realm=\"api\"")
    );
    assert_eq!(h.take(), 0);
    let seen = see(&format!("{base}/maybe"), None, false).await;
    assert_eq!(
        (seen.status, seen.body.as_str()),
        (StatusCode::OK, "anonymous")
    );
    assert_eq!(h.take(), 1);
    let seen = see(&format!("{base}/maybe"), Some(&token("bob", &[])), false).await;
    assert_eq!(seen.status, StatusCode::FORBIDDEN);
    assert!(
        seen.challenge.starts_with("Bearer realm=\"api\""),
        "{seen:?}"
    );
    assert_eq!(h.take(), 0);
}

// ---------------------------------------------------------------------------------------------
// Asynchronous checks

/// A revocation store whose every answer waits for a permit; answers `revoked` for `jti`s
/// starting with `revoked`, an error for `jti`s starting with `down`.
struct Gated {
    permits: Semaphore,
    asked: Notify,
}

impl Revocation for Gated {
    fn is_revoked<'a>(
        &'a self,
        token: TokenId<'a>,
    ) -> BoxFuture<'a, Result<bool, RevocationError>> {
        Box::pin(async move {
            self.asked.notify_one();
            let permit = self.permits.acquire().await.unwrap();
            permit.forget();
            let jti = token.jti.unwrap_or_default();
            if jti.starts_with("jti-down") {
                return Err(RevocationError("down".into()));
            }
            Ok(jti.starts_with("jti-revoked"))
        })
    }

    fn retention_margin(&self) -> Duration {
        Duration::from_secs(3600)
    }
}

/// Attack: an outer optional layer lends realm `outer`; the inner layer (default responder,
/// optional) asks a revocation store that answers only when released. While its check is
/// pending, the request must not reach a handler; once released: a good token without the
/// role is refused by `RequireClaims` (sync and async) with realm `api` (the inner layer's
/// claims name it, it lent nothing), never `outer`; a revoked token is refused 401
/// `invalid_token` (realm `api`); a store error is 503; none of them becomes a pass.
#[tokio::test]
async fn holds_pending_revocation_check_uses_the_inner_layers_answer() {
    let h = Hits::default();
    let gate = Arc::new(Gated {
        permits: Semaphore::new(0),
        asked: Notify::new(),
    });
    let inner = hs256_builder::<TestClaims>()
        .optional()
        .revocation(gate.clone())
        .build()
        .unwrap();
    let app = Router::new()
        .route("/root", strict(&h).route_layer(root()))
        .route("/root-async", strict(&h).route_layer(root_async()))
        .route("/strict", strict(&h))
        .layer(inner)
        .layer(optional(Some("outer")));
    let base = format!("http://{}", serve(app).await);
    for (path, sub, status, challenge) in [
        (
            "/root",
            "bob",
            403,
            "Bearer realm=\"api\", error=\"insufficient_scope\"",
        ),
        (
            "/root-async",
            "bob",
            403,
            "Bearer realm=\"api\", error=\"insufficient_scope\"",
        ),
        (
            "/strict",
            "revoked",
            401,
            "Bearer realm=\"api\", error=\"invalid_token\"",
        ),
        ("/strict", "down", 503, ""),
        (
            "/root",
            "revoked-root",
            401,
            "Bearer realm=\"api\", error=\"invalid_token\"",
        ),
    ] {
        let url = format!("{base}{path}");
        let roles: &[&str] = if sub.ends_with("root") {
            &["root"]
        } else {
            &[]
        };
        let tok = token(sub, roles);
        let asked = gate.asked.notified();
        let call = tokio::spawn(async move { see(&url, Some(&tok), false).await });
        asked.await;
        assert_eq!(h.count(), 0, "reached a handler before the check answered");
        gate.permits.add_permits(1);
        let seen = call.await.unwrap();
        assert_eq!(seen.status.as_u16(), status, "{path} {sub} {seen:?}");
        assert!(
            seen.challenge.starts_with(challenge),
            "{path} {sub} {seen:?}"
        );
        assert!(!seen.challenge.contains("outer"), "{path} {sub} {seen:?}");
    }
    assert_eq!(h.count(), 0);
    // A passing token still passes after the check.
    let tok = token("ro", &["root"]);
    let url = format!("{base}/root-async");
    let asked = gate.asked.notified();
    let call = tokio::spawn(async move { see(&url, Some(&tok), false).await });
    asked.await;
    gate.permits.add_permits(1);
    let seen = call.await.unwrap();
    assert_eq!((seen.status, seen.body.as_str()), (StatusCode::OK, "ro"));
}

// ---------------------------------------------------------------------------------------------
// gRPC callers

/// Attack: gRPC-labelled callers of axum routes behind an optional lending layer
/// (`ProblemJson`, realm `g`) with a default inner layer. Expected: the extractor answers 16,
/// `RequireClaims` 7 (sync and async), never an HTTP problem document, and nothing passes.
#[tokio::test]
async fn holds_grpc_callers_keep_16_and_7() {
    let h = Hits::default();
    let outer = hs256_builder::<TestClaims>()
        .optional()
        .responder(ProblemJson::with_realm("g"))
        .build()
        .unwrap();
    let app = Router::new()
        .route("/strict", strict(&h))
        .route("/root", strict(&h).route_layer(root()))
        .route("/root-async", strict(&h).route_layer(root_async()))
        .nest(
            "/n",
            Router::new()
                .route("/strict", strict(&h))
                .layer(optional(None)),
        )
        .layer(outer);
    let base = format!("http://{}", serve(app).await);
    let bob = token("bob", &[]);
    for (path, tok, code) in [
        ("/strict", None, "16"),
        ("/n/strict", None, "16"),
        ("/root", None, "16"),
        ("/root", Some(bob.as_str()), "7"),
        ("/root-async", Some(bob.as_str()), "7"),
    ] {
        let seen = see(&format!("{base}{path}"), tok, true).await;
        assert_eq!(seen.grpc_status.as_deref(), Some(code), "{path} {seen:?}");
        assert_eq!(seen.content_type, "application/grpc", "{path} {seen:?}");
        assert!(seen.body.is_empty(), "{path} {seen:?}");
    }
    assert_eq!(h.count(), 0);
}

/// A service in front of the health service that reads `grpc::claims::<C>` (or
/// `optional_claims`) from the call and fails it with the status those give.
#[derive(Clone)]
struct ReadClaims<S, C> {
    inner: S,
    optional: bool,
    _c: std::marker::PhantomData<fn() -> C>,
}

impl<S, C> tower::Service<http::Request<tonic::body::Body>> for ReadClaims<S, C>
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    C: Send + Sync + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let (parts, body) = req.into_parts();
        let probe = tonic::Request::from_http(http::Request::from_parts(parts.clone(), ()));
        let verdict = if self.optional {
            grpc::optional_claims::<C, _>(&probe).map(|_| ())
        } else {
            grpc::claims::<C, _>(&probe).map(|_| ())
        };
        if let Err(status) = verdict {
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let fut = self.inner.call(http::Request::from_parts(parts, body));
        Box::pin(fut)
    }
}

#[derive(Clone)]
struct ReadClaimsLayer<C>(bool, std::marker::PhantomData<fn() -> C>);

impl<S, C> tower::Layer<S> for ReadClaimsLayer<C> {
    type Service = ReadClaims<S, C>;
    fn layer(&self, inner: S) -> Self::Service {
        ReadClaims {
            inner,
            optional: self.0,
            _c: std::marker::PhantomData,
        }
    }
}

fn read<C>(optional: bool) -> ReadClaimsLayer<C> {
    ReadClaimsLayer(optional, std::marker::PhantomData)
}

/// Attack: over a real tonic server, an optional layer for `TestClaims` with a service that
/// reads `grpc::claims`: an anonymous call, a call with a bad token, a call read for a claims
/// type no layer ran for, and an application interceptor in front of the layer forging
/// `Claims::new`. Expected: anonymous → 16 from `grpc::claims`, OK from `optional_claims`; bad
/// token → 16 from the layer; another claims type → 13 (never OK, never 16); forged claims are
/// replaced (anonymous again → 16); a good token → OK.
#[tokio::test]
async fn holds_grpc_claims_codes_over_tonic() {
    let bearer = |t: &str| vec![("authorization", format!("Bearer {t}"))];
    let good = token("bob", &[]);
    let required = grpc_server(
        ServiceBuilder::new()
            .layer(optional(Some("g")))
            .layer(read::<TestClaims>(false)),
    )
    .await;
    let err = health_check(required.clone(), &[]).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let err = health_check(required.clone(), &bearer(&other_key_token()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    health_check(required.clone(), &bearer(&good))
        .await
        .unwrap();

    let lenient = grpc_server(
        ServiceBuilder::new()
            .layer(optional(None))
            .layer(read::<TestClaims>(true)),
    )
    .await;
    health_check(lenient.clone(), &[]).await.unwrap();

    let other_type = grpc_server(
        ServiceBuilder::new()
            .layer(optional(None))
            .layer(read::<Value>(false)),
    )
    .await;
    for md in [vec![], bearer(&good)] {
        let err = health_check(other_type.clone(), &md).await.unwrap_err();
        assert_eq!(err.code(), Code::Internal, "{err:?}");
    }
    let other_type_opt = grpc_server(
        ServiceBuilder::new()
            .layer(optional(None))
            .layer(read::<Value>(true)),
    )
    .await;
    let err = health_check(other_type_opt, &[]).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err:?}");

    let forged = grpc_server(
        ServiceBuilder::new()
            .map_request(|mut req: http::Request<tonic::body::Body>| {
                req.extensions_mut().insert(Claims::new(TestClaims {
                    sub: "forged".into(),
                    roles: vec!["root".into()],
                }));
                req
            })
            .layer(optional(None))
            .layer(read::<TestClaims>(false)),
    )
    .await;
    let err = health_check(forged.clone(), &[]).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    health_check(forged, &bearer(&good)).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// DPoP

const BASE: &str = "https://api.example.com";

/// A DPoP-bound token for `holder` and a proof of `GET <BASE><path>` for it.
fn dpop_pair(holder: &common::dpop::Holder, path: &str) -> (String, String) {
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

async fn dpop_get(url: &str, token: &str, proof: &str) -> Seen {
    let res = client()
        .get(url)
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", proof)
        .send()
        .await
        .unwrap();
    let challenge = res
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join(" | ");
    Seen {
        status: res.status(),
        challenge,
        content_type: String::new(),
        grpc_status: None,
        body: res.text().await.unwrap(),
    }
}

/// Attack: an outer optional layer with DPoP required and resource metadata (it lends a
/// responder with `DPoP` challenges and `resource_metadata`), an inner optional default layer
/// for the same claims type. Expected: an anonymous request behind the inner layer is answered
/// `Bearer realm="api"` by `Claims<C>` and `RequireClaims` (the inner layer's), without the
/// outer layer's `DPoP` challenge or metadata URL; one only the outer layer covers gets them.
#[tokio::test]
async fn holds_outer_dpop_parameters_never_answer_for_an_inner_layer() {
    let h = Hits::default();
    let outer = hs256_builder::<TestClaims>()
        .optional()
        .realm("outer")
        .dpop(tower_jwt_auth::dpop::Dpop::required(BASE))
        .resource_metadata(ResourceMetadata::new(BASE))
        .build()
        .unwrap();
    let app = Router::new()
        .nest(
            "/n",
            Router::new()
                .route("/strict", strict(&h))
                .route("/root", strict(&h).route_layer(root()))
                .layer(optional(None)),
        )
        .route("/o", strict(&h))
        .layer(outer);
    let base = format!("http://{}", serve(app).await);
    for path in ["/n/strict", "/n/root"] {
        let seen = see(&format!("{base}{path}"), None, false).await;
        assert_eq!(seen.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(seen.challenge, "Bearer realm=\"api\"", "{path}");
    }
    let seen = see(&format!("{base}/o"), None, false).await;
    assert_eq!(seen.status, StatusCode::UNAUTHORIZED);
    assert!(
        seen.challenge.starts_with("DPoP realm=\"outer\""),
        "{seen:?}"
    );
    assert!(seen.challenge.contains("resource_metadata="), "{seen:?}");
    assert_eq!(h.count(), 0);
}

/// Attack: over a real tonic server, `RequireClaims` (sync and async) behind an optional
/// layer, with an application `map_request` in front forging `Claims::new` of a `root`
/// subject; and `RequireClaims` with no layer in front. Expected: anonymous → 16, a token
/// without the role → 7, a token with it → OK, the forged claims never pass; no layer → 13.
#[tokio::test]
async fn holds_require_claims_over_tonic_keeps_16_7_13() {
    let bearer = |t: &str| vec![("authorization", format!("Bearer {t}"))];
    let forge = |mut req: http::Request<tonic::body::Body>| {
        req.extensions_mut().insert(Claims::new(TestClaims {
            sub: "forged".into(),
            roles: vec!["root".into()],
        }));
        req
    };
    for asynchronous in [false, true] {
        let require = if asynchronous { root_async() } else { root() };
        let channel = grpc_server(
            ServiceBuilder::new()
                .map_request(forge)
                .layer(optional(Some("g")))
                .layer(require),
        )
        .await;
        let err = health_check(channel.clone(), &[]).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
        let err = health_check(channel.clone(), &bearer(&token("bob", &[])))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
        health_check(channel.clone(), &bearer(&token("ro", &["root"])))
            .await
            .unwrap();
    }
    let channel = grpc_server(ServiceBuilder::new().layer(root())).await;
    for md in [vec![], bearer(&token("ro", &["root"]))] {
        let err = health_check(channel.clone(), &md).await.unwrap_err();
        assert_eq!(err.code(), Code::Internal, "{err:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Remote key refresh

/// Attack: an outer optional layer for `TestClaims` (realm `outer`, reading only the cookie
/// `o`, so it marks the request anonymous and lends its responder) and an inner layer for
/// `TestClaims` with remote keys (default responder, then realm `inner`), whose token names a
/// `kid` published only after the first fetch: the inner layer's decision waits for a key
/// refresh. Expected: after the refresh the claims name the inner layer, so `RequireClaims`
/// (sync and async) refuses a subject without the role 403 with the inner layer's realm
/// (`api`, then `inner`), never `outer`; a token with the role passes; a kid the refresh does
/// not find is refused 401 with the inner realm; nothing is reached on a refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_after_a_key_refresh_the_inner_layer_answers() {
    use common::jwks_server::JwksServer;
    use tower_jwt_auth::TokenSource;
    use tower_jwt_auth::remote::RemoteJwks;
    let signed = |which: &str, kid: &str, sub: &str, roles: &[&str]| {
        let (key, alg) = private_key(which);
        sign_jwt(
            alg,
            &key,
            Some(kid),
            &claims_with(json!({ "sub": sub, "roles": roles })),
        )
    };
    for (inner_realm, expect) in [(None, "api"), (Some("inner"), "inner")] {
        let server = JwksServer::start(&[jwk("rsa", "rsa-a")]).await;
        let keys = RemoteJwks::from_jwks_uri(server.jwks_url())
            .allow_http_for_loopback()
            .timeouts(Duration::from_millis(500), Duration::from_secs(2))
            .refresh_cooldown(Duration::ZERO)
            .build()
            .await
            .unwrap();
        let mut inner = JwtAuthLayer::<TestClaims>::builder()
            .remote_jwks(keys)
            .issuer(ISSUER)
            .audience(AUDIENCE);
        if let Some(realm) = inner_realm {
            inner = inner.realm(realm);
        }
        let outer = hs256_builder::<TestClaims>()
            .optional()
            .realm("outer")
            .token_sources([TokenSource::cookie("o")])
            .build()
            .unwrap();
        let h = Hits::default();
        let app = Router::new()
            .route("/root", strict(&h).route_layer(root()))
            .route("/root-async", strict(&h).route_layer(root_async()))
            .layer(inner.build().unwrap())
            .layer(outer);
        let base = format!("http://{}", serve(app).await);
        server.publish(&[jwk("rsa", "rsa-a"), jwk("rsa-b", "rsa-b")]);
        for path in ["/root", "/root-async"] {
            let seen = see(
                &format!("{base}{path}"),
                Some(&signed("rsa-b", "rsa-b", &format!("bob{path}"), &[])),
                false,
            )
            .await;
            assert_eq!(seen.status, StatusCode::FORBIDDEN, "{path} {seen:?}");
            assert!(
                seen.challenge.starts_with(&format!(
                    "Bearer realm=\"{expect}\", error=\"insufficient_scope\""
                )),
                "{path} {seen:?}"
            );
        }
        let seen = see(
            &format!("{base}/root"),
            Some(&signed("rsa-b", "rsa-c", "x", &["root"])),
            false,
        )
        .await;
        assert_eq!(seen.status, StatusCode::UNAUTHORIZED, "{seen:?}");
        assert!(
            seen.challenge.starts_with(&format!(
                "Bearer realm=\"{expect}\", error=\"invalid_token\""
            )),
            "{seen:?}"
        );
        assert_eq!(h.count(), 0);
        let seen = see(
            &format!("{base}/root-async"),
            Some(&signed("rsa-b", "rsa-b", "ro", &["root"])),
            false,
        )
        .await;
        assert_eq!((seen.status, seen.body.as_str()), (StatusCode::OK, "ro"));
        assert!(
            server.hits() >= 2,
            "the unknown kid made the layer fetch again"
        );
    }
}

/// Attack: an outer optional layer for `TestClaims` (realm `outer`, cookie `o` only, so it
/// marks the request anonymous and lends its responder) and an inner layer with DPoP required,
/// whose decision waits for its proof to be spent. Expected: after the spend, `RequireClaims`
/// (sync and async) refuses a subject without the role 403 with the inner layer's `DPoP`
/// challenge (realm `api`, `algs`), never `outer`; a replayed proof is refused 401
/// `invalid_dpop_proof` by the inner layer; nothing reaches a handler on a refusal.
#[tokio::test]
async fn holds_after_a_dpop_spend_the_inner_layer_answers() {
    let holder = common::dpop::Holder::new("ec");
    let h = Hits::default();
    let outer = hs256_builder::<TestClaims>()
        .optional()
        .realm("outer")
        .token_sources([tower_jwt_auth::TokenSource::cookie("o")])
        .build()
        .unwrap();
    let inner = hs256_builder::<TestClaims>()
        .dpop(tower_jwt_auth::dpop::Dpop::required(BASE))
        .build()
        .unwrap();
    let app = Router::new()
        .route("/root", strict(&h).route_layer(root()))
        .route("/root-async", strict(&h).route_layer(root_async()))
        .layer(inner)
        .layer(outer);
    let base = format!("http://{}", serve(app).await);
    for path in ["/root", "/root-async"] {
        let (token, proof) = dpop_pair(&holder, path);
        let seen = dpop_get(&format!("{base}{path}"), &token, &proof).await;
        assert_eq!(seen.status, StatusCode::FORBIDDEN, "{path} {seen:?}");
        assert!(
            seen.challenge
                .starts_with("DPoP realm=\"api\", error=\"insufficient_scope\""),
            "{path} {seen:?}"
        );
        assert!(seen.challenge.contains("algs="), "{path} {seen:?}");
        let seen = dpop_get(&format!("{base}{path}"), &token, &proof).await;
        assert_eq!(seen.status, StatusCode::UNAUTHORIZED, "{path} {seen:?}");
        assert!(
            seen.challenge
                .starts_with("DPoP realm=\"api\", error=\"invalid_dpop_proof\""),
            "{path} {seen:?}"
        );
    }
    assert_eq!(h.count(), 0);
}
