//! One `chainmesh node` process: spawned on a config file, its ready line read, signalled,
//! stopped.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::ProcError;

/// How often [`NodeProcess::wait_exit`] looks at the process again.
const EXIT_POLL: Duration = Duration::from_millis(10);

/// The signals the harness sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGKILL: the process dies at once, saying nothing to its peers.
    Kill,
    /// SIGSTOP: the process freezes; its sockets stay open and silent.
    Stop,
    /// SIGCONT: a stopped process runs on.
    Cont,
    /// SIGTERM: the node writes its final load report and stops gracefully.
    Term,
    /// SIGINT: as SIGTERM.
    Int,
    /// SIGHUP: the node reloads its config file.
    Hup,
}

impl Signal {
    fn number(self) -> libc::c_int {
        match self {
            Signal::Kill => libc::SIGKILL,
            Signal::Stop => libc::SIGSTOP,
            Signal::Cont => libc::SIGCONT,
            Signal::Term => libc::SIGTERM,
            Signal::Int => libc::SIGINT,
            Signal::Hup => libc::SIGHUP,
        }
    }
}

/// How to launch a node process.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The `chainmesh` binary.
    pub bin: PathBuf,
    /// The node's config file.
    pub config: PathBuf,
    /// Arguments after `node --config FILE` (e.g. `--load SPEC --load-report FILE`).
    pub args: Vec<OsString>,
    /// A command the node runs under, e.g. `["ip", "netns", "exec", "ns1"]`. It must exec
    /// the node in its own process (as `ip netns exec` does) so that signals reach it.
    pub wrap: Vec<OsString>,
    /// `RUST_LOG` for the node.
    pub log_filter: String,
    /// Where the node's stderr goes (appended to).
    pub log: PathBuf,
    /// How long to wait for the ready line.
    pub ready_timeout: Duration,
}

impl Launch {
    /// Launches `bin node --config config`, logging to `config` with extension `log`, at
    /// level debug for chainmesh, waiting up to 30 s for the ready line.
    pub fn new(bin: impl Into<PathBuf>, config: &Path) -> Launch {
        Launch {
            bin: bin.into(),
            config: config.to_owned(),
            args: Vec::new(),
            wrap: Vec::new(),
            log_filter: "chainmesh=debug".into(),
            log: config.with_extension("log"),
            ready_timeout: Duration::from_secs(30),
        }
    }
}

/// A running `chainmesh node` process and the addresses its ready line gave. Dropping it
/// kills the process (SIGKILL) and reaps it.
#[derive(Debug)]
pub struct NodeProcess {
    child: Child,
    /// The P2P listen address.
    pub p2p: String,
    /// The admin API address (`off` when it serves none).
    pub admin: String,
    /// The read-only admin listener, when there is one.
    pub read: Option<String>,
    /// The channel port, when the node serves one.
    pub channel: Option<String>,
    /// The node ID, as hex.
    pub node_id: String,
    /// The config file it runs on.
    pub config: PathBuf,
    /// Where its stderr goes.
    pub stderr_log: PathBuf,
}

impl NodeProcess {
    /// Starts a node and waits for its ready line
    /// (`chainmesh node <id> p2p=<addr> admin=<addr> [read=<addr>] [channel=<addr>]`).
    pub fn spawn(launch: &Launch) -> Result<NodeProcess, ProcError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&launch.log)
            .map_err(|e| ProcError::io(&launch.log, e))?;
        let mut cmd = match launch.wrap.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&launch.bin);
                c
            }
            None => Command::new(&launch.bin),
        };
        cmd.arg("node")
            .arg("--config")
            .arg(&launch.config)
            .args(&launch.args)
            .env("RUST_LOG", &launch.log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        let mut child = cmd.spawn().map_err(|e| ProcError::io(&launch.bin, e))?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ProcError::NotReady {
                config: launch.config.clone(),
                why: "no stdout".into(),
                log: read_log(&launch.log),
            });
        };
        let (tx, rx) = mpsc::channel();
        // The reader keeps draining stdout after the ready line, so the node never writes to
        // a closed or full pipe.
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            for _ in lines {}
        });
        let line = match rx.recv_timeout(launch.ready_timeout) {
            Ok(line) => line,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                let why = match e {
                    mpsc::RecvTimeoutError::Timeout => {
                        format!("no ready line within {:?}", launch.ready_timeout)
                    }
                    mpsc::RecvTimeoutError::Disconnected => {
                        "it exited before its ready line".into()
                    }
                };
                return Err(ProcError::NotReady {
                    config: launch.config.clone(),
                    why,
                    log: read_log(&launch.log),
                });
            }
        };
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .map(str::to_owned)
        };
        let (Some(p2p), Some(admin), Some(node_id)) = (
            field("p2p="),
            field("admin="),
            line.split_whitespace().nth(2).map(str::to_owned),
        ) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ProcError::NotReady {
                config: launch.config.clone(),
                why: format!("unexpected ready line {line:?}"),
                log: read_log(&launch.log),
            });
        };
        Ok(NodeProcess {
            p2p,
            admin,
            read: field("read="),
            channel: field("channel="),
            node_id,
            config: launch.config.clone(),
            stderr_log: launch.log.clone(),
            child,
        })
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `sig` to the process.
    pub fn signal(&self, sig: Signal) -> Result<(), ProcError> {
        let pid = libc::pid_t::try_from(self.child.id()).map_err(|_| ProcError::Signal {
            pid: self.child.id(),
            source: std::io::Error::other("pid out of range"),
        })?;
        // SAFETY: kill(2) takes plain integers and touches no memory of this process; the
        // pid is our own child's, which is not reaped before `self` is dropped or waited.
        let rc = unsafe { libc::kill(pid, sig.number()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(ProcError::Signal {
                pid: self.child.id(),
                source: std::io::Error::last_os_error(),
            })
        }
    }

    /// Whether the process has exited (it is reaped if so).
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for the process to exit; returns whether it exited 0.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<bool, ProcError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Ok(status.success()),
                Ok(None) if Instant::now() >= deadline => {
                    return Err(ProcError::NoExit {
                        pid: self.child.id(),
                        timeout,
                    })
                }
                Ok(None) => std::thread::sleep(EXIT_POLL),
                Err(e) => return Err(ProcError::io(&self.config, e)),
            }
        }
    }

    /// SIGTERM, then waits up to `timeout` for the exit (SIGKILL if it does not come);
    /// returns whether it exited 0.
    pub fn terminate(&mut self, timeout: Duration) -> Result<bool, ProcError> {
        self.signal(Signal::Term)?;
        match self.wait_exit(timeout) {
            Ok(clean) => Ok(clean),
            Err(e) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                Err(e)
            }
        }
    }

    /// SIGKILL, and reaps the process.
    pub fn kill9(&mut self) -> Result<(), ProcError> {
        self.signal(Signal::Kill)?;
        self.child
            .wait()
            .map(|_| ())
            .map_err(|e| ProcError::io(&self.config, e))
    }

    /// What the process logged so far.
    pub fn log(&self) -> String {
        read_log(&self.stderr_log)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_log(file: &Path) -> String {
    std::fs::read_to_string(file).unwrap_or_default()
}
