//! The layer in a real tonic server on 127.0.0.1, called by a real tonic client: gRPC callers
//! get `Code::Unauthenticated`, and refused calls never reach the service. First the layer in
//! front of the whole server (the generated gRPC health service); then, with the feature
//! `tonic` ([`greeter`]), in front of one service only (`add_service(auth.layer(greeter))`)
//! with health left open, the claims read by `grpc::claims`, and examples/tonic_server.rs run
//! as a black box against its contract in EXAMPLES.md.

use crate::common;

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use common::*;
use serde_json::json;
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::server::NamedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tower::Service;
use tower_jwt_auth::{Claims, JwtAuthLayer};

/// Wraps a gRPC service and records, for every request that reaches it, the `sub` of the
/// claims the layer handed over (`None` if there were none).
#[derive(Clone)]
struct Recorded<S> {
    inner: S,
    seen: Arc<Mutex<Vec<Option<String>>>>,
}

impl<S: NamedService> NamedService for Recorded<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for Recorded<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let sub = req
            .extensions()
            .get::<Claims<TestClaims>>()
            .map(|c| c.sub.clone());
        self.seen.lock().unwrap().push(sub);
        self.inner.call(req)
    }
}

type Seen = Arc<Mutex<Vec<Option<String>>>>;

/// Serves the health service behind `layer` on a fresh port; returns a connected channel
/// and the record of the requests that reached the service.
async fn server(layer: JwtAuthLayer<TestClaims>) -> (Channel, Seen) {
    let seen = Seen::default();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let health = Recorded {
        inner: health,
        seen: seen.clone(),
    };
    // Bound before the server task starts, so connecting cannot race it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        Server::builder()
            .layer(layer)
            .add_service(health)
            .serve_with_incoming(TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    (channel, seen)
}

/// One health Check, with `token` (if any) as `authorization: Bearer` metadata.
async fn check(
    channel: Channel,
    token: Option<&str>,
) -> Result<HealthCheckResponse, tonic::Status> {
    let bearer: Option<MetadataValue<_>> = token.map(|t| format!("Bearer {t}").parse().unwrap());
    let mut client = HealthClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
        if let Some(b) = &bearer {
            req.metadata_mut().insert("authorization", b.clone());
        }
        Ok(req)
    });
    client
        .check(HealthCheckRequest::default())
        .await
        .map(tonic::Response::into_inner)
}

/// The refusal is `Unauthenticated`, and its message tells nothing of the token.
fn assert_refused(status: &tonic::Status, token: Option<&str>) {
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(!status.message().is_empty());
    if let Some(token) = token {
        for part in token.split('.') {
            assert!(
                !status.message().contains(part),
                "message echoes the token: {:?}",
                status.message()
            );
        }
    }
}

#[tokio::test]
async fn valid_token_is_served_and_claims_reach_the_service() {
    let (channel, seen) = server(hs256_layer()).await;
    let token = hs256_token(json!({}));
    let res = check(channel, Some(&token)).await.unwrap();
    assert_eq!(res.status(), ServingStatus::Serving);
    assert_eq!(*seen.lock().unwrap(), [Some("alice".to_owned())]);
}

#[tokio::test]
async fn token_from_token_issuer_is_served() {
    let (channel, seen) = server(hs256_layer()).await;
    let issued = access_issuer()
        .issue("bob", &json!({ "roles": ["ops"] }))
        .unwrap();
    let res = check(channel, Some(&issued.token)).await.unwrap();
    assert_eq!(res.status(), ServingStatus::Serving);
    assert_eq!(*seen.lock().unwrap(), [Some("bob".to_owned())]);
}

#[tokio::test]
async fn missing_token_is_unauthenticated() {
    let (channel, seen) = server(hs256_layer()).await;
    let status = check(channel, None).await.unwrap_err();
    assert_refused(&status, None);
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn expired_token_is_unauthenticated() {
    let (channel, seen) = server(hs256_layer()).await;
    let token = hs256_token(json!({ "iat": now() - 7200, "exp": now() - 3600 }));
    let status = check(channel, Some(&token)).await.unwrap_err();
    assert_refused(&status, Some(&token));
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn bad_signature_is_unauthenticated() {
    let (channel, seen) = server(hs256_layer()).await;
    let token = other_key_token();
    let status = check(channel, Some(&token)).await.unwrap_err();
    assert_refused(&status, Some(&token));
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn refused_and_accepted_calls_share_a_connection() {
    // The same HTTP/2 connection carries a refused call and then a good one: a trailers-only
    // refusal leaves the connection usable.
    let (channel, seen) = server(hs256_layer()).await;
    let bad = other_key_token();
    assert_refused(
        &check(channel.clone(), Some(&bad)).await.unwrap_err(),
        Some(&bad),
    );
    let good = hs256_token(json!({}));
    let res = check(channel, Some(&good)).await.unwrap();
    assert_eq!(res.status(), ServingStatus::Serving);
    assert_eq!(*seen.lock().unwrap(), [Some("alice".to_owned())]);
}

/// The layer in front of one service, with the feature `tonic`: a hand-written
/// `helloworld.Greeter` (no protoc) behind `add_service(auth.layer(greeter))`, the standard
/// health service beside it without the layer.
#[cfg(feature = "tonic")]
mod greeter {
    use super::*;

    use std::convert::Infallible;
    use std::future::Future;
    use std::net::SocketAddr;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::uri::PathAndQuery;
    use jsonwebtoken::EncodingKey;
    use serde_json::Value;
    use tonic::body::Body;
    use tonic::{Request, Response, Status};
    use tonic_prost::ProstCodec;
    use tower::Layer;
    use tower_jwt_auth::issue::TokenIssuer;
    use tower_jwt_auth::{Algorithm, JwtAuth, grpc};

    use crate::common::example::{self, Example};

    /// `message HelloRequest { string name = 1; }`
    #[derive(Clone, PartialEq, prost::Message)]
    struct HelloRequest {
        #[prost(string, tag = "1")]
        name: String,
    }

    /// `message HelloReply { string message = 1; }`
    #[derive(Clone, PartialEq, prost::Message)]
    struct HelloReply {
        #[prost(string, tag = "1")]
        message: String,
    }

    const SAY_HELLO: &str = "/helloworld.Greeter/SayHello";

    /// `helloworld.Greeter`: SayHello answers `hello <name> from <sub>`, the `sub` read with
    /// `grpc::optional_claims` (`nobody` for an anonymous call), or with `grpc::claims` when
    /// the name is `required`. Counts the calls that reach it.
    #[derive(Clone, Default)]
    struct Greeter {
        reached: Arc<AtomicUsize>,
    }

    impl Greeter {
        fn reached(&self) -> usize {
            self.reached.load(Ordering::SeqCst)
        }
    }

    impl NamedService for Greeter {
        const NAME: &'static str = "helloworld.Greeter";
    }

    type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

    impl Service<http::Request<Body>> for Greeter {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: http::Request<Body>) -> Self::Future {
            self.reached.fetch_add(1, Ordering::SeqCst);
            if request.uri().path() != SAY_HELLO {
                return Box::pin(async { Ok(Status::unimplemented("no such method").into_http()) });
            }
            let rpc = tower::service_fn(|request: Request<HelloRequest>| async move {
                let caller = if request.get_ref().name == "required" {
                    grpc::claims::<TestClaims, _>(&request)?.sub.clone()
                } else {
                    grpc::optional_claims::<TestClaims, _>(&request)?
                        .map_or_else(|| "nobody".to_owned(), |c| c.sub.clone())
                };
                let message = format!("hello {} from {caller}", request.get_ref().name);
                Ok::<_, Status>(Response::new(HelloReply { message }))
            });
            Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(ProstCodec::default());
                Ok(grpc.unary(rpc, request).await)
            })
        }
    }

    /// Serves health (open) and a Greeter behind `layer` on a fresh port; returns a connected
    /// channel and the Greeter, to count the calls that reached it.
    async fn server(layer: JwtAuthLayer<TestClaims>) -> (Channel, Greeter) {
        let greeter = Greeter::default();
        let (reporter, health) = tonic_health::server::health_reporter();
        // The wrapped service answers to the Greeter's name.
        reporter.set_serving::<JwtAuth<Greeter, TestClaims>>().await;
        let protected = layer.layer(greeter.clone());
        let router = Server::builder().add_service(health).add_service(protected);
        (serve(router).await, greeter)
    }

    /// Serves `router` on a fresh port; returns a connected channel.
    async fn serve(router: tonic::transport::server::Router) -> Channel {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            router
                .serve_with_incoming(TcpIncoming::from(listener))
                .await
                .unwrap();
        });
        connect(addr).await
    }

    async fn connect(addr: SocketAddr) -> Channel {
        Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// `request` with `token` (if any) as `authorization: Bearer` metadata.
    fn with_token<T>(message: T, token: Option<&str>) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(token) = token {
            let bearer: MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
            request.metadata_mut().insert("authorization", bearer);
        }
        request
    }

    /// A health Check of `service` (`""`: the whole server), with `token` if any.
    async fn health(channel: Channel, service: &str, token: Option<&str>) -> ServingStatus {
        let request = HealthCheckRequest {
            service: service.to_owned(),
        };
        HealthClient::new(channel)
            .check(with_token(request, token))
            .await
            .unwrap()
            .into_inner()
            .status()
    }

    /// `SayHello { name: "grpc" }` with `token` if any; the reply's message.
    async fn say_hello(channel: Channel, token: Option<&str>) -> Result<String, Status> {
        say_hello_to(channel, token, "grpc").await
    }

    /// `SayHello { name }` with `token` if any; the reply's message.
    async fn say_hello_to(
        channel: Channel,
        token: Option<&str>,
        name: &str,
    ) -> Result<String, Status> {
        let request = HelloRequest {
            name: name.to_owned(),
        };
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.unwrap();
        grpc.unary(
            with_token(request, token),
            PathAndQuery::from_static(SAY_HELLO),
            ProstCodec::default(),
        )
        .await
        .map(|reply: Response<HelloReply>| reply.into_inner().message)
    }

    #[test]
    fn the_layer_forwards_the_service_name() {
        assert_eq!(
            <JwtAuth<Greeter, TestClaims> as NamedService>::NAME,
            "helloworld.Greeter"
        );
        assert_eq!(
            <JwtAuth<JwtAuth<Greeter, TestClaims>, TestClaims> as NamedService>::NAME,
            "helloworld.Greeter"
        );
    }

    #[test]
    fn claims_reads_what_tonic_takes_from_the_http_extensions() {
        let claims = TestClaims {
            sub: "alice".into(),
            roles: vec![],
        };
        let mut http = http::Request::new(());
        http.extensions_mut().insert(Claims::new(claims.clone()));
        let request = Request::from_http(http);
        assert_eq!(
            grpc::claims::<TestClaims, _>(&request).ok().map(|c| &**c),
            Some(&claims)
        );
        assert_eq!(
            grpc::optional_claims::<TestClaims, _>(&request)
                .ok()
                .flatten()
                .map(|c| &**c),
            Some(&claims)
        );
        // Another claims type is another extension: no layer for it ran.
        let missing = grpc::claims::<Value, _>(&request).unwrap_err();
        assert_eq!(missing.code(), Code::Internal);
        assert!(missing.message().contains("JwtAuthLayer"), "{missing:?}");
        let missing = grpc::optional_claims::<TestClaims, _>(&Request::new(())).unwrap_err();
        assert_eq!(missing.code(), Code::Internal);
    }

    /// A Greeter added without the layer (a wiring mistake): its calls fail `Internal`, with
    /// or without a token, and never pass as anonymous callers.
    #[tokio::test]
    async fn a_service_without_the_layer_answers_internal() {
        let greeter = Greeter::default();
        let channel = serve(Server::builder().add_service(greeter.clone())).await;
        let good = hs256_token(json!({}));
        for token in [None, Some(good.as_str())] {
            for name in ["grpc", "required"] {
                let status = say_hello_to(channel.clone(), token, name)
                    .await
                    .unwrap_err();
                assert_eq!(
                    status.code(),
                    Code::Internal,
                    "{name}, token {}",
                    token.is_some()
                );
                assert!(status.message().contains("JwtAuthLayer"), "{status:?}");
            }
        }
        assert_eq!(greeter.reached(), 4);
    }

    #[tokio::test]
    async fn health_is_open_while_the_greeter_needs_a_token() {
        let (channel, greeter) = server(access_layer()).await;
        assert_eq!(
            health(channel.clone(), "", None).await,
            ServingStatus::Serving
        );
        assert_eq!(
            health(channel.clone(), "helloworld.Greeter", None).await,
            ServingStatus::Serving
        );
        // Health is not behind the layer: not even a bad token is looked at.
        assert_eq!(
            health(channel.clone(), "", Some("not.a.token")).await,
            ServingStatus::Serving
        );

        let status = say_hello(channel.clone(), None).await.unwrap_err();
        assert_refused(&status, None);
        assert_eq!(greeter.reached(), 0);

        let issued = access_issuer()
            .issue("carol", &json!({ "roles": ["ops"] }))
            .unwrap();
        let message = say_hello(channel, Some(&issued.token)).await.unwrap();
        assert_eq!(message, "hello grpc from carol");
        assert_eq!(greeter.reached(), 1);
    }

    #[tokio::test]
    async fn expired_forged_and_foreign_tokens_never_reach_the_greeter() {
        let (channel, greeter) = server(hs256_layer()).await;
        let expired = hs256_token(json!({ "iat": now() - 7200, "exp": now() - 3600 }));
        let other_audience = hs256_token(json!({ "aud": "another-api" }));
        for token in [expired, other_key_token(), other_audience] {
            let status = say_hello(channel.clone(), Some(&token)).await.unwrap_err();
            assert_refused(&status, Some(&token));
        }
        assert_eq!(greeter.reached(), 0);
        // The same connection still serves both services.
        assert_eq!(
            health(channel.clone(), "", None).await,
            ServingStatus::Serving
        );
        let good = hs256_token(json!({}));
        assert_eq!(
            say_hello(channel, Some(&good)).await.unwrap(),
            "hello grpc from alice"
        );
        assert_eq!(greeter.reached(), 1);
    }

    #[tokio::test]
    async fn optional_layer_hands_anonymous_calls_over_without_claims() {
        let (channel, greeter) = server(hs256_builder().optional().build().unwrap()).await;
        assert_eq!(
            say_hello(channel.clone(), None).await.unwrap(),
            "hello grpc from nobody"
        );
        let good = hs256_token(json!({ "sub": "dave" }));
        assert_eq!(
            say_hello(channel.clone(), Some(&good)).await.unwrap(),
            "hello grpc from dave"
        );
        // A method that requires a caller refuses the anonymous call as the layer would.
        let status = say_hello_to(channel.clone(), None, "required")
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(status.message(), "no bearer token");
        assert_eq!(
            say_hello_to(channel.clone(), Some(&good), "required")
                .await
                .unwrap(),
            "hello required from dave"
        );
        // Optional means "no token is fine", not "a bad token is fine".
        let status = say_hello(channel, Some(&other_key_token()))
            .await
            .unwrap_err();
        assert_refused(&status, None);
        assert_eq!(greeter.reached(), 4);
    }

    /// One layer for the whole server, with the health Check public: it answers without a
    /// token and hands no claims over even with one; the Greeter (and health's Watch) still
    /// need a token.
    #[tokio::test]
    async fn one_global_layer_with_a_public_health_check() {
        let layer = hs256_builder::<TestClaims>()
            .public_path("/grpc.health.v1.Health/Check")
            .build()
            .unwrap();
        let greeter = Greeter::default();
        let seen = Seen::default();
        let (_reporter, health_service) = tonic_health::server::health_reporter();
        let recorded = Recorded {
            inner: health_service,
            seen: seen.clone(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = greeter.clone();
        tokio::spawn(async move {
            Server::builder()
                .layer(layer)
                .add_service(recorded)
                .add_service(served)
                .serve_with_incoming(TcpIncoming::from(listener))
                .await
                .unwrap();
        });
        let channel = connect(addr).await;
        let good = hs256_token(json!({}));
        for token in [None, Some(good.as_str()), Some("not.a.token")] {
            assert_eq!(
                health(channel.clone(), "", token).await,
                ServingStatus::Serving
            );
        }
        assert_eq!(*seen.lock().unwrap(), vec![None, None, None]);

        let status = say_hello(channel.clone(), None).await.unwrap_err();
        assert_refused(&status, None);
        assert_eq!(greeter.reached(), 0);
        assert_eq!(
            say_hello(channel.clone(), Some(&good)).await.unwrap(),
            "hello grpc from alice"
        );
        assert_eq!(greeter.reached(), 1);

        // Watch is another method of the same service: not public.
        let mut client = HealthClient::new(channel);
        let status = client
            .watch(HealthCheckRequest::default())
            .await
            .unwrap_err();
        assert_refused(&status, None);
        assert_eq!(seen.lock().unwrap().len(), 3);
    }

    // -----------------------------------------------------------------------------------------
    // examples/tonic_server.rs, as a black box (its contract in EXAMPLES.md)

    /// What the example reads from its environment: none of it comes from this process.
    const EXAMPLE_ENV: [&str; 3] = ["JWT_SECRET", "JWT_ISSUER", "JWT_AUDIENCE"];

    /// A token with exactly what EXAMPLES.md lists: HS256, `typ` `at+jwt`, sub, iss, aud, exp.
    fn contract_token(secret: &str, claims: Value) -> String {
        sign_raw(
            &json!({ "alg": "HS256", "typ": "at+jwt" }),
            &claims,
            Algorithm::HS256,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_tonic_server_example_keeps_its_contract() {
        let binary = tokio::task::spawn_blocking(|| example::build("tonic_server"))
            .await
            .unwrap();
        let secret = "a-secret-for-the-tonic-example-of-32+-bytes";
        let (iss, aud) = ("https://id.example.test", "greeter-api");
        let example = Example::start(
            &binary,
            &EXAMPLE_ENV,
            &[
                ("JWT_SECRET", secret),
                ("JWT_ISSUER", iss),
                ("JWT_AUDIENCE", aud),
            ],
        );
        let channel = connect(example.addr).await;

        // Health: SERVING without a token.
        assert_eq!(
            health(channel.clone(), "", None).await,
            ServingStatus::Serving
        );

        // SayHello without a token: UNAUTHENTICATED (16).
        let status = say_hello(channel.clone(), None).await.unwrap_err();
        assert_eq!(status.code() as i32, 16);

        // With a valid token: OK and a message naming its `sub`.
        let claims = json!({ "sub": "erin", "iss": iss, "aud": aud, "exp": now() + 300 });
        let message = say_hello(channel.clone(), Some(&contract_token(secret, claims)))
            .await
            .unwrap();
        assert!(message.contains("erin"), "{message}");
        let issued = TokenIssuer::hs256(secret)
            .unwrap()
            .issuer(iss)
            .audience(aud)
            .issue("frank", &json!({}))
            .unwrap();
        let message = say_hello(channel.clone(), Some(&issued.token))
            .await
            .unwrap();
        assert!(message.contains("frank"), "{message}");

        // Expired, wrong audience, wrong `typ`, wrong key: UNAUTHENTICATED, token not echoed.
        let expired = contract_token(
            secret,
            json!({ "sub": "erin", "iss": iss, "aud": aud, "exp": now() - 600 }),
        );
        let foreign = contract_token(
            secret,
            json!({ "sub": "erin", "iss": iss, "aud": "demo-api", "exp": now() + 300 }),
        );
        let id_token = sign_raw(
            &json!({ "alg": "HS256", "typ": "JWT" }),
            &json!({ "sub": "erin", "iss": iss, "aud": aud, "exp": now() + 300 }),
            Algorithm::HS256,
            &EncodingKey::from_secret(secret.as_bytes()),
        );
        let forged = contract_token(
            "not-the-secret-of-the-tonic-example-32+-bytes",
            json!({ "sub": "erin", "iss": iss, "aud": aud, "exp": now() + 300 }),
        );
        for token in [expired, foreign, id_token, forged] {
            let status = say_hello(channel.clone(), Some(&token)).await.unwrap_err();
            assert_refused(&status, Some(&token));
        }
        drop(example);

        // Without JWT_ISSUER and JWT_AUDIENCE: the quickstart's defaults.
        let example = Example::start(&binary, &EXAMPLE_ENV, &[("JWT_SECRET", secret)]);
        let channel = connect(example.addr).await;
        let claims = json!({ "sub": "grace", "iss": "tower-jwt-auth-demo", "aud": "demo-api",
                             "exp": now() + 300 });
        let message = say_hello(channel.clone(), Some(&contract_token(secret, claims)))
            .await
            .unwrap();
        assert!(message.contains("grace"), "{message}");
        assert_eq!(health(channel, "", None).await, ServingStatus::Serving);
    }
}
