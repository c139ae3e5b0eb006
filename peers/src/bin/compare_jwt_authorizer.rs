//! The quickstart's `/health` and `/me`, behind jwt-authorizer 0.15 (axum 0.7) instead of
//! tower-jwt-auth, for the load test in BENCHMARKS.md (`scripts/loadtest.sh`).
//!
//! ```text
//! JWT_SECRET=… cargo run --release -p tower-jwt-auth-peers --bin compare_jwt_authorizer
//! ```
//!
//! Environment: `BIND_ADDR` (default 127.0.0.1:3100), `JWT_SECRET` (required: the secret the
//! quickstart signs with), `JWT_ISSUER`, `JWT_AUDIENCE` (the quickstart's defaults).

use axum07 as axum;

use axum::routing::get;
use axum::{Json, Router};
use jwt_authorizer::{IntoLayer, JwtAuthorizer, JwtClaims, Validation};
use serde::{Deserialize, Serialize};

/// The quickstart's claims.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct User {
    sub: String,
    iss: String,
    aud: String,
    exp: u64,
    iat: u64,
    jti: String,
    roles: Vec<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:3100".into());
    let secret = std::env::var("JWT_SECRET").map_err(|_| "JWT_SECRET is required")?;
    let iss = std::env::var("JWT_ISSUER").unwrap_or_else(|_| "tower-jwt-auth-demo".into());
    let aud = std::env::var("JWT_AUDIENCE").unwrap_or_else(|_| "demo-api".into());

    // As jwt-authorizer's README sets it up: builder, validation, `.build().await`, layer.
    let auth = JwtAuthorizer::<User>::from_secret(&secret)
        .validation(Validation::new().iss(&[iss.as_str()]).aud(&[aud.as_str()]))
        .build()
        .await?;
    let app = Router::new()
        .route(
            "/me",
            get(|JwtClaims(user): JwtClaims<User>| async move { Json(user) }),
        )
        .layer(auth.into_layer())
        .route("/health", get(|| async { "ok" }));

    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
