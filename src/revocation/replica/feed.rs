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
//! read the records, write back what of the copy they lack (one server at a time, under the
//! restore marker), and follow the feed from a snapshot taken once Redis lacks nothing (see
//! [`Feed::restore`]).
//!
//! A write-back writes records only, with one `w` entry in the stream after each batch (and
//! one as it begins): a follower that reads one cannot account for it as a revocation, and
//! reads the records, as after a loss. Every write-back is thus seen by every server, through
//! the records: one whose snapshot's head was read before a batch's `w` entry reads that
//! entry past its snapshot, one whose head was read after it finds the batch's records in its
//! snapshot. The `incomplete` record, set without expiry with every claim to write back and
//! deleted only by a server whose reading of the records found nothing missing, keeps
//! starting servers waiting through anything that outlasts the marker (a Redis stall, a
//! writer that stopped), until a running server has found the records complete.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::streams::{StreamId, StreamReadReply};
use redis::{AsyncConnectionConfig, Value};

use super::keys::{self, Record};
use super::{
    MAX_EXAT, MAX_NOT_BEFORE, MemoryRevocation, Moment, RedisRevocation, RevocationError, Shared,
    err, unix_now,
};

/// Records read per `SCAN` step and entries per `XREAD`.
const BATCH: usize = 1000;

/// Entries written back per pipeline when a lost Redis is restored: one pipeline of scripts
/// runs in a few tens of milliseconds, far within [`RESPONSE_TIMEOUT`] even on a loaded Redis,
/// and a pipeline cut short costs at most this many entries sent twice.
const REPUBLISH_BATCH: usize = 1000;

/// The longest wait for an answer on the feed's connection: beyond the longest blocking read
/// (250 ms), short enough that a silent network is noticed and reconnected within seconds.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The connection timeout of the feed's connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The first pause of the feed after an error.
const MIN_BACKOFF: Duration = Duration::from_millis(50);

/// The longest pause between two attempts of the feed after an error.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The restore marker's hold: how long it stays past the last sign of a restore (a new epoch,
/// a loss found, a batch of records read or written back), and how long an owner's claim
/// runs past its last batch.
///
/// A new epoch comes with the marker, which must outlast the time a running server takes to
/// find the loss once Redis answers and say so (`keep`): at worst the end of a backoff
/// ([`MAX_BACKOFF`], 1 s), a connection ([`CONNECT_TIMEOUT`], 1 s), one blocking read (250 ms;
/// a server waiting for the marker to go, at the end of a restore, reads the marker and the
/// epoch every [`POLL`] instead) and one round trip: 2.25 s and a round trip, under 3 s. A
/// server reading records or writing back renews it before each batch, and a batch ends within
/// [`RESPONSE_TIMEOUT`] (2 s). An owner's claim runs one hold past its last batch and the key
/// one hold more (6 s in all), which outlasts a batch that timed out and the reconnect before
/// the owner renews its claim and resumes: [`RESPONSE_TIMEOUT`] + [`MAX_BACKOFF`] +
/// [`CONNECT_TIMEOUT`] and a round trip, 4 s and a round trip. A claim that lapses (the owner
/// stopped) is taken over by a waiting server within [`POLL`] of its end, while the key is
/// still there.
const RESTORE_HOLD: Duration = Duration::from_secs(3);

/// How often a server waiting for another's write-back, or for the marker to go, looks at the
/// marker (and, waiting for it to go, at the epoch).
const POLL: Duration = Duration::from_millis(100);

/// How long [`Feed::start`] waits for a restore under way before it gives up: a restore of a
/// few million entries takes seconds, and a marker renewed for longer than this means a
/// restore that does not end (see [`Feed::restore`]), which no new server can wait out.
const START_WAIT: Duration = Duration::from_secs(60);

/// The stream id before every entry.
const START: &str = "0-0";

/// One follower: its connection, the epoch it follows, the last stream id and the last
/// sequence number it applied, the token that names it as the restore marker's owner, its
/// write-back under way, if any, and its backoff.
pub(super) struct Feed {
    source: RedisRevocation,
    shared: Arc<Shared>,
    conn: Option<MultiplexedConnection>,
    epoch: String,
    last_id: String,
    seq: u64,
    /// The id of the entry numbered `seq`, when the stream is known to hold it (empty
    /// otherwise): with `seq`, what `use_once` and the family check ask Redis to hold.
    applied_id: String,
    token: String,
    pending: Option<WriteBack>,
    /// The pause before the next attempt after an error: 50 ms after Redis last answered,
    /// doubling up to [`MAX_BACKOFF`].
    backoff: Duration,
}

/// A write-back under way: the entries Redis lacked, and how many of them Redis acknowledged.
/// Cut short by an error, it resumes at the first unacknowledged batch while this server still
/// owns the marker (writing an entry twice changes nothing: every value only rises).
struct WriteBack {
    entries: Vec<Entry>,
    done: usize,
}

/// An entry of the copy to write back, with the instant it is kept until.
enum Entry {
    Subject {
        iss: String,
        sub: String,
        before: u64,
        kept: u64,
    },
    Jti {
        jti: String,
        kept: u64,
    },
}

/// What `MARKER` answered (see [`keys::MARKER`]).
#[derive(Debug, PartialEq, Eq)]
enum Marker {
    /// This server owns the marker.
    Mine,
    /// A restore is under way and nobody writes back.
    Free,
    /// Another server owns the marker.
    Other,
    /// This server does not own the marker (any more).
    Lost,
    /// Redis holds another epoch, or none.
    Epoch,
    /// The `incomplete` record is deleted (`done`).
    Done,
}

/// What a wait for the end of a restore found (see [`Feed::await_marker_gone`]).
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The marker and the `incomplete` record are gone.
    Gone,
    /// The marker is gone and the `incomplete` record is present: a write-back was cut short.
    Incomplete,
    /// Redis holds another epoch than the one this server follows, or none.
    Epoch,
}

/// What a snapshot read: the counter and the stream's last id read before the records, and,
/// for a restore, the expiry and "not before" of every record Redis holds.
struct Scan {
    counter: u64,
    last_id: String,
    /// `last_id` when that entry is the one numbered `counter` (empty otherwise: the stream
    /// is empty, or its last entry has another number, as when the counter was deleted).
    applied_id: String,
    started: Moment,
    seen: HashMap<Record, (u64, u64)>,
}

impl Feed {
    /// Connects, adopts the epoch, waits out any restore in progress and takes the snapshot.
    ///
    /// A server that starts while the marker is held (Redis is new, or was found empty or
    /// rewound and the running servers are writing back what they hold), or while the
    /// `incomplete` record is present (a write-back began and no running server has found the
    /// records complete since), waits until both are gone: a snapshot taken earlier could lack
    /// revocations that are on their way back. A snapshot during which the epoch changed or
    /// either key appeared is discarded the same way, and the server waits again, all within
    /// [`START_WAIT`].
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
            applied_id: String::new(),
            token: random_hex()?,
            pending: None,
            backoff: MIN_BACKOFF,
        };
        let mut conn = feed.connect().await?;
        #[cfg(feature = "tracing")]
        warn_on_eviction(&mut conn).await;
        let deadline = tokio::time::Instant::now() + START_WAIT;
        let scan = loop {
            let gone = if tokio::time::Instant::now() < deadline {
                feed.adopt_epoch(&mut conn, false).await?;
                tokio::time::timeout_at(deadline, feed.await_marker_gone(&mut conn, false)).await
            } else {
                Ok(Ok(End::Epoch))
            };
            match gone {
                Ok(Ok(End::Gone)) => {}
                // The epoch changed while waiting: adopt the new one and wait again.
                Ok(Ok(_)) if tokio::time::Instant::now() < deadline => continue,
                Ok(Err(e)) => return Err(e),
                Ok(Ok(_)) | Err(_) => return Err(feed.unfinished(&mut conn).await),
            }
            // `None`: Redis lost its data or a restore began while the snapshot ran, so it
            // may lack what the running servers write back: wait and take another.
            if let Some(scan) = feed.scan(&mut conn, false).await? {
                break scan;
            }
        };
        feed.resume_after(&scan);
        feed.shared.confirm(scan.started);
        feed.conn = Some(conn);
        Ok(feed)
    }

    /// Follows the stream until the task is aborted, reconnecting after any error with a
    /// backoff from 50 ms to 1 s (50 ms again once Redis answers).
    pub(super) async fn run(mut self) {
        loop {
            match self.step().await {
                Ok(()) => self.backoff = MIN_BACKOFF,
                Err(_e) => {
                    #[cfg(feature = "tracing")]
                    tracing::warn!(error = %_e, "revocation feed interrupted; reconnecting");
                    self.conn = None;
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// The error of a start that waited [`START_WAIT`] in vain, naming what it waited for.
    async fn unfinished(&self, conn: &mut MultiplexedConnection) -> RevocationError {
        let incomplete = &self.shared.keys.incomplete;
        let cut_short: bool = redis::cmd("EXISTS")
            .arg(incomplete)
            .query_async(conn)
            .await
            .unwrap_or(false);
        if cut_short {
            return RevocationError(format!(
                "redis may lack revocations: a restore's write-back began and no running server \
                 has found the records complete since ({incomplete} still set after \
                 {START_WAIT:?}); a running server that holds the revocations finishes the \
                 restore and deletes it; if no server holds them any more, `DEL {incomplete}` \
                 accepts their loss and lets servers start"
            ));
        }
        RevocationError(format!(
            "redis is being restored by the running servers ({} still held after {:?}); try \
             again later",
            self.shared.keys.restoring, START_WAIT
        ))
    }

    async fn connect(&self) -> Result<MultiplexedConnection, RevocationError> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
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
        // The epoch, the counter, the restore's keys (the marker's time to live: -2 when it
        // is absent) and whether the stream still holds the last entry applied
        // ([`keys::ENTRY_KEPT`], sent whole: a few hundred bytes, and no `NOSCRIPT` to handle
        // inside a pipeline) are read first, in the same round trip: Redis answers them at
        // once, then blocks on the stream. Every entry numbered up to that counter was in the
        // stream before the read began.
        let fixed = &self.shared.keys;
        let applied = self.shared.applied();
        let (epoch, counter, incomplete, marked, entry_kept, reply): (
            Option<String>,
            Option<u64>,
            bool,
            i64,
            i64,
            Option<StreamReadReply>,
        ) = redis::pipe()
            .get(&fixed.epoch)
            .get(&fixed.seq)
            .exists(&fixed.incomplete)
            .cmd("PTTL")
            .arg(&fixed.restoring)
            .cmd("EVAL")
            .arg(keys::ENTRY_KEPT)
            .arg(1)
            .arg(&fixed.stream)
            .arg(applied.seq)
            .arg(&applied.id)
            .cmd("XREAD")
            .arg("BLOCK")
            .arg(block)
            .arg("COUNT")
            .arg(BATCH)
            .arg("STREAMS")
            .arg(&fixed.stream)
            .arg(&self.last_id)
            .query_async(&mut conn)
            .await
            .map_err(err)?;
        let counter = counter.unwrap_or(0);
        // A marker without expiry (no value this crate writes: an operator's `SET`, a tool
        // copying keys without their TTL) is given one hold, as a starting server gives it:
        // while it is there, `use_once` and the family check fail on every server.
        if marked == -1 {
            self.hold_marker(&mut conn).await?;
        }
        let marked = marked != -2;
        // `incomplete` without the marker: a write-back was cut short, and no server is
        // restoring (it came back with Redis's data, from a backup or a replica): the records
        // may lack what this server holds, and no server starts until one found them whole.
        let mut accounted = epoch.as_deref() == Some(self.epoch.as_str())
            && counter >= self.seq
            && entry_kept == 1
            && (marked || !incomplete);
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
        } else {
            // Only now, once the read is accounted for, is the last entry applied what
            // `use_once` and the family check ask Redis to hold.
            self.shared.set_applied(self.seq, &self.applied_id);
            if read < BATCH {
                // A full batch may have left entries written before `sent` unread: the next
                // read (at once: they are there) confirms.
                self.shared.confirm(sent);
            }
        }
        self.conn = Some(conn);
        Ok(())
    }

    /// Applies one stream entry; true when its number is the next one expected and its
    /// revocation is applied. A `w` entry (records written back, see [`keys::WRITTEN_BACK`])
    /// carries no revocation: false, so that the restore reads the records.
    fn apply(&mut self, entry: &StreamId) -> bool {
        let next = entry.get::<u64>("seq") == Some(self.seq + 1);
        if next {
            self.seq += 1;
            self.applied_id.clone_from(&entry.id);
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
            // Records written back: their revocations are in the records only, which the
            // restore reads.
            (Some("w"), _) => return false,
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

    /// Sets the epoch if Redis has none, with the restore marker (claimed by this server when
    /// `owned`: it is restoring and will write back), and follows the one in place. The epoch
    /// is read first and the script, which writes, runs only when there is none, so a server
    /// starting on a Redis at its `maxmemory` that holds every revocation writes nothing.
    async fn adopt_epoch(
        &mut self,
        conn: &mut MultiplexedConnection,
        owned: bool,
    ) -> Result<(), RevocationError> {
        let epoch: Option<String> = redis::cmd("GET")
            .arg(&self.shared.keys.epoch)
            .query_async(conn)
            .await
            .map_err(err)?;
        let epoch = match epoch {
            Some(epoch) => epoch,
            None => keys::ADOPT_EPOCH_SCRIPT
                .key(&self.shared.keys.epoch)
                .key(&self.shared.keys.restoring)
                .key(&self.shared.keys.incomplete)
                .arg(random_hex()?)
                .arg(hold_ms())
                .arg(if owned { self.token.as_str() } else { "" })
                .invoke_async(conn)
                .await
                .map_err(err)?,
        };
        self.shared.follow(&epoch);
        self.epoch = epoch;
        Ok(())
    }

    /// One owner-checked step on the restore marker (`keep`, `take`, `extend`, `release`,
    /// `done`: see [`keys::MARKER`]), under the epoch this server follows.
    async fn marker(
        &self,
        conn: &mut MultiplexedConnection,
        step: &str,
    ) -> Result<Marker, RevocationError> {
        let fixed = &self.shared.keys;
        let answer: String = keys::MARKER_SCRIPT
            .key(&fixed.epoch)
            .key(&fixed.restoring)
            .key(&fixed.incomplete)
            .key(&fixed.stream)
            .key(&fixed.seq)
            .arg(&self.epoch)
            .arg(&self.token)
            .arg(hold_ms())
            .arg(step)
            .arg(super::trim_window_ms())
            .invoke_async(conn)
            .await
            .map_err(err)?;
        Ok(match answer.as_str() {
            "mine" => Marker::Mine,
            "free" => Marker::Free,
            "other" => Marker::Other,
            "epoch" => Marker::Epoch,
            "done" => Marker::Done,
            _ => Marker::Lost,
        })
    }

    /// Waits until the restore marker and the `incomplete` record are gone ([`End::Gone`]), or
    /// until Redis holds another epoch than the one this server follows, or none
    /// ([`End::Epoch`]: Redis lost its data again, and the wait is over). For a restore
    /// (`restoring`), a marker gone while the `incomplete` record stays ends the wait too
    /// ([`End::Incomplete`]: a write-back was cut short, and this server reads the records
    /// again); a starting server waits on (only a running server's restore deletes it, and
    /// the record gets no expiry: see [`Feed::restore`]).
    ///
    /// Reads the marker's time to live, the `incomplete` record and the epoch in one round
    /// trip, at least every [`POLL`]: a server restoring renews the marker, and one waiting in
    /// the tail of a restore must find a second loss within the hold of the marker that comes
    /// with the new epoch. A marker without expiry (no value this crate writes: an operator's
    /// `SET`, a tool copying keys without their TTL) is given one hold, as a restore's `keep`
    /// does, so it never blocks for good.
    async fn await_marker_gone(
        &mut self,
        conn: &mut MultiplexedConnection,
        restoring: bool,
    ) -> Result<End, RevocationError> {
        loop {
            let fixed = &self.shared.keys;
            let (left, incomplete, epoch): (i64, bool, Option<String>) = redis::pipe()
                .cmd("PTTL")
                .arg(&fixed.restoring)
                .exists(&fixed.incomplete)
                .get(&fixed.epoch)
                .query_async(conn)
                .await
                .map_err(err)?;
            self.backoff = MIN_BACKOFF;
            if epoch.as_deref() != Some(self.epoch.as_str()) {
                return Ok(End::Epoch);
            }
            if left == -2 {
                if !incomplete {
                    return Ok(End::Gone);
                }
                if restoring {
                    return Ok(End::Incomplete);
                }
                tokio::time::sleep(POLL).await;
                continue;
            }
            if left == -1 {
                self.hold_marker(conn).await?;
                continue;
            }
            let left = Duration::from_millis(u64::try_from(left).unwrap_or(1).max(1));
            tokio::time::sleep(left.min(POLL)).await;
        }
    }

    /// Gives a restore marker without expiry (no value this crate writes) one hold.
    async fn hold_marker(&self, conn: &mut MultiplexedConnection) -> Result<(), RevocationError> {
        redis::cmd("PEXPIRE")
            .arg(&self.shared.keys.restoring)
            .arg(hold_ms())
            .arg("NX")
            .query_async::<()>(conn)
            .await
            .map_err(err)
    }

    /// For a restore (`restoring`), says that this server is restoring (the marker's `keep`);
    /// false when another server owns the marker or Redis holds another epoch.
    async fn keep(
        &self,
        conn: &mut MultiplexedConnection,
        restoring: bool,
    ) -> Result<bool, RevocationError> {
        if !restoring {
            return Ok(true);
        }
        let state = self.marker(conn, "keep").await?;
        Ok(matches!(state, Marker::Mine | Marker::Free))
    }

    /// Whether a snapshot still reads one dataset: Redis holds the epoch this server follows
    /// and, outside a restore, neither the restore marker nor the `incomplete` record (one that
    /// appeared means the running servers found a loss, and the records may lack what they
    /// will write back).
    fn unchanged(&self, epoch: Option<String>, marked: bool, restoring: bool) -> bool {
        epoch.as_deref() == Some(self.epoch.as_str()) && (restoring || !marked)
    }

    /// Follows the stream from the point `scan` read: after its last id and number.
    fn resume_after(&mut self, scan: &Scan) {
        self.last_id.clone_from(&scan.last_id);
        self.seq = scan.counter;
        self.applied_id.clone_from(&scan.applied_id);
        self.shared.set_applied(self.seq, &self.applied_id);
    }

    /// A snapshot: reads the sequence counter and the stream's last id together (one script,
    /// [`keys::SNAPSHOT_HEAD`]: a write script raises the one and appends to the other
    /// atomically), then every record under the prefix, into the copy. Every revocation
    /// written before the counter was read is a record by then (a record and its stream entry
    /// are written by one script), and every one written after is in the stream past that id;
    /// records written back after it are followed there by a `w` entry, which sends this
    /// server to read the records again.
    ///
    /// The epoch, the marker and the `incomplete` record are read with the counter and again
    /// after the last record: `None` when Redis holds another epoch (it lost its data
    /// meanwhile: the records read may be part of the set) or, outside a restore, when the
    /// marker or the `incomplete` record is present.
    ///
    /// For a restore (`restoring`), it also notes what Redis holds, and says before the
    /// counter is read and before each batch of records that this server is restoring (the
    /// marker's `keep`). It stops, with `None`, as soon as another server owns the marker (a
    /// writer: the records are incomplete until it is done) or Redis holds another epoch.
    async fn scan(
        &mut self,
        conn: &mut MultiplexedConnection,
        restoring: bool,
    ) -> Result<Option<Scan>, RevocationError> {
        if !self.keep(conn, restoring).await? {
            return Ok(None);
        }
        let started = Moment::now();
        let prefix = self.source.prefix.clone();
        let fixed = &self.shared.keys;
        let (counter, last_id, epoch, marked, last_seq): (u64, String, String, u64, u64) =
            keys::SNAPSHOT_HEAD_SCRIPT
                .key(&fixed.seq)
                .key(&fixed.stream)
                .key(&fixed.epoch)
                .key(&fixed.restoring)
                .key(&fixed.incomplete)
                .invoke_async(conn)
                .await
                .map_err(err)?;
        let epoch = Some(epoch).filter(|e| !e.is_empty());
        if !self.unchanged(epoch, marked > 0, restoring) {
            return Ok(None);
        }
        let applied_id = if last_seq == counter {
            last_id.clone()
        } else {
            String::new()
        };
        // A stream trimmed or deleted empty: every entry is a record, and the next one is
        // numbered past the counter, with an id past 0-0.
        let last_id = if last_id.is_empty() {
            START.into()
        } else {
            last_id
        };
        let mut seen = HashMap::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, found): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&fixed.pattern)
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
                self.read_records(conn, records, restoring.then_some(&mut seen))
                    .await?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
            if !self.keep(conn, restoring).await? {
                return Ok(None);
            }
        }
        let (epoch, marked): (Option<String>, u64) = redis::pipe()
            .get(&fixed.epoch)
            .exists(&[&fixed.restoring, &fixed.incomplete])
            .query_async(conn)
            .await
            .map_err(err)?;
        if !self.unchanged(epoch, marked > 0, restoring) {
            return Ok(None);
        }
        Ok(Some(Scan {
            counter,
            last_id,
            applied_id,
            started,
            seen,
        }))
    }

    /// Reads each record into the copy. A `jti` record revokes its `jti` whatever its value,
    /// as [`RedisRevocation`] reads it (`EXISTS`), so only its expiry is read. A subject
    /// record whose value is not a number cannot say which tokens it reaches: it is read as
    /// revoking all of them ([`RedisRevocation`] fails on it too). A record gone since `SCAN`
    /// listed it has expired; one without expiry is kept as long as Redis keeps it. Each
    /// record read is noted in `seen`, if given, with its expiry and "not before" (0 for a
    /// `jti`).
    async fn read_records(
        &self,
        conn: &mut MultiplexedConnection,
        records: Vec<(Vec<u8>, Record)>,
        mut seen: Option<&mut HashMap<Record, (u64, u64)>>,
    ) -> Result<(), RevocationError> {
        // A `jti` record's expiry is all there is to read; a subject's value is read too. A
        // record of another type than a string (another tool's key under the prefix) makes its
        // `GET` fail: that answer is read as "not a number" below, never as a failed snapshot.
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for (key, record) in &records {
            pipe.cmd("EXPIRETIME").arg(key);
            if matches!(record, Record::Subject { .. }) {
                pipe.get(key);
            }
        }
        let values: Vec<Value> = pipe.query_async(conn).await.map_err(err)?;
        let mut values = values.iter();
        for (_, record) in records {
            let Some(expiry) = values.next() else { break };
            let value = match record {
                Record::Subject { .. } => values.next(),
                Record::Jti(_) => None,
            };
            let kept = match redis::from_redis_value_ref::<i64>(expiry) {
                Ok(-1) => MAX_EXAT,
                Ok(at) if at > 0 => at.unsigned_abs(),
                // -2: gone since SCAN listed it (expired or deleted).
                _ => continue,
            };
            match record {
                Record::Jti(jti) => {
                    self.shared.local.insert_jti(&jti, kept);
                    if let Some(seen) = seen.as_deref_mut() {
                        seen.insert(Record::Jti(jti), (kept, 0));
                    }
                }
                Record::Subject { iss, sub } => {
                    let Some(value) = value else { break };
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
                    if let Some(seen) = seen.as_deref_mut() {
                        seen.insert(Record::Subject { iss, sub }, (kept, before));
                    }
                }
            }
        }
        Ok(())
    }

    /// Redis lost entries, or another server wrote records back (a `w` entry), or this server
    /// cannot tell that Redis did not lose any. The copy is kept (entries only leave it by
    /// expiry) and the epoch adopted (or set, with the marker claimed by this server and the
    /// `incomplete` record set). Then, in turn:
    ///
    /// - while another server owns the marker (it writes back), wait;
    /// - read every record (a snapshot; cut short when a writer takes the marker meanwhile);
    /// - if Redis holds every entry of the copy in force, with an expiry and a "not before" as
    ///   late: unless another server has taken the marker since (then wait and read again),
    ///   delete the `incomplete` record and let go of the marker if this server owns it
    ///   (`done`); wait until the marker is gone, and follow the feed from the snapshot. What
    ///   other servers write back after the snapshot's head is followed by a `w` entry past
    ///   it, which brings this server back here. If Redis holds another epoch meanwhile (it
    ///   lost its data again), or the marker went while the `incomplete` record came back (a
    ///   write-back begun since was cut short), start over;
    /// - else take the marker (if another server took it first: wait, then read again), which
    ///   sets the `incomplete` record, write back what Redis lacks (subjects first: one reaches
    ///   every token of a user; by Redis's clock, leaving out what it would drop as expired at
    ///   once), renewing the claim before each batch, let go of it, and read again (after a
    ///   poll, if entries are missing again).
    ///
    /// So one server writes back at a time, and it writes only what Redis lacks: after a
    /// Redis restarted empty, the first writer writes its copy, and the others, whose copies
    /// are the same, find nothing to write. Until the end, the feed is not confirmed, and
    /// `use_once` and `is_revoked_consistent` fail.
    ///
    /// The `incomplete` record is deleted only here, by a server whose reading found nothing
    /// missing while no other server's claim ran: a write-back cut short by anything (a Redis
    /// stall that outlasted the marker, a writer that stopped) keeps it until a running server
    /// has read the records and found nothing of its copy missing, writing back first what
    /// is; every running server restores after a `take` (its `w` entry), so one that holds
    /// what was being written back writes it. It gets no expiry: a lease cannot tell a
    /// stopped writer from a stalled fleet. When no running server is left to finish, servers
    /// do not start (see [`Feed::start`]) until an operator deletes it.
    async fn restore(&mut self, conn: &mut MultiplexedConnection) -> Result<(), RevocationError> {
        if !self.shared.restoring.swap(true, Ordering::AcqRel) {
            #[cfg(feature = "tracing")]
            tracing::warn!(
                "the Redis behind the revocation feed lost entries, or they were trimmed \
                 unread, or a server wrote records back; reading the records, and restoring \
                 Redis from this server's copy"
            );
        }
        // Whether this restore wrote back already: a pass that finds entries missing again
        // waits a poll before it writes them, so a restore never turns into a busy loop.
        let mut wrote = false;
        loop {
            if self.pending.is_some() {
                if self.write_back(conn).await? {
                    self.marker(conn, "release").await?;
                }
                wrote = true;
                // Written back, or the claim was lost: read what Redis holds now.
                continue;
            }
            self.adopt_epoch(conn, true).await?;
            match self.marker(conn, "keep").await? {
                Marker::Mine | Marker::Free => {}
                Marker::Other => {
                    tokio::time::sleep(POLL).await;
                    continue;
                }
                Marker::Lost | Marker::Epoch | Marker::Done => continue,
            }
            let Some(scan) = self.scan(conn, true).await? else {
                tokio::time::sleep(POLL).await;
                continue;
            };
            // Redis's clock decides which entries it can still hold: one kept until its now,
            // or within a second of it, would expire as soon as it is written back (the
            // entries of a server whose clock runs behind Redis's).
            let (redis_now, _): (u64, u64) =
                redis::cmd("TIME").query_async(conn).await.map_err(err)?;
            let missing = missing(&self.shared.local, &scan.seen, redis_now + 1);
            if missing.is_empty() {
                match self.marker(conn, "done").await? {
                    Marker::Done => {}
                    // Another server took the marker since the scan: it writes back.
                    Marker::Other => {
                        tokio::time::sleep(POLL).await;
                        continue;
                    }
                    _ => continue,
                }
                match self.await_marker_gone(conn, true).await? {
                    End::Gone => {}
                    // Redis lost its data again meanwhile, or a write-back begun since was
                    // cut short: read the records again.
                    End::Epoch | End::Incomplete => continue,
                }
                self.resume_after(&scan);
                self.shared.restoring.store(false, Ordering::Release);
                return Ok(());
            }
            if wrote {
                tokio::time::sleep(POLL).await;
            }
            if self.marker(conn, "take").await? == Marker::Mine {
                #[cfg(feature = "tracing")]
                tracing::warn!(
                    entries = missing.len(),
                    "writing back the revocations the Redis behind the feed lacks"
                );
                self.pending = Some(WriteBack {
                    entries: missing,
                    done: 0,
                });
            } else {
                tokio::time::sleep(POLL).await;
            }
        }
    }

    /// Writes back the pending entries, from the first unacknowledged batch, renewing this
    /// server's claim on the marker before each batch. Each entry is written as its record
    /// alone (expiry and "not before" only rise, as a revocation writes them), and each batch
    /// is followed by one `w` entry in the stream (see [`keys::WRITTEN_BACK`]): a stream entry
    /// per record would take a third more memory than the records, and a Redis sized for its
    /// records (`maxmemory`, `noeviction`) would run out part-way and refuse every write,
    /// the marker's included, until records expire. True once Redis acknowledged them all;
    /// false, with the write-back dropped, once the claim is lost (it lapsed and another
    /// server took the marker over, or Redis holds another epoch). An error keeps it pending,
    /// to resume.
    async fn write_back(
        &mut self,
        conn: &mut MultiplexedConnection,
    ) -> Result<bool, RevocationError> {
        let Some(mut pending) = self.pending.take() else {
            return Ok(true);
        };
        match self.write_batches(conn, &mut pending).await {
            Ok(done) => Ok(done),
            Err(e) => {
                self.pending = Some(pending);
                Err(e)
            }
        }
    }

    async fn write_batches(
        &self,
        conn: &mut MultiplexedConnection,
        pending: &mut WriteBack,
    ) -> Result<bool, RevocationError> {
        let fixed = &self.shared.keys;
        // Loaded once per attempt (a restarted Redis has no scripts), then called by hash.
        let mut load = redis::pipe();
        for script in [keys::RESTORE_JTI, keys::RESTORE_SUBJECT, keys::WRITTEN_BACK] {
            load.cmd("SCRIPT").arg("LOAD").arg(script).ignore();
        }
        load.query_async::<()>(conn).await.map_err(err)?;
        let window = super::trim_window_ms();
        while pending.done < pending.entries.len() {
            if self.marker(conn, "extend").await? != Marker::Mine {
                return Ok(false);
            }
            let end = (pending.done + REPUBLISH_BATCH).min(pending.entries.len());
            let now = unix_now();
            let exat = |kept: u64| kept.clamp(now + 1, MAX_EXAT);
            let mut pipe = redis::pipe();
            for entry in &pending.entries[pending.done..end] {
                match entry {
                    Entry::Subject {
                        iss,
                        sub,
                        before,
                        kept,
                    } => {
                        // The key of "no iss" is the key of the empty `iss`.
                        pipe.cmd("EVALSHA")
                            .arg(keys::RESTORE_SUBJECT_SCRIPT.get_hash())
                            .arg(1)
                            .arg(self.source.sub_key(Some(iss), sub))
                            .arg((*before).min(MAX_NOT_BEFORE))
                            .arg(exat(*kept))
                            .ignore();
                    }
                    Entry::Jti { jti, kept } => {
                        pipe.cmd("EVALSHA")
                            .arg(keys::RESTORE_JTI_SCRIPT.get_hash())
                            .arg(1)
                            .arg(self.source.jti_key(jti))
                            .arg(exat(*kept))
                            .ignore();
                    }
                }
            }
            // After the batch's records, on the same connection: Redis applies it after them.
            pipe.cmd("EVALSHA")
                .arg(keys::WRITTEN_BACK_SCRIPT.get_hash())
                .arg(2)
                .arg(&fixed.stream)
                .arg(&fixed.seq)
                .arg(window)
                .arg(end - pending.done)
                .ignore();
            pipe.query_async::<()>(conn).await.map_err(err)?;
            pending.done = end;
        }
        Ok(true)
    }
}

/// The entries of `local` in force that Redis lacks, according to `seen` (what a snapshot
/// read): absent, or held with an earlier expiry or a lower "not before". Subjects first. An
/// entry kept until `until` or earlier (Redis's now and a second, by Redis's clock) is left
/// out: Redis would drop it as expired as soon as it is written.
fn missing(local: &MemoryRevocation, seen: &HashMap<Record, (u64, u64)>, until: u64) -> Vec<Entry> {
    let (jtis, subjects) = local.live();
    let mut missing = Vec::new();
    for (iss, sub, before, kept) in subjects {
        if kept <= until {
            continue;
        }
        let record = Record::Subject { iss, sub };
        let held = seen
            .get(&record)
            .is_some_and(|&(k, b)| k >= kept.min(MAX_EXAT) && b >= before.min(MAX_NOT_BEFORE));
        if !held && let Record::Subject { iss, sub } = record {
            missing.push(Entry::Subject {
                iss,
                sub,
                before,
                kept,
            });
        }
    }
    for (jti, kept) in jtis {
        if kept <= until {
            continue;
        }
        let record = Record::Jti(jti);
        let held = seen
            .get(&record)
            .is_some_and(|&(k, _)| k >= kept.min(MAX_EXAT));
        if !held && let Record::Jti(jti) = record {
            missing.push(Entry::Jti { jti, kept });
        }
    }
    missing
}

/// 16 random bytes in hex: an epoch, or a server's owner token.
fn random_hex() -> Result<String, RevocationError> {
    let mut random = [0u8; 16];
    getrandom::fill(&mut random)
        .map_err(|e| RevocationError(format!("no randomness for the restore marker: {e}")))?;
    Ok(random.iter().map(|b| format!("{b:02x}")).collect())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A copy whose clock runs behind Redis's: what it holds until Redis's now and a second is
    /// never written back, what it holds longer is.
    #[test]
    fn entries_expired_by_redis_clock_are_not_missing() {
        let now = unix_now();
        let local = MemoryRevocation::new().retain_past_expiry(Duration::ZERO);
        local.insert_jti("ends-soon", now + 3);
        local.insert_jti("lasts", now + 60);
        local.insert_subject("", "ends-soon", now, now + 4);
        local.insert_subject("", "lasts", now, now + 60);
        let redis_now = now + 3;
        let names: Vec<String> = missing(&local, &HashMap::new(), redis_now + 1)
            .into_iter()
            .map(|e| match e {
                Entry::Subject { sub, .. } => format!("sub:{sub}"),
                Entry::Jti { jti, .. } => format!("jti:{jti}"),
            })
            .collect();
        assert_eq!(names, ["sub:lasts", "jti:lasts"]);
        // With Redis's clock in step, every entry in force is missing.
        assert_eq!(missing(&local, &HashMap::new(), now + 1).len(), 4);
    }
}
