//! Interoperability with a real, certified OpenID provider: the npm package `oidc-provider`
//! (pinned in tests/oidc/package.json), started on 127.0.0.1 by `node tests/oidc/server.mjs`.
//!
//! It needs Node.js (18 or later) and the harness's packages: run `npm ci --prefix tests/oidc`
//! once. Without them these tests fail with that instruction; they never skip.
//!
//! The provider issues JWT access tokens (RFC 9068) through the client_credentials grant for
//! resource indicators (RFC 8707), signed RS256, PS256, ES256 or EdDSA; `POST /__rotate` on
//! the harness rotates its signing keys (see tests/oidc/server.mjs). The harness is
//! `common::oidc`.

use crate::common;

use std::time::Duration;

use jsonwebtoken::{DecodingKey, Validation};
use serde_json::Value;
use tower_jwt_auth::Algorithm;
use tower_jwt_auth::remote::RemoteJwks;

use common::oidc::{AUDIENCE, CLIENT_ID, OidcProvider, RESOURCES};
use common::{header, install_provider};

/// Checks `token`'s signature and claims with the key the provider publishes for its `kid`,
/// and that the remote key set has that `kid`. Returns the claims.
async fn check_token(
    provider: &OidcProvider,
    keys: &RemoteJwks,
    token: &str,
    alg: Algorithm,
) -> Value {
    install_provider();
    let header = header(token);
    assert_eq!(header["alg"], format!("{alg:?}"));
    assert_eq!(header["typ"], "at+jwt");
    let kid = header["kid"].as_str().expect("a kid");
    assert!(keys.contains_kid(kid), "{kid} not in {:?}", keys.kids());

    let jwks = provider.jwks().await;
    let jwk = jwks.find(kid).expect("the provider publishes the kid");
    let mut validation = Validation::new(common::jwt(alg));
    validation.set_audience(&[AUDIENCE]);
    validation.set_issuer(&[&provider.issuer]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .unwrap_or_else(|e| panic!("{alg:?} token does not verify: {e}"))
        .claims
}

#[tokio::test]
async fn discovery_and_tokens_of_a_certified_openid_provider() {
    let provider = OidcProvider::start();
    let keys = RemoteJwks::from_issuer(&provider.issuer)
        .allow_http_for_loopback()
        .build()
        .await
        .unwrap();
    assert_eq!(keys.issuer(), Some(provider.issuer.as_str()));
    assert_eq!(
        keys.jwks_uri(),
        Some(format!("{}/jwks", provider.issuer).as_str())
    );
    // The provider's RSA, P-256 and Ed25519 keys (published without `alg`) are all usable.
    assert_eq!(keys.kids(), ["ec-1", "ed-1", "rsa-1"]);
    assert_eq!(keys.stats().skipped_keys, 0);

    for (resource, alg) in RESOURCES {
        let token = provider.token(resource).await;
        let claims = check_token(&provider, &keys, &token, alg).await;
        assert_eq!(claims["client_id"], CLIENT_ID);
        assert_eq!(claims["scope"], "api:read");
    }
    assert_eq!(keys.stats().fetches, 1);
}

#[tokio::test]
async fn a_key_rotation_at_the_provider_is_followed() {
    let provider = OidcProvider::start();
    let keys = RemoteJwks::from_issuer(&provider.issuer)
        .allow_http_for_loopback()
        .refresh_cooldown(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    let before = provider.token("urn:test:api").await;
    assert_eq!(header(&before)["kid"], "rsa-1");

    assert_eq!(provider.rotate().await, ["rsa-2", "ec-2", "ed-2"]);
    let after = provider.token("urn:test:api").await;
    assert_eq!(header(&after)["kid"], "rsa-2");
    assert!(!keys.contains_kid("rsa-2"));

    // What the layer does for a token with an unknown kid.
    tokio::time::sleep(Duration::from_millis(100)).await; // past the build's cooldown
    assert_eq!(keys.resolve_kid("rsa-2").await, Ok(true));
    check_token(&provider, &keys, &after, Algorithm::RS256).await;
    // During the rotation the previous keys stay published, so older tokens still verify.
    check_token(&provider, &keys, &before, Algorithm::RS256).await;
    assert_eq!(keys.generation(), 2);

    // A second rotation retires generation 1.
    provider.rotate().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(keys.resolve_kid("rsa-3").await, Ok(true));
    assert_eq!(
        keys.kids(),
        ["ec-2", "ec-3", "ed-2", "ed-3", "rsa-2", "rsa-3"]
    );
    assert!(!keys.contains_kid("rsa-1"));
    let stats = keys.stats();
    assert_eq!(
        (stats.rotations, stats.unknown_kid_refreshes, stats.failures),
        (2, 2, 0)
    );
}

#[tokio::test]
async fn the_provider_issuer_must_match_exactly() {
    let provider = OidcProvider::start();
    // Discovery §4.3: "http://127.0.0.1:port/" is not "http://127.0.0.1:port".
    let err = RemoteJwks::from_issuer(format!("{}/", provider.issuer))
        .allow_http_for_loopback()
        .build()
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("is not the configured issuer"),
        "{err}"
    );
    // And the provider's plain-http issuer is refused unless loopback http is allowed.
    assert!(
        RemoteJwks::from_issuer(&provider.issuer)
            .build()
            .await
            .is_err()
    );
}
