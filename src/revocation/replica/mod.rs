//! Revocations replicated to every server's memory through a Redis Stream (feature `redis`).

mod feed;
mod keys;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
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
///   retention margin; a record's expiry never falls, and a record without expiry, such as an
///   operator's permanent ban, keeps none), raises the counter `<prefix>seq` by one, and
///   appends the entry, with the instant it is kept until and the counter's new value, to the
///   stream `<prefix>feed` (`XADD`). The stream's entries are thus numbered 1, 2, 3, … with
///   none left out. The writing server applies the entry to its own copy at once.
/// - **Snapshot.** At start, each server reads the counter and the stream's last id together
///   (one script), then every durable record under the prefix (`SCAN`, with each
///   record's `EXPIRETIME`, and a subject's "not before"), then follows the stream from that
///   id: a revocation written before the counter was read is a record, one written after is
///   in the stream (records written back after it are followed there by an entry that sends
///   the server to read the records again: see the restore, below), and applying one twice
///   changes nothing (every value only rises). A `jti`
///   record revokes its `jti` whatever its value, as for [`RedisRevocation`]. The records,
///   not the stream, are the snapshot because entries live for very different times (a
///   15-minute access token beside a 14-day refresh family): a stream holding every entry
///   still in force could only be trimmed below its oldest long-lived entry, while the
///   records expire one by one with their tokens.
/// - **Feed.** A background task follows the stream with `XREAD BLOCK` on a connection of its
///   own (a blocking read must not hold up the writes on the shared one), from the last id it
///   applied, so a reconnect resumes where it stopped. Each read also fetches the epoch and
///   the counter, and accounts for every entry: having applied entries up to n, it expects
///   the counter at n or above, the next entry numbered n + 1, and, after a read that took
///   every entry there was, its last number at the counter read before. Each `XADD` trims the
///   stream to the entries of the last [`DEFAULT_RETENTION_MARGIN`] by Redis's own clock
///   (`TIME`, the clock its ids come from; `MINID ~`): older entries are already in the
///   records.
/// - **Expiry.** The copy keeps each entry until the same instant its record expires in
///   Redis: the given expiry plus the retention margin, so the layer's rule that a store
///   outlives every leeway holds here as for [`RedisRevocation`]. Expired entries are swept as
///   new ones arrive.
///
/// # Failures
///
/// - **Redis unreachable.** The task confirms the feed with every read, and each read waits
///   for new entries a quarter of the staleness bound at most (between 10 and 250 ms). Once
///   the last confirmation is older than the bound ([`max_staleness`](Self::max_staleness),
///   5 s by default), by the monotonic clock or by the system clock (the monotonic clock
///   stands still while the machine is suspended), checks return an error: the layer answers
///   503 with `Retry-After` (or lets the request through with
///   [`revocation_fail_open`](crate::JwtAuthBuilder::revocation_fail_open)). Revoking fails
///   while Redis is away, as with [`RedisRevocation`]. Once Redis answers again, the task
///   resumes the feed and checks pass again.
/// - **Entries Redis lost, or the feed missed.** Redis restarted without persistence, was
///   flushed, was restored from an older backup, failed over to a lagging replica; or entries
///   were trimmed before this server read them (after a pause of minutes). The first server
///   to find Redis without one writes a random epoch to `<prefix>epoch` (`SET NX`). A
///   different or missing epoch, a counter below the last number applied, or an entry that
///   does not carry the next number means this server cannot account for every revocation:
///   never "nothing is revoked". It keeps its copy (entries only leave it by expiry), adopts
///   the epoch in place (or sets a new one), and restores Redis from its copy, one server
///   writing at a time (below). Every server holds the whole set, so one surviving server
///   restores all of it, and the fleet converges on the union. Meanwhile its checks answer
///   from its copy within the bound and fail past it, and `use_once` and
///   `is_revoked_consistent` fail unless the copy holds the entry.
/// - **The restore.** The restore marker `<prefix>restoring` is present while a restore is
///   under way, and names the one server writing back, if any: `free`, or `<owner>:<until>`,
///   where the owner is a random token of that server and its claim runs until `until`
///   (milliseconds, by Redis's clock), 3 s past its last renewal; the key itself stays 3 s
///   longer, so that the marker outlives an owner that stopped. Every step on it is one Lua
///   script that checks the epoch, and the owner where it renews or lets go: a server whose
///   claim lapsed never renews, replaces or deletes another's. A server restoring, in turn:
///   waits while another server owns the marker; reads every record under the prefix (a
///   snapshot), saying before each batch that it is restoring (which keeps the marker, or sets
///   it `free` for 3 s) and starting over once another server owns it; if Redis holds every
///   entry of its copy in force, with an expiry and a "not before" as late, deletes
///   `<prefix>incomplete` (below) and lets go of the marker if it owns it, unless another
///   server has claimed the marker since (then it waits and reads again), waits until the
///   marker is gone (reading it, `<prefix>incomplete` and the epoch every 100 ms at most: a
///   new epoch meanwhile means Redis lost its data again, and `<prefix>incomplete` back once
///   the marker is gone means a write-back cut short; either way it restores again from the
///   start) and follows the feed from its snapshot; else it claims the marker (`free`
///   or lapsed), writes back what Redis lacks (subjects first), renewing its claim before each
///   batch of 1 000 and stopping if it lost it, sets the marker `free` again, and reads the
///   records again. Each entry is written back as its record alone (its expiry and "not
///   before" only rise, as for a revocation), and each batch is followed by one stream entry
///   that says records were written back (`t` = `w`; one more as the write-back begins): a
///   server that reads one reads the records, as after a loss. So the write-back takes the
///   memory its records took before the loss (a stream entry per record would take about a
///   third more, and a Redis sized for its records, with `noeviction`, would run out part-way
///   and refuse every write until records expire). What Redis lacks is judged by Redis's
///   clock (`TIME`): an entry kept until Redis's now and a second or earlier is not written
///   back, since Redis would drop it at once (a server whose clock runs behind Redis's holds
///   such entries), and a pass that finds entries missing after this server already wrote
///   back waits 100 ms before writing again. A batch cut short by an error (a timeout, a
///   dropped connection) is resumed, once the server is back, at the first batch Redis did
///   not acknowledge, as long as the claim is still its own; writing an entry twice changes
///   nothing (every value only rises). So after Redis restarted empty, the first server writes
///   back its copy, and the others, which hold the same, read the records once and write
///   nothing. An owner that stops (its process ends, it is cut off) loses its claim 3 s after
///   its last batch, and a waiting server takes over within 100 ms, writing back what Redis
///   still lacks.
/// - **A write-back cut short.** Claiming the marker to write back also sets
///   `<prefix>incomplete`, without expiry, in the same script step ("a write-back is under way
///   or was cut short: the records may lack revocations"), and appends a `w` entry, so every
///   running server reads the records. Only a server restoring deletes it, in one script that
///   checks the epoch and that no other server's claim runs, once its reading of the records
///   found nothing of its copy missing. So a write-back cut short by anything that outlasts
///   the marker (Redis stalled longer than 6 s, which every server waits out alike while
///   Redis's clock expires the marker; a writer that stopped) keeps the record until a
///   running server has found the records complete, writing back first what it holds of what
///   they lack. A running server that finds the record without the marker (a write-back cut
///   short, or the record back with a backup or a replica of Redis) restores to find that. The
///   marker's steps (a few bytes) run on a Redis at its `maxmemory` too, so a restore that
///   finds nothing missing ends there.
/// - **A server starting meanwhile.** A new epoch comes with the marker (claimed by the
///   running server that set it, `free` if a starting server did), held 3 s: longer than a
///   running server takes to find the loss once Redis answers (it reads at least every
///   250 ms, the feed or, at the end of a restore, the marker and the epoch every 100 ms; and
///   reconnects within 1 s of backoff and 1 s of connection timeout: 2.25 s and a round trip).
///   A server starts ([`replicate`](RedisRevocation::replicate) returns), or confirms its feed
///   after a restore, only once the marker and `<prefix>incomplete` are gone, so its snapshot
///   holds what every running server wrote back. A start snapshot counts only if Redis holds
///   the same epoch and neither key both when the counter is read and after the last record:
///   one cut by a loss (a flush, a failover) or by a restore that began meanwhile is
///   discarded, and the server waits and takes another. A marker without expiry (no value
///   this crate writes: an operator's `SET`, a tool copying keys without their TTL) is given
///   one hold by a server waiting for it, so it never blocks a start for good. Once Redis has
///   an epoch, the start runs no script that writes, so a server starts on a Redis at its
///   `maxmemory` that holds every revocation.
///   Hence the first server started on a new Redis takes 3 s to start, and
///   [`replicate`](RedisRevocation::replicate) fails after waiting 60 s for a restore that
///   does not end, or for `<prefix>incomplete` to go. That record never expires: when no
///   running server is left to finish a write-back that was cut short (every server stopped
///   during the restore), no server starts until an operator who knows that no server holds
///   the revocations any more accepts their loss with `DEL <prefix>incomplete` (the error
///   names the key). What no server holds is lost: a Redis restarted empty while every server
///   was also restarted forgets everything, as [`RedisRevocation`] does, and a server whose
///   feed was cut off from Redis for longer than the marker is held writes back what it holds
///   only once it reconnects; run Redis with persistence (AOF) or replication, with
///   `maxmemory-policy noeviction` (every record has an expiry, so any other policy may drop
///   revocations; the server warns at start, with the `tracing` feature, when Redis says
///   otherwise). A Redis restored from an older backup keeps its epoch and shows no marker:
///   a server that starts before the running servers have found it (their first read once
///   Redis is back) accepts what the backup lacks until their write-back's first `w` entry
///   sends it to read the records once the write-back is done.
///
/// # Consistency
///
/// A revocation reaches the other servers within the feed's delay (a few milliseconds on a
/// local network) and, at worst, before their staleness bound. The operations that must see
/// every server's writes at once ask this server's copy, then Redis:
/// [`use_once`](RevocationStore::use_once) answers "already used" when the copy holds the
/// `jti`, else the first atomic `SET NX` in Redis wins; and
/// [`is_revoked_consistent`](RevocationStore::is_revoked_consistent), with which refresh-token
/// rotation checks a family, is the copy or Redis. Redis answers for the fleet only while it
/// holds the dataset this server's copy follows: both fail, rather than trust an answer of
/// Redis's, when Redis holds another epoch or none, the restore marker or the `incomplete`
/// record, a counter below the number of the last stream entry this server applied, or no
/// longer that entry (by its id and number) although the stream holds an older one or none
/// (trimming removes the oldest entries only): Redis lost data that this server's feed has
/// not seen yet, and a spend another server holds may be missing from it. The feed applies
/// the same rule at each read, and restores. So they fail on every server while any server
/// restores, at least one hold of the marker (3 s) even when it finds nothing to write back
/// (after a pause that outlasted the stream's retention, for instance). A Redis rewound with
/// its epoch kept (an older backup, a lagging replica) is found this way only by a server
/// whose feed applied an entry the rewind took away (new writes that raise the counter again
/// do not hide it: the entry then numbered so has another id), unless a new entry gets that
/// very id (a Redis whose clock is behind the lost entry's millisecond); until one such
/// server's feed has found it (at its next read) and set the marker, the others may still
/// take Redis's answer. Every server must write through this type (or take a new snapshot): a
/// revocation written by a plain [`RedisRevocation`] is a record only, which followers read
/// at their next snapshot.
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

/// What the handles and the task share: the copy, how fresh it is, and the keys.
struct Shared {
    /// The keys that depend on the prefix alone.
    keys: keys::Keys,
    /// The entries, each given with the instant it is kept until (margin zero: the margin is
    /// already in that instant).
    local: MemoryRevocation,
    /// The origin of `confirmed`.
    origin: Instant,
    /// Nanoseconds from `origin` to the moment up to which every revocation written to Redis
    /// is in `local`.
    confirmed: AtomicU64,
    /// The same moment on the system clock, in nanoseconds since the Unix epoch: `Instant`
    /// stands still while the machine is suspended, the system clock does not.
    confirmed_wall: AtomicU64,
    /// The staleness bound, in nanoseconds.
    max_staleness: AtomicU64,
    /// Redis lost entries and this server has not finished restoring them (see `Feed`).
    restoring: AtomicBool,
    /// The epoch the feed follows (empty before it adopted one): the dataset `local` was
    /// read from. An answer of Redis's stands for the fleet only while Redis holds it.
    epoch: Mutex<String>,
    /// The last stream entry the feed applied, once the read that applied it is accounted
    /// for: Redis keeps it (unless trimming took it with every older entry), and its counter
    /// never falls below its number, unless Redis lost data (restored from an older backup,
    /// failed over to a lagging replica, with its epoch kept).
    applied: Mutex<Applied>,
}

/// A stream entry the feed applied: its number, and its id (empty: none yet).
#[derive(Clone, Default)]
struct Applied {
    seq: u64,
    id: String,
}

impl Shared {
    fn new(prefix: &str) -> Shared {
        Shared {
            keys: keys::Keys::new(prefix),
            local: MemoryRevocation::new().retain_past_expiry(Duration::ZERO),
            origin: Instant::now(),
            confirmed: AtomicU64::new(0),
            confirmed_wall: AtomicU64::new(0),
            max_staleness: AtomicU64::new(nanos(DEFAULT_MAX_STALENESS)),
            restoring: AtomicBool::new(false),
            epoch: Mutex::new(String::new()),
            applied: Mutex::new(Applied::default()),
        }
    }

    /// The last entry the feed applied. As for `epoch`, a poisoned lock still holds a whole
    /// value.
    fn applied(&self) -> Applied {
        self.applied
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The feed applied entry number `seq`, of id `id`.
    fn set_applied(&self, seq: u64, id: &str) {
        let mut applied = self.applied.lock().unwrap_or_else(PoisonError::into_inner);
        applied.seq = seq;
        id.clone_into(&mut applied.id);
    }

    /// The epoch the feed follows. The lock is held only to copy or replace a string, so a
    /// poisoned one still holds a whole value.
    fn epoch(&self) -> String {
        self.epoch
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The feed follows `epoch` from now on.
    fn follow(&self, epoch: &str) {
        epoch.clone_into(&mut self.epoch.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Records that every revocation written before `at` is applied.
    fn confirm(&self, at: Moment) {
        let mono = nanos(at.mono.saturating_duration_since(self.origin));
        self.confirmed_wall.fetch_max(at.wall, Ordering::Release);
        self.confirmed.fetch_max(mono, Ordering::Release);
    }

    fn max_staleness(&self) -> Duration {
        Duration::from_nanos(self.max_staleness.load(Ordering::Relaxed))
    }

    /// How long each blocking read waits for new entries: a quarter of the bound, between
    /// 10 ms and 250 ms, so a live feed is confirmed well within the bound.
    fn block_time(&self) -> Duration {
        (self.max_staleness() / 4).clamp(Duration::from_millis(10), Duration::from_millis(250))
    }

    /// An error once the copy may lack revocations older than the bound, by either clock:
    /// the monotonic one (the system clock may be stepped back) or the system clock (the
    /// monotonic one stands still while the machine is suspended). A system clock stepped
    /// forward fails checks until the next read confirms the feed (250 ms at most).
    fn fresh(&self) -> Result<(), RevocationError> {
        let now = Moment::now();
        let age = nanos(now.mono.saturating_duration_since(self.origin))
            .saturating_sub(self.confirmed.load(Ordering::Acquire))
            .max(
                now.wall
                    .saturating_sub(self.confirmed_wall.load(Ordering::Acquire)),
            );
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
            return Err(lost());
        }
        Ok(())
    }
}

/// Redis does not hold the dataset this server's copy follows, whole: it lost data (another
/// epoch, or none) or is being restored.
fn lost() -> RevocationError {
    RevocationError("redis lost revocations and is being restored".into())
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A moment on both clocks: the monotonic one, and the system clock in nanoseconds since the
/// Unix epoch.
#[derive(Clone, Copy)]
struct Moment {
    mono: Instant,
    wall: u64,
}

impl Moment {
    fn now() -> Moment {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, nanos);
        Moment {
            mono: Instant::now(),
            wall,
        }
    }
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
    /// current tokio runtime. A Redis without an epoch (new, or emptied), or one the running
    /// servers are restoring, is waited for first: 3 s, or until the restore is done.
    ///
    /// # Errors
    ///
    /// Redis unreachable or failing, as for every operation; or the restore marker
    /// (`<prefix>restoring`) still held after 60 s, renewed by a restore that does not end: a
    /// snapshot taken then could lack what is being written back, so the server does not
    /// start (try again later); or `<prefix>incomplete` still present after 60 s: a
    /// write-back was cut short and no running server has found the records complete since
    /// (none is left to: `DEL <prefix>incomplete` accepts the loss of what the stopped
    /// servers held).
    pub async fn replicate(self) -> Result<ReplicatedRevocation, RevocationError> {
        let shared = Arc::new(Shared::new(&self.prefix));
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
    /// restored) before checks return an error (default 5 s). Shorter means a revocation is
    /// never missed for longer than that, and more 503s while Redis is briefly away. Applies
    /// to every handle of this copy.
    pub fn max_staleness(self, bound: Duration) -> ReplicatedRevocation {
        self.shared
            .max_staleness
            .store(nanos(bound), Ordering::Relaxed);
        self
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
    /// Redis is known to lack entries (this server is restoring it, or Redis holds another
    /// epoch than the one this server follows, a restore marker or the `incomplete` record,
    /// or no longer the last entry this server applied, read after the answer: a loss this
    /// server's feed has not seen yet) or the copy is stale: then an error, since "not revoked"
    /// cannot be known.
    fn is_revoked_consistent<'a>(
        &'a self,
        token: TokenId<'a>,
    ) -> BoxFuture<'a, Result<bool, RevocationError>> {
        async move {
            if self.shared.local.check(token) {
                return Ok(true);
            }
            self.shared.trusts_redis()?;
            if self.source.is_revoked(token).await? {
                return Ok(true);
            }
            // Read after the answer: had Redis lost the record before it answered, the epoch,
            // the restore's keys, the counter or the last entry this server applied say so by
            // now. In a second round trip: that entry is read after Redis's answer and before
            // Redis is asked about it, so an entry the feed applies meanwhile counts too.
            let epoch = self.shared.epoch();
            let applied = self.shared.applied();
            let fixed = &self.shared.keys;
            let op = async move {
                let mut conn = self.source.conn.clone();
                let kept: i64 = keys::DATASET_KEPT_SCRIPT
                    .key(&fixed.seq)
                    .key(&fixed.stream)
                    .key(&fixed.epoch)
                    .key(&fixed.restoring)
                    .key(&fixed.incomplete)
                    .arg(epoch)
                    .arg(applied.seq)
                    .arg(applied.id)
                    .invoke_async(&mut conn)
                    .await
                    .map_err(err)?;
                if kept != 1 {
                    return Err(lost());
                }
                // The feed may have applied the revocation meanwhile.
                Ok(self.shared.local.check(token))
            };
            self.source.deadline(op).await
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
            let kept: u64 = keys::REVOKE_JTI_SCRIPT
                .key(self.source.jti_key(jti))
                .key(&self.shared.keys.stream)
                .key(&self.shared.keys.seq)
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
            let (before, kept): (u64, u64) = keys::REVOKE_SUBJECT_SCRIPT
                .key(self.source.sub_key(iss, sub))
                .key(&self.shared.keys.stream)
                .key(&self.shared.keys.seq)
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
    /// server is restoring it, or Redis holds another epoch than the one this server
    /// follows, a restore marker or the `incomplete` record, or no longer the last entry this
    /// server applied: checked in the same script as the `SET NX`) or the copy is stale.
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
            let applied = self.shared.applied();
            let mut conn = self.source.conn.clone();
            let kept: i64 = keys::USE_ONCE_SCRIPT
                .key(self.source.jti_key(jti))
                .key(&self.shared.keys.stream)
                .key(&self.shared.keys.seq)
                .key(&self.shared.keys.epoch)
                .key(&self.shared.keys.restoring)
                .key(&self.shared.keys.incomplete)
                .arg(jti)
                .arg(RedisRevocation::kept_until(expires_at))
                .arg(trim_window_ms())
                .arg(self.shared.epoch())
                .arg(applied.seq)
                .arg(applied.id)
                .invoke_async(&mut conn)
                .await
                .map_err(err)?;
            let Ok(kept) = u64::try_from(kept) else {
                return Err(lost());
            };
            if kept == 0 {
                return Ok(false);
            }
            self.shared.local.insert_jti(jti, kept);
            Ok(true)
        };
        async move { self.source.deadline(op).await }.boxed()
    }
}
