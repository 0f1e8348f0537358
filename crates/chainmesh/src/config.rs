//! The node's config file: what it holds, how it is read and checked, and how it is written.
//!
//! A config is TOML. Relative paths inside it are taken from the directory of the file, so a
//! node directory can be moved as a whole. Every problem names the file, the key and what is
//! wrong, and a config that fails any check is never half-applied.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::identity::NodeId;

pub use crate::wire::DEFAULT_MAX_PACKET;
pub use admin::AdminConfig;
pub use channel::ChannelConfig;
pub use flow::{FlowConfig, PeerKey};
pub use log::{LogConfig, LogFormat};
pub use node::NodeConfig;
pub use socket::SocketConfig;

mod admin;
mod channel;
mod flow;
mod log;
mod node;
mod socket;

/// A problem with a config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config {file}: cannot read: {source}")]
    Read {
        /// The config file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has keys of the wrong type.
    #[error("config {file}: {message}")]
    Parse {
        /// The config file.
        file: PathBuf,
        /// What the TOML parser said, with the line and the key.
        message: String,
    },
    /// A key has a value that parses but cannot be used.
    #[error("config {file}: key `{key}`: {problem}")]
    Invalid {
        /// The config file.
        file: PathBuf,
        /// The dotted key, e.g. `p2p.listen`.
        key: String,
        /// What is wrong with its value.
        problem: String,
    },
    /// The file could not be written back.
    #[error("config {file}: cannot write: {source}")]
    Write {
        /// The config file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A node's whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The node's name.
    #[serde(default)]
    pub node: NodeConfig,
    /// Where the node's certificates and key are.
    pub identity: IdentityConfig,
    /// The P2P listener, peers and limits.
    pub p2p: P2pConfig,
    /// Heartbeats, timeouts and backoff.
    #[serde(default)]
    pub timers: TimersConfig,
    /// The admin HTTP API.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Bounds on queues and work under way.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The SDK channel port (AMOP, JSON-RPC).
    #[serde(default)]
    pub channel: ChannelConfig,
    /// Log levels and format.
    #[serde(default)]
    pub log: LogConfig,
    /// Outgoing bandwidth and incoming rate limits.
    #[serde(default)]
    pub flow_control: FlowConfig,
    /// TCP options of P2P connections.
    #[serde(default)]
    pub socket: SocketConfig,
}

/// The certificate files of a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// The chain CA certificate that every peer's chain must verify against.
    pub ca_cert: PathBuf,
    /// This node's certificate, optionally followed by its agency certificate.
    pub node_cert: PathBuf,
    /// This node's private key.
    pub node_key: PathBuf,
}

/// The P2P network settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct P2pConfig {
    /// Address the node listens on for other nodes (`ip:port`; port 0 picks a free one).
    pub listen: String,
    /// Peers this node dials and keeps connected (`host:port`).
    #[serde(default)]
    pub peers: Vec<String>,
    /// Groups this node belongs to.
    #[serde(default = "default_groups")]
    pub groups: Vec<String>,
    /// Largest packet, in bytes, this node accepts or sends.
    #[serde(default = "default_max_packet")]
    pub max_packet_size: u32,
    /// Payloads larger than this many bytes are sent zstd-compressed when that makes them
    /// smaller; 0 turns compression off.
    #[serde(default = "default_compress_threshold")]
    pub compress_threshold: usize,
    /// Node IDs refused during the handshake. Wins over the whitelist.
    #[serde(default)]
    pub blacklist: Vec<NodeId>,
    /// When not empty, only these node IDs are admitted.
    #[serde(default)]
    pub whitelist: Vec<NodeId>,
    /// Modules whose packets go in each link's priority lane, ahead of bulk traffic.
    #[serde(default)]
    pub priority_modules: Vec<u16>,
}

/// Every timer of the connection layer; tests shorten them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimersConfig {
    /// How often an idle link sends a heartbeat.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// A peer silent for this many heartbeat intervals is dropped.
    pub idle_timeout_intervals: u32,
    /// Longest wait for a TCP connect.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest wait for the TLS and protocol handshakes.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// First redial delay after a drop or failed dial.
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    /// Largest redial delay.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// How often a node re-announces its status seq to peers that have not confirmed it
    /// (changes are announced at once).
    #[serde(with = "humantime_serde")]
    pub status_interval: Duration,
}

impl TimersConfig {
    /// Longest idle timeout (`heartbeat_interval` x `idle_timeout_intervals`) a config may
    /// ask for; [`idle_timeout`](Self::idle_timeout) never returns more.
    pub const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
    /// Longest `heartbeat_interval`, `connect_timeout` or `handshake_timeout` the session
    /// layer is handed, whatever a hand-built config says.
    pub const MAX_TIMER: Duration = Duration::from_secs(3600);

    /// How long a silent peer is kept: the product of the heartbeat interval and the idle
    /// count, computed without overflow and capped at [`MAX_IDLE_TIMEOUT`](Self::MAX_IDLE_TIMEOUT)
    /// so that adding it to a clock reading cannot overflow either.
    pub fn idle_timeout(&self) -> Duration {
        self.heartbeat_interval
            .checked_mul(self.idle_timeout_intervals)
            .map_or(Self::MAX_IDLE_TIMEOUT, |d| d.min(Self::MAX_IDLE_TIMEOUT))
    }
}

impl Default for TimersConfig {
    fn default() -> Self {
        TimersConfig {
            heartbeat_interval: Duration::from_secs(5),
            idle_timeout_intervals: 3,
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            status_interval: Duration::from_secs(1),
        }
    }
}

/// Bounds on queues and work under way: policy as data, so an operator can size them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Bytes a link's write queue holds before senders wait (or fail fast). A packet larger
    /// than this still goes, alone, once the queue is empty.
    pub session_queue_bytes: usize,
    /// Source nodes whose recent Seqs are remembered for duplicate suppression.
    pub dedup_sources: usize,
    /// How long a relay waits for room on the next hop's queue before it drops the packet.
    /// While it waits the link the packet came in on stops reading, which slows its sender;
    /// the bound keeps a cycle of full queues from stalling forever.
    #[serde(with = "humantime_serde")]
    pub relay_wait: Duration,
    /// Inbound TLS and protocol handshakes under way at once; further connections wait in
    /// the kernel's accept backlog.
    pub inbound_handshakes: usize,
    /// Other nodes' signed neighbour lists a node holds at most: the most nodes it routes
    /// to. Lists of further nodes are refused and counted.
    pub max_routing_nodes: usize,
    /// Neighbours one node's list may name. A neighbour whose own list names more is
    /// disconnected; a node with more links lists the smallest IDs.
    pub max_neighbours_per_list: usize,

    // ---- status synchronization, decompression and outstanding requests ----
    /// Largest encoded status this node publishes or accepts from another node; a larger
    /// StatusResponse is dropped before it is decoded.
    pub max_status_bytes: usize,
    /// Most other nodes whose status, announcements and queries are tracked at once.
    pub max_tracked_nodes: usize,
    /// Memory, in bytes, that all held statuses of other nodes may take together.
    pub max_status_total_bytes: usize,
    /// StatusRequests answered per second for one requester (also the burst).
    pub status_requests_per_sec: u32,
    /// Most bytes one compressed payload may decompress to (the packet size limit applies
    /// too, whichever is smaller).
    pub max_decompressed_bytes: usize,
    /// Decompressed bytes per second one peer's link may cost this node.
    pub decompress_bytes_per_sec_per_peer: usize,
    /// Threads that decompress large payloads off the sessions' tasks.
    pub decompress_workers: usize,
    /// Large payloads waiting for a decompression thread; beyond it they are dropped.
    pub decompress_queue: usize,
    /// Requests this node may have outstanding to one destination at once.
    pub pending_requests_per_peer: usize,

    // Connection limits per remote address and per identity, and the session's read budget.
    /// Inbound handshakes under way at once from one IP address; more are refused.
    pub handshakes_per_ip: usize,
    /// Inbound connections at once from one IP address, handshakes included; more are
    /// refused.
    pub connections_per_ip: usize,
    /// Protocol handshakes under way at once for one node ID (after TLS names it), in either
    /// direction; more are refused.
    pub handshakes_per_identity: usize,
    /// Bytes a link's session reads per wake before it lets other links run.
    pub read_budget_bytes: usize,

    /// Pairwise keys kept for source authentication of relayed packets: one per node this
    /// node exchanges relayed packets with. Past it the oldest is dropped and derived again
    /// (one key agreement) when next needed.
    pub auth_keys: usize,
}

impl LimitsConfig {
    /// Smallest `session_queue_bytes`: room for a few ordinary packets.
    pub const MIN_SESSION_QUEUE_BYTES: usize = 64 * 1024;
}

impl LimitsConfig {
    /// Checks the status, decompression and request limits with `in_range(key, value, min,
    /// max)`.
    fn validate_resource_limits(&self, c: &Check<'_>) -> Result<(), ConfigError> {
        c.range(
            "limits.max_status_bytes",
            self.max_status_bytes,
            1024,
            16 << 20,
        )?;
        c.range(
            "limits.max_tracked_nodes",
            self.max_tracked_nodes,
            1,
            1 << 20,
        )?;
        // The total must hold at least one status of the largest size.
        c.range(
            "limits.max_status_total_bytes",
            self.max_status_total_bytes,
            self.max_status_bytes,
            u32::MAX as usize,
        )?;
        c.range(
            "limits.status_requests_per_sec",
            self.status_requests_per_sec as usize,
            1,
            10_000,
        )?;
        c.range(
            "limits.max_decompressed_bytes",
            self.max_decompressed_bytes,
            64 * 1024,
            u32::MAX as usize,
        )?;
        c.range(
            "limits.decompress_bytes_per_sec_per_peer",
            self.decompress_bytes_per_sec_per_peer,
            1 << 20,
            u32::MAX as usize,
        )?;
        c.range("limits.decompress_workers", self.decompress_workers, 1, 64)?;
        c.range("limits.decompress_queue", self.decompress_queue, 1, 4096)?;
        c.range(
            "limits.pending_requests_per_peer",
            self.pending_requests_per_peer,
            1,
            1 << 20,
        )
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            session_queue_bytes: 8 * 1024 * 1024,
            dedup_sources: 16 * 1024,
            relay_wait: Duration::from_secs(2),
            inbound_handshakes: 256,
            max_routing_nodes: 4096,
            max_neighbours_per_list: 1024,

            max_status_bytes: 64 * 1024,
            max_tracked_nodes: 4096,
            max_status_total_bytes: 64 * 1024 * 1024,
            status_requests_per_sec: 20,
            max_decompressed_bytes: DEFAULT_MAX_PACKET as usize,
            decompress_bytes_per_sec_per_peer: 64 * 1024 * 1024,
            decompress_workers: 2,
            decompress_queue: 64,
            pending_requests_per_peer: 4096,

            handshakes_per_ip: 64,
            connections_per_ip: 1024,
            handshakes_per_identity: 4,
            read_budget_bytes: 256 * 1024,

            auth_keys: 4096,
        }
    }
}

fn default_groups() -> Vec<String> {
    vec!["group0".into()]
}

fn default_max_packet() -> u32 {
    DEFAULT_MAX_PACKET
}

fn default_compress_threshold() -> usize {
    crate::wire::DEFAULT_COMPRESS_THRESHOLD
}

impl Config {
    /// A config with default settings for the given files and listen address.
    pub fn new(identity: IdentityConfig, listen: impl Into<String>) -> Self {
        Config {
            node: NodeConfig::default(),
            identity,
            p2p: P2pConfig {
                listen: listen.into(),
                peers: Vec::new(),
                groups: default_groups(),
                max_packet_size: DEFAULT_MAX_PACKET,
                compress_threshold: default_compress_threshold(),
                blacklist: Vec::new(),
                whitelist: Vec::new(),
                priority_modules: Vec::new(),
            },
            timers: TimersConfig::default(),
            admin: AdminConfig::default(),
            limits: LimitsConfig::default(),
            channel: ChannelConfig::default(),
            log: LogConfig::default(),
            flow_control: FlowConfig::default(),
            socket: SocketConfig::default(),
        }
    }

    /// Reads, parses and checks a config file. Relative paths in it become relative to the
    /// file's directory.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_owned(),
            source,
        })?;
        let mut cfg = Config::parse(&text, file)?;
        let base = file.parent().unwrap_or(Path::new("."));
        cfg.resolve_paths(base);
        Ok(cfg)
    }

    /// Parses and checks config text; `file` only names it in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: file.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        cfg.validate(file)?;
        Ok(cfg)
    }

    fn resolve_paths(&mut self, base: &Path) {
        for p in [
            &mut self.identity.ca_cert,
            &mut self.identity.node_cert,
            &mut self.identity.node_key,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// Checks every value that TOML typing alone does not: addresses, and every timer and
    /// size against its minimum and maximum (docs/config.md lists them).
    pub fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        let c = Check { file };
        c.socket_addr("p2p.listen", &self.p2p.listen)?;
        for (i, peer) in self.p2p.peers.iter().enumerate() {
            check_host_port(peer).map_err(|p| c.bad(&format!("p2p.peers[{i}]"), p))?;
        }
        c.range(
            "p2p.max_packet_size",
            self.p2p.max_packet_size,
            MIN_MAX_PACKET,
            MAX_MAX_PACKET,
        )?;
        c.range(
            "p2p.compress_threshold",
            self.p2p.compress_threshold,
            0,
            MAX_MAX_PACKET as usize,
        )?;
        for (i, g) in self.p2p.groups.iter().enumerate() {
            if g.is_empty() || g.len() > u16::MAX as usize {
                return Err(c.bad(
                    &format!("p2p.groups[{i}]"),
                    "a group name must be 1 to 65535 bytes".into(),
                ));
            }
        }
        self.validate_timers(&c)?;
        self.validate_limits(&c)?;
        self.admin.validate(&c)?;
        self.node.validate(&c)?;
        self.log.validate(&c)?;
        self.flow_control.validate(&c)?;
        self.socket.validate(&c)?;
        self.channel.validate(&c)
    }

    fn validate_timers(&self, c: &Check<'_>) -> Result<(), ConfigError> {
        let t = &self.timers;
        for (key, d, min, max) in [
            (
                "timers.heartbeat_interval",
                t.heartbeat_interval,
                ms(10),
                TimersConfig::MAX_TIMER,
            ),
            (
                "timers.connect_timeout",
                t.connect_timeout,
                ms(10),
                secs(600),
            ),
            (
                "timers.handshake_timeout",
                t.handshake_timeout,
                ms(10),
                secs(600),
            ),
            (
                "timers.backoff_initial",
                t.backoff_initial,
                ms(1),
                secs(3600),
            ),
            ("timers.backoff_max", t.backoff_max, ms(1), secs(24 * 3600)),
            (
                "timers.status_interval",
                t.status_interval,
                ms(10),
                secs(3600),
            ),
        ] {
            c.range(key, d, min, max)?;
        }
        c.range(
            "timers.idle_timeout_intervals",
            t.idle_timeout_intervals,
            1,
            1000,
        )?;
        let idle = t.heartbeat_interval.checked_mul(t.idle_timeout_intervals);
        if !matches!(idle, Some(d) if d <= TimersConfig::MAX_IDLE_TIMEOUT) {
            return Err(c.bad(
                "timers.idle_timeout_intervals",
                format!(
                    "{} x timers.heartbeat_interval ({:?}) exceeds {:?}",
                    t.idle_timeout_intervals,
                    t.heartbeat_interval,
                    TimersConfig::MAX_IDLE_TIMEOUT
                ),
            ));
        }
        if t.backoff_max < t.backoff_initial {
            return Err(c.bad(
                "timers.backoff_max",
                "must not be shorter than timers.backoff_initial".into(),
            ));
        }
        Ok(())
    }

    fn validate_limits(&self, c: &Check<'_>) -> Result<(), ConfigError> {
        let l = &self.limits;
        c.range(
            "limits.session_queue_bytes",
            l.session_queue_bytes,
            LimitsConfig::MIN_SESSION_QUEUE_BYTES,
            1 << 30,
        )?;
        c.range("limits.dedup_sources", l.dedup_sources, 1, 1 << 20)?;
        c.range("limits.auth_keys", l.auth_keys, 16, 1 << 20)?;
        c.range("limits.max_routing_nodes", l.max_routing_nodes, 1, 1 << 16)?;
        c.range(
            "limits.max_neighbours_per_list",
            l.max_neighbours_per_list,
            1,
            crate::wire::MAX_LIST_NEIGHBOURS,
        )?;
        c.range(
            "limits.inbound_handshakes",
            l.inbound_handshakes,
            1,
            1 << 16,
        )?;
        l.validate_resource_limits(c)?;
        c.range("limits.handshakes_per_ip", l.handshakes_per_ip, 1, 1 << 16)?;
        c.range(
            "limits.connections_per_ip",
            l.connections_per_ip,
            1,
            1 << 20,
        )?;
        c.range(
            "limits.handshakes_per_identity",
            l.handshakes_per_identity,
            1,
            1024,
        )?;
        c.range(
            "limits.read_budget_bytes",
            l.read_budget_bytes,
            16 * 1024,
            64 * 1024 * 1024,
        )?;
        c.range("limits.relay_wait", l.relay_wait, ms(1), secs(60))
    }

    /// The config as TOML text.
    pub fn to_toml(&self) -> String {
        // Serialising plain structs of strings, numbers and durations cannot fail.
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

/// Rewrites the `p2p.peers` list of a config file, keeping every other byte of the file as
/// it was (comments, order, formatting). The new file replaces the old one atomically: it is
/// written next to it and renamed over it, so a crash never leaves a half-written config.
pub fn write_peers(file: &Path, peers: &[String]) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
        file: file.to_owned(),
        source,
    })?;
    let mut doc: toml_edit::DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| ConfigError::Parse {
                file: file.to_owned(),
                message: e.to_string().trim_end().to_owned(),
            })?;
    let p2p = doc
        .get_mut("p2p")
        .and_then(toml_edit::Item::as_table_like_mut)
        .ok_or_else(|| ConfigError::Invalid {
            file: file.to_owned(),
            key: "p2p".into(),
            problem: "missing table".into(),
        })?;
    let mut list = toml_edit::Array::new();
    for p in peers {
        list.push(p.as_str());
    }
    match p2p.get_mut("peers").and_then(toml_edit::Item::as_array_mut) {
        // Keep the existing array's decoration (multi-line layout, trailing comma).
        Some(existing) => {
            existing.clear();
            existing.extend(peers.iter().map(String::as_str));
        }
        None => {
            p2p.insert("peers", toml_edit::value(list));
        }
    }
    let out = doc.to_string();
    // Never write a file that the node itself would refuse to load.
    Config::parse(&out, file)?;
    let dir = file.parent().unwrap_or(Path::new("."));
    let write = |e: std::io::Error| ConfigError::Write {
        file: file.to_owned(),
        source: e,
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(write)?;
    std::io::Write::write_all(&mut tmp, out.as_bytes()).map_err(write)?;
    tmp.as_file().sync_all().map_err(write)?;
    if let Ok(meta) = std::fs::metadata(file) {
        let _ = std::fs::set_permissions(tmp.path(), meta.permissions());
    }
    tmp.persist(file).map_err(|e| write(e.error))?;
    Ok(())
}

/// Smallest `p2p.max_packet_size`: room for a handshake and small messages.
pub const MIN_MAX_PACKET: u32 = 1024;
/// Largest `p2p.max_packet_size`: 256 MiB.
pub const MAX_MAX_PACKET: u32 = 256 * 1024 * 1024;

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The checks of one config file: each error names the file and the key.
pub struct Check<'a> {
    /// The file being checked, named in errors.
    pub file: &'a Path,
}

impl Check<'_> {
    /// The error for `key` with `problem`.
    pub fn bad(&self, key: &str, problem: String) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_owned(),
            key: key.into(),
            problem,
        }
    }

    /// Checks that `value` of `key` lies in `min..=max`: the one bounds check of every timer
    /// and size, for numbers and durations alike.
    pub fn range<T: PartialOrd + fmt::Debug>(
        &self,
        key: &str,
        value: T,
        min: T,
        max: T,
    ) -> Result<(), ConfigError> {
        if value < min || value > max {
            return Err(self.bad(
                key,
                format!("{value:?} is outside the allowed range {min:?} to {max:?}"),
            ));
        }
        Ok(())
    }

    fn socket_addr(&self, key: &str, addr: &str) -> Result<(), ConfigError> {
        addr.parse::<SocketAddr>()
            .map(|_| ())
            .map_err(|e| self.bad(key, format!("`{addr}` is not ip:port ({e})")))
    }
}

/// Checks that `s` is `host:port` (or `[v6]:port`) with a non-zero port.
pub fn check_host_port(s: &str) -> Result<(), String> {
    split_host_port(s).map(|_| ())
}

/// Splits `host:port` (or `[v6]:port`) at its last colon; the host is returned as written
/// (brackets kept) and must not be empty, the port must be 1-65535.
pub fn split_host_port(s: &str) -> Result<(&str, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("`{s}` is not host:port"))?;
    if host.is_empty() {
        return Err(format!("`{s}` has no host"));
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("`{s}` has no valid port (1-65535)")),
        Ok(port) => Ok((host, port)),
    }
}

#[cfg(test)]
mod tests;
