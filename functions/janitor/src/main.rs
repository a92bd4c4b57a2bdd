//! The janitor Lambda: runs the purges on each EventBridge schedule tick, and sends queued
//! mail that is due (scheduled sends, retries): local users through the delivery pipeline,
//! everyone else through SES. Invoked with `{"reconcileSearch": ...}`, it repairs search
//! indexes instead (`eider_janitor::dispatch`).

use std::sync::Arc;

use eider_shared::config::DeliveryConfig;
use eider_shared::domain::delivery::Delivery;
use eider_shared::mail::outbound::Outbound;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    eider_shared::http::init_tracing(true);
    let (state, aws) = eider_shared::http::cloud_state_and_config().await?;
    let config = DeliveryConfig::from_env()?;
    let outbound = Outbound::Ses {
        client: aws_sdk_sesv2::Client::new(&aws),
        configuration_set: config.ses_configuration_set.clone(),
    };
    let delivery = Delivery::new(state.clone(), outbound, config);
    let state = state.with_dispatcher(Arc::new(delivery));
    let handler = lambda_runtime::service_fn(|event| eider_janitor::dispatch(&state, event));
    lambda_runtime::run(handler).await
}
