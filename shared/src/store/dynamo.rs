//! The cloud table: the [`Table`] port on one DynamoDB table.
//!
//! This module owns the table's attribute layout and its creation:
//!
//! * `pk`, `sk` (S): the key; `body` (S): the item's JSON text;
//! * `c_<name>` (N): one top-level number per counter, so `ADD` changes it atomically;
//! * `gsi1pk`/`gsi1sk`, `gsi2pk`/`gsi2sk` (S): keys of the indexes `gsi1` and `gsi2`
//!   (projection ALL);
//! * `ttl` (N, unix seconds): the table's TTL attribute.
//!
//! Expressions are built only from the typed [`Condition`] and [`Update`] values, every
//! attribute name through a `#placeholder` (`ttl` is a reserved word). DynamoDB deletes
//! expired items lazily, so every read filters them out and every condition treats an item
//! whose `ttl` has passed as absent. An update must not revive an expired item's old
//! attributes either: its expression only applies to live (or missing) items, and when an
//! expired item is in the way the write is retried as a put of a fresh item (see
//! [`DynamoTable::transact`]).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, Delete, DeleteRequest,
    GlobalSecondaryIndex, IndexStatus, KeySchemaElement, KeyType, KeysAndAttributes, Projection,
    ProjectionType, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, ScalarAttributeType,
    StreamSpecification, StreamViewType, TableStatus, TimeToLiveSpecification, TransactWriteItem,
    WriteRequest,
};
use serde_json::Value;

#[cfg(feature = "aws-chain")]
pub use super::s3::aws_clients_from_env;

use super::rules::{apply_update, check_key, check_query, check_writes, condition_holds, now};
use super::{
    Condition, Cursor, Guard, Index, IndexKey, Item, Key, Page, Query, SortRange, StoreError,
    StoreResult, Table, Update, Write,
};

const PK: &str = "pk";
const SK: &str = "sk";
const BODY: &str = "body";
const TTL: &str = "ttl";
const COUNTER_PREFIX: &str = "c_";
/// BatchGetItem's limit of keys per request.
const BATCH_GET_KEYS: usize = 100;
/// Requests per BatchWriteItem (DynamoDB's limit).
const BATCH_WRITE_REQUESTS: usize = 25;
/// Attempts of one operation that meets transaction conflicts or expired items in the way.
const MAX_ATTEMPTS: u32 = 8;

/// The [`Table`] port on a DynamoDB table laid out as [`create_table`] makes it.
#[derive(Debug, Clone)]
pub struct DynamoTable {
    client: Client,
    table: String,
}

impl DynamoTable {
    /// The table named `table`, reached through `client`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoTable {
            client,
            table: table.into(),
        }
    }

    /// Opens the connection (TLS included) with one read of a key that never exists (half a
    /// read unit), so that a Lambda's first request finds it open. A failure only means the
    /// first request connects itself.
    pub async fn connect(&self) {
        let key = |v: &str| AttributeValue::S(v.to_string());
        let read = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, key("WARMUP"))
            .key(SK, key("WARMUP"))
            .send()
            .await;
        if let Err(e) = read {
            tracing::debug!(error = %aws_sdk_dynamodb::error::DisplayErrorContext(e), "table connection not opened at init");
        }
    }
}

/// Creates the table as `template.yaml` declares it (on-demand billing, `pk`/`sk`, indexes
/// `gsi1` and `gsi2` with projection ALL, a NEW_AND_OLD_IMAGES stream, TTL on `ttl`) and waits
/// until it is active. For tests and local development against moto.
pub async fn create_table(client: &Client, name: &str) -> anyhow::Result<()> {
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    let key = |name: &str, key_type| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(key_type)
            .build()
    };
    let index = |index: Index| -> anyhow::Result<GlobalSecondaryIndex> {
        let (name, pk, sk) = index_attributes(index);
        Ok(GlobalSecondaryIndex::builder()
            .index_name(name)
            .key_schema(key(pk, KeyType::Hash)?)
            .key_schema(key(sk, KeyType::Range)?)
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::All)
                    .build(),
            )
            .build()?)
    };
    let mut request = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key(PK, KeyType::Hash)?)
        .key_schema(key(SK, KeyType::Range)?)
        .global_secondary_indexes(index(Index::Gsi1)?)
        .global_secondary_indexes(index(Index::Gsi2)?)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()?,
        );
    for name in [PK, SK, "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk"] {
        request = request.attribute_definitions(attribute(name)?);
    }
    request
        .send()
        .await
        .map_err(|e| anyhow!("CreateTable {name}: {}", DisplayErrorContext(e)))?;

    // TTL can only be switched on once the table is active.
    for _ in 0..600 {
        let described = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| anyhow!("DescribeTable {name}: {}", DisplayErrorContext(e)))?;
        let table = described
            .table()
            .context("DescribeTable returned no table")?;
        let indexes_active = table
            .global_secondary_indexes()
            .iter()
            .all(|i| i.index_status() == Some(&IndexStatus::Active));
        if table.table_status() == Some(&TableStatus::Active) && indexes_active {
            client
                .update_time_to_live()
                .table_name(name)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .enabled(true)
                        .attribute_name(TTL)
                        .build()?,
                )
                .send()
                .await
                .map_err(|e| anyhow!("UpdateTimeToLive {name}: {}", DisplayErrorContext(e)))?;
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(anyhow!(
        "table {name} did not become active within 5 minutes"
    ))
}

/// Index name and its key attributes.
fn index_attributes(index: Index) -> (&'static str, &'static str, &'static str) {
    match index {
        Index::Gsi1 => ("gsi1", "gsi1pk", "gsi1sk"),
        Index::Gsi2 => ("gsi2", "gsi2pk", "gsi2sk"),
    }
}

#[async_trait]
impl Table for DynamoTable {
    async fn get(&self, key: &Key) -> StoreResult<Option<Item>> {
        check_key(key)?;
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_attributes(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        let item = out.item().map(from_attributes).transpose()?;
        Ok(item.filter(|i| !i.is_expired(now())))
    }

    async fn get_many(&self, keys: &[Key]) -> StoreResult<Vec<Item>> {
        // BatchGetItem rejects a request that names a key twice.
        let keys: Vec<Key> = keys
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        keys.iter().try_for_each(check_key)?;
        let mut found = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH_GET_KEYS) {
            let mut pending: Vec<_> = chunk.iter().map(key_attributes).collect();
            let mut attempt = 0;
            while !pending.is_empty() {
                if attempt > 0 {
                    backoff(attempt).await;
                }
                attempt += 1;
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(pending))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| StoreError::Backend(e.into()))?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| sdk_error("BatchGetItem", e))?;
                let now = now();
                for attributes in out
                    .responses()
                    .and_then(|r| r.get(&self.table))
                    .into_iter()
                    .flatten()
                {
                    let item = from_attributes(attributes)?;
                    if !item.is_expired(now) {
                        found.push(item);
                    }
                }
                // Keys DynamoDB did not get to (throttling, 16 MB limit) go round again.
                pending = out
                    .unprocessed_keys()
                    .and_then(|u| u.get(&self.table))
                    .map(|k| k.keys().to_vec())
                    .unwrap_or_default();
                if !pending.is_empty() && attempt >= MAX_ATTEMPTS {
                    return Err(StoreError::Backend(anyhow!(
                        "BatchGetItem left {} keys unprocessed after {attempt} attempts",
                        pending.len()
                    )));
                }
            }
        }
        Ok(found)
    }

    async fn delete_many(&self, keys: &[Key]) -> StoreResult<()> {
        // BatchWriteItem rejects a request that names a key twice.
        let keys: BTreeSet<&Key> = keys.iter().collect();
        keys.iter().try_for_each(|k| check_key(k))?;
        let keys: Vec<&Key> = keys.into_iter().collect();
        for chunk in keys.chunks(BATCH_WRITE_REQUESTS) {
            let mut pending = chunk
                .iter()
                .map(|key| {
                    let delete = DeleteRequest::builder()
                        .set_key(Some(key_attributes(key)))
                        .build()
                        .map_err(|e| StoreError::Backend(e.into()))?;
                    Ok(WriteRequest::builder().delete_request(delete).build())
                })
                .collect::<StoreResult<Vec<_>>>()?;
            let mut attempt = 0;
            while !pending.is_empty() {
                if attempt > 0 {
                    backoff(attempt).await;
                }
                attempt += 1;
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(|e| sdk_error("BatchWriteItem", e))?;
                // Requests DynamoDB did not get to (throttling) go round again.
                pending = out
                    .unprocessed_items()
                    .and_then(|u| u.get(&self.table))
                    .cloned()
                    .unwrap_or_default();
                if !pending.is_empty() && attempt >= MAX_ATTEMPTS {
                    return Err(StoreError::Backend(anyhow!(
                        "BatchWriteItem left {} deletes unprocessed after {attempt} attempts",
                        pending.len()
                    )));
                }
            }
        }
        Ok(())
    }

    async fn query(&self, query: &Query) -> StoreResult<Page> {
        check_query(query)?;
        let (index_name, pk_attr, sk_attr) = match query.index {
            Some(index) => {
                let (name, pk, sk) = index_attributes(index);
                (Some(name), pk, sk)
            }
            None => (None, PK, SK),
        };
        // Nothing follows a cursor on the last possible sort key, and DynamoDB refuses such a
        // start key ("does not match the range key predicate"). Only on the table: in an index
        // other items may share the sort key.
        if query.index.is_none()
            && let Some(cursor) = &query.start_after
            && at_far_end(&query.range, &cursor.sk, query.forward)
        {
            return Ok(Page::default());
        }

        let mut e = Expr::default();
        let mut key_condition = format!("{} = {}", e.name(pk_attr), e.string(&query.pk));
        match &query.range {
            SortRange::All => {}
            // Key values cannot be empty strings: every sort key begins with "".
            SortRange::BeginsWith(prefix) if prefix.is_empty() => {}
            SortRange::BeginsWith(prefix) => {
                let (sk, p) = (e.name(sk_attr), e.string(prefix));
                key_condition += &format!(" AND begins_with({sk}, {p})");
            }
            // Only the empty sort key fits, and no item has one.
            SortRange::Between(_, b) if b.is_empty() => return Ok(Page::default()),
            SortRange::Between(a, b) if a.is_empty() => {
                let (sk, b) = (e.name(sk_attr), e.string(b));
                key_condition += &format!(" AND {sk} <= {b}");
            }
            SortRange::Between(a, b) => {
                let (sk, a, b) = (e.name(sk_attr), e.string(a), e.string(b));
                key_condition += &format!(" AND {sk} BETWEEN {a} AND {b}");
            }
        }
        let now = now();
        let filter = e.not_expired(now);

        let mut start = query
            .start_after
            .as_ref()
            .map(|c| start_key(c, query.index));
        let mut items = Vec::new();
        loop {
            let remaining = query.limit - items.len();
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .set_index_name(index_name.map(str::to_string))
                .key_condition_expression(&key_condition)
                .filter_expression(&filter)
                .set_expression_attribute_names(Some(e.names.clone()))
                .set_expression_attribute_values(Some(e.values.clone()))
                .scan_index_forward(query.forward)
                // Index reads are eventually consistent on DynamoDB; only the table can do better.
                .consistent_read(query.index.is_none())
                .limit(i32::try_from(remaining).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error("Query", e))?;
            for attributes in out.items() {
                let item = from_attributes(attributes)?;
                if !item.is_expired(now) {
                    items.push(item);
                }
            }
            // `Limit` counts items before the TTL filter: go on until the page is full.
            match out.last_evaluated_key() {
                Some(key) if !key.is_empty() && items.len() < query.limit => {
                    start = Some(key.clone());
                }
                _ => break,
            }
        }
        items.truncate(query.limit);
        let next = if items.len() >= query.limit {
            items.last().map(|item| Cursor::of(item, query.index))
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// One write goes out as PutItem/UpdateItem/DeleteItem (half the cost of a transaction),
    /// several as TransactWriteItems. When a condition fails, the item DynamoDB saw
    /// (`ReturnValuesOnConditionCheckFailure = ALL_OLD`) tells whether our condition really
    /// failed or an expired item stood in the way of an update; then the update is retried as
    /// a put of the fresh item, guarded by the expired item's `ttl`.
    async fn transact(&self, writes: Vec<Write>) -> StoreResult<()> {
        check_writes(&writes)?;
        if writes.is_empty() {
            return Ok(());
        }
        let mut replacements = HashMap::new();
        let mut last = String::from("expired items in the way");
        for attempt in 0..MAX_ATTEMPTS {
            let now = now();
            let plans: Vec<Plan> = writes
                .iter()
                .enumerate()
                .map(|(i, w)| match replacements.get(&i) {
                    Some((item, ttl)) => Plan::Replace {
                        item,
                        expired_ttl: *ttl,
                    },
                    None => Plan::Write(w),
                })
                .collect();
            let outcome = if let [plan] = plans.as_slice()
                && !matches!(plan, Plan::Write(Write::Check { .. }))
            {
                self.single(plan, now, false).await.map(drop)
            } else {
                self.transaction(&plans, now).await
            };
            match outcome {
                Ok(()) => return Ok(()),
                Err(Failure::Store(e)) => return Err(e),
                Err(Failure::Transient(reason)) => {
                    last = reason;
                    backoff(attempt + 1).await;
                }
                Err(Failure::Conditions(failed)) => {
                    for (index, old) in failed {
                        match judge(&writes[index], old, now)? {
                            Verdict::Failed(label) => {
                                return Err(StoreError::ConditionFailed { label });
                            }
                            Verdict::Replace(item, ttl) => {
                                replacements.insert(index, (*item, ttl));
                            }
                            Verdict::Retry => {
                                replacements.remove(&index);
                            }
                        }
                    }
                }
            }
        }
        Err(StoreError::Backend(anyhow!(
            "transaction gave up after {MAX_ATTEMPTS} attempts (last: {last})"
        )))
    }

    async fn update(&self, key: &Key, update: Update, guard: Option<Guard>) -> StoreResult<Item> {
        let write = Write::Update {
            key: key.clone(),
            update,
            guard,
        };
        check_writes(std::slice::from_ref(&write))?;
        let mut replacement = None;
        let mut last = String::from("expired item in the way");
        for attempt in 0..MAX_ATTEMPTS {
            let now = now();
            let plan = match &replacement {
                Some((item, ttl)) => Plan::Replace {
                    item,
                    expired_ttl: *ttl,
                },
                None => Plan::Write(&write),
            };
            match self.single(&plan, now, true).await {
                Ok(Some(item)) => return Ok(item),
                Ok(None) => match plan {
                    // A put returns nothing; the item is the one just written.
                    Plan::Replace { item, .. } => return Ok(item.clone()),
                    Plan::Write(_) => {
                        return Err(StoreError::Backend(anyhow!("UpdateItem returned no item")));
                    }
                },
                Err(Failure::Store(e)) => return Err(e),
                Err(Failure::Transient(reason)) => {
                    last = reason;
                    backoff(attempt + 1).await;
                }
                Err(Failure::Conditions(failed)) => {
                    let old = failed.into_iter().next().and_then(|(_, old)| old);
                    match judge(&write, old, now)? {
                        Verdict::Failed(label) => {
                            return Err(StoreError::ConditionFailed { label });
                        }
                        Verdict::Replace(item, ttl) => replacement = Some((*item, ttl)),
                        Verdict::Retry => replacement = None,
                    }
                }
            }
        }
        Err(StoreError::Backend(anyhow!(
            "update gave up after {MAX_ATTEMPTS} attempts (last: {last})"
        )))
    }
}

/// What to send for one write: the write itself, or (for an update that met an expired item)
/// a put of the fresh item, valid only while the expired item is still there.
enum Plan<'a> {
    Write(&'a Write),
    Replace { item: &'a Item, expired_ttl: i64 },
}

/// Why an attempt did not go through.
enum Failure {
    /// Writes whose condition expression failed, in order, with the item DynamoDB evaluated.
    Conditions(Vec<(usize, Option<Item>)>),
    /// Worth another attempt as it is (transaction conflict, throttling).
    Transient(String),
    Store(StoreError),
}

/// What a failed condition expression means for the caller's write.
enum Verdict {
    /// The caller's condition does not hold: report it by its label.
    Failed(&'static str),
    /// The caller's condition holds, but an expired item blocks the update: put this fresh
    /// item instead, as long as the expired item (with this `ttl`) is still there.
    Replace(Box<Item>, i64),
    /// The caller's condition holds (the item changed in between): try again.
    Retry,
}

/// Judges a failed write against `old`, the item as DynamoDB saw it.
fn judge(write: &Write, old: Option<Item>, now: i64) -> StoreResult<Verdict> {
    let live = old.as_ref().filter(|i| !i.is_expired(now));
    if let Some(guard) = write.guard()
        && !condition_holds(&guard.condition, live)
    {
        return Ok(Verdict::Failed(guard.label));
    }
    match (write, &old) {
        (Write::Update { key, update, .. }, Some(old)) if live.is_none() => {
            let ttl = old.expires_at.unwrap_or_default();
            Ok(Verdict::Replace(
                Box::new(apply_update(None, key, update)?),
                ttl,
            ))
        }
        _ => Ok(Verdict::Retry),
    }
}

impl DynamoTable {
    /// Sends one write as a single-item operation; with `return_new` an update returns the
    /// item as it is afterwards.
    async fn single(
        &self,
        plan: &Plan<'_>,
        now: i64,
        return_new: bool,
    ) -> Result<Option<Item>, Failure> {
        let op = Op::build(plan, now).map_err(Failure::Store)?;
        let (names, values) = op.expr.into_maps();
        let all_old = ReturnValuesOnConditionCheckFailure::AllOld;
        match op.action {
            Action::Put(item) => self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .set_condition_expression(op.condition)
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values)
                .return_values_on_condition_check_failure(all_old)
                .send()
                .await
                .map(|_| None)
                .map_err(|e| match e.as_service_error() {
                    Some(PutItemError::ConditionalCheckFailedException(c)) => {
                        conditions_failed(c.item())
                    }
                    _ => single_error("PutItem", e),
                }),
            Action::Update(expression) => self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(op.key))
                .update_expression(expression)
                .set_condition_expression(op.condition)
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values)
                .return_values(if return_new {
                    ReturnValue::AllNew
                } else {
                    ReturnValue::None
                })
                .return_values_on_condition_check_failure(all_old)
                .send()
                .await
                .map(|out| out.attributes().map(from_attributes))
                .map_err(|e| match e.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(c)) => {
                        conditions_failed(c.item())
                    }
                    _ => single_error("UpdateItem", e),
                })
                .and_then(|item| item.transpose().map_err(Failure::Store)),
            Action::Delete => self
                .client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(op.key))
                .set_condition_expression(op.condition)
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values)
                .return_values_on_condition_check_failure(all_old)
                .send()
                .await
                .map(|_| None)
                .map_err(|e| match e.as_service_error() {
                    Some(DeleteItemError::ConditionalCheckFailedException(c)) => {
                        conditions_failed(c.item())
                    }
                    _ => single_error("DeleteItem", e),
                }),
            Action::Check => Err(Failure::Store(StoreError::Backend(anyhow!(
                "a lone check goes through a transaction"
            )))),
        }
    }

    /// Sends the writes as one TransactWriteItems call.
    async fn transaction(&self, plans: &[Plan<'_>], now: i64) -> Result<(), Failure> {
        let mut items = Vec::with_capacity(plans.len());
        for plan in plans {
            let op = Op::build(plan, now).map_err(Failure::Store)?;
            items.push(op.into_transact_item(&self.table).map_err(Failure::Store)?);
        }
        let err = match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => return Ok(()),
            Err(err) => err,
        };
        let Some(TransactWriteItemsError::TransactionCanceledException(cancel)) =
            err.as_service_error()
        else {
            return Err(single_error("TransactWriteItems", err));
        };
        let mut failed = Vec::new();
        let mut transient = None;
        for (index, reason) in cancel.cancellation_reasons().iter().enumerate() {
            match reason.code() {
                None | Some("None") => {}
                Some("ConditionalCheckFailed") => {
                    let old = reason.item().map(from_attributes).transpose();
                    failed.push((index, old.map_err(Failure::Store)?));
                }
                Some(
                    code @ ("TransactionConflict"
                    | "ThrottlingError"
                    | "ProvisionedThroughputExceeded"),
                ) => {
                    transient = Some(format!("write {index}: {code}"));
                }
                Some("ValidationError") => {
                    return Err(Failure::Store(StoreError::Invalid(format!(
                        "write {index}: {}",
                        reason.message().unwrap_or("rejected by DynamoDB")
                    ))));
                }
                Some(code) => {
                    return Err(Failure::Store(StoreError::Backend(anyhow!(
                        "TransactWriteItems: write {index} cancelled ({code}): {}",
                        reason.message().unwrap_or_default()
                    ))));
                }
            }
        }
        if failed.is_empty() {
            if let Some(reason) = transient {
                return Err(Failure::Transient(reason));
            }
            return Err(Failure::Store(StoreError::Backend(anyhow!(
                "TransactWriteItems cancelled: {}",
                DisplayErrorContext(&err)
            ))));
        }
        Err(Failure::Conditions(failed))
    }
}

fn conditions_failed(item: Option<&HashMap<String, AttributeValue>>) -> Failure {
    match item.map(from_attributes).transpose() {
        Ok(old) => Failure::Conditions(vec![(0, old)]),
        Err(e) => Failure::Store(e),
    }
}

/// Maps an error of a write call; throttling is worth another attempt.
fn single_error<E, R>(operation: &str, err: SdkError<E, R>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match err.code() {
        Some(
            "ThrottlingException"
            | "ProvisionedThroughputExceededException"
            | "RequestLimitExceeded"
            | "TransactionConflictException"
            | "TransactionInProgressException",
        ) => Failure::Transient(operation.to_string()),
        _ => Failure::Store(sdk_error(operation, err)),
    }
}

/// `ValidationException` means DynamoDB refused the request (too large, bad key, ...);
/// anything else is a backend failure.
fn sdk_error<E, R>(operation: &str, err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    if err.code() == Some("ValidationException") {
        let message = err.message().unwrap_or("validation failed");
        return StoreError::Invalid(format!("{operation}: {message}"));
    }
    StoreError::Backend(anyhow!("{operation}: {}", DisplayErrorContext(err)))
}

async fn backoff(attempt: u32) {
    let millis = 20u64 << attempt.min(6);
    let jitter = rand::random::<u64>() % millis;
    tokio::time::sleep(Duration::from_millis(millis / 2 + jitter)).await;
}

/// True when no item of the table can follow `sk` in this direction within `range`.
fn at_far_end(range: &SortRange, sk: &str, forward: bool) -> bool {
    match range {
        SortRange::All => false,
        SortRange::BeginsWith(prefix) => !forward && sk == prefix,
        SortRange::Between(a, b) => (forward && sk == b) || (!forward && sk == a),
    }
}

/// One write, translated: its key, what to do and its condition expression.
struct Op {
    key: HashMap<String, AttributeValue>,
    action: Action,
    condition: Option<String>,
    expr: Expr,
}

enum Action {
    Put(HashMap<String, AttributeValue>),
    Update(String),
    Delete,
    Check,
}

impl Op {
    fn build(plan: &Plan<'_>, now: i64) -> StoreResult<Op> {
        let mut e = Expr::default();
        let write = match plan {
            Plan::Replace { item, expired_ttl } => {
                let (ttl, value) = (e.name(TTL), e.number(*expired_ttl));
                return Ok(Op {
                    key: key_attributes(&item.key()),
                    action: Action::Put(to_attributes(item)),
                    condition: Some(format!("{ttl} = {value}")),
                    expr: e,
                });
            }
            Plan::Write(write) => *write,
        };
        let user =
            |e: &mut Expr, g: &Option<Guard>| g.as_ref().map(|g| e.condition(&g.condition, now));
        let (action, condition) = match write {
            Write::Put { item, guard: g } => (Action::Put(to_attributes(item)), user(&mut e, g)),
            Write::Update {
                update, guard: g, ..
            } => {
                let user = user(&mut e, g);
                // Never apply an update to an expired item's leftovers (see the module docs).
                let guard = e.not_expired(now);
                let condition = match user {
                    Some(user) => format!("({user}) AND ({guard})"),
                    None => guard,
                };
                (Action::Update(e.update(update)), Some(condition))
            }
            Write::Delete { guard: g, .. } => (Action::Delete, user(&mut e, g)),
            Write::Check { guard: g, .. } => (Action::Check, Some(e.condition(&g.condition, now))),
        };
        Ok(Op {
            key: key_attributes(&write.key()),
            action,
            condition,
            expr: e,
        })
    }

    fn into_transact_item(self, table: &str) -> StoreResult<TransactWriteItem> {
        let (names, values) = self.expr.into_maps();
        let all_old = ReturnValuesOnConditionCheckFailure::AllOld;
        let built = match self.action {
            Action::Put(item) => Put::builder()
                .table_name(table)
                .set_item(Some(item))
                .set_condition_expression(self.condition)
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values)
                .return_values_on_condition_check_failure(all_old)
                .build()
                .map(|p| TransactWriteItem::builder().put(p).build()),
            Action::Update(expression) => aws_sdk_dynamodb::types::Update::builder()
                .table_name(table)
                .set_key(Some(self.key))
                .update_expression(expression)
                .set_condition_expression(self.condition)
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values)
                .return_values_on_condition_check_failure(all_old)
                .build()
                .map(|u| TransactWriteItem::builder().update(u).build()),
            Action::Delete => Delete::builder()
                .table_name(table)
                .set_key(Some(self.key))
                .set_condition_expression(self.condition)
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values)
                .return_values_on_condition_check_failure(all_old)
                .build()
                .map(|d| TransactWriteItem::builder().delete(d).build()),
            Action::Check => ConditionCheck::builder()
                .table_name(table)
                .set_key(Some(self.key))
                .set_condition_expression(self.condition)
                .set_expression_attribute_names(names)
                .set_expression_attribute_values(values)
                .return_values_on_condition_check_failure(all_old)
                .build()
                .map(|c| TransactWriteItem::builder().condition_check(c).build()),
        };
        built.map_err(|e| StoreError::Backend(e.into()))
    }
}

/// Expression placeholders: `#nN` for attribute names, `:vN` for values (each registered once,
/// since DynamoDB rejects unused ones).
#[derive(Default)]
struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    fn name(&mut self, attribute: &str) -> String {
        if let Some((placeholder, _)) = self.names.iter().find(|(_, a)| *a == attribute) {
            return placeholder.clone();
        }
        let placeholder = format!("#n{}", self.names.len());
        self.names
            .insert(placeholder.clone(), attribute.to_string());
        placeholder
    }

    fn value(&mut self, value: AttributeValue) -> String {
        if let Some((placeholder, _)) = self.values.iter().find(|(_, v)| **v == value) {
            return placeholder.clone();
        }
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    fn string(&mut self, value: &str) -> String {
        self.value(AttributeValue::S(value.to_string()))
    }

    fn number(&mut self, value: i64) -> String {
        self.value(AttributeValue::N(value.to_string()))
    }

    /// The item has no `ttl`, or one still in the future. (True for a missing item.)
    fn not_expired(&mut self, now: i64) -> String {
        let (ttl, now) = (self.name(TTL), self.number(now));
        format!("attribute_not_exists({ttl}) OR {ttl} > {now}")
    }

    /// A live item exists under the key.
    fn live(&mut self, now: i64) -> String {
        let pk = self.name(PK);
        let not_expired = self.not_expired(now);
        format!("attribute_exists({pk}) AND ({not_expired})")
    }

    fn condition(&mut self, condition: &Condition, now: i64) -> String {
        match condition {
            Condition::NotExists => {
                let (pk, ttl, now) = (self.name(PK), self.name(TTL), self.number(now));
                format!("attribute_not_exists({pk}) OR {ttl} <= {now}")
            }
            Condition::Exists => self.live(now),
            Condition::CounterEquals(name, value) => {
                let live = self.live(now);
                let (c, v) = (self.name(&counter_attribute(name)), self.number(*value));
                // A counter never set counts as 0.
                let missing = if *value == 0 {
                    format!(" OR attribute_not_exists({c})")
                } else {
                    String::new()
                };
                format!("({live}) AND ({c} = {v}{missing})")
            }
            Condition::CounterAtMost(name, value) => {
                let live = self.live(now);
                let (c, v) = (self.name(&counter_attribute(name)), self.number(*value));
                let missing = if *value >= 0 {
                    format!(" OR attribute_not_exists({c})")
                } else {
                    String::new()
                };
                format!("({live}) AND ({c} <= {v}{missing})")
            }
        }
    }

    /// `SET`/`REMOVE`/`ADD` clauses for `update`.
    fn update(&mut self, update: &Update) -> String {
        let mut set = Vec::new();
        let mut remove = Vec::new();
        let mut add = Vec::new();
        if let Some(body) = &update.body {
            let (b, v) = (self.name(BODY), self.string(&body.to_string()));
            set.push(format!("{b} = {v}"));
        }
        for (name, by) in &update.add {
            let (c, v) = (self.name(&counter_attribute(name)), self.number(*by));
            add.push(format!("{c} {v}"));
        }
        for (index, key) in [(Index::Gsi1, &update.gsi1), (Index::Gsi2, &update.gsi2)] {
            let (_, pk_attr, sk_attr) = index_attributes(index);
            match key {
                None => {}
                Some(None) => {
                    remove.push(self.name(pk_attr));
                    remove.push(self.name(sk_attr));
                }
                Some(Some(k)) => {
                    let (pk, v) = (self.name(pk_attr), self.string(&k.pk));
                    set.push(format!("{pk} = {v}"));
                    let (sk, v) = (self.name(sk_attr), self.string(&k.sk));
                    set.push(format!("{sk} = {v}"));
                }
            }
        }
        match update.expires_at {
            None => {}
            Some(None) => remove.push(self.name(TTL)),
            Some(Some(t)) => {
                let (ttl, v) = (self.name(TTL), self.number(t));
                set.push(format!("{ttl} = {v}"));
            }
        }
        if set.is_empty() && remove.is_empty() && add.is_empty() {
            // An update that changes nothing still creates a missing item, as locally.
            let (b, v) = (self.name(BODY), self.string("null"));
            set.push(format!("{b} = if_not_exists({b}, {v})"));
        }
        let mut clauses = Vec::new();
        for (keyword, parts) in [("SET", set), ("REMOVE", remove), ("ADD", add)] {
            if !parts.is_empty() {
                clauses.push(format!("{keyword} {}", parts.join(", ")));
            }
        }
        clauses.join(" ")
    }

    /// The maps for a request (`None` when empty: DynamoDB rejects empty maps).
    #[allow(clippy::type_complexity)]
    fn into_maps(
        self,
    ) -> (
        Option<HashMap<String, String>>,
        Option<HashMap<String, AttributeValue>>,
    ) {
        (
            (!self.names.is_empty()).then_some(self.names),
            (!self.values.is_empty()).then_some(self.values),
        )
    }
}

fn counter_attribute(name: &str) -> String {
    format!("{COUNTER_PREFIX}{name}")
}

fn key_attributes(key: &Key) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (PK.to_string(), AttributeValue::S(key.pk.clone())),
        (SK.to_string(), AttributeValue::S(key.sk.clone())),
    ])
}

/// The `ExclusiveStartKey` of a cursor: the table key, plus the index key on an index.
fn start_key(cursor: &Cursor, index: Option<Index>) -> HashMap<String, AttributeValue> {
    let mut key = key_attributes(&Key::new(cursor.pk.clone(), cursor.sk.clone()));
    if let (Some(index), Some((ipk, isk))) = (index, &cursor.index) {
        let (_, pk_attr, sk_attr) = index_attributes(index);
        key.insert(pk_attr.to_string(), AttributeValue::S(ipk.clone()));
        key.insert(sk_attr.to_string(), AttributeValue::S(isk.clone()));
    }
    key
}

fn to_attributes(item: &Item) -> HashMap<String, AttributeValue> {
    let mut attributes = key_attributes(&item.key());
    attributes.insert(BODY.to_string(), AttributeValue::S(item.body.to_string()));
    for (name, value) in &item.counters {
        attributes.insert(
            counter_attribute(name),
            AttributeValue::N(value.to_string()),
        );
    }
    for index in [Index::Gsi1, Index::Gsi2] {
        if let Some(key) = item.index_key(index) {
            let (_, pk_attr, sk_attr) = index_attributes(index);
            attributes.insert(pk_attr.to_string(), AttributeValue::S(key.pk.clone()));
            attributes.insert(sk_attr.to_string(), AttributeValue::S(key.sk.clone()));
        }
    }
    if let Some(t) = item.expires_at {
        attributes.insert(TTL.to_string(), AttributeValue::N(t.to_string()));
    }
    attributes
}

/// An item from the image of a DynamoDB stream record (`NewImage`, in DynamoDB JSON:
/// `{"pk": {"S": "..."}, "c_seq": {"N": "3"}, ...}`), read with this module's attribute layout.
/// The stream bridge uses it, so the layout stays known in one place.
pub fn item_from_stream_image(image: &Value) -> StoreResult<Item> {
    let Value::Object(fields) = image else {
        return Err(StoreError::Backend(anyhow!(
            "stream image is not an object"
        )));
    };
    let mut attributes = HashMap::new();
    for (name, typed) in fields {
        // Only S and N attributes make up our items; anything else is left for
        // `from_attributes` to report if it matters.
        if let Some(text) = typed.get("S").and_then(Value::as_str) {
            attributes.insert(name.clone(), AttributeValue::S(text.to_string()));
        } else if let Some(number) = typed.get("N").and_then(Value::as_str) {
            attributes.insert(name.clone(), AttributeValue::N(number.to_string()));
        }
    }
    from_attributes(&attributes)
}

/// The item a stream record inserted (`eventName` `INSERT`, its `NewImage`), when its
/// partition key starts with `pk_prefix`: `Ok(None)` for any other record, `Err` for one that
/// can't be read. What the stream consumers filter on (the event source mappings filter the
/// same way; this checks again).
pub fn inserted_item(
    event_name: &str,
    new_image: &Value,
    pk_prefix: &str,
) -> Result<Option<Item>, String> {
    if event_name != "INSERT" {
        return Ok(None);
    }
    let wanted = new_image["pk"]["S"]
        .as_str()
        .is_some_and(|pk| pk.starts_with(pk_prefix));
    if !wanted {
        return Ok(None);
    }
    item_from_stream_image(new_image)
        .map(Some)
        .map_err(|e| format!("{e:#}"))
}

/// The stream image (`NewImage`) DynamoDB would give for `item`: the inverse of
/// [`item_from_stream_image`] (tests build stream records with it).
pub fn stream_image_of(item: &Item) -> Value {
    let fields = to_attributes(item)
        .into_iter()
        .filter_map(|(name, value)| {
            let typed = match value {
                AttributeValue::S(s) => serde_json::json!({ "S": s }),
                AttributeValue::N(n) => serde_json::json!({ "N": n }),
                _ => return None,
            };
            Some((name, typed))
        })
        .collect();
    Value::Object(fields)
}

fn from_attributes(attributes: &HashMap<String, AttributeValue>) -> StoreResult<Item> {
    let string = |name: &str| -> StoreResult<Option<String>> {
        match attributes.get(name) {
            None => Ok(None),
            Some(AttributeValue::S(s)) => Ok(Some(s.clone())),
            Some(other) => Err(corrupt(name, other)),
        }
    };
    let number = |name: &str, value: &AttributeValue| -> StoreResult<i64> {
        match value {
            AttributeValue::N(n) => n.parse().map_err(|_| corrupt(name, value)),
            other => Err(corrupt(name, other)),
        }
    };
    let pk = string(PK)?.ok_or_else(|| StoreError::Backend(anyhow!("item without pk")))?;
    let sk = string(SK)?.ok_or_else(|| StoreError::Backend(anyhow!("item without sk")))?;
    let body = match string(BODY)? {
        Some(text) => serde_json::from_str(&text)
            .with_context(|| format!("item ({pk}, {sk}) has a body that is not JSON"))
            .map_err(StoreError::Backend)?,
        None => Value::Null,
    };
    let mut counters = std::collections::BTreeMap::new();
    for (name, value) in attributes {
        if let Some(counter) = name.strip_prefix(COUNTER_PREFIX) {
            counters.insert(counter.to_string(), number(name, value)?);
        }
    }
    let index_key = |index: Index| -> StoreResult<Option<IndexKey>> {
        let (_, pk_attr, sk_attr) = index_attributes(index);
        Ok(match (string(pk_attr)?, string(sk_attr)?) {
            (Some(pk), Some(sk)) => Some(IndexKey { pk, sk }),
            _ => None,
        })
    };
    let expires_at = attributes.get(TTL).map(|v| number(TTL, v)).transpose()?;
    Ok(Item {
        gsi1: index_key(Index::Gsi1)?,
        gsi2: index_key(Index::Gsi2)?,
        pk,
        sk,
        body: body.into(),
        counters,
        expires_at,
    })
}

fn corrupt(name: &str, value: &AttributeValue) -> StoreError {
    StoreError::Backend(anyhow!(
        "attribute {name} has an unexpected value {value:?}"
    ))
}
