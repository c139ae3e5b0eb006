//! The task that keeps a server's copy in step with Redis: snapshot, stream, and recovery from
//! a Redis that lost its data.
//!
//! Lost data is found by counting: every write script raises `<prefix>seq` and numbers its
//! stream entry with the new value, so a follower that has applied entries 1 to n expects
//! the counter at n or above and the next entry to be n + 1. A counter below n, or an entry
//! numbered otherwise (a number seen before, or one that skips), or a different epoch, means
//! this server cannot account for every entry: entries were lost (a restart without
//! persistence, a flush, an older backup or a lagging replica, whatever was written since)
//! or trimmed before it read them. Both are handled the same way, which is right for both:
//! write back the copy, then take a new snapshot.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::streams::{StreamId, StreamRangeReply, StreamReadReply};
use redis::{AsyncConnectionConfig, Value};

use super::keys::{self, Record};
use super::{
    MAX_EXAT, MAX_NOT_BEFORE, Moment, RedisRevocation, RevocationError, Shared, err, unix_now,
};

/// Records read per `SCAN` step and entries per `XREAD`.
const BATCH: usize = 1000;

/// Entries written back per pipeline when a lost Redis is restored.
const REPUBLISH_BATCH: usize = 10_000;

/// The longest wait for an answer on the feed's connection: beyond the longest blocking read
/// (250 ms), short enough that a silent network is noticed and reconnected within seconds.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the restore marker is held past the last sign of a restore: a new epoch, a loss
/// found, a batch written back. Longer than a running server takes to find a loss once
/// Redis answers (its feed reads at least every 250 ms, and reconnects within 1 s of
/// backoff) and mark it, and than one batch of the write-back takes; so while any server
/// may still be about to write back, the marker is there.
const RESTORE_HOLD: Duration = Duration::from_secs(2);

/// The stream id before every entry.
const START: &str = "0-0";

/// One follower: its connection, the epoch it follows, the last stream id and the last
/// sequence number it applied.
pub(super) struct Feed {
    source: RedisRevocation,
    shared: Arc<Shared>,
    conn: Option<MultiplexedConnection>,
    epoch: String,
    last_id: String,
    seq: u64,
}

impl Feed {
    /// Connects, adopts the epoch, waits out any restore in progress and takes the snapshot.
    ///
    /// A server that starts while the marker is held (Redis is new, or was found empty or
    /// rewound and the running servers are writing back what they hold) waits until it is
    /// gone: a snapshot taken earlier could lack revocations that are on their way back.
    pub(super) async fn start(
        source: RedisRevocation,
        shared: Arc<Shared>,
    ) -> Result<Feed, RevocationError> {
        let mut feed = Feed {
            source,
            shared,
            conn: None,
            epoch: String::new(),
            last_id: START.into(),
            seq: 0,
        };
        let mut conn = feed.connect().await?;
        #[cfg(feature = "tracing")]
        warn_on_eviction(&mut conn).await;
        feed.adopt_epoch(&mut conn).await?;
        feed.await_restores(&mut conn).await?;
        feed.snapshot(&mut conn).await?;
        feed.conn = Some(conn);
        Ok(feed)
    }

    /// Follows the stream until the task is aborted, reconnecting after any error with a
    /// backoff from 50 ms to 1 s.
    pub(super) async fn run(mut self) {
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.step().await {
                Ok(()) => backoff = Duration::from_millis(50),
                Err(_e) => {
                    #[cfg(feature = "tracing")]
                    tracing::warn!(error = %_e, "revocation feed interrupted; reconnecting");
                    self.conn = None;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    async fn connect(&self) -> Result<MultiplexedConnection, RevocationError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        self.source
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(err)
    }

    /// One read of the stream (reconnecting first if needed), applied and accounted for; or
    /// the restore of a Redis that lost entries.
    async fn step(&mut self) -> Result<(), RevocationError> {
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        // A restore cut short by an error starts over: the epoch may already match by now,
        // so nothing else would tell.
        if self.shared.restoring.load(Ordering::Acquire) {
            self.restore(&mut conn).await?;
        }
        let sent = Moment::now();
        let block = u64::try_from(self.shared.block_time().as_millis()).unwrap_or(250);
        // The epoch and the counter are read first, in the same round trip: Redis answers
        // them at once, then blocks on the stream. Every entry numbered up to that counter
        // was in the stream before the read began.
        let (epoch, counter, reply): (Option<String>, Option<u64>, Option<StreamReadReply>) =
            redis::pipe()
                .get(keys::epoch(&self.source.prefix))
                .get(keys::seq(&self.source.prefix))
                .cmd("XREAD")
                .arg("BLOCK")
                .arg(block)
                .arg("COUNT")
                .arg(BATCH)
                .arg("STREAMS")
                .arg(keys::stream(&self.source.prefix))
                .arg(&self.last_id)
                .query_async(&mut conn)
                .await
                .map_err(err)?;
        let counter = counter.unwrap_or(0);
        let mut accounted = epoch.as_deref() == Some(self.epoch.as_str()) && counter >= self.seq;
        let mut read = 0;
        for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
            // Applying an entry is always safe (entries only revoke), whatever its number.
            accounted &= self.apply(&entry);
            self.last_id = entry.id;
            read += 1;
        }
        // A short read took every entry there was: the ones up to the counter must be among
        // them, unless they were trimmed or lost.
        if read < BATCH && self.seq < counter {
            accounted = false;
        }
        if !accounted {
            self.restore(&mut conn).await?;
        } else if read < BATCH {
            // A full batch may have left entries written before `sent` unread: the next read
            // (at once: they are there) confirms.
            self.shared.confirm(sent);
        }
        self.conn = Some(conn);
        Ok(())
    }

    /// Applies one stream entry; true when its number is the next one expected.
    fn apply(&mut self, entry: &StreamId) -> bool {
        let next = entry.get::<u64>("seq") == Some(self.seq + 1);
        if next {
            self.seq += 1;
        }
        let until = entry.get::<u64>("until");
        match (entry.get::<String>("t").as_deref(), until) {
            (Some("j"), Some(until)) => {
                if let Some(jti) = entry.get::<String>("jti") {
                    self.shared.local.insert_jti(&jti, until);
                    return next;
                }
            }
            (Some("s"), Some(until)) => {
                if let (Some(iss), Some(sub), Some(before)) = (
                    entry.get::<String>("iss"),
                    entry.get::<String>("sub"),
                    entry.get::<u64>("before"),
                ) {
                    self.shared.local.insert_subject(&iss, &sub, before, until);
                    return next;
                }
            }
            _ => {}
        }
        // Not an entry this version writes: its revocation, if any, is in the records, which
        // the restore reads.
        #[cfg(feature = "tracing")]
        tracing::warn!(
            id = %entry.id,
            "unreadable entry in the revocation stream; reading the records again"
        );
        false
    }

    /// Sets the epoch if Redis has none (holding the restore marker with it), and follows the
    /// one in place.
    async fn adopt_epoch(
        &mut self,
        conn: &mut MultiplexedConnection,
    ) -> Result<(), RevocationError> {
        let mut random = [0u8; 16];
        getrandom::fill(&mut random)
            .map_err(|e| RevocationError(format!("no randomness for the epoch: {e}")))?;
        let fresh: String = random.iter().map(|b| format!("{b:02x}")).collect();
        self.epoch = redis::Script::new(keys::ADOPT_EPOCH)
            .key(keys::epoch(&self.source.prefix))
            .key(keys::restoring(&self.source.prefix))
            .arg(fresh)
            .arg(hold_ms())
            .invoke_async(conn)
            .await
            .map_err(err)?;
        Ok(())
    }

    /// Holds the restore marker for [`RESTORE_HOLD`] more at least.
    async fn hold(&self, conn: &mut MultiplexedConnection) -> Result<(), RevocationError> {
        redis::Script::new(keys::HOLD)
            .key(keys::restoring(&self.source.prefix))
            .arg(hold_ms())
            .invoke_async::<()>(conn)
            .await
            .map_err(err)
    }

    /// Waits until the restore marker is gone, re-reading it each time its expiry is due (a
    /// server still writing back extends it).
    async fn await_restores(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> Result<(), RevocationError> {
        loop {
            let left: i64 = redis::cmd("PTTL")
                .arg(keys::restoring(&self.source.prefix))
                .query_async(conn)
                .await
                .map_err(err)?;
            if left == -2 {
                return Ok(());
            }
            // -1 (no expiry: not set by this crate) is waited out a hold at a time.
            let left = u64::try_from(left).unwrap_or(hold_ms()).clamp(1, hold_ms());
            tokio::time::sleep(Duration::from_millis(left)).await;
        }
    }

    /// Reads the sequence counter and the stream's last id together (one transaction: a write
    /// script raises the one and appends to the other atomically), then every record under
    /// the prefix, into the copy; the feed resumes after that id and number. Everything
    /// written before the counter was read is a record by then (a record and its stream entry
    /// are written by one script).
    async fn snapshot(&mut self, conn: &mut MultiplexedConnection) -> Result<(), RevocationError> {
        let started = Moment::now();
        let prefix = self.source.prefix.clone();
        let (counter, last): (Option<u64>, StreamRangeReply) = redis::pipe()
            .atomic()
            .get(keys::seq(&prefix))
            .cmd("XREVRANGE")
            .arg(keys::stream(&prefix))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(conn)
            .await
            .map_err(err)?;
        // A stream trimmed or deleted empty: every entry is a record, and the next one is
        // numbered past the counter, with an id past 0-0.
        let last_id = last
            .ids
            .into_iter()
            .next()
            .map_or_else(|| START.into(), |e| e.id);
        let pattern = keys::pattern(&prefix);
        let mut cursor: u64 = 0;
        loop {
            let (next, found): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(BATCH)
                .query_async(conn)
                .await
                .map_err(err)?;
            let records: Vec<(Vec<u8>, Record)> = found
                .into_iter()
                .filter_map(|key| keys::record(&prefix, &key).map(|r| (key, r)))
                .collect();
            if !records.is_empty() {
                self.read_records(conn, records).await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        self.last_id = last_id;
        self.seq = counter.unwrap_or(0);
        self.shared.confirm(started);
        Ok(())
    }

    /// Reads each record into the copy. A `jti` record revokes its `jti` whatever its value,
    /// as [`RedisRevocation`] reads it (`EXISTS`), so only its expiry is read. A subject
    /// record whose value is not a number cannot say which tokens it reaches: it is read as
    /// revoking all of them ([`RedisRevocation`] fails on it too). A record gone since `SCAN`
    /// listed it has expired; one without expiry is kept as long as Redis keeps it.
    async fn read_records(
        &self,
        conn: &mut MultiplexedConnection,
        records: Vec<(Vec<u8>, Record)>,
    ) -> Result<(), RevocationError> {
        // A record of another type than a string (another tool's key under the prefix) makes
        // its `GET` fail: that answer is read as "not a number" below, never as a failed
        // snapshot.
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for (key, _) in &records {
            pipe.cmd("EXPIRETIME").arg(key).get(key);
        }
        let values: Vec<Value> = pipe.query_async(conn).await.map_err(err)?;
        for ((_, record), pair) in records.into_iter().zip(values.chunks(2)) {
            let [expiry, value] = pair else { continue };
            let kept = match redis::from_redis_value_ref::<i64>(expiry) {
                Ok(-1) => MAX_EXAT,
                Ok(at) if at > 0 => at.unsigned_abs(),
                // -2: gone since SCAN listed it (expired or deleted).
                _ => continue,
            };
            match record {
                Record::Jti(jti) => self.shared.local.insert_jti(&jti, kept),
                Record::Subject { iss, sub } => {
                    let before = match redis::from_redis_value_ref::<Option<u64>>(value) {
                        Ok(Some(before)) => before,
                        Ok(None) => continue,
                        Err(_) => {
                            #[cfg(feature = "tracing")]
                            tracing::warn!(
                                "a subject revocation record holds no number; every token of \
                                 the subject counts as revoked"
                            );
                            MAX_NOT_BEFORE
                        }
                    };
                    self.shared.local.insert_subject(&iss, &sub, before, kept);
                }
            }
        }
        Ok(())
    }

    /// Redis lost entries, or this server cannot tell that it did not: the copy is kept
    /// (entries only leave it by expiry), the epoch adopted, the restore marker held, every
    /// entry still in force written back (subjects first: one reaches every token of a
    /// user), and, once no server is writing back any more (the marker is gone), a new
    /// snapshot taken, which brings in what the others wrote back. Until then the feed is not
    /// confirmed, and `use_once` and `is_revoked_consistent` fail.
    async fn restore(&mut self, conn: &mut MultiplexedConnection) -> Result<(), RevocationError> {
        self.shared.restoring.store(true, Ordering::Release);
        self.adopt_epoch(conn).await?;
        self.hold(conn).await?;
        let (jtis, subjects) = self.shared.local.live();
        #[cfg(feature = "tracing")]
        tracing::warn!(
            entries = jtis.len() + subjects.len(),
            "the Redis behind the revocation feed lost entries, or they were trimmed unread; \
             writing back the entries this server holds"
        );
        let prefix = self.source.prefix.clone();
        let (stream, counter) = (keys::stream(&prefix), keys::seq(&prefix));
        let revoke_jti = redis::Script::new(keys::REVOKE_JTI);
        let revoke_subject = redis::Script::new(keys::REVOKE_SUBJECT);
        let hold = redis::Script::new(keys::HOLD);
        // Loaded once (a restarted Redis has no scripts), then called by hash.
        let mut load = redis::pipe();
        for script in [keys::REVOKE_JTI, keys::REVOKE_SUBJECT, keys::HOLD] {
            load.cmd("SCRIPT").arg("LOAD").arg(script).ignore();
        }
        load.query_async::<()>(conn).await.map_err(err)?;
        let now = unix_now();
        let exat = |kept: u64| kept.clamp(now + 1, MAX_EXAT);
        let window = super::trim_window_ms();
        // Each batch holds the marker first, so it is there while the batch is written.
        let batch = || {
            let mut pipe = redis::pipe();
            pipe.cmd("EVALSHA")
                .arg(hold.get_hash())
                .arg(1)
                .arg(keys::restoring(&prefix))
                .arg(hold_ms())
                .ignore();
            pipe
        };
        for chunk in subjects.chunks(REPUBLISH_BATCH) {
            let mut pipe = batch();
            for (iss, sub, before, kept) in chunk {
                // The key of "no iss" is the key of the empty `iss`.
                pipe.cmd("EVALSHA")
                    .arg(revoke_subject.get_hash())
                    .arg(3)
                    .arg(self.source.sub_key(Some(iss), sub))
                    .arg(&stream)
                    .arg(&counter)
                    .arg((*before).min(MAX_NOT_BEFORE))
                    .arg(exat(*kept))
                    .arg(window)
                    .arg(iss)
                    .arg(sub)
                    .ignore();
            }
            pipe.query_async::<()>(conn).await.map_err(err)?;
        }
        for chunk in jtis.chunks(REPUBLISH_BATCH) {
            let mut pipe = batch();
            for (jti, kept) in chunk {
                pipe.cmd("EVALSHA")
                    .arg(revoke_jti.get_hash())
                    .arg(3)
                    .arg(self.source.jti_key(jti))
                    .arg(&stream)
                    .arg(&counter)
                    .arg(jti)
                    .arg(exat(*kept))
                    .arg(window)
                    .ignore();
            }
            pipe.query_async::<()>(conn).await.map_err(err)?;
        }
        self.await_restores(conn).await?;
        self.snapshot(conn).await?;
        self.shared.restoring.store(false, Ordering::Release);
        Ok(())
    }
}

/// [`RESTORE_HOLD`] in milliseconds.
fn hold_ms() -> u64 {
    u64::try_from(RESTORE_HOLD.as_millis()).unwrap_or(u64::MAX)
}

/// Warns when Redis may evict keys under memory pressure: every record has an expiry, so
/// any policy but `noeviction` may drop revocations silently. A Redis that does not answer
/// `CONFIG GET` (managed services often refuse it) is not warned about.
#[cfg(feature = "tracing")]
async fn warn_on_eviction(conn: &mut MultiplexedConnection) {
    let policy: Result<(String, String), _> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query_async(conn)
        .await;
    if let Ok((_, policy)) = policy
        && policy != "noeviction"
    {
        tracing::warn!(
            %policy,
            "Redis may evict revocation records under memory pressure; set maxmemory-policy \
             noeviction"
        );
    }
}
