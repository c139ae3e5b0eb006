// The README's examples issue their own tokens and protect one gRPC service: it is the crate's
// documentation (and its doctests) when the `issue` and `tonic` features are on, as they are by
// default and on docs.rs.
#![cfg_attr(all(feature = "issue", feature = "tonic"), doc = include_str!("../README.md"))]
#![cfg_attr(
    not(all(feature = "issue", feature = "tonic")),
    doc = "JWT authentication for any Tower stack; see README.md, or build the docs with the \
           `issue` and `tonic` features."
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
mod claims;
mod claims_set;
mod clock;
mod cnf;
mod csrf;
#[cfg(feature = "dpop")]
pub mod dpop;
mod error;
#[cfg(feature = "tonic")]
pub mod grpc;
#[cfg(feature = "issue")]
pub mod issue;
mod keys;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod mtls;
pub mod providers;
mod resource;
pub mod resource_metadata;
mod response;
pub mod revocation;
mod source;
mod tenant;
#[cfg(feature = "test-util")]
pub mod testing;
mod token;
mod validation;
mod verify;

#[cfg(feature = "remote")]
pub use keys::remote;

pub use algorithm::Algorithm;
pub use auth::{DEFAULT_MAX_TOKEN_SIZE, JwtAuth, JwtAuthBuilder, JwtAuthLayer, ResponseFuture};
pub use backend::backend_name;
pub use claims::Claims;
#[cfg(feature = "axum")]
pub use claims::ClaimsRejection;
pub use clock::Clock;
pub use csrf::CsrfPolicy;
pub use error::{AuthError, BuildError};
pub use keys::{Jwks, Key};
pub use response::{ErrorResponder, ProblemJson, Rfc6750, grpc_response, is_grpc};
pub use source::TokenSource;
pub use tenant::Tenant;
