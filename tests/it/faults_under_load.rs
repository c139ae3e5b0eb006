//! Faults under load: a real axum API on 127.0.0.1 behind the layer with a remote JWKS, a
//! `RedisRevocation` and the verified-token cache, driven by 3000 requests from 32 concurrent
//! clients, while the identity provider rotates its keys, fails (500, then hangs) and
//! recovers, and Redis is killed and restarted on the same port.
//!
//! The traffic mixes valid tokens with expired, forged (attacker key, published `kid`),
//! unknown-`kid` (random `kid`s), revoked (before the run), revoked-mid-run (after they were
//! served and cached), expiring-mid-run and old-key (a key the provider retires) tokens; once
//! the faults are over, a burst of 1500 junk tokens with random `kid`s presses on the negative
//! `kid` cache. Every request's start and end are recorded against the fault timeline, and
//! afterwards:
//!
//! * no 5xx other than 503, and every 503 carries `Retry-After`;
//! * a 503 only while Redis was down (for tokens that reach the revocation check) or while the
//!   provider was failing (for tokens whose `kid` the layer lacks);
//! * every valid request outside the Redis outage got 200 (keys stay available through the
//!   provider outage: stale-if-error);
//! * no invalid token got 200 at any time, during the outages included (fail closed);
//! * the cache and the negative `kid` cache stayed within their caps, the provider saw few
//!   requests, and the handler ran exactly once per 200.
//!
//! Needs `redis-server` on the PATH (`apt-get install -y redis-server`). Redis runs with an
//! append-only file fsynced on every write (`RedisServer::start_persistent`, in
//! `common::redis_server`), so the revocations survive the kill (`SIGKILL`) and restart, as
//! they would in a deployment that relies on them.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::EncodingKey;
use serde_json::{Value, json};
use tower_jwt_auth::Algorithm;
use tower_jwt_auth::JwtAuthLayer;
use tower_jwt_auth::cache::CacheConfig;
use tower_jwt_auth::remote::RemoteJwks;
use tower_jwt_auth::revocation::{RedisRevocation, RevocationStore};

use common::api::Api;
use common::jwks_server::{JwksServer, Mode};
use common::redis_server::RedisServer;
use common::{AUDIENCE, ISSUER, install_provider, jwk, private_key, sign_jwt};

// ---------------------------------------------------------------------------------------------
// The load and the fault schedule (seconds after the load starts)

/// Requests sent in all.
const TOTAL: usize = 3000;
/// Concurrent clients.
const CLIENTS: usize = 32;
/// Request `n` is due at `n * SPACING`: 3000 requests over 12 s.
const SPACING: Duration = Duration::from_millis(4);
/// No request is started after this, however far behind schedule the load is.
const LOAD_DEADLINE: Duration = Duration::from_secs(20);
/// Per request.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

const ADD_NEW_KEY_AT: f64 = 1.0;
const REVOKE_MID_RUN_AT: f64 = 2.0;
const IDP_FAILS_AT: f64 = 2.5;
const IDP_HANGS_AT: f64 = 4.0;
/// Tokens of kind `expiring_mid_run` expire about this long into the run (`exp` is a whole
/// second; the exact instant is mapped onto the run's clock and reported).
const EXPIRING_AT: f64 = 5.0;
const IDP_RECOVERS_AT: f64 = 5.5;
const REDIS_KILLED_AT: f64 = 6.0;
const REDIS_RESTARTED_AT: f64 = 8.0;
const OLD_KEY_RETIRED_AT: f64 = 7.5;

/// The layer's unknown-`kid` refresh cooldown.
const COOLDOWN: Duration = Duration::from_secs(1);
/// The JWKS `Cache-Control: max-age`: the background task refreshes every 2.4–2.7 s, so
/// unknown `kid`s get their own refreshes (at most one per cooldown) in between.
const JWKS_MAX_AGE: u64 = 3;
/// The remote source's total timeout (a hanging provider costs at most this per fetch).
const FETCH_TIMEOUT: Duration = Duration::from_secs(1);
/// The verified-token cache's cap, well below the distinct verifiable tokens sent (360).
const CACHE_ENTRIES: u64 = 64;
/// Junk-`kid` requests sent in a burst after the run.
const FLOOD: usize = 1500;
/// The documented cap of the negative `kid` cache.
const NEGATIVE_CACHE_CAP: usize = 1024;

/// Slack around every fault transition (scheduling on a loaded 2-core machine).
const GRACE: Duration = Duration::from_millis(300);
/// The layer must take Redis's revocations again within this of Redis being back.
const REDIS_RECOVERY: Duration = Duration::from_secs(3);
/// The layer must have fetched the keys successfully within this of the provider being back:
/// a fetch hanging at the time times out, then the next refresh (background retry after 1 s,
/// or an unknown `kid` after the cooldown) succeeds.
const IDP_RECOVERY: Duration = Duration::from_secs(5);

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

// ---------------------------------------------------------------------------------------------
// Keys and tokens

// The test keys (`common::private_key`): `rsa` is the stable key, `ed` the old
// one, `ec` the new one, and `rsa-b` the attacker's, never published.

const KID_STABLE: &str = "k-stable";
const KID_OLD: &str = "k-old";
const KID_NEW: &str = "k-new";

fn claims(jti: &str, exp: u64) -> Value {
    let iat = common::now().min(exp.saturating_sub(60));
    json!({ "sub": format!("user-{jti}"), "iss": ISSUER, "aud": AUDIENCE,
            "jti": jti, "iat": iat, "exp": exp })
}

/// A token signed by `key` naming `kid`, with the test issuer and audience, a unique `jti`,
/// and `exp` as given.
fn token(key: &(EncodingKey, Algorithm), kid: &str, jti: &str, exp: u64) -> String {
    let (key, alg) = key;
    sign_jwt(*alg, key, Some(kid), &claims(jti, exp))
}

/// A flood token: a random `kid` and 256 random bytes where the RS256 signature goes (an
/// attacker needs no key to make the layer look a `kid` up).
fn junk_token(jti: &str, exp: u64) -> String {
    let kid = format!("flood-{:016x}", rand::random::<u64>());
    let header = json!({ "alg": "RS256", "typ": "JWT", "kid": kid });
    let signature: Vec<u8> = (0..256).map(|_| rand::random::<u8>()).collect();
    format!(
        "{}.{}.{}",
        common::b64(header.to_string().as_bytes()),
        common::b64(claims(jti, exp).to_string().as_bytes()),
        common::b64(&signature)
    )
}

fn pool(n: usize, f: impl Fn(usize) -> String) -> Arc<Vec<String>> {
    Arc::new((0..n).map(f).collect())
}

// ---------------------------------------------------------------------------------------------
// Request kinds

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// Signed by the stable key (or by the new one once the layer has it): always valid.
    Valid,
    /// `exp` an hour ago.
    Expired,
    /// Signed by the attacker's key, naming the stable key's `kid`.
    Forged,
    /// A random `kid`, signed by the attacker's key.
    UnknownKid,
    /// Revoked in Redis before the run.
    Revoked,
    /// Valid until revoked in Redis during the run (after the cache has them).
    RevokedMidRun,
    /// Valid until their `exp`, which falls during the run (after the cache has them).
    ExpiringMidRun,
    /// Signed by the key the provider retires during the run: valid while the layer still
    /// has that key, refused once it has seen the retirement.
    OldKey,
    /// After the run: a burst of random `kid`s with junk signatures, as fast as the clients
    /// go, against the negative `kid` cache's cap.
    KidFlood,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Valid => "valid",
            Kind::Expired => "expired",
            Kind::Forged => "forged",
            Kind::UnknownKid => "unknown_kid",
            Kind::Revoked => "revoked",
            Kind::RevokedMidRun => "revoked_mid_run",
            Kind::ExpiringMidRun => "expiring_mid_run",
            Kind::OldKey => "old_key",
            Kind::KidFlood => "kid_flood",
        }
    }
}

/// The mix, repeated: 30 % valid, 20 % unknown `kid`, 10 % each expired, forged, revoked,
/// revoked mid-run, 5 % each expiring mid-run and old key.
const PATTERN: [Kind; 20] = [
    Kind::Valid,
    Kind::UnknownKid,
    Kind::Expired,
    Kind::Valid,
    Kind::Forged,
    Kind::Revoked,
    Kind::UnknownKid,
    Kind::RevokedMidRun,
    Kind::Valid,
    Kind::ExpiringMidRun,
    Kind::Valid,
    Kind::UnknownKid,
    Kind::Expired,
    Kind::Forged,
    Kind::Valid,
    Kind::Revoked,
    Kind::UnknownKid,
    Kind::RevokedMidRun,
    Kind::Valid,
    Kind::OldKey,
];

struct Tokens {
    valid_stable: Arc<Vec<String>>,
    valid_new: Arc<Vec<String>>,
    expired: Arc<Vec<String>>,
    forged: Arc<Vec<String>>,
    unknown_kid: Arc<Vec<String>>,
    revoked: Arc<Vec<String>>,
    revoked_mid_run: Arc<Vec<String>>,
    expiring: Arc<Vec<String>>,
    old_key: Arc<Vec<String>>,
    flood: Arc<Vec<String>>,
    unknown_next: AtomicUsize,
}

/// What one request was and what it got.
#[derive(Debug, Clone)]
struct Outcome {
    n: usize,
    kind: Kind,
    /// The token of a `valid` request was signed by the new key.
    new_key: bool,
    /// Whether the layer had the old key when the request started and when it ended.
    old_key_held: (bool, bool),
    start: Duration,
    end: Duration,
    status: Option<u16>,
    retry_after: Option<String>,
    error: Option<String>,
}

/// The load generator: `CLIENTS` tasks sharing one connection pool.
#[derive(Clone)]
struct Clients {
    client: reqwest::Client,
    url: String,
    tokens: Arc<Tokens>,
    remote: RemoteJwks,
    t0: Instant,
}

impl Clients {
    /// Sends requests `range` (request `n` is of kind `kind_of(n)`), from `CLIENTS` tasks:
    /// request `n` no earlier than `n * spacing` after the start of the run when paced, else
    /// as fast as they go. No request is started after `LOAD_DEADLINE`.
    fn spawn(
        &self,
        range: std::ops::Range<usize>,
        kind_of: fn(usize) -> Kind,
        spacing: Option<Duration>,
    ) -> Vec<tokio::task::JoinHandle<Vec<Outcome>>> {
        let next = Arc::new(AtomicUsize::new(range.start));
        (0..CLIENTS)
            .map(|_| {
                let this = self.clone();
                let next = next.clone();
                let end = range.end;
                this.run(next, end, kind_of, spacing)
            })
            .collect()
    }

    fn run(
        self,
        next: Arc<AtomicUsize>,
        end_n: usize,
        kind_of: fn(usize) -> Kind,
        spacing: Option<Duration>,
    ) -> tokio::task::JoinHandle<Vec<Outcome>> {
        let Clients {
            client,
            url,
            tokens,
            remote,
            t0,
        } = self;
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= end_n || t0.elapsed() > LOAD_DEADLINE {
                    break;
                }
                if let Some(spacing) = spacing {
                    tokio::time::sleep_until(tokio::time::Instant::from_std(
                        t0 + spacing * n as u32,
                    ))
                    .await;
                }
                let kind = kind_of(n);
                let round = n / PATTERN.len();
                let held_before = remote.contains_kid(KID_OLD);
                let mut new_key = false;
                let token = match kind {
                    Kind::Valid => {
                        // The new key only once the layer has it (it is never retired).
                        new_key = remote.contains_kid(KID_NEW) && n.is_multiple_of(3);
                        if new_key {
                            &tokens.valid_new[round % tokens.valid_new.len()]
                        } else {
                            &tokens.valid_stable[(n / 3) % tokens.valid_stable.len()]
                        }
                    }
                    Kind::Expired => &tokens.expired[round % tokens.expired.len()],
                    Kind::Forged => &tokens.forged[round % tokens.forged.len()],
                    Kind::UnknownKid => {
                        let i = tokens.unknown_next.fetch_add(1, Ordering::SeqCst);
                        &tokens.unknown_kid[i]
                    }
                    Kind::Revoked => &tokens.revoked[round % tokens.revoked.len()],
                    Kind::RevokedMidRun => {
                        &tokens.revoked_mid_run[round % tokens.revoked_mid_run.len()]
                    }
                    Kind::ExpiringMidRun => &tokens.expiring[round % tokens.expiring.len()],
                    Kind::OldKey => &tokens.old_key[round % tokens.old_key.len()],
                    Kind::KidFlood => &tokens.flood[n % tokens.flood.len()],
                };
                let start = t0.elapsed();
                let result = client.get(&url).bearer_auth(token).send().await;
                let (status, retry_after, error) = match result {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let retry_after = response
                            .headers()
                            .get("retry-after")
                            .map(|v| v.to_str().unwrap_or("<not text>").to_owned());
                        match response.bytes().await {
                            Ok(_) => (Some(status), retry_after, None),
                            Err(e) => (Some(status), retry_after, Some(e.to_string())),
                        }
                    }
                    Err(e) => (None, None, Some(e.to_string())),
                };
                let end = t0.elapsed();
                outcomes.push(Outcome {
                    n,
                    kind,
                    new_key,
                    old_key_held: (held_before, remote.contains_kid(KID_OLD)),
                    start,
                    end,
                    status,
                    retry_after,
                    error,
                });
            }
            outcomes
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Timeline and monitoring

/// When each fault transition happened, relative to the start of the load.
#[derive(Debug, Default, Clone)]
struct Timeline {
    new_key_added: Duration,
    revoke_begin: Duration,
    revoke_end: Duration,
    idp_fails: Duration,
    idp_hangs: Duration,
    idp_recovers: Duration,
    redis_killed: Duration,
    redis_restart_begin: Duration,
    redis_ready: Duration,
    old_key_retired: Duration,
    /// Keys in Redis right after the restart (the revocations must have survived).
    dbsize_after_restart: u64,
}

/// What a sampler saw of the layer while the load ran.
#[derive(Debug, Default, Clone)]
struct Observed {
    max_cache_entries: u64,
    max_negative_cache: usize,
    max_consecutive_failures: u32,
    /// First sample after the provider recovered with the last fetch successful.
    idp_recovery_seen: Option<Duration>,
    /// First sample with the new key in the layer's set.
    new_key_seen: Option<Duration>,
    /// First sample without the old key in the layer's set.
    old_key_gone_seen: Option<Duration>,
    samples: usize,
}

/// `[start, end]` of a fault, in time since the start of the load.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Duration,
    end: Duration,
}

impl Window {
    fn overlaps(&self, o: &Outcome) -> bool {
        o.start <= self.end && o.end >= self.start
    }
}

// ---------------------------------------------------------------------------------------------
// The test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_under_load_never_accept_an_invalid_token_and_only_503_during_outages() {
    let setup_started = Instant::now();
    install_provider();

    // The provider publishes the stable key and the old key.
    let stable = jwk("rsa", KID_STABLE);
    let old = jwk("ed", KID_OLD);
    let new = jwk("ec", KID_NEW);
    let idp = JwksServer::start(&[stable.clone(), old.clone()]).await;
    idp.cache_control(&format!("max-age={JWKS_MAX_AGE}"));

    let mut redis = RedisServer::start_persistent().await;
    let store = Arc::new(RedisRevocation::connect(&redis.url()).await.unwrap());
    // Another server of the fleet, which revokes.
    let admin = RedisRevocation::connect(&redis.url()).await.unwrap();

    let remote = RemoteJwks::from_jwks_uri(idp.jwks_url())
        .allow_http_for_loopback()
        .refresh_cooldown(COOLDOWN)
        .ttl_bounds(Duration::from_secs(1), Duration::from_secs(60))
        .timeouts(Duration::from_millis(500), FETCH_TIMEOUT)
        .build()
        .await
        .unwrap();
    let layer = JwtAuthLayer::<Value>::builder()
        .remote_jwks(remote.clone())
        .issuer(ISSUER)
        .audience(AUDIENCE)
        // No leeway: the mid-run expiry is exact, and cached entries live until `exp`.
        .leeway(Duration::ZERO)
        .revocation(store.clone())
        .cache(CacheConfig::default().max_entries(CACHE_ENTRIES))
        .build()
        .unwrap();
    let api = Api::start(layer.clone()).await;
    let (url, handled) = (api.url(), api.hits.clone());

    // Tokens.
    let exp = common::now() + 3600;
    let unknown_needed = PATTERN.iter().filter(|k| **k == Kind::UnknownKid).count() * TOTAL
        / PATTERN.len()
        + PATTERN.len();
    let (rsa, ec, ed, attacker) = (
        private_key("rsa"),
        private_key("ec"),
        private_key("ed"),
        private_key("rsa-b"),
    );
    let valid_stable = pool(150, |i| token(&rsa, KID_STABLE, &format!("valid-{i}"), exp));
    let valid_new = pool(50, |i| token(&ec, KID_NEW, &format!("valid-new-{i}"), exp));
    let expired = pool(40, |i| {
        token(
            &rsa,
            KID_STABLE,
            &format!("expired-{i}"),
            common::now() - 3600,
        )
    });
    let forged = pool(40, |i| {
        token(&attacker, KID_STABLE, &format!("forged-{i}"), exp)
    });
    let unknown_kid = pool(unknown_needed, |i| {
        let kid = format!("random-{:016x}", rand::random::<u64>());
        token(&attacker, &kid, &format!("unknown-{i}"), exp)
    });
    let revoked = pool(50, |i| {
        token(&rsa, KID_STABLE, &format!("revoked-{i}"), exp)
    });
    let revoked_mid_run = pool(50, |i| {
        token(&rsa, KID_STABLE, &format!("revoked-mid-{i}"), exp)
    });
    let old_key = pool(30, |i| token(&ed, KID_OLD, &format!("old-{i}"), exp));
    let flood = pool(FLOOD, |i| junk_token(&format!("flood-{i}"), exp));
    // Signed last, just before the run: they expire at the first whole second after
    // EXPIRING_AT into it (mapped onto the run's clock at its start).
    let expiring_exp = (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        + 0.5
        + EXPIRING_AT)
        .ceil() as u64;
    let expiring = pool(30, |i| {
        token(&rsa, KID_STABLE, &format!("expiring-{i}"), expiring_exp)
    });
    let tokens = Arc::new(Tokens {
        valid_stable,
        valid_new,
        expired,
        forged,
        unknown_kid,
        revoked,
        revoked_mid_run,
        expiring,
        old_key,
        flood,
        unknown_next: AtomicUsize::new(0),
    });
    for i in 0..50 {
        admin.revoke(&format!("revoked-{i}"), exp).await.unwrap();
    }
    assert_eq!(redis.dbsize().await, 50);

    let client = reqwest::Client::builder()
        .timeout(CLIENT_TIMEOUT)
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .unwrap();
    // Warm-up: one valid request (connections, lazy statics), not counted.
    let warm = client
        .get(&url)
        .bearer_auth(&tokens.valid_stable[0])
        .send()
        .await
        .unwrap();
    assert_eq!(warm.status(), reqwest::StatusCode::OK);
    let warm_handled = handled.take();
    assert_eq!(warm_handled, 1);
    let fetches_before = remote.stats().fetches;
    let setup_took = setup_started.elapsed();

    // ------------------------------------------------------------------ the run
    let t0 = Instant::now();
    let expiring_at = {
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        Duration::from_secs_f64((expiring_exp as f64 - now_unix).max(0.0))
    };
    let at = |s: f64| tokio::time::Instant::from_std(t0 + secs(s));

    // Sampler: memory bounds and when the layer noticed each change.
    let stop = Arc::new(AtomicBool::new(false));
    let idp_back = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (remote, layer, stop, idp_back) = (
            remote.clone(),
            layer.clone(),
            stop.clone(),
            idp_back.clone(),
        );
        tokio::spawn(async move {
            let mut seen = Observed::default();
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            while !stop.load(Ordering::SeqCst) {
                tick.tick().await;
                let now = t0.elapsed();
                let stats = remote.stats();
                seen.samples += 1;
                seen.max_negative_cache = seen.max_negative_cache.max(stats.negative_cache_len);
                seen.max_consecutive_failures = seen
                    .max_consecutive_failures
                    .max(stats.consecutive_failures);
                if idp_back.load(Ordering::SeqCst)
                    && stats.consecutive_failures == 0
                    && seen.idp_recovery_seen.is_none()
                {
                    seen.idp_recovery_seen = Some(now);
                }
                if seen.new_key_seen.is_none() && remote.contains_kid(KID_NEW) {
                    seen.new_key_seen = Some(now);
                }
                if seen.old_key_gone_seen.is_none() && !remote.contains_kid(KID_OLD) {
                    seen.old_key_gone_seen = Some(now);
                }
                if seen.samples.is_multiple_of(2) {
                    let entries = layer.cache_stats().unwrap().entries;
                    seen.max_cache_entries = seen.max_cache_entries.max(entries);
                }
            }
            seen
        })
    };

    // Clients.
    let clients = Clients {
        client: client.clone(),
        url: url.clone(),
        tokens: tokens.clone(),
        remote: remote.clone(),
        t0,
    };
    let workers = clients.spawn(0..TOTAL, |n| PATTERN[n % PATTERN.len()], Some(SPACING));

    // The faults.
    let mut timeline = Timeline::default();
    tokio::time::sleep_until(at(ADD_NEW_KEY_AT)).await;
    idp.publish(&[stable.clone(), old.clone(), new.clone()]);
    timeline.new_key_added = t0.elapsed();

    tokio::time::sleep_until(at(REVOKE_MID_RUN_AT)).await;
    timeline.revoke_begin = t0.elapsed();
    for i in 0..50 {
        admin
            .revoke(&format!("revoked-mid-{i}"), exp)
            .await
            .unwrap();
    }
    timeline.revoke_end = t0.elapsed();

    tokio::time::sleep_until(at(IDP_FAILS_AT)).await;
    idp.mode(Mode::Status(500));
    timeline.idp_fails = t0.elapsed();

    tokio::time::sleep_until(at(IDP_HANGS_AT)).await;
    idp.mode(Mode::Hang);
    timeline.idp_hangs = t0.elapsed();

    tokio::time::sleep_until(at(IDP_RECOVERS_AT)).await;
    idp.mode(Mode::Keys);
    timeline.idp_recovers = t0.elapsed();
    idp_back.store(true, Ordering::SeqCst);

    tokio::time::sleep_until(at(REDIS_KILLED_AT)).await;
    // Marked before the kill: requests in flight at that moment may already see it.
    timeline.redis_killed = t0.elapsed();
    redis.kill();

    tokio::time::sleep_until(at(OLD_KEY_RETIRED_AT)).await;
    idp.publish(&[stable.clone(), new.clone()]);
    timeline.old_key_retired = t0.elapsed();

    tokio::time::sleep_until(at(REDIS_RESTARTED_AT)).await;
    timeline.redis_restart_begin = t0.elapsed();
    redis.spawn().await;
    timeline.redis_ready = t0.elapsed();
    timeline.dbsize_after_restart = redis.dbsize().await;

    let mut outcomes: Vec<Outcome> = Vec::with_capacity(TOTAL + FLOOD);
    for w in workers {
        outcomes.extend(w.await.unwrap());
    }
    let load_took = t0.elapsed();

    // The kid flood, once everything is healthy again.
    let flood_workers = clients.spawn(TOTAL..TOTAL + FLOOD, |_| Kind::KidFlood, None);
    for w in flood_workers {
        outcomes.extend(w.await.unwrap());
    }
    let flood_took = t0.elapsed() - load_took;
    let run_took = t0.elapsed();
    stop.store(true, Ordering::SeqCst);
    let observed = sampler.await.unwrap();
    outcomes.sort_by_key(|o| o.n);

    // ------------------------------------------------------------------ the verdict
    let stats = remote.stats();
    let cache = layer.cache_stats().unwrap();
    let redis_window = Window {
        start: timeline.redis_killed.saturating_sub(GRACE),
        end: timeline.redis_ready + REDIS_RECOVERY,
    };
    let idp_recovery_seen = observed
        .idp_recovery_seen
        .unwrap_or(timeline.idp_recovers + IDP_RECOVERY);
    let idp_window = Window {
        start: timeline.idp_fails.saturating_sub(GRACE),
        end: idp_recovery_seen + GRACE,
    };

    let mut violations: Vec<String> = Vec::new();
    let mut table: BTreeMap<Kind, BTreeMap<String, usize>> = BTreeMap::new();
    let mut last_redis_503_after_ready: Option<Duration> = None;
    for o in &outcomes {
        let column = match (o.status, &o.error) {
            (_, Some(_)) => "error".to_owned(),
            (Some(s @ (200 | 401 | 503)), None) => s.to_string(),
            (Some(_), None) => "other".to_owned(),
            (None, None) => unreachable!(),
        };
        *table.entry(o.kind).or_default().entry(column).or_default() += 1;

        let in_redis = redis_window.overlaps(o);
        let in_idp = idp_window.overlaps(o);
        // What this request may and must get.
        let (may_200, must_200, may_503) = match o.kind {
            Kind::Valid => (true, !in_redis, in_redis),
            Kind::Expired | Kind::Forged => (false, false, false),
            Kind::UnknownKid | Kind::KidFlood => (false, false, in_idp),
            Kind::Revoked => (false, false, in_redis),
            Kind::RevokedMidRun => (
                o.start < timeline.revoke_end,
                o.end < timeline.revoke_begin && !in_redis,
                in_redis,
            ),
            Kind::ExpiringMidRun => {
                let before = o.start < expiring_at;
                (
                    before,
                    o.end + GRACE < expiring_at && !in_redis,
                    before && in_redis,
                )
            }
            Kind::OldKey => {
                let (held_before, held_after) = o.old_key_held;
                (
                    held_before,
                    held_before && held_after && !in_redis,
                    (held_before && in_redis) || (!held_after && in_idp),
                )
            }
        };
        let what = format!(
            "#{} {} (new key: {}) [{:.3}s..{:.3}s]",
            o.n,
            o.kind.name(),
            o.new_key,
            o.start.as_secs_f64(),
            o.end.as_secs_f64()
        );
        if let Some(e) = &o.error {
            violations.push(format!("{what}: transport error {e}"));
            continue;
        }
        let status = o.status.unwrap();
        match status {
            200 if !may_200 => violations.push(format!("{what}: INVALID TOKEN ACCEPTED (200)")),
            503 => {
                if !may_503 {
                    violations.push(format!("{what}: 503 outside its outage window"));
                }
                match o.retry_after.as_deref().map(str::parse::<u64>) {
                    Some(Ok(s)) if s >= 1 => {}
                    other => violations.push(format!("{what}: 503 with Retry-After {other:?}")),
                }
                if matches!(o.kind, Kind::Valid | Kind::Revoked | Kind::RevokedMidRun)
                    && o.end > timeline.redis_ready
                {
                    let after = o.end - timeline.redis_ready;
                    last_redis_503_after_ready =
                        Some(last_redis_503_after_ready.map_or(after, |l| l.max(after)));
                }
            }
            200 | 401 => {}
            other => violations.push(format!("{what}: status {other}")),
        }
        if must_200 && status != 200 {
            violations.push(format!("{what}: valid token refused with {status}"));
        }
    }

    // ------------------------------------------------------------------ the report
    let columns = ["200", "401", "503", "other", "error"];
    let mut report = String::new();
    report.push_str(&format!(
        "\n{:<18}{:>6}{}\n",
        "kind",
        "sent",
        columns
            .iter()
            .map(|c| format!("{c:>7}"))
            .collect::<String>()
    ));
    let mut totals = [0usize; 5];
    for (kind, row) in &table {
        let sent: usize = row.values().sum();
        report.push_str(&format!("{:<18}{sent:>6}", kind.name()));
        for (i, c) in columns.iter().enumerate() {
            let v = row.get(*c).copied().unwrap_or(0);
            totals[i] += v;
            report.push_str(&format!("{v:>7}"));
        }
        report.push('\n');
    }
    report.push_str(&format!("{:<18}{:>6}", "total", outcomes.len()));
    for t in totals {
        report.push_str(&format!("{t:>7}"));
    }
    report.push('\n');
    let f = |d: Duration| format!("{:.2}s", d.as_secs_f64());
    report.push_str(&format!(
        "\ntimeline: new key added {}, seen {}; mid-run revocation {}..{}; expiring tokens \
         expire {}\n          IdP 500 {}, hang {}, back {}, layer recovered {} \
         (max consecutive failures {})\n          Redis killed {}, restart {}..{} \
         (dbsize after {}), last 503 of a verified token {} after ready\n          old key \
         retired {}, gone from the layer {}\n",
        f(timeline.new_key_added),
        observed.new_key_seen.map_or("never".into(), f),
        f(timeline.revoke_begin),
        f(timeline.revoke_end),
        f(expiring_at),
        f(timeline.idp_fails),
        f(timeline.idp_hangs),
        f(timeline.idp_recovers),
        observed.idp_recovery_seen.map_or("never".into(), f),
        observed.max_consecutive_failures,
        f(timeline.redis_killed),
        f(timeline.redis_restart_begin),
        f(timeline.redis_ready),
        timeline.dbsize_after_restart,
        last_redis_503_after_ready.map_or("none".into(), f),
        f(timeline.old_key_retired),
        observed.old_key_gone_seen.map_or("never".into(), f),
    ));
    report.push_str(&format!(
        "windows: Redis {}..{}, IdP {}..{}\n",
        f(redis_window.start),
        f(redis_window.end),
        f(idp_window.start),
        f(idp_window.end)
    ));
    report.push_str(&format!(
        "remote: fetches {} (run {}; IdP hits {}), failures {}, rotations {}, unknown-kid \
         refreshes {}, throttled {}, negative-cache hits {}, negative cache now {} / max {}\n",
        stats.fetches,
        stats.fetches - fetches_before,
        idp.hits(),
        stats.failures,
        stats.rotations,
        stats.unknown_kid_refreshes,
        stats.unknown_kid_throttled,
        stats.negative_cache_hits,
        stats.negative_cache_len,
        observed.max_negative_cache,
    ));
    report.push_str(&format!(
        "cache: entries now {} / max sampled {} (cap {CACHE_ENTRIES}), hits {}, misses {}\n",
        cache.entries, observed.max_cache_entries, cache.hits, cache.misses
    ));
    report.push_str(&format!(
        "handler ran {} times; setup {}, load {}, kid flood {} ({:.0} req/s), {} samples\n",
        handled.count(),
        f(setup_took),
        f(load_took),
        f(flood_took),
        FLOOD as f64 / flood_took.as_secs_f64(),
        observed.samples
    ));
    println!("{report}");

    let shown: Vec<&String> = violations.iter().take(40).collect();
    assert!(
        violations.is_empty(),
        "{} violations (first 40):\n{}\n{report}",
        violations.len(),
        shown
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Every request was sent, within the time bound.
    assert_eq!(outcomes.len(), TOTAL + FLOOD, "load fell behind: {report}");
    // The handler ran exactly once per 200.
    assert_eq!(handled.count(), totals[0], "{report}");
    // Bounded memory.
    assert!(
        observed.max_cache_entries <= CACHE_ENTRIES && cache.entries <= CACHE_ENTRIES,
        "{report}"
    );
    assert!(
        observed.max_negative_cache <= NEGATIVE_CACHE_CAP
            && stats.negative_cache_len <= NEGATIVE_CACHE_CAP,
        "{report}"
    );
    // Few requests to the provider: at most one unknown-kid refresh per cooldown (600 random
    // kids were sent), plus the background refreshes (every ~2.5 s, every second while failing).
    let run_secs = run_took.as_secs_f64();
    let cooldowns = (run_secs / COOLDOWN.as_secs_f64()).ceil() as u64 + 1;
    assert!(stats.unknown_kid_refreshes <= cooldowns, "{report}");
    assert!(
        stats.fetches - fetches_before <= 3 * run_secs.ceil() as u64,
        "{report}"
    );

    // The faults really happened, and the layer noticed each of them.
    assert_eq!(
        timeline.dbsize_after_restart, 100,
        "revocations lost: {report}"
    );
    assert!(observed.max_consecutive_failures >= 1, "{report}");
    let recovered = observed
        .idp_recovery_seen
        .expect("the layer never fetched the keys again after the provider recovered");
    assert!(
        recovered <= timeline.idp_recovers + IDP_RECOVERY,
        "{report}"
    );
    assert!(observed.new_key_seen.is_some(), "{report}");
    assert!(observed.old_key_gone_seen.is_some(), "{report}");
    assert_eq!(
        remote.kids(),
        vec![KID_NEW.to_owned(), KID_STABLE.to_owned()]
    );
    let count = |kind: Kind, column: &str| {
        table
            .get(&kind)
            .and_then(|r| r.get(column))
            .copied()
            .unwrap_or(0)
    };
    // Each outage was exercised: valid and revoked tokens met the Redis outage (and got 503,
    // not 200), unknown kids met the failing provider; the mid-run revocation, the mid-run
    // expiry and the retirement each turned 200s into 401s.
    for (kind, column) in [
        (Kind::Valid, "503"),
        (Kind::Revoked, "503"),
        (Kind::UnknownKid, "503"),
        (Kind::RevokedMidRun, "200"),
        (Kind::RevokedMidRun, "401"),
        (Kind::ExpiringMidRun, "200"),
        (Kind::ExpiringMidRun, "401"),
        (Kind::OldKey, "200"),
        (Kind::OldKey, "401"),
    ] {
        assert!(
            count(kind, column) > 0,
            "no {} request got {column}: {report}",
            kind.name()
        );
    }
    assert!(
        outcomes.iter().any(|o| o.new_key && o.status == Some(200)),
        "no valid token of the new key was accepted: {report}"
    );
}
