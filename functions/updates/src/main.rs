//! The updates Lambda: the router served with response streaming (behind a function URL in
//! `RESPONSE_STREAM` mode), so events reach the client as they are read.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    eider_shared::http::init_tracing(true);
    let state = eider_shared::http::cloud_state().await?;
    lambda_http::run_with_streaming_response(eider_updates::lambda_service(state)).await
}
