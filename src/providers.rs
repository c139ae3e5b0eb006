//! Identity-provider presets: where a provider's tokens come from and how they are read.
//!
//! A [`Provider`] is plain data about one identity provider, taken from its public
//! documentation: the issuer its tokens carry, its discovery and JWKS URLs, where its tokens
//! keep roles and scopes (a [`ClaimMapping`]), and the claim rules its tokens need beyond
//! `iss`/`aud`. It plugs into a layer through the ordinary builder:
//! [`configure`](Provider::configure) sets the issuer(s), the audience, the required claims
//! and the provider's own claim rules on a [`JwtAuthBuilder`]; the keys are added as for any
//! issuer (below); the roles and scopes are read by
//! [`Requirement`](crate::authorize::Requirement)s for a
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
//! let admins = keycloak.mapping().any_role(["orders-admin"]);
//! let app: Router = Router::new()
//!     .route("/admin", get(|| async { "admin" }).route_layer(RequireClaimsLayer::new(admins)))
//!     .layer(auth);
//! # let _ = app;
//! ```
//!
//! # Claim rules: 401, not 403
//!
//! A token that breaks a provider's own rules is not an access token for this API at all, so
//! it is refused at authentication, 401 `invalid_token` (RFC 6750 §3.1), like a wrong `aud`.
//! [`configure`](Provider::configure) installs these rules on the builder, beside the
//! application's [`validate`](JwtAuthBuilder::validate) hooks:
//!
//! * **Amazon Cognito**: `token_use` must be `access` (an ID token carries `"id"`: refused as
//!   [`WrongType`](crate::AuthError::WrongType)), and `client_id` must be one of the
//!   [`audience`](Provider::audience)s (else
//!   [`WrongAudience`](crate::AuthError::WrongAudience)).
//! * **Microsoft Entra ID, multi-tenant** ([`Provider::entra_multi_tenant`]): the token's `iss`
//!   must be `https://login.microsoftonline.com/{tid}/v2.0` with the token's own `tid` (a GUID),
//!   and `tid` one of the [allowed tenants](Provider::allow_tenant) when any are named (else
//!   [`WrongIssuer`](crate::AuthError::WrongIssuer)).
//!
//! These rules read only the token's own claims: a token served from the verified-token cache
//! passed them when it was verified.
//!
//! # Keys
//!
//! Every preset names its [`discovery_url`](Provider::discovery_url) and its
//! [`jwks_uri`](Provider::jwks_uri). With feature `remote`, either
//! `RemoteJwks::from_issuer(provider.issuer())` (OpenID Connect discovery) or
//! `RemoteJwks::from_jwks_uri(provider.jwks_uri())` gives the layer the provider's keys. Google
//! documents two issuers (`https://accounts.google.com` and `accounts.google.com`), which
//! [`configure`](Provider::configure) both accepts; keys discovered from one issuer verify
//! only that issuer's tokens, so for Google use `from_jwks_uri`. Entra ID multi-tenant
//! applications also use `from_jwks_uri`: the `common` discovery document's `issuer` is the
//! template `https://login.microsoftonline.com/{tenantid}/v2.0`, not its own URL, which
//! discovery refuses (OpenID Connect Discovery 1.0 §4.3).
//!
//! # What the presets do not cover
//!
//! * **Entra ID v1.0 tokens** (`iss` = `https://sts.windows.net/{tenant}/`), which Entra ID
//!   issues for APIs whose manifest leaves `accessTokenAcceptedVersion` unset: the presets are
//!   for v2.0 tokens.

use std::borrow::Cow;
use std::sync::Arc;

use crate::authorize::{ClaimMapping, ClaimPath};
use crate::{AuthError, JwtAuthBuilder};

/// The issuer of Entra ID v2.0 tokens of tenant `{tenantid}`: `PREFIX + tid + SUFFIX`.
const ENTRA_PREFIX: &str = "https://login.microsoftonline.com/";
const ENTRA_SUFFIX: &str = "/v2.0";

/// Which identity provider a [`Provider`] is: the audience semantics and claim rules differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Keycloak,
    Auth0,
    Entra,
    /// Entra ID, any tenant (or the allowed ones): `iss` checked against `tid`.
    EntraMultiTenant,
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
    /// The allowed Entra tenants (`tid`), for [`Kind::EntraMultiTenant`].
    tenants: Vec<String>,
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
            tenants: Vec::new(),
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
    /// For a multi-tenant application, whose tokens come from many tenants, see
    /// [`entra_multi_tenant`](Self::entra_multi_tenant): `common`, `organizations` and
    /// `consumers` are not tenant IDs, and [`configure`](Self::configure) refuses them (the
    /// build fails) rather than expect an issuer no token carries.
    pub fn entra(tenant_id: &str) -> Provider {
        let base = format!("https://login.microsoftonline.com/{tenant_id}");
        let issuer = format!("{base}/v2.0");
        let jwks_uri = format!("{base}/discovery/v2.0/keys");
        let mapping = ClaimMapping::new().roles_at("roles").scopes_at("scp");
        let mut provider = Provider::new(Kind::Entra, issuer, jwks_uri, mapping);
        provider.required.push("tid");
        provider
    }

    /// Microsoft Entra ID (v2.0 tokens) for a multi-tenant application: tokens of any tenant,
    /// or of the tenants named with [`allow_tenant`](Self::allow_tenant). Their `iss` follows
    /// the template `https://login.microsoftonline.com/{tenantid}/v2.0`
    /// ([`issuer`](Self::issuer)), so [`configure`](Self::configure) sets no fixed issuer but
    /// checks, as the Microsoft identity platform documents ("Validate the issuer"), that
    /// `iss` is that template with `{tenantid}` replaced by the token's own `tid`, a GUID;
    /// `iss` and `tid` are required claims. Everything else is as [`entra`](Self::entra):
    /// roles from `roles`, scopes from `scp`, the audience is the API's application ID, here
    /// required (without it the build fails: every tenant's applications get tokens signed
    /// with the same keys). Keys:
    /// [`jwks_uri`](Self::jwks_uri), the `common` key set every tenant's tokens are signed
    /// with (see the [module documentation](self#keys)).
    ///
    /// ```
    /// use tower_jwt_auth::providers::Provider;
    ///
    /// let entra = Provider::entra_multi_tenant()
    ///     .audience("6e74172b-be56-4843-9ff4-e66a39bb12e3")
    ///     .allow_tenant("72f988bf-86f1-41af-91ab-2d7cd011db47");
    /// assert_eq!(entra.issuer(), "https://login.microsoftonline.com/{tenantid}/v2.0");
    /// assert_eq!(
    ///     entra.jwks_uri(),
    ///     "https://login.microsoftonline.com/common/discovery/v2.0/keys"
    /// );
    /// ```
    pub fn entra_multi_tenant() -> Provider {
        let issuer = format!("{ENTRA_PREFIX}{{tenantid}}{ENTRA_SUFFIX}");
        let jwks_uri = format!("{ENTRA_PREFIX}common/discovery/v2.0/keys");
        let mapping = ClaimMapping::new().roles_at("roles").scopes_at("scp");
        let mut provider = Provider::new(Kind::EntraMultiTenant, issuer, jwks_uri, mapping);
        provider.discovery_url =
            format!("{ENTRA_PREFIX}common/v2.0/.well-known/openid-configuration");
        provider.required.extend(["iss", "tid"]);
        provider
    }

    /// Entra ID multi-tenant: accepts only tokens of the tenant `tenant_id` (the `tid` claim, a
    /// GUID, compared case-insensitively); may be called again to accept several. Without it,
    /// every tenant's tokens are accepted. Only for
    /// [`entra_multi_tenant`](Self::entra_multi_tenant): on another preset,
    /// [`configure`](Self::configure) makes the build fail.
    pub fn allow_tenant(mut self, tenant_id: impl Into<String>) -> Provider {
        self.tenants.push(tenant_id.into());
        self
    }

    /// Amazon Cognito: the user pool `pool_id` (e.g. `us-east-1_Example`) in `region`. Issuer
    /// `https://cognito-idp.{region}.amazonaws.com/{pool_id}`; roles from the groups array
    /// `cognito:groups`; scopes from the space-delimited `scope`. Cognito access tokens carry
    /// no `aud` but `client_id`, the app client: [`audience`](Self::audience) names the
    /// accepted app clients, checked against `client_id` by the rule
    /// [`configure`](Self::configure) installs, which also requires `token_use` to be
    /// `access` (ID tokens carry `"id"`); both are refused with 401 `invalid_token`.
    /// `client_id` and `token_use` are required claims.
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
    /// app client ID checked against `client_id`; for the others, the `aud`. Both are
    /// checked by the layer [`configure`](Self::configure) sets up.
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

    /// The issuer (`iss`) of the provider's tokens (for Google, the first of its two; for
    /// Entra ID multi-tenant, the template `https://login.microsoftonline.com/{tenantid}/v2.0`).
    pub fn issuer(&self) -> &str {
        self.issuers.first().map_or("", String::as_str)
    }

    /// Every `iss` the provider's tokens may carry (for Entra ID multi-tenant, the template,
    /// which [`configure`](Self::configure) checks against `tid` instead of setting it).
    pub fn issuers(&self) -> &[String] {
        &self.issuers
    }

    /// The OpenID Connect discovery document: `{issuer}/.well-known/openid-configuration`,
    /// without the issuer's trailing slash (for Entra ID multi-tenant, the `common` tenant's,
    /// whose `issuer` is the template: discovery refuses it, so take the keys from
    /// [`jwks_uri`](Self::jwks_uri)).
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

    /// Sets the provider's issuers, audiences (for Cognito, the accepted `client_id`s),
    /// required claims and claim rules (see the
    /// [module documentation](self#claim-rules-401-not-403)) on `builder`. Keys are added
    /// separately (see the [module documentation](self#keys)).
    /// The build fails for a preset given what it cannot use: [`entra`](Self::entra) with
    /// `common`, `organizations` or `consumers`, [`allow_tenant`](Self::allow_tenant) on a
    /// preset other than [`entra_multi_tenant`](Self::entra_multi_tenant), or any preset
    /// without an [`audience`](Self::audience): a provider signs the tokens of every
    /// application it serves with the same keys, so the audience is what makes a token this
    /// API's.
    pub fn configure<C, R>(&self, builder: JwtAuthBuilder<C, R>) -> JwtAuthBuilder<C, R> {
        let mut builder = builder;
        if self.kind != Kind::EntraMultiTenant {
            for issuer in &self.issuers {
                builder = builder.issuer(issuer.as_str());
            }
        }
        if self.kind != Kind::Cognito {
            for audience in &self.audiences {
                builder = builder.audience(audience.as_str());
            }
        }
        for claim in &self.required {
            builder = builder.require_claim(*claim);
        }
        if !self.tenants.is_empty() && self.kind != Kind::EntraMultiTenant {
            return builder.refuse("Provider::allow_tenant is for Provider::entra_multi_tenant");
        }
        if self.audiences.is_empty() {
            // A provider signs the tokens of every application it serves with the same keys
            // (Google and Entra multi-tenant: of every customer's too): without an audience, a
            // token issued to another application would pass.
            return builder.refuse(
                "a Provider needs an audience (the API identifier, application or client ID)",
            );
        }
        match self.kind {
            Kind::Entra if self.issuers.iter().any(|i| is_entra_alias(i)) => builder.refuse(
                "Provider::entra takes a tenant ID; for common, organizations or consumers \
                 use Provider::entra_multi_tenant",
            ),
            Kind::EntraMultiTenant => builder.payload_check(entra_issuer_check(&self.tenants)),
            Kind::Cognito => builder.payload_check(cognito_check(&self.audiences)),
            _ => builder,
        }
    }
}

/// Whether `issuer` is an Entra ID v2.0 issuer built on a tenant alias rather than an ID.
fn is_entra_alias(issuer: &str) -> bool {
    ["common", "organizations", "consumers"]
        .iter()
        .any(|alias| issuer == format!("{ENTRA_PREFIX}{alias}{ENTRA_SUFFIX}"))
}

/// A GUID in its 8-4-4-4-12 hexadecimal form, as Entra ID's tenant IDs are.
fn is_guid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// Entra ID multi-tenant (Microsoft identity platform, "Validate the issuer"): `iss` is the
/// v2.0 template with `{tenantid}` replaced by the token's own `tid`, a GUID, one of `tenants`
/// when any are named. Fails closed: no `iss` or `tid`, or either not a string, refuses.
fn entra_issuer_check(tenants: &[String]) -> crate::auth::PayloadCheck {
    #[derive(serde::Deserialize)]
    struct Claims<'a> {
        #[serde(borrow)]
        iss: Option<Cow<'a, str>>,
        #[serde(borrow)]
        tid: Option<Cow<'a, str>>,
    }
    let tenants = tenants.to_vec();
    Arc::new(move |payload: &[u8]| {
        let claims: Claims<'_> =
            serde_json::from_slice(payload).map_err(|_| AuthError::MalformedClaims)?;
        let (Some(iss), Some(tid)) = (claims.iss, claims.tid) else {
            return Err(AuthError::MissingClaim);
        };
        let issuer_tid = iss
            .strip_prefix(ENTRA_PREFIX)
            .and_then(|rest| rest.strip_suffix(ENTRA_SUFFIX));
        if !is_guid(&tid) || issuer_tid != Some(&*tid) {
            return Err(AuthError::WrongIssuer);
        }
        if !tenants.is_empty() && !tenants.iter().any(|t| t.eq_ignore_ascii_case(&tid)) {
            return Err(AuthError::WrongIssuer);
        }
        Ok(())
    })
}

/// Amazon Cognito access tokens: `token_use` is `access`, and `client_id` one of `clients`
/// when any are named. Fails closed: either claim absent or not a string refuses.
fn cognito_check(clients: &[String]) -> crate::auth::PayloadCheck {
    #[derive(serde::Deserialize)]
    struct Claims<'a> {
        #[serde(borrow)]
        token_use: Option<Cow<'a, str>>,
        #[serde(borrow)]
        client_id: Option<Cow<'a, str>>,
    }
    let clients = clients.to_vec();
    Arc::new(move |payload: &[u8]| {
        let claims: Claims<'_> =
            serde_json::from_slice(payload).map_err(|_| AuthError::MalformedClaims)?;
        let (Some(token_use), Some(client_id)) = (claims.token_use, claims.client_id) else {
            return Err(AuthError::MissingClaim);
        };
        if token_use != "access" {
            return Err(AuthError::WrongType);
        }
        if !clients.iter().any(|c| *c == client_id) {
            return Err(AuthError::WrongAudience);
        }
        Ok(())
    })
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

    fn run(check: &crate::auth::PayloadCheck, claims: serde_json::Value) -> Result<(), AuthError> {
        check(claims.to_string().as_bytes())
    }

    #[test]
    fn cognito_check_reads_token_use_and_client_id() {
        use serde_json::json;
        let one = cognito_check(&["x".into()]);
        assert_eq!(
            run(&one, json!({ "token_use": "access", "client_id": "x" })),
            Ok(())
        );
        assert_eq!(
            run(&one, json!({ "token_use": "id", "client_id": "x" })),
            Err(AuthError::WrongType)
        );
        assert_eq!(
            run(&one, json!({ "token_use": "access", "client_id": "y" })),
            Err(AuthError::WrongAudience)
        );
        let two = cognito_check(&["app-1".into(), "app-2".into()]);
        assert_eq!(
            run(&two, json!({ "token_use": "access", "client_id": "app-2" })),
            Ok(())
        );
        assert_eq!(
            run(&two, json!({ "token_use": "access", "client_id": "app-3" })),
            Err(AuthError::WrongAudience)
        );
        assert_eq!(
            run(&two, json!({ "token_use": "access" })),
            Err(AuthError::MissingClaim)
        );
        assert_eq!(
            run(
                &two,
                json!({ "token_use": ["access"], "client_id": "app-1" })
            ),
            Err(AuthError::MalformedClaims)
        );
    }

    #[test]
    fn entra_issuer_check_follows_tid() {
        use serde_json::json;
        const A: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
        const B: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";
        let iss = |tid: &str| format!("https://login.microsoftonline.com/{tid}/v2.0");
        let any = entra_issuer_check(&[]);
        assert_eq!(run(&any, json!({ "iss": iss(A), "tid": A })), Ok(()));
        assert_eq!(run(&any, json!({ "iss": iss(B), "tid": B })), Ok(()));
        for (i, t) in [
            (iss(A), B),
            (iss("{tenantid}"), "{tenantid}"),
            (iss("common"), "common"),
            (format!("https://sts.windows.net/{A}/"), A),
            (format!("{}/", iss(A)), A),
            (iss(&A.to_uppercase()), A),
            (iss("x/v2.0/../72f988bf-86f1-41af-91ab-2d7cd011db47"), A),
        ] {
            assert_eq!(
                run(&any, json!({ "iss": i, "tid": t })),
                Err(AuthError::WrongIssuer),
                "{i}"
            );
        }
        assert_eq!(run(&any, json!({ "tid": A })), Err(AuthError::MissingClaim));
        assert_eq!(
            run(&any, json!({ "iss": iss(A) })),
            Err(AuthError::MissingClaim)
        );
        assert_eq!(
            run(&any, json!({ "iss": iss(A), "tid": 1 })),
            Err(AuthError::MalformedClaims)
        );
        let only_a = entra_issuer_check(&[A.to_uppercase()]);
        assert_eq!(run(&only_a, json!({ "iss": iss(A), "tid": A })), Ok(()));
        assert_eq!(
            run(&only_a, json!({ "iss": iss(B), "tid": B })),
            Err(AuthError::WrongIssuer)
        );
    }
}
