//! Configuration, read once from the environment into a [`Config`].
//!
//! Every variable is documented in the README. Parsing fails fast with the variable's name.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

/// Settings shared by the Lambda functions and the local server.
#[derive(Debug, Clone)]
pub struct Config {
    /// `EIDER_ACCESS_TOKEN`: when set, every request must carry it.
    pub access_token: Option<String>,
    /// `EIDER_DOMAIN`: domain of generated addresses (`<username>@<domain>`).
    pub domain: String,
    /// `EIDER_MAX_STORAGE`: default quota in bytes for users without their own.
    pub max_storage: u64,
    /// `EIDER_DELETED_USER_DAYS`: a deleted user's messages are purged this much later.
    pub deleted_user_retention: Duration,
    /// `EIDER_MAX_RECIPIENTS` / `EIDER_MAX_FORWARDS`: daily defaults.
    pub max_recipients: u64,
    pub max_forwards: u64,
    /// `EIDER_BODY_LIMIT`: largest request body accepted, in bytes.
    pub body_limit: usize,
    /// `EIDER_AUTHLOG_DAYS`: how long security log entries are kept.
    pub authlog_retention: Duration,
    /// `EIDER_JOURNAL_HOURS`: how long change events are kept for the updates stream.
    pub journal_retention: Duration,
}

/// Settings of the local server only.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// `EIDER_LISTEN`, default 127.0.0.1:8080.
    pub listen: SocketAddr,
    /// `EIDER_LMTP_LISTEN`, default 127.0.0.1:2424.
    pub lmtp_listen: SocketAddr,
    /// `EIDER_DATA_DIR`, default ./data.
    pub data_dir: PathBuf,
}

/// Settings of the Lambda functions only.
#[derive(Debug, Clone)]
pub struct CloudConfig {
    /// `EIDER_TABLE`: the DynamoDB table.
    pub table: String,
    /// `EIDER_BUCKET`: the S3 bucket of raw messages.
    pub bucket: String,
}

const GIB: u64 = 1024 * 1024 * 1024;

impl Default for Config {
    fn default() -> Self {
        Config {
            access_token: None,
            domain: "localhost".into(),
            max_storage: GIB,
            deleted_user_retention: Duration::from_secs(2 * 24 * 3600),
            max_recipients: 2000,
            max_forwards: 2000,
            body_limit: 6 * 1024 * 1024,
            authlog_retention: Duration::from_secs(30 * 24 * 3600),
            journal_retention: Duration::from_secs(24 * 3600),
        }
    }
}

/// Reads a variable; unset and empty both mean "not given".
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parsed<T: std::str::FromStr>(name: &str) -> anyhow::Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    match var(name) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{name}={v:?} is not valid: {e}")),
    }
}

fn required(name: &str) -> anyhow::Result<String> {
    var(name).with_context(|| format!("{name} must be set"))
}

/// The machine's host name, lowercased: WildDuck's default mail domain.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_lowercase())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        let defaults = Config::default();
        let domain = var("EIDER_DOMAIN").unwrap_or_else(host_name).to_lowercase();
        if domain.contains('@') || domain.contains(char::is_whitespace) {
            bail!("EIDER_DOMAIN={domain:?} is not a domain name");
        }
        Ok(Config {
            access_token: var("EIDER_ACCESS_TOKEN"),
            domain,
            max_storage: parsed("EIDER_MAX_STORAGE")?.unwrap_or(defaults.max_storage),
            deleted_user_retention: parsed::<u64>("EIDER_DELETED_USER_DAYS")?
                .map(|d| Duration::from_secs(d * 24 * 3600))
                .unwrap_or(defaults.deleted_user_retention),
            max_recipients: parsed("EIDER_MAX_RECIPIENTS")?.unwrap_or(defaults.max_recipients),
            max_forwards: parsed("EIDER_MAX_FORWARDS")?.unwrap_or(defaults.max_forwards),
            body_limit: parsed("EIDER_BODY_LIMIT")?.unwrap_or(defaults.body_limit),
            authlog_retention: parsed::<u64>("EIDER_AUTHLOG_DAYS")?
                .map(|d| Duration::from_secs(d * 24 * 3600))
                .unwrap_or(defaults.authlog_retention),
            journal_retention: parsed::<u64>("EIDER_JOURNAL_HOURS")?
                .map(|h| Duration::from_secs(h * 3600))
                .unwrap_or(defaults.journal_retention),
        })
    }
}

impl LocalConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(LocalConfig {
            listen: parsed("EIDER_LISTEN")?.unwrap_or(([127, 0, 0, 1], 8080).into()),
            lmtp_listen: parsed("EIDER_LMTP_LISTEN")?.unwrap_or(([127, 0, 0, 1], 2424).into()),
            data_dir: var("EIDER_DATA_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| "data".into()),
        })
    }
}

impl CloudConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(CloudConfig {
            table: required("EIDER_TABLE")?,
            bucket: required("EIDER_BUCKET")?,
        })
    }
}
