use http::StatusCode;

/// The reason a request was not let through.
///
/// The `Display` text is the `error_description` sent to the client: short, fixed, and free of
/// anything the client sent.
///
/// [`AuthError`] has one variant per reason a request is turned away. Each variant knows the
/// HTTP status and the RFC 6750 §3.1 error code it maps to, so every [`ErrorResponder`]
/// answers the same reason the same way. The `error_description` texts are fixed strings: they
/// never contain the token or anything copied out of it.
///
/// [`BuildError`] is what [`JwtAuthBuilder::build`](crate::JwtAuthBuilder::build) returns for a
/// configuration that would be unsafe or could never accept a token.
///
/// ```
/// use tower_jwt_auth::AuthError;
///
/// let err = AuthError::Expired;
/// assert_eq!(err.status(), http::StatusCode::UNAUTHORIZED);
/// assert_eq!(err.error_code(), Some("invalid_token"));
/// assert_eq!(AuthError::MissingToken.error_code(), None);
/// ```
///
/// [`ErrorResponder`]: crate::ErrorResponder
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No token in any configured source (RFC 6750 §3.1: no error code is sent).
    #[error("no bearer token")]
    MissingToken,
    /// The request carried two different tokens (RFC 6750 §2: one method per request).
    #[error("more than one token in the request")]
    MultipleTokens,
    /// A token source was present but not well-formed (e.g. `Authorization: Bearer` with no
    /// token, or bytes outside the `b64token` alphabet of RFC 6750 §2.1).
    #[error("malformed credentials")]
    MalformedCredentials,
    /// The token is larger than the configured cap; it was not decoded.
    #[error("token too large")]
    TokenTooLarge,
    /// The token is not a compact JWS: three base64url segments (RFC 7515 §7.1).
    #[error("malformed token")]
    Malformed,
    /// The JOSE header could not be read (not base64url, not a JSON object, duplicate member).
    #[error("malformed token header")]
    MalformedHeader,
    /// `alg` is `none`, unknown, or not in the configured allow-list (RFC 8725 §3.1).
    #[error("algorithm not allowed")]
    AlgorithmNotAllowed,
    /// The header has a `crit` member; no extension is understood (RFC 7515 §4.1.11).
    #[error("unsupported critical header")]
    CriticalHeader,
    /// The header carries a key or a key URL (`jwk`, `jku`, `x5u`), which is never trusted.
    #[error("embedded keys are not accepted")]
    EmbeddedKey,
    /// The token is not of the accepted type: the header's `typ` is not the configured one
    /// (RFC 8725 §3.11, RFC 9068 §4), or a provider preset's own type claim says it is
    /// another kind of token (Amazon Cognito's `token_use` of an ID token).
    #[error("wrong token type")]
    WrongType,
    /// No configured key fits the token's `kid` and `alg`.
    #[error("unknown signing key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("invalid signature")]
    InvalidSignature,
    /// The claims are not a JSON object, a claim has the wrong type, or a claim is repeated.
    #[error("malformed claims")]
    MalformedClaims,
    /// The claims did not deserialize into the application's claims type.
    #[error("claims do not match the expected shape")]
    ClaimsShape,
    /// A required claim is absent (`exp` by default, `iss`/`aud` when configured, and any
    /// claim named with `require_claim`).
    #[error("missing required claim")]
    MissingClaim,
    /// `exp` is in the past, beyond the leeway (RFC 7519 §4.1.4).
    #[error("token expired")]
    Expired,
    /// `nbf` (RFC 7519 §4.1.5) or `iat` (§4.1.6) is in the future, beyond the leeway.
    #[error("token not yet valid")]
    NotYetValid,
    /// `exp - iat` exceeds the configured maximum lifetime.
    #[error("token lifetime not accepted")]
    LifetimeTooLong,
    /// `iss` is not one of the configured issuers (RFC 7519 §4.1.1).
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` names none of the configured audiences (RFC 7519 §4.1.3).
    #[error("wrong audience")]
    WrongAudience,
    /// A claim check of the application
    /// ([`JwtAuthBuilder::validate`](crate::JwtAuthBuilder::validate)) refused the verified
    /// claims: 401 `invalid_token` (RFC 6750 §3.1), the token is not acceptable here at all.
    #[error("claims not accepted")]
    ClaimsRejected,
    /// The token verified but has been revoked (by `jti`, or all of its subject's tokens).
    #[error("token revoked")]
    Revoked,
    /// The token is valid but lacks a scope or role the route requires (RFC 6750 §3.1): 403.
    #[error("insufficient scope")]
    InsufficientScope {
        /// The scope(s) the route needs, for the challenge's `scope` attribute.
        scope: String,
    },
    /// A state-changing request authenticated by cookie carried no CSRF proof: 403.
    #[error("cross-site request refused")]
    CsrfRejected,
    /// The token's key could not be obtained because the key source is unreachable: 503.
    #[error("signing keys temporarily unavailable")]
    KeysUnavailable {
        /// How long the client should wait before retrying.
        retry_after_secs: u64,
    },
    /// The revocation store could not be asked and the layer fails closed: 503.
    #[error("revocation check unavailable")]
    RevocationUnavailable,
    /// The middleware is wired wrongly (e.g. `RequireClaims` without `JwtAuthLayer` in front
    /// of it): 500, never a pass.
    #[error("authentication misconfigured")]
    Misconfigured,
    /// The `DPoP` proof is missing, repeated, malformed, badly signed, or does not match the
    /// request or the token (RFC 9449 §4.3): `error="invalid_dpop_proof"` (§7.1).
    #[error("invalid DPoP proof")]
    InvalidDpopProof,
    /// The token must come with a DPoP proof: it is bound to a key (`cnf.jkt`) but was
    /// presented as a Bearer token (RFC 9449 §7.2), or the layer requires DPoP.
    #[error("token requires a DPoP proof")]
    DpopRequired,
    /// The proof's key is not the one the token is bound to (`cnf.jkt`, RFC 9449 §6.1), or
    /// the token is bound to no key: a mismatched proof, `error="invalid_dpop_proof"`.
    #[error("DPoP key binding does not match")]
    DpopKeyMismatch,
    /// The layer requires a server-provided nonce in DPoP proofs and the proof had none, or
    /// not a current one: `error="use_dpop_nonce"` and a fresh nonce in `DPoP-Nonce` (RFC 9449
    /// §9).
    #[error("DPoP nonce required")]
    UseDpopNonce,
    /// The token is bound to a client certificate (`cnf.x5t#S256`) and the request came
    /// without it (RFC 8705 §3).
    #[error("client certificate does not match the token")]
    CertificateMismatch,
    /// The token is bound to a key or certificate (its `cnf` claim, RFC 7800 §3.1) by a
    /// confirmation method this layer does not check: `jkt` without
    /// [`dpop`](crate::JwtAuthBuilder::dpop), `x5t#S256` without
    /// [`certificate_bound_tokens`](crate::JwtAuthBuilder::certificate_bound_tokens), or any
    /// other. Accepting it as a bearer token would drop the binding its issuer asked for
    /// (unless [`accept_bound_tokens_as_bearer`](crate::JwtAuthBuilder::accept_bound_tokens_as_bearer)).
    #[error("token bound by a confirmation method this resource does not check")]
    UnsupportedConfirmation,
}

impl AuthError {
    /// The HTTP status for this reason (RFC 6750 §3.1 for token problems).
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::MultipleTokens | AuthError::MalformedCredentials => StatusCode::BAD_REQUEST,
            AuthError::InsufficientScope { .. } | AuthError::CsrfRejected => StatusCode::FORBIDDEN,
            AuthError::KeysUnavailable { .. } | AuthError::RevocationUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            AuthError::Misconfigured => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// The RFC 6750 §3.1 `error` code (RFC 9449 §7.1's `invalid_dpop_proof` for a bad or
    /// mismatched DPoP proof, §9's `use_dpop_nonce`). `None` when the request carried no token
    /// at all (§3.1: the resource server should then send no error code) and for the reasons
    /// that are not about the token (CSRF,
    /// unavailable dependencies, misconfiguration).
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            AuthError::MultipleTokens | AuthError::MalformedCredentials => Some("invalid_request"),
            AuthError::InsufficientScope { .. } => Some("insufficient_scope"),
            // A proof made with another key than the token's is a mismatched proof.
            AuthError::InvalidDpopProof | AuthError::DpopKeyMismatch => Some("invalid_dpop_proof"),
            AuthError::UseDpopNonce => Some("use_dpop_nonce"),
            AuthError::MissingToken
            | AuthError::CsrfRejected
            | AuthError::KeysUnavailable { .. }
            | AuthError::RevocationUnavailable
            | AuthError::Misconfigured => None,
            _ => Some("invalid_token"),
        }
    }

    /// True when the response carries a `WWW-Authenticate` challenge (`Bearer`, or `DPoP` on a
    /// layer with DPoP): every 400, 401 and the 403 `insufficient_scope` (RFC 6750 §3, RFC 9449
    /// §7.1).
    pub fn has_challenge(&self) -> bool {
        self.error_code().is_some() || matches!(self, AuthError::MissingToken)
    }

    /// The gRPC status code for this reason: 16 `UNAUTHENTICATED` for token problems, 7
    /// `PERMISSION_DENIED` for 403s, 14 `UNAVAILABLE` for 503s, 13 `INTERNAL` for 500.
    pub fn grpc_status(&self) -> u16 {
        match self.status() {
            StatusCode::FORBIDDEN => 7,
            StatusCode::SERVICE_UNAVAILABLE => 14,
            StatusCode::INTERNAL_SERVER_ERROR => 13,
            _ => 16,
        }
    }

    /// Seconds after which a retry may succeed, for the `Retry-After` header of a 503.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            AuthError::KeysUnavailable { retry_after_secs } => Some(*retry_after_secs),
            AuthError::RevocationUnavailable => Some(1),
            _ => None,
        }
    }

    /// Every reason whose response is the same whatever the request: their challenges are
    /// built once per responder. `InsufficientScope` names a route's scope, so it is not here.
    pub(crate) const FIXED: [AuthError; 32] = [
        AuthError::MissingToken,
        AuthError::MultipleTokens,
        AuthError::MalformedCredentials,
        AuthError::TokenTooLarge,
        AuthError::Malformed,
        AuthError::MalformedHeader,
        AuthError::AlgorithmNotAllowed,
        AuthError::CriticalHeader,
        AuthError::EmbeddedKey,
        AuthError::WrongType,
        AuthError::UnknownKey,
        AuthError::InvalidSignature,
        AuthError::MalformedClaims,
        AuthError::ClaimsShape,
        AuthError::MissingClaim,
        AuthError::Expired,
        AuthError::NotYetValid,
        AuthError::LifetimeTooLong,
        AuthError::WrongIssuer,
        AuthError::WrongAudience,
        AuthError::ClaimsRejected,
        AuthError::Revoked,
        AuthError::CsrfRejected,
        AuthError::KeysUnavailable {
            retry_after_secs: 0,
        },
        AuthError::RevocationUnavailable,
        AuthError::Misconfigured,
        AuthError::InvalidDpopProof,
        AuthError::DpopRequired,
        AuthError::DpopKeyMismatch,
        AuthError::UseDpopNonce,
        AuthError::CertificateMismatch,
        AuthError::UnsupportedConfirmation,
    ];

    /// This reason's index in [`FIXED`](Self::FIXED), if it has one.
    pub(crate) fn slot(&self) -> Option<usize> {
        Some(match self {
            AuthError::MissingToken => 0,
            AuthError::MultipleTokens => 1,
            AuthError::MalformedCredentials => 2,
            AuthError::TokenTooLarge => 3,
            AuthError::Malformed => 4,
            AuthError::MalformedHeader => 5,
            AuthError::AlgorithmNotAllowed => 6,
            AuthError::CriticalHeader => 7,
            AuthError::EmbeddedKey => 8,
            AuthError::WrongType => 9,
            AuthError::UnknownKey => 10,
            AuthError::InvalidSignature => 11,
            AuthError::MalformedClaims => 12,
            AuthError::ClaimsShape => 13,
            AuthError::MissingClaim => 14,
            AuthError::Expired => 15,
            AuthError::NotYetValid => 16,
            AuthError::LifetimeTooLong => 17,
            AuthError::WrongIssuer => 18,
            AuthError::WrongAudience => 19,
            AuthError::ClaimsRejected => 20,
            AuthError::Revoked => 21,
            AuthError::CsrfRejected => 22,
            AuthError::KeysUnavailable { .. } => 23,
            AuthError::RevocationUnavailable => 24,
            AuthError::Misconfigured => 25,
            AuthError::InvalidDpopProof => 26,
            AuthError::DpopRequired => 27,
            AuthError::DpopKeyMismatch => 28,
            AuthError::UseDpopNonce => 29,
            AuthError::CertificateMismatch => 30,
            AuthError::UnsupportedConfirmation => 31,
            AuthError::InsufficientScope { .. } => return None,
        })
    }

    /// A short, stable name for logs and metrics (`"expired"`, `"invalid_signature"`, …).
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "missing_token",
            AuthError::MultipleTokens => "multiple_tokens",
            AuthError::MalformedCredentials => "malformed_credentials",
            AuthError::TokenTooLarge => "token_too_large",
            AuthError::Malformed => "malformed_token",
            AuthError::MalformedHeader => "malformed_header",
            AuthError::AlgorithmNotAllowed => "algorithm_not_allowed",
            AuthError::CriticalHeader => "critical_header",
            AuthError::EmbeddedKey => "embedded_key",
            AuthError::WrongType => "wrong_type",
            AuthError::UnknownKey => "unknown_key",
            AuthError::InvalidSignature => "invalid_signature",
            AuthError::MalformedClaims => "malformed_claims",
            AuthError::ClaimsShape => "claims_shape",
            AuthError::MissingClaim => "missing_claim",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::LifetimeTooLong => "lifetime_too_long",
            AuthError::WrongIssuer => "wrong_issuer",
            AuthError::WrongAudience => "wrong_audience",
            AuthError::ClaimsRejected => "claims_rejected",
            AuthError::Revoked => "revoked",
            AuthError::InsufficientScope { .. } => "insufficient_scope",
            AuthError::CsrfRejected => "csrf_rejected",
            AuthError::KeysUnavailable { .. } => "keys_unavailable",
            AuthError::RevocationUnavailable => "revocation_unavailable",
            AuthError::Misconfigured => "misconfigured",
            AuthError::InvalidDpopProof => "invalid_dpop_proof",
            AuthError::DpopRequired => "dpop_required",
            AuthError::DpopKeyMismatch => "dpop_key_mismatch",
            AuthError::UseDpopNonce => "use_dpop_nonce",
            AuthError::CertificateMismatch => "certificate_mismatch",
            AuthError::UnsupportedConfirmation => "unsupported_confirmation",
        }
    }
}

/// A configuration that [`JwtAuthBuilder::build`](crate::JwtAuthBuilder::build) refuses.
///
/// Every mistake that would otherwise show up per request (or, worse, let a forged token
/// through) surfaces here, once, at start-up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No verification key was configured.
    #[error("no verification key configured")]
    NoKeys,
    /// An HMAC secret is shorter than the hash output (RFC 7518 §3.2).
    #[error("{alg:?} secret is {len} bytes; RFC 7518 §3.2 requires at least {min}")]
    WeakSecret {
        /// The algorithm the secret was given for.
        alg: crate::Algorithm,
        /// The secret's length in bytes.
        len: usize,
        /// The minimum length for that algorithm.
        min: usize,
    },
    /// An RSA key is shorter than 2048 bits (RFC 7518 §3.3).
    #[error("RSA key of {bits} bits; at least 2048 are required")]
    WeakRsaKey {
        /// The modulus length in bits.
        bits: usize,
    },
    /// A key could not be parsed.
    #[error("invalid key{}: {reason}", kid.as_ref().map(|k| format!(" {k:?}")).unwrap_or_default())]
    InvalidKey {
        /// The key's `kid`, when it has one.
        kid: Option<String>,
        /// What was wrong with it.
        reason: String,
    },
    /// A key was given for an algorithm of another family (e.g. a PEM public key for HS256).
    #[error("key for {alg:?} is not of that algorithm's family")]
    KeyAlgorithmMismatch {
        /// The algorithm the key was declared for.
        alg: crate::Algorithm,
    },
    /// HMAC secrets and public keys in one key set: the classic algorithm-confusion set-up
    /// (RFC 8725 §2.1), refused outright.
    #[error("HMAC secrets and asymmetric keys cannot be mixed in one layer")]
    MixedKeyFamilies,
    /// The algorithm allow-list is empty, or allows nothing any configured key can verify.
    #[error("no allowed algorithm matches a configured key")]
    NoUsableAlgorithm,
    /// A JWKS document (RFC 7517 §5) was not valid JSON, had no `keys` array, or held no
    /// key usable with the allowed algorithms.
    #[error("invalid JWKS document: {0}")]
    InvalidJwks(String),
    /// The first fetch of a remote key set failed: the connection or TLS handshake failed,
    /// it timed out, the body was too large, or the server answered with a status other
    /// than 200 (redirects are not followed).
    #[error("cannot fetch keys: GET {url}: {reason}")]
    KeySourceUnreachable {
        /// The URL that was fetched (a `jwks_uri` or a discovery document).
        url: String,
        /// What went wrong, e.g. `HTTP 503 Service Unavailable`.
        reason: String,
    },
    /// OpenID Connect discovery failed (OpenID Connect Discovery 1.0 §4): the configuration
    /// document was not valid JSON, named another issuer than the configured one (§4.3), or
    /// its `jwks_uri` was not acceptable.
    #[error("OpenID Connect discovery for {issuer:?}: {reason}")]
    Discovery {
        /// The configured issuer.
        issuer: String,
        /// What was wrong with the discovery document.
        reason: String,
    },
    /// A [`RemoteJwks`](crate::keys::remote::RemoteJwks) discovered from one issuer was given to
    /// a tenant, or a layer, that accepts tokens of another issuer: its keys would verify
    /// tokens claiming that other issuer. Issuers are compared exactly, byte for byte (OpenID
    /// Connect Discovery 1.0 §4.3), so a trailing `/` is a different issuer. Use one
    /// [`Tenant`](crate::Tenant) per issuer, or, for a key set that really is shared by
    /// several issuers, `RemoteJwks::from_jwks_uri` with explicit
    /// [`issuer`](crate::JwtAuthBuilder::issuer)s.
    #[error(
        "keys discovered from issuer {discovered:?} cannot verify tokens of issuer \
         {configured:?} (issuers are compared exactly, OpenID Connect Discovery 1.0 §4.3)"
    )]
    IssuerMismatch {
        /// The issuer the tenant or the layer accepts tokens of.
        configured: String,
        /// The issuer the key set was discovered from.
        discovered: String,
    },
    /// The HTTP client for remote keys could not be set up (e.g. no TLS roots).
    #[error("cannot set up the HTTP client: {0}")]
    HttpClient(String),
    /// A key file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file's path.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A header or cookie name is not a valid HTTP token.
    #[error("invalid token source {0:?}")]
    InvalidSource(String),
    /// A setting is out of range (e.g. a zero size cap).
    #[error("invalid setting: {0}")]
    InvalidSetting(&'static str),
}
