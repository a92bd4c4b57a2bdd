//! Building a message from fields, as WildDuck composes uploads and submissions (Nodemailer's
//! structure): `multipart/mixed` of the attachments around `multipart/related` of the inline
//! (`cid:`) images around `multipart/alternative` of text and HTML, with only the levels a
//! message needs. Built with mail-builder; addresses, subjects and file names are encoded as
//! RFC 2047 / RFC 2231 require.

use std::borrow::Cow;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::raw::Raw;
use mail_builder::headers::text::Text;
use mail_builder::mime::{BodyPart, MimePart};
use rand::RngCore;
use regex_lite::Regex;

/// A name and an address (`{name, address}` on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailAddress {
    pub name: Option<String>,
    pub address: String,
}

impl MailAddress {
    pub fn new(name: Option<String>, address: impl Into<String>) -> Self {
        MailAddress {
            name: name.filter(|n| !n.trim().is_empty()),
            address: address.into(),
        }
    }

    fn header(&self) -> Address<'_> {
        Address::new_address(self.name.as_deref(), self.address.as_str())
    }
}

/// A file part: an attachment, or an inline image referenced as `cid:` from the HTML.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FilePart {
    pub filename: Option<String>,
    pub content_type: String,
    pub content: Vec<u8>,
    pub cid: Option<String>,
    /// `Content-Disposition: inline` (also every part with a `cid`, unless said otherwise).
    pub inline: bool,
}

/// Everything a composed message is made of.
#[derive(Debug, Clone, Default)]
pub struct Compose {
    pub from: Option<MailAddress>,
    pub reply_to: Option<MailAddress>,
    pub to: Vec<MailAddress>,
    pub cc: Vec<MailAddress>,
    /// Written only when `keep_bcc` (drafts and stored copies; never what is sent).
    pub bcc: Vec<MailAddress>,
    pub keep_bcc: bool,
    /// Extra headers, in order. Structural headers (`Content-Type`, `MIME-Version`,
    /// `Content-Transfer-Encoding`) are not taken.
    pub headers: Vec<(String, String)>,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    pub attachments: Vec<FilePart>,
    /// With angle brackets: `<id@host>`.
    pub message_id: String,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub date: Option<DateTime<Utc>>,
}

/// Headers a caller may not set: they describe the MIME structure this module builds.
const STRUCTURAL: [&str; 3] = ["content-type", "mime-version", "content-transfer-encoding"];

/// A new Message-ID, `<uuid@host>`.
pub fn new_message_id(host: &str) -> String {
    format!("<{}@{host}>", uuid())
}

/// A random RFC 4122 version 4 UUID.
pub fn uuid() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn bare_id(id: &str) -> &str {
    id.trim().trim_start_matches('<').trim_end_matches('>')
}

/// Plain text of an HTML body (when only HTML is given, as WildDuck generates it).
pub fn text_of_html(html: &str) -> String {
    mail_parser::decoders::html::html_to_text(html)
}

static IMG_TAG: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?is)<img\b[^>]*>").unwrap());
static DATA_SRC: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(?is)\bsrc\s*=\s*(?:"(data:[^"]*)"|'(data:[^']*)')"#).unwrap());
static DATA_FILENAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(?is)\s+data-filename\s*=\s*(?:"([^"]*)"|'([^']*)')"#).unwrap());

/// HTML bodies larger than this keep their `data:` images (WildDuck's 12 MiB).
const MAX_HTML_FOR_DATA_URLS: usize = 12 * 1024 * 1024;

/// Turns every `<img src="data:...">` of `html` into an inline part referenced as
/// `cid:<uuid>@<host>` (an `img`'s `data-filename` names the file and is removed), as WildDuck
/// does before storing or sending. Images that do not decode stay as they are.
pub fn extract_data_images(html: &str, host: &str) -> (String, Vec<FilePart>) {
    if html.len() > MAX_HTML_FOR_DATA_URLS {
        return (html.to_string(), Vec::new());
    }
    let mut parts = Vec::new();
    let out = IMG_TAG.replace_all(html, |tag: &regex_lite::Captures| {
        let tag = &tag[0];
        let Some(src) = DATA_SRC.captures(tag) else {
            return tag.to_string();
        };
        let url = src.get(1).or(src.get(2)).map_or("", |m| m.as_str());
        let Some((content_type, content)) = decode_data_url(url) else {
            return tag.to_string();
        };
        let filename = DATA_FILENAME
            .captures(tag)
            .and_then(|c| c.get(1).or(c.get(2)))
            .map(|m| m.as_str().to_string());
        let cid = format!("{}@{host}", uuid());
        let rewritten = DATA_SRC.replace(tag, format!("src=\"cid:{cid}\"").as_str());
        let rewritten = DATA_FILENAME.replace(&rewritten, "").into_owned();
        parts.push(FilePart {
            filename,
            content_type,
            content,
            cid: Some(cid),
            inline: true,
        });
        rewritten
    });
    (out.into_owned(), parts)
}

/// `data:<type>[;base64],<data>` → the type and the bytes.
fn decode_data_url(url: &str) -> Option<(String, Vec<u8>)> {
    use base64::Engine;
    let (meta, data) = url.strip_prefix("data:")?.split_once(',')?;
    let (content_type, base64) = match meta.strip_suffix(";base64") {
        Some(t) => (t, true),
        None => (meta, false),
    };
    let content_type = content_type.split(';').next().unwrap_or("").trim();
    let content_type = if content_type.is_empty() {
        "application/octet-stream".to_string()
    } else {
        content_type.to_ascii_lowercase()
    };
    let content = if base64 {
        let clean: String = data.chars().filter(|c| !c.is_whitespace()).collect();
        base64::engine::general_purpose::STANDARD
            .decode(clean.trim_end_matches('='))
            .or_else(|_| {
                base64::engine::general_purpose::STANDARD_NO_PAD.decode(clean.trim_end_matches('='))
            })
            .ok()?
    } else {
        form_urlencoded::parse(format!("x={data}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned().into_bytes())?
    };
    Some((content_type, content))
}

fn file_part(part: &FilePart) -> MimePart<'_> {
    let mut content_type = ContentType::new(part.content_type.as_str());
    if let Some(name) = &part.filename {
        content_type = content_type.attribute("name", name.as_str());
    }
    let mut mime = MimePart::new(content_type, BodyPart::Binary(Cow::Borrowed(&part.content)));
    if part.inline {
        mime = mime.inline();
    } else {
        mime = mime.attachment(part.filename.as_deref().unwrap_or("attachment.bin"));
    }
    if let Some(cid) = &part.cid {
        mime = mime.cid(bare_id(cid));
    }
    mime
}

impl Compose {
    /// The RFC 5322 message.
    pub fn build(&self) -> Vec<u8> {
        let mut builder =
            MessageBuilder::new().message_id(MessageId::new(bare_id(&self.message_id)));
        if let Some(from) = &self.from {
            builder = builder.from(from.header());
        }
        if let Some(reply_to) = &self.reply_to {
            builder = builder.reply_to(reply_to.header());
        }
        fn list(addresses: &[MailAddress]) -> Address<'_> {
            Address::new_list(addresses.iter().map(MailAddress::header).collect())
        }
        if !self.to.is_empty() {
            builder = builder.to(list(&self.to));
        }
        if !self.cc.is_empty() {
            builder = builder.cc(list(&self.cc));
        }
        if self.keep_bcc && !self.bcc.is_empty() {
            builder = builder.bcc(list(&self.bcc));
        }
        if let Some(subject) = &self.subject {
            builder = builder.subject(Text::new(subject.as_str()));
        }
        if let Some(id) = &self.in_reply_to {
            builder = builder.in_reply_to(MessageId::new(bare_id(id)));
        }
        if !self.references.is_empty() {
            let ids = self.references.iter().map(|r| bare_id(r));
            builder = builder.references(MessageId::new_list(ids));
        }
        builder = builder.date(Date::new(self.date.unwrap_or_else(Utc::now).timestamp()));
        for (name, value) in &self.headers {
            if STRUCTURAL.contains(&name.to_ascii_lowercase().as_str()) {
                continue;
            }
            builder = builder.header(name.as_str(), Raw::new(value.as_str()));
        }

        // text / html: alternative when both
        let text = self
            .text
            .as_deref()
            .map(|t| MimePart::new("text/plain", BodyPart::Text(Cow::Borrowed(t))));
        let html = self
            .html
            .as_deref()
            .map(|h| MimePart::new("text/html", BodyPart::Text(Cow::Borrowed(h))));
        let mut body = match (text, html) {
            (Some(text), Some(html)) => MimePart::new("multipart/alternative", vec![text, html]),
            (Some(one), None) | (None, Some(one)) => one,
            (None, None) => MimePart::new("text/plain", BodyPart::Text(Cow::Borrowed(""))),
        };
        let (inline, attached): (Vec<&FilePart>, Vec<&FilePart>) = self
            .attachments
            .iter()
            .partition(|p| p.inline && p.cid.is_some());
        if !inline.is_empty() {
            let mut parts = vec![body];
            parts.extend(inline.into_iter().map(file_part));
            body = MimePart::new("multipart/related", parts);
        }
        if !attached.is_empty() {
            let mut parts = vec![body];
            parts.extend(attached.into_iter().map(file_part));
            body = MimePart::new("multipart/mixed", parts);
        }
        builder.body(body).write_to_vec().unwrap_or_default()
    }
}

/// `raw` with the header fields named in `remove` (any case) taken out of its top-level
/// header, and `prepend` written before the rest: how a stored draft becomes the message that
/// is sent (no `Bcc`, the `Date` of sending). The body is left byte for byte.
pub fn rewrite_headers(raw: &[u8], remove: &[&str], prepend: &[(&str, String)]) -> Vec<u8> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 2)
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|p| p + 1))
        .unwrap_or(raw.len());
    let (head, body) = raw.split_at(split);
    let mut out = Vec::with_capacity(raw.len() + 64);
    for (name, value) in prepend {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    let mut skipping = false;
    for line in head.split_inclusive(|b| *b == b'\n') {
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !continuation {
            let name = line.iter().position(|b| *b == b':').map(|i| {
                String::from_utf8_lossy(&line[..i])
                    .trim()
                    .to_ascii_lowercase()
            });
            skipping = name.is_some_and(|n| remove.iter().any(|r| r.eq_ignore_ascii_case(&n)));
        }
        if !skipping {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::{MessageParser, MimeHeaders};

    #[test]
    fn a_composed_message_parses_back_with_every_field() {
        let compose = Compose {
            from: Some(MailAddress::new(Some("Jürgen Ä".into()), "j@example.com")),
            reply_to: Some(MailAddress::new(None, "r@example.com")),
            to: vec![MailAddress::new(Some("Bob".into()), "bob@example.com")],
            cc: vec![MailAddress::new(None, "cc@example.com")],
            bcc: vec![MailAddress::new(None, "hidden@example.com")],
            keep_bcc: false,
            headers: vec![
                ("X-Campaign".into(), "spring".into()),
                ("Content-Type".into(), "text/evil".into()),
            ],
            subject: Some("Grüße 👋".into()),
            text: Some("Hello\r\nthere".into()),
            html: Some("<p>Hello <img src=\"cid:pic@example.com\"></p>".into()),
            attachments: vec![
                FilePart {
                    filename: Some("report.pdf".into()),
                    content_type: "application/pdf".into(),
                    content: b"%PDF-1.4 fake".to_vec(),
                    cid: None,
                    inline: false,
                },
                FilePart {
                    filename: None,
                    content_type: "image/png".into(),
                    content: vec![1, 2, 3],
                    cid: Some("pic@example.com".into()),
                    inline: true,
                },
            ],
            message_id: "<abc@example.com>".into(),
            in_reply_to: Some("<orig@example.com>".into()),
            references: vec!["<root@example.com>".into(), "<orig@example.com>".into()],
            date: DateTime::from_timestamp(1_700_000_000, 0),
        };
        let raw = compose.build();
        let text = String::from_utf8_lossy(&raw);
        assert!(!text.contains("hidden@example.com"), "Bcc is never sent");
        assert!(!text.contains("text/evil"));
        let parsed = MessageParser::default().parse(&raw).unwrap();
        assert_eq!(parsed.subject(), Some("Grüße 👋"));
        assert_eq!(parsed.message_id(), Some("abc@example.com"));
        assert_eq!(parsed.in_reply_to().as_text(), Some("orig@example.com"));
        assert_eq!(
            parsed.from().unwrap().first().unwrap().name(),
            Some("Jürgen Ä")
        );
        assert_eq!(
            parsed.header_raw("X-Campaign").map(str::trim),
            Some("spring")
        );
        assert_eq!(parsed.date().unwrap().to_timestamp(), 1_700_000_000);
        assert_eq!(parsed.body_text(0).as_deref(), Some("Hello\r\nthere"));
        assert!(parsed.body_html(0).unwrap().contains("cid:pic@example.com"));
        let files: Vec<_> = parsed.attachments().collect();
        assert_eq!(files.len(), 2);
        let pdf = files
            .iter()
            .find(|a| a.attachment_name() == Some("report.pdf"))
            .unwrap();
        assert_eq!(pdf.contents(), b"%PDF-1.4 fake");
        assert_eq!(parsed.content_type().unwrap().ctype(), "multipart");
        assert_eq!(parsed.content_type().unwrap().subtype(), Some("mixed"));

        let kept = Compose {
            keep_bcc: true,
            ..compose
        };
        assert!(String::from_utf8_lossy(&kept.build()).contains("hidden@example.com"));
    }

    #[test]
    fn data_images_become_inline_parts() {
        let html = r#"<p>Look <img alt="x" src="data:image/png;base64,AQID" data-filename="dot.png"> and <img src='https://example.com/a.png'> <img src="data:bogus"></p>"#;
        let (rewritten, parts) = extract_data_images(html, "example.com");
        assert_eq!(parts.len(), 1);
        let part = &parts[0];
        assert_eq!(part.content, vec![1, 2, 3]);
        assert_eq!(part.content_type, "image/png");
        assert_eq!(part.filename.as_deref(), Some("dot.png"));
        let cid = part.cid.as_deref().unwrap();
        assert!(cid.ends_with("@example.com"));
        assert!(
            rewritten.contains(&format!("src=\"cid:{cid}\"")),
            "{rewritten}"
        );
        assert!(!rewritten.contains("data-filename"));
        assert!(!rewritten.contains("AQID"));
        assert!(rewritten.contains("https://example.com/a.png"));
        assert!(rewritten.contains("data:bogus"));
    }

    #[test]
    fn text_is_generated_from_html() {
        assert_eq!(text_of_html("<p>Hello <b>you</b></p>").trim(), "Hello you");
    }

    #[test]
    fn headers_are_removed_with_their_continuations_and_the_body_kept() {
        let raw = b"From: a@x\r\nBcc: secret@x,\r\n  more@x\r\nDate: old\r\nSubject: s\r\n\r\nBcc: in body\r\n";
        let out = rewrite_headers(raw, &["bcc", "Date"], &[("Date", "new".into())]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Date: new\r\nFrom: a@x\r\nSubject: s\r\n\r\nBcc: in body\r\n"
        );
    }

    #[test]
    fn uuids_are_version_4() {
        let id = uuid();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(id, uuid());
    }
}
