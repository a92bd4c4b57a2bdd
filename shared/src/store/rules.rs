//! The request rules and condition semantics both table backends share, so a request the
//! local server accepts is one DynamoDB accepts too, and a condition means the same on both.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{
    Condition, Item, Key, MAX_TRANSACTION_WRITES, Query, SortRange, StoreError, StoreResult,
    Update, Write,
};

/// DynamoDB's limits, enforced on both backends so that local runs fail where the cloud would.
pub(crate) const MAX_ITEM_BYTES: usize = 400 * 1024;
const MAX_PARTITION_KEY_BYTES: usize = 2048;
const MAX_SORT_KEY_BYTES: usize = 1024;
/// Longest blob key (S3 allows 1024 bytes).
const MAX_BLOB_KEY_BYTES: usize = 1024;

/// Whether `condition` holds for the live item (`None`: no live item under the key).
pub(crate) fn condition_holds(condition: &Condition, live: Option<&Item>) -> bool {
    match condition {
        Condition::NotExists => live.is_none(),
        Condition::Exists => live.is_some(),
        Condition::CounterEquals(name, value) => live.is_some_and(|i| i.counter(name) == *value),
        Condition::CounterAtMost(name, value) => live.is_some_and(|i| i.counter(name) <= *value),
    }
}

/// The item after `update`; a missing (or expired) item starts empty with a null body.
pub(crate) fn apply_update(live: Option<&Item>, key: &Key, update: &Update) -> StoreResult<Item> {
    let mut item = live
        .cloned()
        .unwrap_or_else(|| Item::new(key.clone(), Value::Null));
    if let Some(body) = &update.body {
        item.body = body.clone().into();
    }
    for (name, by) in &update.add {
        let counter = item.counters.entry(name.clone()).or_insert(0);
        *counter = counter
            .checked_add(*by)
            .ok_or_else(|| StoreError::Invalid(format!("counter {name} would overflow")))?;
    }
    if let Some(gsi1) = &update.gsi1 {
        item.gsi1 = gsi1.clone();
    }
    if let Some(gsi2) = &update.gsi2 {
        item.gsi2 = gsi2.clone();
    }
    if let Some(expires_at) = update.expires_at {
        item.expires_at = expires_at;
    }
    Ok(item)
}

/// Unix time in seconds, the clock TTLs are compared with.
pub(crate) fn now() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX)
}

/// Checks a transaction's shape: at most [`MAX_TRANSACTION_WRITES`] writes, each item once,
/// valid keys. (Item contents are checked when the new items are known.)
pub(crate) fn check_writes(writes: &[Write]) -> StoreResult<()> {
    if writes.len() > MAX_TRANSACTION_WRITES {
        return Err(StoreError::Invalid(format!(
            "a transaction carries at most {MAX_TRANSACTION_WRITES} writes, not {}",
            writes.len()
        )));
    }
    let mut seen = BTreeSet::new();
    for write in writes {
        let key = write.key();
        check_key(&key)?;
        if !seen.insert(key) {
            let key = write.key();
            return Err(StoreError::Invalid(format!(
                "the item ({}, {}) appears twice in one transaction",
                key.pk, key.sk
            )));
        }
        match write {
            Write::Put { item, .. } => check_item(item)?,
            Write::Update { key, update, .. } => {
                // Too large whatever the item holds (the size of the result is checked later).
                if let Some(body) = &update.body
                    && "body".len() + body.to_string().len() > MAX_ITEM_BYTES
                {
                    return Err(StoreError::Invalid(format!(
                        "the item ({}, {}) would be larger than 400 KB",
                        key.pk, key.sk
                    )));
                }
                for key in [&update.gsi1, &update.gsi2].into_iter().flatten().flatten() {
                    check_key_part("index partition key", &key.pk, MAX_PARTITION_KEY_BYTES)?;
                    check_key_part("index sort key", &key.sk, MAX_SORT_KEY_BYTES)?;
                }
            }
            Write::Delete { .. } | Write::Check { .. } => {}
        }
    }
    Ok(())
}

/// Keys are non-empty and within DynamoDB's sizes.
pub(crate) fn check_key(key: &Key) -> StoreResult<()> {
    check_key_part("partition key", &key.pk, MAX_PARTITION_KEY_BYTES)?;
    check_key_part("sort key", &key.sk, MAX_SORT_KEY_BYTES)
}

fn check_key_part(what: &str, value: &str, max: usize) -> StoreResult<()> {
    if value.is_empty() {
        return Err(StoreError::Invalid(format!("the {what} is empty")));
    }
    if value.len() > max {
        return Err(StoreError::Invalid(format!(
            "the {what} is longer than {max} bytes"
        )));
    }
    Ok(())
}

/// A whole item: valid keys (its own and its index keys) and at most 400 KB.
pub(crate) fn check_item(item: &Item) -> StoreResult<()> {
    check_key(&item.key())?;
    for key in [&item.gsi1, &item.gsi2].into_iter().flatten() {
        check_key_part("index partition key", &key.pk, MAX_PARTITION_KEY_BYTES)?;
        check_key_part("index sort key", &key.sk, MAX_SORT_KEY_BYTES)?;
    }
    if item_size(item) > MAX_ITEM_BYTES {
        return Err(StoreError::Invalid(format!(
            "the item ({}, {}) is larger than 400 KB",
            item.pk, item.sk
        )));
    }
    Ok(())
}

/// The item's size as DynamoDB counts it for the dynamo backend's attribute layout:
/// attribute names plus values, numbers at about one byte per two digits.
pub(crate) fn item_size(item: &Item) -> usize {
    let number = |n: i64| n.unsigned_abs().to_string().len().div_ceil(2) + 1;
    let mut size = "pk".len() + item.pk.len() + "sk".len() + item.sk.len();
    size += "body".len() + item.body.to_string().len();
    for (name, value) in &item.counters {
        size += "c_".len() + name.len() + number(*value);
    }
    for key in [&item.gsi1, &item.gsi2].into_iter().flatten() {
        size += "gsi1pk".len() + key.pk.len() + "gsi1sk".len() + key.sk.len();
    }
    if let Some(t) = item.expires_at {
        size += "ttl".len() + number(t);
    }
    size
}

/// Checks a query: a partition key, a limit of at least one, an ordered `Between`, and a
/// cursor that belongs to this query (same partition, sort key inside the range; DynamoDB
/// rejects an `ExclusiveStartKey` outside the key condition).
pub(crate) fn check_query(query: &Query) -> StoreResult<()> {
    if query.pk.is_empty() {
        return Err(StoreError::Invalid(
            "the query's partition key is empty".into(),
        ));
    }
    if query.limit == 0 {
        return Err(StoreError::Invalid(
            "the query's limit must be at least 1".into(),
        ));
    }
    if let SortRange::Between(a, b) = &query.range
        && a > b
    {
        return Err(StoreError::Invalid(format!("empty range: {a:?} > {b:?}")));
    }
    let Some(cursor) = &query.start_after else {
        return Ok(());
    };
    let (pk, sk) = match (query.index, &cursor.index) {
        (None, _) => (&cursor.pk, &cursor.sk),
        (Some(_), Some((ipk, isk))) => (ipk, isk),
        (Some(_), None) => {
            return Err(StoreError::Invalid("the cursor lacks the index key".into()));
        }
    };
    if *pk != query.pk || !query.range.contains(sk) {
        return Err(StoreError::Invalid(
            "the cursor does not belong to this query".into(),
        ));
    }
    Ok(())
}

/// Keys are relative paths of plain names: not empty, no leading `/`, no empty, `.` or `..`
/// segment, no NUL, at most 1024 bytes. Both blob backends apply this rule.
pub(crate) fn check_blob_key(key: &str) -> StoreResult<()> {
    let invalid = |why: &str| Err(StoreError::Invalid(format!("blob key {key:?}: {why}")));
    if key.is_empty() {
        return invalid("empty");
    }
    if key.len() > MAX_BLOB_KEY_BYTES {
        return invalid("longer than 1024 bytes");
    }
    if key.starts_with('/') {
        return invalid("absolute");
    }
    if key.contains('\0') {
        return invalid("contains NUL");
    }
    if key
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return invalid("empty, `.` or `..` segment");
    }
    Ok(())
}
