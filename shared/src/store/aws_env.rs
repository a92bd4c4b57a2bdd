//! The AWS configuration of a Lambda function, read from the variables Lambda sets for it.
//!
//! Lambda hands a function its region (`AWS_REGION`) and its role's credentials
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) in the environment, valid
//! for the life of the instance. Reading them here instead of through `aws-config`'s provider
//! chain (profiles, SSO, IMDS, web identity: none of which a Lambda uses) keeps that chain and
//! the STS client it links out of every function: a smaller binary and a shorter init.
//! `AWS_ENDPOINT_URL` (moto, DynamoDB Local, the cloud shape on one machine) is honoured too,
//! and, as the SDK's own configuration does, a service's own `AWS_ENDPOINT_URL_<SERVICE>`
//! (`AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_S3`, ...: DynamoDB Local beside MinIO) before
//! it, and `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true` to ignore both.
//! The local server keeps the full chain (`s3::aws_clients_from_env`, feature `aws-chain`).
//! Both give the clients [`super::sdk_http::http_client`].

use std::collections::BTreeMap;

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};
use aws_types::SdkConfig;
use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};

/// Where a value comes from: the process environment, or a map in tests.
type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The configuration from this process's environment.
pub fn sdk_config() -> SdkConfig {
    sdk_config_with(&|name| std::env::var(name).ok())
}

/// The configuration from the variables `lookup` finds. Without credentials the clients are
/// built all the same and their requests fail with the SDK's "no credentials" error.
pub fn sdk_config_with(lookup: Lookup<'_>) -> SdkConfig {
    let var = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
    let mut builder = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(super::sdk_http::http_client());
    if let Some(region) = var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")) {
        builder = builder.region(Region::new(region));
    }
    if let (Some(key), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        let credentials =
            Credentials::new(key, secret, var("AWS_SESSION_TOKEN"), None, "environment");
        builder = builder.credentials_provider(SharedCredentialsProvider::new(credentials));
    }
    let ignore_endpoints =
        var("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if ignore_endpoints {
        return builder.build();
    }
    if let Some(endpoint) = var("AWS_ENDPOINT_URL") {
        builder = builder.endpoint_url(endpoint);
    }
    let mut endpoints = ServiceEndpoints::default();
    for service in SERVICES {
        let name = service_endpoint_variable(service);
        if let Some(endpoint) = var(&name) {
            endpoints.0.insert(name, endpoint);
        }
    }
    builder.service_config(endpoints).build()
}

/// The service ids of the clients Eider's functions build (as the SDK names them).
const SERVICES: [&str; 5] = ["DynamoDB", "S3", "SQS", "SESv2", "ApiGatewayManagementApi"];

/// The SDK's variable for a service's own endpoint: `AWS_ENDPOINT_URL_` and the service id,
/// upper case, spaces as underscores.
fn service_endpoint_variable(service_id: &str) -> String {
    format!(
        "AWS_ENDPOINT_URL_{}",
        service_id.to_uppercase().replace(' ', "_")
    )
}

/// Services' own endpoints, by variable name; each client asks for its own when it is built
/// from the configuration and falls back to `AWS_ENDPOINT_URL`.
#[derive(Debug, Default)]
struct ServiceEndpoints(BTreeMap<String, String>);

impl LoadServiceConfig for ServiceEndpoints {
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        if key.env() != "AWS_ENDPOINT_URL" {
            return None;
        }
        self.0
            .get(&service_endpoint_variable(key.service_id()))
            .cloned()
    }
}

/// Whether `config` sends S3 requests somewhere other than AWS (its own endpoint for S3 or one
/// for every service), from the environment here or from aws-config's whole chain locally.
pub(crate) fn s3_endpoint_set(config: &SdkConfig) -> bool {
    let key = ServiceConfigKey::builder()
        .service_id("S3")
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build();
    let own = match (config.service_config(), key) {
        (Some(services), Ok(key)) => services.load_config(key).is_some(),
        _ => false,
    };
    own || config.endpoint_url().is_some()
}

/// The DynamoDB and S3 clients of a Lambda function for `config` (S3 path-style when an
/// endpoint is set for it).
pub fn clients(config: &SdkConfig) -> (aws_sdk_dynamodb::Client, aws_sdk_s3::Client) {
    super::s3::clients_from_config(config, s3_endpoint_set(config))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use aws_sdk_dynamodb::config::ProvideCredentials;

    use super::*;

    fn config_of(vars: &[(&str, &str)]) -> SdkConfig {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        sdk_config_with(&|name| vars.get(name).cloned())
    }

    #[tokio::test]
    async fn lambda_variables_give_region_credentials_and_endpoint() {
        let config = config_of(&[
            ("AWS_REGION", "eu-north-1"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "token"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
        ]);
        assert_eq!(config.region().map(|r| r.as_ref()), Some("eu-north-1"));
        assert_eq!(config.endpoint_url(), Some("http://127.0.0.1:5000"));
        let credentials = config
            .credentials_provider()
            .expect("credentials")
            .provide_credentials()
            .await
            .unwrap();
        assert_eq!(credentials.access_key_id(), "AKIDEXAMPLE");
        assert_eq!(credentials.secret_access_key(), "secret");
        assert_eq!(credentials.session_token(), Some("token"));
        // A client builds from it (a missing sleep or behaviour version would panic here).
        let _ = aws_sdk_dynamodb::Client::new(&config);
    }

    #[test]
    fn missing_or_blank_variables_leave_the_setting_unset() {
        let config = config_of(&[
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_ENDPOINT_URL", " "),
        ]);
        assert_eq!(config.region().map(|r| r.as_ref()), Some("us-east-1"));
        assert!(
            config.credentials_provider().is_none(),
            "no secret, no credentials"
        );
        assert_eq!(config.endpoint_url(), None);
        let _ = aws_sdk_s3::Client::new(&config_of(&[]));
    }

    /// A loopback server that answers every request with a 500 and reports its request line.
    async fn recording_server() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&head);
                    let _ = tx.send(text.lines().next().unwrap_or("").to_string());
                    let answer = "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                    let _ = socket.write_all(answer.as_bytes()).await;
                });
            }
        });
        (url, rx)
    }

    /// The request line of the first request `rx`'s server got.
    async fn first_request(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> String {
        tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
            .await
            .expect("a request within 10 s")
            .unwrap()
    }

    /// DynamoDB Local beside MinIO: each client goes to its own endpoint, the others to the
    /// global one; S3 is addressed path-style whenever an endpoint applies to it.
    #[tokio::test]
    async fn a_service_endpoint_comes_before_the_global_one() {
        let (global, mut global_rx) = recording_server().await;
        let (dynamo_url, mut dynamo_rx) = recording_server().await;
        let (s3_url, mut s3_rx) = recording_server().await;
        let base = [
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
        ];
        let with = |extra: &[(&str, &str)]| {
            let mut vars = base.to_vec();
            vars.extend_from_slice(extra);
            config_of(&vars)
        };

        let both = with(&[
            ("AWS_ENDPOINT_URL", &global),
            ("AWS_ENDPOINT_URL_DYNAMODB", &dynamo_url),
            ("AWS_ENDPOINT_URL_S3", &s3_url),
            ("AWS_ENDPOINT_URL_SESV2", " "),
        ]);
        let (dynamo, s3) = clients(&both);
        // Sent in the background: the SDK retries the 500s, and only the first request counts.
        tokio::spawn(async move { dynamo.list_tables().send().await });
        assert!(first_request(&mut dynamo_rx).await.starts_with("POST / "));
        tokio::spawn(async move { s3.get_object().bucket("mail").key("a").send().await });
        let line = first_request(&mut s3_rx).await;
        assert!(line.starts_with("GET /mail/a"), "path-style: {line}");

        let only_dynamo = with(&[
            ("AWS_ENDPOINT_URL", &global),
            ("AWS_ENDPOINT_URL_DYNAMODB", &dynamo_url),
        ]);
        let (_, s3) = clients(&only_dynamo);
        tokio::spawn(async move { s3.get_object().bucket("mail").key("b").send().await });
        let line = first_request(&mut global_rx).await;
        assert!(line.starts_with("GET /mail/b"), "{line}");

        let only_s3 = with(&[("AWS_ENDPOINT_URL_S3", &s3_url)]);
        assert!(s3_endpoint_set(&only_s3));
        assert!(!s3_endpoint_set(&with(&[(
            "AWS_ENDPOINT_URL_DYNAMODB",
            &dynamo_url
        )])));

        let ignored = with(&[
            ("AWS_ENDPOINT_URL", &global),
            ("AWS_ENDPOINT_URL_S3", &s3_url),
            ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
        ]);
        assert_eq!(ignored.endpoint_url(), None);
        assert!(!s3_endpoint_set(&ignored));
    }
}
