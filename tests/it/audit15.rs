//! Outside audit 15: the refusal of bindings the layer cannot check (RFC 7800 §3.1,
//! `AuthError::UnsupportedConfirmation`) and the branch-free `b64token` syntax check of the
//! extracted credential (RFC 6750 §2.1).
//!
//! `regression_*` tests reproduce the defect the audit reported (a `null` value of a checked
//! confirmation method, read as bound by one reader and as unbound by the other; each failed
//! before its fix); `holds_*` tests pin properties that were attacked and held.
//! Every request goes to a real axum server on 127.0.0.1 through a reqwest client; the
//! certificate-bound cases put the `ClientCertificate` into the request where a TLS layer
//! would (a middleware outside the `JwtAuthLayer`, chosen per request by a test header).

use crate::common;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request as AxumRequest;
use axum::middleware::{self, Next};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};
use tower_jwt_auth::dpop::Dpop;
use tower_jwt_auth::mtls::ClientCertificate;
use tower_jwt_auth::{Algorithm, AuthError, JwtAuthLayer, Key, Tenant};

use common::dpop::Holder;
use common::{
    AUDIENCE, Hits, ISSUER, SECRET, TestClaims, hs256_builder, hs256_key, hs256_token, now,
    sha256_b64, sign_text, subject,
};

/// The external base URL DPoP proofs name (`htu` = BASE + path).
const BASE: &str = "https://api.example.com";

/// The DER of the two client certificates the simulated TLS layer can hand in.
const CERT_A: &[u8] = b"client certificate A (DER stand-in)";
const CERT_B: &[u8] = b"client certificate B (DER stand-in)";

// ---------------------------------------------------------------------------------------------
// Server and client

struct Srv {
    base: String,
    hits: Hits,
    client: reqwest::Client,
}

struct Answer {
    status: StatusCode,
    challenge: String,
    body: String,
}

impl Answer {
    #[track_caller]
    fn assert_passed(&self, what: &str) {
        assert_eq!(
            self.status,
            StatusCode::OK,
            "{what}: expected a pass, got challenge {:?}",
            self.challenge
        );
        assert_eq!(self.body, "alice", "{what}");
    }

    #[track_caller]
    fn assert_refused(&self, status: StatusCode, reason: &AuthError, what: &str) {
        assert_eq!(
            self.status, status,
            "{what}: challenge {:?} body {:?}",
            self.challenge, self.body
        );
        let description = format!("error_description=\"{reason}\"");
        assert!(
            self.challenge.contains(&description),
            "{what}: expected {description}, got challenge {:?}",
            self.challenge
        );
    }

    /// 401 `invalid_token` for `reason`.
    #[track_caller]
    fn assert_invalid(&self, reason: &AuthError, what: &str) {
        self.assert_refused(StatusCode::UNAUTHORIZED, reason, what);
        assert!(
            self.challenge.contains("invalid_token"),
            "{what}: {:?}",
            self.challenge
        );
    }
}

/// `/me` (answers the subject) behind `layer`, with a stand-in for the TLS layer in front:
/// a request with `x-test-cert: a` or `b` carries that `ClientCertificate`, as a request over
/// a connection authenticated with it would. The test header never reaches the layer's logic
/// otherwise.
async fn start(layer: JwtAuthLayer<TestClaims>) -> Srv {
    async fn tls(mut req: AxumRequest, next: Next) -> axum::response::Response {
        let cert = match req.headers().get("x-test-cert").map(|v| v.as_bytes()) {
            Some(b"a") => Some(ClientCertificate::new(CERT_A)),
            Some(b"b") => Some(ClientCertificate::new(CERT_B)),
            _ => None,
        };
        req.headers_mut().remove("x-test-cert");
        if let Some(cert) = cert {
            req.extensions_mut().insert(cert);
        }
        next.run(req).await
    }
    let hits = Hits::default();
    let app = Router::new()
        .route("/me", subject::<TestClaims>(&hits))
        .layer(layer)
        .layer(middleware::from_fn(tls));
    let addr = common::serve(app).await;
    Srv {
        base: format!("http://{addr}"),
        hits,
        client: common::client(),
    }
}

impl Srv {
    /// `GET <path>` with these raw headers.
    async fn get_raw(&self, path: &str, headers: &[(&str, &[u8])]) -> Answer {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        let res = self
            .client
            .get(format!("{}{path}", self.base))
            .headers(map)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let challenge = res
            .headers()
            .get_all("www-authenticate")
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(" | ");
        Answer {
            status,
            challenge,
            body: res.text().await.unwrap(),
        }
    }

    async fn get(&self, headers: &[(&str, &str)]) -> Answer {
        let raw: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
        self.get_raw("/me", &raw).await
    }

    async fn bearer(&self, token: &str) -> Answer {
        self.get(&[("authorization", &format!("Bearer {token}"))])
            .await
    }

    async fn bearer_with_cert(&self, token: &str, cert: &str) -> Answer {
        self.get(&[
            ("authorization", &format!("Bearer {token}")),
            ("x-test-cert", cert),
        ])
        .await
    }

    /// `Authorization: DPoP <token>` with a fresh proof of `holder` for `GET <BASE>/me`.
    async fn dpop(&self, token: &str, holder: &Holder) -> Answer {
        let proof = holder.sign(
            "GET",
            &format!("{BASE}/me"),
            json!(now()),
            token,
            json!({}),
            json!({}),
        );
        self.get(&[
            ("authorization", &format!("DPoP {token}")),
            ("dpop", &proof),
        ])
        .await
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens with raw claims text

/// An HS256 token of the test policy (valid now, subject alice) whose claims set is this JSON
/// text: the test policy's members, then `extra` verbatim (escapes, duplicates and all).
fn raw_token(extra: &str) -> String {
    let t = now();
    let sep = if extra.is_empty() { "" } else { "," };
    let claims = format!(
        r#"{{"sub":"alice","iss":"{ISSUER}","aud":"{AUDIENCE}","iat":{t},"exp":{}{sep}{extra}}}"#,
        t + 3600
    );
    sign_text(
        r#"{"alg":"HS256","typ":"JWT"}"#,
        &claims,
        Algorithm::HS256,
        &hs256_key(),
    )
}

fn x5t(der: &[u8]) -> String {
    sha256_b64(der)
}

const UNSUPPORTED: AuthError = AuthError::UnsupportedConfirmation;
const MALFORMED_CLAIMS: AuthError = AuthError::MalformedClaims;

// =============================================================================================
// Regressions

/// A DPoP layer (allowed mode) accepts, as a plain Bearer token without any proof, a token
/// whose `cnf` names the `jkt` method with a `null` value. The strict claims reader counts
/// `jkt` as a method this layer checks (so the policy lets it through), while the DPoP check
/// reads `cnf` with serde's `Option<String>`, for which `null` is "no binding". The same token
/// is refused (`UnsupportedConfirmation`) by a layer without DPoP, and `jkt` is a string
/// (RFC 9449 §6.1): the one place a `cnf` member's value is not typed-checked is the one where
/// the layer that claims to check the method skips it.
#[tokio::test]
async fn regression_jkt_null_never_passes_a_dpop_layer_as_bearer() {
    let token = raw_token(r#""cnf":{"jkt":null}"#);

    // Without DPoP the layer refuses it as bound by a method it does not check.
    let plain = start(hs256_builder::<TestClaims>().build().unwrap()).await;
    // Refused: as malformed claims (a checked method's value is a string).
    let refused = plain.bearer(&token).await;
    assert_eq!(
        refused.status,
        StatusCode::UNAUTHORIZED,
        "cnf.jkt null, no DPoP"
    );
    assert!(
        refused.challenge.contains("invalid_token"),
        "cnf.jkt null, no DPoP"
    );

    // With DPoP allowed, the same token goes through with no proof at all.
    let layer = hs256_builder::<TestClaims>()
        .dpop(Dpop::allowed(BASE))
        .build()
        .unwrap();
    let verified = layer.verify(&token).map(|_| ());
    let dpop = start(layer).await;
    let answer = dpop.bearer(&token).await;
    assert_ne!(
        answer.status,
        StatusCode::OK,
        "a token whose cnf names the jkt method (value null) passed a DPoP layer as a Bearer \
         token without any proof, although the policy counted jkt as a binding this layer \
         checks and a layer without DPoP refuses the very same token: the DPoP check \
         (crate::cnf::read, Option<String>) and the strict reader disagree on what is bound"
    );
    assert_eq!(dpop.hits.count(), 0, "the handler was reached");
    assert!(
        verified.is_err(),
        "JwtAuthLayer::verify on the DPoP layer accepts the cnf.jkt=null token too"
    );
}

/// The certificate-bound counterpart: a layer with `.certificate_bound_tokens()` accepts a
/// token whose `cnf` has `"x5t#S256": null` from a client that presented no certificate at
/// all; a layer without the setting refuses it as bound.
#[tokio::test]
async fn regression_x5t_null_never_passes_a_certificate_bound_layer_without_certificate() {
    let token = raw_token(r#""cnf":{"x5t#S256":null}"#);

    let plain = start(hs256_builder::<TestClaims>().build().unwrap()).await;
    // Refused: as malformed claims (a checked method's value is a string).
    let refused = plain.bearer(&token).await;
    assert_eq!(
        refused.status,
        StatusCode::UNAUTHORIZED,
        "cnf.x5t#S256 null, no mTLS"
    );
    assert!(
        refused.challenge.contains("invalid_token"),
        "cnf.x5t#S256 null, no mTLS"
    );

    let layer = hs256_builder::<TestClaims>()
        .certificate_bound_tokens()
        .build()
        .unwrap();
    let verified = layer.verify(&token).map(|_| ());
    let mtls = start(layer).await;
    let answer = mtls.bearer(&token).await;
    assert_ne!(
        answer.status,
        StatusCode::OK,
        "a token whose cnf names the x5t#S256 method (value null) passed a certificate-bound \
         layer over a connection with no client certificate: the policy counted x5t#S256 as \
         checked, the mTLS check (crate::cnf::read) saw no binding"
    );
    assert!(
        verified.is_err(),
        "JwtAuthLayer::verify on the certificate-bound layer accepts it too"
    );
}

// =============================================================================================
// Held: JSON tricks in `cnf` on a layer that checks no binding

#[tokio::test]
async fn holds_cnf_json_tricks_on_a_layer_that_checks_no_binding() {
    let srv = start(hs256_builder::<TestClaims>().build().unwrap()).await;
    let many: String = (0..300).map(|i| format!(r#""m{i}":{i},"#)).collect();
    let huge = format!(r#""cnf":{{{many}"jkt":"T"}}"#);
    let huge_other = format!(r#""cnf":{{{}}}"#, many.trim_end_matches(','));
    // serde_json skips an ignored value without recursion, so depth is no crash either way.
    let deep = format!(r#""cnf":{{"a":{}1{}}}"#, "[".repeat(2500), "]".repeat(2500));
    let deep_cnf = format!(r#""cnf":{}1{}"#, "[".repeat(2500), "]".repeat(2500));
    let spill: String = (0..20).map(|i| format!(r#""a{i}":0,"#)).collect();
    let spill_dup = format!(r#"{spill}"cnf":{{}},"c\u006ef":{{"jkt":"T"}}"#);
    let cases: Vec<(String, Option<AuthError>)> = vec![
        // Every member name of cnf is a method; none is checked here.
        (r#""cnf":{"jkt":"T"}"#.into(), Some(UNSUPPORTED)),
        (r#""cnf":{"x5t#S256":"T"}"#.into(), Some(UNSUPPORTED)),
        (r#""cnf":{"j\u006bt":"T"}"#.into(), Some(UNSUPPORTED)),
        (r#""cnf":{"x5t\u0023S256":"T"}"#.into(), Some(UNSUPPORTED)),
        (r#""cnf":{"JKT":"T"}"#.into(), Some(UNSUPPORTED)),
        (r#""cnf":{"x5t#s256":"T"}"#.into(), Some(UNSUPPORTED)),
        (r#""cnf":{"X5T#S256":"T"}"#.into(), Some(UNSUPPORTED)),
        ("\"cnf\":{\"jk\u{442}\":\"T\"}".into(), Some(UNSUPPORTED)),
        ("\"cnf\":{\"\u{ff4a}kt\":\"T\"}".into(), Some(UNSUPPORTED)),
        (r#""cnf":{"jkt\u0000":"T"}"#.into(), Some(UNSUPPORTED)),
        (r#""cnf":{"":"T"}"#.into(), Some(UNSUPPORTED)),
        (r#""cnf":{"jwk":{"kty":"EC"}}"#.into(), Some(UNSUPPORTED)),
        (r#""cnf":{"kid":"k"}"#.into(), Some(UNSUPPORTED)),
        (huge, Some(UNSUPPORTED)),
        (huge_other, Some(UNSUPPORTED)),
        (deep, Some(UNSUPPORTED)),
        // Not a JSON object, or not valid JSON: a malformed claims set.
        (r#""cnf":null"#.into(), Some(MALFORMED_CLAIMS)),
        (r#""cnf":[]"#.into(), Some(MALFORMED_CLAIMS)),
        (r#""cnf":[{"jkt":"T"}]"#.into(), Some(MALFORMED_CLAIMS)),
        (r#""cnf":["T"]"#.into(), Some(MALFORMED_CLAIMS)),
        (r#""cnf":1"#.into(), Some(MALFORMED_CLAIMS)),
        (r#""cnf":true"#.into(), Some(MALFORMED_CLAIMS)),
        (r#""cnf":"jkt""#.into(), Some(MALFORMED_CLAIMS)),
        (deep_cnf, Some(MALFORMED_CLAIMS)),
        // Duplicates: the claim, spelled the same or escaped, before or after a spill of the
        // member set; a member of cnf.
        (
            r#""cnf":{},"cnf":{"jkt":"T"}"#.into(),
            Some(MALFORMED_CLAIMS),
        ),
        (
            r#""cnf":{},"c\u006ef":{"jkt":"T"}"#.into(),
            Some(MALFORMED_CLAIMS),
        ),
        (
            r#""c\u006ef":{},"cnf":{"jkt":"T"}"#.into(),
            Some(MALFORMED_CLAIMS),
        ),
        (spill_dup, Some(MALFORMED_CLAIMS)),
        (r#""cnf":{"jkt":"T","jkt":"U"}"#.into(), Some(UNSUPPORTED)),
        // An empty cnf names no method; a cnf nested in another claim is not the token's.
        (r#""cnf":{}"#.into(), None),
        (r#""app":{"cnf":{"jkt":"T"}}"#.into(), None),
    ];
    for (extra, want) in cases {
        let answer = srv.bearer(&raw_token(&extra)).await;
        match want {
            Some(reason) => answer.assert_invalid(&reason, &extra),
            None => answer.assert_passed(&extra),
        }
    }
    // A method's value of the wrong type: refused, as unchecked or as malformed.
    for extra in [
        r#""cnf":{"jkt":null}"#,
        r#""cnf":{"jkt":1}"#,
        r#""cnf":{"x5t#S256":null}"#,
    ] {
        let answer = srv.bearer(&raw_token(extra)).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{extra}");
        assert!(
            [UNSUPPORTED, MALFORMED_CLAIMS]
                .iter()
                .any(|r| answer.challenge.contains(&r.to_string())),
            "{extra}: {:?}",
            answer.challenge
        );
    }
    assert_eq!(
        srv.hits.count(),
        2,
        "only the two unbound tokens reached the handler"
    );

    // Opting back in takes bound tokens as bearer tokens, but not a malformed cnf.
    let bearer = start(
        hs256_builder::<TestClaims>()
            .accept_bound_tokens_as_bearer()
            .build()
            .unwrap(),
    )
    .await;
    bearer
        .bearer(&raw_token(r#""cnf":{"jkt":"T","jwk":{}}"#))
        .await
        .assert_passed("bearer mode, bound token");
    bearer
        .bearer(&raw_token(r#""cnf":null"#))
        .await
        .assert_invalid(&MALFORMED_CLAIMS, "bearer mode, cnf null");
    bearer
        .bearer(&raw_token(r#""cnf":{},"cnf":{}"#))
        .await
        .assert_invalid(&MALFORMED_CLAIMS, "bearer mode, duplicate cnf");
}

// =============================================================================================
// Held: the strict reader and the DPoP check agree on every non-null binding

#[tokio::test]
async fn holds_dpop_layer_json_tricks_need_the_proof_of_the_bound_key() {
    let alice = Holder::new("ec");
    let mallory = Holder::new("ed");
    let layer = hs256_builder::<TestClaims>()
        .dpop(Dpop::allowed(BASE))
        .build()
        .unwrap();
    let srv = start(layer).await;
    let jkt = &alice.jkt;
    let mj = &mallory.jkt;
    let dpop_required = AuthError::DpopRequired;

    // Bound through an escaped member name: the DPoP check sees the binding too.
    let escaped = raw_token(&format!(r#""cnf":{{"j\u006bt":"{jkt}"}}"#));
    srv.bearer(&escaped)
        .await
        .assert_invalid(&dpop_required, "escaped jkt as Bearer");
    let mallory_says = srv.dpop(&escaped, &mallory).await;
    assert_eq!(
        mallory_says.status,
        StatusCode::UNAUTHORIZED,
        "another key's proof"
    );
    srv.dpop(&escaped, &alice)
        .await
        .assert_passed("escaped jkt with the bound key's proof");

    // A binding the DPoP check cannot read (not a string, an array, a duplicate) is refused,
    // with or without a proof.
    for extra in [
        format!(r#""cnf":{{"jkt":["{jkt}"]}}"#),
        format!(r#""cnf":{{"jkt":{{"v":"{jkt}"}}}}"#),
        format!(r#""cnf":["{jkt}"]"#),
        format!(r#""cnf":{{"jkt":"{mj}","jkt":"{jkt}"}}"#),
        format!(r#""cnf":{{"jkt":"{jkt}"}},"cnf":{{}}"#),
        format!(r#""cnf":{{}},"cnf":{{"jkt":"{jkt}"}}"#),
    ] {
        let token = raw_token(&extra);
        let bearer = srv.bearer(&token).await;
        assert_eq!(bearer.status, StatusCode::UNAUTHORIZED, "Bearer {extra}");
        let proven = srv.dpop(&token, &alice).await;
        assert_eq!(proven.status, StatusCode::UNAUTHORIZED, "DPoP {extra}");
    }

    // Bound by jkt and by a method this layer does not check: refused even with the proof.
    for extra in [
        format!(r#""cnf":{{"jkt":"{jkt}","x5t#S256":"x"}}"#),
        format!(r#""cnf":{{"jkt":"{jkt}","jwk":{{"kty":"EC"}}}}"#),
        format!(r#""cnf":{{"jkt":"{jkt}","JKT":"{jkt}"}}"#),
    ] {
        srv.dpop(&raw_token(&extra), &alice)
            .await
            .assert_invalid(&UNSUPPORTED, &extra);
    }

    // Unbound tokens still pass as Bearer; a plainly bound one needs its proof.
    srv.bearer(&raw_token(""))
        .await
        .assert_passed("unbound Bearer");
    srv.bearer(&raw_token(r#""cnf":{}"#))
        .await
        .assert_passed("empty cnf Bearer");
    let bound = raw_token(&format!(r#""cnf":{{"jkt":"{jkt}"}}"#));
    srv.bearer(&bound)
        .await
        .assert_invalid(&dpop_required, "bound Bearer");
    srv.dpop(&bound, &alice)
        .await
        .assert_passed("bound with proof");
    assert_eq!(srv.hits.count(), 4);
}

#[tokio::test]
async fn holds_certificate_bound_layer_json_tricks_need_the_certificate() {
    let layer = hs256_builder::<TestClaims>()
        .certificate_bound_tokens()
        .build()
        .unwrap();
    let srv = start(layer).await;
    let a = x5t(CERT_A);
    let mismatch = AuthError::CertificateMismatch;

    let escaped = raw_token(&format!(r#""cnf":{{"x5t\u0023S256":"{a}"}}"#));
    srv.bearer(&escaped)
        .await
        .assert_invalid(&mismatch, "escaped x5t#S256, no certificate");
    srv.bearer_with_cert(&escaped, "b")
        .await
        .assert_invalid(&mismatch, "escaped x5t#S256, another certificate");
    srv.bearer_with_cert(&escaped, "a")
        .await
        .assert_passed("escaped x5t#S256, its certificate");

    for extra in [
        format!(r#""cnf":{{"x5t#S256":"{a}","x5t#S256":"{a}"}}"#),
        format!(r#""cnf":{{"x5t#S256":["{a}"]}}"#),
        format!(r#""cnf":["","{a}"]"#),
        format!(r#""cnf":{{"x5t#S256":"{a}"}},"c\u006ef":{{}}"#),
    ] {
        let answer = srv.bearer_with_cert(&raw_token(&extra), "a").await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{extra}");
    }
    // Case variants and other methods are not the one checked here.
    for extra in [
        format!(r#""cnf":{{"X5T#S256":"{a}"}}"#),
        format!(r#""cnf":{{"x5t#s256":"{a}"}}"#),
        format!(r#""cnf":{{"x5t":"{a}"}}"#),
        format!(r#""cnf":{{"x5t#S256":"{a}","jkt":"k"}}"#),
    ] {
        srv.bearer_with_cert(&raw_token(&extra), "a")
            .await
            .assert_invalid(&UNSUPPORTED, &extra);
    }
    // Without DPoP, a DPoP-bound token is refused over the right certificate too.
    srv.bearer_with_cert(&raw_token(r#""cnf":{"jkt":"k"}"#), "a")
        .await
        .assert_invalid(&UNSUPPORTED, "jkt on an mTLS-only layer");
    assert_eq!(srv.hits.count(), 1);
}

// =============================================================================================
// Held: the verified-token cache

#[tokio::test]
async fn holds_cache_never_serves_a_bound_token_past_its_check() {
    use tower_jwt_auth::cache::CacheConfig;

    // A refused token is never cached: asked twice, verified twice.
    let layer = hs256_builder::<TestClaims>()
        .cache(CacheConfig::default())
        .build()
        .unwrap();
    let stats = layer.clone();
    let srv = start(layer).await;
    let bound = raw_token(r#""cnf":{"jkt":"T"}"#);
    for _ in 0..3 {
        srv.bearer(&bound)
            .await
            .assert_invalid(&UNSUPPORTED, "bound token, cache on");
    }
    let s = stats.cache_stats().unwrap();
    assert_eq!(
        (s.entries, s.hits),
        (0, 0),
        "a refused token entered the cache"
    );

    // DPoP: a bound token cached after a proven request still needs a proof of its key.
    let alice = Holder::new("ec");
    let mallory = Holder::new("ed");
    let layer = hs256_builder::<TestClaims>()
        .dpop(Dpop::allowed(BASE))
        .cache(CacheConfig::default())
        .build()
        .unwrap();
    let stats = layer.clone();
    let srv = start(layer).await;
    let token = raw_token(&format!(r#""cnf":{{"jkt":"{}"}}"#, alice.jkt));
    srv.dpop(&token, &alice)
        .await
        .assert_passed("first, proven");
    assert_eq!(stats.cache_stats().unwrap().entries, 1);
    srv.bearer(&token)
        .await
        .assert_invalid(&AuthError::DpopRequired, "cached, as Bearer");
    let wrong = srv.dpop(&token, &mallory).await;
    assert_eq!(
        wrong.status,
        StatusCode::UNAUTHORIZED,
        "cached, another key's proof"
    );
    srv.dpop(&token, &alice)
        .await
        .assert_passed("cached, proven again");
    assert_eq!(stats.cache_stats().unwrap().hits, 1);
    assert_eq!(srv.hits.count(), 2);

    // Certificate-bound: cached after a request with its certificate, still refused without.
    let layer = hs256_builder::<TestClaims>()
        .certificate_bound_tokens()
        .cache(CacheConfig::default())
        .build()
        .unwrap();
    let stats = layer.clone();
    let srv = start(layer).await;
    let token = raw_token(&format!(r#""cnf":{{"x5t#S256":"{}"}}"#, x5t(CERT_A)));
    srv.bearer_with_cert(&token, "a")
        .await
        .assert_passed("with certificate");
    srv.bearer_with_cert(&token, "a")
        .await
        .assert_passed("cached, with certificate");
    assert_eq!(stats.cache_stats().unwrap().hits, 1);
    srv.bearer(&token)
        .await
        .assert_invalid(&AuthError::CertificateMismatch, "cached, no certificate");
    srv.bearer_with_cert(&token, "b")
        .await
        .assert_invalid(&AuthError::CertificateMismatch, "cached, other certificate");
}

// =============================================================================================
// Held: tenants, `verify`, the issue module and the testing kit

#[tokio::test]
async fn holds_every_tenant_gets_the_layers_confirmation_methods() {
    const OTHER_ISS: &str = "https://other.test";
    const OTHER_SECRET: &[u8] = b"the other tenant's secret, 32 bytes or more";
    let tenants = || {
        JwtAuthLayer::<TestClaims>::builder()
            .tenant(Tenant::new(ISSUER).key(Key::hmac(Algorithm::HS256, SECRET)))
            .tenant(
                Tenant::new(OTHER_ISS)
                    .key(Key::hmac(Algorithm::HS256, OTHER_SECRET))
                    .audience("other-api"),
            )
            .audience(AUDIENCE)
    };
    let other_token = |cnf: Value| {
        let t = now();
        let claims = json!({"sub": "alice", "iss": OTHER_ISS, "aud": "other-api",
                            "iat": t, "exp": t + 3600, "cnf": cnf});
        common::sign_raw(
            &json!({"alg": "HS256", "typ": "JWT"}),
            &claims,
            Algorithm::HS256,
            &jsonwebtoken::EncodingKey::from_secret(OTHER_SECRET),
        )
    };
    let alice = Holder::new("ec");

    let srv = start(tenants().build().unwrap()).await;
    for token in [
        hs256_token(json!({"cnf": {"jkt": alice.jkt}})),
        other_token(json!({"jkt": alice.jkt})),
        other_token(json!({"x5t#S256": "x"})),
    ] {
        srv.bearer(&token)
            .await
            .assert_invalid(&UNSUPPORTED, "tenant layer without DPoP");
    }
    srv.bearer(&other_token(json!({})))
        .await
        .assert_passed("unbound, second tenant");

    let srv = start(tenants().dpop(Dpop::allowed(BASE)).build().unwrap()).await;
    let bound = other_token(json!({"jkt": alice.jkt}));
    srv.bearer(&bound)
        .await
        .assert_invalid(&AuthError::DpopRequired, "second tenant, Bearer");
    srv.dpop(&bound, &alice)
        .await
        .assert_passed("second tenant, proven");
    srv.dpop(
        &other_token(json!({"jkt": alice.jkt, "x5t#S256": "x"})),
        &alice,
    )
    .await
    .assert_invalid(&UNSUPPORTED, "second tenant, x5t#S256 unchecked");
}

#[test]
fn holds_verify_outside_a_request_applies_the_confirmation_policy() {
    let bound = hs256_token(json!({"cnf": {"jkt": "T"}}));
    let x5t_bound = hs256_token(json!({"cnf": {"x5t#S256": x5t(CERT_A)}}));
    let other = hs256_token(json!({"cnf": {"jwk": {"kty": "EC"}}}));
    let err = |layer: &JwtAuthLayer<TestClaims>, token: &str| layer.verify(token).err();

    let plain = hs256_builder::<TestClaims>().build().unwrap();
    assert_eq!(err(&plain, &bound), Some(UNSUPPORTED));
    assert_eq!(err(&plain, &x5t_bound), Some(UNSUPPORTED));
    assert_eq!(err(&plain, &other), Some(UNSUPPORTED));
    assert_eq!(err(&plain, &hs256_token(json!({"cnf": {}}))), None);

    let dpop = hs256_builder::<TestClaims>()
        .dpop(Dpop::allowed(BASE))
        .build()
        .unwrap();
    assert_eq!(err(&dpop, &bound), Some(AuthError::DpopRequired));
    assert_eq!(err(&dpop, &x5t_bound), Some(UNSUPPORTED));

    let mtls = hs256_builder::<TestClaims>()
        .certificate_bound_tokens()
        .build()
        .unwrap();
    assert_eq!(err(&mtls, &x5t_bound), Some(AuthError::CertificateMismatch));
    assert_eq!(err(&mtls, &bound), Some(UNSUPPORTED));

    let bearer = hs256_builder::<TestClaims>()
        .accept_bound_tokens_as_bearer()
        .build()
        .unwrap();
    assert_eq!(err(&bearer, &bound), None);
    assert_eq!(err(&bearer, &other), None);
}

#[tokio::test]
async fn holds_issued_and_refreshed_bound_tokens_are_refused_where_unchecked() {
    use tower_jwt_auth::issue::RefreshTokens;
    use tower_jwt_auth::revocation::MemoryRevocation;

    let claims = json!({"roles": [], "cnf": {"jkt": "T"}});
    let issued = common::access_issuer().issue("alice", &claims).unwrap();
    let srv = start(hs256_builder::<TestClaims>().build().unwrap()).await;
    srv.bearer(&issued.token)
        .await
        .assert_invalid(&UNSUPPORTED, "TokenIssuer, cnf in the claims");

    // A refresh token carries the application claims nested (`app`): its own verification
    // does not see a binding, and the access tokens of the family stay bound.
    let sessions = RefreshTokens::<Value>::new(
        common::access_issuer(),
        b"a refresh secret of its own, 32 bytes or more",
        Arc::new(MemoryRevocation::new()),
    )
    .unwrap();
    let pair = sessions.issue("alice", &claims).unwrap();
    let next = sessions.refresh(&pair.refresh.token).await.unwrap();
    for token in [&pair.access.token, &next.access.token] {
        srv.bearer(token)
            .await
            .assert_invalid(&UNSUPPORTED, "RefreshTokens access token");
    }
    let bearer = start(
        hs256_builder::<TestClaims>()
            .accept_bound_tokens_as_bearer()
            .build()
            .unwrap(),
    )
    .await;
    bearer
        .bearer(&next.access.token)
        .await
        .assert_passed("bearer mode");
    assert_eq!(srv.hits.count(), 0);
}

#[cfg(feature = "test-util")]
#[tokio::test]
async fn holds_testing_kit_layers_refuse_unchecked_bindings() {
    use tower_jwt_auth::testing::TestIssuer;

    let issuer = TestIssuer::new();
    let srv = start(issuer.builder::<TestClaims>().build().unwrap()).await;
    let bound = issuer
        .token()
        .subject("alice")
        .claim("cnf", json!({"jkt": "T"}))
        .sign();
    srv.bearer(&bound)
        .await
        .assert_invalid(&UNSUPPORTED, "TestIssuer token with cnf");
    let unbound = issuer.token().subject("alice").sign();
    srv.bearer(&unbound).await.assert_passed("TestIssuer token");
}

// =============================================================================================
// Held: the b64token syntax check

/// RFC 6750 §2.1: the `b64token` characters other than the trailing `=`s.
fn grammar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

/// Bytes a header value can carry on the wire (RFC 9110 §5.5: VCHAR, SP, HTAB, obs-text).
fn sendable(b: u8) -> bool {
    b == b'\t' || (0x20..=0x7e).contains(&b) || b >= 0x80
}

#[tokio::test]
async fn holds_b64token_every_byte_value_in_a_header() {
    let srv = start(hs256_builder::<TestClaims>().build().unwrap()).await;
    let bad = AuthError::MalformedCredentials;
    for b in (0..=255u8).filter(|b| sendable(*b)) {
        // In the middle, at the end, before trailing `=`s, and (but for whitespace, which
        // separates the scheme) first.
        let mut shapes: Vec<(Vec<u8>, bool)> = vec![
            (vec![b'a', b, b'b'], grammar(b)),
            (vec![b'a', b'b', b, b'=', b'='], grammar(b) || b == b'='),
        ];
        if b != b' ' && b != b'\t' {
            shapes.push((vec![b, b'a', b'b'], grammar(b)));
        }
        for (credential, ok) in shapes {
            let mut value = b"Bearer ".to_vec();
            value.extend_from_slice(&credential);
            let answer = srv.get_raw("/me", &[("authorization", &value)]).await;
            let what = format!(
                "byte {b:#04x} in {:?}",
                String::from_utf8_lossy(&credential)
            );
            if ok {
                // Grammatical, not a JWS: the token itself is refused.
                answer.assert_invalid(&AuthError::Malformed, &what);
            } else {
                answer.assert_refused(StatusCode::BAD_REQUEST, &bad, &what);
            }
        }
    }
    // A trailing byte that is not `=` after `=`s, and `=` alone or only `=`s.
    for credential in ["ab=c", "ab==c", "ab=.", "=", "==", "===", "=a", "a=b="] {
        srv.get(&[("authorization", &format!("Bearer {credential}"))])
            .await
            .assert_refused(StatusCode::BAD_REQUEST, &bad, credential);
    }
    // The DPoP scheme and a raw-token header go through the same check.
    let dpop = start(
        hs256_builder::<TestClaims>()
            .dpop(Dpop::allowed(BASE))
            .token_from_header("x-token")
            .build()
            .unwrap(),
    )
    .await;
    for (name, value) in [
        ("authorization", &b"DPoP a\x80b"[..]),
        ("authorization", b"DPoP a=b"),
        ("authorization", b"DPoP ="),
        ("x-token", b"a\xffb"),
        ("x-token", b"a b"),
        ("x-token", b"=="),
    ] {
        dpop.get_raw("/me", &[(name, value)]).await.assert_refused(
            StatusCode::BAD_REQUEST,
            &bad,
            &format!("{name}: {:?}", String::from_utf8_lossy(value)),
        );
    }
    // The scheme with nothing after it.
    srv.get(&[("authorization", "Bearer")])
        .await
        .assert_refused(StatusCode::BAD_REQUEST, &bad, "Bearer alone");
    assert_eq!(srv.hits.count(), 0);
}

#[tokio::test]
async fn holds_b64token_padding_and_size_limits_with_a_real_token() {
    let token = hs256_token(json!({}));
    let len = token.len();
    let at = |max: usize| {
        hs256_builder::<TestClaims>()
            .max_token_size(max)
            .build()
            .unwrap()
    };

    let exact = start(at(len)).await;
    exact
        .bearer(&token)
        .await
        .assert_passed("exactly at the cap");
    // `=` padding counts toward the cap, and a padded token is not the token.
    let padded = format!("{token}=");
    let too_large = exact.bearer(&padded).await;
    assert_ne!(too_large.status, StatusCode::OK, "padded, one over the cap");
    assert!(
        too_large
            .challenge
            .contains(&AuthError::TokenTooLarge.to_string()),
        "{:?}",
        too_large.challenge
    );
    let below = start(at(len - 1)).await;
    let answer = below.bearer(&token).await;
    assert_ne!(answer.status, StatusCode::OK, "one over the cap");
    assert!(
        answer
            .challenge
            .contains(&AuthError::TokenTooLarge.to_string()),
        "{:?}",
        answer.challenge
    );
    let roomy = start(at(len + 8)).await;
    for padded in [format!("{token}="), format!("{token}==")] {
        roomy
            .bearer(&padded)
            .await
            .assert_invalid(&AuthError::Malformed, "trailing = on a JWS");
    }
    // Spaces before the token do not count toward the cap.
    exact
        .get(&[("authorization", &format!("Bearer    {token}"))])
        .await
        .assert_passed("spaces after the scheme");
    assert_eq!(
        exact.hits.count() + roomy.hits.count() + below.hits.count(),
        2
    );
}

#[tokio::test]
async fn holds_b64token_in_cookies_and_query() {
    let token = hs256_token(json!({}));
    let layer = hs256_builder::<TestClaims>()
        .token_from_cookie("at")
        .token_from_query("access_token")
        .build()
        .unwrap();
    let srv = start(layer).await;
    let bad = AuthError::MalformedCredentials;

    srv.get(&[("cookie", &format!("at={token}"))])
        .await
        .assert_passed("cookie");
    srv.get(&[("cookie", &format!("at=\"{token}\""))])
        .await
        .assert_passed("quoted cookie");
    for value in [
        &b"a\x80b"[..],
        b"a\xffb",
        b"===",
        b"a=b",
        b"\"a b\"",
        b"a,b",
        b"\"\"\"",
    ] {
        let mut header = b"x=1; at=".to_vec();
        header.extend_from_slice(value);
        let answer = srv.get_raw("/me", &[("cookie", &header)]).await;
        answer.assert_refused(
            StatusCode::BAD_REQUEST,
            &bad,
            &format!("cookie {:?}", String::from_utf8_lossy(value)),
        );
    }
    srv.get(&[("cookie", &format!("at={token}=="))])
        .await
        .assert_invalid(&AuthError::Malformed, "cookie, padded token");

    let q = |s: &str| format!("/me?access_token={s}");
    assert_eq!(srv.get_raw(&q(&token), &[]).await.status, StatusCode::OK);
    for v in ["a%3Db", "%41bc", "=", "a=b", "a%20b", "a'b", "a!b"] {
        srv.get_raw(&q(v), &[]).await.assert_refused(
            StatusCode::BAD_REQUEST,
            &bad,
            &format!("query {v}"),
        );
    }
    srv.get_raw(&q(&format!("{token}==")), &[])
        .await
        .assert_invalid(&AuthError::Malformed, "query, padded token");
    // The same token in two places is one token; another one is refused.
    srv.get_raw(
        &q(&token),
        &[("authorization", format!("Bearer {token}").as_bytes())],
    )
    .await
    .assert_passed("query and header agree");
    srv.get_raw(
        &q(&format!("{token}=")),
        &[("authorization", format!("Bearer {token}").as_bytes())],
    )
    .await
    .assert_refused(
        StatusCode::BAD_REQUEST,
        &AuthError::MultipleTokens,
        "padded differs",
    );
    assert_eq!(srv.hits.count(), 4);
}
