//! Counts the storage round trips a request makes: a decorator around the real table that
//! counts each call of the port before passing it on.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use eider_shared::store::decorate::{Call, Decorated, TableHooks};
use eider_shared::store::{StoreResult, Table};

/// The real table, counting its calls.
pub type CountingTable = Decorated<CallCounter>;

#[derive(Default)]
pub struct CallCounter {
    calls: AtomicUsize,
}

impl CallCounter {
    pub fn wrap(inner: Arc<dyn Table>) -> CountingTable {
        Decorated::new(inner, CallCounter::default())
    }

    /// Calls since the last `take`.
    pub fn take(&self) -> usize {
        self.calls.swap(0, Ordering::SeqCst)
    }
}

impl TableHooks for CallCounter {
    type Memo = ();

    fn before(&self, _: Call<'_>) -> StoreResult<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}
