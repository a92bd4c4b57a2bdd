//! The storage contract: every test is written once against the port (`Table`, `BlobStore`)
//! and runs on each backend, as `embedded::<test>` and `moto::<test>`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use eider_shared::store::{
    Condition, Cursor, Guard, Index, IndexKey, Item, Key, MAX_TRANSACTION_WRITES, Query, SortRange,
    StoreError, Table, Update, Write,
};
use eider_tests::backends::Backend;
use serde_json::json;

/// Generates one test per backend for each contract function.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(&eider_tests::backends::embedded().await).await;
                }
            )*
        }
        mod moto {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(&eider_tests::backends::moto().await).await;
                }
            )*
        }
    };
}

contract!(
    get_put_delete,
    get_many_chunks_and_skips_missing,
    delete_many_removes_items_and_index_entries_across_batches,
    query_table_ranges,
    query_indexes,
    paging_visits_every_item_once,
    conditions_on_single_writes,
    conditions_on_counters,
    failed_transaction_changes_nothing,
    transaction_applies_every_kind_of_write,
    invalid_requests,
    update_counters,
    concurrent_adds_are_exact,
    concurrent_put_new_has_one_winner,
    expired_items_are_gone,
    expired_items_do_not_fill_pages,
    update_does_not_revive_expired_items,
    index_keys_move_and_disappear,
    blobs,
);

fn now() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    since.as_secs() as i64
}

fn item(pk: &str, sk: &str) -> Item {
    Item::new(Key::new(pk, sk), json!({ "pk": pk, "sk": sk }))
}

fn keys(items: &[Item]) -> Vec<String> {
    items.iter().map(|i| i.sk.clone()).collect()
}

async fn put_all(b: &Backend, items: impl IntoIterator<Item = Item>) {
    let writes: Vec<Write> = items.into_iter().map(Write::put).collect();
    for chunk in writes.chunks(MAX_TRANSACTION_WRITES) {
        b.table.transact(chunk.to_vec()).await.unwrap();
    }
}

/// The position of the write whose condition failed: every test write is labeled with its
/// position in its transaction (see [`at`]).
fn condition_failed(result: Result<impl std::fmt::Debug, StoreError>) -> usize {
    match result {
        Err(StoreError::ConditionFailed { label }) => label.parse().expect("a position label"),
        other => panic!("expected a failed condition, got {other:?}"),
    }
}

/// `condition`, labeled as the write at `position` of its transaction.
fn at(position: usize, condition: Condition) -> Guard {
    const POSITIONS: [&str; 4] = ["0", "1", "2", "3"];
    condition.labeled(POSITIONS[position])
}

fn invalid(result: Result<impl std::fmt::Debug, StoreError>) {
    match result {
        Err(StoreError::Invalid(_)) => {}
        other => panic!("expected an invalid request, got {other:?}"),
    }
}

async fn get_put_delete(b: &Backend) {
    let key = Key::new("user#1", "profile");
    assert_eq!(b.table.get(&key).await.unwrap(), None);

    let full = Item::new(
        key.clone(),
        json!({ "name": "Ann", "tags": ["a", 1, 2.5, null] }),
    )
    .with_counter("quota", 42)
    .with_counter("negative", -7)
    .with_gsi1(IndexKey::new("name#ann", "user#1"))
    .with_gsi2(IndexKey::new("all", "0001"))
    .with_expiry(now() + 3600);
    b.table
        .transact(vec![Write::put(full.clone())])
        .await
        .unwrap();
    assert_eq!(b.table.get(&key).await.unwrap(), Some(full));

    // A put replaces the whole item: counters and index keys not given are gone.
    let plain = Item::new(key.clone(), json!("just a string"));
    b.table
        .transact(vec![Write::put(plain.clone())])
        .await
        .unwrap();
    assert_eq!(b.table.get(&key).await.unwrap(), Some(plain));
    let q = b
        .table
        .query(&Query::index(Index::Gsi1, "name#ann"))
        .await
        .unwrap();
    assert!(q.items.is_empty(), "{q:?}");

    b.table
        .transact(vec![Write::delete(key.clone())])
        .await
        .unwrap();
    assert_eq!(b.table.get(&key).await.unwrap(), None);
    // Deleting what is not there is fine.
    b.table
        .transact(vec![Write::delete(key.clone())])
        .await
        .unwrap();
    // Empty transactions do nothing.
    b.table.transact(vec![]).await.unwrap();
}

async fn get_many_chunks_and_skips_missing(b: &Backend) {
    let items: Vec<Item> = (0..150).map(|i| item("many", &format!("{i:03}"))).collect();
    put_all(b, items.clone()).await;
    let mut wanted: Vec<Key> = items.iter().map(Item::key).collect();
    wanted.push(Key::new("many", "missing"));
    wanted.push(Key::new("nowhere", "000"));
    wanted.push(items[7].key()); // a duplicate
    let found = b.table.get_many(&wanted).await.unwrap();
    let found: BTreeMap<Key, Item> = found.into_iter().map(|i| (i.key(), i)).collect();
    let expected: BTreeMap<Key, Item> = items.into_iter().map(|i| (i.key(), i)).collect();
    assert_eq!(found, expected);
    assert!(b.table.get_many(&[]).await.unwrap().is_empty());
}

async fn delete_many_removes_items_and_index_entries_across_batches(b: &Backend) {
    // More than one BatchWriteItem (25) and one transaction (100) holds; each with an index
    // entry, which must go with its item.
    let items: Vec<Item> = (0..130)
        .map(|i| {
            item("bulk", &format!("{i:03}")).with_gsi1(IndexKey::new("BULKIDX", format!("{i:03}")))
        })
        .collect();
    put_all(b, items.clone()).await;
    put_all(b, [item("bulk-other", "000"), item("bulk", "keep")]).await;
    let mut doomed: Vec<Key> = items.iter().map(Item::key).collect();
    doomed.push(items[3].key()); // a repeat
    doomed.push(Key::new("bulk", "missing"));
    b.table.delete_many(&doomed).await.unwrap();
    let left = b
        .table
        .query(&Query::table("bulk").limit(500))
        .await
        .unwrap();
    let left: Vec<Key> = left.items.iter().map(Item::key).collect();
    assert_eq!(left, [Key::new("bulk", "keep")]);
    let indexed = b
        .table
        .query(&Query::index(Index::Gsi1, "BULKIDX").limit(500))
        .await
        .unwrap();
    assert!(indexed.items.is_empty(), "{:?}", indexed.items);
    assert!(
        b.table
            .get(&Key::new("bulk-other", "000"))
            .await
            .unwrap()
            .is_some()
    );
    b.table.delete_many(&[]).await.unwrap();
    // Deleting what is gone already is no error.
    b.table.delete_many(&doomed).await.unwrap();
}

/// `p` holds a01..a10 and b01..b05; neighbouring partitions must never leak in.
async fn seed_ranges(b: &Backend) {
    let mut items = Vec::new();
    for i in 1..=10 {
        items.push(item("p", &format!("a{i:02}")));
    }
    for i in 1..=5 {
        items.push(item("p", &format!("b{i:02}")));
    }
    for pk in ["p0", "pa", "o", "q"] {
        items.push(item(pk, "a05"));
    }
    put_all(b, items).await;
}

fn skeys(prefix: &str, range: std::ops::RangeInclusive<u32>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i:02}")).collect()
}

async fn query_table_ranges(b: &Backend) {
    seed_ranges(b).await;
    let t = &b.table;
    let all: Vec<String> = [skeys("a", 1..=10), skeys("b", 1..=5)].concat();

    let page = t.query(&Query::table("p")).await.unwrap();
    assert_eq!(keys(&page.items), all);
    assert_eq!(page.next, None);
    assert_eq!(page.items[0], item("p", "a01"));

    let page = t.query(&Query::table("p").backwards()).await.unwrap();
    assert_eq!(
        keys(&page.items),
        all.iter().rev().cloned().collect::<Vec<_>>()
    );

    let page = t
        .query(&Query::table("p").range(SortRange::BeginsWith("b".into())))
        .await
        .unwrap();
    assert_eq!(keys(&page.items), skeys("b", 1..=5));
    let q = Query::table("p")
        .range(SortRange::BeginsWith("a0".into()))
        .backwards();
    assert_eq!(
        keys(&t.query(&q).await.unwrap().items),
        skeys("a", 1..=9).into_iter().rev().collect::<Vec<_>>()
    );
    let q = Query::table("p").range(SortRange::BeginsWith("c".into()));
    assert!(t.query(&q).await.unwrap().items.is_empty());
    let q = Query::table("p").range(SortRange::BeginsWith(String::new()));
    assert_eq!(keys(&t.query(&q).await.unwrap().items), all);

    // Between is inclusive on both ends; its bounds need not exist.
    let q = Query::table("p").range(SortRange::Between("a09".into(), "b02".into()));
    assert_eq!(
        keys(&t.query(&q).await.unwrap().items),
        ["a09", "a10", "b01", "b02"]
    );
    let q = Query::table("p")
        .range(SortRange::Between("a095".into(), "b015".into()))
        .backwards();
    assert_eq!(keys(&t.query(&q).await.unwrap().items), ["b01", "a10"]);
    let q = Query::table("p").range(SortRange::Between("a05".into(), "a05".into()));
    assert_eq!(keys(&t.query(&q).await.unwrap().items), ["a05"]);
    let q = Query::table("p").range(SortRange::Between(String::new(), "a02".into()));
    assert_eq!(keys(&t.query(&q).await.unwrap().items), ["a01", "a02"]);

    // A limit that cuts the range gives a cursor; one that does not may or may not.
    let page = t.query(&Query::table("p").limit(3)).await.unwrap();
    assert_eq!(keys(&page.items), ["a01", "a02", "a03"]);
    assert_eq!(page.next, Some(Cursor::of(&page.items[2], None)));
    let page = t.query(&Query::table("p").limit(100)).await.unwrap();
    assert_eq!(page.next, None);

    // Sort keys compare as UTF-8 bytes: "Z" < "a" < "é" < "😀".
    put_all(b, ["é", "a", "Z", "😀", "aa"].map(|sk| item("utf8", sk))).await;
    let page = t.query(&Query::table("utf8")).await.unwrap();
    assert_eq!(keys(&page.items), ["Z", "a", "aa", "é", "😀"]);
    let q = Query::table("utf8").range(SortRange::Between("b".into(), "😀".into()));
    assert_eq!(keys(&t.query(&q).await.unwrap().items), ["é", "😀"]);
}

async fn query_indexes(b: &Backend) {
    let mut items = Vec::new();
    for i in 1..=6 {
        // Table keys run opposite to index keys, so the order must come from the index.
        items.push(
            item("msg", &format!("{:02}", 10 - i))
                .with_gsi1(IndexKey::new("mailbox#1", format!("uid#{i:02}")))
                .with_gsi2(IndexKey::new(
                    if i % 2 == 0 { "even" } else { "odd" },
                    format!("{i}"),
                )),
        );
    }
    items.push(item("msg", "99")); // in no index
    items.push(item("other", "x").with_gsi1(IndexKey::new("mailbox#2", "uid#01")));
    put_all(b, items.clone()).await;

    let page = b
        .table
        .query(&Query::index(Index::Gsi1, "mailbox#1"))
        .await
        .unwrap();
    let sks: Vec<_> = page
        .items
        .iter()
        .map(|i| i.gsi1.clone().unwrap().sk)
        .collect();
    assert_eq!(sks, skeys("uid#", 1..=6));
    assert_eq!(page.items[0], items[0], "index queries return whole items");

    let q = Query::index(Index::Gsi1, "mailbox#1")
        .range(SortRange::Between("uid#02".into(), "uid#04".into()))
        .backwards();
    let page = b.table.query(&q).await.unwrap();
    let sks: Vec<_> = page
        .items
        .iter()
        .map(|i| i.gsi1.clone().unwrap().sk)
        .collect();
    assert_eq!(sks, ["uid#04", "uid#03", "uid#02"]);

    let q = Query::index(Index::Gsi2, "even").range(SortRange::BeginsWith("4".into()));
    let page = b.table.query(&q).await.unwrap();
    assert_eq!(page.items, vec![items[3].clone()]);
    let page = b
        .table
        .query(&Query::index(Index::Gsi2, "odd").backwards())
        .await
        .unwrap();
    let sks: Vec<_> = page
        .items
        .iter()
        .map(|i| i.gsi2.clone().unwrap().sk)
        .collect();
    assert_eq!(sks, ["5", "3", "1"]);

    let page = b
        .table
        .query(&Query::index(Index::Gsi1, "mailbox#2"))
        .await
        .unwrap();
    assert_eq!(page.items, vec![items[7].clone()]);
    assert!(
        b.table
            .query(&Query::index(Index::Gsi2, "mailbox#1"))
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

/// Walks a query page by page and returns the keys it visited.
async fn walk(t: &Arc<dyn Table>, query: Query) -> Vec<Key> {
    let mut seen = Vec::new();
    let mut cursor = None;
    for _ in 0..1000 {
        let page = t.query(&query.clone().start_after(cursor)).await.unwrap();
        assert!(page.items.len() <= query.limit);
        if page.items.len() < query.limit {
            assert_eq!(page.next, None, "a short page ends the walk");
        }
        seen.extend(page.items.iter().map(Item::key));
        match page.next {
            Some(next) => {
                assert_eq!(
                    Some(&next),
                    page.items
                        .last()
                        .map(|i| Cursor::of(i, query.index))
                        .as_ref()
                );
                cursor = Some(next);
            }
            None => return seen,
        }
    }
    panic!("the walk does not end");
}

async fn paging_visits_every_item_once(b: &Backend) {
    let mut items = Vec::new();
    for i in 0..13 {
        // Index sort keys repeat (three items share each), as dates or sizes do.
        items.push(
            item("page", &format!("{i:02}"))
                .with_gsi1(IndexKey::new("by-size", format!("size#{}", i / 3)))
                .with_gsi2(IndexKey::new("g2", format!("{:02}", 20 - i))),
        );
    }
    put_all(b, items).await;

    let ranges = [
        SortRange::All,
        SortRange::BeginsWith("0".into()),
        SortRange::Between("03".into(), "11".into()),
    ];
    for range in ranges {
        let full = b
            .table
            .query(&Query::table("page").range(range.clone()))
            .await
            .unwrap();
        let full: Vec<Key> = full.items.iter().map(Item::key).collect();
        for forward in [true, false] {
            for limit in [1, 2, 4, 5, 13, 20] {
                let q = Query::table("page")
                    .range(range.clone())
                    .forward(forward)
                    .limit(limit);
                let mut expected = full.clone();
                if !forward {
                    expected.reverse();
                }
                assert_eq!(
                    walk(&b.table, q).await,
                    expected,
                    "{range:?} forward={forward} limit={limit}"
                );
            }
        }
    }

    for (index, pk, range) in [
        (Index::Gsi1, "by-size", SortRange::All),
        (
            Index::Gsi1,
            "by-size",
            SortRange::Between("size#1".into(), "size#3".into()),
        ),
        (Index::Gsi2, "g2", SortRange::BeginsWith("1".into())),
    ] {
        let full = b
            .table
            .query(&Query::index(index, pk).range(range.clone()))
            .await
            .unwrap();
        let expected: BTreeSet<Key> = full.items.iter().map(Item::key).collect();
        for forward in [true, false] {
            for limit in [1, 2, 3, 4, 7, 20] {
                let q = Query::index(index, pk)
                    .range(range.clone())
                    .forward(forward)
                    .limit(limit);
                let seen = walk(&b.table, q).await;
                assert_eq!(
                    seen.len(),
                    expected.len(),
                    "{index:?} {range:?} forward={forward} limit={limit}: {seen:?}"
                );
                assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), expected);
            }
        }
    }
}

async fn conditions_on_single_writes(b: &Backend) {
    let t = &b.table;
    let key = Key::new("cond", "1");
    let put_new = || Write::put_new(item("cond", "1"), "0");

    // Exists / counters on a missing item fail, whatever the write.
    for condition in [
        Condition::Exists,
        Condition::CounterEquals("n".into(), 0),
        Condition::CounterAtMost("n".into(), 10),
    ] {
        let put = Write::Put {
            item: item("cond", "1"),
            guard: Some(at(0, condition.clone())),
        };
        assert_eq!(condition_failed(t.transact(vec![put]).await), 0);
        let update = Write::Update {
            key: key.clone(),
            update: Update::body(json!(1)),
            guard: Some(at(0, condition.clone())),
        };
        assert_eq!(condition_failed(t.transact(vec![update]).await), 0);
        let delete = Write::Delete {
            key: key.clone(),
            guard: Some(at(0, condition.clone())),
        };
        assert_eq!(condition_failed(t.transact(vec![delete]).await), 0);
        let check = Write::Check {
            key: key.clone(),
            guard: at(0, condition.clone()),
        };
        assert_eq!(condition_failed(t.transact(vec![check]).await), 0);
        assert_eq!(
            condition_failed(
                t.update(&key, Update::body(json!(1)), Some(at(0, condition)))
                    .await
            ),
            0
        );
    }
    assert_eq!(
        t.get(&key).await.unwrap(),
        None,
        "failed writes wrote nothing"
    );

    // NotExists holds on a missing item.
    t.transact(vec![Write::Check {
        key: key.clone(),
        guard: at(0, Condition::NotExists),
    }])
    .await
    .unwrap();
    t.transact(vec![put_new()]).await.unwrap();
    assert_eq!(condition_failed(t.transact(vec![put_new()]).await), 0);
    let check = Write::Check {
        key: key.clone(),
        guard: at(0, Condition::NotExists),
    };
    assert_eq!(condition_failed(t.transact(vec![check]).await), 0);
    let update = Update::body(json!("x"));
    assert_eq!(
        condition_failed(
            t.update(&key, update.clone(), Some(at(0, Condition::NotExists)))
                .await
        ),
        0
    );

    // Exists now holds.
    let updated = t
        .update(&key, update, Some(at(0, Condition::Exists)))
        .await
        .unwrap();
    assert_eq!(updated.body, json!("x"));
    t.transact(vec![Write::Check {
        key: key.clone(),
        guard: at(0, Condition::Exists),
    }])
    .await
    .unwrap();
    let replace = Write::Put {
        item: item("cond", "1"),
        guard: Some(at(0, Condition::Exists)),
    };
    t.transact(vec![replace]).await.unwrap();
    assert_eq!(t.get(&key).await.unwrap(), Some(item("cond", "1")));
    let delete = Write::Delete {
        key: key.clone(),
        guard: Some(at(0, Condition::Exists)),
    };
    t.transact(vec![delete.clone()]).await.unwrap();
    assert_eq!(t.get(&key).await.unwrap(), None);
    assert_eq!(condition_failed(t.transact(vec![delete]).await), 0);
}

async fn conditions_on_counters(b: &Backend) {
    let t = &b.table;
    let key = Key::new("counters", "1");
    t.transact(vec![Write::put(
        item("counters", "1").with_counter("used", 5),
    )])
    .await
    .unwrap();

    let ok = |c: Condition| Write::Check {
        key: key.clone(),
        guard: at(0, c),
    };
    for condition in [
        Condition::CounterEquals("used".into(), 5),
        Condition::CounterAtMost("used".into(), 5),
        Condition::CounterAtMost("used".into(), 6),
        // A counter never set counts as 0.
        Condition::CounterEquals("other".into(), 0),
        Condition::CounterAtMost("other".into(), 0),
        Condition::CounterAtMost("other".into(), 3),
        Condition::Exists,
    ] {
        t.transact(vec![ok(condition.clone())])
            .await
            .unwrap_or_else(|e| panic!("{condition:?}: {e}"));
    }
    for condition in [
        Condition::CounterEquals("used".into(), 4),
        Condition::CounterEquals("used".into(), 0),
        Condition::CounterAtMost("used".into(), 4),
        Condition::CounterEquals("other".into(), 1),
        Condition::CounterAtMost("other".into(), -1),
        Condition::NotExists,
    ] {
        assert_eq!(
            condition_failed(t.transact(vec![ok(condition.clone())]).await),
            0,
            "{condition:?}"
        );
    }

    // Quota style: add only while the counter stays within the limit.
    let add = |n| Update::default().add("used", n);
    let after = t
        .update(
            &key,
            add(3),
            Some(at(0, Condition::CounterAtMost("used".into(), 7))),
        )
        .await
        .unwrap();
    assert_eq!(after.counter("used"), 8);
    assert_eq!(
        condition_failed(
            t.update(
                &key,
                add(3),
                Some(at(0, Condition::CounterAtMost("used".into(), 7)))
            )
            .await
        ),
        0
    );
    // Optimistic versioning.
    let v = t
        .update(
            &key,
            Update::default().add("version", 1),
            Some(at(0, Condition::CounterEquals("version".into(), 0))),
        )
        .await
        .unwrap();
    assert_eq!(v.counter("version"), 1);
    let stale = Write::Put {
        item: item("counters", "1"),
        guard: Some(at(0, Condition::CounterEquals("version".into(), 0))),
    };
    assert_eq!(condition_failed(t.transact(vec![stale]).await), 0);
    let delete = Write::Delete {
        key: key.clone(),
        guard: Some(at(0, Condition::CounterEquals("version".into(), 1))),
    };
    t.transact(vec![delete]).await.unwrap();
    assert_eq!(t.get(&key).await.unwrap(), None);
}

async fn failed_transaction_changes_nothing(b: &Backend) {
    let t = &b.table;
    t.transact(vec![
        Write::put(item("tx", "b").with_counter("n", 1)),
        Write::put(item("tx", "c")),
    ])
    .await
    .unwrap();
    let before = t.query(&Query::table("tx")).await.unwrap();

    let writes = vec![
        Write::put_new(item("tx", "a"), "0"),
        Write::Update {
            key: Key::new("tx", "b"),
            update: Update::default().add("n", 1),
            guard: None,
        },
        Write::Check {
            key: Key::new("tx", "c"),
            guard: at(0, Condition::NotExists),
        },
        Write::delete(Key::new("tx", "c")),
    ];
    // The 4th write names "c" again: rejected before anything is checked.
    invalid(t.transact(writes.clone()).await);
    let writes = vec![
        Write::put_new(item("tx", "a"), "0"),
        Write::Update {
            key: Key::new("tx", "b"),
            update: Update::default().add("n", 1),
            guard: None,
        },
        Write::Check {
            key: Key::new("tx", "c"),
            guard: at(2, Condition::NotExists),
        },
        Write::delete(Key::new("tx", "d")),
    ];
    assert_eq!(condition_failed(t.transact(writes).await), 2);
    assert_eq!(t.query(&Query::table("tx")).await.unwrap(), before);

    // Several failing writes: the first is reported.
    let writes = vec![
        Write::put(item("tx", "a")),
        Write::Check {
            key: Key::new("tx", "b"),
            guard: at(1, Condition::CounterEquals("n".into(), 9)),
        },
        Write::Check {
            key: Key::new("tx", "c"),
            guard: at(2, Condition::NotExists),
        },
    ];
    assert_eq!(condition_failed(t.transact(writes).await), 1);
    assert_eq!(t.query(&Query::table("tx")).await.unwrap(), before);
}

async fn transaction_applies_every_kind_of_write(b: &Backend) {
    let t = &b.table;
    t.transact(vec![
        Write::put(item("tx2", "upd").with_counter("n", 1)),
        Write::put(item("tx2", "del")),
        Write::put(item("tx2", "chk")),
    ])
    .await
    .unwrap();
    t.transact(vec![
        Write::put_new(item("tx2", "new"), "0"),
        Write::Update {
            key: Key::new("tx2", "upd"),
            update: Update::body(json!("u")).add("n", 2),
            guard: Some(at(0, Condition::CounterEquals("n".into(), 1))),
        },
        Write::Delete {
            key: Key::new("tx2", "del"),
            guard: Some(at(0, Condition::Exists)),
        },
        Write::Check {
            key: Key::new("tx2", "chk"),
            guard: at(0, Condition::Exists),
        },
        Write::Update {
            key: Key::new("tx2", "created"),
            update: Update::default().add("n", 5),
            guard: None,
        },
    ])
    .await
    .unwrap();
    let page = t.query(&Query::table("tx2")).await.unwrap();
    assert_eq!(keys(&page.items), ["chk", "created", "new", "upd"]);
    let upd = t.get(&Key::new("tx2", "upd")).await.unwrap().unwrap();
    assert_eq!((&*upd.body, upd.counter("n")), (&json!("u"), 3));
    let created = t.get(&Key::new("tx2", "created")).await.unwrap().unwrap();
    assert_eq!((&*created.body, created.counter("n")), (&json!(null), 5));

    // Exactly the limit is fine.
    let writes: Vec<Write> = (0..MAX_TRANSACTION_WRITES)
        .map(|i| Write::put(item("tx3", &format!("{i:03}"))))
        .collect();
    t.transact(writes).await.unwrap();
    assert_eq!(
        t.query(&Query::table("tx3").limit(1000))
            .await
            .unwrap()
            .items
            .len(),
        MAX_TRANSACTION_WRITES
    );
}

async fn invalid_requests(b: &Backend) {
    let t = &b.table;
    let too_many: Vec<Write> = (0..=MAX_TRANSACTION_WRITES)
        .map(|i| Write::put(item("big", &format!("{i:03}"))))
        .collect();
    invalid(t.transact(too_many).await);
    assert!(
        t.query(&Query::table("big"))
            .await
            .unwrap()
            .items
            .is_empty()
    );

    invalid(
        t.transact(vec![
            Write::put(item("dup", "1")),
            Write::delete(Key::new("dup", "1")),
        ])
        .await,
    );
    invalid(t.transact(vec![Write::put(item("", "1"))]).await);
    invalid(t.transact(vec![Write::put(item("x", ""))]).await);
    invalid(
        t.transact(vec![Write::put(
            item("x", "1").with_gsi1(IndexKey::new("", "a")),
        )])
        .await,
    );
    invalid(
        t.update(&Key::new("x", ""), Update::default().add("n", 1), None)
            .await,
    );

    // DynamoDB's 400 KB item limit.
    let huge = Item::new(Key::new("huge", "1"), json!("x".repeat(410 * 1024)));
    invalid(t.transact(vec![Write::put(huge)]).await);
    invalid(
        t.update(
            &Key::new("huge", "2"),
            Update::body(json!("y".repeat(410 * 1024))),
            None,
        )
        .await,
    );
    assert_eq!(t.get(&Key::new("huge", "2")).await.unwrap(), None);

    invalid(t.get(&Key::new("x", "")).await);
    invalid(t.get_many(&[Key::new("x", "1"), Key::new("", "1")]).await);

    invalid(t.query(&Query::table("")).await);
    invalid(t.query(&Query::table("x").limit(0)).await);
    invalid(
        t.query(&Query::table("x").range(SortRange::Between("b".into(), "a".into())))
            .await,
    );
    // A cursor of another partition, outside the range, or without the index key.
    let foreign = Cursor {
        pk: "y".into(),
        sk: "1".into(),
        index: None,
    };
    invalid(
        t.query(&Query::table("x").start_after(Some(foreign.clone())))
            .await,
    );
    let outside = Cursor {
        pk: "x".into(),
        sk: "c".into(),
        index: None,
    };
    invalid(
        t.query(
            &Query::table("x")
                .range(SortRange::BeginsWith("a".into()))
                .start_after(Some(outside)),
        )
        .await,
    );
    invalid(
        t.query(&Query::index(Index::Gsi1, "y").start_after(Some(foreign)))
            .await,
    );
}

async fn update_counters(b: &Backend) {
    let t = &b.table;
    let key = Key::new("box", "1");
    // A missing item is created: null body, counters from 0.
    let created = t
        .update(&key, Update::default().add("uid", 1).add("size", 100), None)
        .await
        .unwrap();
    assert_eq!(
        created,
        Item::new(key.clone(), json!(null))
            .with_counter("uid", 1)
            .with_counter("size", 100)
    );
    let next = t
        .update(&key, Update::default().add("uid", 1).add("size", -30), None)
        .await
        .unwrap();
    assert_eq!((next.counter("uid"), next.counter("size")), (2, 70));

    // Body, index keys and expiry change; the rest stays.
    let expiry = now() + 3600;
    let update = Update {
        body: Some(json!({ "name": "INBOX" })),
        gsi1: Some(Some(IndexKey::new("path", "INBOX"))),
        expires_at: Some(Some(expiry)),
        ..Update::default()
    }
    .add("uid", 0);
    let after = t.update(&key, update, None).await.unwrap();
    let expected = Item::new(key.clone(), json!({ "name": "INBOX" }))
        .with_counter("uid", 2)
        .with_counter("size", 70)
        .with_gsi1(IndexKey::new("path", "INBOX"))
        .with_expiry(expiry);
    assert_eq!(after, expected);
    assert_eq!(t.get(&key).await.unwrap(), Some(expected));

    let cleared = t
        .update(
            &key,
            Update {
                expires_at: Some(None),
                ..Update::default()
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(cleared.expires_at, None);
    assert_eq!(cleared.body, json!({ "name": "INBOX" }));

    // An empty update still creates the item.
    let empty = t
        .update(&Key::new("box", "2"), Update::default(), None)
        .await
        .unwrap();
    assert_eq!(empty, Item::new(Key::new("box", "2"), json!(null)));
    assert_eq!(t.get(&Key::new("box", "2")).await.unwrap(), Some(empty));
}

async fn concurrent_adds_are_exact(b: &Backend) {
    let key = Key::new("seq", "1");
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (t, key) = (b.table.clone(), key.clone());
            tokio::spawn(async move {
                t.update(&key, Update::default().add("uid", 1), None)
                    .await
                    .unwrap()
                    .counter("uid")
            })
        })
        .collect();
    let mut seen = BTreeSet::new();
    for task in tasks {
        seen.insert(task.await.unwrap());
    }
    // Every caller got its own value: that is what UID allocation relies on. DynamoDB
    // guarantees it, but moto serializes ALL_NEW after releasing the item, so concurrent
    // updates there may see each other's additions: only the total is checked on moto.
    if b.name != "moto" {
        assert_eq!(seen, (1..=20).collect());
    }
    assert_eq!(b.table.get(&key).await.unwrap().unwrap().counter("uid"), 20);
}

async fn concurrent_put_new_has_one_winner(b: &Backend) {
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let t = b.table.clone();
            let item = Item::new(Key::new("claim", "name"), json!(i));
            tokio::spawn(async move { t.transact(vec![Write::put_new(item, "0")]).await })
        })
        .collect();
    let mut winners = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            Ok(()) => winners.push(i),
            Err(StoreError::ConditionFailed { label: "0" }) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let stored = b
        .table
        .get(&Key::new("claim", "name"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.body, json!(winners[0]));
}

async fn expired_items_are_gone(b: &Backend) {
    let t = &b.table;
    let past = now() - 10;
    let expired = item("ttl", "old")
        .with_expiry(past)
        .with_counter("n", 7)
        .with_gsi1(IndexKey::new("ttl-index", "old"));
    let live = item("ttl", "new")
        .with_expiry(now() + 3600)
        .with_gsi1(IndexKey::new("ttl-index", "new"));
    put_all(b, [expired.clone(), live.clone()]).await;

    assert_eq!(t.get(&expired.key()).await.unwrap(), None);
    assert_eq!(
        t.get_many(&[expired.key(), live.key()]).await.unwrap(),
        vec![live.clone()]
    );
    assert_eq!(
        t.query(&Query::table("ttl")).await.unwrap().items,
        vec![live.clone()]
    );
    assert_eq!(
        t.query(&Query::index(Index::Gsi1, "ttl-index"))
            .await
            .unwrap()
            .items,
        vec![live.clone()]
    );

    // Conditions see no item.
    let exists = Write::Check {
        key: expired.key(),
        guard: at(0, Condition::Exists),
    };
    assert_eq!(condition_failed(t.transact(vec![exists]).await), 0);
    let counter = Write::Check {
        key: expired.key(),
        guard: at(0, Condition::CounterEquals("n".into(), 7)),
    };
    assert_eq!(condition_failed(t.transact(vec![counter]).await), 0);
    let delete = Write::Delete {
        key: expired.key(),
        guard: Some(at(0, Condition::Exists)),
    };
    assert_eq!(condition_failed(t.transact(vec![delete]).await), 0);
    t.transact(vec![Write::Check {
        key: expired.key(),
        guard: at(0, Condition::NotExists),
    }])
    .await
    .unwrap();

    // A new item may take its place.
    let fresh = item("ttl", "old").with_counter("m", 1);
    t.transact(vec![Write::put_new(fresh.clone(), "0")])
        .await
        .unwrap();
    assert_eq!(t.get(&fresh.key()).await.unwrap(), Some(fresh));
    assert_eq!(
        t.query(&Query::index(Index::Gsi1, "ttl-index"))
            .await
            .unwrap()
            .items,
        vec![live]
    );

    // An expiry that is now in the past hides the item at once.
    let short = item("ttl", "short").with_expiry(now());
    t.transact(vec![Write::put(short.clone())]).await.unwrap();
    assert_eq!(t.get(&short.key()).await.unwrap(), None);
}

async fn expired_items_do_not_fill_pages(b: &Backend) {
    let past = now() - 10;
    let mut items = Vec::new();
    for i in 0..30 {
        let it = item("mix", &format!("{i:02}")).with_gsi2(IndexKey::new("mix", format!("{i:02}")));
        // Two expired items for each live one.
        items.push(if i % 3 == 0 { it } else { it.with_expiry(past) });
    }
    put_all(b, items).await;
    let live: Vec<String> = (0..30)
        .filter(|i| i % 3 == 0)
        .map(|i| format!("{i:02}"))
        .collect();

    for index in [None, Some(Index::Gsi2)] {
        let query = Query {
            index,
            ..Query::table("mix")
        };
        let page = b.table.query(&query.clone().limit(4)).await.unwrap();
        assert_eq!(keys(&page.items), live[..4], "{index:?}");
        let page = b
            .table
            .query(&query.clone().limit(4).backwards())
            .await
            .unwrap();
        assert_eq!(keys(&page.items), ["27", "24", "21", "18"], "{index:?}");
        let seen = walk(&b.table, query.clone().limit(3)).await;
        assert_eq!(
            seen.iter().map(|k| k.sk.clone()).collect::<Vec<_>>(),
            live,
            "{index:?}"
        );
        let page = b.table.query(&query.limit(100)).await.unwrap();
        assert_eq!((keys(&page.items), page.next), (live.clone(), None));
    }
}

async fn update_does_not_revive_expired_items(b: &Backend) {
    let t = &b.table;
    let past = now() - 10;
    let old = item("revive", "1")
        .with_counter("hits", 41)
        .with_gsi1(IndexKey::new("revive", "1"))
        .with_expiry(past);
    let other = item("revive", "2")
        .with_counter("hits", 9)
        .with_gsi1(IndexKey::new("revive", "2"))
        .with_gsi2(IndexKey::new("x", "y"))
        .with_expiry(past);
    put_all(b, [old.clone(), other]).await;

    // A rate-limit window: the expired counter must start again from zero.
    let update = Update {
        expires_at: Some(Some(now() + 60)),
        ..Update::default()
    }
    .add("hits", 1);
    let after = t.update(&old.key(), update.clone(), None).await.unwrap();
    assert_eq!(
        after,
        Item::new(old.key(), json!(null))
            .with_counter("hits", 1)
            .with_expiry(now_close(&after))
    );
    assert!(
        t.query(&Query::index(Index::Gsi1, "revive"))
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // The same inside a transaction, next to another write; conditions see no item.
    let key2 = Key::new("revive", "2");
    let exists = Write::Update {
        key: key2.clone(),
        update: update.clone(),
        guard: Some(at(1, Condition::Exists)),
    };
    assert_eq!(
        condition_failed(
            t.transact(vec![Write::put(item("revive", "3")), exists])
                .await
        ),
        1
    );
    assert_eq!(t.get(&Key::new("revive", "3")).await.unwrap(), None);
    let fresh = Write::Update {
        key: key2.clone(),
        update: update.clone(),
        guard: Some(at(0, Condition::NotExists)),
    };
    t.transact(vec![Write::put(item("revive", "3")), fresh])
        .await
        .unwrap();
    let after = t.get(&key2).await.unwrap().unwrap();
    assert_eq!(
        (
            after.counter("hits"),
            after.gsi1,
            after.gsi2,
            after.body.into_value()
        ),
        (1, None, None, json!(null))
    );
    assert!(t.get(&Key::new("revive", "3")).await.unwrap().is_some());
}

/// The expiry an update set, checked to be about a minute away.
fn now_close(item: &Item) -> i64 {
    let at = item.expires_at.expect("an expiry");
    assert!((now() + 50..=now() + 70).contains(&at), "{at}");
    at
}

async fn index_keys_move_and_disappear(b: &Backend) {
    let t = &b.table;
    let key = Key::new("idx", "1");
    t.transact(vec![Write::put(
        item("idx", "1")
            .with_gsi1(IndexKey::new("a", "1"))
            .with_gsi2(IndexKey::new("b", "1")),
    )])
    .await
    .unwrap();
    let in_index = |index, pk: &'static str| {
        let t = t.clone();
        async move { keys(&t.query(&Query::index(index, pk)).await.unwrap().items) }
    };
    assert_eq!(in_index(Index::Gsi1, "a").await, ["1"]);

    // Moving the key.
    t.update(
        &key,
        Update {
            gsi1: Some(Some(IndexKey::new("a2", "9"))),
            ..Update::default()
        },
        None,
    )
    .await
    .unwrap();
    assert!(in_index(Index::Gsi1, "a").await.is_empty());
    assert_eq!(in_index(Index::Gsi1, "a2").await, ["1"]);
    assert_eq!(
        in_index(Index::Gsi2, "b").await,
        ["1"],
        "the other index is untouched"
    );

    // Removing it, in a transaction too.
    t.update(
        &key,
        Update {
            gsi1: Some(None),
            ..Update::default()
        },
        None,
    )
    .await
    .unwrap();
    assert!(in_index(Index::Gsi1, "a2").await.is_empty());
    let remove = Update {
        gsi2: Some(None),
        ..Update::default()
    };
    t.transact(vec![Write::Update {
        key: key.clone(),
        update: remove,
        guard: Some(at(0, Condition::Exists)),
    }])
    .await
    .unwrap();
    assert!(in_index(Index::Gsi2, "b").await.is_empty());
    let stored = t.get(&key).await.unwrap().unwrap();
    assert_eq!((stored.gsi1, stored.gsi2), (None, None));

    // Deleting the item removes it from the index.
    t.update(
        &key,
        Update {
            gsi2: Some(Some(IndexKey::new("b", "2"))),
            ..Update::default()
        },
        None,
    )
    .await
    .unwrap();
    assert_eq!(in_index(Index::Gsi2, "b").await, ["1"]);
    t.transact(vec![Write::delete(key)]).await.unwrap();
    assert!(in_index(Index::Gsi2, "b").await.is_empty());
}

async fn blobs(b: &Backend) {
    let s = &b.blobs;
    let key = "messages/2024/abc.eml";
    assert_eq!(s.get(key).await.unwrap(), None);
    assert_eq!(s.get_range(key, 0..10).await.unwrap(), None);
    assert_eq!(s.get_range(key, 3..3).await.unwrap(), None);

    let data = Bytes::from_static(b"0123456789");
    s.put(key, data.clone()).await.unwrap();
    assert_eq!(s.get(key).await.unwrap(), Some(data.clone()));
    assert_eq!(s.get_range(key, 0..10).await.unwrap(), Some(data.clone()));
    assert_eq!(s.get_range(key, 2..5).await.unwrap().unwrap(), &b"234"[..]);
    assert_eq!(
        s.get_range(key, 7..100).await.unwrap().unwrap(),
        &b"789"[..]
    );
    assert_eq!(s.get_range(key, 9..10).await.unwrap().unwrap(), &b"9"[..]);
    assert_eq!(s.get_range(key, 10..20).await.unwrap().unwrap(), &b""[..]);
    assert_eq!(s.get_range(key, 50..60).await.unwrap().unwrap(), &b""[..]);
    assert_eq!(s.get_range(key, 4..4).await.unwrap().unwrap(), &b""[..]);

    // Overwrite, binary content, an empty blob.
    let binary = Bytes::from((0..=255u8).cycle().take(100_000).collect::<Vec<u8>>());
    s.put(key, binary.clone()).await.unwrap();
    assert_eq!(s.get(key).await.unwrap(), Some(binary.clone()));
    assert_eq!(
        s.get_range(key, 99_990..100_000).await.unwrap().unwrap(),
        binary.slice(99_990..)
    );
    s.put("empty", Bytes::new()).await.unwrap();
    assert_eq!(s.get("empty").await.unwrap(), Some(Bytes::new()));
    assert_eq!(
        s.get_range("empty", 0..10).await.unwrap(),
        Some(Bytes::new())
    );

    s.delete(key).await.unwrap();
    assert_eq!(s.get(key).await.unwrap(), None);
    s.delete(key).await.unwrap();
    s.delete("never/was").await.unwrap();
    // A prefix of a key is no blob.
    s.put("dir/file", data.clone()).await.unwrap();
    assert_eq!(s.get("dir").await.unwrap(), None);

    for bad in ["", "/etc/passwd", "../outside", "a/../../b", "a//b"] {
        invalid(s.put(bad, data.clone()).await);
        invalid(s.get(bad).await);
        invalid(s.delete(bad).await);
    }
}
