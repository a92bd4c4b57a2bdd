//! The filters Lambda: serves this group's router through lambda_http.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    eider_shared::http::init_tracing(true);
    let state = eider_shared::http::cloud_state().await?;
    let app = eider_shared::http::finish(eider_filters::router(), state);
    lambda_http::run(app).await
}
