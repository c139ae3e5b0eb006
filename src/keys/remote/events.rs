//! Tracing events of the remote key source (feature `tracing`; without it these are no-ops),
//! and its counters (feature `metrics`, see [`crate::metrics`]).
//!
//! Events carry the URL, `kid`s, counts and reasons: never a token. Metrics carry none of
//! these, only fixed labels.

#![cfg_attr(not(feature = "tracing"), allow(unused_variables))]

use std::time::Duration;

/// What caused a fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Trigger {
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

pub(super) fn fetching(uri: &str, trigger: Trigger) {
    #[cfg(feature = "tracing")]
    tracing::debug!(url.full = uri, trigger = trigger.as_str(), "fetching JWKS");
}

pub(super) fn discovered(issuer: &str, jwks_uri: &str) {
    #[cfg(feature = "tracing")]
    tracing::info!(
        jwt.iss = issuer,
        url.full = jwks_uri,
        "OpenID Connect discovery"
    );
}

pub(super) fn loaded(uri: &str, keys: usize, skipped: usize, ttl: Duration) {
    #[cfg(feature = "metrics")]
    crate::metrics::jwks_fetch("updated");
    #[cfg(feature = "tracing")]
    tracing::debug!(
        url.full = uri,
        keys,
        skipped,
        ttl_secs = ttl.as_secs(),
        "JWKS fetched"
    );
    #[cfg(feature = "tracing")]
    if skipped > 0 {
        tracing::info!(
            url.full = uri,
            skipped,
            "JWKS keys skipped: malformed, not for signatures, or algorithm not allowed"
        );
    }
}

/// `old` and `new` are sorted `kid`s.
pub(super) fn rotated(uri: &str, old: &[Box<str>], new: &[Box<str>], generation: u64) {
    // Generation 1 is the first key set, not a rotation.
    #[cfg(feature = "metrics")]
    if generation > 1 {
        crate::metrics::jwks_rotation();
    }
    #[cfg(feature = "tracing")]
    tracing::info!(
        url.full = uri,
        added = ?missing(new, old),
        removed = ?missing(old, new),
        generation,
        "JWKS key set changed"
    );
}

/// The `kid`s of `kids` that sorted `other` lacks.
#[cfg(feature = "tracing")]
fn missing<'a>(kids: &'a [Box<str>], other: &[Box<str>]) -> Vec<&'a str> {
    let kids = kids.iter().filter(|k| !super::has_kid(other, k));
    kids.map(|k| &**k).collect()
}

pub(super) fn not_modified(uri: &str, ttl: Duration) {
    #[cfg(feature = "metrics")]
    crate::metrics::jwks_fetch("not_modified");
    #[cfg(feature = "tracing")]
    tracing::debug!(
        url.full = uri,
        ttl_secs = ttl.as_secs(),
        "JWKS not modified"
    );
}

pub(super) fn failed(uri: &str, reason: &str, stale_for: Option<Duration>) {
    #[cfg(feature = "metrics")]
    {
        crate::metrics::jwks_fetch("error");
        if stale_for.is_some() {
            crate::metrics::jwks_stale_served();
        }
    }
    #[cfg(feature = "tracing")]
    match stale_for {
        Some(left) => tracing::warn!(
            url.full = uri,
            error.message = reason,
            stale_left_secs = left.as_secs(),
            "JWKS refresh failed; still using the last good keys"
        ),
        None => tracing::warn!(
            url.full = uri,
            error.message = reason,
            "JWKS refresh failed; no usable keys"
        ),
    }
}

pub(super) fn expired(uri: &str) {
    #[cfg(feature = "metrics")]
    crate::metrics::jwks_keys_dropped();
    #[cfg(feature = "tracing")]
    tracing::error!(
        url.full = uri,
        "JWKS keys dropped: stale for longer than max_stale and the identity provider \
         cannot be reached"
    );
}
