//! The embedded blob store: the [`BlobStore`] port on a folder of files, one file per key.
//!
//! Keys may contain `/` (they become sub-folders). A put writes a temporary file next to the
//! target, flushes it to disk and renames it over the target, so readers and crashes only ever
//! see a whole blob. This module also owns the key rules both blob backends apply.
//!
//! One difference from S3 that cannot be hidden: a key cannot be both an object and the folder
//! of other objects (`a` and `a/b`); such a put fails with a backend error.

use std::io::{ErrorKind, Read, Seek, SeekFrom, Write as _};
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt as _;
use tokio::io::AsyncWriteExt as _;

use super::rules::check_blob_key;
use super::{BlobStore, BlobStream, StoreError, StoreResult};

/// Files up to this size are read on the calling thread (see `get`).
const INLINE_READ_BYTES: u64 = 256 * 1024;

/// Blobs as files under one root folder.
#[derive(Debug, Clone)]
pub struct FsBlobStore {
    root: PathBuf,
}

impl FsBlobStore {
    /// A store rooted at `dir`, created (with its parents) if missing.
    pub fn new(dir: impl Into<PathBuf>) -> anyhow::Result<Self> {
        let root = dir.into();
        std::fs::create_dir_all(&root)
            .with_context(|| format!("cannot create the blob folder {}", root.display()))?;
        Ok(FsBlobStore { root })
    }

    /// The file of `key`, after checking the key.
    fn path(&self, key: &str) -> StoreResult<PathBuf> {
        check_blob_key(key)?;
        Ok(self.root.join(key))
    }
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn put(&self, key: &str, bytes: Bytes) -> StoreResult<()> {
        let path = self.path(key)?;
        blocking(move || write_atomically(&path, &bytes)).await
    }

    async fn get(&self, key: &str) -> StoreResult<Option<Bytes>> {
        let path = self.path(key)?;
        // A small file is read here: from the page cache that takes microseconds, less than
        // the switch to a blocking thread and back (profiled on `GET` of a message).
        let small = std::fs::metadata(&path)
            .is_ok_and(|meta| meta.is_file() && meta.len() <= INLINE_READ_BYTES);
        let read = move || match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(io_error(e, &path)),
        };
        if small { read() } else { blocking(read).await }
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Option<Bytes>> {
        let path = self.path(key)?;
        blocking(move || {
            let mut file = match std::fs::File::open(&path) {
                Ok(file) => file,
                Err(e) if is_missing(&e) => return Ok(None),
                Err(e) => return Err(io_error(e, &path)),
            };
            let meta = file.metadata().map_err(|e| io_error(e, &path))?;
            if meta.is_dir() {
                return Ok(None); // opening a folder succeeds; it is no blob
            }
            let len = meta.len();
            let start = range.start.min(len);
            let end = range.end.clamp(start, len);
            let mut buf = vec![0; usize::try_from(end - start).map_err(anyhow::Error::from)?];
            file.seek(SeekFrom::Start(start))
                .map_err(|e| io_error(e, &path))?;
            file.read_exact(&mut buf).map_err(|e| io_error(e, &path))?;
            Ok(Some(Bytes::from(buf)))
        })
        .await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        let path = self.path(key)?;
        blocking(move || match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if is_missing(&e) => Ok(()),
            Err(e) => Err(io_error(e, &path)),
        })
        .await
    }

    async fn spool(&self, mut body: BlobStream, max: u64) -> StoreResult<Bytes> {
        let root = self.root.clone();
        // Unnamed (O_TMPFILE where the system has it): nothing to clean up, even after a crash.
        let file =
            blocking(move || tempfile::tempfile_in(&root).map_err(|e| io_error(e, &root))).await?;
        let mut writer = tokio::io::BufWriter::with_capacity(
            SPOOL_WRITE_BUFFER,
            tokio::fs::File::from_std(file),
        );
        let mut len = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| spool_error(e.into()))?;
            len += chunk.len() as u64;
            if len > max {
                return Err(StoreError::TooLarge(max));
            }
            writer
                .write_all(&chunk)
                .await
                .map_err(|e| spool_error(e.into()))?;
        }
        writer.flush().await.map_err(|e| spool_error(e.into()))?;
        if len == 0 {
            return Ok(Bytes::new()); // an empty file cannot be mapped
        }
        let file = writer.into_inner().into_std().await;
        blocking(move || {
            // SAFETY: the file has no name and only this process holds it; nothing can
            // truncate or change it under the mapping, which is read-only.
            #[allow(unsafe_code)]
            let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| spool_error(e.into()))?;
            Ok(Bytes::from_owner(map))
        })
        .await
    }
}

/// Bytes gathered before each write of a spool (hyper hands a body on in small chunks).
const SPOOL_WRITE_BUFFER: usize = 1 << 20;

fn spool_error(e: anyhow::Error) -> StoreError {
    StoreError::Backend(e.context("spooled body"))
}

/// Writes `bytes` to a fresh temporary file beside `path`, syncs it, then renames it over
/// `path` (atomic on one file system) and syncs the folder so the rename survives a crash.
fn write_atomically(path: &Path, bytes: &[u8]) -> StoreResult<()> {
    let dir = path
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent", path.display()))?;
    std::fs::create_dir_all(dir).map_err(|e| io_error(e, dir))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_error(e, path));
    }
    // Best effort: some file systems cannot sync a folder.
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Errors that mean "no such blob": also a path through (or onto) a folder.
fn is_missing(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::NotFound | ErrorKind::NotADirectory | ErrorKind::IsADirectory
    )
}

fn io_error(e: std::io::Error, path: &Path) -> StoreError {
    StoreError::Backend(anyhow::Error::new(e).context(format!("blob file {}", path.display())))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> StoreResult<T> + Send + 'static,
) -> StoreResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("blob task failed")
        .map_err(StoreError::Backend)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_leave_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::new(dir.path().join("blobs")).unwrap();
        store
            .put("a/b/c", Bytes::from_static(b"one"))
            .await
            .unwrap();
        store
            .put("a/b/c", Bytes::from_static(b"two"))
            .await
            .unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path().join("blobs/a/b"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["c"]);
        assert_eq!(store.get("a/b/c").await.unwrap().unwrap(), &b"two"[..]);
    }

    #[test]
    fn key_rules() {
        for ok in ["a", "a/b", "messages/2024/x.eml", ".hidden", "a..b"] {
            assert!(check_blob_key(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/a", "a/../b", "..", "a/./b", "a//b", "a/", "a\0b"] {
            assert!(
                matches!(check_blob_key(bad), Err(StoreError::Invalid(_))),
                "{bad:?}"
            );
        }
    }
}
