//! JWT authentication for a tower stack: [`JwtAuthLayer`], its builder, the [`JwtAuth`]
//! service and its [`ResponseFuture`]. The per-request steps live in one place, `pipeline`.
//!
//! ```
//! use std::time::Duration;
//! use tower_jwt_auth::JwtAuthLayer;
//!
//! #[derive(Clone, serde::Deserialize)]
//! struct MyClaims { sub: String, roles: Vec<String> }
//!
//! let auth = JwtAuthLayer::<MyClaims>::builder()
//!     .hs256(b"an example secret that is 32 bytes+")
//!     .issuer("https://id.example.com")
//!     .audience("orders-api")
//!     .token_from_cookie("access_token")
//!     .build()
//!     .expect("valid configuration");
//!
//! // Mistakes surface at build time, not per request:
//! let err = JwtAuthLayer::<MyClaims>::builder().hs256(b"short").build().unwrap_err();
//! assert!(err.to_string().contains("RFC 7518"));
//! ```

mod builder;
mod checks;
mod future;
mod layer;
pub(crate) mod pipeline;
mod public;
mod service;

pub use builder::JwtAuthBuilder;
pub(crate) use checks::PayloadCheck;
pub use future::ResponseFuture;
pub use layer::{DEFAULT_MAX_TOKEN_SIZE, JwtAuthLayer};
pub use service::JwtAuth;
