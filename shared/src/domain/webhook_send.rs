//! Sending queued webhook deliveries (`super::webhooks`): signed POSTs, retries with
//! exponential backoff, and the webhook marked failing when a delivery is given up.
//!
//! Each request carries:
//!
//! * `X-Eider-Delivery`: the delivery's id (also the payload's `id`), the same on every
//!   attempt, for de-duplication (delivery is at least once);
//! * `X-Eider-Event`: the event name; `X-Eider-Webhook`: the webhook's id;
//! * `X-Eider-Timestamp`: Unix seconds of this attempt;
//! * `X-Eider-Signature: sha256=<hex>`: HMAC-SHA256 with the webhook's secret over
//!   `<timestamp>.<body>`, so a receiver checks both the body and its freshness.
//!
//! A 2xx answer delivers. Anything else, a timeout or a refused address is a failed attempt:
//! the delivery goes back into the queue due after the backoff (2 s, 4 s, 8 s, 16 s by
//! default); after the last attempt it is dropped and the webhook's `health` says why.
//! Addresses are checked as `super::webhook_url` describes, after name resolution, and
//! redirects are not followed.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use hmac::{Hmac, Mac};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use sha2::Sha256;
use tokio::sync::Semaphore;

use super::webhook_url::{check_syntax, refusal};
use super::webhooks::{self, Delivery};
use super::{AppState, DomainResult, keys};
use crate::config::WebhookConfig;
use crate::store::Write;

/// Deliveries a local sender runs at once (a hanging endpoint holds one until its timeout).
const CONCURRENT_DELIVERIES: usize = 16;
/// How often a local sender looks for deliveries due (retries), besides being woken.
const POLL: Duration = Duration::from_millis(500);
/// Deliveries taken from one queue partition per look.
const TAKE: usize = 100;

/// The signature header's value for `body` sent at `timestamp` (Unix seconds).
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Resolves host names to the addresses a webhook may reach (see `webhook_url`).
struct CheckedResolver {
    policy: WebhookConfig,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .iter()
                .filter(|a| refusal(a.ip(), &policy).is_none())
                .copied()
                .collect();
            if allowed.is_empty() {
                let why = found
                    .first()
                    .and_then(|a| refusal(a.ip(), &policy))
                    .unwrap_or("no address");
                return Err(
                    format!("{host} resolves to {why}, which webhooks may not reach").into(),
                );
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// How one attempt went.
#[derive(Debug, PartialEq)]
pub enum Attempt {
    Delivered,
    /// Failed; tried again later.
    Retry(String),
    /// Failed for the last time, or the webhook is gone: dropped.
    GivenUp(String),
    /// The webhook no longer exists.
    Dropped,
}

/// Sends deliveries; one per process, shared by its tasks.
#[derive(Clone)]
pub struct Sender {
    state: AppState,
    http: reqwest::Client,
}

impl Sender {
    pub fn new(state: AppState) -> anyhow::Result<Sender> {
        let policy = state.config.webhooks.clone();
        let http = reqwest::Client::builder()
            .timeout(policy.timeout)
            .connect_timeout(policy.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("eider/", env!("CARGO_PKG_VERSION")))
            .use_preconfigured_tls(crate::tls::client_config().as_ref().clone())
            .dns_resolver(Arc::new(CheckedResolver { policy }))
            .build()?;
        Ok(Sender { state, http })
    }

    /// One attempt at `delivery`, and what follows from it: removed when delivered or given
    /// up, else put back due after the backoff.
    pub async fn attempt(&self, delivery: Delivery) -> DomainResult<Attempt> {
        let state = &self.state;
        let Some(hook) = webhooks::load(state, &delivery.hook).await? else {
            state
                .table
                .transact(vec![Write::delete(delivery.key())])
                .await?;
            return Ok(Attempt::Dropped);
        };
        let failure = self.post(&hook, &delivery).await.err();
        let policy = &state.config.webhooks;
        let attempts = delivery.attempts + 1;
        let outcome = match failure {
            None => Attempt::Delivered,
            Some(reason) if attempts >= policy.attempts => Attempt::GivenUp(reason),
            Some(reason) => Attempt::Retry(reason),
        };
        match &outcome {
            Attempt::Retry(reason) => {
                let wait = policy.backoff * 2u32.saturating_pow(attempts - 1).min(1 << 16);
                let next = Delivery {
                    attempts,
                    due: Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default(),
                    last_error: Some(reason.clone()),
                    ..delivery.clone()
                };
                state
                    .table
                    .transact(vec![Write::delete(delivery.key()), Write::put(next.item())])
                    .await?;
            }
            Attempt::Delivered | Attempt::GivenUp(_) | Attempt::Dropped => {
                state
                    .table
                    .transact(vec![Write::delete(delivery.key())])
                    .await?;
            }
        }
        match &outcome {
            Attempt::Delivered => webhooks::record_outcome(state, &hook.id, None).await?,
            Attempt::GivenUp(reason) => {
                tracing::warn!(webhook = %hook.id, delivery = %delivery.id, ev = %delivery.ev, attempts, reason = %reason, "webhook delivery given up");
                let text = format!("{reason} (after {attempts} attempts)");
                webhooks::record_outcome(state, &hook.id, Some(&text)).await?
            }
            Attempt::Retry(reason) => {
                tracing::info!(webhook = %hook.id, delivery = %delivery.id, attempts, reason = %reason, "webhook delivery failed; tried again later")
            }
            Attempt::Dropped => {}
        }
        Ok(outcome)
    }

    /// POSTs the delivery once; why it failed, if it did.
    async fn post(&self, hook: &webhooks::Webhook, delivery: &Delivery) -> Result<(), String> {
        let url =
            check_syntax(&hook.url, &self.state.config.webhooks).map_err(|e| e.to_string())?;
        let secret = hook
            .secret(&self.state)
            .map_err(|e| format!("the webhook's secret is unreadable: {e}"))?;
        let timestamp = Utc::now().timestamp();
        let response = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("x-eider-delivery", &delivery.id)
            .header("x-eider-event", &delivery.ev)
            .header("x-eider-webhook", hook.id.to_string())
            .header("x-eider-timestamp", timestamp.to_string())
            .header(
                "x-eider-signature",
                signature(&secret, timestamp, &delivery.body),
            )
            .body(delivery.body.clone())
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the endpoint answered HTTP {}", status.as_u16()))
        }
    }
}

/// A request error with its causes (the resolver's refusal sits in the chain).
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "the endpoint did not answer in time".into();
    }
    format!("the request failed: {}", crate::with_causes(error))
}

/// The local server's sender: takes due deliveries from every queue partition, a few at a
/// time in parallel, woken when one is queued and otherwise every [`POLL`]. Runs until
/// `stop` resolves.
pub async fn run_local(state: AppState, stop: impl std::future::Future<Output = ()>) {
    let sender = match Sender::new(state.clone()) {
        Ok(sender) => sender,
        Err(e) => {
            tracing::error!(error = %e, "webhook sender not started");
            return;
        }
    };
    let running: Arc<Mutex<HashSet<String>>> = Arc::default();
    let permits = Arc::new(Semaphore::new(CONCURRENT_DELIVERIES));
    tokio::pin!(stop);
    loop {
        let now = Utc::now();
        for shard in 0..keys::WEBHOOK_QUEUE_SHARDS {
            let due = match webhooks::due(&state, shard, now, TAKE).await {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook queue not read");
                    continue;
                }
            };
            for delivery in due {
                if !running
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(delivery.id.clone())
                {
                    continue;
                }
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let (sender, running, state) = (sender.clone(), running.clone(), state.clone());
                tokio::spawn(async move {
                    let id = delivery.id.clone();
                    // This pass read the queue before an earlier pass's task settled the
                    // delivery and left `running`: only a delivery still queued now is sent,
                    // or it would go out twice.
                    let result = match state.table.get(&delivery.key()).await {
                        Ok(Some(_)) => sender.attempt(delivery).await.map(drop),
                        Ok(None) => Ok(()),
                        Err(e) => Err(e.into()),
                    };
                    if let Err(e) = result {
                        tracing::warn!(error = %e, delivery = %id, "webhook delivery not settled; tried again");
                    }
                    running
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&id);
                    drop(permit);
                });
            }
        }
        tokio::select! {
            _ = state.webhooks.queued() => {}
            _ = tokio::time::sleep(POLL) => {}
            _ = &mut stop => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_of_timestamp_and_body() {
        let sig = signature("key", 1, "body");
        assert_eq!(sig.len(), "sha256=".len() + 64);
        assert_eq!(sig, signature("key", 1, "body"));
        assert_ne!(sig, signature("key", 2, "body"));
        assert_ne!(sig, signature("other", 1, "body"));
        // printf '1.body' | openssl dgst -sha256 -hmac key
        assert_eq!(
            sig,
            "sha256=91b5374b153842ad05b2c4eab9349b8321b14703165bd3fb8b034dfb8be98ae5"
        );
    }
}
