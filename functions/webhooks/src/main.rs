//! The webhook sender Lambda: the table's stream and the delivery queue in, signed POSTs out.
//! `EIDER_WEBHOOK_QUEUE_URL` names the SQS queue.

use anyhow::Context;
use eider_webhooks::WebhookFunction;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    eider_shared::http::init_tracing(true);
    let queue_url = std::env::var("EIDER_WEBHOOK_QUEUE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .context("EIDER_WEBHOOK_QUEUE_URL must be set")?;
    let (state, config) = eider_shared::http::cloud_state_and_config().await?;
    let function = WebhookFunction::new(state, aws_sdk_sqs::Client::new(&config), queue_url)?;
    let function = &function;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        function
            .handle(event.payload)
            .await
            .map_err(lambda_runtime::Error::from)
    }))
    .await
}
