//! Settings on the wire (`/settings`).

use serde_json::{Map, Value, json};

use crate::domain::settings::SettingView;
use crate::http::error::{ApiError, ApiResult};
use crate::http::validate::{Str, Validator};

/// Validates `GET /settings` (unknown keys allowed, as WildDuck's): the optional `filter`.
pub fn list(params: Map<String, Value>) -> ApiResult<Option<String>> {
    let mut v = Validator::new(params);
    let filter = v.string("filter", Str::max(128).trim());
    v.session();
    v.finish()?;
    Ok(filter)
}

/// Validates `POST /settings/{key}` (strict): `value`, required.
pub fn value(params: Map<String, Value>) -> ApiResult<Value> {
    let mut v = Validator::new(params);
    let value = v.raw("value");
    if value.is_none() {
        v.error("value", "\"value\" is required");
    }
    v.session();
    v.deny_unknown();
    v.finish()?;
    value.ok_or_else(|| ApiError::invalid_field("value", "\"value\" is required"))
}

pub fn list_json(filter: Option<&str>, settings: &[SettingView]) -> Value {
    let mut body = json!({ "success": true });
    if let Some(filter) = filter {
        body["filter"] = json!(filter);
    }
    body["settings"] = settings
        .iter()
        .map(|s| {
            json!({
                "key": s.known.key,
                "value": s.value,
                "name": s.known.name,
                "description": s.known.description,
                "default": s.default,
                "type": "number",
                "custom": s.custom,
            })
        })
        .collect();
    body
}
