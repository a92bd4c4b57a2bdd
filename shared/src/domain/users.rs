//! Users: accounts, their profile and limits, and the rules of creating, changing and deleting
//! them (WildDuck's `POST/GET/PUT/DELETE /users...`).
//!
//! Items: the profile (`USER#<id>` / `PROFILE`, listed through gsi1 by username bucket), a
//! username claim that makes usernames unique, and at creation the main address and the
//! default mailboxes, all written in one transaction. The profile's counters hold
//! `storageUsed` and `version` (optimistic concurrency for profile changes).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::addresses::{self, StoredAddress};
use super::authlog::{AuthlogEntry, Session};
use super::mailboxes::{CustomNames, default_mailboxes};
use super::names::{self, normalize_address, uview};
use super::paging::{PageRequest, PageResult, bucket_names, bucketed_page};
use super::retry::{Attempt, USER_CONTENDED, retry_on_conflict};
use super::tokens::{self, Grant};
use super::webhooks;
use super::{AppState, DomainError, DomainResult, journal, keys, password, stats};
use crate::config::Config;
use crate::id::ObjectId;
use crate::mail::KeyInfo;
use crate::store::{Condition, Index, Item, Key, StoreError, Update, Write};

/// Most items in `tags`, `targets` and `fromWhitelist` (keeps a profile well inside one item,
/// and a create with its per-target log entries inside one transaction).
pub const MAX_LIST_ITEMS: usize = 50;

/// Labels of the conditions on a user's items (see [`crate::store::Guard`]).
/// The username claim is taken.
pub const USERNAME_TAKEN: &str = "username taken";
/// The profile is gone, or changed since it was read (its `version` moved on).
pub const PROFILE_CHANGED: &str = "profile changed";
/// The profile is gone (a counter change on a deleted user).
pub const USER_GONE: &str = "user gone";

/// Counter names on the profile item.
pub const STORAGE_USED: &str = "storageUsed";
pub const VERSION: &str = "version";
/// How many mailboxes the user has (the mailbox limit is checked against it).
pub const MAILBOX_COUNT: &str = "mailboxes";
/// How many messages the user has in the archive.
pub const ARCHIVED_COUNT: &str = "archived";
/// How many filters the user has (`limits.filters` is checked against it).
pub const FILTER_COUNT: &str = "filters";

/// Per-user limits; 0 means "use the global default".
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Limits {
    pub quota: u64,
    pub recipients: u64,
    pub forwards: u64,
    pub filters: u64,
    pub imap_max_upload: u64,
    pub imap_max_download: u64,
    pub pop3_max_download: u64,
    pub pop3_max_messages: u64,
    pub imap_max_connections: u64,
    pub received_max: u64,
}

/// A temporary password (reset, or `requirePasswordChange` at creation).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TempPassword {
    pub password: String,
    pub valid_after: DateTime<Utc>,
    pub created: DateTime<Utc>,
}

/// The stored profile of a user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: ObjectId,
    pub username: String,
    pub unameview: String,
    #[serde(default)]
    pub name: Option<String>,
    /// The main address, if the user has one.
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub language: Option<String>,
    /// Default retention of new mailboxes, milliseconds (0: none).
    #[serde(default)]
    pub retention: u64,
    /// argon2id PHC string of the master password.
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub temp_password: Option<TempPassword>,
    #[serde(default)]
    pub password_changed: Option<DateTime<Utc>>,
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default = "default_spam_level")]
    pub spam_level: u8,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub from_whitelist: Vec<String>,
    #[serde(default)]
    pub disabled_scopes: Vec<String>,
    /// JSON text of an object.
    #[serde(default)]
    pub meta_data: Option<String>,
    #[serde(default)]
    pub internal_data: Option<String>,
    #[serde(default)]
    pub pub_key: Option<String>,
    #[serde(default)]
    pub key_info: Option<KeyInfo>,
    #[serde(default)]
    pub encrypt_messages: bool,
    #[serde(default)]
    pub encrypt_forwarded: bool,
    #[serde(default)]
    pub feature_flags: Map<String, Value>,
    #[serde(default)]
    pub upload_sent_messages: bool,
    #[serde(default)]
    pub enabled2fa: Vec<String>,
    /// TOTP seeds (`domain::totp`), sealed at rest when `EIDER_SECRET_KEY` is set.
    #[serde(default, skip_serializing_if = "super::totp::TotpSeeds::is_empty")]
    pub totp: super::totp::TotpSeeds,
    #[serde(default)]
    pub autoreply: bool,
    pub activated: bool,
    pub disabled: bool,
    #[serde(default)]
    pub suspended: bool,
    /// Bumped by password changes and suspension, so old sessions can be told apart.
    #[serde(default)]
    pub auth_version: u64,
    pub created: DateTime<Utc>,
}

fn default_spam_level() -> u8 {
    50
}

/// A profile as read, with its counters.
#[derive(Debug, Clone)]
pub struct StoredUser {
    pub user: User,
    pub storage_used: i64,
    pub version: i64,
    /// The user's number of filters.
    pub filters: i64,
    /// How many of the user's messages are in the archive.
    pub archived: i64,
}

impl StoredUser {
    pub fn from_item(item: &Item) -> DomainResult<StoredUser> {
        let user: User = item
            .body_as()
            .map_err(|e| DomainError::corrupt("user", &item.pk, e))?;
        Ok(StoredUser {
            user,
            storage_used: item.counter(STORAGE_USED),
            version: item.counter(VERSION),
            filters: item.counter(FILTER_COUNT).max(0),
            archived: item.counter(ARCHIVED_COUNT).max(0),
        })
    }
}

/// Reads a user, or `UserNotFound`.
pub async fn load(state: &AppState, id: &ObjectId) -> DomainResult<StoredUser> {
    let item = state
        .table
        .get(&keys::user(id))
        .await?
        .ok_or_else(DomainError::user_not_found)?;
    StoredUser::from_item(&item)
}

/// The profile item of a user as it should be stored.
fn profile_item(user: &User, storage_used: i64, version: i64) -> Item {
    Item::new(
        keys::user(&user.id),
        serde_json::to_value(user).unwrap_or(Value::Null),
    )
    .with_counter(STORAGE_USED, storage_used)
    .with_counter(VERSION, version)
    .with_gsi1(keys::users_listing(&user.unameview))
}

/// The writes of an account import: the profile as it was (its id kept, nothing stored yet),
/// its username claim, and the user in the global count. Mailboxes, addresses and the rest
/// follow as their own records.
pub(crate) fn import_writes(user: &User) -> Vec<Write> {
    vec![
        Write::put_new(
            Item::new(
                keys::username_claim(&user.unameview),
                json!({ "user": user.id }),
            ),
            USERNAME_TAKEN,
        ),
        Write::put_new(profile_item(user, 0, 0), PROFILE_CHANGED),
        stats::change(&[(stats::USERS, 1)]),
    ]
}

/// The write that replaces a profile's body if nobody changed it since it was read.
pub fn profile_update(stored: &StoredUser, user: &User) -> Write {
    Write::Update {
        key: keys::user(&user.id),
        update: Update {
            body: Some(serde_json::to_value(user).unwrap_or(Value::Null)),
            gsi1: Some(Some(keys::users_listing(&user.unameview))),
            ..Default::default()
        }
        .add(VERSION, 1),
        guard: Some(
            Condition::CounterEquals(VERSION.into(), stored.version).labeled(PROFILE_CHANGED),
        ),
    }
}

/// The write that marks a profile as changed without changing its body, if nobody changed it
/// since it was read. Address changes use it, so a user deletion that read the address list
/// can't miss an address added or renamed meanwhile.
pub fn profile_touch(stored: &StoredUser) -> Write {
    Write::Update {
        key: keys::user(&stored.user.id),
        update: Update::default().add(VERSION, 1),
        guard: Some(
            Condition::CounterEquals(VERSION.into(), stored.version).labeled(PROFILE_CHANGED),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Profile changes shared by create and update

/// The profile fields a request sets (`POST /users` and `PUT /users/{user}`); `None` leaves a
/// field as it is. Validated at the edge: values here are final.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProfileChanges {
    /// `Some(None)` clears the name.
    pub name: Option<Option<String>>,
    /// `Some(None)` clears the language.
    pub language: Option<Option<String>>,
    pub retention: Option<u64>,
    pub targets: Option<Vec<String>>,
    pub spam_level: Option<u8>,
    pub limits: LimitChanges,
    pub from_whitelist: Option<Vec<String>>,
    /// Normalized with [`normalize_tags`].
    pub tags: Option<Vec<String>>,
    pub upload_sent_messages: Option<bool>,
    pub disabled_scopes: Option<Vec<String>>,
    /// JSON text of an object.
    pub meta_data: Option<String>,
    pub internal_data: Option<String>,
    /// `Some(None)` removes the key; `Some(Some((armored, info)))` sets it.
    pub pub_key: Option<Option<(String, KeyInfo)>>,
    pub encrypt_messages: Option<bool>,
    pub encrypt_forwarded: Option<bool>,
    pub feature_flags: Option<BTreeMap<String, bool>>,
    /// `PUT` only: turn every second factor off.
    pub disable_2fa: bool,
    pub disabled: Option<bool>,
    pub suspended: Option<bool>,
}

/// New values of per-user limits; `None` keeps the current one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimitChanges {
    pub quota: Option<u64>,
    pub recipients: Option<u64>,
    pub forwards: Option<u64>,
    pub filters: Option<u64>,
    pub imap_max_upload: Option<u64>,
    pub imap_max_download: Option<u64>,
    pub pop3_max_download: Option<u64>,
    pub pop3_max_messages: Option<u64>,
    pub imap_max_connections: Option<u64>,
    pub received_max: Option<u64>,
}

impl LimitChanges {
    /// Applies the given limits; returns whether any was given.
    fn apply(&self, limits: &mut Limits) -> bool {
        let mut changed = false;
        for (new, slot) in [
            (self.quota, &mut limits.quota),
            (self.recipients, &mut limits.recipients),
            (self.forwards, &mut limits.forwards),
            (self.filters, &mut limits.filters),
            (self.imap_max_upload, &mut limits.imap_max_upload),
            (self.imap_max_download, &mut limits.imap_max_download),
            (self.pop3_max_download, &mut limits.pop3_max_download),
            (self.pop3_max_messages, &mut limits.pop3_max_messages),
            (self.imap_max_connections, &mut limits.imap_max_connections),
            (self.received_max, &mut limits.received_max),
        ] {
            if let Some(n) = new {
                *slot = n;
                changed = true;
            }
        }
        changed
    }
}

fn set<T: Clone>(slot: &mut T, value: &Option<T>) -> bool {
    match value {
        Some(v) => {
            *slot = v.clone();
            true
        }
        None => false,
    }
}

impl ProfileChanges {
    /// Applies the changes onto `user`; returns whether the request gave any field at all
    /// (WildDuck answers `NoUpdates` otherwise, even when the values are the current ones).
    pub fn apply(&self, user: &mut User) -> bool {
        let mut changed = false;
        changed |= set(&mut user.name, &self.name);
        changed |= set(&mut user.language, &self.language);
        changed |= set(&mut user.retention, &self.retention);
        changed |= set(&mut user.targets, &self.targets);
        changed |= set(&mut user.spam_level, &self.spam_level);
        changed |= self.limits.apply(&mut user.limits);
        changed |= set(&mut user.from_whitelist, &self.from_whitelist);
        changed |= set(&mut user.tags, &self.tags);
        changed |= set(&mut user.upload_sent_messages, &self.upload_sent_messages);
        changed |= set(&mut user.disabled_scopes, &self.disabled_scopes);
        if let Some(meta) = &self.meta_data {
            user.meta_data = Some(meta.clone());
            changed = true;
        }
        if let Some(internal) = &self.internal_data {
            user.internal_data = Some(internal.clone());
            changed = true;
        }
        if let Some(key) = &self.pub_key {
            user.key_info = key.as_ref().map(|(_, info)| info.clone());
            user.pub_key = key.as_ref().map(|(text, _)| text.clone());
            changed = true;
        }
        changed |= set(&mut user.encrypt_messages, &self.encrypt_messages);
        changed |= set(&mut user.encrypt_forwarded, &self.encrypt_forwarded);
        if let Some(flags) = &self.feature_flags {
            user.feature_flags = flags.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
            changed = true;
        }
        if self.disable_2fa {
            user.enabled2fa.clear();
            user.totp = Default::default();
            changed = true;
        }
        changed |= set(&mut user.disabled, &self.disabled);
        if let Some(suspended) = self.suspended {
            if suspended && !user.suspended {
                user.auth_version += 1;
            }
            user.suspended = suspended;
            changed = true;
        }
        changed
    }
}

/// Tags: trimmed, de-duplicated case-insensitively (first spelling wins), sorted.
pub fn normalize_tags(tags: Vec<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out: Vec<String> = tags
        .into_iter()
        .filter(|t| seen.insert(t.to_lowercase()))
        .collect();
    out.sort_by_key(|t| t.to_lowercase());
    out
}

/// A password as it will be stored: hashed here, or given pre-hashed.
async fn stored_password(value: Option<String>, pre_hashed: bool) -> DomainResult<Option<String>> {
    match value {
        None => Ok(None),
        Some(hash) if pre_hashed => match password::check_import(&hash) {
            Ok(_) => Ok(Some(hash)),
            Err(reason) => Err(DomainError::UnsupportedHash(reason)),
        },
        Some(plain) => Ok(Some(password::hash(plain).await?)),
    }
}

// ---------------------------------------------------------------------------------------------
// Create

/// A `POST /users` request.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Trimmed, lowercase, valid.
    pub username: String,
    pub password: Option<String>,
    pub hashed_password: bool,
    pub require_password_change: bool,
    /// Valid (`*` refused); its `+label` is removed here.
    pub address: Option<String>,
    pub empty_address: bool,
    pub add_tags_to_address: bool,
    pub mailboxes: CustomNames,
    pub profile: ProfileChanges,
    pub session: Session,
}

impl User {
    /// A new account with WildDuck's defaults.
    fn new(username: String) -> User {
        User {
            id: ObjectId::new(),
            unameview: uview(&username),
            username,
            name: None,
            address: None,
            language: None,
            retention: 0,
            password: None,
            temp_password: None,
            password_changed: None,
            targets: Vec::new(),
            spam_level: default_spam_level(),
            limits: Limits::default(),
            tags: Vec::new(),
            from_whitelist: Vec::new(),
            disabled_scopes: Vec::new(),
            meta_data: None,
            internal_data: None,
            pub_key: None,
            key_info: None,
            encrypt_messages: false,
            encrypt_forwarded: false,
            feature_flags: Map::new(),
            upload_sent_messages: false,
            enabled2fa: Vec::new(),
            totp: Default::default(),
            autoreply: false,
            activated: true,
            disabled: false,
            suspended: false,
            auth_version: 1,
            created: Utc::now(),
        }
    }
}

/// The main address of a new user: the given one (its `+label` removed), else the username
/// when it is an address, else `<username>@<EIDER_DOMAIN>`.
fn main_address(input: &NewUser, config: &Config) -> DomainResult<Option<names::Address>> {
    if input.empty_address {
        return Ok(None);
    }
    let candidate = match &input.address {
        Some(a) => a.clone(),
        None if names::is_address(&input.username) => input.username.clone(),
        None => {
            let local = input.username.split('@').next().unwrap_or_default();
            format!("{local}@{}", config.domain)
        }
    };
    normalize_address(&candidate, true)
        .map(Some)
        .map_err(|e| DomainError::invalid("address", e.message("address")))
}

/// Creates a user with its main address and default mailboxes in one transaction.
pub async fn create(state: &AppState, mut input: NewUser) -> DomainResult<ObjectId> {
    let mut user = User::new(input.username.clone());
    input.profile.apply(&mut user);
    let address = main_address(&input, &state.config)?;
    let boxes = default_mailboxes(
        &user.id,
        user.language.as_deref(),
        &input.mailboxes,
        user.retention,
    );
    // Paths are case-sensitive (IMAP), except INBOX.
    let mut paths = BTreeSet::new();
    for mailbox in &boxes {
        let path = if mailbox.path.eq_ignore_ascii_case("INBOX") {
            "INBOX".to_string()
        } else {
            mailbox.path.clone()
        };
        if !paths.insert(path) {
            return Err(DomainError::invalid(
                "mailboxes",
                format!("Duplicate mailbox name: {}", mailbox.path),
            ));
        }
    }

    let hash = stored_password(input.password.take(), input.hashed_password).await?;
    if input.require_password_change && hash.is_some() {
        let now = Utc::now();
        user.temp_password = Some(TempPassword {
            password: hash.unwrap_or_default(),
            valid_after: now,
            created: now,
        });
    } else {
        user.password = hash;
    }
    user.address = address.as_ref().map(|a| a.address.clone());

    let mut writes = vec![Write::put_new(
        Item::new(
            keys::username_claim(&user.unameview),
            json!({ "user": user.id }),
        ),
        USERNAME_TAKEN,
    )];
    if let Some(address) = &address {
        let tags = if input.add_tags_to_address {
            user.tags.clone()
        } else {
            Vec::new()
        };
        let stored = StoredAddress::new(user.id, address, None, tags);
        writes.extend(stored.create_writes());
    }
    // A new id: never taken, unless the id generator repeats itself.
    writes.push(Write::put_new(
        profile_item(&user, 0, 0).with_counter(MAILBOX_COUNT, boxes.len() as i64),
        PROFILE_CHANGED,
    ));
    for mailbox in &boxes {
        writes.extend(mailbox.create_writes());
    }
    writes.push(
        AuthlogEntry::new(
            "account created",
            Some("success"),
            &input.session,
            &state.config,
        )
        .write(&user.id),
    );
    for target in &user.targets {
        writes.push(
            AuthlogEntry::new("user forward added", None, &input.session, &state.config)
                .with("target", target.clone())
                .with("protocol", "API")
                .write(&user.id),
        );
    }
    writes.push(stats::change(&[
        (stats::USERS, 1),
        (stats::ADDRESSES, i64::from(address.is_some())),
    ]));

    match state.table.transact(writes).await {
        Ok(()) => {
            tracing::info!(user = %user.id, "user created");
            let event = webhooks::Event::of("user.created", &user.id)
                .with("username", &user.username)
                .with("name", &user.name)
                .with("address", address.as_ref().map(|a| a.address.clone()));
            webhooks::publish(state, event).await;
            Ok(user.id)
        }
        Err(StoreError::ConditionFailed {
            label: USERNAME_TAKEN,
        }) => Err(DomainError::UserExists {
            username: user.username.clone(),
        }),
        Err(StoreError::ConditionFailed {
            label: addresses::ADDRESS_TAKEN,
        }) => Err(DomainError::AddressExists {
            message: "This address already exists",
            username: Some(user.username.clone()),
        }),
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------------------------
// Read

/// WildDuck's defaults for limits a user has not set.
pub const MAX_IMAP_TRANSFER: u64 = 10 * 1024 * 1024 * 1024;
pub const MAX_POP3_MESSAGES: u64 = 250;
pub const MAX_IMAP_CONNECTIONS: u64 = 15;
pub const MAX_RECEIVED_PER_MINUTE: u64 = 60;
pub const MAX_FILTERS: u64 = 400;

/// `value`, or `default` when the user has not set it (0).
pub fn or_default(value: u64, default: u64) -> u64 {
    if value > 0 { value } else { default }
}

impl StoredUser {
    /// The user's quota in bytes: their own, or the configured default.
    pub fn quota(&self, config: &Config) -> u64 {
        or_default(self.user.limits.quota, config.max_storage())
    }
}

impl User {
    /// The second factors that are enabled (WildDuck no longer has U2F).
    pub fn enabled_2fa(&self) -> Vec<String> {
        self.enabled2fa
            .iter()
            .filter(|m| m.as_str() != "u2f")
            .cloned()
            .collect()
    }

    /// Whether a password (master or temporary) is set.
    pub fn has_password(&self) -> bool {
        self.password.is_some() || self.temp_password.is_some()
    }
}

/// A `GET /users` request.
#[derive(Debug, Clone)]
pub struct ListUsers {
    /// Lowercase.
    pub query: Option<String>,
    /// Lowercase, none of `required_tags`.
    pub tags: Vec<String>,
    /// Lowercase.
    pub required_tags: Vec<String>,
    pub page: PageRequest,
}

impl ListUsers {
    fn is_filtered(&self) -> bool {
        self.query.is_some() || !self.tags.is_empty() || !self.required_tags.is_empty()
    }

    /// Whether a user matches: `query` anywhere in the username (dots ignored, as in
    /// `unameview`) or in the main address; any of `tags`; all of `requiredTags`.
    fn matches(&self, user: &User) -> bool {
        if let Some(q) = &self.query {
            let in_name = user.unameview.contains(&uview(q));
            let in_address = user
                .address
                .as_deref()
                .is_some_and(|a| a.contains(q.as_str()));
            if !in_name && !in_address {
                return false;
            }
        }
        let user_tags: BTreeSet<String> = user.tags.iter().map(|t| t.to_lowercase()).collect();
        (self.tags.is_empty() || self.tags.iter().any(|t| user_tags.contains(t)))
            && self.required_tags.iter().all(|t| user_tags.contains(t))
    }
}

/// A page of users, and how many match in all.
pub struct UserListing {
    pub total: u64,
    pub page: PageResult<StoredUser>,
}

/// Every user's id, in username order: one index query per bucket and 1,000 users (for
/// whole-store maintenance such as reconciling the search index).
pub async fn all_ids(state: &AppState) -> DomainResult<Vec<ObjectId>> {
    let mut ids = Vec::new();
    for bucket in bucket_names(keys::USERS_BUCKET_PREFIX) {
        let mut after = None;
        loop {
            let query = crate::store::Query::index(Index::Gsi1, bucket.clone())
                .limit(1000)
                .start_after(after.take());
            let page = state.table.query(&query).await?;
            ids.extend(
                page.items
                    .iter()
                    .filter_map(|item| item.pk.strip_prefix("USER#")?.parse::<ObjectId>().ok()),
            );
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    Ok(ids)
}

/// `GET /users`: users in username order, one bucketed index walk per page.
pub async fn list(state: &AppState, request: &ListUsers) -> DomainResult<UserListing> {
    let buckets = bucket_names(keys::USERS_BUCKET_PREFIX);
    let keep = |item: &Item| item.body_as::<User>().is_ok_and(|u| request.matches(&u));
    let population = stats::total(state.table.as_ref(), stats::USERS).await?;
    let (total, page) = bucketed_page(
        state.table.as_ref(),
        &buckets,
        &request.page,
        request.is_filtered().then_some(&keep),
        population,
    )
    .await?;
    Ok(UserListing {
        total,
        page: page.decode(StoredUser::from_item)?,
    })
}

/// `GET /users` for a user token: the listing holds at most its own user (WildDuck's
/// `userlisting` read-own), when it matches the filters.
pub async fn list_own(
    state: &AppState,
    request: &ListUsers,
    id: &ObjectId,
) -> DomainResult<UserListing> {
    let items: Vec<StoredUser> = match load(state, id).await {
        Ok(stored) if request.matches(&stored.user) => vec![stored],
        Ok(_) | Err(DomainError::UserNotFound(_)) => Vec::new(),
        Err(e) => return Err(e),
    };
    Ok(UserListing {
        total: items.len() as u64,
        page: PageResult {
            items,
            next: None,
            previous: None,
        },
    })
}

// ---------------------------------------------------------------------------------------------
// Update

/// A `PUT /users/{user}` request.
#[derive(Debug, Clone)]
pub struct UserChanges {
    pub profile: ProfileChanges,
    /// `Some(None)` removes the password (`false` or `""`).
    pub password: Option<Option<String>>,
    pub hashed_password: bool,
    pub existing_password: Option<String>,
    /// Logged with a password change (`API` unless the caller says).
    pub protocol: String,
    pub session: Session,
}

/// Applies `PUT /users/{user}`: only the given fields change; a password change is verified
/// against `existingPassword` when given, logged, and ends the user's sessions and tokens,
/// except `keep` (the token the change was made with, which WildDuck re-signs).
pub async fn update(
    state: &AppState,
    id: &ObjectId,
    changes: UserChanges,
    keep: Option<&Grant>,
) -> DomainResult<()> {
    let current = load(state, id).await?;
    if let (Some(existing), Some(stored)) = (&changes.existing_password, &current.user.password)
        && !password::verify(existing.clone(), stored.clone()).await
    {
        let entry = AuthlogEntry::new(
            "password change",
            Some("fail"),
            &changes.session,
            &state.config,
        )
        .with("protocol", changes.protocol.clone());
        state.table.transact(vec![entry.write(id)]).await?;
        return Err(DomainError::WrongExistingPassword);
    }
    let new_password = match changes.password.clone() {
        Some(value) => Some(stored_password(value, changes.hashed_password).await?),
        None => None,
    };

    let mut read_before = Some(current);
    retry_on_conflict(USER_CONTENDED, || {
        let read_before = read_before.take();
        let (changes, new_password) = (&changes, &new_password);
        async move {
            let current = match read_before {
                Some(current) => current,
                None => load(state, id).await?,
            };
            let mut user = current.user.clone();
            let mut changed = changes.profile.apply(&mut user);
            let mut writes = Vec::new();
            if let Some(hash) = new_password {
                user.password = hash.clone();
                user.temp_password = None;
                user.password_changed = Some(Utc::now());
                user.auth_version += 1;
                changed = true;
                writes.push(
                    AuthlogEntry::new(
                        "password change",
                        Some("success"),
                        &changes.session,
                        &state.config,
                    )
                    .with("protocol", changes.protocol.clone())
                    .write(id),
                );
            }
            if !changed {
                return Err(DomainError::NoUpdates("Nothing was updated"));
            }
            for target in user
                .targets
                .iter()
                .filter(|t| !current.user.targets.contains(t))
            {
                writes.push(
                    AuthlogEntry::new("user forward added", None, &changes.session, &state.config)
                        .with("target", target.clone())
                        .with("protocol", "API")
                        .write(id),
                );
            }
            writes.insert(0, profile_update(&current, &user));
            match state.table.transact(writes).await {
                Ok(()) => {}
                Err(StoreError::ConditionFailed {
                    label: PROFILE_CHANGED,
                }) => return Ok(Attempt::Retry),
                Err(e) => return Err(e.into()),
            }
            if user.auth_version > current.user.auth_version {
                if let Some(grant) = keep.filter(|g| g.user == *id && !user.suspended)
                    && new_password.is_some()
                {
                    tokens::resign(state, grant, user.auth_version).await?;
                }
                let event = json!({"command": "LOGOUT", "reason": "Authentication required"});
                journal::append(state.table.as_ref(), &state.config, id, event).await?;
            }
            Ok(Attempt::Done(()))
        }
    })
    .await?;
    if new_password.is_some() {
        webhooks::publish(state, webhooks::Event::of("user.password.changed", id)).await;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Delete and logout

/// What `DELETE /users/{user}` did.
pub struct Deleted {
    pub addresses: usize,
    pub purge_after: DateTime<Utc>,
    pub task: ObjectId,
}

/// A `DELETE /users/{user}` request.
#[derive(Debug, Clone)]
pub struct DeleteUser {
    pub delete_after: Option<DateTime<Utc>>,
    pub session: Session,
}

/// Deletes a user at once: profile, username and every address are gone in the first
/// transaction (addresses beyond what fits follow in further ones); the mailboxes and messages
/// stay until the purge task (the janitor) runs after the configured delay.
pub async fn delete(state: &AppState, id: &ObjectId, request: DeleteUser) -> DomainResult<Deleted> {
    let retention = chrono::Duration::from_std(state.config.deleted_user_retention)
        .unwrap_or(chrono::Duration::days(2));
    let purge_after = request.delete_after.unwrap_or_else(Utc::now) + retention;
    let task = ObjectId::new();
    let request = &request;
    let addresses = retry_on_conflict(USER_CONTENDED, || async move {
        // The address list is read under the profile version: address changes bump it, so a
        // concurrent one makes this attempt fail and the list is read again.
        let current = load(state, id).await?;
        let addresses = addresses::list_stored(state, id).await?;
        // What a restore puts back (addresses beyond what an item holds are not kept).
        let kept: Vec<&StoredAddress> = addresses.iter().take(RESTORABLE_ADDRESSES).collect();
        let tombstone = Item::new(
            keys::deleted_user(id),
            json!({
                "task": task,
                "user": id,
                "username": current.user.username,
                "address": current.user.address,
                "deletedAt": Utc::now(),
                "purgeAfter": purge_after,
                "profile": current.user,
                "storageUsed": current.storage_used,
                "version": current.version,
                "filters": current.filters,
                "archived": current.archived,
                "addresses": kept,
            }),
        )
        .with_gsi1(keys::purge_task(purge_after.timestamp(), id));
        let mut first = vec![
            Write::delete(keys::user(id)).when(
                Condition::CounterEquals(VERSION.into(), current.version),
                PROFILE_CHANGED,
            ),
            Write::delete(keys::username_claim(&current.user.unameview)),
            Write::put(tombstone),
            AuthlogEntry::new(
                "delete user",
                Some("success"),
                &request.session,
                &state.config,
            )
            .write(id),
        ];
        // Room for the counters write; two writes per address. Addresses beyond what fits
        // follow in further transactions (their owner is gone already; the janitor removes
        // any that a failure leaves behind).
        let room = (crate::store::MAX_TRANSACTION_WRITES - first.len() - 1) / 2;
        let mut chunks = addresses.chunks(room.max(1));
        let first_chunk = chunks.next().unwrap_or_default();
        for address in first_chunk {
            first.extend(address.delete_writes());
        }
        first.push(stats::change(&[
            (stats::USERS, -1),
            (stats::ADDRESSES, -(first_chunk.len() as i64)),
        ]));
        match state.table.transact(first).await {
            Ok(()) => {}
            Err(StoreError::ConditionFailed {
                label: PROFILE_CHANGED,
            }) => return Ok(Attempt::Retry),
            Err(e) => return Err(e.into()),
        }
        for chunk in chunks {
            let mut writes: Vec<Write> = chunk
                .iter()
                .flat_map(StoredAddress::delete_writes)
                .collect();
            writes.push(stats::change(&[(stats::ADDRESSES, -(chunk.len() as i64))]));
            state.table.transact(writes).await?;
        }
        Ok(Attempt::Done(addresses.len()))
    })
    .await?;
    let event = json!({"command": "LOGOUT", "reason": "Account was deleted"});
    journal::append(state.table.as_ref(), &state.config, id, event).await?;
    tracing::info!(user = %id, addresses, "user deleted");
    let result = json!({
        "user": id,
        "addresses": { "deleted": addresses },
        "deleteAfter": crate::time::iso(&purge_after),
        "task": task,
    });
    let event = webhooks::Event::of("user.delete.started", id).with("result", result);
    webhooks::publish(state, event).await;
    Ok(Deleted {
        addresses,
        purge_after,
        task,
    })
}

/// Addresses a deleted user's tombstone keeps for a restore (an item holds 400 KB).
const RESTORABLE_ADDRESSES: usize = 500;
/// The tombstone's counter the janitor sets when it starts a purge: a restore then fails.
pub const PURGING: &str = "purging";
/// Labels of the restore's conditions.
const PURGE_STARTED: &str = "purge started";
const USERNAME_TAKEN_AGAIN: &str = "username taken";

/// A deleted user as a restore would bring it back.
pub struct DeletedUser {
    pub user: User,
    pub storage_used: i64,
    pub deleted_at: DateTime<Utc>,
    pub purge_after: DateTime<Utc>,
    pub task: ObjectId,
    /// The addresses it had, and whether each is still free (or its own).
    pub addresses: Vec<(StoredAddress, bool)>,
    version: i64,
    filters: i64,
    archived: i64,
    purging: bool,
}

fn account_not_found() -> DomainError {
    DomainError::AccountNotFound("Deleted account was not found")
}

/// Reads a deleted user's tombstone and checks which of its addresses are free.
async fn load_deleted(state: &AppState, id: &ObjectId) -> DomainResult<DeletedUser> {
    let item = state
        .table
        .get(&keys::deleted_user(id))
        .await?
        .ok_or_else(account_not_found)?;
    let body = &item.body;
    // Deleted before restores were possible: nothing to bring back.
    let Some(profile) = body.get("profile") else {
        return Err(account_not_found());
    };
    let corrupt = |e| DomainError::corrupt("deleted user", &item.pk, e);
    let user: User = serde_json::from_value(profile.clone()).map_err(corrupt)?;
    let stored: Vec<StoredAddress> =
        serde_json::from_value(body["addresses"].clone()).map_err(corrupt)?;
    let claims = state
        .table
        .get_many(
            &stored
                .iter()
                .map(|a| keys::address_claim(&a.addrview))
                .collect::<Vec<_>>(),
        )
        .await?;
    let addresses = stored
        .into_iter()
        .map(|a| {
            let taken = claims
                .iter()
                .find(|c| c.pk == keys::address_claim(&a.addrview).pk);
            let free = taken.is_none_or(|c| c.body["user"] == json!(id));
            (a, free)
        })
        .collect();
    let date = |field: &str| {
        serde_json::from_value::<DateTime<Utc>>(body[field].clone()).unwrap_or_else(|_| Utc::now())
    };
    Ok(DeletedUser {
        user,
        storage_used: body["storageUsed"].as_i64().unwrap_or(0),
        deleted_at: date("deletedAt"),
        purge_after: date("purgeAfter"),
        task: serde_json::from_value(body["task"].clone()).map_err(corrupt)?,
        addresses,
        version: body["version"].as_i64().unwrap_or(0),
        filters: body["filters"].as_i64().unwrap_or(0),
        archived: body["archived"].as_i64().unwrap_or(0),
        purging: item.counter(PURGING) > 0,
    })
}

/// `GET /users/{user}/restore` (WildDuck's): what a restore would bring back, until the
/// purge starts.
pub async fn restorable(state: &AppState, id: &ObjectId) -> DomainResult<DeletedUser> {
    let deleted = load_deleted(state, id).await?;
    if deleted.purging {
        return Err(account_not_found());
    }
    Ok(deleted)
}

/// What a restore brought back.
pub struct Restored {
    pub task: ObjectId,
    pub recovered: usize,
    pub main: Option<String>,
}

/// `POST /users/{user}/restore` (WildDuck's): cancels the purge and puts the profile, the
/// username and every address still free back; mailboxes and messages were never removed.
/// The first transaction (tombstone gone only while no purge started, profile, username,
/// the first addresses) makes the user whole; further addresses follow one by one, skipping
/// any taken meanwhile.
pub async fn restore(state: &AppState, id: &ObjectId, session: &Session) -> DomainResult<Restored> {
    let deleted = load_deleted(state, id).await?;
    if deleted.purging {
        return Err(DomainError::DeleteInProgress);
    }
    let free: Vec<&StoredAddress> = deleted
        .addresses
        .iter()
        .filter(|(_, free)| *free)
        .map(|(a, _)| a)
        .collect();
    let mut user = deleted.user.clone();
    let main = user
        .address
        .as_deref()
        .filter(|m| free.iter().any(|a| a.address == *m))
        .map(str::to_string)
        .or_else(|| free.first().map(|a| a.address.clone()));
    user.address = main.clone();
    let profile = profile_item(&user, deleted.storage_used, deleted.version + 1)
        .with_counter(FILTER_COUNT, deleted.filters)
        .with_counter(ARCHIVED_COUNT, deleted.archived);
    let (first, rest) = free.split_at(free.len().min(40));
    let mut writes = vec![
        Write::delete(keys::deleted_user(id))
            .when(Condition::CounterEquals(PURGING.into(), 0), PURGE_STARTED),
        Write::put_new(profile, PROFILE_CHANGED),
        Write::put_new(
            Item::new(keys::username_claim(&user.unameview), json!({ "user": id })),
            USERNAME_TAKEN_AGAIN,
        ),
        AuthlogEntry::new("restore user", Some("success"), session, &state.config).write(id),
        stats::change(&[(stats::USERS, 1), (stats::ADDRESSES, first.len() as i64)]),
    ];
    for address in first {
        writes.extend(address.create_writes());
    }
    match state.table.transact(writes).await {
        Ok(()) => {}
        Err(StoreError::ConditionFailed {
            label: PURGE_STARTED,
        }) => {
            return Err(DomainError::DeleteInProgress);
        }
        Err(StoreError::ConditionFailed {
            label: PROFILE_CHANGED,
        }) => {
            return Err(DomainError::AccountFound);
        }
        Err(StoreError::ConditionFailed {
            label: USERNAME_TAKEN_AGAIN,
        }) => {
            return Err(DomainError::UserExists {
                username: user.username.clone(),
            });
        }
        // An address taken since it was read: read again and try once more.
        Err(StoreError::ConditionFailed { .. }) => {
            return Err(DomainError::Contended(
                "An address was taken meanwhile, try again",
            ));
        }
        Err(e) => return Err(e.into()),
    }
    let mut recovered = first.len();
    for address in rest {
        let mut writes = address.create_writes();
        writes.push(stats::change(&[(stats::ADDRESSES, 1)]));
        match state.table.transact(writes).await {
            Ok(()) => recovered += 1,
            Err(StoreError::ConditionFailed { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    tracing::info!(user = %id, recovered, "user restored");
    let result = json!({
        "user": id,
        "task": deleted.task,
        "addresses": { "recovered": recovered, "main": &main },
    });
    let event = webhooks::Event::of("user.delete.cancelled", id).with("result", result);
    webhooks::publish(state, event).await;
    Ok(Restored {
        task: deleted.task,
        recovered,
        main,
    })
}

/// `PUT /users/{user}/logout`: records a LOGOUT event for the updates stream.
pub async fn logout(state: &AppState, id: &ObjectId, reason: Option<String>) -> DomainResult<()> {
    load(state, id).await?;
    let reason = reason
        .filter(|r| !r.is_empty())
        .unwrap_or("Logout requested from API".into());
    let event = json!({ "command": "LOGOUT", "reason": reason });
    journal::append(state.table.as_ref(), &state.config, id, event).await?;
    Ok(())
}

/// Reads the user id a username claim points to (for login by username).
pub async fn id_by_username(state: &AppState, username: &str) -> DomainResult<Option<ObjectId>> {
    let claim = state
        .table
        .get(&keys::username_claim(&uview(username)))
        .await?;
    Ok(claim.and_then(|c| serde_json::from_value(c.body["user"].clone()).ok()))
}

/// `GET /users/resolve/{username}`: the id of a user by username only (addresses are never
/// consulted).
pub async fn resolve_username(state: &AppState, username: &str) -> DomainResult<ObjectId> {
    id_by_username(state, username)
        .await?
        .ok_or_else(DomainError::user_not_found)
}

/// The key of a user's profile (for other aggregates that check existence in a transaction).
pub fn profile_key(id: &ObjectId) -> Key {
    keys::user(id)
}
