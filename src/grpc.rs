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
//! to the `tonic::Request`, where [`claims`] reads them.
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

use crate::Claims;
use crate::auth::JwtAuth;

impl<S: NamedService, C, R> NamedService for JwtAuth<S, C, R> {
    const NAME: &'static str = S::NAME;
}

/// The verified claims of a gRPC request, as the layer left them in its extensions.
///
/// `None` when the call came through without a token (a layer in optional mode), or when no
/// `JwtAuthLayer<C, _>` with this `C` ran on it (a wiring mistake); a service that requires a
/// caller answers both with `Status::unauthenticated`.
///
/// ```
/// use tonic::{Request, Response, Status};
/// use tower_jwt_auth::grpc;
///
/// #[derive(serde::Deserialize)]
/// struct MyClaims { sub: String }
///
/// async fn say_hello(request: Request<String>) -> Result<Response<String>, Status> {
///     let caller = grpc::claims::<MyClaims, _>(&request)
///         .ok_or_else(|| Status::unauthenticated("no caller"))?;
///     Ok(Response::new(format!("hello {}, from {}", request.get_ref(), caller.sub)))
/// }
/// # let mut request = Request::new("world".to_owned());
/// # request.extensions_mut().insert(tower_jwt_auth::Claims::new(MyClaims { sub: "alice".into() }));
/// # let reply = futures_util::FutureExt::now_or_never(say_hello(request)).unwrap().unwrap();
/// # assert_eq!(reply.get_ref(), "hello world, from alice");
/// ```
pub fn claims<C, T>(request: &tonic::Request<T>) -> Option<&Claims<C>>
where
    C: Send + Sync + 'static,
{
    request.extensions().get::<Claims<C>>()
}
