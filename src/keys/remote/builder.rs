//! The settings of a [`RemoteJwks`], checked by [`RemoteJwksBuilder::build`], which also
//! makes the first fetch and starts the background refresh.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use tokio::sync::{Notify, watch};

use super::cache::NegativeCache;
use super::client::{HttpFetcher, ReqwestFetcher};
use super::events::Trigger;
use super::refresh::{RefreshState, background};
use super::url::check_url;
use super::{Counters, Inner, RemoteJwks, Snapshot};
use crate::BuildError;
use crate::keys::{AlgSet, KeySet};

/// The algorithms accepted from a remote key set unless
/// [`algorithms`](RemoteJwksBuilder::algorithms) says otherwise: every asymmetric one.
pub const DEFAULT_ALGORITHMS: [crate::Algorithm; 9] = [
    crate::Algorithm::RS256,
    crate::Algorithm::RS384,
    crate::Algorithm::RS512,
    crate::Algorithm::PS256,
    crate::Algorithm::PS384,
    crate::Algorithm::PS512,
    crate::Algorithm::ES256,
    crate::Algorithm::ES384,
    crate::Algorithm::EdDSA,
];

/// Unknown-`kid` refresh tokens the bucket holds; see [`RemoteJwksBuilder::refresh_limit`].
pub(super) const DEFAULT_REFRESH_BURST: u32 = 2;
/// One more token per this (10 a minute).
pub(super) const DEFAULT_REFRESH_REFILL: Duration = Duration::from_secs(6);
const DEFAULT_TTL_MIN: Duration = Duration::from_secs(5 * 60);
const DEFAULT_TTL_MAX: Duration = Duration::from_secs(24 * 60 * 60);
const DEFAULT_MAX_STALE: Duration = Duration::from_secs(24 * 60 * 60);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_TOTAL_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_MAX_BODY_SIZE: usize = 1024 * 1024;

/// Settings for a [`RemoteJwks`]; from [`RemoteJwks::from_jwks_uri`] or
/// [`RemoteJwks::from_issuer`].
pub struct RemoteJwksBuilder {
    source: Source,
    config: Config,
    fetcher: Option<Arc<dyn HttpFetcher>>,
}

#[derive(Debug, Clone)]
enum Source {
    JwksUri(String),
    Issuer(String),
}

#[derive(Debug, Clone)]
pub(super) struct Config {
    pub algorithms: Vec<Algorithm>,
    /// The unknown-`kid` refresh bucket: `burst` tokens, one more per `refill`.
    pub burst: u32,
    pub refill: Duration,
    pub ttl_min: Duration,
    pub ttl_max: Duration,
    pub max_stale: Duration,
    pub connect_timeout: Duration,
    pub total_timeout: Duration,
    pub max_body_size: usize,
    pub allow_http_for_loopback: bool,
    pub lazy: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            algorithms: DEFAULT_ALGORITHMS.map(crate::Algorithm::jwt).to_vec(),
            burst: DEFAULT_REFRESH_BURST,
            refill: DEFAULT_REFRESH_REFILL,
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
    pub fn algorithms(mut self, algs: impl IntoIterator<Item = crate::Algorithm>) -> Self {
        self.config.algorithms = algs.into_iter().map(crate::Algorithm::jwt).collect();
        self
    }

    /// Rate-limits the refreshes that tokens with unknown `kid`s trigger, with a token
    /// bucket: it holds `burst` tokens and gains one per `refill`; such a refresh needs a
    /// token, and every fetch (initial and background ones too) takes one when there is one.
    /// Negatively cached `kid`s are forgotten `refill` after the fetch that lacked them.
    /// Default: 2 tokens, one per 6 s.
    ///
    /// So a flood of random `kid`s costs the provider at most `burst + t / refill` refreshes
    /// in any span of time `t`, besides the background refresh (by default 12 in a minute and
    /// 10 a minute sustained, the default `jwksRequestsPerMinute` of jwks-rsa), and a key the
    /// provider starts using without publishing it ahead is accepted at most `refill` after
    /// its first use, flood or not: every fetch answers every `kid` it has, and a flood makes
    /// one as soon as there is a token. The burst lets an unknown `kid` right after a fetch
    /// (a background one, say) refresh at once. OpenID Connect Core 1.0 §10.1.1 has the
    /// verifier re-fetch the JWKS when it sees an unfamiliar `kid`; a fixed cooldown (jose
    /// and Nimbus wait 30 s) refuses such a key for up to the whole cooldown.
    ///
    /// `burst` must be at least 1. A zero `refill` lets every unknown `kid` fetch (concurrent
    /// ones still share one request).
    pub fn refresh_limit(mut self, burst: u32, refill: Duration) -> Self {
        self.config.burst = burst;
        self.config.refill = refill;
        self
    }

    /// At most one unknown-`kid` refresh per `cooldown`, counted from the last fetch of any
    /// kind: the same as [`refresh_limit(1, cooldown)`](Self::refresh_limit). Zero lets every
    /// unknown `kid` fetch (concurrent ones still share one request).
    pub fn refresh_cooldown(self, cooldown: Duration) -> Self {
        self.refresh_limit(1, cooldown)
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

    /// Fetch through this client instead of the default (reqwest with rustls).
    pub fn fetcher(mut self, fetcher: impl HttpFetcher) -> Self {
        self.fetcher = Some(Arc::new(fetcher));
        self
    }

    /// Do not wait for the first fetch in [`build`](Self::build): it happens in the
    /// background, and until it succeeds the key set is empty (tokens are answered with
    /// [`KeysUnavailable`](super::KeysUnavailable)). Discovery problems then show in
    /// [`RemoteJwks::stats`] and the logs instead of as a build error.
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
        if config.burst == 0 {
            return Err(BuildError::InvalidSetting(
                "refresh_limit: burst must be at least 1",
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
        let inner = Arc::new(Inner {
            allowed: AlgSet::from_iter(config.algorithms.iter().copied()),
            config,
            issuer,
            jwks_uri: jwks_uri.map(OnceLock::from).unwrap_or_default(),
            fetcher,
            snapshot: ArcSwap::from_pointee(Snapshot::empty(Arc::clone(&empty))),
            empty,
            flight: Arc::new(tokio::sync::Mutex::new(RefreshState::default())),
            negative: Mutex::new(NegativeCache::default()),
            changes: watch::Sender::new(0),
            wake: Arc::new(Notify::new()),
            counters: Counters::default(),
        });
        if !inner.config.lazy {
            let mut state = inner.flight.lock().await;
            inner
                .refresh(&mut state, Trigger::Initial)
                .await
                .map_err(|failure| failure.into_build_error(inner.issuer.as_deref()))?;
        }
        runtime.spawn(background(Arc::downgrade(&inner), Arc::clone(&inner.wake)));
        Ok(RemoteJwks { inner })
    }
}
