//! The soak's network: `chainmesh init --sdk` writes N nodes (configs listing each other as
//! peers, an SDK certificate), and each node runs as its own `chainmesh node` process,
//! started, stopped with SIGTERM and started again on the same config (so on the same
//! ports). Extra arguments (the load generator's) go to every node's command line.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// What went wrong with the network's processes.
#[derive(Debug, thiserror::Error)]
pub enum NodesError {
    /// `chainmesh init` could not run or failed.
    #[error("chainmesh init in {dir}: {detail}")]
    Init {
        /// The network directory.
        dir: PathBuf,
        /// Its error output, or why it did not run.
        detail: String,
    },
    /// A node process did not start or print its ready line.
    #[error("node{node}: {detail} (its log: {log})")]
    Start {
        /// Index of the node.
        node: usize,
        /// What happened.
        detail: String,
        /// Its log file.
        log: PathBuf,
    },
    /// No run of free ports was found for the network.
    #[error("no free run of ports found for {0} nodes")]
    NoPorts(usize),
}

/// One running node process.
#[derive(Debug)]
struct Running {
    child: Child,
    admin: String,
    channel: Option<String>,
    // Held open so the node's later writes to stdout never hit a closed pipe.
    _stdout: BufReader<ChildStdout>,
}

/// N node processes on one generated network.
#[derive(Debug)]
pub struct Nodes {
    bin: PathBuf,
    dir: PathBuf,
    args: Vec<Vec<String>>,
    running: Vec<Option<Running>>,
    log_filter: String,
}

/// How long a node may take to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// Ports tried per node: P2P at base + K, admin at base + 1000 + K, channel at base + 2000 + K.
const PORT_BLOCKS: [u16; 3] = [0, 1000, 2000];

impl Nodes {
    /// Writes an `n`-node network with an SDK certificate into `dir` with `bin`; `args(k)`
    /// are node K's extra arguments.
    pub fn init(
        bin: &Path,
        dir: &Path,
        n: usize,
        args: impl Fn(usize) -> Vec<String>,
        log_filter: &str,
    ) -> Result<Nodes, NodesError> {
        let base = free_base(n)?;
        let init_err = |detail: String| NodesError::Init {
            dir: dir.to_owned(),
            detail,
        };
        let out = Command::new(bin)
            .arg("init")
            .args(["--nodes", &n.to_string(), "--sdk", "--force"])
            .args(["--base-port", &base.to_string()])
            .args(["--channel-port", &(base + PORT_BLOCKS[2]).to_string()])
            .arg("--dir")
            .arg(dir)
            .output()
            .map_err(|e| init_err(e.to_string()))?;
        if !out.status.success() {
            return Err(init_err(String::from_utf8_lossy(&out.stderr).into_owned()));
        }
        Ok(Nodes {
            bin: bin.to_owned(),
            dir: dir.to_owned(),
            args: (0..n).map(args).collect(),
            running: (0..n).map(|_| None).collect(),
            log_filter: log_filter.to_owned(),
        })
    }

    /// Nodes in the network.
    pub fn len(&self) -> usize {
        self.running.len()
    }

    /// Whether the network has no node.
    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Node K's directory (its config, certificates, log and load report).
    pub fn node_dir(&self, k: usize) -> PathBuf {
        self.dir.join(format!("node{k}"))
    }

    /// The SDK certificate directory.
    pub fn sdk_dir(&self) -> PathBuf {
        self.dir.join("sdk")
    }

    /// Starts node K and waits for its ready line.
    pub fn start(&mut self, k: usize) -> Result<(), NodesError> {
        let dir = self.node_dir(k);
        let log = dir.join("node.log");
        let start_err = |detail: String| NodesError::Start {
            node: k,
            detail,
            log: log.clone(),
        };
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| start_err(e.to_string()))?;
        let mut child = Command::new(&self.bin)
            .args(["node", "--config", "config.toml"])
            .args(self.args.get(k).into_iter().flatten())
            .current_dir(&dir)
            .env("RUST_LOG", &self.log_filter)
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .map_err(|e| start_err(e.to_string()))?;
        let mut stdout = BufReader::new(
            child
                .stdout
                .take()
                .ok_or_else(|| start_err("no stdout".into()))?,
        );
        let mut line = String::new();
        // A node that fails to start exits, which closes stdout: the read ends either way.
        let read = stdout.read_line(&mut line);
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .map(str::to_owned)
        };
        let Some(admin) = field("admin=").filter(|_| matches!(read, Ok(n) if n > 0)) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(start_err(format!("no ready line (got {line:?})")));
        };
        let channel = field("channel=");
        if let Some(slot) = self.running.get_mut(k) {
            *slot = Some(Running {
                child,
                admin,
                channel,
                _stdout: stdout,
            });
        }
        Ok(())
    }

    /// Stops node K with SIGTERM (it writes its last report line and closes its links),
    /// killing it if it has not exited within a grace period; nothing when it is not running.
    pub fn terminate(&mut self, k: usize) {
        let Some(mut r) = self.running.get_mut(k).and_then(Option::take) else {
            return;
        };
        let pid = r.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if matches!(r.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = r.child.kill();
        let _ = r.child.wait();
    }

    /// Node K's process ID while it runs.
    pub fn pid(&self, k: usize) -> Option<u32> {
        self.running.get(k)?.as_ref().map(|r| r.child.id())
    }

    /// Node K's admin API address while it runs.
    pub fn admin(&self, k: usize) -> Option<&str> {
        self.running.get(k)?.as_ref().map(|r| r.admin.as_str())
    }

    /// Node K's channel port address while it runs.
    pub fn channel(&self, k: usize) -> Option<&str> {
        self.running.get(k)?.as_ref()?.channel.as_deref()
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for r in self.running.iter_mut().filter_map(Option::take) {
            let mut child = r.child;
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A base port whose three blocks of `n` ports are free now (a race with other programs
/// remains, as with any fixed port; `init` needs the ports before the nodes exist).
fn free_base(n: usize) -> Result<u16, NodesError> {
    let n16 = u16::try_from(n).map_err(|_| NodesError::NoPorts(n))?;
    // Below the usual ephemeral range (32768-60999), so dialled ports do not collide.
    let seed = std::process::id() as u16;
    for attempt in 0u16..64 {
        let base = 20_000 + (seed.wrapping_add(attempt.wrapping_mul(97)) % 8_000);
        let all_free = PORT_BLOCKS.iter().all(|block| {
            (0..n16).all(|k| TcpListener::bind(("127.0.0.1", base + block + k)).is_ok())
        });
        if all_free {
            return Ok(base);
        }
    }
    Err(NodesError::NoPorts(n))
}
