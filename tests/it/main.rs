//! The integration tests: one test binary, one module per area, all on the harness in
//! [`common`] (keys and tokens, the in-process `send`/`Outcome`, the counting axum handlers
//! and HTTP client, a JWKS server, `redis-server` and a real OpenID provider).
//!
//! Test names are `module::function`, e.g. `attacks::alg_none_with_empty_signature`; run one
//! area with a filter: `cargo test --test it -- attacks::`. Modules that need an optional
//! feature are compiled only with it.
//!
//! What the tests share as a process: jsonwebtoken's crypto provider, which the harness
//! installs to sign crafted tokens (tests/backend.rs is a test binary of its own because it
//! shows the crate working where that provider was never installed); the counting global
//! allocator of `allocations`, which counts only on the thread that asks for it; the
//! process-wide tracing subscriber of `compose`, which takes `tower_http` events only, while
//! `tracing` captures the crate's events with a subscriber of its own thread.

mod common;

#[cfg(feature = "axum")]
mod allocations;
mod attacks;
#[cfg(all(feature = "remote", feature = "redis", feature = "cache"))]
mod audit;
#[cfg(feature = "cache")]
mod audit11;
#[cfg(feature = "redis")]
mod audit12;
#[cfg(feature = "redis")]
mod audit12b;
#[cfg(feature = "dpop")]
mod audit13;
#[cfg(feature = "redis")]
mod audit14;
#[cfg(all(
    feature = "dpop",
    feature = "cache",
    feature = "issue",
    feature = "axum"
))]
mod audit15;
#[cfg(all(feature = "axum", feature = "dpop"))]
mod audit16;
#[cfg(feature = "redis")]
mod audit17;
#[cfg(feature = "redis")]
#[cfg(all(feature = "axum", feature = "dpop"))]
mod audit18;
#[cfg(all(
    feature = "axum",
    feature = "dpop",
    feature = "cache",
    feature = "tonic"
))]
mod audit19;
#[cfg(feature = "redis")]
mod audit20;
#[cfg(all(feature = "axum", feature = "cache", feature = "tonic"))]
mod audit21;
#[cfg(feature = "redis")]
mod audit22;
#[cfg(all(
    feature = "axum",
    feature = "tonic",
    feature = "dpop",
    feature = "remote"
))]
mod audit23;
#[cfg(feature = "redis")]
mod audit24;
#[cfg(feature = "redis")]
mod audit25;
mod axum;
#[cfg(feature = "cache")]
mod cache;
mod claims_types;
mod compose;
mod defaults;
#[cfg(feature = "dpop")]
mod dpop;
#[cfg(all(feature = "remote", feature = "redis", feature = "cache"))]
mod faults_under_load;
mod fuzz_equivalents;
mod hyper;
mod keys;
mod lifecycle;
#[cfg(feature = "metrics")]
mod metrics;
mod mtls;
#[cfg(feature = "remote")]
mod oidc_layer;
#[cfg(feature = "remote")]
mod oidc_provider;
#[cfg(all(feature = "remote", feature = "cache"))]
mod pipeline_audit;
mod proptest_extraction;
mod providers;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
mod redis_replica;
#[cfg(feature = "remote")]
mod remote_jwks;
#[cfg(feature = "remote")]
mod remote_layer;
#[cfg(feature = "redis")]
mod replica_restore;
mod tenants;
#[cfg(feature = "test-util")]
mod testing;
mod tonic;
#[cfg(feature = "tracing")]
mod tracing;
mod validate;
mod wycheproof;
