//! The layer in a real axum server on 127.0.0.1, called by a real HTTP client.

use crate::common;

use axum::Router;
use common::*;
use reqwest::StatusCode;
use serde_json::json;
use tower_jwt_auth::{
    AuthError, ErrorResponder, JwtAuthLayer, ProblemJson, grpc_response, is_grpc,
};

fn layer() -> JwtAuthLayer<TestClaims> {
    hs256_builder()
        .token_from_cookie("access_token")
        .realm("test")
        .build()
        .unwrap()
}

/// A server whose `/me` counts the requests that reach it.
async fn server(layer: JwtAuthLayer<TestClaims>) -> (String, Hits) {
    let (app, hits) = routes();
    let addr = serve(app.layer(layer)).await;
    (format!("http://{addr}"), hits)
}

/// `/me` (`Claims`, answering them as JSON, counting the requests that reach it) and `/maybe`
/// (`Option<Claims>`, answering the subject or `anonymous`, not counted), without any layer.
fn routes() -> (Router, Hits) {
    let hits = Hits::default();
    let app = Router::new()
        .route("/me", claims_json::<TestClaims>(&hits))
        .route("/maybe", subject::<TestClaims>(&Hits::default()));
    (app, hits)
}

#[tokio::test]
async fn valid_token_reaches_handler_with_typed_claims() {
    let (url, hits) = server(layer()).await;
    let res = client()
        .get(format!("{url}/me"))
        .bearer_auth(hs256_token(json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body, json!({ "sub": "alice", "roles": ["admin"] }));
    assert_eq!(hits.count(), 1);
}

#[tokio::test]
async fn missing_token_is_401_with_bare_challenge() {
    let (url, hits) = server(layer()).await;
    let res = get_with(&format!("{url}/me"), None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(www_authenticate(&res), Some("Bearer realm=\"test\""));
    assert_eq!(hits.count(), 0);
}

#[tokio::test]
async fn expired_token_is_401_invalid_token_and_never_echoed() {
    let (url, hits) = server(layer()).await;
    let token = hs256_token(json!({ "exp": now() - 3600 }));
    let res = client()
        .get(format!("{url}/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let challenge = www_authenticate(&res).unwrap().to_owned();
    assert_eq!(
        challenge,
        "Bearer realm=\"test\", error=\"invalid_token\", error_description=\"token expired\""
    );
    let headers = format!("{:?}", res.headers());
    let body = res.text().await.unwrap();
    assert!(!headers.contains(&token) && !body.contains(&token));
    assert_eq!(hits.count(), 0);
}

#[tokio::test]
async fn cookie_is_a_source_and_disagreement_is_400() {
    let (url, hits) = server(layer()).await;
    let client = client();
    let token = hs256_token(json!({}));
    let res = client
        .get(format!("{url}/me"))
        .header("cookie", format!("theme=dark; access_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    // Same token by two methods: fine.
    let res = client
        .get(format!("{url}/me"))
        .bearer_auth(&token)
        .header("cookie", format!("access_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    // Two different tokens: RFC 6750 §2 allows one method per request.
    let other = hs256_token(json!({ "sub": "bob" }));
    let res = client
        .get(format!("{url}/me"))
        .bearer_auth(&token)
        .header("cookie", format!("access_token={other}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let challenge = www_authenticate(&res).unwrap();
    assert!(
        challenge.contains("error=\"invalid_request\""),
        "{challenge}"
    );
    assert_eq!(hits.count(), 2);
}

#[tokio::test]
async fn optional_mode_lets_anonymous_through_but_not_bad_tokens() {
    let layer = hs256_builder().optional().build().unwrap();
    let (url, hits) = server(layer).await;
    let client = client();
    let res = client.get(format!("{url}/maybe")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "anonymous");

    let res = client
        .get(format!("{url}/maybe"))
        .bearer_auth(hs256_token(json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(res.text().await.unwrap(), "alice");

    let res = client
        .get(format!("{url}/maybe"))
        .bearer_auth(hs256_token(json!({ "exp": now() - 3600 })))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // A handler that insists on claims answers 401 for anonymous requests, with the bare
    // challenge of a request without a token.
    let res = client.get(format!("{url}/me")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(www_authenticate(&res), Some("Bearer realm=\"api\""));
    assert_eq!(hits.count(), 0);
}

/// Asserts the extractor's answer to a request no `JwtAuthLayer` of its claims type ran on:
/// 500, a text naming the missing layer, no challenge.
async fn assert_missing_layer(res: reqwest::Response) {
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(www_authenticate(&res).is_none());
    assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
    let body = res.text().await.unwrap();
    assert!(
        body.starts_with("no JwtAuthLayer ran on this request"),
        "{body}"
    );
}

/// Forgetting the layer is the server's fault (as with axum's `Extension`): 500 from
/// `Claims<C>` and from `Option<Claims<C>>` alike, whatever the request carries. A silent
/// `None` would make every caller look anonymous.
#[tokio::test]
async fn claims_without_a_layer_are_500_naming_the_layer() {
    let (app, hits) = routes();
    let url = format!("http://{}", serve(app).await);
    let client = client();
    for path in ["/me", "/maybe"] {
        let res = client.get(format!("{url}{path}")).send().await.unwrap();
        assert_missing_layer(res).await;
        let res = client
            .get(format!("{url}{path}"))
            .bearer_auth(hs256_token(json!({})))
            .send()
            .await
            .unwrap();
        assert_missing_layer(res).await;
    }
    assert_eq!(hits.count(), 0);
}

/// A layer for another claims type verifies the token but inserts no `Claims<TestClaims>`:
/// the same wiring mistake, answered the same way.
#[tokio::test]
async fn claims_behind_a_layer_of_another_claims_type_are_500() {
    let other = hs256_layer::<serde_json::Value>();
    let (app, hits) = routes();
    let url = format!("http://{}", serve(app.layer(other)).await);
    let client = client();
    for path in ["/me", "/maybe"] {
        let res = client
            .get(format!("{url}{path}"))
            .bearer_auth(hs256_token(json!({})))
            .send()
            .await
            .unwrap();
        assert_missing_layer(res).await;
    }
    assert_eq!(hits.count(), 0);
}

// ---------------------------------------------------------------------------------------------
// One responder everywhere: the layer's realm and responder in the extractor's answer
// ---------------------------------------------------------------------------------------------

/// The realm configured on an optional layer is the one the extractor's 401 names: the
/// extractor answers an anonymous request as the layer answers a request without a token.
#[tokio::test]
async fn extractor_answers_anonymous_requests_in_the_layers_realm() {
    let layer = hs256_builder().optional().realm("test").build().unwrap();
    let (url, hits) = server(layer).await;
    let res = get_with(&format!("{url}/me"), None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(www_authenticate(&res), Some("Bearer realm=\"test\""));
    assert_eq!(res.text().await.unwrap(), "");
    // `Option<Claims>` still sees an anonymous caller.
    let res = get_with(&format!("{url}/maybe"), None).await;
    assert_eq!(res.text().await.unwrap(), "anonymous");
    assert_eq!(hits.count(), 0);
}

/// Asserts an RFC 9457 problem document: `status`, its reason phrase as `title`, `detail`,
/// exactly the four members, `challenge` (if any) as `WWW-Authenticate`, and no token in it.
pub(crate) async fn assert_problem(
    res: reqwest::Response,
    status: StatusCode,
    detail: &str,
    challenge: Option<&str>,
) {
    assert_eq!(res.status(), status);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert_eq!(www_authenticate(&res), challenge);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(
        body,
        json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap(),
            "status": status.as_u16(),
            "detail": detail,
        })
    );
}

/// A `ProblemJson` layer answers problem documents for a missing and an expired token, and
/// the extractor behind it (optional mode) answers an anonymous request with the same.
#[tokio::test]
async fn problem_json_from_the_layer_and_from_the_extractor() {
    let strict = hs256_builder::<TestClaims>()
        .responder(ProblemJson::with_realm("test"))
        .build()
        .unwrap();
    let (app, hits) = routes();
    let url = format!("http://{}", serve(app.layer(strict)).await);
    let me = format!("{url}/me");
    let missing = Some("Bearer realm=\"test\"");
    let expired =
        Some("Bearer realm=\"test\", error=\"invalid_token\", error_description=\"token expired\"");
    let old = hs256_token(json!({ "exp": now() - 3600 }));
    let res = get_with(&me, None).await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "no bearer token", missing).await;
    let res = get_with(&me, Some(&old)).await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "token expired", expired).await;
    let res = get_with(&me, Some(&hs256_token(json!({})))).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(hits.take(), 1);

    let optional = hs256_builder::<TestClaims>()
        .optional()
        .responder(ProblemJson::with_realm("test"))
        .build()
        .unwrap();
    let (app, hits) = routes();
    let url = format!("http://{}", serve(app.layer(optional)).await);
    let me = format!("{url}/me");
    // From the extractor: the layer let the request through.
    let res = get_with(&me, None).await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "no bearer token", missing).await;
    // From the layer: an optional layer still refuses a bad token.
    let res = get_with(&me, Some(&old)).await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "token expired", expired).await;
    let res = get_with(&format!("{url}/maybe"), None).await;
    assert_eq!(res.text().await.unwrap(), "anonymous");
    assert_eq!(hits.count(), 0);
}

/// `POST url` as a gRPC call (`content-type: application/grpc`), with `token` if any.
async fn grpc_call(url: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = client()
        .post(url)
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap()
}

/// Asserts a trailers-only gRPC `UNAUTHENTICATED`: HTTP 200, `grpc-status: 16`, no body, no
/// problem document.
async fn assert_grpc_unauthenticated(res: reqwest::Response, message: &str) {
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/grpc");
    assert_eq!(res.headers()["grpc-status"], "16");
    assert_eq!(res.headers()["grpc-message"], message);
    assert!(www_authenticate(&res).is_none());
    assert!(res.bytes().await.unwrap().is_empty());
}

/// gRPC callers of a `ProblemJson` layer get the gRPC status mapping, from the layer and from
/// the extractor alike.
#[tokio::test]
async fn problem_json_answers_grpc_callers_with_grpc_status() {
    let all = |routes: Router| {
        routes.route(
            "/grpc",
            axum::routing::post(|_: tower_jwt_auth::Claims<TestClaims>| async { "reached" }),
        )
    };
    let strict = hs256_builder::<TestClaims>()
        .responder(ProblemJson::default())
        .build()
        .unwrap();
    let (app, hits) = routes();
    let url = format!("http://{}/grpc", serve(all(app).layer(strict)).await);
    let res = grpc_call(&url, None).await;
    assert_grpc_unauthenticated(res, "no bearer token").await;
    let old = hs256_token(json!({ "exp": now() - 3600 }));
    assert_grpc_unauthenticated(grpc_call(&url, Some(&old)).await, "token expired").await;

    let optional = hs256_builder::<TestClaims>()
        .optional()
        .responder(ProblemJson::default())
        .build()
        .unwrap();
    let (app, _) = routes();
    let url = format!("http://{}/grpc", serve(all(app).layer(optional)).await);
    let res = grpc_call(&url, None).await;
    assert_grpc_unauthenticated(res, "no bearer token").await;
    let res = grpc_call(&url, Some(&hs256_token(json!({})))).await;
    assert_eq!(res.text().await.unwrap(), "reached");
    assert_eq!(hits.count(), 0);
}

/// An own responder: plain text for HTTP callers, the built-in gRPC answer for gRPC ones.
#[derive(Clone)]
struct PlainText;

impl ErrorResponder<axum::body::Body> for PlainText {
    fn respond(
        &self,
        error: &AuthError,
        request: &http::HeaderMap,
    ) -> http::Response<axum::body::Body> {
        if is_grpc(request) {
            return grpc_response(error);
        }
        let mut res = http::Response::new(axum::body::Body::from(error.reason()));
        *res.status_mut() = error.status();
        res
    }
}

/// Status, headers (but `date`) and body, byte for byte.
async fn wire(res: reqwest::Response) -> (u16, Vec<(String, Vec<u8>)>, Vec<u8>) {
    let status = res.status().as_u16();
    let mut headers: Vec<_> = res
        .headers()
        .iter()
        .filter(|(name, _)| *name != "date")
        .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
        .collect();
    headers.sort();
    (status, headers, res.bytes().await.unwrap().to_vec())
}

/// A custom responder built on `grpc_response` answers gRPC callers exactly as `Rfc6750`
/// does, from the layer and from the extractor, and HTTP callers in its own way.
#[tokio::test]
async fn custom_responder_on_grpc_response_matches_rfc6750_for_grpc() {
    let serve_with = |custom: bool| async move {
        let app = Router::new().route(
            "/grpc",
            axum::routing::post(|_: tower_jwt_auth::Claims<TestClaims>| async { "reached" }),
        );
        let app = if custom {
            app.layer(
                hs256_builder::<TestClaims>()
                    .optional()
                    .responder(PlainText)
                    .build()
                    .unwrap(),
            )
        } else {
            app.layer(hs256_builder::<TestClaims>().optional().build().unwrap())
        };
        format!("http://{}/grpc", serve(app).await)
    };
    let (ours, builtin) = (serve_with(true).await, serve_with(false).await);
    let expired = hs256_token(json!({ "exp": now() - 3600 }));
    let forged = tamper_signature(&hs256_token(json!({})));
    // No token (the extractor answers), expired and forged (the layer answers).
    for token in [None, Some(expired.as_str()), Some(forged.as_str())] {
        let a = wire(grpc_call(&ours, token).await).await;
        let b = wire(grpc_call(&builtin, token).await).await;
        assert_eq!(a, b, "{token:?}");
        assert_eq!(a.0, 200);
        assert!(a.1.contains(&("grpc-status".into(), b"16".to_vec())));
    }
    let res = client()
        .post(&ours)
        .bearer_auth(&expired)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.text().await.unwrap(), "expired");
}

/// `GET <path>` sent as raw bytes over TCP (no client-side URL normalisation), with `token`
/// if any: the response's status code.
async fn raw_get(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token.map_or_else(String::new, |t| format!("authorization: Bearer {t}\r\n"));
    let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\n{auth}connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response);
    let status = response.split(' ').nth(1).expect("a status line");
    status.parse().unwrap()
}

/// Public paths pass without a token and without claims, even with a valid token; a path that
/// is not in plain form is authenticated, whatever a router behind might make of it.
#[tokio::test]
async fn public_paths_pass_without_claims_and_tricks_are_authenticated() {
    let hits = Hits::default();
    let layer = hs256_builder::<TestClaims>()
        .public_path("/health")
        .public_path("/public/*")
        .build()
        .unwrap();
    let app = Router::new()
        .route("/health", subject::<TestClaims>(&hits))
        .route("/public/{*rest}", subject::<TestClaims>(&hits))
        .route("/admin", subject::<TestClaims>(&hits))
        .layer(layer);
    let addr = serve(app).await;
    let base = format!("http://{addr}");
    let good = hs256_token(json!({}));
    for path in ["/health", "/public/docs", "/public/a/b.css"] {
        for token in [None, Some(good.as_str()), Some("not.a.token")] {
            let reply = fetch(&format!("{base}{path}"), token).await;
            assert_eq!(reply.status, StatusCode::OK, "{path}: {reply:?}");
            // No claims are handed on, even for a valid token.
            assert_eq!(reply.body, "anonymous", "{path}");
        }
    }
    assert_eq!(hits.take(), 9);
    fetch(&format!("{base}/admin"), None).await;
    assert_eq!(
        fetch(&format!("{base}/admin"), Some(&good)).await.body,
        "alice"
    );
    assert_eq!(hits.take(), 1, "a request without a token reached /admin");

    for path in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public//admin",
        "/public/x;/../admin",
        "/health/",
        "/Health",
        "/%68ealth",
        "//health",
        "/public/",
        "/public",
    ] {
        assert_eq!(raw_get(addr, path, None).await, 401, "{path}");
        assert_eq!(
            raw_get(addr, path, Some("not.a.token")).await,
            401,
            "{path}"
        );
    }
    assert_eq!(hits.count(), 0);

    for bad in ["/*", "public", "/a/../b", "/a%2Fb", "/a/*/b", "/a/"] {
        let err = hs256_builder::<TestClaims>()
            .public_path(bad)
            .build()
            .unwrap_err();
        assert!(
            matches!(err, tower_jwt_auth::BuildError::InvalidSetting(_)),
            "{bad}: {err}"
        );
    }
}
