//! A real, certified OpenID provider for the tests (`oidc_provider`, `oidc_layer`): the npm
//! package `oidc-provider` (pinned in tests/oidc/package.json), started on 127.0.0.1 by
//! `node tests/oidc/server.mjs`.
//!
//! It needs Node.js (18 or later) and the harness's packages: run `npm ci --prefix tests/oidc`
//! once. Without them the tests fail with that instruction; they never skip.
//!
//! The harness issues JWT access tokens (RFC 9068, `typ` `at+jwt`, `aud` [`AUDIENCE`]) through
//! the client_credentials grant for four resource indicators (RFC 8707, [`RESOURCES`]), signed
//! RS256, PS256, ES256 and EdDSA; `POST /__rotate` makes a new generation of keys the signing
//! keys, keeps the previous one published and drops older ones (see tests/oidc/server.mjs).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use serde_json::Value;
use tower_jwt_auth::Algorithm;

/// The client registered in the harness.
pub const CLIENT_ID: &str = "test-client";
/// Its secret (client_secret_basic).
pub const CLIENT_SECRET: &str = "test-secret";
/// The `aud` of every access token the harness issues.
pub const AUDIENCE: &str = "urn:test:api";
/// Resource indicators, by the algorithm their tokens are signed with.
pub const RESOURCES: [(&str, Algorithm); 4] = [
    ("urn:test:api", Algorithm::RS256),
    ("urn:test:api:ps256", Algorithm::PS256),
    ("urn:test:api:es256", Algorithm::ES256),
    ("urn:test:api:eddsa", Algorithm::EdDSA),
];

/// A running `oidc-provider`; killed when dropped.
pub struct OidcProvider {
    child: Child,
    /// Kept open: the harness exits when its standard input closes.
    _stdin: ChildStdin,
    /// `http://127.0.0.1:<port>`, with no trailing slash.
    pub issuer: String,
}

impl OidcProvider {
    /// Starts the harness on a free port and waits (at most 60 s) for its issuer URL.
    pub fn start() -> OidcProvider {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
        assert!(
            dir.join("node_modules/oidc-provider/package.json").exists(),
            "the OpenID provider harness is not installed: run `npm ci --prefix tests/oidc` \
             (needs Node.js 18 or later), then run the tests again"
        );
        let mut child = Command::new("node")
            .arg(dir.join("server.mjs"))
            .arg("0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run `node` ({e}): install Node.js 18 or later for this test")
            });
        let stdin = child.stdin.take().unwrap();
        let line = first_line(child.stdout.take().unwrap(), |_| true);
        let issuer = line.trim().to_owned();
        if !issuer.starts_with("http://127.0.0.1:") {
            let _ = child.kill();
            panic!(
                "the OpenID provider harness did not start (printed {line:?}); see its stderr above"
            );
        }
        OidcProvider {
            child,
            _stdin: stdin,
            issuer,
        }
    }

    /// Rotates the signing keys; returns the new kids (`rsa-<n>`, `ec-<n>`, `ed-<n>`). The
    /// previous generation stays published, older ones are dropped.
    pub async fn rotate(&self) -> Vec<String> {
        let response: Value = reqwest::Client::new()
            .post(format!("{}/__rotate", self.issuer))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        serde_json::from_value(response["kids"].clone()).unwrap()
    }

    /// The provider's JWKS, fetched directly.
    pub async fn jwks(&self) -> JwkSet {
        reqwest::get(format!("{}/jwks", self.issuer))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// An access token (client_credentials, client_secret_basic) for `resource` (one of
    /// [`RESOURCES`]): a JWT with `iss` = the issuer, `aud` = [`AUDIENCE`], `typ` = `at+jwt`,
    /// `client_id`, `scope` = `api:read`, five minutes of lifetime.
    pub async fn token(&self, resource: &str) -> String {
        let response = reqwest::Client::new()
            .post(format!("{}/token", self.issuer))
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[
                ("grant_type", "client_credentials"),
                ("resource", resource),
                ("scope", "api:read"),
            ])
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert!(
            status.is_success(),
            "token endpoint answered {status}: {body}"
        );
        assert_eq!(body["token_type"], "Bearer");
        body["access_token"].as_str().unwrap().to_owned()
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first line of `stdout` that `wanted` accepts (at most 60 s; empty if none), read on a
/// thread that then keeps draining the pipe so the child never blocks on it.
pub fn first_line(
    stdout: impl std::io::Read + Send + 'static,
    wanted: impl Fn(&str) -> bool + Send + 'static,
) -> String {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            match stdout.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) if wanted(&line) => {
                    let _ = tx.send(line.clone());
                    break;
                }
                Ok(_) => {}
            }
        }
        drop(tx);
        let _ = std::io::copy(&mut stdout, &mut std::io::sink());
    });
    rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default()
}
