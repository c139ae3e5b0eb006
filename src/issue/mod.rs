//! Issuing tokens, for the login endpoint of a service that is its own issuer: access tokens
//! ([`TokenIssuer`]), rotating refresh tokens ([`RefreshTokens`]), and the cookie that carries
//! an access token to a browser ([`AccessTokenCookie`]).
//!
//! [`TokenIssuer`] writes RFC 9068-shaped access tokens: header `typ` `at+jwt` and the `kid`
//! of the signing key; claims `iss`, `aud`, `sub`, `iat`, `exp`, a 128-bit random `jti`, and
//! the application's own claims. Signing goes through the crate's crypto backend, so it works
//! with either backend feature, or both.
//!
//! ```
//! use std::time::Duration;
//! use tower_jwt_auth::JwtAuthLayer;
//! use tower_jwt_auth::issue::TokenIssuer;
//!
//! #[derive(Clone, serde::Serialize, serde::Deserialize)]
//! struct Roles { roles: Vec<String> }
//!
//! let secret = b"an example secret that is 32 bytes+";
//! let issuer = TokenIssuer::hs256(secret)
//!     .unwrap()
//!     .issuer("https://id.example.com")
//!     .audience("orders-api")
//!     .lifetime(Duration::from_secs(900));
//! let issued = issuer.issue("alice", &Roles { roles: vec!["admin".into()] }).unwrap();
//! assert_eq!(issued.expires_in, 900);
//!
//! // The layer that checks them is configured to match.
//! let auth = JwtAuthLayer::<Roles>::builder()
//!     .hs256(secret)
//!     .issuer("https://id.example.com")
//!     .audience("orders-api")
//!     .token_type("at+jwt")
//!     .build()
//!     .unwrap();
//! # let _ = (auth, issued.token);
//! ```

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{AlgorithmFamily, EncodingKey};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::backend::provider;
use crate::keys::min_secret_len;
use crate::{Algorithm, BuildError, Clock};

mod cookie;
mod refresh;

pub use cookie::AccessTokenCookie;
pub use refresh::{REFRESH_TOKEN_TYPE, RefreshError, RefreshTokens, TokenPair, TokenResponse};

/// The default access-token lifetime: short, because a bearer token cannot be taken back
/// before it expires without a revocation check.
pub(crate) const DEFAULT_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// Signs access tokens.
#[derive(Clone)]
pub struct TokenIssuer {
    alg: Algorithm,
    key: EncodingKey,
    kid: Option<String>,
    issuer: Option<String>,
    audience: Option<String>,
    lifetime: Duration,
    typ: String,
    clock: Clock,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

/// A freshly issued token.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IssuedToken {
    /// The compact JWS.
    pub token: String,
    /// Its `jti`, for revocation.
    pub jti: String,
    /// Its `exp`, in seconds since the epoch.
    pub expires_at: u64,
    /// Seconds from now until `exp` (the `expires_in` of an OAuth token response).
    pub expires_in: u64,
}

/// Why a token could not be issued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// The application claims did not serialize to a JSON object.
    #[error("claims must serialize to a JSON object")]
    ClaimsNotObject,
    /// Serialization failed.
    #[error("claims could not be serialized: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The backend refused to sign (e.g. the key does not fit the algorithm).
    #[error("signing failed: {0}")]
    Sign(String),
    /// The operating system's random source failed.
    #[error("no randomness available for the jti")]
    Random,
}

impl TokenIssuer {
    /// An issuer signing with `key` under `alg`; the key family must fit the algorithm.
    fn new(alg: Algorithm, key: EncodingKey) -> Result<TokenIssuer, BuildError> {
        if key.family() != alg.jwt().family() {
            return Err(BuildError::KeyAlgorithmMismatch { alg });
        }
        // Fails early (at start-up) on a key the backend cannot sign with.
        (provider().signer_factory)(&alg.jwt(), &key).map_err(|e| BuildError::InvalidKey {
            kid: None,
            reason: e.to_string(),
        })?;
        Ok(TokenIssuer {
            alg,
            key,
            kid: None,
            issuer: None,
            audience: None,
            lifetime: DEFAULT_LIFETIME,
            typ: "at+jwt".into(),
            clock: Clock::system(),
        })
    }

    /// An HMAC issuer; the secret must be at least as long as the hash (RFC 7518 §3.2).
    pub fn hmac(alg: Algorithm, secret: impl AsRef<[u8]>) -> Result<TokenIssuer, BuildError> {
        let secret = secret.as_ref();
        if alg.jwt().family() != AlgorithmFamily::Hmac {
            return Err(BuildError::KeyAlgorithmMismatch { alg });
        }
        if crate::keys::looks_like_pem(secret) {
            return Err(BuildError::KeyAlgorithmMismatch { alg });
        }
        let min = min_secret_len(alg.jwt());
        if secret.len() < min {
            return Err(BuildError::WeakSecret {
                alg,
                len: secret.len(),
                min,
            });
        }
        TokenIssuer::new(alg, EncodingKey::from_secret(secret))
    }

    /// An HS256 issuer.
    pub fn hs256(secret: impl AsRef<[u8]>) -> Result<TokenIssuer, BuildError> {
        TokenIssuer::hmac(Algorithm::HS256, secret)
    }

    /// An issuer with a PEM private key (PKCS#8, or PKCS#1 for RSA).
    pub fn pem(alg: Algorithm, pem: impl AsRef<[u8]>) -> Result<TokenIssuer, BuildError> {
        let pem = pem.as_ref();
        let key = match alg.jwt().family() {
            AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(pem),
            AlgorithmFamily::Ec => EncodingKey::from_ec_pem(pem),
            AlgorithmFamily::Ed => EncodingKey::from_ed_pem(pem),
            AlgorithmFamily::Hmac => return Err(BuildError::KeyAlgorithmMismatch { alg }),
        }
        .map_err(|e| BuildError::InvalidKey {
            kid: None,
            reason: e.to_string(),
        })?;
        TokenIssuer::new(alg, key)
    }

    /// Names the signing key in the header (`kid`), so verifiers can pick it after rotation.
    pub fn kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// Sets `iss`.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Sets `aud`.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Sets the lifetime (`exp - iat`, default 15 minutes).
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Sets the header `typ` (default `at+jwt`, RFC 9068 §2.1).
    pub fn token_type(mut self, typ: impl Into<String>) -> Self {
        self.typ = typ.into();
        self
    }

    /// Reads the time for `iat` and `exp` from `clock` (default: the system clock).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Signs a token for `subject` carrying `claims` (which must serialize to a JSON object).
    /// The registered claims set by the issuer replace any of the same name in `claims`.
    pub fn issue<C: Serialize>(
        &self,
        subject: &str,
        claims: &C,
    ) -> Result<IssuedToken, IssueError> {
        let Value::Object(mut map) = serde_json::to_value(claims)? else {
            return Err(IssueError::ClaimsNotObject);
        };
        let now = self.clock.unix_secs();
        let exp = now.saturating_add(self.lifetime.as_secs());
        let jti = random_id()?;
        if let Some(iss) = &self.issuer {
            map.insert("iss".into(), iss.clone().into());
        }
        if let Some(aud) = &self.audience {
            map.insert("aud".into(), aud.clone().into());
        }
        map.insert("sub".into(), subject.into());
        map.insert("iat".into(), now.into());
        map.insert("exp".into(), exp.into());
        map.insert("jti".into(), jti.clone().into());
        let token = self.sign(&map)?;
        Ok(IssuedToken {
            token,
            jti,
            expires_at: exp,
            expires_in: exp - now,
        })
    }

    /// For an HMAC issuer, a value equal for two issuers exactly when their secrets are: the
    /// HMAC-SHA-256 of a fixed message, which reveals nothing of the secret.
    pub(crate) fn hmac_fingerprint(&self) -> Option<Vec<u8>> {
        if self.alg.jwt().family() != AlgorithmFamily::Hmac {
            return None;
        }
        crate::backend::hmac_sha256(&self.key, b"tower-jwt-auth secret fingerprint")
    }

    fn sign(&self, claims: &Map<String, Value>) -> Result<String, IssueError> {
        let mut header = Map::new();
        header.insert("alg".into(), self.alg.name().into());
        header.insert("typ".into(), self.typ.clone().into());
        if let Some(kid) = &self.kid {
            header.insert("kid".into(), kid.clone().into());
        }
        crate::backend::sign_compact(self.alg, &self.key, &header, claims).map_err(IssueError::Sign)
    }
}

/// 128 random bits, base64url: a `jti` no one can guess or collide with.
pub(crate) fn random_id() -> Result<String, IssueError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| IssueError::Random)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}
