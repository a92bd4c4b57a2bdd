//! Where a webhook may send: the checks against server-side request forgery.
//!
//! A webhook URL is chosen by whoever holds an operator token, but the request leaves from
//! inside the deployment. So the addresses it reaches are checked, at creation (a literal IP)
//! and at every delivery (every address the host name resolves to, the connection then made
//! only to those; redirects are not followed):
//!
//! * never: link-local (169.254/16 with the instance metadata at 169.254.169.254, fe80::/10),
//!   AWS's IPv6 metadata fd00:ec2::254, unspecified, multicast and broadcast addresses;
//! * private networks (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7) only when the
//!   operator allows them (`EIDER_WEBHOOK_PRIVATE`; the local server does);
//! * loopback only on the local server (development and tests).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{DomainError, DomainResult};
use crate::config::WebhookConfig;

/// Why an address is refused, or `None` when a webhook may reach it.
pub fn refusal(ip: IpAddr, policy: &WebhookConfig) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refusal_v4(v4, policy),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => refusal_v4(v4, policy),
            None => refusal_v6(v6, policy),
        },
    }
}

fn refusal_v4(ip: Ipv4Addr, policy: &WebhookConfig) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_link_local() {
        return Some("a link-local address (instance metadata)");
    }
    if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() || a == 0 {
        return Some("not a unicast address");
    }
    if ip.is_loopback() {
        return (!policy.allow_loopback).then_some("a loopback address");
    }
    let shared = a == 100 && (64..128).contains(&b);
    if ip.is_private() || shared {
        return (!policy.allow_private).then_some("a private network address");
    }
    None
}

/// AWS's instance metadata over IPv6.
const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

fn refusal_v6(ip: Ipv6Addr, policy: &WebhookConfig) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip == AWS_METADATA_V6 || (first & 0xffc0) == 0xfe80 {
        return Some("a link-local address (instance metadata)");
    }
    if ip.is_unspecified() || ip.is_multicast() {
        return Some("not a unicast address");
    }
    if ip.is_loopback() {
        return (!policy.allow_loopback).then_some("a loopback address");
    }
    if (first & 0xfe00) == 0xfc00 {
        return (!policy.allow_private).then_some("a private network address");
    }
    None
}

/// Checks a URL as given to `POST /webhooks`: http(s), a host, and not a refused literal IP.
pub fn check_syntax(url: &str, policy: &WebhookConfig) -> DomainResult<url::Url> {
    let invalid = |why: &str| DomainError::invalid("url", format!("\"url\" {why}"));
    let parsed = url::Url::parse(url).map_err(|_| invalid("must be a valid uri"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("must be an http or https URL"));
    }
    let refused = match parsed.host() {
        None => return Err(invalid("must name a host")),
        Some(url::Host::Ipv4(ip)) => refusal(IpAddr::V4(ip), policy),
        Some(url::Host::Ipv6(ip)) => refusal(IpAddr::V6(ip), policy),
        Some(url::Host::Domain(_)) => None,
    };
    match refused {
        Some(why) => Err(invalid(&format!("points to {why}"))),
        None => Ok(parsed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cloud() -> WebhookConfig {
        WebhookConfig::default()
    }

    fn local() -> WebhookConfig {
        WebhookConfig {
            allow_private: true,
            allow_loopback: true,
            ..WebhookConfig::default()
        }
    }

    #[test]
    fn metadata_and_link_local_are_always_refused() {
        for ip in [
            "169.254.169.254",
            "169.254.0.1",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
            "0.0.0.0",
            "::",
            "224.0.0.1",
            "255.255.255.255",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(refusal(ip, &cloud()).is_some(), "{ip}");
            assert!(refusal(ip, &local()).is_some(), "{ip} locally");
        }
    }

    #[test]
    fn private_and_loopback_only_where_allowed() {
        for ip in [
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "100.64.0.1",
            "fd12::1",
            "127.0.0.1",
            "::1",
            "::ffff:10.1.2.3",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(refusal(ip, &cloud()).is_some(), "{ip}");
            assert_eq!(refusal(ip, &local()), None, "{ip} locally");
        }
        for ip in [
            "93.184.216.34",
            "2606:2800:220:1::1",
            "172.32.0.1",
            "100.128.0.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(refusal(ip, &cloud()), None, "{ip}");
        }
    }

    #[test]
    fn urls_need_http_a_host_and_an_allowed_literal() {
        assert!(check_syntax("https://hooks.example.com/x", &cloud()).is_ok());
        assert!(check_syntax("http://127.0.0.1:8080/x", &local()).is_ok());
        for bad in [
            "ftp://example.com/",
            "smtp://example.com",
            "not a url",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/",
            "http://10.0.0.1/",
        ] {
            assert!(check_syntax(bad, &cloud()).is_err(), "{bad}");
        }
    }
}
