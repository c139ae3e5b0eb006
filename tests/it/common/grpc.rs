//! A real tonic server (the gRPC health service behind a stack of layers) and a real tonic
//! client calling it with chosen metadata.

use std::convert::Infallible;

use tonic::metadata::MetadataValue;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// The health check's path: the one method the server serves.
pub const HEALTH: &str = "/grpc.health.v1.Health/Check";

/// The gRPC health service behind `stack` on 127.0.0.1, and a channel to it.
pub async fn grpc_server<L>(stack: L) -> Channel
where
    L: tower::Layer<tonic::service::Routes> + Clone + Send + Sync + 'static,
    L::Service: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        > + Clone
        + Send
        + Sync
        + 'static,
    <L::Service as tower::Service<http::Request<tonic::body::Body>>>::Future: Send + 'static,
{
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _reporter = _reporter;
        Server::builder()
            .layer(stack)
            .add_service(health)
            .serve_with_incoming(TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// One health check with `metadata` (name, value) on the call.
pub async fn health_check(
    channel: Channel,
    metadata: &[(&'static str, String)],
) -> Result<(), tonic::Status> {
    let md: Vec<(&'static str, MetadataValue<_>)> = metadata
        .iter()
        .map(|(k, v)| (*k, v.parse().unwrap()))
        .collect();
    let mut client = HealthClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
        for (k, v) in &md {
            req.metadata_mut().insert(*k, v.clone());
        }
        Ok(req)
    });
    client
        .check(HealthCheckRequest::default())
        .await
        .map(|_| ())
}
