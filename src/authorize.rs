//! Per-route requirements on the verified claims: roles, OAuth scopes, predicates.
//!
//! [`RequireClaims`] goes behind [`JwtAuthLayer`](crate::JwtAuthLayer) (for axum: with
//! `route_layer` on the routes that need it). A request whose claims meet the [`Requirement`]
//! passes; one whose claims do not is answered 403 with
//! `WWW-Authenticate: Bearer error="insufficient_scope", scope="…"` (RFC 6750 §3.1), or gRPC
//! status 7 `PERMISSION_DENIED` for gRPC callers.
//!
//! A request that reaches `RequireClaims` without claims is one of two things: an anonymous
//! request let through by an optional layer (401, or a pass with
//! [`allow_anonymous`](RequireClaims::allow_anonymous), like Envoy's `allow_missing`), or a
//! wiring mistake — no `JwtAuthLayer` in front. The mistake is answered 500 and logged (feature
//! `tracing`); it never passes.
//!
//! Typed claims implement [`HasRoles`] / [`HasScopes`] as below; untyped claims
//! (`serde_json::Value`) already do, reading the `roles` array, the space-delimited `scope`,
//! and `scp` as either a space-delimited string (Microsoft Entra ID) or an array of strings.
//!
//! ```
//! use axum::{Router, routing::get};
//! use tower_jwt_auth::authorize::{HasRoles, HasScopes, RequireClaims, Requirement};
//! use tower_jwt_auth::JwtAuthLayer;
//!
//! #[derive(serde::Deserialize)]
//! struct MyClaims { sub: String, roles: Vec<String>, scope: String }
//!
//! impl HasRoles for MyClaims {
//!     fn has_role(&self, role: &str) -> bool { self.roles.iter().any(|r| r == role) }
//! }
//! impl HasScopes for MyClaims {
//!     fn has_scope(&self, scope: &str) -> bool { self.scope.split(' ').any(|s| s == scope) }
//! }
//!
//! let auth = JwtAuthLayer::<MyClaims>::builder()
//!     .hs256(b"an example secret that is 32 bytes+")
//!     .build()
//!     .unwrap();
//! let app: Router = Router::new()
//!     .route("/admin", get(|| async { "admin" }).route_layer(RequireClaims::<MyClaims>::any_role(["admin"])))
//!     .route(
//!         "/orders",
//!         get(|| async { "orders" }).route_layer(RequireClaims::new(
//!             Requirement::all_scopes(["orders:read"])
//!                 .or(Requirement::predicate("support staff", |c: &MyClaims| c.sub.starts_with("support-"))),
//!         )),
//!     )
//!     .layer(auth);
//! # let _ = app;
//! ```

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::claims::Anonymous;
use crate::{AuthError, Claims, ErrorResponder, ResponseFuture, Rfc6750};

/// Claims that carry roles (e.g. a `roles` array).
pub trait HasRoles {
    /// Whether the claims grant `role`.
    fn has_role(&self, role: &str) -> bool;
}

/// Claims that carry OAuth scopes: the space-delimited `scope` claim (RFC 9068 §2.2.3), or
/// `scp` (a space-delimited string or an array of strings, depending on the issuer).
pub trait HasScopes {
    /// Whether the claims grant `scope`.
    fn has_scope(&self, scope: &str) -> bool;
}

/// Whether the space-delimited `scope` string (RFC 6749 §3.3) contains `wanted` as a whole
/// word. An empty `wanted` is never contained: a scope token has at least one character, so
/// the empty words between two spaces grant nothing.
pub fn scope_contains(scope: &str, wanted: &str) -> bool {
    !wanted.is_empty() && scope.split(' ').any(|s| s == wanted)
}

/// Untyped claims: roles from a `roles` array of strings (RFC 9068 §2.2.3.1 names `roles` among
/// the attributes an access token may carry, and Microsoft Entra ID sends its app roles as an
/// array). Any other form, a string included, grants no role: no issuer documents a delimited
/// string, and splitting one on spaces would hand a subject whose role is `"Tenant Admin"` the
/// role `Admin`. Claims types that need another form implement [`HasRoles`] themselves.
impl HasRoles for serde_json::Value {
    fn has_role(&self, role: &str) -> bool {
        self.get("roles")
            .and_then(serde_json::Value::as_array)
            .is_some_and(|roles| roles.iter().any(|r| r.as_str() == Some(role)))
    }
}

/// Untyped claims: scopes from the space-delimited `scope` string (RFC 9068 §2.2.3), or from
/// `scp` in either form issuers send it: a space-delimited string (Microsoft Entra ID, v1 and
/// v2 tokens) or an array of strings, each one scope (e.g. Okta). Any other JSON type grants
/// nothing.
impl HasScopes for serde_json::Value {
    fn has_scope(&self, scope: &str) -> bool {
        let in_scope = self
            .get("scope")
            .and_then(serde_json::Value::as_str)
            .is_some_and(|s| scope_contains(s, scope));
        let in_scp = match self.get("scp") {
            Some(serde_json::Value::String(scp)) => scope_contains(scp, scope),
            Some(serde_json::Value::Array(scp)) => {
                !scope.is_empty() && scp.iter().any(|s| s.as_str() == Some(scope))
            }
            _ => false,
        };
        in_scope || in_scp
    }
}

type Check<C> = Arc<dyn Fn(&C) -> bool + Send + Sync>;

/// A condition on the claims, with the scope text a refusal names.
pub struct Requirement<C> {
    check: Check<C>,
    scope: String,
}

impl<C> Clone for Requirement<C> {
    fn clone(&self) -> Self {
        Requirement {
            check: Arc::clone(&self.check),
            scope: self.scope.clone(),
        }
    }
}

impl<C> std::fmt::Debug for Requirement<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Requirement")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

fn strings<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Vec<String> {
    items.into_iter().map(Into::into).collect()
}

impl<C: 'static> Requirement<C> {
    /// Any claims at all (a valid token).
    pub fn authenticated() -> Requirement<C> {
        Requirement {
            check: Arc::new(|_| true),
            scope: String::new(),
        }
    }

    /// `check` must hold; `description` is what a refusal names in its `scope` attribute.
    pub fn predicate(
        description: impl Into<String>,
        check: impl Fn(&C) -> bool + Send + Sync + 'static,
    ) -> Requirement<C> {
        Requirement {
            check: Arc::new(check),
            scope: description.into(),
        }
    }

    /// At least one of `roles`.
    pub fn any_role<I: IntoIterator<Item = S>, S: Into<String>>(roles: I) -> Requirement<C>
    where
        C: HasRoles,
    {
        let roles = strings(roles);
        let scope = roles.join(" ");
        Requirement {
            check: Arc::new(move |c: &C| roles.iter().any(|r| c.has_role(r))),
            scope,
        }
    }

    /// All of `roles`.
    pub fn all_roles<I: IntoIterator<Item = S>, S: Into<String>>(roles: I) -> Requirement<C>
    where
        C: HasRoles,
    {
        let roles = strings(roles);
        let scope = roles.join(" ");
        Requirement {
            check: Arc::new(move |c: &C| roles.iter().all(|r| c.has_role(r))),
            scope,
        }
    }

    /// At least one of `scopes`.
    pub fn any_scope<I: IntoIterator<Item = S>, S: Into<String>>(scopes: I) -> Requirement<C>
    where
        C: HasScopes,
    {
        let scopes = strings(scopes);
        let scope = scopes.join(" ");
        Requirement {
            check: Arc::new(move |c: &C| scopes.iter().any(|s| c.has_scope(s))),
            scope,
        }
    }

    /// All of `scopes`.
    pub fn all_scopes<I: IntoIterator<Item = S>, S: Into<String>>(scopes: I) -> Requirement<C>
    where
        C: HasScopes,
    {
        let scopes = strings(scopes);
        let scope = scopes.join(" ");
        Requirement {
            check: Arc::new(move |c: &C| scopes.iter().all(|s| c.has_scope(s))),
            scope,
        }
    }

    /// Both this and `other`.
    pub fn and(self, other: Requirement<C>) -> Requirement<C> {
        Requirement::all_of([self, other])
    }

    /// This or `other`.
    pub fn or(self, other: Requirement<C>) -> Requirement<C> {
        Requirement::any_of([self, other])
    }

    /// Every one of `requirements` (Envoy's `requires_all`).
    pub fn all_of(requirements: impl IntoIterator<Item = Requirement<C>>) -> Requirement<C> {
        let parts: Vec<_> = requirements.into_iter().collect();
        let scope = join_scopes(&parts);
        Requirement {
            check: Arc::new(move |c: &C| parts.iter().all(|r| (r.check)(c))),
            scope,
        }
    }

    /// At least one of `requirements` (Envoy's `requires_any`).
    pub fn any_of(requirements: impl IntoIterator<Item = Requirement<C>>) -> Requirement<C> {
        let parts: Vec<_> = requirements.into_iter().collect();
        let scope = join_scopes(&parts);
        Requirement {
            check: Arc::new(move |c: &C| parts.iter().any(|r| (r.check)(c))),
            scope,
        }
    }

    /// Whether `claims` meet the requirement.
    pub fn is_met_by(&self, claims: &C) -> bool {
        (self.check)(claims)
    }
}

fn join_scopes<C>(parts: &[Requirement<C>]) -> String {
    let mut out: Vec<&str> = Vec::new();
    for word in parts
        .iter()
        .flat_map(|p| p.scope.split(' '))
        .filter(|w| !w.is_empty())
    {
        if !out.contains(&word) {
            out.push(word);
        }
    }
    out.join(" ")
}

type AsyncCheck<C> = Arc<dyn Fn(Claims<C>) -> BoxFuture<'static, bool> + Send + Sync>;

enum Rule<C> {
    Sync(Requirement<C>),
    Async { check: AsyncCheck<C>, scope: String },
}

impl<C> Clone for Rule<C> {
    fn clone(&self) -> Self {
        match self {
            Rule::Sync(r) => Rule::Sync(r.clone()),
            Rule::Async { check, scope } => Rule::Async {
                check: Arc::clone(check),
                scope: scope.clone(),
            },
        }
    }
}

/// A layer that lets through only requests whose claims meet a requirement.
pub struct RequireClaims<C, R = Rfc6750> {
    rule: Rule<C>,
    allow_anonymous: bool,
    responder: Arc<R>,
}

impl<C, R> Clone for RequireClaims<C, R> {
    fn clone(&self) -> Self {
        RequireClaims {
            rule: self.rule.clone(),
            allow_anonymous: self.allow_anonymous,
            responder: Arc::clone(&self.responder),
        }
    }
}

impl<C: 'static> RequireClaims<C> {
    /// Requires `requirement`.
    pub fn new(requirement: Requirement<C>) -> Self {
        RequireClaims {
            rule: Rule::Sync(requirement),
            allow_anonymous: false,
            responder: Arc::new(Rfc6750::default()),
        }
    }

    /// Requires at least one of `roles`.
    pub fn any_role<I: IntoIterator<Item = S>, S: Into<String>>(roles: I) -> Self
    where
        C: HasRoles,
    {
        RequireClaims::new(Requirement::any_role(roles))
    }

    /// Requires all of `roles`.
    pub fn all_roles<I: IntoIterator<Item = S>, S: Into<String>>(roles: I) -> Self
    where
        C: HasRoles,
    {
        RequireClaims::new(Requirement::all_roles(roles))
    }

    /// Requires at least one of `scopes`.
    pub fn any_scope<I: IntoIterator<Item = S>, S: Into<String>>(scopes: I) -> Self
    where
        C: HasScopes,
    {
        RequireClaims::new(Requirement::any_scope(scopes))
    }

    /// Requires all of `scopes`.
    pub fn all_scopes<I: IntoIterator<Item = S>, S: Into<String>>(scopes: I) -> Self
    where
        C: HasScopes,
    {
        RequireClaims::new(Requirement::all_scopes(scopes))
    }

    /// Requires an asynchronous check to answer `true` (e.g. a database lookup of the
    /// subject's entitlements). `description` is what a refusal names in its `scope`.
    pub fn predicate_async<F, Fut>(description: impl Into<String>, check: F) -> Self
    where
        F: Fn(Claims<C>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        let check: AsyncCheck<C> = Arc::new(move |c| Box::pin(check(c)));
        RequireClaims {
            rule: Rule::Async {
                check,
                scope: description.into(),
            },
            allow_anonymous: false,
            responder: Arc::new(Rfc6750::default()),
        }
    }

    /// Names `realm` in the challenge of a refusal (default `"api"`).
    pub fn realm(self, realm: impl Into<String>) -> Self {
        self.responder(Rfc6750::with_realm(realm))
    }
}

impl<C, R> RequireClaims<C, R> {
    /// Lets anonymous requests (from a layer in optional mode) through without checking: the
    /// route is public, but a caller that presents a token must meet the requirement.
    pub fn allow_anonymous(mut self) -> Self {
        self.allow_anonymous = true;
        self
    }

    /// Answers refusals with `responder`.
    pub fn responder<R2>(self, responder: R2) -> RequireClaims<C, R2> {
        RequireClaims {
            rule: self.rule,
            allow_anonymous: self.allow_anonymous,
            responder: Arc::new(responder),
        }
    }
}

impl<S, C, R> Layer<S> for RequireClaims<C, R> {
    type Service = RequireClaimsService<S, C, R>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireClaimsService {
            inner,
            config: self.clone(),
            _claims: PhantomData,
        }
    }
}

/// The service of [`RequireClaims`].
pub struct RequireClaimsService<S, C, R = Rfc6750> {
    inner: S,
    config: RequireClaims<C, R>,
    _claims: PhantomData<fn() -> C>,
}

impl<S: Clone, C, R> Clone for RequireClaimsService<S, C, R> {
    fn clone(&self) -> Self {
        RequireClaimsService {
            inner: self.inner.clone(),
            config: self.config.clone(),
            _claims: PhantomData,
        }
    }
}

enum Verdict<C> {
    Pass,
    Deny(AuthError),
    Ask(AsyncCheck<C>, Claims<C>, String),
}

impl<C: Send + Sync + 'static, R> RequireClaims<C, R> {
    fn judge<B>(&self, req: &Request<B>) -> Verdict<C> {
        let Some(claims) = req.extensions().get::<Claims<C>>() else {
            if req.extensions().get::<Anonymous>().is_some() {
                return if self.allow_anonymous {
                    Verdict::Pass
                } else {
                    Verdict::Deny(AuthError::MissingToken)
                };
            }
            #[cfg(feature = "tracing")]
            tracing::error!(
                target: "tower_jwt_auth",
                claims_type = std::any::type_name::<C>(),
                "RequireClaims found no claims: put JwtAuthLayer with the same claims type in front of it"
            );
            return Verdict::Deny(AuthError::Misconfigured);
        };
        match &self.rule {
            Rule::Sync(req) if req.is_met_by(claims) => Verdict::Pass,
            Rule::Sync(req) => Verdict::Deny(AuthError::InsufficientScope {
                scope: req.scope.clone(),
            }),
            Rule::Async { check, scope } => {
                Verdict::Ask(Arc::clone(check), claims.clone(), scope.clone())
            }
        }
    }
}

impl<S, C, R, ReqBody, ResBody> Service<Request<ReqBody>> for RequireClaimsService<S, C, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    C: Send + Sync + 'static,
    R: ErrorResponder<ResBody>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = RequireClaimsFuture<S, ReqBody, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        match self.config.judge(&req) {
            Verdict::Pass => ResponseFuture::inner(self.inner.call(req)),
            Verdict::Deny(error) => {
                ResponseFuture::rejected(self.config.responder.respond(&error, req.headers()))
            }
            Verdict::Ask(check, claims, scope) => {
                let allowed = check(claims);
                let check = Box::pin(async move {
                    if allowed.await {
                        Ok(http::Extensions::new())
                    } else {
                        Err(AuthError::InsufficientScope { scope })
                    }
                });
                ResponseFuture::checking(&mut self.inner, req, check, &self.config.responder)
            }
        }
    }
}

/// The future of [`RequireClaimsService`]: the same as [`JwtAuth`](crate::JwtAuth)'s.
pub type RequireClaimsFuture<S, ReqBody, R> = ResponseFuture<S, ReqBody, R>;

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn untyped_claims_roles_and_scopes() {
        let claims =
            json!({ "roles": ["admin"], "scope": "orders:read orders:write", "scp": ["billing"] });
        assert!(claims.has_role("admin") && !claims.has_role("user"));
        assert!(claims.has_scope("orders:read") && claims.has_scope("billing"));
        assert!(!claims.has_scope("orders") && !json!({ "roles": "admin" }).has_role("admin"));
        let admin = Requirement::<serde_json::Value>::any_role(["admin"])
            .and(Requirement::all_scopes(["orders:read"]));
        assert!(admin.is_met_by(&claims));
        assert!(!admin.is_met_by(&json!({ "roles": ["admin"] })));
    }

    #[test]
    fn scp_is_read_as_a_space_delimited_string_or_an_array() {
        // Microsoft Entra ID's form.
        let entra = json!({ "scp": "User.Read Files.ReadWrite" });
        // Okta's form.
        let okta = json!({ "scp": ["User.Read", "Files.ReadWrite"] });
        for claims in [&entra, &okta] {
            assert!(claims.has_scope("User.Read"), "{claims}");
            assert!(claims.has_scope("Files.ReadWrite"), "{claims}");
            // Whole scopes only: no prefix, no longer word, no two scopes as one.
            for other in [
                "User",
                "Files.Read",
                "User.Read Files.ReadWrite",
                "Mail.Send",
                "",
            ] {
                assert!(!claims.has_scope(other), "{claims} {other:?}");
            }
            let write = Requirement::<serde_json::Value>::all_scopes(["Files.ReadWrite"]);
            assert!(write.is_met_by(claims), "{claims}");
            assert!(!Requirement::any_scope(["Mail.Send"]).is_met_by(claims));
        }
        // An array element is one scope, spaces and all.
        let joined = json!({ "scp": ["User.Read Files.ReadWrite"] });
        assert!(!joined.has_scope("User.Read") && !joined.has_scope("Files.ReadWrite"));
        // Empty words (double, leading, trailing spaces) grant nothing.
        assert!(!json!({ "scp": " a  b " }).has_scope(""));
        assert!(!json!({ "scope": "a  b" }).has_scope(""));
        assert!(!json!({ "scp": [""] }).has_scope(""));
        // Other JSON types grant nothing.
        for scp in [
            json!(1),
            json!(true),
            json!({ "User.Read": true }),
            json!(null),
        ] {
            assert!(!json!({ "scp": scp }).has_scope("User.Read"), "{scp}");
        }
        // `scope` and `scp` together: either grants.
        let both = json!({ "scope": "a", "scp": "b" });
        assert!(both.has_scope("a") && both.has_scope("b"));
    }

    #[test]
    fn roles_are_read_only_as_an_array() {
        // Microsoft Entra ID's app roles.
        let entra = json!({ "roles": ["Tenant.Admin", "Orders.Read"] });
        assert!(entra.has_role("Tenant.Admin") && entra.has_role("Orders.Read"));
        assert!(!entra.has_role("Tenant") && !entra.has_role(""));
        // A string is no list of roles, however it is delimited.
        for roles in [json!("admin"), json!("Tenant Admin"), json!("a,admin")] {
            let claims = json!({ "roles": roles });
            assert!(
                !claims.has_role("admin") && !claims.has_role("Admin"),
                "{claims}"
            );
        }
    }
}
