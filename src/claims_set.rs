//! The registered claims of a JWT Claims Set (RFC 7519 §4.1), read strictly.
//!
//! jsonwebtoken's own reading is lenient where a middleware must not be: a claim of the wrong
//! JSON type is skipped rather than refused, and a repeated claim keeps its last value. Here
//! one visitor walks the claims object once and refuses both: every registered claim the
//! policy looks at must have its registered type (a NumericDate is a JSON number, `iss`,
//! `sub` and `jti` are strings, `aud` is a string or an array of strings), and a member name
//! that appears twice is refused (RFC 7519 §4: such a JWT must be rejected or read as its
//! last value; we reject). Members the policy does not read are skipped, and serde_json still
//! checks their syntax. The application's claims type is read afterwards, by serde_json alone,
//! from the same text.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::token::{CowStr, MemberSet};
use crate::validation::AudienceCheck::{Match, NoMatch};
use crate::validation::{ClaimsPolicy, Confirmations, Registered};

/// Reads the registered claims of `payload`, a whole JSON object and nothing after it.
pub(crate) fn read<'a>(
    policy: &ClaimsPolicy,
    payload: &'a str,
) -> Result<Registered<'a>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(payload);
    let registered = de.deserialize_map(ClaimsVisitor { policy })?;
    de.end()?;
    Ok(registered)
}

struct ClaimsVisitor<'p> {
    policy: &'p ClaimsPolicy,
}

impl<'de> Visitor<'de> for ClaimsVisitor<'_> {
    type Value = Registered<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JWT Claims Set (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Registered<'de>, A::Error> {
        let mut r = Registered::default();
        let mut seen = MemberSet::default();
        while let Some(CowStr(name)) = map.next_key::<CowStr<'de>>()? {
            if !seen.insert(&name) {
                return Err(de::Error::custom("duplicate claim"));
            }
            if let Some(i) = self.policy.required.iter().position(|c| *c == name) {
                r.required_seen |= 1 << i;
            }
            match name.as_ref() {
                "exp" => r.times.exp = Some(numeric_date(map.next_value::<f64>()?)?),
                "nbf" => r.times.nbf = Some(numeric_date(map.next_value::<f64>()?)?),
                "iat" => r.times.iat = Some(numeric_date(map.next_value::<f64>()?)?),
                "iss" => r.iss = Some(map.next_value::<CowStr<'de>>()?.0),
                "sub" => r.sub = Some(map.next_value::<CowStr<'de>>()?.0),
                "jti" => r.jti = Some(map.next_value::<CowStr<'de>>()?.0),
                "cnf" => r.cnf = map.next_value::<Cnf>()?.0,
                "aud" => {
                    let Audience(aud) = map.next_value()?;
                    let hit = aud
                        .iter()
                        .any(|a| self.policy.audiences.iter().any(|e| e == a));
                    r.aud = if hit { Match } else { NoMatch };
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(r)
    }
}

/// A NumericDate (RFC 7519 §2): a JSON number, integer or not, read as seconds since the
/// epoch. A string, `null` or any other JSON type is refused.
fn numeric_date<E: de::Error>(v: f64) -> Result<f64, E> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(E::custom("not a finite NumericDate"))
    }
}

/// `aud`: a string or an array of strings (RFC 7519 §4.1.3); anything else is refused.
/// The confirmation methods a `cnf` claim names: its member names (RFC 7800 §3.1: a JSON
/// object). Their values are read where a method is checked (`crate::cnf`).
struct Cnf(Confirmations);

impl<'de> de::Deserialize<'de> for Cnf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Cnf;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a confirmation claim (a JSON object)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Cnf, A::Error> {
                let mut methods = Confirmations::NONE;
                while let Some(CowStr(name)) = map.next_key::<CowStr<'de>>()? {
                    match name.as_ref() {
                        // The methods checked here are strings (RFC 9449 §6.1, RFC 8705
                        // §3.1): another value is a malformed claim, never "no binding",
                        // which is how the checks of `crate::cnf` would read a `null`.
                        "jkt" | "x5t#S256" => {
                            map.next_value::<CowStr<'de>>()?;
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                    methods = methods.with(Confirmations::named(&name));
                }
                Ok(Cnf(methods))
            }
        }
        d.deserialize_map(V)
    }
}

struct Audience<'de>(Vec<Cow<'de, str>>);

impl<'de> de::Deserialize<'de> for Audience<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Audience<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Audience<'de>, E> {
                Ok(Audience(vec![Cow::Borrowed(v)]))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Audience<'de>, E> {
                Ok(Audience(vec![Cow::Owned(v.to_owned())]))
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Audience<'de>, S::Error> {
                let mut list = Vec::new();
                while let Some(CowStr(aud)) = seq.next_element::<CowStr<'de>>()? {
                    list.push(aud);
                }
                Ok(Audience(list))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::AudienceCheck;

    fn policy() -> ClaimsPolicy {
        ClaimsPolicy {
            audiences: vec!["api".into()],
            required: vec!["roles".into()],
            ..ClaimsPolicy::default()
        }
    }

    #[test]
    fn registered_claims_are_read() {
        let r = read(
            &policy(),
            r#"{"exp":10,"nbf":-1,"iat":2.5,"iss":"i","sub":"s","jti":"j\u00e9","aud":["api"],"roles":1}"#,
        )
        .unwrap();
        let t = r.times;
        assert_eq!((t.exp, t.nbf, t.iat), (Some(10.0), Some(-1.0), Some(2.5)));
        assert_eq!(
            (r.iss.as_deref(), r.sub.as_deref(), r.jti.as_deref()),
            (Some("i"), Some("s"), Some("jé"))
        );
        assert_eq!(r.aud, AudienceCheck::Match);
        assert_eq!(r.required_seen, 1);
        let r = read(&policy(), r#"{"aud":"other"}"#).unwrap();
        assert_eq!(r.aud, AudienceCheck::NoMatch);
        assert_eq!(read(&policy(), "{}").unwrap().aud, AudienceCheck::Absent);
    }

    #[test]
    fn wrong_types_duplicates_and_bad_json_are_refused() {
        for doc in [
            r#"{"exp":"10"}"#,
            r#"{"exp":null}"#,
            r#"{"iss":1}"#,
            r#"{"sub":["a"]}"#,
            r#"{"aud":[1]}"#,
            r#"{"aud":{}}"#,
            r#"{"sub":"a","sub":"a"}"#,
            r#"{"x":1,"x":2}"#,
            r#"{"x":[1,]}"#,
            "{\"x\":\"raw\u{1}control\"}",
            r#"[]"#,
            r#""claims""#,
            r#"{"exp":1} x"#,
            r#"{"exp":1"#,
        ] {
            assert!(read(&policy(), doc).is_err(), "{doc}");
        }
    }
}
