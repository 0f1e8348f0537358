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
fn links_are_the_attested_ones_and_leave_out_a_node_that_left() {
    // 1 - 2 - 3 - 4 and 2 - 4; 4 also claims 1, which does not name it back.
    let mut sim = Sim::new(4, &[(0, 1), (1, 2), (2, 3), (1, 3)]);
    sim.converge();
    let t = sim.tables.get_mut(&id(1)).unwrap();
    assert_eq!(
        t.offer(signed(id(4), 99, vec![id(1), id(2), id(3)]), verify),
        Verdict::Stored
    );
    t.recompute();
    let want = vec![
        (id(1), id(2)),
        (id(2), id(3)),
        (id(2), id(4)),
        (id(3), id(4)),
    ];
    assert_eq!(t.links(), want);
    sim.remove(id(4));
    sim.converge();
    assert_eq!(
        sim.tables[&id(1)].links(),
        vec![(id(1), id(2)), (id(2), id(3))]
    );
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
