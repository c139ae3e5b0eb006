//! Outside audit 12: `ReplicatedRevocation` (src/revocation/replica) against real
//! `redis-server` processes.
//!
//! `regression_*` tests check a property the audit found broken, now held;
//! `holds_*` tests check a property the audit attacked and found to hold.
//!
//! Waits are polls with a deadline (every 10 ms), never fixed sleeps.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use common::replica::*;
use common::sessions::{REFRESH_SECRET, Roles};
use common::*;
use tower_jwt_auth::issue::{RefreshError, RefreshTokens};
use tower_jwt_auth::revocation::{RedisRevocation, Revocation, RevocationStore, TokenId};

/// A deadline against a hang, not a latency check.
const PATIENCE: Duration = Duration::from_secs(15);

fn sessions(store: Arc<dyn RevocationStore>) -> RefreshTokens<Roles> {
    RefreshTokens::<Roles>::new(access_issuer(), REFRESH_SECRET, store).unwrap()
}

/// Polls `f` every 10 ms until it returns `Some`, for at most `within`.
async fn poll<T, F, Fut>(within: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(t) = f().await {
            return t;
        }
        assert!(started.elapsed() < within, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// =============================================================================================
// Regressions: the properties the audit found broken, now held.
// =============================================================================================

/// A Redis restored from an older backup (or a crash that lost its last writes, or a failover
/// to a lagging replica) keeps its epoch, and writes made after the restore push the stream's
/// ids past every follower's position; it is found all the same, because every write numbers
/// its entry from a counter in Redis (`<prefix>seq`) that only rises: a running server that
/// applied entries up to n and finds the counter below n, or entries numbered n or less after
/// the ones it applied, knows entries were lost. It writes its copy back, so the lost
/// revocations are in Redis again, a server started after the restore learns them, the
/// consistent check sees them, and a spent refresh token stays spent.
#[tokio::test]
async fn regression_a_restored_backup_is_found_even_after_new_writes() {
    let mut redis = RedisServer::start_persistent().await;
    let dir = redis.data_dir().clone();
    assert!(dir.exists(), "{dir:?}");
    let backup = dir.with_extension("backup");
    let bound = Duration::from_millis(500);
    let a = bounded_replica(&redis, bound).await;

    let exp = now() + 3600;
    a.revoke("before-backup", exp).await.unwrap();
    copy_dir(&dir, &backup);
    // Written after the backup: lost when it is restored.
    a.revoke("after-backup", exp).await.unwrap();
    assert!(a.use_once("spent-refresh-jti", exp).await.unwrap());
    assert_eq!(revoked(&a, jti("after-backup")).await, Some(true));

    // Redis crashes; the operator restores the backup. Redis stays down long enough for A's
    // feed to back off (A fails closed meanwhile, as it should).
    redis.kill();
    poll(PATIENCE, "A fails closed while Redis is down", || async {
        a.is_revoked(jti("x")).await.is_err().then_some(())
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&backup, &dir);
    let _ = std::fs::remove_dir_all(&backup);
    redis.spawn().await;

    // A server starts right away and a user logs out on it: one XADD.
    let b = replica(&redis).await;
    b.revoke("logout-after-restore", exp).await.unwrap();

    // A's feed resumes (it sees B's logout)…
    poll(PATIENCE, "A's feed resumes", || async {
        (revoked(&a, jti("logout-after-restore")).await == Some(true)).then_some(())
    })
    .await;
    // …and A still holds the lost entries in its own copy.
    assert_eq!(revoked(&a, jti("after-backup")).await, Some(true));

    // A found the loss and wrote its copy back: B has it from the feed within milliseconds.
    // Given 3 s.
    let b2 = b.clone();
    let b_learns = becomes_true(Duration::from_secs(3), || {
        let b = b2.clone();
        async move { revoked(&b, jti("after-backup")).await == Some(true) }
    })
    .await;
    let in_redis = redis.exists("jwt:jti:after-backup").await;
    let consistent = b.is_revoked_consistent(jti("after-backup")).await.unwrap();
    let respendable = b.use_once("spent-refresh-jti", exp).await.unwrap();
    assert!(
        b_learns && in_redis && consistent && !respendable,
        "revocations lost by the restore were never detected nor written back: \
         B sees the revoked jti revoked: {b_learns}, record in Redis: {in_redis}, \
         is_revoked_consistent: {consistent}, spent refresh jti spendable again: {respendable}"
    );
}

/// A refresh token this server holds as spent is never redeemed again after Redis lost its
/// data (flushed here), before anything was written back: right after the loss, the family
/// check fails closed (Redis no longer holds the epoch the server follows: whether the family
/// is revoked cannot be known), and once the server has restored Redis, `use_once` answers
/// "already used" from its own copy, whose record Redis had lost. Reuse is then detected and
/// the family revoked.
#[tokio::test]
async fn regression_a_spent_refresh_token_stays_spent_after_a_redis_flush() {
    let redis = RedisServer::start().await;
    let store = replica(&redis).await;
    let sessions = sessions(store.clone());

    let pair = sessions.issue("alice", &Roles { roles: vec![] }).unwrap();
    let stolen = pair.refresh.token.clone();
    let _legit = sessions.refresh(&stolen).await.unwrap();
    // The server's own copy knows the refresh token is spent.
    assert_eq!(revoked(&store, jti(&pair.refresh.jti)).await, Some(true));

    redis.flushall().await;
    let detected = becomes_true(Duration::from_secs(15), || async {
        match sessions.refresh(&stolen).await {
            Err(RefreshError::ReuseDetected) => true,
            Err(RefreshError::Store(_)) => false,
            other => panic!(
                "a refresh token this server held as spent was not refused after a Redis \
                 flush: {:?}",
                other.map(|_| "a new token pair")
            ),
        }
    })
    .await;
    assert!(detected, "reuse was never detected after the restore");
}

/// A refresh family this server holds as revoked stays revoked after Redis lost its data
/// (flushed here): `is_revoked_consistent`, with which rotation checks the family, is the
/// server's own copy or Redis, so an entry Redis lost still counts.
#[tokio::test]
async fn regression_a_revoked_family_stays_revoked_after_a_redis_flush() {
    let redis = RedisServer::start().await;
    let store = replica(&redis).await;
    let sessions = sessions(store.clone());

    let pair = sessions.issue("alice", &Roles { roles: vec![] }).unwrap();
    sessions.revoke_family(&pair.refresh.token).await.unwrap();
    assert!(matches!(
        sessions.refresh(&pair.refresh.token).await,
        Err(RefreshError::Revoked)
    ));

    redis.flushall().await;
    let again = sessions.refresh(&pair.refresh.token).await;
    assert!(
        matches!(again, Err(RefreshError::Revoked)),
        "a family this server held as revoked rotated after a Redis flush: {:?}",
        again.map(|_| "a new token pair")
    );
}

/// A server started against a Redis that came back empty never accepts a revoked token that
/// a running server still holds, however large the running servers' copies (here 200 000
/// spent refresh tokens, which any holder of one refresh token can grow, and one account-wide
/// logout). A new epoch is created together with a restore marker held for 2 s, longer than a
/// running server takes to find the loss once Redis answers; a running server that finds it
/// holds the marker for as long as it writes back (each batch extends it); and a server
/// starts, or confirms its feed after a restore, only once the marker is gone. So the new
/// server's snapshot is taken after every write-back, and it answers nothing before.
#[tokio::test]
async fn regression_a_server_started_on_an_emptied_redis_never_accepts_what_the_fleet_revoked() {
    let mut redis = RedisServer::start().await;
    let a = replica(&redis).await;
    let exp = now() + 14 * 24 * 3600;
    // The attacker's refresh loop: one used jti per rotation.
    let mut pending = Vec::new();
    for chunk in 0..200 {
        let a = a.clone();
        pending.push(tokio::spawn(async move {
            for i in 0..1000 {
                assert!(a.use_once(&format!("rt-{chunk}-{i}"), exp).await.unwrap());
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
    let starting = Instant::now();
    let b = replica(&redis).await;
    let b_started_after = starting.elapsed();
    let started = Instant::now();
    let mut accepted_for = None;
    // Meanwhile the running server A, busy re-seeding, fails closed once past its bound.
    let mut a_503_for = Duration::ZERO;
    loop {
        if a.is_revoked(victim).await.is_err() {
            a_503_for = started.elapsed();
        }
        match b.is_revoked(victim).await {
            Ok(true) => break,
            Ok(false) => accepted_for = Some(started.elapsed()),
            Err(_) => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "B never learnt the logout"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        accepted_for, None,
        "a server started after Redis came back empty accepted a logged-out user's token \
         (until the time given, after a start of {b_started_after:?}); the running server \
         meanwhile answered 503 until {a_503_for:?} (0 s: never)"
    );
}

/// A revocation whose stream entry is trimmed away before a running follower reads it still
/// reaches that follower, and the follower never answers "not revoked" for it past its
/// staleness bound. The write scripts trim below Redis's own clock (`TIME`, the clock stream
/// ids come from), so a writer's clock no longer decides what goes; and an entry that goes
/// unread all the same (here: a writer that numbers its entry, then trims with a `MINID`
/// beyond every id, as a writer whose clock runs 10 minutes ahead did when it computed the
/// trim point) leaves a gap in the entry numbers: the follower sees the counter past the last
/// entry it could read, stops confirming its feed, and reads the records again.
#[tokio::test]
async fn regression_a_revocation_trimmed_from_the_stream_unread_still_reaches_the_followers() {
    const TRIMMING_REVOKE_JTI: &str = r"
local seq = redis.call('INCR', KEYS[3])
redis.call('SET', KEYS[1], 1, 'EXAT', ARGV[2])
redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[3], '*',
  'seq', seq, 't', 'j', 'jti', ARGV[1], 'until', ARGV[2])
";
    let redis = RedisServer::start().await;
    let bound = Duration::from_secs(1);
    let a = bounded_replica(&redis, bound).await;
    let honest = replica(&redis).await;
    let exp = now() + 3600;
    honest.revoke("warm-up", exp).await.unwrap();
    poll(PATIENCE, "A follows the feed", || async {
        (revoked(&a, jti("warm-up")).await == Some(true)).then_some(())
    })
    .await;

    // The skewed writer logs a user out and trims with the MINID its clock gives.
    let skewed_now_ms = (now() + 600) * 1000;
    let minid = format!("{}-0", skewed_now_ms - 300_000);
    let mut conn = redis.inspect().await;
    let written = Instant::now();
    redis::Script::new(TRIMMING_REVOKE_JTI)
        .key("jwt:jti:stolen")
        .key("jwt:feed")
        .key("jwt:seq")
        .arg("stolen")
        .arg(exp + 301)
        .arg(&minid)
        .invoke_async::<()>(&mut conn)
        .await
        .unwrap();
    assert!(
        redis.exists("jwt:jti:stolen").await,
        "the record is written"
    );
    let left: u64 = redis::cmd("XLEN")
        .arg("jwt:feed")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 0, "the entry was trimmed with the rest of the stream");

    // A later revocation by a correct server reaches A: its feed is live…
    honest.revoke("later", exp).await.unwrap();
    // …and so does the trimmed one: A answers "not revoked" for it no longer than its bound
    // (then fails closed until it has read the records).
    let mut last_not_revoked = None;
    loop {
        match revoked(&a, jti("stolen")).await {
            Some(true) => break,
            Some(false) => last_not_revoked = Some(written.elapsed()),
            None => {}
        }
        assert!(
            written.elapsed() < PATIENCE,
            "timed out waiting for: A learns the trimmed revocation"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        last_not_revoked.is_none_or(|at| at <= bound),
        "A answered 'not revoked' for a revocation trimmed unread {last_not_revoked:?} after \
         it was written (bound {bound:?})"
    );
    assert_eq!(revoked(&a, jti("later")).await, Some(true));
    let fresh = replica(&redis).await;
    assert_eq!(revoked(&fresh, jti("stolen")).await, Some(true));
}

/// A `jti` record revokes its `jti` whatever value it holds, in the snapshot as in
/// `RedisRevocation` (`EXISTS`): a revocation written by an operator's script or another tool
/// in the documented key layout (`SET jwt:jti:<jti> revoked EXAT …`) is honoured by both
/// stores alike. A subject record whose value is not a number cannot say which tokens it
/// reaches: `RedisRevocation` fails on it, and the snapshot reads it as revoking every token
/// of the subject; neither lets one through.
#[tokio::test]
async fn regression_the_snapshot_reads_every_record_whatever_its_value() {
    let redis = RedisServer::start().await;
    let mut conn = redis.inspect().await;
    redis::cmd("SET")
        .arg("jwt:jti:ops-revoked")
        .arg("revoked")
        .arg("EXAT")
        .arg(now() + 3600)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let plain = RedisRevocation::connect(&redis.url()).await.unwrap();
    assert!(plain.is_revoked(jti("ops-revoked")).await.unwrap());
    let a = replica(&redis).await;
    assert!(a.is_revoked_consistent(jti("ops-revoked")).await.unwrap());
    assert_eq!(
        revoked(&a, jti("ops-revoked")).await,
        Some(true),
        "the replica's snapshot skipped a jti record RedisRevocation treats as revoked"
    );

    redis::cmd("SET")
        .arg("jwt:sub:0::ops-user")
        .arg("everything")
        .arg("EXAT")
        .arg(now() + 3600)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let user = TokenId::new(None, None, Some("ops-user"), Some(now()));
    assert!(plain.is_revoked(user).await.is_err());
    let b = replica(&redis).await;
    assert_eq!(revoked(&b, user).await, Some(true));
}

// =============================================================================================
// Held properties: these tests pass.
// =============================================================================================

/// A refresh token redeemed at once on two servers: exactly one wins, the other trips reuse
/// detection, and the winner's new token is then refused on both (family revoked).
#[tokio::test]
async fn holds_concurrent_redemption_on_two_servers_trips_reuse_detection() {
    let redis = RedisServer::start().await;
    let sa = sessions(replica(&redis).await);
    let sb = sessions(replica(&redis).await);
    for round in 0..20 {
        let pair = sa
            .issue(&format!("user{round}"), &Roles { roles: vec![] })
            .unwrap();
        let (ra, rb) = tokio::join!(
            sa.refresh(&pair.refresh.token),
            sb.refresh(&pair.refresh.token)
        );
        let (winner, loser) = match (ra, rb) {
            (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
            (a, b) => panic!("round {round}: {:?} / {:?}", a.is_ok(), b.is_ok()),
        };
        assert!(matches!(loser, RefreshError::ReuseDetected), "{loser:?}");
        for s in [&sa, &sb] {
            assert!(matches!(
                s.refresh(&winner.refresh.token).await,
                Err(RefreshError::Revoked)
            ));
        }
    }
}

/// Revocations written while a server takes its start snapshot (between reading the stream's
/// last id and the end of the SCAN) all reach it.
#[tokio::test]
async fn holds_revocations_during_the_start_snapshot_are_not_lost() {
    let redis = RedisServer::start().await;
    let writer = replica(&redis).await;
    let exp = now() + 3600;
    // Enough records that the SCAN takes several round trips.
    for i in 0..3000 {
        writer.revoke(&format!("old-{i}"), exp).await.unwrap();
    }
    let w = writer.clone();
    let writing = tokio::spawn(async move {
        for i in 0..400 {
            w.revoke(&format!("during-{i}"), exp).await.unwrap();
        }
    });
    let mut followers = Vec::new();
    for _ in 0..4 {
        followers.push(replica(&redis).await);
    }
    writing.await.unwrap();
    for f in &followers {
        poll(
            PATIENCE,
            "every revocation reaches the follower",
            || async {
                for i in (0..400).rev() {
                    if revoked(f, jti(&format!("during-{i}"))).await != Some(true) {
                        return None;
                    }
                }
                Some(())
            },
        )
        .await;
        for i in (0..3000).step_by(97) {
            assert_eq!(revoked(f, jti(&format!("old-{i}"))).await, Some(true));
        }
    }
}

/// A backup restored with no write before the followers recheck is detected (the stream's
/// last id went backwards) and the lost entries are written back: the complement of F1.
#[tokio::test]
async fn holds_backup_restore_without_intervening_write_is_detected() {
    let mut redis = RedisServer::start_persistent().await;
    let dir = redis.data_dir().clone();
    let backup = dir.with_extension("backup2");
    let a = replica(&redis).await;
    let exp = now() + 3600;
    a.revoke("before-backup", exp).await.unwrap();
    copy_dir(&dir, &backup);
    a.revoke("after-backup", exp).await.unwrap();
    redis.kill();
    let _ = std::fs::remove_dir_all(&dir);
    copy_dir(&backup, &dir);
    let _ = std::fs::remove_dir_all(&backup);
    redis.spawn().await;
    poll(PATIENCE, "A writes the lost entry back", || async {
        redis.exists("jwt:jti:after-backup").await.then_some(())
    })
    .await;
    let b = replica(&redis).await;
    assert_eq!(revoked(&b, jti("after-backup")).await, Some(true));
}

/// Subject keys built from token data: `iss`/`sub` holding ':' , the prefix, glob characters
/// or "jti:" neither collide nor get misparsed by the snapshot of a server started later;
/// "no iss" is scoped apart from a real issuer.
#[tokio::test]
async fn holds_subject_keys_from_token_data_do_not_collide() {
    let redis = RedisServer::start().await;
    let a = replica(&redis).await;
    let t = now();
    let cases: [(Option<&str>, &str); 5] = [
        (Some("a:1"), "b"),
        (Some("jwt:sub:"), "*?[x]\\"),
        (None, "jti:evil"),
        (Some("https://id.test"), "al:ice:"),
        (Some(""), "empty-iss"),
    ];
    for (iss, sub) in cases {
        a.revoke_subject(iss, sub, t + 1, t + 3600).await.unwrap();
    }
    let b = replica(&redis).await;
    for store in [&a, &b] {
        for (iss, sub) in cases {
            let id = TokenId::new(iss, None, Some(sub), Some(t));
            assert_eq!(revoked(store, id).await, Some(true), "{iss:?} {sub:?}");
        }
        // Neighbours that a naive `iss:sub` key would confuse.
        for (iss, sub) in [
            (Some("a"), "1:b"),
            (Some("a:1:b"), ""),
            (Some("jwt:sub"), ":*?[x]\\"),
            (Some("https://id.test:al"), "ice:"),
            (Some("other"), "jti:evil"),
        ] {
            let id = TokenId::new(iss, None, Some(sub), Some(t));
            assert_eq!(revoked(store, id).await, Some(false), "{iss:?} {sub:?}");
        }
        // Not before is strict: a token issued at or after the cut-off passes.
        let later = TokenId::new(Some("a:1"), None, Some("b"), Some(t + 1));
        assert_eq!(revoked(store, later).await, Some(false));
        // jti "evil" must not be revoked by the subject "jti:evil".
        assert_eq!(revoked(store, jti("evil")).await, Some(false));
    }
}

/// A Redis that accepts connections but never answers (SIGSTOP: a hung process, or a
/// half-open path): checks fail closed within the bound (plus scheduling slack), and recover
/// once it answers again.
#[tokio::test]
async fn holds_a_silent_redis_fails_closed_within_the_bound() {
    let redis = RedisServer::start().await;
    let bound = Duration::from_millis(600);
    let a = bounded_replica(&redis, bound).await;
    let pid: String = {
        let mut conn = redis.inspect().await;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await
            .unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .unwrap()
            .trim()
            .to_owned()
    };
    let signal = |sig: &str| {
        assert!(
            std::process::Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        );
    };
    assert_eq!(revoked(&a, jti("x")).await, Some(false));
    signal("-STOP");
    let stopped = Instant::now();
    poll(PATIENCE, "checks fail closed", || async {
        a.is_revoked(jti("x")).await.is_err().then_some(())
    })
    .await;
    let took = stopped.elapsed();
    signal("-CONT");
    assert!(took < bound + Duration::from_millis(700), "{took:?}");
    // While stopped, every answer was either fresh or an error: never a stale "not revoked"
    // past the bound (checked by the timing above). It recovers:
    poll(PATIENCE, "checks pass again", || async {
        (revoked(&a, jti("x")).await == Some(false)).then_some(())
    })
    .await;
}

/// The copy keeps an entry exactly as long as its Redis record (`exp` + margin + 1 s): a
/// server started later reads the same instant from `EXPIRETIME`.
#[tokio::test]
async fn holds_the_copy_keeps_entries_for_the_retention_margin() {
    let redis = RedisServer::start().await;
    let a = replica(&redis).await;
    let exp = now() + 10;
    a.revoke("short", exp).await.unwrap();
    let mut conn = redis.inspect().await;
    let at: i64 = redis::cmd("EXPIRETIME")
        .arg("jwt:jti:short")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        at as u64,
        exp + tower_jwt_auth::revocation::DEFAULT_RETENTION_MARGIN.as_secs() + 1
    );
    let b = replica(&redis).await;
    assert_eq!(revoked(&b, jti("short")).await, Some(true));
}
