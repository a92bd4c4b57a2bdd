//! The finishing layer every router gets, in Lambda and locally: the access layer (tokens and
//! roles, `super::access`), request tracing, the body limit, panic recovery and the JSON
//! answers for unknown routes and wrong methods.

use std::any::Any;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{StatusCode, Uri};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use super::error::ApiError;
use super::{AppState, access};

/// Adds the shared layers and the JSON fallbacks to a router and binds its state.
pub fn finish(router: Router<AppState>, state: AppState) -> Router {
    let body_limit = state.config.body_limit;
    router
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(middleware::from_fn_with_state(state.clone(), access::authorize))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(
            // Only method and path are recorded: the query string may carry the access token.
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                tracing::info_span!("request", method = %req.method(), path = %req.uri().path())
            }),
        )
        .layer(CatchPanicLayer::custom(panic_response))
        .with_state(state)
}

async fn unknown_route(uri: Uri) -> ApiError {
    ApiError::not_found("ResourceNotFound", format!("{} does not exist", uri.path()))
}

async fn wrong_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        "Method is not allowed",
    )
}

fn panic_response(_: Box<dyn Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalError",
        "Internal server error",
    )
    .into_response()
}
