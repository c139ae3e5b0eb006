//! An axum server that issues and checks its own HS256 access tokens.
//!
//! ```text
//! cargo run --example quickstart
//! curl -s -X POST localhost:3000/login -H 'content-type: application/json' \
//!      -d '{"username":"alice","password":"wonderland"}'
//! curl -s localhost:3000/me -H "authorization: Bearer $TOKEN"
//! ```
//!
//! Environment: `BIND_ADDR` (default 127.0.0.1:3000), `JWT_SECRET` (at least 32 bytes; a
//! random one is generated and printed when unset), `JWT_ISSUER`, `JWT_AUDIENCE`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tower_jwt_auth::{Claims, JwtAuthLayer, TokenIssuer};

/// What a handler learns about the caller: the registered claims it cares about and the roles.
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

/// The application claims the issuer adds to the registered ones.
#[derive(Serialize)]
struct Roles<'a> {
    roles: &'a [&'a str],
}

/// Demo users: (name, password, roles). A real service checks a password hash store.
const USERS: &[(&str, &str, &[&str])] = &[
    ("alice", "wonderland", &["admin"]),
    ("bob", "builder", &["user"]),
];

struct App {
    issuer: TokenIssuer,
}

#[derive(Deserialize)]
struct Login {
    username: String,
    password: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = env_or("BIND_ADDR", "127.0.0.1:3000").parse()?;
    let iss = env_or("JWT_ISSUER", "tower-jwt-auth-demo");
    let aud = env_or("JWT_AUDIENCE", "demo-api");
    let secret = match std::env::var("JWT_SECRET") {
        Ok(s) => s.into_bytes(),
        Err(_) => {
            let mut s = [0u8; 32];
            getrandom::fill(&mut s)?;
            let hex: String = s.iter().map(|b| format!("{b:02x}")).collect();
            // Printed so tokens can be inspected while trying the demo; never log real secrets.
            println!("JWT_SECRET not set; using a random secret for this run: {hex}");
            hex.into_bytes()
        }
    };

    let issuer = TokenIssuer::hs256(&secret)?
        .with_issuer(&iss)
        .with_audience(&aud);
    let auth = JwtAuthLayer::<User>::builder()
        .hs256(&secret)
        .issuer(&iss)
        .audience(&aud)
        // Only access tokens: a token of another type signed with the same secret is refused.
        .token_type("at+jwt")
        .token_from_cookie("access_token")
        .realm("tower-jwt-auth-demo")
        .build()?;

    let protected = Router::new()
        .route("/me", get(me))
        .route("/admin", get(admin))
        .layer(auth);
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/login", post(login))
        .merge(protected)
        .with_state(Arc::new(App { issuer }));

    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await?;
    Ok(())
}

async fn login(State(app): State<Arc<App>>, Json(login): Json<Login>) -> Response {
    let Some((name, _, roles)) = USERS.iter().find(|(u, p, _)| {
        *u == login.username && constant_time_eq(p.as_bytes(), login.password.as_bytes())
    }) else {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "invalid credentials" })),
        )
            .into_response();
    };
    let issued = match app.issuer.issue(name, &Roles { roles }) {
        Ok(issued) => issued,
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let cookie = format!(
        "access_token={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        issued.token, issued.expires_in
    );
    let mut res = Json(json!({
        "access_token": issued.token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
    }))
    .into_response();
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    res
}

async fn me(user: Claims<User>) -> Json<User> {
    Json(user.into_inner())
}

async fn admin(user: Claims<User>) -> Response {
    if user.roles.iter().any(|r| r == "admin") {
        Json(json!({ "hello": user.sub })).into_response()
    } else {
        let challenge =
            "Bearer realm=\"tower-jwt-auth-demo\", error=\"insufficient_scope\", scope=\"admin\"";
        (
            StatusCode::FORBIDDEN,
            [(header::WWW_AUTHENTICATE, challenge)],
        )
            .into_response()
    }
}

/// Compares without an early exit, so response timing does not reveal how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

async fn shutdown() {
    let _ = tokio::signal::ctrl_c().await;
}
