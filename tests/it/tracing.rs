//! Feature `tracing`: one `debug` event per refused request, target `tower_jwt_auth`, with the
//! reason and what the token says about itself, never the token or the secret.

use crate::common;

use common::*;
use http::{Request, StatusCode};
use serde_json::json;
use tower_jwt_auth::JwtAuthLayer;

/// The status of one request through `layer`, with `token` as the bearer token if any.
async fn call(layer: &JwtAuthLayer<TestClaims>, token: Option<&str>) -> StatusCode {
    match token {
        Some(token) => send_bearer(layer, token).await.status,
        None => {
            send(layer, Request::get("/me").body(()).unwrap())
                .await
                .status
        }
    }
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

    let layer = hs256_layer::<TestClaims>();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The same requests once before this thread's subscriber exists, so that the crate's event
    // callsites are registered when it is: registering a subscriber recomputes the interest of
    // every registered callsite, while a callsite that other tests of the binary register at
    // that very moment could keep an interest computed without it.
    rt.block_on(async {
        for token in [Some(valid.as_str()), Some(&expired), Some(&forged), None] {
            call(&layer, token).await;
        }
    });
    let probed = tracing::subscriber::with_default(subscriber, || {
        // Other tests' subscribers come and go on other threads, and each change recomputes
        // the callsites' cached interest: a recomputation that began before this subscriber
        // existed can end after it, without it. Recompute it with this one in place, and
        // again until a refusal's event (a probe without a token) reaches it.
        for _ in 0..20 {
            tracing::callsite::rebuild_interest_cache();
            rt.block_on(async {
                assert_eq!(call(&layer, None).await, StatusCode::UNAUTHORIZED);
            });
            if capture.text().contains("request rejected") {
                break;
            }
        }
        let probed = capture.text().len();
        rt.block_on(async {
            assert_eq!(call(&layer, Some(&valid)).await, StatusCode::OK);
            assert_eq!(call(&layer, Some(&expired)).await, StatusCode::UNAUTHORIZED);
            assert_eq!(call(&layer, Some(&forged)).await, StatusCode::UNAUTHORIZED);
            assert_eq!(call(&layer, None).await, StatusCode::UNAUTHORIZED);
        });
        probed
    });

    // What the four requests logged, after the probes.
    let out = capture.text().split_off(probed);
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

    // Observed formatting of the fmt subscriber, OpenTelemetry-style field names:
    // `error.type="expired" jwt.alg=HS256 jwt.iss="…"`.
    let expired_event = events[0];
    assert!(expired_event.contains("error.type=\"expired\""), "{out}");
    assert!(expired_event.contains("jwt.alg=HS256"), "{out}");
    assert!(
        expired_event.contains(&format!("jwt.iss=\"{ISSUER}\"")),
        "{out}"
    );
    assert!(!expired_event.contains("jwt.kid="), "{out}");

    // The signature is checked before the payload is read, so no `iss` here.
    let forged_event = events[1];
    assert!(
        forged_event.contains("error.type=\"invalid_signature\""),
        "{out}"
    );
    assert!(forged_event.contains("jwt.alg=HS256"), "{out}");
    assert!(!forged_event.contains("jwt.iss="), "{out}");

    // No token, so nothing to say about one.
    let missing_event = events[2];
    assert!(
        missing_event.contains("error.type=\"missing_token\""),
        "{out}"
    );
    assert!(!missing_event.contains("jwt.alg="), "{out}");
    assert!(!missing_event.contains("jwt.iss="), "{out}");

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
