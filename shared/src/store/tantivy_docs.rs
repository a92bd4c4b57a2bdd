//! What both Tantivy text indexes share: the schema of a message document, the queries a
//! [`TextQuery`] becomes, pages by id, and applying a batch of changes with one writer.
//! [`super::tantivy_index`] keeps every user in one index in the data folder (the local
//! server); [`super::blob_text_index`] keeps one index per user in the blob store (the cloud).
//!
//! Messages are ordered by id through two fast fields (`hi`: the id's first 8 bytes, `lo`: its
//! last 4), so a page is a top-k by id and a cursor is a range on them. Each segment keeps its
//! documents sorted by `hi`, newest first (the index's sort setting), so a page of the newest
//! matches stops reading a segment once the rest of it is older than the page: its cost does
//! not grow with the number of matches. Oldest-first pages, and indexes made before the sort
//! setting existed, take a top-k over every match.
//!
//! Words are Eider's own search terms (folded, addresses kept whole and split), joined by
//! spaces and indexed with a whitespace tokenizer: a query term matches exactly what the
//! message was indexed with.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::ops::Bound;

use tantivy::collector::sort_key::SortByStaticFastValue;
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{
    BooleanQuery, EnableScoring, Occur, Query, RangeQuery, RegexQuery, TermQuery, TermSetQuery,
};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing,
    TextOptions, Value,
};
use tantivy::tokenizer::{TextAnalyzer, WhitespaceTokenizer};
use tantivy::{
    DocAddress, DocSet, Index, IndexSettings, IndexSortByField, IndexWriter, Order, Searcher,
    TERMINATED, TantivyDocument, Term,
};

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

/// The settings of a new index: each segment sorted by `hi`, newest first.
pub(super) fn settings() -> IndexSettings {
    IndexSettings {
        sort_by_field: Some(IndexSortByField {
            field: "hi".into(),
            order: Order::Desc,
        }),
        ..IndexSettings::default()
    }
}

/// Whether `index` keeps each segment newest first (one made before the sort setting does not).
pub(super) fn sorted_newest_first(index: &Index) -> bool {
    index.settings().sort_by_field == settings().sort_by_field
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

/// Folders a query lists as a union of terms at most (more become a term set).
const FOLDER_UNION_MAX: usize = 32;

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
        // A union of a few terms is read lazily, as far as a page needs; a term set is read
        // whole into a bit set first (cheaper only past a few dozen folders).
        let folders: Box<dyn Query> = if mailboxes.len() <= FOLDER_UNION_MAX {
            let each = mailboxes
                .iter()
                .map(|m| (Occur::Should, text(f.mailbox, &m.to_string())))
                .collect();
            Box::new(BooleanQuery::new(each))
        } else {
            let terms = mailboxes
                .iter()
                .map(|m| Term::from_field_text(f.mailbox, &m.to_string()));
            Box::new(TermSetQuery::new(terms))
        };
        clauses.push((Occur::Must, folders));
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
    if page.newest_first && sorted_newest_first(searcher.index()) {
        return newest_first(searcher, &query, page.limit).map_err(backend);
    }
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

/// The `limit` highest ids matching `query`, highest first, on an index whose segments are
/// sorted by `hi` descending: a segment is read until its next match has a lower `hi` than
/// the lowest kept while the page is full (equal `hi`s go on, `lo` decides between them).
fn newest_first(
    searcher: &Searcher,
    query: &dyn Query,
    limit: usize,
) -> tantivy::Result<Vec<ObjectId>> {
    let weight = query.weight(EnableScoring::disabled_from_searcher(searcher))?;
    // The kept keys, lowest on top.
    let mut kept: BinaryHeap<Reverse<(u64, u64)>> = BinaryHeap::with_capacity(limit.min(1024));
    for segment in searcher.segment_readers() {
        let mut matches = weight.scorer(segment, 1.0)?;
        let hi = segment.fast_fields().u64("hi")?.first_or_default_col(0);
        let lo = segment.fast_fields().u64("lo")?.first_or_default_col(0);
        let alive = segment.alive_bitset();
        let mut doc = matches.doc();
        while doc != TERMINATED {
            if alive.is_none_or(|a| a.is_alive(doc)) {
                let h = hi.get_val(doc);
                match kept.peek() {
                    Some(Reverse(lowest)) if kept.len() == limit => {
                        if h < lowest.0 {
                            break;
                        }
                        let key = (h, lo.get_val(doc));
                        if key > *lowest {
                            kept.pop();
                            kept.push(Reverse(key));
                        }
                    }
                    _ => kept.push(Reverse((h, lo.get_val(doc)))),
                }
            }
            doc = matches.advance();
        }
    }
    // Ascending order of `Reverse` is descending order of the keys.
    Ok(kept
        .into_sorted_vec()
        .into_iter()
        .map(|Reverse((hi, lo))| id_from_keys(hi, lo))
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
    writer.delete_term(Term::from_field_text(f.id, &m.id.to_string()));
    writer.add_document(document(f, m))?;
    Ok(())
}

/// The document of a message.
fn document(f: Fields, m: &IndexedMessage) -> TantivyDocument {
    let (hi, lo) = id_keys(&m.id);
    let mut doc = TantivyDocument::new();
    doc.add_text(f.id, m.id.to_string());
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
    doc
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
    Ok(indexed_message(f, &doc).filter(|m| m.id == *id))
}

/// The message a stored document was indexed from (`None` when a field is missing).
fn indexed_message(f: Fields, doc: &TantivyDocument) -> Option<IndexedMessage> {
    let text = |field: Field| {
        doc.get_first(field)
            .and_then(|v| v.as_str().map(str::to_string))
    };
    let number = |field: Field| doc.get_first(field).and_then(|v| v.as_u64());
    let parse = |field: Field| text(field).and_then(|t| t.parse::<ObjectId>().ok());
    Some(IndexedMessage {
        user: parse(f.user)?,
        id: parse(f.id)?,
        mailbox: parse(f.mailbox)?,
        thread: parse(f.thread)?,
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
    })
}

/// Creates a sorted index in the empty `folder` holding every live document of `from` (an
/// index made before the sort setting), committed, merges done. Returns the count.
pub(super) fn sorted_copy(
    from: &Index,
    folder: &std::path::Path,
    writer_memory: usize,
) -> tantivy::Result<u64> {
    let directory = tantivy::directory::MmapDirectory::open(folder)?;
    let index = Index::create(directory, schema().0, settings())?;
    prepare(&index);
    let mut writer: IndexWriter = index.writer_with_num_threads(1, writer_memory)?;
    let copied = copy_all(&from.reader()?.searcher(), schema().1, &writer)?;
    writer.commit()?;
    writer.wait_merging_threads()?;
    Ok(copied)
}

/// Adds every live document `from` holds to `writer` (not committed), rebuilt from its stored
/// fields. Returns the count.
fn copy_all(from: &Searcher, f: Fields, writer: &IndexWriter) -> tantivy::Result<u64> {
    let mut copied = 0;
    for (ordinal, segment) in from.segment_readers().iter().enumerate() {
        for doc in segment.doc_ids_alive() {
            let stored: TantivyDocument = from.doc(DocAddress::new(ordinal as u32, doc))?;
            if let Some(message) = indexed_message(f, &stored) {
                writer.add_document(document(f, &message))?;
                copied += 1;
            }
        }
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::text_index::IndexChange;

    /// A deterministic generator (no seed to keep).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
    }

    fn oid(n: u64) -> ObjectId {
        let mut b = [0u8; 12];
        b[4..].copy_from_slice(&n.to_be_bytes());
        ObjectId::from_bytes(b)
    }

    /// An id in one of a few `hi` groups (many ids share their first 8 bytes, as ids made by
    /// one process in one second do), with a random last 4.
    fn message_id(rng: &mut Lcg) -> ObjectId {
        let mut b = [0u8; 12];
        b[..8].copy_from_slice(&(1_700_000_000 + rng.next() % 40).to_be_bytes());
        b[8..].copy_from_slice(&(rng.next() as u32).to_be_bytes());
        ObjectId::from_bytes(b)
    }

    fn indexed(rng: &mut Lcg, id: ObjectId) -> IndexedMessage {
        let mut terms = vec!["every".to_string()];
        if rng.next().is_multiple_of(10) {
            terms.push("rare".into());
        }
        IndexedMessage {
            user: oid(1 + rng.next() % 2),
            id,
            mailbox: oid(10 + rng.next() % 3),
            thread: oid(20),
            idate: 0,
            size: 100,
            attachments: false,
            deleted: false,
            terms,
        }
    }

    /// Two indexes fed the same changes in many commits (one sorted, one as indexes were made
    /// before sorting) and what they should hold.
    fn indexes() -> (Vec<Index>, Fields, HashMap<ObjectId, IndexedMessage>) {
        let (schema, f) = schema();
        let sorted = Index::builder()
            .schema(schema.clone())
            .settings(settings())
            .create_in_ram()
            .unwrap();
        let unsorted = Index::create_in_ram(schema);
        let mut rng = Lcg(7);
        let mut live = HashMap::new();
        let mut batches = Vec::new();
        for _ in 0..12 {
            let mut batch = Vec::new();
            for _ in 0..150 {
                let id = message_id(&mut rng);
                let message = indexed(&mut rng, id);
                live.insert(id, message.clone());
                batch.push(IndexChange::Put(message));
            }
            // Some earlier messages change folder or go: re-added or deleted documents.
            let ids: Vec<ObjectId> = live.keys().copied().collect();
            for _ in 0..20 {
                let id = ids[rng.next() as usize % ids.len()];
                if rng.next().is_multiple_of(2) {
                    live.remove(&id);
                    batch.push(IndexChange::Remove(id));
                } else if let Some(m) = live.get_mut(&id) {
                    m.mailbox = oid(10 + rng.next() % 3);
                    batch.push(IndexChange::Relocate(id, Relocation::Mailbox(m.mailbox)));
                }
            }
            batches.push(batch);
        }
        for index in [&sorted, &unsorted] {
            prepare(index);
            let mut writer = index.writer_with_num_threads(1, 15_000_000).unwrap();
            let reader = index
                .reader_builder()
                .reload_policy(tantivy::ReloadPolicy::Manual)
                .try_into()
                .unwrap();
            for batch in &batches {
                apply(&writer, &reader.searcher(), f, batch.clone()).unwrap();
                writer.commit().unwrap();
                reader.reload().unwrap();
            }
            writer.wait_merging_threads().unwrap();
        }
        assert!(sorted_newest_first(&sorted) && !sorted_newest_first(&unsorted));
        (vec![sorted, unsorted], f, live)
    }

    #[test]
    fn pages_of_a_sorted_index_are_those_of_a_full_walk() {
        let (indexes, f, live) = indexes();
        let queries = [
            TextQuery::default(),
            TextQuery {
                all: vec!["rare".into()],
                ..Default::default()
            },
            TextQuery {
                mailboxes: Some(vec![oid(10), oid(12)]),
                ..Default::default()
            },
            TextQuery {
                all: vec!["every".into()],
                mailboxes: Some(vec![oid(11)]),
                ..Default::default()
            },
            TextQuery {
                mailboxes: Some(Vec::new()),
                ..Default::default()
            },
        ];
        for index in &indexes {
            let reader = index.reader().unwrap();
            let searcher = reader.searcher();
            assert!(searcher.segment_readers().len() > 1, "several segments");
            for user in [oid(1), oid(2)] {
                for q in &queries {
                    let mut expected: Vec<ObjectId> = live
                        .values()
                        .filter(|m| m.user == user)
                        .filter(|m| q.all.iter().all(|t| m.terms.contains(t)))
                        .filter(|m| q.mailboxes.as_ref().is_none_or(|b| b.contains(&m.mailbox)))
                        .map(|m| m.id)
                        .collect();
                    expected.sort();
                    assert_eq!(
                        count(&searcher, f, &user, q).unwrap(),
                        expected.len() as u64
                    );
                    for newest_first in [true, false] {
                        let in_order: Vec<ObjectId> = if newest_first {
                            expected.iter().rev().copied().collect()
                        } else {
                            expected.clone()
                        };
                        for limit in [3, 7, 100, 5000] {
                            // Walk every page: each starts after the last id of the one before.
                            let mut walked = Vec::new();
                            let mut after = None;
                            loop {
                                let page = IndexPage {
                                    after,
                                    newest_first,
                                    limit,
                                };
                                let ids = page_of(&searcher, f, &user, q, page);
                                assert!(ids.len() <= limit);
                                walked.extend_from_slice(&ids);
                                if ids.len() < limit {
                                    break;
                                }
                                after = ids.last().copied();
                            }
                            assert_eq!(walked, in_order, "limit {limit}, newest {newest_first}");
                        }
                    }
                }
            }
        }
    }

    fn page_of(
        searcher: &Searcher,
        f: Fields,
        user: &ObjectId,
        q: &TextQuery,
        p: IndexPage,
    ) -> Vec<ObjectId> {
        page(searcher, f, user, q, p).unwrap()
    }

    #[test]
    fn copying_an_index_keeps_every_live_document() {
        let (indexes, f, live) = indexes();
        let unsorted = &indexes[1];
        let sorted = Index::builder()
            .schema(schema().0)
            .settings(settings())
            .create_in_ram()
            .unwrap();
        prepare(&sorted);
        let mut writer = sorted.writer_with_num_threads(1, 15_000_000).unwrap();
        let copied = copy_all(&unsorted.reader().unwrap().searcher(), f, &writer).unwrap();
        writer.commit().unwrap();
        assert_eq!(copied, live.len() as u64);
        let searcher = sorted.reader().unwrap().searcher();
        let ids: Vec<ObjectId> = live.keys().copied().collect();
        for user in [oid(1), oid(2)] {
            let found = placements(&searcher, f, &user, &ids).unwrap();
            for (id, m) in live.iter().filter(|(_, m)| m.user == user) {
                assert_eq!(found[id].mailbox, m.mailbox);
                assert_eq!(stored(&searcher, f, id).unwrap().as_ref(), Some(m));
            }
        }
    }
}
