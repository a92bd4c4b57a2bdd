//! Counts the storage round trips a request makes: a wrapper around the real table that
//! counts each call of the port before passing it on.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use eider_shared::store::{Condition, Item, Key, Page, Query, StoreResult, Table, Update, Write};

pub struct CountingTable {
    inner: Arc<dyn Table>,
    calls: AtomicUsize,
}

impl CountingTable {
    pub fn new(inner: Arc<dyn Table>) -> Self {
        CountingTable {
            inner,
            calls: AtomicUsize::new(0),
        }
    }

    /// Calls since the last `take`.
    pub fn take(&self) -> usize {
        self.calls.swap(0, Ordering::SeqCst)
    }

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Table for CountingTable {
    async fn get(&self, key: &Key) -> StoreResult<Option<Item>> {
        self.count();
        self.inner.get(key).await
    }
    async fn get_many(&self, keys: &[Key]) -> StoreResult<Vec<Item>> {
        self.count();
        self.inner.get_many(keys).await
    }
    async fn query(&self, query: &Query) -> StoreResult<Page> {
        self.count();
        self.inner.query(query).await
    }
    async fn transact(&self, writes: Vec<Write>) -> StoreResult<()> {
        self.count();
        self.inner.transact(writes).await
    }
    async fn update(
        &self,
        key: &Key,
        update: Update,
        condition: Option<Condition>,
    ) -> StoreResult<Item> {
        self.count();
        self.inner.update(key, update, condition).await
    }
}
