//! Paging over the table: which page a listing asks for, the walks that fetch one page (one
//! partition, or several index partitions in a fixed order), and the cursors to move on.
//!
//! Listings that span several partitions (every user, every address) are served by
//! [`walk_buckets`]: the index partitions are visited in a fixed order, each as a key range,
//! so a page costs one query per partition it touches and never a table scan.
//!
//! # Cursors
//!
//! A client holds a position as a token of `[A-Za-z0-9_-]`, at most 100 characters
//! (WildDuck's web client refuses longer ones). The token holds only what the listing's
//! partition does not fix: the sort key within a message listing, say, but not the user and
//! mailbox (those come from the request's path), as base64url JSON after a `c`. So a token
//! can never lead into another partition, and stays short. A position that would still be
//! longer (a long username in the user listing) is stored for a day
//! ([`keys::stored_cursor`]) and the token is `s` and its name.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::error::{DomainError, DomainResult};
use super::keys;
use crate::store::{Cursor, Index, Item, Query, SortRange, StoreResult, Table, Write};

/// The longest cursor token a listing answers.
pub const MAX_TOKEN_CHARS: usize = 100;
/// How long a stored cursor lasts.
const STORED_CURSOR_SECONDS: i64 = 24 * 3600;

/// Which page a listing asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct PageRequest {
    pub limit: usize,
    pub direction: Direction,
    /// The page number the caller says this is; echoed back.
    pub page: u64,
}

/// Where a page starts: at the beginning, or after / before a position the client holds (a
/// token, see the module's comment).
#[derive(Debug, Clone, PartialEq)]
pub enum Direction {
    First,
    After(String),
    Before(String),
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

/// A page of results with the cursor tokens to move on.
#[derive(Debug, Clone, PartialEq)]
pub struct PageResult<T = Item> {
    pub items: Vec<T>,
    pub next: Option<String>,
    pub previous: Option<String>,
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

/// The partition a listing's positions are written relative to: one partition of the table
/// or of `index` (`pk`), or, when `pk` is `None`, several partitions of `index` (each token then
/// names its own, and the walk checks it is one of the listing's).
#[derive(Debug, Clone, Copy)]
pub struct Positions<'a> {
    pub index: Option<Index>,
    pub pk: Option<&'a str>,
}

/// The token of `cursor` (see the module's comment).
pub async fn encode_cursor(
    table: &dyn Table,
    positions: Positions<'_>,
    cursor: &Cursor,
) -> StoreResult<String> {
    let parts = match (&cursor.index, positions.pk) {
        (None, _) => json!([cursor.sk]),
        (Some((_, isk)), Some(_)) => json!([isk, cursor.pk, cursor.sk]),
        (Some((ipk, isk)), None) => json!([ipk, isk, cursor.pk, cursor.sk]),
    };
    let compact = URL_SAFE_NO_PAD.encode(parts.to_string());
    if compact.len() < MAX_TOKEN_CHARS {
        return Ok(format!("c{compact}"));
    }
    let full = serde_json::to_string(cursor).unwrap_or_default();
    let digest = Sha256::digest(format!("{}\n{full}", positions.pk.unwrap_or("")).as_bytes());
    let name = URL_SAFE_NO_PAD.encode(&digest[..18]);
    let item = Item::new(
        keys::stored_cursor(&name),
        json!({ "partition": positions.pk, "cursor": cursor }),
    )
    .with_expiry(super::unix_now() + STORED_CURSOR_SECONDS);
    table.transact(vec![Write::put(item)]).await?;
    Ok(format!("s{name}"))
}

/// The position a token names, or `None` when it is not a token of this listing.
pub async fn decode_cursor(
    table: &dyn Table,
    positions: Positions<'_>,
    token: &str,
) -> StoreResult<Option<Cursor>> {
    if let Some(name) = token.strip_prefix('s') {
        if name.is_empty() || name.len() > 64 {
            return Ok(None);
        }
        let Some(item) = table.get(&keys::stored_cursor(name)).await? else {
            return Ok(None);
        };
        if item.body["partition"].as_str() != positions.pk {
            return Ok(None);
        }
        return Ok(serde_json::from_value(item.body["cursor"].clone()).ok());
    }
    Ok(decode_compact(positions, token))
}

/// The position a compact (`c…`) token names in this listing, or `None`: pure, no storage.
pub fn decode_compact(positions: Positions<'_>, token: &str) -> Option<Cursor> {
    let text = |v: &serde_json::Value| v.as_str().map(str::to_string);
    let parts = token
        .strip_prefix('c')
        .and_then(|t| URL_SAFE_NO_PAD.decode(t).ok())
        .and_then(|bytes| serde_json::from_slice::<Vec<serde_json::Value>>(&bytes).ok())?;
    let parts: Option<Vec<String>> = parts.iter().map(text).collect();
    match (parts.as_deref(), positions.index, positions.pk) {
        (Some([sk]), None, Some(pk)) => Some(Cursor {
            pk: pk.to_string(),
            sk: sk.clone(),
            index: None,
        }),
        (Some([isk, pk, sk]), Some(_), Some(ipk)) => Some(Cursor {
            pk: pk.clone(),
            sk: sk.clone(),
            index: Some((ipk.to_string(), isk.clone())),
        }),
        (Some([ipk, isk, pk, sk]), Some(_), None) => Some(Cursor {
            pk: pk.clone(),
            sk: sk.clone(),
            index: Some((ipk.clone(), isk.clone())),
        }),
        _ => None,
    }
}

impl PageRequest {
    /// Where the page starts (`None`: at the beginning) and whether it walks backwards; an
    /// error when the token is not one of this listing's.
    pub async fn start(
        &self,
        table: &dyn Table,
        positions: Positions<'_>,
    ) -> DomainResult<(Option<Cursor>, bool)> {
        let (token, backwards) = match &self.direction {
            Direction::First => return Ok((None, false)),
            Direction::After(t) => (t, false),
            Direction::Before(t) => (t, true),
        };
        match decode_cursor(table, positions, token).await? {
            Some(cursor) => Ok((Some(cursor), backwards)),
            None => Err(self.invalid_cursor()),
        }
    }
}

/// A fetched window as a page with WildDuck's flags: `fetched` holds up to `limit + 1` items
/// in display order, already reversed for a `Before` request.
pub async fn finish_page(
    table: &dyn Table,
    positions: Positions<'_>,
    mut fetched: Vec<Item>,
    request: &PageRequest,
) -> StoreResult<PageResult> {
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
    let token = |item: Option<&Item>| {
        let cursor = item.map(|i| Cursor::of(i, positions.index));
        async move {
            match cursor {
                Some(c) => encode_cursor(table, positions, &c).await.map(Some),
                None => Ok(None),
            }
        }
    };
    let next = token(fetched.last().filter(|_| has_next)).await?;
    let previous = token(fetched.first().filter(|_| has_previous)).await?;
    Ok(PageResult {
        items: fetched,
        next,
        previous,
    })
}

/// How many items a page's next query asks for when it still misses `missing`: unfiltered,
/// exactly those (the page's last one tells whether there is more); filtered, at least 50, as
/// some will be left out.
fn batch_size(missing: usize, filtered: bool) -> usize {
    if filtered { missing.max(50) } else { missing }
}

/// What a bucket walk read on its way: how many items, how many passed `keep`, and whether it
/// reached the end of the listing (in its direction) before the page was full.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WalkStats {
    pub scanned: u64,
    pub matched: u64,
    pub exhausted: bool,
}

/// One page of a listing over several index partitions (`buckets`, in display order), keeping
/// only items that pass `keep`. A cursor naming a partition not in `buckets` is refused, so a
/// cursor can never reach other data.
pub async fn walk_buckets(
    table: &dyn Table,
    index: Index,
    buckets: &[String],
    request: &PageRequest,
    keep: Option<&(dyn Fn(&Item) -> bool + Sync)>,
) -> DomainResult<PageResult> {
    Ok(walk_buckets_counted(table, index, buckets, request, keep)
        .await?
        .0)
}

/// [`walk_buckets`], and what it read on the way (for [`estimate_total`]). Buckets are read in
/// rounds of 1, 2, 4, 8, ... at once, until the page is full: a page that fills in the first
/// bucket costs one query, whatever the number of buckets.
pub async fn walk_buckets_counted(
    table: &dyn Table,
    index: Index,
    buckets: &[String],
    request: &PageRequest,
    keep: Option<&(dyn Fn(&Item) -> bool + Sync)>,
) -> DomainResult<(PageResult, WalkStats)> {
    let positions = Positions {
        index: Some(index),
        pk: None,
    };
    let (start, backwards) = request.start(table, positions).await?;
    let forward = !backwards;
    let start_bucket = match &start {
        None => 0,
        Some(cursor) => {
            let bucket = cursor
                .index
                .as_ref()
                .and_then(|(pk, _)| buckets.iter().position(|b| b == pk));
            match bucket {
                Some(i) => i,
                None => return Err(request.invalid_cursor()),
            }
        }
    };
    let order: Vec<usize> = if forward {
        (start_bucket..buckets.len()).collect()
    } else {
        (0..=start_bucket).rev().collect()
    };
    let want = request.limit + 1;
    let query = |bucket: usize, after: Option<Cursor>, limit: usize| {
        Query::index(index, buckets[bucket].clone())
            .range(SortRange::All)
            .forward(forward)
            .limit(batch_size(limit, keep.is_some()))
            .start_after(after)
    };
    let mut stats = WalkStats::default();
    let mut fetched = Vec::new();
    let mut done = 0;
    let mut round = 1;
    'rounds: while done < order.len() {
        let group: Vec<(usize, usize)> = order
            .iter()
            .copied()
            .enumerate()
            .skip(done)
            .take(round)
            .collect();
        let queries: Vec<Query> = group
            .iter()
            .map(|&(n, bucket)| {
                let after = if n == 0 { start.clone() } else { None };
                query(bucket, after, want - fetched.len())
            })
            .collect();
        let firsts = futures::future::try_join_all(queries.iter().map(|q| table.query(q))).await?;
        for ((_, bucket), first) in group.iter().copied().zip(firsts) {
            let mut page = first;
            loop {
                for item in page.items {
                    stats.scanned += 1;
                    if keep.is_none_or(|keep| keep(&item)) {
                        stats.matched += 1;
                        if fetched.len() < want {
                            fetched.push(item);
                        }
                    }
                }
                if fetched.len() == want {
                    break 'rounds;
                }
                match page.next {
                    Some(next) => {
                        page = table
                            .query(&query(bucket, Some(next), want - fetched.len()))
                            .await?
                    }
                    None => break,
                }
            }
        }
        done += group.len();
        round *= 2;
    }
    stats.exhausted = fetched.len() < want;
    if !forward {
        fetched.reverse();
    }
    Ok((
        finish_page(table, positions, fetched, request).await?,
        stats,
    ))
}

/// The `total` of a filtered listing over `population` items (its counter), from what one page's
/// walk read instead of reading every item: exact when the walk read the whole listing from
/// its start (or, forward from a cursor, the rest of it, the pages before counted as full);
/// otherwise the share of matches among the items read applied to the population, never less
/// than the pages up to this one and the one after it hold. WildDuck's clients use `total` to
/// show the number of pages.
pub fn estimate_total(request: &PageRequest, stats: WalkStats, population: u64) -> u64 {
    let before = request.page.saturating_sub(1) * request.limit as u64;
    if stats.exhausted {
        match request.direction {
            Direction::First => return stats.matched,
            Direction::After(_) => return before + stats.matched,
            Direction::Before(_) => {}
        }
    }
    let share = if stats.scanned == 0 {
        0.0
    } else {
        stats.matched as f64 / stats.scanned as f64
    };
    let estimate = (share * population as f64).round() as u64;
    let at_least = before + stats.matched.min(request.limit as u64 + 1);
    estimate.max(at_least)
}

/// A page of a listing over the gsi1 `buckets` and its `total`, for a listing of `population`
/// items (its counter). Unfiltered, the counter is the total. With a filter (`keep`), the page
/// reads buckets only until it is full and the total is [`estimate_total`]; with nothing in
/// the listing at all, nothing is read.
pub async fn bucketed_page(
    table: &dyn Table,
    buckets: &[String],
    request: &PageRequest,
    filter: Option<&(dyn Fn(&Item) -> bool + Sync)>,
    population: u64,
) -> DomainResult<(u64, PageResult)> {
    let Some(keep) = filter else {
        let page = walk_buckets(table, Index::Gsi1, buckets, request, None).await?;
        return Ok((population, page));
    };
    if population == 0 {
        // The counter changes in the transaction of every create and delete.
        let empty = PageResult {
            items: Vec::new(),
            next: None,
            previous: None,
        };
        return Ok((0, empty));
    }
    let (page, walked) =
        walk_buckets_counted(table, Index::Gsi1, buckets, request, Some(keep)).await?;
    Ok((estimate_total(request, walked, population), page))
}

/// One page of a listing inside one partition of the table: the items of `pk` whose sort key
/// starts with `prefix`, in sort-key order (`descending`: newest first for time-ordered ids),
/// keeping only items that pass `keep`. A cursor outside that range is refused, so a cursor
/// can never reach another partition.
pub async fn walk_partition(
    table: &dyn Table,
    pk: &str,
    prefix: &str,
    descending: bool,
    request: &PageRequest,
    keep: Option<&(dyn Fn(&Item) -> bool + Sync)>,
) -> DomainResult<PageResult> {
    let positions = Positions {
        index: None,
        pk: Some(pk),
    };
    let (start, backwards) = request.start(table, positions).await?;
    if start.as_ref().is_some_and(|c| !c.sk.starts_with(prefix)) {
        return Err(request.invalid_cursor());
    }
    // Walking backwards through the display order is walking the other way through the keys.
    let forward = descending == backwards;
    let want = request.limit + 1;
    let mut fetched = Vec::new();
    let mut after = start;
    loop {
        let query = Query::table(pk)
            .range(SortRange::BeginsWith(prefix.to_string()))
            .forward(forward)
            .limit(batch_size(want - fetched.len(), keep.is_some()))
            .start_after(after.take());
        let page = table.query(&query).await?;
        for item in page.items {
            if keep.is_none_or(|keep| keep(&item)) {
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
    Ok(finish_page(table, positions, fetched, request).await?)
}

/// Counts the items `query` reaches (every page) that pass `keep`.
async fn count_matching(
    table: &dyn Table,
    mut query: Query,
    keep: &(dyn Fn(&Item) -> bool + Sync),
) -> StoreResult<u64> {
    let mut total = 0;
    loop {
        let page = table.query(&query).await?;
        total += page.items.iter().filter(|i| keep(i)).count() as u64;
        match page.next {
            Some(next) => query = query.start_after(Some(next)),
            None => return Ok(total),
        }
    }
}

/// A page of a small partition's items under `prefix` that pass `keep` (in sort key order),
/// decoded, and how many pass in all (the listing's `total`): the shape of the operator
/// listings (DKIM keys, domain aliases, webhooks).
pub async fn page_and_total<T>(
    table: &dyn Table,
    pk: &str,
    prefix: &str,
    request: &PageRequest,
    keep: &(dyn Fn(&Item) -> bool + Sync),
    decode: impl Fn(&Item) -> DomainResult<T>,
) -> DomainResult<(u64, PageResult<T>)> {
    let page = walk_partition(table, pk, prefix, false, request, Some(keep)).await?;
    let total = count_partition(table, pk, prefix, keep).await?;
    Ok((total, page.decode(decode)?))
}

/// Counts the items of one partition range that pass `keep` (the `total` of a listing that
/// has no counter: its cost grows with the partition; see data-model.md).
pub async fn count_partition(
    table: &dyn Table,
    pk: &str,
    prefix: &str,
    keep: &(dyn Fn(&Item) -> bool + Sync),
) -> StoreResult<u64> {
    let query = Query::table(pk)
        .range(SortRange::BeginsWith(prefix.to_string()))
        .limit(500);
    count_matching(table, query, keep).await
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
