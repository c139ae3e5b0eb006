//! The layer around a `tower::service_fn` in a real hyper 1 server on 127.0.0.1, called by a
//! real hyper-util client: RFC 6750 refusals, and refused requests never reach the handler.

use crate::common;

use std::convert::Infallible;
use std::net::SocketAddr;

use common::oneshot::NO_CLAIMS;
use common::*;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tower::{Layer, service_fn};
use tower_jwt_auth::{Claims, JwtAuthLayer};

fn layer() -> JwtAuthLayer<TestClaims> {
    hs256_builder().realm("test").build().unwrap()
}

/// Serves the layer around a handler that answers with the claims' `sub` and counts the
/// requests reaching it.
async fn server(layer: JwtAuthLayer<TestClaims>) -> (SocketAddr, Hits) {
    let hits = Hits::default();
    let h = hits.clone();
    let handler = service_fn(move |req: Request<Incoming>| {
        h.hit();
        let sub = req
            .extensions()
            .get::<Claims<TestClaims>>()
            .map_or_else(|| NO_CLAIMS.to_owned(), |c| c.sub.clone());
        async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(sub)))) }
    });
    let service = layer.layer(handler);

    // Bound before the accept loop starts, so connecting cannot race it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(service.clone());
            // A client closing its connection is no test failure; the assertions are client-side.
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    (addr, hits)
}

/// GET `/` with `token` (if any) as `Authorization: Bearer`; returns the status, the
/// `WWW-Authenticate` header and the body.
async fn get(addr: SocketAddr, token: Option<&str>) -> (StatusCode, Option<String>, String) {
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut req = Request::get(format!("http://{addr}/"));
    if let Some(token) = token {
        req = req.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    let res = client
        .request(req.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let challenge = res
        .headers()
        .get(WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, challenge, String::from_utf8(body.to_vec()).unwrap())
}

/// A 401 `invalid_token` challenge that tells nothing of the token.
fn assert_invalid_token(
    (status, challenge, body): &(StatusCode, Option<String>, String),
    token: &str,
) {
    assert_eq!(*status, StatusCode::UNAUTHORIZED);
    let challenge = challenge.as_deref().expect("WWW-Authenticate");
    assert!(
        challenge.starts_with(r#"Bearer realm="test", error="invalid_token", error_description=""#),
        "{challenge}"
    );
    for part in token.split('.') {
        assert!(!challenge.contains(part), "challenge echoes the token");
    }
    assert!(body.is_empty());
}

#[tokio::test]
async fn valid_token_reaches_handler_with_claims() {
    let (addr, hits) = server(layer()).await;
    let (status, challenge, body) = get(addr, Some(&hs256_token(json!({})))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(challenge, None);
    assert_eq!(body, "alice");
    assert_eq!(hits.count(), 1);
}

#[tokio::test]
async fn missing_token_is_401_with_bare_challenge() {
    let (addr, hits) = server(layer()).await;
    let (status, challenge, body) = get(addr, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // RFC 6750 §3.1: no error code when the request carried no credentials.
    assert_eq!(challenge.as_deref(), Some(r#"Bearer realm="test""#));
    assert!(body.is_empty());
    assert_eq!(hits.count(), 0);
}

#[tokio::test]
async fn bad_signature_is_401_invalid_token() {
    let (addr, hits) = server(layer()).await;
    let token = other_key_token();
    assert_invalid_token(&get(addr, Some(&token)).await, &token);
    assert_eq!(hits.count(), 0);
}

#[tokio::test]
async fn expired_token_is_401_invalid_token() {
    let (addr, hits) = server(layer()).await;
    let token = hs256_token(json!({ "iat": now() - 7200, "exp": now() - 3600 }));
    assert_invalid_token(&get(addr, Some(&token)).await, &token);
    assert_eq!(hits.count(), 0);
}

#[tokio::test]
async fn wrong_audience_is_401_invalid_token() {
    let (addr, hits) = server(layer()).await;
    let token = hs256_token(json!({ "aud": "another-api" }));
    assert_invalid_token(&get(addr, Some(&token)).await, &token);
    assert_eq!(hits.count(), 0);
}

#[tokio::test]
async fn only_accepted_requests_are_counted() {
    let (addr, hits) = server(layer()).await;
    let good = hs256_token(json!({}));
    let expired = hs256_token(json!({ "iat": now() - 7200, "exp": now() - 3600 }));
    assert_eq!(get(addr, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(get(addr, Some(&expired)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(get(addr, Some(&good)).await.0, StatusCode::OK);
    assert_eq!(
        get(addr, Some("not-a-jwt")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(hits.count(), 1);
}
