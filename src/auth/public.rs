//! The paths a layer leaves unauthenticated ([`JwtAuthBuilder::public_path`]): exact paths and
//! `/*` prefixes, matched on the request's raw path.
//!
//! The path is compared as received: no percent-decoding, no removal of dot segments (RFC 3986
//! §5.2.4), no merging of slashes, case-sensitive. Something behind the layer that normalises
//! paths (a router that decodes `%2F`, a proxy that resolves `..`) could otherwise be reached
//! through a public prefix: `/public/../admin` is not `/admin` here, but could be there. So a
//! request is public only when its path is in the plain form a public pattern has: segments of
//! RFC 3986 `pchar`s other than `%` and `;`, none empty, none `.` or `..`. Any other path is
//! authenticated as usual (fail closed).
//!
//! [`JwtAuthBuilder::public_path`]: crate::JwtAuthBuilder::public_path

use crate::BuildError;

/// The public paths of one layer, checked once at build time.
#[derive(Debug, Default)]
pub(crate) struct PublicPaths {
    exact: Vec<String>,
    /// Each ends with `/`: the pattern without its `*`.
    prefixes: Vec<String>,
}

impl PublicPaths {
    /// Compiles `patterns`: each an absolute path in plain form, or one followed by `/*`.
    pub(crate) fn new(patterns: &[String]) -> Result<PublicPaths, BuildError> {
        let mut paths = PublicPaths::default();
        for pattern in patterns {
            // A `*` anywhere else would read as a wildcard it is not.
            let stem = pattern.strip_suffix("/*").unwrap_or(pattern);
            if stem.contains('*') {
                return Err(BuildError::InvalidSetting(
                    "a public path has no `*` but a final `/*`",
                ));
            }
            match pattern.strip_suffix("/*") {
                Some("") => {
                    return Err(BuildError::InvalidSetting(
                        "public_path(\"/*\") would leave every request unauthenticated",
                    ));
                }
                Some(prefix) if is_plain(prefix) => paths.prefixes.push(format!("{prefix}/")),
                None if is_plain(pattern) => paths.exact.push(pattern.clone()),
                _ => {
                    return Err(BuildError::InvalidSetting(
                        "a public path is an absolute path of plain segments (no `%`, `;`, \
                         empty, `.` or `..` segment), optionally followed by `/*`",
                    ));
                }
            }
        }
        Ok(paths)
    }

    /// Whether the request path `path` (raw, as received) is public.
    pub(crate) fn contains(&self, path: &str) -> bool {
        if self.exact.iter().any(|p| p == path) {
            return true;
        }
        self.prefixes.iter().any(|prefix| {
            path.strip_prefix(prefix.as_str())
                .is_some_and(plain_segments)
        })
    }
}

/// Whether `path` is `/segment(/segment)*`, each segment non-empty, not `.` or `..`, and made
/// of RFC 3986 `pchar`s other than `%` (percent-encoding) and `;` (path parameters, which some
/// servers strip before routing).
fn is_plain(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    plain_segments(rest)
}

/// Whether `rest` is `segment(/segment)*` as [`is_plain`] describes.
fn plain_segments(rest: &str) -> bool {
    rest.split('/').all(|segment| {
        !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(
                        b,
                        b'-' | b'.'
                            | b'_'
                            | b'~'
                            | b'!'
                            | b'$'
                            | b'&'
                            | b'\''
                            | b'('
                            | b')'
                            | b'*'
                            | b'+'
                            | b','
                            | b'='
                            | b':'
                            | b'@'
                    )
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(patterns: &[&str]) -> PublicPaths {
        let patterns: Vec<String> = patterns.iter().map(|p| (*p).to_owned()).collect();
        PublicPaths::new(&patterns).unwrap()
    }

    #[test]
    fn exact_and_prefix() {
        let p = paths(&[
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1.ServerReflection/*",
        ]);
        assert!(p.contains("/grpc.health.v1.Health/Check"));
        assert!(!p.contains("/grpc.health.v1.Health/Watch"));
        assert!(!p.contains("/grpc.health.v1.Health/Check/"));
        assert!(!p.contains("/grpc.health.v1.health/check"));
        assert!(p.contains("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"));
        assert!(p.contains("/grpc.reflection.v1.ServerReflection/a/b"));
        assert!(!p.contains("/grpc.reflection.v1.ServerReflection/"));
        assert!(!p.contains("/grpc.reflection.v1.ServerReflection"));
        assert!(!p.contains("/grpc.reflection.v1.ServerReflectionX/Info"));
    }

    #[test]
    fn normalisation_tricks_are_not_public() {
        let p = paths(&["/public/*", "/health"]);
        for path in [
            "/public/../admin",
            "/public/./x",
            "/public/..",
            "/public//admin",
            "/public/a/../../admin",
            "/public/%2e%2e/admin",
            "/public/..%2Fadmin",
            "/public/x;/../admin",
            "/public/a\\..\\admin",
            "//health",
            "/health/",
            "/%68ealth",
            "/health;x",
        ] {
            assert!(!p.contains(path), "{path}");
        }
        assert!(p.contains("/public/a.b/c~d"));
    }

    #[test]
    fn patterns_are_checked() {
        for bad in [
            "/*", "health", "", "/a/*/b", "/a*", "/a//b", "/a/../b", "/a/%2e", "/a;b", "/a/",
            "/a b",
        ] {
            assert!(PublicPaths::new(&[bad.to_owned()]).is_err(), "{bad}");
        }
    }
}
