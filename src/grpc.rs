//! gRPC with [tonic](https://docs.rs/tonic) (feature `tonic`).
//!
//! Two ways to put the layer in front of a tonic server:
//!
//! - `Server::builder().layer(auth)`: every service of the server needs a token;
//! - `add_service(auth.layer(svc))`: only `svc` needs one. [`JwtAuth`] forwards
//!   [`tonic::server::NamedService`], so the router still finds the service by its name, and
//!   the services added without the layer (health, reflection) stay open.
//!
//! A refused call is answered `Code::Unauthenticated` (HTTP 200, `grpc-status: 16`, no body)
//! without reaching the service. An accepted one reaches it with
//! [`Claims<C>`](crate::Claims) in its extensions; tonic hands the HTTP request's extensions on
//! to the `tonic::Request`, where [`claims`] (a caller required) and [`optional_claims`] read
//! them.
//!
//! ```
//! use tonic::transport::Server;
//! use tower_jwt_auth::JwtAuthLayer;
//! use tower_layer::Layer;
//!
//! #[derive(serde::Deserialize)]
//! struct MyClaims { sub: String }
//!
//! # fn router<S>(greeter: S) -> Result<(), Box<dyn std::error::Error>>
//! # where
//! #     S: tower_service::Service<
//! #             http::Request<tonic::body::Body>,
//! #             Response = http::Response<tonic::body::Body>,
//! #             Error = std::convert::Infallible,
//! #         > + tonic::server::NamedService + Clone + Send + Sync + 'static,
//! #     S::Future: Send + 'static,
//! # {
//! let auth = JwtAuthLayer::<MyClaims>::builder()
//!     .hs256(b"an example secret that is 32 bytes+")
//!     .issuer("https://id.example.com")
//!     .audience("greeter-api")
//!     .build()?;
//! let (_reporter, health) = tonic_health::server::health_reporter();
//! let router = Server::builder()
//!     .add_service(health) // open: load balancers probe it without a token
//!     .add_service(auth.layer(greeter)); // every call needs a valid token
//! # let _ = router;
//! # Ok(())
//! # }
//! ```

use tonic::server::NamedService;

use crate::auth::JwtAuth;
use crate::claims::{Left, NoLayer};
use crate::{AuthError, Claims};

impl<S: NamedService, C, R> NamedService for JwtAuth<S, C, R> {
    const NAME: &'static str = S::NAME;
}

/// The verified claims of a gRPC request, as the layer for `C` left them in its extensions,
/// for a service that requires a caller.
///
/// - a call with a valid token: its claims;
/// - a call a layer for `C` let through without a token (optional mode, a public path):
///   `Code::Unauthenticated`, as the layer answers a call without a token;
/// - a call no `JwtAuthLayer` for `C` ran on (a wiring mistake): `Code::Internal`, and an
///   error event naming `C` (feature `tracing`). A missing layer is the server's fault; it
///   never passes as a caller, nor as a request to retry with a token.
///
/// ```
/// use tonic::{Request, Response, Status};
/// use tower_jwt_auth::grpc;
///
/// #[derive(serde::Deserialize)]
/// struct MyClaims { sub: String }
///
/// async fn say_hello(request: Request<String>) -> Result<Response<String>, Status> {
///     let caller = grpc::claims::<MyClaims, _>(&request)?;
///     Ok(Response::new(format!("hello {}, from {}", request.get_ref(), caller.sub)))
/// }
/// # let mut request = Request::new("world".to_owned());
/// # request.extensions_mut().insert(tower_jwt_auth::Claims::new(MyClaims { sub: "alice".into() }));
/// # let reply = futures_util::FutureExt::now_or_never(say_hello(request)).unwrap().unwrap();
/// # assert_eq!(reply.get_ref(), "hello world, from alice");
/// # let refused = futures_util::FutureExt::now_or_never(say_hello(Request::new("world".into())));
/// # assert_eq!(refused.unwrap().unwrap_err().code(), tonic::Code::Internal);
/// ```
pub fn claims<C, T>(request: &tonic::Request<T>) -> Result<&Claims<C>, tonic::Status>
where
    C: Send + Sync + 'static,
{
    optional_claims(request)?
        .ok_or_else(|| tonic::Status::unauthenticated(AuthError::MissingToken.to_string()))
}

/// The verified claims of a gRPC request, for a service that also serves anonymous callers
/// (a layer for `C` in optional mode): `None` for a call the layer let through without a
/// token; `Code::Internal` when no `JwtAuthLayer` for `C` ran on the call, as for
/// [`claims`]: a missing layer would otherwise make every caller look anonymous.
///
/// ```
/// use tonic::{Request, Response, Status};
/// use tower_jwt_auth::grpc;
///
/// #[derive(serde::Deserialize)]
/// struct MyClaims { sub: String }
///
/// async fn greet(request: Request<()>) -> Result<Response<String>, Status> {
///     Ok(Response::new(match grpc::optional_claims::<MyClaims, _>(&request)? {
///         Some(caller) => format!("hello {}", caller.sub),
///         None => "hello stranger".to_owned(),
///     }))
/// }
/// # let mut request = Request::new(());
/// # request.extensions_mut().insert(tower_jwt_auth::Claims::new(MyClaims { sub: "alice".into() }));
/// # let reply = futures_util::FutureExt::now_or_never(greet(request)).unwrap().unwrap();
/// # assert_eq!(reply.get_ref(), "hello alice");
/// ```
pub fn optional_claims<C, T>(
    request: &tonic::Request<T>,
) -> Result<Option<&Claims<C>>, tonic::Status>
where
    C: Send + Sync + 'static,
{
    crate::claims::lookup(request.extensions(), "grpc::claims")
        .map(Left::claims)
        .map_err(|NoLayer| tonic::Status::internal(NoLayer::TEXT))
}
