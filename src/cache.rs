//! A bounded cache of verified tokens (feature `cache`).
//!
//! A service sees the same access token many times in its short life. Verifying it costs a
//! signature check (≈ 13 µs for RS256) and a JSON parse each time; a cache hit costs a hash
//! lookup. What is cached, and what is not:
//!
//! - the key is the **whole token**: a hit compares every byte, so a forged token that shares a
//!   prefix (or a hash) with a cached one can never be served from the cache;
//! - the value is the decoded claims, shared (`Arc`), never re-parsed or cloned per hit;
//! - a hit still checks `exp` and `nbf` (with the leeway), still runs the application's
//!   [`validate`](crate::JwtAuthBuilder::validate) hooks and still asks the revocation store;
//! - an entry never outlives its token's `exp`, and the whole cache is invalidated when the key
//!   set changes (a rotation removes a key: tokens it signed must be verified again);
//! - the cache is bounded by entries and by bytes (token length plus a fixed overhead).
//!
//! ```
//! # #[cfg(feature = "cache")] {
//! use tower_jwt_auth::{JwtAuthLayer, cache::CacheConfig};
//!
//! #[derive(serde::Deserialize)]
//! struct MyClaims { sub: String }
//!
//! let auth = JwtAuthLayer::<MyClaims>::builder()
//!     .hs256(b"an example secret that is 32 bytes+")
//!     .cache(CacheConfig::default().max_entries(50_000).max_bytes(32 << 20))
//!     .build()
//!     .unwrap();
//! assert_eq!(auth.cache_stats().map(|s| s.hits), Some(0));
//! # }
//! ```

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::sync::Cache;

use crate::verify::TokenId;

/// The size limits of the verified-token cache.
#[derive(Debug, Clone, Copy)]
pub struct CacheConfig {
    max_entries: u64,
    max_bytes: u64,
}

impl Default for CacheConfig {
    /// 10 000 entries, 16 MiB.
    fn default() -> Self {
        CacheConfig {
            max_entries: 10_000,
            max_bytes: 16 << 20,
        }
    }
}

impl CacheConfig {
    /// Holds at most `n` tokens.
    pub fn max_entries(mut self, n: u64) -> Self {
        self.max_entries = n;
        self
    }

    /// Holds at most `bytes` bytes of tokens (each counted as its length plus
    /// 256 bytes of bookkeeping).
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }
}

/// What an entry is assumed to cost beyond the token text: the claims, the map slot, the
/// bookkeeping of the cache.
pub(crate) const ENTRY_OVERHEAD: u64 = 256;

/// One verified token.
#[derive(Clone)]
pub(crate) struct Entry {
    /// `Claims<C>`'s `Arc<C>`, type-erased (a layer has one claims type, so the downcast
    /// always succeeds).
    pub claims: Arc<dyn Any + Send + Sync>,
    pub exp: Option<f64>,
    pub nbf: Option<f64>,
    pub iat: Option<f64>,
    pub id: Option<TokenId>,
    /// The key-set generation the token was verified under.
    pub generation: u64,
    /// Which of the layer's verifiers (one per tenant) verified it.
    pub verifier: usize,
}

/// The cache itself.
pub(crate) struct TokenCache {
    // ahash: the cache hashes whole tokens (hundreds of bytes) on every request; SipHash was a
    // third of a hit's cost. Its per-process random keys keep collision flooding impractical,
    // and a hit compares the whole token anyway.
    map: Cache<Arc<str>, Entry, ahash::RandomState>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Counters of the verified-token cache, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Tokens held now.
    pub entries: u64,
    /// Requests served from the cache.
    pub hits: u64,
    /// Requests whose token had to be verified.
    pub misses: u64,
}

struct UntilExp;

impl moka::Expiry<Arc<str>, Entry> for UntilExp {
    fn expire_after_create(
        &self,
        _key: &Arc<str>,
        entry: &Entry,
        _now: Instant,
    ) -> Option<Duration> {
        // Never past the token's own expiry; tokens without `exp` for at most an hour.
        let left = entry
            .exp
            .map_or(3600.0, |exp| (exp - crate::Clock::system().now()).max(0.0));
        Some(Duration::from_secs_f64(left.min(3600.0)))
    }
}

impl TokenCache {
    pub(crate) fn new(config: CacheConfig) -> TokenCache {
        let per_entry = (config.max_bytes / config.max_entries.max(1)).max(1);
        let map = Cache::builder()
            .max_capacity(config.max_bytes)
            // The larger of an entry's real cost and its share of the entry limit, so both
            // limits hold at once.
            .weigher(move |token: &Arc<str>, _: &Entry| {
                let bytes = token.len() as u64 + ENTRY_OVERHEAD;
                u32::try_from(bytes.max(per_entry)).unwrap_or(u32::MAX)
            })
            .expire_after(UntilExp)
            .build_with_hasher(ahash::RandomState::new());
        TokenCache {
            map,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The entry for exactly this token, if it was verified under key-set `generation`.
    /// The entry for exactly `token`, if the key set of the verifier that verified it is still
    /// at the generation it was verified under (`generation` of that verifier's index).
    pub(crate) fn get(
        &self,
        token: &str,
        generation: impl Fn(usize) -> Option<u64>,
    ) -> Option<Entry> {
        let entry = self.map.get(token).filter(|entry| {
            if generation(entry.verifier) == Some(entry.generation) {
                return true;
            }
            // The key set changed since this entry was verified: drop everything verified
            // under an older set.
            self.map.invalidate_all();
            false
        });
        let counter = if entry.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        crate::metrics::cache_lookup(entry.is_some());
        entry
    }

    pub(crate) fn insert(&self, token: &str, entry: Entry) {
        self.map.insert(Arc::from(token), entry);
    }

    /// The counters (the entry count is exact: pending writes are applied first).
    pub(crate) fn stats(&self) -> CacheStats {
        self.map.run_pending_tasks();
        CacheStats {
            entries: self.map.entry_count(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(generation: u64, exp: f64) -> Entry {
        Entry {
            claims: Arc::new(()),
            exp: Some(exp),
            nbf: None,
            iat: None,
            id: None,
            generation,
            verifier: 0,
        }
    }

    #[test]
    fn exact_token_and_generation() {
        let cache = TokenCache::new(CacheConfig::default());
        let exp = crate::Clock::system().now() + 600.0;
        cache.insert("a.b.c", entry(0, exp));
        assert!(cache.get("a.b.c", |_| Some(0)).is_some());
        assert!(cache.get("a.b.d", |_| Some(0)).is_none());
        assert!(cache.get("a.b.", |_| Some(0)).is_none());
        // A new key set invalidates everything verified under the old one.
        assert!(cache.get("a.b.c", |_| Some(1)).is_none());
        assert_eq!(cache.stats().entries, 0);
        assert_eq!((cache.stats().hits, cache.stats().misses), (1, 3));
    }

    #[test]
    fn bounded_by_entries() {
        let cache = TokenCache::new(CacheConfig::default().max_entries(10).max_bytes(1 << 20));
        let exp = crate::Clock::system().now() + 600.0;
        for i in 0..100 {
            cache.insert(&format!("token-{i}"), entry(0, exp));
        }
        assert!(cache.stats().entries <= 10, "{:?}", cache.stats());
    }

    #[test]
    fn bounded_by_bytes() {
        let cache = TokenCache::new(
            CacheConfig::default()
                .max_entries(1000)
                .max_bytes(10 * 1280),
        );
        let exp = crate::Clock::system().now() + 600.0;
        for i in 0..100 {
            cache.insert(&format!("{i:01024}"), entry(0, exp));
        }
        assert!(cache.stats().entries <= 10, "{:?}", cache.stats());
    }

    #[test]
    fn entries_do_not_outlive_exp() {
        let cache = TokenCache::new(CacheConfig::default());
        cache.insert("expired", entry(0, crate::Clock::system().now() - 1.0));
        assert!(cache.get("expired", |_| Some(0)).is_none());
    }
}
