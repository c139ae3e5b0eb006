//! The testing kit (feature `test-util`): `TestIssuer` tokens through a layer built from its
//! keys, each override refused for its reason, and `MockIdp` discovery, rotation, outages and
//! fetch counts through `RemoteJwks` and the layer, all over real HTTP on 127.0.0.1.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tower_jwt_auth::testing::{DEFAULT_AUDIENCE, DEFAULT_ISSUER, MockIdp, Outage, TestIssuer};
use tower_jwt_auth::{Algorithm, Clock, Jwks, JwtAuthLayer};

use crate::common::api::Api;
use crate::common::payload;

// ---------------------------------------------------------------------------------------------
// TestIssuer

fn issuers() -> Vec<TestIssuer> {
    vec![
        TestIssuer::new(),
        TestIssuer::es256(),
        TestIssuer::rs256(),
        TestIssuer::eddsa(),
        TestIssuer::hs256(),
        TestIssuer::with_algorithm(Algorithm::ES384),
        TestIssuer::with_algorithm(Algorithm::PS256),
        TestIssuer::with_algorithm(Algorithm::HS512),
    ]
}

#[tokio::test]
async fn tokens_are_accepted_by_a_layer_built_from_the_issuers_keys() {
    for issuer in issuers() {
        let alg = issuer.algorithm();
        // Through the helper, through its Jwks, and through its Key.
        let layers = [
            issuer.builder::<Value>().build().unwrap(),
            JwtAuthLayer::<Value>::builder()
                .jwks(issuer.jwks())
                .issuer(DEFAULT_ISSUER)
                .audience(DEFAULT_AUDIENCE)
                .build()
                .unwrap(),
            JwtAuthLayer::<Value>::builder()
                .key(issuer.key())
                .issuer(DEFAULT_ISSUER)
                .audience(DEFAULT_AUDIENCE)
                .build()
                .unwrap(),
        ];
        for layer in layers {
            let api = Api::start(layer).await;
            let token = issuer
                .token()
                .subject("alice")
                .claim("roles", vec!["admin"])
                .sign();
            let reply = api.me(&token).await;
            assert_eq!(reply.status, StatusCode::OK, "{alg}: {reply:?}");
            let claims: Value = serde_json::from_str(&reply.body).unwrap();
            assert_eq!(claims["sub"], "alice", "{alg}");
            assert_eq!(claims["roles"], json!(["admin"]), "{alg}");
            assert_eq!(api.handled(), 1, "{alg}");
        }
    }
}

#[test]
fn the_jwks_publishes_one_signing_key_with_kid_and_alg() {
    for issuer in issuers() {
        let issuer = issuer.kid("key-1");
        let doc: Value = serde_json::from_str(&issuer.jwks_json()).unwrap();
        let keys = doc["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0]["kid"], "key-1");
        assert_eq!(keys[0]["alg"], issuer.algorithm().name());
        assert_eq!(keys[0]["use"], "sig");
        assert_eq!(
            serde_json::from_str::<Value>(&issuer.jwk_json()).unwrap(),
            keys[0]
        );
        if issuer.algorithm().name().starts_with("HS") {
            assert_eq!(keys[0]["kty"], "oct");
        } else {
            assert!(keys[0].get("d").is_none(), "no private part: {}", keys[0]);
        }
        let jwks = Jwks::from_json(&issuer.jwks_json()).unwrap();
        assert_eq!((jwks.len(), jwks.skipped()), (1, 0));
        assert_eq!(issuer.jwks().len(), 1);
    }
}

#[test]
fn each_issuer_has_a_key_of_its_own() {
    let (a, b) = (TestIssuer::new(), TestIssuer::new());
    assert_ne!(a.key_id(), b.key_id());
    assert_ne!(a.jwks_json(), b.jwks_json());
    let layer = a.builder::<Value>().build().unwrap();
    assert!(layer.verify(&a.token().sign()).is_ok());
    // b's token under a's kid: the key is found, the signature is not a's.
    let forged = b.clone().kid(a.key_id()).token().sign();
    assert!(layer.verify(&forged).is_err());
}

#[test]
fn tokens_carry_the_defaults_and_the_overrides() {
    let clock = Clock::manual(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000));
    let issuer = TestIssuer::new()
        .kid("k")
        .issuer("https://id.example")
        .audience("orders")
        .lifetime(Duration::from_secs(60))
        .clock(clock);
    let token = issuer.token().sign();
    let header = crate::common::header(&token);
    assert_eq!(header, json!({"alg": "ES256", "typ": "at+jwt", "kid": "k"}));
    assert_eq!(
        payload(&token),
        json!({"iss": "https://id.example", "aud": "orders", "sub": "test-user",
               "iat": 1_000_000, "exp": 1_000_060})
    );
    let token = issuer
        .token()
        .claims(json!({"scope": "read", "iat": null}))
        .without("sub")
        .without_header("typ")
        .header("cty", "x")
        .alg("none")
        .sign();
    assert_eq!(
        crate::common::header(&token),
        json!({"alg": "none", "kid": "k", "cty": "x"})
    );
    assert_eq!(
        payload(&token),
        json!({"iss": "https://id.example", "aud": "orders", "scope": "read", "exp": 1_000_060})
    );
    assert_eq!(
        payload(&issuer.sign(json!({"sub": "bob"})))["sub"],
        json!("bob")
    );
}

#[tokio::test]
async fn each_override_is_refused_with_its_reason() {
    for issuer in [TestIssuer::new(), TestIssuer::rs256(), TestIssuer::hs256()] {
        let alg = issuer.algorithm();
        let api = Api::start(issuer.builder::<Value>().build().unwrap()).await;
        let wrong_alg = if alg == Algorithm::ES256 {
            "RS256"
        } else {
            "ES256"
        };
        let stranger = TestIssuer::with_algorithm(alg).kid(issuer.key_id());
        let cases = [
            (issuer.token().expired().sign(), "token expired"),
            (issuer.token().not_yet_valid().sign(), "token not yet valid"),
            (
                issuer.token().audience("another-api").sign(),
                "wrong audience",
            ),
            (
                issuer.token().issuer("https://evil.test").sign(),
                "wrong issuer",
            ),
            (issuer.token().typ("JWT").sign(), "wrong token type"),
            (
                issuer.token().kid("no-such-key").sign(),
                "unknown signing key",
            ),
            (
                issuer.token().alg(wrong_alg).sign(),
                "algorithm not allowed",
            ),
            (stranger.token().sign(), "invalid signature"),
        ];
        for (token, reason) in cases {
            let reply = api.me(&token).await;
            println!("{alg} {reason}: {}", reply.challenge());
            reply.assert_invalid_token(reason);
        }
        assert_eq!(
            api.handled(),
            0,
            "{alg}: a refused request reached the handler"
        );
        assert_eq!(api.me(&issuer.token().sign()).await.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn a_manual_clock_shared_with_the_layer_expires_tokens_without_sleeping() {
    let clock = Clock::manual(SystemTime::now());
    let issuer = TestIssuer::new()
        .lifetime(Duration::from_secs(300))
        .clock(clock.clone());
    let api = Api::start(issuer.builder::<Value>().build().unwrap()).await;
    let token = issuer.token().sign();
    assert_eq!(api.me(&token).await.status, StatusCode::OK);
    clock.advance(Duration::from_secs(301 + 60));
    api.me(&token).await.assert_invalid_token("token expired");
    // A token minted now, by the same clock, is good.
    assert_eq!(api.me(&issuer.token().sign()).await.status, StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// MockIdp

#[tokio::test]
async fn the_mock_idp_serves_discovery_and_its_jwks() {
    let idp = MockIdp::start().await;
    assert!(idp.issuer().starts_with("http://127.0.0.1:"));
    let client = reqwest::Client::new();
    let doc: Value = client
        .get(idp.discovery_url())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["issuer"], idp.issuer());
    assert_eq!(doc["jwks_uri"], idp.jwks_uri());
    assert_eq!(idp.jwks_uri(), format!("{}/jwks.json", idp.issuer()));
    let response = client.get(idp.jwks_uri()).send().await.unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "application/jwk-set+json"
    );
    assert_eq!(response.text().await.unwrap(), idp.jwks_json());
    assert_eq!((idp.discovery_fetches(), idp.fetches()), (1, 1));
    let missing = client
        .get(format!("http://{}/nope", idp.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!((idp.discovery_fetches(), idp.fetches()), (1, 1));

    idp.outage(Outage::Unavailable);
    for url in [idp.discovery_url(), idp.jwks_uri()] {
        let status = client.get(url).send().await.unwrap().status();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!((idp.discovery_fetches(), idp.fetches()), (2, 2));
    idp.recover();
    assert!(
        client
            .get(idp.jwks_uri())
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
}

#[cfg(feature = "remote")]
mod remote {
    use super::*;
    use tower_jwt_auth::BuildError;
    use tower_jwt_auth::remote::{RemoteJwks, RemoteJwksBuilder};

    fn remote(idp: &MockIdp) -> RemoteJwksBuilder {
        RemoteJwks::from_issuer(idp.issuer())
            .allow_http_for_loopback()
            .refresh_cooldown(Duration::ZERO)
            .timeouts(Duration::from_millis(500), Duration::from_secs(1))
    }

    fn layer(idp: &MockIdp, keys: RemoteJwks) -> JwtAuthLayer<Value> {
        JwtAuthLayer::<Value>::builder()
            .remote_jwks(keys)
            .issuer(idp.issuer())
            .audience(DEFAULT_AUDIENCE)
            .token_type("at+jwt")
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn discovery_rotation_and_fetch_counts_through_the_layer() {
        for alg in [Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA] {
            let idp = MockIdp::start_with(alg).await;
            let keys = remote(&idp).build().await.unwrap();
            assert_eq!(keys.issuer(), Some(idp.issuer().as_str()));
            assert_eq!(keys.jwks_uri(), Some(idp.jwks_uri().as_str()));
            assert_eq!((idp.discovery_fetches(), idp.fetches()), (1, 1), "{alg}");
            let api = Api::start(layer(&idp, keys.clone())).await;

            let first = idp.token().subject("alice").sign();
            assert_eq!(api.me(&first).await.status, StatusCode::OK, "{alg}");
            assert_eq!(idp.fetches(), 1, "{alg}: a known kid costs no fetch");

            // A rotation: the new kid is unknown, so the verifier refetches once.
            let old_kid = idp.signer().key_id().to_owned();
            let new_kid = idp.rotate();
            assert_eq!(idp.kids(), [old_kid.clone(), new_kid.clone()]);
            let second = idp.token().sign();
            assert_eq!(crate::common::header(&second)["kid"], new_kid.as_str());
            assert_eq!(api.me(&second).await.status, StatusCode::OK, "{alg}");
            assert_eq!(idp.fetches(), 2, "{alg}");
            assert!(keys.contains_kid(&new_kid) && keys.contains_kid(&old_kid));
            // The previous key is still published: its tokens still pass.
            assert_eq!(api.me(&first).await.status, StatusCode::OK, "{alg}");

            // The rollover ends; the next refetch drops the old key.
            idp.retire_old_keys();
            assert_eq!(idp.kids(), std::slice::from_ref(&new_kid));
            let third = idp.rotate();
            let reply = api.me(&idp.token().sign()).await;
            assert_eq!(reply.status, StatusCode::OK, "{alg}");
            assert_eq!(idp.fetches(), 3, "{alg}");
            assert!(!keys.contains_kid(&old_kid) && keys.contains_kid(&third));
            api.me(&first)
                .await
                .assert_invalid_token("unknown signing key");
            assert_eq!(idp.discovery_fetches(), 1, "{alg}: discovery happens once");
        }
    }

    #[tokio::test]
    async fn an_outage_is_503_for_new_kids_while_known_kids_pass() {
        let idp = MockIdp::start().await;
        let keys = remote(&idp).build().await.unwrap();
        let api = Api::start(layer(&idp, keys)).await;
        let known = idp.token().sign();

        for outage in [Outage::Unavailable, Outage::Hang] {
            idp.outage(outage);
            idp.rotate();
            let before = idp.fetches();
            let reply = api.me(&idp.token().sign()).await;
            println!("{outage:?}: {reply:?}");
            reply.assert_unavailable();
            assert!(
                idp.fetches() > before,
                "{outage:?}: the refresh reached the provider"
            );
            assert_eq!(api.me(&known).await.status, StatusCode::OK, "{outage:?}");
            idp.recover();
            let reply = api.me(&idp.token().sign()).await;
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "{outage:?} recovered: {reply:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_provider_that_is_down_fails_the_build() {
        let idp = MockIdp::start().await;
        for outage in [Outage::Unavailable, Outage::Hang] {
            idp.outage(outage);
            let err = remote(&idp).build().await.unwrap_err();
            assert!(
                matches!(err, BuildError::KeySourceUnreachable { .. }),
                "{outage:?}: {err:?}"
            );
        }
        assert_eq!((idp.discovery_fetches(), idp.fetches()), (2, 0));
        idp.recover();
        remote(&idp).build().await.unwrap();
        // The JWKS URL directly, without discovery.
        let direct = RemoteJwks::from_jwks_uri(idp.jwks_uri())
            .allow_http_for_loopback()
            .build()
            .await
            .unwrap();
        assert_eq!(direct.kids(), idp.kids());
        assert_eq!((idp.discovery_fetches(), idp.fetches()), (3, 2));
    }
}
