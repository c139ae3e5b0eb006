//! `ReplicatedRevocation` against a real `redis-server`: servers of one fleet (independent
//! layers served by axum, each with its own store handle and feed), checked over HTTP.
//!
//! A revocation reaches another server through the stream after a delay, so the tests poll
//! that server's `/me` until it answers the awaited status (every 10 ms, for at most
//! [`PATIENCE`]: a deadline against a hang, not a latency check), and assert what it answered
//! on the way.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::api::Api;
use common::redis_server::RedisServer;
use common::replica::{bounded_replica, replica};
use common::sessions::{
    REFRESH_SECRET, Roles, SessionServer, access_token_at, issue, refreshed, refused, routes,
};
use common::*;
use reqwest::StatusCode;
use tower_jwt_auth::JwtAuthLayer;
use tower_jwt_auth::issue::RefreshTokens;
use tower_jwt_auth::revocation::{
    RedisRevocation, ReplicatedRevocation, Revocation, RevocationStore, TokenId,
};

/// The staleness bound of the stores of the outage tests: short, so an outage shows quickly.
/// The other tests keep the default (5 s), so a busy machine does not make them see one.
const BOUND: Duration = Duration::from_secs(1);

/// How long a poll waits for a server to reach a status before the test fails.
const PATIENCE: Duration = Duration::from_secs(15);

const REVOKED: &str =
    "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"token revoked\"";

/// A server of the fleet: `/me` behind a layer that checks `store`, failing closed.
async fn server(store: Arc<ReplicatedRevocation>) -> Api {
    let layer: JwtAuthLayer<TestClaims> = hs256_builder::<TestClaims>()
        .token_type("at+jwt")
        .revocation(store)
        .build()
        .unwrap();
    Api::start(layer).await
}

#[track_caller]
fn assert_revoked(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    assert_eq!(reply.www_authenticate.as_deref(), Some(REVOKED));
}

/// Polls `GET /me` with `token` until it answers `want`; returns that reply and the statuses
/// answered before it.
async fn until(api: &Api, token: &str, want: StatusCode) -> (Reply, Vec<StatusCode>) {
    let started = Instant::now();
    let mut before = Vec::new();
    loop {
        let reply = api.me(token).await;
        if reply.status == want {
            return (reply, before);
        }
        before.push(reply.status);
        assert!(
            started.elapsed() < PATIENCE,
            "no {want} within {PATIENCE:?}; answered {before:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Replication
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_revocation_on_one_server_reaches_the_other() {
    let redis = RedisServer::start().await;
    let (store_a, store_b) = (replica(&redis).await, replica(&redis).await);
    let a = server(store_a.clone()).await;
    let b = server(store_b.clone()).await;

    let token = issue("alice");
    let other = issue("alice");
    let bob = issue("bob");
    let used = issue("carol");
    for t in [&token, &other, &bob, &used] {
        assert_eq!(a.me(&t.token).await.status, StatusCode::OK);
        assert_eq!(b.me(&t.token).await.status, StatusCode::OK);
    }

    // A logout on server A: A refuses the token on its next request…
    store_a.revoke(&token.jti, token.expires_at).await.unwrap();
    assert_revoked(&a.me(&token.token).await);
    // …and B once the stream brought it, having accepted it until then (never 503: its feed
    // is live).
    let (reply, before) = until(&b, &token.token, StatusCode::UNAUTHORIZED).await;
    assert_revoked(&reply);
    assert!(before.iter().all(|s| *s == StatusCode::OK), "{before:?}");
    assert_eq!(b.me(&other.token).await.status, StatusCode::OK);

    // A subject revoked on B reaches A; a token issued after the cut-off passes on both.
    let now = now();
    store_b
        .revoke_subject(Some(ISSUER), "alice", now + 1, now + 3600)
        .await
        .unwrap();
    assert_revoked(&b.me(&other.token).await);
    assert_revoked(&until(&a, &other.token, StatusCode::UNAUTHORIZED).await.0);
    let later = access_token_at("alice", "after-cutoff", now + 2, now + 900);
    assert_eq!(a.me(&later).await.status, StatusCode::OK);
    assert_eq!(b.me(&later).await.status, StatusCode::OK);

    // A jti spent with `use_once` on B is refused by A's layer, like a revoked one, and
    // cannot be spent again through A.
    assert!(store_b.use_once(&used.jti, used.expires_at).await.unwrap());
    assert_revoked(&until(&a, &used.token, StatusCode::UNAUTHORIZED).await.0);
    assert!(!store_a.use_once(&used.jti, used.expires_at).await.unwrap());

    // Bob was never touched.
    assert_eq!(a.me(&bob.token).await.status, StatusCode::OK);
    assert_eq!(b.me(&bob.token).await.status, StatusCode::OK);
}

/// More entries than one read of the stream takes (1000): the follower reads on until it has
/// them all.
#[tokio::test]
async fn a_burst_of_revocations_reaches_the_other_server_whole() {
    let redis = RedisServer::start().await;
    let (store_a, store_b) = (replica(&redis).await, replica(&redis).await);
    let b = server(store_b.clone()).await;
    let (first, middle, last) = (issue("alice"), issue("bob"), issue("carol"));
    let valid = issue("dave");
    for t in [&first, &middle, &last, &valid] {
        assert_eq!(b.me(&t.token).await.status, StatusCode::OK);
    }
    let exp = now() + 600;
    store_a.revoke(&first.jti, first.expires_at).await.unwrap();
    for i in 0..2500 {
        if i == 1500 {
            store_a
                .revoke(&middle.jti, middle.expires_at)
                .await
                .unwrap();
        }
        store_a.revoke(&format!("burst-{i}"), exp).await.unwrap();
    }
    store_a.revoke(&last.jti, last.expires_at).await.unwrap();
    assert_revoked(&until(&b, &last.token, StatusCode::UNAUTHORIZED).await.0);
    assert_revoked(&b.me(&middle.token).await);
    assert_revoked(&b.me(&first.token).await);
    assert_eq!(b.me(&valid.token).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_server_started_after_revocations_refuses_them_from_its_first_request() {
    let redis = RedisServer::start().await;
    let writer = replica(&redis).await;
    let revoked = issue("alice");
    let of_bob = issue("bob");
    let by_plain_store = issue("carol");
    let valid = issue("dave");
    writer
        .revoke(&revoked.jti, revoked.expires_at)
        .await
        .unwrap();
    let now = now();
    writer
        .revoke_subject(Some(ISSUER), "bob", now + 1, now + 3600)
        .await
        .unwrap();
    // A record written by a plain `RedisRevocation` (no stream entry) is in the snapshot too.
    RedisRevocation::connect(&redis.url())
        .await
        .unwrap()
        .revoke(&by_plain_store.jti, by_plain_store.expires_at)
        .await
        .unwrap();
    // The snapshot comes from the records, not from the stream: without the stream, nothing
    // is missed.
    let mut conn = redis.inspect().await;
    let deleted: u64 = redis::cmd("DEL")
        .arg("jwt:feed")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(deleted, 1, "the writes went through the stream");

    let c = server(replica(&redis).await).await;
    assert_revoked(&c.me(&revoked.token).await);
    assert_revoked(&c.me(&of_bob.token).await);
    assert_revoked(&c.me(&by_plain_store.token).await);
    assert_eq!(c.me(&valid.token).await.status, StatusCode::OK);
    assert_eq!(c.handled(), 1);
}

// ---------------------------------------------------------------------------------------------
// Redis away
// ---------------------------------------------------------------------------------------------

/// The connections dropped (Redis up): the feed reconnects and goes on from where it was,
/// within the bound, so the server never fails a request meanwhile.
#[tokio::test]
async fn a_dropped_feed_connection_reconnects_within_the_bound() {
    let redis = RedisServer::start().await;
    let b = server(replica(&redis).await).await;
    let token = issue("alice");
    assert_eq!(b.me(&token.token).await.status, StatusCode::OK);

    let mut conn = redis.inspect().await;
    let killed: u64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(killed, 2, "the store's two connections");
    replica(&redis)
        .await
        .revoke(&token.jti, token.expires_at)
        .await
        .unwrap();
    let (reply, before) = until(&b, &token.token, StatusCode::UNAUTHORIZED).await;
    assert_revoked(&reply);
    assert!(before.iter().all(|s| *s == StatusCode::OK), "{before:?}");
}

/// Entries a disconnected follower had not read were trimmed from the stream before it came
/// back: it sees that and takes them from the records.
#[tokio::test]
async fn a_follower_back_after_its_entries_were_trimmed_reads_the_records() {
    let redis = RedisServer::start().await;
    let mut conn = redis.inspect().await;
    let store_b = replica(&redis).await;
    // B's feed: opened after B's shared connection (`connect`, then `replicate`), and before
    // any other.
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .unwrap();
    let me: u64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut conn)
        .await
        .unwrap();
    let ids: Vec<u64> = list
        .lines()
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
        .filter_map(|id| id.parse().ok())
        .filter(|id| *id != me)
        .collect();
    assert_eq!(ids.len(), 2, "{list}");
    let feed_b = ids.iter().max().copied().unwrap();
    let store_a = replica(&redis).await;
    let b = server(store_b).await;
    let token = issue("alice");
    assert_eq!(b.me(&token.token).await.status, StatusCode::OK);

    // B's feed is cut off and cannot come back (connections already open stay signed in)…
    let admin = conn.clone();
    let config = |value: &'static str| {
        let mut conn = admin.clone();
        async move {
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("requirepass")
                .arg(value)
                .query_async::<()>(&mut conn)
                .await
                .unwrap()
        }
    };
    config("let-nobody-in").await;
    let killed: u64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(feed_b)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(killed, 1);
    // …while a revocation is written and its stream entry trimmed away.
    store_a.revoke(&token.jti, token.expires_at).await.unwrap();
    let trimmed: u64 = redis::cmd("XTRIM")
        .arg("jwt:feed")
        .arg("MAXLEN")
        .arg(0)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(trimmed >= 1);
    config("").await;

    let (reply, before) = until(&b, &token.token, StatusCode::UNAUTHORIZED).await;
    assert_revoked(&reply);
    assert!(before.iter().all(|s| *s == StatusCode::OK), "{before:?}");
}

#[tokio::test]
async fn redis_restarted_with_its_data_fails_closed_then_recovers() {
    let mut redis = RedisServer::start_persistent().await;
    let (store_a, store_b) = (
        bounded_replica(&redis, BOUND).await,
        bounded_replica(&redis, BOUND).await,
    );
    let a = server(store_a.clone()).await;
    let b = server(store_b.clone()).await;
    let valid = issue("alice");
    let revoked = issue("alice");
    store_a
        .revoke(&revoked.jti, revoked.expires_at)
        .await
        .unwrap();
    assert_revoked(&until(&b, &revoked.token, StatusCode::UNAUTHORIZED).await.0);
    until(&a, &valid.token, StatusCode::OK).await;

    redis.kill();
    // Once the feed is older than the bound: 503 with Retry-After, the handler not reached.
    let (reply, before) = until(&a, &valid.token, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(before.iter().all(|s| *s == StatusCode::OK), "{before:?}");
    assert_eq!(reply.retry_after.as_deref(), Some("1"));
    assert!(reply.www_authenticate.is_none());
    assert_eq!(
        until(&b, &revoked.token, StatusCode::SERVICE_UNAVAILABLE)
            .await
            .0
            .retry_after
            .as_deref(),
        Some("1")
    );
    // A logout while Redis is away fails rather than pretend.
    let late = issue("alice");
    assert!(store_a.revoke(&late.jti, late.expires_at).await.is_err());
    let handled = a.handled();
    assert_eq!(
        a.me(&valid.token).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(a.handled(), handled);

    redis.restart().await;
    // The same stores recover; the revocation made before still holds meanwhile.
    let (_, before) = until(&a, &valid.token, StatusCode::OK).await;
    assert!(
        before.iter().all(|s| *s == StatusCode::SERVICE_UNAVAILABLE),
        "{before:?}"
    );
    until(&b, &valid.token, StatusCode::OK).await;
    assert_revoked(&a.me(&revoked.token).await);
    assert_revoked(&b.me(&revoked.token).await);
    // And the feed is live again: a new logout on B reaches A. (B's write connection, idle
    // through the outage, may report the broken connection once before it reconnects: the
    // logout is retried, as a client would.)
    let started = Instant::now();
    while let Err(e) = store_b.revoke(&late.jti, late.expires_at).await {
        assert!(started.elapsed() < PATIENCE, "revoke still failing: {e}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (reply, before) = until(&a, &late.token, StatusCode::UNAUTHORIZED).await;
    assert_revoked(&reply);
    assert!(before.iter().all(|s| *s == StatusCode::OK), "{before:?}");
}

#[tokio::test]
async fn redis_restarted_empty_is_detected_and_the_servers_write_back_what_they_hold() {
    let mut redis = RedisServer::start().await;
    let (store_a, store_b) = (
        bounded_replica(&redis, BOUND).await,
        bounded_replica(&redis, BOUND).await,
    );
    let a = server(store_a.clone()).await;
    let b = server(store_b.clone()).await;
    let valid = issue("alice");
    let revoked = issue("alice");
    let of_bob = issue("bob");
    store_a
        .revoke(&revoked.jti, revoked.expires_at)
        .await
        .unwrap();
    let now = now();
    store_b
        .revoke_subject(Some(ISSUER), "bob", now + 1, now + 3600)
        .await
        .unwrap();
    for api in [&a, &b] {
        until(api, &revoked.token, StatusCode::UNAUTHORIZED).await;
        until(api, &of_bob.token, StatusCode::UNAUTHORIZED).await;
    }

    redis.kill();
    // The outage shows: 503 once the feed is older than the bound.
    for api in [&a, &b] {
        until(api, &valid.token, StatusCode::SERVICE_UNAVAILABLE).await;
    }

    // Back without its data: the revocations are gone from Redis, yet no server ever
    // accepts the revoked tokens; each fails closed until it has written back what it holds.
    redis.restart().await;
    assert_eq!(redis.dbsize().await, 0);
    for api in [&a, &b] {
        let started = Instant::now();
        loop {
            for t in [&revoked, &of_bob] {
                let status = api.me(&t.token).await.status;
                assert_ne!(
                    status,
                    StatusCode::OK,
                    "a revoked token passed after the restart"
                );
            }
            let status = api.me(&valid.token).await.status;
            if status == StatusCode::OK {
                break;
            }
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(
                started.elapsed() < PATIENCE,
                "no recovery within {PATIENCE:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_revoked(&api.me(&revoked.token).await);
        assert_revoked(&api.me(&of_bob.token).await);
    }

    // Redis holds the records again, under a new epoch…
    let mut conn = redis.inspect().await;
    let present: u64 = redis::cmd("EXISTS")
        .arg(format!("jwt:jti:{}", revoked.jti))
        .arg("jwt:sub:15:https://id.test:bob")
        .arg("jwt:epoch")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(present, 3);
    // …so a server started now refuses them from its first request.
    let c = server(replica(&redis).await).await;
    assert_revoked(&c.me(&revoked.token).await);
    assert_revoked(&c.me(&of_bob.token).await);
    assert_eq!(c.me(&valid.token).await.status, StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// Refresh-token rotation: the family check is a round trip
// ---------------------------------------------------------------------------------------------

async fn sessions(store: Arc<dyn RevocationStore>) -> RefreshTokens<Roles> {
    RefreshTokens::<Roles>::new(access_issuer(), REFRESH_SECRET, store).unwrap()
}

#[tokio::test]
async fn refresh_reuse_is_detected_across_replicated_servers() {
    let redis = RedisServer::start().await;
    let a = SessionServer::start(routes(Arc::new(sessions(replica(&redis).await).await))).await;
    let b = SessionServer::start(routes(Arc::new(sessions(replica(&redis).await).await))).await;

    let r1 = a.login("alice").await.refresh_token;
    let attacker = refreshed(a.refresh(&r1).await);
    // The victim presents R1 to B: reuse, the family is revoked; both servers refuse the
    // attacker's token at once (the family check asks Redis when the copy lacks the family).
    assert_eq!(refused(b.refresh(&r1).await), "reuse_detected");
    assert_eq!(refused(a.refresh(&attacker.refresh_token).await), "revoked");
    assert_eq!(refused(b.refresh(&attacker.refresh_token).await), "revoked");

    let fresh = b.login("alice").await;
    let next = refreshed(a.refresh(&fresh.refresh_token).await);
    refreshed(b.refresh(&next.refresh_token).await);
}

/// A family revoked where no stream entry is written (a plain `RedisRevocation`) never reaches
/// the copy, so only a Redis round trip can see it: the rotation is refused at once.
#[tokio::test]
async fn a_family_revoked_elsewhere_stops_rotation_at_once() {
    let redis = RedisServer::start().await;
    let server =
        SessionServer::start(routes(Arc::new(sessions(replica(&redis).await).await))).await;
    let plain = Arc::new(RedisRevocation::connect(&redis.url()).await.unwrap());
    let admin = sessions(plain).await;

    let pair = server.login("alice").await;
    admin.revoke_family(&pair.refresh_token).await.unwrap();
    assert_eq!(
        refused(server.refresh(&pair.refresh_token).await),
        "revoked"
    );
}

// ---------------------------------------------------------------------------------------------
// Lifecycle
// ---------------------------------------------------------------------------------------------

async fn clients(redis: &RedisServer) -> usize {
    let mut conn = redis.inspect().await;
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut conn)
        .await
        .unwrap();
    // Without the connection that asked.
    list.lines().count() - 1
}

#[tokio::test]
async fn dropping_the_last_handle_stops_the_feed_and_closes_its_connections() {
    let redis = RedisServer::start().await;
    assert_eq!(clients(&redis).await, 0);
    let store = replica(&redis).await;
    let handle = (*store).clone();
    // The shared connection for writes and round trips, and the feed's own.
    assert_eq!(clients(&redis).await, 2);
    drop(store);
    // The other handle still works, on the same feed.
    let x = TokenId::new(None, Some("x"), None, None);
    assert!(!handle.is_revoked(x).await.unwrap());
    assert_eq!(clients(&redis).await, 2);

    drop(handle);
    let started = Instant::now();
    while clients(&redis).await != 0 {
        assert!(
            started.elapsed() < PATIENCE,
            "connections still open after the last handle was dropped"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

/// Every record has an expiry, so a Redis whose `maxmemory-policy` may evict keys
/// (`volatile-*`, `allkeys-*`) can drop revocations under memory pressure without a trace: a
/// server starting against one says so in a `warn` event; against `noeviction`, it does not.
#[cfg(feature = "tracing")]
#[test]
fn a_redis_that_may_evict_revocations_is_warned_about_at_start() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let redis = rt.block_on(RedisServer::start());
    let policy = |value: &'static str| redis.config_set("maxmemory-policy", value);
    // Once before this thread's subscriber exists, so that the event's callsite is registered
    // when it is (see `tracing::one_event_per_rejection_without_the_token`).
    rt.block_on(async {
        policy("allkeys-lru").await;
        replica(&redis).await;
    });
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        rt.block_on(async {
            replica(&redis).await;
            let warned = capture.text();
            assert!(
                warned.contains("maxmemory-policy") && warned.contains("allkeys-lru"),
                "{warned}"
            );
            policy("noeviction").await;
            replica(&redis).await;
            assert_eq!(capture.text(), warned, "no warning with noeviction");
        });
    });
}
