//! The restore protocol of `ReplicatedRevocation` under attack (the restore marker
//! `<prefix>restoring` with an owner, write-back in batches, servers starting only once the
//! marker is gone), against real `redis-server` processes.
//!
//! `regression_*` tests reproduce defects an outside audit reported; `holds_*` tests pin
//! properties it attacked that held. Waits are polls with a deadline, never fixed sleeps where
//! a condition can be polled.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use common::replica::*;
use common::*;
use tower_jwt_auth::revocation::{RedisRevocation, ReplicatedRevocation, RevocationStore, TokenId};

/// A deadline against a hang, not a latency check.
const PATIENCE: Duration = Duration::from_secs(15);

/// The marker's remaining time to live in ms (-2: absent, -1: no expiry).
async fn marker_pttl(redis: &RedisServer) -> i64 {
    let mut conn = redis.inspect().await;
    redis::cmd("PTTL")
        .arg(MARKER)
        .query_async(&mut conn)
        .await
        .unwrap()
}

/// Waits until every store of `fleet` has finished restoring and the marker is gone.
async fn fleet_restored(redis: &RedisServer, fleet: &[&ReplicatedRevocation]) -> bool {
    restore_ended(redis, fleet, PATIENCE).await
}

// =============================================================================================
// Regressions.
// =============================================================================================

/// Redis loses its data a second time (flushed) while the running server sits in the tail of
/// a restore (it found Redis complete and waits for the `free` marker to go): the running
/// server polls the marker and the epoch together, finds the new epoch within a poll, and
/// restores again; a server starting meanwhile waits for that restore and starts with the
/// whole set: it refuses every revoked `jti` and the logged-out subject, and `use_once` does
/// not grant the spent refresh token again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn regression_a_loss_during_the_restore_tail_never_lets_a_new_server_start_empty() {
    const COPY: usize = 20_000;
    let redis = RedisServer::start().await;
    let exp = now() + 3600;
    seed_records(&redis, "rt", COPY, exp + 301).await;
    let a = replica(&redis).await;
    let t = now();
    a.revoke("revoked-jti", exp).await.unwrap();
    assert!(a.use_once("spent-rt", exp).await.unwrap());
    a.revoke_subject(None, "victim", t + 1, t + 3600)
        .await
        .unwrap();
    let victim = TokenId::new(None, Some("victim-jti"), Some("victim"), Some(t));

    // First loss: A finds it, writes back, lets go of the marker (`free`), reads Redis once
    // more, finds nothing missing and waits for the marker to expire.
    redis.flushall().await;
    let in_tail = becomes_true(PATIENCE, || async {
        marker(&redis).await.as_deref() == Some("free")
            && (0..2700).contains(&marker_pttl(&redis).await)
            && redis.exists("jwt:jti:spent-rt").await
    })
    .await;
    assert!(in_tail, "A never reached the end of its restore");

    // Second loss, then a server starts.
    redis.flushall().await;
    let started = Instant::now();
    let c = replica(&redis).await;
    let start_time = started.elapsed();
    let revoked_jti = revoked(&c, jti("revoked-jti")).await;
    let victim_answer = revoked(&c, victim).await;
    let reuse = c.use_once("spent-rt", exp).await;
    let mut accepted = 0;
    for i in 0..COPY {
        if revoked(&c, jti(&format!("rt-{i}"))).await == Some(false) {
            accepted += 1;
        }
    }
    // How long C kept answering "not revoked" for the last of them.
    let last = format!("rt-{}", COPY - 1);
    let learnt = becomes_true(PATIENCE, || async {
        revoked(&c, jti(&last)).await == Some(true)
    })
    .await;
    let open_for = started.elapsed() - start_time;
    assert!(
        revoked_jti != Some(false) && victim_answer != Some(false) && !matches!(reuse, Ok(true)),
        "a server started {start_time:?} after Redis was emptied a second time, while the \
         running server was in the tail of its first restore, came up with an empty copy: \
         revoked jti -> {revoked_jti:?}, logged-out subject -> {victim_answer:?}, \
         use_once(spent refresh token) -> {reuse:?} (Ok(true) = the spent token is granted \
         again), {accepted} of {COPY} revoked jtis accepted; it answered \"not revoked\" for \
         {open_for:?} after it started (learnt them all: {learnt})"
    );
}

/// As `regression_a_loss_during_the_restore_tail_never_lets_a_new_server_start_empty`, with a
/// crash instead of a flush (a Redis without persistence restarted twice within seconds, the
/// second early in the tail): the running server's poll fails at once, it reconnects within
/// the new marker's hold, and a server starting then holds every revocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn regression_a_crash_during_the_restore_tail_never_lets_a_new_server_start_empty() {
    let mut redis = RedisServer::start().await;
    let a = replica(&redis).await;
    let exp = now() + 3600;
    a.revoke("revoked-jti", exp).await.unwrap();
    assert!(a.use_once("spent-rt", exp).await.unwrap());

    redis.restart().await;
    let in_tail = becomes_true(PATIENCE, || async {
        marker(&redis).await.as_deref() == Some("free")
            && (0..2950).contains(&marker_pttl(&redis).await)
            && redis.exists("jwt:jti:spent-rt").await
    })
    .await;
    assert!(in_tail, "A never reached the end of its restore");

    redis.restart().await;
    let c = replica(&redis).await;
    let revoked_jti = revoked(&c, jti("revoked-jti")).await;
    let reuse = c.use_once("spent-rt", exp).await;
    assert!(
        revoked_jti != Some(false) && !matches!(reuse, Ok(true)),
        "a server started after Redis crashed a second time, while the running server was in \
         the tail of its first restore, came up with an empty copy: revoked jti -> \
         {revoked_jti:?}, use_once(spent refresh token) -> {reuse:?} (Ok(true) = the spent \
         token is granted again)"
    );
}

/// Redis is emptied while a server takes its start snapshot: the snapshot reads the epoch and
/// the marker with the counter and again after its records, so a snapshot cut by a flush is
/// discarded, and `replicate()` returns a server that holds every revocation the running
/// server writes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn regression_a_flush_during_the_start_snapshot_never_starts_a_server_with_part_of_the_set() {
    const COPY: usize = 60_000;
    let redis = RedisServer::start().await;
    seed_records(&redis, "rt", COPY, now() + 3600).await;
    let a = replica(&redis).await;
    assert_eq!(
        revoked(&a, jti(&format!("rt-{}", COPY - 1))).await,
        Some(true)
    );

    let url = redis.url();
    let starting = tokio::spawn(async move {
        RedisRevocation::connect(&url)
            .await
            .unwrap()
            .replicate()
            .await
    });
    // Flush as soon as a connection is reading records (C's start snapshot: A's connections
    // are idle or blocked in XREAD).
    let mut conn = redis.inspect().await;
    let mut flushed = false;
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline && !starting.is_finished() {
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut conn)
            .await
            .unwrap();
        if list.contains("cmd=scan") || list.contains("cmd=expiretime") {
            redis::cmd("FLUSHALL")
                .query_async::<()>(&mut conn)
                .await
                .unwrap();
            flushed = true;
            break;
        }
    }
    assert!(flushed, "never saw the start snapshot");
    let c = Arc::new(starting.await.unwrap().expect("replicate() returned"));
    let returned = Instant::now();
    let mut accepted = 0;
    for i in 0..COPY {
        if revoked(&c, jti(&format!("rt-{i}"))).await == Some(false) {
            accepted += 1;
        }
    }
    // How long C kept answering "not revoked" for the last of them.
    let last = format!("rt-{}", COPY - 1);
    becomes_true(PATIENCE, || async {
        revoked(&c, jti(&last)).await != Some(false)
    })
    .await;
    let open_for = returned.elapsed();
    assert_eq!(
        accepted, 0,
        "replicate() returned a server whose start snapshot was cut by a flush: it answered \
         \"not revoked\" for {accepted} of {COPY} revoked jtis that the running server holds, \
         for {open_for:?} after it started"
    );
}

/// A restore marker without expiry (no value this crate writes: an operator's `SET`, a tool
/// copying keys without their TTL, a `PERSIST`) while no server is restoring does not block a
/// start: the starting server gives it an expiry (as a restore's `keep` does) and starts once
/// it is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn regression_a_marker_without_expiry_does_not_block_a_start() {
    let redis = RedisServer::start().await;
    let a = replica(&redis).await;
    a.revoke("r", now() + 3600).await.unwrap();
    let mut conn = redis.inspect().await;
    redis::cmd("SET")
        .arg(MARKER)
        .arg("free")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let url = redis.url();
    let started = tokio::time::timeout(Duration::from_secs(8), async move {
        RedisRevocation::connect(&url)
            .await
            .unwrap()
            .replicate()
            .await
    })
    .await;
    // The running server is healthy all along: nothing is being restored.
    assert!(restored(&a).await);
    assert!(
        matches!(started, Ok(Ok(_))),
        "no server could start for 8 s (it fails at 60 s, and again on every attempt) while a \
         running server is healthy and nothing is restored, because of a marker without \
         expiry (TTL {} ms): {:?}",
        marker_pttl(&redis).await,
        started.map(|r| r.map(|_| ()))
    );
}

/// Redis's `used_memory`, in bytes.
async fn used_memory(redis: &RedisServer) -> u64 {
    let mut conn = redis.inspect().await;
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A Redis at its `maxmemory` with `noeviction`, which holds its epoch and every revocation,
/// lets a server start: the start only reads (the epoch is written only when there is none).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn regression_a_full_redis_lets_a_server_start() {
    let redis = RedisServer::start().await;
    let a = replica(&redis).await;
    a.revoke("r", now() + 3600).await.unwrap();
    let used = used_memory(&redis).await;
    redis.config_set("maxmemory", used / 2).await;
    // The running server still answers (its checks are local, its feed only reads).
    assert!(
        becomes_true(PATIENCE, || async { restored(&a).await }).await,
        "the running server stopped answering"
    );
    assert_eq!(revoked(&a, jti("r")).await, Some(true));
    let start = RedisRevocation::connect(&redis.url())
        .await
        .unwrap()
        .replicate()
        .await
        .map(|_| ());
    assert!(
        start.is_ok(),
        "a server cannot start on a full Redis that holds every revocation and whose running \
         servers answer: {start:?}"
    );
}

/// A revocation never gives a record without expiry an expiry: an operator's permanent ban of
/// a subject (`SET jwt:sub:0::mallory 99999999999999`, no expiry), followed by an ordinary "log
/// out everywhere" kept 6 s, stays without expiry (Redis never drops it), and a server started
/// afterwards refuses the banned subject's tokens as the running one does. The same holds for
/// a permanent `jti` record revoked again, and for `RedisRevocation`'s `revoke_subject` and
/// `revoke`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn regression_a_revocation_keeps_a_permanent_record_permanent() {
    let redis = RedisServer::start().await;
    let mut conn = redis.inspect().await;
    for (key, value) in [
        ("jwt:sub:0::mallory", 99_999_999_999_999u64),
        ("jwt:sub:0::trudy", 99_999_999_999_999),
        ("jwt:jti:banned", 1),
        ("jwt:jti:forever", 1),
    ] {
        redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
    }
    let a = replica(&redis).await;
    let t = now();
    let token = TokenId::new(None, Some("m-1"), Some("mallory"), Some(t));
    assert_eq!(revoked(&a, token).await, Some(true));
    // kept_until = keep_until + 300 s margin + 1: here 6 s from now.
    a.revoke_subject(None, "mallory", t, t + 5 - 301)
        .await
        .unwrap();
    a.revoke("banned", t + 5 - 301).await.unwrap();
    let round_trip = RedisRevocation::connect(&redis.url()).await.unwrap();
    round_trip
        .revoke_subject(None, "trudy", t, t + 5 - 301)
        .await
        .unwrap();
    round_trip.revoke("forever", t + 5 - 301).await.unwrap();
    let expiries: (i64, i64, i64, i64) = redis::pipe()
        .cmd("EXPIRETIME")
        .arg("jwt:sub:0::mallory")
        .cmd("EXPIRETIME")
        .arg("jwt:jti:banned")
        .cmd("EXPIRETIME")
        .arg("jwt:sub:0::trudy")
        .cmd("EXPIRETIME")
        .arg("jwt:jti:forever")
        .query_async(&mut conn)
        .await
        .unwrap();
    let late = replica(&redis).await;
    let late_answer = revoked(&late, token).await;
    let a_answer = revoked(&a, token).await;
    assert!(
        expiries == (-1, -1, -1, -1) && late_answer == Some(true) && a_answer == Some(true),
        "permanent records (without expiry) got EXPIRETIMEs {expiries:?} (subject by the \
         replica, jti by the replica, subject and jti by RedisRevocation) from later \
         revocations kept \
         6 s; a server started afterwards answers {late_answer:?} for the banned subject's \
         token (the running server: {a_answer:?})"
    );
}

/// The number of `count` revoked `jti`s `<name>-<i>` for which `store` answers "not revoked".
async fn accepted(store: &ReplicatedRevocation, name: &str, count: usize) -> usize {
    let mut accepted = 0;
    for i in 0..count {
        if revoked(store, jti(&format!("{name}-{i}"))).await == Some(false) {
            accepted += 1;
        }
    }
    accepted
}

/// Redis stalls in the middle of a write-back (a VM pause, a swap storm) for longer than the
/// restore marker lives past the writer's last renewal: every server stalls alike, nobody
/// renews the marker, and Redis's clock expires it meanwhile; when Redis answers again, the
/// writer, whose requests timed out, is still backing off (here: frozen until the new server
/// has started or for the longest backoff, 1 s). A server that starts then still waits: the
/// writer set `jwt:incomplete`, which has no expiry, when it claimed the marker, and only a
/// running server whose reading of the records finds nothing missing deletes it. So the new
/// server starts with every revocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn regression_a_redis_stall_mid_write_back_never_starts_a_server_incomplete() {
    const COPY: usize = 20_000;
    let redis = RedisServer::start().await;
    seed_records(&redis, "rt", COPY, now() + 3600).await;
    let a = Freezable::start(&redis).await;
    redis.flushall().await;
    assert!(
        becomes_true(PATIENCE, || async {
            redis.dbsize().await as usize >= COPY / 10
        })
        .await,
        "A never wrote back"
    );
    // The stall outlasts the marker: it lives at most this long past the last renewal.
    let claim = marker(&redis).await.unwrap_or_default();
    let left = marker_pttl(&redis).await;
    redis.signal("-STOP");
    assert!(
        claim.contains(':') && left > 0,
        "A finished before the stall"
    );
    tokio::time::sleep(Duration::from_millis(left.unsigned_abs() + 500)).await;
    let thaw = a.freeze().await;
    redis.signal("-CONT");
    let url = redis.url();
    let starting = tokio::spawn(async move {
        RedisRevocation::connect(&url)
            .await
            .unwrap()
            .replicate()
            .await
            .unwrap()
    });
    becomes_true(Duration::from_secs(1), || async { starting.is_finished() }).await;
    let at_start = jti_records(&redis).await;
    drop(thaw);
    let c = starting.await.unwrap();
    let accepted = accepted(&c, "rt", COPY).await;
    assert_eq!(
        accepted, 0,
        "a server started right after a Redis stall that outlasted the marker in the middle of \
         a write-back answered \"not revoked\" for {accepted} of {COPY} revoked jtis \
         ({at_start} records in Redis when the writer resumed)"
    );
}

/// A Redis with `maxmemory` and the recommended `noeviction`, sized with 15 % headroom over
/// its revocation records, comes back empty. The write-back writes the records alone, with
/// one stream entry per batch (not one per record, which would take some 30 % more memory
/// than the records), so it fits where the records fitted before the loss: the running server
/// finishes the restore and refuses a revoked `jti` again, and a new server starts, within
/// seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn regression_a_write_back_fits_in_the_memory_its_records_took() {
    const COPY: usize = 30_000;
    let redis = RedisServer::start().await;
    let empty = used_memory(&redis).await;
    seed_records(&redis, "rt", COPY, now() + 3600).await;
    let full = used_memory(&redis).await;
    let a = replica(&redis).await;
    let limit = full + (full - empty) * 3 / 20;
    redis.config_set("maxmemory", limit).await;
    // Before the loss the fleet works, with room to spare: a revocation is written.
    a.revoke("before-the-loss", now() + 3600).await.unwrap();
    redis.flushall().await;
    assert!(
        becomes_true(PATIENCE, || async { redis.exists(MARKER).await }).await,
        "A never found the loss"
    );
    let recovered = becomes_true(Duration::from_secs(12), || async {
        restored(&a).await && revoked(&a, jti("rt-0")).await == Some(true)
    })
    .await;
    let records = jti_records(&redis).await;
    let start = RedisRevocation::connect(&redis.url())
        .await
        .unwrap()
        .replicate()
        .await
        .map(|_| ());
    let a_answer = revoked(&a, jti("rt-0")).await;
    assert!(
        recovered && start.is_ok(),
        "Redis (maxmemory {limit} B; {full} B with the {COPY} records before the loss) holds \
         {records} of {COPY} records written back: 12 s after the loss the running server \
         answers {a_answer:?} (None = 503) and a server starting gets {start:?}"
    );
}

// =============================================================================================
// Held properties.
// =============================================================================================

/// Spends `count` refresh `jti`s `<name>-<i>` on `store` (20 tasks), and waits until every
/// store of `fleet` holds the last one.
async fn spend_on(store: &Arc<ReplicatedRevocation>, name: &str, count: usize, exp: u64) {
    let mut pending = Vec::new();
    for t in 0..20 {
        let store = store.clone();
        let name = name.to_owned();
        pending.push(tokio::spawn(async move {
            for i in (t..count).step_by(20) {
                assert!(store.use_once(&format!("{name}-{i}"), exp).await.unwrap());
            }
        }));
    }
    for p in pending {
        p.await.unwrap();
    }
}

/// A revocation applied by one server only just before Redis lost it (the other server was
/// paused and never read it): the server that holds the big copy but lacks it writes back
/// first, the other waits with the one extra entry, takes the marker in the `free` handover
/// and writes it back; a server started meanwhile waits for both and starts with it; and the
/// first writer learns it from the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_an_entry_only_a_waiting_server_holds_is_written_back_before_a_start() {
    const COPY: usize = 20_000;
    let exp = now() + 3600;
    let mut redis = RedisServer::start().await;
    let a = Freezable::start(&redis).await;
    let b = Freezable::start(&redis).await;
    spend_on(&a.store, "rt", COPY, exp).await;
    assert!(becomes_true(PATIENCE, || async { holds_all(&b.store, "rt", COPY).await }).await);
    // A is paused when B revokes: only B holds the entry; then B is paused too and Redis
    // restarts empty.
    let thaw_a = a.freeze().await;
    b.store.revoke("only-on-b", exp).await.unwrap();
    let t = now();
    b.store
        .revoke_subject(None, "victim", t + 1, t + 3600)
        .await
        .unwrap();
    let thaw_b = b.freeze().await;
    redis.restart().await;
    drop(thaw_a);
    // A finds the loss and writes back its copy (without B's entries); B wakes meanwhile.
    assert!(
        becomes_true(PATIENCE, || async { written_back(&redis).await > 0 }).await,
        "A never wrote back"
    );
    drop(thaw_b);
    let c = replica(&redis).await;
    let victim = TokenId::new(None, Some("v"), Some("victim"), Some(t));
    assert_eq!(
        revoked(&c, jti("only-on-b")).await,
        Some(true),
        "C started without B's entry"
    );
    assert_eq!(
        revoked(&c, victim).await,
        Some(true),
        "C started without B's logout"
    );
    assert!(
        holds_all(&c, "rt", COPY).await,
        "C started without A's copy"
    );
    assert!(
        fleet_restored(&redis, &[&a.store, &b.store]).await,
        "the fleet never finished"
    );
    assert_eq!(revoked(&a.store, jti("only-on-b")).await, Some(true));
    assert_eq!(revoked(&a.store, victim).await, Some(true));
}

/// The writer is paused in the middle of its write-back (a GC pause, a stalled VM) past the
/// end of its claim; another server takes the marker over and finishes. When the paused writer
/// wakes, with its batch in flight answered long ago, it finds its claim lost, neither renews
/// nor deletes the other's marker, and reads Redis again; nothing is lost, nothing written
/// twice beyond a batch or so, and a server started after holds everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_a_writer_paused_past_its_claim_is_taken_over_and_stands_down() {
    const COPY: usize = 40_000;
    let exp = now() + 3600;
    let mut redis = RedisServer::start().await;
    let a = Freezable::start(&redis).await;
    let b = Freezable::start(&redis).await;
    spend_on(&a.store, "rt", COPY, exp).await;
    assert!(becomes_true(PATIENCE, || async { holds_all(&b.store, "rt", COPY).await }).await);
    let thaw_b = b.freeze().await;
    redis.restart().await;
    assert!(
        becomes_true(PATIENCE, || async { written_back(&redis).await > 0 }).await,
        "A never wrote back"
    );
    let thaw_a = a.freeze().await;
    let at_freeze = written_back(&redis).await;
    let claim = marker(&redis).await.unwrap_or_default();
    assert!(
        claim.contains(':') && at_freeze < COPY,
        "A finished before it was paused"
    );
    drop(thaw_b);
    // B takes over once A's claim lapses, and finishes.
    assert!(
        becomes_true(PATIENCE, || async {
            marker(&redis)
                .await
                .is_some_and(|m| m != claim && m.contains(':'))
        })
        .await,
        "B never took the marker over"
    );
    // Wake A while B is writing.
    drop(thaw_a);
    assert!(
        fleet_restored(&redis, &[&a.store, &b.store]).await,
        "the fleet never finished"
    );
    let written = written_back(&redis).await;
    assert!(
        written <= COPY + 3000,
        "{written} entries written back for {COPY}"
    );
    let late = replica(&redis).await;
    assert!(holds_all(&late, "rt", COPY).await);
}

/// Restore markers written by something else, while a restore runs (here triggered by deleting
/// the epoch, which keeps the records): a value of no known form and without expiry counts as
/// `free` and is given an expiry by the first `keep`; an owner that is not hex counts as `free`
/// too; a claim whose owner is hex but whose `until` lies far ahead is waited out only while
/// its key lives. Every time the restore ends, the marker goes, nothing is written back that
/// Redis holds, and a server started afterwards holds every revocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_foreign_marker_values_neither_wedge_a_restore_nor_open_a_start() {
    let redis = RedisServer::start().await;
    let a = replica(&redis).await;
    let exp = now() + 3600;
    for i in 0..50 {
        a.revoke(&format!("r-{i}"), exp).await.unwrap();
    }
    let mut conn = redis.inspect().await;
    for (value, px) in [
        ("garbage", None),
        ("zz-not-hex:1", None),
        ("ab:99999999999999", Some(1500)),
    ] {
        let before = written_back(&redis).await;
        let mut set = redis::cmd("SET");
        set.arg(MARKER).arg(value);
        if let Some(px) = px {
            set.arg("PX").arg(px);
        }
        set.query_async::<()>(&mut conn).await.unwrap();
        redis::cmd("DEL")
            .arg("jwt:epoch")
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
        assert!(
            becomes_true(PATIENCE, || async { !restored(&a).await }).await,
            "A never noticed the epoch gone ({value})"
        );
        assert!(
            fleet_restored(&redis, &[&a]).await,
            "the restore never ended with the marker {value}"
        );
        assert_eq!(
            written_back(&redis).await,
            before,
            "entries written back that Redis held ({value})"
        );
        let late = replica(&redis).await;
        for i in 0..50 {
            assert_eq!(revoked(&late, jti(&format!("r-{i}"))).await, Some(true));
        }
    }
}

/// A write-back cut short resumes at the first batch Redis did not acknowledge; here Redis
/// also lost part of what it had acknowledged (records deleted while the writer reconnects:
/// what a persistent Redis that crashed and lost its last writes, keeping its epoch and the
/// writer's claim, looks like). The batches it resumes after are not written again, but the
/// snapshot that ends every write-back finds them missing and writes them back: nothing is
/// lost, and a server started afterwards holds every entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_acknowledged_batches_lost_before_a_resume_are_written_back() {
    const COPY: usize = 40_000;
    let exp = now() + 3600;
    let mut redis = RedisServer::start().await;
    seed_records(&redis, "rt", COPY, exp).await;
    let a = replica(&redis).await;
    redis.restart().await;
    assert!(
        becomes_true(PATIENCE, || async {
            written_back(&redis).await >= COPY / 4
        })
        .await,
        "A never wrote back"
    );
    // Drop 2 000 of the records A had written and cut its connections, in one transaction.
    let mut conn = redis.inspect().await;
    let (dropped, _killed): (i64, i64) = redis::pipe()
        .atomic()
        .cmd("EVAL")
        .arg(
            "local n = 0\n\
             local cursor = '0'\n\
             repeat\n\
               local r = redis.call('SCAN', cursor, 'MATCH', 'jwt:jti:*', 'COUNT', 1000)\n\
               cursor = r[1]\n\
               for _, k in ipairs(r[2]) do\n\
                 if n < 2000 then redis.call('DEL', k); n = n + 1 end\n\
               end\n\
             until cursor == '0' or n >= 2000\n\
             return n",
        )
        .arg(0)
        .cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(dropped, 2000);
    let at_cut = written_back(&redis).await;
    assert!(at_cut < COPY, "A finished before the cut ({at_cut})");
    assert!(fleet_restored(&redis, &[&a]).await, "A never finished");
    assert_eq!(jti_records(&redis).await, COPY, "records lost");
    let late = replica(&redis).await;
    assert!(holds_all(&late, "rt", COPY).await);
}

/// The write-back never lowers what Redis holds: a subject whose record in Redis has a lower
/// "not before" but a later expiry than the copy's (the two values come from different
/// revocations) is written back with the copy's "not before", and keeps Redis's later expiry;
/// a `jti` whose record outlives the copy's entry is not written at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_a_write_back_only_raises_not_before_and_expiry() {
    let redis = RedisServer::start().await;
    let a = replica(&redis).await;
    let t = now();
    a.revoke_subject(None, "s", t + 100, t + 600).await.unwrap();
    a.revoke("j", t + 600).await.unwrap();
    let mut conn = redis.inspect().await;
    // Redis's records: the subject with an earlier "not before" and a later expiry, the jti
    // with a later expiry; then the epoch goes, so A restores.
    redis::pipe()
        .cmd("SET")
        .arg("jwt:sub:0::s")
        .arg(t + 50)
        .arg("EXAT")
        .arg(t + 5000)
        .ignore()
        .cmd("SET")
        .arg("jwt:jti:j")
        .arg(1)
        .arg("EXAT")
        .arg(t + 7000)
        .ignore()
        .cmd("DEL")
        .arg("jwt:epoch")
        .ignore()
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    assert!(becomes_true(PATIENCE, || async { !restored(&a).await }).await);
    assert!(fleet_restored(&redis, &[&a]).await);
    let (before, sub_exp, jti_exp): (u64, i64, i64) = redis::pipe()
        .get("jwt:sub:0::s")
        .cmd("EXPIRETIME")
        .arg("jwt:sub:0::s")
        .cmd("EXPIRETIME")
        .arg("jwt:jti:j")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(before, t + 100, "the subject's \"not before\"");
    assert_eq!(sub_exp, (t + 5000) as i64, "the subject's expiry");
    assert_eq!(jti_exp, (t + 7000) as i64, "the jti's expiry");
    let late = replica(&redis).await;
    let token = TokenId::new(None, Some("x"), Some("s"), Some(t + 99));
    assert_eq!(revoked(&late, token).await, Some(true));
}
