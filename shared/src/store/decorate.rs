//! Decorators: a [`Table`] wrapped with hooks that see every call before it reaches the real
//! table (the local server's journal watch, the tests' fault injection and call counting).
//!
//! [`Decorated`] implements every method of the port once, passing each call on, so a
//! decorator only writes its hooks and can never forget a method (a forgotten `delete_many`
//! would fall back to the port's default, losing DynamoDB's batch delete).

use std::sync::Arc;

use async_trait::async_trait;

use super::{Guard, Item, Key, Page, Query, StoreResult, Table, Update, Write};

/// One call of the port, as a hook sees it.
#[derive(Debug, Clone, Copy)]
pub enum Call<'a> {
    Get(&'a Key),
    GetMany(&'a [Key]),
    Query(&'a Query),
    Transact(&'a [Write]),
    DeleteMany(&'a [Key]),
    Update {
        key: &'a Key,
        update: &'a Update,
        guard: Option<&'a Guard>,
    },
}

/// What a decorator adds around the calls of the table it wraps.
pub trait TableHooks: Send + Sync {
    /// What [`TableHooks::before`] hands on to [`TableHooks::after`].
    type Memo: Send;
    /// Runs before the call reaches the table; an error fails the call without touching it.
    fn before(&self, call: Call<'_>) -> StoreResult<Self::Memo>;
    /// Runs after the call succeeded.
    fn after(&self, _memo: Self::Memo) {}
}

/// `inner` with `hooks` around each of its calls.
pub struct Decorated<H> {
    inner: Arc<dyn Table>,
    hooks: H,
}

impl<H: TableHooks> Decorated<H> {
    pub fn new(inner: Arc<dyn Table>, hooks: H) -> Self {
        Decorated { inner, hooks }
    }
    pub fn hooks(&self) -> &H {
        &self.hooks
    }
}

#[async_trait]
impl<H: TableHooks> Table for Decorated<H> {
    async fn get(&self, key: &Key) -> StoreResult<Option<Item>> {
        let memo = self.hooks.before(Call::Get(key))?;
        let found = self.inner.get(key).await?;
        self.hooks.after(memo);
        Ok(found)
    }

    async fn get_many(&self, keys: &[Key]) -> StoreResult<Vec<Item>> {
        let memo = self.hooks.before(Call::GetMany(keys))?;
        let found = self.inner.get_many(keys).await?;
        self.hooks.after(memo);
        Ok(found)
    }

    async fn query(&self, query: &Query) -> StoreResult<Page> {
        let memo = self.hooks.before(Call::Query(query))?;
        let page = self.inner.query(query).await?;
        self.hooks.after(memo);
        Ok(page)
    }

    async fn transact(&self, writes: Vec<Write>) -> StoreResult<()> {
        let memo = self.hooks.before(Call::Transact(&writes))?;
        self.inner.transact(writes).await?;
        self.hooks.after(memo);
        Ok(())
    }

    async fn delete_many(&self, keys: &[Key]) -> StoreResult<()> {
        let memo = self.hooks.before(Call::DeleteMany(keys))?;
        self.inner.delete_many(keys).await?;
        self.hooks.after(memo);
        Ok(())
    }

    async fn update(&self, key: &Key, update: Update, guard: Option<Guard>) -> StoreResult<Item> {
        let memo = self.hooks.before(Call::Update {
            key,
            update: &update,
            guard: guard.as_ref(),
        })?;
        let item = self.inner.update(key, update, guard).await?;
        self.hooks.after(memo);
        Ok(item)
    }
}
