//! [`AddressPolicy`]: which addresses a connection to a gateway may dial. An admin names the
//! gateway by URL, so without a policy the relay would dial wherever that URL points:
//! link-local addresses (a cloud's metadata service, `169.254.169.254`) are never dialled,
//! and a policy may narrow dialling to named ranges. The check is made on every address the
//! gateway's host resolves to, at dial time, and the connection goes to the checked address
//! itself (a name that resolves again differently cannot slip past it).

use std::net::IpAddr;

use ipnet::IpNet;

/// Which addresses may be dialled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// When not empty, only addresses in these ranges.
    allow: Vec<IpNet>,
}

/// Why an address may not be dialled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressRefusal {
    /// Link-local (`169.254.0.0/16`, `fe80::/10`) or a cloud metadata address.
    #[error("{0} is link-local (a cloud's metadata service lives there): the relay never dials it")]
    LinkLocal(IpAddr),
    /// Outside the ranges the policy allows.
    #[error("{0} is outside the ranges outbound gateways may be dialled in")]
    NotAllowed(IpAddr),
}

impl AddressPolicy {
    /// Link-local addresses refused; any other allowed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only addresses in `ranges` (besides link-local ones, always refused); empty: any.
    pub fn allow_only(ranges: Vec<IpNet>) -> Self {
        Self { allow: ranges }
    }

    /// The ranges dialling is narrowed to (empty: any but link-local).
    pub fn allowed_ranges(&self) -> &[IpNet] {
        &self.allow
    }

    /// Whether `ip` may be dialled.
    pub fn check(&self, ip: IpAddr) -> Result<(), AddressRefusal> {
        let ip = canonical(ip);
        if is_link_local(ip) {
            return Err(AddressRefusal::LinkLocal(ip));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|range| range.contains(&ip)) {
            return Err(AddressRefusal::NotAllowed(ip));
        }
        Ok(())
    }
}

/// An IPv4 address written as IPv6 (`::ffff:a.b.c.d`) is checked as the IPv4 one.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// AWS's metadata service over IPv6.
const AWS_METADATA_V6: std::net::Ipv6Addr =
    std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

/// Link-local, or a cloud metadata address (AWS's IPv6 one is `fd00:ec2::254`).
fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80 || v6 == AWS_METADATA_V6,
    }
}

/// The host of a `ws://` / `wss://` URL when it is an IP address literal (`None` for a name).
pub fn literal_host(url: &str) -> Option<IpAddr> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    if let Some(v6) = host.strip_prefix('[') {
        return v6.split(']').next()?.parse().ok();
    }
    host.split(':').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn link_local_is_never_dialled_and_ranges_narrow_the_rest() {
        let any = AddressPolicy::new();
        for refused in
            ["169.254.169.254", "169.254.0.1", "fe80::1", "fd00:ec2::254", "::ffff:169.254.169.254"]
        {
            assert!(
                matches!(any.check(ip(refused)), Err(AddressRefusal::LinkLocal(_))),
                "{refused}"
            );
        }
        for allowed in ["127.0.0.1", "10.0.0.5", "192.168.1.2", "::1", "203.0.113.7"] {
            assert_eq!(any.check(ip(allowed)), Ok(()), "{allowed}");
        }
        let narrow = AddressPolicy::allow_only(vec![
            "10.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ]);
        assert_eq!(narrow.check(ip("10.1.2.3")), Ok(()));
        assert_eq!(narrow.check(ip("::1")), Ok(()));
        assert!(matches!(narrow.check(ip("127.0.0.1")), Err(AddressRefusal::NotAllowed(_))));
        let everything = AddressPolicy::allow_only(vec!["0.0.0.0/0".parse().unwrap()]);
        assert!(matches!(
            everything.check(ip("169.254.169.254")),
            Err(AddressRefusal::LinkLocal(_))
        ));
    }

    #[test]
    fn literal_hosts_are_read_from_urls() {
        assert_eq!(literal_host("ws://169.254.169.254/latest"), Some(ip("169.254.169.254")));
        assert_eq!(literal_host("ws://10.0.0.5:18789"), Some(ip("10.0.0.5")));
        assert_eq!(literal_host("wss://[fe80::1]:443/x"), Some(ip("fe80::1")));
        assert_eq!(literal_host("ws://gw.example.com:18789"), None);
        assert_eq!(literal_host("ws://u:p@169.254.1.1"), Some(ip("169.254.1.1")));
    }
}
