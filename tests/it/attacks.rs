//! One test per known attack on JWT verification. Each rejected request must get the right
//! status, the right RFC 6750 error code (and, where only one reason fits, the right
//! `error_description`), and must never reach the inner service.

use crate::common;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use common::*;
use http::{Request, StatusCode, header};
use jsonwebtoken::EncodingKey;
use serde_json::{Value, json};
use tower_jwt_auth::{Algorithm, AuthError, JwtAuthLayer, Key};

// ---------------------------------------------------------------------------------------------
// Layers and keys
// ---------------------------------------------------------------------------------------------

/// HS256 with the test secret, issuer and audience.
fn hs_layer() -> JwtAuthLayer<TestClaims> {
    hs256_layer()
}

/// RS256 with the test RSA public key, issuer and audience.
fn rs_layer() -> JwtAuthLayer<TestClaims> {
    JwtAuthLayer::<TestClaims>::builder()
        .rs256_pem(data("rsa_2048_public.pem"))
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .unwrap()
}

fn attacker_key() -> EncodingKey {
    private_key("rsa-b").0
}

fn rs256_token(header: Value, claims: &Value, key: &EncodingKey) -> String {
    sign_raw(&header, claims, Algorithm::RS256, key)
}

// ---------------------------------------------------------------------------------------------
// alg "none"
// ---------------------------------------------------------------------------------------------

const NONE_SPELLINGS: [&str; 4] = ["none", "None", "NONE", "nOnE"];

fn none_parts(alg: &str) -> (String, String) {
    (
        b64(json!({ "alg": alg, "typ": "JWT" }).to_string().as_bytes()),
        b64(good_claims().to_string().as_bytes()),
    )
}

#[tokio::test]
async fn alg_none_unsigned_without_signature_segment() {
    for layer in [hs_layer(), rs_layer()] {
        for alg in NONE_SPELLINGS {
            let (h, p) = none_parts(alg);
            let out = send(&layer, bearer(&format!("{h}.{p}"))).await;
            assert_invalid_token(
                &out,
                &[AuthError::Malformed, AuthError::AlgorithmNotAllowed],
            );
        }
    }
}

#[tokio::test]
async fn alg_none_with_empty_signature() {
    for layer in [hs_layer(), rs_layer()] {
        for alg in NONE_SPELLINGS {
            // The RFC 7519 §6.1 unsecured JWT: header.payload. (empty signature)
            let (h, p) = none_parts(alg);
            let out = send(&layer, bearer(&format!("{h}.{p}."))).await;
            assert_invalid_token(
                &out,
                &[AuthError::Malformed, AuthError::AlgorithmNotAllowed],
            );
        }
    }
}

#[tokio::test]
async fn alg_none_with_a_valid_hmac_signature_attached() {
    let layer = hs_layer();
    for alg in NONE_SPELLINGS {
        let (h, p) = none_parts(alg);
        // A genuine HS256 MAC over the none-header input: only the alg decides, and it is refused.
        let token = sign_segments(&h, &p, Algorithm::HS256, &hs256_key());
        let out = send(&layer, bearer(&token)).await;
        assert_invalid_token(&out, &[AuthError::AlgorithmNotAllowed]);
    }
}

// ---------------------------------------------------------------------------------------------
// Algorithm confusion and signatures
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn algorithm_confusion_hs256_signed_with_rsa_public_key_pem() {
    let pem = data("rsa_2048_public.pem");
    let pem_trimmed = String::from_utf8(pem.clone())
        .unwrap()
        .trim_end()
        .to_owned();
    let der = data("rsa_2048_public_pkcs1.der");
    // The operator even lists HS256: with no HMAC key configured it must still be refused.
    let listing_hs256 = JwtAuthLayer::<TestClaims>::builder()
        .rs256_pem(&pem)
        .algorithms([Algorithm::RS256, Algorithm::HS256])
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .unwrap();
    for layer in [rs_layer(), listing_hs256] {
        for secret in [&pem[..], pem_trimmed.as_bytes(), &der[..]] {
            let token = sign_raw(
                &json!({"alg": "HS256", "typ": "JWT"}),
                &good_claims(),
                Algorithm::HS256,
                &EncodingKey::from_secret(secret),
            );
            let out = send(&layer, bearer(&token)).await;
            assert_invalid_token(&out, &[AuthError::AlgorithmNotAllowed]);
        }
    }
    // Sanity: the same layer accepts a genuine RS256 token.
    let token = rs256_token(json!({"alg": "RS256"}), &good_claims(), &rsa_key());
    assert_accepted(&send(&rs_layer(), bearer(&token)).await);
}

#[tokio::test]
async fn tampered_payload() {
    let forged = b64(claims_with(json!({"sub": "mallory", "roles": ["root"]}))
        .to_string()
        .as_bytes());
    let cases = [
        (hs_layer(), hs256_token(json!({}))),
        (
            rs_layer(),
            rs256_token(json!({"alg": "RS256"}), &good_claims(), &rsa_key()),
        ),
    ];
    for (layer, token) in cases {
        assert_accepted(&send(&layer, bearer(&token)).await);
        let (h, _, s) = segments(&token);
        let out = send(&layer, bearer(&format!("{h}.{forged}.{s}"))).await;
        assert_invalid_token(&out, &[AuthError::InvalidSignature]);
    }
}

#[tokio::test]
async fn stripped_signature_trailing_dot() {
    for (layer, token) in [
        (hs_layer(), hs256_token(json!({}))),
        (
            rs_layer(),
            rs256_token(json!({"alg": "RS256"}), &good_claims(), &rsa_key()),
        ),
    ] {
        let (h, p, _) = segments(&token);
        let out = send(&layer, bearer(&format!("{h}.{p}."))).await;
        assert_invalid_token(&out, &[AuthError::Malformed, AuthError::InvalidSignature]);
    }
}

#[tokio::test]
async fn signature_removed_entirely() {
    for (layer, token) in [
        (hs_layer(), hs256_token(json!({}))),
        (
            rs_layer(),
            rs256_token(json!({"alg": "RS256"}), &good_claims(), &rsa_key()),
        ),
    ] {
        let (h, p, _) = segments(&token);
        let out = send(&layer, bearer(&format!("{h}.{p}"))).await;
        assert_invalid_token(&out, &[AuthError::Malformed]);
    }
}

#[tokio::test]
async fn signature_by_a_different_key() {
    let other_secret = EncodingKey::from_secret(b"another secret, also long enough for HS256!!");
    let token = sign_raw(
        &json!({"alg": "HS256", "typ": "JWT"}),
        &good_claims(),
        Algorithm::HS256,
        &other_secret,
    );
    assert_invalid_token(
        &send(&hs_layer(), bearer(&token)).await,
        &[AuthError::InvalidSignature],
    );

    let token = rs256_token(json!({"alg": "RS256"}), &good_claims(), &attacker_key());
    assert_invalid_token(
        &send(&rs_layer(), bearer(&token)).await,
        &[AuthError::InvalidSignature],
    );
}

async fn other_hmac_alg_is_refused(alg: Algorithm, name: &str) {
    let explicit = JwtAuthLayer::<TestClaims>::builder()
        .hs256(SECRET)
        .algorithms([Algorithm::HS256])
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .unwrap();
    // Signed with the very secret the layer holds: only the algorithm is wrong.
    let token = sign_raw(
        &json!({"alg": name, "typ": "JWT"}),
        &good_claims(),
        alg,
        &hs256_key(),
    );
    for layer in [hs_layer(), explicit] {
        assert_accepted(&send(&layer, bearer(&hs256_token(json!({})))).await);
        let out = send(&layer, bearer(&token)).await;
        assert_invalid_token(&out, &[AuthError::AlgorithmNotAllowed]);
    }
}

#[tokio::test]
async fn hs384_token_when_only_hs256_allowed() {
    other_hmac_alg_is_refused(Algorithm::HS384, "HS384").await;
}

#[tokio::test]
async fn hs512_token_when_only_hs256_allowed() {
    other_hmac_alg_is_refused(Algorithm::HS512, "HS512").await;
}

// ---------------------------------------------------------------------------------------------
// Time claims
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn expired_beyond_leeway() {
    let layer = hs_layer();
    for ago in [61, 120, 3600, 1_000_000] {
        let token = hs256_token(json!({"iat": now() - ago - 600, "exp": now() - ago}));
        let out = send(&layer, bearer(&token)).await;
        assert_invalid_token(&out, &[AuthError::Expired]);
    }
    // A custom leeway is honoured too: with 5 s, 10 s ago is expired.
    let strict = JwtAuthLayer::<TestClaims>::builder()
        .hs256(SECRET)
        .leeway(Duration::from_secs(5))
        .build()
        .unwrap();
    let token = hs256_token(json!({"exp": now() - 10}));
    assert_invalid_token(&send(&strict, bearer(&token)).await, &[AuthError::Expired]);
}

#[tokio::test]
async fn expired_within_leeway_is_accepted() {
    let token = hs256_token(json!({"iat": now() - 600, "exp": now() - 30}));
    assert_accepted(&send(&hs_layer(), bearer(&token)).await);
}

#[tokio::test]
async fn nbf_in_the_future() {
    let layer = hs_layer();
    for ahead in [120, 3600] {
        let token = hs256_token(json!({"nbf": now() + ahead}));
        let out = send(&layer, bearer(&token)).await;
        assert_invalid_token(&out, &[AuthError::NotYetValid]);
    }
    // Within the 60 s leeway it is accepted.
    let token = hs256_token(json!({"nbf": now() + 30}));
    assert_accepted(&send(&layer, bearer(&token)).await);
}

// ---------------------------------------------------------------------------------------------
// iss / aud / exp types and presence
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn wrong_issuer() {
    let layer = hs_layer();
    for iss in [
        "https://evil.example",
        "https://ID.test",
        "https://id.test/",
        "https://id.tes",
        "",
    ] {
        let out = send(&layer, bearer(&hs256_token(json!({"iss": iss})))).await;
        assert_invalid_token(&out, &[AuthError::WrongIssuer]);
    }
}

#[tokio::test]
async fn wrong_audience() {
    let layer = hs_layer();
    for aud in [
        json!("other-api"),
        json!("TEST-API"),
        json!(["other-api", "third-api"]),
        json!([]),
    ] {
        let out = send(&layer, bearer(&hs256_token(json!({"aud": aud})))).await;
        assert_invalid_token(&out, &[AuthError::WrongAudience]);
    }
    // An array that contains ours is fine.
    let token = hs256_token(json!({"aud": ["other-api", AUDIENCE]}));
    assert_accepted(&send(&layer, bearer(&token)).await);
}

#[tokio::test]
async fn issuer_missing_when_configured() {
    let out = send(&hs_layer(), bearer(&hs256_token(json!({"iss": null})))).await;
    assert_invalid_token(&out, &[AuthError::MissingClaim]);
}

#[tokio::test]
async fn audience_missing_when_configured() {
    let out = send(&hs_layer(), bearer(&hs256_token(json!({"aud": null})))).await;
    assert_invalid_token(&out, &[AuthError::MissingClaim]);
}

#[tokio::test]
async fn audience_as_a_number() {
    let layer = hs_layer();
    for aud in [
        json!(1),
        json!([1]),
        json!([AUDIENCE, 2]),
        json!({"a": AUDIENCE}),
    ] {
        let out = send(&layer, bearer(&hs256_token(json!({"aud": aud})))).await;
        assert_invalid_token(&out, &[AuthError::MalformedClaims]);
    }
}

#[tokio::test]
async fn issuer_as_a_number() {
    let layer = hs_layer();
    for iss in [json!(1), json!([ISSUER]), json!(true)] {
        let out = send(&layer, bearer(&hs256_token(json!({"iss": iss})))).await;
        assert_invalid_token(&out, &[AuthError::MalformedClaims]);
    }
}

#[tokio::test]
async fn missing_exp() {
    let out = send(&hs_layer(), bearer(&hs256_token(json!({"exp": null})))).await;
    assert_invalid_token(&out, &[AuthError::MissingClaim]);
}

#[tokio::test]
async fn exp_as_a_string() {
    let layer = hs_layer();
    let future = now() + 3600;
    for exp in [json!(future.to_string()), json!([future]), json!(true)] {
        let out = send(&layer, bearer(&hs256_token(json!({"exp": exp})))).await;
        assert_invalid_token(&out, &[AuthError::MalformedClaims]);
    }
}

// ---------------------------------------------------------------------------------------------
// typ
// ---------------------------------------------------------------------------------------------

fn typed_token(typ: Option<&str>) -> String {
    let header = match typ {
        Some(t) => json!({"alg": "HS256", "typ": t}),
        None => json!({"alg": "HS256"}),
    };
    sign_raw(&header, &good_claims(), Algorithm::HS256, &hs256_key())
}

#[tokio::test]
async fn wrong_typ_when_at_jwt_required() {
    let layer = access_layer();
    for typ in [
        Some("JWT"),
        Some("application/jwt"),
        Some("id_token+jwt"),
        Some("at+jwt2"),
        Some("application/at+jwt;x=1"),
        Some("text/at+jwt"),
        Some(""),
        None,
    ] {
        let out = send(&layer, bearer(&typed_token(typ))).await;
        assert_invalid_token(&out, &[AuthError::WrongType]);
    }
}

#[tokio::test]
async fn at_jwt_typ_is_accepted() {
    let layer = access_layer();
    for typ in [
        "at+jwt",
        "application/at+jwt",
        "AT+JWT",
        "Application/At+Jwt",
    ] {
        assert_accepted(&send(&layer, bearer(&typed_token(Some(typ)))).await);
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding tricks
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn five_segments() {
    let layer = hs_layer();
    let token = hs256_token(json!({}));
    // The JWE compact shape, and a valid JWS with two extra segments.
    let jwe = format!(
        "{}.{}.{}.{}.{}",
        b64(br#"{"alg":"dir","enc":"A256GCM"}"#),
        "",
        b64(b"iv-iv-iv-iv"),
        b64(b"ciphertext"),
        b64(b"tag")
    );
    for t in [format!("{token}.{}.{}", b64(b"x"), b64(b"y")), jwe] {
        let out = send(&layer, bearer(&t)).await;
        assert_invalid_token(&out, &[AuthError::Malformed]);
    }
    // Four segments too.
    let out = send(&layer, bearer(&format!("{token}.{}", b64(b"x")))).await;
    assert_invalid_token(&out, &[AuthError::Malformed]);
}

/// A token whose three segments are base64url *with* `=` padding, properly signed over the
/// padded signing input.
fn padded_token() -> String {
    // Lengths chosen so that every segment needs padding: 16 bytes, claims of a length not a
    // multiple of 3, and the 32-byte HMAC.
    let header = r#"{"alg":"HS256" }"#;
    let mut claims = good_claims().to_string();
    while claims.len().is_multiple_of(3) {
        claims.push(' ');
    }
    let h = URL_SAFE.encode(header);
    let p = URL_SAFE.encode(&claims);
    let sig = URL_SAFE_NO_PAD
        .decode(signature(&h, &p, Algorithm::HS256, &hs256_key()))
        .unwrap();
    let token = format!("{h}.{p}.{}", URL_SAFE.encode(sig));
    let (h, p, s) = segments(&token);
    assert!(
        h.ends_with('=') && p.ends_with('=') && s.ends_with('='),
        "{token}"
    );
    token
}

#[tokio::test]
async fn base64_padding_in_signature_segment() {
    let layer = hs_layer();
    // Unpadded token with a padded signature: still a syntactically valid b64token for
    // RFC 6750 (trailing `=`), but not a compact JWS.
    let token = hs256_token(json!({}));
    let (h, p, s) = segments(&token);
    let sig = URL_SAFE_NO_PAD.decode(s).unwrap();
    let padded = format!("{h}.{p}.{}", URL_SAFE.encode(sig));
    assert!(padded.ends_with('='));
    let out = send(&layer, bearer(&padded)).await;
    assert_invalid_token(&out, &[AuthError::Malformed]);
}

#[tokio::test]
async fn base64_padding_in_every_segment() {
    // `=` inside the credential is outside RFC 6750 §2.1 `b64token` (padding only at the end):
    // a malformed request, 400 invalid_request. Either way, never accepted.
    let out = send(&hs_layer(), bearer(&padded_token())).await;
    assert_rejected(&out, StatusCode::BAD_REQUEST, "invalid_request", &[]);
    // A token that arrives without a request (`verify`, e.g. from a WebSocket message) meets
    // no RFC 6750 grammar: the compact-JWS alphabet, which has no `=`, refuses it.
    assert_eq!(
        hs_layer().verify(&padded_token()).err(),
        Some(AuthError::Malformed)
    );
}

#[tokio::test]
async fn plus_or_slash_in_segments() {
    let layer = hs_layer();
    // Find a token whose segments contain `-` or `_`, then send the same bytes in the
    // standard alphabet (`+`, `/`), which RFC 7515 §2 forbids.
    let mut converted = Vec::new();
    for i in 0.. {
        let token = hs256_token(json!({"jti": format!("id-{i}~~~???>>>")}));
        let (h, p, s) = segments(&token);
        for (idx, seg) in [h, p, s].into_iter().enumerate() {
            if seg.contains(['-', '_']) && converted.len() < 6 {
                let std_seg = STANDARD_NO_PAD.encode(URL_SAFE_NO_PAD.decode(seg).unwrap());
                let mut parts = [h.to_owned(), p.to_owned(), s.to_owned()];
                parts[idx] = std_seg;
                converted.push(parts.join("."));
            }
        }
        if converted.len() >= 6 {
            break;
        }
        assert!(i < 1000);
        // The original is accepted: only the alphabet differs.
        assert_accepted(&send(&layer, bearer(&token)).await);
    }
    for t in converted {
        assert!(t.contains(['+', '/']), "{t}");
        let out = send(&layer, bearer(&t)).await;
        assert_invalid_token(&out, &[AuthError::Malformed]);
    }
}

#[tokio::test]
async fn oversized_64_kib_token() {
    // A validly signed token of 64 KiB, over HTTP: refused before any decoding.
    let token = hs256_token(json!({"pad": "A".repeat(64 * 1024)}));
    assert!(token.len() >= 64 * 1024);
    let (url, hits) = me_server(hs_layer()).await;
    let res = client().get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(hits.count(), 0);
    // The same through the service directly, with the reason.
    let out = send(&hs_layer(), bearer(&token)).await;
    assert_invalid_token(&out, &[AuthError::TokenTooLarge]);
}

// ---------------------------------------------------------------------------------------------
// Two tokens
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn two_different_tokens() {
    let alice = hs256_token(json!({}));
    let bob = hs256_token(json!({"sub": "bob"}));

    // Over the wire: two Authorization headers.
    let (url, hits) = me_server(hs_layer()).await;
    let res = client()
        .get(&url)
        .header(header::AUTHORIZATION, format!("Bearer {alice}"))
        .header(header::AUTHORIZATION, format!("Bearer {bob}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let challenge = www_authenticate(&res).unwrap();
    assert!(
        challenge.contains("error=\"invalid_request\""),
        "{challenge}"
    );
    assert_eq!(hits.count(), 0);

    // Header and cookie, and two cookies, disagreeing.
    let layer = hs256_builder::<TestClaims>()
        .token_from_cookie("at")
        .token_from_header("x-token")
        .build()
        .unwrap();
    let requests = [
        Request::get("/")
            .header(header::AUTHORIZATION, format!("Bearer {alice}"))
            .header(header::COOKIE, format!("at={bob}")),
        Request::get("/").header(header::COOKIE, format!("at={alice}; at={bob}")),
        Request::get("/")
            .header(header::COOKIE, format!("at={alice}"))
            .header(header::COOKIE, format!("at={bob}")),
        Request::get("/")
            .header("x-token", &alice)
            .header(header::AUTHORIZATION, format!("Bearer {bob}")),
        // One of them is garbage: still two different tokens, not a pick of the good one.
        Request::get("/")
            .header(header::AUTHORIZATION, format!("Bearer {alice}"))
            .header("x-token", "a.b.c"),
    ];
    for req in requests {
        let out = send(&layer, req.body(String::new()).unwrap()).await;
        assert_rejected(
            &out,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &[AuthError::MultipleTokens],
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Header members
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn crit_header() {
    let layer = hs_layer();
    for crit in [json!(["exp"]), json!(["b64"]), json!([]), json!("x")] {
        let token = sign_raw(
            &json!({"alg": "HS256", "crit": crit, "exp": now() + 60, "b64": true}),
            &good_claims(),
            Algorithm::HS256,
            &hs256_key(),
        );
        let out = send(&layer, bearer(&token)).await;
        assert_invalid_token(&out, &[AuthError::CriticalHeader]);
    }
}

fn attacker_jwk() -> Value {
    let mut jwk = public_jwk(Algorithm::RS256, &attacker_key());
    jwk["kid"] = json!("attacker");
    assert!(jwk.get("n").is_some() && jwk.get("d").is_none(), "{jwk}");
    jwk
}

#[tokio::test]
async fn embedded_jwk_with_attackers_own_key() {
    let layer = rs_layer();
    let jwk = attacker_jwk();
    for header in [
        json!({"alg": "RS256", "jwk": jwk}),
        json!({"alg": "RS256", "kid": "attacker", "jwk": jwk}),
    ] {
        let token = rs256_token(header, &good_claims(), &attacker_key());
        let out = send(&layer, bearer(&token)).await;
        assert_invalid_token(&out, &[AuthError::EmbeddedKey]);
    }
}

#[tokio::test]
async fn jku_header() {
    let token = rs256_token(
        json!({"alg": "RS256", "kid": "attacker", "jku": "https://attacker.example/jwks.json"}),
        &good_claims(),
        &attacker_key(),
    );
    let out = send(&rs_layer(), bearer(&token)).await;
    assert_invalid_token(&out, &[AuthError::EmbeddedKey]);
}

#[tokio::test]
async fn x5u_header() {
    let token = rs256_token(
        json!({"alg": "RS256", "x5u": "https://attacker.example/cert.pem"}),
        &good_claims(),
        &attacker_key(),
    );
    let out = send(&rs_layer(), bearer(&token)).await;
    assert_invalid_token(&out, &[AuthError::EmbeddedKey]);
}

#[tokio::test]
async fn duplicate_alg_member_in_header() {
    let layer = hs_layer();
    let claims = good_claims().to_string();
    for header in [
        r#"{"alg":"HS256","alg":"none"}"#,
        r#"{"alg":"none","alg":"HS256"}"#,
        r#"{"alg":"HS256","alg":"HS256"}"#,
        r#"{"alg":"HS256","\u0061lg":"HS256"}"#,
        r#"{"alg":"HS256","typ":"JWT","typ":"at+jwt"}"#,
        r#"{"alg":"HS256","kid":"a","kid":"b"}"#,
    ] {
        let token = sign_text(header, &claims, Algorithm::HS256, &hs256_key());
        let out = send(&layer, bearer(&token)).await;
        assert_invalid_token(&out, &[AuthError::MalformedHeader]);
    }
}

#[tokio::test]
async fn duplicate_claim() {
    let layer = hs_layer();
    let (n, past, future) = (now(), now() - 3600, now() + 3600);
    let base = format!(r#""iss":"{ISSUER}","aud":"{AUDIENCE}","iat":{n}"#);
    for claims in [
        format!(r#"{{{base},"sub":"alice","sub":"admin","exp":{future}}}"#),
        format!(r#"{{{base},"sub":"alice","exp":{past},"exp":{future}}}"#),
        format!(r#"{{{base},"sub":"alice","exp":{future},"iss":"https://evil.example"}}"#),
        format!(r#"{{{base},"sub":"alice","exp":{future},"aud":"x"}}"#),
        format!(r#"{{{base},"sub":"alice","exp":{future},"roles":[],"roles":["admin"]}}"#),
        format!(r#"{{{base},"sub":"alice","exp":{future},"\u0073ub":"admin"}}"#),
    ] {
        let token = sign_text(
            r#"{"alg":"HS256"}"#,
            &claims,
            Algorithm::HS256,
            &hs256_key(),
        );
        let out = send(&layer, bearer(&token)).await;
        // Registered claims are refused by the layer's own reader; a repeated application
        // claim by serde's derive for the claims type. Both are 401 invalid_token.
        assert_invalid_token(&out, &[AuthError::MalformedClaims, AuthError::ClaimsShape]);
    }
}

#[tokio::test]
async fn exp_u64_max_with_max_lifetime() {
    let layer = hs256_builder::<TestClaims>()
        .max_lifetime(Duration::from_secs(3600))
        .build()
        .unwrap();
    assert_accepted(&send(&layer, bearer(&hs256_token(json!({"exp": now() + 1800})))).await);

    let token = hs256_token(json!({"iat": now(), "exp": u64::MAX}));
    let out = send(&layer, bearer(&token)).await;
    assert_invalid_token(&out, &[AuthError::LifetimeTooLong]);

    // Without `iat` the lifetime cannot be bounded: refused as well.
    let token = hs256_token(json!({"iat": null, "exp": u64::MAX}));
    let out = send(&layer, bearer(&token)).await;
    assert_invalid_token(&out, &[AuthError::MissingClaim, AuthError::LifetimeTooLong]);

    // Nor can `iat` be pushed forward to make room: a future `iat` is refused.
    let token = hs256_token(json!({"iat": u64::MAX - 10, "exp": u64::MAX}));
    let out = send(&layer, bearer(&token)).await;
    assert_invalid_token(&out, &[AuthError::NotYetValid]);
}

#[tokio::test]
async fn token_signed_for_another_kid() {
    let layer = JwtAuthLayer::<TestClaims>::builder()
        .key(Key::pem(Algorithm::RS256, data("rsa_2048_public.pem")).kid("k1"))
        .key(Key::pem(Algorithm::RS256, data("rsa_2048_b_public.pem")).kid("k2"))
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .unwrap();
    let key_a = rsa_key();
    let key_b = attacker_key();
    let ok = rs256_token(json!({"alg": "RS256", "kid": "k1"}), &good_claims(), &key_a);
    assert_accepted(&send(&layer, bearer(&ok)).await);

    // Signed by k1's key but naming k2 (and the reverse): the named key decides.
    for (kid, key) in [("k2", &key_a), ("k1", &key_b)] {
        let token = rs256_token(json!({"alg": "RS256", "kid": kid}), &good_claims(), key);
        let out = send(&layer, bearer(&token)).await;
        assert_invalid_token(&out, &[AuthError::InvalidSignature]);
    }
    // A kid nobody has.
    let token = rs256_token(json!({"alg": "RS256", "kid": "k3"}), &good_claims(), &key_a);
    let out = send(&layer, bearer(&token)).await;
    assert_invalid_token(&out, &[AuthError::UnknownKey]);
}

// ---------------------------------------------------------------------------------------------
// Leaks
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn response_never_contains_the_token() {
    let (url, hits) = me_server(hs_layer()).await;
    let client = client();
    let evil_iss = "https://evil.example/<script>";
    let good = hs256_token(json!({}));
    let (gh, gp, gs) = segments(&good);
    let tokens = [
        hs256_token(json!({"exp": now() - 3600})),
        hs256_token(json!({"iss": evil_iss})),
        hs256_token(json!({"aud": "secret-audience-name"})),
        format!("{gh}.{}.{gs}", b64(br#"{"sub":"mallory"}"#)),
        format!("{gh}.{gp}."),
        format!("{gh}.{gp}.{gs}.{gs}"),
        sign_raw(
            &json!({"alg": "HS256", "kid": "\"injected\", error=\"none\""}),
            &good_claims(),
            Algorithm::HS384,
            &hs256_key(),
        ),
        format!("{good}x"),
    ];
    for token in &tokens {
        let res = client.get(&url).bearer_auth(token).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let headers = format!("{:?}", res.headers());
        let body = res.text().await.unwrap();
        let mut needles: Vec<&str> = token.split('.').filter(|seg| seg.len() >= 8).collect();
        needles.extend([
            token.as_str(),
            evil_iss,
            "secret-audience-name",
            "mallory",
            "injected",
        ]);
        for needle in needles {
            assert!(
                !headers.contains(needle),
                "{needle:?} echoed in headers: {headers}"
            );
            assert!(!body.contains(needle), "{needle:?} echoed in body: {body}");
        }
    }
    // Two tokens: neither is echoed.
    let bob = hs256_token(json!({"sub": "bob"}));
    let res = client
        .get(&url)
        .header(header::AUTHORIZATION, format!("Bearer {good}"))
        .header(header::AUTHORIZATION, format!("Bearer {bob}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let headers = format!("{:?}", res.headers());
    let body = res.text().await.unwrap();
    for t in [&good, &bob] {
        let (_, p, s) = segments(t);
        for needle in [t.as_str(), p, s] {
            assert!(!headers.contains(needle) && !body.contains(needle));
        }
    }
    assert_eq!(hits.count(), 0);
}

#[tokio::test]
async fn x5c_header_with_attackers_certificate() {
    // The attacker's self-signed certificate for its own key (tests/data/attacker_cert.pem).
    let pem = String::from_utf8(data("attacker_cert.pem")).unwrap();
    let der_b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let token = rs256_token(
        json!({"alg": "RS256", "x5c": [der_b64]}),
        &good_claims(),
        &attacker_key(),
    );
    let out = send(&rs_layer(), bearer(&token)).await;
    // Never trusted: refused as an embedded key, or ignored and then the signature fails.
    assert_invalid_token(&out, &[AuthError::EmbeddedKey, AuthError::InvalidSignature]);
}

#[tokio::test]
async fn token_size_cap_is_exact() {
    let token = hs256_token(json!({}));
    let layer = |cap: usize| {
        JwtAuthLayer::<TestClaims>::builder()
            .hs256(SECRET)
            .max_token_size(cap)
            .build()
            .unwrap()
    };
    assert_accepted(&send(&layer(token.len()), bearer(&token)).await);
    let out = send(&layer(token.len() - 1), bearer(&token)).await;
    assert_invalid_token(&out, &[AuthError::TokenTooLarge]);
}

fn preflight(method: &str, token: Option<&str>) -> Request<String> {
    let mut req = Request::builder()
        .method(method)
        .uri("/resource")
        .header(header::ORIGIN, "https://attacker.example")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "DELETE");
    if let Some(token) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    req.body(String::new()).unwrap()
}

#[tokio::test]
async fn cors_preflight_lookalike_never_carries_claims() {
    // With `pass_cors_preflight`, a preflight passes untouched (browsers send it without
    // credentials), but whatever token it carries is not vouched for: the inner service sees
    // no claims.
    let lenient = JwtAuthLayer::<TestClaims>::builder()
        .hs256(SECRET)
        .pass_cors_preflight()
        .build()
        .unwrap();
    let forged = format!("{}.{}.", none_parts("none").0, none_parts("none").1);
    let expired = hs256_token(json!({"exp": now() - 3600}));
    for token in [None, Some(forged.as_str()), Some(expired.as_str())] {
        let out = send(&lenient, preflight("OPTIONS", token)).await;
        assert_eq!(out.status, StatusCode::OK);
        assert_eq!(out.hits, 1);
        assert_eq!(out.body, "<no claims>");
    }
    // By default it is authenticated like any request.
    let out = send(&hs_layer(), preflight("OPTIONS", Some(&forged))).await;
    assert_invalid_token(
        &out,
        &[AuthError::Malformed, AuthError::AlgorithmNotAllowed],
    );
}

/// What a preflight never carries makes an `OPTIONS` request a call, authenticated even with
/// `pass_cors_preflight`: a body (`Content-Type`, `Transfer-Encoding`, `Content-Length`), gRPC
/// (tonic dispatches on the path whatever the method), or no `Origin`.
#[tokio::test]
async fn preflight_lookalikes_carrying_a_call_are_authenticated() {
    let lenient = JwtAuthLayer::<TestClaims>::builder()
        .hs256(SECRET)
        .pass_cors_preflight()
        .build()
        .unwrap();
    let call = |name: &str, value: &str| {
        let mut req = preflight("OPTIONS", None);
        req.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
        req
    };
    let mut no_origin = preflight("OPTIONS", None);
    no_origin.headers_mut().remove(header::ORIGIN);
    for req in [
        call("content-type", "application/grpc"),
        call("content-type", "application/json"),
        call("content-length", "12"),
        call("transfer-encoding", "chunked"),
        no_origin,
    ] {
        let what = format!("{:?}", req.headers());
        let grpc = tower_jwt_auth::is_grpc(req.headers());
        let out = send(&lenient, req).await;
        assert_eq!(out.hits, 0, "{what}");
        if grpc {
            // gRPC callers are refused the gRPC way: HTTP 200, `grpc-status: 16`.
            assert_eq!(out.headers.get("grpc-status").unwrap(), "16", "{what}");
        } else {
            assert_eq!(out.status, StatusCode::UNAUTHORIZED, "{what}");
        }
    }
}

#[tokio::test]
async fn preflight_headers_on_other_methods_do_not_bypass() {
    let forged = format!("{}.{}.", none_parts("none").0, none_parts("none").1);
    for method in ["GET", "POST", "DELETE", "options"] {
        let out = send(&hs_layer(), preflight(method, None)).await;
        assert_eq!(out.status, StatusCode::UNAUTHORIZED, "{method}");
        assert_eq!(out.challenge(), "Bearer realm=\"api\"", "{method}");
        assert_eq!(out.hits, 0, "{method}");
        let out = send(&hs_layer(), preflight(method, Some(&forged))).await;
        assert_invalid_token(&out, &[]);
    }
}
