//! The cargo-fuzz targets of `fuzz/`, as proptest properties that run with the normal test
//! suite in a few seconds. Both drive the very same harness (`fuzz/harness.rs`, included
//! below), which panics on any oracle violation: a failing case here is a fuzz finding.
//!
//! The `regression_*` tests below are single inputs, each with the behaviour it shows.

#[path = "../../fuzz/harness.rs"]
mod harness;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use serde_json::{Value, json};
use tower_jwt_auth::{Algorithm, Jwks};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// Bytes in the base64url alphabet, the dot, and the characters attackers try next to it.
fn tokenish() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.=+/ ?#~-]{0,200}"
}

/// A valid token for the `hmac`/`strict` layers, as the fuzzer's seeds have it.
fn valid_token() -> String {
    let now = harness::now() as u64;
    let claims = json!({ "sub": "alice", "iss": harness::ISSUER, "aud": harness::AUDIENCE,
                         "iat": now, "exp": now + 600 });
    harness::sign_hmac(
        br#"{"alg":"HS256","typ":"at+jwt"}"#,
        claims.to_string().as_bytes(),
        Algorithm::HS256,
    )
}

/// A valid token with one byte changed, inserted or removed.
fn mutated_token() -> impl Strategy<Value = String> {
    (any::<prop::sample::Index>(), any::<u8>(), 0u8..3).prop_map(|(at, byte, how)| {
        let mut bytes = valid_token().into_bytes();
        let i = at.index(bytes.len());
        match how {
            0 => bytes[i] = byte,
            1 => bytes.insert(i, byte),
            _ => {
                bytes.remove(i);
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// A JSON value of an arbitrary type, for claims and header members.
fn any_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[a-z+/:.]{0,12}".prop_map(Value::from),
        Just(json!(["fuzz-api", "other"])),
        Just(json!([1, "fuzz-api"])),
        Just(json!({})),
    ]
}

/// A NumericDate near now, or something that is not one.
fn time_claim() -> impl Strategy<Value = Value> {
    let now = harness::now() as i64;
    prop_oneof![
        4 => (-7200i64..7200).prop_map(move |d| json!(now + d)),
        1 => (-7200i64..7200).prop_map(move |d| json!(now as f64 + d as f64 + 0.5)),
        1 => any_json(),
    ]
}

/// A header and a claims set built from the members the layer looks at.
fn header_and_claims() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    let header = (
        prop_oneof![
            6 => Just("HS256"),
            1 => prop::sample::select(vec!["HS384", "RS256", "none", "None", "hs256", ""]),
        ],
        prop::option::weighted(
            0.8,
            prop::sample::select(vec!["at+jwt", "application/AT+JWT", "JWT", ""]),
        ),
        prop::option::of(prop::sample::select(vec!["hs384", "k", ""])),
        prop::option::weighted(
            0.2,
            prop::sample::select(vec!["crit", "jwk", "jku", "x5u", "x5c", "b64"]),
        ),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(alg, typ, kid, extra, dup)| {
            let mut h = format!(r#"{{"alg":"{alg}""#);
            if let Some(typ) = typ {
                h.push_str(&format!(r#","typ":"{typ}""#));
            }
            if let Some(kid) = kid {
                h.push_str(&format!(r#","kid":"{kid}""#));
            }
            if let Some(extra) = extra {
                h.push_str(&format!(r#","{extra}":["exp"]"#));
            }
            if dup {
                h.push_str(r#","alg":"HS256""#);
            }
            h.push('}');
            h.into_bytes()
        });
    let claims = (
        prop::option::weighted(0.9, time_claim()),
        prop::option::of(time_claim()),
        prop::option::weighted(0.8, time_claim()),
        prop::option::weighted(
            0.8,
            prop_oneof![3 => Just(json!(harness::ISSUER)), 1 => any_json()],
        ),
        prop::option::weighted(
            0.8,
            prop_oneof![
                2 => Just(json!(harness::AUDIENCE)),
                1 => Just(json!([harness::AUDIENCE, "x"])),
                1 => any_json(),
            ],
        ),
        prop::option::weighted(0.8, prop_oneof![3 => Just(json!("alice")), 1 => any_json()]),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(exp, nbf, iat, iss, aud, sub, dup)| {
            let mut c = serde_json::Map::new();
            for (k, v) in [
                ("exp", exp),
                ("nbf", nbf),
                ("iat", iat),
                ("iss", iss),
                ("aud", aud),
                ("sub", sub),
            ] {
                if let Some(v) = v {
                    c.insert(k.into(), v);
                }
            }
            let mut text = Value::Object(c).to_string();
            if dup {
                // A repeated claim, after the object serde_json wrote.
                text.pop();
                let sep = if text.len() > 1 { "," } else { "" };
                text.push_str(&format!(r#"{sep}"exp":4102444800}}"#));
            }
            text.into_bytes()
        });
    (header, claims)
}

/// A JWK built from plausible and implausible members.
fn jwk() -> impl Strategy<Value = Value> {
    let b64 = |max: usize| {
        prop::collection::vec(any::<u8>(), 0..max).prop_map(|b| URL_SAFE_NO_PAD.encode(b))
    };
    (
        prop::sample::select(vec!["RSA", "EC", "OKP", "oct", "rsa", ""]),
        prop::option::of(prop::sample::select(vec![
            "RS256", "PS512", "ES256", "ES384", "ES512", "ES521", "EdDSA", "HS256", "HS512",
            "RSA1_5", "A256GCM", "none",
        ])),
        prop::option::of(prop::sample::select(vec!["sig", "enc", "x"])),
        prop::option::of(prop::sample::select(vec![
            json!(["verify"]),
            json!(["encrypt"]),
            json!([]),
        ])),
        prop::option::of(prop::sample::select(vec![
            "P-256",
            "P-384",
            "P-521",
            "Ed25519",
            "X25519",
            "secp256k1",
        ])),
        b64(300),
        prop::sample::select(vec!["AQAB", "AQ", "Aw", "", "AAEAAQ"]),
        b64(70),
        b64(50),
        b64(50),
    )
        .prop_map(|(kty, alg, use_, ops, crv, n, e, k, x, y)| {
            let mut j = json!({ "kty": kty, "kid": "k", "n": n, "e": e, "k": k, "x": x, "y": y });
            let o = j.as_object_mut().unwrap();
            if let Some(alg) = alg {
                o.insert("alg".into(), alg.into());
            }
            if let Some(u) = use_ {
                o.insert("use".into(), u.into());
            }
            if let Some(ops) = ops {
                o.insert("key_ops".into(), ops);
            }
            if let Some(crv) = crv {
                o.insert("crv".into(), crv.into());
            }
            j
        })
}

/// Joins the request fields of the `extract` target's input format.
fn request_fields() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(valid_token()),
        mutated_token(),
        tokenish(),
        Just(String::new()),
    ];
    (
        prop::sample::select(vec!["GET", "POST", "DELETE", "OPTIONS", "get", "B@D"]),
        prop::sample::select(vec![
            "Bearer ",
            "bearer   ",
            "Basic ",
            "Bearer",
            "",
            "Bearer\t",
        ]),
        token.clone(),
        prop::option::of(token.clone()),
        prop::option::of(token.clone()),
        prop::option::of(token),
        prop::option::of(prop::sample::select(vec![
            "https://api.example",
            "https://evil.example",
            "null",
        ])),
        prop::option::of(prop::sample::select(vec!["api.example", "evil.example"])),
        any::<bool>(),
    )
        .prop_map(
            |(method, scheme, auth, second, x_token, cookie, origin, host, quoted)| {
                let mut authorization = format!("{scheme}{auth}");
                if let Some(second) = second {
                    authorization.push_str(&format!("\rBearer {second}"));
                }
                let cookie = cookie.map(|c| {
                    if quoted {
                        format!("a=b; access_token=\"{c}\"; access_token={c}")
                    } else {
                        format!("access_token={c}")
                    }
                });
                let query = x_token.clone().map(|t| format!("x=1&access_token={t}"));
                [
                    method.to_owned(),
                    authorization,
                    x_token.unwrap_or_default(),
                    cookie.unwrap_or_default(),
                    query.unwrap_or_default(),
                    origin.unwrap_or_default().to_owned(),
                    host.unwrap_or_default().to_owned(),
                ]
                .join("\n")
                .into_bytes()
            },
        )
}

// ---------------------------------------------------------------------------------------------
// The four targets
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_precheck_bytes(data in prop::collection::vec(any::<u8>(), 0..400)) {
        harness::precheck(&data);
    }

    #[test]
    fn fuzz_precheck_tokens(token in prop_oneof![tokenish(), mutated_token()]) {
        harness::precheck(token.as_bytes());
    }

    #[test]
    fn fuzz_verify_bytes(data in prop::collection::vec(any::<u8>(), 0..400)) {
        harness::verify(&data);
    }

    #[test]
    fn fuzz_jwks_bytes(text in ".{0,300}") {
        harness::jwks(text.as_bytes());
    }

    #[test]
    fn fuzz_jwks_documents(keys in prop::collection::vec(jwk(), 0..4)) {
        harness::jwks(json!({ "keys": keys }).to_string().as_bytes());
    }

    #[test]
    fn fuzz_extract_bytes(data in prop::collection::vec(any::<u8>(), 0..400)) {
        harness::extract(&data);
    }

    #[test]
    fn fuzz_extract_requests(data in request_fields()) {
        harness::extract(&data);
    }
}

proptest! {
    // The richest of the targets (it reaches the claims policy with valid signatures), and
    // cheap: more cases.
    #![proptest_config(ProptestConfig { cases: 2048, ..config() })]

    #[test]
    fn fuzz_verify_signed_header_and_claims((header, claims) in header_and_claims(), hs384 in any::<bool>()) {
        // Mode 1 (HS256) or 2 (HS384): the harness signs `header \n claims` itself.
        let mut data = vec![if hs384 { 2 } else { 1 }];
        data.extend_from_slice(&header);
        data.push(b'\n');
        data.extend_from_slice(&claims);
        harness::verify(&data);
    }
}

/// The seeds the fuzz targets start from pass too (and show the input formats).
#[test]
fn harness_accepts_what_it_should() {
    let token = valid_token();
    for layer in [&harness::layers().hmac, &harness::layers().strict] {
        assert!(layer.verify(&token).is_ok());
    }
    harness::verify_token(&token);
    harness::precheck(token.as_bytes());
    let request = format!("GET\nBearer {token}\n\n\n\n\n");
    harness::extract(request.as_bytes());
    let cookie = format!("POST\n\n\naccess_token={token}\n\nhttps://api.example\napi.example");
    harness::extract(cookie.as_bytes());
    let mut signed = vec![1u8];
    signed.extend_from_slice(br#"{"alg":"HS256","typ":"at+jwt"}"#);
    signed.push(b'\n');
    signed.extend_from_slice(
        json!({"sub":"a","iss":harness::ISSUER,"aud":harness::AUDIENCE,"iat":harness::now() as u64,"exp":harness::now() as u64 + 60})
            .to_string()
            .as_bytes(),
    );
    harness::verify(&signed);
    harness::jwks(br#"{"keys":[{"kty":"oct","k":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","alg":"HS256"}]}"#);
}

// ---------------------------------------------------------------------------------------------
// Single inputs
// ---------------------------------------------------------------------------------------------

/// `Jwks::from_json` takes a JWK Set only as a JSON object with a `keys` member (RFC 7517 §5),
/// although serde's derive would also read a JSON *array* into the struct: `[[...keys...]]` is
/// no JWK Set.
#[test]
fn regression_jwks_document_must_be_an_object() {
    assert!(Jwks::from_json(r#"{"keys":[]}"#).is_ok());
    for doc in [
        "[[]]",
        r#"[[{"kty":"oct","alg":"HS256","k":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}]]"#,
    ] {
        assert!(Jwks::from_json(doc).is_err(), "{doc} is not a JWK Set");
    }
}

/// A `verify` fuzz input (base64, as libFuzzer prints it): mode 2 (HS384), header
/// `{"alg":"HS384",")kid":"hs384\xCF"}` (a lone 0xCF byte in the value of a member the layer
/// does not read), a claims set. Signed by the harness with the known secret.
const NON_UTF8_HEADER_INPUT: &str = "AnsiYWxnIjoiSFMzODQiLCIpa2lkIjoiaHMzODTPIn0KeyJzdWIiOiJhbGljK0hTMjU1KysrKysrKysrKysrKysrKysrKysrKysrKysrKysrKysrKysrKysrKysrKysrKysrKWUiLCJleHAiOjQxMDI0NDQ4MDAsIm5iZiI6MCwianRpIjoiajEifQ==";

/// A JOSE header or claims set that is not UTF-8 is refused, also when the offending bytes sit
/// in a member the layer does not read (serde_json skips such a string without validating
/// it). Such bytes are not JSON (RFC 7515 §5.2 step 3 and RFC 7519 §7.2 step 10 require
/// rejecting them), and accepting them would be a parser differential with every strict JOSE
/// library and with the application's own `serde_json::Value` view of the same bytes. The
/// signature must be valid, so only bytes the issuer signed can get this far.
#[test]
fn regression_non_utf8_header_or_claims_is_refused() {
    use tower_jwt_auth::AuthError;
    let l = harness::layers();
    // The fuzzer's input, as the harness signs it.
    let data = base64::engine::general_purpose::STANDARD
        .decode(NON_UTF8_HEADER_INPUT)
        .unwrap();
    let (header, claims) = data[1..].split_at(data[1..].iter().position(|b| *b == b'\n').unwrap());
    assert!(std::str::from_utf8(header).is_err());
    let token = harness::sign_hmac(header, &claims[1..], Algorithm::HS384);
    assert_eq!(
        l.hmac.verify_signature(&token),
        Err(AuthError::MalformedHeader)
    );
    assert_eq!(
        l.hmac.verify(&token).unwrap_err(),
        AuthError::MalformedHeader
    );

    // Minimal forms: an unread header member, and an unread claim with a typed claims struct.
    let exp = harness::now() as u64 + 600;
    let claims = format!(r#"{{"sub":"a","exp":{exp}}}"#);
    let token = harness::sign_hmac(
        b"{\"alg\":\"HS256\",\"x\":\"\xff\"}",
        claims.as_bytes(),
        Algorithm::HS256,
    );
    assert_eq!(
        l.hmac.verify_signature(&token),
        Err(AuthError::MalformedHeader)
    );

    #[derive(Debug, serde::Deserialize)]
    struct Typed {
        #[allow(dead_code)]
        sub: String,
    }
    let typed = tower_jwt_auth::JwtAuthLayer::<Typed>::builder()
        .hs256(harness::SECRET)
        .build()
        .unwrap();
    let good = harness::sign_hmac(br#"{"alg":"HS256"}"#, claims.as_bytes(), Algorithm::HS256);
    assert!(typed.verify(&good).is_ok());
    // An unread claim holding the bytes C3 28 (not UTF-8).
    let mut raw = format!("{{\"sub\":\"a\",\"exp\":{exp},\"note\":\"").into_bytes();
    raw.extend_from_slice(b"\xc3\x28\"}");
    assert!(std::str::from_utf8(&raw).is_err());
    let token = harness::sign_hmac(br#"{"alg":"HS256"}"#, &raw, Algorithm::HS256);
    assert_eq!(
        typed.verify(&token).unwrap_err(),
        AuthError::MalformedClaims
    );
}

/// An `extract` input (base64 as libFuzzer prints it) whose Authorization value,
/// `rer realm="api"`, is part of the fixed challenge text: the harness's "never echoes the
/// input" oracle checks the challenge's shape, so a credential that happens to be a substring
/// of the fixed text counts as no echo.
#[test]
fn regression_extract_input_inside_the_challenge_text() {
    let data = base64::engine::general_purpose::STANDARD
        .decode("R0VUCnJlciByZWFsbT0iYXBpIgpleUpoYkdjaU9pSklVekkxTmlJc0luUjVjQ0k2SW1GMEsycDNkQ0o5LmV5SnpkV0lpT2lKaGJHbGlPaUpxTVNKOS4zVG1NeDk4MQoK")
        .unwrap();
    harness::extract(&data);
}
