//! Audit of the checks `use_once` and `is_revoked_consistent` make against the epoch, the
//! restore marker and the `incomplete` record, of the feed's restore when it finds `incomplete`
//! without the marker, and of the `allow-oom` marker scripts, against real `redis-server`
//! processes.
//!
//! `regression_*` tests pin the defects the audit found (each fails on the code it audited);
//! `holds_*` tests pin attacks that were refused. Waits are polls with a deadline.

use crate::common;

use std::time::Duration;

use common::redis_server::RedisServer;
use common::replica::*;
use common::*;
use tower_jwt_auth::revocation::{RedisRevocation, RevocationStore};

/// A deadline against a hang, not a latency check.
const PATIENCE: Duration = Duration::from_secs(10);

/// The `incomplete` record under the default prefix.
const INCOMPLETE: &str = "jwt:incomplete";

/// Whether `e` is the error of a connection being re-established (Redis just came back), as
/// opposed to the store refusing to answer.
fn reconnecting(e: &tower_jwt_auth::revocation::RevocationError) -> bool {
    let e = e.to_string();
    !e.contains("restored") && !e.contains("behind")
}

/// A persistent Redis with a backup taken once two servers (A and B) run on it; B then revokes
/// `after-backup`, A's feed applies it (A has applied an entry the backup lacks), and both
/// feeds are frozen. Returns the Redis, the backup's directory, both servers and the senders
/// that thaw them.
async fn fleet_with_backup() -> (
    RedisServer,
    std::path::PathBuf,
    Freezable,
    Freezable,
    Vec<std::sync::mpsc::Sender<()>>,
) {
    let exp = now() + 3600;
    let redis = RedisServer::start_persistent().await;
    let a = Freezable::start_feed_only(&redis).await;
    let b = Freezable::start_feed_only(&redis).await;
    let backup = redis.data_dir().with_extension("audit20-backup");
    copy_dir(redis.data_dir(), &backup);
    b.store.revoke("after-backup", exp).await.unwrap();
    assert!(
        becomes_true(PATIENCE, || async {
            revoked(&a.store, jti("after-backup")).await == Some(true)
        })
        .await,
        "setup: A never applied B's revocation"
    );
    let thaws = vec![a.freeze().await, b.freeze().await];
    (redis, backup, a, b, thaws)
}

/// Brings `redis` back from `backup` (an older copy of its data, the same epoch): a restore
/// from a backup, or a failover to a replica that had not received the last writes.
async fn rewind(redis: &mut RedisServer, backup: &std::path::Path) {
    let epoch: Option<String> = {
        let mut conn = redis.inspect().await;
        redis::cmd("GET")
            .arg("jwt:epoch")
            .query_async(&mut conn)
            .await
            .unwrap()
    };
    let counter = redis.get_u64(COUNTER).await;
    redis.kill();
    copy_dir(backup, redis.data_dir());
    let _ = std::fs::remove_dir_all(backup);
    redis.spawn().await;
    let mut conn = redis.inspect().await;
    let back: Option<String> = redis::cmd("GET")
        .arg("jwt:epoch")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(back, epoch, "setup: the backup holds another epoch");
    assert!(
        redis.get_u64(COUNTER).await < counter,
        "setup: the backup is not older"
    );
}

// =============================================================================================
// Defects the audit found, fixed.
// =============================================================================================

/// Attack: Redis comes back from an older backup, or fails over to a replica that had not
/// received the last writes: the same epoch, no marker, an older counter. B spent the refresh
/// token `rt-1` after the backup was taken (B holds it; Redis no longer does); A's feed has not
/// read since Redis came back (its reconnect backoff, up to 1 s), although A applied entries
/// the backup lacks. A's `use_once` finds the epoch it follows, no marker and no
/// `incomplete`, and its `SET NX` succeeds: the token is spent twice across the fleet. What a
/// user would lose: refresh-token reuse detection and DPoP replay protection across a
/// failover, the loss the epoch check closes for a Redis restarted empty. Expected: A's
/// `use_once` fails (Redis's counter is below the last number A applied: Redis is rewound).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn regression_use_once_after_a_rewind_to_an_older_backup_never_spends_twice() {
    let exp = now() + 3600;
    let (mut redis, backup, a, b, thaws) = fleet_with_backup().await;
    assert!(
        b.store.use_once("rt-1", exp).await.unwrap(),
        "B spends rt-1"
    );
    rewind(&mut redis, &backup).await;
    let mut again = a.store.use_once("rt-1", exp).await;
    for _ in 0..100 {
        match &again {
            Err(e) if reconnecting(e) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                again = a.store.use_once("rt-1", exp).await;
            }
            _ => break,
        }
    }
    drop(thaws);
    assert!(
        !matches!(again, Ok(true)),
        "rt-1, spent on B (which still holds it), was spent again on A after Redis was \
         rewound to an older backup with the same epoch: {again:?}"
    );
}

/// As `regression_use_once_after_a_rewind_to_an_older_backup_never_spends_twice`, for the
/// consistent check refresh-token rotation makes on a family: B revoked `fam-1` after the
/// backup, Redis is rewound, and A's `is_revoked_consistent` asks Redis, which answers "not
/// revoked" with the epoch A follows. What a user would lose: a revoked refresh family is
/// rotated again. Expected: an error (Redis's counter is below the last number A applied).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn regression_is_revoked_consistent_after_a_rewind_to_an_older_backup_never_misses_a_revocation()
 {
    let exp = now() + 3600;
    let (mut redis, backup, a, b, thaws) = fleet_with_backup().await;
    b.store.revoke("fam-1", exp).await.unwrap();
    rewind(&mut redis, &backup).await;
    let mut answer = a.store.is_revoked_consistent(jti("fam-1")).await;
    for _ in 0..100 {
        match &answer {
            Err(e) if reconnecting(e) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                answer = a.store.is_revoked_consistent(jti("fam-1")).await;
            }
            _ => break,
        }
    }
    drop(thaws);
    assert!(
        !matches!(answer, Ok(false)),
        "fam-1, revoked on B (which still holds it), reads as not revoked on A after Redis was \
         rewound to an older backup with the same epoch: {answer:?}"
    );
}

/// Attack: a restore marker without expiry appears while the fleet runs (the case the
/// documentation names: an operator's `SET`, a tool copying keys without their TTL; or an
/// older version's `1`). No restore is under way and Redis lacks nothing. What a user would
/// lose: every `use_once` (refresh-token rotation, every DPoP proof) and every
/// `is_revoked_consistent` fails on every running server, for good: the feed's step treats a
/// present marker as a restore under way, never restores, and so never gives the marker the one
/// hold a starting server gives it. Expected: within a few holds (8 s), both answer again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn regression_a_marker_without_expiry_never_wedges_use_once_on_the_running_fleet() {
    let exp = now() + 3600;
    let redis = RedisServer::start().await;
    let a = replica(&redis).await;
    let b = replica(&redis).await;
    assert!(a.use_once("warm", exp).await.unwrap());
    let mut conn = redis.inspect().await;
    redis::cmd("SET")
        .arg(MARKER)
        .arg("1")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let mut n = 0;
    let answers = becomes_true(Duration::from_secs(8), || {
        n += 1;
        let (a, b) = (a.clone(), b.clone());
        let id = format!("probe-{n}");
        async move {
            a.use_once(&id, exp).await.is_ok()
                && b.use_once(&format!("{id}-b"), exp).await.is_ok()
                && restored(&a).await
                && restored(&b).await
        }
    })
    .await;
    let ttl: i64 = redis::cmd("PTTL")
        .arg(MARKER)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        answers,
        "use_once / is_revoked_consistent still fail on every server 8 s after a marker without \
         expiry appeared (its PTTL now: {ttl}; last error: {:?})",
        a.use_once("probe-last", exp).await
    );
}

// =============================================================================================
// Holds.
// =============================================================================================

/// Attack: a stranger (another tool, an operator) writes `<prefix>incomplete` while the fleet
/// runs and Redis lacks nothing. Every running server finds it without the marker and restores;
/// they must not loop restoring, nor write anything back. What a user would lose: a fleet that
/// fails `use_once` for good, or write-back storms. Expected: within a few seconds the record
/// and the marker are gone, the counter has not moved (nothing was written back), both servers
/// answer `use_once` again, and the record stays gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_a_strangers_incomplete_record_is_cleared_once_without_writes() {
    let exp = now() + 3600;
    let redis = RedisServer::start().await;
    let a = replica(&redis).await;
    let b = replica(&redis).await;
    for i in 0..50 {
        a.revoke(&format!("r-{i}"), exp).await.unwrap();
    }
    assert!(
        becomes_true(PATIENCE, || async {
            revoked(&b, jti("r-49")).await == Some(true)
        })
        .await
    );
    let counter = redis.get_u64(COUNTER).await;
    let mut conn = redis.inspect().await;
    redis::cmd("SET")
        .arg(INCOMPLETE)
        .arg("x")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    assert!(
        becomes_true(Duration::from_millis(1500), || async {
            redis.exists(MARKER).await
        })
        .await,
        "no server noticed `incomplete` without the marker"
    );
    assert!(
        restore_ended(&redis, &[&a, &b], PATIENCE).await,
        "the fleet never finished its restore"
    );
    assert!(!redis.exists(INCOMPLETE).await);
    assert_eq!(redis.get_u64(COUNTER).await, counter, "a server wrote back");
    assert!(a.use_once("after-a", exp).await.unwrap());
    assert!(b.use_once("after-b", exp).await.unwrap());
    // No second round: the marker does not come back.
    let again = becomes_true(Duration::from_secs(1), || async {
        redis.exists(MARKER).await || redis.exists(INCOMPLETE).await
    })
    .await;
    assert!(!again, "the fleet restored again");
}

/// Attack: Redis is at its `maxmemory` (`noeviction`) and a follower must write back a record
/// only it holds (its entries were trimmed unread and Redis lost the record): its `take`
/// (flagged `allow-oom`) appends a `w` entry and sets `incomplete` on the full Redis, while the
/// write-back's own scripts are refused. What a user would lose: a loop of `take`s appending
/// stream entries past `maxmemory`, without bound. Expected: the follower takes once and
/// retries the refused batch without another `take` (the counter rises by at most 2 in 4 s);
/// once Redis has room, it writes the record back and finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_allow_oom_marker_steps_do_not_loop_on_a_full_redis() {
    let exp = now() + 3600;
    let redis = RedisServer::start().await;
    let mut conn = redis.inspect().await;
    redis.config_set("maxmemory-policy", "noeviction").await;
    let a = replica(&redis).await;
    let b = Freezable::start(&redis).await;
    a.revoke("only-b", exp).await.unwrap();
    assert!(
        becomes_true(PATIENCE, || async {
            revoked(&b.store, jti("only-b")).await == Some(true)
        })
        .await
    );
    let thaw = b.freeze().await;
    // Two entries: B's blocking read already sent may still deliver the first.
    a.revoke("x", exp).await.unwrap();
    a.revoke("y", exp).await.unwrap();
    redis::cmd("DEL")
        .arg("jwt:jti:only-b")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    redis::cmd("XTRIM")
        .arg("jwt:feed")
        .arg("MAXLEN")
        .arg(0)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    redis.config_set("maxmemory", 1).await;
    assert!(
        a.revoke("z", exp).await.is_err(),
        "setup: Redis is not full"
    );
    let counter = redis.get_u64(COUNTER).await;
    drop(thaw);
    assert!(
        becomes_true(PATIENCE, || async { redis.exists(INCOMPLETE).await }).await,
        "B never took the marker to write back (marker {:?}, counter {} from {counter}, B: {:?})",
        marker(&redis).await,
        redis.get_u64(COUNTER).await,
        b.store.is_revoked_consistent(jti("nothing")).await
    );
    // Watch for 4 s: the write-back is refused; the marker steps must not loop.
    let looped = becomes_true(Duration::from_secs(4), || async {
        redis.get_u64(COUNTER).await > counter + 2
    })
    .await;
    let after = redis.get_u64(COUNTER).await;
    assert!(
        !looped,
        "the counter rose from {counter} to {after}: takes loop on a full Redis"
    );
    redis.config_set("maxmemory", 0).await;
    assert!(
        becomes_true(PATIENCE, || async {
            redis.exists("jwt:jti:only-b").await && restored(&b.store).await
        })
        .await,
        "B never wrote the record back once Redis had room"
    );
}

/// Attack on availability: `use_once` right after the first server started on a new Redis
/// (it set the epoch and waited out the marker), for a plain `RedisRevocation` on the same
/// Redis, and on every server right after a restore ended. What a user would lose: refresh
/// and DPoP failing while nothing is lost. Expected: each succeeds at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_use_once_answers_after_start_for_plain_redis_and_after_a_restore() {
    let exp = now() + 3600;
    let redis = RedisServer::start().await;
    let a = replica(&redis).await;
    assert!(a.use_once("first", exp).await.unwrap());
    let plain = RedisRevocation::connect(&redis.url()).await.unwrap();
    assert!(plain.use_once("plain", exp).await.unwrap());
    let b = replica(&redis).await;
    assert!(b.use_once("second", exp).await.unwrap());
    redis.flushall().await;
    assert!(restore_ended(&redis, &[&a, &b], PATIENCE).await);
    assert!(a.use_once("after-a", exp).await.unwrap());
    assert!(b.use_once("after-b", exp).await.unwrap());
    assert!(!a.use_once("first", exp).await.unwrap());
    assert!(plain.use_once("plain-after", exp).await.unwrap());
}
