//! The local server's router: every endpoint group merged into one. Merging panics on a route
//! claimed twice, so no two groups can serve the same endpoint.

use axum::Router;
use eider_shared::http::AppState;

/// Every group's router in one.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(eider_users::router())
        .merge(eider_addresses::router())
        .merge(eider_auth::router())
}

/// Every route of every group (method, path).
pub fn routes() -> Vec<(&'static str, &'static str)> {
    [
        eider_users::ROUTES,
        eider_addresses::ROUTES,
        eider_auth::ROUTES,
    ]
    .concat()
}
