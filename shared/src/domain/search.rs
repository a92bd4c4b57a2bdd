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

use super::mailboxes::{self, StoredMailbox};
use super::messages::{Message, from_item, resolve_ids};
use super::paging::{Direction, PageRequest, PageResult, Positions, encode_cursor};
use super::{AppState, DomainError, DomainResult, keys, users};
use crate::id::ObjectId;
use crate::mail::parse::{Address, search_terms};
use crate::store::{Cursor, Index, Item, Key, Query};

/// What a search asks for, validated. Words are search terms ([`search_terms`]).
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
pub fn parse_q(q: &str, query: &mut SearchQuery) {
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
    /// Adds the words of the `query` parameter (echoed back in the answer).
    pub fn add_query(&mut self, text: String) {
        self.terms.extend(search_terms(&text));
        self.echo = Some(text);
    }

    /// Finishes a query built from parameters: the words of `from`, `to` and `subject` narrow
    /// the candidates through the index too; each word once.
    pub fn finish(mut self) -> SearchQuery {
        for text in [&self.from, &self.to, &self.subject].into_iter().flatten() {
            let words = search_terms(text);
            self.terms.extend(words);
        }
        let mut seen = BTreeSet::new();
        self.terms.retain(|t| seen.insert(t.clone()));
        self
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

    /// What the search's cursors are relative to: the driver's partition, so a cursor from
    /// the client can never point elsewhere.
    fn positions(&self) -> Positions<'_> {
        match self {
            Driver::Ids { pk } | Driver::Messages { pk } => Positions {
                index: None,
                pk: Some(pk),
            },
            Driver::IndexMessages { index, pk } => Positions {
                index: Some(*index),
                pk: Some(pk),
            },
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
) -> DomainResult<Vec<Hit>> {
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
            .collect::<DomainResult<Vec<_>>>()?,
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

/// Search results: a page of messages and how many match in all.
pub struct SearchResult {
    pub total: u64,
    pub page: PageResult<Message>,
}

/// One page of search results with WildDuck's paging flags, and the total.
async fn run(
    state: &AppState,
    user: &ObjectId,
    driver: &Driver,
    query: &SearchQuery,
    page: &PageRequest,
    newest_first: bool,
) -> DomainResult<SearchResult> {
    let boxes: BTreeMap<ObjectId, StoredMailbox> = mailboxes::load_all(state, user)
        .await?
        .into_iter()
        .map(|m| (m.mailbox.id, m))
        .collect();
    let table = state.table.as_ref();
    let positions = driver.positions();
    let (start, backwards) = page.start(table, positions).await?;
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
    let token = |hit: Option<&Hit>| {
        let cursor = hit.map(|h| h.cursor.clone());
        async move {
            match cursor {
                Some(c) => encode_cursor(table, positions, &c).await.map(Some),
                None => Ok(None),
            }
        }
    };
    let next = token(hits.last().filter(|_| has_next)).await?;
    let previous = token(hits.first().filter(|_| has_previous)).await?;
    let total = count(state, user, driver, query, &boxes).await?;
    Ok(SearchResult {
        total,
        page: PageResult {
            items: hits.into_iter().map(|h| h.message).collect(),
            next,
            previous,
        },
    })
}

/// Counts every match (the `total`: its cost grows with the driver partition; see
/// data-model.md).
async fn count(
    state: &AppState,
    user: &ObjectId,
    driver: &Driver,
    query: &SearchQuery,
    boxes: &BTreeMap<ObjectId, StoredMailbox>,
) -> DomainResult<u64> {
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

/// `GET /users/{user}/search`: newest first unless `ascending`.
pub async fn search(
    state: &AppState,
    user: &ObjectId,
    mut query: SearchQuery,
    ascending: bool,
    page: &PageRequest,
) -> DomainResult<SearchResult> {
    users::load(state, user).await?;
    if let Some(path) = &query.mailbox_path {
        let all = mailboxes::load_all(state, user).await?;
        let found = all
            .iter()
            .find(|m| m.mailbox.path.eq_ignore_ascii_case(path));
        match found {
            Some(m) => query.mailbox = Some(m.mailbox.id),
            None => return Err(DomainError::MailboxNotFound("This mailbox does not exist")),
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
            pk: keys::message_pointers_pk(user),
        }
    };
    run(state, user, &driver, &query, page, !ascending).await
}

/// `GET /users/{user}/flagged`: flagged messages outside Junk and Trash, newest first unless
/// `ascending`.
pub async fn flagged(
    state: &AppState,
    user: &ObjectId,
    ascending: bool,
    page: &PageRequest,
) -> DomainResult<SearchResult> {
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
    run(state, user, &driver, &query, page, !ascending).await
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
