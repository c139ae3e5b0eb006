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
//! * **Unknown `kid`, abuse-resistant, without a long wait.** A token naming a `kid` the set
//!   lacks may trigger a refresh (a rotation the background task has not seen yet, or a key
//!   the provider started using without publishing it ahead). Such refreshes are
//!   single-flight (all concurrent callers share one request) and rate-limited by a token
//!   bucket, [`refresh_limit`](RemoteJwksBuilder::refresh_limit): by default 2 tokens, one
//!   more every 6 s, and every fetch (background ones included) takes one. `kid`s a fresh set
//!   did not contain are remembered (at most 1024, for one refill interval). A flood of
//!   tokens with random `kid`s therefore costs the provider at most 2 + t / 6 s refreshes in
//!   any span of time t besides the background refresh (12 in a minute, 10 a minute
//!   sustained), and cannot starve a real rotation: every fetch answers every `kid` it
//!   contains, and a fetch starts at most 6 s after a new `kid` is first used, so an
//!   unannounced key is accepted within 6 s (at once when a token is left, as after any fetch
//!   that did not empty the bucket).
//! * **Stale-if-error.** When the provider is down, slow, answers `5xx`, garbage, an empty or
//!   unusable key set, or a body over [`max_body_size`](RemoteJwksBuilder::max_body_size),
//!   the last good keys keep working for up to [`max_stale`](RemoteJwksBuilder::max_stale)
//!   past their expiry, with a warning (feature `tracing`). Tokens with a `kid` that is not in
//!   those keys are then answered with [`KeysUnavailable`] (the layer answers `503` with
//!   `Retry-After`) rather than `401`, since the provider may have rotated.
//! * **Safe transport.** `https` only (plain `http` only for loopback hosts, when
//!   [allowed](RemoteJwksBuilder::allow_http_for_loopback)), no redirects, connect and total
//!   timeouts, and a body size cap enforced while the body streams in.
//! * **Key hygiene.** Each JWK is judged on its own (see [`Jwks`](super::Jwks)): a malformed or unsupported
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
//! use tower_jwt_auth::remote::RemoteJwks;
//!
//! // `jwks_uri` is e.g. "http://127.0.0.1:41234/jwks.json", a server started above.
//! let keys = RemoteJwks::from_jwks_uri(jwks_uri)
//!     .allow_http_for_loopback() // only because the test server is local and plain http
//!     .refresh_limit(2, Duration::from_secs(6)) // the default: a burst of 2, then 10 a minute
//!     .build() // waits for the first fetch, and fails when it does
//!     .await?;
//!
//! assert!(keys.contains_kid("ed-1"));
//! assert_eq!(keys.stats().fetches, 1);
//! // Asking for a kid the provider does not have: the first fetch left a token, so the set
//! // is fetched again (it may have a key published since).
//! assert!(!keys.resolve_kid("no-such-kid").await?);
//! assert_eq!(keys.stats().fetches, 2);
//! // Asking again within 6 s: answered from the negative cache, without a request.
//! assert!(!keys.resolve_kid("no-such-kid").await?);
//! assert_eq!(keys.stats().fetches, 2);
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
//! use tower_jwt_auth::remote::RemoteJwks;
//!
//! let keys = RemoteJwks::from_issuer("https://id.example.com").build().await?;
//! assert_eq!(keys.issuer(), Some("https://id.example.com"));
//! # Ok(())
//! # }
//! ```

mod builder;
mod cache;
mod client;
mod events;
mod fetch;
mod refresh;
#[cfg(test)]
mod tests;
mod url;

pub use builder::{DEFAULT_ALGORITHMS, RemoteJwksBuilder};
pub use client::{FetchError, FetchFuture, FetchRequest, FetchResponse, HttpFetcher};

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use self::builder::Config;
use self::cache::NegativeCache;
use self::refresh::RefreshState;
use super::{AlgSet, KeySet};

/// Signing keys fetched from an identity provider, kept fresh.
///
/// Made with [`RemoteJwks::from_jwks_uri`] or [`RemoteJwks::from_issuer`] and
/// [`RemoteJwksBuilder::build`]. Cloning is cheap: clones share the keys, the refresh state
/// and the background task. See the [module documentation](self) for the behaviour.
#[derive(Clone)]
pub struct RemoteJwks {
    inner: Arc<Inner>,
}

/// Changes of a [`RemoteJwks`] key set, from [`RemoteJwks::subscribe`].
#[derive(Debug)]
pub struct KeyChanges(watch::Receiver<u64>);

impl KeyChanges {
    /// Waits for the next change of the key set and returns its
    /// [`generation`](RemoteJwks::generation); `None` once the key source is gone.
    pub async fn changed(&mut self) -> Option<u64> {
        self.0.changed().await.ok()?;
        Some(*self.0.borrow_and_update())
    }

    /// Waits until the key set's [`generation`](RemoteJwks::generation) is at least
    /// `generation` (at once if it is already) and returns it; `None` once the key source is
    /// gone.
    pub async fn reached(&mut self, generation: u64) -> Option<u64> {
        self.0.wait_for(|g| *g >= generation).await.ok().map(|g| *g)
    }
}

/// The identity provider could not be reached and no key it served before fits the token.
///
/// The layer answers such a request with `503 Service Unavailable` and `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysUnavailable {
    /// When trying again may help: the next possible fetch (the next unknown-`kid` refresh
    /// token, or the next scheduled retry, whichever is sooner), rounded up to whole seconds,
    /// at least one second.
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
    /// Unknown-`kid` lookups answered without a request: no refresh token was available
    /// ([`refresh_limit`](RemoteJwksBuilder::refresh_limit)), or a refresh they waited for
    /// had just answered them.
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

/// State shared by the clones of a [`RemoteJwks`] and its background task.
///
/// Readers load `snapshot` and never wait. A refresh runs while holding `flight`, and only
/// that holder stores a new snapshot: one refresh at a time, and one writer.
struct Inner {
    config: Config,
    allowed: AlgSet,
    issuer: Option<String>,
    /// Set at build, or by the first discovery.
    jwks_uri: OnceLock<String>,
    fetcher: Arc<dyn HttpFetcher>,
    /// What readers get when there are no usable keys.
    empty: Arc<KeySet>,
    /// The keys and what is known about them, replaced as a whole.
    snapshot: ArcSwap<Snapshot>,
    /// The single flight. In an `Arc` so that an unknown-`kid` refresh can hold it in a task
    /// of its own.
    flight: Arc<tokio::sync::Mutex<RefreshState>>,
    /// Read before waiting for `flight`, so that its hits never wait for a fetch.
    negative: Mutex<NegativeCache>,
    /// Publishes `generation` to the receivers of `RemoteJwks::subscribe`.
    changes: watch::Sender<u64>,
    /// Wakes the background task: the schedule moved, or the handles are gone.
    wake: Arc<Notify>,
    counters: Counters,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The background task holds only a weak reference: woken, it sees that and ends.
        self.wake.notify_one();
    }
}

/// The keys, and what the refreshes found out about them. Replaced as a whole, so a reader
/// never sees a key set with the generation or the health of another.
#[derive(Clone)]
struct Snapshot {
    /// `Inner::empty` when there are no keys.
    set: Arc<KeySet>,
    /// Sorted, distinct.
    kids: Arc<[Box<str>]>,
    /// The number of keys in `set`.
    keys: usize,
    /// Changes whenever `set` does; see `RemoteJwks::generation`.
    generation: u64,
    /// When the keys stop being fresh.
    expires_at: Option<Instant>,
    /// Expiry plus `max_stale`: the keys are not used from then on. `None` when there are none.
    usable_until: Option<Instant>,
    /// When the last refresh attempt started: negatively cached `kid`s are remembered until
    /// one refill interval after it.
    last_attempt: Option<Instant>,
    /// The unknown-`kid` refresh bucket: the instant it is full again (every fetch takes a
    /// token). Only the flight holder changes it, like the rest of the snapshot; see
    /// `Inner::token_at`.
    bucket_full_at: Instant,
    /// Refresh attempts finished, successful or not: a caller that waited for the flight
    /// tells by it whether a refresh happened meanwhile.
    refreshes: u64,
    /// The background refresh, or after a failure the next retry.
    next_refresh: Instant,
    last_success: Option<Instant>,
    last_failure: Option<Instant>,
    last_error: Option<String>,
    /// Not zero: the last attempt failed, so an unknown `kid` may be a rotation we cannot
    /// see (answered `KeysUnavailable`, not "unknown key").
    consecutive_failures: u32,
    /// Keys the last fetched document had that are not used.
    skipped: usize,
}

impl Snapshot {
    /// No keys yet; the first refresh is due at once.
    fn empty(set: Arc<KeySet>) -> Snapshot {
        Snapshot {
            set,
            kids: Arc::from([]),
            keys: 0,
            generation: 0,
            expires_at: None,
            usable_until: None,
            last_attempt: None,
            bucket_full_at: Instant::now(),
            refreshes: 0,
            next_refresh: Instant::now(),
            last_success: None,
            last_failure: None,
            last_error: None,
            consecutive_failures: 0,
            skipped: 0,
        }
    }

    fn usable(&self, now: Instant) -> bool {
        self.keys > 0 && self.usable_until.is_some_and(|until| now < until)
    }

    fn contains(&self, kid: &str) -> bool {
        has_kid(&self.kids, kid)
    }
}

/// Whether sorted `kids` has `kid`.
fn has_kid(kids: &[Box<str>], kid: &str) -> bool {
    kids.binary_search_by(|k| (**k).cmp(kid)).is_ok()
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

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RemoteJwks {
    /// The algorithms this source accepts keys for.
    pub(crate) fn allowed(&self) -> AlgSet {
        self.inner.allowed
    }

    /// The current key set, read without a lock and without waiting for any I/O.
    ///
    /// Empty before the first successful fetch, and once the keys are stale for longer than
    /// `max_stale`.
    pub(crate) fn snapshot(&self) -> Arc<KeySet> {
        let current = self.inner.snapshot.load();
        if current.usable(Instant::now()) {
            Arc::clone(&current.set)
        } else {
            Arc::clone(&self.inner.empty)
        }
    }

    /// Whether the provider has a key with this `kid`, refreshing the set when it is not
    /// known yet, under the same rules as the layer (single-flight, rate limit, negative
    /// cache).
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
    /// The number and the set are published together, so a cache that reads `generation()`
    /// *before* the key set it verifies with, and tags what it verified with it, never keeps
    /// an entry of an older set under a newer number.
    pub fn generation(&self) -> u64 {
        self.inner.snapshot.load().generation
    }

    /// The generation of the keys verification uses now: `None` while they are unusable
    /// (past `max_stale`, or none yet), when [`snapshot`](Self::snapshot) is empty even though
    /// the generation has not moved yet.
    #[cfg_attr(not(feature = "cache"), allow(dead_code))]
    pub(crate) fn usable_generation(&self) -> Option<u64> {
        let current = self.inner.snapshot.load();
        current.usable(Instant::now()).then_some(current.generation)
    }

    /// A receiver that sees [`generation`](Self::generation) change: to invalidate caches,
    /// log rotations, or wait for the first keys of a [`lazy`](RemoteJwksBuilder::lazy) set.
    ///
    /// ```
    /// # async fn run(keys: tower_jwt_auth::remote::RemoteJwks) {
    /// let mut changes = keys.subscribe();
    /// while let Some(generation) = changes.changed().await {
    ///     println!("keys changed (generation {generation}): now {:?}", keys.kids());
    /// }
    /// # }
    /// ```
    pub fn subscribe(&self) -> KeyChanges {
        KeyChanges(self.inner.changes.subscribe())
    }

    /// The `kid`s of the current key set, sorted.
    pub fn kids(&self) -> Vec<String> {
        let current = self.inner.snapshot.load();
        if current.usable(Instant::now()) {
            current.kids.iter().map(|k| k.to_string()).collect()
        } else {
            Vec::new()
        }
    }

    /// Whether the current key set has a key with this `kid`. Never fetches.
    pub fn contains_kid(&self, kid: &str) -> bool {
        let current = self.inner.snapshot.load();
        current.usable(Instant::now()) && current.contains(kid)
    }

    /// The issuer given to [`from_issuer`](Self::from_issuer) (the discovery document agreed
    /// with it), or `None` for [`from_jwks_uri`](Self::from_jwks_uri). A layer or
    /// [`Tenant`](crate::Tenant) using this source accepts tokens of this issuer only: any other
    /// configured issuer is a [`BuildError::IssuerMismatch`](crate::BuildError::IssuerMismatch).
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
        let current = inner.snapshot.load_full();
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
            generation: current.generation,
            keys: if usable { current.keys } else { 0 },
            kids: if usable { current.kids.len() } else { 0 },
            skipped_keys: current.skipped,
            last_success_age: age(current.last_success),
            last_failure_age: age(current.last_failure),
            last_error: current.last_error.clone(),
            consecutive_failures: current.consecutive_failures,
            expires_in: (current.expires_at)
                .filter(|_| usable)
                .map(|t| t.saturating_duration_since(now)),
            stale: usable && current.expires_at.is_some_and(|t| t <= now),
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
