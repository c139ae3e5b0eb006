//! OAuth 2.0 Protected Resource Metadata (RFC 9728): the document that tells clients which
//! authorization servers issue tokens for this API and how to present them, and the
//! `resource_metadata` parameter that points to it from every challenge (§5.1).
//!
//! Configured with [`JwtAuthBuilder::resource_metadata`](crate::JwtAuthBuilder::resource_metadata);
//! the layer completes the document from its own configuration (the issuers it trusts, when
//! no authorization server is named; the ways it reads tokens; its DPoP algorithms and mode,
//! feature `dpop`) and hands it out with
//! [`JwtAuthLayer::resource_metadata`](crate::JwtAuthLayer::resource_metadata). The document is a
//! tower `Service` that answers `GET` with the JSON, so it mounts on any router at
//! [`path`](ResourceMetadata::path):
//!
//! ```
//! use axum::{Router, routing::get};
//! use tower_jwt_auth::JwtAuthLayer;
//! use tower_jwt_auth::resource_metadata::ResourceMetadata;
//!
//! let auth = JwtAuthLayer::<serde_json::Value>::builder()
//!     .hs256(b"an example secret that is 32 bytes+")
//!     .issuer("https://id.example.com")
//!     .resource_metadata(ResourceMetadata::new("https://api.example.com").scopes(["orders:read"]))
//!     .build()
//!     .unwrap();
//! let metadata = auth.resource_metadata().unwrap();
//! assert_eq!(metadata.path(), "/.well-known/oauth-protected-resource");
//! assert_eq!(
//!     metadata.to_json(),
//!     r#"{"resource":"https://api.example.com","authorization_servers":["https://id.example.com"],"bearer_methods_supported":["header"],"scopes_supported":["orders:read"]}"#,
//! );
//!
//! let app: Router = Router::new()
//!     .route("/me", get(|| async { "ok" }))
//!     .layer(auth)
//!     // Outside the layer: the metadata is public.
//!     .route_service(&metadata.path(), metadata);
//! # let _ = app;
//! ```
//!
//! Every challenge the layer sends then ends in
//! `resource_metadata="https://api.example.com/.well-known/oauth-protected-resource"`.

use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};

use futures_util::future::{Ready, ready};
use http::header::{ALLOW, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use serde::Serialize;

use crate::BuildError;

/// The well-known URI suffix of RFC 9728 §3.
const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// A protected resource's metadata document (RFC 9728 §2), and a tower `Service` that serves
/// it; see the [module docs](self).
#[derive(Debug, Clone, Serialize)]
#[must_use = "metadata does nothing until given to `JwtAuthBuilder::resource_metadata`"]
pub struct ResourceMetadata {
    resource: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    authorization_servers: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bearer_methods_supported: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    scopes_supported: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dpop_signing_alg_values_supported: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dpop_bound_access_tokens_required: Option<bool>,
}

impl ResourceMetadata {
    /// Metadata for the resource identified by `resource` (RFC 9728 §2: an `https` URL with
    /// no query or fragment; plain `http` is accepted for a loopback host only). It is also
    /// the base of the metadata URL (§3.1).
    pub fn new(resource: impl Into<String>) -> ResourceMetadata {
        ResourceMetadata {
            resource: resource.into(),
            authorization_servers: Vec::new(),
            bearer_methods_supported: None,
            scopes_supported: Vec::new(),
            dpop_signing_alg_values_supported: None,
            dpop_bound_access_tokens_required: None,
        }
    }

    /// Names an authorization server (its issuer identifier, RFC 8414) whose tokens this
    /// resource accepts; may be called again. Without any, the layer's issuers are named.
    pub fn authorization_server(mut self, issuer: impl Into<String>) -> ResourceMetadata {
        self.authorization_servers.push(issuer.into());
        self
    }

    /// The scopes clients may request for this resource (`scopes_supported`).
    pub fn scopes(
        mut self,
        scopes: impl IntoIterator<Item = impl Into<String>>,
    ) -> ResourceMetadata {
        self.scopes_supported
            .extend(scopes.into_iter().map(Into::into));
        self
    }

    /// The resource identifier.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The metadata URL (RFC 9728 §3.1): the well-known suffix inserted between the
    /// resource's host and its path, `https://api.example.com/.well-known/oauth-protected-resource`
    /// for `https://api.example.com`.
    pub fn url(&self) -> String {
        let (origin, path) = split_origin(&self.resource);
        format!("{origin}{WELL_KNOWN}{path}")
    }

    /// The path of [`url`](Self::url), where the document is served.
    pub fn path(&self) -> String {
        let (_, path) = split_origin(&self.resource);
        format!("{WELL_KNOWN}{path}")
    }

    /// The document as JSON text (RFC 9728 §3.2).
    pub fn to_json(&self) -> String {
        // Strings, lists of strings and a bool: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Checks the resource identifier and fills in what the layer knows: its issuers (when no
    /// authorization server was named), the RFC 6750 methods among its token sources, and
    /// its DPoP algorithms and mode.
    pub(crate) fn complete(
        mut self,
        issuers: &[String],
        bearer_methods: Vec<&'static str>,
        dpop: Option<(Vec<&'static str>, bool)>,
    ) -> Result<ResourceMetadata, BuildError> {
        if !valid_resource(&self.resource) {
            return Err(BuildError::InvalidSetting(
                "the resource identifier must be an https URL (http for a loopback host) \
                 without query or fragment (RFC 9728 §2)",
            ));
        }
        if self.authorization_servers.is_empty() {
            self.authorization_servers = issuers.to_vec();
        }
        self.bearer_methods_supported = Some(bearer_methods);
        if let Some((algs, required)) = dpop {
            self.dpop_signing_alg_values_supported = Some(algs);
            self.dpop_bound_access_tokens_required = Some(required);
        }
        Ok(self)
    }
}

/// `scheme://authority` and the rest (the path, without a trailing `/`) of a checked URL.
fn split_origin(url: &str) -> (&str, &str) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let (origin, path) = match url[after_scheme..].find('/') {
        Some(i) => url.split_at(after_scheme + i),
        None => (url, ""),
    };
    (origin, path.trim_end_matches('/'))
}

/// RFC 9728 §2: `https`, a host, no query, no fragment; `http` only for a loopback host.
fn valid_resource(url: &str) -> bool {
    if url.contains(['?', '#', '@', ' ']) {
        return false;
    }
    let (scheme, rest) = match url.split_once("://") {
        Some(parts) => parts,
        None => return false,
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.rfind(']') {
        Some(end) => authority.get(1..end).unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() {
        return false;
    }
    match scheme {
        "https" => true,
        "http" => {
            host.eq_ignore_ascii_case("localhost")
                || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        _ => false,
    }
}

/// Answers `GET` and `HEAD` with the document (`application/json`), any other method with
/// 405. Mount it at [`path`](ResourceMetadata::path), outside the authentication layer.
impl<B> tower_service::Service<Request<B>> for ResourceMetadata {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let mut response = Response::new(String::new());
        if request.method() == Method::GET || request.method() == Method::HEAD {
            *response.body_mut() = self.to_json();
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        } else {
            *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_url_inserts_the_suffix_before_the_path() {
        let m = ResourceMetadata::new("https://api.example.com/v1/");
        assert_eq!(
            m.url(),
            "https://api.example.com/.well-known/oauth-protected-resource/v1"
        );
        assert_eq!(m.path(), "/.well-known/oauth-protected-resource/v1");
        let m = ResourceMetadata::new("http://127.0.0.1:3002");
        assert_eq!(
            m.url(),
            "http://127.0.0.1:3002/.well-known/oauth-protected-resource"
        );
    }

    #[test]
    fn resource_identifiers_are_checked() {
        for good in [
            "https://a.example",
            "https://a.example:8443/x",
            "http://localhost:1",
            "http://[::1]/",
        ] {
            assert!(valid_resource(good), "{good}");
        }
        for bad in [
            "http://a.example",
            "https://a.example/?q",
            "https://a#f",
            "a.example",
            "https://",
            "ftp://a",
        ] {
            assert!(!valid_resource(bad), "{bad}");
        }
    }
}
