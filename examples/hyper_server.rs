//! `JwtAuthLayer` in a plain hyper 1 server, no framework: the layer wraps a
//! `tower::service_fn` and hyper-util adapts the stack to hyper.
//!
//! ```sh
//! JWT_SECRET=an-example-secret-of-at-least-32-bytes cargo run --example hyper_server
//! curl -i http://127.0.0.1:3001/                       # 401, WWW-Authenticate: Bearer realm="hyper-example"
//! curl -i -H "Authorization: Bearer $TOKEN" http://127.0.0.1:3001/
//! ```
//!
//! `BIND_ADDR` defaults to `127.0.0.1:3001`. Without `JWT_SECRET` the server makes up a
//! random secret and prints it together with a token signed with it, for trying things out.

use std::convert::Infallible;
use std::error::Error;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde::{Deserialize, Serialize};
use tower::{Layer, service_fn};
use tower_jwt_auth::issue::TokenIssuer;
use tower_jwt_auth::{Claims, JwtAuthLayer};

/// What the handler reads from a verified token.
#[derive(Debug, Serialize, Deserialize)]
struct AppClaims {
    sub: String,
}

/// The handler: it only runs for requests the layer let through, so the claims are there.
async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = match req.extensions().get::<Claims<AppClaims>>() {
        Some(claims) => format!("hello {}\n", claims.sub),
        // Only reachable if the layer were configured `.optional()`.
        None => "hello stranger\n".to_owned(),
    };
    Ok(Response::new(Full::new(Bytes::from(body))))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let addr = std::env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:3001".into());
    let secret = match std::env::var("JWT_SECRET") {
        Ok(s) if s.len() >= 32 => s,
        _ => {
            // HS256 needs at least 32 bytes of secret (RFC 7518 §3.2).
            let s: String = rand::random::<[u8; 32]>()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let token = TokenIssuer::hs256(s.as_bytes())?.issue("alice", &serde_json::json!({}))?;
            println!("JWT_SECRET unset or shorter than 32 bytes; using JWT_SECRET={s}");
            println!("a token for it: TOKEN={}", token.token);
            s
        }
    };

    // Built once: a bad configuration fails here, at start-up, not per request.
    let auth = JwtAuthLayer::<AppClaims>::builder()
        .hs256(secret.as_bytes())
        .realm("hyper-example")
        .build()?;
    // Refusals are answered with `Full::default()`, an empty body of the handler's body type.
    let service = auth.layer(service_fn(handle));

    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);

    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(conn) => conn,
            // A failed accept (e.g. out of file descriptors) is no reason to stop serving.
            Err(e) => {
                eprintln!("accept failed: {e}");
                continue;
            }
        };
        // Cloning the stack is cheap: the layer's state sits behind one Arc.
        let service = TowerToHyperService::new(service.clone());
        tokio::spawn(async move {
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                eprintln!("connection error: {e}");
            }
        });
    }
}
