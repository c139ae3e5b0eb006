//! What a revocation store costs per request, and how fast a revocation reaches another
//! server through `ReplicatedRevocation`.
//!
//! 1. Criterion ids `revocation/hs256-valid/<store>`: one request with a valid HS256 token
//!    through an axum `Router` with our layer (`oneshot`, as `benches/axum.rs`), the layer
//!    checking `<store>`: `memory` (`MemoryRevocation`), `redis-replica`
//!    (`RedisRevocation::connect(..).replicate()`: a lookup in memory) and `redis-round-trip`
//!    (`RedisRevocation`: one Redis round trip per request). Each store holds 10 000 revoked
//!    `jti`s (not the one presented). Then `memory` and `redis-replica` again, measured in
//!    alternation (200 rounds of 2000 requests each; median round per store, and the ratio),
//!    which a machine whose load comes and goes skews far less than two runs one after the
//!    other.
//! 2. Propagation (printed after criterion's output): 200 revocations written through one
//!    replicated store and polled on a second one (its own handle and feed, same process,
//!    same Redis on loopback), timed from the start of the `revoke` call until the second
//!    store reports the `jti` revoked; p50, p99 and the slowest.
//!
//! Both start their own `redis-server` (no persistence) on a free 127.0.0.1 port and are
//! skipped, with a message, when there is none on the PATH.
//!
//! ```sh
//! cargo bench -p tower-jwt-auth-peers --bench revocation
//! ```

mod common;

use std::hint::black_box;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{AlgCase, BenchClaims};
use criterion::Criterion;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, StatusCode};
use tokio::runtime::Runtime;
use tower::ServiceExt;
use tower_jwt_auth::revocation::{
    MemoryRevocation, RedisRevocation, ReplicatedRevocation, Revocation, RevocationStore, TokenId,
};
use tower_jwt_auth::{Claims, JwtAuthLayer};

/// Revoked `jti`s each store holds while it is measured.
const REVOKED: usize = 10_000;

/// Rounds and requests per round of the interleaved measurement.
const ROUNDS: usize = 200;
const PER_ROUND: u32 = 2000;

/// Revocations timed for the propagation figures.
const PROPAGATIONS: usize = 200;

/// A `redis-server` child process on 127.0.0.1; killed on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    /// Starts one on a free port, or `None` when `redis-server` is not on the PATH.
    fn start() -> Option<Redis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let redis = Redis { child, port };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn handler(claims: Claims<BenchClaims>) -> &'static str {
    black_box(claims.sub.len());
    "ok"
}

fn router(layer: JwtAuthLayer<BenchClaims>) -> axum::Router {
    axum::Router::new()
        .route("/me", axum::routing::get(handler))
        .layer(layer)
}

fn request(auth: &HeaderValue) -> Request<axum::body::Body> {
    Request::builder()
        .uri("/me")
        .header(AUTHORIZATION, auth.clone())
        .body(axum::body::Body::empty())
        .expect("request")
}

/// Revokes [`REVOKED`] `jti`s that no benchmark token carries.
async fn fill(store: &dyn RevocationStore) {
    let exp = unix_now() + 3600;
    for i in 0..REVOKED {
        store
            .revoke(&format!("other-{i}"), exp)
            .await
            .expect("revoke");
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn replica(url: &str) -> ReplicatedRevocation {
    RedisRevocation::connect(url)
        .await
        .expect("redis")
        .replicate()
        .await
        .expect("replica")
}

fn per_request(c: &mut Criterion, rt: &Runtime, redis: &Redis) {
    let case = AlgCase::hs256();
    let auth = HeaderValue::try_from(format!("Bearer {}", case.token())).expect("header");

    let memory = Arc::new(MemoryRevocation::new());
    rt.block_on(fill(memory.as_ref()));
    let replicated = Arc::new(rt.block_on(replica(&redis.url())));
    rt.block_on(fill(replicated.as_ref()));
    let round_trip = Arc::new(
        rt.block_on(RedisRevocation::connect(&redis.url()))
            .expect("redis"),
    );

    let stores: [(&str, Arc<dyn Revocation>); 3] = [
        ("memory", memory),
        ("redis-replica", replicated),
        ("redis-round-trip", round_trip),
    ];
    let mut group = c.benchmark_group("revocation/hs256-valid");
    let mut apps = Vec::new();
    for (name, store) in stores {
        let app = router(case.builder().revocation(store).build().expect("layer"));
        // The path measured is the 200 path, before and after (a stale feed would answer 503).
        let check = |when: &str| {
            let res = rt
                .block_on(app.clone().oneshot(request(&auth)))
                .expect("infallible");
            assert_eq!(res.status(), StatusCode::OK, "{name}, {when}");
        };
        check("before");
        group.bench_function(name, |b| {
            b.to_async(rt).iter(|| app.clone().oneshot(request(&auth)))
        });
        check("after");
        apps.push((name, app));
    }
    group.finish();
    interleaved(rt, &apps[..2]);
}

/// The per-request cost of each router measured in alternation, [`ROUNDS`] rounds of
/// [`PER_ROUND`] requests each, so that a load that comes and goes on the machine weighs on
/// both alike; prints each one's median round and their ratio to the first.
fn interleaved(rt: &Runtime, apps: &[(&str, axum::Router)]) {
    let case = AlgCase::hs256();
    let auth = HeaderValue::try_from(format!("Bearer {}", case.token())).expect("header");
    let mut rounds = vec![Vec::with_capacity(ROUNDS); apps.len()];
    for _ in 0..ROUNDS {
        for ((_, app), times) in apps.iter().zip(&mut rounds) {
            let started = Instant::now();
            rt.block_on(async {
                for _ in 0..PER_ROUND {
                    let res = app
                        .clone()
                        .oneshot(request(&auth))
                        .await
                        .expect("infallible");
                    black_box(res);
                }
            });
            times.push(started.elapsed() / PER_ROUND);
        }
    }
    let medians: Vec<Duration> = rounds
        .iter_mut()
        .map(|times| {
            times.sort();
            times[times.len() / 2]
        })
        .collect();
    for ((name, _), median) in apps.iter().zip(&medians) {
        println!(
            "revocation/interleaved/{name}: {median:?} per request (median of {ROUNDS} rounds \
             of {PER_ROUND}), {:.3} x {}",
            median.as_secs_f64() / medians[0].as_secs_f64(),
            apps[0].0
        );
    }
}

fn propagation(rt: &Runtime, redis: &Redis) {
    let (a, b) = rt.block_on(async { (replica(&redis.url()).await, replica(&redis.url()).await) });
    let exp = unix_now() + 3600;
    let mut took = Vec::with_capacity(PROPAGATIONS);
    let mut writes = Vec::with_capacity(PROPAGATIONS);
    rt.block_on(async {
        for i in 0..PROPAGATIONS {
            let jti = format!("propagated-{i}");
            let id = TokenId::new(None, Some(&jti), None, None);
            let started = Instant::now();
            a.revoke(&jti, exp).await.expect("revoke");
            writes.push(started.elapsed());
            while !b.is_revoked(id).await.expect("feed live") {
                assert!(started.elapsed() < Duration::from_secs(5), "not propagated");
                tokio::task::yield_now().await;
            }
            took.push(started.elapsed());
        }
    });
    let pct = |v: &mut Vec<Duration>, p: usize| {
        v.sort();
        v[(v.len() * p).div_ceil(100) - 1]
    };
    println!(
        "revocation/propagation ({PROPAGATIONS} revocations, store A to store B, loopback): \
         p50 {:?}, p99 {:?}, max {:?}; the write alone: p50 {:?}, p99 {:?}",
        pct(&mut took, 50),
        pct(&mut took, 99),
        pct(&mut took, 100),
        pct(&mut writes, 50),
        pct(&mut writes, 99),
    );
}

fn main() {
    let Some(redis) = Redis::start() else {
        eprintln!(
            "revocation bench skipped: no redis-server on the PATH (apt-get install redis-server)"
        );
        return;
    };
    // The requests run on this thread (criterion's `block_on`), the feed tasks on the worker,
    // as a server's tasks run beside its requests: on a current-thread runtime they would run
    // only when a request waits, which a lookup in memory never does.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let mut c = Criterion::default().configure_from_args();
    per_request(&mut c, &rt, &redis);
    c.final_summary();
    propagation(&rt, &redis);
}
