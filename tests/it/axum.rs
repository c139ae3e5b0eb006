//! The layer in a real axum server on 127.0.0.1, called by a real HTTP client.

use crate::common;

use axum::Router;
use common::*;
use reqwest::StatusCode;
use serde_json::json;
use tower_jwt_auth::JwtAuthLayer;

fn layer() -> JwtAuthLayer<TestClaims> {
    hs256_builder()
        .token_from_cookie("access_token")
        .realm("test")
        .build()
        .unwrap()
}

/// A server whose `/me` counts the requests that reach it.
async fn server(layer: JwtAuthLayer<TestClaims>) -> (String, Hits) {
    let (app, hits) = routes();
    let addr = serve(app.layer(layer)).await;
    (format!("http://{addr}"), hits)
}

/// `/me` (`Claims`, answering them as JSON, counting the requests that reach it) and `/maybe`
/// (`Option<Claims>`, answering the subject or `anonymous`, not counted), without any layer.
fn routes() -> (Router, Hits) {
    let hits = Hits::default();
    let app = Router::new()
        .route("/me", claims_json::<TestClaims>(&hits))
        .route("/maybe", subject::<TestClaims>(&Hits::default()));
    (app, hits)
}

#[tokio::test]
async fn valid_token_reaches_handler_with_typed_claims() {
    let (url, hits) = server(layer()).await;
    let res = client()
        .get(format!("{url}/me"))
        .bearer_auth(hs256_token(json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body, json!({ "sub": "alice", "roles": ["admin"] }));
    assert_eq!(hits.count(), 1);
}

#[tokio::test]
async fn missing_token_is_401_with_bare_challenge() {
    let (url, hits) = server(layer()).await;
    let res = get_with(&format!("{url}/me"), None).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(www_authenticate(&res), Some("Bearer realm=\"test\""));
    assert_eq!(hits.count(), 0);
}

#[tokio::test]
async fn expired_token_is_401_invalid_token_and_never_echoed() {
    let (url, hits) = server(layer()).await;
    let token = hs256_token(json!({ "exp": now() - 3600 }));
    let res = client()
        .get(format!("{url}/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let challenge = www_authenticate(&res).unwrap().to_owned();
    assert_eq!(
        challenge,
        "Bearer realm=\"test\", error=\"invalid_token\", error_description=\"token expired\""
    );
    let headers = format!("{:?}", res.headers());
    let body = res.text().await.unwrap();
    assert!(!headers.contains(&token) && !body.contains(&token));
    assert_eq!(hits.count(), 0);
}

#[tokio::test]
async fn cookie_is_a_source_and_disagreement_is_400() {
    let (url, hits) = server(layer()).await;
    let client = client();
    let token = hs256_token(json!({}));
    let res = client
        .get(format!("{url}/me"))
        .header("cookie", format!("theme=dark; access_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    // Same token by two methods: fine.
    let res = client
        .get(format!("{url}/me"))
        .bearer_auth(&token)
        .header("cookie", format!("access_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    // Two different tokens: RFC 6750 §2 allows one method per request.
    let other = hs256_token(json!({ "sub": "bob" }));
    let res = client
        .get(format!("{url}/me"))
        .bearer_auth(&token)
        .header("cookie", format!("access_token={other}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let challenge = www_authenticate(&res).unwrap();
    assert!(
        challenge.contains("error=\"invalid_request\""),
        "{challenge}"
    );
    assert_eq!(hits.count(), 2);
}

#[tokio::test]
async fn optional_mode_lets_anonymous_through_but_not_bad_tokens() {
    let layer = hs256_builder().optional().build().unwrap();
    let (url, hits) = server(layer).await;
    let client = client();
    let res = client.get(format!("{url}/maybe")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "anonymous");

    let res = client
        .get(format!("{url}/maybe"))
        .bearer_auth(hs256_token(json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(res.text().await.unwrap(), "alice");

    let res = client
        .get(format!("{url}/maybe"))
        .bearer_auth(hs256_token(json!({ "exp": now() - 3600 })))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // A handler that insists on claims answers 401 for anonymous requests, with the bare
    // challenge of a request without a token.
    let res = client.get(format!("{url}/me")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(www_authenticate(&res), Some("Bearer realm=\"api\""));
    assert_eq!(hits.count(), 0);
}

/// Asserts the extractor's answer to a request no `JwtAuthLayer` of its claims type ran on:
/// 500, a text naming the missing layer, no challenge.
async fn assert_missing_layer(res: reqwest::Response) {
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(www_authenticate(&res).is_none());
    assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
    let body = res.text().await.unwrap();
    assert!(
        body.starts_with("no JwtAuthLayer ran on this request"),
        "{body}"
    );
}

/// Forgetting the layer is the server's fault (as with axum's `Extension`): 500 from
/// `Claims<C>` and from `Option<Claims<C>>` alike, whatever the request carries. A silent
/// `None` would make every caller look anonymous.
#[tokio::test]
async fn claims_without_a_layer_are_500_naming_the_layer() {
    let (app, hits) = routes();
    let url = format!("http://{}", serve(app).await);
    let client = client();
    for path in ["/me", "/maybe"] {
        let res = client.get(format!("{url}{path}")).send().await.unwrap();
        assert_missing_layer(res).await;
        let res = client
            .get(format!("{url}{path}"))
            .bearer_auth(hs256_token(json!({})))
            .send()
            .await
            .unwrap();
        assert_missing_layer(res).await;
    }
    assert_eq!(hits.count(), 0);
}

/// A layer for another claims type verifies the token but inserts no `Claims<TestClaims>`:
/// the same wiring mistake, answered the same way.
#[tokio::test]
async fn claims_behind_a_layer_of_another_claims_type_are_500() {
    let other = hs256_layer::<serde_json::Value>();
    let (app, hits) = routes();
    let url = format!("http://{}", serve(app.layer(other)).await);
    let client = client();
    for path in ["/me", "/maybe"] {
        let res = client
            .get(format!("{url}{path}"))
            .bearer_auth(hs256_token(json!({})))
            .send()
            .await
            .unwrap();
        assert_missing_layer(res).await;
    }
    assert_eq!(hits.count(), 0);
}
