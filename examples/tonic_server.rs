//! A gRPC server (tonic + the standard health service) behind `JwtAuthLayer`, and its client.
//!
//! Run the server, then the client in a second terminal with the same secret:
//!
//! ```sh
//! JWT_SECRET=an-example-secret-of-at-least-32-bytes cargo run --example tonic_server
//! JWT_SECRET=an-example-secret-of-at-least-32-bytes cargo run --example tonic_server -- client
//! ```
//!
//! `BIND_ADDR` (default `127.0.0.1:50051`) is where the server listens and the client
//! connects. Without `JWT_SECRET` the server makes up a random secret and prints it.
//!
//! The layer sits in front of every gRPC service, so a call without a valid token never
//! reaches one: the caller gets `Code::Unauthenticated` (HTTP 200, `grpc-status: 16`).

use std::error::Error;

use serde::{Deserialize, Serialize};
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tower_jwt_auth::issue::TokenIssuer;
use tower_jwt_auth::{Claims, JwtAuthLayer};

const ISSUER: &str = "https://id.example.com";
const AUDIENCE: &str = "health-api";

/// What the server's services read from a verified token.
#[derive(Debug, Serialize, Deserialize)]
struct AppClaims {
    sub: String,
    #[serde(default)]
    roles: Vec<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let addr = std::env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:50051".into());
    match std::env::args().nth(1).as_deref() {
        Some("client") => client(&addr).await,
        _ => server(&addr).await,
    }
}

async fn server(addr: &str) -> Result<(), Box<dyn Error>> {
    let secret = match std::env::var("JWT_SECRET") {
        Ok(s) if s.len() >= 32 => s,
        _ => {
            // HS256 needs at least 32 bytes of secret (RFC 7518 §3.2); 32 random bytes as
            // hex are printable, so the client can be given the same value.
            let s: String = rand::random::<[u8; 32]>()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            println!("JWT_SECRET unset or shorter than 32 bytes; using JWT_SECRET={s}");
            s
        }
    };

    // Issuer, audience and `typ` pinned: a token minted for another API, or an ID token,
    // is refused even though its signature is fine.
    let auth = JwtAuthLayer::<AppClaims>::builder()
        .hs256(secret.as_bytes())
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .token_type("at+jwt")
        .build()?;

    let (_reporter, health) = tonic_health::server::health_reporter();
    // The layer put the claims in the HTTP request extensions; tonic hands those through,
    // so any service (here an interceptor, since the health service is generated) reads them.
    let health = InterceptedService::new(health, log_caller);

    // Bind before announcing, so "listening on" is only printed once connections work
    // (and BIND_ADDR=127.0.0.1:0 reports the real port).
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on {}", listener.local_addr()?);

    Server::builder()
        // `layer` wraps the router, whose body type is `tonic::body::Body`: the layer's
        // rejections use `Body::default()`, an empty body, which gRPC trailers-only needs.
        .layer(auth)
        .add_service(health)
        .serve_with_incoming(TcpIncoming::from(listener))
        .await?;
    Ok(())
}

/// Server-side interceptor: shows who called (the claims are always there, past the layer).
fn log_caller(req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    if let Some(claims) = req.extensions().get::<Claims<AppClaims>>() {
        println!("call from {} (roles {:?})", claims.sub, claims.roles);
    }
    Ok(req)
}

async fn client(addr: &str) -> Result<(), Box<dyn Error>> {
    let secret = std::env::var("JWT_SECRET")
        .map_err(|_| "client mode needs the server's JWT_SECRET in the environment")?;

    // In production an identity provider issues the token; here the client signs its own
    // with the shared secret, as the example's stand-in for a login.
    let issued = TokenIssuer::hs256(secret.as_bytes())?
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .issue("alice", &serde_json::json!({ "roles": ["ops"] }))?;
    let bearer: MetadataValue<_> = format!("Bearer {}", issued.token).parse()?;

    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;

    // Without a token: refused by the layer before the health service runs.
    let mut anonymous = HealthClient::new(channel.clone());
    match anonymous.check(HealthCheckRequest::default()).await {
        Ok(_) => println!("without token: unexpectedly accepted"),
        Err(status) => println!("without token: {:?} ({})", status.code(), status.message()),
    }

    // With a token: the interceptor adds it to every call made through this client.
    let mut client = HealthClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
        req.metadata_mut().insert("authorization", bearer.clone());
        Ok(req)
    });
    let response = client.check(HealthCheckRequest::default()).await?;
    println!("with token: {:?}", response.into_inner().status());
    Ok(())
}
