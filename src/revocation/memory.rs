//! An in-process revocation store.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt, ready};

use super::{DEFAULT_RETENTION_MARGIN, Revocation, RevocationError, RevocationStore, TokenId};
use crate::Clock;

/// Revocations held in this process's memory: for a single server, tests, and development.
///
/// Entries are dropped once their expiry plus the retention margin has passed; expired
/// entries are swept as new ones arrive, so memory stays proportional to the revocations still
/// in force.
#[derive(Debug)]
pub struct MemoryRevocation {
    inner: Mutex<Entries>,
    margin: Duration,
    clock: Clock,
}

impl Default for MemoryRevocation {
    fn default() -> Self {
        MemoryRevocation {
            inner: Mutex::default(),
            margin: DEFAULT_RETENTION_MARGIN,
            clock: Clock::system(),
        }
    }
}

/// A subject entry in force: `iss` (`""`: none), `sub`, "not before", kept until.
#[cfg(feature = "redis")]
pub(super) type LiveSubject = (String, String, u64, u64);

#[derive(Debug, Default)]
struct Entries {
    /// jti → kept until; revoked and used tokens alike.
    jtis: HashMap<String, u64>,
    /// iss → sub → (issued_before, kept until). Tokens without `iss` are under "".
    subjects: HashMap<String, HashMap<String, (u64, u64)>>,
    /// Subject entries across all issuers.
    subject_count: usize,
    /// Inserts since the last sweep.
    inserts: usize,
}

impl Entries {
    /// Sweeps expired entries every so many inserts: amortised O(1) per insert.
    fn sweep_if_due(&mut self, now: u64) {
        self.inserts += 1;
        if self.inserts >= 64 && self.inserts >= (self.jtis.len() + self.subject_count) / 2 {
            self.jtis.retain(|_, kept| *kept > now);
            self.subjects.retain(|_, subs| {
                subs.retain(|_, (_, kept)| *kept > now);
                !subs.is_empty()
            });
            self.subject_count = self.subjects.values().map(HashMap::len).sum();
            self.inserts = 0;
        }
    }
}

impl MemoryRevocation {
    /// An empty store with the default retention margin, on the system clock.
    pub fn new() -> MemoryRevocation {
        MemoryRevocation::default()
    }

    /// Keeps entries `margin` past their given expiry (default
    /// [`DEFAULT_RETENTION_MARGIN`]); it must be at least the leeway of every layer that uses
    /// the store.
    pub fn retain_past_expiry(mut self, margin: Duration) -> MemoryRevocation {
        self.margin = margin;
        self
    }

    /// Reads the time from `clock` (default: the system clock).
    pub fn clock(mut self, clock: Clock) -> MemoryRevocation {
        self.clock = clock;
        self
    }

    /// The number of entries held (revoked or used `jti`s and subjects), expired ones included
    /// until the next sweep.
    pub fn len(&self) -> usize {
        let e = self.lock();
        e.jtis.len() + e.subject_count
    }

    /// True when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic while holding the lock cannot leave the maps half-updated (each operation is
        // a single insert or lookup), so a poisoned lock is still safe to use.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The instant an entry given `expires_at` is kept until.
    fn kept_until(&self, expires_at: u64) -> u64 {
        super::kept_until(expires_at, self.margin)
    }

    /// Whether `token` is revoked, read from memory.
    pub(super) fn check(&self, token: TokenId<'_>) -> bool {
        let now = self.clock.unix_secs();
        let e = self.lock();
        if let Some(jti) = token.jti
            && e.jtis.get(jti).is_some_and(|kept| *kept > now)
        {
            return true;
        }
        if let Some(sub) = token.sub
            && let Some((before, kept)) = e
                .subjects
                .get(token.iss.unwrap_or(""))
                .and_then(|subs| subs.get(sub))
            && *kept > now
        {
            return token.iat.is_none_or(|iat| iat < *before);
        }
        false
    }
}

/// Entries given with the instant they are kept until (the retention margin already added),
/// merged by keeping the larger of each value: what `revoke` and `revoke_subject` store, and
/// what the replicated store's copy is fed with; and the entries still in force, which that
/// copy writes back to a Redis that lost them.
impl MemoryRevocation {
    /// Holds `jti` until `kept` (seconds since the epoch), or longer if it is held longer.
    pub(super) fn insert_jti(&self, jti: &str, kept: u64) {
        let now = self.clock.unix_secs();
        let mut e = self.lock();
        if kept > now {
            let entry = e.jtis.entry(jti.to_owned()).or_insert(kept);
            *entry = (*entry).max(kept);
            e.sweep_if_due(now);
        }
    }

    /// Holds the subject `sub` of `iss` (`""`: no `iss`) with "not before" `issued_before`
    /// until `kept`; each value only ever rises.
    pub(super) fn insert_subject(&self, iss: &str, sub: &str, issued_before: u64, kept: u64) {
        let now = self.clock.unix_secs();
        let mut e = self.lock();
        if kept > now {
            let subs = e.subjects.entry(iss.to_owned()).or_default();
            let added = !subs.contains_key(sub);
            let entry = subs.entry(sub.to_owned()).or_insert((issued_before, kept));
            entry.0 = entry.0.max(issued_before);
            entry.1 = entry.1.max(kept);
            if added {
                e.subject_count += 1;
            }
            e.sweep_if_due(now);
        }
    }

    /// The entries still in force: `(jti, kept)` and `(iss, sub, issued_before, kept)`.
    #[cfg(feature = "redis")]
    pub(super) fn live(&self) -> (Vec<(String, u64)>, Vec<LiveSubject>) {
        let now = self.clock.unix_secs();
        let e = self.lock();
        let jtis = e
            .jtis
            .iter()
            .filter(|(_, kept)| **kept > now)
            .map(|(jti, kept)| (jti.clone(), *kept))
            .collect();
        let subjects = e
            .subjects
            .iter()
            .flat_map(|(iss, subs)| {
                subs.iter()
                    .filter(|(_, (_, kept))| *kept > now)
                    .map(|(sub, (before, kept))| (iss.clone(), sub.clone(), *before, *kept))
            })
            .collect();
        (jtis, subjects)
    }
}

impl Revocation for MemoryRevocation {
    fn is_revoked<'a>(
        &'a self,
        token: TokenId<'a>,
    ) -> BoxFuture<'a, Result<bool, RevocationError>> {
        ready(Ok(self.check(token))).boxed()
    }

    fn retention_margin(&self) -> Duration {
        self.margin
    }
}

impl RevocationStore for MemoryRevocation {
    fn revoke<'a>(
        &'a self,
        jti: &'a str,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<(), RevocationError>> {
        self.insert_jti(jti, self.kept_until(expires_at));
        ready(Ok(())).boxed()
    }

    fn revoke_subject<'a>(
        &'a self,
        iss: Option<&'a str>,
        sub: &'a str,
        issued_before: u64,
        keep_until: u64,
    ) -> BoxFuture<'a, Result<(), RevocationError>> {
        self.insert_subject(
            iss.unwrap_or(""),
            sub,
            issued_before,
            self.kept_until(keep_until),
        );
        ready(Ok(())).boxed()
    }

    fn use_once<'a>(
        &'a self,
        jti: &'a str,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<bool, RevocationError>> {
        let now = self.clock.unix_secs();
        let kept = self.kept_until(expires_at).max(now + 1);
        let mut e = self.lock();
        let first = match e.jtis.get(jti) {
            Some(k) if *k > now => false,
            _ => {
                e.jtis.insert(jti.to_owned(), kept);
                e.sweep_if_due(now);
                true
            }
        };
        ready(Ok(first)).boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    const T0: u64 = 1_700_000_000;

    fn store() -> (MemoryRevocation, Clock) {
        let clock = Clock::manual(UNIX_EPOCH + Duration::from_secs(T0));
        let store = MemoryRevocation::new()
            .retain_past_expiry(Duration::from_secs(60))
            .clock(clock.clone());
        (store, clock)
    }

    fn id<'a>(jti: &'a str, sub: &'a str, iat: u64) -> TokenId<'a> {
        TokenId::new(Some("https://a.example"), Some(jti), Some(sub), Some(iat))
    }

    #[tokio::test]
    async fn jti_subject_and_use_once() {
        let (s, _) = store();
        let now = T0;
        assert!(!s.is_revoked(id("a", "alice", now)).await.unwrap());
        s.revoke("a", now + 60).await.unwrap();
        assert!(s.is_revoked(id("a", "alice", now)).await.unwrap());
        assert!(!s.is_revoked(id("b", "alice", now)).await.unwrap());
        s.revoke_subject(Some("https://a.example"), "alice", now, now + 60)
            .await
            .unwrap();
        assert!(s.is_revoked(id("b", "alice", now - 1)).await.unwrap());
        assert!(!s.is_revoked(id("c", "alice", now)).await.unwrap());
        assert!(
            s.is_revoked(TokenId::new(
                Some("https://a.example"),
                None,
                Some("alice"),
                None
            ))
            .await
            .unwrap()
        );
        assert!(s.use_once("r1", now + 60).await.unwrap());
        assert!(!s.use_once("r1", now + 60).await.unwrap());
        // Entries whose expiry and margin have both passed are not stored.
        s.revoke("old", now - 61).await.unwrap();
        assert!(!s.is_revoked(id("old", "bob", now)).await.unwrap());
    }

    #[tokio::test]
    async fn a_subject_is_scoped_by_its_issuer() {
        let (s, _) = store();
        s.revoke_subject(Some("https://a.example"), "alice", T0, T0 + 600)
            .await
            .unwrap();
        let other = TokenId::new(Some("https://b.example"), None, Some("alice"), Some(T0 - 5));
        assert!(!s.is_revoked(other).await.unwrap());
        let no_iss = TokenId::new(None, None, Some("alice"), Some(T0 - 5));
        assert!(!s.is_revoked(no_iss).await.unwrap());
        assert!(s.is_revoked(id("x", "alice", T0 - 5)).await.unwrap());
    }

    #[tokio::test]
    async fn entries_outlive_their_expiry_by_the_margin() {
        let (s, clock) = store();
        let exp = T0 + 10;
        s.revoke("logged-out", exp).await.unwrap();
        assert!(s.use_once("spent", exp).await.unwrap());
        s.revoke_subject(None, "bob", T0, exp).await.unwrap();
        // Past `exp` but within a 60 s leeway: a layer may still accept these tokens.
        clock.advance(Duration::from_secs(10 + 59));
        assert!(s.is_revoked(id("logged-out", "x", T0)).await.unwrap());
        assert!(!s.use_once("spent", exp).await.unwrap());
        let bob = TokenId::new(None, None, Some("bob"), Some(T0 - 1));
        assert!(s.is_revoked(bob).await.unwrap());
        // Past the margin: forgotten.
        clock.advance(Duration::from_secs(2));
        assert!(!s.is_revoked(id("logged-out", "x", T0)).await.unwrap());
        assert!(!s.is_revoked(bob).await.unwrap());
    }

    #[tokio::test]
    async fn expired_entries_are_swept() {
        let (s, clock) = store();
        for i in 0..100 {
            s.use_once(&format!("j{i}"), T0 + 60).await.unwrap();
        }
        clock.advance(Duration::from_secs(121));
        for i in 0..200 {
            s.revoke(&format!("k{i}"), T0 + 600).await.unwrap();
        }
        assert!(s.len() <= 200 + 64, "{}", s.len());
    }
}
