//! The `chainmesh` binary and node processes for the command-line tests, and a raw TLS dial;
//! everything else the tests share is in `chainmesh-testkit` (node processes are its
//! `procs::NodeProcess`).

#![allow(dead_code)] // each test crate uses a different subset

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use chainmesh::admission::Admission;
use chainmesh::config::Config;
use chainmesh::tls::{TlsContext, TlsStream};
use chainmesh::NodeId;
#[allow(unused_imports)] // Signal: for the tests that send them
pub use chainmesh_testkit::procs::{Launch, NodeProcess, Signal};
use chainmesh_testkit::LocalNet;
use parking_lot::RwLock;
use tokio::net::TcpStream;

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
pub async fn dial_as(net: &LocalNet, from: usize, to: usize) -> (TlsStream<TcpStream>, NodeId) {
    let identity = net.generated(from).load_identity().unwrap();
    let tls = TlsContext::new(&identity, Arc::new(RwLock::new(Admission::default()))).unwrap();
    let tcp = TcpStream::connect(net.addr(to)).await.unwrap();
    tls.connect(tcp).await.unwrap()
}

/// Writes `config` to `path` and starts a node process on it, waiting for its ready line.
pub fn start_node(config: &Config, path: &Path) -> NodeProcess {
    std::fs::write(path, config.to_toml()).expect("write config");
    start_existing(path)
}

/// Starts a node process on an existing config file, logging at debug for chainmesh.
pub fn start_existing(path: &Path) -> NodeProcess {
    NodeProcess::spawn(&Launch::new(env!("CARGO_BIN_EXE_chainmesh"), path))
        .unwrap_or_else(|e| panic!("{e}"))
}
