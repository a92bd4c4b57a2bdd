//! Account-wide message search (`GET /users/{user}/search`) and the flagged listing
//! (`GET /users/{user}/flagged`), served from indexes rather than by reading every message.
//!
//! With a full-text index ([`StateParts::text_index`], the local server) a search with words
//! asks the index for its matches in id order, a page at a time, and checks each against the
//! table (flags and substrings live there). When the index decides every condition, `total` is
//! its count; otherwise the candidates are checked one by one.
//!
//! Without one (Lambda today), every search walks one "driver" partition in message-id order (newest first by default)
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
use serde::{Deserialize, Serialize};

use super::mailboxes::{self, StoredMailbox};
use super::messages::{Message, Selector, from_item, resolve_ids};
use super::paging::{Direction, PageRequest, PageResult, Positions, encode_cursor};
use super::{AppState, DomainError, DomainResult, SearchWrites, keys, users};
use crate::id::ObjectId;
use crate::mail::parse::{Address, search_terms};
use crate::store::text_index::{IndexPage, TextIndex, TextQuery};
use crate::store::{Cursor, Index, Item, Key, Query};

/// What a search asks for, validated. Words are search terms ([`search_terms`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchQuery {
    /// Words every message must contain.
    pub terms: Vec<String>,
    /// Words no message may contain.
    pub excluded: Vec<String>,
    /// `word*` of `q`: a word starting so (the full-text index; term items match it whole).
    #[serde(default)]
    pub prefixes: Vec<String>,
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
    /// `seen=true`: seen and not `\Deleted` (`unseen` wins when both are given).
    pub seen: Option<bool>,
    pub searchable: Option<bool>,
    /// `cc:` and `bcc:` of `q`: a substring of that header's names and addresses.
    pub cc: Option<String>,
    pub bcc: Option<String>,
    /// `to:` of `q` matches To, Cc and Bcc (the `to` parameter only To and Cc).
    #[serde(default)]
    pub to_includes_bcc: bool,
    /// UIDs (`id`, with `mailbox`; `id:` of `q`).
    pub uids: Option<UidSet>,
    /// `or`: at least one of these matches.
    pub any_of: Option<AnyOf>,
    /// A `q` whose parts could not all be understood to match something (an unknown `in:`
    /// folder): nothing matches, as in WildDuck.
    #[serde(default)]
    pub matches_nothing: bool,
    /// The `query` parameter, echoed back.
    pub echo: Option<String>,
}

/// A UID set: a list, or a range (`a:b`, `a:*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UidSet {
    List(Vec<u32>),
    Range(u32, Option<u32>),
}

impl UidSet {
    pub fn parse(text: &str) -> Option<UidSet> {
        match Selector::parse(text)? {
            Selector::List(l) => Some(UidSet::List(l)),
            Selector::Range(a, b) => Some(UidSet::Range(a, b)),
        }
    }

    fn contains(&self, uid: u32) -> bool {
        match self {
            UidSet::List(l) => l.contains(&uid),
            UidSet::Range(a, b) => uid >= *a && b.is_none_or(|b| uid <= b),
        }
    }
}

/// The `or` parameter: words (any of them), or a substring of From, To/Cc or the subject.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AnyOf {
    pub terms: Vec<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub subject: Option<String>,
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
            let yes = ["true", "1", "yes", "y", "on"].contains(&value);
            let date = || crate::time::parse_date(value);
            match field {
                "from" => query.from = Some(value.to_string()),
                "to" => {
                    query.to = Some(value.to_string());
                    query.to_includes_bcc = true;
                }
                "cc" => query.cc = Some(value.to_string()),
                "bcc" => query.bcc = Some(value.to_string()),
                "subject" => query.subject = Some(value.to_string()),
                "in" => {
                    // The path as written (not lowercased).
                    let path = token.split_once(':').map_or("", |(_, p)| p);
                    query.mailbox_path = Some(path.to_string());
                }
                "mailbox" => {
                    if let Ok(id) = value.parse() {
                        query.mailbox = Some(id);
                    }
                }
                "thread" => {
                    if let Ok(id) = value.parse() {
                        query.thread = Some(id);
                    }
                }
                "id" => query.uids = UidSet::parse(value),
                "datestart" | "after" | "newer" => query.date_start = date(),
                "dateend" | "before" | "older" => query.date_end = date(),
                "minsize" => query.min_size = value.parse().ok(),
                "maxsize" => query.max_size = value.parse().ok(),
                "has" if value.starts_with("attachment") => query.attachments = Some(true),
                "attachments" if yes => query.attachments = Some(true),
                "is" if value == "flagged" || value == "starred" => query.flagged = Some(true),
                "flagged" if yes => query.flagged = Some(true),
                "is" if value == "unread" => query.unseen = Some(true),
                "unseen" if yes => query.unseen = Some(true),
                "is" if value == "read" => query.seen = Some(true),
                "seen" if yes => query.seen = Some(true),
                "searchable" if yes => query.searchable = Some(true),
                // Unknown keywords and values that are not "yes" are dropped (WildDuck's).
                _ => {}
            }
            continue;
        }
        if let Some(negated) = token.strip_prefix('-').filter(|t| !t.is_empty()) {
            query.excluded.extend(search_terms(negated));
        } else if let Some(stem) = token.strip_suffix('*').filter(|t| !t.is_empty()) {
            // The last word of `stem` is the prefix (whole: `john.do*`), the others must match.
            let (head, last) = stem.rsplit_once(char::is_whitespace).unwrap_or(("", stem));
            query.terms.extend(search_terms(head));
            if let Some(prefix) = search_terms(last).into_iter().next() {
                query.prefixes.push(prefix);
            }
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
        // `to:` of `q` also matches Bcc, whose words are not indexed: it can't narrow.
        let to = self.to.as_ref().filter(|_| !self.to_includes_bcc);
        for text in [self.from.as_ref(), to, self.subject.as_ref()]
            .into_iter()
            .flatten()
        {
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
        if self.matches_nothing || self.uids.as_ref().is_some_and(|u| !u.contains(message.uid)) {
            return false;
        }
        for (wanted, addresses) in [(&self.cc, &message.cc), (&self.bcc, &message.bcc)] {
            if let Some(needle) = wanted
                && !address_matches(&addresses.iter().collect::<Vec<_>>(), needle)
            {
                return false;
            }
        }
        if let Some(any) = &self.any_of {
            let to_cc: Vec<&Address> = message.to.iter().chain(message.cc.iter()).collect();
            let hit = any.terms.iter().any(|t| message.terms.contains(t))
                || any
                    .from
                    .as_deref()
                    .is_some_and(|f| address_matches(&message.from.iter().collect::<Vec<_>>(), f))
                || any
                    .to
                    .as_deref()
                    .is_some_and(|t| address_matches(&to_cc, t))
                || any
                    .subject
                    .as_deref()
                    .is_some_and(|s| contains(&message.subject, s));
            if !hit {
                return false;
            }
        }
        if let Some(from) = &self.from
            && !address_matches(&message.from.iter().collect::<Vec<_>>(), from)
        {
            return false;
        }
        if let Some(to) = &self.to {
            let bcc: &[Address] = if self.to_includes_bcc {
                &message.bcc
            } else {
                &[]
            };
            let all: Vec<&Address> = message.to.iter().chain(&message.cc).chain(bcc).collect();
            if !address_matches(&all, to) {
                return false;
            }
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
            && (self.unseen.is_some()
                || self.seen != Some(true)
                || (message.seen && !message.deleted))
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
    with_total: bool,
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
    let total = if with_total {
        count(state, user, driver, query, &boxes).await?
    } else {
        0
    };
    Ok(SearchResult {
        total,
        page: page_of(table, positions, hits, page, backwards).await?,
    })
}

/// Up to `limit + 1` hits in walk order as a page with WildDuck's paging flags.
async fn page_of(
    table: &dyn crate::store::Table,
    positions: Positions<'_>,
    mut hits: Vec<Hit>,
    page: &PageRequest,
    backwards: bool,
) -> DomainResult<PageResult<Message>> {
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
    Ok(PageResult {
        items: hits.into_iter().map(|h| h.message).collect(),
        next,
        previous,
    })
}

/// What the full-text index decides of `query`, and whether that is all of it (then the
/// index's count is the `total`).
fn text_query(query: &SearchQuery, boxes: &BTreeMap<ObjectId, StoredMailbox>) -> (TextQuery, bool) {
    let mut exact = true;
    let any = match &query.any_of {
        Some(any) if any.from.is_none() && any.to.is_none() && any.subject.is_none() => {
            any.terms.clone()
        }
        Some(_) => {
            exact = false;
            Vec::new()
        }
        None => Vec::new(),
    };
    let mailboxes = match query.mailbox {
        Some(mailbox) => vec![mailbox],
        None => boxes
            .values()
            .filter(|m| query.searchable == Some(false) || !m.is_junk_or_trash())
            .map(|m| m.mailbox.id)
            .collect(),
    };
    let seen_wanted = query.unseen.is_none() && query.seen == Some(true);
    // `\Deleted` messages are left out by `searchable`, `unseen` and `seen` (see `matches`).
    let not_deleted = query.searchable == Some(true) || query.unseen == Some(true) || seen_wanted;
    let on_the_table = query.flagged.is_some()
        || query.unseen.is_some()
        || seen_wanted
        || query.uids.is_some()
        || query.cc.is_some()
        || query.bcc.is_some()
        || query.from.is_some()
        || query.to.is_some()
        || query.subject.is_some();
    if on_the_table {
        exact = false;
    }
    let text = TextQuery {
        all: query.terms.clone(),
        prefixes: query.prefixes.clone(),
        none: query.excluded.clone(),
        any,
        mailboxes: Some(mailboxes),
        thread: query.thread,
        idate_from: query.date_start.map(|d| d.timestamp_millis()),
        idate_to: query.date_end.map(|d| d.timestamp_millis()),
        size_from: query.min_size,
        size_to: query.max_size,
        attachments: query.attachments,
        deleted: not_deleted.then_some(false),
    };
    (text, exact)
}

/// Candidates read from the index per round when the table decides some conditions (a page
/// usually needs one).
const INDEX_BATCH: usize = 100;

/// One page of a search through the full-text index: candidates in id order, each checked
/// against the table.
async fn run_indexed(
    state: &AppState,
    index: &dyn TextIndex,
    user: &ObjectId,
    query: &SearchQuery,
    page: &PageRequest,
    newest_first: bool,
    with_total: bool,
) -> DomainResult<SearchResult> {
    let boxes: BTreeMap<ObjectId, StoredMailbox> = mailboxes::load_all(state, user)
        .await?
        .into_iter()
        .map(|m| (m.mailbox.id, m))
        .collect();
    let (text, exact) = text_query(query, &boxes);
    // What this caller wrote before is searchable now.
    index.settle().await?;
    // `or` is checked on the table for its header substrings; its words are the index's
    // (decided in the query when `or` has only words, else looked up here once).
    let mut rest = query.clone();
    let mut any_ids = None;
    if let Some(any) = &query.any_of {
        if !text.any.is_empty() {
            rest.any_of = None;
        } else if !any.terms.is_empty() {
            let words = TextQuery {
                any: any.terms.clone(),
                mailboxes: text.mailboxes.clone(),
                ..Default::default()
            };
            let limit = index.count(user, &words).await? as usize;
            let found = index
                .page(
                    user,
                    &words,
                    IndexPage {
                        after: None,
                        newest_first: true,
                        limit,
                    },
                )
                .await?;
            any_ids = Some(found.into_iter().collect::<BTreeSet<ObjectId>>());
        }
    }
    let without_any = SearchQuery {
        any_of: None,
        ..rest.clone()
    };
    let passes = |m: &Message| {
        let mailbox = boxes.get(&m.mailbox);
        rest.matches(m, mailbox)
            || any_ids
                .as_ref()
                .is_some_and(|ids| ids.contains(&m.id) && without_any.matches(m, mailbox))
    };
    let table = state.table.as_ref();
    let pk = keys::message_pointers_pk(user);
    let positions = Positions {
        index: None,
        pk: Some(&pk),
    };
    let (start, backwards) = page.start(table, positions).await?;
    let mut after = match start {
        Some(cursor) => Some(
            cursor
                .sk
                .parse::<ObjectId>()
                .map_err(|_| page.invalid_cursor())?,
        ),
        None => None,
    };
    // When the index decides every condition, each candidate is a match: read no more than
    // the page (a message read from the table per candidate is most of a search's cost).
    let batch = if exact { 1 } else { INDEX_BATCH };
    let walk = IndexPage {
        after: None,
        newest_first: newest_first != backwards,
        limit: (page.limit + 1).max(batch),
    };
    let want = page.limit + 1;
    let mut hits = Vec::new();
    while !query.matches_nothing && hits.len() < want {
        let ids = index.page(user, &text, IndexPage { after, ..walk }).await?;
        let Some(last) = ids.last().copied() else {
            break;
        };
        for message in resolve_ids(state, user, &ids).await? {
            if hits.len() < want && passes(&message) {
                let cursor = Cursor {
                    pk: pk.clone(),
                    sk: message.id.to_string(),
                    index: None,
                };
                hits.push(Hit { cursor, message });
            }
        }
        if ids.len() < walk.limit {
            break;
        }
        after = Some(last);
    }
    let total = match (with_total, exact) {
        (false, _) => 0,
        _ if query.matches_nothing => 0,
        (true, true) => index.count(user, &text).await?,
        (true, false) => {
            // Every candidate checked against the table: the cost grows with the matches of
            // the indexed part (docs/data-model.md).
            let mut total = 0;
            let mut after = None;
            loop {
                let ids = index.page(user, &text, IndexPage { after, ..walk }).await?;
                let Some(last) = ids.last().copied() else {
                    break;
                };
                total += resolve_ids(state, user, &ids)
                    .await?
                    .iter()
                    .filter(|m| passes(m))
                    .count() as u64;
                if ids.len() < walk.limit {
                    break;
                }
                after = Some(last);
            }
            total
        }
    };
    Ok(SearchResult {
        total,
        page: page_of(table, positions, hits, page, backwards).await?,
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
    query: SearchQuery,
    ascending: bool,
    page: &PageRequest,
) -> DomainResult<SearchResult> {
    search_with(state, user, query, ascending, page, true).await
}

/// A page of matches without counting them all (`total` is 0): what background actions walk.
pub async fn search_page(
    state: &AppState,
    user: &ObjectId,
    query: SearchQuery,
    ascending: bool,
    page: &PageRequest,
) -> DomainResult<SearchResult> {
    search_with(state, user, query, ascending, page, false).await
}

async fn search_with(
    state: &AppState,
    user: &ObjectId,
    mut query: SearchQuery,
    ascending: bool,
    page: &PageRequest,
    with_total: bool,
) -> DomainResult<SearchResult> {
    users::load(state, user).await?;
    if let Some(path) = &query.mailbox_path {
        let all = mailboxes::load_all(state, user).await?;
        match resolve_in(&all, path) {
            Some(id) => query.mailbox = Some(id),
            None => query.matches_nothing = true,
        }
    }
    let wordy = !(query.terms.is_empty() && query.prefixes.is_empty() && query.excluded.is_empty());
    if let Some(index) = &state.text_index
        && (wordy || query.any_of.is_some())
    {
        return run_indexed(
            state,
            index.as_ref(),
            user,
            &query,
            page,
            !ascending,
            with_total,
        )
        .await;
    }
    if state.search_writes == SearchWrites::Stream && wordy {
        // No term items exist: only a function built with the text index searches words.
        return Err(DomainError::Internal(anyhow::anyhow!(
            "this function has no text index to search words in"
        )));
    }
    // Term items have whole words only: a prefix matches as a word.
    let prefixes = std::mem::take(&mut query.prefixes);
    query.terms.extend(prefixes);
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
    run(state, user, &driver, &query, page, !ascending, with_total).await
}

/// The folder `in:` names (WildDuck's): a 24-hex id; `inbox` in any case; the exact path; or,
/// by prefix in any case, `spam`/`junk`, `sent`, `trash`/`deleted`, `drafts` for those special
/// folders.
fn resolve_in(all: &[StoredMailbox], name: &str) -> Option<ObjectId> {
    if let Ok(id) = name.parse::<ObjectId>() {
        return all
            .iter()
            .find(|m| m.mailbox.id == id)
            .map(|m| m.mailbox.id);
    }
    if name.eq_ignore_ascii_case("inbox") {
        return all
            .iter()
            .find(|m| m.mailbox.path == "INBOX")
            .map(|m| m.mailbox.id);
    }
    // The exact path, else (kinder than WildDuck) the path in any case.
    if let Some(m) = all.iter().find(|m| m.mailbox.path == name).or_else(|| {
        all.iter()
            .find(|m| m.mailbox.path.eq_ignore_ascii_case(name))
    }) {
        return Some(m.mailbox.id);
    }
    let lower = name.to_lowercase();
    let special = [
        ("spam", "\\Junk"),
        ("junk", "\\Junk"),
        ("sent", "\\Sent"),
        ("trash", "\\Trash"),
        ("deleted", "\\Trash"),
        ("drafts", "\\Drafts"),
    ]
    .iter()
    .find(|(prefix, _)| lower.starts_with(prefix))
    .map(|(_, special)| *special)?;
    all.iter()
        .find(|m| m.is_special(special))
        .map(|m| m.mailbox.id)
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
    run(state, user, &driver, &query, page, !ascending, true).await
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

    #[test]
    fn q_keywords_cover_wildducks_list() {
        let mut query = SearchQuery::default();
        parse_q(
            "cc:bob bcc:eve to:zed id:2:* minsize:100 maxsize:900 after:2024-01-02 before:2024-02-03 flagged:yes seen:no unseen:1 attachments:true searchable:on thread:6b1575adb1601c1a6d2aa029 bogus:x",
            &mut query,
        );
        assert_eq!(query.cc.as_deref(), Some("bob"));
        assert_eq!(query.bcc.as_deref(), Some("eve"));
        assert!(query.to_includes_bcc);
        assert_eq!(query.uids, Some(UidSet::Range(2, None)));
        assert_eq!((query.min_size, query.max_size), (Some(100), Some(900)));
        assert!(query.date_start.is_some() && query.date_end.is_some());
        assert_eq!(query.flagged, Some(true));
        assert_eq!(query.seen, None, "a value other than yes drops the keyword");
        assert_eq!(query.unseen, Some(true));
        assert_eq!(query.attachments, Some(true));
        assert_eq!(query.searchable, Some(true));
        assert!(query.thread.is_some());
        assert!(
            query.terms.is_empty(),
            "unknown keywords are dropped: {:?}",
            query.terms
        );
    }
}
