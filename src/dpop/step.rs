//! The one asynchronous DPoP step of the pipeline: spending the proof's `jti` (RFC 9449 §4.3
//! point 11, §11.1), then whatever the token's own decision still waits for.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use http::Extensions;
use serde::de::DeserializeOwned;

use super::Proof;
use crate::AuthError;
use crate::auth::pipeline::{Decision, Pipeline, Rejection};

impl<R: Send + Sync + 'static> Pipeline<R> {
    /// Spends `proof`, then completes `decision` (the token's, made without I/O): the
    /// revocation check or the key refresh it needs. Yields the claims and the [`DpopKey`]
    /// for the request's extensions.
    ///
    /// [`DpopKey`]: super::DpopKey
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
            let key = dpop.spend(proof).await?;
            let mut extensions = Extensions::new();
            match decision {
                Decision::Pass(Some(claims)) => {
                    extensions.insert(claims);
                }
                Decision::CheckRevocation(claims, id, index) => {
                    self.check_revocation(id, index).await?;
                    extensions.insert(claims);
                }
                #[cfg(feature = "remote")]
                Decision::RefreshKeys(token) => {
                    let verified = Arc::clone(&self)
                        .refresh_keys_then_verify::<C>(token)
                        .await?;
                    extensions.extend(verified);
                }
                // A proof goes with a token, so the token's decision names claims; anything
                // else is refused rather than let through without them.
                Decision::Pass(None) | Decision::SpendProof(..) => {
                    return Err(AuthError::Misconfigured.into());
                }
            }
            extensions.insert(key);
            Ok(extensions)
        })
    }
}
