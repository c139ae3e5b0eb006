//! A real `redis-server` for the tests (`redis`, `redis_replica`, `audit`,
//! `faults_under_load`): a child process on a free 127.0.0.1 port that can be killed
//! (`SIGKILL`: a crash) and started again on the same port.
//!
//! Needs `redis-server` on the PATH (`apt-get install -y redis-server`).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A `redis-server` child process on 127.0.0.1; killed on drop.
///
/// [`start`](RedisServer::start) runs it without persistence: a restart comes back empty.
/// [`start_persistent`](RedisServer::start_persistent) gives it its own data directory and an
/// append-only file fsynced on every write, so what was written survives a kill and restart,
/// as it would in a deployment that relies on it.
pub struct RedisServer {
    port: u16,
    /// The data directory of a persistent server (removed on drop); `None`: no persistence.
    dir: Option<PathBuf>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server without persistence on a free port and waits until it accepts
    /// connections.
    pub async fn start() -> RedisServer {
        RedisServer::launch(false).await
    }

    /// Starts a server with a durable append-only file in its own data directory on a free
    /// port and waits until it accepts connections.
    pub async fn start_persistent() -> RedisServer {
        RedisServer::launch(true).await
    }

    async fn launch(persistent: bool) -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = persistent.then(|| {
            let dir = std::env::temp_dir().join(format!(
                "tower-jwt-auth-redis-{}-{port}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            dir
        });
        let mut server = RedisServer {
            port,
            dir,
            child: None,
        };
        server.spawn().await;
        server
    }

    /// Spawns `redis-server` on `self.port` and waits for its "Ready to accept connections"
    /// log line (the server's own readiness signal, logged once the append-only file of a
    /// persistent server is loaded), for at most 10 s.
    pub async fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""]);
        match &self.dir {
            Some(dir) => command
                .args(["--appendonly", "yes"])
                .args(["--appendfsync", "always"])
                .args(["--dir", &dir.to_string_lossy()]),
            None => command
                .args(["--appendonly", "no"])
                .args(["--dir", &std::env::temp_dir().to_string_lossy()]),
        };
        let mut child = command
            .args(["--daemonize", "no"])
            .args(["--logfile", ""])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server on the PATH (apt-get install -y redis-server)");
        let stdout = child.stdout.take().unwrap();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
        let log = Arc::new(Mutex::new(String::new()));
        let log_writer = log.clone();
        // Reads the log until the server exits, so the pipe never fills up.
        std::thread::spawn(move || {
            let mut ready_tx = Some(ready_tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains("Ready to accept connections")
                    && let Some(tx) = ready_tx.take()
                {
                    let _ = tx.send(());
                }
                let mut log = log_writer.lock().unwrap();
                if log.len() < 16 * 1024 {
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        self.child = Some(child);
        match tokio::time::timeout(Duration::from_secs(10), ready_rx).await {
            Ok(Ok(())) => {}
            _ => panic!(
                "redis-server on port {} did not become ready:\n{}",
                self.port,
                log.lock().unwrap()
            ),
        }
    }

    /// Kills the server (SIGKILL: a crash, not a clean shutdown) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and starts it again on the same port: empty without persistence,
    /// with the data of the append-only file with it.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A plain connection for looking at the keys.
    pub async fn inspect(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// The number of keys in the database (`DBSIZE`), over a new connection.
    pub async fn dbsize(&self) -> u64 {
        let mut conn = self.inspect().await;
        redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap()
    }

    /// Whether `key` exists, over a new connection.
    pub async fn exists(&self, key: &str) -> bool {
        let mut conn = self.inspect().await;
        redis::cmd("EXISTS")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap()
    }

    /// The number stored at `key` (0 when there is none), over a new connection.
    pub async fn get_u64(&self, key: &str) -> u64 {
        let mut conn = self.inspect().await;
        let value: Option<u64> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        value.unwrap_or(0)
    }

    /// Sets a configuration parameter of the running server (`CONFIG SET`), such as
    /// `maxmemory` or `maxmemory-policy`.
    pub async fn config_set(&self, name: &str, value: impl std::fmt::Display) {
        let mut conn = self.inspect().await;
        redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg(value.to_string())
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
    }

    /// Empties every database (`FLUSHALL`): what a Redis that lost its data looks like.
    pub async fn flushall(&self) {
        let mut conn = self.inspect().await;
        redis::cmd("FLUSHALL")
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
    }

    /// Sends `signal` to the server process: `-STOP` stalls it (a VM pause, a swap storm: its
    /// clients and its own clock run on, and keys whose time ran out are gone once it
    /// answers again), `-CONT` resumes it.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("a running server").id();
        let status = Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// The data directory of a persistent server.
    pub fn data_dir(&self) -> &PathBuf {
        self.dir
            .as_ref()
            .expect("a persistent server (start_persistent)")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
