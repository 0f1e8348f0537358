//! chainmesh as the benchmark drives it: real nodes (`Node::start`, configs built the way
//! `chainmesh::localnet::LocalNet` builds them), used only through `NodeHandle`.
//!
//! `LocalNet` starts every node on the runtime that calls it; the split layout needs the
//! sender on one runtime and its receivers on another, so nodes are started one by one here
//! from the same generated certificates and the same kind of config.

use std::time::Duration;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use chainmesh::config::{Config, IdentityConfig, TimersConfig};
use chainmesh::identity::{generate_node_files, Curve, GeneratedNode};
use chainmesh::{Node, NodeHandle, NodeId};

use crate::harness::{wait_until, Pinned, Receive, Sender, Sides, Sink, Star, System};

/// The module every benchmark message is addressed to.
const MODULE: u16 = 0x0b0b;
/// Messages a receiving module's queue holds before its session stops reading.
const SERVE_QUEUE: usize = 1024;
/// A stalled consumer's queue: small, so that what piles up is on the sender's side.
const STALL_QUEUE: usize = 16;
/// Longest a request may take before the benchmark counts it as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest any set-up step may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// chainmesh nodes with certificates on `curve` (secp256k1, the default, negotiates TLS 1.2).
pub struct Chainmesh {
    pub curve: Curve,
}

/// Started nodes and the directory their certificates live in.
pub struct Cluster {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn handle(&self, i: usize) -> NodeHandle {
        self.nodes[i].handle()
    }
}

/// A node's config as `LocalNet` makes it, with production timers (heartbeat 5 s, idle
/// timeout 15 s) but quick redials so that set-up does not wait on backoff.
fn config(g: &GeneratedNode) -> Config {
    let mut cfg = Config::new(
        IdentityConfig {
            ca_cert: g.ca_cert(),
            node_cert: g.node_cert(),
            node_key: g.node_key(),
        },
        "127.0.0.1:0",
    );
    cfg.timers = TimersConfig {
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        ..TimersConfig::default()
    };
    cfg.admin.listen = String::new();
    cfg
}

impl Chainmesh {
    /// Generates certificates for `n` nodes and starts node `i` on `place(i)`.
    fn cluster<'a>(&self, n: usize, place: impl Fn(usize) -> &'a Pinned) -> Result<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix("chainmesh-bench-")
            .tempdir()
            .context("creating a temporary directory")?;
        let generated =
            generate_node_files(dir.path(), n, self.curve).context("generating certificates")?;
        let mut nodes = Vec::with_capacity(n);
        for (i, g) in generated.iter().enumerate() {
            let cfg = config(g);
            let node = place(i)
                .run(async move { Node::start(cfg, None).await })?
                .with_context(|| format!("starting chainmesh node {i}"))?;
            nodes.push(node);
        }
        Ok(Cluster { nodes, _dir: dir })
    }
}

/// Node 0 of a cluster, sending to the others.
pub struct ChainmeshSender {
    node: NodeHandle,
    peers: Vec<NodeId>,
}

impl Sender for ChainmeshSender {
    fn receivers(&self) -> usize {
        self.peers.len()
    }

    async fn send(&self, to: usize, payload: Bytes) -> Result<()> {
        Ok(self.node.send(self.peers[to], MODULE, payload).await?)
    }

    async fn request(&self, to: usize, payload: Bytes) -> Result<Bytes> {
        Ok(self
            .node
            .request(self.peers[to], MODULE, payload, REQUEST_TIMEOUT)
            .await?)
    }

    // `NodeHandle::broadcast` is being written: until it is committed, the broadcast row
    // sends the same payload to each peer with unicast, and says so. To switch, replace the
    // `unicast_each` line with
    //     self.node.broadcast(GROUP, MODULE, payload).await?;
    // and the label below with "NodeHandle::broadcast".
    async fn send_to_all(&self, payload: Bytes) -> Result<()> {
        unicast_each(&self.node, &self.peers, payload).await?;
        Ok(())
    }

    fn send_to_all_label(&self) -> &'static str {
        "unicast to each peer (NodeHandle::broadcast not available yet)"
    }
}

/// The group every benchmark node is in (the config default).
#[allow(dead_code)] // Used once `send_to_all` switches to `NodeHandle::broadcast`.
const GROUP: &str = "group0";

/// The same payload to each peer, one unicast each.
async fn unicast_each(node: &NodeHandle, peers: &[NodeId], payload: Bytes) -> Result<()> {
    for &peer in peers {
        node.send(peer, MODULE, payload.clone()).await?;
    }
    Ok(())
}

/// The application side of a receiving node: counts what arrives and answers requests with
/// their own payload.
async fn serve(
    mut rx: tokio::sync::mpsc::Receiver<chainmesh::Message>,
    sink: std::sync::Arc<Sink>,
) {
    while let Some(mut msg) = rx.recv().await {
        sink.record(msg.payload.len());
        if let Some(responder) = msg.take_responder() {
            // A response that does not fit the queue makes the requester fail loudly.
            let _ = responder.respond(msg.payload.clone());
        }
    }
}

impl System for Chainmesh {
    const NAME: &'static str = "chainmesh";
    const SHORT: &'static str = "chainmesh";
    type Sender = ChainmeshSender;
    type Nodes = Cluster;

    fn star(
        &self,
        sides: &Sides,
        receivers: usize,
        mode: Receive,
    ) -> Result<Star<ChainmeshSender>> {
        let cluster = self.cluster(receivers + 1, |i| {
            if i == 0 {
                &sides.sender
            } else {
                &sides.receiver
            }
        })?;
        let sink = std::sync::Arc::new(Sink::default());
        let mut stalled = Vec::new();
        for i in 1..=receivers {
            let h = cluster.handle(i);
            match mode {
                Receive::Serve => sides
                    .receiver
                    .spawn(serve(h.register(MODULE, SERVE_QUEUE), sink.clone())),
                // Registered and never read: the session stops reading once it is full.
                Receive::Stall => stalled.push(h.register(MODULE, STALL_QUEUE)),
            }
        }
        let sender = cluster.handle(0);
        let peers: Vec<NodeId> = (1..=receivers)
            .map(|i| cluster.handle(i).node_id())
            .collect();
        let addrs: Vec<String> = (1..=receivers)
            .map(|i| cluster.handle(i).listen_addr().to_string())
            .collect();
        let s = sender.clone();
        // Dialer tasks start on the runtime that adds the target: the sender's.
        sides.sender.run(async move {
            for a in &addrs {
                s.peers().add_target(a);
            }
            wait_until(SETUP_TIMEOUT, "chainmesh sender's sessions", || {
                s.peers().sessions().len() == receivers
            })
            .await
        })??;
        Ok(Star {
            sender: std::sync::Arc::new(ChainmeshSender {
                node: sender,
                peers,
            }),
            sink,
            _keep: Box::new((cluster, stalled)),
        })
    }

    fn nodes(&self, rt: &Pinned, n: usize) -> Result<Cluster> {
        self.cluster(n, |_| rt)
    }

    fn connect_mesh(&self, rt: &Pinned, nodes: &Cluster) -> Result<()> {
        let n = nodes.nodes.len();
        let handles: Vec<NodeHandle> = (0..n).map(|i| nodes.handle(i)).collect();
        rt.run(async move {
            // Node i dials every node after it: one connection per pair.
            for (i, h) in handles.iter().enumerate() {
                for other in &handles[i + 1..] {
                    h.peers().add_target(&other.listen_addr().to_string());
                }
            }
            wait_until(SETUP_TIMEOUT, "a chainmesh full mesh", || {
                handles.iter().all(|h| h.peers().sessions().len() == n - 1)
            })
            .await
        })?
    }

    fn connect_burst(&self, rt: &Pinned, nodes: &Cluster) -> Result<Duration> {
        let n = nodes.nodes.len();
        let hub = nodes.handle(0);
        let hub_addr = hub.listen_addr().to_string();
        let clients: Vec<NodeHandle> = (1..n).map(|i| nodes.handle(i)).collect();
        let elapsed = rt.run(async move {
            let start = std::time::Instant::now();
            for c in &clients {
                c.peers().add_target(&hub_addr);
            }
            wait_until(SETUP_TIMEOUT, "chainmesh clients to connect", || {
                hub.peers().sessions().len() == clients.len()
                    && clients.iter().all(|c| c.peers().sessions().len() == 1)
            })
            .await?;
            let elapsed = start.elapsed();
            for c in &clients {
                c.peers().remove_target(&hub_addr);
            }
            wait_until(SETUP_TIMEOUT, "chainmesh clients to disconnect", || {
                hub.peers().sessions().is_empty()
                    && clients.iter().all(|c| c.peers().sessions().is_empty())
            })
            .await?;
            anyhow::Ok(elapsed)
        })??;
        Ok(elapsed)
    }
}
