//! Attacks on the request pipeline, as an outside auditor wrote them: the cache hit on the raw
//! token (remote keys gone stale or rotated, revocation, times, CSRF before the cache), the
//! strict claims reader against serde derives (escaped duplicates, aliases, flatten), the
//! member set around its inline limit, escaped header members, tenant choice by an unverified
//! `iss`, and smuggled tokens. Each test passes while the defence holds.

use crate::common;

use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use common::*;
use http::{HeaderValue, Request, StatusCode, header};
use jsonwebtoken::EncodingKey;
use serde_json::{Value, json};
use tower_jwt_auth::cache::CacheConfig;
use tower_jwt_auth::remote::{FetchFuture, FetchRequest, FetchResponse, HttpFetcher, RemoteJwks};
use tower_jwt_auth::revocation::{MemoryRevocation, RevocationStore};
use tower_jwt_auth::{Algorithm, AuthError, Clock, JwtAuthLayer, Key, Tenant};

// =============================================================================================
// helpers
// =============================================================================================

fn hs_text(payload: &str) -> String {
    sign_text(
        r#"{"alg":"HS256","typ":"JWT"}"#,
        payload,
        Algorithm::HS256,
        &hs256_key(),
    )
}

fn hs_header_text(header: &str) -> String {
    sign_text(
        header,
        &good_claims().to_string(),
        Algorithm::HS256,
        &hs256_key(),
    )
}

fn exp() -> u64 {
    now() + 3600
}

/// A JWKS fetcher whose answer the test switches: the JWKS body, or a 500.
#[derive(Clone, Default)]
struct Switch(
    Arc<StdMutex<(Option<String>, usize)>>,
    Arc<std::sync::atomic::AtomicBool>,
);

impl Switch {
    fn serve(&self, keys: Vec<Value>) {
        self.0.lock().unwrap().0 = Some(json!({ "keys": keys }).to_string());
    }
    /// The endpoint black-holes: every fetch hangs (until the client's total timeout).
    fn hang(&self) {
        self.1.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    fn requests(&self) -> usize {
        self.0.lock().unwrap().1
    }
}

impl HttpFetcher for Switch {
    fn fetch(&self, _request: FetchRequest) -> FetchFuture<'_> {
        Box::pin(async move {
            let body = {
                let mut s = self.0.lock().unwrap();
                s.1 += 1;
                s.0.clone()
            };
            if self.1.load(std::sync::atomic::Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            Ok(match body {
                Some(body) => {
                    FetchResponse::new(StatusCode::OK, http::HeaderMap::new(), body.into_bytes())
                }
                None => FetchResponse::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    http::HeaderMap::new(),
                    vec![],
                ),
            })
        })
    }
}

fn rsa_token(kid: &str, overrides: Value) -> String {
    sign_jwt(
        Algorithm::RS256,
        &rsa_key(),
        Some(kid),
        &claims_with(overrides),
    )
}

// =============================================================================================
// 3. cache: a hit must never accept what a full verification refuses
// =============================================================================================

/// Remote keys past `max_stale` are dropped by `snapshot()` on *time* alone (no generation
/// bump until the next failed refresh attempt notices). A full verification then refuses the
/// token (no usable key); does a cache hit still accept it?
#[tokio::test(start_paused = true)]
async fn cache_hit_after_remote_keys_went_stale_is_refused() {
    let fetcher = Switch::default();
    fetcher.serve(vec![jwk("rsa", "k1")]);
    let remote = RemoteJwks::from_jwks_uri("https://id.test/jwks")
        .fetcher(fetcher.clone())
        .ttl_bounds(Duration::from_secs(60), Duration::from_secs(60))
        .max_stale(Duration::from_secs(150))
        .build()
        .await
        .unwrap();
    let layer = JwtAuthLayer::<TestClaims>::builder()
        .remote_jwks(remote.clone())
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .cache(CacheConfig::default())
        .build()
        .unwrap();
    let token = rsa_token("k1", json!({}));
    assert_accepted(&send_bearer(&layer, &token).await); // miss: verified and cached
    assert_accepted(&send_bearer(&layer, &token).await); // hit
    assert_eq!(layer.cache_stats().unwrap().hits, 1);
    let generation = remote.generation();

    // The JWKS host is black-holed (every fetch hangs until the 10 s total timeout). The
    // keys are usable until 60 + 150 = 210 s; the background task wakes at 210 s to refresh,
    // and records the failure (and bumps the generation) only when that fetch times out at
    // 220 s. `snapshot()` drops the keys at 210 s on time alone.
    fetcher.hang();
    tokio::time::sleep(Duration::from_secs(211)).await;
    let attempts = fetcher.requests();

    // A full verification refuses the token: no usable key.
    let full = layer.verify(&token).map(|_| ());
    assert_eq!(full, Err(AuthError::UnknownKey), "full verification");
    assert_eq!(remote.generation(), generation, "no generation bump yet");

    // The same token, as a request: served from the cache?
    let hit = send_bearer(&layer, &token).await;
    assert_eq!(
        fetcher.requests(),
        attempts,
        "the request path fetched nothing"
    );
    let hits = layer.cache_stats().unwrap().hits;
    // Contrast: a token the cache does not hold, at the same instant, waits for the hanging
    // refresh and is refused (503: keys unavailable).
    let fresh = rsa_token("k1", json!({ "jti": "fresh" }));
    let fresh_out = send_bearer(&layer, &fresh).await;
    assert_eq!(
        fresh_out.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "fresh token"
    );
    // Once that refresh has failed (generation bumped) the cached token is refused too.
    assert!(remote.generation() > generation);
    assert_eq!(
        send_bearer(&layer, &token).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_ne!(
        hit.status,
        StatusCode::OK,
        "a cache hit accepted a token whose keys had been dropped as stale (full \
         verification: UnknownKey; an uncached token at the same instant: 503); hits = {hits}"
    );
}

/// Rotation that removes the key: the refresh bumps the generation, the hit is dropped.
#[tokio::test(start_paused = true)]
async fn cache_hit_after_rotation_removed_the_key_is_refused() {
    let fetcher = Switch::default();
    fetcher.serve(vec![jwk("rsa", "k1")]);
    let remote = RemoteJwks::from_jwks_uri("https://id.test/jwks")
        .fetcher(fetcher.clone())
        .refresh_cooldown(Duration::ZERO)
        .build()
        .await
        .unwrap();
    let layer = JwtAuthLayer::<TestClaims>::builder()
        .remote_jwks(remote.clone())
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .cache(CacheConfig::default())
        .build()
        .unwrap();
    let old = rsa_token("k1", json!({}));
    assert_accepted(&send_bearer(&layer, &old).await);
    assert_accepted(&send_bearer(&layer, &old).await);
    // k1 removed, k2 (another key) published; a k2 token triggers the unknown-kid refresh.
    fetcher.serve(vec![jwk("rsa-b", "k2")]);
    let (kb, _) = private_key("rsa-b");
    let new = sign_jwt(Algorithm::RS256, &kb, Some("k2"), &good_claims());
    assert_accepted(&send_bearer(&layer, &new).await);
    let out = send_bearer(&layer, &old).await;
    assert_ne!(
        out.status,
        StatusCode::OK,
        "removed key's token served from cache"
    );
}

/// Revocation is asked on a hit.
#[tokio::test]
async fn revoked_token_refused_on_cache_hit() {
    let store = Arc::new(MemoryRevocation::new());
    let layer = hs256_builder::<TestClaims>()
        .revocation(store.clone())
        .cache(CacheConfig::default())
        .build()
        .unwrap();
    let token = hs256_token(json!({ "jti": "j-1" }));
    assert_accepted(&send_bearer(&layer, &token).await);
    assert_accepted(&send_bearer(&layer, &token).await);
    store.revoke("j-1", exp()).await.unwrap();
    let out = send_bearer(&layer, &token).await;
    assert_eq!(
        out.status,
        StatusCode::UNAUTHORIZED,
        "revoked token served from cache"
    );
    assert_eq!(out.hits, 0);
    // Subject revocation too (sub-before-time on a hit).
    let t2 = hs256_token(json!({ "sub": "bob", "iat": now() - 10 }));
    send_bearer(&layer, &t2).await;
    send_bearer(&layer, &t2).await;
    store
        .revoke_subject(Some(ISSUER), "bob", now() + 1, exp())
        .await
        .unwrap();
    assert_eq!(
        send_bearer(&layer, &t2).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert!(layer.cache_stats().unwrap().hits >= 2);
}

/// exp/nbf/iat are re-checked on a hit with the layer's clock and leeway.
#[tokio::test]
async fn cache_hit_rechecks_times() {
    let t0 = now() as f64;
    let clock = Clock::manual(std::time::UNIX_EPOCH + Duration::from_secs_f64(t0));
    let layer = hs256_builder::<TestClaims>()
        .clock(clock.clone())
        .leeway(Duration::from_secs(1))
        .cache(CacheConfig::default())
        .build()
        .unwrap();
    let token = hs256_token(json!({ "exp": t0 + 10.5, "iat": t0 }));
    assert_accepted(&send_bearer(&layer, &token).await);
    assert_accepted(&send_bearer(&layer, &token).await);
    clock.advance(Duration::from_millis(11_600)); // past exp + leeway
    assert_eq!(
        send_bearer(&layer, &token).await.status,
        StatusCode::UNAUTHORIZED,
        "expired token served from cache"
    );
}

/// CSRF runs before the cache: a token cached via the Authorization header, then replayed by a
/// cross-site form through the cookie, is still refused.
#[tokio::test]
async fn csrf_runs_before_cache_hit() {
    let layer = hs256_builder::<TestClaims>()
        .token_from_cookie("at")
        .cache(CacheConfig::default())
        .build()
        .unwrap();
    let token = hs256_token(json!({}));
    assert_accepted(&send_bearer(&layer, &token).await);
    let req = Request::post("/resource")
        .header(header::HOST, "api.example")
        .header(header::ORIGIN, "https://evil.example")
        .header("sec-fetch-site", "cross-site")
        .header(header::COOKIE, format!("at={token}"))
        .body(String::new())
        .unwrap();
    let out = send(&layer, req).await;
    assert_eq!(
        out.status,
        StatusCode::FORBIDDEN,
        "CSRF skipped on cache hit"
    );
    assert_eq!(out.hits, 0);
}

/// Optional layer: an invalid token (tampered, or a cached token with one byte changed) is
/// refused, not passed anonymously; a cached valid token's prefix/extension is no hit.
#[tokio::test]
async fn optional_layer_and_near_miss_tokens() {
    let layer = hs256_builder::<TestClaims>()
        .optional()
        .cache(CacheConfig::default())
        .build()
        .unwrap();
    let token = hs256_token(json!({}));
    assert_accepted(&send_bearer(&layer, &token).await);
    for bad in [
        tamper_signature(&token),
        format!("{token}="),
        format!("{token}A"),
        token[..token.len() - 1].to_owned(),
    ] {
        let out = send_bearer(&layer, &bad).await;
        assert_ne!(out.status, StatusCode::OK, "{bad} accepted");
    }
}

// =============================================================================================
// 5. tenants: the unverified `iss` choice
// =============================================================================================

const ISS_A: &str = "https://a.example";
const ISS_B: &str = "https://b.example";
const SECRET_A: &[u8] = b"tenant-a-secret-tenant-a-secret-0123456789";
const SECRET_B: &[u8] = b"tenant-b-secret-tenant-b-secret-0123456789"; // attacker's tenant

fn tenants_layer(cache: bool) -> JwtAuthLayer<Value> {
    let b = JwtAuthLayer::<Value>::builder()
        .tenant(Tenant::new(ISS_A).key(Key::hmac(Algorithm::HS256, SECRET_A)))
        .tenant(Tenant::new(ISS_B).key(Key::hmac(Algorithm::HS256, SECRET_B)))
        .audience(AUDIENCE);
    if cache {
        b.cache(CacheConfig::default()).build().unwrap()
    } else {
        b.build().unwrap()
    }
}

fn signed_by_b(payload: &str) -> String {
    sign_text(
        r#"{"alg":"HS256","typ":"JWT"}"#,
        payload,
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET_B),
    )
}

async fn status_value(layer: &JwtAuthLayer<Value>, token: &str) -> (StatusCode, String) {
    use tower::{Layer, ServiceExt, service_fn};
    let svc = layer.layer(service_fn(|req: Request<String>| async move {
        let c = req
            .extensions()
            .get::<tower_jwt_auth::Claims<Value>>()
            .map(|c| (**c).to_string())
            .unwrap_or_default();
        Ok::<_, std::convert::Infallible>(http::Response::new(c))
    }));
    let res = svc.oneshot(bearer(token)).await.unwrap();
    let s = res.status();
    (s, res.into_body())
}

#[tokio::test]
async fn tenant_confusion_attempts_signed_by_tenant_b() {
    for cache in [false, true] {
        let layer = tenants_layer(cache);
        let e = exp();
        // Control: B's own token is accepted as B.
        let own = signed_by_b(&format!(
            r#"{{"iss":"{ISS_B}","sub":"mallory","aud":"{AUDIENCE}","exp":{e}}}"#
        ));
        let (s, body) = status_value(&layer, &own).await;
        assert_eq!(s, StatusCode::OK, "control");
        assert!(body.contains(ISS_B));
        // Attempts to be seen as A while verified with B's key.
        for payload in [
            format!(
                r#"{{"iss":"{ISS_B}","iss":"{ISS_A}","sub":"alice","aud":"{AUDIENCE}","exp":{e}}}"#
            ),
            format!(
                r#"{{"iss":"{ISS_A}","iss":"{ISS_B}","sub":"alice","aud":"{AUDIENCE}","exp":{e}}}"#
            ),
            format!(
                r#"{{"iss":"{ISS_B}","\u0069ss":"{ISS_A}","sub":"alice","aud":"{AUDIENCE}","exp":{e}}}"#
            ),
            format!(
                r#"{{"\u0069ss":"{ISS_B}","iss":"{ISS_A}","sub":"alice","aud":"{AUDIENCE}","exp":{e}}}"#
            ),
            format!(r#"{{"iss":"{ISS_A}","sub":"alice","aud":"{AUDIENCE}","exp":{e}}}"#),
            format!(
                r#"{{"iss":"https:\/\/a.example","sub":"alice","aud":"{AUDIENCE}","exp":{e}}}"#
            ),
            format!(r#"{{"iss":["{ISS_B}"],"sub":"alice","aud":"{AUDIENCE}","exp":{e}}}"#),
            format!(r#"{{"iss":null,"sub":"alice","aud":"{AUDIENCE}","exp":{e}}}"#),
            format!(r#"{{"iss":"{ISS_B}","sub":"alice","aud":"{AUDIENCE}","exp":{e}}} "#),
            format!(
                r#"{{"iss":"{ISS_B}","sub":"alice","aud":"{AUDIENCE}","exp":{e}}}{{"iss":"{ISS_A}"}}"#
            ),
            format!(
                "\u{feff}{{\"iss\":\"{ISS_B}\",\"sub\":\"alice\",\"aud\":\"{AUDIENCE}\",\"exp\":{e}}}"
            ),
            format!(r#"{{"iss":"{ISS_B}\u0000","sub":"alice","aud":"{AUDIENCE}","exp":{e}}}"#),
            format!(
                r#"{{"iss":"{ISS_B}","ISS":"{ISS_A}","sub":"alice","aud":"{AUDIENCE}","exp":{e}}}"#
            ),
        ] {
            let token = signed_by_b(&payload);
            let (s, body) = status_value(&layer, &token).await;
            if s == StatusCode::OK {
                // Accepted: acceptable only if the app sees exactly one iss, B's, trailing ws ok.
                let v: Value = serde_json::from_str(&body).unwrap();
                assert_eq!(v["iss"], ISS_B, "accepted {payload} as {body}");
                // (`ISS` is another, case-distinct claim: visible, but not `iss`.)
                let _ = cache;
            }
        }
    }
}

// =============================================================================================
// 2 + 4. strict registered claims vs serde, MemberSet
// =============================================================================================

async fn expect_refused(layer: &JwtAuthLayer<TestClaims>, payload: &str) {
    let out = send_bearer(layer, &hs_text(payload)).await;
    assert_eq!(
        out.status,
        StatusCode::UNAUTHORIZED,
        "accepted payload {payload} (app saw {:?})",
        out.reached()
    );
}

#[tokio::test]
async fn duplicate_claims_with_escapes_are_refused() {
    let layer = hs256_layer::<TestClaims>();
    let e = exp();
    let past = now() - 7200;
    let base = format!(r#""iss":"{ISSUER}","aud":"{AUDIENCE}""#);
    for p in [
        format!(r#"{{{base},"exp":{past},"e\u0078p":{e},"sub":"alice"}}"#),
        format!(r#"{{{base},"e\u0078p":{past},"exp":{e},"sub":"alice"}}"#),
        format!(r#"{{{base},"exp":{e},"sub":"alice","s\u0075b":"admin"}}"#),
        format!(r#"{{{base},"exp":{e},"\u0073ub":"alice","sub":"admin"}}"#),
        format!(r#"{{{base},"exp":{e},"sub":"alice","roles":[],"r\u006fles":["admin"]}}"#),
        format!(r#"{{{base},"exp":{e},"sub":"alice","r\u006fles":["admin"],"roles":[]}}"#),
        format!(r#"{{{base},"exp":{e},"sub":"alice","jti":"a","j\u0074i":"b"}}"#),
        format!(r#"{{{base},"exp":{e},"sub":"alice","aud":"x"}}"#),
        format!(r#"{{{base},"exp":{e},"sub":"alice","\u0061ud":"x"}}"#),
        format!(r#"{{"iss":"{ISSUER}","aud":["x",["{AUDIENCE}"]],"exp":{e},"sub":"alice"}}"#),
        format!(r#"{{"iss":"{ISSUER}","aud":{{"0":"{AUDIENCE}"}},"exp":{e},"sub":"alice"}}"#),
        format!(r#"{{"iss":"{ISSUER}","aud":null,"exp":{e},"sub":"alice"}}"#),
        format!(r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","exp":1e400,"sub":"alice"}}"#),
        format!(r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","exp":-0,"sub":"alice"}}"#),
        format!(r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","exp":"{e}","sub":"alice"}}"#),
        format!(r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","exp":{e},"nbf":1e400,"sub":"alice"}}"#),
        format!(r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","exp":{e},"iat":1e308,"sub":"alice"}}"#),
        format!(r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","exp":{e},"sub":"alice"}}x"#),
        format!(r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","exp":{e},"sub":"alice"}},"#),
        format!(
            "\u{feff}{{\"iss\":\"{ISSUER}\",\"aud\":\"{AUDIENCE}\",\"exp\":{e},\"sub\":\"alice\"}}"
        ),
        format!(r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","exp":{e},"sub":"\ud800"}}"#),
    ] {
        expect_refused(&layer, &p).await;
    }
}

/// MemberSet: 16 borrowed custom names fill the inline array; the 17th spills. Duplicates of
/// every kind across that boundary (borrowed/escaped, before/after) must be refused.
#[tokio::test]
async fn member_set_spill_boundary_duplicates_are_refused() {
    let layer = hs256_layer::<TestClaims>();
    let e = exp();
    let head = format!(r#""iss":"{ISSUER}","aud":"{AUDIENCE}","exp":{e},"sub":"alice""#);
    for n in [14usize, 15, 16, 17, 18, 40] {
        let fill: Vec<String> = (0..n).map(|i| format!(r#""m{i:02}":0"#)).collect();
        let fill = fill.join(",");
        // escaped 'm' = \u006d
        let esc = |i: usize| format!(r#""\u006d{i:02}":1"#);
        for (what, dup) in [
            ("borrowed dup of first", r#""m00":1"#.to_owned()),
            ("borrowed dup of last", format!(r#""m{:02}":1"#, n - 1)),
            ("escaped dup of first", esc(0)),
            ("escaped dup of last", esc(n - 1)),
            ("roles twice", r#""roles":[],"roles":["admin"]"#.to_owned()),
            (
                "roles escaped twice",
                r#""roles":[],"r\u006fles":["admin"]"#.to_owned(),
            ),
        ] {
            let p = format!("{{{head},{fill},{dup}}}");
            let out = send_bearer(&layer, &hs_text(&p)).await;
            assert_eq!(out.status, StatusCode::UNAUTHORIZED, "n={n} {what}: {p}");
        }
        // escaped name first, then the borrowed one after the fill
        let p = format!(r#"{{{head},"r\u006fles":["admin"],{fill},"roles":[]}}"#);
        assert_eq!(
            send_bearer(&layer, &hs_text(&p)).await.status,
            StatusCode::UNAUTHORIZED,
            "n={n} escaped-first: {p}"
        );
        // an escaped fill name (spills early) then its borrowed duplicate
        let p = format!(r#"{{{head},"\u006dzz":0,{fill},"mzz":1}}"#);
        assert_eq!(
            send_bearer(&layer, &hs_text(&p)).await.status,
            StatusCode::UNAUTHORIZED,
            "n={n} escaped-fill-first: {p}"
        );
        // control: no duplicate → accepted
        let p = format!("{{{head},{fill}}}");
        assert_accepted(&send_bearer(&layer, &hs_text(&p)).await);
    }
}

/// The same attacks in the JOSE header: `alg`, `crit`, `jku` hidden by escapes or duplicates
/// past the spill boundary.
#[tokio::test]
async fn header_escapes_and_duplicates_are_refused() {
    let layer = hs256_layer::<TestClaims>();
    let fill: Vec<String> = (0..20).map(|i| format!(r#""h{i:02}":0"#)).collect();
    let fill = fill.join(",");
    for h in [
        r#"{"alg":"HS256","a\u006cg":"none"}"#.to_owned(),
        r#"{"a\u006cg":"HS256","alg":"HS256"}"#.to_owned(),
        r#"{"alg":"HS256","cr\u0069t":["exp"]}"#.to_owned(),
        r#"{"alg":"HS256","j\u006bu":"https://evil.example/jwks"}"#.to_owned(),
        r#"{"alg":"HS256","\u006awk":{}}"#.to_owned(),
        r#"{"alg":"HS256","x5\u0075":"https://evil.example/x"}"#.to_owned(),
        r#"{"alg":"HS256","kid":"a","k\u0069d":"b"}"#.to_owned(),
        format!(r#"{{"alg":"HS256",{fill},"h00":1}}"#),
        format!(r#"{{"alg":"HS256",{fill},"\u006800":1}}"#),
        r#"{"alg":"HS256"} "#.to_owned() + "x",
        r#"{"alg":"HS\u0032\u00356"}"#.to_owned(), // HS256, escaped: fine if accepted
        "\u{feff}{\"alg\":\"HS256\"}".to_owned(),
        r#"{"alg":"hs256"}"#.to_owned(),
    ] {
        let token = hs_header_text(&h);
        let out = send_bearer(&layer, &token).await;
        if h.contains(r#""HS\u0032\u00356""#) {
            continue; // an escaped but genuine HS256: either answer is fine
        }
        assert_eq!(out.status, StatusCode::UNAUTHORIZED, "header {h} accepted");
    }
}

// =============================================================================================
// 6. sources
// =============================================================================================

#[tokio::test]
async fn multiple_or_smuggled_tokens() {
    let layer = hs256_builder::<TestClaims>()
        .token_from_cookie("at")
        .disable_csrf_protection()
        .build()
        .unwrap();
    let good = hs256_token(json!({}));
    let evil = hs256_token(json!({ "sub": "mallory" }));
    let mk = |hs: &[(&str, String)]| {
        let mut r = Request::get("/resource").body(String::new()).unwrap();
        for (k, v) in hs {
            r.headers_mut().append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        r
    };
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        (
            "two auth headers",
            vec![
                ("authorization", format!("Bearer {good}")),
                ("authorization", format!("Bearer {evil}")),
            ],
        ),
        (
            "header vs cookie",
            vec![
                ("authorization", format!("Bearer {good}")),
                ("cookie", format!("at={evil}")),
            ],
        ),
        (
            "two cookies one header",
            vec![("cookie", format!("at={good}; at={evil}"))],
        ),
        (
            "two cookie headers",
            vec![
                ("cookie", format!("at={good}")),
                ("cookie", format!("at={evil}")),
            ],
        ),
        (
            "quoted vs bare",
            vec![("cookie", format!("at=\"{good}\"; at={evil}"))],
        ),
        (
            "comma list",
            vec![("authorization", format!("Bearer {good}, Bearer {evil}"))],
        ),
        (
            "bearer tab",
            vec![("authorization", format!("Bearer\t{evil}"))],
        ),
        (
            "trailing junk",
            vec![("authorization", format!("Bearer {good} x"))],
        ),
    ];
    for (what, hs) in cases {
        let out = send(&layer, mk(&hs)).await;
        assert_ne!(
            out.status,
            StatusCode::OK,
            "({what}) reached the handler as {:?}",
            out.reached()
        );
    }
    // control: same token twice is fine
    let out = send(
        &layer,
        mk(&[
            ("authorization", format!("Bearer {good}")),
            ("cookie", format!("at={good}")),
        ]),
    )
    .await;
    assert_accepted(&out);
}

// =============================================================================================
// 2. odd but signed payloads: what the layer does (not asserted as holes)
// =============================================================================================

// =============================================================================================
// 7. tracing: never the token; attacker-chosen header text is escaped
// =============================================================================================

/// Algorithm confusion across key families and tenants: an HS256 token whose secret is the
/// RSA public key (PEM or DER), sent to an RSA layer and to a tenant layer mixing families.
#[tokio::test]
async fn alg_confusion_with_public_key_as_hmac_secret() {
    let pem = data("rsa_2048_public.pem");
    let layer = JwtAuthLayer::<TestClaims>::builder()
        .rs256_pem(&pem)
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .cache(CacheConfig::default())
        .build()
        .unwrap();
    let forged = sign_jwt(
        Algorithm::HS256,
        &EncodingKey::from_secret(&pem),
        None,
        &good_claims(),
    );
    let out = send_bearer(&layer, &forged).await;
    assert_eq!(
        out.status,
        StatusCode::UNAUTHORIZED,
        "HS256 with the RSA PEM"
    );
    // Tenants: A uses RSA, B (attacker) HMAC; an HS256 token claiming A.
    let t = JwtAuthLayer::<TestClaims>::builder()
        .tenant(Tenant::new(ISS_A).key(Key::pem(Algorithm::RS256, &pem)))
        .tenant(Tenant::new(ISS_B).key(Key::hmac(Algorithm::HS256, SECRET_B)))
        .audience(AUDIENCE)
        .build()
        .unwrap();
    for secret in [pem.as_slice(), SECRET_B] {
        let forged = sign_jwt(
            Algorithm::HS256,
            &EncodingKey::from_secret(secret),
            None,
            &claims_with(json!({ "iss": ISS_A })),
        );
        let out = send_bearer(&t, &forged).await;
        assert_eq!(
            out.status,
            StatusCode::UNAUTHORIZED,
            "HS256 claiming RSA tenant A"
        );
    }
}

/// The same hole end to end: a real axum API on 127.0.0.1 called with reqwest, keys from a
/// real JWKS server that is black-holed (`Mode::Hang`), real time (about 9 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_cache_hit_after_remote_keys_went_stale_is_refused() {
    use common::api::Api;
    use common::jwks_server::{JwksServer, Mode};
    let jwks = JwksServer::start(&[jwk("rsa", "k1")]).await;
    let remote = RemoteJwks::from_jwks_uri(jwks.jwks_url())
        .allow_http_for_loopback()
        .ttl_bounds(Duration::from_secs(1), Duration::from_secs(1))
        .max_stale(Duration::from_secs(2))
        .timeouts(Duration::from_secs(1), Duration::from_secs(8))
        .build()
        .await
        .unwrap();
    let t0 = std::time::Instant::now();
    let layer = JwtAuthLayer::<TestClaims>::builder()
        .remote_jwks(remote.clone())
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .cache(CacheConfig::default())
        .build()
        .unwrap();
    let api = Api::start(layer.clone()).await;
    let token = rsa_token("k1", json!({}));
    assert_eq!(api.me(&token).await.status, StatusCode::OK);
    assert_eq!(api.me(&token).await.status, StatusCode::OK);
    // The provider stops answering. Keys usable until ~t0 + 1 + 2 = 3 s; the background
    // refresh that started at ~0.85 s hangs until its 8 s timeout (~8.85 s).
    jwks.mode(Mode::Hang);
    tokio::time::sleep(Duration::from_millis(4500).saturating_sub(t0.elapsed())).await;
    let generation = remote.generation();
    assert_eq!(layer.verify(&token).map(|_| ()), Err(AuthError::UnknownKey));
    let hit = api.me(&token).await;
    let handled = api.handled();
    let fresh = api.me(&rsa_token("k1", json!({ "jti": "fresh" }))).await;
    println!(
        "at {:?}: cached token -> {}, fresh token -> {} (Retry-After {:?}); generation {generation} -> {}",
        t0.elapsed(),
        hit.status,
        fresh.status,
        fresh.retry_after,
        remote.generation()
    );
    assert_ne!(
        hit.status,
        StatusCode::OK,
        "the API handler ran ({handled} times) for a token whose only key was dropped \
         as stale; an uncached token at the same moment got {}",
        fresh.status
    );
}

/// Tenants with remote keys and a cache: A's key is rotated out; A's cached token must be
/// refused while B's cached token is unaffected by A's generation (and never served as A).
#[tokio::test(start_paused = true)]
async fn tenant_remote_rotation_and_cache() {
    let fa = Switch::default();
    fa.serve(vec![jwk("rsa", "a1")]);
    let fb = Switch::default();
    fb.serve(vec![jwk("ec", "b1")]);
    let ra = RemoteJwks::from_jwks_uri("https://a.example/jwks")
        .fetcher(fa.clone())
        .refresh_cooldown(Duration::ZERO)
        .build()
        .await
        .unwrap();
    let rb = RemoteJwks::from_jwks_uri("https://b.example/jwks")
        .fetcher(fb.clone())
        .build()
        .await
        .unwrap();
    let layer = JwtAuthLayer::<TestClaims>::builder()
        .tenant(Tenant::new(ISS_A).remote_jwks(ra.clone()))
        .tenant(Tenant::new(ISS_B).remote_jwks(rb.clone()))
        .audience(AUDIENCE)
        .cache(CacheConfig::default())
        .build()
        .unwrap();
    let (ec, _) = private_key("ec");
    let ta = sign_jwt(
        Algorithm::RS256,
        &rsa_key(),
        Some("a1"),
        &claims_with(json!({ "iss": ISS_A })),
    );
    let tb = sign_jwt(
        Algorithm::ES256,
        &ec,
        Some("b1"),
        &claims_with(json!({ "iss": ISS_B })),
    );
    // B's key under A's issuer: refused (verified with A's keys only).
    let cross = sign_jwt(
        Algorithm::ES256,
        &ec,
        Some("b1"),
        &claims_with(json!({ "iss": ISS_A })),
    );
    for t in [&ta, &tb, &ta, &tb] {
        assert_accepted(&send_bearer(&layer, t).await);
    }
    assert_ne!(
        send_bearer(&layer, &cross).await.status,
        StatusCode::OK,
        "B's key for A"
    );
    // A rotates a1 out (a2 in); an a2 token triggers the refresh.
    fa.serve(vec![jwk("rsa-b", "a2")]);
    let (kb, _) = private_key("rsa-b");
    let ta2 = sign_jwt(
        Algorithm::RS256,
        &kb,
        Some("a2"),
        &claims_with(json!({ "iss": ISS_A })),
    );
    assert_accepted(&send_bearer(&layer, &ta2).await);
    assert_ne!(
        send_bearer(&layer, &ta).await.status,
        StatusCode::OK,
        "rotated-out A token"
    );
    assert_accepted(&send_bearer(&layer, &tb).await);
    assert_ne!(send_bearer(&layer, &cross).await.status, StatusCode::OK);
}

/// Randomised differential of MemberSet against a HashSet: random member names from a small
/// alphabet (so duplicates are common), each occurrence escaped or not at random, 0..40
/// members, some of them registered names. Refused iff a name repeats (after unescaping).
#[test]
fn member_set_randomised_against_hashset() {
    use rand::{Rng, SeedableRng};
    let layer = hs256_builder::<Value>().build().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let pool: Vec<String> = [
        "a", "b", "ab", "ba", "roles", "nbf", "iat", "jti", "cty", "x5t", "zz",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain((0..30).map(|i| format!("n{i}")))
    .collect();
    let e = exp();
    let mut dups = 0;
    for _ in 0..4000 {
        let n = rng.random_range(0..40);
        let mut names = Vec::new();
        let mut text = format!(r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","exp":{e},"sub":"s""#);
        for _ in 0..n {
            let name = pool[rng.random_range(0..pool.len())].clone();
            let shown: String = name
                .chars()
                .map(|c| {
                    if rng.random_bool(0.3) {
                        format!("\\u{:04x}", c as u32)
                    } else {
                        c.to_string()
                    }
                })
                .collect();
            // nbf/iat need a NumericDate value in the past
            let value = if matches!(name.as_str(), "nbf" | "iat") {
                "1"
            } else if name == "jti" {
                "\"j\""
            } else {
                "0"
            };
            text.push_str(&format!(r#","{shown}":{value}"#));
            names.push(name);
        }
        text.push('}');
        let mut set = std::collections::HashSet::new();
        let dup = !names.iter().all(|n| set.insert(n.clone()));
        dups += usize::from(dup);
        let got = layer.verify(&hs_text(&text));
        if dup {
            assert_eq!(
                got.err(),
                Some(AuthError::MalformedClaims),
                "duplicate accepted: {text}"
            );
        } else {
            assert!(
                got.is_ok(),
                "refused without duplicate: {text}: {:?}",
                got.err()
            );
        }
    }
    assert!(dups > 1000, "{dups}");
}

/// App claims types that read members the strict reader does not: `alias`, `flatten`,
/// case-distinct names. Two names for one field must not let one value win silently.
#[test]
fn alias_and_flatten_claims_types() {
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Aliased {
        #[serde(alias = "user")]
        sub: String,
        #[serde(default, alias = "role")]
        roles: Vec<String>,
    }
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Flat {
        sub: String,
        #[serde(flatten)]
        rest: std::collections::HashMap<String, Value>,
    }
    let e = exp();
    let head = format!(r#""iss":"{ISSUER}","aud":"{AUDIENCE}","exp":{e}"#);
    let aliased = hs256_layer::<Aliased>();
    for p in [
        format!(r#"{{{head},"sub":"alice","user":"admin"}}"#),
        format!(r#"{{{head},"user":"admin","sub":"alice"}}"#),
        format!(r#"{{{head},"sub":"alice","roles":[],"role":["admin"]}}"#),
        format!(r#"{{{head},"sub":"alice","r\u006fle":["admin"],"roles":[]}}"#),
    ] {
        let got = aliased.verify(&hs_text(&p));
        assert!(
            got.is_err(),
            "alias pair accepted: {p} -> {:?}",
            got.map(|c| format!("{:?}", *c))
        );
    }
    let flat = hs256_layer::<Flat>();
    for p in [
        format!(r#"{{{head},"sub":"alice","s\u0075b":"admin"}}"#),
        format!(r#"{{{head},"sub":"alice","x":1,"\u0078":2}}"#),
    ] {
        assert!(flat.verify(&hs_text(&p)).is_err(), "{p}");
    }
    // Case-distinct members are distinct claims (RFC 7519 §4: names are case-sensitive).
    let p = format!(r#"{{{head},"sub":"alice","SUB":"admin"}}"#);
    assert_eq!(flat.verify(&hs_text(&p)).unwrap().sub, "alice");
}
