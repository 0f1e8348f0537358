//! Helpers shared by the integration tests: node processes, admin API calls, waiting.

#![allow(dead_code)] // each test crate uses a different subset

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chainmesh::config::{Config, TimersConfig};
use chainmesh::identity::GeneratedNode;

/// Timers short enough for tests: heartbeat 100 ms, idle timeout 300 ms, backoff 50-400 ms.
pub fn fast_timers() -> TimersConfig {
    TimersConfig {
        heartbeat_interval: Duration::from_millis(100),
        idle_timeout_intervals: 3,
        connect_timeout: Duration::from_secs(2),
        handshake_timeout: Duration::from_secs(2),
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        status_interval: Duration::from_millis(100),
    }
}

/// A config for a generated node on ephemeral ports with fast timers and the admin API on.
pub fn config_for(g: &GeneratedNode) -> Config {
    let mut c = chainmesh::localnet::node_config(g);
    c.timers = fast_timers();
    c.admin.listen = "127.0.0.1:0".into();
    c
}

/// Waits for the next refused handshake and returns its reason.
pub async fn next_refusal(
    events: &mut tokio::sync::broadcast::Receiver<chainmesh::peers::PeerEvent>,
) -> String {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(chainmesh::peers::PeerEvent::Refused { reason, .. }) = events.recv().await {
                return reason;
            }
        }
    })
    .await
    .expect("a refusal within 5 s")
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes.
pub async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The same as [`wait_until`] for synchronous tests.
pub fn wait_until_blocking(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `GET http://addr/path` as JSON.
pub fn get_json(addr: &str, path: &str) -> serde_json::Value {
    let mut resp = ureq::get(&format!("http://{addr}{path}"))
        .call()
        .unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"));
    resp.body_mut().read_json().expect("JSON body")
}

/// Connected peers in a `/v1/peers` answer.
pub fn connected_peers(addr: &str) -> usize {
    get_json(addr, "/v1/peers")["peers"]
        .as_array()
        .map(|a| a.iter().filter(|p| p["connected"] == true).count())
        .unwrap_or(0)
}

/// A `chainmesh node` process.
pub struct NodeProcess {
    pub child: Child,
    pub p2p: String,
    pub admin: String,
    pub node_id: String,
    pub config: PathBuf,
    pub stderr_log: PathBuf,
    // Held open so the node's later writes to stdout never hit a closed pipe.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl NodeProcess {
    /// Writes `config` to `path` and starts a node process on it, waiting for its ready line.
    pub fn start(config: &Config, path: &Path) -> NodeProcess {
        std::fs::write(path, config.to_toml()).expect("write config");
        Self::start_existing(path)
    }

    /// Starts a node process on an existing config file.
    pub fn start_existing(path: &Path) -> NodeProcess {
        let stderr_log = path.with_extension("log");
        let log = std::fs::File::create(&stderr_log).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_chainmesh"))
            .args(["node", "--config"])
            .arg(path)
            .env("RUST_LOG", "chainmesh=debug")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn chainmesh node");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        let mut stdout = BufReader::new(stdout);
        stdout.read_line(&mut line).expect("ready line");
        // "chainmesh node <id> p2p=<addr> admin=<addr>"
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .map(str::to_owned)
                .unwrap_or_else(|| {
                    panic!(
                        "no {k} in ready line {line:?}; log: {}",
                        std::fs::read_to_string(&stderr_log).unwrap_or_default()
                    )
                })
        };
        let node_id = line
            .split_whitespace()
            .nth(2)
            .unwrap_or_default()
            .to_owned();
        NodeProcess {
            p2p: field("p2p="),
            admin: field("admin="),
            node_id,
            config: path.to_owned(),
            stderr_log,
            child,
            _stdout: stdout,
        }
    }

    /// Sends a signal to the process.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{sig} failed");
    }

    /// What the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
