//! The message store's rules, exercised on the embedded store without HTTP: counters follow
//! flag changes and moves exactly, the quota refuses what does not fit (and changes nothing),
//! and replies join the thread of what they answer.

use std::sync::Arc;

use super::*;
use crate::config::Config;
use crate::domain::authlog::Session;
use crate::domain::mailboxes::{self, CustomNames, NewMailbox};
use crate::domain::users::{self, NewUser, ProfileChanges};
use crate::store::blob_fs::FsBlobStore;
use crate::store::embedded::EmbeddedTable;

/// A user with default folders on a fresh embedded store (also used by the archive's tests).
pub(crate) struct Fixture {
    _dir: tempfile::TempDir,
    pub(crate) state: AppState,
    pub(crate) user: ObjectId,
    pub(crate) inbox: ObjectId,
}

pub(crate) async fn fixture(quota: Option<u64>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let table = EmbeddedTable::open(&dir.path().join("t.redb")).unwrap();
    let blobs = FsBlobStore::new(dir.path().join("blobs")).unwrap();
    let state = AppState::new(Arc::new(table), Arc::new(blobs), Config::default());
    let mut profile = ProfileChanges::default();
    profile.limits.quota = quota;
    let user = users::create(
        &state,
        NewUser {
            username: "rules".into(),
            password: None,
            hashed_password: false,
            require_password_change: false,
            address: Some("rules@example.com".into()),
            empty_address: false,
            add_tags_to_address: false,
            mailboxes: CustomNames::default(),
            profile,
            session: Session::default(),
        },
    )
    .await
    .unwrap();
    let inbox = mailboxes::inbox(&state, &user).await.unwrap().mailbox.id;
    Fixture {
        _dir: dir,
        state,
        user,
        inbox,
    }
}

pub(crate) fn raw(subject: &str, headers: &str) -> Vec<u8> {
    format!("From: a@example.com\r\nSubject: {subject}\r\n{headers}\r\nbody of {subject}\r\n")
        .into_bytes()
}

impl Fixture {
    pub(crate) async fn store(
        &self,
        mailbox: &ObjectId,
        raw: Vec<u8>,
        seen: bool,
    ) -> DomainResult<Stored> {
        let upload = Upload {
            raw: raw.into(),
            seen,
            source: "API",
            ..Default::default()
        };
        store(&self.state, &self.user, mailbox, upload).await
    }

    async fn counters(&self, mailbox: &ObjectId) -> (i64, i64, i64) {
        let m = mailboxes::load(&self.state, &self.user, mailbox)
            .await
            .unwrap();
        (m.total, m.unseen, m.size)
    }

    pub(crate) async fn storage_used(&self) -> i64 {
        users::load(&self.state, &self.user)
            .await
            .unwrap()
            .storage_used
    }

    async fn update(&self, mailbox: &ObjectId, selector: &str, changes: FlagChanges) -> Updated {
        let request = MessageUpdate {
            selector: Selector::parse(selector).unwrap(),
            move_to: None,
            changes,
        };
        update(&self.state, &self.user, mailbox, request)
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn flag_changes_keep_the_unseen_counter_exact() {
    let f = fixture(None).await;
    for i in 0..5 {
        f.store(&f.inbox, raw(&format!("m{i}"), ""), false)
            .await
            .unwrap();
    }
    let (total, unseen, size) = f.counters(&f.inbox).await;
    assert_eq!((total, unseen), (5, 5));

    let seen = |v| FlagChanges {
        seen: Some(v),
        ..Default::default()
    };
    assert!(matches!(
        f.update(&f.inbox, "1:3", seen(true)).await,
        Updated::Flags(3)
    ));
    assert_eq!(f.counters(&f.inbox).await, (5, 2, size));
    // Marking seen what is seen already changes nothing.
    assert!(matches!(
        f.update(&f.inbox, "2,3", seen(true)).await,
        Updated::Flags(2)
    ));
    assert_eq!(f.counters(&f.inbox).await, (5, 2, size));
    assert!(matches!(
        f.update(&f.inbox, "1:*", seen(false)).await,
        Updated::Flags(5)
    ));
    assert_eq!(f.counters(&f.inbox).await, (5, 5, size));

    let flagged = FlagChanges {
        flagged: Some(true),
        ..Default::default()
    };
    f.update(&f.inbox, "4", flagged).await;
    let message = load(&f.state, &f.user, &f.inbox, 4).await.unwrap();
    assert!(message.flagged && !message.seen);
    assert_eq!(message.flags(), vec!["\\Flagged"]);
}

#[tokio::test]
async fn moves_give_new_uids_and_move_the_counts_with_them() {
    let f = fixture(None).await;
    let target = mailboxes::create(
        &f.state,
        &f.user,
        NewMailbox {
            path: "Work".into(),
            hidden: false,
            retention: None,
            encrypt_messages: false,
        },
    )
    .await
    .unwrap();
    f.store(&target, raw("already there", ""), true)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            f.store(&f.inbox, raw(&format!("m{i}"), ""), i == 0)
                .await
                .unwrap(),
        );
    }
    let inbox_before = f.counters(&f.inbox).await;
    let moved = update(
        &f.state,
        &f.user,
        &f.inbox,
        MessageUpdate {
            selector: Selector::parse("1:*").unwrap(),
            move_to: Some(target),
            changes: FlagChanges::default(),
        },
    )
    .await
    .unwrap();
    let Updated::Moved { mailbox, uids } = moved else {
        panic!("a move answers the new UIDs");
    };
    assert_eq!(mailbox, target);
    assert_eq!(uids, vec![(1, 2), (2, 3), (3, 4)]);
    assert_eq!(f.counters(&f.inbox).await, (0, 0, 0));
    let (total, unseen, size) = f.counters(&target).await;
    assert_eq!((total, unseen), (4, 2));
    assert!(size > inbox_before.2);
    // The ids still lead to the messages, now in the target.
    let ids: Vec<ObjectId> = ids.iter().map(|s| s.id).collect();
    let found = resolve_ids(&f.state, &f.user, &ids).await.unwrap();
    assert_eq!(found.len(), 3);
    assert!(found.iter().all(|m| m.mailbox == target));
    // The quota did not change: the messages are still the user's.
    assert_eq!(f.storage_used().await, size);
}

#[tokio::test]
async fn the_quota_refuses_what_does_not_fit_and_changes_nothing() {
    let f = fixture(Some(200)).await;
    let small = raw("small", "");
    let stored = f.store(&f.inbox, small.clone(), false).await.unwrap();
    assert_eq!(f.storage_used().await, stored.size as i64);
    let big = raw("big", &format!("X-Padding: {}\r\n", "x".repeat(300)));
    let refused = f.store(&f.inbox, big, false).await;
    assert!(
        matches!(refused, Err(DomainError::OverQuota)),
        "{refused:?}"
    );
    assert_eq!(f.storage_used().await, stored.size as i64);
    assert_eq!(f.counters(&f.inbox).await.0, 1);
    // Deleting makes room again; the archive is outside the quota.
    delete(&f.state, &f.user, &f.inbox, stored.uid)
        .await
        .unwrap();
    assert_eq!(f.storage_used().await, 0);
    assert_eq!(f.counters(&f.inbox).await, (0, 0, 0));
}

#[tokio::test]
async fn a_reply_joins_the_thread_of_the_message_it_answers() {
    let f = fixture(None).await;
    let original = f
        .store(&f.inbox, raw("Plans", "Message-ID: <a@x>\r\n"), true)
        .await
        .unwrap();
    let reply = f
        .store(
            &f.inbox,
            raw("Re: Plans", "Message-ID: <b@x>\r\nIn-Reply-To: <a@x>\r\n"),
            true,
        )
        .await
        .unwrap();
    let other = f
        .store(
            &f.inbox,
            raw("Other", "Message-ID: <c@x>\r\nIn-Reply-To: <a@x>\r\n"),
            true,
        )
        .await
        .unwrap();
    let f = &f;
    let thread = |uid| async move { load(&f.state, &f.user, &f.inbox, uid).await.unwrap().thread };
    assert_eq!(thread(original.uid).await, thread(reply.uid).await);
    assert_ne!(thread(original.uid).await, thread(other.uid).await);
}
