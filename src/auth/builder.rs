//! [`JwtAuthBuilder`]: the whole configuration, validated once in `build`.

use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::checks::{Checks, PayloadCheck};
use super::layer::{DEFAULT_MAX_TOKEN_SIZE, JwtAuthLayer};
use super::pipeline::Pipeline;
use super::public::PublicPaths;
use crate::keys::{AlgSet, KeyConfig};
use crate::resource::ResourceConfig;
use crate::revocation::Revocation;
use crate::source::Source;
use crate::tenant::Verifiers;
use crate::validation::{ClaimsPolicy, Confirmations, MAX_REQUIRED_CLAIMS};
use crate::verify::Verifier;
use crate::{Algorithm, BuildError, Clock, CsrfPolicy, Jwks, Key, Rfc6750, Tenant, TokenSource};

/// Configuration of a [`JwtAuthLayer`]; every check happens in [`build`](Self::build).
///
/// # The claims policy
///
/// jsonwebtoken's own validation has gaps a middleware must close (its `nbf` check is off by
/// default, `iss`/`aud` are checked only when present, `typ` never), so the registered claims
/// are read by the crate's own strict reader (wrong JSON types and repeated claims refused) and
/// checked here, before the application's claims type is read. A token bound to its holder's
/// key or certificate (`cnf`, RFC 7800 §3.1) passes only when the layer checks that binding
/// ([`dpop`](Self::dpop), [`certificate_bound_tokens`](Self::certificate_bound_tokens)).
///
/// The policy is configured on [`JwtAuthBuilder`](crate::JwtAuthBuilder):
///
/// ```
/// use std::time::Duration;
/// use tower_jwt_auth::JwtAuthLayer;
///
/// #[derive(Clone, serde::Deserialize)]
/// struct MyClaims { sub: String }
///
/// let layer = JwtAuthLayer::<MyClaims>::builder()
///     .hs256(b"an example secret that is 32 bytes+")
///     .issuer("https://id.example.com")   // now a required claim
///     .audience("orders-api")             // now a required claim
///     .leeway(Duration::from_secs(30))
///     .token_type("at+jwt")               // RFC 9068 access tokens only
///     .max_lifetime(Duration::from_secs(3600))
///     .require_claim("sub")
///     .build()
///     .unwrap();
/// # let _ = layer;
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct JwtAuthBuilder<C, R = Rfc6750> {
    keys: KeyConfig,
    tenants: Vec<Tenant>,
    allowed: Option<AlgSet>,
    policy: ClaimsPolicy,
    max_token_size: usize,
    sources: Vec<TokenSource>,
    optional: bool,
    public_paths: Vec<String>,
    pass_preflight: bool,
    csrf: Option<CsrfPolicy>,
    revocation: Option<Arc<dyn Revocation>>,
    revocation_fail_open: bool,
    checks: Checks,
    #[cfg(feature = "cache")]
    cache: Option<crate::cache::CacheConfig>,
    responder: R,
    /// `responder` is `Rfc6750::default()`: neither a realm nor a responder was set.
    default_responder: bool,
    resource: ResourceConfig,
    error: Option<BuildError>,
    _claims: PhantomData<fn() -> C>,
}

impl<C> JwtAuthBuilder<C> {
    pub(crate) fn new() -> Self {
        JwtAuthBuilder {
            keys: KeyConfig::default(),
            tenants: Vec::new(),
            allowed: None,
            policy: ClaimsPolicy::default(),
            max_token_size: DEFAULT_MAX_TOKEN_SIZE,
            sources: vec![TokenSource::Bearer],
            optional: false,
            public_paths: Vec::new(),
            pass_preflight: false,
            csrf: Some(CsrfPolicy::default()),
            revocation: None,
            revocation_fail_open: false,
            checks: Checks::default(),
            #[cfg(feature = "cache")]
            cache: None,
            responder: Rfc6750::default(),
            default_responder: true,
            resource: ResourceConfig::default(),
            error: None,
            _claims: PhantomData,
        }
    }

    /// Names the realm in `WWW-Authenticate` challenges (default `"api"`).
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.responder = Rfc6750::with_realm(realm);
        self.default_responder = false;
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

    /// Adds a tenant: an issuer with its own keys and audiences (see [`tenant`](crate::Tenant)).
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
        self.allowed = Some(AlgSet::from_iter(algs.into_iter().map(Algorithm::jwt)));
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

    /// Refuses tokens whose claims `check` returns `false` for: a rule of the application's
    /// that the settings above cannot express (a tenant that must be enabled, a claim that must
    /// hold one of a few values). A refused token is answered 401 `invalid_token`
    /// (RFC 6750 §3.1: the token is not acceptable here at all), with
    /// [`AuthError::ClaimsRejected`](crate::AuthError::ClaimsRejected), through the layer's
    /// responder like every refusal; the response names no claim (the check answers only
    /// yes or no, so nothing of the token can reach it). A token that is fine but lacks a
    /// permission for one route is a 403, the job of
    /// [`RequireClaims`](crate::authorize::RequireClaims), not of this hook.
    ///
    /// The check sees the claims as the application's type `C`, after the signature and the
    /// claims policy passed and before the revocation store is asked; it runs on every
    /// request, for a token served from the [cache](Self::cache) too, and whichever
    /// [tenant](Self::tenant) verified the token. Called again, it adds a check: a token must
    /// pass them all. It must not block: it runs inside the service's `call`. To know why a
    /// token was refused, log from inside the check (a claim, never the token).
    ///
    /// ```
    /// # #[cfg(feature = "issue")] {
    /// use tower_jwt_auth::{AuthError, JwtAuthLayer};
    /// use tower_jwt_auth::issue::TokenIssuer;
    ///
    /// #[derive(Debug, serde::Deserialize)]
    /// struct MyClaims { sub: String, tenant: String }
    ///
    /// let secret = b"an example secret that is 32 bytes+";
    /// let auth = JwtAuthLayer::<MyClaims>::builder()
    ///     .hs256(secret)
    ///     .validate(|claims: &MyClaims| claims.tenant == "acme")
    ///     .validate(|claims: &MyClaims| !claims.sub.is_empty())
    ///     .build()
    ///     .unwrap();
    /// let issuer = TokenIssuer::hs256(secret).unwrap();
    /// let acme = issuer.issue("alice", &serde_json::json!({ "tenant": "acme" })).unwrap();
    /// let other = issuer.issue("alice", &serde_json::json!({ "tenant": "other" })).unwrap();
    /// assert_eq!(auth.verify(&acme.token).unwrap().tenant, "acme");
    /// assert_eq!(auth.verify(&other.token).unwrap_err(), AuthError::ClaimsRejected);
    /// # }
    /// ```
    pub fn validate(mut self, check: impl Fn(&C) -> bool + Send + Sync + 'static) -> Self
    where
        C: 'static,
    {
        self.checks.add_claims(check);
        self
    }

    /// Adds a check on the claims set's JSON, refusing with the reason it names: a provider
    /// preset's rule, which reads only the token's own claims, so a cached copy of the token
    /// need not pass it again.
    pub(crate) fn payload_check(mut self, check: PayloadCheck) -> Self {
        self.checks.add_payload(check);
        self
    }

    /// Fails the build with `error`: for a preset given an argument it cannot use.
    pub(crate) fn refuse(self, error: &'static str) -> Self {
        self.fail(BuildError::InvalidSetting(error))
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

    /// Leaves requests for `path` unauthenticated: they pass without a look at any token and
    /// reach the inner service with no claims (the [`Claims`](crate::Claims) extractor answers
    /// them 401, `Option<Claims<C>>` is `None`). For one layer in front of a whole tonic
    /// server that leaves the health check open, where `add_service(auth.layer(svc))` per
    /// service does not fit. May be called again; `path` is either an exact path, or a prefix
    /// followed by `/*` (every path below it):
    ///
    /// ```
    /// use tower_jwt_auth::JwtAuthLayer;
    ///
    /// # #[derive(serde::Deserialize)] struct MyClaims { sub: String }
    /// let auth = JwtAuthLayer::<MyClaims>::builder()
    ///     .hs256(b"an example secret that is 32 bytes+")
    ///     .public_path("/grpc.health.v1.Health/Check")
    ///     .public_path("/grpc.reflection.v1.ServerReflection/*")
    ///     .build()
    ///     .unwrap();
    /// # let _ = auth;
    /// ```
    ///
    /// The request's path is compared raw, as received (RFC 3986 §3.3): case-sensitive, not
    /// percent-decoded, no `.`/`..` segment resolved, no `//` merged. Since something behind
    /// the layer may normalise paths (`/public/../admin` is `/admin` to some routers), a
    /// request is public only when its path is in plain form: non-empty segments of RFC 3986
    /// `pchar`s other than `%` and `;`, none `.` or `..`; any other path is authenticated as
    /// usual. The same rule holds for `path` itself, which must not contain `*` but in a final
    /// `/*`, and `/*` alone (everything public) is refused: [`build`](Self::build) fails.
    pub fn public_path(mut self, path: impl Into<String>) -> Self {
        self.public_paths.push(path.into());
        self
    }

    /// Lets CORS preflight requests through unauthenticated, for a `CorsLayer` placed *inside*
    /// this layer (browsers send preflights without credentials, Fetch §3.2.2). Off by
    /// default: a `CorsLayer` outside this layer answers preflights before they arrive here,
    /// which is the recommended order.
    ///
    /// A preflight is an `OPTIONS` request with `Origin` and `Access-Control-Request-Method`,
    /// no `Content-Type`, no `Transfer-Encoding`, no `Content-Length` other than 0, and not
    /// gRPC. It reaches the inner service without claims, so use this only when what sits
    /// inside answers `OPTIONS` itself: a service that ignores the method (a tonic service,
    /// axum's `any`, `route_service`, `nest_service` or `fallback`) would serve it as a call.
    pub fn pass_cors_preflight(mut self) -> Self {
        self.pass_preflight = true;
        self
    }

    /// Sets what proves a cookie-authenticated, state-changing request genuine (see
    /// [`csrf`](crate::CsrfPolicy)). The default, [`CsrfPolicy::same_origin`], applies whenever a
    /// cookie source is configured.
    pub fn csrf(mut self, policy: CsrfPolicy) -> Self {
        self.csrf = Some(policy);
        self
    }

    /// Turns the CSRF check off for cookie-borne tokens. Only for cookies that cannot be sent
    /// cross-site by construction (e.g. a non-browser client); see [`csrf`](crate::CsrfPolicy).
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

    /// Checks DPoP proofs (RFC 9449): tokens bound to a client's key are accepted with a valid
    /// proof of that key, and, with [`Dpop::required`](crate::dpop::Dpop::required), only
    /// such tokens (see [`dpop`](crate::dpop)). Apply such a layer once on a request's path:
    /// each pass spends the proof (see
    /// [`Dpop::replay_store`](crate::dpop::Dpop::replay_store)).
    #[cfg(feature = "dpop")]
    pub fn dpop(mut self, dpop: crate::dpop::Dpop) -> Self {
        self.resource.dpop = Some(dpop);
        self
    }

    /// Describes the API as an OAuth protected resource (RFC 9728): every challenge then
    /// points to the metadata document, which [`JwtAuthLayer::resource_metadata`] serves (see
    /// [`resource_metadata`](crate::resource_metadata)).
    pub fn resource_metadata(
        mut self,
        metadata: crate::resource_metadata::ResourceMetadata,
    ) -> Self {
        self.resource.metadata = Some(metadata);
        self
    }

    /// Checks certificate-bound tokens (RFC 8705 §3): a token whose `cnf` names a client
    /// certificate (`x5t#S256`) passes only when the request carries that certificate as a
    /// [`ClientCertificate`](crate::mtls::ClientCertificate), put there by the TLS layer (see
    /// [`mtls`](crate::mtls)).
    pub fn certificate_bound_tokens(mut self) -> Self {
        self.resource.certificate_bound = true;
        self
    }

    /// Accepts a token bound to a key or a certificate (its `cnf` claim, RFC 7800 §3.1) by a
    /// method this layer does not check, as a bearer token. Off by default: such a token is
    /// refused ([`AuthError::UnsupportedConfirmation`](crate::AuthError::UnsupportedConfirmation)), since its issuer meant it for its
    /// holder alone; the layer checks `jkt` with [`dpop`](Self::dpop) and `x5t#S256` with
    /// [`certificate_bound_tokens`](Self::certificate_bound_tokens). For a resource server
    /// that cannot check the binding yet while its authorization server already binds tokens.
    pub fn accept_bound_tokens_as_bearer(mut self) -> Self {
        self.policy.bound_as_bearer = true;
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
            public_paths: self.public_paths,
            pass_preflight: self.pass_preflight,
            csrf: self.csrf,
            revocation: self.revocation,
            revocation_fail_open: self.revocation_fail_open,
            checks: self.checks,
            #[cfg(feature = "cache")]
            cache: self.cache,
            responder,
            default_responder: false,
            resource: self.resource,
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
        Ok(JwtAuthLayer {
            pipeline: Arc::new(self.build_pipeline()?),
            _claims: PhantomData,
        })
    }

    /// One verifier, or one per tenant.
    fn build_verifiers(&mut self) -> Result<Verifiers, BuildError> {
        let revocable = self.revocation.is_some();
        let keys = std::mem::take(&mut self.keys);
        let tenants = std::mem::take(&mut self.tenants);
        if tenants.is_empty() {
            let (keys, allowed) = keys.build(self.allowed, &mut self.policy.issuers)?;
            return Ok(Verifiers::One(Verifier {
                keys,
                allowed,
                policy: self.policy.clone(),
                revocable,
            }));
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
            let verifier = Verifier {
                keys,
                allowed,
                policy,
                revocable,
            };
            verifiers.push((tenant.issuer, verifier));
        }
        Ok(Verifiers::ByIssuer(verifiers))
    }

    fn build_pipeline(mut self) -> Result<Pipeline<R>, BuildError> {
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
        let mut sources = self
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
        // The confirmation methods this layer checks, before the verifiers copy the policy.
        #[cfg(feature = "dpop")]
        if self.resource.dpop.is_some() {
            self.policy.confirmations = self.policy.confirmations.with(Confirmations::JKT);
        }
        if self.resource.certificate_bound {
            self.policy.confirmations = self.policy.confirmations.with(Confirmations::X5T_S256);
        }
        let public = PublicPaths::new(&self.public_paths)?;
        let verifiers = self.build_verifiers()?;
        #[cfg(feature = "metrics")]
        let issuers = crate::metrics::Issuers::new(verifiers.issuers());
        let resource = std::mem::take(&mut self.resource).build(
            &mut sources,
            &verifiers,
            &self.policy.clock,
            self.max_token_size,
        )?;
        let uses_cookies = sources.iter().any(|s| matches!(s, Source::Cookie(_)));
        let csrf = match self.csrf {
            Some(policy) if uses_cookies => Some(policy.compile()?),
            _ => None,
        };
        Ok(Pipeline {
            verifiers,
            max_token_size: self.max_token_size,
            sources,
            optional: self.optional,
            public,
            pass_preflight: self.pass_preflight,
            csrf,
            revocation: self.revocation,
            revocation_fail_open: self.revocation_fail_open,
            checks: self.checks,
            #[cfg(feature = "cache")]
            cache: self.cache.map(crate::cache::TokenCache::new),
            responder: self.responder,
            share_responder: !self.default_responder || resource.extends_challenges(),
            id: crate::claims::LayerId::next(),
            resource,
            #[cfg(feature = "metrics")]
            issuers,
        })
    }
}
