//! Global counters (number of users and of addresses), kept exact in the same transaction as
//! every create and delete and spread over shards so concurrent writes don't contend.

use rand::Rng;

use super::keys;
use crate::store::{StoreResult, Table, Update, Write};

pub const USERS: &str = "users";
pub const ADDRESSES: &str = "addresses";

/// A write that adds `deltas` to the counters, on a random shard.
pub fn change(deltas: &[(&str, i64)]) -> Write {
    let shard = rand::thread_rng().gen_range(0..keys::STATS_SHARDS);
    let mut update = Update::default();
    for (name, by) in deltas {
        update = update.add(name, *by);
    }
    Write::Update {
        key: keys::stats(shard),
        update,
        guard: None,
    }
}

/// The current value of a counter: the sum over its shards (one batched read).
pub async fn total(table: &dyn Table, name: &str) -> StoreResult<u64> {
    let keys: Vec<_> = (0..keys::STATS_SHARDS).map(keys::stats).collect();
    let items = table.get_many(&keys).await?;
    Ok(items.iter().map(|i| i.counter(name)).sum::<i64>().max(0) as u64)
}
