//! Audit 16: the layer's responder goes into the request extensions only when it answers
//! otherwise than `Rfc6750::default()` (`Pipeline::share_responder`), and handlers use a lent
//! responder only when it is the one of the layer whose claims or anonymous mark they read;
//! `Pipeline` is aligned to 128 bytes. Claimed: behind a default layer, handlers (`Claims`
//! extractor, `RequireClaims`) answer exactly as the layer (HTTP and gRPC); otherwise with the
//! layer's responder; with layers stacked, with the responder of the layer for the handler's
//! claims type. Every test runs real servers on 127.0.0.1 with
//! real clients (reqwest, tonic).
//!
//! `regression_*` tests failed on the audited snapshot and pass since their fix; `holds_*`
//! tests are attacks the code resisted.

use crate::common;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use common::grpc::grpc_server;
use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;
use tower::ServiceBuilder;
use tower_jwt_auth::authorize::RequireClaimsLayer;
use tower_jwt_auth::dpop::Dpop;
use tower_jwt_auth::resource_metadata::ResourceMetadata;
use tower_jwt_auth::{Claims, ErrorResponder, JwtAuthBuilder, JwtAuthLayer, ProblemJson};

/// What a client sees of a refusal: status, every `WWW-Authenticate` value (joined by ` | `),
/// `content-type`, `grpc-status`, `grpc-message`, `dpop-nonce` presence, body.
type Seen = (StatusCode, [Option<String>; 5], String);

/// `GET url` with `token` (if any) as bearer token, as an HTTP or a gRPC caller.
async fn answer(url: &str, token: Option<&str>, grpc: bool) -> Seen {
    let mut request = client().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if grpc {
        request = request.header("content-type", "application/grpc");
    }
    let res = request.send().await.unwrap();
    let all = |name: &str| {
        let values: Vec<&str> = res
            .headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        (!values.is_empty()).then(|| values.join(" | "))
    };
    let headers = [
        all("www-authenticate"),
        all("content-type"),
        all("grpc-status"),
        all("grpc-message"),
        all("dpop-nonce").map(|_| "present".to_owned()),
    ];
    (res.status(), headers, res.text().await.unwrap())
}

fn token_with_roles(sub: &str, roles: &[&str]) -> String {
    hs256_token(json!({ "sub": sub, "roles": roles }))
}

/// `/me` served by the layer alone (what the layer answers a request without a token), and,
/// behind the same configuration in optional mode, `/extractor` (the `Claims` extractor) and
/// `/admin` (`RequireClaims` for role `admin`): the base URLs of the two servers and the hits.
async fn strict_and_optional<R>(
    make: impl Fn(bool) -> JwtAuthLayer<TestClaims, R>,
) -> (String, String, Hits)
where
    R: ErrorResponder<Body> + Send + Sync + 'static,
{
    let h = Hits::default();
    let strict = Router::new()
        .route("/me", subject::<TestClaims>(&h))
        .layer(make(false));
    let optional = Router::new()
        .route(
            "/extractor",
            get(|claims: Claims<TestClaims>| async move { claims.sub.clone() }),
        )
        .route(
            "/admin",
            subject::<TestClaims>(&h)
                .route_layer(RequireClaimsLayer::<TestClaims>::any_role(["admin"])),
        )
        .layer(make(true));
    let strict = format!("http://{}", serve(strict).await);
    let optional = format!("http://{}", serve(optional).await);
    (strict, optional, h)
}

/// For HTTP and gRPC callers: the handlers behind the optional layer answer an anonymous
/// request exactly as the strict layer answers a request without a token.
async fn assert_handlers_answer_as_layer<R>(
    what: &str,
    make: impl Fn(bool) -> JwtAuthLayer<TestClaims, R>,
) -> Vec<Seen>
where
    R: ErrorResponder<Body> + Send + Sync + 'static,
{
    let (strict, optional, h) = strict_and_optional(make).await;
    let mut layers = Vec::new();
    for grpc in [false, true] {
        let layer = answer(&format!("{strict}/me"), None, grpc).await;
        if grpc {
            assert_eq!(layer.0, StatusCode::OK, "{what}: {layer:?}");
            assert_eq!(layer.1[2].as_deref(), Some("16"), "{what}: {layer:?}");
        } else {
            assert_eq!(layer.0, StatusCode::UNAUTHORIZED, "{what}: {layer:?}");
        }
        for path in ["/extractor", "/admin"] {
            let handler = answer(&format!("{optional}{path}"), None, grpc).await;
            assert_eq!(handler, layer, "{what}: {path}, gRPC {grpc}");
        }
        layers.push(layer);
    }
    assert_eq!(h.count(), 0, "{what}");
    layers
}

const BASE: &str = "https://api.example.com";

fn with_optional<C, R>(b: JwtAuthBuilder<C, R>, optional: bool) -> JwtAuthBuilder<C, R> {
    if optional { b.optional() } else { b }
}

/// Attack: find a builder path that leaves `default_responder` true (so the layer shares no
/// responder) while its answers differ from `Rfc6750::default()`: DPoP allowed/required, with
/// and without nonces, resource metadata, certificate-bound tokens, bound tokens as bearer,
/// provider presets, tenants, `.realm("api")`, a realm then a responder, a responder then DPoP.
/// Expected: for each, the `Claims` extractor and `RequireClaims` behind the optional layer
/// answer an anonymous request exactly as the layer answers a request without a token
/// (status, every `WWW-Authenticate` challenge with its `algs`/`resource_metadata`, content
/// type, gRPC status and message, body), for HTTP and gRPC callers.
#[tokio::test]
async fn holds_every_builder_path_handlers_answer_as_the_layer() {
    use tower_jwt_auth::Tenant;
    use tower_jwt_auth::providers::Provider;

    let rfc = |what: &'static str,
               f: fn(JwtAuthBuilder<TestClaims>) -> JwtAuthBuilder<TestClaims>| {
        (what, f)
    };
    let cases = [
        rfc("default", |b| b),
        rfc("realm api", |b| b.realm("api")),
        rfc("realm other", |b| b.realm("other \"quoted\"")),
        rfc("dpop allowed", |b| b.dpop(Dpop::allowed(BASE))),
        rfc("dpop required", |b| b.dpop(Dpop::required(BASE))),
        rfc("dpop nonce", |b| {
            b.dpop(Dpop::allowed(BASE).nonce([7u8; 32]))
        }),
        rfc("dpop required nonce", |b| {
            b.dpop(Dpop::required(BASE).nonce([7u8; 32]))
        }),
        rfc("resource metadata", |b| {
            b.resource_metadata(ResourceMetadata::new(BASE))
        }),
        rfc("metadata and dpop", |b| {
            b.resource_metadata(ResourceMetadata::new(BASE))
                .dpop(Dpop::allowed(BASE))
        }),
        rfc("certificate bound", |b| b.certificate_bound_tokens()),
        rfc("bound as bearer", |b| b.accept_bound_tokens_as_bearer()),
        rfc("realm then dpop", |b| {
            b.realm("x").dpop(Dpop::required(BASE))
        }),
        rfc("public path", |b| b.public_path("/open")),
        rfc("cors preflight", |b| b.pass_cors_preflight()),
        rfc("cookie source", |b| b.token_from_cookie("at")),
    ];
    for (what, f) in cases {
        let seen = assert_handlers_answer_as_layer(what, |optional| {
            with_optional(f(hs256_builder::<TestClaims>()), optional)
                .build()
                .unwrap()
        })
        .await;
        // Spot checks that the case really changes the answer where it should.
        let challenge = seen[0].1[0].clone().unwrap_or_default();
        match what {
            "dpop allowed" | "dpop nonce" => assert!(
                challenge.contains(" | DPoP realm=\"api\", algs=")
                    && challenge.starts_with("Bearer realm=\"api\""),
                "{what}: {challenge}"
            ),
            "dpop required" | "dpop required nonce" => {
                assert!(
                    challenge.starts_with("DPoP realm=\"api\""),
                    "{what}: {challenge}"
                )
            }
            "resource metadata" | "metadata and dpop" => {
                assert!(
                    challenge.contains("resource_metadata="),
                    "{what}: {challenge}"
                )
            }
            "realm other" => assert!(challenge.contains("other \\\"quoted\\\""), "{challenge}"),
            "realm then dpop" => assert!(challenge.starts_with("DPoP realm=\"x\""), "{challenge}"),
            _ => assert_eq!(challenge, "Bearer realm=\"api\"", "{what}"),
        }
    }
    // Tenants and a provider preset (no keys of the layer's own).
    let tenants = |optional| {
        with_optional(
            JwtAuthLayer::<TestClaims>::builder()
                .audience(AUDIENCE)
                .tenant(Tenant::new(ISSUER).key(tower_jwt_auth::Key::hmac(
                    tower_jwt_auth::Algorithm::HS256,
                    SECRET,
                )))
                .tenant(
                    Tenant::new("https://other.test").key(tower_jwt_auth::Key::hmac(
                        tower_jwt_auth::Algorithm::HS256,
                        b"another secret that is long enough for HS256",
                    )),
                ),
            optional,
        )
        .build()
        .unwrap()
    };
    assert_handlers_answer_as_layer("tenants", tenants).await;
    let preset = |optional| {
        let b = Provider::keycloak("https://sso.example.com", "acme")
            .audience(AUDIENCE)
            .configure(JwtAuthLayer::<TestClaims>::builder().hs256(SECRET));
        with_optional(b, optional).build().unwrap()
    };
    assert_handlers_answer_as_layer("keycloak preset", preset).await;
    // Custom responders: ProblemJson with and without DPoP, a responder set before a realm-less
    // DPoP, RFC 6750 given as a responder.
    assert_handlers_answer_as_layer("problem json", |optional| {
        with_optional(hs256_builder::<TestClaims>(), optional)
            .responder(ProblemJson::with_realm("p"))
            .build()
            .unwrap()
    })
    .await;
    let seen = assert_handlers_answer_as_layer("problem json + dpop", |optional| {
        with_optional(hs256_builder::<TestClaims>(), optional)
            .responder(ProblemJson::default())
            .dpop(Dpop::allowed(BASE).nonce([1u8; 32]))
            .resource_metadata(ResourceMetadata::new(BASE))
            .build()
            .unwrap()
    })
    .await;
    assert_eq!(seen[0].1[1].as_deref(), Some("application/problem+json"));
    assert_handlers_answer_as_layer("rfc6750 as responder", |optional| {
        with_optional(hs256_builder::<TestClaims>(), optional)
            .responder(tower_jwt_auth::Rfc6750::default())
            .build()
            .unwrap()
    })
    .await;
}

/// Attack: a 403 from `RequireClaims` behind a layer that shares no responder (default) and
/// behind layers that must share theirs (DPoP, resource metadata, realm), for HTTP and gRPC
/// callers. Expected: the default layer's 403 is `Rfc6750::default()`'s (realm `api`, no
/// body; gRPC 7); the others carry the layer's realm, `algs` and `resource_metadata` (gRPC 7).
#[tokio::test]
async fn holds_require_claims_403_keeps_the_layers_challenge_parameters() {
    let user = token_with_roles("bob", &["user"]);
    let scope = "Bearer realm=\"api\", error=\"insufficient_scope\", \
                 error_description=\"insufficient scope\", scope=\"admin\"";
    type Case = (&'static str, fn() -> JwtAuthLayer<TestClaims>, String);
    let cases: [Case; 4] = [
        ("default", || hs256_layer(), scope.to_owned()),
        (
            "realm",
            || hs256_builder().realm("r").build().unwrap(),
            scope.replace("realm=\"api\"", "realm=\"r\""),
        ),
        (
            "metadata",
            || {
                hs256_builder()
                    .resource_metadata(ResourceMetadata::new(BASE))
                    .build()
                    .unwrap()
            },
            format!("{scope}, resource_metadata=\"{BASE}/.well-known/oauth-protected-resource\""),
        ),
        (
            "dpop",
            || hs256_builder().dpop(Dpop::allowed(BASE)).build().unwrap(),
            format!("{scope} | DPoP realm=\"api\", algs="),
        ),
    ];
    for (what, make, expected) in cases {
        let (_, optional, h) = strict_and_optional(|_| make()).await;
        let url = format!("{optional}/admin");
        let (status, headers, body) = answer(&url, Some(&user), false).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{what}");
        let challenge = headers[0].clone().unwrap();
        assert!(challenge.starts_with(&expected), "{what}: {challenge}");
        assert_eq!(headers[1], None, "{what}");
        assert_eq!(body, "", "{what}");
        let (status, headers, body) = answer(&url, Some(&user), true).await;
        assert_eq!(status, StatusCode::OK, "{what}");
        assert_eq!(headers[2].as_deref(), Some("7"), "{what}");
        assert_eq!(headers[0], None, "{what}");
        assert_eq!(body, "", "{what}");
        let admin = token_with_roles("alice", &["admin"]);
        assert_eq!(answer(&url, Some(&admin), false).await.0, StatusCode::OK);
        assert_eq!(h.take(), 1, "{what}");
    }
}

/// Attack: stack two layers (different claims types, both optional, or the inner one with a
/// public path) and look for one layer's responder leaking to the handlers of the other's
/// claims type, or lost behind it, for both orders. Expected: each handler answers as the
/// layer for its claims type does; a `ProblemJson` outer layer's document never reaches a
/// client of the default inner layer's handlers, and a default layer, outer or inner, does not
/// strip the other `ProblemJson` layer's.
#[tokio::test]
async fn holds_stacked_layers_answer_as_the_layer_for_the_handlers_claims_type() {
    let h = Hits::default();
    let routes = || {
        Router::new()
            .route(
                "/extractor",
                get(|claims: Claims<TestClaims>| async move { claims.sub.clone() }),
            )
            .route(
                "/outer-extractor",
                get(|claims: Claims<Value>| async move { claims["sub"].to_string() }),
            )
            .route(
                "/admin",
                subject::<TestClaims>(&h)
                    .route_layer(RequireClaimsLayer::<TestClaims>::any_role(["admin"])),
            )
    };
    let problem_outer = hs256_builder::<Value>()
        .optional()
        .responder(ProblemJson::with_realm("outer"))
        .build()
        .unwrap();
    // Default inner layer behind a ProblemJson one: RFC 6750, realm api.
    let app = routes()
        .layer(hs256_builder::<TestClaims>().optional().build().unwrap())
        .layer(problem_outer.clone());
    let base = format!("http://{}", serve(app).await);
    // Default inner layer with a public path (not optional) behind a ProblemJson one.
    let public = routes()
        .layer(
            hs256_builder::<TestClaims>()
                .public_path("/extractor")
                .public_path("/admin")
                .public_path("/outer-extractor")
                .build()
                .unwrap(),
        )
        .layer(problem_outer);
    let public = format!("http://{}", serve(public).await);
    for base in [&base, &public] {
        for path in ["/extractor", "/admin", "/outer-extractor"] {
            for grpc in [false, true] {
                let seen = answer(&format!("{base}{path}"), None, grpc).await;
                if grpc {
                    assert_eq!(seen.0, StatusCode::OK);
                    assert_eq!(seen.1[2].as_deref(), Some("16"), "{path}");
                    assert_eq!(seen.1[1].as_deref(), Some("application/grpc"), "{path}");
                } else if path == "/outer-extractor" {
                    // `Claims<Value>`: the outer layer's document.
                    assert_eq!(seen.0, StatusCode::UNAUTHORIZED, "{base}{path}");
                    assert_eq!(seen.1[0].as_deref(), Some("Bearer realm=\"outer\""));
                    assert_eq!(seen.1[1].as_deref(), Some("application/problem+json"));
                    let doc: Value = serde_json::from_str(&seen.2).unwrap();
                    assert_eq!(doc["status"], 401);
                } else {
                    assert_eq!(seen.0, StatusCode::UNAUTHORIZED, "{base}{path}");
                    assert_eq!(seen.1[0].as_deref(), Some("Bearer realm=\"api\""), "{path}");
                    assert_eq!(seen.1[1], None, "{base}{path}: {seen:?}");
                    assert_eq!(seen.2, "", "{path}");
                }
            }
        }
    }
    // ProblemJson inner layer behind a default one: its document.
    let app = routes()
        .layer(
            hs256_builder::<TestClaims>()
                .optional()
                .responder(ProblemJson::with_realm("inner"))
                .build()
                .unwrap(),
        )
        .layer(hs256_builder::<Value>().optional().build().unwrap());
    let base = format!("http://{}", serve(app).await);
    // `Claims<Value>`: the default outer layer's answer.
    let seen = answer(&format!("{base}/outer-extractor"), None, false).await;
    assert_eq!(seen.0, StatusCode::UNAUTHORIZED);
    assert_eq!(seen.1[0].as_deref(), Some("Bearer realm=\"api\""));
    assert_eq!((&seen.1[1], seen.2.as_str()), (&None, ""));
    for path in ["/extractor", "/admin"] {
        let seen = answer(&format!("{base}{path}"), None, false).await;
        assert_eq!(seen.0, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(
            seen.1[0].as_deref(),
            Some("Bearer realm=\"inner\""),
            "{path}"
        );
        assert_eq!(seen.1[1].as_deref(), Some("application/problem+json"));
        let doc: Value = serde_json::from_str(&seen.2).unwrap();
        assert_eq!(doc["status"], 401);
    }
    assert_eq!(h.count(), 0);
}

/// Attack: fail-open through the missing responder: behind a default layer (which leaves no
/// `LayerResponder`), anonymous callers, callers with the wrong role, a token for another
/// claims type (the outer layer's, inner layer optional and reading another header), and a
/// route with no layer for its claims type at all. Expected: no request reaches a guarded
/// handler; 401/403, 500 for the wiring mistake, never a pass or a panic.
#[tokio::test]
async fn holds_no_request_passes_for_want_of_a_responder() {
    let h = Hits::default();
    let guarded = |h: &Hits| {
        subject::<TestClaims>(h).route_layer(RequireClaimsLayer::<TestClaims>::any_role(["admin"]))
    };
    let app = Router::new()
        .route("/admin", guarded(&h))
        .route(
            "/extractor",
            get({
                let h = h.clone();
                move |claims: Claims<TestClaims>| async move {
                    h.hit();
                    claims.sub.clone()
                }
            }),
        )
        .layer(
            hs256_builder::<TestClaims>()
                .optional()
                .token_sources([tower_jwt_auth::TokenSource::header("x-inner")])
                .build()
                .unwrap(),
        )
        .layer(hs256_builder::<Value>().build().unwrap());
    let base = format!("http://{}", serve(app).await);
    let admin = token_with_roles("alice", &["admin"]);
    // The outer layer's valid token (an admin's) is no TestClaims token to the inner layer.
    for path in ["/admin", "/extractor"] {
        let seen = answer(&format!("{base}{path}"), Some(&admin), false).await;
        assert_eq!(seen.0, StatusCode::UNAUTHORIZED, "{path}: {seen:?}");
    }
    let user = token_with_roles("bob", &["user"]);
    let res = client()
        .get(format!("{base}/admin"))
        .bearer_auth(&admin)
        .header("x-inner", &user)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(h.count(), 0);
    // No layer for the claims type at all.
    let bare = Router::new().route("/admin", guarded(&h)).route(
        "/extractor",
        get(|claims: Claims<TestClaims>| async move { claims.sub.clone() }),
    );
    let bare = format!("http://{}", serve(bare).await);
    for path in ["/admin", "/extractor"] {
        for grpc in [false, true] {
            let seen = answer(&format!("{bare}{path}"), Some(&admin), grpc).await;
            assert!(
                seen.0 == StatusCode::INTERNAL_SERVER_ERROR || seen.1[2].as_deref() == Some("13"),
                "{path} gRPC {grpc}: {seen:?}"
            );
        }
    }
    assert_eq!(h.count(), 0);
}

/// Serves the health service on a fresh port behind `stack`; a connected channel.
/// One health check, with `token` as a Bearer token if any.
async fn health_check(channel: Channel, token: Option<&str>) -> Result<(), tonic::Status> {
    let metadata: Vec<(&'static str, String)> = token
        .map(|t| ("authorization", format!("Bearer {t}")))
        .into_iter()
        .collect();
    grpc::health_check(channel, &metadata).await
}

/// Attack: a tonic server with one default layer (optional, and with a public path) and
/// `RequireClaims` behind it, called by a real tonic client: without the layer's responder in
/// the extensions, does `RequireClaims` answer gRPC callers with HTTP 401/403 (which tonic
/// reports as `Unknown`/`Internal`)? Expected: `Unauthenticated` for no token,
/// `PermissionDenied` for the wrong role, OK for an admin; the same behind a layer with a
/// realm (which shares its responder).
#[tokio::test]
async fn holds_tonic_require_claims_behind_a_default_layer() {
    for realm in [None, Some("grpc")] {
        let mut b = hs256_builder::<TestClaims>().optional();
        if let Some(r) = realm {
            b = b.realm(r);
        }
        let stack = ServiceBuilder::new()
            .layer(b.build().unwrap())
            .layer(RequireClaimsLayer::<TestClaims>::any_role(["admin"]))
            .into_inner();
        let channel = grpc_server(stack).await;
        let status = health_check(channel.clone(), None).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{realm:?} {status:?}");
        let user = token_with_roles("bob", &["user"]);
        let status = health_check(channel.clone(), Some(&user))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "{realm:?} {status:?}"
        );
        let admin = token_with_roles("alice", &["admin"]);
        health_check(channel, Some(&admin)).await.unwrap();
    }
}

/// The anonymous mark is typed by claims type, like the claims: a layer for claims type B that
/// verifies a token keeps the mark an optional layer for claims type A (reading another token
/// source) put there, so the handler's `Option<Claims<A>>` is `None` and `Claims<B>` holds the
/// token's claims; the request is not taken for one no layer for A looked at (500).
#[tokio::test]
async fn regression_a_layer_for_another_claims_type_keeps_the_anonymous_mark() {
    let app = Router::new()
        .route(
            "/",
            get(
                |outer: Option<Claims<Value>>, inner: Claims<TestClaims>| async move {
                    format!("{} {}", outer.is_some(), inner.sub)
                },
            ),
        )
        .layer(hs256_layer::<TestClaims>())
        .layer(
            hs256_builder::<Value>()
                .optional()
                .token_sources([tower_jwt_auth::TokenSource::header("x-outer")])
                .build()
                .unwrap(),
        );
    let base = format!("http://{}/", serve(app).await);
    let token = token_with_roles("alice", &[]);
    let (status, _, body) = answer(&base, Some(&token), false).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "false alice"),
        "the outer layer let the request through anonymously"
    );
}

/// Attack: an earlier middleware (standing in for a client-controlled or buggy one) inserts
/// `Claims<TestClaims>` of its own into the request before a default optional layer. Expected:
/// the layer strips it, and the `Claims` extractor and `RequireClaims` behind it answer the
/// anonymous request 401 as the layer would; the handlers never run.
#[tokio::test]
async fn holds_forged_claims_from_an_earlier_middleware_are_stripped() {
    async fn forge(
        mut req: axum::extract::Request,
        next: axum::middleware::Next,
    ) -> axum::response::Response {
        req.extensions_mut().insert(Claims::new(TestClaims {
            sub: "mallory".into(),
            roles: vec!["admin".into()],
        }));
        next.run(req).await
    }
    let h = Hits::default();
    let app = Router::new()
        .route(
            "/extractor",
            get({
                let h = h.clone();
                move |claims: Claims<TestClaims>| async move {
                    h.hit();
                    claims.sub.clone()
                }
            }),
        )
        .route(
            "/admin",
            subject::<TestClaims>(&h)
                .route_layer(RequireClaimsLayer::<TestClaims>::any_role(["admin"])),
        )
        .layer(hs256_builder::<TestClaims>().optional().build().unwrap())
        .layer(axum::middleware::from_fn(forge));
    let base = format!("http://{}", serve(app).await);
    for path in ["/extractor", "/admin"] {
        for grpc in [false, true] {
            let seen = answer(&format!("{base}{path}"), None, grpc).await;
            if grpc {
                assert_eq!(seen.1[2].as_deref(), Some("16"), "{path}");
            } else {
                assert_eq!(seen.0, StatusCode::UNAUTHORIZED, "{path}");
                assert_eq!(seen.1[0].as_deref(), Some("Bearer realm=\"api\""));
            }
        }
    }
    assert_eq!(h.count(), 0);
}

/// Attack on "gRPC callers get status 16 from the handlers, as from the layer": a real tonic
/// client (HTTP/2, h2c) calls an axum route whose handler takes the `Claims` extractor, behind
/// an optional layer that shares no responder (default), one with a realm, and one with
/// `ProblemJson` (which share theirs). An HTTP 401 would reach the tonic client as
/// `Unknown`/`Unauthenticated`-by-HTTP-mapping without `grpc-status`. Expected: a
/// trailers-only `Unauthenticated` with the layer's message "no bearer token", for all three.
#[tokio::test]
async fn holds_tonic_client_to_claims_extractor_behind_optional_layers() {
    let layers: [(&str, Router); 3] = {
        let route = || {
            Router::new().route(
                "/grpc.health.v1.Health/Check",
                axum::routing::post(|claims: Claims<TestClaims>| async move { claims.sub.clone() }),
            )
        };
        [
            (
                "default",
                route().layer(hs256_builder::<TestClaims>().optional().build().unwrap()),
            ),
            (
                "realm",
                route().layer(
                    hs256_builder::<TestClaims>()
                        .optional()
                        .realm("r")
                        .build()
                        .unwrap(),
                ),
            ),
            (
                "problem json",
                route().layer(
                    hs256_builder::<TestClaims>()
                        .optional()
                        .responder(ProblemJson::default())
                        .build()
                        .unwrap(),
                ),
            ),
        ]
    };
    for (what, app) in layers {
        let addr = serve(app).await;
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let status = health_check(channel, None).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
        assert_eq!(status.message(), "no bearer token", "{what}: {status:?}");
    }
}
