//! The local server's router: every endpoint group merged into one. Merging panics on a route
//! claimed twice, so no two groups can serve the same endpoint.

pub mod lmtp;

use axum::Router;
use eider_shared::http::AppState;

/// Every group's router in one.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(eider_users::router())
        .merge(eider_addresses::router())
        .merge(eider_auth::router())
        .merge(eider_mailboxes::router())
        .merge(eider_messages::router())
        .merge(eider_archive::router())
        .merge(eider_updates::router())
        .merge(eider_filters::router())
        .merge(eider_autoreply::router())
}

/// Every route of every group (method, path).
pub fn routes() -> Vec<(&'static str, &'static str)> {
    [
        eider_users::ROUTES,
        eider_addresses::ROUTES,
        eider_auth::ROUTES,
        eider_mailboxes::ROUTES,
        eider_messages::ROUTES,
        eider_archive::ROUTES,
        eider_updates::ROUTES,
        eider_filters::ROUTES,
        eider_autoreply::ROUTES,
    ]
    .concat()
}
