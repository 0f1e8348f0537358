//! Flow control: outgoing bandwidth limits (in total, per link, per group) and incoming rate
//! limits (per module, per packet type), the `[flow_control]` section as token buckets.
//!
//! Pure: every call takes the `now` it decides at, nothing here sleeps, reads a clock or
//! touches a socket. The node asks before it queues a packet ([`FlowControl::outgoing`]) and
//! before it delivers one ([`FlowControl::incoming_module`], [`FlowControl::incoming_type`]);
//! whether a refused send waits or fails is the caller's choice. `docs/config.md` describes
//! the knobs and how FISCO BCOS's map to them.

mod bucket;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

pub use bucket::{RateMeter, TokenBucket};

use crate::config::{FlowConfig, PeerKey};
use crate::identity::NodeId;

/// Buckets of links or groups kept before idle (full) ones are forgotten.
const MAX_IDLE_BUCKETS: usize = 1024;

/// Which outgoing limit a packet is over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BandwidthLimit {
    /// `flow_control.total_outgoing_bytes_per_sec`.
    Total,
    /// The link to this neighbour (`conn_outgoing_bytes_per_sec`, or its override).
    Connection(NodeId),
    /// This group (`group_outgoing_bytes_per_sec`, or its override).
    Group(String),
}

impl std::fmt::Display for BandwidthLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BandwidthLimit::Total => f.write_str("the total outgoing limit"),
            BandwidthLimit::Connection(n) => write!(f, "the limit of the link to {}", n.short()),
            BandwidthLimit::Group(g) => write!(f, "the limit of group {g}"),
        }
    }
}

/// A packet about to leave, as the outgoing limits see it.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// Its ModuleID: exempt modules pass unchecked.
    pub module: u16,
    /// Its GroupID.
    pub group: &'a str,
    /// The neighbour it leaves to and that link's remote IP.
    pub link: (NodeId, IpAddr),
    /// Its size on the wire.
    pub bytes: u64,
}

/// Why an outgoing packet may not pass now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverLimit {
    /// The limit it is over (the one that frees last, when several are).
    pub limit: BandwidthLimit,
    /// That limit, in bytes per second.
    pub bytes_per_sec: u64,
    /// How long until it may pass; `None`: never, it is larger than the burst and
    /// `allow_exceed_burst` is off.
    pub wait: Option<Duration>,
}

/// The limits of a `[flow_control]` section, keys read.
#[derive(Debug, Clone, Default)]
struct Limits {
    window: Duration,
    total: u64,
    conn: u64,
    conn_by: BTreeMap<PeerKey, u64>,
    group: u64,
    group_by: BTreeMap<String, u64>,
    exempt: BTreeSet<u16>,
    allow_exceed: bool,
    module_qps: u64,
    module_by: BTreeMap<u16, u64>,
    types: BTreeSet<u16>,
    type_qps: u64,
}

impl Limits {
    fn of(c: &FlowConfig) -> Self {
        Limits {
            window: c.time_window,
            total: c.total_outgoing_bytes_per_sec,
            conn: c.conn_outgoing_bytes_per_sec,
            conn_by: c.peer_overrides().collect(),
            group: c.group_outgoing_bytes_per_sec,
            group_by: c.group_outgoing_bytes_per_sec_by_group.clone(),
            exempt: c.modules_without_limit.iter().copied().collect(),
            allow_exceed: c.allow_exceed_burst,
            module_qps: c.incoming_module_qps,
            module_by: c.module_overrides().collect(),
            types: c.incoming_packet_types.iter().copied().collect(),
            type_qps: c.incoming_packet_type_qps,
        }
    }

    fn conn_limit(&self, (node, ip): (NodeId, IpAddr)) -> u64 {
        let by = |k| self.conn_by.get(&k).copied();
        by(PeerKey::Node(node))
            .or_else(|| by(PeerKey::Ip(ip)))
            .unwrap_or(self.conn)
    }

    fn group_limit(&self, group: &str) -> u64 {
        self.group_by.get(group).copied().unwrap_or(self.group)
    }

    fn module_limit(&self, module: u16) -> u64 {
        self.module_by
            .get(&module)
            .copied()
            .unwrap_or(self.module_qps)
    }
}

/// One limit's bucket and what passed it.
#[derive(Debug, Clone)]
struct Limiter {
    bucket: TokenBucket,
    meter: RateMeter,
}

impl Limiter {
    fn new(rate: u64, window: Duration, now: Instant) -> Self {
        Limiter {
            bucket: TokenBucket::new(rate, window, now),
            meter: RateMeter::new(window, now),
        }
    }

    fn view(&mut self, now: Instant) -> LimiterView {
        LimiterView {
            limit: self.bucket.rate(),
            burst: self.bucket.burst(),
            available: self.bucket.tokens(now),
            rate: self.meter.rate(now),
            total: self.meter.total(),
        }
    }
}

/// The limiter for `key` in `map` at `rate`, made full if new. Idle ones are forgotten
/// once there are many, so a stream of new links or groups cannot grow the map.
fn limiter<'m, K: std::hash::Hash + Eq + Clone>(
    map: &'m mut HashMap<K, Limiter>,
    key: &K,
    rate: u64,
    window: Duration,
    now: Instant,
) -> &'m mut Limiter {
    if !map.contains_key(key) && map.len() >= MAX_IDLE_BUCKETS {
        map.retain(|_, l| !l.bucket.is_full(now));
    }
    map.entry(key.clone())
        .or_insert_with(|| Limiter::new(rate, window, now))
}

/// Counters of one module.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ModuleCounters {
    /// Sends that waited for tokens.
    pub sends_delayed: u64,
    /// Fail-fast sends refused over a bandwidth limit.
    pub sends_failed: u64,
    /// Messages and requests to it refused over its incoming limit.
    pub incoming_refused: u64,
}

#[derive(Debug, Default)]
struct State {
    limits: Limits,
    total: Option<Limiter>,
    conns: HashMap<NodeId, Limiter>,
    groups: HashMap<String, Limiter>,
    modules_in: HashMap<u16, Limiter>,
    types_in: HashMap<u16, Limiter>,
    modules: BTreeMap<u16, ModuleCounters>,
    types_dropped: BTreeMap<u16, u64>,
}

/// A bucket as the snapshot shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LimiterView {
    /// The configured limit, per second (bytes or packets).
    pub limit: u64,
    /// What the bucket holds at most: the limit times the window.
    pub burst: u64,
    /// What it holds now (negative while in debt).
    pub available: i64,
    /// What passed in the last complete window, per second.
    pub rate: u64,
    /// What passed since the limit was (re)configured.
    pub total: u64,
}

/// The state of every limit and the counters, for metrics and the admin API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FlowSnapshot {
    /// `flow_control.enable`.
    pub enabled: bool,
    /// `flow_control.time_window`, in milliseconds.
    pub window_ms: u64,
    /// The total outgoing limit, if one is set.
    pub total: Option<LimiterView>,
    /// Per-link outgoing limits in use, by neighbour.
    pub connections: Vec<(NodeId, LimiterView)>,
    /// Per-group outgoing limits in use, by group.
    pub groups: Vec<(String, LimiterView)>,
    /// Incoming limits in use, by module.
    pub incoming_modules: Vec<(u16, LimiterView)>,
    /// Incoming limits in use, by packet type.
    pub incoming_types: Vec<(u16, LimiterView)>,
    /// Counters by module (only modules with something counted).
    pub modules: Vec<(u16, ModuleCounters)>,
    /// Packets dropped over their type's incoming limit, by type.
    pub types_dropped: Vec<(u16, u64)>,
}

/// The limiter set of one node. Cheap when off: one atomic load per packet.
#[derive(Debug, Default)]
pub struct FlowControl {
    enabled: AtomicBool,
    state: Mutex<State>,
}

impl FlowControl {
    /// The limits of `config`, every bucket full at `now`.
    pub fn new(config: &FlowConfig) -> Self {
        let f = FlowControl::default();
        f.reconfigure(config);
        f
    }

    /// Replaces the limits (a config reload). Buckets start full again; counters stay.
    pub fn reconfigure(&self, config: &FlowConfig) {
        let mut s = self.state.lock();
        s.limits = Limits::of(config);
        s.total = None;
        s.conns.clear();
        s.groups.clear();
        s.modules_in.clear();
        s.types_in.clear();
        self.enabled.store(config.enable, Ordering::Release);
    }

    /// Whether any limit applies.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// Whether `p` may leave at `now`; if so its bytes are taken from every limit it falls
    /// under, else none are. Exempt modules always pass.
    pub fn outgoing(&self, p: &Outgoing<'_>, now: Instant) -> Result<(), OverLimit> {
        self.pass(p, now, false)
    }

    /// Takes `p`'s bytes from every limit it falls under without checking them: traffic
    /// that must not wait or fail (responses). It may leave the buckets in debt, which
    /// later sends then wait out.
    pub fn charge(&self, p: &Outgoing<'_>, now: Instant) {
        let _ = self.pass(p, now, true);
    }

    fn pass(&self, p: &Outgoing<'_>, now: Instant, force: bool) -> Result<(), OverLimit> {
        if !self.enabled() {
            return Ok(());
        }
        let mut guard = self.state.lock();
        let s = &mut *guard;
        let l = &s.limits;
        if l.exempt.contains(&p.module) {
            return Ok(());
        }
        let window = l.window;
        let mut hit: Vec<(&mut Limiter, BandwidthLimit)> = Vec::with_capacity(3);
        if l.total > 0 {
            let total = s
                .total
                .get_or_insert_with(|| Limiter::new(l.total, window, now));
            hit.push((total, BandwidthLimit::Total));
        }
        let conn = l.conn_limit(p.link);
        if conn > 0 {
            let c = limiter(&mut s.conns, &p.link.0, conn, window, now);
            hit.push((c, BandwidthLimit::Connection(p.link.0)));
        }
        let group = l.group_limit(p.group);
        if group > 0 {
            let key = p.group.to_owned();
            let g = limiter(&mut s.groups, &key, group, window, now);
            hit.push((g, BandwidthLimit::Group(key)));
        }
        if !force {
            let mut worst: Option<OverLimit> = None;
            for (lim, which) in hit.iter_mut() {
                let too_big = p.bytes > lim.bucket.burst() && !l.allow_exceed;
                let wait = (!too_big).then(|| lim.bucket.wait_for(p.bytes, now));
                if wait == Some(Duration::ZERO) {
                    continue;
                }
                let later = match (&worst, wait) {
                    (None, _) => true,
                    (Some(w), None) => w.wait.is_some(),
                    (Some(w), Some(d)) => w.wait.is_some_and(|x| d > x),
                };
                if later {
                    worst = Some(OverLimit {
                        limit: which.clone(),
                        bytes_per_sec: lim.bucket.rate(),
                        wait,
                    });
                }
            }
            if let Some(w) = worst {
                return Err(w);
            }
        }
        for (lim, _) in hit {
            lim.bucket.take(p.bytes, now);
            lim.meter.add(p.bytes, now);
        }
        Ok(())
    }

    /// Counts, for `module`, a send that waited for tokens.
    pub fn count_delayed(&self, module: u16) {
        self.state
            .lock()
            .modules
            .entry(module)
            .or_default()
            .sends_delayed += 1;
    }

    /// Counts, for `module`, a fail-fast send refused.
    pub fn count_failed(&self, module: u16) {
        self.state
            .lock()
            .modules
            .entry(module)
            .or_default()
            .sends_failed += 1;
    }

    /// Whether one more message or request for `module` may be delivered at `now`. A refusal
    /// is counted and carries the module's limit (per second).
    pub fn incoming_module(&self, module: u16, now: Instant) -> Result<(), u64> {
        if !self.enabled() {
            return Ok(());
        }
        let mut guard = self.state.lock();
        let s = &mut *guard;
        let limit = s.limits.module_limit(module);
        if limit == 0 {
            return Ok(());
        }
        let lim = limiter(&mut s.modules_in, &module, limit, s.limits.window, now);
        if lim.bucket.wait_for(1, now) == Duration::ZERO {
            lim.bucket.take(1, now);
            lim.meter.add(1, now);
            return Ok(());
        }
        s.modules.entry(module).or_default().incoming_refused += 1;
        Err(limit)
    }

    /// Whether one more packet of `packet_type` may be handled at `now`; a refusal is
    /// counted.
    pub fn incoming_type(&self, packet_type: u16, now: Instant) -> bool {
        if !self.enabled() {
            return true;
        }
        let mut guard = self.state.lock();
        let s = &mut *guard;
        let limit = s.limits.type_qps;
        if limit == 0 || !s.limits.types.contains(&packet_type) {
            return true;
        }
        let lim = limiter(&mut s.types_in, &packet_type, limit, s.limits.window, now);
        if lim.bucket.wait_for(1, now) == Duration::ZERO {
            lim.bucket.take(1, now);
            lim.meter.add(1, now);
            return true;
        }
        *s.types_dropped.entry(packet_type).or_default() += 1;
        false
    }

    /// Every limit in use and every counter, at `now`.
    pub fn snapshot(&self, now: Instant) -> FlowSnapshot {
        let mut s = self.state.lock();
        let window_ms = u64::try_from(s.limits.window.as_millis()).unwrap_or(u64::MAX);
        fn views<K: Clone + Ord>(
            m: &mut HashMap<K, Limiter>,
            now: Instant,
        ) -> Vec<(K, LimiterView)> {
            let mut v: Vec<(K, LimiterView)> = m
                .iter_mut()
                .map(|(k, l)| (k.clone(), l.view(now)))
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        }
        FlowSnapshot {
            enabled: self.enabled(),
            window_ms,
            total: s.total.as_mut().map(|l| l.view(now)),
            connections: views(&mut s.conns, now),
            groups: views(&mut s.groups, now),
            incoming_modules: views(&mut s.modules_in, now),
            incoming_types: views(&mut s.types_in, now),
            modules: s.modules.iter().map(|(k, v)| (*k, *v)).collect(),
            types_dropped: s.types_dropped.iter().map(|(k, v)| (*k, *v)).collect(),
        }
    }
}

#[cfg(test)]
mod tests;
