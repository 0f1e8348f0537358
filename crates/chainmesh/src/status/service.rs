//! The status synchronization engine: announces this node's version, queries nodes whose
//! version it does not hold, answers queries, and keeps the [`StatusTable`].
//!
//! The engine never touches a socket: it sends through a [`StatusTransport`] (the node's
//! router, or an in-memory fake in tests) and is fed packets through
//! [`StatusService::on_packet`]. Sends are synchronous and never wait, so no lock is held
//! across an `await` and a transport that delivers re-entrantly cannot deadlock it: every
//! handler computes its packets under the lock and sends them after releasing it.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{broadcast, Notify};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::codec::{SeqAnnounce, StatusAnswer, StatusQuery, STATUS_ANSWER_HEAD_LEN};
use super::events::{Counters, LogGates};
pub use super::events::{StatusEvent, StatusEventKind, StatusStats};
use super::local::LocalStatus;
use super::rate::TokenBucket;
use super::sync::{Outgoing, State};
use super::table::{ApplyResult, PeerStatus, StatusTable};
pub use super::transport::{StatusTransport, TransportError, PACKET_OVERHEAD};
use super::{NodeStatus, StatusError, StatusVersion, DEFAULT_MAX_STATUS_LEN};
use crate::identity::NodeId;
use crate::wire::PacketType;

mod api;

/// Status events kept for slow subscribers before they start missing some.
const EVENT_BUFFER: usize = 1024;

/// Settings of the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusConfig {
    /// How often unacknowledged announcements are repeated, expired queries retried, and
    /// unreachable nodes forgotten (config key `timers.status_interval`, default 1 s).
    pub interval: Duration,
    /// How long a query waits for its answer before it is sent again (default 2 intervals);
    /// doubled for each query in a row to the same node that went unanswered, up to 16
    /// times, so a path slower than this still gets its answer through.
    pub query_timeout: Duration,
    /// Every this many intervals, announce to each reachable node even if it acknowledged,
    /// as a safety net, one node per interval (with more reachable nodes than this, each
    /// one's turn comes once per that many intervals); 0 turns it off (default 30).
    pub refresh_every: u32,
    /// Shortest time between two announcements caused by local changes: a burst of changes
    /// is announced once, at its start and then at most this often (default 50 ms).
    pub min_change_gap: Duration,
    /// Largest encoded status this node publishes, and accepts from others: a larger
    /// StatusResponse is dropped before it is decoded (`limits.max_status_bytes`, default
    /// 64 KiB).
    pub max_status_len: usize,
    /// Most nodes tracked at once; packets from further unknown nodes are ignored
    /// (`limits.max_tracked_nodes`, default 4096).
    pub max_nodes: usize,
    /// Memory all held statuses may take together, as [`NodeStatus::held_bytes`] counts it
    /// (`limits.max_status_total_bytes`, default 64 MiB).
    pub max_held_bytes: usize,
    /// StatusRequests answered per second per requester, which is also the burst
    /// (`limits.status_requests_per_sec`, default 20).
    pub requests_per_sec: u32,
}

impl StatusConfig {
    /// The defaults, with the given interval (and a query timeout of two of them).
    pub fn with_interval(interval: Duration) -> StatusConfig {
        // A zero period would make the timer spin (tokio refuses it outright).
        let interval = interval.max(Duration::from_millis(1));
        StatusConfig {
            interval,
            query_timeout: interval.saturating_mul(2),
            refresh_every: 30,
            min_change_gap: Duration::from_millis(50),
            max_status_len: DEFAULT_MAX_STATUS_LEN,
            max_nodes: 4096,
            max_held_bytes: 64 * 1024 * 1024,
            requests_per_sec: 20,
        }
    }
}

impl Default for StatusConfig {
    fn default() -> Self {
        StatusConfig::with_interval(Duration::from_secs(1))
    }
}

/// The status synchronization engine of one node. Share it as `Arc<StatusService>`.
///
/// Protocol, in short (`docs/protocol.md` has the whole of it): on a local change the node
/// announces its new version to every reachable node at once; a node that does not hold that
/// version queries it; the answer is applied if it is newer. Announcements repeat every
/// interval only to nodes that have not yet confirmed the current version, so a network in
/// which nothing changes exchanges no status packets except an optional slow refresh.
pub struct StatusService {
    local_id: NodeId,
    short: String,
    config: StatusConfig,
    transport: Arc<dyn StatusTransport>,
    state: Mutex<State>,
    /// This node's status as of its last change, written only together with `state.local`.
    /// Deciding whether to deliver a received broadcast or multicast reads it, from every
    /// session at once: a read lock of its own keeps that off the engine's mutex.
    local_view: RwLock<NodeStatus>,
    events: broadcast::Sender<StatusEvent>,
    changed: Arc<Notify>,
    counters: Counters,
    gates: LogGates,
    /// The interval the engine is in, for [`LogGates`]; read without the lock.
    tick_no: AtomicU64,
}

/// A fresh epoch for a node starting now: random and never 0.
pub fn random_epoch() -> u64 {
    loop {
        let e = rand::random::<u64>();
        if e != 0 {
            return e;
        }
    }
}

/// Whether `list`, sorted as the local status keeps its lists, holds `name`.
fn sorted_contains(list: &[String], name: &str) -> bool {
    list.binary_search_by(|n| n.as_str().cmp(name)).is_ok()
}

/// Intervals between two safety-net announcements to the same node, with `reachable` nodes:
/// `refresh_every`, or one node per interval once there are more nodes than that. Each
/// reachable node has its turn at its place in node ID order, so the announcements are
/// spread over the cycle and a node sends at most one per interval however large the
/// network: a burst to every node every `refresh_every` intervals would cost each node
/// bytes in proportion to the network's size, and each relay as much again. `None` when the
/// safety net is off.
fn refresh_cycle(refresh_every: u32, reachable: usize) -> Option<u64> {
    (refresh_every != 0).then(|| u64::from(refresh_every).max(reachable as u64))
}

/// The engine's clock: tokio's, so tests can run it paused.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl StatusService {
    /// An engine for node `local` announcing every `interval`, starting with `initial` (seq 1
    /// in a fresh random epoch), sending through `transport`. Call
    /// [`spawn`](Self::spawn) to start its timer.
    pub fn new(
        local: NodeId,
        interval: Duration,
        initial: NodeStatus,
        transport: Arc<dyn StatusTransport>,
    ) -> Result<Arc<StatusService>, StatusError> {
        Self::with_config(
            local,
            StatusConfig::with_interval(interval),
            initial,
            transport,
        )
    }

    /// Like [`new`](Self::new), with every setting.
    pub fn with_config(
        local: NodeId,
        config: StatusConfig,
        initial: NodeStatus,
        transport: Arc<dyn StatusTransport>,
    ) -> Result<Arc<StatusService>, StatusError> {
        let local_status = LocalStatus::new(random_epoch(), initial, config.max_status_len)?;
        Ok(Self::with_local(local, config, local_status, transport))
    }

    /// Like [`with_config`](Self::with_config), starting from a status already checked
    /// (made with `config.max_status_len`), so it cannot fail: for a caller that builds the
    /// engine where it cannot handle an error, such as inside the node it belongs to.
    pub fn with_local(
        local: NodeId,
        config: StatusConfig,
        initial: LocalStatus,
        transport: Arc<dyn StatusTransport>,
    ) -> Arc<StatusService> {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        Arc::new(StatusService {
            local_id: local,
            short: local.short(),
            transport,
            local_view: RwLock::new(initial.status().clone()),
            state: Mutex::new(State {
                local: initial,
                table: StatusTable::new(),
                sync: HashMap::new(),
                untracked_answers: Self::answer_bucket(&config, now()),
                ticks: 0,
            }),
            config,
            events,
            changed: Arc::new(Notify::new()),
            counters: Counters::default(),
            gates: LogGates::default(),
            tick_no: AtomicU64::new(0),
        })
    }

    /// Starts the engine's timer: announcements right away and after every local change, then
    /// the periodic work every interval. Runs until `stop` is cancelled or the service is
    /// dropped.
    pub fn spawn(self: &Arc<Self>, stop: CancellationToken) -> JoinHandle<()> {
        let weak = Arc::downgrade(self);
        let changed = self.changed.clone();
        let interval = self.config.interval;
        let gap = self.config.min_change_gap;
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = ticker.tick() => {
                        let Some(svc) = weak.upgrade() else { return };
                        svc.tick();
                    }
                    _ = changed.notified() => {
                        let Some(svc) = weak.upgrade() else { return };
                        svc.announce_change();
                        drop(svc);
                        // Changes during the gap leave one permit in `changed`, so a burst
                        // ends with one announcement of its last version.
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(gap) => {}
                        }
                    }
                }
            }
        })
    }

    /// Counters of what the engine sent and refused, and what it holds now.
    pub fn stats(&self) -> StatusStats {
        let (tracked, held) = {
            let st = self.state.lock();
            (st.tracked(), st.table.held_bytes())
        };
        let c = &self.counters;
        StatusStats {
            oversized: c.oversized.load(Relaxed),
            untracked: c.untracked.load(Relaxed),
            over_total: c.over_total.load(Relaxed),
            unreachable_sources: c.unreachable_sources.load(Relaxed),
            rate_limited: c.rate_limited.load(Relaxed),
            tracked_nodes: tracked as u64,
            held_status_bytes: held as u64,
            seq_packets: c.seq_packets.load(Relaxed),
            seq_bytes: c.seq_bytes.load(Relaxed),
            request_packets: c.request_packets.load(Relaxed),
            request_bytes: c.request_bytes.load(Relaxed),
            response_packets: c.response_packets.load(Relaxed),
            response_bytes: c.response_bytes.load(Relaxed),
            send_failures: c.send_failures.load(Relaxed),
            malformed: c.malformed.load(Relaxed),
            unmatched_answers: c.unmatched_answers.load(Relaxed),
        }
    }

    // ---- inputs from the node ----

    /// Handles a status packet that `src` sent to this node. `src` must be the packet's
    /// proven source, not merely what its options claim: the node passes the source only of
    /// packets that came on `src`'s own link or carry `src`'s authentication, so an answer,
    /// which goes to `src` and nowhere else, cannot be reflected onto a third node. Packets
    /// with the RESPONSE or ERROR flag are not status packets and must not be passed here.
    ///
    /// StatusSeqs and StatusRequests from a node the transport does not reach are ignored;
    /// a StatusResponse larger than `max_status_len` allows is dropped before it is decoded
    /// (its query counts as failed); StatusRequests beyond `requests_per_sec` per requester
    /// are left unanswered. Each is counted in [`stats`](Self::stats) and logged once per
    /// interval.
    ///
    /// A malformed payload is an error, for the caller to log with the link it came on; the
    /// engine's state is unchanged by it.
    pub fn on_packet(
        &self,
        src: NodeId,
        packet_type: PacketType,
        payload: Bytes,
    ) -> Result<(), StatusError> {
        if src == self.local_id {
            // Our own packet came back through a relay loop: nothing to learn from it.
            return Ok(());
        }
        let malformed = |source| {
            self.counters.malformed.fetch_add(1, Relaxed);
            StatusError::Malformed {
                packet_type,
                source,
            }
        };
        let asks = matches!(
            packet_type,
            PacketType::STATUS_SEQ | PacketType::STATUS_REQUEST
        );
        if asks && !self.transport.is_reachable(&src) {
            // Answering or querying it would send to a node with no route: at best wasted,
            // at worst traffic towards whoever the source claims to be.
            self.counters.unreachable_sources.fetch_add(1, Relaxed);
            debug!(node = %self.short, src = %src.short(), packet_type = %packet_type,
                "status packet from an unreachable node ignored");
            return Ok(());
        }
        match packet_type {
            PacketType::STATUS_SEQ => {
                let a = SeqAnnounce::decode(&payload).map_err(malformed)?;
                self.on_announce(src, a);
            }
            PacketType::STATUS_REQUEST => {
                let q = StatusQuery::decode(&payload).map_err(malformed)?;
                self.on_query(src, q);
            }
            PacketType::STATUS_RESPONSE => {
                let max = STATUS_ANSWER_HEAD_LEN.saturating_add(self.config.max_status_len);
                if payload.len() > max {
                    self.on_oversized(src, &payload, max);
                    return Ok(());
                }
                let a = StatusAnswer::decode(&payload).map_err(malformed)?;
                self.on_answer(src, a);
            }
            other => return Err(StatusError::NotStatusPacket(other)),
        }
        Ok(())
    }

    /// `node` left or can no longer be reached: forget its status (a
    /// [`StatusEventKind::Removed`] event follows if one was held) and everything exchanged
    /// with it.
    pub fn on_unreachable(&self, node: &NodeId) {
        let removed = self.state.lock().forget(node);
        if let Some(old) = removed {
            info!(node = %self.short, peer = %node.short(), version = %old.version,
                "status removed: node unreachable");
            self.emit(StatusEvent {
                node: old.node,
                version: old.version,
                kind: StatusEventKind::Removed,
            });
        }
    }

    /// `node` became reachable: exchange versions with it now instead of at the next tick
    /// (announce if it has not confirmed our version, query if its status is missing or
    /// behind). Optional; the periodic work finds new nodes anyway.
    pub fn on_reachable(&self, node: NodeId) {
        if node == self.local_id {
            return;
        }
        let now = now();
        let timeout = self.config.query_timeout;
        let mut out = Vec::new();
        {
            let mut st = self.state.lock();
            if !self.admit(&st, &node) {
                return;
            }
            let current = st.local.version();
            let ps = st.sync.entry(node).or_default();
            let unacked = ps.acked != Some(current);
            let idle = ps.query.is_none();
            if unacked {
                out.push(st.announce(node, true));
            }
            let wanted = st.table.get(&node).is_none() || st.table.needs_query(&node).is_some();
            if idle && wanted {
                out.push(st.start_query(node, now, timeout));
            }
            out.extend(st.owed(node));
        }
        self.flush(out);
    }

    /// The periodic work, normally run by [`spawn`](Self::spawn)'s timer every interval:
    ///
    /// - forget nodes the transport no longer reaches;
    /// - announce to every reachable node that has not confirmed our current version, and
    ///   refresh the others one at a time, at most one per interval;
    /// - query reachable nodes whose status is missing or behind what they announced, and
    ///   retry queries whose answer did not come in time.
    pub fn tick(&self) {
        let reachable: BTreeSet<NodeId> = self
            .transport
            .reachable()
            .into_iter()
            .filter(|n| *n != self.local_id)
            .collect();
        let now = now();
        let timeout = self.config.query_timeout;
        let mut out = Vec::new();
        let mut removed = Vec::new();
        {
            let mut st = self.state.lock();
            st.ticks = st.ticks.wrapping_add(1);
            self.tick_no.store(st.ticks, Relaxed);
            let cycle = refresh_cycle(self.config.refresh_every, reachable.len());
            let gone: BTreeSet<NodeId> = st
                .table
                .nodes()
                .chain(st.sync.keys())
                .filter(|n| !reachable.contains(n))
                .copied()
                .collect();
            for n in &gone {
                if let Some(old) = st.forget(n) {
                    removed.push(old);
                }
            }
            let current = st.local.version();
            for (place, &node) in reachable.iter().enumerate() {
                if !self.admit(&st, &node) {
                    continue;
                }
                let refresh = cycle.is_some_and(|c| st.ticks % c == place as u64);
                let ps = st.sync.entry(node).or_default();
                let acked = ps.acked == Some(current);
                let query_due = match ps.query {
                    Some(q) => now >= q.deadline,
                    None => true,
                };
                if ps.query.is_some() && query_due {
                    ps.missed = ps.missed.saturating_add(1);
                }
                if !acked {
                    out.push(st.announce(node, true));
                } else if refresh {
                    out.push(st.announce(node, false));
                }
                if query_due {
                    let wanted =
                        st.table.get(&node).is_none() || st.table.needs_query(&node).is_some();
                    if wanted {
                        out.push(st.start_query(node, now, timeout));
                    } else if let Some(ps) = st.sync.get_mut(&node) {
                        ps.query = None;
                        ps.missed = 0;
                    }
                }
                out.extend(st.owed(node));
            }
        }
        for old in removed {
            info!(node = %self.short, peer = %old.node.short(), version = %old.version,
                "status removed: node no longer reachable");
            self.emit(StatusEvent {
                node: old.node,
                version: old.version,
                kind: StatusEventKind::Removed,
            });
        }
        self.flush(out);
    }

    // ---- handlers ----

    /// After a local change: announce the new version to every reachable node that does not
    /// hold it yet.
    fn announce_change(&self) {
        let reachable = self.transport.reachable();
        let mut out = Vec::new();
        {
            let st = self.state.lock();
            let current = st.local.version();
            for node in reachable {
                if node == self.local_id {
                    continue;
                }
                if st.sync.get(&node).and_then(|p| p.acked) != Some(current) {
                    out.push(st.announce(node, true));
                }
            }
        }
        self.flush(out);
    }

    fn on_announce(&self, src: NodeId, a: SeqAnnounce) {
        let now = now();
        let timeout = self.config.query_timeout;
        let mut out = Vec::new();
        {
            let mut st = self.state.lock();
            if !self.admit(&st, &src) {
                return;
            }
            let current = st.local.version();
            let query = st.table.observe_seq(src, a.version);
            let ps = st.sync.entry(src).or_default();
            if query.is_some_and(|q| q.new_epoch) {
                // The node restarted: whatever it confirmed before is gone with its old table.
                ps.acked = None;
            }
            if a.view == Some(current) {
                ps.acked = Some(current);
            }
            let idle = ps.query.is_none();
            // A query outstanding to the node's previous run will never be answered: a new
            // epoch supersedes it instead of waiting out its timeout.
            if let Some(q) = query.filter(|q| idle || q.new_epoch) {
                debug!(node = %self.short, peer = %src.short(), want = %q.want,
                    new_epoch = q.new_epoch, "querying status");
                out.push(st.start_query(src, now, timeout));
            } else if a.reply_wanted && idle {
                // Our answer to its query would have confirmed its version; with no query to
                // send, a StatusSeq carrying our view does.
                out.push(st.announce(src, false));
            }
        }
        self.flush(out);
    }

    fn on_query(&self, src: NodeId, q: StatusQuery) {
        let now = now();
        let out = {
            let mut st = self.state.lock();
            // Answer every reachable requester, but only track nodes there is room for;
            // the others share one bucket.
            let track = self.admit(&st, &src);
            let allowed = if track {
                st.sync
                    .entry(src)
                    .or_default()
                    .answers
                    .get_or_insert_with(|| Self::answer_bucket(&self.config, now))
                    .try_take(1, now)
            } else {
                st.untracked_answers.try_take(1, now)
            };
            if !allowed {
                self.counters.rate_limited.fetch_add(1, Relaxed);
                if self.gates.rate_limited.open(st.ticks) {
                    warn!(node = %self.short, src = %src.short(),
                        limit = self.config.requests_per_sec,
                        "status requests over the per-requester rate; not answered");
                }
                return;
            }
            st.answer(src, q.query_id, track)
        };
        self.flush(vec![out]);
    }

    /// A requester's bucket: `requests_per_sec` answers a second, as many at once.
    fn answer_bucket(config: &StatusConfig, now: Instant) -> TokenBucket {
        let rate = f64::from(config.requests_per_sec.max(1));
        TokenBucket::new(rate, rate, now)
    }

    /// Whether `node` is tracked, or there is room to track it; a refusal is counted and
    /// logged once per interval.
    fn admit(&self, st: &State, node: &NodeId) -> bool {
        if st.knows(node) || st.tracked() < self.config.max_nodes {
            return true;
        }
        self.counters.untracked.fetch_add(1, Relaxed);
        if self.gates.untracked.open(st.ticks) {
            warn!(node = %self.short, peer = %node.short(), max = self.config.max_nodes,
                "status table full: node not tracked");
        }
        false
    }

    /// A StatusResponse too large to accept: dropped undecoded, and if it claims to answer
    /// our outstanding query to `src` (its first 4 bytes), that query has failed; the next
    /// interval asks again.
    fn on_oversized(&self, src: NodeId, payload: &[u8], max: usize) {
        self.counters.oversized.fetch_add(1, Relaxed);
        let claimed = payload
            .get(..4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes);
        let mut st = self.state.lock();
        if let Some(ps) = st.sync.get_mut(&src) {
            if ps.query.is_some_and(|q| Some(q.id) == claimed) {
                ps.query = None;
            }
        }
        if self.gates.oversized.open(st.ticks) {
            warn!(node = %self.short, src = %src.short(), len = payload.len(), max,
                "status answer larger than limits.max_status_bytes; dropped");
        }
    }

    fn on_answer(&self, src: NodeId, a: StatusAnswer) {
        let now = now();
        let mut out = Vec::new();
        let mut event = None;
        {
            let mut st = self.state.lock();
            let matched = st
                .sync
                .get(&src)
                .and_then(|p| p.query)
                .is_some_and(|q| q.id == a.query_id);
            if !matched {
                // Late (its query timed out and was resent), duplicated, or from a previous
                // life of the node: only the latest query's answer is known to be fresh.
                self.counters.unmatched_answers.fetch_add(1, Relaxed);
                debug!(node = %self.short, peer = %src.short(), query = a.query_id,
                    version = %a.version, "ignoring status answer that matches no query");
                return;
            }
            if let Some(ps) = st.sync.get_mut(&src) {
                ps.query = None;
                ps.missed = 0;
            }
            let mut status = a.status;
            let held_now = st.table.get(&src).map_or(0, |c| c.status.held_bytes());
            let total = st
                .table
                .held_bytes()
                .saturating_sub(held_now)
                .saturating_add(status.held_bytes());
            if total > self.config.max_held_bytes {
                self.counters.over_total.fetch_add(1, Relaxed);
                if self.gates.over_total.open(st.ticks) {
                    warn!(node = %self.short, src = %src.short(), total,
                        max = self.config.max_held_bytes,
                        "held statuses would pass limits.max_status_total_bytes; not stored");
                }
                return;
            }
            // The decoded application status is a slice of the received buffer, which may be
            // far larger than it: held on its own, the memory counted is the memory kept.
            status.app = Bytes::copy_from_slice(&status.app);
            match st.table.apply_response(src, a.version, status, now) {
                ApplyResult::Applied { previous } => {
                    debug!(node = %self.short, peer = %src.short(), version = %a.version,
                        previous = ?previous.map(|p| p.to_string()), "status updated");
                    event = Some(StatusEvent {
                        node: src,
                        version: a.version,
                        kind: StatusEventKind::Updated,
                    });
                }
                ApplyResult::Stale { held } => {
                    debug!(node = %self.short, peer = %src.short(), version = %a.version,
                        %held, "status answer not newer than held copy");
                }
            }
            // It changed again while the answer was on its way: fetch the newer one now.
            if st.table.needs_query(&src).is_some() {
                out.push(st.start_query(src, now, self.config.query_timeout));
            }
        }
        if let Some(e) = event {
            self.emit(e);
        }
        self.flush(out);
    }

    fn emit(&self, event: StatusEvent) {
        // No subscriber is fine: events are for whoever listens.
        let _ = self.events.send(event);
    }

    fn flush(&self, out: Vec<Outgoing>) {
        let c = &self.counters;
        for o in out {
            let len = o.payload.len() as u64;
            match self.transport.send(o.dst, o.packet_type, o.payload) {
                Ok(()) => {
                    let (packets, bytes) = match o.packet_type {
                        PacketType::STATUS_SEQ => (&c.seq_packets, &c.seq_bytes),
                        PacketType::STATUS_REQUEST => (&c.request_packets, &c.request_bytes),
                        _ => (&c.response_packets, &c.response_bytes),
                    };
                    packets.fetch_add(1, Relaxed);
                    bytes.fetch_add(len, Relaxed);
                }
                Err(e) => {
                    c.send_failures.fetch_add(1, Relaxed);
                    debug!(node = %self.short, peer = %o.dst.short(), packet_type = %o.packet_type,
                        error = %e, "status packet not sent");
                    self.undo_unsent(o.dst, o.packet_type, o.answers);
                }
            }
        }
    }

    /// Takes back what an unsent packet promised. An unsent announcement needs nothing: it is
    /// unconfirmed, so the next tick repeats it.
    fn undo_unsent(&self, dst: NodeId, packet_type: PacketType, answers: Option<u32>) {
        let mut st = self.state.lock();
        let Some(ps) = st.sync.get_mut(&dst) else {
            return;
        };
        match packet_type {
            // Typically the node is not routable yet (its announcement came through a relay
            // before our route to it): free the query so that the next tick or
            // `on_reachable` asks again instead of waiting out the query timeout.
            PacketType::STATUS_REQUEST => ps.query = None,
            // An answer that never left confirms nothing, and is owed until the node can be
            // reached.
            PacketType::STATUS_RESPONSE => {
                ps.acked = None;
                ps.owed_answer = answers;
            }
            _ => {}
        }
    }
}
