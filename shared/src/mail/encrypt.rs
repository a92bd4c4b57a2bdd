//! PGP/MIME encryption of stored messages (RFC 3156), as WildDuck does for
//! users with `encryptMessages: true` and a `pubKey`.
//!
//! The message keeps its header, less the fields that describe its content,
//! and becomes a `multipart/encrypted; protocol="application/pgp-encrypted"`
//! message of two parts: `application/pgp-encrypted` with `Version: 1`, and
//! `application/octet-stream; name="encrypted.asc"` holding an ASCII-armored
//! OpenPGP message. What is encrypted is the original MIME entity: its
//! content fields, the blank line and the body, byte for byte. The key and
//! the cipher are picked as OpenPGP.js picks them (see
//! [`crate::mail::pgp_key`]), and the OpenPGP message is what OpenPGP.js
//! writes for WildDuck: SEIPD v1, uncompressed, unsigned, a binary literal.
//!
//! Where this differs from WildDuck, on purpose:
//! - Every `Content-*` field moves inside, not only `Content-Type` and
//!   `Content-Transfer-Encoding`: RFC 2045 §9 reserves the prefix for fields
//!   that describe the content, so e.g. an outer `Content-Disposition` would
//!   now describe the wrong entity (and a second `Content-Description` would
//!   clash with the one added here).
//! - The lines written here use the message's own line breaks, so an LF-only
//!   message stays LF-only instead of mixing in CRLF; WildDuck split the
//!   header on CRLF only, so an LF-only header was treated as one field.
//! - `MIME-Version: 1.0` is added when missing: without it the outer message
//!   is not MIME (RFC 2045 §4), and multipart/encrypted means nothing.
//! - Only the top-level `Content-Type` counts as "already encrypted";
//!   WildDuck's check also matched one anywhere in the raw message, which
//!   stores a message that merely forwards an encrypted one in plain text.
//! - A header that cannot be parsed is not guessed at: the whole input
//!   becomes the encrypted body, under a minimal content header.

use thiserror::Error;

use crate::mail::pgp_key;

/// How an ASCII-armored OpenPGP message starts.
const ARMORED_MESSAGE: &[u8] = b"-----BEGIN PGP MESSAGE-----";

/// The type RFC 2045 §5.2 assumes for an entity without `Content-Type`;
/// written out so that the encrypted entity always has a header.
const DEFAULT_CONTENT_TYPE: &[u8] = b"Content-Type: text/plain; charset=us-ascii";

/// Why a message could not be encrypted.
#[derive(Debug, Error)]
pub enum EncryptError {
    /// The key is unusable: not an armored public key, expired, revoked,
    /// too weak, or without an encryption-capable (sub)key. The reason is
    /// the one POST /users gives for the same key.
    #[error("PGP key validation failed. {0}")]
    InvalidKey(String),
    /// rPGP failed while encrypting. Its text stays in the source only: some
    /// of it can hold a backtrace, unfit for an API response.
    #[error("Failed to encrypt message")]
    Encrypt(#[source] pgp::errors::Error),
}

/// Encrypts `raw` (RFC 822) to the armored public key; Ok(None) when the message is already encrypted.
///
/// The result is an RFC 3156 PGP/MIME message that keeps the original
/// header fields (folding and line breaks intact) except the `Content-*`
/// ones, which move into the encrypted entity. An already encrypted message
/// is recognised before the key is read, so it is Ok(None) whatever the key.
pub fn encrypt_message(
    raw: &[u8],
    armored_public_key: &str,
) -> Result<Option<Vec<u8>>, EncryptError> {
    let message = Message::parse(raw);
    if message.is_encrypted() {
        return Ok(None);
    }
    let key = pgp_key::read_public_key(armored_public_key).map_err(EncryptError::InvalidKey)?;
    let recipient = pgp_key::recipient(&key).map_err(EncryptError::InvalidKey)?;
    let armored = recipient
        .encrypt(message.inner_entity())
        .map_err(EncryptError::Encrypt)?;
    Ok(Some(message.wrap(&armored, &new_boundary())))
}

/// Whether `raw` is already encrypted: its top-level `Content-Type` is
/// `multipart/encrypted`, or its body starts with an armored PGP message
/// (inline PGP).
pub fn is_encrypted(raw: &[u8]) -> bool {
    Message::parse(raw).is_encrypted()
}

/// A raw message split into header fields and body, without copying.
struct Message<'a> {
    /// The whole input.
    raw: &'a [u8],
    /// Header fields in order, each with its folded continuation lines and
    /// line breaks; empty when the header could not be parsed.
    fields: Vec<&'a [u8]>,
    /// The blank line that ends the header; empty when there is none.
    separator: &'a [u8],
    /// Everything after the separator; all of `raw` if the header could not
    /// be parsed.
    body: &'a [u8],
    /// Whether `raw` starts with a well-formed header (possibly empty).
    has_header: bool,
    /// The line break for lines written here: the message's own.
    eol: &'static [u8],
}

impl<'a> Message<'a> {
    fn parse(raw: &'a [u8]) -> Self {
        Self::split_header(raw).unwrap_or(Message {
            raw,
            fields: Vec::new(),
            separator: b"",
            body: raw,
            has_header: false,
            eol: detect_eol(raw),
        })
    }

    /// Splits `raw` into header fields, the blank line after them and the
    /// body; None unless every line before the blank line is a field or the
    /// folded continuation of one. Without a blank line all of it is header.
    fn split_header(raw: &'a [u8]) -> Option<Self> {
        let mut starts = Vec::new();
        let mut pos = 0;
        let (header_end, separator_end) = loop {
            if pos == raw.len() {
                break (pos, pos);
            }
            let end = raw[pos..]
                .iter()
                .position(|&byte| byte == b'\n')
                .map_or(raw.len(), |at| pos + at + 1);
            let line = &raw[pos..end];
            if line == b"\n" || line == b"\r\n" {
                break (pos, end);
            }
            // NUL never belongs in a header (RFC 5322 §2.2); seeing one means
            // this is not a message header at all.
            if line.contains(&0) {
                return None;
            }
            match line {
                [b' ' | b'\t', ..] if !starts.is_empty() => {}
                _ if field_name(line).is_some() => starts.push(pos),
                _ => return None,
            }
            pos = end;
        };
        let ends = starts.iter().skip(1).copied().chain([header_end]);
        let fields = starts
            .iter()
            .zip(ends)
            .map(|(&start, end)| &raw[start..end])
            .collect();
        Some(Message {
            raw,
            fields,
            separator: &raw[header_end..separator_end],
            body: &raw[separator_end..],
            has_header: true,
            eol: detect_eol(raw),
        })
    }

    fn is_encrypted(&self) -> bool {
        let multipart_encrypted = self.fields.iter().any(|field| {
            field_named(field, b"content-type") && {
                let value = field_value(field);
                let media_type = value.split(|&byte| byte == b';').next().unwrap_or(value);
                media_type
                    .trim_ascii()
                    .eq_ignore_ascii_case(b"multipart/encrypted")
            }
        });
        multipart_encrypted || self.body.trim_ascii_start().starts_with(ARMORED_MESSAGE)
    }

    /// The line that ends the header: the original one, or a new one when
    /// the message has no body.
    fn separator(&self) -> &[u8] {
        if self.separator.is_empty() {
            self.eol
        } else {
            self.separator
        }
    }

    /// The MIME entity to encrypt: content fields, separator and body.
    fn inner_entity(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.raw.len() + 128);
        let mut content_fields = self.fields.iter().filter(|field| is_content_field(field));
        match content_fields.next() {
            Some(first) => {
                push_field(&mut out, first, self.eol);
                for field in content_fields {
                    push_field(&mut out, field, self.eol);
                }
            }
            None if self.has_header => push_line(&mut out, DEFAULT_CONTENT_TYPE, self.eol),
            None => {
                for line in fallback_content_header(self.raw) {
                    push_line(&mut out, line, self.eol);
                }
            }
        }
        out.extend_from_slice(self.separator());
        out.extend_from_slice(self.body);
        out
    }

    /// The PGP/MIME message: the kept header fields, the new content fields
    /// and the two parts, `armored` being the encrypted entity.
    fn wrap(&self, armored: &str, boundary: &str) -> Vec<u8> {
        let eol = self.eol;
        let header_len = self.raw.len() - self.body.len();
        let mut out = Vec::with_capacity(header_len + armored.len() * 2 + 1024);
        let mut has_mime_version = false;
        for field in self.fields.iter().filter(|field| !is_content_field(field)) {
            has_mime_version |= field_named(field, b"mime-version");
            push_field(&mut out, field, eol);
        }
        if !has_mime_version {
            push_line(&mut out, b"MIME-Version: 1.0", eol);
        }
        // Folded before the boundary like WildDuck, to stay within 78 columns.
        push_line(
            &mut out,
            b"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";",
            eol,
        );
        push_line(
            &mut out,
            format!(" boundary=\"{boundary}\"").as_bytes(),
            eol,
        );
        push_line(
            &mut out,
            b"Content-Description: OpenPGP encrypted message",
            eol,
        );
        push_line(&mut out, b"Content-Transfer-Encoding: 7bit", eol);
        out.extend_from_slice(self.separator());

        let delimiter = format!("--{boundary}");
        for line in [
            // Shown by clients that do not understand PGP/MIME.
            "This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)",
            "",
            &delimiter,
            "Content-Type: application/pgp-encrypted",
            "Content-Description: PGP/MIME version identification",
            "Content-Transfer-Encoding: 7bit",
            "",
            "Version: 1",
            "",
            &delimiter,
            "Content-Type: application/octet-stream; name=\"encrypted.asc\"",
            "Content-Description: OpenPGP encrypted message",
            "Content-Disposition: inline; filename=\"encrypted.asc\"",
            "Content-Transfer-Encoding: 7bit",
            "",
        ] {
            push_line(&mut out, line.as_bytes(), eol);
        }
        // rPGP armors with LF; the message's own line break goes instead.
        for line in armored.lines() {
            push_line(&mut out, line.as_bytes(), eol);
        }
        push_line(&mut out, format!("{delimiter}--").as_bytes(), eol);
        out
    }
}

/// A fresh multipart boundary. It cannot occur in the parts: the armor's
/// base64 alphabet and its BEGIN/END lines have no `_`, and the fixed lines
/// have no `--eider_`; randomness keeps it apart from boundaries inside the
/// encrypted entity once that is decrypted and shown in place.
fn new_boundary() -> String {
    let random: [u8; 14] = rand::random();
    let mut boundary = String::with_capacity(6 + 2 * random.len());
    boundary.push_str("eider_");
    for byte in random {
        boundary.push_str(&format!("{byte:02x}"));
    }
    boundary
}

/// LF if the first line ends with a bare LF, else CRLF (the MIME norm, also
/// for input without any line break).
fn detect_eol(raw: &[u8]) -> &'static [u8] {
    match raw.iter().position(|&byte| byte == b'\n') {
        Some(at) if at == 0 || raw[at - 1] != b'\r' => b"\n",
        _ => b"\r\n",
    }
}

/// The name of the field that `line` starts, if it starts one: printable
/// US-ASCII up to a colon (RFC 5322 §2.2), with the obsolete spaces before
/// the colon allowed (§4.5).
fn field_name(line: &[u8]) -> Option<&[u8]> {
    let colon = line.iter().position(|&byte| byte == b':')?;
    let name = line[..colon].trim_ascii_end();
    let printable = name.iter().all(|byte| (33..=126).contains(byte));
    (!name.is_empty() && printable).then_some(name)
}

/// Everything after the field's colon, folding included.
fn field_value(field: &[u8]) -> &[u8] {
    field
        .iter()
        .position(|&byte| byte == b':')
        .map_or(b"", |colon| &field[colon + 1..])
}

fn field_named(field: &[u8], name: &[u8]) -> bool {
    field_name(field).is_some_and(|found| found.eq_ignore_ascii_case(name))
}

/// Whether a field describes the content (RFC 2045 §9: `Content-*`).
fn is_content_field(field: &[u8]) -> bool {
    field_name(field)
        .and_then(|name| name.get(..8))
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(b"content-"))
}

/// Appends a field as it was, ending it with a line break if it had none
/// (the last field of a message without body, maybe cut after its CR).
fn push_field(out: &mut Vec<u8>, field: &[u8], eol: &[u8]) {
    if field.ends_with(b"\n") {
        out.extend_from_slice(field);
    } else {
        out.extend_from_slice(field.strip_suffix(b"\r").unwrap_or(field));
        out.extend_from_slice(eol);
    }
}

fn push_line(out: &mut Vec<u8>, line: &[u8], eol: &[u8]) {
    out.extend_from_slice(line);
    out.extend_from_slice(eol);
}

/// The content fields for input without a parseable header: what the bytes
/// look like, so that a client shows text as text and anything else as an
/// attachment rather than as mojibake.
fn fallback_content_header(raw: &[u8]) -> &'static [&'static [u8]] {
    let is_text = std::str::from_utf8(raw).is_ok()
        && !raw
            .iter()
            .any(|&byte| (byte < 0x20 && !b"\t\n\x0c\r".contains(&byte)) || byte == 0x7f);
    if is_text && raw.is_ascii() {
        &[DEFAULT_CONTENT_TYPE]
    } else if is_text {
        &[
            b"Content-Type: text/plain; charset=utf-8",
            b"Content-Transfer-Encoding: 8bit",
        ]
    } else {
        &[
            b"Content-Type: application/octet-stream",
            b"Content-Transfer-Encoding: binary",
        ]
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use pgp::{
        composed::{
            ArmorOptions, Deserializable, EncryptionCaps, Esk, KeyType, Message as PgpMessage,
            SecretKeyParamsBuilder, SignedPublicKey, SignedSecretKey, SubkeyParamsBuilder,
        },
        types::Password,
    };

    use super::*;

    // Fixture public keys shared with `pgp_key`'s tests; their
    // secret halves were thrown away, so only encryption can be checked.
    const RSA: &str = include_str!("testdata/rsa.asc");
    const RSA_SIGN_ONLY: &str = include_str!("testdata/rsa-sign-only.asc");
    const ED25519: &str = include_str!("testdata/ed25519.asc");
    const ED25519_SIGN_ONLY: &str = include_str!("testdata/ed25519-sign-only.asc");
    const EXPIRED: &str = include_str!("testdata/expired.asc");
    const REVOKED: &str = include_str!("testdata/revoked.asc");

    const CONTENT_FIELDS: &str = "Content-Type: multipart/alternative;\r\n\tboundary=\"b1\"\r\n\
         Content-Transfer-Encoding: 7bit\r\n";
    const OTHER_FIELDS: &str = "Subject: A subject that goes on and on\r\n and on, folded\r\n\
         From: Alice <alice@example.com>\r\n\
         To: Bob <bob@example.com>,\r\n  Carol <carol@example.com>\r\n\
         Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n\
         Message-ID: <1@example.com>\r\n\
         MIME-Version: 1.0\r\n";
    const BODY: &str = "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\nGrüße\r\n\
         --b1\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n--b1--\r\n";

    /// A message with folded fields, content fields among the others, CRLF.
    fn sample() -> String {
        let (subject_from, rest) = OTHER_FIELDS.split_at(OTHER_FIELDS.find("To:").unwrap());
        format!("{subject_from}{CONTENT_FIELDS}{rest}\r\n{BODY}")
    }

    /// A key pair made once per test run: the fixtures have no secret keys.
    fn generated() -> &'static (SignedSecretKey, String) {
        static KEY: OnceLock<(SignedSecretKey, String)> = OnceLock::new();
        KEY.get_or_init(|| {
            let secret = SecretKeyParamsBuilder::default()
                .key_type(KeyType::Ed25519)
                .can_certify(true)
                .can_sign(true)
                .primary_user_id("Generated <generated@example.com>".into())
                .subkey(
                    SubkeyParamsBuilder::default()
                        .key_type(KeyType::X25519)
                        .can_encrypt(EncryptionCaps::All)
                        .build()
                        .expect("subkey params"),
                )
                .build()
                .expect("key params")
                .generate(rand::thread_rng())
                .expect("key generation");
            let public = secret
                .to_public_key()
                .to_armored_string(ArmorOptions::default())
                .expect("armor");
            (secret, public)
        })
    }

    /// The pieces of a PGP/MIME message made here, checked on the way.
    struct Parsed {
        /// The outer header, without the blank line.
        header: String,
        /// The armored OpenPGP message, as it stands in the second part.
        armored: String,
    }

    fn split_output(output: &[u8], eol: &str) -> Parsed {
        let text = std::str::from_utf8(output).expect("output is ASCII apart from kept fields");
        let blank = format!("{eol}{eol}");
        let (header, body) = text.split_once(&blank).expect("blank line after header");
        let boundary = header
            .split_once("boundary=\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .expect("boundary parameter")
            .0;
        // The line break before a delimiter belongs to it (RFC 2046 §5.1.1).
        let delimiter = format!("{eol}--{boundary}");
        let body = format!("{eol}{body}");
        let parts: Vec<&str> = body.split(&delimiter).collect();
        assert_eq!(parts.len(), 4, "preamble, two parts, close: {body}");
        assert_eq!(parts[3], format!("--{eol}"));
        assert_eq!(
            parts[1],
            [
                "",
                "Content-Type: application/pgp-encrypted",
                "Content-Description: PGP/MIME version identification",
                "Content-Transfer-Encoding: 7bit",
                "",
                "Version: 1",
                "",
            ]
            .join(eol)
        );
        let (part_header, armored) = parts[2].split_once(&blank).expect("part header");
        assert!(
            part_header.contains("Content-Type: application/octet-stream; name=\"encrypted.asc\"")
        );
        assert!(armored.starts_with("-----BEGIN PGP MESSAGE-----"));
        assert!(armored.ends_with("-----END PGP MESSAGE-----"));
        Parsed {
            header: header.to_owned(),
            armored: armored.to_owned(),
        }
    }

    /// Decrypts the armored part with the generated key.
    fn decrypt(armored: &str) -> Vec<u8> {
        let (message, _headers) = PgpMessage::from_string(armored).expect("armored message");
        let mut decrypted = message
            .decrypt(&Password::empty(), &generated().0)
            .expect("decryption");
        decrypted.as_data_vec().expect("literal data")
    }

    fn encrypt_generated(raw: &[u8]) -> Vec<u8> {
        encrypt_message(raw, &generated().1)
            .expect("encryption")
            .expect("not yet encrypted")
    }

    /// Whether every line break in `bytes` is `eol`.
    fn only_line_breaks(bytes: &[u8], eol: &str) -> bool {
        let text = String::from_utf8_lossy(bytes);
        match eol {
            "\r\n" => text
                .replace("\r\n", "")
                .chars()
                .all(|c| c != '\n' && c != '\r'),
            _ => !text.contains('\r'),
        }
    }

    #[test]
    fn crlf_message_round_trips_and_keeps_outer_fields() {
        let raw = sample();
        let output = encrypt_generated(raw.as_bytes());
        assert!(only_line_breaks(&output, "\r\n"));
        let parsed = split_output(&output, "\r\n");

        // All other fields are kept as they were, folding included, in order.
        let new_fields = "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\r\n \
                          boundary=\"";
        let (kept, added) = parsed
            .header
            .split_at(parsed.header.find(new_fields).unwrap());
        assert_eq!(kept, OTHER_FIELDS);
        assert!(added.ends_with(
            "\r\nContent-Description: OpenPGP encrypted message\r\nContent-Transfer-Encoding: 7bit"
        ));
        for name in ["Subject:", "From:", "To:", "Date:", "Message-ID:"] {
            assert!(kept.contains(name), "{name}");
        }
        assert!(!parsed.header.contains("multipart/alternative"));

        let inner = decrypt(&parsed.armored);
        assert_eq!(inner, format!("{CONTENT_FIELDS}\r\n{BODY}").as_bytes());
    }

    #[test]
    fn lf_message_stays_lf() {
        let raw = sample().replace("\r\n", "\n");
        let output = encrypt_generated(raw.as_bytes());
        assert!(only_line_breaks(&output, "\n"));
        let parsed = split_output(&output, "\n");
        assert!(
            parsed
                .header
                .starts_with(&OTHER_FIELDS.replace("\r\n", "\n"))
        );
        let inner = decrypt(&parsed.armored);
        assert_eq!(
            inner,
            format!("{CONTENT_FIELDS}\r\n{BODY}")
                .replace("\r\n", "\n")
                .as_bytes()
        );
    }

    #[test]
    fn content_fields_move_inside_and_mime_version_is_added() {
        let raw = "From: a@example.com\r\nCONTENT-TYPE: image/png; name=x.png\r\n\
                   Content-Disposition: attachment;\r\n filename=x.png\r\n\
                   Content-ID: <x@example.com>\r\nContent-Description: A picture\r\n\
                   Contentious: stays\r\n\r\niVBORw0K\r\n";
        let output = encrypt_generated(raw.as_bytes());
        let parsed = split_output(&output, "\r\n");
        let outer: Vec<&str> = parsed.header.lines().collect();
        assert_eq!(
            outer[..3],
            [
                "From: a@example.com",
                "Contentious: stays",
                "MIME-Version: 1.0"
            ]
        );
        assert_eq!(parsed.header.matches("Content-Description").count(), 1);
        assert_eq!(
            decrypt(&parsed.armored),
            b"CONTENT-TYPE: image/png; name=x.png\r\nContent-Disposition: attachment;\r\n filename=x.png\r\n\
              Content-ID: <x@example.com>\r\nContent-Description: A picture\r\n\r\niVBORw0K\r\n"
        );
    }

    #[test]
    fn message_without_content_fields_gets_the_default_type() {
        let output = encrypt_generated(b"Subject: plain\r\n\r\nJust text.\r\n");
        let parsed = split_output(&output, "\r\n");
        assert!(
            parsed
                .header
                .starts_with("Subject: plain\r\nMIME-Version: 1.0\r\n")
        );
        assert_eq!(
            decrypt(&parsed.armored),
            b"Content-Type: text/plain; charset=us-ascii\r\n\r\nJust text.\r\n"
        );
    }

    #[test]
    fn header_only_message_gets_line_breaks() {
        let output = encrypt_generated(b"Subject: no body\r\nContent-Type: text/plain");
        let parsed = split_output(&output, "\r\n");
        assert!(
            parsed
                .header
                .starts_with("Subject: no body\r\nMIME-Version: 1.0\r\n")
        );
        assert_eq!(
            decrypt(&parsed.armored),
            b"Content-Type: text/plain\r\n\r\n"
        );
        // Cut between CR and LF: the CR is not left bare.
        let output = encrypt_generated(b"Subject: cut\r");
        assert!(only_line_breaks(&output, "\r\n"));
        let parsed = split_output(&output, "\r\n");
        assert!(
            parsed
                .header
                .starts_with("Subject: cut\r\nMIME-Version: 1.0\r\n")
        );
    }

    #[test]
    fn fixture_keys_encrypt_to_their_encryption_subkey() {
        for fixture in [RSA, ED25519] {
            let output = encrypt_message(sample().as_bytes(), fixture)
                .expect("encryption")
                .expect("not yet encrypted");
            let parsed = split_output(&output, "\r\n");
            let (key, _) = SignedPublicKey::from_string(fixture).expect("fixture");
            let (message, _) = PgpMessage::from_string(&parsed.armored).expect("armored message");
            let PgpMessage::Encrypted { esk, .. } = message else {
                panic!("not an encrypted message");
            };
            let [Esk::PublicKeyEncryptedSessionKey(pkesk)] = esk.as_slice() else {
                panic!("expected one PKESK: {esk:?}");
            };
            assert!(pkesk.match_identity(&key.public_subkeys[0].key));
            assert!(!pkesk.match_identity(&key.primary_key));
        }
    }

    #[test]
    fn unusable_keys_are_errors() {
        for (key, reason) in [
            (ED25519_SIGN_ONLY, "No encryption-capable key found"),
            (RSA_SIGN_ONLY, "No encryption-capable key found"),
            (EXPIRED, "Primary key has expired"),
            (REVOKED, "Primary key is revoked"),
            ("not a key", "Not an ASCII-armored PGP public key"),
        ] {
            match encrypt_message(sample().as_bytes(), key) {
                Err(EncryptError::InvalidKey(found)) => assert_eq!(found, reason),
                other => panic!("{reason}: {other:?}"),
            }
        }
        let err = encrypt_message(b"Subject: x\r\n\r\n", ED25519_SIGN_ONLY).unwrap_err();
        assert_eq!(
            err.to_string(),
            "PGP key validation failed. No encryption-capable key found"
        );
    }

    #[test]
    fn encrypted_messages_are_skipped() {
        let pgp_mime = "Subject: x\r\nContent-type:\r\n Multipart/Encrypted ;\r\n \
                        protocol=\"application/pgp-encrypted\"; boundary=b\r\n\r\n--b--\r\n";
        let inline =
            "Subject: x\nContent-Type: text/plain\n\n\n  -----BEGIN PGP MESSAGE-----\n\nhQ==\n";
        let headerless = "-----BEGIN PGP MESSAGE-----\r\n\r\nhQ==\r\n-----END PGP MESSAGE-----\r\n";
        for raw in [pgp_mime, inline, headerless] {
            assert!(is_encrypted(raw.as_bytes()), "{raw}");
            // The key is not even read: no work, and no error, for these.
            assert!(
                encrypt_message(raw.as_bytes(), "not a key")
                    .unwrap()
                    .is_none()
            );
        }
        // Encrypting twice does nothing the second time.
        let once = encrypt_generated(sample().as_bytes());
        assert!(is_encrypted(&once));
        assert!(encrypt_message(&once, &generated().1).unwrap().is_none());
    }

    #[test]
    fn other_messages_are_not_encrypted() {
        for raw in [
            sample(),
            "Content-Type: multipart/signed; protocol=\"application/pgp-signature\"\r\n\r\n".into(),
            "Content-Type: multipart/encrypted-not\r\n\r\n".into(),
            "X-Content-Type: multipart/encrypted\r\n\r\n".into(),
            // Only the top-level type counts, not a forwarded encrypted part.
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
             Content-Type: multipart/encrypted; boundary=c\r\n\r\n--c--\r\n--b--\r\n"
                .into(),
            "Subject: x\r\n\r\nQuoted:\r\n-----BEGIN PGP MESSAGE-----\r\n".into(),
            String::new(),
        ] {
            assert!(!is_encrypted(raw.as_bytes()), "{raw}");
        }
    }

    #[test]
    fn unparseable_input_is_encrypted_whole() {
        let mut binary: Vec<u8> = (0..=255).collect();
        binary.extend_from_slice(b"\r\n\r\nSubject: late\r\n");
        let cases: [(&[u8], &[u8]); 6] = [
            (b"no header here\r\nat all\r\n", DEFAULT_CONTENT_TYPE),
            (b" starts folded: x\r\n\r\nbody", DEFAULT_CONTENT_TYPE),
            (b": no name\r\n\r\nbody", DEFAULT_CONTENT_TYPE),
            (
                "Grüße\n".as_bytes(),
                b"Content-Type: text/plain; charset=utf-8",
            ),
            (
                b"Subject: nul \0 inside\r\n\r\nbody",
                b"Content-Type: application/octet-stream",
            ),
            (&binary, b"Content-Type: application/octet-stream"),
        ];
        for (raw, content_type) in cases {
            let output = encrypt_generated(raw);
            let eol = std::str::from_utf8(detect_eol(raw)).unwrap();
            let parsed = split_output(&output, eol);
            assert!(parsed.header.starts_with("MIME-Version: 1.0"), "{raw:?}");
            let inner = decrypt(&parsed.armored);
            assert!(inner.starts_with(content_type), "{raw:?}");
            let header_len = inner.len() - raw.len();
            assert!(inner[..header_len].ends_with(format!("{eol}{eol}").as_bytes()));
            assert_eq!(&inner[header_len..], raw);
        }
    }

    #[test]
    fn degenerate_messages_do_not_panic() {
        for raw in [
            &b""[..],
            b"\r\n",
            b"\n",
            b"\r",
            b"\r\n\r\n",
            b"Subject: x",
            b"Subject: x\n",
            b"Subject: x\r",
            b"Subject:\r\n\r\n",
            b"A:\n\tb\n\n",
            b"\r\nbody after an empty header",
            b"\xff\xfe: x\r\n\r\n",
            b"Subject: \xc3\x28 invalid UTF-8\r\n\r\n\xff",
            b"-----BEGIN PGP MESSAGE-----",
        ] {
            let message = Message::parse(raw);
            let _ = message.is_encrypted();
            let wrapped = message.wrap("-----BEGIN PGP MESSAGE-----\n\nhQ==\n", "b");
            assert!(wrapped.ends_with(b"--b--\r\n") || wrapped.ends_with(b"--b--\n"));
            if !is_encrypted(raw) {
                let output = encrypt_generated(raw);
                assert!(is_encrypted(&output), "{raw:?}");
            }
        }
    }

    #[test]
    fn random_bytes_do_not_panic() {
        // A fixed xorshift stream over bytes that matter to the parser, so
        // that a failure can be reproduced.
        const ALPHABET: &[u8] = b"\r\n\r\n:: \tAz-\0\xff\xc3";
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2000 {
            let len = (next() % 40) as usize;
            let raw: Vec<u8> = (0..len)
                .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                .collect();
            let message = Message::parse(&raw);
            let _ = message.is_encrypted();
            let inner = message.inner_entity();
            assert!(inner.ends_with(message.body));
            let _ = message.wrap(
                "-----BEGIN PGP MESSAGE-----\n-----END PGP MESSAGE-----\n",
                "b",
            );
        }
    }

    #[test]
    fn boundaries_are_fresh_and_safe() {
        let first = new_boundary();
        assert_ne!(first, new_boundary());
        assert_eq!(first.len(), 34);
        assert!(first.starts_with("eider_"));
        assert!(first[6..].bytes().all(|byte| byte.is_ascii_hexdigit()));
    }

    #[test]
    fn error_can_cross_threads() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<EncryptError>();
    }
}
