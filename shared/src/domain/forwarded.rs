//! Forwarded addresses (WildDuck's `/addresses/forwarded`): an address that belongs to no
//! user; mail to it is sent on to its targets (addresses, `smtp://` relays, `http(s)://`
//! URLs) within a daily forwards limit, and never stored.
//!
//! Items: the address itself (`FORWARDED#<id>` / `FORWARDED`) and its claim
//! (`ADDRESS#<addrview>`, shared with users' addresses so one address is either a user's or
//! forwarded, never both) naming it with `forwarded`. Both are written and removed together.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::filters::{Target, TargetKind};
use super::names::{self, AddressError};
use super::webhooks;
use super::{AppState, DomainError, DomainResult, keys, stats, unix_now};
use crate::id::ObjectId;
use crate::store::{Condition, Item, Key, StoreError, Update, Write};

/// Labels of the conditions on forwarded addresses.
const ADDRESS_TAKEN: &str = super::addresses::ADDRESS_TAKEN;
const FORWARDED_GONE: &str = "forwarded address gone";

/// The forwards counter's window: a UTC day, as the user's.
pub const FORWARD_WINDOW_SECONDS: i64 = 24 * 3600;

/// The item's version counter: an update is written only over the version it read.
const VERSION: &str = "v";

fn key(id: &ObjectId) -> Key {
    keys::forwarded_address(id)
}

/// The autoreply of a forwarded address (sent by Eider's delivery; WildDuck leaves it to its
/// MX plugin).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ForwardedAutoreply {
    pub status: bool,
    #[serde(default)]
    pub start: Option<DateTime<Utc>>,
    #[serde(default)]
    pub end: Option<DateTime<Utc>>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub subject: String,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub html: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForwardedAddress {
    pub id: ObjectId,
    pub address: String,
    pub addrview: String,
    #[serde(default)]
    pub name: String,
    pub targets: Vec<Target>,
    /// The daily forwards limit; 0: the server's default.
    #[serde(default)]
    pub forwards: u64,
    #[serde(default)]
    pub autoreply: ForwardedAutoreply,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub forwarded_disabled: bool,
    #[serde(default)]
    pub meta_data: Option<String>,
    #[serde(default)]
    pub internal_data: Option<String>,
    #[serde(default)]
    pub wildcard: bool,
    pub created: DateTime<Utc>,
}

impl ForwardedAddress {
    /// Listed with users' addresses in `GET /addresses`.
    fn item(&self) -> Item {
        Item::new(
            key(&self.id),
            serde_json::to_value(self).unwrap_or_default(),
        )
        .with_gsi1(keys::addresses_listing(&self.addrview))
    }

    fn claim(&self) -> Item {
        Item::new(
            keys::address_claim(&self.addrview),
            json!({ "forwarded": self.id, "address": self.address }),
        )
    }

    /// The daily forwards this address may make.
    pub fn allowed_forwards(&self, state: &AppState) -> u64 {
        match self.forwards {
            0 => state.config.max_forwards(),
            set => set,
        }
    }
}

pub(crate) fn from_item(item: &Item) -> DomainResult<ForwardedAddress> {
    item.body_as()
        .map_err(|e| DomainError::corrupt("forwarded address", &item.pk, e))
}

fn not_found() -> DomainError {
    DomainError::AddressNotFound("Invalid or unknown address")
}

/// A validated `POST /addresses/forwarded`.
pub struct NewForwarded {
    pub address: String,
    pub allow_wildcard: bool,
    pub name: String,
    pub targets: Vec<String>,
    pub forwards: u64,
    pub autoreply: Option<AutoreplyChanges>,
    pub tags: Vec<String>,
    pub meta_data: Option<String>,
    pub internal_data: Option<String>,
}

/// Autoreply fields a request sets; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct AutoreplyChanges {
    pub status: Option<bool>,
    pub start: Option<Option<DateTime<Utc>>>,
    pub end: Option<Option<DateTime<Utc>>>,
    pub name: Option<String>,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
}

impl AutoreplyChanges {
    /// WildDuck's partial update: a sent object turns the autoreply on unless it says
    /// otherwise.
    fn apply(self, reply: &mut ForwardedAutoreply) {
        reply.status = self.status.unwrap_or(true);
        if let Some(start) = self.start {
            reply.start = start;
        }
        if let Some(end) = self.end {
            reply.end = end;
        }
        if let Some(name) = self.name {
            reply.name = name;
        }
        if let Some(subject) = self.subject {
            reply.subject = subject;
        }
        if let Some(text) = self.text {
            reply.text = text;
        }
        if let Some(html) = self.html {
            reply.html = html;
        }
    }
}

fn address_error(e: AddressError) -> DomainError {
    DomainError::invalid("address", e.message("address"))
}

/// Targets as stored; refuses one that is the address itself (dots ignored, WildDuck's
/// "Can not forward to self").
fn parse_targets(values: &[String], addrview: &str) -> DomainResult<Vec<Target>> {
    let mut targets = Vec::new();
    for value in values {
        let target = Target::parse(value).ok_or_else(|| {
            DomainError::invalid("targets", format!("Unknown target type \"{value}\""))
        })?;
        if target.kind == TargetKind::Mail
            && names::normalize_address(&target.value, true).is_ok_and(|a| a.addrview == addrview)
        {
            return Err(DomainError::invalid("targets", "Can not forward to self"));
        }
        if targets.iter().all(|t: &Target| t.value != target.value) {
            targets.push(target);
        }
    }
    Ok(targets)
}

/// `POST /addresses/forwarded`.
pub async fn create(state: &AppState, input: NewForwarded) -> DomainResult<ObjectId> {
    let normalized =
        names::normalize_alias(&input.address, input.allow_wildcard).map_err(address_error)?;
    let targets = parse_targets(&input.targets, &normalized.addrview)?;
    let mut autoreply = ForwardedAutoreply::default();
    if let Some(changes) = input.autoreply {
        changes.apply(&mut autoreply);
    }
    let record = ForwardedAddress {
        id: ObjectId::new(),
        address: normalized.address,
        addrview: normalized.addrview,
        name: input.name,
        targets,
        forwards: input.forwards,
        autoreply,
        tags: input.tags,
        forwarded_disabled: false,
        meta_data: input.meta_data,
        internal_data: input.internal_data,
        wildcard: normalized.wildcard,
        created: Utc::now(),
    };
    let writes = vec![
        Write::put_new(record.claim(), ADDRESS_TAKEN),
        Write::put_new(record.item().with_counter(VERSION, 0), FORWARDED_GONE),
        stats::change(&[(stats::ADDRESSES, 1)]),
    ];
    match state.table.transact(writes).await {
        Ok(()) => {
            let event = webhooks::Event::new("address.forwarded.created")
                .with("address", record.id)
                .with("value", &record.address);
            webhooks::publish(state, event).await;
            Ok(record.id)
        }
        Err(StoreError::ConditionFailed {
            label: ADDRESS_TAKEN,
        }) => Err(DomainError::AddressExists {
            message: "This email address already exists",
            username: None,
        }),
        Err(e) => Err(e.into()),
    }
}

/// A forwarded address by id.
pub async fn load(state: &AppState, id: &ObjectId) -> DomainResult<ForwardedAddress> {
    match state.table.get(&key(id)).await? {
        Some(item) => from_item(&item),
        None => Err(not_found()),
    }
}

/// A forwarded address with today's forwards count.
pub struct ForwardedStatus {
    pub address: ForwardedAddress,
    pub allowed: u64,
    pub used: u64,
    /// Seconds until the count starts again, when something was counted today.
    pub ttl: Option<i64>,
}

/// `GET /addresses/forwarded/{address}`.
pub async fn get(state: &AppState, id: &ObjectId) -> DomainResult<ForwardedStatus> {
    let address = load(state, id).await?;
    let now = unix_now();
    let window = now.div_euclid(FORWARD_WINDOW_SECONDS);
    let counted = state
        .table
        .get(&forwards_key(id, window))
        .await?
        .map(|i| i.counter("n").max(0) as u64)
        .unwrap_or(0);
    Ok(ForwardedStatus {
        allowed: address.allowed_forwards(state),
        used: counted,
        ttl: (counted > 0).then(|| (window + 1) * FORWARD_WINDOW_SECONDS - now),
        address,
    })
}

fn forwards_key(id: &ObjectId, window: i64) -> Key {
    keys::rate_window(&format!("fwda:{id}"), window)
}

/// A validated `PUT /addresses/forwarded/{id}`; `None` leaves a field as it is.
#[derive(Default)]
pub struct ForwardedChanges {
    pub address: Option<String>,
    pub name: Option<String>,
    pub targets: Option<Vec<String>>,
    pub forwards: Option<u64>,
    pub autoreply: Option<AutoreplyChanges>,
    pub tags: Option<Vec<String>>,
    pub forwarded_disabled: Option<bool>,
    pub meta_data: Option<String>,
    pub internal_data: Option<String>,
}

/// `PUT /addresses/forwarded/{id}`: a rename moves the claim in the same transaction.
pub async fn update(
    state: &AppState,
    id: &ObjectId,
    changes: ForwardedChanges,
) -> DomainResult<()> {
    let item = state.table.get(&key(id)).await?.ok_or_else(not_found)?;
    let current = from_item(&item)?;
    let version = item.counter(VERSION);
    let mut next = current.clone();
    if let Some(address) = &changes.address {
        let normalized =
            names::normalize_alias(address, current.wildcard).map_err(address_error)?;
        if normalized.wildcard != current.wildcard || address.contains('*') != current.wildcard {
            return Err(DomainError::ChangeNotAllowed(
                "Can not change special address",
            ));
        }
        next.address = normalized.address;
        next.addrview = normalized.addrview;
    }
    if let Some(name) = changes.name {
        next.name = name;
    }
    if let Some(targets) = &changes.targets {
        next.targets = parse_targets(targets, &next.addrview)?;
    } else if changes.address.is_some() {
        parse_targets(
            &next
                .targets
                .iter()
                .map(|t| t.value.clone())
                .collect::<Vec<_>>(),
            &next.addrview,
        )?;
    }
    if let Some(forwards) = changes.forwards {
        next.forwards = forwards;
    }
    if let Some(reply) = changes.autoreply {
        reply.apply(&mut next.autoreply);
    }
    if let Some(tags) = changes.tags {
        next.tags = tags;
    }
    if let Some(disabled) = changes.forwarded_disabled {
        next.forwarded_disabled = disabled;
    }
    if changes.meta_data.is_some() {
        next.meta_data = changes.meta_data;
    }
    if changes.internal_data.is_some() {
        next.internal_data = changes.internal_data;
    }
    // The write holds only if nobody changed the address meanwhile.
    let mut writes = vec![
        Write::put(next.item().with_counter(VERSION, version + 1)).when(
            Condition::CounterEquals(VERSION.into(), version),
            FORWARDED_GONE,
        ),
    ];
    if next.addrview != current.addrview {
        writes.push(Write::put_new(next.claim(), ADDRESS_TAKEN));
        writes.push(Write::delete(keys::address_claim(&current.addrview)));
    }
    match state.table.transact(writes).await {
        Ok(()) => Ok(()),
        Err(StoreError::ConditionFailed {
            label: ADDRESS_TAKEN,
        }) => Err(DomainError::AddressExists {
            message: "Address already exists",
            username: None,
        }),
        Err(StoreError::ConditionFailed {
            label: FORWARDED_GONE,
        }) => Err(DomainError::Contended(
            "The address changed meanwhile, try again",
        )),
        Err(e) => Err(e.into()),
    }
}

/// `DELETE /addresses/forwarded/{id}`.
pub async fn delete(state: &AppState, id: &ObjectId) -> DomainResult<()> {
    let current = load(state, id).await?;
    state
        .table
        .transact(vec![
            Write::delete(key(id)),
            Write::delete(keys::address_claim(&current.addrview)),
            stats::change(&[(stats::ADDRESSES, -1)]),
        ])
        .await?;
    let event = webhooks::Event::new("address.forwarded.deleted")
        .with("address", id)
        .with("value", &current.address);
    webhooks::publish(state, event).await;
    Ok(())
}

/// Counts `n` forwards against the address's daily limit; false (and nothing counted) when
/// they don't fit.
pub async fn count_forwards(
    state: &AppState,
    address: &ForwardedAddress,
    n: usize,
) -> DomainResult<bool> {
    count_daily(
        state,
        &format!("fwda:{}", address.id),
        n,
        address.allowed_forwards(state),
    )
    .await
}

/// Gives back `n` forwards counted today (none of them went out).
pub async fn return_forwards(
    state: &AppState,
    address: &ForwardedAddress,
    n: usize,
) -> DomainResult<()> {
    let window = unix_now().div_euclid(FORWARD_WINDOW_SECONDS);
    state
        .table
        .update(
            &forwards_key(&address.id, window),
            Update::default().add("n", -(n as i64)),
            None,
        )
        .await?;
    Ok(())
}

/// Adds `n` to today's counter of `subject` (`RATE#<subject>` / `W#<day>`, expiring with the
/// day) unless that passes `limit`; false, and nothing counted, when it would. The forwards of
/// users and of forwarded addresses are counted this way.
pub async fn count_daily(
    state: &AppState,
    subject: &str,
    n: usize,
    limit: u64,
) -> DomainResult<bool> {
    let window = unix_now().div_euclid(FORWARD_WINDOW_SECONDS);
    let key = keys::rate_window(subject, window);
    let counted = state
        .table
        .update(
            &key,
            Update {
                expires_at: Some(Some((window + 1) * FORWARD_WINDOW_SECONDS)),
                ..Update::default().add("n", n as i64)
            },
            None,
        )
        .await?;
    if counted.counter("n") > limit.min(i64::MAX as u64) as i64 {
        state
            .table
            .update(&key, Update::default().add("n", -(n as i64)), None)
            .await?;
        return Ok(false);
    }
    Ok(true)
}
