//! DKIM keys on the wire (`/dkim`): requests validated, keys answered in WildDuck's shape
//! (never the private key).

use serde_json::{Map, Value, json};

use crate::domain::dkim::{DkimKey, KeyListing, ListKeys, NewKey};
use crate::http::error::ApiResult;
use crate::http::paging::{add_paging, page_request};
use crate::http::validate::{Str, Validator};
use crate::time::iso;

/// Validates `GET /dkim` (unknown keys allowed, as WildDuck's).
pub fn list(params: Map<String, Value>) -> ApiResult<ListKeys> {
    let mut v = Validator::new(params);
    let query = v.string("query", Str::max(255).trim());
    let page = page_request(&mut v);
    v.session();
    v.finish()?;
    Ok(ListKeys { query, page })
}

/// Validates `POST /dkim` (strict).
pub fn create(params: Map<String, Value>) -> ApiResult<NewKey> {
    let mut v = Validator::new(params);
    let domain = v.required_string("domain", Str::max(255).trim());
    let selector = v.required_string("selector", Str::max(255).trim());
    let private_key = v.string("privateKey", Str::max(16 * 1024).trim());
    let description = v.string("description", Str::max(255).trim());
    if let Some(selector) = &selector
        && !selector
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    {
        v.error("selector", "\"selector\" must be a valid DNS label");
    }
    v.session();
    v.deny_unknown();
    v.finish()?;
    Ok(NewKey {
        domain: domain.unwrap_or_default(),
        selector: selector.unwrap_or_default(),
        private_key,
        description,
    })
}

/// A key as `POST` and `GET /dkim/{dkim}` answer it.
pub fn key_json(key: &DkimKey) -> Value {
    let (name, value) = key.dns_txt();
    let mut body = json!({
        "success": true,
        "id": key.id,
        "domain": key.domain,
        "selector": key.selector,
        "fingerprint": key.fingerprint,
        "publicKey": key.public_key_pem(),
        "dnsTxt": { "name": name, "value": value },
        "created": iso(&key.created),
    });
    if let Some(description) = &key.description {
        body["description"] = json!(description);
    }
    body
}

pub fn list_json(request: &ListKeys, listing: &KeyListing) -> Value {
    let mut body = json!({ "success": true });
    if let Some(q) = &request.query {
        body["query"] = json!(q);
    }
    body["total"] = json!(listing.total);
    add_paging(&mut body, &listing.page, &request.page);
    body["results"] = listing
        .page
        .items
        .iter()
        .map(|k| {
            let mut entry = json!({
                "id": k.id, "domain": k.domain, "selector": k.selector,
                "fingerprint": k.fingerprint, "created": iso(&k.created),
            });
            if let Some(description) = &k.description {
                entry["description"] = json!(description);
            }
            entry
        })
        .collect();
    body
}
