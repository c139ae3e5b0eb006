//! `ReplicatedRevocation` restoring a Redis that lost its data, against real `redis-server`
//! processes: one server writes back at a time (the restore marker `jwt:restoring` is a lock
//! with an owner), the others write only what Redis lacks, and a writer that stops is taken
//! over without losing anything.
//!
//! Waits are polls with a deadline (every 10 ms), never fixed sleeps.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::redis_server::RedisServer;
use common::replica::*;
use common::*;
use tower_jwt_auth::revocation::{ReplicatedRevocation, Revocation, RevocationStore, TokenId};

/// A deadline against a hang, not a latency check.
const PATIENCE: Duration = Duration::from_secs(30);

/// Spends `count` refresh `jti`s (`rt-0` …), spread over the servers of `fleet`, and waits
/// until every server holds every one; returns their names.
async fn spend(fleet: &[Arc<ReplicatedRevocation>], count: usize) -> Vec<String> {
    let exp = now() + 14 * 24 * 3600;
    let names: Vec<String> = (0..count).map(|i| format!("rt-{i}")).collect();
    let mut pending = Vec::new();
    for (i, chunk) in names.chunks(1000).enumerate() {
        let store = fleet[i % fleet.len()].clone();
        let chunk = chunk.to_vec();
        pending.push(tokio::spawn(async move {
            for j in chunk {
                assert!(store.use_once(&j, exp).await.unwrap());
            }
        }));
    }
    for p in pending {
        p.await.unwrap();
    }
    for store in fleet {
        assert!(
            becomes_true(PATIENCE, || async { holds_all(store, &names).await }).await,
            "a server never received every revocation"
        );
    }
    names
}

/// Whether `store` answers "revoked" for every one of `names`.
async fn holds_all(store: &ReplicatedRevocation, names: &[String]) -> bool {
    for j in names {
        if revoked(store, jti(j)).await != Some(true) {
            return false;
        }
    }
    true
}

/// After Redis restarted empty, the fleet writes back one copy of the revoked set, not one per
/// server: the first server to take the restore marker writes back its copy, the others wait
/// for it, read what Redis holds and find nothing missing. Every server answers again, every
/// spent `jti` is still refused on every server, and a server started afterwards refuses them
/// too. Were every server to write back its own copy, this fleet would write 8 x 15 000
/// entries, and larger fleets would outrun Redis's response timeout.
///
/// 8 servers x 15 000 entries in the suite; `RESTORE_SERVERS` and `RESTORE_COPY` set other sizes
/// for the measurement in BENCHMARKS.md (with `--nocapture`, the test prints what it saw).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn regression_after_an_empty_restart_the_fleet_writes_back_one_copy() {
    let size = |var: &str, default: usize| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (servers, copy) = (size("RESTORE_SERVERS", 8), size("RESTORE_COPY", 15_000));
    let mut redis = RedisServer::start().await;
    let mut fleet = Vec::new();
    for _ in 0..servers {
        fleet.push(replica(&redis).await);
    }
    let names = spend(&fleet, copy).await;
    assert_eq!(redis.get_u64(COUNTER).await, copy as u64);

    redis.restart().await;
    let restarted = std::time::Instant::now();
    assert!(
        becomes_true(PATIENCE, || async { redis.exists(MARKER).await }).await,
        "no server found the loss"
    );
    let stores: Vec<&ReplicatedRevocation> = fleet.iter().map(|s| &**s).collect();
    assert!(
        fleet_restored(&redis, &stores).await,
        "the fleet never finished restoring"
    );
    let took = restarted.elapsed();
    let written = written_back(&redis).await;
    eprintln!(
        "{servers} servers x {copy} entries: {written} written back; every server answers \
         and the marker is gone {took:?} after the restart"
    );
    assert!(
        (copy..=copy + copy / 10).contains(&written),
        "{written} entries written back for a revoked set of {copy} held by {servers} servers"
    );
    nothing_lost(&redis, &stores, &names).await;
}

/// Nothing was lost: Redis holds one record per spent `jti`, and every store of `fleet`, and
/// a server started now, refuses every one of `names`.
async fn nothing_lost(redis: &RedisServer, fleet: &[&ReplicatedRevocation], names: &[String]) {
    assert_eq!(jti_records(redis).await, names.len());
    for store in fleet {
        let began = std::time::Instant::now();
        for j in names {
            let answer = store.is_revoked(jti(j)).await;
            assert!(
                matches!(answer, Ok(true)),
                "a store answers {answer:?} for the spent {j}, {:?} into the checks",
                began.elapsed()
            );
        }
    }
    let late = replica(redis).await;
    assert!(
        holds_all(&late, names).await,
        "a new server lacks revocations"
    );
}

/// Redis's clock, in milliseconds (the clock the marker's claims are timed by).
async fn redis_now_ms(redis: &RedisServer) -> u64 {
    let mut conn = redis.inspect().await;
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await.unwrap();
    secs * 1000 + micros / 1000
}

/// Waits until every store of `fleet` has finished restoring, the marker is gone, and every
/// feed runs again: a subject revoked through the first store reaches all of them. (A store
/// that just finished restoring answers its checks only once its feed has read again.)
async fn fleet_restored(redis: &RedisServer, fleet: &[&ReplicatedRevocation]) -> bool {
    let done = restore_ended(redis, fleet, PATIENCE).await;
    let sub = format!("sentinel-{:x}", rand::random::<u64>());
    let Some(first) = fleet.first() else {
        return done;
    };
    if !done
        || first
            .revoke_subject(None, &sub, now() + 1, now() + 60)
            .await
            .is_err()
    {
        return false;
    }
    let token = TokenId::new(None, None, Some(&sub), Some(now()));
    becomes_true(PATIENCE, || async {
        for store in fleet {
            if revoked(store, token).await != Some(true) {
                return false;
            }
        }
        true
    })
    .await
}

/// The server writing back stops in the middle (its last handle is dropped, so its task
/// ends): its claim on the marker lapses while the marker itself stays, and another server,
/// which was paused until then, takes the marker over and writes back what Redis still lacks
/// (not its whole copy). Nothing is lost, and a server started afterwards refuses every spent
/// `jti`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_writer_that_stops_mid_write_back_is_taken_over_and_nothing_is_lost() {
    const COPY: usize = 40_000;
    let mut redis = RedisServer::start().await;
    let a = replica(&redis).await;
    let b = Freezable::start(&redis).await;
    let names = spend(&[a.clone(), b.store.clone()], COPY).await;
    // B cannot find the loss: A is the one that writes back.
    let thaw = b.freeze().await;
    redis.restart().await;
    assert!(
        becomes_true(PATIENCE, || async { written_back(&redis).await > 0 }).await,
        "A never wrote back"
    );
    drop(a);
    let at_stop = written_back(&redis).await;
    assert!(
        at_stop < COPY,
        "A finished before it was stopped ({at_stop})"
    );
    let claim = marker(&redis).await.unwrap();
    assert!(claim.contains(':'), "A owned the marker: {claim}");
    drop(thaw);

    assert!(
        fleet_restored(&redis, &[&b.store]).await,
        "B never took over"
    );
    let written = written_back(&redis).await;
    assert!(written > at_stop, "B wrote back nothing");
    assert!(
        written <= COPY + COPY / 10,
        "{written} entries written back for {COPY}: B wrote back more than Redis lacked"
    );
    nothing_lost(&redis, &[&b.store], &names).await;
}

/// The restore marker has an owner: a server whose claim was taken over (here the test claims
/// it for an owner of its own, as a server that found the writer's claim lapsed would) stops
/// writing back after the batch in flight, and never renews, replaces or deletes the other
/// owner's claim; once that claim lapses, it takes the marker over and finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_never_renews_or_deletes_a_marker_it_does_not_own() {
    const COPY: usize = 40_000;
    let mut redis = RedisServer::start().await;
    let a = replica(&redis).await;
    let names = spend(std::slice::from_ref(&a), COPY).await;
    redis.restart().await;
    assert!(
        becomes_true(PATIENCE, || async { written_back(&redis).await > 0 }).await,
        "A never wrote back"
    );
    let until = redis_now_ms(&redis).await + 2000;
    let foreign = format!("{}:{until}", "ab".repeat(16));
    let mut conn = redis.inspect().await;
    redis::cmd("SET")
        .arg(MARKER)
        .arg(&foreign)
        .arg("PX")
        .arg(10_000)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let at_claim = written_back(&redis).await;
    assert!(at_claim < COPY, "A finished before the claim ({at_claim})");
    while redis_now_ms(&redis).await < until {
        assert_eq!(marker(&redis).await.as_deref(), Some(foreign.as_str()));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // At most the batch in flight (1 000 entries) was written after the claim.
    let during = written_back(&redis).await - at_claim;
    assert!(
        during <= 1000,
        "A wrote {during} entries under another's claim"
    );

    assert!(fleet_restored(&redis, &[&a]).await, "A never finished");
    assert!(written_back(&redis).await <= COPY + COPY / 10);
    nothing_lost(&redis, &[&a], &names).await;
}

/// A write-back cut short (here its connection is killed in the middle) resumes at the first
/// batch Redis had not acknowledged once the server reconnects, instead of starting over:
/// about one copy is written back in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_back_cut_short_resumes_where_it_stopped() {
    const COPY: usize = 40_000;
    let mut redis = RedisServer::start().await;
    let a = replica(&redis).await;
    let names = spend(std::slice::from_ref(&a), COPY).await;
    redis.restart().await;
    assert!(
        becomes_true(PATIENCE, || async {
            written_back(&redis).await >= COPY / 4
        })
        .await,
        "A never wrote back"
    );
    let mut conn = redis.inspect().await;
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let at_kill = written_back(&redis).await;
    assert!(
        at_kill < COPY,
        "A finished before its connection was killed ({at_kill})"
    );

    assert!(fleet_restored(&redis, &[&a]).await, "A never finished");
    let written = written_back(&redis).await;
    // The batch in flight (1 000 entries) may be written twice; nothing else.
    assert!(
        (COPY..=COPY + 1000).contains(&written),
        "{written} entries written back for {COPY} ({at_kill} before the connection was killed)"
    );
    nothing_lost(&redis, &[&a], &names).await;
}
