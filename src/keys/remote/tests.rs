//! Unit tests: signature verification through the remote key set (which integration tests
//! cannot reach), and the refresh policy on a scripted in-memory fetcher with Tokio's paused
//! clock (no real waiting for cooldowns and lifetimes).

use std::sync::Mutex as StdMutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::{ETAG, IF_NONE_MATCH};
use http::{HeaderMap, HeaderValue, StatusCode};
use jsonwebtoken::jwk::EllipticCurve;
use jsonwebtoken::{Algorithm, AlgorithmFamily, EncodingKey};
use serde_json::{Value, json};

use super::builder::{DEFAULT_REFRESH_BURST, DEFAULT_REFRESH_REFILL};
use super::refresh::MAX_RETRY_BACKOFF;
use super::*;
use crate::backend::provider;
use crate::{AuthError, BuildError};

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(&data("rsa_2048_private.pem")).unwrap()
}
fn rsa_key_b() -> EncodingKey {
    EncodingKey::from_rsa_pem(&data("rsa_2048_b_private.pem")).unwrap()
}
fn ec_key() -> EncodingKey {
    EncodingKey::from_ec_pem(&data("ec_p256_private.pem")).unwrap()
}
fn ed_key() -> EncodingKey {
    EncodingKey::from_ed_pem(&data("ed25519_private.pem")).unwrap()
}

/// The public JWK of a private key, computed with the crate's own backend.
fn public_jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Value {
    let utils = &provider().key_utils;
    let mut jwk = match key.family() {
        AlgorithmFamily::Rsa => {
            let (n, e) = (utils.rsa_pub_components_from_private_key)(key.as_bytes()).unwrap();
            json!({"kty": "RSA", "n": b64(&n), "e": b64(&e)})
        }
        AlgorithmFamily::Ec => {
            let (_, x, y) =
                (utils.ec_pub_components_from_private_key)(key.as_bytes(), alg).unwrap();
            json!({"kty": "EC", "crv": "P-256", "x": b64(&x), "y": b64(&y)})
        }
        AlgorithmFamily::Ed => {
            let x =
                (utils.ed_pub_components_from_private_key)(key.as_bytes(), &EllipticCurve::Ed25519)
                    .unwrap();
            json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&x)})
        }
        AlgorithmFamily::Hmac => unreachable!(),
    };
    jwk["kid"] = kid.into();
    jwk["use"] = "sig".into();
    jwk
}

/// `(signing input, signature)` of a token signed with `key`.
fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey) -> (Vec<u8>, Vec<u8>) {
    let mut header = json!({"alg": format!("{alg:?}"), "typ": "JWT"});
    if let Some(kid) = kid {
        header["kid"] = kid.into();
    }
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(br#"{"sub":"alice"}"#)
    );
    let signer = (provider().signer_factory)(&alg, key).unwrap();
    let signature = signer.try_sign(input.as_bytes()).unwrap();
    (input.into_bytes(), signature)
}

fn verifies(
    set: &KeySet,
    alg: Algorithm,
    kid: Option<&str>,
    key: &EncodingKey,
) -> Result<(), AuthError> {
    let (input, signature) = sign(alg, kid, key);
    set.verify(alg, kid, &input, &signature)
}

fn jwks(keys: Vec<Value>) -> String {
    json!({ "keys": keys }).to_string()
}

/// What the scripted fetcher answers.
#[derive(Clone)]
enum Reply {
    /// `200` with this body and headers; `304` when `If-None-Match` names `etag`.
    Body {
        body: String,
        etag: Option<&'static str>,
        cache_control: Option<&'static str>,
    },
    Status(u16),
    Error(FetchError),
    /// A body larger than the cap, as a fetcher that ignores the cap would hand it over.
    Oversized,
    Hang,
}

#[derive(Default)]
struct Script {
    reply: Option<Reply>,
    requests: usize,
    if_none_match: Vec<Option<String>>,
}

#[derive(Clone, Default)]
struct Scripted(Arc<StdMutex<Script>>);

impl Scripted {
    fn serving(reply: Reply) -> Scripted {
        let scripted = Scripted::default();
        scripted.set(reply);
        scripted
    }
    fn set(&self, reply: Reply) {
        self.0.lock().unwrap().reply = Some(reply);
    }
    fn requests(&self) -> usize {
        self.0.lock().unwrap().requests
    }
    fn if_none_match(&self) -> Vec<Option<String>> {
        self.0.lock().unwrap().if_none_match.clone()
    }
}

fn body(body: String) -> Reply {
    Reply::Body {
        body,
        etag: None,
        cache_control: None,
    }
}

impl HttpFetcher for Scripted {
    fn fetch(&self, request: FetchRequest) -> FetchFuture<'_> {
        Box::pin(async move {
            let reply = {
                let mut script = self.0.lock().unwrap();
                script.requests += 1;
                let inm = request
                    .headers
                    .get(IF_NONE_MATCH)
                    .map(|v| v.to_str().unwrap().to_owned());
                script.if_none_match.push(inm);
                script.reply.clone().expect("a scripted reply")
            };
            let mut headers = HeaderMap::new();
            match reply {
                Reply::Body {
                    body,
                    etag,
                    cache_control,
                } => {
                    if let Some(cc) = cache_control {
                        headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_static(cc));
                    }
                    if let Some(etag) = etag {
                        headers.insert(ETAG, HeaderValue::from_static(etag));
                        if request
                            .headers
                            .get(IF_NONE_MATCH)
                            .is_some_and(|v| v == etag)
                        {
                            return Ok(FetchResponse::new(
                                StatusCode::NOT_MODIFIED,
                                headers,
                                vec![],
                            ));
                        }
                    }
                    Ok(FetchResponse::new(
                        StatusCode::OK,
                        headers,
                        body.into_bytes(),
                    ))
                }
                Reply::Status(code) => Ok(FetchResponse::new(
                    StatusCode::from_u16(code).unwrap(),
                    headers,
                    vec![],
                )),
                Reply::Error(e) => Err(e),
                Reply::Oversized => Ok(FetchResponse::new(
                    StatusCode::OK,
                    headers,
                    vec![b' '; request.max_body_size + 1],
                )),
                Reply::Hang => std::future::pending().await,
            }
        })
    }
}

fn all_keys() -> Vec<Value> {
    let mut rs = public_jwk(&rsa_key(), Algorithm::RS256, "rs");
    rs["alg"] = "RS256".into();
    let mut ps = public_jwk(&rsa_key(), Algorithm::PS256, "ps");
    ps["alg"] = "PS256".into();
    vec![
        rs,
        ps,
        public_jwk(&ec_key(), Algorithm::ES256, "ec"),
        public_jwk(&ed_key(), Algorithm::EdDSA, "ed"),
    ]
}

async fn build(
    fetcher: &Scripted,
    configure: impl FnOnce(RemoteJwksBuilder) -> RemoteJwksBuilder,
) -> RemoteJwks {
    configure(RemoteJwks::from_jwks_uri("https://id.test/jwks").fetcher(fetcher.clone()))
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn rs256_ps256_es256_eddsa_keys_from_a_jwks_verify_tokens() {
    let fetcher = Scripted::serving(body(jwks(all_keys())));
    let remote = build(&fetcher, |b| b).await;
    let set = remote.snapshot();
    assert_eq!(remote.kids(), ["ec", "ed", "ps", "rs"]);

    verifies(&set, Algorithm::RS256, Some("rs"), &rsa_key()).unwrap();
    verifies(&set, Algorithm::PS256, Some("ps"), &rsa_key()).unwrap();
    verifies(&set, Algorithm::ES256, Some("ec"), &ec_key()).unwrap();
    verifies(&set, Algorithm::EdDSA, Some("ed"), &ed_key()).unwrap();

    // The JWK's `alg` binds the key: the RS256 key does not verify PS256, and vice versa.
    assert_eq!(
        verifies(&set, Algorithm::PS256, Some("rs"), &rsa_key()),
        Err(AuthError::UnknownKey)
    );
    // Another key under a known kid: a bad signature.
    assert_eq!(
        verifies(&set, Algorithm::RS256, Some("rs"), &rsa_key_b()),
        Err(AuthError::InvalidSignature)
    );
    // An unknown kid finds no key.
    assert_eq!(
        verifies(&set, Algorithm::ES256, Some("nope"), &ec_key()),
        Err(AuthError::UnknownKey)
    );
}

#[tokio::test]
async fn keys_without_alg_or_kid_and_the_allow_list() {
    // No `alg` on the JWKs: the allow-list decides (EC keys: the curve's algorithm).
    let mut rsa = public_jwk(&rsa_key(), Algorithm::RS256, "");
    rsa.as_object_mut().unwrap().remove("kid");
    let keys = vec![rsa, public_jwk(&ec_key(), Algorithm::ES256, "ec")];
    let fetcher = Scripted::serving(body(jwks(keys.clone())));
    let remote = build(&fetcher, |b| b).await;
    let set = remote.snapshot();
    verifies(&set, Algorithm::RS256, None, &rsa_key()).unwrap();
    verifies(&set, Algorithm::PS512, None, &rsa_key()).unwrap();
    verifies(&set, Algorithm::ES256, Some("ec"), &ec_key()).unwrap();
    assert_eq!(remote.kids(), ["ec"]);

    // A narrower allow-list: the RSA key only verifies PS256; ES256 is not allowed at all.
    let fetcher = Scripted::serving(body(jwks(keys)));
    let remote = build(&fetcher, |b| b.algorithms([crate::Algorithm::PS256])).await;
    let set = remote.snapshot();
    verifies(&set, Algorithm::PS256, None, &rsa_key()).unwrap();
    assert!(verifies(&set, Algorithm::RS256, None, &rsa_key()).is_err());
    assert!(verifies(&set, Algorithm::ES256, Some("ec"), &ec_key()).is_err());
    assert!(remote.kids().is_empty());
    assert_eq!(remote.stats().skipped_keys, 1);
}

#[tokio::test]
async fn symmetric_keys_are_never_taken_from_a_remote_set() {
    let secret = b64(b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    let keys = vec![
        json!({"kty": "oct", "kid": "hs", "alg": "HS256", "k": secret}),
        json!({"kty": "oct", "kid": "hs-no-alg", "k": secret}),
        public_jwk(&ed_key(), Algorithm::EdDSA, "ed"),
    ];
    let fetcher = Scripted::serving(body(jwks(keys)));
    let remote = build(&fetcher, |b| b).await;
    assert_eq!(remote.kids(), ["ed"]);
    assert_eq!(remote.stats().skipped_keys, 2);

    let err = RemoteJwks::from_jwks_uri("https://id.test/jwks")
        .fetcher(fetcher.clone())
        .algorithms([crate::Algorithm::RS256, crate::Algorithm::HS256])
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(err, BuildError::InvalidSetting(m) if m.contains("HMAC")),
        "{err}"
    );
    let err = RemoteJwks::from_jwks_uri("https://id.test/jwks")
        .fetcher(fetcher.clone())
        .algorithms([])
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, BuildError::NoUsableAlgorithm), "{err}");

    // A set with nothing but symmetric keys is unusable: a build error.
    let only_oct = jwks(vec![
        json!({"kty": "oct", "kid": "hs", "alg": "HS256", "k": secret}),
    ]);
    let err = RemoteJwks::from_jwks_uri("https://id.test/jwks")
        .fetcher(Scripted::serving(body(only_oct)))
        .build()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no usable signing key"), "{err}");
}

/// 500 concurrent lookups of random unknown kids.
async fn wave(remote: &RemoteJwks, round: usize) -> Vec<Result<Arc<KeySet>, KeysUnavailable>> {
    let calls = (0..500).map(|i| {
        let remote = remote.clone();
        async move {
            let kid = format!("random-{round}-{i}");
            remote.refresh_for_unknown_kid(Some(&kid)).await
        }
    });
    futures_util::future::join_all(calls).await
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_unknown_kids_costs_one_fetch_per_refill_after_the_burst() {
    let fetcher = Scripted::serving(body(jwks(all_keys())));
    let remote = build(&fetcher, |b| b).await; // default limit: 2 tokens, one per 6 s
    assert_eq!(
        (DEFAULT_REFRESH_BURST, DEFAULT_REFRESH_REFILL.as_secs()),
        (2, 6)
    );
    assert_eq!(fetcher.requests(), 1);

    // Right after the initial fetch, which took one token: the second one is there, and 500
    // concurrent callers share one request.
    let answers = wave(&remote, 0).await;
    assert!(answers.iter().all(Result::is_ok));
    assert_eq!(fetcher.requests(), 2);
    let stats = remote.stats();
    assert_eq!(stats.unknown_kid_refreshes, 1);
    assert_eq!(stats.unknown_kid_throttled, 499);
    assert_eq!(stats.negative_cache_len, 500);

    // The same kids again: answered from the negative cache, without the flight.
    let again = remote.refresh_for_unknown_kid(Some("random-0-7")).await;
    assert!(again.is_ok());
    assert_eq!(remote.stats().negative_cache_hits, 1);

    // The bucket is empty: a new wave costs nothing until the next token, 6 s later.
    tokio::time::advance(DEFAULT_REFRESH_REFILL - Duration::from_millis(1)).await;
    wave(&remote, 1).await;
    assert_eq!(fetcher.requests(), 2);
    tokio::time::advance(Duration::from_millis(1)).await;
    wave(&remote, 2).await;
    assert_eq!(fetcher.requests(), 3);
    // And again nothing within the next 6 s.
    tokio::time::advance(DEFAULT_REFRESH_REFILL / 2).await;
    wave(&remote, 3).await;
    assert_eq!(fetcher.requests(), 3);

    // A real rotation is not starved: the provider publishes a new key; with no token left
    // it is not seen yet, at the next token the first unknown kid fetches it.
    let mut rotated = all_keys();
    rotated.push(public_jwk(&rsa_key_b(), Algorithm::RS256, "rs-2"));
    fetcher.set(body(jwks(rotated)));
    let generation = remote.generation();
    let set = remote.refresh_for_unknown_kid(Some("rs-2")).await.unwrap();
    assert!(verifies(&set, Algorithm::RS256, Some("rs-2"), &rsa_key_b()).is_err());
    assert_eq!(fetcher.requests(), 3);

    tokio::time::advance(DEFAULT_REFRESH_REFILL / 2).await;
    let (set, _) = tokio::join!(
        remote.refresh_for_unknown_kid(Some("rs-2")),
        wave(&remote, 4)
    );
    verifies(&set.unwrap(), Algorithm::RS256, Some("rs-2"), &rsa_key_b()).unwrap();
    assert_eq!(fetcher.requests(), 4);
    assert_eq!(remote.generation(), generation + 1);
    assert_eq!(remote.stats().rotations, 1);
    // The rotation emptied the negative cache, then this wave's kids went in.
    assert!(remote.stats().negative_cache_len <= 500);

    // Idle for a while: the bucket fills up to 2 tokens, not more.
    tokio::time::advance(DEFAULT_REFRESH_REFILL * 10).await;
    for round in 5..10 {
        wave(&remote, round).await;
    }
    assert_eq!(fetcher.requests(), 6);
}

/// The provider signs with a key it did not publish ahead (it is in the JWKS from just
/// before its first use on): a token with it is accepted at once when the bucket has a
/// token, and otherwise at the next token, at most 6 s after its first use.
#[tokio::test(start_paused = true)]
async fn an_unannounced_key_is_accepted_within_the_refill_interval() {
    let fetcher = Scripted::serving(body(jwks(all_keys())));
    let remote = build(&fetcher, |b| b).await;
    let built = Instant::now();
    let mut keys = all_keys();

    // Published after the initial fetch, used 1 s after it: the initial fetch left a token.
    keys.push(public_jwk(&rsa_key_b(), Algorithm::RS256, "new-1"));
    fetcher.set(body(jwks(keys.clone())));
    tokio::time::advance(Duration::from_secs(1)).await;
    let first_use = Instant::now();
    let set = remote.refresh_for_unknown_kid(Some("new-1")).await.unwrap();
    verifies(&set, Algorithm::RS256, Some("new-1"), &rsa_key_b()).unwrap();
    assert_eq!(first_use.elapsed(), Duration::ZERO);
    assert_eq!(fetcher.requests(), 2);

    // Another one, published 1 s after that fetch, which took the last token: refused until
    // the next token, 6 s after the initial fetch (the bucket refills continuously), then
    // accepted: 4 s after its first use.
    keys.push(public_jwk(&ed_key(), Algorithm::EdDSA, "new-2"));
    fetcher.set(body(jwks(keys.clone())));
    tokio::time::advance(Duration::from_secs(1)).await;
    let first_use = Instant::now();
    let accepted = loop {
        let set = remote.refresh_for_unknown_kid(Some("new-2")).await.unwrap();
        if verifies(&set, Algorithm::EdDSA, Some("new-2"), &ed_key()).is_ok() {
            break Instant::now();
        }
        tokio::time::advance(Duration::from_millis(100)).await;
    };
    assert_eq!(accepted - built, DEFAULT_REFRESH_REFILL);
    assert_eq!(accepted - first_use, Duration::from_secs(4));
    assert_eq!(fetcher.requests(), 3);
    // Meanwhile it was answered from the negative cache, not from the flight.
    assert_eq!(remote.stats().negative_cache_hits, 39);

    // After a background fetch (the keys' lifetime is 5 min by default, refreshed at 80-90 %
    // of it) a token is left too: a key published after it is accepted at once.
    let before = fetcher.requests();
    while fetcher.requests() == before {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    keys.push(public_jwk(&ec_key(), Algorithm::ES256, "new-3"));
    fetcher.set(body(jwks(keys)));
    tokio::time::advance(Duration::from_secs(1)).await;
    let set = remote.refresh_for_unknown_kid(Some("new-3")).await.unwrap();
    verifies(&set, Algorithm::ES256, Some("new-3"), &ec_key()).unwrap();
    assert_eq!(fetcher.requests(), before + 2);
}

/// 200 lookups of random kids a second for 60 s (one every 5 ms, each its own task), and a
/// key published right after one of the flood's fetches and used at once: the provider sees
/// 10 fetches a minute after the burst, and the new key is accepted at the next one, within
/// 6 s of its first use.
#[tokio::test(start_paused = true)]
async fn a_flood_of_random_kids_neither_starves_a_new_key_nor_costs_more_than_the_rate() {
    let fetcher = Scripted::serving(body(jwks(all_keys())));
    let remote = build(&fetcher, |b| b).await;
    let started = Instant::now();
    let tick = Duration::from_millis(5);
    let mut lookups = Vec::new();
    let mut new_key: Option<(Instant, Instant)> = None; // (first use, accepted)
    let mut published = false;
    let mut fetch_times = Vec::new();
    let mut seen = fetcher.requests();
    for i in 0..12_000u32 {
        let remote_for_task = remote.clone();
        lookups.push(tokio::spawn(async move {
            let kid = format!("random-{i}-{:08x}", getrandom::u32().unwrap());
            remote_for_task
                .refresh_for_unknown_kid(Some(&kid))
                .await
                .is_ok()
        }));
        tokio::task::yield_now().await;
        if fetcher.requests() != seen {
            seen = fetcher.requests();
            fetch_times.push(Instant::now() - started);
            // Published right after the flood's third fetch (the worst moment: the bucket is
            // empty), and used at once.
            if fetch_times.len() == 3 && !published {
                let mut keys = all_keys();
                keys.push(public_jwk(&rsa_key_b(), Algorithm::RS256, "new"));
                fetcher.set(body(jwks(keys)));
                published = true;
            }
        }
        if published && new_key.is_none_or(|(_, accepted)| accepted == started) {
            let first_use = new_key.map_or(Instant::now(), |(first, _)| first);
            let set = remote.refresh_for_unknown_kid(Some("new")).await.unwrap();
            let ok = verifies(&set, Algorithm::RS256, Some("new"), &rsa_key_b()).is_ok();
            new_key = Some((first_use, if ok { Instant::now() } else { started }));
        }
        tokio::time::advance(tick).await;
    }
    let elapsed = Instant::now() - started;
    assert_eq!(elapsed, Duration::from_secs(60));
    for lookup in lookups {
        assert!(lookup.await.unwrap());
    }
    let flood_fetches = fetcher.requests() - 1;
    let (first_use, accepted) = new_key.unwrap();
    let waited = accepted - first_use;
    println!(
        "200 random kids/s for 60 s: {flood_fetches} fetches (at {fetch_times:?}); \
         a key published right after a fetch accepted {waited:?} after its first use"
    );
    // The initial fetch left 1 token: one fetch at once, then one per 6 s (at 6 s … 54 s;
    // the one due at 60 s is after the flood).
    assert_eq!(flood_fetches, 10);
    assert!(flood_fetches as u64 <= u64::from(DEFAULT_REFRESH_BURST) + 60 / 6);
    assert!(waited <= DEFAULT_REFRESH_REFILL, "{waited:?}");
    assert!(accepted != started, "the new key was never accepted");
    let stats = remote.stats();
    assert_eq!(stats.unknown_kid_refreshes, 10);
    assert_eq!(stats.rotations, 1);
}

/// While the provider fails, `Retry-After` is the next possible fetch: the next refresh
/// token, or the next background retry if that is sooner.
#[tokio::test(start_paused = true)]
async fn retry_after_is_the_next_token_while_the_provider_fails() {
    let fetcher = Scripted::serving(body(jwks(all_keys())));
    let remote = build(&fetcher, |b| b).await;
    fetcher.set(Reply::Status(503));
    // The background refresh (at 80-90 % of the default 5 min) fails, and its retries back
    // off (1 s, 2 s, 4 s … 60 s): 130 s later the next one is a minute away, and the bucket
    // is full again.
    tokio::time::sleep(Duration::from_secs(270 + 130)).await;
    let failed = fetcher.requests();
    assert!(remote.stats().consecutive_failures >= 7);

    let lookup = |kid: &'static str| {
        let remote = remote.clone();
        async move {
            remote
                .refresh_for_unknown_kid(Some(kid))
                .await
                .err()
                .unwrap()
        }
    };
    // A token is left after this fetch: try again at once (Retry-After's minimum, 1 s).
    assert_eq!(lookup("a").await.retry_after, Duration::from_secs(1));
    assert_eq!(fetcher.requests(), failed + 1);
    // That was the last one: the next comes a refill after the last background retry.
    let err = lookup("b").await;
    assert_eq!(fetcher.requests(), failed + 2);
    assert!(
        err.retry_after > Duration::from_secs(1) && err.retry_after <= DEFAULT_REFRESH_REFILL,
        "{err:?}"
    );
    // Meanwhile: no fetch, the same answer, counting down.
    assert_eq!(lookup("c").await, err);
    tokio::time::advance(err.retry_after - Duration::from_millis(500)).await;
    assert_eq!(lookup("d").await.retry_after, Duration::from_secs(1));
    assert_eq!(fetcher.requests(), failed + 2);
    // At Retry-After: fetched again.
    tokio::time::advance(Duration::from_millis(500)).await;
    lookup("e").await;
    assert_eq!(fetcher.requests(), failed + 3);
}

#[tokio::test]
async fn a_refresh_limit_without_tokens_is_refused() {
    let err = RemoteJwks::from_jwks_uri("https://id.test/jwks")
        .fetcher(Scripted::serving(body(jwks(all_keys()))))
        .refresh_limit(0, Duration::from_secs(6))
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(err, BuildError::InvalidSetting(m) if m.contains("burst")),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn concurrent_callers_share_one_request_even_with_a_zero_cooldown() {
    let fetcher = Scripted::serving(body(jwks(all_keys())));
    let remote = build(&fetcher, |b| b.refresh_cooldown(Duration::ZERO)).await;
    fetcher.set(Reply::Hang);
    let calls = (0..200).map(|i| {
        let remote = remote.clone();
        async move { remote.refresh_for_unknown_kid(Some(&format!("k{i}"))).await }
    });
    let answers = futures_util::future::join_all(calls).await;
    // The provider hangs: the one request times out, everybody learns the keys are
    // unavailable for their kid, and the known keys still work.
    assert_eq!(fetcher.requests(), 2);
    assert!(
        answers
            .iter()
            .all(|a| a.as_ref().err().unwrap().retry_after >= Duration::from_secs(1))
    );
    verifies(&remote.snapshot(), Algorithm::EdDSA, Some("ed"), &ed_key()).unwrap();
    assert_eq!(
        remote.stats().last_error.unwrap(),
        "GET https://id.test/jwks: timed out"
    );

    // With the cooldown at zero, the next unknown kid may fetch again.
    fetcher.set(body(jwks(all_keys())));
    assert!(remote.refresh_for_unknown_kid(Some("k1")).await.is_ok());
    assert_eq!(fetcher.requests(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_caller_does_not_cancel_the_refresh_it_started() {
    let fetcher = Scripted::serving(body(jwks(all_keys())));
    let remote = build(&fetcher, |b| b.refresh_cooldown(Duration::ZERO)).await;
    fetcher.set(Reply::Hang);
    let lookup = |kid: &'static str| {
        let remote = remote.clone();
        tokio::spawn(async move { remote.refresh_for_unknown_kid(Some(kid)).await })
    };
    let first = lookup("a");
    while fetcher.requests() < 2 {
        tokio::task::yield_now().await;
    }
    let second = lookup("b");
    first.abort();
    // The refresh `first` started goes on without it; `second` waits for it and shares its
    // result (a timeout) instead of fetching again, even with a zero cooldown.
    assert!(second.await.unwrap().is_err());
    assert_eq!(fetcher.requests(), 2);
    let stats = remote.stats();
    assert_eq!((stats.fetches, stats.failures), (2, 1));
    assert_eq!(
        stats.last_error.unwrap(),
        "GET https://id.test/jwks: timed out"
    );
}

#[tokio::test(start_paused = true)]
async fn a_token_without_kid_may_trigger_a_refresh_too() {
    let fetcher = Scripted::serving(body(jwks(vec![public_jwk(
        &ec_key(),
        Algorithm::ES256,
        "ec",
    )])));
    let remote = build(&fetcher, |b| b.refresh_cooldown(Duration::from_secs(30))).await;
    let set = remote.refresh_for_unknown_kid(None).await.unwrap();
    assert_eq!(fetcher.requests(), 1);
    assert!(verifies(&set, Algorithm::EdDSA, None, &ed_key()).is_err());

    let mut ed = public_jwk(&ed_key(), Algorithm::EdDSA, "");
    ed.as_object_mut().unwrap().remove("kid");
    fetcher.set(body(jwks(vec![ed])));
    tokio::time::advance(Duration::from_secs(30)).await;
    let set = remote.refresh_for_unknown_kid(None).await.unwrap();
    assert_eq!(fetcher.requests(), 2);
    verifies(&set, Algorithm::EdDSA, None, &ed_key()).unwrap();
}

#[tokio::test(start_paused = true)]
async fn background_refresh_follows_max_age_and_revalidates_with_etag() {
    let fetcher = Scripted::serving(Reply::Body {
        body: jwks(all_keys()),
        etag: Some("\"v1\""),
        cache_control: Some("public, max-age=600"),
    });
    let remote = build(&fetcher, |b| b).await;
    let generation = remote.generation();
    assert_eq!(generation, 1);
    let expires_in = remote.stats().expires_in.unwrap();
    assert_eq!(expires_in, Duration::from_secs(600));

    // Before 80 % of the lifetime: nothing.
    tokio::time::sleep(Duration::from_secs(470)).await;
    assert_eq!(fetcher.requests(), 1);
    // By 90 %: one conditional request, answered 304.
    tokio::time::sleep(Duration::from_secs(70)).await;
    assert_eq!(fetcher.requests(), 2);
    assert_eq!(fetcher.if_none_match(), [None, Some("\"v1\"".to_owned())]);
    let stats = remote.stats();
    assert_eq!(stats.not_modified, 1);
    assert_eq!(stats.generation, generation);
    assert!(stats.expires_in.unwrap() >= Duration::from_secs(540));
    assert!(!stats.stale);

    // The provider rotates; the next background refresh picks it up without any token asking.
    fetcher.set(Reply::Body {
        body: jwks(vec![public_jwk(&rsa_key_b(), Algorithm::RS256, "rs-2")]),
        etag: Some("\"v2\""),
        cache_control: Some("max-age=600"),
    });
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(fetcher.requests(), 3);
    assert_eq!(remote.kids(), ["rs-2"]);
    assert_eq!(remote.generation(), generation + 1);
    verifies(
        &remote.snapshot(),
        Algorithm::RS256,
        Some("rs-2"),
        &rsa_key_b(),
    )
    .unwrap();
}

#[tokio::test(start_paused = true)]
async fn max_age_is_clamped_to_the_ttl_bounds() {
    for (cache_control, expected) in [
        (Some("max-age=1"), 60),
        (Some("max-age=120"), 120),
        (Some("max-age=999999"), 3600),
        (Some("no-cache"), 60),
        (None, 60),
    ] {
        let fetcher = Scripted::serving(Reply::Body {
            body: jwks(all_keys()),
            etag: None,
            cache_control,
        });
        let remote = build(&fetcher, |b| {
            b.ttl_bounds(Duration::from_secs(60), Duration::from_secs(3600))
        })
        .await;
        assert_eq!(
            remote.stats().expires_in,
            Some(Duration::from_secs(expected)),
            "{cache_control:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn stale_if_error_then_keys_are_dropped_after_max_stale() {
    let fetcher = Scripted::serving(Reply::Body {
        body: jwks(all_keys()),
        etag: None,
        cache_control: Some("max-age=60"),
    });
    let remote = build(&fetcher, |b| {
        b.ttl_bounds(Duration::from_secs(60), Duration::from_secs(60))
            .max_stale(Duration::from_secs(3600))
    })
    .await;
    assert_eq!(remote.generation(), 1);

    for failure in [
        Reply::Status(503),
        Reply::Error(FetchError::Transport("connection refused".into())),
        Reply::Oversized,
        body("<html>".into()),
        body(r#"{"keys":[]}"#.into()),
        Reply::Hang,
    ] {
        fetcher.set(failure);
        let before = remote.stats().failures;
        // The next retry is at most a minute away, and may wait 10 s for a timeout.
        tokio::time::sleep(Duration::from_secs(75)).await;
        let stats = remote.stats();
        assert!(stats.failures > before, "{stats:?}");
        // The last good keys still verify.
        verifies(&remote.snapshot(), Algorithm::ES256, Some("ec"), &ec_key()).unwrap();
        assert!(remote.contains_kid("ed"));
        // An unknown kid: the provider may have rotated and cannot be asked.
        tokio::time::advance(DEFAULT_REFRESH_REFILL).await;
        let err = remote
            .refresh_for_unknown_kid(Some("new"))
            .await
            .err()
            .unwrap();
        assert!(err.retry_after >= Duration::from_secs(1));
        assert!(remote.stats().stale);
    }
    let last_error = remote.stats().last_error.unwrap();
    assert!(last_error.contains("timed out"), "{last_error}");
    assert_eq!(remote.generation(), 1);

    // Past expiry + max_stale: the keys are dropped.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(remote.snapshot().algorithms().is_empty());
    assert!(remote.kids().is_empty());
    assert_eq!(remote.generation(), 2);
    assert!(remote.refresh_for_unknown_kid(Some("ec")).await.is_err());

    // The provider comes back: the background retries pick the keys up again, within the
    // longest backoff (counted from the end of the failed unknown-kid fetch above, which had
    // a token: the retry is due at the very end of it).
    fetcher.set(body(jwks(all_keys())));
    let mut changes = remote.subscribe();
    tokio::time::timeout(
        MAX_RETRY_BACKOFF + Duration::from_secs(1),
        changes.reached(3),
    )
    .await
    .unwrap();
    assert!(remote.contains_kid("ec"));
    assert_eq!(remote.generation(), 3);
    assert_eq!(remote.stats().consecutive_failures, 0);
}

#[tokio::test(start_paused = true)]
async fn a_fetcher_ignoring_the_size_cap_is_caught() {
    let fetcher = Scripted::serving(Reply::Oversized);
    let err = RemoteJwks::from_jwks_uri("https://id.test/jwks")
        .fetcher(fetcher)
        .max_body_size(1000)
        .build()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("larger than 1000 bytes"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn lazy_build_fetches_in_the_background() {
    let fetcher = Scripted::serving(Reply::Status(500));
    let remote = build(&fetcher, |b| b.lazy()).await;
    assert!(remote.kids().is_empty());
    assert!(remote.refresh_for_unknown_kid(Some("ec")).await.is_err());
    fetcher.set(body(jwks(all_keys())));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(remote.contains_kid("ec"));
    assert_eq!(remote.generation(), 1);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_last_clone_stops_the_background_task() {
    let fetcher = Scripted::serving(body(jwks(all_keys())));
    let remote = build(&fetcher, |b| {
        b.ttl_bounds(Duration::from_secs(1), Duration::from_secs(1))
    })
    .await;
    let clone = remote.clone();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let before = fetcher.requests();
    assert!(before >= 10, "{before}");
    drop(remote);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(fetcher.requests() >= before + 10);
    let tasks = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    assert_eq!(tasks(), 1);
    drop(clone);
    tokio::task::yield_now().await;
    // The background task has ended at once, not at its next scheduled refresh.
    assert_eq!(tasks(), 0);
    let after = fetcher.requests();
    tokio::time::sleep(Duration::from_secs(100)).await;
    assert_eq!(fetcher.requests(), after);
    // The fetcher (owned by the shared state) is gone too.
    assert_eq!(Arc::strong_count(&fetcher.0), 1);
}

#[tokio::test]
async fn settings_out_of_range_are_build_errors() {
    let fetcher = Scripted::serving(body(jwks(all_keys())));
    let cases: [fn(RemoteJwksBuilder) -> RemoteJwksBuilder; 5] = [
        |b| b.ttl_bounds(Duration::from_millis(500), Duration::from_secs(60)),
        |b| b.ttl_bounds(Duration::from_secs(60), Duration::from_secs(59)),
        |b| b.timeouts(Duration::ZERO, Duration::from_secs(1)),
        |b| b.timeouts(Duration::from_secs(1), Duration::ZERO),
        |b| b.max_body_size(0),
    ];
    for case in cases {
        let builder =
            case(RemoteJwks::from_jwks_uri("https://id.test/jwks").fetcher(fetcher.clone()));
        assert!(matches!(
            builder.build().await,
            Err(BuildError::InvalidSetting(_))
        ));
    }
}

#[test]
fn build_needs_a_tokio_runtime() {
    let fetcher = Scripted::serving(body(jwks(all_keys())));
    let build = RemoteJwks::from_jwks_uri("https://id.test/jwks")
        .fetcher(fetcher)
        .build();
    let err = futures_util::FutureExt::now_or_never(build)
        .unwrap()
        .unwrap_err();
    assert!(err.to_string().contains("Tokio"), "{err}");
}

#[test]
fn keys_unavailable_reads_well() {
    let err = KeysUnavailable {
        retry_after: Duration::from_secs(30),
    };
    assert_eq!(
        err.to_string(),
        "signing keys unavailable: the identity provider cannot be reached (retry after 30 s)"
    );
}
