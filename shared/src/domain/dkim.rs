//! DKIM keys (WildDuck's `/dkim`) and signing outgoing mail with them.
//!
//! One key per domain (`*` is the fallback for domains without their own), generated (RSA
//! 2048) or imported (an RSA or Ed25519 PEM, or a raw Ed25519 seed in base64). The private key
//! is kept sealed with `EIDER_SECRET_KEY` when one is set. Every message Eider sends out
//! (forwards, autoreplies, submitted mail; through SES, the relay or the outbox) is signed with
//! the key of its envelope sender's domain, else the `*` key, as WildDuck's ZoneMTA plugin
//! signs: `d=` the MAIL FROM domain, `s=` the key's selector, relaxed/relaxed, rsa-sha256 or
//! ed25519-sha256 (RFC 8463).
//!
//! Items (one partition): `DKIMKEYS` / `DOMAIN#<domain>` the key, listed in domain order;
//! `DKIMKEYS` / `ID#<id>` pointing to it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter as _;
use mail_auth::dkim::DkimSigner;
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, EncodePublicKey as _};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Digest as _;

use super::paging::{PageRequest, PageResult, page_and_total};
use super::totp::{seal_for, unseal_for};
use super::webhooks;
use super::{AppState, DomainError, DomainResult, keys, names};
use crate::id::ObjectId;
use crate::store::{Item, Write};

/// The headers signed, when present (RFC 6376 §5.4.1's recommendation).
const SIGNED_HEADERS: [&str; 12] = [
    "From",
    "Sender",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "To",
    "Cc",
    "MIME-Version",
    "Content-Type",
    "In-Reply-To",
    "References",
];

/// The SPKI (RFC 8410) prefix of a raw 32-byte Ed25519 public key.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    Rsa,
    Ed25519,
}

/// A stored key. `private_key` is the PKCS#8 DER, sealed (see `totp::seal_for`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DkimKey {
    pub id: ObjectId,
    pub domain: String,
    pub selector: String,
    #[serde(default)]
    pub description: Option<String>,
    pub key_type: KeyType,
    private_key: String,
    /// SubjectPublicKeyInfo DER, base64.
    pub public_key_spki: String,
    /// SHA-256 of the private key's PKCS#8 DER, colon-separated hex.
    pub fingerprint: String,
    pub created: DateTime<Utc>,
}

impl DkimKey {
    /// The public key as PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn public_key_pem(&self) -> String {
        let body: Vec<String> = self
            .public_key_spki
            .as_bytes()
            .chunks(64)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----",
            body.join("\n")
        )
    }

    /// The DNS TXT record: its name and value (`k=ed25519` with the raw key for Ed25519, as
    /// RFC 8463 says; the SPKI for RSA).
    pub fn dns_txt(&self) -> (String, String) {
        let name = format!("{}._domainkey.{}", self.selector, self.domain);
        let value = match self.key_type {
            KeyType::Rsa => format!("v=DKIM1;t=s;p={}", self.public_key_spki),
            KeyType::Ed25519 => {
                let spki = STANDARD.decode(&self.public_key_spki).unwrap_or_default();
                let raw = spki.get(ED25519_SPKI_PREFIX.len()..).unwrap_or_default();
                format!("v=DKIM1;k=ed25519;t=s;p={}", STANDARD.encode(raw))
            }
        };
        (name, value)
    }
}

fn from_item(item: &Item) -> DomainResult<DkimKey> {
    item.body_as()
        .map_err(|e| DomainError::corrupt("DKIM key", &item.sk, e))
}

fn aad(id: &ObjectId) -> Vec<u8> {
    format!("eider-dkim-key:{id}").into_bytes()
}

fn bad_key(detail: impl std::fmt::Display) -> DomainError {
    DomainError::invalid(
        "privateKey",
        format!("Invalid or incompatible private key. {detail}"),
    )
}

/// A private key as given: its type, PKCS#8 DER and SPKI DER.
struct ParsedKey {
    key_type: KeyType,
    pkcs8: Vec<u8>,
    spki: Vec<u8>,
}

/// The DER inside a PEM block.
fn pem_der(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----") && !l.is_empty())
        .collect();
    STANDARD.decode(body).ok()
}

fn parse_key(given: &str) -> DomainResult<ParsedKey> {
    let given = given.trim();
    if given.starts_with("-----BEGIN RSA PRIVATE KEY-----") {
        let key = rsa::RsaPrivateKey::from_pkcs1_pem(given).map_err(bad_key)?;
        return rsa_parsed(&key);
    }
    if given.starts_with("-----BEGIN PRIVATE KEY-----") {
        if let Ok(key) = rsa::RsaPrivateKey::from_pkcs8_pem(given) {
            return rsa_parsed(&key);
        }
        let der = pem_der(given).ok_or_else(|| bad_key("The PEM does not decode."))?;
        return ed25519_parsed(&der);
    }
    // A raw Ed25519 seed: 32 bytes as 44 characters of base64.
    match STANDARD.decode(given) {
        Ok(seed) if given.len() == 44 && seed.len() == 32 => {
            let mut pkcs8 = vec![
                0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
                0x04, 0x20,
            ];
            pkcs8.extend_from_slice(&seed);
            ed25519_parsed(&pkcs8)
        }
        _ => Err(bad_key(
            "Expected a PEM private key or an Ed25519 seed in base64.",
        )),
    }
}

fn rsa_parsed(key: &rsa::RsaPrivateKey) -> DomainResult<ParsedKey> {
    use rsa::traits::PublicKeyParts as _;
    if key.size() * 8 < 1024 {
        return Err(bad_key("RSA keys must have at least 1024 bits."));
    }
    let pkcs8 = key.to_pkcs8_der().map_err(bad_key)?.as_bytes().to_vec();
    let spki = rsa::RsaPublicKey::from(key)
        .to_public_key_der()
        .map_err(bad_key)?
        .as_bytes()
        .to_vec();
    Ok(ParsedKey {
        key_type: KeyType::Rsa,
        pkcs8,
        spki,
    })
}

fn ed25519_parsed(pkcs8: &[u8]) -> DomainResult<ParsedKey> {
    let key = Ed25519Key::from_pkcs8_der(pkcs8).map_err(bad_key)?;
    let mut spki = ED25519_SPKI_PREFIX.to_vec();
    spki.extend(key.public_key());
    Ok(ParsedKey {
        key_type: KeyType::Ed25519,
        pkcs8: pkcs8.to_vec(),
        spki,
    })
}

/// A new RSA 2048 key (WildDuck's default), on the blocking pool: it takes a while.
async fn generate_rsa() -> DomainResult<ParsedKey> {
    tokio::task::spawn_blocking(|| {
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
            .map_err(|e| DomainError::Internal(anyhow::anyhow!("RSA key generation: {e}")))?;
        rsa_parsed(&key)
    })
    .await
    .map_err(|e| DomainError::Internal(e.into()))?
}

fn fingerprint(der: &[u8]) -> String {
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Signs a test message with the key and checks the signature with its own public key, so a
/// key that parses but can't sign is refused at once (WildDuck does the same).
fn check_signs(key: &ParsedKey) -> DomainResult<()> {
    let test = b"From: a@example.com\r\nSubject: test\r\n\r\ntest\r\n";
    signer_header(key.key_type, &key.pkcs8, "example.com", "test", test)
        .map(|_| ())
        .map_err(bad_key)
}

/// The `DKIM-Signature` header line(s) for `message`.
fn signer_header(
    key_type: KeyType,
    pkcs8: &[u8],
    domain: &str,
    selector: &str,
    message: &[u8],
) -> Result<String, mail_auth::Error> {
    let signature = match key_type {
        KeyType::Rsa => {
            let key = RsaKey::<Sha256>::from_key_der(rustls_pkcs8(pkcs8))?;
            DkimSigner::from_key(key)
                .domain(domain)
                .selector(selector)
                .headers(SIGNED_HEADERS)
                .sign(message)?
        }
        KeyType::Ed25519 => {
            let key = Ed25519Key::from_pkcs8_der(pkcs8)?;
            DkimSigner::from_key(key)
                .domain(domain)
                .selector(selector)
                .headers(SIGNED_HEADERS)
                .sign(message)?
        }
    };
    Ok(signature.to_header())
}

fn rustls_pkcs8(der: &[u8]) -> rustls_pki_types::PrivateKeyDer<'_> {
    rustls_pki_types::PrivateKeyDer::Pkcs8(der.into())
}

/// A validated `POST /dkim`.
pub struct NewKey {
    pub domain: String,
    pub selector: String,
    pub private_key: Option<String>,
    pub description: Option<String>,
}

/// `POST /dkim`: sets the domain's key (replacing one it had, which keeps its id).
pub async fn set(state: &AppState, input: NewKey) -> DomainResult<DkimKey> {
    let domain = if input.domain.trim() == "*" {
        "*".to_string()
    } else {
        names::normalize_domain(&input.domain).ok_or_else(|| {
            DomainError::invalid("domain", "\"domain\" must be a valid domain name or *")
        })?
    };
    let parsed = match &input.private_key {
        Some(given) => parse_key(given)?,
        None => generate_rsa().await?,
    };
    check_signs(&parsed)?;
    let existing = state.table.get(&keys::dkim_key(&domain)).await?;
    let id = match existing.as_ref().map(from_item).transpose()? {
        Some(old) => old.id,
        None => ObjectId::new(),
    };
    let key = DkimKey {
        id,
        domain,
        selector: input.selector,
        description: input.description,
        key_type: parsed.key_type,
        private_key: seal_for(&parsed.pkcs8, &aad(&id), state.config.secret_key.as_ref())?,
        public_key_spki: STANDARD.encode(&parsed.spki),
        fingerprint: fingerprint(&parsed.pkcs8),
        created: Utc::now(),
    };
    state
        .table
        .transact(vec![
            Write::put(Item::new(
                keys::dkim_key(&key.domain),
                serde_json::to_value(&key).unwrap_or_default(),
            )),
            Write::put(Item::new(
                keys::dkim_key_id(&key.id),
                json!({ "domain": key.domain }),
            )),
        ])
        .await?;
    let ev = if existing.is_some() {
        "dkim.updated"
    } else {
        "dkim.created"
    };
    webhooks::publish(state, dkim_event(ev, &key)).await;
    Ok(key)
}

/// WildDuck's `dkim.*` events: `{dkim, domain, selector, fingerprint}`.
fn dkim_event(ev: &'static str, key: &DkimKey) -> webhooks::Event {
    webhooks::Event::new(ev)
        .with("dkim", key.id)
        .with("domain", &key.domain)
        .with("selector", &key.selector)
        .with("fingerprint", &key.fingerprint)
}

fn not_found() -> DomainError {
    DomainError::DkimNotFound("Invalid or unknown DKIM key")
}

/// A key by id.
pub async fn get(state: &AppState, id: &ObjectId) -> DomainResult<DkimKey> {
    let pointer = state
        .table
        .get(&keys::dkim_key_id(id))
        .await?
        .ok_or_else(not_found)?;
    let domain = pointer.body["domain"].as_str().unwrap_or_default();
    let item = state
        .table
        .get(&keys::dkim_key(domain))
        .await?
        .ok_or_else(not_found)?;
    let key = from_item(&item)?;
    if key.id != *id {
        return Err(not_found());
    }
    Ok(key)
}

/// `GET /dkim/resolve/{domain}`.
pub async fn resolve(state: &AppState, domain: &str) -> DomainResult<DkimKey> {
    let missing = || DomainError::DkimNotFound("This domain does not exist");
    let domain = if domain.trim() == "*" {
        "*".to_string()
    } else {
        names::normalize_domain(domain).ok_or_else(missing)?
    };
    let item = state
        .table
        .get(&keys::dkim_key(&domain))
        .await?
        .ok_or_else(missing)?;
    from_item(&item)
}

/// `DELETE /dkim/{dkim}`.
pub async fn delete(state: &AppState, id: &ObjectId) -> DomainResult<()> {
    let key = get(state, id).await?;
    state
        .table
        .transact(vec![
            Write::delete(keys::dkim_key(&key.domain)),
            Write::delete(keys::dkim_key_id(id)),
        ])
        .await?;
    webhooks::publish(state, dkim_event("dkim.deleted", &key)).await;
    Ok(())
}

/// A `GET /dkim` request: `query` is a part of the domain.
pub struct ListKeys {
    pub query: Option<String>,
    pub page: PageRequest,
}

pub struct KeyListing {
    pub total: u64,
    pub page: PageResult<DkimKey>,
}

/// `GET /dkim`: in domain order.
pub async fn list(state: &AppState, request: &ListKeys) -> DomainResult<KeyListing> {
    let keep = |item: &Item| {
        from_item(item).is_ok_and(|k| {
            request
                .query
                .as_deref()
                .is_none_or(|q| k.domain.contains(q))
        })
    };
    let (total, page) = page_and_total(
        state.table.as_ref(),
        keys::DKIM_PK,
        keys::DKIM_SK_PREFIX,
        &request.page,
        &keep,
        from_item,
    )
    .await?;
    Ok(KeyListing { total, page })
}

/// `raw` with a `DKIM-Signature` for the envelope sender's domain prepended, when that domain
/// (or `*`) has a key; `raw` as it is otherwise, and when signing fails (logged: mail still
/// goes out, as unsigned mail would without a key).
pub async fn sign(state: &AppState, envelope_from: &str, raw: &[u8]) -> Vec<u8> {
    let Some(domain) = envelope_from
        .rsplit_once('@')
        .and_then(|(_, d)| names::normalize_domain(d))
    else {
        return raw.to_vec();
    };
    let found = match state
        .table
        .get_many(&[keys::dkim_key(&domain), keys::dkim_key("*")])
        .await
    {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(error = %e, "DKIM keys not read; sent unsigned");
            return raw.to_vec();
        }
    };
    let own = keys::dkim_key(&domain);
    let Some(item) = found
        .iter()
        .find(|i| i.sk == own.sk)
        .or_else(|| found.first())
    else {
        return raw.to_vec();
    };
    let signed = (|| {
        let key = from_item(item)?;
        let pkcs8 = unseal_for(
            &key.private_key,
            &aad(&key.id),
            state.config.secret_key.as_ref(),
        )?;
        let header = signer_header(key.key_type, &pkcs8, &domain, &key.selector, raw)
            .map_err(|e| DomainError::Internal(anyhow::anyhow!("DKIM signing: {e}")))?;
        let mut out = header.into_bytes();
        out.extend_from_slice(raw);
        Ok::<_, DomainError>(out)
    })();
    match signed {
        Ok(out) => out,
        Err(e) => {
            tracing::warn!(domain, error = %e, "DKIM signing failed; sent unsigned");
            raw.to_vec()
        }
    }
}

/// Moves the key of `old` (if any) to `new`, keeping its id, unless `new` has a key of its own;
/// whether it moved (`PUT /addresses/renameDomain`).
pub async fn rename_domain(state: &AppState, old: &str, new: &str) -> DomainResult<bool> {
    let Some(item) = state.table.get(&keys::dkim_key(old)).await? else {
        return Ok(false);
    };
    let mut key = from_item(&item)?;
    key.domain = new.to_string();
    let moved = state
        .table
        .transact(vec![
            Write::put_new(
                Item::new(
                    keys::dkim_key(new),
                    serde_json::to_value(&key).unwrap_or_default(),
                ),
                "dkim key taken",
            ),
            Write::delete(keys::dkim_key(old)),
            Write::put(Item::new(
                keys::dkim_key_id(&key.id),
                json!({ "domain": new }),
            )),
        ])
        .await;
    match moved {
        Ok(()) => Ok(true),
        Err(crate::store::StoreError::ConditionFailed { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
