//! CSRF defence for tokens carried in cookies.
//!
//! An `HttpOnly` cookie keeps the token away from page scripts (XSS cannot read it), but the
//! browser attaches it to every request to the site, including requests a hostile page makes
//! it send: cross-site request forgery. A token in the `Authorization` header is immune, since
//! a page on another origin cannot set that header without a CORS grant.
//!
//! So when the token came from a cookie only and the method is not safe (RFC 9110 §9.2.1:
//! anything but GET, HEAD, OPTIONS, TRACE), the layer asks for proof that the request comes
//! from the site itself, as OWASP's CSRF cheat sheet recommends:
//!
//! - an `Origin` header (or, without one, the origin of `Referer`) equal to the request's own
//!   origin (its `Host`), or listed with [`CsrfPolicy::allow_origin`]; or
//! - a double-submit header equal to a CSRF cookie ([`CsrfPolicy::double_submit`]), which a
//!   foreign page can neither read nor set.
//!
//! Otherwise the answer is 403. This is on by default whenever a cookie source is configured.
//!
//! ```
//! use tower_jwt_auth::{CsrfPolicy, JwtAuthLayer};
//!
//! #[derive(Clone, serde::Deserialize)]
//! struct MyClaims { sub: String }
//!
//! let auth = JwtAuthLayer::<MyClaims>::builder()
//!     .hs256(b"an example secret that is 32 bytes+")
//!     .token_from_cookie("access_token")
//!     .csrf(CsrfPolicy::same_origin().allow_origin("https://app.example.com"))
//!     .build()
//!     .unwrap();
//! # let _ = auth;
//! ```

use http::header::{COOKIE, HOST, ORIGIN, REFERER};
use http::{HeaderMap, HeaderName, Method, Uri};

use crate::{AuthError, BuildError};

/// What counts as proof that a cookie-authenticated, state-changing request is not forged.
#[derive(Debug, Clone)]
pub struct CsrfPolicy {
    same_origin: bool,
    origins: Vec<String>,
    double_submit: Option<(String, String)>,
}

impl Default for CsrfPolicy {
    fn default() -> Self {
        CsrfPolicy::same_origin()
    }
}

impl CsrfPolicy {
    /// Accepts requests whose `Origin` (or `Referer`) is the request's own origin.
    pub fn same_origin() -> CsrfPolicy {
        CsrfPolicy {
            same_origin: true,
            origins: Vec::new(),
            double_submit: None,
        }
    }

    /// Accepts only the origins listed with [`allow_origin`](Self::allow_origin) (and the
    /// double-submit proof, if configured), not the request's own.
    pub fn allowed_origins_only() -> CsrfPolicy {
        CsrfPolicy {
            same_origin: false,
            origins: Vec::new(),
            double_submit: None,
        }
    }

    /// Also accepts `origin` (`scheme://host[:port]`, compared exactly).
    pub fn allow_origin(mut self, origin: impl Into<String>) -> CsrfPolicy {
        self.origins
            .push(origin.into().trim_end_matches('/').to_owned());
        self
    }

    /// Also accepts requests whose header `header` equals the cookie `cookie` (double submit).
    pub fn double_submit(
        mut self,
        header: impl Into<String>,
        cookie: impl Into<String>,
    ) -> CsrfPolicy {
        self.double_submit = Some((header.into(), cookie.into()));
        self
    }

    pub(crate) fn compile(self) -> Result<Csrf, BuildError> {
        let double_submit = match self.double_submit {
            None => None,
            Some((header, cookie)) => {
                let name = HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| BuildError::InvalidSource(header.clone()))?;
                if cookie.is_empty() || cookie.contains([';', '=', ' ']) {
                    return Err(BuildError::InvalidSource(cookie));
                }
                Some((name, cookie))
            }
        };
        Ok(Csrf {
            same_origin: self.same_origin,
            origins: self.origins,
            double_submit,
        })
    }
}

/// A [`CsrfPolicy`] with its names checked.
#[derive(Debug, Clone)]
pub(crate) struct Csrf {
    same_origin: bool,
    origins: Vec<String>,
    double_submit: Option<(HeaderName, String)>,
}

impl Csrf {
    /// Checks a request whose token came from a cookie only.
    pub(crate) fn check(
        &self,
        method: &Method,
        headers: &HeaderMap,
        uri: &Uri,
    ) -> Result<(), AuthError> {
        if is_safe(method) {
            return Ok(());
        }
        if let Some((header, cookie)) = &self.double_submit
            && let Some(sent) = headers.get(header)
            && !sent.is_empty()
            && cookie_values(headers, cookie).any(|c| constant_time_eq(c, sent.as_bytes()))
        {
            return Ok(());
        }
        let origin = match headers.get(ORIGIN) {
            Some(origin) => Some(origin.as_bytes()),
            None => headers.get(REFERER).and_then(|r| origin_of(r.as_bytes())),
        };
        let Some(origin) = origin else {
            return Err(AuthError::CsrfRejected);
        };
        let Ok(origin) = std::str::from_utf8(origin) else {
            return Err(AuthError::CsrfRejected);
        };
        if self.origins.iter().any(|o| o == origin) {
            return Ok(());
        }
        if self.same_origin && same_authority(origin, headers, uri) {
            return Ok(());
        }
        Err(AuthError::CsrfRejected)
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// `scheme://authority` of an absolute URL.
fn origin_of(url: &[u8]) -> Option<&[u8]> {
    let s = std::str::from_utf8(url).ok()?;
    let after_scheme = s.find("://")? + 3;
    let end = s[after_scheme..]
        .find(['/', '?', '#'])
        .map_or(s.len(), |i| after_scheme + i);
    Some(&url[..end])
}

/// Whether `origin`'s authority is the one the request was sent to (`Host`, or the HTTP/2
/// `:authority`).
fn same_authority(origin: &str, headers: &HeaderMap, uri: &Uri) -> bool {
    let Some((_, authority)) = origin.split_once("://") else {
        return false;
    };
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    host.is_some_and(|h| h.eq_ignore_ascii_case(authority))
}

fn cookie_values<'h>(headers: &'h HeaderMap, name: &'h str) -> impl Iterator<Item = &'h [u8]> {
    headers.get_all(COOKIE).iter().flat_map(move |v| {
        v.as_bytes().split(|b| *b == b';').filter_map(move |pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|b| *b == b'=')?;
            (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
        })
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    !a.is_empty()
        && a.len() == b.len()
        && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(
        policy: CsrfPolicy,
        method: Method,
        headers: &[(&str, &str)],
    ) -> Result<(), AuthError> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        policy
            .compile()
            .unwrap()
            .check(&method, &map, &"/x".parse().unwrap())
    }

    #[test]
    fn origins() {
        let p = || CsrfPolicy::same_origin().allow_origin("https://app.example");
        assert_eq!(check(p(), Method::GET, &[]), Ok(()));
        assert_eq!(check(p(), Method::POST, &[]), Err(AuthError::CsrfRejected));
        assert_eq!(
            check(
                p(),
                Method::POST,
                &[("host", "api.example"), ("origin", "https://api.example")]
            ),
            Ok(())
        );
        assert_eq!(
            check(
                p(),
                Method::POST,
                &[("host", "api.example"), ("origin", "https://evil.example")]
            ),
            Err(AuthError::CsrfRejected)
        );
        assert_eq!(
            check(p(), Method::DELETE, &[("origin", "https://app.example")]),
            Ok(())
        );
        assert_eq!(
            check(
                p(),
                Method::POST,
                &[("host", "api.example"), ("origin", "null")]
            ),
            Err(AuthError::CsrfRejected)
        );
        assert_eq!(
            check(
                p(),
                Method::PUT,
                &[
                    ("host", "api.example"),
                    ("referer", "https://api.example/page?q=1")
                ]
            ),
            Ok(())
        );
        assert_eq!(
            check(
                p(),
                Method::PUT,
                &[
                    ("host", "api.example"),
                    ("referer", "https://api.example.evil/")
                ]
            ),
            Err(AuthError::CsrfRejected)
        );
        let only = CsrfPolicy::allowed_origins_only();
        assert_eq!(
            check(
                only,
                Method::POST,
                &[("host", "api.example"), ("origin", "https://api.example")]
            ),
            Err(AuthError::CsrfRejected)
        );
    }

    #[test]
    fn double_submit() {
        let p = || CsrfPolicy::allowed_origins_only().double_submit("x-csrf-token", "csrf");
        assert_eq!(
            check(
                p(),
                Method::POST,
                &[("cookie", "csrf=abc123"), ("x-csrf-token", "abc123")]
            ),
            Ok(())
        );
        assert_eq!(
            check(
                p(),
                Method::POST,
                &[("cookie", "csrf=abc123"), ("x-csrf-token", "abc124")]
            ),
            Err(AuthError::CsrfRejected)
        );
        assert_eq!(
            check(p(), Method::POST, &[("x-csrf-token", "abc123")]),
            Err(AuthError::CsrfRejected)
        );
        assert_eq!(
            check(
                p(),
                Method::POST,
                &[("cookie", "csrf="), ("x-csrf-token", "")]
            ),
            Err(AuthError::CsrfRejected)
        );
    }
}
