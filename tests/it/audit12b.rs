//! Outside audit 12b: attacks on the fixes of audit 12 (`ReplicatedRevocation`, sequence
//! numbers, restore marker, local-first `use_once` / `is_revoked_consistent`), against real
//! `redis-server` processes.
//!
//! `regression_*` tests check a property the audit found broken, now held; `holds_*` tests
//! check a property that was attacked and held. Waits are polls with a deadline, never fixed
//! sleeps.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use common::replica::*;
use common::*;
use tower_jwt_auth::revocation::{RedisRevocation, Revocation, RevocationStore, TokenId};

const PATIENCE: Duration = Duration::from_secs(15);

// =============================================================================================
// Regressions: the properties the audit found broken, now held.
// =============================================================================================

/// A subject record whose value is not a number (the layout audit 12's fix declares honoured:
/// the snapshot reads it as "every token of the subject revoked") wedges every restore: the
/// write-back re-sends it through `REVOKE_SUBJECT`, whose `math.max(tonumber(GET), …)` raises a
/// Lua error on it; the pipeline returns that error, `restore` fails before any `jti` is
/// written back, `step` reconnects and restores again, forever. Meanwhile the server never
/// confirms its feed (every check fails: 503 for good), holds the restore marker for good (no
/// server can start: `replicate()` never returns), and never writes back the lost
/// revocations; every loop also re-appends its subjects to the stream.
///
/// Here the trigger is a backup restore (same epoch) that lost one logout; any restore does it
/// (a flush, trimmed-unread entries after a pause) while such a record is in Redis.
#[tokio::test]
async fn regression_a_subject_record_without_a_number_never_stops_a_restore() {
    let mut redis = RedisServer::start_persistent().await;
    let dir = redis.data_dir().clone();
    let backup = dir.with_extension("backup12b");
    let exp = now() + 3600;
    {
        let mut conn = redis.inspect().await;
        redis::cmd("SET")
            .arg("jwt:sub:0::ops-user")
            .arg("everything")
            .arg("EXAT")
            .arg(exp)
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
    }
    let a = replica(&redis).await;
    let ops_user = TokenId::new(None, None, Some("ops-user"), Some(now()));
    assert_eq!(revoked(&a, ops_user).await, Some(true));
    a.revoke("before-backup", exp).await.unwrap();
    copy_dir(&dir, &backup);
    a.revoke("after-backup", exp).await.unwrap();

    redis.kill();
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&backup, &dir);
    let _ = std::fs::remove_dir_all(&backup);
    redis.spawn().await;

    // A finds the rewind (counter below what it applied) and writes back.
    let written_back = becomes_true(PATIENCE, || async {
        redis.exists("jwt:jti:after-backup").await
    })
    .await;
    let a2 = a.clone();
    let a_recovers = becomes_true(Duration::from_secs(5), || {
        let a = a2.clone();
        async move { revoked(&a, jti("after-backup")).await == Some(true) }
    })
    .await;
    let b = tokio::time::timeout(
        Duration::from_secs(10),
        RedisRevocation::connect(&redis.url())
            .await
            .unwrap()
            .replicate(),
    )
    .await;
    let b_started = matches!(b, Ok(Ok(_)));
    let seq = redis.get_u64("jwt:seq").await;
    assert!(
        written_back && a_recovers && b_started,
        "a restore never completes while a non-numeric subject record is in Redis: lost jti \
         written back: {written_back}, A answers checks again: {a_recovers}, a new server \
         starts within 10 s: {b_started} (restore marker present: {}, counter: {seq})",
        redis.exists("jwt:restoring").await
    );
}

/// A `jti` record of another type than a string (a hash here: any other tool sharing the
/// default `jwt:` prefix, or an operator's script) makes every snapshot fail: `read_records`
/// pipelines `GET` on every record, jti records included (whose value the doc says is not
/// read), and a `WRONGTYPE` error fails the whole pipeline. `replicate()` returns an error, so
/// no server can start, and a running server's restore (which ends with a snapshot) fails
/// over and over. `RedisRevocation` treats the same key as revoked (`EXISTS`).
#[tokio::test]
async fn regression_a_record_of_another_type_never_fails_a_snapshot() {
    let redis = RedisServer::start().await;
    let mut conn = redis.inspect().await;
    redis::cmd("HSET")
        .arg("jwt:jti:odd")
        .arg("reason")
        .arg("compromised")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    redis::cmd("EXPIREAT")
        .arg("jwt:jti:odd")
        .arg(now() + 3600)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let plain = RedisRevocation::connect(&redis.url()).await.unwrap();
    assert!(plain.is_revoked(jti("odd")).await.unwrap());
    let started = RedisRevocation::connect(&redis.url())
        .await
        .unwrap()
        .replicate()
        .await;
    match started {
        Ok(b) => assert_eq!(revoked(&b, jti("odd")).await, Some(true)),
        Err(e) => panic!(
            "a single jti record of another type makes the start snapshot fail, so no server \
             can start: {e}"
        ),
    }
}

// =============================================================================================
// Held properties: these tests pass.
// =============================================================================================

/// Writes (INCR + XADD in one script) racing the followers' reads (GET counter, then XREAD, in
/// one pipeline) never look like a loss: under 8 000 concurrent writes from two servers, three
/// followers keep up, no server ever holds the restore marker, and the counter is exactly the
/// number of writes (a spurious restore would write the copy back and raise it by thousands).
#[tokio::test]
async fn holds_concurrent_writes_never_trigger_a_spurious_restore() {
    let redis = RedisServer::start().await;
    let w1 = replica(&redis).await;
    let w2 = replica(&redis).await;
    let mut followers = Vec::new();
    for _ in 0..3 {
        followers.push(replica(&redis).await);
    }
    let seen_marker = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (seen, done) = (seen_marker.clone(), done.clone());
        let mut conn = redis.inspect().await;
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let e: bool = redis::cmd("EXISTS")
                    .arg("jwt:restoring")
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                if e {
                    seen.store(true, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let exp = now() + 3600;
    let mut tasks = Vec::new();
    for (w, name) in [(w1.clone(), "w1"), (w2.clone(), "w2")] {
        for t in 0..8 {
            let w = w.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..500 {
                    let j = format!("{name}-{t}-{i}");
                    if i % 2 == 0 {
                        w.revoke(&j, exp).await.unwrap();
                    } else {
                        assert!(w.use_once(&j, exp).await.unwrap());
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    for f in &followers {
        let ok = becomes_true(PATIENCE, || async {
            for name in ["w1", "w2"] {
                for t in 0..8 {
                    if revoked(f, jti(&format!("{name}-{t}-499"))).await != Some(true) {
                        return false;
                    }
                }
            }
            true
        })
        .await;
        assert!(ok, "a follower fell behind");
    }
    done.store(true, Ordering::Relaxed);
    watcher.await.unwrap();
    assert!(!seen_marker.load(Ordering::Relaxed), "a spurious restore");
    assert_eq!(redis.get_u64("jwt:seq").await, 8000);
}

/// `use_once` local-first never refuses a legitimate first use: a `jti` that lost the `SET NX`
/// race on one server is not in any copy (the script writes no entry), and an unrelated
/// revocation never makes a fresh `jti` "used". Two servers race 200 distinct jtis each once:
/// every jti is granted exactly once across the fleet.
#[tokio::test]
async fn holds_use_once_grants_each_jti_exactly_once_across_servers() {
    let redis = RedisServer::start().await;
    let a = replica(&redis).await;
    let b = replica(&redis).await;
    let exp = now() + 3600;
    for i in 0..200 {
        let j = format!("rt-{i}");
        let (ra, rb) = tokio::join!(a.use_once(&j, exp), b.use_once(&j, exp));
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert!(ra ^ rb, "{j}: {ra} {rb}");
    }
    // A fresh jti on either server is granted (nothing leaked into the copies).
    assert!(a.use_once("fresh-a", exp).await.unwrap());
    assert!(b.use_once("fresh-b", exp).await.unwrap());
}

/// Redis restarted empty again in the middle of a restore: the restore starts over on the new
/// epoch, and a server started afterwards never accepts what the fleet revoked.
#[tokio::test]
async fn holds_a_second_restart_mid_restore_converges() {
    let mut redis = RedisServer::start().await;
    let a = replica(&redis).await;
    let exp = now() + 14 * 24 * 3600;
    let mut pending = Vec::new();
    for chunk in 0..50 {
        let a = a.clone();
        pending.push(tokio::spawn(async move {
            for i in 0..1000 {
                a.use_once(&format!("rt-{chunk}-{i}"), exp).await.unwrap();
            }
        }));
    }
    for p in pending {
        p.await.unwrap();
    }
    let t = now();
    a.revoke_subject(Some(ISSUER), "victim", t + 1, t + 3600)
        .await
        .unwrap();
    let victim = TokenId::new(Some(ISSUER), Some("victim-jti"), Some("victim"), Some(t));
    redis.restart().await;
    // Wait until A is writing back (the counter rises), then empty Redis again.
    let restoring = becomes_true(PATIENCE, || async { redis.get_u64("jwt:seq").await > 0 }).await;
    assert!(restoring);
    redis.restart().await;
    let b = replica(&redis).await;
    let started = Instant::now();
    loop {
        match b.is_revoked(victim).await {
            Ok(true) => break,
            Ok(false) => panic!("B accepted a logged-out user's token"),
            Err(_) => {}
        }
        assert!(started.elapsed() < PATIENCE, "B never learnt the logout");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        becomes_true(PATIENCE, || async {
            revoked(&b, jti("rt-49-999")).await == Some(true)
        })
        .await
    );
}
