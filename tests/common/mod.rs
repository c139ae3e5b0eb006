//! Helpers shared by the integration tests: keys, token crafting, real servers on 127.0.0.1.
#![allow(dead_code)]

#[cfg(feature = "axum")]
pub mod api;
#[cfg(feature = "remote")]
pub mod jwks_server;
#[cfg(feature = "remote")]
pub mod oidc;
#[cfg(feature = "redis")]
pub mod redis_server;
pub mod sessions;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::EncodingKey;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tower_jwt_auth::Algorithm;

pub const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-secret";
pub const ISSUER: &str = "https://id.test";
pub const AUDIENCE: &str = "test-api";

/// The claims type the tests' handlers receive.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TestClaims {
    pub sub: String,
    #[serde(default)]
    pub roles: Vec<String>,
}

pub fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR")))
        .expect("test data file")
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Installs the jsonwebtoken process default, which the *tests* use to sign crafted tokens
/// (the crate itself never reads that global; tests/backend.rs checks so without it).
pub fn install_provider() {
    #[cfg(feature = "aws-lc-rs")]
    let provider = &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
    #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc-rs")))]
    let provider = &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
    let _ = provider.install_default();
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The crypto backend's name for `alg`, for calls into jsonwebtoken.
pub fn jwt(alg: Algorithm) -> jsonwebtoken::Algorithm {
    alg.name()
        .parse()
        .expect("every Algorithm is one of jsonwebtoken's")
}

/// Signs `header` and `claims` exactly as given (any `alg`, any extra header members).
pub fn sign_raw(header: &Value, claims: &Value, alg: Algorithm, key: &EncodingKey) -> String {
    install_provider();
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), key, jwt(alg)).expect("sign");
    format!("{input}.{sig}")
}

pub fn hs256_key() -> EncodingKey {
    EncodingKey::from_secret(SECRET)
}

pub fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(&data("rsa_2048_private.pem")).unwrap()
}

/// Claims that pass the default test policy (issuer, audience, one hour left).
pub fn good_claims() -> Value {
    json!({ "sub": "alice", "roles": ["admin"], "iss": ISSUER, "aud": AUDIENCE,
            "iat": now(), "exp": now() + 3600 })
}

/// A valid HS256 token for the default policy, with `overrides` merged into the claims
/// (a `null` removes the claim).
pub fn hs256_token(overrides: Value) -> String {
    let mut claims = good_claims();
    merge(&mut claims, overrides);
    sign_raw(
        &json!({"alg": "HS256", "typ": "JWT"}),
        &claims,
        Algorithm::HS256,
        &hs256_key(),
    )
}

pub fn merge(claims: &mut Value, overrides: Value) {
    if let (Value::Object(c), Value::Object(o)) = (claims, overrides) {
        for (k, v) in o {
            if v.is_null() {
                c.remove(&k);
            } else {
                c.insert(k, v);
            }
        }
    }
}

/// Serves an axum router on 127.0.0.1 (a fresh port); returns its address.
pub async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    addr
}

/// A tracing `MakeWriter` that appends everything to a shared buffer.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}
