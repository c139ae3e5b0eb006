//! What the layer adds as an OAuth protected resource beyond RFC 6750: sender-constrained
//! tokens (DPoP, RFC 9449, `crate::dpop`; certificate-bound, RFC 8705, `crate::mtls`),
//! protected resource metadata (RFC 9728, `crate::resource_metadata`), and the parameters
//! they put into the responder's `WWW-Authenticate` challenges.

use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue};

use crate::resource_metadata::ResourceMetadata;
use crate::source::Source;
use crate::tenant::Verifiers;
use crate::{AuthError, BuildError, Clock};

/// The builder's part: what [`JwtAuthBuilder::dpop`](crate::JwtAuthBuilder::dpop),
/// [`resource_metadata`](crate::JwtAuthBuilder::resource_metadata) and
/// [`certificate_bound_tokens`](crate::JwtAuthBuilder::certificate_bound_tokens) set.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResourceConfig {
    #[cfg(feature = "dpop")]
    pub dpop: Option<crate::dpop::Dpop>,
    pub metadata: Option<ResourceMetadata>,
    pub certificate_bound: bool,
}

/// The layer's part, checked.
#[derive(Default)]
pub(crate) struct ResourceServer {
    #[cfg(feature = "dpop")]
    pub dpop: Option<crate::dpop::DpopCheck>,
    /// The completed document, for [`JwtAuthLayer::resource_metadata`](crate::JwtAuthLayer::resource_metadata).
    pub metadata: Option<ResourceMetadata>,
    /// Whether certificate-bound tokens are checked (RFC 8705 §3, `crate::mtls`).
    pub certificate_bound: bool,
    /// `resource_metadata="…"` (RFC 9728 §5.1), ready to append.
    metadata_param: Option<String>,
    /// `algs="…"` (RFC 9449 §7.1), ready to append, and whether Bearer is refused.
    #[cfg(feature = "dpop")]
    dpop_challenge: Option<(String, bool)>,
}

impl ResourceConfig {
    /// Checks the configuration; with DPoP on, adds its scheme to `sources`.
    #[cfg_attr(not(feature = "dpop"), allow(unused_variables, clippy::ptr_arg))]
    pub(crate) fn build(
        self,
        sources: &mut Vec<Source>,
        verifiers: &Verifiers,
        clock: &Clock,
        max_token_size: usize,
    ) -> Result<ResourceServer, BuildError> {
        let mut server = ResourceServer {
            certificate_bound: self.certificate_bound,
            ..ResourceServer::default()
        };
        #[cfg(feature = "dpop")]
        if let Some(dpop) = self.dpop {
            let check = dpop.compile(sources, clock, max_token_size)?;
            let names: Vec<&str> = check.algorithms.iter().map(|a| a.name()).collect();
            let mut algs = String::from("algs=");
            push_quoted(&mut algs, &names.join(" "));
            server.dpop_challenge = Some((algs, check.required));
            server.dpop = Some(check);
        }
        if let Some(metadata) = self.metadata {
            let issuers: Vec<String> = verifiers.issuers().flatten().cloned().collect();
            let mut methods = Vec::new();
            if sources
                .iter()
                .any(|s| matches!(s, Source::Header { name, .. } if name == AUTHORIZATION))
            {
                methods.push("header");
            }
            if sources.iter().any(|s| matches!(s, Source::Query(_))) {
                methods.push("query");
            }
            #[cfg(feature = "dpop")]
            let dpop = server
                .dpop
                .as_ref()
                .map(|d| (d.algorithms.iter().map(|a| a.name()).collect(), d.required));
            #[cfg(not(feature = "dpop"))]
            let dpop = None;
            let metadata = metadata.complete(&issuers, methods, dpop)?;
            let mut param = String::from("resource_metadata=");
            push_quoted(&mut param, &metadata.url());
            server.metadata_param = Some(param);
            server.metadata = Some(metadata);
        }
        Ok(server)
    }
}

impl ResourceServer {
    /// Whether [`extend_challenges`](Self::extend_challenges) may change a response: DPoP or
    /// resource metadata is on.
    pub(crate) fn extends_challenges(&self) -> bool {
        #[cfg(feature = "dpop")]
        if self.dpop.is_some() {
            return true;
        }
        self.metadata_param.is_some()
    }

    /// Adds the layer's parameters to the challenges the responder put into `headers` (a
    /// response without `WWW-Authenticate`, such as a gRPC one, is left alone):
    ///
    /// - with DPoP (RFC 9449 §7.1, §7.2): in required mode each `Bearer` challenge becomes a
    ///   `DPoP` one; in allowed mode a `DPoP` challenge joins it, and the error parameters go
    ///   with the scheme the error is about (the `DPoP` one for a bad proof or a request made
    ///   with the `DPoP` scheme). Every `DPoP` challenge names the accepted `algs`.
    /// - with resource metadata (RFC 9728 §5.1): every challenge gets `resource_metadata`.
    /// - with DPoP nonces (RFC 9449 §9): a `use_dpop_nonce` refusal gets a fresh `DPoP-Nonce`.
    #[cfg_attr(not(feature = "dpop"), allow(unused_variables))]
    pub(crate) fn extend_challenges(
        &self,
        error: &AuthError,
        request: &HeaderMap,
        headers: &mut HeaderMap,
    ) {
        // §8.1, §9: the nonce the client is to use.
        #[cfg(feature = "dpop")]
        if *error == AuthError::UseDpopNonce
            && let Some(nonce) = self.dpop.as_ref().and_then(|d| d.fresh_nonce())
            && let Ok(value) = HeaderValue::from_str(&nonce)
        {
            headers.insert("dpop-nonce", value);
        }
        #[cfg(feature = "dpop")]
        let dpop = self.dpop_challenge.as_ref();
        #[cfg(not(feature = "dpop"))]
        let dpop: Option<&(String, bool)> = None;
        if (dpop.is_none() && self.metadata_param.is_none())
            || !headers.contains_key(WWW_AUTHENTICATE)
        {
            return;
        }
        let about_dpop = matches!(
            error,
            AuthError::InvalidDpopProof | AuthError::DpopKeyMismatch | AuthError::UseDpopNonce
        ) || request.get_all(AUTHORIZATION).iter().any(|v| {
            v.as_bytes()
                .get(..5)
                .is_some_and(|s| s.eq_ignore_ascii_case(b"DPoP "))
        });
        let mut challenges: Vec<String> = Vec::new();
        for value in headers.get_all(WWW_AUTHENTICATE) {
            // Not ours to rewrite (and not a challenge the built-in responders write): the
            // responder's header stands as it is.
            let Ok(text) = value.to_str() else {
                return;
            };
            let (scheme, params) = text.split_once(' ').unwrap_or((text, ""));
            match dpop {
                Some((algs, required)) if scheme.eq_ignore_ascii_case("Bearer") => {
                    let realm = realm(params);
                    let dpop_full = with(with("DPoP".into(), params), algs);
                    let dpop_bare = with(with("DPoP".into(), realm), algs);
                    if *required {
                        challenges.push(dpop_full);
                    } else if about_dpop {
                        challenges.push(with("Bearer".into(), realm));
                        challenges.push(dpop_full);
                    } else {
                        challenges.push(text.to_owned());
                        challenges.push(dpop_bare);
                    }
                }
                _ => challenges.push(text.to_owned()),
            }
        }
        let values: Vec<HeaderValue> = challenges
            .into_iter()
            .map(|c| match &self.metadata_param {
                Some(param) => with(c, param),
                None => c,
            })
            .filter_map(|c| HeaderValue::from_str(&c).ok())
            .collect();
        // Every part is visible ASCII (the responder's header text, and parameters written by
        // `push_quoted`), so no challenge is lost; should one be, the responder's stand.
        if values.is_empty() {
            return;
        }
        headers.remove(WWW_AUTHENTICATE);
        for value in values {
            headers.append(WWW_AUTHENTICATE, value);
        }
    }
}

/// `challenge` with one more auth-param (or parameter list) appended (RFC 9110 §11.6.1).
fn with(mut challenge: String, params: &str) -> String {
    if params.is_empty() {
        return challenge;
    }
    challenge.push_str(if challenge.contains(' ') { ", " } else { " " });
    challenge.push_str(params);
    challenge
}

/// The leading `realm="…"` parameter of a challenge's parameters, or `""`.
fn realm(params: &str) -> &str {
    let Some(rest) = params.strip_prefix("realm=\"") else {
        return "";
    };
    let mut escaped = false;
    for (i, c) in rest.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return &params[..7 + i + 1],
            _ => {}
        }
    }
    ""
}

/// `value` as an RFC 9110 §5.6.4 quoted-string (the escaping of the `Bearer` challenge).
fn push_quoted(out: &mut String, value: &str) {
    out.push('"');
    crate::response::push_quoted(out, value);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realm_is_read_up_to_its_closing_quote() {
        assert_eq!(realm(r#"realm="a \"b\"", error="x""#), r#"realm="a \"b\"""#);
        assert_eq!(realm(r#"error="x""#), "");
        assert_eq!(realm(r#"realm="unterminated"#), "");
        assert_eq!(with("Bearer".into(), "realm=\"r\""), "Bearer realm=\"r\"");
        assert_eq!(
            with("Bearer realm=\"r\"".into(), "a=\"b\""),
            "Bearer realm=\"r\", a=\"b\""
        );
    }
}
