//! The stream bridge Lambda: DynamoDB stream batches in, WebSocket pushes out.
//! `EIDER_WS_ENDPOINT` names the WebSocket stage's management endpoint.

use anyhow::Context;
use aws_lambda_events::dynamodb::Event;
use eider_stream_bridge::Bridge;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    eider_shared::http::init_tracing(true);
    let endpoint = std::env::var("EIDER_WS_ENDPOINT")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .context("EIDER_WS_ENDPOINT must be set")?;
    let (state, config) = eider_shared::http::cloud_state_and_config().await?;
    let bridge = Bridge::new(state.table.clone(), Bridge::client(&config, &endpoint));
    let bridge = &bridge;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| async move {
        Ok::<_, lambda_runtime::Error>(bridge.handle(event.payload).await)
    }))
    .await
}
