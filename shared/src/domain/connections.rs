//! Open WebSocket connections of the updates push (API Gateway WebSocket API): `$connect`
//! records one, `$disconnect` removes it, and the stream bridge looks up a user's connections to
//! push each journal event to them.
//!
//! Two items per connection, written and removed together: the connection under its user (one
//! `Query` lists whom to push to) and its owner under the connection id (`$disconnect` knows
//! only the id). Both expire after [`CONNECTION_TTL`], API Gateway's longest connection, so a
//! `$disconnect` that never arrives (it is best effort) leaves nothing behind for long.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{keys, unix_now};
use crate::id::ObjectId;
use crate::store::{Item, Query, StoreResult, Table, Write};

/// API Gateway closes a WebSocket connection after 2 hours; a little margin on top.
pub const CONNECTION_TTL: Duration = Duration::from_secs(2 * 3600 + 300);

/// One open connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    /// API Gateway's connection id (the management API addresses the connection by it).
    pub id: String,
    pub user: ObjectId,
    pub connected_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
}

/// Records a connection (both items, with the TTL).
pub async fn add(table: &dyn Table, connection: &Connection) -> StoreResult<()> {
    let expires = unix_now() + CONNECTION_TTL.as_secs() as i64;
    let body = serde_json::to_value(connection).unwrap_or_default();
    table
        .transact(vec![
            Write::put(
                Item::new(keys::ws_connection(&connection.user, &connection.id), body)
                    .with_expiry(expires),
            ),
            Write::put(
                Item::new(
                    keys::ws_connection_owner(&connection.id),
                    json!({ "user": connection.user }),
                )
                .with_expiry(expires),
            ),
        ])
        .await
}

/// Removes a connection known only by its id (`$disconnect`); returns its user, if it was
/// recorded.
pub async fn remove(table: &dyn Table, connection_id: &str) -> StoreResult<Option<ObjectId>> {
    let owner_key = keys::ws_connection_owner(connection_id);
    let Some(owner) = table.get(&owner_key).await? else {
        return Ok(None);
    };
    match owner.body["user"].as_str().and_then(|u| u.parse().ok()) {
        Some(user) => {
            forget(table, &user, connection_id).await?;
            Ok(Some(user))
        }
        None => {
            table.transact(vec![Write::delete(owner_key)]).await?;
            Ok(None)
        }
    }
}

/// Removes a connection of `user` (both items); no error when it is already gone.
pub async fn forget(table: &dyn Table, user: &ObjectId, connection_id: &str) -> StoreResult<()> {
    table
        .transact(vec![
            Write::delete(keys::ws_connection(user, connection_id)),
            Write::delete(keys::ws_connection_owner(connection_id)),
        ])
        .await
}

/// The ids of a user's open connections.
pub async fn list(table: &dyn Table, user: &ObjectId) -> StoreResult<Vec<String>> {
    let mut ids = Vec::new();
    let mut start = None;
    loop {
        let page = table
            .query(
                &Query::table(keys::ws_connections_pk(user))
                    .limit(100)
                    .start_after(start),
            )
            .await?;
        ids.extend(page.items.iter().map(|i| i.sk.clone()));
        match page.next {
            Some(next) => start = Some(next),
            None => return Ok(ids),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedTable;

    #[tokio::test]
    async fn connections_are_added_listed_and_removed_by_id() {
        let dir = tempfile::tempdir().unwrap();
        let table = EmbeddedTable::open(&dir.path().join("t.redb")).unwrap();
        let user = ObjectId::new();
        for id in ["a1=", "b2="] {
            let connection = Connection {
                id: id.into(),
                user,
                connected_at: Utc::now(),
                source_ip: Some("192.0.2.1".into()),
            };
            add(&table, &connection).await.unwrap();
        }
        assert_eq!(list(&table, &user).await.unwrap(), ["a1=", "b2="]);
        assert_eq!(remove(&table, "a1=").await.unwrap(), Some(user));
        assert_eq!(remove(&table, "a1=").await.unwrap(), None);
        assert_eq!(list(&table, &user).await.unwrap(), ["b2="]);
        forget(&table, &user, "b2=").await.unwrap();
        assert!(list(&table, &user).await.unwrap().is_empty());
        let item = table.get(&keys::ws_connection_owner("b2=")).await.unwrap();
        assert!(item.is_none());
    }
}
