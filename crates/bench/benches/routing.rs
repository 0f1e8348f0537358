//! Criterion micro-benchmarks of the routing hot paths: what a node pays per message
//! (`RoutingTable::next_hop`, `Dedup::first_time`, fan-out `plan`) and per routing or status
//! update (`RoutingTable::recompute`, a neighbour list offered and applied, a list's signature
//! checked, the full answer a neighbour asks for, `StatusTable::observe_seq` and
//! `apply_response`), on networks of 32, 256 and 1000 nodes.
//!
//! ```text
//! cargo bench --bench routing
//! cargo bench --bench routing -- route_update     # one group
//! ```
//!
//! The pure structures are measured without the locks the node wraps them in (`Router` takes
//! a read lock around `next_hop`, the status service a mutex around its table); `Dedup`
//! includes its own locks, uncontended. Node IDs are 64 seeded random bytes, like the EC
//! points certificates give; lists other than the one whose signature is measured carry
//! placeholder signatures, accepted as checked, since the table's rules are what is timed.

use std::time::Instant;

use bytes::Bytes;
use chainmesh::identity::{generate_node_files, Curve, NODE_ID_LEN};
use chainmesh::routing::signing::{sign_list, verify_list};
use chainmesh::routing::{plan, Dedup, RoutingLimits, RoutingTable, Verdict};
use chainmesh::status::{NodeStatus, StatusTable, StatusVersion};
use chainmesh::wire::{ListVersion, NeighbourList};
use chainmesh::NodeId;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngCore, SeedableRng};

/// Network sizes: nodes besides this one, and how many of them are direct neighbours.
const NETWORKS: [(usize, usize); 3] = [(32, 8), (256, 16), (1000, 16)];

/// The node's default caps.
const LIMITS: RoutingLimits = RoutingLimits {
    max_nodes: 4096,
    max_neighbours: 1024,
};

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

fn list(origin: NodeId, seq: u32, mut neighbours: Vec<NodeId>) -> NeighbourList {
    neighbours.sort();
    neighbours.dedup();
    NeighbourList {
        origin,
        version: ListVersion { epoch: 1, seq },
        neighbours,
        signature: [0; 64],
    }
}

/// One node's view of a network: a ring of `size` nodes with chords (node `i` is linked to
/// `i ± 1`, `i ± 7` and `i ± 31`), this node linked to every `size / neighbours`-th of them,
/// and every node's list held.
struct Network {
    local: NodeId,
    /// Every other node; every `size / neighbours`-th is a neighbour.
    dsts: Vec<NodeId>,
    /// Every other node's list, in the order of `dsts`.
    lists: Vec<NeighbourList>,
    table: RoutingTable,
}

impl Network {
    fn new(size: usize, neighbours: usize) -> Network {
        let mut ids = node_ids(size + 1, size as u64);
        let local = ids.remove(0);
        let stride = size / neighbours;
        let lists: Vec<NeighbourList> = (0..size)
            .map(|i| {
                let mut ns: Vec<NodeId> = [1, 7, 31]
                    .iter()
                    .flat_map(|d| [ids[(i + d) % size], ids[(i + size - d) % size]])
                    .collect();
                if i % stride == 0 {
                    ns.push(local);
                }
                list(ids[i], 1, ns)
            })
            .collect();
        let mut table = RoutingTable::new(local, LIMITS);
        for nb in ids.iter().step_by(stride) {
            table.add_neighbour(*nb);
        }
        // Nearest first, as a neighbour's full answer comes: every list anchors on one before.
        for _ in 0..10 {
            for l in &lists {
                table.offer(l.clone(), |_| true);
            }
            table.recompute();
        }
        assert_eq!(table.routes().len(), size, "every node reachable");
        Network {
            local,
            dsts: ids,
            lists,
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
        // Every route from all the lists: what each stored list costs once its response is in.
        g.bench_function(format!("recompute/{size}"), |b| {
            b.iter(|| net.table.recompute())
        });
        // A node far away alternately drops and regains one link, each time with a newer
        // list: the check, the store and the recomputation, as flooding brings it.
        let far = net.lists[size / 2].clone();
        let mut seq = 1;
        g.bench_function(format!("offer_and_recompute/{size}"), |b| {
            b.iter(|| {
                seq += 1;
                let mut l = far.clone();
                if seq % 2 == 0 {
                    l.neighbours.pop();
                }
                l.version.seq = seq;
                let v = net.table.offer(black_box(l), |_| true);
                assert_eq!(v, Verdict::Stored);
                net.table.recompute()
            })
        });
        // A flooded copy of a list already held: refused before any signature check.
        let held = net.lists[size / 2].clone();
        g.bench_function(format!("offer_stale/{size}"), |b| {
            b.iter(|| net.table.offer(black_box(held.clone()), |_| true))
        });
        // Answering a neighbour's RouterRequest, and the summary announced every 3 s.
        g.bench_function(format!("offered/{size}"), |b| {
            b.iter(|| net.table.offered().len())
        });
    }
    // The signature every change of a node's own links costs once, and the check every new
    // list costs once per node; on both curves a network may use (libsecp256k1 does
    // secp256k1, OpenSSL prime256v1).
    for (name, curve) in [
        ("secp256k1", Curve::Secp256k1),
        ("prime256v1", Curve::Prime256v1),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let node = generate_node_files(dir.path(), 1, curve).expect("node files");
        let identity = node[0].load_identity().expect("identity");
        let nid = chainmesh::identity::keys::curve_of(&identity).expect("curve");
        let neighbours: Vec<NodeId> = node_ids(8, 3)
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let version = ListVersion { epoch: 1, seq: 1 };
        let signed = sign_list(&identity, version, neighbours.clone()).expect("signed");
        assert!(verify_list(nid, &signed));
        g.bench_function(format!("sign_list/{name}_8_neighbours"), |b| {
            b.iter(|| sign_list(&identity, version, black_box(neighbours.clone())))
        });
        g.bench_function(format!("verify_list/{name}_8_neighbours"), |b| {
            b.iter(|| verify_list(nid, black_box(&signed)))
        });
        if curve == Curve::Secp256k1 {
            openssl_reference(&identity, &signed, &mut g);
        }
    }
    g.finish();
}

/// The same signature and check done by OpenSSL, which has no code of its own for
/// secp256k1 (what the node used before libsecp256k1): the reference the two rows above are
/// read against, in the same run.
fn openssl_reference(
    identity: &chainmesh::identity::Identity,
    signed: &NeighbourList,
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
) {
    use openssl::bn::BigNum;
    use openssl::ecdsa::EcdsaSig;
    let key = identity.key.ec_key().expect("EC key");
    let digest = openssl::sha::sha256(&signed.signed_message());
    let sig = EcdsaSig::from_private_components(
        BigNum::from_slice(&signed.signature[..32]).expect("r"),
        BigNum::from_slice(&signed.signature[32..]).expect("s"),
    )
    .expect("signature");
    assert!(sig.verify(&digest, &key).expect("verify"));
    g.bench_function("sign_list/secp256k1_openssl_reference", |b| {
        b.iter(|| EcdsaSig::sign(black_box(&digest), &key))
    });
    g.bench_function("verify_list/secp256k1_openssl_reference", |b| {
        b.iter(|| sig.verify(black_box(&digest), &key))
    });
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
