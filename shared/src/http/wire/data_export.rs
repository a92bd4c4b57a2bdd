//! Account moves on the wire (`/data/export`, `/data/import`).

use serde_json::{Map, Value, json};

use crate::domain::data_export::{Imported, Selection};
use crate::http::error::ApiResult;
use crate::http::validate::Validator;
use crate::id::ObjectId;

/// Validates `POST /data/export`: `users` (ids; one id alone is taken too) and `tags` (any
/// of them; one tag alone too). Neither: every user.
pub fn export(params: Map<String, Value>) -> ApiResult<Selection> {
    // A single value where a list is expected is a list of one (WildDuck's), as the
    // validator's lists take a string.
    let mut v = Validator::new(params);
    let listed = v.bounded_list("users", 24, 100_000).unwrap_or_default();
    let users: Vec<ObjectId> = listed.iter().filter_map(|id| id.parse().ok()).collect();
    if users.len() != listed.len() {
        v.error("users", "\"users\" must contain valid user ids");
    }
    let tags = v
        .bounded_list("tags", 1024, 1000)
        .unwrap_or_default()
        .into_iter()
        .map(|t| t.to_lowercase())
        .collect();
    v.session();
    v.deny_unknown();
    v.finish()?;
    Ok(Selection { users, tags })
}

/// `POST /data/import`'s answer: WildDuck's counts under `result`.
pub fn imported_json(imported: &Imported) -> Value {
    json!({ "success": true, "result": imported })
}
