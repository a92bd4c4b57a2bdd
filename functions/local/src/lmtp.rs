//! The local server's LMTP listener (RFC 2033) on `EIDER_LMTP_LISTEN`: the local entry point
//! of incoming mail. It speaks the protocol only; what happens to a message is the shared
//! delivery pipeline's (`eider_shared::domain::delivery`).
//!
//! * `LHLO`, `MAIL FROM` (with `SIZE=`), `RCPT TO`, `DATA`, `RSET`, `NOOP`, `QUIT`, `VRFY`
//!   (252). `HELO`/`EHLO` are refused: this is LMTP.
//! * An unknown recipient is refused at `RCPT` with 550; a disabled one with 550 too.
//! * After `DATA`, one reply per accepted recipient, in `RCPT` order: 250 stored (or
//!   dropped by a filter), 552 over quota for that recipient only, 451 on a temporary fault.
//! * Bounded everything: command lines (`max_line`), message size (`max_size`; a larger
//!   message is read to its end and refused with 552 for every recipient), recipients per
//!   message, errors per session, concurrent sessions, and time per command and per message.
//!   Any input, however malformed, gets a reply or a closed connection, never a panic.

use std::sync::Arc;
use std::time::Duration;

use eider_shared::domain::delivery::{Delivery, Incoming, Outcome, Recipient, RecipientError};
use eider_shared::domain::messages::MAX_MESSAGE_SIZE;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// The protocol's limits.
#[derive(Debug, Clone)]
pub struct LmtpLimits {
    /// Largest message, in bytes.
    pub max_size: usize,
    /// Most recipients per message.
    pub max_recipients: usize,
    /// Longest command line, in bytes (RFC 5321 says 512; some clients send more).
    pub max_line: usize,
    /// Time allowed for one command line.
    pub command_timeout: Duration,
    /// Time allowed for a whole message after `354`.
    pub data_timeout: Duration,
    /// Sessions served at once; more are answered 421.
    pub max_sessions: usize,
    /// Bad commands before the session is closed.
    pub max_errors: usize,
}

impl Default for LmtpLimits {
    fn default() -> Self {
        LmtpLimits {
            max_size: MAX_MESSAGE_SIZE,
            max_recipients: 100,
            max_line: 4096,
            // WildDuck's LMTP (smtp-server) closes a silent session after 60 s: idle sessions
            // can't hold every slot for long.
            command_timeout: Duration::from_secs(60),
            data_timeout: Duration::from_secs(600),
            max_sessions: 64,
            max_errors: 10,
        }
    }
}

/// Serves LMTP on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    delivery: Delivery,
    limits: LmtpLimits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let limits = Arc::new(limits);
    let sessions = Arc::new(Semaphore::new(limits.max_sessions));
    let hostname = delivery.state.config.domain.clone();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "LMTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = sessions.clone().try_acquire_owned() else {
            tokio::spawn(async move {
                let mut stream = stream;
                let _ = stream
                    .write_all(b"421 4.3.2 Too many connections, try again later\r\n")
                    .await;
            });
            continue;
        };
        let delivery = delivery.clone();
        let limits = limits.clone();
        let hostname = hostname.clone();
        tokio::spawn(async move {
            if let Err(e) = session(stream, &delivery, &limits, &hostname).await {
                tracing::debug!(%peer, error = %e, "LMTP session ended with an I/O error");
            }
            drop(permit);
        });
    }
}

/// One line as read.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A whole line, its line break included.
    Text,
    /// Longer than allowed: skipped up to its line break.
    TooLong,
    /// The peer closed the connection (a partial last line is dropped).
    Eof,
}

/// Reads one line into `out`, never holding more than `max` bytes of it.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
    out: &mut Vec<u8>,
) -> std::io::Result<Line> {
    out.clear();
    let mut too_long = false;
    loop {
        let buffer = reader.fill_buf().await?;
        if buffer.is_empty() {
            return Ok(Line::Eof);
        }
        let (chunk, done) = match buffer.iter().position(|b| *b == b'\n') {
            Some(i) => (&buffer[..=i], true),
            None => (buffer, false),
        };
        let used = chunk.len();
        if !too_long {
            if out.len() + used > max {
                too_long = true;
                out.clear();
            } else {
                out.extend_from_slice(chunk);
            }
        }
        reader.consume(used);
        if done {
            return Ok(if too_long { Line::TooLong } else { Line::Text });
        }
    }
}

/// What the DATA phase read.
enum Data {
    /// The message, dot-unstuffed.
    Message(Vec<u8>),
    /// Larger than allowed (read to its end and dropped).
    TooLarge,
    /// The peer went away before the final dot.
    Eof,
}

/// Reads a message up to the line with a single dot.
async fn read_data<R: AsyncBufRead + Unpin>(reader: &mut R, max: usize) -> std::io::Result<Data> {
    let mut message = Vec::new();
    let mut line = Vec::new();
    let mut too_large = false;
    loop {
        match read_line(reader, max + 2, &mut line).await? {
            Line::Eof => return Ok(Data::Eof),
            Line::TooLong => too_large = true,
            Line::Text => {
                if line == b".\r\n" || line == b".\n" {
                    return Ok(if too_large {
                        Data::TooLarge
                    } else {
                        Data::Message(message)
                    });
                }
                if too_large {
                    continue;
                }
                let content = line.strip_prefix(b".").unwrap_or(&line);
                // Bare line feeds become CRLF, so a stored message has one kind of line end.
                let content = content
                    .strip_suffix(b"\r\n")
                    .or_else(|| content.strip_suffix(b"\n"))
                    .unwrap_or(content);
                if message.len() + content.len() + 2 > max {
                    too_large = true;
                    message = Vec::new();
                } else {
                    message.extend_from_slice(content);
                    message.extend_from_slice(b"\r\n");
                }
            }
        }
    }
}

/// The address inside `<...>` after a `FROM:` / `TO:` keyword, and the parameters after it.
fn parse_path<'a>(argument: &'a str, keyword: &str) -> Option<(&'a str, &'a str)> {
    let head = argument.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = argument[keyword.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    let address = rest[..end].trim();
    // A source route (`<@a,@b:user@host>`) is ignored, as RFC 5321 allows.
    let address = address.rsplit_once(':').map_or(address, |(_, a)| a);
    Some((address, rest[end + 1..].trim()))
}

/// The `SIZE=` parameter of MAIL FROM, if any.
fn size_parameter(parameters: &str) -> Option<u64> {
    parameters.split_whitespace().find_map(|p| {
        let (key, value) = p.split_once('=')?;
        key.eq_ignore_ascii_case("SIZE")
            .then(|| value.parse().ok())
            .flatten()
    })
}

/// One plausible address: something@something, no spaces or controls, bounded.
fn plausible_address(address: &str) -> bool {
    address.len() <= 320
        && address
            .rsplit_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty())
        && !address.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Runs what a session does with its input short of delivering (lines, commands, paths,
/// `SIZE=`, the DATA reader) over `input`: the entry point of the LMTP fuzz target.
#[doc(hidden)]
pub fn parse_for_fuzzing(input: &[u8]) {
    futures::executor::block_on(async {
        let mut reader = input;
        let mut line = Vec::new();
        loop {
            match read_line(&mut reader, 512, &mut line).await {
                Ok(Line::Text) => {}
                Ok(Line::TooLong) => continue,
                Ok(Line::Eof) | Err(_) => return,
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\r', '\n']);
            let (verb, argument) = text.split_once(' ').unwrap_or((text, ""));
            if verb.eq_ignore_ascii_case("DATA") {
                if read_data(&mut reader, 4096).await.is_err() {
                    return;
                }
                continue;
            }
            for keyword in ["FROM:", "TO:"] {
                if let Some((address, parameters)) = parse_path(argument.trim(), keyword) {
                    plausible_address(address);
                    size_parameter(parameters);
                }
            }
        }
    });
}

/// Writes one reply in one write: a reply split over two small writes waits for the peer's
/// delayed ACK under Nagle's algorithm (about 40 ms a reply on Linux).
async fn reply<W: AsyncWrite + Unpin>(writer: &mut W, text: &str) -> std::io::Result<()> {
    let mut line = Vec::with_capacity(text.len() + 2);
    line.extend_from_slice(text.as_bytes());
    line.extend_from_slice(b"\r\n");
    writer.write_all(&line).await?;
    writer.flush().await
}

/// A transaction in progress.
#[derive(Default)]
struct Transaction {
    sender: Option<String>,
    size: Option<u64>,
    recipients: Vec<Recipient>,
}

async fn session(
    stream: TcpStream,
    delivery: &Delivery,
    limits: &LmtpLimits,
    hostname: &str,
) -> std::io::Result<()> {
    // Replies are whole lines written at once; nothing is gained by holding them back.
    stream.set_nodelay(true)?;
    let (read, mut writer) = stream.into_split();
    let mut reader = BufReader::new(read);
    reply(&mut writer, &format!("220 {hostname} Eider LMTP ready")).await?;
    let mut greeted = false;
    let mut tx = Transaction::default();
    let mut errors = 0;
    let mut line = Vec::new();
    loop {
        if errors >= limits.max_errors {
            return reply(&mut writer, "421 4.7.0 Too many errors, closing").await;
        }
        let read = tokio::time::timeout(
            limits.command_timeout,
            read_line(&mut reader, limits.max_line, &mut line),
        )
        .await;
        match read {
            Err(_) => return reply(&mut writer, "421 4.4.2 Idle for too long, closing").await,
            Ok(Err(e)) => return Err(e),
            Ok(Ok(Line::Eof)) => return Ok(()),
            Ok(Ok(Line::TooLong)) => {
                errors += 1;
                reply(&mut writer, "500 5.5.2 Line too long").await?;
                continue;
            }
            Ok(Ok(Line::Text)) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        let (verb, argument) = text.split_once(' ').unwrap_or((text, ""));
        let argument = argument.trim();
        match verb.to_ascii_uppercase().as_str() {
            "LHLO" => {
                if argument.is_empty() {
                    errors += 1;
                    reply(&mut writer, "501 5.5.4 LHLO needs a host name").await?;
                    continue;
                }
                greeted = true;
                tx = Transaction::default();
                let size = limits.max_size;
                reply(
                    &mut writer,
                    &format!(
                        "250-{hostname}\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-ENHANCEDSTATUSCODES\r\n250-SMTPUTF8\r\n250 SIZE {size}"
                    ),
                )
                .await?;
            }
            "HELO" | "EHLO" => {
                errors += 1;
                reply(&mut writer, "500 5.5.1 This is LMTP: use LHLO").await?;
            }
            "MAIL" => {
                if !greeted {
                    errors += 1;
                    reply(&mut writer, "503 5.5.1 Send LHLO first").await?;
                } else if tx.sender.is_some() {
                    errors += 1;
                    reply(&mut writer, "503 5.5.1 Nested MAIL command").await?;
                } else {
                    match parse_path(argument, "FROM:") {
                        Some((address, _))
                            if !address.is_empty() && !plausible_address(address) =>
                        {
                            errors += 1;
                            reply(&mut writer, "501 5.1.7 Bad sender address").await?;
                        }
                        Some((address, parameters)) => {
                            let size = size_parameter(parameters);
                            if size.is_some_and(|s| s > limits.max_size as u64) {
                                reply(&mut writer, "552 5.3.4 Message too big").await?;
                            } else {
                                tx.sender = Some(address.to_string());
                                tx.size = size;
                                reply(&mut writer, "250 2.1.0 Sender OK").await?;
                            }
                        }
                        None => {
                            errors += 1;
                            reply(&mut writer, "501 5.5.4 Syntax: MAIL FROM:<address>").await?;
                        }
                    }
                }
            }
            "RCPT" => {
                if tx.sender.is_none() {
                    errors += 1;
                    reply(&mut writer, "503 5.5.1 Send MAIL first").await?;
                    continue;
                }
                let Some((address, _)) = parse_path(argument, "TO:") else {
                    errors += 1;
                    reply(&mut writer, "501 5.5.4 Syntax: RCPT TO:<address>").await?;
                    continue;
                };
                if !plausible_address(address) {
                    errors += 1;
                    reply(&mut writer, "501 5.1.3 Bad recipient address").await?;
                    continue;
                }
                if tx.recipients.len() >= limits.max_recipients {
                    reply(&mut writer, "452 4.5.3 Too many recipients").await?;
                    continue;
                }
                let answer = match delivery.recipient(address).await {
                    Ok(Ok(recipient)) => {
                        let fits = match tx.size {
                            Some(size) => delivery.fits(&recipient, size).await.unwrap_or(true),
                            None => true,
                        };
                        if fits {
                            tx.recipients.push(recipient);
                            "250 2.1.5 Recipient OK".to_string()
                        } else {
                            format!("552 5.2.2 <{address}>: Mailbox full")
                        }
                    }
                    Ok(Err(RecipientError::Unknown)) => {
                        format!("550 5.1.1 <{address}>: Unknown recipient")
                    }
                    Ok(Err(RecipientError::Disabled)) => {
                        format!("550 5.2.1 <{address}>: Mailbox disabled")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "recipient lookup failed");
                        "451 4.3.0 Temporary failure, try again later".to_string()
                    }
                };
                reply(&mut writer, &answer).await?;
            }
            "DATA" => {
                if tx.sender.is_none() {
                    errors += 1;
                    reply(&mut writer, "503 5.5.1 Send MAIL first").await?;
                    continue;
                }
                if tx.recipients.is_empty() {
                    errors += 1;
                    reply(&mut writer, "554 5.5.1 No valid recipients").await?;
                    continue;
                }
                reply(&mut writer, "354 Start mail input; end with <CRLF>.<CRLF>").await?;
                let data = tokio::time::timeout(
                    limits.data_timeout,
                    read_data(&mut reader, limits.max_size),
                )
                .await;
                let transaction = std::mem::take(&mut tx);
                let message = match data {
                    Err(_) => {
                        return reply(&mut writer, "421 4.4.2 Message took too long, closing")
                            .await;
                    }
                    Ok(Err(e)) => return Err(e),
                    Ok(Ok(Data::Eof)) => return Ok(()),
                    Ok(Ok(Data::TooLarge)) => {
                        for r in &transaction.recipients {
                            reply(
                                &mut writer,
                                &format!("552 5.3.4 <{}> Message too big", r.address),
                            )
                            .await?;
                        }
                        continue;
                    }
                    Ok(Ok(Data::Message(message))) => message,
                };
                let sender = transaction.sender.unwrap_or_default();
                let incoming = Incoming {
                    raw: &message,
                    sender: &sender,
                    source: "LMTP",
                    id: None,
                    spam_score: None,
                };
                // A user named several times (the same RCPT repeated, or two of its
                // addresses) gets one copy; every RCPT still gets its reply (RFC 2033).
                let mut outcomes: Vec<(eider_shared::id::ObjectId, Outcome)> = Vec::new();
                for recipient in &transaction.recipients {
                    let outcome = match outcomes.iter().find(|(user, _)| *user == recipient.user) {
                        Some((_, done)) => done.clone(),
                        None => {
                            let outcome = delivery.deliver(&incoming, recipient).await;
                            outcomes.push((recipient.user, outcome.clone()));
                            outcome
                        }
                    };
                    reply(&mut writer, &outcome_reply(&recipient.address, &outcome)).await?;
                }
            }
            "RSET" => {
                tx = Transaction::default();
                reply(&mut writer, "250 2.0.0 OK").await?;
            }
            "NOOP" => reply(&mut writer, "250 2.0.0 OK").await?,
            "QUIT" => {
                return reply(&mut writer, &format!("221 2.0.0 {hostname} closing")).await;
            }
            "VRFY" => reply(&mut writer, "252 2.5.0 Cannot VRFY, but will accept").await?,
            _ => {
                errors += 1;
                reply(&mut writer, "500 5.5.2 Command not recognized").await?;
            }
        }
    }
}

/// The per-recipient reply after DATA.
fn outcome_reply(address: &str, outcome: &Outcome) -> String {
    match outcome {
        Outcome::Stored { id, .. } => format!("250 2.0.0 <{address}> Message stored as {id}"),
        Outcome::Dropped { .. } => format!("250 2.0.0 <{address}> Message dropped by policy"),
        Outcome::OverQuota => format!("552 5.2.2 <{address}> Mailbox full"),
        Outcome::Refused { reason } => format!("550 5.7.1 <{address}> {reason}"),
        Outcome::Failed { .. } => {
            format!("451 4.3.0 <{address}> Temporary failure, try again later")
        }
        Outcome::Forwarded { sent } => {
            format!("250 2.0.0 <{address}> Message forwarded to {sent} target(s)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_bounded_and_long_ones_skipped_whole() {
        let input: &[u8] = b"short\r\nxxxxxxxxxxxxxxxxxxxx\r\nnext\r\npartial";
        let mut reader = BufReader::with_capacity(4, input);
        let mut line = Vec::new();
        assert_eq!(
            read_line(&mut reader, 10, &mut line).await.unwrap(),
            Line::Text
        );
        assert_eq!(line, b"short\r\n");
        assert_eq!(
            read_line(&mut reader, 10, &mut line).await.unwrap(),
            Line::TooLong
        );
        assert_eq!(
            read_line(&mut reader, 10, &mut line).await.unwrap(),
            Line::Text
        );
        assert_eq!(line, b"next\r\n");
        assert_eq!(
            read_line(&mut reader, 10, &mut line).await.unwrap(),
            Line::Eof
        );
    }

    #[tokio::test]
    async fn data_is_dot_unstuffed_and_size_limited() {
        let input: &[u8] = b"Subject: x\r\n\r\n..leading dot\nbare\n.\r\nNOOP\r\n";
        let mut reader = BufReader::new(input);
        match read_data(&mut reader, 1000).await.unwrap() {
            Data::Message(m) => assert_eq!(m, b"Subject: x\r\n\r\n.leading dot\r\nbare\r\n"),
            _ => panic!("no message"),
        }
        let big: &[u8] = b"0123456789\r\n0123456789\r\n.\r\n";
        let mut reader = BufReader::new(big);
        assert!(matches!(
            read_data(&mut reader, 15).await.unwrap(),
            Data::TooLarge
        ));
        let cut: &[u8] = b"Subject: x\r\n";
        let mut reader = BufReader::new(cut);
        assert!(matches!(
            read_data(&mut reader, 100).await.unwrap(),
            Data::Eof
        ));
    }

    #[test]
    fn paths_and_parameters_parse_leniently_but_safely() {
        assert_eq!(
            parse_path("FROM:<a@b.c> SIZE=100", "FROM:"),
            Some(("a@b.c", "SIZE=100"))
        );
        assert_eq!(parse_path("from: <>", "FROM:"), Some(("", "")));
        assert_eq!(parse_path("TO:<@relay:u@h.x>", "TO:"), Some(("u@h.x", "")));
        assert_eq!(parse_path("TO:u@h.x", "TO:"), None);
        assert_eq!(parse_path("T", "TO:"), None);
        assert_eq!(parse_path("ö", "TO:"), None);
        assert_eq!(size_parameter("BODY=8BITMIME SIZE=42"), Some(42));
        assert_eq!(size_parameter("SIZE=x"), None);
        assert!(plausible_address("a@b"));
        assert!(!plausible_address("a b@c"));
        assert!(!plausible_address("@c"));
    }
}
