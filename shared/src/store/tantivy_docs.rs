//! What both Tantivy text indexes share: the schema of a message document, the queries a
//! [`TextQuery`] becomes, pages by id, and applying a batch of changes with one writer.
//! [`super::tantivy_index`] keeps every user in one index in the data folder (the local
//! server); [`super::blob_text_index`] keeps one index per user in the blob store (the cloud).
//!
//! Messages are ordered by id through two fast fields (`hi`: the id's first 8 bytes, `lo`: its
//! last 4), so a page is a top-k by id and a cursor is a range on them, whatever the number of
//! matches. Words are Eider's own search terms (folded, addresses kept whole and split), joined
//! by spaces and indexed with a whitespace tokenizer: a query term matches exactly what the
//! message was indexed with.

use std::collections::HashMap;
use std::ops::Bound;

use tantivy::collector::sort_key::SortByStaticFastValue;
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery, RegexQuery, TermQuery, TermSetQuery};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing,
    TextOptions, Value,
};
use tantivy::tokenizer::{TextAnalyzer, WhitespaceTokenizer};
use tantivy::{Index, IndexWriter, Order, Searcher, TantivyDocument, Term};

use super::StoreError;
use super::text_index::{IndexChange, IndexPage, IndexedMessage, Placement, Relocation, TextQuery};
use crate::id::ObjectId;

const TOKENIZER: &str = "eider_terms";

#[derive(Clone, Copy)]
pub(super) struct Fields {
    id: Field,
    hi: Field,
    lo: Field,
    user: Field,
    mailbox: Field,
    thread: Field,
    idate: Field,
    size: Field,
    attachments: Field,
    deleted: Field,
    terms: Field,
}

/// The schema of a message document and its fields.
pub(super) fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let terms_options = TextOptions::default()
        .set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(TOKENIZER)
                .set_index_option(IndexRecordOption::Basic),
        )
        .set_stored();
    let fields = Fields {
        id: builder.add_text_field("id", STRING | STORED),
        hi: builder.add_u64_field("hi", FAST | INDEXED),
        lo: builder.add_u64_field("lo", FAST | INDEXED),
        user: builder.add_text_field("user", STRING | STORED),
        mailbox: builder.add_text_field("mailbox", STRING | STORED),
        thread: builder.add_text_field("thread", STRING | STORED),
        idate: builder.add_i64_field("idate", FAST | STORED),
        size: builder.add_u64_field("size", FAST | STORED),
        attachments: builder.add_u64_field("attachments", FAST | STORED),
        deleted: builder.add_u64_field("deleted", FAST | STORED),
        terms: builder.add_text_field("terms", terms_options),
    };
    (builder.build(), fields)
}

/// Registers the terms' tokenizer on an index just opened or created.
pub(super) fn prepare(index: &Index) {
    index.tokenizers().register(
        TOKENIZER,
        TextAnalyzer::builder(WhitespaceTokenizer::default()).build(),
    );
}

/// The two sort keys of an id: its first 8 bytes and its last 4.
fn id_keys(id: &ObjectId) -> (u64, u64) {
    let b = id.bytes();
    let hi = u64::from_be_bytes(b[..8].try_into().expect("8 bytes"));
    let lo = u64::from(u32::from_be_bytes(b[8..].try_into().expect("4 bytes")));
    (hi, lo)
}

fn id_from_keys(hi: u64, lo: u64) -> ObjectId {
    let mut b = [0u8; 12];
    b[..8].copy_from_slice(&hi.to_be_bytes());
    b[8..].copy_from_slice(&(lo as u32).to_be_bytes());
    ObjectId::from_bytes(b)
}

pub(super) fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(anyhow::anyhow!("text index: {e}"))
}

fn text(field: Field, value: &str) -> Box<dyn Query> {
    Box::new(TermQuery::new(
        Term::from_field_text(field, value),
        IndexRecordOption::Basic,
    ))
}

fn u64_range(field: Field, from: Option<u64>, to: Option<u64>) -> Box<dyn Query> {
    let bound = |v: Option<u64>| {
        v.map_or(Bound::Unbounded, |v| {
            Bound::Included(Term::from_field_u64(field, v))
        })
    };
    Box::new(RangeQuery::new(bound(from), bound(to)))
}

/// Every condition of `q` for `user`'s messages, as one query.
fn query(f: Fields, user: &ObjectId, q: &TextQuery) -> Result<BooleanQuery, StoreError> {
    let mut clauses: Vec<(Occur, Box<dyn Query>)> =
        vec![(Occur::Must, text(f.user, &user.to_string()))];
    for term in &q.all {
        clauses.push((Occur::Must, text(f.terms, term)));
    }
    for prefix in &q.prefixes {
        let pattern = format!("{}.*", regex_escape(prefix));
        let query = RegexQuery::from_pattern(&pattern, f.terms).map_err(backend)?;
        clauses.push((Occur::Must, Box::new(query)));
    }
    for term in &q.none {
        clauses.push((Occur::MustNot, text(f.terms, term)));
    }
    if !q.any.is_empty() {
        let any = q
            .any
            .iter()
            .map(|t| (Occur::Should, text(f.terms, t)))
            .collect();
        clauses.push((Occur::Must, Box::new(BooleanQuery::new(any))));
    }
    if let Some(mailboxes) = &q.mailboxes {
        let terms = mailboxes
            .iter()
            .map(|m| Term::from_field_text(f.mailbox, &m.to_string()));
        clauses.push((Occur::Must, Box::new(TermSetQuery::new(terms))));
    }
    if let Some(thread) = &q.thread {
        clauses.push((Occur::Must, text(f.thread, &thread.to_string())));
    }
    if q.idate_from.is_some() || q.idate_to.is_some() {
        let bound = |v: Option<i64>| {
            v.map_or(Bound::Unbounded, |v| {
                Bound::Included(Term::from_field_i64(f.idate, v))
            })
        };
        clauses.push((
            Occur::Must,
            Box::new(RangeQuery::new(bound(q.idate_from), bound(q.idate_to))),
        ));
    }
    if q.size_from.is_some() || q.size_to.is_some() {
        clauses.push((Occur::Must, u64_range(f.size, q.size_from, q.size_to)));
    }
    if let Some(a) = q.attachments {
        let v = u64::from(a);
        clauses.push((Occur::Must, u64_range(f.attachments, Some(v), Some(v))));
    }
    if let Some(d) = q.deleted {
        let v = u64::from(d);
        clauses.push((Occur::Must, u64_range(f.deleted, Some(v), Some(v))));
    }
    Ok(BooleanQuery::new(clauses))
}

/// Ids strictly after `after` in the walk's direction: `(hi, lo)` beyond the cursor's.
fn after_clause(f: Fields, after: &ObjectId, newest_first: bool) -> Box<dyn Query> {
    let (hi, lo) = id_keys(after);
    let beyond = |field: Field, v: u64| -> Box<dyn Query> {
        let (from, to) = if newest_first {
            (
                Bound::Unbounded,
                Bound::Excluded(Term::from_field_u64(field, v)),
            )
        } else {
            (
                Bound::Excluded(Term::from_field_u64(field, v)),
                Bound::Unbounded,
            )
        };
        Box::new(RangeQuery::new(from, to))
    };
    let tie: Box<dyn Query> = Box::new(BooleanQuery::new(vec![
        (Occur::Must, u64_range(f.hi, Some(hi), Some(hi))),
        (Occur::Must, beyond(f.lo, lo)),
    ]));
    Box::new(BooleanQuery::new(vec![
        (Occur::Should, beyond(f.hi, hi)),
        (Occur::Should, tie),
    ]))
}

/// Escapes a term for Tantivy's regex syntax (terms hold letters, digits and `.@-_+`).
fn regex_escape(term: &str) -> String {
    let mut out = String::with_capacity(term.len() + 4);
    for c in term.chars() {
        if !c.is_alphanumeric() {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Matching ids of `user` in id order from `page.after`, at most `page.limit`.
pub(super) fn page(
    searcher: &Searcher,
    f: Fields,
    user: &ObjectId,
    q: &TextQuery,
    page: IndexPage,
) -> Result<Vec<ObjectId>, StoreError> {
    if page.limit == 0 {
        return Ok(Vec::new());
    }
    let mut clauses: Vec<(Occur, Box<dyn Query>)> =
        vec![(Occur::Must, Box::new(query(f, user, q)?))];
    if let Some(after) = &page.after {
        clauses.push((Occur::Must, after_clause(f, after, page.newest_first)));
    }
    let query = BooleanQuery::new(clauses);
    let order = if page.newest_first {
        Order::Desc
    } else {
        Order::Asc
    };
    let collector = TopDocs::with_limit(page.limit).order_by((
        (SortByStaticFastValue::<u64>::for_field("hi"), order),
        (SortByStaticFastValue::<u64>::for_field("lo"), order),
    ));
    let found = searcher.search(&query, &collector).map_err(backend)?;
    Ok(found
        .into_iter()
        .filter_map(|((hi, lo), _)| Some(id_from_keys(hi?, lo?)))
        .collect())
}

/// How many of `user`'s messages match.
pub(super) fn count(
    searcher: &Searcher,
    f: Fields,
    user: &ObjectId,
    q: &TextQuery,
) -> Result<u64, StoreError> {
    let n = searcher
        .search(&query(f, user, q)?, &Count)
        .map_err(backend)?;
    Ok(n as u64)
}

/// Every indexed id of `user` in `mailbox`.
pub(super) fn ids_in(
    searcher: &Searcher,
    f: Fields,
    user: &ObjectId,
    mailbox: &ObjectId,
) -> Result<Vec<ObjectId>, StoreError> {
    let q = TextQuery {
        mailboxes: Some(vec![*mailbox]),
        ..Default::default()
    };
    let limit = (searcher.num_docs() as usize).max(1);
    page(
        searcher,
        f,
        user,
        &q,
        IndexPage {
            after: None,
            newest_first: true,
            limit,
        },
    )
}

/// Where the index has each of `user`'s `ids` (those it has).
pub(super) fn placements(
    searcher: &Searcher,
    f: Fields,
    user: &ObjectId,
    ids: &[ObjectId],
) -> Result<HashMap<ObjectId, Placement>, StoreError> {
    let mut out = HashMap::new();
    for id in ids {
        let found = stored(searcher, f, id).map_err(backend)?;
        if let Some(m) = found.filter(|m| m.user == *user) {
            out.insert(
                *id,
                Placement {
                    mailbox: m.mailbox,
                    deleted: m.deleted,
                },
            );
        }
    }
    Ok(out)
}

/// Applies `changes` in order through `writer` (not committed). `searcher` sees what was
/// committed before, for relocating messages; a message put earlier in the same batch is
/// relocated from that put.
pub(super) fn apply(
    writer: &IndexWriter,
    searcher: &Searcher,
    f: Fields,
    changes: Vec<IndexChange>,
) -> tantivy::Result<()> {
    let mut pending: HashMap<ObjectId, IndexedMessage> = HashMap::new();
    for change in changes {
        match change {
            IndexChange::Put(message) => {
                replace(writer, f, &message)?;
                pending.insert(message.id, message);
            }
            IndexChange::Remove(id) => {
                writer.delete_term(Term::from_field_text(f.id, &id.to_string()));
                pending.remove(&id);
            }
            IndexChange::Relocate(id, relocation) => {
                let current = match pending.remove(&id) {
                    Some(m) => Some(m),
                    None => stored(searcher, f, &id)?,
                };
                let Some(mut message) = current else { continue };
                match relocation {
                    Relocation::Mailbox(mailbox) => message.mailbox = mailbox,
                    Relocation::Deleted(deleted) => message.deleted = deleted,
                }
                replace(writer, f, &message)?;
                pending.insert(id, message);
            }
        }
    }
    Ok(())
}

fn replace(writer: &IndexWriter, f: Fields, m: &IndexedMessage) -> tantivy::Result<()> {
    let id = m.id.to_string();
    writer.delete_term(Term::from_field_text(f.id, &id));
    let (hi, lo) = id_keys(&m.id);
    let mut doc = TantivyDocument::new();
    doc.add_text(f.id, &id);
    doc.add_u64(f.hi, hi);
    doc.add_u64(f.lo, lo);
    doc.add_text(f.user, m.user.to_string());
    doc.add_text(f.mailbox, m.mailbox.to_string());
    doc.add_text(f.thread, m.thread.to_string());
    doc.add_i64(f.idate, m.idate);
    doc.add_u64(f.size, m.size);
    doc.add_u64(f.attachments, u64::from(m.attachments));
    doc.add_u64(f.deleted, u64::from(m.deleted));
    doc.add_text(f.terms, m.terms.join(" "));
    writer.add_document(doc)?;
    Ok(())
}

/// The committed document of `id`, as it was indexed.
fn stored(
    searcher: &Searcher,
    f: Fields,
    id: &ObjectId,
) -> tantivy::Result<Option<IndexedMessage>> {
    let query = TermQuery::new(
        Term::from_field_text(f.id, &id.to_string()),
        IndexRecordOption::Basic,
    );
    let Some((_, address)) = searcher
        .search(&query, &TopDocs::with_limit(1).order_by_score())?
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    let doc: TantivyDocument = searcher.doc(address)?;
    let text = |field: Field| {
        doc.get_first(field)
            .and_then(|v| v.as_str().map(str::to_string))
    };
    let number = |field: Field| doc.get_first(field).and_then(|v| v.as_u64());
    let parse = |field: Field| text(field).and_then(|t| t.parse::<ObjectId>().ok());
    let (Some(user), Some(mailbox), Some(thread)) =
        (parse(f.user), parse(f.mailbox), parse(f.thread))
    else {
        return Ok(None);
    };
    Ok(Some(IndexedMessage {
        user,
        id: *id,
        mailbox,
        thread,
        idate: doc.get_first(f.idate).and_then(|v| v.as_i64()).unwrap_or(0),
        size: number(f.size).unwrap_or(0),
        attachments: number(f.attachments) == Some(1),
        deleted: number(f.deleted) == Some(1),
        terms: text(f.terms)
            .map(|t| {
                t.split(' ')
                    .filter(|w| !w.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
    }))
}
