//! A testing kit (feature `test-util`): an issuer with an ephemeral key pair that mints
//! tokens with any claim or header member overridden ([`TestIssuer`]), and an OpenID provider
//! on 127.0.0.1 that serves discovery and a JWKS, rotates its keys, goes down on request and
//! counts its fetches ([`MockIdp`]). Hand the layer a [`Clock::manual`](crate::Clock::manual)
//! with [`JwtAuthBuilder::clock`](crate::JwtAuthBuilder::clock) (and the issuer the same one
//! with [`TestIssuer::clock`]) to test expiry without sleeping.
//!
//! An axum handler tested through the layer, in process:
//!
//! ```
//! use axum::{Router, body::Body, routing::get};
//! use tower::ServiceExt;
//! use tower_jwt_auth::{Claims, testing::TestIssuer};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let issuer = TestIssuer::new();
//! let app = Router::new()
//!     .route("/me", get(|c: Claims<serde_json::Value>| async move { c["sub"].to_string() }))
//!     .layer(issuer.builder::<serde_json::Value>().build().unwrap());
//! let token = issuer.token().subject("alice").sign();
//! let req = http::Request::get("/me").header("authorization", format!("Bearer {token}"));
//! let res = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
//! assert_eq!(res.status(), 200);
//! # }
//! ```
//!
//! Keys are made by the crypto backend the crate links: aws-lc-rs when the `aws-lc-rs` feature
//! is on, otherwise the RustCrypto crates (`rust-crypto`); HMAC secrets come from the
//! operating system's random source. Tokens are signed through the same backend as the
//! `TokenIssuer` of the `issue` feature.
//!
//! This module is for tests: its functions panic, with a message saying why, where a
//! production API would return an error (see each `# Panics`).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{AlgorithmFamily, EncodingKey};
use serde_json::{Map, Value, json};

use crate::backend::provider;
use crate::{Algorithm, Clock, Jwks, JwtAuthBuilder, JwtAuthLayer, Key};

mod idp;
mod keygen;

pub use idp::{MockIdp, Outage};

/// The `iss` a [`TestIssuer`] writes unless told otherwise.
pub const DEFAULT_ISSUER: &str = "https://issuer.test";
/// The `aud` a [`TestIssuer`] writes unless told otherwise.
pub const DEFAULT_AUDIENCE: &str = "test-api";
/// The `sub` a [`TestIssuer`] writes unless told otherwise.
pub const DEFAULT_SUBJECT: &str = "test-user";
/// The header `typ` a [`TestIssuer`] writes unless told otherwise (RFC 9068 §2.1).
pub const DEFAULT_TYPE: &str = "at+jwt";
/// The lifetime (`exp - iat`) of a [`TestIssuer`]'s tokens unless told otherwise: one hour.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// An issuer with an ephemeral key pair (or HMAC secret), made fresh by each constructor: it
/// publishes its public key ([`jwks`](Self::jwks), [`jwks_json`](Self::jwks_json),
/// [`key`](Self::key)) and mints tokens ([`token`](Self::token)) whose claims and header can
/// be anything, valid or not.
///
/// Its tokens carry the header `alg`, `typ` ([`DEFAULT_TYPE`]) and `kid`, and the claims
/// `iss` ([`DEFAULT_ISSUER`]), `aud` ([`DEFAULT_AUDIENCE`]), `sub` ([`DEFAULT_SUBJECT`]),
/// `iat` (now, by its [`clock`](Self::clock)) and `exp` (`iat` + [`DEFAULT_LIFETIME`]);
/// [`builder`](Self::builder) gives a layer configured to accept exactly those.
///
/// ```
/// use tower_jwt_auth::{Algorithm, AuthError, testing::TestIssuer};
///
/// let issuer = TestIssuer::rs256().kid("k1").audience("orders");
/// let layer = issuer.builder::<serde_json::Value>().build().unwrap();
/// assert!(layer.verify(&issuer.token().sign()).is_ok());
/// assert!(matches!(layer.verify(&issuer.token().expired().sign()), Err(AuthError::Expired)));
/// assert!(layer.verify(&issuer.token().audience("billing").sign()).is_err());
/// ```
#[derive(Clone)]
pub struct TestIssuer {
    alg: Algorithm,
    key: EncodingKey,
    /// The public JWK, without `kid` (added when published).
    public_jwk: Map<String, Value>,
    kid: String,
    issuer: String,
    audience: String,
    typ: String,
    lifetime: Duration,
    clock: Clock,
}

impl std::fmt::Debug for TestIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestIssuer")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl Default for TestIssuer {
    fn default() -> Self {
        TestIssuer::new()
    }
}

impl TestIssuer {
    /// An ES256 issuer with a new P-256 key pair.
    pub fn new() -> TestIssuer {
        TestIssuer::with_algorithm(Algorithm::ES256)
    }

    /// An ES256 issuer (the same as [`new`](Self::new)).
    pub fn es256() -> TestIssuer {
        TestIssuer::with_algorithm(Algorithm::ES256)
    }

    /// An RS256 issuer with a new 2048-bit RSA key pair.
    pub fn rs256() -> TestIssuer {
        TestIssuer::with_algorithm(Algorithm::RS256)
    }

    /// An EdDSA issuer with a new Ed25519 key pair.
    pub fn eddsa() -> TestIssuer {
        TestIssuer::with_algorithm(Algorithm::EdDSA)
    }

    /// An HS256 issuer with a new random 32-byte secret. Its [`jwks`](Self::jwks) publishes
    /// the secret as an `oct` JWK, as a shared-secret set-up would.
    pub fn hs256() -> TestIssuer {
        TestIssuer::with_algorithm(Algorithm::HS256)
    }

    /// An issuer for any [`Algorithm`], with a new key: 2048-bit RSA for `RS*`/`PS*`, P-256 or
    /// P-384 for `ES256`/`ES384`, Ed25519 for `EdDSA`, a secret as long as the hash for `HS*`.
    ///
    /// # Panics
    ///
    /// If the backend cannot make or use the key (no randomness available).
    pub fn with_algorithm(alg: Algorithm) -> TestIssuer {
        let key = match alg.jwt().family() {
            AlgorithmFamily::Hmac => {
                EncodingKey::from_secret(&keygen::secret(crate::keys::min_secret_len(alg.jwt())))
            }
            _ => keygen::private_key(alg),
        };
        let public_jwk = public_jwk(alg, &key);
        TestIssuer {
            alg,
            key,
            public_jwk,
            kid: new_kid(),
            issuer: DEFAULT_ISSUER.into(),
            audience: DEFAULT_AUDIENCE.into(),
            typ: DEFAULT_TYPE.into(),
            lifetime: DEFAULT_LIFETIME,
            clock: Clock::system(),
        }
    }

    /// Names the key (`kid`, default: a random one) in the JWKS and in token headers.
    pub fn kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = kid.into();
        self
    }

    /// Sets the `iss` of its tokens (default [`DEFAULT_ISSUER`]).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = issuer.into();
        self
    }

    /// Sets the `aud` of its tokens (default [`DEFAULT_AUDIENCE`]).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = audience.into();
        self
    }

    /// Sets the header `typ` of its tokens (default [`DEFAULT_TYPE`]).
    pub fn token_type(mut self, typ: impl Into<String>) -> Self {
        self.typ = typ.into();
        self
    }

    /// Sets the lifetime (`exp - iat`) of its tokens (default [`DEFAULT_LIFETIME`]).
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Reads `iat`, `exp` and `nbf` from `clock` (default: the system clock); give the layer
    /// the same one.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The algorithm it signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// Its key's `kid`.
    pub fn key_id(&self) -> &str {
        &self.kid
    }

    /// The `iss` its tokens carry.
    pub fn issuer_name(&self) -> &str {
        &self.issuer
    }

    /// The `aud` its tokens carry.
    pub fn audience_name(&self) -> &str {
        &self.audience
    }

    /// Its public key as one JWK (JSON text) with `kid`, `alg` and `use` `sig`; for an HMAC
    /// issuer, the secret as an `oct` JWK.
    pub fn jwk_json(&self) -> String {
        Value::Object(self.jwk_value()).to_string()
    }

    /// Its JWK Set (JSON text): `{"keys": [`[`jwk_json`](Self::jwk_json)`]}`.
    pub fn jwks_json(&self) -> String {
        json!({ "keys": [self.jwk_value()] }).to_string()
    }

    /// Its JWK Set, for [`JwtAuthBuilder::jwks`](crate::JwtAuthBuilder::jwks).
    ///
    /// # Panics
    ///
    /// Never for a key this issuer made; if the crate refused its own JWKS, with the reason.
    pub fn jwks(&self) -> Jwks {
        Jwks::from_json(&self.jwks_json())
            .unwrap_or_else(|e| panic!("TestIssuer: its own JWKS was refused: {e}"))
    }

    /// Its public key (or secret) as a [`Key`] with its `kid`, for
    /// [`JwtAuthBuilder::key`](crate::JwtAuthBuilder::key).
    pub fn key(&self) -> Key {
        Key::jwk(self.alg, &self.jwk_json()).kid(self.kid.clone())
    }

    /// A layer builder that accepts this issuer's tokens as minted: its [`jwks`](Self::jwks),
    /// its algorithm as the allow-list, its `iss`, `aud`, `typ` and clock. Add policy and
    /// [`build`](crate::JwtAuthBuilder::build).
    pub fn builder<C>(&self) -> JwtAuthBuilder<C> {
        JwtAuthLayer::<C>::builder()
            .jwks(self.jwks())
            .algorithms([self.alg])
            .issuer(self.issuer.clone())
            .audience(self.audience.clone())
            .token_type(self.typ.clone())
            .clock(self.clock.clone())
    }

    /// A token with the default header and claims, to override and then
    /// [`sign`](TestToken::sign).
    pub fn token(&self) -> TestToken {
        let now = self.clock.unix_secs();
        let mut header = Map::new();
        header.insert("alg".into(), self.alg.name().into());
        header.insert("typ".into(), self.typ.clone().into());
        header.insert("kid".into(), self.kid.clone().into());
        let mut claims = Map::new();
        claims.insert("iss".into(), self.issuer.clone().into());
        claims.insert("aud".into(), self.audience.clone().into());
        claims.insert("sub".into(), DEFAULT_SUBJECT.into());
        claims.insert("iat".into(), now.into());
        claims.insert(
            "exp".into(),
            now.saturating_add(self.lifetime.as_secs()).into(),
        );
        TestToken {
            issuer: self.clone(),
            now,
            header,
            claims,
        }
    }

    /// [`token`](Self::token) with `overrides` merged into the claims (a `null` removes the
    /// claim), signed.
    pub fn sign(&self, overrides: Value) -> String {
        self.token().claims(overrides).sign()
    }

    fn jwk_value(&self) -> Map<String, Value> {
        let mut jwk = self.public_jwk.clone();
        jwk.insert("kid".into(), self.kid.clone().into());
        jwk.insert("alg".into(), self.alg.name().into());
        jwk.insert("use".into(), "sig".into());
        jwk
    }
}

/// A token being minted by a [`TestIssuer`]: start from valid defaults, override anything,
/// then [`sign`](Self::sign). Overrides do not have to make sense: a header `alg` naming
/// another algorithm than the one that signs, an `exp` that is a string.
///
/// ```
/// use tower_jwt_auth::testing::TestIssuer;
///
/// let issuer = TestIssuer::new();
/// let token = issuer
///     .token()
///     .subject("alice")
///     .claim("roles", ["admin"])
///     .not_yet_valid()
///     .typ("JWT")
///     .alg("HS256")
///     .sign();
/// # let _ = token;
/// ```
#[derive(Debug, Clone)]
#[must_use = "a token is minted by `sign`"]
pub struct TestToken {
    issuer: TestIssuer,
    now: u64,
    header: Map<String, Value>,
    claims: Map<String, Value>,
}

impl TestToken {
    /// Sets claim `name` to `value`.
    pub fn claim(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.claims.insert(name.into(), value.into());
        self
    }

    /// Merges `overrides` (a JSON object) into the claims; a `null` member removes the claim.
    ///
    /// # Panics
    ///
    /// If `overrides` is not a JSON object.
    pub fn claims(mut self, overrides: Value) -> Self {
        merge(&mut self.claims, overrides, "claims");
        self
    }

    /// Removes claim `name`.
    pub fn without(mut self, name: &str) -> Self {
        self.claims.remove(name);
        self
    }

    /// Sets `sub`.
    pub fn subject(self, subject: impl Into<String>) -> Self {
        self.claim("sub", subject.into())
    }

    /// Sets `iss` (e.g. a wrong one).
    pub fn issuer(self, issuer: impl Into<String>) -> Self {
        self.claim("iss", issuer.into())
    }

    /// Sets `aud` (e.g. a wrong one).
    pub fn audience(self, audience: impl Into<String>) -> Self {
        self.claim("aud", audience.into())
    }

    /// Sets `exp` to `iat` + `lifetime`.
    pub fn lifetime(self, lifetime: Duration) -> Self {
        let exp = self.now.saturating_add(lifetime.as_secs());
        self.claim("exp", exp)
    }

    /// Expired an hour ago: `iat` two hours ago, `exp` one hour ago (well past any leeway).
    pub fn expired(self) -> Self {
        let now = self.now;
        self.claim("iat", now.saturating_sub(7200))
            .claim("exp", now.saturating_sub(3600))
    }

    /// Not valid for another hour: `nbf` one hour from now (well past any leeway), `exp` two.
    pub fn not_yet_valid(self) -> Self {
        let now = self.now;
        self.claim("nbf", now.saturating_add(3600))
            .claim("exp", now.saturating_add(7200))
    }

    /// Sets header member `name` to `value`.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.header.insert(name.into(), value.into());
        self
    }

    /// Removes header member `name` (e.g. `kid`, or `typ`).
    pub fn without_header(mut self, name: &str) -> Self {
        self.header.remove(name);
        self
    }

    /// Sets the header `typ`.
    pub fn typ(self, typ: impl Into<String>) -> Self {
        self.header("typ", typ.into())
    }

    /// Sets the header `kid` (e.g. one no key has).
    pub fn kid(self, kid: impl Into<String>) -> Self {
        self.header("kid", kid.into())
    }

    /// Sets the header `alg` to any name (`"none"`, `"HS256"` on an RSA key, ...); the token
    /// is still signed with the issuer's own key and algorithm.
    pub fn alg(self, alg: impl Into<String>) -> Self {
        self.header("alg", alg.into())
    }

    /// The compact JWS: the header and claims as set, signed with the issuer's key.
    ///
    /// # Panics
    ///
    /// If the crypto backend refuses to sign (it does not for a key a [`TestIssuer`] made).
    pub fn sign(self) -> String {
        crate::backend::sign_compact(
            self.issuer.alg,
            &self.issuer.key,
            &self.header,
            &self.claims,
        )
        .unwrap_or_else(|e| panic!("TestIssuer: signing failed: {e}"))
    }
}

/// The public JWK members (`kty` and the key) of `key` for `alg`, computed by the backend.
fn public_jwk(alg: Algorithm, key: &EncodingKey) -> Map<String, Value> {
    let utils = &provider().key_utils;
    let b64 = |bytes: &[u8]| Value::from(URL_SAFE_NO_PAD.encode(bytes));
    let failed = |e: jsonwebtoken::errors::Error| -> ! {
        panic!("TestIssuer: the backend cannot read the key it made: {e}")
    };
    let mut jwk = Map::new();
    match alg.jwt().family() {
        AlgorithmFamily::Hmac => {
            jwk.insert("kty".into(), "oct".into());
            jwk.insert("k".into(), b64(key.as_bytes()));
        }
        AlgorithmFamily::Rsa => {
            let (n, e) = (utils.rsa_pub_components_from_private_key)(key.as_bytes())
                .unwrap_or_else(|e| failed(e));
            jwk.insert("kty".into(), "RSA".into());
            jwk.insert("n".into(), b64(&n));
            jwk.insert("e".into(), b64(&e));
        }
        AlgorithmFamily::Ec => {
            let (_, x, y) = (utils.ec_pub_components_from_private_key)(key.as_bytes(), alg.jwt())
                .unwrap_or_else(|e| failed(e));
            let crv = if alg == Algorithm::ES384 {
                "P-384"
            } else {
                "P-256"
            };
            jwk.insert("kty".into(), "EC".into());
            jwk.insert("crv".into(), crv.into());
            jwk.insert("x".into(), b64(&x));
            jwk.insert("y".into(), b64(&y));
        }
        AlgorithmFamily::Ed => {
            let x = (utils.ed_pub_components_from_private_key)(
                key.as_bytes(),
                &jsonwebtoken::jwk::EllipticCurve::Ed25519,
            )
            .unwrap_or_else(|e| failed(e));
            jwk.insert("kty".into(), "OKP".into());
            jwk.insert("crv".into(), "Ed25519".into());
            jwk.insert("x".into(), b64(&x));
        }
    }
    jwk
}

/// A random `kid`: 64 bits, base64url.
fn new_kid() -> String {
    URL_SAFE_NO_PAD.encode(keygen::secret(8))
}

/// Merges the members of `overrides` into `into`; a `null` removes the member.
fn merge(into: &mut Map<String, Value>, overrides: Value, what: &str) {
    let Value::Object(overrides) = overrides else {
        panic!("TestToken::{what}: the overrides must be a JSON object, not {overrides}");
    };
    for (name, value) in overrides {
        if value.is_null() {
            into.remove(&name);
        } else {
            into.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys made and tokens signed by the backend in use verify under a layer built from
    /// the issuer's JWKS (run under each backend feature).
    #[test]
    fn every_algorithm_round_trips_through_a_layer() {
        use Algorithm::*;
        for alg in [
            HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
        ] {
            let issuer = TestIssuer::with_algorithm(alg);
            let layer = issuer.builder::<Value>().build().unwrap();
            let claims = layer
                .verify(&issuer.token().subject("alice").sign())
                .unwrap();
            assert_eq!(claims["sub"], "alice", "{alg}");
            assert!(
                layer.verify(&issuer.token().expired().sign()).is_err(),
                "{alg}"
            );
        }
    }

    #[test]
    fn pkcs8_private_key_is_read_and_garbage_is_not() {
        // SEQUENCE { INTEGER 0, SEQUENCE { NULL }, OCTET STRING { 01 02 } }
        let der = [
            0x30, 0x0b, 0x02, 0x01, 0x00, 0x30, 0x02, 0x05, 0x00, 0x04, 0x02, 1, 2,
        ];
        assert_eq!(keygen::pkcs8_private_key(&der), Some(&[1u8, 2][..]));
        assert_eq!(keygen::pkcs8_private_key(&der[..12]), None);
        assert_eq!(
            keygen::pkcs8_private_key(&[0x30, 0x85, 0, 0, 0, 0, 0]),
            None
        );
    }
}
