//! An axum server that issues and checks its own HS256 access tokens: the whole lifecycle of
//! login, authenticated calls, role checks, refresh-token rotation and logout.
//!
//! ```text
//! cargo run --example quickstart
//! curl -s -X POST localhost:3000/login -H 'content-type: application/json' \
//!      -d '{"username":"alice","password":"wonderland"}'
//! curl -s localhost:3000/me -H "authorization: Bearer $ACCESS_TOKEN"
//! curl -s -X POST localhost:3000/refresh -H 'content-type: application/json' \
//!      -d "{\"refresh_token\":\"$REFRESH_TOKEN\"}"
//! curl -s -X POST localhost:3000/logout -H "authorization: Bearer $ACCESS_TOKEN"
//! curl -s localhost:3000/metrics   # Prometheus text format
//! ```
//!
//! Environment: `BIND_ADDR` (default 127.0.0.1:3000), `JWT_SECRET` (at least 32 bytes; a
//! random one is generated and printed when unset), `JWT_ISSUER`, `JWT_AUDIENCE`, and
//! `REDIS_URL` to keep revocations in Redis (build with `--features redis`) instead of memory.
//!
//! `GET /metrics` serves the layer's metrics (`tower_jwt_auth_requests_total{outcome,reason}`,
//! …) in the Prometheus text format, rendered from a `metrics-exporter-prometheus` recorder
//! installed at start-up (no listener of its own). Built without the default `metrics`
//! feature, `/metrics` answers 404.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tower_jwt_auth::authorize::HasRoles;
use tower_jwt_auth::authorize::RequireClaimsLayer;
use tower_jwt_auth::issue::TokenIssuer;
use tower_jwt_auth::issue::{AccessTokenCookie, RefreshError, RefreshTokens};
use tower_jwt_auth::revocation::{MemoryRevocation, RevocationStore};
use tower_jwt_auth::{Claims, JwtAuthLayer};

/// What a handler learns about the caller.
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

impl HasRoles for User {
    fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// The application claims the issuer adds to the registered ones.
#[derive(Serialize, Deserialize)]
struct Roles {
    roles: Vec<String>,
}

/// Demo users: (name, password, roles). A real service checks a password-hash store.
const USERS: &[(&str, &str, &[&str])] = &[
    ("alice", "wonderland", &["admin"]),
    ("bob", "builder", &["user"]),
];

struct App {
    sessions: RefreshTokens<Roles>,
    revocation: Arc<dyn RevocationStore>,
    /// Plain-http cookies are allowed only when the server listens on loopback.
    addr: SocketAddr,
}

#[derive(Deserialize)]
struct Login {
    username: String,
    password: String,
}

#[derive(Deserialize)]
struct Refresh {
    refresh_token: String,
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
    // Refresh tokens get a key of their own, so no access-token check can ever accept one.
    let refresh_secret = [secret.as_slice(), b"/refresh"].concat();
    let revocation = revocation_store().await?;

    let access = TokenIssuer::hs256(&secret)?.issuer(&iss).audience(&aud);
    let sessions = RefreshTokens::new(access, &refresh_secret, revocation.clone())?;
    let auth = JwtAuthLayer::<User>::builder()
        .hs256(&secret)
        .issuer(&iss)
        .audience(&aud)
        .token_type("at+jwt")
        .token_from_cookie("access_token")
        .revocation(revocation.clone())
        .realm("tower-jwt-auth-demo")
        .build()?;

    let protected = Router::new()
        .route("/me", get(me))
        .route(
            "/admin",
            get(admin).route_layer(
                RequireClaimsLayer::<User>::any_role(["admin"]).realm("tower-jwt-auth-demo"),
            ),
        )
        .route("/logout", post(logout))
        .layer(auth);
    let app = Router::new().route("/health", get(|| async { "ok" }));
    #[cfg(feature = "metrics")]
    let app = {
        use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
        // Latency as a Prometheus histogram (buckets from 10 µs to 100 ms), not a summary.
        let buckets = [1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 1e-2, 1e-1];
        let prometheus = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(tower_jwt_auth::metrics::VERIFY_DURATION_SECONDS.to_owned()),
                &buckets,
            )?
            .install_recorder()?;
        tower_jwt_auth::metrics::describe();
        app.route(
            "/metrics",
            get(move || std::future::ready(metrics_text(&prometheus))),
        )
    };
    // Said plainly, rather than the layer's 401 for unknown paths.
    #[cfg(not(feature = "metrics"))]
    let app = app.route(
        "/metrics",
        get(|| async { (StatusCode::NOT_FOUND, "run with `--features metrics`\n") }),
    );
    let app = app
        .route("/login", post(login))
        .route("/refresh", post(refresh))
        .merge(protected)
        .with_state(Arc::new(App {
            sessions,
            revocation,
            addr,
        }));

    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await?;
    Ok(())
}

/// Redis when `REDIS_URL` is set (a fleet shares revocations; each server checks its copy in
/// memory, fed by a Redis Stream), memory otherwise.
async fn revocation_store() -> Result<Arc<dyn RevocationStore>, Box<dyn std::error::Error>> {
    match std::env::var("REDIS_URL") {
        #[cfg(feature = "redis")]
        Ok(url) => Ok(Arc::new(
            tower_jwt_auth::revocation::RedisRevocation::connect(&url)
                .await?
                .replicate()
                .await?,
        )),
        #[cfg(not(feature = "redis"))]
        Ok(_) => Err("REDIS_URL is set: run with `--features redis`".into()),
        Err(_) => Ok(Arc::new(MemoryRevocation::new())),
    }
}

async fn login(State(app): State<Arc<App>>, Json(login): Json<Login>) -> Response {
    let user = USERS.iter().find(|(u, p, _)| {
        // Both comparisons always run, so timing does not tell which one failed.
        (*u == login.username) & constant_time_eq(p.as_bytes(), login.password.as_bytes())
    });
    let Some((name, _, roles)) = user else {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "invalid_grant" })),
        )
            .into_response();
    };
    let roles = Roles {
        roles: roles.iter().map(|r| r.to_string()).collect(),
    };
    match app.sessions.issue(name, &roles) {
        Ok(pair) => {
            let mut cookie = AccessTokenCookie::new("access_token", &pair.access);
            if let Ok(dev) = cookie.clone().insecure_on_loopback(app.addr.ip()) {
                cookie = dev;
            }
            (
                [(header::SET_COOKIE, cookie.to_header_value())],
                Json(pair.to_response()),
            )
                .into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn refresh(State(app): State<Arc<App>>, Json(body): Json<Refresh>) -> Response {
    match app.sessions.refresh(&body.refresh_token).await {
        Ok(pair) => Json(pair.to_response()).into_response(),
        Err(RefreshError::Store(_)) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        // Invalid, revoked or reused: RFC 6749 §5.2 `invalid_grant`.
        Err(_) => (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "invalid_grant" })),
        )
            .into_response(),
    }
}

async fn logout(State(app): State<Arc<App>>, user: Claims<User>) -> Response {
    if app.revocation.revoke(&user.jti, user.exp).await.is_err() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let clear = AccessTokenCookie::removal("access_token").to_header_value();
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear)]).into_response()
}

async fn me(user: Claims<User>) -> Json<User> {
    Json(user.into_inner())
}

async fn admin(user: Claims<User>) -> Json<serde_json::Value> {
    Json(json!({ "hello": user.sub, "roles": user.roles }))
}

/// The Prometheus text exposition format (version 0.0.4) of everything recorded so far.
#[cfg(feature = "metrics")]
fn metrics_text(prometheus: &metrics_exporter_prometheus::PrometheusHandle) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        prometheus.render(),
    )
        .into_response()
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
