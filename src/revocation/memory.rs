//! An in-process revocation store.

use std::collections::HashMap;
use std::sync::Mutex;

use futures_util::future::{BoxFuture, FutureExt, ready};

use super::{Revocation, RevocationError, TokenId, unix_now};

/// Revocations held in this process's memory: for a single server, tests, and development.
///
/// Entries are dropped once they expire; expired entries are swept as new ones arrive, so
/// memory stays proportional to the revocations still in force.
#[derive(Debug, Default)]
pub struct MemoryRevocation {
    inner: Mutex<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    /// jti → expires_at; revoked and used tokens alike.
    jtis: HashMap<String, u64>,
    /// sub → (issued_before, keep_until).
    subjects: HashMap<String, (u64, u64)>,
    /// Inserts since the last sweep.
    inserts: usize,
}

impl Entries {
    /// Sweeps expired entries every so many inserts: amortised O(1) per insert.
    fn sweep_if_due(&mut self, now: u64) {
        self.inserts += 1;
        if self.inserts >= 64 && self.inserts >= (self.jtis.len() + self.subjects.len()) / 2 {
            self.jtis.retain(|_, exp| *exp > now);
            self.subjects.retain(|_, (_, keep)| *keep > now);
            self.inserts = 0;
        }
    }
}

impl MemoryRevocation {
    /// An empty store.
    pub fn new() -> MemoryRevocation {
        MemoryRevocation::default()
    }

    /// The number of entries held (revoked or used `jti`s and subjects), expired ones included
    /// until the next sweep.
    pub fn len(&self) -> usize {
        let e = self.lock();
        e.jtis.len() + e.subjects.len()
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

    fn check(&self, token: TokenId<'_>) -> bool {
        let now = unix_now();
        let e = self.lock();
        if let Some(jti) = token.jti
            && e.jtis.get(jti).is_some_and(|exp| *exp > now)
        {
            return true;
        }
        if let Some(sub) = token.sub
            && let Some((before, keep)) = e.subjects.get(sub)
            && *keep > now
        {
            return token.iat.is_none_or(|iat| iat < *before);
        }
        false
    }
}

impl Revocation for MemoryRevocation {
    fn is_revoked<'a>(
        &'a self,
        token: TokenId<'a>,
    ) -> BoxFuture<'a, Result<bool, RevocationError>> {
        ready(Ok(self.check(token))).boxed()
    }

    fn revoke<'a>(
        &'a self,
        jti: &'a str,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<(), RevocationError>> {
        let now = unix_now();
        let mut e = self.lock();
        if expires_at > now {
            e.jtis.insert(jti.to_owned(), expires_at);
            e.sweep_if_due(now);
        }
        ready(Ok(())).boxed()
    }

    fn revoke_subject<'a>(
        &'a self,
        sub: &'a str,
        issued_before: u64,
        keep_until: u64,
    ) -> BoxFuture<'a, Result<(), RevocationError>> {
        let now = unix_now();
        let mut e = self.lock();
        if keep_until > now {
            let entry = e
                .subjects
                .entry(sub.to_owned())
                .or_insert((issued_before, keep_until));
            entry.0 = entry.0.max(issued_before);
            entry.1 = entry.1.max(keep_until);
            e.sweep_if_due(now);
        }
        ready(Ok(())).boxed()
    }

    fn use_once<'a>(
        &'a self,
        jti: &'a str,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<bool, RevocationError>> {
        let now = unix_now();
        let mut e = self.lock();
        let first = match e.jtis.get(jti) {
            Some(exp) if *exp > now => false,
            _ => {
                e.jtis.insert(jti.to_owned(), expires_at.max(now + 1));
                e.sweep_if_due(now);
                true
            }
        };
        ready(Ok(first)).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id<'a>(jti: &'a str, sub: &'a str, iat: u64) -> TokenId<'a> {
        TokenId {
            jti: Some(jti),
            sub: Some(sub),
            iat: Some(iat),
        }
    }

    #[tokio::test]
    async fn jti_subject_and_use_once() {
        let s = MemoryRevocation::new();
        let now = unix_now();
        assert!(!s.is_revoked(id("a", "alice", now)).await.unwrap());
        s.revoke("a", now + 60).await.unwrap();
        assert!(s.is_revoked(id("a", "alice", now)).await.unwrap());
        assert!(!s.is_revoked(id("b", "alice", now)).await.unwrap());
        s.revoke_subject("alice", now, now + 60).await.unwrap();
        assert!(s.is_revoked(id("b", "alice", now - 1)).await.unwrap());
        assert!(!s.is_revoked(id("c", "alice", now)).await.unwrap());
        assert!(
            s.is_revoked(TokenId {
                jti: None,
                sub: Some("alice"),
                iat: None
            })
            .await
            .unwrap()
        );
        assert!(s.use_once("r1", now + 60).await.unwrap());
        assert!(!s.use_once("r1", now + 60).await.unwrap());
        // Already expired entries are not stored.
        s.revoke("old", now - 1).await.unwrap();
        assert!(!s.is_revoked(id("old", "bob", now)).await.unwrap());
    }

    #[tokio::test]
    async fn expired_entries_are_swept() {
        let s = MemoryRevocation::new();
        let now = unix_now();
        for i in 0..100 {
            s.use_once(&format!("j{i}"), now + 60).await.unwrap();
        }
        s.lock().jtis.values_mut().for_each(|exp| *exp = now - 1);
        for i in 0..200 {
            s.revoke(&format!("k{i}"), now + 60).await.unwrap();
        }
        assert!(s.len() <= 200 + 64, "{}", s.len());
    }
}
