//! Audit of `ReplicatedRevocation`'s restore after Redis loses data (the records-only
//! write-back with its `w` stream entries, and the `<prefix>incomplete` record), against real
//! `redis-server` processes.
//!
//! `regression_*` tests pin the defects the audit found (each fails on the code it audited);
//! `holds_*` tests pin attacks that were refused. Waits are polls with a deadline.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::redis_server::RedisServer;
use common::replica::*;
use common::*;
use tower_jwt_auth::revocation::{RedisRevocation, ReplicatedRevocation, RevocationStore};

/// A deadline against a hang, not a latency check.
const PATIENCE: Duration = Duration::from_secs(15);

/// The `incomplete` record under the default prefix.
const INCOMPLETE: &str = "jwt:incomplete";

/// How long a start may take while the running servers finish a restore.
const START: Duration = Duration::from_secs(8);

/// Closes every connection of `redis` whose last command was `XREAD`: the feed connections of
/// every replicated store on it (the stores' shared connections never send `XREAD`). Each feed
/// notices at once and reconnects after its first backoff (50 ms).
async fn drop_feed_connections(redis: &RedisServer) -> usize {
    let mut conn = redis.inspect().await;
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut killed = 0;
    for line in list.lines() {
        if !line.contains(" cmd=xread ") {
            continue;
        }
        let id = line
            .split(' ')
            .find_map(|f| f.strip_prefix("id="))
            .unwrap()
            .to_string();
        let n: u64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(&id)
            .query_async(&mut conn)
            .await
            .unwrap();
        killed += n as usize;
    }
    killed
}

/// Spends `count` refresh `jti`s `<name>-<i>` on `store` (10 tasks) and waits until every
/// store of `fleet` holds them all.
async fn spend_on(
    store: &Arc<ReplicatedRevocation>,
    fleet: &[&ReplicatedRevocation],
    name: &str,
    count: usize,
    exp: u64,
) {
    let mut tasks = Vec::new();
    for t in 0..10 {
        let store = store.clone();
        let name = name.to_string();
        tasks.push(tokio::spawn(async move {
            for i in (t..count).step_by(10) {
                assert!(store.use_once(&format!("{name}-{i}"), exp).await.unwrap());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for s in fleet {
        assert!(
            becomes_true(PATIENCE, || async { holds_all(s, name, count).await }).await,
            "a server never received every spent jti"
        );
    }
}

// =============================================================================================
// Defects the audit found, fixed.
// =============================================================================================

/// Attack: a server (B) whose feed has not yet read a spend (its feed connection dropped and
/// is in its first backoff, 50 ms) when Redis loses its data (here a flush; a crash of a Redis
/// without persistence, or with `appendfsync everysec`, is the same to B). A spent the refresh
/// token `rt-1` just before: A holds it. B's copy lacks it, B is still within its staleness
/// bound and does not know of the loss yet, so B's `use_once` asks Redis, whose `SET NX`
/// succeeds on the emptied dataset: the refresh token is spent twice across the fleet, while A
/// still holds the revocation. What a user would lose: refresh-token reuse detection (a stolen
/// refresh token replayed against another server at the right moment mints a second family).
/// Expected: B's `use_once` fails (the script finds Redis without the epoch B follows).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn regression_use_once_on_a_lagging_server_never_spends_a_token_another_server_holds() {
    let exp = now() + 3600;
    let redis = RedisServer::start().await;
    let a = replica(&redis).await;
    let b = replica(&redis).await;
    assert_eq!(drop_feed_connections(&redis).await, 2);
    // Within B's feed backoff: A spends, Redis loses its data, B is asked to spend again.
    assert!(a.use_once("rt-1", exp).await.unwrap(), "A spends rt-1");
    redis.flushall().await;
    let again = b.use_once("rt-1", exp).await;
    assert!(
        !matches!(again, Ok(true)),
        "rt-1, spent on A (which still holds it), was spent again on B: {again:?}"
    );
}

/// As `regression_use_once_on_a_lagging_server_never_spends_a_token_another_server_holds`, for
/// the consistent check refresh-token rotation uses on a family: A revoked the family
/// (`fam-1`), Redis loses its data before B's feed read it, and B's `is_revoked_consistent`
/// would ask the emptied Redis and answer "not revoked", so B would rotate a revoked family.
/// Expected: an error (Redis holds no longer the epoch B follows).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn regression_is_revoked_consistent_on_a_lagging_server_never_misses_a_revocation_another_server_holds()
 {
    let exp = now() + 3600;
    let redis = RedisServer::start().await;
    let a = replica(&redis).await;
    let b = replica(&redis).await;
    assert_eq!(drop_feed_connections(&redis).await, 2);
    a.revoke("fam-1", exp).await.unwrap();
    redis.flushall().await;
    let answer = b.is_revoked_consistent(jti("fam-1")).await;
    assert!(
        !matches!(answer, Ok(false)),
        "fam-1, revoked on A (which still holds it), reads as not revoked on B: {answer:?}"
    );
}

/// Attack: the `incomplete` record comes back after the fleet finished its restore (Redis is
/// restored from a backup, or fails over to a replica, whose data was taken between the
/// writer's last batch and the `done` step that deleted it), with every record written back
/// and the same epoch and counter the servers follow. What a user would lose: every server
/// started from then on waits 60 s and fails, until an operator deletes a key the
/// documentation tells them to delete only when no server holds the revocations any more,
/// while the running servers hold them all. Expected: a running server finds `incomplete`
/// without the marker, reads the records, finds them whole and deletes it; a server starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn regression_an_incomplete_record_back_from_a_backup_is_cleared_by_the_running_fleet() {
    const COPY: usize = 20_000;
    let exp = now() + 3600;
    let mut redis = RedisServer::start_persistent().await;
    // The revoked set, written straight into Redis in pipelines (a per-call fsync would take
    // seconds); both servers read it in their start snapshot.
    seed_records(&redis, "rt", COPY, exp).await;
    let a = replica(&redis).await;
    let b = replica(&redis).await;
    assert!(holds_all(&a, "rt", COPY).await && holds_all(&b, "rt", COPY).await);
    redis.flushall().await;
    // The backup: taken once every record is written back and before `incomplete` is gone.
    let backup = redis.data_dir().with_extension("backup");
    let caught = becomes_true(PATIENCE, || async {
        if redis.exists(INCOMPLETE).await && written_back(&redis).await >= COPY {
            copy_dir(redis.data_dir(), &backup);
            return true;
        }
        false
    })
    .await;
    assert!(caught, "the write-back never completed");
    assert!(
        restore_ended(&redis, &[&a, &b], PATIENCE).await,
        "the fleet never finished"
    );
    let counter = redis.get_u64(COUNTER).await;
    redis.kill();
    copy_dir(&backup, redis.data_dir());
    let _ = std::fs::remove_dir_all(&backup);
    redis.spawn().await;
    assert!(
        redis.exists(INCOMPLETE).await,
        "setup: the backup was taken after `incomplete` went"
    );
    assert_eq!(
        redis.get_u64(COUNTER).await,
        counter,
        "setup: the backup lacks part of the write-back"
    );
    assert!(holds_all(&a, "rt", COPY).await);
    // A running server that restores finishes within a read of the records and the marker's
    // hold (3 s); a start then waits for the marker.
    let started = tokio::time::timeout(START, async {
        RedisRevocation::connect(&redis.url())
            .await
            .unwrap()
            .replicate()
            .await
    })
    .await;
    assert!(
        matches!(started, Ok(Ok(_))),
        "a server could not start within {START:?} while both running servers hold every \
         revocation and the records are complete (`incomplete` present: {})",
        redis.exists(INCOMPLETE).await
    );
}

// =============================================================================================
// Holds.
// =============================================================================================

/// Attack: replay spent refresh tokens on every server, and spend fresh ones on two servers at
/// once, throughout a restore after Redis restarted empty (the writer writes back 20 000
/// entries in batches, the follower waits, then both read the records) and on a server started
/// meanwhile. Every spent token is refused (or the call fails closed), and each fresh token is
/// granted to one server at most. What a user would lose: refresh reuse detection.
#[tokio::test(flavor = "multi_thread", worker_threads = 6)]
async fn holds_use_once_during_a_restore_never_spends_twice() {
    const COPY: usize = 20_000;
    let exp = now() + 3600;
    let mut redis = RedisServer::start().await;
    let a = replica(&redis).await;
    let b = replica(&redis).await;
    spend_on(&a, &[&a, &b], "rt", COPY, exp).await;
    redis.restart().await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (k, store) in [a.clone(), b.clone()].into_iter().enumerate() {
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let (mut replays, mut granted) = (0usize, Vec::new());
            let mut i = k;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if store
                    .use_once(&format!("rt-{}", i % COPY), exp)
                    .await
                    .unwrap_or(false)
                {
                    replays += 1;
                }
                // Fresh tokens, asked of both servers.
                let fresh = format!("fresh-{}", i / 2);
                if store.use_once(&fresh, exp).await.unwrap_or(false) {
                    granted.push(fresh);
                }
                i += 1;
                tokio::task::yield_now().await;
            }
            (replays, granted)
        }));
    }
    // A server started during the restore waits for it and refuses every spent token.
    let c = replica(&redis).await;
    assert!(holds_all(&c, "rt", COPY).await, "C started without the set");
    for i in (0..COPY).step_by(97) {
        assert!(!c.use_once(&format!("rt-{i}"), exp).await.unwrap_or(false));
    }
    assert!(restore_ended(&redis, &[&a, &b, &c], PATIENCE).await);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut granted = std::collections::HashMap::<String, usize>::new();
    for t in tasks {
        let (replays, fresh) = t.await.unwrap();
        assert_eq!(replays, 0, "a spent refresh token was granted again");
        for f in fresh {
            *granted.entry(f).or_default() += 1;
        }
    }
    let twice: Vec<_> = granted.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "granted twice: {twice:?}");
}

/// Attack: revocations made on the follower while another server writes back (its
/// `revoke` goes through during the restore: it is a record and a stream entry past the
/// write-back's `w` entries), and a logout on the writer; a server started once the restore is
/// over holds them all with the written-back set, and so do the running servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_revocations_made_during_a_write_back_reach_every_server() {
    const COPY: usize = 30_000;
    let exp = now() + 3600;
    let mut redis = RedisServer::start().await;
    let a = replica(&redis).await;
    let b = replica(&redis).await;
    spend_on(&a, &[&a, &b], "rt", COPY, exp).await;
    redis.restart().await;
    assert!(becomes_true(PATIENCE, || async { written_back(&redis).await > 0 }).await);
    let (mut made_on_b, mut made_on_a) = (Vec::new(), Vec::new());
    for i in 0..50 {
        let name = format!("during-{i}");
        if b.revoke(&name, exp).await.is_ok() {
            made_on_b.push(name.clone());
        }
        let name = format!("during-a-{i}");
        if a.revoke(&name, exp).await.is_ok() {
            made_on_a.push(name);
        }
    }
    assert!(!made_on_b.is_empty() && !made_on_a.is_empty());
    let c = replica(&redis).await;
    assert!(restore_ended(&redis, &[&a, &b, &c], PATIENCE).await);
    for store in [&a, &b, &c] {
        for name in made_on_b.iter().chain(&made_on_a) {
            assert_eq!(revoked(store, jti(name)).await, Some(true), "{name}");
        }
        assert!(holds_all(store, "rt", COPY).await);
    }
}

/// Attack: Redis loses its data twice while a write-back is partway: the writer's next batch
/// finds another epoch, drops the write-back, and writes back again under the new epoch; a
/// server started once it is over holds the whole set.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_a_second_loss_mid_write_back_starts_the_write_back_over() {
    const COPY: usize = 40_000;
    let exp = now() + 3600;
    let mut redis = RedisServer::start().await;
    let a = replica(&redis).await;
    let b = replica(&redis).await;
    spend_on(&a, &[&a, &b], "rt", COPY, exp).await;
    redis.restart().await;
    assert!(becomes_true(PATIENCE, || async { written_back(&redis).await > 0 }).await);
    let at_flush = written_back(&redis).await;
    assert!(
        at_flush < COPY,
        "setup: the write-back ended before the flush"
    );
    redis.flushall().await;
    assert!(restore_ended(&redis, &[&a, &b], PATIENCE).await);
    let c = replica(&redis).await;
    assert!(holds_all(&c, "rt", COPY).await, "C started without the set");
    assert_eq!(jti_records(&redis).await, COPY);
}

/// Attack: a follower must read the records again (its feed was cut off long enough for the
/// entries it missed to be trimmed: here the trim the write scripts make after the retention
/// margin is made at once with `XTRIM`) while Redis is at its `maxmemory` with the recommended
/// `noeviction` (Redis holds every revocation; only new writes are refused). Nothing is missing
/// from Redis, so the follower has nothing to write: it reads the records and follows the
/// feed again, as a starting server does on a full Redis. What a user would lose: a restore
/// whose marker steps (a few bytes) a full Redis refused would retry forever and fail closed
/// (503 on every request) until records expire. Expected: the follower holds the entries it
/// missed and its checks answer again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn regression_a_follower_back_after_a_trim_recovers_on_a_full_redis() {
    let exp = now() + 3600;
    let redis = RedisServer::start().await;
    let mut conn = redis.inspect().await;
    redis.config_set("maxmemory-policy", "noeviction").await;
    let a = replica(&redis).await;
    let b = Freezable::start(&redis).await;
    a.revoke("before", exp).await.unwrap();
    assert!(
        becomes_true(PATIENCE, || async {
            revoked(&b.store, jti("before")).await == Some(true)
        })
        .await
    );
    let thaw = b.freeze().await;
    a.revoke("x", exp).await.unwrap();
    a.revoke("y", exp).await.unwrap();
    redis::cmd("XTRIM")
        .arg("jwt:feed")
        .arg("MAXLEN")
        .arg(0)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    // Redis is full: every command that may add memory is refused from now on.
    redis.config_set("maxmemory", 1).await;
    let refused = a.revoke("z", exp).await;
    assert!(refused.is_err(), "setup: Redis is not full: {refused:?}");
    drop(thaw);
    assert!(
        becomes_true(Duration::from_secs(8), || async {
            revoked(&b.store, jti("y")).await == Some(true) && restored(&b.store).await
        })
        .await,
        "B never read the records back on a full Redis that holds every revocation (y: {:?})",
        revoked(&b.store, jti("y")).await
    );
}

/// Attack: each of two running servers alone holds a revocation Redis lacks (their feeds were
/// reconnecting when the other revoked, and Redis then lost its data), and a large shared set
/// is lost too; both find the loss at once and race for the marker, each `done` step racing
/// the other's `take`; a server starts during the restore. Two rounds. The new server, and
/// each running server, ends up with both unique revocations and the shared set: neither
/// running server's `done` lets the other's write-back be skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_two_servers_with_unique_entries_racing_done_and_take_lose_nothing() {
    const COPY: usize = 5_000;
    let exp = now() + 3600;
    let redis = RedisServer::start().await;
    let a = replica(&redis).await;
    let b = replica(&redis).await;
    spend_on(&a, &[&a, &b], "rt", COPY, exp).await;
    for round in 0..2 {
        assert_eq!(drop_feed_connections(&redis).await, 2);
        let (on_a, on_b) = (format!("only-a-{round}"), format!("only-b-{round}"));
        a.revoke(&on_a, exp).await.unwrap();
        b.revoke(&on_b, exp).await.unwrap();
        redis.flushall().await;
        let c = replica(&redis).await;
        // C holds both from its first answer: its start waited for both write-backs.
        assert_eq!(revoked(&c, jti(&on_a)).await, Some(true), "round {round}");
        assert_eq!(revoked(&c, jti(&on_b)).await, Some(true), "round {round}");
        for store in [&a, &b] {
            assert!(
                becomes_true(PATIENCE, || async {
                    revoked(store, jti(&on_a)).await == Some(true)
                        && revoked(store, jti(&on_b)).await == Some(true)
                })
                .await,
                "round {round}: a server lacks a unique revocation"
            );
        }
        assert!(
            holds_all(&c, "rt", COPY).await,
            "round {round}: C lacks the set"
        );
        assert!(restore_ended(&redis, &[&a, &b, &c], PATIENCE).await);
    }
}

/// As `regression_use_once_on_a_lagging_server_never_spends_a_token_another_server_holds`, with a
/// crash for the loss: Redis without persistence is killed and started again right after A
/// spent `rt-1` (with `appendfsync everysec`, the last second of writes is lost the same way).
/// B's feed is in its backoff while Redis comes back; B's `use_once`, asked then, must not
/// spend `rt-1` again on the empty Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn regression_use_once_on_a_lagging_server_never_spends_a_token_another_server_holds_after_a_crash()
 {
    let exp = now() + 3600;
    let mut redis = RedisServer::start().await;
    let a = replica(&redis).await;
    let b = replica(&redis).await;
    assert_eq!(drop_feed_connections(&redis).await, 2);
    assert!(a.use_once("rt-1", exp).await.unwrap(), "A spends rt-1");
    redis.restart().await;
    // B's shared connection reconnects on its first use: ask until Redis answers or B refuses.
    let mut again = b.use_once("rt-1", exp).await;
    for _ in 0..100 {
        match &again {
            Err(e) if !e.to_string().contains("restored") && !e.to_string().contains("behind") => {
                tokio::time::sleep(Duration::from_millis(5)).await;
                again = b.use_once("rt-1", exp).await;
            }
            _ => break,
        }
    }
    assert!(
        !matches!(again, Ok(true)),
        "rt-1, spent on A (which still holds it), was spent again on B: {again:?}"
    );
}
