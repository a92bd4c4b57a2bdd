//! The local server's router: every endpoint group merged into one. Merging panics on a route
//! claimed twice, so no two groups can serve the same endpoint.

pub mod lmtp;
pub mod serve;

use axum::Router;
use eider_shared::http::{AppState, Routes};

/// Every route of every group, in one list. Building the router from it panics on a route
/// claimed twice, so no two groups can serve the same endpoint.
pub fn routes() -> Routes {
    eider_users::routes()
        .merge(eider_addresses::routes())
        .merge(eider_auth::routes())
        .merge(eider_mailboxes::routes())
        .merge(eider_messages::routes())
        .merge(eider_archive::routes())
        .merge(eider_updates::routes())
        .merge(eider_filters::routes())
        .merge(eider_autoreply::routes())
        .merge(eider_submit::routes())
}

/// Every group's router in one.
pub fn router() -> Router<AppState> {
    routes().router()
}
