//! Login sessions with refresh-token rotation over HTTP (`lifecycle`, `redis`): the access
//! tokens' claims and issuer, the `/login` and `/refresh` endpoints, and their client.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tower_jwt_auth::Algorithm;
use tower_jwt_auth::issue::IssuedToken;
use tower_jwt_auth::issue::{RefreshError, RefreshTokens, TokenResponse};

use super::server::{client, get_with, serve};
use super::{AUDIENCE, ISSUER, access_issuer, hs256_key, sign_raw};

pub const REFRESH_SECRET: &[u8] = b"a separate refresh-token secret, 32 bytes or more";

/// The application claims carried in access tokens.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Roles {
    pub roles: Vec<String>,
}

/// An access token for `sub` (no roles) from [`access_issuer`].
pub fn issue(sub: &str) -> IssuedToken {
    access_issuer()
        .issue(sub, &Roles { roles: vec![] })
        .unwrap()
}

/// An access token for `sub` as [`access_issuer`] makes them (HS256, `typ` `at+jwt`), with
/// `jti`, `iat` and `exp` as given.
pub fn access_token_at(sub: &str, jti: &str, iat: u64, exp: u64) -> String {
    sign_raw(
        &json!({ "alg": "HS256", "typ": "at+jwt" }),
        &json!({ "sub": sub, "iss": ISSUER, "aud": AUDIENCE, "jti": jti, "iat": iat, "exp": exp }),
        Algorithm::HS256,
        &hs256_key(),
    )
}

/// The body of `POST /login`.
#[derive(Serialize, Deserialize)]
pub struct LoginRequest {
    pub user: String,
}

/// The body of `POST /refresh`.
#[derive(Serialize, Deserialize)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

/// What `/refresh` answered.
pub enum Refreshed {
    /// 200: the rotated pair.
    Ok(TokenResponse),
    /// 401, with the `error` of its body.
    Refused(String),
}

/// The `error` `/refresh` answers for `e`.
pub fn refresh_error_kind(e: &RefreshError) -> &'static str {
    match e {
        RefreshError::Invalid(_) => "invalid",
        RefreshError::Revoked => "revoked",
        RefreshError::ReuseDetected => "reuse_detected",
        RefreshError::Store(_) => "store",
        _ => "other",
    }
}

/// `POST /refresh` with a [`RefreshRequest`]: the rotated pair as a token response, or 401
/// with `{"error": kind}` (see [`refresh_error_kind`]).
pub async fn refresh_endpoint(
    State(sessions): State<Arc<RefreshTokens<Roles>>>,
    Json(req): Json<RefreshRequest>,
) -> Response {
    match sessions.refresh(&req.refresh_token).await {
        Ok(pair) => Json(pair.to_response()).into_response(),
        Err(e) => (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": refresh_error_kind(&e) })),
        )
            .into_response(),
    }
}

/// `POST /login` with a [`LoginRequest`]: a new pair for the user, with the role `user`.
pub async fn login_endpoint(
    State(sessions): State<Arc<RefreshTokens<Roles>>>,
    Json(req): Json<LoginRequest>,
) -> Json<TokenResponse> {
    let pair = sessions
        .issue(
            &req.user,
            &Roles {
                roles: vec!["user".into()],
            },
        )
        .unwrap();
    Json(pair.to_response())
}

/// `/login` ([`login_endpoint`]) and `/refresh` ([`refresh_endpoint`]), both public.
pub fn routes(sessions: Arc<RefreshTokens<Roles>>) -> Router {
    Router::new()
        .route("/login", post(login_endpoint))
        .route("/refresh", post(refresh_endpoint))
        .with_state(sessions)
}

/// A server with [`routes`] (and whatever else its router has), seen from a client.
pub struct SessionServer {
    pub base: String,
}

impl SessionServer {
    /// Serves `app` on 127.0.0.1.
    pub async fn start(app: Router) -> SessionServer {
        SessionServer {
            base: format!("http://{}", serve(app).await),
        }
    }

    /// Logs `user` in: the pair `/login` answered.
    pub async fn login(&self, user: &str) -> TokenResponse {
        let res = client()
            .post(format!("{}/login", self.base))
            .json(&LoginRequest {
                user: user.to_owned(),
            })
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.unwrap()
    }

    /// Presents `refresh_token` to `/refresh`.
    pub async fn refresh(&self, refresh_token: &str) -> Refreshed {
        refresh(&client(), &self.base, refresh_token).await
    }

    /// `GET /me` with `token` as the bearer token.
    pub async fn me(&self, token: &str) -> reqwest::Response {
        get_with(&format!("{}/me", self.base), Some(token)).await
    }
}

/// Presents `refresh_token` to `{base}/refresh` with `client`.
pub async fn refresh(client: &reqwest::Client, base: &str, refresh_token: &str) -> Refreshed {
    let res = client
        .post(format!("{base}/refresh"))
        .json(&RefreshRequest {
            refresh_token: refresh_token.to_owned(),
        })
        .send()
        .await
        .unwrap();
    match res.status() {
        StatusCode::OK => Refreshed::Ok(res.json().await.unwrap()),
        StatusCode::UNAUTHORIZED => {
            let body: serde_json::Value = res.json().await.unwrap();
            Refreshed::Refused(body["error"].as_str().unwrap().to_owned())
        }
        other => panic!("unexpected status {other}"),
    }
}

#[track_caller]
pub fn refreshed(r: Refreshed) -> TokenResponse {
    match r {
        Refreshed::Ok(t) => t,
        Refreshed::Refused(e) => panic!("refresh refused: {e}"),
    }
}

#[track_caller]
pub fn refused(r: Refreshed) -> String {
    match r {
        Refreshed::Ok(_) => panic!("refresh unexpectedly accepted"),
        Refreshed::Refused(e) => e,
    }
}
