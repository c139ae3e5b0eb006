//! Refresh tokens with rotation and reuse detection.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{IssueError, IssuedToken, TokenIssuer, random_id};
use crate::keys::{AlgSet, KeySet, Keys};
use crate::revocation::{RevocationError, RevocationStore, TokenId};
use crate::token::Jws;
use crate::validation::ClaimsPolicy;
use crate::verify::Verifier;
use crate::{AuthError, BuildError, Key};

/// The header `typ` of refresh tokens; the access layer's `token_type("at+jwt")` refuses it.
pub const REFRESH_TOKEN_TYPE: &str = "refresh+jwt";

/// The default refresh-token lifetime.
pub(crate) const DEFAULT_REFRESH_LIFETIME: Duration = Duration::from_secs(14 * 24 * 3600);

/// An access token and the refresh token that renews it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TokenPair {
    /// The access token.
    pub access: IssuedToken,
    /// The refresh token.
    pub refresh: IssuedToken,
}

/// The JSON body of a successful token response (RFC 6749 §5.1).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenResponse {
    /// The access token.
    pub access_token: String,
    /// The refresh token.
    pub refresh_token: String,
    /// Always `Bearer` (RFC 6750).
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

impl TokenPair {
    /// The RFC 6749 §5.1 response body for this pair.
    pub fn to_response(&self) -> TokenResponse {
        TokenResponse {
            access_token: self.access.token.clone(),
            refresh_token: self.refresh.token.clone(),
            token_type: "Bearer".into(),
            expires_in: self.access.expires_in,
        }
    }
}

/// Why a refresh was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RefreshError {
    /// The refresh token itself is invalid (signature, expiry, type, audience, …).
    #[error("invalid refresh token: {0}")]
    Invalid(AuthError),
    /// The refresh token, its family or its subject has been revoked.
    #[error("refresh token revoked")]
    Revoked,
    /// The refresh token had already been used: it was stolen or replayed, so its whole
    /// family has just been revoked.
    #[error("refresh token reused; its family is revoked")]
    ReuseDetected,
    /// The store could not be asked (fail closed).
    #[error(transparent)]
    Store(#[from] RevocationError),
    /// The new pair could not be signed.
    #[error(transparent)]
    Issue(#[from] IssueError),
}

/// Issues access/refresh token pairs and rotates refresh tokens, for the `/login` and
/// `/refresh` endpoints of a service that is its own issuer.
///
/// Following the OAuth 2.0 Security BCP (RFC 9700 §4.14.2), every refresh token is single-use:
/// [`refresh`](Self::refresh) marks it used and returns a new pair of the same *family*. If a
/// used refresh token comes back — an attacker replaying a stolen one, or the victim after
/// the attacker already refreshed — the whole family is revoked, so whichever party holds the
/// newest refresh token is logged out too and must authenticate again.
///
/// Refresh tokens are HS256 JWTs under their own secret with `typ` [`REFRESH_TOKEN_TYPE`] and
/// the audience `<access audience>#refresh`, so a layer checking access tokens never accepts
/// them. The used-token and revoked-family records live in a [`RevocationStore`](crate::revocation::RevocationStore): a
/// `MemoryRevocation` for one server, a `RedisRevocation` for a fleet.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::sync::Arc;
/// use tower_jwt_auth::issue::{RefreshError, RefreshTokens};
/// use tower_jwt_auth::revocation::MemoryRevocation;
/// use tower_jwt_auth::issue::TokenIssuer;
///
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Roles { roles: Vec<String> }
///
/// let access = TokenIssuer::hs256(b"access-token secret, 32 bytes or more").unwrap()
///     .issuer("https://login.example").audience("api");
/// let sessions = RefreshTokens::<Roles>::new(
///     access,
///     b"a different secret for refresh tokens",
///     Arc::new(MemoryRevocation::new()),
/// ).unwrap();
///
/// let first = sessions.issue("alice", &Roles { roles: vec!["admin".into()] }).unwrap();
/// let second = sessions.refresh(&first.refresh.token).await.unwrap();
/// // The first refresh token was used: presenting it again revokes the family…
/// assert!(matches!(sessions.refresh(&first.refresh.token).await, Err(RefreshError::ReuseDetected)));
/// // …including the refresh token the legitimate rotation produced.
/// assert!(matches!(sessions.refresh(&second.refresh.token).await, Err(RefreshError::Revoked)));
/// # }
/// ```
pub struct RefreshTokens<C> {
    access: TokenIssuer,
    refresh: TokenIssuer,
    verifier: Verifier,
    store: Arc<dyn RevocationStore>,
    lifetime: Duration,
    _claims: PhantomData<fn() -> C>,
}

impl<C> std::fmt::Debug for RefreshTokens<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshTokens")
            .field("access", &self.access)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

/// What a refresh token carries besides the registered claims.
#[derive(Serialize, Deserialize)]
struct RefreshClaims<C> {
    /// The family: all refresh tokens descended from one login.
    fam: String,
    sub: String,
    jti: String,
    exp: u64,
    #[serde(default)]
    iat: Option<u64>,
    /// The application claims, carried over into every access token of the family.
    app: C,
}

impl<C: Serialize + DeserializeOwned> RefreshTokens<C> {
    /// Pairs `access` with HS256 refresh tokens signed by `refresh_secret` (at least 32 bytes;
    /// best a secret of its own) and records kept in `store`.
    pub fn new(
        access: TokenIssuer,
        refresh_secret: impl AsRef<[u8]>,
        store: Arc<dyn RevocationStore>,
    ) -> Result<RefreshTokens<C>, BuildError> {
        let secret = refresh_secret.as_ref();
        let audience = format!("{}#refresh", access.audience.as_deref().unwrap_or(""));
        let mut refresh = TokenIssuer::hs256(secret)?
            .audience(&audience)
            .token_type(REFRESH_TOKEN_TYPE)
            .lifetime(DEFAULT_REFRESH_LIFETIME)
            .clock(access.clock.clone());
        refresh.issuer = access.issuer.clone();
        // Under the access secret a refresh token would verify as an access token wherever
        // the access layer checks neither `typ` nor `aud`.
        if refresh.hmac_fingerprint().is_some()
            && refresh.hmac_fingerprint() == access.hmac_fingerprint()
        {
            return Err(BuildError::InvalidSetting(
                "the refresh-token secret must differ from the access-token secret",
            ));
        }
        let entry = Key::hmac(crate::Algorithm::HS256, secret).into_entry()?;
        let policy = ClaimsPolicy {
            issuers: access.issuer.iter().cloned().collect(),
            audiences: vec![audience],
            token_type: Some(REFRESH_TOKEN_TYPE.into()),
            required: vec!["jti".into(), "sub".into(), "fam".into()],
            // This service issues its refresh tokens itself, on its own clock: no skew to
            // allow for, and no window past `exp` in which a spent token could come back.
            leeway: Duration::ZERO,
            clock: access.clock.clone(),
            ..ClaimsPolicy::default()
        };
        let verifier = Verifier {
            keys: Keys::Static(KeySet::new(vec![entry])),
            allowed: AlgSet::of(Algorithm::HS256),
            policy,
            revocable: false,
        };
        Ok(RefreshTokens {
            access,
            refresh,
            verifier,
            store,
            lifetime: DEFAULT_REFRESH_LIFETIME,
            _claims: PhantomData,
        })
    }

    /// Sets the refresh-token lifetime (default 14 days). Each rotation starts a new one.
    pub fn refresh_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self.refresh = self.refresh.lifetime(lifetime);
        self
    }

    /// The access-token issuer.
    pub fn access_issuer(&self) -> &TokenIssuer {
        &self.access
    }

    /// Starts a new family: the pair to hand out at login.
    pub fn issue(&self, subject: &str, claims: &C) -> Result<TokenPair, IssueError> {
        self.issue_in_family(subject, claims, &random_id()?)
    }

    fn issue_in_family(
        &self,
        subject: &str,
        claims: &C,
        family: &str,
    ) -> Result<TokenPair, IssueError> {
        let access = self.access.issue(subject, claims)?;
        #[derive(Serialize)]
        struct Extra<'a, C> {
            fam: &'a str,
            app: &'a C,
        }
        let refresh = self.refresh.issue(
            subject,
            &Extra {
                fam: family,
                app: claims,
            },
        )?;
        Ok(TokenPair { access, refresh })
    }

    /// Rotates: checks `refresh_token`, marks it used, and returns a new pair of its family.
    /// A token used before revokes its family ([`RefreshError::ReuseDetected`]).
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair, RefreshError> {
        let claims = self.verify::<RefreshClaims<C>>(refresh_token)?;
        let family_key = family_key(&claims.fam);
        let family = TokenId::new(
            self.access.issuer.as_deref(),
            Some(&family_key),
            Some(&claims.sub),
            claims.iat,
        );
        if self.store.is_revoked_consistent(family).await? {
            return Err(RefreshError::Revoked);
        }
        if !self.store.use_once(&claims.jti, claims.exp).await? {
            // RFC 9700 §4.14.2: reuse means one of two parties holds a stolen token; revoke
            // the family so neither can go on without logging in again.
            self.store.revoke(&family_key, self.family_expiry()).await?;
            return Err(RefreshError::ReuseDetected);
        }
        Ok(self.issue_in_family(&claims.sub, &claims.app, &claims.fam)?)
    }

    /// Revokes the family of `refresh_token` (logout everywhere that session reached). An
    /// invalid token is reported, not ignored.
    pub async fn revoke_family(&self, refresh_token: &str) -> Result<(), RefreshError> {
        let claims = self.verify::<RefreshClaims<C>>(refresh_token)?;
        self.store
            .revoke(&family_key(&claims.fam), self.family_expiry())
            .await?;
        Ok(())
    }
}

impl<C> RefreshTokens<C> {
    /// The claims of a valid refresh token of this service.
    fn verify<T: DeserializeOwned>(&self, refresh_token: &str) -> Result<T, RefreshError> {
        let invalid = RefreshError::Invalid;
        let jws = Jws::parse(refresh_token, crate::DEFAULT_MAX_TOKEN_SIZE).map_err(invalid)?;
        self.verifier
            .verify::<T>(&jws)
            .map(|verified| verified.claims)
            .map_err(|refused| invalid(refused.error))
    }

    /// Until when a family's revocation must be kept: the latest `exp` of a refresh token of
    /// the family issued up to now (the store adds its retention margin).
    fn family_expiry(&self) -> u64 {
        self.access
            .clock
            .unix_secs()
            .saturating_add(self.lifetime.as_secs())
    }
}

/// Family records share the store with `jti`s; the prefix keeps the two apart.
fn family_key(family: &str) -> String {
    format!("fam:{family}")
}
