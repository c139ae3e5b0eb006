//! Certificate-bound tokens (RFC 8705 §3) over real mutual TLS: a rustls server
//! (tokio-rustls) that puts the client's certificate into each request as a
//! `ClientCertificate`, as the `mtls` module docs show, and reqwest clients presenting one of
//! two certificates of a test CA, or none (tests/data/mtls, made with openssl).

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::{Extension, Router};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use reqwest::StatusCode;
use serde_json::json;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig, crypto};
use tower_jwt_auth::mtls::ClientCertificate;
use tower_jwt_auth::{AuthError, JwtAuthLayer};

use common::{Hits, Reply, TestClaims, hs256_builder, hs256_token, sha256_b64, subject};

fn data(name: &str) -> Vec<u8> {
    common::data(&format!("mtls/{name}"))
}

/// `x5t#S256` of test certificate `name`: base64url(SHA-256(DER)).
fn x5t(name: &str) -> String {
    let der = CertificateDer::from_pem_slice(&data(&format!("{name}.pem"))).unwrap();
    sha256_b64(&der)
}

/// A token of the test policy bound to certificate `name`.
fn bound_token(name: &str) -> String {
    hs256_token(json!({ "cnf": { "x5t#S256": x5t(name) } }))
}

/// `/me` behind `layer`, served over TLS on 127.0.0.1; clients may present a certificate of
/// the test CA, which the server hands to the layer as a `ClientCertificate`.
async fn start(layer: JwtAuthLayer<TestClaims>) -> (SocketAddr, Hits) {
    let provider = Arc::new(crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&data("ca.pem")).unwrap())
        .unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .unwrap();
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(&data("server.pem")).unwrap()],
            PrivateKeyDer::from_pem_slice(&data("server.key")).unwrap(),
        )
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let hits = Hits::default();
    let app = Router::new()
        .route("/me", subject::<TestClaims>(&hits))
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let cert = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .map(|der| ClientCertificate::new(der.to_vec()));
                let app = match cert {
                    Some(cert) => app.layer(Extension(cert)),
                    None => app,
                };
                let _ = Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                    .await;
            });
        }
    });
    (addr, hits)
}

/// A client trusting the test CA, presenting certificate `identity` when given.
fn client(identity: Option<&str>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&data("ca.pem")).unwrap());
    if let Some(name) = identity {
        let mut pem = data(&format!("{name}.pem"));
        pem.extend(data(&format!("{name}.key")));
        builder = builder.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    builder.build().unwrap()
}

/// `GET https://127.0.0.1:<port>/me` with `token`, presenting `identity`.
async fn me(addr: SocketAddr, identity: Option<&str>, token: &str) -> Reply {
    let res = client(identity)
        .get(format!("https://127.0.0.1:{}/me", addr.port()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    Reply::read(res).await
}

#[tokio::test]
async fn a_certificate_bound_token_passes_only_with_its_certificate() {
    let (addr, hits) = start(hs256_builder().certificate_bound_tokens().build().unwrap()).await;
    let token = bound_token("client-a");

    let reply = me(addr, Some("client-a"), &token).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.body, "alice");
    assert_eq!(hits.take(), 1);

    // Another certificate of the same CA, or none: 401 invalid_token (RFC 8705 §3).
    for identity in [Some("client-b"), None] {
        me(addr, identity, &token)
            .await
            .assert_invalid_token("client certificate does not match the token");
    }
    assert_eq!(hits.count(), 0, "a refused request reached the handler");

    // A token bound to nothing is not affected, with or without a certificate.
    let plain = hs256_token(json!({}));
    for identity in [Some("client-b"), None] {
        assert_eq!(me(addr, identity, &plain).await.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn without_the_setting_a_certificate_bound_token_is_refused_unless_taken_as_bearer() {
    // The layer cannot check the binding, so the token is not a bearer token here either
    // (RFC 7800 §3.1), whatever certificate comes with it.
    let (addr, hits) = start(hs256_builder().build().unwrap()).await;
    for identity in [Some("client-a"), Some("client-b"), None] {
        me(addr, identity, &bound_token("client-a"))
            .await
            .assert_invalid_token(
                "token bound by a confirmation method this resource does not check",
            );
    }
    assert_eq!(hits.count(), 0, "a refused request reached the handler");
    assert_eq!(
        me(addr, None, &hs256_token(json!({}))).await.status,
        StatusCode::OK
    );

    let (addr, hits) = start(
        hs256_builder()
            .accept_bound_tokens_as_bearer()
            .build()
            .unwrap(),
    )
    .await;
    let reply = me(addr, Some("client-b"), &bound_token("client-a")).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(hits.take(), 1);
}

#[test]
fn verify_outside_a_request_refuses_a_certificate_bound_token() {
    let layer = hs256_builder::<TestClaims>()
        .certificate_bound_tokens()
        .build()
        .unwrap();
    assert_eq!(
        layer.verify(&bound_token("client-a")).err(),
        Some(AuthError::CertificateMismatch)
    );
    assert!(layer.verify(&hs256_token(json!({}))).is_ok());
}
