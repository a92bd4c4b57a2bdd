//! The text index on Tantivy, in a folder of its own (the local server: `<data>/search-v1`).
//!
//! One index holds every user's messages (a `user` term narrows each query). Messages are
//! ordered by id through two fast fields (`hi`: the id's first 8 bytes, `lo`: its last 4), so a
//! page is a top-k by id and a cursor is a range on them, whatever the number of matches.
//!
//! Writes go through one worker thread that owns the `IndexWriter`: changes are queued, applied
//! in batches (everything queued while the last commit ran) and made visible by one commit and
//! reader reload per batch. [`TextIndex::settle`] waits for that, so a caller can read what it
//! wrote. Words are Eider's own search terms (folded, addresses kept whole and split), joined by
//! spaces and indexed with a whitespace tokenizer: a query term matches exactly what the
//! message was indexed with.

use std::collections::HashMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, mpsc};

use anyhow::Context;
use async_trait::async_trait;
use tantivy::collector::sort_key::SortByStaticFastValue;
use tantivy::collector::{Count, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::query::{BooleanQuery, Occur, Query, RangeQuery, RegexQuery, TermQuery, TermSetQuery};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing,
    TextOptions, Value,
};
use tantivy::tokenizer::{TextAnalyzer, WhitespaceTokenizer};
use tantivy::{Index, IndexReader, IndexWriter, Order, ReloadPolicy, TantivyDocument, Term};

use super::text_index::{IndexPage, IndexedMessage, Relocation, TextIndex, TextQuery};
use super::{StoreError, StoreResult};
use crate::id::ObjectId;

const TOKENIZER: &str = "eider_terms";
/// The writer's memory budget: segments are flushed past it.
const WRITER_MEMORY: usize = 64 * 1024 * 1024;
/// Changes applied in one commit at most (a bound on how long one batch holds the worker).
const MAX_BATCH: usize = 20_000;

#[derive(Clone, Copy)]
struct Fields {
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

fn schema() -> (Schema, Fields) {
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

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(anyhow::anyhow!("text index: {e}"))
}

enum Change {
    Put(Vec<IndexedMessage>),
    Remove(Vec<ObjectId>),
    Relocate(Vec<(ObjectId, Relocation)>),
}

pub struct TantivyIndex {
    fields: Fields,
    reader: IndexReader,
    /// The worker's queue; `None` once dropped (the worker then commits and ends).
    changes: Mutex<Option<mpsc::Sender<(u64, Change)>>>,
    /// The number of the last change queued.
    queued: AtomicU64,
    /// The number of the last change visible to searches.
    committed: tokio::sync::watch::Receiver<u64>,
}

impl TantivyIndex {
    /// Opens the index in `folder`, creating it when missing.
    pub fn open(folder: &Path) -> anyhow::Result<TantivyIndex> {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("cannot create {}", folder.display()))?;
        let (schema, fields) = schema();
        let directory = MmapDirectory::open(folder)
            .with_context(|| format!("cannot open the search index in {}", folder.display()))?;
        let index = Index::open_or_create(directory, schema)
            .with_context(|| format!("cannot open the search index in {}", folder.display()))?;
        index.tokenizers().register(
            TOKENIZER,
            TextAnalyzer::builder(WhitespaceTokenizer::default()).build(),
        );
        let writer: IndexWriter = index.writer_with_num_threads(1, WRITER_MEMORY).context(
            "cannot lock the search index (is another eider-local using this data folder?)",
        )?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .context("cannot read the search index")?;
        let (sender, receiver) = mpsc::channel();
        let (committed_tx, committed) = tokio::sync::watch::channel(0);
        let worker = Worker {
            writer,
            reader: Clone::clone(&reader),
            fields,
            committed: committed_tx,
        };
        std::thread::Builder::new()
            .name("eider-search-index".into())
            .spawn(move || worker.run(receiver))
            .context("cannot start the search index writer")?;
        Ok(TantivyIndex {
            fields,
            reader,
            changes: Mutex::new(Some(sender)),
            queued: AtomicU64::new(0),
            committed,
        })
    }

    fn send(&self, change: Change) -> StoreResult<()> {
        let guard = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        let sender = guard.as_ref().ok_or_else(|| backend("closed"))?;
        // Numbered under the lock: the worker sees numbers in increasing order.
        let number = self.queued.fetch_add(1, Ordering::SeqCst) + 1;
        sender
            .send((number, change))
            .map_err(|_| backend("the writer stopped"))
    }

    fn query(&self, user: &ObjectId, q: &TextQuery) -> StoreResult<BooleanQuery> {
        let f = self.fields;
        let text = |field: Field, value: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_text(field, value),
                IndexRecordOption::Basic,
            ))
        };
        let u64_range = |field: Field, from: Option<u64>, to: Option<u64>| -> Box<dyn Query> {
            Box::new(RangeQuery::new(
                from.map_or(Bound::Unbounded, |v| {
                    Bound::Included(Term::from_field_u64(field, v))
                }),
                to.map_or(Bound::Unbounded, |v| {
                    Bound::Included(Term::from_field_u64(field, v))
                }),
            ))
        };
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
    fn after_clause(&self, after: &ObjectId, newest_first: bool) -> Box<dyn Query> {
        let f = self.fields;
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
        let same_hi: Box<dyn Query> = Box::new(RangeQuery::new(
            Bound::Included(Term::from_field_u64(f.hi, hi)),
            Bound::Included(Term::from_field_u64(f.hi, hi)),
        ));
        let tie: Box<dyn Query> = Box::new(BooleanQuery::new(vec![
            (Occur::Must, same_hi),
            (Occur::Must, beyond(f.lo, lo)),
        ]));
        Box::new(BooleanQuery::new(vec![
            (Occur::Should, beyond(f.hi, hi)),
            (Occur::Should, tie),
        ]))
    }
}

impl Drop for TantivyIndex {
    fn drop(&mut self) {
        // Closing the queue lets the worker commit what it has and end.
        self.changes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
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

#[async_trait]
impl TextIndex for TantivyIndex {
    async fn put(&self, messages: Vec<IndexedMessage>) -> StoreResult<()> {
        if messages.is_empty() {
            return Ok(());
        }
        self.send(Change::Put(messages))
    }

    async fn remove(&self, ids: Vec<ObjectId>) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.send(Change::Remove(ids))
    }

    async fn relocate(&self, changes: Vec<(ObjectId, Relocation)>) -> StoreResult<()> {
        if changes.is_empty() {
            return Ok(());
        }
        self.send(Change::Relocate(changes))
    }

    async fn settle(&self) -> StoreResult<()> {
        let target = self.queued.load(Ordering::SeqCst);
        let mut committed = self.committed.clone();
        committed
            .wait_for(|c| *c >= target)
            .await
            .map(|_| ())
            .map_err(|_| backend("the writer stopped"))
    }

    async fn page(
        &self,
        user: &ObjectId,
        query: &TextQuery,
        page: IndexPage,
    ) -> StoreResult<Vec<ObjectId>> {
        if page.limit == 0 {
            return Ok(Vec::new());
        }
        let mut clauses: Vec<(Occur, Box<dyn Query>)> =
            vec![(Occur::Must, Box::new(self.query(user, query)?))];
        if let Some(after) = &page.after {
            clauses.push((Occur::Must, self.after_clause(after, page.newest_first)));
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
        let found = self
            .reader
            .searcher()
            .search(&query, &collector)
            .map_err(backend)?;
        Ok(found
            .into_iter()
            .filter_map(|((hi, lo), _)| Some(id_from_keys(hi?, lo?)))
            .collect())
    }

    async fn count(&self, user: &ObjectId, query: &TextQuery) -> StoreResult<u64> {
        let query = self.query(user, query)?;
        let n = self
            .reader
            .searcher()
            .search(&query, &Count)
            .map_err(backend)?;
        Ok(n as u64)
    }

    async fn ids_in(&self, user: &ObjectId, mailbox: &ObjectId) -> StoreResult<Vec<ObjectId>> {
        let query = TextQuery {
            mailboxes: Some(vec![*mailbox]),
            ..Default::default()
        };
        let searcher = self.reader.searcher();
        let limit = (searcher.num_docs() as usize).max(1);
        self.page(
            user,
            &query,
            IndexPage {
                after: None,
                newest_first: true,
                limit,
            },
        )
        .await
    }
}

/// Owns the writer: applies queued changes in batches, one commit each.
struct Worker {
    writer: IndexWriter,
    reader: IndexReader,
    fields: Fields,
    committed: tokio::sync::watch::Sender<u64>,
}

impl Worker {
    fn run(mut self, changes: mpsc::Receiver<(u64, Change)>) {
        while let Ok(first) = changes.recv() {
            let mut batch = vec![first];
            let mut size = 0;
            while size < MAX_BATCH {
                match changes.try_recv() {
                    Ok(next) => {
                        size += next_size(&next.1);
                        batch.push(next);
                    }
                    Err(_) => break,
                }
            }
            let last = batch.last().map_or(0, |(n, _)| *n);
            if let Err(e) = self.apply(batch) {
                tracing::error!(error = %e, "search index: changes not applied");
            }
            // Advance even after a failure: a waiting search must not hang (its page is
            // checked against the table anyway).
            self.committed.send_replace(last);
        }
        if let Err(e) = self.writer.commit() {
            tracing::error!(error = %e, "search index: last commit failed");
        }
    }

    fn apply(&mut self, batch: Vec<(u64, Change)>) -> tantivy::Result<()> {
        // Documents added in this batch, for relocations of messages not committed yet.
        let mut pending: HashMap<ObjectId, IndexedMessage> = HashMap::new();
        for (_, change) in batch {
            match change {
                Change::Put(messages) => {
                    for message in messages {
                        self.replace(&message)?;
                        pending.insert(message.id, message);
                    }
                }
                Change::Remove(ids) => {
                    for id in ids {
                        self.writer
                            .delete_term(Term::from_field_text(self.fields.id, &id.to_string()));
                        pending.remove(&id);
                    }
                }
                Change::Relocate(changes) => {
                    for (id, relocation) in changes {
                        let current = match pending.remove(&id) {
                            Some(m) => Some(m),
                            None => self.stored(&id)?,
                        };
                        let Some(mut message) = current else { continue };
                        match relocation {
                            Relocation::Mailbox(mailbox) => message.mailbox = mailbox,
                            Relocation::Deleted(deleted) => message.deleted = deleted,
                        }
                        self.replace(&message)?;
                        pending.insert(id, message);
                    }
                }
            }
        }
        self.writer.commit()?;
        self.reader.reload()?;
        Ok(())
    }

    fn replace(&self, m: &IndexedMessage) -> tantivy::Result<()> {
        let f = self.fields;
        let id = m.id.to_string();
        self.writer.delete_term(Term::from_field_text(f.id, &id));
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
        self.writer.add_document(doc)?;
        Ok(())
    }

    /// The committed document of `id`, as it was indexed.
    fn stored(&self, id: &ObjectId) -> tantivy::Result<Option<IndexedMessage>> {
        let f = self.fields;
        let searcher = self.reader.searcher();
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
}

fn next_size(change: &Change) -> usize {
    match change {
        Change::Put(m) => m.len(),
        Change::Remove(ids) => ids.len(),
        Change::Relocate(c) => c.len(),
    }
}
