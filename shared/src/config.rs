//! Configuration, read once from the environment into a [`Config`].
//!
//! Every variable is documented in the README. Parsing fails fast with the variable's name.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
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
    /// `EIDER_UPDATES_*`: timing of the updates stream (`GET /users/{user}/updates`).
    pub updates: UpdatesConfig,
    /// `EIDER_ARCHIVE_DAYS`: how long deleted messages stay restorable in the archive.
    pub archive_retention: Duration,
    /// `EIDER_INLINE_LIMIT`: raw sources and attachments larger than this (bytes) are answered
    /// with a redirect to a short-lived presigned URL where the blob store can presign (S3),
    /// because a Lambda response holds at most 6 MB.
    pub inline_limit: u64,
    /// `EIDER_AUTH_FAILURES` / `EIDER_AUTH_WINDOW_SECONDS` / `EIDER_AUTH_LOCK_SECONDS`:
    /// brute-force protection of `/authenticate` and TOTP checks.
    pub auth_limit: AuthLimit,
    /// `EIDER_SECRET_KEY`: when set, TOTP seeds are encrypted at rest with it.
    pub secret_key: Option<SecretKey>,
    /// `EIDER_IMAP_*`, `EIDER_POP3_*`, `EIDER_SMTP_*`: the mail servers clients are told to
    /// use (Apple configuration profiles of application-specific passwords).
    pub imap: MailServer,
    pub pop3: MailServer,
    pub smtp: MailServer,
    /// `EIDER_TOKEN_*`, `EIDER_STRICT_2FA`: user access tokens (`POST /authenticate` with
    /// `token: true`).
    pub tokens: TokenConfig,
    /// Run-time overrides of some of the defaults above (`/settings`), shared by every clone
    /// of this config; read through [`Config::effective`].
    pub overrides: Arc<Overrides>,
    /// `EIDER_WEBHOOK_*`: where webhooks may point, and how their deliveries are tried.
    pub webhooks: WebhookConfig,
}

/// Webhook deliveries (`/webhooks`).
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// `EIDER_WEBHOOK_PRIVATE`: URLs may reach private networks (10/8, 172.16/12,
    /// 192.168/16, 100.64/10, fc00::/7). Off in Lambda unless set; the local server allows.
    pub allow_private: bool,
    /// Loopback URLs (127/8, ::1): only the local server (development and tests).
    pub allow_loopback: bool,
    /// `EIDER_WEBHOOK_TIMEOUT_SECONDS`: one attempt's time, connection to last byte.
    pub timeout: Duration,
    /// `EIDER_WEBHOOK_ATTEMPTS`: attempts before a delivery is given up (WildDuck's 5).
    pub attempts: u32,
    /// `EIDER_WEBHOOK_BACKOFF_MS`: the wait after the first failed attempt, doubled after
    /// each (WildDuck's 2 s).
    pub backoff: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            allow_private: false,
            allow_loopback: false,
            timeout: Duration::from_secs(10),
            attempts: 5,
            backoff: Duration::from_secs(2),
        }
    }
}

/// The defaults an operator can change at run time through `/settings` (WildDuck's `const:`
/// keys that Eider has).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tunable {
    /// `const:max:storage`: the default quota in bytes.
    MaxStorage,
    /// `const:max:recipients`: recipients a user may send to per day, by default.
    MaxRecipients,
    /// `const:max:forwards`: forwards per day, by default.
    MaxForwards,
    /// `const:archive:time`: how long deleted messages stay restorable, in milliseconds.
    ArchiveTime,
    /// `const:authlog:time`: how long security log entries are kept, in milliseconds.
    AuthlogTime,
}

impl Tunable {
    pub const ALL: [Tunable; 5] = [
        Tunable::MaxStorage,
        Tunable::MaxRecipients,
        Tunable::MaxForwards,
        Tunable::ArchiveTime,
        Tunable::AuthlogTime,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// Values set through `/settings`, one per [`Tunable`]; `u64::MAX` means "not set". Atomics,
/// so a refresh never blocks a request reading them.
#[derive(Debug)]
pub struct Overrides {
    values: [AtomicU64; 5],
    /// When the values were last read from the table (unix milliseconds; 0: never).
    pub refreshed_at: AtomicI64,
}

impl Default for Overrides {
    fn default() -> Self {
        Overrides {
            values: std::array::from_fn(|_| AtomicU64::new(u64::MAX)),
            refreshed_at: AtomicI64::new(0),
        }
    }
}

impl Overrides {
    pub fn get(&self, tunable: Tunable) -> Option<u64> {
        let value = self.values[tunable.index()].load(Ordering::Relaxed);
        (value != u64::MAX).then_some(value)
    }

    pub fn set(&self, tunable: Tunable, value: Option<u64>) {
        self.values[tunable.index()].store(value.unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

impl Config {
    /// A tunable default as configured (environment or built in), ignoring overrides.
    pub fn configured(&self, tunable: Tunable) -> u64 {
        let millis = |d: Duration| d.as_millis().min(u64::MAX as u128) as u64;
        match tunable {
            Tunable::MaxStorage => self.max_storage,
            Tunable::MaxRecipients => self.max_recipients,
            Tunable::MaxForwards => self.max_forwards,
            Tunable::ArchiveTime => millis(self.archive_retention),
            Tunable::AuthlogTime => millis(self.authlog_retention),
        }
    }

    /// A tunable default as it applies now: the `/settings` override, else as configured.
    pub fn effective(&self, tunable: Tunable) -> u64 {
        self.overrides
            .get(tunable)
            .unwrap_or_else(|| self.configured(tunable))
    }

    /// The default quota in bytes.
    pub fn max_storage(&self) -> u64 {
        self.effective(Tunable::MaxStorage)
    }
    /// The default daily recipients limit.
    pub fn max_recipients(&self) -> u64 {
        self.effective(Tunable::MaxRecipients)
    }
    /// The default daily forwards limit.
    pub fn max_forwards(&self) -> u64 {
        self.effective(Tunable::MaxForwards)
    }
    /// How long deleted messages stay in the archive.
    pub fn archive_retention(&self) -> Duration {
        Duration::from_millis(self.effective(Tunable::ArchiveTime))
    }
    /// How long security log entries are kept.
    pub fn authlog_retention(&self) -> Duration {
        Duration::from_millis(self.effective(Tunable::AuthlogTime))
    }
}

/// User access tokens, as WildDuck issues them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenConfig {
    /// `EIDER_TOKEN_TTL_DAYS`: a token unused this long expires (each use renews it).
    pub ttl: Duration,
    /// `EIDER_TOKEN_LIFETIME_DAYS`: a token expires this long after it was issued, used or not.
    pub lifetime: Duration,
    /// `EIDER_STRICT_2FA`: with 2FA enabled, `token: true` answers a `totpNonce` and no token;
    /// the token comes from `POST /users/{user}/2fa/totp/check` with that nonce (WildDuck's
    /// newest default). Off by default: WildDuck's web client expects the token at once and
    /// checks the second factor in its own session.
    pub strict_2fa: bool,
}

impl Default for TokenConfig {
    /// WildDuck's `tokenTTL` (14 days) and `tokenLifetime` (180 days).
    fn default() -> Self {
        TokenConfig {
            ttl: Duration::from_secs(14 * 24 * 3600),
            lifetime: Duration::from_secs(180 * 24 * 3600),
            strict_2fa: false,
        }
    }
}

/// Timing of the updates stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdatesConfig {
    /// `EIDER_UPDATES_KEEPALIVE_SECONDS`: a comment goes out after this long without output,
    /// so proxies and clients see the connection alive.
    pub keepalive: Duration,
    /// `EIDER_UPDATES_GAP_SECONDS`: how long a missing journal number holds back the events
    /// after it (its change may still be committing) before it counts as a failed change.
    pub gap_grace: Duration,
    /// `EIDER_UPDATES_POLL_MS`: how often a stream reads the journal where no in-process
    /// notifier wakes it (Lambda).
    pub poll: Duration,
    /// `EIDER_UPDATES_MAX_SECONDS`: a stream ends after this long (in Lambda earlier, shortly
    /// before the function's timeout); the client reconnects with `Last-Event-ID`.
    pub max_duration: Duration,
}

impl Default for UpdatesConfig {
    /// WildDuck's keepalive (15 s) and lifetime (30 min); 1 s polling; 5 s grace for gaps.
    fn default() -> Self {
        UpdatesConfig {
            keepalive: Duration::from_secs(15),
            gap_grace: Duration::from_secs(5),
            poll: Duration::from_millis(1000),
            max_duration: Duration::from_secs(30 * 60),
        }
    }
}

/// How many failed attempts one user (or one unknown login name) may make in a window, and
/// how long further attempts are then refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthLimit {
    pub max_failures: u32,
    pub window: Duration,
    pub lock: Duration,
}

impl Default for AuthLimit {
    /// WildDuck's numbers: 12 failures in 120 s.
    fn default() -> Self {
        AuthLimit {
            max_failures: 12,
            window: Duration::from_secs(120),
            lock: Duration::from_secs(120),
        }
    }
}

/// A 256-bit key. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(pub [u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl std::str::FromStr for SecretKey {
    type Err = String;
    /// 64 hex digits, or 32 bytes in base64 (standard or URL-safe, padded or not).
    fn from_str(text: &str) -> Result<Self, String> {
        use base64::Engine;
        use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
        let text = text.trim();
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|e| e.to_string())?
        } else {
            let unpadded = text.trim_end_matches('=');
            STANDARD_NO_PAD
                .decode(unpadded)
                .or_else(|_| URL_SAFE_NO_PAD.decode(unpadded))
                .map_err(|_| "expected 64 hex digits or 32 bytes in base64".to_string())?
        };
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "the key must be 32 bytes (64 hex digits)".to_string())?;
        Ok(SecretKey(key))
    }
}

/// Where clients reach one mail service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailServer {
    pub host: String,
    pub port: u16,
    /// Implicit TLS on connect (993, 995, 465); false means STARTTLS or plain.
    pub secure: bool,
}

impl MailServer {
    fn from_env(prefix: &str, default_host: &str, default_port: u16) -> anyhow::Result<Self> {
        let secure = match var(&format!("{prefix}_SECURE")) {
            None => true,
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => true,
                "false" | "0" | "no" | "off" => false,
                _ => bail!("{prefix}_SECURE={v:?} is not valid: expected true or false"),
            },
        };
        Ok(MailServer {
            host: var(&format!("{prefix}_HOST"))
                .map(|h| h.trim().to_lowercase())
                .unwrap_or_else(|| default_host.to_string()),
            port: parsed(&format!("{prefix}_PORT"))?.unwrap_or(default_port),
            secure,
        })
    }
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
    /// `EIDER_JANITOR_SECONDS`, default 60: how often the local server runs the janitor
    /// (expired and archived messages, deleted mailboxes and users); 0 turns it off.
    pub janitor_interval: Duration,
    /// `EIDER_HTTP_MAX_CONNECTIONS`, default 512: HTTP connections open at once (more wait).
    pub http_max_connections: usize,
    /// `EIDER_HTTP_HEADER_TIMEOUT_SECONDS`, default 30: time to send a request's header; an
    /// idle connection is closed after it.
    pub http_header_timeout: Duration,
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
            updates: UpdatesConfig::default(),
            archive_retention: Duration::from_secs(14 * 24 * 3600),
            inline_limit: 5 * 1024 * 1024,
            auth_limit: AuthLimit::default(),
            secret_key: None,
            imap: MailServer {
                host: "localhost".into(),
                port: 993,
                secure: true,
            },
            pop3: MailServer {
                host: "localhost".into(),
                port: 995,
                secure: true,
            },
            smtp: MailServer {
                host: "localhost".into(),
                port: 465,
                secure: true,
            },
            tokens: TokenConfig::default(),
            overrides: Arc::default(),
            webhooks: WebhookConfig::default(),
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

/// `true`/`false` (or 1/0, yes/no, on/off).
fn flag(name: &str) -> anyhow::Result<Option<bool>> {
    match var(name) {
        None => Ok(None),
        Some(v) => match v.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Some(true)),
            "false" | "0" | "no" | "off" => Ok(Some(false)),
            _ => bail!("{name}={v:?} is not valid: expected true or false"),
        },
    }
}

/// A whole number above 0.
fn positive(name: &str) -> anyhow::Result<Option<u64>> {
    match parsed::<u64>(name)? {
        Some(0) => bail!("{name} must be greater than 0"),
        other => Ok(other),
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
            updates: UpdatesConfig {
                keepalive: positive("EIDER_UPDATES_KEEPALIVE_SECONDS")?
                    .map(Duration::from_secs)
                    .unwrap_or(defaults.updates.keepalive),
                gap_grace: parsed::<u64>("EIDER_UPDATES_GAP_SECONDS")?
                    .map(Duration::from_secs)
                    .unwrap_or(defaults.updates.gap_grace),
                poll: positive("EIDER_UPDATES_POLL_MS")?
                    .map(Duration::from_millis)
                    .unwrap_or(defaults.updates.poll),
                max_duration: positive("EIDER_UPDATES_MAX_SECONDS")?
                    .map(Duration::from_secs)
                    .unwrap_or(defaults.updates.max_duration),
            },
            archive_retention: parsed::<u64>("EIDER_ARCHIVE_DAYS")?
                .map(|d| Duration::from_secs(d * 24 * 3600))
                .unwrap_or(defaults.archive_retention),
            inline_limit: parsed("EIDER_INLINE_LIMIT")?.unwrap_or(defaults.inline_limit),
            auth_limit: AuthLimit {
                max_failures: positive("EIDER_AUTH_FAILURES")?
                    .unwrap_or(u64::from(defaults.auth_limit.max_failures))
                    .min(u64::from(u32::MAX)) as u32,
                window: positive("EIDER_AUTH_WINDOW_SECONDS")?
                    .map(Duration::from_secs)
                    .unwrap_or(defaults.auth_limit.window),
                lock: positive("EIDER_AUTH_LOCK_SECONDS")?
                    .map(Duration::from_secs)
                    .unwrap_or(defaults.auth_limit.lock),
            },
            secret_key: parsed("EIDER_SECRET_KEY").map_err(|_| {
                anyhow::anyhow!(
                    "EIDER_SECRET_KEY is not valid: expected 32 bytes as 64 hex digits or base64"
                )
            })?,
            imap: MailServer::from_env("EIDER_IMAP", &domain, 993)?,
            pop3: MailServer::from_env("EIDER_POP3", &domain, 995)?,
            smtp: MailServer::from_env("EIDER_SMTP", &domain, 465)?,
            tokens: TokenConfig {
                ttl: positive("EIDER_TOKEN_TTL_DAYS")?
                    .map(|d| Duration::from_secs(d * 24 * 3600))
                    .unwrap_or(defaults.tokens.ttl),
                lifetime: positive("EIDER_TOKEN_LIFETIME_DAYS")?
                    .map(|d| Duration::from_secs(d * 24 * 3600))
                    .unwrap_or(defaults.tokens.lifetime),
                strict_2fa: flag("EIDER_STRICT_2FA")?.unwrap_or(defaults.tokens.strict_2fa),
            },
            overrides: Arc::default(),
            webhooks: WebhookConfig {
                allow_private: flag("EIDER_WEBHOOK_PRIVATE")?
                    .unwrap_or(defaults.webhooks.allow_private),
                allow_loopback: false,
                timeout: positive("EIDER_WEBHOOK_TIMEOUT_SECONDS")?
                    .map(Duration::from_secs)
                    .unwrap_or(defaults.webhooks.timeout),
                attempts: positive("EIDER_WEBHOOK_ATTEMPTS")?
                    .map(|n| n.min(20) as u32)
                    .unwrap_or(defaults.webhooks.attempts),
                backoff: positive("EIDER_WEBHOOK_BACKOFF_MS")?
                    .map(Duration::from_millis)
                    .unwrap_or(defaults.webhooks.backoff),
            },
            domain,
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
            janitor_interval: Duration::from_secs(
                parsed::<u64>("EIDER_JANITOR_SECONDS")?.unwrap_or(60),
            ),
            http_max_connections: parsed::<usize>("EIDER_HTTP_MAX_CONNECTIONS")?
                .unwrap_or(512)
                .max(1),
            http_header_timeout: Duration::from_secs(
                parsed::<u64>("EIDER_HTTP_HEADER_TIMEOUT_SECONDS")?
                    .unwrap_or(30)
                    .max(1),
            ),
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

/// Settings of incoming and outgoing mail (the delivery pipeline, its LMTP and SES entry
/// points and the outbound mailer).
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// `EIDER_AUTOREPLY_HOURS` (4): a sender gets at most one autoreply per this interval.
    pub autoreply_interval: Duration,
    /// `EIDER_TARGET_URL_TIMEOUT_SECONDS` (10): how long an `action_targetUrl` upload may take.
    pub target_url_timeout: Duration,
    /// `EIDER_SMTP_RELAY` (`host:port`, local server only): where autoreplies and forwards
    /// go; unset, they are written to `<EIDER_DATA_DIR>/outbox/` instead.
    pub smtp_relay: Option<String>,
    /// `EIDER_INCOMING_PREFIX` (`incoming/`): where the SES receipt rule writes raw messages
    /// in the bucket (the ingest function reads `<prefix><SES message id>`).
    pub incoming_prefix: String,
    /// `EIDER_SES_CONFIGURATION_SET` (unset): the SES configuration set outgoing mail uses.
    pub ses_configuration_set: Option<String>,
    /// `EIDER_SPAM_HEADERS` (`X-Rspamd-Spam,X-Spam-Flag,X-Spam-Status`): headers an upstream
    /// filter marks spam with; a message where one of them says `yes` is spam (Junk), unless
    /// a filter decided otherwise or the user's `spamLevel` is 100. Empty: none.
    pub spam_headers: Vec<String>,
}

/// The spam headers of rspamd and SpamAssassin.
const SPAM_HEADERS: [&str; 3] = ["X-Rspamd-Spam", "X-Spam-Flag", "X-Spam-Status"];

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            autoreply_interval: Duration::from_secs(4 * 3600),
            target_url_timeout: Duration::from_secs(10),
            smtp_relay: None,
            incoming_prefix: "incoming/".into(),
            ses_configuration_set: None,
            spam_headers: SPAM_HEADERS.iter().map(|h| h.to_string()).collect(),
        }
    }
}

impl DeliveryConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        let defaults = DeliveryConfig::default();
        let relay = var("EIDER_SMTP_RELAY").map(|r| r.trim().to_string());
        if let Some(r) = &relay
            && r.rsplit_once(':')
                .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
        {
            bail!("EIDER_SMTP_RELAY={r:?} is not valid: expected host:port");
        }
        Ok(DeliveryConfig {
            autoreply_interval: positive("EIDER_AUTOREPLY_HOURS")?
                .map(|h| Duration::from_secs(h * 3600))
                .unwrap_or(defaults.autoreply_interval),
            target_url_timeout: positive("EIDER_TARGET_URL_TIMEOUT_SECONDS")?
                .map(Duration::from_secs)
                .unwrap_or(defaults.target_url_timeout),
            smtp_relay: relay,
            incoming_prefix: var("EIDER_INCOMING_PREFIX").unwrap_or(defaults.incoming_prefix),
            ses_configuration_set: var("EIDER_SES_CONFIGURATION_SET"),
            spam_headers: match std::env::var("EIDER_SPAM_HEADERS") {
                Ok(list) => list
                    .split(',')
                    .map(|h| h.trim().to_string())
                    .filter(|h| !h.is_empty())
                    .collect(),
                Err(_) => defaults.spam_headers,
            },
        })
    }
}
