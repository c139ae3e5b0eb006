//! [`RequireClaimsLayer`]: what a route requires, and how a refusal is answered.

use std::future::Future;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use tower_layer::Layer;

use super::{HasRoles, HasScopes, RequireClaims, Requirement};
use crate::{Claims, Rfc6750};

/// An asynchronous check on the claims (e.g. a database lookup).
pub(super) type AsyncCheck<C> = Arc<dyn Fn(Claims<C>) -> BoxFuture<'static, bool> + Send + Sync>;

/// The check a [`RequireClaimsLayer`] applies: answered at once, or by a future.
pub(super) enum Rule<C> {
    Sync(Requirement<C>),
    Async {
        check: AsyncCheck<C>,
        scope: Arc<str>,
    },
}

impl<C> Rule<C> {
    fn scope(&self) -> &str {
        match self {
            Rule::Sync(requirement) => &requirement.scope,
            Rule::Async { scope, .. } => scope,
        }
    }
}

impl<C> Clone for Rule<C> {
    fn clone(&self) -> Self {
        match self {
            Rule::Sync(r) => Rule::Sync(r.clone()),
            Rule::Async { check, scope } => Rule::Async {
                check: Arc::clone(check),
                scope: Arc::clone(scope),
            },
        }
    }
}

/// A layer that lets through only requests whose claims meet a requirement; its service is
/// [`RequireClaims`].
///
/// Goes behind [`JwtAuthLayer`](crate::JwtAuthLayer) with the same claims type `C`. Cloning
/// is cheap: the requirement and the responder are shared.
///
/// Refusals are answered by the responder of the `JwtAuthLayer` for `C` in front (the nearest
/// one, if several; its realm, or its [`ProblemJson`](crate::ProblemJson) documents), found in
/// the request's extensions, whatever layers for other claims types sit between, unless
/// [`responder`](Self::responder) or [`realm`](Self::realm) was set here. When neither was
/// set and no such responder is found (the layer in front answers with another body type,
/// as when a middleware that changes the response body, such as compression, sits between
/// it and this layer: put such middleware in front of the `JwtAuthLayer`), the answer is
/// `Rfc6750::default()`'s, without the layer's realm, DPoP or `resource_metadata` parameters.
pub struct RequireClaimsLayer<C, R = Rfc6750> {
    pub(super) rule: Rule<C>,
    pub(super) allow_anonymous: bool,
    pub(super) responder: Arc<R>,
    /// No responder was set: answer as the `JwtAuthLayer` in front does, with `responder`
    /// only when none is found.
    pub(super) inherit: bool,
}

impl<C, R> Clone for RequireClaimsLayer<C, R> {
    fn clone(&self) -> Self {
        RequireClaimsLayer {
            rule: self.rule.clone(),
            allow_anonymous: self.allow_anonymous,
            responder: Arc::clone(&self.responder),
            inherit: self.inherit,
        }
    }
}

impl<C, R> std::fmt::Debug for RequireClaimsLayer<C, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequireClaimsLayer")
            .field("scope", &self.rule.scope())
            .field("allow_anonymous", &self.allow_anonymous)
            .field("inherit_responder", &self.inherit)
            .finish_non_exhaustive()
    }
}

impl<C: 'static> RequireClaimsLayer<C> {
    /// Requires `requirement`.
    pub fn new(requirement: Requirement<C>) -> Self {
        RequireClaimsLayer {
            rule: Rule::Sync(requirement),
            allow_anonymous: false,
            responder: Arc::new(Rfc6750::default()),
            inherit: true,
        }
    }

    /// Requires at least one of `roles`.
    pub fn any_role<I: IntoIterator<Item = S>, S: Into<String>>(roles: I) -> Self
    where
        C: HasRoles,
    {
        RequireClaimsLayer::new(Requirement::any_role(roles))
    }

    /// Requires all of `roles`.
    pub fn all_roles<I: IntoIterator<Item = S>, S: Into<String>>(roles: I) -> Self
    where
        C: HasRoles,
    {
        RequireClaimsLayer::new(Requirement::all_roles(roles))
    }

    /// Requires at least one of `scopes`.
    pub fn any_scope<I: IntoIterator<Item = S>, S: Into<String>>(scopes: I) -> Self
    where
        C: HasScopes,
    {
        RequireClaimsLayer::new(Requirement::any_scope(scopes))
    }

    /// Requires all of `scopes`.
    pub fn all_scopes<I: IntoIterator<Item = S>, S: Into<String>>(scopes: I) -> Self
    where
        C: HasScopes,
    {
        RequireClaimsLayer::new(Requirement::all_scopes(scopes))
    }

    /// Requires an asynchronous check to answer `true` (e.g. a database lookup of the
    /// subject's entitlements). `description` is what a refusal names in its `scope`.
    pub fn predicate_async<F, Fut>(description: impl Into<String>, check: F) -> Self
    where
        F: Fn(Claims<C>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        let check: AsyncCheck<C> = Arc::new(move |c| Box::pin(check(c)));
        RequireClaimsLayer {
            rule: Rule::Async {
                check,
                scope: description.into().into(),
            },
            allow_anonymous: false,
            responder: Arc::new(Rfc6750::default()),
            inherit: true,
        }
    }

    /// Answers refusals with [`Rfc6750`] naming `realm` in its challenges, instead of with
    /// the responder of the `JwtAuthLayer` in front.
    pub fn realm(self, realm: impl Into<String>) -> Self {
        self.responder(Rfc6750::with_realm(realm))
    }
}

impl<C, R> RequireClaimsLayer<C, R> {
    /// Lets anonymous requests (from a layer in optional mode) through without checking: the
    /// route is public, but a caller that presents a token must meet the requirement.
    pub fn allow_anonymous(mut self) -> Self {
        self.allow_anonymous = true;
        self
    }

    /// Answers refusals with `responder`, instead of with the responder of the
    /// `JwtAuthLayer` in front.
    ///
    /// ```
    /// use tower_jwt_auth::ProblemJson;
    /// use tower_jwt_auth::authorize::RequireClaimsLayer;
    /// # #[derive(serde::Deserialize)] struct MyClaims { roles: Vec<String> }
    /// # impl tower_jwt_auth::authorize::HasRoles for MyClaims {
    /// #     fn has_role(&self, role: &str) -> bool { self.roles.iter().any(|r| r == role) }
    /// # }
    ///
    /// let admins = RequireClaimsLayer::<MyClaims>::any_role(["admin"]).responder(ProblemJson::default());
    /// # let _ = admins;
    /// ```
    pub fn responder<R2>(self, responder: R2) -> RequireClaimsLayer<C, R2> {
        RequireClaimsLayer {
            rule: self.rule,
            allow_anonymous: self.allow_anonymous,
            responder: Arc::new(responder),
            inherit: false,
        }
    }
}

impl<S, C, R> Layer<S> for RequireClaimsLayer<C, R> {
    type Service = RequireClaims<S, C, R>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireClaims::new(inner, self.clone())
    }
}
