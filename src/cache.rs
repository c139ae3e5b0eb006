//! A bounded cache of verified tokens (feature `cache`).
//!
//! A service sees the same access token many times in its short life. Verifying it costs a
//! signature check (≈ 13 µs for RS256) and a JSON parse each time; a cache hit costs a hash
//! lookup. What is cached, and what is not:
//!
//! - the key is the **whole token**: a hit compares every byte, so a forged token that shares a
//!   prefix (or a hash) with a cached one can never be served from the cache;
//! - the value is the decoded claims, shared (`Arc`), never re-parsed or cloned per hit;
//! - a hit still checks `exp`, `nbf` and `iat` (with the leeway), still runs the application's
//!   [`validate`](crate::JwtAuthBuilder::validate) hooks and still asks the revocation store;
//!   an entry that fails the time checks is removed and the token verified again;
//! - the whole cache is invalidated when the key set changes (a rotation removes a key: tokens
//!   it signed must be verified again);
//! - the cache is bounded by entries and by bytes (token length plus a fixed overhead); what is
//!   evicted first is what is least likely to be asked for again (CLOCK-Pro).
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

use quick_cache::sync::Cache;
use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

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
    pub times: crate::validation::Times,
    pub id: Option<Arc<TokenId>>,
    /// The key-set generation the token was verified under.
    pub generation: u64,
    /// Which of the layer's verifiers (one per tenant) verified it.
    pub verifier: usize,
}

/// The cache itself.
pub(crate) struct TokenCache {
    // foldhash (hashbrown's default hasher): the cache hashes whole tokens (hundreds of bytes)
    // on every request, and SipHash would be a third of a hit's cost. Collisions cannot be
    // flooded in: only verified tokens are ever inserted (foldhash's random seed is a second,
    // weaker line), and a hit compares the whole token.
    map: Cache<Arc<str>, Entry, Weight, foldhash::fast::RandomState>,
    counts: Counts,
}

/// Hit and miss counts kept per thread: each thread adds to its own slot (threads beyond the
/// slot count share slots), so cores serving hits in parallel do not write one cache line.
/// Reading sums the slots.
struct Counts {
    slots: Box<[Slot]>,
}

#[derive(Default)]
#[repr(align(128))]
struct Slot {
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Counts {
    fn new() -> Counts {
        // A power of two, so a thread finds its slot with a mask.
        let slots = std::thread::available_parallelism()
            .map_or(8, |n| n.get() * 2)
            .next_power_of_two();
        Counts {
            slots: (0..slots).map(|_| Slot::default()).collect(),
        }
    }

    fn add(&self, hit: bool) {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static THREAD: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
        }
        let thread = THREAD.with(|t| {
            if t.get() == usize::MAX {
                t.set(NEXT.fetch_add(1, Ordering::Relaxed));
            }
            t.get()
        });
        let slot = &self.slots[thread & (self.slots.len() - 1)];
        let counter = if hit { &slot.hits } else { &slot.misses };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn sum(&self) -> (u64, u64) {
        self.slots.iter().fold((0, 0), |(h, m), s| {
            let hits = s.hits.load(Ordering::Relaxed);
            (h + hits, m + s.misses.load(Ordering::Relaxed))
        })
    }
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

/// An entry weighs the larger of its real cost and its share of the entry limit, so both
/// limits hold at once.
#[derive(Clone)]
struct Weight {
    per_entry: u64,
}

impl quick_cache::Weighter<Arc<str>, Entry> for Weight {
    fn weight(&self, token: &Arc<str>, _: &Entry) -> u64 {
        (token.len() as u64 + ENTRY_OVERHEAD).max(self.per_entry)
    }
}

impl TokenCache {
    pub(crate) fn new(config: CacheConfig) -> TokenCache {
        let per_entry = (config.max_bytes / config.max_entries.max(1)).max(1);
        let items = usize::try_from(config.max_entries).unwrap_or(usize::MAX);
        TokenCache {
            map: Cache::with(
                items,
                config.max_bytes,
                Weight { per_entry },
                foldhash::fast::RandomState::default(),
                Default::default(),
            ),
            counts: Counts::new(),
        }
    }

    /// The entry for exactly `token`, if the key set of the verifier that verified it is still
    /// at the generation it was verified under (`generation` of that verifier's index) and
    /// `fresh` accepts it (its time claims still hold). A stale entry is removed.
    pub(crate) fn get(
        &self,
        token: &str,
        generation: impl Fn(usize) -> Option<u64>,
        fresh: impl Fn(&Entry) -> bool,
    ) -> Option<Entry> {
        let entry = self.map.get(token).filter(|entry| {
            if generation(entry.verifier) != Some(entry.generation) {
                // The key set changed since this entry was verified: drop everything verified
                // under an older set.
                self.map.clear();
                false
            } else if !fresh(entry) {
                self.map.remove(token);
                false
            } else {
                true
            }
        });
        self.counts.add(entry.is_some());
        #[cfg(feature = "metrics")]
        crate::metrics::cache_lookup(entry.is_some());
        entry
    }

    pub(crate) fn insert(&self, token: &str, entry: Entry) {
        self.map.insert(Arc::from(token), entry);
    }

    /// The counters.
    pub(crate) fn stats(&self) -> CacheStats {
        let (hits, misses) = self.counts.sum();
        CacheStats {
            entries: self.map.len() as u64,
            hits,
            misses,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(generation: u64, exp: f64) -> Entry {
        Entry {
            claims: Arc::new(()),
            times: crate::validation::Times {
                exp: Some(exp),
                ..Default::default()
            },
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
        assert!(cache.get("a.b.c", |_| Some(0), |_| true).is_some());
        assert!(cache.get("a.b.d", |_| Some(0), |_| true).is_none());
        assert!(cache.get("a.b.", |_| Some(0), |_| true).is_none());
        // A new key set invalidates everything verified under the old one.
        assert!(cache.get("a.b.c", |_| Some(1), |_| true).is_none());
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
    fn a_stale_entry_is_a_miss_and_is_removed() {
        let cache = TokenCache::new(CacheConfig::default());
        cache.insert("expired", entry(0, crate::Clock::system().now() - 1.0));
        assert!(cache.get("expired", |_| Some(0), |_| false).is_none());
        assert_eq!(cache.stats().entries, 0);
        assert_eq!((cache.stats().hits, cache.stats().misses), (0, 1));
    }
}
