//! Audit 24: the `dataset_kept!` guard of `use_once` and the family check
//! (`is_revoked_consistent`) of `ReplicatedRevocation`: the last applied entry, whether it was
//! lost or only trimmed, and spurious failures under load and across a persistent restart,
//! against real `redis-server` processes.
//!
//! `regression_*` tests failed on the audited snapshot and pass since their fix; `holds_*`
//! tests pin attacks that were refused. Waits are polls with a deadline or signals.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::redis_server::RedisServer;
use common::replica::*;
use common::*;
use tower_jwt_auth::revocation::RevocationStore;

/// A deadline against a hang, not a latency check.
const PATIENCE: Duration = Duration::from_secs(15);

/// Writes what `REVOKE_JTI` writes for `jti` (record, counter + 1, a `j` entry numbered so),
/// with the entry's id given: `id` is what `XADD … *` assigns on a Redis whose clock reads
/// that id's milliseconds (a primary whose clock is behind or ahead of its predecessor's).
async fn revoke_with_id(redis: &RedisServer, jti: &str, exp: u64, id: &str) {
    let mut conn = redis.inspect().await;
    redis::cmd("EVAL")
        .arg(
            r"
redis.call('SET', KEYS[1], 1, 'EXAT', ARGV[2])
local seq = redis.call('INCR', KEYS[3])
local id = ARGV[3]
if id == '' then
  id = string.format('%d-0', (tonumber(redis.call('TIME')[1]) - tonumber(ARGV[4])) * 1000)
end
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
        .arg(id)
        .arg(600)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
}

/// A fleet that was idle for ten minutes: the stream's only entry (`old`, number 1) was
/// written ten minutes ago by Redis's clock, and A and W started on it (their `applied` is
/// entry 1, by its id). Both feeds are frozen (in their reconnect backoff after a failover).
async fn idle_pair() -> (
    RedisServer,
    Freezable,
    Freezable,
    Vec<std::sync::mpsc::Sender<()>>,
) {
    let exp = now() + 3600;
    let redis = RedisServer::start().await;
    revoke_with_id(&redis, "old", exp, "").await;
    let a = Freezable::start_feed_only(&redis).await;
    let w = Freezable::start_feed_only(&redis).await;
    assert_eq!(revoked(&a.store, jti("old")).await, Some(true), "setup");
    assert_eq!(redis.get_u64(COUNTER).await, 1, "setup: one entry");
    let thaws = vec![a.freeze().await, w.freeze().await];
    (redis, a, w, thaws)
}

// =============================================================================================
// Regressions.
// =============================================================================================

/// Attack: the fleet was idle for ten minutes (the last revocation, entry 1, which A applied,
/// is older than the 5-minute trim window). W spends `rt` (entry 2, not yet read by A's
/// feed); Redis is then restored from a backup taken before entry 1 (epoch kept, counter 0),
/// and W revokes two more tokens, raising the counter back to 2. A's `use_once(rt)`: epoch
/// kept, counter 2 ≥ 1, and entry 1 is missing although it is older than the window: a guard
/// that excused it by its age ("may have been trimmed") would miss that the rewind took it,
/// for any fleet quiet for five minutes. What a user would lose: a spent refresh token (or
/// DPoP proof) spent a second time after a restore. Expected: not `Ok(true)`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn regression_an_applied_entry_older_than_the_window_lost_in_a_rewind_is_found_by_use_once() {
    let exp = now() + 3600;
    let (redis, a, w, thaws) = idle_pair().await;
    assert!(w.store.use_once("rt", exp).await.unwrap(), "W spends rt");
    rewind_to(&redis, 0, &["old", "rt"]).await;
    let before = a.store.use_once("rt", exp).await;
    w.store.revoke("u1", exp).await.unwrap();
    w.store.revoke("u2", exp).await.unwrap();
    assert_eq!(redis.get_u64(COUNTER).await, 2, "setup: counter raised");
    let again = a.store.use_once("rt", exp).await;
    drop(thaws);
    assert!(
        !matches!(before, Ok(true)),
        "setup: the plain rewind is already missed: {before:?}"
    );
    assert!(
        !matches!(again, Ok(true)),
        "rt, spent on W, was spent again on A, whose feed applied an entry the rewind took \
         away (older than the trim window), once new writes raised the counter: {again:?}"
    );
}

/// As the `use_once` test above, for the family check: W revokes the family `fam`
/// (entry 2) on an idle fleet whose last entry A applied is ten minutes old; a restore from a
/// backup before entry 1 and two new writes later, A's `is_revoked_consistent(fam)` answers
/// "not revoked". What a user would lose: a stolen refresh family rotated again after a
/// restore. Expected: an error or `Ok(true)`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn regression_an_applied_entry_older_than_the_window_lost_in_a_rewind_is_found_by_the_family_check()
 {
    let exp = now() + 3600;
    let (redis, a, w, thaws) = idle_pair().await;
    w.store.revoke("fam", exp).await.unwrap();
    rewind_to(&redis, 0, &["old", "fam"]).await;
    w.store.revoke("u1", exp).await.unwrap();
    w.store.revoke("u2", exp).await.unwrap();
    assert_eq!(redis.get_u64(COUNTER).await, 2, "setup: counter raised");
    let answer = a.store.is_revoked_consistent(jti("fam")).await;
    drop(thaws);
    assert!(
        !matches!(answer, Ok(false)),
        "fam, revoked on W, reads as not revoked on A, whose feed applied an entry the rewind \
         took away (older than the trim window): {answer:?}"
    );
}

/// Attack (availability): the stream loses its young entries while the counter stays (an
/// operator's `XTRIM … MINID` or `DEL` to reclaim memory, a tool copying keys, eviction under
/// an `allkeys-*` policy). Every running server's applied entry is gone with no entry left in
/// front of it, so the guard answers -1 on every `use_once` and family check; the feeds see
/// the epoch and a counter equal to their `seq`, and must still find the loss by the same
/// entry rule and restore: a refused `use_once` writes no entry that would move `applied`, so
/// otherwise the fleet stays wedged until some server revokes a token. What a user would lose:
/// every refresh (and DPoP-protected request) on every running server, on a workload of
/// refreshes without revocations. Expected: `use_once` answers again within the patience.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn regression_a_stream_trimmed_young_is_restored_and_use_once_answers() {
    let exp = now() + 3600;
    let redis = RedisServer::start().await;
    let a = replica(&redis).await;
    let b = replica(&redis).await;
    a.revoke("x1", exp).await.unwrap();
    assert!(b.use_once("u1", exp).await.unwrap());
    assert!(
        becomes_true(PATIENCE, || async {
            revoked(&a, jti("u1")).await == Some(true) && revoked(&b, jti("x1")).await == Some(true)
        })
        .await,
        "setup"
    );
    let mut conn = redis.inspect().await;
    redis::cmd("XTRIM")
        .arg("jwt:feed")
        .arg("MAXLEN")
        .arg(0)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let last = Arc::new(std::sync::Mutex::new(Vec::new()));
    let answered = becomes_true(PATIENCE, || {
        let (a, b, last) = (a.clone(), b.clone(), last.clone());
        async move {
            let ra = a.use_once("after-a", exp).await;
            let rb = b.is_revoked_consistent(jti("never-revoked")).await;
            let ok = ra.is_ok() && rb.is_ok();
            *last.lock().unwrap() = vec![format!("{ra:?}"), format!("{rb:?}")];
            ok
        }
    })
    .await;
    assert!(
        answered,
        "use_once and the family check fail on every running server for {PATIENCE:?} after \
         the stream lost its young entries, and no restore ran: {:?}",
        last.lock().unwrap()
    );
}

// =============================================================================================
// Holds.
// =============================================================================================

/// Attack (availability): two servers spend the same 150 tokens concurrently, each token on
/// both, while a third revokes 150 others, so every feed applies entries (and moves its
/// `applied`) while the scripts run. A false -1 from the guard is a refresh that fails for a
/// user. Expected: no error at all, and each token spent exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_concurrent_use_once_on_two_servers_never_fails_spuriously() {
    let exp = now() + 3600;
    let redis = RedisServer::start().await;
    let a = replica(&redis).await;
    let b = replica(&redis).await;
    let w = replica(&redis).await;
    let writer = {
        let w = w.clone();
        tokio::spawn(async move {
            let mut errors = 0;
            for i in 0..150 {
                if w.revoke(&format!("r{i}"), exp).await.is_err() {
                    errors += 1;
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
    assert_eq!(we, 0, "revoke errors");
    assert!(ea.is_empty() && eb.is_empty(), "spurious: {ea:?} {eb:?}");
    let mut all: Vec<_> = wa.iter().chain(wb.iter()).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..150).collect::<Vec<_>>(), "each token spent once");
}

/// Attack (availability): Redis with an append-only file restarts (crash and reload: the
/// epoch, counter and stream come back as they were). What a user would lose: refreshes
/// failing after every Redis restart if the guard took the reloaded dataset for a rewind.
/// Expected: once the feeds are back, `use_once` and the family check answer, with no error
/// over 100 calls, and no restore marker was needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_a_persistent_restart_keeps_the_guard_passing() {
    let exp = now() + 3600;
    let mut redis = RedisServer::start_persistent().await;
    let a = replica(&redis).await;
    let b = replica(&redis).await;
    for i in 0..20 {
        a.revoke(&format!("r{i}"), exp).await.unwrap();
        assert!(b.use_once(&format!("u{i}"), exp).await.unwrap());
    }
    assert!(restore_ended(&redis, &[&a, &b], PATIENCE).await, "setup");
    let counter = redis.get_u64(COUNTER).await;
    redis.restart().await;
    assert_eq!(redis.get_u64(COUNTER).await, counter, "setup: AOF kept");
    assert!(
        becomes_true(PATIENCE, || async {
            a.use_once("probe-a", exp).await.is_ok() && b.use_once("probe-b", exp).await.is_ok()
        })
        .await,
        "the guard never passed again after a persistent restart"
    );
    let mut errors = Vec::new();
    for i in 0..50 {
        if let Err(e) = a.use_once(&format!("p{i}"), exp).await {
            errors.push(format!("a p{i}: {e}"));
        }
        if let Err(e) = b.is_revoked_consistent(jti(&format!("r{i}"))).await {
            errors.push(format!("b r{i}: {e}"));
        }
    }
    assert!(errors.is_empty(), "spurious after restart: {errors:?}");
    assert_eq!(
        redis.get_u64(COUNTER).await,
        counter + 52,
        "no write-back: the reloaded dataset was not taken for a loss"
    );
}

/// Attack (availability): an idle fleet whose last entry (applied by A) is ten minutes old;
/// W's next write appends an entry and the stream is trimmed to the window (exactly, as
/// `MINID ~` does once a node is full), taking A's applied entry before A's feed read the new
/// one (frozen). What a user would lose: a refresh failing after every quiet period. Expected:
/// A's `use_once` and family check answer (the stream's first entry is numbered above A's
/// applied one: trimmed, not lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_an_applied_entry_trimmed_by_the_window_does_not_fail_the_guard() {
    let exp = now() + 3600;
    let (redis, a, w, thaws) = idle_pair().await;
    w.store.revoke("fresh", exp).await.unwrap();
    let mut conn = redis.inspect().await;
    let time: (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
    let trimmed: u64 = redis::cmd("XTRIM")
        .arg("jwt:feed")
        .arg("MINID")
        .arg(format!("{}-0", time.0 * 1000 - 300_000))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(trimmed, 1, "setup: the old entry is trimmed");
    let spent = a.store.use_once("rt", exp).await;
    let family = a.store.is_revoked_consistent(jti("fresh")).await;
    drop(thaws);
    assert!(matches!(spent, Ok(true)), "use_once: {spent:?}");
    assert!(
        matches!(family, Ok(true)),
        "family check (Redis holds the record): {family:?}"
    );
}

/// Attack (availability): Redis is flushed; the running servers restore it (new epoch,
/// marker, `w` entries), then two servers spend 100 tokens each and check families. What a
/// user would lose: refreshes failing after a restore that ended (a `w` entry or the
/// restored head taken for a loss). Expected: once the restore ended, no error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_after_a_flush_and_restore_the_guard_passes() {
    let exp = now() + 3600;
    let redis = RedisServer::start().await;
    let a = replica(&redis).await;
    let b = replica(&redis).await;
    for i in 0..20 {
        a.revoke(&format!("r{i}"), exp).await.unwrap();
        assert!(b.use_once(&format!("u{i}"), exp).await.unwrap());
    }
    redis.flushall().await;
    assert!(
        restore_ended(&redis, &[&a, &b], PATIENCE).await,
        "restore never ended"
    );
    assert!(written_back(&redis).await >= 40, "setup: written back");
    let mut errors = Vec::new();
    for i in 0..100 {
        match a.use_once(&format!("u{i}"), exp).await {
            Ok(fresh) => assert_eq!(fresh, i >= 20, "u{i}"),
            Err(e) => errors.push(format!("a u{i}: {e}")),
        }
        if let Err(e) = b.is_revoked_consistent(jti(&format!("f{i}"))).await {
            errors.push(format!("b f{i}: {e}"));
        }
    }
    assert!(errors.is_empty(), "spurious after restore: {errors:?}");
}
