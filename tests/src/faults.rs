//! Fault injection around a real table: the backend does its real work, except that chosen
//! transactions (or blob deletes) fail as if the process had died before the write (the write
//! never happens).

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use eider_shared::store::decorate::{Call, Decorated, TableHooks};
use eider_shared::store::{BlobStore, BlobStream, StoreError, StoreResult, Table, Write};

/// Fails every transaction that puts an item whose key starts with `pk_prefix`, `times`
/// times; everything else goes to the real table.
pub struct FailingWrites {
    pk_prefix: String,
    remaining: AtomicUsize,
}

impl FailingWrites {
    pub fn new(inner: Arc<dyn Table>, pk_prefix: &str, times: usize) -> Decorated<FailingWrites> {
        let hooks = FailingWrites {
            pk_prefix: pk_prefix.into(),
            remaining: AtomicUsize::new(times),
        };
        Decorated::new(inner, hooks)
    }

    fn should_fail(&self, writes: &[Write]) -> bool {
        let hit = writes
            .iter()
            .any(|w| matches!(w, Write::Put { item, .. } if item.pk.starts_with(&self.pk_prefix)));
        hit && self
            .remaining
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

impl TableHooks for FailingWrites {
    type Memo = ();

    fn before(&self, call: Call<'_>) -> StoreResult<()> {
        match call {
            Call::Transact(writes) if self.should_fail(writes) => Err(StoreError::Backend(
                anyhow::anyhow!("injected fault: the process died"),
            )),
            _ => Ok(()),
        }
    }
}

/// A blob store whose deletes fail (as when the process dies before them); everything else
/// goes to the real store.
pub struct FailingBlobDeletes {
    inner: Arc<dyn BlobStore>,
}

impl FailingBlobDeletes {
    pub fn new(inner: Arc<dyn BlobStore>) -> Self {
        FailingBlobDeletes { inner }
    }
}

#[async_trait]
impl BlobStore for FailingBlobDeletes {
    async fn put(&self, key: &str, bytes: Bytes) -> StoreResult<()> {
        self.inner.put(key, bytes).await
    }
    async fn get(&self, key: &str) -> StoreResult<Option<Bytes>> {
        self.inner.get(key).await
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Option<Bytes>> {
        self.inner.get_range(key, range).await
    }
    async fn spool(&self, body: BlobStream, max: u64) -> StoreResult<Bytes> {
        self.inner.spool(body, max).await
    }
    async fn delete(&self, _key: &str) -> StoreResult<()> {
        Err(StoreError::Backend(anyhow::anyhow!(
            "injected fault: the process died"
        )))
    }
}
