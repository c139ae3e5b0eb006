//! Certificate-bound access tokens (RFC 8705 §3): a token that names its client's TLS
//! certificate is accepted only over a connection authenticated with that certificate.
//!
//! An authorization server that authenticates its clients with mutual TLS binds the tokens it
//! issues them to their certificate: `cnf` holds `x5t#S256`, base64url(SHA-256(DER of the
//! certificate)) (§3.1). With
//! [`JwtAuthBuilder::certificate_bound_tokens`](crate::JwtAuthBuilder::certificate_bound_tokens), the layer
//! compares it with the certificate the client presented in this request's TLS handshake,
//! which the TLS layer in front of it puts into the request's extensions as a
//! [`ClientCertificate`]. A token with `x5t#S256` is refused (401 `invalid_token`, §3) when
//! the request carries no certificate or another one; a token without it is not affected.
//! Without the setting, the layer cannot check the binding, so a token with `x5t#S256` is
//! refused too ([`AuthError::UnsupportedConfirmation`]),
//! unless [`accept_bound_tokens_as_bearer`](crate::JwtAuthBuilder::accept_bound_tokens_as_bearer)
//! says to take it as a bearer token.
//!
//! The layer trusts that the TLS layer checked the certificate chain and the handshake (the
//! certificate may be self-signed, §2.2): whoever can insert a [`ClientCertificate`] decides
//! which bound tokens pass, so it must come from the connection, never from the request.
//!
//! # Getting the certificate there
//!
//! With tokio-rustls (and axum, or hyper through `hyper_util`), the server accepts each
//! connection itself and wraps the service for it (tests/it/mtls.rs runs this server):
//!
//! ```text
//! let (tcp, _) = listener.accept().await?;
//! let tls = acceptor.accept(tcp).await?;            // tokio_rustls::TlsAcceptor
//! let cert = tls.get_ref().1.peer_certificates()     // the end-entity certificate first
//!     .and_then(|chain| chain.first())
//!     .map(|der| ClientCertificate::new(der.to_vec()));
//! let mut app = app.clone();                          // the Router, JwtAuthLayer inside
//! if let Some(cert) = cert {
//!     app = app.layer(axum::Extension(cert));        // outside the JwtAuthLayer
//! }
//! hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
//!     .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
//!     .await?;
//! ```
//!
//! axum-server's `RustlsAcceptor` can be wrapped the same way (an acceptor that reads
//! `peer_certificates()` and layers the service it returns). With tonic's own TLS transport,
//! the request extensions hold `tonic::transport::server::TlsConnectInfo`, whose
//! `peer_certs()` gives the chain; a small layer in front of the `JwtAuthLayer` turns the first
//! one into a `ClientCertificate`.
//!
//! ```
//! use tower_jwt_auth::JwtAuthLayer;
//!
//! #[derive(Clone, serde::Deserialize)]
//! struct MyClaims { sub: String }
//!
//! let auth = JwtAuthLayer::<MyClaims>::builder()
//!     .hs256(b"an example secret that is 32 bytes+")
//!     .certificate_bound_tokens()
//!     .build()
//!     .unwrap();
//! # let _ = auth;
//! ```

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::Extensions;
use subtle::ConstantTimeEq;

use crate::AuthError;
use crate::backend::sha256;

/// The DER of the certificate the client authenticated the TLS connection with: what the TLS
/// layer puts into every request of that connection for the
/// [certificate-bound token](self) check.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCertificate(Vec<u8>);

impl ClientCertificate {
    /// The end-entity certificate, DER-encoded, as the TLS handshake delivered it.
    pub fn new(der: impl Into<Vec<u8>>) -> ClientCertificate {
        ClientCertificate(der.into())
    }

    /// The DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientCertificate({} bytes)", self.0.len())
    }
}

/// RFC 8705 §3: a token whose `cnf` has `x5t#S256` passes only with the client certificate
/// that hashes to it.
pub(crate) fn check(token: &str, extensions: &Extensions) -> Result<(), AuthError> {
    let Some(bound) = crate::cnf::read(token)?.x5t_s256 else {
        return Ok(());
    };
    let presented = extensions
        .get::<ClientCertificate>()
        .and_then(|cert| sha256(cert.der()))
        .map(|hash| URL_SAFE_NO_PAD.encode(hash));
    match presented {
        Some(hash) if bool::from(hash.as_bytes().ct_eq(bound.as_bytes())) => Ok(()),
        _ => Err(AuthError::CertificateMismatch),
    }
}
