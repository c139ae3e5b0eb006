//! HTTP freshness (RFC 9111) and the negative cache of unknown `kid`s.

use std::collections::HashMap;
use std::time::Duration;

use http::HeaderMap;
use http::header::{AGE, CACHE_CONTROL};
use tokio::time::Instant;

/// How long a response stays fresh by its headers: `Cache-Control: max-age` minus `Age`
/// (RFC 9111 §4.2.1, §4.2.3), zero for `no-cache` / `no-store`, `None` when the server says
/// nothing. The caller clamps it to its bounds.
pub(super) fn freshness(headers: &HeaderMap) -> Option<Duration> {
    let mut max_age = None;
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let directive = directive.trim();
            let (name, arg) = match directive.split_once('=') {
                Some((name, arg)) => (name.trim(), Some(arg.trim().trim_matches('"'))),
                None => (directive, None),
            };
            if name.eq_ignore_ascii_case("no-cache") || name.eq_ignore_ascii_case("no-store") {
                return Some(Duration::ZERO);
            }
            if name.eq_ignore_ascii_case("max-age")
                && let Some(secs) = arg.and_then(parse_seconds)
            {
                // RFC 9111 §4.2.1: with several, use the first or treat the response as
                // stale; the smallest is the conservative middle ground.
                max_age = Some(max_age.map_or(secs, |m: u64| m.min(secs)));
            }
        }
    }
    let age = headers
        .get(AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_seconds(v.trim()))
        .unwrap_or(0);
    max_age.map(|m| Duration::from_secs(m.saturating_sub(age)))
}

/// `delta-seconds` (RFC 9111 §1.2.2): digits only; overly large values saturate.
fn parse_seconds(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse().unwrap_or(u64::MAX))
}

/// Most entries the negative cache holds.
pub(super) const NEGATIVE_CACHE_CAPACITY: usize = 1024;
/// Longer `kid`s are not remembered (the refresh rate limit still bounds what they cost).
const MAX_CACHED_KID_LEN: usize = 256;

/// `kid`s a fresh key set did not contain, each until the next refresh may happen.
#[derive(Debug, Default)]
pub(super) struct NegativeCache {
    entries: HashMap<Box<str>, Instant>,
}

impl NegativeCache {
    /// Whether `kid` is known to be absent at `now`.
    pub(super) fn contains(&mut self, kid: &str, now: Instant) -> bool {
        match self.entries.get(kid) {
            Some(until) if *until > now => true,
            Some(_) => {
                self.entries.remove(kid);
                false
            }
            None => false,
        }
    }

    /// Remembers that `kid` is absent until `until`. When full, expired entries are dropped
    /// first; if it is still full the `kid` is not remembered.
    pub(super) fn insert(&mut self, kid: &str, until: Instant, now: Instant) {
        if until <= now || kid.len() > MAX_CACHED_KID_LEN {
            return;
        }
        if self.entries.len() >= NEGATIVE_CACHE_CAPACITY && !self.entries.contains_key(kid) {
            self.entries.retain(|_, u| *u > now);
            if self.entries.len() >= NEGATIVE_CACHE_CAPACITY {
                return;
            }
        }
        self.entries.insert(kid.into(), until);
    }

    pub(super) fn clear(&mut self) {
        self.entries.clear();
    }

    /// Entries still in force at `now`.
    pub(super) fn len(&self, now: Instant) -> usize {
        self.entries.values().filter(|until| **until > now).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(http::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn max_age_and_age() {
        assert_eq!(freshness(&HeaderMap::new()), None);
        let h = headers(&[(CACHE_CONTROL, "public, max-age=600")]);
        assert_eq!(freshness(&h), Some(Duration::from_secs(600)));
        let h = headers(&[(CACHE_CONTROL, "max-age=\"600\""), (AGE, "100")]);
        assert_eq!(freshness(&h), Some(Duration::from_secs(500)));
        let h = headers(&[(CACHE_CONTROL, "MAX-AGE=60"), (AGE, "100")]);
        assert_eq!(freshness(&h), Some(Duration::ZERO));
        let h = headers(&[(CACHE_CONTROL, "max-age=60, no-cache")]);
        assert_eq!(freshness(&h), Some(Duration::ZERO));
        let h = headers(&[(CACHE_CONTROL, "no-store")]);
        assert_eq!(freshness(&h), Some(Duration::ZERO));
        let h = headers(&[(CACHE_CONTROL, "max-age=-5")]);
        assert_eq!(freshness(&h), None);
        let h = headers(&[(CACHE_CONTROL, "max-age=99999999999999999999999")]);
        assert_eq!(freshness(&h), Some(Duration::from_secs(u64::MAX)));
        let h = headers(&[
            (CACHE_CONTROL, "max-age=300"),
            (CACHE_CONTROL, "max-age=100"),
        ]);
        assert_eq!(freshness(&h), Some(Duration::from_secs(100)));
    }

    #[test]
    fn negative_cache_is_bounded_and_expires() {
        let now = Instant::now();
        let later = now + Duration::from_secs(30);
        let mut cache = NegativeCache::default();
        for i in 0..NEGATIVE_CACHE_CAPACITY + 10 {
            cache.insert(&format!("kid-{i}"), later, now);
        }
        assert_eq!(cache.len(now), NEGATIVE_CACHE_CAPACITY);
        assert!(cache.contains("kid-0", now));
        assert!(!cache.contains("kid-1030", now));
        // Expired entries make room.
        let much_later = later + Duration::from_secs(30);
        assert_eq!(cache.len(much_later), 0);
        cache.insert("fresh", much_later + Duration::from_secs(1), much_later);
        assert_eq!(cache.entries.len(), 1);
        assert!(cache.contains("fresh", much_later));
        assert!(!cache.contains("fresh", much_later + Duration::from_secs(1)));
        // Overlong kids are not remembered.
        cache.insert(
            &"x".repeat(300),
            much_later + Duration::from_secs(1),
            much_later,
        );
        assert_eq!(cache.len(much_later), 0);
    }
}
