//! The `chainmesh` binary and node processes for the command-line tests, and a raw TLS dial;
//! everything else the tests share is in `chainmesh-testkit`.

#![allow(dead_code)] // each test crate uses a different subset

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;

use chainmesh::admission::Admission;
use chainmesh::config::Config;
use chainmesh::tls::TlsContext;
use chainmesh::NodeId;
use chainmesh_testkit::LocalNet;
use parking_lot::RwLock;
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

/// Runs the `chainmesh` binary with `args`, as an operator would, and returns what it did.
pub fn chainmesh<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chainmesh"))
        .args(args)
        .output()
        .expect("run the chainmesh binary")
}

/// Runs the `chainmesh` binary with `args` and asserts that it succeeded.
pub fn chainmesh_ok<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> Output {
    let out = chainmesh(args);
    assert_ok(&out);
    out
}

/// [`chainmesh`] from async code: the process runs on a blocking thread, so the node under
/// test keeps its async workers while the command talks to it.
pub async fn chainmesh_async(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || chainmesh(args))
        .await
        .expect("the command's thread")
}

/// Asserts that a command succeeded, showing its stderr when it did not.
pub fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Opens a TLS connection to node `to` of `net` with node `from`'s certificate, as a peer
/// that speaks the protocol by hand would; returns it with the node ID the other side
/// proved.
pub async fn dial_as(net: &LocalNet, from: usize, to: usize) -> (SslStream<TcpStream>, NodeId) {
    let identity = net.generated(from).load_identity().unwrap();
    let tls = TlsContext::new(&identity, Arc::new(RwLock::new(Admission::default()))).unwrap();
    let tcp = TcpStream::connect(net.addr(to)).await.unwrap();
    tls.connect(tcp).await.unwrap()
}

/// A `chainmesh node` process.
pub struct NodeProcess {
    pub child: Child,
    pub p2p: String,
    pub admin: String,
    /// The channel port, when the node serves one.
    pub channel: Option<String>,
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
            channel: line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("channel="))
                .map(str::to_owned),
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
