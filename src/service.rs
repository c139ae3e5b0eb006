//! [`JwtAuth`], the middleware service, and its [`ResponseFuture`].

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures_util::future::BoxFuture;
use http::{Request, Response};
use pin_project::pin_project;
use serde::de::DeserializeOwned;
use tower_service::Service;

use crate::claims::Anonymous;
use crate::layer::{Decision, Shared};
use crate::{AuthError, Claims, ErrorResponder};

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
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    C: DeserializeOwned + Send + Sync + 'static,
    R: ErrorResponder<ResBody>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let decision = self
            .shared
            .authenticate::<C>(req.method(), req.headers(), req.uri());
        // Only this layer vouches for claims: whatever sits in the extensions under our types
        // is replaced or removed.
        let ext = req.extensions_mut();
        ext.remove::<Anonymous>();
        match decision {
            Ok(Decision::Pass(Some(claims))) => {
                ext.insert(claims);
                ResponseFuture::inner(self.inner.call(req))
            }
            Ok(Decision::Pass(None)) => {
                ext.remove::<Claims<C>>();
                ext.insert(Anonymous);
                ResponseFuture::inner(self.inner.call(req))
            }
            Ok(Decision::CheckRevocation(claims, id)) => {
                ext.insert(claims);
                let check = self.shared.check_revocation(id);
                ResponseFuture::checking(&mut self.inner, req, check, &self.shared.responder)
            }
            #[cfg(feature = "remote")]
            Ok(Decision::RefreshKeys(token)) => {
                ext.remove::<Claims<C>>();
                let check = Arc::clone(&self.shared).refresh_then_verify::<C>(token);
                ResponseFuture::checking(&mut self.inner, req, check, &self.shared.responder)
            }
            Err(error) => {
                ResponseFuture::rejected(self.shared.responder.respond(&error, req.headers()))
            }
        }
    }
}

/// The future of [`JwtAuth`] (and of [`RequireClaims`](crate::RequireClaims)): an immediate
/// rejection, an asynchronous check (revocation, a key refresh, an async requirement), or the
/// inner service's own future.
#[pin_project]
pub struct ResponseFuture<S, ReqBody, R>
where
    S: Service<Request<ReqBody>>,
{
    #[pin]
    state: State<S, ReqBody, R>,
}

#[pin_project(project = StateProj, project_replace = StateOwn)]
enum State<S, ReqBody, R>
where
    S: Service<Request<ReqBody>>,
{
    Rejected {
        response: Option<S::Response>,
    },
    // Boxed: only the slow path pays for its size.
    Checking {
        pending: Box<Pending<S, ReqBody, R>>,
    },
    Inner {
        #[pin]
        future: S::Future,
    },
    Done,
}

/// A request waiting for an asynchronous check, with the readied service that will take it.
struct Pending<S, ReqBody, R> {
    /// The check; what it yields (the claims, after a key refresh) joins the request.
    check: BoxFuture<'static, Result<http::Extensions, AuthError>>,
    request: Request<ReqBody>,
    inner: S,
    responder: Arc<R>,
}

impl<S, ReqBody, R> ResponseFuture<S, ReqBody, R>
where
    S: Service<Request<ReqBody>>,
{
    /// A refusal, answered without the inner service.
    pub(crate) fn rejected(response: S::Response) -> Self {
        ResponseFuture {
            state: State::Rejected {
                response: Some(response),
            },
        }
    }

    /// The inner service's own future.
    pub(crate) fn inner(future: S::Future) -> Self {
        ResponseFuture {
            state: State::Inner { future },
        }
    }

    /// Parks `request` behind an asynchronous check. `service` was polled ready; that one goes
    /// into the future and a clone stays behind (tower's `mem::replace` pattern), so the call
    /// after the check goes to a ready service.
    pub(crate) fn checking(
        service: &mut S,
        request: Request<ReqBody>,
        check: BoxFuture<'static, Result<http::Extensions, AuthError>>,
        responder: &Arc<R>,
    ) -> Self
    where
        S: Clone,
    {
        let clone = service.clone();
        let inner = std::mem::replace(service, clone);
        let responder = Arc::clone(responder);
        let pending = Box::new(Pending {
            check,
            request,
            inner,
            responder,
        });
        ResponseFuture {
            state: State::Checking { pending },
        }
    }
}

impl<S, ReqBody, ResBody, R> Future for ResponseFuture<S, ReqBody, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    R: ErrorResponder<ResBody>,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProj::Rejected { response } => {
                    let response = response
                        .take()
                        .expect("ResponseFuture polled after completion");
                    return Poll::Ready(Ok(response));
                }
                StateProj::Checking { pending } => {
                    let outcome = ready!(pending.check.as_mut().poll(cx));
                    let StateOwn::Checking { pending } =
                        state.as_mut().project_replace(State::Done)
                    else {
                        unreachable!("the state was Checking a moment ago");
                    };
                    let Pending {
                        request,
                        mut inner,
                        responder,
                        ..
                    } = *pending;
                    match outcome {
                        Ok(extensions) => {
                            let mut request = request;
                            request.extensions_mut().extend(extensions);
                            state.set(State::Inner {
                                future: inner.call(request),
                            });
                        }
                        Err(error) => {
                            return Poll::Ready(Ok(responder.respond(&error, request.headers())));
                        }
                    }
                }
                StateProj::Inner { future } => return future.poll(cx),
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            }
        }
    }
}
