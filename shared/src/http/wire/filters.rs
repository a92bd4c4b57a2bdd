//! Filters on the wire: `/users/{user}/filters...` in both of their shapes (the spec's flat
//! `query_*` / `action_*` fields and WildDuck's nested `query` / `action` objects); reads
//! answer both side by side.

use serde_json::{Map, Value, json};

use crate::domain::filters::{
    Change, Filter, FilterChanges, FilterList, MAX_QUERY_CHARS, MAX_TARGETS, Target, TargetKind,
    collapse_whitespace,
};
use crate::http::error::ApiResult;
use crate::http::validate::{MAX_DATA_BYTES, Str, Validator};
use crate::id::ObjectId;
use crate::time::iso;

// ---------------------------------------------------------------------------------------------
// Requests

/// Whether `field` was sent empty: `""`, `null` or an empty array clear a value on update.
fn sent_empty(v: &mut Validator, field: &str) -> bool {
    match v.raw(field) {
        None => true,
        Some(Value::String(s)) => s.trim().is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    }
}

/// The change of one field from whichever of `fields` (its flat and nested names) was sent,
/// the last one winning: cleared when sent empty, else what `parse` reads (`None` when it
/// refused the value and recorded the error).
fn change<T>(
    v: &mut Validator,
    fields: &[&str],
    parse: impl Fn(&mut Validator, &str) -> Option<Option<T>>,
) -> Change<T> {
    let mut out = None;
    for field in fields {
        if !v.has(field) {
            continue;
        }
        if sent_empty(v, field) {
            out = Some(None);
        } else if let Some(value) = parse(v, field) {
            out = Some(value);
        }
    }
    out
}

fn text_change(v: &mut Validator, fields: &[&str]) -> Change<String> {
    change(v, fields, |v, field| {
        v.string(field, Str::max(MAX_QUERY_CHARS).trim())
            .map(|s| Some(collapse_whitespace(&s)))
    })
}

fn bool_change(v: &mut Validator, fields: &[&str]) -> Change<bool> {
    change(v, fields, |v, field| v.boolean(field).map(Some))
}

/// A size of 0 means no size condition.
fn size_change(v: &mut Validator, fields: &[&str]) -> Change<i64> {
    change(v, fields, |v, field| {
        v.integer(field, -(1 << 53), 1 << 53)
            .map(|n| (n != 0).then_some(n))
    })
}

fn mailbox_change(v: &mut Validator, fields: &[&str]) -> Change<ObjectId> {
    change(v, fields, |v, field| v.id(field).map(Some))
}

/// One target of the spec's flat fields, which must be of `kind`.
fn single_target(v: &mut Validator, field: &str, kind: TargetKind) -> Change<Target> {
    if !v.has(field) {
        return None;
    }
    if sent_empty(v, field) {
        return Some(None);
    }
    let value = v.string(field, Str::max(1024).trim())?;
    match Target::parse(&value).filter(|t| t.kind == kind) {
        Some(target) => Some(Some(target)),
        None => {
            let what = if kind == TargetKind::Mail {
                "a valid email"
            } else {
                "a valid uri with a scheme matching the http|https pattern"
            };
            v.error(field, format!("\"{field}\" must be {what}"));
            None
        }
    }
}

fn targets_change(v: &mut Validator, field: &str) -> Change<Vec<Target>> {
    if !v.has(field) {
        return None;
    }
    if sent_empty(v, field) {
        return Some(None);
    }
    let list = v.bounded_list(field, 1024, MAX_TARGETS)?;
    let mut out: Vec<Target> = Vec::new();
    for (i, value) in list.iter().enumerate() {
        match Target::parse(value) {
            Some(t) if out.iter().all(|o| o.value != t.value) => out.push(t),
            Some(_) => {}
            None => {
                v.error(
                    &format!("{field}.{i}"),
                    format!("\"{field}[{i}]\" does not match any of the allowed types"),
                );
                return None;
            }
        }
    }
    Some(Some(out))
}

/// Validates a create or update body: flat fields and nested `query` / `action` objects
/// (whose keys are checked as `query.<key>` / `action.<key>`). Strict: unknown fields are
/// refused.
pub fn filter_changes(mut params: Map<String, Value>) -> ApiResult<FilterChanges> {
    let mut type_errors = Vec::new();
    for group in ["query", "action"] {
        match params.remove(group) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.trim().is_empty() => {}
            Some(Value::Object(fields)) => {
                for (key, value) in fields {
                    params.insert(format!("{group}.{key}"), value);
                }
            }
            Some(_) => type_errors.push(group),
        }
    }
    let mut v = Validator::new(params);
    for group in type_errors {
        v.error(group, format!("\"{group}\" must be of type object"));
    }
    let changes = FilterChanges {
        name: v.string("name", Str::max(255).trim()),
        from: text_change(&mut v, &["query.from", "query_from"]),
        to: text_change(&mut v, &["query.to", "query_to"]),
        subject: text_change(&mut v, &["query.subject", "query_subject"]),
        list_id: text_change(&mut v, &["query.listId", "query_listId"]),
        text: text_change(&mut v, &["query.text", "query_text"]),
        ha: bool_change(&mut v, &["query.ha", "query_ha"]),
        size: size_change(&mut v, &["query.size", "query_size"]),
        seen: bool_change(&mut v, &["action.seen", "action_seen"]),
        flag: bool_change(&mut v, &["action.flag", "action_flag"]),
        delete: bool_change(&mut v, &["action.delete", "action_delete"]),
        spam: bool_change(&mut v, &["action.spam", "action_spam"]),
        mailbox: mailbox_change(&mut v, &["action.mailbox", "action_mailbox"]),
        targets: targets_change(&mut v, "action.targets"),
        forward: single_target(&mut v, "action_forward", TargetKind::Mail),
        target_url: single_target(&mut v, "action_targetUrl", TargetKind::Http),
        disabled: v.boolean("disabled"),
        meta_data: v.json_object("metaData", MAX_DATA_BYTES),
        session: v.session(),
    };
    v.deny_unknown();
    v.finish()?;
    Ok(changes)
}

/// Validates `GET /users/{user}/filters` (strict): whether to answer `metaData`.
pub fn list_filters(params: Map<String, Value>) -> ApiResult<bool> {
    let mut v = Validator::new(params);
    let meta = v.boolean("metaData").unwrap_or(false);
    v.session();
    v.deny_unknown();
    v.finish()?;
    Ok(meta)
}

// ---------------------------------------------------------------------------------------------
// Answers

/// WildDuck's nested `query` object.
fn query_json(filter: &Filter) -> Value {
    let q = &filter.query;
    let mut out = Map::new();
    for (key, value) in [
        ("from", &q.from),
        ("to", &q.to),
        ("subject", &q.subject),
        ("listId", &q.list_id),
        ("text", &q.text),
    ] {
        if let Some(v) = value {
            out.insert(key.into(), json!(v));
        }
    }
    if let Some(ha) = q.ha {
        out.insert("ha".into(), json!(ha));
    }
    if let Some(size) = q.size {
        out.insert("size".into(), json!(size));
    }
    Value::Object(out)
}

/// WildDuck's nested `action` object.
fn action_json(filter: &Filter) -> Value {
    let a = &filter.action;
    let mut out = Map::new();
    for (key, value) in [
        ("seen", a.seen),
        ("flag", a.flag),
        ("delete", a.delete),
        ("spam", a.spam),
    ] {
        if let Some(v) = value {
            out.insert(key.into(), json!(v));
        }
    }
    if let Some(mailbox) = &a.mailbox {
        out.insert("mailbox".into(), json!(mailbox));
    }
    if !a.targets.is_empty() {
        let values: Vec<&str> = a.targets.iter().map(|t| t.value.as_str()).collect();
        out.insert("targets".into(), json!(values));
    }
    Value::Object(out)
}

/// The spec's flat fields, added to `out`: the nested fields with a `query_` / `action_`
/// prefix, and the first forward and first URL target as `action_forward` and
/// `action_targetUrl`.
fn flat_json(filter: &Filter, out: &mut Map<String, Value>) {
    if let Value::Object(query) = query_json(filter) {
        out.extend(query.into_iter().map(|(k, v)| (format!("query_{k}"), v)));
    }
    if let Value::Object(action) = action_json(filter) {
        out.extend(
            action
                .into_iter()
                .filter(|(k, _)| k != "targets")
                .map(|(k, v)| (format!("action_{k}"), v)),
        );
    }
    let first = |kind| filter.action.targets.iter().find(|t| t.kind == kind);
    if let Some(t) = first(TargetKind::Mail) {
        out.insert("action_forward".into(), json!(t.value));
    }
    if let Some(t) = first(TargetKind::Http) {
        out.insert("action_targetUrl".into(), json!(t.value));
    }
}

/// The human-readable `query` and `action` tuples of the listing (§2.39); `paths` maps
/// mailbox ids to paths.
fn description(filter: &Filter, paths: &[(ObjectId, String)]) -> (Vec<Value>, Vec<Value>) {
    let q = &filter.query;
    let mut query = Vec::new();
    for (key, value) in [
        ("from", &q.from),
        ("to", &q.to),
        ("subject", &q.subject),
        ("listId", &q.list_id),
    ] {
        if let Some(v) = value {
            query.push(json!([key, format!("({v})")]));
        }
    }
    match q.ha {
        Some(true) => query.push(json!(["has attachment"])),
        Some(false) => query.push(json!(["no attachments"])),
        None => {}
    }
    if let Some(text) = &q.text {
        query.push(json!([false, format!("\"{text}\"")]));
    }
    match q.size {
        Some(s) if s > 0 => query.push(json!(["larger", s])),
        Some(s) if s < 0 => query.push(json!(["smaller", s.unsigned_abs()])),
        _ => {}
    }
    let a = &filter.action;
    let mut action = Vec::new();
    for (value, yes, no) in [
        (a.seen, "mark as read", "do not mark as read"),
        (a.flag, "flag it", "do not flag it"),
        (a.delete, "delete it", "do not delete it"),
        (a.spam, "mark it as spam", "do not mark it as spam"),
    ] {
        if let Some(v) = value {
            action.push(json!([if v { yes } else { no }]));
        }
    }
    if !a.targets.is_empty() {
        let list: Vec<String> = a.targets.iter().map(Target::description).collect();
        action.push(json!(["forward to", list.join(", ")]));
    }
    if let Some(mailbox) = &a.mailbox {
        let shown = paths
            .iter()
            .find(|(id, _)| id == mailbox)
            .map(|(_, path)| format!("\"{path}\""))
            .unwrap_or_else(|| mailbox.to_string());
        action.push(json!(["move to folder", shown]));
    }
    (query, action)
}

fn meta_json(filter: &Filter) -> Value {
    filter
        .meta_data
        .as_deref()
        .and_then(|m| serde_json::from_str(m).ok())
        .unwrap_or_else(|| json!({}))
}

/// `GET /users/{user}/filters/{filter}`: nested and flat forms together.
pub fn details_json(filter: &Filter) -> Value {
    let mut out = Map::new();
    out.insert("success".into(), json!(true));
    out.insert("id".into(), json!(filter.id));
    out.insert("name".into(), json!(filter.name));
    out.insert("query".into(), query_json(filter));
    out.insert("action".into(), action_json(filter));
    flat_json(filter, &mut out);
    out.insert("disabled".into(), json!(filter.disabled));
    out.insert("created".into(), json!(iso(&filter.created)));
    out.insert("metaData".into(), meta_json(filter));
    Value::Object(out)
}

/// `GET /users/{user}/filters`: the listing's human-readable tuples and the flat fields.
pub fn list_json(list: &FilterList, meta: bool) -> Value {
    let results: Vec<Value> = list
        .filters
        .iter()
        .map(|f| {
            let (query, action) = description(f, &list.paths);
            let mut entry = Map::new();
            entry.insert("id".into(), json!(f.id));
            entry.insert("name".into(), json!(f.name));
            entry.insert("query".into(), json!(query));
            entry.insert("action".into(), json!(action));
            flat_json(f, &mut entry);
            entry.insert("disabled".into(), json!(f.disabled));
            entry.insert("created".into(), json!(iso(&f.created)));
            if meta && f.meta_data.is_some() {
                entry.insert("metaData".into(), meta_json(f));
            }
            Value::Object(entry)
        })
        .collect();
    json!({
        "success": true,
        "limits": { "allowed": list.allowed, "used": list.filters.len() },
        "results": results,
    })
}

/// Validates `GET /filters` (unknown keys allowed, as WildDuck's): `forward`, `metaData`,
/// paging.
pub fn list_all(
    params: Map<String, Value>,
) -> ApiResult<(Option<String>, bool, crate::domain::paging::PageRequest)> {
    let mut v = Validator::new(params);
    let forward = v.string("forward", Str::max(255).trim());
    let meta = v.boolean("metaData").unwrap_or(false);
    let page = crate::http::paging::page_request(&mut v);
    v.session();
    v.finish()?;
    Ok((forward, meta, page))
}

/// `GET /filters`: each filter with its user, the description tuples (targets in full) and the
/// flat fields.
pub fn list_all_json(
    request: &crate::domain::filters::ListAllFilters,
    page: &crate::domain::paging::PageResult<Filter>,
    meta: bool,
) -> Value {
    let results: Vec<Value> = page
        .items
        .iter()
        .map(|f| {
            let (query, action) = description(f, &[]);
            let mut entry = Map::new();
            entry.insert("id".into(), json!(f.id));
            entry.insert("user".into(), json!(f.user));
            entry.insert("name".into(), json!(f.name));
            entry.insert("query".into(), json!(query));
            entry.insert("action".into(), json!(action));
            flat_json(f, &mut entry);
            entry.insert("disabled".into(), json!(f.disabled));
            entry.insert("created".into(), json!(iso(&f.created)));
            if !f.action.targets.is_empty() {
                entry.insert(
                    "targets".into(),
                    json!(
                        f.action
                            .targets
                            .iter()
                            .map(|t| t.value.clone())
                            .collect::<Vec<_>>()
                    ),
                );
            }
            if meta && f.meta_data.is_some() {
                entry.insert("metaData".into(), meta_json(f));
            }
            Value::Object(entry)
        })
        .collect();
    let mut body = json!({ "success": true });
    if let Some(forward) = &request.forward {
        body["forward"] = json!(forward);
    }
    crate::http::paging::add_paging(&mut body, page, &request.page);
    body["results"] = Value::Array(results);
    body
}
