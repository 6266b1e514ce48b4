//! Which addresses requests may reach: by default only public ones.
//!
//! A job submitter chooses the URL, and a page (or a redirect) chooses the next one, so the
//! worker's network position must not lend them its view of the loopback interface, the
//! private network or a cloud metadata service (`169.254.169.254`). The check is made on
//! the addresses a request actually connects to: the client resolves names through
//! [`GuardedResolver`], which hands the connector only permitted addresses, and an address
//! written in the URL (which skips name resolution) is checked before every attempt and
//! every redirect. A DNS answer that changes between a check and the connection (DNS
//! rebinding) therefore cannot get around it, and neither can a redirect.
//!
//! The operator opens exactly what they name: networks (`10.1.0.0/16`, `fd00::/8`, one
//! address) and host names (`hooks.internal`, whose addresses are then all permitted).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use thiserror::Error;
use url::Host;

/// A network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_matches(
                u128::from(u32::from(net)),
                u128::from(u32::from(ip)),
                32,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_matches(u128::from(net), u128::from(ip), 128, self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_matches(net: u128, ip: u128, bits: u8, prefix: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = u32::from(bits - prefix);
    (net >> shift) == (ip >> shift)
}

/// An allow rule the operator wrote that is not a network, an address or a host name.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("`{rule}`: {reason}")]
pub struct RuleError {
    rule: String,
    reason: &'static str,
}

/// A request refused because of where it would go.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{host} is {address}, a {class} address: only public addresses are reached unless the operator allows more")]
pub struct Refused {
    /// The host as the URL named it.
    pub host: String,
    /// The address refused (the first, when a name resolved to several, all refused).
    pub address: IpAddr,
    /// What kind of address it is: `loopback`, `private`, `link-local`, …
    pub class: &'static str,
}

/// Which addresses requests may reach; see the module docs.
#[derive(Debug, Clone)]
pub struct Egress {
    /// Everything permitted: the operator's own tools (`weir crawl`), never a job.
    any: bool,
    networks: Vec<Network>,
    /// Lower-case host names whose addresses are all permitted.
    hosts: Vec<String>,
}

impl Default for Egress {
    fn default() -> Egress {
        Egress::public_only()
    }
}

impl Egress {
    /// Public addresses only: the default.
    pub fn public_only() -> Egress {
        Egress {
            any: false,
            networks: Vec::new(),
            hosts: Vec::new(),
        }
    }

    /// Every address: for a command the operator runs on URLs they chose.
    pub fn any() -> Egress {
        Egress {
            any: true,
            ..Egress::public_only()
        }
    }

    /// Also permits what `rule` names: a network (`10.0.0.0/8`, `fd00::/8`), one address
    /// (`127.0.0.1`, `::1`) or a host name (`hooks.internal`).
    pub fn allow(mut self, rule: &str) -> Result<Egress, RuleError> {
        let error = |reason| RuleError {
            rule: rule.to_owned(),
            reason,
        };
        let text = rule.trim();
        if let Some((address, prefix)) = text.split_once('/') {
            let address: IpAddr = address
                .parse()
                .map_err(|_| error("a network is an address, `/` and a prefix length"))?;
            let bits = if address.is_ipv4() { 32 } else { 128 };
            let prefix = prefix
                .parse::<u8>()
                .ok()
                .filter(|prefix| *prefix <= bits)
                .ok_or_else(|| error("the prefix length is out of range"))?;
            self.networks.push(Network { address, prefix });
        } else if let Ok(address) = text.trim_matches(['[', ']']).parse::<IpAddr>() {
            let prefix = if address.is_ipv4() { 32 } else { 128 };
            self.networks.push(Network { address, prefix });
        } else if !text.is_empty()
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            self.hosts
                .push(text.trim_end_matches('.').to_ascii_lowercase());
        } else {
            return Err(error(
                "expected a network (10.0.0.0/8), an address or a host name",
            ));
        }
        Ok(self)
    }

    /// Whether every address is permitted (no check is made at all).
    pub fn is_open(&self) -> bool {
        self.any
    }

    fn allows_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        self.hosts
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(host))
    }

    /// Whether a request to `host` may connect to `address`.
    pub fn check(&self, host: &str, address: IpAddr) -> Result<(), Refused> {
        if self.any || self.allows_host(host) {
            return Ok(());
        }
        let address = canonical(address);
        let Some(class) = special_class(address) else {
            return Ok(());
        };
        if self
            .networks
            .iter()
            .any(|network| network.contains(address))
        {
            return Ok(());
        }
        Err(Refused {
            host: host.to_owned(),
            address,
            class,
        })
    }

    /// Checks a URL whose host is an address (names are checked when resolved, by
    /// [`GuardedResolver`]).
    pub fn check_url(&self, url: &url::Url) -> Result<(), Refused> {
        let address = match url.host() {
            Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
            _ => return Ok(()),
        };
        self.check(url.host_str().unwrap_or_default(), address)
    }

    /// Checks where `url` would lead now, resolving its host's name: a refusal when every
    /// address is refused. For a caller that wants to turn away a URL it was given before
    /// starting work; the requests themselves are checked whatever this said. A name that
    /// does not resolve passes (the request reports that).
    pub async fn check_seed(&self, url: &url::Url) -> Result<(), Refused> {
        self.check_url(url)?;
        match url.host() {
            Some(Host::Domain(name)) if !self.any => {
                match permitted(self, name, url.port_or_known_default().unwrap_or(0)).await {
                    Ok(Err(refused)) => Err(refused),
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }
}

/// The addresses `host` resolves to that `egress` permits; the first refusal when it
/// permits none.
async fn permitted(
    egress: &Egress,
    host: &str,
    port: u16,
) -> std::io::Result<Result<Vec<SocketAddr>, Refused>> {
    let found = tokio::net::lookup_host((host, port)).await?;
    let mut refused = None;
    let permitted: Vec<SocketAddr> = found
        .filter(|addr| match egress.check(host, addr.ip()) {
            Ok(()) => true,
            Err(error) => {
                refused.get_or_insert(error);
                false
            }
        })
        .collect();
    Ok(match (permitted.is_empty(), refused) {
        (true, Some(refused)) => Err(refused),
        _ => Ok(permitted),
    })
}

/// An IPv4 address written as IPv6 (`::ffff:127.0.0.1`, or the deprecated
/// `::127.0.0.1`) as the IPv4 address it reaches.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let segments = v6.segments();
            // IPv4-compatible (`::a.b.c.d`), except `::` and `::1`, which are IPv6's own.
            if segments[..6] == [0; 6] && !matches!(u128::from(v6), 0 | 1) {
                return IpAddr::V4(Ipv4Addr::from(u128::from(v6) as u32));
            }
            IpAddr::V6(v6)
        }
        v4 => v4,
    }
}

/// What makes `address` one a request must not reach by default, or `None` for a public
/// address. The IANA special-purpose registries, less the globally reachable entries.
fn special_class(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => v6_class(v6),
    }
}

fn v4_class(v4: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = v4.octets();
    Some(match (a, b, c) {
        (0, _, _) => "unspecified",
        (10, _, _) | (172, 16..=31, _) | (192, 168, _) => "private",
        (100, 64..=127, _) => "carrier-grade NAT",
        (127, _, _) => "loopback",
        (169, 254, _) => "link-local",
        (192, 0, 0) => "protocol-assignment",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved",
        _ => return None,
    })
}

fn v6_class(v6: Ipv6Addr) -> Option<&'static str> {
    let bits = u128::from(v6);
    let s = v6.segments();
    Some(match s[0] {
        _ if bits == 0 => "unspecified",
        _ if bits == 1 => "loopback",
        0xfc00..=0xfdff => "unique-local",
        0xfe80..=0xfebf => "link-local",
        0xfec0..=0xfeff => "site-local",
        0xff00..=0xffff => "multicast",
        0x2001 if s[1] == 0x0db8 => "documentation",
        // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) reach the IPv4 address inside them.
        0x0064 if s[1] == 0xff9b && s[2..6] == [0; 4] => {
            return v4_class(Ipv4Addr::from(bits as u32)).map(|_| "NAT64 of a non-public");
        }
        0x2002 => {
            return v4_class(Ipv4Addr::new(
                (s[1] >> 8) as u8,
                s[1] as u8,
                (s[2] >> 8) as u8,
                s[2] as u8,
            ))
            .map(|_| "6to4 of a non-public");
        }
        0x0100 if s[1..4] == [0; 3] => "discard-only",
        _ => return None,
    })
}

/// Resolves names with the system's resolver and hands on only the addresses the policy
/// permits: what a connection is made to is what was checked.
#[derive(Debug, Clone)]
pub(crate) struct GuardedResolver {
    egress: Arc<Egress>,
}

impl GuardedResolver {
    pub(crate) fn new(egress: Arc<Egress>) -> GuardedResolver {
        GuardedResolver { egress }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let egress = Arc::clone(&self.egress);
        Box::pin(async move {
            match permitted(&egress, name.as_str(), 0).await? {
                Ok(addresses) => Ok(Box::new(addresses.into_iter()) as Addrs),
                Err(refused) => Err(Box::new(refused) as _),
            }
        })
    }
}

/// The [`Refused`] somewhere in `error`'s chain of sources, if that is why it failed.
pub fn refusal<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut source = Some(error);
    while let Some(error) = source {
        if let Some(refused) = error.downcast_ref::<Refused>() {
            return Some(refused);
        }
        source = error.source();
    }
    None
}

impl fmt::Display for Egress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.any {
            return f.write_str("any address");
        }
        f.write_str("public addresses")?;
        for network in &self.networks {
            write!(f, ", {}/{}", network.address, network.prefix)?;
        }
        for host in &self.hosts {
            write!(f, ", {host}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(egress: &Egress, address: &str) -> bool {
        egress.check("h", address.parse().unwrap()).is_err()
    }

    #[test]
    fn special_addresses_are_refused_by_default() {
        let egress = Egress::default();
        for address in [
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "fd00::1",
            "fc00::1",
            "fe80::1",
            "ff02::1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
        ] {
            assert!(refused(&egress, address), "{address} must be refused");
        }
        for address in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(!refused(&egress, address), "{address} is public");
        }
    }

    #[test]
    fn the_operator_opens_exactly_what_they_name() {
        let egress = Egress::default()
            .allow("10.1.0.0/16")
            .unwrap()
            .allow("::1")
            .unwrap()
            .allow("Hooks.Internal")
            .unwrap();
        assert!(!refused(&egress, "10.1.200.3"));
        assert!(refused(&egress, "10.2.0.1"));
        assert!(!refused(&egress, "::1"));
        assert!(refused(&egress, "127.0.0.1"), "::1 does not open 127.0.0.1");
        let by_name = egress.check("hooks.internal.", "192.168.0.9".parse().unwrap());
        assert_eq!(by_name, Ok(()));
        assert!(Egress::default().allow("10.0.0.0/33").is_err());
        assert!(Egress::default().allow("http://x").is_err());
        assert!(Egress::any()
            .check("h", "127.0.0.1".parse().unwrap())
            .is_ok());
    }

    #[test]
    fn a_refusal_names_the_host_the_address_and_its_class() {
        let error = Egress::default()
            .check("metadata", "169.254.169.254".parse().unwrap())
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "metadata is 169.254.169.254, a link-local address: only public addresses are \
             reached unless the operator allows more"
        );
    }

    #[test]
    fn urls_written_with_addresses_are_checked_in_every_spelling() {
        let egress = Egress::default();
        for url in [
            "http://127.0.0.1:7070/healthz",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://[::ffff:7f00:1]/",
            "http://[::1]:80/",
        ] {
            let url = url::Url::parse(url).unwrap();
            assert!(egress.check_url(&url).is_err(), "{url} must be refused");
        }
        let name = url::Url::parse("http://localhost/").unwrap();
        assert!(
            egress.check_url(&name).is_ok(),
            "names are checked when resolved"
        );
    }
}
