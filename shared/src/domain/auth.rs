//! Authentication (`POST /authenticate`) and the temporary password of a reset
//! (`POST /users/{user}/password/reset`).
//!
//! WildDuck's rules, in order:
//!
//! 1. The login name is a username or any address of the user (internationalized ones too);
//!    an address that matches none falls back to a username spelled as an address.
//! 2. Brute-force protection ([`super::ratelimit`]): refused at once while locked, and every
//!    attempt is counted before any password is checked.
//! 3. The temporary password (within 24 h of the reset; not before `validAfter`), then the
//!    master password. A master or temporary password grants any scope, except that with 2FA
//!    enabled, or with the temporary password, it grants only `master`.
//! 4. Otherwise, for a scope other than `master`, the application-specific passwords (spaces
//!    ignored, case-insensitive), each valid only for its own scopes.
//! 5. Disabled and suspended users, and scopes the user has disabled, are refused.
//!
//! Every outcome is logged in the authlog with `protocol`, `sess`, `ip`, the required scope
//! and the password's source. Failures all look alike (403 `AuthFailed`, no user id) and cost
//! the same argon2 check whether or not the user exists.

use chrono::{DateTime, Duration, Utc};
use rand::Rng;
use serde_json::json;

use super::asps;
use super::authlog::{AuthlogEntry, Session};
use super::names::{self, uview};
use super::ratelimit::{self, Attempt, Gate, Subject};
use super::retry::{self, USER_CONTENDED, retry_on_conflict};
use super::users::{self, StoredUser, TempPassword, User, profile_update};
use super::{AppState, DomainError, DomainResult, journal, password, tokens, totp, unix_now};
use crate::id::ObjectId;
use crate::store::{StoreError, Write};

/// The scopes a login can ask for.
pub const SCOPES: [&str; 4] = ["master", "imap", "pop3", "smtp"];
/// How long a temporary password from a reset works (WildDuck's `TEMP_PASS_WINDOW`).
pub const TEMP_PASSWORD_HOURS: i64 = 24;

/// An argon2id hash of a random password nobody knows: verified against when there is no
/// user, so a missing user costs as much time as a wrong password.
static DUMMY_HASH: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();

async fn dummy_hash() -> DomainResult<String> {
    let hash = DUMMY_HASH
        .get_or_try_init(|| {
            let secret: [u8; 24] = rand::random();
            let text: String = secret.iter().map(|b| format!("{b:02x}")).collect();
            password::hash(text)
        })
        .await?;
    Ok(hash.clone())
}

/// Spends the time of one password check that can't succeed.
async fn verify_nothing(given: &str) -> DomainResult<()> {
    password::verify(given.to_string(), dummy_hash().await?).await;
    Ok(())
}

/// A `POST /authenticate` request.
pub struct AuthRequest {
    /// A username or an address.
    pub username: String,
    pub password: String,
    /// One of [`SCOPES`].
    pub scope: String,
    pub protocol: String,
    pub app_id: Option<String>,
    /// `token: true`: answer a user access token (only for scope `master`).
    pub token: bool,
    pub session: Session,
}

impl std::fmt::Debug for AuthRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthRequest")
            .field("username", &self.username)
            .field("scope", &self.scope)
            .field("protocol", &self.protocol)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// Who logged in, and what the client must do next.
pub struct Authenticated {
    pub id: ObjectId,
    pub username: String,
    pub address: Option<String>,
    pub scope: String,
    /// The second factors the client must still check (empty: none).
    pub require_2fa: Vec<String>,
    pub require_password_change: bool,
    /// The session, when `token: true` was asked for: a token, or the nonce to finish the
    /// second factor with first.
    pub session: Option<SessionGrant>,
}

/// What `token: true` answers (WildDuck's `token`, `twoFactorNonce` and `totpNonce`).
#[derive(Debug, Default)]
pub struct SessionGrant {
    /// A user access token, valid at once.
    pub token: Option<String>,
    /// Strict 2FA: the nonce that the second factor's check turns into a token.
    pub two_factor_nonce: Option<String>,
    /// The nonce `POST /users/{user}/2fa/totp/check` takes.
    pub totp_nonce: Option<String>,
}

fn invalid_scope() -> DomainError {
    DomainError::ScopeRefused("Authentication failed. Invalid scope")
}

/// The user a login name names, and the name's view (the brute-force subject when no user
/// matches). WildDuck's `checkAddress`.
async fn resolve_login(
    state: &AppState,
    login: &str,
) -> DomainResult<(Option<StoredUser>, String)> {
    let view = match names::normalize_address(login, true) {
        Ok(address) if login.contains('@') => {
            if let Some((user, _)) = super::addresses::resolve(state, login).await? {
                return Ok((load_if_exists(state, &user).await?, address.addrview));
            }
            address.addrview
        }
        _ => uview(login),
    };
    let user = match users::id_by_username(state, &view).await? {
        Some(id) => load_if_exists(state, &id).await?,
        None => {
            // The read a found name would have cost: timing doesn't tell the difference.
            load_if_exists(state, &ObjectId::new()).await?
        }
    };
    Ok((user, view))
}

async fn load_if_exists(state: &AppState, id: &ObjectId) -> DomainResult<Option<StoredUser>> {
    match users::load(state, id).await {
        Ok(stored) => Ok(Some(stored)),
        Err(DomainError::UserNotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// What kind of password matched.
#[derive(Debug, Clone, Copy)]
enum Matched {
    Master,
    Temporary,
    ApplicationPassword,
}

/// A login that succeeded, and with which kind of password.
type Outcome = (Authenticated, Matched);

/// `POST /authenticate`.
pub async fn authenticate(state: &AppState, request: AuthRequest) -> DomainResult<Authenticated> {
    let table = state.table.as_ref();
    let config = &state.config;
    let (found, view) = resolve_login(state, &request.username).await?;
    let subject = match &found {
        Some(stored) => Subject::User(stored.user.id),
        None => Subject::Name(view),
    };
    let attempt = match ratelimit::begin(table, &config.auth_limit, &subject, unix_now()).await? {
        Gate::Locked { retry_after } => {
            tracing::info!(
                user = found.as_ref().map(|s| s.user.id.to_string()),
                "authentication refused: locked"
            );
            return Err(ratelimit::rate_limited(retry_after));
        }
        Gate::Open(attempt) => attempt,
    };
    let Some(stored) = found else {
        // Same work as a wrong password.
        verify_nothing(&request.password).await?;
        attempt.note_failure(table).await?;
        attempt.failed(table, None).await?;
        tracing::info!("authentication failed: unknown user");
        return Err(DomainError::AuthFailed);
    };
    let login = Login {
        state,
        request: &request,
        stored: &stored,
        attempt: &attempt,
    };
    let (mut authenticated, matched) = login.run().await?;
    if matches!(matched, Matched::Master) {
        upgrade_hash(state, &stored, &request.password).await;
    }
    if request.token {
        authenticated.session = Some(grant_session(state, &stored.user, &authenticated).await?);
    }
    Ok(authenticated)
}

/// Issues what `token: true` asks for, as WildDuck: with a second factor pending under strict
/// 2FA, only a nonce (the second factor's check answers the token); otherwise a token at once,
/// plus a nonce to check TOTP with when TOTP is enabled.
async fn grant_session(
    state: &AppState,
    user: &User,
    authenticated: &Authenticated,
) -> DomainResult<SessionGrant> {
    let pending = &authenticated.require_2fa;
    let totp_pending = pending.iter().any(|m| m == totp::METHOD);
    let mut grant = SessionGrant::default();
    if state.config.tokens.strict_2fa && !pending.is_empty() {
        let nonce = tokens::issue_nonce(state, &user.id, true).await?;
        if totp_pending {
            grant.totp_nonce = Some(nonce.clone());
        }
        grant.two_factor_nonce = Some(nonce);
    } else {
        grant.token = Some(tokens::issue(state, &user.id, user.auth_version).await?);
        if totp_pending {
            grant.totp_nonce = Some(tokens::issue_nonce(state, &user.id, false).await?);
        }
    }
    Ok(grant)
}

/// Replaces a master password hash imported from WildDuck (bcrypt, pbkdf2, crypt ...) with an
/// argon2id hash of the password that just matched it. Best effort: the login stands whatever
/// happens here, and a profile changed meanwhile keeps its change.
async fn upgrade_hash(state: &AppState, stored: &StoredUser, given: &str) {
    let Some(current) = stored.user.password.as_deref() else {
        return;
    };
    if !password::needs_upgrade(current) {
        return;
    }
    let result = async {
        let hash = password::hash(given.to_string()).await?;
        let mut user = stored.user.clone();
        user.password = Some(hash);
        match state
            .table
            .transact(vec![profile_update(stored, &user)])
            .await
        {
            Ok(()) | Err(StoreError::ConditionFailed { .. }) => Ok(()),
            Err(e) => Err(DomainError::from(e)),
        }
    }
    .await;
    match result {
        Ok(()) => {
            tracing::info!(user = %stored.user.id, "imported password hash replaced by argon2id")
        }
        Err(e) => {
            tracing::warn!(user = %stored.user.id, error = %e, "imported password hash not replaced")
        }
    }
}

/// `POST /preauth`: whether `login` names a user that may log in to `scope`, without a
/// password: no rate limit and no authlog entry (WildDuck's). Unknown, disabled and suspended
/// users all get `AuthFailed`; `require2fa` is filled only for scope `master`.
pub async fn preauth(state: &AppState, login: &str, scope: &str) -> DomainResult<Authenticated> {
    let (found, _) = resolve_login(state, login).await?;
    let Some(stored) = found.filter(|s| !s.user.disabled && !s.user.suspended) else {
        return Err(DomainError::AuthFailed);
    };
    let user = stored.user;
    if user.disabled_scopes.iter().any(|s| s == scope) {
        return Err(DomainError::ScopeRefused(
            "Access to requested service disabled",
        ));
    }
    Ok(Authenticated {
        id: user.id,
        require_2fa: if scope == "master" {
            user.enabled_2fa()
        } else {
            Vec::new()
        },
        username: user.username,
        address: user.address,
        scope: scope.to_string(),
        require_password_change: false,
        session: None,
    })
}

/// An `authentication` authlog entry of this request.
fn auth_entry(state: &AppState, request: &AuthRequest, result: &str) -> AuthlogEntry {
    let mut entry = AuthlogEntry::new(
        "authentication",
        Some(result),
        &request.session,
        &state.config,
    )
    .with("protocol", request.protocol.clone())
    .with("requiredScope", request.scope.clone());
    if let Some(app) = &request.app_id {
        entry = entry.with("appId", app.clone());
    }
    entry
}

/// The entry that records a lock.
fn lock_entry(state: &AppState, request: &AuthRequest, attempt: &Attempt) -> AuthlogEntry {
    auth_entry(state, request, "locked")
        .with("failures", attempt.failures())
        .with(
            "lockedUntil",
            DateTime::from_timestamp(attempt.lock_until(), 0).map(|t| json!(t)),
        )
}

struct Login<'a> {
    state: &'a AppState,
    request: &'a AuthRequest,
    stored: &'a StoredUser,
    attempt: &'a Attempt,
}

impl Login<'_> {
    fn id(&self) -> &ObjectId {
        &self.stored.user.id
    }

    fn entry(&self, result: &str) -> AuthlogEntry {
        auth_entry(self.state, self.request, result)
    }

    /// Logs a failure (locking when it reaches the limit) and answers `error`.
    async fn fail(&self, entry: AuthlogEntry, error: DomainError) -> DomainResult<Outcome> {
        let table = self.state.table.as_ref();
        table.transact(vec![entry.write(self.id())]).await?;
        let lock = lock_entry(self.state, self.request, self.attempt);
        if self
            .attempt
            .failed(table, Some(lock.write(self.id())))
            .await?
        {
            tracing::warn!(user = %self.id(), "authentication locked after repeated failures");
        }
        tracing::info!(user = %self.id(), reason = %error, "authentication failed");
        Err(error)
    }

    /// Logs a success (forgetting earlier failures) with `extra` writes, and answers.
    async fn succeed(
        &self,
        entry: AuthlogEntry,
        extra: Vec<Write>,
        require_2fa: Vec<String>,
        matched: Matched,
    ) -> DomainResult<Outcome> {
        let mut writes = vec![entry.write(self.id())];
        writes.extend(extra);
        writes.extend(self.attempt.clear_writes());
        match self.state.table.transact(writes).await {
            Ok(()) => {}
            // The ASP was deleted while it was being used.
            Err(StoreError::ConditionFailed { .. }) => return Err(DomainError::AuthFailed),
            Err(e) => return Err(e.into()),
        }
        let user = &self.stored.user;
        tracing::info!(user = %user.id, scope = %self.request.scope, "authenticated");
        let authenticated = Authenticated {
            id: user.id,
            username: user.username.clone(),
            address: user.address.clone(),
            scope: self.request.scope.clone(),
            require_2fa,
            require_password_change: matches!(matched, Matched::Temporary),
            session: None,
        };
        Ok((authenticated, matched))
    }

    async fn run(&self) -> DomainResult<Outcome> {
        let user = &self.stored.user;
        let request = self.request;
        let now = Utc::now();

        // The password is checked first in every case, so every failure costs the same.
        let temp = user
            .temp_password
            .as_ref()
            .filter(|t| t.created > now - Duration::hours(TEMP_PASSWORD_HOURS));
        let mut matched = None;
        if let Some(temp) = temp
            && password::verify(request.password.clone(), temp.password.clone()).await
        {
            matched = Some(Matched::Temporary);
        }
        if matched.is_none() {
            let stored = user.password.clone();
            let verified = match stored {
                Some(hash) => password::verify(request.password.clone(), hash).await,
                None if temp.is_none() => {
                    verify_nothing(&request.password).await?;
                    false
                }
                None => false,
            };
            if verified {
                matched = Some(Matched::Master);
            }
        }

        if user.disabled || user.suspended {
            let result = if user.disabled {
                "disabled"
            } else {
                "suspended"
            };
            return self.fail(self.entry(result), DomainError::AuthFailed).await;
        }
        if user.disabled_scopes.contains(&request.scope) {
            return self
                .fail(
                    self.entry("fail"),
                    DomainError::ScopeRefused("Access to requested service disabled"),
                )
                .await;
        }

        let enabled2fa = user.enabled_2fa();
        if let Some(kind) = matched {
            let temporary = matches!(kind, Matched::Temporary);
            let source = if temporary { "temporary" } else { "master" };
            if temporary
                && let Some(t) = temp
                && t.valid_after > now
            {
                return self
                    .fail(
                        self.entry("fail").with("source", source),
                        DomainError::TempPasswordNotYetValid,
                    )
                    .await;
            }
            if request.scope != "master" && (!enabled2fa.is_empty() || temporary) {
                return self
                    .fail(self.entry("fail").with("source", source), invalid_scope())
                    .await;
            }
            let mut entry = self.entry("success").with("source", source);
            let require2fa = if enabled2fa.is_empty() || temporary {
                Vec::new()
            } else {
                entry = entry.with("require2fa", enabled2fa.join(","));
                enabled2fa
            };
            return self.succeed(entry, Vec::new(), require2fa, kind).await;
        }

        // Application-specific passwords: never for master.
        let Some(normalized) =
            asps::normalize(&request.password).filter(|_| request.scope != "master")
        else {
            return self
                .fail(
                    self.entry("fail").with("source", "master"),
                    DomainError::AuthFailed,
                )
                .await;
        };
        let selector = asps::selector(&normalized);
        for asp in asps::list_stored(self.state, self.id()).await? {
            if asp.selector != selector
                || !password::verify(normalized.clone(), asp.password.clone()).await
            {
                continue;
            }
            let entry = self
                .entry("success")
                .with("source", "asp")
                .with("asp", asp.id.to_string())
                .with("aname", asp.description.clone());
            if !asp.allows(&request.scope) {
                let entry = AuthlogEntry {
                    result: Some("fail".into()),
                    ..entry
                };
                return self.fail(entry, invalid_scope()).await;
            }
            let used = asp.used_write(&entry.id, request.session.ip.as_deref());
            // An application password never asks for the second factor.
            return self
                .succeed(entry, vec![used], Vec::new(), Matched::ApplicationPassword)
                .await;
        }
        self.fail(
            self.entry("fail").with("source", "master"),
            DomainError::AuthFailed,
        )
        .await
    }
}

// ---------------------------------------------------------------------------------------------
// Password reset

/// 12 characters from `[a-zA-Z0-9]`, as WildDuck generates them.
fn generate_temporary_password() -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..12)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}

/// What a reset returns, once.
pub struct Reset {
    pub password: String,
    pub valid_after: DateTime<Utc>,
}

/// `POST /users/{user}/password/reset`: a temporary password, valid for 24 h from
/// `validAfter` (default now). The spec's semantics, stricter than WildDuck's: 2FA is reset,
/// and the old master password stops working (otherwise someone holding it would now get in
/// without the second factor). Logins report `requirePasswordChange: true` until a new
/// password is set with `PUT /users/{user}`; sessions end as on a password change.
pub async fn reset_password(
    state: &AppState,
    id: &ObjectId,
    valid_after: Option<DateTime<Utc>>,
    session: &Session,
) -> DomainResult<Reset> {
    let clear = generate_temporary_password();
    let hash = password::hash(clear.clone()).await?;
    let now = Utc::now();
    let valid_after = valid_after.unwrap_or(now);
    retry_on_conflict(USER_CONTENDED, || {
        let hash = &hash;
        async move {
            let current = users::load(state, id).await?;
            let mut user = current.user.clone();
            user.temp_password = Some(TempPassword {
                password: hash.clone(),
                valid_after,
                created: now,
            });
            user.password = None;
            totp::reset(&mut user);
            user.auth_version += 1;
            let entry = AuthlogEntry::new("reset", None, session, &state.config);
            let writes = vec![profile_update(&current, &user), entry.write(id)];
            match state.table.transact(writes).await {
                Ok(()) => Ok(retry::Attempt::Done(())),
                Err(StoreError::ConditionFailed {
                    label: users::PROFILE_CHANGED,
                }) => Ok(retry::Attempt::Retry),
                Err(e) => Err(e.into()),
            }
        }
    })
    .await?;
    let event = json!({"command": "LOGOUT", "reason": "Authentication required"});
    journal::append(state.table.as_ref(), &state.config, id, event).await?;
    tracing::info!(user = %id, "password reset");
    Ok(Reset {
        password: clear,
        valid_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_passwords_are_12_alphanumerics() {
        for _ in 0..50 {
            let p = generate_temporary_password();
            assert_eq!(p.len(), 12);
            assert!(p.bytes().all(|b| b.is_ascii_alphanumeric()));
        }
    }

    #[tokio::test]
    async fn the_dummy_hash_is_argon2id_and_matches_nothing_guessable() {
        let hash = dummy_hash().await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(!password::verify(String::new(), hash).await);
    }
}
