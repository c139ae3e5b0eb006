use http::{HeaderMap, HeaderName, Uri, header};

use crate::{AuthError, BuildError};

/// One place a token may be found.
///
/// By default only `Authorization: Bearer <token>` is read (RFC 6750 §2.1; the scheme name is
/// case-insensitive). Other sources are added in the order they should be looked at:
///
/// ```
/// use tower_jwt_auth::{JwtAuthLayer, TokenSource};
///
/// #[derive(Clone, serde::Deserialize)]
/// struct MyClaims { sub: String }
///
/// let layer = JwtAuthLayer::<MyClaims>::builder()
///     .hs256(b"an example secret that is 32 bytes+")
///     .token_from_cookie("access_token")        // Bearer header, then this cookie
///     .build()
///     .unwrap();
///
/// // Or replace the list outright:
/// let layer = JwtAuthLayer::<MyClaims>::builder()
///     .hs256(b"an example secret that is 32 bytes+")
///     .token_sources([TokenSource::header("x-api-token")])
///     .build()
///     .unwrap();
/// # let _ = layer;
/// ```
///
/// Every source is read on every request. RFC 6750 §2 allows one transmission method per
/// request, so a request carrying two *different* tokens (two `Authorization` headers, or a
/// header and a cookie that disagree) is answered 400 `invalid_request` instead of guessing
/// which one the client meant. The same token sent twice is accepted.
///
/// Query parameters (RFC 6750 §2.3) are read only when [`TokenSource::query`] is configured:
/// URLs end up in logs and `Referer` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenSource {
    /// `Authorization: Bearer <token>` (RFC 6750 §2.1).
    Bearer,
    /// A named header holding the token, optionally behind a scheme (`<scheme> <token>`,
    /// scheme compared case-insensitively).
    Header {
        /// The header name.
        name: String,
        /// The scheme that must precede the token, if any.
        scheme: Option<String>,
    },
    /// A cookie, by name.
    Cookie(String),
    /// A query parameter, by name (RFC 6750 §2.3). Opt-in only.
    Query(String),
}

impl TokenSource {
    /// A header holding the raw token.
    pub fn header(name: impl Into<String>) -> TokenSource {
        TokenSource::Header {
            name: name.into(),
            scheme: None,
        }
    }

    /// A header holding `<scheme> <token>`.
    pub fn header_with_scheme(name: impl Into<String>, scheme: impl Into<String>) -> TokenSource {
        TokenSource::Header {
            name: name.into(),
            scheme: Some(scheme.into()),
        }
    }

    /// A cookie.
    pub fn cookie(name: impl Into<String>) -> TokenSource {
        TokenSource::Cookie(name.into())
    }

    /// A query parameter. Tokens in URLs leak into logs and `Referer` headers (RFC 6750 §5.3);
    /// use only where no header can be set, such as a browser's WebSocket handshake.
    pub fn query(name: impl Into<String>) -> TokenSource {
        TokenSource::Query(name.into())
    }

    /// Checks names once, at build time, into the form the request path reads.
    pub(crate) fn compile(&self) -> Result<Source, BuildError> {
        let bad = || BuildError::InvalidSource(format!("{self:?}"));
        Ok(match self {
            TokenSource::Bearer => Source::Header {
                name: header::AUTHORIZATION,
                scheme: Some("Bearer".into()),
                dpop: false,
            },
            TokenSource::Header { name, scheme } => {
                let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
                if scheme.as_deref().is_some_and(|s| !is_token(s)) {
                    return Err(bad());
                }
                Source::Header {
                    name,
                    scheme: scheme.clone(),
                    dpop: false,
                }
            }
            TokenSource::Cookie(name) if is_token(name) => Source::Cookie(name.clone()),
            TokenSource::Query(name) if is_token(name) => Source::Query(name.clone()),
            TokenSource::Cookie(_) | TokenSource::Query(_) => return Err(bad()),
        })
    }
}

/// A [`TokenSource`] with its names checked.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    Header {
        name: HeaderName,
        scheme: Option<String>,
        /// `Authorization: DPoP <token>` (RFC 9449 §7.1), a source only while the layer
        /// checks DPoP proofs: a proof must go with the token.
        dpop: bool,
    },
    Cookie(String),
    Query(String),
}

/// A token found in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found<'r> {
    pub token: &'r str,
    /// True when only cookies carried it: the request may be forged cross-site (see `csrf`).
    pub cookie_only: bool,
    /// True when it came as `Authorization: DPoP <token>`: a proof must go with it.
    #[cfg_attr(not(feature = "dpop"), allow(dead_code))]
    pub dpop: bool,
}

/// Finds the request's token. `Ok(None)`: no source holds one. The token borrows from the
/// request; nothing is copied.
///
/// A candidate longer than `max_len` is refused before its bytes are even looked at, so an
/// oversized header costs no more than a short one.
pub(crate) fn extract<'r>(
    sources: &[Source],
    headers: &'r HeaderMap,
    uri: &'r Uri,
    max_len: usize,
) -> Result<Option<Found<'r>>, AuthError> {
    let mut found: Option<Found<'r>> = None;
    // `dpop`: offered under the DPoP scheme. The same token under two schemes is two
    // transmission methods whose meanings differ, so it is refused like two tokens.
    let mut offer = |token: &'r str, cookie: bool, dpop: bool| -> Result<(), AuthError> {
        match &mut found {
            Some(prev) if prev.token != token || prev.dpop != dpop => {
                Err(AuthError::MultipleTokens)
            }
            Some(prev) => {
                prev.cookie_only &= cookie;
                Ok(())
            }
            None => {
                found = Some(Found {
                    token,
                    cookie_only: cookie,
                    dpop,
                });
                Ok(())
            }
        }
    };
    for source in sources {
        match source {
            Source::Header { name, scheme, dpop } => {
                for value in headers.get_all(name) {
                    if let Some(token) = from_header(value.as_bytes(), scheme.as_deref(), max_len)?
                    {
                        offer(token, false, *dpop)?;
                    }
                }
            }
            Source::Cookie(name) => {
                for value in cookie_values(headers, name) {
                    offer(b64token(value, max_len)?, true, false)?;
                }
            }
            Source::Query(name) => {
                for pair in uri.query().unwrap_or("").split('&') {
                    if let Some((k, v)) = pair.split_once('=')
                        && k == name
                        && !v.is_empty()
                    {
                        offer(b64token(v.as_bytes(), max_len)?, false, false)?;
                    }
                }
            }
        }
    }
    Ok(found)
}

/// Reads `<scheme> 1*SP <token>` (or the bare token when no scheme is configured). A header
/// with another scheme (`Basic …`) is not ours and yields `None`; our scheme with a missing or
/// malformed token is a malformed request.
fn from_header<'r>(
    value: &'r [u8],
    scheme: Option<&str>,
    max_len: usize,
) -> Result<Option<&'r str>, AuthError> {
    let rest = match scheme {
        None => value,
        Some(scheme) => {
            let n = scheme.len();
            let Some(head) = value.get(..n) else {
                return Ok(None);
            };
            if !head.eq_ignore_ascii_case(scheme.as_bytes()) {
                return Ok(None);
            }
            match value.get(n) {
                None => return Err(AuthError::MalformedCredentials),
                Some(b' ') => {}
                // `Bearerx …` is another scheme, not ours.
                Some(_) => return Ok(None),
            }
            let rest = &value[n..];
            &rest[rest.iter().position(|b| *b != b' ').unwrap_or(rest.len())..]
        }
    };
    b64token(rest, max_len).map(Some)
}

/// RFC 6750 §2.1 `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
/// Longer than `max_len`: refused unread.
fn b64token(bytes: &[u8], max_len: usize) -> Result<&str, AuthError> {
    if bytes.len() > max_len {
        return Err(AuthError::TokenTooLarge);
    }
    let body = &bytes[..bytes.len() - bytes.iter().rev().take_while(|b| **b == b'=').count()];
    // Range comparisons folded without an early exit: the compiler checks 16 bytes at a time.
    let outside = body
        .iter()
        .fold(0u8, |acc, b| acc | u8::from(!is_b64token_byte(*b)));
    if body.is_empty() || outside != 0 {
        return Err(AuthError::MalformedCredentials);
    }
    // Every byte is ASCII now, so this cannot fail.
    std::str::from_utf8(bytes).map_err(|_| AuthError::MalformedCredentials)
}

/// The `b64token` characters (the trailing `=`s aside).
/// A byte of `b64token` other than its trailing `=` (RFC 6750 §2.1): ALPHA, DIGIT, `-`, `.`,
/// `_`, `~`, `+`, `/`. Written as range checks joined without short-circuits, so the scan
/// above compiles to vector compares; `b64token_bytes_are_rfc_6750s` checks it against the
/// grammar for every byte.
fn is_b64token_byte(b: u8) -> bool {
    // `-` `.` `/` and the digits are the one run 0x2D..=0x39; `b | 0x20` folds upper case
    // onto lower case and maps no other byte into `a..=z`.
    (b.wrapping_sub(b'-') < 13)
        | ((b | 0x20).wrapping_sub(b'a') < 26)
        | (b == b'+')
        | (b == b'_')
        | (b == b'~')
}

/// The values of every cookie called `name` in the request's `Cookie` headers, in order: the
/// crate's one cookie parser, for token sources and the CSRF double-submit check alike.
///
/// Each header is a `cookie-string` (RFC 6265 §4.2.1): `name=value` pairs separated by `;`,
/// whitespace around names and values ignored. Names are compared exactly (they are
/// case-sensitive). A value wrapped in DQUOTEs (§4.1.1: `cookie-value = *cookie-octet /
/// ( DQUOTE *cookie-octet DQUOTE )`) is unwrapped by [`unquote`]: the quotes are not part of
/// the value. Empty values (a cleared cookie, or `""`) are skipped.
pub(crate) fn cookie_values<'h>(
    headers: &'h HeaderMap,
    name: &str,
) -> impl Iterator<Item = &'h [u8]> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(move |value| {
            value
                .as_bytes()
                .split(|b| *b == b';')
                .filter_map(move |pair| {
                    let pair = pair.trim_ascii();
                    let eq = pair.iter().position(|b| *b == b'=')?;
                    if pair[..eq].trim_ascii() != name.as_bytes() {
                        return None;
                    }
                    let value = unquote(pair[eq + 1..].trim_ascii());
                    (!value.is_empty()).then_some(value)
                })
        })
}

/// `value` without one pair of surrounding DQUOTEs, if it has them (RFC 6265 §4.1.1), else
/// `value` itself. A lone `"` is left alone.
pub(crate) fn unquote(value: &[u8]) -> &[u8] {
    match value {
        [b'"', inner @ .., b'"'] => inner,
        _ => value,
    }
}

/// Whether `name` is an RFC 9110 §5.6.2 `token`, as a cookie name must be (RFC 6265 §4.1.1
/// `cookie-name = token`).
pub(crate) fn is_token(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(is_tchar)
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b64token_is_rfc_6750s_grammar() {
        for token in ["a.b-_c.d09Z", "a.b~c", "a+b.c", "a.b/c", "abc==", "a"] {
            assert_eq!(b64token(token.as_bytes(), 100), Ok(token), "{token}");
        }
        for bad in ["", "=", "a=b", "a b", "a,b", "é", "a\0"] {
            assert_eq!(
                b64token(bad.as_bytes(), 100),
                Err(AuthError::MalformedCredentials),
                "{bad:?}"
            );
        }
        assert_eq!(b64token(b"abcd", 3), Err(AuthError::TokenTooLarge));
    }

    #[test]
    fn b64token_bytes_are_rfc_6750s() {
        for b in 0..=255u8 {
            let grammar = b.is_ascii_alphabetic()
                || b.is_ascii_digit()
                || [b'-', b'.', b'_', b'~', b'+', b'/'].contains(&b);
            assert_eq!(is_b64token_byte(b), grammar, "byte {b:#04x}");
        }
    }

    fn run(
        sources: &[TokenSource],
        headers: &[(&str, &str)],
        uri: &str,
    ) -> Result<Option<String>, AuthError> {
        let sources: Vec<Source> = sources.iter().map(|s| s.compile().unwrap()).collect();
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let uri: Uri = uri.parse().unwrap();
        extract(&sources, &map, &uri, 8192).map(|t| t.map(|f| f.token.to_owned()))
    }

    /// A request's headers and URI, and what the sources find in it.
    type Case<'a> = (
        &'a [(&'a str, &'a str)],
        &'a str,
        Result<Option<&'a str>, AuthError>,
    );

    fn check(sources: &[TokenSource], cases: &[Case<'_>]) {
        for (headers, uri, want) in cases {
            let want = want.clone().map(|t| t.map(str::to_owned));
            assert_eq!(run(sources, headers, uri), want, "{headers:?} {uri}");
        }
    }

    #[test]
    fn bearer() {
        use AuthError::{MalformedCredentials as Bad, MultipleTokens as Two};
        const A: &str = "authorization";
        check(
            &[TokenSource::Bearer],
            &[
                (&[(A, "Bearer a.b.c")], "/", Ok(Some("a.b.c"))),
                (&[(A, "bEaReR   a.b.c")], "/", Ok(Some("a.b.c"))),
                (&[(A, "Basic dXNlcjpwYXNz")], "/", Ok(None)),
                (&[(A, "Bearerx a")], "/", Ok(None)),
                (&[(A, "Bearer")], "/", Err(Bad)),
                (&[(A, "Bearer a b")], "/", Err(Bad)),
                (&[], "/", Ok(None)),
                (&[(A, "Bearer a.b.c"), (A, "Bearer x.y.z")], "/", Err(Two)),
                (
                    &[(A, "Bearer a.b.c"), (A, "Bearer a.b.c")],
                    "/",
                    Ok(Some("a.b.c")),
                ),
            ],
        );
    }

    #[test]
    fn cookie_header_and_query() {
        use AuthError::{MalformedCredentials as Bad, MultipleTokens as Two};
        let sources = [
            TokenSource::Bearer,
            TokenSource::cookie("at"),
            TokenSource::query("access_token"),
        ];
        check(
            &sources,
            &[
                (&[("cookie", "x=1; at=a.b.c")], "/", Ok(Some("a.b.c"))),
                (&[("cookie", "at=\"a.b.c\"")], "/", Ok(Some("a.b.c"))),
                (&[("cookie", "at=")], "/", Ok(None)),
                (
                    &[("cookie", "at=a.b.c"), ("authorization", "Bearer x.y.z")],
                    "/",
                    Err(Two),
                ),
                (&[], "/p?x=1&access_token=a.b.c", Ok(Some("a.b.c"))),
                (&[], "/p?access_token=a%2Eb", Err(Bad)),
            ],
        );
        let headers = [
            TokenSource::header("x-token"),
            TokenSource::header_with_scheme("x-auth", "JWT"),
        ];
        check(
            &headers,
            &[
                (&[("x-token", "a.b.c")], "/", Ok(Some("a.b.c"))),
                (&[("x-auth", "jwt a.b.c")], "/", Ok(Some("a.b.c"))),
            ],
        );
    }

    #[test]
    fn cookie_only_is_tracked() {
        let sources =
            [TokenSource::Bearer, TokenSource::cookie("at")].map(|s| s.compile().unwrap());
        let uri: Uri = "/".parse().unwrap();
        let cookie_only = |map: &HeaderMap| {
            extract(&sources, map, &uri, 8192)
                .unwrap()
                .unwrap()
                .cookie_only
        };
        let mut map = HeaderMap::new();
        map.append(header::COOKIE, "at=a.b.c".parse().unwrap());
        assert!(cookie_only(&map));
        map.append(header::AUTHORIZATION, "Bearer a.b.c".parse().unwrap());
        assert!(!cookie_only(&map));
    }

    #[test]
    fn one_cookie_parser_unwraps_dquotes_once() {
        let mut map = HeaderMap::new();
        for value in [
            "a=1; at=\"x.y.z\" ; at = p.q.r",
            "at=\"\"; at=; At=no; at=\"; at=\"\"q\"\"",
        ] {
            map.append(header::COOKIE, value.parse().unwrap());
        }
        let values: Vec<&[u8]> = cookie_values(&map, "at").collect();
        assert_eq!(
            values,
            [&b"x.y.z"[..], b"p.q.r", b"\"", b"\"q\""],
            "quotes around a value are removed once; empty values are skipped"
        );
        assert_eq!(unquote(b"\""), b"\"");
        assert_eq!(unquote(b"\"\""), b"");
    }

    #[test]
    fn names_are_checked() {
        assert!(TokenSource::cookie("a b").compile().is_err());
        assert!(TokenSource::header("bad header").compile().is_err());
        assert!(TokenSource::header_with_scheme("x", "").compile().is_err());
    }
}
