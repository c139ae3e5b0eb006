//! One token, checked end to end: bytes, header, key, signature, claims.

use jsonwebtoken::Algorithm;
use serde::de::DeserializeOwned;

use crate::AuthError;
use crate::keys::{AlgSet, KeySet};
use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::claims_set;
use crate::token::{self, JoseHeader, Segments};
use crate::validation::ClaimsPolicy;

/// Stack space for a decoded header: larger headers go to the heap.
const HEADER_BUF: usize = 256;
/// Stack space for a decoded payload: larger claim sets go to the heap.
pub(crate) const PAYLOAD_BUF: usize = 1536;

/// Where the verification keys come from.
pub(crate) enum Keys {
    /// Keys fixed at build time.
    Static(KeySet),
    /// Keys from an identity provider, refreshed and rotated behind a lock-free snapshot.
    #[cfg(feature = "remote")]
    Remote(crate::keys::remote::RemoteJwks),
}

impl Keys {
    fn verify(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
        input: &[u8],
        signature: &[u8],
    ) -> Result<(), AuthError> {
        match self {
            Keys::Static(set) => set.verify(alg, kid, input, signature),
            #[cfg(feature = "remote")]
            Keys::Remote(remote) => remote.snapshot().verify(alg, kid, input, signature),
        }
    }

    /// Changes whenever the key set does (always 0 for static keys).
    #[cfg_attr(not(feature = "cache"), allow(dead_code))]
    pub(crate) fn generation(&self) -> u64 {
        match self {
            Keys::Static(_) => 0,
            #[cfg(feature = "remote")]
            Keys::Remote(remote) => remote.generation(),
        }
    }

    /// The remote source, when the keys come from one.
    #[cfg(feature = "remote")]
    pub(crate) fn remote(&self) -> Option<&crate::keys::remote::RemoteJwks> {
        match self {
            Keys::Remote(remote) => Some(remote),
            Keys::Static(_) => None,
        }
    }
}

/// Everything needed to verify a token, fixed at build time.
pub(crate) struct Verifier {
    pub keys: Keys,
    /// The algorithm allow-list: only these are ever verified (RFC 8725 §3.1).
    pub allowed: AlgSet,
    pub policy: ClaimsPolicy,
    pub max_token_size: usize,
    /// Whether to keep `jti`/`sub`/`iat` for a revocation check.
    pub collect_id: bool,
    /// Cleared once a valid token's claims could be read only in two passes: the claims type
    /// is one the single pass cannot serve, so later tokens go straight to two passes rather
    /// than trying (and failing) first.
    single_pass: AtomicBool,
}

/// A verified token: the application's claims, and its identity when a revocation check
/// follows.
pub(crate) struct Verified<C> {
    pub claims: C,
    pub id: Option<OwnedTokenId>,
    /// `exp` and `nbf`, for a cached copy that must be re-checked on every hit.
    #[cfg_attr(not(feature = "cache"), allow(dead_code))]
    pub exp: Option<f64>,
    #[cfg_attr(not(feature = "cache"), allow(dead_code))]
    pub nbf: Option<f64>,
}

/// The owned form of [`TokenId`](crate::revocation::TokenId), to carry into an async check.
#[derive(Debug, Clone)]
pub(crate) struct OwnedTokenId {
    pub iss: Option<String>,
    pub jti: Option<String>,
    pub sub: Option<String>,
    pub iat: Option<u64>,
}

impl OwnedTokenId {
    pub(crate) fn as_ref(&self) -> crate::revocation::TokenId<'_> {
        crate::revocation::TokenId::new(
            self.iss.as_deref(),
            self.jti.as_deref(),
            self.sub.as_deref(),
            self.iat,
        )
    }
}

impl Verifier {
    pub(crate) fn new(
        keys: Keys,
        allowed: AlgSet,
        policy: ClaimsPolicy,
        max_token_size: usize,
        collect_id: bool,
    ) -> Verifier {
        Verifier {
            keys,
            allowed,
            policy,
            max_token_size,
            collect_id,
            single_pass: AtomicBool::new(true),
        }
    }

    /// Verifies `token` and deserializes its claims into `C`.
    ///
    /// The signature is checked before the payload is read at all, so an unsigned token learns
    /// nothing about which claim it got wrong.
    pub(crate) fn verify<C: DeserializeOwned>(
        &self,
        token: &str,
    ) -> Result<Verified<C>, AuthError> {
        self.verify_scanned(token, false)
    }

    /// [`verify`](Self::verify), trusting the caller that every byte of `token` is already
    /// known to be in the JWS alphabet when `alphabet_checked`.
    pub(crate) fn verify_scanned<C: DeserializeOwned>(
        &self,
        token: &str,
        alphabet_checked: bool,
    ) -> Result<Verified<C>, AuthError> {
        let segments = token::split_scanned(token, self.max_token_size, alphabet_checked)
            .map_err(|e| reject(e, None, None))?;
        let mut header_buf = [0u8; HEADER_BUF];
        let header_json =
            token::decode_segment(segments.header, &mut header_buf, AuthError::MalformedHeader)
                .map_err(|e| reject(e, None, None))?;
        let header = token::parse_header(&header_json).map_err(|e| reject(e, None, None))?;
        let mut payload_buf = [0u8; PAYLOAD_BUF];
        let payload = self
            .check_signature(&segments, &header, &mut payload_buf)
            .map_err(|e| reject(e, Some(&header), None))?;
        let payload = std::str::from_utf8(&payload)
            .map_err(|_| reject(AuthError::MalformedClaims, Some(&header), None))?;
        // One pass when it can be done; otherwise two, in the order that decides the error:
        // a malformed claims set, then the policy, then claims that do not fit `C`.
        let single_pass = self.single_pass.load(Ordering::Relaxed);
        let once = single_pass
            .then(|| claims_set::read::<C>(&self.policy, payload).ok())
            .flatten();
        let (claims, registered) = match once {
            Some((claims, registered)) => (Ok(claims), registered),
            None => {
                let registered = self
                    .policy
                    .parse(payload)
                    .map_err(|e| reject(e, Some(&header), None))?;
                let claims = serde_json::from_str::<C>(payload);
                if single_pass && claims.is_ok() {
                    self.single_pass.store(false, Ordering::Relaxed);
                }
                (claims, registered)
            }
        };
        let iss = registered.iss.as_deref();
        self.policy
            .check(&registered, self.policy.clock.now())
            .map_err(|e| reject(e, Some(&header), iss))?;
        // A token with neither `jti` nor `sub` could never be revoked: with a store configured,
        // it is refused rather than let past every logout.
        if self.collect_id && registered.jti.is_none() && registered.sub.is_none() {
            return Err(reject(AuthError::MissingClaim, Some(&header), iss));
        }
        let claims = claims.map_err(|_| reject(AuthError::ClaimsShape, Some(&header), iss))?;
        let id = self.collect_id.then(|| OwnedTokenId {
            iss: registered.iss.as_deref().map(str::to_owned),
            jti: registered.jti.as_deref().map(str::to_owned),
            sub: registered.sub.as_deref().map(str::to_owned),
            iat: registered.iat.map(|iat| iat as u64),
        });
        Ok(Verified {
            claims,
            id,
            exp: registered.exp,
            nbf: registered.nbf,
        })
    }

    /// The `kid` a token's header names, read without verifying anything: only to ask a remote
    /// key source for that key.
    #[cfg(feature = "remote")]
    pub(crate) fn kid_of(&self, token: &str) -> Option<String> {
        let segments = token::split(token, self.max_token_size).ok()?;
        let mut header_buf = [0u8; HEADER_BUF];
        let header_json =
            token::decode_segment(segments.header, &mut header_buf, AuthError::MalformedHeader)
                .ok()?;
        token::parse_header(&header_json)
            .ok()?
            .kid
            .map(|k| k.into_owned())
    }

    /// Form, header policy and signature only; returns the decoded payload. For JWS whose
    /// payload is not a claims set.
    pub(crate) fn verify_signature(&self, token: &str) -> Result<Vec<u8>, AuthError> {
        let segments = token::split(token, self.max_token_size)?;
        let mut header_buf = [0u8; HEADER_BUF];
        let header_json =
            token::decode_segment(segments.header, &mut header_buf, AuthError::MalformedHeader)?;
        let header = token::parse_header(&header_json)?;
        let mut payload_buf = [0u8; PAYLOAD_BUF];
        Ok(self
            .check_signature(&segments, &header, &mut payload_buf)?
            .into_owned())
    }

    /// Header policy and signature; returns the payload, decoded into `payload_buf` when it
    /// fits.
    fn check_signature<'b>(
        &self,
        segments: &Segments<'_>,
        header: &JoseHeader<'_>,
        payload_buf: &'b mut [u8],
    ) -> Result<Cow<'b, [u8]>, AuthError> {
        if !self.allowed.contains(header.alg) {
            return Err(AuthError::AlgorithmNotAllowed);
        }
        self.policy.check_type(header.typ.as_deref())?;
        // An RSA-4096 signature is 512 bytes; the slack covers the decoder's estimate.
        let mut signature_buf = [0u8; 516];
        let signature = token::decode_segment(
            segments.signature,
            &mut signature_buf,
            AuthError::InvalidSignature,
        )?;
        self.keys.verify(
            header.alg,
            header.kid.as_deref(),
            segments.signing_input.as_bytes(),
            &signature,
        )?;
        token::decode_segment(segments.payload, payload_buf, AuthError::MalformedClaims)
    }
}

/// Passes a rejection on, emitting its tracing event first (feature `tracing`). The event
/// carries the reason and what the token claims about itself (`alg`, `kid`, `iss`), never the
/// token.
fn reject(error: AuthError, header: Option<&JoseHeader<'_>>, iss: Option<&str>) -> AuthError {
    trace_rejection(
        &error,
        header.map(|h| h.alg),
        header.and_then(|h| h.kid.as_deref()),
        iss,
    );
    error
}

/// Emits one event for a refused request (feature `tracing`; otherwise nothing).
#[allow(unused_variables)]
pub(crate) fn trace_rejection(
    error: &AuthError,
    alg: Option<Algorithm>,
    kid: Option<&str>,
    iss: Option<&str>,
) {
    #[cfg(feature = "tracing")]
    tracing::debug!(
        target: "tower_jwt_auth",
        reason = error.reason(),
        alg = alg.map(tracing::field::debug),
        kid,
        iss,
        "request rejected"
    );
}
