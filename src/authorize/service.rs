//! [`RequireClaims`], the service: judges each request by its claims.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::{Request, Response};
use tower_service::Service;

use super::future::{Parked, ResponseFuture};
use super::layer::{RequireClaimsLayer, Rule};
use crate::claims::{self, Left, NoLayer};
use crate::response::LayerResponder;
use crate::{AuthError, ErrorResponder, Rfc6750};

/// Middleware that lets through only requests whose claims meet a requirement; made by
/// [`RequireClaimsLayer`].
///
/// A request that passes reaches the inner service unchanged; any other is answered by the
/// responder `R` without reaching it.
pub struct RequireClaims<S, C, R = Rfc6750> {
    inner: S,
    layer: RequireClaimsLayer<C, R>,
}

impl<S, C, R> RequireClaims<S, C, R> {
    pub(super) fn new(inner: S, layer: RequireClaimsLayer<C, R>) -> Self {
        RequireClaims { inner, layer }
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

impl<S: Clone, C, R> Clone for RequireClaims<S, C, R> {
    fn clone(&self) -> Self {
        RequireClaims {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: std::fmt::Debug, C, R> std::fmt::Debug for RequireClaims<S, C, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequireClaims")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

/// What to do with a request, decided from its extensions alone.
enum Verdict {
    Pass,
    Deny(AuthError),
    /// Wait for the asynchronous check; a `false` is refused naming the scope.
    Ask(BoxFuture<'static, bool>, Arc<str>),
}

impl<S, C: Send + Sync + 'static, R> RequireClaims<S, C, R> {
    /// Claims meet the rule or not; no claims is an anonymous request (a `JwtAuthLayer` in
    /// optional mode marked it) or a wiring mistake, which never passes.
    fn judge<B>(&self, req: &Request<B>) -> Verdict {
        let claims = match claims::lookup::<C>(req.extensions(), "RequireClaims") {
            Ok(Left::Verified(claims)) => claims,
            Ok(Left::Anonymous(_)) if self.layer.allow_anonymous => return Verdict::Pass,
            Ok(Left::Anonymous(_)) => return Verdict::Deny(AuthError::MissingToken),
            Err(NoLayer) => return Verdict::Deny(AuthError::Misconfigured),
        };
        match &self.layer.rule {
            Rule::Sync(requirement) if requirement.is_met_by(claims) => Verdict::Pass,
            Rule::Sync(requirement) => Verdict::Deny(AuthError::InsufficientScope {
                scope: requirement.scope.to_string(),
            }),
            Rule::Async { check, scope } => Verdict::Ask(check(claims.clone()), Arc::clone(scope)),
        }
    }
}

impl<S, C, R, ReqBody, ResBody> Service<Request<ReqBody>> for RequireClaims<S, C, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    C: Send + Sync + 'static,
    R: ErrorResponder<ResBody>,
    ResBody: 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        match self.judge(&req) {
            Verdict::Pass => ResponseFuture::inner(self.inner.call(req)),
            Verdict::Deny(error) => ResponseFuture::rejected(respond::<C, _, _, _>(
                &*self.layer.responder,
                self.layer.inherit,
                &error,
                &req,
            )),
            Verdict::Ask(check, scope) => {
                // The service polled ready goes with the request; a clone stays behind
                // (tower's `mem::replace` pattern), so the call after the check goes to a
                // ready service.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::checking(
                    check,
                    Parked {
                        request: req,
                        inner,
                        responder: Arc::clone(&self.layer.responder),
                        inherit: self.layer.inherit,
                        respond: respond::<C, R, ReqBody, ResBody>,
                        scope,
                    },
                )
            }
        }
    }
}

/// Answers `error` with the responder of the `JwtAuth` for `C` that let `req` through (the
/// one its claims or anonymous mark name) when `inherit` (no responder was set on the
/// `RequireClaimsLayer`) and it lent one for this body type; with `responder` otherwise.
pub(super) fn respond<C, R, ReqBody, ResBody>(
    responder: &R,
    inherit: bool,
    error: &AuthError,
    req: &Request<ReqBody>,
) -> Response<ResBody>
where
    R: ErrorResponder<ResBody>,
    C: Send + Sync + 'static,
    ResBody: 'static,
{
    let lent = || {
        let layer = claims::left::<C>(req.extensions())?.layer();
        LayerResponder::<C, ResBody>::lent_by(req.extensions(), layer)
    };
    if inherit && let Some(lent) = lent() {
        return lent.respond(error, req.headers());
    }
    responder.respond(error, req.headers())
}
