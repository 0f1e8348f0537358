//! Runtime changes to a running node: peers added and removed through the admin API (and
//! written back to the config file), and config reloads.

use std::collections::HashSet;

use super::NodeHandle;
use crate::admission::Admission;
use crate::config::{self, Config, ConfigError};

/// Why a runtime peer change was refused.
#[derive(Debug, thiserror::Error)]
pub enum PeerChangeError {
    /// The address is not `host:port`.
    #[error("invalid peer address: {0}")]
    Address(String),
    /// The change could not be written to the config file; it was not applied.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl NodeHandle {
    /// Adds a peer at `address` and starts dialing it. With a config file, the peer is
    /// written back to it first, so it survives a restart. Returns false if the peer was
    /// already configured.
    pub fn add_peer(&self, address: &str) -> Result<bool, PeerChangeError> {
        config::check_host_port(address).map_err(PeerChangeError::Address)?;
        let peers = self.peers();
        if peers.targets().iter().any(|t| t.address == address) {
            return Ok(false);
        }
        let mut list = self.configured_peer_list();
        list.push(address.to_owned());
        self.write_back(&list)?;
        Ok(peers.add_target(address))
    }

    /// Removes the peer at `address` and closes its connection. With a config file, the peer
    /// is removed from it too. Returns false if no such peer was configured.
    pub fn remove_peer(&self, address: &str) -> Result<bool, PeerChangeError> {
        let peers = self.peers();
        if !peers.targets().iter().any(|t| t.address == address) {
            return Ok(false);
        }
        let list: Vec<String> = self
            .configured_peer_list()
            .into_iter()
            .filter(|p| p != address)
            .collect();
        self.write_back(&list)?;
        Ok(peers.remove_target(address))
    }

    /// The peer list as the config file has it, falling back to the live targets. Keeping the
    /// file's order makes write-backs minimal diffs.
    fn configured_peer_list(&self) -> Vec<String> {
        let live: Vec<String> = self
            .peers()
            .targets()
            .into_iter()
            .map(|t| t.address)
            .collect();
        let Some(file) = self.config_path() else {
            return live;
        };
        match Config::load(file) {
            Ok(cfg) => {
                let mut list: Vec<String> = cfg
                    .p2p
                    .peers
                    .into_iter()
                    .filter(|p| live.contains(p))
                    .collect();
                for p in live {
                    if !list.contains(&p) {
                        list.push(p);
                    }
                }
                list
            }
            Err(_) => live,
        }
    }

    fn write_back(&self, peers: &[String]) -> Result<(), ConfigError> {
        match self.config_path() {
            Some(file) => config::write_peers(file, peers),
            None => Ok(()),
        }
    }

    /// Applies a reloaded config: peers added or removed, admission lists re-applied (live
    /// sessions now excluded are closed with reason `blacklisted` or `not-whitelisted`), the
    /// `[flow_control]` limits replaced (their buckets start full; counters carry on).
    /// Listen addresses and timers take a restart.
    pub fn apply_config(&self, config: &Config) {
        let peers = self.peers();
        let wanted: HashSet<&str> = config.p2p.peers.iter().map(String::as_str).collect();
        for t in peers.targets() {
            if !wanted.contains(t.address.as_str()) {
                peers.remove_target(&t.address);
            }
        }
        for p in &config.p2p.peers {
            peers.add_target(p);
        }
        peers.set_admission(Admission::new(
            config.p2p.blacklist.iter().copied(),
            config.p2p.whitelist.iter().copied(),
        ));
        self.inner.flow.reconfigure(&config.flow_control);
    }
}
