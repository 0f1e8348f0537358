//! Configured peer addresses as data: a host (IP literal or name) and a port, compared with
//! the socket addresses sessions actually use.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use crate::config;

/// The host part of a [`PeerAddr`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// An IP literal (IPv6 may be written in brackets).
    Ip(IpAddr),
    /// A name, resolved when dialed.
    Name(String),
}

/// A configured peer address, `host:port`, as the config file and the admin API write it.
///
/// Parsing follows the config's rules ([`config::check_host_port`]); the text stays the
/// target's key, this is what the connection layer compares and dials.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerAddr {
    host: Host,
    port: u16,
}

/// A peer address that is not `host:port` with a port in 1-65535.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PeerAddrError(String);

impl PeerAddr {
    /// The host.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether `addr` is this address: the same port, and the same IP (an IPv4-mapped IPv6
    /// address counts as the IPv4 one) or, for a host name, one of the addresses the name was
    /// last `resolved` to. A name never resolved matches nothing.
    pub fn is(&self, addr: SocketAddr, resolved: &[SocketAddr]) -> bool {
        match &self.host {
            Host::Ip(ip) => same_endpoint(SocketAddr::new(*ip, self.port), addr),
            Host::Name(_) => {
                addr.port() == self.port && resolved.iter().any(|r| same_endpoint(*r, addr))
            }
        }
    }
}

/// Two socket addresses name the same endpoint: equal ports and equal canonical IPs. Scope
/// IDs and flow labels are ignored: a configured address carries neither.
fn same_endpoint(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && a.ip().to_canonical() == b.ip().to_canonical()
}

impl FromStr for PeerAddr {
    type Err = PeerAddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (host, port) = config::split_host_port(s).map_err(PeerAddrError)?;
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let host = match bare.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => Host::Name(bare.to_owned()),
        };
        Ok(PeerAddr { host, port })
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(ip) => SocketAddr::new(*ip, self.port).fmt(f),
            Host::Name(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> PeerAddr {
        s.parse().unwrap()
    }

    fn sock(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_ip_literals_and_names() {
        assert_eq!(
            addr("127.0.0.1:30300").host(),
            &Host::Ip([127, 0, 0, 1].into())
        );
        assert_eq!(
            addr("[::1]:30300").host(),
            &Host::Ip("::1".parse().unwrap())
        );
        assert_eq!(addr("::1:30300").host(), &Host::Ip("::1".parse().unwrap()));
        assert_eq!(
            addr("node2.example:30302").host(),
            &Host::Name("node2.example".into())
        );
        assert_eq!(addr("node2.example:30302").port(), 30302);
    }

    #[test]
    fn refuses_what_the_config_refuses() {
        for bad in [
            "",
            "30300",
            ":30300",
            "host:",
            "host:0",
            "host:65536",
            "host:x",
        ] {
            assert!(bad.parse::<PeerAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn displays_as_host_port() {
        assert_eq!(addr("127.0.0.1:30300").to_string(), "127.0.0.1:30300");
        assert_eq!(addr("::1:30300").to_string(), "[::1]:30300");
        assert_eq!(addr("node2.example:1").to_string(), "node2.example:1");
    }

    #[test]
    fn ipv4_matches_its_ipv4_mapped_form_both_ways() {
        assert!(addr("127.0.0.1:30300").is(sock("[::ffff:127.0.0.1]:30300"), &[]));
        assert!(addr("[::ffff:127.0.0.1]:30300").is(sock("127.0.0.1:30300"), &[]));
        assert!(addr("[::1]:30300").is(sock("[::1]:30300"), &[]));
    }

    #[test]
    fn another_port_or_ip_does_not_match() {
        assert!(!addr("127.0.0.1:30300").is(sock("127.0.0.1:30301"), &[]));
        assert!(!addr("127.0.0.1:30300").is(sock("127.0.0.2:30300"), &[]));
        assert!(!addr("[::1]:30300").is(sock("127.0.0.1:30300"), &[]));
    }

    #[test]
    fn a_name_matches_only_what_it_resolved_to() {
        let a = addr("node2.example:30300");
        let resolved = [sock("10.0.0.7:30300"), sock("[fd00::7]:30300")];
        assert!(!a.is(sock("10.0.0.7:30300"), &[]));
        assert!(a.is(sock("10.0.0.7:30300"), &resolved));
        assert!(a.is(sock("[::ffff:10.0.0.7]:30300"), &resolved));
        assert!(a.is(sock("[fd00::7]:30300"), &resolved));
        assert!(!a.is(sock("10.0.0.8:30300"), &resolved));
        // The configured port decides, whatever the resolver was asked.
        assert!(!a.is(sock("10.0.0.7:30301"), &[sock("10.0.0.7:30301")]));
    }
}
