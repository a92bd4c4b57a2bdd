//! Users: accounts, their profile and limits, and the rules of creating, changing and deleting
//! them (WildDuck's `POST/GET/PUT/DELETE /users...`).
//!
//! Items: the profile (`USER#<id>` / `PROFILE`, listed through gsi1 by username bucket), a
//! username claim that makes usernames unique, and at creation the main address and the
//! default mailboxes, all written in one transaction. The profile's counters hold
//! `storageUsed` and `version` (optimistic concurrency for profile changes).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::addresses::{self, StoredAddress};
use super::authlog::AuthlogEntry;
use super::mailboxes::{CustomNames, default_mailboxes};
use super::names::{self, USERNAME_PATTERN, normalize_address, uview};
use super::pgp_key::{KeyInfo, parse_public_key};
use super::{journal, keys, password, stats};
use crate::config::Config;
use crate::error::{ApiError, ApiResult};
use crate::http::AppState;
use crate::http::paging::{PageRequest, bucket_names, count_buckets, walk_buckets};
use crate::http::validate::{MAX_DATA_BYTES, Session, Str, Validator};
use crate::id::ObjectId;
use crate::store::{Condition, Index, Item, Key, StoreError, Update, Write};

/// Most items in `tags`, `targets` and `fromWhitelist` (keeps a profile well inside one item,
/// and a create with its per-target log entries inside one transaction).
pub const MAX_LIST_ITEMS: usize = 50;

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
}

impl StoredUser {
    fn from_item(item: &Item) -> ApiResult<StoredUser> {
        let user: User = serde_json::from_value(item.body.clone())
            .map_err(|e| ApiError::internal(anyhow::anyhow!("corrupt user {}: {e}", item.pk)))?;
        Ok(StoredUser {
            user,
            storage_used: item.counter(STORAGE_USED),
            version: item.counter(VERSION),
            filters: item.counter(FILTER_COUNT).max(0),
        })
    }
}

/// Reads a user, or `UserNotFound`.
pub async fn load(state: &AppState, id: &ObjectId) -> ApiResult<StoredUser> {
    let item = state
        .table
        .get(&keys::user(id))
        .await?
        .ok_or_else(ApiError::user_not_found)?;
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
        condition: Some(Condition::CounterEquals(VERSION.into(), stored.version)),
    }
}

/// The write that marks a profile as changed without changing its body, if nobody changed it
/// since it was read. Address changes use it, so a user deletion that read the address list
/// can't miss an address added or renamed meanwhile.
pub fn profile_touch(stored: &StoredUser) -> Write {
    Write::Update {
        key: keys::user(&stored.user.id),
        update: Update::default().add(VERSION, 1),
        condition: Some(Condition::CounterEquals(VERSION.into(), stored.version)),
    }
}

// ---------------------------------------------------------------------------------------------
// Input shared by create and update

/// Tags: trimmed, de-duplicated case-insensitively (first spelling wins), sorted.
fn normalize_tags(tags: Vec<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out: Vec<String> = tags
        .into_iter()
        .filter(|t| seen.insert(t.to_lowercase()))
        .collect();
    out.sort_by_key(|t| t.to_lowercase());
    out
}

/// Forward targets: an address, an `smtp(s)://` relay or an `http(s)://` URL.
fn parse_targets(v: &mut Validator, field: &str) -> Option<Vec<String>> {
    let targets = v.bounded_list(field, 1024, MAX_LIST_ITEMS)?;
    let mut out = Vec::new();
    for target in targets {
        let lower = target.to_lowercase();
        if ["smtp://", "smtps://", "http://", "https://"]
            .iter()
            .any(|p| lower.starts_with(p))
        {
            out.push(target);
        } else if let Ok(address) = normalize_address(&target, false) {
            out.push(address.address);
        } else {
            v.error(field, format!("Unknown target type \"{target}\""));
            return None;
        }
    }
    Some(out)
}

fn parse_scopes(v: &mut Validator) -> Option<Vec<String>> {
    let scopes = v.string_list("disabledScopes", 16)?;
    let mut out = BTreeSet::new();
    for (i, scope) in scopes.into_iter().enumerate() {
        let scope = scope.to_lowercase();
        if !["imap", "pop3", "smtp"].contains(&scope.as_str()) {
            v.error(
                &format!("disabledScopes,{i}"),
                format!("\"disabledScopes[{i}]\" must be one of [imap, pop3, smtp]"),
            );
            return None;
        }
        out.insert(scope);
    }
    Some(out.into_iter().collect())
}

fn parse_pub_key(v: &mut Validator) -> Option<Option<(String, KeyInfo)>> {
    let key = v.string("pubKey", Str::max(65536).trim().allow_empty())?;
    if key.is_empty() {
        return Some(None);
    }
    if !key.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----") {
        v.error(
            "pubKey",
            "\"pubKey\" must be an ASCII-armored PGP public key",
        );
        return None;
    }
    match parse_public_key(&key) {
        Ok(info) => Some(Some((key, info))),
        Err(reason) => {
            v.error("pubKey", format!("PGP key validation failed. {reason}"));
            None
        }
    }
}

fn parse_feature_flags(v: &mut Validator) -> Option<Map<String, Value>> {
    let flags = v.raw("featureFlags")?;
    let Value::Object(flags) = flags else {
        v.error("featureFlags", "\"featureFlags\" must be of type object");
        return None;
    };
    let mut out = Map::new();
    for (key, value) in flags {
        if key != "indexing" {
            v.error(
                &format!("featureFlags.{key}"),
                format!("\"featureFlags.{key}\" is not allowed"),
            );
            continue;
        }
        match crate::http::validate::parse_bool(&value) {
            Some(b) => {
                out.insert(key, json!(b));
            }
            None => v.error(
                "featureFlags.indexing",
                "\"featureFlags.indexing\" must be a boolean",
            ),
        }
    }
    Some(out)
}

/// The new value of `password`: `Some(None)` removes the password (`false` or `""`).
fn parse_password(v: &mut Validator, field: &str) -> Option<Option<String>> {
    match v.raw(field)? {
        Value::Bool(false) => Some(None),
        Value::String(s) if s.is_empty() => Some(None),
        Value::String(_) => v.string(field, Str::max(256).allow_empty()).map(Some),
        _ => {
            v.error(field, format!("\"{field}\" must be a string"));
            None
        }
    }
}

fn parse_limits(v: &mut Validator, limits: &mut Limits) -> bool {
    let mut changed = false;
    let mut set = |v: &mut Validator, field: &str, slot: &mut u64| {
        if let Some(n) = v.count(field) {
            *slot = n;
            changed = true;
        }
    };
    set(v, "quota", &mut limits.quota);
    set(v, "recipients", &mut limits.recipients);
    set(v, "forwards", &mut limits.forwards);
    set(v, "filters", &mut limits.filters);
    set(v, "imapMaxUpload", &mut limits.imap_max_upload);
    set(v, "imapMaxDownload", &mut limits.imap_max_download);
    set(v, "pop3MaxDownload", &mut limits.pop3_max_download);
    set(v, "pop3MaxMessages", &mut limits.pop3_max_messages);
    set(v, "imapMaxConnections", &mut limits.imap_max_connections);
    set(v, "receivedMax", &mut limits.received_max);
    changed
}

fn parse_whitelist(v: &mut Validator) -> Option<Vec<String>> {
    let list = v.bounded_list("fromWhitelist", 128, MAX_LIST_ITEMS)?;
    let mut seen = BTreeSet::new();
    Some(
        list.into_iter()
            .map(|a| a.to_lowercase())
            .filter(|a| seen.insert(a.clone()))
            .collect(),
    )
}

/// Fields POST and PUT share, applied onto `user`; returns whether anything was given.
fn apply_common(v: &mut Validator, user: &mut User) -> bool {
    let mut changed = false;
    if let Some(language) = v.string("language", Str::max(20).trim().allow_empty()) {
        user.language = Some(language).filter(|l| !l.is_empty());
        changed = true;
    }
    if let Some(retention) = v.count("retention") {
        user.retention = retention;
        changed = true;
    }
    if let Some(targets) = parse_targets(v, "targets") {
        user.targets = targets;
        changed = true;
    }
    if let Some(level) = v.integer("spamLevel", 0, 100) {
        user.spam_level = level as u8;
        changed = true;
    }
    changed |= parse_limits(v, &mut user.limits);
    if let Some(list) = parse_whitelist(v) {
        user.from_whitelist = list;
        changed = true;
    }
    if let Some(tags) = v.bounded_list("tags", 128, MAX_LIST_ITEMS) {
        user.tags = normalize_tags(tags);
        changed = true;
    }
    if let Some(b) = v.boolean("uploadSentMessages") {
        user.upload_sent_messages = b;
        changed = true;
    }
    if let Some(scopes) = parse_scopes(v) {
        user.disabled_scopes = scopes;
        changed = true;
    }
    if let Some(meta) = v.json_object("metaData", MAX_DATA_BYTES) {
        user.meta_data = Some(meta);
        changed = true;
    }
    if let Some(internal) = v.json_object("internalData", MAX_DATA_BYTES) {
        user.internal_data = Some(internal);
        changed = true;
    }
    if let Some(key) = parse_pub_key(v) {
        user.key_info = key.as_ref().map(|(_, info)| info.clone());
        user.pub_key = key.map(|(text, _)| text);
        changed = true;
    }
    if let Some(b) = v.boolean("encryptMessages") {
        user.encrypt_messages = b;
        changed = true;
    }
    if let Some(b) = v.boolean("encryptForwarded") {
        user.encrypt_forwarded = b;
        changed = true;
    }
    if let Some(flags) = parse_feature_flags(v) {
        user.feature_flags = flags;
        changed = true;
    }
    changed
}

/// A password as it will be stored: hashed here, or given pre-hashed.
async fn stored_password(value: Option<String>, pre_hashed: bool) -> ApiResult<Option<String>> {
    match value {
        None => Ok(None),
        Some(hash) if pre_hashed => {
            if password::is_supported_hash(&hash) {
                Ok(Some(hash))
            } else {
                Err(ApiError::bad_request(
                    "HashError",
                    "Invalid algo: only argon2id PHC hashes are accepted",
                ))
            }
        }
        Some(plain) => Ok(Some(password::hash(plain).await?)),
    }
}

// ---------------------------------------------------------------------------------------------
// Create

/// A validated `POST /users` request.
pub struct NewUser {
    user: User,
    password: Option<String>,
    hashed_password: bool,
    require_password_change: bool,
    address: Option<String>,
    empty_address: bool,
    add_tags_to_address: bool,
    mailboxes: CustomNames,
    session: Session,
}

fn parse_mailbox_names(v: &mut Validator) -> CustomNames {
    let Some(value) = v.raw("mailboxes") else {
        return CustomNames::default();
    };
    let Value::Object(fields) = value else {
        v.error("mailboxes", "\"mailboxes\" must be of type object");
        return CustomNames::default();
    };
    let mut names = CustomNames::default();
    for (key, value) in fields {
        let slot = match key.as_str() {
            "sent" => &mut names.sent,
            "trash" => &mut names.trash,
            "drafts" => &mut names.drafts,
            "junk" => &mut names.junk,
            _ => {
                v.error(
                    &format!("mailboxes.{key}"),
                    format!("\"mailboxes.{key}\" is not allowed"),
                );
                continue;
            }
        };
        let field = format!("mailboxes.{key}");
        match value.as_str().map(str::trim) {
            Some("") | None if value.is_null() => {}
            Some(name) if !name.is_empty() && name.len() <= 512 => {
                if name.contains("//") || name.ends_with('/') || name.starts_with('/') {
                    v.error(
                        &field,
                        format!("\"{field}\" with value {name:?} is not a valid path"),
                    );
                } else {
                    *slot = Some(name.to_string());
                }
            }
            _ => v.error(&field, format!("\"{field}\" must be a non-empty string")),
        }
    }
    names
}

impl NewUser {
    /// Validates a `POST /users` request (strict: unknown fields are refused).
    pub fn parse(params: Map<String, Value>) -> ApiResult<NewUser> {
        let mut v = Validator::new(params);
        let username = v.required_string(
            "username",
            Str::max(128)
                .min(1)
                .trim()
                .lowercase()
                .pattern(&USERNAME_PATTERN, "username"),
        );
        let password = if v.has("password") {
            parse_password(&mut v, "password")
        } else {
            v.error("password", "\"password\" is required");
            None
        };
        let hashed_password = v.boolean("hashedPassword").unwrap_or(false);
        v.boolean("allowUnsafe");
        let address = v.string("address", Str::max(255).trim());
        if address.as_deref().is_some_and(|a| a.contains('*')) {
            v.error("address", "Invalid character in email address: *");
        } else if let Some(a) = &address
            && normalize_address(a, true).is_err()
        {
            v.error("address", "\"address\" must be a valid email");
        }
        let empty_address = v.boolean("emptyAddress").unwrap_or(false);
        let name = v.string("name", Str::max(256).trim());
        let require_password_change = v.boolean("requirePasswordChange").unwrap_or(false);
        let add_tags_to_address = v.boolean("addTagsToAddress").unwrap_or(false);
        let mailboxes = parse_mailbox_names(&mut v);
        let session = v.session();
        let username = username.unwrap_or_default();
        let mut user = User {
            id: ObjectId::new(),
            unameview: uview(&username),
            username,
            name,
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
        };
        apply_common(&mut v, &mut user);
        v.deny_unknown();
        v.finish()?;
        Ok(NewUser {
            user,
            password: password.flatten(),
            hashed_password,
            require_password_change,
            address,
            empty_address,
            add_tags_to_address,
            mailboxes,
            session,
        })
    }
}

/// The main address of a new user: the given one (its `+label` removed), else the username
/// when it is an address, else `<username>@<EIDER_DOMAIN>`.
fn main_address(input: &NewUser, config: &Config) -> ApiResult<Option<names::Address>> {
    if input.empty_address {
        return Ok(None);
    }
    let candidate = match &input.address {
        Some(a) => a.clone(),
        None if names::is_address(&input.user.username) => input.user.username.clone(),
        None => {
            let local = input.user.username.split('@').next().unwrap_or_default();
            format!("{local}@{}", config.domain)
        }
    };
    normalize_address(&candidate, true)
        .map(Some)
        .map_err(|e| ApiError::invalid_field("address", e.message("address")))
}

/// Creates a user with its main address and default mailboxes in one transaction.
pub async fn create(state: &AppState, mut input: NewUser) -> ApiResult<ObjectId> {
    let address = main_address(&input, &state.config)?;
    let boxes = default_mailboxes(
        &input.user.id,
        input.user.language.as_deref(),
        &input.mailboxes,
        input.user.retention,
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
            return Err(ApiError::invalid_field(
                "mailboxes",
                format!("Duplicate mailbox name: {}", mailbox.path),
            ));
        }
    }

    let hash = stored_password(input.password.take(), input.hashed_password).await?;
    let user = &mut input.user;
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

    let mut writes = vec![Write::put_new(Item::new(
        keys::username_claim(&user.unameview),
        json!({ "user": user.id }),
    ))];
    if let Some(address) = &address {
        let tags = if input.add_tags_to_address {
            user.tags.clone()
        } else {
            Vec::new()
        };
        let stored = StoredAddress::new(user.id, address, None, tags);
        writes.extend(stored.create_writes());
    }
    writes.push(Write::put_new(
        profile_item(user, 0, 0).with_counter(MAILBOX_COUNT, boxes.len() as i64),
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
            Ok(user.id)
        }
        Err(StoreError::ConditionFailed { index: 0 }) => Err(ApiError::conflict(
            "UserExistsError",
            "This username already exists",
        )
        .with_extra("username", user.username.clone())),
        Err(StoreError::ConditionFailed { index: 1 }) if address.is_some() => Err(
            ApiError::conflict("AddressExistsError", "This address already exists")
                .with_extra("username", user.username.clone()),
        ),
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------------------------
// Read

fn parsed_object(text: &Option<String>) -> Value {
    text.as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_else(|| Value::Object(Map::new()))
}

/// WildDuck's defaults for limits a user has not set.
const MAX_IMAP_TRANSFER: u64 = 10 * 1024 * 1024 * 1024;
const MAX_POP3_MESSAGES: u64 = 250;
const MAX_IMAP_CONNECTIONS: u64 = 15;
const MAX_RECEIVED_PER_MINUTE: u64 = 60;
pub const MAX_FILTERS: u64 = 400;

fn or_default(value: u64, default: u64) -> u64 {
    if value > 0 { value } else { default }
}

fn quota_json(stored: &StoredUser, config: &Config) -> Value {
    json!({
        "allowed": or_default(stored.user.limits.quota, config.max_storage),
        "used": stored.storage_used.max(0),
    })
}

fn enabled2fa(user: &User) -> Vec<String> {
    user.enabled2fa
        .iter()
        .filter(|m| m.as_str() != "u2f")
        .cloned()
        .collect()
}

/// `GET /users/{user}`: the documented shape.
pub fn user_json(stored: &StoredUser, config: &Config) -> Value {
    let user = &stored.user;
    let limits = &user.limits;
    let counter = |allowed: u64| json!({ "allowed": allowed, "used": 0, "ttl": false });
    json!({
        "success": true,
        "id": user.id,
        "username": user.username,
        "name": user.name,
        "address": user.address,
        "language": user.language,
        "retention": if user.retention > 0 { json!(user.retention) } else { json!(false) },
        "enabled2fa": enabled2fa(user),
        "autoreply": user.autoreply,
        "encryptMessages": user.encrypt_messages,
        "encryptForwarded": user.encrypt_forwarded,
        "pubKey": user.pub_key.clone().unwrap_or_default(),
        "spamLevel": user.spam_level,
        "keyInfo": user.key_info.as_ref().map(|k| json!(k)).unwrap_or(json!(false)),
        "metaData": parsed_object(&user.meta_data),
        "internalData": parsed_object(&user.internal_data),
        "targets": user.targets,
        "limits": {
            "quota": quota_json(stored, config),
            "recipients": counter(or_default(limits.recipients, config.max_recipients)),
            "forwards": counter(or_default(limits.forwards, config.max_forwards)),
            "received": counter(or_default(limits.received_max, MAX_RECEIVED_PER_MINUTE)),
            "filters": { "allowed": or_default(limits.filters, MAX_FILTERS), "used": stored.filters },
            "imapUpload": counter(or_default(limits.imap_max_upload, MAX_IMAP_TRANSFER)),
            "imapDownload": counter(or_default(limits.imap_max_download, MAX_IMAP_TRANSFER)),
            "pop3Download": counter(or_default(limits.pop3_max_download, MAX_IMAP_TRANSFER)),
            "pop3MaxMessages": { "allowed": or_default(limits.pop3_max_messages, MAX_POP3_MESSAGES) },
            "imapMaxConnections": {
                "allowed": or_default(limits.imap_max_connections, MAX_IMAP_CONNECTIONS),
                "used": 0,
            },
        },
        "tags": user.tags,
        "fromWhitelist": user.from_whitelist,
        "featureFlags": user.feature_flags,
        "disabledScopes": user.disabled_scopes,
        "hasPasswordSet": user.password.is_some() || user.temp_password.is_some(),
        "activated": user.activated,
        "disabled": user.disabled,
        "suspended": user.suspended,
    })
}

/// One entry of `GET /users`.
fn list_entry_json(stored: &StoredUser, config: &Config, meta: bool, internal: bool) -> Value {
    let user = &stored.user;
    let mut entry = json!({
        "id": user.id,
        "username": user.username,
        "name": user.name,
        "address": user.address,
        "tags": user.tags,
        "targets": user.targets,
        "enabled2fa": enabled2fa(user),
        "autoreply": user.autoreply,
        "encryptMessages": user.encrypt_messages,
        "encryptForwarded": user.encrypt_forwarded,
        "quota": quota_json(stored, config),
        "hasPasswordSet": user.password.is_some() || user.temp_password.is_some(),
        "activated": user.activated,
        "disabled": user.disabled,
        "suspended": user.suspended,
    });
    if meta {
        entry["metaData"] = parsed_object(&user.meta_data);
    }
    if internal {
        entry["internalData"] = parsed_object(&user.internal_data);
    }
    entry
}

/// A validated `GET /users` request.
pub struct ListUsers {
    query: Option<String>,
    tags: Vec<String>,
    required_tags: Vec<String>,
    meta_data: bool,
    internal_data: bool,
    page: PageRequest,
}

fn lower_tags(v: &mut Validator, field: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    v.string_list(field, 1024)
        .unwrap_or_default()
        .into_iter()
        .map(|t| t.to_lowercase())
        .filter(|t| seen.insert(t.clone()))
        .collect()
}

impl ListUsers {
    /// Validates `GET /users` (unknown parameters are allowed, as in WildDuck).
    pub fn parse(params: Map<String, Value>) -> ApiResult<ListUsers> {
        let mut v = Validator::new(params);
        let query = v.string("query", Str::max(255).trim().lowercase());
        let required_tags = lower_tags(&mut v, "requiredTags");
        let tags = lower_tags(&mut v, "tags")
            .into_iter()
            .filter(|t| !required_tags.contains(t))
            .collect();
        let meta_data = v.boolean("metaData").unwrap_or(false);
        let internal_data = v.boolean("internalData").unwrap_or(false);
        v.session();
        let page = PageRequest::from_params(&mut v);
        v.finish()?;
        Ok(ListUsers {
            query,
            tags,
            required_tags,
            meta_data,
            internal_data,
            page,
        })
    }

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

/// `GET /users`: users in username order, one bucketed index walk per page.
pub async fn list(state: &AppState, request: ListUsers) -> ApiResult<Value> {
    let buckets = bucket_names(keys::USERS_BUCKET_PREFIX);
    let keep = |item: &Item| {
        serde_json::from_value::<User>(item.body.clone()).is_ok_and(|u| request.matches(&u))
    };
    let page = walk_buckets(
        state.table.as_ref(),
        Index::Gsi1,
        &buckets,
        &request.page,
        &keep,
    )
    .await?
    .ok_or_else(|| request.page.invalid_cursor())?;
    let total = if request.is_filtered() {
        count_buckets(state.table.as_ref(), Index::Gsi1, &buckets, &keep).await?
    } else {
        stats::total(state.table.as_ref(), stats::USERS).await?
    };
    let mut results = Vec::with_capacity(page.items.len());
    for item in &page.items {
        let stored = StoredUser::from_item(item)?;
        results.push(list_entry_json(
            &stored,
            &state.config,
            request.meta_data,
            request.internal_data,
        ));
    }
    let mut body = json!({ "success": true });
    if let Some(q) = &request.query {
        body["query"] = json!(q);
    }
    body["total"] = json!(total);
    if let (Value::Object(out), Value::Object(paging)) =
        (&mut body, page.paging_json(&request.page))
    {
        out.extend(paging);
    }
    body["results"] = Value::Array(results);
    Ok(body)
}

// ---------------------------------------------------------------------------------------------
// Update

/// A validated `PUT /users/{user}` request.
pub struct UserChanges {
    params: Map<String, Value>,
    password: Option<Option<String>>,
    hashed_password: bool,
    existing_password: Option<String>,
    session: Session,
}

impl UserChanges {
    /// Validates `PUT /users/{user}` (strict). The changes themselves are applied onto the
    /// current profile inside [`update`], re-read on every optimistic retry.
    pub fn parse(params: Map<String, Value>) -> ApiResult<UserChanges> {
        let mut v = Validator::new(params.clone());
        let password = if v.has("password") {
            parse_password(&mut v, "password")
        } else {
            None
        };
        let hashed_password = v.boolean("hashedPassword").unwrap_or(false);
        v.boolean("allowUnsafe");
        let existing_password = v.string("existingPassword", Str::max(256).min(1));
        let session = v.session();
        // Dry run of the remaining fields, for validation only.
        let mut scratch = dummy_user();
        apply_changes(&mut v, &mut scratch);
        v.deny_unknown();
        v.finish()?;
        Ok(UserChanges {
            params,
            password,
            hashed_password,
            existing_password,
            session,
        })
    }
}

fn dummy_user() -> User {
    User {
        id: ObjectId::new(),
        username: String::new(),
        unameview: String::new(),
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

/// The PUT-only fields plus the common ones; returns whether anything was given.
fn apply_changes(v: &mut Validator, user: &mut User) -> bool {
    let mut changed = apply_common(v, user);
    if let Some(name) = v.string("name", Str::max(256).trim().allow_empty()) {
        user.name = Some(name).filter(|n| !n.is_empty());
        changed = true;
    }
    if v.boolean("disable2fa") == Some(true) {
        user.enabled2fa.clear();
        user.totp = Default::default();
        changed = true;
    }
    if let Some(disabled) = v.boolean("disabled") {
        user.disabled = disabled;
        changed = true;
    }
    if let Some(suspended) = v.boolean("suspended") {
        if suspended && !user.suspended {
            user.auth_version += 1;
        }
        user.suspended = suspended;
        changed = true;
    }
    changed
}

const OPTIMISTIC_RETRIES: usize = 8;

/// Applies `PUT /users/{user}`: only the given fields change; a password change is verified
/// against `existingPassword` when given, logged, and ends the user's sessions.
pub async fn update(state: &AppState, id: &ObjectId, changes: UserChanges) -> ApiResult<()> {
    let current = load(state, id).await?;
    if let (Some(existing), Some(stored)) = (&changes.existing_password, &current.user.password)
        && !password::verify(existing.clone(), stored.clone()).await
    {
        let entry = AuthlogEntry::new(
            "password change",
            Some("fail"),
            &changes.session,
            &state.config,
        );
        state.table.transact(vec![entry.write(id)]).await?;
        return Err(ApiError::forbidden(
            "AuthFail",
            "Password verification failed",
        ));
    }
    let new_password = match changes.password.clone() {
        Some(value) => Some(stored_password(value, changes.hashed_password).await?),
        None => None,
    };

    let mut current = current;
    for _ in 0..OPTIMISTIC_RETRIES {
        let mut user = current.user.clone();
        let mut v = Validator::new(changes.params.clone());
        let mut changed = apply_changes(&mut v, &mut user);
        let mut writes = Vec::new();
        if let Some(hash) = &new_password {
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
                .write(id),
            );
        }
        if !changed {
            return Err(ApiError::bad_request("NoUpdates", "Nothing was updated"));
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
            Ok(()) => {
                let ended_sessions = user.auth_version > current.user.auth_version;
                if ended_sessions {
                    let event = json!({"command": "LOGOUT", "reason": "Authentication required"});
                    journal::append(state.table.as_ref(), &state.config, id, event).await?;
                }
                return Ok(());
            }
            Err(StoreError::ConditionFailed { index: 0 }) => {
                current = load(state, id).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::conflict(
        "LockFail",
        "The user was changed concurrently, try again",
    ))
}

// ---------------------------------------------------------------------------------------------
// Delete and logout

/// What `DELETE /users/{user}` did.
pub struct Deleted {
    pub addresses: usize,
    pub purge_after: DateTime<Utc>,
    pub task: ObjectId,
}

/// A validated `DELETE /users/{user}` request.
pub struct DeleteUser {
    delete_after: Option<DateTime<Utc>>,
    session: Session,
}

impl DeleteUser {
    pub fn parse(params: Map<String, Value>) -> ApiResult<DeleteUser> {
        let mut v = Validator::new(params);
        let delete_after = match v.raw("deleteAfter") {
            None | Some(Value::Bool(false)) => None,
            Some(Value::String(s)) if s.is_empty() || s == "false" => None,
            Some(Value::String(s)) => match DateTime::parse_from_rfc3339(&s) {
                Ok(d) => Some(d.with_timezone(&Utc)),
                Err(_) => {
                    v.error("deleteAfter", "\"deleteAfter\" must be a valid date");
                    None
                }
            },
            Some(_) => {
                v.error("deleteAfter", "\"deleteAfter\" must be a valid date");
                None
            }
        };
        let session = v.session();
        v.deny_unknown();
        v.finish()?;
        Ok(DeleteUser {
            delete_after,
            session,
        })
    }
}

/// Deletes a user at once: profile, username and every address are gone in the first
/// transaction (addresses beyond what fits follow in further ones); the mailboxes and messages
/// stay until the purge task (the janitor) runs after the configured delay.
pub async fn delete(state: &AppState, id: &ObjectId, request: DeleteUser) -> ApiResult<Deleted> {
    let retention = chrono::Duration::from_std(state.config.deleted_user_retention)
        .unwrap_or(chrono::Duration::days(2));
    let purge_after = request.delete_after.unwrap_or_else(Utc::now) + retention;
    let task = ObjectId::new();
    for _ in 0..OPTIMISTIC_RETRIES {
        // The address list is read under the profile version: address changes bump it, so a
        // concurrent one makes this attempt fail and the list is read again.
        let current = load(state, id).await?;
        let addresses = addresses::list_stored(state, id).await?;
        let tombstone = Item::new(
            keys::deleted_user(id),
            json!({
                "task": task,
                "user": id,
                "username": current.user.username,
                "address": current.user.address,
                "deletedAt": Utc::now(),
                "purgeAfter": purge_after,
            }),
        )
        .with_gsi1(keys::purge_task(purge_after.timestamp(), id));
        let mut first = vec![
            Write::Delete {
                key: keys::user(id),
                condition: Some(Condition::CounterEquals(VERSION.into(), current.version)),
            },
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
            Err(StoreError::ConditionFailed { index: 0 }) => continue,
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
        let event = json!({"command": "LOGOUT", "reason": "Account was deleted"});
        journal::append(state.table.as_ref(), &state.config, id, event).await?;
        tracing::info!(user = %id, addresses = addresses.len(), "user deleted");
        return Ok(Deleted {
            addresses: addresses.len(),
            purge_after,
            task,
        });
    }
    Err(ApiError::conflict(
        "LockFail",
        "The user was changed concurrently, try again",
    ))
}

/// `PUT /users/{user}/logout`: records a LOGOUT event for the updates stream.
pub async fn logout(state: &AppState, id: &ObjectId, params: Map<String, Value>) -> ApiResult<()> {
    let mut v = Validator::new(params);
    let reason = v.string("reason", Str::max(128).allow_empty());
    v.session();
    v.deny_unknown();
    v.finish()?;
    load(state, id).await?;
    let reason = reason
        .filter(|r| !r.is_empty())
        .unwrap_or("Logout requested from API".into());
    let event = json!({ "command": "LOGOUT", "reason": reason });
    journal::append(state.table.as_ref(), &state.config, id, event).await?;
    Ok(())
}

/// Reads the user id a username claim points to (for login by username).
pub async fn id_by_username(state: &AppState, username: &str) -> ApiResult<Option<ObjectId>> {
    let claim = state
        .table
        .get(&keys::username_claim(&uview(username)))
        .await?;
    Ok(claim.and_then(|c| serde_json::from_value(c.body["user"].clone()).ok()))
}

/// The key of a user's profile (for other aggregates that check existence in a transaction).
pub fn profile_key(id: &ObjectId) -> Key {
    keys::user(id)
}
