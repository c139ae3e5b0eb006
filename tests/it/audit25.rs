//! Audit 25: the entry-kept rule (`entry_kept!`, `ENTRY_KEPT`, `DATASET_KEPT`, `USE_ONCE`) of
//! `ReplicatedRevocation`, attacked for spurious failures, restore loops and wedges between
//! the feed and the guard, against real `redis-server` processes.
//!
//! Restores are counted by Redis's `SCAN` calls (`INFO commandstats`): only a snapshot scans,
//! and with a few records one snapshot is one `SCAN`. `regression_*` tests failed on the
//! audited snapshot and pass since their fix; `holds_*` tests pin attacks that were refused.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::redis_server::RedisServer;
use common::replica::*;
use common::*;
use tower_jwt_auth::revocation::{ReplicatedRevocation, Revocation, RevocationStore};

/// A deadline against a hang, not a latency check.
const PATIENCE: Duration = Duration::from_secs(15);

/// How many `SCAN`s Redis has answered since its start: one per snapshot here.
async fn scans(redis: &RedisServer) -> u64 {
    let mut conn = redis.inspect().await;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_scan:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Writes what `REVOKE_JTI` writes for `jti` (record, counter + 1, a `j` entry numbered so),
/// with an entry id `age` seconds behind Redis's clock: an entry written that long ago, which
/// the next write's `MINID` trim removes when `age` exceeds the window.
async fn revoke_aged(redis: &RedisServer, jti: &str, exp: u64, age: u64) {
    let mut conn = redis.inspect().await;
    redis::cmd("EVAL")
        .arg(
            r"
redis.call('SET', KEYS[1], 1, 'EXAT', ARGV[2])
local seq = redis.call('INCR', KEYS[3])
local id = string.format('%d-%d', (tonumber(redis.call('TIME')[1]) - tonumber(ARGV[3])) * 1000, seq)
redis.call('XADD', KEYS[2], id, 'seq', seq, 't', 'j', 'jti', ARGV[1], 'until', ARGV[2])
return seq
",
        )
        .arg(3)
        .arg(format!("jwt:jti:{jti}"))
        .arg("jwt:feed")
        .arg(COUNTER)
        .arg(jti)
        .arg(exp)
        .arg(age)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
}

/// Waits until `store`'s `use_once` answers (on fresh `jti`s), up to `PATIENCE`; the last
/// error otherwise.
async fn use_once_answers(store: &Arc<ReplicatedRevocation>, tag: &str) -> Result<(), String> {
    let exp = now() + 3600;
    let last = Arc::new(std::sync::Mutex::new(String::new()));
    let n = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let ok = becomes_true(PATIENCE, || {
        let (store, last, n) = (store.clone(), last.clone(), n.clone());
        let tag = tag.to_owned();
        async move {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match store.use_once(&format!("{tag}-{i}"), exp).await {
                Ok(_) => true,
                Err(e) => {
                    *last.lock().unwrap() = e.to_string();
                    false
                }
            }
        }
    })
    .await;
    if ok {
        Ok(())
    } else {
        Err(last.lock().unwrap().clone())
    }
}

/// Waits `wait` (a second here: four blocking reads of every feed) and says how many
/// snapshots Redis served meanwhile.
async fn snapshots_during(redis: &RedisServer, wait: Duration) -> u64 {
    let before = scans(redis).await;
    // A window of observation, not a wait for a signal: the test asserts that nothing happens.
    tokio::time::sleep(wait).await;
    scans(redis).await - before
}

/// After one restore, `use_once` on `answering` answers again, no snapshot follows in the next
/// 4 s (a feed restoring again and again would take them), and, for the message, what a plain
/// check on `other` answers.
async fn answers_after_one_restore(
    redis: &RedisServer,
    answering: &Arc<ReplicatedRevocation>,
    other: &Arc<ReplicatedRevocation>,
    what: &str,
) {
    let answered = use_once_answers(answering, "after").await;
    let looping = snapshots_during(redis, Duration::from_secs(4)).await;
    let plain = other.is_revoked(jti("never-revoked")).await;
    assert!(
        answered.is_ok(),
        "use_once never answered again {what}: {answered:?}; snapshots in the next 4 s: \
         {looping}; plain is_revoked: {plain:?}"
    );
    assert_eq!(
        looping, 0,
        "the feeds keep taking snapshots (a restore loop) once the restore ended"
    );
}

/// A fresh Redis and two servers on it, caught up: A revoked `r0` … and B spent `u0` … (`spends`
/// of them), and both feeds read every entry.
async fn caught_up_pair(
    revokes: usize,
    spends: usize,
    exp: u64,
) -> (
    RedisServer,
    Arc<ReplicatedRevocation>,
    Arc<ReplicatedRevocation>,
) {
    let redis = RedisServer::start().await;
    let a = replica(&redis).await;
    let b = replica(&redis).await;
    for i in 0..revokes {
        a.revoke(&format!("r{i}"), exp).await.unwrap();
        if i < spends {
            assert!(b.use_once(&format!("u{i}"), exp).await.unwrap());
        }
    }
    assert!(
        restore_ended(&redis, &[&a, &b], PATIENCE).await,
        "setup: both feeds caught up"
    );
    (redis, a, b)
}

// =============================================================================================
// Regressions.
// =============================================================================================

/// Attack (availability): Redis loses the counter key while the stream stays (an eviction
/// under an `allkeys-*` policy, which the crate warns about but runs on; an operator's `DEL`;
/// a tool copying keys). Every feed finds the counter below its `seq` and restores: the
/// snapshot's head is (counter 0, the stream's last id), and that entry carries number n, not
/// 0, so the snapshot must not name it as applied: `ENTRY_KEPT` would answer -1 at every read,
/// the feed restore again and again, renewing the restore marker, and `use_once` and the
/// family check fail on every server until some server revokes a token. What a user would
/// lose: every refresh and DPoP proof fleet-wide on a workload without revocations.
/// Expected: one restore, then `use_once` answers and no more snapshots are taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn regression_a_counter_lost_with_the_stream_kept_costs_one_restore() {
    let exp = now() + 3600;
    let (redis, a, b) = caught_up_pair(5, 5, exp).await;
    let mut conn = redis.inspect().await;
    redis::cmd("DEL")
        .arg(COUNTER)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    answers_after_one_restore(
        &redis,
        &a,
        &b,
        "after the counter was lost (no revocation since)",
    )
    .await;
}

/// Attack (availability): an entry that is not one this version writes lands last in the
/// stream (another tool, or an operator's test `XADD`, under the prefix). `apply` reads it as
/// unaccounted and the feed restores, as designed: its revocation, if any, is in the records.
/// The snapshot's head is then that entry's id, without a `seq` field; named as applied, it
/// would make `entry_kept!` answer -1 at every read (a present entry of another number): a
/// restore on every read, and `use_once` failing on every server until some server revokes a
/// token. What a user would lose: refreshes and DPoP fleet-wide after one foreign entry.
/// Expected: one restore, then `use_once` answers and no more snapshots are taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn regression_a_foreign_last_entry_costs_one_restore() {
    let exp = now() + 3600;
    let (redis, a, b) = caught_up_pair(3, 0, exp).await;
    let mut conn = redis.inspect().await;
    redis::cmd("XADD")
        .arg("jwt:feed")
        .arg("*")
        .arg("note")
        .arg("hello")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    assert!(
        becomes_true(PATIENCE, || async { redis.exists(MARKER).await }).await,
        "setup: the feeds found the change and restore"
    );
    answers_after_one_restore(&redis, &b, &a, "after one foreign entry").await;
}

/// Attack (availability): an operator deletes the stream's last entry (`XDEL`, say to reclaim
/// a large entry; its record stays, so nothing is missing and nothing is written back). The
/// counter stays at n while the last entry is now number n - 1. The feeds that applied entry n
/// find it gone with older entries in front and restore (right: it may be a rewind); the
/// snapshot's head pairs the counter (n) with the last id (entry n - 1), which must not be
/// named as applied: `entry_kept!` would answer -1 at every read (an entry present under that
/// id with another number), a restore loop with every call failing closed once the feed is
/// past its staleness bound. What a user would lose: every authenticated request on every
/// server. Expected: one restore, then `use_once` answers and no more snapshots are taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn regression_an_xdel_of_the_last_entry_costs_one_restore() {
    let exp = now() + 3600;
    let (redis, a, b) = caught_up_pair(3, 0, exp).await;
    let mut conn = redis.inspect().await;
    let last: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
        .arg("jwt:feed")
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    redis::cmd("XDEL")
        .arg("jwt:feed")
        .arg(&last.ids[0].id)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    assert!(
        becomes_true(PATIENCE, || async { redis.exists(MARKER).await }).await,
        "setup: the feeds found the change and restore"
    );
    answers_after_one_restore(&redis, &b, &a, "after the last entry was deleted").await;
}

// =============================================================================================
// Holds.
// =============================================================================================

/// Attack (availability): an operator empties the stream (`XTRIM MAXLEN 0`) on a running
/// fleet. Every applied entry is gone and the stream is empty, so `entry_kept!` answers -1 and
/// every feed restores; the snapshot's head is (counter, none), so `applied` becomes
/// (counter, no entry). What a user would lose: refreshes failing for good, or a restore loop.
/// Expected: `use_once` answers again, then no more snapshots, and writes and spends on every
/// server keep answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_an_operator_xtrim_maxlen_0_restores_once_then_works() {
    let exp = now() + 3600;
    let (redis, a, b) = caught_up_pair(5, 5, exp).await;
    let mut conn = redis.inspect().await;
    redis::cmd("XTRIM")
        .arg("jwt:feed")
        .arg("MAXLEN")
        .arg(0)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    use_once_answers(&a, "pa").await.unwrap();
    use_once_answers(&b, "pb").await.unwrap();
    assert!(restore_ended(&redis, &[&a, &b], PATIENCE).await);
    assert_eq!(
        snapshots_during(&redis, Duration::from_secs(1)).await,
        0,
        "restore loop"
    );
    let mut errors = Vec::new();
    for i in 0..30 {
        if let Err(e) = a.revoke(&format!("x{i}"), exp).await {
            errors.push(format!("revoke x{i}: {e}"));
        }
        if let Err(e) = b.use_once(&format!("y{i}"), exp).await {
            errors.push(format!("b y{i}: {e}"));
        }
        if let Err(e) = a.use_once(&format!("z{i}"), exp).await {
            errors.push(format!("a z{i}: {e}"));
        }
    }
    assert!(errors.is_empty(), "spurious: {errors:?}");
    assert_eq!(
        snapshots_during(&redis, Duration::from_secs(1)).await,
        0,
        "restore loop"
    );
}

/// Attack (availability): a fleet that starts on a stream of 150 entries written ten minutes
/// ago (older than the trim window: the next writes' `MINID` trims them, the applied entry of
/// every server among them), then steady writes from three servers: revocations on one,
/// spends of the same tokens on two. The oldest entries and each server's applied entry go
/// while newer ones exist. What a user would lose: refreshes failing after every quiet period,
/// or restores under steady load. Expected: no error, each token spent once, and no snapshot
/// after the starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_steady_writes_after_a_quiet_period_never_restore_nor_fail() {
    let exp = now() + 3600;
    let redis = RedisServer::start().await;
    for i in 0..150 {
        revoke_aged(&redis, &format!("old{i}"), exp, 600).await;
    }
    let a = replica(&redis).await;
    let b = replica(&redis).await;
    let w = replica(&redis).await;
    let started = scans(&redis).await;
    let writer = {
        let w = w.clone();
        tokio::spawn(async move {
            let mut errors = Vec::new();
            for i in 0..150 {
                if let Err(e) = w.revoke(&format!("r{i}"), exp).await {
                    errors.push(e.to_string());
                }
                if let Err(e) = w.is_revoked_consistent(jti(&format!("old{i}"))).await {
                    errors.push(format!("family old{i}: {e}"));
                }
            }
            errors
        })
    };
    let (ta, tb) = (
        spend_all(a.clone(), 150, exp),
        spend_all(b.clone(), 150, exp),
    );
    let (wa, ea) = ta.await.unwrap();
    let (wb, eb) = tb.await.unwrap();
    let we = writer.await.unwrap();
    let len: u64 = redis::cmd("XLEN")
        .arg("jwt:feed")
        .query_async(&mut redis.inspect().await)
        .await
        .unwrap();
    assert!(len < 450, "setup: old entries trimmed ({len} left)");
    assert!(
        we.is_empty() && ea.is_empty() && eb.is_empty(),
        "spurious: {we:?} {ea:?} {eb:?}"
    );
    let mut all: Vec<_> = wa.iter().chain(wb.iter()).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..150).collect::<Vec<_>>(), "each token spent once");
    assert_eq!(
        scans(&redis).await,
        started,
        "a restore ran under steady writes"
    );
}

/// Attack (availability): Redis is flushed on a running fleet; the servers restore it (a new
/// epoch, `w` entries, `applied` reset to the restored head). What a user would lose: a
/// restore that never settles (each `w` entry, or the restored head, taken for another loss).
/// Expected: once the restore ended, no snapshot in a second, and spends answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_a_flush_restores_then_settles() {
    let exp = now() + 3600;
    let redis = RedisServer::start().await;
    let a = replica(&redis).await;
    let b = replica(&redis).await;
    let c = replica(&redis).await;
    for i in 0..20 {
        a.revoke(&format!("r{i}"), exp).await.unwrap();
        assert!(b.use_once(&format!("u{i}"), exp).await.unwrap());
        assert!(c.use_once(&format!("v{i}"), exp).await.unwrap());
    }
    redis.flushall().await;
    assert!(restore_ended(&redis, &[&a, &b, &c], PATIENCE).await);
    assert!(written_back(&redis).await >= 60, "setup: written back");
    assert_eq!(
        snapshots_during(&redis, Duration::from_secs(1)).await,
        0,
        "restore loop after a flush"
    );
    for i in 0..20 {
        assert!(!a.use_once(&format!("v{i}"), exp).await.unwrap(), "v{i}");
        assert!(c.use_once(&format!("w{i}"), exp).await.unwrap(), "w{i}");
    }
}

/// Attack (availability): an operator empties the stream while the fleet is restoring (a
/// large record set, so the snapshot takes a while), and a server revokes meanwhile: the
/// restored head may name an entry gone by the time the feed resumes. What a user would lose:
/// refreshes failing for good, or a restore loop. Expected: `use_once` answers on every
/// server, and the snapshots stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_an_xtrim_during_a_restore_settles() {
    let exp = now() + 3600;
    let redis = RedisServer::start().await;
    seed_records(&redis, "bulk", 200_000, exp).await;
    let a = replica(&redis).await;
    let b = replica(&redis).await;
    a.revoke("r0", exp).await.unwrap();
    assert!(restore_ended(&redis, &[&a, &b], PATIENCE).await, "setup");
    let mut conn = redis.inspect().await;
    let trim = |mut conn: redis::aio::MultiplexedConnection| async move {
        redis::cmd("XTRIM")
            .arg("jwt:feed")
            .arg("MAXLEN")
            .arg(0)
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
    };
    trim(conn.clone()).await;
    assert!(
        becomes_true(PATIENCE, || async { redis.exists(MARKER).await }).await,
        "setup: a restore is under way"
    );
    a.revoke("r1", exp).await.unwrap();
    trim(conn.clone()).await;
    b.revoke("r2", exp).await.unwrap();
    use_once_answers(&a, "pa").await.unwrap();
    use_once_answers(&b, "pb").await.unwrap();
    assert!(restore_ended(&redis, &[&a, &b], PATIENCE).await);
    assert_eq!(
        snapshots_during(&redis, Duration::from_secs(1)).await,
        0,
        "restore loop"
    );
    let _: () = redis::cmd("PING").query_async(&mut conn).await.unwrap();
}
