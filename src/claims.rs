//! The verified claims, as handed to handlers.
//!
//! [`JwtAuth`](crate::JwtAuth) inserts a [`Claims<C>`] into the request extensions of every
//! request it lets through with a token. Any handler can read it from there; with the feature
//! `axum` it is also an extractor:
//!
//! ```
//! # #[cfg(feature = "axum")] {
//! use axum::{Router, routing::get};
//! use tower_jwt_auth::{Claims, JwtAuthLayer};
//!
//! #[derive(serde::Deserialize)]
//! struct MyClaims { sub: String }
//!
//! async fn me(claims: Claims<MyClaims>) -> String {
//!     claims.sub.clone()
//! }
//!
//! // With `.optional()` on the layer, anonymous requests come through as `None`.
//! async fn greet(claims: Option<Claims<MyClaims>>) -> String {
//!     match claims {
//!         Some(c) => format!("hello {}", c.sub),
//!         None => "hello stranger".into(),
//!     }
//! }
//!
//! let auth = JwtAuthLayer::<MyClaims>::builder()
//!     .hs256(b"an example secret that is 32 bytes+")
//!     .build()
//!     .unwrap();
//! let app: Router = Router::new()
//!     .route("/me", get(me))
//!     .route("/greet", get(greet))
//!     .layer(auth);
//! # }
//! ```
//!
//! The claims sit behind an [`Arc`], so cloning `Claims<C>` (as every extractor does) never
//! copies them, and `C` itself need not be `Clone`.

use std::ops::Deref;
use std::sync::Arc;

/// The verified claims of the request's token, typed as `C`.
///
/// Dereferences to `C`. [`Claims::into_inner`] takes `C` out (cloning only when another
/// reference is still alive).
#[derive(Debug)]
pub struct Claims<C>(Arc<C>);

impl<C> Claims<C> {
    /// Wraps verified claims. The layer does this; tests of handlers may too.
    pub fn new(claims: C) -> Claims<C> {
        Claims(Arc::new(claims))
    }

    /// The shared claims.
    pub fn as_arc(&self) -> &Arc<C> {
        &self.0
    }

    /// The claims by value.
    pub fn into_inner(self) -> C
    where
        C: Clone,
    {
        Arc::unwrap_or_clone(self.0)
    }
}

impl<C> Clone for Claims<C> {
    fn clone(&self) -> Self {
        Claims(Arc::clone(&self.0))
    }
}

impl<C> Deref for Claims<C> {
    type Target = C;
    fn deref(&self) -> &C {
        &self.0
    }
}

/// Marks a request the layer let through without a token (optional mode, CORS preflight), so
/// `RequireClaims` can tell it from a request no layer looked at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Anonymous;

impl<C> From<Arc<C>> for Claims<C> {
    fn from(claims: Arc<C>) -> Self {
        Claims(claims)
    }
}

#[cfg(feature = "axum")]
mod axum_impl {
    use std::convert::Infallible;

    use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
    use axum_core::response::{IntoResponse, Response};
    use http::request::Parts;

    use super::Claims;
    use crate::{AuthError, ErrorResponder, Rfc6750};

    /// Reads the claims the layer inserted. Without them (no layer in front of the handler,
    /// or the layer is in optional mode and no token came) the request is answered like a
    /// request without a token: 401 with `WWW-Authenticate: Bearer`.
    impl<S, C> FromRequestParts<S> for Claims<C>
    where
        S: Send + Sync,
        C: Send + Sync + 'static,
    {
        type Rejection = AuthError;

        async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, AuthError> {
            parts
                .extensions
                .get::<Claims<C>>()
                .cloned()
                .ok_or(AuthError::MissingToken)
        }
    }

    /// `Option<Claims<C>>`: `None` for anonymous requests in optional mode.
    impl<S, C> OptionalFromRequestParts<S> for Claims<C>
    where
        S: Send + Sync,
        C: Send + Sync + 'static,
    {
        type Rejection = Infallible;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Option<Self>, Infallible> {
            Ok(parts.extensions.get::<Claims<C>>().cloned())
        }
    }

    /// The RFC 6750 response for this error, as [`Rfc6750`] writes it.
    impl IntoResponse for AuthError {
        fn into_response(self) -> Response {
            Rfc6750::default().respond(&self, &http::HeaderMap::new())
        }
    }
}
