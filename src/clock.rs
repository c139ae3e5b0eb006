//! The time the crate checks tokens against: the system clock, or one a test moves by hand.
//!
//! Every time-dependent decision reads the same [`Clock`]: `exp`, `nbf` and `iat` in the layer
//! (a cache hit included), the retention of revocation and single-use entries in
//! [`MemoryRevocation`](crate::revocation::MemoryRevocation), and the times a
//! [`TokenIssuer`](crate::issue::TokenIssuer) writes. A test hands the same manual clock to each of
//! them and moves it past an expiry instead of sleeping:
//!
//! ```
//! # #[cfg(feature = "issue")] {
//! use std::time::{Duration, SystemTime};
//! use tower_jwt_auth::{Clock, JwtAuthLayer};
//! use tower_jwt_auth::issue::TokenIssuer;
//!
//! let clock = Clock::manual(SystemTime::now());
//! let secret = b"an example secret that is 32 bytes+";
//! let issuer = TokenIssuer::hs256(secret).unwrap()
//!     .lifetime(Duration::from_secs(60))
//!     .clock(clock.clone());
//! let layer = JwtAuthLayer::<serde_json::Value>::builder()
//!     .hs256(secret)
//!     .leeway(Duration::from_secs(5))
//!     .clock(clock.clone())
//!     .build()
//!     .unwrap();
//! let token = issuer.issue("alice", &serde_json::json!({})).unwrap().token;
//! assert!(layer.verify(&token).is_ok());
//! clock.advance(Duration::from_secs(65));
//! assert!(layer.verify(&token).is_err());
//! # }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current time. Clones share it: advancing a manual clock moves every
/// clone.
#[derive(Clone, Default)]
pub struct Clock {
    /// `None` reads the system clock; `Some` holds a manual time in microseconds since the
    /// epoch.
    manual: Option<Arc<AtomicU64>>,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.manual {
            None => f.write_str("Clock::system()"),
            Some(_) => write!(f, "Clock::manual({} s)", self.now()),
        }
    }
}

impl Clock {
    /// The system clock (the default everywhere).
    pub fn system() -> Clock {
        Clock { manual: None }
    }

    /// A clock that stands at `at` until it is moved with [`advance`](Self::advance) or
    /// [`set`](Self::set). Times before the epoch read as the epoch.
    pub fn manual(at: SystemTime) -> Clock {
        Clock {
            manual: Some(Arc::new(AtomicU64::new(micros_since_epoch(at)))),
        }
    }

    /// Moves a manual clock forward by `by`; the system clock cannot be moved and ignores it.
    pub fn advance(&self, by: Duration) {
        if let Some(t) = &self.manual {
            let by = u64::try_from(by.as_micros()).unwrap_or(u64::MAX);
            // The closure always returns Some, so the update cannot fail.
            let _ = t.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |cur| {
                Some(cur.saturating_add(by))
            });
        }
    }

    /// Sets a manual clock to `at`; the system clock cannot be set and ignores it.
    pub fn set(&self, at: SystemTime) {
        if let Some(t) = &self.manual {
            t.store(micros_since_epoch(at), Ordering::SeqCst);
        }
    }

    /// The current time as a NumericDate: seconds since the epoch (RFC 7519 §2).
    pub(crate) fn now(&self) -> f64 {
        match &self.manual {
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            Some(t) => t.load(Ordering::SeqCst) as f64 / 1e6,
        }
    }

    /// The current time in whole seconds since the epoch.
    pub(crate) fn unix_secs(&self) -> u64 {
        match &self.manual {
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            Some(t) => t.load(Ordering::SeqCst) / 1_000_000,
        }
    }
}

fn micros_since_epoch(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_share_it() {
        let start = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let clock = Clock::manual(start);
        let other = clock.clone();
        assert_eq!(clock.unix_secs(), 1_000_000);
        other.advance(Duration::from_millis(1500));
        assert_eq!(clock.unix_secs(), 1_000_001);
        assert!((clock.now() - 1_000_001.5).abs() < 1e-9);
        clock.set(start);
        assert_eq!(other.unix_secs(), 1_000_000);
    }

    #[test]
    fn system_clock_follows_the_system() {
        let sys = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let clock = Clock::system();
        clock.advance(Duration::from_secs(3600));
        assert!(clock.unix_secs().abs_diff(sys) <= 2);
    }
}
