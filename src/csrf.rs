use http::header::{HOST, ORIGIN, REFERER};
use http::uri::Authority;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use subtle::ConstantTimeEq;

use crate::source::{cookie_values, is_token, unquote};
use crate::{AuthError, BuildError};

/// `Sec-Fetch-Site` (W3C Fetch Metadata Request Headers): the browser's own verdict.
const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");
/// The host the client asked a reverse proxy for (de facto standard).
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// The scheme the client used to reach a reverse proxy (de facto standard).
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// What counts as proof that a cookie-authenticated, state-changing request is not forged.
///
///
/// An `HttpOnly` cookie keeps the token away from page scripts (XSS cannot read it), but the
/// browser attaches it to every request to the site, including requests a hostile page makes
/// it send: cross-site request forgery. A token in the `Authorization` header is immune, since
/// a page on another origin cannot set that header without a CORS grant.
///
/// So when the token came from a cookie only and the method is not safe (RFC 9110 §9.2.1:
/// anything but GET, HEAD, OPTIONS, TRACE), the layer asks for proof that the request comes
/// from the site itself, as OWASP's CSRF cheat sheet recommends. Any one of these is proof:
///
/// 1. a double-submit header equal to a CSRF cookie ([`CsrfPolicy::double_submit`]), which a
///    foreign page can neither read nor set; compared in constant time;
/// 2. an `Origin` header (or, without one, the origin of `Referer`) listed with
///    [`CsrfPolicy::allow_origin`];
/// 3. with [`CsrfPolicy::same_origin`] (the default): when the browser sends `Sec-Fetch-Site`
///    (Fetch Metadata), its verdict `same-origin` or `none`; otherwise an `Origin` (or
///    `Referer`) equal to the site's own origin.
///
/// Otherwise the answer is 403. This is on by default whenever a cookie source is configured.
///
/// # Origins
///
/// Origins are compared as RFC 6454 §4 defines them: scheme, host *and* port, the scheme and
/// host without regard to case, a missing port standing for the scheme's default (80 for
/// `http`, 443 for `https`; RFC 3986 §6.2.3), so `https://site`, `https://SITE:443` and
/// `HTTPS://site` are one origin while `http://site` and `https://site:8443` are two others.
/// `Origin: null` (an opaque origin, RFC 6454 §7.3) is never a match, nor is an `Origin`
/// carrying a path, user information or several values.
///
/// # `Sec-Fetch-Site` first
///
/// Current browsers add `Sec-Fetch-Site` to requests for `https` (and `localhost`) URLs, and
/// pages cannot set or change it (Fetch's `Sec-` prefix is forbidden to scripts). When it is
/// present it decides, before any comparison of `Origin` with `Host`, because the browser knows
/// the origin it sent the request to, even behind a proxy that rewrites `Host`:
///
/// - `same-origin` passes;
/// - `none` passes: the user started the request (address bar, bookmark), no page did, so it
///   cannot be a forgery; Go's `net/http.CrossOriginProtection` makes the same call;
/// - `same-site`, `cross-site` and anything else are refused unless the `Origin` is listed with
///   [`CsrfPolicy::allow_origin`]. `same-site` is not enough: a sibling subdomain is another
///   origin and may be less trusted.
///
/// # The site's own origin
///
/// Without `Sec-Fetch-Site` (older browsers, plain-`http` sites), the `Origin` is compared with
/// the origin the request was sent to, `<scheme>://<host>[:<port>]`:
///
/// - host and port: the request target's authority when the request line has one (HTTP/2
///   `:authority`, an absolute-form target; RFC 9112 §3.2.2), else the `Host` header
///   (RFC 9110 §7.2; a request with several `Host` headers has no own origin);
/// - scheme: the request target's scheme when it has one (HTTP/2 `:scheme`). An HTTP/1.1
///   request line has none, and TLS is usually ended before the request reaches this layer, so
///   the server cannot tell `http` from `https` by itself. It assumes **`https`**: an
///   `Origin: http://site` never passes for an `https` site, whatever the proxy set-up. A site
///   served over plain `http` says so with [`CsrfPolicy::assume_http`];
/// - behind a reverse proxy, with [`CsrfPolicy::trust_forwarded_headers`] only:
///   `X-Forwarded-Host` and `X-Forwarded-Proto` replace the host and the scheme. Without that
///   call they are ignored, since any client can send them.
///
/// Behind a proxy, listing the public origin with [`CsrfPolicy::allow_origin`] is the simplest
/// set-up; modern browsers pass on `Sec-Fetch-Site` whatever the proxy does to `Host`.
///
/// ```
/// use tower_jwt_auth::{CsrfPolicy, JwtAuthLayer};
///
/// #[derive(Clone, serde::Deserialize)]
/// struct MyClaims { sub: String }
///
/// // An https site whose single-page app is served from another origin.
/// let auth = JwtAuthLayer::<MyClaims>::builder()
///     .hs256(b"an example secret that is 32 bytes+")
///     .token_from_cookie("access_token")
///     .csrf(CsrfPolicy::same_origin().allow_origin("https://app.example.com"))
///     .build()
///     .unwrap();
///
/// // Behind a reverse proxy that sets (overwrites) X-Forwarded-Host and X-Forwarded-Proto.
/// let proxied = JwtAuthLayer::<MyClaims>::builder()
///     .hs256(b"an example secret that is 32 bytes+")
///     .token_from_cookie("access_token")
///     .csrf(CsrfPolicy::same_origin().trust_forwarded_headers())
///     .build()
///     .unwrap();
///
/// // A development server on plain http.
/// let dev = JwtAuthLayer::<MyClaims>::builder()
///     .hs256(b"an example secret that is 32 bytes+")
///     .token_from_cookie("access_token")
///     .csrf(CsrfPolicy::same_origin().assume_http())
///     .build()
///     .unwrap();
/// # let _ = (auth, proxied, dev);
/// ```
#[derive(Debug, Clone)]
pub struct CsrfPolicy {
    same_origin: bool,
    origins: Vec<String>,
    double_submit: Option<(String, String)>,
    assume_http: bool,
    trust_forwarded: bool,
}

impl Default for CsrfPolicy {
    fn default() -> Self {
        CsrfPolicy::same_origin()
    }
}

impl CsrfPolicy {
    /// Accepts requests from the site's own origin: `Sec-Fetch-Site: same-origin` (or `none`)
    /// when the browser sends it, else an `Origin` (or `Referer`) equal to the origin the
    /// request was sent to, scheme, host and port (see the [module documentation](crate::CsrfPolicy)).
    pub fn same_origin() -> CsrfPolicy {
        CsrfPolicy {
            same_origin: true,
            origins: Vec::new(),
            double_submit: None,
            assume_http: false,
            trust_forwarded: false,
        }
    }

    /// Accepts only the origins listed with [`allow_origin`](Self::allow_origin) (and the
    /// double-submit proof, if configured), not the request's own, whatever `Sec-Fetch-Site`
    /// says.
    pub fn allowed_origins_only() -> CsrfPolicy {
        CsrfPolicy {
            same_origin: false,
            ..CsrfPolicy::same_origin()
        }
    }

    /// Also accepts `origin`, written `scheme://host[:port]` (a trailing `/` is ignored),
    /// compared as an origin: scheme and host without regard to case, a default port written
    /// or not. Anything else (`null`, a path, user information) is a [`BuildError`] from
    /// `build()`.
    pub fn allow_origin(mut self, origin: impl Into<String>) -> CsrfPolicy {
        self.origins.push(origin.into());
        self
    }

    /// Also accepts requests whose header `header` equals the cookie `cookie` (double submit).
    /// DQUOTEs around the cookie's value (RFC 6265 §4.1.1) or around the header's are not part
    /// of the value. Compared in constant time.
    pub fn double_submit(
        mut self,
        header: impl Into<String>,
        cookie: impl Into<String>,
    ) -> CsrfPolicy {
        self.double_submit = Some((header.into(), cookie.into()));
        self
    }

    /// Assumes the site is served over plain `http`, not `https`, when the request does not
    /// say (an HTTP/1.1 request line carries no scheme): `Origin: http://<Host>` is then the
    /// site's own origin and `https://<Host>` is not. For development servers and sites with
    /// no TLS anywhere; never for a site reached over `https`, whose pages an attacker on the
    /// network could then impersonate over `http`.
    pub fn assume_http(mut self) -> CsrfPolicy {
        self.assume_http = true;
        self
    }

    /// Takes the site's own host from `X-Forwarded-Host` and its scheme from
    /// `X-Forwarded-Proto` when a request carries them: for servers behind a reverse proxy
    /// that rewrites `Host` or ends TLS.
    ///
    /// Call it only if *every* request reaches the server through a proxy that sets these
    /// headers itself, overwriting whatever the client sent: otherwise a client could name the
    /// origin to compare with. Each must hold exactly one value (`X-Forwarded-Host` with the
    /// port when it is not the default one; `X-Forwarded-Proto` `http` or `https`); a list or
    /// a repeated header proves nothing. A request without them is compared with its `Host`.
    /// `Forwarded` (RFC 7239) is not read.
    pub fn trust_forwarded_headers(mut self) -> CsrfPolicy {
        self.trust_forwarded = true;
        self
    }

    pub(crate) fn compile(self) -> Result<Csrf, BuildError> {
        let double_submit = match self.double_submit {
            None => None,
            Some((header, cookie)) => {
                let name = HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| BuildError::InvalidSource(header.clone()))?;
                if !is_token(&cookie) {
                    return Err(BuildError::InvalidSource(cookie));
                }
                Some((name, cookie))
            }
        };
        let origins = self
            .origins
            .iter()
            .map(|o| Origin::parse(o.strip_suffix('/').unwrap_or(o)))
            .collect::<Option<Vec<_>>>()
            .ok_or(BuildError::InvalidSetting(
                "a CSRF allowed origin must be scheme://host[:port]",
            ))?;
        Ok(Csrf {
            same_origin: self.same_origin,
            origins,
            double_submit,
            default_scheme: if self.assume_http { "http" } else { "https" },
            trust_forwarded: self.trust_forwarded,
        })
    }
}

/// A [`CsrfPolicy`] with its names and origins checked.
#[derive(Debug, Clone)]
pub(crate) struct Csrf {
    same_origin: bool,
    origins: Vec<Origin>,
    double_submit: Option<(HeaderName, String)>,
    /// The site's scheme when neither the request target nor a trusted proxy tells it.
    default_scheme: &'static str,
    trust_forwarded: bool,
}

impl Csrf {
    /// Checks a request whose token came from a cookie only.
    pub(crate) fn check(
        &self,
        method: &Method,
        headers: &HeaderMap,
        uri: &Uri,
    ) -> Result<(), AuthError> {
        if is_safe(method) || self.double_submitted(headers) {
            return Ok(());
        }
        let claimed = claimed_origin(headers);
        if claimed.as_ref().is_some_and(|o| self.origins.contains(o)) {
            return Ok(());
        }
        let same_origin = self.same_origin
            && match single(headers, &SEC_FETCH_SITE) {
                // The browser's own verdict, which no page can forge, comes first.
                Ok(Some(site)) => matches!(site, "same-origin" | "none"),
                Ok(None) => claimed.is_some_and(|o| self.own_origin(headers, uri) == Some(o)),
                Err(Ambiguous) => false,
            };
        if same_origin {
            Ok(())
        } else {
            Err(AuthError::CsrfRejected)
        }
    }

    /// Whether the double-submit header is present and equal to one of the CSRF cookies.
    fn double_submitted(&self, headers: &HeaderMap) -> bool {
        let Some((header, cookie)) = &self.double_submit else {
            return false;
        };
        let Ok(Some(sent)) = single_value(headers, header) else {
            return false;
        };
        let sent = unquote(sent.as_bytes().trim_ascii());
        // Empty never matches (and the cookie parser skips empty values).
        !sent.is_empty() && cookie_values(headers, cookie).any(|c| bool::from(c.ct_eq(sent)))
    }

    /// The origin the request was sent to (see the module documentation); `None` when it
    /// cannot be told for sure, which proves nothing.
    fn own_origin(&self, headers: &HeaderMap, uri: &Uri) -> Option<Origin> {
        let forwarded = |name: &HeaderName| {
            if !self.trust_forwarded {
                return Ok(None);
            }
            // A list means more than one proxy wrote to it: which value is whose is unknown.
            match single(headers, name)? {
                Some(value) if value.contains(',') => Err(Ambiguous),
                value => Ok(value),
            }
        };
        let scheme = match forwarded(&X_FORWARDED_PROTO).ok()? {
            Some(proto) => proto,
            None => uri.scheme_str().unwrap_or(self.default_scheme),
        };
        if !(scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http")) {
            return None;
        }
        let authority = match forwarded(&X_FORWARDED_HOST).ok()? {
            Some(host) => host.parse::<Authority>().ok()?,
            None => match uri.authority() {
                Some(authority) => authority.clone(),
                None => single(headers, &HOST).ok()??.parse::<Authority>().ok()?,
            },
        };
        Origin::from_parts(scheme, &authority)
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// The origin the request says it comes from: its `Origin` header (RFC 6454 §7), or, only
/// when it has none, the origin of its `Referer` (RFC 9110 §10.1.3). `None` for
/// `Origin: null`, a repeated header, or a value that is not a URL.
fn claimed_origin(headers: &HeaderMap) -> Option<Origin> {
    match single(headers, &ORIGIN) {
        Ok(Some(origin)) => Origin::parse(origin),
        Ok(None) => Origin::of(&single(headers, &REFERER).ok()??.parse::<Uri>().ok()?),
        Err(Ambiguous) => None,
    }
}

/// A header that should appear once appeared more than once, or is not text.
struct Ambiguous;

/// The one value of header `name` as text, trimmed; `Ok(None)` when absent.
fn single<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<Option<&'h str>, Ambiguous> {
    match single_value(headers, name)? {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(|v| Some(v.trim()))
            .map_err(|_| Ambiguous),
    }
}

/// The one value of header `name`; `Ok(None)` when absent.
fn single_value<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'h HeaderValue>, Ambiguous> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(Ambiguous);
    }
    Ok(first)
}

/// An origin (RFC 6454 §4): scheme and host in lower case, and the port, made explicit for
/// the schemes that have a default one (RFC 6454 §4, RFC 3986 §6.2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Origin {
    /// A serialized origin (RFC 6454 §6.2, the `Origin` header's syntax of §7.1):
    /// `scheme "://" host [ ":" port ]`. `null`, a path, a query, a fragment or user
    /// information: `None`. (`http::Uri` shows an empty path as `/`, so `https://site/` is
    /// read as `https://site`; browsers send neither a path nor a slash.)
    fn parse(text: &str) -> Option<Origin> {
        let uri = text.parse::<Uri>().ok()?;
        if text.contains('#') || uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return None;
        }
        Origin::of(&uri)
    }

    /// The origin of an absolute URL: its scheme and authority (RFC 6454 §4).
    fn of(uri: &Uri) -> Option<Origin> {
        Origin::from_parts(uri.scheme_str()?, uri.authority()?)
    }

    /// `scheme` and `authority` as an origin. `None` for user information (`user@host`), which
    /// has no place in an origin or a `Host` header (RFC 9110 §4.2.4, §7.2), and for a port
    /// that is not a decimal number below 65536 (`http` would read such a port as none).
    fn from_parts(scheme: &str, authority: &Authority) -> Option<Origin> {
        let scheme = scheme.to_ascii_lowercase();
        let host = authority.host();
        let port = match authority.as_str().strip_prefix(host)? {
            // RFC 3986 §6.2.3: an empty port is the default port.
            "" | ":" => default_port(&scheme),
            rest => {
                let digits = rest.strip_prefix(':')?;
                if !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                Some(digits.parse::<u16>().ok()?)
            }
        };
        if host.is_empty() {
            return None;
        }
        Some(Origin {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

/// The port a scheme's URLs use when they name none (RFC 9110 §4.2.1, §4.2.2).
fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(
        policy: CsrfPolicy,
        method: Method,
        headers: &[(&str, &str)],
    ) -> Result<(), AuthError> {
        check_uri(policy, method, "/x", headers)
    }

    fn check_uri(
        policy: CsrfPolicy,
        method: Method,
        uri: &str,
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
            .check(&method, &map, &uri.parse().unwrap())
    }

    /// Whether a cookie-borne POST with `headers` passes `policy`.
    fn passes(policy: &CsrfPolicy, headers: &[(&str, &str)]) -> bool {
        check(policy.clone(), Method::POST, headers).is_ok()
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
    fn an_http_origin_is_not_the_origin_of_an_https_site() {
        // The request line of HTTP/1.1 carries no scheme: the site is taken to be https.
        let p = CsrfPolicy::same_origin();
        assert!(passes(&p, &[("host", "site"), ("origin", "https://site")]));
        assert!(!passes(&p, &[("host", "site"), ("origin", "http://site")]));
        assert!(!passes(
            &p,
            &[("host", "site:8080"), ("origin", "http://site:8080")]
        ));
        assert!(!passes(
            &p,
            &[("host", "site"), ("referer", "http://site/form")]
        ));
        // A request target with a scheme (HTTP/2 `:scheme`) says which one.
        let h2 = |uri: &str, origin: &str| {
            check_uri(
                CsrfPolicy::same_origin(),
                Method::POST,
                uri,
                &[("origin", origin)],
            )
            .is_ok()
        };
        assert!(h2("https://site/x", "https://site"));
        assert!(!h2("https://site/x", "http://site"));
        assert!(h2("http://site/x", "http://site"));
        assert!(!h2("http://site/x", "https://site"));
    }

    #[test]
    fn assume_http_is_for_plain_http_sites_only() {
        let p = CsrfPolicy::same_origin().assume_http();
        assert!(passes(&p, &[("host", "site"), ("origin", "http://site")]));
        assert!(passes(
            &p,
            &[("host", "site"), ("origin", "http://site:80")]
        ));
        assert!(!passes(&p, &[("host", "site"), ("origin", "https://site")]));
        assert!(passes(
            &p,
            &[
                ("host", "127.0.0.1:3000"),
                ("origin", "http://127.0.0.1:3000")
            ]
        ));
        // The request target's own scheme still wins.
        assert_eq!(
            check_uri(
                p,
                Method::POST,
                "https://site/x",
                &[("origin", "http://site")]
            ),
            Err(AuthError::CsrfRejected)
        );
    }

    #[test]
    fn default_ports_are_the_same_origin_as_no_port() {
        let p = CsrfPolicy::same_origin();
        assert!(passes(
            &p,
            &[("host", "site"), ("origin", "https://site:443")]
        ));
        assert!(passes(
            &p,
            &[("host", "site:443"), ("origin", "https://site")]
        ));
        assert!(passes(
            &p,
            &[("host", "site"), ("referer", "https://site:443/page")]
        ));
        assert!(passes(
            &p,
            &[("host", "site:8443"), ("origin", "https://site:8443")]
        ));
        // Another port is another origin.
        assert!(!passes(
            &p,
            &[("host", "site"), ("origin", "https://site:8443")]
        ));
        assert!(!passes(
            &p,
            &[("host", "site:8443"), ("origin", "https://site")]
        ));
        assert!(!passes(
            &p,
            &[("host", "site"), ("origin", "https://site:80")]
        ));
        // Not a port at all.
        assert!(!passes(
            &p,
            &[("host", "site:99999"), ("origin", "https://site:99999")]
        ));
        assert!(!passes(
            &p,
            &[("host", "site:+443"), ("origin", "https://site:+443")]
        ));
    }

    #[test]
    fn scheme_and_host_compare_without_case() {
        let p = CsrfPolicy::same_origin();
        assert!(passes(
            &p,
            &[("host", "api.example"), ("origin", "HTTPS://API.Example")]
        ));
        assert!(passes(
            &p,
            &[("host", "API.EXAMPLE"), ("origin", "https://api.example")]
        ));
        // Listed origins too, with or without their default port.
        let listed = CsrfPolicy::allowed_origins_only().allow_origin("https://App.Example:443/");
        assert!(passes(&listed, &[("origin", "https://app.example")]));
        assert!(!passes(&listed, &[("origin", "http://app.example")]));
        assert!(!passes(&listed, &[("origin", "https://app.example:8443")]));
    }

    #[test]
    fn sec_fetch_site_is_the_browsers_verdict_and_comes_first() {
        let p = CsrfPolicy::same_origin().allow_origin("https://app.example");
        // Behind a proxy that rewrote Host, the browser still knows.
        let proxied = [("host", "10.0.0.7:8080"), ("origin", "https://api.example")];
        assert!(!passes(&p, &proxied));
        assert!(passes(
            &p,
            &[proxied[0], proxied[1], ("sec-fetch-site", "same-origin")]
        ));
        assert!(passes(&p, &[("sec-fetch-site", "same-origin")]));
        // Typed into the address bar or opened from a bookmark: no page started it.
        assert!(passes(&p, &[("sec-fetch-site", "none")]));
        // Origin equal to Host, but the browser says another site sent it: refused.
        let same_host = [("host", "api.example"), ("origin", "https://api.example")];
        for site in ["cross-site", "same-site", "Same-Origin", "bogus", ""] {
            assert!(
                !passes(&p, &[same_host[0], same_host[1], ("sec-fetch-site", site)]),
                "{site}"
            );
        }
        assert!(!passes(
            &p,
            &[
                same_host[0],
                same_host[1],
                ("sec-fetch-site", "same-origin"),
                ("sec-fetch-site", "same-origin")
            ]
        ));
        // Cross-site from a listed origin: allowed.
        for site in ["cross-site", "same-site"] {
            assert!(passes(
                &p,
                &[("origin", "https://app.example"), ("sec-fetch-site", site)]
            ));
        }
        // allowed_origins_only: the site's own origin is no proof, whatever the browser says.
        let only = CsrfPolicy::allowed_origins_only();
        assert!(!passes(&only, &[("sec-fetch-site", "same-origin")]));
        assert!(!passes(&only, &[("sec-fetch-site", "none")]));
    }

    #[test]
    fn forwarded_headers_count_only_when_trusted() {
        let proxied = [
            ("host", "127.0.0.1:8080"),
            ("x-forwarded-host", "api.example"),
            ("x-forwarded-proto", "https"),
        ];
        let with = |origin: &'static str| {
            let mut h = proxied.to_vec();
            h.push(("origin", origin));
            h
        };
        let untrusted = CsrfPolicy::same_origin();
        let trusted = CsrfPolicy::same_origin().trust_forwarded_headers();
        assert!(passes(&trusted, &with("https://api.example")));
        assert!(!passes(&trusted, &with("http://api.example")));
        assert!(!passes(&trusted, &with("https://127.0.0.1:8080")));
        assert!(!passes(&trusted, &with("https://evil.example")));
        // Not trusted: ignored, whatever they say.
        assert!(!passes(&untrusted, &with("https://api.example")));
        assert!(passes(&untrusted, &with("https://127.0.0.1:8080")));
        assert!(!passes(
            &untrusted,
            &[
                ("host", "site"),
                ("x-forwarded-proto", "http"),
                ("origin", "http://site")
            ]
        ));
        assert!(!passes(
            &untrusted,
            &[
                ("host", "site"),
                ("x-forwarded-host", "evil.example"),
                ("origin", "https://evil.example")
            ]
        ));
        // Trusted: a proxy ending plain http, a non-default port, or no proxy at all.
        assert!(passes(
            &trusted,
            &[
                ("host", "10.0.0.7"),
                ("x-forwarded-proto", "http"),
                ("origin", "http://10.0.0.7")
            ]
        ));
        assert!(passes(
            &trusted,
            &[
                ("host", "10.0.0.7"),
                ("x-forwarded-host", "api.example:8443"),
                ("origin", "https://api.example:8443")
            ]
        ));
        assert!(passes(
            &trusted,
            &[("host", "api.example"), ("origin", "https://api.example")]
        ));
        assert!(!passes(
            &trusted,
            &[("host", "api.example"), ("origin", "http://api.example")]
        ));
        // Lists, repeats and other schemes prove nothing.
        for extra in [
            [
                ("x-forwarded-host", "api.example, 10.0.0.7"),
                ("x-forwarded-proto", "https"),
            ],
            [
                ("x-forwarded-host", "api.example"),
                ("x-forwarded-host", "api.example"),
            ],
            [
                ("x-forwarded-host", "api.example"),
                ("x-forwarded-proto", "https,http"),
            ],
            [
                ("x-forwarded-host", "api.example"),
                ("x-forwarded-proto", "ftp"),
            ],
            [
                ("x-forwarded-host", "user@api.example"),
                ("x-forwarded-proto", "https"),
            ],
        ] {
            let headers = [
                ("host", "10.0.0.7"),
                ("origin", "https://api.example"),
                extra[0],
                extra[1],
            ];
            assert!(!passes(&trusted, &headers), "{extra:?}");
        }
    }

    #[test]
    fn null_and_malformed_origins_never_match() {
        let p = CsrfPolicy::same_origin();
        for origin in [
            "null",
            "https://site/path",
            "https://site?q",
            "https://site#f",
            "https://user@site",
            "https://site https://site",
            "site",
            "//site",
            "https://",
        ] {
            assert!(
                !passes(&p, &[("host", "site"), ("origin", origin)]),
                "{origin}"
            );
        }
        // Two Origin headers: not a browser, and not proof.
        assert!(!passes(
            &p,
            &[
                ("host", "site"),
                ("origin", "https://site"),
                ("origin", "https://site")
            ]
        ));
        // The Referer is read only when there is no Origin at all.
        assert!(!passes(
            &p,
            &[
                ("host", "site"),
                ("origin", "null"),
                ("referer", "https://site/page")
            ]
        ));
        // Two Host headers: no own origin (RFC 9112 §3.2 makes that a 400).
        assert!(!passes(
            &p,
            &[
                ("host", "site"),
                ("host", "site"),
                ("origin", "https://site")
            ]
        ));
        // A listed `null`, a path or a bare host is a configuration error.
        for bad in ["null", "app.example", "https://app.example/app", "https://"] {
            assert!(
                matches!(
                    CsrfPolicy::same_origin().allow_origin(bad).compile(),
                    Err(BuildError::InvalidSetting(_))
                ),
                "{bad}"
            );
        }
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

    #[test]
    fn double_submit_reads_cookies_like_the_token_sources() {
        let p = CsrfPolicy::allowed_origins_only().double_submit("x-csrf-token", "csrf");
        // RFC 6265 §4.1.1: the DQUOTEs around a cookie value are not part of it, on either
        // side.
        for (cookie, header) in [
            ("csrf=\"abc123\"", "abc123"),
            ("csrf=\"abc123\"", "\"abc123\""),
            ("csrf=abc123", "\"abc123\""),
            ("theme=dark; csrf=abc123", "abc123"),
        ] {
            assert!(
                passes(&p, &[("cookie", cookie), ("x-csrf-token", header)]),
                "{cookie} {header}"
            );
        }
        // Several Cookie headers (HTTP/2 may split them, RFC 9113 §8.2.3).
        assert!(passes(
            &p,
            &[
                ("cookie", "theme=dark"),
                ("cookie", "csrf=abc123"),
                ("x-csrf-token", "abc123")
            ]
        ));
        // A quoted empty value is empty: it matches nothing, not even an empty pair of quotes.
        assert!(!passes(
            &p,
            &[("cookie", "csrf=\"\""), ("x-csrf-token", "\"\"")]
        ));
        // Another cookie's value, a name in another case, a repeated header: no.
        for (cookie, second_header) in [
            ("other=abc123", None),
            ("CSRF=abc123", None),
            ("csrf=abc123", Some("abc123")),
        ] {
            let mut headers = vec![("cookie", cookie), ("x-csrf-token", "abc123")];
            headers.extend(second_header.map(|h| ("x-csrf-token", h)));
            assert!(!passes(&p, &headers), "{headers:?}");
        }
    }
}
