//! Usernames and addresses: WildDuck's normalisation and the views that make them unique.
//!
//! * `uview(x)`: lowercase; dots removed from the local part (from the whole value when it has
//!   no `@`), so `john.doe` and `johndoe` are the same user, `j.doe@x` and `jdoe@x` the same
//!   address.
//! * addresses: local part NFC + lowercase, domain lowercase and in Unicode form (`xn--`
//!   labels decoded), so `андрис@уайлддак.орг` and its punycode spelling are one address.

use std::sync::LazyLock;

use regex_lite::Regex;
use unicode_normalization::UnicodeNormalization;

/// WildDuck's username pattern (after lowercasing), 1 to 128 characters.
pub static USERNAME_PATTERN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9-]+(?:[._=:][a-z0-9-]+)*(?:@[a-z0-9-]+(?:[._=:][a-z0-9-]+)*)?$")
        .expect("valid regex")
});

/// The uniqueness view of a username or address.
pub fn uview(value: &str) -> String {
    let lower = value.to_lowercase();
    match lower.rsplit_once('@') {
        Some((local, domain)) => format!("{}@{domain}", local.replace('.', "")),
        None => lower.replace('.', ""),
    }
}

/// Why an address was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressError {
    Invalid,
    Plus,
    Wildcard,
    InvalidWildcard,
}

impl AddressError {
    pub fn message(&self, field: &str) -> String {
        match self {
            AddressError::Invalid => format!("\"{field}\" must be a valid email"),
            AddressError::Plus => "Address can not contain +".into(),
            AddressError::Wildcard => "Address can not contain *".into(),
            AddressError::InvalidWildcard => {
                "Invalid wildcard address, use \"*@domain\" or \"user@*\"".into()
            }
        }
    }
}

/// A normalized address and its uniqueness view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub address: String,
    pub addrview: String,
    pub wildcard: bool,
}

/// Characters never allowed in a local part (RFC 5322 specials, spaces, controls).
fn bad_local_char(c: char) -> bool {
    c.is_whitespace() || c.is_control() || "\"(),:;<>@[\\]".contains(c)
}

fn valid_local(local: &str) -> bool {
    !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && !local.chars().any(bad_local_char)
}

/// The domain in lowercase Unicode form, or None when it is not a valid host name.
pub fn normalize_domain(domain: &str) -> Option<String> {
    let domain = domain.trim().to_lowercase();
    if domain.is_empty() || domain.len() > 253 || domain.starts_with('.') || domain.ends_with('.') {
        return None;
    }
    // Validate through the ASCII (punycode) form, then store the Unicode form.
    let ascii = idna::domain_to_ascii(&domain).ok()?;
    let labels_ok = ascii.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if !labels_ok || !ascii.contains('.') && ascii != "localhost" {
        return None;
    }
    let (unicode, result) = idna::domain_to_unicode(&ascii);
    result.ok()?;
    Some(unicode.nfc().collect::<String>().to_lowercase())
}

/// Normalizes a plain address (no wildcards). With `strip_label`, a `+label` is removed (as
/// POST /users does for the main address); otherwise a `+` is refused (aliases).
pub fn normalize_address(input: &str, strip_label: bool) -> Result<Address, AddressError> {
    let input = input.trim();
    let (local, domain) = input.rsplit_once('@').ok_or(AddressError::Invalid)?;
    if local.contains('*') || domain.contains('*') {
        return Err(AddressError::Wildcard);
    }
    let mut local: String = local.nfc().collect::<String>().to_lowercase();
    if let Some(plus) = local.find('+') {
        if !strip_label {
            return Err(AddressError::Plus);
        }
        local.truncate(plus);
    }
    if !valid_local(&local) {
        return Err(AddressError::Invalid);
    }
    let domain = normalize_domain(domain).ok_or(AddressError::Invalid)?;
    let address = format!("{local}@{domain}");
    Ok(Address {
        addrview: uview(&address),
        address,
        wildcard: false,
    })
}

/// Normalizes an alias that may be a wildcard when `allow_wildcard`: `*@domain`,
/// `*suffix@domain`, `prefix*@domain` (fixed part at most 32 characters) or `user@*`.
pub fn normalize_alias(input: &str, allow_wildcard: bool) -> Result<Address, AddressError> {
    let input = input.trim();
    if !input.contains('*') {
        return normalize_address(input, false);
    }
    if !allow_wildcard {
        return Err(AddressError::Wildcard);
    }
    if input.matches('*').count() != 1 || input.contains('+') {
        return Err(AddressError::InvalidWildcard);
    }
    let (local, domain) = input
        .rsplit_once('@')
        .ok_or(AddressError::InvalidWildcard)?;
    let local = local.nfc().collect::<String>().to_lowercase();
    let address = if domain == "*" {
        if !valid_local(&local) {
            return Err(AddressError::InvalidWildcard);
        }
        format!("{local}@*")
    } else {
        let fixed = local.replace('*', "");
        let star_at_edge = local.starts_with('*') || local.ends_with('*');
        if !star_at_edge
            || fixed.chars().count() > 32
            || (!fixed.is_empty() && !valid_local(&fixed))
        {
            return Err(AddressError::InvalidWildcard);
        }
        let domain = normalize_domain(domain).ok_or(AddressError::InvalidWildcard)?;
        format!("{local}@{domain}")
    };
    Ok(Address {
        addrview: uview(&address),
        address,
        wildcard: true,
    })
}

/// Whether a value is a plain valid address (used to decide if a username is one).
pub fn is_address(value: &str) -> bool {
    normalize_address(value, true).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uview_removes_dots_from_the_local_part_only() {
        assert_eq!(uview("John.Doe"), "johndoe");
        assert_eq!(uview("J.Doe@Ex.Ample.com"), "jdoe@ex.ample.com");
    }

    #[test]
    fn usernames_follow_wildducks_pattern() {
        for ok in ["testuser01", "john.doe", "a", "user@example.com", "x-y_z"] {
            assert!(USERNAME_PATTERN.is_match(ok), "{ok}");
        }
        for bad in ["ömyuser2", "a..b", ".a", "a b", ""] {
            assert!(!USERNAME_PATTERN.is_match(bad), "{bad}");
        }
    }

    #[test]
    fn addresses_are_lowercased_and_internationalized_domains_decoded() {
        let a = normalize_address("Test.User@EXAMPLE.com", false).unwrap();
        assert_eq!(a.address, "test.user@example.com");
        assert_eq!(a.addrview, "testuser@example.com");
        let puny = normalize_address("андрис@xn--80aalaxjd5d.xn--c1avg", false).unwrap();
        let unicode = normalize_address("АНДРИС@уайлддак.орг", false).unwrap();
        assert_eq!(puny, unicode);
        assert_eq!(unicode.address, "андрис@уайлддак.орг");
        assert!(normalize_address("testuser@jõgeva.öö", false).is_ok());
    }

    #[test]
    fn bad_addresses_are_refused() {
        for bad in [
            "plain",
            "@example.com",
            "a@",
            "a b@example.com",
            "a@exa mple.com",
            "a..b@x.com",
        ] {
            assert_eq!(
                normalize_address(bad, false),
                Err(AddressError::Invalid),
                "{bad}"
            );
        }
        assert_eq!(
            normalize_address("a+b@x.com", false),
            Err(AddressError::Plus)
        );
        assert_eq!(
            normalize_address("a+b@x.com", true).unwrap().address,
            "a@x.com"
        );
        assert_eq!(
            normalize_address("*@x.com", false),
            Err(AddressError::Wildcard)
        );
    }

    #[test]
    fn wildcards_need_permission_and_a_known_form() {
        assert_eq!(
            normalize_alias("*@x.com", false),
            Err(AddressError::Wildcard)
        );
        for ok in ["*@x.com", "*suffix@x.com", "prefix*@x.com", "user@*"] {
            assert!(normalize_alias(ok, true).unwrap().wildcard, "{ok}");
        }
        for bad in ["a*b@x.com", "**@x.com", "*@*"] {
            assert_eq!(
                normalize_alias(bad, true),
                Err(AddressError::InvalidWildcard),
                "{bad}"
            );
        }
    }
}
