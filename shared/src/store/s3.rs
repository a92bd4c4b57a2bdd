//! The cloud blob store: the [`BlobStore`] port on one S3 bucket, plus the AWS clients.
//!
//! This module owns how blobs map to S3 calls (a ranged get is one `Range` header; a missing
//! key is `None`; deletes are idempotent) and how the AWS SDK clients are built from the
//! environment, path-style S3 included when an endpoint (moto, MinIO, ...) is configured.

use std::ops::Range;
use std::time::Duration;

use anyhow::anyhow;
use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::create_bucket::CreateBucketError;
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::operation::head_object::HeadObjectError;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use aws_types::SdkConfig;
use bytes::Bytes;

use super::rules::check_blob_key;
use super::{BlobStore, StoreError, StoreResult};

/// The [`BlobStore`] port on an S3 bucket.
#[derive(Debug, Clone)]
pub struct S3BlobStore {
    client: Client,
    bucket: String,
}

impl S3BlobStore {
    /// The bucket named `bucket`, reached through `client`.
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        S3BlobStore {
            client,
            bucket: bucket.into(),
        }
    }

    /// Opens the connection (TLS included) with a `HEAD` of a key that never exists, so that a
    /// Lambda's first request finds it open. A failure only means the first request connects.
    pub async fn connect(&self) {
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key("warmup/none")
            .send()
            .await;
        if let Err(e) = head
            && !e.as_service_error().is_some_and(|s| s.is_not_found())
        {
            tracing::debug!(error = %aws_sdk_s3::error::DisplayErrorContext(e), "bucket connection not opened at init");
        }
    }
}

/// Loads the AWS configuration through aws-config's whole provider chain (environment,
/// profiles, SSO, ...; the local server with `EIDER_STORE=aws`) and builds the DynamoDB and S3
/// clients. Lambda functions use `aws_env::clients` instead.
#[cfg(feature = "aws-chain")]
pub async fn aws_clients_from_env() -> (aws_sdk_dynamodb::Client, Client) {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(super::sdk_http::http_client())
        .load()
        .await;
    // The same test as the functions': an endpoint of any kind (AWS_ENDPOINT_URL,
    // AWS_ENDPOINT_URL_S3, a profile's endpoint_url) means path-style.
    let path_style = super::aws_env::s3_endpoint_set(&config);
    clients_from_config(&config, path_style)
}

/// The DynamoDB and S3 clients for `config`. `path_style` addresses buckets as
/// `endpoint/bucket/key`, which custom endpoints such as moto on 127.0.0.1 need.
pub fn clients_from_config(
    config: &SdkConfig,
    path_style: bool,
) -> (aws_sdk_dynamodb::Client, Client) {
    let s3 = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(path_style)
        .build();
    (aws_sdk_dynamodb::Client::new(config), Client::from_conf(s3))
}

/// Creates the bucket (no error when this account already owns it). For tests and local
/// development against moto.
pub async fn create_bucket(client: &Client, name: &str) -> anyhow::Result<()> {
    let mut request = client.create_bucket().bucket(name);
    // us-east-1 is the default location and must not be named.
    if let Some(region) = client.config().region().map(|r| r.as_ref())
        && region != "us-east-1"
    {
        request = request.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region))
                .build(),
        );
    }
    match request.send().await {
        Ok(_) => Ok(()),
        Err(e)
            if matches!(
                e.as_service_error(),
                Some(CreateBucketError::BucketAlreadyOwnedByYou(_))
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(anyhow!("CreateBucket {name}: {}", DisplayErrorContext(e))),
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn put(&self, key: &str, bytes: Bytes) -> StoreResult<()> {
        check_blob_key(key)?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| sdk_error("PutObject", e))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> StoreResult<Option<Bytes>> {
        check_blob_key(key)?;
        self.get_object(key, None).await
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Option<Bytes>> {
        check_blob_key(key)?;
        if range.start >= range.end {
            // A Range header cannot ask for nothing: only tell whether the object exists.
            return Ok(self.exists(key).await?.then(Bytes::new));
        }
        // HTTP ranges are inclusive; S3 clamps the end to the object's length.
        let header = format!("bytes={}-{}", range.start, range.end - 1);
        self.get_object(key, Some(header)).await
    }

    async fn presign_put(&self, key: &str, expires: Duration) -> StoreResult<Option<String>> {
        check_blob_key(key)?;
        let config = PresigningConfig::expires_in(expires).map_err(|e| anyhow!("{e}"))?;
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(config)
            .await
            .map_err(|e| sdk_error("PutObject (presign)", e))?;
        Ok(Some(request.uri().to_string()))
    }

    async fn presign_get(
        &self,
        key: &str,
        expires: Duration,
        content_type: &str,
        disposition: Option<&str>,
    ) -> StoreResult<Option<String>> {
        check_blob_key(key)?;
        let config = PresigningConfig::expires_in(expires).map_err(|e| anyhow!("{e}"))?;
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .response_content_type(content_type)
            .set_response_content_disposition(disposition.map(str::to_string))
            .presigned(config)
            .await
            .map_err(|e| sdk_error("GetObject (presign)", e))?;
        Ok(Some(request.uri().to_string()))
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        check_blob_key(key)?;
        // S3 answers 204 whether or not the object existed.
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| sdk_error("DeleteObject", e))?;
        Ok(())
    }
}

impl S3BlobStore {
    async fn get_object(&self, key: &str, range: Option<String>) -> StoreResult<Option<Bytes>> {
        let ranged = range.is_some();
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_range(range)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if matches!(e.as_service_error(), Some(GetObjectError::NoSuchKey(_))) => {
                return Ok(None);
            }
            // 416: the range starts at or after the end of an existing object.
            Err(e) if ranged && e.code() == Some("InvalidRange") => return Ok(Some(Bytes::new())),
            Err(e) => return Err(sdk_error("GetObject", e)),
        };
        let body = out.body.collect().await.map_err(|e| {
            StoreError::Backend(anyhow!("GetObject {key}: reading the body failed: {e}"))
        })?;
        Ok(Some(body.into_bytes()))
    }

    async fn exists(&self, key: &str) -> StoreResult<bool> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.as_service_error(), Some(HeadObjectError::NotFound(_))) => {
                Ok(false)
            }
            Err(e) => Err(sdk_error("HeadObject", e)),
        }
    }
}

fn sdk_error<E, R>(operation: &str, err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    StoreError::Backend(anyhow!("{operation}: {}", DisplayErrorContext(err)))
}
