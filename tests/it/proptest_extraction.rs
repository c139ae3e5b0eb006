//! Property tests on what a client controls: the bytes of `Authorization`, `Cookie` and a
//! custom header, token-like strings, JOSE headers and claims. Whatever arrives, the layer
//! never panics and answers 400/401, and lets through exactly what it should.

use crate::common;

use std::sync::OnceLock;

use common::{
    AUDIENCE, ISSUER, Outcome, SECRET, TestClaims, good_claims, hs256_builder, hs256_token, now,
    segments, sign_text,
};
use http::{HeaderName, HeaderValue, Request, StatusCode, header};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Value, json};
use tower_jwt_auth::{Algorithm, JwtAuthLayer};

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

const COOKIE: &str = "at";
const CUSTOM: &str = "x-token";

fn layer() -> &'static JwtAuthLayer<TestClaims> {
    static LAYER: OnceLock<JwtAuthLayer<TestClaims>> = OnceLock::new();
    LAYER.get_or_init(|| {
        hs256_builder::<TestClaims>()
            .token_from_cookie(COOKIE)
            .token_from_header(CUSTOM)
            .build()
            .unwrap()
    })
}

/// The one valid token of these tests (made once: its `exp` is an hour ahead).
fn valid_token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| hs256_token(json!({})))
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    })
}

/// One request with `headers` through [`layer`], on this thread.
fn send(headers: Vec<(HeaderName, HeaderValue)>) -> Outcome {
    let mut req = Request::get("/").body(String::new()).unwrap();
    for (name, value) in headers {
        req.headers_mut().append(name, value);
    }
    runtime().block_on(common::send(layer(), req))
}

/// [`send`] with `Authorization: Bearer <token>`, if that is a header value at all.
fn send_bearer(token: &str) -> Option<Outcome> {
    let value = HeaderValue::from_bytes(format!("Bearer {token}").as_bytes()).ok()?;
    Some(send(vec![(header::AUTHORIZATION, value)]))
}

/// A refusal: 400 with `invalid_request`, or 401 with `invalid_token` or no error code at all
/// (no token found), and the inner service never ran.
fn check_refused(out: &Outcome) -> Result<(), TestCaseError> {
    prop_assert!(out.reached().is_none(), "inner service reached: {out:?}");
    match out.status {
        StatusCode::BAD_REQUEST => {
            prop_assert!(
                out.challenge().contains("error=\"invalid_request\""),
                "{out:?}"
            )
        }
        StatusCode::UNAUTHORIZED => prop_assert!(
            out.challenge().starts_with("Bearer realm=")
                && (out.challenge().contains("error=\"invalid_token\"")
                    || !out.challenge().contains("error=")),
            "{out:?}"
        ),
        _ => return Err(TestCaseError::fail(format!("unexpected status: {out:?}"))),
    }
    Ok(())
}

/// Either a refusal, or a pass with the valid token's claims, and a pass only when the
/// request carries the valid token (`may_pass`).
fn check_outcome(out: &Outcome, may_pass: bool) -> Result<(), TestCaseError> {
    if out.status == StatusCode::OK {
        prop_assert!(may_pass, "accepted without the valid token: {out:?}");
        prop_assert_eq!(out.reached(), Some("alice"));
        Ok(())
    } else {
        check_refused(out)
    }
}

fn contains_valid(bytes: &[u8]) -> bool {
    let t = valid_token().as_bytes();
    bytes.windows(t.len()).any(|w| w == t)
}

fn config() -> Config {
    Config {
        cases: 512,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Bytes an attacker might put in a header: fully random, or close to the expected syntax.
fn header_bytes(prefix: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    let random = proptest::collection::vec(any::<u8>(), 0..160);
    let ascii = proptest::collection::vec(0x20u8..0x7f, 0..160);
    let prefixed = (
        proptest::sample::select(prefix),
        proptest::collection::vec(any::<u8>(), 0..160),
    )
        .prop_map(|(p, rest)| [p.as_bytes(), &rest].concat());
    let with_valid = (
        proptest::sample::select(prefix),
        proptest::collection::vec(any::<u8>(), 0..4),
        proptest::collection::vec(any::<u8>(), 0..4),
    )
        .prop_map(|(p, before, after)| {
            [p.as_bytes(), &before, valid_token().as_bytes(), &after].concat()
        });
    prop_oneof![random, ascii, prefixed, with_valid]
}

/// Is this header value exactly one of `prefixes` followed by the valid token?
fn is_exact_valid(value: &[u8], prefixes: &[&str]) -> bool {
    prefixes
        .iter()
        .any(|p| value == [p.as_bytes(), valid_token().as_bytes()].concat())
}

// ---------------------------------------------------------------------------------------------
// Raw header bytes
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_authorization_bytes(
        bytes in header_bytes(&["Bearer ", "bearer  ", "BEARER ", "Basic ", "Bearer", ""]),
    ) {
        let Ok(value) = HeaderValue::from_bytes(&bytes) else { return Ok(()) };
        let out = send(vec![(header::AUTHORIZATION, value)]);
        check_outcome(&out, contains_valid(&bytes))?;
        // The scheme is case-insensitive and may be followed by several spaces.
        if is_exact_valid(&bytes, &["Bearer ", "bearer  ", "BEARER "]) {
            prop_assert_eq!(out.status, StatusCode::OK);
        }
    }

    #[test]
    fn arbitrary_cookie_bytes(bytes in header_bytes(&["at=", "x=1; at=", "at=\"", "at", ""])) {
        let Ok(value) = HeaderValue::from_bytes(&bytes) else { return Ok(()) };
        let out = send(vec![(header::COOKIE, value)]);
        check_outcome(&out, contains_valid(&bytes))?;
        if is_exact_valid(&bytes, &["at=", "x=1; at="]) {
            prop_assert_eq!(out.status, StatusCode::OK);
        }
    }

    #[test]
    fn arbitrary_custom_header_bytes(bytes in header_bytes(&["", " ", "Bearer "])) {
        let Ok(value) = HeaderValue::from_bytes(&bytes) else { return Ok(()) };
        let out = send(vec![(HeaderName::from_static(CUSTOM), value)]);
        check_outcome(&out, contains_valid(&bytes))?;
        if is_exact_valid(&bytes, &[""]) {
            prop_assert_eq!(out.status, StatusCode::OK);
        }
    }

    #[test]
    fn arbitrary_bytes_in_all_sources_at_once(
        auth in header_bytes(&["Bearer "]),
        cookie in header_bytes(&["at="]),
        custom in header_bytes(&[""]),
    ) {
        let mut headers = Vec::new();
        let mut sent = Vec::new();
        for (name, bytes) in [
            (header::AUTHORIZATION, &auth),
            (header::COOKIE, &cookie),
            (HeaderName::from_static(CUSTOM), &custom),
        ] {
            if let Ok(v) = HeaderValue::from_bytes(bytes) {
                headers.push((name, v));
                sent.push(bytes);
            }
        }
        let out = send(headers);
        check_outcome(&out, sent.iter().any(|b| contains_valid(b)))?;
    }
}

// ---------------------------------------------------------------------------------------------
// Token-like strings
// ---------------------------------------------------------------------------------------------

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_-]{0,40}",
        "[A-Za-z0-9_=+/~.-]{0,12}",
        Just(String::new()),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn token_like_strings(segs in proptest::collection::vec(segment(), 1..6)) {
        let token = segs.join(".");
        let Some(out) = send_bearer(&token) else { return Ok(()) };
        check_refused(&out)?;
    }

    #[test]
    fn valid_header_and_payload_with_random_signature(sig in "[A-Za-z0-9_-]{0,64}") {
        let (h, p, _) = segments(valid_token());
        let out = send_bearer(&format!("{h}.{p}.{sig}")).unwrap();
        check_refused(&out)?;
        prop_assert_eq!(out.status, StatusCode::UNAUTHORIZED);
    }

    /// A valid token with one byte replaced, anywhere, by any other byte: never accepted.
    #[test]
    fn one_mutated_byte_is_never_accepted(
        index in any::<prop::sample::Index>(),
        byte in prop_oneof![
            any::<u8>(),
            proptest::sample::select(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.".to_vec()),
        ],
    ) {
        let valid = valid_token();
        let i = index.index(valid.len());
        prop_assume!(valid.as_bytes()[i] != byte);
        let mut bytes = valid.as_bytes().to_vec();
        bytes[i] = byte;
        let mut value = b"Bearer ".to_vec();
        value.extend_from_slice(&bytes);
        let Ok(value) = HeaderValue::from_bytes(&value) else { return Ok(()) };
        let out = send(vec![(header::AUTHORIZATION, value)]);
        check_refused(&out)?;
    }
}

/// Every base64url character (and a few others) at each of the signature's last characters:
/// base64url has no two encodings of the same bytes, so none but the original verifies.
#[test]
fn every_replacement_of_the_signature_tail_is_refused() {
    let valid = valid_token();
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/.~";
    let mut tried = 0;
    for i in valid.len() - 4..valid.len() {
        for &c in alphabet {
            if valid.as_bytes()[i] == c {
                continue;
            }
            let mut bytes = valid.as_bytes().to_vec();
            bytes[i] = c;
            let token = String::from_utf8(bytes).unwrap();
            let out = send_bearer(&token).unwrap();
            assert!(out.reached().is_none(), "{token}: {out:?}");
            assert!(
                matches!(
                    out.status,
                    StatusCode::UNAUTHORIZED | StatusCode::BAD_REQUEST
                ),
                "{token}: {out:?}"
            );
            tried += 1;
        }
    }
    assert!(tried > 250);
    // The unmodified token passes, so the refusals above are about the change.
    assert_eq!(send_bearer(valid).unwrap().reached(), Some("alice"));
}

// ---------------------------------------------------------------------------------------------
// JSON-ish JOSE headers and claims
// ---------------------------------------------------------------------------------------------

/// One JSON object as text: its members (name and value, each as JSON text, repeats allowed)
/// and what is written around it.
#[derive(Debug, Clone)]
struct Object {
    members: Vec<(&'static str, &'static str)>,
    wrap: (&'static str, &'static str),
}

impl Object {
    fn text(&self) -> String {
        let body: Vec<String> = self
            .members
            .iter()
            .map(|(n, v)| format!("{n}:{v}"))
            .collect();
        format!("{}{{{}}}{}", self.wrap.0, body.join(","), self.wrap.1)
    }

    /// The decoded members, or `None` when the text is not one JSON object. Names are
    /// compared after unescaping, so `"\u0061lg"` is `alg`.
    fn decoded(&self) -> Option<Vec<(String, Value)>> {
        serde_json::from_str::<serde_json::Map<String, Value>>(&self.text()).ok()?;
        Some(
            self.members
                .iter()
                .map(|(n, v)| {
                    (
                        serde_json::from_str(n).unwrap(),
                        serde_json::from_str(v).unwrap(),
                    )
                })
                .collect(),
        )
    }
}

/// Text around the object that breaks it (a BOM, trailing bytes, an array).
const BROKEN_WRAPPERS: &[(&str, &str)] = &[
    ("", "x"),
    ("", "}"),
    ("[", "]"),
    ("", ","),
    ("\u{feff}", ""),
    ("\"", "\""),
];

/// Objects near `base`: each base member kept with probability `keep`; up to three of
/// `others` added; every member with its plausible value or, one time in four, any of
/// `values`; now and then a member repeated; mostly clean, sometimes broken, surroundings.
fn object(
    base: Vec<(&'static str, &'static str)>,
    keep: f64,
    others: Vec<(&'static str, &'static str)>,
    values: Vec<&'static str>,
) -> impl Strategy<Value = Object> {
    let pick = proptest::sample::select(values);
    let member = move |(name, plausible): (&'static str, &'static str)| {
        (
            Just(name),
            prop_oneof![3 => Just(plausible), 1 => pick.clone()],
        )
    };
    let base: Vec<_> = base
        .into_iter()
        .map(|m| (proptest::bool::weighted(keep), member(m)))
        .collect();
    let extra = proptest::sample::subsequence(others, 0..=3)
        .prop_flat_map(move |chosen| chosen.into_iter().map(&member).collect::<Vec<_>>());
    let repeat = (
        proptest::bool::weighted(0.15),
        any::<proptest::sample::Index>(),
        proptest::sample::select(HEADER_VALUES),
    );
    let wrap = prop_oneof![
        8 => Just(("", "")),
        1 => Just((" ", "\n")),
        2 => proptest::sample::select(BROKEN_WRAPPERS),
    ];
    (base, extra, repeat, wrap).prop_map(|(base, extra, (repeat, at, value), wrap)| {
        let mut members: Vec<_> = base
            .into_iter()
            .filter_map(|(kept, m)| kept.then_some(m))
            .chain(extra)
            .collect();
        if repeat && !members.is_empty() {
            let name = members[at.index(members.len())].0;
            members.push((name, value));
        }
        Object { members, wrap }
    })
}

/// JOSE header members besides `alg` (name and a plausible value, as JSON text), some names
/// spelled with escapes.
const HEADER_MEMBERS: &[(&str, &str)] = &[
    (r#""kid""#, r#""k1""#),
    (r#""typ""#, r#""JWT""#),
    (r#""crit""#, r#"["b64"]"#),
    (r#""jwk""#, r#"{"kty":"oct","k":"AAAA"}"#),
    (r#""jku""#, r#""https://attacker.example/jwks""#),
    (r#""x5u""#, r#""https://attacker.example/cert""#),
    (r#""x5c""#, r#"["MIIB"]"#),
    (r#""x5t""#, r#""abc""#),
    (r#""cty""#, r#""JWT""#),
    (r#""b64""#, "false"),
    (r#""ALG""#, r#""none""#),
    (r#""\u0061lg""#, r#""HS256""#),
    (r#""k\u0069d""#, r#""k2""#),
    (r#""""#, "1"),
];

/// Header member values as JSON text.
const HEADER_VALUES: &[&str] = &[
    r#""HS256""#,
    r#""HS\u0032\u0035\u0036""#,
    r#""hs256""#,
    r#""HS256 ""#,
    r#""HS384""#,
    r#""RS256""#,
    r#""none""#,
    r#""JWT""#,
    r#""k1""#,
    r#""""#,
    "1",
    "-0.5",
    "null",
    "true",
    "[]",
    r#"["b64"]"#,
    "{}",
    r#"{"kty":"oct","k":"AAAA"}"#,
];

fn jose_header() -> impl Strategy<Value = Object> {
    object(
        vec![(r#""alg""#, r#""HS256""#)],
        0.9,
        HEADER_MEMBERS.to_vec(),
        HEADER_VALUES.to_vec(),
    )
}

fn has_duplicates(members: &[(String, Value)]) -> bool {
    members
        .iter()
        .enumerate()
        .any(|(i, (n, _))| members[..i].iter().any(|(m, _)| m == n))
}

/// Should a token with this JOSE header (and good claims, a correct HS256 MAC) pass? One JSON
/// object, no repeated member, no `crit`/`jwk`/`jku`/`x5u`, `alg` exactly `HS256`, and `kid` and
/// `typ` strings when present (no `typ` is configured, and the layer's key has no `kid`).
fn header_acceptable(members: &Option<Vec<(String, Value)>>) -> bool {
    let Some(members) = members else { return false };
    if has_duplicates(members) {
        return false;
    }
    let get = |name: &str| members.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    ["crit", "jwk", "jku", "x5u"]
        .iter()
        .all(|n| get(n).is_none())
        && get("alg") == Some(&json!("HS256"))
        && ["kid", "typ"]
            .iter()
            .all(|n| get(n).is_none_or(Value::is_string))
}

/// Claims besides the four of good claims (name and a plausible value, as JSON text).
fn claim_members(now: u64) -> Vec<(&'static str, &'static str)> {
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    vec![
        (r#""nbf""#, leak(format!("{}", now - 3600))),
        (r#""iat""#, leak(format!("{}", now - 60))),
        (r#""jti""#, r#""id-1""#),
        (r#""roles""#, r#"["admin"]"#),
        (r#""scope""#, r#""read write""#),
        (r#""\u0065xp""#, leak(format!("{}", now + 600))),
        (r#""\u0073ub""#, r#""bob""#),
    ]
}

/// Should these claims pass the layer's policy (issuer, audience, exp required, 60 s leeway)
/// and deserialize into `TestClaims`? Times in the pool are an hour away from now, so the
/// leeway never decides.
fn claims_acceptable(members: &Option<Vec<(String, Value)>>, now: f64) -> bool {
    let Some(members) = members else { return false };
    if has_duplicates(members) {
        return false;
    }
    let get = |name: &str| members.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let number = |v: Option<&Value>| v.map(|v| v.as_f64());
    let string_or_absent = |v: Option<&Value>| v.is_none_or(Value::is_string);
    let strings = |v: &Value| v.as_array().is_some_and(|a| a.iter().all(Value::is_string));
    let exp_ok = matches!(number(get("exp")), Some(Some(exp)) if now < exp + 60.0);
    let nbf_ok = match number(get("nbf")) {
        None => true,
        Some(Some(nbf)) => now + 60.0 >= nbf,
        Some(None) => false,
    };
    let iat_ok = match number(get("iat")) {
        None => true,
        Some(Some(iat)) => iat <= now + 60.0,
        Some(None) => false,
    };
    let iss_ok = get("iss") == Some(&json!(ISSUER));
    let aud_ok = match get("aud") {
        Some(Value::String(s)) => s == AUDIENCE,
        Some(v) if strings(v) => v.as_array().unwrap().contains(&json!(AUDIENCE)),
        _ => false,
    };
    let sub_ok = get("sub").is_some_and(Value::is_string);
    let roles_ok = get("roles").is_none_or(strings);
    exp_ok
        && nbf_ok
        && iat_ok
        && iss_ok
        && aud_ok
        && sub_ok
        && string_or_absent(get("jti"))
        && roles_ok
}

fn claim_values(now: u64) -> Vec<&'static str> {
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    vec![
        r#""alice""#,
        r#""alice""#,
        leak(format!("{}", now + 3600)),
        leak(format!("{}", now + 3600)),
        leak(format!("{}.5", now + 3600)),
        leak(format!("{}", now - 3600)),
        leak(format!("{}", now - 3600)),
        leak(format!("{}", now - 3600)),
        leak(format!("{}", now + 7200)),
        leak(format!("{}", now + 7200)),
        leak(format!(r#""{}""#, now + 3600)),
        leak(format!(r#""{ISSUER}""#)),
        leak(format!(r#""{ISSUER}""#)),
        r#""https://evil.example""#,
        leak(format!(r#""{AUDIENCE}""#)),
        leak(format!(r#""{AUDIENCE}""#)),
        leak(format!(r#"["x","{AUDIENCE}"]"#)),
        leak(format!(r#"["{AUDIENCE}",1]"#)),
        r#"["admin"]"#,
        "[]",
        "[1]",
        "{}",
        "1",
        "null",
        "true",
    ]
}

/// Claims near good ones (`sub`, `exp`, `iss`, `aud` with good values).
fn claims() -> impl Strategy<Value = Object> {
    let values = claim_values(now());
    let find = |want: String| *values.iter().find(|v| **v == want).unwrap();
    let base = vec![
        (r#""sub""#, find(r#""alice""#.into())),
        (r#""exp""#, find(format!("{}", now() + 3600))),
        (r#""iss""#, find(format!(r#""{ISSUER}""#))),
        (r#""aud""#, find(format!(r#""{AUDIENCE}""#))),
    ];
    object(base, 0.95, claim_members(now()), values)
}

/// Signs `header` and `claims`, given as JSON text, with HS256 under `key`.
fn hs256_text(header: &str, claims: &str, key: &[u8]) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(key);
    sign_text(header, claims, Algorithm::HS256, &key)
}

fn expect(out: &Outcome, accept: bool, what: &str) -> Result<(), TestCaseError> {
    if accept {
        prop_assert_eq!(
            out.status,
            StatusCode::OK,
            "{} should pass: {:?}",
            what,
            out
        );
        prop_assert!(out.reached().is_some());
    } else {
        check_refused(out)?;
        prop_assert_eq!(out.status, StatusCode::UNAUTHORIZED, "{}: {:?}", what, out);
        prop_assert!(
            out.challenge().contains("error=\"invalid_token\""),
            "{}: {:?}",
            what,
            out
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// JSON-ish headers over good claims, with a correct MAC: accepted exactly when the
    /// header model says so.
    #[test]
    fn jsonish_jose_headers(header in jose_header()) {
        let text = header.text();
        let token = hs256_text(&text, &good_claims().to_string(), SECRET);
        let accept = header_acceptable(&header.decoded());
        expect(&send_bearer(&token).unwrap(), accept, &text)?;
    }

    /// The same headers under a wrong key: never accepted, whatever the header says.
    #[test]
    fn jsonish_jose_headers_wrong_key(header in jose_header()) {
        let text = header.text();
        let token = hs256_text(&text, &good_claims().to_string(), b"not the secret, but long enough!!");
        expect(&send_bearer(&token).unwrap(), false, &text)?;
    }

    /// JSON-ish claims under a valid header and MAC: accepted exactly when the claims model
    /// says so.
    #[test]
    fn jsonish_claims(claims in claims()) {
        let text = claims.text();
        let token = hs256_text(r#"{"alg":"HS256","typ":"JWT"}"#, &text, SECRET);
        let accept = claims_acceptable(&claims.decoded(), now() as f64);
        expect(&send_bearer(&token).unwrap(), accept, &text)?;
    }
}
