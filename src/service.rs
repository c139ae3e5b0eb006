//! [`JwtAuth`], the middleware service, and its [`ResponseFuture`].

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use pin_project::pin_project;
use serde::de::DeserializeOwned;
use tower_service::Service;

use crate::ErrorResponder;
use crate::layer::Shared;

/// Middleware that authenticates each request by JWT; made by [`JwtAuthLayer`](crate::JwtAuthLayer).
///
/// A request with a valid token reaches the inner service with [`Claims<C>`](crate::Claims)
/// in its extensions; any other is answered by the responder `R` without reaching it.
pub struct JwtAuth<S, C, R = crate::Rfc6750> {
    inner: S,
    shared: Arc<Shared<R>>,
    _claims: PhantomData<fn() -> C>,
}

impl<S, C, R> JwtAuth<S, C, R> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<R>>) -> Self {
        JwtAuth {
            inner,
            shared,
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
            shared: Arc::clone(&self.shared),
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
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    C: DeserializeOwned + Send + Sync + 'static,
    R: ErrorResponder<ResBody>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // The decision is made here, synchronously, so the service polled ready is the one
        // called: no clone of the inner service is ever needed.
        match self
            .shared
            .authenticate::<C>(req.method(), req.headers(), req.uri())
        {
            Ok(claims) => {
                // Whatever a previous layer may have put there under the same type is replaced
                // (or removed, for an anonymous request): only this layer vouches for claims.
                match claims {
                    Some(claims) => req.extensions_mut().insert(claims),
                    None => req.extensions_mut().remove::<crate::Claims<C>>(),
                };
                ResponseFuture {
                    state: State::Inner {
                        future: self.inner.call(req),
                    },
                }
            }
            Err(error) => {
                let response = self.shared.responder.respond(&error, req.headers());
                ResponseFuture {
                    state: State::Rejected {
                        response: Some(response),
                    },
                }
            }
        }
    }
}

/// The future of [`JwtAuth`]: the inner service's, or an immediate rejection.
#[pin_project]
pub struct ResponseFuture<F, B> {
    #[pin]
    state: State<F, B>,
}

#[pin_project(project = StateProj)]
enum State<F, B> {
    Inner {
        #[pin]
        future: F,
    },
    Rejected {
        response: Option<Response<B>>,
    },
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Inner { future } => future.poll(cx),
            StateProj::Rejected { response } => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after completion"))),
        }
    }
}
