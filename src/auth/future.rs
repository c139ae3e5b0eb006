//! The [`ResponseFuture`] of [`JwtAuth`](crate::JwtAuth).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures_util::future::BoxFuture;
use http::{Extensions, Request, Response};
use pin_project::pin_project;
use tower_service::Service;

use super::pipeline::{Pipeline, Rejection};
use crate::ErrorResponder;

/// The future of [`JwtAuth`](crate::JwtAuth): an immediate refusal, a wait (for the
/// revocation store or a key refresh) before the inner service is called, or the inner
/// service's own future.
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
    Waiting {
        pending: Box<Pending<S, ReqBody, R>>,
    },
    Inner {
        #[pin]
        future: S::Future,
    },
    Done,
}

/// A request waiting for a check, with the readied service that will take it.
struct Pending<S, ReqBody, R> {
    /// The check; what it yields (the claims, after a key refresh) joins the request.
    check: BoxFuture<'static, Result<Extensions, Rejection>>,
    request: Request<ReqBody>,
    inner: S,
    pipeline: Arc<Pipeline<R>>,
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

    /// Parks `request` behind `check`. `service` was polled ready; that one goes into the
    /// future and a clone stays behind (tower's `mem::replace` pattern), so the call after the
    /// check goes to a ready service.
    pub(crate) fn checking(
        service: &mut S,
        request: Request<ReqBody>,
        check: BoxFuture<'static, Result<Extensions, Rejection>>,
        pipeline: &Arc<Pipeline<R>>,
    ) -> Self
    where
        S: Clone,
    {
        let clone = service.clone();
        let inner = std::mem::replace(service, clone);
        let pending = Box::new(Pending {
            check,
            request,
            inner,
            pipeline: Arc::clone(pipeline),
        });
        ResponseFuture {
            state: State::Waiting { pending },
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
                StateProj::Waiting { pending } => {
                    let outcome = ready!(pending.check.as_mut().poll(cx));
                    let StateOwn::Waiting { pending } = state.as_mut().project_replace(State::Done)
                    else {
                        unreachable!("the state was Waiting a moment ago");
                    };
                    let Pending {
                        mut request,
                        mut inner,
                        pipeline,
                        ..
                    } = *pending;
                    match outcome {
                        Ok(extensions) => {
                            request.extensions_mut().extend(extensions);
                            state.set(State::Inner {
                                future: inner.call(request),
                            });
                        }
                        Err(rejection) => {
                            return Poll::Ready(
                                Ok(pipeline.respond(&rejection, request.headers())),
                            );
                        }
                    }
                }
                StateProj::Inner { future } => return future.poll(cx),
                StateProj::Done => panic!("ResponseFuture polled after completion"),
            }
        }
    }
}
