//! [`JwtAuth`], the middleware service.

use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use serde::de::DeserializeOwned;
use tower_service::Service;

use super::future::ResponseFuture;
use super::pipeline::{Decision, Pipeline};
use crate::claims::Anonymous;
use crate::response::LayerResponder;
use crate::{AuthError, Claims, ErrorResponder};

/// Middleware that authenticates each request by JWT; made by [`JwtAuthLayer`](crate::JwtAuthLayer).
///
/// A request with a valid token reaches the inner service with [`Claims<C>`](crate::Claims)
/// in its extensions; any other is answered by the responder `R` without reaching it.
pub struct JwtAuth<S, C, R = crate::Rfc6750> {
    inner: S,
    pipeline: Arc<Pipeline<R>>,
    _claims: PhantomData<fn() -> C>,
}

impl<S, C, R> JwtAuth<S, C, R> {
    pub(crate) fn new(inner: S, pipeline: Arc<Pipeline<R>>) -> Self {
        JwtAuth {
            inner,
            pipeline,
            _claims: PhantomData,
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, C, R> Clone for JwtAuth<S, C, R> {
    fn clone(&self) -> Self {
        JwtAuth {
            inner: self.inner.clone(),
            pipeline: Arc::clone(&self.pipeline),
            _claims: PhantomData,
        }
    }
}

impl<S: std::fmt::Debug, C, R> std::fmt::Debug for JwtAuth<S, C, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuth")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, C, R, ReqBody, ResBody> Service<Request<ReqBody>> for JwtAuth<S, C, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    C: DeserializeOwned + Send + Sync + 'static,
    R: ErrorResponder<ResBody> + Send + Sync + 'static,
    ResBody: 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let decision = self.pipeline.authenticate::<C>(
            req.method(),
            req.headers(),
            req.uri(),
            req.extensions(),
        );
        // Only this layer vouches for claims: whatever sits in the extensions under our types
        // is replaced or removed.
        let ext = req.extensions_mut();
        ext.remove::<Anonymous<C>>();
        ext.remove::<Claims<C>>();
        // The `Claims<C>` extractor and `RequireClaims` for `C` behind us answer with the
        // responder we lend, which our claims and mark name. Without one (a default layer
        // lends none; a responder lent by a layer in front names that layer) they answer as
        // `Rfc6750::default()`, which is what a default layer answers too.
        if decision.is_ok() && self.pipeline.share_responder {
            let responder: Arc<dyn ErrorResponder<ResBody>> = self.pipeline.clone();
            ext.insert(LayerResponder::<C, ResBody>::new(
                self.pipeline.id,
                responder,
            ));
        }
        match decision {
            Ok(Decision::Verified(claims, index)) => {
                self.pipeline.accepted(index);
                ext.insert(claims);
                ResponseFuture::inner(self.inner.call(req))
            }
            Ok(Decision::Anonymous) => {
                ext.insert(Anonymous::<C>::new(self.pipeline.id));
                ResponseFuture::inner(self.inner.call(req))
            }
            Ok(decision @ Decision::CheckRevocation(..)) => {
                let check = Arc::clone(&self.pipeline).complete(decision);
                ResponseFuture::checking(&mut self.inner, req, check, &self.pipeline)
            }
            #[cfg(feature = "remote")]
            Ok(Decision::RefreshKeys(token)) => {
                let pipeline = Arc::clone(&self.pipeline);
                let check = Box::pin(async move {
                    let decision = pipeline.refresh_keys::<C>(&token).await?;
                    pipeline.complete(decision).await
                });
                ResponseFuture::checking(&mut self.inner, req, check, &self.pipeline)
            }
            #[cfg(feature = "dpop")]
            Ok(Decision::SpendProof(spend)) => {
                let (decision, proof) = *spend;
                let check = Arc::clone(&self.pipeline).spend_proof_then::<C>(decision, proof);
                ResponseFuture::checking(&mut self.inner, req, check, &self.pipeline)
            }
            Err(rejection) => {
                ResponseFuture::rejected(self.pipeline.respond(&rejection, req.headers()))
            }
        }
    }
}

/// The layer's responder, shared with the handlers behind it as a [`LayerResponder`] (an
/// `Arc` clone of the pipeline, no allocation). Its challenges get the layer's DPoP and
/// resource-metadata parameters (`crate::resource`), whoever answers.
impl<R: ErrorResponder<B>, B> ErrorResponder<B> for Pipeline<R> {
    fn respond(&self, error: &AuthError, request: &http::HeaderMap) -> Response<B> {
        let mut response = self.responder.respond(error, request);
        self.resource
            .extend_challenges(error, request, response.headers_mut());
        response
    }
}
