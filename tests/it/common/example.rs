//! The crate's examples run as black boxes: built with the features of this test binary (so
//! the library is not built again with others), started with an environment, and found by
//! their `listening on <addr>` line.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// What the resource_server example reads from its environment: none of it may come from this
/// process, so a test clears them all and sets its own.
pub const RESOURCE_SERVER_ENV: [&str; 8] = [
    "OIDC_ISSUER",
    "JWKS_URL",
    "JWT_ISSUER",
    "JWT_AUDIENCE",
    "JWT_TOKEN_TYPE",
    "JWT_PROVIDER",
    "RESOURCE_URL",
    "JWT_DPOP",
];

/// The features this test binary was built with.
fn features() -> Vec<&'static str> {
    [
        (cfg!(feature = "aws-lc-rs"), "aws-lc-rs"),
        (cfg!(feature = "rust-crypto"), "rust-crypto"),
        (cfg!(feature = "axum"), "axum"),
        (cfg!(feature = "issue"), "issue"),
        (cfg!(feature = "tonic"), "tonic"),
        (cfg!(feature = "tracing"), "tracing"),
        (cfg!(feature = "remote"), "remote"),
        (cfg!(feature = "redis"), "redis"),
        (cfg!(feature = "cache"), "cache"),
        (cfg!(feature = "test-util"), "test-util"),
        (cfg!(feature = "metrics"), "metrics"),
        (cfg!(feature = "dpop"), "dpop"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect()
}

/// Builds `examples/<name>.rs` (`cargo build --example <name>`) and returns the path of its
/// executable. Blocking: call it from `spawn_blocking` in async tests.
pub fn build(name: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    // What `cargo test` sets for this process describes this crate, not the build: passed on,
    // it would make build scripts that watch those variables (ring's, for one) look dirty, so
    // every run would rebuild them.
    for (var, _) in std::env::vars_os() {
        let Some(var) = var.to_str() else { continue };
        if var.starts_with("CARGO_PKG_")
            || var.starts_with("CARGO_MANIFEST_")
            || var.starts_with("CARGO_CRATE_")
            || var.starts_with("CARGO_BIN_")
            || matches!(
                var,
                "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "CARGO_RUSTC_CURRENT_DIR"
                    | "OUT_DIR"
            )
        {
            command.env_remove(var);
        }
    }
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "build",
            "--example",
            name,
            "--message-format=json-render-diagnostics",
            "--no-default-features",
            "--features",
        ])
        .arg(features().join(","));
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .expect("run cargo");
    assert!(
        output.status.success(),
        "cargo build --example {name} failed"
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo reported the example's executable")
}

/// The example at `binary` with `BIND_ADDR=127.0.0.1:0`, none of the variables `cleared` of
/// this process, and `env`.
fn command(binary: &Path, cleared: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(binary);
    for var in cleared {
        command.env_remove(var);
    }
    command
        .env("BIND_ADDR", "127.0.0.1:0")
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    command
}

/// A running example; killed when dropped.
pub struct Example {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Example {
    /// Runs the example (see [`command`]) and waits for its `listening on <addr>` line.
    pub fn start(binary: &Path, cleared: &[&str], env: &[(&str, &str)]) -> Example {
        let mut child = command(binary, cleared, env)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run the example");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        let addr = loop {
            line.clear();
            if stdout.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = child.kill();
                panic!("the example did not start: {:?}", child.wait());
            }
            if let Some(addr) = line.split("listening on ").nth(1) {
                break addr
                    .trim()
                    .parse()
                    .expect("an address after `listening on`");
            }
        };
        // Keep draining its stdout, so the example never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Example { child, addr }
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the example expecting it to refuse to start; returns its stderr.
pub fn refuses_to_start(binary: &Path, cleared: &[&str], env: &[(&str, &str)]) -> String {
    let output = command(binary, cleared, env)
        .output()
        .expect("run the example");
    assert!(!output.status.success(), "started with {env:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("listening on"), "{stdout}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}
