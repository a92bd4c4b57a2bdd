//! The finishing layer every router gets, in Lambda and locally: the access layer (tokens and
//! roles, `super::access`), the settings refresh, request tracing, the body limit and the body's time limit, limits
//! on the URI and header, panic recovery, the JSON answers for unknown routes and wrong
//! methods, and JSON for every other error a layer answers in its own format (a body too
//! large, too slow).

use std::any::Any;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::{StatusCode, Uri};
use axum::middleware;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;
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
        .layer(middleware::from_fn_with_state(state.clone(), fresh_settings))
        .layer(DefaultBodyLimit::max(body_limit))
        // A client that declares a body and sends it too slowly (or never) gets 408.
        .layer(RequestBodyTimeoutLayer::new(BODY_TIMEOUT))
        .layer(middleware::from_fn(bounded_head))
        .layer(middleware::map_response(json_errors))
        .layer(
            // Only method and path are recorded: the query string may carry the access token.
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                tracing::info_span!("request", method = %req.method(), path = %req.uri().path())
            }),
        )
        .layer(CatchPanicLayer::custom(panic_response))
        .with_state(state)
}

/// Brings this process's copy of `/settings` up to date when it is stale (one read every 30 s
/// at most), so every function applies a changed default without a redeploy.
async fn fresh_settings(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    crate::domain::settings::refresh_if_stale(&state).await;
    next.run(request).await
}

/// Time for a request body to arrive, from the end of its header.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
/// Longest URI (path and query) taken; WildDuck's clients send nothing near it.
pub const MAX_URI_BYTES: usize = 16 * 1024;
/// Largest request header (all fields together).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Refuses, in WildDuck's JSON error format, a URI or a header too large to be real.
async fn bounded_head(request: Request, next: Next) -> Response {
    if uri_len(request.uri()) > MAX_URI_BYTES {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            "UriTooLong",
            format!("The request URI is longer than {MAX_URI_BYTES} bytes"),
        )
        .into_response();
    }
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "RequestHeaderFieldsTooLarge",
            format!("The request header is larger than {MAX_HEADER_BYTES} bytes"),
        )
        .into_response();
    }
    next.run(request).await
}

/// The length of `uri` as written, counted without writing it out (this runs on every
/// request).
fn uri_len(uri: &Uri) -> usize {
    uri.scheme_str().map_or(0, |s| s.len() + "://".len())
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(0, |pq| pq.as_str().len())
}

/// Turns an error answered by a layer or extractor in plain text (413 from the body limit, a
/// body that failed to arrive, ...) into WildDuck's `{error, code}` JSON.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json") || t.starts_with("text/event-stream"));
    if status.as_u16() < 400 || is_json {
        return response;
    }
    let (code, message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ("PayloadTooLarge", "The request body is too large"),
        StatusCode::REQUEST_TIMEOUT => {
            ("RequestTimeout", "The request body did not arrive in time")
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("InvalidContent", "Unsupported content type"),
        StatusCode::BAD_REQUEST => ("InvalidContent", "The request could not be read"),
        s if s.is_server_error() => ("InternalError", "Internal server error"),
        _ => (
            "RequestError",
            status.canonical_reason().unwrap_or("Request refused"),
        ),
    };
    ApiError::new(status, code, message).into_response()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_length_is_that_of_the_written_uri() {
        for written in [
            "/users?query=a%20b&limit=5",
            "/",
            "http://127.0.0.1:8080/users/me/mailboxes?x=1",
            "https://mail.example.com/health",
        ] {
            let uri: Uri = written.parse().unwrap();
            assert_eq!(uri_len(&uri), uri.to_string().len(), "{written}");
        }
    }
}
