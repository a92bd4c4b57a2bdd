//! Parsing a raw RFC 822 message into everything the API shows about it.
//!
//! Owns WildDuck's indexing rules (spec/wildduck-behaviour.md §2.29, §2.32, §2.37, §4.3–§4.5):
//! which MIME parts are text, HTML or attachments, attachment numbering (`ATT00001`, ... in
//! depth-first MIME order), `cid:` rewriting, the intro, the thread references and the
//! normalized thread subject, plus the search terms Eider indexes instead of MongoDB's `$text`.
//!
//! How it is built:
//! * The MIME tree is split here, line by line and without recursion, so that every part keeps
//!   the byte range of its *encoded* body in the raw message. The store keeps only the raw
//!   message; an attachment is served later by a ranged read of `body_start..body_end` and
//!   [`decode_body`]. Splitting ourselves also bounds the nesting depth: mail-parser builds
//!   nested `message/rfc822` parts as nested values, and a few thousand levels of them
//!   overflow the stack, which aborts a process instead of panicking.
//! * Header fields are parsed by mail-parser's field parsers (addresses, RFC 2047 words,
//!   RFC 2231 parameters, dates, message ids) and its charset tables.
//! * [`parse`] never fails: malformed input yields whatever could be read.
//!
//! Where Eider deliberately differs from WildDuck, the item's doc says so.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::parsers::MessageStream;
use mail_parser::{HeaderValue, MessageParser};
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Plain text kept per message (§4.3: WildDuck's `MAX_PLAINTEXT_CONTENT`), in UTF-8 bytes.
pub const MAX_TEXT_BYTES: usize = 100 * 1024;
/// HTML kept per message, all entries together (§4.3: `MAX_HTML_CONTENT`), in UTF-8 bytes.
pub const MAX_HTML_BYTES: usize = 640 * 1024;
/// Inline text parts with a larger encoded body also get an attachment number (§2.37).
pub const LARGE_INLINE_TEXT_BYTES: usize = 300 * 1024;
/// At most this many thread reference ids per message (§4.4).
pub const MAX_THREAD_REFS: usize = 10;
/// How much of the plain text feeds the search terms. WildDuck indexes 1 KiB; 4 KiB catches
/// the first paragraphs of messages that open with a long greeting or a quoted header block.
pub const SEARCH_TEXT_BYTES: usize = 4 * 1024;
/// Longest search term, in characters; longer words (hashes, base64, URLs) are not indexed.
pub const MAX_TERM_CHARS: usize = 64;
/// At most this many search terms per message.
pub const MAX_SEARCH_TERMS: usize = 1000;
/// Terms one message gives the full-text index at most (100 KiB of text rarely has more).
pub const MAX_INDEX_TERMS: usize = 20_000;
/// Longest decoded header value kept (subject, `headers`, list headers), in UTF-8 bytes, so a
/// hostile header cannot blow up the stored item.
pub const MAX_HEADER_VALUE_BYTES: usize = 16 * 1024;

/// At most this many header fields in [`ParsedMessage::headers`].
const MAX_HEADERS: usize = 1000;
/// At most this many addresses per address field.
const MAX_ADDRESSES: usize = 1000;
/// MIME nesting deeper than this is not split further: the part is kept as one leaf.
const MAX_DEPTH: usize = 32;
/// Encapsulated messages deeper than this are kept as one leaf. Lower than [`MAX_DEPTH`]
/// because each `message/rfc822` level is an attachment whose body (all levels below it) is
/// hashed and decoded again; real forwards rarely nest more than a few levels.
const MAX_MESSAGE_DEPTH: usize = 8;
/// At most this many MIME parts are split out; later parts stay inside their parent's body.
const MAX_PARTS: usize = 1000;
/// Only this much of an inline text part's encoded body is decoded for `text`/`html`/intro:
/// more could never be kept (see the caps above) and would only cost memory.
const TEXT_SOURCE_LIMIT: usize = 4 * 1024 * 1024;
/// WildDuck does not convert HTML of 2 MiB or more to text (`MAX_HTML_PARSE_LENGTH`).
const HTML_TO_TEXT_LIMIT: usize = 2 * 1024 * 1024;
/// The intro is built from the first 2 KiB characters of the text (§4.3).
const INTRO_SOURCE_CHARS: usize = 2 * 1024;
/// The intro is cut at 128 characters (§4.3).
const INTRO_MAX_CHARS: usize = 128;

/// Content types that are shown as message text when inline (§4.5).
const INLINE_TEXT_TYPES: [&str; 4] = [
    "text/plain",
    "text/html",
    "text/rfc822-headers",
    "message/delivery-status",
];

/// One mailbox (`name <address>`) or, when `group` is set, an RFC 5322 group (§2.29).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    /// Display name, RFC 2047-decoded; `""` when absent.
    pub name: String,
    /// The address with its domain lowercased and `xn--` labels shown in Unicode; `""` for a
    /// group.
    pub address: String,
    /// Members when this entry is a named group (`Team: a@x, b@y;`), as WildDuck's
    /// `{name, group: [...]}` entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<Vec<Address>>,
}

/// A MIME part that got an attachment number (§2.32, §2.37, §4.5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentInfo {
    /// `ATT00001`, `ATT00002`, ... in depth-first MIME order.
    pub id: String,
    /// From Content-Disposition `filename` or Content-Type `name` (RFC 2047/2231-decoded);
    /// else 8 hex characters plus an extension for the content type. Eider takes the hex
    /// characters from `hash` instead of WildDuck's random bytes, so that parsing the same
    /// message twice gives the same name.
    pub filename: String,
    /// Lowercased `type/subtype`.
    pub content_type: String,
    /// The Content-Disposition value, lowercased. WildDuck sends `false` when the header is
    /// missing; Eider sends `"inline"` for parts inside `multipart/related` and `"attachment"`
    /// otherwise, so the field always has the type the API documents.
    pub disposition: String,
    /// Lowercased Content-Transfer-Encoding, `7bit` when missing.
    pub transfer_encoding: String,
    /// `<content-id>` or `None`.
    pub cid: Option<String>,
    /// The part sits inside `multipart/related` (an embedded image).
    pub related: bool,
    /// Decoded size in bytes.
    pub size: u64,
    /// `ceil(size / 1024)`. WildDuck estimates from the encoded size; Eider knows the exact
    /// decoded size.
    pub size_kb: u64,
    /// Hex SHA-256 of the encoded body bytes (`raw[body_start..body_end]`).
    pub hash: String,
    /// Base64 SHA-256 of the decoded bytes.
    pub file_content_hash: String,
    /// Start of the encoded body in the raw message.
    pub body_start: u64,
    /// End (exclusive) of the encoded body; the line break before the next boundary is not
    /// part of it.
    pub body_end: u64,
    /// False for inline text parts over [`LARGE_INLINE_TEXT_BYTES`]: they take a number but
    /// are not shown in attachment lists (§2.37).
    pub listed: bool,
}

/// A parsed Content-Type header: `{value, params}` as the API shows it (§2.29).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentTypeInfo {
    /// Lowercased `type/subtype`.
    pub value: String,
    /// Parameters with lowercased names and decoded values.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

/// Everything the API shows about a message that comes from its raw bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParsedMessage {
    /// First From address, else the first Sender address (§2.29). The envelope fallback is
    /// the caller's: it knows MAIL FROM.
    pub from: Option<Address>,
    /// First Sender address.
    pub sender: Option<Address>,
    /// All To headers' addresses, in order.
    pub to: Vec<Address>,
    /// All Cc headers' addresses, in order.
    pub cc: Vec<Address>,
    /// All Bcc headers' addresses, in order.
    pub bcc: Vec<Address>,
    /// All Reply-To headers' addresses, in order.
    pub reply_to: Vec<Address>,
    /// Last Subject header, decoded, whitespace collapsed, `Re:` kept; `""` when missing.
    pub subject: String,
    /// Last Message-ID header (the first `<...>` token of it), or a generated
    /// `<uuid@eider>`. WildDuck generates a random one; Eider derives it from the SHA-256 of
    /// the raw message, so that re-parsing gives the same id.
    pub message_id: String,
    /// Date header in UTC; `None` when missing or invalid (the caller falls back to idate).
    pub date: Option<DateTime<Utc>>,
    /// Last In-Reply-To header, unfolded.
    pub in_reply_to: Option<String>,
    /// Whitespace-separated tokens of the last References header (`<id>` as written).
    pub references: Vec<String>,
    /// Last List-ID header, decoded and unfolded.
    pub list_id: Option<String>,
    /// Last List-Unsubscribe header, unfolded.
    pub list_unsubscribe: Option<String>,
    /// Preview line (§4.3; empty from [`parse_for_display`]).
    pub intro: String,
    /// Plain text of the inline text parts, at most [`MAX_TEXT_BYTES`].
    pub text: String,
    /// One HTML string per inline HTML part (plain text parts outside alternatives are
    /// converted), `cid:` links rewritten to `attachment:ATTnnnnn`, at most
    /// [`MAX_HTML_BYTES`] together.
    pub html: Vec<String>,
    /// Numbered parts, listed or not, in number order (none from [`parse_for_display`]).
    pub attachments: Vec<AttachmentInfo>,
    /// A listed attachment outside `multipart/related` exists (WildDuck's `ha`; always
    /// `false` from [`parse_for_display`]).
    pub has_attachments: bool,
    /// The top-level Content-Type; `text/plain` when the header is missing, as in WildDuck.
    pub content_type: ContentTypeInfo,
    /// The message is `multipart/encrypted`.
    pub encrypted: bool,
    /// Thread reference ids (§4.4 step 1): SHA-1, base64 without padding, at most
    /// [`MAX_THREAD_REFS`].
    pub thread_refs: Vec<String>,
    /// Normalized subject for thread matching (§4.4 step 2).
    pub thread_subject: String,
    /// Search terms (see [`search_terms`]) from the subject, the From, Sender, Reply-To, To
    /// and Cc names and addresses, List-ID and the first [`SEARCH_TEXT_BYTES`] of text;
    /// deduplicated, at most [`MAX_SEARCH_TERMS`].
    pub search_terms: Vec<String>,
    /// Top-level header fields in order as `(name, decoded value)`, for `includeHeaders`;
    /// known names in their canonical spelling. At most 1000 fields of
    /// [`MAX_HEADER_VALUE_BYTES`] each.
    pub headers: Vec<(String, String)>,
}

/// Parses a raw message. Never fails and never panics: malformed input gives whatever could
/// be read (an empty subject, no addresses, ...).
pub fn parse(raw: &[u8]) -> ParsedMessage {
    // The parser is written not to panic; this guard keeps a bug in it (or in a dependency)
    // from failing a whole delivery. The caught panic is still logged by the panic hook.
    std::panic::catch_unwind(|| parse_with(raw, Purpose::Store)).unwrap_or_else(|_| fallback(raw))
}

/// [`parse`] for showing a stored message (whose item already lists its attachments and holds
/// its intro): no search terms, no intro, and no attachments (they are only numbered, for
/// `cid:` links). Decoding and
/// hashing every attachment was two thirds of a `GET` of a message with a 60 KB PDF.
pub fn parse_for_display(raw: &[u8]) -> ParsedMessage {
    std::panic::catch_unwind(|| parse_with(raw, Purpose::Display)).unwrap_or_else(|_| fallback(raw))
}

/// What a parse is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// Storing a message: search terms, and every attachment decoded for its size and hashes.
    Store,
    /// Showing a stored one: neither.
    Display,
}

#[cfg(test)]
fn parse_inner(raw: &[u8]) -> ParsedMessage {
    parse_with(raw, Purpose::Store)
}

/// `raw` without the top-level header fields named in `names` (any case), their folded
/// continuation lines included; the body and every other field stay byte for byte.
pub fn without_header_fields(raw: &[u8], names: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut rest = raw;
    let mut dropping = false;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let line = &rest[..end];
        rest = &rest[end..];
        if line == b"\r\n" || line == b"\n" {
            // The end of the header: the rest is the body.
            out.extend_from_slice(line);
            out.extend_from_slice(rest);
            break;
        }
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !continuation {
            let name = line
                .iter()
                .position(|&b| b == b':')
                .map(|colon| String::from_utf8_lossy(&line[..colon]).trim().to_string());
            dropping = name.is_some_and(|n| names.iter().any(|x| x.eq_ignore_ascii_case(&n)));
        }
        if !dropping {
            out.extend_from_slice(line);
        }
    }
    out
}

/// Decodes an encoded body taken from `raw[body_start..body_end]`: lenient base64 (invalid
/// characters skipped, padding anywhere ends a group), quoted-printable (soft breaks removed,
/// trailing blanks dropped, broken escapes kept literally); any other encoding
/// (7bit, 8bit, binary, unknown) passes through.
pub fn decode_body(raw_part_body: &[u8], transfer_encoding: &str) -> Vec<u8> {
    let encoding = transfer_encoding.trim();
    if encoding.eq_ignore_ascii_case("base64") {
        decode_base64(raw_part_body)
    } else if encoding.eq_ignore_ascii_case("quoted-printable") {
        decode_quoted_printable(raw_part_body)
    } else {
        raw_part_body.to_vec()
    }
}

/// The thread subject (§4.4 step 2): whitespace collapsed, then leading `re:`/`fw:`/`fwd:`
/// (any case, blanks before the colon), a leading `[tag]` followed by more text and a
/// trailing `(fwd)` stripped until none is left. `"Re: Fwd: [list] Hello (fwd)"` → `"Hello"`.
pub fn normalize_subject(subject: &str) -> String {
    let collapsed = collapse_whitespace(subject);
    // Slices only: a long `Re: Re: Re: ...` chain costs one pass per prefix, no copies.
    let mut rest = collapsed.as_str();
    loop {
        let mut changed = false;
        if let Some(stripped) = strip_reply_prefix(rest).or_else(|| strip_tag_prefix(rest)) {
            rest = stripped;
            changed = true;
        }
        if let Some(stripped) = strip_fwd_suffix(rest) {
            rest = stripped;
            changed = true;
        }
        if !changed {
            return rest.to_string();
        }
        rest = rest.trim();
    }
}

/// The tokenizer used both to index messages and to split queries, so that a query matches
/// when all of its terms are among a message's terms.
///
/// Text is folded (NFKD, combining marks dropped, lowercased: `Jöran` → `joran`) and cut into
/// chunks of letters, digits and the joiners `. @ - _ +`. A chunk with joiners is a term as a
/// whole, and so are its parts: an address gives itself, its local part, its domain and each
/// word (`john.doe@example.com` → `john.doe@example.com`, `john.doe`, `example.com`, `john`,
/// `doe`, `example`, `com`). CJK ideographs and kana, written without spaces, are one term per
/// character. Terms have 1 to [`MAX_TERM_CHARS`] characters; duplicates are dropped; at most
/// [`MAX_SEARCH_TERMS`].
pub fn search_terms(text: &str) -> Vec<String> {
    let mut terms = Terms::default();
    terms.add_text(text);
    terms.list
}

// ---------------------------------------------------------------------------------------------
// The parse itself

fn parse_with(raw: &[u8], purpose: Purpose) -> ParsedMessage {
    let parts = split(raw);
    let root = &parts[0];
    let fields = &root.fields;

    let from_list = address_field(fields, "from");
    let sender = address_field(fields, "sender").into_iter().next();
    let from = from_list
        .into_iter()
        .find(|a| a.group.is_none())
        .or_else(|| sender.clone());
    let to = address_field(fields, "to");
    let cc = address_field(fields, "cc");
    let bcc = address_field(fields, "bcc");
    let reply_to = address_field(fields, "reply-to");

    let subject = last_field(fields, "subject")
        .map(|f| {
            cap_str(
                &collapse_whitespace(&unstructured(&f.raw)),
                MAX_HEADER_VALUE_BYTES,
            )
            .to_string()
        })
        .unwrap_or_default();

    let message_id_raw = last_raw(fields, "message-id");
    let in_reply_to_raw = last_raw(fields, "in-reply-to");
    let thread_index_raw = last_raw(fields, "thread-index");
    let references_raw = last_raw(fields, "references");

    let message_id = message_id_token(&message_id_raw)
        .map(|id| cap_str(id, MAX_HEADER_VALUE_BYTES).to_string())
        .unwrap_or_else(|| generated_message_id(raw));
    let thread_refs = thread_refs(&[
        &message_id_raw,
        &in_reply_to_raw,
        &thread_index_raw.chars().take(22).collect::<String>(),
        &references_raw,
    ]);
    let thread_subject = normalize_subject(&subject);

    let body = walk(raw, &parts, purpose);

    let content_type = ContentTypeInfo {
        value: root.mime.ctype.clone(),
        params: root.mime.params.clone(),
    };
    let encrypted = content_type.value == "multipart/encrypted";

    let list_id = last_field(fields, "list-id")
        .map(|f| cap_str(&unstructured(&f.raw), MAX_HEADER_VALUE_BYTES).to_string())
        .filter(|v| !v.is_empty());
    let list_unsubscribe = non_empty(last_raw(fields, "list-unsubscribe"));

    let mut terms = Terms::default();
    if purpose == Purpose::Store {
        add_header_terms(
            &mut terms,
            &subject,
            [from.as_ref(), sender.as_ref()]
                .into_iter()
                .flatten()
                .chain(&reply_to)
                .chain(&to)
                .chain(&cc),
            list_id.as_deref(),
        );
        terms.add_text(cap_str(&body.text, SEARCH_TEXT_BYTES));
    }

    let headers = fields
        .iter()
        .take(MAX_HEADERS)
        .map(|f| {
            let value = unstructured(&f.raw);
            (
                f.name.clone(),
                cap_str(&value, MAX_HEADER_VALUE_BYTES).to_string(),
            )
        })
        .collect();

    let has_attachments = body.attachments.iter().any(|a| a.listed && !a.related);

    ParsedMessage {
        from,
        sender,
        to,
        cc,
        bcc,
        reply_to,
        subject,
        message_id,
        date: last_field(fields, "date").and_then(|f| field_date(&f.value)),
        in_reply_to: non_empty(in_reply_to_raw),
        references: references_raw
            .split_whitespace()
            .map(str::to_string)
            .collect(),
        list_id,
        list_unsubscribe,
        intro: body.intro,
        text: body.text,
        html: body.html,
        attachments: body.attachments,
        has_attachments,
        content_type,
        encrypted,
        thread_refs,
        thread_subject,
        search_terms: terms.list,
        headers,
    }
}

/// The words of the headers search looks at: subject, From, Sender, Reply-To, To, Cc, List-ID.
fn add_header_terms<'a>(
    terms: &mut Terms,
    subject: &str,
    addresses: impl Iterator<Item = &'a Address>,
    list_id: Option<&str>,
) {
    terms.add_text(subject);
    for address in addresses {
        terms.add_address(address);
    }
    if let Some(list_id) = list_id {
        terms.add_text(list_id);
    }
}

/// Every search term of a message for the full-text index: the header words of
/// [`ParsedMessage::search_terms`] and those of the whole plain text (up to
/// [`MAX_TEXT_BYTES`]), each once, at most [`MAX_INDEX_TERMS`].
pub fn index_terms(parsed: &ParsedMessage) -> Vec<String> {
    let mut terms = Terms {
        cap: MAX_INDEX_TERMS,
        ..Terms::default()
    };
    add_header_terms(
        &mut terms,
        &parsed.subject,
        [parsed.from.as_ref(), parsed.sender.as_ref()]
            .into_iter()
            .flatten()
            .chain(&parsed.reply_to)
            .chain(&parsed.to)
            .chain(&parsed.cc),
        parsed.list_id.as_deref(),
    );
    terms.add_text(&parsed.text);
    terms.list
}

/// What [`parse`] returns if parsing itself panicked: nothing but a message id.
fn fallback(raw: &[u8]) -> ParsedMessage {
    ParsedMessage {
        from: None,
        sender: None,
        to: Vec::new(),
        cc: Vec::new(),
        bcc: Vec::new(),
        reply_to: Vec::new(),
        subject: String::new(),
        message_id: generated_message_id(raw),
        date: None,
        in_reply_to: None,
        references: Vec::new(),
        list_id: None,
        list_unsubscribe: None,
        intro: String::new(),
        text: String::new(),
        html: Vec::new(),
        attachments: Vec::new(),
        has_attachments: false,
        content_type: ContentTypeInfo {
            value: "text/plain".to_string(),
            params: BTreeMap::new(),
        },
        encrypted: false,
        thread_refs: Vec::new(),
        thread_subject: String::new(),
        search_terms: Vec::new(),
        headers: Vec::new(),
    }
}

/// `<uuid@eider>` from the message's SHA-256, formatted as an RFC 9562 version 8 UUID.
fn generated_message_id(raw: &[u8]) -> String {
    let digest = Sha256::digest(raw);
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!(
        "<{}-{}-{}-{}-{}@eider>",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The first `<...>` token of a Message-ID value, else the trimmed value; `None` when empty.
fn message_id_token(raw: &str) -> Option<&str> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    if let Some(open) = raw.find('<')
        && let Some(len) = raw[open..].find('>')
    {
        return Some(&raw[open..=open + len]);
    }
    Some(raw)
}

/// §4.4 step 1: split on whitespace, strip `<>`, SHA-1, base64 without padding, deduplicate,
/// keep the first [`MAX_THREAD_REFS`].
fn thread_refs(values: &[&str]) -> Vec<String> {
    let joined = values.join(" ");
    let mut seen = HashSet::new();
    let mut refs = Vec::new();
    for token in joined.split_whitespace() {
        let id: String = token.chars().filter(|c| *c != '<' && *c != '>').collect();
        let id = id.trim();
        if id.is_empty() {
            continue;
        }
        let hash = STANDARD_NO_PAD.encode(Sha1::digest(id.as_bytes()));
        if seen.insert(hash.clone()) {
            refs.push(hash);
            if refs.len() == MAX_THREAD_REFS {
                break;
            }
        }
    }
    refs
}

// ---------------------------------------------------------------------------------------------
// MIME splitting

/// Where a part is in the line-by-line split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading header lines.
    Header,
    /// Reading the body (for a multipart: waiting for its delimiters).
    Body,
    /// A multipart after its close delimiter: the rest is epilogue.
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Leaf,
    /// A multipart with the boundary its delimiters use.
    Multipart(Vec<u8>),
    /// An unencoded `message/rfc822` (or `message/global`): its body is a message, split as
    /// the part's only child.
    Message,
}

/// One header field of a part.
#[derive(Debug, Clone)]
struct Field {
    /// Canonical name for known fields (`Subject`), as written for others.
    name: String,
    /// mail-parser's typed value.
    value: HeaderValue<'static>,
    /// The raw value after the colon, line breaks included, in UTF-8.
    raw: String,
}

/// The MIME facts of a part that the rules need.
#[derive(Debug, Clone, Default)]
struct Mime {
    /// Effective lowercased `type/subtype`: `text/plain` when missing, `message/rfc822`
    /// inside `multipart/digest` (RFC 2046 §5.1.5).
    ctype: String,
    params: BTreeMap<String, String>,
    disposition: Option<String>,
    filename: Option<String>,
    /// Content-ID without `<>`; `""` when missing.
    content_id: String,
    /// Lowercased, `7bit` when missing.
    transfer_encoding: String,
}

#[derive(Debug, Clone)]
struct Part {
    depth: usize,
    /// How many `message/rfc822` parts enclose this one.
    message_depth: usize,
    header_start: usize,
    body_start: usize,
    end: usize,
    phase: Phase,
    /// The blank line that ends the header block was seen.
    header_complete: bool,
    kind: Kind,
    children: Vec<usize>,
    fields: Vec<Field>,
    mime: Mime,
    in_digest: bool,
}

impl Part {
    fn new(parent: Option<&Part>, header_start: usize, in_digest: bool) -> Self {
        Part {
            depth: parent.map_or(0, |p| p.depth + 1),
            message_depth: parent.map_or(0, |p| {
                p.message_depth + usize::from(p.kind == Kind::Message)
            }),
            header_start,
            body_start: header_start,
            end: header_start,
            phase: Phase::Header,
            header_complete: false,
            kind: Kind::Leaf,
            children: Vec::new(),
            fields: Vec::new(),
            mime: Mime::default(),
            in_digest,
        }
    }

    fn body<'r>(&self, raw: &'r [u8]) -> &'r [u8] {
        raw.get(self.body_start..self.end).unwrap_or_default()
    }
}

/// Splits a message into its MIME parts; index 0 is the top level. Iterative, linear in the
/// input (delimiter checks are bounded by [`MAX_DEPTH`]), and follows RFC 2046: a delimiter is
/// a whole line `--boundary` (optionally `--` after it, then blanks), the line break before it
/// belongs to it, and a delimiter of any enclosing multipart ends the inner parts too (so a
/// missing close delimiter does not swallow the rest of the message).
fn split(raw: &[u8]) -> Vec<Part> {
    let mut parts = vec![Part::new(None, 0, false)];
    let mut path: Vec<usize> = vec![0];
    let mut pos = 0;

    while pos < raw.len() {
        let (line_end, next) = match memchr::memchr(b'\n', &raw[pos..]) {
            Some(i) => (pos + i, pos + i + 1),
            None => (raw.len(), raw.len()),
        };
        let mut line = &raw[pos..line_end];
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }

        if line.starts_with(b"--")
            && let Some((level, closing)) = match_delimiter(&parts, &path, line)
        {
            let end = end_before_line(raw, pos);
            for &idx in &path[level + 1..] {
                close_part(&mut parts, idx, raw, end);
            }
            path.truncate(level + 1);
            let multipart = path[level];
            if closing {
                parts[multipart].phase = Phase::Closed;
            } else if parts.len() < MAX_PARTS {
                let parent = &parts[multipart];
                let child = Part::new(Some(parent), next, parent.mime.ctype == "multipart/digest");
                parts.push(child);
                let idx = parts.len() - 1;
                parts[multipart].children.push(idx);
                path.push(idx);
            }
            // Past MAX_PARTS the next parts' lines stay in the multipart's body, unread.
            pos = next;
            continue;
        }

        let current = path[path.len() - 1];
        if parts[current].phase == Phase::Header && line.is_empty() {
            parts[current].header_complete = true;
            finish_header(&mut parts, current, raw, next, next);
            if parts[current].kind == Kind::Message {
                let child = Part::new(Some(&parts[current]), next, false);
                parts.push(child);
                let idx = parts.len() - 1;
                parts[current].children.push(idx);
                path.push(idx);
            }
        }
        pos = next;
    }

    for &idx in &path {
        close_part(&mut parts, idx, raw, raw.len());
    }

    // No header block at all (no field and no blank line): the input is taken as plain text
    // rather than dropped.
    let root = &mut parts[0];
    if !root.header_complete && root.fields.is_empty() {
        root.body_start = 0;
        root.end = raw.len();
        root.kind = Kind::Leaf;
        root.children.clear();
        parts.truncate(1);
    }
    parts
}

/// The position of the delimiter's multipart in `path` and whether it is the close delimiter.
fn match_delimiter(parts: &[Part], path: &[usize], line: &[u8]) -> Option<(usize, bool)> {
    let mut line = line;
    while let [rest @ .., b' ' | b'\t'] = line {
        line = rest;
    }
    let after_dashes = line.get(2..)?;
    for (level, &idx) in path.iter().enumerate().rev() {
        let part = &parts[idx];
        if part.phase != Phase::Body {
            continue;
        }
        if let Kind::Multipart(boundary) = &part.kind
            && let Some(rest) = after_dashes.strip_prefix(boundary.as_slice())
        {
            if rest.is_empty() {
                return Some((level, false));
            }
            if rest == b"--" {
                return Some((level, true));
            }
        }
    }
    None
}

/// The offset where a line break ending just before `line_start` begins.
fn end_before_line(raw: &[u8], line_start: usize) -> usize {
    let mut end = line_start;
    if end > 0 && raw[end - 1] == b'\n' {
        end -= 1;
        if end > 0 && raw[end - 1] == b'\r' {
            end -= 1;
        }
    }
    end
}

fn close_part(parts: &mut [Part], idx: usize, raw: &[u8], end: usize) {
    if parts[idx].phase == Phase::Header {
        let block_end = end.max(parts[idx].header_start);
        finish_header(parts, idx, raw, block_end, block_end);
    }
    let part = &mut parts[idx];
    part.end = end.max(part.body_start);
    if part.phase == Phase::Body {
        part.phase = Phase::Closed;
    }
}

/// Parses a part's header block `header_start..block_end` and decides its kind.
fn finish_header(parts: &mut [Part], idx: usize, raw: &[u8], block_end: usize, body_start: usize) {
    let part = &mut parts[idx];
    let block = raw.get(part.header_start..block_end).unwrap_or_default();
    part.fields = parse_fields(block);
    part.mime = mime_of(&part.fields, part.in_digest);
    part.body_start = body_start;
    part.phase = Phase::Body;
    let ctype = part.mime.ctype.as_str();
    let plain_encoding = matches!(
        part.mime.transfer_encoding.as_str(),
        "7bit" | "8bit" | "binary"
    );
    part.kind = if part.depth >= MAX_DEPTH {
        Kind::Leaf
    } else if ctype.starts_with("multipart/") {
        match part.mime.params.get("boundary") {
            Some(b) if !b.is_empty() => Kind::Multipart(b.as_bytes().to_vec()),
            _ => Kind::Leaf,
        }
    } else if (ctype == "message/rfc822" || ctype == "message/global")
        && plain_encoding
        && part.message_depth < MAX_MESSAGE_DEPTH
    {
        Kind::Message
    } else {
        Kind::Leaf
    };
}

/// Parses a header block with mail-parser's field parsers. Lines that are not valid UTF-8
/// are read as windows-1252 first: raw 8-bit headers from old clients are almost always
/// Latin-1 or windows-1252 (WildDuck reads them as UTF-8 and shows replacement characters).
fn parse_fields(block: &[u8]) -> Vec<Field> {
    let text = header_text(block);
    let mut stream = MessageStream::new(text.as_bytes());
    let mut headers = Vec::new();
    let parser = MessageParser::new();
    stream.parse_headers(&parser, &mut headers);
    headers
        .into_iter()
        .map(|h| {
            let raw = text
                .get(h.offset_start as usize..h.offset_end as usize)
                .unwrap_or_default()
                .to_string();
            Field {
                name: h.name().to_string(),
                value: h.value.into_owned(),
                raw,
            }
        })
        .collect()
}

fn header_text(block: &[u8]) -> Cow<'_, str> {
    if let Ok(text) = std::str::from_utf8(block) {
        return Cow::Borrowed(text);
    }
    let mut text = String::with_capacity(block.len() + block.len() / 8);
    for line in block.split_inclusive(|&b| b == b'\n') {
        match std::str::from_utf8(line) {
            Ok(valid) => text.push_str(valid),
            Err(_) => text.push_str(&decode_charset(line, Some("windows-1252"))),
        }
    }
    Cow::Owned(text)
}

fn mime_of(fields: &[Field], in_digest: bool) -> Mime {
    let content_type = last_field(fields, "content-type").and_then(|f| match &f.value {
        HeaderValue::ContentType(ct) => Some(ct),
        _ => None,
    });
    let (ctype, params) = match content_type {
        Some(ct) => {
            let main = ct.ctype().trim().to_ascii_lowercase();
            let ctype = match ct.subtype() {
                Some(sub) => format!("{main}/{}", sub.trim().to_ascii_lowercase()),
                None => main,
            };
            let params = ct
                .attributes()
                .unwrap_or_default()
                .iter()
                .map(|a| (a.name.to_ascii_lowercase(), a.value.to_string()))
                .collect();
            (ctype, params)
        }
        None if in_digest => ("message/rfc822".to_string(), BTreeMap::new()),
        None => ("text/plain".to_string(), BTreeMap::new()),
    };
    let disposition = last_field(fields, "content-disposition").and_then(|f| match &f.value {
        HeaderValue::ContentType(cd) => Some(cd),
        _ => None,
    });
    let filename = disposition
        .and_then(|cd| cd.attribute("filename"))
        .or_else(|| content_type.and_then(|ct| ct.attribute("name")))
        .map(|name| {
            decode_words(name)
                .chars()
                .filter(|c| !c.is_control())
                .collect::<String>()
                .trim()
                .to_string()
        })
        .filter(|name| !name.is_empty());
    let content_id: String = last_field(fields, "content-id")
        .map(|f| f.raw.chars().filter(|c| *c != '<' && *c != '>').collect())
        .unwrap_or_default();
    // The first token only: some senders add a comment (`base64 (encoded)`).
    let transfer_encoding = last_field(fields, "content-transfer-encoding")
        .and_then(|f| f.raw.split_whitespace().next())
        .map(str::to_ascii_lowercase)
        .unwrap_or_else(|| "7bit".to_string());
    Mime {
        ctype,
        params,
        disposition: disposition
            .map(|cd| cd.ctype().trim().to_ascii_lowercase())
            .filter(|d| !d.is_empty()),
        filename,
        content_id: content_id.trim().to_string(),
        transfer_encoding,
    }
}

// ---------------------------------------------------------------------------------------------
// Text, HTML and attachments (WildDuck's getMaildata, §4.3, §4.5)

struct Body {
    attachments: Vec<AttachmentInfo>,
    html: Vec<String>,
    text: String,
    intro: String,
}

/// Walks the parts depth first. Unlike WildDuck, the top part of an encapsulated message is
/// walked like any other part: WildDuck only walks its children, so a forwarded single-part
/// message gives no text, and a forwarded `multipart/alternative` loses its alternative flag.
fn walk(raw: &[u8], parts: &[Part], purpose: Purpose) -> Body {
    let mut attachments = Vec::new();
    let mut numbered = 0;
    let mut cids: HashMap<String, String> = HashMap::new();
    let mut html_parts: Vec<String> = Vec::new();
    let mut text_parts: Vec<String> = Vec::new();

    let mut stack = vec![(0usize, false, false)];
    while let Some((idx, alternative, related)) = stack.pop() {
        let part = &parts[idx];
        let container = !part.children.is_empty();
        // A multipart whose boundary never shows up (or that is too deep to split) is read as
        // text: showing its raw content beats showing nothing.
        let ctype = if part.mime.ctype.starts_with("multipart/") && !container {
            "text/plain"
        } else {
            part.mime.ctype.as_str()
        };
        let alternative = alternative || ctype == "multipart/alternative";
        let related = related || ctype == "multipart/related";

        if !matches!(part.kind, Kind::Multipart(_)) || !container {
            let body = part.body(raw);
            let inline_text = INLINE_TEXT_TYPES.contains(&ctype)
                && part
                    .mime
                    .disposition
                    .as_deref()
                    .is_none_or(|d| d == "inline");
            if inline_text && !body.is_empty() {
                let content = part_text(body, &part.mime);
                if ctype == "text/html" {
                    if !alternative && content.len() < HTML_TO_TEXT_LIMIT {
                        text_parts.push(html_to_text(&content).trim().to_string());
                    }
                    html_parts.push(content.trim().to_string());
                } else {
                    if !alternative {
                        html_parts.push(text_to_html(&content));
                    }
                    text_parts.push(content.trim().to_string());
                }
            }
            if !body.is_empty() && (!inline_text || body.len() > LARGE_INLINE_TEXT_BYTES) {
                numbered += 1;
                let id = format!("ATT{numbered:05}");
                cids.insert(part.mime.content_id.clone(), id.clone());
                if purpose == Purpose::Store {
                    attachments.push(attachment_info(raw, part, ctype, id, related, !inline_text));
                }
            }
        }
        for &child in part.children.iter().rev() {
            stack.push((child, alternative, related));
        }
    }

    let mut html = Vec::new();
    let mut html_size = 0;
    for part in html_parts.iter().filter(|h| !h.trim().is_empty()) {
        if html_size >= MAX_HTML_BYTES {
            break;
        }
        let rewritten = rewrite_cids(part, &cids);
        let kept = cap_str(&rewritten, MAX_HTML_BYTES - html_size);
        if kept.is_empty() {
            break;
        }
        html_size += kept.len();
        html.push(kept.to_string());
    }

    let joined = text_parts
        .iter()
        .filter(|t| !t.trim().is_empty())
        .map(|t| rewrite_cids(t, &cids))
        .collect::<Vec<_>>()
        .join("\n");
    let joined = crlf_to_lf(joined);
    let text = cap_str(joined.trim(), MAX_TEXT_BYTES).to_string();

    // WildDuck takes the intro from the HTML whenever there is HTML; Eider falls back to the
    // text when the HTML has no visible words (an image-only newsletter with a text part).
    // Showing a message needs no intro (its item stores one): converting the HTML for it was
    // a fifth of a `GET`.
    let mut intro = String::new();
    if purpose == Purpose::Store {
        if !html.is_empty() {
            intro = create_intro(&html_to_text(&html.concat()));
        }
        if intro.is_empty() {
            intro = create_intro(&text);
        }
    }

    Body {
        attachments,
        html,
        text,
        intro,
    }
}

fn attachment_info(
    raw: &[u8],
    part: &Part,
    ctype: &str,
    id: String,
    related: bool,
    listed: bool,
) -> AttachmentInfo {
    let encoded = part.body(raw);
    let (size, decoded_digest) = decoded_size_and_digest(encoded, &part.mime.transfer_encoding);
    let hash = hex(&Sha256::digest(encoded));
    let filename = part
        .mime
        .filename
        .clone()
        .unwrap_or_else(|| format!("{}.{}", &hash[..8], extension_for(ctype)));
    let disposition = part
        .mime
        .disposition
        .clone()
        .unwrap_or_else(|| if related { "inline" } else { "attachment" }.to_string());
    AttachmentInfo {
        id,
        filename,
        content_type: ctype.to_string(),
        disposition,
        transfer_encoding: part.mime.transfer_encoding.clone(),
        cid: (!part.mime.content_id.is_empty()).then(|| format!("<{}>", part.mime.content_id)),
        related,
        size,
        size_kb: size.div_ceil(1024),
        hash,
        file_content_hash: STANDARD.encode(decoded_digest),
        body_start: part.body_start as u64,
        body_end: part.end as u64,
        listed,
    }
}

/// Decodes an inline text part: transfer encoding, charset, `format=flowed`.
fn part_text(body: &[u8], mime: &Mime) -> String {
    let source = body.get(..TEXT_SOURCE_LIMIT).unwrap_or(body);
    let bytes = decode_body(source, &mime.transfer_encoding);
    let text = decode_charset(&bytes, mime.params.get("charset").map(String::as_str));
    let flowed = mime
        .params
        .get("format")
        .is_some_and(|f| f.trim().eq_ignore_ascii_case("flowed"));
    if flowed {
        let delsp = mime
            .params
            .get("delsp")
            .is_some_and(|d| d.trim().eq_ignore_ascii_case("yes"));
        decode_flowed(&text, delsp)
    } else {
        text
    }
}

/// Bytes to text in the declared charset. A missing charset means UTF-8 when the bytes are
/// valid UTF-8 and windows-1257 otherwise: WildDuck always assumes windows-1257 (§4.3), which
/// garbles the many UTF-8 messages sent without a charset. Unknown charsets are read as UTF-8.
fn decode_charset(bytes: &[u8], charset: Option<&str>) -> String {
    let text = match charset.map(str::trim).filter(|c| !c.is_empty()) {
        None => match std::str::from_utf8(bytes) {
            Ok(text) => text.to_string(),
            Err(_) => charset_decoder(b"windows-1257")
                .map(|decode| decode(bytes))
                .unwrap_or_else(|| String::from_utf8_lossy(bytes).into_owned()),
        },
        Some(name) => {
            let compact: String = name
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .collect::<String>()
                .to_ascii_lowercase();
            if matches!(compact.as_str(), "utf8" | "ascii" | "usascii") {
                utf8_lossy(bytes)
            } else {
                match charset_decoder(name.as_bytes()) {
                    Some(decode) => decode(bytes),
                    None => utf8_lossy(bytes),
                }
            }
        }
    };
    match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    }
}

/// `bytes` as UTF-8, invalid sequences replaced. Valid text (nearly all of it) is checked by
/// `from_utf8`, which skips ASCII a word at a time; the lossy decoder goes byte by byte and was
/// a sixth of showing a message.
fn utf8_lossy(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// `text` with every CRLF turned into LF, found with memchr (`str::replace` with a two-byte
/// pattern runs a general substring search; it was a twentieth of showing a message).
fn crlf_to_lf(text: String) -> String {
    if memchr::memchr(b'\r', text.as_bytes()).is_none() {
        return text;
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut start = 0;
    for at in memchr::memmem::find_iter(bytes, b"\r\n") {
        out.push_str(&text[start..at]);
        start = at + 1;
    }
    out.push_str(&text[start..]);
    out
}

/// RFC 3676 `format=flowed`: a line ending in a space continues on the next line (except the
/// `-- ` signature separator); with `delsp=yes` that space is removed; one leading space of
/// each line is stuffing.
fn decode_flowed(text: &str, delsp: bool) -> String {
    let mut out = String::with_capacity(text.len());
    // Start of the current (possibly joined) line in `out`, to spot "-- " without rescanning.
    let mut line_start = 0;
    for (i, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let line = line.strip_prefix(' ').unwrap_or(line);
        if i > 0 {
            let soft = out.ends_with(' ') && &out[line_start..] != "-- ";
            if soft {
                if delsp {
                    out.pop();
                }
            } else {
                out.push('\n');
                line_start = out.len();
            }
        }
        out.push_str(line);
    }
    out
}

/// Rewrites `cid:<content-id>` (after a non-word character) to `attachment:ATTnnnnn` for
/// numbered parts. Like WildDuck the id runs to whitespace or a quote; Eider also retries
/// without trailing `)>;,`, so CSS `url(cid:logo)` is rewritten too.
fn rewrite_cids(input: &str, cids: &HashMap<String, String>) -> String {
    if cids.is_empty() || !input.contains("cid:") {
        return input.to_string();
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    let mut previous: Option<char> = None;
    while let Some(at) = rest.find("cid:") {
        let before = rest[..at].chars().next_back().or(previous);
        out.push_str(&rest[..at]);
        let after = &rest[at + 4..];
        let id_len = after
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(after.len());
        let id = &after[..id_len];
        let word_boundary = !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let target = if word_boundary && !id.is_empty() {
            cids.get(id).map(|att| (att, "")).or_else(|| {
                let trimmed = id.trim_end_matches([')', '>', ';', ',']);
                cids.get(trimmed).map(|att| (att, &id[trimmed.len()..]))
            })
        } else {
            None
        };
        match target {
            Some((att, suffix)) => {
                out.push_str("attachment:");
                out.push_str(att);
                out.push_str(suffix);
                rest = &after[id_len..];
                previous = id.chars().next_back();
            }
            None => {
                out.push_str("cid:");
                rest = after;
                previous = Some(':');
            }
        }
    }
    out.push_str(rest);
    out
}

/// WildDuck's `createIntro` (§4.3).
fn create_intro(text: &str) -> String {
    let source: String = text.chars().take(INTRO_SOURCE_CHARS).collect();
    let source = remove_bracket_spans(&source);
    let mut kept = String::with_capacity(source.len());
    for line in source.split('\n') {
        if !line.starts_with('>') && !is_repeated_char_line(line) {
            kept.push_str(line);
        }
        kept.push('\n');
    }
    let intro = collapse_whitespace(&kept);
    if intro.chars().count() <= INTRO_MAX_CHARS {
        return intro;
    }
    let cut: String = intro.chars().take(INTRO_MAX_CHARS).collect();
    let cut = match cut.rfind(' ') {
        Some(space) if space > 0 => &cut[..space],
        _ => cut.as_str(),
    };
    format!("{cut}…")
}

/// Replaces every `[...]` span (link targets in converted HTML) with a space.
fn remove_bracket_spans(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open + 1..].find(']') else {
            break;
        };
        out.push_str(&rest[..open]);
        out.push(' ');
        rest = &rest[open + 1 + close + 1..];
    }
    out.push_str(rest);
    out
}

/// A line made of one character repeated (`-----`, `=====`), blanks around it allowed.
fn is_repeated_char_line(line: &str) -> bool {
    let mut chars = line.trim().chars();
    match (chars.next(), chars.clone().next()) {
        (Some(first), Some(_)) => chars.all(|c| c == first),
        _ => false,
    }
}

/// WildDuck's `textToHtml`: escaped, paragraphs on blank lines, `<br/>` on single breaks.
/// WildDuck also turns every non-ASCII character into an entity; Eider keeps UTF-8.
fn text_to_html(text: &str) -> String {
    let escaped = escape_html(&crlf_to_lf(text.to_owned()));
    let trimmed_lines: Vec<&str> = escaped
        .trim()
        .split('\n')
        .map(|l| l.trim_end_matches([' ', '\t']))
        .collect();
    let joined = trimmed_lines.join("\n");
    let mut out = String::with_capacity(joined.len() + 16);
    out.push_str("<p>");
    let mut newlines = 0;
    for c in joined.trim().chars() {
        if c == '\n' {
            newlines += 1;
            continue;
        }
        match newlines {
            0 => {}
            1 => out.push_str("<br/>"),
            _ => out.push_str("</p><p>"),
        }
        newlines = 0;
        out.push(c);
    }
    out.push_str("</p>");
    out
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// HTML to plain text for `text` and the intro: tags dropped, script/style/title/template
/// content skipped, block elements start new lines (paragraph-like ones leave a blank line),
/// entities decoded, whitespace collapsed. Link targets are not written out (WildDuck's
/// html-to-text writes `text [url]`, which the intro then removes again).
fn html_to_text(html: &str) -> String {
    let bytes = html.as_bytes();
    let mut out = TextOut::default();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'<' {
            let end = bytes[i..]
                .iter()
                .position(|&b| b == b'<')
                .map_or(bytes.len(), |p| i + p);
            out.text(&decode_entities(&html[i..end]));
            i = end;
            continue;
        }
        if bytes[i..].starts_with(b"<!--") {
            i = find_bytes(bytes, i + 4, b"-->").map_or(bytes.len(), |p| p + 3);
            continue;
        }
        let Some(tag) = read_tag(bytes, i) else {
            out.text("<");
            i += 1;
            continue;
        };
        i = tag.end;
        if tag.closing {
            match tag.name.as_str() {
                "p" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "blockquote" | "ul" | "ol"
                | "table" | "pre" | "dl" => out.block(2),
                name if is_line_block(name) => out.block(1),
                _ => {}
            }
            continue;
        }
        match tag.name.as_str() {
            "script" | "style" | "title" | "template" => {
                i = skip_element(bytes, i, tag.name.as_bytes());
            }
            "br" => out.line_break(),
            "p" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "blockquote" | "ul" | "ol"
            | "table" | "pre" | "dl" => out.block(2),
            "td" | "th" => out.space(),
            name if is_line_block(name) => out.block(1),
            _ => {}
        }
    }
    out.out
}

fn is_line_block(name: &str) -> bool {
    matches!(
        name,
        "div"
            | "li"
            | "tr"
            | "hr"
            | "dt"
            | "dd"
            | "section"
            | "article"
            | "header"
            | "footer"
            | "nav"
            | "aside"
            | "main"
            | "center"
            | "address"
            | "form"
            | "fieldset"
            | "figure"
            | "figcaption"
            | "caption"
    )
}

/// Builds `html_to_text` output: breaks and spaces are owed and written only before the
/// next visible character, so markup never leaves stray blank lines or spaces.
#[derive(Default)]
struct TextOut {
    out: String,
    breaks: usize,
    space: bool,
}

impl TextOut {
    fn block(&mut self, lines: usize) {
        self.breaks = self.breaks.max(lines);
    }

    fn line_break(&mut self) {
        self.breaks += 1;
    }

    fn space(&mut self) {
        self.space = true;
    }

    fn text(&mut self, text: &str) {
        for c in text.chars() {
            if c.is_whitespace() {
                self.space = true;
                continue;
            }
            if !self.out.is_empty() {
                if self.breaks > 0 {
                    for _ in 0..self.breaks.min(2) {
                        self.out.push('\n');
                    }
                } else if self.space {
                    self.out.push(' ');
                }
            }
            self.breaks = 0;
            self.space = false;
            self.out.push(c);
        }
    }
}

struct Tag {
    name: String,
    closing: bool,
    /// Index just after the tag's `>`.
    end: usize,
}

/// Reads the tag starting at `bytes[start] == b'<'`; `None` when it is a literal `<`.
fn read_tag(bytes: &[u8], start: usize) -> Option<Tag> {
    let mut i = start + 1;
    let closing = bytes.get(i) == Some(&b'/');
    if closing {
        i += 1;
    }
    let declaration = matches!(bytes.get(i), Some(b'!' | b'?'));
    let name_start = i;
    while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
        i += 1;
    }
    if i == name_start && !declaration {
        return None;
    }
    let name = String::from_utf8_lossy(&bytes[name_start..i]).to_ascii_lowercase();
    let mut quote = 0u8;
    while i < bytes.len() {
        let b = bytes[i];
        if quote != 0 {
            if b == quote {
                quote = 0;
            }
        } else if b == b'"' || b == b'\'' {
            quote = b;
        } else if b == b'>' {
            return Some(Tag {
                name,
                closing,
                end: i + 1,
            });
        }
        i += 1;
    }
    Some(Tag {
        name,
        closing,
        end: bytes.len(),
    })
}

/// Skips to just after `</name ...>` (any case), or to the end.
fn skip_element(bytes: &[u8], from: usize, name: &[u8]) -> usize {
    let mut i = from;
    while let Some(p) = find_bytes(bytes, i, b"</") {
        let name_end = p + 2 + name.len();
        if bytes
            .get(p + 2..name_end)
            .is_some_and(|n| n.eq_ignore_ascii_case(name))
        {
            return bytes[name_end..]
                .iter()
                .position(|&b| b == b'>')
                .map_or(bytes.len(), |q| name_end + q + 1);
        }
        i = p + 2;
    }
    bytes.len()
}

fn find_bytes(haystack: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

/// Decodes `&name;`, `&#nn;` and `&#xhh;` with mail-parser's HTML5 entity table; anything
/// else is kept as written.
fn decode_entities(text: &str) -> Cow<'_, str> {
    if !text.contains('&') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let name_len = after
            .bytes()
            .take(32)
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'#')
            .count();
        if name_len > 0 && after.as_bytes().get(name_len) == Some(&b';') {
            let entity = &rest[amp..amp + name_len + 2];
            mail_parser::decoders::html::add_html_token(&mut out, entity.as_bytes(), false);
            rest = &rest[amp + name_len + 2..];
        } else {
            out.push('&');
            rest = after;
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// A file extension for the fallback filename of a content type.
fn extension_for(ctype: &str) -> &'static str {
    match ctype {
        "text/plain" | "text/rfc822-headers" | "message/delivery-status" => "txt",
        "text/html" => "html",
        "text/csv" => "csv",
        "text/calendar" | "application/ics" => "ics",
        "text/css" => "css",
        "text/xml" | "application/xml" => "xml",
        "text/markdown" => "md",
        "message/rfc822" | "message/global" => "eml",
        "application/pdf" => "pdf",
        "application/zip" => "zip",
        "application/gzip" | "application/x-gzip" => "gz",
        "application/x-tar" => "tar",
        "application/json" => "json",
        "application/rtf" => "rtf",
        "application/msword" => "doc",
        "application/vnd.ms-excel" => "xls",
        "application/vnd.ms-powerpoint" => "ppt",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => "docx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => "xlsx",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation" => "pptx",
        "application/pgp-signature" | "application/pgp-keys" => "asc",
        "application/pgp-encrypted" => "pgp",
        "application/pkcs7-signature" | "application/x-pkcs7-signature" => "p7s",
        "application/pkcs7-mime" | "application/x-pkcs7-mime" => "p7m",
        "image/png" => "png",
        "image/jpeg" | "image/jpg" | "image/pjpeg" => "jpg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "image/svg+xml" => "svg",
        "image/bmp" => "bmp",
        "image/tiff" => "tif",
        "image/heic" => "heic",
        "image/x-icon" | "image/vnd.microsoft.icon" => "ico",
        "audio/mpeg" => "mp3",
        "audio/ogg" => "ogg",
        "audio/wav" | "audio/x-wav" => "wav",
        "video/mp4" => "mp4",
        "video/quicktime" => "mov",
        "video/webm" => "webm",
        _ => "bin",
    }
}

// ---------------------------------------------------------------------------------------------
// Transfer decoding

fn decode_base64(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let mut decoder = Base64Decoder::default();
    decoder.feed(input, &mut out);
    decoder.finish(&mut out);
    out
}

/// The lenient base64 decoding of [`decode_body`], fed a piece at a time (an attachment's
/// size and digest are taken without holding its decoding whole).
#[derive(Default)]
struct Base64Decoder {
    acc: u32,
    n: u8,
}

impl Base64Decoder {
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            let value = match b {
                b'A'..=b'Z' => b - b'A',
                b'a'..=b'z' => b - b'a' + 26,
                b'0'..=b'9' => b - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                b'=' => {
                    // Padding ends the group: what was read so far is kept, and decoding goes
                    // on (concatenated base64 blocks stay aligned).
                    self.finish(out);
                    continue;
                }
                _ => continue,
            };
            self.acc = (self.acc << 6) | u32::from(value);
            self.n += 1;
            if self.n == 4 {
                let acc = self.acc;
                out.extend_from_slice(&[(acc >> 16) as u8, (acc >> 8) as u8, acc as u8]);
                self.acc = 0;
                self.n = 0;
            }
        }
    }

    /// Ends a group: the bytes of a partial one are kept.
    fn finish(&mut self, out: &mut Vec<u8>) {
        match self.n {
            2 => out.push((self.acc >> 4) as u8),
            3 => out.extend_from_slice(&[(self.acc >> 10) as u8, (self.acc >> 2) as u8]),
            _ => {}
        }
        self.acc = 0;
        self.n = 0;
    }
}

/// The size and SHA-256 of what [`decode_body`] gives, without its whole decoding in memory
/// at once (an attachment may be most of a 64 MiB message).
fn decoded_size_and_digest(encoded: &[u8], transfer_encoding: &str) -> (u64, Vec<u8>) {
    let encoding = transfer_encoding.trim();
    if encoding.eq_ignore_ascii_case("base64") {
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut decoder = Base64Decoder::default();
        let mut out = Vec::with_capacity(48 * 1024);
        for piece in encoded.chunks(64 * 1024) {
            decoder.feed(piece, &mut out);
            size += out.len() as u64;
            hasher.update(&out);
            out.clear();
        }
        decoder.finish(&mut out);
        size += out.len() as u64;
        hasher.update(&out);
        (size, hasher.finalize().to_vec())
    } else if encoding.eq_ignore_ascii_case("quoted-printable") {
        let decoded = decode_quoted_printable(encoded);
        (decoded.len() as u64, Sha256::digest(&decoded).to_vec())
    } else {
        (encoded.len() as u64, Sha256::digest(encoded).to_vec())
    }
}

/// Quoted-printable decoding: soft line breaks removed, blanks at the end of a line dropped
/// (transport padding, RFC 2045 §6.7 rule 3), broken escapes kept literally. Runs of plain
/// bytes up to the next `=` or line end are copied whole: byte by byte, this decoder was a
/// quarter of a `GET` of a quoted-printable message.
fn decode_quoted_printable(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let next = memchr::memchr2(b'=', b'\n', &input[i..]).map_or(input.len(), |p| i + p);
        let run = &input[i..next];
        if next < input.len() && input[next] == b'=' {
            // Blanks before an `=` are not at the end of a line: kept.
            out.extend_from_slice(run);
            i = decode_qp_escape(input, next, &mut out);
            continue;
        }
        // The run ends a line (before `\n` or `\r\n`) or the input: its trailing blanks go.
        let (content, cr) = match run.split_last() {
            Some((b'\r', before)) if next < input.len() => (before, &run[before.len()..]),
            _ => (run, &run[run.len()..]),
        };
        let blanks = content
            .iter()
            .rev()
            .take_while(|b| matches!(b, b' ' | b'\t'));
        let kept = content.len() - blanks.count();
        out.extend_from_slice(&content[..kept]);
        out.extend_from_slice(cr);
        if next < input.len() {
            out.push(b'\n');
        }
        i = next + 1;
    }
    out
}

/// Decodes the `=` at `input[at]`: a soft line break (blanks allowed before it), an escape
/// `=XX`, or a literal `=` when neither. Returns where decoding goes on.
fn decode_qp_escape(input: &[u8], at: usize, out: &mut Vec<u8>) -> usize {
    let hex_value = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut j = at + 1;
    while j < input.len() && (input[j] == b' ' || input[j] == b'\t') {
        j += 1;
    }
    if j == input.len() {
        return j;
    }
    if input[j] == b'\n' {
        return j + 1;
    }
    if input[j] == b'\r' && input.get(j + 1) == Some(&b'\n') {
        return j + 2;
    }
    if let (Some(h), Some(l)) = (
        input.get(at + 1).copied().and_then(&hex_value),
        input.get(at + 2).copied().and_then(&hex_value),
    ) {
        out.push((h << 4) | l);
        return at + 3;
    }
    out.push(b'=');
    at + 1
}

// ---------------------------------------------------------------------------------------------
// Header helpers

fn last_field<'f>(fields: &'f [Field], name: &str) -> Option<&'f Field> {
    fields
        .iter()
        .rev()
        .find(|f| f.name.eq_ignore_ascii_case(name))
}

/// The unfolded raw value of the last field with that name; `""` when missing.
fn last_raw(fields: &[Field], name: &str) -> String {
    last_field(fields, name)
        .map(|f| collapse_whitespace(cap_str(&f.raw, MAX_HEADER_VALUE_BYTES)))
        .unwrap_or_default()
}

fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

/// A raw header value as text: unfolded and RFC 2047-decoded.
fn unstructured(raw: &str) -> String {
    match MessageStream::new(raw.as_bytes()).parse_unstructured() {
        HeaderValue::Text(text) => text.trim().to_string(),
        _ => String::new(),
    }
}

/// Decodes RFC 2047 words left in a parameter value (some clients quote encoded words).
fn decode_words(value: &str) -> String {
    if value.contains("=?") {
        unstructured(&format!(" {value}\n"))
    } else {
        value.to_string()
    }
}

fn address_field(fields: &[Field], name: &str) -> Vec<Address> {
    let mut out = Vec::new();
    for field in fields.iter().filter(|f| f.name.eq_ignore_ascii_case(name)) {
        let HeaderValue::Address(address) = &field.value else {
            continue;
        };
        match address {
            mail_parser::Address::List(list) => out.extend(list.iter().filter_map(convert_addr)),
            mail_parser::Address::Group(groups) => {
                for group in groups {
                    let members = group.addresses.iter().filter_map(convert_addr);
                    match group.name.as_deref().map(str::trim) {
                        Some(group_name) if !group_name.is_empty() => out.push(Address {
                            name: group_name.to_string(),
                            address: String::new(),
                            group: Some(members.take(MAX_ADDRESSES).collect()),
                        }),
                        _ => out.extend(members),
                    }
                }
            }
        }
        if out.len() >= MAX_ADDRESSES {
            out.truncate(MAX_ADDRESSES);
            break;
        }
    }
    out
}

fn convert_addr(addr: &mail_parser::Addr<'_>) -> Option<Address> {
    let name = addr.name.as_deref().map(str::trim).unwrap_or_default();
    let address = addr
        .address
        .as_deref()
        .map(normalize_address)
        .unwrap_or_default();
    if name.is_empty() && address.is_empty() {
        return None;
    }
    Some(Address {
        name: cap_str(name, MAX_HEADER_VALUE_BYTES).to_string(),
        address: cap_str(&address, MAX_HEADER_VALUE_BYTES).to_string(),
        group: None,
    })
}

/// Lowercases the domain and shows `xn--` labels in Unicode; the local part is kept as is.
fn normalize_address(address: &str) -> String {
    let address = address.trim();
    let Some((local, domain)) = address.rsplit_once('@') else {
        return address.to_string();
    };
    let domain = domain.to_lowercase();
    let domain = if domain.split('.').any(|label| label.starts_with("xn--")) {
        match idna::domain_to_unicode(&domain) {
            (unicode, Ok(())) => unicode,
            _ => domain,
        }
    } else {
        domain
    };
    format!("{local}@{domain}")
}

fn field_date(value: &HeaderValue<'_>) -> Option<DateTime<Utc>> {
    let HeaderValue::DateTime(dt) = value else {
        return None;
    };
    if !dt.is_valid() {
        return None;
    }
    let local =
        NaiveDate::from_ymd_opt(i32::from(dt.year), u32::from(dt.month), u32::from(dt.day))?
            .and_hms_opt(
                u32::from(dt.hour),
                u32::from(dt.minute),
                u32::from(dt.second),
            )?;
    let offset = i64::from(dt.tz_hour) * 3600 + i64::from(dt.tz_minute) * 60;
    let offset = if dt.tz_before_gmt { -offset } else { offset };
    let utc = local.checked_sub_signed(TimeDelta::try_seconds(offset)?)?;
    Some(utc.and_utc())
}

// ---------------------------------------------------------------------------------------------
// Subject helpers

fn collapse_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// `re:`, `fw:`, `fwd:` at the start, any case, blanks allowed before the colon.
fn strip_reply_prefix(subject: &str) -> Option<&str> {
    for prefix in ["fwd", "fw", "re"] {
        let Some(head) = subject.get(..prefix.len()) else {
            continue;
        };
        if !head.eq_ignore_ascii_case(prefix) {
            continue;
        }
        let rest = subject[prefix.len()..].trim_start();
        if let Some(rest) = rest.strip_prefix(':') {
            return Some(rest);
        }
    }
    None
}

/// A leading `[tag]` that is followed by a blank and more text (`^\[.+?\](?=\s.+)`).
fn strip_tag_prefix(subject: &str) -> Option<&str> {
    if !subject.starts_with('[') {
        return None;
    }
    for (i, c) in subject.char_indices().skip(2) {
        if c != ']' {
            continue;
        }
        let rest = &subject[i + 1..];
        let mut chars = rest.chars();
        if chars.next().is_some_and(char::is_whitespace) && chars.next().is_some() {
            return Some(rest);
        }
    }
    None
}

/// A trailing `(fwd)`, any case.
fn strip_fwd_suffix(subject: &str) -> Option<&str> {
    let trimmed = subject.trim_end();
    let start = trimmed.len().checked_sub(5)?;
    let tail = trimmed.get(start..)?;
    tail.eq_ignore_ascii_case("(fwd)")
        .then(|| &trimmed[..start])
}

// ---------------------------------------------------------------------------------------------
// Search terms

struct Terms {
    seen: HashSet<String>,
    list: Vec<String>,
    /// At most this many terms.
    cap: usize,
}

impl Default for Terms {
    fn default() -> Self {
        Terms {
            seen: HashSet::new(),
            list: Vec::new(),
            cap: MAX_SEARCH_TERMS,
        }
    }
}

impl Terms {
    fn add_address(&mut self, address: &Address) {
        self.add_text(&address.name);
        self.add_text(&address.address);
        for member in address.group.iter().flatten() {
            self.add_address(member);
        }
    }

    fn add_text(&mut self, text: &str) {
        if self.list.len() >= self.cap {
            return;
        }
        let folded = fold_for_search(text);
        for chunk in folded.split(|c: char| !(c.is_alphanumeric() || is_joiner(c))) {
            let chunk = chunk.trim_matches(is_joiner);
            if chunk.is_empty() {
                continue;
            }
            self.push(chunk);
            if chunk.contains(is_joiner) {
                if let Some((local, domain)) = chunk.rsplit_once('@') {
                    self.push(local.trim_matches(is_joiner));
                    self.push(domain.trim_matches(is_joiner));
                }
                for word in chunk.split(is_joiner) {
                    self.push(word);
                }
            }
            if self.list.len() >= self.cap {
                return;
            }
        }
    }

    fn push(&mut self, term: &str) {
        if term.is_empty()
            || self.list.len() >= self.cap
            || term.chars().nth(MAX_TERM_CHARS).is_some()
        {
            return;
        }
        // Most words of a text repeat: looked up before anything is allocated.
        if !self.seen.contains(term) {
            self.seen.insert(term.to_string());
            self.list.push(term.to_string());
        }
    }
}

fn is_joiner(c: char) -> bool {
    matches!(c, '.' | '@' | '-' | '_' | '+')
}

/// Compatibility decomposition without combining marks, lowercased; CJK characters are set
/// apart so that each is a term of its own.
///
/// Runs of ASCII are copied and lowercased at once: ASCII is its own decomposition, and as
/// each ASCII character starts a new combining sequence nothing is reordered across it, so the
/// runs between are decomposed alone with the same result (before, every character of a
/// stored message's text went through the decomposition).
fn fold_for_search(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let ascii = rest
            .bytes()
            .position(|b| !b.is_ascii())
            .unwrap_or(rest.len());
        let start = out.len();
        out.push_str(&rest[..ascii]);
        out[start..].make_ascii_lowercase();
        rest = &rest[ascii..];
        // Up to the next ASCII byte, which is always a character boundary.
        let other = rest
            .bytes()
            .position(|b| b.is_ascii())
            .unwrap_or(rest.len());
        fold_unicode(&rest[..other], &mut out);
        rest = &rest[other..];
    }
    out
}

fn fold_unicode(text: &str, out: &mut String) {
    for c in text.nfkd() {
        if is_combining_mark(c) {
            continue;
        }
        if is_cjk(c) {
            out.push(' ');
            out.push(c);
            out.push(' ');
        } else {
            out.extend(c.to_lowercase());
        }
    }
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FFFF)
}

// ---------------------------------------------------------------------------------------------
// Small helpers

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn cap_str(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn crlf_to_lf_matches_replace() {
        for text in [
            "",
            "plain",
            "a\r\nb\r\n",
            "\r\n\r\n",
            "lone\rcarriage\r",
            "\r\r\n\n\r",
            "é\r\nü\r\n\r\nend",
        ] {
            assert_eq!(
                crlf_to_lf(text.to_string()),
                text.replace("\r\n", "\n"),
                "{text:?}"
            );
        }
    }

    #[test]
    fn utf8_lossy_matches_std() {
        for bytes in [
            &b""[..],
            b"ascii only",
            "w\u{00f6}rds \u{1f600}".as_bytes(),
            b"bad \xff byte",
            b"cut \xe2\x82",
        ] {
            assert_eq!(utf8_lossy(bytes), String::from_utf8_lossy(bytes));
        }
    }

    /// The byte-by-byte decoder the run-copying one replaced: the reference it must match.
    fn decode_quoted_printable_byte_by_byte(input: &[u8]) -> Vec<u8> {
        let hex_value = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
        let is_blank = |b: u8| b == b' ' || b == b'\t';
        let line_break_at = |j: usize| {
            input.get(j) == Some(&b'\n')
                || (input.get(j) == Some(&b'\r') && input.get(j + 1) == Some(&b'\n'))
        };
        let mut out = Vec::with_capacity(input.len());
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            if b == b'=' {
                let mut j = i + 1;
                while j < input.len() && is_blank(input[j]) {
                    j += 1;
                }
                if j == input.len() {
                    break;
                }
                if input[j] == b'\n' {
                    i = j + 1;
                    continue;
                }
                if input[j] == b'\r' && input.get(j + 1) == Some(&b'\n') {
                    i = j + 2;
                    continue;
                }
                if let (Some(h), Some(l)) = (
                    input.get(i + 1).copied().and_then(hex_value),
                    input.get(i + 2).copied().and_then(hex_value),
                ) {
                    out.push((h << 4) | l);
                    i += 3;
                    continue;
                }
                out.push(b'=');
                i += 1;
            } else if is_blank(b) {
                // Blanks at the end of a line are transport padding (RFC 2045 §6.7 rule 3).
                let mut j = i;
                while j < input.len() && is_blank(input[j]) {
                    j += 1;
                }
                if j < input.len() && !line_break_at(j) {
                    out.extend_from_slice(&input[i..j]);
                }
                i = j;
            } else {
                out.push(b);
                i += 1;
            }
        }
        out
    }

    use super::*;

    const PLAIN: &[u8] = include_bytes!("testdata/plain.eml");

    #[test]
    fn quoted_printable_decodes_as_the_byte_by_byte_decoder_did() {
        use rand::{Rng, SeedableRng};
        let fixed: [&[u8]; 12] = [
            b"caf=C3=A9 au lait",
            b"soft=\r\nbreak and soft=  \nbreak",
            b"trailing  \r\nblanks\t \nkept  =\r\nbefore a soft break",
            b"broken =4 and =ZZ and = alone",
            b"lone\rCR  \rkept",
            b"ends with blanks  ",
            b"ends with =",
            b"ends with =  ",
            b"ends with CR  \r",
            b"=3D=3d=0A",
            b"",
            b"\n\n  \n",
        ];
        for input in fixed {
            assert_eq!(
                decode_quoted_printable(input),
                decode_quoted_printable_byte_by_byte(input),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let alphabet = b"ab \t=\r\n3Df\xc3";
        let mut rng = rand::rngs::StdRng::seed_from_u64(2045);
        for _ in 0..20_000 {
            let len = rng.gen_range(0..40);
            let input: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            assert_eq!(
                decode_quoted_printable(&input),
                decode_quoted_printable_byte_by_byte(&input),
                "{input:?}"
            );
        }
    }
    const ALTERNATIVE: &[u8] = include_bytes!("testdata/alternative.eml");
    const RELATED: &[u8] = include_bytes!("testdata/related.eml");
    const ATTACHMENTS: &[u8] = include_bytes!("testdata/attachments.eml");
    const NESTED: &[u8] = include_bytes!("testdata/nested.eml");
    const ENCODED_WORDS: &[u8] = include_bytes!("testdata/encoded-words.eml");
    const INTL: &[u8] = include_bytes!("testdata/intl-addresses.eml");
    const NO_DATE: &[u8] = include_bytes!("testdata/no-date-msgid.eml");
    const BROKEN_BOUNDARY: &[u8] = include_bytes!("testdata/broken-boundary.eml");
    const NO_BOUNDARY: &[u8] = include_bytes!("testdata/multipart-without-boundary.eml");
    const BROKEN_BASE64: &[u8] = include_bytes!("testdata/broken-base64.eml");
    const NO_HEADERS: &[u8] = include_bytes!("testdata/no-headers.eml");
    const GARBAGE: &[u8] = include_bytes!("testdata/binary-garbage.eml");
    const HUGE_HEADER: &[u8] = include_bytes!("testdata/huge-header.eml");
    const FLOWED: &[u8] = include_bytes!("testdata/flowed.eml");
    const HTML_ONLY: &[u8] = include_bytes!("testdata/html-only.eml");

    const FIXTURES: [(&str, &[u8]); 16] = [
        ("plain", PLAIN),
        ("alternative", ALTERNATIVE),
        ("related", RELATED),
        ("attachments", ATTACHMENTS),
        ("nested", NESTED),
        ("encoded-words", ENCODED_WORDS),
        ("intl-addresses", INTL),
        ("no-date-msgid", NO_DATE),
        ("broken-boundary", BROKEN_BOUNDARY),
        ("multipart-without-boundary", NO_BOUNDARY),
        ("broken-base64", BROKEN_BASE64),
        ("no-headers", NO_HEADERS),
        ("binary-garbage", GARBAGE),
        ("huge-header", HUGE_HEADER),
        ("flowed", FLOWED),
        ("html-only", HTML_ONLY),
    ];

    fn addr(name: &str, address: &str) -> Address {
        Address {
            name: name.to_string(),
            address: address.to_string(),
            group: None,
        }
    }

    fn sha1_ref(id: &str) -> String {
        STANDARD_NO_PAD.encode(Sha1::digest(id.as_bytes()))
    }

    /// The decoded bytes the API would serve for an attachment: ranged read + decode.
    fn served(raw: &[u8], a: &AttachmentInfo) -> Vec<u8> {
        decode_body(
            &raw[a.body_start as usize..a.body_end as usize],
            &a.transfer_encoding,
        )
    }

    fn ids(p: &ParsedMessage) -> Vec<&str> {
        p.attachments.iter().map(|a| a.id.as_str()).collect()
    }

    /// What must hold for any input, however broken.
    fn check_invariants(raw: &[u8], p: &ParsedMessage) {
        for (i, a) in p.attachments.iter().enumerate() {
            assert_eq!(a.id, format!("ATT{:05}", i + 1));
            let (start, end) = (a.body_start as usize, a.body_end as usize);
            assert!(
                start < end && end <= raw.len(),
                "range {start}..{end} of {}",
                raw.len()
            );
            let body = &raw[start..end];
            assert_eq!(decode_body(body, &a.transfer_encoding).len() as u64, a.size);
            assert_eq!(a.hash, hex(&Sha256::digest(body)));
            assert_eq!(a.size_kb, a.size.div_ceil(1024));
            assert!(!a.filename.is_empty());
        }
        assert!(p.attachments.len() <= MAX_PARTS);
        assert!(p.html.iter().map(String::len).sum::<usize>() <= MAX_HTML_BYTES);
        assert!(p.text.len() <= MAX_TEXT_BYTES);
        assert!(p.intro.chars().count() <= INTRO_MAX_CHARS + 1);
        assert!(p.thread_refs.len() <= MAX_THREAD_REFS);
        assert!(p.subject.len() <= MAX_HEADER_VALUE_BYTES);
        assert!(p.headers.len() <= MAX_HEADERS);
        assert!(p.search_terms.len() <= MAX_SEARCH_TERMS);
        let unique: HashSet<&String> = p.search_terms.iter().collect();
        assert_eq!(unique.len(), p.search_terms.len());
        for term in &p.search_terms {
            let chars = term.chars().count();
            assert!((1..=MAX_TERM_CHARS).contains(&chars), "term {term:?}");
        }
        assert!(!p.message_id.is_empty());
        assert_eq!(
            p.has_attachments,
            p.attachments.iter().any(|a| a.listed && !a.related)
        );
    }

    #[test]
    fn plain_message_gives_addresses_subject_date_and_text() {
        let p = parse(PLAIN);
        assert_eq!(p.from, Some(addr("Alice Example", "alice@example.com")));
        assert_eq!(
            p.to,
            vec![
                addr("Bob", "bob@example.org"),
                addr("", "carol@example.org")
            ]
        );
        assert_eq!(p.cc, vec![addr("Dave, the Third", "dave@example.net")]);
        assert_eq!(p.subject, "Quarterly report and numbers");
        assert_eq!(p.message_id, "<plain-1@example.com>");
        assert_eq!(
            p.date.map(|d| d.to_rfc3339()),
            Some("2024-10-01T10:30:45+00:00".to_string())
        );
        assert!(p.text.starts_with("Hi Bob,\n\n[image: logo] Here are"));
        assert!(p.text.ends_with("----------\nThanks, Alice"));
        assert_eq!(p.html.len(), 1);
        assert!(p.html[0].starts_with("<p>Hi Bob,</p><p>[image: logo] Here"));
        assert!(p.html[0].contains("<br/>&gt; quoted line"));
        assert!(p.attachments.is_empty());
        assert!(!p.has_attachments);
        assert_eq!(p.content_type.value, "text/plain");
        assert_eq!(
            p.content_type.params.get("charset").map(String::as_str),
            Some("utf-8")
        );
        assert!(!p.encrypted);
        assert_eq!(
            p.thread_refs,
            vec!["r/A5I5YINLve/erN3VmaT0f1X/0".to_string()]
        );
        assert_eq!(p.thread_subject, "Quarterly report and numbers");
        assert_eq!(
            p.headers[0],
            ("Return-Path".to_string(), "<alice@example.com>".to_string())
        );
        assert!(
            p.headers
                .iter()
                .any(|(n, v)| n == "Subject" && v == "Quarterly   report and numbers")
        );
        for term in [
            "quarterly",
            "alice@example.com",
            "example.com",
            "dave",
            "revenue",
        ] {
            assert!(p.search_terms.iter().any(|t| t == term), "missing {term}");
        }
        check_invariants(PLAIN, &p);
    }

    #[test]
    fn intro_skips_brackets_quotes_and_rules_and_cuts_at_128_chars_with_ellipsis() {
        let p = parse(PLAIN);
        assert_eq!(
            p.intro,
            "Hi Bob, Here are the numbers for the third quarter. Revenue grew by twelve percent \
             and costs stayed flat, which is the best…"
        );
        assert_eq!(
            create_intro("Short [link] text\n> quoted\n=====\nend"),
            "Short text end"
        );
        assert_eq!(create_intro("  \n\n  "), "");
        // No space to back up to: cut hard at 128 characters.
        let long = "äb".repeat(100);
        assert_eq!(create_intro(&long), format!("{}…", "äb".repeat(64)));
        // A line of one repeated character is dropped, however long.
        assert_eq!(create_intro(&"ä".repeat(200)), "");
        // Exactly 128 characters stay as they are.
        let exact = "ab".repeat(64);
        assert_eq!(create_intro(&exact), exact);
        // An unclosed bracket is kept.
        assert_eq!(create_intro("a [b c"), "a [b c");
    }

    #[test]
    fn alternative_takes_text_from_plain_and_intro_from_html() {
        let p = parse(ALTERNATIVE);
        assert_eq!(p.from, Some(addr("Jöran Müller", "joran@example.com")));
        assert_eq!(p.text, "Hello list, café tomorrow? Bring the slides.");
        assert_eq!(p.html.len(), 1);
        assert!(p.html[0].starts_with("<html><head><style>"));
        assert!(p.html[0].contains("<p>Hello list, café tomorrow?</p>"));
        assert_eq!(
            p.intro,
            "Hello list, café tomorrow? Bring the slides. & more"
        );
        assert_eq!(p.in_reply_to.as_deref(), Some("<plain-1@example.com>"));
        assert_eq!(
            p.references,
            vec!["<root-0@example.com>", "<plain-1@example.com>"]
        );
        assert_eq!(
            p.list_id.as_deref(),
            Some("Example list <list.example.org>")
        );
        assert_eq!(
            p.list_unsubscribe.as_deref(),
            Some("<mailto:unsubscribe@example.org>, <https://example.org/unsub>")
        );
        assert_eq!(p.content_type.value, "multipart/alternative");
        assert_eq!(
            p.date.map(|d| d.to_rfc3339()),
            Some("2024-10-02T15:00:00+00:00".to_string())
        );
        check_invariants(ALTERNATIVE, &p);
    }

    #[test]
    fn thread_refs_are_sha1_base64_unpadded_deduplicated_in_header_order() {
        let p = parse(ALTERNATIVE);
        // Message-ID, In-Reply-To, References; plain-1 appears twice and counts once.
        assert_eq!(
            p.thread_refs,
            vec![
                "HyPBRJl5FqV2SdB+9FubvKpgFO0".to_string(),
                "r/A5I5YINLve/erN3VmaT0f1X/0".to_string(),
                "5TtQ2Je2W+YWTT05mS4wQcyuqAU".to_string(),
            ]
        );
        assert_eq!(p.thread_subject, "Hello");

        let references: Vec<String> = (0..15).map(|i| format!("<r{i}@x>")).collect();
        let raw = format!(
            "Message-ID: <m@x>\r\nThread-Index: AQHaBcDeFgHiJkLmNoPqRsTuVwXyZ\r\nReferences: {}\r\n\r\nbody\r\n",
            references.join("\r\n ")
        );
        let p = parse(raw.as_bytes());
        let mut expected = vec![sha1_ref("m@x"), sha1_ref("AQHaBcDeFgHiJkLmNoPqRs")];
        expected.extend((0..8).map(|i| sha1_ref(&format!("r{i}@x"))));
        assert_eq!(p.thread_refs, expected);
        assert_eq!(p.references.len(), 15);
    }

    #[test]
    fn normalize_subject_strips_reply_and_forward_markers() {
        let cases = [
            ("Re: Fwd: [list] Hello (fwd)", "Hello"),
            (
                "RE : [EXTERNAL] Re: Fw: Example   subject (FWD)",
                "Example subject",
            ),
            ("Fwd:Re:hi", "hi"),
            ("[a] [b] text", "text"),
            ("[tag]", "[tag]"),
            ("[] x", "[] x"),
            ("Research: results", "Research: results"),
            ("Re:", ""),
            ("(fwd)", ""),
            ("  many \t  spaces \r\n here ", "many spaces here"),
            ("Re: Ärger über [x]", "Ärger über [x]"),
            ("", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_subject(input), expected, "for {input:?}");
        }
    }

    #[test]
    fn related_image_is_numbered_marked_related_and_cid_links_point_to_it() {
        let p = parse(RELATED);
        assert_eq!(ids(&p), ["ATT00001", "ATT00002"]);
        let logo = &p.attachments[0];
        assert_eq!(logo.filename, "logo.png");
        assert_eq!(logo.content_type, "image/png");
        assert_eq!(logo.disposition, "inline");
        assert_eq!(logo.transfer_encoding, "base64");
        assert_eq!(logo.cid.as_deref(), Some("<logo@example.com>"));
        assert!(logo.related && logo.listed);
        let png = STANDARD
            .decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
            .unwrap();
        assert_eq!(served(RELATED, logo), png);
        assert_eq!((logo.size, logo.size_kb), (png.len() as u64, 1));
        assert_eq!(
            logo.file_content_hash,
            STANDARD.encode(Sha256::digest(&png))
        );

        let pdf = &p.attachments[1];
        assert_eq!(
            (pdf.filename.as_str(), pdf.disposition.as_str()),
            ("report.pdf", "attachment")
        );
        assert!(!pdf.related && pdf.cid.is_none());
        assert!(served(RELATED, pdf).starts_with(b"%PDF-1.4\n"));
        assert!(p.has_attachments);

        assert_eq!(p.html.len(), 1);
        assert!(p.html[0].contains(r#"<img src="attachment:ATT00001" alt="Logo">"#));
        assert!(p.html[0].contains("background:url(attachment:ATT00001)"));
        assert!(p.html[0].contains(r#"src="cid:missing@example.com""#));
        assert_eq!(
            p.text,
            "Our logo is attached. See attachment:ATT00001 for details."
        );
        check_invariants(RELATED, &p);
    }

    #[test]
    fn display_parse_shows_the_same_text_and_links_without_decoding_attachments() {
        for raw in [PLAIN, ALTERNATIVE, RELATED, ATTACHMENTS, NESTED] {
            let (stored, shown) = (parse(raw), parse_for_display(raw));
            assert_eq!((&shown.html, &shown.text), (&stored.html, &stored.text));
            assert_eq!(shown.headers, stored.headers);
            assert!(shown.intro.is_empty() && !stored.intro.is_empty());
        }
        let stored = parse(RELATED);
        let shown = parse_for_display(RELATED);
        assert!(shown.html[0].contains(r#"<img src="attachment:ATT00001" alt="Logo">"#));
        assert!(shown.attachments.is_empty() && shown.search_terms.is_empty());
        assert!(!stored.attachments.is_empty());
    }

    #[test]
    fn intro_falls_back_to_text_when_the_html_shows_no_words() {
        let raw = b"Content-Type: multipart/alternative; boundary=a\r\n\r\n--a\r\nContent-Type: text/plain\r\n\r\nWords in the text part.\r\n--a\r\nContent-Type: text/html\r\n\r\n<img src=\"x.png\">\r\n--a--\r\n";
        let p = parse(raw);
        assert_eq!(p.intro, "Words in the text part.");
    }

    #[test]
    fn transfer_encoding_comment_is_ignored() {
        let raw = b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: BASE64 (binary data)\r\n\r\nSGk=\r\n";
        let p = parse(raw);
        assert_eq!(p.attachments[0].transfer_encoding, "base64");
        assert_eq!(served(raw, &p.attachments[0]), b"Hi");
    }

    #[test]
    fn related_parts_alone_do_not_make_has_attachments() {
        let raw = b"Content-Type: multipart/related; boundary=r\r\n\r\n--r\r\nContent-Type: text/html\r\n\r\n<img src=\"cid:a\">\r\n--r\r\nContent-Type: image/gif\r\nContent-ID: <a>\r\nContent-Transfer-Encoding: base64\r\n\r\nR0lGODlh\r\n--r--\r\n";
        let p = parse(raw);
        assert_eq!(ids(&p), ["ATT00001"]);
        assert!(p.attachments[0].related);
        assert!(!p.has_attachments);
        assert_eq!(
            p.html,
            vec![r#"<img src="attachment:ATT00001">"#.to_string()]
        );
    }

    #[test]
    fn attachments_of_every_encoding_decode_from_their_byte_ranges() {
        let p = parse(ATTACHMENTS);
        assert_eq!(
            ids(&p),
            ["ATT00001", "ATT00002", "ATT00003", "ATT00004", "ATT00005"]
        );
        let all_bytes: Vec<u8> = (0..=255).collect();
        let expected: [(&str, &str, &str, &[u8]); 5] = [
            ("data.bin", "application/octet-stream", "base64", &all_bytes),
            (
                "notes.txt",
                "text/plain",
                "quoted-printable",
                "Line one\r\nLine two with € euro and a soft break=".as_bytes(),
            ),
            (
                "table.csv",
                "text/csv",
                "8bit",
                "name,city\r\nJöran,Tartu".as_bytes(),
            ),
            (
                "",
                "application/octet-stream",
                "base64",
                b"\x00\x01no name here\xff",
            ),
            ("data.json", "application/json", "7bit", b"{\"ok\": true}"),
        ];
        for (a, (filename, content_type, encoding, bytes)) in p.attachments.iter().zip(expected) {
            if filename.is_empty() {
                // No name anywhere: hash prefix plus an extension for the type.
                assert_eq!(a.filename, format!("{}.bin", &a.hash[..8]));
            } else {
                assert_eq!(a.filename, filename);
            }
            assert_eq!(a.content_type, content_type);
            assert_eq!(a.transfer_encoding, encoding);
            assert_eq!(served(ATTACHMENTS, a), bytes, "{}", a.id);
            assert_eq!(a.size, bytes.len() as u64);
            assert_eq!(a.file_content_hash, STANDARD.encode(Sha256::digest(bytes)));
            assert!(a.listed && !a.related);
        }
        assert_eq!(p.attachments[4].disposition, "inline");
        // The empty image/gif part has no body and gets no number.
        assert!(p.attachments.iter().all(|a| a.filename != "empty.gif"));
        assert_eq!(p.text, "See attachments.");
        assert_eq!(p.html, vec!["<p>See attachments.</p>".to_string()]);
        check_invariants(ATTACHMENTS, &p);
    }

    #[test]
    fn large_inline_text_takes_a_number_but_is_not_listed() {
        let big = "word ".repeat(LARGE_INLINE_TEXT_BYTES / 5 + 100);
        let raw = format!(
            "Subject: big\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\n{big}\r\n--x\r\nContent-Type: application/pdf; name=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERg==\r\n--x--\r\n"
        );
        let p = parse(raw.as_bytes());
        assert_eq!(ids(&p), ["ATT00001", "ATT00002"]);
        assert!(!p.attachments[0].listed);
        assert_eq!(p.attachments[0].content_type, "text/plain");
        assert_eq!(served(raw.as_bytes(), &p.attachments[0]), big.as_bytes());
        assert!(p.attachments[1].listed);
        assert!(p.has_attachments);
        assert_eq!(p.text.len(), MAX_TEXT_BYTES);
        assert!(p.text.starts_with("word word"));
        check_invariants(raw.as_bytes(), &p);
    }

    #[test]
    fn nested_message_is_numbered_then_walked_into_depth_first() {
        let p = parse(NESTED);
        assert_eq!(ids(&p), ["ATT00001", "ATT00002", "ATT00003", "ATT00004"]);
        let inner = &p.attachments[0];
        assert_eq!(inner.content_type, "message/rfc822");
        assert_eq!(inner.filename, format!("{}.eml", &inner.hash[..8]));
        let inner_raw = served(NESTED, inner);
        assert!(inner_raw.starts_with(b"From: Inner Sender <inner@example.net>\r\n"));
        assert!(inner_raw.ends_with(b"--inner-b--"));

        assert_eq!(p.attachments[1].filename, "inner.pdf");
        assert_eq!(served(NESTED, &p.attachments[1]), b"inner pdf bytes");

        // A base64 message/rfc822 is an opaque attachment: not walked into.
        let encoded = &p.attachments[2];
        assert_eq!(
            (encoded.filename.as_str(), encoded.content_type.as_str()),
            ("encoded.eml", "message/rfc822")
        );
        assert!(served(NESTED, encoded).starts_with(b"From: hidden@example.com\r\n"));
        assert!(!p.text.contains("must not be walked"));

        assert_eq!(p.attachments[3].filename, "after.zip");
        assert_eq!(p.text, "Forwarding the message below.\nInner body text.");
        assert_eq!(p.html.len(), 2);
        assert_eq!(p.subject, "Fwd: Inner subject");
        assert_eq!(p.from, Some(addr("Forwarder", "fwd@example.com")));
        check_invariants(NESTED, &p);
    }

    #[test]
    fn digest_parts_without_content_type_are_messages() {
        let raw = b"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: first\r\n\r\nFirst digest body.\r\n--d\r\n\r\nSubject: second\r\n\r\nSecond digest body.\r\n--d--\r\n";
        let p = parse(raw);
        assert_eq!(ids(&p), ["ATT00001", "ATT00002"]);
        assert!(
            p.attachments
                .iter()
                .all(|a| a.content_type == "message/rfc822")
        );
        assert_eq!(p.text, "First digest body.\nSecond digest body.");
    }

    #[test]
    fn encoded_words_are_decoded_in_subject_names_and_filenames() {
        let p = parse(ENCODED_WORDS);
        assert_eq!(p.subject, "Übergrößenträger and café crème");
        assert_eq!(p.from, Some(addr("“Quoted” Café €", "sender@example.com")));
        assert_eq!(p.to, vec![addr("André", "andre@example.com")]);
        assert_eq!(p.text, "Grüße aus Köln");
        let names: Vec<&str> = p.attachments.iter().map(|a| a.filename.as_str()).collect();
        // RFC 2047 in `name`, RFC 2231 in `filename*`, raw Latin-1 bytes in `filename`.
        assert_eq!(names, ["Résumé.pdf", "naïve notes.txt", "Latin1 été.txt"]);
        assert_eq!(served(ENCODED_WORDS, &p.attachments[1]), b"naive");
        for term in ["ubergroßentrager", "cafe", "creme", "andre", "koln"] {
            assert!(p.search_terms.iter().any(|t| t == term), "missing {term}");
        }
        check_invariants(ENCODED_WORDS, &p);
    }

    #[test]
    fn internationalized_addresses_are_shown_in_unicode_with_groups() {
        let p = parse(INTL);
        assert_eq!(p.from, Some(addr("Jöran Müller", "jöran@bücher.example")));
        assert_eq!(p.sender, Some(addr("", "secretary@example.org")));
        assert_eq!(
            p.to,
            vec![
                addr("", "user@bücher.example"),
                addr("Ünïcödé", "Mixed.Case@example.com")
            ]
        );
        assert_eq!(
            p.cc,
            vec![
                Address {
                    name: "Team".to_string(),
                    address: String::new(),
                    group: Some(vec![
                        addr("", "alice@example.com"),
                        addr("", "bob@example.com")
                    ]),
                },
                Address {
                    name: "undisclosed-recipients".to_string(),
                    address: String::new(),
                    group: Some(Vec::new()),
                },
            ]
        );
        assert_eq!(p.bcc, vec![addr("", "hidden@example.net")]);
        assert_eq!(p.reply_to, vec![addr("", "replies@example.org")]);
        assert_eq!(p.subject, "Grüße aus Tartu 東京");
        assert_eq!(
            p.date.map(|d| d.to_rfc3339()),
            Some("2024-10-07T04:00:00+00:00".to_string())
        );
        for term in [
            "joran@bucher.example",
            "bucher.example",
            "joran",
            "user@bucher.example",
            "mixed.case@example.com",
            "東",
            "京",
            "gruße",
            "alice@example.com",
        ] {
            assert!(p.search_terms.iter().any(|t| t == term), "missing {term}");
        }
        assert!(!p.search_terms.iter().any(|t| t == "hidden@example.net"));
        check_invariants(INTL, &p);
    }

    #[test]
    fn missing_date_and_message_id_give_none_and_a_stable_generated_id() {
        let p = parse(NO_DATE);
        assert_eq!(p.date, None);
        assert!(p.message_id.starts_with('<') && p.message_id.ends_with("@eider>"));
        assert_eq!(
            p.message_id.len(),
            "<00000000-0000-0000-0000-000000000000@eider>".len()
        );
        assert_eq!(parse(NO_DATE).message_id, p.message_id);
        assert_ne!(parse(PLAIN).message_id, p.message_id);
        assert!(p.thread_refs.is_empty());
        // No charset and not UTF-8: windows-1257 (0xE8 is "č").
        assert_eq!(p.text, "Plain body, no charset: čia.");
        assert_eq!(p.from, Some(addr("", "someone@example.com")));
        check_invariants(NO_DATE, &p);
    }

    #[test]
    fn missing_close_delimiters_keep_every_part() {
        let p = parse(BROKEN_BOUNDARY);
        assert_eq!(p.text, "Inner text without a closing inner boundary.");
        assert_eq!(ids(&p), ["ATT00001", "ATT00002"]);
        assert_eq!(
            served(BROKEN_BOUNDARY, &p.attachments[0]),
            [0, 1, 2, 3, 4, 5]
        );
        assert_eq!(
            served(BROKEN_BOUNDARY, &p.attachments[1]),
            [0, 1, 2, 3, 4, 5, 6, 7, 8]
        );
        check_invariants(BROKEN_BOUNDARY, &p);
    }

    #[test]
    fn multipart_without_boundary_is_read_as_text() {
        let p = parse(NO_BOUNDARY);
        assert_eq!(p.text, "Text of a multipart that never says its boundary.");
        assert!(p.attachments.is_empty());
        check_invariants(NO_BOUNDARY, &p);
    }

    #[test]
    fn broken_base64_is_decoded_leniently() {
        let p = parse(BROKEN_BASE64);
        assert_eq!(p.text, "Text body");
        assert_eq!(ids(&p), ["ATT00001"]);
        assert_eq!(served(BROKEN_BASE64, &p.attachments[0]), b"Hello worldHi");
        check_invariants(BROKEN_BASE64, &p);
    }

    #[test]
    fn message_without_headers_is_read_as_plain_text() {
        let p = parse(NO_HEADERS);
        assert_eq!(p.subject, "");
        assert_eq!(p.from, None);
        assert_eq!(
            p.text,
            "Just a note without any header lines.\nSecond line — with UTF-8."
        );
        assert_eq!(p.content_type.value, "text/plain");
        assert!(p.headers.is_empty());
        check_invariants(NO_HEADERS, &p);

        let empty = parse(b"");
        assert_eq!((empty.subject.as_str(), empty.text.as_str()), ("", ""));
        check_invariants(b"", &empty);
    }

    #[test]
    fn huge_header_line_is_capped() {
        let p = parse(HUGE_HEADER);
        assert_eq!(p.subject, "x".repeat(MAX_HEADER_VALUE_BYTES));
        assert_eq!(p.text, "Body after a huge header.");
        assert!(
            p.headers
                .iter()
                .all(|(_, v)| v.len() <= MAX_HEADER_VALUE_BYTES)
        );
        check_invariants(HUGE_HEADER, &p);
    }

    #[test]
    fn binary_garbage_parses_to_something() {
        let p = parse(GARBAGE);
        check_invariants(GARBAGE, &p);
    }

    #[test]
    fn flowed_text_is_unwrapped() {
        let p = parse(FLOWED);
        assert_eq!(
            p.text,
            "This is a long paragraph that was wrapped by the sender. Stuffed line starts with a space.\n-- \nSignature"
        );
        assert_eq!(decode_flowed("a \nb\n-- \nsig", false), "a b\n-- \nsig");
    }

    #[test]
    fn html_only_message_gets_its_text_from_the_html() {
        let p = parse(HTML_ONLY);
        assert_eq!(
            p.text,
            "Welcome aboard\n\nFirst line\nSecond line\n\nOne\nTwo & three\n\nPrice: 5€ <cheap> © ☺"
        );
        assert_eq!(p.html.len(), 1);
        assert!(p.html[0].starts_with("<!DOCTYPE html>"));
        assert_eq!(
            p.intro,
            "Welcome aboard First line Second line One Two & three Price: 5€ <cheap> © ☺"
        );
        assert_eq!(
            html_to_text("a < b &unknown; &amp c"),
            "a < b &unknown; &amp c"
        );
        assert_eq!(html_to_text("<style>x</STYLE >y<br/><br/><br/>z"), "y\n\nz");
    }

    #[test]
    fn text_to_html_makes_paragraphs_and_line_breaks() {
        assert_eq!(
            text_to_html("  a <b> & \"c\"  \r\nd\n\n\ne  "),
            "<p>a &lt;b&gt; &amp; &quot;c&quot;<br/>d</p><p>e</p>"
        );
    }

    #[test]
    fn named_header_fields_are_removed_with_their_continuations() {
        let raw = b"A: 1\r\nWD-X: spoof\r\n\tmore\r\nB: 2\r\nwd-x: again\r\n\r\nWD-X: body\r\n";
        assert_eq!(
            without_header_fields(raw, &["WD-X"]),
            b"A: 1\r\nB: 2\r\n\r\nWD-X: body\r\n"
        );
        assert_eq!(without_header_fields(b"", &["A"]), b"");
        assert_eq!(without_header_fields(b"A: 1", &["A"]), b"");
        assert_eq!(
            without_header_fields(b"no colon\nA: 1\n", &["A"]),
            b"no colon\n"
        );
    }

    #[test]
    fn attachment_size_and_digest_match_the_whole_decoding() {
        // Pieces of 64 KiB: groups, padding and junk fall across their edges.
        let mut encoded = Vec::new();
        for i in 0..40_000u32 {
            let block = STANDARD.encode(i.to_be_bytes().repeat((i % 5 + 1) as usize));
            encoded.extend_from_slice(block.as_bytes());
            encoded.extend_from_slice(if i % 7 == 0 { b"\r\n" } else { b"!" });
        }
        assert!(encoded.len() > 3 * 64 * 1024);
        for encoding in ["base64", " BASE64 ", "quoted-printable", "7bit", "binary"] {
            let whole = decode_body(&encoded, encoding);
            let (size, digest) = decoded_size_and_digest(&encoded, encoding);
            assert_eq!(size, whole.len() as u64, "{encoding}");
            assert_eq!(digest, Sha256::digest(&whole).to_vec(), "{encoding}");
        }
    }

    #[test]
    fn decode_body_handles_each_transfer_encoding() {
        assert_eq!(
            decode_body(b"SGVsbG8=\r\nIHdvcmxk", "BASE64"),
            b"Hello world"
        );
        assert_eq!(decode_body(b"SGk=SGk=", " base64 "), b"HiHi");
        assert_eq!(decode_body(b"S\x00G!k", "base64"), b"Hi");
        assert_eq!(decode_body(b"", "base64"), b"");
        assert_eq!(
            decode_body(b"a=3Db=\r\nc =\nd  \r\ne=ZZ=4", "quoted-printable"),
            b"a=bc d\r\ne=ZZ=4"
        );
        assert_eq!(decode_body(b"trailing  ", "quoted-printable"), b"trailing");
        assert_eq!(
            decode_body(b"soft at end=", "quoted-printable"),
            b"soft at end"
        );
        for encoding in ["7bit", "8bit", "binary", "x-unknown", ""] {
            assert_eq!(decode_body(b"=41 \xff", encoding), b"=41 \xff");
        }
    }

    #[test]
    fn search_terms_fold_case_and_diacritics_and_split_addresses() {
        assert_eq!(
            search_terms("Jöran.Müller@Bücher.EXAMPLE, hello!"),
            [
                "joran.muller@bucher.example",
                "joran.muller",
                "bucher.example",
                "joran",
                "muller",
                "bucher",
                "example",
                "hello"
            ]
        );
        assert_eq!(search_terms("東京 ﬁle"), ["東", "京", "file"]);
        assert_eq!(search_terms("-- ... @@"), Vec::<String>::new());
        let long = "a".repeat(MAX_TERM_CHARS + 1);
        assert_eq!(search_terms(&format!("{long} ok")), ["ok"]);
        let many: String = (0..3000).map(|i| format!("w{i} ")).collect();
        assert_eq!(search_terms(&many).len(), MAX_SEARCH_TERMS);
        // Query terms are found among the message's terms.
        let p = parse(INTL);
        for term in search_terms("JÖRAN bücher.example") {
            assert!(p.search_terms.contains(&term), "missing {term}");
        }
    }

    #[test]
    fn deep_nesting_and_many_parts_stay_bounded() {
        let mut nested_multipart = Vec::new();
        for i in 0..20_000 {
            nested_multipart.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n")
                    .as_bytes(),
            );
        }
        nested_multipart.extend_from_slice(b"Content-Type: text/plain\r\n\r\ndeep\r\n");
        let p = parse_inner(&nested_multipart);
        check_invariants(&nested_multipart, &p);

        let mut nested_message = b"Content-Type: message/rfc822\r\n\r\n".repeat(10_000);
        nested_message.extend_from_slice(b"Subject: deep\r\n\r\ndeep\r\n");
        let p = parse_inner(&nested_message);
        // MAX_MESSAGE_DEPTH containers, then the innermost message/rfc822 as one leaf.
        assert_eq!(p.attachments.len(), MAX_MESSAGE_DEPTH + 1);
        check_invariants(&nested_message, &p);

        let mut many = b"Content-Type: multipart/mixed; boundary=m\r\n\r\n".to_vec();
        for _ in 0..5000 {
            many.extend_from_slice(b"--m\r\nContent-Type: application/octet-stream\r\n\r\nx\r\n");
        }
        let p = parse_inner(&many);
        assert_eq!(p.attachments.len(), MAX_PARTS - 1);
        check_invariants(&many, &p);
    }

    #[test]
    fn parsed_message_serializes_in_camel_case() {
        let p = parse(RELATED);
        let json = serde_json::to_value(&p).unwrap();
        for key in [
            "messageId",
            "replyTo",
            "hasAttachments",
            "threadRefs",
            "threadSubject",
            "searchTerms",
            "contentType",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        let att = &json["attachments"][0];
        for key in [
            "contentType",
            "transferEncoding",
            "sizeKb",
            "fileContentHash",
            "bodyStart",
            "bodyEnd",
            "listed",
        ] {
            assert!(att.get(key).is_some(), "missing {key}");
        }
        assert!(json["from"].get("group").is_none());
        let back: ParsedMessage = serde_json::from_value(json).unwrap();
        assert_eq!(back, p);
    }

    /// xorshift64: a fixed seed keeps the generated inputs the same on every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            if n == 0 {
                0
            } else {
                (self.next() % n as u64) as usize
            }
        }
    }

    const TOKENS: [&[u8]; 18] = [
        b"\r\n",
        b"\n",
        b"--",
        b"--b\r\n",
        b"--b--\r\n",
        b"\r\n\r\n",
        b"=?utf-8?b?w6k=?=",
        b"=?iso-8859-1?q?caf=E9",
        b"Content-Type: multipart/mixed; boundary=b\r\n",
        b"Content-Type: message/rfc822\r\n\r\n",
        b"Content-Transfer-Encoding: base64\r\n",
        b"Content-Transfer-Encoding: quoted-printable\r\n",
        b"=",
        b"<img src=\"cid:",
        b"&#x",
        b":",
        b"\xff\xfe\xc3",
        b"\x00",
    ];

    fn mutate(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8]) {
        match rng.below(6) {
            0 => {
                for _ in 0..=rng.below(8) {
                    if !input.is_empty() {
                        let i = rng.below(input.len());
                        input[i] = rng.next() as u8;
                    }
                }
            }
            1 => {
                let start = rng.below(input.len() + 1);
                let end = (start + rng.below(200)).min(input.len());
                input.drain(start..end);
            }
            2 => {
                let start = rng.below(input.len() + 1);
                let end = (start + rng.below(200)).min(input.len());
                let copy = input[start..end].to_vec();
                let at = rng.below(input.len() + 1);
                input.splice(at..at, copy);
            }
            3 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                let at = rng.below(input.len() + 1);
                input.splice(at..at, token.iter().copied());
            }
            4 => input.truncate(rng.below(input.len() + 1)),
            _ => {
                let at = rng.below(input.len() + 1);
                let from = rng.below(other.len() + 1);
                input.truncate(at);
                input.extend_from_slice(&other[from..]);
            }
        }
    }

    #[test]
    fn parse_survives_mutated_and_random_input() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for (name, raw) in FIXTURES {
            let p = parse_inner(raw);
            check_invariants(raw, &p);
            assert!(!name.is_empty());
        }
        // The huge fixture is parsed above; mutating it would only slow the loop down.
        let small: Vec<&[u8]> = FIXTURES
            .iter()
            .filter(|(name, _)| *name != "huge-header")
            .map(|(_, raw)| *raw)
            .collect();
        for _ in 0..3000 {
            let mut input = small[rng.below(small.len())].to_vec();
            let other = small[rng.below(small.len())];
            for _ in 0..=rng.below(4) {
                mutate(&mut rng, &mut input, other);
            }
            let p = parse_inner(&input);
            check_invariants(&input, &p);
        }
        for _ in 0..1000 {
            let len = rng.below(2048);
            let mut input = Vec::with_capacity(len);
            while input.len() < len {
                if rng.below(8) == 0 {
                    input.extend_from_slice(TOKENS[rng.below(TOKENS.len())]);
                } else {
                    input.push(b" \r\n-=:;<>abcAB019+/\"\t\xe9\x00"[rng.below(23)]);
                }
            }
            let p = parse_inner(&input);
            check_invariants(&input, &p);
        }
    }

    #[test]
    fn folding_in_ascii_runs_equals_folding_the_whole_text() {
        let whole = |text: &str| {
            let mut out = String::new();
            fold_unicode(text, &mut out);
            out
        };
        for text in [
            "",
            "Plain ASCII, Mixed CASE 123",
            "Café crème brûlée",
            "e\u{301}te\u{301} A\u{30A}ngstro\u{308}m",
            "\u{301}leading mark, trailing mark\u{301}",
            "Ｆｕｌｌｗｉｄｔｈ ﬁ ligature ² Kelvin \u{212A}",
            "日本語のテキストとEnglish混在",
            "Ünïcödé ÀÉÎÕÜ ß Σίσυφος İstanbul",
            "a\u{323}\u{302}b q\u{307}\u{323}x",
        ] {
            assert_eq!(fold_for_search(text), whole(text), "{text}");
        }
    }
}
