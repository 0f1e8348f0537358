//! The distance-vector routing table, as pure logic: no I/O, no clocks, no locks.
//!
//! Like FISCO BCOS 3.x, each node learns from its direct neighbours how far they are from
//! every other node, and reaches a node through the neighbour that is closest to it. Unlike
//! FISCO, which keeps only the best entry per destination, this table keeps every
//! neighbour's last advertisement and recomputes the best routes from all of them. A lost link
//! then falls back at once to the next best neighbour that still advertises the destination,
//! instead of waiting for a new advertisement.
//!
//! Loops are kept short by **split horizon**: what a node advertises to a neighbour leaves out
//! every route whose next hop is that neighbour. Since each advertisement replaces the
//! previous one from the same neighbour, leaving a route out has the effect of poisoned
//! reverse (advertising it as unreachable) without the bytes. Loops of three or more nodes
//! can still count up, but only to [`UNREACHABLE`], and each step needs a round of
//! advertisements that the routing service sends as soon as a table changes.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::identity::NodeId;
use crate::wire::{RouterEntry, RouterTable, MAX_ROUTER_ENTRIES};

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

#[derive(Debug, Clone, Default)]
struct Neighbour {
    /// Seq of the last table applied from this neighbour, `None` before the first.
    seq: Option<u32>,
    /// Its advertised distances, reachable entries only, one per destination, sorted by
    /// destination. Only ever iterated, so an exact-size slice rather than a map: a map of
    /// a full table is about twice the size (node IDs are 64 bytes and a map keeps spare
    /// slots), and every node holds one per neighbour, so this is per-link memory.
    advertised: Box<[(NodeId, u8)]>,
}

/// A node's routing table: its neighbours, what they advertised, and the best routes.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    local: NodeId,
    neighbours: BTreeMap<NodeId, Neighbour>,
    routes: HashMap<NodeId, Route>,
    seq: u32,
}

impl RoutingTable {
    /// An empty table for node `local`. Its seq starts at 1.
    pub fn new(local: NodeId) -> Self {
        RoutingTable {
            local,
            neighbours: BTreeMap::new(),
            routes: HashMap::new(),
            seq: 1,
        }
    }

    /// The node this table belongs to.
    pub fn local(&self) -> NodeId {
        self.local
    }

    /// The table's seq: it changes whenever any route changes, so a neighbour that sees a seq
    /// other than the one it last fetched knows to fetch the table again.
    pub fn seq(&self) -> u32 {
        self.seq
    }

    /// Whether `node` is a direct neighbour.
    pub fn is_neighbour(&self, node: &NodeId) -> bool {
        self.neighbours.contains_key(node)
    }

    /// The direct neighbours.
    pub fn neighbours(&self) -> impl Iterator<Item = &NodeId> {
        self.neighbours.keys()
    }

    /// Seq of the last table applied from neighbour `node`.
    pub fn neighbour_seq(&self, node: &NodeId) -> Option<u32> {
        self.neighbours.get(node).and_then(|n| n.seq)
    }

    /// Records a new direct link to `node` (distance 1).
    pub fn add_neighbour(&mut self, node: NodeId) -> Vec<RouteChange> {
        if node == self.local || self.neighbours.contains_key(&node) {
            return Vec::new();
        }
        self.neighbours.insert(node, Neighbour::default());
        self.recompute()
    }

    /// Records that the direct link to `node` is gone, with everything it advertised.
    pub fn remove_neighbour(&mut self, node: &NodeId) -> Vec<RouteChange> {
        if self.neighbours.remove(node).is_none() {
            return Vec::new();
        }
        self.recompute()
    }

    /// Applies a neighbour's advertisement, replacing its previous one. Entries at
    /// [`UNREACHABLE`] or beyond, and entries for this node itself, are ignored; at most
    /// [`MAX_ROUTER_ENTRIES`] entries are taken. Tables from nodes that are not neighbours
    /// are ignored.
    pub fn merge(&mut self, from: &NodeId, table: &RouterTable) -> Vec<RouteChange> {
        let local = self.local;
        let Some(n) = self.neighbours.get_mut(from) else {
            return Vec::new();
        };
        n.seq = Some(table.seq);
        // Newest first, so that after the stable sort the first of each run of equal nodes is
        // the last the table listed: a table naming a node twice counts its last entry.
        let mut advertised: Vec<(NodeId, u8)> = table
            .entries
            .iter()
            .take(MAX_ROUTER_ENTRIES)
            .filter(|e| e.distance < UNREACHABLE && e.node != local)
            .map(|e| (e.node, e.distance))
            .rev()
            .collect();
        advertised.sort_by_key(|(node, _)| *node);
        advertised.dedup_by_key(|(node, _)| *node);
        n.advertised = advertised.into_boxed_slice();
        self.recompute()
    }

    /// What to advertise to neighbour `to`: this node at distance 0 and every route whose
    /// next hop is not `to` (split horizon). Sorted by node ID so equal tables encode equally.
    pub fn advertisement_for(&self, to: &NodeId) -> RouterTable {
        let mut entries: Vec<RouterEntry> = std::iter::once(RouterEntry {
            node: self.local,
            distance: 0,
        })
        .chain(
            self.routes
                .iter()
                .filter(|(dst, r)| r.next_hop != *to && *dst != to)
                .map(|(dst, r)| RouterEntry {
                    node: *dst,
                    distance: r.distance,
                }),
        )
        .collect();
        entries.sort_by_key(|e| e.node);
        entries.truncate(MAX_ROUTER_ENTRIES);
        RouterTable {
            seq: self.seq,
            entries,
        }
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

    /// Recomputes every route from the neighbours' advertisements, returns what changed and
    /// moves the seq on if anything did.
    fn recompute(&mut self) -> Vec<RouteChange> {
        let mut best: HashMap<NodeId, Route> = HashMap::with_capacity(self.routes.len());
        for (n, info) in &self.neighbours {
            // A direct link is distance 1, which nothing else can beat.
            best.insert(
                *n,
                Route {
                    next_hop: *n,
                    distance: 1,
                },
            );
            for (dst, d) in info.advertised.iter() {
                if self.neighbours.contains_key(dst) {
                    continue;
                }
                let distance = d.saturating_add(1);
                if distance >= UNREACHABLE {
                    continue;
                }
                let cand = Route {
                    next_hop: *n,
                    distance,
                };
                match best.get(dst) {
                    Some(cur) if !self.better(dst, &cand, cur) => {}
                    _ => {
                        best.insert(*dst, cand);
                    }
                }
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
        }
        changes
    }

    /// Whether `cand` beats `cur` as the route to `dst`: shorter wins; at equal length the
    /// route in use now stays (no flapping), then the smaller next hop ID (deterministic).
    fn better(&self, dst: &NodeId, cand: &Route, cur: &Route) -> bool {
        if cand.distance != cur.distance {
            return cand.distance < cur.distance;
        }
        let in_use = self.routes.get(dst).map(|r| r.next_hop);
        if in_use == Some(cur.next_hop) {
            return false;
        }
        if in_use == Some(cand.next_hop) {
            return true;
        }
        cand.next_hop < cur.next_hop
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::id;

    /// An advertisement of (node, distance) entries.
    fn adv(seq: u32, entries: &[(u8, u8)]) -> RouterTable {
        RouterTable {
            seq,
            entries: entries
                .iter()
                .map(|(n, d)| RouterEntry {
                    node: id(*n),
                    distance: *d,
                })
                .collect(),
        }
    }

    /// A network of tables joined by links, exchanging advertisements like the service does.
    struct Sim {
        tables: BTreeMap<NodeId, RoutingTable>,
    }

    impl Sim {
        fn new(nodes: &[u8]) -> Sim {
            Sim {
                tables: nodes
                    .iter()
                    .map(|b| (id(*b), RoutingTable::new(id(*b))))
                    .collect(),
            }
        }

        fn link(&mut self, a: u8, b: u8) {
            self.tables.get_mut(&id(a)).unwrap().add_neighbour(id(b));
            self.tables.get_mut(&id(b)).unwrap().add_neighbour(id(a));
        }

        fn cut(&mut self, a: u8, b: u8) {
            self.tables
                .get_mut(&id(a))
                .unwrap()
                .remove_neighbour(&id(b));
            self.tables
                .get_mut(&id(b))
                .unwrap()
                .remove_neighbour(&id(a));
        }

        /// One synchronous round: every node sends its advertisement to every neighbour
        /// whose copy is out of date. Returns whether anything was sent.
        fn round(&mut self) -> bool {
            let mut msgs = Vec::new();
            for (n, t) in &self.tables {
                for nb in t.neighbours() {
                    let held = self.tables[nb].neighbour_seq(n);
                    if held != Some(t.seq()) {
                        msgs.push((*n, *nb, t.advertisement_for(nb)));
                    }
                }
            }
            let sent = !msgs.is_empty();
            for (from, to, adv) in msgs {
                self.tables.get_mut(&to).unwrap().merge(&from, &adv);
            }
            sent
        }

        /// Rounds until quiet; returns how many it took (panics past `max`).
        fn converge(&mut self, max: usize) -> usize {
            for i in 0..max {
                if !self.round() {
                    return i;
                }
                for t in self.tables.values() {
                    for (_, r) in t.routes() {
                        assert!(r.distance < UNREACHABLE);
                    }
                }
            }
            panic!("no convergence within {max} rounds");
        }

        fn route(&self, from: u8, to: u8) -> Option<Route> {
            self.tables[&id(from)].route(&id(to))
        }
    }

    #[test]
    fn neighbours_are_distance_one_via_themselves() {
        let mut t = RoutingTable::new(id(1));
        let seq = t.seq();
        let ch = t.add_neighbour(id(2));
        assert_eq!(
            ch,
            vec![RouteChange::Reachable {
                node: id(2),
                route: Route {
                    next_hop: id(2),
                    distance: 1
                }
            }]
        );
        assert_ne!(t.seq(), seq);
        assert_eq!(t.next_hop(&id(2)), Some(id(2)));
        assert!(t.add_neighbour(id(2)).is_empty());
        assert!(
            t.add_neighbour(id(1)).is_empty(),
            "never a neighbour of itself"
        );
        assert_eq!(t.next_hop(&id(3)), None);
    }

    #[test]
    fn merge_adds_one_hop_and_picks_the_shortest() {
        let mut t = RoutingTable::new(id(1));
        t.add_neighbour(id(2));
        t.add_neighbour(id(3));
        t.merge(&id(2), &adv(5, &[(2, 0), (9, 3), (1, 1)]));
        assert_eq!(t.neighbour_seq(&id(2)), Some(5));
        assert_eq!(
            t.route(&id(9)),
            Some(Route {
                next_hop: id(2),
                distance: 4
            })
        );
        // A shorter path through 3 wins; a tie afterwards keeps the route in use.
        t.merge(&id(3), &adv(1, &[(9, 1)]));
        assert_eq!(t.next_hop(&id(9)), Some(id(3)));
        t.merge(&id(2), &adv(6, &[(9, 1)]));
        assert_eq!(t.next_hop(&id(9)), Some(id(3)));
        // The route's own next hop getting worse makes the other one win.
        t.merge(&id(3), &adv(2, &[(9, 7)]));
        assert_eq!(t.next_hop(&id(9)), Some(id(2)));
        // Entries at the unreachable distance are no routes; tables from strangers count for
        // nothing; our own entry is never a route.
        t.merge(&id(2), &adv(7, &[(9, UNREACHABLE - 1)]));
        assert_eq!(t.route(&id(9)).map(|r| r.distance), Some(8));
        t.merge(&id(3), &adv(3, &[(9, UNREACHABLE)]));
        assert_eq!(t.route(&id(9)), None);
        assert!(t.merge(&id(7), &adv(1, &[(8, 1)])).is_empty());
        assert_eq!(t.route(&id(1)), None);
    }

    #[test]
    fn a_node_listed_twice_counts_its_last_entry() {
        let mut t = RoutingTable::new(id(1));
        t.add_neighbour(id(2));
        t.merge(&id(2), &adv(1, &[(9, 1), (8, 2), (9, 4)]));
        assert_eq!(t.route(&id(9)).map(|r| r.distance), Some(5));
        assert_eq!(t.route(&id(8)).map(|r| r.distance), Some(3));
        t.merge(&id(2), &adv(1, &[(9, 4), (9, 1)]));
        assert_eq!(t.route(&id(9)).map(|r| r.distance), Some(2));
        assert_eq!(t.route(&id(8)), None);
    }

    #[test]
    fn line_learns_every_node_and_counts_hops() {
        let mut s = Sim::new(&[1, 2, 3, 4]);
        s.link(1, 2);
        s.link(2, 3);
        s.link(3, 4);
        s.converge(10);
        assert_eq!(
            s.route(1, 4),
            Some(Route {
                next_hop: id(2),
                distance: 3
            })
        );
        assert_eq!(
            s.route(4, 1),
            Some(Route {
                next_hop: id(3),
                distance: 3
            })
        );
        assert_eq!(s.route(2, 4).map(|r| r.next_hop), Some(id(3)));
    }

    #[test]
    fn link_down_makes_the_far_side_unreachable_and_a_new_link_reroutes() {
        let mut s = Sim::new(&[1, 2, 3, 4]);
        s.link(1, 2);
        s.link(2, 3);
        s.link(3, 4);
        s.converge(10);
        s.cut(2, 3);
        let rounds = s.converge(10);
        assert!(rounds <= 3, "{rounds} rounds");
        assert_eq!(s.route(1, 4), None);
        assert_eq!(s.route(1, 3), None);
        assert_eq!(s.route(4, 2), None);
        s.link(1, 3);
        s.converge(10);
        assert_eq!(
            s.route(1, 4),
            Some(Route {
                next_hop: id(3),
                distance: 2
            })
        );
        assert_eq!(
            s.route(2, 4).map(|r| (r.next_hop, r.distance)),
            Some((id(1), 3))
        );
    }

    #[test]
    fn removing_a_neighbour_falls_back_to_another_at_once() {
        let mut s = Sim::new(&[1, 2, 3, 4]);
        // Square 1-2-4, 1-3-4.
        s.link(1, 2);
        s.link(2, 4);
        s.link(1, 3);
        s.link(3, 4);
        s.converge(10);
        let via = s.route(1, 4).unwrap().next_hop;
        let other = if via == id(2) { 3 } else { 2 };
        let t = s.tables.get_mut(&id(1)).unwrap();
        let changes = t.remove_neighbour(&via);
        assert!(changes.contains(&RouteChange::Changed {
            node: id(4),
            old: Route {
                next_hop: via,
                distance: 2
            },
            new: Route {
                next_hop: id(other),
                distance: 2
            }
        }));
    }

    #[test]
    fn split_horizon_leaves_out_routes_through_the_receiver() {
        let mut s = Sim::new(&[1, 2, 3]);
        s.link(1, 2);
        s.link(2, 3);
        s.converge(10);
        let t2 = &s.tables[&id(2)];
        let to1: Vec<NodeId> = t2
            .advertisement_for(&id(1))
            .entries
            .iter()
            .map(|e| e.node)
            .collect();
        assert_eq!(to1, {
            let mut v = vec![id(2), id(3)];
            v.sort();
            v
        });
        let t1 = &s.tables[&id(1)];
        let to2 = t1.advertisement_for(&id(2));
        // 1 reaches 3 only through 2, so it does not tell 2 about it; nor about 2 itself.
        assert_eq!(
            to2.entries,
            vec![RouterEntry {
                node: id(1),
                distance: 0
            }]
        );
        assert_eq!(to2.seq, t1.seq());
    }

    #[test]
    fn count_to_infinity_is_bounded_in_a_ring() {
        // Ring 1-2-3-4-1 with 5 hanging off 3. Cutting 3-5 leaves loops of three or more
        // nodes, which split horizon alone does not break: the count must stop at
        // UNREACHABLE and 5 must end up unreachable everywhere.
        let mut s = Sim::new(&[1, 2, 3, 4, 5]);
        s.link(1, 2);
        s.link(2, 3);
        s.link(3, 4);
        s.link(4, 1);
        s.link(3, 5);
        s.converge(20);
        assert_eq!(s.route(1, 5).map(|r| r.distance), Some(3));
        s.cut(3, 5);
        let rounds = s.converge(4 * UNREACHABLE as usize);
        assert!(rounds <= 2 * UNREACHABLE as usize, "{rounds} rounds");
        for n in 1..=4 {
            assert_eq!(s.route(n, 5), None, "node {n} still routes to 5");
        }
        assert_eq!(s.route(1, 3).map(|r| r.distance), Some(2));
    }

    #[test]
    fn seq_moves_only_on_change() {
        let mut t = RoutingTable::new(id(1));
        t.add_neighbour(id(2));
        let seq = t.seq();
        let same = RouterTable {
            seq: 3,
            entries: vec![RouterEntry {
                node: id(2),
                distance: 0,
            }],
        };
        assert!(t.merge(&id(2), &same).is_empty());
        assert_eq!(t.seq(), seq);
        assert!(t.remove_neighbour(&id(9)).is_empty());
        assert_eq!(t.seq(), seq);
        assert_eq!(t.remove_neighbour(&id(2)).len(), 1);
        assert_ne!(t.seq(), seq);
    }
}
