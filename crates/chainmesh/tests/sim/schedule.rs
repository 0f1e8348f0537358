//! A schedule of faults and traffic, drawn from a seed: the same seed always gives the same
//! topology and the same events, so a failing run is replayed by its seed alone.

use std::collections::BTreeSet;
use std::fmt;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Fewest and most nodes of a simulated network. Ten keeps every path of a line shorter than
/// the routing table's reach (`routing::UNREACHABLE`).
pub const MIN_NODES: usize = 5;
pub const MAX_NODES: usize = 10;

/// One thing that happens to the network. Nodes are indexes; a link is `(a, b)` with `a < b`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Time passes, in milliseconds.
    Delay(u64),
    /// The link stops carrying bytes in both directions but neither end is told: its
    /// sessions find out by their idle timeout, unless it is repaired first.
    Cut(usize, usize),
    /// The link's connection is reset: both ends see it end at once.
    Reset(usize, usize),
    /// The link carries bytes again; if its sessions ended, a new connection is made.
    Repair(usize, usize),
    /// The link's one-way latency becomes this many milliseconds.
    Latency(usize, usize, u64),
    /// The node's process dies: every session ends, all its state is lost.
    Crash(usize),
    /// A fresh process of the node (same identity, new state) starts and reconnects.
    Start(usize),
    /// The node sends `count` unicasts to `to`.
    Send {
        /// Sender.
        from: usize,
        /// Destination.
        to: usize,
        /// How many.
        count: u32,
    },
    /// The node changes its application status.
    SetStatus(usize),
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Delay(ms) => write!(f, "delay {ms} ms"),
            Event::Cut(a, b) => write!(f, "cut {a}-{b}"),
            Event::Reset(a, b) => write!(f, "reset {a}-{b}"),
            Event::Repair(a, b) => write!(f, "repair {a}-{b}"),
            Event::Latency(a, b, ms) => write!(f, "latency {a}-{b} {ms} ms"),
            Event::Crash(n) => write!(f, "crash {n}"),
            Event::Start(n) => write!(f, "start {n}"),
            Event::Send { from, to, count } => write!(f, "send {from}->{to} x{count}"),
            Event::SetStatus(n) => write!(f, "status {n}"),
        }
    }
}

/// A network and what happens to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The seed it was drawn from.
    pub seed: u64,
    /// Nodes in the network.
    pub nodes: usize,
    /// Links up at the start, with their latency in milliseconds.
    pub links: Vec<((usize, usize), u64)>,
    /// The events, in order.
    pub events: Vec<Event>,
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "seed {} with {} nodes", self.seed, self.nodes)?;
        let links: Vec<String> = self
            .links
            .iter()
            .map(|((a, b), ms)| format!("{a}-{b}@{ms}ms"))
            .collect();
        writeln!(f, "links {}", links.join(" "))?;
        for (i, e) in self.events.iter().enumerate() {
            writeln!(f, "{i:4}: {e}")?;
        }
        Ok(())
    }
}

impl Schedule {
    /// The schedule of `seed`: a connected random topology (a random spanning tree plus
    /// extra links), then 10 to 40 events. The generator keeps track of which links are up
    /// and which nodes are running, so every fault hits something that can fail and every
    /// send comes from a running node (to any node, running or not).
    pub fn generate(seed: u64) -> Schedule {
        let mut rng = StdRng::seed_from_u64(seed);
        let nodes = rng.random_range(MIN_NODES..=MAX_NODES);
        let mut edges = BTreeSet::new();
        for n in 1..nodes {
            let parent = rng.random_range(0..n);
            edges.insert((parent, n));
        }
        for a in 0..nodes {
            for b in a + 1..nodes {
                if rng.random_bool(0.2) {
                    edges.insert((a, b));
                }
            }
        }
        let links: Vec<((usize, usize), u64)> =
            edges.iter().map(|&e| (e, latency(&mut rng))).collect();
        let mut up: BTreeSet<(usize, usize)> = edges.clone();
        let mut down_links: BTreeSet<(usize, usize)> = BTreeSet::new();
        let mut running: BTreeSet<usize> = (0..nodes).collect();
        let mut events = Vec::new();
        let count = rng.random_range(10..=40);
        for _ in 0..count {
            let roll = rng.random_range(0..100);
            let event = match roll {
                0..=24 => Event::Delay(rng.random_range(0..=4000)),
                25..=34 if !up.is_empty() => {
                    let (a, b) = pick(&mut rng, &up);
                    up.remove(&(a, b));
                    down_links.insert((a, b));
                    Event::Cut(a, b)
                }
                35..=41 if !up.is_empty() => {
                    let (a, b) = pick(&mut rng, &up);
                    up.remove(&(a, b));
                    down_links.insert((a, b));
                    Event::Reset(a, b)
                }
                42..=54 if !down_links.is_empty() => {
                    let (a, b) = pick(&mut rng, &down_links);
                    down_links.remove(&(a, b));
                    up.insert((a, b));
                    Event::Repair(a, b)
                }
                55..=59 if !up.is_empty() => {
                    let (a, b) = pick(&mut rng, &up);
                    Event::Latency(a, b, latency(&mut rng))
                }
                60..=65 if running.len() > 1 => {
                    let n = pick(&mut rng, &running);
                    running.remove(&n);
                    Event::Crash(n)
                }
                66..=71 if running.len() < nodes => {
                    let stopped: BTreeSet<usize> =
                        (0..nodes).filter(|n| !running.contains(n)).collect();
                    let n = pick(&mut rng, &stopped);
                    running.insert(n);
                    Event::Start(n)
                }
                72..=79 => Event::SetStatus(pick(&mut rng, &running)),
                _ => {
                    let from = pick(&mut rng, &running);
                    // Any other node, running or not.
                    let to = (from + rng.random_range(1..nodes)) % nodes;
                    Event::Send {
                        from,
                        to,
                        count: rng.random_range(1..=8),
                    }
                }
            };
            events.push(event);
        }
        // Most schedules end with every node running again; some leave one down, whose
        // absence the others must converge on too.
        for n in 0..nodes {
            if !running.contains(&n) && rng.random_bool(0.7) {
                events.push(Event::Start(n));
            }
        }
        Schedule {
            seed,
            nodes,
            links,
            events,
        }
    }
}

/// A link's one-way latency: mostly small, sometimes a slow link.
fn latency(rng: &mut StdRng) -> u64 {
    if rng.random_bool(0.1) {
        rng.random_range(200..=1500)
    } else {
        rng.random_range(0..=30)
    }
}

/// A uniformly chosen member of a non-empty set.
fn pick<T: Copy + Ord>(rng: &mut StdRng, set: &BTreeSet<T>) -> T {
    let i = rng.random_range(0..set.len());
    *set.iter().nth(i).expect("index within the set")
}
