//! The one error type of WildDuck's rules: what went wrong, in the domain's words.
//!
//! Each variant is one situation a rule refuses (an unknown user, a name already taken, a
//! quota exceeded ...). Which HTTP status and WildDuck `code` a situation gets is decided in
//! one place, `crate::http::error`; callers outside HTTP (delivery, the janitor, LMTP) match
//! the variants themselves.

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// A value breaks a rule that needs the stored state to check (a duplicate mailbox name,
    /// an address that does not parse for this domain); reported per field like validation.
    #[error("{message}")]
    Invalid { field: String, message: String },

    #[error("{0}")]
    UserNotFound(&'static str),
    #[error("{0}")]
    AddressNotFound(&'static str),
    #[error("{0}")]
    MailboxNotFound(&'static str),
    #[error("{0}")]
    MessageNotFound(&'static str),
    #[error("This attachment does not exist")]
    AttachmentNotFound,
    #[error("This file does not exist")]
    FileNotFound,
    #[error("{0}")]
    FilterNotFound(&'static str),
    #[error("{0}")]
    AspNotFound(&'static str),

    #[error("This username already exists")]
    UserExists { username: String },
    #[error("{message}")]
    AddressExists {
        message: &'static str,
        /// The user being created, when the address was part of a new account.
        username: Option<String>,
    },
    #[error("{0}")]
    MailboxExists(&'static str),
    #[error("{0}")]
    AliasNotFound(&'static str),
    #[error("This domain alias already exists")]
    AliasExists,
    #[error("Domain was not found")]
    DomainAccessNotFound,
    #[error("{0}")]
    AccountNotFound(&'static str),
    #[error("Account was already restored")]
    AccountFound,
    #[error("Deletion already in progress")]
    DeleteInProgress,
    #[error("{0}")]
    DkimNotFound(&'static str),
    #[error("{0}")]
    WebhookNotFound(&'static str),
    #[error("Audit not found")]
    AuditNotFound,

    /// Concurrent changes kept winning over this one: try again.
    #[error("{0}")]
    Contended(&'static str),
    /// The request changes nothing.
    #[error("{0}")]
    NoUpdates(&'static str),
    /// A rule forbids the change: deleting the main address, and the like.
    #[error("{0}")]
    NotPermitted(&'static str),
    #[error("{0}")]
    ChangeNotAllowed(&'static str),
    #[error("Can not set wildcard address as default")]
    WildcardNotPermitted,
    /// A mailbox operation the mailbox does not allow (INBOX, special use, a count limit).
    #[error("{0}")]
    MailboxMethodNotAllowed(&'static str),
    /// A pre-hashed password in a format Eider does not take.
    #[error("{0}")]
    UnsupportedHash(String),

    #[error("User is over quota")]
    OverQuota,
    #[error("User account is disabled")]
    UserDisabled,
    /// A per-user limit reached (application passwords, filters).
    #[error("{message}")]
    TooMany {
        message: &'static str,
        allowed: Option<u64>,
    },

    /// `existingPassword` did not match on a password change.
    #[error("Password verification failed")]
    WrongExistingPassword,
    /// A login that failed, for whatever reason (never more detail than this).
    #[error("Authentication failed")]
    AuthFailed,
    /// A login for a scope the password or the account does not grant.
    #[error("{0}")]
    ScopeRefused(&'static str),
    /// Request scopes that don't fit what is asked for (an ASP profile without imap/pop3).
    #[error("{0}")]
    ScopesInvalid(&'static str),
    #[error("Temporary password is not yet activated")]
    TempPasswordNotYetValid,
    /// Too many attempts: refused for `retry_after` seconds, when known.
    #[error("{message}")]
    RateLimited {
        message: &'static str,
        retry_after: Option<i64>,
    },

    #[error("{0}")]
    TotpEnabled(&'static str),
    #[error("{0}")]
    TotpDisabled(&'static str),
    /// A TOTP code that is malformed for setup or enabling.
    #[error("Invalid authentication token")]
    TotpTokenInvalid,
    /// A TOTP code that does not verify.
    #[error("Failed to validate TOTP")]
    TotpRejected,
    /// A stored secret that can't be opened with the configured key.
    #[error("{0}")]
    SecretUnreadable(&'static str),
    #[error("Failed to generate QR code")]
    QrCode,
    /// A 2FA nonce that is unknown, used up, expired or another user's.
    #[error("Invalid or expired 2FA nonce")]
    NonceInvalid,
    /// The user's daily recipients limit is used up; it renews in `expires_in` seconds.
    #[error("You reached a daily sending limit for your account. Limit expires in {}", human_duration(*expires_in))]
    SendingLimit { expires_in: i64 },
    #[error("This message is not a draft")]
    MessageNotDraft,
    /// An outbound queue entry that is not the user's (or never was).
    #[error("Queue entry was not found")]
    QueueEntryNotFound,
    /// An authlog event that is not the user's.
    #[error("Event was not found")]
    EventNotFound,

    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type DomainResult<T> = Result<T, DomainError>;

/// `5 hours`, `12 minutes`, `40 seconds`: WildDuck's wording of how long a limit lasts.
fn human_duration(seconds: i64) -> String {
    let (n, unit) = if seconds >= 3600 {
        ((seconds + 3599) / 3600, "hour")
    } else if seconds >= 60 {
        ((seconds + 59) / 60, "minute")
    } else {
        (seconds.max(1), "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

impl DomainError {
    /// A rule broken by one field's value.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        DomainError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The usual "no such user".
    pub fn user_not_found() -> Self {
        DomainError::UserNotFound("This user does not exist")
    }

    /// A stored item that does not decode: a fault, never the client's.
    pub fn corrupt(what: &str, key: impl std::fmt::Display, e: impl std::fmt::Display) -> Self {
        DomainError::Internal(anyhow::anyhow!("corrupt {what} {key}: {e}"))
    }

    /// What may be told outside (an LMTP reply, a recorded outcome): the message, except for
    /// faults, whose details are logged only.
    pub fn public_message(&self) -> String {
        match self {
            DomainError::Store(_) | DomainError::Internal(_) => "Internal server error".into(),
            other => other.to_string(),
        }
    }
}
