//! Deterministic, realistic MIME messages for the loopback bench.
//!
//! A seeded generator (SplitMix64, so the same seed gives the same messages on every machine
//! and every version of this crate) builds a vocabulary of pseudo-words (some with non-ASCII
//! letters) and draws body words from it with a Zipf distribution. Messages are built with
//! mail-builder: plain text or multipart/alternative, a few hundred bytes to ~20 KB of text
//! (1% near 100 KB), 8% with one or two base64 attachments, RFC 2047 encoded non-ASCII subjects
//! and names, 40 senders, replies threaded to earlier messages. Message `i` depends only on the
//! seed and `i`, so any range can be generated on its own.
//!
//! Two words are planted: [`COMMON_WORD`] in the first sentence of every message, and
//! [`RARE_WORD`] somewhere in the text of about 0.1% of them ([`has_rare_word`]).

use mail_builder::MessageBuilder;
use mail_builder::headers::content_type::ContentType;
use mail_builder::mime::{BodyPart, MimePart};

/// In every message, in the first sentence of its text.
pub const COMMON_WORD: &str = "quillomat";
/// In [`has_rare_word`] messages, anywhere in the text.
pub const RARE_WORD: &str = "zephyrint";
/// The bench user's address (the recipient of every message).
pub const USER_ADDRESS: &str = "bench@example.com";

const VOCABULARY: usize = 4000;
const SENDERS: usize = 40;
/// 2024-01-01T00:00:00Z; message `i` is dated `i` × 317 s later.
const FIRST_DATE: i64 = 1_704_067_200;

/// Whether message `i` carries [`RARE_WORD`]: 0.1% of messages (`i % 1000 == 3`), plus three
/// more among the first thousand so that even the smallest mailbox has a few.
pub fn has_rare_word(i: usize) -> bool {
    i % 1000 == 3 || (i < 1000 && i % 250 == 3)
}

/// SplitMix64: tiny, fast, good enough for test data, and stable forever.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

struct Sender {
    name: String,
    address: String,
}

/// Builds message `i` of a seeded corpus.
pub struct Generator {
    seed: u64,
    words: Vec<String>,
    /// Cumulative Zipf weights of `words` (rank 0 the most frequent).
    cdf: Vec<f64>,
    senders: Vec<Sender>,
}

const ONSETS: &[&str] = &[
    "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "br",
    "ch", "cl", "dr", "fl", "gr", "pl", "pr", "sh", "st", "th", "tr",
];
const VOWELS: &[&str] = &["a", "e", "i", "o", "u", "ai", "ea", "ou", "y"];
const ACCENTED: &[&str] = &["é", "ü", "ø", "å", "ñ", "ç", "ö", "è", "í"];
const CODAS: &[&str] = &["", "", "", "n", "r", "s", "t", "l", "nd", "rk", "st"];
/// Non-ASCII phrases for subjects and names (encoded words in the headers).
const FOREIGN: &[&str] = &[
    "Grüße aus Köln",
    "Привет, коллеги",
    "日本語のテスト",
    "Ελληνικά νέα",
    "café crème",
    "Résumé de réunion",
    "Ærøskøbing møde",
    "año nuevo",
    "中文邮件",
    "Szczęśliwego",
];
const FOREIGN_NAMES: &[&str] = &[
    "Zoë Müller",
    "Jürgen Ødegård",
    "李雷",
    "Åsa Løvås",
    "François Lefèvre",
    "Иван Петров",
    "Σοφία Παπαδοπούλου",
    "José Núñez",
];
const DOMAINS: &[&str] = &[
    "example.org",
    "mail.example.net",
    "corp.example.com",
    "lists.example.edu",
];
const ATTACHMENTS: &[(&str, &str)] = &[
    ("application/pdf", "pdf"),
    ("image/png", "png"),
    ("image/jpeg", "jpg"),
    ("application/octet-stream", "bin"),
    ("application/zip", "zip"),
];

impl Generator {
    pub fn new(seed: u64) -> Generator {
        let mut rng = Rng::new(seed);
        let mut words = Vec::with_capacity(VOCABULARY);
        let mut seen = std::collections::HashSet::new();
        while words.len() < VOCABULARY {
            let rank = words.len();
            // Frequent words are short, as in real text.
            let syllables = 1 + usize::from(rank > 40) + usize::from(rank > 600) + rng.below(2);
            let mut word = String::new();
            for _ in 0..syllables {
                word.push_str(rng.pick(ONSETS));
                if rank > 100 && rng.chance(0.03) {
                    word.push_str(rng.pick(ACCENTED));
                } else {
                    word.push_str(rng.pick(VOWELS));
                }
            }
            word.push_str(rng.pick(CODAS));
            if word == COMMON_WORD || word == RARE_WORD || !seen.insert(word.clone()) {
                continue;
            }
            words.push(word);
        }
        let mut cdf = Vec::with_capacity(VOCABULARY);
        let mut total = 0.0;
        for rank in 0..VOCABULARY {
            total += 1.0 / (rank as f64 + 2.7);
            cdf.push(total);
        }
        for c in &mut cdf {
            *c /= total;
        }
        let mut senders = Vec::with_capacity(SENDERS);
        for s in 0..SENDERS {
            let first = capitalize(&words[rng.range(50, 1500)]);
            let last = capitalize(&words[rng.range(50, 3000)]);
            let name = if s % 5 == 0 {
                FOREIGN_NAMES[(s / 5) % FOREIGN_NAMES.len()].to_string()
            } else {
                format!("{first} {last}")
            };
            let local = format!(
                "{}.{}",
                ascii_only(&first).to_lowercase(),
                ascii_only(&last).to_lowercase()
            );
            let address = format!("{local}{s}@{}", DOMAINS[s % DOMAINS.len()]);
            senders.push(Sender { name, address });
        }
        Generator {
            seed,
            words,
            cdf,
            senders,
        }
    }

    fn word<'a>(&'a self, rng: &mut Rng) -> &'a str {
        let u = rng.unit();
        let rank = self.cdf.partition_point(|c| *c < u).min(VOCABULARY - 1);
        &self.words[rank]
    }

    fn sentence(&self, rng: &mut Rng, planted: Option<&str>) -> String {
        let n = rng.range(5, 16);
        let plant_at = planted.map(|_| rng.below(n));
        let mut out = String::new();
        for k in 0..n {
            let word = match (plant_at, planted) {
                (Some(at), Some(w)) if at == k => w,
                _ => self.word(rng),
            };
            if k == 0 {
                out.push_str(&capitalize(word));
            } else {
                out.push(' ');
                out.push_str(word);
                if k + 1 < n && rng.chance(0.08) {
                    out.push(',');
                }
            }
        }
        out.push(if rng.chance(0.1) { '?' } else { '.' });
        out
    }

    fn subject_of(&self, i: usize) -> String {
        let mut rng = self.rng_for(i, 1);
        let mut words: Vec<String> = (0..rng.range(3, 8))
            .map(|_| self.word(&mut rng).to_string())
            .collect();
        if rng.chance(0.25) {
            words.insert(rng.below(words.len()), rng.pick(FOREIGN).to_string());
        }
        let mut subject = words.join(" ");
        subject = capitalize(&subject);
        subject
    }

    fn rng_for(&self, i: usize, stream: u64) -> Rng {
        let mut rng = Rng::new(
            self.seed ^ (i as u64).wrapping_mul(0xA24B_AED4_963E_E407) ^ stream.rotate_left(32),
        );
        rng.next_u64();
        rng
    }

    /// Paragraphs of text of about `target` bytes; the common word in the first sentence, the
    /// rare word (if any) in a random one.
    fn paragraphs(&self, rng: &mut Rng, target: usize, rare: bool) -> Vec<Vec<String>> {
        let mut paragraphs: Vec<Vec<String>> = Vec::new();
        let mut len = 0;
        let mut first = true;
        while len < target {
            let mut paragraph = Vec::new();
            for _ in 0..rng.range(2, 7) {
                let sentence = self.sentence(rng, first.then_some(COMMON_WORD));
                first = false;
                len += sentence.len() + 1;
                paragraph.push(sentence);
                if len >= target {
                    break;
                }
            }
            paragraphs.push(paragraph);
        }
        if rare {
            let p = rng.below(paragraphs.len());
            let s = rng.below(paragraphs[p].len());
            let planted = self.sentence(rng, Some(RARE_WORD));
            paragraphs[p].insert(s, planted);
        }
        paragraphs
    }

    /// Message `i`: its raw bytes (CRLF line ends) and the envelope sender.
    pub fn message(&self, i: usize) -> (Vec<u8>, String) {
        let mut rng = self.rng_for(i, 0);
        let sender = &self.senders[zipf_small(&mut rng, SENDERS)];
        let mut subject = self.subject_of(i);
        let mut builder = MessageBuilder::new()
            .from((sender.name.as_str(), sender.address.as_str()))
            .to(("Bench User", USER_ADDRESS))
            .message_id(format!("{i}.{:x}@bench.example", self.seed))
            .date(FIRST_DATE + i as i64 * 317);
        if rng.chance(0.15) {
            let other = &self.senders[rng.below(SENDERS)];
            builder = builder.cc((other.name.as_str(), other.address.as_str()));
        }
        if i > 0 && rng.chance(0.2) {
            let parent = rng.below(i);
            subject = format!("Re: {}", self.subject_of(parent));
            let parent_id = format!("{parent}.{:x}@bench.example", self.seed);
            builder = builder.in_reply_to(parent_id.clone()).references(parent_id);
        }
        builder = builder.subject(subject);

        let roll = rng.unit();
        let target = if roll < 0.55 {
            rng.range(300, 3_000)
        } else if roll < 0.90 {
            rng.range(3_000, 12_000)
        } else if roll < 0.99 {
            rng.range(12_000, 20_000)
        } else {
            rng.range(80_000, 120_000)
        };
        let paragraphs = self.paragraphs(&mut rng, target, has_rare_word(i));
        let text = wrap_text(&paragraphs);
        let text_part = MimePart::new("text/plain", text);
        let body = if rng.chance(0.5) {
            let html = html_of(&paragraphs);
            MimePart::new(
                ContentType::new("multipart/alternative").attribute("boundary", format!("alt-{i}")),
                vec![text_part, MimePart::new("text/html", html)],
            )
        } else {
            text_part
        };
        let body = if rng.chance(0.08) {
            let mut parts = vec![body];
            for a in 0..rng.range(1, 2) {
                let (ctype, ext) = rng.pick(ATTACHMENTS);
                let size = rng.range(2_000, 60_000);
                let mut bytes = Vec::with_capacity(size + 8);
                while bytes.len() < size {
                    bytes.extend_from_slice(&rng.next_u64().to_le_bytes());
                }
                bytes.truncate(size);
                let stem = if rng.chance(0.3) {
                    format!("Übersicht {}", self.word(&mut rng))
                } else {
                    format!("{}-{}", self.word(&mut rng), a + 1)
                };
                parts.push(
                    MimePart::new(ctype, BodyPart::Binary(bytes.into()))
                        .attachment(format!("{stem}.{ext}")),
                );
            }
            MimePart::new(
                ContentType::new("multipart/mixed").attribute("boundary", format!("mix-{i}")),
                parts,
            )
        } else {
            body
        };
        let raw = builder
            .body(body)
            .write_to_vec()
            .expect("writing to a Vec never fails");
        (raw, sender.address.clone())
    }
}

/// A rank in `0..n` with Zipf-like weights (a few senders write most of the mail).
fn zipf_small(rng: &mut Rng, n: usize) -> usize {
    let total: f64 = (1..=n).map(|r| 1.0 / r as f64).sum();
    let mut u = rng.unit() * total;
    for r in 1..=n {
        u -= 1.0 / r as f64;
        if u <= 0.0 {
            return r - 1;
        }
    }
    n - 1
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn ascii_only(word: &str) -> String {
    word.chars().filter(char::is_ascii_alphabetic).collect()
}

/// Paragraphs as plain text, lines wrapped at 72 columns, a blank line between paragraphs.
fn wrap_text(paragraphs: &[Vec<String>]) -> String {
    let mut out = String::new();
    for paragraph in paragraphs {
        let mut column = 0;
        for word in paragraph.iter().flat_map(|s| s.split(' ')) {
            let width = word.chars().count();
            if column > 0 && column + 1 + width > 72 {
                out.push('\n');
                column = 0;
            } else if column > 0 {
                out.push(' ');
                column += 1;
            }
            out.push_str(word);
            column += width;
        }
        out.push_str("\n\n");
    }
    out
}

fn html_of(paragraphs: &[Vec<String>]) -> String {
    let mut out =
        String::from("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head><body>\n");
    for (n, paragraph) in paragraphs.iter().enumerate() {
        out.push_str("<p>");
        for (k, sentence) in paragraph.iter().enumerate() {
            if k > 0 {
                out.push('\n');
            }
            if (n + k) % 7 == 3 {
                out.push_str("<b>");
                out.push_str(sentence);
                out.push_str("</b>");
            } else {
                out.push_str(sentence);
            }
        }
        out.push_str("</p>\n");
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_planted() {
        let a = Generator::new(7);
        let b = Generator::new(7);
        for i in [0, 3, 253, 999, 1003] {
            let (x, _) = a.message(i);
            let (y, _) = b.message(i);
            assert_eq!(x, y, "message {i} differs between two generators");
            let parsed = mail_parser::MessageParser::default().parse(&x).unwrap();
            let text = parsed.body_text(0).unwrap().to_lowercase();
            assert!(text.contains(COMMON_WORD), "{i}");
            assert_eq!(text.contains(RARE_WORD), has_rare_word(i), "{i}");
        }
    }
}
