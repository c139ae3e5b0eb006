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
//! through the bare inner service: the harness's own scaling, the ceiling for the others;
//! `noauth-shared-state` the same behind a layer that does nothing but hold an `Arc` of its
//! state (tower's `MapRequest` with a closure that owns one), as most layers do: what cloning
//! such a service per request costs by itself.
//! `hs256-cached` sends one token from every thread (one user: every hit shares the cached
//! claims); `hs256-cached-per-thread` one token per thread (a client per thread). The
//! `*-per-connection` cases clone the service once per thread and call that clone for every
//! request (`ready`, then `call`), as a server that keeps one service per connection does;
//! the others clone it per request, as `axum::serve` and tonic do. The `axum-*`
//! cases send the same requests through an axum `Router` (cloned per request, as `axum::serve`
//! does), so the framework's own scaling can be read beside the layer's. A clone per request
//! bumps the reference count of the layer's shared state, which both cores write. Run it on a
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

/// How a thread calls the service.
#[derive(Clone, Copy)]
enum Calls {
    /// Each request through a clone of its own (tower's `oneshot`, axum's `serve`).
    ClonePerRequest,
    /// Every request of a thread through one clone (one service per connection).
    PerConnection,
}

/// Runs `total` requests made by `request` split over `threads` threads, thread `i` sending
/// `auths[i % len]`, calling clones of `svc` as `calls` says; returns the wall time. Every
/// response must be 200, or the figures would measure refusals.
fn run<S, B, RB>(
    svc: &S,
    request: fn(&HeaderValue) -> Request<B>,
    auths: &[HeaderValue],
    threads: u64,
    total: u64,
    calls: Calls,
) -> Duration
where
    S: Service<Request<B>, Response = Response<RB>, Error = Infallible> + Clone + Send + Sync,
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
                    let mut connection = svc.clone();
                    for _ in 0..per_thread {
                        let res = match calls {
                            Calls::ClonePerRequest => svc.clone().oneshot(request(&auth)).await,
                            Calls::PerConnection => match connection.ready().await {
                                Ok(ready) => ready.call(request(&auth)).await,
                                Err(e) => Err(e),
                            },
                        };
                        assert_eq!(res.map(|r| r.status()), Ok(StatusCode::OK));
                    }
                });
            });
        }
    });
    start.elapsed()
}

/// The request an axum `Router` sees.
fn axum_request(auth: &HeaderValue) -> Request<axum::body::Body> {
    Request::builder()
        .uri("/me")
        .header(http::header::AUTHORIZATION, auth.clone())
        .body(axum::body::Body::empty())
        .expect("request")
}

/// The axum handler: reads the claims.
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
    let state = std::sync::Arc::new(());
    let shared_state = tower::util::MapRequestLayer::new(move |req| {
        std::hint::black_box(&state);
        req
    })
    .layer(service_fn(inner));
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
            b.iter_custom(|n| run(&noauth, request, &one, threads, n, Calls::ClonePerRequest))
        });
        group.bench_function("noauth-shared-state", |b| {
            b.iter_custom(|n| {
                run(
                    &shared_state,
                    request,
                    &one,
                    threads,
                    n,
                    Calls::ClonePerRequest,
                )
            })
        });
        group.bench_function("hs256", |b| {
            b.iter_custom(|n| run(&uncached, request, &one, threads, n, Calls::ClonePerRequest))
        });
        #[cfg(feature = "cache")]
        group.bench_function("hs256-cached", |b| {
            b.iter_custom(|n| run(&cached, request, &one, threads, n, Calls::ClonePerRequest))
        });
        #[cfg(feature = "cache")]
        group.bench_function("hs256-cached-per-thread", |b| {
            b.iter_custom(|n| {
                run(
                    &cached,
                    request,
                    &per_thread,
                    threads,
                    n,
                    Calls::ClonePerRequest,
                )
            })
        });
        group.bench_function("noauth-per-connection", |b| {
            b.iter_custom(|n| run(&noauth, request, &one, threads, n, Calls::PerConnection))
        });
        group.bench_function("hs256-per-connection", |b| {
            b.iter_custom(|n| run(&uncached, request, &one, threads, n, Calls::PerConnection))
        });
        #[cfg(feature = "cache")]
        group.bench_function("hs256-cached-per-thread-per-connection", |b| {
            b.iter_custom(|n| {
                run(
                    &cached,
                    request,
                    &per_thread,
                    threads,
                    n,
                    Calls::PerConnection,
                )
            })
        });
        group.bench_function("axum-noauth", |b| {
            b.iter_custom(|n| {
                run(
                    &axum_noauth,
                    axum_request,
                    &one,
                    threads,
                    n,
                    Calls::ClonePerRequest,
                )
            })
        });
        group.bench_function("axum-hs256", |b| {
            b.iter_custom(|n| {
                run(
                    &axum_uncached,
                    axum_request,
                    &one,
                    threads,
                    n,
                    Calls::ClonePerRequest,
                )
            })
        });
        #[cfg(feature = "cache")]
        group.bench_function("axum-hs256-cached-per-thread", |b| {
            b.iter_custom(|n| {
                run(
                    &axum_cached,
                    axum_request,
                    &per_thread,
                    threads,
                    n,
                    Calls::ClonePerRequest,
                )
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench_scaling);
criterion_main!(benches);
