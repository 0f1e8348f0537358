//! Whether a process network is whole: every running node linked to, routing to, and
//! holding the current status of every other running node, read from their admin APIs.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chainmesh::NodeId;

use super::{ProcError, ProcNet, POLL};

/// What [`ProcNet::wholeness`] saw: each part whole or not, and what is missing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wholeness {
    /// Every running node has a live session with every other running node (`GET
    /// /v1/peers`).
    pub links: bool,
    /// Every running node has a route to every other running node (`GET /v1/routes`).
    pub routes: bool,
    /// Every running node holds every other running node's current status: the seq and
    /// epoch that node reports for itself (`GET /v1/status`).
    pub statuses: bool,
    /// What is missing, one item per node and part (`node2: no link to node5`), empty when
    /// whole.
    pub missing: Vec<String>,
}

impl Wholeness {
    /// Links, routes and statuses all whole.
    pub fn is_whole(&self) -> bool {
        self.links && self.routes && self.statuses
    }
}

/// How long each part of [`Wholeness`] took to become whole in
/// [`ProcNet::wait_whole`], measured from the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WholeTimes {
    /// Until every link was up.
    pub links: Duration,
    /// Until every route was there.
    pub routes: Duration,
    /// Until every status was current.
    pub statuses: Duration,
    /// Until all three held at once.
    pub whole: Duration,
}

/// One node's admin views, as far as wholeness needs them.
struct View {
    index: usize,
    linked: HashSet<String>,
    routed: HashSet<String>,
    /// (node, seq, epoch) of every status held.
    held: HashSet<(String, u64, String)>,
    own: (u64, String),
}

fn ids(v: &serde_json::Value, list: &str, key: &str, filter: Option<&str>) -> HashSet<String> {
    v[list]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| filter.map_or(true, |f| e[f] == true))
                .filter_map(|e| e[key].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn version(v: &serde_json::Value) -> (u64, String) {
    (
        v["seq"].as_u64().unwrap_or(0),
        v["epoch"].as_str().unwrap_or_default().to_owned(),
    )
}

impl ProcNet {
    /// The nodes wholeness is about: running and not frozen.
    fn live(&self) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| self.is_running(i) && !self.is_paused(i))
            .collect()
    }

    fn view(&self, i: usize) -> Option<View> {
        let peers = self.get_json(i, "/v1/peers")?;
        let routes = self.get_json(i, "/v1/routes")?;
        let status = self.get_json(i, "/v1/status")?;
        let held = status["nodes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|n| {
                        let (seq, epoch) = version(n);
                        Some((n["node_id"].as_str()?.to_owned(), seq, epoch))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(View {
            index: i,
            linked: ids(&peers, "peers", "node_id", Some("connected")),
            routed: ids(&routes, "routes", "dst", None),
            held,
            own: version(&status["self"]),
        })
    }

    /// Looks once at every running, unfrozen node's admin API and says whether the mesh is
    /// whole. A node that does not answer counts as missing everything.
    pub fn wholeness(&self) -> Wholeness {
        let live = self.live();
        let mut views = Vec::new();
        let mut missing = Vec::new();
        for &i in &live {
            match self.view(i) {
                Some(v) => views.push(v),
                None => missing.push(format!("node{i}: admin API does not answer")),
            }
        }
        let unanswered = !missing.is_empty();
        let (mut links, mut routes, mut statuses) = (!unanswered, !unanswered, !unanswered);
        for v in &views {
            for w in &views {
                if v.index == w.index {
                    continue;
                }
                let id: NodeId = self.node_id(w.index);
                let id = id.to_string();
                if !v.linked.contains(&id) {
                    links = false;
                    missing.push(format!("node{}: no link to node{}", v.index, w.index));
                }
                if !v.routed.contains(&id) {
                    routes = false;
                    missing.push(format!("node{}: no route to node{}", v.index, w.index));
                }
                if !v.held.contains(&(id, w.own.0, w.own.1.clone())) {
                    statuses = false;
                    missing.push(format!(
                        "node{}: no current status of node{}",
                        v.index, w.index
                    ));
                }
            }
        }
        Wholeness {
            links,
            routes,
            statuses,
            missing,
        }
    }

    /// Waits until the mesh is whole ([`wholeness`](Self::wholeness)), polling every 25 ms,
    /// and says when each part first held. Fails with [`ProcError::NotWhole`], naming what
    /// is missing, after `timeout`.
    pub fn wait_whole(&self, timeout: Duration) -> Result<WholeTimes, ProcError> {
        let started = Instant::now();
        let (mut links, mut routes, mut statuses) = (None, None, None);
        loop {
            let w = self.wholeness();
            let now = started.elapsed();
            if w.links {
                links.get_or_insert(now);
            }
            if w.routes {
                routes.get_or_insert(now);
            }
            if w.statuses {
                statuses.get_or_insert(now);
            }
            if w.is_whole() {
                return Ok(WholeTimes {
                    links: links.unwrap_or(now),
                    routes: routes.unwrap_or(now),
                    statuses: statuses.unwrap_or(now),
                    whole: now,
                });
            }
            if now >= timeout {
                return Err(ProcError::NotWhole {
                    timeout,
                    missing: w.missing.join("; "),
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// [`wait_whole`](Self::wait_whole), returning only how long the whole mesh took.
    pub fn wait_whole_mesh(&self, timeout: Duration) -> Result<Duration, ProcError> {
        self.wait_whole(timeout).map(|t| t.whole)
    }
}
