//! A real JWKS server on 127.0.0.1 for the remote key set tests (`remote_jwks`,
//! `remote_layer`, `faults_under_load`, `tenants`, `audit`); it publishes the test keys as
//! [`jwk`](super::jwk) makes them.
//!
//! It counts the requests to its key set, and can be switched at runtime: publish another key
//! set (a rotation), answer an HTTP error, hang, send garbage, an empty set, a 5 MiB body (with
//! and without `Content-Length`) or an endless one, redirect, revalidate with `ETag` / `304`,
//! send `Cache-Control`, serve an OpenID Connect discovery document, and go down altogether.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::watch;

fn set(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

// ---------------------------------------------------------------------------------------------
// The server

/// What `/jwks` answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// The published keys (`304` when `If-None-Match` names the configured `ETag`).
    Keys,
    /// This status with an empty body (`Status(500)`: the provider fails).
    Status(u16),
    /// Never answers.
    Hang,
    /// An HTML error page.
    Garbage,
    /// A set without keys.
    Empty,
    /// 5 MiB of valid JSON, with `Content-Length`.
    Huge,
    /// 5 MiB streamed in chunks, without `Content-Length`.
    HugeChunked,
    /// An endless stream of chunks.
    Endless,
    /// `302` to `/jwks-moved`, which serves the keys.
    Redirect,
}

struct ServerState {
    mode: Mode,
    jwks: String,
    etag: Option<String>,
    cache_control: Option<String>,
    /// The discovery document and the path it is served at.
    discovery: Option<(String, String)>,
    if_none_match: Vec<Option<String>>,
}

/// A JWKS endpoint at `http://<addr>/jwks` that counts its requests.
///
/// It starts in [`Mode::Keys`], without `ETag` or `Cache-Control`, and is its own OpenID
/// provider: `/.well-known/openid-configuration` names [`issuer`](JwksServer::issuer) (this
/// server) and its `/jwks`, until [`discovery`](JwksServer::discovery) replaces that document.
pub struct JwksServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<ServerState>>,
    hits: watch::Receiver<usize>,
    accept: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    /// Starts the server on a free port, publishing `keys`.
    pub async fn start(keys: &[Value]) -> JwksServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let issuer = format!("http://{addr}");
        let state = Arc::new(Mutex::new(ServerState {
            mode: Mode::Keys,
            jwks: set(keys),
            etag: None,
            cache_control: None,
            discovery: Some((
                "/.well-known/openid-configuration".into(),
                json!({ "issuer": issuer, "jwks_uri": format!("{issuer}/jwks") }).to_string(),
            )),
            if_none_match: Vec::new(),
        }));
        let (hits_tx, hits) = watch::channel(0usize);
        let hits_tx = Arc::new(hits_tx);
        let shared = state.clone();
        let accept = tokio::spawn(async move {
            // Dropped with this task (`stop`, or the server's drop): closes every connection.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = shared.clone();
                let hits = hits_tx.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        handle(request, state.clone(), hits.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        JwksServer {
            addr,
            state,
            hits,
            accept,
        }
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The key set's URL, `http://<addr>/jwks`.
    pub fn jwks_url(&self) -> String {
        self.url("/jwks")
    }

    /// `http://<addr>`: the issuer the default discovery document names.
    pub fn issuer(&self) -> String {
        self.url("")
    }

    /// Requests to `/jwks` so far.
    pub fn hits(&self) -> usize {
        *self.hits.borrow()
    }

    /// Waits (at most 10 s) until `/jwks` has had `n` requests.
    pub async fn wait_for_hits(&self, n: usize) {
        let mut hits = self.hits.clone();
        tokio::time::timeout(Duration::from_secs(10), hits.wait_for(|h| *h >= n))
            .await
            .unwrap_or_else(|_| panic!("the server saw {} requests, not {n}", self.hits()))
            .unwrap();
    }

    pub fn mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
    }

    /// Publishes these keys from now on (a rotation at the provider).
    pub fn publish(&self, keys: &[Value]) {
        self.state.lock().unwrap().jwks = set(keys);
    }

    /// Sends this `ETag` with the keys, and answers `304` to an `If-None-Match` naming it.
    pub fn etag(&self, etag: &str) {
        self.state.lock().unwrap().etag = Some(etag.into());
    }

    /// Sends this `Cache-Control` with every answer.
    pub fn cache_control(&self, value: &str) {
        self.state.lock().unwrap().cache_control = Some(value.into());
    }

    /// Serves `doc` at `path` instead of the default discovery document.
    pub fn discovery(&self, path: &str, doc: Value) {
        self.state.lock().unwrap().discovery = Some((path.into(), doc.to_string()));
    }

    /// The `If-None-Match` of each request to `/jwks` so far.
    pub fn if_none_match(&self) -> Vec<Option<String>> {
        self.state.lock().unwrap().if_none_match.clone()
    }

    /// The provider goes down: the listener and every open connection close.
    pub fn stop(&self) {
        self.accept.abort();
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed()
}

async fn handle(
    request: Request<Incoming>,
    state: Arc<Mutex<ServerState>>,
    hits: Arc<watch::Sender<usize>>,
) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_owned();
    let mut response = Response::builder();
    let (mode, jwks, etag, cache_control) = {
        let mut state = state.lock().unwrap();
        if let Some((discovery_path, doc)) = &state.discovery
            && *discovery_path == path
        {
            return Ok(Response::builder()
                .header("content-type", "application/json")
                .body(full(doc.clone()))
                .unwrap());
        }
        if path == "/jwks" {
            let inm = request
                .headers()
                .get("if-none-match")
                .map(|v| v.to_str().unwrap().to_owned());
            state.if_none_match.push(inm);
        } else if path != "/jwks-moved" {
            return Ok(Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body(full(""))
                .unwrap());
        }
        (
            state.mode.clone(),
            state.jwks.clone(),
            state.etag.clone(),
            state.cache_control.clone(),
        )
    };
    if path == "/jwks" {
        hits.send_modify(|h| *h += 1);
    }
    if let Some(cc) = &cache_control {
        response = response.header("cache-control", cc);
    }
    let body = match mode {
        Mode::Keys | Mode::Redirect if path == "/jwks-moved" => full(jwks),
        Mode::Keys => {
            if let Some(etag) = &etag {
                response = response.header("etag", etag);
                if request
                    .headers()
                    .get("if-none-match")
                    .is_some_and(|v| v == etag.as_str())
                {
                    return Ok(response
                        .status(StatusCode::NOT_MODIFIED)
                        .body(full(""))
                        .unwrap());
                }
            }
            response = response.header("content-type", "application/jwk-set+json");
            full(jwks)
        }
        Mode::Status(code) => {
            response = response.status(code);
            full("")
        }
        Mode::Hang => std::future::pending().await,
        Mode::Garbage => full("<html><body>Service temporarily unavailable</body></html>"),
        Mode::Empty => full(r#"{"keys":[]}"#),
        Mode::Huge => {
            let mut body = String::from(r#"{"keys":["#);
            body.push_str(&" ".repeat(5 * 1024 * 1024));
            body.push_str("]}");
            full(body)
        }
        Mode::HugeChunked => Spaces {
            remaining: 5 * 1024 * 1024,
        }
        .boxed(),
        Mode::Endless => Spaces {
            remaining: usize::MAX,
        }
        .boxed(),
        Mode::Redirect => {
            response = response
                .status(StatusCode::FOUND)
                .header("location", "/jwks-moved");
            full("")
        }
    };
    Ok(response.body(body).unwrap())
}

/// A body of spaces in 64 KiB chunks, of unknown length (sent chunked).
struct Spaces {
    remaining: usize,
}

impl hyper::body::Body for Spaces {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(64 * 1024);
        self.remaining -= n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b' '; n])))))
    }
}
