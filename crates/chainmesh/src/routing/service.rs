//! The routing service: the I/O around the pure [`RoutingTable`].
//!
//! One task per node owns every change to the table. It follows peer events (a link up or
//! down changes this node's own neighbour list, which it signs and floods), takes the signed
//! lists its neighbours flood, checking each signature before storing or passing it on,
//! announces a summary of the lists it holds every [`ANNOUNCE_INTERVAL`] (a neighbour whose
//! summary differs asks for them all), and publishes [`Reachability`] events. Senders only
//! read the table, under a read lock; signatures are checked outside it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use openssl::nid::Nid;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

mod exchange;

use super::counters::Counters;
pub use super::counters::RoutingCounters;
use super::parked::Parked;
use super::signing::{next_version, sign_list};
use super::table::{Rejection, Route, RouteChange, RoutingLimits, RoutingTable};
use crate::identity::keys::{curve_of, KeyError};
use crate::identity::{Identity, NodeId, PeerMap};
use crate::peers::{PeerEvent, Peers};
use crate::session::{CloseReason, Lane, SessionHandle};
use crate::wire::{
    decode_lists, encode_lists, Ext, ListVersion, NeighbourList, Packet, PacketType, RouterSummary,
    WireError,
};

/// How often each node announces the summary of its lists to its neighbours (FISCO BCOS
/// 3.x announces its table seq every 3 s too). Changes are flooded at once; this only
/// repairs a lost or refused list.
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(3);

/// How long a neighbour's summary that was already answered in full stays answered: while
/// it announces the same summary, this node does not ask for all its lists again before
/// then. Neighbours whose networks reach past the hop limit offer different sets of lists
/// for ever, so their summaries never match; asking on every announcement would move every
/// list over every link every [`ANNOUNCE_INTERVAL`]. The repeat after this time repairs a
/// full answer that was lost without either summary changing.
pub const ASKED_HOLD: Duration = Duration::from_secs(30);

/// The least time between two of this node's own lists. A change after a quiet spell is
/// signed and flooded at once (a node that leaves is routed around at flood speed); changes
/// that come faster, as when a forming network brings a node's links up milliseconds apart,
/// wait and go out as one list. Every list version costs every node of the network a
/// signature check and a merge, so a node that gains d links in a burst costs the network
/// one list instead of d.
pub const OWN_LIST_SPACING: Duration = Duration::from_millis(250);

/// Bytes of unanchored lists ([`Parked`]) one neighbour may have waiting, and all together.
const PARK_BYTES: usize = 256 * 1024;
const PARK_TOTAL_BYTES: usize = 4 * 1024 * 1024;

/// Inputs handled before the routes are recomputed: the lists of a flood that arrive
/// together cost one shortest-path pass instead of one each.
const BATCH: usize = 64;

/// How long the list of a node that nobody reaches any more is kept before it is dropped:
/// long enough that a link flapping back finds it, short enough that departed nodes do
/// not pile up.
pub const LIST_HOLD: Duration = Duration::from_secs(60);

/// Routing packets waiting for the routing task. They are few (a handful per link per
/// change); if they pile up anyway, the extra ones are dropped and the periodic
/// announcement repairs what they would have said.
const INBOUND_QUEUE: usize = 1024;

/// Reachability events kept for slow subscribers before they start missing some.
const EVENT_BUFFER: usize = 1024;

/// Payload bytes a RouterResponse is filled to before the next list starts a new one, so a
/// full answer travels as packets of ordinary size.
const RESPONSE_BYTES: usize = 64 * 1024;

/// A node became reachable or unreachable from this one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Reachability {
    /// A route to `node` appeared.
    Reachable {
        /// The node.
        node: NodeId,
        /// Its distance in hops.
        distance: u8,
    },
    /// The last route to `node` is gone.
    Unreachable {
        /// The node.
        node: NodeId,
        /// Whether it was a direct neighbour until now (its link went down), rather than
        /// reached through relays.
        was_neighbour: bool,
    },
}

/// One row of the routing table as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteInfo {
    /// The destination.
    pub dst: NodeId,
    /// The neighbour packets for it go to (itself when it is a neighbour).
    pub next_hop: NodeId,
    /// Hops to it.
    pub distance: u8,
}

/// What the routing task is handed from outside.
enum Input {
    /// A routing packet from neighbour `.0`.
    Packet(NodeId, Packet),
    /// A request to `dst` through `via` got no answer.
    Failure { dst: NodeId, via: NodeId },
    /// `dst` answered through `via`.
    Success { dst: NodeId, via: NodeId },
}

/// The live links the routing task works over: the peer set in a node, or any other holder of
/// P2P sessions (an in-process network of sessions over memory pipes, in tests). Its
/// `Connected` and `Disconnected` events go to [`Router::spawn_over`] beside it.
pub trait Links: Send + Sync + 'static {
    /// The live session to neighbour `peer`, if any.
    fn session(&self, peer: &NodeId) -> Option<SessionHandle>;
    /// Every live session.
    fn sessions(&self) -> Vec<SessionHandle>;
}

impl Links for Peers {
    fn session(&self, peer: &NodeId) -> Option<SessionHandle> {
        Peers::session(self, peer)
    }

    fn sessions(&self) -> Vec<SessionHandle> {
        Peers::sessions(self)
    }
}

/// A node's router: its routing table behind a read-mostly lock, and the task that keeps it
/// up to date.
pub struct Router {
    local: NodeId,
    identity: Identity,
    curve: Nid,
    table: RwLock<RoutingTable>,
    events: broadcast::Sender<Reachability>,
    inbound: mpsc::Sender<Input>,
    /// Taken by the task when it starts.
    inbound_rx: Mutex<Option<mpsc::Receiver<Input>>>,
    counters: Counters,
    /// The version of this node's last signed list.
    own_version: Mutex<ListVersion>,
    /// Failure records the table holds, as the task last saw: answers are reported on
    /// every response, and only need the task while there is something to clear.
    failing: AtomicUsize,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("local", &self.local)
            .field("seq", &self.table.read().seq())
            .finish()
    }
}

impl Router {
    /// A router for the node holding `identity`, with no neighbours yet. It signs this
    /// node's lists with the identity's key and reads other nodes' IDs on its curve.
    pub fn new(identity: &Identity, limits: RoutingLimits) -> Result<Arc<Router>, KeyError> {
        let curve = curve_of(identity)?;
        let local = identity.node_id;
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (inbound, rx) = mpsc::channel(INBOUND_QUEUE);
        Ok(Arc::new(Router {
            local,
            identity: identity.clone(),
            curve,
            table: RwLock::new(RoutingTable::new(local, limits)),
            events,
            inbound,
            inbound_rx: Mutex::new(Some(rx)),
            counters: Counters::default(),
            own_version: Mutex::new(ListVersion {
                epoch: start_epoch(),
                seq: 0,
            }),
            failing: AtomicUsize::new(0),
        }))
    }

    /// The neighbour to hand a packet for `dst` to, if `dst` is reachable.
    pub fn next_hop(&self, dst: &NodeId) -> Option<NodeId> {
        self.table.read().next_hop(dst)
    }

    /// The route to `dst`, if it is reachable.
    pub fn route(&self, dst: &NodeId) -> Option<Route> {
        self.table.read().route(dst)
    }

    /// The table's current route seq.
    pub fn seq(&self) -> u32 {
        self.table.read().seq()
    }

    /// The version of this node's last signed neighbour list.
    pub fn list_version(&self) -> ListVersion {
        *self.own_version.lock()
    }

    /// Every reachable node with its distance, sorted by node ID.
    pub fn reachable(&self) -> Vec<(NodeId, u8)> {
        self.table
            .read()
            .routes()
            .into_iter()
            .map(|(d, r)| (d, r.distance))
            .collect()
    }

    /// The routing table, sorted by destination.
    pub fn routes(&self) -> Vec<RouteInfo> {
        self.table
            .read()
            .routes()
            .into_iter()
            .map(|(dst, r)| RouteInfo {
                dst,
                next_hop: r.next_hop,
                distance: r.distance,
            })
            .collect()
    }

    /// The links of the network as this node knows them ([`RoutingTable::links`]).
    pub fn links(&self) -> Vec<(NodeId, NodeId)> {
        self.table.read().links()
    }

    /// Other nodes' neighbour lists held: at most `limits.max_routing_nodes`.
    pub fn list_count(&self) -> usize {
        self.table.read().list_count()
    }

    /// Lists refused and links closed over them, since the node started.
    pub fn counters(&self) -> RoutingCounters {
        self.counters.snapshot()
    }

    /// Reachability changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Reachability> {
        self.events.subscribe()
    }

    /// Hands a RouterSeq, RouterRequest or RouterResponse from neighbour `from` to the
    /// routing task. Never waits: when the routing task is behind by a thousand packets the
    /// packet is dropped, and the next periodic announcement repairs what it would have said.
    pub fn on_packet(&self, from: NodeId, packet: Packet) {
        self.hand_over(Input::Packet(from, packet));
    }

    /// Reports that a request to `dst` went unanswered. Through a relay, that counts
    /// against the relay: after a few in a row with no answer between, `dst` is reached
    /// around it for a while, if another path exists.
    pub fn report_failure(&self, dst: &NodeId) {
        if let Some(via) = self.next_hop(dst).filter(|via| via != dst) {
            self.hand_over(Input::Failure { dst: *dst, via });
        }
    }

    /// Reports that `dst` answered a request: its next hop relays.
    pub fn report_success(&self, dst: &NodeId) {
        if self.failing.load(Ordering::Relaxed) == 0 {
            return;
        }
        if let Some(via) = self.next_hop(dst).filter(|via| via != dst) {
            self.hand_over(Input::Success { dst: *dst, via });
        }
    }

    fn hand_over(&self, input: Input) {
        if self.inbound.try_send(input).is_err() {
            debug!("routing queue full or stopped; dropping a routing input");
        }
    }

    /// Starts the routing task for `peers`; it runs until `stop` is cancelled. Subscribe-first
    /// ordering matters: call this before the peer set accepts or dials, so no link-up is
    /// missed. Calling it a second time does nothing.
    pub fn spawn(self: &Arc<Self>, peers: Peers, stop: CancellationToken) {
        let events = peers.subscribe();
        self.spawn_over(Arc::new(peers), events, stop);
    }

    /// Like [`spawn`](Self::spawn), over any [`Links`] and its peer events: `events` must
    /// have been subscribed before the first link came up.
    pub fn spawn_over(
        self: &Arc<Self>,
        links: Arc<dyn Links>,
        events: broadcast::Receiver<PeerEvent>,
        stop: CancellationToken,
    ) {
        let Some(rx) = self.inbound_rx.lock().take() else {
            return;
        };
        let task = Task {
            router: self.clone(),
            peers: links,
            asking: PeerMap::default(),
            asked: PeerMap::default(),
            stale_routes: false,
            parked: Parked::new(PARK_BYTES, PARK_TOTAL_BYTES),
            last_own: None,
            own_due: None,
            stop: stop.clone(),
        };
        tokio::spawn(task.run(events, rx, stop));
    }

    /// Signs this node's next list, naming `neighbours`, at a version past both the last one
    /// and `floor`, and makes it the table's own. One lock, so no two lists share a version.
    fn sign_own(
        &self,
        neighbours: Vec<NodeId>,
        floor: Option<ListVersion>,
    ) -> Result<NeighbourList, KeyError> {
        let mut version = self.own_version.lock();
        let next = next_version(floor.map_or(*version, |f| f.max(*version)));
        let list = sign_list(&self.identity, next, neighbours)?;
        *version = next;
        self.table.write().set_own(list.clone());
        Ok(list)
    }

    /// Tells every neighbour, before this node leaves, that it has no links any more: a
    /// signed empty list, flooded like any other, so every node drops it at once instead of
    /// routing to it the long way round until each of its neighbours' lists arrives. Call
    /// it before closing the sessions.
    pub fn farewell(&self, peers: &dyn Links) {
        let list = match self.sign_own(Vec::new(), None) {
            Ok(list) => list,
            Err(e) => {
                warn!(error = %e, "cannot sign this node's farewell list");
                return;
            }
        };
        let payload = encode_lists([&list]);
        for s in peers.sessions() {
            send_packet(peers, &s.peer, PacketType::ROUTER_RESPONSE, payload.clone());
        }
    }
}

/// Sends a routing packet to neighbour `to` if there is room; a dropped one is repaired by
/// the next announcement. Returns the connection it was queued on.
fn send_packet(
    peers: &dyn Links,
    to: &NodeId,
    packet_type: PacketType,
    payload: Bytes,
) -> Option<u64> {
    let session = peers.session(to)?;
    let frame = Packet {
        version: session.version,
        packet_type,
        seq: 0,
        ext: Ext::default(),
        options: None,
        payload,
    }
    .to_bytes();
    match session.try_send_in(Lane::Control, frame) {
        Ok(()) => Some(session.id),
        Err(e) => {
            debug!(peer = %to.short(), error = %e, packet_type = packet_type.0,
                "routing packet not queued");
            None
        }
    }
}

/// The epoch of this run's lists: the start time in milliseconds since 1970. Versions are
/// ordered, so a replayed list of an earlier run is older than every list of this one; a
/// clock set back is caught when this node sees a list of itself newer than its own, and
/// signs past it.
fn start_epoch() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

struct Task {
    router: Arc<Router>,
    peers: Arc<dyn Links>,
    /// Neighbours asked for all their lists and not answered yet: the connection the
    /// request went out on and when. While a request is outstanding, newer differing
    /// summaries from that neighbour ask nothing: its answer and its announcements travel in
    /// order on one link. Keyed by neighbours only, whose IDs their certificates vouch for.
    asking: PeerMap<(u64, Instant)>,
    /// The summary each neighbour announced when this node last asked it for all its lists,
    /// and when: the same summary again within [`ASKED_HOLD`] asks nothing.
    asked: PeerMap<(RouterSummary, Instant)>,
    /// Lists were stored since the routes were last computed.
    stale_routes: bool,
    /// Lists that came before their anchor, offered again whenever another is stored.
    parked: Parked,
    /// When this node last signed its own list, and when the next is due if its links
    /// changed since within [`OWN_LIST_SPACING`].
    last_own: Option<Instant>,
    own_due: Option<Instant>,
    /// Cancelled when the node stops: from then on its farewell list stands.
    stop: CancellationToken,
}

impl Task {
    async fn run(
        mut self,
        mut events: broadcast::Receiver<PeerEvent>,
        mut inbound: mpsc::Receiver<Input>,
        stop: CancellationToken,
    ) {
        self.publish_own(None);
        self.resync();
        let mut tick = tokio::time::interval(ANNOUNCE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                ev = events.recv() => match ev {
                    Ok(PeerEvent::Connected { peer, .. }) => self.link_up(peer),
                    Ok(PeerEvent::Disconnected { peer, .. }) => self.link_down(peer),
                    Ok(PeerEvent::Refused { .. }) => {}
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        debug!(missed = n, "routing missed peer events; resynchronising");
                        self.resync();
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                Some(input) = inbound.recv() => {
                    self.on_input(input);
                    for _ in 1..BATCH {
                        match inbound.try_recv() {
                            Ok(input) => self.on_input(input),
                            Err(_) => break,
                        }
                    }
                    self.settle_routes();
                }
                _ = tick.tick() => self.on_tick(),
                _ = tokio::time::sleep_until(self.own_due.unwrap_or_else(Instant::now)),
                    if self.own_due.is_some() => self.publish_own(None),
            }
        }
    }

    /// Recomputes the routes if lists were stored since they were last computed.
    fn settle_routes(&mut self) {
        if std::mem::take(&mut self.stale_routes) {
            let changes = self.router.table.write().recompute();
            self.apply(changes);
        }
    }

    /// Makes the neighbour set match the live sessions.
    fn resync(&mut self) {
        let live: std::collections::HashSet<NodeId> =
            self.peers.sessions().iter().map(|s| s.peer).collect();
        let known: Vec<NodeId> = self.router.table.read().neighbours().copied().collect();
        for n in known {
            if !live.contains(&n) {
                self.link_down(n);
            }
        }
        for n in live {
            self.link_up(n);
        }
    }

    fn link_up(&mut self, peer: NodeId) {
        self.settle_routes();
        if self.peers.session(&peer).is_none() {
            // A stale event: the link is already gone again.
            return;
        }
        let changes = self.router.table.write().add_neighbour(peer);
        if changes.is_empty() {
            return;
        }
        self.apply(changes);
        self.publish_own(None);
        // Hand it every list at once, this node's first, instead of waiting for it to ask;
        // it does the same. After a reconnect, whose peer may have restarted, a request
        // still outstanding on the old link will not be answered.
        self.asking.remove(&peer);
        self.asked.remove(&peer);
        self.send_all_lists(&peer);
    }

    fn link_down(&mut self, peer: NodeId) {
        self.settle_routes();
        if self.peers.session(&peer).is_some() {
            // Replaced by a newer connection to the same node: still a neighbour.
            return;
        }
        self.asking.remove(&peer);
        self.asked.remove(&peer);
        self.parked.forget(&peer);
        let changes = self.router.table.write().remove_neighbour(&peer);
        if changes.is_empty() {
            return;
        }
        self.apply(changes);
        self.publish_own(None);
    }

    /// Signs and floods this node's list if its links changed since the last one, or
    /// anyway when it must be newer than `floor`; within [`OWN_LIST_SPACING`] of the last
    /// one (and without a floor) it only plans the next.
    fn publish_own(&mut self, floor: Option<ListVersion>) {
        if self.stop.is_cancelled() {
            return;
        }
        let now = Instant::now();
        if floor.is_none() {
            if let Some(due) = self.last_own.map(|t| t + OWN_LIST_SPACING) {
                if now < due {
                    self.own_due.get_or_insert(due);
                    return;
                }
            }
        }
        self.own_due = None;
        let neighbours = self.router.table.read().own_neighbours();
        let unchanged = self
            .router
            .table
            .read()
            .own()
            .is_some_and(|own| own.neighbours == neighbours);
        if unchanged && floor.is_none() {
            return;
        }
        let list = match self.router.sign_own(neighbours, floor) {
            Ok(list) => list,
            Err(e) => {
                warn!(error = %e, "cannot sign this node's neighbour list");
                return;
            }
        };
        self.last_own = Some(now);
        let to: Vec<NodeId> = self.router.table.read().neighbours().copied().collect();
        for n in to {
            self.send_lists(&n, std::slice::from_ref(&list));
        }
    }

    fn on_input(&mut self, input: Input) {
        let now = Instant::now().into_std();
        match input {
            Input::Packet(from, packet) => self.on_packet(from, packet),
            Input::Failure { dst, via } => {
                let changes = self.router.table.write().report_failure(dst, via, now);
                if !changes.is_empty() {
                    warn!(node = %dst.short(), next_hop = %via.short(),
                        "requests through this next hop keep going unanswered; routing around it");
                    self.apply(changes);
                }
            }
            Input::Success { dst, via } => {
                let changes = self.router.table.write().report_success(dst, via);
                self.apply(changes);
            }
        }
        self.note_failures();
    }

    fn note_failures(&self) {
        let tracked = self.router.table.read().tracked_failures();
        self.router.failing.store(tracked, Ordering::Relaxed);
    }

    fn on_tick(&mut self) {
        self.settle_routes();
        let now = Instant::now().into_std();
        let expired = self.parked.expire(now, ANNOUNCE_INTERVAL);
        self.router
            .counters
            .count_many(&Rejection::Unanchored, expired);
        let (changes, gone) = self.router.table.write().collect(now, LIST_HOLD);
        if gone > 0 {
            debug!(
                lists = gone,
                "dropped the lists of nodes unreachable for the hold time"
            );
        }
        self.apply(changes);
        self.note_failures();
        let summary = self.router.table.write().summary();
        let to: Vec<NodeId> = self.router.table.read().neighbours().copied().collect();
        for n in to {
            self.send(&n, PacketType::ROUTER_SEQ, summary.encode());
        }
    }

    fn on_packet(&mut self, from: NodeId, packet: Packet) {
        let is_neighbour = self.router.table.read().is_neighbour(&from);
        if !is_neighbour {
            // Its packet overtook the link-up event.
            self.link_up(from);
            if !self.router.table.read().is_neighbour(&from) {
                return;
            }
        }
        match packet.packet_type {
            PacketType::ROUTER_SEQ => match RouterSummary::decode(&packet.payload) {
                Ok(theirs) => {
                    self.settle_routes();
                    if self.router.table.write().summary() != theirs {
                        self.request(&from, theirs);
                    }
                }
                Err(e) => self.malformed(&from, e),
            },
            PacketType::ROUTER_REQUEST => {
                if !packet.payload.is_empty() {
                    let length = packet.payload.len();
                    return self.malformed(&from, WireError::RouterRequestSize { length });
                }
                self.settle_routes();
                self.send_all_lists(&from);
            }
            PacketType::ROUTER_RESPONSE => match decode_lists(&packet.payload) {
                Ok(lists) => {
                    self.asking.remove(&from);
                    self.take_lists(&from, lists);
                }
                Err(e) => self.malformed(&from, e),
            },
            other => debug!(peer = %from.short(), packet_type = other.0, "not a routing packet"),
        }
    }

    fn malformed(&self, from: &NodeId, e: WireError) {
        warn!(peer = %from.short(), error = %e, "malformed routing packet, closing the connection");
        if let Some(s) = self.peers.session(from) {
            s.close(CloseReason::Protocol(e.to_string()));
        }
    }

    /// Publishes what changed, with one INFO line per recomputation and the detail at DEBUG.
    fn apply(&self, changes: Vec<RouteChange>) {
        if changes.is_empty() {
            return;
        }
        let (mut up, mut down, mut changed) = (0usize, 0usize, 0usize);
        for c in &changes {
            let event = match *c {
                RouteChange::Reachable { node, route } => {
                    up += 1;
                    debug!(node = %node.short(), next_hop = %route.next_hop.short(),
                        distance = route.distance, "node reachable");
                    Reachability::Reachable {
                        node,
                        distance: route.distance,
                    }
                }
                RouteChange::Unreachable { node, old } => {
                    down += 1;
                    debug!(node = %node.short(), "node unreachable");
                    Reachability::Unreachable {
                        node,
                        was_neighbour: old.distance == 1,
                    }
                }
                RouteChange::Changed { node, old, new } => {
                    changed += 1;
                    debug!(node = %node.short(), old_next_hop = %old.next_hop.short(),
                        next_hop = %new.next_hop.short(), distance = new.distance, "route changed");
                    continue;
                }
            };
            // No subscriber is fine.
            let _ = self.router.events.send(event);
        }
        let reachable = self.router.table.read().routes().len();
        info!("routes: +{up} reachable, -{down} unreachable, {changed} changed; {reachable} nodes reachable");
    }

    fn send(&self, to: &NodeId, packet_type: PacketType, payload: Bytes) -> Option<u64> {
        send_packet(&*self.peers, to, packet_type, payload)
    }
}
