//! Application-specific passwords (`/users/{user}/asps`): 16 random lowercase letters, shown
//! once, stored only as an argon2id hash, each limited to some of the scopes imap, pop3 and
//! smtp (`*` for all three; never `master`).
//!
//! Items: `USER#<user>` / `ASP#<asp>`, in the user's partition, so one `Query` lists them;
//! temporary ones (`ttl`) carry a TTL that every use extends. A user has at most
//! [`MAX_ASPS`]: creation counts the live ones and bumps the profile version in the same
//! transaction, so concurrent creations can't pass the limit together.
//!
//! Each stored password has a 5-bit `selector` (from SHA-256 of the password), so a login
//! runs the slow hash check only on about 1/32 of a user's passwords, as WildDuck does.

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::addresses;
use super::authlog::AuthlogEntry;
use super::users::{self, profile_touch};
use super::{keys, password};
use crate::config::{Config, MailServer};
use crate::error::{ApiError, ApiResult};
use crate::http::AppState;
use crate::http::validate::{Str, Validator, session_only};
use crate::id::ObjectId;
use crate::store::{Condition, Item, Query, SortRange, StoreError, Update, Write, query_all};

/// WildDuck's limit of passwords per user.
pub const MAX_ASPS: usize = 50;
/// The scopes an ASP can hold.
pub const SCOPES: [&str; 3] = ["imap", "pop3", "smtp"];
const OPTIMISTIC_RETRIES: usize = 8;

/// A stored application-specific password.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Asp {
    pub id: ObjectId,
    pub user: ObjectId,
    pub description: String,
    /// `["*"]`, or a sorted subset of [`SCOPES`].
    pub scopes: Vec<String>,
    /// argon2id PHC string.
    pub password: String,
    pub selector: String,
    #[serde(default)]
    pub used: Option<DateTime<Utc>>,
    /// Authlog entry of the last use.
    #[serde(default)]
    pub auth_event: Option<ObjectId>,
    #[serde(default)]
    pub auth_ip: Option<String>,
    pub created: DateTime<Utc>,
    /// Seconds a temporary password lives after its last use.
    #[serde(default)]
    pub ttl: Option<u64>,
    #[serde(default)]
    pub expires: Option<DateTime<Utc>>,
}

impl Asp {
    /// Whether it is valid for `scope`.
    pub fn allows(&self, scope: &str) -> bool {
        scope != "master" && self.scopes.iter().any(|s| s == "*" || s == scope)
    }

    fn item(&self) -> Item {
        let item = Item::new(
            keys::asp(&self.user, &self.id),
            serde_json::to_value(self).unwrap_or(Value::Null),
        );
        match self.expires {
            Some(t) => item.with_expiry(t.timestamp()),
            None => item,
        }
    }

    fn json(&self) -> Value {
        let mut out = json!({
            "id": self.id,
            "description": self.description,
            "scopes": self.scopes,
            "lastUse": {
                "time": self.used.map_or(json!(false), |t| json!(t)),
                "event": self.auth_event.map_or(json!(false), |e| json!(e)),
            },
            "created": self.created,
        });
        if let Some(expires) = self.expires {
            out["expires"] = json!(expires);
        }
        out
    }

    /// The write that records a successful login with this password (it must still exist).
    pub fn used_write(&self, event: &ObjectId, ip: Option<&str>) -> Write {
        let mut asp = self.clone();
        let now = Utc::now();
        asp.used = Some(now);
        asp.auth_event = Some(*event);
        asp.auth_ip = ip.map(str::to_string);
        if let Some(ttl) = asp.ttl {
            asp.expires = Some(now + chrono::Duration::seconds(ttl as i64));
        }
        Write::Update {
            key: keys::asp(&asp.user, &asp.id),
            update: Update {
                body: Some(serde_json::to_value(&asp).unwrap_or(Value::Null)),
                expires_at: asp.expires.map(|t| Some(t.timestamp())),
                ..Default::default()
            },
            condition: Some(Condition::Exists),
        }
    }
}

/// The selector of a normalized password: 5 bits of its SHA-256, as two hex digits.
pub fn selector(password: &str) -> String {
    format!("{:02x}", Sha256::digest(password.as_bytes())[0] % 32)
}

/// What a login password becomes when tried as an ASP: whitespace removed, lowercased. `None`
/// when it can't be one (16 letters a-z).
pub fn normalize(password: &str) -> Option<String> {
    let compact: String = password
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect();
    (compact.len() == 16 && compact.bytes().all(|b| b.is_ascii_lowercase())).then_some(compact)
}

fn generate_password() -> String {
    let mut rng = rand::thread_rng();
    (0..16)
        .map(|_| rng.gen_range(b'a'..=b'z') as char)
        .collect()
}

fn from_item(item: &Item) -> ApiResult<Asp> {
    serde_json::from_value(item.body.clone())
        .map_err(|e| ApiError::internal(anyhow::anyhow!("corrupt ASP {}: {e}", item.sk)))
}

/// Every live ASP of a user, oldest first.
pub async fn list_stored(state: &AppState, user: &ObjectId) -> ApiResult<Vec<Asp>> {
    let query = Query::table(keys::user_pk(user))
        .range(SortRange::BeginsWith(keys::ASP_SK_PREFIX.into()))
        .limit(100);
    query_all(state.table.as_ref(), query)
        .await?
        .iter()
        .map(from_item)
        .collect()
}

/// `GET /users/{user}/asps`: temporary passwords only with `showAll`.
pub async fn list(
    state: &AppState,
    user: &ObjectId,
    params: Map<String, Value>,
) -> ApiResult<Value> {
    let mut v = Validator::new(params);
    let show_all = v.boolean("showAll").unwrap_or(false);
    v.session();
    v.deny_unknown();
    v.finish()?;
    users::load(state, user).await?;
    let results: Vec<Value> = list_stored(state, user)
        .await?
        .iter()
        .filter(|a| show_all || a.ttl.is_none())
        .map(Asp::json)
        .collect();
    Ok(json!({ "success": true, "results": results }))
}

fn not_found() -> ApiError {
    ApiError::not_found("AspNotFound", "Invalid or unknown ASP key")
}

/// `GET /users/{user}/asps/{asp}`.
pub async fn get(
    state: &AppState,
    user: &ObjectId,
    id: &ObjectId,
    params: Map<String, Value>,
) -> ApiResult<Value> {
    session_only(params)?;
    users::load(state, user).await?;
    let item = state
        .table
        .get(&keys::asp(user, id))
        .await?
        .ok_or_else(not_found)?;
    let mut body = from_item(&item)?.json();
    body["success"] = json!(true);
    Ok(body)
}

/// Scopes as given (array or comma-separated string), normalized: `*` alone when it is
/// listed or all three are; otherwise sorted. Default `*` (the spec; WildDuck stores `[]`).
fn parse_scopes(v: &mut Validator) -> Option<Vec<String>> {
    let given = v.string_list("scopes", 8)?;
    let mut out: Vec<String> = Vec::new();
    for (i, scope) in given.into_iter().enumerate() {
        let scope = scope.to_lowercase();
        if scope != "*" && !SCOPES.contains(&scope.as_str()) {
            v.error(
                &format!("scopes,{i}"),
                format!("\"scopes[{i}]\" must be one of [imap, pop3, smtp, *]"),
            );
            return None;
        }
        if out.contains(&scope) {
            v.error(
                &format!("scopes,{i}"),
                format!("\"scopes[{i}]\" contains a duplicate value"),
            );
            return None;
        }
        out.push(scope);
    }
    if out.is_empty() || out.iter().any(|s| s == "*") || out.len() == SCOPES.len() {
        return Some(vec!["*".into()]);
    }
    out.sort();
    Some(out)
}

/// What `POST /users/{user}/asps` created.
pub struct Created {
    pub id: ObjectId,
    /// The password in clear: answered once, never stored.
    pub password: String,
    pub mobileconfig: Option<Mobileconfig>,
}

pub struct Mobileconfig {
    pub name: String,
    pub address: String,
    /// The profile as base64 (what the spec returns).
    pub base64: String,
}

/// `POST /users/{user}/asps`.
pub async fn create(
    state: &AppState,
    user: &ObjectId,
    params: Map<String, Value>,
) -> ApiResult<Created> {
    let mut v = Validator::new(params);
    let description = v.required_string("description", Str::max(255).trim());
    let scopes = parse_scopes(&mut v).unwrap_or_else(|| vec!["*".into()]);
    let address = v.string("address", Str::max(255).trim());
    if address
        .as_deref()
        .is_some_and(|a| super::names::normalize_address(a, true).is_err())
    {
        v.error("address", "\"address\" must be a valid email");
    }
    // A preset password; the message leaves the value out (it is a secret).
    let preset = v.string("password", Str::max(64));
    if preset
        .as_deref()
        .is_some_and(|p| p.len() != 16 || !p.bytes().all(|b| b.is_ascii_lowercase()))
    {
        v.error(
            "password",
            "\"password\" fails to match the password pattern (16 letters a-z)",
        );
    }
    let generate_mobileconfig = v.boolean("generateMobileconfig").unwrap_or(false);
    let ttl = v.integer("ttl", 0, i64::from(u32::MAX)).filter(|t| *t > 0);
    let session = v.session();
    v.deny_unknown();
    v.finish()?;
    let description = description.unwrap_or_default();

    let has = |s: &str| scopes.iter().any(|x| x == s || x == "*");
    if generate_mobileconfig && !((has("imap") || has("pop3")) && has("smtp")) {
        return Err(ApiError::bad_request(
            "InvalidAuthScope",
            "Profile file requires either imap or pop3 and smtp scopes",
        ));
    }

    let owner = users::load(state, user).await?;
    let (account_name, account_address) = match &address {
        Some(given) => {
            let found = addresses::resolve(state, given).await?;
            let Some((owner_id, address_id)) = found.filter(|(u, _)| u == user) else {
                return Err(ApiError::not_found(
                    "AddressNotFound",
                    "Invalid or unknown address",
                ));
            };
            let stored = addresses::list_stored(state, &owner_id)
                .await?
                .into_iter()
                .find(|a| a.id == address_id)
                .ok_or_else(|| {
                    ApiError::not_found("AddressNotFound", "Invalid or unknown address")
                })?;
            (
                stored.name.or(owner.user.name.clone()).unwrap_or_default(),
                stored.address,
            )
        }
        None => (
            owner.user.name.clone().unwrap_or_default(),
            owner.user.address.clone().unwrap_or_default(),
        ),
    };

    let clear = preset.unwrap_or_else(generate_password);
    let now = Utc::now();
    let asp = Asp {
        id: ObjectId::new(),
        user: *user,
        description: description.clone(),
        scopes: scopes.clone(),
        password: password::hash(clear.clone()).await?,
        selector: selector(&clear),
        used: None,
        auth_event: None,
        auth_ip: None,
        created: now,
        ttl: ttl.map(|t| t as u64),
        expires: ttl.map(|t| now + chrono::Duration::seconds(t)),
    };

    let mut owner = owner;
    for _ in 0..OPTIMISTIC_RETRIES {
        let count = list_stored(state, user).await?.len();
        if count >= MAX_ASPS {
            return Err(ApiError::forbidden(
                "TooMany",
                "Maximum application password limit reached",
            )
            .with_extra("allowed", MAX_ASPS));
        }
        let entry = AuthlogEntry::new("create asp", Some("success"), &session, &state.config)
            .with("asp", asp.id.to_string())
            .with("aname", description.clone())
            .with("temporary", asp.ttl.is_some());
        // The version bump makes a concurrent creation (which read the same count) retry.
        let writes = vec![
            profile_touch(&owner),
            Write::put_new(asp.item()),
            entry.write(user),
        ];
        match state.table.transact(writes).await {
            Ok(()) => {
                tracing::info!(user = %user, asp = %asp.id, "ASP created");
                let mobileconfig = generate_mobileconfig
                    .then(|| {
                        profile(
                            &state.config,
                            user,
                            &description,
                            &scopes,
                            &account_name,
                            &account_address,
                            &clear,
                        )
                        .map(|base64| Mobileconfig {
                            name: account_name.clone(),
                            address: account_address.clone(),
                            base64,
                        })
                    })
                    .transpose()?;
                return Ok(Created {
                    id: asp.id,
                    password: clear,
                    mobileconfig,
                });
            }
            Err(StoreError::ConditionFailed { index: 0 }) => {
                owner = users::load(state, user).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::conflict(
        "LockFail",
        "The user was changed concurrently, try again",
    ))
}

/// `DELETE /users/{user}/asps/{asp}`.
pub async fn delete(
    state: &AppState,
    user: &ObjectId,
    id: &ObjectId,
    params: Map<String, Value>,
) -> ApiResult<()> {
    let mut v = Validator::new(params);
    let session = v.session();
    v.deny_unknown();
    v.finish()?;
    users::load(state, user).await?;
    let entry = AuthlogEntry::new("delete asp", Some("success"), &session, &state.config)
        .with("asp", id.to_string());
    let writes = vec![
        Write::Delete {
            key: keys::asp(user, id),
            condition: Some(Condition::Exists),
        },
        entry.write(user),
    ];
    match state.table.transact(writes).await {
        Ok(()) => {
            tracing::info!(user = %user, asp = %id, "ASP deleted");
            Ok(())
        }
        Err(StoreError::ConditionFailed { index: 0 }) => Err(ApiError::not_found(
            "AspNotFound",
            "Application Specific Password was not found",
        )),
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------------------------
// Apple configuration profile

/// A reverse-DNS identifier from the mail domain (`example.com` → `com.example.eider`).
fn identifier(domain: &str) -> String {
    let mut parts: Vec<&str> = domain.split('.').filter(|p| !p.is_empty()).collect();
    parts.reverse();
    parts.push("eider");
    parts.join(".")
}

fn uuid() -> String {
    let b: [u8; 16] = rand::random();
    let hex: String = b.iter().map(|x| format!("{x:02X}")).collect();
    format!(
        "{}-{}-4{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// An unsigned Apple configuration profile (XML plist) with one mail account: IMAP (or POP3
/// when the password has no IMAP scope) and SMTP on the configured servers, logging in with
/// the address and the new password. Returned as base64.
pub fn profile(
    config: &Config,
    user: &ObjectId,
    description: &str,
    scopes: &[String],
    name: &str,
    address: &str,
    password: &str,
) -> ApiResult<String> {
    use plist::{Dictionary, Value as P};
    let imap = scopes.iter().any(|s| s == "*" || s == "imap");
    let (kind, incoming): (&str, &MailServer) = if imap {
        ("EmailTypeIMAP", &config.imap)
    } else {
        ("EmailTypePOP", &config.pop3)
    };
    let id = format!("{}.{user}", identifier(&config.domain));
    let organization = config.domain.clone();
    let s = |t: &str| P::String(t.to_string());

    let mut account = Dictionary::new();
    account.insert("PayloadType".into(), s("com.apple.mail.managed"));
    account.insert("PayloadVersion".into(), P::Integer(1.into()));
    account.insert("PayloadIdentifier".into(), s(&format!("{id}.mail")));
    account.insert("PayloadUUID".into(), s(&uuid()));
    account.insert("PayloadDisplayName".into(), s("Email Account"));
    account.insert("PayloadDescription".into(), s("Configures email account"));
    account.insert("PayloadOrganization".into(), s(&organization));
    account.insert("EmailAccountDescription".into(), s(address));
    account.insert("EmailAccountName".into(), s(name));
    account.insert("EmailAccountType".into(), s(kind));
    account.insert("EmailAddress".into(), s(address));
    account.insert(
        "IncomingMailServerAuthentication".into(),
        s("EmailAuthPassword"),
    );
    account.insert("IncomingMailServerHostName".into(), s(&incoming.host));
    account.insert(
        "IncomingMailServerPortNumber".into(),
        P::Integer(i64::from(incoming.port).into()),
    );
    account.insert(
        "IncomingMailServerUseSSL".into(),
        P::Boolean(incoming.secure),
    );
    account.insert("IncomingMailServerUsername".into(), s(address));
    account.insert("IncomingPassword".into(), s(password));
    account.insert(
        "OutgoingMailServerAuthentication".into(),
        s("EmailAuthPassword"),
    );
    account.insert("OutgoingMailServerHostName".into(), s(&config.smtp.host));
    account.insert(
        "OutgoingMailServerPortNumber".into(),
        P::Integer(i64::from(config.smtp.port).into()),
    );
    account.insert(
        "OutgoingMailServerUseSSL".into(),
        P::Boolean(config.smtp.secure),
    );
    account.insert("OutgoingMailServerUsername".into(), s(address));
    account.insert(
        "OutgoingPasswordSameAsIncomingPassword".into(),
        P::Boolean(true),
    );
    account.insert("PreventMove".into(), P::Boolean(false));
    account.insert("PreventAppSheet".into(), P::Boolean(false));
    account.insert("SMIMEEnabled".into(), P::Boolean(false));
    account.insert("allowMailDrop".into(), P::Boolean(true));

    let mut root = Dictionary::new();
    root.insert("PayloadType".into(), s("Configuration"));
    root.insert("PayloadVersion".into(), P::Integer(1.into()));
    root.insert("PayloadIdentifier".into(), s(&id));
    root.insert("PayloadUUID".into(), s(&uuid()));
    root.insert("PayloadDisplayName".into(), s(description));
    root.insert(
        "PayloadDescription".into(),
        s(&format!("Mail account {address}")),
    );
    root.insert("PayloadOrganization".into(), s(&organization));
    root.insert(
        "PayloadContent".into(),
        P::Array(vec![P::Dictionary(account)]),
    );

    let mut xml = Vec::new();
    P::Dictionary(root)
        .to_writer_xml(&mut xml)
        .map_err(|e| ApiError::internal(anyhow::anyhow!("writing the profile: {e}")))?;
    use base64::Engine;
    Ok(base64::engine::general_purpose::STANDARD.encode(xml))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_passwords_normalize_to_asp_form() {
        assert_eq!(
            normalize("slrf waav YZMA tgxf").as_deref(),
            Some("slrfwaavyzmatgxf")
        );
        assert_eq!(normalize("slrfwaavyzmatgx"), None);
        assert_eq!(normalize("slrfwaavyzmatgx1"), None);
        assert_eq!(normalize("slrfwaavyzmatgxõ"), None);
    }

    #[test]
    fn selectors_have_32_values_and_generated_passwords_fit_the_form() {
        for _ in 0..100 {
            let p = generate_password();
            assert_eq!(normalize(&p).as_deref(), Some(p.as_str()));
            let s = selector(&p);
            assert!(u8::from_str_radix(&s, 16).unwrap() < 32);
        }
    }

    #[test]
    fn scopes_allow_only_their_protocols_and_never_master() {
        let mut asp = Asp {
            id: ObjectId::new(),
            user: ObjectId::new(),
            description: "d".into(),
            scopes: vec!["*".into()],
            password: String::new(),
            selector: String::new(),
            used: None,
            auth_event: None,
            auth_ip: None,
            created: Utc::now(),
            ttl: None,
            expires: None,
        };
        assert!(asp.allows("imap") && asp.allows("smtp") && !asp.allows("master"));
        asp.scopes = vec!["smtp".into()];
        assert!(asp.allows("smtp") && !asp.allows("imap"));
    }

    #[test]
    fn identifiers_reverse_the_domain() {
        assert_eq!(identifier("mail.example.com"), "com.example.mail.eider");
        let u = uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
