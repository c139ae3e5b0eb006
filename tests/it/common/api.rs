//! An API behind the layer: `/me` on 127.0.0.1 answering the verified claims as JSON, a count
//! of the requests that reached its handler (a rejected request must never get there), and a
//! client that reads what it answered.

use std::net::SocketAddr;

use axum::Router;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tower_jwt_auth::JwtAuthLayer;

use super::server::{Hits, Reply, claims_json, client, serve};

pub struct Api {
    pub addr: SocketAddr,
    /// Requests that reached the handler.
    pub hits: Hits,
    pub client: reqwest::Client,
}

impl Api {
    /// An API whose `/me` answers the verified claims, behind `layer`.
    pub async fn start<C>(layer: JwtAuthLayer<C>) -> Api
    where
        C: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let hits = Hits::default();
        let app = Router::new()
            .route("/me", claims_json::<C>(&hits))
            .layer(layer);
        Api {
            addr: serve(app).await,
            hits,
            client: client(),
        }
    }

    /// `http://<addr>/me`.
    pub fn url(&self) -> String {
        format!("http://{}/me", self.addr)
    }

    /// Requests that reached the handler so far.
    pub fn handled(&self) -> usize {
        self.hits.count()
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
    Reply::read(response).await
}
