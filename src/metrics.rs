//! Metrics (feature `metrics`), recorded through the [`metrics`](https://docs.rs/metrics)
//! facade: install any recorder (a Prometheus exporter, StatsD, OpenTelemetry, …) and the layer
//! reports to it; without one, every call is a no-op. Without the feature, none of this is
//! compiled.
//!
//! | Name | Type | Labels | What |
//! |---|---|---|---|
//! | [`REQUESTS_TOTAL`] | counter | `outcome`, `reason` | every request the layer decided |
//! | [`ISSUER_REQUESTS_TOTAL`] | counter | `issuer`, `outcome` | the tokens of a layer or tenant configured with one issuer |
//! | [`VERIFY_DURATION_SECONDS`] | histogram | — | the signature and claims check alone, sampled: one verification in 16 per thread |
//! | [`CACHE_HITS_TOTAL`], [`CACHE_MISSES_TOTAL`] | counter | — | verified-token cache lookups |
//! | [`REVOCATION_ERRORS_TOTAL`] | counter | — | revocation store failures |
//! | [`JWKS_FETCHES_TOTAL`] | counter | `result` | remote key set fetches |
//! | [`JWKS_ROTATIONS_TOTAL`] | counter | — | fetched key sets whose `kid`s changed |
//! | [`JWKS_STALE_SERVED_TOTAL`] | counter | — | failed refreshes that kept the last good keys |
//! | [`JWKS_KEYS_DROPPED_TOTAL`] | counter | — | key sets dropped after `max_stale` |
//!
//! `outcome` is `accepted` or `rejected`. For a rejection, `reason` is
//! [`AuthError::reason`](crate::AuthError::reason) (`missing_token`, `expired`,
//! `invalid_signature`, `claims_rejected` for a
//! [`validate`](crate::JwtAuthBuilder::validate) hook's refusal, …); for an acceptance it is
//! `verified` (a token checked, or found in the cache, and not revoked) or `anonymous` (let
//! through without a token: an optional layer, a CORS preflight, or a
//! [public path](crate::JwtAuthBuilder::public_path)). Every label value is one of a fixed set chosen by the crate: nothing
//! from the request (no `iss`, `kid` or token) ever becomes a label, so a client cannot create
//! new series; [`ISSUER_REQUESTS_TOTAL`]'s `issuer` is a configured issuer. [`describe`] gives
//! every metric its help text and unit.
//!
//! ```
//! # #[cfg(feature = "axum")] {
//! use metrics_util::debugging::{DebugValue, DebuggingRecorder};
//! use tower::ServiceExt;
//! use tower_jwt_auth::JwtAuthLayer;
//!
//! #[derive(serde::Deserialize)]
//! struct MyClaims { sub: String }
//!
//! // A recorder for this thread only; an application installs its exporter globally.
//! let recorder = DebuggingRecorder::new();
//! let snapshotter = recorder.snapshotter();
//! let _guard = metrics::set_default_local_recorder(&recorder);
//!
//! let auth = JwtAuthLayer::<MyClaims>::builder()
//!     .hs256(b"an example secret that is 32 bytes+")
//!     .build()
//!     .unwrap();
//! let svc = tower::ServiceBuilder::new()
//!     .layer(auth)
//!     .service_fn(|_req: http::Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
//!     });
//! let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! let res = rt.block_on(svc.oneshot(http::Request::new(String::new()))).unwrap();
//! assert_eq!(res.status(), 401);
//!
//! let rejected = snapshotter.snapshot().into_vec().into_iter().find(|(key, ..)| {
//!     key.key().name() == tower_jwt_auth::metrics::REQUESTS_TOTAL
//!         && key.key().labels().any(|l| l.value() == "missing_token")
//! });
//! assert!(matches!(rejected, Some((_, _, _, DebugValue::Counter(1)))));
//! # }
//! ```

use std::cell::Cell;
use std::time::Instant;

use ::metrics::{Key, Label, Level, Metadata};

/// Counter of the requests the layer decided; labels `outcome` (`accepted`, `rejected`) and
/// `reason`.
pub const REQUESTS_TOTAL: &str = "tower_jwt_auth_requests_total";
/// Counter of the tokens a layer decided about with a configured issuer, by that issuer;
/// labels `issuer` and `outcome` (`accepted`, `rejected`). Counted for a layer, or a tenant,
/// configured with exactly one issuer, once the token reached its verifier: the label is that
/// configured issuer, never what a token claims, so a client cannot create new series.
pub const ISSUER_REQUESTS_TOTAL: &str = "tower_jwt_auth_issuer_requests_total";
/// Histogram of the time, in seconds, the signature and claims check of one token took (not
/// the cache lookup, the revocation check or the inner service); one verification in
/// 16 per thread is timed.
pub const VERIFY_DURATION_SECONDS: &str = "tower_jwt_auth_verify_duration_seconds";
/// Counter of the requests served from the verified-token cache (feature `cache`).
pub const CACHE_HITS_TOTAL: &str = "tower_jwt_auth_cache_hits_total";
/// Counter of the cache lookups that found no usable entry (feature `cache`).
pub const CACHE_MISSES_TOTAL: &str = "tower_jwt_auth_cache_misses_total";
/// Counter of the revocation store's failures (unreachable, timed out), whether the layer
/// then failed closed (503) or open.
pub const REVOCATION_ERRORS_TOTAL: &str = "tower_jwt_auth_revocation_errors_total";
/// Counter of the remote key set's fetches (feature `remote`); label `result`: `updated` (a
/// `200` with a usable key set), `not_modified` (a `304`) or `error` (anything else, discovery
/// included).
pub const JWKS_FETCHES_TOTAL: &str = "tower_jwt_auth_jwks_fetches_total";
/// Counter of the fetched key sets whose `kid`s differ from the previous set (feature
/// `remote`).
pub const JWKS_ROTATIONS_TOTAL: &str = "tower_jwt_auth_jwks_rotations_total";
/// Counter of the failed refreshes after which the last good keys kept being served, within
/// `max_stale` (feature `remote`).
pub const JWKS_STALE_SERVED_TOTAL: &str = "tower_jwt_auth_jwks_stale_served_total";
/// Counter of the times the last good keys were dropped, stale beyond `max_stale` (feature
/// `remote`).
pub const JWKS_KEYS_DROPPED_TOTAL: &str = "tower_jwt_auth_jwks_keys_dropped_total";

/// Describes every metric above to the installed recorder (its `# HELP` text and unit, for
/// exporters that show them). Optional: call it once, after installing the recorder.
pub fn describe() {
    use ::metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(
        REQUESTS_TOTAL,
        Unit::Count,
        "Requests the JWT layer decided, by outcome (accepted, rejected) and reason."
    );
    describe_counter!(
        ISSUER_REQUESTS_TOTAL,
        Unit::Count,
        "Tokens decided by a layer or tenant with one configured issuer, by issuer and outcome."
    );
    describe_histogram!(
        VERIFY_DURATION_SECONDS,
        Unit::Seconds,
        "Time to verify one token's signature and claims."
    );
    describe_counter!(
        CACHE_HITS_TOTAL,
        Unit::Count,
        "Requests served from the verified-token cache."
    );
    describe_counter!(
        CACHE_MISSES_TOTAL,
        Unit::Count,
        "Verified-token cache lookups that found no usable entry."
    );
    describe_counter!(
        REVOCATION_ERRORS_TOTAL,
        Unit::Count,
        "Revocation store failures."
    );
    describe_counter!(
        JWKS_FETCHES_TOTAL,
        Unit::Count,
        "Remote JWKS fetches, by result (updated, not_modified, error)."
    );
    describe_counter!(
        JWKS_ROTATIONS_TOTAL,
        Unit::Count,
        "Fetched JWKS whose key ids changed."
    );
    describe_counter!(
        JWKS_STALE_SERVED_TOTAL,
        Unit::Count,
        "Failed JWKS refreshes after which the last good keys kept being used."
    );
    describe_counter!(
        JWKS_KEYS_DROPPED_TOTAL,
        Unit::Count,
        "JWKS dropped after being stale for longer than max_stale."
    );
}

/// A request let through: `reason` is `"verified"` or `"anonymous"`.
///
/// The hot path: the key is a static (no allocation, no hashing of labels per request), and
/// without a recorder the call is a thread-local read and a no-op.
pub(crate) fn accepted(reason: &'static str) {
    static VERIFIED: [Label; 2] = [
        Label::from_static_parts("outcome", "accepted"),
        Label::from_static_parts("reason", "verified"),
    ];
    static ANONYMOUS: [Label; 2] = [
        Label::from_static_parts("outcome", "accepted"),
        Label::from_static_parts("reason", "anonymous"),
    ];
    static VERIFIED_KEY: Key = Key::from_static_parts(REQUESTS_TOTAL, &VERIFIED);
    static ANONYMOUS_KEY: Key = Key::from_static_parts(REQUESTS_TOTAL, &ANONYMOUS);
    count(if reason == "verified" {
        &VERIFIED_KEY
    } else {
        &ANONYMOUS_KEY
    });
}

/// A request refused for `reason` ([`AuthError::reason`](crate::AuthError::reason)).
pub(crate) fn rejected(reason: &'static str) {
    ::metrics::counter!(REQUESTS_TOTAL, "outcome" => "rejected", "reason" => reason).increment(1);
}

/// The [`ISSUER_REQUESTS_TOTAL`] counters of a layer's verifiers (the layer's one, or one per
/// tenant, by index): `None` for a verifier configured with other than one issuer.
pub(crate) struct Issuers(Vec<Option<[Key; 2]>>);

impl Issuers {
    /// The counters for verifiers configured with `issuers`, in order.
    pub(crate) fn new<'a>(issuers: impl Iterator<Item = &'a [String]>) -> Issuers {
        Issuers(
            issuers
                .map(|issuers| match issuers {
                    [issuer] => Some(["accepted", "rejected"].map(|outcome| {
                        let labels = vec![
                            Label::new("issuer", issuer.clone()),
                            Label::from_static_parts("outcome", outcome),
                        ];
                        Key::from_parts(ISSUER_REQUESTS_TOTAL, labels)
                    })),
                    _ => None,
                })
                .collect(),
        )
    }

    /// A token of the `verifier`th verifier was let through (`true`) or refused.
    pub(crate) fn count(&self, verifier: usize, accepted: bool) {
        if let Some(Some(keys)) = self.0.get(verifier) {
            let key = &keys[usize::from(!accepted)];
            ::metrics::with_recorder(|recorder| recorder.register_counter(key, &METADATA))
                .increment(1);
        }
    }
}

/// Increments the counter `key`.
fn count(key: &'static Key) {
    ::metrics::with_recorder(|recorder| recorder.register_counter(key, &METADATA)).increment(1);
}

/// What every metric of the crate is recorded under.
static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// One verification in [`SAMPLE_EVERY`] per thread is timed: two clock reads per request
/// would cost more than the rest of the metrics together.
pub(crate) const SAMPLE_EVERY: u32 = 16;

/// The start of a verification, when this one is sampled.
pub(crate) fn verify_started() -> Option<Instant> {
    thread_local! {
        static SEEN: Cell<u32> = const { Cell::new(0) };
    }
    SEEN.with(|seen| {
        let n = seen.get().wrapping_add(1);
        seen.set(n);
        (n % SAMPLE_EVERY == 1).then(Instant::now)
    })
}

/// Records how long a sampled verification took.
pub(crate) fn verify_finished(started: Option<Instant>) {
    static KEY: Key = Key::from_static_name(VERIFY_DURATION_SECONDS);
    if let Some(started) = started {
        ::metrics::with_recorder(|recorder| recorder.register_histogram(&KEY, &METADATA))
            .record(started.elapsed().as_secs_f64());
    }
}

/// One lookup of the verified-token cache.
#[cfg(feature = "cache")]
pub(crate) fn cache_lookup(hit: bool) {
    static HIT: Key = Key::from_static_name(CACHE_HITS_TOTAL);
    static MISS: Key = Key::from_static_name(CACHE_MISSES_TOTAL);
    count(if hit { &HIT } else { &MISS });
}

/// The revocation store could not be asked.
pub(crate) fn revocation_error() {
    ::metrics::counter!(REVOCATION_ERRORS_TOTAL).increment(1);
}

/// One fetch of a remote key set: `result` is `"updated"`, `"not_modified"` or `"error"`.
#[cfg(feature = "remote")]
pub(crate) fn jwks_fetch(result: &'static str) {
    ::metrics::counter!(JWKS_FETCHES_TOTAL, "result" => result).increment(1);
}

/// A fetched key set whose `kid`s changed.
#[cfg(feature = "remote")]
pub(crate) fn jwks_rotation() {
    ::metrics::counter!(JWKS_ROTATIONS_TOTAL).increment(1);
}

/// A failed refresh that kept the last good keys.
#[cfg(feature = "remote")]
pub(crate) fn jwks_stale_served() {
    ::metrics::counter!(JWKS_STALE_SERVED_TOTAL).increment(1);
}

/// The last good keys dropped, stale for too long.
#[cfg(feature = "remote")]
pub(crate) fn jwks_keys_dropped() {
    ::metrics::counter!(JWKS_KEYS_DROPPED_TOTAL).increment(1);
}
