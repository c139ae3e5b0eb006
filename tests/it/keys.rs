//! Every algorithm end to end (PEM, DER, static JWKS), `kid` selection, JWKS leniency, and
//! the configurations `build` must refuse.

use crate::common;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::*;
use jsonwebtoken::EncodingKey;
use jsonwebtoken::jwk::Jwk;
use serde_json::{Value, json};
use tower_jwt_auth::{Algorithm, AuthError, BuildError, Jwks, JwtAuthLayer, Key};

// ---------------------------------------------------------------------------------------------
// Keys and tokens
// ---------------------------------------------------------------------------------------------

const HMAC: [Algorithm; 3] = [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

fn name(alg: Algorithm) -> String {
    format!("{alg:?}")
}

/// An HMAC secret of exactly the minimum length for `alg`.
fn secret(alg: Algorithm) -> Vec<u8> {
    let len = match alg {
        Algorithm::HS256 => 32,
        Algorithm::HS384 => 48,
        _ => 64,
    };
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

fn signing_key(alg: Algorithm) -> EncodingKey {
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            EncodingKey::from_secret(&secret(alg))
        }
        Algorithm::ES256 => EncodingKey::from_ec_pem(&data("ec_p256_private.pem")).unwrap(),
        Algorithm::ES384 => EncodingKey::from_ec_pem(&data("ec_p384_private.pem")).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&data("ed25519_private.pem")).unwrap(),
        _ => rsa_key(),
    }
}

fn rsa_b_key() -> EncodingKey {
    private_key("rsa-b").0
}

fn public_pem(alg: Algorithm) -> Vec<u8> {
    data(match alg {
        Algorithm::ES256 => "ec_p256_public.pem",
        Algorithm::ES384 => "ec_p384_public.pem",
        Algorithm::EdDSA => "ed25519_public.pem",
        _ => "rsa_2048_public.pem",
    })
}

/// The SubjectPublicKeyInfo DER inside a `PUBLIC KEY` PEM file.
fn spki_der(file: &str) -> Vec<u8> {
    let pem = String::from_utf8(data(file)).unwrap();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(b64).unwrap()
}

/// The DER form `Key::der` takes: PKCS#1 `RSAPublicKey` (made with
/// `openssl rsa -pubin -RSAPublicKey_out -outform DER`), the uncompressed EC point, or the
/// raw Ed25519 key (the tail of the SubjectPublicKeyInfo).
fn public_der(alg: Algorithm) -> Vec<u8> {
    let tail = |file: &str, n: usize| {
        let der = spki_der(file);
        der[der.len() - n..].to_vec()
    };
    match alg {
        Algorithm::ES256 => tail("ec_p256_public.pem", 65),
        Algorithm::ES384 => tail("ec_p384_public.pem", 97),
        Algorithm::EdDSA => tail("ed25519_public.pem", 32),
        _ => data("rsa_2048_public_pkcs1.der"),
    }
}

/// Minimal claims for layers without issuer/audience.
fn claims() -> Value {
    json!({ "sub": "alice", "iat": now(), "exp": now() + 600 })
}

fn token(alg: Algorithm, kid: Option<&str>, key: &EncodingKey) -> String {
    sign_jwt(alg, key, kid, &claims())
}

fn jwk(alg: Algorithm, key: &EncodingKey, kid: Option<&str>) -> Value {
    let mut jwk = public_jwk(alg, key);
    if let Some(kid) = kid {
        jwk["kid"] = json!(kid);
    }
    jwk
}

/// The public JWK (no `alg`, no `kid`) of an asymmetric signing key.
fn bare_jwk(alg: Algorithm, key: &EncodingKey) -> Value {
    let mut jwk = jwk(alg, key, None);
    jwk.as_object_mut().unwrap().remove("alg");
    jwk
}

fn jwks_doc(keys: Vec<Value>) -> String {
    json!({ "keys": keys }).to_string()
}

fn build(builder: tower_jwt_auth::JwtAuthBuilder<TestClaims>) -> JwtAuthLayer<TestClaims> {
    builder.build().expect("valid configuration")
}

fn builder() -> tower_jwt_auth::JwtAuthBuilder<TestClaims> {
    JwtAuthLayer::<TestClaims>::builder()
}

// ---------------------------------------------------------------------------------------------
// Every algorithm end to end
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_hmac_algorithm_end_to_end() {
    for alg in HMAC {
        let s = secret(alg);
        let via_shortcut = match alg {
            Algorithm::HS256 => builder().hs256(&s),
            Algorithm::HS384 => builder().hs384(&s),
            _ => builder().hs512(&s),
        };
        for layer in [
            build(via_shortcut),
            build(builder().key(Key::hmac(alg, &s))),
        ] {
            let t = token(alg, None, &signing_key(alg));
            assert_accepted(&send_bearer(&layer, &t).await.about(&name(alg)));
            assert_invalid_token(
                &send_bearer(&layer, &tamper_signature(&t))
                    .await
                    .about(&name(alg)),
                &[AuthError::InvalidSignature],
            );
            // The other HMAC algorithms, with the same secret, are not accepted.
            for other in HMAC.into_iter().filter(|a| *a != alg) {
                let t = token(other, None, &signing_key(alg));
                assert_invalid_token(
                    &send_bearer(&layer, &t)
                        .await
                        .about(&format!("{other:?} token on a {alg:?} layer")),
                    &[AuthError::AlgorithmNotAllowed],
                );
            }
        }
    }
}

async fn check_asymmetric(layer: &JwtAuthLayer<TestClaims>, alg: Algorithm, how: &str) {
    let what = format!("{alg:?} from {how}");
    let t = token(alg, None, &signing_key(alg));
    assert_accepted(&send_bearer(layer, &t).await.about(&what));
    assert_invalid_token(
        &send_bearer(layer, &tamper_signature(&t)).await.about(&what),
        &[AuthError::InvalidSignature],
    );
    // Only the key's own algorithm: the other RSA variants are refused, even by the same key.
    if matches!(jwt(alg).family(), jsonwebtoken::AlgorithmFamily::Rsa) {
        for other in ASYMMETRIC[..6].iter().filter(|a| **a != alg) {
            let t = token(*other, None, &signing_key(*other));
            assert_invalid_token(
                &send_bearer(layer, &t)
                    .await
                    .about(&format!("{other:?} token on {what}")),
                &[AuthError::AlgorithmNotAllowed],
            );
        }
        // Another RSA key's signature is refused.
        let t = token(alg, None, &rsa_b_key());
        assert_invalid_token(
            &send_bearer(layer, &t)
                .await
                .about(&format!("other key on {what}")),
            &[AuthError::InvalidSignature],
        );
    }
}

#[tokio::test]
async fn every_asymmetric_algorithm_from_pem() {
    for alg in ASYMMETRIC {
        let layer = build(builder().key(Key::pem(alg, public_pem(alg))));
        check_asymmetric(&layer, alg, "PEM").await;
    }
}

#[tokio::test]
async fn pem_shortcuts() {
    let cases = [
        (
            Algorithm::RS256,
            build(builder().rs256_pem(public_pem(Algorithm::RS256))),
        ),
        (
            Algorithm::ES256,
            build(builder().es256_pem(public_pem(Algorithm::ES256))),
        ),
        (
            Algorithm::EdDSA,
            build(builder().eddsa_pem(public_pem(Algorithm::EdDSA))),
        ),
    ];
    for (alg, layer) in cases {
        check_asymmetric(&layer, alg, "PEM shortcut").await;
    }
}

#[tokio::test]
async fn every_asymmetric_algorithm_from_der() {
    for alg in ASYMMETRIC {
        let layer = build(builder().key(Key::der(alg, public_der(alg))));
        check_asymmetric(&layer, alg, "DER").await;
    }
}

#[tokio::test]
async fn every_algorithm_from_static_jwks() {
    // One document for all asymmetric keys (kid = algorithm name), one for the HMAC secrets.
    let keys = ASYMMETRIC
        .iter()
        .map(|alg| jwk(*alg, &signing_key(*alg), Some(&name(*alg))))
        .collect();
    let doc = jwks_doc(keys);
    let jwks = Jwks::from_json(&doc).unwrap();
    assert_eq!((jwks.len(), jwks.skipped()), (9, 0), "{doc}");
    for layer in [
        build(builder().jwks_json(&doc)),
        build(builder().jwks(jwks)),
    ] {
        for alg in ASYMMETRIC {
            let k = signing_key(alg);
            let n = name(alg);
            assert_accepted(
                &send_bearer(&layer, &token(alg, Some(&n), &k))
                    .await
                    .about(&n),
            );
            let t = tamper_signature(&token(alg, Some(&n), &k));
            assert_invalid_token(
                &send_bearer(&layer, &t).await.about(&n),
                &[AuthError::InvalidSignature],
            );
        }
        // kid "RS256" names a key for RS256 only: a PS256 token naming it is refused.
        let t = token(Algorithm::PS256, Some("RS256"), &rsa_key());
        assert_invalid_token(
            &send_bearer(&layer, &t)
                .await
                .about("PS256 under an RS256 JWK"),
            &[],
        );
    }

    let keys = HMAC
        .iter()
        .map(|alg| jwk(*alg, &signing_key(*alg), Some(&name(*alg))))
        .collect();
    let doc = jwks_doc(keys);
    assert_eq!(Jwks::from_json(&doc).unwrap().len(), 3, "{doc}");
    let layer = build(builder().jwks_json(&doc));
    for alg in HMAC {
        let n = name(alg);
        assert_accepted(
            &send_bearer(&layer, &token(alg, Some(&n), &signing_key(alg)))
                .await
                .about(&n),
        );
    }
}

#[tokio::test]
async fn jwks_key_without_alg_follows_the_allow_list() {
    let rsa = bare_jwk(Algorithm::RS256, &rsa_key());
    let p384 = bare_jwk(Algorithm::ES384, &signing_key(Algorithm::ES384));
    let ed = bare_jwk(Algorithm::EdDSA, &signing_key(Algorithm::EdDSA));
    let doc = jwks_doc(vec![rsa, p384, ed]);

    // No allow-list: RSA verifies RS256 only, the P-384 key ES384, the OKP key EdDSA.
    let layer = build(builder().jwks_json(&doc));
    for alg in [Algorithm::RS256, Algorithm::ES384, Algorithm::EdDSA] {
        let t = token(alg, None, &signing_key(alg));
        assert_accepted(&send_bearer(&layer, &t).await.about(&name(alg)));
    }
    let t = token(Algorithm::PS256, None, &rsa_key());
    assert_invalid_token(
        &send_bearer(&layer, &t).await.about("PS256"),
        &[AuthError::AlgorithmNotAllowed],
    );

    // With an allow-list: exactly the listed RSA algorithms.
    let layer = build(
        builder()
            .jwks_json(&doc)
            .algorithms([Algorithm::PS256, Algorithm::PS512]),
    );
    for alg in [Algorithm::PS256, Algorithm::PS512] {
        assert_accepted(
            &send_bearer(&layer, &token(alg, None, &rsa_key()))
                .await
                .about(&name(alg)),
        );
    }
    for alg in [Algorithm::RS256, Algorithm::PS384, Algorithm::EdDSA] {
        let t = token(alg, None, &signing_key(alg));
        assert_invalid_token(
            &send_bearer(&layer, &t).await.about(&name(alg)),
            &[AuthError::AlgorithmNotAllowed],
        );
    }
}

/// RFC 7518 §3.2: an HMAC key must be at least as long as the hash output. An `oct` JWK
/// without `alg` is offered every allowed HMAC algorithm, so its length must be checked against
/// each of them, not against HS256 only: a 32-byte key never verifies HS384 or HS512, a 47-byte
/// one never HS384.
#[tokio::test]
async fn jwks_oct_key_without_alg_verifies_only_the_hmac_algorithms_it_is_long_enough_for() {
    let oct = |kid: &str, len: usize| {
        let secret: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        let jwk = json!({ "kty": "oct", "kid": kid, "k": b64(&secret) });
        (jwk, EncodingKey::from_secret(&secret))
    };
    let (jwk32, key32) = oct("k32", 32);
    let (jwk47, key47) = oct("k47", 47);
    let (jwk64, key64) = oct("k64", 64);
    let doc = jwks_doc(vec![jwk32.clone(), jwk47.clone(), jwk64]);
    let layer = build(builder().jwks_json(&doc).algorithms(HMAC));

    for (kid, key, fits) in [
        ("k32", &key32, &[Algorithm::HS256][..]),
        ("k47", &key47, &[Algorithm::HS256][..]),
        ("k64", &key64, &HMAC[..]),
    ] {
        for alg in HMAC {
            let out = send_bearer(&layer, &token(alg, Some(kid), key)).await;
            let what = format!("{alg:?} token under the {kid} oct key without alg");
            if fits.contains(&alg) {
                assert_accepted(&out.about(&what));
            } else {
                assert_invalid_token(&out.about(&what), &[AuthError::UnknownKey]);
            }
        }
    }
    // Without a kid, a token signed with a short key finds only the long key, which refuses it.
    for alg in [Algorithm::HS384, Algorithm::HS512] {
        let out = send_bearer(&layer, &token(alg, None, &key32)).await;
        assert_invalid_token(
            &out.about(&format!("{alg:?} token without kid, 32-byte key")),
            &[],
        );
    }
    // `verify`, outside any tower stack, refuses the same way.
    let hs512 = token(Algorithm::HS512, Some("k32"), &key32);
    assert_eq!(layer.verify(&hs512).unwrap_err(), AuthError::UnknownKey);

    // Too short for every allowed HMAC algorithm: a build error naming the weakest of them.
    for (jwk, allowed, (alg, len, min)) in [
        (&jwk32, &[Algorithm::HS512][..], (Algorithm::HS512, 32, 64)),
        (&jwk32, &HMAC[1..], (Algorithm::HS384, 32, 48)),
        (&jwk47, &HMAC[1..], (Algorithm::HS384, 47, 48)),
    ] {
        let b = builder()
            .jwks_json(&jwks_doc(vec![jwk.clone()]))
            .algorithms(allowed.iter().copied());
        match b.build().unwrap_err() {
            BuildError::WeakSecret {
                alg: a,
                len: l,
                min: m,
            } => assert_eq!((a, l, m), (alg, len, min), "{allowed:?}"),
            other => panic!("{allowed:?}: {other:?}"),
        }
    }
    // Without an allow-list such a key verifies HS256 only.
    let layer = build(builder().jwks_json(&jwks_doc(vec![jwk32])));
    let out = send_bearer(&layer, &token(Algorithm::HS256, Some("k32"), &key32)).await;
    assert_accepted(&out.about("HS256 without allow-list"));
    let out = send_bearer(&layer, &token(Algorithm::HS512, Some("k32"), &key32)).await;
    assert_invalid_token(
        &out.about("HS512 without allow-list"),
        &[AuthError::AlgorithmNotAllowed],
    );
}

// ---------------------------------------------------------------------------------------------
// kid selection
// ---------------------------------------------------------------------------------------------

async fn check_kid_selection(layer: &JwtAuthLayer<TestClaims>, how: &str) {
    let (a, b) = (rsa_key(), rsa_b_key());
    let rs = Algorithm::RS256;
    assert_accepted(
        &send_bearer(layer, &token(rs, Some("k1"), &a))
            .await
            .about(how),
    );
    assert_accepted(
        &send_bearer(layer, &token(rs, Some("k2"), &b))
            .await
            .about(how),
    );
    // Swapped kids: the named key decides, and it does not verify.
    for (kid, key) in [("k2", &a), ("k1", &b)] {
        let out = send_bearer(layer, &token(rs, Some(kid), key)).await;
        assert_invalid_token(&out.about(how), &[AuthError::InvalidSignature]);
    }
    // Unknown kid.
    for kid in ["k3", "", "K1", "k1 "] {
        let out = send_bearer(layer, &token(rs, Some(kid), &a)).await;
        assert_invalid_token(
            &out.about(&format!("{how}, kid {kid:?}")),
            &[AuthError::UnknownKey],
        );
    }
}

#[tokio::test]
async fn two_rsa_keys_selected_by_kid() {
    let layer = build(
        builder()
            .key(Key::pem(Algorithm::RS256, data("rsa_2048_public.pem")).kid("k1"))
            .key(Key::pem(Algorithm::RS256, data("rsa_2048_b_public.pem")).kid("k2")),
    );
    check_kid_selection(&layer, "Key::pem").await;
}

#[tokio::test]
async fn two_rsa_keys_selected_by_kid_from_jwks() {
    let doc = jwks_doc(vec![
        jwk(Algorithm::RS256, &rsa_key(), Some("k1")),
        jwk(Algorithm::RS256, &rsa_b_key(), Some("k2")),
    ]);
    let layer = build(builder().jwks_json(&doc));
    check_kid_selection(&layer, "JWKS").await;
}

// ---------------------------------------------------------------------------------------------
// JWKS leniency
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn jwks_skips_encryption_keys() {
    let mut enc = jwk(Algorithm::RS256, &rsa_b_key(), Some("enc"));
    enc["use"] = json!("enc");
    let mut sig = jwk(Algorithm::RS256, &rsa_key(), Some("sig"));
    sig["use"] = json!("sig");
    let doc = jwks_doc(vec![enc, sig]);
    let jwks = Jwks::from_json(&doc).unwrap();
    assert_eq!((jwks.len(), jwks.skipped()), (1, 1));

    let layer = build(builder().jwks(jwks));
    let rs = Algorithm::RS256;
    assert_accepted(
        &send_bearer(&layer, &token(rs, Some("sig"), &rsa_key()))
            .await
            .about("sig"),
    );
    let out = send_bearer(&layer, &token(rs, Some("enc"), &rsa_b_key())).await;
    assert_invalid_token(&out.about("enc key"), &[AuthError::UnknownKey]);

    // A set of only encryption keys gives no key at all.
    let mut enc = jwk(Algorithm::RS256, &rsa_key(), Some("enc"));
    enc["use"] = json!("enc");
    let err = builder()
        .jwks_json(&jwks_doc(vec![enc]))
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::NoKeys), "{err:?}");
}

#[tokio::test]
async fn jwks_malformed_key_does_not_discard_the_set() {
    let good = jwk(Algorithm::RS256, &rsa_key(), Some("good"));
    let doc = jwks_doc(vec![
        json!({"kty": "RSA", "kid": "bad-n", "n": "!!!not base64!!!", "e": "AQAB"}),
        json!({"kty": "EC", "kid": "no-y", "crv": "P-256", "x": "AAAA"}),
        json!({"kid": "no-kty"}),
        json!({"kty": "bogus", "kid": "bogus"}),
        json!(42),
        json!("a string"),
        good,
        json!({"kty": "OKP", "kid": "x448", "crv": "X25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}),
    ]);
    let jwks = Jwks::from_json(&doc).unwrap();
    assert_eq!(jwks.len(), 1);
    assert_eq!(jwks.skipped(), 7);
    let layer = build(builder().jwks(jwks));
    assert_accepted(
        &send_bearer(&layer, &token(Algorithm::RS256, Some("good"), &rsa_key()))
            .await
            .about("good key"),
    );
    let out = send_bearer(&layer, &token(Algorithm::RS256, Some("bad-n"), &rsa_key())).await;
    assert_invalid_token(&out.about("bad key"), &[AuthError::UnknownKey]);
}

#[tokio::test]
async fn jwks_alg_disagreeing_with_kty_is_skipped() {
    let with_alg = |mut v: Value, kid: &str, alg: &str| {
        v["kid"] = json!(kid);
        v["alg"] = json!(alg);
        v
    };
    let rsa = bare_jwk(Algorithm::RS256, &rsa_key());
    let p256 = bare_jwk(Algorithm::ES256, &signing_key(Algorithm::ES256));
    let p384 = bare_jwk(Algorithm::ES384, &signing_key(Algorithm::ES384));
    let ed = bare_jwk(Algorithm::EdDSA, &signing_key(Algorithm::EdDSA));
    let oct = jwk(Algorithm::HS256, &signing_key(Algorithm::HS256), None);
    let doc = jwks_doc(vec![
        with_alg(rsa.clone(), "rsa-as-es256", "ES256"),
        with_alg(rsa.clone(), "rsa-as-hs256", "HS256"),
        with_alg(rsa.clone(), "rsa-as-eddsa", "EdDSA"),
        with_alg(p256.clone(), "p256-as-rs256", "RS256"),
        with_alg(p256.clone(), "p256-as-es384", "ES384"),
        with_alg(p384.clone(), "p384-as-es256", "ES256"),
        with_alg(ed.clone(), "ed-as-es256", "ES256"),
        with_alg(oct, "oct-as-rs256", "RS256"),
        with_alg(rsa.clone(), "rsa-as-rsa-oaep", "RSA-OAEP"),
        with_alg(rsa, "rsa", "RS256"),
        with_alg(p256, "p256", "ES256"),
    ]);
    let jwks = Jwks::from_json(&doc).unwrap();
    assert_eq!((jwks.len(), jwks.skipped()), (2, 9));
    let layer = build(builder().jwks(jwks));
    assert_accepted(
        &send_bearer(&layer, &token(Algorithm::RS256, Some("rsa"), &rsa_key()))
            .await
            .about("rsa"),
    );
    let es = signing_key(Algorithm::ES256);
    assert_accepted(
        &send_bearer(&layer, &token(Algorithm::ES256, Some("p256"), &es))
            .await
            .about("p256"),
    );
    let out = send_bearer(&layer, &token(Algorithm::ES256, Some("p256-as-es384"), &es)).await;
    assert_invalid_token(&out.about("skipped kid"), &[AuthError::UnknownKey]);
}

#[tokio::test]
async fn jwks_skips_weak_keys() {
    let rsa_1024 = {
        // n and e of rsa_1024_public.pem, through jsonwebtoken's PEM reader and JWK writer.
        let dk = jsonwebtoken::DecodingKey::from_rsa_pem(&data("rsa_1024_public.pem")).unwrap();
        install_provider();
        let mut v = serde_json::to_value(Jwk::from_decoding_key(&dk, None).unwrap()).unwrap();
        v["kid"] = json!("weak-rsa");
        v
    };
    let short_oct = json!({"kty": "oct", "kid": "short", "alg": "HS256", "k": "c2VjcmV0"});
    let doc = jwks_doc(vec![
        rsa_1024,
        jwk(Algorithm::RS256, &rsa_key(), Some("ok")),
    ]);
    let jwks = Jwks::from_json(&doc).unwrap();
    assert_eq!((jwks.len(), jwks.skipped()), (1, 1), "{doc}");
    let jwks = Jwks::from_json(&jwks_doc(vec![short_oct])).unwrap();
    assert_eq!((jwks.len(), jwks.skipped()), (0, 1));
}

#[test]
fn jwks_document_errors() {
    for doc in [
        "",
        "not json",
        "[]",
        "{}",
        r#"{"keys": {}}"#,
        r#"{"keys": 1}"#,
    ] {
        let err = Jwks::from_json(doc).unwrap_err();
        assert!(matches!(err, BuildError::InvalidJwks(_)), "{doc}: {err:?}");
        let err = builder().jwks_json(doc).build().unwrap_err();
        assert!(matches!(err, BuildError::InvalidJwks(_)), "{doc}: {err:?}");
    }
    let empty = Jwks::from_json(r#"{"keys": []}"#).unwrap();
    assert!(empty.is_empty());
    assert_eq!(empty.skipped(), 0);
}

// ---------------------------------------------------------------------------------------------
// Build errors
// ---------------------------------------------------------------------------------------------

#[test]
fn short_hmac_secrets_are_refused() {
    for (alg, min) in [
        (Algorithm::HS256, 32),
        (Algorithm::HS384, 48),
        (Algorithm::HS512, 64),
    ] {
        let short = vec![b'k'; min - 1];
        let via_shortcut = |s: &[u8]| match alg {
            Algorithm::HS256 => builder().hs256(s),
            Algorithm::HS384 => builder().hs384(s),
            _ => builder().hs512(s),
        };
        for b in [via_shortcut(&short), builder().key(Key::hmac(alg, &short))] {
            match b.build().unwrap_err() {
                BuildError::WeakSecret {
                    alg: a,
                    len,
                    min: m,
                } => {
                    assert_eq!((a, len, m), (alg, min - 1, min));
                }
                other => panic!("{alg:?}: {other:?}"),
            }
        }
        let ok = vec![b'k'; min];
        via_shortcut(&ok).build().unwrap();
        builder().key(Key::hmac(alg, &ok)).build().unwrap();
    }
    let err = builder().hs256(b"").build().unwrap_err();
    assert!(
        matches!(err, BuildError::WeakSecret { len: 0, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("RFC 7518"), "{err}");
}

#[test]
fn rsa_1024_is_refused() {
    let pem = data("rsa_1024_public.pem");
    for alg in &ASYMMETRIC[..6] {
        let err = builder().key(Key::pem(*alg, &pem)).build().unwrap_err();
        assert!(
            matches!(err, BuildError::WeakRsaKey { bits: 1024 }),
            "{alg:?}: {err:?}"
        );
    }
    let err = builder().rs256_pem(&pem).build().unwrap_err();
    assert!(
        matches!(err, BuildError::WeakRsaKey { bits: 1024 }),
        "{err:?}"
    );
    // Together with a good key it still fails: a weak key is never silently dropped.
    let err = builder()
        .rs256_pem(data("rsa_2048_public.pem"))
        .key(Key::pem(Algorithm::RS256, &pem).kid("weak"))
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::WeakRsaKey { .. }), "{err:?}");
}

#[test]
fn hmac_and_rsa_mixed_refused() {
    let rsa_pem = data("rsa_2048_public.pem");
    let rsa_jwks = jwks_doc(vec![jwk(Algorithm::RS256, &rsa_key(), Some("r"))]);
    let hmac_jwks = jwks_doc(vec![jwk(
        Algorithm::HS256,
        &signing_key(Algorithm::HS256),
        Some("h"),
    )]);
    let cases = [
        builder().hs256(SECRET).rs256_pem(&rsa_pem),
        builder().rs256_pem(&rsa_pem).hs256(SECRET),
        builder()
            .hs256(SECRET)
            .es256_pem(public_pem(Algorithm::ES256)),
        builder().hs256(SECRET).jwks_json(&rsa_jwks),
        builder().rs256_pem(&rsa_pem).jwks_json(&hmac_jwks),
        builder()
            .hs256(SECRET)
            .rs256_pem(&rsa_pem)
            .algorithms([Algorithm::HS256, Algorithm::RS256]),
    ];
    for (i, b) in cases.into_iter().enumerate() {
        let err = b.build().unwrap_err();
        assert!(
            matches!(err, BuildError::MixedKeyFamilies),
            "case {i}: {err:?}"
        );
    }
}

#[test]
fn pem_key_for_hs256_refused() {
    let pem = data("rsa_2048_public.pem");
    for alg in HMAC {
        assert!(
            builder().key(Key::pem(alg, &pem)).build().is_err(),
            "{alg:?}"
        );
        let der = data("rsa_2048_public_pkcs1.der");
        assert!(
            builder().key(Key::der(alg, &der)).build().is_err(),
            "{alg:?}"
        );
    }
    // The public key's PEM text handed over as the HMAC secret itself: anyone who can read
    // the public key could sign with it. The text is long enough for every HMAC algorithm,
    // so the PEM check alone refuses it, whichever way the secret arrives.
    let text = String::from_utf8(pem.clone()).unwrap();
    assert!(text.len() >= 64);
    for secret in [text.clone(), format!("\n  {text}")] {
        let mut builders: Vec<_> = HMAC
            .into_iter()
            .map(|alg| (alg, builder().key(Key::hmac(alg, &secret))))
            .collect();
        builders.push((Algorithm::HS256, builder().hs256(&secret)));
        builders.push((
            Algorithm::HS256,
            builder().key(Key::jwk(
                Algorithm::HS256,
                &json!({ "kty": "oct", "k": URL_SAFE_NO_PAD.encode(&secret) }).to_string(),
            )),
        ));
        for (alg, b) in builders {
            let err = b.build().unwrap_err();
            assert!(
                matches!(err, BuildError::KeyAlgorithmMismatch { alg: got } if got == alg),
                "{alg:?}, PEM text as the secret: {err:?}"
            );
        }
    }
    // A public key handed over as a JWK of the wrong family.
    let rsa_jwk = jwk(Algorithm::RS256, &rsa_key(), None).to_string();
    let err = builder()
        .key(Key::jwk(Algorithm::HS256, &rsa_jwk))
        .build()
        .unwrap_err();
    assert!(
        matches!(
            err,
            BuildError::KeyAlgorithmMismatch {
                alg: Algorithm::HS256
            }
        ),
        "{err:?}"
    );
}

/// `BuildError::KeyAlgorithmMismatch` is documented as the error for "a PEM public key for
/// HS256".
#[test]
fn pem_key_for_hs256_is_a_key_algorithm_mismatch() {
    let err = builder()
        .key(Key::pem(Algorithm::HS256, data("rsa_2048_public.pem")))
        .build()
        .unwrap_err();
    assert!(
        matches!(
            err,
            BuildError::KeyAlgorithmMismatch {
                alg: Algorithm::HS256
            }
        ),
        "{err:?}"
    );
}

#[test]
fn es384_alg_with_p256_key_refused() {
    // Each EC key declared for the other curve's algorithm, as PEM and as DER.
    for (alg, key) in [
        (
            Algorithm::ES384,
            Key::pem(Algorithm::ES384, public_pem(Algorithm::ES256)),
        ),
        (
            Algorithm::ES256,
            Key::pem(Algorithm::ES256, public_pem(Algorithm::ES384)),
        ),
        (
            Algorithm::ES384,
            Key::der(Algorithm::ES384, public_der(Algorithm::ES256)),
        ),
    ] {
        let err = builder().key(key).build().unwrap_err();
        assert!(
            matches!(err, BuildError::KeyAlgorithmMismatch { alg: got } if got == alg),
            "{alg:?}: {err:?}"
        );
    }
}

#[test]
fn empty_builder_refused() {
    let err = builder().build().unwrap_err();
    assert!(matches!(err, BuildError::NoKeys), "{err:?}");
    let err = builder().jwks_json(r#"{"keys": []}"#).build().unwrap_err();
    assert!(matches!(err, BuildError::NoKeys), "{err:?}");
}

#[test]
fn algorithms_rs256_with_only_hmac_key_refused() {
    let err = builder()
        .hs256(SECRET)
        .algorithms([Algorithm::RS256])
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::NoUsableAlgorithm), "{err:?}");
    let err = builder().hs256(SECRET).algorithms([]).build().unwrap_err();
    assert!(matches!(err, BuildError::NoUsableAlgorithm), "{err:?}");
}

#[test]
fn invalid_cookie_name_refused() {
    for name in ["", "a b", "a;b", "a=b", "a,b", "at\"", "tök"] {
        let err = builder()
            .hs256(SECRET)
            .token_from_cookie(name)
            .build()
            .unwrap_err();
        assert!(
            matches!(err, BuildError::InvalidSource(_)),
            "{name:?}: {err:?}"
        );
    }
    builder()
        .hs256(SECRET)
        .token_from_cookie("__Host-access_token")
        .build()
        .unwrap();
}

/// RFC 7518 §3.3 asks for 2048 bits or more; a 2044-bit modulus is 256 bytes long but is
/// not a 2048-bit key.
#[test]
fn rsa_2044_bits_is_refused() {
    let pem = data("rsa_2044_public.pem");
    let err = builder().rs256_pem(&pem).build().unwrap_err();
    assert!(
        matches!(err, BuildError::WeakRsaKey { bits: 2044 }),
        "{err:?}"
    );
}

#[test]
fn jwks_rsa_2044_bits_is_skipped() {
    let pem = data("rsa_2044_public.pem");
    let dk = jsonwebtoken::DecodingKey::from_rsa_pem(&pem).unwrap();
    install_provider();
    let mut jwk = serde_json::to_value(Jwk::from_decoding_key(&dk, None).unwrap()).unwrap();
    jwk["kid"] = json!("w");
    let jwks = Jwks::from_json(&jwks_doc(vec![jwk])).unwrap();
    assert_eq!((jwks.len(), jwks.skipped()), (0, 1));
}

/// `Key::kid`: "Tokens whose header names this kid are verified with this key". A token
/// naming `k1` must not be verified by some other key just because `k1` is for another
/// algorithm.
#[tokio::test]
async fn kid_named_by_a_key_is_never_served_by_another_key() {
    let layer = build(
        builder()
            .key(Key::pem(Algorithm::RS256, data("rsa_2048_public.pem")).kid("k1"))
            .key(Key::pem(Algorithm::PS256, data("rsa_2048_b_public.pem"))),
    );
    // Sanity: each key serves its own tokens.
    let a = token(Algorithm::RS256, Some("k1"), &rsa_key());
    assert_accepted(&send_bearer(&layer, &a).await.about("k1"));
    let b = token(Algorithm::PS256, None, &rsa_b_key());
    assert_accepted(&send_bearer(&layer, &b).await.about("kid-less PS256 key"));
    // Names k1 but is signed by the kid-less key, with the kid-less key's algorithm.
    let t = token(Algorithm::PS256, Some("k1"), &rsa_b_key());
    assert_invalid_token(
        &send_bearer(&layer, &t).await.about("PS256 token naming k1"),
        &[],
    );

    // The same with a JWKS document.
    let mut ps = jwk(Algorithm::PS256, &rsa_b_key(), None);
    ps.as_object_mut().unwrap().remove("kid");
    let doc = jwks_doc(vec![jwk(Algorithm::RS256, &rsa_key(), Some("k1")), ps]);
    let layer = build(builder().jwks_json(&doc));
    assert_accepted(&send_bearer(&layer, &a).await.about("k1 (JWKS)"));
    assert_invalid_token(
        &send_bearer(&layer, &t)
            .await
            .about("PS256 token naming k1 (JWKS)"),
        &[],
    );
}
