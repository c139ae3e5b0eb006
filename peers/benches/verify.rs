//! Verification cost per algorithm: jsonwebtoken 11's `decode` of a token (the baseline: the
//! same crypto, no middleware) beside the same token verified through our layer, called with
//! `tower::ServiceExt::oneshot` on a trivial `tower::service_fn` (no axum).
//!
//! Ids: `verify/<alg>/jsonwebtoken`, `verify/<alg>/ours`, and `verify/noauth` (the same
//! request through the bare `service_fn`, i.e. what the request and `oneshot` cost without
//! any authentication). `ours - noauth` is the layer's own cost; compare it to `jsonwebtoken`.
//!
//! ```sh
//! cargo bench -p tower-jwt-auth-peers --bench verify --features cache
//! cargo bench -p tower-jwt-auth-peers --bench verify --no-default-features --features rust-crypto
//! ```

mod common;

use std::hint::black_box;

use common::{AUDIENCE, AlgCase, BenchClaims, ISSUER, inner, request};
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderValue, StatusCode};
use jsonwebtoken::{DecodingKey, Validation};
use tower::{Layer, ServiceExt, service_fn};
use tower_jwt_auth::{Algorithm, backend_name};

/// jsonwebtoken's `decode` goes through a process-global provider; install the one our crate
/// compiles in (aws-lc-rs wins when both features are on, as in the crate's `src/backend.rs`),
/// so the baseline and our layer use the same crypto.
fn install_jsonwebtoken_provider() {
    #[cfg(feature = "aws-lc-rs")]
    let provider = &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
    #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc-rs")))]
    let provider = &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
    let _ = provider.install_default();
}

fn decoding_key(case: &AlgCase) -> DecodingKey {
    match case.alg {
        Algorithm::HS256 => Ok(DecodingKey::from_secret(&case.verify_key)),
        Algorithm::RS256 | Algorithm::PS256 => DecodingKey::from_rsa_pem(&case.verify_key),
        Algorithm::ES256 => DecodingKey::from_ec_pem(&case.verify_key),
        Algorithm::EdDSA => DecodingKey::from_ed_pem(&case.verify_key),
        other => unreachable!("no bench case for {other:?}"),
    }
    .expect("decoding key")
}

/// The same checks our layer makes by default once issuer and audience are set: signature,
/// `exp` required, leeway 60 s, `iss`, `aud`.
fn validation(alg: Algorithm) -> Validation {
    let alg = alg
        .name()
        .parse()
        .expect("every Algorithm is one of jsonwebtoken's");
    let mut v = Validation::new(alg);
    v.set_issuer(&[ISSUER]);
    v.set_audience(&[AUDIENCE]);
    v.leeway = 60;
    v
}

fn bench_verify(c: &mut Criterion) {
    install_jsonwebtoken_provider();
    eprintln!("crypto backend: {}", backend_name());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");

    let cases = [
        AlgCase::hs256(),
        AlgCase::rs256(),
        AlgCase::ps256(),
        AlgCase::es256(),
        AlgCase::eddsa(),
    ];

    // What a request through `oneshot` costs with no authentication at all.
    {
        let token = cases[0].token();
        let auth = HeaderValue::try_from(format!("Bearer {token}")).expect("header");
        let svc = service_fn(inner);
        c.bench_function("verify/noauth", |b| {
            b.to_async(&rt).iter(|| svc.oneshot(request(&auth)))
        });
    }

    for case in &cases {
        let token = case.token();
        let key = decoding_key(case);
        let validation = validation(case.alg);
        let auth = HeaderValue::try_from(format!("Bearer {token}")).expect("header");
        let svc = case.layer().layer(service_fn(inner));

        // Both paths must accept the token, or the numbers mean nothing.
        let decoded = jsonwebtoken::decode::<BenchClaims>(&token, &key, &validation)
            .unwrap_or_else(|e| panic!("{}: jsonwebtoken refused the token: {e}", case.name));
        assert_eq!(decoded.claims.sub, "alice");
        let res = rt
            .block_on(svc.clone().oneshot(request(&auth)))
            .expect("infallible");
        assert_eq!(
            res.status(),
            StatusCode::OK,
            "{}: our layer refused",
            case.name
        );

        let mut group = c.benchmark_group(format!("verify/{}", case.name));
        group.bench_function("jsonwebtoken", |b| {
            b.iter(|| jsonwebtoken::decode::<BenchClaims>(black_box(&token), &key, &validation))
        });
        group.bench_function("ours", |b| {
            b.to_async(&rt).iter(|| svc.clone().oneshot(request(&auth)))
        });
        #[cfg(feature = "cache")]
        {
            use tower_jwt_auth::cache::CacheConfig;
            // Hit: the token was verified once, every later request is served from the cache.
            let hit = case
                .layer_cached(CacheConfig::default())
                .layer(service_fn(inner));
            let res = rt
                .block_on(hit.clone().oneshot(request(&auth)))
                .expect("infallible");
            assert_eq!(
                res.status(),
                StatusCode::OK,
                "{}: cached layer refused",
                case.name
            );
            group.bench_function("ours-cache-hit", |b| {
                b.to_async(&rt).iter(|| hit.clone().oneshot(request(&auth)))
            });
            // Miss: every request brings a token the cache has not seen lately (4096 distinct
            // tokens in turn, a 64-entry cache), so it pays the lookup, the full verification
            // and the insert.
            let miss = case
                .layer_cached(CacheConfig::default().max_entries(64))
                .layer(service_fn(inner));
            let pool: Vec<HeaderValue> = (0..4096)
                .map(|_| HeaderValue::try_from(format!("Bearer {}", case.token())).expect("header"))
                .collect();
            let next = std::cell::Cell::new(0usize);
            group.bench_function("ours-cache-miss", |b| {
                b.to_async(&rt).iter(|| {
                    let i = next.get();
                    next.set((i + 1) % pool.len());
                    miss.clone().oneshot(request(&pool[i]))
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench_verify);
criterion_main!(benches);
