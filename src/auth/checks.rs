//! Claim checks beyond the claims policy, run after it and before the revocation check: the
//! application's [`validate`](crate::JwtAuthBuilder::validate) hooks on its typed claims, and
//! the provider presets' checks on the claims set's JSON.
//!
//! The two kinds differ in when they run. A hook of the application may consult anything (a
//! tenant list that changes, a feature flag), so it runs on every request, a cached token's
//! included. A preset's check reads only the token's own claims, so its answer for a token
//! never changes: it runs when the token is verified, and a cached copy, which is the same
//! token (the cache compares it whole), has passed it.

use std::any::Any;
use std::sync::Arc;

use crate::AuthError;

/// A hook on the typed claims `C`, type-erased (a layer has one claims type: the downcast
/// succeeds; if it ever did not, the hook refuses).
type ClaimsCheck = Arc<dyn Fn(&dyn Any) -> bool + Send + Sync>;

/// A check on the claims set's JSON text, naming the reason it refuses with.
pub(crate) type PayloadCheck = Arc<dyn Fn(&[u8]) -> Result<(), AuthError> + Send + Sync>;

/// Every extra check of one layer; all must pass (AND): the payload checks (the presets'), then
/// the claims hooks (`validate`), each group in the order it was added.
#[derive(Clone, Default)]
pub(crate) struct Checks {
    claims: Vec<ClaimsCheck>,
    payload: Vec<PayloadCheck>,
}

impl Checks {
    /// Adds an application hook on claims of type `C`.
    pub(crate) fn add_claims<C: 'static>(
        &mut self,
        check: impl Fn(&C) -> bool + Send + Sync + 'static,
    ) {
        self.claims.push(Arc::new(move |claims: &dyn Any| {
            claims.downcast_ref::<C>().is_some_and(&check)
        }));
    }

    /// Adds a check on the claims set's JSON.
    pub(crate) fn add_payload(&mut self, check: PayloadCheck) {
        self.payload.push(check);
    }

    /// The checks of a freshly verified token: the payload checks, then the hooks.
    pub(crate) fn verified<C: 'static>(&self, payload: &[u8], claims: &C) -> Result<(), AuthError> {
        for check in &self.payload {
            check(payload)?;
        }
        self.hooks(claims)
    }

    /// The application's hooks alone: for a cached token, which passed the payload checks when
    /// it was verified.
    pub(crate) fn hooks<C: 'static>(&self, claims: &C) -> Result<(), AuthError> {
        if self.claims.iter().all(|check| check(claims)) {
            Ok(())
        } else {
            Err(AuthError::ClaimsRejected)
        }
    }
}
