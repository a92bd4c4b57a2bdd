//! Typed path parameters: `Ids<(UserId, MailboxId, MessageUid)>` takes `{user}`, `{mailbox}`
//! and `{message}` from the path, validates each with WildDuck's message, and reports every
//! bad one at once as a 400 `InputValidationError`. A user token's `me` stands for its user.

use std::collections::HashMap;
use std::ops::Deref;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;

use super::access::{Caller, ME, USER_PARAM};
use super::describe::{self, PathKind};
use super::error::ApiError;
use super::validate::Validator;
use crate::id::ObjectId;

/// One path parameter: its name in the route and how its text is validated.
pub trait PathPart: Sized {
    /// The `{name}` of the parameter in the route.
    const NAME: &'static str;
    /// What the parameter accepts (for the API document).
    const KIND: PathKind = PathKind::ObjectId;
    /// The value of `raw`, or `None` after recording why it is invalid.
    fn parse(v: &mut Validator, raw: &str) -> Option<Self>;
}

/// The path parameters a handler takes, as one value (a part or a tuple of parts).
pub trait PathParts: Sized {
    fn parse(v: &mut Validator, path: &HashMap<String, String>) -> Option<Self>;
}

fn part<P: PathPart>(v: &mut Validator, path: &HashMap<String, String>) -> Option<P> {
    describe::path_part(P::NAME, P::KIND);
    match path.get(P::NAME) {
        Some(raw) => P::parse(v, raw),
        None => {
            v.error(P::NAME, format!("\"{}\" is required", P::NAME));
            None
        }
    }
}

impl<A: PathPart> PathParts for A {
    fn parse(v: &mut Validator, path: &HashMap<String, String>) -> Option<Self> {
        part(v, path)
    }
}

impl<A: PathPart, B: PathPart> PathParts for (A, B) {
    fn parse(v: &mut Validator, path: &HashMap<String, String>) -> Option<Self> {
        let a = part(v, path);
        let b = part(v, path);
        Some((a?, b?))
    }
}

impl<A: PathPart, B: PathPart, C: PathPart> PathParts for (A, B, C) {
    fn parse(v: &mut Validator, path: &HashMap<String, String>) -> Option<Self> {
        let a = part(v, path);
        let b = part(v, path);
        let c = part(v, path);
        Some((a?, b?, c?))
    }
}

impl<A: PathPart, B: PathPart, C: PathPart, D: PathPart> PathParts for (A, B, C, D) {
    fn parse(v: &mut Validator, path: &HashMap<String, String>) -> Option<Self> {
        let a = part(v, path);
        let b = part(v, path);
        let c = part(v, path);
        let d = part(v, path);
        Some((a?, b?, c?, d?))
    }
}

/// The validated path parameters of a request.
pub struct Ids<T>(pub T);

impl<S: Send + Sync, T: PathParts> FromRequestParts<S> for Ids<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(mut path) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request("InputValidationError", e.body_text()))?;
        // `me` names the user of the calling user token (WildDuck's substitution).
        if let Some(Caller::User(grant)) = parts.extensions.get::<Caller>()
            && path.get(USER_PARAM).is_some_and(|u| u == ME)
        {
            path.insert(USER_PARAM.to_string(), grant.user.to_string());
        }
        let mut v = Validator::for_path();
        let parsed = T::parse(&mut v, &path);
        v.finish()?;
        parsed.map(Ids).ok_or_else(|| {
            ApiError::internal(anyhow::anyhow!("path parameters rejected without a reason"))
        })
    }
}

/// An object id in the path, named by the parameter it comes from.
macro_rules! object_id_part {
    ($(#[$doc:meta])* $name:ident, $param:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name(pub ObjectId);

        impl PathPart for $name {
            const NAME: &'static str = $param;
            fn parse(v: &mut Validator, raw: &str) -> Option<Self> {
                v.path_id($param, raw).map($name)
            }
        }

        impl Deref for $name {
            type Target = ObjectId;
            fn deref(&self) -> &ObjectId {
                &self.0
            }
        }
    };
}

object_id_part!(
    /// `{user}`.
    UserId,
    "user"
);
object_id_part!(
    /// `{mailbox}`.
    MailboxId,
    "mailbox"
);
object_id_part!(
    /// `{address}`.
    AddressId,
    "address"
);
object_id_part!(
    /// `{filter}`.
    FilterId,
    "filter"
);
object_id_part!(
    /// `{alias}`: a domain alias's id.
    DomainAliasId,
    "alias"
);
object_id_part!(
    /// `{domain}` of `DELETE /domainaccess/{domain}`: despite its name, an entry's id.
    DomainAccessId,
    "domain"
);
object_id_part!(
    /// `{dkim}`: a DKIM key's id.
    DkimId,
    "dkim"
);
object_id_part!(
    /// `{audit}`: an audit's id.
    AuditId,
    "audit"
);
object_id_part!(
    /// `{webhook}`: a webhook's id.
    WebhookId,
    "webhook"
);
object_id_part!(
    /// `{asp}`.
    AspId,
    "asp"
);
object_id_part!(
    /// `{upload}`: a staged upload.
    UploadId,
    "upload"
);
object_id_part!(
    /// `{file}`: a storage file.
    FileId,
    "file"
);
object_id_part!(
    /// `{queueId}`: a queued outgoing mail.
    QueueId,
    "queueId"
);
object_id_part!(
    /// `{event}`: an authlog entry.
    EventId,
    "event"
);
object_id_part!(
    /// `{message}` of the archive: archived messages are addressed by their object id.
    ArchivedId,
    "message"
);

/// `{message}`: one message's UID inside its mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageUid(pub u32);

impl PathPart for MessageUid {
    const NAME: &'static str = "message";
    const KIND: PathKind = PathKind::Uid;
    fn parse(v: &mut Validator, raw: &str) -> Option<Self> {
        match raw.parse::<u32>() {
            Ok(uid) if uid >= 1 => Some(MessageUid(uid)),
            _ => {
                v.error(
                    "message",
                    "\"message\" must be a number greater than or equal to 1",
                );
                None
            }
        }
    }
}

/// `{message}` as given: one UID, a list `1,2,3` or a range `1:*` (parsed with the request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageSelector(pub String);

impl PathPart for MessageSelector {
    const NAME: &'static str = "message";
    const KIND: PathKind = PathKind::UidSet;
    fn parse(_: &mut Validator, raw: &str) -> Option<Self> {
        Some(MessageSelector(raw.to_string()))
    }
}

/// `{attachment}`: `ATT` and digits, in any case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentId(pub String);

impl PathPart for AttachmentId {
    const NAME: &'static str = "attachment";
    const KIND: PathKind = PathKind::Attachment;
    fn parse(v: &mut Validator, raw: &str) -> Option<Self> {
        let valid = raw
            .get(..3)
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case("ATT"))
            && raw.get(3..).is_some_and(|digits| {
                !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
            });
        if valid {
            Some(AttachmentId(raw.to_string()))
        } else {
            v.error(
                "attachment",
                format!(
                    "\"attachment\" with value {raw:?} fails to match the required pattern: /^ATT\\d+$/i"
                ),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T: PathParts>(pairs: &[(&str, &str)]) -> Result<T, ApiError> {
        let path = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut v = Validator::new(Default::default());
        let parsed = T::parse(&mut v, &path);
        v.finish()?;
        Ok(parsed.unwrap())
    }

    #[test]
    fn every_bad_part_is_reported_at_once() {
        let err = parse::<(UserId, MailboxId, MessageUid)>(&[
            ("user", "nope"),
            ("mailbox", "0123456789abcdef01234567"),
            ("message", "0"),
        ])
        .err()
        .unwrap();
        let details = err.details.unwrap();
        assert_eq!(
            details.keys().collect::<Vec<_>>(),
            vec!["message", "user"],
            "{details:?}"
        );
    }

    #[test]
    fn good_parts_parse() {
        let (user, uid) = parse::<(UserId, MessageUid)>(&[
            ("user", "0123456789abcdef01234567"),
            ("message", "42"),
        ])
        .unwrap();
        assert_eq!(user.to_string(), "0123456789abcdef01234567");
        assert_eq!(uid, MessageUid(42));
    }

    #[test]
    fn attachment_ids_are_checked_without_slicing_inside_a_character() {
        assert!(parse::<AttachmentId>(&[("attachment", "att12")]).is_ok());
        for bad in ["ATT", "ATTx", "\u{1F600}", "AT\u{e9}1", "\u{e9}TT1"] {
            assert!(
                parse::<AttachmentId>(&[("attachment", bad)]).is_err(),
                "{bad}"
            );
        }
    }
}
