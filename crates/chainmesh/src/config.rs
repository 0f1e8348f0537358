//! The node's config file: what it holds, how it is read and checked, and how it is written.
//!
//! A config is TOML. Relative paths inside it are taken from the directory of the file, so a
//! node directory can be moved as a whole. Every problem names the file, the key and what is
//! wrong, and a config that fails any check is never half-applied.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::identity::NodeId;

pub use crate::wire::DEFAULT_MAX_PACKET;

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
    /// Pairwise keys kept for source authentication of relayed packets: one per node this
    /// node exchanges relayed packets with. Past it the oldest is dropped and derived again
    /// (one key agreement) when next needed.
    pub auth_keys: usize,
}

impl LimitsConfig {
    /// Smallest `session_queue_bytes`: room for a few ordinary packets.
    pub const MIN_SESSION_QUEUE_BYTES: usize = 64 * 1024;
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            session_queue_bytes: 8 * 1024 * 1024,
            dedup_sources: 16 * 1024,
            relay_wait: Duration::from_secs(2),
            inbound_handshakes: 256,
            auth_keys: 4096,
        }
    }
}

/// The admin HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address the admin API listens on; empty turns it off.
    pub listen: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: "127.0.0.1:0".into(),
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
            identity,
            p2p: P2pConfig {
                listen: listen.into(),
                peers: Vec::new(),
                groups: default_groups(),
                max_packet_size: DEFAULT_MAX_PACKET,
                compress_threshold: default_compress_threshold(),
                blacklist: Vec::new(),
                whitelist: Vec::new(),
            },
            timers: TimersConfig::default(),
            admin: AdminConfig::default(),
            limits: LimitsConfig::default(),
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

    /// Checks every value that TOML typing alone does not.
    pub fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        let bad = |key: &str, problem: String| ConfigError::Invalid {
            file: file.to_owned(),
            key: key.into(),
            problem,
        };
        self.p2p.listen.parse::<SocketAddr>().map_err(|e| {
            bad(
                "p2p.listen",
                format!("`{}` is not ip:port ({e})", self.p2p.listen),
            )
        })?;
        for (i, peer) in self.p2p.peers.iter().enumerate() {
            check_host_port(peer).map_err(|p| bad(&format!("p2p.peers[{i}]"), p))?;
        }
        if self.p2p.max_packet_size < crate::wire::HEADER_LEN as u32 {
            return Err(bad(
                "p2p.max_packet_size",
                format!("must be at least {} bytes", crate::wire::HEADER_LEN),
            ));
        }
        for (i, g) in self.p2p.groups.iter().enumerate() {
            if g.is_empty() || g.len() > u16::MAX as usize {
                return Err(bad(
                    &format!("p2p.groups[{i}]"),
                    "a group name must be 1 to 65535 bytes".into(),
                ));
            }
        }
        let t = &self.timers;
        for (key, d) in [
            ("timers.heartbeat_interval", t.heartbeat_interval),
            ("timers.connect_timeout", t.connect_timeout),
            ("timers.handshake_timeout", t.handshake_timeout),
            ("timers.backoff_initial", t.backoff_initial),
            ("timers.backoff_max", t.backoff_max),
            ("timers.status_interval", t.status_interval),
        ] {
            if d.is_zero() {
                return Err(bad(key, "must be longer than zero".into()));
            }
        }
        if t.idle_timeout_intervals == 0 {
            return Err(bad(
                "timers.idle_timeout_intervals",
                "must be at least 1".into(),
            ));
        }
        if t.backoff_max < t.backoff_initial {
            return Err(bad(
                "timers.backoff_max",
                "must not be shorter than timers.backoff_initial".into(),
            ));
        }
        let l = &self.limits;
        let in_range = |key: &str, v: usize, min: usize, max: usize| {
            if (min..=max).contains(&v) {
                Ok(())
            } else {
                Err(bad(key, format!("{v} is outside {min}..={max}")))
            }
        };
        in_range(
            "limits.session_queue_bytes",
            l.session_queue_bytes,
            LimitsConfig::MIN_SESSION_QUEUE_BYTES,
            u32::MAX as usize,
        )?;
        in_range("limits.dedup_sources", l.dedup_sources, 1, 1 << 20)?;
        in_range("limits.auth_keys", l.auth_keys, 16, 1 << 20)?;
        in_range(
            "limits.inbound_handshakes",
            l.inbound_handshakes,
            1,
            1 << 16,
        )?;
        if l.relay_wait.is_zero() || l.relay_wait > Duration::from_secs(60) {
            return Err(bad(
                "limits.relay_wait",
                "must be longer than zero and at most 60 s".into(),
            ));
        }
        if !self.admin.listen.is_empty() {
            self.admin.listen.parse::<SocketAddr>().map_err(|e| {
                bad(
                    "admin.listen",
                    format!("`{}` is not ip:port ({e})", self.admin.listen),
                )
            })?;
        }
        Ok(())
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
mod tests {
    use super::*;

    const GOOD: &str = r#"
[identity]
ca_cert = "conf/ca.crt"
node_cert = "conf/node.crt"
node_key = "conf/node.key"

[p2p]
listen = "127.0.0.1:30300"
peers = ["127.0.0.1:30301", "node2.example:30302"]

[timers]
heartbeat_interval = "200ms"

[admin]
listen = "127.0.0.1:31300"
"#;

    #[test]
    fn parses_a_good_config_with_defaults() {
        let c = Config::parse(GOOD, Path::new("x.toml")).unwrap();
        assert_eq!(c.p2p.peers.len(), 2);
        assert_eq!(c.p2p.groups, vec!["group0".to_string()]);
        assert_eq!(c.timers.heartbeat_interval, Duration::from_millis(200));
        assert_eq!(c.timers.idle_timeout_intervals, 3);
        assert_eq!(c.p2p.max_packet_size, DEFAULT_MAX_PACKET);
    }

    #[test]
    fn round_trips_through_toml() {
        let c = Config::parse(GOOD, Path::new("x.toml")).unwrap();
        let again = Config::parse(&c.to_toml(), Path::new("x.toml")).unwrap();
        assert_eq!(c, again);
    }

    #[test]
    fn bad_listen_names_file_and_key() {
        let text = GOOD.replace("127.0.0.1:30300", "nonsense");
        let e = Config::parse(&text, Path::new("/etc/n0.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/etc/n0.toml") && e.contains("p2p.listen"),
            "{e}"
        );
    }

    #[test]
    fn unknown_key_is_refused_with_its_name() {
        let text = GOOD.replace("[admin]", "[admin]\nlisen = \"x\"");
        let e = Config::parse(&text, Path::new("n.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("lisen"), "{e}");
    }

    #[test]
    fn bad_peer_and_zero_timer_are_refused() {
        let text = GOOD.replace("node2.example:30302", "node2.example");
        let e = Config::parse(&text, Path::new("n.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("p2p.peers[1]"), "{e}");
        let text = GOOD.replace("200ms", "0s");
        let e = Config::parse(&text, Path::new("n.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("timers.heartbeat_interval"), "{e}");
    }

    #[test]
    fn limits_default_and_out_of_range_values_name_their_key() {
        let c = Config::parse(GOOD, Path::new("n.toml")).unwrap();
        assert_eq!(c.limits, LimitsConfig::default());
        for (line, key) in [
            ("session_queue_bytes = 1024", "limits.session_queue_bytes"),
            ("dedup_sources = 0", "limits.dedup_sources"),
            ("inbound_handshakes = 0", "limits.inbound_handshakes"),
            ("relay_wait = \"0s\"", "limits.relay_wait"),
        ] {
            let text = format!("{GOOD}\n[limits]\n{line}\n");
            let e = Config::parse(&text, Path::new("n.toml"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{line}: {e}");
        }
        let text = format!("{GOOD}\n[limits]\nrelay_wait = \"500ms\"\ndedup_sources = 64\n");
        let c = Config::parse(&text, Path::new("n.toml")).unwrap();
        assert_eq!(c.limits.relay_wait, Duration::from_millis(500));
        assert_eq!(c.limits.dedup_sources, 64);
    }

    #[test]
    fn write_peers_keeps_the_rest_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("config.toml");
        let text = format!("# my node\n{GOOD}\n# trailing comment\n");
        std::fs::write(&f, &text).unwrap();
        write_peers(&f, &["127.0.0.1:40000".to_string()]).unwrap();
        let after = std::fs::read_to_string(&f).unwrap();
        assert!(after.starts_with("# my node\n"));
        assert!(after.contains("# trailing comment"));
        assert!(after.contains("heartbeat_interval = \"200ms\""));
        let c = Config::load(&f).unwrap();
        assert_eq!(c.p2p.peers, vec!["127.0.0.1:40000".to_string()]);
        assert_eq!(
            after.replace("[\"127.0.0.1:40000\"]", ""),
            text.replace("[\"127.0.0.1:30301\", \"node2.example:30302\"]", "")
        );
    }

    #[test]
    fn write_peers_refuses_a_broken_file_and_leaves_it() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("config.toml");
        std::fs::write(&f, "not [toml").unwrap();
        assert!(write_peers(&f, &[]).is_err());
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "not [toml");
    }

    #[test]
    fn relative_paths_follow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("config.toml");
        std::fs::write(&f, GOOD).unwrap();
        let c = Config::load(&f).unwrap();
        assert_eq!(c.identity.ca_cert, dir.path().join("conf/ca.crt"));
    }
}
