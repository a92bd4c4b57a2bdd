//! `PUT /addresses/renameDomain` (WildDuck's): every address on a domain moves to another
//! (users' addresses, wildcards and forwarded addresses; a user's main address with it), and
//! so do the domain's DKIM key and the aliases that point to it.
//!
//! Each address moves in its own transaction (its claim moved with it), so a rename that
//! stops half-way leaves every address whole on one domain or the other, and running it again
//! finishes it. An address whose new spelling is taken stays where it is and is counted in
//! `skipped` (WildDuck stops with a 500 there, after a partial rename).

use super::addresses::{self, AddressChanges, ListedAddress};
use super::forwarded::{self, ForwardedChanges};
use super::paging::bucket_names;
use super::webhooks;
use super::{AppState, DomainError, DomainResult, dkim, domain_aliases, keys, names};
use crate::store::{Index, Query, query_all};

/// What a domain rename changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DomainRenamed {
    pub addresses: u64,
    pub users: u64,
    pub dkim: u64,
    pub aliases: u64,
    /// Addresses left on the old domain because their new spelling was taken.
    pub skipped: u64,
}

fn domain_of(field: &str, value: &str) -> DomainResult<String> {
    names::normalize_domain(value).ok_or_else(|| {
        DomainError::invalid(field, format!("\"{field}\" must be a valid domain name"))
    })
}

/// Renames `old_domain` to `new_domain` everywhere it is used. The address listing is read in
/// full to find the domain's addresses: the cost grows with the number of addresses.
pub async fn rename(
    state: &AppState,
    old_domain: &str,
    new_domain: &str,
) -> DomainResult<DomainRenamed> {
    let old = domain_of("oldDomain", old_domain)?;
    let new = domain_of("newDomain", new_domain)?;
    let mut renamed = DomainRenamed::default();
    if old == new {
        return Ok(renamed);
    }
    let suffix = format!("@{old}");
    for bucket in bucket_names(keys::ADDRS_BUCKET_PREFIX) {
        let items = query_all(
            state.table.as_ref(),
            Query::index(Index::Gsi1, bucket).limit(500),
        )
        .await?;
        for item in &items {
            let Ok(listed) = addresses::listed_from_item(item) else {
                continue;
            };
            let result = match &listed {
                ListedAddress::User(a) if a.addrview.ends_with(&suffix) => {
                    let local = &a.address[..a.address.len() - suffix.len()];
                    let owner = super::users::load(state, &a.user).await?;
                    let was_main = owner.user.address.as_deref() == Some(a.address.as_str());
                    let changes = AddressChanges {
                        name: None,
                        rename: Some(format!("{local}@{new}")),
                        make_main: false,
                        tags: None,
                        meta_data: None,
                        internal_data: None,
                        rename_wildcard: true,
                    };
                    addresses::update(state, &a.user, &a.id, changes)
                        .await
                        .map(|()| was_main)
                }
                ListedAddress::Forwarded(f) if f.addrview.ends_with(&suffix) => {
                    let local = &f.address[..f.address.len() - suffix.len()];
                    let changes = ForwardedChanges {
                        address: Some(format!("{local}@{new}")),
                        ..Default::default()
                    };
                    forwarded::update(state, &f.id, changes)
                        .await
                        .map(|()| false)
                }
                _ => continue,
            };
            match result {
                Ok(main) => {
                    renamed.addresses += 1;
                    renamed.users += u64::from(main);
                }
                Err(DomainError::AddressExists { .. }) => renamed.skipped += 1,
                // Gone meanwhile: nothing left to rename.
                Err(DomainError::AddressNotFound(_)) | Err(DomainError::UserNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    renamed.dkim = u64::from(dkim::rename_domain(state, &old, &new).await?);
    renamed.aliases = domain_aliases::retarget(state, &old, &new).await?;
    tracing::info!(old, new, ?renamed, "domain renamed");
    let event = webhooks::Event::new("address.domain.renamed")
        .with("previous", &old)
        .with("current", &new);
    webhooks::publish(state, event).await;
    Ok(renamed)
}
