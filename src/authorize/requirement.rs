//! What a route requires of the claims: [`Requirement`], and the [`HasRoles`] / [`HasScopes`]
//! traits it reads roles and scopes through.

use std::sync::Arc;

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

/// Where in the claims a value is read: a path of object keys from the top of the payload.
///
/// From a string, the path is dot-separated: `"realm_access.roles"` is the key `roles` of
/// the object `realm_access`. A colon is an ordinary character (`"cognito:groups"` is one
/// key). A key that itself contains a dot, such as an Auth0 namespaced claim
/// `https://example.com/roles`, is named with [`ClaimPath::keys`].
///
/// ```
/// use tower_jwt_auth::authorize::ClaimPath;
///
/// let nested = ClaimPath::from("resource_access.orders-api.roles");
/// let namespaced = ClaimPath::keys(["https://example.com/roles"]);
/// assert_eq!(nested, ClaimPath::keys(["resource_access", "orders-api", "roles"]));
/// # let _ = namespaced;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimPath {
    keys: Vec<String>,
}

impl ClaimPath {
    /// The path through `keys`, each taken literally (dots and all).
    pub fn keys<I: IntoIterator<Item = S>, S: Into<String>>(keys: I) -> ClaimPath {
        ClaimPath {
            keys: strings(keys),
        }
    }

    /// The value at this path in `claims`, if every key is there.
    fn find<'a>(&self, claims: &'a serde_json::Value) -> Option<&'a serde_json::Value> {
        if self.keys.is_empty() {
            return None;
        }
        self.keys
            .iter()
            .try_fold(claims, |value, key| value.as_object()?.get(key))
    }
}

impl From<&str> for ClaimPath {
    /// The dot-separated path `path`.
    fn from(path: &str) -> ClaimPath {
        ClaimPath::keys(path.split('.'))
    }
}

impl From<String> for ClaimPath {
    /// The dot-separated path `path`.
    fn from(path: String) -> ClaimPath {
        ClaimPath::from(path.as_str())
    }
}

impl std::fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.keys.join("."))
    }
}

/// Where the roles and scopes of untyped claims (`serde_json::Value`) are read from, for
/// identity providers that put them elsewhere than `roles` / `scope` / `scp`.
///
/// Roles are read at each [`roles_at`](Self::roles_at) path as an array of strings, each one
/// role (Keycloak's `realm_access.roles` and `resource_access.<client>.roles`, Cognito's
/// `cognito:groups`, Entra ID's `roles`); any other form, a string included, grants no role,
/// as with [`HasRoles`] for `serde_json::Value`. Scopes are read at each
/// [`scopes_at`](Self::scopes_at) path as a space-delimited string (`scope`, Entra ID's `scp`)
/// or as an array of strings, each one scope (Auth0's `permissions`, Okta's `scp`). A role or
/// scope granted at any of the paths is granted; a missing path grants nothing. An empty
/// mapping grants nothing.
///
/// The mapping makes [`Requirement`]s for [`RequireClaimsLayer`](super::RequireClaimsLayer):
///
/// ```
/// use axum::{Router, routing::get};
/// use tower_jwt_auth::JwtAuthLayer;
/// use tower_jwt_auth::authorize::{ClaimMapping, RequireClaimsLayer};
///
/// // Keycloak: realm roles, the roles of the client `orders-api`, and the `scope` string.
/// let keycloak = ClaimMapping::new()
///     .roles_at("realm_access.roles")
///     .roles_at("resource_access.orders-api.roles")
///     .scopes_at("scope");
/// let auth = JwtAuthLayer::<serde_json::Value>::builder()
///     .hs256(b"an example secret that is 32 bytes+")
///     .build()
///     .unwrap();
/// let app: Router = Router::new()
///     .route(
///         "/admin",
///         get(|| async { "admin" }).route_layer(RequireClaimsLayer::new(keycloak.any_role(["admin"]))),
///     )
///     .layer(auth);
///
/// let claims = serde_json::json!({
///     "realm_access": { "roles": ["offline_access", "admin"] },
///     "scope": "openid profile email",
/// });
/// assert!(keycloak.has_role(&claims, "admin") && keycloak.has_scope(&claims, "email"));
/// # let _ = app;
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClaimMapping {
    roles: Vec<ClaimPath>,
    scopes: Vec<ClaimPath>,
}

/// The words of a space-delimited string or the strings of an array at `value`, whether one
/// is `wanted`; when `split` is off, a string grants nothing.
fn grants(value: &serde_json::Value, wanted: &str, split: bool) -> bool {
    match value {
        serde_json::Value::String(s) => split && scope_contains(s, wanted),
        serde_json::Value::Array(items) => {
            !wanted.is_empty() && items.iter().any(|i| i.as_str() == Some(wanted))
        }
        _ => false,
    }
}

impl ClaimMapping {
    /// A mapping that reads no roles and no scopes; add paths with [`roles_at`](Self::roles_at)
    /// and [`scopes_at`](Self::scopes_at).
    pub fn new() -> ClaimMapping {
        ClaimMapping::default()
    }

    /// Also reads roles at `path` (an array of strings).
    pub fn roles_at(mut self, path: impl Into<ClaimPath>) -> ClaimMapping {
        self.roles.push(path.into());
        self
    }

    /// Also reads scopes at `path` (a space-delimited string or an array of strings).
    pub fn scopes_at(mut self, path: impl Into<ClaimPath>) -> ClaimMapping {
        self.scopes.push(path.into());
        self
    }

    /// The paths roles are read at.
    pub fn role_paths(&self) -> &[ClaimPath] {
        &self.roles
    }

    /// The paths scopes are read at.
    pub fn scope_paths(&self) -> &[ClaimPath] {
        &self.scopes
    }

    /// Whether `claims` grant `role` at one of the role paths.
    pub fn has_role(&self, claims: &serde_json::Value, role: &str) -> bool {
        self.roles
            .iter()
            .filter_map(|p| p.find(claims))
            .any(|v| grants(v, role, false))
    }

    /// Whether `claims` grant `scope` at one of the scope paths.
    pub fn has_scope(&self, claims: &serde_json::Value, scope: &str) -> bool {
        self.scopes
            .iter()
            .filter_map(|p| p.find(claims))
            .any(|v| grants(v, scope, true))
    }

    /// Requires at least one of `roles`, read through this mapping.
    pub fn any_role<I: IntoIterator<Item = S>, S: Into<String>>(
        &self,
        roles: I,
    ) -> Requirement<serde_json::Value> {
        let mapping = self.clone();
        Requirement::words(roles, false, move |c, w| mapping.has_role(c, w))
    }

    /// Requires all of `roles`, read through this mapping.
    pub fn all_roles<I: IntoIterator<Item = S>, S: Into<String>>(
        &self,
        roles: I,
    ) -> Requirement<serde_json::Value> {
        let mapping = self.clone();
        Requirement::words(roles, true, move |c, w| mapping.has_role(c, w))
    }

    /// Requires at least one of `scopes`, read through this mapping.
    pub fn any_scope<I: IntoIterator<Item = S>, S: Into<String>>(
        &self,
        scopes: I,
    ) -> Requirement<serde_json::Value> {
        let mapping = self.clone();
        Requirement::words(scopes, false, move |c, w| mapping.has_scope(c, w))
    }

    /// Requires all of `scopes`, read through this mapping.
    pub fn all_scopes<I: IntoIterator<Item = S>, S: Into<String>>(
        &self,
        scopes: I,
    ) -> Requirement<serde_json::Value> {
        let mapping = self.clone();
        Requirement::words(scopes, true, move |c, w| mapping.has_scope(c, w))
    }
}

type Check<C> = Arc<dyn Fn(&C) -> bool + Send + Sync>;

/// A condition on the claims, with the scope text a refusal names.
///
/// Cloning is cheap: the check and the text are shared.
pub struct Requirement<C> {
    check: Check<C>,
    /// The `scope` attribute of a refusal's challenge (RFC 6750 §3).
    pub(super) scope: Arc<str>,
}

impl<C> Clone for Requirement<C> {
    fn clone(&self) -> Self {
        Requirement {
            check: Arc::clone(&self.check),
            scope: Arc::clone(&self.scope),
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
            scope: Arc::from(""),
        }
    }

    /// `check` must hold; `description` is what a refusal names in its `scope` attribute.
    pub fn predicate(
        description: impl Into<String>,
        check: impl Fn(&C) -> bool + Send + Sync + 'static,
    ) -> Requirement<C> {
        Requirement {
            check: Arc::new(check),
            scope: description.into().into(),
        }
    }

    /// Every one (`all`) or at least one of `words` passes `test`; a refusal names them all.
    fn words<I: IntoIterator<Item = S>, S: Into<String>>(
        words: I,
        all: bool,
        test: impl Fn(&C, &str) -> bool + Send + Sync + 'static,
    ) -> Requirement<C> {
        let words = strings(words);
        let scope = words.join(" ").into();
        Requirement {
            check: Arc::new(move |c: &C| {
                let mut passing = words.iter().map(|w| test(c, w));
                if all {
                    passing.all(|ok| ok)
                } else {
                    passing.any(|ok| ok)
                }
            }),
            scope,
        }
    }

    /// At least one of `roles`.
    pub fn any_role<I: IntoIterator<Item = S>, S: Into<String>>(roles: I) -> Requirement<C>
    where
        C: HasRoles,
    {
        Requirement::words(roles, false, |c: &C, w| c.has_role(w))
    }

    /// All of `roles`.
    pub fn all_roles<I: IntoIterator<Item = S>, S: Into<String>>(roles: I) -> Requirement<C>
    where
        C: HasRoles,
    {
        Requirement::words(roles, true, |c: &C, w| c.has_role(w))
    }

    /// At least one of `scopes`.
    pub fn any_scope<I: IntoIterator<Item = S>, S: Into<String>>(scopes: I) -> Requirement<C>
    where
        C: HasScopes,
    {
        Requirement::words(scopes, false, |c: &C, w| c.has_scope(w))
    }

    /// All of `scopes`.
    pub fn all_scopes<I: IntoIterator<Item = S>, S: Into<String>>(scopes: I) -> Requirement<C>
    where
        C: HasScopes,
    {
        Requirement::words(scopes, true, |c: &C, w| c.has_scope(w))
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

/// The words of every part's scope, each once, in order of first appearance.
fn join_scopes<C>(parts: &[Requirement<C>]) -> Arc<str> {
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
    out.join(" ").into()
}

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

    #[test]
    fn claim_paths_split_on_dots_only() {
        assert_eq!(
            ClaimPath::from("resource_access.orders-api.roles"),
            ClaimPath::keys(["resource_access", "orders-api", "roles"])
        );
        assert_eq!(
            ClaimPath::from("cognito:groups"),
            ClaimPath::keys(["cognito:groups"])
        );
        assert_eq!(ClaimPath::from(String::from("a.b")).to_string(), "a.b");
        let claims = json!({
            "https://example.com/roles": ["admin"],
            "https": { "//example": { "com/roles": ["root"] } },
            "cognito:groups": ["staff"],
        });
        let m = ClaimMapping::new()
            .roles_at(ClaimPath::keys(["https://example.com/roles"]))
            .roles_at("cognito:groups");
        assert!(m.has_role(&claims, "admin") && m.has_role(&claims, "staff"));
        assert!(!m.has_role(&claims, "root"));
        // No path, an empty path, a path through a non-object grant nothing.
        assert!(!ClaimMapping::new().has_role(&claims, "admin"));
        let odd = ClaimMapping::new()
            .roles_at(ClaimPath::keys(Vec::<String>::new()))
            .roles_at("cognito:groups.x")
            .scopes_at("cognito:groups.0");
        assert!(!odd.has_role(&claims, "staff") && !odd.has_scope(&claims, "staff"));
    }

    #[test]
    fn mapped_roles_are_arrays_and_scopes_are_strings_or_arrays() {
        let m = ClaimMapping::new()
            .roles_at("realm_access.roles")
            .roles_at("resource_access.orders-api.roles")
            .scopes_at("scope")
            .scopes_at("permissions");
        let claims = json!({
            "realm_access": { "roles": ["offline_access", "uma_authorization"] },
            "resource_access": {
                "orders-api": { "roles": ["orders-admin"] },
                "account": { "roles": ["manage-account"] },
            },
            "scope": "openid profile email",
            "permissions": ["read:orders", "write:orders"],
        });
        assert!(m.has_role(&claims, "offline_access") && m.has_role(&claims, "orders-admin"));
        assert!(!m.has_role(&claims, "manage-account") && !m.has_role(&claims, ""));
        assert!(m.has_scope(&claims, "email") && m.has_scope(&claims, "write:orders"));
        assert!(!m.has_scope(&claims, "orders") && !m.has_scope(&claims, ""));
        // A string of roles grants nothing; other JSON types grant nothing.
        for roles in [
            json!("orders-admin"),
            json!(1),
            json!({ "orders-admin": true }),
        ] {
            let c = json!({ "realm_access": { "roles": roles } });
            assert!(!m.has_role(&c, "orders-admin"), "{c}");
        }
        for scope in [json!(1), json!(null), json!({ "email": true })] {
            assert!(!m.has_scope(&json!({ "scope": scope }), "email"));
        }
        type R = Requirement<serde_json::Value>;
        let r: R = m.any_role(["nobody", "orders-admin"]);
        assert!(r.is_met_by(&claims) && &*r.scope == "nobody orders-admin");
        assert!(!m.all_roles(["nobody", "orders-admin"]).is_met_by(&claims));
        assert!(
            m.all_roles(["offline_access", "orders-admin"])
                .is_met_by(&claims)
        );
        assert!(m.all_scopes(["openid", "read:orders"]).is_met_by(&claims));
        assert!(!m.all_scopes(["openid", "admin"]).is_met_by(&claims));
        assert!(m.any_scope(["admin", "openid"]).is_met_by(&claims));
        assert!(!m.any_scope(["admin"]).is_met_by(&claims));
        assert_eq!(m.role_paths().len(), 2);
        assert_eq!(m.scope_paths()[1].to_string(), "permissions");
    }

    #[test]
    fn composed_requirements_name_each_word_once() {
        type R = Requirement<serde_json::Value>;
        let r = R::any_role(["staff", "admin"])
            .or(R::all_scopes(["admin", "orders:read"]))
            .and(R::authenticated());
        assert_eq!(&*r.scope, "staff admin orders:read");
    }
}
