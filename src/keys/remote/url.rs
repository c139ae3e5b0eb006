//! Which URLs may be fetched: `https`, or plain `http` to a loopback host when allowed; and
//! where an issuer's discovery document lives.

/// OpenID Connect Discovery 1.0 §4.1: any terminating `/` of the issuer is removed before
/// `/.well-known/openid-configuration` is appended.
pub(super) fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// Why a URL is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UrlProblem {
    Invalid,
    PlainHttp,
    Scheme,
}

impl UrlProblem {
    /// The reason, for a JWKS URL.
    pub(super) fn jwks(self) -> &'static str {
        match self {
            UrlProblem::Invalid => "the JWKS URI is not a valid absolute URL",
            UrlProblem::PlainHttp => {
                "the JWKS URI must use https (plain http only for a loopback host, with \
                 allow_http_for_loopback())"
            }
            UrlProblem::Scheme => "the JWKS URI must use https",
        }
    }

    /// The reason, for an issuer.
    pub(super) fn issuer(self) -> &'static str {
        match self {
            UrlProblem::Invalid => "the issuer is not a valid absolute URL",
            UrlProblem::PlainHttp => {
                "the issuer must use https (plain http only for a loopback host, with \
                 allow_http_for_loopback())"
            }
            UrlProblem::Scheme => "the issuer must use https",
        }
    }
}

/// `https` with a host; `http` only to a loopback host and only when allowed.
pub(super) fn check_url(url: &str, allow_http_for_loopback: bool) -> Result<(), UrlProblem> {
    let parsed = reqwest::Url::parse(url).map_err(|_| UrlProblem::Invalid)?;
    let Some(host) = parsed.host_str().filter(|h| !h.is_empty()) else {
        return Err(UrlProblem::Invalid);
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if allow_http_for_loopback && is_loopback(host) => Ok(()),
        "http" => Err(UrlProblem::PlainHttp),
        _ => Err(UrlProblem::Scheme),
    }
}

/// `127.0.0.0/8`, `::1` or `localhost` (a trailing `.` allowed); not names that merely
/// contain it, and not IPv4-mapped addresses.
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => {
            let name = bare.strip_suffix('.').unwrap_or(bare);
            name.eq_ignore_ascii_case("localhost")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_url_drops_a_trailing_slash() {
        assert_eq!(
            discovery_url("https://id.test"),
            "https://id.test/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("https://id.test/"),
            "https://id.test/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("https://id.test/tenant/"),
            "https://id.test/tenant/.well-known/openid-configuration"
        );
    }

    #[test]
    fn https_everywhere_but_loopback_when_allowed() {
        for ok in [
            "https://id.test/jwks",
            "https://127.0.0.1/jwks",
            "https://[2001:db8::1]/jwks",
        ] {
            assert_eq!(check_url(ok, false), Ok(()), "{ok}");
        }
        for loopback in [
            "http://127.0.0.1:8080/jwks",
            "http://127.1.2.3/jwks",
            "http://[::1]:8080/jwks",
            "http://localhost/jwks",
            "http://LocalHost./jwks",
        ] {
            assert_eq!(check_url(loopback, true), Ok(()), "{loopback}");
            assert_eq!(
                check_url(loopback, false),
                Err(UrlProblem::PlainHttp),
                "{loopback}"
            );
        }
        for refused in [
            "http://id.test/jwks",
            "http://10.0.0.1/jwks",
            "http://localhost.id.test/jwks",
            "http://[::ffff:8.8.8.8]/jwks",
            "http://0.0.0.0/jwks",
        ] {
            assert_eq!(
                check_url(refused, true),
                Err(UrlProblem::PlainHttp),
                "{refused}"
            );
        }
        assert_eq!(
            check_url("ftp://id.test/jwks", true),
            Err(UrlProblem::Scheme)
        );
        assert_eq!(
            check_url("file:///etc/jwks", true),
            Err(UrlProblem::Invalid)
        );
        assert_eq!(check_url("/jwks", true), Err(UrlProblem::Invalid));
        assert_eq!(check_url("id.test/jwks", true), Err(UrlProblem::Invalid));
    }
}
