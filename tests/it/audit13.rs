//! Outside audit 13: sender-constrained tokens (DPoP, RFC 9449; certificate-bound tokens,
//! RFC 8705), protected resource metadata (RFC 9728) and their wiring in the pipeline.
//!
//! `regression_*` tests reproduce the four defects the audit found (each failed before its
//! fix); `holds_*` tests pin properties the audit attacked and found to hold.
//!
//! Everything runs in process (`common::send`, `tower::ServiceExt::oneshot`) on a manual
//! `Clock` where time matters: no sockets but the JWKS server of the remote-keys regression, no
//! sleeps.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::{BoxFuture, FutureExt, ready};
use http::{Request, StatusCode};
use jsonwebtoken::EncodingKey;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use serde_json::{Value, json};
use tower_jwt_auth::dpop::Dpop;
use tower_jwt_auth::mtls::ClientCertificate;
use tower_jwt_auth::resource_metadata::ResourceMetadata;
use tower_jwt_auth::revocation::{
    MemoryRevocation, Revocation, RevocationError, RevocationStore, TokenId,
};
use tower_jwt_auth::{Algorithm, AuthError, Clock, JwtAuthBuilder, JwtAuthLayer};

use common::{
    Outcome, TestClaims, b64, hs256_builder, hs256_token, merge, private_key, public_jwk, send,
    sha256_b64, sign_raw,
};

/// The external base URL of the API (what `htu` names).
const BASE: &str = "https://api.example.com";
/// The time every manual clock here starts at (a whole second).
const T0: u64 = 1_900_000_000;

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0)
}

// ---------------------------------------------------------------------------------------------
// Client side

use common::dpop::Holder;

fn holder(which: &str) -> Holder {
    Holder::new(which)
}

/// This module's proofs: for `GET <BASE>/resource`, issued at T0 unless said otherwise.
trait Proofs {
    fn proof_at(&self, token: &str, iat: Value, claims: Value, header: Value) -> String;
    fn proof(&self, token: &str) -> String;
    fn proof_with(&self, token: &str, claims: Value, header: Value) -> String;
    fn token(&self) -> String;
}

impl Proofs for Holder {
    /// A proof for `GET <BASE>/resource` with `token`, issued at `iat`, `claims` and `header`
    /// merged in (`null` removes a member).
    fn proof_at(&self, token: &str, iat: Value, claims: Value, header: Value) -> String {
        let htu = format!("{BASE}/resource");
        self.sign("GET", &htu, iat, token, claims, header)
    }

    /// A valid proof at T0.
    fn proof(&self, token: &str) -> String {
        self.proof_at(token, json!(T0), json!({}), json!({}))
    }

    fn proof_with(&self, token: &str, claims: Value, header: Value) -> String {
        self.proof_at(token, json!(T0), claims, header)
    }

    /// A token of the test policy bound to this key, valid at T0.
    fn token(&self) -> String {
        token_at(json!({ "cnf": { "jkt": self.jkt } }))
    }
}

/// A token of the test policy valid around T0 (the manual clocks' time).
fn token_at(overrides: Value) -> String {
    let mut claims = json!({ "iat": T0, "exp": T0 + 3600 });
    merge(&mut claims, overrides);
    hs256_token(claims)
}

/// `GET <path>` with `Authorization: <scheme> <token>` and these `DPoP` header values.
fn request(path: &str, scheme: &str, token: &str, proofs: &[&str]) -> Request<String> {
    let mut req = Request::get(path).header("authorization", format!("{scheme} {token}"));
    for proof in proofs {
        req = req.header("dpop", *proof);
    }
    req.body(String::new()).unwrap()
}

fn dpop_req(token: &str, proof: &str) -> Request<String> {
    request("/resource", "DPoP", token, &[proof])
}

/// A layer of the test policy on `clock` with `dpop`.
fn layer_on(clock: &Clock, dpop: Dpop) -> JwtAuthLayer<TestClaims> {
    builder_on(clock).dpop(dpop).build().unwrap()
}

fn builder_on(clock: &Clock) -> JwtAuthBuilder<TestClaims> {
    hs256_builder::<TestClaims>().clock(clock.clone())
}

#[track_caller]
fn assert_passed(out: &Outcome, what: &str) {
    assert_eq!(out.status, StatusCode::OK, "{what}: {:?}", out.headers);
    assert_eq!(out.reached(), Some("alice"), "{what}");
}

#[track_caller]
fn assert_refused(out: &Outcome, what: &str) {
    assert!(
        out.status == StatusCode::UNAUTHORIZED || out.status == StatusCode::BAD_REQUEST,
        "{what}: expected a refusal, got {} {:?}",
        out.status,
        out.headers
    );
    assert_eq!(out.hits, 0, "{what}: the inner service must not run");
}

#[track_caller]
fn assert_invalid_proof(out: &Outcome, what: &str) {
    assert_refused(out, what);
    let all = challenges(out);
    assert!(all.contains("invalid_dpop_proof"), "{what}: {all}");
}

/// Every `WWW-Authenticate` value, joined with " | ".
fn challenges(out: &Outcome) -> String {
    out.headers
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// A replay store that records every key it is asked to spend, over a `MemoryRevocation`.
struct Recording {
    inner: MemoryRevocation,
    keys: Mutex<Vec<String>>,
}

impl Revocation for Recording {
    fn is_revoked<'a>(&'a self, t: TokenId<'a>) -> BoxFuture<'a, Result<bool, RevocationError>> {
        self.inner.is_revoked(t)
    }
    fn retention_margin(&self) -> Duration {
        self.inner.retention_margin()
    }
}

impl RevocationStore for Recording {
    fn revoke<'a>(&'a self, j: &'a str, e: u64) -> BoxFuture<'a, Result<(), RevocationError>> {
        self.inner.revoke(j, e)
    }
    fn revoke_subject<'a>(
        &'a self,
        i: Option<&'a str>,
        s: &'a str,
        b: u64,
        k: u64,
    ) -> BoxFuture<'a, Result<(), RevocationError>> {
        self.inner.revoke_subject(i, s, b, k)
    }
    fn use_once<'a>(&'a self, j: &'a str, e: u64) -> BoxFuture<'a, Result<bool, RevocationError>> {
        self.keys.lock().unwrap().push(j.to_owned());
        self.inner.use_once(j, e)
    }
}

/// A store that cannot be reached: every call fails.
struct Down(AtomicUsize);

impl Revocation for Down {
    fn is_revoked<'a>(&'a self, _: TokenId<'a>) -> BoxFuture<'a, Result<bool, RevocationError>> {
        ready(Err(RevocationError("down".into()))).boxed()
    }
    fn retention_margin(&self) -> Duration {
        Duration::from_secs(300)
    }
}

impl RevocationStore for Down {
    fn revoke<'a>(&'a self, _: &'a str, _: u64) -> BoxFuture<'a, Result<(), RevocationError>> {
        ready(Err(RevocationError("down".into()))).boxed()
    }
    fn revoke_subject<'a>(
        &'a self,
        _: Option<&'a str>,
        _: &'a str,
        _: u64,
        _: u64,
    ) -> BoxFuture<'a, Result<(), RevocationError>> {
        ready(Err(RevocationError("down".into()))).boxed()
    }
    fn use_once<'a>(&'a self, _: &'a str, _: u64) -> BoxFuture<'a, Result<bool, RevocationError>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        ready(Err(RevocationError("down".into()))).boxed()
    }
}

// =============================================================================================
// REGRESSIONS (each failed before its fix)
// =============================================================================================

/// F1. A proof replayed to a fleet member whose `proof_lifetime` is longer than the one that
/// spent it passes: `DpopCheck::spend` keeps the spent `jti` until `iat + <this layer's
/// window>` + the store's retention margin, while another layer sharing the same store accepts
/// the proof until `iat + <its own window>`. Nothing ties the window to the store's margin
/// (unlike the leeway, which `build` refuses when longer than the revocation store's margin).
/// A rolling config change of `proof_lifetime` across a fleet opens the gap.
#[tokio::test]
async fn regression_a_proof_lifetime_longer_than_the_replay_stores_margin_does_not_build() {
    let clock = Clock::manual(t0());
    // The default retention margin (300 s), on the test's clock.
    let store = Arc::new(MemoryRevocation::new().clock(clock.clone()));
    let a = layer_on(&clock, Dpop::required(BASE).replay_store(store.clone()));
    let client = holder("ec");
    let token = client.token();
    let proof = client.proof(&token);
    assert_passed(&send(&a, dpop_req(&token, &proof)).await, "first use at A");

    // Server B of the same fleet, sharing the store, with a 15-minute window. A layer
    // that cannot keep this promise should not build; if it builds, it must refuse the replay.
    let b = builder_on(&clock)
        .dpop(
            Dpop::required(BASE)
                .replay_store(store.clone())
                .proof_lifetime(Duration::from_secs(900)),
        )
        .build();
    let Ok(b) = b else {
        return; // Fixed by refusing the configuration.
    };
    // Same second: B refuses the replay (the entry is there).
    assert_invalid_proof(&send(&b, dpop_req(&token, &proof)).await, "replay at once");
    // 400 s later: A's entry (iat + 60 + 300 + 1) is gone, the proof is still within B's window.
    clock.advance(Duration::from_secs(400));
    let out = send(&b, dpop_req(&token, &proof)).await;
    assert_invalid_proof(&out, "replay at B after A's jti entry expired");
}

/// F2. Metrics count a refused request as accepted: for a DPoP request whose token needs no
/// revocation check, `Pipeline::decide` counts `accepted{reason="verified"}` before the proof
/// is spent; a replayed proof (or an unreachable replay store) is then also counted as
/// `rejected`. Dashboards and alerts on accepted/rejected ratios see replays as successes.
#[cfg(feature = "metrics")]
#[test]
fn regression_a_replayed_proof_is_counted_rejected_only() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    common::install_provider();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = ::metrics::set_default_local_recorder(&recorder);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let counts = rt.block_on(async {
        let clock = Clock::manual(t0());
        let layer = layer_on(&clock, Dpop::required(BASE));
        let client = holder("ec");
        let token = client.token();
        let proof = client.proof(&token);
        assert_passed(&send(&layer, dpop_req(&token, &proof)).await, "first use");
        assert_invalid_proof(&send(&layer, dpop_req(&token, &proof)).await, "replay");
        // And a store that cannot be asked: 503, never accepted.
        let down = layer_on(
            &clock,
            Dpop::required(BASE).replay_store(Arc::new(Down(AtomicUsize::new(0)))),
        );
        let out = send(&down, dpop_req(&token, &client.proof(&token))).await;
        assert_eq!(out.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(out.hits, 0);
        let mut counts = std::collections::HashMap::<(String, String), u64>::new();
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            if key.name() != tower_jwt_auth::metrics::REQUESTS_TOTAL {
                continue;
            }
            let label = |n: &str| {
                key.labels()
                    .find(|l| l.key() == n)
                    .map(|l| l.value().to_owned())
                    .unwrap_or_default()
            };
            if let DebugValue::Counter(n) = value {
                *counts
                    .entry((label("outcome"), label("reason")))
                    .or_default() += n;
            }
        }
        counts
    });
    let get = |o: &str, r: &str| counts.get(&(o.into(), r.into())).copied().unwrap_or(0);
    assert_eq!(get("rejected", "invalid_dpop_proof"), 1, "{counts:?}");
    assert_eq!(get("rejected", "revocation_unavailable"), 1, "{counts:?}");
    assert_eq!(
        get("accepted", "verified"),
        1,
        "only the first request passed; refused ones counted as accepted: {counts:?}"
    );
}

/// F3. With remote keys, a token whose `kid` is unknown has its proof spent before it is
/// verified (`Decision::RefreshKeys` inside `SpendProof`: `spend_proof_then` spends first,
/// then refreshes and verifies). The module docs promise "the replay check after the token
/// verified (so only holders of valid tokens write to the store)": here anyone with a key pair
/// and a self-made token naming a fresh `kid` writes one entry per request into the shared
/// (Redis) store, and triggers the unknown-kid refresh path in the same request.
#[cfg(feature = "remote")]
#[tokio::test]
async fn regression_only_a_verified_token_spends_a_proof_even_after_a_key_refresh() {
    use common::jwks_server::JwksServer;
    use common::{ISSUER, jwk, sign_jwt};
    use tower_jwt_auth::remote::RemoteJwks;

    let server = JwksServer::start(&[jwk("rsa", "rsa-a")]).await;
    server.cache_control("max-age=600");
    let keys = RemoteJwks::from_jwks_uri(server.jwks_url())
        .allow_http_for_loopback()
        .timeouts(Duration::from_millis(500), Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    let store = Arc::new(MemoryRevocation::new());
    let layer = JwtAuthLayer::<TestClaims>::builder()
        .remote_jwks(keys)
        .issuer(ISSUER)
        .audience(common::AUDIENCE)
        .dpop(Dpop::required(BASE).replay_store(store.clone()))
        .build()
        .unwrap();
    // The attacker: their own DPoP key, and a token they signed themselves (another RSA key)
    // under a `kid` the provider never published, bound to their DPoP key.
    let attacker = holder("ec");
    let (forger, alg) = private_key("rsa-b");
    let now = common::now();
    let forged = sign_jwt(
        alg,
        &forger,
        Some("kid-nobody-published"),
        &json!({ "sub": "alice", "iss": ISSUER, "aud": common::AUDIENCE, "iat": now,
                 "exp": now + 3600, "cnf": { "jkt": attacker.jkt } }),
    );
    let proof = attacker.proof_at(&forged, json!(now), json!({}), json!({}));
    let out = send(&layer, dpop_req(&forged, &proof)).await;
    assert_refused(&out, "forged token");
    assert!(
        store.is_empty(),
        "a token that never verified wrote {} entry into the replay store",
        store.len()
    );
}

/// F4. The expected `htu` is the base URL joined with the raw request path and then
/// normalised, dot-segments included, so a request path can climb out of the base URL's path
/// prefix: a layer configured for `https://api.example.com/v1` accepts a proof made for
/// `https://api.example.com/v2/resource` (another service behind the same origin, with its own
/// replay store) on the request `GET /files/../../v2/resource`, a path the application does not
/// normalise (axum routes it to `/files/{*path}` with `path = "../../v2/resource"`). A proof
/// already spent at the v2 service is thereby replayable at v1, which the `htu` binding
/// (RFC 9449 §4.3 point 9, §11.1) is meant to prevent.
#[tokio::test]
async fn regression_request_paths_with_dot_segments_are_refused() {
    let clock = Clock::manual(t0());
    let v1 = || layer_on(&clock, Dpop::required(format!("{BASE}/v1")));
    let v2 = layer_on(&clock, Dpop::required(format!("{BASE}/v2")));
    let ec = holder("ec");
    let token = ec.token();
    let proof = ec.proof_with(
        &token,
        json!({ "htu": format!("{BASE}/v2/resource") }),
        json!({}),
    );
    // The proof's legitimate use, at the v2 service.
    assert_passed(&send(&v2, dpop_req(&token, &proof)).await, "at v2");
    // Replayed at v1 (its own store) under a path that climbs out of /v1, through an axum
    // router with a wildcard route: the handler runs with the raw path.
    let app = axum::Router::new()
        .route(
            "/files/{*path}",
            axum::routing::get(
                |axum::extract::Path(p): axum::extract::Path<String>| async move {
                    format!("served files/{p}")
                },
            ),
        )
        .layer(v1());
    let res = tower::ServiceExt::oneshot(
        app,
        request("/files/../../v2/resource", "DPoP", &token, &[&proof]).map(axum::body::Body::from),
    )
    .await
    .unwrap();
    let status = res.status();
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "axum handler ran with v2's proof: {:?}",
        String::from_utf8_lossy(&body)
    );
    for path in [
        "/files/../../v2/resource",
        "/../v2/resource",
        "/%2E%2E/v2/resource",
    ] {
        let out = send(&v1(), request(path, "DPoP", &token, &[&proof])).await;
        assert_invalid_proof(&out, &format!("v2's proof at v1 {path}"));
    }
}

// =============================================================================================
// HELD PROPERTIES
// =============================================================================================

/// The replay store keeps a spent `jti` at least as long as the same layer accepts its `iat`,
/// even with the smallest retention margin a layer builds with (its window: a shorter one is a
/// build error) and fractional times: replays at the window's last instant, and one
/// microsecond before the entry would expire, are refused.
#[tokio::test]
async fn holds_replay_refused_up_to_the_window_edge_even_with_the_smallest_margin() {
    let zero = Arc::new(MemoryRevocation::new().retain_past_expiry(Duration::ZERO));
    assert!(
        hs256_builder::<TestClaims>()
            .dpop(Dpop::required(BASE).replay_store(zero))
            .build()
            .is_err(),
        "a replay store whose margin is shorter than the proof lifetime must not build"
    );
    for iat in [
        json!(T0),
        json!(T0 as f64 + 0.999_999),
        json!(T0 as f64 - 59.5),
    ] {
        let clock = Clock::manual(t0());
        let store = Arc::new(
            MemoryRevocation::new()
                .retain_past_expiry(Duration::from_secs(60))
                .clock(clock.clone()),
        );
        let layer = layer_on(&clock, Dpop::required(BASE).replay_store(store));
        let client = holder("ec");
        let token = client.token();
        let proof = client.proof_at(&token, iat.clone(), json!({}), json!({}));
        assert_passed(&send(&layer, dpop_req(&token, &proof)).await, "first");
        let iat_f = iat.as_f64().unwrap();
        // Walk to the last accepted instant (iat + 60) in steps, replaying at each.
        let last = ((iat_f + 60.0) * 1e6).floor() as u64 - T0 * 1_000_000;
        for at in [1_000_000u64, 30_000_000, last.saturating_sub(1), last] {
            clock.set(t0() + Duration::from_micros(at));
            let out = send(&layer, dpop_req(&token, &proof)).await;
            assert_invalid_proof(&out, &format!("replay of iat {iat} at +{at} µs"));
        }
        // Past the window the proof is refused for its age anyway.
        clock.set(t0() + Duration::from_micros(last + 1_000_001));
        assert_invalid_proof(&send(&layer, dpop_req(&token, &proof)).await, "stale");
    }
}

/// Two layers sharing a store with the same window: a proof spent at either is refused at the
/// other, up to the end of the window.
#[tokio::test]
async fn holds_replay_across_two_layers_sharing_a_store() {
    let clock = Clock::manual(t0());
    let store = Arc::new(MemoryRevocation::new().clock(clock.clone()));
    let a = layer_on(&clock, Dpop::required(BASE).replay_store(store.clone()));
    let b = layer_on(&clock, Dpop::required(BASE).replay_store(store.clone()));
    let client = holder("ed");
    let token = client.token();
    let proof = client.proof(&token);
    assert_passed(&send(&a, dpop_req(&token, &proof)).await, "at A");
    for secs in [0, 59, 60] {
        clock.set(t0() + Duration::from_secs(secs));
        assert_invalid_proof(&send(&b, dpop_req(&token, &proof)).await, "at B");
    }
}

/// An unreachable replay store fails closed (503), even on a layer told to fail open on
/// revocation errors, and the handler never runs.
#[tokio::test]
async fn holds_unreachable_replay_store_fails_closed() {
    let clock = Clock::manual(t0());
    let down = Arc::new(Down(AtomicUsize::new(0)));
    let layer = builder_on(&clock)
        .revocation(Arc::new(MemoryRevocation::new().clock(clock.clone())))
        .revocation_fail_open()
        .dpop(Dpop::required(BASE).replay_store(down.clone()))
        .build()
        .unwrap();
    let client = holder("ec");
    let token = client.token();
    let out = send(&layer, dpop_req(&token, &client.proof(&token))).await;
    assert_eq!(out.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(out.hits, 0);
    assert_eq!(down.0.load(Ordering::SeqCst), 1);
}

/// `jti` content never reaches the store key: any length or charset gives `dpop:<base64url>`
/// of fixed length, and `jti`s that would collide when concatenated naively do not.
#[tokio::test]
async fn holds_jti_is_hashed_into_the_store_key() {
    let clock = Clock::manual(t0());
    let store = Arc::new(Recording {
        inner: MemoryRevocation::new().clock(clock.clone()),
        keys: Mutex::default(),
    });
    let layer = layer_on(&clock, Dpop::required(BASE).replay_store(store.clone()));
    let client = holder("ec");
    let token = client.token();
    let jtis = [
        "a\r\nSET evil 1\r\n".to_owned(),
        "dpop:*".to_owned(),
        " x".to_owned(),
        "x ".to_owned(),
        "\u{0}".to_owned(),
        "é".repeat(600),
    ];
    for jti in &jtis {
        let proof = client.proof_with(&token, json!({ "jti": jti }), json!({}));
        assert_passed(&send(&layer, dpop_req(&token, &proof)).await, jti);
    }
    let keys = store.keys.lock().unwrap().clone();
    assert_eq!(keys.len(), jtis.len());
    for key in keys.iter() {
        assert!(key.starts_with("dpop:") && key.len() == 5 + 43, "{key}");
        assert!(
            key[5..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), keys.len());
    // A non-string or empty jti is refused.
    for jti in [json!(""), json!(1), json!(["a"])] {
        let proof = client.proof_with(&token, json!({ "jti": jti }), json!({}));
        assert_invalid_proof(&send(&layer, dpop_req(&token, &proof)).await, "bad jti");
    }
}

/// RFC 9449 §4.3 point 1: two `DPoP` field lines, one comma-joined value, or an empty one are
/// refused; so are two `Authorization` headers under different schemes.
#[tokio::test]
async fn holds_duplicate_and_joined_dpop_headers_are_refused() {
    let clock = Clock::manual(t0());
    let layer = layer_on(&clock, Dpop::required(BASE));
    let client = holder("ec");
    let token = client.token();
    let (p1, p2) = (client.proof(&token), client.proof(&token));
    for (what, proofs) in [
        ("two lines", vec![p1.clone(), p2.clone()]),
        ("same proof twice", vec![p1.clone(), p1.clone()]),
        ("comma joined", vec![format!("{p1}, {p2}")]),
        ("comma joined, no space", vec![format!("{p1},{p2}")]),
        ("empty", vec![String::new()]),
        ("padded", vec![format!(" {p1} ")]),
    ] {
        let refs: Vec<&str> = proofs.iter().map(String::as_str).collect();
        assert_refused(
            &send(&layer, request("/resource", "DPoP", &token, &refs)).await,
            what,
        );
    }
    let req = Request::get("/resource")
        .header("authorization", format!("DPoP {token}"))
        .header("authorization", format!("Bearer {token}"))
        .header("dpop", &p1)
        .body(String::new())
        .unwrap();
    assert_refused(&send(&layer, req).await, "DPoP and Bearer");
    // The untouched proof still passes: none of the above spent it.
    assert_passed(&send(&layer, dpop_req(&token, &p1)).await, "p1");
}

/// RFC 9449 §4.3 points 5 and 7: symmetric, private, weak or mismatched keys and algorithms.
#[tokio::test]
async fn holds_proof_keys_and_algorithms_are_checked() {
    let clock = Clock::manual(t0());
    let layer = layer_on(&clock, Dpop::required(BASE));
    let ec = holder("ec");
    let token = ec.token();
    let claims = json!({ "jti": "j", "htm": "GET", "htu": format!("{BASE}/resource"),
                         "iat": T0, "ath": sha256_b64(token.as_bytes()) });
    // oct key with HS256, and oct key named under ES256.
    let secret = b"0123456789abcdef0123456789abcdef";
    let oct = json!({ "kty": "oct", "k": b64(secret) });
    for alg in ["HS256", "HS384", "HS512"] {
        let h = json!({ "typ": "dpop+jwt", "alg": alg, "jwk": oct });
        let p = sign_raw(
            &h,
            &claims,
            Algorithm::HS256,
            &EncodingKey::from_secret(secret),
        );
        assert_invalid_proof(&send(&layer, dpop_req(&token, &p)).await, alg);
    }
    let h = json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": oct });
    let p = sign_raw(&h, &claims, Algorithm::ES256, &ec.key);
    assert_invalid_proof(&send(&layer, dpop_req(&token, &p)).await, "oct under ES256");
    // `none`, lower-case names, unknown names.
    for alg in ["none", "None", "es256", "ES256K", "Ed25519", "RS1"] {
        let p = ec.proof_with(&token, json!({}), json!({ "alg": alg }));
        assert_invalid_proof(&send(&layer, dpop_req(&token, &p)).await, alg);
    }
    // Private members, also `oth` and unusual casing of kty.
    for (name, value) in [("d", json!("AQAB")), ("oth", json!([])), ("k", json!("AA"))] {
        let mut jwk = ec.jwk.clone();
        jwk[name] = value;
        let p = ec.proof_with(&token, json!({}), json!({ "jwk": jwk }));
        assert_invalid_proof(&send(&layer, dpop_req(&token, &p)).await, name);
    }
    let mut jwk = ec.jwk.clone();
    jwk["kty"] = "ec".into();
    let p = ec.proof_with(&token, json!({}), json!({ "jwk": jwk }));
    assert_invalid_proof(&send(&layer, dpop_req(&token, &p)).await, "kty ec");
    // EC on the wrong curve: a P-384 key named P-256 under ES256, and named P-384 under ES256.
    let (p384, _) = private_key_pem("ec_p384_private.pem", Algorithm::ES384);
    let p384_jwk = public_jwk(Algorithm::ES384, &p384);
    for crv in ["P-256", "P-384"] {
        let mut jwk = p384_jwk.clone();
        jwk["crv"] = crv.into();
        let h = json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": jwk });
        let p = sign_raw(&h, &claims, Algorithm::ES384, &p384);
        assert_invalid_proof(&send(&layer, dpop_req(&token, &p)).await, crv);
    }
    // RSA below 2048 bits (2044), properly signed (by openssl: the test backend refuses to
    // sign or export a key that small).
    // The same procedure with the 2048-bit key passes (control), the 2044-bit one does not.
    for (bits, ok) in [(2048, true), (2044, false)] {
        let jwk = openssl_rsa_jwk(bits);
        let h = json!({ "typ": "dpop+jwt", "alg": "RS256", "jwk": jwk });
        let bound = token_at(json!({ "cnf": { "jkt": thumb(&jwk) } }));
        let mut c = claims.clone();
        c["jti"] = format!("rsa-{bits}").into();
        c["ath"] = sha256_b64(bound.as_bytes()).into();
        let input = format!(
            "{}.{}",
            b64(h.to_string().as_bytes()),
            b64(c.to_string().as_bytes())
        );
        let p = format!("{input}.{}", b64(&openssl_sign(bits, input.as_bytes())));
        let out = send(&layer, dpop_req(&bound, &p)).await;
        if ok {
            assert_passed(&out, "RSA 2048 by openssl");
        } else {
            assert_invalid_proof(&out, "RSA 2044");
        }
    }
    // `alg` of another family than the key (RS256 over an EC jwk), or the key's family with
    // the wrong hash (ES384 over a P-256 key).
    for alg in ["RS256", "PS256", "ES384", "EdDSA"] {
        let p = ec.proof_with(&token, json!({}), json!({ "alg": alg }));
        assert_invalid_proof(&send(&layer, dpop_req(&token, &p)).await, alg);
    }
    // `crit`, even empty; `jwk` missing or not an object.
    for header in [
        json!({ "crit": [] }),
        json!({ "jwk": null }),
        json!({ "jwk": "x" }),
    ] {
        let p = ec.proof_with(&token, json!({}), header.clone());
        assert_invalid_proof(
            &send(&layer, dpop_req(&token, &p)).await,
            &header.to_string(),
        );
    }
}

fn private_key_pem(file: &str, alg: Algorithm) -> (EncodingKey, Algorithm) {
    let pem = common::data(file);
    let key = match alg {
        Algorithm::ES384 | Algorithm::ES256 => EncodingKey::from_ec_pem(&pem).unwrap(),
        _ => EncodingKey::from_rsa_pem(&pem).unwrap(),
    };
    (key, alg)
}

fn rsa_path(bits: u32) -> String {
    format!(
        "{}/tests/data/rsa_{bits}_private.pem",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// The public JWK of tests/data/rsa_2044_private.pem, read with openssl.
fn openssl_rsa_jwk(bits: u32) -> Value {
    let out = std::process::Command::new("openssl")
        .args(["rsa", "-noout", "-modulus", "-in", &rsa_path(bits)])
        .output()
        .expect("openssl");
    let text = String::from_utf8(out.stdout).unwrap();
    let hex = text.trim().strip_prefix("Modulus=").expect("modulus");
    let hex = if hex.len() % 2 == 1 {
        format!("0{hex}")
    } else {
        hex.to_owned()
    };
    let n: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    json!({ "kty": "RSA", "n": b64(&n), "e": "AQAB" })
}

/// An RS256 signature of `input` with the 2044-bit key, by openssl.
fn openssl_sign(bits: u32, input: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-sign", &rsa_path(bits)])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    out.stdout
}

fn thumb(jwk: &Value) -> String {
    let parsed: Jwk = serde_json::from_value(jwk.clone()).unwrap();
    parsed.thumbprint(ThumbprintHash::SHA256).unwrap()
}

/// `typ` is a media type (case-insensitive), and nothing else is accepted.
#[tokio::test]
async fn holds_typ_variants() {
    let clock = Clock::manual(t0());
    let layer = layer_on(&clock, Dpop::required(BASE));
    let ec = holder("ec");
    let token = ec.token();
    for typ in ["DPoP+JWT", "dpop+jwt", "DPOP+jwt"] {
        let p = ec.proof_with(&token, json!({}), json!({ "typ": typ }));
        assert_passed(&send(&layer, dpop_req(&token, &p)).await, typ);
    }
    for typ in [
        json!("jwt"),
        json!("dpop+jwt "),
        json!("dpop"),
        json!(null),
        json!(1),
    ] {
        let p = ec.proof_with(&token, json!({}), json!({ "typ": typ }));
        assert_invalid_proof(&send(&layer, dpop_req(&token, &p)).await, &typ.to_string());
    }
}

/// `htm` is case-sensitive; `htu` is compared with the configured base URL joined with the
/// request's path, never with a Host header or an absolute-form request target the client
/// controls; equivalent spellings pass, other URLs do not.
#[tokio::test]
async fn holds_htm_and_htu_confusions() {
    let clock = Clock::manual(t0());
    let layer = layer_on(&clock, Dpop::required(BASE));
    let ec = holder("ec");
    let token = ec.token();
    for htm in ["get", "Get", "POST", "HEAD", ""] {
        let p = ec.proof_with(&token, json!({ "htm": htm }), json!({}));
        assert_invalid_proof(&send(&layer, dpop_req(&token, &p)).await, htm);
    }
    for htu in [
        "https://API.EXAMPLE.COM/resource",
        "HTTPS://api.example.com:443/resource",
        "https://api.example.com:/resource",
        "https://api.example.com/resource?",
        "https://api.example.com/resource#",
        "https://api.example.com/%72esource",
        "https://api.example.com/x/../resource",
    ] {
        let p = ec.proof_with(&token, json!({ "htu": htu }), json!({}));
        assert_passed(&send(&layer, dpop_req(&token, &p)).await, htu);
    }
    for htu in [
        "http://api.example.com/resource",
        "https://api.example.com:8443/resource",
        "https://api.example.com./resource",
        "https://api.exämple.com/resource",
        "https://xn--api-example.com/resource",
        "https://api.example.com/Resource",
        "https://api.example.com/resource/",
        "https://api.example.com//resource",
        "https://api.example.com/resource%2F",
        "https://user@api.example.com/resource",
        "https://evil.example/resource",
        "//api.example.com/resource",
        "/resource",
        "https://api.example.com/%72esource%",
    ] {
        let p = ec.proof_with(&token, json!({ "htu": htu }), json!({}));
        assert_invalid_proof(&send(&layer, dpop_req(&token, &p)).await, htu);
    }
    // A client-supplied Host and an absolute-form target naming the evil URL do not move the
    // expected htu.
    let p = ec.proof_with(
        &token,
        json!({ "htu": "https://evil.example/resource" }),
        json!({}),
    );
    let req = Request::get("https://evil.example/resource")
        .header("host", "evil.example")
        .header("x-forwarded-host", "evil.example")
        .header("forwarded", "host=evil.example;proto=https")
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", &p)
        .body(String::new())
        .unwrap();
    assert_invalid_proof(&send(&layer, req).await, "Host header");
    // A base URL with a path prefix: the proof names the prefix, the request path lacks it.
    let prefixed = layer_on(&clock, Dpop::required(format!("{BASE}/v1/")));
    let p = ec.proof_with(
        &token,
        json!({ "htu": format!("{BASE}/v1/resource") }),
        json!({}),
    );
    assert_passed(&send(&prefixed, dpop_req(&token, &p)).await, "prefixed");
    let p = ec.proof(&token);
    assert_invalid_proof(
        &send(&prefixed, dpop_req(&token, &p)).await,
        "prefix missing",
    );
}

/// `iat` window edges on the layer's clock, and every odd `iat`.
#[tokio::test]
async fn holds_iat_window_edges_and_odd_values() {
    let clock = Clock::manual(t0());
    let layer = layer_on(&clock, Dpop::required(BASE));
    let ec = holder("ec");
    let token = ec.token();
    for iat in [
        json!(T0 - 60),
        json!(T0 + 60),
        json!(T0 as f64 + 59.999),
        json!(T0 as f64 - 0.5),
    ] {
        let p = ec.proof_at(&token, iat.clone(), json!({}), json!({}));
        assert_passed(&send(&layer, dpop_req(&token, &p)).await, &iat.to_string());
    }
    for iat in [
        json!(T0 - 61),
        json!(T0 + 61),
        json!(T0 as f64 + 60.000_01),
        json!(T0 as f64 - 60.000_01),
        json!(-1),
        json!(0),
        json!(u64::MAX),
        json!(1e300),
        json!(-1e300),
        json!(T0.to_string()),
        json!(null),
        json!([T0]),
    ] {
        let p = ec.proof_at(&token, iat.clone(), json!({}), json!({}));
        assert_invalid_proof(&send(&layer, dpop_req(&token, &p)).await, &iat.to_string());
    }
    // Numbers JSON cannot hold as f64 (1e400) and exponent forms, written as raw text.
    for raw in ["1e400", "-1e400", "1.9e9", "19e8"] {
        let claims = format!(
            r#"{{"jti":"{}","htm":"GET","htu":"{BASE}/resource","iat":{raw},"ath":"{}"}}"#,
            rand::random::<u64>(),
            sha256_b64(token.as_bytes())
        );
        let header = json!({ "typ": "dpop+jwt", "alg": ec.alg.name(), "jwk": ec.jwk }).to_string();
        let p = common::sign_text(&header, &claims, ec.alg, &ec.key);
        let out = send(&layer, dpop_req(&token, &p)).await;
        // 1.9e9 == T0: accepted; the others are out of range or far off.
        if raw == "1.9e9" || raw == "19e8" {
            assert_passed(&out, raw);
        } else {
            assert_invalid_proof(&out, raw);
        }
    }
}

/// `ath`: missing, for another token, padded, standard base64, upper-cased, or the hash of the
/// token with its scheme.
#[tokio::test]
async fn holds_ath_variants_are_refused() {
    use base64::Engine;
    let clock = Clock::manual(t0());
    let layer = layer_on(&clock, Dpop::required(BASE));
    let ec = holder("ec");
    // Find a token whose hash has `-` or `_`, so that standard base64 differs.
    let (token, ath) = loop {
        let t = token_at(json!({ "cnf": { "jkt": ec.jkt }, "n": rand::random::<u64>() }));
        let a = sha256_b64(t.as_bytes());
        if a.contains(['-', '_']) {
            break (t, a);
        }
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&ath)
        .unwrap();
    for bad in [
        json!(null),
        json!(format!("{ath}=")),
        json!(base64::engine::general_purpose::STANDARD_NO_PAD.encode(&raw)),
        json!(base64::engine::general_purpose::STANDARD.encode(&raw)),
        json!(ath.to_uppercase()),
        json!(sha256_b64(format!("DPoP {token}").as_bytes())),
        json!([ath.clone()]),
    ] {
        let p = ec.proof_with(&token, json!({ "ath": bad }), json!({}));
        assert_invalid_proof(&send(&layer, dpop_req(&token, &p)).await, &bad.to_string());
    }
}

/// `cnf.jkt` against the RFC 7638 thumbprint: member order and extra members of the `jwk` do
/// not matter; a non-canonical RSA modulus (leading zero byte) is another thumbprint; a token
/// with `cnf` but no `jkt`, or `jkt` in another encoding, does not bind.
#[tokio::test]
async fn holds_binding_to_the_thumbprint() {
    let clock = Clock::manual(t0());
    let layer = layer_on(&clock, Dpop::required(BASE));
    let ec = holder("ec");
    let token = ec.token();
    // Reordered members, extra members (kid, use, alg, x5c-like junk).
    let jwk = json!({ "y": ec.jwk["y"], "x": ec.jwk["x"], "kty": "EC", "crv": "P-256",
                      "kid": "mine", "use": "sig", "alg": "ES256", "ext": true });
    let p = ec.proof_with(&token, json!({}), json!({ "jwk": jwk }));
    assert_passed(&send(&layer, dpop_req(&token, &p)).await, "reordered jwk");
    // RSA: the modulus with a leading zero byte verifies the same signatures but is not the
    // key the token is bound to.
    use base64::Engine;
    let rsa = holder("rsa");
    let rsa_token = rsa.token();
    let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(rsa.jwk["n"].as_str().unwrap())
        .unwrap();
    let mut padded = vec![0u8];
    padded.extend_from_slice(&n);
    let mut jwk = rsa.jwk.clone();
    jwk["n"] = b64(&padded).into();
    let p = rsa.proof_with(&rsa_token, json!({}), json!({ "jwk": jwk }));
    assert_refused(
        &send(&layer, dpop_req(&rsa_token, &p)).await,
        "leading zero n",
    );
    // cnf without jkt; jkt padded or in standard base64; jkt of another hash; cnf with both
    // jkt and x5t#S256 (no certificate check configured: the jkt decides).
    for cnf in [
        json!({}),
        json!({ "x5t#S256": ec.jkt }),
        json!({ "jkt": format!("{}=", ec.jkt) }),
        json!({ "jkt": ec.jkt.replace('-', "+").replace('_', "/") + "x" }),
        json!({ "jkt": ec.jkt.to_uppercase() }),
        json!({ "JKT": ec.jkt }),
    ] {
        let t = token_at(json!({ "cnf": cnf }));
        let p = ec.proof(&t);
        let out = send(&layer, dpop_req(&t, &p)).await;
        assert_refused(&out, &cnf.to_string());
    }
    // Duplicate `cnf` or `jkt` members in the token: refused rather than read one way here and
    // another way elsewhere.
    for payload in [
        format!(r#""cnf":{{"jkt":"{}"}},"cnf":{{"jkt":"x"}}"#, ec.jkt),
        format!(r#""cnf":{{"jkt":"x","jkt":"{}"}}"#, ec.jkt),
    ] {
        let claims = format!(
            r#"{{"sub":"alice","iss":"{}","aud":"{}","iat":{T0},"exp":{},{payload}}}"#,
            common::ISSUER,
            common::AUDIENCE,
            T0 + 3600
        );
        let t = common::sign_text(
            r#"{"alg":"HS256","typ":"JWT"}"#,
            &claims,
            Algorithm::HS256,
            &common::hs256_key(),
        );
        let p = ec.proof(&t);
        assert_refused(&send(&layer, dpop_req(&t, &p)).await, &payload);
    }
    // Both jkt and x5t#S256 with certificate-bound tokens on: both must hold.
    let both_layer = builder_on(&clock)
        .certificate_bound_tokens()
        .dpop(Dpop::required(BASE))
        .build()
        .unwrap();
    let cert = cert_der("client-a.pem");
    let t = token_at(json!({ "cnf": { "jkt": ec.jkt, "x5t#S256": sha256_b64(&cert) } }));
    let out = send(&both_layer, dpop_req(&t, &ec.proof(&t))).await;
    assert_refused(&out, "jkt and x5t#S256, no certificate");
    let mut req = dpop_req(&t, &ec.proof(&t));
    req.extensions_mut().insert(ClientCertificate::new(cert));
    assert_passed(&send(&both_layer, req).await, "jkt and x5t#S256 with both");
}

/// Allowed mode: a bound token is refused through every non-DPoP source (§7.2); an unbound
/// token under the DPoP scheme needs a proof and does not bind.
#[tokio::test]
async fn holds_bound_token_never_accepted_as_bearer() {
    let clock = Clock::manual(t0());
    let layer = builder_on(&clock)
        .token_from_cookie("at")
        .token_from_query("access_token")
        .token_from_header("x-token")
        .dpop(Dpop::allowed(BASE))
        .build()
        .unwrap();
    let ec = holder("ec");
    let token = ec.token();
    let proof = ec.proof(&token);
    for req in [
        request("/resource", "Bearer", &token, &[&proof]),
        request("/resource", "bearer", &token, &[&proof]),
        Request::get("/resource")
            .header("cookie", format!("at={token}"))
            .header("dpop", &proof)
            .body(String::new())
            .unwrap(),
        Request::get(format!("/resource?access_token={token}"))
            .header("dpop", &proof)
            .body(String::new())
            .unwrap(),
        Request::get("/resource")
            .header("x-token", &token)
            .header("dpop", &proof)
            .body(String::new())
            .unwrap(),
    ] {
        assert_refused(
            &send(&layer, req).await,
            "bound token without the DPoP scheme",
        );
    }
    // `verify` outside a request refuses it too.
    assert_eq!(layer.verify(&token).err(), Some(AuthError::DpopRequired));
    // An unbound token with the DPoP scheme: without a proof refused, with one refused (no jkt).
    let plain = token_at(json!({}));
    assert_refused(
        &send(&layer, request("/resource", "DPoP", &plain, &[])).await,
        "no proof",
    );
    let out = send(&layer, dpop_req(&plain, &ec.proof(&plain))).await;
    assert_refused(&out, "unbound token, DPoP scheme");
    // The bound token with its proof still passes: nothing above spent it.
    assert_passed(
        &send(&layer, dpop_req(&token, &proof)).await,
        "the real request",
    );
}

/// With the verified-token cache on, a cache hit never skips the proof, the binding, the replay
/// check or the certificate check.
#[cfg(feature = "cache")]
#[tokio::test]
async fn holds_cache_hits_never_skip_sender_constraints() {
    let clock = Clock::manual(t0());
    let layer = builder_on(&clock)
        .cache(tower_jwt_auth::cache::CacheConfig::default())
        .certificate_bound_tokens()
        .dpop(Dpop::allowed(BASE))
        .build()
        .unwrap();
    let ec = holder("ec");
    let token = ec.token();
    let proof = ec.proof(&token);
    assert_passed(
        &send(&layer, dpop_req(&token, &proof)).await,
        "first, cached now",
    );
    assert_refused(
        &send(&layer, request("/resource", "Bearer", &token, &[])).await,
        "cached token as Bearer",
    );
    let other = holder("ed");
    assert_refused(
        &send(&layer, dpop_req(&token, &other.proof(&token))).await,
        "cached token, another key's proof",
    );
    assert_invalid_proof(
        &send(&layer, dpop_req(&token, &proof)).await,
        "cached, replay",
    );
    assert_invalid_proof(
        &send(&layer, request("/resource", "DPoP", &token, &[])).await,
        "cached, no proof",
    );
    assert_passed(
        &send(&layer, dpop_req(&token, &ec.proof(&token))).await,
        "cached, new proof",
    );
    assert_eq!(layer.cache_stats().map(|s| s.hits > 0), Some(true));
    // Certificate-bound: a hit without or with another certificate is refused.
    let cert_a = cert_der("client-a.pem");
    let bound = token_at(json!({ "cnf": { "x5t#S256": sha256_b64(&cert_a) } }));
    let with_cert = |cert: Option<Vec<u8>>| {
        let mut req = request("/resource", "Bearer", &bound, &[]);
        if let Some(cert) = cert {
            req.extensions_mut().insert(ClientCertificate::new(cert));
        }
        req
    };
    assert_passed(
        &send(&layer, with_cert(Some(cert_a.clone()))).await,
        "cert a",
    );
    assert_refused(&send(&layer, with_cert(None)).await, "cached, no cert");
    assert_refused(
        &send(&layer, with_cert(Some(cert_der("client-b.pem")))).await,
        "cached, cert b",
    );
}

fn cert_der(name: &str) -> Vec<u8> {
    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(&common::data(&format!("mtls/{name}")))
        .unwrap()
        .to_vec()
}

/// RFC 8705 §3: no certificate, a certificate only in client-controlled headers, or a
/// thumbprint in another encoding: refused. `verify` refuses a bound token.
#[tokio::test]
async fn holds_certificate_bound_tokens_need_the_connection_certificate() {
    use base64::Engine;
    let clock = Clock::manual(t0());
    let layer = builder_on(&clock)
        .certificate_bound_tokens()
        .build()
        .unwrap();
    let cert = cert_der("client-a.pem");
    let x5t = sha256_b64(&cert);
    let bound = token_at(json!({ "cnf": { "x5t#S256": x5t } }));
    let pem = String::from_utf8(common::data("mtls/client-a.pem")).unwrap();
    let pem_line = pem.replace('\n', "");
    let escaped: String = pem
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    for (name, value) in [
        ("x-client-cert", escaped.as_str()),
        ("ssl-client-cert", pem_line.as_str()),
        ("x-ssl-cert", escaped.as_str()),
        (
            "x-forwarded-client-cert",
            &format!("Hash={x5t};Cert=\"{escaped}\""),
        ),
        (
            "client-cert",
            &format!(
                ":{}:",
                base64::engine::general_purpose::STANDARD.encode(&cert)
            ),
        ),
    ] {
        let mut req = request("/resource", "Bearer", &bound, &[]);
        req.headers_mut().insert(
            http::HeaderName::from_static(name),
            http::HeaderValue::from_str(value).unwrap(),
        );
        assert_refused(&send(&layer, req).await, name);
    }
    let raw = sha256_b64(&cert);
    let digest = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&raw)
        .unwrap();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    for variant in [
        format!("{raw}="),
        base64::engine::general_purpose::STANDARD.encode(&digest),
        hex,
        String::new(),
    ] {
        let t = token_at(json!({ "cnf": { "x5t#S256": variant } }));
        let mut req = request("/resource", "Bearer", &t, &[]);
        req.extensions_mut()
            .insert(ClientCertificate::new(cert.clone()));
        assert_refused(&send(&layer, req).await, &variant);
    }
    assert_eq!(
        layer.verify(&bound).err(),
        Some(AuthError::CertificateMismatch)
    );
    let mut req = request("/resource", "Bearer", &bound, &[]);
    req.extensions_mut().insert(ClientCertificate::new(cert));
    assert_passed(&send(&layer, req).await, "the certificate");
}

/// Nonces: forged, from another secret, expired, issued in the future, or copied from another
/// layer are answered `use_dpop_nonce`; the current one passes.
#[tokio::test]
async fn holds_nonces_cannot_be_forged_or_stretched() {
    const SECRET_A: &[u8] = b"nonce secret A, at least 32 bytes long";
    const SECRET_B: &[u8] = b"nonce secret B, at least 32 bytes long";
    let clock = Clock::manual(t0());
    let a = layer_on(&clock, Dpop::required(BASE).nonce(SECRET_A));
    let b = layer_on(&clock, Dpop::required(BASE).nonce(SECRET_B));
    let ec = holder("ec");
    let token = ec.token();
    let nonce_of = |out: &Outcome| {
        out.headers
            .get("dpop-nonce")
            .map(|v| v.to_str().unwrap().to_owned())
            .expect("a DPoP-Nonce")
    };
    let out = send(&a, dpop_req(&token, &ec.proof(&token))).await;
    assert!(
        out.challenge().contains("use_dpop_nonce"),
        "{}",
        out.challenge()
    );
    let nonce = nonce_of(&out);
    let with =
        |n: &str, iat: u64| ec.proof_at(&token, json!(iat), json!({ "nonce": n }), json!({}));
    // From the other layer's secret.
    let out = send(&b, dpop_req(&token, &with(&nonce, T0))).await;
    assert!(out.challenge().contains("use_dpop_nonce"), "other secret");
    // Forged: time moved forward by an hour with the old tag.
    use base64::Engine;
    let eng = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut bytes = eng.decode(&nonce).unwrap();
    let t = u64::from_be_bytes(bytes[..8].try_into().unwrap()) + 3600;
    bytes[..8].copy_from_slice(&t.to_be_bytes());
    let forged = eng.encode(&bytes);
    let mut long = eng.decode(&nonce).unwrap();
    long.push(0);
    for bad in [
        forged,
        eng.encode(&long),
        format!("{nonce}="),
        String::new(),
    ] {
        let out = send(&a, dpop_req(&token, &with(&bad, T0))).await;
        assert!(out.challenge().contains("use_dpop_nonce"), "{bad}");
        assert_eq!(out.hits, 0);
    }
    // Current for 300 s, then not.
    clock.advance(Duration::from_secs(300));
    assert_passed(
        &send(&a, dpop_req(&token, &with(&nonce, T0 + 300))).await,
        "at 300 s",
    );
    clock.advance(Duration::from_secs(1));
    let out = send(&a, dpop_req(&token, &with(&nonce, T0 + 301))).await;
    assert!(out.challenge().contains("use_dpop_nonce"), "at 301 s");
}

/// Challenge rewriting: a responder that sets no challenge gets none added; a resource
/// identifier with quotes and control characters cannot break out of the quoted parameter.
#[tokio::test]
async fn holds_challenge_rewriting_injects_nothing() {
    struct Silent;
    impl tower_jwt_auth::ErrorResponder<String> for Silent {
        fn respond(&self, e: &AuthError, _: &http::HeaderMap) -> http::Response<String> {
            let mut r = http::Response::new(String::new());
            *r.status_mut() = e.status();
            r
        }
    }
    let clock = Clock::manual(t0());
    let layer = builder_on(&clock)
        .dpop(Dpop::allowed(BASE))
        .resource_metadata(ResourceMetadata::new(BASE))
        .responder(Silent)
        .build()
        .unwrap();
    let ec = holder("ec");
    let token = ec.token();
    let svc = tower::Layer::layer(
        &layer,
        tower::service_fn(|_: Request<String>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        }),
    );
    let res = tower::ServiceExt::oneshot(svc, request("/resource", "Bearer", &token, &[]))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(
        res.headers().get("www-authenticate").is_none(),
        "{:?}",
        res.headers()
    );

    for resource in [
        "https://api.example.com/a\"b",
        "https://api.example.com/a\\\"",
        "https://api.example.com/a\r\nX-Injected:1",
        "https://api.example.com/a\",error=\"x",
    ] {
        let Ok(layer) = builder_on(&clock)
            .resource_metadata(ResourceMetadata::new(resource))
            .dpop(Dpop::allowed(BASE))
            .build()
        else {
            continue;
        };
        let out = send(&layer, request("/resource", "Bearer", "x.y.z", &[])).await;
        assert!(out.headers.get("x-injected").is_none());
        for challenge in out.headers.get_all("www-authenticate") {
            let text = challenge.to_str().unwrap();
            assert!(!text.contains("error=\"x\""), "{resource}: {text}");
            // Exactly one unescaped-quote pair per parameter: count quoted-strings.
            let mut quotes = 0;
            let mut escaped = false;
            for c in text.chars() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => quotes += 1,
                    _ => {}
                }
            }
            assert_eq!(quotes % 2, 0, "{resource}: {text}");
        }
    }
}

/// Claims carrying a `DpopKey`, smuggled into the request's extensions by something in front,
/// are replaced; only the layer's own are seen (without a key for a Bearer token).
#[tokio::test]
async fn holds_dpop_key_extension_cannot_be_smuggled() {
    // `DpopKey` has no public constructor and `Claims::new` makes claims without one: an outer
    // layer can only forward claims it got from another JwtAuth layer. Run a bound request
    // through a first layer and hand its claims to a second layer's request with a plain
    // Bearer token.
    let clock = Clock::manual(t0());
    let layer = layer_on(&clock, Dpop::allowed(BASE));
    let ec = holder("ec");
    let token = ec.token();
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    let inner = tower::service_fn(move |req: Request<String>| {
        *s.lock().unwrap() = req
            .extensions()
            .get::<tower_jwt_auth::Claims<TestClaims>>()
            .cloned();
        async { Ok::<_, std::convert::Infallible>(http::Response::new(String::new())) }
    });
    let svc = tower::Layer::layer(&layer, inner);
    let res = tower::ServiceExt::oneshot(svc.clone(), dpop_req(&token, &ec.proof(&token)))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let claims = seen.lock().unwrap().take().expect("claims");
    assert_eq!(
        claims.dpop_key().map(|k| k.thumbprint()),
        Some(ec.jkt.as_str())
    );
    let mut req = request("/resource", "Bearer", &token_at(json!({})), &[]);
    req.extensions_mut().insert(claims);
    let res = tower::ServiceExt::oneshot(svc, req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let claims = seen.lock().unwrap().take().expect("claims");
    assert!(
        claims.dpop_key().is_none(),
        "a smuggled DpopKey reached the handler"
    );
}
