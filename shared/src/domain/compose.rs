//! Composing a message from fields, WildDuck's way, for `POST .../messages` without `raw` and
//! for submissions: the sender checked against the user's addresses, a reply or forward
//! built from the message it refers to (`In-Reply-To`, `References`, `Re: `/`Fwd: `, its
//! recipients, its attachments), storage files and `data:` images attached, text made from
//! HTML when only HTML is given.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use regex_lite::Regex;

use super::addresses;
use super::messages::{self, DraftInfo, Message, Reference, ReferenceAction};
use super::storage;
use super::users::StoredUser;
use super::{AppState, DomainError, DomainResult};
use crate::id::ObjectId;
use crate::mail::compose::{self, Compose, FilePart, MailAddress};

/// An attachment given inline in the request (`attachments`).
#[derive(Debug, Clone, Default)]
pub struct NewAttachment {
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub content: Vec<u8>,
    pub cid: Option<String>,
    /// `contentDisposition: inline`.
    pub inline: bool,
}

/// What a reply or forward refers to, as requested.
#[derive(Debug, Clone)]
pub struct ReferenceRequest {
    pub mailbox: ObjectId,
    pub uid: u32,
    pub action: ReferenceAction,
    /// Copy the original's attachments: all (`true`), or the listed `ATT…` ids.
    pub attachments: AttachmentCopy,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub enum AttachmentCopy {
    #[default]
    None,
    All,
    Listed(Vec<String>),
}

/// The fields of a composed message.
#[derive(Debug, Clone, Default)]
pub struct ComposeFields {
    pub from: Option<MailAddress>,
    pub reply_to: Option<MailAddress>,
    pub to: Vec<MailAddress>,
    pub cc: Vec<MailAddress>,
    pub bcc: Vec<MailAddress>,
    pub headers: Vec<(String, String)>,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    pub attachments: Vec<NewAttachment>,
    /// Storage file ids; unknown ones are skipped.
    pub files: Vec<ObjectId>,
    pub reference: Option<ReferenceRequest>,
    pub date: Option<DateTime<Utc>>,
}

/// A message ready to store and send.
pub struct Prepared {
    pub compose: Compose,
    /// The referenced message, when it was found.
    pub referenced: Option<Message>,
    pub reference: Option<Reference>,
    /// The checked header From (also the envelope sender unless one is given).
    pub from: MailAddress,
}

impl Prepared {
    /// The message as stored (Bcc kept) and as sent (without Bcc).
    pub fn raw(&self, keep_bcc: bool) -> Vec<u8> {
        let mut compose = self.compose.clone();
        compose.keep_bcc = keep_bcc;
        compose.build()
    }

    /// Every recipient of the headers, once each (To, Cc, Bcc).
    pub fn header_recipients(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for a in self
            .compose
            .to
            .iter()
            .chain(&self.compose.cc)
            .chain(&self.compose.bcc)
        {
            if !a.address.is_empty() && !out.iter().any(|o| o.eq_ignore_ascii_case(&a.address)) {
                out.push(a.address.clone());
            }
        }
        out
    }

    pub fn draft_info(&self, envelope_to: Vec<String>, files: Vec<ObjectId>) -> DraftInfo {
        DraftInfo {
            reference: self.reference.clone(),
            envelope_from: Some(self.from.address.clone()),
            envelope_to,
            files,
        }
    }
}

/// The user's own addresses, lowercased.
pub async fn own_addresses(state: &AppState, user: &ObjectId) -> DomainResult<Vec<String>> {
    Ok(addresses::list_stored(state, user)
        .await?
        .into_iter()
        .map(|a| a.address.to_lowercase())
        .collect())
}

/// Whether `address` may be used as a sender: one of the user's addresses, or matching its
/// `fromWhitelist` (exact, `*suffix`, `prefix*`).
pub fn sender_allowed(address: &str, own: &[String], whitelist: &[String]) -> bool {
    let address = address.trim().to_lowercase();
    own.contains(&address)
        || whitelist.iter().any(|w| {
            let w = w.trim().to_lowercase();
            if let Some(suffix) = w.strip_prefix('*') {
                address.ends_with(suffix)
            } else if let Some(prefix) = w.strip_suffix('*') {
                address.starts_with(prefix)
            } else {
                w == address
            }
        })
}

/// The user's main address as a sender.
fn main_sender(owner: &StoredUser) -> DomainResult<MailAddress> {
    let address = owner
        .user
        .address
        .clone()
        .ok_or_else(|| DomainError::invalid("from", "the user has no address to send from"))?;
    Ok(MailAddress::new(owner.user.name.clone(), address))
}

/// `sender` if the user may use it, else the user's main address (silently, as WildDuck).
pub fn checked_sender(
    owner: &StoredUser,
    own: &[String],
    sender: Option<MailAddress>,
) -> DomainResult<MailAddress> {
    match sender {
        Some(s) if sender_allowed(&s.address, own, &owner.user.from_whitelist) => Ok(MailAddress {
            name: s.name.or_else(|| owner.user.name.clone()),
            address: s.address,
        }),
        _ => main_sender(owner),
    }
}

static PREFIXED: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\w+: ").unwrap());

/// The host part of Message-IDs and content ids: the sender's domain.
fn host_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.to_string())
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "eider.localhost".into())
}

fn parsed_address(a: &crate::mail::parse::Address) -> Option<MailAddress> {
    (!a.address.is_empty()).then(|| MailAddress::new(Some(a.name.clone()), a.address.clone()))
}

/// Builds the message: `check_sender` applies the own-address rule to From (drafts and
/// submissions); otherwise From defaults to the user's main address when missing.
pub async fn prepare(
    state: &AppState,
    owner: &StoredUser,
    fields: ComposeFields,
    check_sender: bool,
) -> DomainResult<Prepared> {
    let user = &owner.user.id;
    let own = own_addresses(state, user).await?;
    let from = match (check_sender, fields.from) {
        (true, from) => checked_sender(owner, &own, from)?,
        (false, Some(from)) => from,
        (false, None) => main_sender(owner)?,
    };
    let host = host_of(&from.address);

    let referenced = match &fields.reference {
        Some(r) => match messages::load(state, user, &r.mailbox, r.uid).await {
            Ok(message) => Some(message),
            // An unknown reference is ignored, as in WildDuck.
            Err(DomainError::MessageNotFound(_)) => None,
            Err(e) => return Err(e),
        },
        None => None,
    };
    let reference = match (&fields.reference, &referenced) {
        (Some(r), Some(_)) => Some(Reference {
            mailbox: r.mailbox,
            uid: r.uid,
            action: r.action,
        }),
        _ => None,
    };

    let mut compose = Compose {
        from: Some(from.clone()),
        reply_to: fields.reply_to,
        to: fields.to,
        cc: fields.cc,
        bcc: fields.bcc,
        keep_bcc: true,
        headers: fields.headers,
        subject: fields.subject,
        text: fields.text,
        html: None,
        attachments: Vec::new(),
        message_id: compose::new_message_id(&host),
        in_reply_to: None,
        references: Vec::new(),
        date: fields.date,
    };

    if let (Some(original), Some(r)) = (&referenced, &fields.reference) {
        let original_id = (!original.message_id.is_empty())
            .then(|| format!("<{}>", original.message_id.trim_matches(['<', '>'])));
        if r.action != ReferenceAction::Forward {
            compose.in_reply_to = original_id.clone();
        }
        let mut references: Vec<String> = original
            .references
            .iter()
            .map(|id| format!("<{}>", id.trim_matches(['<', '>'])))
            .collect();
        references.extend(original_id);
        let skip = references.len().saturating_sub(50);
        compose.references = references.into_iter().skip(skip).collect();
        if compose.subject.is_none() {
            let prefix = if r.action == ReferenceAction::Forward {
                "Fwd: "
            } else {
                "Re: "
            };
            compose.subject = Some(if PREFIXED.is_match(&original.subject) {
                original.subject.clone()
            } else {
                format!("{prefix}{}", original.subject)
            });
        }
        if compose.to.is_empty() && r.action != ReferenceAction::Forward {
            let mut to: Vec<MailAddress> = if original.reply_to.is_empty() {
                original.from.iter().filter_map(parsed_address).collect()
            } else {
                original
                    .reply_to
                    .iter()
                    .filter_map(parsed_address)
                    .collect()
            };
            if r.action == ReferenceAction::ReplyAll {
                to.extend(original.to.iter().filter_map(parsed_address));
                if compose.cc.is_empty() {
                    compose.cc = original
                        .cc
                        .iter()
                        .filter_map(parsed_address)
                        .filter(|a| !own.contains(&a.address.to_lowercase()))
                        .collect();
                }
            }
            let mut seen: Vec<String> = Vec::new();
            compose.to = to
                .into_iter()
                .filter(|a| !own.contains(&a.address.to_lowercase()))
                .filter(|a| {
                    let key = a.address.to_lowercase();
                    let new = !seen.contains(&key);
                    seen.push(key);
                    new
                })
                .collect();
        }
        let copy = &r.attachments;
        if *copy != AttachmentCopy::None {
            for info in original.attachments.iter().filter(|a| !a.related) {
                if let AttachmentCopy::Listed(ids) = copy
                    && !ids.iter().any(|id| id.eq_ignore_ascii_case(&info.id))
                {
                    continue;
                }
                let (info, content) =
                    messages::attachment(state, user, &original.mailbox, original.uid, &info.id)
                        .await?;
                compose.attachments.push(FilePart {
                    filename: Some(info.filename.clone()),
                    content_type: info.content_type.clone(),
                    content,
                    cid: None,
                    inline: false,
                });
            }
        }
    }

    if let Some(html) = fields.html {
        let (html, images) = compose::extract_data_images(&html, &host);
        if compose.text.is_none() {
            compose.text = Some(compose::text_of_html(&html));
        }
        compose.html = Some(html);
        compose.attachments.extend(images);
    }
    for a in fields.attachments {
        let content_type = a.content_type.unwrap_or_else(|| {
            a.filename
                .as_deref()
                .and_then(|f| mime_guess::from_path(f).first_raw())
                .unwrap_or("application/octet-stream")
                .to_string()
        });
        compose.attachments.push(FilePart {
            inline: a.inline || (a.cid.is_some() && a.filename.is_none()),
            filename: a.filename,
            content_type,
            content: a.content,
            cid: a.cid,
        });
    }
    for (file, bytes) in storage::load_many(state, user, &fields.files).await? {
        compose.attachments.push(FilePart {
            inline: false,
            filename: Some(file.filename),
            content_type: file.content_type,
            content: bytes.to_vec(),
            cid: file.cid,
        });
    }
    Ok(Prepared {
        compose,
        referenced,
        reference,
        from,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_are_own_addresses_or_whitelisted() {
        let own = vec!["me@example.com".to_string()];
        let list = vec![
            "*@partner.example".to_string(),
            "alerts-*".to_string(),
            "exact@x.example".to_string(),
        ];
        assert!(sender_allowed("Me@Example.com", &own, &[]));
        assert!(!sender_allowed("you@example.com", &own, &[]));
        assert!(sender_allowed("a@partner.example", &own, &list));
        assert!(sender_allowed("alerts-1@any.example", &own, &list));
        assert!(sender_allowed("exact@x.example", &own, &list));
        assert!(!sender_allowed("other@x.example", &own, &list));
    }

    #[test]
    fn message_ids_use_the_senders_domain() {
        assert_eq!(host_of("a@b.example"), "b.example");
        assert_eq!(host_of("nodomain"), "eider.localhost");
    }
}
