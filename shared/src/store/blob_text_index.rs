//! The text index where no process owns a data folder (the Lambda functions, `eider-local` on
//! DynamoDB + S3): one Tantivy index per user, its files in the blob store and a pointer item
//! in the table naming the committed generation.
//!
//! * **Files** are immutable (Tantivy never rewrites one): `search/<user>/<file>` in the blob
//!   store. A commit only adds files; the ones a merge or a new delete file replaced are
//!   removed after the pointer moved on.
//! * **The pointer** (`SEARCHINDEX#<user>` / `POINTER`, `keys::search_index`) holds the generation (a counter),
//!   Tantivy's `meta.json` and the generation's file list. A writer commits by replacing it
//!   only if the generation is still the one it started from; a writer that lost the race
//!   starts again from the new generation, so no change is lost and writers of one user never
//!   need a lock.
//! * **Reading** costs one table read (the pointer): an unchanged generation is served from the
//!   index already open; a new one downloads the files missing from the local cache
//!   (`EIDER_SEARCH_CACHE`, default `/tmp/eider-search`), then opens it memory-mapped.
//! * **Writing** (`apply`) opens the current generation in a folder of its own (hard links into
//!   the cache), applies the changes with one writer and one commit, waits for merges, uploads
//!   the new files, then moves the pointer. On Lambda the stream indexer (`eider-indexer`)
//!   writes, batching a user's changes of one stream batch into one commit; `eider-local` on
//!   DynamoDB + S3 writes after each change.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use tantivy::directory::MmapDirectory;
use tantivy::{Index, IndexReader, ReloadPolicy, Searcher};

use super::tantivy_docs::{self, Fields, backend};
use super::text_index::{IndexChange, IndexPage, Placement, TextIndex, TextQuery};
use super::{BlobStore, Condition, Item, Key, StoreError, StoreResult, Table, Write};
use crate::id::ObjectId;

/// The writer's memory budget (Tantivy's least is 15 MB): a Lambda function stays small.
const WRITER_MEMORY: usize = 20_000_000;
/// Commits tried before giving up when other writers keep moving the pointer first.
const MAX_ATTEMPTS: usize = 8;
/// Files downloaded or uploaded at the same time.
const TRANSFERS: usize = 8;
/// Users whose open index and files stay cached in one process (Lambda's /tmp holds their
/// files: template.yaml gives the functions that search 2 GB of it).
const OPEN_USERS: usize = 32;
/// The pointer's counter.
const GENERATION: &str = "generation";
/// The label of a lost commit race.
const MOVED: &str = "search index moved on";

/// The committed state of one user's index.
#[derive(Debug, Clone)]
struct Pointer {
    generation: i64,
    meta: String,
    files: BTreeSet<String>,
}

/// One user's state in this process. The `opened` lock also keeps the process's writers of
/// the user in line (they would only lose races to each other): while one commits, the
/// changes of the others gather in `queue`, and the next one to get the lock commits them all
/// at once (group commit).
#[derive(Default)]
struct Slot {
    opened: tokio::sync::Mutex<Option<Opened>>,
    queue: std::sync::Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    changes: Vec<IndexChange>,
    /// The number of the last batch of changes queued.
    queued: u64,
    /// Batches up to this number were committed, or failed (`failed`).
    done: u64,
    /// Recent failed commits: the batches they held (`from..=through`) and why.
    failed: std::collections::VecDeque<(u64, u64, String)>,
}

impl Queue {
    /// How batch `number` went, once it is done.
    fn outcome(&self, number: u64) -> Option<StoreResult<()>> {
        if number > self.done {
            return None;
        }
        Some(
            match self
                .failed
                .iter()
                .find(|(from, through, _)| (*from..=*through).contains(&number))
            {
                Some((_, _, why)) => Err(backend(why)),
                None => Ok(()),
            },
        )
    }
}

/// A generation opened for searching.
struct Opened {
    generation: i64,
    reader: IndexReader,
    /// The folder it was opened from (its hard links), removed when replaced.
    folder: Option<PathBuf>,
    used: u64,
}

impl Drop for Opened {
    fn drop(&mut self) {
        if let Some(folder) = &self.folder {
            // Open files stay readable after their names are gone.
            let _ = std::fs::remove_dir_all(folder);
        }
    }
}

/// Where a user's pointer item is (the domain's `keys::search_index`).
pub type PointerKey = fn(&ObjectId) -> Key;

pub struct BlobTextIndex {
    table: Arc<dyn Table>,
    pointer_key: PointerKey,
    blobs: Arc<dyn BlobStore>,
    cache: PathBuf,
    fields: Fields,
    /// Per user: the generation open for searches, and the changes waiting for a commit.
    users: std::sync::Mutex<HashMap<ObjectId, Arc<Slot>>>,
    uses: AtomicU64,
}

fn blob_key(user: &ObjectId, file: &str) -> String {
    format!("search/{user}/{file}")
}

fn io(e: impl std::fmt::Display) -> StoreError {
    backend(format!("search cache: {e}"))
}

impl BlobTextIndex {
    /// An index over `table` (its pointers under `pointer_key`) and `blobs`, caching files
    /// under `cache`.
    pub fn new(
        table: Arc<dyn Table>,
        pointer_key: PointerKey,
        blobs: Arc<dyn BlobStore>,
        cache: &Path,
    ) -> BlobTextIndex {
        BlobTextIndex {
            table,
            pointer_key,
            blobs,
            cache: cache.to_path_buf(),
            fields: tantivy_docs::schema().1,
            users: std::sync::Mutex::new(HashMap::new()),
            uses: AtomicU64::new(0),
        }
    }

    /// The cache folder of `EIDER_SEARCH_CACHE`, or `/tmp/eider-search` (Lambda's writable
    /// storage).
    pub fn cache_from_env() -> PathBuf {
        std::env::var_os("EIDER_SEARCH_CACHE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("eider-search"))
    }

    fn slot(&self, user: &ObjectId) -> Arc<Slot> {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if users.len() >= OPEN_USERS && !users.contains_key(user) {
            // Forget the least recently used idle user (its folder goes with it).
            let idle = users
                .iter()
                .filter_map(|(u, slot)| {
                    let opened = slot.opened.try_lock().ok()?;
                    Some((*u, opened.as_ref().map_or(0, |o| o.used)))
                })
                .min_by_key(|(_, used)| *used);
            if let Some((u, _)) = idle {
                users.remove(&u);
                // Its cached files too: the cache holds at most this many users' indexes.
                let _ = std::fs::remove_dir_all(self.user_folder(&u));
            }
        }
        users.entry(*user).or_default().clone()
    }

    fn user_folder(&self, user: &ObjectId) -> PathBuf {
        self.cache.join(user.to_string())
    }

    async fn pointer(&self, user: &ObjectId) -> StoreResult<Option<Pointer>> {
        let Some(item) = self.table.get(&(self.pointer_key)(user)).await? else {
            return Ok(None);
        };
        let meta = item.body["meta"].as_str().unwrap_or_default().to_string();
        let files = item.body["files"]
            .as_array()
            .map(|files| {
                files
                    .iter()
                    .filter_map(|f| f.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(Pointer {
            generation: item.counter(GENERATION),
            meta,
            files,
        }))
    }

    /// A new folder holding `pointer`'s generation (hard links to the cached files, downloading
    /// those missing), or an empty folder for a user without an index.
    async fn materialize(
        &self,
        user: &ObjectId,
        pointer: Option<&Pointer>,
    ) -> StoreResult<PathBuf> {
        let user_folder = self.user_folder(user);
        let files_folder = user_folder.join("files");
        tokio::fs::create_dir_all(&files_folder).await.map_err(io)?;
        let folder = user_folder.join(format!(
            "g{}-{}",
            pointer.map_or(0, |p| p.generation),
            ObjectId::new()
        ));
        tokio::fs::create_dir_all(&folder).await.map_err(io)?;
        let Some(pointer) = pointer else {
            return Ok(folder);
        };
        // Built first (not in a `map` closure), so the future stays `Send`.
        let fetches: Vec<_> = pointer
            .files
            .iter()
            .map(|file| Box::pin(self.fetch(user, &files_folder, file)))
            .collect();
        futures::stream::iter(fetches)
            .buffer_unordered(TRANSFERS)
            .try_collect::<Vec<()>>()
            .await?;
        for file in &pointer.files {
            tokio::fs::hard_link(files_folder.join(file), folder.join(file))
                .await
                .map_err(io)?;
        }
        tokio::fs::write(folder.join("meta.json"), &pointer.meta)
            .await
            .map_err(io)?;
        Ok(folder)
    }

    /// Puts one file of the user's index into the cache, unless it is there.
    async fn fetch(&self, user: &ObjectId, files_folder: &Path, file: &str) -> StoreResult<()> {
        let path = files_folder.join(file);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(());
        }
        let bytes = self
            .blobs
            .get(&blob_key(user, file))
            .await?
            .ok_or_else(|| backend(format!("search index file {file} of {user} is missing")))?;
        // Under a temporary name first: a half-written file is never taken for a whole one.
        let partial = files_folder.join(format!("{file}.{}.part", ObjectId::new()));
        tokio::fs::write(&partial, &bytes).await.map_err(io)?;
        tokio::fs::rename(&partial, &path).await.map_err(io)?;
        Ok(())
    }

    /// The searcher of `user`'s committed generation, opening it when it changed.
    async fn searcher(&self, user: &ObjectId) -> StoreResult<Searcher> {
        let slot = self.slot(user);
        let mut opened = slot.opened.lock().await;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let pointer = self.pointer(user).await?;
            let generation = pointer.as_ref().map_or(0, |p| p.generation);
            let used = self.uses.fetch_add(1, Ordering::Relaxed);
            if let Some(current) = opened.as_mut().filter(|o| o.generation == generation) {
                current.used = used;
                return Ok(current.reader.searcher());
            }
            let fresh = match &pointer {
                None => Ok(Opened {
                    generation: 0,
                    reader: empty_reader()?,
                    folder: None,
                    used,
                }),
                Some(pointer) => self.open(user, pointer, used).await,
            };
            match fresh {
                Ok(fresh) => {
                    let searcher = fresh.reader.searcher();
                    *opened = Some(fresh);
                    return Ok(searcher);
                }
                // A writer may have removed a replaced file between the pointer read and the
                // download: read the pointer again.
                Err(e) if attempt < 3 => {
                    tracing::info!(%user, error = %e, "search index changed while opening; again")
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn open(&self, user: &ObjectId, pointer: &Pointer, used: u64) -> StoreResult<Opened> {
        let folder = self.materialize(user, Some(pointer)).await?;
        let opened = open_reader(&folder).map(|reader| Opened {
            generation: pointer.generation,
            reader,
            folder: Some(folder.clone()),
            used,
        });
        if opened.is_err() {
            let _ = std::fs::remove_dir_all(&folder);
        }
        opened
    }

    /// One commit of `changes` on top of `pointer`'s generation, in a folder of its own:
    /// the new generation's `meta.json` and files.
    async fn commit(
        &self,
        user: &ObjectId,
        pointer: Option<&Pointer>,
        changes: Vec<IndexChange>,
    ) -> StoreResult<(PathBuf, Pointer)> {
        let folder = self.materialize(user, pointer).await?;
        let generation = pointer.map_or(0, |p| p.generation) + 1;
        let fields = self.fields;
        let work = folder.clone();
        let fresh = pointer.is_none();
        let committed =
            tokio::task::spawn_blocking(move || write_generation(&work, fresh, fields, changes))
                .await
                .map_err(backend)?;
        match committed {
            Ok((meta, files)) => Ok((
                folder,
                Pointer {
                    generation,
                    meta,
                    files,
                },
            )),
            Err(e) => {
                let _ = tokio::fs::remove_dir_all(&folder).await;
                Err(e)
            }
        }
    }

    /// Commits `changes` on top of the current generation, starting again from the new one
    /// when another writer moved the pointer first; `opened` becomes the committed generation.
    async fn commit_batch(
        &self,
        user: &ObjectId,
        opened: &mut Option<Opened>,
        changes: Vec<IndexChange>,
    ) -> StoreResult<()> {
        for _ in 0..MAX_ATTEMPTS {
            let previous = self.pointer(user).await?;
            let (folder, next) = self
                .commit(user, previous.as_ref(), changes.clone())
                .await?;
            let moved = async {
                self.upload(user, &folder, previous.as_ref(), &next).await?;
                self.advance(user, previous.as_ref(), &next).await
            }
            .await;
            match moved {
                Ok(true) => {
                    self.settle_files(user, &folder, previous.as_ref(), &next)
                        .await;
                    // The folder just committed is the new generation's: search it next.
                    let used = self.uses.fetch_add(1, Ordering::Relaxed);
                    *opened = open_reader(&folder).ok().map(|reader| Opened {
                        generation: next.generation,
                        reader,
                        folder: Some(folder),
                        used,
                    });
                    return Ok(());
                }
                Ok(false) => {
                    // Files uploaded for the lost generation are unreferenced: remove them.
                    for file in &next.files {
                        if previous.as_ref().is_none_or(|p| !p.files.contains(file)) {
                            let _ = self.blobs.delete(&blob_key(user, file)).await;
                        }
                    }
                    let _ = tokio::fs::remove_dir_all(&folder).await;
                }
                Err(e) => {
                    let _ = tokio::fs::remove_dir_all(&folder).await;
                    return Err(e);
                }
            }
        }
        Err(backend(format!(
            "{user}'s search index kept moving: {MAX_ATTEMPTS} commits lost"
        )))
    }

    /// Uploads the files `next` has that `previous` had not.
    async fn upload(
        &self,
        user: &ObjectId,
        folder: &Path,
        previous: Option<&Pointer>,
        next: &Pointer,
    ) -> StoreResult<()> {
        let new: Vec<&String> = next
            .files
            .iter()
            .filter(|f| previous.is_none_or(|p| !p.files.contains(*f)))
            .collect();
        let puts: Vec<_> = new
            .into_iter()
            .map(|file| {
                Box::pin(async move {
                    let bytes = tokio::fs::read(folder.join(file)).await.map_err(io)?;
                    self.blobs
                        .put(&blob_key(user, file), Bytes::from(bytes))
                        .await
                })
            })
            .collect();
        futures::stream::iter(puts)
            .buffer_unordered(TRANSFERS)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// Moves the pointer from `previous` to `next`; `Ok(false)` when another writer moved it
    /// first.
    async fn advance(
        &self,
        user: &ObjectId,
        previous: Option<&Pointer>,
        next: &Pointer,
    ) -> StoreResult<bool> {
        let item = Item::new(
            (self.pointer_key)(user),
            json!({ "meta": next.meta, "files": next.files }),
        )
        .with_counter(GENERATION, next.generation);
        let write = match previous {
            None => Write::put_new(item, MOVED),
            Some(p) => Write::put(item).when(
                Condition::CounterEquals(GENERATION.into(), p.generation),
                MOVED,
            ),
        };
        match self.table.transact(vec![write]).await {
            Ok(()) => Ok(true),
            Err(StoreError::ConditionFailed { label: MOVED }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Keeps the files of a committed generation in the cache and drops those it replaced,
    /// there and in the blob store (a reader still opening the old generation reads the
    /// pointer again).
    async fn settle_files(
        &self,
        user: &ObjectId,
        folder: &Path,
        previous: Option<&Pointer>,
        next: &Pointer,
    ) {
        let files_folder = self.user_folder(user).join("files");
        for file in &next.files {
            let cached = files_folder.join(file);
            if !cached.exists() {
                let _ = std::fs::hard_link(folder.join(file), &cached);
            }
        }
        let Some(previous) = previous else { return };
        for file in previous.files.difference(&next.files) {
            let _ = std::fs::remove_file(files_folder.join(file));
            if let Err(e) = self.blobs.delete(&blob_key(user, file)).await {
                tracing::warn!(%user, file, error = %e, "replaced search index file not removed");
            }
        }
    }
}

fn empty_reader() -> StoreResult<IndexReader> {
    let index = Index::builder()
        .schema(tantivy_docs::schema().0)
        .settings(tantivy_docs::settings())
        .create_in_ram()
        .map_err(backend)?;
    tantivy_docs::prepare(&index);
    index.reader().map_err(backend)
}

fn open_reader(folder: &Path) -> StoreResult<IndexReader> {
    let directory = MmapDirectory::open(folder).map_err(backend)?;
    let index = Index::open(directory).map_err(backend)?;
    tantivy_docs::prepare(&index);
    index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()
        .map_err(backend)
}

/// Replaces a generation made before segments were sorted (its files in `folder`) by a sorted
/// index of the same documents, copied from their stored fields, before a write goes on top:
/// every user's index in the bucket becomes sorted with its next change. The old files stay in
/// the bucket until the new generation's pointer replaces theirs, like any merged file.
fn replace_with_sorted_copy(folder: &Path, old: Index) -> StoreResult<()> {
    let mut name = folder.as_os_str().to_owned();
    name.push(".sorting");
    let sorting = PathBuf::from(name);
    let _ = std::fs::remove_dir_all(&sorting);
    std::fs::create_dir_all(&sorting).map_err(io)?;
    tantivy_docs::sorted_copy(&old, &sorting, WRITER_MEMORY).map_err(backend)?;
    drop(old);
    // The folder's files are links into the local cache: unlinking them here loses nothing.
    for entry in std::fs::read_dir(folder).map_err(io)? {
        std::fs::remove_file(entry.map_err(io)?.path()).map_err(io)?;
    }
    for entry in std::fs::read_dir(&sorting).map_err(io)? {
        let entry = entry.map_err(io)?;
        std::fs::rename(entry.path(), folder.join(entry.file_name())).map_err(io)?;
    }
    std::fs::remove_dir_all(&sorting).map_err(io)?;
    Ok(())
}

/// Applies `changes` to the generation in `folder` (a new index when `fresh`) and commits:
/// the new `meta.json` and the names of every file it needs.
fn write_generation(
    folder: &Path,
    fresh: bool,
    fields: Fields,
    changes: Vec<IndexChange>,
) -> StoreResult<(String, BTreeSet<String>)> {
    let open = || Index::open(MmapDirectory::open(folder).map_err(backend)?).map_err(backend);
    let index = if fresh {
        let directory = MmapDirectory::open(folder).map_err(backend)?;
        Index::create(
            directory,
            tantivy_docs::schema().0,
            tantivy_docs::settings(),
        )
        .map_err(backend)?
    } else {
        let index = open()?;
        if tantivy_docs::sorted_newest_first(&index) {
            index
        } else {
            replace_with_sorted_copy(folder, index)?;
            open()?
        }
    };
    tantivy_docs::prepare(&index);
    let reader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()
        .map_err(backend)?;
    let mut writer = index
        .writer_with_num_threads(1, WRITER_MEMORY)
        .map_err(backend)?;
    tantivy_docs::apply(&writer, &reader.searcher(), fields, changes).map_err(backend)?;
    writer.commit().map_err(backend)?;
    // Merges end in their own commits of meta.json: wait, so the generation is final.
    writer.wait_merging_threads().map_err(backend)?;
    let metas = index.load_metas().map_err(backend)?;
    let meta = std::fs::read_to_string(folder.join("meta.json")).map_err(io)?;
    // Each segment's files: its components, and only the delete file of its delete opstamp
    // (older ones linked in from earlier generations are not needed).
    let mut files = BTreeSet::new();
    let entries = std::fs::read_dir(folder).map_err(io)?;
    let names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    for segment in &metas.segments {
        let uuid = segment.id().uuid_string();
        let delete = segment
            .delete_opstamp()
            .map(|opstamp| format!("{uuid}.{opstamp}.del"));
        for name in &names {
            let Some(rest) = name.strip_prefix(&uuid) else {
                continue;
            };
            if !rest.starts_with('.') || rest.ends_with(".lock") {
                continue;
            }
            if rest.ends_with(".del") && Some(name) != delete.as_ref() {
                continue;
            }
            files.insert(name.clone());
        }
    }
    Ok((meta, files))
}

#[async_trait]
impl TextIndex for BlobTextIndex {
    /// Removes `user`'s whole index: its files and its pointer.
    async fn forget_user(&self, user: &ObjectId) -> StoreResult<()> {
        if let Some(pointer) = self.pointer(user).await? {
            for file in &pointer.files {
                self.blobs.delete(&blob_key(user, file)).await?;
            }
            self.table
                .transact(vec![Write::delete((self.pointer_key)(user))])
                .await?;
        }
        self.users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(user);
        let _ = tokio::fs::remove_dir_all(self.user_folder(user)).await;
        Ok(())
    }

    async fn apply(&self, user: &ObjectId, changes: Vec<IndexChange>) -> StoreResult<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let slot = self.slot(user);
        let number = {
            let mut queue = slot.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.changes.extend(changes);
            queue.queued += 1;
            queue.queued
        };
        let mut opened = slot.opened.lock().await;
        // Committed meanwhile with another writer's batch?
        let (batch, from, through) = {
            let mut queue = slot.queue.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(outcome) = queue.outcome(number) {
                return outcome;
            }
            (
                std::mem::take(&mut queue.changes),
                queue.done + 1,
                queue.queued,
            )
        };
        let committed = self.commit_batch(user, &mut opened, batch).await;
        let mut queue = slot.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.done = through;
        if let Err(e) = &committed {
            queue.failed.push_back((from, through, e.to_string()));
            if queue.failed.len() > 64 {
                queue.failed.pop_front();
            }
        }
        committed
    }

    async fn placements(
        &self,
        user: &ObjectId,
        ids: &[ObjectId],
    ) -> StoreResult<HashMap<ObjectId, Placement>> {
        tantivy_docs::placements(&self.searcher(user).await?, self.fields, user, ids)
    }

    async fn settle(&self) -> StoreResult<()> {
        // A change is visible once `apply` returned.
        Ok(())
    }

    async fn page(
        &self,
        user: &ObjectId,
        query: &TextQuery,
        page: IndexPage,
    ) -> StoreResult<Vec<ObjectId>> {
        tantivy_docs::page(&self.searcher(user).await?, self.fields, user, query, page)
    }

    async fn count(&self, user: &ObjectId, query: &TextQuery) -> StoreResult<u64> {
        tantivy_docs::count(&self.searcher(user).await?, self.fields, user, query)
    }

    async fn ids_in(&self, user: &ObjectId, mailbox: &ObjectId) -> StoreResult<Vec<ObjectId>> {
        tantivy_docs::ids_in(&self.searcher(user).await?, self.fields, user, mailbox)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::text_index::IndexedMessage;

    fn message(n: u32) -> IndexedMessage {
        let mut id = [0u8; 12];
        id[..4].copy_from_slice(&(1_700_000_000 + n / 7).to_be_bytes());
        id[8..].copy_from_slice(&n.to_be_bytes());
        IndexedMessage {
            user: ObjectId::from_bytes([9; 12]),
            id: ObjectId::from_bytes(id),
            mailbox: ObjectId::from_bytes([1; 12]),
            thread: ObjectId::from_bytes([2; 12]),
            idate: i64::from(n),
            size: 10,
            attachments: false,
            deleted: false,
            terms: vec!["word".into()],
        }
    }

    #[test]
    fn a_generation_made_before_sorting_is_written_sorted() {
        let folder = tempfile::tempdir().unwrap();
        let (schema, fields) = tantivy_docs::schema();
        // A generation as written before the sort setting, in two commits.
        {
            let index = Index::create_in_dir(folder.path(), schema).unwrap();
            tantivy_docs::prepare(&index);
            let reader: IndexReader = index.reader().unwrap();
            let mut writer: tantivy::IndexWriter =
                index.writer_with_num_threads(1, 15_000_000).unwrap();
            for range in [0..60u32, 60..120] {
                let changes = range.rev().map(|n| IndexChange::Put(message(n))).collect();
                tantivy_docs::apply(&writer, &reader.searcher(), fields, changes).unwrap();
                writer.commit().unwrap();
                reader.reload().unwrap();
            }
            assert!(!tantivy_docs::sorted_newest_first(&index));
        }
        let changes = vec![
            IndexChange::Put(message(120)),
            IndexChange::Remove(message(3).id),
        ];
        let (meta, files) = write_generation(folder.path(), false, fields, changes).unwrap();
        assert!(meta.contains("sort_by_field"), "{meta}");
        for file in &files {
            assert!(folder.path().join(file).exists(), "{file}");
        }
        let reader = open_reader(folder.path()).unwrap();
        let searcher = reader.searcher();
        assert!(tantivy_docs::sorted_newest_first(searcher.index()));
        let user = ObjectId::from_bytes([9; 12]);
        let query = TextQuery {
            all: vec!["word".into()],
            ..Default::default()
        };
        let page = IndexPage {
            after: None,
            newest_first: true,
            limit: 500,
        };
        let ids = tantivy_docs::page(&searcher, fields, &user, &query, page).unwrap();
        let expected: Vec<ObjectId> = (0..=120)
            .rev()
            .filter(|n| *n != 3)
            .map(|n| message(n).id)
            .collect();
        assert_eq!(ids, expected);
        let mut sorting = folder.path().as_os_str().to_owned();
        sorting.push(".sorting");
        assert!(
            !PathBuf::from(sorting).exists(),
            "the copy's folder is removed"
        );
    }
}
