//! The janitor Lambda: runs the purges on each EventBridge schedule tick.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    eider_shared::http::init_tracing(true);
    let state = eider_shared::http::cloud_state().await?;
    let handler = lambda_runtime::service_fn(|event| eider_janitor::handle(&state, event));
    lambda_runtime::run(handler).await
}
