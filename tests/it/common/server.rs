//! Real servers on 127.0.0.1 and their client: axum handlers that count the requests reaching
//! them (a refused request must never get there), and what a response said.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::{MethodFilter, MethodRouter, get, on};
use reqwest::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tower_jwt_auth::{Claims, JwtAuthLayer};

use super::TestClaims;

/// Serves an axum router on 127.0.0.1 (a fresh port); returns its address.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    addr
}

/// How many requests reached a handler.
#[derive(Debug, Clone, Default)]
pub struct Hits(Arc<AtomicUsize>);

impl Hits {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    /// The count so far, starting again from zero.
    pub fn take(&self) -> usize {
        self.0.swap(0, Ordering::SeqCst)
    }

    /// Counts one request.
    pub fn hit(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Claims types whose subject a handler can answer.
pub trait Subject {
    fn subject(&self) -> &str;
}

impl Subject for TestClaims {
    fn subject(&self) -> &str {
        &self.sub
    }
}

/// Untyped claims: their `sub`, or `""`.
impl Subject for Value {
    fn subject(&self) -> &str {
        self.get("sub").and_then(Value::as_str).unwrap_or_default()
    }
}

/// What [`subject_handler`] answers.
pub type Answer = Pin<Box<dyn Future<Output = String> + Send>>;

/// A handler that counts its calls and answers the subject of the claims, or `anonymous` when
/// the request has none (an optional layer let it through). For every method, `any(..)` of it.
pub fn subject_handler<C: Subject + Send + Sync + 'static>(
    hits: &Hits,
) -> impl Fn(Option<Claims<C>>) -> Answer + Clone + Send + Sync + 'static {
    let hits = hits.clone();
    move |claims: Option<Claims<C>>| {
        hits.hit();
        let answer = claims.map_or_else(|| "anonymous".to_owned(), |c| c.subject().to_owned());
        Box::pin(async move { answer })
    }
}

/// [`subject_handler`] for `GET`, `POST`, `PUT`, `PATCH` and `DELETE` (routes, so that a
/// `route_layer` applies to them).
pub fn subject<C: Subject + Send + Sync + 'static>(hits: &Hits) -> MethodRouter {
    let methods = MethodFilter::GET
        .or(MethodFilter::POST)
        .or(MethodFilter::PUT)
        .or(MethodFilter::PATCH)
        .or(MethodFilter::DELETE);
    on(methods, subject_handler::<C>(hits))
}

/// A `GET` handler that counts its calls and answers the claims as JSON.
pub fn claims_json<C: Serialize + Send + Sync + 'static>(hits: &Hits) -> MethodRouter {
    let hits = hits.clone();
    get(move |claims: Claims<C>| {
        let hits = hits.clone();
        async move {
            hits.hit();
            axum::Json(serde_json::to_value(&*claims).unwrap())
        }
    })
}

/// `/me` ([`subject`]) behind `layer`, served on 127.0.0.1: its URL and its count.
pub async fn me_server<C: Subject + DeserializeOwned + Send + Sync + 'static>(
    layer: JwtAuthLayer<C>,
) -> (String, Hits) {
    let hits = Hits::default();
    let app = Router::new().route("/me", subject::<C>(&hits)).layer(layer);
    (format!("http://{}/me", serve(app).await), hits)
}

/// The tests' HTTP client: no request of theirs takes 30 s.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// What a client sees of an answer: status, `WWW-Authenticate`, `content-type`,
/// `grpc-status`, body.
#[derive(Debug)]
pub struct Seen {
    pub status: StatusCode,
    pub challenge: String,
    pub content_type: String,
    pub grpc_status: Option<String>,
    pub body: String,
}

/// `GET url` with `token` (if any) as bearer token, as an HTTP or a gRPC-labelled caller.
pub async fn see(url: &str, token: Option<&str>, grpc: bool) -> Seen {
    let mut req = client().get(url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if grpc {
        req = req.header("content-type", "application/grpc");
    }
    let res = req.send().await.unwrap();
    let header = |name: &str| {
        res.headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let challenge = header("www-authenticate");
    let content_type = header("content-type");
    let grpc_status = res
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_owned());
    let status = res.status();
    let body = res.text().await.unwrap();
    Seen {
        status,
        challenge,
        content_type,
        grpc_status,
        body,
    }
}

/// `GET url`, with `token` (if any) as the bearer token.
pub async fn get_with(url: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = client().get(url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.unwrap()
}

/// The `WWW-Authenticate` header of `res`.
pub fn www_authenticate(res: &reqwest::Response) -> Option<&str> {
    res.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap())
}

/// [`get_with`], read into a [`Reply`].
pub async fn fetch(url: &str, token: Option<&str>) -> Reply {
    Reply::read(get_with(url, token).await).await
}

/// What a server answered.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub www_authenticate: Option<String>,
    pub retry_after: Option<String>,
    pub body: String,
}

impl Reply {
    pub async fn read(response: reqwest::Response) -> Reply {
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

    /// The `WWW-Authenticate` header, or `""`.
    pub fn challenge(&self) -> &str {
        self.www_authenticate.as_deref().unwrap_or_default()
    }

    /// 401 `invalid_token` with this description in the default realm `api`, no `Retry-After`,
    /// no body.
    #[track_caller]
    pub fn assert_invalid_token(&self, description: &str) {
        self.assert_invalid_token_in("api", description);
    }

    /// 401 `invalid_token` with this description in `realm`, no `Retry-After`, no body.
    #[track_caller]
    pub fn assert_invalid_token_in(&self, realm: &str, description: &str) {
        assert_eq!(self.status, StatusCode::UNAUTHORIZED, "{:?}", self.body);
        let challenge = self.challenge();
        assert!(
            challenge.starts_with(&format!("Bearer realm=\"{realm}\""))
                && challenge.contains("error=\"invalid_token\"")
                && challenge.contains(&format!("error_description=\"{description}\"")),
            "{challenge:?}"
        );
        assert_eq!(self.retry_after, None);
        assert!(self.body.is_empty(), "{:?}", self.body);
    }

    /// 503 with `Retry-After` (whole seconds, 1 to 60) and no challenge; returns the wait.
    #[track_caller]
    pub fn assert_unavailable(&self) -> u64 {
        assert_eq!(
            self.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{:?}",
            self.body
        );
        assert_eq!(self.www_authenticate, None);
        let secs: u64 = self
            .retry_after
            .as_deref()
            .expect("Retry-After")
            .parse()
            .expect("Retry-After in seconds");
        assert!((1..=60).contains(&secs), "Retry-After: {secs}");
        secs
    }
}
