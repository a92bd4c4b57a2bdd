//! Every route a group lists is served by that group's own router (the one its Lambda runs):
//! each `(method, path)` of `routes()` is sent, with placeholders filled, through
//! `finish(group::router())`, and must reach a handler (never the JSON 404 of an unknown route
//! or the 405 of a wrong method). The template test ties the same lists to template.yaml.

use axum::body::Body;
use eider_shared::http::{AppState, Routes, finish};
use eider_tests::app::test_config;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// A path with its placeholders filled with values of the right shape.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| match segment {
            "{message}" => "1",
            "{attachment}" => "ATT00001",
            s if s.starts_with('{') => "0123456789abcdef01234567",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

async fn every_route_reaches_a_handler(name: &str, routes: Routes, router: axum::Router<AppState>) {
    let backend = eider_tests::backends::embedded().await;
    let state = AppState::new(backend.table.clone(), backend.blobs.clone(), test_config());
    let app = finish(router, state);
    let listed = routes.list();
    assert!(!listed.is_empty(), "{name} lists no routes");
    for (method, path) in listed {
        let uri = concrete(path);
        let request = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(&uri)
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&bytes);
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{name}: {method} {path} is listed but its router has no such method"
        );
        assert!(
            !body.contains("ResourceNotFound"),
            "{name}: {method} {path} is listed but not routed ({status}: {body})"
        );
    }
}

#[tokio::test]
async fn every_listed_route_is_served_by_its_own_router() {
    let groups: Vec<(&str, Routes, axum::Router<AppState>)> = vec![
        ("eider-users", eider_users::routes(), eider_users::router()),
        (
            "eider-addresses",
            eider_addresses::routes(),
            eider_addresses::router(),
        ),
        ("eider-auth", eider_auth::routes(), eider_auth::router()),
        (
            "eider-mailboxes",
            eider_mailboxes::routes(),
            eider_mailboxes::router(),
        ),
        (
            "eider-messages",
            eider_messages::routes(),
            eider_messages::router(),
        ),
        (
            "eider-archive",
            eider_archive::routes(),
            eider_archive::router(),
        ),
        (
            "eider-filters",
            eider_filters::routes(),
            eider_filters::router(),
        ),
        (
            "eider-autoreply",
            eider_autoreply::routes(),
            eider_autoreply::router(),
        ),
        (
            "eider-submit",
            eider_submit::routes(),
            eider_submit::router(),
        ),
        (
            "eider-updates",
            eider_updates::routes(),
            eider_updates::router(),
        ),
        ("eider-local", eider_local::routes(), eider_local::router()),
    ];
    for (name, routes, router) in groups {
        every_route_reaches_a_handler(name, routes, router).await;
    }
}

#[test]
fn a_route_listed_twice_is_refused_when_the_router_is_built() {
    let twice = eider_users::routes().merge(eider_users::routes());
    let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || twice.router()));
    assert!(built.is_err(), "a duplicate route must not be served");
}
