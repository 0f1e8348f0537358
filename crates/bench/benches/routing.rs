//! Criterion micro-benchmarks of the routing hot paths: what a node pays per message
//! (`RoutingTable::next_hop`, `Dedup::first_time`, fan-out `plan`) and per routing or status
//! update (`RoutingTable::merge` and `advertisement_for`, `StatusTable::observe_seq` and
//! `apply_response`), on networks of 32 and 256 destinations.
//!
//! ```text
//! cargo bench --bench routing
//! cargo bench --bench routing -- dedup     # one group
//! ```
//!
//! The pure structures are measured without the locks the node wraps them in (`Router` takes
//! a read lock around `next_hop`, the status service a mutex around its table); `Dedup`
//! includes its own locks, uncontended. Node IDs are 64 seeded random bytes, like the EC
//! points certificates give.

use std::time::Instant;

use bytes::Bytes;
use chainmesh::identity::NODE_ID_LEN;
use chainmesh::routing::{plan, Dedup, RoutingTable};
use chainmesh::status::{NodeStatus, StatusTable, StatusVersion};
use chainmesh::wire::{RouterEntry, RouterTable};
use chainmesh::NodeId;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngCore, SeedableRng};

/// Network sizes: destinations in the table, and how many of them are direct neighbours.
const NETWORKS: [(usize, usize); 2] = [(32, 8), (256, 16)];

/// `count` node IDs from a fixed seed, so every run measures the same tables.
fn node_ids(count: usize, seed: u64) -> Vec<NodeId> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let mut b = [0u8; NODE_ID_LEN];
            rng.fill_bytes(&mut b);
            NodeId::from_bytes(b)
        })
        .collect()
}

/// One node's view of a meshed network, with every neighbour's advertisement applied.
///
/// Destination `i` that is not a neighbour is 1 hop from neighbour `i % neighbours` (its home)
/// and 2 or 3 hops from every other neighbour, so each has one best route (distance 2, via its
/// home) and fallbacks; neighbours advertise each other at distance 1.
struct Network {
    local: NodeId,
    /// Every destination; every `size / neighbours`-th is a neighbour.
    dsts: Vec<NodeId>,
    neighbours: Vec<NodeId>,
    /// What each neighbour advertised, in the order of `neighbours`.
    adverts: Vec<RouterTable>,
    table: RoutingTable,
}

impl Network {
    fn new(size: usize, neighbours: usize) -> Network {
        let mut ids = node_ids(size + 1, size as u64);
        let local = ids.remove(0);
        let stride = size / neighbours;
        let nbs: Vec<NodeId> = ids.iter().step_by(stride).copied().collect();
        let adverts: Vec<RouterTable> = nbs
            .iter()
            .enumerate()
            .map(|(j, nb)| {
                let mut entries: Vec<RouterEntry> = ids
                    .iter()
                    .enumerate()
                    .map(|(i, dst)| {
                        let distance = if dst == nb {
                            0
                        } else if i % stride == 0 || i % neighbours == j {
                            1
                        } else {
                            2 + ((i + j) % 2) as u8
                        };
                        RouterEntry {
                            node: *dst,
                            distance,
                        }
                    })
                    .collect();
                // As `advertisement_for` sends them.
                entries.sort_by_key(|e| e.node);
                RouterTable { seq: 1, entries }
            })
            .collect();
        let mut table = RoutingTable::new(local);
        for (nb, adv) in nbs.iter().zip(&adverts) {
            table.add_neighbour(*nb);
            table.merge(nb, adv);
        }
        assert_eq!(table.routes().len(), size, "every destination reachable");
        Network {
            local,
            dsts: ids,
            neighbours: nbs,
            adverts,
            table,
        }
    }
}

/// Each item of `items` in turn, round and round: the key of the next operation.
fn turns<'a, T>(items: &'a [T]) -> impl FnMut() -> &'a T {
    let mut i = 0;
    move || {
        let item = &items[i];
        i = if i + 1 == items.len() { 0 } else { i + 1 };
        item
    }
}

fn next_hop(c: &mut Criterion) {
    let mut g = c.benchmark_group("next_hop");
    for (size, neighbours) in NETWORKS {
        let net = Network::new(size, neighbours);
        // Every destination in turn, neighbours and relayed ones.
        let mut dst = turns(&net.dsts);
        g.bench_function(format!("hit/{size}"), |b| {
            b.iter(|| net.table.next_hop(black_box(dst())))
        });
        let unknown = node_ids(size, u64::MAX);
        let mut dst = turns(&unknown);
        g.bench_function(format!("miss/{size}"), |b| {
            b.iter(|| net.table.next_hop(black_box(dst())))
        });
    }
    g.finish();
}

fn route_update(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_update");
    for (size, neighbours) in NETWORKS {
        let mut net = Network::new(size, neighbours);
        // The same content again: what a neighbour sends when its seq moved for a change that
        // does not touch this node's best routes.
        let (from, advert) = (net.neighbours[0], net.adverts[0].clone());
        g.bench_function(format!("merge_unchanged/{size}"), |b| {
            b.iter(|| net.table.merge(&from, black_box(&advert)))
        });
        // The neighbour alternately loses and regains its link to a destination it is the best
        // route to: every merge moves that one route.
        let (dst, from) = (net.dsts[1], net.neighbours[1]);
        assert_eq!(net.table.next_hop(&dst), Some(from), "dsts[1]'s home");
        let mut lost = net.adverts[1].clone();
        lost.seq += 1;
        lost.entries.retain(|e| e.node != dst);
        let both = [net.adverts[1].clone(), lost];
        for advert in both.iter().rev() {
            assert_eq!(net.table.merge(&from, advert).len(), 1, "one route moves");
        }
        let mut turn = 0;
        g.bench_function(format!("merge_one_route_changed/{size}"), |b| {
            b.iter(|| {
                turn ^= 1;
                net.table.merge(&from, black_box(&both[turn]))
            })
        });
        // Answering a neighbour's RouterRequest.
        g.bench_function(format!("advertisement_for/{size}"), |b| {
            b.iter(|| net.table.advertisement_for(black_box(&from)))
        });
    }
    g.finish();
}

/// Arrival orders within each block of 16 seqs from one source: as sent, and with messages
/// overtaking each other by up to 15 places, as over paths of different lengths. Both are
/// indexed the same way, so the orders alone tell the two cases apart.
const ARRIVALS: [(&str, [u32; 16]); 2] = [
    (
        "in_order",
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
    ),
    (
        "out_of_order",
        [3, 0, 7, 1, 2, 12, 5, 4, 15, 9, 6, 8, 14, 10, 13, 11],
    ),
];

fn dedup(c: &mut Criterion) {
    let mut g = c.benchmark_group("dedup");
    for sources in [4, 256] {
        let srcs = node_ids(sources, 7);
        for (name, order) in ARRIVALS {
            // The node's default bound (`limits.dedup_sources`). Sources take turns; the `n`th message of
            // each has seq `n` reordered within its block, so every call is a first time.
            let d = Dedup::new(16 * 1024);
            let (mut src, mut n) = (0, 0u32);
            g.bench_function(format!("first_time_{name}/{sources}_sources"), |b| {
                b.iter(|| {
                    let seq = n & !15 | order[(n & 15) as usize];
                    let first = d.first_time(black_box(&srcs[src]), seq);
                    src += 1;
                    if src == srcs.len() {
                        src = 0;
                        n = n.wrapping_add(1);
                    }
                    first
                })
            });
        }
    }
    g.finish();
}

fn fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout");
    for ((size, neighbours), members) in NETWORKS.into_iter().zip([8, 64]) {
        let net = Network::new(size, neighbours);
        // A group of `members` nodes drawn at random, this node among them as
        // `Membership::group_members` lists it: a few neighbours, most relayed. The seed
        // gives both kinds of copy: a neighbour that is a target and relays for nobody (a
        // leaf, sent the shared encoding) and neighbours with a destination list (relays).
        let mut targets = net.dsts.clone();
        targets.shuffle(&mut StdRng::seed_from_u64(8));
        targets.truncate(members);
        targets.push(net.local);
        let p = plan(&targets, &net.local, |t| net.table.next_hop(t));
        assert!(
            !p.leaves.is_empty() && !p.relays.is_empty() && p.unreachable.is_empty(),
            "a mix of leaves and relays, all reachable"
        );
        g.bench_function(format!("plan/{members}_targets_of_{size}"), |b| {
            b.iter(|| plan(black_box(&targets), &net.local, |t| net.table.next_hop(t)))
        });
    }
    g.finish();
}

fn status_merge(c: &mut Criterion) {
    let mut g = c.benchmark_group("status_merge");
    let epoch = 0x5eed_5eed_5eed_5eed;
    let status = NodeStatus {
        topics: vec!["blocks".into(), "txpool".into()],
        app: Bytes::from_static(b"height=1234567"),
        ..NodeStatus::with_groups(["group0"])
    };
    let now = Instant::now();
    for (size, _) in NETWORKS {
        let nodes = node_ids(size, 11);
        let mut table = StatusTable::new();
        for node in &nodes {
            table.apply_response(*node, StatusVersion::new(epoch, 1), status.clone(), now);
        }
        // A StatusSeq announcing the version already held: the periodic, common case.
        let mut node = turns(&nodes);
        g.bench_function(format!("observe_seq_held/{size}"), |b| {
            b.iter(|| table.observe_seq(*black_box(node()), StatusVersion::new(epoch, 1)))
        });
        // A StatusResponse with a newer version, freshly decoded (the clone, untimed),
        // replacing the held copy; every node's seq rises by one per pass.
        let (mut i, mut seq) = (0, 2);
        g.bench_function(format!("apply_response_newer/{size}"), |b| {
            b.iter_batched(
                || status.clone(),
                |st| {
                    let node = nodes[i];
                    i += 1;
                    if i == nodes.len() {
                        i = 0;
                        seq += 1;
                    }
                    table.apply_response(node, StatusVersion::new(epoch, seq), st, now)
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, next_hop, route_update, dedup, fanout, status_merge);
criterion_main!(benches);
