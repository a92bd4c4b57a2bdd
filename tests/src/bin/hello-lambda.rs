//! The bench's baseline Lambda function: `lambda_http` answering "hello" to any request, built
//! like the functions (release), so their init and size are read against it.

use lambda_http::{Body, Error, Request, Response, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::run(service_fn(|_request: Request| async {
        Ok::<_, Error>(Response::new(Body::from("hello")))
    }))
    .await
}
