//! The layer against a real, certified OpenID provider: the npm package `oidc-provider`
//! (tests/oidc/server.mjs) on 127.0.0.1, found by discovery with
//! `RemoteJwks::from_issuer(..).allow_http_for_loopback()`, its access tokens fetched over
//! HTTP with the client_credentials grant and sent to a real axum API behind the layer, and
//! to the `resource_server` example, run as a black box.
//!
//! It needs Node.js (18 or later) and the harness's packages: run `npm ci --prefix tests/oidc`
//! once. Without them these tests fail with that instruction; they never skip.
//!
//! The harness issues JWT access tokens (RFC 9068, `typ` `at+jwt`, `aud` `urn:test:api`) for
//! four resource indicators, signed RS256, PS256, ES256 and EdDSA; `POST /__rotate` makes a
//! new generation of keys the signing keys, keeps the previous one published and drops older
//! ones. The harness is `common::oidc`; `oidc_provider` checks `RemoteJwks` alone against
//! it.

use crate::common;

use std::time::Duration;

use jsonwebtoken::EncodingKey;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tower_jwt_auth::Algorithm;
use tower_jwt_auth::JwtAuthLayer;
use tower_jwt_auth::remote::RemoteJwks;

use common::api::{Api, call};
use common::example::{self, Example};
use common::oidc::{AUDIENCE, CLIENT_ID, OidcProvider, RESOURCES};
use common::{Reply, b64, header, payload, segments, tamper_signature};

// ---------------------------------------------------------------------------------------------
// Tampering

/// `token` with its payload changed by `change`, and the original signature.
fn tamper_payload(token: &str, change: impl FnOnce(&mut Value)) -> String {
    let (head, _, signature) = segments(token);
    let mut claims = payload(token);
    change(&mut claims);
    format!("{head}.{}.{signature}", b64(claims.to_string().as_bytes()))
}

// ---------------------------------------------------------------------------------------------
// An API behind the layer

/// What an API answers to a token of the provider.
trait ProviderToken {
    /// 200 with the claims of a token of `provider`; returns them.
    fn assert_ok(&self, provider: &OidcProvider) -> Value;
}

impl ProviderToken for Reply {
    #[track_caller]
    fn assert_ok(&self, provider: &OidcProvider) -> Value {
        assert_eq!(self.status, StatusCode::OK, "{:?}", self.www_authenticate);
        let claims: Value = serde_json::from_str(&self.body).unwrap();
        assert_eq!(claims["iss"], provider.issuer);
        assert_eq!(claims["aud"], AUDIENCE);
        assert_eq!(claims["client_id"], CLIENT_ID);
        assert_eq!(claims["scope"], "api:read");
        assert!(claims["exp"].as_u64().unwrap() > common::now());
        claims
    }
}

/// Keys of `provider` by discovery, refreshed at most once per `cooldown` for unknown kids.
async fn discover(provider: &OidcProvider, cooldown: Duration) -> RemoteJwks {
    let keys = RemoteJwks::from_issuer(&provider.issuer)
        .allow_http_for_loopback()
        .refresh_cooldown(cooldown)
        .build()
        .await
        .unwrap();
    assert_eq!(keys.issuer(), Some(provider.issuer.as_str()));
    assert_eq!(keys.kids(), ["ec-1", "ed-1", "rsa-1"]);
    keys
}

/// The layer as a resource server of `provider` configures it: discovered keys, its
/// audience, RFC 9068 access tokens only. No `.issuer()`: discovery supplies it.
fn layer(keys: RemoteJwks) -> JwtAuthLayer<Value> {
    JwtAuthLayer::<Value>::builder()
        .remote_jwks(keys)
        .audience(AUDIENCE)
        .token_type("at+jwt")
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// The layer in process

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_of_every_signing_algorithm_pass_the_layer() {
    let provider = OidcProvider::start();
    let keys = discover(&provider, Duration::from_secs(30)).await;
    let api = Api::start(layer(keys.clone())).await;

    for (resource, alg) in RESOURCES {
        let token = provider.token(resource).await;
        assert_eq!(header(&token)["alg"], format!("{alg:?}"));
        assert_eq!(header(&token)["typ"], "at+jwt");
        let claims = api.me(&token).await.assert_ok(&provider);
        assert_eq!(
            claims,
            payload(&token),
            "{alg:?}: the handler sees the claims"
        );
    }
    assert_eq!(api.handled(), 4);
    // All four kids were known from discovery: no refresh.
    let stats = keys.stats();
    assert_eq!((stats.fetches, stats.unknown_kid_refreshes), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_and_foreign_tokens_are_refused() {
    let provider = OidcProvider::start();
    let keys = discover(&provider, Duration::from_secs(30)).await;
    let api = Api::start(layer(keys.clone())).await;

    for (resource, alg) in RESOURCES {
        let token = provider.token(resource).await;
        api.me(&token).await.assert_ok(&provider);
        api.me(&tamper_signature(&token))
            .await
            .assert_invalid_token("invalid signature");
        // Another audience written into the claims: the signature no longer covers them.
        let retargeted = tamper_payload(&token, |c| c["aud"] = "urn:other:api".into());
        api.me(&retargeted)
            .await
            .assert_invalid_token("invalid signature");
        let extended = tamper_payload(&token, |c| c["exp"] = json!(common::now() + 86_400));
        api.me(&extended)
            .await
            .assert_invalid_token("invalid signature");
        println!("{alg:?}: genuine 200; tampered signature, aud, exp: 401");
    }
    assert_eq!(api.handled(), 4);

    // The genuine token at an API for another audience.
    let other = Api::start(
        JwtAuthLayer::<Value>::builder()
            .remote_jwks(keys.clone())
            .audience("urn:other:api")
            .build()
            .unwrap(),
    )
    .await;
    let token = provider.token("urn:test:api").await;
    other
        .me(&token)
        .await
        .assert_invalid_token("wrong audience");
    // An API that also names another issuer explicitly: the provider's keys would verify
    // tokens claiming it, so the configuration is refused (OpenID Connect Discovery 1.0 §4.3).
    let elsewhere = JwtAuthLayer::<Value>::builder()
        .remote_jwks(keys.clone())
        .issuer("https://id.example.com")
        .audience(AUDIENCE)
        .build()
        .unwrap_err();
    assert!(
        matches!(
            &elsewhere,
            tower_jwt_auth::BuildError::IssuerMismatch { configured, discovered }
                if configured == "https://id.example.com" && *discovered == provider.issuer
        ),
        "{elsewhere:?}"
    );

    // A token of another provider, whose kids have the same names (rsa-1 …) but other keys.
    let stranger = OidcProvider::start();
    for (resource, _) in RESOURCES {
        let foreign = stranger.token(resource).await;
        assert!(keys.contains_kid(header(&foreign)["kid"].as_str().unwrap()));
        api.me(&foreign)
            .await
            .assert_invalid_token("invalid signature");
    }

    // HS256 signed with the provider's public RSA key as secret, naming its kid.
    let jwks: Value = reqwest::get(keys.jwks_uri().unwrap())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rsa = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == "rsa-1")
        .unwrap()
        .clone();
    let forged = common::sign_raw(
        &json!({"alg": "HS256", "typ": "at+jwt", "kid": "rsa-1"}),
        &payload(&token),
        Algorithm::HS256,
        &EncodingKey::from_secret(rsa.to_string().as_bytes()),
    );
    api.me(&forged)
        .await
        .assert_invalid_token("algorithm not allowed");

    assert_eq!((api.handled(), other.handled()), (4, 0));
    // Every kid above was known (or the alg refused): nothing made the layer refetch.
    assert_eq!(keys.stats().fetches, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotations_at_the_provider_are_followed_by_the_layer() {
    let cooldown = Duration::from_secs(2);
    let provider = OidcProvider::start();
    let keys = discover(&provider, cooldown).await;
    let api = Api::start(layer(keys.clone())).await;

    let mut generation1 = Vec::new();
    for (resource, _) in RESOURCES {
        let token = provider.token(resource).await;
        api.me(&token).await.assert_ok(&provider);
        generation1.push(token);
    }

    assert_eq!(provider.rotate().await, ["rsa-2", "ec-2", "ed-2"]);
    tokio::time::sleep(cooldown + Duration::from_millis(50)).await;
    for (resource, alg) in RESOURCES {
        let token = provider.token(resource).await;
        let kid = header(&token)["kid"].as_str().unwrap().to_owned();
        assert!(kid.ends_with("-2"), "{alg:?} signed by {kid}");
        api.me(&token).await.assert_ok(&provider);
    }
    // One refresh found all three new keys.
    assert_eq!(keys.stats().unknown_kid_refreshes, 1);
    assert_eq!(keys.generation(), 2);
    // The previous generation is still published: its tokens still pass.
    for token in &generation1 {
        api.me(token).await.assert_ok(&provider);
    }

    assert_eq!(provider.rotate().await, ["rsa-3", "ec-3", "ed-3"]);
    tokio::time::sleep(cooldown + Duration::from_millis(50)).await;
    for (resource, _) in RESOURCES {
        let token = provider.token(resource).await;
        api.me(&token).await.assert_ok(&provider);
    }
    assert_eq!(
        keys.kids(),
        ["ec-2", "ec-3", "ed-2", "ed-3", "rsa-2", "rsa-3"]
    );
    // Generation 1 is gone from the provider and from the layer: its tokens are refused.
    for token in &generation1 {
        api.me(token)
            .await
            .assert_invalid_token("unknown signing key");
    }
    let stats = keys.stats();
    assert_eq!(
        (stats.rotations, stats.unknown_kid_refreshes, stats.failures),
        (2, 2, 0)
    );
    assert_eq!(api.handled(), 4 + 4 + 4 + 4);
}

// ---------------------------------------------------------------------------------------------
// The resource_server example, as a black box

use example::RESOURCE_SERVER_ENV as EXAMPLE_ENV;

/// The example's realm.
const REALM: &str = "resource-server";

fn refuses_to_start(binary: &std::path::Path, env: &[(&str, &str)]) -> String {
    example::refuses_to_start(binary, &EXAMPLE_ENV, env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resource_server_example_trusts_the_provider() {
    let binary = tokio::task::spawn_blocking(|| example::build("resource_server"))
        .await
        .unwrap();
    let provider = OidcProvider::start();
    let client = common::client();

    let server = Example::start(
        &binary,
        &EXAMPLE_ENV,
        &[
            ("OIDC_ISSUER", provider.issuer.as_str()),
            ("JWT_AUDIENCE", AUDIENCE),
        ],
    );
    let addr = server.addr;

    let health = client
        .get(format!("http://{addr}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let anonymous = client
        .get(format!("http://{addr}/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(
        common::www_authenticate(&anonymous)
            .unwrap()
            .starts_with("Bearer realm=")
    );

    for (resource, alg) in RESOURCES {
        let token = provider.token(resource).await;
        let claims = call(&client, addr, &token).await.assert_ok(&provider);
        assert_eq!(claims, payload(&token), "{alg:?}");
        call(&client, addr, &tamper_signature(&token))
            .await
            .assert_invalid_token_in(REALM, "invalid signature");
        let retargeted = tamper_payload(&token, |c| c["aud"] = "urn:other:api".into());
        call(&client, addr, &retargeted)
            .await
            .assert_invalid_token_in(REALM, "invalid signature");
    }

    // A token of another provider with the same kid names.
    let stranger = OidcProvider::start();
    let foreign = stranger.token("urn:test:api").await;
    call(&client, addr, &foreign)
        .await
        .assert_invalid_token_in(REALM, "invalid signature");

    // Never HS*: an HS256 token under the provider's RSA kid.
    let token = provider.token("urn:test:api").await;
    let forged = common::sign_raw(
        &json!({"alg": "HS256", "typ": "at+jwt", "kid": "rsa-1"}),
        &payload(&token),
        Algorithm::HS256,
        &EncodingKey::from_secret(b"an attacker's secret, 32 bytes or more"),
    );
    call(&client, addr, &forged)
        .await
        .assert_invalid_token_in(REALM, "algorithm not allowed");

    // Another audience configured: the provider's tokens are not for it.
    let other = Example::start(
        &binary,
        &EXAMPLE_ENV,
        &[
            ("OIDC_ISSUER", provider.issuer.as_str()),
            ("JWT_AUDIENCE", "urn:other:api"),
        ],
    );
    call(&client, other.addr, &token)
        .await
        .assert_invalid_token_in(REALM, "wrong audience");

    // With JWKS_URL instead of discovery, and the issuer named by JWT_ISSUER.
    let jwks_url = format!("{}/jwks", provider.issuer);
    let by_url = Example::start(
        &binary,
        &EXAMPLE_ENV,
        &[
            ("JWKS_URL", jwks_url.as_str()),
            ("JWT_ISSUER", provider.issuer.as_str()),
            ("JWT_AUDIENCE", AUDIENCE),
        ],
    );
    call(&client, by_url.addr, &token)
        .await
        .assert_ok(&provider);
    let wrong_issuer = Example::start(
        &binary,
        &EXAMPLE_ENV,
        &[
            ("JWKS_URL", jwks_url.as_str()),
            ("JWT_ISSUER", "https://id.example.com"),
            ("JWT_AUDIENCE", AUDIENCE),
        ],
    );
    call(&client, wrong_issuer.addr, &token)
        .await
        .assert_invalid_token_in(REALM, "wrong issuer");

    // Configurations it refuses, with a reason and before listening.
    let issuer = provider.issuer.clone();
    let stderr = refuses_to_start(&binary, &[("OIDC_ISSUER", issuer.as_str())]);
    assert!(stderr.contains("JWT_AUDIENCE"), "{stderr}");
    let stderr = refuses_to_start(&binary, &[("JWT_AUDIENCE", AUDIENCE)]);
    assert!(stderr.contains("OIDC_ISSUER"), "{stderr}");
    let stderr = refuses_to_start(
        &binary,
        &[
            ("OIDC_ISSUER", "http://id.example.com"),
            ("JWT_AUDIENCE", AUDIENCE),
        ],
    );
    assert!(stderr.contains("https"), "{stderr}");
    let stderr = refuses_to_start(
        &binary,
        &[
            ("OIDC_ISSUER", format!("{issuer}/").as_str()),
            ("JWT_AUDIENCE", AUDIENCE),
        ],
    );
    assert!(stderr.contains("issuer"), "{stderr}");
}
