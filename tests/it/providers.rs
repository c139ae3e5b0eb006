//! Identity-provider presets (`providers::Provider`) and claim mapping
//! (`authorize::ClaimMapping`) through a real axum server: each preset's layer, claim rules
//! and requirements, with tokens shaped as the provider's public documentation shows them
//! (claim names, nesting and JSON types), signed by a local RSA key published as a JWKS with a
//! `kid`.

use axum::Router;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tower_jwt_auth::JwtAuthLayer;
use tower_jwt_auth::authorize::{ClaimMapping, ClaimPath, RequireClaimsLayer, Requirement};
use tower_jwt_auth::providers::Provider;

use crate::common::{Hits, Reply, fetch, jwk, now, rsa_key, serve, sign_raw, subject};

const KID: &str = "provider-key-1";

/// `claims` signed with the test RSA key under `{"alg":"RS256","typ":"JWT","kid":KID}`.
fn token(claims: &Value) -> String {
    let header = json!({ "alg": "RS256", "typ": "JWT", "kid": KID });
    sign_raw(
        &header,
        claims,
        tower_jwt_auth::Algorithm::RS256,
        &rsa_key(),
    )
}

/// A layer configured by `provider`, trusting the test key as the provider's JWKS.
fn layer(provider: &Provider) -> JwtAuthLayer<Value> {
    let jwks = json!({ "keys": [jwk("rsa", KID)] }).to_string();
    provider
        .configure(JwtAuthLayer::<Value>::builder())
        .jwks_json(&jwks)
        .build()
        .unwrap()
}

/// `/me` (any valid token) and one route per `(path, requirement)`, behind the provider's
/// layer: the base URL and the handlers' count.
async fn server(provider: &Provider, routes: Vec<(&str, Requirement<Value>)>) -> (String, Hits) {
    let hits = Hits::default();
    let mut app = Router::new().route("/me", subject::<Value>(&hits));
    for (path, requirement) in routes {
        app = app.route(
            path,
            subject::<Value>(&hits).route_layer(RequireClaimsLayer::new(requirement)),
        );
    }
    let app = app.layer(layer(provider));
    (format!("http://{}", serve(app).await), hits)
}

#[track_caller]
fn assert_ok(reply: &Reply, sub: &str) {
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body, sub);
}

#[track_caller]
fn assert_forbidden(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{reply:?}");
    assert!(
        reply.challenge().contains("error=\"insufficient_scope\""),
        "{reply:?}"
    );
}

/// Removes `name` from `claims`.
fn without(mut claims: Value, name: &str) -> Value {
    if let Some(object) = claims.as_object_mut() {
        object.remove(name);
    }
    claims
}

/// `claims` with `name` set to `value`.
fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

// ---------------------------------------------------------------------------------------------
// Keycloak

/// A Keycloak access token as the server issues it (realm `acme`, client `orders-web`
/// calling `orders-api` through an audience mapper).
fn keycloak_claims() -> Value {
    json!({
        "exp": now() + 300,
        "iat": now(),
        "jti": "onrtac:5b6a2f1e-7f0c-4a43-9d7b-0b7b6c6a3b11",
        "iss": "https://sso.example.com/realms/acme",
        "aud": ["orders-api", "account"],
        "sub": "f3b1c7a2-4c1e-4f0e-9d5a-2f6b8f0a9c1d",
        "typ": "Bearer",
        "azp": "orders-web",
        "sid": "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f",
        "acr": "1",
        "allowed-origins": ["https://orders.example.com"],
        "realm_access": {
            "roles": ["offline_access", "uma_authorization", "default-roles-acme", "orders-admin"]
        },
        "resource_access": {
            "orders-api": { "roles": ["orders-reader"] },
            "account": { "roles": ["manage-account", "manage-account-links", "view-profile"] }
        },
        "scope": "openid profile email",
        "email_verified": true,
        "preferred_username": "alice"
    })
}

#[tokio::test]
async fn keycloak_realm_and_client_roles_and_scope() {
    let keycloak = Provider::keycloak("https://sso.example.com", "acme")
        .audience("orders-api")
        .resource("orders-api");
    let m = keycloak.mapping().clone();
    let (base, hits) = server(
        &keycloak,
        vec![
            ("/realm", m.any_role(["orders-admin"])),
            ("/client", m.all_roles(["orders-reader"])),
            ("/account", m.any_role(["manage-account"])),
            ("/email", m.all_scopes(["openid", "email"])),
            ("/write", m.any_scope(["orders:write"])),
        ],
    )
    .await;
    let sub = "f3b1c7a2-4c1e-4f0e-9d5a-2f6b8f0a9c1d";
    let good = token(&keycloak_claims());
    for path in ["/me", "/realm", "/client", "/email"] {
        assert_ok(&fetch(&format!("{base}{path}"), Some(&good)).await, sub);
    }
    assert_eq!(hits.take(), 4);
    // Another client's roles are not this API's; a scope the string lacks is not granted.
    for path in ["/account", "/write"] {
        assert_forbidden(&fetch(&format!("{base}{path}"), Some(&good)).await);
    }
    // Another realm, the pre-17 `/auth` prefix, another audience: refused at authentication.
    let other_realm = with(
        keycloak_claims(),
        "iss",
        json!("https://sso.example.com/realms/other"),
    );
    let old_prefix = with(
        keycloak_claims(),
        "iss",
        json!("https://sso.example.com/auth/realms/acme"),
    );
    for claims in [other_realm, old_prefix] {
        fetch(&format!("{base}/me"), Some(&token(&claims)))
            .await
            .assert_invalid_token("wrong issuer");
    }
    let account_only = with(keycloak_claims(), "aud", json!("account"));
    fetch(&format!("{base}/me"), Some(&token(&account_only)))
        .await
        .assert_invalid_token("wrong audience");
    assert_eq!(hits.count(), 0);
}

// ---------------------------------------------------------------------------------------------
// Auth0

/// An Auth0 access token for the API `https://api.example.com/orders`, with RBAC permissions
/// and a namespaced roles claim added by an Action.
fn auth0_claims() -> Value {
    json!({
        "https://example.com/roles": ["support"],
        "iss": "https://acme.us.auth0.com/",
        "sub": "auth0|6418f1b2c3d4e5f60718293a",
        "aud": ["https://api.example.com/orders", "https://acme.us.auth0.com/userinfo"],
        "iat": now(),
        "exp": now() + 86400,
        "azp": "Xn1qYzV3a0hQc2FsdGVkQ2xpZW50SWQ",
        "scope": "openid profile email read:orders",
        "permissions": ["read:orders", "write:orders"]
    })
}

#[tokio::test]
async fn auth0_trailing_slash_issuer_permissions_and_namespaced_roles() {
    let auth0 = Provider::auth0("acme.us.auth0.com").audience("https://api.example.com/orders");
    assert_eq!(auth0.issuer(), "https://acme.us.auth0.com/");
    let m = auth0
        .mapping()
        .clone()
        .roles_at(ClaimPath::keys(["https://example.com/roles"]));
    let (base, hits) = server(
        &auth0,
        vec![
            ("/read", m.all_scopes(["read:orders"])),
            ("/write", m.all_scopes(["write:orders"])),
            ("/delete", m.any_scope(["delete:orders"])),
            ("/support", m.any_role(["support"])),
            ("/admin", m.any_role(["admin"])),
        ],
    )
    .await;
    let sub = "auth0|6418f1b2c3d4e5f60718293a";
    let good = token(&auth0_claims());
    for path in ["/me", "/read", "/write", "/support"] {
        assert_ok(&fetch(&format!("{base}{path}"), Some(&good)).await, sub);
    }
    assert_eq!(hits.take(), 4);
    for path in ["/delete", "/admin"] {
        assert_forbidden(&fetch(&format!("{base}{path}"), Some(&good)).await);
    }
    // The issuer without Auth0's trailing slash is another issuer.
    let no_slash = with(auth0_claims(), "iss", json!("https://acme.us.auth0.com"));
    fetch(&format!("{base}/me"), Some(&token(&no_slash)))
        .await
        .assert_invalid_token("wrong issuer");
    // A token for the userinfo endpoint only is not for this API.
    let userinfo = with(
        auth0_claims(),
        "aud",
        json!("https://acme.us.auth0.com/userinfo"),
    );
    fetch(&format!("{base}/me"), Some(&token(&userinfo)))
        .await
        .assert_invalid_token("wrong audience");
    assert_eq!(hits.count(), 0);
}

// ---------------------------------------------------------------------------------------------
// Microsoft Entra ID

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const API_CLIENT_ID: &str = "6e74172b-be56-4843-9ff4-e66a39bb12e3";

/// An Entra ID v2.0 access token for the API whose application ID is [`API_CLIENT_ID`]: a
/// delegated `scp` and app `roles`.
fn entra_claims() -> Value {
    json!({
        "aud": API_CLIENT_ID,
        "iss": format!("https://login.microsoftonline.com/{TENANT}/v2.0"),
        "iat": now(),
        "nbf": now(),
        "exp": now() + 3600,
        "aio": "AXQAi/8TAAAAbLmsDJHXGzgnOHtVbRUTRv6ErEfgXKGxUxzKpvdvm7Q=",
        "azp": "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d",
        "azpacr": "0",
        "name": "Abe Lincoln",
        "oid": "690222be-ff1a-4d56-abd1-7e4f7d38e474",
        "preferred_username": "abeli@microsoft.com",
        "rh": "I",
        "roles": ["Orders.Admin", "Orders.Read"],
        "scp": "access_as_user Orders.ReadWrite",
        "sub": "HKZpfaHyWadeOouYlitjrI-KffTm222X5rrV3xDqfKQ",
        "tid": TENANT,
        "uti": "fqiBqXLPj0eQa82S-IYFAA",
        "ver": "2.0"
    })
}

#[tokio::test]
async fn entra_v2_roles_scp_string_and_tid() {
    let entra = Provider::entra(TENANT).audience(API_CLIENT_ID);
    let m = entra.mapping().clone();
    let (base, hits) = server(
        &entra,
        vec![
            ("/admin", m.any_role(["Orders.Admin"])),
            ("/rw", m.all_scopes(["Orders.ReadWrite", "access_as_user"])),
            ("/mail", m.any_scope(["Mail.Send"])),
            ("/partial", m.any_scope(["Orders"])),
        ],
    )
    .await;
    let sub = "HKZpfaHyWadeOouYlitjrI-KffTm222X5rrV3xDqfKQ";
    let good = token(&entra_claims());
    for path in ["/me", "/admin", "/rw"] {
        assert_ok(&fetch(&format!("{base}{path}"), Some(&good)).await, sub);
    }
    assert_eq!(hits.take(), 3);
    for path in ["/mail", "/partial"] {
        assert_forbidden(&fetch(&format!("{base}{path}"), Some(&good)).await);
    }
    // `tid` is required.
    fetch(
        &format!("{base}/me"),
        Some(&token(&without(entra_claims(), "tid"))),
    )
    .await
    .assert_invalid_token("missing required claim");
    // Another tenant, the v1.0 issuer, the `common` endpoint: not this tenant's v2.0 issuer.
    for iss in [
        "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000001/v2.0".to_owned(),
        format!("https://sts.windows.net/{TENANT}/"),
        "https://login.microsoftonline.com/common/v2.0".to_owned(),
    ] {
        let claims = with(entra_claims(), "iss", json!(iss));
        fetch(&format!("{base}/me"), Some(&token(&claims)))
            .await
            .assert_invalid_token("wrong issuer");
    }
    // A token for Microsoft Graph is not for this API.
    let graph = with(
        entra_claims(),
        "aud",
        json!("00000003-0000-0000-c000-000000000000"),
    );
    fetch(&format!("{base}/me"), Some(&token(&graph)))
        .await
        .assert_invalid_token("wrong audience");
    assert_eq!(hits.count(), 0);
}

// ---------------------------------------------------------------------------------------------
// Microsoft Entra ID, multi-tenant

const TENANT_B: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

/// [`entra_claims`] issued by tenant `tid`: its `iss` and `tid`.
fn entra_claims_of(tid: &str) -> Value {
    let claims = with(entra_claims(), "tid", json!(tid));
    with(
        claims,
        "iss",
        json!(format!("https://login.microsoftonline.com/{tid}/v2.0")),
    )
}

/// Tokens of two tenants pass; a `tid` that is not the one `iss` names (either way round), the
/// template itself, the `common` issuer, no `iss` or no `tid` are refused with 401.
#[tokio::test]
async fn entra_multi_tenant_iss_follows_tid_for_two_tenants() {
    let entra = Provider::entra_multi_tenant().audience(API_CLIENT_ID);
    let m = entra.mapping().clone();
    let (base, hits) = server(&entra, vec![("/admin", m.any_role(["Orders.Admin"]))]).await;
    let sub = "HKZpfaHyWadeOouYlitjrI-KffTm222X5rrV3xDqfKQ";
    for tid in [TENANT, TENANT_B] {
        let good = token(&entra_claims_of(tid));
        for path in ["/me", "/admin"] {
            assert_ok(&fetch(&format!("{base}{path}"), Some(&good)).await, sub);
        }
    }
    assert_eq!(hits.take(), 4);

    let iss = |tid: &str| json!(format!("https://login.microsoftonline.com/{tid}/v2.0"));
    let spoofed = [
        // Tenant B's token claiming tenant A's `tid`, and the other way round.
        with(entra_claims_of(TENANT_B), "tid", json!(TENANT)),
        with(entra_claims_of(TENANT), "iss", iss(TENANT_B)),
        // The template of the discovery document, taken literally.
        with(entra_claims_of("{tenantid}"), "tid", json!("{tenantid}")),
        with(entra_claims_of(TENANT), "iss", iss("{tenantid}")),
        // Tenant aliases are not tenants; the v1.0 issuer is not the v2.0 one.
        entra_claims_of("common"),
        with(entra_claims_of(TENANT), "iss", iss("organizations")),
        with(
            entra_claims_of(TENANT),
            "iss",
            json!(format!("https://sts.windows.net/{TENANT}/")),
        ),
        // A look-alike host.
        with(
            entra_claims_of(TENANT),
            "iss",
            json!(format!(
                "https://login.microsoftonline.com.evil.example/{TENANT}/v2.0"
            )),
        ),
    ];
    for claims in &spoofed {
        fetch(&format!("{base}/me"), Some(&token(claims)))
            .await
            .assert_invalid_token("wrong issuer");
    }
    for claim in ["iss", "tid"] {
        fetch(
            &format!("{base}/me"),
            Some(&token(&without(entra_claims_of(TENANT), claim))),
        )
        .await
        .assert_invalid_token("missing required claim");
    }
    let graph = with(
        entra_claims_of(TENANT),
        "aud",
        json!("00000003-0000-0000-c000-000000000000"),
    );
    fetch(&format!("{base}/me"), Some(&token(&graph)))
        .await
        .assert_invalid_token("wrong audience");
    assert_eq!(hits.count(), 0);
}

/// With an allow-list, only the named tenants' tokens pass.
#[tokio::test]
async fn entra_multi_tenant_allow_list() {
    let entra = Provider::entra_multi_tenant()
        .audience(API_CLIENT_ID)
        .allow_tenant(TENANT.to_uppercase());
    let (base, hits) = server(&entra, vec![]).await;
    let sub = "HKZpfaHyWadeOouYlitjrI-KffTm222X5rrV3xDqfKQ";
    assert_ok(
        &fetch(
            &format!("{base}/me"),
            Some(&token(&entra_claims_of(TENANT))),
        )
        .await,
        sub,
    );
    fetch(
        &format!("{base}/me"),
        Some(&token(&entra_claims_of(TENANT_B))),
    )
    .await
    .assert_invalid_token("wrong issuer");
    assert_eq!(hits.count(), 1);
}

/// Presets given what they cannot use fail the build instead of refusing every token, or
/// accepting too many.
#[test]
fn entra_aliases_and_misplaced_tenant_lists_fail_the_build() {
    let jwks = json!({ "keys": [jwk("rsa", KID)] }).to_string();
    let build = |provider: Provider| {
        provider
            .configure(JwtAuthLayer::<Value>::builder())
            .jwks_json(&jwks)
            .build()
    };
    for alias in ["common", "organizations", "consumers"] {
        let err = build(Provider::entra(alias).audience(API_CLIENT_ID)).unwrap_err();
        assert!(err.to_string().contains("entra_multi_tenant"), "{err}");
    }
    let err = build(Provider::keycloak("https://sso.example.com", "acme").allow_tenant(TENANT))
        .unwrap_err();
    assert!(err.to_string().contains("allow_tenant"), "{err}");
    // Without an audience, a token of any application of any tenant would pass.
    let err = build(Provider::entra_multi_tenant().allow_tenant(TENANT)).unwrap_err();
    assert!(err.to_string().contains("audience"), "{err}");
    // Every preset needs one: a provider signs every application's tokens with the same keys.
    for provider in [
        Provider::entra(TENANT),
        Provider::google(),
        Provider::cognito("us-west-2", "us-west-2_X"),
        Provider::keycloak("https://sso.example.com", "acme"),
        Provider::auth0("example.eu.auth0.com"),
        Provider::okta("https://example.okta.com"),
    ] {
        let err = build(provider).unwrap_err();
        assert!(err.to_string().contains("audience"), "{err}");
    }
    assert!(build(Provider::entra(TENANT).audience(API_CLIENT_ID)).is_ok());
}

/// Keys for the multi-tenant preset: the `common` discovery document names the template as its
/// `issuer`, which discovery refuses (its issuer is not its URL's, OpenID Connect Discovery 1.0
/// §4.3), so the template never becomes an accepted issuer; the JWKS URL works.
#[cfg(feature = "remote")]
#[tokio::test]
async fn entra_multi_tenant_keys_by_jwks_uri_not_by_template_discovery() {
    use tower_jwt_auth::BuildError;
    use tower_jwt_auth::remote::RemoteJwks;

    let idp = crate::common::jwks_server::JwksServer::start(&[jwk("rsa", KID)]).await;
    idp.discovery(
        "/common/v2.0/.well-known/openid-configuration",
        json!({
            "issuer": idp.url("/{tenantid}/v2.0"),
            "jwks_uri": idp.jwks_url(),
            "response_types_supported": ["code"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
        }),
    );
    let err = RemoteJwks::from_issuer(idp.url("/common/v2.0"))
        .allow_http_for_loopback()
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(&err, BuildError::Discovery { reason, .. }
            if reason.contains("{tenantid}") && reason.contains("from_jwks_uri")),
        "{err}"
    );

    let keys = RemoteJwks::from_jwks_uri(idp.jwks_url())
        .allow_http_for_loopback()
        .build()
        .await
        .unwrap();
    let entra = Provider::entra_multi_tenant().audience(API_CLIENT_ID);
    let layer = entra
        .configure(JwtAuthLayer::<Value>::builder())
        .remote_jwks(keys)
        .build()
        .unwrap();
    let (url, hits) = crate::common::me_server(layer).await;
    for tid in [TENANT, TENANT_B] {
        assert_ok(
            &fetch(&url, Some(&token(&entra_claims_of(tid)))).await,
            "HKZpfaHyWadeOouYlitjrI-KffTm222X5rrV3xDqfKQ",
        );
    }
    let spoofed = with(entra_claims_of(TENANT_B), "tid", json!(TENANT));
    fetch(&url, Some(&token(&spoofed)))
        .await
        .assert_invalid_token("wrong issuer");
    assert_eq!(hits.count(), 2);
}

// ---------------------------------------------------------------------------------------------
// Amazon Cognito

const POOL_ISSUER: &str = "https://cognito-idp.us-west-2.amazonaws.com/us-west-2_EXAMPLE";
const APP_CLIENT: &str = "1example23456789";

/// A Cognito user-pool access token: `client_id`, no `aud`, `token_use: "access"`.
fn cognito_access() -> Value {
    json!({
        "sub": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "device_key": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "cognito:groups": ["admin"],
        "token_use": "access",
        "scope": "aws.cognito.signin.user.admin orders/read",
        "auth_time": now(),
        "iss": POOL_ISSUER,
        "exp": now() + 3600,
        "iat": now(),
        "origin_jti": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "event_id": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "jti": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "client_id": APP_CLIENT,
        "username": "my-test-user",
        "version": 2
    })
}

/// A Cognito ID token of the same pool: `aud` is the app client, `token_use: "id"`.
fn cognito_id() -> Value {
    json!({
        "sub": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "cognito:groups": ["admin"],
        "email_verified": true,
        "iss": POOL_ISSUER,
        "cognito:username": "my-test-user",
        "origin_jti": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "aud": APP_CLIENT,
        "event_id": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "token_use": "id",
        "auth_time": now(),
        "exp": now() + 3600,
        "iat": now(),
        "jti": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "email": "my-test-user@example.com"
    })
}

#[tokio::test]
async fn cognito_access_tokens_client_id_token_use_and_groups() {
    let cognito = Provider::cognito("us-west-2", "us-west-2_EXAMPLE").audience(APP_CLIENT);
    assert_eq!(cognito.issuer(), POOL_ISSUER);
    let m = cognito.mapping().clone();
    let (base, hits) = server(
        &cognito,
        vec![
            ("/admin", m.any_role(["admin"])),
            ("/read", m.all_scopes(["orders/read"])),
            ("/write", m.any_scope(["orders/write"])),
        ],
    )
    .await;
    let sub = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
    // No `aud` in the access token, and none required.
    let good = token(&cognito_access());
    for path in ["/me", "/admin", "/read"] {
        assert_ok(&fetch(&format!("{base}{path}"), Some(&good)).await, sub);
    }
    assert_eq!(hits.take(), 3);
    assert_forbidden(&fetch(&format!("{base}/write"), Some(&good)).await);
    // The ID token, as Cognito issues it, has no `client_id`: refused at authentication,
    // whatever groups it lists.
    fetch(&format!("{base}/admin"), Some(&token(&cognito_id())))
        .await
        .assert_invalid_token("missing required claim");
    // An ID token that also names the client is still not an access token; another app
    // client of the pool is another audience: 401 `invalid_token` by the preset's rule, not
    // 403.
    let id_with_client = with(cognito_id(), "client_id", json!(APP_CLIENT));
    let id_use = with(cognito_access(), "token_use", json!("id"));
    for claims in [id_with_client, id_use] {
        fetch(&format!("{base}/admin"), Some(&token(&claims)))
            .await
            .assert_invalid_token("wrong token type");
    }
    let other_client = with(cognito_access(), "client_id", json!("9other87654321"));
    fetch(&format!("{base}/me"), Some(&token(&other_client)))
        .await
        .assert_invalid_token("wrong audience");
    fetch(
        &format!("{base}/me"),
        Some(&token(&without(cognito_access(), "token_use"))),
    )
    .await
    .assert_invalid_token("missing required claim");
    // Another pool.
    let other_pool = with(
        cognito_access(),
        "iss",
        json!("https://cognito-idp.us-west-2.amazonaws.com/us-west-2_OTHER"),
    );
    fetch(&format!("{base}/me"), Some(&token(&other_pool)))
        .await
        .assert_invalid_token("wrong issuer");
    assert_eq!(hits.count(), 0);
}

// ---------------------------------------------------------------------------------------------
// Google

const GOOGLE_CLIENT: &str = "1234987819200.apps.googleusercontent.com";

/// A Google ID token, as "Authenticate with a backend server" shows it.
fn google_claims(iss: &str) -> Value {
    json!({
        "iss": iss,
        "azp": GOOGLE_CLIENT,
        "aud": GOOGLE_CLIENT,
        "sub": "110169484474386276334",
        "hd": "example.com",
        "email": "billd1600@example.com",
        "email_verified": "true",
        "at_hash": "HK6E_P6Dh8Y93mRNtsDB1Q",
        "name": "Bill Doe",
        "picture": "https://lh3.googleusercontent.com/a/photo.jpg",
        "given_name": "Bill",
        "family_name": "Doe",
        "locale": "en",
        "iat": now(),
        "exp": now() + 3600
    })
}

#[tokio::test]
async fn google_both_documented_issuers_and_client_id_audience() {
    let google = Provider::google().audience(GOOGLE_CLIENT);
    let (base, hits) = server(
        &google,
        vec![("/admin", google.mapping().any_role(["admin"]))],
    )
    .await;
    for iss in ["https://accounts.google.com", "accounts.google.com"] {
        let good = token(&google_claims(iss));
        assert_ok(
            &fetch(&format!("{base}/me"), Some(&good)).await,
            "110169484474386276334",
        );
        // Google's ID tokens carry no roles.
        assert_forbidden(&fetch(&format!("{base}/admin"), Some(&good)).await);
    }
    assert_eq!(hits.take(), 2);
    let other_app = with(
        google_claims("https://accounts.google.com"),
        "aud",
        json!("999.apps.googleusercontent.com"),
    );
    fetch(&format!("{base}/me"), Some(&token(&other_app)))
        .await
        .assert_invalid_token("wrong audience");
    let lookalike = google_claims("https://accounts.google.com.evil.example");
    fetch(&format!("{base}/me"), Some(&token(&lookalike)))
        .await
        .assert_invalid_token("wrong issuer");
    assert_eq!(hits.count(), 0);
}

// ---------------------------------------------------------------------------------------------
// Okta

/// An access token of Okta's default custom authorization server: `scp` an array, a
/// `groups` claim configured on the server.
fn okta_claims(iss: &str) -> Value {
    json!({
        "ver": 1,
        "jti": "AT.0mP4JKAZX1iACIT4vbEDF7LpvDVjxypPMf0D7uX39RE",
        "iss": iss,
        "aud": "api://default",
        "sub": "00ujmkLgagxeRrAg20g3",
        "iat": now(),
        "exp": now() + 3600,
        "cid": "nmdP1fcyvdVO11AL7ECm",
        "uid": "00ujmkLgagxeRrAg20g3",
        "scp": ["openid", "email", "flights", "custom"],
        "auth_time": now(),
        "groups": ["Everyone", "Pilots"]
    })
}

#[tokio::test]
async fn okta_default_server_scp_array_and_groups() {
    let okta = Provider::okta("https://acme.okta.com").audience("api://default");
    let m = okta.mapping().clone();
    let (base, hits) = server(
        &okta,
        vec![
            ("/flights", m.all_scopes(["flights", "custom"])),
            ("/pilots", m.any_role(["Pilots"])),
            ("/admin", m.any_role(["Admins"])),
            ("/pair", m.any_scope(["openid email"])),
        ],
    )
    .await;
    let sub = "00ujmkLgagxeRrAg20g3";
    let good = token(&okta_claims("https://acme.okta.com/oauth2/default"));
    for path in ["/me", "/flights", "/pilots"] {
        assert_ok(&fetch(&format!("{base}{path}"), Some(&good)).await, sub);
    }
    assert_eq!(hits.take(), 3);
    // An array element is one scope: two words are never one scope.
    for path in ["/admin", "/pair"] {
        assert_forbidden(&fetch(&format!("{base}{path}"), Some(&good)).await);
    }
    // The org authorization server's tokens are for Okta's APIs, not this one.
    let org = token(&okta_claims("https://acme.okta.com"));
    fetch(&format!("{base}/me"), Some(&org))
        .await
        .assert_invalid_token("wrong issuer");
    assert_eq!(hits.count(), 0);
}

// ---------------------------------------------------------------------------------------------
// Claim mapping on its own

#[tokio::test]
async fn claim_mapping_without_a_preset() {
    let hits = Hits::default();
    let mapping = ClaimMapping::new()
        .roles_at("app.access.roles")
        .roles_at(ClaimPath::keys(["cognito:groups"]))
        .scopes_at("scope")
        .scopes_at("scp");
    let admin = RequireClaimsLayer::new(mapping.any_role(["admin"]));
    let both = RequireClaimsLayer::new(mapping.all_scopes(["a", "b"]));
    let auth = crate::common::hs256_layer::<Value>();
    let app = Router::new()
        .route("/admin", subject::<Value>(&hits).route_layer(admin))
        .route("/both", subject::<Value>(&hits).route_layer(both))
        .layer(auth);
    let base = format!("http://{}", serve(app).await);
    let nested = crate::common::hs256_token(json!({ "app": { "access": { "roles": ["admin"] } } }));
    let grouped = crate::common::hs256_token(json!({ "roles": null, "cognito:groups": ["admin"] }));
    for t in [&nested, &grouped] {
        assert_ok(&fetch(&format!("{base}/admin"), Some(t)).await, "alice");
    }
    // The test claims' top-level `roles` is not a mapped path.
    let top = crate::common::hs256_token(json!({ "roles": ["admin"] }));
    assert_forbidden(&fetch(&format!("{base}/admin"), Some(&top)).await);
    // A role string, or roles under a key with a literal dot, are not the nested path.
    let string = crate::common::hs256_token(json!({ "app": { "access": { "roles": "admin" } } }));
    let dotted = crate::common::hs256_token(json!({ "app.access.roles": ["admin"] }));
    for t in [&string, &dotted] {
        assert_forbidden(&fetch(&format!("{base}/admin"), Some(t)).await);
    }
    // Scopes from a string at one path and an array at another.
    let split = crate::common::hs256_token(json!({ "scope": "a x", "scp": ["b"] }));
    assert_ok(&fetch(&format!("{base}/both"), Some(&split)).await, "alice");
    let missing = crate::common::hs256_token(json!({ "scope": "a x" }));
    let reply = fetch(&format!("{base}/both"), Some(&missing)).await;
    assert_forbidden(&reply);
    assert!(reply.challenge().contains("scope=\"a b\""), "{reply:?}");
    assert_eq!(hits.count(), 3);
}

// ---------------------------------------------------------------------------------------------
// The resource_server example's JWT_PROVIDER, as a black box

/// `GET /admin` of the resource_server example, started with `JWT_PROVIDER` for each provider
/// and trusting a `MockIdp` by discovery: the role `admin` read where that provider puts it
/// passes, anywhere else it is a 403 `insufficient_scope` challenge; with `cognito`, the app
/// client is `client_id`, and an ID token or another client's token is a 401.
#[cfg(all(feature = "remote", feature = "test-util"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resource_server_example_reads_roles_where_the_provider_puts_them() {
    use crate::common::example::{self, Example, RESOURCE_SERVER_ENV};
    use tower_jwt_auth::testing::MockIdp;

    let binary = tokio::task::spawn_blocking(|| example::build("resource_server"))
        .await
        .unwrap();
    let idp = MockIdp::start().await;
    let issuer = idp.issuer();
    let start = |provider: &str, audience: &str| {
        let mut env = vec![("OIDC_ISSUER", issuer.as_str()), ("JWT_AUDIENCE", audience)];
        if !provider.is_empty() {
            env.push(("JWT_PROVIDER", provider));
        }
        Example::start(&binary, &RESOURCE_SERVER_ENV, &env)
    };
    #[track_caller]
    fn assert_admin(reply: &Reply) {
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        let claims: Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(claims["sub"], "alice");
    }
    #[track_caller]
    fn assert_not_admin(reply: &Reply) {
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{reply:?}");
        let challenge = reply.challenge();
        assert!(
            challenge.starts_with("Bearer realm=\"resource-server\"")
                && challenge.contains("error=\"insufficient_scope\""),
            "{challenge:?}"
        );
    }
    let get = |server: &Example, path: &str, token: String| {
        let url = format!("http://{}{path}", server.addr);
        async move { fetch(&url, Some(&token)).await }
    };
    let token = |aud: &str, claims: Value| {
        idp.token()
            .subject("alice")
            .audience(aud)
            .claims(claims)
            .sign()
    };

    // Keycloak: realm roles, and the client roles of this API (the audience), not another's.
    let keycloak = start("keycloak", "orders-api");
    let realm_admin = token(
        "orders-api",
        json!({ "realm_access": { "roles": ["admin"] } }),
    );
    let client_admin = token(
        "orders-api",
        json!({ "resource_access": { "orders-api": { "roles": ["admin"] } } }),
    );
    for t in [realm_admin.clone(), client_admin] {
        assert_admin(&get(&keycloak, "/admin", t).await);
    }
    let other_client = token(
        "orders-api",
        json!({ "resource_access": { "account": { "roles": ["admin"] } },
                "realm_access": { "roles": ["user"] } }),
    );
    let top_level = token("orders-api", json!({ "roles": ["admin"] }));
    for t in [other_client.clone(), top_level.clone()] {
        assert_not_admin(&get(&keycloak, "/admin", t).await);
    }
    assert_eq!(
        get(&keycloak, "/me", other_client).await.status,
        StatusCode::OK
    );
    get(
        &keycloak,
        "/admin",
        token(
            "another-api",
            json!({ "realm_access": { "roles": ["admin"] } }),
        ),
    )
    .await
    .assert_invalid_token_in("resource-server", "wrong audience");

    // Auth0: `permissions`.
    let auth0 = start("auth0", "https://api.example.com/orders");
    let aud = "https://api.example.com/orders";
    assert_admin(
        &get(
            &auth0,
            "/admin",
            token(aud, json!({ "permissions": ["admin"] })),
        )
        .await,
    );
    for claims in [
        json!({ "permissions": ["read:orders"] }),
        json!({ "roles": ["admin"] }),
        json!({ "scope": "admin" }),
    ] {
        assert_not_admin(&get(&auth0, "/admin", token(aud, claims)).await);
    }

    // Cognito: no `aud`; `client_id` is the app client, `token_use` must be `access`.
    let client = "1example23456789";
    let cognito = start("cognito", client);
    let access = |groups: Value| {
        idp.token()
            .subject("alice")
            .without("aud")
            .claims(json!({ "token_use": "access", "client_id": client,
                            "cognito:groups": groups, "username": "alice" }))
            .sign()
    };
    assert_admin(&get(&cognito, "/admin", access(json!(["admin"]))).await);
    assert_not_admin(&get(&cognito, "/admin", access(json!(["users"]))).await);
    assert_eq!(
        get(&cognito, "/me", access(json!(["users"]))).await.status,
        StatusCode::OK
    );
    // The pool's ID token for the same app client, with the same groups: not an access token.
    let id_token = token(
        client,
        json!({ "token_use": "id", "cognito:groups": ["admin"], "email": "alice@example.com" }),
    );
    let id_with_client = idp
        .token()
        .subject("alice")
        .without("aud")
        .claims(json!({ "token_use": "id", "client_id": client, "cognito:groups": ["admin"] }))
        .sign();
    let other_app = idp
        .token()
        .subject("alice")
        .without("aud")
        .claims(
            json!({ "token_use": "access", "client_id": "9other87654321",
                        "cognito:groups": ["admin"] }),
        )
        .sign();
    for t in [id_token, id_with_client, other_app] {
        for path in ["/me", "/admin"] {
            get(&cognito, path, t.clone())
                .await
                .assert_invalid_token_in("resource-server", "claims not accepted");
        }
    }

    // Entra ID: app roles in `roles`; generic (the default): `roles` too.
    let entra = start("entra", API_CLIENT_ID);
    assert_admin(
        &get(
            &entra,
            "/admin",
            token(API_CLIENT_ID, json!({ "roles": ["admin"] })),
        )
        .await,
    );
    assert_not_admin(
        &get(
            &entra,
            "/admin",
            token(API_CLIENT_ID, json!({ "roles": ["Orders.Read"] })),
        )
        .await,
    );
    let generic = start("", "orders-api");
    assert_admin(&get(&generic, "/admin", top_level).await);
    assert_not_admin(&get(&generic, "/admin", realm_admin).await);

    let stderr = example::refuses_to_start(
        &binary,
        &RESOURCE_SERVER_ENV,
        &[
            ("OIDC_ISSUER", issuer.as_str()),
            ("JWT_AUDIENCE", "orders-api"),
            ("JWT_PROVIDER", "okta"),
        ],
    );
    assert!(stderr.contains("JWT_PROVIDER"), "{stderr}");
}
