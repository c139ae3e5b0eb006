//! Multi-core scaling: the same requests through one layer on 1 and on 2 threads at once.
//!
//! Each thread runs its share of the requests through its own clone of one `JwtAuth` service
//! (shared keys, cache and counters, as a server's worker threads share them), on its own
//! current-thread runtime; the measured time is the wall time of the whole batch. Criterion
//! reports it per request and as requests per second, so
//!
//! ```text
//! scaling = throughput on 2 threads / throughput on 1 thread
//! ```
//!
//! which is 2 on two idle cores when nothing on the request path is shared for writing (a
//! contended lock or counter shows up as scaling well below 2). `noauth` is the same requests
//! through the bare inner service: the harness's own scaling, the ceiling for the others.
//! `hs256-cached` sends one token from every thread (one user: every hit shares the cached
//! claims); `hs256-cached-per-thread` one token per thread (a client per thread). Run it on a
//! machine with nothing else busy.
//!
//! ```sh
//! cargo bench -p tower-jwt-auth-peers --bench scaling --features cache
//! ```

mod common;

use std::convert::Infallible;
use std::time::{Duration, Instant};

use common::{AlgCase, inner, request};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderValue, Request, Response, StatusCode};
use tower::{Layer, Service, ServiceExt, service_fn};

/// Runs `total` requests split over `threads` threads, thread `i` sending `auths[i % len]`;
/// returns the wall time. Every response must be 200, or the figures would measure refusals.
fn run<S>(svc: &S, auths: &[HeaderValue], threads: u64, total: u64) -> Duration
where
    S: Service<Request<()>, Response = Response<()>, Error = Infallible> + Clone + Send + Sync,
    S::Future: Send,
{
    let per_thread = total.div_ceil(threads);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..threads {
            // A header value of this thread's own: cloning one shared value per request would
            // bump a reference count that both cores write, and measure the harness.
            let auth = HeaderValue::from_bytes(auths[thread as usize % auths.len()].as_bytes())
                .expect("header");
            scope.spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    for _ in 0..per_thread {
                        let res = svc.clone().oneshot(request(&auth)).await;
                        assert_eq!(res.map(|r| r.status()), Ok(StatusCode::OK));
                    }
                });
            });
        }
    });
    start.elapsed()
}

/// The same requests through an axum `Router` (as its `serve` does: the router cloned per
/// request), answering 200 from a handler that reads the claims when there are some.
fn run_axum(router: &axum::Router, auths: &[HeaderValue], threads: u64, total: u64) -> Duration {
    let per_thread = total.div_ceil(threads);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..threads {
            let auth = HeaderValue::from_bytes(auths[thread as usize % auths.len()].as_bytes())
                .expect("header");
            scope.spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    for _ in 0..per_thread {
                        let req = Request::builder()
                            .uri("/me")
                            .header(http::header::AUTHORIZATION, auth.clone())
                            .body(axum::body::Body::empty())
                            .expect("request");
                        let res = router.clone().oneshot(req).await;
                        assert_eq!(res.map(|r| r.status()), Ok(StatusCode::OK));
                    }
                });
            });
        }
    });
    start.elapsed()
}

async fn handler(claims: tower_jwt_auth::Claims<common::BenchClaims>) -> &'static str {
    std::hint::black_box(claims.sub.len());
    "ok"
}

fn bench_scaling(c: &mut Criterion) {
    let case = AlgCase::hs256();
    let auth = |token: String| HeaderValue::try_from(format!("Bearer {token}")).expect("header");
    let one = [auth(case.token())];
    let per_thread = [auth(case.token()), auth(case.token())];
    let noauth = service_fn(inner);
    let uncached = case.layer().layer(service_fn(inner));
    #[cfg(feature = "cache")]
    let cached = case
        .layer_cached(tower_jwt_auth::cache::CacheConfig::default())
        .layer(service_fn(inner));

    let router = || axum::Router::new().route("/me", axum::routing::get(handler));
    let axum_noauth = axum::Router::new().route("/me", axum::routing::get(|| async { "ok" }));
    let axum_uncached = router().layer(case.layer());
    #[cfg(feature = "cache")]
    let axum_cached =
        router().layer(case.layer_cached(tower_jwt_auth::cache::CacheConfig::default()));

    for threads in [1, 2] {
        let mut group = c.benchmark_group(format!("scaling/{threads}-threads"));
        group.throughput(Throughput::Elements(1));
        group.bench_function("noauth", |b| {
            b.iter_custom(|n| run(&noauth, &one, threads, n))
        });
        group.bench_function("hs256", |b| {
            b.iter_custom(|n| run(&uncached, &one, threads, n))
        });
        #[cfg(feature = "cache")]
        group.bench_function("hs256-cached", |b| {
            b.iter_custom(|n| run(&cached, &one, threads, n))
        });
        #[cfg(feature = "cache")]
        group.bench_function("hs256-cached-per-thread", |b| {
            b.iter_custom(|n| run(&cached, &per_thread, threads, n))
        });
        group.bench_function("axum-noauth", |b| {
            b.iter_custom(|n| run_axum(&axum_noauth, &one, threads, n))
        });
        group.bench_function("axum-hs256", |b| {
            b.iter_custom(|n| run_axum(&axum_uncached, &one, threads, n))
        });
        #[cfg(feature = "cache")]
        group.bench_function("axum-hs256-cached-per-thread", |b| {
            b.iter_custom(|n| run_axum(&axum_cached, &per_thread, threads, n))
        });
        group.finish();
    }
}

criterion_group!(benches, bench_scaling);
criterion_main!(benches);
