//! The Lambda entry points on the sample API Gateway HTTP API (v2) events in infra/events:
//! each event is decoded by lambda_http exactly as in Lambda and served by the function's own
//! router with the shared finishing layer, on the embedded store.

use axum::body::Body;
use eider_shared::http::finish;
use eider_tests::app::test_config;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

async fn invoke(router: axum::Router, event_file: &str) -> (u16, Value) {
    let path = format!(
        "{}/../infra/events/{event_file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let event = std::fs::read_to_string(&path).unwrap();
    let request = lambda_http::request::from_str(&event).expect("a valid API Gateway event");
    let request = request.map(|body| Body::from(body.to_vec()));
    let response = router.oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn users_function_serves_its_sample_events() {
    let backend = eider_tests::backends::embedded().await;
    let state = eider_shared::http::AppState::new(
        backend.table.clone(),
        backend.blobs.clone(),
        test_config(),
    );
    let router = finish(eider_users::router(), state);
    let (status, created) = invoke(router.clone(), "users-create.json").await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["success"], true);
    let (status, list) = invoke(router.clone(), "users-list.json").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total"], 1);
    assert_eq!(list["results"][0]["username"], "testuser");
    assert_eq!(list["results"][0]["id"], created["id"]);
    // The same event again: the username is taken.
    let (status, again) = invoke(router, "users-create.json").await;
    assert_eq!(status, 409, "{again}");
}

#[tokio::test]
async fn addresses_function_serves_its_sample_events() {
    let backend = eider_tests::backends::embedded().await;
    let state = eider_shared::http::AppState::new(
        backend.table.clone(),
        backend.blobs.clone(),
        test_config(),
    );
    let users = finish(eider_users::router(), state.clone());
    let (status, _) = invoke(users, "users-create.json").await;
    assert_eq!(status, 200);
    let addresses = finish(eider_addresses::router(), state);
    let (status, list) = invoke(addresses.clone(), "addresses-list.json").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total"], 1);
    assert_eq!(list["results"][0]["address"], "testuser@example.com");
    // A function answers only its own routes, with the JSON 404.
    let (status, body) = invoke(addresses, "users-list.json").await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "ResourceNotFound");
}

#[tokio::test]
async fn auth_function_serves_its_sample_events() {
    let backend = eider_tests::backends::embedded().await;
    let state = eider_shared::http::AppState::new(
        backend.table.clone(),
        backend.blobs.clone(),
        test_config(),
    );
    let users = finish(eider_users::router(), state.clone());
    let (status, created) = invoke(users, "users-create.json").await;
    assert_eq!(status, 200);
    let auth = finish(eider_auth::router(), state);
    let (status, body) = invoke(auth, "auth-authenticate.json").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], created["id"]);
    assert_eq!(body["scope"], "imap");
    assert_eq!(body["require2fa"], false);
}
