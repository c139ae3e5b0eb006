//! The task that keeps a server's copy in step with Redis: snapshot, stream, and recovery from
//! a Redis that lost its data.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::streams::{StreamId, StreamReadReply};
use redis::{AsyncConnectionConfig, Value};

use super::keys::{self, Record};
use super::{MAX_EXAT, MAX_NOT_BEFORE, RedisRevocation, RevocationError, Shared, err, unix_now};

/// Records read per `SCAN` step and entries per `XREAD`.
const BATCH: usize = 1000;

/// Entries written back per pipeline when a lost Redis is re-seeded.
const REPUBLISH_BATCH: usize = 500;

/// The longest wait for an answer on the feed's connection: beyond the longest blocking read
/// (250 ms), short enough that a silent network is noticed and reconnected within seconds.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long after the last confirmed read the stream is looked at again before it is read:
/// well within the window it is trimmed to (the retention margin, 5 minutes).
const RECHECK_AFTER: Duration = Duration::from_secs(60);

/// The stream id before every entry.
const START: &str = "0-0";

/// What a reconnect finds in Redis.
enum Found {
    /// The same data: the stream holds every entry after the last one applied.
    Intact,
    /// The same data, but entries after the last one applied were trimmed: read the records.
    Trimmed,
    /// Data lost: the epoch changed or is missing, or the stream went backwards.
    Lost,
}

/// What `XINFO STREAM` tells of the stream.
struct Stream {
    /// `last-generated-id`, as Redis wrote it.
    generated: String,
    /// The first entry's id, if the stream has one.
    first: Option<(u64, u64)>,
}

/// One follower: its connection, the epoch it follows and the last stream id it applied.
pub(super) struct Feed {
    source: RedisRevocation,
    shared: Arc<Shared>,
    conn: Option<MultiplexedConnection>,
    epoch: String,
    last_id: String,
    /// When the last read that confirmed the feed was sent.
    confirmed_at: Instant,
    /// A re-seed began and has not finished: it is started over after a reconnect (the epoch
    /// already matches by then, so nothing else would tell).
    reseeding: bool,
}

impl Feed {
    /// Connects, adopts the epoch and takes the snapshot.
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
            confirmed_at: Instant::now(),
            reseeding: false,
        };
        let mut conn = feed.connect().await?;
        feed.adopt_epoch(&mut conn).await?;
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

    /// One read of the stream (reconnecting first if needed), applied; or the recovery of a
    /// Redis that lost its data.
    async fn step(&mut self) -> Result<(), RevocationError> {
        // After a reconnect, or a read long past (this process paused, say, with its
        // connection open), entries it has not read may have been trimmed: look first.
        let recheck = self.conn.is_none() || self.confirmed_at.elapsed() > RECHECK_AFTER;
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        if recheck {
            let found = if self.reseeding {
                Found::Lost
            } else {
                self.found(&mut conn).await?
            };
            match found {
                Found::Intact => {}
                Found::Trimmed => self.snapshot(&mut conn).await?,
                Found::Lost => self.reseed(&mut conn).await?,
            }
        }
        let sent = Instant::now();
        let block = u64::try_from(self.shared.block_time().as_millis()).unwrap_or(250);
        // The epoch is read first, in the same round trip: Redis answers it at once, then
        // blocks on the stream.
        let (epoch, reply): (Option<String>, Option<StreamReadReply>) = redis::pipe()
            .get(keys::epoch(&self.source.prefix))
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
        if epoch.as_deref() == Some(self.epoch.as_str()) {
            let mut read = 0;
            for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
                self.apply(&entry);
                self.last_id = entry.id;
                read += 1;
            }
            // A full batch may have left entries written before `sent` unread: the next read
            // (at once: they are there) confirms.
            if read < BATCH {
                self.confirm(sent);
            }
        } else {
            self.reseed(&mut conn).await?;
        }
        self.conn = Some(conn);
        Ok(())
    }

    /// Records that every revocation written before `at` is applied.
    fn confirm(&mut self, at: Instant) {
        self.confirmed_at = at;
        self.shared.confirm(at);
    }

    /// Applies one stream entry; one this version does not know is skipped.
    fn apply(&self, entry: &StreamId) {
        let until = entry.get::<u64>("until");
        match (entry.get::<String>("t").as_deref(), until) {
            (Some("j"), Some(until)) => {
                if let Some(jti) = entry.get::<String>("jti") {
                    self.shared.local.insert_jti(&jti, until);
                }
            }
            (Some("s"), Some(until)) => {
                if let (Some(iss), Some(sub), Some(before)) = (
                    entry.get::<String>("iss"),
                    entry.get::<String>("sub"),
                    entry.get::<u64>("before"),
                ) {
                    self.shared.local.insert_subject(&iss, &sub, before, until);
                }
            }
            _ => {}
        }
    }

    /// Sets the epoch if Redis has none, and follows the one in place.
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
            .arg(fresh)
            .invoke_async(conn)
            .await
            .map_err(err)?;
        Ok(())
    }

    /// What a reconnect finds: the same epoch, and a stream that still holds every entry
    /// after the last one applied. Trimming removes the oldest entries, so they are all there
    /// when the stream's first entry is not past the last one applied, or when the stream is
    /// empty and nothing was added since. A first entry past it may follow it directly or
    /// follow trimmed entries; no reply tells the two apart, so that counts as trimmed (a
    /// snapshot too many, after a reconnect that followed minutes without revocations).
    async fn found(&self, conn: &mut MultiplexedConnection) -> Result<Found, RevocationError> {
        let epoch: Option<String> = redis::cmd("GET")
            .arg(keys::epoch(&self.source.prefix))
            .query_async(conn)
            .await
            .map_err(err)?;
        if epoch.as_deref() != Some(self.epoch.as_str()) {
            return Ok(Found::Lost);
        }
        let last = parse_id(&self.last_id).unwrap_or((0, 0));
        let Some(stream) = self.stream(conn).await? else {
            return Ok(if self.last_id == START {
                Found::Intact
            } else {
                Found::Lost
            });
        };
        let generated = parse_id(&stream.generated).unwrap_or((u64::MAX, u64::MAX));
        Ok(match stream.first {
            _ if generated < last => Found::Lost,
            Some(first) if first <= last => Found::Intact,
            None if generated == last => Found::Intact,
            _ => Found::Trimmed,
        })
    }

    /// The stream's last generated id and first entry (`XINFO STREAM`), or `None` when there
    /// is no stream.
    async fn stream(
        &self,
        conn: &mut MultiplexedConnection,
    ) -> Result<Option<Stream>, RevocationError> {
        let key = keys::stream(&self.source.prefix);
        let exists: bool = redis::cmd("EXISTS")
            .arg(&key)
            .query_async(conn)
            .await
            .map_err(err)?;
        if !exists {
            return Ok(None);
        }
        let info: HashMap<String, Value> = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(&key)
            .query_async(conn)
            .await
            .map_err(err)?;
        let generated = info
            .get("last-generated-id")
            .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
            .ok_or_else(|| RevocationError("XINFO STREAM without last-generated-id".into()))?;
        let first = info
            .get("first-entry")
            .and_then(|v| redis::from_redis_value_ref::<Option<(String, Value)>>(v).ok())
            .flatten()
            .and_then(|(id, _)| parse_id(&id));
        Ok(Some(Stream { generated, first }))
    }

    /// Reads the stream's last generated id, then every record under the prefix, into the copy; the
    /// feed resumes after that id. Everything written before the id was read is a record by
    /// then (a record and its stream entry are written by one script).
    async fn snapshot(&mut self, conn: &mut MultiplexedConnection) -> Result<(), RevocationError> {
        let started = Instant::now();
        let prefix = self.source.prefix.clone();
        // The last id ever generated, not the last entry's: the entries of a stream trimmed
        // empty are all records by now.
        let last_id = self
            .stream(conn)
            .await?
            .map_or_else(|| START.into(), |s| s.generated);
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
        self.confirm(started);
        Ok(())
    }

    /// Reads the value and expiry of each record into the copy. A record gone since `SCAN`
    /// listed it has expired; one without expiry is kept as long as Redis keeps it.
    async fn read_records(
        &self,
        conn: &mut MultiplexedConnection,
        records: Vec<(Vec<u8>, Record)>,
    ) -> Result<(), RevocationError> {
        let mut pipe = redis::pipe();
        for (key, _) in &records {
            pipe.get(key).cmd("EXPIRETIME").arg(key);
        }
        let values: Vec<Value> = pipe.query_async(conn).await.map_err(err)?;
        for ((_, record), pair) in records.into_iter().zip(values.chunks(2)) {
            let [value, expiry] = pair else { continue };
            let Ok(Some(value)) = redis::from_redis_value_ref::<Option<u64>>(value) else {
                continue;
            };
            let kept = match redis::from_redis_value_ref::<i64>(expiry) {
                Ok(-1) => MAX_EXAT,
                Ok(at) if at > 0 => at.unsigned_abs(),
                _ => continue,
            };
            match record {
                Record::Jti(jti) => self.shared.local.insert_jti(&jti, kept),
                Record::Subject { iss, sub } => {
                    self.shared.local.insert_subject(&iss, &sub, value, kept);
                }
            }
        }
        Ok(())
    }

    /// Redis lost revocations (restarted empty, flushed, restored from an older backup): the
    /// copy is kept, the epoch adopted, every entry still in force written back, and a new
    /// snapshot taken, which brings in what other servers wrote back. The feed is confirmed
    /// only once that is done.
    async fn reseed(&mut self, conn: &mut MultiplexedConnection) -> Result<(), RevocationError> {
        self.reseeding = true;
        self.adopt_epoch(conn).await?;
        let (jtis, subjects) = self.shared.local.live();
        #[cfg(feature = "tracing")]
        tracing::warn!(
            entries = jtis.len() + subjects.len(),
            "the Redis behind the revocation feed lost its data; writing back the entries this server holds"
        );
        let prefix = self.source.prefix.clone();
        let stream = keys::stream(&prefix);
        let now = unix_now();
        let exat = |kept: u64| kept.clamp(now + 1, MAX_EXAT);
        for chunk in jtis.chunks(REPUBLISH_BATCH) {
            let mut pipe = redis::pipe();
            for (jti, kept) in chunk {
                pipe.cmd("EVAL")
                    .arg(keys::REVOKE_JTI)
                    .arg(2)
                    .arg(self.source.jti_key(jti))
                    .arg(&stream)
                    .arg(jti)
                    .arg(exat(*kept))
                    .arg(super::trim_below())
                    .ignore();
            }
            pipe.query_async::<()>(conn).await.map_err(err)?;
        }
        for chunk in subjects.chunks(REPUBLISH_BATCH) {
            let mut pipe = redis::pipe();
            for (iss, sub, before, kept) in chunk {
                // The key of "no iss" is the key of the empty `iss`.
                pipe.cmd("EVAL")
                    .arg(keys::REVOKE_SUBJECT)
                    .arg(2)
                    .arg(self.source.sub_key(Some(iss), sub))
                    .arg(&stream)
                    .arg((*before).min(MAX_NOT_BEFORE))
                    .arg(exat(*kept))
                    .arg(super::trim_below())
                    .arg(iss)
                    .arg(sub)
                    .ignore();
            }
            pipe.query_async::<()>(conn).await.map_err(err)?;
        }
        self.snapshot(conn).await?;
        self.reseeding = false;
        Ok(())
    }
}

/// A stream id `<ms>-<seq>` as a pair that orders like the ids.
fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}
