//! Networks of real `chainmesh node` processes on one machine: what the fault, partition and
//! soak runs drive.
//!
//! [`ProcNet::new`] generates a CA and `n` node certificates under a directory, writes each
//! node a config whose listeners are all on port 0 (P2P and admin), starts the processes,
//! reads their ready lines, then fixes each node's P2P port in its config (so a restarted
//! node gets back the port it had, and its peers' dialers find it there) and joins them into
//! a full mesh through the admin API (`POST /v1/peers` with each node's token). With
//! [`ProcNetOptions::load`] every node runs the load generator
//! (`chainmesh node --load SPEC --load-report FILE`) and [`ProcNet::reports`] parses its
//! report ([`LoadReport`]).
//!
//! Faults: [`kill9`](ProcNet::kill9), [`sigstop`](ProcNet::sigstop) /
//! [`sigcont`](ProcNet::sigcont), [`terminate`](ProcNet::terminate) (SIGTERM: the node writes
//! its final report line), [`restart`](ProcNet::restart), and
//! [`renew_cert`](ProcNet::renew_cert) (a new key and certificate from the same CA, through
//! the code path `chainmesh init` issues with: a new node ID on the same port). After a fault,
//! [`wait_whole_mesh`](ProcNet::wait_whole_mesh) waits until every running node reaches every
//! other one and holds its current status, and says how long that took.
//!
//! Every call is blocking (processes, files and HTTP); from async code run them on a
//! blocking thread. Waits poll a condition with a deadline; nothing sleeps for an event.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use chainmesh_testkit::procs::{ProcNet, ProcNetOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let mut opts = ProcNetOptions::new(chainmesh_testkit::procs::default_bin());
//! opts.load = Some("requests=20,broadcasts=5".into());
//! let mut net = ProcNet::new(dir.path(), 3, opts)?;
//! net.wait_whole_mesh(Duration::from_secs(30))?;
//! net.kill9(1)?;
//! net.start(1)?;
//! let took = net.wait_whole_mesh(Duration::from_secs(30))?;
//! println!("whole again after {took:?}");
//! net.terminate_all()?;
//! let last = net.last_report(0)?.expect("a report line");
//! assert_eq!(last.requests.lost, 0);
//! # Ok(())
//! # }
//! ```

mod faults;
mod mesh;
mod process;
/// The `/proc` reader, shared with the admin API's process metrics.
pub use chainmesh_admin::procfs;
mod report;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chainmesh::config::{Config, TimersConfig};
use chainmesh::identity::{generate_node_files, Curve, IdentityError, NetworkCa};
use chainmesh::NodeId;
use chainmesh_admin::{token_path, AdminToken};

pub use faults::{run_faults, FaultPlan, FaultRun, FaultStep};
pub use mesh::{WholeTimes, Wholeness};
pub use process::{Launch, NodeProcess, Signal};
pub use report::{
    last_per_incarnation, read_reports, BroadcastCounts, LoadReport, ReportError, RequestCounts,
    Totals, UnicastCounts,
};

/// How often the waits of [`ProcNet`] look again.
const POLL: Duration = Duration::from_millis(25);

/// The `chainmesh` binary for programs outside cargo's test harness: `CHAINMESH_BIN` if set,
/// else `target/release/chainmesh`. Tests pass `env!("CARGO_BIN_EXE_chainmesh")` instead.
pub fn default_bin() -> PathBuf {
    std::env::var_os("CHAINMESH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/release/chainmesh"))
}

/// What went wrong driving a process network.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// A file or process operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or program.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Certificates could not be made or read.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The admin token could not be made.
    #[error("admin token: {0}")]
    Token(#[from] chainmesh_admin::TokenError),
    /// A node did not print its ready line.
    #[error("node on {config}: {why}; its log:\n{log}")]
    NotReady {
        /// Its config file.
        config: PathBuf,
        /// What happened instead.
        why: String,
        /// What it logged.
        log: String,
    },
    /// A signal could not be sent.
    #[error("signal to pid {pid}: {source}")]
    Signal {
        /// The process.
        pid: u32,
        /// Why.
        source: std::io::Error,
    },
    /// A process did not exit in time.
    #[error("pid {pid} did not exit within {timeout:?}")]
    NoExit {
        /// The process.
        pid: u32,
        /// How long it was given.
        timeout: Duration,
    },
    /// The node is not running (or is stopped with SIGSTOP) and the call needs it running.
    #[error("node {0} is not running")]
    NotRunning(usize),
    /// The node is running and the call needs it stopped.
    #[error("node {0} is running already")]
    Running(usize),
    /// An admin API call failed.
    #[error("node {node}: {what}: {why}")]
    Admin {
        /// Which node.
        node: usize,
        /// The call.
        what: String,
        /// Why.
        why: String,
    },
    /// A load report could not be read.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// A condition did not hold within the time given.
    #[error("not within {timeout:?}: {what}")]
    Timeout {
        /// The condition.
        what: String,
        /// How long it was given.
        timeout: Duration,
    },
    /// The mesh was not whole within the time given.
    #[error("the mesh was not whole within {timeout:?}: {missing}")]
    NotWhole {
        /// How long it was given.
        timeout: Duration,
        /// What was still missing at the end.
        missing: String,
    },
}

impl ProcError {
    fn io(path: &Path, source: std::io::Error) -> ProcError {
        ProcError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// How to build a [`ProcNet`].
#[derive(Debug, Clone)]
pub struct ProcNetOptions {
    /// The `chainmesh` binary.
    pub bin: PathBuf,
    /// The load SPEC every node runs (`--load`), e.g. `requests=50,unicasts=20,broadcasts=5`;
    /// none without. [`ProcNet::set_load`] changes one node's at its next start.
    pub load: Option<String>,
    /// `--load-interval-ms`: how often each node appends a report line.
    pub load_interval: Duration,
    /// Per-node command prefix (node `i` uses `wrap[i]` when present), e.g.
    /// `["ip", "netns", "exec", "ns1"]`; it must exec the node so that signals reach it.
    pub wrap: Vec<Vec<OsString>>,
    /// Per-node IP address to listen on, P2P and admin (node `i` uses `hosts[i]` when
    /// present, else 127.0.0.1); it must be an address the other nodes can dial.
    pub hosts: Vec<String>,
    /// Every node's timers.
    pub timers: TimersConfig,
    /// Changes to node `i`'s config before it is first written.
    pub tweak: Option<fn(usize, &mut Config)>,
    /// The curve of every key.
    pub curve: Curve,
    /// `RUST_LOG` for the nodes (their stderr goes to `nodeK/config.log`).
    pub log_filter: String,
    /// How long a node may take to print its ready line.
    pub ready_timeout: Duration,
    /// How long a node may take to exit after SIGTERM (its load generator first waits for
    /// its outstanding requests).
    pub stop_timeout: Duration,
    /// Whether [`ProcNet::new`] joins the nodes into a full mesh; without, they start with no
    /// peers and [`ProcNet::add_peer`] connects them.
    pub full_mesh: bool,
}

impl ProcNetOptions {
    /// Nodes of `bin` on 127.0.0.1 with [`fast_timers`](crate::fast_timers), no load, a
    /// full mesh, logging at info.
    pub fn new(bin: impl Into<PathBuf>) -> ProcNetOptions {
        ProcNetOptions {
            bin: bin.into(),
            load: None,
            load_interval: Duration::from_millis(200),
            wrap: Vec::new(),
            hosts: Vec::new(),
            timers: crate::fast_timers(),
            tweak: None,
            curve: Curve::Secp256k1,
            log_filter: "info".into(),
            ready_timeout: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(30),
            full_mesh: true,
        }
    }
}

/// One node of the network: its files, and its process while it runs.
struct Slot {
    name: String,
    config: PathBuf,
    report: PathBuf,
    log: PathBuf,
    token: AdminToken,
    node_id: NodeId,
    load: Option<String>,
    p2p: Option<String>,
    proc: Option<NodeProcess>,
    paused: bool,
}

/// A network of `chainmesh node` processes; see the [module](self) documentation. Dropping it
/// kills every process still running.
pub struct ProcNet {
    dir: PathBuf,
    opts: ProcNetOptions,
    slots: Vec<Slot>,
    agent: ureq::Agent,
}

impl ProcNet {
    /// Generates `n` nodes under `dir` (`dir/ca`, `dir/agency`, `dir/nodeK/`), starts them and,
    /// with [`ProcNetOptions::full_mesh`], joins them into a full mesh (links come up soon
    /// after; [`wait_whole_mesh`](Self::wait_whole_mesh) waits for them).
    pub fn new(dir: &Path, n: usize, opts: ProcNetOptions) -> Result<ProcNet, ProcError> {
        let dir = std::path::absolute(dir).map_err(|e| ProcError::io(dir, e))?;
        let generated = generate_node_files(&dir, n, opts.curve)?;
        let mut slots = Vec::with_capacity(n);
        for (i, g) in generated.iter().enumerate() {
            let host = opts.hosts.get(i).map_or("127.0.0.1", String::as_str);
            let mut cfg = crate::node_config(g);
            cfg.p2p.listen = format!("{}:0", bracketed(host));
            cfg.admin.listen = format!("{}:0", bracketed(host));
            cfg.timers = opts.timers.clone();
            if let Some(tweak) = opts.tweak {
                tweak(i, &mut cfg);
            }
            let config = g.dir.join("config.toml");
            std::fs::write(&config, cfg.to_toml()).map_err(|e| ProcError::io(&config, e))?;
            let token = AdminToken::create(&token_path(&config))?;
            slots.push(Slot {
                name: g.name.clone(),
                report: g.dir.join("load.jsonl"),
                log: config.with_extension("log"),
                config,
                token,
                node_id: g.node_id,
                load: opts.load.clone(),
                p2p: None,
                proc: None,
                paused: false,
            });
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(2)))
            .http_status_as_error(false)
            .build()
            .into();
        let mut net = ProcNet {
            dir,
            opts,
            slots,
            agent,
        };
        for i in 0..n {
            net.start(i)?;
            net.fix_port(i)?;
        }
        if net.opts.full_mesh {
            for i in 0..n {
                for j in 0..n {
                    if i != j {
                        let addr = net.p2p(j).ok_or(ProcError::NotRunning(j))?;
                        net.add_peer(i, &addr)?;
                    }
                }
            }
        }
        Ok(net)
    }

    /// Rewrites node `i`'s config with the P2P port it got, so later starts listen there.
    fn fix_port(&self, i: usize) -> Result<(), ProcError> {
        let s = &self.slots[i];
        let p2p = self.p2p(i).ok_or(ProcError::NotRunning(i))?;
        let mut cfg = Config::load(&s.config).map_err(|e| ProcError::Io {
            path: s.config.clone(),
            source: std::io::Error::other(e),
        })?;
        cfg.p2p.listen = p2p;
        std::fs::write(&s.config, cfg.to_toml()).map_err(|e| ProcError::io(&s.config, e))
    }

    /// The directory the network lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many nodes (running or not).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the network has no nodes.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Starts node `i` (stopped or never started) on its config, with its load generator
    /// when it has a load SPEC, and waits for its ready line.
    pub fn start(&mut self, i: usize) -> Result<(), ProcError> {
        if self.slots[i].proc.is_some() {
            return Err(ProcError::Running(i));
        }
        let s = &self.slots[i];
        let mut launch = Launch::new(&self.opts.bin, &s.config);
        launch.log = s.log.clone();
        launch.log_filter = self.opts.log_filter.clone();
        launch.ready_timeout = self.opts.ready_timeout;
        launch.wrap = self.opts.wrap.get(i).cloned().unwrap_or_default();
        if let Some(spec) = &s.load {
            launch.args = vec![
                "--load".into(),
                spec.into(),
                "--load-report".into(),
                s.report.clone().into(),
                "--load-interval-ms".into(),
                self.opts.load_interval.as_millis().to_string().into(),
            ];
        }
        let p = NodeProcess::spawn(&launch)?;
        let s = &mut self.slots[i];
        s.p2p = Some(p.p2p.clone());
        s.proc = Some(p);
        s.paused = false;
        Ok(())
    }

    /// Kills node `i` with SIGKILL: it says nothing to its peers.
    pub fn kill9(&mut self, i: usize) -> Result<(), ProcError> {
        let mut p = self.slots[i].proc.take().ok_or(ProcError::NotRunning(i))?;
        self.slots[i].paused = false;
        p.kill9()
    }

    /// Freezes node `i` with SIGSTOP: its links stay open and fall silent.
    pub fn sigstop(&mut self, i: usize) -> Result<(), ProcError> {
        let s = &mut self.slots[i];
        s.proc
            .as_ref()
            .ok_or(ProcError::NotRunning(i))?
            .signal(Signal::Stop)?;
        s.paused = true;
        Ok(())
    }

    /// Lets a node frozen with [`sigstop`](Self::sigstop) run on (SIGCONT).
    pub fn sigcont(&mut self, i: usize) -> Result<(), ProcError> {
        let s = &mut self.slots[i];
        s.proc
            .as_ref()
            .ok_or(ProcError::NotRunning(i))?
            .signal(Signal::Cont)?;
        s.paused = false;
        Ok(())
    }

    /// Stops node `i` with SIGTERM (thawing it first if frozen) and waits for it to exit;
    /// its load generator writes its final report line first. Returns whether it exited 0.
    pub fn terminate(&mut self, i: usize) -> Result<bool, ProcError> {
        let mut p = self.slots[i].proc.take().ok_or(ProcError::NotRunning(i))?;
        if std::mem::take(&mut self.slots[i].paused) {
            p.signal(Signal::Cont)?;
        }
        p.terminate(self.opts.stop_timeout)
    }

    /// Stops every running node with SIGTERM, all at once, and waits for each; returns
    /// whether all exited 0.
    pub fn terminate_all(&mut self) -> Result<bool, ProcError> {
        let mut running = Vec::new();
        for s in &mut self.slots {
            if let Some(p) = s.proc.take() {
                if std::mem::take(&mut s.paused) {
                    p.signal(Signal::Cont)?;
                }
                p.signal(Signal::Term)?;
                running.push(p);
            }
        }
        let mut clean = true;
        for mut p in running {
            clean &= p.wait_exit(self.opts.stop_timeout)?;
        }
        Ok(clean)
    }

    /// Stops node `i` if it runs (SIGTERM) and starts it again on the same P2P port.
    pub fn restart(&mut self, i: usize) -> Result<(), ProcError> {
        if self.slots[i].proc.is_some() {
            self.terminate(i)?;
        }
        self.start(i)
    }

    /// Gives node `i` a new key and certificate issued by the network's CA (a new node ID)
    /// and restarts it on them, on the same P2P port: stopped with SIGTERM first if it runs.
    /// Returns the new node ID.
    pub fn renew_cert(&mut self, i: usize) -> Result<NodeId, ProcError> {
        if self.slots[i].proc.is_some() {
            self.terminate(i)?;
        }
        let ca = NetworkCa::load(&self.dir)?;
        let g = ca.write_node(&self.dir, &self.slots[i].name)?;
        self.slots[i].node_id = g.node_id;
        self.start(i)?;
        Ok(g.node_id)
    }

    /// The load SPEC node `i` runs from its next start (`None`: no load generator).
    pub fn set_load(&mut self, i: usize, spec: Option<String>) {
        self.slots[i].load = spec;
    }

    /// Whether node `i`'s process runs (frozen or not).
    pub fn is_running(&self, i: usize) -> bool {
        self.slots[i].proc.is_some()
    }

    /// Whether node `i` is frozen with SIGSTOP.
    pub fn is_paused(&self, i: usize) -> bool {
        self.slots[i].paused
    }

    /// Node `i`'s process while it runs.
    pub fn process(&self, i: usize) -> Option<&NodeProcess> {
        self.slots[i].proc.as_ref()
    }

    /// Node `i`'s process ID while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.process(i).map(NodeProcess::pid)
    }

    /// Node `i`'s admin API address while it runs (it changes with every start).
    pub fn admin(&self, i: usize) -> Option<String> {
        self.process(i).map(|p| p.admin.clone())
    }

    /// Node `i`'s P2P address (kept across restarts once known).
    pub fn p2p(&self, i: usize) -> Option<String> {
        self.slots[i].p2p.clone()
    }

    /// Node `i`'s current node ID ([`renew_cert`](Self::renew_cert) changes it).
    pub fn node_id(&self, i: usize) -> NodeId {
        self.slots[i].node_id
    }

    /// The token node `i`'s admin API wants on writes.
    pub fn token(&self, i: usize) -> &str {
        self.slots[i].token.as_str()
    }

    /// Node `i`'s config file.
    pub fn config_path(&self, i: usize) -> &Path {
        &self.slots[i].config
    }

    /// Node `i`'s load report file (every run of the node appends to it).
    pub fn report_path(&self, i: usize) -> &Path {
        &self.slots[i].report
    }

    /// What node `i` logged, over all its runs.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.slots[i].log).unwrap_or_default()
    }

    /// Every complete line of node `i`'s load report, over all its runs.
    pub fn reports(&self, i: usize) -> Result<Vec<LoadReport>, ProcError> {
        Ok(read_reports(&self.slots[i].report)?)
    }

    /// The last complete line of node `i`'s load report.
    pub fn last_report(&self, i: usize) -> Result<Option<LoadReport>, ProcError> {
        Ok(self.reports(i)?.pop())
    }

    /// Polls `cond` every 25 ms until it holds or `timeout` passes; returns whether it held.
    pub fn wait_for(&self, timeout: Duration, mut cond: impl FnMut(&ProcNet) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Makes node `i` dial `address` and keep a connection to it (`POST /v1/peers`; the node
    /// writes it to its config, so it survives restarts).
    pub fn add_peer(&self, i: usize, address: &str) -> Result<(), ProcError> {
        let body = serde_json::json!({ "address": address });
        self.admin_write(i, "POST", "/v1/peers", Some(body))
    }

    /// Makes node `i` forget the peer at `address` (`DELETE /v1/peers/ADDRESS`).
    pub fn remove_peer(&self, i: usize, address: &str) -> Result<(), ProcError> {
        self.admin_write(i, "DELETE", &format!("/v1/peers/{address}"), None)
    }

    fn admin_write(
        &self,
        i: usize,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(), ProcError> {
        let admin = self.admin(i).ok_or(ProcError::NotRunning(i))?;
        let url = format!("http://{admin}{path}");
        let bearer = format!("Bearer {}", self.token(i));
        let resp = match body {
            Some(b) => self
                .agent
                .post(&url)
                .header("Authorization", &bearer)
                .send_json(b),
            None => self
                .agent
                .delete(&url)
                .header("Authorization", &bearer)
                .call(),
        };
        let what = format!("{method} {path}");
        match resp {
            Ok(mut r) if r.status().is_success() => {
                let _ = r.body_mut().read_to_string();
                Ok(())
            }
            Ok(mut r) => Err(ProcError::Admin {
                node: i,
                what,
                why: format!(
                    "{}: {}",
                    r.status(),
                    r.body_mut().read_to_string().unwrap_or_default()
                ),
            }),
            Err(e) => Err(ProcError::Admin {
                node: i,
                what,
                why: e.to_string(),
            }),
        }
    }

    /// `GET path` on node `i`'s admin API, as JSON; `None` when it is not running or does
    /// not answer (a node under load may be slow: callers poll).
    pub fn get_json(&self, i: usize, path: &str) -> Option<serde_json::Value> {
        let admin = self.admin(i)?;
        let mut r = self
            .agent
            .get(&format!("http://{admin}{path}"))
            .call()
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.body_mut().read_json().ok()
    }
}

/// An IPv6 address in brackets, ready for `:port`.
fn bracketed(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}
