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
mod tests {
    use std::collections::{BTreeMap, VecDeque};

    use proptest::prelude::*;

    use super::*;
    use crate::test_support::id;

    const LIMITS: RoutingLimits = RoutingLimits {
        max_nodes: 64,
        max_neighbours: 16,
    };

    /// A stand-in signature bound to the list's content: the tests of the rules use IDs
    /// that are not keys, `signing.rs` tests the real signatures.
    fn fake_sig(l: &NeighbourList) -> [u8; 64] {
        let h = openssl::sha::sha256(&l.signed_message());
        let mut s = [0u8; 64];
        s[..32].copy_from_slice(&h);
        s[32..].copy_from_slice(&h);
        s
    }

    fn verify(l: &NeighbourList) -> bool {
        l.signature == fake_sig(l)
    }

    fn signed(origin: NodeId, seq: u32, mut neighbours: Vec<NodeId>) -> NeighbourList {
        neighbours.sort();
        neighbours.dedup();
        neighbours.retain(|n| *n != origin);
        let mut l = NeighbourList {
            origin,
            version: ListVersion { epoch: 1, seq },
            neighbours,
            signature: [0; 64],
        };
        l.signature = fake_sig(&l);
        l
    }

    /// Nodes with tables, links, and the lists in flight between them, flooded like the
    /// routing service floods them.
    #[derive(Default)]
    struct Sim {
        tables: BTreeMap<NodeId, RoutingTable>,
        seqs: BTreeMap<NodeId, u32>,
        queue: VecDeque<(NodeId, NodeId, NeighbourList)>,
    }

    impl Sim {
        fn new(nodes: usize, links: &[(usize, usize)]) -> Sim {
            let mut sim = Sim::default();
            for n in 0..nodes {
                let node = id(n as u8 + 1);
                sim.tables.insert(node, RoutingTable::new(node, LIMITS));
                sim.republish(node);
            }
            for (a, b) in links {
                sim.link(id(*a as u8 + 1), id(*b as u8 + 1));
            }
            sim
        }

        fn link(&mut self, a: NodeId, b: NodeId) {
            if a == b || self.tables[&a].is_neighbour(&b) {
                return;
            }
            self.tables.get_mut(&a).unwrap().add_neighbour(b);
            self.tables.get_mut(&b).unwrap().add_neighbour(a);
            self.republish(a);
            self.republish(b);
        }

        /// Node `n` leaves: its links go down and its neighbours sign new lists.
        fn remove(&mut self, n: NodeId) {
            let nbs: Vec<NodeId> = self.tables[&n].neighbours().copied().collect();
            self.tables.remove(&n);
            for nb in nbs {
                self.tables.get_mut(&nb).unwrap().remove_neighbour(&n);
                self.republish(nb);
            }
        }

        fn republish(&mut self, n: NodeId) {
            let seq = self.seqs.entry(n).or_insert(0);
            *seq += 1;
            let t = self.tables.get_mut(&n).unwrap();
            let list = signed(n, *seq, t.own_neighbours());
            t.set_own(list.clone());
            for nb in t.neighbours() {
                self.queue.push_back((n, *nb, list.clone()));
            }
        }

        /// Delivers the next list in flight; returns the node that received it.
        fn step(&mut self) -> Option<NodeId> {
            let (from, to, list) = self.queue.pop_front()?;
            let Some(t) = self.tables.get_mut(&to) else {
                return Some(to);
            };
            if !t.is_neighbour(&from) {
                return Some(to);
            }
            if t.offer(list.clone(), verify) == Verdict::Stored {
                t.recompute();
                for nb in t.neighbours() {
                    if *nb != from && *nb != list.origin {
                        self.queue.push_back((to, *nb, list.clone()));
                    }
                }
            }
            Some(to)
        }

        /// Floods until quiet, then repairs like the periodic summaries do: a node whose
        /// neighbour's summary differs takes all the lists that neighbour offers.
        fn converge(&mut self) {
            for _ in 0..1000 {
                while self.step().is_some() {}
                let mut repaired = false;
                let nodes: Vec<NodeId> = self.tables.keys().copied().collect();
                for a in &nodes {
                    let nbs: Vec<NodeId> = self.tables[a].neighbours().copied().collect();
                    for b in nbs {
                        let sa = self.tables.get_mut(a).unwrap().summary();
                        let tb = self.tables.get_mut(&b).unwrap();
                        if tb.summary() != sa {
                            let offered: Vec<NeighbourList> =
                                tb.offered().into_iter().cloned().collect();
                            let ta = self.tables.get_mut(a).unwrap();
                            let mut stored = false;
                            for l in offered {
                                stored |= ta.offer(l, verify) == Verdict::Stored;
                            }
                            if stored {
                                ta.recompute();
                                repaired = true;
                            }
                        }
                    }
                }
                if !repaired {
                    return;
                }
            }
            panic!("no convergence");
        }

        fn routes(&self) -> BTreeMap<NodeId, Vec<(NodeId, Route)>> {
            self.tables.iter().map(|(n, t)| (*n, t.routes())).collect()
        }
    }

    /// Hop counts from `from` over the undirected `links` among nodes still in `alive`.
    fn true_distances(from: NodeId, links: &[(NodeId, NodeId)]) -> HashMap<NodeId, u8> {
        let mut dist = HashMap::new();
        dist.insert(from, 0u8);
        let mut frontier = vec![from];
        let mut d = 0u8;
        while !frontier.is_empty() {
            d += 1;
            let mut next = Vec::new();
            for u in frontier {
                for (a, b) in links {
                    let v = if *a == u {
                        *b
                    } else if *b == u {
                        *a
                    } else {
                        continue;
                    };
                    if let std::collections::hash_map::Entry::Vacant(e) = dist.entry(v) {
                        e.insert(d);
                        next.push(v);
                    }
                }
            }
            frontier = next;
        }
        dist.remove(&from);
        dist.retain(|_, d| *d < UNREACHABLE);
        dist
    }

    fn ids(links: &[(usize, usize)]) -> Vec<(NodeId, NodeId)> {
        links
            .iter()
            .filter(|(a, b)| a != b)
            .map(|(a, b)| (id(*a as u8 + 1), id(*b as u8 + 1)))
            .collect()
    }

    #[test]
    fn a_line_converges_to_attested_routes() {
        let mut sim = Sim::new(3, &[(0, 1), (1, 2)]);
        sim.converge();
        let a = &sim.tables[&id(1)];
        assert_eq!(
            a.route(&id(3)),
            Some(Route {
                next_hop: id(2),
                distance: 2
            })
        );
        assert_eq!(a.list_count(), 2);
    }

    #[test]
    fn a_claimed_link_the_other_end_denies_changes_nothing() {
        // 1 - 2 - 3, and 4 linked to 1 only, claiming to be linked to 3 as well.
        let mut sim = Sim::new(4, &[(0, 1), (1, 2), (0, 3)]);
        sim.converge();
        let before = sim.tables[&id(1)].routes();
        let t = sim.tables.get_mut(&id(1)).unwrap();
        let lie = signed(id(4), 99, vec![id(1), id(3)]);
        assert_eq!(t.offer(lie, verify), Verdict::Stored);
        t.recompute();
        assert_eq!(t.routes(), before);
        assert_eq!(t.next_hop(&id(3)), Some(id(2)));
    }

    #[test]
    fn versions_replace_only_forwards() {
        let mut t = RoutingTable::new(id(1), LIMITS);
        t.add_neighbour(id(2));
        assert_eq!(
            t.offer(signed(id(2), 5, vec![id(1)]), verify),
            Verdict::Stored
        );
        assert_eq!(
            t.offer(signed(id(2), 5, vec![id(1)]), verify),
            Verdict::Stale
        );
        assert_eq!(
            t.offer(signed(id(2), 4, vec![id(1), id(3)]), verify),
            Verdict::Stale
        );
        let mut newer_epoch = signed(id(2), 1, vec![id(1)]);
        newer_epoch.version.epoch = 2;
        newer_epoch.signature = fake_sig(&newer_epoch);
        assert_eq!(t.offer(newer_epoch.clone(), verify), Verdict::Stored);
        // A replay of the older epoch is refused however high its seq.
        assert_eq!(
            t.offer(signed(id(2), 1000, vec![id(1)]), verify),
            Verdict::Stale
        );
        // An unsigned list is refused and changes nothing.
        let mut bad = signed(id(2), 1, vec![id(1), id(3)]);
        bad.version.epoch = 3;
        assert_eq!(
            t.offer(bad, verify),
            Verdict::Rejected(Rejection::BadSignature)
        );
    }

    #[test]
    fn own_lists_echoed_back_are_stale_and_a_previous_runs_are_outdated() {
        let mut t = RoutingTable::new(id(1), LIMITS);
        let own = signed(id(1), 3, vec![id(2)]);
        t.set_own(own.clone());
        assert_eq!(t.offer(own, verify), Verdict::Stale);
        let old_run = signed(id(1), 7, vec![id(9)]);
        assert_eq!(
            t.offer(old_run, verify),
            Verdict::OwnOutdated(ListVersion { epoch: 1, seq: 7 })
        );
    }

    #[test]
    fn lists_beyond_the_caps_are_refused() {
        let limits = RoutingLimits {
            max_nodes: 2,
            max_neighbours: 2,
        };
        let mut t = RoutingTable::new(id(1), limits);
        for n in 2..=4 {
            t.add_neighbour(id(n));
        }
        let big = signed(id(2), 1, vec![id(1), id(3), id(4)]);
        let r = t.offer(big, verify);
        assert_eq!(
            r,
            Verdict::Rejected(Rejection::TooManyNeighbours { count: 3, max: 2 })
        );
        assert_eq!(
            t.offer(signed(id(2), 1, vec![id(1)]), verify),
            Verdict::Stored
        );
        assert_eq!(
            t.offer(signed(id(3), 1, vec![id(1)]), verify),
            Verdict::Stored
        );
        assert_eq!(
            t.offer(signed(id(4), 1, vec![id(1)]), verify),
            Verdict::Rejected(Rejection::TableFull { max: 2 })
        );
        assert_eq!(t.list_count(), 2);
        // Updates of held origins still go in.
        assert_eq!(t.offer(signed(id(3), 2, vec![]), verify), Verdict::Stored);
        assert!(Rejection::BadSignature.is_misbehaviour(&id(2), &id(3)));
        let big = Rejection::TooManyNeighbours { count: 3, max: 2 };
        assert!(big.is_misbehaviour(&id(2), &id(2)) && !big.is_misbehaviour(&id(2), &id(3)));
    }

    #[test]
    fn lists_of_nodes_nobody_reachable_confirms_are_not_stored() {
        let mut t = RoutingTable::new(id(1), LIMITS);
        t.add_neighbour(id(2));
        t.offer(signed(id(2), 1, vec![id(1)]), verify);
        t.recompute();
        // 9 claims 2, which does not name 9.
        assert_eq!(
            t.offer(signed(id(9), 1, vec![id(2)]), verify),
            Verdict::Rejected(Rejection::Unanchored)
        );
        // In one response 2's new list naming 3 anchors 3's list after it.
        t.offer(signed(id(2), 2, vec![id(1), id(3)]), verify);
        assert_eq!(
            t.offer(signed(id(3), 1, vec![id(2), id(4)]), verify),
            Verdict::Stored
        );
        assert_eq!(
            t.offer(signed(id(4), 1, vec![id(3)]), verify),
            Verdict::Stored
        );
        t.recompute();
        assert_eq!(t.route(&id(4)).map(|r| r.distance), Some(3));
    }

    #[test]
    fn lists_of_unreachable_origins_go_after_the_hold() {
        let mut sim = Sim::new(3, &[(0, 1), (1, 2)]);
        sim.converge();
        sim.remove(id(2));
        sim.converge();
        let t = sim.tables.get_mut(&id(1)).unwrap();
        assert!(t.routes().is_empty());
        let hold = Duration::from_secs(30);
        let t0 = Instant::now();
        assert_eq!(t.collect(t0, hold).1, 0);
        assert_eq!(t.collect(t0 + hold - Duration::from_secs(1), hold).1, 0);
        assert_eq!(t.collect(t0 + hold, hold).1, 2);
        assert_eq!(t.list_count(), 0);
    }

    #[test]
    fn a_next_hop_that_keeps_failing_is_routed_around_until_the_hold_down_ends() {
        // 1 reaches 4 through 2 or 3, 2 being the smaller ID.
        let mut sim = Sim::new(4, &[(0, 1), (0, 2), (1, 3), (2, 3)]);
        sim.converge();
        let t = sim.tables.get_mut(&id(1)).unwrap();
        assert_eq!(t.next_hop(&id(4)), Some(id(2)));
        let t0 = Instant::now();
        assert!(t.report_failure(id(4), id(2), t0).is_empty());
        assert!(t.report_failure(id(4), id(2), t0).is_empty());
        let ch = t.report_failure(id(4), id(2), t0);
        assert_eq!(ch.len(), 1);
        assert_eq!(t.next_hop(&id(4)), Some(id(3)));
        // Other destinations keep their routes through 2.
        assert_eq!(t.next_hop(&id(2)), Some(id(2)));
        let hold = Duration::from_secs(30);
        assert!(
            t.collect(t0 + super::super::failures::HOLD_DOWN, hold)
                .0
                .len()
                == 1
        );
        assert_eq!(t.next_hop(&id(4)), Some(id(2)));
    }

    #[test]
    fn a_failing_only_path_stays_in_use() {
        let mut sim = Sim::new(3, &[(0, 1), (1, 2)]);
        sim.converge();
        let t = sim.tables.get_mut(&id(1)).unwrap();
        let t0 = Instant::now();
        for _ in 0..5 {
            t.report_failure(id(3), id(2), t0);
        }
        assert_eq!(t.next_hop(&id(3)), Some(id(2)));
    }

    /// Random graphs: a node count and links among them.
    fn graph() -> impl Strategy<Value = (usize, Vec<(usize, usize)>)> {
        (2usize..9).prop_flat_map(|n| (Just(n), prop::collection::vec((0..n, 0..n), 0..20)))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever every node claims, a route exists exactly as far as the links both ends
        /// name: the distances are those of the mutually attested graph.
        #[test]
        fn no_route_uses_a_link_one_end_denies(
            n in 2usize..9,
            claims in prop::collection::vec(prop::collection::vec(0usize..9, 0..9), 9),
            local_links in prop::collection::vec(0usize..9, 0..9),
        ) {
            let local = id(1);
            let mut t = RoutingTable::new(local, LIMITS);
            let node = |i: usize| id((i % n) as u8 + 1);
            for l in &local_links {
                t.add_neighbour(node(*l));
            }
            let mut lists = Vec::new();
            for (i, c) in claims.iter().enumerate().take(n).skip(1) {
                lists.push(signed(node(i), 1, c.iter().map(|j| node(*j)).collect()));
            }
            // Offered repeatedly, so that order does not matter.
            for _ in 0..n {
                for l in &lists {
                    t.offer(l.clone(), verify);
                }
                t.recompute();
            }
            let named = |a: NodeId, b: NodeId| lists.iter().any(|l| l.origin == a && l.names(&b));
            let mut links: Vec<(NodeId, NodeId)> = t.neighbours().map(|nb| (local, *nb)).collect();
            for a in 1..n {
                for b in 1..n {
                    if named(node(a), node(b)) && named(node(b), node(a)) {
                        links.push((node(a), node(b)));
                    }
                }
            }
            let want = true_distances(local, &links);
            let got: HashMap<NodeId, u8> = t.routes().into_iter().map(|(d, r)| (d, r.distance)).collect();
            prop_assert_eq!(got, want);
        }

        /// A node leaves: every other node ends with the routes a fresh network without it
        /// computes, and on the way no route is longer than the final one (no counting up),
        /// and the departed node, once unreachable somewhere, never comes back there.
        #[test]
        fn a_removal_converges_without_counting_up((n, links) in graph(), gone in 0usize..9) {
            let gone_id = id((gone % n) as u8 + 1);
            let mut sim = Sim::new(n, &links);
            sim.converge();
            let left: Vec<(usize, usize)> = links
                .iter()
                .copied()
                .filter(|(a, b)| *a != gone % n && *b != gone % n)
                .collect();
            let left_ids = ids(&left);
            let finals: BTreeMap<NodeId, HashMap<NodeId, u8>> = sim
                .tables
                .keys()
                .filter(|k| **k != gone_id)
                .map(|k| (*k, true_distances(*k, &left_ids)))
                .collect();
            sim.remove(gone_id);
            let mut lost: HashSet<NodeId> = HashSet::new();
            while let Some(at) = sim.step() {
                let Some(t) = sim.tables.get(&at) else { continue };
                for (dst, r) in t.routes() {
                    if dst == gone_id {
                        prop_assert!(!lost.contains(&at), "the departed node came back");
                    } else if let Some(d) = finals[&at].get(&dst) {
                        prop_assert!(r.distance <= *d, "distance counted up");
                    }
                }
                if t.route(&gone_id).is_none() {
                    lost.insert(at);
                }
            }
            sim.converge();
            let mut fresh = Sim::new(n, &left);
            fresh.remove(gone_id);
            fresh.converge();
            prop_assert_eq!(sim.routes(), fresh.routes());
        }

        /// Lists that are unsigned, badly signed, oversized, or that claim links the other
        /// end does not confirm never change anyone's routes, and never grow the table past
        /// its cap.
        #[test]
        fn hostile_lists_never_change_the_routes(
            (n, links) in graph(),
            attacks in prop::collection::vec((0u8..4, any::<u8>(), prop::collection::vec(any::<u8>(), 0..20)), 1..20),
        ) {
            let mut sim = Sim::new(n, &links);
            sim.converge();
            let before = sim.routes();
            let t = sim.tables.get_mut(&id(1)).unwrap();
            for (kind, origin, claims) in attacks {
                let origin = id(origin);
                let claims: Vec<NodeId> = claims.into_iter().map(id).collect();
                let mut l = signed(origin, u32::MAX, claims.clone());
                match kind {
                    0 => l.signature = [0; 64],
                    1 => l.signature[3] ^= 0x40,
                    2 => {
                        l = signed(origin, u32::MAX, (0..=LIMITS.max_neighbours as u8 + 1).map(id).collect());
                        l.signature = fake_sig(&l);
                    }
                    _ => {
                        // Validly signed, by a node that keeps its real links and adds
                        // invented ones nobody confirms.
                        let held = t.lists.get(&origin).map(|s| s.list.neighbours.clone()).unwrap_or_default();
                        let mut all = held;
                        all.extend(claims.iter().filter(|c| !t.lists.get(*c).is_some_and(|s| s.list.names(&origin))));
                        l = signed(origin, u32::MAX, all);
                    }
                }
                t.offer(l, verify);
                t.recompute();
                prop_assert!(t.list_count() <= LIMITS.max_nodes);
            }
            prop_assert_eq!(sim.routes(), before);
        }
    }
}
