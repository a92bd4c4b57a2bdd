//! Users on the wire: `POST/GET/PUT/DELETE /users...` requests validated into the domain's
//! commands (WildDuck's Joi messages), and users answered in WildDuck's shape.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::config::Config;
use crate::domain::mailboxes::CustomNames;
use crate::domain::names::{USERNAME_PATTERN, normalize_address};
use crate::domain::users::{
    self, DeleteUser, Deleted, DeletedUser, LimitChanges, ListUsers, MAX_FILTERS,
    MAX_IMAP_CONNECTIONS, MAX_IMAP_TRANSFER, MAX_LIST_ITEMS, MAX_POP3_MESSAGES,
    MAX_RECEIVED_PER_MINUTE, NewUser, ProfileChanges, Restored, StoredUser, User, UserChanges,
    UserListing, or_default,
};
use crate::http::error::ApiResult;
use crate::http::paging::{add_paging, page_request};
use crate::http::validate::{MAX_DATA_BYTES, Str, Validator, parse_bool};
use crate::id::ObjectId;
use crate::mail::KeyInfo;
use crate::time::iso;

// ---------------------------------------------------------------------------------------------
// Requests

/// Forward targets: an address, an `smtp(s)://` relay or an `http(s)://` URL.
pub fn targets(v: &mut Validator, field: &str) -> Option<Vec<String>> {
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

fn disabled_scopes(v: &mut Validator) -> Option<Vec<String>> {
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

fn pub_key(v: &mut Validator) -> Option<Option<(String, KeyInfo)>> {
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
    #[cfg(feature = "pgp")]
    let checked = crate::mail::pgp_key::parse_public_key(&key);
    #[cfg(not(feature = "pgp"))]
    let checked: Result<KeyInfo, String> = Err("this function can't read PGP keys".into());
    match checked {
        Ok(info) => Some(Some((key, info))),
        Err(reason) => {
            v.error("pubKey", format!("PGP key validation failed. {reason}"));
            None
        }
    }
}

fn feature_flags(v: &mut Validator) -> Option<BTreeMap<String, bool>> {
    let flags = v.raw("featureFlags")?;
    let Value::Object(flags) = flags else {
        v.error("featureFlags", "\"featureFlags\" must be of type object");
        return None;
    };
    let mut out = BTreeMap::new();
    for (key, value) in flags {
        if key != "indexing" {
            v.error(
                &format!("featureFlags.{key}"),
                format!("\"featureFlags.{key}\" is not allowed"),
            );
            continue;
        }
        match parse_bool(&value) {
            Some(b) => {
                out.insert(key, b);
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
fn password(v: &mut Validator, field: &str) -> Option<Option<String>> {
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

fn limits(v: &mut Validator) -> LimitChanges {
    LimitChanges {
        quota: v.count("quota"),
        recipients: v.count("recipients"),
        forwards: v.count("forwards"),
        filters: v.count("filters"),
        imap_max_upload: v.count("imapMaxUpload"),
        imap_max_download: v.count("imapMaxDownload"),
        pop3_max_download: v.count("pop3MaxDownload"),
        pop3_max_messages: v.count("pop3MaxMessages"),
        imap_max_connections: v.count("imapMaxConnections"),
        received_max: v.count("receivedMax"),
    }
}

fn whitelist(v: &mut Validator) -> Option<Vec<String>> {
    let list = v.bounded_list("fromWhitelist", 128, MAX_LIST_ITEMS)?;
    let mut seen = BTreeSet::new();
    Some(
        list.into_iter()
            .map(|a| a.to_lowercase())
            .filter(|a| seen.insert(a.clone()))
            .collect(),
    )
}

/// The profile fields `POST /users` and `PUT /users/{user}` share.
fn common_changes(v: &mut Validator) -> ProfileChanges {
    let language = v
        .string("language", Str::max(20).trim().allow_empty())
        .map(|l| Some(l).filter(|l| !l.is_empty()));
    let retention = v.count("retention");
    let targets = targets(v, "targets");
    let spam_level = v.integer("spamLevel", 0, 100).map(|l| l as u8);
    let limits = limits(v);
    let from_whitelist = whitelist(v);
    let tags = v
        .bounded_list("tags", 128, MAX_LIST_ITEMS)
        .map(users::normalize_tags);
    let upload_sent_messages = v.boolean("uploadSentMessages");
    let disabled_scopes = disabled_scopes(v);
    let meta_data = v.json_object("metaData", MAX_DATA_BYTES);
    let internal_data = v.json_object("internalData", MAX_DATA_BYTES);
    let pub_key = pub_key(v);
    let encrypt_messages = v.boolean("encryptMessages");
    let encrypt_forwarded = v.boolean("encryptForwarded");
    let feature_flags = feature_flags(v);
    ProfileChanges {
        language,
        retention,
        targets,
        spam_level,
        limits,
        from_whitelist,
        tags,
        upload_sent_messages,
        disabled_scopes,
        meta_data,
        internal_data,
        pub_key,
        encrypt_messages,
        encrypt_forwarded,
        feature_flags,
        ..Default::default()
    }
}

fn mailbox_names(v: &mut Validator) -> CustomNames {
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

/// Validates a `POST /users` request (strict: unknown fields are refused).
pub fn new_user(params: Map<String, Value>) -> ApiResult<NewUser> {
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
        password(&mut v, "password")
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
    let mailboxes = mailbox_names(&mut v);
    let session = v.session();
    let mut profile = common_changes(&mut v);
    profile.name = name.map(Some);
    v.deny_unknown();
    v.finish()?;
    Ok(NewUser {
        username: username.unwrap_or_default(),
        password: password.flatten(),
        hashed_password,
        require_password_change,
        address,
        empty_address,
        add_tags_to_address,
        mailboxes,
        profile,
        session,
    })
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

/// What `GET /users` answers besides the listing: the extra fields asked for.
pub struct ListUsersView {
    pub meta_data: bool,
    pub internal_data: bool,
}

/// Validates `GET /users` (unknown parameters are allowed, as in WildDuck).
pub fn list_users(params: Map<String, Value>) -> ApiResult<(ListUsers, ListUsersView)> {
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
    let page = page_request(&mut v);
    v.finish()?;
    Ok((
        ListUsers {
            query,
            tags,
            required_tags,
            page,
        },
        ListUsersView {
            meta_data,
            internal_data,
        },
    ))
}

/// What a user token may change of its own user (WildDuck's `user` role); anything else it
/// sends is dropped without a word, as in WildDuck.
const OWN_CHANGES: [&str; 21] = [
    "existingPassword",
    "password",
    "allowUnsafe",
    "language",
    "name",
    "targets",
    "mtaRelay",
    "spamLevel",
    "uploadSentMessages",
    "metaData",
    "pubKey",
    "smimeCerts",
    "smimeCipher",
    "smimeKeyTransport",
    "encryptMessages",
    "encryptForwarded",
    "retention",
    "disable2fa",
    "protocol",
    "sess",
    "ip",
];

/// What a user token does not see of its own user.
const HIDDEN_FROM_OWNER: [&str; 3] = ["tags", "disabledScopes", "internalData"];

/// Removes from a user's JSON what its own token may not see.
pub fn owner_view(mut body: Value) -> Value {
    if let Some(fields) = body.as_object_mut() {
        for field in HIDDEN_FROM_OWNER {
            fields.remove(field);
        }
    }
    body
}

/// Validates `PUT /users/{user}` (strict); `by_owner` when a user token changes its own user.
pub fn user_changes(mut params: Map<String, Value>, by_owner: bool) -> ApiResult<UserChanges> {
    if by_owner {
        params.retain(|key, _| OWN_CHANGES.contains(&key.as_str()));
    }
    let mut v = Validator::new(params);
    let password = if v.has("password") {
        password(&mut v, "password")
    } else {
        None
    };
    let hashed_password = v.boolean("hashedPassword").unwrap_or(false);
    v.boolean("allowUnsafe");
    let existing_password = v.string("existingPassword", Str::max(256).min(1));
    let protocol = v
        .string("protocol", Str::max(100).trim())
        .unwrap_or_else(|| "API".into());
    let session = v.session();
    let mut profile = common_changes(&mut v);
    profile.name = v
        .string("name", Str::max(256).trim().allow_empty())
        .map(|n| Some(n).filter(|n| !n.is_empty()));
    profile.disable_2fa = v.boolean("disable2fa") == Some(true);
    profile.disabled = v.boolean("disabled");
    profile.suspended = v.boolean("suspended");
    v.deny_unknown();
    v.finish()?;
    Ok(UserChanges {
        profile,
        password,
        hashed_password,
        existing_password,
        protocol,
        session,
    })
}

/// Validates `GET /users/resolve/{username}` (strict): a valid username, lowercased.
pub fn resolve_request(username: &str, params: Map<String, Value>) -> ApiResult<String> {
    let mut v = Validator::new(params);
    let username = username.trim().to_lowercase();
    if username.is_empty() || username.len() > 255 || !USERNAME_PATTERN.is_match(&username) {
        v.error(
            "username",
            "\"username\" with value fails to match the required pattern",
        );
    }
    v.session();
    v.deny_unknown();
    v.finish()?;
    Ok(username)
}

/// Validates `DELETE /users/{user}` (strict).
pub fn delete_user(params: Map<String, Value>) -> ApiResult<DeleteUser> {
    let mut v = Validator::new(params);
    let delete_after = v.date_or_false("deleteAfter");
    let session = v.session();
    v.deny_unknown();
    v.finish()?;
    Ok(DeleteUser {
        delete_after,
        session,
    })
}

/// A request with nothing but `sess` and `ip` (strict), for the security log.
pub fn session_request(params: Map<String, Value>) -> ApiResult<crate::domain::authlog::Session> {
    let mut v = Validator::new(params);
    let session = v.session();
    v.deny_unknown();
    v.finish()?;
    Ok(session)
}

/// Validates `PUT /users/{user}/logout`: the optional `reason`.
pub fn logout(params: Map<String, Value>) -> ApiResult<Option<String>> {
    let mut v = Validator::new(params);
    let reason = v.string("reason", Str::max(128).allow_empty());
    v.session();
    v.deny_unknown();
    v.finish()?;
    Ok(reason)
}

// ---------------------------------------------------------------------------------------------
// Answers

/// JSON text of an object as that object (`{}` when unset).
pub fn parsed_object(text: &Option<String>) -> Value {
    text.as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_else(|| Value::Object(Map::new()))
}

fn quota_json(stored: &StoredUser, config: &Config) -> Value {
    json!({
        "allowed": stored.quota(config),
        "used": stored.storage_used.max(0),
    })
}

/// `GET /users/{user}`: the documented shape.
pub fn user_json(stored: &StoredUser, config: &Config) -> Value {
    let user: &User = &stored.user;
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
        "enabled2fa": user.enabled_2fa(),
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
            "recipients": counter(or_default(limits.recipients, config.max_recipients())),
            "forwards": counter(or_default(limits.forwards, config.max_forwards())),
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
        "hasPasswordSet": user.has_password(),
        "activated": user.activated,
        "disabled": user.disabled,
        "suspended": user.suspended,
    })
}

/// One entry of `GET /users`.
fn list_entry_json(stored: &StoredUser, config: &Config, view: &ListUsersView) -> Value {
    let user = &stored.user;
    let mut entry = json!({
        "id": user.id,
        "username": user.username,
        "name": user.name,
        "address": user.address,
        "tags": user.tags,
        "targets": user.targets,
        "enabled2fa": user.enabled_2fa(),
        "autoreply": user.autoreply,
        "encryptMessages": user.encrypt_messages,
        "encryptForwarded": user.encrypt_forwarded,
        "quota": quota_json(stored, config),
        "hasPasswordSet": user.has_password(),
        "activated": user.activated,
        "disabled": user.disabled,
        "suspended": user.suspended,
    });
    if view.meta_data {
        entry["metaData"] = parsed_object(&user.meta_data);
    }
    if view.internal_data {
        entry["internalData"] = parsed_object(&user.internal_data);
    }
    entry
}

/// `GET /users`.
pub fn list_json(
    request: &ListUsers,
    view: &ListUsersView,
    listing: &UserListing,
    config: &Config,
) -> Value {
    let mut body = json!({ "success": true });
    if let Some(q) = &request.query {
        body["query"] = json!(q);
    }
    body["total"] = json!(listing.total);
    add_paging(&mut body, &listing.page, &request.page);
    body["results"] = listing
        .page
        .items
        .iter()
        .map(|stored| list_entry_json(stored, config, view))
        .collect();
    body
}

/// `DELETE /users/{user}`.
/// `GET /users/{user}/restore`: what a restore would bring back.
pub fn restorable_json(id: &ObjectId, deleted: &DeletedUser) -> Value {
    json!({
        "success": true,
        "user": id,
        "username": deleted.user.username,
        "storageUsed": deleted.storage_used,
        "tags": deleted.user.tags,
        "deleted": iso(&deleted.deleted_at),
        "deleteAfter": iso(&deleted.purge_after),
        "recoverableAddresses": deleted
            .addresses
            .iter()
            .filter(|(_, free)| *free)
            .map(|(a, _)| a.address.clone())
            .collect::<Vec<_>>(),
    })
}

/// `POST /users/{user}/restore`.
pub fn restored_json(id: &ObjectId, restored: &Restored) -> Value {
    let mut addresses = json!({ "recovered": restored.recovered });
    if let Some(main) = &restored.main {
        addresses["main"] = json!(main);
    }
    json!({
        "success": true,
        "code": "TaskCancelled",
        "user": id,
        "task": restored.task,
        "addresses": addresses,
    })
}

pub fn deleted_json(user: &ObjectId, deleted: &Deleted) -> Value {
    json!({
        "success": true,
        "code": "TaskScheduled",
        "user": user,
        "addresses": { "deleted": deleted.addresses },
        "deleteAfter": iso(&deleted.purge_after),
        "task": deleted.task,
    })
}
