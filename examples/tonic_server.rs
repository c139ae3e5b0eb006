//! A gRPC server: the standard health service, open, and a Greeter that needs a JWT.
//!
//! ```sh
//! cargo run --features tonic --example tonic_server
//! # in a second terminal, with the secret the server printed (or the one you gave it):
//! JWT_SECRET=... cargo run --features tonic --example tonic_server -- client
//! ```
//!
//! Environment, as in the quickstart: `BIND_ADDR` (default `127.0.0.1:50051`; the client
//! connects there), `JWT_SECRET` (at least 32 bytes; a random one is generated and printed
//! when unset), `JWT_ISSUER` (default `tower-jwt-auth-demo`), `JWT_AUDIENCE` (default
//! `demo-api`).
//!
//! - `grpc.health.v1.Health/Check` answers without a token, so load balancers can probe it.
//! - `helloworld.Greeter/SayHello` needs `authorization: Bearer <access token>` metadata
//!   (HS256, `iss`, `aud`, `exp`, header `typ` `at+jwt`): without a valid one the caller gets
//!   `Code::Unauthenticated` (HTTP 200, `grpc-status: 16`) and the Greeter never runs; with one,
//!   the reply names the token's `sub`.
//!
//! Only the Greeter is wrapped: `add_service(auth.layer(greeter))`. `JwtAuth` forwards the
//! Greeter's `NamedService` name (feature `tonic`), so tonic's router still routes to it.
//!
//! The Greeter is written by hand (prost messages and a `tower::Service`) so that the example
//! builds without `protoc`; a real service would use the code `tonic-prost-build` generates
//! from `helloworld.proto`, which plugs in exactly the same way.

use std::convert::Infallible;
use std::error::Error;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::uri::PathAndQuery;
use serde::Deserialize;
use tonic::body::Body;
use tonic::metadata::MetadataValue;
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tonic_prost::ProstCodec;
use tower::Layer;
use tower_jwt_auth::issue::TokenIssuer;
use tower_jwt_auth::{JwtAuth, JwtAuthLayer, grpc};

/// What the Greeter reads from a verified token.
#[derive(Debug, Deserialize)]
struct Caller {
    sub: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let client_mode = std::env::args().nth(1).as_deref() == Some("client");
    let config = Config::from_env(client_mode)?;
    if client_mode {
        client(&config).await
    } else {
        server(&config).await
    }
}

struct Config {
    addr: String,
    secret: String,
    issuer: String,
    audience: String,
}

impl Config {
    fn from_env(client_mode: bool) -> Result<Config, Box<dyn Error>> {
        let secret = match std::env::var("JWT_SECRET") {
            Ok(s) => s,
            Err(_) if client_mode => {
                return Err("client mode needs the server's JWT_SECRET in the environment".into());
            }
            Err(_) => {
                let mut s = [0u8; 32];
                getrandom::fill(&mut s)?;
                let hex: String = s.iter().map(|b| format!("{b:02x}")).collect();
                // Printed so a client can be given the same secret; never log real secrets.
                println!("JWT_SECRET not set; using a random secret for this run: {hex}");
                hex
            }
        };
        Ok(Config {
            addr: env_or("BIND_ADDR", "127.0.0.1:50051"),
            secret,
            issuer: env_or("JWT_ISSUER", "tower-jwt-auth-demo"),
            audience: env_or("JWT_AUDIENCE", "demo-api"),
        })
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

async fn server(config: &Config) -> Result<(), Box<dyn Error>> {
    // Issuer, audience and `typ` pinned: a token minted for another API, or an ID token, is
    // refused even though its signature is fine. A secret under 32 bytes is refused here.
    let auth = JwtAuthLayer::<Caller>::builder()
        .hs256(config.secret.as_bytes())
        .issuer(&config.issuer)
        .audience(&config.audience)
        .token_type("at+jwt")
        .build()?;
    let greeter = auth.layer(Greeter);

    let (reporter, health) = tonic_health::server::health_reporter();
    // The wrapped Greeter still has the Greeter's name: `helloworld.Greeter`.
    reporter.set_serving::<JwtAuth<Greeter, Caller>>().await;

    // Bound before announcing, so "listening on" is printed only once connections work (and
    // BIND_ADDR=127.0.0.1:0 reports the real port).
    let listener = tokio::net::TcpListener::bind(&config.addr).await?;
    println!("listening on {}", listener.local_addr()?);

    Server::builder()
        .add_service(health) // open
        .add_service(greeter) // behind the layer
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// helloworld.Greeter, by hand (what tonic-prost-build would generate from helloworld.proto)

/// `message HelloRequest { string name = 1; }`
#[derive(Clone, PartialEq, prost::Message)]
struct HelloRequest {
    #[prost(string, tag = "1")]
    name: String,
}

/// `message HelloReply { string message = 1; }`
#[derive(Clone, PartialEq, prost::Message)]
struct HelloReply {
    #[prost(string, tag = "1")]
    message: String,
}

const SAY_HELLO: &str = "/helloworld.Greeter/SayHello";

/// `service Greeter { rpc SayHello (HelloRequest) returns (HelloReply); }`
#[derive(Clone, Copy)]
struct Greeter;

impl Greeter {
    /// The RPC itself. The layer already refused calls without a valid token; the claims it
    /// verified ride along in the request's extensions.
    async fn say_hello(request: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        let caller = grpc::claims::<Caller, _>(&request)?;
        let name = &request.get_ref().name;
        let name = if name.is_empty() { "world" } else { name };
        Ok(Response::new(HelloReply {
            message: format!("Hello {name}, {}!", caller.sub),
        }))
    }
}

impl NamedService for Greeter {
    const NAME: &'static str = "helloworld.Greeter";
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tower::Service<http::Request<Body>> for Greeter {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        match request.uri().path() {
            SAY_HELLO => Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(ProstCodec::default());
                let rpc = tower::service_fn(Greeter::say_hello);
                Ok(grpc.unary(rpc, request).await)
            }),
            _ => Box::pin(async { Ok(Status::unimplemented("no such method").into_http()) }),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The client

async fn client(config: &Config) -> Result<(), Box<dyn Error>> {
    // In production an identity provider issues the token; here the client signs its own with
    // the shared secret, as the example's stand-in for a login.
    let issued = TokenIssuer::hs256(config.secret.as_bytes())?
        .issuer(&config.issuer)
        .audience(&config.audience)
        .issue("alice", &serde_json::json!({}))?;
    let bearer: MetadataValue<_> = format!("Bearer {}", issued.token).parse()?;

    let channel = Channel::from_shared(format!("http://{}", config.addr))?
        .connect()
        .await?;

    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest::default())
        .await?;
    println!("health without token: {:?}", health.into_inner().status());

    let hello = || {
        Request::new(HelloRequest {
            name: "gRPC".into(),
        })
    };
    match say_hello(channel.clone(), hello()).await {
        Ok(reply) => println!("SayHello without token: unexpectedly {reply:?}"),
        Err(status) => println!("SayHello without token: {:?}", status.code()),
    }

    let mut request = hello();
    request.metadata_mut().insert("authorization", bearer);
    let reply = say_hello(channel, request).await?;
    println!("SayHello with token: {}", reply.message);
    Ok(())
}

/// A unary call of `helloworld.Greeter/SayHello` (what a generated `GreeterClient` does).
async fn say_hello(channel: Channel, request: Request<HelloRequest>) -> Result<HelloReply, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let reply = grpc
        .unary(
            request,
            PathAndQuery::from_static(SAY_HELLO),
            ProstCodec::default(),
        )
        .await?;
    Ok(reply.into_inner())
}
