//! Login sessions with refresh-token rotation over HTTP (tests/lifecycle.rs, tests/redis.rs):
//! the access tokens' claims and issuer, the `/refresh` endpoint, and its client.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tower_jwt_auth::issue::TokenIssuer;
use tower_jwt_auth::issue::{RefreshError, RefreshTokens, TokenResponse};

use super::{AUDIENCE, ISSUER, SECRET};

pub const REFRESH_SECRET: &[u8] = b"a separate refresh-token secret, 32 bytes or more";

/// The application claims carried in access tokens.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Roles {
    pub roles: Vec<String>,
}

/// Access tokens (HS256 with [`SECRET`]) for the test issuer and audience.
pub fn access_issuer() -> TokenIssuer {
    TokenIssuer::hs256(SECRET)
        .unwrap()
        .issuer(ISSUER)
        .audience(AUDIENCE)
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
