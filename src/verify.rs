//! One parsed token, checked: algorithm, key and signature, then the claims.

use serde::de::DeserializeOwned;
use std::sync::Arc;

use crate::AuthError;
use crate::claims_set;
use crate::keys::{AlgSet, Keys};
use crate::token::{self, Jws};
use crate::validation::{ClaimsPolicy, Times};

/// Everything needed to verify a token, fixed at build time.
pub(crate) struct Verifier {
    pub keys: Keys,
    /// The algorithm allow-list: only these are ever verified (RFC 8725 §3.1).
    pub allowed: AlgSet,
    pub policy: ClaimsPolicy,
    /// Whether a revocation check follows: the token's identity is kept, and a token that has
    /// none (neither `jti` nor `sub`) is refused.
    pub revocable: bool,
}

/// A verified token: the application's claims, and what the later steps need.
pub(crate) struct Verified<C> {
    pub claims: C,
    /// The identity for the revocation check, when one follows; shared, so a cache hit
    /// hands it on without copying its strings.
    pub id: Option<Arc<TokenId>>,
    /// What a cached copy re-checks on every hit.
    #[cfg_attr(not(feature = "cache"), allow(dead_code))]
    pub times: Times,
}

/// Why a token was refused, and its `iss` when the claims were read that far (for the
/// rejection's tracing event; it is never the token).
pub(crate) struct Refused {
    pub error: AuthError,
    pub iss: Option<String>,
}

impl From<AuthError> for Refused {
    fn from(error: AuthError) -> Refused {
        Refused { error, iss: None }
    }
}

/// The owned form of [`revocation::TokenId`](crate::revocation::TokenId), carried into the
/// asynchronous revocation check.
#[derive(Debug, Clone)]
pub(crate) struct TokenId {
    pub iss: Option<String>,
    pub jti: Option<String>,
    pub sub: Option<String>,
    pub iat: Option<u64>,
}

impl TokenId {
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
    /// Checks `jws` and reads its claims into `C`, in this order: the algorithm is allowed,
    /// the header `typ` fits, the signature verifies (before the payload is read at all, so an
    /// unsigned token learns nothing about its claims), the claims set is UTF-8 JSON whose
    /// registered claims have their registered types, the policy accepts them, and they
    /// deserialize into `C`.
    pub(crate) fn verify<C: DeserializeOwned>(
        &self,
        jws: &Jws<'_>,
    ) -> Result<Verified<C>, Refused> {
        self.verify_signature(jws)?;
        // RFC 7519 §7.2 step 10: the claims set is UTF-8 as a whole, members no one reads
        // included.
        let text = std::str::from_utf8(&jws.payload).map_err(|_| AuthError::MalformedClaims)?;
        let registered =
            claims_set::read(&self.policy, text).map_err(|_| AuthError::MalformedClaims)?;
        let refused = |error| Refused {
            error,
            iss: registered.iss.as_deref().map(str::to_owned),
        };
        self.policy
            .check(&registered, self.policy.clock.now())
            .map_err(refused)?;
        if self.revocable && registered.jti.is_none() && registered.sub.is_none() {
            // Nothing could ever revoke this token: refused rather than let past every logout.
            return Err(refused(AuthError::MissingClaim));
        }
        let claims =
            serde_json::from_str::<C>(text).map_err(|_| refused(AuthError::ClaimsShape))?;
        let id = self.revocable.then(|| {
            Arc::new(TokenId {
                iss: registered.iss.as_deref().map(str::to_owned),
                jti: registered.jti.as_deref().map(str::to_owned),
                sub: registered.sub.as_deref().map(str::to_owned),
                iat: registered.times.iat.map(|iat| iat as u64),
            })
        });
        Ok(Verified {
            claims,
            id,
            times: registered.times,
        })
    }

    /// The header policy and the signature: `alg` is allowed, `typ` fits, and the key that
    /// `kid` and `alg` select verifies the signature over the signing input.
    pub(crate) fn verify_signature(&self, jws: &Jws<'_>) -> Result<(), AuthError> {
        let header = &jws.header;
        if !self.allowed.contains(header.alg) {
            return Err(AuthError::AlgorithmNotAllowed);
        }
        self.policy.check_type(header.typ.as_deref())?;
        // An RSA-4096 signature is 512 bytes; the slack covers the decoder's estimate.
        let mut buf = [0u8; 516];
        let signature = token::decode_into(jws.signature, &mut buf, AuthError::InvalidSignature)?;
        self.keys.verify(
            header.alg,
            header.kid.as_deref(),
            jws.signing_input.as_bytes(),
            &signature,
        )
    }
}
