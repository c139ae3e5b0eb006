//! Heap allocations of one request through an axum `Router` (via `oneshot`), with and without
//! our layer: at most 17 more allocations than no authentication for a valid HS256 token, and
//! at most 3 more for a refused garbage or oversized (64 KiB) token.
//!
//! A counting global allocator wraps `std::alloc::System`; it is the allocator of the whole
//! test binary. It counts only on the thread that switched counting on, only around the
//! request (router clone and request built before, response dropped after), on a
//! current-thread tokio runtime, after a warm-up, so the tests running beside this one on
//! other threads do not move the counts. Each case is run several times and the smallest
//! count kept. "Allocations" are calls to `alloc`, `alloc_zeroed` and `realloc` (a growing
//! realloc is a heap call on the hot path too). No process-wide tracing subscriber of this
//! binary enables the crate's events (`compose` installs one for `tower_http` only), so a
//! refusal formats no event here.
//!
//! `cargo test --test it -- allocations:: --nocapture` prints the numbers.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, StatusCode};
use tokio::runtime::Runtime;
use tower::ServiceExt;
use tower_jwt_auth::Claims;

use crate::common::{access_issuer, hs256_layer};

// ---- the counting allocator -----------------------------------------------------------------

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static REALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // `const` and without destructor: reading it never allocates, so the allocator may.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn note(counter: &AtomicUsize) {
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Forwards everything to `System`; only counts.
struct CountingAlloc;

// SAFETY: the crate forbids `unsafe` in src/, not in tests. Implementing `GlobalAlloc` is
// `unsafe` by definition; every method forwards its arguments unchanged to `System`, which
// upholds the trait's contract, and the counting touches no memory handed out.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(&ALLOCS);
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(&ALLOCS);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above; `ptr` came from `System` through this allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(&REALLOCS);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Count {
    total: usize,
    allocs: usize,
    reallocs: usize,
}

/// Counts the allocations `f` makes on this thread.
fn counted<T>(f: impl FnOnce() -> T) -> (T, Count) {
    let (a0, r0) = (
        ALLOCS.load(Ordering::Relaxed),
        REALLOCS.load(Ordering::Relaxed),
    );
    COUNTING.with(|c| c.set(true));
    let out = f();
    COUNTING.with(|c| c.set(false));
    let allocs = ALLOCS.load(Ordering::Relaxed) - a0;
    let reallocs = REALLOCS.load(Ordering::Relaxed) - r0;
    let count = Count {
        total: allocs + reallocs,
        allocs,
        reallocs,
    };
    (out, count)
}

// ---- the requests ---------------------------------------------------------------------------

const WARM_UP: usize = 20;
const RUNS: usize = 10;

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct AppClaims {
    sub: String,
    roles: Vec<String>,
}

fn valid_token() -> String {
    #[derive(serde::Serialize)]
    struct Roles {
        roles: Vec<String>,
    }
    access_issuer()
        .lifetime(Duration::from_secs(3600))
        .issue(
            "alice",
            &Roles {
                roles: vec!["admin".into()],
            },
        )
        .unwrap()
        .token
}

/// A 64 KiB token: the valid token's header and signature around a huge payload.
fn oversized_token(valid: &str) -> String {
    let header = valid.split('.').next().unwrap();
    let signature = valid.rsplit('.').next().unwrap();
    let pad = 64 * 1024 - header.len() - signature.len() - 2;
    let token = format!("{header}.{}.{signature}", "A".repeat(pad));
    assert_eq!(token.len(), 64 * 1024);
    token
}

fn noauth_app() -> Router {
    Router::new().route("/me", get(|| async { "ok" }))
}

async fn me(claims: Claims<AppClaims>) -> &'static str {
    std::hint::black_box(claims.sub.len() + claims.roles.len());
    "ok"
}

fn ours_app() -> Router {
    Router::new()
        .route("/me", get(me))
        .layer(hs256_layer::<AppClaims>())
}

fn request(auth: &HeaderValue) -> Request<Body> {
    Request::builder()
        .uri("/me")
        .header(AUTHORIZATION, auth.clone())
        .body(Body::empty())
        .unwrap()
}

/// The fewest allocations one request makes, after a warm-up; checks the status each time.
fn measure(rt: &Runtime, app: &Router, auth: &HeaderValue, want: StatusCode) -> Count {
    for _ in 0..WARM_UP {
        let res = rt.block_on(app.clone().oneshot(request(auth))).unwrap();
        assert_eq!(res.status(), want);
    }
    (0..RUNS)
        .map(|_| {
            let app = app.clone();
            let req = request(auth);
            let (res, count) = counted(|| rt.block_on(app.oneshot(req)));
            assert_eq!(res.unwrap().status(), want);
            count
        })
        .min()
        .unwrap()
}

/// One test for all cases, so that one table shows them side by side.
#[test]
fn allocations_per_request_stay_within_the_targets() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let noauth = noauth_app();
    let ours = ours_app();

    let valid = valid_token();
    let cases = [
        ("valid HS256", valid.clone(), StatusCode::OK, 17),
        (
            "garbage \"abc\"",
            "abc".to_owned(),
            StatusCode::UNAUTHORIZED,
            3,
        ),
        (
            "64 KiB token",
            oversized_token(&valid),
            StatusCode::UNAUTHORIZED,
            3,
        ),
    ];

    println!("backend: {}", tower_jwt_auth::backend_name());
    println!(
        "{:<16} {:>22} {:>22} {:>6} {:>6}",
        "case", "no-auth (alloc+realloc)", "ours (alloc+realloc)", "added", "target"
    );
    let mut failures = Vec::new();
    for (name, token, want, target) in cases {
        let auth = HeaderValue::try_from(format!("Bearer {token}")).unwrap();
        // The same request (same header) through the router without authentication.
        let base = measure(&rt, &noauth, &auth, StatusCode::OK);
        let with = measure(&rt, &ours, &auth, want);
        let added = with.total as isize - base.total as isize;
        println!(
            "{name:<16} {:>14} ({:>2}+{:>2}) {:>14} ({:>2}+{:>2}) {added:>6} {target:>6}",
            base.total, base.allocs, base.reallocs, with.total, with.allocs, with.reallocs
        );
        if added > target {
            failures.push(format!(
                "{name}: {added} allocations over no-auth (ours {with:?}, no-auth {base:?}), \
                 target at most {target}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A cache hit hands the token's revocation identity (`iss`, `jti`, `sub`) on to the
/// revocation check without copying its strings: with a revocation store, a hit allocates at
/// most five times more than the same hit without one, which is what waiting for an
/// asynchronous check costs (boxed futures, the parked request, the extensions the check
/// yields). Copying the three strings adds three.
#[cfg(feature = "cache")]
#[test]
fn a_cache_hit_with_revocation_copies_no_strings() {
    use tower_jwt_auth::cache::CacheConfig;
    use tower_jwt_auth::revocation::MemoryRevocation;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = |revocation: bool| {
        let mut builder = crate::common::hs256_builder::<AppClaims>().cache(CacheConfig::default());
        if revocation {
            builder = builder.revocation(std::sync::Arc::new(MemoryRevocation::new()));
        }
        Router::new()
            .route("/me", get(me))
            .layer(builder.build().unwrap())
    };
    let auth = HeaderValue::try_from(format!("Bearer {}", valid_token())).unwrap();
    // The warm-up fills the cache: every counted request is a hit.
    let without = measure(&rt, &app(false), &auth, StatusCode::OK);
    let with = measure(&rt, &app(true), &auth, StatusCode::OK);
    println!("cache hit: {without:?} without a revocation store, {with:?} with one");
    assert!(
        with.total <= without.total + 5,
        "a hit with a revocation store: {with:?}; without: {without:?}"
    );
}
