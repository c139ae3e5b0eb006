//! Feature `tracing`: one `debug` event per refused request, target `tower_jwt_auth`, with the
//! reason and what the token says about itself, never the token or the secret.

mod common;

use std::convert::Infallible;

use common::*;
use http::{Request, Response, StatusCode, header};
use serde_json::json;
use tower::{Layer, ServiceExt, service_fn};
use tower_jwt_auth::JwtAuthLayer;

async fn call(layer: &JwtAuthLayer<TestClaims>, token: Option<&str>) -> StatusCode {
    let inner =
        service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) });
    let mut req = Request::builder().uri("/me");
    if let Some(token) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    layer
        .layer(inner)
        .oneshot(req.body(()).unwrap())
        .await
        .unwrap()
        .status()
}

#[test]
fn one_event_per_rejection_without_the_token() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(capture.clone())
        .with_ansi(false)
        .finish();

    let expired = hs256_token(json!({ "exp": now() - 3600 }));
    let valid = hs256_token(json!({}));
    // A valid token's signature on another token's header and payload.
    let forged = {
        let (signing_input, _) = expired.rsplit_once('.').unwrap();
        let (_, sig) = valid.rsplit_once('.').unwrap();
        format!("{signing_input}.{sig}")
    };

    let layer = JwtAuthLayer::<TestClaims>::builder()
        .hs256(SECRET)
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .build()
        .unwrap();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        rt.block_on(async {
            assert_eq!(call(&layer, Some(&valid)).await, StatusCode::OK);
            assert_eq!(call(&layer, Some(&expired)).await, StatusCode::UNAUTHORIZED);
            assert_eq!(call(&layer, Some(&forged)).await, StatusCode::UNAUTHORIZED);
            assert_eq!(call(&layer, None).await, StatusCode::UNAUTHORIZED);
        })
    });

    let out = capture.text();
    let events: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("tower_jwt_auth"))
        .collect();
    // The accepted request logs nothing; each refused one logs exactly one event.
    assert_eq!(events.len(), 3, "{out}");
    assert!(events.iter().all(|l| l.contains("DEBUG")), "{out}");
    assert!(
        events.iter().all(|l| l.contains("request rejected")),
        "{out}"
    );

    // Observed formatting of the fmt subscriber: `reason="expired" alg=HS256 iss="…"`.
    let expired_event = events[0];
    assert!(expired_event.contains("reason=\"expired\""), "{out}");
    assert!(expired_event.contains("alg=HS256"), "{out}");
    assert!(
        expired_event.contains(&format!("iss=\"{ISSUER}\"")),
        "{out}"
    );
    assert!(!expired_event.contains("kid="), "{out}");

    // The signature is checked before the payload is read, so no `iss` here.
    let forged_event = events[1];
    assert!(
        forged_event.contains("reason=\"invalid_signature\""),
        "{out}"
    );
    assert!(forged_event.contains("alg=HS256"), "{out}");
    assert!(!forged_event.contains("iss="), "{out}");

    // No token, so nothing to say about one.
    let missing_event = events[2];
    assert!(missing_event.contains("reason=\"missing_token\""), "{out}");
    assert!(!missing_event.contains("alg="), "{out}");
    assert!(!missing_event.contains("iss="), "{out}");

    // Neither the tokens (nor any of their segments) nor the secret are ever written.
    for token in [&expired, &forged, &valid] {
        assert!(!out.contains(token.as_str()), "{out}");
        for segment in token.split('.') {
            assert!(!out.contains(segment), "segment {segment} leaked: {out}");
        }
    }
    let secret = std::str::from_utf8(SECRET).unwrap();
    assert!(!out.contains(secret), "{out}");
}
