//! `POST /users/{user}/search`: an action (move, flag, delete) applied to every message a
//! search matches, as a background task (`SEARCHAPPLY#<user>#<task>` on gsi1 `TASKS`).
//!
//! The task walks the search's results oldest first, a page of [`STEP`] at a time, applies the
//! action to the page, and keeps the page's cursor: results are ordered by message id, which a
//! move or a flag change keeps, so the walk neither skips nor repeats a message however the
//! action changes the result set. The request runs the first page itself; the janitor (or the
//! local server's loop) the rest.

use std::collections::BTreeMap;

use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::mailboxes;
use super::messages::{self, FlagChanges, MessageUpdate, Selector};
use super::paging::{Direction, PageRequest};
use super::search::{self, SearchQuery};
use super::{AppState, DomainError, DomainResult, keys, users};
use crate::id::ObjectId;
use crate::store::{Condition, Item, Key, StoreError, Write};

/// Messages one step handles.
pub const STEP: usize = 50;
const TASK_GONE: &str = "search task gone";

/// What to do with each match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchAction {
    pub move_to: Option<ObjectId>,
    pub seen: Option<bool>,
    pub flagged: Option<bool>,
    #[serde(default)]
    pub delete: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchTask {
    pub id: ObjectId,
    pub user: ObjectId,
    pub query: SearchQuery,
    pub action: SearchAction,
    /// The cursor after the last page handled.
    #[serde(default)]
    pub after: Option<String>,
    #[serde(default)]
    pub changed: u64,
}

impl SearchTask {
    fn key(&self) -> Key {
        keys::search_task(&self.user, &self.id)
    }

    fn item(&self) -> Item {
        Item::new(self.key(), serde_json::to_value(self).unwrap_or_default()).with_gsi1(
            keys::search_task_entry(Utc::now().timestamp(), &self.user, &self.id),
        )
    }
}

/// Starts the task; answers its id. A `moveTo` that is not the user's is refused here (WildDuck
/// fails the task later).
pub async fn start(
    state: &AppState,
    user: &ObjectId,
    query: SearchQuery,
    action: SearchAction,
) -> DomainResult<ObjectId> {
    users::load(state, user).await?;
    if let Some(target) = action.move_to {
        mailboxes::load(state, user, &target).await?;
    }
    let task = SearchTask {
        id: ObjectId::new(),
        user: *user,
        query,
        action,
        after: None,
        changed: 0,
    };
    state
        .table
        .transact(vec![Write::put_new(task.item(), TASK_GONE)])
        .await?;
    if let Err(e) = step(state, &task.key()).await {
        tracing::warn!(task = %task.id, error = %e, "search action step failed; the janitor retries");
    }
    Ok(task.id)
}

/// One page of the task at `key`; returns whether the task is finished (or gone).
pub async fn step(state: &AppState, key: &Key) -> DomainResult<bool> {
    let Some(item) = state.table.get(key).await? else {
        return Ok(true);
    };
    let mut task: SearchTask = item
        .body_as()
        .map_err(|e| DomainError::corrupt("search task", &item.pk, e))?;
    let page = PageRequest {
        limit: STEP,
        direction: match &task.after {
            Some(cursor) => Direction::After(cursor.clone()),
            None => Direction::First,
        },
        page: 1,
    };
    let result = match search::search_page(state, &task.user, task.query.clone(), true, &page).await
    {
        Ok(result) => result,
        Err(DomainError::UserNotFound(_)) => {
            state
                .table
                .transact(vec![Write::delete(key.clone())])
                .await?;
            return Ok(true);
        }
        Err(e) => return Err(e),
    };
    let mut by_mailbox: BTreeMap<ObjectId, Vec<u32>> = BTreeMap::new();
    for message in &result.page.items {
        by_mailbox
            .entry(message.mailbox)
            .or_default()
            .push(message.uid);
    }
    for (mailbox, uids) in by_mailbox {
        task.changed += apply(state, &task.user, &mailbox, uids, &task.action).await? as u64;
    }
    let finished = result.page.next.is_none();
    let write = if finished {
        tracing::info!(task = %task.id, user = %task.user, changed = task.changed, "search action finished");
        Write::delete(task.key())
    } else {
        task.after = result.page.next;
        Write::put(task.item()).when(Condition::Exists, TASK_GONE)
    };
    match state.table.transact(vec![write]).await {
        Ok(()) | Err(StoreError::ConditionFailed { .. }) => Ok(finished),
        Err(e) => Err(e.into()),
    }
}

/// Applies the action to some messages of one mailbox; answers how many changed.
async fn apply(
    state: &AppState,
    user: &ObjectId,
    mailbox: &ObjectId,
    uids: Vec<u32>,
    action: &SearchAction,
) -> DomainResult<usize> {
    if action.delete {
        let source = mailboxes::load(state, user, mailbox).await?;
        let mut found = Vec::new();
        for uid in uids {
            match messages::load(state, user, mailbox, uid).await {
                Ok(m) => found.push(m),
                Err(DomainError::MessageNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        return messages::remove_messages(state, &source, found, true).await;
    }
    let changes = FlagChanges {
        seen: action.seen,
        flagged: action.flagged,
        ..Default::default()
    };
    // Already where it should go: only the flags.
    let move_to = action.move_to.filter(|target| target != mailbox);
    if move_to.is_none() && changes.is_empty() {
        return Ok(0);
    }
    let request = MessageUpdate {
        selector: Selector::List(uids),
        move_to,
        changes,
    };
    match messages::update(state, user, mailbox, request).await {
        Ok(messages::Updated::Flags(n)) => Ok(n),
        Ok(messages::Updated::Moved { uids, .. }) => Ok(uids.len()),
        Err(DomainError::MessageNotFound(_)) | Err(DomainError::NoUpdates(_)) => Ok(0),
        Err(e) => Err(e),
    }
}
