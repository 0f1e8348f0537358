//! The routing service: the I/O around the pure [`RoutingTable`].
//!
//! One task per node owns every change to the table. It follows peer events (a link up adds
//! a neighbour, a link down removes it), exchanges RouterSeq / RouterRequest /
//! RouterResponse with the neighbours, announces its seq every [`ANNOUNCE_INTERVAL`] and
//! at once after any change, and publishes [`Reachability`] events. Senders only read the
//! table, under a read lock.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::table::{Route, RouteChange, RoutingTable};
use crate::identity::{NodeId, PeerMap};
use crate::peers::{PeerEvent, Peers};
use crate::session::CloseReason;
use crate::wire::{decode_router_seq, encode_router_seq, Ext, Packet, PacketType, RouterTable};

/// How often each node tells its neighbours its table seq, besides right after a change
/// (FISCO BCOS 3.x uses the same 3 s). It only repairs a lost announcement.
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(3);

/// Routing packets waiting for the routing task. They are few (a handful per link per
/// change); if they pile up anyway, the extra ones are dropped and the periodic
/// announcement repairs what they would have said.
const INBOUND_QUEUE: usize = 1024;

/// Reachability events kept for slow subscribers before they start missing some.
const EVENT_BUFFER: usize = 1024;

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

/// A node's router: its routing table behind a read-mostly lock, and the task that keeps it
/// up to date.
pub struct Router {
    local: NodeId,
    table: RwLock<RoutingTable>,
    events: broadcast::Sender<Reachability>,
    inbound: mpsc::Sender<(NodeId, Packet)>,
    /// Taken by the task when it starts.
    inbound_rx: Mutex<Option<mpsc::Receiver<(NodeId, Packet)>>>,
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
    /// A router for node `local` with no neighbours yet.
    pub fn new(local: NodeId) -> Arc<Router> {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (inbound, rx) = mpsc::channel(INBOUND_QUEUE);
        Arc::new(Router {
            local,
            table: RwLock::new(RoutingTable::new(local)),
            events,
            inbound,
            inbound_rx: Mutex::new(Some(rx)),
        })
    }

    /// The neighbour to hand a packet for `dst` to, if `dst` is reachable.
    pub fn next_hop(&self, dst: &NodeId) -> Option<NodeId> {
        self.table.read().next_hop(dst)
    }

    /// The route to `dst`, if it is reachable.
    pub fn route(&self, dst: &NodeId) -> Option<Route> {
        self.table.read().route(dst)
    }

    /// The table's current seq.
    pub fn seq(&self) -> u32 {
        self.table.read().seq()
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

    /// Reachability changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Reachability> {
        self.events.subscribe()
    }

    /// Hands a RouterSeq, RouterRequest or RouterResponse from neighbour `from` to the
    /// routing task. Never waits: when the routing task is behind by a thousand packets the
    /// packet is dropped, and the next periodic announcement repairs what it would have said.
    pub fn on_packet(&self, from: NodeId, packet: Packet) {
        if self.inbound.try_send((from, packet)).is_err() {
            debug!(peer = %from.short(), "routing queue full or stopped; dropping a routing packet");
        }
    }

    /// Starts the routing task for `peers`; it runs until `stop` is cancelled. Subscribe-first
    /// ordering matters: call this before the peer set accepts or dials, so no link-up is
    /// missed. Calling it a second time does nothing.
    pub fn spawn(self: &Arc<Self>, peers: Peers, stop: CancellationToken) {
        let Some(rx) = self.inbound_rx.lock().take() else {
            return;
        };
        let events = peers.subscribe();
        let task = Task {
            router: self.clone(),
            peers,
            asking: PeerMap::default(),
        };
        tokio::spawn(task.run(events, rx, stop));
    }
}

struct Task {
    router: Arc<Router>,
    peers: Peers,
    /// Neighbours asked for their table and not answered yet: the connection the request
    /// went out on and when. While a request is outstanding, newer announcements from that
    /// neighbour ask nothing: its answer and its announcements travel in order on one link,
    /// so an announcement that arrives before the answer is one the answer already covers,
    /// and one that arrives after it asks again. Without this, a neighbour whose table changes
    /// many times in a row (a node joining a full mesh) was asked, and sent its whole table,
    /// once per change: 20 000 table responses (42 MB) to set up a 33-node mesh, bursts that
    /// also left sessions holding grown write buffers afterwards. Keyed by neighbours only,
    /// whose IDs their certificates vouch for.
    asking: PeerMap<(u64, Instant)>,
}

impl Task {
    async fn run(
        mut self,
        mut events: broadcast::Receiver<PeerEvent>,
        mut inbound: mpsc::Receiver<(NodeId, Packet)>,
        stop: CancellationToken,
    ) {
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
                Some((from, packet)) = inbound.recv() => self.on_packet(from, packet),
                _ = tick.tick() => self.announce_all(),
            }
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
        if self.peers.session(&peer).is_none() {
            // A stale event: the link is already gone again.
            return;
        }
        let changes = self.router.table.write().add_neighbour(peer);
        self.apply(changes);
        // Ask for its table at once instead of waiting for its announcement, and tell it our
        // seq. Both also happen after a reconnect, whose peer may have restarted: a request
        // still outstanding on the old link will not be answered.
        self.asking.remove(&peer);
        self.request(&peer);
        self.announce(&peer);
    }

    fn link_down(&mut self, peer: NodeId) {
        if self.peers.session(&peer).is_some() {
            // Replaced by a newer connection to the same node: still a neighbour.
            return;
        }
        self.asking.remove(&peer);
        let changes = self.router.table.write().remove_neighbour(&peer);
        self.apply(changes);
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
            PacketType::ROUTER_SEQ => match decode_router_seq(&packet.payload) {
                Ok(seq) => {
                    if self.router.table.read().neighbour_seq(&from) != Some(seq) {
                        self.request(&from);
                    }
                }
                Err(e) => self.malformed(&from, e),
            },
            PacketType::ROUTER_REQUEST => {
                let adv = self.router.table.read().advertisement_for(&from);
                self.send(&from, PacketType::ROUTER_RESPONSE, adv.encode());
            }
            PacketType::ROUTER_RESPONSE => match RouterTable::decode(&packet.payload) {
                Ok(table) => {
                    self.asking.remove(&from);
                    let changes = self.router.table.write().merge(&from, &table);
                    self.apply(changes);
                }
                Err(e) => self.malformed(&from, e),
            },
            other => debug!(peer = %from.short(), packet_type = other.0, "not a routing packet"),
        }
    }

    fn malformed(&self, from: &NodeId, e: crate::wire::WireError) {
        warn!(peer = %from.short(), error = %e, "malformed routing packet, closing the connection");
        if let Some(s) = self.peers.session(from) {
            s.close(CloseReason::Protocol(e.to_string()));
        }
    }

    /// Publishes what changed and tells every neighbour the new seq.
    fn apply(&self, changes: Vec<RouteChange>) {
        if changes.is_empty() {
            return;
        }
        for c in &changes {
            let event = match *c {
                RouteChange::Reachable { node, route } => {
                    info!(node = %node.short(), next_hop = %route.next_hop.short(),
                        distance = route.distance, "node reachable");
                    Reachability::Reachable {
                        node,
                        distance: route.distance,
                    }
                }
                RouteChange::Unreachable { node, old } => {
                    info!(node = %node.short(), "node unreachable");
                    Reachability::Unreachable {
                        node,
                        was_neighbour: old.distance == 1,
                    }
                }
                RouteChange::Changed { node, old, new } => {
                    debug!(node = %node.short(), old_next_hop = %old.next_hop.short(),
                        next_hop = %new.next_hop.short(), distance = new.distance, "route changed");
                    continue;
                }
            };
            // No subscriber is fine.
            let _ = self.router.events.send(event);
        }
        self.announce_all();
    }

    fn announce_all(&self) {
        let neighbours: Vec<NodeId> = self.router.table.read().neighbours().copied().collect();
        for n in neighbours {
            self.announce(&n);
        }
    }

    /// Asks neighbour `to` for its table unless a request is already outstanding on its
    /// current connection. A request sent on a connection since replaced (a duplicate
    /// connection lost the tie-break) may never be answered, and one unanswered for
    /// [`ANNOUNCE_INTERVAL`] counts as lost (a routing queue was full): either way the next
    /// announcement asks again.
    fn request(&mut self, to: &NodeId) {
        if let Some(&(conn, at)) = self.asking.get(to) {
            let same_link = self.peers.session(to).map(|s| s.id) == Some(conn);
            if same_link && at.elapsed() < ANNOUNCE_INTERVAL {
                return;
            }
        }
        if let Some(conn) = self.send(to, PacketType::ROUTER_REQUEST, bytes::Bytes::new()) {
            self.asking.insert(*to, (conn, Instant::now()));
        }
    }

    fn announce(&self, to: &NodeId) {
        let seq = self.router.table.read().seq();
        self.send(to, PacketType::ROUTER_SEQ, encode_router_seq(seq));
    }

    /// Sends a routing packet to neighbour `to` if there is room; a dropped one is repaired
    /// by the next announcement. Returns the connection it was queued on.
    fn send(&self, to: &NodeId, packet_type: PacketType, payload: bytes::Bytes) -> Option<u64> {
        let session = self.peers.session(to)?;
        let frame = Packet {
            version: session.version,
            packet_type,
            seq: 0,
            ext: Ext::default(),
            options: None,
            payload,
        }
        .to_bytes();
        match session.try_send(frame) {
            Ok(()) => Some(session.id),
            Err(e) => {
                debug!(peer = %to.short(), error = %e, packet_type = packet_type.0,
                    "routing packet not queued");
                None
            }
        }
    }
}
