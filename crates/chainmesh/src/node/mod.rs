//! The node: starts every layer from a config and offers the application a cloneable
//! [`NodeHandle`] to send, request, broadcast, multicast and receive messages by module.
//!
//! # Messaging forms
//!
//! | form | call | reaches | delivery |
//! |---|---|---|---|
//! | unicast | [`send`](NodeHandle::send), [`try_send`](NodeHandle::try_send) | one node, relayed along routes when not a neighbour | queued for the next hop; at most once; reported if never written |
//! | request/response | [`request`](NodeHandle::request) | one node; the response comes back along routes | exactly one outcome: response, remote error, timeout, unreachable |
//! | broadcast | [`broadcast`](NodeHandle::broadcast) | every node of a group ([`Membership`]) | queued per next hop; at most once per node |
//! | multicast | [`multicast`](NodeHandle::multicast) | every subscriber of a topic ([`Membership`]) | queued per next hop; at most once per node |
//!
//! "Queued" means the packet is in the write queue of the link to the next hop, which is as
//! far as a sender can know without a response. A link that drops with this node's packets
//! still queued reports each of them ([`NodeHandle::undelivered`], never silently); one that
//! drops after writing a packet to the socket cannot say whether the peer read it, and only
//! a response can. Every message is identified by (source node ID, Seq) and handled at most
//! once by each node (see [`crate::routing::dedup`]). `docs/messaging.md` is the guide.
//!
//! Subsystems that own packet types of their own (status synchronization, the routing
//! exchange, AMOP) plug in as a [`Protocol`]; `docs/protocols.md` is the guide.
//!
//! # Inside
//!
//! This file is the handle; the work is done in: `start` (start-up and shutdown), `unicast`
//! (one message to one node, requests and responses), `pending` (outstanding requests and
//! their sweeper), `fanout` and `copies` (broadcast and multicast, and the copies shared with
//! relaying), `tagging` (the tags that prove a relayed packet's source, see
//! [`crate::auth`]), `inbound` (what sessions hand over: relay or deliver), `deliver` (delivery to
//! modules, waiting requests and protocols), `inflate` (decompressing what is delivered,
//! within its limits), `protocol` (the plug-in point), `builtin`
//! (status synchronization and the routing exchange as protocols), `tap` (copies of
//! delivered messages for observers), `watch` (reachability
//! changes), `undelivered` (what closing links still held) and `runtime` (peer changes and
//! config reloads).

mod builtin;
mod copies;
mod deliver;
mod error;
mod fanout;
mod flow;
mod inbound;
mod inflate;
mod message;
mod options;
mod pending;
mod protocol;
mod runtime;
mod start;
pub mod stats;
mod tagging;
mod tap;
mod undelivered;
mod unicast;
mod watch;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::RwLock;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::identity::NodeId;
use crate::peers::{PeerEvent, Peers};
use crate::routing::{Dedup, Membership, Reachability, RouteInfo, Router};
use crate::session::SessionHandle;
use crate::status::{
    NodeStatus, PeerStatus, StatusError, StatusEvent, StatusService, StatusVersion,
};
use crate::wire::{Ext, Packet};

pub use error::{NodeError, RequestError, SendError};
pub use fanout::Fanout;
pub use inflate::DecompressStats;
pub use message::{Message, MessageKind, Responder};
pub use options::SendOptions;
pub use protocol::{Origin, Protocol, ProtocolContext, ProtocolError};
pub use runtime::PeerChangeError;
pub use tap::TappedMessage;
pub use undelivered::{
    Undelivered, UndeliveredCounts, UndeliveredKind, UndeliveredReason, UNDELIVERED_BUFFER,
};
pub use unicast::PingReply;

use fanout::Audience;
use pending::PendingTable;
use protocol::Protocols;
use unicast::Unicast;

/// The lists of names in this node's status that can change while it runs.
#[derive(Debug, Clone, Copy)]
enum NameList {
    /// `node.topics` at start: multicasts delivered here.
    Topics,
    /// `p2p.groups` at start: broadcasts delivered here.
    Groups,
}

impl NameList {
    fn of(self, status: &mut NodeStatus) -> &mut Vec<String> {
        match self {
            NameList::Topics => &mut status.topics,
            NameList::Groups => &mut status.groups,
        }
    }
}

/// Module IDs from here up are reserved for chainmesh's own modules.
pub const RESERVED_MODULES: u16 = 0xff00;
/// The built-in echo module: every node answers a request to it with the request's payload.
/// `chainmesh ping` uses it.
pub const ECHO_MODULE: u16 = 0xff00;

pub use pending::REQUEST_SWEEP;

/// A running node. Dropping it does not stop it; call [`Node::shutdown`].
pub struct Node {
    handle: NodeHandle,
}

/// A cloneable handle to a running node, usable from any task.
#[derive(Clone)]
pub struct NodeHandle {
    inner: Arc<Inner>,
}

struct Inner {
    id: NodeId,
    listen: SocketAddr,
    /// The GroupID unicasts and multicasts carry: the first configured group. A label only:
    /// which groups this node is in is the status's to say.
    default_group: String,
    max_packet: u32,
    compress_threshold: usize,
    /// Which lane of a link each module's packets take (`p2p.priority_modules`).
    lanes: options::Lanes,
    config_path: Option<PathBuf>,
    peers: Peers,
    router: Arc<Router>,
    seq: AtomicU32,
    pending: PendingTable,
    /// Looked up per delivered message, hence foldhash rather than SipHash.
    modules: RwLock<HashMap<u16, deliver::ModuleSink, foldhash::fast::RandomState>>,
    /// Copies of delivered messages for observers, by module.
    taps: tap::Taps,
    dedup: Dedup,
    /// The keys that tag what this node sends through relays and check what reaches it so.
    keys: crate::auth::Keyring,
    /// Packets refused because their tags did not prove their source.
    auth: tagging::AuthStats,
    /// `limits.relay_wait`: how long a relayed packet waits for room on its next hop.
    relay_wait: Duration,
    membership: RwLock<Arc<dyn Membership>>,
    /// This node's groups and topics (what it delivers) and every other node's.
    status: Arc<StatusService>,
    /// Who handles which packet types beyond the built-in messaging.
    protocols: Protocols,
    /// Decompression of received payloads, within the `[limits]`.
    inflate: inflate::Inflater,
    /// What protocols are handed: this node, held weakly.
    ctx: ProtocolContext,
    /// Cancelled by [`Node::shutdown`]; ends every task of the node.
    stop: CancellationToken,
    /// What closing links still held: the events and their counts.
    undelivered: undelivered::Undelivery,
    /// Relays, drops, deliveries and latencies, for the metrics.
    stats: stats::NodeStats,
    /// `[flow_control]`: bandwidth and rate limits.
    flow: crate::flow::FlowControl,
}

impl NodeHandle {
    /// What this node did with the packets it handled, and its latency histograms.
    pub fn stats(&self) -> &stats::NodeStats {
        &self.inner.stats
    }

    /// This node's ID.
    pub fn node_id(&self) -> NodeId {
        self.inner.id
    }

    /// The address this node accepts P2P connections on.
    pub fn listen_addr(&self) -> SocketAddr {
        self.inner.listen
    }

    /// The groups this node belongs to, sorted, as its status says (`p2p.groups` at start,
    /// then [`join_group`](Self::join_group) and [`leave_group`](Self::leave_group)).
    pub fn groups(&self) -> Vec<String> {
        self.inner.status.local_groups()
    }

    /// The config file runtime changes are written to, if any.
    pub fn config_path(&self) -> Option<&PathBuf> {
        self.inner.config_path.as_ref()
    }

    /// The peer set: sessions, configured peers, events.
    pub fn peers(&self) -> &Peers {
        &self.inner.peers
    }

    /// Peer events from now on.
    pub fn events(&self) -> broadcast::Receiver<PeerEvent> {
        self.inner.peers.subscribe()
    }

    /// Largest packet this node sends or accepts, `p2p.max_packet_size`.
    pub fn max_packet_size(&self) -> u32 {
        self.inner.max_packet
    }

    /// Receives every message addressed to `module`. Replaces an earlier registration of the
    /// same module. `capacity` bounds the messages waiting in the returned queue; when it is
    /// full, the sessions delivering to it stop reading, which slows the senders down (their
    /// queues fill, [`send`](Self::send) waits and [`try_send`](Self::try_send) fails).
    ///
    /// Modules from [`RESERVED_MODULES`] up belong to chainmesh; registering
    /// [`ECHO_MODULE`] has no effect, the built-in echo answers it.
    pub fn register(&self, module: u16, capacity: usize) -> mpsc::Receiver<Message> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.inner
            .modules
            .write()
            .insert(module, deliver::ModuleSink::Queue(tx));
        rx
    }

    /// Calls `handler` with every message addressed to `module`, on the task that received
    /// it: the session task of the link it arrived on (for a message this node sends itself,
    /// the sender's task). Replaces an earlier registration of the same module, queue or
    /// handler.
    ///
    /// This saves the hand-off to an application task that [`register`](Self::register)'s
    /// queue costs, so a request answered at once ([`Responder::respond`] never waits)
    /// goes back in the same turn of the session that read it. The price: while the handler
    /// runs, its link reads nothing else, and there is no queue to absorb a burst. It must
    /// not block; work that takes longer than a few microseconds, or that waits, belongs on
    /// a task of its own behind a queue. A handler that panics takes down the session it
    /// runs on, as any panic on that task would.
    ///
    /// ```no_run
    /// # fn run(node: chainmesh::NodeHandle) {
    /// // Answers every request to module 7 with its own payload.
    /// node.register_handler(7, |mut msg| {
    ///     if let Some(r) = msg.take_responder() {
    ///         let _ = r.respond(msg.payload.clone());
    ///     }
    /// });
    /// # }
    /// ```
    pub fn register_handler(&self, module: u16, handler: impl Fn(Message) + Send + Sync + 'static) {
        self.inner
            .modules
            .write()
            .insert(module, deliver::ModuleSink::Handler(Arc::new(handler)));
    }

    /// Stops delivering to `module`, whether to a queue or a handler; requests to it are
    /// answered with an error from then on.
    pub fn unregister(&self, module: u16) {
        self.inner.modules.write().remove(&module);
    }

    /// A fresh Seq for a message this node originates. Seqs start at a random value at boot,
    /// rise by one per message and skip 0, which link-control packets use.
    pub fn next_seq(&self) -> u32 {
        take_seq(&self.inner.seq)
    }

    // ----- routes ------------------------------------------------------------------------

    /// Every node this one can reach, with its distance in hops (1 for a neighbour), sorted
    /// by node ID.
    pub fn reachable_nodes(&self) -> Vec<(NodeId, u8)> {
        self.inner.router.reachable()
    }

    /// The routing table: destination, next hop and distance, sorted by destination.
    pub fn routes(&self) -> Vec<RouteInfo> {
        self.inner.router.routes()
    }

    /// The routing table's seq, as announced to the neighbours.
    pub fn route_seq(&self) -> u32 {
        self.inner.router.seq()
    }

    /// Neighbour lists refused by routing, by reason, and links closed for them.
    pub fn routing_counters(&self) -> crate::routing::RoutingCounters {
        self.inner.router.counters()
    }

    /// The links of the network as routing knows them: this node's live links and those
    /// between reached nodes that both ends attest, each once as (smaller ID, larger ID).
    pub fn route_links(&self) -> Vec<(NodeId, NodeId)> {
        self.inner.router.links()
    }

    /// Other nodes' signed neighbour lists held: at most `limits.max_routing_nodes`.
    pub fn routing_lists(&self) -> usize {
        self.inner.router.list_count()
    }

    /// Nodes becoming reachable or unreachable, from now on.
    pub fn reachability_events(&self) -> broadcast::Receiver<Reachability> {
        self.inner.router.subscribe()
    }

    /// The link a packet for `dst` leaves by: the direct session when there is one, else the
    /// session to the route's next hop. `None`: `dst` is unreachable.
    fn link_for(&self, dst: &NodeId) -> Option<SessionHandle> {
        crate::routing::link_for(
            dst,
            |n| self.inner.peers.session(n),
            |d| self.inner.router.next_hop(d),
        )
    }

    // ----- topics and membership ---------------------------------------------------------

    /// Subscribes this node to `topic`: multicasts to it are delivered here from now on, and
    /// the other nodes learn it through status synchronization. Returns false if already
    /// subscribed; a name the status cannot carry (empty, or longer than 65535 bytes) is
    /// refused.
    pub fn subscribe(&self, topic: &str) -> Result<bool, StatusError> {
        self.add_to_status(NameList::Topics, topic)
    }

    /// Unsubscribes from `topic`; multicasts to it are no longer delivered here. Returns
    /// false if not subscribed.
    pub fn unsubscribe(&self, topic: &str) -> bool {
        self.remove_from_status(NameList::Topics, topic)
    }

    /// Makes this node a member of `group`: broadcasts to it are delivered here from now on,
    /// and the other nodes learn it through status synchronization (they send to it once
    /// they have). Lasts until the node stops; `p2p.groups` is what it joins at start.
    /// Returns false if already a member; a name the status cannot carry (empty, or longer
    /// than 65535 bytes) is refused.
    pub fn join_group(&self, group: &str) -> Result<bool, StatusError> {
        self.add_to_status(NameList::Groups, group)
    }

    /// Leaves `group`: broadcasts to it are no longer delivered here. Returns false if not a
    /// member.
    pub fn leave_group(&self, group: &str) -> bool {
        self.remove_from_status(NameList::Groups, group)
    }

    /// Adds `name` to one of this node's status lists; false if it was there already.
    fn add_to_status(&self, list: NameList, name: &str) -> Result<bool, StatusError> {
        let mut added = false;
        self.inner.status.update(|s| {
            let names = list.of(s);
            if !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
                added = true;
            }
        })?;
        Ok(added)
    }

    /// Takes `name` off one of this node's status lists; false if it was not there.
    fn remove_from_status(&self, list: NameList, name: &str) -> bool {
        let mut removed = false;
        let changed = self.inner.status.update(|s| {
            let names = list.of(s);
            let before = names.len();
            names.retain(|n| n != name);
            removed = names.len() != before;
        });
        // Dropping a name never makes the status invalid, so the change always applies.
        changed.is_ok() && removed
    }

    /// The topics this node subscribes to, sorted, as its status says.
    pub fn topics(&self) -> Vec<String> {
        self.inner.status.local_topics()
    }

    /// Replaces where broadcast and multicast targets come from. The node starts with the
    /// synchronized status table, which knows every reachable node's groups and topics;
    /// [`StaticMembership`](crate::routing::StaticMembership) is a table set by hand.
    pub fn set_membership(&self, membership: Arc<dyn Membership>) {
        *self.inner.membership.write() = membership;
    }

    fn membership(&self) -> Arc<dyn Membership> {
        self.inner.membership.read().clone()
    }

    // ----- unicast and request/response --------------------------------------------------

    /// Sends `payload` to module `module` of node `dst`, relayed along routes when `dst` is
    /// not a neighbour. Returns once the packet is queued for the next hop, waiting while
    /// that hop's queue is full.
    ///
    /// Delivery: at most once. If the link to the next hop closes with the message still
    /// queued, it is reported in [`undelivered`](Self::undelivered), never lost silently;
    /// once written to the socket, or past the next hop, a drop cannot be reported: use
    /// [`request`](Self::request) to know it arrived.
    ///
    /// Errors: [`SendError::Unreachable`] (no link or route), [`SendError::TooLarge`] (the
    /// packet would exceed `p2p.max_packet_size`), [`SendError::Invalid`].
    pub async fn send(&self, dst: NodeId, module: u16, payload: Bytes) -> Result<(), SendError> {
        self.send_with(dst, module, payload, SendOptions::default())
            .await
    }

    /// Like [`send`](Self::send), with per-call [`SendOptions`]: a
    /// [`lane`](SendOptions::lane) other than the module's, for instance.
    pub async fn send_with(
        &self,
        dst: NodeId,
        module: u16,
        payload: Bytes,
        options: SendOptions,
    ) -> Result<(), SendError> {
        let u = Unicast::new(dst, module, self.next_seq(), Ext(0), &payload).in_lane(options.lane);
        self.unicast(u).await
    }

    /// Like [`send`](Self::send), but never waits: fails with [`SendError::QueueFull`] when
    /// the next hop's queue has no room (the drop is counted in that peer's
    /// `dropped_out`).
    pub fn try_send(&self, dst: NodeId, module: u16, payload: Bytes) -> Result<(), SendError> {
        self.unicast_now(Unicast::new(dst, module, self.next_seq(), Ext(0), &payload))
    }

    /// Sends a request to module `module` of node `dst` and waits for its response, which
    /// travels back along the routes. Every outcome arrives, within `timeout` at the latest
    /// (timeouts are answered by sweeps on a [`REQUEST_SWEEP`] grid, so one is reported up
    /// to 5 ms after it expires):
    ///
    /// - `Ok(payload)`: the handler's response;
    /// - [`RequestError::Remote`]: the handler failed, dropped the request, or there is no
    ///   handler for the module;
    /// - [`RequestError::Timeout`]: nothing came back in time (waiting for queue room
    ///   counts);
    /// - [`RequestError::PeerDisconnected`] / [`RequestError::Unreachable`]: the node's link,
    ///   or its last route, went down while waiting;
    /// - [`RequestError::Unsent`]: the link to the next hop closed with the request still
    ///   queued, never written (so sending it again cannot make it run twice);
    /// - [`RequestError::Send`]: it could not be sent at all;
    /// - [`RequestError::Stopped`]: this node is shutting down.
    pub async fn request(
        &self,
        dst: NodeId,
        module: u16,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, RequestError> {
        self.request_with(dst, module, payload, timeout, SendOptions::default())
            .await
    }

    /// Like [`request`](Self::request), with per-call [`SendOptions`]. The lane is the
    /// request's; the response takes the lane its module has on the responding node.
    pub async fn request_with(
        &self,
        dst: NodeId,
        module: u16,
        payload: Bytes,
        timeout: Duration,
        options: SendOptions,
    ) -> Result<Bytes, RequestError> {
        let started = std::time::Instant::now();
        let reply = self
            .request_reply(dst, module, &payload, timeout, options.lane)
            .await;
        // A timeout or a lost link says nothing of how fast the other side answers.
        if matches!(reply, Ok(_) | Err(RequestError::Remote(_))) {
            self.inner.stats.request_latency.observe(started.elapsed());
        }
        reply.map(|r| r.payload)
    }

    /// Sends a request to the built-in echo module of `dst` and measures the round trip.
    /// The reply's `hops` counts the links the response crossed (from the TTL it has left).
    pub async fn ping(
        &self,
        dst: NodeId,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<PingReply, RequestError> {
        let started = std::time::Instant::now();
        let reply = self
            .request_reply(dst, ECHO_MODULE, &payload, timeout, None)
            .await?;
        let rtt = started.elapsed();
        if reply.hops == 1 {
            self.inner.stats.link_rtt.observe(rtt);
        }
        Ok(PingReply {
            rtt,
            hops: reply.hops,
        })
    }

    // ----- broadcast and multicast -------------------------------------------------------

    /// Sends `payload` to module `module` of every node in `group` except this one, as the
    /// [`Membership`] lists them. The packet is encoded once (compressed once) and the same
    /// bytes are queued to every neighbour that is a target; targets further away get it
    /// through relays, split by next hop. Waits while a next hop's queue is full.
    ///
    /// Delivery: at most once per target; the returned [`Fanout`] says which targets were
    /// queued and which had no route. Errors: [`SendError::TooLarge`],
    /// [`SendError::Invalid`].
    pub async fn broadcast(
        &self,
        group: &str,
        module: u16,
        payload: Bytes,
    ) -> Result<Fanout, SendError> {
        self.fan(Audience::Group(group), module, &payload, true)
            .await
    }

    /// Like [`broadcast`](Self::broadcast), but never waits: targets behind a full queue are
    /// reported in [`Fanout::dropped`].
    pub fn try_broadcast(
        &self,
        group: &str,
        module: u16,
        payload: Bytes,
    ) -> Result<Fanout, SendError> {
        self.fan_now(Audience::Group(group), module, &payload)
    }

    /// Sends `payload` to module `module` of every node subscribed to `topic` except this
    /// one, as the [`Membership`] lists them; the receivers see the topic in
    /// [`MessageKind::Multicast`]. Encoding, relaying and delivery are as for
    /// [`broadcast`](Self::broadcast).
    pub async fn multicast(
        &self,
        topic: &str,
        module: u16,
        payload: Bytes,
    ) -> Result<Fanout, SendError> {
        self.fan(Audience::Topic(topic), module, &payload, true)
            .await
    }

    /// Like [`multicast`](Self::multicast), but never waits: targets behind a full queue are
    /// reported in [`Fanout::dropped`].
    pub fn try_multicast(
        &self,
        topic: &str,
        module: u16,
        payload: Bytes,
    ) -> Result<Fanout, SendError> {
        self.fan_now(Audience::Topic(topic), module, &payload)
    }

    // ----- protocols ---------------------------------------------------------------------

    /// Sends any packet with options (status synchronization, AMOP) to `dst` through its
    /// next hop, waiting for queue room. Routing fills in what it owns: source = this node,
    /// destinations = `[dst]`, TTL = default, Version per link, and a fresh Seq if the
    /// packet's is 0. The payload is compressed like any message's.
    ///
    /// Errors as for [`send`](Self::send); a packet type without options is
    /// [`SendError::Invalid`].
    pub async fn send_packet(&self, dst: NodeId, packet: Packet) -> Result<(), SendError> {
        self.routed_packet(dst, &packet).await
    }

    /// Hands the packet types `protocol` lists to it from now on (see [`Protocol`]). Refused,
    /// with nothing registered, if one of them is the node's own messaging or link control,
    /// or already has a protocol: the status synchronization and routing types are taken
    /// from the start.
    pub fn register_protocol(&self, protocol: Arc<dyn Protocol>) -> Result<(), ProtocolError> {
        self.inner.protocols.register(protocol)
    }

    /// What a protocol uses to reach other nodes: build the protocol with it, then
    /// [`register_protocol`](Self::register_protocol) it. It holds the node weakly, so a
    /// protocol keeping it does not keep a stopped node alive.
    pub fn protocol_context(&self) -> ProtocolContext {
        self.inner.ctx.clone()
    }

    // ----- status ------------------------------------------------------------------------

    /// The status engine: this node's status and every known node's. Its groups and topics
    /// are the ones this node delivers broadcasts and multicasts for.
    pub fn status(&self) -> &Arc<StatusService> {
        &self.inner.status
    }

    /// Sets this node's application status (e.g. its block height); every node sees the
    /// change within a few round trips.
    pub fn set_app_status(&self, app: impl Into<Bytes>) -> Result<StatusVersion, StatusError> {
        self.inner.status.set_app_status(app)
    }

    /// The status of `node` as last synchronized, if known.
    pub fn peer_status(&self, node: &NodeId) -> Option<PeerStatus> {
        self.inner.status.get(node)
    }

    /// Every known node's status (not this node's own: see [`StatusService::local`]).
    pub fn peer_statuses(&self) -> Vec<PeerStatus> {
        self.inner.status.all()
    }

    /// Status updates and removals of other nodes, from now on.
    pub fn status_events(&self) -> broadcast::Receiver<StatusEvent> {
        self.inner.status.subscribe()
    }
}

/// The next Seq from `counter`, skipping 0 (which link-control packets use) when it wraps.
fn take_seq(counter: &AtomicU32) -> u32 {
    loop {
        let s = counter.fetch_add(1, Ordering::Relaxed);
        if s != 0 {
            return s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqs_rise_by_one_and_skip_zero_when_they_wrap() {
        let counter = AtomicU32::new(u32::MAX - 1);
        let seqs: Vec<u32> = (0..4).map(|_| take_seq(&counter)).collect();
        assert_eq!(seqs, [u32::MAX - 1, u32::MAX, 1, 2]);
    }
}
