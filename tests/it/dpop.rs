//! DPoP (RFC 9449) through a real axum server and a real HTTP client: one test per refusal
//! rule of §4.3 and §7, the two modes, replay detection shared by two servers, and proofs made
//! by an independent implementation (the `jose` npm package, tests/oidc/dpop.mjs).
//!
//! The proofs are made here with the tests' own keys and jsonwebtoken; thumbprints come from
//! jsonwebtoken's `Jwk::thumbprint`, not from the crate.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::EncodingKey;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tower_jwt_auth::dpop::Dpop;
use tower_jwt_auth::resource_metadata::ResourceMetadata;
use tower_jwt_auth::revocation::MemoryRevocation;
use tower_jwt_auth::{
    Algorithm, AuthError, Claims, Clock, JwtAuthBuilder, JwtAuthLayer, ProblemJson,
};

use common::{
    Hits, TestClaims, b64, client, hs256_builder, hs256_token, now, serve, sha256_b64, sign_raw,
    tamper_signature,
};

/// The URL clients reach the API at (a proxy in front of 127.0.0.1): what `htu` names.
const BASE: &str = "https://api.example.com";

fn htu() -> String {
    format!("{BASE}/me")
}

// ---------------------------------------------------------------------------------------------
// The client's side: its key, its proofs, its bound tokens

use common::dpop::Holder;

fn holder(which: &str) -> Holder {
    Holder::new(which)
}

/// This module's proofs: for `htm` and `<BASE>/me`, issued now.
trait Proofs {
    fn proof_with(&self, htm: &str, token: &str, claims: Value, header: Value) -> String;
    fn proof(&self, token: &str) -> String;
    fn token(&self) -> String;
}

impl Proofs for Holder {
    /// A proof for `htm` `htu` and `token`, with `claims` merged into its claims (`null`
    /// removes one) and `header` into its header.
    fn proof_with(&self, htm: &str, token: &str, claims: Value, header: Value) -> String {
        self.sign(htm, &htu(), json!(now()), token, claims, header)
    }

    /// A valid proof for `GET <BASE>/me` with `token`.
    fn proof(&self, token: &str) -> String {
        self.proof_with("GET", token, json!({}), json!({}))
    }

    /// An access token of the test policy bound to this key (`cnf.jkt`).
    fn token(&self) -> String {
        hs256_token(json!({ "cnf": { "jkt": self.jkt } }))
    }
}

// ---------------------------------------------------------------------------------------------
// The server's side

/// `/me` behind `layer` on 127.0.0.1: answers `{"sub", "jkt"}`, `jkt` from the claims'
/// [`DpopKey`](tower_jwt_auth::dpop::DpopKey).
async fn start(layer: JwtAuthLayer<TestClaims>) -> (String, Hits) {
    let hits = Hits::default();
    let h = hits.clone();
    let mut app = Router::new().route(
        "/me",
        get(move |claims: Claims<TestClaims>| {
            h.hit();
            let jkt = claims.dpop_key().map(|k| k.thumbprint().to_owned());
            async move { Json(json!({ "sub": claims.sub, "jkt": jkt })) }
        })
        .post(|| async { "posted" }),
    );
    if let Some(metadata) = layer.resource_metadata() {
        app = app.layer(layer).route_service(&metadata.path(), metadata);
    } else {
        app = app.layer(layer);
    }
    let addr = serve(app).await;
    (format!("http://{addr}"), hits)
}

fn builder(dpop: Dpop) -> JwtAuthBuilder<TestClaims> {
    hs256_builder().dpop(dpop)
}

/// What the server answered: status, every `WWW-Authenticate` challenge, the body.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    challenges: Vec<String>,
    body: String,
}

impl Answer {
    async fn read(res: reqwest::Response) -> Answer {
        let challenges = res
            .headers()
            .get_all("www-authenticate")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        Answer {
            status: res.status(),
            challenges,
            body: res.text().await.unwrap(),
        }
    }

    /// The one challenge of `scheme`.
    #[track_caller]
    fn challenge(&self, scheme: &str) -> &str {
        let found: Vec<&String> = self
            .challenges
            .iter()
            .filter(|c| c.starts_with(&format!("{scheme} ")))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one {scheme} challenge in {:?}",
            self.challenges
        );
        found[0]
    }

    /// 401 with `DPoP …, error="invalid_dpop_proof", …, algs="…"`; the handler never ran.
    #[track_caller]
    fn assert_invalid_proof(&self, hits: &Hits) {
        assert_eq!(self.status, StatusCode::UNAUTHORIZED, "{self:?}");
        let dpop = self.challenge("DPoP");
        assert!(dpop.contains("error=\"invalid_dpop_proof\""), "{dpop}");
        assert!(dpop.contains("algs=\"ES256 "), "{dpop}");
        assert_eq!(hits.count(), 0, "a refused request reached the handler");
    }
}

/// `GET <url>/me` with `Authorization: <scheme> <token>` and these `DPoP` headers.
async fn get_me(url: &str, scheme: &str, token: &str, proofs: &[&str]) -> Answer {
    let mut req = client()
        .get(format!("{url}/me"))
        .header("authorization", format!("{scheme} {token}"));
    for proof in proofs {
        req = req.header("dpop", *proof);
    }
    Answer::read(req.send().await.unwrap()).await
}

// ---------------------------------------------------------------------------------------------
// Acceptance

#[tokio::test]
async fn a_valid_proof_passes_and_the_handler_sees_the_key() {
    for which in ["ec", "ed", "rsa"] {
        let client_key = holder(which);
        let (url, hits) = start(builder(Dpop::required(BASE)).build().unwrap()).await;
        let token = client_key.token();
        let answer = get_me(&url, "DPoP", &token, &[&client_key.proof(&token)]).await;
        assert_eq!(answer.status, StatusCode::OK, "{which}: {answer:?}");
        let body: Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(
            body,
            json!({ "sub": "alice", "jkt": client_key.jkt }),
            "{which}"
        );
        assert_eq!(hits.count(), 1);
    }
}

#[tokio::test]
async fn allowed_mode_keeps_bearer_tokens_without_cnf_working() {
    let (url, hits) = start(builder(Dpop::allowed(BASE)).build().unwrap()).await;
    let res = client()
        .get(format!("{url}/me"))
        .bearer_auth(hs256_token(json!({})))
        .send()
        .await
        .unwrap();
    let answer = Answer::read(res).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let body: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(body["jkt"], Value::Null, "no DpopKey for a Bearer token");
    // And a bound token with its proof, on the same layer.
    let client_key = holder("ec");
    let token = client_key.token();
    let answer = get_me(&url, "DPoP", &token, &[&client_key.proof(&token)]).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(hits.count(), 2);
}

#[tokio::test]
async fn the_htu_is_compared_after_normalisation() {
    let client_key = holder("ec");
    let (url, hits) = start(builder(Dpop::required(BASE)).build().unwrap()).await;
    for htu in [
        "HTTPS://API.EXAMPLE.COM/me",
        "https://api.example.com:443/me",
        "https://api.example.com/me?page=2#top",
    ] {
        let token = client_key.token();
        let proof = client_key.proof_with("GET", &token, json!({ "htu": htu }), json!({}));
        let answer = get_me(&url, "DPoP", &token, &[&proof]).await;
        assert_eq!(answer.status, StatusCode::OK, "{htu}: {answer:?}");
    }
    assert_eq!(hits.count(), 3);
}

/// A layer inside axum's `Router::nest("/api", …)` sees the path without `/api`, as behind a
/// proxy that strips it: its base URL names the prefix, so a proof for the URL the client
/// called passes, and a proof for the stripped path (another resource of the host) does not.
#[tokio::test]
async fn a_layer_in_a_nested_router_names_the_prefix_in_its_base_url() {
    let hits = Hits::default();
    let h = hits.clone();
    let api = Router::new()
        .route(
            "/me",
            get(move |claims: Claims<TestClaims>| {
                h.hit();
                let jkt = claims.dpop_key().map(|k| k.thumbprint().to_owned());
                async move { Json(json!({ "jkt": jkt })) }
            }),
        )
        .layer(
            builder(Dpop::required(format!("{BASE}/api")))
                .build()
                .unwrap(),
        );
    let url = format!("http://{}", serve(Router::new().nest("/api", api)).await);
    let client_key = holder("ec");
    let token = client_key.token();
    let call = |htu: String| {
        let proof = client_key.proof_with("GET", &token, json!({ "htu": htu }), json!({}));
        let req = client()
            .get(format!("{url}/api/me"))
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", proof);
        async move { Answer::read(req.send().await.unwrap()).await }
    };
    let answer = call(format!("{BASE}/me")).await;
    answer.assert_invalid_proof(&hits);
    let answer = call(format!("{BASE}/api/me")).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let body: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(body, json!({ "jkt": client_key.jkt }));
    assert_eq!(hits.count(), 1);
}

// ---------------------------------------------------------------------------------------------
// One refusal per rule (RFC 9449 §4.3, §7)

/// A required-mode server and a client (EC key) with a bound token; the refusal `proof`
/// leads to.
async fn refused(proof: impl FnOnce(&Holder, &str) -> String) {
    refused_with("ec", proof).await;
}

/// [`refused`], the client holding test key `which`.
async fn refused_with(which: &str, proof: impl FnOnce(&Holder, &str) -> String) {
    let client_key = holder(which);
    let (url, hits) = start(builder(Dpop::required(BASE)).build().unwrap()).await;
    let token = client_key.token();
    let proof = proof(&client_key, &token);
    get_me(&url, "DPoP", &token, &[&proof])
        .await
        .assert_invalid_proof(&hits);
}

#[tokio::test]
async fn a_tampered_proof_is_refused() {
    refused(|k, token| tamper_signature(&k.proof(token))).await;
}

#[tokio::test]
async fn a_proof_for_another_method_is_refused() {
    refused(|k, token| k.proof_with("POST", token, json!({}), json!({}))).await;
}

#[tokio::test]
async fn a_proof_for_another_url_is_refused() {
    refused(|k, token| {
        k.proof_with(
            "GET",
            token,
            json!({ "htu": format!("{BASE}/admin") }),
            json!({}),
        )
    })
    .await;
    // The URL the server itself listens on is not the configured external one.
    refused(|k, token| {
        k.proof_with(
            "GET",
            token,
            json!({ "htu": "http://127.0.0.1/me" }),
            json!({}),
        )
    })
    .await;
}

#[tokio::test]
async fn a_stale_or_future_proof_is_refused() {
    refused(|k, token| k.proof_with("GET", token, json!({ "iat": now() - 120 }), json!({}))).await;
    refused(|k, token| k.proof_with("GET", token, json!({ "iat": now() + 120 }), json!({}))).await;
}

#[tokio::test]
async fn the_iat_window_follows_the_layers_clock() {
    let start_at = SystemTime::now();
    let clock = Clock::manual(start_at);
    let client_key = holder("ec");
    let layer = builder(Dpop::required(BASE).proof_lifetime(Duration::from_secs(30)))
        .clock(clock.clone())
        .build()
        .unwrap();
    let (url, hits) = start(layer).await;
    let token = client_key.token();
    let proof = client_key.proof(&token);
    clock.advance(Duration::from_secs(31));
    get_me(&url, "DPoP", &token, &[&proof])
        .await
        .assert_invalid_proof(&hits);
    clock.set(start_at);
    let answer = get_me(&url, "DPoP", &token, &[&proof]).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
}

#[tokio::test]
async fn a_replayed_proof_is_refused() {
    let client_key = holder("ec");
    let (url, hits) = start(builder(Dpop::required(BASE)).build().unwrap()).await;
    let token = client_key.token();
    let proof = client_key.proof(&token);
    let first = get_me(&url, "DPoP", &token, &[&proof]).await;
    assert_eq!(first.status, StatusCode::OK, "{first:?}");
    assert_eq!(hits.take(), 1);
    get_me(&url, "DPoP", &token, &[&proof])
        .await
        .assert_invalid_proof(&hits);
}

#[tokio::test]
async fn two_servers_sharing_a_store_refuse_a_proof_spent_at_either() {
    let store = Arc::new(MemoryRevocation::new());
    let layer = || {
        builder(Dpop::required(BASE).replay_store(store.clone()))
            .build()
            .unwrap()
    };
    let (a, hits_a) = start(layer()).await;
    let (b, hits_b) = start(layer()).await;
    let client_key = holder("ec");
    let token = client_key.token();
    let proof = client_key.proof(&token);
    assert_eq!(
        get_me(&a, "DPoP", &token, &[&proof]).await.status,
        StatusCode::OK
    );
    assert_eq!(hits_a.count(), 1);
    get_me(&b, "DPoP", &token, &[&proof])
        .await
        .assert_invalid_proof(&hits_b);
}

#[tokio::test]
async fn a_proof_without_ath_or_for_another_token_is_refused() {
    refused(|k, token| k.proof_with("GET", token, json!({ "ath": null }), json!({}))).await;
    refused(|k, token| {
        k.proof_with(
            "GET",
            token,
            json!({ "ath": sha256_b64(b"another token") }),
            json!({}),
        )
    })
    .await;
}

#[tokio::test]
async fn a_proof_signed_with_another_key_than_its_jwk_is_refused() {
    refused_with("rsa", |k, token| {
        let other = holder("rsa-b");
        // The header names `k`'s public key; the signature is `other`'s, of the same type.
        let header = json!({ "typ": "dpop+jwt", "alg": other.alg.name(), "jwk": k.jwk });
        let claims = json!({ "jti": "j-1", "htm": "GET", "htu": htu(), "iat": now(),
                             "ath": sha256_b64(token.as_bytes()) });
        sign_raw(&header, &claims, other.alg, &other.key)
    })
    .await;
    // Or the algorithm does not fit the key.
    refused(|k, token| k.proof_with("GET", token, json!({}), json!({ "alg": "ES384" }))).await;
}

#[tokio::test]
async fn a_jwk_with_private_members_is_refused() {
    for member in ["d", "p", "q", "dp", "dq", "qi", "k"] {
        refused(|k, token| {
            let mut jwk = k.jwk.clone();
            jwk[member] = "AQAB".into();
            k.proof_with("GET", token, json!({}), json!({ "jwk": jwk }))
        })
        .await;
    }
}

#[tokio::test]
async fn a_proof_signed_hs256_or_none_is_refused() {
    // A MAC under a symmetric `jwk`: the client's "key" would be a shared secret.
    refused(|_, token| {
        let secret = b"0123456789abcdef0123456789abcdef";
        let header = json!({ "typ": "dpop+jwt", "alg": "HS256",
                             "jwk": { "kty": "oct", "k": b64(secret) } });
        let claims = json!({ "jti": "j", "htm": "GET", "htu": htu(), "iat": now(),
                             "ath": sha256_b64(token.as_bytes()) });
        sign_raw(
            &header,
            &claims,
            Algorithm::HS256,
            &EncodingKey::from_secret(secret),
        )
    })
    .await;
    refused(|k, token| {
        let header = json!({ "typ": "dpop+jwt", "alg": "none", "jwk": k.jwk });
        let claims = json!({ "jti": "j", "htm": "GET", "htu": htu(), "iat": now(),
                             "ath": sha256_b64(token.as_bytes()) });
        format!(
            "{}.{}.",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        )
    })
    .await;
    // HS256 named in the header of a proof signed with the client's EC key: still refused.
    refused(|k, token| k.proof_with("GET", token, json!({}), json!({ "alg": "HS256" }))).await;
}

#[tokio::test]
async fn a_proof_of_another_type_is_refused() {
    refused(|k, token| k.proof_with("GET", token, json!({}), json!({ "typ": "JWT" }))).await;
    refused(|k, token| k.proof_with("GET", token, json!({ "jti": null }), json!({}))).await;
}

#[tokio::test]
async fn two_dpop_headers_or_none_are_refused() {
    let client_key = holder("ec");
    let (url, hits) = start(builder(Dpop::required(BASE)).build().unwrap()).await;
    let token = client_key.token();
    let (one, two) = (client_key.proof(&token), client_key.proof(&token));
    get_me(&url, "DPoP", &token, &[&one, &two])
        .await
        .assert_invalid_proof(&hits);
    get_me(&url, "DPoP", &token, &[])
        .await
        .assert_invalid_proof(&hits);
    // An oversized proof is refused unread.
    let big = format!("{}.{}.{}", "a".repeat(5000), "b".repeat(5000), "c");
    get_me(&url, "DPoP", &token, &[&big])
        .await
        .assert_invalid_proof(&hits);
}

#[tokio::test]
async fn a_token_bound_to_another_key_is_refused() {
    let (url, hits) = start(builder(Dpop::required(BASE)).build().unwrap()).await;
    let client_key = holder("ec");
    for token in [holder("ed").token(), hs256_token(json!({}))] {
        let answer = get_me(&url, "DPoP", &token, &[&client_key.proof(&token)]).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
        let dpop = answer.challenge("DPoP");
        assert!(dpop.contains("error=\"invalid_dpop_proof\""), "{dpop}");
        assert!(
            dpop.contains("error_description=\"DPoP key binding does not match\""),
            "{dpop}"
        );
    }
    assert_eq!(hits.count(), 0);
}

#[tokio::test]
async fn a_bound_token_sent_as_bearer_is_refused_in_allowed_mode() {
    let (url, hits) = start(builder(Dpop::allowed(BASE)).build().unwrap()).await;
    let client_key = holder("ec");
    let token = client_key.token();
    // Even with a valid proof beside it: the scheme says Bearer.
    let answer = get_me(&url, "Bearer", &token, &[&client_key.proof(&token)]).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
    let bearer = answer.challenge("Bearer");
    assert!(bearer.starts_with("Bearer realm=\"api\""), "{bearer}");
    assert!(bearer.contains("error=\"invalid_token\""), "{bearer}");
    assert!(bearer.contains("token requires a DPoP proof"), "{bearer}");
    let dpop = answer.challenge("DPoP");
    assert!(
        dpop.starts_with("DPoP realm=\"api\", algs=\"ES256 "),
        "{dpop}"
    );
    assert!(!dpop.contains("error="), "{dpop}");
    assert_eq!(hits.count(), 0);
}

#[tokio::test]
async fn bearer_is_refused_in_required_mode_with_a_dpop_challenge() {
    let layer = builder(Dpop::required(BASE).algorithms([Algorithm::ES256, Algorithm::EdDSA]))
        .build()
        .unwrap();
    let (url, hits) = start(layer).await;
    let answer = get_me(&url, "Bearer", &hs256_token(json!({})), &[]).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
    assert_eq!(
        answer.challenges,
        [
            r#"DPoP realm="api", error="invalid_token", error_description="token requires a DPoP proof", algs="ES256 EdDSA""#
        ]
    );
    // No token at all: the bare challenge (RFC 9449 §7.1).
    let res = client().get(format!("{url}/me")).send().await.unwrap();
    let answer = Answer::read(res).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        answer.challenges,
        [r#"DPoP realm="api", algs="ES256 EdDSA""#]
    );
    // A proof signed with an algorithm outside the list.
    let client_key = holder("rsa");
    let token = client_key.token();
    get_me(&url, "DPoP", &token, &[&client_key.proof(&token)])
        .await
        .assert_invalid_proof(&hits);
}

#[tokio::test]
async fn without_dpop_the_scheme_is_not_a_token() {
    let (url, hits) = start(hs256_builder().build().unwrap()).await;
    let client_key = holder("ec");
    let token = client_key.token();
    let answer = get_me(&url, "DPoP", &token, &[&client_key.proof(&token)]).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        answer.challenges,
        [r#"Bearer realm="api""#],
        "no token found"
    );
    assert_eq!(hits.count(), 0);
}

#[tokio::test]
async fn a_required_nonce_is_handed_out_and_then_accepted_by_every_server_of_the_fleet() {
    const NONCE_SECRET: &[u8] = b"a nonce secret every server shares";
    let start_at = SystemTime::now();
    let clock = Clock::manual(start_at);
    let layer = || {
        builder(Dpop::required(BASE).nonce(NONCE_SECRET))
            .clock(clock.clone())
            .build()
            .unwrap()
    };
    let (a, hits_a) = start(layer()).await;
    let (b, hits_b) = start(layer()).await;
    let client_key = holder("ec");
    let token = client_key.token();
    let with_nonce =
        |nonce: &str| client_key.proof_with("GET", &token, json!({ "nonce": nonce }), json!({}));

    // No nonce: 401 use_dpop_nonce, and the nonce to use (RFC 9449 §8.1).
    let res = client()
        .get(format!("{a}/me"))
        .header("authorization", format!("DPoP {token}"))
        .header("dpop", client_key.proof(&token))
        .send()
        .await
        .unwrap();
    let nonce = res.headers()["dpop-nonce"].to_str().unwrap().to_owned();
    let answer = Answer::read(res).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let dpop = answer.challenge("DPoP");
    assert!(dpop.contains("error=\"use_dpop_nonce\""), "{dpop}");
    assert_eq!(hits_a.count(), 0);

    // With it, at either server.
    let answer = get_me(&a, "DPoP", &token, &[&with_nonce(&nonce)]).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let answer = get_me(&b, "DPoP", &token, &[&with_nonce(&nonce)]).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!((hits_a.take(), hits_b.take()), (1, 1));

    // A nonce this fleet never made, or one past its 5 minutes, is refused the same way.
    let answer = get_me(
        &a,
        "DPoP",
        &token,
        &[&with_nonce("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")],
    )
    .await;
    assert!(
        answer.challenge("DPoP").contains("use_dpop_nonce"),
        "{answer:?}"
    );
    clock.advance(Duration::from_secs(301));
    let later = now() + 301;
    let proof = client_key.proof_with(
        "GET",
        &token,
        json!({ "nonce": nonce, "iat": later }),
        json!({}),
    );
    let answer = get_me(&a, "DPoP", &token, &[&proof]).await;
    assert!(
        answer.challenge("DPoP").contains("use_dpop_nonce"),
        "{answer:?}"
    );
    assert_eq!(hits_a.count(), 0);
    clock.set(start_at);
}

#[test]
fn verify_outside_a_request_refuses_tokens_that_need_a_proof() {
    let bound = holder("ec").token();
    let plain = hs256_token(json!({}));
    let allowed = builder(Dpop::allowed(BASE)).build().unwrap();
    assert_eq!(allowed.verify(&bound).err(), Some(AuthError::DpopRequired));
    assert_eq!(allowed.verify(&plain).unwrap().sub, "alice");
    let required = builder(Dpop::required(BASE)).build().unwrap();
    assert_eq!(required.verify(&plain).err(), Some(AuthError::DpopRequired));
    // Without DPoP the binding cannot be checked: refused, unless taken as a bearer token.
    assert_eq!(
        hs256_builder::<TestClaims>()
            .build()
            .unwrap()
            .verify(&bound)
            .err(),
        Some(AuthError::UnsupportedConfirmation)
    );
    let as_bearer = hs256_builder::<TestClaims>()
        .accept_bound_tokens_as_bearer()
        .build()
        .unwrap();
    assert_eq!(as_bearer.verify(&bound).unwrap().sub, "alice");
}

#[tokio::test]
async fn a_bound_token_is_refused_by_a_layer_that_cannot_check_its_binding() {
    let bound = holder("ec").token();
    // No DPoP on the layer: the key binding cannot be checked (RFC 7800 §3.1).
    let (url, hits) = start(hs256_builder().build().unwrap()).await;
    let answer = get_me(&url, "Bearer", &bound, &[]).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
    let challenge = answer.challenge("Bearer");
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert_eq!(hits.count(), 0, "a refused request reached the handler");

    // A DPoP layer checks `jkt` but not a certificate binding beside it.
    let holder = holder("ec");
    let both = hs256_token(json!({
        "cnf": { "jkt": holder.jkt, "x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2" }
    }));
    let (url, hits) = start(builder(Dpop::required(BASE)).build().unwrap()).await;
    let answer = get_me(&url, "DPoP", &both, &[&holder.proof(&both)]).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{answer:?}");
    assert!(
        answer.challenge("DPoP").contains("error=\"invalid_token\""),
        "{answer:?}"
    );
    assert_eq!(hits.count(), 0, "a refused request reached the handler");

    // Taken as a bearer token when the application says so.
    let (url, hits) = start(
        hs256_builder()
            .accept_bound_tokens_as_bearer()
            .build()
            .unwrap(),
    )
    .await;
    assert_eq!(
        get_me(&url, "Bearer", &bound, &[]).await.status,
        StatusCode::OK
    );
    assert_eq!(hits.take(), 1);
}

#[tokio::test]
async fn configuration_mistakes_are_build_errors() {
    for dpop in [
        Dpop::required("api.example.com"),
        Dpop::required("https://api.example.com/?x=1"),
        Dpop::required(BASE).algorithms([Algorithm::HS256]),
        Dpop::required(BASE).algorithms([]),
        Dpop::required(BASE).proof_lifetime(Duration::ZERO),
        Dpop::required(BASE).nonce(b"short"),
    ] {
        let err = builder(dpop.clone()).build().err();
        assert!(
            err.as_ref().is_some_and(|e| e.to_string().contains("DPoP")),
            "{dpop:?}: {err:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 9728: the metadata document and the challenges that point to it

#[tokio::test]
async fn resource_metadata_is_served_and_named_in_every_challenge() {
    let layer = builder(Dpop::allowed(BASE).algorithms([Algorithm::ES256, Algorithm::PS256]))
        .resource_metadata(ResourceMetadata::new(BASE).scopes(["orders:read"]))
        .build()
        .unwrap();
    let (url, _hits) = start(layer).await;
    let res = client()
        .get(format!("{url}/.well-known/oauth-protected-resource"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/json");
    let doc: Value = res.json().await.unwrap();
    assert_eq!(
        doc,
        json!({
            "resource": BASE,
            "authorization_servers": [common::ISSUER],
            "bearer_methods_supported": ["header"],
            "scopes_supported": ["orders:read"],
            "dpop_signing_alg_values_supported": ["ES256", "PS256"],
            "dpop_bound_access_tokens_required": false,
        })
    );
    let param = format!(r#"resource_metadata="{BASE}/.well-known/oauth-protected-resource""#);
    // No token, a bad Bearer token, a bad proof: each challenge names the document.
    let client_key = holder("ec");
    let token = client_key.token();
    let answers = [
        Answer::read(client().get(format!("{url}/me")).send().await.unwrap()).await,
        get_me(&url, "Bearer", &common::other_key_token(), &[]).await,
        get_me(
            &url,
            "DPoP",
            &token,
            &[&tamper_signature(&client_key.proof(&token))],
        )
        .await,
    ];
    for answer in answers {
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert_eq!(answer.challenges.len(), 2, "{answer:?}");
        for challenge in &answer.challenges {
            assert!(challenge.ends_with(&param), "{challenge}");
        }
    }
}

#[tokio::test]
async fn the_problem_json_responder_gets_the_same_challenges() {
    let layer = builder(Dpop::required(BASE).algorithms([Algorithm::ES256]))
        .resource_metadata(ResourceMetadata::new(BASE))
        .responder(ProblemJson::default())
        .build()
        .unwrap();
    let app = Router::new()
        .route("/me", get(|| async { "reached" }))
        .layer(layer);
    let url = format!("http://{}", serve(app).await);
    let answer = get_me(&url, "Bearer", &hs256_token(json!({})), &[]).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        answer.challenges,
        [format!(
            r#"DPoP realm="api", error="invalid_token", error_description="token requires a DPoP proof", algs="ES256", resource_metadata="{BASE}/.well-known/oauth-protected-resource""#
        )]
    );
    let doc: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(doc["detail"], "token requires a DPoP proof");
}

#[tokio::test]
async fn resource_metadata_without_dpop_names_the_layers_issuer() {
    let layer = hs256_builder()
        .resource_metadata(ResourceMetadata::new("http://127.0.0.1:3002"))
        .build()
        .unwrap();
    let metadata = layer.resource_metadata().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&metadata.to_json()).unwrap(),
        json!({
            "resource": "http://127.0.0.1:3002",
            "authorization_servers": [common::ISSUER],
            "bearer_methods_supported": ["header"],
        })
    );
    let (url, _) = start(layer).await;
    let answer = Answer::read(client().get(format!("{url}/me")).send().await.unwrap()).await;
    assert_eq!(
        answer.challenges,
        [
            r#"Bearer realm="api", resource_metadata="http://127.0.0.1:3002/.well-known/oauth-protected-resource""#
        ]
    );
    // A resource that is neither https nor loopback http is a build error.
    assert!(
        hs256_builder::<TestClaims>()
            .resource_metadata(ResourceMetadata::new("http://api.example.com"))
            .build()
            .is_err()
    );
}

// ---------------------------------------------------------------------------------------------
// Interoperability: proofs and bound tokens made by `jose` (npm)

/// Runs tests/oidc/dpop.mjs for `GET <BASE>/me`: the issuer's JWKS and one case per proof
/// algorithm (see the script).
fn jose_cases() -> Value {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
    assert!(
        dir.join("node_modules/jose/package.json").exists(),
        "the npm packages of tests/oidc are not installed: run `npm ci --prefix tests/oidc` \
         (needs Node.js 18 or later), then run the tests again"
    );
    let output = std::process::Command::new("node")
        .arg(dir.join("dpop.mjs"))
        .args(["GET", &htu(), common::ISSUER, common::AUDIENCE])
        .output()
        .unwrap_or_else(|e| panic!("cannot run `node` ({e}): install Node.js 18 or later"));
    assert!(
        output.status.success(),
        "dpop.mjs failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test]
async fn proofs_and_bound_tokens_made_by_jose_are_accepted() {
    let made = jose_cases();
    let layer = JwtAuthLayer::<TestClaims>::builder()
        .jwks_json(&made["jwks"].to_string())
        .issuer(common::ISSUER)
        .audience(common::AUDIENCE)
        .token_type("at+jwt")
        .dpop(Dpop::required(BASE))
        .build()
        .unwrap();
    let (url, hits) = start(layer).await;
    let cases = made["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for case in cases {
        let alg = case["alg"].as_str().unwrap();
        let token = case["token"].as_str().unwrap();
        let proof = case["proof"].as_str().unwrap();
        let answer = get_me(&url, "DPoP", token, &[proof]).await;
        assert_eq!(answer.status, StatusCode::OK, "{alg}: {answer:?}");
        let body: Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(body["sub"], format!("client-{alg}"));
        // The thumbprint the layer computed is the one jose bound the token to.
        assert_eq!(body["jkt"], case["jkt"], "{alg}");
        assert_eq!(hits.take(), 1);
        // jose's proof is spent like any other.
        get_me(&url, "DPoP", token, &[proof])
            .await
            .assert_invalid_proof(&hits);
    }
}

// ---------------------------------------------------------------------------------------------
// examples/resource_server.rs: RESOURCE_URL and JWT_DPOP (the contract in its module docs)

#[cfg(feature = "remote")]
mod example {
    use super::*;
    use common::example::{self, Example};
    use common::jwks_server::JwksServer;
    use common::{jwk, sign_jwt};

    /// Its variables, cleared from this process's environment for every run.
    use example::RESOURCE_SERVER_ENV as EXAMPLE_ENV;
    /// What the example is told its clients reach it at; it listens on another port.
    const RESOURCE: &str = "http://127.0.0.1:3002";

    /// An RS256 access token of `provider`, bound to `holder` when given.
    fn provider_token(provider: &JwksServer, holder: Option<&Holder>) -> String {
        let mut claims = json!({ "sub": "alice", "iss": provider.issuer(),
                                 "aud": common::AUDIENCE, "iat": now(), "exp": now() + 300 });
        if let Some(h) = holder {
            claims["cnf"] = json!({ "jkt": h.jkt });
        }
        sign_jwt(Algorithm::RS256, &common::rsa_key(), Some("k1"), &claims)
    }

    /// A proof for `GET <RESOURCE>/me`.
    fn proof(holder: &Holder, token: &str) -> String {
        holder.proof_with(
            "GET",
            token,
            json!({ "htu": format!("{RESOURCE}/me") }),
            json!({}),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_resource_server_example_serves_metadata_and_requires_dpop() {
        let binary = tokio::task::spawn_blocking(|| example::build("resource_server"))
            .await
            .unwrap();
        let provider = JwksServer::start(&[jwk("rsa", "k1")]).await;
        let issuer = provider.issuer();
        let env = |mode| {
            [
                ("OIDC_ISSUER", issuer.clone()),
                ("JWT_AUDIENCE", common::AUDIENCE.to_owned()),
                ("RESOURCE_URL", RESOURCE.to_owned()),
                ("JWT_DPOP", mode),
            ]
        };
        let run = |mode: &str| {
            let env = env(mode.to_owned());
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            Example::start(&binary, &EXAMPLE_ENV, &env)
        };
        let server = run("required");
        let url = format!("http://{}", server.addr);

        let doc: Value = client()
            .get(format!("{url}/.well-known/oauth-protected-resource"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            doc,
            json!({
                "resource": RESOURCE,
                "authorization_servers": [issuer],
                "bearer_methods_supported": ["header"],
                "dpop_signing_alg_values_supported": ["RS256", "PS256", "ES256", "EdDSA"],
                "dpop_bound_access_tokens_required": true,
            })
        );

        let holder = holder("ec");
        let token = provider_token(&provider, Some(&holder));
        let res = client()
            .get(format!("{url}/me"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let answer = Answer::read(res).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            answer.challenges,
            [format!(
                r#"DPoP realm="resource-server", error="invalid_token", error_description="token requires a DPoP proof", algs="RS256 PS256 ES256 EdDSA", resource_metadata="{RESOURCE}/.well-known/oauth-protected-resource""#
            )]
        );

        let proof = proof(&holder, &token);
        let answer = get_me(&url, "DPoP", &token, &[&proof]).await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        let claims: Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(claims["cnf"]["jkt"], holder.jkt);
        // Replayed.
        let answer = get_me(&url, "DPoP", &token, &[&proof]).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert!(
            answer
                .challenge("DPoP")
                .contains("error=\"invalid_dpop_proof\""),
            "{answer:?}"
        );
        drop(server);

        // allowed: Bearer without `cnf` works, a bound token as Bearer does not.
        let server = run("allowed");
        let url = format!("http://{}", server.addr);
        let plain = provider_token(&provider, None);
        assert_eq!(
            get_me(&url, "Bearer", &plain, &[]).await.status,
            StatusCode::OK
        );
        let answer = get_me(&url, "Bearer", &token, &[]).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert_eq!(answer.challenges.len(), 2, "Bearer and DPoP: {answer:?}");
        let token = provider_token(&provider, Some(&holder));
        let answer = get_me(
            &url,
            "DPoP",
            &token,
            &[&super::example::proof(&holder, &token)],
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        drop(server);

        // DPoP without RESOURCE_URL, or an unknown mode: the example does not start.
        let stderr = example::refuses_to_start(
            &binary,
            &EXAMPLE_ENV,
            &[
                ("OIDC_ISSUER", &issuer),
                ("JWT_AUDIENCE", common::AUDIENCE),
                ("JWT_DPOP", "required"),
            ],
        );
        assert!(stderr.contains("RESOURCE_URL"), "{stderr}");
        let stderr = example::refuses_to_start(
            &binary,
            &EXAMPLE_ENV,
            &[
                ("OIDC_ISSUER", &issuer),
                ("JWT_AUDIENCE", common::AUDIENCE),
                ("JWT_DPOP", "maybe"),
            ],
        );
        assert!(stderr.contains("JWT_DPOP"), "{stderr}");
    }
}

// ---------------------------------------------------------------------------------------------
// Any change to a valid proof is refused (in process, as the fuzz equivalents run)

mod mutations {
    use super::*;
    use common::send;
    use proptest::prelude::*;

    /// `GET /resource` with `token` under the DPoP scheme and `proof` (as raw header bytes).
    fn request(token: &str, proof: &[u8]) -> Option<http::Request<String>> {
        let proof = http::HeaderValue::from_bytes(proof).ok()?;
        http::Request::get("/resource")
            .header("authorization", format!("DPoP {token}"))
            .header("dpop", proof)
            .body(String::new())
            .ok()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn one_byte_changed_inserted_or_removed_is_refused(
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            how in 0u8..3,
        ) {
            let client_key = holder("ec");
            let token = client_key.token();
            let proof = client_key.proof_with(
                "GET", &token, json!({ "htu": format!("{BASE}/resource") }), json!({}));
            let mut bytes = proof.clone().into_bytes();
            let i = at.index(bytes.len());
            match how {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => { bytes.remove(i); }
            }
            prop_assume!(bytes != proof.as_bytes());
            let Some(req) = request(&token, &bytes) else {
                return Ok(());
            };
            let layer = builder(Dpop::required(BASE)).build().unwrap();
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let outcome = rt.block_on(send(&layer, req));
            prop_assert_eq!(outcome.status, StatusCode::UNAUTHORIZED);
            prop_assert_eq!(outcome.hits, 0);
            prop_assert!(outcome.challenge().contains("invalid_dpop_proof"), "{}", outcome.challenge());
        }
    }

    #[test]
    fn the_unchanged_proof_passes_in_process() {
        let client_key = holder("ec");
        let token = client_key.token();
        let proof = client_key.proof_with(
            "GET",
            &token,
            json!({ "htu": format!("{BASE}/resource") }),
            json!({}),
        );
        let layer = builder(Dpop::required(BASE)).build().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let outcome = rt.block_on(send(&layer, request(&token, proof.as_bytes()).unwrap()));
        assert_eq!(outcome.reached(), Some("alice"), "{outcome:?}");
    }
}
