//! Forwarded addresses on the wire (`/addresses/forwarded`): requests validated into the
//! domain's commands, addresses answered in WildDuck's shape.

use serde_json::{Map, Value, json};

use super::autoreply::bound;
use super::users::{parsed_object, targets};
use crate::domain::forwarded::{AutoreplyChanges, ForwardedChanges, ForwardedStatus, NewForwarded};
use crate::domain::users::MAX_LIST_ITEMS;
use crate::http::error::ApiResult;
use crate::http::validate::{MAX_DATA_BYTES, Str, Validator};
use crate::time::{iso, iso_or_false};

/// Tags as WildDuck keeps them: trimmed, de-duplicated, sorted.
fn tags(v: &mut Validator) -> Option<Vec<String>> {
    let mut tags: Vec<String> = v
        .bounded_list("tags", 128, MAX_LIST_ITEMS)?
        .into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    tags.sort();
    tags.dedup();
    Some(tags)
}

/// The `autoreply` object: each key optional.
fn autoreply(v: &mut Validator) -> Option<AutoreplyChanges> {
    let value = v.raw("autoreply")?;
    let Value::Object(fields) = value else {
        v.error("autoreply", "\"autoreply\" must be an object");
        return None;
    };
    let mut inner = Validator::new(fields);
    let changes = AutoreplyChanges {
        status: inner.boolean("status"),
        start: bound(&mut inner, "start"),
        end: bound(&mut inner, "end"),
        name: inner.string("name", Str::max(128).trim().allow_empty()),
        subject: inner.string("subject", Str::max(2 * 1024).trim().allow_empty()),
        text: inner.string("text", Str::max(128 * 1024).trim().allow_empty()),
        html: inner.string("html", Str::max(128 * 1024).trim().allow_empty()),
    };
    inner.deny_unknown();
    if let Err(e) = inner.finish() {
        for (field, message) in e.details.unwrap_or_default() {
            v.error(&format!("autoreply.{field}"), message);
        }
        return None;
    }
    Some(changes)
}

/// Validates `POST /addresses/forwarded` (strict).
pub fn create(params: Map<String, Value>) -> ApiResult<NewForwarded> {
    let mut v = Validator::new(params);
    let address = v.required_string("address", Str::max(255).trim());
    let name = v.string("name", Str::max(128).trim().allow_empty());
    let targets = targets(&mut v, "targets");
    let forwards = v.integer("forwards", 0, 1_000_000);
    let allow_wildcard = v.boolean("allowWildcard").unwrap_or(false);
    let autoreply = autoreply(&mut v);
    let tags = tags(&mut v);
    let meta_data = v.json_object("metaData", MAX_DATA_BYTES);
    let internal_data = v.json_object("internalData", MAX_DATA_BYTES);
    v.session();
    v.deny_unknown();
    v.finish()?;
    Ok(NewForwarded {
        address: address.unwrap_or_default(),
        allow_wildcard,
        name: name.unwrap_or_default(),
        targets: targets.unwrap_or_default(),
        forwards: forwards.unwrap_or(0) as u64,
        autoreply,
        tags: tags.unwrap_or_default(),
        meta_data,
        internal_data,
    })
}

/// Validates `PUT /addresses/forwarded/{address}` (strict).
pub fn changes(params: Map<String, Value>) -> ApiResult<ForwardedChanges> {
    let mut v = Validator::new(params);
    let changes = ForwardedChanges {
        address: v.string("address", Str::max(255).trim()),
        name: v.string("name", Str::max(128).trim().allow_empty()),
        targets: targets(&mut v, "targets"),
        forwards: v.integer("forwards", 0, 1_000_000).map(|n| n as u64),
        autoreply: autoreply(&mut v),
        tags: tags(&mut v),
        forwarded_disabled: v.boolean("forwardedDisabled"),
        meta_data: v.json_object("metaData", MAX_DATA_BYTES),
        internal_data: v.json_object("internalData", MAX_DATA_BYTES),
    };
    v.session();
    v.deny_unknown();
    v.finish()?;
    Ok(changes)
}

/// WildDuck's answer for a forwarded address (`GET /addresses/forwarded/{id}`, and
/// `/addresses/resolve` without `forwardedDisabled`).
pub fn forwarded_json(found: &ForwardedStatus, with_disabled: bool, data: bool) -> Value {
    let a = &found.address;
    let reply = &a.autoreply;
    let mut body = json!({
        "success": true,
        "id": a.id,
        "name": a.name,
        "address": a.address,
        "targets": a.targets.iter().map(|t| t.value.clone()).collect::<Vec<_>>(),
        "limits": { "forwards": {
            "allowed": found.allowed,
            "used": found.used,
            "ttl": found.ttl.map(Value::from).unwrap_or(Value::Bool(false)),
        }},
        "autoreply": {
            "status": reply.status,
            "start": iso_or_false(reply.start.as_ref()),
            "end": iso_or_false(reply.end.as_ref()),
            "name": reply.name,
            "subject": reply.subject,
            "text": reply.text,
            "html": reply.html,
        },
        "tags": a.tags,
        "created": iso(&a.created),
    });
    if with_disabled {
        body["forwardedDisabled"] = json!(a.forwarded_disabled);
    }
    if data {
        body["metaData"] = parsed_object(&a.meta_data);
        body["internalData"] = parsed_object(&a.internal_data);
    }
    body
}
