//! Attacks on the revocation windows, the refresh-secret check, CSRF, discovered keys, `oct`
//! key lengths, future `iat`, subject scoping, unrevocable tokens and scopes: each test passes
//! while the defence holds. Real parts only: the layer served by axum on 127.0.0.1 and called
//! over HTTP (reqwest, or raw TCP for byte-exact requests), a real `redis-server`, a real
//! JWKS/discovery server; time is moved with `Clock::manual` instead of sleeping.

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::any;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::api::Api;
use common::jwks_server::JwksServer;
use common::redis_server::RedisServer;
use common::sessions::{REFRESH_SECRET, Roles};
use common::*;
use jsonwebtoken::EncodingKey;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_jwt_auth::Algorithm;
use tower_jwt_auth::authorize::{HasScopes, RequireClaimsLayer};
use tower_jwt_auth::cache::CacheConfig;
use tower_jwt_auth::issue::TokenIssuer;
use tower_jwt_auth::issue::{RefreshError, RefreshTokens};
use tower_jwt_auth::remote::RemoteJwks;
use tower_jwt_auth::revocation::{
    MemoryRevocation, RedisRevocation, Revocation, RevocationStore, TokenId,
};
use tower_jwt_auth::{BuildError, Clock, CsrfPolicy, JwtAuthLayer, Key, Tenant};

// =============================================================================================
// Helpers
// =============================================================================================

fn at(secs: f64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs_f64(secs)
}

/// Signs `claims` with HS256 under the test `SECRET`.
fn hs(claims: Value) -> String {
    sign_jwt(Algorithm::HS256, &hs256_key(), None, &claims)
}

/// Signs a payload given as raw JSON text (escaped member names, duplicates, …).
fn hs_raw_payload(payload: &str) -> String {
    sign_text(
        r#"{"alg":"HS256","typ":"JWT"}"#,
        payload,
        Algorithm::HS256,
        &hs256_key(),
    )
}

/// The test policy, for untyped claims.
fn base() -> tower_jwt_auth::JwtAuthBuilder<Value> {
    hs256_builder()
}

fn alice(iat: f64, exp: f64, jti: &str) -> Value {
    json!({ "sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "iat": iat, "exp": exp, "jti": jti })
}

fn reason(reply: &Reply) -> String {
    format!(
        "status {} / {:?} / {}",
        reply.status, reply.www_authenticate, reply.body
    )
}

// =============================================================================================
// revocation windows (leeway vs margin, fractional dates, cache, clock, shared stores)
// =============================================================================================

/// A fractional `exp` (RFC 7519 NumericDates may be non-integer), given to the store
/// truncated to whole seconds, with a leeway equal to the store's margin: the store keeps the
/// entry for as long as the layer accepts the token.
#[tokio::test]
async fn a_fractional_exp_stays_revoked_when_leeway_equals_margin() {
    let t0 = now() as f64;
    let clock = Clock::manual(at(t0));
    let store = Arc::new(MemoryRevocation::new().clock(clock.clone()));
    let margin = store.retention_margin(); // DEFAULT_RETENTION_MARGIN, 300 s
    let layer = base()
        .leeway(margin) // leeway == margin: builds
        .clock(clock.clone())
        .revocation(store.clone())
        .build()
        .unwrap();
    let api = Api::start(layer).await;
    let exp = t0 + 10.9;
    let token = hs(alice(t0, exp, "frac-exp"));
    assert_eq!(api.me(&token).await.status, StatusCode::OK);

    // Logout: the app revokes the token until its `exp`, as the u64 the trait takes.
    store.revoke("frac-exp", exp as u64).await.unwrap();
    assert_eq!(api.me(&token).await.status, StatusCode::UNAUTHORIZED);

    // 0.4 s before exp + leeway: the layer still accepts the token; the store has let go.
    clock.set(at(t0 + 10.0 + margin.as_secs_f64() + 0.5));
    let reply = api.me(&token).await;
    assert_eq!(
        reply.status,
        StatusCode::UNAUTHORIZED,
        "revoked token accepted again between trunc(exp)+margin and exp+leeway: {}",
        reason(&reply)
    );
}

/// A sub-second retention margin (leeway 1.5 s = margin 1.5 s builds): the store rounds it
/// up, so a revoked token stays revoked through the whole leeway.
#[tokio::test]
async fn a_subsecond_margin_is_rounded_up() {
    let t0 = now() as f64;
    let clock = Clock::manual(at(t0));
    let margin = Duration::from_millis(1500);
    let store = Arc::new(
        MemoryRevocation::new()
            .retain_past_expiry(margin)
            .clock(clock.clone()),
    );
    let layer = base()
        .leeway(margin) // == margin: builds
        .clock(clock.clone())
        .revocation(store.clone())
        .build()
        .unwrap();
    let api = Api::start(layer).await;
    let exp = t0 + 10.0;
    let token = hs(alice(t0, exp, "subsecond"));
    store.revoke("subsecond", exp as u64).await.unwrap();
    assert_eq!(api.me(&token).await.status, StatusCode::UNAUTHORIZED);

    clock.set(at(exp + 1.2)); // within exp + leeway (1.5 s)
    let reply = api.me(&token).await;
    assert_eq!(
        reply.status,
        StatusCode::UNAUTHORIZED,
        "revoked token accepted 1.2 s past exp with leeway = margin = 1.5 s: {}",
        reason(&reply)
    );
}

/// A cache hit re-checks `iat` as well as `exp` and `nbf`: after the clock steps back, a
/// cached token whose `iat` now lies beyond now + leeway is refused as full verification
/// refuses it, and so cannot slip past a subject revocation written at the new time.
#[tokio::test]
async fn a_cache_hit_rechecks_a_future_iat() {
    let t0 = now() as f64;
    let clock = Clock::manual(at(t0));
    let store = Arc::new(MemoryRevocation::new().clock(clock.clone()));
    let build = |cache: bool| {
        let b = base()
            .leeway(Duration::from_secs(60))
            .clock(clock.clone())
            .revocation(store.clone());
        let b = if cache {
            b.cache(CacheConfig::default())
        } else {
            b
        };
        b.build().unwrap()
    };
    let cached = Api::start(build(true)).await;
    let uncached = Api::start(build(false)).await;
    // Issued by an IdP 50 s ahead of us (inside the 60 s leeway).
    let token = hs(alice(t0 + 50.0, t0 + 3600.0, "cached-iat"));
    assert_eq!(cached.me(&token).await.status, StatusCode::OK); // now cached
    assert_eq!(uncached.me(&token).await.status, StatusCode::OK);

    // NTP steps our clock back 100 s; then an admin revokes every token of alice issued
    // before now (+1 s, so that tokens of this very second are covered too).
    clock.set(at(t0 - 100.0));
    let cut = (t0 - 100.0) as u64 + 1;
    store
        .revoke_subject(Some(ISSUER), "alice", cut, (t0 + 3600.0) as u64)
        .await
        .unwrap();
    let full = uncached.me(&token).await;
    assert_eq!(full.status, StatusCode::UNAUTHORIZED, "{}", reason(&full));
    let hit = cached.me(&token).await;
    assert_eq!(
        hit.status,
        StatusCode::UNAUTHORIZED,
        "cache hit accepted a token full verification refuses, past a subject revocation: {}",
        reason(&hit)
    );
}

/// Every `RedisRevocation` handle keeps entries the same margin past `exp`, so a revocation
/// written by one service (a logout endpoint) holds for as long as any layer sharing the Redis
/// accepts the token, whatever leeway up to the margin it has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_redis_keeps_a_revocation_through_every_readers_leeway() {
    let redis = RedisServer::start().await;
    let reader = Arc::new(RedisRevocation::connect(&redis.url()).await.unwrap());
    let writer = RedisRevocation::connect(&redis.url()).await.unwrap();
    let api = Api::start(
        base()
            .leeway(Duration::from_secs(120))
            .revocation(reader)
            .build()
            .unwrap(),
    )
    .await;
    let t = now() as f64;
    let token = hs(alice(t - 600.0, t - 70.0, "shared-redis"));
    assert_eq!(api.me(&token).await.status, StatusCode::OK);
    writer
        .revoke("shared-redis", (t - 70.0) as u64)
        .await
        .unwrap();
    let reply = api.me(&token).await;
    assert_eq!(
        reply.status,
        StatusCode::UNAUTHORIZED,
        "revoked token accepted inside the reader's leeway: {}",
        reason(&reply)
    );
}

/// "Every token of alice, for good" (`issued_before = u64::MAX`) is readable back from Redis,
/// whose Lua script holds numbers as doubles: the subject is revoked, by a fail-open layer too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_reads_back_a_subject_revoked_for_good() {
    let redis = RedisServer::start().await;
    let store = Arc::new(RedisRevocation::connect(&redis.url()).await.unwrap());
    let closed = Api::start(base().revocation(store.clone()).build().unwrap()).await;
    let open = Api::start(
        base()
            .revocation(store.clone())
            .revocation_fail_open()
            .build()
            .unwrap(),
    )
    .await;
    let t = now() as f64;
    let token = hs(alice(t - 10.0, t + 600.0, "forever"));
    assert_eq!(open.me(&token).await.status, StatusCode::OK);
    store
        .revoke_subject(Some(ISSUER), "alice", u64::MAX, t as u64 + 3600)
        .await
        .unwrap();
    // The memory store does what was asked.
    let mem = MemoryRevocation::new();
    mem.revoke_subject(Some(ISSUER), "alice", u64::MAX, t as u64 + 3600)
        .await
        .unwrap();
    let id = TokenId::new(
        Some(ISSUER),
        Some("forever"),
        Some("alice"),
        Some(t as u64 - 10),
    );
    assert!(mem.is_revoked(id).await.unwrap());
    assert!(store.is_revoked(id).await.unwrap());
    let c = closed.me(&token).await;
    assert_eq!(c.status, StatusCode::UNAUTHORIZED, "{}", reason(&c));
    let o = open.me(&token).await;
    assert_eq!(
        o.status,
        StatusCode::UNAUTHORIZED,
        "a subject revoked 'for good' is accepted by a fail-open layer: {}",
        reason(&o)
    );
}

/// A token with an absurd but accepted `exp` (a 2^60-second lifetime, no `max_lifetime`) can
/// be revoked in Redis: the entry's `EXAT` is capped at the largest Redis takes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_revokes_a_token_with_a_huge_exp() {
    let redis = RedisServer::start().await;
    let store = Arc::new(RedisRevocation::connect(&redis.url()).await.unwrap());
    let api = Api::start(base().revocation(store.clone()).build().unwrap()).await;
    let issued = access_issuer()
        .lifetime(Duration::from_secs(1 << 60))
        .issue("alice", &json!({}))
        .unwrap();
    assert_eq!(api.me(&issued.token).await.status, StatusCode::OK);
    let res = store.revoke(&issued.jti, issued.expires_at).await;
    assert!(res.is_ok(), "RedisRevocation::revoke failed: {res:?}");
    assert_eq!(api.me(&issued.token).await.status, StatusCode::UNAUTHORIZED);
}

/// Spent refresh tokens with a zero-margin store: reuse is detected up to the last
/// instant before `exp`, and from `exp` on the token is invalid (zero leeway).
#[tokio::test]
async fn spent_refresh_token_at_its_exp_edge() {
    let t0 = now() as f64;
    let clock = Clock::manual(at(t0));
    let store = Arc::new(
        MemoryRevocation::new()
            .retain_past_expiry(Duration::ZERO)
            .clock(clock.clone()),
    );
    let sessions = RefreshTokens::<Roles>::new(
        access_issuer().clock(clock.clone()),
        REFRESH_SECRET,
        store.clone(),
    )
    .unwrap()
    .refresh_lifetime(Duration::from_secs(100));
    let login = sessions.issue("alice", &Roles { roles: vec![] }).unwrap();
    clock.set(at(t0 + 10.0));
    let second = sessions.refresh(&login.refresh.token).await.unwrap();
    for edge in [99.0, 99.5, 99.999] {
        clock.set(at(t0 + edge));
        let r = sessions.refresh(&login.refresh.token).await;
        assert!(
            matches!(r, Err(RefreshError::ReuseDetected | RefreshError::Revoked)),
            "spent refresh token redeemed at t0+{edge}"
        );
    }
    clock.set(at(t0 + 100.0));
    assert!(matches!(
        sessions.refresh(&login.refresh.token).await,
        Err(RefreshError::Invalid(_))
    ));
    // The family, revoked at t0+99, holds until its newest token (exp t0+110) expires.
    for edge in [100.0, 109.0, 109.999] {
        clock.set(at(t0 + edge));
        let r = sessions.refresh(&second.refresh.token).await;
        assert!(
            matches!(r, Err(RefreshError::Revoked | RefreshError::Invalid(_))),
            "refresh token of a revoked family redeemed at t0+{edge}"
        );
    }
}

/// The build refuses any leeway longer than the margin, to the nanosecond, for single
/// layers and tenant layers alike.
#[test]
fn leeway_longer_than_margin_never_builds() {
    for (leeway, margin) in [
        (Duration::from_secs(301), Duration::from_secs(300)),
        (
            Duration::from_nanos(300_000_000_001),
            Duration::from_secs(300),
        ),
        (Duration::from_millis(1), Duration::ZERO),
    ] {
        let store = Arc::new(MemoryRevocation::new().retain_past_expiry(margin));
        let err = base().leeway(leeway).revocation(store.clone()).build();
        assert!(err.is_err(), "{leeway:?} > {margin:?} built");
        let err = JwtAuthLayer::<Value>::builder()
            .tenant(Tenant::new(ISSUER).key(Key::hmac(Algorithm::HS256, SECRET)))
            .leeway(leeway)
            .revocation(store)
            .build();
        assert!(err.is_err(), "tenant layer {leeway:?} > {margin:?} built");
    }
}

/// Integer dates at the exact edges: with leeway == margin the store keeps a revoked
/// `jti` for as long as the layer accepts the token, and a subject entry likewise; huge `exp`
/// (u64::MAX, 1e300) saturates and stays revoked.
#[tokio::test]
async fn integer_and_huge_exp_edges_stay_revoked() {
    let t0 = now() as f64;
    let clock = Clock::manual(at(t0));
    let store = Arc::new(MemoryRevocation::new().clock(clock.clone()));
    let api = Api::start(
        base()
            .leeway(Duration::from_secs(300))
            .clock(clock.clone())
            .revocation(store.clone())
            .build()
            .unwrap(),
    )
    .await;
    let exp = t0 + 10.0;
    let token = hs(alice(t0 - 5.0, exp, "edge"));
    store.revoke("edge", exp as u64).await.unwrap();
    let sub_token = hs(json!({ "sub": "bob", "iss": ISSUER, "aud": AUDIENCE,
                               "iat": t0 - 5.0, "exp": exp }));
    store
        .revoke_subject(Some(ISSUER), "bob", t0 as u64, exp as u64)
        .await
        .unwrap();
    for dt in [0.0, 10.0, 309.0, 309.999_9] {
        clock.set(at(t0 + dt));
        for t in [&token, &sub_token] {
            let r = api.me(t).await;
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "t0+{dt}: {}",
                reason(&r)
            );
        }
    }
    clock.set(at(t0));
    for (exp, jti) in [
        (json!(u64::MAX), "huge-u64"),
        (json!(1e300), "huge-f64"),
        (json!(9007199254740993u64), "2^53+1"),
    ] {
        let t = hs(
            json!({ "sub": "carol", "iss": ISSUER, "aud": AUDIENCE, "iat": t0,
                           "exp": exp, "jti": jti }),
        );
        assert_eq!(api.me(&t).await.status, StatusCode::OK);
        // as an app would compute it from the claim: f64 -> u64 saturates
        let e = exp.as_f64().unwrap() as u64;
        store.revoke(jti, e).await.unwrap();
        assert_eq!(api.me(&t).await.status, StatusCode::UNAUTHORIZED, "{jti}");
    }
}

// =============================================================================================
// refresh secret equal to the access secret
// =============================================================================================

fn sha(alg: &'static aws_lc_rs::digest::Algorithm, data: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(alg, data).as_ref().to_vec()
}

/// Every byte string HMAC-SHA-256 treats as the access key is refused as the refresh
/// secret: the same bytes under an HS384/HS512 access issuer, a long key (> 64-byte block) vs
/// its SHA-256, a key vs the key with trailing zero bytes (HMAC zero-pads short keys).
#[test]
fn hmac_equivalent_refresh_secrets_are_refused() {
    let store: Arc<dyn RevocationStore> = Arc::new(MemoryRevocation::new());
    let s64: Vec<u8> = (0u8..64).collect();
    let s100: Vec<u8> = (0u8..100).map(|b| b.wrapping_mul(7)).collect();
    let s40: Vec<u8> = b"0123456789abcdef0123456789abcdef-40bytes".to_vec();
    let mut s40_zero = s40.clone();
    s40_zero.extend_from_slice(&[0, 0, 0]);
    let cases: Vec<(&str, TokenIssuer, Vec<u8>)> = vec![
        (
            "HS384, same bytes",
            TokenIssuer::hmac(Algorithm::HS384, &s64).unwrap(),
            s64.clone(),
        ),
        (
            "HS512, same bytes",
            TokenIssuer::hmac(Algorithm::HS512, &s64).unwrap(),
            s64.clone(),
        ),
        (
            "HS256, key > block vs its SHA-256",
            TokenIssuer::hs256(&s100).unwrap(),
            sha(&aws_lc_rs::digest::SHA256, &s100),
        ),
        (
            "HS512 issuer, key > HS256 block vs its SHA-256",
            TokenIssuer::hmac(Algorithm::HS512, &s100).unwrap(),
            sha(&aws_lc_rs::digest::SHA256, &s100),
        ),
        (
            "HS256, zero-padded",
            TokenIssuer::hs256(&s40).unwrap(),
            s40_zero.clone(),
        ),
        (
            "HS256, reverse zero-padded",
            TokenIssuer::hs256(&s40_zero).unwrap(),
            s40.clone(),
        ),
    ];
    for (what, access, refresh) in cases {
        let r = RefreshTokens::<Roles>::new(access, &refresh, store.clone());
        assert!(
            r.is_err(),
            "{what}: an HMAC-equivalent refresh secret was accepted"
        );
    }
}

/// Where `new` accepts the pair (secrets HMAC-SHA-512-equivalent but not HMAC-SHA-256
/// equivalent; an RSA access issuer), a refresh token never passes the access layer, whether
/// it names the secret as an HS512 key or as an `oct` JWK without `alg` (HS256..HS512).
#[tokio::test]
async fn accepted_pairs_never_cross_over() {
    let store: Arc<dyn RevocationStore> = Arc::new(MemoryRevocation::new());
    let s200: Vec<u8> = (0u8..200).collect();
    let r64 = sha(&aws_lc_rs::digest::SHA512, &s200); // the same HMAC-SHA-512 key as s200
    let access = TokenIssuer::hmac(Algorithm::HS512, &s200)
        .unwrap()
        .issuer(ISSUER)
        .audience(AUDIENCE);
    let sessions = RefreshTokens::<Roles>::new(access, &r64, store.clone()).unwrap();
    let pair = sessions.issue("alice", &Roles { roles: vec![] }).unwrap();
    let oct = json!({ "keys": [{ "kty": "oct", "k": URL_SAFE_NO_PAD.encode(&s200) }] });
    for layer in [
        JwtAuthLayer::<Value>::builder()
            .hs512(&s200)
            .issuer(ISSUER)
            .build()
            .unwrap(),
        JwtAuthLayer::<Value>::builder()
            .jwks_json(&oct.to_string())
            .algorithms([Algorithm::HS256, Algorithm::HS384, Algorithm::HS512])
            .issuer(ISSUER)
            .build()
            .unwrap(),
    ] {
        assert!(layer.verify(&pair.access.token).is_ok());
        assert!(
            layer.verify(&pair.refresh.token).is_err(),
            "a refresh token passed the access layer"
        );
    }
    // RSA access issuer: nothing to compare, nothing to confuse.
    let rsa = TokenIssuer::pem(Algorithm::RS256, data("rsa_2048_private.pem"))
        .unwrap()
        .issuer(ISSUER);
    let sessions = RefreshTokens::<Roles>::new(rsa, REFRESH_SECRET, store).unwrap();
    let pair = sessions.issue("alice", &Roles { roles: vec![] }).unwrap();
    let layer = JwtAuthLayer::<Value>::builder()
        .rs256_pem(data("rsa_2048_public.pem"))
        .issuer(ISSUER)
        .build()
        .unwrap();
    assert!(layer.verify(&pair.access.token).is_ok());
    assert!(layer.verify(&pair.refresh.token).is_err());
}

/// The "PEM as HMAC secret" guard sees through a UTF-8 byte order mark: the public key's PEM
/// saved with one is no refresh-token secret.
#[test]
fn a_public_key_pem_with_a_bom_is_no_refresh_secret() {
    let store: Arc<dyn RevocationStore> = Arc::new(MemoryRevocation::new());
    let rsa = || {
        TokenIssuer::pem(Algorithm::RS256, data("rsa_2048_private.pem"))
            .unwrap()
            .issuer(ISSUER)
    };
    let public = data("rsa_2048_public.pem");
    assert!(RefreshTokens::<Roles>::new(rsa(), &public, store.clone()).is_err());
    let mut bom = "\u{feff}".as_bytes().to_vec();
    bom.extend_from_slice(&public);
    let r = RefreshTokens::<Roles>::new(rsa(), &bom, store.clone());
    assert!(
        r.is_err(),
        "the public key PEM (with a BOM) was accepted as the refresh-token HMAC secret"
    );
}

// =============================================================================================
// CSRF for cookie-borne tokens
// =============================================================================================

/// A server whose `/x` answers GET and POST behind a cookie-token layer with `policy`.
async fn csrf_server(policy: CsrfPolicy) -> (SocketAddr, Hits) {
    let hits = Hits::default();
    let layer = base().token_from_cookie("at").csrf(policy).build().unwrap();
    let app = Router::new()
        .route("/x", any(subject_handler::<Value>(&hits)))
        .layer(layer);
    (serve(app).await, hits)
}

/// Sends `request` byte for byte; returns the status code.
async fn raw(addr: SocketAddr, request: &str) -> u16 {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        let n = s.read(&mut tmp).await.unwrap();
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&tmp[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&buf);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"))
}

/// A request with the access-token cookie (unless `headers` bring their own `Cookie`).
fn request(method: &str, target: &str, headers: &[(&str, &str)], token: &str) -> String {
    let mut r = format!("{method} {target} HTTP/1.1\r\n");
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("cookie"))
    {
        r.push_str(&format!("Cookie: at={token}\r\n"));
    }
    for (k, v) in headers {
        r.push_str(&format!("{k}: {}\r\n", v.replace("{token}", token)));
    }
    r.push_str("Content-Length: 0\r\nConnection: close\r\n\r\n");
    r
}

/// Cross-site state-changing requests that a browser (or a page in it) can be made to
/// send: none reaches the handler. Controls show the same-origin request does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_requests_never_pass_same_origin_policy() {
    let token = hs256_token(json!({}));
    let (addr, hits) = csrf_server(CsrfPolicy::same_origin()).await;
    let host = ("Host", "site.example");
    // Controls.
    for ok in [
        vec![host, ("Origin", "https://site.example")],
        vec![host, ("Origin", "HTTPS://SITE.EXAMPLE:443")],
        vec![
            ("Host", "site.example:443"),
            ("Origin", "https://site.example"),
        ],
        vec![
            host,
            ("Sec-Fetch-Site", "same-origin"),
            ("Origin", "https://site.example"),
        ],
        vec![host, ("Referer", "https://site.example/form?a=1")],
        vec![("Host", "[::1]:8443"), ("Origin", "https://[::1]:8443")],
    ] {
        let before = hits.count();
        let code = raw(addr, &request("POST", "/x", &ok, &token)).await;
        assert_eq!(code, 200, "control {ok:?}");
        assert_eq!(hits.count(), before + 1);
    }
    let before = hits.count();
    type Attack<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);
    let attacks: Vec<Attack<'_>> = vec![
        ("POST", "/x", vec![host, ("Origin", "https://evil.example")]),
        ("POST", "/x", vec![host, ("Origin", "http://site.example")]),
        (
            "POST",
            "/x",
            vec![host, ("Origin", "http://site.example:443")],
        ),
        (
            "POST",
            "/x",
            vec![host, ("Origin", "https://site.example:8443")],
        ),
        (
            "POST",
            "/x",
            vec![host, ("Origin", "https://site.example:80")],
        ),
        (
            "POST",
            "/x",
            vec![host, ("Origin", "https://site.example.")],
        ),
        (
            "POST",
            "/x",
            vec![host, ("Origin", "https://sub.site.example")],
        ),
        (
            "POST",
            "/x",
            vec![host, ("Origin", "https://site.example.evil.example")],
        ),
        (
            "POST",
            "/x",
            vec![host, ("Origin", "https://evil.example@site.example")],
        ),
        (
            "POST",
            "/x",
            vec![host, ("Origin", "https://site.example@evil.example")],
        ),
        (
            "POST",
            "/x",
            vec![
                host,
                ("Origin", "null"),
                ("Referer", "https://site.example/"),
            ],
        ),
        (
            "POST",
            "/x",
            vec![
                host,
                ("Origin", "https://evil.example"),
                ("Origin", "https://site.example"),
            ],
        ),
        (
            "POST",
            "/x",
            vec![
                host,
                ("Origin", "https://site.example"),
                ("Origin", "https://evil.example"),
            ],
        ),
        (
            "POST",
            "/x",
            vec![
                host,
                ("Origin", "https://evil.example"),
                ("Referer", "https://site.example/"),
            ],
        ),
        (
            "POST",
            "/x",
            vec![host, ("Referer", "https://site.example.evil.example/")],
        ),
        (
            "POST",
            "/x",
            vec![
                host,
                ("Referer", "https://evil.example/?https://site.example/"),
            ],
        ),
        (
            "POST",
            "/x",
            vec![host, ("Referer", "https://evil.example/@site.example/")],
        ),
        (
            "POST",
            "/x",
            vec![
                host,
                ("Referer", "https://evil.example/#https://site.example"),
            ],
        ),
        ("POST", "/x", vec![host]),
        (
            "POST",
            "/x",
            vec![
                host,
                ("Origin", "https://evil.example"),
                ("Sec-Fetch-Site", "same-site"),
            ],
        ),
        (
            "POST",
            "/x",
            vec![
                host,
                ("Origin", "https://evil.example"),
                ("Sec-Fetch-Site", "cross-site"),
            ],
        ),
        (
            "POST",
            "/x",
            vec![
                host,
                ("Origin", "https://site.example"),
                ("Sec-Fetch-Site", "cross-site"),
            ],
        ),
        (
            "POST",
            "/x",
            vec![
                host,
                ("Origin", "https://site.example"),
                ("Sec-Fetch-Site", "same-site"),
            ],
        ),
        (
            "POST",
            "/x",
            vec![
                host,
                ("Origin", "https://evil.example"),
                ("X-Forwarded-Host", "evil.example"),
                ("X-Forwarded-Proto", "https"),
            ],
        ),
        (
            "POST",
            "/x",
            vec![
                ("Host", "site.example:8443"),
                ("Origin", "https://site.example"),
            ],
        ),
        (
            "POST",
            "/x",
            vec![
                host,
                ("Host", "evil.example"),
                ("Origin", "https://evil.example"),
            ],
        ),
        (
            "POST",
            "/x",
            vec![("Host", "[::1]"), ("Origin", "https://[::2]")],
        ),
        (
            "POST",
            "/x",
            vec![("Host", "[::1]"), ("Origin", "https://[::1]:8443")],
        ),
        ("post", "/x", vec![host, ("Origin", "https://evil.example")]),
        ("PUT", "/x", vec![host, ("Origin", "https://evil.example")]),
        (
            "PATCH",
            "/x",
            vec![host, ("Origin", "https://evil.example")],
        ),
        (
            "DELETE",
            "/x",
            vec![host, ("Origin", "https://evil.example")],
        ),
        (
            "PROPFIND",
            "/x",
            vec![host, ("Origin", "https://evil.example")],
        ),
        (
            "POST",
            "/x",
            vec![
                host,
                ("Origin", "https://evil.example"),
                ("Cookie", "at={token}; at={token}"),
            ],
        ),
        (
            "POST",
            "/x",
            vec![
                host,
                ("Origin", "https://evil.example"),
                ("Cookie", "at=\"{token}\""),
            ],
        ),
        (
            "POST",
            "/x",
            vec![
                host,
                ("Origin", "https://evil.example"),
                ("Cookie", "a=1"),
                ("Cookie", "at={token}"),
            ],
        ),
    ];
    for (method, target, headers) in &attacks {
        let code = raw(addr, &request(method, target, headers, &token)).await;
        assert!(
            !(200..300).contains(&code),
            "cross-site request passed: {method} {headers:?} -> {code}"
        );
    }
    assert_eq!(hits.count(), before, "a forged request reached the handler");
}

/// Double-submit and listed origins: the double-submit header cannot be matched by a
/// cross-site page (it needs the header), empty and quoted-empty values never match, and a
/// listed origin is compared as an origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_submit_and_listed_origins() {
    let token = hs256_token(json!({}));
    let policy = CsrfPolicy::allowed_origins_only()
        .allow_origin("https://app.example")
        .double_submit("x-csrf", "csrf");
    let (addr, hits) = csrf_server(policy).await;
    let ok = [
        vec![("Cookie", "at={token}; csrf=abc"), ("X-CSRF", "abc")],
        vec![("Cookie", "at={token}; csrf=\"abc\""), ("X-CSRF", "abc")],
        vec![("Origin", "https://app.example")],
    ];
    for h in &ok {
        assert_eq!(
            raw(addr, &request("POST", "/x", h, &token)).await,
            200,
            "{h:?}"
        );
    }
    let before = hits.count();
    let attacks = [
        vec![("Cookie", "at={token}; csrf=abc")],
        vec![("Cookie", "at={token}; csrf="), ("X-CSRF", "")],
        vec![("Cookie", "at={token}; csrf=\"\""), ("X-CSRF", "\"\"")],
        vec![("Cookie", "at={token}; csrf=abc"), ("X-CSRF", "abd")],
        vec![
            ("Cookie", "at={token}; csrf=abc"),
            ("X-CSRF", "abc"),
            ("X-CSRF", "abc"),
        ],
        vec![("Cookie", "at={token}; CSRF=abc"), ("X-CSRF", "abc")],
        vec![("Cookie", "at={token}; csrf=abc"), ("X-CSRF", "ab")],
        vec![("Cookie", "at={token}"), ("X-CSRF", "{token}")],
        vec![("Origin", "http://app.example")],
        vec![("Origin", "https://app.example:8443")],
        vec![("Origin", "https://app.example.evil.example")],
        vec![
            ("Origin", "https://evil.example"),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        vec![
            ("Origin", "https://evil.example"),
            ("Sec-Fetch-Site", "none"),
        ],
    ];
    let mut passed = Vec::new();
    for h in &attacks {
        let code = raw(addr, &request("POST", "/x", h, &token)).await;
        if (200..300).contains(&code) {
            passed.push(format!("{h:?}"));
        }
    }
    assert!(passed.is_empty(), "passed: {passed:#?}");
    assert_eq!(hits.count(), before);
}

// =============================================================================================
// IssuerMismatch
// =============================================================================================

fn rs_a(claims: Value, kid: &str) -> String {
    let (key, alg) = private_key("rsa");
    sign_raw(&json!({"alg": "RS256", "kid": kid}), &claims, alg, &key)
}

/// Keys discovered from issuer A can be attached to no tenant or layer issuer other than
/// A, by any path tried; and with A's keys on tenant A and B's static key on tenant B, no token
/// claiming one issuer is verified with the other's keys, the unknown-kid refresh path included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_keys_never_verify_another_issuer() {
    let server = JwksServer::start(&[jwk("rsa", "rsa-a")]).await;
    let a = server.issuer();
    let keys = RemoteJwks::from_issuer(&a)
        .allow_http_for_loopback()
        .build()
        .await
        .unwrap();
    const B: &str = "https://b.example";
    let a_slash = format!("{a}/");
    let a_upper = a.to_uppercase();
    let configs: Vec<(&str, Result<JwtAuthLayer<Value>, BuildError>)> = vec![
        (
            "tenant B with A's keys",
            JwtAuthLayer::<Value>::builder()
                .tenant(Tenant::new(B).remote_jwks(keys.clone()))
                .build(),
        ),
        (
            "tenants A and B sharing A's keys",
            JwtAuthLayer::<Value>::builder()
                .tenant(Tenant::new(&a).remote_jwks(keys.clone()))
                .tenant(Tenant::new(B).remote_jwks(keys.clone()))
                .build(),
        ),
        (
            "tenant A/ with A's keys",
            JwtAuthLayer::<Value>::builder()
                .tenant(Tenant::new(&a_slash).remote_jwks(keys.clone()))
                .build(),
        ),
        (
            "tenant A upper-case with A's keys",
            JwtAuthLayer::<Value>::builder()
                .tenant(Tenant::new(&a_upper).remote_jwks(keys.clone()))
                .build(),
        ),
        (
            "layer issuer B after remote",
            JwtAuthLayer::<Value>::builder()
                .remote_jwks(keys.clone())
                .issuer(B)
                .build(),
        ),
        (
            "layer issuer B before remote",
            JwtAuthLayer::<Value>::builder()
                .issuer(B)
                .remote_jwks(keys.clone())
                .build(),
        ),
        (
            "layer issuers A and empty",
            JwtAuthLayer::<Value>::builder()
                .remote_jwks(keys.clone())
                .issuer(&a)
                .issuer("")
                .build(),
        ),
        (
            "tenant A with A's keys + layer issuer B",
            JwtAuthLayer::<Value>::builder()
                .tenant(Tenant::new(&a).remote_jwks(keys.clone()))
                .issuer(B)
                .build(),
        ),
    ];
    for (what, built) in configs {
        assert!(built.is_err(), "{what}: built");
    }

    // A working two-tenant layer: A remote, B static EC.
    let (ec, _) = private_key("ec");
    let layer = JwtAuthLayer::<Value>::builder()
        .tenant(Tenant::new(&a).remote_jwks(keys.clone()))
        .tenant(Tenant::new(B).key(Key::pem(Algorithm::ES256, data("ec_p256_public.pem"))))
        .build()
        .unwrap();
    let api = Api::start(layer).await;
    let exp = now() + 600;
    let good_a = rs_a(json!({"sub": "a", "iss": a, "exp": exp}), "rsa-a");
    assert_eq!(api.me(&good_a).await.status, StatusCode::OK);
    let forged = [
        rs_a(json!({"sub": "x", "iss": B, "exp": exp}), "rsa-a"),
        rs_a(json!({"sub": "x", "iss": B, "exp": exp}), "unknown"),
        rs_a(json!({"sub": "x", "iss": a_slash, "exp": exp}), "rsa-a"),
        rs_a(json!({"sub": "x", "exp": exp}), "rsa-a"),
        sign_raw(
            &json!({"alg": "ES256", "kid": "new-kid"}),
            &json!({"sub": "x", "iss": a, "exp": exp}),
            Algorithm::ES256,
            &ec,
        ),
        sign_raw(
            &json!({"alg": "ES256"}),
            &json!({"sub": "x", "iss": a, "exp": exp}),
            Algorithm::ES256,
            &ec,
        ),
    ];
    for t in &forged {
        let r = api.me(t).await;
        assert!(!r.status.is_success(), "cross-issuer token: {}", reason(&r));
    }
    assert_eq!(api.handled(), 1);
}

// =============================================================================================
// oct JWK without alg
// =============================================================================================

fn hmac_token(alg: Algorithm, secret: &[u8], kid: Option<&str>) -> String {
    let mut header = json!({"alg": format!("{alg:?}")});
    if let Some(kid) = kid {
        header["kid"] = kid.into();
    }
    sign_raw(
        &header,
        &json!({"sub": "alice", "exp": now() + 600}),
        alg,
        &EncodingKey::from_secret(secret),
    )
}

/// An `oct` JWK without `alg` verifies only the allowed HMAC algorithms its length
/// allows, with or without `kid`, and an `oct` JWK whose `alg` is longer than itself is skipped.
#[test]
fn oct_jwk_never_verifies_a_longer_hash() {
    let k32 = [7u8; 32];
    let k48 = [9u8; 48];
    let jwks = json!({ "keys": [
        { "kty": "oct", "kid": "k32", "k": URL_SAFE_NO_PAD.encode(k32) },
        { "kty": "oct", "kid": "k48", "k": URL_SAFE_NO_PAD.encode(k48) },
        { "kty": "oct", "kid": "k32-512", "alg": "HS512", "k": URL_SAFE_NO_PAD.encode([3u8; 32]) },
    ]})
    .to_string();
    for allow in [
        Some(vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512]),
        Some(vec![Algorithm::HS512, Algorithm::HS384, Algorithm::HS256]),
        None,
    ] {
        let mut b = JwtAuthLayer::<Value>::builder().jwks_json(&jwks);
        if let Some(a) = &allow {
            b = b.algorithms(a.clone());
        }
        let layer = b.build().unwrap();
        let ok = |t: &str| layer.verify(t).is_ok();
        assert!(
            ok(&hmac_token(Algorithm::HS256, &k32, Some("k32"))),
            "{allow:?}"
        );
        for (alg, key, kid) in [
            (Algorithm::HS384, &k32[..], Some("k32")),
            (Algorithm::HS512, &k32[..], Some("k32")),
            (Algorithm::HS384, &k32[..], None),
            (Algorithm::HS512, &k32[..], None),
            (Algorithm::HS512, &k48[..], Some("k48")),
            (Algorithm::HS512, &k48[..], None),
            (Algorithm::HS512, &[3u8; 32][..], Some("k32-512")),
            (Algorithm::HS512, &[3u8; 32][..], None),
        ] {
            assert!(!ok(&hmac_token(alg, key, kid)), "{allow:?} {alg:?} {kid:?}");
        }
    }
    // Too short for every allowed HMAC algorithm: a build error, not a silent downgrade.
    let short = json!({ "keys": [{ "kty": "oct", "k": URL_SAFE_NO_PAD.encode([1u8; 40]) }] });
    assert!(
        JwtAuthLayer::<Value>::builder()
            .jwks_json(&short.to_string())
            .algorithms([Algorithm::HS512])
            .build()
            .is_err()
    );
}

// =============================================================================================
// iat in the future
// =============================================================================================

/// `iat` beyond now + leeway is refused at every precision; at the edge it is accepted.
#[tokio::test]
async fn future_iat_edges() {
    let t0 = now() as f64;
    let clock = Clock::manual(at(t0));
    for leeway in [0.0, 60.0] {
        let layer = base()
            .leeway(Duration::from_secs_f64(leeway))
            .clock(clock.clone())
            .build()
            .unwrap();
        let tok = |iat: Value| {
            hs(json!({"sub": "a", "iss": ISSUER, "aud": AUDIENCE,
                                         "iat": iat, "exp": t0 + 900.0}))
        };
        assert!(layer.verify(&tok(json!(t0 + leeway))).is_ok());
        for iat in [
            json!(t0 + leeway + 0.001),
            json!(t0 + leeway + 1.0),
            json!(1e300),
            json!(u64::MAX),
            json!(18446744073709551616.0f64),
        ] {
            assert!(
                layer.verify(&tok(iat.clone())).is_err(),
                "leeway {leeway}: iat {iat}"
            );
        }
    }
}

// =============================================================================================
// subject scoping by issuer
// =============================================================================================

/// HOLDS (both stores). (iss, sub) pairs that concatenate alike never share a subject entry.
/// (Aliased by design, and only over-revoking: a token without `iss` and one with `iss: ""`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subject_keys_do_not_collide() {
    let redis = RedisServer::start().await;
    let stores: Vec<Arc<dyn RevocationStore>> = vec![
        Arc::new(MemoryRevocation::new()),
        Arc::new(RedisRevocation::connect(&redis.url()).await.unwrap()),
    ];
    let t = now();
    type Subject<'a> = (Option<&'a str>, &'a str);
    let pairs: &[(Subject<'_>, Subject<'_>)] = &[
        ((Some("a:1"), "x"), (Some("a"), "1:x")),
        ((Some("1:a"), "x"), (Some("1"), "a:x")),
        (
            (Some("https://id.test"), "alice"),
            (Some("https://id.test/"), "alice"),
        ),
        (
            (Some("https://id.test"), "alice"),
            (Some("https://ID.test"), "alice"),
        ),
        ((Some("é"), "x"), (Some("e\u{301}"), "x")),
        ((Some("2:ab"), "c"), (Some("2"), "ab:c")),
        ((None, "4:abcd:x"), (Some("abcd"), "x")),
        ((Some(""), ":x"), (Some(":"), "x")),
        ((Some("a"), "alice"), (None, "alice")),
    ];
    for store in &stores {
        for (i, ((iss1, sub1), (iss2, sub2))) in pairs.iter().enumerate() {
            let _ = i;
            let (s1, s2) = (sub1.to_string(), sub2.to_string());
            store.revoke_subject(*iss1, &s1, t, t + 600).await.unwrap();
            let victim = TokenId::new(*iss1, None, Some(&s1), Some(t - 5));
            let other = TokenId::new(*iss2, None, Some(&s2), Some(t - 5));
            assert!(store.is_revoked(victim).await.unwrap(), "{iss1:?} {s1}");
            assert!(
                !store.is_revoked(other).await.unwrap(),
                "revoking ({iss1:?}, {s1}) also revoked ({iss2:?}, {s2})"
            );
        }
    }
}

// =============================================================================================
// every accepted token can be revoked
// =============================================================================================

/// HOLDS (both stores). Tokens with odd identities are either refused or can be revoked:
/// empty `sub`/`jti`, escaped member names, duplicates, other JSON types.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_token_is_revocable() {
    let redis = RedisServer::start().await;
    let t = now();
    let exp = t + 600;
    let head = format!(
        r#""iss":"{ISSUER}","aud":"{AUDIENCE}","iat":{},"exp":{exp}"#,
        t - 5
    );
    enum Revoke {
        Refused,
        Jti(&'static str),
        Sub(&'static str),
    }
    let cases: Vec<(String, Revoke)> = vec![
        (format!(r#"{{{head},"sub":""}}"#), Revoke::Sub("")),
        (format!(r#"{{{head},"jti":""}}"#), Revoke::Jti("")),
        (
            format!(r#"{{{head},"\u0073ub":"esc-alice"}}"#),
            Revoke::Sub("esc-alice"),
        ),
        (
            format!(r#"{{{head},"\u006a\u0074\u0069":"esc-jti"}}"#),
            Revoke::Jti("esc-jti"),
        ),
        (
            format!(r#"{{{head},"sub":"al\u0000ice"}}"#),
            Revoke::Sub("al\u{0}ice"),
        ),
        (
            format!(r#"{{{head},"sub":"a","\u0073ub":"b"}}"#),
            Revoke::Refused,
        ),
        (
            format!(r#"{{{head},"jti":"a","jti":"b"}}"#),
            Revoke::Refused,
        ),
        (format!(r#"{{{head},"sub":5}}"#), Revoke::Refused),
        (format!(r#"{{{head},"sub":null}}"#), Revoke::Refused),
        (format!(r#"{{{head},"sub":["x"]}}"#), Revoke::Refused),
        (format!(r#"{{{head},"sub":{{}}}}"#), Revoke::Refused),
        (format!(r#"{{{head},"jti":5}}"#), Revoke::Refused),
        (
            format!(r#"{{{head},"jti":true,"sub":"x"}}"#),
            Revoke::Refused,
        ),
        (format!(r#"{{{head},"Sub":"x"}}"#), Revoke::Refused),
        (format!(r#"{{{head},"sub ":"x"}}"#), Revoke::Refused),
        (format!(r#"{{{head}}}"#), Revoke::Refused),
    ];
    let stores: Vec<Arc<dyn RevocationStore>> = vec![
        Arc::new(MemoryRevocation::new()),
        Arc::new(RedisRevocation::connect(&redis.url()).await.unwrap()),
    ];
    for store in stores {
        let api = Api::start(base().revocation(store.clone()).build().unwrap()).await;
        for (payload, how) in &cases {
            let token = hs_raw_payload(payload);
            let first = api.me(&token).await;
            match how {
                Revoke::Refused => {
                    assert_eq!(first.status, StatusCode::UNAUTHORIZED, "{payload}");
                    continue;
                }
                Revoke::Jti(j) => {
                    assert_eq!(
                        first.status,
                        StatusCode::OK,
                        "{payload}: {}",
                        reason(&first)
                    );
                    store.revoke(j, exp).await.unwrap();
                }
                Revoke::Sub(s) => {
                    assert_eq!(
                        first.status,
                        StatusCode::OK,
                        "{payload}: {}",
                        reason(&first)
                    );
                    store.revoke_subject(Some(ISSUER), s, t, exp).await.unwrap();
                }
            }
            let after = api.me(&token).await;
            assert_eq!(
                after.status,
                StatusCode::UNAUTHORIZED,
                "not revocable: {payload}: {}",
                reason(&after)
            );
        }
    }
}

// =============================================================================================
// scopes
// =============================================================================================

/// `scp`/`scope` grant whole scopes only, never the empty one; duplicates and escaped
/// duplicates of `scope`/`scp` are refused by the layer before any requirement looks at them.
#[tokio::test]
async fn scopes() {
    for (claims, wanted) in [
        (json!({"scp": "read  write"}), ""),
        (json!({"scp": " "}), ""),
        (json!({"scp": ["read write"]}), "read"),
        (json!({"scp": ["read write"]}), "write"),
        (json!({"scp": ["", "read"]}), ""),
        (json!({"scp": "read\tadmin"}), "admin"),
        (json!({"scp": "read\u{a0}admin"}), "admin"),
        (json!({"scope": ["admin"]}), "admin"),
        (json!({"scope": {"admin": true}}), "admin"),
        (json!({"scp": {"admin": true}}), "admin"),
        (json!({"scp": [["admin"]]}), "admin"),
        (json!({"scp": "administrator"}), "admin"),
        (json!({"scope": "read", "scp": "write"}), "read write"),
    ] {
        assert!(!claims.has_scope(wanted), "{claims} granted {wanted:?}");
    }
    let hits = Hits::default();
    let app = Router::new()
        .route(
            "/me",
            subject::<Value>(&hits).route_layer(RequireClaimsLayer::<Value>::any_scope(["admin"])),
        )
        .layer(base().build().unwrap());
    let addr = serve(app).await;
    let client = client();
    let t = now();
    let head = format!(
        r#""sub":"a","iss":"{ISSUER}","aud":"{AUDIENCE}","exp":{}"#,
        t + 600
    );
    let ok = hs_raw_payload(&format!(r#"{{{head},"scp":"read admin"}}"#));
    let res = client
        .get(format!("http://{addr}/me"))
        .bearer_auth(&ok)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    for payload in [
        format!(r#"{{{head},"scope":"read","scope":"admin"}}"#),
        format!(r#"{{{head},"scope":"read","\u0073cope":"admin"}}"#),
        format!(r#"{{{head},"scp":"read","\u0073cp":["admin"]}}"#),
        format!(r#"{{{head},"scp":["read"],"scp":["admin"]}}"#),
        format!(r#"{{{head},"scope":"read admin\u0000"}}"#),
        format!(r#"{{{head},"scp":"",  "scope":" "}}"#),
    ] {
        let res = client
            .get(format!("http://{addr}/me"))
            .bearer_auth(hs_raw_payload(&payload))
            .send()
            .await
            .unwrap();
        assert!(!res.status().is_success(), "{payload}");
    }
    assert_eq!(hits.count(), 1);
}
