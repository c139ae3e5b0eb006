//! An API behind the layer (tests/remote_layer.rs, tests/oidc_layer.rs): `/me` on 127.0.0.1
//! answering the verified claims as JSON, a count of the requests that reached its handler (a
//! rejected request must never get there), and a client that collects what it answered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::routing::get;
use reqwest::StatusCode;
use serde_json::Value;
use tower_jwt_auth::{Claims, JwtAuthLayer};

use super::serve;

pub struct Api {
    pub addr: SocketAddr,
    /// Requests that reached the handler.
    handled: Arc<AtomicUsize>,
    pub client: reqwest::Client,
}

/// What `/me` answered.
pub struct Reply {
    pub status: StatusCode,
    pub www_authenticate: Option<String>,
    pub retry_after: Option<String>,
    pub body: String,
}

impl Api {
    /// An API whose `/me` answers the verified claims, behind `layer`.
    pub async fn start(layer: JwtAuthLayer<Value>) -> Api {
        let handled = Arc::new(AtomicUsize::new(0));
        let counter = handled.clone();
        let app = Router::new()
            .route(
                "/me",
                get(move |claims: Claims<Value>| {
                    let counter = counter.clone();
                    async move {
                        counter.fetch_add(1, Ordering::SeqCst);
                        axum::Json(Value::clone(&claims))
                    }
                }),
            )
            .layer(layer);
        Api {
            addr: serve(app).await,
            handled,
            client: reqwest::Client::new(),
        }
    }

    /// Requests that reached the handler so far.
    pub fn handled(&self) -> usize {
        self.handled.load(Ordering::SeqCst)
    }

    /// `GET /me` with `token` as the bearer token.
    pub async fn me(&self, token: &str) -> Reply {
        call(&self.client, self.addr, token).await
    }
}

/// `GET http://<addr>/me` with `token` as the bearer token, from `client`.
pub async fn call(client: &reqwest::Client, addr: SocketAddr, token: &str) -> Reply {
    let response = client
        .get(format!("http://{addr}/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let www_authenticate = header("www-authenticate");
    let retry_after = header("retry-after");
    Reply {
        status: response.status(),
        www_authenticate,
        retry_after,
        body: response.text().await.unwrap(),
    }
}
