//! Claims types of every common shape receive exactly what serde_json makes of the payload,
//! and the same errors, whether the layer reads the claims set in one pass or two (see
//! `src/claims_set.rs`). Each token is verified twice: a type the single pass cannot serve
//! switches the layer to two passes after the first token, and the second must agree.

use crate::common;

use std::collections::BTreeMap;
use std::fmt::Debug;

use common::*;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tower_jwt_auth::AuthError;

/// What serde_json alone makes of the token's claims.
fn expected<C: DeserializeOwned>(overrides: Value) -> C {
    serde_json::from_value(claims_with(overrides)).unwrap()
}

fn check<C>(overrides: Value)
where
    C: DeserializeOwned + PartialEq + Debug + Send + Sync + 'static,
{
    let layer = hs256_layer::<C>();
    let token = hs256_token(overrides.clone());
    let want: C = expected(overrides);
    for round in 0..2 {
        let got = layer
            .verify(&token)
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(*got, want, "round {round}");
    }
}

#[derive(Debug, PartialEq, Deserialize)]
struct Plain {
    sub: String,
    roles: Vec<String>,
    exp: Option<u64>,
    iat: f64,
}

#[derive(Debug, PartialEq, Deserialize)]
struct Flattened {
    sub: String,
    #[serde(flatten)]
    rest: BTreeMap<String, Value>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, PartialEq, Deserialize)]
struct WithAudience {
    aud: Audience,
    #[serde(default)]
    nbf: Option<i64>,
}

/// A newtype: serde asks for a newtype struct, which only the two-pass path serves.
#[derive(Debug, PartialEq, Deserialize)]
struct Newtype(Value);

#[test]
fn every_shape_gets_what_serde_json_makes_of_the_payload() {
    check::<Plain>(json!({}));
    check::<Plain>(json!({ "sub": "al\"ice\u{e9}" }));
    check::<Value>(json!({ "x": { "y": [1, 2.5, -3] } }));
    check::<Flattened>(json!({ "extra": [true, null] }));
    check::<WithAudience>(json!({ "aud": [AUDIENCE, "other"], "nbf": -5 }));
    check::<WithAudience>(json!({}));
    check::<Newtype>(json!({ "jti": "j-1" }));
}

#[test]
fn errors_are_the_same_on_either_path() {
    // Claims that do not fit the type, and claims that break the policy as well: the policy
    // speaks first, on both paths and on every round.
    let cases = [
        (json!({ "roles": 1 }), AuthError::ClaimsShape),
        (
            json!({ "roles": 1, "exp": now() - 3600 }),
            AuthError::Expired,
        ),
        (json!({ "aud": "elsewhere" }), AuthError::WrongAudience),
        (json!({ "exp": "soon" }), AuthError::MalformedClaims),
    ];
    let plain = hs256_layer::<Plain>();
    let newtype = hs256_layer::<Newtype>();
    // Switch the newtype layer to two passes first.
    assert!(newtype.verify(&hs256_token(json!({}))).is_ok());
    for (overrides, want) in cases {
        let token = hs256_token(overrides.clone());
        for round in 0..2 {
            assert_eq!(
                plain.verify(&token).err(),
                Some(want.clone()),
                "{overrides} {round}"
            );
            if want != AuthError::ClaimsShape {
                assert_eq!(
                    newtype.verify(&token).err(),
                    Some(want.clone()),
                    "{overrides}"
                );
            }
        }
    }
}
