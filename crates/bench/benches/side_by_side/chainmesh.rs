//! chainmesh as the benchmark drives it: real nodes (`Node::start`, configs built the way
//! `chainmesh_testkit::LocalNet` builds them), used only through `NodeHandle`.
//!
//! `LocalNet` starts every node on the runtime that calls it; the split layout needs the
//! sender on one runtime and its receivers on another, so nodes are started one by one here
//! from the same generated certificates and the same kind of config.

use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use chainmesh::config::{Config, FlowConfig, TimersConfig};
use chainmesh::identity::{generate_node_files, Curve, GeneratedNode};
use chainmesh::peers::PeerEvent;
use chainmesh::{Node, NodeHandle, NodeId};
use tokio::sync::broadcast;

use crate::harness::{wait_until, Class, Pinned, Receive, Sender, Sides, Sink, Star, System};

/// The module every benchmark message is addressed to.
pub const MODULE: u16 = 0x0b0b;
/// The priority scenario's request module, in every node's `p2p.priority_modules`.
const PRIORITY_MODULE: u16 = 0x0b0c;
/// The priority scenario's request module that is not a priority module: it shares the
/// bulk lane with [`MODULE`], as every module did before lanes.
const ORDINARY_MODULE: u16 = 0x0b0d;
/// The request/response module whose handler runs on the receiving session's task.
const HANDLER_MODULE: u16 = 0x0b0e;
/// The priority scenario's priority module whose handler runs on the session's task.
const PRIORITY_HANDLER_MODULE: u16 = 0x0b0f;
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
/// timeout 15 s: no test-speed heartbeats in the figures) but the tests' quick redials, so
/// that set-up does not wait on backoff. [`PRIORITY_MODULE`] and [`PRIORITY_HANDLER_MODULE`]
/// are priority modules; nothing but the priority scenario sends on them.
pub fn config(g: &GeneratedNode) -> Config {
    let mut cfg = chainmesh_testkit::node_config(g);
    cfg.p2p.priority_modules = vec![PRIORITY_MODULE, PRIORITY_HANDLER_MODULE];
    let fast = chainmesh_testkit::fast_timers();
    cfg.timers = TimersConfig {
        backoff_initial: fast.backoff_initial,
        backoff_max: fast.backoff_max,
        ..TimersConfig::default()
    };
    cfg
}

impl Chainmesh {
    /// Generates certificates for `n` nodes and starts node `i` on `place(i)`.
    fn cluster<'a>(&self, n: usize, place: impl Fn(usize) -> &'a Pinned) -> Result<Cluster> {
        let (dir, generated) = self.certificates(n)?;
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

    /// Certificates for `n` nodes of one CA in a new temporary directory.
    pub fn certificates(&self, n: usize) -> Result<(tempfile::TempDir, Vec<GeneratedNode>)> {
        let dir = tempfile::Builder::new()
            .prefix("chainmesh-bench-")
            .tempdir()
            .context("creating a temporary directory")?;
        let generated =
            generate_node_files(dir.path(), n, self.curve).context("generating certificates")?;
        Ok((dir, generated))
    }

    /// `n` nodes in a line on `rt`, each dialing only the next one, so that node 0 reaches
    /// node `k` through `k - 1` relays on routes learnt by the routing protocol. Returns
    /// node 0 as a sender whose receiver `k - 1` is node `k`, once node 0 reaches the far
    /// end at `n - 1` hops and still has one session.
    pub fn line(&self, rt: &Pinned, n: usize) -> Result<Star<ChainmeshSender>> {
        let cluster = self.cluster(n, |_| rt)?;
        let sink = std::sync::Arc::new(Sink::default());
        for i in 1..n {
            rt.spawn(serve(
                cluster.handle(i).register(MODULE, SERVE_QUEUE),
                sink.clone(),
            ));
        }
        let handles: Vec<NodeHandle> = (0..n).map(|i| cluster.handle(i)).collect();
        let peers: Vec<NodeId> = handles[1..].iter().map(NodeHandle::node_id).collect();
        let hs = handles.clone();
        rt.run(async move {
            for pair in hs.windows(2) {
                pair[0]
                    .peers()
                    .add_target(&pair[1].listen_addr().to_string());
            }
            let (first, last) = (&hs[0], &hs[n - 1]);
            let far = u8::try_from(n - 1)?;
            wait_until(SETUP_TIMEOUT, "routes along the chainmesh line", || {
                first
                    .reachable_nodes()
                    .iter()
                    .any(|(id, d)| *id == last.node_id() && *d == far)
                    && last
                        .reachable_nodes()
                        .iter()
                        .any(|(id, d)| *id == first.node_id() && *d == far)
            })
            .await?;
            anyhow::Ok(())
        })??;
        let sessions = handles[0].peers().sessions().len();
        if sessions != 1 {
            bail!("the line's first node has {sessions} sessions, not 1");
        }
        Ok(Star {
            sender: std::sync::Arc::new(ChainmeshSender {
                node: handles[0].clone(),
                peers,
            }),
            sink,
            _keep: Box::new(cluster),
        })
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

    async fn request_in(&self, to: usize, class: Class, payload: Bytes) -> Result<Bytes> {
        let module = match class {
            Class::Priority => PRIORITY_MODULE,
            Class::Ordinary => ORDINARY_MODULE,
            Class::OnTask => HANDLER_MODULE,
            Class::PriorityOnTask => PRIORITY_HANDLER_MODULE,
        };
        Ok(self
            .node
            .request(self.peers[to], module, payload, REQUEST_TIMEOUT)
            .await?)
    }

    fn has_classes(&self) -> bool {
        true
    }

    fn limit_links(&self, bytes_per_sec: Option<u64>) -> bool {
        let flow = match bytes_per_sec {
            None => FlowConfig::default(),
            Some(rate) => FlowConfig {
                enable: true,
                // A burst of a fiftieth of a second: two 1 MiB messages at 100 MB/s.
                time_window: Duration::from_millis(20),
                conn_outgoing_bytes_per_sec: rate,
                modules_without_limit: vec![PRIORITY_MODULE, PRIORITY_HANDLER_MODULE],
                ..FlowConfig::default()
            },
        };
        self.node.flow().reconfigure(&flow);
        true
    }

    // One `NodeHandle::broadcast` to GROUP, whose members (a `StaticMembership` set in
    // `star`) are the sender and every receiver: encoded once, the same bytes queued on
    // each session.
    async fn send_to_all(&self, payload: Bytes) -> Result<()> {
        let f = self.node.broadcast(GROUP, MODULE, payload).await?;
        if f.queued.len() != self.peers.len() {
            bail!(
                "broadcast queued for {} of {} peers ({} unreachable, {} dropped)",
                f.queued.len(),
                self.peers.len(),
                f.unreachable.len(),
                f.dropped.len()
            );
        }
        Ok(())
    }

    fn send_to_all_label(&self) -> &'static str {
        "NodeHandle::broadcast to a group of the sender and every receiver"
    }
}

/// The group every benchmark node is in (the config default).
const GROUP: &str = "group0";

/// The application side of a receiving node: counts what arrives and answers requests with
/// their own payload.
pub async fn serve(
    mut rx: tokio::sync::mpsc::Receiver<chainmesh::Message>,
    sink: std::sync::Arc<Sink>,
) {
    while let Some(msg) = rx.recv().await {
        answer(msg, &sink);
    }
}

/// Counts `msg` and answers it with its own payload if it is a request.
fn answer(mut msg: chainmesh::Message, sink: &Sink) {
    sink.record(msg.payload.len());
    if let Some(responder) = msg.take_responder() {
        // A response that does not fit the queue makes the requester fail loudly.
        let _ = responder.respond(msg.payload.clone());
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
                Receive::Serve => {
                    for module in [MODULE, PRIORITY_MODULE, ORDINARY_MODULE] {
                        sides
                            .receiver
                            .spawn(serve(h.register(module, SERVE_QUEUE), sink.clone()));
                    }
                    for module in [HANDLER_MODULE, PRIORITY_HANDLER_MODULE] {
                        let sink = sink.clone();
                        h.register_handler(module, move |msg| answer(msg, &sink));
                    }
                }
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
        let members = chainmesh::routing::StaticMembership::new();
        members.set_group(GROUP, peers.iter().copied().chain([sender.node_id()]));
        sender.set_membership(std::sync::Arc::new(members));
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
            // The burst ends at the last `Connected` event, not at the next poll of the
            // session lists: a poll every millisecond added up to 1-2 ms to a burst of
            // about 20 ms, where the baseline's end is the moment its last dial returns.
            let mut events: Vec<_> = std::iter::once(&hub)
                .chain(&clients)
                .map(NodeHandle::events)
                .collect();
            let start = std::time::Instant::now();
            for c in &clients {
                c.peers().add_target(&hub_addr);
            }
            let (hub_events, client_events) = events.split_at_mut(1);
            let wanted = std::iter::once((&mut hub_events[0], clients.len()))
                .chain(client_events.iter_mut().map(|e| (e, 1)));
            tokio::time::timeout(SETUP_TIMEOUT, async {
                for (rx, n) in wanted {
                    connected(rx, n).await?;
                }
                anyhow::Ok(())
            })
            .await
            .context("chainmesh clients to connect")??;
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

/// Waits for `n` `Connected` events on `rx`.
async fn connected(rx: &mut broadcast::Receiver<PeerEvent>, n: usize) -> Result<()> {
    let mut seen = 0;
    while seen < n {
        if let PeerEvent::Connected { .. } = rx.recv().await.context("peer events")? {
            seen += 1;
        }
    }
    Ok(())
}

/// What the status-convergence scenario measured.
pub struct StatusFigures {
    /// Seconds from `set_app_status` on node 0 until every other node holds that version,
    /// one per change.
    pub converge: Vec<f64>,
    /// Status engine payload bytes sent per second per node, idle mesh.
    pub engine_bytes: f64,
    /// All bytes written per second per node on its links (TLS payload: status and routing
    /// packets with their headers, plus heartbeats), idle mesh.
    pub link_bytes: f64,
}

impl Chainmesh {
    /// Status synchronization on `n` nodes in a full mesh with the default timers
    /// (`timers.status_interval` 1 s): first the steady-state traffic over `window` once
    /// every node knows every other's status, then `changes` changes of node 0's
    /// application status, each timed until the `n - 1` others all hold it.
    pub fn status_convergence(
        &self,
        rt: &Pinned,
        n: usize,
        changes: usize,
        window: Duration,
    ) -> Result<StatusFigures> {
        let nodes = self.cluster(n, |_| rt)?;
        self.connect_mesh(rt, &nodes)?;
        let handles: Vec<NodeHandle> = (0..n).map(|i| nodes.handle(i)).collect();
        rt.run(async move {
            wait_until(SETUP_TIMEOUT, "every node to know every status", || {
                handles.iter().all(|h| h.peer_statuses().len() == n - 1)
            })
            .await?;
            // Let the set-up traffic (route tables, first status exchanges) drain.
            tokio::time::sleep(Duration::from_secs(3)).await;
            let engine = |hs: &[NodeHandle]| -> u64 {
                hs.iter()
                    .map(|h| {
                        let s = h.status().stats();
                        s.seq_bytes + s.request_bytes + s.response_bytes
                    })
                    .sum()
            };
            let link = |hs: &[NodeHandle]| -> u64 {
                hs.iter()
                    .flat_map(|h| h.peers().sessions())
                    .map(|s| s.stats.bytes_out.load(std::sync::atomic::Ordering::Relaxed))
                    .sum()
            };
            let (e0, l0, t0) = (engine(&handles), link(&handles), std::time::Instant::now());
            tokio::time::sleep(window).await;
            let secs = t0.elapsed().as_secs_f64();
            let per_node = |b: u64| b as f64 / secs / n as f64;
            let engine_bytes = per_node(engine(&handles).saturating_sub(e0));
            let link_bytes = per_node(link(&handles).saturating_sub(l0));
            let origin = handles[0].node_id();
            let mut converge = Vec::with_capacity(changes);
            for c in 0..changes {
                let start = std::time::Instant::now();
                let v = handles[0].set_app_status(Bytes::from(format!("height={}", 1000 + c)))?;
                wait_until(
                    SETUP_TIMEOUT,
                    &format!("status change {c} to converge"),
                    || {
                        handles[1..]
                            .iter()
                            .all(|h| h.peer_status(&origin).is_some_and(|p| p.version == v))
                    },
                )
                .await?;
                converge.push(start.elapsed().as_secs_f64());
                // Changes land at different points of the announcement cycle.
                tokio::time::sleep(Duration::from_millis(137)).await;
            }
            anyhow::Ok(StatusFigures {
                converge,
                engine_bytes,
                link_bytes,
            })
        })?
    }
}
