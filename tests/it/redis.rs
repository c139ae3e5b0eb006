//! `RedisRevocation` against a real `redis-server` (started per test on a free 127.0.0.1 port),
//! shared by two independent layers served by axum: two servers of one fleet.
//!
//! Needs `redis-server` on the PATH (`apt-get install -y redis-server`); the harness is
//! `common::redis_server`.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::api::Api;
use common::redis_server::RedisServer;
use common::sessions::{
    REFRESH_SECRET, Refreshed, Roles, SessionServer, access_token_at, issue, refreshed, refused,
    routes,
};
use common::*;
use reqwest::StatusCode;
use tower_jwt_auth::JwtAuthLayer;
use tower_jwt_auth::issue::RefreshTokens;
use tower_jwt_auth::revocation::{RedisRevocation, RevocationStore};

async fn store(redis: &RedisServer) -> Arc<RedisRevocation> {
    Arc::new(RedisRevocation::connect(&redis.url()).await.unwrap())
}

// ---------------------------------------------------------------------------------------------
// Servers of the fleet
// ---------------------------------------------------------------------------------------------

const REVOKED: &str =
    "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"token revoked\"";

/// Where the default prefix keeps the subject entry of `ISSUER`'s alice.
const ALICE_KEY: &str = "jwt:sub:15:https://id.test:alice";

fn layer(store: Arc<RedisRevocation>, fail_open: bool) -> JwtAuthLayer<TestClaims> {
    let builder = hs256_builder::<TestClaims>()
        .token_type("at+jwt")
        .revocation(store);
    let builder = if fail_open {
        builder.revocation_fail_open()
    } else {
        builder
    };
    builder.build().unwrap()
}

#[track_caller]
fn assert_revoked(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.www_authenticate.as_deref(), Some(REVOKED));
}

// ---------------------------------------------------------------------------------------------
// Fleet-wide revocation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn revoked_jti_on_one_server_is_refused_by_the_other_at_once() {
    let redis = RedisServer::start().await;
    let (store_a, store_b) = (store(&redis).await, store(&redis).await);
    let a = Api::start(layer(store_a.clone(), false)).await;
    let b = Api::start(layer(store_b.clone(), false)).await;

    let token = issue("alice");
    let other = issue("alice");
    assert_eq!(a.me(&token.token).await.status, StatusCode::OK);
    assert_eq!(b.me(&token.token).await.status, StatusCode::OK);

    // Logout handled by server A…
    store_a.revoke(&token.jti, token.expires_at).await.unwrap();
    // …is seen by server B on its very next request.
    assert_revoked(&b.me(&token.token).await);
    assert_revoked(&a.me(&token.token).await);
    // The subject's other token is unaffected.
    assert_eq!(b.me(&other.token).await.status, StatusCode::OK);
    assert_eq!(a.me(&other.token).await.status, StatusCode::OK);
    assert_eq!((a.handled(), b.handled()), (2, 2));
}

#[tokio::test]
async fn revoked_subject_on_one_server_is_refused_by_the_other_at_once() {
    let redis = RedisServer::start().await;
    let (store_a, store_b) = (store(&redis).await, store(&redis).await);
    let a = Api::start(layer(store_a.clone(), false)).await;
    let b = Api::start(layer(store_b.clone(), false)).await;

    let alice = [issue("alice"), issue("alice")];
    let bob = issue("bob");
    for t in alice.iter().chain([&bob]) {
        assert_eq!(a.me(&t.token).await.status, StatusCode::OK);
    }

    let now = now();
    store_b
        .revoke_subject(Some(ISSUER), "alice", now + 1, now + 3600)
        .await
        .unwrap();
    for t in &alice {
        assert_revoked(&a.me(&t.token).await);
        assert_revoked(&b.me(&t.token).await);
    }
    assert_eq!(a.me(&bob.token).await.status, StatusCode::OK);
    assert_eq!(b.me(&bob.token).await.status, StatusCode::OK);

    // A token issued after the cut-off passes on both servers.
    let later = access_token_at("alice", "after-cutoff", now + 2, now + 900);
    assert_eq!(a.me(&later).await.status, StatusCode::OK);
    assert_eq!(b.me(&later).await.status, StatusCode::OK);

    // Raising the cut-off through server A catches the later token too; lowering never
    // un-revokes.
    store_a
        .revoke_subject(Some(ISSUER), "alice", now + 10, now + 3600)
        .await
        .unwrap();
    store_b
        .revoke_subject(Some(ISSUER), "alice", now - 100, now + 3600)
        .await
        .unwrap();
    assert_revoked(&b.me(&later).await);
    assert_revoked(&a.me(&alice[0].token).await);
    assert_eq!((a.handled(), b.handled()), (5, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_once_is_atomic_across_servers() {
    let redis = RedisServer::start().await;
    let stores = [store(&redis).await, store(&redis).await];
    let exp = now() + 600;
    const CONTENDERS: usize = 8;
    for round in 0..50 {
        let jti = format!("jti-{round}");
        let barrier = Arc::new(tokio::sync::Barrier::new(CONTENDERS));
        let tasks: Vec<_> = (0..CONTENDERS)
            .map(|i| {
                let store = stores[i % 2].clone();
                let barrier = barrier.clone();
                let jti = jti.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.use_once(&jti, exp).await.unwrap()
                })
            })
            .collect();
        let mut firsts = 0;
        for t in tasks {
            firsts += usize::from(t.await.unwrap());
        }
        assert_eq!(firsts, 1, "round {round}: {firsts} winners");
        // And ever after: used.
        assert!(!stores[round % 2].use_once(&jti, exp).await.unwrap());
    }
}

// ---------------------------------------------------------------------------------------------
// Redis down: fail closed (or open), then recovery without restarting anything
// ---------------------------------------------------------------------------------------------

/// How long a refusal or a fail-open pass may take while Redis is down: the store's 1 s
/// response timeout plus slack.
const OUTAGE_LATENCY: Duration = Duration::from_secs(3);

#[tokio::test]
async fn redis_outage_fails_closed_or_open_and_recovers() {
    let mut redis = RedisServer::start().await;
    let store_closed = store(&redis).await;
    let closed = Api::start(layer(store_closed.clone(), false)).await;
    let open = Api::start(layer(store(&redis).await, true)).await;

    let token = issue("alice");
    let revoked = issue("alice");
    store_closed
        .revoke(&revoked.jti, revoked.expires_at)
        .await
        .unwrap();
    assert_eq!(closed.me(&token.token).await.status, StatusCode::OK);
    assert_eq!(open.me(&token.token).await.status, StatusCode::OK);
    assert_revoked(&closed.me(&revoked.token).await);
    assert_revoked(&open.me(&revoked.token).await);
    assert_eq!((closed.handled(), open.handled()), (1, 1));

    redis.kill();

    // Latencies above OUTAGE_LATENCY are collected and reported at the end, so the status,
    // fail-open and recovery checks all run whatever the timing.
    let mut slow = Vec::new();

    // Fail closed: 503 + Retry-After on every request of the outage (not just the first one
    // after the connection dropped).
    for attempt in 0..4 {
        let started = Instant::now();
        let res = closed.me(&token.token).await;
        let took = started.elapsed();
        assert_eq!(
            res.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "attempt {attempt}"
        );
        assert_eq!(res.retry_after.as_deref(), Some("1"));
        assert!(res.www_authenticate.is_none());
        if took >= OUTAGE_LATENCY {
            slow.push(format!("fail-closed request {attempt}: 503 after {took:?}"));
        }
    }
    assert_eq!(closed.handled(), 1);

    // Fail open: the valid token passes — and so, by design, does the revoked one.
    for (i, t) in [&token, &revoked, &token].into_iter().enumerate() {
        let started = Instant::now();
        let res = open.me(&t.token).await;
        let took = started.elapsed();
        assert_eq!(res.status, StatusCode::OK, "fail-open request {i}");
        if took >= OUTAGE_LATENCY {
            slow.push(format!("fail-open request {i}: 200 after {took:?}"));
        }
    }
    assert_eq!(open.handled(), 4);

    // Redis comes back (empty: no persistence) on the same port; the same layers recover.
    redis.restart().await;
    let restarted = Instant::now();
    loop {
        let status = closed.me(&token.token).await.status;
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            restarted.elapsed() < Duration::from_secs(10),
            "no recovery within 10 s of the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The store really is live again: a new revocation is honoured by both layers.
    store_closed
        .revoke(&token.jti, token.expires_at)
        .await
        .unwrap();
    assert_revoked(&closed.me(&token.token).await);
    assert_revoked(&open.me(&token.token).await);

    assert!(
        slow.is_empty(),
        "requests during the outage exceeded {OUTAGE_LATENCY:?}:\n{}",
        slow.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Refresh-token rotation across servers
// ---------------------------------------------------------------------------------------------

/// One server's `/login` and `/refresh`, with its own `RefreshTokens` and Redis connection.
async fn session_server(redis: &RedisServer) -> SessionServer {
    let sessions =
        RefreshTokens::<Roles>::new(access_issuer(), REFRESH_SECRET, store(redis).await).unwrap();
    SessionServer::start(routes(Arc::new(sessions))).await
}

#[tokio::test]
async fn refresh_reuse_is_detected_across_servers() {
    let redis = RedisServer::start().await;
    let a = session_server(&redis).await;
    let b = session_server(&redis).await;
    // An access layer of the fleet, to show the rotated access tokens work anywhere.
    let api = Api::start(layer(store(&redis).await, false)).await;

    let first = a.login("alice").await;
    let r1 = first.refresh_token.clone();
    // The attacker rotates the stolen R1 on server A.
    let attacker = refreshed(a.refresh(&r1).await);
    assert_eq!(api.me(&attacker.access_token).await.status, StatusCode::OK);
    // The victim's client presents R1 to server B: reuse.
    assert_eq!(refused(b.refresh(&r1).await), "reuse_detected");
    // The family is revoked on both servers.
    assert_eq!(refused(b.refresh(&attacker.refresh_token).await), "revoked");
    assert_eq!(refused(a.refresh(&attacker.refresh_token).await), "revoked");
    assert_eq!(refused(a.refresh(&r1).await), "revoked");

    // Other families are untouched; a login on B rotates on A.
    let fresh = b.login("alice").await;
    let next = refreshed(a.refresh(&fresh.refresh_token).await);
    refreshed(b.refresh(&next.refresh_token).await);
}

/// The same refresh token presented to both servers at once: exactly one rotation wins, the
/// other counts as reuse, and the winner's new refresh token dies with the family.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refresh_on_two_servers_has_one_winner() {
    let redis = RedisServer::start().await;
    let a = Arc::new(session_server(&redis).await);
    let b = Arc::new(session_server(&redis).await);
    for _ in 0..10 {
        let r1 = a.login("alice").await.refresh_token;
        let (ra, rb) = tokio::join!(a.refresh(&r1), b.refresh(&r1));
        let (winner, loser) = match (ra, rb) {
            (Refreshed::Ok(w), Refreshed::Refused(l))
            | (Refreshed::Refused(l), Refreshed::Ok(w)) => (w, l),
            (Refreshed::Ok(_), Refreshed::Ok(_)) => panic!("both servers rotated the same token"),
            (Refreshed::Refused(x), Refreshed::Refused(y)) => panic!("no winner: {x}, {y}"),
        };
        assert_eq!(loser, "reuse_detected");
        assert_eq!(refused(a.refresh(&winner.refresh_token).await), "revoked");
    }
}

// ---------------------------------------------------------------------------------------------
// Key expiry in Redis
// ---------------------------------------------------------------------------------------------

async fn ttl(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("TTL").arg(key).query_async(conn).await.unwrap()
}

#[tokio::test]
async fn entries_expire_with_the_tokens() {
    let redis = RedisServer::start().await;
    let store = store(&redis).await;
    let mut conn = redis.inspect().await;
    let now = now();

    store.revoke("j1", now + 600).await.unwrap();
    let t = ttl(&mut conn, "jwt:jti:j1").await;
    assert!((896..=901).contains(&t), "TTL {t}");
    // Revoked again for a token that ends sooner: the entry keeps the later end.
    store.revoke("j1", now + 60).await.unwrap();
    let t = ttl(&mut conn, "jwt:jti:j1").await;
    assert!((896..=901).contains(&t), "TTL {t}");

    // A token expired longer ago than the retention margin is not stored at all.
    store.revoke("gone", now - 301).await.unwrap();
    assert_eq!(ttl(&mut conn, "jwt:jti:gone").await, -2);

    store.use_once("u1", now + 120).await.unwrap();
    let t = ttl(&mut conn, "jwt:jti:u1").await;
    assert!((416..=421).contains(&t), "TTL {t}");

    store
        .revoke_subject(Some(ISSUER), "alice", now + 1, now + 3600)
        .await
        .unwrap();
    let t = ttl(&mut conn, ALICE_KEY).await;
    assert!((3896..=3901).contains(&t), "TTL {t}");
    let before: u64 = redis::cmd("GET")
        .arg(ALICE_KEY)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(before, now + 1);

    // Tokens from the issuer: the entry lives as long as the token, plus the margin.
    let token = issue("bob");
    store.revoke(&token.jti, token.expires_at).await.unwrap();
    let t = ttl(&mut conn, &format!("jwt:jti:{}", token.jti)).await;
    let left = token.expires_at as i64 - now as i64;
    assert!(
        (left + 296..=left + 301).contains(&t),
        "TTL {t}, expected ≈ {left} + 301"
    );

    // A custom prefix.
    let prefixed = RedisRevocation::connect(&redis.url())
        .await
        .unwrap()
        .prefix("tenant-7:");
    prefixed.revoke("j2", now + 60).await.unwrap();
    let t = ttl(&mut conn, "tenant-7:jti:j2").await;
    assert!((356..=361).contains(&t), "TTL {t}");
    assert_eq!(ttl(&mut conn, "jwt:jti:j2").await, -2);
}

/// A subject entry is kept until `keep_until`, and, like `MemoryRevocation` (and as the
/// script's own comment says: it "raises … its expiry"), a later revocation with a shorter
/// `keep_until` must not cut short an earlier, longer one: otherwise the long-lived tokens the
/// first revocation covered (e.g. 14-day refresh tokens) come back to life early.
#[tokio::test]
async fn subject_entry_retention_is_never_shortened() {
    let redis = RedisServer::start().await;
    let store = store(&redis).await;
    let mut conn = redis.inspect().await;
    let now = now();

    store
        .revoke_subject(Some(ISSUER), "alice", now + 1, now + 3600)
        .await
        .unwrap();
    store
        .revoke_subject(Some(ISSUER), "alice", now + 2, now + 60)
        .await
        .unwrap();
    let before: u64 = redis::cmd("GET")
        .arg(ALICE_KEY)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(before, now + 2);
    let t = ttl(&mut conn, ALICE_KEY).await;
    assert!(
        (3896..=3901).contains(&t),
        "the second, shorter revocation cut the subject entry's TTL to {t} s (expected ≈ 3600 + the 300 s margin + 1 s)"
    );
}
