//! Outside audit 11: proof-of-concept tests against the request-path features added since the
//! last audit: public paths, `validate` hooks, provider checks, the quick_cache-based
//! verified-token cache, the responder marker and metrics.
//!
//! `regression_*` tests reproduce the five issues the audit found (each failed before its fix);
//! `holds_*` tests document properties the auditor attacked and found to hold.
//!
//! Run: `cargo test --all-features --test it audit11::`

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::get;
use http::{Method, Request, StatusCode, Uri, header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_jwt_auth::authorize::{RequireClaimsLayer, Requirement};
use tower_jwt_auth::providers::Provider;
use tower_jwt_auth::{Algorithm, AuthError, Claims, Clock, JwtAuthLayer, Key, ProblemJson, Tenant};

use crate::common::oneshot::NO_CLAIMS;
use crate::common::*;

// ---------------------------------------------------------------------------------------------
// Helpers

/// An HS256 token with the test header and exactly these claims.
fn hs(claims: &Value) -> String {
    sign_raw(
        &json!({ "alg": "HS256", "typ": "JWT" }),
        claims,
        Algorithm::HS256,
        &hs256_key(),
    )
}

/// An HS256 token whose claims set is this raw JSON text (escapes, duplicates and all).
fn hs_text(claims: &str) -> String {
    sign_text(
        r#"{"alg":"HS256","typ":"JWT"}"#,
        claims,
        Algorithm::HS256,
        &hs256_key(),
    )
}

/// `method target` with an optional bearer token, for the in-process `send`.
fn request(method: Method, uri: Uri, token: Option<&str>) -> Request<String> {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    req.body(String::new()).unwrap()
}

/// One raw HTTP/1.1 exchange (the request text exactly as given): status and whole response.
async fn raw(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

const T0: u64 = 1_900_000_000;

fn at(micros: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(micros)
}

fn secs(s: u64) -> u64 {
    s * 1_000_000
}

// =============================================================================================
// 1. Public paths
// =============================================================================================

/// Request targets in every form a client can send (absolute-form, `*`, percent-encoding in
/// all its variants, dot segments, empty segments, `;` parameters, encoded unicode, query and
/// fragment, trailing-slash twins, look-alike prefixes, very long paths) are public exactly
/// when their raw path is a plain path under a pattern, and a public pass never hands claims
/// on, whatever token comes with it.
#[tokio::test]
async fn holds_public_path_matching_over_every_request_target_form() {
    let layer = hs256_builder::<TestClaims>()
        .public_path("/health")
        .public_path("/public/*")
        .build()
        .unwrap();
    let good = hs256_token(json!({}));
    let forged = tamper_signature(&good);
    let expired = hs256_token(json!({ "exp": now() - 3600 }));

    let long_plain = format!("/public/{}", "a".repeat(60_000));
    let long_dotted = format!("/public/{}..", "a/".repeat(20_000));
    let public = [
        "/health",
        "/health?x=1",
        "/health?/../admin",
        "http://other.example/health",
        "https://other.example:8443/health?q",
        "/public/x",
        "/public/a/b.css",
        "/public/a.b/c~d",
        "/public/x?../../admin",
        "/public/x@y/z:w",
        long_plain.as_str(),
    ];
    for target in public {
        let uri: Uri = target.parse().unwrap();
        for token in [
            None,
            Some(good.as_str()),
            Some(forged.as_str()),
            Some(expired.as_str()),
        ] {
            let out = send(&layer, request(Method::GET, uri.clone(), token)).await;
            assert_eq!(out.status, StatusCode::OK, "{target}");
            assert_eq!(
                out.body, NO_CLAIMS,
                "{target}: claims handed on by a public pass"
            );
        }
    }

    let authenticated = [
        "http://other.example/public/../admin",
        "http://other.example/public/%2e%2e/admin",
        "/public/../admin",
        "/public/./admin",
        "/public/.",
        "/public/..",
        "/public/%2e%2e/admin",
        "/public/%2E%2E/admin",
        "/public/%2e%2E/admin",
        "/public/.%2e/admin",
        "/public/%252e%252e/admin",
        "/public/..%2fadmin",
        "/public/..%2Fadmin",
        "/public/x%2F..%2F..%2Fadmin",
        "/public/x%00",
        "/public/caf%C3%A9",
        "/public//admin",
        "/public/x/",
        "/public/x//",
        "/public/",
        "/public",
        "/publicity",
        "/publicx/y",
        "/Public/x",
        "/public;a/x",
        "/public/x;/../admin",
        "/health/",
        "/health//",
        "//health",
        "/./health",
        "/health/.",
        "/health;x",
        "/health%3B",
        "/%68ealth",
        "/HEALTH",
        "*",
        long_dotted.as_str(),
    ];
    for target in authenticated {
        // A target the http crate cannot even parse never reaches a service.
        let Ok(uri) = target.parse::<Uri>() else {
            continue;
        };
        for method in [Method::GET, Method::OPTIONS, Method::POST] {
            let out = send(&layer, request(method.clone(), uri.clone(), None)).await;
            assert_eq!(out.status, StatusCode::UNAUTHORIZED, "{method} {target}");
            assert_eq!(out.hits, 0, "{method} {target} reached the inner service");
        }
        // With a valid token it is an ordinary authenticated request: the claims go on.
        let out = send(&layer, request(Method::GET, uri.clone(), Some(&good))).await;
        assert_eq!(out.body, "alice", "{target}");
    }
}

/// Over the wire, with axum's router behind the layer: absolute-form targets, `OPTIONS *`,
/// fragments, backslashes, percent-encoded dot segments and `Host` games never reach the
/// protected handler without a token; public routes still answer anonymously.
#[tokio::test]
async fn holds_public_paths_over_the_wire_never_reach_a_protected_handler() {
    let public_hits = Hits::default();
    let admin_hits = Hits::default();
    let layer = hs256_builder::<TestClaims>()
        .public_path("/health")
        .public_path("/public/*")
        .build()
        .unwrap();
    let app = Router::new()
        .route("/health", subject::<TestClaims>(&public_hits))
        .route("/public/{*rest}", subject::<TestClaims>(&public_hits))
        .route("/admin", subject::<TestClaims>(&admin_hits))
        .route("/{*rest}", subject::<TestClaims>(&admin_hits))
        .layer(layer);
    let addr = serve(app).await;
    let req =
        |line: &str, host: &str| format!("{line}\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    for (line, host) in [
        ("GET http://test/public/../admin HTTP/1.1", "test"),
        ("GET http://test/public/%2e%2e/admin HTTP/1.1", "test"),
        ("GET http://test/admin HTTP/1.1", "test"),
        ("GET http://test//admin HTTP/1.1", "test"),
        ("GET /public/x#/../../admin HTTP/1.1", "test"),
        ("GET /public\\..\\admin HTTP/1.1", "test"),
        ("GET /public/..\\admin HTTP/1.1", "test"),
        ("GET /public/%2e%2e/admin HTTP/1.1", "test"),
        ("GET /public/%2E%2E%2Fadmin HTTP/1.1", "test"),
        ("GET /public/%252e%252e/admin HTTP/1.1", "test"),
        ("GET /public/x;/../../admin HTTP/1.1", "test"),
        ("OPTIONS * HTTP/1.1", "test"),
        ("GET * HTTP/1.1", "test"),
        ("CONNECT test:80 HTTP/1.1", "test:80"),
        ("GET admin HTTP/1.1", "test"),
        ("GET /admin HTTP/1.1", "test/health"),
        ("GET /health/ HTTP/1.1", "test"),
        ("GET //health HTTP/1.1", "test"),
    ] {
        let (status, text) = raw(addr, &req(line, host)).await;
        // The fragment is dropped by the http crate before anyone sees the path: the request
        // is `/public/x` to the layer and to the router alike (a public, anonymous answer).
        if line.contains('#') {
            assert!(
                status != 200 || text.ends_with("anonymous"),
                "{line}: {text}"
            );
        } else {
            assert_ne!(status, 200, "{line}: {text}");
        }
        assert_eq!(
            admin_hits.count(),
            0,
            "{line} reached a protected handler: {text}"
        );
    }
    // The public routes answer anonymously, in absolute-form too.
    for line in [
        "GET /health HTTP/1.1",
        "GET http://evil.example/health HTTP/1.1",
        "GET /public/docs?x=/../admin HTTP/1.1",
    ] {
        let (status, text) = raw(addr, &req(line, "test")).await;
        assert_eq!(status, 200, "{line}: {text}");
        assert!(text.ends_with("anonymous"), "{line}: {text}");
    }
    assert_eq!(admin_hits.count(), 0);
    assert!(public_hits.take() >= 3);
}

/// A public path with a valid, forged or expired token: `Claims<C>` answers 401 in the
/// layer's style (the responder marker), `Option<Claims<C>>` is `None`, `RequireClaims`
/// refuses (401, inherited problem document) and never lets the request through.
#[tokio::test]
async fn holds_public_path_hands_nothing_to_extractors_or_require_claims() {
    let layer = hs256_builder::<TestClaims>()
        .public_path("/public/*")
        .responder(ProblemJson::with_realm("audit"))
        .build()
        .unwrap();
    let hits = Hits::default();
    let strict_hits = hits.clone();
    let admin_hits = Hits::default();
    let admin = Requirement::predicate("admin", |c: &TestClaims| {
        c.roles.iter().any(|r| r == "admin")
    });
    let app = Router::new()
        .route("/public/optional", subject::<TestClaims>(&hits))
        .route(
            "/public/strict",
            get(move |claims: Claims<TestClaims>| {
                strict_hits.hit();
                async move { claims.sub.clone() }
            }),
        )
        .route(
            "/public/admin",
            subject::<TestClaims>(&admin_hits).route_layer(RequireClaimsLayer::new(admin)),
        )
        .layer(layer);
    let base = format!("http://{}", serve(app).await);
    let good = hs256_token(json!({}));
    let tokens = [
        good.clone(),
        tamper_signature(&good),
        hs256_token(json!({ "exp": now() - 3600 })),
    ];
    for token in &tokens {
        let reply = fetch(&format!("{base}/public/optional"), Some(token)).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, "anonymous");

        let res = get_with(&format!("{base}/public/strict"), Some(token)).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        assert_eq!(www_authenticate(&res), Some("Bearer realm=\"audit\""));

        let res = get_with(&format!("{base}/public/admin"), Some(token)).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(res.headers()["content-type"], "application/problem+json");
    }
    assert_eq!(hits.count(), 3, "only the Option<Claims> handler ran");
    assert_eq!(admin_hits.count(), 0);
}

// =============================================================================================
// 2. validate hooks
// =============================================================================================

/// The unknown-`kid` path: a token whose key is only found after a refresh of the remote key
/// set is still checked by the hooks, refused 401 `claims not accepted`, and not cached.
#[cfg(all(feature = "remote", feature = "cache"))]
#[tokio::test]
async fn holds_hook_runs_after_an_unknown_kid_refresh_and_refusal_is_not_cached() {
    use crate::common::jwks_server::JwksServer;
    use tower_jwt_auth::cache::CacheConfig;
    use tower_jwt_auth::remote::RemoteJwks;

    let server = JwksServer::start(&[jwk("rsa", "rsa-a")]).await;
    server.cache_control("max-age=600");
    let keys = RemoteJwks::from_jwks_uri(server.jwks_url())
        .allow_http_for_loopback()
        .timeouts(Duration::from_millis(500), Duration::from_secs(2))
        .refresh_limit(10, Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    let layer = JwtAuthLayer::<TestClaims>::builder()
        .remote_jwks(keys)
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .cache(CacheConfig::default())
        .validate(|c: &TestClaims| c.sub != "blocked")
        .build()
        .unwrap();
    let (key_b, alg_b) = private_key("rsa-b");
    let (key_a, alg_a) = private_key("rsa");
    let old = sign_jwt(alg_a, &key_a, Some("rsa-a"), &good_claims());
    assert_accepted(&send_bearer(&layer, &old).await);
    assert_accepted(&send_bearer(&layer, &old).await);

    // The provider starts signing with rsa-b: the first rsa-b token triggers the refresh.
    server.publish(&[jwk("rsa", "rsa-a"), jwk("rsa-b", "rsa-b")]);
    let blocked = sign_jwt(
        alg_b,
        &key_b,
        Some("rsa-b"),
        &claims_with(json!({ "sub": "blocked" })),
    );
    let before = layer.cache_stats().unwrap();
    for _ in 0..2 {
        assert_invalid_token(
            &send_bearer(&layer, &blocked).await,
            &[AuthError::ClaimsRejected],
        );
    }
    let after = layer.cache_stats().unwrap();
    assert_eq!(
        after.hits, before.hits,
        "a refused token was served from the cache"
    );
    let fine = sign_jwt(alg_b, &key_b, Some("rsa-b"), &good_claims());
    assert_accepted(&send_bearer(&layer, &fine).await);

    // The provider withdraws rsa-a: once a refresh shows it, the cached rsa-a token is gone
    // with the generation it was verified under.
    server.publish(&[jwk("rsa-b", "rsa-b")]);
    let unknown = sign_jwt(alg_b, &key_b, Some("rsa-c"), &good_claims());
    let _ = send_bearer(&layer, &unknown).await;
    let out = send_bearer(&layer, &old).await;
    assert_ne!(
        out.status,
        StatusCode::OK,
        "a token of a withdrawn key passed from the cache"
    );
    assert_eq!(out.hits, 0);
}

/// On the cache-hit path, a hook whose answer changed refuses with 401 `invalid_token` through
/// every responder: Rfc6750, a problem document, and `grpc-status: 16` for gRPC callers; the
/// entry stays usable once the hook accepts again.
#[cfg(feature = "cache")]
#[tokio::test]
async fn holds_hook_refusal_on_a_cache_hit_through_every_responder() {
    use tower_jwt_auth::cache::CacheConfig;

    let open = Arc::new(AtomicBool::new(true));
    let gate = open.clone();
    let rfc = hs256_builder::<TestClaims>()
        .cache(CacheConfig::default())
        .validate(move |_: &TestClaims| gate.load(Ordering::SeqCst))
        .build()
        .unwrap();
    let gate = open.clone();
    let problem = hs256_builder::<TestClaims>()
        .cache(CacheConfig::default())
        .validate(move |_: &TestClaims| gate.load(Ordering::SeqCst))
        .responder(ProblemJson::with_realm("audit"))
        .build()
        .unwrap();
    let hits = Hits::default();
    let app = |layer_hits: &Hits| {
        Router::new()
            .route("/me", subject::<TestClaims>(layer_hits))
            .route(
                "/grpc",
                axum::routing::post(subject_handler::<TestClaims>(layer_hits)),
            )
    };
    let rfc_base = format!("http://{}", serve(app(&hits).layer(rfc.clone())).await);
    let pj_base = format!("http://{}", serve(app(&hits).layer(problem.clone())).await);
    let token = hs256_token(json!({}));
    for base in [&rfc_base, &pj_base] {
        for _ in 0..2 {
            assert_eq!(fetch(&format!("{base}/me"), Some(&token)).await.status, 200);
        }
    }
    assert_eq!(hits.take(), 4);
    assert_eq!(rfc.cache_stats().unwrap().hits, 1);
    assert_eq!(problem.cache_stats().unwrap().hits, 1);

    open.store(false, Ordering::SeqCst);
    let res = get_with(&format!("{rfc_base}/me"), Some(&token)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        www_authenticate(&res),
        Some(
            "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"claims not accepted\""
        )
    );
    let res = get_with(&format!("{pj_base}/me"), Some(&token)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc["detail"], "claims not accepted");
    for base in [&rfc_base, &pj_base] {
        let res = client()
            .post(format!("{base}/grpc"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["grpc-status"], "16");
    }
    assert_eq!(hits.count(), 0, "a refused request reached a handler");
    // All those refusals were decided on cache hits.
    assert_eq!(rfc.cache_stats().unwrap().hits, 3);
    assert_eq!(problem.cache_stats().unwrap().hits, 3);

    open.store(true, Ordering::SeqCst);
    assert_eq!(
        fetch(&format!("{rfc_base}/me"), Some(&token)).await.status,
        200
    );
}

/// Two tenants behind one layer share one cache: a token cached under tenant B is still put
/// through the hooks on a hit; a token that names B but is signed with A's key, or that names
/// A with B's audience, is refused and never borrows the other tenant's entry.
#[cfg(feature = "cache")]
#[tokio::test]
async fn holds_two_tenants_sharing_one_cache() {
    use tower_jwt_auth::cache::CacheConfig;

    let secret_b: &[u8] = b"the second tenant's secret, 32 bytes or more";
    let blocked = Arc::new(AtomicBool::new(false));
    let gate = blocked.clone();
    let layer = JwtAuthLayer::<TestClaims>::builder()
        .tenant(
            Tenant::new(ISSUER)
                .key(Key::hmac(Algorithm::HS256, SECRET))
                .audience("a-api"),
        )
        .tenant(
            Tenant::new("https://b.test")
                .key(Key::hmac(Algorithm::HS256, secret_b))
                .audience("b-api"),
        )
        .cache(CacheConfig::default())
        .validate(move |c: &TestClaims| !(c.sub == "bob" && gate.load(Ordering::SeqCst)))
        .build()
        .unwrap();
    let key_b = jsonwebtoken::EncodingKey::from_secret(secret_b);
    let header = json!({ "alg": "HS256", "typ": "JWT" });
    let a = hs(&claims_with(json!({ "aud": "a-api" })));
    let b = sign_raw(
        &header,
        &claims_with(json!({ "sub": "bob", "iss": "https://b.test", "aud": "b-api" })),
        Algorithm::HS256,
        &key_b,
    );
    for token in [&a, &a, &b, &b] {
        assert_eq!(send_bearer(&layer, token).await.status, StatusCode::OK);
    }
    let stats = layer.cache_stats().unwrap();
    assert_eq!((stats.entries, stats.hits, stats.misses), (2, 2, 2));

    let b_with_a_key = hs(&claims_with(
        json!({ "iss": "https://b.test", "aud": "b-api" }),
    ));
    assert_invalid_token(
        &send_bearer(&layer, &b_with_a_key).await,
        &[AuthError::InvalidSignature],
    );
    let a_with_b_aud = hs(&claims_with(json!({ "aud": "b-api" })));
    assert_invalid_token(
        &send_bearer(&layer, &a_with_b_aud).await,
        &[AuthError::WrongAudience],
    );
    blocked.store(true, Ordering::SeqCst);
    assert_invalid_token(&send_bearer(&layer, &b).await, &[AuthError::ClaimsRejected]);
    assert_accepted(&send_bearer(&layer, &a).await);
    assert_eq!(layer.cache_stats().unwrap().entries, 2);
}

/// `JwtAuthLayer::verify` runs the provider checks too (not only the application's hooks).
#[test]
fn holds_verify_outside_a_request_runs_the_provider_checks() {
    let layer = Provider::cognito("us-west-2", "us-west-2_X")
        .audience("app-1")
        .configure(JwtAuthLayer::<Value>::builder())
        .hs256(SECRET)
        .build()
        .unwrap();
    let iss = "https://cognito-idp.us-west-2.amazonaws.com/us-west-2_X";
    let base = json!({ "iss": iss, "sub": "u", "exp": now() + 600, "client_id": "app-1" });
    let mut access = base.clone();
    access["token_use"] = json!("access");
    assert!(layer.verify(&hs(&access)).is_ok());
    let mut id = base.clone();
    id["token_use"] = json!("id");
    assert_eq!(layer.verify(&hs(&id)).unwrap_err(), AuthError::WrongType);
}

// =============================================================================================
// 3. Provider checks
// =============================================================================================

const TENANT_A: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const TENANT_B: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";
const ENTRA_APP: &str = "6e74172b-be56-4843-9ff4-e66a39bb12e3";

fn entra_iss(tid: &str) -> String {
    format!("https://login.microsoftonline.com/{tid}/v2.0")
}

/// Entra ID multi-tenant: the `iss`/`tid` rule against JSON tricks. What is compared is the
/// decoded JSON string on both sides (so `\u` escapes of the same text are the same claim),
/// and every disagreement, odd form or odd type is refused; duplicate members (escaped or not)
/// are refused by the strict reader before the preset's second parse could pick one.
#[tokio::test]
async fn holds_entra_multi_tenant_rule_against_json_tricks() {
    let layer = Provider::entra_multi_tenant()
        .audience(ENTRA_APP)
        .allow_tenant(TENANT_A)
        .allow_tenant(TENANT_B)
        .configure(JwtAuthLayer::<TestClaims>::builder())
        .hs256(SECRET)
        .build()
        .unwrap();
    let exp = now() + 600;
    let doc = |iss: &str, tid: &str| {
        format!(r#"{{"sub":"alice","aud":"{ENTRA_APP}","exp":{exp},"iss":{iss},"tid":{tid}}}"#)
    };
    let s = |v: &str| format!("\"{v}\"");
    let a_iss = s(&entra_iss(TENANT_A));
    // Escaped forms of the very same strings: the same claims.
    let escaped_tid = format!("\"\\u0037\\u0032{}\"", &TENANT_A[2..]);
    let escaped_iss = format!("\"https:\\/\\/login.microsoftonline.com\\/{TENANT_A}\\/v2.0\"");
    for (iss, tid) in [
        (a_iss.clone(), s(TENANT_A)),
        (a_iss.clone(), escaped_tid.clone()),
        (escaped_iss.clone(), s(TENANT_A)),
        (s(&entra_iss(TENANT_B)), s(TENANT_B)),
    ] {
        let out = send_bearer(&layer, &hs_text(&doc(&iss, &tid))).await;
        assert_accepted(&out.about(&format!("iss {iss} tid {tid}")));
    }

    let upper = TENANT_A.to_uppercase();
    let refused: Vec<(String, String, AuthError)> = vec![
        // Another tenant's issuer, either way round.
        (a_iss.clone(), s(TENANT_B), AuthError::WrongIssuer),
        (s(&entra_iss(TENANT_B)), s(TENANT_A), AuthError::WrongIssuer),
        // Case, braces, whitespace, a trailing slash, the v1 issuer, the template, aliases.
        (a_iss.clone(), s(&upper), AuthError::WrongIssuer),
        (s(&entra_iss(&upper)), s(TENANT_A), AuthError::WrongIssuer),
        (
            s(&entra_iss(&format!("{{{TENANT_A}}}"))),
            s(&format!("{{{TENANT_A}}}")),
            AuthError::WrongIssuer,
        ),
        (
            s(&entra_iss(&format!(" {TENANT_A}"))),
            s(&format!(" {TENANT_A}")),
            AuthError::WrongIssuer,
        ),
        (
            s(&entra_iss(&format!("{TENANT_A} "))),
            s(&format!("{TENANT_A} ")),
            AuthError::WrongIssuer,
        ),
        (
            s(&entra_iss(&format!("{TENANT_A}\\n"))),
            s(&format!("{TENANT_A}\\n")),
            AuthError::WrongIssuer,
        ),
        (
            s(&format!("{}/", entra_iss(TENANT_A))),
            s(TENANT_A),
            AuthError::WrongIssuer,
        ),
        (
            s(&format!("https://sts.windows.net/{TENANT_A}/")),
            s(TENANT_A),
            AuthError::WrongIssuer,
        ),
        (
            s(&entra_iss("{tenantid}")),
            s("{tenantid}"),
            AuthError::WrongIssuer,
        ),
        (s(&entra_iss("common")), s("common"), AuthError::WrongIssuer),
        // A tenant not on the allow-list.
        (
            s(&entra_iss("11111111-2222-3333-4444-555555555555")),
            s("11111111-2222-3333-4444-555555555555"),
            AuthError::WrongIssuer,
        ),
        // Wrong JSON types.
        (a_iss.clone(), "7".into(), AuthError::MalformedClaims),
        (
            a_iss.clone(),
            format!("[{}]", s(TENANT_A)),
            AuthError::MalformedClaims,
        ),
        (
            a_iss.clone(),
            format!("{{\"id\":{}}}", s(TENANT_A)),
            AuthError::MalformedClaims,
        ),
        (a_iss.clone(), "null".into(), AuthError::MissingClaim),
    ];
    for (iss, tid, why) in refused {
        let out = send_bearer(&layer, &hs_text(&doc(&iss, &tid))).await;
        assert_invalid_token(&out.about(&format!("iss {iss} tid {tid}")), &[why]);
    }

    // Duplicates: a `tid` of tenant B after tenant A's, plain or through an escaped name, and
    // a second `iss`. The strict reader refuses them, so neither parse gets to pick.
    let dupes = [
        format!(
            r#"{{"sub":"alice","aud":"{ENTRA_APP}","exp":{exp},"iss":{a_iss},"tid":"{TENANT_A}","tid":"{TENANT_B}"}}"#
        ),
        format!(
            r#"{{"sub":"alice","aud":"{ENTRA_APP}","exp":{exp},"iss":{a_iss},"tid":"{TENANT_A}","\u0074id":"{TENANT_B}"}}"#
        ),
        format!(
            r#"{{"sub":"alice","aud":"{ENTRA_APP}","exp":{exp},"iss":"{}","iss":{a_iss},"tid":"{TENANT_A}"}}"#,
            entra_iss(TENANT_B)
        ),
    ];
    for text in dupes {
        let out = send_bearer(&layer, &hs_text(&text)).await;
        assert_invalid_token(&out.about(&text), &[AuthError::MalformedClaims]);
    }
    // Missing claims.
    for text in [
        format!(r#"{{"sub":"alice","aud":"{ENTRA_APP}","exp":{exp},"iss":{a_iss}}}"#),
        format!(r#"{{"sub":"alice","aud":"{ENTRA_APP}","exp":{exp},"tid":"{TENANT_A}"}}"#),
    ] {
        let out = send_bearer(&layer, &hs_text(&text)).await;
        assert_invalid_token(&out.about(&text), &[AuthError::MissingClaim]);
    }
}

/// Cognito: `token_use` must be `access` and `client_id` one of the audiences, compared as
/// decoded JSON strings; case, whitespace, types and duplicates are refused.
#[tokio::test]
async fn holds_cognito_rule_against_json_tricks() {
    let iss = "https://cognito-idp.us-west-2.amazonaws.com/us-west-2_X";
    let layer = Provider::cognito("us-west-2", "us-west-2_X")
        .audience("app-1")
        .configure(JwtAuthLayer::<TestClaims>::builder())
        .hs256(SECRET)
        .build()
        .unwrap();
    let exp = now() + 600;
    let doc = |rest: &str| format!(r#"{{"sub":"alice","iss":"{iss}","exp":{exp},{rest}}}"#);
    for rest in [
        r#""token_use":"access","client_id":"app-1""#,
        r#""token_use":"acc\u0065ss","client_id":"app\u002d1""#,
    ] {
        assert_accepted(&send_bearer(&layer, &hs_text(&doc(rest))).await.about(rest));
    }
    for (rest, why) in [
        (
            r#""token_use":"Access","client_id":"app-1""#,
            AuthError::WrongType,
        ),
        (
            r#""token_use":"access ","client_id":"app-1""#,
            AuthError::WrongType,
        ),
        (
            r#""token_use":"id","client_id":"app-1""#,
            AuthError::WrongType,
        ),
        (
            r#""token_use":"access","client_id":"APP-1""#,
            AuthError::WrongAudience,
        ),
        (
            r#""token_use":"access","client_id":"app-2""#,
            AuthError::WrongAudience,
        ),
        (
            r#""token_use":"access","client_id":1"#,
            AuthError::MalformedClaims,
        ),
        (
            r#""token_use":["access"],"client_id":"app-1""#,
            AuthError::MalformedClaims,
        ),
        (
            r#""token_use":"id","token_use":"access","client_id":"app-1""#,
            AuthError::MalformedClaims,
        ),
        (
            r#""token_use":"access","client_id":"app-2","client_\u0069d":"app-1""#,
            AuthError::MalformedClaims,
        ),
        (r#""token_use":"access""#, AuthError::MissingClaim),
        (r#""client_id":"app-1""#, AuthError::MissingClaim),
    ] {
        assert_invalid_token(
            &send_bearer(&layer, &hs_text(&doc(rest))).await.about(rest),
            &[why],
        );
    }
}

/// Was: `Provider::google()` without `.audience(..)` builds, and then accepts an ID token
/// that Google issued to *any* application: Google's issuer and signing keys are shared by
/// every OAuth client in the world, so the audience is the only thing that binds a token to
/// this application. `entra_multi_tenant` refuses to build without an audience for exactly
/// this reason ("every tenant's applications get tokens signed with the same keys"); the
/// Google preset does not.
#[test]
fn regression_google_preset_needs_an_audience() {
    let built = Provider::google()
        .configure(JwtAuthLayer::<Value>::builder())
        .hs256(SECRET) // stands in for Google's JWKS
        .build();
    let Ok(layer) = built else {
        return; // the fix: the build fails without an audience
    };
    let other_app = json!({
        "iss": "https://accounts.google.com",
        "azp": "999-attacker.apps.googleusercontent.com",
        "aud": "999-attacker.apps.googleusercontent.com",
        "sub": "110169484474386276334",
        "email": "victim@example.com",
        "email_verified": true,
        "iat": now(),
        "exp": now() + 3600,
    });
    let accepted = layer.verify(&hs(&other_app));
    assert!(
        accepted.is_err(),
        "Provider::google() without an audience accepted an ID token issued to another \
         application: {:?}",
        accepted.map(|c| c["aud"].clone())
    );
}

/// Was: `Provider::cognito(..)` without `.audience(..)` builds, and its `client_id` rule
/// then accepts the access token of *any* app client of the user pool (the rule is skipped
/// when no client is named), although the preset documents `client_id` as the check that
/// binds a token to this API. All app clients of a pool share its keys and issuer.
#[test]
fn regression_cognito_preset_needs_an_audience() {
    let built = Provider::cognito("us-west-2", "us-west-2_X")
        .configure(JwtAuthLayer::<Value>::builder())
        .hs256(SECRET)
        .build();
    let Ok(layer) = built else {
        return; // the fix: the build fails without an audience
    };
    let other_client = json!({
        "iss": "https://cognito-idp.us-west-2.amazonaws.com/us-west-2_X",
        "sub": "u-1",
        "token_use": "access",
        "client_id": "some-other-app-client-of-the-pool",
        "scope": "aws.cognito.signin.user.admin",
        "exp": now() + 600,
    });
    assert!(
        layer.verify(&hs(&other_client)).is_err(),
        "Provider::cognito() without an audience accepted another app client's access token"
    );
}

// =============================================================================================
// 4. The verified-token cache and time
// =============================================================================================

/// The `exp + leeway` boundary on a hit, with a manual clock: one microsecond before it the
/// hit passes, at it the entry is refused `Expired`, removed, and counted a miss; moving the
/// clock back verifies the token afresh.
#[cfg(feature = "cache")]
#[tokio::test]
async fn holds_cache_hit_expiry_boundary_with_a_manual_clock() {
    use tower_jwt_auth::cache::CacheConfig;

    let clock = Clock::manual(at(secs(T0)));
    let layer = hs256_builder::<TestClaims>()
        .leeway(Duration::from_secs(10))
        .clock(clock.clone())
        .cache(CacheConfig::default())
        .build()
        .unwrap();
    let token = hs(&claims_with(json!({ "iat": T0, "exp": T0 + 100 })));
    assert_accepted(&send_bearer(&layer, &token).await);
    assert_accepted(&send_bearer(&layer, &token).await);
    clock.set(at(secs(T0 + 110) - 1));
    assert_accepted(&send_bearer(&layer, &token).await);
    let s = layer.cache_stats().unwrap();
    assert_eq!((s.entries, s.hits, s.misses), (1, 2, 1));

    clock.set(at(secs(T0 + 110)));
    assert_invalid_token(&send_bearer(&layer, &token).await, &[AuthError::Expired]);
    let s = layer.cache_stats().unwrap();
    assert_eq!((s.entries, s.hits, s.misses), (0, 2, 2));
    clock.set(at(secs(T0 + 200)));
    assert_invalid_token(&send_bearer(&layer, &token).await, &[AuthError::Expired]);
    assert_eq!(layer.cache_stats().unwrap().entries, 0);

    clock.set(at(secs(T0 + 50)));
    assert_accepted(&send_bearer(&layer, &token).await);
    assert_eq!(layer.cache_stats().unwrap().entries, 1);
}

/// `nbf` and `iat` on a hit when the clock moves back: at `nbf - leeway` (and `iat - leeway`)
/// the hit passes; one microsecond earlier the token is refused `NotYetValid`.
#[cfg(feature = "cache")]
#[tokio::test]
async fn holds_cache_hit_nbf_and_iat_when_the_clock_moves_back() {
    use tower_jwt_auth::cache::CacheConfig;

    for claim in ["nbf", "iat"] {
        let clock = Clock::manual(at(secs(T0)));
        let layer = hs256_builder::<TestClaims>()
            .leeway(Duration::from_secs(10))
            .clock(clock.clone())
            .cache(CacheConfig::default())
            .build()
            .unwrap();
        let mut claims = claims_with(json!({ "iat": null, "exp": T0 + 1000 }));
        claims[claim] = json!(T0);
        let token = hs(&claims);
        assert_accepted(&send_bearer(&layer, &token).await);
        clock.set(at(secs(T0 - 10)));
        assert_accepted(&send_bearer(&layer, &token).await);
        assert_eq!(layer.cache_stats().unwrap().hits, 1, "{claim}");
        clock.set(at(secs(T0 - 10) - 1));
        assert_invalid_token(
            &send_bearer(&layer, &token).await.about(claim),
            &[AuthError::NotYetValid],
        );
        assert_eq!(layer.cache_stats().unwrap().entries, 0, "{claim}");
    }
}

/// Many threads hitting one cached token while the clock crosses `exp + leeway`: once the
/// clock is past the boundary, no request passes (no hit served from a stale read).
#[cfg(feature = "cache")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_no_hit_after_expiry_under_concurrency() {
    use tower_jwt_auth::cache::CacheConfig;

    let clock = Clock::manual(at(secs(T0)));
    let layer = hs256_builder::<TestClaims>()
        .leeway(Duration::from_secs(0))
        .clock(clock.clone())
        .cache(CacheConfig::default())
        .build()
        .unwrap();
    let token = hs(&claims_with(json!({ "iat": T0, "exp": T0 + 1 })));
    assert_accepted(&send_bearer(&layer, &token).await);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let layer = layer.clone();
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..200 {
                let out = send_bearer(&layer, &token).await;
                assert!(out.status == StatusCode::OK || out.status == StatusCode::UNAUTHORIZED);
            }
        }));
    }
    clock.set(at(secs(T0 + 1)));
    for _ in 0..50 {
        let out = send_bearer(&layer, &token).await;
        assert_invalid_token(&out, &[AuthError::Expired]);
    }
    for task in tasks {
        task.await.unwrap();
    }
}

// =============================================================================================
// 5. Responder marker and metrics
// =============================================================================================

/// With a recorder installed, every label the layer records is from a fixed vocabulary:
/// no path, `kid`, `iss`, claim or token reaches a label, whatever the requests carry, and
/// the decisions are those without metrics.
#[cfg(all(feature = "metrics", feature = "cache"))]
#[test]
fn holds_metrics_labels_carry_no_request_data() {
    use metrics_util::debugging::DebuggingRecorder;

    install_provider();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = ::metrics::set_default_local_recorder(&recorder);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    const MARK: &str = "zq7marker";
    let statuses = runtime.block_on(async {
        let layer = hs256_builder::<TestClaims>()
            .public_path("/health")
            .cache(tower_jwt_auth::cache::CacheConfig::default())
            .validate(|c: &TestClaims| c.sub != "blocked")
            .build()
            .unwrap();
        let good = hs256_token(json!({}));
        let kid = sign_raw(
            &json!({ "alg": "HS256", "typ": "JWT", "kid": format!("{MARK}-kid") }),
            &good_claims(),
            Algorithm::HS256,
            &jsonwebtoken::EncodingKey::from_secret(b"another secret of at least 32 bytes"),
        );
        let iss = hs256_token(json!({ "iss": format!("https://{MARK}.example") }));
        let blocked = hs256_token(json!({ "sub": "blocked" }));
        let mut statuses = Vec::new();
        for (path, token) in [
            (format!("/{MARK}/path"), Some(good.clone())),
            (format!("/{MARK}/path"), Some(good.clone())),
            ("/health".to_owned(), Some(kid.clone())),
            (format!("/{MARK}"), Some(kid.clone())),
            (format!("/{MARK}"), Some(iss.clone())),
            (format!("/{MARK}"), Some(blocked.clone())),
            (format!("/{MARK}"), Some(format!("{MARK}.{MARK}.{MARK}"))),
            (format!("/{MARK}"), None),
        ] {
            let uri: Uri = path.parse().unwrap();
            statuses.push(
                send(&layer, request(Method::GET, uri, token.as_deref()))
                    .await
                    .status,
            );
        }
        statuses
    });
    assert_eq!(
        statuses.iter().map(|s| s.as_u16()).collect::<Vec<_>>(),
        [200, 200, 200, 401, 401, 401, 401, 401]
    );
    // `issuer` is the layer's configured issuer (the per-issuer counter), never a token's.
    let mut vocabulary: Vec<&str> = vec!["accepted", "rejected", "anonymous", "verified", ISSUER];
    vocabulary.extend(
        [
            AuthError::MissingToken,
            AuthError::Malformed,
            AuthError::MalformedHeader,
            AuthError::InvalidSignature,
            AuthError::WrongIssuer,
            AuthError::ClaimsRejected,
            AuthError::UnknownKey,
        ]
        .iter()
        .map(AuthError::reason),
    );
    let mut labels = 0;
    for (key, _, _, _) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        assert!(!key.name().contains(MARK));
        for label in key.labels() {
            labels += 1;
            assert!(
                ["outcome", "reason", "issuer"].contains(&label.key()),
                "label {} on {}",
                label.key(),
                key.name()
            );
            assert!(
                vocabulary.contains(&label.value()) && !label.value().contains(MARK),
                "label value {:?} on {}",
                label.value(),
                key.name()
            );
        }
    }
    assert!(labels > 0, "nothing was recorded");
}

/// The responder marker changes only the style of an answer, never a decision: an anonymous
/// pass (optional mode) is refused by the `Claims` extractor in the layer's style (problem
/// document), an invalid token is refused by the layer itself, a valid one passes, and only
/// that one reaches the handler.
#[tokio::test]
async fn holds_responder_marker_does_not_change_decisions() {
    let layer = hs256_builder::<TestClaims>()
        .responder(ProblemJson::with_realm("audit"))
        .optional()
        .build()
        .unwrap();
    let reached = Hits::default();
    let counted = reached.clone();
    let app = Router::new()
        .route(
            "/strict",
            get(move |claims: Claims<TestClaims>| {
                counted.hit();
                async move { claims.sub.clone() }
            }),
        )
        .layer(layer);
    let base = format!("http://{}", serve(app).await);
    // Anonymous: through the layer, then refused by the extractor in the layer's style.
    let res = get_with(&format!("{base}/strict"), None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    // An invalid token: refused by the layer itself.
    let res = get_with(
        &format!("{base}/strict"),
        Some(&tamper_signature(&hs256_token(json!({})))),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    // A valid one passes.
    let reply = fetch(&format!("{base}/strict"), Some(&hs256_token(json!({})))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "alice");
    assert_eq!(reached.count(), 1);
}

// =============================================================================================
// 6. The CORS preflight exemption, seen from gRPC (found while attacking `OPTIONS` forms)
// =============================================================================================

/// Was: a gRPC call sent with method `OPTIONS` and an `Access-Control-Request-Method`
/// header passes the layer as a "CORS preflight" (no token looked at, anonymous) and tonic,
/// whose generated services dispatch on the path alone, runs it as an ordinary call. So every
/// gRPC service behind `Server::builder().layer(auth)` or `add_service(auth.layer(svc))` can be
/// called without a token. A real preflight is never a gRPC call (browsers send it with no
/// body and no `content-type: application/grpc`).
#[tokio::test]
async fn regression_grpc_call_disguised_as_cors_preflight_is_authenticated() {
    use tonic::transport::server::TcpIncoming;
    use tonic::transport::{Channel, Server};
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    let layer = hs256_builder::<TestClaims>().build().unwrap();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        Server::builder()
            .layer(layer)
            .add_service(health)
            .serve_with_incoming(TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    // Control: the ordinary call without a token is refused.
    let status = HealthClient::new(channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);

    // The same call, as `OPTIONS` with `Access-Control-Request-Method: POST`.
    let disguised = tower::ServiceBuilder::new()
        .map_request(|mut req: http::Request<tonic::body::Body>| {
            *req.method_mut() = Method::OPTIONS;
            req.headers_mut().insert(
                header::ACCESS_CONTROL_REQUEST_METHOD,
                http::HeaderValue::from_static("POST"),
            );
            req
        })
        .service(channel);
    let reply = HealthClient::new(disguised)
        .check(HealthCheckRequest::default())
        .await;
    assert!(
        matches!(&reply, Err(s) if s.code() == tonic::Code::Unauthenticated),
        "a gRPC call with no token reached the service: {reply:?}"
    );
}

/// Same root cause, axum: a method-agnostic service behind the layer
/// (`Router::route_service`, `nest_service`, `fallback_service`, `any(..)`) is reached without
/// a token by any request that calls itself a preflight; no `Origin` is needed, and the
/// request may carry a body.
#[tokio::test]
async fn regression_preflight_lookalike_never_reaches_method_agnostic_axum_services() {
    let reached = Hits::default();
    let counted = reached.clone();
    let service = tower::service_fn(move |req: http::Request<axum::body::Body>| {
        counted.hit();
        let method = req.method().clone();
        async move {
            Ok::<_, std::convert::Infallible>(axum::response::IntoResponse::into_response(format!(
                "internal action run for {method}"
            )))
        }
    });
    let app = Router::new()
        .route_service("/internal/rpc", service)
        .layer(hs256_layer::<TestClaims>());
    let addr = serve(app).await;
    let (status, _) = raw(
        addr,
        "POST /internal/rpc HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(reached.count(), 0);
    let (status, text) = raw(
        addr,
        "OPTIONS /internal/rpc HTTP/1.1\r\nHost: t\r\nAccess-Control-Request-Method: POST\r\n\
         Content-Length: 2\r\nConnection: close\r\n\r\n{}",
    )
    .await;
    assert_eq!(
        reached.count(),
        0,
        "an OPTIONS request with no token and no Origin ran the protected service: {status} {text}"
    );
}

/// Was: the refusal event (feature `tracing`) records the token header's `kid`
/// verbatim as `jwt.kid`, before anything about the token was verified: a field carrying
/// request-controlled data of any length (up to the token size limit, 8 KiB by default) and
/// any cardinality, on every refused request, which OpenTelemetry pipelines map to an
/// attribute. The `alg` is from a closed set and the `iss` is recorded only once signed; the
/// `kid` is neither.
#[cfg(feature = "tracing")]
#[test]
fn regression_unverified_kid_is_bounded_in_the_refusal_event() {
    const MARK: &str = "zq7kidmarker";
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    let layer = hs256_layer::<TestClaims>();
    let kid = format!("{}{MARK}", "k".repeat(4000));
    let forged = sign_raw(
        &json!({ "alg": "HS256", "typ": "JWT", "kid": kid }),
        &good_claims(),
        Algorithm::HS256,
        &jsonwebtoken::EncodingKey::from_secret(b"not the server's secret, but 32+ bytes"),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Register the callsites first (see tracing::one_event_per_rejection_without_the_token).
    rt.block_on(async {
        send_bearer(&layer, &forged).await;
    });
    tracing::subscriber::with_default(subscriber, || {
        // Other tests' subscribers come and go on other threads, and each change recomputes
        // the callsites' cached interest: a recomputation that began before this subscriber
        // existed can end after it, without it. Recompute it with this one in place, and
        // again until the refusal's event reaches it.
        for _ in 0..20 {
            tracing::callsite::rebuild_interest_cache();
            rt.block_on(async {
                let out = send_bearer(&layer, &forged).await;
                assert_eq!(out.status, StatusCode::UNAUTHORIZED);
            });
            if capture.text().contains("request rejected") {
                break;
            }
        }
    });
    let out = capture.text();
    assert!(out.contains("request rejected"), "no event captured: {out}");
    assert!(
        !out.contains(MARK),
        "an unverified, attacker-chosen kid of {} bytes was recorded in the event",
        kid.len()
    );
}
