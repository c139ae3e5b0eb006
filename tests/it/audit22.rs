//! Audit 22: the family check (`is_revoked_consistent`) and `use_once` of
//! `ReplicatedRevocation` after a Redis rewound with its epoch kept, the scripts' `NOSCRIPT`
//! fallback after `SCRIPT FLUSH` or a Redis restart, and two servers on one Redis, against
//! real `redis-server` processes.
//!
//! `regression_*` tests failed on the audited snapshot and pass since their fix; `holds_*`
//! tests pin attacks that were refused. Waits are polls with a deadline or signals.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::redis_server::RedisServer;
use common::replica::*;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_jwt_auth::revocation::{RedisRevocation, ReplicatedRevocation, RevocationStore, TokenId};

/// A deadline against a hang, not a latency check.
const PATIENCE: Duration = Duration::from_secs(10);

/// Two servers on one Redis whose feeds are frozen once `a` applied `x1` and `x2` (entries 1
/// and 2): a server whose feed is in its reconnect backoff (after a failover every feed is)
/// while its requests are served. `w` is the server that writes.
async fn lagging_pair() -> (
    RedisServer,
    Freezable,
    Freezable,
    Vec<std::sync::mpsc::Sender<()>>,
) {
    let exp = now() + 3600;
    let redis = RedisServer::start().await;
    let a = Freezable::start_feed_only(&redis).await;
    let w = Freezable::start_feed_only(&redis).await;
    w.store.revoke("x1", exp).await.unwrap();
    w.store.revoke("x2", exp).await.unwrap();
    assert!(
        becomes_true(PATIENCE, || async {
            revoked(&a.store, jti("x2")).await == Some(true)
        })
        .await,
        "setup: A never applied x2"
    );
    assert_eq!(redis.get_u64(COUNTER).await, 2, "setup: two entries");
    let thaws = vec![a.freeze().await, w.freeze().await];
    (redis, a, w, thaws)
}

// =============================================================================================
// Regressions.
// =============================================================================================

/// Attack: Redis fails over to a replica that had not received the last writes (same epoch,
/// counter 1), while every feed is in its reconnect backoff. A applied entry 2 (`x2`), which
/// the rewind took away, so by the documentation A's strongly consistent checks fail ("a
/// counter below the last number this server applied"). But W, whose shared connection is
/// back at once, revokes one more token: the counter is 2 again, a number reused for another
/// entry. A's family check for `fam` (revoked on W as entry 3, lost in the rewind, never
/// applied by A) finds the epoch it follows, a counter ≥ its `applied`, no marker: "not
/// revoked". What a user would lose: a revoked refresh family (a stolen token) is rotated
/// again after a failover. Expected: an error or "revoked" (A applied an entry Redis lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn regression_a_counter_raised_again_after_a_rewind_is_found_by_the_family_check() {
    let exp = now() + 3600;
    let (redis, a, w, thaws) = lagging_pair().await;
    w.store.revoke("fam", exp).await.unwrap();
    rewind_to(&redis, 1, &["x2", "fam"]).await;
    // Without a further write, A's check fails closed (counter 1 < applied 2).
    let before = a.store.is_revoked_consistent(jti("fam")).await;
    w.store.revoke("unrelated", exp).await.unwrap();
    assert_eq!(
        redis.get_u64(COUNTER).await,
        2,
        "setup: counter raised again"
    );
    let answer = a.store.is_revoked_consistent(jti("fam")).await;
    drop(thaws);
    assert!(
        !matches!(before, Ok(false)),
        "setup: the plain rewind is already missed: {before:?}"
    );
    assert!(
        !matches!(answer, Ok(false)),
        "fam, revoked on W, reads as not revoked on A, whose feed applied an entry the rewind \
         took away, once another write raised the counter back to A's `applied`: {answer:?}"
    );
}

/// As `regression_a_counter_raised_again_after_a_rewind_is_found_by_the_family_check`, for
/// `use_once`: W spent the refresh token `rt` (entry 3, lost in the rewind), another write
/// raises the counter back to 2, and A's `use_once(rt)` finds the epoch, counter ≥ applied, no
/// marker, and its `SET NX` succeeds. What a user would lose: refresh-token reuse detection
/// (and DPoP replay protection) across a failover: the token is spent twice. Expected: not
/// `Ok(true)`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn regression_a_counter_raised_again_after_a_rewind_is_found_by_use_once() {
    let exp = now() + 3600;
    let (redis, a, w, thaws) = lagging_pair().await;
    assert!(w.store.use_once("rt", exp).await.unwrap(), "W spends rt");
    rewind_to(&redis, 1, &["x2", "rt"]).await;
    w.store.revoke("unrelated", exp).await.unwrap();
    assert_eq!(
        redis.get_u64(COUNTER).await,
        2,
        "setup: counter raised again"
    );
    let again = a.store.use_once("rt", exp).await;
    drop(thaws);
    assert!(
        !matches!(again, Ok(true)),
        "rt, spent on W, was spent again on A (whose feed applied an entry the rewind took \
         away) once another write raised the counter back: {again:?}"
    );
}

/// A TCP proxy in front of Redis that can hold what the first client connection sends (the
/// store's shared connection: `RedisRevocation::connect` opens it before the feed's).
struct Proxy {
    port: u16,
    hold: Arc<tokio::sync::watch::Sender<bool>>,
    held: Arc<tokio::sync::Notify>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (hold, _) = tokio::sync::watch::channel(false);
        let hold = Arc::new(hold);
        let held = Arc::new(tokio::sync::Notify::new());
        let (h, n) = (hold.clone(), held.clone());
        tokio::spawn(async move {
            let accepted = AtomicUsize::new(0);
            while let Ok((client, _)) = listener.accept().await {
                let first = accepted.fetch_add(1, Ordering::SeqCst) == 0;
                let server = tokio::net::TcpStream::connect(&upstream).await.unwrap();
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let mut hold_rx = h.subscribe();
                let n = n.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    while let Ok(k) = cr.read(&mut buf).await {
                        if k == 0 {
                            break;
                        }
                        if first && *hold_rx.borrow_and_update() {
                            n.notify_one();
                            if hold_rx.wait_for(|held| !*held).await.is_err() {
                                break;
                            }
                        }
                        if sw.write_all(&buf[..k]).await.is_err() {
                            break;
                        }
                    }
                });
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                });
            }
        });
        Proxy { port, hold, held }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

/// A replicated store whose shared connection goes through `proxy` on the caller's runtime
/// and whose feed runs on a runtime of its own thread, which can be frozen.
struct Proxied {
    store: Arc<ReplicatedRevocation>,
    freeze: tokio::sync::mpsc::UnboundedSender<std::sync::mpsc::Receiver<()>>,
}

impl Proxied {
    async fn start(proxy: &Proxy) -> Proxied {
        let source = RedisRevocation::connect(&proxy.url()).await.unwrap();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (freeze, mut frozen) =
            tokio::sync::mpsc::unbounded_channel::<std::sync::mpsc::Receiver<()>>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let store = source.replicate().await.unwrap();
                let _ = ready_tx.send(Arc::new(store));
                while let Some(until) = frozen.recv().await {
                    let _ = until.recv();
                }
            });
        });
        Proxied {
            store: ready_rx.await.unwrap(),
            freeze,
        }
    }

    /// Freezes the feed's runtime until the returned sender is dropped. A feed blocked in
    /// `XREAD` has nothing to apply until Redis answers, and the answer stays unread.
    fn freeze(&self) -> std::sync::mpsc::Sender<()> {
        let (thaw, until) = std::sync::mpsc::channel();
        self.freeze.send(until).unwrap();
        thaw
    }
}

/// Attack: A's family check for `fam` reads its `applied` (1) and sends its pipeline; while
/// the pipeline is on its way (held by a proxy: a slow network), A's feed applies entry 2
/// (`x2`); then W revokes `fam` (entry 3) and Redis fails over to a replica at counter 1 (same
/// epoch: `x2` and `fam` lost). Redis answers: no record, the epoch A follows, counter 1 ≥ the
/// `applied` read before the pipeline. A applied an entry the rewind took away before Redis
/// answered, so by the documentation ("a counter below the last number this server applied")
/// the check must fail; the answer is "not revoked". (The check read `applied` after the
/// answer in the two-round-trip version, and failed here.) What a user would lose: a revoked
/// refresh family rotated again across a failover. Expected: not `Ok(false)`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn regression_an_entry_applied_while_the_family_check_is_in_flight_is_counted() {
    let exp = now() + 3600;
    let redis = RedisServer::start().await;
    let proxy = Proxy::start(format!("127.0.0.1:{}", redis_port(&redis))).await;
    let a = Proxied::start(&proxy).await;
    let w = Freezable::start_feed_only(&redis).await;
    let w_thaw = w.freeze().await;
    w.store.revoke("x1", exp).await.unwrap();
    assert!(
        becomes_true(PATIENCE, || async {
            revoked(&a.store, jti("x1")).await == Some(true)
        })
        .await,
        "setup: A never applied x1"
    );
    proxy.hold.send_replace(true);
    let held = proxy.held.notified();
    let check = {
        let store = a.store.clone();
        tokio::spawn(async move { store.is_revoked_consistent(jti("fam")).await })
    };
    tokio::time::timeout(PATIENCE, held)
        .await
        .expect("setup: the check's pipeline never reached the proxy");
    w.store.revoke("x2", exp).await.unwrap();
    assert!(
        becomes_true(PATIENCE, || async {
            revoked(&a.store, jti("x2")).await == Some(true)
        })
        .await,
        "setup: A never applied x2"
    );
    let a_thaw = a.freeze();
    w.store.revoke("fam", exp).await.unwrap();
    rewind_to(&redis, 1, &["x2", "fam"]).await;
    proxy.hold.send_replace(false);
    let answer = check.await.unwrap();
    drop(a_thaw);
    drop(w_thaw);
    assert!(
        !matches!(answer, Ok(false)),
        "fam reads as not revoked on A although A's feed applied x2, which the rewind took \
         away, before Redis answered: {answer:?}"
    );
}

fn redis_port(redis: &RedisServer) -> u16 {
    let url = redis.url();
    let rest = url.trim_start_matches("redis://127.0.0.1:");
    rest.trim_end_matches('/').parse().unwrap()
}

// =============================================================================================
// Attacks refused.
// =============================================================================================

async fn script_flush(redis: &RedisServer) {
    let mut conn = redis.inspect().await;
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
}

/// Attack: Redis loses its script cache (`SCRIPT FLUSH`, as after a restart) between calls.
/// What a user would lose: every revocation, `use_once` and subject revocation fails (refresh
/// and logout broken) if `EVALSHA` were not followed by a load on `NOSCRIPT`; or a spent token
/// spent again if the fallback ran another script. Expected: every call answers as before the
/// flush, and the second server sees each write.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_every_write_script_runs_after_script_flush() {
    let exp = now() + 3600;
    let redis = RedisServer::start().await;
    let a = replica(&redis).await;
    let b = replica(&redis).await;
    a.revoke("before-flush", exp).await.unwrap();
    assert!(a.use_once("rt-a", exp).await.unwrap());
    script_flush(&redis).await;
    a.revoke("after-flush", exp).await.unwrap();
    script_flush(&redis).await;
    a.revoke_subject(Some("https://id.test"), "alice", now(), exp)
        .await
        .unwrap();
    script_flush(&redis).await;
    assert!(b.use_once("rt-b", exp).await.unwrap(), "first use on B");
    script_flush(&redis).await;
    assert!(!a.use_once("rt-b", exp).await.unwrap(), "rt-b spent twice");
    script_flush(&redis).await;
    assert!(!b.use_once("rt-a", exp).await.unwrap(), "rt-a spent twice");
    assert!(b.is_revoked_consistent(jti("after-flush")).await.unwrap());
    let alice = TokenId::new(
        Some("https://id.test"),
        None,
        Some("alice"),
        Some(now() - 10),
    );
    assert!(
        becomes_true(PATIENCE, || async {
            revoked(&b, jti("after-flush")).await == Some(true)
                && revoked(&b, alice).await == Some(true)
                && revoked(&a, jti("rt-b")).await == Some(true)
        })
        .await,
        "B never saw A's writes after SCRIPT FLUSH"
    );
    assert_eq!(redis.get_u64(COUNTER).await, 5, "one entry per write");
}

/// Attack: Redis restarts empty (no persistence: no records, no epoch, no scripts) after a
/// refresh family was revoked and a refresh token spent. The restore writes back with
/// `EVALSHA` of scripts a restarted Redis does not hold. What a user would lose: a restore that
/// never ends (every refresh fails) or one that ends without the records (a revoked family
/// rotated, a spent token spent again). Expected: the restore ends, both servers answer
/// "revoked" / "already used", and Redis holds the records again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_a_restart_without_scripts_restores_every_record() {
    let exp = now() + 3600;
    let mut redis = RedisServer::start().await;
    let a = replica(&redis).await;
    let b = replica(&redis).await;
    a.revoke("fam", exp).await.unwrap();
    assert!(a.use_once("rt", exp).await.unwrap());
    redis.restart().await;
    assert!(
        restore_ended(&redis, &[&a, &b], Duration::from_secs(20)).await,
        "the restore never ended after a restart"
    );
    assert_eq!(jti_records(&redis).await, 2, "records written back");
    script_flush(&redis).await;
    for store in [&a, &b] {
        assert!(store.is_revoked_consistent(jti("fam")).await.unwrap());
        assert!(!store.use_once("rt", exp).await.unwrap(), "rt spent twice");
    }
    assert!(
        b.use_once("fresh", exp).await.unwrap(),
        "a fresh token spends"
    );
    assert!(
        !a.use_once("fresh", exp).await.unwrap(),
        "fresh spent twice"
    );
}

/// Attack: a second server whose feed lags (frozen) is asked about a family just revoked on
/// the first, and to spend a token the first just spent. What a user would lose: a stolen
/// refresh token rotated on the other server. Expected: the family check reads Redis
/// ("revoked"), and `use_once` loses the `SET NX` ("already used").
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_two_servers_agree_through_redis_while_one_feed_lags() {
    let exp = now() + 3600;
    let redis = RedisServer::start().await;
    let a = replica(&redis).await;
    let b = Freezable::start_feed_only(&redis).await;
    let thaw = b.freeze().await;
    a.revoke("fam", exp).await.unwrap();
    assert!(a.use_once("rt", exp).await.unwrap());
    let family = b.store.is_revoked_consistent(jti("fam")).await;
    let spent = b.store.use_once("rt", exp).await;
    assert!(b.store.use_once("rt-b", exp).await.unwrap());
    drop(thaw);
    assert!(matches!(family, Ok(true)), "family on B: {family:?}");
    assert!(matches!(spent, Ok(false)), "rt on B: {spent:?}");
    assert!(!a.use_once("rt-b", exp).await.unwrap(), "rt-b spent twice");
}

/// Attack: Redis is flushed (and a new epoch set by another server) while a server whose feed
/// lags checks a family revoked elsewhere. What a user would lose: the revoked family read as
/// not revoked from the empty Redis. Expected: an error (the epoch differs or is gone), never
/// `Ok(false)`; the same for `use_once` of a spent token.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_a_flush_while_the_feed_lags_fails_closed() {
    let exp = now() + 3600;
    let redis = RedisServer::start().await;
    let w = Freezable::start_feed_only(&redis).await;
    let b = Freezable::start_feed_only(&redis).await;
    let thaws = vec![w.freeze().await, b.freeze().await];
    w.store.revoke("fam", exp).await.unwrap();
    assert!(w.store.use_once("rt", exp).await.unwrap());
    redis.flushall().await;
    let empty = b.store.is_revoked_consistent(jti("fam")).await;
    let spent_empty = b.store.use_once("rt", exp).await;
    // Another server sets a new epoch (without the marker's hold left: the worst case).
    let mut conn = redis.inspect().await;
    redis::cmd("SET")
        .arg("jwt:epoch")
        .arg("another")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    w.store.revoke("raise", exp).await.unwrap();
    w.store.revoke("raise2", exp).await.unwrap();
    let other = b.store.is_revoked_consistent(jti("fam")).await;
    let spent_other = b.store.use_once("rt", exp).await;
    drop(thaws);
    assert!(!matches!(empty, Ok(false)), "empty Redis: {empty:?}");
    assert!(!matches!(other, Ok(false)), "new epoch: {other:?}");
    assert!(
        !matches!(spent_empty, Ok(true)),
        "empty Redis: {spent_empty:?}"
    );
    assert!(
        !matches!(spent_other, Ok(true)),
        "new epoch: {spent_other:?}"
    );
}

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

/// Attack: a Redis at its `maxmemory` (`noeviction`) loses its script cache, and then needs a
/// restore (an `incomplete` record without the marker: a write-back cut short, back with a
/// replica) and a server start. Every script is called by `EVALSHA`; the fallback must load it
/// (`SCRIPT LOAD`, which Redis allows when full) and the `allow-oom`/`no-writes` flags must
/// survive the refactor. What a user would lose: the fleet wedged failing every refresh (the
/// marker steps refused), and no server able to start. Expected: the running server finishes
/// the restore (`incomplete` deleted), a new server starts, and both answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_a_full_redis_without_scripts_restores_and_starts() {
    let redis = RedisServer::start().await;
    let a = replica(&redis).await;
    a.revoke("r", now() + 3600).await.unwrap();
    redis.config_set("maxmemory-policy", "noeviction").await;
    redis
        .config_set("maxmemory", used_memory(&redis).await / 2)
        .await;
    script_flush(&redis).await;
    let mut conn = redis.inspect().await;
    redis::cmd("EVAL")
        .arg("#!lua flags=allow-oom\nreturn redis.call('SET', KEYS[1], '1')")
        .arg(1)
        .arg("jwt:incomplete")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    assert!(
        becomes_true(Duration::from_secs(20), || async {
            restored(&a).await && !redis.exists("jwt:incomplete").await
        })
        .await,
        "the restore on a full Redis without its scripts never ended"
    );
    script_flush(&redis).await;
    let b = RedisRevocation::connect(&redis.url())
        .await
        .unwrap()
        .replicate()
        .await;
    let b = b.expect("a server starts on a full Redis without its scripts");
    assert_eq!(revoked(&b, jti("r")).await, Some(true));
    assert!(b.is_revoked_consistent(jti("r")).await.unwrap());
    assert!(!a.is_revoked_consistent(jti("other")).await.unwrap());
}

/// Attack: A's family check for `fam` is on its way to Redis (held by a proxy) while W revokes
/// `fam`, Redis is rewound to before it (same epoch, counter equal to A's `applied`: nothing A
/// applied is lost, so the counter cannot tell), and V, a third server whose feed applied the
/// lost entry, finds the rewind and sets the restore marker. Then the pipeline runs. What a
/// user would lose: a revoked refresh family rotated again. Expected: the marker, read after
/// the records in the same pipeline, makes the answer an error ("revoked" once V wrote `fam`
/// back), never a timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_a_marker_set_while_the_family_check_is_in_flight_fails_closed() {
    let exp = now() + 3600;
    let redis = RedisServer::start().await;
    let proxy = Proxy::start(format!("127.0.0.1:{}", redis_port(&redis))).await;
    let a = Proxied::start(&proxy).await;
    let w = Freezable::start_feed_only(&redis).await;
    let w_thaw = w.freeze().await;
    let w = w.store.clone();
    let v = replica(&redis).await;
    w.revoke("x1", exp).await.unwrap();
    assert!(
        becomes_true(PATIENCE, || async {
            revoked(&a.store, jti("x1")).await == Some(true)
        })
        .await,
        "setup: A never applied x1"
    );
    let a_thaw = a.freeze();
    proxy.hold.send_replace(true);
    let held = proxy.held.notified();
    let check = {
        let store = a.store.clone();
        tokio::spawn(async move { store.is_revoked_consistent(jti("fam")).await })
    };
    tokio::time::timeout(PATIENCE, held)
        .await
        .expect("setup: the check's pipeline never reached the proxy");
    w.revoke("fam", exp).await.unwrap();
    // V's feed applies entry 2 before the rewind (V did not write it: its copy learns it
    // from the feed alone).
    assert!(
        becomes_true(PATIENCE, || async {
            revoked(&v, jti("fam")).await == Some(true)
        })
        .await,
        "setup: V never applied fam"
    );
    rewind_to(&redis, 1, &["fam"]).await;
    assert!(
        becomes_true(PATIENCE, || async { marker(&redis).await.is_some() }).await,
        "setup: W never found the rewind"
    );
    proxy.hold.send_replace(false);
    let answer = check.await.unwrap();
    drop(a_thaw);
    drop(w_thaw);
    match &answer {
        Ok(true) => {}
        Err(e) => assert!(
            e.to_string().contains("restored"),
            "the check failed for another reason than the marker (a timeout makes this test \
             vacuous): {e}"
        ),
        Ok(false) => panic!(
            "fam reads as not revoked on A although the marker was set before Redis answered"
        ),
    }
}
