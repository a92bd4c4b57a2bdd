//! The ingest Lambda: SES receipt events in, deliveries out; autoreplies and forwards go out
//! through SES.

use aws_lambda_events::event::ses::SimpleEmailEvent;
use eider_shared::config::DeliveryConfig;
use eider_shared::domain::delivery::Delivery;
use eider_shared::mail::outbound::Outbound;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    eider_shared::http::init_tracing(true);
    let (state, aws) = eider_shared::http::cloud_state_and_config().await?;
    let config = DeliveryConfig::from_env()?;
    let outbound = Outbound::Ses {
        client: aws_sdk_sesv2::Client::new(&aws),
        configuration_set: config.ses_configuration_set.clone(),
    };
    let ingest = eider_ingest::Ingest {
        delivery: Delivery::new(state, outbound, config),
    };
    let ingest = &ingest;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<SimpleEmailEvent>| async move {
            // Boxed: the pipeline's future is deep enough to exceed the compiler's layout
            // recursion limit when inlined into the runtime's.
            Box::pin(eider_ingest::handle(ingest, event.payload))
                .await
                .map_err(lambda_runtime::Error::from)
        },
    ))
    .await
}
