//! The caps on SDK sessions: in total, per client address and per client certificate key.
//! A connection holds a ticket for each cap it counts against; dropping the ticket gives the
//! place back.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::identity::NodeId;

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CapRefusal {
    /// `channel.max_sessions` connections are open.
    #[error("channel.max_sessions ({0}) sessions are open")]
    Total(usize),
    /// `channel.max_sessions_per_ip` connections come from this address.
    #[error("channel.max_sessions_per_ip ({0}) sessions come from this address")]
    PerIp(usize),
    /// `channel.max_sessions_per_cert` sessions use this certificate's key.
    #[error("channel.max_sessions_per_cert ({0}) sessions use this certificate key")]
    PerCert(usize),
}

/// Counts by key, each under a limit. Pure.
#[derive(Debug)]
struct Counts<K> {
    limit: usize,
    held: HashMap<K, usize>,
}

impl<K: Hash + Eq> Counts<K> {
    fn new(limit: usize) -> Self {
        Counts {
            limit,
            held: HashMap::new(),
        }
    }

    fn enter(&mut self, key: K) -> bool {
        let n = self.held.entry(key).or_insert(0);
        if *n >= self.limit {
            return false;
        }
        *n += 1;
        true
    }

    fn leave(&mut self, key: &K) {
        if let Some(n) = self.held.get_mut(key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.held.remove(key);
            }
        }
    }
}

#[derive(Debug)]
struct State {
    max_total: usize,
    total: usize,
    ips: Counts<IpAddr>,
    keys: Counts<NodeId>,
}

/// The caps of one channel port.
#[derive(Debug, Clone)]
pub(crate) struct Caps {
    state: Arc<Mutex<State>>,
}

/// A connection's place under the total and per-address caps.
#[derive(Debug)]
pub(crate) struct IpTicket {
    caps: Caps,
    ip: IpAddr,
}

/// A session's place under the per-certificate cap.
#[derive(Debug)]
pub(crate) struct KeyTicket {
    caps: Caps,
    key: NodeId,
}

impl Caps {
    pub(crate) fn new(max_total: usize, per_ip: usize, per_cert: usize) -> Caps {
        Caps {
            state: Arc::new(Mutex::new(State {
                max_total,
                total: 0,
                ips: Counts::new(per_ip),
                keys: Counts::new(per_cert),
            })),
        }
    }

    /// Admits a new connection from `ip` (before its TLS handshake, so handshakes count).
    pub(crate) fn enter_ip(&self, ip: IpAddr) -> Result<IpTicket, CapRefusal> {
        let mut st = self.state.lock();
        if st.total >= st.max_total {
            return Err(CapRefusal::Total(st.max_total));
        }
        if !st.ips.enter(ip) {
            return Err(CapRefusal::PerIp(st.ips.limit));
        }
        st.total += 1;
        Ok(IpTicket {
            caps: self.clone(),
            ip,
        })
    }

    /// Admits a session whose client proved `key` in its handshake.
    pub(crate) fn enter_key(&self, key: NodeId) -> Result<KeyTicket, CapRefusal> {
        let mut st = self.state.lock();
        if !st.keys.enter(key) {
            return Err(CapRefusal::PerCert(st.keys.limit));
        }
        Ok(KeyTicket {
            caps: self.clone(),
            key,
        })
    }
}

impl Drop for IpTicket {
    fn drop(&mut self) {
        let mut st = self.caps.state.lock();
        st.total = st.total.saturating_sub(1);
        st.ips.leave(&self.ip);
    }
}

impl Drop for KeyTicket {
    fn drop(&mut self) {
        self.caps.state.lock().keys.leave(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn the_total_cap_counts_every_address() {
        let caps = Caps::new(2, 10, 10);
        let _a = caps.enter_ip(ip(1)).unwrap();
        let b = caps.enter_ip(ip(2)).unwrap();
        assert_eq!(caps.enter_ip(ip(3)).unwrap_err(), CapRefusal::Total(2));
        drop(b);
        assert!(
            caps.enter_ip(ip(3)).is_ok(),
            "a dropped ticket gives its place back"
        );
    }

    #[test]
    fn the_per_address_cap_counts_one_address() {
        let caps = Caps::new(10, 1, 10);
        let _a = caps.enter_ip(ip(1)).unwrap();
        assert_eq!(caps.enter_ip(ip(1)).unwrap_err(), CapRefusal::PerIp(1));
        assert!(caps.enter_ip(ip(2)).is_ok());
    }

    #[test]
    fn the_per_cert_cap_counts_one_key() {
        let caps = Caps::new(10, 10, 1);
        let k = NodeId::from_bytes([1; 64]);
        let t = caps.enter_key(k).unwrap();
        assert_eq!(caps.enter_key(k).unwrap_err(), CapRefusal::PerCert(1));
        assert!(caps.enter_key(NodeId::from_bytes([2; 64])).is_ok());
        drop(t);
        assert!(caps.enter_key(k).is_ok());
    }

    #[test]
    fn a_refused_address_takes_no_place() {
        let caps = Caps::new(1, 1, 1);
        let _a = caps.enter_ip(ip(1)).unwrap();
        assert!(caps.enter_ip(ip(1)).is_err());
        assert_eq!(caps.state.lock().total, 1);
    }
}
