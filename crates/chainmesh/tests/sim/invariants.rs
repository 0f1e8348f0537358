//! What must hold: the ledger of every simulated send and what became of it, and the checks
//! run after every step and once the network has settled.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::time::Duration;

use chainmesh::routing::graph::shortest_paths;
use chainmesh::routing::{Route, UNREACHABLE};
use chainmesh::session::SessionHandle;
use chainmesh::NodeId;
use parking_lot::Mutex;
use tokio::time::Instant;

/// How long a send may stay unresolved while the link it was last queued on is alive:
/// twice the idle timeout (a cut link's sessions end by then) plus the slowest latency.
pub const SEND_DEADLINE: Duration = Duration::from_secs(8);

/// What became of one send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not resolved yet.
    InFlight,
    /// Delivered to its destination's module.
    Delivered,
    /// Refused at the sender with a typed error (no route, queue full, link closed).
    Refused(&'static str),
    /// Dropped by a relay with a typed reason (no route, TTL, queue full).
    Dropped(&'static str),
}

struct Send {
    from: usize,
    to: usize,
    at: Instant,
    outcome: Outcome,
    deliveries: u32,
    /// The session it was last queued on, by the sender or a relay.
    queued_on: Option<SessionHandle>,
}

/// Totals of one schedule's sends.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Sends made.
    pub sent: u64,
    /// Delivered exactly once.
    pub delivered: u64,
    /// Refused by the sender with a typed error.
    pub refused: u64,
    /// Dropped by a relay with a typed reason.
    pub dropped: u64,
    /// Queued on a session that ended before the bytes got through: the send's link
    /// dropped (what a sender learns of as an undelivered report, above this layer).
    pub lost_with_link: u64,
}

impl std::ops::AddAssign for Totals {
    fn add_assign(&mut self, o: Totals) {
        self.sent += o.sent;
        self.delivered += o.delivered;
        self.refused += o.refused;
        self.dropped += o.dropped;
        self.lost_with_link += o.lost_with_link;
    }
}

/// A broken invariant, with the simulated time it was seen at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Milliseconds since the schedule started.
    pub at_ms: u128,
    /// What broke.
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at {} ms: {}", self.at_ms, self.what)
    }
}

/// Every send of a schedule and every violation seen, shared by the nodes' handlers.
pub struct Ledger {
    start: Instant,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    sends: Vec<Send>,
    violations: Vec<Violation>,
}

impl Ledger {
    pub fn new() -> Self {
        Ledger {
            start: Instant::now(),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn now_ms(&self) -> u128 {
        self.start.elapsed().as_millis()
    }

    /// Records a broken invariant.
    pub fn violation(&self, what: String) {
        let at_ms = self.now_ms();
        self.inner.lock().violations.push(Violation { at_ms, what });
    }

    pub fn violations(&self) -> Vec<Violation> {
        self.inner.lock().violations.clone()
    }

    /// A new send from `from` to `to`; its number goes in the payload.
    pub fn new_send(&self, from: usize, to: usize) -> u64 {
        let mut inner = self.inner.lock();
        inner.sends.push(Send {
            from,
            to,
            at: Instant::now(),
            outcome: Outcome::InFlight,
            deliveries: 0,
            queued_on: None,
        });
        inner.sends.len() as u64 - 1
    }

    /// Send `n` was queued on `session` (by its sender or a relay).
    pub fn queued(&self, n: u64, session: SessionHandle) {
        if let Some(s) = self.inner.lock().sends.get_mut(n as usize) {
            s.queued_on = Some(session);
        }
    }

    /// Send `n` ended without delivery, for a typed reason.
    pub fn resolve(&self, n: u64, outcome: Outcome) {
        let mut inner = self.inner.lock();
        let Some(s) = inner.sends.get_mut(n as usize) else {
            return;
        };
        if s.outcome == Outcome::InFlight {
            s.outcome = outcome;
        }
    }

    /// Send `n` reached the module of node `at`.
    pub fn delivered(&self, n: u64, at: usize) {
        let at_ms = self.now_ms();
        let mut inner = self.inner.lock();
        let Some(s) = inner.sends.get_mut(n as usize) else {
            inner.violations.push(Violation {
                at_ms,
                what: format!("node {at} got send #{n}, which nobody sent"),
            });
            return;
        };
        s.deliveries += 1;
        let mut broken = Vec::new();
        if s.to != at {
            broken.push(format!(
                "send #{n} {}->{} was delivered to node {at}",
                s.from, s.to
            ));
        }
        if s.deliveries > 1 {
            broken.push(format!(
                "send #{n} {}->{} delivered {} times",
                s.from, s.to, s.deliveries
            ));
        }
        if !matches!(s.outcome, Outcome::InFlight | Outcome::Delivered) {
            broken.push(format!(
                "send #{n} {}->{} was delivered after it was reported {:?}",
                s.from, s.to, s.outcome
            ));
        }
        s.outcome = Outcome::Delivered;
        for what in broken {
            inner.violations.push(Violation { at_ms, what });
        }
    }

    /// Every send unresolved for longer than [`SEND_DEADLINE`] must have been queued last on
    /// a session that has ended (so its bytes died with the link); one still waiting on a
    /// live session, or on none, is pending past its timeout.
    pub fn check_deadlines(&self) {
        let at_ms = self.now_ms();
        let mut inner = self.inner.lock();
        let mut broken = Vec::new();
        for (n, s) in inner.sends.iter().enumerate() {
            if s.outcome != Outcome::InFlight || s.at.elapsed() < SEND_DEADLINE {
                continue;
            }
            let link_ended = s.queued_on.as_ref().is_some_and(|q| q.is_closed());
            if !link_ended {
                broken.push(format!(
                    "send #{n} {}->{} unresolved {} ms after it was sent, its link alive",
                    s.from,
                    s.to,
                    s.at.elapsed().as_millis()
                ));
            }
        }
        inner
            .violations
            .extend(broken.into_iter().map(|what| Violation { at_ms, what }));
    }

    /// The totals, once every send is past its deadline.
    pub fn totals(&self) -> Totals {
        let inner = self.inner.lock();
        let mut t = Totals::default();
        for s in &inner.sends {
            t.sent += 1;
            match s.outcome {
                Outcome::Delivered => t.delivered += 1,
                Outcome::Refused(_) => t.refused += 1,
                Outcome::Dropped(_) => t.dropped += 1,
                Outcome::InFlight => t.lost_with_link += 1,
            }
        }
        t
    }
}

/// The routes every node must hold in `links` (the links up between running nodes, `a < b`):
/// shortest paths, ties to the smallest next hop, at most `UNREACHABLE - 1` hops. Computed
/// by a breadth-first search of its own, independent of the routing table.
pub fn true_routes(
    ids: &[NodeId],
    running: &BTreeSet<usize>,
    links: &BTreeSet<(usize, usize)>,
) -> BTreeMap<usize, BTreeMap<NodeId, Route>> {
    let mut adj: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &(a, b) in links {
        adj.entry(a).or_default().push(b);
        adj.entry(b).or_default().push(a);
    }
    let mut out = BTreeMap::new();
    for &src in running {
        // Distances from every node to `src` would do too; from `src` with the first hop
        // carried along is the same, ties broken on the first hop's ID.
        let mut best: BTreeMap<usize, (u8, NodeId)> = BTreeMap::new();
        let mut queue = VecDeque::new();
        for &n in adj.get(&src).into_iter().flatten() {
            best.insert(n, (1, ids[n]));
            queue.push_back(n);
        }
        while let Some(u) = queue.pop_front() {
            let (d, via) = best[&u];
            if d + 1 >= UNREACHABLE {
                continue;
            }
            for &v in adj.get(&u).into_iter().flatten() {
                if v == src {
                    continue;
                }
                match best.get(&v) {
                    None => {
                        best.insert(v, (d + 1, via));
                        queue.push_back(v);
                    }
                    Some(&(dv, hv)) if dv == d + 1 && via < hv => {
                        best.insert(v, (dv, via));
                    }
                    Some(_) => {}
                }
            }
        }
        let routes = best
            .into_iter()
            .map(|(n, (distance, next_hop))| (ids[n], Route { next_hop, distance }))
            .collect();
        out.insert(src, routes);
    }
    out
}

/// The same routes by the library's own shortest-path function over lists that say exactly
/// the true links: a cross-check of [`true_routes`] itself.
pub fn library_routes(
    ids: &[NodeId],
    src: usize,
    links: &BTreeSet<(usize, usize)>,
) -> BTreeMap<NodeId, Route> {
    let mut lists: BTreeMap<NodeId, Vec<NodeId>> = BTreeMap::new();
    for &(a, b) in links {
        lists.entry(ids[a]).or_default().push(ids[b]);
        lists.entry(ids[b]).or_default().push(ids[a]);
    }
    for l in lists.values_mut() {
        l.sort();
    }
    let first = lists.get(&ids[src]).cloned().unwrap_or_default();
    shortest_paths(&ids[src], first, |n| lists.get(n).map(Vec::as_slice))
        .into_iter()
        .collect()
}
