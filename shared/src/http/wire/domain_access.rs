//! Domain access lists on the wire (`/domainaccess`).

use serde_json::{Map, Value, json};

use crate::domain::domain_access::DomainAccess;
use crate::http::error::{ApiError, ApiResult};
use crate::http::validate::{Str, Validator};

/// The path's `{tag}`: trimmed, 1 to 128 characters.
pub fn tag(raw: &str) -> ApiResult<String> {
    let tag = raw.trim();
    if tag.is_empty() || tag.chars().count() > 128 {
        return Err(ApiError::invalid_field(
            "tag",
            "\"tag\" must be 1 to 128 characters",
        ));
    }
    Ok(tag.to_string())
}

/// Validates `POST /domainaccess/{tag}/{allow|block}` (strict): `domain`.
pub fn domain(params: Map<String, Value>) -> ApiResult<String> {
    let mut v = Validator::new(params);
    let domain = v.required_string("domain", Str::max(255).trim());
    v.session();
    v.deny_unknown();
    v.finish()?;
    Ok(domain.unwrap_or_default())
}

pub fn list_json(entries: &[DomainAccess]) -> Value {
    json!({
        "success": true,
        "results": entries
            .iter()
            .map(|e| json!({ "id": e.id, "domain": e.domain, "action": e.action.as_str() }))
            .collect::<Vec<_>>(),
    })
}
