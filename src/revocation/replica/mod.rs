//! Revocations replicated to every server's memory through a Redis Stream (feature `redis`).

mod feed;
mod keys;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt, ready};

use super::redis::{MAX_EXAT, MAX_NOT_BEFORE, err, unix_now};
use super::{
    DEFAULT_RETENTION_MARGIN, MemoryRevocation, RedisRevocation, Revocation, RevocationError,
    RevocationStore, TokenId,
};

/// How long the feed may go unconfirmed before checks fail, by default.
const DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(5);

/// Revocations checked in this server's memory, kept in step with every other server through
/// Redis: a check is a local lookup (no network), a revocation is one Redis round trip.
///
/// Made from a [`RedisRevocation`] with [`RedisRevocation::replicate`], and shared like it
/// (`Arc<ReplicatedRevocation>` in the layer and in a logout handler, or clones: every clone
/// is a handle on the same copy).
///
/// # How it works
///
/// - **Writes.** A revocation ([`revoke`](RevocationStore::revoke),
///   [`revoke_subject`](RevocationStore::revoke_subject), a first
///   [`use_once`](RevocationStore::use_once)) is one Lua script, so atomic: it writes the same
///   durable record as [`RedisRevocation`] (same keys, same expiry: the token's `exp` plus the
///   retention margin) and appends the entry, with the instant it is kept until, to the stream
///   `<prefix>feed` (`XADD`). The writing server applies it to its own copy at once.
/// - **Snapshot.** At start, each server reads the stream's last id, then every durable record
///   under the prefix (`SCAN`, with each record's value and `EXPIRETIME`), then follows the
///   stream from that id: a revocation written before the id was read is a record, one written
///   after is in the stream, and applying one twice changes nothing (every value only rises).
///   The records, not the stream, are the snapshot because entries live for very different
///   times (a 15-minute access token beside a 14-day refresh family): a stream holding every
///   entry still in force could only be trimmed below its oldest long-lived entry, while the
///   records expire one by one with their tokens.
/// - **Feed.** A background task follows the stream with `XREAD BLOCK` on a connection of its
///   own (a blocking read must not hold up the writes on the shared one), from the last id it
///   applied, so a reconnect resumes where it stopped. Each `XADD` trims the stream to the last
///   [`DEFAULT_RETENTION_MARGIN`] (`MINID ~`): entries older than that are already in the
///   records. A follower that reconnects (or reads again after a pause of a minute or more)
///   and finds the stream's first entry past the last one it applied may have lost entries to
///   trimming: it takes a new snapshot.
/// - **Expiry.** The copy keeps each entry until the same instant its record expires in
///   Redis: the given expiry plus the retention margin, so the layer's rule that a store
///   outlives every leeway holds here as for [`RedisRevocation`]. Expired entries are swept as
///   new ones arrive.
///
/// # Failures
///
/// - **Redis unreachable.** The task confirms the feed with every read, and each read waits
///   for new entries a quarter of the staleness bound at most (between 10 and 250 ms). Once
///   the last confirmation is older than the bound ([`max_staleness`](Self::max_staleness), 5 s by default), checks return an error: the
///   layer answers 503 with `Retry-After` (or lets the request through with
///   [`revocation_fail_open`](crate::JwtAuthBuilder::revocation_fail_open)). Revoking fails
///   while Redis is away, as with [`RedisRevocation`]. Once Redis answers again, the task
///   resumes the feed and checks pass again.
/// - **Redis back empty** (restarted without persistence, flushed, or restored from an older
///   backup). The first server to start writes a random epoch to `<prefix>epoch`
///   (`SET NX`); every follower compares it on each read. A missing or different epoch, or a
///   stream whose last id went backwards, means revocations were lost: never "nothing is
///   revoked". The follower keeps its copy (entries only leave it by expiry), adopts the new
///   epoch (one server sets it, all read it), writes back every entry it holds that is still
///   in force (record and stream entry, as a revocation), and takes a new snapshot. Every
///   server holds the whole set, so one surviving server restores all of it, and the fleet
///   converges on the union. Checks keep failing closed until that is done if the feed was
///   down for longer than the bound. What no server holds is lost: a Redis restarted empty
///   while every server was also restarted forgets everything, as [`RedisRevocation`] does;
///   run Redis with persistence (AOF) or replication. A server that starts after the restart
///   and before the first running server has reconnected (a second at most) sees an empty
///   Redis it cannot tell from a new one: it accepts the lost revocations until the running
///   servers' entries arrive on the feed.
///
/// # Consistency
///
/// A revocation reaches the other servers within the feed's delay (a few milliseconds on a
/// local network) and, at worst, before their staleness bound. The operations that must see
/// every server's writes at once stay Redis round trips: `use_once` (atomic `SET NX`) and
/// [`is_revoked_consistent`](RevocationStore::is_revoked_consistent), with which refresh-token
/// rotation checks a family. Every server must write through this type (or take a new
/// snapshot): a revocation written by a plain [`RedisRevocation`] is a record only, which
/// followers read at their next snapshot.
///
/// Each server holds every entry in force under the prefix, as Redis does: revoked and used
/// `jti`s (each used refresh token until its `exp`) and subjects.
///
/// The task stops, and its connection closes, when the last handle is dropped.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use tower_jwt_auth::{JwtAuthLayer, revocation::{RedisRevocation, RevocationStore}};
///
/// #[derive(Clone, serde::Deserialize)]
/// struct MyClaims { sub: String }
///
/// let store = RedisRevocation::connect("redis://127.0.0.1:6379/").await?
///     .replicate()
///     .await?
///     .max_staleness(Duration::from_secs(5));
/// let store = Arc::new(store);
/// let auth = JwtAuthLayer::<MyClaims>::builder()
///     .hs256(b"an example secret that is 32 bytes+")
///     .revocation(store.clone())
///     .build()?;
/// // In a logout handler, on any server: every server refuses the token within milliseconds.
/// store.revoke("the token's jti", 1_900_000_000).await?;
/// # let _ = auth; Ok(()) }
/// ```
#[derive(Clone)]
pub struct ReplicatedRevocation {
    shared: Arc<Shared>,
    source: RedisRevocation,
    /// Stops the task when the last handle goes.
    _follower: Arc<Follower>,
}

impl std::fmt::Debug for ReplicatedRevocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicatedRevocation")
            .field("prefix", &self.source.prefix)
            .field("max_staleness", &self.shared.max_staleness())
            .finish_non_exhaustive()
    }
}

/// What the handles and the task share: the copy and how fresh it is.
struct Shared {
    /// The entries, each given with the instant it is kept until (margin zero: the margin is
    /// already in that instant).
    local: MemoryRevocation,
    /// The origin of the two instants below.
    origin: Instant,
    /// Nanoseconds from `origin` to the moment up to which every revocation written to Redis
    /// is in `local`.
    confirmed: AtomicU64,
    /// The staleness bound, in nanoseconds.
    max_staleness: AtomicU64,
    /// Redis lost entries and this server has not finished restoring them (see `Feed`).
    restoring: AtomicBool,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            local: MemoryRevocation::new().retain_past_expiry(Duration::ZERO),
            origin: Instant::now(),
            confirmed: AtomicU64::new(0),
            max_staleness: AtomicU64::new(nanos(DEFAULT_MAX_STALENESS)),
            restoring: AtomicBool::new(false),
        }
    }

    /// Records that every revocation written before `at` is applied.
    fn confirm(&self, at: Instant) {
        let at = nanos(at.saturating_duration_since(self.origin));
        self.confirmed.fetch_max(at, Ordering::Release);
    }

    fn max_staleness(&self) -> Duration {
        Duration::from_nanos(self.max_staleness.load(Ordering::Relaxed))
    }

    /// How long each blocking read waits for new entries: a quarter of the bound, between
    /// 10 ms and 250 ms, so a live feed is confirmed well within the bound.
    fn block_time(&self) -> Duration {
        (self.max_staleness() / 4).clamp(Duration::from_millis(10), Duration::from_millis(250))
    }

    /// An error once the copy may lack revocations older than the bound.
    fn fresh(&self) -> Result<(), RevocationError> {
        let now = nanos(self.origin.elapsed());
        let age = now.saturating_sub(self.confirmed.load(Ordering::Acquire));
        let bound = self.max_staleness.load(Ordering::Relaxed);
        if age > bound {
            return Err(RevocationError(format!(
                "the revocation feed from redis is {:?} behind (bound {:?})",
                Duration::from_nanos(age),
                Duration::from_nanos(bound)
            )));
        }
        Ok(())
    }

    /// An error unless a Redis answer can stand alone: the copy is fresh and Redis is not
    /// being restored.
    fn trusts_redis(&self) -> Result<(), RevocationError> {
        self.fresh()?;
        if self.restoring.load(Ordering::Acquire) {
            return Err(RevocationError(
                "redis lost revocations and is being restored".into(),
            ));
        }
        Ok(())
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Aborts the feed task when dropped: the task owns the dedicated connection, which closes
/// with it.
struct Follower(tokio::task::AbortHandle);

impl Drop for Follower {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl RedisRevocation {
    /// Keeps a copy of the revocations in this server's memory, fed by a Redis Stream, and
    /// checks tokens against it: see [`ReplicatedRevocation`]. Takes the snapshot (every
    /// record under the prefix) before it returns, then follows the stream in a task of the
    /// current tokio runtime.
    pub async fn replicate(self) -> Result<ReplicatedRevocation, RevocationError> {
        let shared = Arc::new(Shared::new());
        let feed = feed::Feed::start(self.clone(), shared.clone()).await?;
        let task = tokio::spawn(feed.run());
        Ok(ReplicatedRevocation {
            shared,
            source: self,
            _follower: Arc::new(Follower(task.abort_handle())),
        })
    }
}

impl ReplicatedRevocation {
    /// Sets how long the feed may go unconfirmed (Redis unreachable, or lost and being
    /// re-seeded) before checks return an error (default 5 s). Shorter means a revocation is
    /// never missed for longer than that, and more 503s while Redis is briefly away. Applies
    /// to every handle of this copy.
    pub fn max_staleness(self, bound: Duration) -> ReplicatedRevocation {
        self.shared
            .max_staleness
            .store(nanos(bound), Ordering::Relaxed);
        self
    }

    fn stream_key(&self) -> String {
        keys::stream(&self.source.prefix)
    }

    fn seq_key(&self) -> String {
        keys::seq(&self.source.prefix)
    }
}

/// The window the stream is trimmed to, in milliseconds: entries older than the retention
/// margin are already in the records. The scripts subtract it from Redis's clock.
fn trim_window_ms() -> u64 {
    u64::try_from(DEFAULT_RETENTION_MARGIN.as_millis()).unwrap_or(u64::MAX)
}

impl Revocation for ReplicatedRevocation {
    fn is_revoked<'a>(
        &'a self,
        token: TokenId<'a>,
    ) -> BoxFuture<'a, Result<bool, RevocationError>> {
        ready(self.shared.fresh().map(|()| self.shared.local.check(token))).boxed()
    }

    fn retention_margin(&self) -> Duration {
        DEFAULT_RETENTION_MARGIN
    }
}

impl RevocationStore for ReplicatedRevocation {
    /// Revoked in this server's copy, or in Redis. The copy first: an entry it holds is in
    /// force whatever Redis says, and Redis may have lost it (restarted empty, restored from
    /// a backup) before this server or another wrote it back. Otherwise Redis answers, unless
    /// Redis is known to lack entries (this server is restoring it) or the copy is stale: then
    /// an error, since "not revoked" cannot be known.
    fn is_revoked_consistent<'a>(
        &'a self,
        token: TokenId<'a>,
    ) -> BoxFuture<'a, Result<bool, RevocationError>> {
        async move {
            if self.shared.local.check(token) {
                return Ok(true);
            }
            self.shared.trusts_redis()?;
            self.source.is_revoked(token).await
        }
        .boxed()
    }

    fn revoke<'a>(
        &'a self,
        jti: &'a str,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<(), RevocationError>> {
        let op = async move {
            if super::kept_until(expires_at, DEFAULT_RETENTION_MARGIN) <= unix_now() {
                return Ok(());
            }
            let mut conn = self.source.conn.clone();
            let kept: u64 = redis::Script::new(keys::REVOKE_JTI)
                .key(self.source.jti_key(jti))
                .key(self.stream_key())
                .key(self.seq_key())
                .arg(jti)
                .arg(RedisRevocation::kept_until(expires_at))
                .arg(trim_window_ms())
                .invoke_async(&mut conn)
                .await
                .map_err(err)?;
            self.shared.local.insert_jti(jti, kept);
            Ok(())
        };
        async move { self.source.deadline(op).await }.boxed()
    }

    fn revoke_subject<'a>(
        &'a self,
        iss: Option<&'a str>,
        sub: &'a str,
        issued_before: u64,
        keep_until: u64,
    ) -> BoxFuture<'a, Result<(), RevocationError>> {
        let op = async move {
            if super::kept_until(keep_until, DEFAULT_RETENTION_MARGIN) <= unix_now() {
                return Ok(());
            }
            let mut conn = self.source.conn.clone();
            let (before, kept): (u64, u64) = redis::Script::new(keys::REVOKE_SUBJECT)
                .key(self.source.sub_key(iss, sub))
                .key(self.stream_key())
                .key(self.seq_key())
                .arg(issued_before.min(MAX_NOT_BEFORE))
                .arg(RedisRevocation::kept_until(keep_until))
                .arg(trim_window_ms())
                .arg(iss.unwrap_or(""))
                .arg(sub)
                .invoke_async(&mut conn)
                .await
                .map_err(err)?;
            self.shared
                .local
                .insert_subject(iss.unwrap_or(""), sub, before, kept);
            Ok(())
        };
        async move { self.source.deadline(op).await }.boxed()
    }

    /// "Already used" when this server's copy holds `jti`, before Redis is asked: Redis may
    /// have lost the record (restarted empty, restored from a backup), and a `SET NX` there
    /// would then spend a spent token again. Otherwise the first `SET NX` in Redis wins, as
    /// for [`RedisRevocation`]; an error instead while Redis is known to lack entries (this
    /// server is restoring it) or the copy is stale.
    fn use_once<'a>(
        &'a self,
        jti: &'a str,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<bool, RevocationError>> {
        let op = async move {
            if self
                .shared
                .local
                .check(TokenId::new(None, Some(jti), None, None))
            {
                return Ok(false);
            }
            self.shared.trusts_redis()?;
            let mut conn = self.source.conn.clone();
            let kept: u64 = redis::Script::new(keys::USE_ONCE)
                .key(self.source.jti_key(jti))
                .key(self.stream_key())
                .key(self.seq_key())
                .arg(jti)
                .arg(RedisRevocation::kept_until(expires_at))
                .arg(trim_window_ms())
                .invoke_async(&mut conn)
                .await
                .map_err(err)?;
            if kept == 0 {
                return Ok(false);
            }
            self.shared.local.insert_jti(jti, kept);
            Ok(true)
        };
        async move { self.source.deadline(op).await }.boxed()
    }
}
