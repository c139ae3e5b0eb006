//! Metrics (feature `metrics`) behind real servers on 127.0.0.1: the layer's counters and
//! histogram, read from a `metrics_util` `DebuggingRecorder`.
//!
//! Each test installs its recorder as its own thread's default
//! (`metrics::set_default_local_recorder`) and runs on a current-thread runtime, so the
//! servers it spawns record on that thread too, and tests running in parallel in this binary
//! never see each other's counts.

use crate::common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use reqwest::StatusCode;
use serde_json::json;
use tower_jwt_auth::metrics as names;
use tower_jwt_auth::revocation::{Revocation, RevocationError, TokenId};

use common::*;

/// A series: the metric's name and its sorted labels.
type Series = (String, Vec<(String, String)>);

/// This thread's recorder, and what it recorded so far. A snapshot drains the recorder, so
/// every snapshot is added to the totals here.
struct Recorded {
    snapshotter: Snapshotter,
    counters: Mutex<HashMap<Series, u64>>,
    histograms: Mutex<HashMap<Series, Vec<f64>>>,
}

fn series(name: &str, labels: &[(&str, &str)]) -> Series {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    labels.sort();
    (name.to_owned(), labels)
}

impl Recorded {
    fn drain(&self) {
        let mut counters = self.counters.lock().unwrap();
        let mut histograms = self.histograms.lock().unwrap();
        for (key, _, _, value) in self.snapshotter.snapshot().into_vec() {
            let key = key.key();
            let labels: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
            let series = series(key.name(), &labels);
            match value {
                DebugValue::Counter(n) => *counters.entry(series).or_default() += n,
                DebugValue::Histogram(samples) => histograms
                    .entry(series)
                    .or_default()
                    .extend(samples.into_iter().map(|s| *s)),
                DebugValue::Gauge(_) => panic!("no gauges are recorded: {series:?}"),
            }
        }
    }

    /// The counter `name` with exactly these labels (0 when never incremented).
    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.drain();
        let counters = self.counters.lock().unwrap();
        counters.get(&series(name, labels)).copied().unwrap_or(0)
    }

    /// The samples of histogram `name` (no labels).
    fn histogram(&self, name: &str) -> Vec<f64> {
        self.drain();
        let histograms = self.histograms.lock().unwrap();
        histograms
            .get(&series(name, &[]))
            .cloned()
            .unwrap_or_default()
    }

    fn requests(&self, outcome: &str, reason: &str) -> u64 {
        self.counter(
            names::REQUESTS_TOTAL,
            &[("outcome", outcome), ("reason", reason)],
        )
    }
}

/// Runs `test` with a recorder that is this thread's default, on a current-thread runtime.
fn with_recorder<F>(test: impl FnOnce(Arc<Recorded>) -> F)
where
    F: std::future::Future<Output = ()>,
{
    install_provider();
    let recorder = DebuggingRecorder::new();
    let recorded = Arc::new(Recorded {
        snapshotter: recorder.snapshotter(),
        counters: Mutex::default(),
        histograms: Mutex::default(),
    });
    let _guard = ::metrics::set_default_local_recorder(&recorder);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(test(recorded));
}

#[test]
fn outcomes_by_reason_and_verification_latency() {
    with_recorder(|m| async move {
        let url = me_server(hs256_layer::<TestClaims>()).await.0;
        let client = client();
        let good = hs256_token(json!({}));
        let expired = hs256_token(json!({ "exp": now() - 3600 }));
        for (token, status) in [
            (Some(good.as_str()), StatusCode::OK),
            (Some(good.as_str()), StatusCode::OK),
            (Some(expired.as_str()), StatusCode::UNAUTHORIZED),
            (Some(&*tamper_signature(&good)), StatusCode::UNAUTHORIZED),
            (Some("not-a-jwt"), StatusCode::UNAUTHORIZED),
            (None, StatusCode::UNAUTHORIZED),
        ] {
            let mut req = client.get(&url);
            if let Some(token) = token {
                req = req.bearer_auth(token);
            }
            assert_eq!(req.send().await.unwrap().status(), status);
        }
        assert_eq!(m.requests("accepted", "verified"), 2);
        assert_eq!(m.requests("rejected", "expired"), 1);
        assert_eq!(m.requests("rejected", "invalid_signature"), 1);
        assert_eq!(m.requests("rejected", "malformed_token"), 1);
        assert_eq!(m.requests("rejected", "missing_token"), 1);
        // By the configured issuer: the tokens that reached its verifier (the expired and the
        // forged one refused there; the malformed one and the missing token never got there).
        let by_issuer = |outcome| {
            m.counter(
                names::ISSUER_REQUESTS_TOTAL,
                &[("issuer", ISSUER), ("outcome", outcome)],
            )
        };
        assert_eq!((by_issuer("accepted"), by_issuer("rejected")), (2, 2));
        // One verification in 16 per thread is timed (this test's server runs on its one
        // thread): the first of the four tokens that reached the verifier (not the malformed
        // one, nor the request without a token), then the 17th.
        let samples = m.histogram(names::VERIFY_DURATION_SECONDS);
        assert_eq!(samples.len(), 1, "{samples:?}");
        for _ in 0..12 {
            let res = client.get(&url).bearer_auth(&good).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
        }
        assert_eq!(m.histogram(names::VERIFY_DURATION_SECONDS).len(), 1);
        let res = client.get(&url).bearer_auth(&good).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let samples = m.histogram(names::VERIFY_DURATION_SECONDS);
        assert_eq!(samples.len(), 2, "{samples:?}");
        assert!(samples.iter().all(|s| *s >= 0.0 && *s < 1.0), "{samples:?}");
    });
}

#[test]
fn anonymous_passes_are_accepted() {
    with_recorder(|m| async move {
        let layer = hs256_builder::<TestClaims>().optional().build().unwrap();
        let url = serve(
            axum::Router::new().route("/", axum::routing::get(|| async { "hello" }).layer(layer)),
        )
        .await;
        let res = client().get(format!("http://{url}/")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(m.requests("accepted", "anonymous"), 1);
        assert!(m.histogram(names::VERIFY_DURATION_SECONDS).is_empty());
    });
}

/// A `validate` hook's refusal is counted as `claims_rejected`; a public path as an anonymous
/// pass.
#[test]
fn hook_refusals_and_public_paths() {
    with_recorder(|m| async move {
        let layer = hs256_builder::<TestClaims>()
            .validate(|c: &TestClaims| c.sub != "blocked")
            .public_path("/health")
            .build()
            .unwrap();
        let hits = Hits::default();
        let app = axum::Router::new()
            .route("/me", subject::<TestClaims>(&hits))
            .route("/health", subject::<TestClaims>(&hits))
            .layer(layer);
        let base = format!("http://{}", serve(app).await);
        let blocked = hs256_token(json!({ "sub": "blocked" }));
        let reply = fetch(&format!("{base}/me"), Some(&blocked)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        let reply = fetch(&format!("{base}/health"), None).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(m.requests("rejected", "claims_rejected"), 1);
        assert_eq!(m.requests("accepted", "anonymous"), 1);
        assert_eq!(hits.count(), 1);
    });
}

#[cfg(feature = "cache")]
#[test]
fn cache_hits_and_misses() {
    with_recorder(|m| async move {
        let layer = hs256_builder::<TestClaims>()
            .cache(tower_jwt_auth::cache::CacheConfig::default())
            .build()
            .unwrap();
        let url = me_server(layer).await.0;
        let token = hs256_token(json!({}));
        for _ in 0..3 {
            let res = client().get(&url).bearer_auth(&token).send().await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
        }
        assert_eq!(m.counter(names::CACHE_MISSES_TOTAL, &[]), 1);
        assert_eq!(m.counter(names::CACHE_HITS_TOTAL, &[]), 2);
        assert_eq!(m.requests("accepted", "verified"), 3);
        // Only the miss was verified.
        assert_eq!(m.histogram(names::VERIFY_DURATION_SECONDS).len(), 1);
    });
}

/// A revocation store that cannot be reached.
struct Down;

impl Revocation for Down {
    fn is_revoked<'a>(&'a self, _: TokenId<'a>) -> BoxFuture<'a, Result<bool, RevocationError>> {
        Box::pin(async { Err(RevocationError("connection refused".into())) })
    }

    fn retention_margin(&self) -> Duration {
        Duration::from_secs(3600)
    }
}

#[test]
fn revocation_store_errors() {
    with_recorder(|m| async move {
        let closed = hs256_builder::<TestClaims>()
            .revocation(Arc::new(Down))
            .build()
            .unwrap();
        let url = me_server(closed).await.0;
        let token = hs256_token(json!({ "jti": "t-1" }));
        let res = client().get(&url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(m.counter(names::REVOCATION_ERRORS_TOTAL, &[]), 1);
        assert_eq!(m.requests("rejected", "revocation_unavailable"), 1);
        assert_eq!(m.requests("accepted", "verified"), 0);

        // Failing open: still an error of the store, and the request is accepted.
        let open = hs256_builder::<TestClaims>()
            .revocation(Arc::new(Down))
            .revocation_fail_open()
            .build()
            .unwrap();
        let url = me_server(open).await.0;
        let res = client().get(&url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(m.counter(names::REVOCATION_ERRORS_TOTAL, &[]), 2);
        assert_eq!(m.requests("accepted", "verified"), 1);
    });
}

#[cfg(feature = "remote")]
#[test]
fn jwks_fetches_rotations_and_stale_keys() {
    use common::jwks_server::{JwksServer, Mode};
    use tower_jwt_auth::remote::RemoteJwks;

    with_recorder(|m| async move {
        let server = JwksServer::start(&[jwk("rsa", "rsa-a")]).await;
        server.cache_control("max-age=600");
        let keys = RemoteJwks::from_jwks_uri(server.jwks_url())
            .allow_http_for_loopback()
            .timeouts(Duration::from_millis(500), Duration::from_secs(2))
            .refresh_limit(10, Duration::from_millis(1))
            .refresh_cooldown(Duration::ZERO)
            .build()
            .await
            .unwrap();
        let fetches = |result| m.counter(names::JWKS_FETCHES_TOTAL, &[("result", result)]);
        assert_eq!(fetches("updated"), 1);
        assert_eq!(m.counter(names::JWKS_ROTATIONS_TOTAL, &[]), 0);

        let layer = tower_jwt_auth::JwtAuthLayer::<serde_json::Value>::builder()
            .remote_jwks(keys)
            .issuer(ISSUER)
            .audience(AUDIENCE)
            .build()
            .unwrap();
        let url = format!("http://{}/", {
            serve(
                axum::Router::new().route("/", axum::routing::get(|| async { "ok" }).layer(layer)),
            )
            .await
        });
        let token = |which: &str, kid: &str| {
            let (key, alg) = private_key(which);
            sign_jwt(alg, &key, Some(kid), &good_claims())
        };

        // A new key: the unknown kid makes the layer fetch, and the set rotates.
        server.publish(&[jwk("rsa", "rsa-a"), jwk("rsa-b", "rsa-b")]);
        let res = client()
            .get(&url)
            .bearer_auth(token("rsa-b", "rsa-b"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(fetches("updated"), 2);
        assert_eq!(m.counter(names::JWKS_ROTATIONS_TOTAL, &[]), 1);
        assert_eq!(m.requests("accepted", "verified"), 1);

        // The provider fails: the refresh is an error, the last good keys are kept.
        server.mode(Mode::Status(500));
        let res = client()
            .get(&url)
            .bearer_auth(token("ec", "ec-new"))
            .send()
            .await
            .unwrap();
        assert_ne!(res.status(), StatusCode::OK);
        assert_eq!(fetches("error"), 1);
        assert_eq!(m.counter(names::JWKS_STALE_SERVED_TOTAL, &[]), 1);
        // Known keys still verify.
        let res = client()
            .get(&url)
            .bearer_auth(token("rsa", "rsa-a"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(m.requests("accepted", "verified"), 2);
    });
}
