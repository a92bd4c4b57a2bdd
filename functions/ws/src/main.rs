//! The WebSocket Lambda: `$connect`, `$disconnect` and `$default` of the updates push API.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    eider_shared::http::init_tracing(true);
    let state = eider_shared::http::cloud_state().await?;
    let state = &state;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
            Ok::<_, lambda_runtime::Error>(eider_ws::handle(state, event.payload).await)
        },
    ))
    .await
}
