//! One network of the scale benchmark: started, wired, timed to convergence, watched idle,
//! weighed, and timed again after one node leaves.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use chainmesh::config::TimersConfig;
use chainmesh::node::NodeHandle;
use chainmesh::status::StatusVersion;
use chainmesh::NodeId;
use chainmesh_testkit::{LocalNet, LocalNetOptions};

use super::memory::{rss_bytes, trim_heap};
use super::topology::{Graph, Topology};

/// How often convergence is checked. Each check reads every node's routes and statuses, so
/// it is work the nodes share two cores with; 10 ms keeps it a small part of it.
const POLL: Duration = Duration::from_millis(10);

/// How long a network may take to converge before the run gives up on it.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(300);

/// Quiet time after convergence before the idle window opens: the last answers and
/// confirmations of the start-up exchange are still on their way when routes and statuses
/// are complete.
const SETTLE: Duration = Duration::from_secs(3);

/// What one network measured.
#[derive(Debug, Clone)]
pub struct Figures {
    /// Nodes.
    pub nodes: usize,
    /// Links.
    pub links: usize,
    /// From the first dial until every node's routes are what the topology gives.
    pub routes_start: Duration,
    /// From the first dial until every node holds the current status of every node it
    /// reaches.
    pub statuses_start: Duration,
    /// From the leaving node's stop until every other node's routes are those of the
    /// topology without it.
    pub routes_leave: Duration,
    /// The same for statuses: the leaver's is gone everywhere, the others' still held.
    pub statuses_leave: Duration,
    /// Bytes written per second per node on its links (TLS payload), idle.
    pub idle_link: f64,
    /// Of those, status packet payload per second per node.
    pub idle_status: f64,
    /// Process RSS divided by the nodes, idle.
    pub rss_per_node: u64,
    /// Process RSS growth over the empty process, divided by the nodes.
    pub rss_growth_per_node: u64,
}

/// The timers of every node: production heartbeats (5 s) and status interval (1 s), so
/// the idle figures are those of a deployment, with the tests' quick redials so that
/// wiring a network does not wait on backoff.
fn timers() -> TimersConfig {
    let fast = chainmesh_testkit::fast_timers();
    TimersConfig {
        backoff_initial: fast.backoff_initial,
        backoff_max: fast.backoff_max,
        ..TimersConfig::default()
    }
}

/// What every running node should see: its routes (node and distance, sorted) and the
/// nodes whose status it should hold.
struct Expected {
    routes: Vec<Vec<(NodeId, u8)>>,
}

impl Expected {
    /// Routes over `graph` with node `gone` (if any) removed.
    fn new(graph: &Graph, ids: &[NodeId], gone: Option<usize>) -> Expected {
        let alive = |j: usize| Some(j) != gone;
        let routes = (0..graph.len())
            .map(|i| {
                if !alive(i) {
                    return Vec::new();
                }
                let d = graph.distances(i, alive);
                let mut r: Vec<(NodeId, u8)> = d
                    .iter()
                    .enumerate()
                    .filter_map(|(j, d)| match d {
                        Some(d) if *d > 0 => Some((ids[j], u8::try_from(*d).ok()?)),
                        _ => None,
                    })
                    .collect();
                r.sort();
                r
            })
            .collect();
        Expected { routes }
    }
}

/// Waits until routes, then also statuses, match `expected` on every node of `nodes`
/// (index, handle); returns the time each took from `start`.
async fn converge(
    nodes: &[(usize, NodeHandle)],
    expected: &Expected,
    start: Instant,
) -> Result<(Duration, Duration)> {
    let mut routes_at = None;
    loop {
        if routes_at.is_none()
            && nodes
                .iter()
                .all(|(i, h)| h.reachable_nodes() == expected.routes[*i])
        {
            routes_at = Some(start.elapsed());
        }
        if let Some(r) = routes_at {
            let versions: HashMap<NodeId, StatusVersion> = nodes
                .iter()
                .map(|(_, h)| (h.node_id(), h.status().local_version()))
                .collect();
            let statuses = nodes.iter().all(|(i, h)| {
                let held = h.peer_statuses();
                held.len() == expected.routes[*i].len()
                    && expected.routes[*i].iter().all(|(id, _)| {
                        held.iter()
                            .any(|p| p.node == *id && versions.get(id) == Some(&p.version))
                    })
            });
            if statuses {
                return Ok((r, start.elapsed()));
            }
        }
        if start.elapsed() > CONVERGE_TIMEOUT {
            bail!(
                "not converged after {CONVERGE_TIMEOUT:?} (routes {})",
                if routes_at.is_some() {
                    "done"
                } else {
                    "not done"
                }
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Bytes written so far on every live session of `nodes`.
fn link_bytes(nodes: &[(usize, NodeHandle)]) -> u64 {
    nodes
        .iter()
        .flat_map(|(_, h)| h.peers().sessions())
        .map(|s| s.stats.bytes_out.load(Ordering::Relaxed))
        .sum()
}

/// Status payload bytes sent so far by `nodes`.
fn status_bytes(nodes: &[(usize, NodeHandle)]) -> u64 {
    nodes
        .iter()
        .map(|(_, h)| {
            let s = h.status().stats();
            s.seq_bytes + s.request_bytes + s.response_bytes
        })
        .sum()
}

/// Runs one network of `n` nodes in `topology`, idle for `window`.
pub async fn run(topology: Topology, n: usize, window: Duration) -> Result<Figures> {
    let graph = topology.edges(n)?;
    let leaver = graph
        .leaver()
        .context("no node can leave without splitting the network")?;
    trim_heap();
    let rss_empty = rss_bytes()?;
    let mut net = LocalNet::start(LocalNetOptions {
        timers: timers(),
        ..LocalNetOptions::new(n)
    })
    .await
    .with_context(|| format!("starting {n} nodes"))?;
    let nodes: Vec<(usize, NodeHandle)> = (0..n).map(|i| (i, net.handle(i))).collect();
    let ids: Vec<NodeId> = nodes.iter().map(|(_, h)| h.node_id()).collect();
    let edges = graph.edges();

    let start = Instant::now();
    for &(i, j) in &edges {
        net.connect(i, j);
    }
    let (routes_start, statuses_start) =
        converge(&nodes, &Expected::new(&graph, &ids, None), start)
            .await
            .context("after start")?;

    tokio::time::sleep(SETTLE).await;
    let (l0, s0, t0) = (link_bytes(&nodes), status_bytes(&nodes), Instant::now());
    tokio::time::sleep(window).await;
    let secs = t0.elapsed().as_secs_f64();
    let per_node = |b: u64| b as f64 / secs / n as f64;
    let idle_link = per_node(link_bytes(&nodes).saturating_sub(l0));
    let idle_status = per_node(status_bytes(&nodes).saturating_sub(s0));
    trim_heap();
    let rss = rss_bytes()?;

    let rest: Vec<(usize, NodeHandle)> = nodes
        .iter()
        .filter(|(i, _)| *i != leaver)
        .cloned()
        .collect();
    let expected = Expected::new(&graph, &ids, Some(leaver));
    let start = Instant::now();
    let watch = {
        let rest = rest.clone();
        tokio::spawn(async move { converge(&rest, &expected, start).await })
    };
    net.stop(leaver).await;
    let (routes_leave, statuses_leave) = watch
        .await
        .context("convergence watch")?
        .context("after a node left")?;
    net.shutdown().await;

    let n64 = n as u64;
    Ok(Figures {
        nodes: n,
        links: edges.len(),
        routes_start,
        statuses_start,
        routes_leave,
        statuses_leave,
        idle_link,
        idle_status,
        rss_per_node: rss / n64,
        rss_growth_per_node: rss.saturating_sub(rss_empty) / n64,
    })
}
