//! The link-state routing table, as pure logic: no I/O, no clocks, no locks.
//!
//! Every node signs a list of the nodes it has live links to ([`NeighbourList`]); the lists
//! are flooded, and each node computes its routes from all of them ([`shortest_paths`]). A
//! link counts only when both of its ends name each other, so a member cannot attract
//! traffic for a node it has no link to. A node that leaves is dropped from its
//! neighbours' next lists and is unreachable as soon as those arrive: routes are recomputed
//! from the lists, never counted up from neighbours' distances.
//!
//! What the table stores is bounded: at most [`RoutingLimits::max_nodes`] lists, each of at
//! most [`RoutingLimits::max_neighbours`] neighbours, and a list of a node not held yet is
//! stored only when it links that node to one this node already reaches, so lists of
//! invented nodes are never stored at all.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::failures::Failures;
use super::graph::shortest_paths;
use crate::identity::NodeId;
use crate::wire::{ListVersion, NeighbourList, RouterSummary};

/// Distance at which a node counts as unreachable (FISCO BCOS 3.x's `c_unreachableDistance`).
/// Routes are at most `UNREACHABLE - 1` hops long.
pub const UNREACHABLE: u8 = 10;

/// How to reach one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Route {
    /// The direct neighbour to hand packets to; the destination itself when it is a neighbour.
    pub next_hop: NodeId,
    /// Hops to the destination: 1 for a direct neighbour.
    pub distance: u8,
}

/// How a destination's route changed in a table update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteChange {
    /// The destination had no route and now has one.
    Reachable {
        /// The destination.
        node: NodeId,
        /// Its new route.
        route: Route,
    },
    /// The destination's next hop or distance changed.
    Changed {
        /// The destination.
        node: NodeId,
        /// The route before.
        old: Route,
        /// The route now.
        new: Route,
    },
    /// The destination had a route and has none now.
    Unreachable {
        /// The destination.
        node: NodeId,
        /// The route it had.
        old: Route,
    },
}

/// The table's bounds (`limits.max_routing_nodes`, `limits.max_neighbours_per_list`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutingLimits {
    /// Other nodes' lists held at most: the most nodes the table can route to.
    pub max_nodes: usize,
    /// Neighbours one list may name.
    pub max_neighbours: usize,
}

/// Why a list was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The list names more neighbours than the limit.
    #[error("neighbour list names {count} neighbours, the limit is {max}")]
    TooManyNeighbours {
        /// Neighbours it names.
        count: usize,
        /// `limits.max_neighbours_per_list`.
        max: usize,
    },
    /// The table holds as many lists as it may.
    #[error("routing table full ({max} nodes)")]
    TableFull {
        /// `limits.max_routing_nodes`.
        max: usize,
    },
    /// A list of a node not held yet that attests no link to a node this one reaches.
    #[error("neighbour list of a node that no reachable node confirms")]
    Unanchored,
    /// The signature does not verify under the origin's node ID.
    #[error("neighbour list signature does not verify")]
    BadSignature,
}

impl Rejection {
    /// Whether the neighbour that handed over the list broke the protocol by sending it:
    /// nodes verify lists before passing them on, so a bad signature never comes from an
    /// honest one, and a neighbour's own list over the limit is its own doing. Others (a
    /// full table, an unanchored list, a relayed list within a laxer node's limit) are
    /// dropped and counted.
    pub fn is_misbehaviour(&self, from: &NodeId, origin: &NodeId) -> bool {
        match self {
            Rejection::BadSignature => true,
            Rejection::TooManyNeighbours { .. } => from == origin,
            Rejection::TableFull { .. } | Rejection::Unanchored => false,
        }
    }
}

/// What became of a list offered to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Stored as its origin's newest list: to be passed on to the other neighbours.
    Stored,
    /// Not newer than the list held: nothing to do.
    Stale,
    /// A list of this node itself, newer than the one it holds: signed by a previous run
    /// whose lists are still about. This node is to sign a newer one.
    OwnOutdated(ListVersion),
    /// Not stored, and why.
    Rejected(Rejection),
}

#[derive(Debug, Clone)]
struct Stored {
    list: NeighbourList,
    /// Since when the origin has been unreachable, as [`RoutingTable::collect`] last saw.
    unreachable_since: Option<Instant>,
}

/// A node's routing table: its live links, every node's signed neighbour list, and the
/// routes computed from them.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    local: NodeId,
    limits: RoutingLimits,
    sessions: BTreeSet<NodeId>,
    own: Option<NeighbourList>,
    lists: HashMap<NodeId, Stored>,
    /// Origins stored since the last recomputation: they count as reached when checking
    /// the next list's anchor, so the lists of one response can be taken in one pass.
    fresh: HashSet<NodeId>,
    routes: HashMap<NodeId, Route>,
    failures: Failures,
    summary: Option<RouterSummary>,
    seq: u32,
}

impl RoutingTable {
    /// An empty table for node `local`. Its route seq starts at 1.
    pub fn new(local: NodeId, limits: RoutingLimits) -> Self {
        RoutingTable {
            local,
            limits,
            sessions: BTreeSet::new(),
            own: None,
            lists: HashMap::new(),
            fresh: HashSet::new(),
            routes: HashMap::new(),
            failures: Failures::default(),
            summary: None,
            seq: 1,
        }
    }

    /// The node this table belongs to.
    pub fn local(&self) -> NodeId {
        self.local
    }

    /// The route seq: it changes whenever any route changes.
    pub fn seq(&self) -> u32 {
        self.seq
    }

    /// Whether `node` is a direct neighbour (a live session).
    pub fn is_neighbour(&self, node: &NodeId) -> bool {
        self.sessions.contains(node)
    }

    /// The direct neighbours, in node ID order.
    pub fn neighbours(&self) -> impl Iterator<Item = &NodeId> {
        self.sessions.iter()
    }

    /// Records a new direct link to `node` (distance 1).
    pub fn add_neighbour(&mut self, node: NodeId) -> Vec<RouteChange> {
        if node == self.local || !self.sessions.insert(node) {
            return Vec::new();
        }
        self.recompute()
    }

    /// Records that the direct link to `node` is gone. Its list stays until its next one or
    /// the garbage collection: the nodes behind it may still be reached another way.
    pub fn remove_neighbour(&mut self, node: &NodeId) -> Vec<RouteChange> {
        if !self.sessions.remove(node) {
            return Vec::new();
        }
        self.failures.forget_hop(node);
        self.recompute()
    }

    /// The neighbours this node's own list is to name: its live links, at most
    /// `max_neighbours` of them (the smallest IDs), sorted.
    pub fn own_neighbours(&self) -> Vec<NodeId> {
        self.sessions
            .iter()
            .take(self.limits.max_neighbours)
            .copied()
            .collect()
    }

    /// This node's current signed list.
    pub fn own(&self) -> Option<&NeighbourList> {
        self.own.as_ref()
    }

    /// Sets this node's own signed list, the one it floods and sends in full answers.
    pub fn set_own(&mut self, list: NeighbourList) {
        self.own = Some(list);
        self.summary = None;
    }

    /// Lists held from other nodes.
    pub fn list_count(&self) -> usize {
        self.lists.len()
    }

    /// The cheap checks on a list from neighbour `from`, before its signature is verified:
    /// `Ok` when the list would be stored if it verifies.
    pub fn screen(&self, list: &NeighbourList) -> Result<(), Verdict> {
        if list.origin == self.local {
            // Our current list coming back is an echo; anything else not older is a
            // previous run's.
            return match &self.own {
                Some(own)
                    if list.version < own.version
                        || (list.version == own.version && list.neighbours == own.neighbours) =>
                {
                    Err(Verdict::Stale)
                }
                _ => Err(Verdict::OwnOutdated(list.version)),
            };
        }
        if list.neighbours.len() > self.limits.max_neighbours {
            return Err(Verdict::Rejected(Rejection::TooManyNeighbours {
                count: list.neighbours.len(),
                max: self.limits.max_neighbours,
            }));
        }
        match self.lists.get(&list.origin) {
            Some(held) if held.list.version >= list.version => return Err(Verdict::Stale),
            Some(_) => {}
            None if self.lists.len() >= self.limits.max_nodes => {
                return Err(Verdict::Rejected(Rejection::TableFull {
                    max: self.limits.max_nodes,
                }))
            }
            None if !self.anchored(list) => return Err(Verdict::Rejected(Rejection::Unanchored)),
            None => {}
        }
        Ok(())
    }

    /// Whether `list` links its origin to a node this one reaches: a live session to the
    /// origin, or a neighbour it names that is reached (or was just stored) and names it back.
    fn anchored(&self, list: &NeighbourList) -> bool {
        self.sessions.contains(&list.origin)
            || list.neighbours.iter().any(|v| {
                (self.routes.contains_key(v) || self.fresh.contains(v))
                    && self
                        .lists
                        .get(v)
                        .is_some_and(|s| s.list.names(&list.origin))
            })
    }

    /// Stores a list that passed [`RoutingTable::screen`] and whose signature verified.
    /// Routes change only at the next [`RoutingTable::recompute`].
    pub fn insert(&mut self, list: NeighbourList) {
        self.fresh.insert(list.origin);
        self.summary = None;
        self.lists.insert(
            list.origin,
            Stored {
                list,
                unreachable_since: None,
            },
        );
    }

    /// Screens a list, checks its signature with `verify` and stores it: the whole rule for
    /// one list. Routes change only at the next [`RoutingTable::recompute`].
    pub fn offer(
        &mut self,
        list: NeighbourList,
        verify: impl FnOnce(&NeighbourList) -> bool,
    ) -> Verdict {
        if let Err(v) = self.screen(&list) {
            return v;
        }
        if !verify(&list) {
            return Verdict::Rejected(Rejection::BadSignature);
        }
        self.insert(list);
        Verdict::Stored
    }

    /// Records that a request to `dst` through next hop `via` went unanswered; returns
    /// whether routes changed because `via` is now excluded for `dst`.
    pub fn report_failure(&mut self, dst: NodeId, via: NodeId, now: Instant) -> Vec<RouteChange> {
        if self.failures.report_failure(dst, via, now) {
            self.recompute()
        } else {
            Vec::new()
        }
    }

    /// (destination, next hop) pairs with failures on record: while there are none, an
    /// answer has nothing to clear.
    pub fn tracked_failures(&self) -> usize {
        self.failures.tracked()
    }

    /// Records that `dst` answered through `via`.
    pub fn report_success(&mut self, dst: NodeId, via: NodeId) -> Vec<RouteChange> {
        if self.failures.report_success(dst, via) {
            self.recompute()
        } else {
            Vec::new()
        }
    }

    /// Ends exclusions whose hold-down is over, and drops the lists of origins that have
    /// been unreachable for `hold`. Returns the route changes and how many lists went.
    pub fn collect(&mut self, now: Instant, hold: Duration) -> (Vec<RouteChange>, usize) {
        let changes = if self.failures.expire(now) {
            self.recompute()
        } else {
            Vec::new()
        };
        let before = self.lists.len();
        let routes = &self.routes;
        self.lists.retain(|origin, s| {
            if routes.contains_key(origin) {
                s.unreachable_since = None;
                return true;
            }
            let since = *s.unreachable_since.get_or_insert(now);
            now.saturating_duration_since(since) < hold
        });
        let gone = before - self.lists.len();
        if gone > 0 {
            self.summary = None;
        }
        (changes, gone)
    }

    /// The lists this node offers a neighbour that asks for all: its own, then those of the
    /// nodes it reaches, nearest first (then by node ID), so that the receiver can anchor
    /// each list on one before it. Lists of unreachable origins are kept for a while but
    /// not offered.
    pub fn offered(&self) -> Vec<&NeighbourList> {
        let mut reached: Vec<(u8, &NodeId)> = self
            .routes
            .iter()
            .filter(|(n, _)| self.lists.contains_key(n))
            .map(|(n, r)| (r.distance, n))
            .collect();
        reached.sort();
        self.own
            .iter()
            .chain(
                reached
                    .into_iter()
                    .filter_map(|(_, n)| self.lists.get(n).map(|s| &s.list)),
            )
            .collect()
    }

    /// The summary a RouterSeq announces: the count and digest of [`RoutingTable::offered`]
    /// in origin order. Cached until the lists or routes change.
    pub fn summary(&mut self) -> RouterSummary {
        if let Some(s) = self.summary {
            return s;
        }
        let mut offered: Vec<(&NodeId, ListVersion)> = self
            .offered()
            .into_iter()
            .map(|l| (&l.origin, l.version))
            .collect();
        offered.sort();
        let mut h = openssl::sha::Sha256::new();
        for (origin, v) in &offered {
            h.update(origin.as_bytes());
            h.update(&v.epoch.to_be_bytes());
            h.update(&v.seq.to_be_bytes());
        }
        let s = RouterSummary {
            count: u32::try_from(offered.len()).unwrap_or(u32::MAX),
            digest: h.finish(),
        };
        self.summary = Some(s);
        s
    }

    /// The route to `dst`, if it is reachable.
    pub fn route(&self, dst: &NodeId) -> Option<Route> {
        self.routes.get(dst).copied()
    }

    /// The neighbour to hand a packet for `dst` to, if `dst` is reachable.
    pub fn next_hop(&self, dst: &NodeId) -> Option<NodeId> {
        self.routes.get(dst).map(|r| r.next_hop)
    }

    /// Every reachable destination and its route, sorted by destination.
    pub fn routes(&self) -> Vec<(NodeId, Route)> {
        let mut v: Vec<(NodeId, Route)> = self.routes.iter().map(|(d, r)| (*d, *r)).collect();
        v.sort_by_key(|(d, _)| *d);
        v
    }

    /// The links routes are computed over, each once as (smaller ID, larger ID), sorted:
    /// this node's live links, and the links between reached nodes that both ends' lists
    /// name. Lists of origins no longer reached are left out: they are kept for a while,
    /// but their links are not part of the network any more.
    pub fn links(&self) -> Vec<(NodeId, NodeId)> {
        let pair = |a: NodeId, b: NodeId| if a < b { (a, b) } else { (b, a) };
        let mut links: BTreeSet<(NodeId, NodeId)> =
            self.sessions.iter().map(|n| pair(self.local, *n)).collect();
        let reached = |n: &NodeId| self.routes.contains_key(n);
        for (origin, stored) in self.lists.iter().filter(|(o, _)| reached(o)) {
            for v in stored.list.neighbours.iter().filter(|v| reached(v)) {
                if self.lists.get(v).is_some_and(|s| s.list.names(origin)) {
                    links.insert(pair(*origin, *v));
                }
            }
        }
        links.into_iter().collect()
    }

    /// Recomputes every route from the live links and the lists, returns what changed and
    /// moves the seq on if anything did. A destination whose next hop is excluded for it
    /// takes the shortest path that avoids that next hop, if there is one.
    pub fn recompute(&mut self) -> Vec<RouteChange> {
        self.fresh.clear();
        let lists = &self.lists;
        let list_of = |n: &NodeId| lists.get(n).map(|s| s.list.neighbours.as_slice());
        let mut best = shortest_paths(&self.local, self.sessions.iter().copied(), list_of);
        for (dst, avoid) in self.failures.exclusions() {
            let Some(route) = best.get(&dst) else {
                continue;
            };
            if route.next_hop == dst || !avoid.contains(&route.next_hop) {
                continue;
            }
            let hops = self.sessions.iter().copied().filter(|n| !avoid.contains(n));
            if let Some(alt) = shortest_paths(&self.local, hops, list_of).get(&dst) {
                best.insert(dst, *alt);
            }
        }
        let mut changes = Vec::new();
        for (dst, old) in &self.routes {
            match best.get(dst) {
                None => changes.push(RouteChange::Unreachable {
                    node: *dst,
                    old: *old,
                }),
                Some(new) if new != old => changes.push(RouteChange::Changed {
                    node: *dst,
                    old: *old,
                    new: *new,
                }),
                Some(_) => {}
            }
        }
        for (dst, route) in &best {
            if !self.routes.contains_key(dst) {
                changes.push(RouteChange::Reachable {
                    node: *dst,
                    route: *route,
                });
            }
        }
        if !changes.is_empty() {
            self.routes = best;
            self.seq = self.seq.wrapping_add(1);
            self.summary = None;
        }
        changes
    }
}

#[cfg(test)]
mod tests;
