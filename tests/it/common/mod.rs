//! The harness every test module uses: the test keys and policy, token crafting
//! ([`hs256_token`], [`sign_raw`], [`sign_text`], [`sign_jwt`], …), requests through a layer in
//! process ([`oneshot`]), real servers and clients on 127.0.0.1 ([`server`], [`api`]), a JWKS
//! server, `redis-server`, an OpenID provider, and a capturing tracing writer.
#![allow(dead_code)]

#[cfg(feature = "axum")]
pub mod api;
#[cfg(feature = "dpop")]
pub mod dpop;
pub mod example;
pub mod grpc;
#[cfg(feature = "remote")]
pub mod jwks_server;
#[cfg(feature = "remote")]
pub mod oidc;
pub mod oneshot;
#[cfg(feature = "redis")]
pub mod redis_server;
#[cfg(feature = "redis")]
pub mod replica;
pub mod server;
pub mod sessions;

pub use oneshot::{
    Outcome, assert_accepted, assert_invalid_token, assert_rejected, bearer, send, send_bearer,
};
// Some of these serve only modules that a feature turns on.
#[allow(unused_imports)]
pub use server::{
    Hits, Reply, Seen, Subject, claims_json, client, fetch, get_with, me_server, see, serve,
    subject, subject_handler, www_authenticate,
};

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::EncodingKey;
use jsonwebtoken::jwk::Jwk;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tower_jwt_auth::issue::TokenIssuer;
use tower_jwt_auth::{Algorithm, JwtAuthBuilder, JwtAuthLayer};

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

// ---------------------------------------------------------------------------------------------
// The test policy

/// A builder with the test policy: HS256 with [`SECRET`], [`ISSUER`] and [`AUDIENCE`].
pub fn hs256_builder<C>() -> JwtAuthBuilder<C> {
    JwtAuthLayer::<C>::builder()
        .hs256(SECRET)
        .issuer(ISSUER)
        .audience(AUDIENCE)
}

/// [`hs256_builder`], built.
pub fn hs256_layer<C>() -> JwtAuthLayer<C> {
    hs256_builder().build().unwrap()
}

/// The test policy for RFC 9068 access tokens: [`hs256_builder`] with `typ` `at+jwt` required.
pub fn access_layer() -> JwtAuthLayer<TestClaims> {
    hs256_builder().token_type("at+jwt").build().unwrap()
}

/// A `TokenIssuer` of access tokens for the test policy: HS256 with [`SECRET`], [`ISSUER`]
/// and [`AUDIENCE`].
pub fn access_issuer() -> TokenIssuer {
    TokenIssuer::hs256(SECRET)
        .unwrap()
        .issuer(ISSUER)
        .audience(AUDIENCE)
}

// ---------------------------------------------------------------------------------------------
// Keys

/// Installs the jsonwebtoken process default, which the *tests* use to sign crafted tokens
/// (the crate itself never reads that global; tests/backend.rs, a binary of its own, checks
/// so without it).
pub fn install_provider() {
    #[cfg(feature = "aws-lc-rs")]
    let provider = &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
    #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc-rs")))]
    let provider = &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
    let _ = provider.install_default();
}

/// The crypto backend's name for `alg`, for calls into jsonwebtoken.
pub fn jwt(alg: Algorithm) -> jsonwebtoken::Algorithm {
    alg.name()
        .parse()
        .expect("every Algorithm is one of jsonwebtoken's")
}

pub fn hs256_key() -> EncodingKey {
    EncodingKey::from_secret(SECRET)
}

/// The RSA key the test layers trust (`rsa_2048_public.pem`); [`private_key`] `rsa`.
pub fn rsa_key() -> EncodingKey {
    private_key("rsa").0
}

/// A private test key and the algorithm it signs with: `rsa` (the key the test layers trust),
/// `rsa-b` (another RSA key: the attacker's, or a second issuer key), `ec` (P-256), `ed`
/// (Ed25519).
pub fn private_key(which: &str) -> (EncodingKey, Algorithm) {
    match which {
        "rsa" => (
            EncodingKey::from_rsa_pem(&data("rsa_2048_private.pem")).unwrap(),
            Algorithm::RS256,
        ),
        "rsa-b" => (
            EncodingKey::from_rsa_pem(&data("rsa_2048_b_private.pem")).unwrap(),
            Algorithm::RS256,
        ),
        "ec" => (
            EncodingKey::from_ec_pem(&data("ec_p256_private.pem")).unwrap(),
            Algorithm::ES256,
        ),
        "ed" => (
            EncodingKey::from_ed_pem(&data("ed25519_private.pem")).unwrap(),
            Algorithm::EdDSA,
        ),
        other => panic!("no test key {other}"),
    }
}

/// The public JWK of a private `key` for `alg`, as jsonwebtoken writes it (with `alg`, without
/// `kid`).
pub fn public_jwk(alg: Algorithm, key: &EncodingKey) -> Value {
    // `Jwk::from_encoding_key` uses jsonwebtoken's process default.
    install_provider();
    serde_json::to_value(Jwk::from_encoding_key(key, jwt(alg)).unwrap()).unwrap()
}

/// The public JWK of test key `which` (see [`private_key`]), published under `kid` for `use`
/// `sig`.
pub fn jwk(which: &str, kid: &str) -> Value {
    let (key, alg) = private_key(which);
    let mut value = public_jwk(alg, &key);
    value["kid"] = kid.into();
    value["use"] = "sig".into();
    value
}

// ---------------------------------------------------------------------------------------------
// Tokens

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// base64url(SHA-256(bytes)), by jsonwebtoken's backend: the `ath` of a DPoP proof, the
/// `x5t#S256` of a certificate.
pub fn sha256_b64(bytes: &[u8]) -> String {
    #[cfg(feature = "aws-lc-rs")]
    let provider = &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
    #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc-rs")))]
    let provider = &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
    let digest =
        (provider.key_utils.compute_digest)(bytes, jsonwebtoken::jwk::ThumbprintHash::SHA256);
    b64(&digest.expect("SHA-256"))
}

/// The signature, base64url without padding, of the signing input `header.payload` (segments
/// used exactly as given).
pub fn signature(header: &str, payload: &str, alg: Algorithm, key: &EncodingKey) -> String {
    install_provider();
    jsonwebtoken::crypto::sign(format!("{header}.{payload}").as_bytes(), key, jwt(alg))
        .expect("sign")
}

/// Signs already-encoded segments exactly as given.
pub fn sign_segments(header: &str, payload: &str, alg: Algorithm, key: &EncodingKey) -> String {
    format!(
        "{header}.{payload}.{}",
        signature(header, payload, alg, key)
    )
}

/// Signs a header and payload given as raw JSON text (duplicate members, escapes and all).
pub fn sign_text(header: &str, claims: &str, alg: Algorithm, key: &EncodingKey) -> String {
    sign_segments(&b64(header.as_bytes()), &b64(claims.as_bytes()), alg, key)
}

/// Signs `header` and `claims` exactly as given (any `alg`, any extra header members).
pub fn sign_raw(header: &Value, claims: &Value, alg: Algorithm, key: &EncodingKey) -> String {
    sign_text(&header.to_string(), &claims.to_string(), alg, key)
}

/// `claims` signed by `key` for `alg`, under the header `{"alg", "typ": "JWT"}` with `kid`
/// when given.
pub fn sign_jwt(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = json!({ "alg": alg.name(), "typ": "JWT" });
    if let Some(kid) = kid {
        header["kid"] = kid.into();
    }
    sign_raw(&header, claims, alg, key)
}

/// Claims that pass the test policy (issuer, audience, one hour left).
pub fn good_claims() -> Value {
    json!({ "sub": "alice", "roles": ["admin"], "iss": ISSUER, "aud": AUDIENCE,
            "iat": now(), "exp": now() + 3600 })
}

/// [`good_claims`] with `overrides` merged in (see [`merge`]).
pub fn claims_with(overrides: Value) -> Value {
    let mut claims = good_claims();
    merge(&mut claims, overrides);
    claims
}

/// A valid HS256 token for the test policy, with `overrides` merged into the claims (a `null`
/// removes the claim).
pub fn hs256_token(overrides: Value) -> String {
    sign_raw(
        &json!({"alg": "HS256", "typ": "JWT"}),
        &claims_with(overrides),
        Algorithm::HS256,
        &hs256_key(),
    )
}

/// An HS256 token that meets the test policy but for its key: signed with another secret.
pub fn other_key_token() -> String {
    sign_raw(
        &json!({"alg": "HS256", "typ": "JWT"}),
        &good_claims(),
        Algorithm::HS256,
        &EncodingKey::from_secret(b"not the server's secret, though long enough"),
    )
}

/// Merges `overrides` into `claims`; a `null` removes the claim.
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

/// The three segments of a compact JWS (asserting there are exactly three).
pub fn segments(token: &str) -> (&str, &str, &str) {
    let mut it = token.split('.');
    let s = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
    assert!(it.next().is_none(), "more than three segments: {token}");
    s
}

/// `token` with one character in the middle of its signature changed: a signature of the same
/// length that decodes to other bytes.
pub fn tamper_signature(token: &str) -> String {
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let mut sig: Vec<char> = signature.chars().collect();
    let i = sig.len() / 2;
    sig[i] = if sig[i] == 'A' { 'B' } else { 'A' };
    format!("{signed}.{}", sig.into_iter().collect::<String>())
}

/// The decoded JOSE header of a compact JWS.
pub fn header(token: &str) -> Value {
    let b64 = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(b64).unwrap()).unwrap()
}

/// The decoded payload of a compact JWS.
pub fn payload(token: &str) -> Value {
    let b64 = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(b64).unwrap()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Tracing

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
