//! Threads: a new message joins the thread of a message it refers to (`In-Reply-To`,
//! `References`) when their normalized subjects match, as in WildDuck; otherwise it starts
//! a new one. Each message records its references as items pointing at its thread.

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::domain::{AppState, DomainResult, keys};
use crate::id::ObjectId;
use crate::mail::parse::ParsedMessage;
use crate::store::{Item, Key, Write};

/// The subject's part of a thread reference: 24 hex digits of its SHA-256.
fn subject_hash(subject: &str) -> String {
    let digest = Sha256::digest(subject.as_bytes());
    digest.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

/// The thread-reference items of a message, from its parsed headers. The janitor derives them
/// again from the stored source when it purges a deleted user, so both go through here.
pub(crate) fn thread_ref_keys(user: &ObjectId, parsed: &ParsedMessage) -> Vec<Key> {
    let hash = subject_hash(&parsed.thread_subject);
    parsed
        .thread_refs
        .iter()
        .map(|r| keys::thread_ref(user, r, &hash))
        .collect()
}

/// The thread of a new message (WildDuck's rule: a known reference with the same normalized
/// subject joins that thread) and the writes that record its references.
pub(super) async fn resolve_thread(
    state: &AppState,
    user: &ObjectId,
    parsed: &ParsedMessage,
) -> DomainResult<(ObjectId, Vec<Write>)> {
    let refs = thread_ref_keys(user, parsed);
    let known = if refs.is_empty() {
        Vec::new()
    } else {
        state.table.get_many(&refs).await?
    };
    let thread = known
        .iter()
        .find_map(|i| serde_json::from_value::<ObjectId>(i.body["thread"].clone()).ok())
        .unwrap_or_else(ObjectId::new);
    let writes = refs
        .into_iter()
        .map(|key| Write::put(Item::new(key, json!({ "thread": thread }))))
        .collect();
    Ok((thread, writes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::parse;

    #[test]
    fn replies_with_the_same_subject_share_reference_keys() {
        let user = ObjectId::new();
        let original = parse::parse(b"Message-ID: <a@x>\r\nSubject: Plans\r\n\r\nhi\r\n");
        let reply = parse::parse(
            b"Message-ID: <b@x>\r\nIn-Reply-To: <a@x>\r\nSubject: Re: Plans\r\n\r\nok\r\n",
        );
        let other = parse::parse(
            b"Message-ID: <c@x>\r\nIn-Reply-To: <a@x>\r\nSubject: Something else\r\n\r\n\r\n",
        );
        let original_keys = thread_ref_keys(&user, &original);
        assert!(
            thread_ref_keys(&user, &reply)
                .iter()
                .any(|k| original_keys.contains(k)),
            "a reply finds the thread of the message it answers"
        );
        assert!(
            !thread_ref_keys(&user, &other)
                .iter()
                .any(|k| original_keys.contains(k)),
            "another subject starts its own thread"
        );
        assert_eq!(subject_hash("x").len(), 24);
    }
}
