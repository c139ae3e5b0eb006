//! What the benches share: keys from the crate's tests/data, the claims type, tokens per
//! algorithm, the rejection-path tokens (bad signature, garbage, 64 KiB), and the request and
//! inner service of the framework-less benches.
#![allow(dead_code)]

use std::convert::Infallible;
use std::hint::black_box;

use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, Response};
use serde::{Deserialize, Serialize};
use tower_jwt_auth::Claims;
use tower_jwt_auth::issue::TokenIssuer;
use tower_jwt_auth::{Algorithm, JwtAuthLayer, Key};

/// HMAC secret: ASCII, because jwt-authorizer's `from_secret` takes a `&str`.
pub const SECRET: &str = "0123456789abcdef0123456789abcdef-bench-secret";
pub const ISSUER: &str = "https://id.bench";
pub const AUDIENCE: &str = "bench-api";
/// Exactly 64 KiB: far over every size cap we know of (ours defaults to 8 KiB).
pub const OVERSIZED_LEN: usize = 64 * 1024;

/// The claims every verifier deserializes (the README's example type).
/// `Clone` only because jwt-authorizer's `JwtClaims` extractor clones them.
#[derive(Debug, Clone, Deserialize)]
pub struct BenchClaims {
    pub sub: String,
    pub roles: Vec<String>,
}

/// The application claims the issuer signs (it adds iss, aud, sub, iat, exp, jti itself).
#[derive(Serialize)]
struct Roles {
    roles: Vec<String>,
}

pub fn data(name: &str) -> Vec<u8> {
    let path = format!("{}/../tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn data_str(name: &str) -> String {
    String::from_utf8(data(name)).expect("PEM is UTF-8")
}

/// One algorithm under test: how to sign, and the public half to verify with.
pub struct AlgCase {
    /// Lower-case name used in benchmark ids (`hs256`, `rs256`, ...).
    pub name: &'static str,
    pub alg: Algorithm,
    /// The HMAC secret, or the public key in PEM.
    pub verify_key: Vec<u8>,
    signer: TokenIssuer,
}

impl AlgCase {
    pub fn hs256() -> AlgCase {
        AlgCase {
            name: "hs256",
            alg: Algorithm::HS256,
            verify_key: SECRET.as_bytes().to_vec(),
            signer: TokenIssuer::hs256(SECRET).expect("HS256 issuer"),
        }
    }

    fn pem(name: &'static str, alg: Algorithm, private: &str, public: &str) -> AlgCase {
        AlgCase {
            name,
            alg,
            verify_key: data(public),
            signer: TokenIssuer::pem(alg, data(private)).expect("PEM issuer"),
        }
    }

    pub fn rs256() -> AlgCase {
        Self::pem(
            "rs256",
            Algorithm::RS256,
            "rsa_2048_private.pem",
            "rsa_2048_public.pem",
        )
    }

    pub fn ps256() -> AlgCase {
        Self::pem(
            "ps256",
            Algorithm::PS256,
            "rsa_2048_private.pem",
            "rsa_2048_public.pem",
        )
    }

    pub fn es256() -> AlgCase {
        Self::pem(
            "es256",
            Algorithm::ES256,
            "ec_p256_private.pem",
            "ec_p256_public.pem",
        )
    }

    pub fn eddsa() -> AlgCase {
        Self::pem(
            "eddsa",
            Algorithm::EdDSA,
            "ed25519_private.pem",
            "ed25519_public.pem",
        )
    }

    /// A valid token: RFC 9068 shape (`typ` at+jwt), iss/aud/sub/iat/exp/jti, roles ["admin"],
    /// one hour of validity — longer than any benchmark run.
    pub fn token(&self) -> String {
        let issuer = self
            .signer
            .clone()
            .issuer(ISSUER)
            .audience(AUDIENCE)
            .lifetime(std::time::Duration::from_secs(3600));
        issuer
            .issue(
                "alice",
                &Roles {
                    roles: vec!["admin".into()],
                },
            )
            .expect("issue")
            .token
    }

    /// Our layer configured like the peers: this key, issuer, audience, defaults otherwise.
    pub fn layer(&self) -> JwtAuthLayer<BenchClaims> {
        self.builder().build().expect("layer")
    }

    /// The same layer with the verified-token cache (feature `cache`).
    #[cfg(feature = "cache")]
    #[allow(dead_code)]
    pub fn layer_cached(
        &self,
        config: tower_jwt_auth::cache::CacheConfig,
    ) -> JwtAuthLayer<BenchClaims> {
        self.builder().cache(config).build().expect("layer")
    }

    /// A builder with this key, issuer and audience.
    pub fn builder(&self) -> tower_jwt_auth::JwtAuthBuilder<BenchClaims> {
        let key = match self.alg {
            Algorithm::HS256 => Key::hmac(self.alg, &self.verify_key),
            alg => Key::pem(alg, &self.verify_key),
        };
        JwtAuthLayer::<BenchClaims>::builder()
            .key(key)
            .issuer(ISSUER)
            .audience(AUDIENCE)
    }
}

/// `token` with one character of its signature changed: well-formed, wrong signature.
pub fn bad_signature(token: &str) -> String {
    let dot = token.rfind('.').expect("three segments");
    let mut bytes = token.as_bytes().to_vec();
    // The first signature character carries 6 full bits (no padding bits), so the decoded
    // signature really differs.
    bytes[dot + 1] = if bytes[dot + 1] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("ASCII")
}

/// Not a JWT at all.
pub const GARBAGE: &str = "abc";

/// A 64 KiB token: the valid token's header and signature around a huge (unsigned) payload,
/// so a verifier without a size cap base64-decodes and hashes all of it before refusing.
pub fn oversized(token: &str) -> String {
    let mut parts = token.split('.');
    let header = parts.next().expect("header");
    let signature = token.rsplit('.').next().expect("signature");
    let payload_len = OVERSIZED_LEN - header.len() - signature.len() - 2;
    // A JSON object {"sub":"alice","pad":"aaa…"} encoded to exactly `payload_len` characters
    // where possible; base64url lengths ≡ 1 (mod 4) do not exist, so one more 'a' then.
    let prefix = br#"{"sub":"alice","pad":""#;
    let mut n = payload_len * 3 / 4;
    let payload = loop {
        let mut json = prefix.to_vec();
        json.resize(n.saturating_sub(2).max(prefix.len()), b'a');
        json.extend_from_slice(b"\"}");
        let b64 = b64url(&json);
        if b64.len() >= payload_len {
            break b64;
        }
        n += 1;
    };
    let token = format!("{header}.{payload}.{signature}");
    assert!(
        token.len() == OVERSIZED_LEN || token.len() == OVERSIZED_LEN + 1,
        "oversized token is {} bytes",
        token.len()
    );
    token
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The request the layer sees: fresh per iteration; the header value is cloned (a reference
/// count), not re-parsed.
pub fn request(auth: &HeaderValue) -> Request<()> {
    Request::builder()
        .uri("/me")
        .header(AUTHORIZATION, auth.clone())
        .body(())
        .expect("request")
}

/// The trivial inner service: answers 200 and touches the claims when the layer put some.
pub async fn inner(req: Request<()>) -> Result<Response<()>, Infallible> {
    black_box(
        req.extensions()
            .get::<Claims<BenchClaims>>()
            .map(|c| c.sub.len()),
    );
    Ok(Response::new(()))
}
