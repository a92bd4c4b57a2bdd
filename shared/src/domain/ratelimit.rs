//! Brute-force protection for `/authenticate` and TOTP checks, held in the table so it binds
//! every Lambda instance at once.
//!
//! Attempts are counted *before* the password is checked: each one adds 1 to the counter of
//! the current fixed window (`RATE#<subject>` / `W#<n>`, one atomic `UpdateItem`). The number
//! of recent attempts is the sliding-window estimate `current + previous × overlap`, where
//! `overlap` is the part of the previous window that still lies inside the last
//! `window` seconds. An attempt that finds `max_failures` or more before it is refused
//! unchecked, so even a burst of parallel requests gets at most `max_failures` password checks.
//! A failure that brings the estimate to the limit puts a lock item (`RATE#<subject>` / `LOCK`,
//! TTL = the lock duration) and writes one authlog entry; while the lock lives, attempts are
//! refused after a single read. Refused attempts are not counted, so hammering a locked
//! account does not keep it locked. A success deletes the window counters (WildDuck clears its
//! counter on success too). Counters and locks expire through the table's TTL.

use serde_json::json;

use super::DomainError;
use super::keys;
use crate::config::AuthLimit;
use crate::id::ObjectId;
use crate::store::{Item, Key, StoreError, StoreResult, Table, Update, Write};

const COUNT: &str = "n";
/// Label of the condition on a lock item: the subject is locked already.
const LOCKED: &str = "locked";

/// Whose attempts are counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// Password attempts against a known user (by username or any address).
    User(ObjectId),
    /// TOTP checks of a user.
    Totp(ObjectId),
    /// Password attempts against a login name that matches no user (its normalized view).
    Name(String),
}

impl Subject {
    fn key_part(&self) -> String {
        match self {
            Subject::User(id) => format!("user:{id}"),
            Subject::Totp(id) => format!("totp:{id}"),
            Subject::Name(name) => format!("name:{name}"),
        }
    }
}

/// What [`begin`] decided.
#[derive(Debug)]
pub enum Gate {
    /// Go ahead and check the credentials; report the outcome with [`Attempt`].
    Open(Attempt),
    /// Refused: locked for `retry_after` more seconds.
    Locked { retry_after: i64 },
}

/// One counted attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    subject: String,
    window: i64,
    /// Attempts in the previous window, and whether its item exists.
    previous: i64,
    /// Attempts in the current window, this one included.
    current: i64,
    now: i64,
    limit: AuthLimit,
}

/// The sliding-window estimate of attempts in the last `window` seconds at `now`, rounded
/// up (a burst that straddles a window boundary counts in full).
pub fn estimate(previous: i64, current: i64, now: i64, window: i64) -> i64 {
    let elapsed = now.rem_euclid(window);
    // previous × (window − elapsed) / window, rounded up, in integers.
    current + (previous * (window - elapsed) + window - 1) / window
}

fn window_secs(limit: &AuthLimit) -> i64 {
    limit.window.as_secs().max(1) as i64
}

/// The refusal of an attempt while locked.
pub fn rate_limited(retry_after: i64) -> DomainError {
    DomainError::RateLimited {
        message: "Authentication was rate limited",
        retry_after: Some(retry_after.max(1)),
    }
}

/// Checks the lock and counts one attempt of `subject`.
pub async fn begin(
    table: &dyn Table,
    limit: &AuthLimit,
    subject: &Subject,
    now: i64,
) -> StoreResult<Gate> {
    let subject = subject.key_part();
    let window = window_secs(limit);
    let number = now.div_euclid(window);
    let lock_key = keys::rate_lock(&subject);
    let previous_key = keys::rate_window(&subject, number - 1);
    let items = table
        .get_many(&[lock_key.clone(), previous_key.clone()])
        .await?;
    if let Some(lock) = items.iter().find(|i| i.key() == lock_key) {
        let retry_after = lock.expires_at.map_or(1, |t| t - now);
        return Ok(Gate::Locked { retry_after });
    }
    let previous = items
        .iter()
        .find(|i| i.key() == previous_key)
        .map_or(0, |i| i.counter(COUNT));
    // The window item outlives its window by one more, for the next window's estimate.
    let counted = table
        .update(
            &keys::rate_window(&subject, number),
            Update {
                expires_at: Some(Some((number + 2) * window)),
                ..Update::default().add(COUNT, 1)
            },
            None,
        )
        .await?;
    let attempt = Attempt {
        subject,
        window: number,
        previous,
        current: counted.counter(COUNT),
        now,
        limit: *limit,
    };
    if attempt.before() >= i64::from(limit.max_failures) {
        // Over the limit without a lock: parallel attempts got here first (the failure that
        // reached the limit is putting the lock), or a lock ended while its failures are still
        // in the window. Refused, and taken back out of the count, so refused attempts never
        // prolong a lock-out: the failures age out of the window and checking resumes.
        table
            .update(
                &keys::rate_window(&attempt.subject, number),
                Update::default().add(COUNT, -1),
                None,
            )
            .await?;
        return Ok(Gate::Locked {
            retry_after: window - now.rem_euclid(window),
        });
    }
    Ok(Gate::Open(attempt))
}

/// A lock to put, with the authlog entry that records it.
pub struct PendingLock {
    writes: Vec<Write>,
}

impl PendingLock {
    /// Puts the lock unless one exists already (then nothing is logged twice). Returns
    /// whether this call locked.
    pub async fn await_lock(self, table: &dyn Table) -> StoreResult<bool> {
        match table.transact(self.writes).await {
            Ok(()) => Ok(true),
            Err(StoreError::ConditionFailed { label: LOCKED }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl Attempt {
    /// Attempts before this one, as the sliding window sees them.
    fn before(&self) -> i64 {
        estimate(
            self.previous,
            self.current - 1,
            self.now,
            window_secs(&self.limit),
        )
    }

    /// Whether this attempt, if it failed, reaches the limit.
    pub fn reaches_limit(&self) -> bool {
        estimate(
            self.previous,
            self.current,
            self.now,
            window_secs(&self.limit),
        ) >= i64::from(self.limit.max_failures)
    }

    /// Failed attempts counted in the sliding window, this one included (for the log).
    pub fn failures(&self) -> i64 {
        estimate(
            self.previous,
            self.current,
            self.now,
            window_secs(&self.limit),
        )
    }

    /// Unix time the lock would end if put now.
    pub fn lock_until(&self) -> i64 {
        self.now + self.limit.lock.as_secs() as i64
    }

    /// The lock this attempt puts (with `log`, the authlog entry recording it).
    pub fn lock(&self, log: Option<Write>) -> PendingLock {
        let lock = Item::new(
            keys::rate_lock(&self.subject),
            json!({ "lockedAt": self.now, "failures": self.failures() }),
        )
        .with_expiry(self.lock_until());
        let mut writes = vec![Write::put_new(lock, LOCKED)];
        writes.extend(log);
        PendingLock { writes }
    }

    /// Records a failed attempt: it is counted already, so this only locks when the limit is
    /// reached. `log` is the authlog entry of the lock. Returns whether it locked.
    pub async fn failed(&self, table: &dyn Table, log: Option<Write>) -> StoreResult<bool> {
        if !self.reaches_limit() {
            return Ok(false);
        }
        self.lock(log).await_lock(table).await
    }

    /// Writes the time of this failure onto the window counter: for a login name that matches
    /// no user, this stands in for the authlog entry a known user's failure writes, so both
    /// failures cost the same round trips and time tells nothing about the account.
    pub async fn note_failure(&self, table: &dyn Table) -> StoreResult<()> {
        let window = window_secs(&self.limit);
        table
            .update(
                &keys::rate_window(&self.subject, self.window),
                Update {
                    body: Some(json!({ "lastFailure": self.now })),
                    expires_at: Some(Some((self.window + 2) * window)),
                    ..Update::default()
                },
                None,
            )
            .await
            .map(drop)
    }

    /// The writes that forget this subject's attempts after a success; put them in the same
    /// transaction as the success's own writes.
    pub fn clear_writes(&self) -> Vec<Write> {
        let mut writes = vec![Write::delete(keys::rate_window(&self.subject, self.window))];
        if self.previous > 0 {
            writes.push(Write::delete(keys::rate_window(
                &self.subject,
                self.window - 1,
            )));
        }
        writes
    }

    /// The key of the current window's counter (tests).
    pub fn window_key(&self) -> Key {
        keys::rate_window(&self.subject, self.window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_weighs_the_previous_window_by_its_overlap() {
        // At the start of a window the previous one counts fully, halfway through by half,
        // and a part of an attempt counts as a whole one.
        assert_eq!(estimate(10, 0, 1200, 120), 10);
        assert_eq!(estimate(10, 2, 1260, 120), 7);
        assert_eq!(estimate(6, 6, 1201, 120), 12);
        assert_eq!(estimate(12, 0, 1319, 120), 1);
        assert_eq!(estimate(0, 5, 1319, 120), 5);
    }
}
