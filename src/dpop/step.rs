//! The one asynchronous DPoP step of the pipeline: spending the proof's `jti` (RFC 9449 §4.3
//! point 11, §11.1) once the token verified (a token whose key had to be fetched first is
//! verified, and its revocation checked, before the proof is spent), then whatever the
//! token's own decision still waits for.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use http::Extensions;
use serde::de::DeserializeOwned;

use super::Proof;
use crate::AuthError;
use crate::auth::pipeline::{Decision, Pipeline, Rejection};

impl<R: Send + Sync + 'static> Pipeline<R> {
    /// Spends `proof`, then completes `decision` (the token's, made without I/O): the
    /// revocation check or the key refresh it needs. Yields the claims, which carry the
    /// proof's [`DpopKey`](super::DpopKey), for the request's extensions.
    pub(crate) fn spend_proof_then<C>(
        self: Arc<Self>,
        decision: Decision<C>,
        proof: Proof,
    ) -> BoxFuture<'static, Result<Extensions, Rejection>>
    where
        C: DeserializeOwned + Send + Sync + 'static,
    {
        Box::pin(async move {
            let dpop = self
                .resource
                .dpop
                .as_ref()
                .ok_or(AuthError::Misconfigured)?;
            // A token whose key had to be fetched is verified first: only a token that
            // verified spends a proof (writes to the store).
            #[cfg(feature = "remote")]
            let decision = match decision {
                Decision::RefreshKeys(token) => self.refresh_keys::<C>(&token).await?,
                decision => decision,
            };
            let key = dpop.spend(proof).await.map_err(|error| {
                let rejection = Rejection::from(error);
                match decision.verifier() {
                    Some(index) => rejection.by(index),
                    None => rejection,
                }
            })?;
            let decision = match decision {
                Decision::Verified(claims, index) => {
                    Decision::Verified(claims.with_dpop_key(key), index)
                }
                Decision::CheckRevocation(claims, id, index) => {
                    Decision::CheckRevocation(claims.with_dpop_key(key), id, index)
                }
                // `complete` refuses a decision that names no claims.
                decision => decision,
            };
            Arc::clone(&self).complete(decision).await
        })
    }
}
