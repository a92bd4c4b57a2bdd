//! The stream indexer Lambda: batches of the table's stream (message items only, filtered by
//! the event source mapping) applied to each user's search index in the bucket.

use aws_lambda_events::dynamodb::Event;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    eider_shared::http::init_tracing(true);
    let state = eider_shared::http::cloud_state().await?;
    let indexer = eider_indexer::Indexer::new(state)?;
    let indexer = &indexer;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| async move {
        Ok::<_, lambda_runtime::Error>(indexer.handle(event.payload).await)
    }))
    .await
}
