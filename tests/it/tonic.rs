//! The layer in a real tonic server on 127.0.0.1 (the generated gRPC health service), called
//! by a real tonic client: gRPC callers get `Code::Unauthenticated`, and refused calls never
//! reach the service.

use crate::common;

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use common::*;
use serde_json::json;
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tower::Service;
use tower_jwt_auth::{Claims, JwtAuthLayer};

/// Wraps a gRPC service and records, for every request that reaches it, the `sub` of the
/// claims the layer handed over (`None` if there were none).
#[derive(Clone)]
struct Recorded<S> {
    inner: S,
    seen: Arc<Mutex<Vec<Option<String>>>>,
}

impl<S: NamedService> NamedService for Recorded<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for Recorded<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let sub = req
            .extensions()
            .get::<Claims<TestClaims>>()
            .map(|c| c.sub.clone());
        self.seen.lock().unwrap().push(sub);
        self.inner.call(req)
    }
}

type Seen = Arc<Mutex<Vec<Option<String>>>>;

/// Serves the health service behind `layer` on a fresh port; returns a connected channel
/// and the record of the requests that reached the service.
async fn server(layer: JwtAuthLayer<TestClaims>) -> (Channel, Seen) {
    let seen = Seen::default();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let health = Recorded {
        inner: health,
        seen: seen.clone(),
    };
    // Bound before the server task starts, so connecting cannot race it.
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
    (channel, seen)
}

/// One health Check, with `token` (if any) as `authorization: Bearer` metadata.
async fn check(
    channel: Channel,
    token: Option<&str>,
) -> Result<HealthCheckResponse, tonic::Status> {
    let bearer: Option<MetadataValue<_>> = token.map(|t| format!("Bearer {t}").parse().unwrap());
    let mut client = HealthClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
        if let Some(b) = &bearer {
            req.metadata_mut().insert("authorization", b.clone());
        }
        Ok(req)
    });
    client
        .check(HealthCheckRequest::default())
        .await
        .map(tonic::Response::into_inner)
}

/// The refusal is `Unauthenticated`, and its message tells nothing of the token.
fn assert_refused(status: &tonic::Status, token: Option<&str>) {
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(!status.message().is_empty());
    if let Some(token) = token {
        for part in token.split('.') {
            assert!(
                !status.message().contains(part),
                "message echoes the token: {:?}",
                status.message()
            );
        }
    }
}

#[tokio::test]
async fn valid_token_is_served_and_claims_reach_the_service() {
    let (channel, seen) = server(hs256_layer()).await;
    let token = hs256_token(json!({}));
    let res = check(channel, Some(&token)).await.unwrap();
    assert_eq!(res.status(), ServingStatus::Serving);
    assert_eq!(*seen.lock().unwrap(), [Some("alice".to_owned())]);
}

#[tokio::test]
async fn token_from_token_issuer_is_served() {
    let (channel, seen) = server(hs256_layer()).await;
    let issued = access_issuer()
        .issue("bob", &json!({ "roles": ["ops"] }))
        .unwrap();
    let res = check(channel, Some(&issued.token)).await.unwrap();
    assert_eq!(res.status(), ServingStatus::Serving);
    assert_eq!(*seen.lock().unwrap(), [Some("bob".to_owned())]);
}

#[tokio::test]
async fn missing_token_is_unauthenticated() {
    let (channel, seen) = server(hs256_layer()).await;
    let status = check(channel, None).await.unwrap_err();
    assert_refused(&status, None);
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn expired_token_is_unauthenticated() {
    let (channel, seen) = server(hs256_layer()).await;
    let token = hs256_token(json!({ "iat": now() - 7200, "exp": now() - 3600 }));
    let status = check(channel, Some(&token)).await.unwrap_err();
    assert_refused(&status, Some(&token));
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn bad_signature_is_unauthenticated() {
    let (channel, seen) = server(hs256_layer()).await;
    let token = other_key_token();
    let status = check(channel, Some(&token)).await.unwrap_err();
    assert_refused(&status, Some(&token));
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn refused_and_accepted_calls_share_a_connection() {
    // The same HTTP/2 connection carries a refused call and then a good one: a trailers-only
    // refusal leaves the connection usable.
    let (channel, seen) = server(hs256_layer()).await;
    let bad = other_key_token();
    assert_refused(
        &check(channel.clone(), Some(&bad)).await.unwrap_err(),
        Some(&bad),
    );
    let good = hs256_token(json!({}));
    let res = check(channel, Some(&good)).await.unwrap();
    assert_eq!(res.status(), ServingStatus::Serving);
    assert_eq!(*seen.lock().unwrap(), [Some("alice".to_owned())]);
}
