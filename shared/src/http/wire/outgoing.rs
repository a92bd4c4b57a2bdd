//! Writing mail on the wire: the composed form of `POST .../messages`, `POST
//! /users/{user}/submit`, sending a draft, forwarding, the outbound queue and storage files,
//! validated into the domain's requests and answered as WildDuck does.

use base64::Engine;
use serde_json::{Map, Value, json};

use super::messages::binary;
use crate::domain::compose::{AttachmentCopy, ComposeFields, NewAttachment, ReferenceRequest};
use crate::domain::messages::{MAX_MESSAGE_SIZE, ReferenceAction, Stored, Upload};
use crate::domain::names;
use crate::domain::outgoing::{Cancelled, Forwarded, SentDraft, Submission, Submitted};
use crate::domain::paging::PageRequest;
use crate::domain::storage::{FileListing, MAX_FILE_SIZE, NewFile, StoredFile};
use crate::http::error::ApiResult;
use crate::http::paging::{add_paging, page_request};
use crate::http::validate::{MAX_DATA_BYTES, Str, Validator};
use crate::id::ObjectId;
use crate::mail::compose::MailAddress;
use crate::time::iso;

/// Largest `text` or `html` (WildDuck's 1 MiB of characters).
const MAX_BODY_CHARS: usize = 1024 * 1024;

/// `{name?, address}`: `None` when absent; an invalid one is an error at `field`.
fn one_address(v: &mut Validator, field: &str, value: &Value) -> Option<MailAddress> {
    let Value::Object(fields) = value else {
        v.error(field, format!("\"{field}\" must be of type object"));
        return None;
    };
    let name = fields
        .get("name")
        .and_then(Value::as_str)
        .map(|n| n.trim().to_string());
    if name.as_ref().is_some_and(|n| n.chars().count() > 255) {
        v.error(
            &format!("{field}.name"),
            format!("\"{field}.name\" length must be less than or equal to 255 characters long"),
        );
        return None;
    }
    let address = fields.get("address").and_then(Value::as_str).map(str::trim);
    match address {
        Some(a) if names::is_address(a) => Some(MailAddress::new(name, a)),
        Some(_) => {
            v.error(
                &format!("{field}.address"),
                format!("\"{field}.address\" must be a valid email"),
            );
            None
        }
        None => {
            v.error(
                &format!("{field}.address"),
                format!("\"{field}.address\" is required"),
            );
            None
        }
    }
}

fn address(v: &mut Validator, field: &str) -> Option<MailAddress> {
    let value = v.raw(field)?;
    one_address(v, field, &value)
}

/// `[{name?, address}]` (a group `{name, group: [...]}`, as addressparser gives it, is
/// flattened). With `failover`, an invalid address is dropped instead of refused (WildDuck's
/// `to`).
fn address_list(v: &mut Validator, field: &str, failover: bool) -> Vec<MailAddress> {
    let Some(value) = v.raw(field) else {
        return Vec::new();
    };
    let items = match value {
        Value::Array(items) => items,
        Value::Object(_) => vec![value],
        Value::String(s) if s.trim().is_empty() => return Vec::new(),
        _ => {
            v.error(field, format!("\"{field}\" must be an array"));
            return Vec::new();
        }
    };
    let mut flat = Vec::new();
    for item in items {
        match item.get("group").and_then(Value::as_array) {
            Some(members) => flat.extend(members.iter().cloned()),
            None => flat.push(item),
        }
    }
    let mut out = Vec::new();
    for (i, item) in flat.iter().enumerate() {
        let path = format!("{field}[{i}]");
        let valid = item
            .get("address")
            .and_then(Value::as_str)
            .is_some_and(|a| names::is_address(a.trim()));
        if failover && !valid {
            continue;
        }
        if let Some(a) = one_address(v, &path, item) {
            out.push(a);
        }
    }
    out
}

fn headers(v: &mut Validator) -> Vec<(String, String)> {
    let Some(value) = v.raw("headers") else {
        return Vec::new();
    };
    let Value::Array(items) = value else {
        v.error("headers", "\"headers\" must be an array");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let key = item.get("key").and_then(Value::as_str).map(str::trim);
        let value = item.get("value").and_then(Value::as_str);
        match (key, value) {
            (Some(k), Some(val))
                if !k.is_empty()
                    && k.len() <= 255
                    && k.bytes().all(|b| b.is_ascii_graphic() && b != b':')
                    && val.len() <= 100 * 1024 =>
            {
                // Header values are one line: folded lines would let a caller start a header.
                let one_line = val.replace(['\r', '\n'], " ");
                out.push((k.to_string(), one_line));
            }
            _ => v.error(
                &format!("headers[{i}]"),
                format!("\"headers[{i}]\" must be {{key, value}} with a header name"),
            ),
        }
    }
    out
}

fn attachments(v: &mut Validator) -> Vec<NewAttachment> {
    let Some(value) = v.raw("attachments") else {
        return Vec::new();
    };
    let Value::Array(items) = value else {
        v.error("attachments", "\"attachments\" must be an array");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("attachments[{i}]");
        let text = |name: &str| {
            item.get(name)
                .and_then(Value::as_str)
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let Some(content) = item.get("content").and_then(Value::as_str) else {
            v.error(
                &format!("{path}.content"),
                format!("\"{path}.content\" is required"),
            );
            continue;
        };
        let encoding = text("encoding")
            .unwrap_or_else(|| "base64".into())
            .to_lowercase();
        let bytes = if encoding == "base64" {
            let clean: String = content.chars().filter(|c| !c.is_whitespace()).collect();
            match base64::engine::general_purpose::STANDARD
                .decode(clean.trim_end_matches('='))
                .or_else(|_| {
                    base64::engine::general_purpose::STANDARD_NO_PAD
                        .decode(clean.trim_end_matches('='))
                }) {
                Ok(b) => b,
                Err(_) => {
                    v.error(
                        &format!("{path}.content"),
                        format!("\"{path}.content\" must be base64 encoded"),
                    );
                    continue;
                }
            }
        } else {
            content.as_bytes().to_vec()
        };
        if bytes.len() > MAX_MESSAGE_SIZE {
            v.error(&path, format!("\"{path}\" is too large"));
            continue;
        }
        let filename = text("filename");
        if filename.as_ref().is_some_and(|f| f.chars().count() > 255) {
            v.error(&format!("{path}.filename"), "filename too long");
            continue;
        }
        out.push(NewAttachment {
            filename,
            content_type: text("contentType").map(|t| t.to_lowercase()),
            content: bytes,
            cid: text("cid"),
            inline: text("contentDisposition").as_deref() == Some("inline"),
        });
    }
    out
}

fn reference(v: &mut Validator, with_attachments: bool) -> Option<ReferenceRequest> {
    let value = v.raw("reference")?;
    let Value::Object(fields) = value else {
        v.error("reference", "\"reference\" must be of type object");
        return None;
    };
    let mailbox = fields
        .get("mailbox")
        .and_then(Value::as_str)
        .and_then(|m| m.parse::<ObjectId>().ok());
    let uid = fields
        .get("id")
        .and_then(|id| {
            id.as_u64()
                .or_else(|| id.as_str().and_then(|s| s.parse().ok()))
        })
        .and_then(|id| u32::try_from(id).ok())
        .filter(|id| *id > 0);
    let action = match fields.get("action").and_then(Value::as_str) {
        Some("reply") => Some(ReferenceAction::Reply),
        Some("replyAll") => Some(ReferenceAction::ReplyAll),
        Some("forward") => Some(ReferenceAction::Forward),
        _ => None,
    };
    let copy = match fields.get("attachments") {
        _ if !with_attachments => AttachmentCopy::None,
        None | Some(Value::Bool(false)) => AttachmentCopy::None,
        Some(Value::Bool(true)) => AttachmentCopy::All,
        Some(Value::Array(ids)) => AttachmentCopy::Listed(
            ids.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
        ),
        Some(_) => {
            v.error(
                "reference.attachments",
                "\"reference.attachments\" must be a boolean or an array",
            );
            AttachmentCopy::None
        }
    };
    match (mailbox, uid, action) {
        (Some(mailbox), Some(uid), Some(action)) => Some(ReferenceRequest {
            mailbox,
            uid,
            action,
            attachments: copy,
        }),
        (None, _, _) => {
            v.error(
                "reference.mailbox",
                "\"reference.mailbox\" must be 24 hex characters",
            );
            None
        }
        (_, None, _) => {
            v.error(
                "reference.id",
                "\"reference.id\" must be a number greater than or equal to 1",
            );
            None
        }
        (_, _, None) => {
            v.error(
                "reference.action",
                "\"reference.action\" must be one of [reply, replyAll, forward]",
            );
            None
        }
    }
}

/// `{mailbox?, id}` (a message to replace or remove); `default_mailbox` when none is given.
fn message_ref(
    v: &mut Validator,
    field: &str,
    default_mailbox: Option<ObjectId>,
) -> Option<(ObjectId, u32)> {
    let value = v.raw(field)?;
    let mailbox = value
        .get("mailbox")
        .and_then(Value::as_str)
        .and_then(|m| m.parse::<ObjectId>().ok())
        .or(default_mailbox);
    let uid = value
        .get("id")
        .and_then(|id| {
            id.as_u64()
                .or_else(|| id.as_str().and_then(|s| s.parse().ok()))
        })
        .and_then(|id| u32::try_from(id).ok())
        .filter(|id| *id > 0);
    match (mailbox, uid) {
        (Some(m), Some(u)) => Some((m, u)),
        _ => {
            v.error(
                field,
                format!("\"{field}\" must name a mailbox and a message id"),
            );
            None
        }
    }
}

fn files(v: &mut Validator) -> Vec<ObjectId> {
    let Some(value) = v.raw("files") else {
        return Vec::new();
    };
    let Value::Array(items) = value else {
        v.error("files", "\"files\" must be an array");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item.as_str().and_then(|s| s.parse::<ObjectId>().ok()) {
            Some(id) => out.push(id),
            None => v.error(
                &format!("files[{i}]"),
                format!("\"files[{i}]\" must be 24 hex characters"),
            ),
        }
    }
    out
}

/// The compose fields both the composed upload and the submission take.
fn compose_fields(v: &mut Validator, reference_attachments: bool) -> ComposeFields {
    let text_field = |v: &mut Validator, name: &str| {
        v.string(name, Str::max(MAX_BODY_CHARS).allow_empty())
            .filter(|t| !t.is_empty())
    };
    ComposeFields {
        from: address(v, "from"),
        reply_to: address(v, "replyTo"),
        to: address_list(v, "to", true),
        cc: address_list(v, "cc", false),
        bcc: address_list(v, "bcc", false),
        headers: headers(v),
        subject: v.string("subject", Str::max(2048).allow_empty()),
        text: text_field(v, "text"),
        html: text_field(v, "html"),
        attachments: attachments(v),
        files: files(v),
        reference: reference(v, reference_attachments),
        date: None,
    }
}

/// A composed upload: the fields, the upload's flags, and the message it replaces.
pub type ComposedUpload = (ComposeFields, Upload, Option<(ObjectId, u32)>);

/// Whether `POST .../messages` composes (no `raw`, no message body, and a compose field).
pub fn is_composed(params: &Map<String, Value>) -> bool {
    !params.contains_key("raw")
        && !params.contains_key("upload")
        && [
            "from",
            "replyTo",
            "to",
            "cc",
            "bcc",
            "headers",
            "subject",
            "text",
            "html",
            "attachments",
            "files",
            "reference",
        ]
        .iter()
        .any(|k| params.contains_key(*k))
}

/// Validates the composed form of `POST .../messages` (strict): the message fields, the
/// flags of an upload, and `replacePrevious`.
pub fn composed_upload(
    params: Map<String, Value>,
    mailbox: &ObjectId,
    idempotency_key: Option<String>,
) -> ApiResult<ComposedUpload> {
    let mut v = Validator::new(params);
    let mut fields = compose_fields(&mut v, true);
    let unseen = v.boolean("unseen").unwrap_or(false);
    let flagged = v.boolean("flagged").unwrap_or(false);
    let draft = v.boolean("draft").unwrap_or(false);
    fields.date = v.date("date");
    let meta_data = v.json_object("metaData", MAX_DATA_BYTES);
    let replace = message_ref(&mut v, "replacePrevious", Some(*mailbox));
    v.raw("bimi");
    v.session();
    v.deny_unknown();
    v.finish()?;
    let flags = Upload {
        seen: !unseen,
        flagged,
        draft,
        date: fields.date,
        meta_data,
        idempotency_key,
        source: "API",
        ..Default::default()
    };
    Ok((fields, flags, replace))
}

/// Validates `POST /users/{user}/submit` (unknown fields are allowed, as in WildDuck).
pub fn submission(
    params: Map<String, Value>,
    idempotency_key: Option<String>,
) -> ApiResult<Submission> {
    let mut v = Validator::new(params);
    let fields = compose_fields(&mut v, false);
    let mailbox = v.id("mailbox");
    let is_draft = v.boolean("isDraft").unwrap_or(false);
    let upload_only = v.boolean("uploadOnly").unwrap_or(false);
    let replaces = message_ref(&mut v, "draft", None);
    let send_time = v.date("sendTime");
    let (envelope_from, envelope_to) = match v.raw("envelope") {
        None => (None, None),
        Some(Value::Object(envelope)) => {
            let from = envelope
                .get("from")
                .and_then(|f| one_address(&mut v, "envelope.from", f));
            let to = match envelope.get("to") {
                Some(Value::Array(items)) => Some(
                    items
                        .iter()
                        .enumerate()
                        .filter_map(|(i, a)| one_address(&mut v, &format!("envelope.to[{i}]"), a))
                        .collect(),
                ),
                Some(_) => {
                    v.error("envelope.to", "\"envelope.to\" must be an array");
                    None
                }
                None => None,
            };
            (from, to)
        }
        Some(_) => {
            v.error("envelope", "\"envelope\" must be of type object");
            (None, None)
        }
    };
    v.raw("meta");
    v.session();
    v.finish()?;
    Ok(Submission {
        fields,
        mailbox,
        is_draft,
        upload_only,
        replaces,
        send_time,
        envelope_from,
        envelope_to,
        idempotency_key,
    })
}

/// `POST /users/{user}/submit`: `message.id` and `mailbox` are false when the copy did not fit
/// into the quota (`overQuota`).
pub fn submitted_json(submitted: &Submitted) -> Value {
    let queue = submitted.queue_id.map_or(json!(false), |q| json!(q));
    let message = match &submitted.stored {
        Some(stored) => json!({
            "id": stored.uid,
            "mailbox": stored.mailbox,
            "size": stored.size,
            "queueId": queue,
        }),
        None => json!({
            "id": false,
            "mailbox": false,
            "queueId": queue,
            "overQuota": submitted.over_quota,
        }),
    };
    json!({ "success": true, "message": message })
}

/// Validates `POST .../messages/{message}/submit` (strict): `deleteFiles`, `sendTime`.
pub fn draft_submit(
    params: Map<String, Value>,
) -> ApiResult<(bool, Option<chrono::DateTime<chrono::Utc>>)> {
    let mut v = Validator::new(params);
    let delete_files = v.boolean("deleteFiles").unwrap_or(false);
    let send_time = v.date("sendTime");
    v.session();
    v.deny_unknown();
    v.finish()?;
    Ok((delete_files, send_time))
}

/// `POST .../messages/{message}/submit`.
pub fn sent_draft_json(sent: &SentDraft) -> Value {
    match (&sent.queue_id, &sent.stored) {
        (None, _) => json!({ "success": true }),
        (Some(queue), stored) => json!({
            "success": true,
            "queueId": queue,
            "message": stored_json(stored.as_ref()),
        }),
    }
}

fn stored_json(stored: Option<&Stored>) -> Value {
    match stored {
        Some(s) => json!({ "id": s.uid, "mailbox": s.mailbox, "size": s.size }),
        None => json!(false),
    }
}

/// Validates `POST .../messages/{message}/forward` (strict): `addresses`, and `target` (an
/// index into forward targets recorded at delivery, which Eider does not keep: ignored).
pub fn forward_request(params: Map<String, Value>) -> ApiResult<Vec<String>> {
    let mut v = Validator::new(params);
    v.integer("target", 1, 1000);
    let mut addresses = Vec::new();
    match v.raw("addresses") {
        None => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                match item.as_str().map(str::trim) {
                    Some(a) if names::is_address(a) => addresses.push(a.to_string()),
                    _ => v.error(
                        &format!("addresses[{i}]"),
                        format!("\"addresses[{i}]\" must be a valid email"),
                    ),
                }
            }
        }
        Some(_) => v.error("addresses", "\"addresses\" must be an array"),
    }
    v.session();
    v.deny_unknown();
    v.finish()?;
    Ok(addresses)
}

/// `POST .../messages/{message}/forward`.
pub fn forwarded_json(forwarded: &Forwarded) -> Value {
    let list: Vec<Value> = forwarded
        .recipients
        .iter()
        .enumerate()
        .map(|(i, a)| json!({ "seq": format!("{:03x}", i + 1), "type": "mail", "value": a }))
        .collect();
    let mut body = json!({ "success": true, "forwarded": list });
    if let Some(queue) = forwarded.queue_id {
        body["queueId"] = json!(queue);
    }
    body
}

/// `DELETE /users/{user}/outbound/{queueId}`.
pub fn cancelled_json(queue: &ObjectId, cancelled: &Cancelled) -> Value {
    json!({ "success": true, "queueId": queue, "deleted": cancelled.deleted })
}

// ---------------------------------------------------------------------------------------------
// Storage

/// Validates `POST /users/{user}/storage` (strict); `body` is a non-JSON request body.
pub fn new_file(params: Map<String, Value>, body: Option<Vec<u8>>) -> ApiResult<NewFile> {
    let mut v = Validator::new(params);
    let content = match body {
        Some(bytes) => Some(bytes),
        None => binary(&mut v, "content", MAX_FILE_SIZE, false),
    };
    let filename = v.string("filename", Str::max(255).trim());
    let content_type = v.string("contentType", Str::max(255).trim().lowercase());
    let encoding = v.string("encoding", Str::max(20).trim().lowercase());
    let cid = v.string("cid", Str::max(255).trim());
    v.session();
    let content = match (content, encoding.as_deref()) {
        (Some(bytes), Some("base64")) => {
            let clean: Vec<u8> = bytes
                .into_iter()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            match base64::engine::general_purpose::STANDARD.decode(&clean) {
                Ok(decoded) => Some(decoded),
                Err(_) => {
                    v.error("content", "\"content\" must be base64 encoded");
                    None
                }
            }
        }
        (content, None) => content,
        (_, Some(_)) => {
            v.error("encoding", "\"encoding\" must be [base64]");
            None
        }
    };
    if content.is_none() && !v.has_error("content") {
        v.error("content", "\"content\" is required");
    }
    if content.as_ref().is_some_and(|c| c.len() > MAX_FILE_SIZE) {
        v.error(
            "content",
            format!("\"content\" must be at most {MAX_FILE_SIZE} bytes"),
        );
    }
    v.deny_unknown();
    v.finish()?;
    Ok(NewFile {
        content: content.unwrap_or_default(),
        filename,
        content_type,
        cid,
    })
}

/// Validates `GET /users/{user}/storage` (unknown parameters are allowed).
pub fn list_files(params: Map<String, Value>) -> ApiResult<(Option<String>, PageRequest)> {
    let mut v = Validator::new(params);
    let query = v.string("query", Str::max(255));
    v.session();
    let page = page_request(&mut v);
    v.finish()?;
    Ok((query, page))
}

fn file_json(file: &StoredFile) -> Value {
    let mut out = json!({
        "id": file.id,
        "filename": file.filename,
        "contentType": file.content_type,
        "size": file.size,
        "created": iso(&file.created),
    });
    if let Some(cid) = &file.cid {
        out["cid"] = json!(cid);
    }
    out
}

/// `GET /users/{user}/storage`.
pub fn files_json(query: Option<&str>, page: &PageRequest, listing: &FileListing) -> Value {
    let mut body = json!({ "success": true });
    if let Some(q) = query {
        body["query"] = json!(q);
    }
    body["total"] = json!(listing.total);
    add_paging(&mut body, &listing.page, page);
    body["results"] = listing.page.items.iter().map(file_json).collect();
    body
}
