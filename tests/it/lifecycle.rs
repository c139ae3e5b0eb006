//! The token lifecycle over real HTTP: per-route authorization (`RequireClaims`), login and
//! refresh-token rotation with reuse detection, revocation, CSRF defence for cookie-borne
//! tokens, and the access-token cookie. Every test runs axum on 127.0.0.1 and calls it with
//! reqwest; handlers count the requests that reach them.

use crate::common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::http::header::SET_COOKIE;
use axum::response::Response;
use axum::routing::post;
use common::sessions::{
    REFRESH_SECRET, Roles, SessionServer, access_token_at, issue, refreshed, refused, routes,
};
use common::*;
use jsonwebtoken::EncodingKey;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tower_jwt_auth::authorize::{
    HasRoles, HasScopes, RequireClaimsLayer, Requirement, scope_contains,
};
use tower_jwt_auth::issue::{AccessTokenCookie, RefreshError, RefreshTokens};
use tower_jwt_auth::revocation::{MemoryRevocation, RevocationStore};
use tower_jwt_auth::{
    Algorithm, AuthError, BuildError, Clock, CsrfPolicy, JwtAuthLayer, Key, Tenant,
};

// ---------------------------------------------------------------------------------------------
// Claims types and tokens
// ---------------------------------------------------------------------------------------------

impl HasRoles for TestClaims {
    fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// Claims with roles and an RFC 9068 space-delimited `scope`.
#[derive(Debug, Clone, Deserialize)]
struct ScopedClaims {
    sub: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    scope: String,
}

impl Subject for ScopedClaims {
    fn subject(&self) -> &str {
        &self.sub
    }
}

impl HasRoles for ScopedClaims {
    fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

impl HasScopes for ScopedClaims {
    fn has_scope(&self, scope: &str) -> bool {
        scope_contains(&self.scope, scope)
    }
}

fn token_with_roles(sub: &str, roles: &[&str]) -> String {
    hs256_token(json!({ "sub": sub, "roles": roles }))
}

fn token_with_scope(sub: &str, roles: &[&str], scope: &str) -> String {
    hs256_token(json!({ "sub": sub, "roles": roles, "scope": scope }))
}

fn insufficient_scope(scope: &str) -> String {
    format!(
        "Bearer realm=\"api\", error=\"insufficient_scope\", error_description=\"insufficient scope\", scope=\"{scope}\""
    )
}

/// Asserts a 403 `insufficient_scope` naming `scope`.
#[track_caller]
fn assert_forbidden(res: &reqwest::Response, scope: &str) {
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        www_authenticate(res),
        Some(insufficient_scope(scope).as_str())
    );
}

// ---------------------------------------------------------------------------------------------
// RequireClaims
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn any_role_admits_admins_and_refuses_others_with_insufficient_scope() {
    let h = Hits::default();
    let app = Router::new()
        .route(
            "/admin",
            subject::<TestClaims>(&h)
                .route_layer(RequireClaimsLayer::<TestClaims>::any_role(["admin"])),
        )
        .layer(hs256_layer::<TestClaims>());
    let url = format!("http://{}/admin", serve(app).await);

    let res = get_with(&url, Some(&token_with_roles("alice", &["admin"]))).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "alice");
    assert_eq!(h.count(), 1);

    let res = get_with(&url, Some(&token_with_roles("bob", &["user"]))).await;
    assert_forbidden(&res, "admin");
    assert!(res.bytes().await.unwrap().is_empty());

    // A token without any role at all.
    let res = get_with(
        &url,
        Some(&hs256_token(json!({ "sub": "carol", "roles": null }))),
    )
    .await;
    assert_forbidden(&res, "admin");

    // No token: JwtAuth answers before RequireClaims is consulted.
    let res = get_with(&url, None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(www_authenticate(&res), Some("Bearer realm=\"api\""));

    // Only the admin request reached the handler.
    assert_eq!(h.count(), 1);
}

#[tokio::test]
async fn all_roles_needs_every_role() {
    let h = Hits::default();
    let app = Router::new()
        .route(
            "/audit",
            subject::<TestClaims>(&h).route_layer(RequireClaimsLayer::<TestClaims>::all_roles([
                "admin", "auditor",
            ])),
        )
        .layer(hs256_layer::<TestClaims>());
    let url = format!("http://{}/audit", serve(app).await);

    let res = get_with(
        &url,
        Some(&token_with_roles("alice", &["auditor", "user", "admin"])),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "alice");

    for roles in [&["admin"][..], &["auditor"][..], &[][..]] {
        let res = get_with(&url, Some(&token_with_roles("bob", roles))).await;
        assert_forbidden(&res, "admin auditor");
    }
    assert_eq!(h.count(), 1);
}

#[tokio::test]
async fn any_scope_and_all_scopes_read_the_space_delimited_scope_claim() {
    let read = Hits::default();
    let write = Hits::default();
    let app = Router::new()
        .route(
            "/orders",
            subject::<ScopedClaims>(&read).route_layer(
                RequireClaimsLayer::<ScopedClaims>::any_scope(["orders:read", "orders:admin"]),
            ),
        )
        .route(
            "/orders/new",
            subject::<ScopedClaims>(&write).route_layer(
                RequireClaimsLayer::<ScopedClaims>::all_scopes(["orders:read", "orders:write"]),
            ),
        )
        .layer(hs256_layer::<ScopedClaims>());
    let base = format!("http://{}", serve(app).await);
    let orders = format!("{base}/orders");
    let new = format!("{base}/orders/new");

    let reader = token_with_scope("r", &[], "openid orders:read");
    let writer = token_with_scope("w", &[], "orders:write orders:read");
    let admin = token_with_scope("a", &[], "orders:admin");
    // Scopes are whole words: neither a prefix nor a longer word matches.
    let lookalike = token_with_scope("x", &[], "orders:readwrite orders orders:rea");
    let none = token_with_scope("n", &[], "");

    assert_eq!(
        get_with(&orders, Some(&reader)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        get_with(&orders, Some(&writer)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        get_with(&orders, Some(&admin)).await.status(),
        StatusCode::OK
    );
    for token in [&lookalike, &none] {
        assert_forbidden(
            &get_with(&orders, Some(token)).await,
            "orders:read orders:admin",
        );
    }
    assert_eq!(read.count(), 3);

    let res = get_with(&new, Some(&writer)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "w");
    for token in [&reader, &admin, &lookalike, &none] {
        assert_forbidden(
            &get_with(&new, Some(token)).await,
            "orders:read orders:write",
        );
    }
    assert_eq!(write.count(), 1);

    assert!(scope_contains("a b c", "b"));
    assert!(!scope_contains("a bc", "b"));
}

/// Microsoft Entra ID sends `scp` as one space-delimited string, other issuers (Okta) as an
/// array: with untyped claims, a scope requirement reads both, word by word.
#[tokio::test]
async fn untyped_claims_read_scp_as_a_space_delimited_string_or_an_array() {
    use serde_json::Value;
    let (write, delete) = (Hits::default(), Hits::default());
    let app = Router::new()
        .route(
            "/files",
            subject::<Value>(&write)
                .route_layer(RequireClaimsLayer::<Value>::all_scopes(["write"])),
        )
        .route(
            "/files/delete",
            subject::<Value>(&delete)
                .route_layer(RequireClaimsLayer::<Value>::any_scope(["delete"])),
        )
        .layer(hs256_layer::<Value>());
    let base = format!("http://{}", serve(app).await);
    let (files, remove) = (format!("{base}/files"), format!("{base}/files/delete"));

    let entra = hs256_token(json!({ "sub": "entra", "scp": "read write" }));
    let array = hs256_token(json!({ "sub": "okta", "scp": ["read", "write"] }));
    for (token, sub) in [(&entra, "entra"), (&array, "okta")] {
        let res = get_with(&files, Some(token)).await;
        assert_eq!(res.status(), StatusCode::OK, "{sub}");
        assert_eq!(res.text().await.unwrap(), sub);
        // A scope the token does not carry.
        assert_forbidden(&get_with(&remove, Some(token)).await, "delete");
    }
    // Whole words only, and an array element is one scope, spaces and all.
    for scp in [
        json!("read writer"),
        json!("rewrite"),
        json!(["read write"]),
        json!(""),
    ] {
        let token = hs256_token(json!({ "sub": "x", "scp": scp }));
        assert_forbidden(&get_with(&files, Some(&token)).await, "write");
    }
    assert_eq!((write.count(), delete.count()), (2, 0));
}

/// Roles in untyped claims are read from an array only (Microsoft Entra ID's app roles are
/// one); a `roles` string grants nothing, so a token cannot gain `admin` from a string that
/// happens to contain the word.
#[tokio::test]
async fn untyped_claims_read_roles_only_as_an_array() {
    use serde_json::Value;
    let h = Hits::default();
    let app = Router::new()
        .route(
            "/admin",
            subject::<Value>(&h).route_layer(RequireClaimsLayer::<Value>::any_role(["admin"])),
        )
        .layer(hs256_layer::<Value>());
    let url = format!("http://{}/admin", serve(app).await);
    let entra = hs256_token(json!({ "sub": "entra", "roles": ["admin", "Orders.Read"] }));
    let res = get_with(&url, Some(&entra)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "entra");
    for roles in [
        json!("admin"),
        json!("user admin"),
        json!({ "admin": true }),
    ] {
        let token = hs256_token(json!({ "sub": "x", "roles": roles }));
        assert_forbidden(&get_with(&url, Some(&token)).await, "admin");
    }
    assert_eq!(h.count(), 1);
}

#[tokio::test]
async fn requirements_compose_with_any_of_all_of_and_or() {
    let (h_or, h_and, h_any, h_all) = (
        Hits::default(),
        Hits::default(),
        Hits::default(),
        Hits::default(),
    );
    type R = Requirement<ScopedClaims>;
    let root = || R::predicate("root", |c: &ScopedClaims| c.sub == "root");
    // (staff AND orders:read) OR sub == root
    let staff_reader = R::any_role(["staff"])
        .and(R::any_scope(["orders:read"]))
        .or(root());
    // staff AND sub starts with support-
    let support = R::any_role(["staff"]).and(R::predicate("support", |c: &ScopedClaims| {
        c.sub.starts_with("support-")
    }));
    // any of: admin role, billing scope, root
    let any = R::any_of([R::any_role(["admin"]), R::any_scope(["billing"]), root()]);
    // all of: staff role, orders:read and orders:write scopes, verified predicate
    let all = R::all_of([
        R::any_role(["staff"]),
        R::all_scopes(["orders:read", "orders:write"]),
        R::predicate("verified", |c: &ScopedClaims| c.sub.ends_with("@corp")),
    ]);
    let app = Router::new()
        .route(
            "/or",
            subject::<ScopedClaims>(&h_or).route_layer(RequireClaimsLayer::new(staff_reader)),
        )
        .route(
            "/and",
            subject::<ScopedClaims>(&h_and).route_layer(RequireClaimsLayer::new(support)),
        )
        .route(
            "/any",
            subject::<ScopedClaims>(&h_any).route_layer(RequireClaimsLayer::new(any)),
        )
        .route(
            "/all",
            subject::<ScopedClaims>(&h_all).route_layer(RequireClaimsLayer::new(all)),
        )
        .layer(hs256_layer::<ScopedClaims>());
    let base = format!("http://{}", serve(app).await);
    let at = |path: &str| format!("{base}{path}");

    // /or
    let staff_reader_tok = token_with_scope("eve", &["staff"], "orders:read");
    let staff_only = token_with_scope("sam", &["staff"], "profile");
    let root_tok = token_with_scope("root", &[], "");
    assert_eq!(
        get_with(&at("/or"), Some(&staff_reader_tok)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        get_with(&at("/or"), Some(&root_tok)).await.status(),
        StatusCode::OK
    );
    assert_forbidden(
        &get_with(&at("/or"), Some(&staff_only)).await,
        "staff orders:read root",
    );
    assert_forbidden(
        &get_with(
            &at("/or"),
            Some(&token_with_scope("rd", &[], "orders:read")),
        )
        .await,
        "staff orders:read root",
    );
    assert_eq!(h_or.count(), 2);

    // /and
    let support_staff = token_with_scope("support-ann", &["staff"], "");
    assert_eq!(
        get_with(&at("/and"), Some(&support_staff)).await.status(),
        StatusCode::OK
    );
    assert_forbidden(
        &get_with(&at("/and"), Some(&staff_only)).await,
        "staff support",
    );
    assert_forbidden(
        &get_with(&at("/and"), Some(&token_with_scope("support-bo", &[], ""))).await,
        "staff support",
    );
    assert_eq!(h_and.count(), 1);

    // /any
    for token in [
        token_with_scope("a", &["admin"], ""),
        token_with_scope("b", &[], "billing"),
        root_tok.clone(),
    ] {
        assert_eq!(
            get_with(&at("/any"), Some(&token)).await.status(),
            StatusCode::OK
        );
    }
    assert_forbidden(
        &get_with(&at("/any"), Some(&staff_only)).await,
        "admin billing root",
    );
    assert_eq!(h_any.count(), 3);

    // /all
    let complete = token_with_scope("dee@corp", &["staff"], "orders:write orders:read");
    assert_eq!(
        get_with(&at("/all"), Some(&complete)).await.status(),
        StatusCode::OK
    );
    let scope = "staff orders:read orders:write verified";
    for token in [
        token_with_scope("dee@home", &["staff"], "orders:write orders:read"),
        token_with_scope("dee@corp", &[], "orders:write orders:read"),
        token_with_scope("dee@corp", &["staff"], "orders:read"),
    ] {
        assert_forbidden(&get_with(&at("/all"), Some(&token)).await, scope);
    }
    assert_eq!(h_all.count(), 1);
}

#[tokio::test]
async fn predicate_requirement_over_http() {
    let h = Hits::default();
    let app = Router::new()
        .route(
            "/corp",
            subject::<TestClaims>(&h).route_layer(RequireClaimsLayer::new(Requirement::predicate(
                "corp-account",
                |c: &TestClaims| c.sub.ends_with("@corp.example"),
            ))),
        )
        .layer(hs256_layer::<TestClaims>());
    let url = format!("http://{}/corp", serve(app).await);

    let res = get_with(&url, Some(&token_with_roles("ann@corp.example", &[]))).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "ann@corp.example");
    let res = get_with(
        &url,
        Some(&token_with_roles("ann@corp.example.evil", &["admin"])),
    )
    .await;
    assert_forbidden(&res, "corp-account");
    assert_eq!(h.count(), 1);
}

/// The asynchronous predicate hands each decision to the test through a channel and waits for
/// the answer: the request is provably parked on the predicate (the handler has not run) until
/// the test replies.
#[tokio::test]
async fn predicate_async_awaits_an_external_decision() {
    let h = Hits::default();
    let (ask_tx, mut ask_rx) = mpsc::channel::<(String, oneshot::Sender<bool>)>(4);
    let require = RequireClaimsLayer::<TestClaims>::predicate_async("entitled", move |claims| {
        let ask_tx = ask_tx.clone();
        async move {
            let (reply_tx, reply_rx) = oneshot::channel();
            if ask_tx.send((claims.sub.clone(), reply_tx)).await.is_err() {
                return false;
            }
            reply_rx.await.unwrap_or(false)
        }
    });
    let app = Router::new()
        .route("/entitled", subject::<TestClaims>(&h).route_layer(require))
        .layer(hs256_layer::<TestClaims>());
    let url = format!("http://{}/entitled", serve(app).await);

    for (sub, allow) in [("alice", true), ("bob", false), ("carol", true)] {
        let token = token_with_roles(sub, &[]);
        let before = h.count();
        let pending = tokio::spawn({
            let url = url.clone();
            async move { get_with(&url, Some(&token)).await }
        });
        // The predicate is asked, with the request's claims…
        let (asked_for, reply) = tokio::time::timeout(Duration::from_secs(10), ask_rx.recv())
            .await
            .expect("the predicate is consulted")
            .unwrap();
        assert_eq!(asked_for, sub);
        // …and until it answers, the request has not reached the handler.
        assert_eq!(h.count(), before);
        assert!(!pending.is_finished());
        reply.send(allow).unwrap();
        let res = pending.await.unwrap();
        if allow {
            assert_eq!(res.status(), StatusCode::OK);
            assert_eq!(res.text().await.unwrap(), sub);
            assert_eq!(h.count(), before + 1);
        } else {
            assert_forbidden(&res, "entitled");
            assert_eq!(h.count(), before);
        }
    }

    // Anonymous requests never reach the predicate: JwtAuth refuses them first.
    let res = get_with(&url, None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(ask_rx.try_recv().is_err());
    assert_eq!(h.count(), 2);
}

#[tokio::test]
async fn allow_anonymous_behind_an_optional_layer() {
    let (open, closed) = (Hits::default(), Hits::default());
    let optional = hs256_builder::<TestClaims>().optional().build().unwrap();
    let app = Router::new()
        .route(
            "/public",
            subject::<TestClaims>(&open).route_layer(
                RequireClaimsLayer::<TestClaims>::any_role(["admin"]).allow_anonymous(),
            ),
        )
        .route(
            "/members",
            subject::<TestClaims>(&closed)
                .route_layer(RequireClaimsLayer::<TestClaims>::any_role(["admin"])),
        )
        .layer(optional);
    let base = format!("http://{}", serve(app).await);
    let public = format!("{base}/public");
    let members = format!("{base}/members");

    // Anonymous: passes where allowed, 401 (bare challenge) where not.
    let res = get_with(&public, None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "anonymous");
    let res = get_with(&members, None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(www_authenticate(&res), Some("Bearer realm=\"api\""));

    // A caller that presents a token must meet the requirement, even on the public route.
    let user = token_with_roles("bob", &["user"]);
    assert_forbidden(&get_with(&public, Some(&user)).await, "admin");
    assert_forbidden(&get_with(&members, Some(&user)).await, "admin");

    let admin = token_with_roles("alice", &["admin"]);
    let res = get_with(&public, Some(&admin)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "alice");
    assert_eq!(
        get_with(&members, Some(&admin)).await.status(),
        StatusCode::OK
    );

    // An invalid token is still refused by the optional layer, not treated as anonymous.
    let expired = hs256_token(json!({ "exp": now() - 3600 }));
    let res = get_with(&public, Some(&expired)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    assert_eq!(open.count(), 2);
    assert_eq!(closed.count(), 1);
}

/// `RequireClaimsLayer` answers as the `JwtAuthLayer` in front does (here `ProblemJson` in
/// realm `test`): the 403 `insufficient_scope` of a sync and of an async requirement, and the
/// 401 of an anonymous request behind an optional layer; a responder or realm set on the
/// `RequireClaimsLayer` itself wins.
#[tokio::test]
async fn require_claims_answers_with_the_layers_responder() {
    use crate::axum::assert_problem;
    use tower_jwt_auth::ProblemJson;

    let h = Hits::default();
    let layer = hs256_builder::<TestClaims>()
        .optional()
        .responder(ProblemJson::with_realm("test"))
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/admin",
            subject::<TestClaims>(&h)
                .route_layer(RequireClaimsLayer::<TestClaims>::any_role(["admin"])),
        )
        .route(
            "/entitled",
            subject::<TestClaims>(&h).route_layer(
                RequireClaimsLayer::<TestClaims>::predicate_async(
                    "entitled",
                    |claims| async move { claims.sub == "alice" },
                ),
            ),
        )
        .route(
            "/own-realm",
            subject::<TestClaims>(&h)
                .route_layer(RequireClaimsLayer::<TestClaims>::any_role(["admin"]).realm("own")),
        )
        .layer(layer);
    let base = format!("http://{}", serve(app).await);
    let user = token_with_roles("bob", &["user"]);
    let forbidden = |scope: &str| {
        format!(
            "Bearer realm=\"test\", error=\"insufficient_scope\", \
             error_description=\"insufficient scope\", scope=\"{scope}\""
        )
    };

    let res = get_with(&format!("{base}/admin"), Some(&user)).await;
    let challenge = forbidden("admin");
    assert_problem(
        res,
        StatusCode::FORBIDDEN,
        "insufficient scope",
        Some(&challenge),
    )
    .await;
    let res = get_with(&format!("{base}/entitled"), Some(&user)).await;
    let challenge = forbidden("entitled");
    assert_problem(
        res,
        StatusCode::FORBIDDEN,
        "insufficient scope",
        Some(&challenge),
    )
    .await;
    let res = get_with(&format!("{base}/admin"), None).await;
    let bare = Some("Bearer realm=\"test\"");
    assert_problem(res, StatusCode::UNAUTHORIZED, "no bearer token", bare).await;

    // Set on the RequireClaimsLayer: RFC 6750 in its own realm, no document.
    let res = get_with(&format!("{base}/own-realm"), Some(&user)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        www_authenticate(&res),
        Some(
            insufficient_scope("admin")
                .replace("realm=\"api\"", "realm=\"own\"")
                .as_str()
        )
    );
    assert!(res.headers().get("content-type").is_none());
    assert_eq!(res.text().await.unwrap(), "");

    let admin = token_with_roles("alice", &["admin"]);
    for path in ["/admin", "/entitled", "/own-realm"] {
        let res = get_with(&format!("{base}{path}"), Some(&admin)).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
    }
    assert_eq!(h.count(), 3);
}

/// The realm configured on the `JwtAuthLayer` is the realm of `RequireClaims`' refusals.
#[tokio::test]
async fn require_claims_names_the_realm_of_the_layer_in_front() {
    let h = Hits::default();
    let layer = hs256_builder::<TestClaims>().realm("test").build().unwrap();
    let app = Router::new()
        .route(
            "/admin",
            subject::<TestClaims>(&h)
                .route_layer(RequireClaimsLayer::<TestClaims>::any_role(["admin"])),
        )
        .layer(layer);
    let url = format!("http://{}/admin", serve(app).await);
    let res = get_with(&url, Some(&token_with_roles("bob", &["user"]))).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        www_authenticate(&res),
        Some(
            insufficient_scope("admin")
                .replace("realm=\"api\"", "realm=\"test\"")
                .as_str()
        )
    );
    assert_eq!(h.count(), 0);
}

/// Behind a layer with the default responder, `RequireClaims` and the `Claims` extractor
/// answer an anonymous request exactly as the layer answers a request without a token, for
/// HTTP callers and for gRPC callers (status 16): the same status, challenge, content type,
/// gRPC status and body.
#[tokio::test]
async fn handlers_behind_a_default_layer_answer_as_the_layer_does() {
    let h = Hits::default();
    let strict = Router::new()
        .route("/me", subject::<TestClaims>(&h))
        .layer(hs256_layer::<TestClaims>());
    let optional = Router::new()
        .route(
            "/extractor",
            axum::routing::get(|claims: tower_jwt_auth::Claims<TestClaims>| async move {
                claims.sub.clone()
            }),
        )
        .route(
            "/admin",
            subject::<TestClaims>(&h)
                .route_layer(RequireClaimsLayer::<TestClaims>::any_role(["admin"])),
        )
        .layer(hs256_builder::<TestClaims>().optional().build().unwrap());
    let strict = format!("http://{}", serve(strict).await);
    let optional = format!("http://{}", serve(optional).await);
    for grpc in [false, true] {
        let answer = |url: String| async move {
            let mut request = client().get(url);
            if grpc {
                request = request.header("content-type", "application/grpc");
            }
            let res = request.send().await.unwrap();
            let headers = [
                "www-authenticate",
                "content-type",
                "grpc-status",
                "grpc-message",
            ]
            .map(|name| res.headers().get(name).cloned());
            (res.status(), headers, res.text().await.unwrap())
        };
        let layer = answer(format!("{strict}/me")).await;
        let expected = if grpc { "16" } else { "Bearer realm=\"api\"" };
        let shown = layer.1[if grpc { 2 } else { 0 }].clone();
        assert_eq!(shown.as_ref().map(|v| v.to_str().unwrap()), Some(expected));
        for path in ["/extractor", "/admin"] {
            assert_eq!(
                answer(format!("{optional}{path}")).await,
                layer,
                "{path}, gRPC {grpc}"
            );
        }
    }
    assert_eq!(h.count(), 0);
}

/// Of two layers in a row for different claims types, `RequireClaims` answers as the layer for
/// its own claims type, in either order: behind a default `TestClaims` layer and a
/// `ProblemJson` one for `Value`, a `TestClaims` requirement refuses in RFC 6750 form and a
/// `Value` requirement (synchronous or asynchronous) with a problem document; the same for the
/// `Claims` extractors of an anonymous request.
#[tokio::test]
async fn require_claims_answers_as_the_layer_for_its_claims_type() {
    use axum::routing::get;
    use serde_json::Value;
    use tower_jwt_auth::{Claims, ProblemJson};

    let h = Hits::default();
    let problem = || {
        hs256_builder::<Value>()
            .optional()
            .responder(ProblemJson::with_realm("problem"))
            .build()
            .unwrap()
    };
    let routes = || {
        Router::new()
            .route(
                "/admin",
                subject::<TestClaims>(&h)
                    .route_layer(RequireClaimsLayer::<TestClaims>::any_role(["admin"])),
            )
            .route(
                "/value-admin",
                subject::<TestClaims>(&h)
                    .route_layer(RequireClaimsLayer::<Value>::any_role(["admin"])),
            )
            .route(
                "/claims",
                get(|c: Claims<TestClaims>| async move { c.sub.clone() }),
            )
            .route(
                "/value-claims",
                get(|c: Claims<Value>| async move { c["sub"].to_string() }),
            )
            .route(
                "/value-entitled",
                subject::<TestClaims>(&h).route_layer(
                    RequireClaimsLayer::<Value>::predicate_async("entitled", |claims| async move {
                        claims["sub"] == "alice"
                    }),
                ),
            )
    };
    let default = || hs256_builder::<TestClaims>().optional().build().unwrap();
    let problem_outer = routes().layer(default()).layer(problem());
    let problem_inner = routes().layer(problem()).layer(default());
    let bob = token_with_roles("bob", &["user"]);
    for app in [problem_outer, problem_inner] {
        let base = format!("http://{}", serve(app).await);
        for (path, token, status) in [
            ("/admin", Some(bob.as_str()), StatusCode::FORBIDDEN),
            ("/claims", None, StatusCode::UNAUTHORIZED),
        ] {
            let res = get_with(&format!("{base}{path}"), token).await;
            assert_eq!(res.status(), status, "{path}");
            let challenge = www_authenticate(&res).unwrap().to_owned();
            assert!(
                challenge.starts_with("Bearer realm=\"api\""),
                "{path}: {challenge}"
            );
            assert!(res.headers().get("content-type").is_none(), "{path}");
        }
        for (path, token, status) in [
            ("/value-admin", Some(bob.as_str()), StatusCode::FORBIDDEN),
            ("/value-entitled", Some(bob.as_str()), StatusCode::FORBIDDEN),
            ("/value-claims", None, StatusCode::UNAUTHORIZED),
        ] {
            let res = get_with(&format!("{base}{path}"), token).await;
            assert_eq!(res.status(), status, "{path}");
            let challenge = www_authenticate(&res).unwrap().to_owned();
            assert!(
                challenge.starts_with("Bearer realm=\"problem\""),
                "{path}: {challenge}"
            );
            assert_eq!(
                res.headers()["content-type"],
                "application/problem+json",
                "{path}"
            );
        }
    }
    assert_eq!(h.count(), 0);
}

/// Behind a layer that describes the API as a protected resource (RFC 9728 §5.1) with the
/// default responder, `RequireClaims`' 403 points to the metadata document as the layer's own
/// refusals do.
#[tokio::test]
async fn require_claims_names_the_resource_metadata_of_the_layer_in_front() {
    use tower_jwt_auth::resource_metadata::ResourceMetadata;

    let h = Hits::default();
    let layer = hs256_builder::<TestClaims>()
        .resource_metadata(ResourceMetadata::new("https://api.example.com"))
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/admin",
            subject::<TestClaims>(&h)
                .route_layer(RequireClaimsLayer::<TestClaims>::any_role(["admin"])),
        )
        .layer(layer);
    let url = format!("http://{}/admin", serve(app).await);
    let metadata =
        "resource_metadata=\"https://api.example.com/.well-known/oauth-protected-resource\"";
    let res = get_with(&url, None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        www_authenticate(&res),
        Some(format!("Bearer realm=\"api\", {metadata}").as_str())
    );
    let res = get_with(&url, Some(&token_with_roles("bob", &["user"]))).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        www_authenticate(&res),
        Some(format!("{}, {metadata}", insufficient_scope("admin")).as_str())
    );
    assert_eq!(h.count(), 0);
}

/// Forgetting `JwtAuthLayer` is a wiring mistake: 500, never a pass, whatever the request
/// carries.
#[tokio::test]
async fn require_claims_without_jwt_auth_layer_is_500() {
    let h = Hits::default();
    let app = Router::new().route(
        "/admin",
        subject::<TestClaims>(&h)
            .route_layer(RequireClaimsLayer::<TestClaims>::any_role(["admin"])),
    );
    let url = format!("http://{}/admin", serve(app).await);

    for token in [Some(token_with_roles("alice", &["admin"])), None] {
        let res = get_with(&url, token.as_deref()).await;
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(www_authenticate(&res), None);
    }
    // Also with the layer for a *different* claims type in front: still no Claims<TestClaims>.
    let h2 = Hits::default();
    let app = Router::new()
        .route(
            "/admin",
            subject::<TestClaims>(&h2)
                .route_layer(RequireClaimsLayer::<TestClaims>::any_role(["admin"])),
        )
        .layer(hs256_layer::<ScopedClaims>());
    let url = format!("http://{}/admin", serve(app).await);
    let res = get_with(&url, Some(&token_with_roles("alice", &["admin"]))).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);

    assert_eq!(h.count() + h2.count(), 0);
}

#[tokio::test]
async fn grpc_callers_get_grpc_status_permission_denied() {
    let h = Hits::default();
    let app = Router::new()
        .route(
            "/pkg.Admin/Do",
            subject::<TestClaims>(&h)
                .route_layer(RequireClaimsLayer::<TestClaims>::any_role(["admin"])),
        )
        .layer(hs256_layer::<TestClaims>());
    let url = format!("http://{}/pkg.Admin/Do", serve(app).await);
    let call = |token: Option<String>| {
        let mut req = client()
            .post(&url)
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send()
    };

    let res = call(Some(token_with_roles("bob", &["user"])))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["grpc-status"], "7");
    assert_eq!(res.headers()["grpc-message"], "insufficient scope");
    assert_eq!(res.headers()["content-type"], "application/grpc");
    assert_eq!(www_authenticate(&res), None);

    // No token: UNAUTHENTICATED, from JwtAuth.
    let res = call(None).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["grpc-status"], "16");

    assert_eq!(h.count(), 0);
    let res = call(Some(token_with_roles("alice", &["admin"])))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get("grpc-status").is_none());
    assert_eq!(h.count(), 1);
}

// ---------------------------------------------------------------------------------------------
// Login and refresh-token rotation
// ---------------------------------------------------------------------------------------------

/// `/login` and `/refresh` (both public) and `/me` ([`claims_json`]) behind `layer`: the
/// server and the count of `/me`.
async fn session_server(
    sessions: RefreshTokens<Roles>,
    layer: JwtAuthLayer<TestClaims>,
) -> (SessionServer, Hits) {
    let me = Hits::default();
    let app = Router::new()
        .route("/me", claims_json::<TestClaims>(&me))
        .layer(layer)
        .merge(routes(Arc::new(sessions)));
    (SessionServer::start(app).await, me)
}

fn memory_sessions() -> RefreshTokens<Roles> {
    RefreshTokens::new(
        access_issuer(),
        REFRESH_SECRET,
        Arc::new(MemoryRevocation::new()),
    )
    .unwrap()
}

#[tokio::test]
async fn refreshed_access_token_works_and_refresh_token_is_not_an_access_token() {
    let (app, me) = session_server(memory_sessions(), access_layer()).await;

    let first = app.login("alice").await;
    assert_eq!(first.token_type, "Bearer");
    assert_eq!(first.expires_in, 900);
    let res = app.me(&first.access_token).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap(),
        json!({ "sub": "alice", "roles": ["user"] })
    );

    let second = refreshed(app.refresh(&first.refresh_token).await);
    assert_ne!(second.access_token, first.access_token);
    assert_ne!(second.refresh_token, first.refresh_token);
    let res = app.me(&second.access_token).await;
    assert_eq!(res.status(), StatusCode::OK);
    // The application claims travel through the rotation.
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap(),
        json!({ "sub": "alice", "roles": ["user"] })
    );
    // The rotated refresh token rotates again.
    let third = refreshed(app.refresh(&second.refresh_token).await);
    assert_eq!(app.me(&third.access_token).await.status(), StatusCode::OK);

    // A refresh token is no access token: its `typ` is refresh+jwt.
    for refresh in [&first.refresh_token, &third.refresh_token] {
        let res = app.me(refresh).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            www_authenticate(&res),
            Some(
                "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"wrong token type\""
            )
        );
    }

    // And an access token is no refresh token.
    assert_eq!(refused(app.refresh(&third.access_token).await), "invalid");
    assert_eq!(me.count(), 3);
}

/// A refresh token is never accepted as an access token, whatever the access layer checks:
/// a refresh secret equal to the access secret does not build, and under its own secret a
/// refresh token fails the signature check of a layer that checks neither `typ` nor `aud`.
#[tokio::test]
async fn refresh_token_is_no_access_token_even_without_typ_or_aud_checks() {
    let same =
        RefreshTokens::<Roles>::new(access_issuer(), SECRET, Arc::new(MemoryRevocation::new()));
    assert!(
        matches!(&same, Err(BuildError::InvalidSetting(m)) if m.contains("must differ")),
        "{same:?}"
    );
    let bare = JwtAuthLayer::<TestClaims>::builder()
        .hs256(SECRET)
        .build()
        .unwrap();
    let (app, me) = session_server(memory_sessions(), bare).await;
    let pair = app.login("alice").await;
    assert_eq!(app.me(&pair.access_token).await.status(), StatusCode::OK);
    let res = app.me(&pair.refresh_token).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        www_authenticate(&res),
        Some(
            "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"invalid signature\""
        )
    );
    assert_eq!(me.count(), 1);
}

/// Sessions whose issuer, verifier and store all read `clock`; refresh tokens live 600 s.
fn clocked_sessions(clock: &Clock) -> RefreshTokens<Roles> {
    RefreshTokens::new(
        access_issuer().clock(clock.clone()),
        REFRESH_SECRET,
        Arc::new(MemoryRevocation::new().clock(clock.clone())),
    )
    .unwrap()
    .refresh_lifetime(Duration::from_secs(600))
}

fn at(unix_secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix_secs)
}

/// A copy of a spent refresh token, held until just after its `exp`, gets nothing: refresh
/// tokens are verified without leeway, and the single-use mark outlives `exp` anyway.
#[tokio::test]
async fn a_spent_refresh_token_is_refused_just_after_its_exp() {
    let clock = Clock::manual(SystemTime::now());
    let sessions = clocked_sessions(&clock);
    let roles = Roles { roles: vec![] };
    let r1 = sessions.issue("alice", &roles).unwrap().refresh;
    clock.advance(Duration::from_secs(100));
    let r2 = sessions.refresh(&r1.token).await.unwrap().refresh;

    clock.set(at(r1.expires_at + 30));
    let replay = sessions.refresh(&r1.token).await;
    assert!(
        matches!(replay, Err(RefreshError::Invalid(AuthError::Expired))),
        "{replay:?}"
    );
    // The legitimate holder's rotation goes on.
    assert!(sessions.refresh(&r2.token).await.is_ok());
}

/// A revoked family stays revoked for as long as any of its refresh tokens could be accepted,
/// including one issued at the very instant of the revocation.
#[tokio::test]
async fn a_revoked_family_stays_revoked_until_its_last_token_is_dead() {
    let clock = Clock::manual(SystemTime::now());
    let sessions = clocked_sessions(&clock);
    let r1 = sessions
        .issue("alice", &Roles { roles: vec![] })
        .unwrap()
        .refresh;
    let r2 = sessions.refresh(&r1.token).await.unwrap().refresh;
    assert!(matches!(
        sessions.refresh(&r1.token).await,
        Err(RefreshError::ReuseDetected)
    ));
    clock.set(at(r2.expires_at - 1));
    assert!(matches!(
        sessions.refresh(&r2.token).await,
        Err(RefreshError::Revoked)
    ));
    for past_exp in [0, 30, 59, 61] {
        clock.set(at(r2.expires_at + past_exp));
        let late = sessions.refresh(&r2.token).await;
        assert!(late.is_err(), "{past_exp} s after exp: {late:?}");
    }
}

/// RFC 9700 §4.14.2: attacker and victim hold the same refresh token R1. The attacker rotates
/// first; the victim's R1 then counts as reuse, which revokes the family, so the attacker's R2
/// stops working too.
#[tokio::test]
async fn stolen_refresh_token_reuse_revokes_the_family() {
    let (app, me) = session_server(memory_sessions(), access_layer()).await;
    let victim = app.login("alice").await;
    let r1 = victim.refresh_token.clone();
    let stolen = r1.clone();

    let attacker = refreshed(app.refresh(&stolen).await);
    assert_eq!(
        app.me(&attacker.access_token).await.status(),
        StatusCode::OK
    );

    // The victim's client refreshes with R1: reuse.
    assert_eq!(refused(app.refresh(&r1).await), "reuse_detected");
    // The attacker's R2 belongs to the revoked family.
    assert_eq!(
        refused(app.refresh(&attacker.refresh_token).await),
        "revoked"
    );
    // R1 stays refused.
    assert_eq!(refused(app.refresh(&r1).await), "revoked");

    // Another login starts a new family, unaffected.
    let fresh = app.login("alice").await;
    let next = refreshed(app.refresh(&fresh.refresh_token).await);
    assert_eq!(app.me(&next.access_token).await.status(), StatusCode::OK);
    assert_eq!(me.count(), 2);
}

#[tokio::test]
async fn tampered_refresh_token_is_refused() {
    let (app, _me) = session_server(memory_sessions(), access_layer()).await;
    let pair = app.login("alice").await;

    // Rewrite the payload (sub: mallory) and keep the signature.
    let parts: Vec<&str> = pair.refresh_token.split('.').collect();
    let payload =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, parts[1])
            .unwrap();
    let mut claims: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    claims["sub"] = json!("mallory");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64(claims.to_string().as_bytes()),
        parts[2]
    );
    assert_eq!(refused(app.refresh(&forged).await), "invalid");

    // A refresh token signed with the wrong secret.
    let header =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, parts[0])
            .unwrap();
    let header: serde_json::Value = serde_json::from_slice(&header).unwrap();
    let resigned = sign_raw(&header, &claims, Algorithm::HS256, &hs256_key());
    assert_eq!(refused(app.refresh(&resigned).await), "invalid");

    // Garbage.
    assert_eq!(refused(app.refresh("not.a.token").await), "invalid");

    // The genuine token still works: the failed attempts did not consume it.
    let next = refreshed(app.refresh(&pair.refresh_token).await);
    assert_eq!(app.me(&next.access_token).await.status(), StatusCode::OK);
}

/// An access token is no refresh token. The refresh verifier has three checks that keep it
/// out, and each must hold on its own: the `typ` (`refresh+jwt`), the audience
/// (`<aud>#refresh`) and the refresh secret. `/refresh` answers every refusal alike
/// ("invalid"), so which check refused is read from `RefreshTokens::refresh`, with tokens that
/// pass all but one of them.
#[tokio::test]
async fn access_token_is_refused_at_refresh() {
    use tower_jwt_auth::AuthError;
    use tower_jwt_auth::issue::{REFRESH_TOKEN_TYPE, RefreshError};

    let (app, _me) = session_server(memory_sessions(), access_layer()).await;
    let pair = app.login("alice").await;
    assert_eq!(refused(app.refresh(&pair.access_token).await), "invalid");
    // A token that merely looks like an access token from the test helpers, too.
    assert_eq!(
        refused(app.refresh(&hs256_token(json!({}))).await),
        "invalid"
    );
    // The refresh token itself is unaffected.
    refreshed(app.refresh(&pair.refresh_token).await);

    let sessions = memory_sessions();
    let refusal = async |token: &str| match sessions.refresh(token).await.err() {
        Some(RefreshError::Invalid(reason)) => reason,
        other => panic!("expected an invalid refresh token, got {other:?}"),
    };
    // The access token fails the first of them, the `typ`, before its signature is checked.
    let access = access_issuer()
        .issue("alice", &Roles { roles: vec![] })
        .unwrap();
    assert_eq!(refusal(&access.token).await, AuthError::WrongType);

    // Refresh-shaped tokens that differ from a genuine one in one thing only.
    let refresh_token = |aud: &str, secret: &[u8]| {
        sign_raw(
            &json!({ "alg": "HS256", "typ": REFRESH_TOKEN_TYPE }),
            &json!({ "iss": ISSUER, "aud": aud, "sub": "alice", "jti": format!("j-{aud}"),
                     "fam": "f-1", "iat": now(), "exp": now() + 600, "app": { "roles": [] } }),
            Algorithm::HS256,
            &jsonwebtoken::EncodingKey::from_secret(secret),
        )
    };
    let refresh_aud = format!("{AUDIENCE}#refresh");
    // The access audience, under the refresh secret: the audience check refuses it.
    let for_access = refresh_token(AUDIENCE, REFRESH_SECRET);
    assert_eq!(refusal(&for_access).await, AuthError::WrongAudience);
    // The refresh audience, under the access secret: the signature check refuses it.
    let under_access_secret = refresh_token(&refresh_aud, SECRET);
    assert_eq!(
        refusal(&under_access_secret).await,
        AuthError::InvalidSignature
    );
    // Both right: a genuine refresh token, accepted.
    let genuine = refresh_token(&refresh_aud, REFRESH_SECRET);
    assert!(sessions.refresh(&genuine).await.is_ok());
}

// ---------------------------------------------------------------------------------------------
// Revocation (MemoryRevocation)
// ---------------------------------------------------------------------------------------------

const REVOKED: &str =
    "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"token revoked\"";

async fn revocable_server(store: Arc<MemoryRevocation>) -> (String, Hits) {
    clocked_revocable_server(store, Clock::system()).await
}

async fn clocked_revocable_server(store: Arc<MemoryRevocation>, clock: Clock) -> (String, Hits) {
    let layer = hs256_builder::<TestClaims>()
        .token_type("at+jwt")
        .revocation(store)
        .clock(clock)
        .build()
        .unwrap();
    me_server(layer).await
}

#[tokio::test]
async fn revoked_jti_is_refused_on_the_next_request() {
    let store = Arc::new(MemoryRevocation::new());
    let (url, h) = revocable_server(store.clone()).await;
    let token = issue("alice");
    let other = issue("alice");

    let res = get_with(&url, Some(&token.token)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "alice");

    store.revoke(&token.jti, token.expires_at).await.unwrap();
    let res = get_with(&url, Some(&token.token)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(www_authenticate(&res), Some(REVOKED));

    // Only that jti: the subject's other token still works.
    assert_eq!(
        get_with(&url, Some(&other.token)).await.status(),
        StatusCode::OK
    );
    assert_eq!(h.count(), 2);
}

#[tokio::test]
async fn revoked_subject_loses_older_tokens_only() {
    let store = Arc::new(MemoryRevocation::new());
    let (url, h) = revocable_server(store.clone()).await;
    let alice1 = issue("alice");
    let alice2 = issue("alice");
    let bob = issue("bob");
    for t in [&alice1, &alice2, &bob] {
        assert_eq!(
            get_with(&url, Some(&t.token)).await.status(),
            StatusCode::OK
        );
    }

    let now = now();
    store
        .revoke_subject(Some(ISSUER), "alice", now + 1, now + 3600)
        .await
        .unwrap();
    for t in [&alice1, &alice2] {
        let res = get_with(&url, Some(&t.token)).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(www_authenticate(&res), Some(REVOKED));
    }
    let res = get_with(&url, Some(&bob.token)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "bob");

    // A token of alice issued after the cut-off (iat = now + 2) is accepted again.
    let later = access_token_at("alice", "after-cutoff", now + 2, now + 900);
    assert_eq!(get_with(&url, Some(&later)).await.status(), StatusCode::OK);
    // …and one without `iat` is not (it cannot prove it is newer).
    let undated = sign_raw(
        &json!({ "alg": "HS256", "typ": "at+jwt" }),
        &json!({ "sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "jti": "undated",
                 "exp": now + 900 }),
        Algorithm::HS256,
        &hs256_key(),
    );
    assert_eq!(
        get_with(&url, Some(&undated)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(h.count(), 5);
}

/// The layer accepts a token until `exp` plus its leeway (60 s): a logged-out token must stay
/// refused through that window, not come back when the store's entry would have expired.
#[tokio::test]
async fn a_revoked_token_stays_revoked_through_the_leeway() {
    let clock = Clock::manual(SystemTime::now());
    let store = Arc::new(MemoryRevocation::new().clock(clock.clone()));
    let (url, h) = clocked_revocable_server(store.clone(), clock.clone()).await;
    let token = access_issuer()
        .clock(clock.clone())
        .issue("alice", &Roles { roles: vec![] })
        .unwrap();
    assert_eq!(
        get_with(&url, Some(&token.token)).await.status(),
        StatusCode::OK
    );
    store.revoke(&token.jti, token.expires_at).await.unwrap();

    for past_exp in [-1, 0, 30, 59] {
        clock.set(at(token.expires_at.saturating_add_signed(past_exp)));
        let res = get_with(&url, Some(&token.token)).await;
        assert_eq!(
            res.status(),
            StatusCode::UNAUTHORIZED,
            "{past_exp} s after exp"
        );
        assert_eq!(
            www_authenticate(&res),
            Some(REVOKED),
            "{past_exp} s after exp"
        );
    }
    clock.set(at(token.expires_at + 61));
    let res = get_with(&url, Some(&token.token)).await;
    assert_eq!(
        www_authenticate(&res),
        Some("Bearer realm=\"api\", error=\"invalid_token\", error_description=\"token expired\"")
    );
    assert_eq!(h.count(), 1);
}

/// A subject is unique only within its issuer (RFC 7519 §4.1.2): revoking one issuer's alice
/// leaves another issuer's alice alone.
#[tokio::test]
async fn a_subject_revocation_reaches_only_its_issuer() {
    const OTHER: &str = "https://other.test";
    const OTHER_SECRET: &[u8] = b"the other tenant's secret, 32 bytes or more";
    let store = Arc::new(MemoryRevocation::new());
    let h = Hits::default();
    let layer = JwtAuthLayer::<TestClaims>::builder()
        .tenant(Tenant::new(ISSUER).key(Key::hmac(Algorithm::HS256, SECRET)))
        .tenant(Tenant::new(OTHER).key(Key::hmac(Algorithm::HS256, OTHER_SECRET)))
        .audience(AUDIENCE)
        .revocation(store.clone())
        .build()
        .unwrap();
    let app = Router::new()
        .route("/me", subject::<TestClaims>(&h))
        .layer(layer);
    let url = format!("http://{}/me", serve(app).await);
    let ours = hs256_token(json!({ "iat": now() - 10 }));
    let theirs = sign_raw(
        &json!({ "alg": "HS256" }),
        &json!({ "sub": "alice", "roles": [], "iss": OTHER, "aud": AUDIENCE,
                 "iat": now() - 10, "exp": now() + 600 }),
        Algorithm::HS256,
        &EncodingKey::from_secret(OTHER_SECRET),
    );
    for t in [&ours, &theirs] {
        assert_eq!(get_with(&url, Some(t)).await.status(), StatusCode::OK);
    }
    store
        .revoke_subject(Some(ISSUER), "alice", now(), now() + 3600)
        .await
        .unwrap();
    let res = get_with(&url, Some(&ours)).await;
    assert_eq!(www_authenticate(&res), Some(REVOKED));
    assert_eq!(get_with(&url, Some(&theirs)).await.status(), StatusCode::OK);
    assert_eq!(h.count(), 3);
}

// ---------------------------------------------------------------------------------------------
// CSRF for cookie-borne tokens
// ---------------------------------------------------------------------------------------------

async fn cookie_server(
    configure: impl FnOnce(
        tower_jwt_auth::JwtAuthBuilder<TestClaims>,
    ) -> tower_jwt_auth::JwtAuthBuilder<TestClaims>,
) -> (SocketAddr, Hits) {
    let h = Hits::default();
    let builder = hs256_builder::<TestClaims>().token_from_cookie("access_token");
    let app = Router::new()
        .route("/action", subject::<TestClaims>(&h))
        .layer(configure(builder).build().unwrap());
    (serve(app).await, h)
}

#[tokio::test]
async fn csrf_same_origin_policy_for_cookie_tokens() {
    // The test server has no TLS: it says so, or `http://` origins would not be its own.
    let (addr, h) = cookie_server(|b| b.csrf(CsrfPolicy::same_origin().assume_http())).await;
    let url = format!("http://{addr}/action");
    let token = hs256_token(json!({}));
    let cookie = format!("access_token={token}");
    let c = client();

    // POST with the cookie and no Origin: forged until proven otherwise.
    let res = c.post(&url).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(www_authenticate(&res), None);
    assert_eq!(h.count(), 0);

    // Same origin as the Host the client sent.
    let res = c
        .post(&url)
        .header("cookie", &cookie)
        .header("origin", format!("http://127.0.0.1:{}", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "alice");
    assert_eq!(h.count(), 1);

    // Without Origin, a same-origin Referer is proof enough.
    let res = c
        .post(&url)
        .header("cookie", &cookie)
        .header(
            "referer",
            format!("http://127.0.0.1:{}/page?x=1", addr.port()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(h.count(), 2);

    // A foreign origin, a foreign Referer, a look-alike origin, an opaque origin.
    for (name, value) in [
        ("origin", "https://evil.example".to_owned()),
        ("referer", "https://evil.example/attack".to_owned()),
        (
            "origin",
            format!("http://127.0.0.1:{}.evil.example", addr.port()),
        ),
        ("origin", "null".to_owned()),
    ] {
        let res = c
            .post(&url)
            .header("cookie", &cookie)
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert_eq!(www_authenticate(&res), None);
    }
    // Other unsafe methods too.
    let res = c
        .delete(&url)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(h.count(), 2);

    // Safe methods need no proof.
    let res = c.get(&url).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(h.count(), 3);

    // A token in the Authorization header cannot be forged cross-site: exempt.
    let res = c.post(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(h.count(), 4);

    // The CSRF refusal comes before token verification, but an invalid cookie token with a
    // valid Origin is still 401.
    let res = c
        .post(&url)
        .header("cookie", "access_token=not.a.jwt")
        .header("origin", format!("http://127.0.0.1:{}", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(h.count(), 4);
}

#[tokio::test]
async fn csrf_double_submit_policy() {
    let (addr, h) = cookie_server(|b| {
        b.csrf(CsrfPolicy::allowed_origins_only().double_submit("x-csrf-token", "csrf"))
    })
    .await;
    let url = format!("http://{addr}/action");
    let token = hs256_token(json!({}));
    let c = client();
    let post = |cookie: String, header: Option<&'static str>| {
        let mut req = c.post(&url).header("cookie", cookie);
        if let Some(h) = header {
            req = req.header("x-csrf-token", h);
        }
        req.send()
    };

    let res = post(
        format!("access_token={token}; csrf=k3y-9f8e7d"),
        Some("k3y-9f8e7d"),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(h.count(), 1);

    for (cookie, header) in [
        (
            format!("access_token={token}; csrf=k3y-9f8e7d"),
            Some("k3y-9f8e7e"),
        ),
        (format!("access_token={token}; csrf=k3y-9f8e7d"), None),
        (format!("access_token={token}"), Some("k3y-9f8e7d")),
        (format!("access_token={token}; csrf="), Some("")),
    ] {
        let res = post(cookie, header).await.unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert_eq!(www_authenticate(&res), None);
    }
    // allowed_origins_only: the request's own origin is no proof here.
    let res = c
        .post(&url)
        .header("cookie", format!("access_token={token}"))
        .header("origin", format!("http://127.0.0.1:{}", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(h.count(), 1);
}

#[tokio::test]
async fn csrf_allow_origin_and_disabled_protection() {
    let (addr, h) =
        cookie_server(|b| b.csrf(CsrfPolicy::same_origin().allow_origin("https://app.example/")))
            .await;
    let url = format!("http://{addr}/action");
    let cookie = format!("access_token={}", hs256_token(json!({})));
    let c = client();
    let res = c
        .post(&url)
        .header("cookie", &cookie)
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = c
        .post(&url)
        .header("cookie", &cookie)
        .header("origin", "https://app.example.evil")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(h.count(), 1);

    let (addr, h) = cookie_server(|b| b.disable_csrf_protection()).await;
    let res = c
        .post(format!("http://{addr}/action"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(h.count(), 1);
}

/// The status a cookie-borne POST to `url` with `headers` gets.
async fn csrf_post(
    c: &reqwest::Client,
    url: &str,
    cookie: &str,
    headers: &[(&str, &str)],
) -> StatusCode {
    let mut req = c.post(url).header("cookie", cookie);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.send().await.unwrap().status()
}

/// The test server speaks plain http, but an HTTP/1.1 request line names no scheme, and an
/// https site must never take `Origin: http://<its host>` (a page anyone on the network can
/// forge) for its own: unless told `assume_http()`, the layer takes the site to be https. A
/// default port written out is the same origin as none.
#[tokio::test]
async fn csrf_origin_compares_scheme_host_and_port() {
    let (addr, h) = cookie_server(|b| b).await;
    let url = format!("http://{addr}/action");
    let cookie = format!("access_token={}", hs256_token(json!({})));
    let c = client();
    let port = addr.port();
    let http_origin = format!("http://127.0.0.1:{port}");
    let https_origin = format!("https://127.0.0.1:{port}");

    let status = csrf_post(&c, &url, &cookie, &[("origin", &http_origin)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let referer = format!("{http_origin}/form");
    let status = csrf_post(&c, &url, &cookie, &[("referer", &referer)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(h.count(), 0);
    let status = csrf_post(&c, &url, &cookie, &[("origin", &https_origin)]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h.count(), 1);

    // The site on its default port: `https://shop.example:443` is `https://shop.example`.
    let (ok, forbidden) = (StatusCode::OK, StatusCode::FORBIDDEN);
    for (host, origin, expected) in [
        ("shop.example", "https://shop.example:443", ok),
        ("shop.example:443", "https://shop.example", ok),
        ("Shop.Example", "https://shop.EXAMPLE", ok),
        ("shop.example", "https://shop.example:8443", forbidden),
        ("shop.example", "http://shop.example", forbidden),
        ("shop.example", "http://shop.example:443", forbidden),
    ] {
        let status = csrf_post(&c, &url, &cookie, &[("host", host), ("origin", origin)]).await;
        assert_eq!(status, expected, "Host {host}, Origin {origin}");
    }
    assert_eq!(h.count(), 4);

    // A site with no TLS anywhere says so; then https is the other origin.
    let (addr, h) = cookie_server(|b| b.csrf(CsrfPolicy::same_origin().assume_http())).await;
    let url = format!("http://{addr}/action");
    let http_origin = format!("http://127.0.0.1:{}", addr.port());
    let https_origin = format!("https://127.0.0.1:{}", addr.port());
    let status = csrf_post(&c, &url, &cookie, &[("origin", &http_origin)]).await;
    assert_eq!(status, StatusCode::OK);
    let status = csrf_post(&c, &url, &cookie, &[("origin", &https_origin)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(h.count(), 1);
}

/// Browsers send `Sec-Fetch-Site`, which no page can set, and the layer reads it first: behind
/// a proxy that rewrote `Host`, `same-origin` passes with no configuration at all, and
/// `cross-site` is refused even when `Origin` matches `Host`.
#[tokio::test]
async fn csrf_sec_fetch_site_is_checked_first() {
    let (addr, h) = cookie_server(|b| b).await;
    let url = format!("http://{addr}/action");
    let cookie = format!("access_token={}", hs256_token(json!({})));
    let c = client();
    // What the browser saw: https://shop.example; what reached the server: Host 127.0.0.1.
    let public = [("origin", "https://shop.example")];
    let status = csrf_post(&c, &url, &cookie, &public).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let status = csrf_post(
        &c,
        &url,
        &cookie,
        &[public[0], ("sec-fetch-site", "same-origin")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h.count(), 1);

    let own = format!("https://127.0.0.1:{}", addr.port());
    for site in ["cross-site", "same-site"] {
        let headers = [("origin", own.as_str()), ("sec-fetch-site", site)];
        let status = csrf_post(&c, &url, &cookie, &headers).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{site}");
    }
    assert_eq!(h.count(), 1);
}

/// Behind a reverse proxy that rewrites `Host` and ends TLS (the client plays the proxy: it
/// calls 127.0.0.1 and names the public site in `X-Forwarded-Host`/`-Proto`), a same-origin
/// cookie-borne write passes once the forwarded headers are trusted, and is 403 while they are
/// not: untrusted, they are ignored, so they cannot make a foreign origin the site's own.
#[tokio::test]
async fn csrf_behind_a_proxy_trusts_forwarded_headers_only_when_told() {
    let (trusting, trusting_hits) =
        cookie_server(|b| b.csrf(CsrfPolicy::same_origin().trust_forwarded_headers())).await;
    let (untrusting, untrusting_hits) = cookie_server(|b| b).await;
    let cookie = format!("access_token={}", hs256_token(json!({})));
    let c = client();
    let post = |addr: SocketAddr, origin: &'static str, host: &'static str, proto| {
        let url = format!("http://{addr}/action");
        let cookie = cookie.clone();
        let c = c.clone();
        async move {
            let headers = [
                ("origin", origin),
                ("x-forwarded-host", host),
                ("x-forwarded-proto", proto),
            ];
            csrf_post(&c, &url, &cookie, &headers).await
        }
    };

    let res = c
        .post(format!("http://{trusting}/action"))
        .header("cookie", &cookie)
        .header("origin", "https://shop.example")
        .header("x-forwarded-host", "shop.example")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "alice");
    // Only the scheme and host the proxy named are the site's own.
    for (origin, host, proto) in [
        ("http://shop.example", "shop.example", "https"),
        ("https://evil.example", "shop.example", "https"),
        ("https://shop.example:8443", "shop.example", "https"),
        ("https://shop.example", "shop.example, x.test", "https"),
    ] {
        let status = post(trusting, origin, host, proto).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{origin} {host} {proto}");
    }
    assert_eq!(trusting_hits.count(), 1);

    // Not trusted: the same request is refused, and so is one naming the attacker's origin.
    for (origin, host) in [
        ("https://shop.example", "shop.example"),
        ("https://evil.example", "evil.example"),
    ] {
        let status = post(untrusting, origin, host, "https").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{origin}");
    }
    assert_eq!(untrusting_hits.count(), 0);
}

/// The double-submit cookie is read by the crate's one cookie parser: DQUOTEs around its value
/// (RFC 6265 §4.1.1) are not part of it, and a quoted empty value matches nothing.
#[tokio::test]
async fn csrf_double_submit_cookie_in_dquotes() {
    let (addr, h) = cookie_server(|b| {
        b.csrf(CsrfPolicy::allowed_origins_only().double_submit("x-csrf-token", "csrf"))
    })
    .await;
    let url = format!("http://{addr}/action");
    let token = hs256_token(json!({}));
    let c = client();
    for (csrf, header, expected) in [
        ("\"k3y-9f8e7d\"", "k3y-9f8e7d", StatusCode::OK),
        ("\"k3y-9f8e7d\"", "\"k3y-9f8e7d\"", StatusCode::OK),
        ("\"\"", "\"\"", StatusCode::FORBIDDEN),
        ("\"k3y-9f8e7d\"", "k3y-9f8e7e", StatusCode::FORBIDDEN),
    ] {
        let cookie = format!("access_token={token}; csrf={csrf}");
        let status = csrf_post(&c, &url, &cookie, &[("x-csrf-token", header)]).await;
        assert_eq!(status, expected, "csrf={csrf}, header {header}");
    }
    assert_eq!(h.count(), 2);
}

// ---------------------------------------------------------------------------------------------
// AccessTokenCookie
// ---------------------------------------------------------------------------------------------

#[test]
fn insecure_cookie_only_on_loopback() {
    let issued = issue("alice");
    for ip in ["127.0.0.1", "127.8.9.10", "::1"] {
        let ip: IpAddr = ip.parse().unwrap();
        let cookie = AccessTokenCookie::new("access_token", &issued)
            .insecure_on_loopback(ip)
            .unwrap();
        let text = cookie.to_header_value().to_str().unwrap().to_owned();
        assert!(!text.contains("Secure"), "{text}");
    }
    for ip in ["203.0.113.7", "0.0.0.0", "::", "10.0.0.1", "2001:db8::1"] {
        let ip: IpAddr = ip.parse().unwrap();
        let err = AccessTokenCookie::new("access_token", &issued)
            .insecure_on_loopback(ip)
            .unwrap_err();
        assert!(matches!(err, BuildError::InvalidSetting(_)), "{ip}: {err}");
    }
    let secure = AccessTokenCookie::new("access_token", &issued).to_header_value();
    assert_eq!(
        secure.to_str().unwrap(),
        format!(
            "access_token={}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=900",
            issued.token
        )
    );
}

/// A login that sets the cookie, a browser-like client with a cookie jar, a protected route
/// that reads it, and a logout that removes it.
#[tokio::test]
async fn login_cookie_round_trip_over_http() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bound = addr.ip();
    let h = Hits::default();
    let layer = hs256_builder::<TestClaims>()
        .token_type("at+jwt")
        .token_from_cookie("access_token")
        .build()
        .unwrap();
    let protected = Router::new()
        .route("/me", subject::<TestClaims>(&h))
        .layer(layer);
    let app = protected
        .route(
            "/login",
            post(move || async move {
                let issued = issue("alice");
                let cookie = AccessTokenCookie::new("access_token", &issued)
                    .insecure_on_loopback(bound)
                    .unwrap();
                let mut res = Response::new(axum::body::Body::empty());
                res.headers_mut()
                    .insert(SET_COOKIE, cookie.to_header_value());
                res
            }),
        )
        .route(
            "/logout",
            post(move || async move {
                let cookie = AccessTokenCookie::removal("access_token")
                    .insecure_on_loopback(bound)
                    .unwrap();
                [(SET_COOKIE, cookie.to_header_value())]
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let base = format!("http://{addr}");
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    assert_eq!(
        browser
            .get(format!("{base}/me"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let res = browser.post(format!("{base}/login")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let set_cookie = res.headers()[SET_COOKIE.as_str()]
        .to_str()
        .unwrap()
        .to_owned();
    let (pair, attributes) = set_cookie.split_once("; ").unwrap();
    let token = pair.strip_prefix("access_token=").unwrap();
    assert_eq!(token.split('.').count(), 3);
    assert_eq!(attributes, "HttpOnly; SameSite=Strict; Path=/; Max-Age=900");

    // The jar sends the cookie back; the layer reads it.
    let res = browser.get(format!("{base}/me")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "alice");
    assert_eq!(h.count(), 1);

    // The removal cookie expires it.
    let res = browser.post(format!("{base}/logout")).send().await.unwrap();
    assert_eq!(
        res.headers()[SET_COOKIE.as_str()],
        "access_token=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
    );
    let res = browser.get(format!("{base}/me")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(h.count(), 1);
}
