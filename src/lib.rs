#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

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
pub mod issue;
pub mod keys;
pub mod response;
pub mod revocation;
pub mod source;
pub mod tenant;
mod token;
pub mod validation;
mod verify;

pub use auth::{DEFAULT_MAX_TOKEN_SIZE, JwtAuth, JwtAuthBuilder, JwtAuthLayer, ResponseFuture};
pub use authorize::{RequireClaims, RequireClaimsLayer, Requirement};
pub use backend::backend_name;
pub use claims::Claims;
pub use clock::Clock;
pub use csrf::CsrfPolicy;
pub use error::{AuthError, BuildError};
pub use issue::{IssueError, IssuedToken, TokenIssuer};
#[cfg(feature = "remote")]
pub use keys::remote::{RemoteJwks, RemoteJwksBuilder};
pub use keys::{Jwks, Key};
pub use response::{ErrorResponder, Rfc6750};
pub use source::TokenSource;
pub use tenant::Tenant;

/// jsonwebtoken itself, for [`DecodingKey`](jsonwebtoken::DecodingKey) and its other types.
pub use jsonwebtoken;
/// The JWS algorithms, re-exported from jsonwebtoken.
pub use jsonwebtoken::Algorithm;
