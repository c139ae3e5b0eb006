//! One request through an axum `Router` (via `tower::ServiceExt::oneshot`, the router cloned
//! per call as axum's own docs and tests do, the request built fresh per iteration): without
//! authentication, with our layer, and with two peers.
//!
//! Ids (ratios are `<id>/ours` against `<id>/<peer>`, and each against its own baseline):
//!
//! * `axum/noauth` — axum 0.8, no authentication (baseline for `ours` and `axum-jwt-auth`);
//! * `axum/noauth/oversized` — the same, the request carrying the 64 KiB token;
//! * `axum07/noauth` — axum 0.7, no authentication (baseline for `jwt-authorizer`);
//! * `axum/<alg>/<case>/ours` — our `JwtAuthLayer` on axum 0.8, handler extracts `Claims<C>`;
//! * `axum/<alg>/<case>/axum-jwt-auth` — axum-jwt-auth 0.7 on axum 0.8: an extractor, not a
//!   layer (set up as its docs show: `LocalDecoder` in the router state, `Claims<C>` in the
//!   handler); it verifies with jsonwebtoken 10 on its RustCrypto backend, which it hard-wires;
//! * `axum/<alg>/<case>/jwt-authorizer` — jwt-authorizer 0.15 on axum 0.7 (it needs axum 0.7
//!   and verifies with jsonwebtoken 9 on ring): `JwtAuthorizer::from_secret`/
//!   `from_rsa_pem_text` + `.validation(..)`, `.build().await`, `.into_layer()`, handler
//!   extracts `JwtClaims<C>`.
//!
//! `<alg>` is `hs256` or `rs256` (2048-bit); `<case>` is `valid`, `bad-signature`, `garbage`
//! (the token `abc`) or `oversized` (a 64 KiB token). All verifiers are configured alike:
//! the key, issuer, audience, `exp` required with 60 s leeway. Before measuring, each
//! (verifier, case) is run once and its status checked (200 for valid, 401 otherwise), so a
//! benchmark never measures a path other than the one its id names.
//!
//! Backends differ between peers (ours: aws-lc-rs by default or RustCrypto with
//! `--no-default-features --features rust-crypto`; axum-jwt-auth: RustCrypto always;
//! jwt-authorizer: ring always): RS256 numbers include that difference. `benches/verify.rs`
//! gives the raw jsonwebtoken 11 cost per backend to separate it out.

mod common;

use std::hint::black_box;
use std::sync::Arc;

use common::{AUDIENCE, AlgCase, BenchClaims, GARBAGE, ISSUER, SECRET, bad_signature, oversized};
use criterion::{Criterion, criterion_group, criterion_main};
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, StatusCode};
use tokio::runtime::Runtime;
use tower::ServiceExt;
use tower_jwt_auth::{Algorithm, Claims, backend_name};

type Body08 = axum::body::Body;
type Body07 = axum07::body::Body;

fn request08(auth: &HeaderValue) -> Request<Body08> {
    Request::builder()
        .uri("/me")
        .header(AUTHORIZATION, auth.clone())
        .body(Body08::empty())
        .expect("request")
}

fn request07(auth: &HeaderValue) -> Request<Body07> {
    Request::builder()
        .uri("/me")
        .header(AUTHORIZATION, auth.clone())
        .body(Body07::empty())
        .expect("request")
}

fn bearer(token: &str) -> HeaderValue {
    HeaderValue::try_from(format!("Bearer {token}")).expect("header value")
}

// ---- the routers -------------------------------------------------------------------------

fn noauth08() -> axum::Router {
    axum::Router::new().route("/me", axum::routing::get(|| async { "ok" }))
}

fn noauth07() -> axum07::Router {
    axum07::Router::new().route("/me", axum07::routing::get(|| async { "ok" }))
}

async fn ours_handler(claims: Claims<BenchClaims>) -> &'static str {
    black_box(claims.sub.len());
    "ok"
}

fn ours(case: &AlgCase) -> axum::Router {
    axum::Router::new()
        .route("/me", axum::routing::get(ours_handler))
        .layer(case.layer())
}

async fn axum_jwt_auth_handler(claims: axum_jwt_auth::Claims<BenchClaims>) -> &'static str {
    black_box(claims.claims.sub.len());
    "ok"
}

/// axum-jwt-auth as its README shows: a `LocalDecoder` with the key and a jsonwebtoken
/// `Validation` (audience mandatory), shared as `Decoder<C>` (an `Arc<dyn JwtDecoder<C>>`)
/// in the router state. Its docs put it in an `AppState` with `#[derive(FromRef)]`; here the
/// decoder *is* the state, which the same `FromRef` blanket impl serves.
fn axum_jwt_auth(case: &AlgCase) -> axum::Router {
    use jsonwebtoken10::{Algorithm as Alg10, DecodingKey, Validation};
    let (alg, key) = match case.alg {
        Algorithm::HS256 => (Alg10::HS256, DecodingKey::from_secret(SECRET.as_bytes())),
        Algorithm::RS256 => (
            Alg10::RS256,
            DecodingKey::from_rsa_pem(&case.verify_key).expect("RSA key"),
        ),
        other => unreachable!("no axum bench for {other:?}"),
    };
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    validation.leeway = 60;
    let decoder = axum_jwt_auth::LocalDecoder::builder()
        .keys(vec![key])
        .validation(validation)
        .build()
        .expect("LocalDecoder");
    let decoder: axum_jwt_auth::Decoder<BenchClaims> = Arc::new(decoder);
    axum::Router::new()
        .route("/me", axum::routing::get(axum_jwt_auth_handler))
        .with_state(decoder)
}

async fn jwt_authorizer_handler(
    jwt_authorizer::JwtClaims(claims): jwt_authorizer::JwtClaims<BenchClaims>,
) -> &'static str {
    black_box(claims.sub.len());
    "ok"
}

/// jwt-authorizer as its README shows: builder, `.build().await`, `.into_layer()`.
fn jwt_authorizer(rt: &Runtime, case: &AlgCase) -> axum07::Router {
    use jwt_authorizer::{IntoLayer, JwtAuthorizer, Validation};
    let builder = match case.alg {
        Algorithm::HS256 => JwtAuthorizer::<BenchClaims>::from_secret(SECRET),
        Algorithm::RS256 => JwtAuthorizer::<BenchClaims>::from_rsa_pem_text(
            std::str::from_utf8(&case.verify_key).expect("PEM"),
        ),
        other => unreachable!("no axum bench for {other:?}"),
    };
    let validation = Validation::new().iss(&[ISSUER]).aud(&[AUDIENCE]).leeway(60);
    let authorizer = rt
        .block_on(builder.validation(validation).build())
        .expect("jwt-authorizer");
    axum07::Router::new()
        .route("/me", axum07::routing::get(jwt_authorizer_handler))
        .layer(authorizer.into_layer())
}

// ---- the benchmarks ----------------------------------------------------------------------

/// Runs one request and checks its status: the path measured is the path named.
fn check08(rt: &Runtime, app: &axum::Router, auth: &HeaderValue, want: StatusCode, id: &str) {
    let res = rt
        .block_on(app.clone().oneshot(request08(auth)))
        .expect("infallible");
    assert_eq!(res.status(), want, "{id}");
}

fn check07(rt: &Runtime, app: &axum07::Router, auth: &HeaderValue, want: StatusCode, id: &str) {
    let res = rt
        .block_on(app.clone().oneshot(request07(auth)))
        .expect("infallible");
    assert_eq!(res.status(), want, "{id}");
}

fn bench_axum(c: &mut Criterion) {
    eprintln!("our crypto backend: {}", backend_name());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");

    // Baselines: the same request (carrying a valid HS256 token nobody reads).
    let hs256 = AlgCase::hs256();
    let auth = bearer(&hs256.token());
    let app = noauth08();
    check08(&rt, &app, &auth, StatusCode::OK, "axum/noauth");
    c.bench_function("axum/noauth", |b| {
        b.to_async(&rt)
            .iter(|| app.clone().oneshot(request08(&auth)))
    });
    // The same router with the 64 KiB token in the header: what merely carrying it costs.
    let big = bearer(&oversized(&hs256.token()));
    check08(&rt, &app, &big, StatusCode::OK, "axum/noauth/oversized");
    c.bench_function("axum/noauth/oversized", |b| {
        b.to_async(&rt)
            .iter(|| app.clone().oneshot(request08(&big)))
    });
    let app = noauth07();
    check07(&rt, &app, &auth, StatusCode::OK, "axum07/noauth");
    c.bench_function("axum07/noauth", |b| {
        b.to_async(&rt)
            .iter(|| app.clone().oneshot(request07(&auth)))
    });

    for case in [hs256, AlgCase::rs256()] {
        let valid = case.token();
        let tokens = [
            ("valid", valid.clone(), StatusCode::OK),
            (
                "bad-signature",
                bad_signature(&valid),
                StatusCode::UNAUTHORIZED,
            ),
            ("garbage", GARBAGE.to_owned(), StatusCode::UNAUTHORIZED),
            ("oversized", oversized(&valid), StatusCode::UNAUTHORIZED),
        ];
        let ours = ours(&case);
        let peer08 = axum_jwt_auth(&case);
        let peer07 = jwt_authorizer(&rt, &case);

        for (name, token, want) in &tokens {
            let auth = bearer(token);
            let id = format!("axum/{}/{name}", case.name);
            check08(&rt, &ours, &auth, *want, &format!("{id}/ours"));
            check08(&rt, &peer08, &auth, *want, &format!("{id}/axum-jwt-auth"));
            check07(&rt, &peer07, &auth, *want, &format!("{id}/jwt-authorizer"));

            let mut group = c.benchmark_group(&id);
            group.bench_function("ours", |b| {
                b.to_async(&rt)
                    .iter(|| ours.clone().oneshot(request08(&auth)))
            });
            #[cfg(feature = "cache")]
            {
                let cached = axum::Router::new()
                    .route("/me", axum::routing::get(ours_handler))
                    .layer(case.layer_cached(tower_jwt_auth::cache::CacheConfig::default()));
                check08(&rt, &cached, &auth, *want, &format!("{id}/ours-cache"));
                group.bench_function("ours-cache", |b| {
                    b.to_async(&rt)
                        .iter(|| cached.clone().oneshot(request08(&auth)))
                });
            }
            group.bench_function("axum-jwt-auth", |b| {
                b.to_async(&rt)
                    .iter(|| peer08.clone().oneshot(request08(&auth)))
            });
            group.bench_function("jwt-authorizer", |b| {
                b.to_async(&rt)
                    .iter(|| peer07.clone().oneshot(request07(&auth)))
            });
            group.finish();
        }
    }
}

criterion_group!(benches, bench_axum);
criterion_main!(benches);
