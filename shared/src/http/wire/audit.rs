//! Audits on the wire (`/audit`): requests validated, audits answered in WildDuck's shape.

use serde_json::{Map, Value, json};

use crate::domain::audit::{AuditView, NewAudit};
use crate::http::error::{ApiError, ApiResult};
use crate::http::validate::{Str, Validator};
use crate::time::iso;

/// Validates `POST /audit` (strict): `user`, `start`/`end` (a date, or false), `expires` (a
/// date), `notes`, `meta` (an object or a JSON string of one).
pub fn create(params: Map<String, Value>) -> ApiResult<NewAudit> {
    let mut v = Validator::new(params);
    let user = v.id("user");
    if user.is_none() && !v.has_error("user") {
        v.error("user", "\"user\" is required");
    }
    let start = v.date_or_false("start");
    let end = v.date_or_false("end");
    let expires = v.date("expires");
    if expires.is_none() && !v.has_error("expires") {
        v.error("expires", "\"expires\" is required");
    }
    let notes = v.string("notes", Str::max(1024).trim());
    let meta = v.json_object("meta", 64 * 1024);
    v.session();
    v.deny_unknown();
    v.finish()?;
    let (Some(user), Some(expires)) = (user, expires) else {
        return Err(ApiError::invalid_field("user", "\"user\" is required"));
    };
    Ok(NewAudit {
        user,
        start,
        end,
        expires,
        notes,
        meta: meta.and_then(|m| serde_json::from_str(&m).ok()),
    })
}

/// `GET /audit/{audit}`.
pub fn audit_json(view: &AuditView) -> Value {
    let audit = &view.audit;
    let mut body = json!({
        "success": true,
        "id": audit.id,
        "user": audit.user,
        "expires": iso(&audit.expires),
        "deleted": audit.deleted,
        "audited": view.audited,
        "import": {"status": audit.status, "failed": audit.failed, "copied": audit.copied},
    });
    let optional = [
        ("start", audit.start.as_ref().map(|d| json!(iso(d)))),
        ("end", audit.end.as_ref().map(|d| json!(iso(d)))),
        ("notes", audit.notes.as_ref().map(|n| json!(n))),
        ("meta", audit.meta.clone()),
        (
            "deletedTime",
            audit.deleted_time.as_ref().map(|d| json!(iso(d))),
        ),
        (
            "lastAuditedMessage",
            view.last_audited.as_ref().map(|d| json!(iso(d))),
        ),
    ];
    for (field, value) in optional {
        if let Some(value) = value {
            body[field] = value;
        }
    }
    body
}
