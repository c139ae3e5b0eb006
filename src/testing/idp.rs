//! [`MockIdp`]: an OpenID provider on 127.0.0.1 for tests.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use super::{TestIssuer, TestToken};
use crate::Algorithm;

/// The path [`MockIdp`] serves its JWKS at.
const JWKS_PATH: &str = "/jwks.json";
/// The discovery path (OpenID Connect Discovery 1.0 §4).
const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// How a [`MockIdp`] fails while it is [down](MockIdp::outage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outage {
    /// Every request is answered `503 Service Unavailable`.
    Unavailable,
    /// Requests are read and never answered (the client's timeout decides).
    Hang,
}

struct State {
    /// The published keys, oldest first; the last one signs.
    keys: Vec<TestIssuer>,
    outage: Option<Outage>,
}

/// An OpenID provider on `127.0.0.1` (a free port) for tests: it serves a discovery document
/// at `/.well-known/openid-configuration` naming [`issuer`](Self::issuer) and
/// [`jwks_uri`](Self::jwks_uri), and its JWK Set at `/jwks.json`; it mints tokens with its
/// current key ([`token`](Self::token)), [rotates](Self::rotate) its keys, goes
/// [down](Self::outage) on request, and counts the fetches of its JWKS
/// ([`fetches`](Self::fetches)).
///
/// It is plain `http`: give [`RemoteJwks`](crate::remote::RemoteJwks) (feature `remote`)
/// `allow_http_for_loopback()`. The server stops when the `MockIdp` is dropped.
///
/// ```
/// # #[cfg(feature = "remote")]
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use tower_jwt_auth::{JwtAuthLayer, remote::RemoteJwks, testing::{MockIdp, TestIssuer}};
///
/// let idp = MockIdp::start().await;
/// let keys = RemoteJwks::from_issuer(idp.issuer())
///     .allow_http_for_loopback()
///     .build()
///     .await
///     .unwrap();
/// let layer = JwtAuthLayer::<serde_json::Value>::builder()
///     .remote_jwks(keys)
///     .issuer(idp.issuer())
///     .audience(tower_jwt_auth::testing::DEFAULT_AUDIENCE)
///     .build()
///     .unwrap();
/// assert!(layer.verify(&idp.token().sign()).is_ok());
/// assert_eq!(idp.fetches(), 1);
/// # }
/// # #[cfg(not(feature = "remote"))] fn main() {}
/// ```
pub struct MockIdp {
    addr: SocketAddr,
    alg: Algorithm,
    state: Arc<Mutex<State>>,
    fetches: Arc<AtomicUsize>,
    discoveries: Arc<AtomicUsize>,
    accept: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for MockIdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockIdp")
            .field("issuer", &self.issuer())
            .field("alg", &self.alg)
            .field("kids", &self.kids())
            .field("fetches", &self.fetches())
            .finish_non_exhaustive()
    }
}

impl MockIdp {
    /// Starts a provider signing ES256 with a new key.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, or when no port on 127.0.0.1 can be bound.
    pub async fn start() -> MockIdp {
        MockIdp::start_with(Algorithm::ES256).await
    }

    /// Starts a provider signing with `alg` (any but the HMAC ones: a JWKS is public).
    ///
    /// # Panics
    ///
    /// For an HMAC `alg`, outside a Tokio runtime, or when no port on 127.0.0.1 can be bound.
    pub async fn start_with(alg: Algorithm) -> MockIdp {
        assert!(
            alg.jwt().family() != jsonwebtoken::AlgorithmFamily::Hmac,
            "MockIdp: {alg} is an HMAC algorithm; a provider publishes public keys only"
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("MockIdp: cannot listen on 127.0.0.1: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("MockIdp: no local address: {e}"));
        let issuer = format!("http://{addr}");
        let state = Arc::new(Mutex::new(State {
            keys: vec![TestIssuer::with_algorithm(alg).issuer(issuer)],
            outage: None,
        }));
        let fetches = Arc::new(AtomicUsize::new(0));
        let discoveries = Arc::new(AtomicUsize::new(0));
        let shared = Shared {
            state: state.clone(),
            fetches: fetches.clone(),
            discoveries: discoveries.clone(),
            addr,
        };
        let accept = tokio::spawn(async move {
            // Dropped with this task: closes every open connection, hanging ones included.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = shared.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(shared.handle(request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        MockIdp {
            addr,
            alg,
            state,
            fetches,
            discoveries,
            accept,
        }
    }

    /// Its issuer identifier, `http://127.0.0.1:<port>` (no trailing `/`): the `iss` of its
    /// tokens and the `issuer` of its discovery document.
    pub fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The URL of its JWK Set, `http://127.0.0.1:<port>/jwks.json`.
    pub fn jwks_uri(&self) -> String {
        format!("http://{}{JWKS_PATH}", self.addr)
    }

    /// The URL of its discovery document,
    /// `http://127.0.0.1:<port>/.well-known/openid-configuration`.
    pub fn discovery_url(&self) -> String {
        format!("http://{}{DISCOVERY_PATH}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The algorithm its keys sign with.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// A token signed by its current key: `iss` [`issuer`](Self::issuer), `aud`
    /// [`DEFAULT_AUDIENCE`](super::DEFAULT_AUDIENCE), the current `kid`; override anything.
    pub fn token(&self) -> TestToken {
        self.signer().token()
    }

    /// Its current signing key, as the [`TestIssuer`] that mints its tokens.
    pub fn signer(&self) -> TestIssuer {
        let state = self.lock();
        match state.keys.last() {
            Some(key) => key.clone(),
            None => unreachable!("a MockIdp always has a signing key"),
        }
    }

    /// The `kid`s it publishes, oldest first; the last one signs.
    pub fn kids(&self) -> Vec<String> {
        self.lock()
            .keys
            .iter()
            .map(|k| k.key_id().to_owned())
            .collect()
    }

    /// The JWK Set it serves (JSON text).
    pub fn jwks_json(&self) -> String {
        jwks_document(&self.lock().keys)
    }

    /// Rotates: a new key signs from now on, and is published beside the previous one (as a
    /// provider does during a rollover); keys older than the previous one are dropped.
    /// Returns the new `kid`.
    pub fn rotate(&self) -> String {
        let mut state = self.lock();
        let key = TestIssuer::with_algorithm(self.alg).issuer(self.issuer());
        let kid = key.key_id().to_owned();
        state.keys.push(key);
        let excess = state.keys.len().saturating_sub(2);
        state.keys.drain(..excess);
        kid
    }

    /// Stops publishing every key but the current one (the end of a rollover): tokens signed
    /// by earlier keys no longer verify once a verifier refetches.
    pub fn retire_old_keys(&self) {
        let mut state = self.lock();
        let excess = state.keys.len().saturating_sub(1);
        state.keys.drain(..excess);
    }

    /// Goes down: every request, discovery included, fails as `outage` says until
    /// [`recover`](Self::recover). Requests during an outage are still counted.
    pub fn outage(&self, outage: Outage) {
        self.lock().outage = Some(outage);
    }

    /// Ends an [`outage`](Self::outage).
    pub fn recover(&self) {
        self.lock().outage = None;
    }

    /// Requests to its JWKS so far (answered or not).
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Requests to its discovery document so far (answered or not).
    pub fn discovery_fetches(&self) -> usize {
        self.discoveries.load(Ordering::SeqCst)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock leaves the state usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for MockIdp {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// What the connections share.
#[derive(Clone)]
struct Shared {
    state: Arc<Mutex<State>>,
    fetches: Arc<AtomicUsize>,
    discoveries: Arc<AtomicUsize>,
    addr: SocketAddr,
}

impl Shared {
    async fn handle(&self, request: Request<Incoming>) -> Response<String> {
        let path = request.uri().path();
        let counter = match path {
            JWKS_PATH => &self.fetches,
            DISCOVERY_PATH => &self.discoveries,
            _ => return status(StatusCode::NOT_FOUND),
        };
        counter.fetch_add(1, Ordering::SeqCst);
        let (outage, jwks) = {
            let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            (state.outage, jwks_document(&state.keys))
        };
        match outage {
            Some(Outage::Hang) => std::future::pending().await,
            Some(Outage::Unavailable) => return status(StatusCode::SERVICE_UNAVAILABLE),
            None => {}
        }
        if path == JWKS_PATH {
            return json_response("application/jwk-set+json", jwks);
        }
        let issuer = format!("http://{}", self.addr);
        let doc = json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}{JWKS_PATH}"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [self.alg()],
        });
        json_response("application/json", doc.to_string())
    }

    fn alg(&self) -> String {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state
            .keys
            .last()
            .map(|k| k.algorithm().name().to_owned())
            .unwrap_or_default()
    }
}

fn jwks_document(keys: &[TestIssuer]) -> String {
    let keys: Vec<Value> = keys.iter().map(|k| Value::Object(k.jwk_value())).collect();
    json!({ "keys": keys }).to_string()
}

fn status(code: StatusCode) -> Response<String> {
    let mut response = Response::new(String::new());
    *response.status_mut() = code;
    response
}

fn json_response(content_type: &'static str, body: String) -> Response<String> {
    let mut response = Response::new(body);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}
