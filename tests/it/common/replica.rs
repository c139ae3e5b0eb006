//! What the tests of `ReplicatedRevocation` share: stores on a real `redis-server`, polls with
//! a deadline, and a copy of a persistent server's data (a backup).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tower_jwt_auth::revocation::{
    RedisRevocation, ReplicatedRevocation, Revocation, RevocationStore, TokenId,
};

use super::redis_server::RedisServer;

/// A replicated store on `redis`, with the default staleness bound.
pub async fn replica(redis: &RedisServer) -> Arc<ReplicatedRevocation> {
    Arc::new(connect(redis).await)
}

/// A replicated store on `redis` failing closed once its feed is `bound` old.
pub async fn bounded_replica(redis: &RedisServer, bound: Duration) -> Arc<ReplicatedRevocation> {
    Arc::new(connect(redis).await.max_staleness(bound))
}

async fn connect(redis: &RedisServer) -> ReplicatedRevocation {
    RedisRevocation::connect(&redis.url())
        .await
        .unwrap()
        .replicate()
        .await
        .unwrap()
}

/// The identity of a token that has only a `jti`.
pub fn jti(j: &str) -> TokenId<'_> {
    TokenId::new(None, Some(j), None, None)
}

/// `store`'s answer for `id`; `None` while it fails closed.
pub async fn revoked(store: &ReplicatedRevocation, id: TokenId<'_>) -> Option<bool> {
    store.is_revoked(id).await.ok()
}

/// Polls `f` every 10 ms; true as soon as it returns true, false if it never did within.
pub async fn becomes_true<F, Fut>(within: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if f().await {
            return true;
        }
        if started.elapsed() >= within {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Copies the directory `from` to `to` (replacing it), attributes kept.
pub fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

/// A replicated store whose feed runs on a runtime of its own thread, which the test can
/// freeze: a server that cannot act (a paused process), while its copy still answers.
pub struct Freezable {
    /// The store, shared with the test.
    pub store: Arc<ReplicatedRevocation>,
    /// Each receiver sent freezes the runtime until its sender is dropped.
    freeze: tokio::sync::mpsc::UnboundedSender<(
        tokio::sync::oneshot::Sender<()>,
        std::sync::mpsc::Receiver<()>,
    )>,
}

impl Freezable {
    /// A store on `redis` on a runtime of its own thread.
    pub async fn start(redis: &RedisServer) -> Freezable {
        Freezable::spawn(redis.url(), None).await
    }

    /// As [`start`](Self::start), but the store's shared connection (the one `use_once`,
    /// `revoke` and `is_revoked_consistent` use) runs on the caller's runtime, so freezing
    /// stops the feed only: a server whose feed has not read yet (in its reconnect backoff
    /// after Redis came back, 1 s at most) while its requests are served.
    pub async fn start_feed_only(redis: &RedisServer) -> Freezable {
        let source = RedisRevocation::connect(&redis.url()).await.unwrap();
        Freezable::spawn(redis.url(), Some(source)).await
    }

    async fn spawn(url: String, source: Option<RedisRevocation>) -> Freezable {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (freeze, mut frozen) = tokio::sync::mpsc::unbounded_channel::<(
            tokio::sync::oneshot::Sender<()>,
            std::sync::mpsc::Receiver<()>,
        )>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let source = match source {
                    Some(source) => source,
                    None => RedisRevocation::connect(&url).await.unwrap(),
                };
                let store = source.replicate().await.unwrap();
                let _ = ready_tx.send(Arc::new(store));
                while let Some((frozen_tx, until)) = frozen.recv().await {
                    let _ = frozen_tx.send(());
                    // Blocks the runtime's only thread: nothing on it runs meanwhile.
                    let _ = until.recv();
                }
            });
        });
        Freezable {
            store: ready_rx.await.unwrap(),
            freeze,
        }
    }

    /// Freezes the runtime until the returned sender is dropped.
    pub async fn freeze(&self) -> std::sync::mpsc::Sender<()> {
        let (thaw, until) = std::sync::mpsc::channel();
        let (frozen_tx, frozen_rx) = tokio::sync::oneshot::channel();
        self.freeze.send((frozen_tx, until)).unwrap();
        frozen_rx.await.unwrap();
        thaw
    }
}

/// The restore marker under the default prefix.
pub const MARKER: &str = "jwt:restoring";
/// The counter of entries ever appended to the stream under the default prefix (one per
/// revocation, one per batch of records written back).
pub const COUNTER: &str = "jwt:seq";

/// The number of entries written back to Redis (each batch written back is followed by a `w`
/// entry in the stream, with `n`, the number of its records), as far as the stream holds them.
pub async fn written_back(redis: &RedisServer) -> usize {
    let mut conn = redis.inspect().await;
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg("jwt:feed")
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    entries
        .ids
        .iter()
        .filter(|e| e.get::<String>("t").as_deref() == Some("w"))
        .filter_map(|e| e.get::<usize>("n"))
        .sum()
}

/// The restore marker's value, if any.
pub async fn marker(redis: &RedisServer) -> Option<String> {
    let mut conn = redis.inspect().await;
    redis::cmd("GET")
        .arg(MARKER)
        .query_async(&mut conn)
        .await
        .unwrap()
}

/// Whether `store` has finished restoring: its consistent check, which fails while Redis is
/// known to lack entries or the copy is stale, answers for a `jti` never revoked.
pub async fn restored(store: &ReplicatedRevocation) -> bool {
    store.is_revoked_consistent(jti("never-revoked")).await.ok() == Some(false)
}

/// Waits up to `patience` until every store of `fleet` has finished restoring and the marker
/// is gone.
pub async fn restore_ended(
    redis: &RedisServer,
    fleet: &[&ReplicatedRevocation],
    patience: Duration,
) -> bool {
    becomes_true(patience, || async {
        for store in fleet {
            if !restored(store).await {
                return false;
            }
        }
        !redis.exists(MARKER).await
    })
    .await
}

/// The number of `jti` records in Redis.
pub async fn jti_records(redis: &RedisServer) -> usize {
    let mut conn = redis.inspect().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("jwt:jti:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.len()
}

/// Writes `count` `jti` records `<name>-<i>` straight into Redis (the documented layout), in
/// pipelines: a large revoked set without a round trip per revocation.
pub async fn seed_records(redis: &RedisServer, name: &str, count: usize, exat: u64) {
    let mut conn = redis.inspect().await;
    for chunk in (0..count).collect::<Vec<_>>().chunks(5000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.cmd("SET")
                .arg(format!("jwt:jti:{name}-{i}"))
                .arg(1)
                .arg("EXAT")
                .arg(exat)
                .ignore();
        }
        pipe.query_async::<()>(&mut conn).await.unwrap();
    }
}

/// Whether `store` refuses every `<name>-<i>`, `i < count`.
pub async fn holds_all(store: &ReplicatedRevocation, name: &str, count: usize) -> bool {
    for i in 0..count {
        if revoked(store, jti(&format!("{name}-{i}"))).await != Some(true) {
            return false;
        }
    }
    true
}

/// Rewinds Redis to the state it had when its counter was `counter`, keeping the epoch: the
/// `lost` records and every stream entry numbered above `counter` are gone and the counter
/// is `counter` again, in one step (what a failover to a replica that had not received the
/// last writes looks like to every client).
pub async fn rewind_to(redis: &RedisServer, counter: u64, lost: &[&str]) {
    let mut conn = redis.inspect().await;
    let mut script = redis::cmd("EVAL");
    script
        .arg(
            r"
for i = 3, #KEYS do redis.call('DEL', KEYS[i]) end
for _, e in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do
  local f = e[2]
  for i = 1, #f, 2 do
    if f[i] == 'seq' and tonumber(f[i + 1]) > tonumber(ARGV[1]) then
      redis.call('XDEL', KEYS[1], e[1])
    end
  end
end
redis.call('SET', KEYS[2], ARGV[1])
return 1
",
        )
        .arg(2 + lost.len())
        .arg("jwt:feed")
        .arg(COUNTER);
    for jti in lost {
        script.arg(format!("jwt:jti:{jti}"));
    }
    script.arg(counter);
    script.query_async::<()>(&mut conn).await.unwrap();
}

/// Spends `t0` … `t{n - 1}` through `store`, in order, on a task of its own: the numbers of the
/// tokens it spent first, and the errors.
pub fn spend_all(
    store: Arc<ReplicatedRevocation>,
    n: usize,
    exp: u64,
) -> tokio::task::JoinHandle<(Vec<usize>, Vec<String>)> {
    tokio::spawn(async move {
        let mut won = Vec::new();
        let mut errors = Vec::new();
        for i in 0..n {
            match store.use_once(&format!("t{i}"), exp).await {
                Ok(true) => won.push(i),
                Ok(false) => {}
                Err(e) => errors.push(format!("t{i}: {e}")),
            }
        }
        (won, errors)
    })
}
