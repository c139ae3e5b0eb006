//! Instructions per request, counted by callgrind: a measure that does not move with the load
//! on the machine, for changes too small for criterion's medians on a shared machine.
//!
//! Runs `N` requests in process (`oneshot` on a clone of the service, no framework, one
//! current-thread runtime) through one of: `noauth` (the bare inner service), `hs256` (the
//! layer, uncached) or `hs256-cached` (the layer with the verified-token cache, warmed by one
//! request). A request's cost is the difference between a run of `N` and a run of 0 requests,
//! divided by `N`:
//!
//! ```sh
//! cargo build --release -p tower-jwt-auth-peers --features cache --example instructions
//! for case in noauth hs256 hs256-cached; do for n in 0 20000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/instructions $case $n 2>&1 | grep -o 'refs: *[0-9,]*'
//! done; done
//! ```

#[path = "../benches/common/mod.rs"]
mod common;

use common::{AlgCase, inner, request};
use http::{HeaderValue, StatusCode};
use tower::{Layer, ServiceExt, service_fn};

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: instructions noauth|hs256|hs256-cached <requests>";
    let case = args.next().ok_or(usage)?;
    let n: u64 = args.next().and_then(|n| n.parse().ok()).ok_or(usage)?;
    let alg = AlgCase::hs256();
    let auth =
        HeaderValue::try_from(format!("Bearer {}", alg.token())).map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        match case.as_str() {
            "noauth" => run(service_fn(inner), &auth, n).await,
            "hs256" => run(alg.layer().layer(service_fn(inner)), &auth, n).await,
            #[cfg(feature = "cache")]
            "hs256-cached" => {
                let config = tower_jwt_auth::cache::CacheConfig::default();
                let svc = alg.layer_cached(config).layer(service_fn(inner));
                // One request fills the cache; the `n` measured are hits.
                run(svc.clone(), &auth, 1).await?;
                run(svc, &auth, n).await
            }
            _ => Err(usage.to_owned()),
        }
    })
}

/// `n` requests through clones of `svc`, each one answered 200.
async fn run<S>(svc: S, auth: &HeaderValue, n: u64) -> Result<(), String>
where
    S: tower::Service<http::Request<()>, Response = http::Response<()>> + Clone,
    S::Error: std::fmt::Debug,
{
    for _ in 0..n {
        let res = svc.clone().oneshot(request(auth)).await;
        match res.map(|r| r.status()) {
            Ok(StatusCode::OK) => {}
            other => return Err(format!("unexpected answer: {other:?}")),
        }
    }
    Ok(())
}
