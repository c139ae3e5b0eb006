use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;

/// The verified claims of the request's token, typed as `C`.
///
/// Dereferences to `C`. [`Claims::into_inner`] takes `C` out (cloning only when another
/// reference is still alive).
///
/// ```
/// # #[cfg(feature = "axum")] {
/// use axum::{Router, routing::get};
/// use tower_jwt_auth::{Claims, JwtAuthLayer};
///
/// #[derive(serde::Deserialize)]
/// struct MyClaims { sub: String }
///
/// async fn me(claims: Claims<MyClaims>) -> String {
///     claims.sub.clone()
/// }
///
/// // With `.optional()` on the layer, anonymous requests come through as `None`.
/// async fn greet(claims: Option<Claims<MyClaims>>) -> String {
///     match claims {
///         Some(c) => format!("hello {}", c.sub),
///         None => "hello stranger".into(),
///     }
/// }
///
/// let auth = JwtAuthLayer::<MyClaims>::builder()
///     .hs256(b"an example secret that is 32 bytes+")
///     .build()
///     .unwrap();
/// let app: Router = Router::new()
///     .route("/me", get(me))
///     .route("/greet", get(greet))
///     .layer(auth);
/// # }
/// ```
///
/// [`JwtAuth`](crate::JwtAuth) inserts a [`Claims<C>`] into the request extensions of every
/// request it lets through with a token. Any handler can read it from there; with the feature
/// `axum` it is also an extractor. The extractor tells three cases apart:
///
/// | the request | `Claims<C>` | `Option<Claims<C>>` |
/// |---|---|---|
/// | has a valid token | the claims | `Some` |
/// | has none, let through by a layer in optional mode | the layer's responder: 401, bare `Bearer` challenge (its realm) | `None` |
/// | no `JwtAuthLayer<C>` ran on it (a wiring mistake) | 500 | 500 |
///
/// Like axum's `Extension`, a missing layer is the server's fault, so it is a 500 with a text
/// naming the layer (`ClaimsRejection`), never a pass and never a 401 that
/// would send the client after a token it already sent.
///
/// The claims sit behind an [`Arc`], so cloning `Claims<C>` (as every extractor does) never
/// copies them, and `C` itself need not be `Clone`.
pub struct Claims<C> {
    claims: Arc<C>,
    /// The key of the DPoP proof the token was presented with (feature `dpop`).
    #[cfg(feature = "dpop")]
    dpop: Option<crate::dpop::DpopKey>,
    /// The layer that verified the token; [`LayerId::NONE`] for claims made by
    /// [`Claims::new`].
    layer: LayerId,
}

/// A `JwtAuthLayer`, told apart from every other layer of the process (its clones share it):
/// the claims and the anonymous mark a layer puts into a request name it, and so does the
/// responder it lends the handlers, which answer with a lent responder only when it is the
/// layer's whose claims or mark they read (`crate::response::LayerResponder`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LayerId(u64);

impl LayerId {
    /// No layer: claims a handler's test made.
    pub(crate) const NONE: LayerId = LayerId(0);

    /// A number no other layer of the process has.
    pub(crate) fn next() -> LayerId {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        LayerId(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
}

impl<C> Claims<C> {
    /// Wraps verified claims. The layer does this; tests of handlers may too.
    pub fn new(claims: C) -> Claims<C> {
        Claims::from(Arc::new(claims))
    }

    /// The claims by value.
    pub fn into_inner(self) -> C
    where
        C: Clone,
    {
        Arc::unwrap_or_clone(self.claims)
    }

    /// The key of the DPoP proof (RFC 9449) this token was presented with, which the layer
    /// checked against the token's `cnf.jkt`; `None` for a token presented as a Bearer token.
    /// It belongs to these claims: another `JwtAuthLayer` on the same request, for another
    /// claims type, neither provides nor removes it.
    #[cfg(feature = "dpop")]
    pub fn dpop_key(&self) -> Option<&crate::dpop::DpopKey> {
        self.dpop.as_ref()
    }

    /// These claims, presented with a DPoP proof of `key`.
    #[cfg(feature = "dpop")]
    pub(crate) fn with_dpop_key(mut self, key: crate::dpop::DpopKey) -> Claims<C> {
        self.dpop = Some(key);
        self
    }

    /// These claims, verified by `layer`.
    pub(crate) fn verified_by(mut self, layer: LayerId) -> Claims<C> {
        self.layer = layer;
        self
    }
}

impl<C: std::fmt::Debug> std::fmt::Debug for Claims<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut claims = f.debug_struct("Claims");
        claims.field("claims", &self.claims);
        #[cfg(feature = "dpop")]
        claims.field("dpop", &self.dpop);
        claims.finish_non_exhaustive()
    }
}

impl<C> Clone for Claims<C> {
    fn clone(&self) -> Self {
        Claims {
            claims: Arc::clone(&self.claims),
            #[cfg(feature = "dpop")]
            dpop: self.dpop.clone(),
            layer: self.layer,
        }
    }
}

impl<C> Deref for Claims<C> {
    type Target = C;
    fn deref(&self) -> &C {
        &self.claims
    }
}

/// Marks a request the layer for claims type `C` let through without a token (optional mode,
/// CORS preflight), so `RequireClaims` and the `Claims` extractor for `C` can tell it from a
/// request no layer for `C` looked at; names that layer. Typed like [`Claims<C>`]: a layer
/// for another claims type neither removes nor provides it.
pub(crate) struct Anonymous<C>(LayerId, PhantomData<fn() -> C>);

impl<C> Anonymous<C> {
    pub(crate) fn new(layer: LayerId) -> Self {
        Anonymous(layer, PhantomData)
    }
}

impl<C> Clone for Anonymous<C> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<C> Copy for Anonymous<C> {}

impl<C> From<Arc<C>> for Claims<C> {
    fn from(claims: Arc<C>) -> Self {
        Claims {
            claims,
            #[cfg(feature = "dpop")]
            dpop: None,
            layer: LayerId::NONE,
        }
    }
}

/// No `JwtAuthLayer` for the claims type ran on the request: a wiring mistake.
pub(crate) struct NoLayer;

impl NoLayer {
    /// What the extractors answer a missing layer with (500 for axum, `Internal` for tonic).
    #[cfg(any(feature = "axum", feature = "tonic"))]
    pub(crate) const TEXT: &'static str = "no JwtAuthLayer ran on this request: put \
         JwtAuthLayer, with the claims type the handler reads, in front of the handler";
}

/// What the layer for `C` that ran last on a request left in its extensions.
pub(crate) enum Left<'a, C> {
    /// The claims of the token it verified.
    Verified(&'a Claims<C>),
    /// The mark of a request it let through without a token.
    Anonymous(LayerId),
}

impl<'a, C> Left<'a, C> {
    /// The claims, if a token was verified.
    #[cfg(any(feature = "axum", feature = "tonic"))]
    pub(crate) fn claims(self) -> Option<&'a Claims<C>> {
        match self {
            Left::Verified(claims) => Some(claims),
            Left::Anonymous(_) => None,
        }
    }

    /// The layer that left them.
    pub(crate) fn layer(&self) -> LayerId {
        match self {
            Left::Verified(claims) => claims.layer,
            Left::Anonymous(layer) => *layer,
        }
    }
}

/// What the layer for `C` left in `extensions`, if one ran on the request: the one reading of
/// the two marks.
pub(crate) fn left<C: Send + Sync + 'static>(extensions: &http::Extensions) -> Option<Left<'_, C>> {
    if let Some(claims) = extensions.get::<Claims<C>>() {
        return Some(Left::Verified(claims));
    }
    extensions
        .get::<Anonymous<C>>()
        .map(|Anonymous(layer, _)| Left::Anonymous(*layer))
}

/// [`left`], for a reader that needs a layer for `C` in front (the `Claims` extractor,
/// `RequireClaims`, [`grpc`](crate::grpc)): [`NoLayer`] when none ran, a wiring mistake
/// reported as an error event naming `C` and `reader` (feature `tracing`).
pub(crate) fn lookup<'a, C: Send + Sync + 'static>(
    extensions: &'a http::Extensions,
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))] reader: &'static str,
) -> Result<Left<'a, C>, NoLayer> {
    let left = left(extensions);
    #[cfg(feature = "tracing")]
    if left.is_none() {
        tracing::error!(
            target: "tower_jwt_auth",
            claims_type = std::any::type_name::<C>(),
            reader,
            "found no claims of this type and no mark of a JwtAuthLayer for it: put JwtAuthLayer with the same claims type in front"
        );
    }
    left.ok_or(NoLayer)
}

#[cfg(feature = "axum")]
pub use self::axum_impl::ClaimsRejection;

#[cfg(feature = "axum")]
mod axum_impl {
    use axum_core::body::Body;
    use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
    use axum_core::response::{IntoResponse, Response};
    use http::header::{CONTENT_TYPE, HeaderValue};
    use http::request::Parts;
    use http::{Extensions, HeaderMap, StatusCode};
    use std::sync::Arc;

    use super::{Claims, Left, NoLayer};
    use crate::response::LayerResponder;
    use crate::{AuthError, ErrorResponder, Rfc6750};

    /// Why the [`Claims`] extractor refused a request, and how it is answered.
    ///
    /// Two reasons, told apart by [`is_missing_token`](Self::is_missing_token) and
    /// [`is_missing_layer`](Self::is_missing_layer), or by [`AuthError::from`]
    /// (`MissingToken` and `Misconfigured`):
    ///
    /// - a `JwtAuthLayer` in optional mode let the request through without a token: answered
    ///   by that layer's responder, as the layer itself answers a request without a token
    ///   (with [`Rfc6750`]: 401 and `WWW-Authenticate: Bearer realm="…"` naming the layer's
    ///   realm; with [`ProblemJson`](crate::ProblemJson): a problem document; gRPC callers get
    ///   status 16). When the layer's response body type is not axum's (a layer wrapped
    ///   around something else than axum routes, or a middleware that changes the response
    ///   body, such as compression, between the layer and the routes: put such middleware in
    ///   front of the layer), the answer is `Rfc6750::default()`'s. Behind several layers,
    ///   the responder is that of the layer for `C` (the nearest one, if several), whatever
    ///   layers for other claims types sit between (see
    ///   [`RequireClaimsLayer`](crate::authorize::RequireClaimsLayer)).
    /// - no `JwtAuthLayer` for this claims type ran on the request, a wiring mistake: 500 with
    ///   the text of this error, and an error event naming the claims type (feature
    ///   `tracing`).
    ///
    /// ```
    /// use tower_jwt_auth::{AuthError, Claims};
    /// # #[derive(serde::Deserialize)] struct MyClaims { sub: String }
    ///
    /// async fn me(claims: Result<Claims<MyClaims>, tower_jwt_auth::ClaimsRejection>) -> String {
    ///     match claims {
    ///         Ok(claims) => claims.sub.clone(),
    ///         Err(rejection) if rejection.is_missing_token() => "anonymous".into(),
    ///         Err(rejection) => AuthError::from(rejection).reason().into(),
    ///     }
    /// }
    /// # let _ = me;
    /// ```
    #[derive(Clone, thiserror::Error)]
    #[error("{}", self.text())]
    pub struct ClaimsRejection(Kind);

    #[derive(Clone)]
    enum Kind {
        /// No `JwtAuthLayer` for the claims type ran on the request.
        MissingLayer,
        /// A layer for the extractor's claims type let the request through without a token:
        /// answered by the responder it lent the handlers, if any (without one,
        /// `Rfc6750::default()` answers as the layer does), by the request's headers.
        MissingToken(Option<Arc<dyn ErrorResponder<Body>>>, HeaderMap),
    }

    impl ClaimsRejection {
        /// True when a `JwtAuthLayer` in optional mode let the request through without a
        /// token (answered like any request without a token).
        pub fn is_missing_token(&self) -> bool {
            matches!(self.0, Kind::MissingToken(..))
        }

        /// True when no `JwtAuthLayer` for the claims type ran on the request (answered 500).
        pub fn is_missing_layer(&self) -> bool {
            matches!(self.0, Kind::MissingLayer)
        }

        fn text(&self) -> &'static str {
            match self.0 {
                Kind::MissingLayer => NoLayer::TEXT,
                Kind::MissingToken(..) => "no bearer token",
            }
        }
    }

    impl std::fmt::Debug for ClaimsRejection {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(match self.0 {
                Kind::MissingLayer => "ClaimsRejection::MissingLayer",
                Kind::MissingToken(..) => "ClaimsRejection::MissingToken",
            })
        }
    }

    impl From<ClaimsRejection> for AuthError {
        /// `MissingToken` for an anonymous request, `Misconfigured` for a missing layer.
        fn from(rejection: ClaimsRejection) -> AuthError {
            match rejection.0 {
                Kind::MissingLayer => AuthError::Misconfigured,
                Kind::MissingToken(..) => AuthError::MissingToken,
            }
        }
    }

    impl IntoResponse for ClaimsRejection {
        fn into_response(self) -> Response {
            match self.0 {
                Kind::MissingLayer => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    [(
                        CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; charset=utf-8"),
                    )],
                    NoLayer::TEXT,
                )
                    .into_response(),
                Kind::MissingToken(Some(responder), headers) => {
                    responder.respond(&AuthError::MissingToken, &headers)
                }
                Kind::MissingToken(None, headers) => {
                    Rfc6750::default().respond(&AuthError::MissingToken, &headers)
                }
            }
        }
    }

    /// What the layer for `C` left: an error when none ran.
    fn lookup<C: Send + Sync + 'static>(
        extensions: &Extensions,
    ) -> Result<Left<'_, C>, ClaimsRejection> {
        super::lookup(extensions, "the Claims extractor")
            .map_err(|NoLayer| ClaimsRejection(Kind::MissingLayer))
    }

    /// Reads the claims the layer inserted. A request the layer let through without a token
    /// (optional mode) is answered by the layer's responder, as the layer answers any request
    /// without a token; a request no `JwtAuthLayer` for `C` ran on is answered 500 (see
    /// [`ClaimsRejection`]).
    impl<S, C> FromRequestParts<S> for Claims<C>
    where
        S: Send + Sync,
        C: Send + Sync + 'static,
    {
        type Rejection = ClaimsRejection;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Self, ClaimsRejection> {
            match lookup::<C>(&parts.extensions)? {
                Left::Verified(claims) => Ok(claims.clone()),
                Left::Anonymous(layer) => Err(ClaimsRejection(Kind::MissingToken(
                    LayerResponder::<C, Body>::lent_by(&parts.extensions, layer).cloned(),
                    parts.headers.clone(),
                ))),
            }
        }
    }

    /// `Option<Claims<C>>`: `None` for a request the layer let through without a token
    /// (optional mode). A request no `JwtAuthLayer` for `C` ran on is still answered 500: a
    /// missing layer would otherwise make every caller look anonymous.
    impl<S, C> OptionalFromRequestParts<S> for Claims<C>
    where
        S: Send + Sync,
        C: Send + Sync + 'static,
    {
        type Rejection = ClaimsRejection;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Option<Self>, ClaimsRejection> {
            Ok(lookup::<C>(&parts.extensions)?.claims().cloned())
        }
    }

    /// The RFC 6750 response for this error, as [`Rfc6750`] writes it.
    impl IntoResponse for AuthError {
        fn into_response(self) -> Response {
            Rfc6750::default().respond(&self, &http::HeaderMap::new())
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_rejection_answers_like_the_auth_error_it_maps_to() {
            let missing_token = ClaimsRejection(Kind::MissingToken(None, HeaderMap::new()));
            let missing_layer = ClaimsRejection(Kind::MissingLayer);
            for rejection in [missing_token.clone(), missing_layer.clone()] {
                let error = AuthError::from(rejection.clone());
                assert_eq!(rejection.into_response().status(), error.status());
            }
            assert_eq!(AuthError::from(missing_layer), AuthError::Misconfigured);
            // Without a responder from the layer, the default one's challenge.
            let response = missing_token.into_response();
            assert_eq!(
                response.headers().get(http::header::WWW_AUTHENTICATE),
                Some(&HeaderValue::from_static("Bearer realm=\"api\""))
            );
        }
    }
}
