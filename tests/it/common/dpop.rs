//! A DPoP client (RFC 9449) for the tests: a key pair, its RFC 7638 thumbprint (computed by
//! jsonwebtoken, an implementation independent of the crate's), and proofs signed with it.

use jsonwebtoken::EncodingKey;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use serde_json::{Value, json};
use tower_jwt_auth::Algorithm;

use super::{merge, private_key, public_jwk, sha256_b64, sign_raw};

/// A client's key pair, as a DPoP client holds it.
pub struct Holder {
    pub key: EncodingKey,
    pub alg: Algorithm,
    /// The public key as the proofs carry it.
    pub jwk: Value,
    /// RFC 7638 thumbprint: what a bound token's `cnf.jkt` names.
    pub jkt: String,
}

impl Holder {
    /// The test key `which` ([`private_key`]).
    pub fn new(which: &str) -> Holder {
        let (key, alg) = private_key(which);
        let jwk = public_jwk(alg, &key);
        let parsed: Jwk = serde_json::from_value(jwk.clone()).unwrap();
        let jkt = parsed.thumbprint(ThumbprintHash::SHA256).unwrap();
        Holder { key, alg, jwk, jkt }
    }

    /// A proof of `htm` `htu` at `iat` for `token` (a random `jti`, `ath` of the token),
    /// `claims` merged into its claims (`null` removes one) and `header` into its header.
    pub fn sign(
        &self,
        htm: &str,
        htu: &str,
        iat: Value,
        token: &str,
        claims: Value,
        header: Value,
    ) -> String {
        let mut c = json!({
            "jti": format!("{:032x}", rand::random::<u128>()),
            "htm": htm,
            "htu": htu,
            "iat": iat,
            "ath": sha256_b64(token.as_bytes()),
        });
        merge(&mut c, claims);
        let mut h = json!({ "typ": "dpop+jwt", "alg": self.alg.name(), "jwk": self.jwk });
        merge(&mut h, header);
        sign_raw(&h, &c, self.alg, &self.key)
    }
}
