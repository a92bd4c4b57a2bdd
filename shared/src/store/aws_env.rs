//! The AWS configuration of a Lambda function, read from the variables Lambda sets for it.
//!
//! Lambda hands a function its region (`AWS_REGION`) and its role's credentials
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) in the environment, valid
//! for the life of the instance. Reading them here instead of through `aws-config`'s provider
//! chain (profiles, SSO, IMDS, web identity: none of which a Lambda uses) keeps that chain and
//! the STS client it links out of every function: a smaller binary and a shorter init.
//! `AWS_ENDPOINT_URL` (moto, DynamoDB Local, the cloud shape on one machine) is honoured too.
//! The local server keeps the full chain (`s3::aws_clients_from_env`, feature `aws-chain`).
//! Both give the clients [`super::sdk_http::http_client`].

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};
use aws_types::SdkConfig;

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
    if let Some(endpoint) = var("AWS_ENDPOINT_URL") {
        builder = builder.endpoint_url(endpoint);
    }
    builder.build()
}

/// The DynamoDB and S3 clients of a Lambda function for `config` (S3 path-style when an
/// endpoint is set).
pub fn clients(config: &SdkConfig) -> (aws_sdk_dynamodb::Client, aws_sdk_s3::Client) {
    let path_style = config.endpoint_url().is_some();
    super::s3::clients_from_config(config, path_style)
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
}
