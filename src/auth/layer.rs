//! [`JwtAuthLayer`]: the configured layer, and token checks outside a tower stack.

use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use tower_layer::Layer;

use super::builder::JwtAuthBuilder;
use super::pipeline::Pipeline;
use crate::{AuthError, Claims, JwtAuth, Rfc6750};

/// The default cap on a token's size: generous for access tokens with many claims, small
/// enough that no oversized token is ever decoded.
pub const DEFAULT_MAX_TOKEN_SIZE: usize = 8 * 1024;

/// A [`tower_layer::Layer`] that authenticates requests by JWT and hands the typed claims
/// `C` to the inner service as [`Claims<C>`].
///
/// Built by [`JwtAuthLayer::builder`]. Cloning is cheap: all state sits behind one `Arc`.
pub struct JwtAuthLayer<C, R = Rfc6750> {
    pub(crate) pipeline: Arc<Pipeline<R>>,
    pub(crate) _claims: PhantomData<fn() -> C>,
}

impl<C, R> Clone for JwtAuthLayer<C, R> {
    fn clone(&self) -> Self {
        JwtAuthLayer {
            pipeline: Arc::clone(&self.pipeline),
            _claims: PhantomData,
        }
    }
}

impl<C, R> std::fmt::Debug for JwtAuthLayer<C, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuthLayer").finish_non_exhaustive()
    }
}

impl<C: DeserializeOwned + 'static, R> JwtAuthLayer<C, R> {
    /// Verifies `token` as the layer would (size, form, header policy, key, signature, claims
    /// policy, [`validate`](crate::JwtAuthBuilder::validate) hooks) and returns its claims,
    /// outside any tower stack: for tokens that arrive another way, such as inside a WebSocket
    /// message. The revocation store and the cache are not
    /// consulted (both are asynchronous or request-bound); the CSRF and source rules do not
    /// apply. With [DPoP](crate::JwtAuthBuilder::dpop) on, a token that needs a proof is
    /// refused ([`AuthError::DpopRequired`]): bound to a key (`cnf.jkt`), or any token in
    /// required mode, since no proof can come with it; with
    /// [certificate-bound tokens](crate::JwtAuthBuilder::certificate_bound_tokens) checked, a
    /// token bound to a certificate is refused ([`AuthError::CertificateMismatch`]).
    ///
    /// ```
    /// # #[cfg(feature = "issue")] {
    /// use tower_jwt_auth::{AuthError, JwtAuthLayer};
    /// use tower_jwt_auth::issue::TokenIssuer;
    ///
    /// #[derive(Debug, serde::Deserialize)]
    /// struct MyClaims { sub: String }
    ///
    /// let secret = b"an example secret that is 32 bytes+";
    /// let auth = JwtAuthLayer::<MyClaims>::builder().hs256(secret).build().unwrap();
    /// let token = TokenIssuer::hs256(secret).unwrap().issue("alice", &serde_json::json!({})).unwrap().token;
    /// assert_eq!(auth.verify(&token).unwrap().sub, "alice");
    /// assert_eq!(auth.verify("not.a.token").unwrap_err(), AuthError::MalformedHeader);
    /// # }
    /// ```
    pub fn verify(&self, token: &str) -> Result<Claims<C>, AuthError> {
        self.pipeline.verify_token::<C>(token).map(Claims::new)
    }

    /// Checks only the form, the header policy and the signature of a compact JWS, and returns
    /// its decoded payload, which need not be a claims set (RFC 7515 §5.2). No claim is
    /// checked.
    pub fn verify_signature(&self, token: &str) -> Result<Vec<u8>, AuthError> {
        self.pipeline.verify_signature(token)
    }
}

impl<C, R> JwtAuthLayer<C, R> {
    /// The protected resource metadata (RFC 9728), completed from this layer's configuration,
    /// when [`resource_metadata`](crate::JwtAuthBuilder::resource_metadata) was configured: a
    /// service to mount at its [`path`](crate::resource_metadata::ResourceMetadata::path).
    pub fn resource_metadata(&self) -> Option<crate::resource_metadata::ResourceMetadata> {
        self.pipeline.resource.metadata.clone()
    }

    /// The verified-token cache's counters, when a cache is configured.
    #[cfg(feature = "cache")]
    pub fn cache_stats(&self) -> Option<crate::cache::CacheStats> {
        self.pipeline
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
        JwtAuth::new(inner, Arc::clone(&self.pipeline))
    }
}
