//! Incoming mail: the one delivery pipeline behind both entry points (the `ingest` Lambda
//! for SES, the LMTP listener of the local server). spec/wildduck-behaviour.md §3 describes
//! WildDuck's pipeline; this module follows it, step by step:
//!
//! 1. **Recipient → user** ([`Delivery::recipient`]): the address claim of the normalized
//!    address, `user+tag@domain` resolving as `user@domain` (sub-addressing). Unknown or
//!    disabled users are refused (LMTP: 550 at RCPT).
//! 2. **Idempotency**: a delivery with a source id (the SES message id) first reads its
//!    delivery record (`DELIVERY#<user>#<hash>`, kept 24 h); a retried invocation finds it and
//!    delivers nothing again. The store itself also carries an idempotency key, so a retry
//!    after a crash between storing and recording stores the message once.
//! 3. **Headers**: `Delivered-To: <recipient>` and `Return-Path: <sender>` are prepended.
//! 4. **Quota**: a message that does not fit is refused for this recipient only (LMTP 552);
//!    the store checks again inside its transaction.
//! 5. **Filters** in creation order, each one matching when all its conditions hold
//!    ([`Filter::matches`]). Forward targets accumulate; every other action is decided by the
//!    first matching filter that has it (an explicit `false` decides too).
//! 6. **Spam**: `spamLevel` 0 makes everything spam, 100 nothing (even against filters, as in
//!    WildDuck); otherwise a spam score (SES's verdict; none over LMTP) at or above the level.
//! 7. **Mailbox and flags**: INBOX; Junk for spam; the filter's mailbox (INBOX when it is
//!    gone); `\Seen` and `\Flagged` from filters. When spam and mailbox are both decided, the
//!    later decision wins (WildDuck applies them in the order they were decided).
//! 8. **Store** through [`messages::store`]: blob, UID, counters, quota, journal (EXISTS),
//!    thread, and the message event STORE with the source and the envelope's from and to.
//!    `delete` drops the message silently instead (the answer is still a success).
//! 9. **Forwards** (filter targets, plus the user's own targets unless the message is
//!    deleted; never for spam, never in a Delivered-To loop), counted against
//!    `limits.forwards` per day; `smtp://` targets are relayed, `http(s)://` targets get the
//!    raw message POSTed with a timeout. Each attempt is a FORWARD message event; a failure is
//!    logged and recorded there, and never loses the message.
//! 10. **Autoreply** (RFC 3834; [`autoreply::suppressed`]): not for spam, automated or list
//!     mail, not to the user's own addresses, once per sender per interval, only inside the
//!     autoreply's start/end. Also for dropped messages, as in WildDuck.
//!
//! WildDuck forwards and replies before storing; Eider stores first, so the outgoing
//! messages and their events can name the stored message.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::autoreply::{self, Autoreply};
use super::filters::{self, Filter, MatchInput, Target, TargetKind};
use super::messages::{self, Envelope, MAX_MESSAGE_SIZE, Upload};
use super::names::normalize_address;
use super::users::{self, StoredUser};
use super::{AppState, DomainError, DomainResult};
use super::{addresses, dkim, domain_access, forwarded, keys, mailboxes, unix_now};
use crate::config::DeliveryConfig;
use crate::id::ObjectId;
use crate::mail::outbound::{OutEnvelope, Outbound, send_smtp, split_host_port};
use crate::mail::parse::{self, ParsedMessage};
use crate::store::{Item, Write};

/// A delivery is remembered this long (a retried SES invocation comes within minutes).
const DELIVERY_RECORD_SECONDS: i64 = 24 * 3600;

/// A resolved recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The address as the envelope named it (lowercased), `+tag` included: it goes into
    /// `Delivered-To`, and autoreplies come from it.
    pub address: String,
    /// The user the address is one of; for a forwarded address, that address's id.
    pub user: ObjectId,
    /// The address is a forwarded address: mail to it is only sent on, never stored.
    pub forwarded: bool,
}

/// Why a recipient is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipientError {
    /// No user has this address.
    Unknown,
    /// The user is disabled.
    Disabled,
}

/// One incoming message, as an entry point hands it over.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// The raw message as received.
    pub raw: &'a [u8],
    /// MAIL FROM; `""` for the null sender.
    pub sender: &'a str,
    /// `LMTP` or `SES`: recorded on the STORE event.
    pub source: &'static str,
    /// A stable id of the message at its source (the SES message id): makes the delivery
    /// idempotent. `None` over LMTP, where two identical messages are two deliveries.
    pub id: Option<&'a str>,
    /// A spam score 0–100 from the source, compared with the user's `spamLevel`.
    pub spam_score: Option<u8>,
}

/// What happened to a message for one recipient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum Outcome {
    /// Stored in `mailbox` with `uid`.
    #[serde(rename_all = "camelCase")]
    Stored {
        id: ObjectId,
        mailbox: ObjectId,
        uid: u32,
    },
    /// A filter said `delete`: dropped silently.
    Dropped { filters: Vec<ObjectId> },
    /// It does not fit into the user's quota.
    OverQuota,
    /// Permanently refused (the user vanished or was disabled, the message is too large).
    Refused { reason: String },
    /// A fault (storage, network): try again later. Never recorded.
    Failed { reason: String },
    /// Sent on to `sent` of a forwarded address's targets (and not stored).
    Forwarded { sent: usize },
}

impl Outcome {
    /// Whether the entry point should retry (LMTP: 4xx; SES: a failed invocation).
    pub fn is_temporary(&self) -> bool {
        matches!(self, Outcome::Failed { .. })
    }
}

/// The delivery pipeline with what it needs: storage, the outbound mailer, settings.
#[derive(Clone)]
pub struct Delivery {
    pub state: AppState,
    pub outbound: Arc<Outbound>,
    pub config: Arc<DeliveryConfig>,
    http: reqwest::Client,
}

fn hex_sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The actions the matching filters decided, in the order they were decided.
#[derive(Debug, Default)]
struct Decision {
    order: Vec<ActionKey>,
    seen: Option<bool>,
    flag: Option<bool>,
    delete: Option<bool>,
    spam: Option<bool>,
    mailbox: Option<ObjectId>,
    targets: Vec<Target>,
    filters: Vec<ObjectId>,
    /// What decided `spam`, for the `WD-Mail-Classification` headers.
    spam_source: Option<SpamSource>,
}

/// What decided whether a message is junk (WildDuck's classification sources).
#[derive(Debug, Clone, PartialEq)]
enum SpamSource {
    /// A domain access rule for the sender's domain.
    DomainAccess { domain: String },
    /// The user's spam level.
    SpamLevel,
    /// A filter, created then.
    Filter { created: DateTime<Utc> },
}

impl SpamSource {
    /// The `WD-Mail-Classification-Source` value.
    fn name(&self) -> &'static str {
        match self {
            SpamSource::DomainAccess { .. } => "user-domainaccess",
            SpamSource::SpamLevel => "user-spamlevel",
            SpamSource::Filter { .. } => "user-filter",
        }
    }

    /// The `WD-Mail-Classification-Info` sentence, WildDuck's wording.
    fn info(&self, junk: bool) -> String {
        match (self, junk) {
            (SpamSource::DomainAccess { domain }, true) => format!(
                "This message was moved to Junk because messages from the sender domain {domain} are blocked for your account. If this is not spam, mark it as Not Junk."
            ),
            (SpamSource::DomainAccess { domain }, false) => format!(
                "This message was marked as not junk because messages from the sender domain {domain} are allowed for your account. If this is spam, move it to Junk."
            ),
            (SpamSource::SpamLevel, true) => "This message was moved to Junk by spam protection rules. If this is not spam, mark it as Not Junk.".into(),
            (SpamSource::SpamLevel, false) => "This message was marked as not junk by spam protection rules. If this is spam, move it to Junk.".into(),
            (SpamSource::Filter { created }, true) => format!(
                "This message was moved to Junk by your mail filter added on {}. If this is not spam, update your filter settings in Webmail.",
                created.format("%Y-%m-%d")
            ),
            (SpamSource::Filter { created }, false) => format!(
                "This message was marked as not junk by your mail filter added on {}. If this is spam, update your filter settings in Webmail.",
                created.format("%Y-%m-%d")
            ),
        }
    }
}

/// The header fields delivery sets itself: any the sender put in are removed first.
const CLASSIFICATION_HEADERS: [&str; 3] = [
    "WD-Mail-Classification",
    "WD-Mail-Classification-Source",
    "WD-Mail-Classification-Info",
];

/// `prepared` with the classification headers set (after `Delivered-To` and `Return-Path`,
/// any copies the message carried removed), when something decided spam.
fn classified(prepared: bytes::Bytes, decision: &Decision) -> bytes::Bytes {
    let Some(source) = &decision.spam_source else {
        return prepared;
    };
    let junk = decision.is_spam();
    let fields = [
        if junk {
            "junk".to_string()
        } else {
            "not-junk".to_string()
        },
        source.name().to_string(),
        source.info(junk),
    ];
    let mut out = Vec::with_capacity(prepared.len() + 400);
    // The two lines `prepare` put first stay first.
    let mut rest: &[u8] = &prepared;
    for _ in 0..2 {
        if let Some(end) = rest.windows(2).position(|w| w == b"\r\n") {
            out.extend_from_slice(&rest[..end + 2]);
            rest = &rest[end + 2..];
        }
    }
    for (name, value) in CLASSIFICATION_HEADERS.iter().zip(&fields) {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(&crate::mail::parse::without_header_fields(
        rest,
        &CLASSIFICATION_HEADERS,
    ));
    bytes::Bytes::from(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ActionKey {
    Seen,
    Flag,
    Delete,
    Spam,
    Mailbox,
}

impl Decision {
    /// Takes a matching filter's actions: the first decision per action wins.
    fn take(&mut self, filter: &Filter) {
        self.filters.push(filter.id);
        let a = &filter.action;
        for (key, value) in [
            (ActionKey::Seen, a.seen),
            (ActionKey::Flag, a.flag),
            (ActionKey::Delete, a.delete),
            (ActionKey::Spam, a.spam),
        ] {
            let slot = match key {
                ActionKey::Seen => &mut self.seen,
                ActionKey::Flag => &mut self.flag,
                ActionKey::Delete => &mut self.delete,
                _ => &mut self.spam,
            };
            if let Some(v) = value
                && slot.is_none()
            {
                *slot = Some(v);
                self.order.push(key);
                if key == ActionKey::Spam {
                    self.spam_source = Some(SpamSource::Filter {
                        created: filter.created,
                    });
                }
            }
        }
        for target in &a.targets {
            if self.targets.iter().all(|t| t.value != target.value) {
                self.targets.push(target.clone());
            }
        }
        if let Some(mailbox) = a.mailbox
            && self.mailbox.is_none()
        {
            self.mailbox = Some(mailbox);
            self.order.push(ActionKey::Mailbox);
        }
    }

    /// Decides spam ahead of every filter (a domain access rule for `domain`): no filter
    /// changes it.
    fn decide_spam(&mut self, spam: bool, domain: &str) {
        self.spam = Some(spam);
        self.order.push(ActionKey::Spam);
        self.spam_source = Some(SpamSource::DomainAccess {
            domain: domain.to_string(),
        });
    }

    /// The user's spam level against the source's score (§3 step 6).
    fn apply_spam_level(&mut self, level: u8, score: Option<u8>) {
        let decided = self.spam.is_some();
        // Today's WildDuck: the level only fills in an undecided verdict (100 no longer
        // overrides a filter's or a domain rule's junk).
        match level {
            _ if decided => {}
            0 => self.spam = Some(true),
            100 => self.spam = Some(false),
            _ if score.unwrap_or(0) >= level.max(1) => self.spam = Some(true),
            _ => {}
        }
        if !decided && self.spam.is_some() {
            self.order.push(ActionKey::Spam);
            self.spam_source = Some(SpamSource::SpamLevel);
        }
    }

    fn is_spam(&self) -> bool {
        self.spam == Some(true)
    }
}

/// 100 (certainly spam) when one of `spam_headers` says `yes` (`X-Rspamd-Spam: Yes`,
/// `X-Spam-Flag: YES`, `X-Spam-Status: Yes, score=...`): an upstream filter's verdict.
fn spam_header_score(headers: &[(String, String)], spam_headers: &[String]) -> Option<u8> {
    headers
        .iter()
        .any(|(name, value)| {
            spam_headers.iter().any(|h| h.eq_ignore_ascii_case(name))
                && value.trim_start().to_ascii_lowercase().starts_with("yes")
        })
        .then_some(100)
}

impl Delivery {
    pub fn new(state: AppState, outbound: Outbound, config: DeliveryConfig) -> Delivery {
        Delivery {
            state,
            outbound: Arc::new(outbound),
            config: Arc::new(config),
            // As reqwest::Client::new(), with Eider's TLS configuration (crate::tls).
            http: reqwest::Client::builder()
                .use_preconfigured_tls(crate::tls::client_config().as_ref().clone())
                .build()
                .expect("an HTTP client with a rustls configuration"),
        }
    }

    /// Resolves an envelope recipient: the exact address, then without its `+tag`.
    pub async fn recipient(
        &self,
        address: &str,
    ) -> DomainResult<Result<Recipient, RecipientError>> {
        let address = address.trim().trim_matches(['<', '>']).to_lowercase();
        // Addresses never carry a `+` (aliases refuse it, main addresses drop the label),
        // so the exact lookup and the sub-address lookup are one claim read: the label is
        // stripped by the normalization and the claim of `user@domain` answers.
        // Delivery takes wildcard addresses and alias domains (WildDuck's MX order).
        let user = match addresses::lookup(&self.state, &address, true).await? {
            Some(addresses::Resolved::User { user, .. }) => user,
            Some(addresses::Resolved::Forwarded { id }) => {
                return match forwarded::load(&self.state, &id).await {
                    Ok(f) if f.forwarded_disabled => Ok(Err(RecipientError::Disabled)),
                    Ok(_) => Ok(Ok(Recipient {
                        address,
                        user: id,
                        forwarded: true,
                    })),
                    Err(DomainError::AddressNotFound(_)) => Ok(Err(RecipientError::Unknown)),
                    Err(e) => Err(e),
                };
            }
            None => return Ok(Err(RecipientError::Unknown)),
        };
        let owner = match users::load(&self.state, &user).await {
            Ok(owner) => owner,
            Err(DomainError::UserNotFound(_)) => return Ok(Err(RecipientError::Unknown)),
            Err(e) => return Err(e),
        };
        if owner.user.disabled {
            return Ok(Err(RecipientError::Disabled));
        }
        Ok(Ok(Recipient {
            address,
            user,
            forwarded: false,
        }))
    }

    /// Whether `size` more bytes fit into the recipient's quota (a check before DATA when
    /// the client announced a SIZE).
    pub async fn fits(&self, recipient: &Recipient, size: u64) -> DomainResult<bool> {
        if recipient.forwarded {
            return Ok(true); // nothing is stored
        }
        let owner = users::load(&self.state, &recipient.user).await?;
        Ok(owner.storage_used + size as i64 <= messages::allowed_storage(&self.state, &owner))
    }

    /// Delivers one message to one recipient. Never fails: faults come back as
    /// [`Outcome::Failed`] (and are logged).
    pub async fn deliver(&self, incoming: &Incoming<'_>, recipient: &Recipient) -> Outcome {
        match self.try_deliver(incoming, recipient).await {
            Ok(outcome) => {
                tracing::info!(
                    user = %recipient.user,
                    source = incoming.source,
                    outcome = ?outcome,
                    "delivered"
                );
                outcome
            }
            Err(e) => {
                tracing::error!(
                    user = %recipient.user,
                    source = incoming.source,
                    error = format!("{e:#}"),
                    "delivery failed"
                );
                Outcome::Failed {
                    reason: e.public_message(),
                }
            }
        }
    }

    /// The outcome of an earlier delivery of the message with source id `id`, if any.
    pub async fn already(&self, id: &str, recipient: &Recipient) -> DomainResult<Option<Outcome>> {
        let key = record_key(id, recipient);
        Ok(self
            .state
            .table
            .get(&key)
            .await?
            .and_then(|item| serde_json::from_value(item.body["result"].clone()).ok()))
    }

    async fn try_deliver(
        &self,
        incoming: &Incoming<'_>,
        recipient: &Recipient,
    ) -> DomainResult<Outcome> {
        let state = &self.state;
        let user = recipient.user;
        let record = incoming.id.map(|id| record_key(id, recipient));
        if let Some(id) = incoming.id
            && let Some(done) = self.already(id, recipient).await?
        {
            tracing::info!(user = %user, "already delivered; nothing to do");
            return Ok(done);
        }
        let outcome = self.run(incoming, recipient).await?;
        if let Some(key) = record
            && !outcome.is_temporary()
        {
            let item = Item::new(key, json!({ "result": outcome, "time": Utc::now() }))
                .with_expiry(unix_now() + DELIVERY_RECORD_SECONDS);
            if let Err(e) = state.table.transact(vec![Write::put(item)]).await {
                // The store's idempotency key still keeps a retry from storing it twice.
                tracing::warn!(error = %e, "delivery record not written");
            }
        }
        Ok(outcome)
    }

    async fn run(&self, incoming: &Incoming<'_>, recipient: &Recipient) -> DomainResult<Outcome> {
        super::settings::refresh_if_stale(&self.state).await;
        if recipient.forwarded {
            return self.forward_only(incoming, recipient).await;
        }
        let state = &self.state;
        let user = recipient.user;
        let owner = match users::load(state, &user).await {
            Ok(owner) => owner,
            Err(DomainError::UserNotFound(_)) => {
                return Ok(Outcome::Refused {
                    reason: "unknown user".into(),
                });
            }
            Err(e) => return Err(e),
        };
        if owner.user.disabled {
            return Ok(Outcome::Refused {
                reason: "mailbox disabled".into(),
            });
        }
        let prepared = prepare(recipient, incoming);
        if prepared.len() > MAX_MESSAGE_SIZE {
            return Ok(Outcome::Refused {
                reason: "message too large".into(),
            });
        }
        // Shared by each copy stored (filters may store it again after a full folder).
        let prepared = bytes::Bytes::from(prepared);
        let size = prepared.len() as u64;
        if owner.storage_used + size as i64 > messages::allowed_storage(state, &owner) {
            return Ok(Outcome::OverQuota);
        }
        let parsed = parse::parse(&prepared);
        let input = MatchInput::of(&parsed, size);
        let filters = filters::active(state, &user).await.unwrap_or_else(|e| {
            // WildDuck delivers without filters when they can't be read; so does Eider.
            tracing::warn!(user = %user, error = %e, "filters not read");
            Vec::new()
        });
        let mut decision = Decision::default();
        // The sender's domain on the user's tags' access lists decides spam first, for good.
        if let Some((access, domain)) = self.domain_access(&owner, &parsed).await {
            decision.decide_spam(access == domain_access::Access::Block, &domain);
        }
        for filter in &filters {
            if filter.matches(&input) {
                decision.take(filter);
            }
        }
        let score = incoming.spam_score.max(spam_header_score(
            &parsed.headers,
            &self.config.spam_headers,
        ));
        decision.apply_spam_level(owner.user.spam_level, score);
        let prepared = classified(prepared, &decision);

        let (outcome, stored_id) = if decision.delete == Some(true) {
            let filters = decision.filters.clone();
            (Outcome::Dropped { filters }, None)
        } else {
            match self
                .store(incoming, recipient, &prepared, &decision)
                .await?
            {
                Outcome::Stored { id, mailbox, uid } => {
                    (Outcome::Stored { id, mailbox, uid }, Some(id))
                }
                other => return Ok(other),
            }
        };

        let mut events = self
            .forward(&owner, recipient, incoming, &prepared, &parsed, &decision)
            .await;
        events.extend(
            self.autoreply(&owner, recipient, incoming, &parsed, &decision, stored_id)
                .await,
        );
        if let Some(id) = stored_id
            && !events.is_empty()
        {
            let writes: Vec<Write> = events
                .into_iter()
                .map(|e| {
                    Write::put(Item::new(
                        keys::message_event(&user, &id, &ObjectId::new()),
                        e,
                    ))
                })
                .collect();
            for chunk in writes.chunks(crate::store::MAX_TRANSACTION_WRITES) {
                if let Err(e) = state.table.transact(chunk.to_vec()).await {
                    tracing::warn!(error = %e, message = %id, "message events not written");
                }
            }
        }
        Ok(outcome)
    }

    /// The access list rule for the sender's domain (the first From address, else Sender) on
    /// the user's tags; `None` without tags, a rule or a readable list (delivery goes on).
    async fn domain_access(
        &self,
        owner: &StoredUser,
        parsed: &ParsedMessage,
    ) -> Option<(domain_access::Access, String)> {
        if owner.user.tags.is_empty() {
            return None;
        }
        let (_, domain) = parsed.from.as_ref()?.address.rsplit_once('@')?;
        match domain_access::verdict(&self.state, &owner.user.tags, domain).await {
            Ok(verdict) => verdict.map(|v| (v, domain.to_string())),
            Err(e) => {
                tracing::warn!(user = %owner.user.id, error = %e, "domain access lists not read");
                None
            }
        }
    }

    /// Stores the prepared message where the decision puts it.
    async fn store(
        &self,
        incoming: &Incoming<'_>,
        recipient: &Recipient,
        prepared: &bytes::Bytes,
        decision: &Decision,
    ) -> DomainResult<Outcome> {
        let user = recipient.user;
        let boxes = mailboxes::load_all(&self.state, &user).await?;
        let inbox = boxes
            .iter()
            .find(|m| m.mailbox.path == "INBOX")
            .map(|m| m.mailbox.id)
            .ok_or_else(|| DomainError::Internal(anyhow::anyhow!("user {user} has no INBOX")))?;
        let mut target = inbox;
        for key in &decision.order {
            match key {
                ActionKey::Spam if decision.is_spam() => {
                    if let Some(junk) = boxes.iter().find(|m| m.is_special("\\Junk")) {
                        target = junk.mailbox.id;
                    }
                }
                ActionKey::Mailbox => {
                    let wanted = decision.mailbox.unwrap_or(inbox);
                    target = if boxes.iter().any(|m| m.mailbox.id == wanted) {
                        wanted
                    } else {
                        inbox
                    };
                }
                _ => {}
            }
        }
        let mut mailbox = target;
        loop {
            let upload = Upload {
                raw: prepared.clone(),
                seen: decision.seen == Some(true),
                flagged: decision.flag == Some(true),
                source: incoming.source,
                envelope: Some(Envelope {
                    from: incoming.sender.to_string(),
                    to: recipient.address.clone(),
                }),
                filters: decision.filters.clone(),
                idempotency_key: incoming
                    .id
                    .map(|id| format!("delivery:{id}:{}", recipient.address)),
                ..Default::default()
            };
            return match messages::store(&self.state, &user, &mailbox, upload).await {
                Ok(stored) => Ok(Outcome::Stored {
                    id: stored.id,
                    mailbox: stored.mailbox,
                    uid: stored.uid,
                }),
                Err(DomainError::OverQuota) => Ok(Outcome::OverQuota),
                // The filter's mailbox was deleted meanwhile: INBOX, as WildDuck does.
                Err(DomainError::MailboxNotFound(_)) if mailbox != inbox => {
                    mailbox = inbox;
                    continue;
                }
                Err(e @ (DomainError::UserNotFound(_) | DomainError::UserDisabled)) => {
                    Ok(Outcome::Refused {
                        reason: e.to_string(),
                    })
                }
                Err(e) => Err(e),
            };
        }
    }

    /// Forwards to the filters' targets and the user's own (§3 step 7); returns the FORWARD
    /// events.
    async fn forward(
        &self,
        owner: &StoredUser,
        recipient: &Recipient,
        incoming: &Incoming<'_>,
        prepared: &[u8],
        parsed: &ParsedMessage,
        decision: &Decision,
    ) -> Vec<Value> {
        let mut targets = decision.targets.clone();
        if decision.delete != Some(true) {
            for value in &owner.user.targets {
                if let Some(t) = Target::parse(value)
                    && targets.iter().all(|o| o.value != t.value)
                {
                    targets.push(t);
                }
            }
        }
        if targets.is_empty() {
            return Vec::new();
        }
        let now = Utc::now();
        let skipped = |reason: &str| -> Vec<Value> {
            tracing::info!(user = %recipient.user, reason, "not forwarded");
            vec![json!({ "action": "FORWARD", "time": now, "skipped": reason,
                         "targets": targets.iter().map(|t| t.value.clone()).collect::<Vec<_>>() })]
        };
        if decision.is_spam() {
            return skipped("spam is never forwarded");
        }
        if in_a_loop(parsed, recipient) {
            return skipped("forwarding loop (Delivered-To)");
        }
        match self.count_forwards(owner, targets.len()).await {
            Ok(true) => {}
            Ok(false) => return skipped("daily forwards limit reached"),
            Err(e) => {
                tracing::warn!(error = %e, "forwards counter not updated; forwarding anyway");
            }
        }
        let mut events = Vec::new();
        for target in &targets {
            let result = self
                .send_to_target(target, recipient, incoming, prepared)
                .await;
            let mut event = json!({ "action": "FORWARD", "time": Utc::now(),
                                    "type": target.kind, "target": target.value });
            match result {
                Ok(id) => event["result"] = json!(id),
                Err(e) => {
                    tracing::warn!(user = %recipient.user, target = %target.value, error = format!("{e:#}"), "forward failed");
                    event["error"] = json!(format!("{e:#}"));
                }
            }
            events.push(event);
        }
        events
    }

    /// Mail to a forwarded address: sent on to each of its targets within its daily forwards
    /// limit, never stored. A temporary failure (the sender retries) when the limit is used
    /// up or no target took it; a loop or spam is refused.
    async fn forward_only(
        &self,
        incoming: &Incoming<'_>,
        recipient: &Recipient,
    ) -> DomainResult<Outcome> {
        let address = match forwarded::load(&self.state, &recipient.user).await {
            Ok(address) => address,
            Err(DomainError::AddressNotFound(_)) => {
                return Ok(Outcome::Refused {
                    reason: "unknown recipient".into(),
                });
            }
            Err(e) => return Err(e),
        };
        if address.forwarded_disabled {
            return Ok(Outcome::Refused {
                reason: "forwarding disabled".into(),
            });
        }
        if incoming.spam_score.is_some_and(|score| score >= 100) {
            return Ok(Outcome::Refused {
                reason: "spam is never forwarded".into(),
            });
        }
        let prepared = prepare(recipient, incoming);
        let parsed = parse::parse_for_display(&prepared);
        if in_a_loop(&parsed, recipient) {
            return Ok(Outcome::Refused {
                reason: "forwarding loop (Delivered-To)".into(),
            });
        }
        if address.targets.is_empty() {
            return Ok(Outcome::Refused {
                reason: "the address has no targets".into(),
            });
        }
        if !forwarded::count_forwards(&self.state, &address, address.targets.len()).await? {
            return Ok(Outcome::Failed {
                reason: "daily forwards limit reached".into(),
            });
        }
        let mut sent = 0;
        for target in &address.targets {
            match self
                .send_to_target(target, recipient, incoming, &prepared)
                .await
            {
                Ok(result) => {
                    sent += 1;
                    tracing::info!(forwarded = %address.id, target = %target.value, result, "forwarded");
                }
                Err(e) => {
                    tracing::warn!(forwarded = %address.id, target = %target.value, error = format!("{e:#}"), "forward failed")
                }
            }
        }
        if sent == 0 {
            // Nothing went out: give the forwards back and let the sender retry.
            if let Err(e) =
                forwarded::return_forwards(&self.state, &address, address.targets.len()).await
            {
                tracing::warn!(error = %e, "forwards not given back");
            }
            return Ok(Outcome::Failed {
                reason: "no forward target took the message".into(),
            });
        }
        self.forwarded_autoreply(&address, recipient, incoming, &parsed)
            .await;
        Ok(Outcome::Forwarded { sent })
    }

    /// The autoreply of a forwarded address (WildDuck leaves it to its MX plugin): the same
    /// rules as a user's (RFC 3834, once per sender per interval, never to itself).
    async fn forwarded_autoreply(
        &self,
        address: &forwarded::ForwardedAddress,
        recipient: &Recipient,
        incoming: &Incoming<'_>,
        parsed: &ParsedMessage,
    ) {
        let reply = &address.autoreply;
        let settings = Autoreply {
            id: address.id,
            user: address.id,
            status: reply.status,
            name: reply.name.clone(),
            subject: reply.subject.clone(),
            text: reply.text.clone(),
            html: reply.html.clone(),
            start: reply.start,
            end: reply.end,
            created: address.created,
        };
        if !settings.active_at(Utc::now()) {
            return;
        }
        let sender = incoming.sender.trim().to_lowercase();
        if autoreply::suppressed(&sender, &parsed.headers).is_some()
            || normalize_address(&sender, true).map(|a| a.addrview).ok()
                == Some(address.addrview.clone())
        {
            return;
        }
        if let Some(event) = self
            .send_autoreply(&settings, &address.name, recipient, &sender, parsed, None)
            .await
            && let Some(error) = event.get("error")
        {
            tracing::warn!(forwarded = %address.id, %error, "forwarded address autoreply not sent");
        }
    }

    /// Counts `n` forwards against the user's daily limit; false (and nothing counted) when
    /// they don't fit.
    async fn count_forwards(&self, owner: &StoredUser, n: usize) -> DomainResult<bool> {
        let limit = match owner.user.limits.forwards {
            0 => self.state.config.max_forwards(),
            set => set,
        };
        forwarded::count_daily(&self.state, &format!("fwd:{}", owner.user.id), n, limit).await
    }

    async fn send_to_target(
        &self,
        target: &Target,
        recipient: &Recipient,
        incoming: &Incoming<'_>,
        prepared: &[u8],
    ) -> anyhow::Result<String> {
        match target.kind {
            TargetKind::Mail => {
                let from = if self.outbound.needs_own_sender() {
                    recipient.address.clone()
                } else {
                    incoming.sender.to_string()
                };
                let envelope = OutEnvelope {
                    from,
                    to: vec![target.value.clone()],
                };
                let signed = dkim::sign(&self.state, &envelope.from, prepared).await;
                self.outbound.send(&envelope, &signed).await
            }
            TargetKind::Relay => {
                let url = url::Url::parse(&target.value)?;
                if url.scheme().eq_ignore_ascii_case("smtps") {
                    anyhow::bail!("smtps relays are not supported (plain smtp:// only)");
                }
                let host = url.host_str().unwrap_or_default();
                let (host, port) = split_host_port(host, url.port().unwrap_or(25))?;
                let envelope = OutEnvelope {
                    from: incoming.sender.to_string(),
                    to: vec![recipient.address.clone()],
                };
                let signed = dkim::sign(&self.state, &envelope.from, prepared).await;
                send_smtp(&host, url.port().unwrap_or(port), &envelope, &signed).await
            }
            TargetKind::Http => {
                let answer = self
                    .http
                    .post(&target.value)
                    .header("content-type", "message/rfc822")
                    .timeout(self.config.target_url_timeout)
                    .body(prepared.to_vec())
                    .send()
                    .await?;
                let status = answer.status();
                if !status.is_success() {
                    anyhow::bail!("{} answered {status}", url_host(&target.value));
                }
                Ok(format!("HTTP {}", status.as_u16()))
            }
        }
    }

    /// Sends the autoreply if every rule allows it; returns its AUTOREPLY event.
    async fn autoreply(
        &self,
        owner: &StoredUser,
        recipient: &Recipient,
        incoming: &Incoming<'_>,
        parsed: &ParsedMessage,
        decision: &Decision,
        stored: Option<ObjectId>,
    ) -> Option<Value> {
        if !owner.user.autoreply || decision.is_spam() {
            return None;
        }
        let sender = incoming.sender.trim().to_lowercase();
        if let Some(reason) = autoreply::suppressed(&sender, &parsed.headers) {
            tracing::debug!(user = %recipient.user, reason, "no autoreply");
            return None;
        }
        match self.is_own_address(&sender, recipient).await {
            Ok(false) => {}
            Ok(true) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "autoreply skipped: sender not resolved");
                return None;
            }
        }
        let settings = match autoreply::load(&self.state, &recipient.user).await {
            Ok(Some(s)) if s.active_at(Utc::now()) => s,
            Ok(_) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "autoreply settings not read");
                return None;
            }
        };
        let name = owner.user.name.clone().unwrap_or_default();
        self.send_autoreply(&settings, &name, recipient, &sender, parsed, stored)
            .await
    }

    /// Sends an autoreply to `sender` once per interval (the mark is claimed first); returns
    /// its AUTOREPLY event. `name` is the From name when the settings give none.
    async fn send_autoreply(
        &self,
        settings: &Autoreply,
        name: &str,
        recipient: &Recipient,
        sender: &str,
        parsed: &ParsedMessage,
        stored: Option<ObjectId>,
    ) -> Option<Value> {
        let sender = sender.to_string();
        match autoreply::claim_reply(
            &self.state,
            &recipient.user,
            &sender,
            self.config.autoreply_interval,
        )
        .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(user = %recipient.user, "sender already got an autoreply");
                return None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "autoreply skipped: mark not written");
                return None;
            }
        }
        let mut event = json!({ "action": "AUTOREPLY", "time": Utc::now(), "to": sender });
        let result = match build_reply(settings, name, recipient, &sender, parsed, stored) {
            Ok(raw) => match self.recipient(&sender).await {
                // A sender who is a user here gets the reply directly, as WildDuck's MTA
                // delivers it; it is auto-submitted, so it starts no autoreply of its own.
                Ok(Ok(local)) => {
                    let incoming = Incoming {
                        raw: &raw,
                        sender: "",
                        source: "API",
                        id: None,
                        spam_score: None,
                    };
                    match Box::pin(self.deliver(&incoming, &local)).await {
                        Outcome::Stored { id, .. } => Ok(format!("delivered as {id}")),
                        other => Err(anyhow::anyhow!("local delivery: {other:?}")),
                    }
                }
                _ => {
                    let envelope = OutEnvelope {
                        from: String::new(),
                        to: vec![sender.clone()],
                    };
                    // The null sender has no domain: signed for the reply's From.
                    let signed = dkim::sign(&self.state, &recipient.address, &raw).await;
                    self.outbound.send(&envelope, &signed).await
                }
            },
            Err(e) => Err(e),
        };
        match result {
            Ok(id) => event["result"] = json!(id),
            Err(e) => {
                tracing::warn!(user = %recipient.user, error = format!("{e:#}"), "autoreply not sent");
                event["error"] = json!(format!("{e:#}"));
            }
        }
        Some(event)
    }

    /// Whether `sender` is the recipient or another address of the same user: never reply
    /// to ourselves.
    async fn is_own_address(&self, sender: &str, recipient: &Recipient) -> DomainResult<bool> {
        let view = |a: &str| normalize_address(a, true).map(|n| n.addrview).ok();
        if view(sender).is_some() && view(sender) == view(&recipient.address) {
            return Ok(true);
        }
        Ok(addresses::resolve(&self.state, sender)
            .await?
            .is_some_and(|(user, _)| user == recipient.user))
    }
}

/// The message as delivered to `recipient`: `Delivered-To` and `Return-Path` put first.
fn prepare(recipient: &Recipient, incoming: &Incoming<'_>) -> Vec<u8> {
    let mut prepared = format!(
        "Delivered-To: {}\r\nReturn-Path: <{}>\r\n",
        recipient.address, incoming.sender
    )
    .into_bytes();
    prepared.extend_from_slice(incoming.raw);
    prepared
}

/// Whether a prepared copy already passed `recipient` once (its `Delivered-To` twice): then
/// forwarding it again would loop.
fn in_a_loop(parsed: &ParsedMessage, recipient: &Recipient) -> bool {
    parsed
        .headers
        .iter()
        .filter(|(n, v)| {
            n.eq_ignore_ascii_case("delivered-to")
                && v.trim().eq_ignore_ascii_case(&recipient.address)
        })
        .count()
        > 1
}

/// The delivery record of source id `id` for `recipient`.
fn record_key(id: &str, recipient: &Recipient) -> crate::store::Key {
    keys::delivery(
        &recipient.user,
        &hex_sha256(&format!("{id}\n{}", recipient.address)),
    )
}

fn url_host(value: &str) -> String {
    url::Url::parse(value)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default()
}

/// The autoreply message (§3 step 8): from the address the mail was sent to, `Auto:` subject,
/// `Auto-Submitted: auto-replied`, `In-Reply-To` and `References` to the original.
fn build_reply(
    settings: &Autoreply,
    fallback_name: &str,
    recipient: &Recipient,
    sender: &str,
    parsed: &ParsedMessage,
    stored: Option<ObjectId>,
) -> anyhow::Result<Vec<u8>> {
    use mail_builder::MessageBuilder;
    use mail_builder::headers::raw::Raw;
    let name = if settings.name.is_empty() {
        fallback_name.to_string()
    } else {
        settings.name.clone()
    };
    let subject = if settings.subject.is_empty() {
        format!("Auto: Re: {}", parsed.subject)
    } else {
        format!("Auto: {}", settings.subject)
    };
    let domain = recipient.address.rsplit('@').next().unwrap_or("localhost");
    let original = parsed
        .message_id
        .trim()
        .trim_matches(['<', '>'])
        .to_string();
    let mut references: Vec<String> = parsed
        .references
        .iter()
        .map(|r| r.trim_matches(['<', '>']).to_string())
        .filter(|r| !r.is_empty() && *r != original)
        .collect();
    references.push(original.clone());
    let mut builder = MessageBuilder::new()
        .from((name, recipient.address.clone()))
        .to(sender.to_string())
        .subject(subject)
        .message_id(format!("{}@{domain}", ObjectId::new()))
        .in_reply_to(original)
        .references(references)
        .header("Auto-Submitted", Raw::new("auto-replied"));
    if let Some(id) = stored {
        builder = builder.header("X-WD-Autoreply-For", Raw::new(id.to_string()));
    }
    if !settings.html.is_empty() {
        builder = builder.html_body(settings.html.clone());
    }
    if !settings.text.is_empty() || settings.html.is_empty() {
        builder = builder.text_body(settings.text.clone());
    }
    Ok(builder.write_to_vec()?)
}

// ---------------------------------------------------------------------------------------------
// Sending submitted mail

/// Submitted mail (`domain::outgoing`) goes through the same pipeline: a recipient who is a
/// user here gets it delivered directly (filters, autoreply, quota, journal; no SMTP loop),
/// once even when the queue retries (the queue id is the delivery id); everyone else gets it
/// from the outbound mailer in one send.
#[async_trait::async_trait]
impl super::outgoing::Dispatcher for Delivery {
    async fn dispatch(
        &self,
        mail: &super::outgoing::Dispatch<'_>,
    ) -> Vec<super::outgoing::Delivered> {
        use super::outgoing::{Delivered, DeliveryStatus};
        let now = Utc::now();
        let result = |recipient: &str, status: DeliveryStatus, response: String| Delivered {
            recipient: recipient.to_string(),
            status,
            response,
            time: now,
        };
        let id = mail.queue_id.to_string();
        let mut results = Vec::new();
        let mut external = Vec::new();
        for address in mail.recipients {
            match self.recipient(address).await {
                Ok(Ok(recipient)) => {
                    let incoming = Incoming {
                        raw: mail.raw,
                        sender: mail.from,
                        source: "API",
                        id: Some(&id),
                        spam_score: None,
                    };
                    let (status, response) = match self.deliver(&incoming, &recipient).await {
                        Outcome::Stored { mailbox, uid, .. } => (
                            DeliveryStatus::Delivered,
                            format!("250 stored in {mailbox} as {uid}"),
                        ),
                        Outcome::Dropped { .. } => {
                            (DeliveryStatus::Delivered, "250 dropped by a filter".into())
                        }
                        Outcome::OverQuota => (
                            DeliveryStatus::Rejected,
                            "552 the recipient is over quota".into(),
                        ),
                        Outcome::Refused { reason } => {
                            (DeliveryStatus::Rejected, format!("550 {reason}"))
                        }
                        Outcome::Failed { reason } => {
                            (DeliveryStatus::Deferred, format!("451 {reason}"))
                        }
                        Outcome::Forwarded { sent } => (
                            DeliveryStatus::Delivered,
                            format!("250 forwarded to {sent} target(s)"),
                        ),
                    };
                    results.push(result(address, status, response));
                }
                Ok(Err(RecipientError::Disabled)) => results.push(result(
                    address,
                    DeliveryStatus::Rejected,
                    "550 the recipient's account is disabled".into(),
                )),
                Ok(Err(RecipientError::Unknown)) if self.is_local_domain(address) => {
                    results.push(result(
                        address,
                        DeliveryStatus::Rejected,
                        "550 no such user here".into(),
                    ))
                }
                Ok(Err(RecipientError::Unknown)) => external.push(address.clone()),
                Err(e) => results.push(result(
                    address,
                    DeliveryStatus::Deferred,
                    format!("451 {}", e.public_message()),
                )),
            }
        }
        if !external.is_empty() {
            // SES sends only for verified senders: a foreign MAIL FROM becomes the user's own.
            let from = if self.outbound.needs_own_sender() && !self.is_local_domain(mail.from) {
                match users::load(&self.state, mail.user).await {
                    Ok(owner) => owner.user.address.unwrap_or_default(),
                    Err(_) => mail.from.to_string(),
                }
            } else {
                mail.from.to_string()
            };
            let envelope = OutEnvelope {
                from,
                to: external.clone(),
            };
            let signed = dkim::sign(&self.state, &envelope.from, mail.raw).await;
            let (status, response) = match self.outbound.send(&envelope, &signed).await {
                Ok(id) => (DeliveryStatus::Delivered, format!("250 {id}")),
                Err(e) => (DeliveryStatus::Deferred, format!("451 {e:#}")),
            };
            for address in &external {
                results.push(result(address, status, response.clone()));
            }
        }
        results
    }
}

impl Delivery {
    /// Whether `address` is at this deployment's mail domain (`EIDER_DOMAIN`).
    fn is_local_domain(&self, address: &str) -> bool {
        address
            .rsplit_once('@')
            .is_some_and(|(_, domain)| domain.eq_ignore_ascii_case(&self.state.config.domain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::filters::{FilterAction, FilterQuery};

    fn filter(action: FilterAction) -> Filter {
        Filter {
            id: ObjectId::new(),
            user: ObjectId::new(),
            name: String::new(),
            query: FilterQuery::default(),
            action,
            disabled: false,
            meta_data: None,
            created: Utc::now(),
        }
    }

    #[test]
    fn the_first_matching_filter_decides_each_action_and_targets_accumulate() {
        let junk_then_folder = ObjectId::new();
        let mut d = Decision::default();
        d.take(&filter(FilterAction {
            seen: Some(false),
            spam: Some(true),
            targets: vec![Target::parse("a@example.com").unwrap()],
            ..Default::default()
        }));
        d.take(&filter(FilterAction {
            seen: Some(true),
            flag: Some(true),
            mailbox: Some(junk_then_folder),
            targets: vec![
                Target::parse("a@example.com").unwrap(),
                Target::parse("b@example.com").unwrap(),
            ],
            ..Default::default()
        }));
        assert_eq!(d.seen, Some(false));
        assert_eq!(d.flag, Some(true));
        assert_eq!(d.spam, Some(true));
        assert_eq!(d.mailbox, Some(junk_then_folder));
        assert_eq!(d.targets.len(), 2);
        assert_eq!(
            d.order,
            [
                ActionKey::Seen,
                ActionKey::Spam,
                ActionKey::Flag,
                ActionKey::Mailbox
            ]
        );
        assert_eq!(d.filters.len(), 2);
    }

    #[test]
    fn spam_levels_fill_in_an_undecided_verdict_as_todays_wildduck() {
        let mut d = Decision::default();
        d.apply_spam_level(0, None);
        assert!(d.is_spam());
        assert_eq!(d.spam_source, Some(SpamSource::SpamLevel));
        let mut d = Decision::default();
        d.apply_spam_level(100, Some(100));
        assert_eq!(d.spam, Some(false));
        // A filter's verdict stands (WildDuck 1.45 let level 100 override it; today's does not).
        let mut d = Decision::default();
        d.take(&filter(FilterAction {
            spam: Some(true),
            ..Default::default()
        }));
        d.apply_spam_level(100, None);
        assert!(d.is_spam());
        assert!(matches!(d.spam_source, Some(SpamSource::Filter { .. })));
        let mut d = Decision::default();
        d.apply_spam_level(50, Some(75));
        assert!(d.is_spam());
        let mut d = Decision::default();
        d.apply_spam_level(50, None);
        assert_eq!(d.spam, None);
    }
}
