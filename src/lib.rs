// The README's examples issue their own tokens: it is the crate's documentation (and its
// doctests) whenever the `issue` feature is on, as it is by default and on docs.rs.
#![cfg_attr(feature = "issue", doc = include_str!("../README.md"))]
#![cfg_attr(
    not(feature = "issue"),
    doc = "JWT authentication for any Tower stack; see README.md, or build the docs with the \
           `issue` feature."
)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod algorithm;
mod auth;
pub mod authorize;
mod backend;
#[cfg(feature = "cache")]
pub mod cache;
pub mod claims;
mod claims_set;
mod clock;
pub mod csrf;
pub mod error;
#[cfg(feature = "issue")]
pub mod issue;
pub mod keys;
pub mod response;
pub mod revocation;
pub mod source;
pub mod tenant;
mod token;
pub mod validation;
mod verify;

pub use algorithm::Algorithm;
pub use auth::{DEFAULT_MAX_TOKEN_SIZE, JwtAuth, JwtAuthBuilder, JwtAuthLayer, ResponseFuture};
pub use authorize::{RequireClaims, RequireClaimsLayer, Requirement};
pub use backend::backend_name;
pub use claims::Claims;
pub use clock::Clock;
pub use csrf::CsrfPolicy;
pub use error::{AuthError, BuildError};
#[cfg(feature = "issue")]
pub use issue::{IssueError, IssuedToken, TokenIssuer};
#[cfg(feature = "remote")]
pub use keys::remote::{RemoteJwks, RemoteJwksBuilder};
pub use keys::{Jwks, Key};
pub use response::{ErrorResponder, Rfc6750};
pub use source::TokenSource;
pub use tenant::Tenant;
