//! Mailboxes on the wire: `/users/{user}/mailboxes...` requests validated into the domain's
//! commands, and mailboxes answered in WildDuck's shape.

use serde_json::{Map, Value, json};

use crate::domain::mailboxes::{
    MAX_PATH_CHARS, MailboxChanges, MailboxRef, NewMailbox, StoredMailbox, check_path,
    normalize_path,
};
use crate::http::error::{ApiError, ApiResult};
use crate::http::validate::{Str, Validator};

/// A mailbox; its counters (`total`, `unseen`) and `size` when asked.
pub fn mailbox_json(stored: &StoredMailbox, counters: bool, sizes: bool) -> Value {
    let m = &stored.mailbox;
    let mut out = json!({
        "id": m.id,
        "name": stored.name(),
        "path": m.path,
        "specialUse": m.special_use,
        "modifyIndex": stored.modify_index,
        "subscribed": m.subscribed,
        "hidden": m.hidden,
        "encryptMessages": m.encrypt_messages,
    });
    if m.retention > 0 {
        out["retention"] = json!(m.retention);
    }
    if counters {
        out["total"] = json!(stored.total);
        out["unseen"] = json!(stored.unseen);
    }
    if sizes {
        out["size"] = json!(stored.size);
    }
    out
}

/// What `GET /users/{user}/mailboxes` asks for.
pub struct ListMailboxes {
    pub special_only: bool,
    pub show_hidden: bool,
    pub counters: bool,
    pub sizes: bool,
}

/// Validates `GET /users/{user}/mailboxes` (strict).
pub fn list_mailboxes(params: Map<String, Value>) -> ApiResult<ListMailboxes> {
    let mut v = Validator::new(params);
    let special_only = v.boolean("specialUse").unwrap_or(false);
    let show_hidden = v.boolean("showHidden").unwrap_or(false);
    let counters = v.boolean("counters").unwrap_or(false);
    let sizes = v.boolean("sizes").unwrap_or(false);
    v.session();
    v.deny_unknown();
    v.finish()?;
    Ok(ListMailboxes {
        special_only,
        show_hidden,
        counters,
        sizes,
    })
}

/// `GET /users/{user}/mailboxes`.
pub fn list_json(boxes: &[StoredMailbox], request: &ListMailboxes) -> Value {
    let results: Vec<Value> = boxes
        .iter()
        .map(|m| mailbox_json(m, request.counters, request.sizes))
        .collect();
    let mut body = json!({ "success": true, "results": results });
    if request.counters {
        // The spec's example names the list `mailboxes`; WildDuck names it `results`.
        body["mailboxes"] = body["results"].clone();
    }
    body
}

/// Validates `GET /users/{user}/mailboxes/{mailbox}` (strict): `{mailbox}` is an id, or
/// `resolve` with a `path`.
pub fn mailbox_ref(mailbox: &str, params: Map<String, Value>) -> ApiResult<MailboxRef> {
    let mut v = Validator::new(params);
    let path = v.string("path", Str::max(MAX_PATH_CHARS));
    v.session();
    let which = if mailbox == "resolve" {
        match path {
            Some(path) => {
                if let Err(message) = check_path(&path) {
                    v.error("path", message);
                }
                Some(MailboxRef::Path(path))
            }
            None => {
                v.error("path", "\"path\" is required");
                None
            }
        }
    } else {
        v.path_id("mailbox", mailbox).map(MailboxRef::Id)
    };
    v.deny_unknown();
    v.finish()?;
    which.ok_or_else(|| ApiError::invalid_field("mailbox", "\"mailbox\" is required"))
}

/// Validates `POST /users/{user}/mailboxes` (strict).
pub fn new_mailbox(params: Map<String, Value>) -> ApiResult<NewMailbox> {
    let mut v = Validator::new(params);
    let path = v.required_string("path", Str::max(MAX_PATH_CHARS));
    let hidden = v.boolean("hidden").unwrap_or(false);
    let retention = v.count("retention");
    let encrypt_messages = v.boolean("encryptMessages").unwrap_or(false);
    v.session();
    // Checked as given: WildDuck refuses `a/b/` rather than trimming it.
    if let Some(Err(message)) = path.as_deref().map(check_path) {
        v.error("path", message);
    }
    let path = path.map(|p| normalize_path(&p));
    v.deny_unknown();
    v.finish()?;
    Ok(NewMailbox {
        path: path.unwrap_or_default(),
        hidden,
        retention,
        encrypt_messages,
    })
}

/// Validates `PUT /users/{user}/mailboxes/{mailbox}` (strict).
pub fn mailbox_changes(params: Map<String, Value>) -> ApiResult<MailboxChanges> {
    let mut v = Validator::new(params);
    let path = v.string("path", Str::max(MAX_PATH_CHARS));
    let retention = v.count("retention");
    let subscribed = v.boolean("subscribed");
    let encrypt_messages = v.boolean("encryptMessages");
    let hidden = v.boolean("hidden");
    v.session();
    if let Some(Err(message)) = path.as_deref().map(check_path) {
        v.error("path", message);
    }
    v.deny_unknown();
    v.finish()?;
    Ok(MailboxChanges {
        path,
        retention,
        subscribed,
        encrypt_messages,
        hidden,
    })
}
