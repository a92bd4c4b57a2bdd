//! The WebSocket side of the updates push (an API Gateway WebSocket API, routed to this one
//! function):
//!
//! * `$connect` checks the access token (when one is configured) and that the user exists,
//!   then records the connection (`eider_shared::domain::connections`, with a TTL). Any other
//!   answer than 200 makes API Gateway refuse the connection.
//! * `$disconnect` removes it.
//! * `$default` (any message from the client) changes nothing: clients may send one now and
//!   then to stay under API Gateway's idle timeout.
//!
//! Clients connect to `wss://<api>/<stage>?user=<user id>&accessToken=<token>`: browsers
//! can't set headers on a WebSocket, so the token comes as a query argument (`X-Access-Token`
//! and `Authorization: Bearer` work too). The stream bridge (`eider-stream-bridge`) pushes the
//! user's journal events to the recorded connections.

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::Utc;
use eider_shared::domain::connections::{self, Connection};
use eider_shared::domain::users;
use eider_shared::http::AppState;
use eider_shared::http::access::check_access_token;
use eider_shared::http::error::{ApiError, ApiResult};
use eider_shared::http::params::ACCESS_TOKEN_PARAM;
use eider_shared::id::{IdError, ObjectId};
use serde_json::json;

/// The routes of the WebSocket API this function serves.
pub const ROUTE_KEYS: &[&str] = &["$connect", "$disconnect", "$default"];

/// Handles one WebSocket event.
pub async fn handle(
    state: &AppState,
    event: ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    let route = event.request_context.route_key.as_deref().unwrap_or("");
    let result = match route {
        "$connect" => connect(state, &event).await,
        "$disconnect" => disconnect(state, &event).await,
        _ => Ok(()),
    };
    match result {
        Ok(()) => response(StatusCode::OK, json!({ "success": true }).to_string()),
        Err(error) => {
            tracing::info!(route, code = error.code, "WebSocket request refused");
            let status = error.status;
            let body = error.into_response().into_body();
            let bytes = axum::body::to_bytes(body, 64 * 1024)
                .await
                .unwrap_or_default();
            response(status, String::from_utf8_lossy(&bytes).into_owned())
        }
    }
}

fn response(status: StatusCode, body: String) -> ApiGatewayProxyResponse {
    let mut response = ApiGatewayProxyResponse::default();
    response.status_code = i64::from(status.as_u16());
    response.headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    response.body = Some(Body::Text(body));
    response
}

/// `$connect`: the access token, the user, then the connection is recorded.
async fn connect(state: &AppState, event: &ApiGatewayWebsocketProxyRequest) -> ApiResult<()> {
    // The same check, in constant time, as every HTTP route's.
    let from_query = event
        .query_string_parameters
        .first(ACCESS_TOKEN_PARAM)
        .map(str::to_string);
    check_access_token(
        state.config.access_token.as_deref(),
        from_query,
        &event.headers,
    )?;
    let Some(raw_user) = event.query_string_parameters.first("user") else {
        return Err(ApiError::invalid_field("user", "\"user\" is required"));
    };
    let user: ObjectId = raw_user
        .parse()
        .map_err(|e: IdError| ApiError::invalid_field("user", e.message("user")))?;
    users::load(state, &user).await?;
    let id = connection_id(event)?;
    let connection = Connection {
        id: id.to_string(),
        user,
        connected_at: Utc::now(),
        source_ip: event.request_context.identity.source_ip.clone(),
    };
    connections::add(state.table.as_ref(), &connection).await?;
    tracing::info!(%user, connection = id, "WebSocket connected");
    Ok(())
}

/// `$disconnect`: the connection's items go (nothing to do when they are already gone).
async fn disconnect(state: &AppState, event: &ApiGatewayWebsocketProxyRequest) -> ApiResult<()> {
    let id = connection_id(event)?;
    let user = connections::remove(state.table.as_ref(), id).await?;
    tracing::info!(user = ?user.map(|u| u.to_string()), connection = id, "WebSocket disconnected");
    Ok(())
}

fn connection_id(event: &ApiGatewayWebsocketProxyRequest) -> ApiResult<&str> {
    event
        .request_context
        .connection_id
        .as_deref()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ApiError::bad_request("InputValidationError", "No connection id"))
}
