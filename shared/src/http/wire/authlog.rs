//! The security log on the wire: `GET /users/{user}/authlog`.

use serde_json::{Map, Value, json};

use crate::domain::authlog::{AuthlogEntry, AuthlogListing, ListAuthlog, Session};
use crate::http::error::ApiResult;
use crate::http::paging::{add_paging, page_request};
use crate::http::validate::{Str, Validator};
use crate::time::iso;

/// Validates `GET /users/{user}/authlog` (strict).
pub fn list_authlog(params: Map<String, Value>) -> ApiResult<ListAuthlog> {
    let mut v = Validator::new(params);
    let action = v.string("action", Str::max(100).trim().lowercase());
    let Session { sess, ip } = v.session();
    let filter_ip = v.string("filterip", Str::max(45).trim());
    if filter_ip
        .as_deref()
        .is_some_and(|ip| ip.parse::<std::net::IpAddr>().is_err())
    {
        v.error(
            "filterip",
            "\"filterip\" must be a valid ip address without CIDR",
        );
    }
    let page = page_request(&mut v);
    v.deny_unknown();
    v.finish()?;
    Ok(ListAuthlog {
        action,
        sess,
        ip: ip.or(filter_ip),
        page,
    })
}

/// The listing form of an entry: every stored field, with WildDuck's `events` and `last`
/// (Eider stores one entry per event).
fn entry_json(entry: &AuthlogEntry) -> Value {
    let mut out = serde_json::to_value(entry).unwrap_or(Value::Null);
    if let Value::Object(fields) = &mut out {
        fields.insert("created".into(), json!(iso(&entry.created)));
        fields.insert("expires".into(), json!(iso(&entry.expires)));
        fields.entry("events").or_insert(Value::from(1));
        fields.insert("last".into(), json!(iso(&entry.created)));
    }
    out
}

/// `GET /users/{user}/authlog`.
pub fn list_json(request: &ListAuthlog, listing: &AuthlogListing) -> Value {
    let mut body = json!({ "success": true });
    if let Some(action) = &request.action {
        body["action"] = json!(action);
    }
    body["total"] = json!(listing.total);
    add_paging(&mut body, &listing.page, &request.page);
    body["results"] = Value::Array(listing.page.items.iter().map(entry_json).collect());
    body
}

/// `GET /users/{user}/authlog/{event}`.
pub fn event_json(entry: &AuthlogEntry) -> Value {
    let mut body = entry_json(entry);
    body["success"] = json!(true);
    body
}
