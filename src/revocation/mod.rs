//! Revocation: taking tokens back before they expire.
//!
//! A JWT is valid until its `exp` by construction; to end it sooner (logout, a stolen device,
//! a refresh-token reuse) the layer consults a [`Revocation`] store after the signature and
//! claims check. Two kinds of entries:
//!
//! - a `jti`, revoked until the token's own `exp`;
//! - a subject "not before": every token of one subject of one issuer (`iss` and `sub`
//!   together, RFC 7519 §4.1.2: a subject is unique only within its issuer) issued before a
//!   time is revoked.
//!
//! A layer accepts a token until `exp` plus its leeway, so a store keeps every entry for a
//! *retention margin* past the time it is given ([`Revocation::retention_margin`], 5 minutes
//! by default). A layer whose leeway is longer than its store's margin does not build: a
//! revoked or spent token would otherwise be forgotten while a layer still accepts it.
//!
//! With a store configured, a token must carry a `jti` or a `sub`: one with neither could never
//! be revoked, so the layer refuses it (`MissingClaim`) rather than let a logout miss it.
//!
//! [`MemoryRevocation`] serves one process; `RedisRevocation` (feature `redis`) serves a fleet,
//! where a logout on one server must be seen by all of them at once, with one Redis round trip
//! per check; `ReplicatedRevocation` (feature `redis`, from `RedisRevocation::replicate`)
//! serves a fleet from a copy in each server's memory, fed by a Redis Stream, with no round
//! trip per check.
//!
//! When the store cannot be asked, the layer fails closed: the request gets 503 with
//! `Retry-After`, unless [`JwtAuthBuilder::revocation_fail_open`] says otherwise.
//!
//! ```
//! use std::sync::Arc;
//! use tower_jwt_auth::{JwtAuthLayer, revocation::MemoryRevocation};
//!
//! #[derive(Clone, serde::Deserialize)]
//! struct MyClaims { sub: String }
//!
//! let store = Arc::new(MemoryRevocation::new());
//! let auth = JwtAuthLayer::<MyClaims>::builder()
//!     .hs256(b"an example secret that is 32 bytes+")
//!     .revocation(store.clone())
//!     .build()
//!     .unwrap();
//! # let _ = auth;
//! // In a logout handler: store.revoke(&jti, exp).await
//! ```
//!
//! [`JwtAuthBuilder::revocation_fail_open`]: crate::JwtAuthBuilder::revocation_fail_open

mod memory;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
mod replica;

pub use memory::MemoryRevocation;
#[cfg(feature = "redis")]
pub use redis::RedisRevocation;
#[cfg(feature = "redis")]
pub use replica::ReplicatedRevocation;

use std::time::Duration;

use futures_util::future::BoxFuture;

/// How long past an entry's given expiry a store keeps it by default: longer than any
/// reasonable leeway (the layer's default is 60 s).
pub const DEFAULT_RETENTION_MARGIN: Duration = Duration::from_secs(300);

/// The last instant (whole seconds) a store keeps an entry given `expires_at`: `margin` later,
/// rounded up to whole seconds, plus one second, because a token's `exp` may be fractional
/// while the time a store is given is whole seconds (`exp` truncated).
pub(crate) fn kept_until(expires_at: u64, margin: Duration) -> u64 {
    let margin = margin.as_secs() + u64::from(margin.subsec_nanos() > 0);
    expires_at.saturating_add(margin).saturating_add(1)
}

/// What a revocation check looks at: the token's identity and issue time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenId<'a> {
    /// `iss`, when the token has one: it scopes `sub`.
    pub iss: Option<&'a str>,
    /// `jti`, when the token has one.
    pub jti: Option<&'a str>,
    /// `sub`, when the token has one.
    pub sub: Option<&'a str>,
    /// `iat` in seconds since the epoch, when the token has one.
    pub iat: Option<u64>,
}

impl<'a> TokenId<'a> {
    /// A token's identity: its `iss`, `jti`, `sub` and `iat`, each when present.
    pub fn new(
        iss: Option<&'a str>,
        jti: Option<&'a str>,
        sub: Option<&'a str>,
        iat: Option<u64>,
    ) -> TokenId<'a> {
        TokenId { iss, jti, sub, iat }
    }
}

/// The store could not answer.
#[derive(Debug, thiserror::Error)]
#[error("revocation store error: {0}")]
pub struct RevocationError(pub String);

/// What the layer asks for every verified token: is it revoked?
///
/// Methods return boxed futures so the trait stays object-safe (`Arc<dyn Revocation>`). Every
/// time given to a store is the last instant the caller needs the entry for (a token's `exp`);
/// the store keeps it [`retention_margin`](Self::retention_margin) longer, because a layer
/// still accepts the token for its leeway past `exp`.
pub trait Revocation: Send + Sync + 'static {
    /// Whether the token is revoked: its `jti` is, or its subject (`iss` and `sub`) was
    /// revoked at or after its `iat` (a token without `iat` counts as revoked when its subject
    /// has an entry).
    fn is_revoked<'a>(&'a self, token: TokenId<'a>)
    -> BoxFuture<'a, Result<bool, RevocationError>>;

    /// How long past its given expiry the store keeps an entry. A layer refuses to build with
    /// a leeway longer than this.
    fn retention_margin(&self) -> Duration;
}

/// What an issuer or an administrator does with a store: revoke tokens and subjects, and mark
/// single-use tokens (refresh-token rotation builds its reuse detection on it).
pub trait RevocationStore: Revocation {
    /// [`is_revoked`](Revocation::is_revoked) as of now across every server sharing the store:
    /// a store that answers `is_revoked` from a local replica asks its source here too (the
    /// replica first: what it holds stays revoked even if the source lost it).
    /// Refresh-token rotation checks a family with it, since a family revoked on one server
    /// (reuse detected) must stop a rotation on any other at once (RFC 9700 §4.14.2). The
    /// default is `is_revoked`, which is already that for a store without a replica.
    fn is_revoked_consistent<'a>(
        &'a self,
        token: TokenId<'a>,
    ) -> BoxFuture<'a, Result<bool, RevocationError>> {
        self.is_revoked(token)
    }

    /// Revokes `jti` until `expires_at` (seconds since the epoch; the token's `exp`) plus the
    /// retention margin, after which the entry may be forgotten.
    fn revoke<'a>(
        &'a self,
        jti: &'a str,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<(), RevocationError>>;

    /// Revokes every token of `sub` from `iss` (`None` for tokens without `iss`) issued
    /// before `issued_before` (seconds since the epoch). The entry is kept until `keep_until`
    /// plus the retention margin; `keep_until` should be at least the latest `exp` of a
    /// token of that subject (refresh tokens included).
    ///
    /// `issued_before` is compared with the token's `iat`, in whole seconds and on the
    /// issuer's clock: pass at least `now + 1` to reach a token issued earlier in the same
    /// second, and `now + leeway` when the issuer's clock may run ahead of this one (a token
    /// whose `iat` is up to the leeway in the future is accepted).
    fn revoke_subject<'a>(
        &'a self,
        iss: Option<&'a str>,
        sub: &'a str,
        issued_before: u64,
        keep_until: u64,
    ) -> BoxFuture<'a, Result<(), RevocationError>>;

    /// Marks `jti` as used, atomically: `Ok(true)` the first time, `Ok(false)` ever after
    /// (until `expires_at` plus the retention margin).
    fn use_once<'a>(
        &'a self,
        jti: &'a str,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<bool, RevocationError>>;
}
