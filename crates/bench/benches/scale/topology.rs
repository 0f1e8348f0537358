//! The shapes the scale benchmark wires its nodes into, and what routing should make of
//! them: shortest distances over the live links, cut off where the protocol stops counting.

use std::collections::VecDeque;

use anyhow::{bail, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// A distance of this many hops or more is unreachable (docs/protocol.md, "Routes").
pub const UNREACHABLE: usize = 10;

/// Node degrees of the random sparse graph.
pub const SPARSE_DEGREE: std::ops::RangeInclusive<usize> = 4..=8;

/// The fixed seed of the sparse graphs, so every run wires the same networks.
const SEED: u64 = 0x5ca1e;

/// How the nodes are linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// 0-1-2-...-(n-1).
    Line,
    /// A line closed into a circle.
    Ring,
    /// Random, connected, every node of degree 4 to 8, from a fixed seed.
    Sparse,
    /// Every node linked to every other.
    Mesh,
}

impl Topology {
    /// Every topology, in report order.
    pub const ALL: [Topology; 4] = [
        Topology::Line,
        Topology::Ring,
        Topology::Sparse,
        Topology::Mesh,
    ];

    /// The name used on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Topology::Line => "line",
            Topology::Ring => "ring",
            Topology::Sparse => "sparse",
            Topology::Mesh => "mesh",
        }
    }

    /// The topology called `name`.
    pub fn parse(name: &str) -> Result<Topology> {
        match Topology::ALL.iter().find(|t| t.name() == name) {
            Some(t) => Ok(*t),
            None => bail!("unknown topology `{name}` (line, ring, sparse, mesh)"),
        }
    }

    /// The links of this topology over `n` nodes, each once as `(i, j)` with `i < j`.
    pub fn edges(self, n: usize) -> Result<Graph> {
        let mut g = Graph::new(n);
        match self {
            Topology::Line => (1..n).for_each(|i| g.link(i - 1, i)),
            Topology::Ring => {
                (1..n).for_each(|i| g.link(i - 1, i));
                if n > 2 {
                    g.link(n - 1, 0);
                }
            }
            Topology::Mesh => {
                for i in 0..n {
                    for j in i + 1..n {
                        g.link(i, j);
                    }
                }
            }
            Topology::Sparse => g = sparse(n)?,
        }
        Ok(g)
    }
}

/// An undirected graph over nodes `0..n`.
#[derive(Debug, Clone)]
pub struct Graph {
    adj: Vec<Vec<usize>>,
}

impl Graph {
    fn new(n: usize) -> Graph {
        Graph {
            adj: vec![Vec::new(); n],
        }
    }

    fn link(&mut self, i: usize, j: usize) {
        if i != j && !self.adj[i].contains(&j) {
            self.adj[i].push(j);
            self.adj[j].push(i);
        }
    }

    /// The number of nodes.
    pub fn len(&self) -> usize {
        self.adj.len()
    }

    /// Node `i`'s neighbours.
    pub fn neighbours(&self, i: usize) -> &[usize] {
        &self.adj[i]
    }

    /// Every link once, lower index first.
    pub fn edges(&self) -> Vec<(usize, usize)> {
        let mut e = Vec::new();
        for (i, ns) in self.adj.iter().enumerate() {
            e.extend(ns.iter().filter(|j| **j > i).map(|j| (i, *j)));
        }
        e
    }

    /// Hops from `from` to every node over the nodes `alive` admits; `None` for a node at
    /// [`UNREACHABLE`] hops or more, or not alive.
    pub fn distances(&self, from: usize, alive: impl Fn(usize) -> bool) -> Vec<Option<usize>> {
        let mut dist = vec![None; self.len()];
        dist[from] = Some(0);
        let mut queue = VecDeque::from([from]);
        while let Some(i) = queue.pop_front() {
            let d = dist[i].unwrap_or(0) + 1;
            if d >= UNREACHABLE {
                continue;
            }
            for &j in &self.adj[i] {
                if dist[j].is_none() && alive(j) {
                    dist[j] = Some(d);
                    queue.push_back(j);
                }
            }
        }
        dist
    }

    /// Whether the nodes other than `gone` are connected, ignoring the hop limit.
    pub fn connected_without(&self, gone: usize) -> bool {
        let Some(start) = (0..self.len()).find(|i| *i != gone) else {
            return true;
        };
        let mut seen = vec![false; self.len()];
        seen[start] = true;
        let mut stack = vec![start];
        while let Some(i) = stack.pop() {
            for &j in &self.adj[i] {
                if j != gone && !seen[j] {
                    seen[j] = true;
                    stack.push(j);
                }
            }
        }
        (0..self.len()).all(|i| i == gone || seen[i])
    }

    /// The node the benchmark stops: one whose leaving keeps the others connected (the end
    /// of a line; in the others the one of highest degree, so the most routes change).
    pub fn leaver(&self) -> Option<usize> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by_key(|i| std::cmp::Reverse(self.adj[*i].len()));
        order.into_iter().find(|i| self.connected_without(*i))
    }
}

/// A connected random graph: a random cycle through all nodes (degree 2, connected), then
/// random links until each node has the degree drawn for it, never past the maximum.
fn sparse(n: usize) -> Result<Graph> {
    let mut rng = StdRng::seed_from_u64(SEED ^ n as u64);
    let mut g = Graph::new(n);
    // Below 9 nodes a degree of 8 does not exist: the most is everyone else.
    let max = (*SPARSE_DEGREE.end()).min(n.saturating_sub(1));
    let degrees = *SPARSE_DEGREE.start()..=max;
    if degrees.is_empty() {
        bail!("a sparse graph of degree 4-8 needs at least 5 nodes, not {n}");
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    for k in 0..n {
        g.link(order[k], order[(k + 1) % n]);
    }
    let want: Vec<usize> = (0..n).map(|_| rng.random_range(degrees.clone())).collect();
    for &i in &order {
        let mut tries = 0;
        while g.adj[i].len() < want[i] && tries < 10 * n {
            tries += 1;
            let j = rng.random_range(0..n);
            if j != i && g.adj[j].len() < max && !g.adj[i].contains(&j) {
                g.link(i, j);
            }
        }
    }
    if let Some(i) = (0..n).find(|i| !degrees.contains(&g.adj[*i].len())) {
        bail!(
            "sparse graph of {n}: node {i} has degree {}",
            g.adj[i].len()
        );
    }
    Ok(g)
}
