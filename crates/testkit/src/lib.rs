//! What the demo, the tests and the benchmarks build on: local networks of in-process nodes on
//! generated certificates ([`LocalNet`]), timers short enough for tests ([`fast_timers`]),
//! an echo service ([`serve_echo`]), and helpers that wait for a condition or an event
//! instead of sleeping ([`wait_until`]).
//!
//! Nothing here is part of a production node; the `chainmesh` library never depends on it.
//!
//! ```
//! use std::time::Duration;
//!
//! use chainmesh_testkit::{LocalNet, LocalNetOptions};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let net = LocalNet::start(LocalNetOptions::new(3)).await?;
//! net.connect_full_mesh();
//! assert!(net.wait_for(Duration::from_secs(10), LocalNet::is_full_mesh).await);
//! net.shutdown().await;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod channel;
mod echo;
mod net;
pub mod netns;
pub mod procs;
pub mod raw;
mod wait;

use std::time::Duration;

use chainmesh::config::{Config, TimersConfig};
use chainmesh::identity::GeneratedNode;
use chainmesh::NodeId;

pub use echo::serve_echo;
pub use net::{node_config, LocalNet, LocalNetError, LocalNetOptions};
pub use wait::{
    connected_peers, get_json, http_agent, next_disconnect, next_refusal, status_and_json,
    wait_until, wait_until_every,
};

/// Timers short enough for tests: heartbeat 100 ms, idle timeout 300 ms, backoff 50-400 ms,
/// status every 100 ms. The one definition of test timers: [`LocalNetOptions`] and the
/// benchmarks derive theirs from it.
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

/// A config for a generated node on ephemeral ports with [`fast_timers`] and the admin API on.
pub fn config_for(g: &GeneratedNode) -> Config {
    let mut c = node_config(g);
    c.timers = fast_timers();
    c.admin.listen = "127.0.0.1:0".into();
    c
}

/// A node ID made of one repeated byte: distinct, ordered and readable in test output.
pub fn id(b: u8) -> NodeId {
    NodeId::from_bytes([b; chainmesh::identity::NODE_ID_LEN])
}
