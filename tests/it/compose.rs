//! The layer composed with tower-http's `TraceLayer`, `CorsLayer` and `TimeoutLayer` in one
//! `tower::ServiceBuilder` stack, served by axum on 127.0.0.1 and called with reqwest.
//!
//! Two orders are checked:
//!
//! * **CORS outside auth** (`Trace → Cors → Timeout → JwtAuth → router`), the recommended one:
//!   preflights are answered by `CorsLayer` before they reach the auth layer, and 401s carry
//!   the CORS headers, so a browser script can read them.
//! * **auth outside CORS** (`Trace → JwtAuth → Cors → Timeout → router`): preflights get through
//!   only because the auth layer lets them pass; its 401s carry no CORS headers.
//!
//! `TraceLayer` logs into a process-wide capturing subscriber (see [`trace_capture`]).

use crate::common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderValue, Method, header};
use axum::routing::get;
use common::*;
use reqwest::{Response, StatusCode};
use serde_json::json;
use tower::ServiceBuilder;
use tower_http::cors::CorsLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tower_jwt_auth::{Claims, JwtAuthLayer};
use tracing_subscriber::util::SubscriberInitExt;

const ORIGIN: &str = "https://app.test";
const TIMEOUT: Duration = Duration::from_millis(200);

/// Where the auth layer sits relative to `CorsLayer`.
#[derive(Debug, Clone, Copy)]
enum Order {
    CorsOutside,
    AuthOutside,
}

fn auth() -> JwtAuthLayer<TestClaims> {
    hs256_layer()
}

fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(HeaderValue::from_static(ORIGIN))
        .allow_methods([Method::GET])
        .allow_headers([header::AUTHORIZATION])
}

fn routes() -> Router {
    Router::new()
        .route("/me", subject::<TestClaims>(&Hits::default()))
        // Never answers: only the TimeoutLayer can end this request.
        .route(
            "/slow",
            get(|_c: Claims<TestClaims>| std::future::pending::<&'static str>()),
        )
}

/// Serves the routes behind the full stack in the given order; returns the base URL.
async fn server(order: Order, auth: JwtAuthLayer<TestClaims>) -> String {
    trace_capture();
    let timeout = TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, TIMEOUT);
    let app = match order {
        Order::CorsOutside => routes().layer(
            ServiceBuilder::new()
                .layer(TraceLayer::new_for_http())
                .layer(cors())
                .layer(timeout)
                .layer(auth),
        ),
        Order::AuthOutside => routes().layer(
            ServiceBuilder::new()
                .layer(TraceLayer::new_for_http())
                .layer(auth)
                .layer(cors())
                .layer(timeout),
        ),
    };
    format!("http://{}", serve(app).await)
}

async fn preflight(url: &str) -> Response {
    client()
        .request(Method::OPTIONS, format!("{url}/me"))
        .header(header::ORIGIN, ORIGIN)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization")
        .send()
        .await
        .unwrap()
}

async fn get_me(url: &str, token: Option<&str>) -> Response {
    let mut req = client()
        .get(format!("{url}/me"))
        .header(header::ORIGIN, ORIGIN);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap()
}

fn header_str(res: &Response, name: header::HeaderName) -> Option<&str> {
    res.headers().get(name).map(|v| v.to_str().unwrap())
}

/// A preflight answered by `CorsLayer`: 200 (tower-http's status for preflights) with the
/// configured CORS headers and no authentication challenge.
fn assert_cors_preflight(res: &Response, order: Order) {
    assert!(
        res.status() == StatusCode::OK || res.status() == StatusCode::NO_CONTENT,
        "{order:?}: {}",
        res.status()
    );
    assert_eq!(
        header_str(res, header::ACCESS_CONTROL_ALLOW_ORIGIN),
        Some(ORIGIN),
        "{order:?}"
    );
    let methods = header_str(res, header::ACCESS_CONTROL_ALLOW_METHODS).unwrap_or_default();
    assert!(methods.contains("GET"), "{order:?}: {methods}");
    let headers = header_str(res, header::ACCESS_CONTROL_ALLOW_HEADERS).unwrap_or_default();
    assert!(
        headers.to_ascii_lowercase().contains("authorization"),
        "{order:?}: {headers}"
    );
    assert!(!res.headers().contains_key(header::WWW_AUTHENTICATE));
}

#[tokio::test]
async fn preflight_passes_without_token_in_both_orders() {
    // CorsLayer outside answers the preflight itself; inside, the auth layer must be told to
    // let preflights through.
    let lenient = || {
        hs256_builder::<TestClaims>()
            .pass_cors_preflight()
            .build()
            .unwrap()
    };
    for (order, layer) in [
        (Order::CorsOutside, auth()),
        (Order::AuthOutside, lenient()),
    ] {
        let url = server(order, layer).await;
        let res = preflight(&url).await;
        assert_cors_preflight(&res, order);
        assert_eq!(res.status(), StatusCode::OK, "{order:?}");
    }
}

#[tokio::test]
async fn preflight_with_auth_outside_cors_is_401_by_default() {
    let url = server(Order::AuthOutside, auth()).await;
    let res = preflight(&url).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header_str(&res, header::WWW_AUTHENTICATE),
        Some("Bearer realm=\"api\"")
    );
    // Refused before CorsLayer: no CORS headers at all.
    assert_eq!(header_str(&res, header::ACCESS_CONTROL_ALLOW_ORIGIN), None);
    assert_eq!(header_str(&res, header::ACCESS_CONTROL_ALLOW_METHODS), None);

    // With CorsLayer outside, the preflight never reaches the auth layer: CorsLayer answers it.
    let url = server(Order::CorsOutside, auth()).await;
    assert_cors_preflight(&preflight(&url).await, Order::CorsOutside);
}

#[tokio::test]
async fn valid_token_gets_200_with_cors_headers_in_both_orders() {
    let token = hs256_token(json!({}));
    for order in [Order::CorsOutside, Order::AuthOutside] {
        let url = server(order, auth()).await;
        let res = get_me(&url, Some(&token)).await;
        assert_eq!(res.status(), StatusCode::OK, "{order:?}");
        assert_eq!(
            header_str(&res, header::ACCESS_CONTROL_ALLOW_ORIGIN),
            Some(ORIGIN),
            "{order:?}"
        );
        assert_eq!(res.text().await.unwrap(), "alice");
    }
}

#[tokio::test]
async fn missing_token_is_401_with_cors_headers_only_when_cors_is_outside() {
    // CorsLayer outside: it decorates every response of the inner stack, the auth layer's 401
    // included, so a browser script can read the status and the challenge.
    let url = server(Order::CorsOutside, auth()).await;
    let res = get_me(&url, None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header_str(&res, header::WWW_AUTHENTICATE),
        Some("Bearer realm=\"api\"")
    );
    assert_eq!(
        header_str(&res, header::ACCESS_CONTROL_ALLOW_ORIGIN),
        Some(ORIGIN)
    );

    // Auth outside: the 401 is produced before CorsLayer runs, so it has no CORS headers
    // (a browser reports it to the script as a network error).
    let url = server(Order::AuthOutside, auth()).await;
    let res = get_me(&url, None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header_str(&res, header::WWW_AUTHENTICATE),
        Some("Bearer realm=\"api\"")
    );
    assert_eq!(header_str(&res, header::ACCESS_CONTROL_ALLOW_ORIGIN), None);

    // An invalid token is the same story.
    let expired = hs256_token(json!({ "exp": now() - 3600 }));
    let url = server(Order::CorsOutside, auth()).await;
    let res = get_me(&url, Some(&expired)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header_str(&res, header::ACCESS_CONTROL_ALLOW_ORIGIN),
        Some(ORIGIN)
    );
}

#[tokio::test]
async fn timeout_layer_still_ends_a_never_completing_handler() {
    let token = hs256_token(json!({}));
    for order in [Order::CorsOutside, Order::AuthOutside] {
        let url = server(order, auth()).await;
        let client = client();
        let started = Instant::now();
        let res = client
            .get(format!("{url}/slow"))
            .header(header::ORIGIN, ORIGIN)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let elapsed = started.elapsed();
        // tower-http's TimeoutLayer answers 408 Request Timeout (the status we configured,
        // which is also what its deprecated `TimeoutLayer::new` used).
        assert_eq!(res.status(), StatusCode::REQUEST_TIMEOUT, "{order:?}");
        assert!(elapsed >= TIMEOUT, "{order:?}: {elapsed:?}");
        assert!(elapsed < Duration::from_secs(10), "{order:?}: {elapsed:?}");
        // CorsLayer sits outside the TimeoutLayer in both orders, so the 408 is decorated.
        assert_eq!(
            header_str(&res, header::ACCESS_CONTROL_ALLOW_ORIGIN),
            Some(ORIGIN),
            "{order:?}"
        );

        // Without a token the auth layer answers at once; the handler is never reached.
        let res = client.get(format!("{url}/slow")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{order:?}");
    }
}

/// The process-wide subscriber capturing tower-http's events, installed by [`server`] before
/// any server exists.
///
/// Global rather than a per-test `set_default`: with a thread-local subscriber, a tower-http
/// callsite first hit by a concurrently running test (no subscriber on its thread) can get its
/// interest cached as "never" before the scoped dispatcher is registered, and the capture
/// would miss events now and then. With one global subscriber installed before the first
/// request of any test here (no other module of the binary uses `TraceLayer`), every callsite
/// registers after it. Tests tell their lines apart by URI.
fn trace_capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let capture = Capture::default();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("tower_http=debug"))
            .with_writer(capture.clone())
            .with_ansi(false)
            .finish()
            .try_init()
            .expect("no other global subscriber in the test binary");
        capture
    })
}

/// `TraceLayer` sees every request, the ones the auth layer refuses included, and each gets
/// its span.
#[tokio::test]
async fn trace_layer_records_accepted_and_refused_requests() {
    // A URI no other test uses, to pick this test's lines out of the shared capture.
    const PATH: &str = "/me?trace-test";
    let url = server(Order::CorsOutside, auth()).await;
    let token = hs256_token(json!({}));
    let client = client();
    let res = client
        .get(format!("{url}{PATH}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "alice");
    let res = client.get(format!("{url}{PATH}")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let out = trace_capture().text();
    let span = format!("request{{method=GET uri={PATH} version=HTTP/1.1}}");
    let ours: Vec<&str> = out.lines().filter(|l| l.contains(&span)).collect();
    let all = ours.join("\n");
    let started = ours
        .iter()
        .filter(|l| l.contains("started processing request"))
        .count();
    assert_eq!(started, 2, "{all}");
    let finished: Vec<&&str> = ours
        .iter()
        .filter(|l| l.contains("finished processing request"))
        .collect();
    assert_eq!(finished.len(), 2, "{all}");
    // The response events come in request order: the client awaited each response.
    assert!(finished[0].contains("status=200"), "{all}");
    assert!(finished[1].contains("status=401"), "{all}");
    // TraceLayer records the URI and method, not the headers: the token is nowhere.
    assert!(!out.contains(&token), "{out}");
}
