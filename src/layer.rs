//! [`JwtAuthLayer`] and its builder: the whole configuration, validated once.
//!
//! ```
//! use std::time::Duration;
//! use tower_jwt_auth::JwtAuthLayer;
//!
//! #[derive(Clone, serde::Deserialize)]
//! struct MyClaims { sub: String, roles: Vec<String> }
//!
//! let auth = JwtAuthLayer::<MyClaims>::builder()
//!     .hs256(b"an example secret that is 32 bytes+")
//!     .issuer("https://id.example.com")
//!     .audience("orders-api")
//!     .token_from_cookie("access_token")
//!     .build()
//!     .expect("valid configuration");
//!
//! // Mistakes surface at build time, not per request:
//! let err = JwtAuthLayer::<MyClaims>::builder().hs256(b"short").build().unwrap_err();
//! assert!(err.to_string().contains("RFC 7518"));
//! ```

use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use http::{Extensions, HeaderMap, Method};
use jsonwebtoken::Algorithm;
use serde::de::DeserializeOwned;
use tower_layer::Layer;

use crate::csrf::Csrf;
use crate::keys::{AlgSet, KeyConfig};
use crate::revocation::Revocation;
use crate::source::{self, Source};
use crate::tenant::Verifiers;
use crate::validation::{ClaimsPolicy, MAX_REQUIRED_CLAIMS};
use crate::verify::{OwnedTokenId, Verifier, trace_rejection};
use crate::{
    AuthError, BuildError, Claims, Clock, CsrfPolicy, Jwks, JwtAuth, Key, Rfc6750, Tenant,
    TokenSource,
};

/// The default cap on a token's size: generous for access tokens with many claims, small
/// enough that no oversized token is ever decoded.
pub const DEFAULT_MAX_TOKEN_SIZE: usize = 8 * 1024;

/// A [`tower_layer::Layer`] that authenticates requests by JWT and hands the typed claims
/// `C` to the inner service as [`Claims<C>`].
///
/// Built by [`JwtAuthLayer::builder`]. Cloning is cheap: all state sits behind one `Arc`.
pub struct JwtAuthLayer<C, R = Rfc6750> {
    pub(crate) shared: Arc<Shared<R>>,
    _claims: PhantomData<fn() -> C>,
}

impl<C, R> Clone for JwtAuthLayer<C, R> {
    fn clone(&self) -> Self {
        JwtAuthLayer {
            shared: Arc::clone(&self.shared),
            _claims: PhantomData,
        }
    }
}

impl<C, R> std::fmt::Debug for JwtAuthLayer<C, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuthLayer").finish_non_exhaustive()
    }
}

impl<C: DeserializeOwned, R> JwtAuthLayer<C, R> {
    /// Verifies `token` as the layer would (size, form, header policy, key, signature, claims
    /// policy) and returns its claims, outside any tower stack: for tokens that arrive another
    /// way, such as inside a WebSocket message. The revocation store and the cache are not
    /// consulted (both are asynchronous or request-bound); the CSRF and source rules do not
    /// apply.
    ///
    /// ```
    /// use tower_jwt_auth::{AuthError, JwtAuthLayer, TokenIssuer};
    ///
    /// #[derive(Debug, serde::Deserialize)]
    /// struct MyClaims { sub: String }
    ///
    /// let secret = b"an example secret that is 32 bytes+";
    /// let auth = JwtAuthLayer::<MyClaims>::builder().hs256(secret).build().unwrap();
    /// let token = TokenIssuer::hs256(secret).unwrap().issue("alice", &serde_json::json!({})).unwrap().token;
    /// assert_eq!(auth.verify(&token).unwrap().sub, "alice");
    /// assert_eq!(auth.verify("not.a.token").unwrap_err(), AuthError::MalformedHeader);
    /// ```
    pub fn verify(&self, token: &str) -> Result<Claims<C>, AuthError> {
        self.shared
            .select(token)?
            .verify::<C>(token)
            .map(|v| Claims::new(v.claims))
    }

    /// Checks only the form, the header policy and the signature of a compact JWS, and returns
    /// its decoded payload, which need not be a claims set (RFC 7515 §5.2). No claim is
    /// checked.
    pub fn verify_signature(&self, token: &str) -> Result<Vec<u8>, AuthError> {
        self.shared.select(token)?.verify_signature(token)
    }
}

impl<C, R> JwtAuthLayer<C, R> {
    /// The verified-token cache's counters, when a cache is configured.
    #[cfg(feature = "cache")]
    pub fn cache_stats(&self) -> Option<crate::cache::CacheStats> {
        self.shared
            .cache
            .as_ref()
            .map(crate::cache::TokenCache::stats)
    }
}

impl<C> JwtAuthLayer<C> {
    /// Starts a configuration.
    pub fn builder() -> JwtAuthBuilder<C> {
        JwtAuthBuilder::new()
    }
}

impl<S, C, R> Layer<S> for JwtAuthLayer<C, R> {
    type Service = JwtAuth<S, C, R>;

    fn layer(&self, inner: S) -> Self::Service {
        JwtAuth::new(inner, Arc::clone(&self.shared))
    }
}

/// The state one layer shares with all its services.
pub(crate) struct Shared<R> {
    pub verifiers: Verifiers,
    pub max_token_size: usize,
    pub sources: Vec<Source>,
    pub optional: bool,
    pub pass_preflight: bool,
    pub csrf: Option<Csrf>,
    pub revocation: Option<Arc<dyn Revocation>>,
    pub revocation_fail_open: bool,
    #[cfg(feature = "cache")]
    pub cache: Option<crate::cache::TokenCache>,
    pub responder: Arc<R>,
}

/// What to do with a request whose headers have been examined.
pub(crate) enum Decision<C> {
    /// Let it through, with these claims (`None`: anonymously).
    Pass(Option<Claims<C>>),
    /// The token verified; let it through once the revocation store has been asked.
    CheckRevocation(Claims<C>, OwnedTokenId),
    /// No key of the remote source fits: refresh the keys, then verify the token again.
    #[cfg(feature = "remote")]
    RefreshKeys(String),
}

impl<R> Shared<R> {
    /// Finds and verifies the request's token: everything that needs no I/O.
    pub(crate) fn authenticate<C: DeserializeOwned + Send + Sync + 'static>(
        &self,
        method: &Method,
        headers: &HeaderMap,
        uri: &http::Uri,
    ) -> Result<Decision<C>, AuthError> {
        if self.pass_preflight && is_preflight(method, headers) {
            return Ok(Decision::Pass(None));
        }
        let found = source::extract(&self.sources, headers, uri, self.max_token_size)
            .inspect_err(|e| trace_rejection(e, None, None, None))?;
        let Some(found) = found else {
            if self.optional {
                return Ok(Decision::Pass(None));
            }
            trace_rejection(&AuthError::MissingToken, None, None, None);
            return Err(AuthError::MissingToken);
        };
        if found.cookie_only
            && let Some(csrf) = &self.csrf
        {
            csrf.check(method, headers, uri)
                .inspect_err(|e| trace_rejection(e, None, None, None))?;
        }
        let verifier = self.select(found.token)?;
        #[cfg(feature = "cache")]
        if let Some(hit) = self.cached::<C>(verifier, found.token) {
            return Ok(hit);
        }
        // Read before verifying: an entry is tagged with a generation no newer than its keys.
        #[cfg(feature = "cache")]
        let generation = verifier.keys.generation();
        let verified = match verifier.verify_scanned::<C>(found.token, found.jws_alphabet) {
            Ok(verified) => verified,
            #[cfg(feature = "remote")]
            Err(AuthError::UnknownKey) if verifier.keys.remote().is_some() => {
                return Ok(Decision::RefreshKeys(found.token.to_owned()));
            }
            Err(e) => return Err(e),
        };
        let claims = Arc::new(verified.claims);
        #[cfg(feature = "cache")]
        if let Some(cache) = &self.cache {
            let entry = crate::cache::Entry {
                claims: claims.clone(),
                exp: verified.exp,
                nbf: verified.nbf,
                id: verified.id.clone(),
                generation,
            };
            cache.insert(found.token, entry);
        }
        Ok(self.decide(Claims::from(claims), verified.id))
    }

    fn decide<C>(&self, claims: Claims<C>, id: Option<OwnedTokenId>) -> Decision<C> {
        match id {
            Some(id) if self.revocation.is_some() => Decision::CheckRevocation(claims, id),
            _ => Decision::Pass(Some(claims)),
        }
    }

    /// The verifier for `token` (with tenants: its issuer's), refusing unknown issuers.
    pub(crate) fn select(&self, token: &str) -> Result<&Verifier, AuthError> {
        self.verifiers
            .select(token, self.max_token_size)
            .inspect_err(|e| trace_rejection(e, None, None, None))
    }

    /// A cache hit for exactly this token, verified under the current generation of `verifier`'s
    /// keys and still within its `exp`/`nbf`.
    #[cfg(feature = "cache")]
    fn cached<C: Send + Sync + 'static>(
        &self,
        verifier: &Verifier,
        token: &str,
    ) -> Option<Decision<C>> {
        let entry = self
            .cache
            .as_ref()?
            .get(token, verifier.keys.generation())?;
        // A failing time check falls through to full verification, which reports it.
        let now = verifier.policy.clock.now();
        verifier
            .policy
            .check_times(entry.exp, entry.nbf, now)
            .ok()?;
        let claims = entry.claims.downcast::<C>().ok()?;
        Some(self.decide(Claims::from(claims), entry.id))
    }

    /// The revocation check for a verified token, as a future that owns what it needs.
    pub(crate) fn check_revocation(
        &self,
        id: OwnedTokenId,
    ) -> BoxFuture<'static, Result<Extensions, AuthError>> {
        let store = self.revocation.clone();
        let fail_open = self.revocation_fail_open;
        Box::pin(async move {
            let Some(store) = store else {
                return Ok(Extensions::new());
            };
            let result = match store.is_revoked(id.as_ref()).await {
                Ok(false) => Ok(Extensions::new()),
                Ok(true) => Err(AuthError::Revoked),
                // Fail closed unless told otherwise: an unreachable store must not turn
                // logged-out tokens back into valid ones.
                Err(_) if fail_open => Ok(Extensions::new()),
                Err(_) => Err(AuthError::RevocationUnavailable),
            };
            if let Err(e) = &result {
                trace_rejection(e, None, None, None);
            }
            result
        })
    }

    /// Refreshes a remote key source for the token's `kid`, then verifies the token again
    /// (and asks the revocation store). An unreachable source is a 503, not a 401: the token
    /// may well be valid.
    #[cfg(feature = "remote")]
    pub(crate) fn refresh_then_verify<C>(
        self: Arc<Self>,
        token: String,
    ) -> BoxFuture<'static, Result<Extensions, AuthError>>
    where
        C: DeserializeOwned + Send + Sync + 'static,
        R: Send + Sync + 'static,
    {
        Box::pin(async move {
            let verifier = self.select(&token)?;
            let remote = verifier.keys.remote().ok_or(AuthError::UnknownKey)?;
            let kid = verifier.kid_of(&token);
            if let Err(unavailable) = remote.refresh_for_unknown_kid(kid.as_deref()).await {
                let error = AuthError::KeysUnavailable {
                    retry_after_secs: unavailable.retry_after.as_secs().max(1),
                };
                trace_rejection(&error, None, kid.as_deref(), None);
                return Err(error);
            }
            let verified = verifier.verify::<C>(&token)?;
            let mut extensions = match verified.id {
                Some(id) if self.revocation.is_some() => self.check_revocation(id).await?,
                _ => Extensions::new(),
            };
            extensions.insert(Claims::new(verified.claims));
            Ok(extensions)
        })
    }
}

/// A CORS preflight: `OPTIONS` with `Access-Control-Request-Method` (Fetch standard §3.2.2).
/// Browsers never attach credentials to it, so authenticating it would break CORS.
fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS && headers.contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Configuration of a [`JwtAuthLayer`]; every check happens in [`build`](Self::build).
#[must_use = "a builder does nothing until `build` is called"]
pub struct JwtAuthBuilder<C, R = Rfc6750> {
    keys: KeyConfig,
    tenants: Vec<Tenant>,
    allowed: Option<AlgSet>,
    policy: ClaimsPolicy,
    max_token_size: usize,
    sources: Vec<TokenSource>,
    optional: bool,
    pass_preflight: bool,
    csrf: Option<CsrfPolicy>,
    revocation: Option<Arc<dyn Revocation>>,
    revocation_fail_open: bool,
    #[cfg(feature = "cache")]
    cache: Option<crate::cache::CacheConfig>,
    responder: R,
    error: Option<BuildError>,
    _claims: PhantomData<fn() -> C>,
}

impl<C> JwtAuthBuilder<C> {
    fn new() -> Self {
        JwtAuthBuilder {
            keys: KeyConfig::default(),
            tenants: Vec::new(),
            allowed: None,
            policy: ClaimsPolicy::default(),
            max_token_size: DEFAULT_MAX_TOKEN_SIZE,
            sources: vec![TokenSource::Bearer],
            optional: false,
            pass_preflight: true,
            csrf: Some(CsrfPolicy::default()),
            revocation: None,
            revocation_fail_open: false,
            #[cfg(feature = "cache")]
            cache: None,
            responder: Rfc6750::default(),
            error: None,
            _claims: PhantomData,
        }
    }

    /// Names the realm in `WWW-Authenticate` challenges (default `"api"`).
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.responder = Rfc6750::with_realm(realm);
        self
    }
}

impl<C, R> JwtAuthBuilder<C, R> {
    /// Verifies HS256 tokens with `secret` (at least 32 bytes, RFC 7518 §3.2).
    pub fn hs256(self, secret: impl AsRef<[u8]>) -> Self {
        self.key(Key::hmac(Algorithm::HS256, secret))
    }

    /// Verifies HS384 tokens with `secret` (at least 48 bytes).
    pub fn hs384(self, secret: impl AsRef<[u8]>) -> Self {
        self.key(Key::hmac(Algorithm::HS384, secret))
    }

    /// Verifies HS512 tokens with `secret` (at least 64 bytes).
    pub fn hs512(self, secret: impl AsRef<[u8]>) -> Self {
        self.key(Key::hmac(Algorithm::HS512, secret))
    }

    /// Verifies RS256 tokens with an RSA public key in PEM (at least 2048 bits).
    pub fn rs256_pem(self, pem: impl AsRef<[u8]>) -> Self {
        self.key(Key::pem(Algorithm::RS256, pem))
    }

    /// Verifies ES256 tokens with a P-256 public key in PEM.
    pub fn es256_pem(self, pem: impl AsRef<[u8]>) -> Self {
        self.key(Key::pem(Algorithm::ES256, pem))
    }

    /// Verifies EdDSA (Ed25519) tokens with a public key in PEM.
    pub fn eddsa_pem(self, pem: impl AsRef<[u8]>) -> Self {
        self.key(Key::pem(Algorithm::EdDSA, pem))
    }

    /// Adds a key; see [`Key`] for the kinds and for `kid`.
    pub fn key(mut self, key: Key) -> Self {
        self.keys.keys.push(key);
        self
    }

    /// Adds the keys of a static JWKS document.
    pub fn jwks(mut self, jwks: Jwks) -> Self {
        self.keys.jwks.push(jwks);
        self
    }

    /// Adds the keys of a JWKS document given as JSON text.
    pub fn jwks_json(self, json: &str) -> Self {
        match Jwks::from_json(json) {
            Ok(jwks) => self.jwks(jwks),
            Err(e) => self.fail(e),
        }
    }

    /// Adds the keys of a JWKS file.
    pub fn jwks_file(self, path: impl AsRef<Path>) -> Self {
        match Jwks::from_file(path) {
            Ok(jwks) => self.jwks(jwks),
            Err(e) => self.fail(e),
        }
    }

    /// Takes the keys from an identity provider's JWKS, found by URL or by OpenID Connect
    /// discovery, refreshed and rotated without a restart (see [`keys::remote`]). A token
    /// whose `kid` the current set lacks triggers a (rate-limited) refresh; while the provider
    /// is unreachable and no key fits, requests get 503 with `Retry-After`. When the source
    /// was discovered from an issuer, that issuer is required: it is added when no
    /// [`issuer`](Self::issuer) is configured, and a configured issuer other than it (compared
    /// exactly, OpenID Connect Discovery 1.0 §4.3) makes [`build`](Self::build) fail with
    /// [`BuildError::IssuerMismatch`], since that issuer's tokens would be verified with these
    /// keys.
    ///
    /// [`keys::remote`]: crate::keys::remote
    #[cfg(feature = "remote")]
    pub fn remote_jwks(mut self, remote: crate::keys::remote::RemoteJwks) -> Self {
        self.keys.remote = Some(remote);
        self
    }

    /// Adds a tenant: an issuer with its own keys and audiences (see [`tenant`](crate::tenant)).
    /// With tenants, keys and issuers are configured on the tenants, not on the layer.
    pub fn tenant(mut self, tenant: Tenant) -> Self {
        self.tenants.push(tenant);
        self
    }

    /// Restricts the accepted algorithms to these (RFC 8725 §3.1). Without it, each key's own
    /// algorithm is accepted; JWKs that name no `alg` verify the allowed algorithms of their
    /// key type (RS256/ES256/EdDSA when no list is given), `oct` ones only the HMAC algorithms
    /// they are long enough for (RFC 7518 §3.2, see [`Jwks`]).
    pub fn algorithms(mut self, algs: impl IntoIterator<Item = Algorithm>) -> Self {
        self.allowed = Some(AlgSet::from_iter(algs));
        self
    }

    /// Accepts tokens whose `iss` is `issuer`; may be called again to accept several. Once an
    /// issuer is configured, tokens without `iss` are refused.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.policy.issuers.push(issuer.into());
        self
    }

    /// Accepts tokens whose `aud` contains `audience`; may be called again to accept several.
    /// Once an audience is configured, tokens without `aud` are refused.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.policy.audiences.push(audience.into());
        self
    }

    /// Clock skew tolerated on `exp` and `nbf`, and on `iat` when a
    /// [maximum lifetime](Self::max_lifetime) is set (default 60 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.policy.leeway = leeway;
        self
    }

    /// Requires the header `typ` to be `typ`, compared case-insensitively with any
    /// `application/` prefix ignored: `"at+jwt"` admits only RFC 9068 access tokens, which
    /// keeps ID tokens and refresh tokens out (RFC 8725 §3.11).
    pub fn token_type(mut self, typ: impl Into<String>) -> Self {
        self.policy.token_type = Some(typ.into());
        self
    }

    /// Refuses tokens whose lifetime `exp - iat` exceeds `max` (and tokens without `iat`):
    /// a stolen signing key cannot mint tokens that never expire.
    pub fn max_lifetime(mut self, max: Duration) -> Self {
        self.policy.max_lifetime = Some(max);
        self
    }

    /// Refuses tokens that lack the claim `name`.
    pub fn require_claim(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        if !self.policy.required.contains(&name) {
            self.policy.required.push(name);
        }
        self
    }

    /// Accepts tokens without `exp`. Off by default: a token without expiry is valid forever.
    pub fn allow_missing_exp(mut self) -> Self {
        self.policy.require_exp = false;
        self
    }

    /// Caps the token size in bytes (default [`DEFAULT_MAX_TOKEN_SIZE`]); larger tokens are
    /// refused before any decoding.
    pub fn max_token_size(mut self, bytes: usize) -> Self {
        self.max_token_size = bytes;
        self
    }

    /// Also looks for the token in header `name` (the raw token).
    pub fn token_from_header(self, name: impl Into<String>) -> Self {
        self.token_from(TokenSource::header(name))
    }

    /// Also looks for the token in cookie `name`.
    pub fn token_from_cookie(self, name: impl Into<String>) -> Self {
        self.token_from(TokenSource::cookie(name))
    }

    /// Also looks for the token in query parameter `name`; see [`TokenSource::query`].
    pub fn token_from_query(self, name: impl Into<String>) -> Self {
        self.token_from(TokenSource::query(name))
    }

    /// Also looks for the token in `source`, after the sources already configured.
    pub fn token_from(mut self, source: TokenSource) -> Self {
        if !self.sources.contains(&source) {
            self.sources.push(source);
        }
        self
    }

    /// Looks for the token in exactly these sources, in this order (replacing the default
    /// `Authorization: Bearer`).
    pub fn token_sources(mut self, sources: impl IntoIterator<Item = TokenSource>) -> Self {
        self.sources.clear();
        for s in sources {
            self = self.token_from(s);
        }
        self
    }

    /// Lets requests without any token through, without claims. A token that is present
    /// but invalid is still refused.
    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    /// Also authenticates CORS preflight requests. By default they pass untouched, since
    /// browsers send them without credentials.
    pub fn authenticate_preflight(mut self) -> Self {
        self.pass_preflight = false;
        self
    }

    /// Sets what proves a cookie-authenticated, state-changing request genuine (see
    /// [`csrf`](crate::csrf)). The default, [`CsrfPolicy::same_origin`], applies whenever a
    /// cookie source is configured.
    pub fn csrf(mut self, policy: CsrfPolicy) -> Self {
        self.csrf = Some(policy);
        self
    }

    /// Turns the CSRF check off for cookie-borne tokens. Only for cookies that cannot be sent
    /// cross-site by construction (e.g. a non-browser client); see [`csrf`](crate::csrf).
    pub fn disable_csrf_protection(mut self) -> Self {
        self.csrf = None;
        self
    }

    /// Reads the time for `exp`, `nbf` and `iat` from `clock` (default: the system clock); a
    /// test moves a [`Clock::manual`] instead of sleeping.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.policy.clock = clock;
        self
    }

    /// Consults `store` for every verified token (see [`revocation`](crate::revocation)).
    /// The build fails when the leeway is longer than the store's
    /// [`retention_margin`](Revocation::retention_margin).
    pub fn revocation(mut self, store: Arc<dyn Revocation>) -> Self {
        self.revocation = Some(store);
        self
    }

    /// Lets requests through when the revocation store cannot be asked, instead of answering
    /// 503. Logged-out tokens then work again while the store is down: choose this only where
    /// availability matters more than revocation.
    pub fn revocation_fail_open(mut self) -> Self {
        self.revocation_fail_open = true;
        self
    }

    /// Keeps verified tokens in a bounded cache, so a token seen again skips the signature
    /// check and the JSON parse (see [`cache`](crate::cache)).
    #[cfg(feature = "cache")]
    pub fn cache(mut self, config: crate::cache::CacheConfig) -> Self {
        self.cache = Some(config);
        self
    }

    /// Answers refused requests with `responder` instead of [`Rfc6750`].
    pub fn responder<R2>(self, responder: R2) -> JwtAuthBuilder<C, R2> {
        JwtAuthBuilder {
            keys: self.keys,
            tenants: self.tenants,
            allowed: self.allowed,
            policy: self.policy,
            max_token_size: self.max_token_size,
            sources: self.sources,
            optional: self.optional,
            pass_preflight: self.pass_preflight,
            csrf: self.csrf,
            revocation: self.revocation,
            revocation_fail_open: self.revocation_fail_open,
            #[cfg(feature = "cache")]
            cache: self.cache,
            responder,
            error: self.error,
            _claims: PhantomData,
        }
    }

    fn fail(mut self, error: BuildError) -> Self {
        self.error.get_or_insert(error);
        self
    }

    /// Checks the configuration and builds the layer.
    pub fn build(self) -> Result<JwtAuthLayer<C, R>, BuildError> {
        let shared = self.build_shared()?;
        Ok(JwtAuthLayer {
            shared: Arc::new(shared),
            _claims: PhantomData,
        })
    }

    /// One verifier, or one per tenant.
    fn build_verifiers(&mut self) -> Result<Verifiers, BuildError> {
        let collect_id = self.revocation.is_some();
        let keys = std::mem::take(&mut self.keys);
        let tenants = std::mem::take(&mut self.tenants);
        if tenants.is_empty() {
            let (keys, allowed) = keys.build(self.allowed, &mut self.policy.issuers)?;
            let verifier = Verifier::new(
                keys,
                allowed,
                self.policy.clone(),
                self.max_token_size,
                collect_id,
            );
            return Ok(Verifiers::One(verifier));
        }
        if !keys.is_empty() || !self.policy.issuers.is_empty() {
            return Err(BuildError::InvalidSetting(
                "with tenants, keys and issuers belong to the tenants, not the layer",
            ));
        }
        let mut verifiers = Vec::with_capacity(tenants.len());
        for tenant in tenants {
            if let Some(e) = tenant.error {
                return Err(e);
            }
            if verifiers.iter().any(|(iss, _)| *iss == tenant.issuer) {
                return Err(BuildError::InvalidSetting(
                    "two tenants with the same issuer",
                ));
            }
            let mut policy = self.policy.clone();
            policy.issuers = vec![tenant.issuer.clone()];
            if !tenant.audiences.is_empty() {
                policy.audiences = tenant.audiences;
            }
            let (keys, allowed) = tenant.keys.build(self.allowed, &mut policy.issuers)?;
            let verifier = Verifier::new(keys, allowed, policy, self.max_token_size, collect_id);
            verifiers.push((tenant.issuer, verifier));
        }
        Ok(Verifiers::ByIssuer(verifiers))
    }

    pub(crate) fn build_shared(mut self) -> Result<Shared<R>, BuildError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.max_token_size == 0 {
            return Err(BuildError::InvalidSetting(
                "max_token_size must be positive",
            ));
        }
        if self.policy.required.len() > MAX_REQUIRED_CLAIMS {
            return Err(BuildError::InvalidSetting("at most 64 required claims"));
        }
        if self.sources.is_empty() {
            return Err(BuildError::InvalidSetting("no token source"));
        }
        let sources = self
            .sources
            .iter()
            .map(TokenSource::compile)
            .collect::<Result<Vec<_>, _>>()?;

        if let Some(store) = &self.revocation
            && self.policy.leeway > store.retention_margin()
        {
            // The store would forget a revoked token while this layer still accepts it.
            return Err(BuildError::InvalidSetting(
                "the leeway is longer than the revocation store's retention margin",
            ));
        }
        let verifiers = self.build_verifiers()?;
        let uses_cookies = sources.iter().any(|s| matches!(s, Source::Cookie(_)));
        let csrf = match self.csrf {
            Some(policy) if uses_cookies => Some(policy.compile()?),
            _ => None,
        };
        Ok(Shared {
            verifiers,
            max_token_size: self.max_token_size,
            sources,
            optional: self.optional,
            pass_preflight: self.pass_preflight,
            csrf,
            revocation: self.revocation,
            revocation_fail_open: self.revocation_fail_open,
            #[cfg(feature = "cache")]
            cache: self.cache.map(crate::cache::TokenCache::new),
            responder: Arc::new(self.responder),
        })
    }
}
