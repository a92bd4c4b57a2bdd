//! The one error type of the API and its one mapping to an HTTP response.
//!
//! Every failure a handler can produce is an [`ApiError`]: a status, WildDuck's `code` string,
//! a human message and, for validation failures, `details` per field. Internal faults are
//! logged once with their source chain and answered as an opaque 500.

use std::collections::BTreeMap;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// WildDuck's error code, e.g. `UserNotFound`.
    pub code: &'static str,
    pub message: String,
    /// Per-field messages of a validation failure.
    pub details: Option<BTreeMap<String, String>>,
    /// Extra top-level fields WildDuck adds to some errors (e.g. `username`).
    pub extra: Map<String, Value>,
    /// The cause of an internal error; logged, never sent.
    source: Option<anyhow::Error>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
            extra: Map::new(),
            source: None,
        }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }
    /// A validation failure with WildDuck's `InputValidationError` shape.
    pub fn validation(details: BTreeMap<String, String>) -> Self {
        let message = details.values().cloned().collect::<Vec<_>>().join(". ");
        ApiError {
            details: Some(details),
            ..Self::bad_request("InputValidationError", message)
        }
    }
    /// A validation failure of a single field.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self::validation(BTreeMap::from([(field.to_string(), message.into())]))
    }
    /// An internal fault: the cause is logged, the client sees only a generic message.
    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        ApiError {
            source: Some(source.into()),
            ..Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalDatabaseError",
                "Internal server error",
            )
        }
    }
    pub fn with_extra(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_string(), value.into());
        self
    }
    pub fn user_not_found() -> Self {
        Self::not_found("UserNotFound", "This user does not exist")
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        ApiError::internal(err)
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        ApiError::internal(err)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(source) = &self.source {
            tracing::error!(error = format!("{source:#}"), "internal error");
        }
        let mut body = Map::new();
        body.insert("error".into(), json!(self.message));
        body.insert("code".into(), json!(self.code));
        if let Some(details) = self.details {
            body.insert("details".into(), json!(details));
        }
        for (k, v) in self.extra {
            body.entry(k).or_insert(v);
        }
        (self.status, Json(Value::Object(body))).into_response()
    }
}
