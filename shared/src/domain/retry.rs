//! Optimistic concurrency: read, compute the change, write it conditioned on what was read,
//! and start over when another change came first.

use std::future::Future;

use super::error::{DomainError, DomainResult};

/// How many attempts an optimistic change gets before it gives up as contended.
pub const OPTIMISTIC_ATTEMPTS: usize = 8;

/// What one attempt came to.
pub enum Attempt<T> {
    Done(T),
    /// Another change came first: read again and try again.
    Retry,
}

/// Runs `attempt` until it is done, at most [`OPTIMISTIC_ATTEMPTS`] times; then
/// [`DomainError::Contended`] with `contended` as its message. Each attempt reads the state
/// it changes afresh (state carried from a read before the first attempt can be handed in
/// through a captured `Option` the closure takes).
pub async fn retry_on_conflict<T, F, Fut>(
    contended: &'static str,
    mut attempt: F,
) -> DomainResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = DomainResult<Attempt<T>>>,
{
    for n in 0..OPTIMISTIC_ATTEMPTS {
        if let Attempt::Done(value) = attempt().await? {
            return Ok(value);
        }
        pause(n).await;
    }
    Err(DomainError::Contended(contended))
}

/// A short random pause before attempt `n + 1`, growing with `n` (at most ~32 ms), so that
/// writers that collided don't collide again in lockstep.
pub async fn pause(n: usize) {
    use rand::Rng;
    let ceiling = 1u64 << n.min(5);
    let millis = rand::thread_rng().gen_range(0..=ceiling);
    tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
}

/// The message of a change to a user that kept losing to concurrent ones.
pub const USER_CONTENDED: &str = "The user was changed concurrently, try again";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn retries_until_done_and_gives_up_after_the_last_attempt() {
        let mut calls = 0;
        let value = retry_on_conflict("busy", || {
            calls += 1;
            let n = calls;
            async move {
                Ok(if n < 3 {
                    Attempt::Retry
                } else {
                    Attempt::Done(n)
                })
            }
        })
        .await
        .unwrap();
        assert_eq!(value, 3);

        let mut calls = 0;
        let err = retry_on_conflict::<(), _, _>("busy", || {
            calls += 1;
            async { Ok(Attempt::Retry) }
        })
        .await
        .unwrap_err();
        assert!(matches!(err, DomainError::Contended("busy")));
        assert_eq!(calls, OPTIMISTIC_ATTEMPTS);
    }
}
