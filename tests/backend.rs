//! The crate never reads jsonwebtoken's process-global `CryptoProvider`.
//!
//! jsonwebtoken's own `encode`/`decode`/`crypto::sign` consult a process default that panics
//! when both backend features (or neither) are enabled, unless someone calls
//! `CryptoProvider::install_default`. This file never installs a default and never signs with
//! those global functions: tokens come from `TokenIssuer`, which signs through the crate's own
//! backend, or are hard-coded. It is a test binary of its own, apart from tests/it, because the
//! shared harness there (tests/it/common, whose `sign_raw` installs the default) would hide a
//! read of the global in the same process. Run it with each backend feature and with both:
//!
//! ```text
//! cargo test --test backend
//! cargo test --test backend --features rust-crypto
//! cargo test --test backend --no-default-features --features rust-crypto,axum
//! ```

use std::convert::Infallible;
use std::time::Duration;

use http::{Request, Response, StatusCode, header};
use serde::{Deserialize, Serialize};
use tower::{ServiceExt, service_fn};
use tower_jwt_auth::issue::TokenIssuer;
use tower_jwt_auth::{Algorithm, Claims, JwtAuthLayer};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-secret";
const ISSUER: &str = "https://id.test";
const AUDIENCE: &str = "test-api";

/// HS256 over `{"alg":"HS256","typ":"JWT"}.{"sub":"alice"}` with `SECRET`, no `exp`, computed
/// offline with Python's `hmac`/`hashlib`/`base64`:
///
/// ```text
/// h = b64url(b'{"alg":"HS256","typ":"JWT"}'); p = b64url(b'{"sub":"alice"}')
/// s = b64url(hmac.new(SECRET, f"{h}.{p}".encode(), hashlib.sha256).digest())
/// ```
const OFFLINE_TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
                             eyJzdWIiOiJhbGljZSJ9.\
                             vv-i5cRwGqC4k_lGYuoCdpHlb9jUXGKjtno76n3lvv4";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Roles {
    #[serde(default)]
    roles: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct Subject {
    sub: String,
    #[serde(default)]
    roles: Vec<String>,
}

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR")))
        .expect("test data file")
}

/// Sends one request through `layer` around a handler that answers 200 with the subject it
/// found in the extensions. Returns the status and the body (the subject, or empty).
async fn call(layer: &JwtAuthLayer<Subject>, token: Option<&str>) -> (StatusCode, String) {
    let inner = service_fn(|req: Request<()>| async move {
        let claims = req
            .extensions()
            .get::<Claims<Subject>>()
            .expect("the layer let the request through, so it inserted claims");
        let body = format!("{}|{}", claims.sub, claims.roles.join(","));
        Ok::<_, Infallible>(Response::new(body))
    });
    let mut req = Request::builder().uri("/me");
    if let Some(token) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let res = tower::Layer::layer(layer, inner)
        .oneshot(req.body(()).unwrap())
        .await
        .unwrap();
    (res.status(), res.into_body())
}

#[test]
fn backend_name_follows_the_features() {
    let expected = if cfg!(feature = "aws-lc-rs") {
        // Also with both features on: aws-lc-rs wins, deterministically.
        "aws-lc-rs"
    } else {
        "rust-crypto"
    };
    assert_eq!(tower_jwt_auth::backend_name(), expected);
}

#[tokio::test]
async fn offline_hs256_token_verifies_through_the_layer() {
    let layer = JwtAuthLayer::<Subject>::builder()
        .hs256(SECRET)
        .allow_missing_exp()
        .build()
        .unwrap();
    assert_eq!(
        call(&layer, Some(OFFLINE_TOKEN)).await,
        (StatusCode::OK, "alice|".to_owned())
    );

    // A flipped signature byte, and a signature made with another secret, are refused:
    // the 200 above came from a real HMAC check.
    let (signing_input, sig) = OFFLINE_TOKEN.rsplit_once('.').unwrap();
    let first = if sig.starts_with('A') { 'B' } else { 'A' };
    let tampered = format!("{signing_input}.{first}{}", &sig[1..]);
    assert_eq!(
        call(&layer, Some(&tampered)).await.0,
        StatusCode::UNAUTHORIZED
    );
    let other = JwtAuthLayer::<Subject>::builder()
        .hs256(b"another secret of at least thirty-two bytes")
        .allow_missing_exp()
        .build()
        .unwrap();
    assert_eq!(
        call(&other, Some(OFFLINE_TOKEN)).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Without allow_missing_exp the same token lacks a required claim.
    let strict = JwtAuthLayer::<Subject>::builder()
        .hs256(SECRET)
        .build()
        .unwrap();
    assert_eq!(
        call(&strict, Some(OFFLINE_TOKEN)).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn issued_hs256_token_verifies_through_the_layer() {
    let issuer = TokenIssuer::hs256(SECRET)
        .unwrap()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .lifetime(Duration::from_secs(300));
    let issued = issuer
        .issue(
            "alice",
            &Roles {
                roles: vec!["admin".into()],
            },
        )
        .unwrap();
    assert_eq!(issued.expires_in, 300);

    let layer = JwtAuthLayer::<Subject>::builder()
        .hs256(SECRET)
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .token_type("at+jwt")
        .build()
        .unwrap();
    assert_eq!(
        call(&layer, Some(&issued.token)).await,
        (StatusCode::OK, "alice|admin".to_owned())
    );
    assert_eq!(call(&layer, None).await.0, StatusCode::UNAUTHORIZED);

    // The offline token and the issued one agree on the HMAC: the issued token's signature,
    // re-checked with a layer that has no policy beyond the key, still verifies.
    let bare = JwtAuthLayer::<Subject>::builder()
        .hs256(SECRET)
        .build()
        .unwrap();
    assert_eq!(call(&bare, Some(&issued.token)).await.0, StatusCode::OK);
}

/// RSA, ECDSA and EdDSA: signing (`TokenIssuer::pem`) and verifying go through the crate's
/// provider, and so does the RSA key-size check at build time (`key_utils`), which would panic
/// through jsonwebtoken's global default with both features on.
#[tokio::test]
async fn issued_asymmetric_tokens_verify_through_the_layer() {
    let cases = [
        (
            Algorithm::RS256,
            "rsa_2048_private.pem",
            "rsa_2048_public.pem",
        ),
        (
            Algorithm::ES256,
            "ec_p256_private.pem",
            "ec_p256_public.pem",
        ),
        (
            Algorithm::EdDSA,
            "ed25519_private.pem",
            "ed25519_public.pem",
        ),
    ];
    for (alg, private, public) in cases {
        let issuer = TokenIssuer::pem(alg, data(private))
            .unwrap_or_else(|e| panic!("{alg:?} issuer: {e}"))
            .kid("k1")
            .issuer(ISSUER)
            .audience(AUDIENCE);
        let token = issuer.issue("bob", &Roles { roles: vec![] }).unwrap().token;
        let builder = JwtAuthLayer::<Subject>::builder()
            .issuer(ISSUER)
            .audience(AUDIENCE);
        let builder = match alg {
            Algorithm::RS256 => builder.rs256_pem(data(public)),
            Algorithm::ES256 => builder.es256_pem(data(public)),
            _ => builder.eddsa_pem(data(public)),
        };
        let layer = builder
            .build()
            .unwrap_or_else(|e| panic!("{alg:?} layer: {e}"));
        assert_eq!(
            call(&layer, Some(&token)).await,
            (StatusCode::OK, "bob|".to_owned()),
            "{alg:?}"
        );

        // The other RSA key pair must not verify an RS256 token.
        if alg == Algorithm::RS256 {
            let wrong = JwtAuthLayer::<Subject>::builder()
                .rs256_pem(data("rsa_2048_b_public.pem"))
                .issuer(ISSUER)
                .audience(AUDIENCE)
                .build()
                .unwrap();
            assert_eq!(call(&wrong, Some(&token)).await.0, StatusCode::UNAUTHORIZED);
        }
    }
}

/// The build-time RSA size check runs through the crate's provider too: a 1024-bit key is a
/// `WeakRsaKey` error, not a panic.
#[test]
fn weak_rsa_key_is_a_build_error_not_a_panic() {
    let err = JwtAuthLayer::<Subject>::builder()
        .rs256_pem(data("rsa_1024_public.pem"))
        .build()
        .unwrap_err();
    assert!(
        matches!(err, tower_jwt_auth::BuildError::WeakRsaKey { bits: 1024 }),
        "{err}"
    );
}
