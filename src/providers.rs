//! Identity-provider presets: where a provider's tokens come from and how they are read.
//!
//! A [`Provider`] is plain data about one identity provider, taken from its public
//! documentation: the issuer its tokens carry, its discovery and JWKS URLs, where its tokens
//! keep roles and scopes (a [`ClaimMapping`]), and the claim rules its tokens need beyond
//! `iss`/`aud`. It plugs into a layer through the ordinary builder methods:
//! [`configure`](Provider::configure) sets the issuer(s), the audience and the required
//! claims on a [`JwtAuthBuilder`]; the keys are added as for any issuer (below); the roles,
//! scopes and extra rules are [`Requirement`]s for a
//! [`RequireClaimsLayer`](crate::authorize::RequireClaimsLayer) over `serde_json::Value`
//! claims.
//!
//! ```
//! use axum::{Router, routing::get};
//! use tower_jwt_auth::JwtAuthLayer;
//! use tower_jwt_auth::authorize::RequireClaimsLayer;
//! use tower_jwt_auth::providers::Provider;
//!
//! let keycloak = Provider::keycloak("https://sso.example.com", "acme")
//!     .audience("orders-api")
//!     .resource("orders-api");
//! assert_eq!(keycloak.issuer(), "https://sso.example.com/realms/acme");
//! assert_eq!(
//!     keycloak.discovery_url(),
//!     "https://sso.example.com/realms/acme/.well-known/openid-configuration"
//! );
//!
//! // In production the keys come from the provider, e.g. with feature `remote`:
//! // `.remote_jwks(RemoteJwks::from_jwks_uri(keycloak.jwks_uri()).build().await?)`.
//! let auth = keycloak
//!     .configure(JwtAuthLayer::<serde_json::Value>::builder())
//!     .hs256(b"an example secret that is 32 bytes+")
//!     .build()
//!     .unwrap();
//! let admins = keycloak.rules().and(keycloak.mapping().any_role(["orders-admin"]));
//! let app: Router = Router::new()
//!     .route("/admin", get(|| async { "admin" }).route_layer(RequireClaimsLayer::new(admins)))
//!     .layer(auth);
//! # let _ = app;
//! ```
//!
//! # Keys
//!
//! Every preset names its [`discovery_url`](Provider::discovery_url) and its
//! [`jwks_uri`](Provider::jwks_uri). With feature `remote`, either
//! `RemoteJwks::from_issuer(provider.issuer())` (OpenID Connect discovery) or
//! `RemoteJwks::from_jwks_uri(provider.jwks_uri())` gives the layer the provider's keys. Google
//! documents two issuers (`https://accounts.google.com` and `accounts.google.com`), which
//! [`configure`](Provider::configure) both accepts; keys discovered from one issuer verify
//! only that issuer's tokens, so for Google use `from_jwks_uri`.
//!
//! # What the presets do not cover
//!
//! * **Authentication-time claim rules.** The layer's builder checks `iss`, `aud`, the times,
//!   `typ` and the presence of claims, but no claim's *value* other than those. Rules on other
//!   values (Cognito's `token_use` and `client_id`) are therefore [`Provider::rules`], a
//!   [`Requirement`] checked by `RequireClaimsLayer`: a token that breaks them is answered 403
//!   `insufficient_scope`, not 401 `invalid_token`.
//! * **Microsoft Entra ID multi-tenant applications.** Their tokens' `iss` follows the template
//!   `https://login.microsoftonline.com/{tenantid}/v2.0`, to be checked against the token's
//!   `tid`; the layer compares issuers exactly, so [`Provider::entra`] takes one tenant ID.
//!   (For several known tenants, one preset per tenant with [`Tenant`](crate::Tenant)s works.)
//! * **Entra ID v1.0 tokens** (`iss` = `https://sts.windows.net/{tenant}/`), which Entra ID
//!   issues for APIs whose manifest leaves `accessTokenAcceptedVersion` unset: the preset is
//!   for v2.0 tokens.

use crate::JwtAuthBuilder;
use crate::authorize::{ClaimMapping, ClaimPath, Requirement};

/// Which identity provider a [`Provider`] is: the audience semantics and claim rules differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Keycloak,
    Auth0,
    Entra,
    Cognito,
    Google,
    Okta,
}

/// An identity-provider preset: issuer, discovery and JWKS URLs, claim mapping and claim
/// rules, as the provider documents them. See the [module documentation](self).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provider {
    kind: Kind,
    issuers: Vec<String>,
    discovery_url: String,
    jwks_uri: String,
    mapping: ClaimMapping,
    audiences: Vec<String>,
    required: Vec<&'static str>,
}

/// `url` without its trailing slashes.
fn trim(url: &str) -> &str {
    url.trim_end_matches('/')
}

/// A host name given with or without `https://` and trailing slashes.
fn host(domain: &str) -> &str {
    let domain = domain.strip_prefix("https://").unwrap_or(domain);
    trim(domain)
}

impl Provider {
    fn new(kind: Kind, issuer: String, jwks_uri: String, mapping: ClaimMapping) -> Provider {
        let discovery_url = format!("{}/.well-known/openid-configuration", trim(&issuer));
        Provider {
            kind,
            issuers: vec![issuer],
            discovery_url,
            jwks_uri,
            mapping,
            audiences: Vec::new(),
            required: Vec::new(),
        }
    }

    /// Keycloak: the realm `realm` of the server at `base_url` (e.g.
    /// `https://sso.example.com`; Keycloak before version 17 served under `/auth`, which is
    /// then part of `base_url`). Issuer `{base_url}/realms/{realm}`; roles from the realm roles
    /// `realm_access.roles` (add a client's roles with [`resource`](Self::resource)); scopes
    /// from the space-delimited `scope`. Keycloak puts an `aud` in access tokens only through
    /// an audience mapper; [`audience`](Self::audience) requires it.
    pub fn keycloak(base_url: &str, realm: &str) -> Provider {
        let issuer = format!("{}/realms/{realm}", trim(base_url));
        let jwks_uri = format!("{issuer}/protocol/openid-connect/certs");
        let mapping = ClaimMapping::new()
            .roles_at("realm_access.roles")
            .scopes_at("scope");
        Provider::new(Kind::Keycloak, issuer, jwks_uri, mapping)
    }

    /// Auth0: the tenant at `domain` (e.g. `acme.us.auth0.com` or a custom domain; a leading
    /// `https://` and trailing `/` are dropped). Issuer `https://{domain}/`, with the trailing
    /// slash Auth0's tokens carry; scopes from the space-delimited `scope` and from the
    /// `permissions` array (RBAC with "Add Permissions in the Access Token"). Auth0 has no
    /// standard role claim: roles go in a namespaced custom claim, read by adding
    /// `ClaimPath::keys(["https://example.com/roles"])` to a copy of [`mapping`](Self::mapping).
    /// The audience is the API identifier; `aud` may be an array also naming `/userinfo`.
    pub fn auth0(domain: &str) -> Provider {
        let domain = host(domain);
        let issuer = format!("https://{domain}/");
        let jwks_uri = format!("https://{domain}/.well-known/jwks.json");
        let mapping = ClaimMapping::new()
            .scopes_at("scope")
            .scopes_at("permissions");
        Provider::new(Kind::Auth0, issuer, jwks_uri, mapping)
    }

    /// Microsoft Entra ID (v2.0 tokens) of the tenant `tenant_id` (its GUID). Issuer
    /// `https://login.microsoftonline.com/{tenant_id}/v2.0`; roles from the app-role array
    /// `roles`; scopes from `scp`, a space-delimited string (delegated permissions). `tid` is
    /// required. The audience of a v2.0 access token is the API's application (client) ID.
    /// Multi-tenant applications are not covered (see the [module documentation](self)).
    pub fn entra(tenant_id: &str) -> Provider {
        let base = format!("https://login.microsoftonline.com/{tenant_id}");
        let issuer = format!("{base}/v2.0");
        let jwks_uri = format!("{base}/discovery/v2.0/keys");
        let mapping = ClaimMapping::new().roles_at("roles").scopes_at("scp");
        let mut provider = Provider::new(Kind::Entra, issuer, jwks_uri, mapping);
        provider.required.push("tid");
        provider
    }

    /// Amazon Cognito: the user pool `pool_id` (e.g. `us-east-1_Example`) in `region`. Issuer
    /// `https://cognito-idp.{region}.amazonaws.com/{pool_id}`; roles from the groups array
    /// `cognito:groups`; scopes from the space-delimited `scope`. Cognito access tokens carry
    /// no `aud` but `client_id`, the app client: [`audience`](Self::audience) names the
    /// accepted app clients, checked against `client_id` by [`rules`](Self::rules), which
    /// also requires `token_use` to be `access` (ID tokens carry `"id"`). `client_id` and
    /// `token_use` are required claims, which keeps ID tokens (no `client_id`) out at
    /// authentication.
    pub fn cognito(region: &str, pool_id: &str) -> Provider {
        let issuer = format!("https://cognito-idp.{region}.amazonaws.com/{pool_id}");
        let jwks_uri = format!("{issuer}/.well-known/jwks.json");
        let mapping = ClaimMapping::new()
            .roles_at(ClaimPath::keys(["cognito:groups"]))
            .scopes_at("scope");
        let mut provider = Provider::new(Kind::Cognito, issuer, jwks_uri, mapping);
        provider.required.extend(["client_id", "token_use"]);
        provider
    }

    /// Google (Sign in with Google ID tokens; Google's access tokens are not JWTs). Issuers
    /// `https://accounts.google.com` and `accounts.google.com`, both of which Google documents;
    /// no roles or scopes. The audience is the application's OAuth client ID.
    pub fn google() -> Provider {
        let mut provider = Provider::new(
            Kind::Google,
            "https://accounts.google.com".to_owned(),
            "https://www.googleapis.com/oauth2/v3/certs".to_owned(),
            ClaimMapping::new(),
        );
        provider.issuers.push("accounts.google.com".to_owned());
        provider
    }

    /// Okta: the *default custom authorization server* of the org at `org_url` (e.g.
    /// `https://acme.okta.com`), issuer `{org_url}/oauth2/default`: the org authorization
    /// server's access tokens (issuer `{org_url}`) are meant for Okta's own APIs and cannot be
    /// verified by a resource server, so the custom server is the one APIs use. For another
    /// custom authorization server, see [`okta_server`](Self::okta_server). Scopes from the
    /// `scp` array; roles from a `groups` array (a custom claim Okta adds when configured).
    /// The default server's audience is `api://default`.
    pub fn okta(org_url: &str) -> Provider {
        Provider::okta_server(org_url, "default")
    }

    /// Okta: the custom authorization server `server_id` of the org at `org_url`, issuer
    /// `{org_url}/oauth2/{server_id}`; otherwise as [`okta`](Self::okta).
    pub fn okta_server(org_url: &str, server_id: &str) -> Provider {
        let issuer = format!("{}/oauth2/{server_id}", trim(org_url));
        let jwks_uri = format!("{issuer}/v1/keys");
        let mapping = ClaimMapping::new().roles_at("groups").scopes_at("scp");
        Provider::new(Kind::Okta, issuer, jwks_uri, mapping)
    }

    /// Accepts tokens for `audience`; may be called again to accept several. For Cognito, the
    /// app client ID checked against `client_id` by [`rules`](Self::rules); for the others,
    /// the `aud` [`configure`](Self::configure) requires.
    pub fn audience(mut self, audience: impl Into<String>) -> Provider {
        self.audiences.push(audience.into());
        self
    }

    /// Keycloak: also reads the client roles of `client_id`,
    /// `resource_access.{client_id}.roles` (the client ID may contain dots). Other providers
    /// have no such claim: for them, the path is read like any other and is simply absent.
    pub fn resource(mut self, client_id: &str) -> Provider {
        self.mapping =
            self.mapping
                .roles_at(ClaimPath::keys(["resource_access", client_id, "roles"]));
        self
    }

    /// The issuer (`iss`) of the provider's tokens (for Google, the first of its two).
    pub fn issuer(&self) -> &str {
        self.issuers.first().map_or("", String::as_str)
    }

    /// Every `iss` the provider's tokens may carry.
    pub fn issuers(&self) -> &[String] {
        &self.issuers
    }

    /// The OpenID Connect discovery document: `{issuer}/.well-known/openid-configuration`,
    /// without the issuer's trailing slash.
    pub fn discovery_url(&self) -> &str {
        &self.discovery_url
    }

    /// The provider's JWKS document, as its documentation names it.
    pub fn jwks_uri(&self) -> &str {
        &self.jwks_uri
    }

    /// Where the provider's tokens keep roles and scopes.
    pub fn mapping(&self) -> &ClaimMapping {
        &self.mapping
    }

    /// The audiences given with [`audience`](Self::audience).
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// The claims [`configure`](Self::configure) requires.
    pub fn required_claims(&self) -> &[&'static str] {
        &self.required
    }

    /// Sets the provider's issuers, audiences (except for Cognito, whose access tokens carry
    /// no `aud`; see [`rules`](Self::rules)) and required claims on `builder`. Keys are added
    /// separately (see the [module documentation](self#keys)).
    pub fn configure<C, R>(&self, builder: JwtAuthBuilder<C, R>) -> JwtAuthBuilder<C, R> {
        let mut builder = builder;
        for issuer in &self.issuers {
            builder = builder.issuer(issuer.as_str());
        }
        if self.kind != Kind::Cognito {
            for audience in &self.audiences {
                builder = builder.audience(audience.as_str());
            }
        }
        for claim in &self.required {
            builder = builder.require_claim(*claim);
        }
        builder
    }

    /// The claim rules the layer's builder cannot express, as a [`Requirement`] on untyped
    /// claims (refused with 403 by `RequireClaimsLayer`). Cognito: `token_use` is `access`,
    /// and `client_id` is one of the [`audience`](Self::audience)s when any is given. The
    /// other presets have none: any claims meet their rules.
    pub fn rules(&self) -> Requirement<serde_json::Value> {
        if self.kind != Kind::Cognito {
            return Requirement::authenticated();
        }
        let clients = self.audiences.clone();
        let description = if clients.is_empty() {
            "token_use=access".to_owned()
        } else {
            format!("token_use=access client_id={}", clients.join(","))
        };
        Requirement::predicate(description, move |claims: &serde_json::Value| {
            let access =
                claims.get("token_use").and_then(serde_json::Value::as_str) == Some("access");
            let client = claims.get("client_id").and_then(serde_json::Value::as_str);
            access && (clients.is_empty() || client.is_some_and(|c| clients.iter().any(|a| a == c)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuers_and_urls_are_the_documented_ones() {
        let k = Provider::keycloak("https://sso.example.com/", "acme");
        assert_eq!(k.issuer(), "https://sso.example.com/realms/acme");
        assert_eq!(
            k.jwks_uri(),
            "https://sso.example.com/realms/acme/protocol/openid-connect/certs"
        );
        for domain in ["acme.us.auth0.com", "https://acme.us.auth0.com/"] {
            let a = Provider::auth0(domain);
            assert_eq!(a.issuer(), "https://acme.us.auth0.com/");
            assert_eq!(
                a.discovery_url(),
                "https://acme.us.auth0.com/.well-known/openid-configuration"
            );
            assert_eq!(
                a.jwks_uri(),
                "https://acme.us.auth0.com/.well-known/jwks.json"
            );
        }
        let e = Provider::entra("9188040d-6c67-4c5b-b112-36a304b66dad");
        assert_eq!(
            e.issuer(),
            "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0"
        );
        assert_eq!(
            e.discovery_url(),
            "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0/.well-known/openid-configuration"
        );
        assert_eq!(e.required_claims(), ["tid"]);
        let c = Provider::cognito("us-east-1", "us-east-1_Example");
        assert_eq!(
            c.issuer(),
            "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Example"
        );
        assert_eq!(
            c.jwks_uri(),
            "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Example/.well-known/jwks.json"
        );
        let g = Provider::google();
        assert_eq!(
            g.issuers(),
            ["https://accounts.google.com", "accounts.google.com"]
        );
        assert_eq!(
            g.discovery_url(),
            "https://accounts.google.com/.well-known/openid-configuration"
        );
        let o = Provider::okta("https://acme.okta.com");
        assert_eq!(o.issuer(), "https://acme.okta.com/oauth2/default");
        assert_eq!(o.jwks_uri(), "https://acme.okta.com/oauth2/default/v1/keys");
        assert_eq!(
            Provider::okta_server("https://acme.okta.com/", "aus1").issuer(),
            "https://acme.okta.com/oauth2/aus1"
        );
    }

    #[test]
    fn cognito_rules_check_token_use_and_client_id() {
        use serde_json::json;
        let c = Provider::cognito("eu-west-1", "eu-west-1_Pool");
        assert!(
            c.rules()
                .is_met_by(&json!({ "token_use": "access", "client_id": "x" }))
        );
        assert!(
            !c.rules()
                .is_met_by(&json!({ "token_use": "id", "aud": "x" }))
        );
        let c = c.audience("app-1").audience("app-2");
        let rules = c.rules();
        assert!(rules.is_met_by(&json!({ "token_use": "access", "client_id": "app-2" })));
        assert!(!rules.is_met_by(&json!({ "token_use": "access", "client_id": "app-3" })));
        assert!(!rules.is_met_by(&json!({ "token_use": "access" })));
        assert!(!rules.is_met_by(&json!({ "token_use": ["access"], "client_id": "app-1" })));
        assert!(Provider::google().rules().is_met_by(&json!({})));
    }
}
