//! Paging over the table: which page a listing asks for, and the walks that fetch one page
//! (one partition, or several index partitions in a fixed order) with the cursors to move on.
//! The wire format (`limit`, `next`, `previous`, cursor strings) is `crate::http::paging`'s.
//!
//! Listings that span several partitions (every user, every address) are served by
//! [`walk_buckets`]: the index partitions are visited in a fixed order, each as a key range,
//! so a page costs one query per partition it touches and never a table scan.

use super::error::{DomainError, DomainResult};
use crate::store::{Cursor, Index, Item, Query, SortRange, StoreResult, Table};

/// Which page a listing asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct PageRequest {
    pub limit: usize,
    pub direction: Direction,
    /// The page number the caller says this is; echoed back.
    pub page: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Direction {
    First,
    After(Cursor),
    Before(Cursor),
}

impl PageRequest {
    /// The cursor error of this request (a cursor that names no partition of the listing).
    pub fn invalid_cursor(&self) -> DomainError {
        let field = match self.direction {
            Direction::Before(_) => "previous",
            _ => "next",
        };
        DomainError::invalid(field, format!("\"{field}\" contains an invalid value"))
    }
}

/// A page of results with the cursors to move on.
#[derive(Debug, Clone, PartialEq)]
pub struct PageResult<T = Item> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
    pub previous: Option<Cursor>,
}

impl PageResult {
    /// The same page with each item decoded into what it stores.
    pub fn decode<T>(
        self,
        decode: impl Fn(&Item) -> DomainResult<T>,
    ) -> DomainResult<PageResult<T>> {
        Ok(PageResult {
            items: self.items.iter().map(decode).collect::<DomainResult<_>>()?,
            next: self.next,
            previous: self.previous,
        })
    }
}

/// Turns a fetched window into a page with WildDuck's flags: `fetched` holds up to `limit + 1`
/// items in display order, already reversed for a `Before` request.
fn finish_page(mut fetched: Vec<Item>, request: &PageRequest, index: Option<Index>) -> PageResult {
    let more = fetched.len() > request.limit;
    if more {
        match request.direction {
            // Walking backwards, the extra item is the one furthest back: the first.
            Direction::Before(_) => {
                fetched.remove(0);
            }
            _ => fetched.truncate(request.limit),
        }
    }
    let (has_next, has_previous) = match request.direction {
        Direction::First => (more, false),
        Direction::After(_) => (more, true),
        Direction::Before(_) => (true, more),
    };
    let next = fetched
        .last()
        .filter(|_| has_next)
        .map(|i| Cursor::of(i, index));
    let previous = fetched
        .first()
        .filter(|_| has_previous)
        .map(|i| Cursor::of(i, index));
    PageResult {
        items: fetched,
        next,
        previous,
    }
}

/// One page of a listing over several index partitions (`buckets`, in display order), keeping
/// only items that pass `keep`. A cursor naming a partition not in `buckets` is refused (the
/// caller answers 400), so a cursor can never reach other data.
pub async fn walk_buckets(
    table: &dyn Table,
    index: Index,
    buckets: &[String],
    request: &PageRequest,
    keep: &(dyn Fn(&Item) -> bool + Sync),
) -> StoreResult<Option<PageResult>> {
    let (start, forward) = match &request.direction {
        Direction::First => (None, true),
        Direction::After(c) => (Some(c), true),
        Direction::Before(c) => (Some(c), false),
    };
    let start_bucket = match start {
        None => 0,
        Some(cursor) => {
            let Some((pk, _)) = &cursor.index else {
                return Ok(None);
            };
            match buckets.iter().position(|b| b == pk) {
                Some(i) => i,
                None => return Ok(None),
            }
        }
    };
    let order: Vec<usize> = if forward {
        (start_bucket..buckets.len()).collect()
    } else {
        (0..=start_bucket).rev().collect()
    };
    let want = request.limit + 1;
    let mut fetched = Vec::new();
    'buckets: for (n, bucket) in order.into_iter().enumerate() {
        let mut after = if n == 0 { start.cloned() } else { None };
        loop {
            let query = Query::index(index, buckets[bucket].clone())
                .range(SortRange::All)
                .forward(forward)
                .limit((want - fetched.len()).max(50))
                .start_after(after.take());
            let page = table.query(&query).await?;
            for item in page.items {
                if keep(&item) {
                    fetched.push(item);
                    if fetched.len() == want {
                        break 'buckets;
                    }
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    if !forward {
        fetched.reverse();
    }
    Ok(Some(finish_page(fetched, request, Some(index))))
}

/// One page of a listing inside one partition of the table: the items of `pk` whose sort key
/// starts with `prefix`, in sort-key order (`descending`: newest first for time-ordered ids),
/// keeping only items that pass `keep`. A cursor outside that range is refused (`None`; the
/// caller answers 400), so a cursor can never reach another partition.
pub async fn walk_partition(
    table: &dyn Table,
    pk: &str,
    prefix: &str,
    descending: bool,
    request: &PageRequest,
    keep: &(dyn Fn(&Item) -> bool + Sync),
) -> StoreResult<Option<PageResult>> {
    let (start, backwards) = match &request.direction {
        Direction::First => (None, false),
        Direction::After(c) => (Some(c), false),
        Direction::Before(c) => (Some(c), true),
    };
    if let Some(cursor) = start
        && (cursor.index.is_some() || cursor.pk != pk || !cursor.sk.starts_with(prefix))
    {
        return Ok(None);
    }
    // Walking backwards through the display order is walking the other way through the keys.
    let forward = descending == backwards;
    let want = request.limit + 1;
    let mut fetched = Vec::new();
    let mut after = start.cloned();
    loop {
        let query = Query::table(pk)
            .range(SortRange::BeginsWith(prefix.to_string()))
            .forward(forward)
            .limit((want - fetched.len()).max(50))
            .start_after(after.take());
        let page = table.query(&query).await?;
        for item in page.items {
            if keep(&item) {
                fetched.push(item);
                if fetched.len() == want {
                    break;
                }
            }
        }
        match page.next {
            Some(next) if fetched.len() < want => after = Some(next),
            _ => break,
        }
    }
    if backwards {
        fetched.reverse();
    }
    Ok(Some(finish_page(fetched, request, None)))
}

/// Counts the items of one partition range that pass `keep` (the `total` of a listing that
/// has no counter: its cost grows with the partition; see data-model.md).
pub async fn count_partition(
    table: &dyn Table,
    pk: &str,
    prefix: &str,
    keep: &(dyn Fn(&Item) -> bool + Sync),
) -> StoreResult<u64> {
    let mut total = 0;
    let mut after = None;
    loop {
        let query = Query::table(pk)
            .range(SortRange::BeginsWith(prefix.to_string()))
            .limit(500)
            .start_after(after.take());
        let page = table.query(&query).await?;
        total += page.items.iter().filter(|i| keep(i)).count() as u64;
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    Ok(total)
}

/// Counts the items of every bucket that pass `keep` (the `total` of a filtered listing: it
/// reads every item of the listing, so its cost grows with the listing; see data-model.md).
pub async fn count_buckets(
    table: &dyn Table,
    index: Index,
    buckets: &[String],
    keep: &(dyn Fn(&Item) -> bool + Sync),
) -> StoreResult<u64> {
    let mut total = 0;
    for bucket in buckets {
        let mut after = None;
        loop {
            let query = Query::index(index, bucket.clone())
                .limit(500)
                .start_after(after.take());
            let page = table.query(&query).await?;
            total += page.items.iter().filter(|i| keep(i)).count() as u64;
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    Ok(total)
}

/// The bucket of a name in a bucketed listing: its first character when that is a lowercase
/// ASCII letter or digit, `_` otherwise. Listing order is the bucket order of
/// [`bucket_names`], then the name.
pub fn bucket_of(name: &str) -> char {
    match name.chars().next() {
        Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit() => c,
        _ => '_',
    }
}

/// All buckets, in listing order (byte order of their characters).
pub fn bucket_names(prefix: &str) -> Vec<String> {
    let mut chars: Vec<char> = ('0'..='9')
        .chain(std::iter::once('_'))
        .chain('a'..='z')
        .collect();
    chars.sort_unstable();
    chars.into_iter().map(|c| format!("{prefix}{c}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_in_byte_order() {
        let names = bucket_names("U#");
        assert_eq!(names.len(), 37);
        assert!(names.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(bucket_of("alice"), 'a');
        assert_eq!(bucket_of("-x"), '_');
        assert_eq!(bucket_of("õnne"), '_');
    }
}
