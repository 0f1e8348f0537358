//! The cost of a route-table merge at each network size: one received neighbour list that
//! changes a link, offered to the pure table and the routes recomputed, as the routing task
//! does for every list a flood brings. Timed without the node around it (no lock, no
//! signature check: a placeholder signature is accepted as checked).

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use chainmesh::identity::NODE_ID_LEN;
use chainmesh::routing::{RoutingLimits, RoutingTable, Verdict};
use chainmesh::wire::{ListVersion, NeighbourList};
use chainmesh::NodeId;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use super::topology::Graph;

/// The node's default caps.
const LIMITS: RoutingLimits = RoutingLimits {
    max_nodes: 4096,
    max_neighbours: 1024,
};

/// Merges per timed batch are as many as fit in this; the figure is the median batch's.
const BATCH: Duration = Duration::from_millis(20);

/// Timed batches.
const BATCHES: usize = 7;

fn node_ids(count: usize) -> Vec<NodeId> {
    let mut rng = StdRng::seed_from_u64(count as u64);
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
    NeighbourList {
        origin,
        version: ListVersion { epoch: 1, seq },
        neighbours,
        signature: [0; 64],
    }
}

/// Seconds per merge in node 0's table over `graph`: the farthest node node 0 reaches
/// alternately drops and regains one of its links, each time in a newer list.
pub fn merge_cost(graph: &Graph) -> Result<f64> {
    let n = graph.len();
    let ids = node_ids(n);
    let lists: Vec<NeighbourList> = (0..n)
        .map(|i| {
            list(
                ids[i],
                1,
                graph.neighbours(i).iter().map(|j| ids[*j]).collect(),
            )
        })
        .collect();
    let mut table = RoutingTable::new(ids[0], LIMITS);
    for j in graph.neighbours(0) {
        table.add_neighbour(ids[*j]);
    }
    // Nearest first, as a neighbour's full answer comes, so each list anchors on one before.
    let dist = graph.distances(0, |_| true);
    let mut order: Vec<usize> = (1..n).filter(|i| dist[*i].is_some()).collect();
    order.sort_by_key(|i| dist[*i]);
    for &i in &order {
        table.offer(lists[i].clone(), |_| true);
    }
    table.recompute();
    if table.routes().len() != order.len() {
        bail!(
            "merge table: {} routes, {} expected",
            table.routes().len(),
            order.len()
        );
    }
    let Some(&far) = order.last() else {
        bail!("merge table: node 0 reaches nobody");
    };
    let base = lists[far].clone();
    let mut seq = 1;
    let mut merge = || {
        seq += 1;
        let mut l = base.clone();
        l.version.seq = seq;
        if seq % 2 == 0 {
            l.neighbours.pop();
        }
        let stored = table.offer(black_box(l), |_| true) == Verdict::Stored;
        black_box(table.recompute());
        stored
    };
    let mut per_merge = Vec::with_capacity(BATCHES);
    for _ in 0..BATCHES {
        let (t0, mut count) = (Instant::now(), 0u32);
        while t0.elapsed() < BATCH {
            if !merge() {
                bail!("merge table: a newer list was not stored");
            }
            count += 1;
        }
        per_merge.push(t0.elapsed().as_secs_f64() / f64::from(count));
    }
    per_merge.sort_by(f64::total_cmp);
    Ok(per_merge[BATCHES / 2])
}
