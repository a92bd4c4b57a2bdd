//! Webhooks (WildDuck's `/webhooks`) and the events they receive.
//!
//! A webhook names event types (`user.created`, `user.*`, `*`), optionally one user, and an
//! http(s) URL. [`publish`] is called after a change has committed: it matches the event
//! against the webhooks and writes one delivery item per match into the delivery queue, a few
//! partitions of the table (`WEBHOOK_QUEUE#<n>`, sorted by when each delivery is due). The
//! change itself never waits for an endpoint: publishing is one table write, and only when a
//! webhook matches. Senders (`super::webhook_send`) take due deliveries, POST them signed, and
//! on failure put them back due later (5 attempts from 2 s, as WildDuck), then mark the
//! webhook failing with the reason (`GET /webhooks/{webhook}`).
//!
//! Besides WildDuck's events, the message events it never had: `message.new` (a message
//! stored by delivery, upload or as the sent copy), `message.deleted`, `message.moved` and
//! `message.flags`, each with a short summary of the message (never its body).
//!
//! Items: the webhook under `WEBHOOKS` / `HOOK#<id>` (one small partition, listed in id
//! order); a delivery under `WEBHOOK_QUEUE#<shard>` / `<due ms>#<delivery id>`, the shard
//! chosen by the webhook so one endpoint's deliveries stay in one partition.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::Notify;

use super::mailboxes::StoredMailbox;
use super::messages::Message;
use super::paging::{PageRequest, PageResult, page_and_total};
use super::totp::{seal_for, unseal_for};
use super::{AppState, DomainError, DomainResult, keys};
use crate::id::ObjectId;
use crate::store::{Item, Key, Query, SortRange, Write};

/// How long a process trusts its copy of the webhook list (another process may have changed
/// it; the process that changes it refreshes at once).
const HOOKS_FRESH_FOR: Duration = Duration::from_secs(30);
/// Deliveries written per transaction.
const QUEUE_WRITES_PER_BATCH: usize = 50;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Webhook {
    pub id: ObjectId,
    /// Event types and patterns (`*`, `user.*`), trimmed and lowercased.
    #[serde(rename = "type")]
    pub types: Vec<String>,
    /// Only this user's events (and events of no user).
    pub user: Option<ObjectId>,
    pub url: String,
    pub created: DateTime<Utc>,
    /// The signing secret, sealed with `EIDER_SECRET_KEY` (see `totp::seal_for`).
    secret: String,
    #[serde(default)]
    pub health: Health,
}

/// How a webhook's deliveries went, as the senders last saw it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// The last delivery gave up after its attempts (or the URL is refused); cleared by the
    /// next success.
    pub failing: bool,
    pub last_error: Option<String>,
    pub last_failure: Option<DateTime<Utc>>,
    pub last_success: Option<DateTime<Utc>>,
    /// Deliveries given up on, ever.
    pub failed_deliveries: u64,
}

impl Webhook {
    /// The signing secret, as the API gave it at creation.
    pub fn secret(&self, state: &AppState) -> DomainResult<String> {
        let raw = unseal_for(
            &self.secret,
            &secret_aad(&self.id),
            state.config.secret_key.as_ref(),
        )?;
        String::from_utf8(raw).map_err(|_| {
            DomainError::Internal(anyhow::anyhow!("a webhook secret is not valid UTF-8"))
        })
    }

    /// Whether `event` goes to this webhook: by type (`*`, the type, or a pattern of its
    /// first one or two parts) and by user (a webhook of a user gets that user's events and
    /// those of no user, as WildDuck's).
    pub fn wants(&self, event: &Event) -> bool {
        let user_matches = match (&self.user, &event.user) {
            (Some(mine), Some(theirs)) => mine == theirs,
            _ => true,
        };
        user_matches && self.types.iter().any(|t| type_matches(t, event.ev))
    }

    fn item(&self) -> Item {
        Item::new(
            keys::webhook(&self.id),
            serde_json::to_value(self).unwrap_or_default(),
        )
    }
}

fn secret_aad(id: &ObjectId) -> Vec<u8> {
    format!("webhook:{id}").into_bytes()
}

/// WildDuck's matching of a webhook type against an event name: `*`, the name itself, or
/// `a.*` / `a.b.*` for its first parts (WildDuck builds the second pattern wrongly, so
/// `a.b.*` never matches there; here it does).
pub fn type_matches(pattern: &str, ev: &str) -> bool {
    if pattern == "*" || pattern == ev {
        return true;
    }
    let Some(prefix) = pattern.strip_suffix(".*") else {
        return false;
    };
    let parts: Vec<&str> = ev.split('.').collect();
    (1..parts.len().min(3)).any(|n| parts[..n].join(".") == prefix)
}

fn from_item(item: &Item) -> DomainResult<Webhook> {
    item.body_as()
        .map_err(|e| DomainError::corrupt("webhook", &item.sk, e))
}

/// What `POST /webhooks` takes.
pub struct NewWebhook {
    pub types: Vec<String>,
    pub user: Option<ObjectId>,
    pub url: String,
}

/// `POST /webhooks`: the webhook and its signing secret (shown only here).
pub async fn create(state: &AppState, new: NewWebhook) -> DomainResult<(Webhook, String)> {
    if let Some(user) = &new.user {
        super::users::load(state, user).await?;
    }
    super::webhook_url::check_syntax(&new.url, &state.config.webhooks)?;
    let id = ObjectId::new();
    let mut random = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut random);
    let secret = format!("whsec_{}", URL_SAFE_NO_PAD.encode(random));
    let hook = Webhook {
        id,
        types: new.types,
        user: new.user,
        url: new.url,
        created: Utc::now(),
        secret: seal_for(
            secret.as_bytes(),
            &secret_aad(&id),
            state.config.secret_key.as_ref(),
        )?,
        health: Health::default(),
    };
    state
        .table
        .transact(vec![Write::put_new(hook.item(), "webhook id taken")])
        .await?;
    state.webhooks.forget();
    Ok((hook, secret))
}

/// `GET /webhooks/{webhook}`.
pub async fn get(state: &AppState, id: &ObjectId) -> DomainResult<Webhook> {
    load(state, id).await?.ok_or(DomainError::WebhookNotFound(
        "Invalid or unknown webhook identifier",
    ))
}

pub async fn load(state: &AppState, id: &ObjectId) -> DomainResult<Option<Webhook>> {
    state
        .table
        .get(&keys::webhook(id))
        .await?
        .map(|item| from_item(&item))
        .transpose()
}

/// `DELETE /webhooks/{webhook}`: its queued deliveries are dropped as senders reach them.
pub async fn delete(state: &AppState, id: &ObjectId) -> DomainResult<()> {
    get(state, id).await?;
    state
        .table
        .transact(vec![Write::delete(keys::webhook(id))])
        .await?;
    state.webhooks.forget();
    Ok(())
}

/// A `GET /webhooks` request.
pub struct ListWebhooks {
    /// Webhooks whose types include exactly this one.
    pub event_type: Option<String>,
    pub user: Option<ObjectId>,
    pub page: PageRequest,
}

pub struct WebhookListing {
    pub total: u64,
    pub page: PageResult<Webhook>,
}

/// `GET /webhooks`, in id (creation) order.
pub async fn list(state: &AppState, request: &ListWebhooks) -> DomainResult<WebhookListing> {
    let keep = |item: &Item| {
        from_item(item).is_ok_and(|hook| {
            request
                .event_type
                .as_ref()
                .is_none_or(|t| hook.types.contains(t))
                && request.user.is_none_or(|u| hook.user == Some(u))
        })
    };
    let (total, page) = page_and_total(
        state.table.as_ref(),
        keys::WEBHOOKS_PK,
        keys::WEBHOOK_SK_PREFIX,
        &request.page,
        &keep,
        from_item,
    )
    .await?;
    Ok(WebhookListing { total, page })
}

async fn all(state: &AppState) -> DomainResult<Vec<Webhook>> {
    let items = crate::store::query_all(
        state.table.as_ref(),
        Query::table(keys::WEBHOOKS_PK)
            .range(SortRange::BeginsWith(keys::WEBHOOK_SK_PREFIX.into()))
            .limit(500),
    )
    .await?;
    items.iter().map(from_item).collect()
}

/// Records how a delivery to `id` ended (the webhook may be gone meanwhile). Concurrent
/// senders may overwrite each other's record; it is a status, not a count to rely on.
pub async fn record_outcome(
    state: &AppState,
    id: &ObjectId,
    failure: Option<&str>,
) -> DomainResult<()> {
    let Some(mut hook) = load(state, id).await? else {
        return Ok(());
    };
    let now = Utc::now();
    match failure {
        None if !hook.health.failing && hook.health.last_success.is_some() => return Ok(()),
        None => {
            hook.health.failing = false;
            hook.health.last_success = Some(now);
        }
        Some(reason) => {
            hook.health.failing = true;
            hook.health.last_error = Some(reason.chars().take(500).collect());
            hook.health.last_failure = Some(now);
            hook.health.failed_deliveries += 1;
        }
    }
    let result = state
        .table
        .transact(vec![
            Write::put(hook.item()).when(crate::store::Condition::Exists, "webhook gone"),
        ])
        .await;
    match result {
        Ok(()) | Err(crate::store::StoreError::ConditionFailed { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// This process's copy of the webhook list, and the bell that wakes a local sender.
#[derive(Default)]
pub struct Registry {
    hooks: Mutex<Option<(Instant, Arc<Vec<Webhook>>)>>,
    queued: Notify,
}

impl Registry {
    /// The webhooks, read again when the copy is older than [`HOOKS_FRESH_FOR`].
    async fn current(&self, state: &AppState) -> DomainResult<Arc<Vec<Webhook>>> {
        if let Some((at, hooks)) = self
            .hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            && at.elapsed() < HOOKS_FRESH_FOR
        {
            return Ok(hooks.clone());
        }
        let hooks = Arc::new(all(state).await?);
        *self.hooks.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), hooks.clone()));
        Ok(hooks)
    }

    /// The list changed here: read it again at the next event.
    fn forget(&self) {
        *self.hooks.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Resolves when a delivery is queued in this process (a local sender waits on it).
    pub async fn queued(&self) {
        self.queued.notified().await
    }
}

/// One event: its WildDuck name, the user it concerns (if any), and its fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub ev: &'static str,
    pub user: Option<ObjectId>,
    pub data: Map<String, Value>,
}

impl Event {
    pub fn new(ev: &'static str) -> Event {
        Event {
            ev,
            user: None,
            data: Map::new(),
        }
    }

    /// An event of `user` (the payload's `user` field).
    pub fn of(ev: &'static str, user: &ObjectId) -> Event {
        Event::new(ev).user(user)
    }

    pub fn user(mut self, user: &ObjectId) -> Event {
        self.user = Some(*user);
        self.data.insert("user".into(), json!(user));
        self
    }

    pub fn with(mut self, field: &str, value: impl Serialize) -> Event {
        self.data.insert(field.into(), json!(value));
        self
    }

    /// The JSON body a webhook receives: WildDuck's `{id, ev, time, ...fields}`.
    fn payload(&self, delivery_id: &str, time: DateTime<Utc>) -> Value {
        let mut body = Map::new();
        body.insert("id".into(), json!(delivery_id));
        body.insert("ev".into(), json!(self.ev));
        body.insert("time".into(), json!(time.timestamp_millis()));
        for (k, v) in &self.data {
            body.insert(k.clone(), v.clone());
        }
        Value::Object(body)
    }
}

/// A queued delivery: one event for one webhook.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// Unique per event and webhook, the same on every attempt (`X-Eider-Delivery`, and the
    /// payload's `id`): receivers de-duplicate on it.
    pub id: String,
    pub hook: ObjectId,
    pub ev: String,
    /// The JSON body, exactly as signed and sent.
    pub body: String,
    /// Attempts made so far.
    pub attempts: u32,
    pub due: DateTime<Utc>,
    /// Why the last attempt failed.
    #[serde(default)]
    pub last_error: Option<String>,
}

impl Delivery {
    pub fn key(&self) -> Key {
        keys::webhook_delivery(&self.hook, self.due.timestamp_millis(), &self.id)
    }

    pub fn item(&self) -> Item {
        // Kept at most a week: a sender that never runs must not fill the table.
        let expires = self.due.timestamp() + 7 * 24 * 3600;
        Item::new(self.key(), serde_json::to_value(self).unwrap_or_default()).with_expiry(expires)
    }

    pub fn from_item(item: &Item) -> DomainResult<Delivery> {
        item.body_as()
            .map_err(|e| DomainError::corrupt("webhook delivery", &item.sk, e))
    }
}

/// Publishes `event`: see [`publish_all`].
pub async fn publish(state: &AppState, event: Event) {
    publish_all(state, vec![event]).await
}

/// Queues a delivery of each event for each webhook that wants it. Called after the change
/// committed; a failure here is logged and the change stands (its events are lost, which the
/// log says).
pub async fn publish_all(state: &AppState, events: Vec<Event>) {
    if events.is_empty() {
        return;
    }
    if let Err(e) = try_publish(state, &events).await {
        tracing::error!(error = %e, events = events.len(), first = events[0].ev, "webhook events not queued");
    }
}

async fn try_publish(state: &AppState, events: &[Event]) -> DomainResult<()> {
    let hooks = state.webhooks.current(state).await?;
    if hooks.is_empty() {
        return Ok(());
    }
    let now = Utc::now();
    let mut writes = Vec::new();
    for event in events {
        let event_id = ObjectId::new();
        for (n, hook) in hooks.iter().filter(|h| h.wants(event)).enumerate() {
            let id = format!("{event_id}:{}", n + 1);
            let delivery = Delivery {
                body: event.payload(&id, now).to_string(),
                id,
                hook: hook.id,
                ev: event.ev.to_string(),
                attempts: 0,
                due: now,
                last_error: None,
            };
            writes.push(Write::put(delivery.item()));
        }
    }
    if writes.is_empty() {
        return Ok(());
    }
    let mut writes = writes.into_iter().peekable();
    while writes.peek().is_some() {
        let batch: Vec<Write> = writes.by_ref().take(QUEUE_WRITES_PER_BATCH).collect();
        state.table.transact(batch).await?;
    }
    state.webhooks.queued.notify_waiters();
    Ok(())
}

/// Deliveries due by `now` in one queue partition, oldest first (at most `limit`).
pub async fn due(
    state: &AppState,
    shard: u32,
    now: DateTime<Utc>,
    limit: usize,
) -> DomainResult<Vec<Delivery>> {
    let (pk, upper) = keys::webhook_queue_until(shard, now.timestamp_millis());
    let page = state
        .table
        .query(
            &Query::table(pk)
                .range(SortRange::Between(String::new(), upper))
                .limit(limit),
        )
        .await?;
    page.items.iter().map(Delivery::from_item).collect()
}

/// The message summary message events carry (never the body).
fn message_fields(event: Event, message: &Message) -> Event {
    event
        .with("mailbox", message.mailbox)
        .with("uid", message.uid)
        .with("message", message.id)
        .with("from", &message.from)
        .with("subject", &message.subject)
        .with("size", message.size)
        .with("date", crate::time::iso(&message.date))
}

/// `message.new`: a message was stored (delivered, uploaded, or the sent copy).
pub fn message_new(message: &Message) -> Event {
    message_fields(Event::of("message.new", &message.user), message)
}

/// `message.deleted`.
pub fn message_deleted(message: &Message) -> Event {
    message_fields(Event::of("message.deleted", &message.user), message)
}

/// `message.moved`: `message` is where it is now; `previous` where it was.
pub fn message_moved(previous: &Message, message: &Message) -> Event {
    message_fields(Event::of("message.moved", &message.user), message)
        .with("previousMailbox", previous.mailbox)
        .with("previousUid", previous.uid)
}

/// `message.flags`: its flags after the change.
pub fn message_flags(message: &Message) -> Event {
    message_fields(Event::of("message.flags", &message.user), message)
        .with("flags", message.flags())
}

/// WildDuck's `marked.spam` (moved into Junk) and `marked.ham` (out of Junk, except into
/// Trash) for messages moved from `source` to `target`; `message` is the UID, as WildDuck's.
pub fn marked(source: &StoredMailbox, target: &StoredMailbox, moved: &[Message]) -> Vec<Event> {
    let is = |m: &StoredMailbox, use_: &str| m.mailbox.special_use.as_deref() == Some(use_);
    let ev = if is(target, "\\Junk") && !is(source, "\\Junk") {
        "marked.spam"
    } else if is(source, "\\Junk") && !is(target, "\\Junk") && !is(target, "\\Trash") {
        "marked.ham"
    } else {
        return Vec::new();
    };
    moved
        .iter()
        .map(|m| {
            Event::of(ev, &m.user)
                .with("mailbox", m.mailbox)
                .with("message", m.uid)
                .with("from", &m.from)
                .with("to", &m.to)
                .with("cc", &m.cc)
                .with("messageId", &m.message_id)
                .with("subject", &m.subject)
                .with("date", crate::time::iso(&m.idate))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(types: &[&str], user: Option<ObjectId>) -> Webhook {
        Webhook {
            id: ObjectId::new(),
            types: types.iter().map(|t| t.to_string()).collect(),
            user,
            url: "http://127.0.0.1/".into(),
            created: Utc::now(),
            secret: String::new(),
            health: Health::default(),
        }
    }

    #[test]
    fn types_match_as_wildduck_means_them() {
        assert!(type_matches("*", "user.created"));
        assert!(type_matches("user.created", "user.created"));
        assert!(type_matches("user.*", "user.password.changed"));
        assert!(type_matches("user.password.*", "user.password.changed"));
        assert!(type_matches("message.*", "message.new"));
        assert!(!type_matches("user.*", "usera.created"));
        assert!(!type_matches(
            "user.password.changed.*",
            "user.password.changed"
        ));
        assert!(!type_matches("user", "user.created"));
        assert!(!type_matches("message.new", "message.new.x"));
        assert!(type_matches("forward added", "forward added"));
        assert!(!type_matches("forward.*", "forward added"));
    }

    #[test]
    fn a_users_webhook_gets_that_users_events_and_those_of_nobody() {
        let alice = ObjectId::new();
        let bob = ObjectId::new();
        let mine = hook(&["*"], Some(alice));
        let global = hook(&["message.*"], None);
        assert!(mine.wants(&Event::of("message.new", &alice)));
        assert!(!mine.wants(&Event::of("message.new", &bob)));
        assert!(mine.wants(&Event::new("address.domain.renamed")));
        assert!(global.wants(&Event::of("message.new", &bob)));
        assert!(!global.wants(&Event::of("user.created", &bob)));
    }

    #[test]
    fn payloads_carry_wildduck_fields_and_the_delivery_id() {
        let user = ObjectId::new();
        let event = Event::of("mailbox.created", &user).with("path", "Work");
        let time = Utc::now();
        let body = event.payload("abc:1", time);
        assert_eq!(body["id"], "abc:1");
        assert_eq!(body["ev"], "mailbox.created");
        assert_eq!(body["time"], time.timestamp_millis());
        assert_eq!(body["user"], json!(user));
        assert_eq!(body["path"], "Work");
    }
}
