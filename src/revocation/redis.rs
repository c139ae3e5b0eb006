//! A revocation store in Redis, shared by a fleet of servers (feature `redis`).

use std::sync::LazyLock;
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{DEFAULT_RETENTION_MARGIN, Revocation, RevocationError, RevocationStore, TokenId};

/// Revocations kept in Redis, so that every server sharing the Redis sees a revocation as soon
/// as it is written.
///
/// Keys (under a prefix, default `jwt:`): `<prefix>jti:<jti>` with an absolute expiry of the
/// token's `exp` plus the retention margin (`SET … EXAT`), and
/// `<prefix>sub:<length of iss>:<iss>:<sub>` holding the subject's "not before" (the length
/// keeps `iss` and `sub` apart whatever characters they hold).
/// A check is one round trip (`EXISTS` and `GET` pipelined). Every operation has an overall
/// deadline (1 s by default, [`timeout`](Self::timeout)) that covers reconnect
/// attempts too, so an unreachable Redis turns into a quick 503 rather than a hung request;
/// the connection manager reconnects by itself once Redis is back.
///
/// Every handle keeps entries [`DEFAULT_RETENTION_MARGIN`](super::DEFAULT_RETENTION_MARGIN)
/// (5 minutes) past the expiry it is given, so all the servers sharing a Redis agree on how
/// long a revocation lasts whoever wrote it; a layer's leeway may not be longer.
///
/// Revocations live only as long as Redis keeps them: run it with persistence (AOF or RDB)
/// or replication. Failing closed covers the time Redis is down, not a Redis that comes back
/// empty — that would turn every revoked token valid again until its `exp`.
///
/// [`replicate`](Self::replicate) turns a handle into a [`ReplicatedRevocation`]: checks
/// answered from a copy in this server's memory (no round trip per request), which also
/// detects a Redis that came back empty and writes back what it holds.
///
/// [`ReplicatedRevocation`]: super::ReplicatedRevocation
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use tower_jwt_auth::{JwtAuthLayer, revocation::RedisRevocation};
///
/// #[derive(Clone, serde::Deserialize)]
/// struct MyClaims { sub: String }
///
/// let store = Arc::new(RedisRevocation::connect("redis://127.0.0.1:6379/").await?);
/// let auth = JwtAuthLayer::<MyClaims>::builder()
///     .hs256(b"an example secret that is 32 bytes+")
///     .revocation(store)
///     .build()?;
/// # let _ = auth; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisRevocation {
    /// Opens the replica's dedicated connection ([`replicate`](Self::replicate)).
    pub(super) client: redis::Client,
    pub(super) conn: ConnectionManager,
    pub(super) prefix: String,
    timeout: Duration,
}

impl std::fmt::Debug for RedisRevocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRevocation")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The latest `EXAT` Redis takes: 9999-12-31T23:59:59Z.
pub(super) const MAX_EXAT: u64 = 253_402_300_799;

/// The largest "not before" kept: the script's Lua numbers print integers exactly only up to
/// 14 digits. It is far beyond any `iat` the layer accepts (a future `iat` is refused).
pub(super) const MAX_NOT_BEFORE: u64 = 99_999_999_999_999;

/// Raises a subject's "not before" and its retention, never lowers either, atomically.
/// `EXPIRETIME` (Redis 7) is -2 for a missing key and -1 for one without expiry, which is
/// later than any date: a record without expiry stays without expiry.
const REVOKE_SUBJECT: &str = r"
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local before = math.max(cur, tonumber(ARGV[1]))
local current = redis.call('EXPIRETIME', KEYS[1])
if current == -1 then
  redis.call('SET', KEYS[1], before)
else
  redis.call('SET', KEYS[1], before, 'EXAT', math.max(tonumber(ARGV[2]), current))
end
return before
";

/// [`REVOKE_SUBJECT`], hashed once: the hash names it in `EVALSHA`.
static REVOKE_SUBJECT_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(REVOKE_SUBJECT));

/// Revokes a `jti`: its record's expiry only rises, and a record without expiry keeps none
/// (`EXPIRETIME` as for [`REVOKE_SUBJECT`]). Any value of a `jti` record revokes it.
const REVOKE_JTI: &str = r"
local current = redis.call('EXPIRETIME', KEYS[1])
if current == -1 then
  redis.call('SET', KEYS[1], 1)
else
  redis.call('SET', KEYS[1], 1, 'EXAT', math.max(tonumber(ARGV[1]), current))
end
return 1
";

/// [`REVOKE_JTI`], hashed once.
static REVOKE_JTI_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(REVOKE_JTI));

impl RedisRevocation {
    /// Connects to `url` (`redis://host:port/db`), with 1 s connection and response timeouts.
    pub async fn connect(url: &str) -> Result<RedisRevocation, RevocationError> {
        let client = redis::Client::open(url).map_err(err)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            // Reconnect attempts while Redis is away stay short; requests never wait for them
            // beyond the operation deadline anyway.
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(err)?;
        Ok(RedisRevocation {
            client,
            conn,
            prefix: "jwt:".into(),
            timeout: Duration::from_secs(1),
        })
    }

    /// The absolute expiry of an entry given `expires_at`: never in the past (`EXAT` refuses
    /// that), and at most the end of year 9999 (a larger one is refused too, and would leave a
    /// token with an absurd `exp` unrevocable).
    pub(super) fn kept_until(expires_at: u64) -> u64 {
        super::kept_until(expires_at, DEFAULT_RETENTION_MARGIN).clamp(unix_now() + 1, MAX_EXAT)
    }

    /// Sets the deadline of each operation, reconnects included (default 1 s).
    pub fn timeout(mut self, timeout: Duration) -> RedisRevocation {
        self.timeout = timeout;
        self
    }

    /// Runs `op` under the deadline.
    pub(super) async fn deadline<T>(
        &self,
        op: impl std::future::Future<Output = Result<T, RevocationError>>,
    ) -> Result<T, RevocationError> {
        tokio::time::timeout(self.timeout, op)
            .await
            .unwrap_or_else(|_| Err(RevocationError("redis did not answer in time".into())))
    }

    /// Puts the keys under `prefix` instead of `jwt:`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> RedisRevocation {
        self.prefix = prefix.into();
        self
    }

    pub(super) fn jti_key(&self, jti: &str) -> String {
        format!("{}jti:{jti}", self.prefix)
    }

    pub(super) fn sub_key(&self, iss: Option<&str>, sub: &str) -> String {
        let iss = iss.unwrap_or("");
        format!("{}sub:{}:{iss}:{sub}", self.prefix, iss.len())
    }
}

pub(super) fn err(e: redis::RedisError) -> RevocationError {
    RevocationError(e.to_string())
}

impl Revocation for RedisRevocation {
    fn is_revoked<'a>(
        &'a self,
        token: TokenId<'a>,
    ) -> BoxFuture<'a, Result<bool, RevocationError>> {
        let op = async move {
            let mut conn = self.conn.clone();
            let mut pipe = redis::pipe();
            pipe.exists(token.jti.map(|j| self.jti_key(j)).unwrap_or_default());
            pipe.get(
                token
                    .sub
                    .map(|s| self.sub_key(token.iss, s))
                    .unwrap_or_default(),
            );
            let (jti_revoked, not_before): (bool, Option<u64>) =
                pipe.query_async(&mut conn).await.map_err(err)?;
            let jti_revoked = jti_revoked && token.jti.is_some();
            let sub_revoked = token.sub.is_some()
                && not_before.is_some_and(|before| token.iat.is_none_or(|iat| iat < before));
            Ok(jti_revoked || sub_revoked)
        };
        async move { self.deadline(op).await }.boxed()
    }

    fn retention_margin(&self) -> Duration {
        DEFAULT_RETENTION_MARGIN
    }
}

impl RevocationStore for RedisRevocation {
    fn revoke<'a>(
        &'a self,
        jti: &'a str,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<(), RevocationError>> {
        let op = async move {
            if super::kept_until(expires_at, DEFAULT_RETENTION_MARGIN) <= unix_now() {
                return Ok(());
            }
            let mut conn = self.conn.clone();
            REVOKE_JTI_SCRIPT
                .key(self.jti_key(jti))
                .arg(Self::kept_until(expires_at))
                .invoke_async::<()>(&mut conn)
                .await
                .map_err(err)
        };
        async move { self.deadline(op).await }.boxed()
    }

    fn revoke_subject<'a>(
        &'a self,
        iss: Option<&'a str>,
        sub: &'a str,
        issued_before: u64,
        keep_until: u64,
    ) -> BoxFuture<'a, Result<(), RevocationError>> {
        let op = async move {
            if super::kept_until(keep_until, DEFAULT_RETENTION_MARGIN) <= unix_now() {
                return Ok(());
            }
            let mut conn = self.conn.clone();
            REVOKE_SUBJECT_SCRIPT
                .key(self.sub_key(iss, sub))
                .arg(issued_before.min(MAX_NOT_BEFORE))
                .arg(Self::kept_until(keep_until))
                .invoke_async::<u64>(&mut conn)
                .await
                .map(|_| ())
                .map_err(err)
        };
        async move { self.deadline(op).await }.boxed()
    }

    fn use_once<'a>(
        &'a self,
        jti: &'a str,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<bool, RevocationError>> {
        let op = async move {
            let mut conn = self.conn.clone();
            let set: Option<String> = redis::cmd("SET")
                .arg(self.jti_key(jti))
                .arg(1)
                .arg("NX")
                .arg("EXAT")
                .arg(Self::kept_until(expires_at))
                .query_async(&mut conn)
                .await
                .map_err(err)?;
            Ok(set.is_some())
        };
        async move { self.deadline(op).await }.boxed()
    }
}

/// Whole seconds since the epoch. `EXAT` is read on Redis's clock, which NTP keeps in step
/// with this one.
pub(super) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
