//! [`ResponseFuture`], the future of [`RequireClaims`](super::RequireClaims).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures_util::future::BoxFuture;
use http::{Request, Response};
use pin_project::pin_project;
use tower_service::Service;

use crate::{AuthError, ErrorResponder};

/// The future of [`RequireClaims`](super::RequireClaims): a refusal answered at once, an
/// asynchronous requirement being checked, or the inner service's own future.
#[pin_project]
pub struct ResponseFuture<S, ReqBody, R>
where
    S: Service<Request<ReqBody>>,
{
    #[pin]
    state: State<S, ReqBody, R>,
}

#[pin_project(project = StateProj)]
enum State<S, ReqBody, R>
where
    S: Service<Request<ReqBody>>,
{
    /// Refused without the inner service; `None` once the response is handed out.
    Rejected { response: Option<S::Response> },
    /// Waiting for [`predicate_async`](super::RequireClaimsLayer::predicate_async); `None`
    /// once the request has moved on.
    Checking {
        check: BoxFuture<'static, bool>,
        parked: Option<Box<Parked<S, ReqBody, R>>>,
    },
    /// Let through.
    Inner {
        #[pin]
        future: S::Future,
    },
}

/// A request waiting for an asynchronous check, with the readied service that will take it.
pub(super) struct Parked<S, ReqBody, R>
where
    S: Service<Request<ReqBody>>,
{
    pub(super) request: Request<ReqBody>,
    pub(super) inner: S,
    pub(super) responder: Arc<R>,
    /// Answer as the `JwtAuth` in front does (see `RequireClaimsLayer::inherit`).
    pub(super) inherit: bool,
    /// `super::service::respond` for the layer's claims type, which this future does not
    /// name: it finds the responder the `JwtAuth` for that type lent.
    pub(super) respond: fn(&R, bool, &AuthError, &Request<ReqBody>) -> S::Response,
    /// What a refusal names in its `scope` attribute.
    pub(super) scope: Arc<str>,
}

impl<S, ReqBody, R> ResponseFuture<S, ReqBody, R>
where
    S: Service<Request<ReqBody>>,
{
    pub(super) fn rejected(response: S::Response) -> Self {
        ResponseFuture {
            state: State::Rejected {
                response: Some(response),
            },
        }
    }

    pub(super) fn inner(future: S::Future) -> Self {
        ResponseFuture {
            state: State::Inner { future },
        }
    }

    pub(super) fn checking(check: BoxFuture<'static, bool>, parked: Parked<S, ReqBody, R>) -> Self {
        ResponseFuture {
            state: State::Checking {
                check,
                parked: Some(Box::new(parked)),
            },
        }
    }
}

impl<S, ReqBody, ResBody, R> Future for ResponseFuture<S, ReqBody, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    R: ErrorResponder<ResBody>,
    ResBody: 'static,
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
                StateProj::Checking { check, parked } => {
                    let allowed = ready!(check.as_mut().poll(cx));
                    let Parked {
                        request,
                        mut inner,
                        responder,
                        inherit,
                        respond,
                        scope,
                    } = *parked
                        .take()
                        .expect("ResponseFuture polled after completion");
                    if !allowed {
                        let error = AuthError::InsufficientScope {
                            scope: scope.to_string(),
                        };
                        return Poll::Ready(Ok(respond(&*responder, inherit, &error, &request)));
                    }
                    state.set(State::Inner {
                        future: inner.call(request),
                    });
                }
                StateProj::Inner { future } => return future.poll(cx),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures_util::future::{Ready, ready};
    use tower_layer::Layer;

    use super::*;
    use crate::authorize::RequireClaimsLayer;
    use crate::claims::{Anonymous, Claims, LayerId};

    /// Counts its calls; ready only after `poll_ready`, so a call to a clone that was never
    /// polled ready is caught.
    struct Handler {
        calls: Arc<AtomicUsize>,
        ready: bool,
    }

    impl Clone for Handler {
        fn clone(&self) -> Self {
            Handler {
                calls: Arc::clone(&self.calls),
                ready: false,
            }
        }
    }

    impl Service<Request<()>> for Handler {
        type Response = Response<String>;
        type Error = Infallible;
        type Future = Ready<Result<Response<String>, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            self.ready = true;
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<()>) -> Self::Future {
            assert!(self.ready, "called without poll_ready");
            self.ready = false;
            self.calls.fetch_add(1, Ordering::SeqCst);
            ready(Ok(Response::new("handled".to_owned())))
        }
    }

    /// A request carrying `claims`, or marked anonymous.
    fn request(claims: Option<&'static str>) -> Request<()> {
        let mut req = Request::new(());
        match claims {
            Some(claims) => {
                req.extensions_mut().insert(Claims::new(claims));
            }
            None => {
                req.extensions_mut()
                    .insert(Anonymous::<&'static str>::new(LayerId::NONE));
            }
        }
        req
    }

    fn call(
        layer: &RequireClaimsLayer<&'static str>,
        req: Request<()>,
    ) -> (Response<String>, usize) {
        let calls = Arc::new(AtomicUsize::new(0));
        let mut service = layer.layer(Handler {
            calls: Arc::clone(&calls),
            ready: false,
        });
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(service.poll_ready(&mut cx).is_ready());
        let response = futures_util::FutureExt::now_or_never(service.call(req))
            .expect("every future here completes at once")
            .unwrap_or_else(|e| match e {});
        (response, calls.load(Ordering::SeqCst))
    }

    #[test]
    fn each_state_finishes_once() {
        let sync = RequireClaimsLayer::new(crate::authorize::Requirement::predicate(
            "alice",
            |c: &&str| *c == "alice",
        ));
        let asynchronous =
            RequireClaimsLayer::predicate_async("alice", |c: Claims<&'static str>| async move {
                *c == "alice"
            });
        for layer in [&sync, &asynchronous] {
            let (res, calls) = call(layer, request(Some("alice")));
            assert_eq!((res.body().as_str(), calls), ("handled", 1), "{layer:?}");
            let (res, calls) = call(layer, request(Some("bob")));
            assert_eq!((res.status().as_u16(), calls), (403, 0), "{layer:?}");
            let (res, calls) = call(layer, request(None));
            assert_eq!((res.status().as_u16(), calls), (401, 0), "{layer:?}");
        }
    }
}
