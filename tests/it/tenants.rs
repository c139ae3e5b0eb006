//! Several issuers behind one layer, each verified with its own keys only.

use crate::common;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tower_jwt_auth::Algorithm;
use tower_jwt_auth::{JwtAuthLayer, Key, Tenant};

const A: &str = "https://a.test";
const B: &str = "https://b.test";

fn claims(iss: &str, aud: &str) -> Value {
    json!({ "sub": "alice", "iss": iss, "aud": aud, "exp": now() + 600 })
}

fn rs256(claims: &Value) -> String {
    sign_raw(
        &json!({"alg": "RS256"}),
        claims,
        Algorithm::RS256,
        &rsa_key(),
    )
}

fn es256(claims: &Value) -> String {
    let (key, alg) = private_key("ec");
    sign_raw(&json!({"alg": "ES256"}), claims, alg, &key)
}

fn layer() -> JwtAuthLayer<TestClaims> {
    JwtAuthLayer::<TestClaims>::builder()
        .tenant(Tenant::new(A).key(Key::pem(Algorithm::RS256, data("rsa_2048_public.pem"))))
        .tenant(
            Tenant::new(B)
                .key(Key::pem(Algorithm::ES256, data("ec_p256_public.pem")))
                .audience("b-api"),
        )
        .audience(AUDIENCE)
        .build()
        .unwrap()
}

/// What `url` answers to `token`: the status and the challenge (or `""`).
async fn status(url: &str, token: &str) -> (StatusCode, String) {
    let reply = fetch(url, Some(token)).await;
    (reply.status, reply.challenge().to_owned())
}

#[tokio::test]
async fn each_issuer_with_its_own_keys_and_audiences() {
    let (url, hits) = me_server(layer()).await;
    assert_eq!(
        status(&url, &rs256(&claims(A, AUDIENCE))).await.0,
        StatusCode::OK
    );
    assert_eq!(
        status(&url, &es256(&claims(B, "b-api"))).await.0,
        StatusCode::OK
    );
    assert_eq!(hits.count(), 2);

    // Tenant B names its own audience: the layer's does not apply to it.
    let (code, challenge) = status(&url, &es256(&claims(B, AUDIENCE))).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert!(challenge.contains("wrong audience"), "{challenge}");

    // Claiming issuer B but signed with A's key: B's keys alone are tried.
    let (code, challenge) = status(&url, &rs256(&claims(B, "b-api"))).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert!(
        challenge.contains("algorithm not allowed") || challenge.contains("invalid signature"),
        "{challenge}"
    );

    // An issuer no tenant names, and a token without iss.
    let (code, challenge) = status(&url, &rs256(&claims("https://evil.test", AUDIENCE))).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert!(challenge.contains("wrong issuer"), "{challenge}");
    let mut no_iss = claims(A, AUDIENCE);
    no_iss.as_object_mut().unwrap().remove("iss");
    let (code, challenge) = status(&url, &rs256(&no_iss)).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert!(challenge.contains("missing required claim"), "{challenge}");
    assert_eq!(hits.count(), 2);
}

#[test]
fn tenant_configuration_mistakes_are_build_errors() {
    let rsa = || Key::pem(Algorithm::RS256, data("rsa_2048_public.pem"));
    let twice = JwtAuthLayer::<TestClaims>::builder()
        .tenant(Tenant::new(A).key(rsa()))
        .tenant(Tenant::new(A).key(rsa()))
        .build();
    assert!(twice.is_err());
    let mixed = JwtAuthLayer::<TestClaims>::builder()
        .key(rsa())
        .tenant(Tenant::new(A).key(rsa()))
        .build();
    assert!(mixed.is_err());
    let keyless = JwtAuthLayer::<TestClaims>::builder()
        .tenant(Tenant::new(A))
        .build();
    assert!(keyless.is_err());
    let bad_jwks = JwtAuthLayer::<TestClaims>::builder()
        .tenant(Tenant::new(A).jwks_json("[]"))
        .build();
    assert!(bad_jwks.is_err());
}

/// An unknown issuer never makes the layer contact any key source.
#[cfg(feature = "remote")]
#[tokio::test]
async fn unknown_issuers_cause_no_fetch() {
    use common::jwks_server::JwksServer;
    use tower_jwt_auth::remote::RemoteJwks;

    // Tenant A's key (`rsa_key()`), published under kid `a-1`.
    let jwks = JwksServer::start(&[jwk("rsa", "a-1")]).await;
    // Built eagerly: the first fetch happens here, once.
    let remote = RemoteJwks::from_jwks_uri(jwks.jwks_url())
        .allow_http_for_loopback()
        .build()
        .await
        .unwrap();
    assert_eq!(jwks.hits(), 1);
    let layer = JwtAuthLayer::<TestClaims>::builder()
        .tenant(Tenant::new(A).remote_jwks(remote))
        .audience(AUDIENCE)
        .build()
        .unwrap();
    let (url, hits) = me_server(layer).await;
    for i in 0..50 {
        let token = rs256(&claims(&format!("https://unknown-{i}.test"), AUDIENCE));
        assert_eq!(status(&url, &token).await.0, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(jwks.hits(), 1, "an unknown issuer triggered a key fetch");
    assert_eq!(hits.count(), 0);
    // The tenant itself works: its token, with a kid the source knows.
    let token = sign_raw(
        &json!({"alg": "RS256", "kid": "a-1"}),
        &claims(A, AUDIENCE),
        Algorithm::RS256,
        &rsa_key(),
    );
    assert_eq!(status(&url, &token).await.0, StatusCode::OK);
    assert_eq!(hits.count(), 1);
}

/// A tenant whose keys were discovered from another issuer: without the check, tokens claiming
/// the tenant's issuer would be verified with the other issuer's keys. A build error naming
/// both issuers, compared byte for byte (OpenID Connect Discovery 1.0 §4.3).
#[cfg(feature = "remote")]
#[tokio::test]
async fn keys_discovered_from_another_issuer_are_a_build_error() {
    use common::jwks_server::JwksServer;
    use tower_jwt_auth::BuildError;
    use tower_jwt_auth::remote::RemoteJwks;

    // Provider B is its own OpenID provider (issuer `http://127.0.0.1:<port>`) and publishes
    // the `rsa` test key under kid `b-1`.
    let provider_b = JwksServer::start(&[jwk("rsa", "b-1")]).await;
    let issuer_b = provider_b.issuer();
    let keys_b = RemoteJwks::from_issuer(&issuer_b)
        .allow_http_for_loopback()
        .build()
        .await
        .unwrap();
    assert_eq!(keys_b.issuer(), Some(issuer_b.as_str()));

    let attach = |tenant_issuer: &str| {
        JwtAuthLayer::<TestClaims>::builder()
            .tenant(Tenant::new(tenant_issuer).remote_jwks(keys_b.clone()))
            .audience(AUDIENCE)
            .build()
    };
    // Tenant A with B's keys; and B's issuer with a trailing `/`, which is another issuer.
    for tenant_issuer in [A.to_owned(), format!("{issuer_b}/")] {
        let err = attach(&tenant_issuer).unwrap_err();
        let text = err.to_string();
        match err {
            BuildError::IssuerMismatch {
                configured,
                discovered,
            } => assert_eq!(
                (configured, discovered),
                (tenant_issuer.clone(), issuer_b.clone())
            ),
            other => panic!("{tenant_issuer}: {other:?}"),
        }
        assert!(
            text.contains(&tenant_issuer) && text.contains(&issuer_b),
            "{text}"
        );
    }
    // Also when the mismatching tenant comes after a correct one.
    let err = JwtAuthLayer::<TestClaims>::builder()
        .tenant(Tenant::new(&issuer_b).remote_jwks(keys_b.clone()))
        .tenant(Tenant::new(A).remote_jwks(keys_b.clone()))
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, BuildError::IssuerMismatch { configured, .. } if configured == A),
        "{err:?}"
    );

    // The right tenant for B's keys, next to tenant A with its own static key: B's token
    // passes, a token claiming A but signed with B's key does not.
    let layer = JwtAuthLayer::<TestClaims>::builder()
        .tenant(Tenant::new(A).key(Key::pem(Algorithm::ES256, data("ec_p256_public.pem"))))
        .tenant(Tenant::new(&issuer_b).remote_jwks(keys_b))
        .audience(AUDIENCE)
        .build()
        .unwrap();
    let (url, hits) = me_server(layer).await;
    let signed_by_b = |iss: &str| {
        sign_raw(
            &json!({"alg": "RS256", "kid": "b-1"}),
            &claims(iss, AUDIENCE),
            Algorithm::RS256,
            &rsa_key(),
        )
    };
    assert_eq!(
        status(&url, &signed_by_b(&issuer_b)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        status(&url, &signed_by_b(A)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(hits.count(), 1);

    // A key set from a plain JWKS URL has no issuer: any tenant may use it.
    let by_url = RemoteJwks::from_jwks_uri(provider_b.jwks_url())
        .allow_http_for_loopback()
        .build()
        .await
        .unwrap();
    assert_eq!(by_url.issuer(), None);
    JwtAuthLayer::<TestClaims>::builder()
        .tenant(Tenant::new(A).remote_jwks(by_url))
        .build()
        .unwrap();
}
