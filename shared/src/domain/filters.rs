//! Message filters: the rules applied to incoming mail at delivery (WildDuck's `filters`
//! collection and `POST/GET/PUT/DELETE /users/{user}/filters...`, spec "Filters",
//! spec/wildduck-behaviour.md §2.38–§2.42 and §3).
//!
//! A filter is one item under its user (`USER#<user>` / `FILTER#<id>`), so one `Query` lists a
//! user's filters in id order, which is creation order and also the order delivery applies
//! them in. The profile's `filters` counter is changed in the same transaction as every
//! create and delete; the create carries `CounterAtMost(filters, allowed - 1)` as its
//! condition, so `limits.filters` holds exactly, even under concurrent creates.
//!
//! Requests come in two shapes and both are accepted: the spec's flat fields (`query_from`,
//! `action_seen`, `action_forward`, `action_targetUrl`, ...) and WildDuck's nested `query` /
//! `action` objects. Reads answer both shapes side by side.
//!
//! Matching ([`Filter::matches`]) is WildDuck's: every condition must hold; header conditions
//! are case-insensitive substrings of the decoded header values (`to` also looks at `Cc` and
//! `Delivered-To`, `from` at `Sender`); `text` is a case-insensitive substring of the plain
//! text with whitespace collapsed; `size` > 0 means at least, < 0 at most that many bytes. An
//! empty query matches every message. Unlike WildDuck, `ha: false` is enforced (the spec says
//! it requires a message without attachments; WildDuck ignores it).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::authlog::{AuthlogEntry, Session};
use super::names::normalize_address;
use super::users::{self, FILTER_COUNT, MAX_FILTERS};
use super::webhooks;
use super::{AppState, DomainError, DomainResult, keys, mailboxes};
use crate::id::ObjectId;
use crate::store::{Condition, Item, Query, SortRange, StoreError, Update, Write, query_all};

/// Longest query string (WildDuck's 255 characters).
pub const MAX_QUERY_CHARS: usize = 255;

/// Labels of the conditions on filter items (see [`crate::store::Guard`]).
/// The filter is gone (or, for a new one, its id exists already).
const FILTER_GONE: &str = "filter gone";
/// The user's filter count reached the limit (or the profile is gone).
const FILTER_LIMIT: &str = "filter limit";
/// Most forward targets per filter (the same bound as a user's own `targets`).
pub const MAX_TARGETS: usize = users::MAX_LIST_ITEMS;

/// What a forward target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// An email address: the message is forwarded to it.
    Mail,
    /// `smtp://host:port`: the message is relayed to that server for the original recipient.
    Relay,
    /// `http(s)://...`: the raw message is POSTed to the URL (`action_targetUrl`).
    Http,
}

/// One forward target of a filter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub id: ObjectId,
    #[serde(rename = "type")]
    pub kind: TargetKind,
    pub value: String,
}

impl Target {
    /// Classifies a target as WildDuck does; `None` when it is neither an address nor an
    /// smtp/smtps/http/https URL with a host.
    pub fn parse(value: &str) -> Option<Target> {
        let value = value.trim();
        let lower = value.to_ascii_lowercase();
        let kind = if lower.starts_with("smtp://") || lower.starts_with("smtps://") {
            TargetKind::Relay
        } else if lower.starts_with("http://") || lower.starts_with("https://") {
            TargetKind::Http
        } else if normalize_address(value, true).is_ok() {
            TargetKind::Mail
        } else {
            return None;
        };
        if kind != TargetKind::Mail {
            let url = url::Url::parse(value).ok()?;
            if url.host_str().is_none_or(str::is_empty) {
                return None;
            }
        }
        Some(Target {
            id: ObjectId::new(),
            kind,
            value: value.to_string(),
        })
    }

    /// How the listing describes it: http targets by their host only (their URL may hold a
    /// secret), others as they are.
    pub fn description(&self) -> String {
        match self.kind {
            TargetKind::Http => url::Url::parse(&self.value)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_default(),
            _ => self.value.clone(),
        }
    }
}

/// The conditions of a filter; `None` means "not checked".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FilterQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    pub subject: Option<String>,
    pub list_id: Option<String>,
    pub text: Option<String>,
    pub ha: Option<bool>,
    /// Positive: at least this many bytes; negative: at most `|size|` bytes.
    pub size: Option<i64>,
}

/// What a matching filter does; `None` means "no decision".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FilterAction {
    pub seen: Option<bool>,
    pub flag: Option<bool>,
    pub delete: Option<bool>,
    pub spam: Option<bool>,
    pub mailbox: Option<ObjectId>,
    pub targets: Vec<Target>,
}

/// A stored filter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Filter {
    pub id: ObjectId,
    pub user: ObjectId,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub query: FilterQuery,
    #[serde(default)]
    pub action: FilterAction,
    #[serde(default)]
    pub disabled: bool,
    /// JSON text of an object.
    #[serde(default)]
    pub meta_data: Option<String>,
    pub created: DateTime<Utc>,
}

/// What a message offers to the conditions of a filter, computed once per delivery.
#[derive(Debug, Clone, Default)]
pub struct MatchInput {
    /// Top-level headers as `(lowercase name, lowercase decoded value)`.
    pub headers: Vec<(String, String)>,
    /// The plain text, lowercased, whitespace collapsed.
    pub text: String,
    /// Any attachment, embedded images included (WildDuck's `maildata.attachments`).
    pub has_attachments: bool,
    /// RFC 822 size in bytes.
    pub size: u64,
}

impl MatchInput {
    /// The match input of a parsed message of `size` bytes.
    pub fn of(parsed: &crate::mail::parse::ParsedMessage, size: u64) -> MatchInput {
        MatchInput {
            headers: parsed
                .headers
                .iter()
                .map(|(name, value)| (name.to_lowercase(), value.to_lowercase()))
                .collect(),
            text: collapse_whitespace(&parsed.text.to_lowercase()),
            has_attachments: parsed.attachments.iter().any(|a| a.listed),
            size,
        }
    }
}

/// The text with every run of whitespace as one space.
pub fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Filter {
    fn key(&self) -> crate::store::Key {
        keys::filter(&self.user, &self.id)
    }

    /// Also listed across users (`GET /filters`) in id order.
    fn item(&self) -> Item {
        Item::new(self.key(), serde_json::to_value(self).unwrap_or_default())
            .with_gsi1(keys::filters_listing(&self.id))
    }

    /// Whether every condition holds for the message (§3 step 4).
    pub fn matches(&self, message: &MatchInput) -> bool {
        let q = &self.query;
        let mut wanted: Vec<(&str, String)> = Vec::new();
        for (header, value) in [
            ("from", &q.from),
            ("to", &q.to),
            ("subject", &q.subject),
            ("list-id", &q.list_id),
        ] {
            let Some(value) = value else { continue };
            let mut check = value.to_lowercase();
            // Only the id part of a List-ID condition (`Name <id>`) is compared.
            if header == "list-id"
                && let Some(start) = check.find('<')
            {
                let inner = check[start + 1..].split('>').next().unwrap_or("").trim();
                if !inner.is_empty() {
                    check = inner.to_string();
                }
            }
            if !check.is_empty() {
                wanted.push((header, check));
            }
        }
        for (header, check) in &wanted {
            let found = message.headers.iter().any(|(name, value)| {
                let name = match name.as_str() {
                    "cc" | "delivered-to" => "to",
                    "sender" => "from",
                    other => other,
                };
                name == *header && value.contains(check.as_str())
            });
            if !found {
                return false;
            }
        }
        if let Some(ha) = q.ha
            && ha != message.has_attachments
        {
            return false;
        }
        if let Some(size) = q.size.filter(|s| *s != 0) {
            let limit = size.unsigned_abs();
            if size > 0 && message.size < limit || size < 0 && message.size > limit {
                return false;
            }
        }
        if let Some(text) = &q.text
            && !message
                .text
                .contains(&collapse_whitespace(&text.to_lowercase()))
        {
            return false;
        }
        true
    }
}

fn from_item(item: &Item) -> DomainResult<Filter> {
    item.body_as()
        .map_err(|e| DomainError::corrupt("filter", format!("{}/{}", item.pk, item.sk), e))
}

// ---------------------------------------------------------------------------------------------
// Input

/// A field that may be set, cleared (`""` or `null`) or left alone (absent).
pub type Change<T> = Option<Option<T>>;

/// The fields of a create or update, flat and nested forms merged.
#[derive(Debug, Default)]
pub struct FilterChanges {
    pub name: Option<String>,
    pub from: Change<String>,
    pub to: Change<String>,
    pub subject: Change<String>,
    pub list_id: Change<String>,
    /// Whitespace collapsed.
    pub text: Change<String>,
    pub ha: Change<bool>,
    /// 0 is no condition: `Some(None)`.
    pub size: Change<i64>,
    pub seen: Change<bool>,
    pub flag: Change<bool>,
    pub delete: Change<bool>,
    pub spam: Change<bool>,
    pub mailbox: Change<ObjectId>,
    /// The whole list (nested `action.targets`).
    pub targets: Change<Vec<Target>>,
    /// The spec's `action_forward`: replaces the address targets.
    pub forward: Change<Target>,
    /// The spec's `action_targetUrl`: replaces the URL targets.
    pub target_url: Change<Target>,
    pub disabled: Option<bool>,
    pub meta_data: Option<String>,
    pub session: Session,
}

impl FilterChanges {
    /// Applies the changes; returns whether anything changed.
    pub fn apply(self, filter: &mut Filter) -> bool {
        fn set<T: PartialEq>(slot: &mut Option<T>, change: Change<T>) -> bool {
            match change {
                Some(value) if *slot != value => {
                    *slot = value;
                    true
                }
                _ => false,
            }
        }
        let before = filter.clone();
        if let Some(name) = self.name {
            filter.name = name;
        }
        let q = &mut filter.query;
        set(&mut q.from, self.from);
        set(&mut q.to, self.to);
        set(&mut q.subject, self.subject);
        set(&mut q.list_id, self.list_id);
        set(&mut q.text, self.text);
        set(&mut q.ha, self.ha);
        set(&mut q.size, self.size);
        let a = &mut filter.action;
        set(&mut a.seen, self.seen);
        set(&mut a.flag, self.flag);
        set(&mut a.delete, self.delete);
        set(&mut a.spam, self.spam);
        set(&mut a.mailbox, self.mailbox);
        if let Some(targets) = self.targets {
            a.targets = targets.unwrap_or_default();
        }
        for (change, kind) in [
            (self.forward, TargetKind::Mail),
            (self.target_url, TargetKind::Http),
        ] {
            if let Some(target) = change {
                a.targets.retain(|t| t.kind != kind);
                a.targets.extend(target);
            }
        }
        if let Some(disabled) = self.disabled {
            filter.disabled = disabled;
        }
        if let Some(meta) = self.meta_data {
            filter.meta_data = Some(meta);
        }
        // Target ids are new on every parse: compare the values only.
        let values = |f: &Filter| -> Vec<String> {
            f.action.targets.iter().map(|t| t.value.clone()).collect()
        };
        let mut a = before.clone();
        a.action.targets.clear();
        let mut b = filter.clone();
        b.action.targets.clear();
        a != b || values(&before) != values(filter)
    }
}

/// The authlog writes for targets `after` has and `before` had not.
fn new_target_logs(
    state: &AppState,
    before: &[Target],
    after: &Filter,
    session: &Session,
) -> Vec<Write> {
    after
        .action
        .targets
        .iter()
        .filter(|t| before.iter().all(|b| b.value != t.value))
        .map(|t| {
            AuthlogEntry::new(
                "filter forward added",
                Some("success"),
                session,
                &state.config,
            )
            .with("target", t.value.clone())
            .with("filter", after.id.to_string())
            .with("protocol", "API")
            .write(&after.user)
        })
        .collect()
}

/// The filters a user may have.
pub fn allowed_filters(user: &users::StoredUser) -> i64 {
    let set = user.user.limits.filters;
    (if set > 0 { set } else { MAX_FILTERS }) as i64
}

// ---------------------------------------------------------------------------------------------
// Endpoints

/// `POST /users/{user}/filters` (spec "Create new filter", §2.38).
pub async fn create(
    state: &AppState,
    user: &ObjectId,
    changes: FilterChanges,
) -> DomainResult<ObjectId> {
    let owner = users::load(state, user).await?;
    let session = changes.session.clone();
    let mut filter = Filter {
        id: ObjectId::new(),
        user: *user,
        name: String::new(),
        query: FilterQuery::default(),
        action: FilterAction::default(),
        disabled: false,
        meta_data: None,
        created: Utc::now(),
    };
    changes.apply(&mut filter);
    if let Some(mailbox) = &filter.action.mailbox {
        mailboxes::load(state, user, mailbox).await?;
    }
    let allowed = allowed_filters(&owner);
    if owner.filters >= allowed {
        return Err(too_many(allowed));
    }
    let mut writes = vec![
        Write::put_new(filter.item(), FILTER_GONE),
        Write::Update {
            key: keys::user(user),
            update: Update::default().add(FILTER_COUNT, 1),
            guard: Some(
                Condition::CounterAtMost(FILTER_COUNT.into(), allowed - 1).labeled(FILTER_LIMIT),
            ),
        },
    ];
    if let Some(mailbox) = &filter.action.mailbox {
        writes.push(Write::check(
            keys::mailbox(user, mailbox),
            Condition::Exists,
            mailboxes::MAILBOX_GONE,
        ));
    }
    writes.push(
        AuthlogEntry::new("filter added", Some("success"), &session, &state.config)
            .with("filter", filter.id.to_string())
            .with("protocol", "API")
            .write(user),
    );
    writes.extend(new_target_logs(state, &[], &filter, &session));
    match state.table.transact(writes).await {
        Ok(()) => {
            let event = webhooks::Event::of("filter.created", user).with("filter", filter.id);
            webhooks::publish(state, event).await;
            Ok(filter.id)
        }
        Err(StoreError::ConditionFailed {
            label: FILTER_LIMIT,
        }) => {
            // The profile vanished, or concurrent creates reached the limit first.
            users::load(state, user).await?;
            Err(too_many(allowed))
        }
        Err(StoreError::ConditionFailed {
            label: mailboxes::MAILBOX_GONE,
        }) => Err(no_such_mailbox()),
        Err(e) => Err(e.into()),
    }
}

fn too_many(allowed: i64) -> DomainError {
    DomainError::TooMany {
        message: "Maximum filters limit reached",
        allowed: Some(allowed as u64),
    }
}

fn no_such_mailbox() -> DomainError {
    DomainError::MailboxNotFound("This mailbox does not exist")
}

/// Every filter of a user, in id (creation, application) order.
/// The writes of an account import: the filter as it was (its id kept) and the user's count.
pub(crate) fn import_writes(filter: &Filter) -> Vec<Write> {
    vec![
        Write::put_new(filter.item(), FILTER_GONE),
        Write::Update {
            key: keys::user(&filter.user),
            update: Update::default().add(FILTER_COUNT, 1),
            guard: Some(Condition::Exists.labeled(users::USER_GONE)),
        },
    ]
}

pub async fn load_all(state: &AppState, user: &ObjectId) -> DomainResult<Vec<Filter>> {
    let query = Query::table(keys::user_pk(user))
        .range(SortRange::BeginsWith(keys::FILTER_SK_PREFIX.into()))
        .limit(500);
    query_all(state.table.as_ref(), query)
        .await?
        .iter()
        .map(from_item)
        .collect()
}

/// The filters delivery applies: enabled ones, in order.
pub async fn active(state: &AppState, user: &ObjectId) -> DomainResult<Vec<Filter>> {
    let mut filters = load_all(state, user).await?;
    filters.retain(|f| !f.disabled);
    Ok(filters)
}

/// A user's filters, how many they may have, and the paths of the mailboxes the filters move
/// messages to.
pub struct FilterList {
    pub allowed: i64,
    pub filters: Vec<Filter>,
    pub paths: Vec<(ObjectId, String)>,
}

/// `GET /users/{user}/filters` (spec "List existing filters", §2.39).
pub async fn list(state: &AppState, user: &ObjectId) -> DomainResult<FilterList> {
    let owner = users::load(state, user).await?;
    let filters = load_all(state, user).await?;
    let paths: Vec<(ObjectId, String)> = if filters.iter().any(|f| f.action.mailbox.is_some()) {
        mailboxes::load_all(state, user)
            .await?
            .into_iter()
            .map(|m| (m.mailbox.id, m.mailbox.path))
            .collect()
    } else {
        Vec::new()
    };
    Ok(FilterList {
        allowed: allowed_filters(&owner),
        filters,
        paths,
    })
}

async fn load(
    state: &AppState,
    user: &ObjectId,
    id: &ObjectId,
    missing: &'static str,
) -> DomainResult<Filter> {
    let item = state.table.get(&keys::filter(user, id)).await?;
    from_item(&item.ok_or(DomainError::FilterNotFound(missing))?)
}

/// `GET /users/{user}/filters/{filter}` (spec "Get filter details", §2.40).
pub async fn get(state: &AppState, user: &ObjectId, id: &ObjectId) -> DomainResult<Filter> {
    load(state, user, id, "This filter does not exist").await
}

/// `PUT /users/{user}/filters/{filter}` (spec "Update filter details", §2.41): only the given
/// fields change; an empty value clears one. Unlike WildDuck, a missing filter is always 404.
pub async fn update(
    state: &AppState,
    user: &ObjectId,
    id: &ObjectId,
    changes: FilterChanges,
) -> DomainResult<()> {
    let session = changes.session.clone();
    let current = load(state, user, id, "Filter was not found").await?;
    let mut filter = current.clone();
    if !changes.apply(&mut filter) {
        return Ok(());
    }
    let mut writes = vec![Write::Update {
        key: filter.key(),
        update: Update {
            // A filter from before the listing across users joins it on its next change.
            gsi1: Some(Some(keys::filters_listing(&filter.id))),
            ..Update::body(serde_json::to_value(&filter).unwrap_or_default())
        },
        guard: Some(Condition::Exists.labeled(FILTER_GONE)),
    }];
    if let Some(mailbox) = &filter.action.mailbox
        && current.action.mailbox.as_ref() != Some(mailbox)
    {
        mailboxes::load(state, user, mailbox).await?;
        writes.push(Write::check(
            keys::mailbox(user, mailbox),
            Condition::Exists,
            mailboxes::MAILBOX_GONE,
        ));
    }
    writes.extend(new_target_logs(
        state,
        &current.action.targets,
        &filter,
        &session,
    ));
    match state.table.transact(writes).await {
        Ok(()) => Ok(()),
        Err(StoreError::ConditionFailed { label: FILTER_GONE }) => {
            Err(DomainError::FilterNotFound("Filter was not found"))
        }
        Err(StoreError::ConditionFailed { .. }) => Err(no_such_mailbox()),
        Err(e) => Err(e.into()),
    }
}

/// `DELETE /users/{user}/filters/{filter}` (spec "Delete a filter", §2.42).
pub async fn delete(state: &AppState, user: &ObjectId, id: &ObjectId) -> DomainResult<()> {
    let writes = vec![
        Write::delete(keys::filter(user, id)).when(Condition::Exists, FILTER_GONE),
        Write::Update {
            key: keys::user(user),
            update: Update::default().add(FILTER_COUNT, -1),
            guard: Some(Condition::Exists.labeled(users::USER_GONE)),
        },
    ];
    match state.table.transact(writes).await {
        Ok(()) => {
            let event = webhooks::Event::of("filter.deleted", user).with("filter", id);
            webhooks::publish(state, event).await;
            Ok(())
        }
        Err(StoreError::ConditionFailed { label: FILTER_GONE }) => {
            Err(DomainError::FilterNotFound("Filter was not found"))
        }
        Err(StoreError::ConditionFailed { .. }) => Err(DomainError::user_not_found()),
        Err(e) => Err(e.into()),
    }
}

/// A `GET /filters` request: `forward` a part of a target's value; `user` set for a user
/// token (its own filters only).
pub struct ListAllFilters {
    pub forward: Option<String>,
    pub user: Option<ObjectId>,
    pub page: crate::domain::paging::PageRequest,
}

/// `GET /filters` (WildDuck's): every user's filters in id order.
pub async fn list_all(
    state: &AppState,
    request: &ListAllFilters,
) -> DomainResult<crate::domain::paging::PageResult<Filter>> {
    let keep = |item: &Item| {
        from_item(item).is_ok_and(|f| {
            request.user.is_none_or(|u| f.user == u)
                && request
                    .forward
                    .as_deref()
                    .is_none_or(|needle| f.action.targets.iter().any(|t| t.value.contains(needle)))
        })
    };
    let page = crate::domain::paging::walk_buckets(
        state.table.as_ref(),
        crate::store::Index::Gsi1,
        &[keys::FILTERS_LISTING_PK.to_string()],
        &request.page,
        Some(&keep),
    )
    .await?;
    page.decode(from_item)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(query: FilterQuery) -> Filter {
        Filter {
            id: ObjectId::new(),
            user: ObjectId::new(),
            name: String::new(),
            query,
            action: FilterAction::default(),
            disabled: false,
            meta_data: None,
            created: Utc::now(),
        }
    }

    fn input(headers: &[(&str, &str)], text: &str, attachments: bool, size: u64) -> MatchInput {
        MatchInput {
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_lowercase(), v.to_lowercase()))
                .collect(),
            text: collapse_whitespace(&text.to_lowercase()),
            has_attachments: attachments,
            size,
        }
    }

    #[test]
    fn header_conditions_are_case_insensitive_substrings_with_wildducks_aliases() {
        let msg = input(
            &[
                ("From", "Big Boss <BOSS@Example.com>"),
                ("Cc", "team@example.org"),
                ("Delivered-To", "me+tag@example.com"),
                ("Subject", "Quarterly REPORT"),
                ("List-ID", "Dev list <dev.lists.example.com>"),
            ],
            "",
            false,
            100,
        );
        let q = |f: fn(&mut FilterQuery)| {
            let mut query = FilterQuery::default();
            f(&mut query);
            filter(query)
        };
        assert!(q(|q| q.from = Some("boss@".into())).matches(&msg));
        assert!(q(|q| q.to = Some("TEAM@".into())).matches(&msg));
        assert!(q(|q| q.to = Some("me+tag".into())).matches(&msg));
        assert!(q(|q| q.subject = Some("report".into())).matches(&msg));
        assert!(q(|q| q.list_id = Some("Anything <dev.lists".into())).matches(&msg));
        assert!(!q(|q| q.subject = Some("invoice".into())).matches(&msg));
        // All conditions must hold.
        assert!(
            !q(|q| {
                q.from = Some("boss".into());
                q.subject = Some("invoice".into());
            })
            .matches(&msg)
        );
        // An empty query matches everything.
        assert!(filter(FilterQuery::default()).matches(&msg));
    }

    #[test]
    fn size_text_and_attachments_follow_the_spec() {
        let msg = input(&[], "Hello   there,\nthe  Invoice is attached", true, 1000);
        let q = |f: fn(&mut FilterQuery)| {
            let mut query = FilterQuery::default();
            f(&mut query);
            filter(query)
        };
        assert!(q(|q| q.size = Some(1000)).matches(&msg));
        assert!(q(|q| q.size = Some(-1000)).matches(&msg));
        assert!(!q(|q| q.size = Some(1001)).matches(&msg));
        assert!(!q(|q| q.size = Some(-999)).matches(&msg));
        assert!(q(|q| q.text = Some("THE invoice".into())).matches(&msg));
        assert!(!q(|q| q.text = Some("receipt".into())).matches(&msg));
        assert!(q(|q| q.ha = Some(true)).matches(&msg));
        assert!(!q(|q| q.ha = Some(false)).matches(&msg));
    }

    #[test]
    fn targets_are_classified_and_bad_ones_refused() {
        assert_eq!(
            Target::parse("a@example.com").unwrap().kind,
            TargetKind::Mail
        );
        assert_eq!(
            Target::parse("smtp://mx.example.com:25").unwrap().kind,
            TargetKind::Relay
        );
        assert_eq!(
            Target::parse("https://hooks.example.com/x?k=1")
                .unwrap()
                .kind,
            TargetKind::Http
        );
        for bad in ["nonsense", "ftp://x.example.com", "http://", "a@"] {
            assert!(Target::parse(bad).is_none(), "{bad}");
        }
        let t = Target::parse("https://hooks.example.com/secret").unwrap();
        assert_eq!(t.description(), "hooks.example.com");
    }
}
