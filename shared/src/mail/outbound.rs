//! Outgoing mail (autoreplies and forwards): one small enum chooses where a message goes.
//!
//! * [`Outbound::Ses`]: Amazon SES (`SendEmail` with raw content), in the cloud.
//! * [`Outbound::Smtp`]: an SMTP relay named by `EIDER_SMTP_RELAY` (plain SMTP, no TLS or
//!   authentication: a relay on the same host or network, such as a local Postfix or a test
//!   sink), for the local server.
//! * [`Outbound::Outbox`]: without a relay, the local server writes each message as a file,
//!   `<EIDER_DATA_DIR>/outbox/<time>-<id>.eml`, which a user can open in any mail program.
//!
//! [`send_smtp`] is also used for forward targets of type `smtp://host:port` (a relay chosen
//! by the filter), whatever the outbound mode.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};

use crate::id::ObjectId;

/// The SMTP envelope of an outgoing message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutEnvelope {
    /// MAIL FROM; `""` is the null sender (autoreplies).
    pub from: String,
    pub to: Vec<String>,
}

/// Where outgoing mail goes.
#[derive(Debug, Clone)]
pub enum Outbound {
    Ses {
        client: aws_sdk_sesv2::Client,
        configuration_set: Option<String>,
    },
    Smtp {
        host: String,
        port: u16,
    },
    Outbox(PathBuf),
}

/// How long one SMTP conversation may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

impl Outbound {
    /// The local choice: the relay when one is configured, the outbox folder otherwise.
    pub fn local(relay: Option<&str>, data_dir: &std::path::Path) -> anyhow::Result<Outbound> {
        match relay {
            Some(relay) => {
                let (host, port) = split_host_port(relay, 25)?;
                Ok(Outbound::Smtp { host, port })
            }
            None => Ok(Outbound::Outbox(data_dir.join("outbox"))),
        }
    }

    /// What the mailer is, for logs.
    pub fn describe(&self) -> String {
        match self {
            Outbound::Ses { .. } => "SES".into(),
            Outbound::Smtp { host, port } => format!("SMTP relay {host}:{port}"),
            Outbound::Outbox(dir) => format!("outbox {}", dir.display()),
        }
    }

    /// Whether MAIL FROM must be one of our own (verified) addresses: SES refuses to send
    /// for a sender it has not verified, so forwards go out from the forwarding recipient.
    pub fn needs_own_sender(&self) -> bool {
        matches!(self, Outbound::Ses { .. })
    }

    /// Sends `raw` to the envelope's recipients; returns an id for the log and the message
    /// events (SES message id, relay answer, or outbox file name).
    pub async fn send(&self, envelope: &OutEnvelope, raw: &[u8]) -> anyhow::Result<String> {
        if envelope.to.is_empty() {
            bail!("no recipients");
        }
        match self {
            Outbound::Ses {
                client,
                configuration_set,
            } => {
                use aws_sdk_sesv2::primitives::Blob;
                use aws_sdk_sesv2::types::{Destination, EmailContent, RawMessage};
                let content = EmailContent::builder()
                    .raw(RawMessage::builder().data(Blob::new(raw)).build()?)
                    .build();
                let destination = Destination::builder()
                    .set_to_addresses(Some(envelope.to.clone()))
                    .build();
                let answer = client
                    .send_email()
                    .set_from_email_address(
                        (!envelope.from.is_empty()).then(|| envelope.from.clone()),
                    )
                    .destination(destination)
                    .content(content)
                    .set_configuration_set_name(configuration_set.clone())
                    .send()
                    .await
                    .map_err(|e| {
                        anyhow!(
                            "SES SendEmail: {}",
                            aws_sdk_sesv2::error::DisplayErrorContext(e)
                        )
                    })?;
                Ok(answer.message_id.unwrap_or_default())
            }
            Outbound::Smtp { host, port } => send_smtp(host, *port, envelope, raw).await,
            Outbound::Outbox(dir) => write_outbox(dir, envelope, raw).await,
        }
    }
}

/// `host:port` (or a bare host with `default_port`).
pub fn split_host_port(text: &str, default_port: u16) -> anyhow::Result<(String, u16)> {
    let text = text.trim();
    match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => Ok((
            host.trim_matches(['[', ']']).to_string(),
            port.parse()
                .with_context(|| format!("{text:?}: the port is not a number"))?,
        )),
        Some(_) => bail!("{text:?}: no host"),
        None if !text.is_empty() => Ok((text.to_string(), default_port)),
        None => bail!("empty host"),
    }
}

/// One plain SMTP conversation with `host:port` (lettre).
pub async fn send_smtp(
    host: &str,
    port: u16,
    envelope: &OutEnvelope,
    raw: &[u8],
) -> anyhow::Result<String> {
    use lettre::address::{Address, Envelope};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
    let from = if envelope.from.is_empty() {
        None
    } else {
        Some(
            envelope
                .from
                .parse::<Address>()
                .with_context(|| format!("MAIL FROM {:?}", envelope.from))?,
        )
    };
    let to = envelope
        .to
        .iter()
        .map(|t| {
            t.parse::<Address>()
                .with_context(|| format!("RCPT TO {t:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let envelope = Envelope::new(from, to)?;
    // Plain SMTP: the relay is trusted (same host or network); TLS is not offered by this
    // mailer, so `builder_dangerous` (no TLS) is the intended mode.
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(port)
        .timeout(Some(SMTP_TIMEOUT))
        .build();
    let answer = transport
        .send_raw(&envelope, raw)
        .await
        .with_context(|| format!("SMTP {host}:{port}"))?;
    Ok(answer.message().collect::<Vec<_>>().join(" "))
}

/// Writes the message to `<dir>/<time>-<id>.eml` (temporary file, then rename, so a reader
/// never sees half a message). The envelope goes in front as `X-Eider-Envelope-*` headers.
async fn write_outbox(
    dir: &std::path::Path,
    envelope: &OutEnvelope,
    raw: &[u8],
) -> anyhow::Result<String> {
    tokio::fs::create_dir_all(dir)
        .await
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let now = chrono::Utc::now();
    let name = format!(
        "{}-{}.eml",
        now.format("%Y%m%dT%H%M%S%.3fZ"),
        ObjectId::new()
    );
    let mut content = format!(
        "X-Eider-Envelope-From: <{}>\r\nX-Eider-Envelope-To: {}\r\n",
        envelope.from,
        envelope
            .to
            .iter()
            .map(|t| format!("<{t}>"))
            .collect::<Vec<_>>()
            .join(", ")
    )
    .into_bytes();
    content.extend_from_slice(raw);
    let temporary = dir.join(format!(".{name}.tmp"));
    tokio::fs::write(&temporary, &content)
        .await
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    tokio::fs::rename(&temporary, dir.join(&name))
        .await
        .with_context(|| format!("cannot rename into {}", dir.display()))?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relays_are_host_and_port() {
        assert_eq!(
            split_host_port("127.0.0.1:2525", 25).unwrap(),
            ("127.0.0.1".to_string(), 2525)
        );
        assert_eq!(
            split_host_port("mx.example.com", 25).unwrap(),
            ("mx.example.com".to_string(), 25)
        );
        assert!(split_host_port(":25", 25).is_err());
        assert!(split_host_port("x:y", 25).is_err());
    }

    #[tokio::test]
    async fn the_outbox_holds_one_readable_file_per_message() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbound::Outbox(dir.path().join("outbox"));
        let envelope = OutEnvelope {
            from: String::new(),
            to: vec!["a@example.com".into()],
        };
        let name = outbox
            .send(&envelope, b"Subject: hi\r\n\r\nbody\r\n")
            .await
            .unwrap();
        assert!(name.ends_with(".eml"));
        let text = std::fs::read_to_string(dir.path().join("outbox").join(&name)).unwrap();
        assert!(
            text.starts_with(
                "X-Eider-Envelope-From: <>\r\nX-Eider-Envelope-To: <a@example.com>\r\n"
            )
        );
        assert!(text.ends_with("Subject: hi\r\n\r\nbody\r\n"));
        assert_eq!(
            std::fs::read_dir(dir.path().join("outbox"))
                .unwrap()
                .count(),
            1
        );
    }
}
