//! The error answers of the API: [`ApiError`], its one mapping to an HTTP response, and the
//! one table from a [`DomainError`] to WildDuck's status and `code`.
//!
//! Every failure a handler can produce is an [`ApiError`]: a status, WildDuck's `code` string,
//! a human message and, for validation failures, `details` per field. Internal faults are
//! logged once with their source chain and answered as an opaque 500.

use std::collections::BTreeMap;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::domain::DomainError;
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
        match err {
            StoreError::ConditionFailed { label } => ApiError::lost_race(label),
            other => ApiError::internal(other),
        }
    }
}

/// The message of [`ApiError::lost_race`] (tests look for it: such an answer is a gap).
pub const LOST_RACE: &str = "The data changed while the request ran, try again";

impl ApiError {
    /// A write whose condition failed where its rule does not say what that means: a change
    /// made meanwhile won, so nothing was written and the request may be tried again (409
    /// `LockFail`, as a contended change). Logged with its label, to be given its own answer.
    fn lost_race(label: &'static str) -> ApiError {
        tracing::warn!(
            condition = label,
            "a write lost to a concurrent change where no answer maps its condition"
        );
        ApiError::conflict("LockFail", LOST_RACE)
    }
}

/// The one table from what a rule refused to WildDuck's status and `code`.
impl From<DomainError> for ApiError {
    fn from(err: DomainError) -> Self {
        use DomainError as E;
        use StatusCode as S;
        let message = err.to_string();
        let (status, code) = match err {
            E::Invalid { field, message } => return ApiError::invalid_field(&field, message),
            E::UserNotFound(_) => (S::NOT_FOUND, "UserNotFound"),
            E::AddressNotFound(_) => (S::NOT_FOUND, "AddressNotFound"),
            E::MailboxNotFound(_) => (S::NOT_FOUND, "NoSuchMailbox"),
            E::MessageNotFound(_) => (S::NOT_FOUND, "MessageNotFound"),
            E::AttachmentNotFound => (S::NOT_FOUND, "AttachmentNotFound"),
            E::FileNotFound => (S::NOT_FOUND, "FileNotFound"),
            E::FilterNotFound(_) => (S::NOT_FOUND, "FilterNotFound"),
            E::AspNotFound(_) => (S::NOT_FOUND, "AspNotFound"),
            E::AliasNotFound(_) => (S::NOT_FOUND, "AliasNotFound"),
            E::AliasExists => (S::BAD_REQUEST, "AliasExists"),
            E::DomainAccessNotFound => (S::NOT_FOUND, "DomainNotFound"),
            E::AccountNotFound(_) => (S::NOT_FOUND, "AccountNotFound"),
            E::AccountFound => (S::CONFLICT, "AccountFound"),
            E::DeleteInProgress => (S::CONFLICT, "DeleteInProgress"),
            E::DkimNotFound(_) => (S::NOT_FOUND, "DkimNotFound"),
            E::WebhookNotFound(_) => (S::NOT_FOUND, "WebhookNotFound"),
            E::AuditNotFound => (S::NOT_FOUND, "AuditNotFoundError"),
            E::UserExists { username } => {
                return ApiError::conflict("UserExistsError", message)
                    .with_extra("username", username);
            }
            E::AddressExists { username, .. } => {
                let error = ApiError::conflict("AddressExistsError", message);
                return match username {
                    Some(username) => error.with_extra("username", username),
                    None => error,
                };
            }
            E::MailboxExists(_) => (S::CONFLICT, "MailboxExistsError"),
            E::Contended(_) => (S::CONFLICT, "LockFail"),
            E::NoUpdates(_) => (S::BAD_REQUEST, "NoUpdates"),
            E::NotPermitted(_) => (S::BAD_REQUEST, "NotPermitted"),
            E::ChangeNotAllowed(_) => (S::BAD_REQUEST, "ChangeNotAllowed"),
            E::WildcardNotPermitted => (S::BAD_REQUEST, "WildcardNotPermitted"),
            E::MailboxMethodNotAllowed(_) => (S::BAD_REQUEST, "DisallowedMailboxMethod"),
            E::UnsupportedHash(_) => (S::BAD_REQUEST, "HashError"),
            E::OverQuota => (S::FORBIDDEN, "OverQuotaError"),
            E::UserDisabled => (S::FORBIDDEN, "UserDisabled"),
            E::TooMany { allowed, .. } => {
                let error = ApiError::forbidden("TooMany", message);
                return match allowed {
                    Some(allowed) => error.with_extra("allowed", allowed),
                    None => error,
                };
            }
            E::WrongExistingPassword => (S::FORBIDDEN, "AuthFail"),
            E::AuthFailed => (S::FORBIDDEN, "AuthFailed"),
            E::ScopeRefused(_) => (S::FORBIDDEN, "InvalidAuthScope"),
            E::ScopesInvalid(_) => (S::BAD_REQUEST, "InvalidAuthScope"),
            E::TempPasswordNotYetValid => (S::FORBIDDEN, "TempPasswordNotYetValid"),
            E::RateLimited { retry_after, .. } => {
                let error = ApiError::forbidden("RateLimitedError", message);
                return match retry_after {
                    Some(seconds) => error.with_extra("retryAfter", seconds),
                    None => error,
                };
            }
            E::TotpEnabled(_) => (S::BAD_REQUEST, "TotpEnabled"),
            E::TotpDisabled(_) => (S::BAD_REQUEST, "TotpDisabled"),
            E::TotpTokenInvalid => (S::BAD_REQUEST, "InvalidToken"),
            E::TotpRejected => (S::FORBIDDEN, "InvalidToken"),
            E::SecretUnreadable(_) => (S::INTERNAL_SERVER_ERROR, "InternalConfigError"),
            E::QrCode => (S::INTERNAL_SERVER_ERROR, "QRError"),
            E::NonceInvalid => (S::FORBIDDEN, "InvalidTotpNonce"),
            E::EventNotFound => (S::NOT_FOUND, "EventNotFound"),
            E::SendingLimit { .. } => (S::FORBIDDEN, "RateLimitedError"),
            E::MessageNotDraft => (S::BAD_REQUEST, "MessageNotDraft"),
            E::QueueEntryNotFound => (S::NOT_FOUND, "NoSuchQueueEntry"),
            E::Store(e) => return e.into(),
            E::Internal(e) => return ApiError::internal(e),
        };
        ApiError::new(status, code, message)
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
        // restify's clients (WildDuck's web client) show an error's `message`, not `error`.
        body.insert("message".into(), json!(self.message));
        if let Some(details) = self.details {
            body.insert("details".into(), json!(details));
        }
        for (k, v) in self.extra {
            body.entry(k).or_insert(v);
        }
        (self.status, Json(Value::Object(body))).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failed condition no rule answered is a lost race (409, nothing written), not a fault;
    /// other store failures stay opaque 500s.
    #[test]
    fn an_unmapped_failed_condition_is_a_conflict_and_other_store_errors_internal() {
        let lost = || StoreError::ConditionFailed {
            label: "some guard",
        };
        for error in [
            ApiError::from(lost()),
            ApiError::from(DomainError::Store(lost())),
        ] {
            assert_eq!(
                (error.status, error.code),
                (StatusCode::CONFLICT, "LockFail")
            );
        }
        let fault = ApiError::from(DomainError::Store(StoreError::Invalid("x".into())));
        assert_eq!(fault.status, StatusCode::INTERNAL_SERVER_ERROR);
    }
}
