//! Autoreplies on the wire: `PUT/GET/DELETE /users/{user}/autoreply`.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::domain::autoreply::{Autoreply, AutoreplyChanges};
use crate::http::error::ApiResult;
use crate::http::validate::{Str, Validator, parse_date};
use crate::time::{iso, iso_or_false};

/// A bound: `Some(None)` clears it (`false`), `Some(Some(d))` sets it, `None` leaves it.
pub(crate) fn bound(v: &mut Validator, field: &str) -> Option<Option<DateTime<Utc>>> {
    match v.raw(field)? {
        Value::Bool(false) => Some(None),
        Value::String(s) if s.trim().is_empty() => None,
        Value::String(s) if s.trim() == "false" => Some(None),
        Value::String(s) => match parse_date(s.trim()) {
            Some(d) => Some(Some(d)),
            None => {
                v.error(field, format!("\"{field}\" must be a valid date"));
                None
            }
        },
        Value::Number(n) => match n.as_i64().and_then(DateTime::from_timestamp_millis) {
            Some(d) => Some(Some(d)),
            None => {
                v.error(field, format!("\"{field}\" must be a valid date"));
                None
            }
        },
        _ => {
            v.error(field, format!("\"{field}\" must be a valid date"));
            None
        }
    }
}

/// Validates `PUT /users/{user}/autoreply` (strict).
pub fn autoreply_changes(params: Map<String, Value>) -> ApiResult<AutoreplyChanges> {
    let mut v = Validator::new(params);
    let status = v.boolean("status");
    let name = v.string("name", Str::max(128).trim().allow_empty());
    let subject = v.string("subject", Str::max(2 * 1024).trim().allow_empty());
    let text = v.string("text", Str::max(128 * 1024).trim().allow_empty());
    // The spec names the body `message` in its GET answer; accept it on PUT as well.
    let message = v.string("message", Str::max(128 * 1024).trim().allow_empty());
    let html = v.string("html", Str::max(128 * 1024).trim().allow_empty());
    let start = bound(&mut v, "start");
    let end = bound(&mut v, "end");
    v.session();
    v.deny_unknown();
    v.finish()?;
    Ok(AutoreplyChanges {
        status,
        name,
        subject,
        text: text.or(message),
        html,
        start,
        end,
    })
}

/// `GET /users/{user}/autoreply`: WildDuck's keys, plus the spec's `message` (the same as
/// `text`). Defaults when none was set.
pub fn autoreply_json(reply: Option<&Autoreply>) -> Value {
    let date = |d: Option<DateTime<Utc>>| iso_or_false(d.as_ref());
    match reply {
        Some(r) => json!({
            "success": true,
            "status": r.status,
            "name": r.name,
            "subject": r.subject,
            "text": r.text,
            "message": r.text,
            "html": r.html,
            "start": date(r.start),
            "end": date(r.end),
            "created": iso(&r.created),
        }),
        None => json!({
            "success": true, "status": false, "name": "", "subject": "", "text": "",
            "message": "", "html": "", "start": false, "end": false, "created": false,
        }),
    }
}
