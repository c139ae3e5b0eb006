//! The `htu` comparison of RFC 9449 §4.3 point 9: the proof's URL and the request's, both
//! without query and fragment, after the syntax-based normalisation of RFC 3986 §6.2.2 and the
//! scheme-based one of §6.2.3.

/// `url` normalised for comparison: scheme and host in lower case (§6.2.2.1), the scheme's
/// default port removed and an empty path made `/` (§6.2.3), percent-encodings in upper case
/// and those of unreserved characters decoded (§6.2.2.1, §6.2.2.2), dot-segments removed
/// (§6.2.2.3), query and fragment dropped (RFC 9449 §4.3 point 9). `None` for anything but an
/// absolute `http` or `https` URL with a host and no user information.
pub(crate) fn normalize(url: &str) -> Option<String> {
    let url = url.split('#').next().unwrap_or_default();
    let url = url.split('?').next().unwrap_or_default();
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.contains('@') || authority.is_empty() {
        return None;
    }
    // An IPv6 literal is bracketed (RFC 3986 §3.2.2); its colons are not the port's.
    let port_at = match authority.rfind(']') {
        Some(end) => authority[end..].find(':').map(|i| end + i),
        None => authority.find(':'),
    };
    let (host, port) = match port_at {
        Some(i) => (&authority[..i], &authority[i + 1..]),
        None => (authority, ""),
    };
    if host.is_empty() || !host.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    let port = match port {
        "" => None,
        digits if digits.bytes().all(|b| b.is_ascii_digit()) => {
            Some(digits.parse::<u16>().ok()?).filter(|p| *p != default_port)
        }
        _ => return None,
    };
    let mut out = String::with_capacity(url.len());
    out.push_str(&scheme);
    out.push_str("://");
    out.push_str(&host.to_ascii_lowercase());
    if let Some(port) = port {
        out.push(':');
        out.push_str(&port.to_string());
    }
    out.push_str(&remove_dot_segments(&normalize_percent(path)?));
    Some(out)
}

/// Upper-case hex in every percent-encoding, and unreserved characters (ALPHA / DIGIT / "-" /
/// "." / "_" / "~", RFC 3986 §2.3) decoded. `None` for a `%` not followed by two hex digits.
fn normalize_percent(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            if !b.is_ascii_graphic() {
                return None;
            }
            out.push(char::from(b));
            i += 1;
            continue;
        }
        // Two hex digits exactly: `from_str_radix` alone would also take a sign (`%+f`).
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))?;
        let value = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
        if value.is_ascii_alphanumeric() || matches!(value, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(value));
        } else {
            out.push('%');
            out.push_str(&format!("{value:02X}"));
        }
        i += 3;
    }
    Some(out)
}

/// RFC 3986 §5.2.4 on an absolute path; the empty path becomes `/` (§6.2.3).
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let parts: Vec<&str> = path.split('/').skip(1).collect();
    let last = parts.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, segment) in parts.iter().enumerate() {
        match *segment {
            "." => trailing_slash = i == last,
            ".." => {
                segments.pop();
                trailing_slash = i == last;
            }
            s => {
                segments.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len() + 1);
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn equivalent_urls_compare_equal() {
        let want = Some("https://api.example.com/a/b".to_owned());
        for url in [
            "https://api.example.com/a/b",
            "HTTPS://API.Example.COM/a/b",
            "https://api.example.com:443/a/b",
            "https://api.example.com/a/b?x=1",
            "https://api.example.com/a/b#frag",
            "https://api.example.com/a/./c/../b",
            "https://api.example.com/%61/b",
        ] {
            assert_eq!(normalize(url), want, "{url}");
        }
        assert_eq!(
            normalize("http://h:80").as_deref(),
            Some("http://h/"),
            "default port and empty path"
        );
        assert_eq!(
            normalize("http://h:8080/%2f").as_deref(),
            Some("http://h:8080/%2F")
        );
        assert_eq!(
            normalize("http://[::1]:3000/x").as_deref(),
            Some("http://[::1]:3000/x")
        );
    }

    #[test]
    fn different_urls_differ_and_bad_ones_are_refused() {
        assert_ne!(normalize("https://a/x"), normalize("http://a/x"));
        assert_ne!(normalize("https://a/x"), normalize("https://a:8443/x"));
        assert_ne!(normalize("https://a/x"), normalize("https://a/X"));
        for bad in [
            "ftp://a/x",
            "https:///x",
            "https://u@a/x",
            "/x",
            "https://a/%zz",
            "https://a/%+f",
            "https://a/%-1",
            "https://a:99999/",
        ] {
            assert_eq!(normalize(bad), None, "{bad}");
        }
    }
}
