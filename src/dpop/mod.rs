//! DPoP: access tokens bound to a key the client proves it holds (RFC 9449), feature `dpop`.
//!
//! A DPoP-bound access token names its client's public key by thumbprint (`cnf.jkt`, RFC 9449
//! §6.1). The client sends it as `Authorization: DPoP <token>` together with a `DPoP` header:
//! a fresh JWT signed with that key, naming the request's method and URL, so a stolen token is
//! useless without the key. With [`JwtAuthBuilder::dpop`](crate::JwtAuthBuilder::dpop) the layer
//! checks, for every such request, what RFC 9449 §4.3 lists:
//!
//! - exactly one `DPoP` header, no larger than the token size cap;
//! - a compact JWS whose header has `typ` `dpop+jwt`, an `alg` from the allow-list (asymmetric
//!   only: never `none` or `HS*`; [`Dpop::algorithms`]), and a `jwk` that is a public key (no
//!   `d`, `p`, `q`, `dp`, `dq`, `qi`, `oth`, `k`) of that algorithm's type and curve, held to
//!   the layer's key rules (RSA at least 2048 bits);
//! - a signature that verifies with that `jwk`;
//! - `htm` equal to the request's method, and `htu` equal to the request's URL without query
//!   and fragment, compared after RFC 3986 §6.2.2/§6.2.3 normalisation (scheme and host case,
//!   default port, percent-encoding, dot-segments). A server behind a proxy cannot see the URL
//!   its clients use, so the external base URL is configured ([`Dpop::allowed`],
//!   [`Dpop::required`]) and joined with the request's path;
//! - `iat` within [`Dpop::proof_lifetime`] of now (either side; default 60 s), on the layer's
//!   [`Clock`];
//! - `ath` equal to base64url(SHA-256(access token));
//! - the token's `cnf.jkt` equal to the RFC 7638 thumbprint of the proof's key (§6.1, §7.1);
//! - `jti` not seen before: each proof is spent once (its `jti` scoped by its key, kept until
//!   `iat` plus the window plus the store's retention margin), through
//!   [`RevocationStore::use_once`] of the [replay store](Dpop::replay_store). A fleet shares
//!   one store (Redis), so a proof replayed to another server is refused too. Without one,
//!   the layer keeps its own [`MemoryRevocation`] on its clock: replays are caught per process
//!   only. A store that cannot be asked fails closed (503).
//!
//! The proof and the binding are checked before the token's signature, the replay check after
//! the token verified (so only holders of valid tokens write to the store); a request passes
//! only when all of them do. Any failure is a 401: a bad, replayed or mismatched proof (for
//! another method, URL or token, or made with another key than the token is bound to) gets
//! `WWW-Authenticate: DPoP …, error="invalid_dpop_proof", algs="…"` (§7.1).
//!
//! Two modes:
//!
//! | | Bearer token without `cnf` | Bearer token with `cnf.jkt` | `DPoP` token and proof | challenge |
//! |---|---|---|---|---|
//! | off (no `.dpop(..)`) | accepted | 401 `invalid_token` (the binding cannot be checked; [`accept_bound_tokens_as_bearer`](crate::JwtAuthBuilder::accept_bound_tokens_as_bearer) accepts it) | `DPoP` scheme unknown: no token | `Bearer` |
//! | [`Dpop::allowed`] | accepted | 401 (§7.2) | checked | `Bearer` and `DPoP algs="…"` |
//! | [`Dpop::required`] | 401 | 401 | checked | `DPoP algs="…"` only |
//!
//! Off costs nothing on the request path but one test of an empty `Option` (and one on
//! refusals, for the challenge).
//!
//! With [`Dpop::nonce`], proofs must also carry a nonce the server handed out (§8, §9): a
//! proof without a current one gets 401 `error="use_dpop_nonce"` and a fresh nonce in
//! `DPoP-Nonce`. Nonces come with refusals only, not with successful responses: a client
//! keeps its nonce until it expires (5 minutes), then is told the next one.
//!
//! The claims of a request that passed carry the proof's key, a [`DpopKey`] with its
//! thumbprint: [`Claims::dpop_key`](crate::Claims::dpop_key).
//!
//! ```
//! use std::sync::Arc;
//! use tower_jwt_auth::JwtAuthLayer;
//! use tower_jwt_auth::dpop::Dpop;
//! use tower_jwt_auth::revocation::MemoryRevocation;
//!
//! #[derive(Clone, serde::Deserialize)]
//! struct MyClaims { sub: String }
//!
//! let auth = JwtAuthLayer::<MyClaims>::builder()
//!     .hs256(b"an example secret that is 32 bytes+")
//!     .dpop(
//!         Dpop::required("https://api.example.com")
//!             // A fleet: every server spends proofs in the same (e.g. Redis) store.
//!             .replay_store(Arc::new(MemoryRevocation::new())),
//!     )
//!     .build()
//!     .unwrap();
//! # let _ = auth;
//!
//! // The base URL is checked when the layer is built:
//! let err = JwtAuthLayer::<MyClaims>::builder()
//!     .hs256(b"an example secret that is 32 bytes+")
//!     .dpop(Dpop::allowed("api.example.com"))
//!     .build()
//!     .unwrap_err();
//! assert!(err.to_string().contains("DPoP"));
//! ```

mod htu;
mod nonce;
mod proof;
mod step;
mod thumbprint;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, Method, Uri};

use crate::keys::AlgSet;
use crate::revocation::{MemoryRevocation, RevocationStore};
use crate::source::{Found, Source};
use crate::{Algorithm, AuthError, BuildError, Clock};

pub(crate) use proof::Proof;

/// The proof algorithms accepted by default: every asymmetric one the crate verifies.
const DEFAULT_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// How DPoP is configured on a layer (RFC 9449); see the [module docs](self).
#[derive(Clone)]
#[must_use = "a DPoP configuration does nothing until given to `JwtAuthBuilder::dpop`"]
pub struct Dpop {
    required: bool,
    base_url: String,
    algorithms: Vec<Algorithm>,
    window: Duration,
    store: Option<Arc<dyn RevocationStore>>,
    nonce_secret: Option<Vec<u8>>,
}

impl std::fmt::Debug for Dpop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dpop")
            .field("required", &self.required)
            .field("base_url", &self.base_url)
            .field("algorithms", &self.algorithms)
            .field("window", &self.window)
            .field("nonce", &self.nonce_secret.is_some())
            .finish_non_exhaustive()
    }
}

impl Dpop {
    /// DPoP alongside Bearer: Bearer tokens without `cnf` keep working, a token bound to a key
    /// (`cnf.jkt`) is accepted only with a valid proof (RFC 9449 §7.2). `base_url` is the URL
    /// clients reach this service at (`https://api.example.com`, or with a path prefix a
    /// proxy strips); a proof's `htu` must be it joined with the request's path. A layer
    /// inside axum's `Router::nest("/api", …)` sees the path without `/api`, as behind such a
    /// proxy: give it `https://api.example.com/api`.
    pub fn allowed(base_url: impl Into<String>) -> Dpop {
        Dpop {
            required: false,
            base_url: base_url.into(),
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            window: Duration::from_secs(60),
            store: None,
            nonce_secret: None,
        }
    }

    /// DPoP only: every token must come as `Authorization: DPoP` with a valid proof; anything
    /// else is a 401 with a `DPoP` challenge. `base_url` as for [`allowed`](Self::allowed).
    pub fn required(base_url: impl Into<String>) -> Dpop {
        Dpop {
            required: true,
            ..Dpop::allowed(base_url)
        }
    }

    /// Accepts proofs signed with these algorithms only (RFC 9449 §4.3 point 5; default: every
    /// asymmetric algorithm the crate verifies). They are announced in the challenge's `algs`
    /// and the resource metadata. HMAC algorithms cannot sign a proof: the build fails.
    pub fn algorithms(mut self, algs: impl IntoIterator<Item = Algorithm>) -> Dpop {
        self.algorithms = algs.into_iter().collect();
        self
    }

    /// How far a proof's `iat` may be from now, either side (default 60 s, RFC 9449 §11.1).
    /// Spent `jti`s are kept this long past their `iat`.
    pub fn proof_lifetime(mut self, window: Duration) -> Dpop {
        self.window = window;
        self
    }

    /// Spends each proof's `jti` in `store` ([`RevocationStore::use_once`]), shared by every
    /// server that accepts the same tokens. Default: a [`MemoryRevocation`] of this layer's.
    ///
    /// Every DPoP-checking layer a request passes spends its proof. Put one DPoP layer on a
    /// request's path: one layer applied twice (its clones on a router and on a router nested
    /// in it, say) spends each proof in its one store twice, and so do two layers that share a
    /// store, so the second pass refuses every DPoP request as replayed (401
    /// `invalid_dpop_proof`; Bearer requests pass). Two layers with their own stores each
    /// spend the proof once.
    pub fn replay_store(mut self, store: Arc<dyn RevocationStore>) -> Dpop {
        self.store = Some(store);
        self
    }

    /// Requires a server-provided nonce in every proof (RFC 9449 §9): a proof without a
    /// current one gets 401 `error="use_dpop_nonce"` with a fresh nonce in the `DPoP-Nonce`
    /// header, and the client retries with it (§8.1). Nonces are stateless, made and checked
    /// with `secret` (at least 32 bytes; give every server of a fleet the same), and current
    /// for 5 minutes; a browser client needs `DPoP-Nonce` in the CORS
    /// `Access-Control-Expose-Headers`.
    pub fn nonce(mut self, secret: impl AsRef<[u8]>) -> Dpop {
        self.nonce_secret = Some(secret.as_ref().to_vec());
        self
    }

    /// Checks the configuration into the form the request path reads, and adds the `DPoP`
    /// scheme to the token sources.
    pub(crate) fn compile(
        self,
        sources: &mut Vec<Source>,
        clock: &Clock,
        max_size: usize,
    ) -> Result<DpopCheck, BuildError> {
        let invalid = BuildError::InvalidSetting;
        let base_ok =
            !self.base_url.contains(['?', '#']) && htu::normalize(&self.base_url).is_some();
        if !base_ok {
            return Err(invalid(
                "the DPoP base URL must be an absolute http(s) URL without query or fragment",
            ));
        }
        if self.algorithms.is_empty()
            || self
                .algorithms
                .iter()
                .any(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
        {
            return Err(invalid(
                "DPoP proofs are signed with asymmetric algorithms only: give at least one, no HS*",
            ));
        }
        if self.window.is_zero() {
            return Err(invalid("the DPoP proof lifetime must be positive"));
        }
        if self.nonce_secret.as_ref().is_some_and(|s| s.len() < 32) {
            return Err(invalid("the DPoP nonce secret must be at least 32 bytes"));
        }
        let store = match self.store {
            Some(store) => store,
            None => Arc::new(MemoryRevocation::new().clock(clock.clone())),
        };
        // A spent `jti` is kept until its `iat` plus this layer's window plus the store's
        // margin; a layer sharing the store with a longer window would accept the proof after
        // that. With every window within the margin, no layer outlives another's entries.
        if self.window > store.retention_margin() {
            return Err(invalid(
                "the DPoP proof lifetime must not exceed the replay store's retention margin",
            ));
        }
        sources.push(Source::Header {
            name: http::header::AUTHORIZATION,
            scheme: Some("DPoP".into()),
            dpop: true,
        });
        Ok(DpopCheck {
            required: self.required,
            base_url: self.base_url.trim_end_matches('/').to_owned(),
            algs: AlgSet::from_iter(self.algorithms.iter().map(|a| a.jwt())),
            algorithms: self.algorithms,
            window: self.window,
            store,
            clock: clock.clone(),
            max_size,
            nonces: self.nonce_secret.as_deref().map(nonce::Nonces::new),
        })
    }
}

/// The key a request's DPoP proof was signed with, which the layer checked against the
/// token's binding (RFC 9449 §7.1): [`Claims::dpop_key`](crate::Claims::dpop_key) of the
/// claims it verified. Carried by the claims, it always belongs to them, whatever other
/// layers the request passes.
///
/// ```
/// use tower_jwt_auth::Claims;
/// # #[derive(serde::Deserialize)] struct MyClaims { sub: String }
///
/// async fn handler(claims: Claims<MyClaims>) -> String {
///     match claims.dpop_key() {
///         Some(key) => format!("{} bound to {}", claims.sub, key.thumbprint()),
///         None => format!("{} with a Bearer token", claims.sub),
///     }
/// }
/// # let _ = handler;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopKey {
    thumbprint: Arc<str>,
}

impl DpopKey {
    /// The RFC 7638 SHA-256 thumbprint of the proof's key, base64url: the token's `cnf.jkt`.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }
}

/// A layer's DPoP configuration, checked.
pub(crate) struct DpopCheck {
    pub required: bool,
    base_url: String,
    algs: AlgSet,
    /// The same, in configuration order: what challenges and metadata announce.
    pub algorithms: Vec<Algorithm>,
    window: Duration,
    store: Arc<dyn RevocationStore>,
    clock: Clock,
    max_size: usize,
    nonces: Option<nonce::Nonces>,
}

impl DpopCheck {
    /// A fresh nonce for a `DPoP-Nonce` header, when nonces are required.
    pub(crate) fn fresh_nonce(&self) -> Option<String> {
        self.nonces.as_ref()?.issue(self.clock.unix_secs())
    }

    /// Everything about DPoP that needs no I/O, for a request whose token is `found`.
    /// `Some(proof)`: the request came with a valid proof, to be spent
    /// ([`spend`](Self::spend)) before it passes; `None`: a Bearer token this mode accepts.
    pub(crate) fn check(
        &self,
        method: &Method,
        headers: &HeaderMap,
        uri: &Uri,
        found: &Found<'_>,
    ) -> Result<Option<Proof>, AuthError> {
        if !found.dpop {
            // §7.2: a token bound to a key is never accepted as a Bearer token.
            return self.refuse_unproven(found.token).map(|()| None);
        }
        // §4.3 point 1: exactly one `DPoP` header.
        let mut values = headers.get_all("dpop").iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(AuthError::InvalidDpopProof);
        };
        if value.len() > self.max_size {
            return Err(AuthError::InvalidDpopProof);
        }
        // A dot segment (`.`, `..`, also percent-encoded) would make the URL the proof is
        // checked against differ from the path the application routes the request by: such a
        // request is refused, not normalised (§4.3 point 9, §11.1).
        const DOTS: [&str; 6] = [".", "..", "%2e", ".%2e", "%2e.", "%2e%2e"];
        if uri
            .path()
            .split('/')
            .any(|segment| DOTS.iter().any(|dots| segment.eq_ignore_ascii_case(dots)))
        {
            return Err(AuthError::InvalidDpopProof);
        }
        let url = format!("{}{}", self.base_url, uri.path());
        let htu = htu::normalize(&url).ok_or(AuthError::InvalidDpopProof)?;
        let expected = proof::Expected {
            algs: self.algs,
            htm: method.as_str(),
            htu: &htu,
            token: found.token,
            now: self.clock.now(),
            window: self.window.as_secs_f64(),
        };
        let proof = proof::check(value.as_bytes(), &expected)?;
        // §4.3 point 10, §9: the nonce this server handed out.
        if let Some(nonces) = &self.nonces {
            let now = self.clock.unix_secs();
            if !proof
                .nonce
                .as_deref()
                .is_some_and(|n| nonces.is_current(n, now))
            {
                return Err(AuthError::UseDpopNonce);
            }
        }
        // §6.1, §7.1: the token is bound to the proof's key.
        match crate::cnf::read(found.token)?.jkt {
            Some(jkt) if jkt == proof.thumbprint => Ok(Some(proof)),
            _ => Err(AuthError::DpopKeyMismatch),
        }
    }

    /// For a token that comes without a proof: refused when this mode needs one for it, i.e.
    /// always in required mode, and when it is bound to a key (§7.2) in allowed mode.
    pub(crate) fn refuse_unproven(&self, token: &str) -> Result<(), AuthError> {
        if self.required || crate::cnf::read(token)?.jkt.is_some() {
            return Err(AuthError::DpopRequired);
        }
        Ok(())
    }

    /// §4.3 point 11: spends the proof's `jti` (scoped by its key) until its `iat` plus the
    /// window. A second use is an invalid proof; a store that cannot answer fails closed.
    pub(crate) async fn spend(&self, proof: Proof) -> Result<DpopKey, AuthError> {
        let mut input = Vec::with_capacity(proof.thumbprint.len() + proof.jti.len() + 1);
        input.extend_from_slice(proof.thumbprint.as_bytes());
        input.push(b' ');
        input.extend_from_slice(proof.jti.as_bytes());
        let hash = crate::backend::sha256(&input).ok_or(AuthError::InvalidDpopProof)?;
        let key = format!("dpop:{}", URL_SAFE_NO_PAD.encode(hash));
        let until = (proof.iat + self.window.as_secs_f64()).ceil().max(0.0) as u64;
        match self.store.use_once(&key, until).await {
            Ok(true) => Ok(DpopKey {
                thumbprint: proof.thumbprint.into(),
            }),
            Ok(false) => Err(AuthError::InvalidDpopProof),
            Err(_) => Err(AuthError::RevocationUnavailable),
        }
    }
}
