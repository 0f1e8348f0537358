//! `[flow_control]`: outgoing bandwidth limits and incoming rate limits, FISCO BCOS's
//! `[flow_control]` knobs in bytes per second (docs/config.md maps the FISCO keys).
//!
//! Every limit is 0 for "no limit". Burst sizes follow from `time_window`: a bucket holds one
//! window's worth of its rate.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Check, ConfigError};
use crate::identity::NodeId;

/// Smallest non-zero bandwidth limit, in bytes per second.
pub const MIN_BYTES_PER_SEC: u64 = 1024;
/// Largest bandwidth limit, in bytes per second (1 TiB/s).
pub const MAX_BYTES_PER_SEC: u64 = 1 << 40;
/// Largest rate limit, in packets per second.
pub const MAX_QPS: u64 = 1_000_000;

/// The `[flow_control]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowConfig {
    /// Whether any limit below applies.
    pub enable: bool,
    /// The window every bucket holds: its burst is its rate times this.
    #[serde(with = "humantime_serde")]
    pub time_window: Duration,
    /// All application traffic this node sends, relayed packets included; 0 = no limit.
    pub total_outgoing_bytes_per_sec: u64,
    /// What leaves by each link (per next-hop neighbour); 0 = no limit.
    pub conn_outgoing_bytes_per_sec: u64,
    /// Per-link limits for given neighbours, by node ID (hex) or IP address of the link.
    pub conn_outgoing_bytes_per_sec_by_peer: BTreeMap<String, u64>,
    /// What this node sends in each group (the packet's GroupID); 0 = no limit.
    pub group_outgoing_bytes_per_sec: u64,
    /// Per-group limits for given groups, by name.
    pub group_outgoing_bytes_per_sec_by_group: BTreeMap<String, u64>,
    /// Modules whose traffic no bandwidth limit applies to (FISCO's
    /// `modules_without_bw_limit`: PBFT, Raft, TxsSync, ConsTxsSync).
    pub modules_without_limit: Vec<u16>,
    /// Whether a packet larger than a bucket's burst may pass once the bucket is full (the
    /// bucket then goes into debt); otherwise it is refused.
    pub allow_exceed_burst: bool,
    /// Messages and requests per second delivered to each module; 0 = no limit.
    pub incoming_module_qps: u64,
    /// Per-module limits, by module ID (as a string key).
    pub incoming_module_qps_by_module: BTreeMap<String, u64>,
    /// Packet types whose arrivals are limited to `incoming_packet_type_qps` each.
    pub incoming_packet_types: Vec<u16>,
    /// Packets per second of each type in `incoming_packet_types`; 0 = no limit.
    pub incoming_packet_type_qps: u64,
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            enable: false,
            time_window: Duration::from_secs(1),
            total_outgoing_bytes_per_sec: 0,
            conn_outgoing_bytes_per_sec: 0,
            conn_outgoing_bytes_per_sec_by_peer: BTreeMap::new(),
            group_outgoing_bytes_per_sec: 0,
            group_outgoing_bytes_per_sec_by_group: BTreeMap::new(),
            modules_without_limit: vec![1000, 1001, 2001, 2002],
            allow_exceed_burst: false,
            incoming_module_qps: 0,
            incoming_module_qps_by_module: BTreeMap::new(),
            incoming_packet_types: Vec::new(),
            incoming_packet_type_qps: 0,
        }
    }
}

/// Which links a `conn_outgoing_bytes_per_sec_by_peer` key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PeerKey {
    /// The link to this node.
    Node(NodeId),
    /// Every link whose remote address has this IP.
    Ip(std::net::IpAddr),
}

impl PeerKey {
    /// Reads a key: a node ID in hex or an IP address.
    pub fn parse(key: &str) -> Option<PeerKey> {
        if let Ok(ip) = key.parse() {
            return Some(PeerKey::Ip(ip));
        }
        key.parse().ok().map(PeerKey::Node)
    }
}

impl FlowConfig {
    /// The per-module overrides with their module IDs read.
    pub fn module_overrides(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.incoming_module_qps_by_module
            .iter()
            .filter_map(|(k, v)| Some((k.parse().ok()?, *v)))
    }

    /// The per-peer overrides with their keys read.
    pub fn peer_overrides(&self) -> impl Iterator<Item = (PeerKey, u64)> + '_ {
        self.conn_outgoing_bytes_per_sec_by_peer
            .iter()
            .filter_map(|(k, v)| Some((PeerKey::parse(k)?, *v)))
    }

    /// Checks every key: the window, each rate within its bounds (0 or
    /// [`MIN_BYTES_PER_SEC`] to [`MAX_BYTES_PER_SEC`]; 0 to [`MAX_QPS`]), the per-link and
    /// per-group limits not above the total (as FISCO requires), the override keys readable.
    pub(super) fn validate(&self, c: &Check<'_>) -> Result<(), ConfigError> {
        c.range(
            "flow_control.time_window",
            self.time_window,
            Duration::from_millis(100),
            Duration::from_secs(10),
        )?;
        let total = self.total_outgoing_bytes_per_sec;
        let bandwidth = |key: &str, v: u64, capped: bool| -> Result<(), ConfigError> {
            if v == 0 {
                return Ok(());
            }
            c.range(key, v, MIN_BYTES_PER_SEC, MAX_BYTES_PER_SEC)?;
            if capped && total > 0 && v > total {
                return Err(c.bad(
                    key,
                    format!("{v} exceeds flow_control.total_outgoing_bytes_per_sec ({total})"),
                ));
            }
            Ok(())
        };
        bandwidth("flow_control.total_outgoing_bytes_per_sec", total, false)?;
        bandwidth(
            "flow_control.conn_outgoing_bytes_per_sec",
            self.conn_outgoing_bytes_per_sec,
            true,
        )?;
        bandwidth(
            "flow_control.group_outgoing_bytes_per_sec",
            self.group_outgoing_bytes_per_sec,
            true,
        )?;
        for (k, v) in &self.conn_outgoing_bytes_per_sec_by_peer {
            let key = format!("flow_control.conn_outgoing_bytes_per_sec_by_peer.{k}");
            if PeerKey::parse(k).is_none() {
                return Err(c.bad(&key, "not a node ID or an IP address".into()));
            }
            bandwidth(&key, *v, true)?;
        }
        for (k, v) in &self.group_outgoing_bytes_per_sec_by_group {
            let key = format!("flow_control.group_outgoing_bytes_per_sec_by_group.{k}");
            bandwidth(&key, *v, true)?;
        }
        c.range(
            "flow_control.incoming_module_qps",
            self.incoming_module_qps,
            0,
            MAX_QPS,
        )?;
        for (k, v) in &self.incoming_module_qps_by_module {
            let key = format!("flow_control.incoming_module_qps_by_module.{k}");
            if k.parse::<u16>().is_err() {
                return Err(c.bad(&key, "not a module ID (0 to 65535)".into()));
            }
            c.range(&key, *v, 0, MAX_QPS)?;
        }
        c.range(
            "flow_control.incoming_packet_type_qps",
            self.incoming_packet_type_qps,
            0,
            MAX_QPS,
        )?;
        c.range(
            "flow_control.modules_without_limit",
            self.modules_without_limit.len(),
            0,
            1024,
        )?;
        c.range(
            "flow_control.incoming_packet_types",
            self.incoming_packet_types.len(),
            0,
            256,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn check(f: &FlowConfig) -> Result<(), String> {
        let c = Check {
            file: Path::new("node.toml"),
        };
        f.validate(&c).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_valid_and_off() {
        let f = FlowConfig::default();
        assert!(!f.enable);
        assert_eq!(check(&f), Ok(()));
    }

    #[test]
    fn per_link_and_per_group_limits_may_not_exceed_the_total() {
        let f = FlowConfig {
            total_outgoing_bytes_per_sec: 1 << 20,
            conn_outgoing_bytes_per_sec: 2 << 20,
            ..FlowConfig::default()
        };
        let e = check(&f).unwrap_err();
        assert!(
            e.contains("flow_control.conn_outgoing_bytes_per_sec"),
            "{e}"
        );
        let mut f = FlowConfig {
            total_outgoing_bytes_per_sec: 1 << 20,
            ..FlowConfig::default()
        };
        f.group_outgoing_bytes_per_sec_by_group
            .insert("group0".into(), 2 << 20);
        let e = check(&f).unwrap_err();
        assert!(
            e.contains("flow_control.group_outgoing_bytes_per_sec_by_group.group0"),
            "{e}"
        );
    }

    #[test]
    fn rates_and_keys_out_of_range_name_their_key() {
        let f = FlowConfig {
            total_outgoing_bytes_per_sec: 10,
            ..FlowConfig::default()
        };
        assert!(check(&f)
            .unwrap_err()
            .contains("total_outgoing_bytes_per_sec"));
        let f = FlowConfig {
            time_window: Duration::from_secs(60),
            ..FlowConfig::default()
        };
        assert!(check(&f).unwrap_err().contains("flow_control.time_window"));
        let mut f = FlowConfig::default();
        f.incoming_module_qps_by_module.insert("pbft".into(), 5);
        assert!(check(&f).unwrap_err().contains("by_module.pbft"));
        let mut f = FlowConfig::default();
        f.conn_outgoing_bytes_per_sec_by_peer
            .insert("nowhere".into(), 1 << 20);
        assert!(check(&f).unwrap_err().contains("by_peer.nowhere"));
    }

    #[test]
    fn peer_keys_are_node_ids_or_ips() {
        assert_eq!(
            PeerKey::parse("10.0.0.1"),
            Some(PeerKey::Ip("10.0.0.1".parse().unwrap()))
        );
        let id = NodeId::from_bytes([7; 64]);
        assert_eq!(PeerKey::parse(&id.to_string()), Some(PeerKey::Node(id)));
        assert_eq!(PeerKey::parse("x"), None);
    }
}
