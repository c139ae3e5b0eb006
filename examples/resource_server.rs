//! An axum API that trusts an external identity provider: it issues no tokens, it only checks
//! the access tokens the provider signs, with the keys the provider publishes (its JWKS, found
//! by OpenID Connect discovery or given directly), following its key rotations.
//!
//! ```text
//! OIDC_ISSUER=https://id.example.com JWT_AUDIENCE=orders-api \
//!     cargo run --features remote --example resource_server
//! curl -s localhost:3002/health
//! curl -s localhost:3002/me -H "authorization: Bearer $ACCESS_TOKEN"
//! ```
//!
//! Environment:
//!
//! * `BIND_ADDR`: where to listen (default `127.0.0.1:3002`; port 0 picks a free one). One
//!   line `listening on <addr>` is printed once connections are accepted.
//! * `OIDC_ISSUER`: the provider's issuer URL; its keys are found by discovery at
//!   `<issuer>/.well-known/openid-configuration`, and tokens must carry exactly this `iss`.
//! * or `JWKS_URL`: the provider's JWKS URL, when it offers no discovery. `JWT_ISSUER`
//!   (optional) then names the `iss` tokens must carry.
//! * `JWT_AUDIENCE` (required): the `aud` tokens must be meant for (with `cognito`, the app
//!   client ID: see below).
//! * `JWT_TOKEN_TYPE` (optional): a header `typ` to require, e.g. `at+jwt` (RFC 9068).
//! * `JWT_PROVIDER` (optional): `keycloak` | `auth0` | `entra` | `cognito` | `generic` (the
//!   default). It decides where roles are read: Keycloak's realm roles `realm_access.roles`
//!   and the client roles `resource_access.<JWT_AUDIENCE>.roles`, Auth0's `permissions`,
//!   Entra ID's app roles `roles`, Cognito's groups `cognito:groups`, and otherwise `roles`.
//!   Amazon Cognito access tokens carry no `aud`: with `cognito`, `JWT_AUDIENCE` is the app
//!   client ID that `client_id` must equal, and `token_use` must be `access`, so an ID token
//!   is refused (401 `invalid_token`).
//! * `RESOURCE_URL` (optional): the URL clients reach this API at, its resource identifier
//!   (RFC 9728), e.g. `http://127.0.0.1:3002`. `GET /.well-known/oauth-protected-resource`
//!   then answers the metadata document (`resource`, `authorization_servers` = the issuer,
//!   `bearer_methods_supported`, and with DPoP `dpop_signing_alg_values_supported` and
//!   `dpop_bound_access_tokens_required`), and every 401 challenge carries
//!   `resource_metadata="<RESOURCE_URL>/.well-known/oauth-protected-resource"`.
//! * `JWT_DPOP` (optional): `off` (default), `allowed` or `required` (RFC 9449; needs
//!   `RESOURCE_URL`, which a proof's `htu` names, joined with the request path). `allowed`:
//!   Bearer tokens without `cnf` keep working, a token bound to a key (`cnf.jkt`) is accepted
//!   only as `Authorization: DPoP <token>` with a valid `DPoP` proof. `required`: Bearer gets
//!   401 and a `WWW-Authenticate: DPoP algs="…"` challenge. A bad or replayed proof, or one
//!   for another method, URL, token or key than the token is bound to, gets 401
//!   `error="invalid_dpop_proof"`.
//!
//! URLs must be `https`; plain `http` is accepted only for a loopback host (`127.0.0.0/8`,
//! `::1`, `localhost`), a provider on this machine. Tokens signed RS256, PS256, ES256 or EdDSA
//! are accepted, as the provider's keys allow; HMAC (`HS*`) tokens never are.
//!
//! Routes: `GET /health` → 200 without a token; `GET /me` → 200 with the token's claims as
//! JSON; `GET /admin` → the same for a token with the role `admin` (read where `JWT_PROVIDER`
//! says), 403 with `WWW-Authenticate: Bearer …, error="insufficient_scope"` for any other
//! valid token. A missing or invalid token gets 401 with `WWW-Authenticate: Bearer …`
//! (RFC 6750); a token whose key cannot be fetched while the provider is unreachable gets 503
//! with `Retry-After`.
//!
//! # Trying it against the test OpenID provider
//!
//! The tests' harness, tests/oidc/server.mjs, runs the certified `oidc-provider` (npm) on
//! 127.0.0.1; it needs Node.js 18 or later:
//!
//! ```text
//! npm ci --prefix tests/oidc
//! node tests/oidc/server.mjs 3001 &      # prints its issuer: http://127.0.0.1:3001
//! OIDC_ISSUER=http://127.0.0.1:3001 JWT_AUDIENCE=urn:test:api \
//!     cargo run --features remote --example resource_server &
//! ACCESS_TOKEN=$(curl -s -u test-client:test-secret http://127.0.0.1:3001/token \
//!     -d grant_type=client_credentials -d resource=urn:test:api -d scope=api:read \
//!     | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
//! curl -s localhost:3002/me -H "authorization: Bearer $ACCESS_TOKEN"
//! curl -s -X POST http://127.0.0.1:3001/__rotate  # new signing keys; new tokens still pass
//! ```
//!
//! The resources `urn:test:api:ps256`, `urn:test:api:es256` and `urn:test:api:eddsa` give
//! tokens signed PS256, ES256 and EdDSA; all have `aud` = `urn:test:api`. tests/it/oidc_layer.rs
//! runs this binary this way.

use std::net::SocketAddr;

use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;
use tower_jwt_auth::authorize::{ClaimMapping, ClaimPath, RequireClaimsLayer};
use tower_jwt_auth::dpop::Dpop;
use tower_jwt_auth::remote::RemoteJwks;
use tower_jwt_auth::resource_metadata::ResourceMetadata;
use tower_jwt_auth::{Algorithm, Claims, JwtAuthLayer};

/// The algorithms accepted: asymmetric only, never HMAC (a provider's keys are public).
const ALGORITHMS: [Algorithm; 4] = [
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::EdDSA,
];

/// The claims of the caller's token, as verified: every claim, whatever the provider adds.
async fn me(claims: Claims<Value>) -> Json<Value> {
    Json(Value::clone(&claims))
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("resource_server: {e}");
        std::process::exit(1);
    }
}

/// The identity providers `JWT_PROVIDER` names.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Provider {
    Keycloak,
    Auth0,
    Entra,
    Cognito,
    Generic,
}

impl Provider {
    fn from_env() -> Result<Provider, String> {
        Ok(match env("JWT_PROVIDER").as_deref() {
            None | Some("generic") => Provider::Generic,
            Some("keycloak") => Provider::Keycloak,
            Some("auth0") => Provider::Auth0,
            Some("entra") => Provider::Entra,
            Some("cognito") => Provider::Cognito,
            Some(other) => {
                return Err(format!(
                    "JWT_PROVIDER={other:?}: expected keycloak, auth0, entra, cognito or generic"
                ));
            }
        })
    }

    /// Where the provider's tokens keep roles. `audience` is this API's client ID at Keycloak.
    fn roles(self, audience: &str) -> ClaimMapping {
        let mapping = ClaimMapping::new();
        match self {
            Provider::Keycloak => mapping
                .roles_at("realm_access.roles")
                // The client ID may contain dots: a path of keys, not a dotted string.
                .roles_at(ClaimPath::keys(["resource_access", audience, "roles"])),
            Provider::Auth0 => mapping.roles_at("permissions"),
            Provider::Cognito => mapping.roles_at(ClaimPath::keys(["cognito:groups"])),
            Provider::Entra | Provider::Generic => mapping.roles_at("roles"),
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = env_or("BIND_ADDR", "127.0.0.1:3002")
        .parse()
        .map_err(|e| format!("BIND_ADDR: {e}"))?;
    let audience = env("JWT_AUDIENCE").ok_or(
        "JWT_AUDIENCE is not set: name the audience (`aud`) this API's tokens are issued for",
    )?;
    let provider = Provider::from_env()?;

    let source = match (env("OIDC_ISSUER"), env("JWKS_URL")) {
        (Some(issuer), None) => RemoteJwks::from_issuer(issuer),
        (None, Some(jwks_url)) => RemoteJwks::from_jwks_uri(jwks_url),
        (Some(_), Some(_)) => return Err("set OIDC_ISSUER or JWKS_URL, not both".into()),
        (None, None) => {
            return Err(
                "set OIDC_ISSUER (the provider's issuer URL, for discovery) or JWKS_URL".into(),
            );
        }
    };
    // Waits for the first fetch: an unreachable provider or a wrong URL stops the start here,
    // with the reason, rather than turning every request into a 503.
    let keys = source
        .algorithms(ALGORITHMS)
        // The builder still refuses plain http to any other host.
        .allow_http_for_loopback()
        .build()
        .await
        .map_err(|e| format!("cannot load the provider's signing keys: {e}"))?;
    if let Some(uri) = keys.jwks_uri() {
        println!("signing keys from {uri}: {:?}", keys.kids());
    }

    // With OIDC_ISSUER the layer requires that issuer; with JWKS_URL, JWT_ISSUER if given.
    let mut auth = JwtAuthLayer::<Value>::builder()
        .remote_jwks(keys)
        .algorithms(ALGORITHMS)
        .realm("resource-server");
    if provider == Provider::Cognito {
        // Cognito access tokens name the app client in `client_id`, not `aud`; its ID tokens
        // (`token_use` "id") are not access tokens. Either is a token this API refuses
        // outright: 401 `invalid_token`, not 403.
        let client_id = audience.clone();
        auth = auth.validate(move |claims: &Value| {
            let text = |name: &str| claims.get(name).and_then(Value::as_str);
            text("token_use") == Some("access") && text("client_id") == Some(client_id.as_str())
        });
    } else {
        auth = auth.audience(audience.as_str());
    }
    if let Some(issuer) = env("JWT_ISSUER") {
        auth = auth.issuer(issuer);
    }
    if let Some(typ) = env("JWT_TOKEN_TYPE") {
        auth = auth.token_type(typ);
    }
    // RESOURCE_URL and JWT_DPOP: this API as an OAuth protected resource (RFC 9728, RFC 9449).
    let resource_url = env("RESOURCE_URL");
    if let Some(url) = &resource_url {
        auth = auth.resource_metadata(ResourceMetadata::new(url));
    }
    if let Some(dpop) = dpop(resource_url.as_deref())? {
        auth = auth.dpop(dpop);
    }
    let auth = auth.build()?;
    let metadata = auth.resource_metadata();

    let admins = RequireClaimsLayer::new(provider.roles(&audience).any_role(["admin"]));
    let app = Router::new()
        .route("/me", get(me))
        .route("/admin", get(me).route_layer(admins))
        .layer(auth)
        .route("/health", get(|| async { "ok" }));
    // The metadata document is public: outside the layer.
    let app = match metadata {
        Some(metadata) => app.route_service(&metadata.path(), metadata),
        None => app,
    };

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown())
        .await?;
    Ok(())
}

/// JWT_DPOP: `off` (or unset), `allowed` or `required`; proofs name `resource_url`.
fn dpop(resource_url: Option<&str>) -> Result<Option<Dpop>, String> {
    let mode = env_or("JWT_DPOP", "off");
    let url = || {
        resource_url.ok_or_else(|| {
            format!("JWT_DPOP={mode} needs RESOURCE_URL: the URL DPoP proofs name (`htu`)")
        })
    };
    match mode.as_str() {
        "off" => Ok(None),
        "allowed" => Ok(Some(Dpop::allowed(url()?).algorithms(ALGORITHMS))),
        "required" => Ok(Some(Dpop::required(url()?).algorithms(ALGORITHMS))),
        other => Err(format!("JWT_DPOP={other:?}: use off, allowed or required")),
    }
}

/// A set, non-empty environment variable.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn env_or(name: &str, default: &str) -> String {
    env(name).unwrap_or_else(|| default.to_owned())
}

async fn shutdown() {
    let _ = tokio::signal::ctrl_c().await;
}
