//! Account-wide message search (`GET /users/{user}/search`) and the flagged listing
//! (`GET /users/{user}/flagged`), served from indexes rather than by reading every message.
//!
//! Every search walks one "driver" partition in message-id order (newest first by default)
//! and checks each candidate against the rest of the query:
//!
//! | the query has | driver |
//! |---|---|
//! | words (`query`, `q`, `from`, `to`, `subject`) | the search-term partition of its first word (`TERM#<user>#<word>`) |
//! | `flagged=true` | the flagged index (gsi1 `FLAGGED#<user>`) |
//! | `mailbox` | that mailbox's message partition |
//! | nothing selective | the user's message pointers (`MSGID#<user>`): every live message |
//!
//! Other words are checked by key (one batched read per page), the remaining conditions on the
//! message itself. Trash and Junk are skipped unless `mailbox` names one of them or
//! `searchable=false` is given (the spec's semantics).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::mailboxes::{self, StoredMailbox};
use super::messages::{Message, from_item, parse_date, resolve_ids};
use super::{keys, users};
use crate::error::{ApiError, ApiResult};
use crate::http::AppState;
use crate::http::paging::{Direction, PageRequest, encode_cursor};
use crate::http::validate::{Str, Validator};
use crate::id::ObjectId;
use crate::mail::parse::{Address, search_terms};
use crate::store::{Cursor, Index, Item, Key, Query};

/// What a search asks for, validated.
#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    /// Words every message must contain.
    pub terms: Vec<String>,
    /// Words no message may contain.
    pub excluded: Vec<String>,
    pub mailbox: Option<ObjectId>,
    /// `in:<path>` of `q`, resolved to a mailbox once the user's mailboxes are read.
    pub mailbox_path: Option<String>,
    pub thread: Option<ObjectId>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub subject: Option<String>,
    pub date_start: Option<DateTime<Utc>>,
    pub date_end: Option<DateTime<Utc>>,
    pub min_size: Option<u64>,
    pub max_size: Option<u64>,
    pub attachments: Option<bool>,
    pub flagged: Option<bool>,
    pub unseen: Option<bool>,
    pub searchable: Option<bool>,
    /// The `query` parameter, echoed back.
    pub echo: Option<String>,
}

/// Adds the words of `q`'s small Gmail-like language: plain words and `"phrases"` (each word
/// must match), `-word` (must not), `from:`, `to:`, `subject:`, `in:<mailbox path>`,
/// `has:attachment`, `is:flagged`, `is:unread`, `is:read`.
fn parse_q(q: &str, query: &mut SearchQuery) {
    let mut rest = q;
    while !rest.trim().is_empty() {
        rest = rest.trim_start();
        let (token, tail) = if let Some(stripped) = rest.strip_prefix('"') {
            match stripped.find('"') {
                Some(end) => (&stripped[..end], &stripped[end + 1..]),
                None => (stripped, ""),
            }
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        rest = tail;
        let lower = token.to_lowercase();
        if let Some((field, value)) = lower.split_once(':')
            && !value.is_empty()
        {
            match field {
                "from" => query.from = Some(value.to_string()),
                "to" => query.to = Some(value.to_string()),
                "subject" => query.subject = Some(value.to_string()),
                "in" => query.mailbox_path = Some(token[3..].to_string()),
                "has" if value.starts_with("attachment") => query.attachments = Some(true),
                "is" if value == "flagged" || value == "starred" => query.flagged = Some(true),
                "is" if value == "unread" => query.unseen = Some(true),
                "is" if value == "read" => query.unseen = Some(false),
                _ => query.terms.extend(search_terms(token)),
            }
            continue;
        }
        if let Some(negated) = token.strip_prefix('-').filter(|t| !t.is_empty()) {
            query.excluded.extend(search_terms(negated));
        } else {
            query.terms.extend(search_terms(token));
        }
    }
}

impl SearchQuery {
    /// Validates the search parameters (unknown parameters are allowed, as in WildDuck).
    pub fn parse(v: &mut Validator) -> SearchQuery {
        let mut query = SearchQuery::default();
        if let Some(text) = v.string("query", Str::max(255).trim()) {
            query.terms.extend(search_terms(&text));
            query.echo = Some(text);
        }
        if let Some(q) = v.string("q", Str::max(1024).trim()) {
            parse_q(&q, &mut query);
        }
        query.mailbox = v.id("mailbox");
        query.thread = v.id("thread");
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
        query.date_start = date(v, "datestart");
        query.date_end = date(v, "dateend");
        query.min_size = v.count("minSize");
        query.max_size = v.count("maxSize");
        query.attachments = v.boolean("attachments").or(query.attachments);
        query.flagged = v.boolean("flagged").or(query.flagged);
        query.unseen = v.boolean("unseen").or(query.unseen);
        query.searchable = v.boolean("searchable");
        // Words of from/to/subject narrow the candidates through the index too.
        for text in [&query.from, &query.to, &query.subject]
            .into_iter()
            .flatten()
        {
            let words = search_terms(text);
            query.terms.extend(words);
        }
        let mut seen = BTreeSet::new();
        query.terms.retain(|t| seen.insert(t.clone()));
        query
    }

    /// Whether a message (already known to contain every term) matches the rest.
    fn matches(&self, message: &Message, mailbox: Option<&StoredMailbox>) -> bool {
        let Some(mailbox) = mailbox else { return false };
        let contains = |haystack: &str, needle: &str| haystack.to_lowercase().contains(needle);
        let address_matches = |addresses: &[&Address], needle: &str| {
            addresses
                .iter()
                .any(|a| contains(&a.address, needle) || contains(&a.name, needle))
        };
        if self.mailbox.is_some_and(|m| m != message.mailbox) {
            return false;
        }
        if self.mailbox.is_none() && self.searchable != Some(false) && mailbox.is_junk_or_trash() {
            return false;
        }
        if self.thread.is_some_and(|t| t != message.thread) {
            return false;
        }
        if let Some(from) = &self.from
            && !address_matches(&message.from.iter().collect::<Vec<_>>(), from)
        {
            return false;
        }
        if let Some(to) = &self.to
            && !address_matches(
                &message
                    .to
                    .iter()
                    .chain(message.cc.iter())
                    .collect::<Vec<_>>(),
                to,
            )
        {
            return false;
        }
        if let Some(subject) = &self.subject
            && !contains(&message.subject, subject)
        {
            return false;
        }
        self.date_start.is_none_or(|d| message.idate >= d)
            && self.date_end.is_none_or(|d| message.idate <= d)
            && self.min_size.is_none_or(|s| message.size >= s)
            && self.max_size.is_none_or(|s| message.size <= s)
            && self
                .attachments
                .is_none_or(|a| message.has_attachments == a)
            && self.flagged.is_none_or(|f| message.flagged == f)
            && self
                .unseen
                .is_none_or(|u| message.seen != u && (!u || !message.deleted))
            && (self.searchable != Some(true) || !message.deleted)
    }
}

/// The partition a search walks, and how its items lead to messages.
#[derive(Debug, Clone)]
enum Driver {
    /// Items whose sort key is a message id (terms, pointers).
    Ids { pk: String },
    /// Message items in an index partition (flagged).
    IndexMessages { index: Index, pk: String },
    /// Message items of one mailbox.
    Messages { pk: String },
}

impl Driver {
    fn query(&self) -> Query {
        match self {
            Driver::Ids { pk } | Driver::Messages { pk } => Query::table(pk.clone()),
            Driver::IndexMessages { index, pk } => Query::index(*index, pk.clone()),
        }
    }

    fn index(&self) -> Option<Index> {
        match self {
            Driver::IndexMessages { index, .. } => Some(*index),
            _ => None,
        }
    }

    /// A cursor from the client must point into this partition.
    fn owns(&self, cursor: &Cursor) -> bool {
        match self {
            Driver::Ids { pk } | Driver::Messages { pk } => {
                cursor.pk == *pk && cursor.index.is_none()
            }
            Driver::IndexMessages { pk, .. } => {
                cursor.index.as_ref().is_some_and(|(ipk, _)| ipk == pk)
            }
        }
    }
}

/// A candidate: the driver item it came from (for cursors) and its message.
struct Hit {
    cursor: Cursor,
    message: Message,
}

/// Reads one batch of the driver and turns it into messages that match.
async fn matching(
    state: &AppState,
    user: &ObjectId,
    driver: &Driver,
    query: &SearchQuery,
    boxes: &BTreeMap<ObjectId, StoredMailbox>,
    items: Vec<Item>,
) -> ApiResult<Vec<Hit>> {
    let index = driver.index();
    let mut messages: Vec<(Cursor, Message)> = match driver {
        Driver::Ids { .. } => {
            let ids: Vec<ObjectId> = items.iter().filter_map(|i| i.sk.parse().ok()).collect();
            let mut by_id: BTreeMap<ObjectId, Message> = resolve_ids(state, user, &ids)
                .await?
                .into_iter()
                .map(|m| (m.id, m))
                .collect();
            items
                .iter()
                .filter_map(|i| {
                    let id: ObjectId = i.sk.parse().ok()?;
                    Some((Cursor::of(i, index), by_id.remove(&id)?))
                })
                .collect()
        }
        _ => items
            .iter()
            .map(|i| Ok((Cursor::of(i, index), from_item(i)?)))
            .collect::<ApiResult<Vec<_>>>()?,
    };
    // Every other word must be indexed for the message, no excluded word may be.
    let first_term = match driver {
        Driver::Ids { pk } => query
            .terms
            .iter()
            .position(|t| *pk == keys::search_term_pk(user, t)),
        _ => None,
    };
    let check_terms: Vec<&String> = query
        .terms
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != first_term)
        .map(|(_, t)| t)
        .collect();
    if !check_terms.is_empty() || !query.excluded.is_empty() {
        let mut wanted: Vec<Key> = Vec::new();
        for (_, m) in &messages {
            for t in check_terms.iter().copied().chain(query.excluded.iter()) {
                wanted.push(keys::search_term(user, t, &m.id));
            }
        }
        let mut present = BTreeSet::new();
        for chunk in wanted.chunks(100) {
            for item in state.table.get_many(chunk).await? {
                present.insert((item.pk, item.sk));
            }
        }
        messages.retain(|(_, m)| {
            let has = |t: &String| {
                let key = keys::search_term(user, t, &m.id);
                present.contains(&(key.pk, key.sk))
            };
            check_terms.iter().all(|t| has(t)) && !query.excluded.iter().any(has)
        });
    }
    Ok(messages
        .into_iter()
        .filter(|(_, m)| query.matches(m, boxes.get(&m.mailbox)))
        .map(|(cursor, message)| Hit { cursor, message })
        .collect())
}

/// One page of search results with WildDuck's paging flags, and optionally the total.
async fn run(
    state: &AppState,
    user: &ObjectId,
    driver: &Driver,
    query: &SearchQuery,
    page: &PageRequest,
    newest_first: bool,
    with_total: bool,
) -> ApiResult<(Vec<Hit>, Option<Cursor>, Option<Cursor>, Option<u64>)> {
    let boxes: BTreeMap<ObjectId, StoredMailbox> = mailboxes::load_all(state, user)
        .await?
        .into_iter()
        .map(|m| (m.mailbox.id, m))
        .collect();
    let (start, backwards) = match &page.direction {
        Direction::First => (None, false),
        Direction::After(c) => (Some(c.clone()), false),
        Direction::Before(c) => (Some(c.clone()), true),
    };
    if start.as_ref().is_some_and(|c| !driver.owns(c)) {
        return Err(page.invalid_cursor());
    }
    let forward = newest_first == backwards;
    let want = page.limit + 1;
    let mut hits = Vec::new();
    let mut after = start;
    loop {
        let q = driver
            .query()
            .forward(forward)
            .limit(100)
            .start_after(after.take());
        let batch = state.table.query(&q).await?;
        let found = matching(state, user, driver, query, &boxes, batch.items).await?;
        for hit in found {
            if hits.len() < want {
                hits.push(hit);
            }
        }
        match batch.next {
            Some(next) if hits.len() < want => after = Some(next),
            _ => break,
        }
    }
    let more = hits.len() > page.limit;
    hits.truncate(page.limit);
    if backwards {
        hits.reverse();
    }
    let (has_next, has_previous) = match page.direction {
        Direction::First => (more, false),
        Direction::After(_) => (more, true),
        Direction::Before(_) => (true, more),
    };
    let next = hits.last().filter(|_| has_next).map(|h| h.cursor.clone());
    let previous = hits
        .first()
        .filter(|_| has_previous)
        .map(|h| h.cursor.clone());
    let total = if with_total {
        Some(count(state, user, driver, query, &boxes).await?)
    } else {
        None
    };
    Ok((hits, next, previous, total))
}

/// Counts every match (the `total`: its cost grows with the driver partition; see
/// data-model.md).
async fn count(
    state: &AppState,
    user: &ObjectId,
    driver: &Driver,
    query: &SearchQuery,
    boxes: &BTreeMap<ObjectId, StoredMailbox>,
) -> ApiResult<u64> {
    let mut total = 0;
    let mut after = None;
    loop {
        let batch = state
            .table
            .query(&driver.query().limit(100).start_after(after.take()))
            .await?;
        total += matching(state, user, driver, query, boxes, batch.items)
            .await?
            .len() as u64;
        match batch.next {
            Some(next) => after = Some(next),
            None => return Ok(total),
        }
    }
}

fn page_body(
    hits: &[Hit],
    next: Option<Cursor>,
    previous: Option<Cursor>,
    total: u64,
    page: &PageRequest,
) -> Value {
    let cursor = |c: Option<Cursor>| c.map(|c| json!(encode_cursor(&c))).unwrap_or(json!(false));
    let shown_page = if previous.is_some() {
        page.page.max(1)
    } else {
        1
    };
    json!({
        "success": true,
        "total": total,
        "page": shown_page,
        "previousCursor": cursor(previous),
        "nextCursor": cursor(next),
        "results": hits.iter().map(|h| h.message.list_json()).collect::<Vec<_>>(),
    })
}

/// `GET /users/{user}/search`.
pub async fn search(
    state: &AppState,
    user: &ObjectId,
    params: Map<String, Value>,
) -> ApiResult<Value> {
    let mut v = Validator::new(params);
    let mut query = SearchQuery::parse(&mut v);
    let order = v.string("order", Str::max(4).trim().lowercase());
    v.session();
    let page = PageRequest::from_params(&mut v);
    v.finish()?;
    users::load(state, user).await?;
    if let Some(path) = &query.mailbox_path {
        let all = mailboxes::load_all(state, user).await?;
        let found = all
            .iter()
            .find(|m| m.mailbox.path.eq_ignore_ascii_case(path));
        match found {
            Some(m) => query.mailbox = Some(m.mailbox.id),
            None => {
                return Err(ApiError::not_found(
                    "NoSuchMailbox",
                    "This mailbox does not exist",
                ));
            }
        }
    }
    let driver = if let Some(term) = query.terms.first() {
        Driver::Ids {
            pk: keys::search_term_pk(user, term),
        }
    } else if query.flagged == Some(true)
        && query.searchable != Some(false)
        && query.mailbox.is_none()
    {
        Driver::IndexMessages {
            index: Index::Gsi1,
            pk: keys::flagged_pk(user),
        }
    } else if let Some(mailbox) = query.mailbox {
        Driver::Messages {
            pk: keys::messages_pk(user, &mailbox),
        }
    } else {
        Driver::Ids {
            pk: keys::message_pointer(user, &ObjectId::default()).pk,
        }
    };
    let newest_first = order.as_deref() != Some("asc");
    let (hits, next, previous, total) =
        run(state, user, &driver, &query, &page, newest_first, true).await?;
    let mut body = page_body(&hits, next, previous, total.unwrap_or_default(), &page);
    if let Some(echo) = &query.echo {
        body["query"] = json!(echo);
    }
    Ok(body)
}

/// `GET /users/{user}/flagged`: flagged messages outside Junk and Trash, newest first.
pub async fn flagged(
    state: &AppState,
    user: &ObjectId,
    params: Map<String, Value>,
) -> ApiResult<Value> {
    let mut v = Validator::new(params);
    let order = v.string("order", Str::max(4).trim().lowercase());
    v.session();
    let page = PageRequest::from_params(&mut v);
    v.finish()?;
    users::load(state, user).await?;
    let query = SearchQuery {
        flagged: Some(true),
        searchable: Some(true),
        ..Default::default()
    };
    let driver = Driver::IndexMessages {
        index: Index::Gsi1,
        pk: keys::flagged_pk(user),
    };
    let newest_first = order.as_deref() != Some("asc");
    let (hits, next, previous, total) =
        run(state, user, &driver, &query, &page, newest_first, true).await?;
    Ok(page_body(
        &hits,
        next,
        previous,
        total.unwrap_or_default(),
        &page,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q_language_splits_fields_words_and_negations() {
        let mut query = SearchQuery::default();
        parse_q(
            "from:alice@example.com \"quarterly report\" -draft in:Work has:attachment is:unread",
            &mut query,
        );
        assert_eq!(query.from.as_deref(), Some("alice@example.com"));
        assert_eq!(query.mailbox_path.as_deref(), Some("Work"));
        assert_eq!(query.attachments, Some(true));
        assert_eq!(query.unseen, Some(true));
        assert!(query.terms.contains(&"quarterly".to_string()));
        assert!(query.terms.contains(&"report".to_string()));
        assert_eq!(query.excluded, vec!["draft".to_string()]);
    }
}
