//! Revocation: taking tokens back before they expire.
//!
//! A JWT is valid until its `exp` by construction; to end it sooner (logout, a stolen device,
//! a refresh-token reuse) the layer consults a [`Revocation`] store after the signature and
//! claims check. Two kinds of entries:
//!
//! - a `jti`, revoked until the token's own `exp` (entries expire with the token);
//! - a subject "not before": every token of `sub` issued before a time is revoked.
//!
//! [`MemoryRevocation`] serves one process; `RedisRevocation` (feature `redis`) serves a fleet,
//! where a logout on one server must be seen by all of them at once.
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

pub use memory::MemoryRevocation;
#[cfg(feature = "redis")]
pub use redis::RedisRevocation;

use futures_util::future::BoxFuture;

/// What a revocation check looks at: the token's identity and issue time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenId<'a> {
    /// `jti`, when the token has one.
    pub jti: Option<&'a str>,
    /// `sub`, when the token has one.
    pub sub: Option<&'a str>,
    /// `iat` in seconds since the epoch, when the token has one.
    pub iat: Option<u64>,
}

/// The store could not answer.
#[derive(Debug, thiserror::Error)]
#[error("revocation store error: {0}")]
pub struct RevocationError(pub String);

/// A store of revoked tokens, shared by every layer that should honour the same revocations.
///
/// Methods return boxed futures so the trait stays object-safe (`Arc<dyn Revocation>`).
pub trait Revocation: Send + Sync + 'static {
    /// Whether the token is revoked: its `jti` is, or its subject was revoked at or after its
    /// `iat` (a token without `iat` counts as revoked when its subject has an entry).
    fn is_revoked<'a>(&'a self, token: TokenId<'a>)
    -> BoxFuture<'a, Result<bool, RevocationError>>;

    /// Revokes `jti` until `expires_at` (seconds since the epoch; the token's `exp`), after
    /// which the entry may be forgotten.
    fn revoke<'a>(
        &'a self,
        jti: &'a str,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<(), RevocationError>>;

    /// Revokes every token of `sub` issued before `issued_before` (seconds since the epoch).
    /// The entry is kept until `keep_until`, which should be at least the longest lifetime of
    /// a token of that subject.
    fn revoke_subject<'a>(
        &'a self,
        sub: &'a str,
        issued_before: u64,
        keep_until: u64,
    ) -> BoxFuture<'a, Result<(), RevocationError>>;

    /// Marks `jti` as used, atomically: `Ok(true)` the first time, `Ok(false)` ever after
    /// (until `expires_at`). Refresh-token rotation builds its reuse detection on this.
    fn use_once<'a>(
        &'a self,
        jti: &'a str,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<bool, RevocationError>>;
}

/// The current time in whole seconds since the epoch.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
