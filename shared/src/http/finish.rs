//! The finishing layer every router gets, in Lambda and locally: the access token check,
//! request tracing, the body limit, panic recovery and the JSON answers for unknown routes
//! and wrong methods.

use std::any::Any;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use super::AppState;
use super::error::ApiError;
use super::params::ACCESS_TOKEN_PARAM;

/// Adds the shared layers and the JSON fallbacks to a router and binds its state.
pub fn finish(router: Router<AppState>, state: AppState) -> Router {
    let body_limit = state.config.body_limit;
    router
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(middleware::from_fn_with_state(state.clone(), require_access_token))
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

/// The token a request carries: query `accessToken`, header `X-Access-Token`, or
/// `Authorization: Bearer`.
fn presented_token(uri: &Uri, headers: &HeaderMap) -> Option<String> {
    let from_query = uri.query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == ACCESS_TOKEN_PARAM)
            .map(|(_, v)| v.into_owned())
    });
    token_from(from_query, headers)
}

/// The token of a request whose `accessToken` query parameter (if any) is `from_query`: that
/// one, else header `X-Access-Token`, else `Authorization: Bearer`.
fn token_from(from_query: Option<String>, headers: &HeaderMap) -> Option<String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    from_query.or_else(|| header("x-access-token")).or_else(|| {
        header("authorization")
            .and_then(|a| a.strip_prefix("Bearer ").map(|t| t.trim().to_string()))
    })
}

/// Compares in constant time; hashing first hides the length of the configured token too.
pub fn token_matches(presented: &str, expected: &str) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.ct_eq(&b).into()
}

/// Checks the configured access token (when there is one) against what a request presents:
/// missing is 401, wrong is 403, both `InvalidToken`. `from_query` is the request's
/// `accessToken` parameter; the headers are looked at when it is absent. Also the WebSocket
/// API's `$connect` check.
pub fn check_access_token(
    expected: Option<&str>,
    from_query: Option<String>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let Some(expected) = expected else {
        return Ok(());
    };
    match token_from(from_query, headers) {
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "InvalidToken",
            "Access token is required",
        )),
        Some(token) if token_matches(&token, expected) => Ok(()),
        Some(_) => Err(ApiError::forbidden(
            "InvalidToken",
            "Invalid accessToken value",
        )),
    }
}

async fn require_access_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let expected = state.config.access_token.as_deref();
    let from_query = presented_token(req.uri(), &HeaderMap::new());
    match check_access_token(expected, from_query, req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_read_from_query_header_or_bearer() {
        let uri: Uri = "/users?a=1&accessToken=s%20t".parse().unwrap();
        assert_eq!(
            presented_token(&uri, &HeaderMap::new()).as_deref(),
            Some("s t")
        );
        let mut headers = HeaderMap::new();
        headers.insert("x-access-token", "h".parse().unwrap());
        assert_eq!(
            presented_token(&"/users".parse().unwrap(), &headers).as_deref(),
            Some("h")
        );
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer b".parse().unwrap());
        assert_eq!(
            presented_token(&"/users".parse().unwrap(), &headers).as_deref(),
            Some("b")
        );
    }

    #[test]
    fn token_comparison_is_exact() {
        assert!(token_matches("secret", "secret"));
        assert!(!token_matches("secret ", "secret"));
        assert!(!token_matches("", "secret"));
    }
}
