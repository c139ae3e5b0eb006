//! The per-request steps, in the order they run:
//!
//! public path? → CORS preflight? → extract → CSRF → certificate binding → DPoP proof and key
//! binding → cache → parse → choose verifier → verify → claims policy → extra checks (the
//! presets' rules and the `validate` hooks; a cache hit runs the hooks again) → [key refresh]
//! → [DPoP proof spent] → revocation → hand on, or respond.
//!
//! Every step up to the revocation check needs no I/O and runs in [`Pipeline::authenticate`],
//! inside the service's `call`, which yields a [`Decision`]. What may need to wait: a remote
//! key source that lacks the token's `kid` ([`Pipeline::refresh_keys`], which yields the
//! decision after the refresh), spending a DPoP proof (`crate::dpop`), and the revocation
//! store; [`Pipeline::complete`] runs last and finishes every verified token's decision.
//! Every refusal, immediate or after a wait, is answered, traced and counted in one place,
//! [`Pipeline::respond`].
//!
//! Metrics (feature `metrics`, [`crate::metrics`]): a refusal is counted in `respond`; an
//! anonymous pass in `authenticate`; a verified token where it is handed on
//! ([`Pipeline::accepted`]: in the service for a token with nothing to wait for, else at the
//! end of `complete`); the verification latency around the verifier's check only.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use http::{Extensions, HeaderMap, Method, Response, Uri};
use serde::de::DeserializeOwned;

use super::checks::Checks;
use super::public::PublicPaths;
use crate::claims::LayerId;
use crate::csrf::Csrf;
use crate::revocation::Revocation;
use crate::source::{self, Source};
use crate::tenant::Verifiers;
use crate::token::{JoseHeader, Jws};
use crate::verify::{Refused, TokenId, Verifier};
use crate::{AuthError, Claims, ErrorResponder};

/// Everything a layer checks requests with, fixed at build time and shared by its services.
///
/// Aligned to 128 bytes, so that in its `Arc` the reference counts sit on cache lines of their
/// own: servers clone the service, and with it the `Arc`, for every request, and the counts
/// those clones write from every core would otherwise share a line with the settings every
/// request reads.
#[repr(align(128))]
pub(crate) struct Pipeline<R> {
    pub verifiers: Verifiers,
    pub max_token_size: usize,
    pub sources: Vec<Source>,
    pub optional: bool,
    /// Paths left unauthenticated.
    pub public: PublicPaths,
    pub pass_preflight: bool,
    pub csrf: Option<Csrf>,
    pub revocation: Option<Arc<dyn Revocation>>,
    pub revocation_fail_open: bool,
    /// The application's `validate` hooks and the presets' checks.
    pub checks: Checks,
    #[cfg(feature = "cache")]
    pub cache: Option<crate::cache::TokenCache>,
    pub responder: R,
    /// Whether the handlers behind need this layer's responder in the request extensions
    /// (`crate::response::LayerResponder`): it answers otherwise than `Rfc6750::default()`,
    /// which they fall back to without it (a realm or responder was set, or DPoP or resource
    /// metadata add challenge parameters).
    pub share_responder: bool,
    /// This layer, as its claims, anonymous mark and lent responder name it.
    pub id: LayerId,
    /// The per-issuer counters of the verifiers, by index (feature `metrics`).
    #[cfg(feature = "metrics")]
    pub issuers: crate::metrics::Issuers,
    /// Sender-constrained tokens (DPoP, RFC 9449; client certificates, RFC 8705), resource
    /// metadata (RFC 9728) and their challenges: `crate::resource`.
    pub resource: crate::resource::ResourceServer,
}

/// What to do with a request once the steps without I/O are done.
pub(crate) enum Decision<C> {
    /// Let it through without claims (an optional layer, a public path, a CORS preflight).
    Anonymous,
    /// The token verified by the `usize`th verifier: let it through with these claims. Counted
    /// as accepted (feature `metrics`) where it is handed on, [`Pipeline::accepted`].
    Verified(Claims<C>, usize),
    /// The token verified; let it through once the revocation store has been asked.
    CheckRevocation(Claims<C>, Arc<TokenId>, usize),
    /// No key of the remote source fits: refresh the keys, then verify the token again.
    #[cfg(feature = "remote")]
    RefreshKeys(String),
    /// A DPoP proof passed: spend it, then complete the token's decision (`crate::dpop`).
    /// Boxed, so the common decisions stay as small as without DPoP.
    #[cfg(feature = "dpop")]
    SpendProof(Box<(Decision<C>, crate::dpop::Proof)>),
}

impl<C> Decision<C> {
    /// The index of the verifier that verified the token, once one has.
    #[cfg_attr(not(feature = "dpop"), allow(dead_code))]
    pub(crate) fn verifier(&self) -> Option<usize> {
        match self {
            Decision::Verified(_, index) | Decision::CheckRevocation(_, _, index) => Some(*index),
            _ => None,
        }
    }
}

/// A refusal, with what its tracing event may name (feature `tracing`): the reason, and what
/// the token claims about itself (`alg`, `kid`, `iss`), never the token.
pub(crate) struct Rejection {
    pub error: AuthError,
    #[cfg(feature = "tracing")]
    alg: Option<jsonwebtoken::Algorithm>,
    #[cfg(feature = "tracing")]
    kid: Option<String>,
    #[cfg(feature = "tracing")]
    iss: Option<String>,
    /// The index of the verifier that refused the token, once one was chosen (for the
    /// per-issuer counter, feature `metrics`).
    #[cfg(feature = "metrics")]
    verifier: Option<usize>,
}

impl From<AuthError> for Rejection {
    fn from(error: AuthError) -> Rejection {
        Rejection {
            error,
            #[cfg(feature = "tracing")]
            alg: None,
            #[cfg(feature = "tracing")]
            kid: None,
            #[cfg(feature = "tracing")]
            iss: None,
            #[cfg(feature = "metrics")]
            verifier: None,
        }
    }
}

impl Rejection {
    /// `error`, about a token with this header.
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables, unused_mut))]
    fn about(error: AuthError, header: &JoseHeader) -> Rejection {
        let mut rejection = Rejection::from(error);
        #[cfg(feature = "tracing")]
        {
            rejection.alg = Some(header.alg);
            // The token chose its `kid`, unverified: at most 64 bytes of it reach the event.
            rejection.kid = header.kid.as_deref().map(|kid| {
                let end = (0..=kid.len().min(64))
                    .rev()
                    .find(|i| kid.is_char_boundary(*i))
                    .unwrap_or(0);
                kid[..end].to_owned()
            });
        }
        rejection
    }

    /// The same, refused by the `index`th verifier.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables, unused_mut))]
    pub(crate) fn by(mut self, index: usize) -> Rejection {
        #[cfg(feature = "metrics")]
        {
            self.verifier = Some(index);
        }
        self
    }

    /// The same, naming the token's `iss`.
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables, unused_mut))]
    fn with_iss(mut self, iss: Option<String>) -> Rejection {
        #[cfg(feature = "tracing")]
        {
            self.iss = iss;
        }
        self
    }
}

/// Whether the request is a CORS preflight as a browser sends it (Fetch §4.8): `OPTIONS` with
/// `Origin` and `Access-Control-Request-Method`, and nothing a call would carry: no body (no
/// `Content-Type`, no `Transfer-Encoding`, no `Content-Length` but 0). Without a
/// `Content-Type` it is not gRPC either, whose services dispatch on the path whatever the
/// method.
fn is_cors_preflight(method: &Method, headers: &HeaderMap) -> bool {
    use http::header::{
        ACCESS_CONTROL_REQUEST_METHOD, CONTENT_LENGTH, CONTENT_TYPE, ORIGIN, TRANSFER_ENCODING,
    };
    method == Method::OPTIONS
        && headers.contains_key(ORIGIN)
        && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
        && !headers.contains_key(CONTENT_TYPE)
        && !headers.contains_key(TRANSFER_ENCODING)
        && headers.get_all(CONTENT_LENGTH).iter().all(|v| v == "0")
}

impl<R> Pipeline<R> {
    /// Public path? → extract → CSRF → parse → choose verifier → cache → verify → claims
    /// policy → extra checks: everything that needs no I/O.
    pub(crate) fn authenticate<C: DeserializeOwned + Send + Sync + 'static>(
        &self,
        method: &Method,
        headers: &HeaderMap,
        uri: &Uri,
        extensions: &Extensions,
    ) -> Result<Decision<C>, Rejection> {
        // A public path: no token is looked at, and no claims are handed on.
        if self.public.contains(uri.path()) {
            #[cfg(feature = "metrics")]
            crate::metrics::accepted("anonymous");
            return Ok(Decision::Anonymous);
        }
        // A CORS preflight, when the layer lets them through (a `CorsLayer` inside it):
        // browsers never attach credentials to one (Fetch §3.2.2).
        if self.pass_preflight && is_cors_preflight(method, headers) {
            #[cfg(feature = "metrics")]
            crate::metrics::accepted("anonymous");
            return Ok(Decision::Anonymous);
        }
        let Some(found) = source::extract(&self.sources, headers, uri, self.max_token_size)? else {
            if self.optional {
                #[cfg(feature = "metrics")]
                crate::metrics::accepted("anonymous");
                return Ok(Decision::Anonymous);
            }
            return Err(AuthError::MissingToken.into());
        };
        if found.cookie_only
            && let Some(csrf) = &self.csrf
        {
            csrf.check(method, headers, uri)?;
        }
        // Certificate-bound tokens (RFC 8705 §3): the TLS client certificate (`crate::mtls`).
        if self.resource.certificate_bound {
            crate::mtls::check(found.token, extensions)?;
        }
        // DPoP (RFC 9449): the proof and the token's binding to its key, then the token as
        // usual; the request passes once the proof is spent (`crate::dpop`).
        #[cfg(feature = "dpop")]
        if let Some(dpop) = &self.resource.dpop
            && let Some(proof) = dpop.check(method, headers, uri, &found)?
        {
            let decision = self.decide_token::<C>(found.token)?;
            return Ok(Decision::SpendProof(Box::new((decision, proof))));
        }
        self.decide_token::<C>(found.token)
    }

    /// Cache → parse → choose verifier → verify → claims policy, for the request's token.
    fn decide_token<C: DeserializeOwned + Send + Sync + 'static>(
        &self,
        token: &str,
    ) -> Result<Decision<C>, Rejection> {
        // Only verified tokens are cached, so a hit needs no parse: the token is compared
        // whole, and the verifier that verified it is known.
        #[cfg(feature = "cache")]
        if let Some(hit) = self.cached::<C>(token) {
            return hit;
        }
        let jws = Jws::parse(token, self.max_token_size)?;
        let (index, verifier) = self
            .verifiers
            .select(&jws)
            .map_err(|e| Rejection::about(e, &jws.header))?;
        self.verify(index, verifier, &jws)
    }

    /// Verify → claims policy → extra checks → cache insert, for a parsed token and its
    /// verifier (the `index`th of the layer's).
    #[cfg_attr(not(feature = "cache"), allow(unused_variables))]
    fn verify<C: DeserializeOwned + Send + Sync + 'static>(
        &self,
        index: usize,
        verifier: &Verifier,
        jws: &Jws<'_>,
    ) -> Result<Decision<C>, Rejection> {
        // Read before verifying: an entry is tagged with a generation no newer than its keys.
        #[cfg(feature = "cache")]
        let generation = verifier.keys.generation();
        #[cfg(feature = "metrics")]
        let started = crate::metrics::verify_started();
        let verified = verifier.verify::<C>(jws);
        #[cfg(feature = "metrics")]
        crate::metrics::verify_finished(started);
        let verified = match verified {
            Ok(verified) => verified,
            #[cfg(feature = "remote")]
            Err(Refused {
                error: AuthError::UnknownKey,
                ..
            }) if verifier.keys.remote().is_some() => {
                return Ok(Decision::RefreshKeys(jws.token.to_owned()));
            }
            Err(Refused { error, iss }) => {
                return Err(Rejection::about(error, &jws.header).with_iss(iss).by(index));
            }
        };
        // Before the cache insert: the cache holds only tokens that passed every check.
        self.checks
            .verified(&jws.payload, &verified.claims)
            .map_err(|e| Rejection::about(e, &jws.header).by(index))?;
        let claims = Arc::new(verified.claims);
        #[cfg(feature = "cache")]
        if let Some(cache) = &self.cache
            && let Some(generation) = generation
        {
            let entry = crate::cache::Entry {
                claims: claims.clone(),
                times: verified.times,
                id: verified.id.clone(),
                generation,
                verifier: index,
            };
            cache.insert(jws.token, entry);
        }
        Ok(self.decide(index, Claims::from(claims), verified.id))
    }

    /// A cache hit for exactly this token, verified under the current generation of its
    /// verifier's keys and still within its `exp`/`nbf`/`iat`. A failing time check falls
    /// through to full verification, which reports it. The application's hooks run again
    /// (their answer may have changed since the token was cached); a refusal is final.
    #[cfg(feature = "cache")]
    fn cached<C: Send + Sync + 'static>(
        &self,
        token: &str,
    ) -> Option<Result<Decision<C>, Rejection>> {
        let generation = |i| self.verifiers.get(i).and_then(|v| v.keys.generation());
        let fresh = |entry: &crate::cache::Entry| {
            self.verifiers.get(entry.verifier).is_some_and(|v| {
                v.policy
                    .check_times(entry.times, v.policy.clock.now())
                    .is_ok()
            })
        };
        let entry = self.cache.as_ref()?.get(token, generation, fresh)?;
        let claims = entry.claims.downcast::<C>().ok()?;
        if let Err(error) = self.checks.hooks(&*claims) {
            return Some(Err(Rejection::from(error).by(entry.verifier)));
        }
        Some(Ok(self.decide(
            entry.verifier,
            Claims::from(claims),
            entry.id,
        )))
    }

    /// Let through now, or after the revocation check.
    fn decide<C>(&self, index: usize, claims: Claims<C>, id: Option<Arc<TokenId>>) -> Decision<C> {
        let claims = claims.verified_by(self.id);
        match id {
            Some(id) if self.revocation.is_some() => Decision::CheckRevocation(claims, id, index),
            _ => Decision::Verified(claims, index),
        }
    }

    /// Counts a verified token let through by the `index`th verifier (feature `metrics`): where
    /// the request is handed on, after every check (the revocation store's, a DPoP proof's).
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn accepted(&self, index: usize) {
        #[cfg(feature = "metrics")]
        {
            crate::metrics::accepted("verified");
            self.issuers.count(index, true);
        }
    }

    /// Completes a verified token's decision: the revocation check when one follows, then
    /// the count (feature `metrics`). Yields the claims for the request. Runs last, after
    /// whatever else a request waits for (a key refresh, a DPoP proof), so a request counted
    /// as accepted is one that is handed on.
    pub(crate) fn complete<C: Send + Sync + 'static>(
        self: Arc<Self>,
        decision: Decision<C>,
    ) -> BoxFuture<'static, Result<Extensions, Rejection>>
    where
        R: Send + Sync + 'static,
    {
        Box::pin(async move {
            let (claims, index) = match decision {
                Decision::Verified(claims, index) => (claims, index),
                Decision::CheckRevocation(claims, id, index) => {
                    self.check_revocation(&id, index).await?;
                    (claims, index)
                }
                // Nothing left that names claims: refused rather than let through without them.
                _ => return Err(AuthError::Misconfigured.into()),
            };
            self.accepted(index);
            let mut extensions = Extensions::new();
            extensions.insert(claims);
            Ok(extensions)
        })
    }

    /// Revocation: asks the store about a verified token (of the `index`th verifier). An
    /// unreachable store fails closed (503) unless the layer was told otherwise: it must not
    /// turn logged-out tokens back into valid ones.
    async fn check_revocation(&self, id: &TokenId, index: usize) -> Result<(), Rejection> {
        let Some(store) = &self.revocation else {
            return Ok(());
        };
        let revoked = store.is_revoked(id.as_ref()).await;
        #[cfg(feature = "metrics")]
        if revoked.is_err() {
            crate::metrics::revocation_error();
        }
        match revoked {
            Ok(false) => Ok(()),
            Ok(true) => Err(Rejection::from(AuthError::Revoked).by(index)),
            Err(_) if self.revocation_fail_open => Ok(()),
            Err(_) => Err(Rejection::from(AuthError::RevocationUnavailable).by(index)),
        }
    }

    /// Refreshes the remote key source for the token's `kid`, then runs the same steps again
    /// from the choice of verifier on (cache insert included): the token's decision, for
    /// [`complete`](Self::complete). An unreachable source is a 503, not a 401: the token may
    /// well be valid.
    #[cfg(feature = "remote")]
    pub(crate) async fn refresh_keys<C>(&self, token: &str) -> Result<Decision<C>, Rejection>
    where
        C: DeserializeOwned + Send + Sync + 'static,
    {
        let jws = Jws::parse(token, self.max_token_size)?;
        let (index, verifier) = self
            .verifiers
            .select(&jws)
            .map_err(|e| Rejection::about(e, &jws.header))?;
        let remote = verifier
            .keys
            .remote()
            .ok_or_else(|| Rejection::about(AuthError::UnknownKey, &jws.header))?;
        if let Err(unavailable) = remote
            .refresh_for_unknown_kid(jws.header.kid.as_deref())
            .await
        {
            let error = AuthError::KeysUnavailable {
                retry_after_secs: unavailable.retry_after.as_secs().max(1),
            };
            return Err(Rejection::about(error, &jws.header).by(index));
        }
        match self.verify::<C>(index, verifier, &jws)? {
            // Still no key after the refresh.
            Decision::RefreshKeys(_) => {
                Err(Rejection::about(AuthError::UnknownKey, &jws.header).by(index))
            }
            decision => Ok(decision),
        }
    }

    /// Answers a refusal with the responder, after its one tracing event (feature `tracing`).
    pub(crate) fn respond<B>(&self, rejection: &Rejection, headers: &HeaderMap) -> Response<B>
    where
        R: ErrorResponder<B>,
    {
        #[cfg(feature = "metrics")]
        {
            crate::metrics::rejected(rejection.error.reason());
            if let Some(index) = rejection.verifier {
                self.issuers.count(index, false);
            }
        }
        #[cfg(feature = "tracing")]
        tracing::event!(
            target: "tower_jwt_auth",
            tracing::Level::DEBUG,
            "error.type" = rejection.error.reason(),
            jwt.alg = rejection.alg.map(tracing::field::debug),
            jwt.kid = rejection.kid.as_deref(),
            jwt.iss = rejection.iss.as_deref(),
            "request rejected"
        );
        // The responder's answer, with the layer's challenge parameters (see `service.rs`).
        ErrorResponder::respond(self, &rejection.error, headers)
    }

    /// The whole check of one token outside any request (no source, CSRF, cache or
    /// revocation; the extra checks included): for
    /// [`JwtAuthLayer::verify`](crate::JwtAuthLayer::verify).
    pub(crate) fn verify_token<C: DeserializeOwned + 'static>(
        &self,
        token: &str,
    ) -> Result<C, AuthError> {
        // No certificate can come with a token checked this way (`crate::mtls`).
        if self.resource.certificate_bound {
            crate::mtls::check(token, &Extensions::new())?;
        }
        // No proof can come with a token checked this way (`crate::dpop`).
        #[cfg(feature = "dpop")]
        if let Some(dpop) = &self.resource.dpop {
            dpop.refuse_unproven(token)?;
        }
        let jws = Jws::parse(token, self.max_token_size)?;
        let (_, verifier) = self.verifiers.select(&jws)?;
        let claims = verifier.verify::<C>(&jws).map_err(|r| r.error)?.claims;
        self.checks.verified(&jws.payload, &claims)?;
        Ok(claims)
    }

    /// Form, header policy and signature only; the decoded payload, which need not be a claims
    /// set: for [`JwtAuthLayer::verify_signature`](crate::JwtAuthLayer::verify_signature).
    pub(crate) fn verify_signature(&self, token: &str) -> Result<Vec<u8>, AuthError> {
        let jws = Jws::parse(token, self.max_token_size)?;
        let (_, verifier) = self.verifiers.select(&jws)?;
        verifier.verify_signature(&jws)?;
        Ok(jws.payload)
    }
}
