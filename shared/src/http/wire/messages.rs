//! Messages on the wire: upload, listing, details, changes, the archive, search and the
//! flagged listing, validated into the domain's commands and answered in WildDuck's shape.

use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::domain::archive::{ArchiveListing, Recount};
use crate::domain::messages::Envelope;
use crate::domain::messages::read::MessageEvent;
use crate::domain::messages::{
    Archived, Details, FlagChanges, ListMessages, MAX_MESSAGE_SIZE, Message, MessageListing,
    MessageUpdate, Selector, StagedUpload, Stored, Updated, Upload,
};
use crate::domain::paging::PageRequest;
use crate::domain::search::{AnyOf, SearchQuery, SearchResult, UidSet, parse_q};
use crate::domain::search_apply::SearchAction;
use crate::http::error::{ApiError, ApiResult};
use crate::http::paging::{Paging, add_paging, page_request};
use crate::http::validate::{MAX_DATA_BYTES, Str, Validator, parse_date};
use crate::id::ObjectId;
use crate::mail::parse::search_terms;
use crate::mail::parse::{Address, AttachmentInfo};
use crate::time::iso;

// ---------------------------------------------------------------------------------------------
// Requests

/// Whether `text` starts with a header line (`Name: value`): then it is a message as text. A
/// base64 string never does (its alphabet has no `:`).
pub(crate) fn starts_with_header(text: &str) -> bool {
    let first = text.split(['\r', '\n']).next().unwrap_or("");
    match first.split_once(':') {
        Some((name, _)) => {
            !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
        }
        None => false,
    }
}

/// The bytes of `raw` as WildDuck reads it: a JSON string is the message itself (its UTF-8
/// bytes), a Node Buffer object (`{"type": "Buffer", "data": [...]}`) its bytes. A string
/// without a header line that is valid base64 is decoded, as earlier versions of this API
/// documented (WildDuck's own documentation still says base64).
fn raw_bytes(v: &mut Validator) -> Option<Vec<u8>> {
    binary(v, "raw", MAX_MESSAGE_SIZE, true)
}

/// A binary field as WildDuck's clients send it: a string (its UTF-8 bytes; with
/// `guess_base64`, a string with no header line that decodes as base64 is taken decoded, for
/// earlier callers of Eider), or a Node Buffer object `{"type": "Buffer", "data": [...]}`.
pub(crate) fn binary(
    v: &mut Validator,
    field: &str,
    max: usize,
    guess_base64: bool,
) -> Option<Vec<u8>> {
    let value = v.raw(field)?;
    match value {
        Value::String(text) if text.is_empty() => None,
        Value::String(text) if text.len() > max * 2 => {
            v.error(field, format!("\"{field}\" must be at most {max} bytes"));
            None
        }
        Value::String(text) => {
            if guess_base64 && !starts_with_header(&text) {
                // Large uploads: no copy of the text unless it has line breaks to remove.
                let decoded = if text.bytes().any(|b| b.is_ascii_whitespace()) {
                    let cleaned: Vec<u8> =
                        text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
                    base64::engine::general_purpose::STANDARD.decode(cleaned)
                } else {
                    base64::engine::general_purpose::STANDARD.decode(text.as_bytes())
                };
                if let Ok(raw) = decoded {
                    return Some(raw);
                }
            }
            Some(text.into_bytes())
        }
        Value::Object(buffer) if buffer.get("type").and_then(Value::as_str) == Some("Buffer") => {
            let bytes: Option<Vec<u8>> =
                buffer
                    .get("data")
                    .and_then(Value::as_array)
                    .and_then(|data| {
                        data.iter()
                            .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                            .collect()
                    });
            if bytes.is_none() {
                v.error(
                    field,
                    format!("\"{field}\" must be a buffer of byte values"),
                );
            }
            bytes
        }
        _ => {
            v.error(field, format!("\"{field}\" must be a string or a buffer"));
            None
        }
    }
}

/// Validates `POST .../messages`: `raw` (the message as text, a Buffer object, or base64), or
/// the request body as message/rfc822, plus `unseen` (default false: uploads are stored
/// seen), `flagged`, `draft`, `date`, `metaData`.
pub fn upload(
    params: Map<String, Value>,
    body_raw: Option<Bytes>,
    idempotency_key: Option<String>,
) -> ApiResult<Upload> {
    let mut v = Validator::new(params);
    let raw_given = raw_bytes(&mut v).map(Bytes::from);
    let unseen = v.boolean("unseen").unwrap_or(false);
    let flagged = v.boolean("flagged").unwrap_or(false);
    let draft = v.boolean("draft").unwrap_or(false);
    let date = match v.string("date", Str::max(64).trim()) {
        Some(text) => match parse_date(&text) {
            Some(d) => Some(d),
            None => {
                v.error("date", "\"date\" must be a valid date");
                None
            }
        },
        None => None,
    };
    let meta_data = v.json_object("metaData", MAX_DATA_BYTES);
    let staged = v.id("upload");
    v.session();
    let raw = match (body_raw, raw_given) {
        (Some(raw), _) => Some(raw),
        (None, Some(raw)) => Some(raw),
        (None, None) if staged.is_some() || v.has_error("raw") => None,
        (None, None) => {
            v.error("raw", "\"raw\" is required");
            None
        }
    };
    if let Some(raw) = &raw {
        if raw.is_empty() {
            v.error("raw", "\"raw\" is not allowed to be empty");
        } else if raw.len() > MAX_MESSAGE_SIZE {
            v.error(
                "raw",
                format!("\"raw\" must be at most {MAX_MESSAGE_SIZE} bytes"),
            );
        }
    }
    if let Some(key) = &idempotency_key
        && (key.is_empty() || key.len() > 255)
    {
        v.error(
            "Idempotency-Key",
            "\"Idempotency-Key\" must be 1 to 255 characters",
        );
    }
    v.deny_unknown();
    v.finish()?;
    Ok(Upload {
        raw: raw.unwrap_or_default(),
        staged,
        seen: !unseen,
        flagged,
        draft,
        date,
        meta_data,
        idempotency_key,
        source: "API",
        ..Default::default()
    })
}

/// Validates `GET .../messages` (unknown parameters are allowed, as in WildDuck); also
/// whether `metaData` is to be answered.
pub fn list_messages(params: Map<String, Value>) -> ApiResult<(ListMessages, bool)> {
    let mut v = Validator::new(params);
    let unseen_only = v.boolean("unseen").unwrap_or(false);
    let ascending = ascending(&mut v);
    let meta_data = v.boolean("metaData").unwrap_or(false);
    v.session();
    let page = page_request(&mut v);
    v.finish()?;
    Ok((
        ListMessages {
            unseen_only,
            ascending,
            page,
        },
        meta_data,
    ))
}

/// `order=asc` (oldest first); anything else is newest first.
fn ascending(v: &mut Validator) -> bool {
    v.string("order", Str::max(4).trim().lowercase()).as_deref() == Some("asc")
}

/// Validates `GET .../messages/{message}` (strict): whether to mark it seen.
pub fn get_message(params: Map<String, Value>) -> ApiResult<bool> {
    let mut v = Validator::new(params);
    let mark_seen = v.boolean("markAsSeen").unwrap_or(false);
    v.boolean("replaceCidLinks");
    v.session();
    v.deny_unknown();
    v.finish()?;
    Ok(mark_seen)
}

/// Validates `PUT .../messages/{message}` (strict): `message` is a UID, a list or a range.
pub fn message_update(message: &str, params: Map<String, Value>) -> ApiResult<MessageUpdate> {
    update_of(Some(message), params)
}

/// [`message_update`] where the selector may be missing (a body's `message`).
fn update_of(message: Option<&str>, params: Map<String, Value>) -> ApiResult<MessageUpdate> {
    let mut v = Validator::new(params);
    let selector = match message {
        None => {
            v.error("message", "\"message\" is required");
            None
        }
        Some(message) => {
            let selector = Selector::parse(message);
            if selector.is_none() {
                v.error("message", format!("\"message\" with value {message:?} fails to match the required pattern: /^\\d+(,\\d+)*$|^\\d+:(\\d+|\\*)$/"));
            }
            selector
        }
    };
    let move_to = v.id("moveTo");
    let expires = match v.raw("expires") {
        None => None,
        Some(Value::Bool(false)) => Some(None),
        Some(Value::String(s)) if s == "false" || s.is_empty() => Some(None),
        Some(Value::String(s)) => match parse_date(&s) {
            Some(d) => Some(Some(d)),
            None => {
                v.error("expires", "\"expires\" must be one of [date, boolean]");
                None
            }
        },
        Some(Value::Number(n)) => n
            .as_i64()
            .and_then(DateTime::from_timestamp_millis)
            .map(Some),
        Some(_) => {
            v.error("expires", "\"expires\" must be one of [date, boolean]");
            None
        }
    };
    let changes = FlagChanges {
        seen: v.boolean("seen"),
        flagged: v.boolean("flagged"),
        draft: v.boolean("draft"),
        deleted: v.boolean("deleted"),
        expires,
        meta_data: v.json_object("metaData", MAX_DATA_BYTES),
        ..Default::default()
    };
    // WildDuck's spam-training hint (a webhook there); taken, and changes nothing here.
    v.boolean("markHam");
    v.session();
    v.deny_unknown();
    v.finish()?;
    Ok(MessageUpdate {
        selector: selector.unwrap_or(Selector::List(Vec::new())),
        move_to,
        changes,
    })
}

/// Validates WildDuck's `PUT .../messages` (strict): as [`message_update`], with `message`
/// in the body.
pub fn bulk_message_update(mut params: Map<String, Value>) -> ApiResult<MessageUpdate> {
    let message = match params.remove("message") {
        Some(Value::String(s)) => Some(s.trim().to_string()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => {
            return Err(ApiError::invalid_field(
                "message",
                "\"message\" must be a string",
            ));
        }
        // Reported with the other fields' problems.
        None => None,
    };
    update_of(message.as_deref(), params)
}

/// Validates `DELETE .../messages` (strict): `async`, `skipArchive`.
pub fn empty_request(params: Map<String, Value>) -> ApiResult<(bool, bool)> {
    let mut v = Validator::new(params);
    let background = v.boolean("async").unwrap_or(false);
    let skip_archive = v.boolean("skipArchive").unwrap_or(false);
    v.session();
    v.deny_unknown();
    v.finish()?;
    Ok((background, skip_archive))
}

/// Validates a listing that takes `order` and paging (the archive, flagged messages).
pub fn ordered_page(params: Map<String, Value>) -> ApiResult<(bool, PageRequest)> {
    let mut v = Validator::new(params);
    let ascending = ascending(&mut v);
    v.session();
    let page = page_request(&mut v);
    v.finish()?;
    Ok((ascending, page))
}

/// Validates `POST /users/{user}/archived/{message}/restore` (strict): the target `mailbox`.
pub fn restore(params: Map<String, Value>) -> ApiResult<Option<ObjectId>> {
    let mut v = Validator::new(params);
    let target = v.id("mailbox");
    v.session();
    v.deny_unknown();
    v.finish()?;
    Ok(target)
}

/// The search parameters (unknown parameters are allowed, as in WildDuck).
fn search_query(v: &mut Validator) -> SearchQuery {
    let mut query = SearchQuery::default();
    if let Some(text) = v.string("query", Str::max(255).trim()) {
        query.add_query(text);
    }
    if let Some(q) = v.string("q", Str::max(1024).trim()) {
        parse_q(&q, &mut query);
    }
    query.mailbox = v.id("mailbox").or(query.mailbox);
    query.thread = v.id("thread").or(query.thread);
    for (field, slot) in [
        ("from", &mut query.from),
        ("to", &mut query.to),
        ("subject", &mut query.subject),
    ] {
        if let Some(text) = v.string(field, Str::max(255).trim()) {
            *slot = Some(text.to_lowercase());
        }
    }
    let date = |v: &mut Validator, field: &str| {
        let text = v.string(field, Str::max(64).trim())?;
        let parsed = parse_date(&text);
        if parsed.is_none() {
            v.error(field, format!("\"{field}\" must be a valid date"));
        }
        parsed
    };
    query.date_start = date(v, "datestart").or(query.date_start);
    query.date_end = date(v, "dateend").or(query.date_end);
    // 0 means "not set", as in WildDuck.
    query.min_size = v.count("minSize").filter(|n| *n > 0).or(query.min_size);
    query.max_size = v.count("maxSize").filter(|n| *n > 0).or(query.max_size);
    // `false` is the same as not given, as in WildDuck.
    let yes = |v: &mut Validator, field: &str| v.boolean(field).filter(|b| *b);
    query.attachments = yes(v, "attachments").or(query.attachments);
    query.flagged = yes(v, "flagged").or(query.flagged);
    query.unseen = yes(v, "unseen").or(query.unseen);
    query.seen = yes(v, "seen").or(query.seen);
    query.searchable = v.boolean("searchable").or(query.searchable);
    if let Some(text) = v.string("id", Str::max(1024).trim()) {
        match UidSet::parse(&text) {
            Some(set) => query.uids = Some(set),
            None => v.error(
                "id",
                format!("\"id\" with value {text:?} fails to match the required pattern"),
            ),
        }
    }
    match v.raw("or") {
        None => {}
        Some(Value::Object(any)) => {
            let text = |name: &str| {
                any.get(name)
                    .and_then(Value::as_str)
                    .map(|t| t.trim().to_lowercase())
                    .filter(|t| !t.is_empty() && t.len() <= 255)
            };
            query.any_of = Some(AnyOf {
                terms: text("query").map(|q| search_terms(&q)).unwrap_or_default(),
                from: text("from"),
                to: text("to"),
                subject: text("subject"),
            });
        }
        Some(_) => v.error("or", "\"or\" must be of type object"),
    }
    // Every word is required already (WildDuck's `useAndSearch`); the listing options below
    // are taken and answered the same way.
    for flag in [
        "useAndSearch",
        "includeHeaders",
        "metaData",
        "threadCounters",
        "includeHasDrafts",
        "collapseThreads",
    ] {
        v.boolean(flag);
    }
    query.finish()
}

/// Validates `POST /users/{user}/search`: the search's filters and a required `action`
/// (`moveTo`, `seen`, `flagged`, or `delete` alone).
pub fn search_action(params: Map<String, Value>) -> ApiResult<(SearchQuery, SearchAction)> {
    let mut v = Validator::new(params);
    let query = search_query(&mut v);
    v.session();
    let action = match v.raw("action") {
        Some(Value::Object(fields)) => {
            let mut action = SearchAction::default();
            for (key, value) in &fields {
                match (key.as_str(), value) {
                    ("moveTo", Value::String(id)) => match id.parse() {
                        Ok(id) => action.move_to = Some(id),
                        Err(_) => v.error(
                            "action.moveTo",
                            "\"action.moveTo\" must be 24 hex characters",
                        ),
                    },
                    ("seen", Value::Bool(b)) => action.seen = Some(*b),
                    ("flagged", Value::Bool(b)) => action.flagged = Some(*b),
                    ("delete", Value::Bool(b)) => action.delete = *b,
                    (key, _) => v.error(
                        &format!("action.{key}"),
                        format!("\"action.{key}\" is not allowed or has the wrong type"),
                    ),
                }
            }
            if action.delete
                && (action.move_to.is_some() || action.seen.is_some() || action.flagged.is_some())
            {
                v.error(
                    "action",
                    "When 'delete' is true, no other fields (moveTo, seen, flagged) can be set",
                );
            }
            Some(action)
        }
        Some(_) => {
            v.error("action", "\"action\" must be of type object");
            None
        }
        None => {
            v.error("action", "\"action\" is required");
            None
        }
    };
    v.finish()?;
    Ok((query, action.unwrap_or_default()))
}

/// Validates `GET /users/{user}/search`: the query, `order` and paging.
pub fn search(params: Map<String, Value>) -> ApiResult<(SearchQuery, bool, PageRequest)> {
    let mut v = Validator::new(params);
    let query = search_query(&mut v);
    let ascending = ascending(&mut v);
    v.session();
    let page = page_request(&mut v);
    v.finish()?;
    Ok((query, ascending, page))
}

// ---------------------------------------------------------------------------------------------
// Answers

/// The fields every listing shows (spec "List existing messages" plus WildDuck's extras),
/// serialized straight from the message: a JSON tree per entry was a fifth of a listing's time.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageSummary<'a> {
    id: u32,
    mailbox: &'a ObjectId,
    thread: &'a ObjectId,
    from: &'a Option<Address>,
    // Always in listings; in a message's details only when the header exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<&'a [Address]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cc: Option<&'a [Address]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bcc: Option<&'a [Address]>,
    message_id: &'a str,
    subject: &'a str,
    date: String,
    idate: String,
    intro: &'a str,
    /// Whether it has attachments; in a message's details their list replaces it.
    #[serde(skip_serializing_if = "Option::is_none")]
    attachments: Option<bool>,
    size: u64,
    seen: bool,
    deleted: bool,
    flagged: bool,
    draft: bool,
    answered: bool,
    forwarded: bool,
    references: &'a [String],
    encrypted: bool,
    /// The stored metadata object, when the listing asks for it (`metaData=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    meta_data: Option<Value>,
}

impl<'a> MessageSummary<'a> {
    pub fn new(message: &'a Message) -> Self {
        MessageSummary {
            id: message.uid,
            mailbox: &message.mailbox,
            thread: &message.thread,
            from: &message.from,
            to: Some(&message.to),
            cc: Some(&message.cc),
            bcc: Some(&message.bcc),
            message_id: &message.message_id,
            subject: &message.subject,
            date: iso(&message.date),
            idate: iso(&message.idate),
            intro: &message.intro,
            attachments: Some(message.has_attachments),
            size: message.size,
            seen: message.seen,
            deleted: message.deleted,
            flagged: message.flagged,
            draft: message.draft,
            answered: message.answered && !message.forwarded,
            forwarded: message.forwarded,
            references: &message.references,
            encrypted: message.encrypted,
            meta_data: None,
        }
    }

    /// With `metaData` (`null` when the stored text is not JSON).
    fn with_meta_data(mut self, message: &Message) -> Self {
        if let Some(m) = &message.meta_data {
            self.meta_data = Some(serde_json::from_str(m).unwrap_or(Value::Null));
        }
        self
    }
}

/// [`MessageSummary`] as a JSON object, for answers that add fields to it.
pub fn message_json(message: &Message) -> Value {
    serde_json::to_value(MessageSummary::new(message)).unwrap_or_else(|_| json!({}))
}

/// `POST .../messages`.
pub fn stored_json(stored: &Stored) -> Value {
    json!({
        "success": true,
        "message": { "id": stored.uid, "mailbox": stored.mailbox, "size": stored.size },
    })
}

/// `GET .../messages`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageList<'a> {
    success: bool,
    total: i64,
    #[serde(flatten)]
    paging: Paging<'a>,
    special_use: &'a Option<String>,
    results: Vec<MessageSummary<'a>>,
}

/// `GET .../messages`.
pub fn list_json<'a>(
    request: &ListMessages,
    meta_data: bool,
    listing: &'a MessageListing,
) -> MessageList<'a> {
    let results = listing
        .page
        .items
        .iter()
        .map(|message| {
            let entry = MessageSummary::new(message);
            if meta_data {
                entry.with_meta_data(message)
            } else {
                entry
            }
        })
        .collect();
    MessageList {
        success: true,
        total: listing.total,
        paging: Paging::new(&listing.page, &request.page),
        special_use: &listing.special_use,
        results,
    }
}

/// The detailed shape of a message (`GET .../messages/{message}` and archived messages):
/// listing fields plus text and HTML parsed from the stored source.
/// As WildDuck answers them: `size` is the stored (still transfer-encoded) size, `sizeKb`
/// the decoded one in KiB.
fn attachment_json(a: &AttachmentInfo) -> Value {
    json!({
        "id": a.id,
        "filename": a.filename,
        "contentType": a.content_type,
        "disposition": a.disposition,
        "transferEncoding": a.transfer_encoding,
        "related": a.related,
        "cid": a.cid,
        "size": a.body_end.saturating_sub(a.body_start),
        "sizeKb": a.size_kb,
        "hash": a.hash,
        "fileContentHash": a.file_content_hash,
    })
}

/// The SMTP envelope of a message: MAIL FROM and RCPT TO for deliveries, empty for uploads.
fn envelope_json(envelope: Option<&Envelope>) -> Value {
    match envelope {
        Some(e) => {
            // WildDuck's `formatted`: the address without its +label and local-part dots.
            let formatted = crate::domain::names::normalize_address(&e.to, true)
                .map(|a| a.addrview)
                .unwrap_or_else(|_| e.to.to_lowercase());
            json!({
                "from": e.from,
                "rcpt": [{ "value": e.to, "formatted": formatted }],
            })
        }
        None => json!({ "from": "", "rcpt": [] }),
    }
}

/// The detailed shape of a message (`GET .../messages/{message}`, archived messages),
/// serialized straight from the details: building a JSON tree first copied every field and
/// cost a B-tree insert per key.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageDetails<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    success: Option<bool>,
    #[serde(flatten)]
    summary: MessageSummary<'a>,
    user: &'a ObjectId,
    envelope: Value,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    outbound: &'a [ObjectId],
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to: Option<&'a [Address]>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    html: &'a [String],
    text: &'a str,
    attachments: Vec<Value>,
    has_attachments: bool,
    meta_data: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    list: Option<Value>,
}

impl<'a> MessageDetails<'a> {
    pub fn new(details: &'a Details) -> Self {
        let message = &details.message;
        // Address lists only when the header exists, as WildDuck (clients show empty rows else).
        let present = |list: &'a [Address]| (!list.is_empty()).then_some(list);
        let mut summary = MessageSummary::new(message);
        summary.to = present(&message.to);
        summary.cc = present(&message.cc);
        summary.bcc = present(&message.bcc);
        summary.attachments = None;
        MessageDetails {
            success: None,
            summary,
            user: &message.user,
            envelope: envelope_json(message.envelope.as_ref()),
            outbound: &message.outbound,
            reply_to: present(&message.reply_to),
            html: &details.html,
            text: &details.text,
            attachments: message.attachments.iter().map(attachment_json).collect(),
            has_attachments: message.has_attachments,
            meta_data: message
                .meta_data
                .as_deref()
                .and_then(|m| serde_json::from_str(m).ok())
                .unwrap_or_else(|| json!({})),
            expires: message.expires.as_ref().map(iso),
            list: (message.list_id.is_some() || message.list_unsubscribe.is_some())
                .then(|| json!({ "id": message.list_id, "unsubscribe": message.list_unsubscribe })),
        }
    }

    /// The answer of `GET .../messages/{message}`: the details with `success`.
    pub fn answer(mut self) -> Self {
        self.success = Some(true);
        self
    }
}

/// [`MessageDetails`] as a JSON object, for answers that add fields to it.
pub fn details_json(details: &Details) -> Value {
    serde_json::to_value(MessageDetails::new(details)).unwrap_or_else(|_| json!({}))
}

/// `PUT .../messages/{message}`.
pub fn updated_json(updated: &Updated) -> Value {
    match updated {
        Updated::Flags(n) => json!({ "success": true, "updated": n }),
        Updated::Moved { mailbox, uids } => {
            let pairs: Vec<Value> = uids.iter().map(|(a, b)| json!([a, b])).collect();
            json!({ "success": true, "mailbox": mailbox, "id": pairs })
        }
    }
}

/// `GET .../messages/{message}/events`.
pub fn events_json(id: &ObjectId, events: &[MessageEvent]) -> Value {
    let events: Vec<Value> = events
        .iter()
        .map(|e| {
            let mut fields = e.fields.clone();
            fields.insert("id".into(), json!(e.id));
            Value::Object(fields)
        })
        .collect();
    json!({ "success": true, "id": id, "events": events })
}

/// `POST /users/{user}/uploads`.
pub fn staged_upload_json(upload: &StagedUpload) -> Value {
    json!({
        "success": true,
        "id": upload.id,
        "url": upload.url,
        "method": "PUT",
        "expires": iso(&upload.expires),
        "maxSize": MAX_MESSAGE_SIZE,
    })
}

/// An archived message as listed: a listing entry whose `id` is the hex message id.
fn archived_entry(archived: &Archived, mut entry: Value) -> Value {
    entry["id"] = json!(archived.message.id);
    entry["uid"] = json!(archived.message.uid);
    entry["archived"] = json!(iso(&archived.archived));
    entry["expires"] = json!(iso(&archived.purge_at));
    entry
}

/// `GET /users/{user}/archived`.
/// Validates `POST /users/{user}/archived/restore` (strict): `start` and `end`, required.
pub fn restore_range(params: Map<String, Value>) -> ApiResult<(DateTime<Utc>, DateTime<Utc>)> {
    let mut v = Validator::new(params);
    let start = v.date("start");
    let end = v.date("end");
    for (field, value) in [("start", &start), ("end", &end)] {
        if value.is_none() && !v.has_error(field) {
            v.error(field, format!("\"{field}\" is required"));
        }
    }
    v.session();
    v.deny_unknown();
    v.finish()?;
    Ok((start.unwrap_or_default(), end.unwrap_or_default()))
}

pub fn archive_json(page: &PageRequest, listing: &ArchiveListing) -> Value {
    let results: Vec<Value> = listing
        .page
        .items
        .iter()
        .map(|a| archived_entry(a, message_json(&a.message)))
        .collect();
    let mut body = json!({ "success": true, "total": listing.total });
    add_paging(&mut body, &listing.page, page);
    body["results"] = Value::Array(results);
    body
}

/// `GET /users/{user}/archived/{message}`.
pub fn archived_json(archived: &Archived, details: Details) -> Value {
    let mut body = archived_entry(archived, details_json(&details));
    body["success"] = json!(true);
    body
}

/// `POST /users/{user}/archived/{message}/restore`: the new UID, as `uid` (the spec) and `id`
/// (WildDuck).
pub fn restored_json(message: &Message) -> Value {
    json!({
        "success": true,
        "mailbox": message.mailbox,
        "uid": message.uid,
        "id": message.uid,
    })
}

/// `POST /users/{user}/quota/reset`.
pub fn recount_json(recount: &Recount) -> Value {
    json!({
        "success": true,
        "storageUsed": recount.storage_used,
        "previousStorageUsed": recount.previous,
    })
}

/// `GET /users/{user}/search` and `/flagged`.
pub fn search_json(
    page: &PageRequest,
    result: &SearchResult,
    query: Option<&SearchQuery>,
) -> Value {
    let mut body = json!({ "success": true, "total": result.total });
    add_paging(&mut body, &result.page, page);
    body["results"] = result.page.items.iter().map(message_json).collect();
    if let Some(echo) = query.and_then(|q| q.echo.as_ref()) {
        body["query"] = json!(echo);
    }
    body
}
