//! The archive: deleted messages stay restorable for `EIDER_ARCHIVE_DAYS` (14 by default),
//! outside the quota, addressed by their hex message id. The janitor purges them (item and
//! blob) when their time is up.
//!
//! Also the quota recount (`POST /users/{user}/quota/reset`).

use serde_json::{Map, Value, json};

use super::mailboxes::{self, StoredMailbox};
use super::messages::{Archived, Message, details_json};
use super::users::{self, ARCHIVED_COUNT, STORAGE_USED};
use super::{journal, keys};
use crate::error::{ApiError, ApiResult};
use crate::http::AppState;
use crate::http::paging::{PageRequest, walk_partition};
use crate::http::validate::{Str, Validator, session_only};
use crate::id::ObjectId;
use crate::store::{Condition, Item, Query, StoreError, Update, Write};

fn not_found() -> ApiError {
    ApiError::not_found("MessageNotFound", "This message does not exist")
}

fn from_item(item: &Item) -> ApiResult<Archived> {
    serde_json::from_value(item.body.clone()).map_err(|e| {
        ApiError::internal(anyhow::anyhow!("corrupt archived message {}: {e}", item.sk))
    })
}

/// The listing shape: a message listing entry whose `id` is the hex message id.
fn list_json(archived: &Archived) -> Value {
    let mut entry = archived.message.list_json();
    entry["id"] = json!(archived.message.id);
    entry["uid"] = json!(archived.message.uid);
    entry["archived"] = json!(archived.archived);
    entry["expires"] = json!(archived.purge_at);
    entry
}

/// `GET /users/{user}/archived` (and WildDuck's `/archived/messages`): newest first.
pub async fn list(
    state: &AppState,
    user: &ObjectId,
    params: Map<String, Value>,
) -> ApiResult<Value> {
    let mut v = Validator::new(params);
    let ascending = v.string("order", Str::max(4).trim().lowercase()).as_deref() == Some("asc");
    v.session();
    let page = PageRequest::from_params(&mut v);
    v.finish()?;
    let owner = users::load(state, user).await?;
    let pk = keys::archive_pk(user);
    let result = walk_partition(state.table.as_ref(), &pk, "", !ascending, &page, &|_| true)
        .await?
        .ok_or_else(|| page.invalid_cursor())?;
    let results = result
        .items
        .iter()
        .map(|i| from_item(i).map(|a| list_json(&a)))
        .collect::<ApiResult<Vec<_>>>()?;
    let total = state
        .table
        .get(&keys::user(user))
        .await?
        .map(|i| i.counter(ARCHIVED_COUNT).max(0))
        .unwrap_or_default();
    let _ = owner;
    let mut body = json!({ "success": true, "total": total });
    if let (Value::Object(out), Value::Object(paging)) = (&mut body, result.paging_json(&page)) {
        out.extend(paging);
    }
    body["results"] = Value::Array(results);
    Ok(body)
}

async fn load(state: &AppState, user: &ObjectId, id: &ObjectId) -> ApiResult<Archived> {
    let item = state
        .table
        .get(&keys::archived(user, id))
        .await?
        .ok_or_else(not_found)?;
    from_item(&item)
}

/// `GET /users/{user}/archived/{message}`: the details of an archived message.
pub async fn get(state: &AppState, user: &ObjectId, id: &ObjectId) -> ApiResult<Value> {
    users::load(state, user).await?;
    let archived = load(state, user, id).await?;
    let mut body = details_json(state, &archived.message).await?;
    body["id"] = json!(archived.message.id);
    body["uid"] = json!(archived.message.uid);
    body["archived"] = json!(archived.archived);
    body["expires"] = json!(archived.purge_at);
    body["success"] = json!(true);
    Ok(body)
}

/// `POST /users/{user}/archived/{message}/restore`: back into the given mailbox, else the
/// original one, else INBOX, with a new UID; counts against the quota again.
pub async fn restore(
    state: &AppState,
    user: &ObjectId,
    id: &ObjectId,
    params: Map<String, Value>,
) -> ApiResult<Value> {
    let mut v = Validator::new(params);
    let target = v.id("mailbox");
    v.session();
    v.deny_unknown();
    v.finish()?;
    users::load(state, user).await?;
    let archived = load(state, user, id).await?;
    let mailbox = match target {
        Some(target) => mailboxes::load(state, user, &target).await?,
        None => match mailboxes::load(state, user, &archived.message.mailbox).await {
            Ok(original) => original,
            Err(_) => mailboxes::inbox(state, user).await?,
        },
    };
    let message = restore_into(state, &archived, &mailbox).await?;
    Ok(json!({
        "success": true,
        "mailbox": mailbox.mailbox.id,
        "uid": message.uid,
        "id": message.uid,
    }))
}

async fn restore_into(
    state: &AppState,
    archived: &Archived,
    mailbox: &StoredMailbox,
) -> ApiResult<Message> {
    let user = mailbox.mailbox.user;
    let uid = state
        .table
        .update(
            &keys::mailbox(&user, &mailbox.mailbox.id),
            Update::default().add(mailboxes::UID_NEXT, 1),
            Some(Condition::Exists),
        )
        .await?
        .counter(mailboxes::UID_NEXT)
        - 1;
    let seq = journal::reserve(state.table.as_ref(), &user, 1).await?;
    let mut message = archived.message.clone();
    message.mailbox = mailbox.mailbox.id;
    message.uid = uid as u32;
    message.expires = (mailbox.mailbox.retention > 0).then(|| {
        chrono::Utc::now()
            + chrono::Duration::milliseconds(mailbox.mailbox.retention.min(i64::MAX as u64) as i64)
    });
    let size = message.size as i64;
    let writes = vec![
        Write::Delete {
            key: keys::archived(&user, &message.id),
            condition: Some(Condition::Exists),
        },
        Write::put_new(message.item(mailbox)),
        Write::put(Item::new(
            keys::message_pointer(&user, &message.id),
            json!({ "mailbox": mailbox.mailbox.id, "uid": message.uid }),
        )),
        Write::Update {
            key: keys::mailbox(&user, &mailbox.mailbox.id),
            update: Update::default()
                .add(mailboxes::TOTAL, 1)
                .add(mailboxes::UNSEEN, i64::from(!message.seen))
                .add(mailboxes::SIZE, size)
                .add(mailboxes::MODIFY_INDEX, 1),
            condition: Some(Condition::Exists),
        },
        Write::Update {
            key: keys::user(&user),
            update: Update::default()
                .add(STORAGE_USED, size)
                .add(ARCHIVED_COUNT, -1),
            condition: Some(Condition::Exists),
        },
        journal::event_write(
            &state.config,
            &user,
            seq,
            json!({"command": "EXISTS", "uid": message.uid, "message": message.id,
                   "idate": message.idate, "thread": message.thread, "mailbox": message.mailbox}),
        ),
    ];
    match journal::commit(state.table.as_ref(), &state.config, &user, seq, 1, writes).await {
        Ok(()) => {}
        Err(StoreError::ConditionFailed { index: 0 }) => return Err(not_found()),
        Err(StoreError::ConditionFailed { .. }) => {
            return Err(ApiError::not_found(
                "NoSuchMailbox",
                "This mailbox does not exist",
            ));
        }
        Err(e) => return Err(e.into()),
    }
    super::messages::reindex(state, &message).await;
    Ok(message)
}

/// `POST /users/{user}/quota/reset`: recounts `storageUsed` from the live messages of every
/// mailbox (reads every message item of the user: its cost grows with the account).
pub async fn reset_quota(
    state: &AppState,
    user: &ObjectId,
    params: Map<String, Value>,
) -> ApiResult<Value> {
    session_only(params)?;
    for _ in 0..8 {
        let owner = users::load(state, user).await?;
        let mut sum: i64 = 0;
        for mailbox in mailboxes::load_all(state, user).await? {
            let pk = keys::messages_pk(user, &mailbox.mailbox.id);
            let mut after = None;
            loop {
                let page = state
                    .table
                    .query(
                        &Query::table(pk.clone())
                            .limit(500)
                            .start_after(after.take()),
                    )
                    .await?;
                sum += page
                    .items
                    .iter()
                    .map(|i| i.body["size"].as_i64().unwrap_or(0))
                    .sum::<i64>();
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
        }
        let write = Write::Update {
            key: keys::user(user),
            update: Update::default().add(STORAGE_USED, sum - owner.storage_used),
            condition: Some(Condition::CounterEquals(
                STORAGE_USED.into(),
                owner.storage_used,
            )),
        };
        match state.table.transact(vec![write]).await {
            Ok(()) => {
                return Ok(json!({
                    "success": true,
                    "storageUsed": sum,
                    "previousStorageUsed": owner.storage_used,
                }));
            }
            // A message arrived or left while counting: count again.
            Err(StoreError::ConditionFailed { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::conflict(
        "LockFail",
        "Storage changed while counting, try again",
    ))
}
