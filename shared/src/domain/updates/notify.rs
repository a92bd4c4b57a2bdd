//! Waking update streams without polling: the local server's in-process notifier, and the
//! table hook that calls it when a transaction with journal events commits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::domain::keys;
use crate::id::ObjectId;
use crate::store::decorate::{Call, Decorated, TableHooks};
use crate::store::{StoreResult, Table, Write};

/// Wakes the streams of a user when a journal write of that user has committed. The local
/// server has one ([`LocalNotifier`]); Lambda has none (there, streams poll the journal and
/// WebSocket clients get pushes from the DynamoDB stream).
pub trait ChangeNotifier: Send + Sync {
    /// A journal write of `user` has committed.
    fn notify(&self, user: &ObjectId);
    /// A receiver that changes after every later [`ChangeNotifier::notify`] of `user`, and
    /// reports the channel closed when the notifier shuts down.
    fn subscribe(&self, user: &ObjectId) -> watch::Receiver<u64>;
}

/// The in-process notifier: one `watch` channel per user with waiting streams. A `watch`
/// keeps only "changed since you looked", so a burst of writes wakes a stream once and a slow
/// stream never lags behind a queue.
#[derive(Debug, Default)]
pub struct LocalNotifier {
    state: Mutex<NotifierState>,
}

#[derive(Debug, Default)]
struct NotifierState {
    senders: HashMap<ObjectId, watch::Sender<u64>>,
    closed: bool,
}

/// Above this many channels, subscribing first drops those nobody listens to any more.
const PRUNE_ABOVE: usize = 1024;

impl LocalNotifier {
    pub fn new() -> LocalNotifier {
        LocalNotifier::default()
    }

    /// Shuts down: every waiting stream sees its channel closed and ends, so a graceful
    /// server shutdown is not held up by open streams.
    pub fn close(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.closed = true;
        state.senders.clear();
    }

    /// Users with a channel (tests: channels of finished streams go away).
    pub fn channels(&self) -> usize {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.senders.len()
    }
}

impl ChangeNotifier for LocalNotifier {
    fn notify(&self, user: &ObjectId) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sender) = state.senders.get(user) {
            if sender.receiver_count() == 0 {
                state.senders.remove(user);
            } else {
                sender.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }

    fn subscribe(&self, user: &ObjectId) -> watch::Receiver<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.closed {
            // Its sender is dropped at once: the stream sees a closed channel and ends.
            return watch::channel(0).1;
        }
        if state.senders.len() > PRUNE_ABOVE {
            state.senders.retain(|_, s| s.receiver_count() > 0);
        }
        state
            .senders
            .entry(*user)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }
}

/// The table hook of the local server: after a transaction that wrote journal events
/// commits, the notifier wakes the streams of those users. Every journal write goes through
/// [`Table::transact`] (a change and its events commit together), so watching the table
/// catches them all, whichever domain module writes them.
pub struct JournalHook {
    notifier: Arc<dyn ChangeNotifier>,
}

/// The table wrapped with a [`JournalHook`].
pub type JournalWatch = Decorated<JournalHook>;

impl JournalHook {
    pub fn watch(inner: Arc<dyn Table>, notifier: Arc<dyn ChangeNotifier>) -> JournalWatch {
        Decorated::new(inner, JournalHook { notifier })
    }
}

impl TableHooks for JournalHook {
    /// The users whose journal a transaction adds to.
    type Memo = Vec<ObjectId>;

    fn before(&self, call: Call<'_>) -> StoreResult<Vec<ObjectId>> {
        Ok(match call {
            Call::Transact(writes) => journal_users(writes),
            _ => Vec::new(),
        })
    }

    fn after(&self, users: Vec<ObjectId>) {
        for user in &users {
            self.notifier.notify(user);
        }
    }
}

/// The users whose journal the writes add to.
fn journal_users(writes: &[Write]) -> Vec<ObjectId> {
    let mut users: Vec<ObjectId> = writes
        .iter()
        .filter_map(|w| match w {
            Write::Put { item, .. } => item.pk.strip_prefix(keys::JOURNAL_PK_PREFIX),
            _ => None,
        })
        .filter_map(|user| user.parse().ok())
        .collect();
    users.sort();
    users.dedup();
    users
}
