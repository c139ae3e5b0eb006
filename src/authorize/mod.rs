//! Per-route requirements on the verified claims: roles, OAuth scopes, predicates.
//!
//! ```
//! use axum::{Router, routing::get};
//! use tower_jwt_auth::authorize::{HasRoles, HasScopes, RequireClaimsLayer, Requirement};
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
//!     .route(
//!         "/admin",
//!         get(|| async { "admin" }).route_layer(RequireClaimsLayer::<MyClaims>::any_role(["admin"])),
//!     )
//!     .route(
//!         "/orders",
//!         get(|| async { "orders" }).route_layer(RequireClaimsLayer::new(
//!             Requirement::all_scopes(["orders:read"])
//!                 .or(Requirement::predicate("support staff", |c: &MyClaims| c.sub.starts_with("support-"))),
//!         )),
//!     )
//!     .layer(auth);
//! # let _ = app;
//! ```
//!
//! [`RequireClaimsLayer`] goes behind [`JwtAuthLayer`](crate::JwtAuthLayer) (for axum: with
//! `route_layer` on the routes that need it) and wraps each route in a [`RequireClaims`]
//! service. A request whose claims meet the [`Requirement`] passes; one whose claims do not
//! is answered 403 with `WWW-Authenticate: Bearer error="insufficient_scope", scope="…"`
//! (RFC 6750 §3.1), or gRPC status 7 `PERMISSION_DENIED` for gRPC callers.
//!
//! A request that reaches `RequireClaims` without claims is one of two things: an anonymous
//! request let through by an optional layer (401, or a pass with
//! [`allow_anonymous`](RequireClaimsLayer::allow_anonymous), like Envoy's `allow_missing`), or
//! a wiring mistake — no `JwtAuthLayer` for the same claims type in front. The mistake is
//! answered 500 and logged (feature `tracing`); it never passes.
//!
//! Typed claims implement [`HasRoles`] / [`HasScopes`] as above; untyped claims
//! (`serde_json::Value`) already do, reading the `roles` array, the space-delimited `scope`,
//! and `scp` as either a space-delimited string (Microsoft Entra ID) or an array of strings.
//! Claims that keep them elsewhere (Keycloak's `realm_access.roles`, Auth0's `permissions`,
//! Cognito's `cognito:groups`) are read through a [`ClaimMapping`].

mod future;
mod layer;
mod requirement;
mod service;

pub use self::future::ResponseFuture;
pub use self::layer::RequireClaimsLayer;
pub use self::requirement::{
    ClaimMapping, ClaimPath, HasRoles, HasScopes, Requirement, scope_contains,
};
pub use self::service::RequireClaims;
