//! When the keys are refreshed, and what a refresh publishes.
//!
//! Every refresh (initial, background, unknown `kid`) runs while holding [`Inner::flight`],
//! and only its holder replaces the snapshot. So there is one refresh in flight at a time,
//! and a caller that waited for the lock finds the snapshot that refresh published.

use std::pin::pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use http::HeaderValue;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::builder::Config;
use super::events::{self, Trigger};
use super::fetch::{Failure, Fetched, KeyPrint, Loaded};
use super::{Inner, KeysUnavailable, RemoteJwks, Snapshot, bump, lock};
use crate::keys::KeySet;

/// Retries after a failed refresh back off from one second up to this.
pub(super) const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(60);

/// What only the refresher needs; guarded by the flight lock.
#[derive(Default)]
pub(super) struct RefreshState {
    /// The `ETag` of the keys we have, sent as `If-None-Match`.
    etag: Option<HeaderValue>,
    /// The keys we have, to tell a rotation from the same keys served again.
    prints: Vec<KeyPrint>,
}

impl RemoteJwks {
    /// For a token whose `kid` (or, with `None`, a token without `kid`) found no key in the
    /// [`snapshot`](Self::snapshot): refreshes the set if that is allowed now, and returns
    /// the key set to retry with.
    ///
    /// * The refresh is single-flight: callers that arrive while a fetch is in flight wait
    ///   for it (on a lock that only refreshers take, never readers) and re-check its
    ///   result instead of fetching again, even with a zero refill interval. The fetch runs
    ///   in its own task, so a caller that is cancelled does not cancel it for the others.
    /// * Rate-limited by a token bucket
    ///   ([`refresh_limit`](super::RemoteJwksBuilder::refresh_limit), default 2 tokens, one
    ///   more every 6 s): a refresh needs a token; every fetch of any kind takes one when
    ///   there is one. Callers that find the bucket empty get the current set without a
    ///   request.
    /// * A `kid` a fresh set did not contain is remembered until one refill interval after
    ///   the start of that fetch, a `kid` that found the bucket empty until the next token
    ///   (never later: the last fetch took a token, see `Inner::token_at`); meanwhile it is
    ///   answered without waiting for the flight.
    ///
    /// So any fetch answers every `kid` it contains, and under a flood of unknown `kid`s
    /// fetches happen as soon as a token is, at least once per refill interval: a `kid` the
    /// provider published before its first use `U` is in the set by the first fetch that
    /// starts after `U`, at the latest one refill interval after `U`.
    ///
    /// `Ok(set)`: retry with `set`; if the `kid` is still not there, the token is simply
    /// unknown (401). `Err` when the last fetch failed (the provider may have rotated to a
    /// key we cannot get) or no usable keys are left (503 with `Retry-After`).
    ///
    /// Runs on Tokio, like everything here (it spawns the fetch; timeouts use Tokio's timer).
    pub(crate) async fn refresh_for_unknown_kid(
        &self,
        kid: Option<&str>,
    ) -> Result<Arc<KeySet>, KeysUnavailable> {
        let inner = &*self.inner;
        if let Some(answer) = inner.settled(kid) {
            return answer;
        }
        let refreshes_before = inner.snapshot.load().refreshes;
        let mut state = Arc::clone(&inner.flight).lock_owned().await;
        if let Some(answer) = inner.settled(kid) {
            return answer;
        }
        let refill = inner.config.refill;
        let now = Instant::now();
        let current = inner.snapshot.load_full();
        // A refresh that finished while we waited for the lock is ours too: share its result
        // rather than fetching again (this matters most with a zero refill interval).
        let shared = current.refreshes != refreshes_before;
        let token = inner.token_at(&current, now);
        if let Some(last) = current.last_attempt
            && (shared || token > now)
        {
            drop(state);
            bump(&inner.counters.unknown_kid_throttled);
            // A refresh we waited for did not have the kid: remembered like a miss of our own.
            // No token: remembered until the next one (never later than `last + refill`).
            let until = if shared {
                last.checked_add(refill)
            } else {
                Some(token)
            };
            inner.remember_absent(kid, until, now);
            return inner.answer(now);
        }
        bump(&inner.counters.unknown_kid_refreshes);
        // The refresh runs in its own task, holding the lock: if this caller goes away (its
        // request was cancelled), the callers waiting for the lock still get its result.
        let owner = Arc::clone(&self.inner);
        let refresh = tokio::spawn(async move {
            let _ = owner.refresh(&mut state, Trigger::UnknownKid).await;
        });
        let _ = refresh.await;
        if let Some(answer) = inner.present(kid) {
            return answer;
        }
        let later = Instant::now();
        inner.remember_absent(kid, now.checked_add(refill), later);
        inner.answer(later)
    }
}

/// The background refresh: ahead of expiry, and after a failure again with backoff. It holds
/// the keys only weakly while it sleeps, and ends once they are gone (dropping [`Inner`]
/// wakes it). `wake` also tells it that another refresh moved the schedule.
pub(super) async fn background(weak: Weak<Inner>, wake: Arc<Notify>) {
    loop {
        let Some(due) = weak.upgrade().map(|inner| inner.next_due()) else {
            return;
        };
        let sleep = pin!(tokio::time::sleep_until(due));
        let woken = pin!(wake.notified());
        futures_util::future::select(sleep, woken).await;
        let Some(inner) = weak.upgrade() else { return };
        if Instant::now() < inner.next_due() {
            continue;
        }
        let mut state = inner.flight.lock().await;
        if Instant::now() < inner.next_due() {
            continue;
        }
        let _ = inner.refresh(&mut state, Trigger::Background).await;
    }
}

impl Inner {
    /// An answer that needs no refresh: the `kid` is in the current set, or a fresh set
    /// lately did not have it.
    fn settled(&self, kid: Option<&str>) -> Option<Result<Arc<KeySet>, KeysUnavailable>> {
        let kid = kid?;
        if let Some(answer) = self.present(Some(kid)) {
            return Some(answer);
        }
        let now = Instant::now();
        if lock(&self.negative).contains(kid, now) {
            bump(&self.counters.negative_cache_hits);
            return Some(self.answer(now));
        }
        None
    }

    fn present(&self, kid: Option<&str>) -> Option<Result<Arc<KeySet>, KeysUnavailable>> {
        let kid = kid?;
        let current = self.snapshot.load();
        (current.usable(Instant::now()) && current.contains(kid))
            .then(|| Ok(Arc::clone(&current.set)))
    }

    /// The current set when it is fresh from a successful fetch, else `KeysUnavailable`.
    fn answer(&self, now: Instant) -> Result<Arc<KeySet>, KeysUnavailable> {
        let current = self.snapshot.load();
        if current.usable(now) && current.consecutive_failures == 0 {
            return Ok(Arc::clone(&current.set));
        }
        // The next possible fetch: the sooner of the next unknown-`kid` refresh token and the
        // background refresh (which, after a failure, is the next retry with backoff).
        let background = current.next_refresh.max(now);
        let next = self.token_at(&current, now).min(background);
        let wait = next - now;
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Err(KeysUnavailable {
            retry_after: Duration::from_secs(secs.max(1)),
        })
    }

    /// When the refresh bucket has a token: `now` if it has one, else when the next one
    /// comes. The bucket is `burst` tokens, refilled at one per `refill`; it is kept as the
    /// instant it is full again (`Snapshot::bucket_full_at`), so it has a token at `now` iff
    /// `bucket_full_at <= now + (burst - 1) * refill`. The last fetch took a token, so this
    /// is never later than the start of the last fetch plus `refill`.
    fn token_at(&self, current: &Snapshot, now: Instant) -> Instant {
        let slack = self
            .config
            .refill
            .saturating_mul(self.config.burst.saturating_sub(1));
        match now.checked_add(slack) {
            Some(horizon) => now + current.bucket_full_at.saturating_duration_since(horizon),
            None => now,
        }
    }

    /// Takes a token from the bucket for a fetch starting at `now`. A fetch that may not wait
    /// for a token (initial, background) finds the bucket empty at worst: it never owes one.
    fn take_token(&self, next: &mut Snapshot, now: Instant) {
        let Config { refill, burst, .. } = self.config;
        let from = next.bucket_full_at.max(now);
        let empty = now.checked_add(refill.saturating_mul(burst));
        next.bucket_full_at = match (from.checked_add(refill), empty) {
            (Some(full), Some(empty)) => full.min(empty),
            (Some(full), None) => full,
            (None, _) => from,
        };
    }

    /// Remembers that a fresh, successfully fetched set does not have `kid`.
    fn remember_absent(&self, kid: Option<&str>, until: Option<Instant>, now: Instant) {
        let Some(kid) = kid else { return };
        // An overflow means "forever": not worth remembering.
        let Some(until) = until else { return };
        let current = self.snapshot.load();
        if current.consecutive_failures == 0 && current.usable(now) {
            lock(&self.negative).insert(kid, until, now);
        }
    }

    /// When the background task must act: the scheduled refresh, or the keys running out.
    fn next_due(&self) -> Instant {
        let current = self.snapshot.load();
        match current.usable_until {
            Some(until) => current.next_refresh.min(until),
            None => current.next_refresh,
        }
    }

    /// One refresh attempt. `state` is the flight lock's content: the caller holds it.
    pub(super) async fn refresh(
        &self,
        state: &mut RefreshState,
        trigger: Trigger,
    ) -> Result<(), Failure> {
        let started = Instant::now();
        let mut next = Snapshot::clone(&self.snapshot.load());
        next.last_attempt = Some(started);
        self.take_token(&mut next, started);
        self.publish(next.clone());
        bump(&self.counters.fetches);
        // Only usable keys are revalidated: a `304` renews the keys we hold, and keys past
        // `max_stale` are to be fetched anew, not renewed.
        let etag = state.etag.clone().filter(|_| next.usable(started));
        let fetched = self.fetch(trigger, etag).await;
        let now = Instant::now();
        next.refreshes += 1;
        let mut rotated = false;
        let result = match fetched {
            Ok(Fetched::Modified { loaded, etag, ttl }) => {
                state.etag = etag;
                rotated = self.install(state, &mut next, loaded, ttl, now);
                Ok(())
            }
            Ok(Fetched::NotModified { etag, ttl }) => {
                if etag.is_some() {
                    state.etag = etag;
                }
                bump(&self.counters.not_modified);
                events::not_modified(&self.uri_for_events(), ttl);
                self.succeeded(&mut next, ttl, now);
                Ok(())
            }
            Err(failure) => {
                self.failed(state, &mut next, &failure, now);
                Err(failure)
            }
        };
        self.publish(next);
        if rotated {
            // Absent from the old set says nothing about the new one.
            lock(&self.negative).clear();
        }
        self.wake.notify_one();
        result
    }

    /// A `200`: the document's keys replace ours, unless they are the same keys. Returns
    /// whether the set changed.
    fn install(
        &self,
        state: &mut RefreshState,
        next: &mut Snapshot,
        loaded: Loaded,
        ttl: Duration,
        now: Instant,
    ) -> bool {
        let uri = self.uri_for_events();
        events::loaded(&uri, loaded.keys, loaded.skipped, ttl);
        next.skipped = loaded.skipped;
        self.succeeded(next, ttl, now);
        if state.prints == loaded.prints && next.keys > 0 {
            return false;
        }
        state.prints = loaded.prints;
        let old_kids = std::mem::replace(&mut next.kids, loaded.kids.into());
        next.set = Arc::new(loaded.set);
        next.keys = loaded.keys;
        next.generation += 1;
        if next.generation > 1 {
            bump(&self.counters.rotations);
        }
        events::rotated(&uri, &old_kids, &next.kids, next.generation);
        true
    }

    fn succeeded(&self, next: &mut Snapshot, ttl: Duration, now: Instant) {
        next.last_success = Some(now);
        next.consecutive_failures = 0;
        next.expires_at = Some(now + ttl);
        next.usable_until = Some(now + ttl + self.config.max_stale);
        next.next_refresh = now + ttl.mul_f64(0.8 + 0.1 * unit_random());
    }

    /// A failed attempt: the last good keys stay until `max_stale` past their expiry, then
    /// they are dropped.
    fn failed(
        &self,
        state: &mut RefreshState,
        next: &mut Snapshot,
        failure: &Failure,
        now: Instant,
    ) {
        bump(&self.counters.failures);
        let reason = failure.to_string();
        next.last_failure = Some(now);
        next.consecutive_failures = next.consecutive_failures.saturating_add(1);
        next.next_refresh = now + self.backoff(next.consecutive_failures);
        let stale_left = next
            .usable_until
            .filter(|_| next.keys > 0)
            .map(|until| until.saturating_duration_since(now))
            .filter(|left| !left.is_zero());
        let uri = self.uri_for_events();
        events::failed(&uri, &reason, stale_left);
        next.last_error = Some(reason);
        if next.keys > 0 && !next.usable(now) {
            state.prints.clear();
            state.etag = None;
            next.set = Arc::clone(&self.empty);
            next.kids = Arc::from([]);
            next.keys = 0;
            next.usable_until = None;
            next.generation += 1;
            events::expired(&uri);
        }
    }

    /// 1 s, 2 s, 4 s … up to a minute (or `ttl_min` if shorter).
    fn backoff(&self, failures: u32) -> Duration {
        let cap = MAX_RETRY_BACKOFF.min(self.config.ttl_min);
        Duration::from_secs(1u64 << failures.saturating_sub(1).min(16)).min(cap)
    }

    /// Replaces the snapshot, and tells subscribers when the generation changed. Only the
    /// holder of the flight lock calls this, so nothing is published between its load and
    /// its store.
    fn publish(&self, next: Snapshot) {
        let generation = next.generation;
        let changed = generation != self.snapshot.load().generation;
        self.snapshot.store(Arc::new(next));
        if changed {
            self.changes.send_replace(generation);
        }
    }
}

/// A uniformly distributed number in `[0, 1)`, for jitter.
fn unit_random() -> f64 {
    f64::from(getrandom::u32().unwrap_or(0)) / (f64::from(u32::MAX) + 1.0)
}
