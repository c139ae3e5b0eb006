//! Keys from an identity provider: a JWKS URL, or one found by OpenID Connect discovery
//! (feature `remote`).
//!
//! [`RemoteJwks`] keeps the provider's current signing keys in memory and follows its key
//! rotation:
//!
//! * **Reads never wait for the network.** The parsed key set sits behind an
//!   [`ArcSwap`]; a request loads it without taking a lock, whatever a
//!   refresh is doing at the time.
//! * **Refresh ahead of expiry.** A background task refreshes the set at 80–90 % of its
//!   lifetime, which comes from `Cache-Control: max-age` (minus `Age`) clamped to
//!   [`ttl_bounds`](RemoteJwksBuilder::ttl_bounds), and revalidates with `ETag` /
//!   `If-None-Match` (a `304` keeps the keys and renews their lifetime). The task holds only a
//!   weak reference and ends when the last clone of the [`RemoteJwks`] is dropped.
//! * **Unknown `kid`, abuse-resistant.** A token naming a `kid` the set lacks may trigger a
//!   refresh (a rotation the background task has not seen yet). Such refreshes are
//!   single-flight (all concurrent callers share one request), happen at most once per
//!   [`refresh_cooldown`](RemoteJwksBuilder::refresh_cooldown), and `kid`s a fresh set did not
//!   contain are remembered (at most 1024, until the cooldown ends). A flood of tokens with
//!   random `kid`s therefore costs the provider at most one request per cooldown, and cannot
//!   starve a real rotation: the first unknown `kid` after the cooldown fetches the set, new
//!   keys included.
//! * **Stale-if-error.** When the provider is down, slow, answers `5xx`, garbage, an empty or
//!   unusable key set, or a body over [`max_body_size`](RemoteJwksBuilder::max_body_size),
//!   the last good keys keep working for up to [`max_stale`](RemoteJwksBuilder::max_stale)
//!   past their expiry, with a warning (feature `tracing`). Tokens with a `kid` that is not in
//!   those keys are then answered with [`KeysUnavailable`] (the layer answers `503` with
//!   `Retry-After`) rather than `401`, since the provider may have rotated.
//! * **Safe transport.** `https` only (plain `http` only for loopback hosts, when
//!   [allowed](RemoteJwksBuilder::allow_http_for_loopback)), no redirects, connect and total
//!   timeouts, and a body size cap enforced while the body streams in.
//! * **Key hygiene.** Each JWK is judged on its own (see [`Jwks`]): a malformed or unsupported
//!   key, one with `use` other than `sig`, an `alg` outside the
//!   [allow-list](RemoteJwksBuilder::algorithms) or not fitting its key type, or an RSA key
//!   under 2048 bits is skipped and the rest are used. Symmetric (`oct`) keys are never taken
//!   from a remote set.
//!
//! Counters and timings are available from [`RemoteJwks::stats`].
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let jwks_uri = tiny_jwks_server().await;
//! use std::time::Duration;
//! use tower_jwt_auth::keys::remote::RemoteJwks;
//!
//! // `jwks_uri` is e.g. "http://127.0.0.1:41234/jwks.json", a server started above.
//! let keys = RemoteJwks::from_jwks_uri(jwks_uri)
//!     .allow_http_for_loopback() // only because the test server is local and plain http
//!     .refresh_cooldown(Duration::from_secs(30))
//!     .build() // waits for the first fetch, and fails when it does
//!     .await?;
//!
//! assert!(keys.contains_kid("ed-1"));
//! assert_eq!(keys.stats().fetches, 1);
//! // Asking for a kid the provider does not have: answered without a second request,
//! // because the set was fetched less than a cooldown ago.
//! assert!(!keys.resolve_kid("no-such-kid").await?);
//! assert_eq!(keys.stats().fetches, 1);
//! # Ok(())
//! # }
//! # async fn tiny_jwks_server() -> String {
//! #     use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! #     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! #     let addr = listener.local_addr().unwrap();
//! #     tokio::spawn(async move {
//! #         loop {
//! #             let (mut stream, _) = listener.accept().await.unwrap();
//! #             let mut request = [0u8; 4096];
//! #             let _ = stream.read(&mut request).await;
//! #             let body = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"ed-1","use":"sig",
//! #                 "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
//! #             let response = format!(
//! #                 "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
//! #                  cache-control: max-age=600\r\ncontent-length: {}\r\n\
//! #                  connection: close\r\n\r\n{body}",
//! #                 body.len()
//! #             );
//! #             let _ = stream.write_all(response.as_bytes()).await;
//! #         }
//! #     });
//! #     format!("http://{addr}/jwks.json")
//! # }
//! ```
//!
//! With OpenID Connect discovery (needs the network, so not run here):
//!
//! ```no_run
//! # async fn run() -> Result<(), tower_jwt_auth::BuildError> {
//! use tower_jwt_auth::keys::remote::RemoteJwks;
//!
//! let keys = RemoteJwks::from_issuer("https://id.example.com").build().await?;
//! assert_eq!(keys.issuer(), Some("https://id.example.com"));
//! # Ok(())
//! # }
//! ```

mod cache;
mod events;
mod fetch;
#[cfg(test)]
mod tests;

pub use fetch::{
    FetchError, FetchFuture, FetchRequest, FetchResponse, HttpFetcher, ReqwestFetcher,
};

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::header::{ACCEPT, ETAG, IF_NONE_MATCH};
use http::{HeaderMap, HeaderValue, StatusCode};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKeyKind};
use tokio::time::Instant;

use self::cache::NegativeCache;
use super::{AlgSet, Jwks, KeyEntry, KeySet};
use crate::BuildError;

/// The algorithms accepted from a remote key set unless
/// [`algorithms`](RemoteJwksBuilder::algorithms) says otherwise: every asymmetric one.
pub const DEFAULT_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

const DEFAULT_COOLDOWN: Duration = Duration::from_secs(30);
const DEFAULT_TTL_MIN: Duration = Duration::from_secs(5 * 60);
const DEFAULT_TTL_MAX: Duration = Duration::from_secs(24 * 60 * 60);
const DEFAULT_MAX_STALE: Duration = Duration::from_secs(24 * 60 * 60);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_TOTAL_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_MAX_BODY_SIZE: usize = 1024 * 1024;
/// Retries after a failed background refresh back off from one second up to this.
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(60);

/// Signing keys fetched from an identity provider, kept fresh.
///
/// Made with [`RemoteJwks::from_jwks_uri`] or [`RemoteJwks::from_issuer`] and
/// [`RemoteJwksBuilder::build`]. Cloning is cheap: clones share the keys, the refresh state
/// and the background task. See the [module documentation](self) for the behaviour.
#[derive(Clone)]
pub struct RemoteJwks {
    inner: Arc<Inner>,
}

/// Settings for a [`RemoteJwks`]; from [`RemoteJwks::from_jwks_uri`] or
/// [`RemoteJwks::from_issuer`].
pub struct RemoteJwksBuilder {
    source: Source,
    config: Config,
    fetcher: Option<Arc<dyn HttpFetcher>>,
}

/// The identity provider could not be reached and no key it served before fits the token.
///
/// The layer answers such a request with `503 Service Unavailable` and `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysUnavailable {
    /// When trying again may help: the end of the refresh cooldown or the next scheduled
    /// retry, rounded up to whole seconds, at least one second.
    pub retry_after: Duration,
}

impl fmt::Display for KeysUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "signing keys unavailable: the identity provider cannot be reached (retry after {} s)",
            self.retry_after.as_secs()
        )
    }
}

impl std::error::Error for KeysUnavailable {}

/// Counters and state of a [`RemoteJwks`], from [`RemoteJwks::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemoteJwksStats {
    /// HTTP requests sent: discovery and JWKS.
    pub requests: u64,
    /// JWKS refresh attempts (initial, background and unknown-`kid` ones).
    pub fetches: u64,
    /// Refresh attempts that failed (network, status, timeout, size, unusable document).
    pub failures: u64,
    /// Refreshes answered `304 Not Modified`.
    pub not_modified: u64,
    /// Times the key set changed after the first load.
    pub rotations: u64,
    /// Refreshes triggered by a token with an unknown `kid`.
    pub unknown_kid_refreshes: u64,
    /// Unknown-`kid` lookups answered without a request because of the cooldown.
    pub unknown_kid_throttled: u64,
    /// Unknown-`kid` lookups answered from the negative cache.
    pub negative_cache_hits: u64,
    /// `kid`s currently in the negative cache.
    pub negative_cache_len: usize,
    /// See [`RemoteJwks::generation`].
    pub generation: u64,
    /// Usable keys in the current set.
    pub keys: usize,
    /// Distinct `kid`s in the current set.
    pub kids: usize,
    /// Keys of the last fetched document that were skipped (malformed, not for signatures,
    /// algorithm not allowed, too weak).
    pub skipped_keys: usize,
    /// Time since the last successful fetch or revalidation.
    pub last_success_age: Option<Duration>,
    /// Time since the last failed fetch.
    pub last_failure_age: Option<Duration>,
    /// Why the last failed fetch failed.
    pub last_error: Option<String>,
    /// Failed fetches since the last success.
    pub consecutive_failures: u32,
    /// Time until the keys expire (become stale); zero once they have.
    pub expires_in: Option<Duration>,
    /// The keys are past their lifetime and served under stale-if-error.
    pub stale: bool,
    /// The JWKS URL (configured, or found by discovery).
    pub jwks_uri: Option<String>,
}

#[derive(Debug, Clone)]
enum Source {
    JwksUri(String),
    Issuer(String),
}

#[derive(Debug, Clone)]
struct Config {
    algorithms: Vec<Algorithm>,
    cooldown: Duration,
    ttl_min: Duration,
    ttl_max: Duration,
    max_stale: Duration,
    connect_timeout: Duration,
    total_timeout: Duration,
    max_body_size: usize,
    allow_http_for_loopback: bool,
    lazy: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            cooldown: DEFAULT_COOLDOWN,
            ttl_min: DEFAULT_TTL_MIN,
            ttl_max: DEFAULT_TTL_MAX,
            max_stale: DEFAULT_MAX_STALE,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            total_timeout: DEFAULT_TOTAL_TIMEOUT,
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            allow_http_for_loopback: false,
            lazy: false,
        }
    }
}

/// What caused a fetch, for events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Initial,
    Background,
    UnknownKid,
}

impl Trigger {
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Initial => "initial",
            Trigger::Background => "background",
            Trigger::UnknownKid => "unknown_kid",
        }
    }
}

/// The key set readers see.
struct Current {
    set: Arc<KeySet>,
    /// Sorted, distinct.
    kids: Vec<Box<str>>,
    keys: usize,
    /// Expiry plus `max_stale`; `None` when there are no keys.
    usable_until: Option<Instant>,
}

impl Current {
    fn empty(set: Arc<KeySet>) -> Current {
        Current {
            set,
            kids: Vec::new(),
            keys: 0,
            usable_until: None,
        }
    }

    fn usable(&self, now: Instant) -> bool {
        self.keys > 0 && self.usable_until.is_some_and(|until| now < until)
    }

    fn contains(&self, kid: &str) -> bool {
        self.kids.binary_search_by(|k| (**k).cmp(kid)).is_ok()
    }
}

/// What identifies a key for change detection: its `kid`, algorithms and public material.
type KeyPrint = (Option<Box<str>>, u16, Vec<u8>);

/// Bookkeeping of the refreshes; never held across I/O.
struct State {
    etag: Option<HeaderValue>,
    prints: Vec<KeyPrint>,
    last_attempt: Option<Instant>,
    last_success: Option<Instant>,
    last_failure: Option<Instant>,
    last_error: Option<String>,
    consecutive_failures: u32,
    expires_at: Option<Instant>,
    next_refresh: Instant,
    skipped: usize,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    fetches: AtomicU64,
    failures: AtomicU64,
    not_modified: AtomicU64,
    rotations: AtomicU64,
    unknown_kid_refreshes: AtomicU64,
    unknown_kid_throttled: AtomicU64,
    negative_cache_hits: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

struct Inner {
    config: Config,
    allowed: AlgSet,
    issuer: Option<String>,
    jwks_uri: OnceLock<String>,
    fetcher: Arc<dyn HttpFetcher>,
    current: ArcSwap<Current>,
    empty: Arc<KeySet>,
    generation: AtomicU64,
    /// Publishes `generation` to the receivers of `RemoteJwks::subscribe`.
    changes: tokio::sync::watch::Sender<u64>,
    /// Refresh attempts finished, successful or not.
    finished: AtomicU64,
    /// The last refresh attempt failed.
    failing: AtomicBool,
    /// Held by whoever fetches; readers never touch it.
    single_flight: Arc<tokio::sync::Mutex<()>>,
    /// Tells the background task that the schedule may have changed.
    wake: Arc<tokio::sync::Notify>,
    state: Mutex<State>,
    negative: Mutex<NegativeCache>,
    counters: Counters,
    task: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why a refresh failed.
#[derive(Debug, Clone)]
enum Failure {
    Fetch { url: String, error: FetchError },
    Status { url: String, status: StatusCode },
    Document(String),
    NoUsableKeys { skipped: usize },
    Discovery(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Fetch { url, error } => write!(f, "GET {url}: {error}"),
            Failure::Status { url, status } => write!(f, "GET {url}: HTTP {status}"),
            Failure::Document(reason) => write!(f, "invalid JWKS document: {reason}"),
            Failure::NoUsableKeys { skipped } => write!(
                f,
                "the JWKS has no usable signing key ({skipped} skipped: malformed, not for \
                 signatures, algorithm not allowed, or too weak)"
            ),
            Failure::Discovery(reason) => write!(f, "OpenID Connect discovery: {reason}"),
        }
    }
}

impl Failure {
    /// What `build` reports when the first refresh fails.
    fn into_build_error(self, issuer: Option<&str>) -> BuildError {
        match self {
            Failure::Fetch { url, error } => BuildError::KeySourceUnreachable {
                url,
                reason: error.to_string(),
            },
            Failure::Status { url, status } => BuildError::KeySourceUnreachable {
                url,
                reason: format!("HTTP {status}"),
            },
            Failure::Discovery(reason) => BuildError::Discovery {
                issuer: issuer.unwrap_or_default().to_owned(),
                reason,
            },
            Failure::Document(reason) => BuildError::InvalidJwks(reason),
            none @ Failure::NoUsableKeys { .. } => BuildError::InvalidJwks(none.to_string()),
        }
    }
}

/// A parsed, usable key set.
struct Loaded {
    set: KeySet,
    kids: Vec<Box<str>>,
    keys: usize,
    prints: Vec<KeyPrint>,
    skipped: usize,
}

enum Fetched {
    Modified {
        loaded: Loaded,
        etag: Option<HeaderValue>,
        ttl: Duration,
    },
    NotModified {
        etag: Option<HeaderValue>,
        ttl: Duration,
    },
}

impl RemoteJwks {
    /// Keys from a JWKS document at `uri` (RFC 7517 §5), e.g.
    /// `https://id.example.com/.well-known/jwks.json`.
    pub fn from_jwks_uri(uri: impl Into<String>) -> RemoteJwksBuilder {
        RemoteJwksBuilder::new(Source::JwksUri(uri.into()))
    }

    /// Keys of the OpenID provider `issuer`, found by OpenID Connect Discovery 1.0: the
    /// `jwks_uri` of `<issuer>/.well-known/openid-configuration` (a trailing `/` of the
    /// issuer is dropped before appending, §4.1). The document's `issuer` must equal `issuer`
    /// exactly (§4.3), and its `jwks_uri` obeys the same `https` rule as the issuer.
    pub fn from_issuer(issuer: impl Into<String>) -> RemoteJwksBuilder {
        RemoteJwksBuilder::new(Source::Issuer(issuer.into()))
    }

    /// The algorithms this source accepts keys for.
    pub(crate) fn allowed(&self) -> AlgSet {
        self.inner.allowed
    }

    /// The current key set, read without a lock and without waiting for any I/O.
    ///
    /// Empty before the first successful fetch, and once the keys are stale for longer than
    /// `max_stale`.
    pub(crate) fn snapshot(&self) -> Arc<KeySet> {
        let current = self.inner.current.load();
        if current.usable(Instant::now()) {
            Arc::clone(&current.set)
        } else {
            Arc::clone(&self.inner.empty)
        }
    }

    /// For a token whose `kid` (or, with `None`, a token without `kid`) found no key in the
    /// [`snapshot`](Self::snapshot): refreshes the set if that is allowed now, and returns
    /// the key set to retry with.
    ///
    /// * The refresh is single-flight: callers that arrive while a fetch is in flight wait
    ///   for it (on a mutex that only refreshers take, never readers) and re-check its
    ///   result instead of fetching again, even with a zero cooldown. The fetch runs in its
    ///   own task, so a caller that is cancelled does not cancel it for the others.
    /// * At most one refresh per cooldown (counted from the last fetch of any kind); callers
    ///   within the cooldown get the current set without a request.
    /// * A `kid` a fresh set did not contain is remembered until the cooldown ends, and
    ///   answered without waiting for the flight.
    ///
    /// `Ok(set)`: retry with `set`; if the `kid` is still not there, the token is simply
    /// unknown (401). `Err` when the last fetch failed (the provider may have rotated to a
    /// key we cannot get) or no usable keys are left (503 with `Retry-After`).
    ///
    /// Runs on Tokio, like everything here (it spawns the fetch; timeouts use Tokio's timer).
    pub(crate) async fn refresh_for_unknown_kid(
        &self,
        kid: Option<&str>,
    ) -> Result<Arc<KeySet>, KeysUnavailable> {
        let inner = &*self.inner;
        if let Some(answer) = inner.settled(kid) {
            return answer;
        }
        let finished_before = inner.finished.load(Ordering::SeqCst);
        let flight = Arc::clone(&inner.single_flight).lock_owned().await;
        if let Some(answer) = inner.settled(kid) {
            return answer;
        }
        let cooldown = inner.config.cooldown;
        let now = Instant::now();
        let last_attempt = lock(&inner.state).last_attempt;
        // A refresh that finished while we waited for the flight is ours too: share its
        // result rather than fetching again (this matters most with a zero cooldown).
        let shared = inner.finished.load(Ordering::SeqCst) != finished_before;
        if let Some(last) = last_attempt
            && (shared || now < last + cooldown)
        {
            drop(flight);
            bump(&inner.counters.unknown_kid_throttled);
            inner.remember_absent(kid, last + cooldown, now);
            return inner.answer(now);
        }
        bump(&inner.counters.unknown_kid_refreshes);
        let started = Instant::now();
        // The fetch runs in its own task, holding the flight: if this caller goes away (its
        // request was cancelled), the waiters still get the result they are waiting for.
        let owner = Arc::clone(&self.inner);
        let fetch = tokio::spawn(async move {
            let _flight = flight;
            let _ = owner.refresh(Trigger::UnknownKid).await;
        });
        let _ = fetch.await;
        if let Some(answer) = inner.present(kid) {
            return answer;
        }
        let now = Instant::now();
        inner.remember_absent(kid, started + cooldown, now);
        inner.answer(now)
    }

    /// Whether the provider has a key with this `kid`, refreshing the set when it is not
    /// known yet, under the same rules as the layer (single-flight, cooldown, negative cache).
    ///
    /// `Ok(false)`: the current set does not have it (and may not be refreshed now).
    /// `Err`: the provider cannot be reached and the keys it served before do not have it.
    pub async fn resolve_kid(&self, kid: &str) -> Result<bool, KeysUnavailable> {
        if self.contains_kid(kid) {
            return Ok(true);
        }
        self.refresh_for_unknown_kid(Some(kid)).await?;
        Ok(self.contains_kid(kid))
    }

    /// A number that changes whenever the key set does (first load, rotation, keys dropped
    /// after `max_stale`). A `304` or an identical document does not change it.
    ///
    /// The set is replaced before the number changes, so a cache that reads `generation()`
    /// *before* the key set it verifies with, and tags what it verified with it, never keeps
    /// an entry of an older set under a newer number.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::SeqCst)
    }

    /// A receiver that sees [`generation`](Self::generation) change: to invalidate caches,
    /// log rotations, or wait for the first keys of a [`lazy`](RemoteJwksBuilder::lazy) set.
    ///
    /// ```
    /// # async fn run(keys: tower_jwt_auth::keys::remote::RemoteJwks) {
    /// let mut changes = keys.subscribe();
    /// while changes.changed().await.is_ok() {
    ///     println!("keys changed: now {:?}", keys.kids());
    /// }
    /// # }
    /// ```
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// The `kid`s of the current key set, sorted.
    pub fn kids(&self) -> Vec<String> {
        let current = self.inner.current.load();
        if current.usable(Instant::now()) {
            current.kids.iter().map(|k| k.to_string()).collect()
        } else {
            Vec::new()
        }
    }

    /// Whether the current key set has a key with this `kid`. Never fetches.
    pub fn contains_kid(&self, kid: &str) -> bool {
        let current = self.inner.current.load();
        current.usable(Instant::now()) && current.contains(kid)
    }

    /// The issuer given to [`from_issuer`](Self::from_issuer) (the discovery document agreed
    /// with it), or `None` for [`from_jwks_uri`](Self::from_jwks_uri). A layer or
    /// [`Tenant`](crate::Tenant) using this source accepts tokens of this issuer only: any other
    /// configured issuer is a [`BuildError::IssuerMismatch`].
    pub fn issuer(&self) -> Option<&str> {
        self.inner.issuer.as_deref()
    }

    /// The JWKS URL: the configured one, or the one discovery found (`None` until then).
    pub fn jwks_uri(&self) -> Option<&str> {
        self.inner.jwks_uri.get().map(String::as_str)
    }

    /// Counters and timings, for metrics and health checks.
    pub fn stats(&self) -> RemoteJwksStats {
        let inner = &*self.inner;
        let counters = &inner.counters;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let now = Instant::now();
        let current = inner.current.load_full();
        let state = lock(&inner.state);
        let age = |at: Option<Instant>| at.map(|t| now.saturating_duration_since(t));
        let usable = current.usable(now);
        RemoteJwksStats {
            requests: get(&counters.requests),
            fetches: get(&counters.fetches),
            failures: get(&counters.failures),
            not_modified: get(&counters.not_modified),
            rotations: get(&counters.rotations),
            unknown_kid_refreshes: get(&counters.unknown_kid_refreshes),
            unknown_kid_throttled: get(&counters.unknown_kid_throttled),
            negative_cache_hits: get(&counters.negative_cache_hits),
            negative_cache_len: lock(&inner.negative).len(now),
            generation: inner.generation.load(Ordering::SeqCst),
            keys: if usable { current.keys } else { 0 },
            kids: if usable { current.kids.len() } else { 0 },
            skipped_keys: state.skipped,
            last_success_age: age(state.last_success),
            last_failure_age: age(state.last_failure),
            last_error: state.last_error.clone(),
            consecutive_failures: state.consecutive_failures,
            expires_in: state
                .expires_at
                .filter(|_| usable)
                .map(|t| t.saturating_duration_since(now)),
            stale: usable && state.expires_at.is_some_and(|t| t <= now),
            jwks_uri: inner.jwks_uri.get().cloned(),
        }
    }
}

impl fmt::Debug for RemoteJwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteJwks")
            .field("issuer", &self.issuer())
            .field("jwks_uri", &self.jwks_uri())
            .field("generation", &self.generation())
            .field("kids", &self.kids())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for RemoteJwksBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteJwksBuilder")
            .field("source", &self.source)
            .field("config", &self.config)
            .field("custom_fetcher", &self.fetcher.is_some())
            .finish()
    }
}

impl RemoteJwksBuilder {
    fn new(source: Source) -> RemoteJwksBuilder {
        RemoteJwksBuilder {
            source,
            config: Config::default(),
            fetcher: None,
        }
    }

    /// Accept keys for these algorithms only. Default: [`DEFAULT_ALGORITHMS`], every RSA,
    /// RSA-PSS, ECDSA and EdDSA algorithm. HMAC algorithms are refused by
    /// [`build`](Self::build): a remote set's keys are public, and `oct` keys in it are never
    /// used.
    pub fn algorithms(mut self, algs: impl IntoIterator<Item = Algorithm>) -> Self {
        self.config.algorithms = algs.into_iter().collect();
        self
    }

    /// Refresh at most once per `cooldown` because of tokens with unknown `kid`s, and forget
    /// negatively cached `kid`s after it. Default 30 s. Zero lets every unknown `kid` fetch
    /// (concurrent ones still share one request).
    pub fn refresh_cooldown(mut self, cooldown: Duration) -> Self {
        self.config.cooldown = cooldown;
        self
    }

    /// Keep a fetched set for its `Cache-Control: max-age` (minus `Age`), clamped to
    /// `[min, max]`; `min` when the response says nothing or `no-cache`/`no-store`.
    /// Default 5 min and 24 h; `min` must be at least one second and not above `max`.
    pub fn ttl_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.config.ttl_min = min;
        self.config.ttl_max = max;
        self
    }

    /// When refreshes fail, keep using the last good keys for this long past their expiry
    /// (stale-if-error), then drop them. Default 24 h.
    pub fn max_stale(mut self, max_stale: Duration) -> Self {
        self.config.max_stale = max_stale;
        self
    }

    /// Bounds on establishing a connection and on a whole request, body included.
    /// Default 5 s and 10 s.
    pub fn timeouts(mut self, connect: Duration, total: Duration) -> Self {
        self.config.connect_timeout = connect;
        self.config.total_timeout = total;
        self
    }

    /// The largest JWKS or discovery document accepted, in bytes. Default 1 MiB.
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.config.max_body_size = bytes;
        self
    }

    /// Accept plain `http` for loopback hosts (`127.0.0.0/8`, `::1`, `localhost`): for tests
    /// and a provider on the same host. Any other `http` URL is a build error.
    pub fn allow_http_for_loopback(mut self) -> Self {
        self.config.allow_http_for_loopback = true;
        self
    }

    /// Fetch through this client instead of the default [`ReqwestFetcher`].
    pub fn fetcher(mut self, fetcher: impl HttpFetcher) -> Self {
        self.fetcher = Some(Arc::new(fetcher));
        self
    }

    /// Do not wait for the first fetch in [`build`](Self::build): it happens in the
    /// background, and until it succeeds the key set is empty (tokens are answered with
    /// [`KeysUnavailable`]). Discovery problems then show in [`RemoteJwks::stats`] and the
    /// logs instead of as a build error.
    pub fn lazy(mut self) -> Self {
        self.config.lazy = true;
        self
    }

    /// Checks the settings, fetches the keys (unless [`lazy`](Self::lazy)) and starts the
    /// background refresh on the current Tokio runtime.
    ///
    /// # Errors
    ///
    /// - [`BuildError::InvalidSetting`]: a URL that is not `https` (or loopback `http` when
    ///   allowed), HMAC or no algorithms, bounds out of range, no Tokio runtime;
    /// - [`BuildError::HttpClient`]: the default client could not be set up.
    ///
    /// Unless [`lazy`](Self::lazy), the first fetch must succeed too:
    ///
    /// - [`BuildError::KeySourceUnreachable`]: connection, TLS, timeout, body cap, or a
    ///   status other than 200 (the provider is down or the URL is wrong);
    /// - [`BuildError::Discovery`]: a discovery document that is malformed, names another
    ///   `issuer`, or gives an unacceptable `jwks_uri`;
    /// - [`BuildError::InvalidJwks`]: a JWKS that is malformed or has no usable key.
    pub async fn build(self) -> Result<RemoteJwks, BuildError> {
        let config = self.config;
        if config.algorithms.is_empty() {
            return Err(BuildError::NoUsableAlgorithm);
        }
        if config
            .algorithms
            .iter()
            .any(|a| a.family() == AlgorithmFamily::Hmac)
        {
            return Err(BuildError::InvalidSetting(
                "HMAC algorithms cannot be used with a remote JWKS: its keys are public",
            ));
        }
        if config.ttl_min < Duration::from_secs(1) || config.ttl_min > config.ttl_max {
            return Err(BuildError::InvalidSetting(
                "ttl_bounds: min must be at least one second and not above max",
            ));
        }
        if config.connect_timeout.is_zero() || config.total_timeout.is_zero() {
            return Err(BuildError::InvalidSetting("timeouts must not be zero"));
        }
        if config.max_body_size == 0 {
            return Err(BuildError::InvalidSetting("max_body_size must not be zero"));
        }
        let allow_http = config.allow_http_for_loopback;
        let (issuer, jwks_uri) = match self.source {
            Source::JwksUri(uri) => {
                check_url(&uri, allow_http).map_err(|p| BuildError::InvalidSetting(p.jwks()))?;
                (None, Some(uri))
            }
            Source::Issuer(issuer) => {
                check_url(&issuer, allow_http)
                    .map_err(|p| BuildError::InvalidSetting(p.issuer()))?;
                (Some(issuer), None)
            }
        };
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            BuildError::InvalidSetting("RemoteJwks::build must run on a Tokio runtime")
        })?;
        let fetcher: Arc<dyn HttpFetcher> = match self.fetcher {
            Some(fetcher) => fetcher,
            None => Arc::new(
                ReqwestFetcher::new(config.connect_timeout, config.total_timeout)
                    .map_err(|e| BuildError::HttpClient(e.to_string()))?,
            ),
        };
        let empty = Arc::new(KeySet::default());
        let allowed = AlgSet::from_iter(config.algorithms.iter().copied());
        let lazy = config.lazy;
        let inner = Arc::new(Inner {
            config,
            allowed,
            issuer,
            jwks_uri: jwks_uri.map(OnceLock::from).unwrap_or_default(),
            fetcher,
            current: ArcSwap::from_pointee(Current::empty(Arc::clone(&empty))),
            empty,
            generation: AtomicU64::new(0),
            changes: tokio::sync::watch::Sender::new(0),
            finished: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            single_flight: Arc::new(tokio::sync::Mutex::new(())),
            wake: Arc::new(tokio::sync::Notify::new()),
            state: Mutex::new(State {
                etag: None,
                prints: Vec::new(),
                last_attempt: None,
                last_success: None,
                last_failure: None,
                last_error: None,
                consecutive_failures: 0,
                expires_at: None,
                next_refresh: Instant::now(),
                skipped: 0,
            }),
            negative: Mutex::new(NegativeCache::default()),
            counters: Counters::default(),
            task: Mutex::new(None),
        });
        if !lazy {
            let _flight = inner.single_flight.lock().await;
            inner
                .refresh(Trigger::Initial)
                .await
                .map_err(|failure| failure.into_build_error(inner.issuer.as_deref()))?;
        }
        let wake = Arc::clone(&inner.wake);
        let task = runtime.spawn(background(Arc::downgrade(&inner), wake));
        *lock(&inner.task) = Some(task.abort_handle());
        Ok(RemoteJwks { inner })
    }
}

/// Refreshes ahead of expiry, retries failures with backoff, and drops keys past
/// `max_stale`. Holds the keys only weakly between runs; `wake` says the schedule moved
/// (another refresh happened).
async fn background(weak: Weak<Inner>, wake: Arc<tokio::sync::Notify>) {
    loop {
        let due = match weak.upgrade() {
            Some(inner) => inner.next_due(),
            None => return,
        };
        let sleep = std::pin::pin!(tokio::time::sleep_until(due));
        let woken = std::pin::pin!(wake.notified());
        futures_util::future::select(sleep, woken).await;
        let Some(inner) = weak.upgrade() else { return };
        if Instant::now() < inner.next_due() {
            continue;
        }
        let flight = inner.single_flight.lock().await;
        if Instant::now() < inner.next_due() {
            continue;
        }
        let _ = inner.refresh(Trigger::Background).await;
        // Under the flight, so it cannot race a refresh that installs new keys.
        inner.expire_if_stale(Instant::now());
        drop(flight);
    }
}

impl Inner {
    fn uri_for_events(&self) -> String {
        match (self.jwks_uri.get(), &self.issuer) {
            (Some(uri), _) => uri.clone(),
            (None, Some(issuer)) => discovery_url(issuer),
            (None, None) => String::new(),
        }
    }

    /// An answer that needs no refresh: the `kid` is in the current set, or a fresh set
    /// lately did not have it.
    fn settled(&self, kid: Option<&str>) -> Option<Result<Arc<KeySet>, KeysUnavailable>> {
        let kid = kid?;
        if let Some(answer) = self.present(Some(kid)) {
            return Some(answer);
        }
        let now = Instant::now();
        if lock(&self.negative).contains(kid, now) {
            bump(&self.counters.negative_cache_hits);
            return Some(self.answer(now));
        }
        None
    }

    fn present(&self, kid: Option<&str>) -> Option<Result<Arc<KeySet>, KeysUnavailable>> {
        let kid = kid?;
        let current = self.current.load();
        (current.usable(Instant::now()) && current.contains(kid))
            .then(|| Ok(Arc::clone(&current.set)))
    }

    /// The current set when it is fresh from a successful fetch, else `KeysUnavailable`.
    fn answer(&self, now: Instant) -> Result<Arc<KeySet>, KeysUnavailable> {
        let current = self.current.load();
        if current.usable(now) && !self.failing.load(Ordering::SeqCst) {
            Ok(Arc::clone(&current.set))
        } else {
            Err(KeysUnavailable {
                retry_after: self.retry_after(now),
            })
        }
    }

    fn retry_after(&self, now: Instant) -> Duration {
        let state = lock(&self.state);
        // The sooner of the two chances of new keys: the end of the unknown-`kid` cooldown, or
        // the background refresh (which, after a failure, is the next retry with backoff).
        let background = state.next_refresh.max(now);
        let next = state
            .last_attempt
            .map(|t| t + self.config.cooldown)
            .filter(|end| *end > now)
            .map_or(background, |end| end.min(background));
        let wait = next - now;
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Duration::from_secs(secs.max(1))
    }

    fn remember_absent(&self, kid: Option<&str>, until: Instant, now: Instant) {
        if let Some(kid) = kid
            && !self.failing.load(Ordering::SeqCst)
            && self.current.load().usable(now)
        {
            lock(&self.negative).insert(kid, until, now);
        }
    }

    fn next_due(&self) -> Instant {
        let next = lock(&self.state).next_refresh;
        match self.current.load().usable_until {
            Some(until) => next.min(until),
            None => next,
        }
    }

    /// One refresh attempt. The caller holds `single_flight`.
    async fn refresh(&self, trigger: Trigger) -> Result<(), Failure> {
        lock(&self.state).last_attempt = Some(Instant::now());
        bump(&self.counters.fetches);
        let result = match self.fetch(trigger).await {
            Ok(Fetched::Modified { loaded, etag, ttl }) => {
                self.install(loaded, etag, ttl);
                Ok(())
            }
            Ok(Fetched::NotModified { etag, ttl }) => {
                self.revalidated(etag, ttl);
                Ok(())
            }
            Err(failure) => {
                self.record_failure(&failure);
                Err(failure)
            }
        };
        self.finished.fetch_add(1, Ordering::SeqCst);
        self.wake.notify_one();
        result
    }

    async fn fetch(&self, trigger: Trigger) -> Result<Fetched, Failure> {
        let uri = self.resolve_jwks_uri().await?;
        events::fetching(&uri, trigger);
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/jwk-set+json, application/json"),
        );
        let etag = if self.current.load().usable(Instant::now()) {
            lock(&self.state).etag.clone()
        } else {
            None
        };
        let revalidating = etag.is_some();
        if let Some(etag) = etag {
            headers.insert(IF_NONE_MATCH, etag);
        }
        let response = self.get(&uri, headers).await?;
        let ttl = self.ttl(&response.headers);
        let etag = response.headers.get(ETAG).cloned();
        match response.status {
            StatusCode::OK => Ok(Fetched::Modified {
                loaded: self.parse(&response.body)?,
                etag,
                ttl,
            }),
            StatusCode::NOT_MODIFIED if revalidating => Ok(Fetched::NotModified { etag, ttl }),
            status => Err(Failure::Status { url: uri, status }),
        }
    }

    async fn get(&self, url: &str, headers: HeaderMap) -> Result<FetchResponse, Failure> {
        bump(&self.counters.requests);
        let limit = self.config.max_body_size;
        let request = FetchRequest {
            url: url.to_owned(),
            headers,
            max_body_size: limit,
            connect_timeout: self.config.connect_timeout,
            timeout: self.config.total_timeout,
        };
        let failed = |error| Failure::Fetch {
            url: url.to_owned(),
            error,
        };
        match tokio::time::timeout(self.config.total_timeout, self.fetcher.fetch(request)).await {
            Err(_) => Err(failed(FetchError::Timeout)),
            Ok(Err(error)) => Err(failed(error)),
            Ok(Ok(response)) if response.body.len() > limit => {
                Err(failed(FetchError::BodyTooLarge { limit }))
            }
            Ok(Ok(response)) => Ok(response),
        }
    }

    /// The JWKS URL, by discovery the first time when configured with an issuer.
    async fn resolve_jwks_uri(&self) -> Result<String, Failure> {
        if let Some(uri) = self.jwks_uri.get() {
            return Ok(uri.clone());
        }
        let Some(issuer) = self.issuer.as_deref() else {
            return Err(Failure::Discovery("no issuer configured".into()));
        };
        let url = discovery_url(issuer);
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let response = self.get(&url, headers).await?;
        if response.status != StatusCode::OK {
            return Err(Failure::Status {
                url,
                status: response.status,
            });
        }
        #[derive(serde::Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        let doc: Discovery = serde_json::from_slice(&response.body)
            .map_err(|e| Failure::Discovery(format!("{url}: invalid document: {e}")))?;
        if doc.issuer != issuer {
            return Err(Failure::Discovery(format!(
                "the document's issuer {:?} is not the configured issuer {issuer:?} \
                 (OpenID Connect Discovery 1.0 §4.3 requires them to be identical)",
                doc.issuer
            )));
        }
        check_url(&doc.jwks_uri, self.config.allow_http_for_loopback).map_err(|p| {
            Failure::Discovery(format!("jwks_uri {:?}: {}", doc.jwks_uri, p.jwks()))
        })?;
        events::discovered(issuer, &doc.jwks_uri);
        Ok(self.jwks_uri.get_or_init(|| doc.jwks_uri).clone())
    }

    fn ttl(&self, headers: &HeaderMap) -> Duration {
        cache::freshness(headers)
            .unwrap_or(self.config.ttl_min)
            .clamp(self.config.ttl_min, self.config.ttl_max)
    }

    fn parse(&self, body: &[u8]) -> Result<Loaded, Failure> {
        let text =
            std::str::from_utf8(body).map_err(|_| Failure::Document("not UTF-8 text".into()))?;
        let jwks = Jwks::from_json(text).map_err(|e| {
            Failure::Document(match e {
                BuildError::InvalidJwks(reason) => reason,
                other => other.to_string(),
            })
        })?;
        let entries: Vec<KeyEntry> = jwks
            .entries(Some(self.allowed))
            .into_iter()
            .filter(|e| e.family() != AlgorithmFamily::Hmac)
            .collect();
        let skipped = jwks.skipped() + (jwks.len() - entries.len());
        if entries.is_empty() {
            return Err(Failure::NoUsableKeys { skipped });
        }
        let mut prints: Vec<KeyPrint> = entries.iter().map(print).collect();
        prints.sort();
        let mut kids: Vec<Box<str>> = entries.iter().filter_map(|e| e.kid.clone()).collect();
        kids.sort();
        kids.dedup();
        Ok(Loaded {
            keys: entries.len(),
            set: KeySet::new(entries),
            kids,
            prints,
            skipped,
        })
    }

    /// A successful `200`: the new keys replace the old ones (if they differ).
    fn install(&self, loaded: Loaded, etag: Option<HeaderValue>, ttl: Duration) {
        let now = Instant::now();
        let uri = self.uri_for_events();
        events::loaded(&uri, loaded.keys, loaded.skipped, ttl);
        let mut state = lock(&self.state);
        state.etag = etag;
        state.skipped = loaded.skipped;
        self.succeeded(&mut state, now, ttl);
        let usable_until = Some(now + ttl + self.config.max_stale);
        let old = self.current.load_full();
        if state.prints == loaded.prints && old.keys > 0 {
            self.current.store(Arc::new(Current {
                set: Arc::clone(&old.set),
                kids: old.kids.clone(),
                keys: old.keys,
                usable_until,
            }));
            return;
        }
        state.prints = loaded.prints;
        let current = Current {
            set: Arc::new(loaded.set),
            kids: loaded.kids,
            keys: loaded.keys,
            usable_until,
        };
        let added: Vec<&str> = current
            .kids
            .iter()
            .filter(|k| !old.contains(k))
            .map(|k| &**k)
            .collect();
        let removed: Vec<&str> = old
            .kids
            .iter()
            .filter(|k| !current.contains(k))
            .map(|k| &**k)
            .collect();
        let added: Vec<String> = added.into_iter().map(str::to_owned).collect();
        let removed: Vec<String> = removed.into_iter().map(str::to_owned).collect();
        // The set first, then the number: see `RemoteJwks::generation`.
        self.current.store(Arc::new(current));
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.changes.send_replace(generation);
        if generation > 1 {
            bump(&self.counters.rotations);
        }
        lock(&self.negative).clear();
        events::rotated(&uri, &added, &removed, generation);
    }

    /// A `304`: same keys, new lifetime.
    fn revalidated(&self, etag: Option<HeaderValue>, ttl: Duration) {
        let now = Instant::now();
        bump(&self.counters.not_modified);
        events::not_modified(&self.uri_for_events(), ttl);
        let mut state = lock(&self.state);
        if etag.is_some() {
            state.etag = etag;
        }
        self.succeeded(&mut state, now, ttl);
        let old = self.current.load_full();
        self.current.store(Arc::new(Current {
            set: Arc::clone(&old.set),
            kids: old.kids.clone(),
            keys: old.keys,
            usable_until: Some(now + ttl + self.config.max_stale),
        }));
    }

    fn succeeded(&self, state: &mut State, now: Instant, ttl: Duration) {
        state.last_success = Some(now);
        state.consecutive_failures = 0;
        state.expires_at = Some(now + ttl);
        state.next_refresh = now + ttl.mul_f64(0.8 + 0.1 * unit_random());
        self.failing.store(false, Ordering::SeqCst);
    }

    fn record_failure(&self, failure: &Failure) {
        bump(&self.counters.failures);
        let now = Instant::now();
        let reason = failure.to_string();
        {
            let mut state = lock(&self.state);
            state.last_failure = Some(now);
            state.last_error = Some(reason.clone());
            state.consecutive_failures = state.consecutive_failures.saturating_add(1);
            state.next_refresh = now + self.backoff(state.consecutive_failures);
            self.failing.store(true, Ordering::SeqCst);
        }
        let current = self.current.load();
        let stale_left = current
            .usable_until
            .filter(|_| current.keys > 0)
            .map(|until| until.saturating_duration_since(now))
            .filter(|left| !left.is_zero());
        events::failed(&self.uri_for_events(), &reason, stale_left);
        drop(current);
        self.expire_if_stale(now);
    }

    /// 1 s, 2 s, 4 s … up to a minute (or `ttl_min` if shorter).
    fn backoff(&self, failures: u32) -> Duration {
        let cap = MAX_RETRY_BACKOFF.min(self.config.ttl_min);
        Duration::from_secs(1u64 << failures.saturating_sub(1).min(16)).min(cap)
    }

    /// Drops keys that are stale for longer than `max_stale`.
    fn expire_if_stale(&self, now: Instant) {
        let current = self.current.load();
        if current.keys == 0 || current.usable(now) {
            return;
        }
        drop(current);
        {
            let mut state = lock(&self.state);
            state.prints.clear();
            state.etag = None;
        }
        self.current
            .store(Arc::new(Current::empty(Arc::clone(&self.empty))));
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.changes.send_replace(generation);
        events::expired(&self.uri_for_events());
    }
}

/// A uniformly distributed number in `[0, 1)`, for jitter.
fn unit_random() -> f64 {
    f64::from(getrandom::u32().unwrap_or(0)) / (f64::from(u32::MAX) + 1.0)
}

fn print(entry: &KeyEntry) -> KeyPrint {
    let algs = entry.algs.bits();
    let material = match entry.key.kind() {
        DecodingKeyKind::SecretOrDer(bytes) => bytes.clone(),
        DecodingKeyKind::RsaModulusExponent { n, e } => {
            let mut bytes = Vec::with_capacity(n.len() + e.len() + 8);
            bytes.extend_from_slice(&(n.len() as u64).to_be_bytes());
            bytes.extend_from_slice(n);
            bytes.extend_from_slice(e);
            bytes
        }
    };
    (entry.kid.clone(), algs, material)
}

/// OpenID Connect Discovery 1.0 §4.1: any terminating `/` of the issuer is removed before
/// `/.well-known/openid-configuration` is appended.
fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// Why a URL is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UrlProblem {
    Invalid,
    PlainHttp,
    Scheme,
}

impl UrlProblem {
    fn jwks(self) -> &'static str {
        match self {
            UrlProblem::Invalid => "the JWKS URI is not a valid absolute URL",
            UrlProblem::PlainHttp => {
                "the JWKS URI must use https (plain http only for a loopback host, with \
                 allow_http_for_loopback())"
            }
            UrlProblem::Scheme => "the JWKS URI must use https",
        }
    }

    fn issuer(self) -> &'static str {
        match self {
            UrlProblem::Invalid => "the issuer is not a valid absolute URL",
            UrlProblem::PlainHttp => {
                "the issuer must use https (plain http only for a loopback host, with \
                 allow_http_for_loopback())"
            }
            UrlProblem::Scheme => "the issuer must use https",
        }
    }
}

/// `https` with a host; `http` only to a loopback host and only when allowed.
fn check_url(url: &str, allow_http_for_loopback: bool) -> Result<(), UrlProblem> {
    let parsed = reqwest::Url::parse(url).map_err(|_| UrlProblem::Invalid)?;
    let Some(host) = parsed.host_str().filter(|h| !h.is_empty()) else {
        return Err(UrlProblem::Invalid);
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if allow_http_for_loopback && is_loopback(host) => Ok(()),
        "http" => Err(UrlProblem::PlainHttp),
        _ => Err(UrlProblem::Scheme),
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => {
            let name = bare.strip_suffix('.').unwrap_or(bare);
            name.eq_ignore_ascii_case("localhost")
        }
    }
}
