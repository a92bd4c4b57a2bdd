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
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::addresses;
use super::authlog::{AuthlogEntry, Session};
use super::retry::{Attempt, USER_CONTENDED, retry_on_conflict};
use super::users::{self, profile_touch};
use super::webhooks;
use super::{AppState, DomainError, DomainResult, keys, password};
use crate::config::{Config, MailServer};
use crate::id::ObjectId;
use crate::store::{Condition, Item, Query, SortRange, StoreError, Update, Write, query_all};

/// WildDuck's limit of passwords per user.
pub const MAX_ASPS: usize = 50;
/// The scopes an ASP can hold.
pub const SCOPES: [&str; 3] = ["imap", "pop3", "smtp"];

/// Label of the condition on an ASP item: it is gone (deleted while in use), or, for a new
/// one, its id exists already (see [`crate::store::Guard`]).
pub const ASP_GONE: &str = "asp gone";

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

    pub(crate) fn item(&self) -> Item {
        let item = Item::new(
            keys::asp(&self.user, &self.id),
            serde_json::to_value(self).unwrap_or(Value::Null),
        );
        match self.expires {
            Some(t) => item.with_expiry(t.timestamp()),
            None => item,
        }
    }

    /// The write that records a successful login with this password (it must still exist).
    pub fn used_write(&self, event: &ObjectId, ip: Option<&str>) -> Write {
        let mut asp = self.clone();
        let now = Utc::now();
        asp.used = Some(now);
        asp.auth_event = Some(*event);
        asp.auth_ip = ip.map(str::to_string);
        if let Some(ttl) = asp.ttl {
            asp.expires = crate::time::after_seconds(now, ttl);
        }
        Write::Update {
            key: keys::asp(&asp.user, &asp.id),
            update: Update {
                body: Some(serde_json::to_value(&asp).unwrap_or(Value::Null)),
                expires_at: asp.expires.map(|t| Some(t.timestamp())),
                ..Default::default()
            },
            guard: Some(Condition::Exists.labeled(ASP_GONE)),
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

fn from_item(item: &Item) -> DomainResult<Asp> {
    item.body_as()
        .map_err(|e| DomainError::corrupt("ASP", &item.sk, e))
}

/// Every live ASP of a user, oldest first.
pub async fn list_stored(state: &AppState, user: &ObjectId) -> DomainResult<Vec<Asp>> {
    let query = Query::table(keys::user_pk(user))
        .range(SortRange::BeginsWith(keys::ASP_SK_PREFIX.into()))
        .limit(100);
    query_all(state.table.as_ref(), query)
        .await?
        .iter()
        .map(from_item)
        .collect()
}

/// `GET /users/{user}/asps`: temporary passwords only with `show_all`.
pub async fn list(state: &AppState, user: &ObjectId, show_all: bool) -> DomainResult<Vec<Asp>> {
    users::load(state, user).await?;
    Ok(list_stored(state, user)
        .await?
        .into_iter()
        .filter(|a| show_all || a.ttl.is_none())
        .collect())
}

/// `GET /users/{user}/asps/{asp}`.
pub async fn get(state: &AppState, user: &ObjectId, id: &ObjectId) -> DomainResult<Asp> {
    users::load(state, user).await?;
    let item = state
        .table
        .get(&keys::asp(user, id))
        .await?
        .ok_or(DomainError::AspNotFound("Invalid or unknown ASP key"))?;
    from_item(&item)
}

/// Scopes as given, normalized: `*` alone when it is listed or all three are; otherwise
/// sorted. Default `*` (the spec; WildDuck stores `[]`).
pub fn normalize_scopes(mut scopes: Vec<String>) -> Vec<String> {
    if scopes.is_empty() || scopes.iter().any(|s| s == "*") || scopes.len() == SCOPES.len() {
        return vec!["*".into()];
    }
    scopes.sort();
    scopes
}

/// A `POST /users/{user}/asps` request.
pub struct NewAsp {
    pub description: String,
    /// Normalized with [`normalize_scopes`].
    pub scopes: Vec<String>,
    /// The address the profile logs in with (the main one when `None`).
    pub address: Option<String>,
    /// A preset password: 16 letters a-z.
    pub password: Option<String>,
    pub generate_mobileconfig: bool,
    /// Seconds a temporary password lives after its last use.
    pub ttl: Option<u64>,
    pub session: Session,
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
pub async fn create(state: &AppState, user: &ObjectId, input: NewAsp) -> DomainResult<Created> {
    let NewAsp {
        description,
        scopes,
        address,
        password: preset,
        generate_mobileconfig,
        ttl,
        session,
    } = input;
    let has = |s: &str| scopes.iter().any(|x| x == s || x == "*");
    if generate_mobileconfig && !((has("imap") || has("pop3")) && has("smtp")) {
        return Err(DomainError::ScopesInvalid(
            "Profile file requires either imap or pop3 and smtp scopes",
        ));
    }

    let owner = users::load(state, user).await?;
    let (account_name, account_address) = match &address {
        Some(given) => {
            let found = addresses::resolve(state, given).await?;
            let Some((owner_id, address_id)) = found.filter(|(u, _)| u == user) else {
                return Err(DomainError::AddressNotFound("Invalid or unknown address"));
            };
            let stored = addresses::list_stored(state, &owner_id)
                .await?
                .into_iter()
                .find(|a| a.id == address_id)
                .ok_or(DomainError::AddressNotFound("Invalid or unknown address"))?;
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
        ttl,
        expires: ttl.and_then(|t| crate::time::after_seconds(now, t)),
    };

    let mut read_before = Some(owner);
    let id = retry_on_conflict(USER_CONTENDED, || {
        let read_before = read_before.take();
        let (asp, session, description) = (&asp, &session, &description);
        async move {
            let owner = match read_before {
                Some(owner) => owner,
                None => users::load(state, user).await?,
            };
            let count = list_stored(state, user).await?.len();
            if count >= MAX_ASPS {
                return Err(DomainError::TooMany {
                    message: "Maximum application password limit reached",
                    allowed: Some(MAX_ASPS as u64),
                });
            }
            let entry = AuthlogEntry::new("create asp", Some("success"), session, &state.config)
                .with("asp", asp.id.to_string())
                .with("aname", description.clone())
                .with("temporary", asp.ttl.is_some());
            // The version bump makes a concurrent creation (which read the same count) retry.
            let writes = vec![
                profile_touch(&owner),
                Write::put_new(asp.item(), ASP_GONE),
                entry.write(user),
            ];
            match state.table.transact(writes).await {
                Ok(()) => Ok(Attempt::Done(asp.id)),
                Err(StoreError::ConditionFailed {
                    label: users::PROFILE_CHANGED,
                }) => Ok(Attempt::Retry),
                Err(e) => Err(e.into()),
            }
        }
    })
    .await?;
    tracing::info!(user = %user, asp = %id, "ASP created");
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
    let event = webhooks::Event::of("asp.created", user)
        .with("asp", id)
        .with("description", &description);
    webhooks::publish(state, event).await;
    Ok(Created {
        id,
        password: clear,
        mobileconfig,
    })
}

/// `DELETE /users/{user}/asps/{asp}`.
pub async fn delete(
    state: &AppState,
    user: &ObjectId,
    id: &ObjectId,
    session: &Session,
) -> DomainResult<()> {
    users::load(state, user).await?;
    let entry = AuthlogEntry::new("delete asp", Some("success"), session, &state.config)
        .with("asp", id.to_string());
    let writes = vec![
        Write::delete(keys::asp(user, id)).when(Condition::Exists, ASP_GONE),
        entry.write(user),
    ];
    match state.table.transact(writes).await {
        Ok(()) => {
            tracing::info!(user = %user, asp = %id, "ASP deleted");
            webhooks::publish(
                state,
                webhooks::Event::of("asp.deleted", user).with("asp", id),
            )
            .await;
            Ok(())
        }
        Err(StoreError::ConditionFailed { label: ASP_GONE }) => Err(DomainError::AspNotFound(
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
) -> DomainResult<String> {
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
        .map_err(|e| DomainError::Internal(anyhow::anyhow!("writing the profile: {e}")))?;
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
