//! Interoperability with a real, certified OpenID provider: the npm package `oidc-provider`
//! (pinned in tests/oidc/package.json), started on 127.0.0.1 by `node tests/oidc/server.mjs`.
//!
//! It needs Node.js (18 or later) and the harness's packages: run `npm ci --prefix tests/oidc`
//! once. Without them these tests fail with that instruction; they never skip.
//!
//! The provider issues JWT access tokens (RFC 9068) through the client_credentials grant for
//! resource indicators (RFC 8707), signed RS256, PS256, ES256 or EdDSA; `POST /__rotate` on
//! the harness rotates its signing keys (see tests/oidc/server.mjs).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use tower_jwt_auth::keys::remote::RemoteJwks;

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
    /// Starts the harness on a free port and waits (at most 30 s) for its issuer URL.
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
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut stdout = BufReader::new(stdout);
            let mut line = String::new();
            let _ = stdout.read_line(&mut line);
            let _ = tx.send(line);
            // Keep draining, so the harness never blocks on a full pipe.
            let _ = std::io::copy(&mut stdout, &mut std::io::sink());
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
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
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An access token from the provider at `issuer` (client_credentials, client_secret_basic)
/// for `resource` (one of [`RESOURCES`]): a JWT with `iss` = issuer, `aud` = [`AUDIENCE`],
/// `typ` = `at+jwt`, `client_id`, `scope` = `api:read`, five minutes of lifetime.
pub async fn oidc_token(issuer: &str, resource: &str) -> String {
    let response = reqwest::Client::new()
        .post(format!("{issuer}/token"))
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

/// The decoded JOSE header of a compact JWS.
fn header(token: &str) -> Value {
    let b64 = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(b64).unwrap()).unwrap()
}

/// jsonwebtoken's process default, which `jsonwebtoken::decode` below uses (the crate under
/// test never reads it).
fn install_provider() {
    #[cfg(feature = "aws-lc-rs")]
    let provider = &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
    #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc-rs")))]
    let provider = &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
    let _ = provider.install_default();
}

/// Checks `token`'s signature and claims with the key the provider publishes for its `kid`,
/// and that the remote key set has that `kid`. Returns the claims.
async fn check_token(
    provider: &OidcProvider,
    keys: &RemoteJwks,
    token: &str,
    alg: Algorithm,
) -> Value {
    install_provider();
    let header = header(token);
    assert_eq!(header["alg"], format!("{alg:?}"));
    assert_eq!(header["typ"], "at+jwt");
    let kid = header["kid"].as_str().expect("a kid");
    assert!(keys.contains_kid(kid), "{kid} not in {:?}", keys.kids());

    let jwks = provider.jwks().await;
    let jwk = jwks.find(kid).expect("the provider publishes the kid");
    let mut validation = Validation::new(alg);
    validation.set_audience(&[AUDIENCE]);
    validation.set_issuer(&[&provider.issuer]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .unwrap_or_else(|e| panic!("{alg:?} token does not verify: {e}"))
        .claims
}

#[tokio::test]
async fn discovery_and_tokens_of_a_certified_openid_provider() {
    let provider = OidcProvider::start();
    let keys = RemoteJwks::from_issuer(&provider.issuer)
        .allow_http_for_loopback()
        .build()
        .await
        .unwrap();
    assert_eq!(keys.issuer(), Some(provider.issuer.as_str()));
    assert_eq!(
        keys.jwks_uri(),
        Some(format!("{}/jwks", provider.issuer).as_str())
    );
    // The provider's RSA, P-256 and Ed25519 keys (published without `alg`) are all usable.
    assert_eq!(keys.kids(), ["ec-1", "ed-1", "rsa-1"]);
    assert_eq!(keys.stats().skipped_keys, 0);

    for (resource, alg) in RESOURCES {
        let token = oidc_token(&provider.issuer, resource).await;
        let claims = check_token(&provider, &keys, &token, alg).await;
        assert_eq!(claims["client_id"], CLIENT_ID);
        assert_eq!(claims["scope"], "api:read");
    }
    assert_eq!(keys.stats().fetches, 1);
}

#[tokio::test]
async fn a_key_rotation_at_the_provider_is_followed() {
    let provider = OidcProvider::start();
    let keys = RemoteJwks::from_issuer(&provider.issuer)
        .allow_http_for_loopback()
        .refresh_cooldown(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    let before = oidc_token(&provider.issuer, "urn:test:api").await;
    assert_eq!(header(&before)["kid"], "rsa-1");

    assert_eq!(provider.rotate().await, ["rsa-2", "ec-2", "ed-2"]);
    let after = oidc_token(&provider.issuer, "urn:test:api").await;
    assert_eq!(header(&after)["kid"], "rsa-2");
    assert!(!keys.contains_kid("rsa-2"));

    // What the layer does for a token with an unknown kid.
    tokio::time::sleep(Duration::from_millis(100)).await; // past the build's cooldown
    assert_eq!(keys.resolve_kid("rsa-2").await, Ok(true));
    check_token(&provider, &keys, &after, Algorithm::RS256).await;
    // During the rotation the previous keys stay published, so older tokens still verify.
    check_token(&provider, &keys, &before, Algorithm::RS256).await;
    assert_eq!(keys.generation(), 2);

    // A second rotation retires generation 1.
    provider.rotate().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(keys.resolve_kid("rsa-3").await, Ok(true));
    assert_eq!(
        keys.kids(),
        ["ec-2", "ec-3", "ed-2", "ed-3", "rsa-2", "rsa-3"]
    );
    assert!(!keys.contains_kid("rsa-1"));
    let stats = keys.stats();
    assert_eq!(
        (stats.rotations, stats.unknown_kid_refreshes, stats.failures),
        (2, 2, 0)
    );
}

#[tokio::test]
async fn the_provider_issuer_must_match_exactly() {
    let provider = OidcProvider::start();
    // Discovery §4.3: "http://127.0.0.1:port/" is not "http://127.0.0.1:port".
    let err = RemoteJwks::from_issuer(format!("{}/", provider.issuer))
        .allow_http_for_loopback()
        .build()
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("is not the configured issuer"),
        "{err}"
    );
    // And the provider's plain-http issuer is refused unless loopback http is allowed.
    assert!(
        RemoteJwks::from_issuer(&provider.issuer)
            .build()
            .await
            .is_err()
    );
}
