//! The compact JWS on the wire, parsed once: its segments, checked byte by byte, and its
//! JOSE header, decoded and checked against the header policy.
//!
//! Everything here runs before any signature is checked, on bytes an attacker chose, so it is
//! strict: a size cap before anything is read, the unpadded base64url alphabet, exactly three
//! segments, and a header that must be a JSON object with unique members, no `crit`, no key
//! carried in the token and a known `alg`. The payload is decoded here too, and read only by
//! the tenant choice (its `iss`, unverified) and, after the signature, by the claims check.

use std::borrow::Cow;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::AuthError;

/// A compact JWS (RFC 7515 §7.1) whose form and header passed: what every later step reads.
#[derive(Debug)]
pub(crate) struct Jws<'t> {
    /// The token as received: the cache key.
    #[cfg_attr(not(any(feature = "cache", feature = "remote")), allow(dead_code))]
    pub token: &'t str,
    /// `header '.' payload`: the JWS signing input (RFC 7515 §5.1 step 8).
    pub signing_input: &'t str,
    /// The signature segment, still base64url.
    pub signature: &'t str,
    /// The decoded header.
    pub header: JoseHeader,
    /// The decoded payload: not read before the signature is checked, except for the tenant
    /// choice.
    pub payload: Vec<u8>,
}

impl<'t> Jws<'t> {
    /// Checks the form of `token` and parses its header. Refuses, in this order: more than
    /// `max_len` bytes, a byte outside the unpadded base64url alphabet or the dot (RFC 7515 §2,
    /// RFC 4648 §5), other than three segments or an empty header or signature, a header that
    /// does not decode or fails [`parse_header`], and a payload that does not decode.
    pub(crate) fn parse(token: &'t str, max_len: usize) -> Result<Jws<'t>, AuthError> {
        if token.len() > max_len {
            return Err(AuthError::TokenTooLarge);
        }
        if !is_jws_alphabet(token.as_bytes()) {
            return Err(AuthError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed);
        };
        // The payload may be empty (RFC 7515 allows it; no claims set is, and the claims check
        // refuses it); the header and the signature may not.
        if header.is_empty() || signature.is_empty() {
            return Err(AuthError::Malformed);
        }
        let mut buf = [0u8; 256];
        let header = parse_header(&decode_into(header, &mut buf, AuthError::MalformedHeader)?)?;
        Ok(Jws {
            token,
            signing_input: &token[..token.len() - signature.len() - 1],
            signature,
            header,
            payload: decode(payload, AuthError::MalformedClaims)?,
        })
    }
}

/// Whether every byte is in the base64url alphabet or a dot.
pub(crate) fn is_jws_alphabet(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .fold(0u8, |acc, b| acc | NOT_JWS[usize::from(*b)])
        == 0
}

/// 1 for every byte that cannot appear in a compact JWS: anything but the base64url alphabet
/// and the dot.
static NOT_JWS: [u8; 256] = {
    let mut table = [1u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' {
            table[i] = 0;
        }
        i += 1;
    }
    table
};

/// Decodes one segment: unpadded base64url only, and canonical, since the decoder refuses
/// non-zero trailing bits, so two different strings never decode to the same bytes.
pub(crate) fn decode(segment: &str, err: AuthError) -> Result<Vec<u8>, AuthError> {
    URL_SAFE_NO_PAD.decode(segment).map_err(|_| err)
}

/// [`decode`] into `buf` when the segment fits, onto the heap otherwise: the header and the
/// signature of a common token are decoded without allocating.
pub(crate) fn decode_into<'b>(
    segment: &str,
    buf: &'b mut [u8],
    err: AuthError,
) -> Result<Cow<'b, [u8]>, AuthError> {
    if base64::decoded_len_estimate(segment.len()) > buf.len() {
        return decode(segment, err).map(Cow::Owned);
    }
    let len = URL_SAFE_NO_PAD
        .decode_slice(segment, buf)
        .map_err(|_| err)?;
    Ok(Cow::Borrowed(&buf[..len]))
}

/// The JOSE header members the layer acts on (RFC 7515 §4.1).
#[derive(Debug)]
pub(crate) struct JoseHeader {
    pub alg: Algorithm,
    pub kid: Option<String>,
    pub typ: Option<String>,
}

/// Parses a decoded header. Refuses, in this order: anything that is not a JSON object with
/// unique member names (RFC 7515 §5.2 step 4 allows rejecting duplicates, so we do), a `crit`
/// member (RFC 7515 §4.1.11: we understand no extension), a key or key reference carried in
/// the token (`jwk`, `jku`, `x5u`: RFC 8725 §3.10, keys come from configuration only), and an
/// `alg` that is `none` or unknown (RFC 8725 §3.1). The allow-list check is the caller's.
pub(crate) fn parse_header(json: &[u8]) -> Result<JoseHeader, AuthError> {
    // RFC 7515 §5.2 step 3: the header must be UTF-8 JSON. serde_json skips members it is not
    // asked for without checking their encoding, so the whole text is checked first.
    let json = std::str::from_utf8(json).map_err(|_| AuthError::MalformedHeader)?;
    let mut de = serde_json::Deserializer::from_str(json);
    let raw = RawHeader::deserialize(&mut de).map_err(|_| AuthError::MalformedHeader)?;
    de.end().map_err(|_| AuthError::MalformedHeader)?;
    if raw.crit {
        return Err(AuthError::CriticalHeader);
    }
    if raw.embedded_key {
        return Err(AuthError::EmbeddedKey);
    }
    let alg = raw.alg.ok_or(AuthError::MalformedHeader)?;
    // RFC 8725 §3.1: `none` and unknown names are refused here, before any key is looked at.
    let alg = crate::algorithm::from_name(&alg).ok_or(AuthError::AlgorithmNotAllowed)?;
    Ok(JoseHeader {
        alg: alg.jwt(),
        kid: raw.kid.map(Cow::into_owned),
        typ: raw.typ.map(Cow::into_owned),
    })
}

struct RawHeader<'a> {
    alg: Option<Cow<'a, str>>,
    kid: Option<Cow<'a, str>>,
    typ: Option<Cow<'a, str>>,
    crit: bool,
    embedded_key: bool,
}

impl<'de> serde::Deserialize<'de> for RawHeader<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(RawHeaderVisitor)
    }
}

struct RawHeaderVisitor;

impl<'de> Visitor<'de> for RawHeaderVisitor {
    type Value = RawHeader<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JOSE header object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut h = RawHeader {
            alg: None,
            kid: None,
            typ: None,
            crit: false,
            embedded_key: false,
        };
        let mut seen = MemberSet::default();
        while let Some(key) = map.next_key::<CowStr<'de>>()? {
            if !seen.insert(&key.0) {
                return Err(de::Error::custom("duplicate header member"));
            }
            let name: &str = &key.0;
            match name {
                "alg" => h.alg = Some(map.next_value::<CowStr<'de>>()?.0),
                "kid" => h.kid = Some(map.next_value::<CowStr<'de>>()?.0),
                "typ" => h.typ = Some(map.next_value::<CowStr<'de>>()?.0),
                "crit" => {
                    map.next_value::<IgnoredAny>()?;
                    h.crit = true;
                }
                "jwk" | "jku" | "x5u" => {
                    map.next_value::<IgnoredAny>()?;
                    h.embedded_key = true;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(h)
    }
}

/// Remembers the member names seen in one JSON object, to refuse duplicates (RFC 7515 §4,
/// RFC 7519 §4). Names borrowed from the input go into a small inline array; only unusual
/// objects (escaped names, or more than 16 members) spill into a hash set, which also keeps a
/// token stuffed with members from costing quadratic time.
#[derive(Default)]
pub(crate) struct MemberSet<'de> {
    inline: [&'de str; 16],
    len: usize,
    spilled: Option<std::collections::HashSet<Cow<'de, str>>>,
}

impl<'de> MemberSet<'de> {
    /// Returns false when `name` was already inserted.
    // The `Cow` itself (not a `&str`): a name borrowed from the input is kept without copying.
    #[allow(clippy::ptr_arg)]
    pub(crate) fn insert(&mut self, name: &Cow<'de, str>) -> bool {
        if self.inline[..self.len].contains(&name.as_ref()) {
            return false;
        }
        if let Some(spilled) = &mut self.spilled {
            return spilled.insert(name.clone());
        }
        match name {
            Cow::Borrowed(borrowed) if self.len < self.inline.len() => {
                self.inline[self.len] = borrowed;
                self.len += 1;
                true
            }
            _ => {
                let mut spilled: std::collections::HashSet<Cow<'de, str>> = self.inline[..self.len]
                    .iter()
                    .map(|n| Cow::Borrowed(*n))
                    .collect();
                let fresh = spilled.insert(name.clone());
                self.spilled = Some(spilled);
                fresh
            }
        }
    }
}

/// A JSON string borrowed from the input when it has no escapes, owned otherwise.
pub(crate) struct CowStr<'a>(pub Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(CowStrVisitor)
    }
}

struct CowStrVisitor;

impl<'de> Visitor<'de> for CowStrVisitor {
    type Value = CowStr<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(CowStr(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(CowStr(Cow::Owned(v.to_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `token` passes the form checks (whatever its header and payload decode to).
    fn form_ok(token: &str, max_len: usize) -> Result<(), AuthError> {
        match Jws::parse(token, max_len) {
            Err(e @ (AuthError::Malformed | AuthError::TokenTooLarge)) => Err(e),
            _ => Ok(()),
        }
    }

    #[test]
    fn alphabet_boundaries() {
        for ok in ["a.b.c", "A-_.z09.Z", "-.-._"] {
            assert!(form_ok(ok, 100).is_ok(), "{ok}");
        }
        for bad in [
            "a.b.c=",
            "a.b.c+",
            "a/.b.c",
            "a.b.\u{ff}",
            "a.b.c\0",
            "a.b.c~",
            "a.b.c%",
        ] {
            assert!(form_ok(bad, 100).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parse_reads_three_segments() {
        // {"alg":"HS256","kid":"k"} . {"a":1} . "sig"
        let token = "eyJhbGciOiJIUzI1NiIsImtpZCI6ImsifQ.eyJhIjoxfQ.c2ln";
        let jws = Jws::parse(token, 100).unwrap();
        assert_eq!(
            jws.signing_input,
            "eyJhbGciOiJIUzI1NiIsImtpZCI6ImsifQ.eyJhIjoxfQ"
        );
        assert_eq!(jws.signature, "c2ln");
        assert_eq!(jws.payload, br#"{"a":1}"#);
        assert_eq!(jws.header.alg, Algorithm::HS256);
        assert_eq!(jws.header.kid.as_deref(), Some("k"));
    }

    #[test]
    fn parse_refuses_what_cannot_be_a_jws() {
        for bad in [
            "", "a.b", "a.b.c.d", ".b.c", "a.b.", "a=.b.c", "a+.b.c", "a/.b.c", "a.b.c d",
        ] {
            assert!(form_ok(bad, 100).is_err(), "{bad:?}");
        }
        assert_eq!(form_ok("a.b.c", 4).unwrap_err(), AuthError::TokenTooLarge);
        for (token, want) in [
            ("eyJhbGciOiJIUzI1NiJ9.%.c2ln", Err(AuthError::Malformed)),
            (
                "eyJhbGciOiJIUzI1NiJ9.eyJhIjox.c2ln",
                Ok(br#"{"a":1"#.to_vec()),
            ),
            ("e30.eyJhIjoxfQ.c2ln", Err(AuthError::MalformedHeader)),
        ] {
            assert_eq!(Jws::parse(token, 100).map(|j| j.payload), want, "{token}");
        }
    }

    #[test]
    fn header_policy() {
        use AuthError::{AlgorithmNotAllowed, CriticalHeader, EmbeddedKey, MalformedHeader};
        for (json, want) in [
            (r#"{"alg":"none"}"#, AlgorithmNotAllowed),
            (r#"{"alg":"HS256","crit":["b64"]}"#, CriticalHeader),
            (r#"{"alg":"HS256","jku":"https://x"}"#, EmbeddedKey),
            (r#"{"alg":"HS256","alg":"HS256"}"#, MalformedHeader),
            (r#"{"alg":1}"#, MalformedHeader),
            (r#"[]"#, MalformedHeader),
        ] {
            assert_eq!(parse_header(json.as_bytes()).unwrap_err(), want, "{json}");
        }
        let h = parse_header(br#"{"alg":"RS256","kid":"k1","typ":"at+jwt","x5t":"abc"}"#).unwrap();
        assert_eq!(h.alg, Algorithm::RS256);
        assert_eq!(h.kid.as_deref(), Some("k1"));
        assert_eq!(h.typ.as_deref(), Some("at+jwt"));
    }
}
