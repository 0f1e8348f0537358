//! The node: starts every layer from a config and offers the application a cloneable
//! [`NodeHandle`] to send, request, broadcast, multicast and receive messages by module.
//!
//! # Messaging forms
//!
//! | form | call | reaches | delivery |
//! |---|---|---|---|
//! | unicast | [`send`](NodeHandle::send), [`try_send`](NodeHandle::try_send) | one node, relayed along routes when not a neighbour | queued for the next hop; at most once |
//! | request/response | [`request`](NodeHandle::request) | one node; the response comes back along routes | exactly one outcome: response, remote error, timeout, unreachable |
//! | broadcast | [`broadcast`](NodeHandle::broadcast) | every node of a group ([`Membership`]) | queued per next hop; at most once per node |
//! | multicast | [`multicast`](NodeHandle::multicast) | every subscriber of a topic ([`Membership`]) | queued per next hop; at most once per node |
//!
//! "Queued" means the packet is in the write queue of the link to the next hop, which is as
//! far as a sender can know without a response: a link that drops later loses what was queued
//! on it. Every message is identified by (source node ID, Seq) and handled at most once by
//! each node (see [`crate::routing::dedup`]). `docs/messaging.md` is the guide.

mod dispatch;
mod error;
mod message;
mod runtime;
mod status_link;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::admission::Admission;
use crate::config::Config;
use crate::identity::{Identity, NodeId};
use crate::peers::{PeerEvent, PeerSettings, Peers};
use crate::routing::{plan, Dedup, LocalInterests, Membership, Reachability, RouteInfo, Router};
use crate::session::{QueueError, SessionHandle};
use crate::status::{NodeStatus, StatusService};
use crate::tls::TlsContext;
use crate::wire::{
    compress_append, encode_topic_prefix, for_link, DataFrame, Ext, Packet, PacketType, WireError,
    DEFAULT_TTL, DIRECT_FORM_VERSION, MAX_PROTOCOL_VERSION,
};

pub use error::{NodeError, RequestError, SendError};
pub use message::{Message, MessageKind, Responder};
pub use runtime::PeerChangeError;

/// How long shutdown waits for sessions to flush their queues.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// Shards of the outstanding-request table, so responses arriving on different sessions
/// rarely take the same lock.
const PENDING_SHARDS: usize = 32;

/// Module IDs from here up are reserved for chainmesh's own modules.
pub const RESERVED_MODULES: u16 = 0xff00;
/// The built-in echo module: every node answers a request to it with the request's payload.
/// `chainmesh ping` uses it.
pub const ECHO_MODULE: u16 = 0xff00;

/// A running node. Dropping it does not stop it; call [`Node::shutdown`].
pub struct Node {
    handle: NodeHandle,
    stop: CancellationToken,
}

/// A cloneable handle to a running node, usable from any task.
#[derive(Clone)]
pub struct NodeHandle {
    inner: Arc<Inner>,
}

struct Inner {
    id: NodeId,
    listen: SocketAddr,
    groups: Vec<String>,
    max_packet: u32,
    compress_threshold: usize,
    config_path: Option<PathBuf>,
    peers: Peers,
    router: Arc<Router>,
    seq: AtomicU32,
    pending: PendingTable,
    /// Looked up per delivered message, hence foldhash rather than SipHash.
    modules: RwLock<HashMap<u16, mpsc::Sender<Message>, foldhash::fast::RandomState>>,
    dedup: Dedup,
    /// `limits.relay_wait`: how long a relayed packet waits for room on its next hop.
    relay_wait: Duration,
    interests: Arc<LocalInterests>,
    membership: RwLock<Arc<dyn Membership>>,
    status: Arc<StatusService>,
}

/// A response as the requester receives it.
struct Reply {
    payload: Bytes,
    hops: u8,
}

struct PendingRequest {
    dst: NodeId,
    reply: oneshot::Sender<Result<Reply, RequestError>>,
    /// When [`sweep_expired_requests`](NodeHandle::sweep_expired_requests) answers it with
    /// a timeout.
    deadline: tokio::time::Instant,
    timeout: Duration,
}

/// How often outstanding requests are checked for their deadline, while there are any. A
/// timeout is reported up to this much after it expires; in exchange a request costs no
/// timer of its own, whose registration and removal were a sixth of a round trip's CPU.
pub const REQUEST_SWEEP: Duration = Duration::from_millis(5);

/// Outstanding requests of one shard by Seq. Seqs are ours (a response can only look one
/// up), so a fast hash is safe here.
type PendingShard = HashMap<u32, PendingRequest, foldhash::fast::RandomState>;

/// One shard's lock and map on cache lines of their own: a request is inserted on the
/// requester's thread and taken on the thread that reads its response, and neighbouring
/// shards sharing a line would make every such pair fight over it.
#[repr(align(128))]
struct PaddedShard(Mutex<PendingShard>);

/// Outstanding requests by Seq, sharded by Seq.
struct PendingTable {
    shards: [PaddedShard; PENDING_SHARDS],
    /// Entries in all shards, so the sweeper can sleep while there are none.
    count: std::sync::atomic::AtomicUsize,
    /// Wakes the sweeper when the first request goes in; dropped with the node, which
    /// ends the sweeper.
    not_empty: mpsc::Sender<()>,
}

impl PendingTable {
    /// The table, and the receiver that hears when it stops being empty.
    fn new() -> (Self, mpsc::Receiver<()>) {
        let (not_empty, woken) = mpsc::channel(1);
        let table = PendingTable {
            shards: std::array::from_fn(|_| PaddedShard(Mutex::new(HashMap::default()))),
            count: std::sync::atomic::AtomicUsize::new(0),
            not_empty,
        };
        (table, woken)
    }

    fn shard(&self, seq: u32) -> &Mutex<PendingShard> {
        &self.shards[seq as usize % PENDING_SHARDS].0
    }

    fn insert(&self, seq: u32, p: PendingRequest) {
        if let Some(old) = self.shard(seq).lock().insert(seq, p) {
            // A Seq reused after 2^32 requests while one is still waiting: the old one can
            // no longer be told apart, so it ends now.
            let _ = old.reply.send(Err(RequestError::Timeout(old.timeout)));
        } else if self.count.fetch_add(1, Ordering::AcqRel) == 0 {
            // Full means a wake-up is already waiting for the sweeper.
            let _ = self.not_empty.try_send(());
        }
    }

    fn taken(&self, n: usize) {
        if n > 0 {
            self.count.fetch_sub(n, Ordering::AcqRel);
        }
    }

    fn remove(&self, seq: u32) {
        let gone = self.shard(seq).lock().remove(&seq).is_some();
        self.taken(usize::from(gone));
    }

    /// Takes request `seq` if it was sent to `from`: a Seq is only ours to match if the
    /// response comes from the node we asked.
    fn take_from(&self, seq: u32, from: &NodeId) -> Option<PendingRequest> {
        let mut shard = self.shard(seq).lock();
        let p = match shard.get(&seq) {
            Some(p) if p.dst == *from => shard.remove(&seq),
            _ => None,
        };
        drop(shard);
        self.taken(usize::from(p.is_some()));
        p
    }

    /// Takes every request that satisfies `pred`.
    fn take_where(&self, mut pred: impl FnMut(&PendingRequest) -> bool) -> Vec<PendingRequest> {
        let mut out = Vec::new();
        for PaddedShard(shard) in &self.shards {
            let mut shard = shard.lock();
            let seqs: Vec<u32> = shard
                .iter()
                .filter(|(_, p)| pred(p))
                .map(|(s, _)| *s)
                .collect();
            out.extend(seqs.into_iter().filter_map(|s| shard.remove(&s)));
        }
        self.taken(out.len());
        out
    }

    fn is_empty(&self) -> bool {
        self.count.load(Ordering::Acquire) == 0
    }

    fn destinations(&self) -> Vec<NodeId> {
        let mut out = Vec::new();
        for PaddedShard(shard) in &self.shards {
            out.extend(shard.lock().values().map(|p| p.dst));
        }
        out
    }
}

/// Who a broadcast or multicast is for.
#[derive(Clone, Copy)]
enum Audience<'a> {
    /// Every node of a group.
    Group(&'a str),
    /// Every subscriber of a topic.
    Topic(&'a str),
}

/// A unicast to send: the fields that are the message's own (the node adds source, group,
/// TTL and the addressing form).
#[derive(Clone, Copy)]
struct Unicast<'a> {
    dst: NodeId,
    module: u16,
    seq: u32,
    ext: Ext,
    payload: &'a [u8],
}

/// How far [`NodeHandle::unicast_attempt`] got without waiting.
enum Attempt {
    /// In the next hop's queue.
    Queued,
    /// For this node itself: the frame to deliver locally.
    Loopback(Bytes),
    /// Needs the general path: a full queue, a closing link, compression.
    General,
}

/// The copy of a broadcast or multicast for a neighbour that relays it: the targets it
/// lists and its own encoding.
struct RelayCopy<'a> {
    targets: &'a [NodeId],
    frame: Bytes,
}

/// What became of a broadcast or multicast, per target node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fanout {
    /// The message's Seq.
    pub seq: u32,
    /// Targets whose copy was queued for its next hop.
    pub queued: Vec<NodeId>,
    /// Targets with no route.
    pub unreachable: Vec<NodeId>,
    /// Targets whose next hop's queue was full (fail-fast only) or whose link just closed.
    pub dropped: Vec<NodeId>,
}

/// The outcome of one [`NodeHandle::ping`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingReply {
    /// Time from sending the request to receiving the response.
    pub rtt: Duration,
    /// Links the response crossed: 1 from a neighbour, one more per relay.
    pub hops: u8,
}

/// A fresh node's first Seq: random, so a restarted node's messages are not mistaken for its
/// previous incarnation's by nodes that still remember those.
fn initial_seq() -> u32 {
    loop {
        let s = rand::random::<u32>();
        if s != 0 {
            return s;
        }
    }
}

/// Links crossed by a packet that arrives with `ttl` left.
fn hops_from_ttl(ttl: u8) -> u8 {
    DEFAULT_TTL.saturating_sub(ttl).saturating_add(1)
}

/// How a packet for `dst` leaving by `link` is addressed: in direct form ([`Ext::DIRECT`],
/// no node IDs) on the link to `dst` itself when the link's version has that form, else
/// with `dst` listed as its destination.
fn addressing<'a>(link: &SessionHandle, dst: &'a NodeId, ext: Ext) -> (Ext, &'a [NodeId]) {
    if link.peer == *dst && link.version >= DIRECT_FORM_VERSION {
        (ext | Ext::DIRECT, &[])
    } else {
        (ext, std::slice::from_ref(dst))
    }
}

fn wire_to_send_error(e: WireError) -> SendError {
    match e {
        WireError::LengthTooLarge { length, max } => SendError::TooLarge {
            size: usize::try_from(length).unwrap_or(usize::MAX),
            max: max as usize,
        },
        other => SendError::Invalid(other.to_string()),
    }
}

impl Node {
    /// Starts a node: loads its identity, listens and dials its peers. The admin API is not
    /// part of the library: `chainmesh-admin` serves it from a [`NodeHandle`].
    /// `config_path` is where runtime changes are written back; `None` keeps them in memory.
    pub async fn start(config: Config, config_path: Option<PathBuf>) -> Result<Node, NodeError> {
        let identity = Identity::load(
            &config.identity.ca_cert,
            &config.identity.node_cert,
            &config.identity.node_key,
        )?;
        let admission = Arc::new(RwLock::new(Admission::new(
            config.p2p.blacklist.iter().copied(),
            config.p2p.whitelist.iter().copied(),
        )));
        let tls = TlsContext::new(&identity, admission.clone())?;
        let listener = TcpListener::bind(&config.p2p.listen)
            .await
            .map_err(|source| NodeError::Bind {
                what: "p2p",
                addr: config.p2p.listen.clone(),
                source,
            })?;
        let listen = listener.local_addr().map_err(|source| NodeError::Bind {
            what: "p2p",
            addr: config.p2p.listen.clone(),
            source,
        })?;
        let settings = PeerSettings {
            timers: config.timers.clone(),
            max_packet: config.p2p.max_packet_size,
            queue_bytes: config.limits.session_queue_bytes,
            inbound_handshakes: config.limits.inbound_handshakes,
        };
        let id = identity.node_id;
        let interests = Arc::new(LocalInterests::new(config.p2p.groups.iter().cloned()));
        let status_link = Arc::new(status_link::StatusLink::default());
        let status = StatusService::new(
            id,
            config.timers.status_interval,
            NodeStatus::with_groups(config.p2p.groups.iter().cloned()),
            status_link.clone(),
        )?;
        let membership: Arc<dyn Membership> =
            Arc::new(status_link::StatusMembership(status.clone()));
        let (pending, woken) = PendingTable::new();
        let inner = Arc::new_cyclic(|weak| Inner {
            id,
            listen,
            groups: config.p2p.groups.clone(),
            max_packet: config.p2p.max_packet_size,
            compress_threshold: config.p2p.compress_threshold,
            config_path,
            peers: Peers::new(
                id,
                tls,
                admission,
                settings,
                Arc::new(dispatch::Dispatch::new(weak.clone())),
            ),
            router: Router::new(id),
            seq: AtomicU32::new(initial_seq()),
            pending,
            modules: RwLock::new(HashMap::default()),
            dedup: Dedup::new(config.limits.dedup_sources),
            relay_wait: config.limits.relay_wait,
            interests,
            membership: RwLock::new(membership),
            status,
        });
        status_link.attach(Arc::downgrade(&inner));
        let handle = NodeHandle { inner };
        let stop = CancellationToken::new();
        // Routing subscribes to peer events before any link can come up.
        handle
            .inner
            .router
            .spawn(handle.inner.peers.clone(), stop.clone());
        handle.spawn_reachability_watch(stop.clone());
        handle.spawn_request_sweeper(woken, stop.clone());
        handle.inner.status.spawn(stop.clone());
        handle.inner.peers.listen(listener);
        for p in &config.p2p.peers {
            handle.inner.peers.add_target(p);
        }
        info!(node = %id.short(), p2p = %listen, "node started");
        Ok(Node { handle, stop })
    }

    /// A handle to use the node from anywhere.
    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// Tells every peer this node is leaving, closes all sessions and stops every task.
    /// Requests still waiting fail with [`RequestError::Stopped`].
    pub async fn shutdown(self) {
        self.stop.cancel();
        for p in self.handle.inner.pending.take_where(|_| true) {
            let _ = p.reply.send(Err(RequestError::Stopped));
        }
        self.handle.inner.peers.shutdown(SHUTDOWN_GRACE).await;
        info!(node = %self.handle.inner.id.short(), "node stopped");
    }
}

impl NodeHandle {
    /// This node's ID.
    pub fn node_id(&self) -> NodeId {
        self.inner.id
    }

    /// The address this node accepts P2P connections on.
    pub fn listen_addr(&self) -> SocketAddr {
        self.inner.listen
    }

    /// The groups this node belongs to.
    pub fn groups(&self) -> &[String] {
        &self.inner.groups
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
        self.inner.modules.write().insert(module, tx);
        rx
    }

    /// Stops delivering to `module`; requests to it are answered with an error from then on.
    pub fn unregister(&self, module: u16) {
        self.inner.modules.write().remove(&module);
    }

    /// A fresh Seq for a message this node originates. Seqs start at a random value at boot,
    /// rise by one per message and skip 0, which link-control packets use.
    pub fn next_seq(&self) -> u32 {
        loop {
            let s = self.inner.seq.fetch_add(1, Ordering::Relaxed);
            if s != 0 {
                return s;
            }
        }
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

    /// Nodes becoming reachable or unreachable, from now on.
    pub fn reachability_events(&self) -> broadcast::Receiver<Reachability> {
        self.inner.router.subscribe()
    }

    /// The link a packet for `dst` leaves by: the direct session when there is one, else the
    /// session to the route's next hop.
    fn next_hop_session(&self, dst: &NodeId) -> Result<SessionHandle, SendError> {
        if let Some(s) = self.inner.peers.session(dst) {
            return Ok(s);
        }
        let hop = self
            .inner
            .router
            .next_hop(dst)
            .ok_or(SendError::Unreachable(*dst))?;
        self.inner
            .peers
            .session(&hop)
            .ok_or(SendError::Unreachable(*dst))
    }

    // ----- topics and membership ---------------------------------------------------------

    /// Subscribes this node to `topic`: multicasts to it are delivered here from now on
    /// (once the other nodes learn it through status synchronization). Returns false if
    /// already subscribed.
    pub fn subscribe(&self, topic: &str) -> bool {
        let added = self.inner.interests.subscribe(topic);
        if added {
            self.announce_topic(topic, true);
        }
        added
    }

    /// Tells the network (through the status) that this node now does or does not
    /// subscribe to `topic`.
    fn announce_topic(&self, topic: &str, subscribed: bool) {
        let r = if subscribed {
            self.inner.status.add_topic(topic)
        } else {
            self.inner.status.remove_topic(topic)
        };
        if let Err(e) = r {
            // Local delivery still follows the subscription; only remote senders miss it.
            tracing::warn!(topic, error = %e, "topic change not announced");
        }
    }

    /// Unsubscribes from `topic`; multicasts to it are no longer delivered here. Returns
    /// false if not subscribed.
    pub fn unsubscribe(&self, topic: &str) -> bool {
        let removed = self.inner.interests.unsubscribe(topic);
        if removed {
            self.announce_topic(topic, false);
        }
        removed
    }

    /// The topics this node subscribes to, sorted.
    pub fn topics(&self) -> Vec<String> {
        self.inner.interests.topics()
    }

    /// Replaces where broadcast and multicast targets come from. The node starts with a
    /// [`LocalMembership`], which knows only itself; status synchronization installs one
    /// that knows every node's groups and topics.
    pub fn set_membership(&self, membership: Arc<dyn Membership>) {
        *self.inner.membership.write() = membership;
    }

    fn membership(&self) -> Arc<dyn Membership> {
        self.inner.membership.read().clone()
    }

    // ----- unicast -----------------------------------------------------------------------

    /// The group a unicast carries: the node's first.
    fn default_group(&self) -> &str {
        self.inner.groups.first().map(String::as_str).unwrap_or("")
    }

    /// The largest packet that may leave by `link`: the smaller of our limit and the one the
    /// peer stated in its handshake (a larger one would make the peer close the link). For
    /// a packet to this node itself (`None`), our own.
    fn link_limit(&self, link: Option<&SessionHandle>) -> u32 {
        link.map_or(self.inner.max_packet, |s| {
            self.inner.max_packet.min(s.peer_max_packet)
        })
    }

    /// The unicast packet `u`, leaving by `link` (`None`: to this node itself), in the node's
    /// first group; [`send_packet`](Self::send_packet) replaces type and group. On the direct
    /// link to its destination it takes the direct form, without the two node IDs, when the
    /// link's version has it.
    fn unicast_data<'a>(
        &'a self,
        link: Option<&SessionHandle>,
        u: &'a Unicast<'a>,
    ) -> DataFrame<'a> {
        let (version, (ext, dsts)) = match link {
            Some(s) => (s.version, addressing(s, &u.dst, u.ext)),
            None => (MAX_PROTOCOL_VERSION, (u.ext, std::slice::from_ref(&u.dst))),
        };
        DataFrame {
            version,
            packet_type: PacketType::UNICAST,
            seq: u.seq,
            ext: ext.with_ttl(DEFAULT_TTL),
            group: self.default_group(),
            src: &self.inner.id,
            dsts,
            module: u.module,
            prefix: &[],
            payload: u.payload,
        }
    }

    /// [`unicast_data`](Self::unicast_data) as a frame of its own, checked against the size
    /// limit and compressed when that pays.
    fn unicast_frame(
        &self,
        link: Option<&SessionHandle>,
        u: &Unicast<'_>,
    ) -> Result<Bytes, SendError> {
        self.checked_encode(self.unicast_data(link, u), link)
    }

    /// `f` as a frame of its own, checked against the limit of `link` and compressed when
    /// that pays.
    fn checked_encode(
        &self,
        f: DataFrame<'_>,
        link: Option<&SessionHandle>,
    ) -> Result<Bytes, SendError> {
        f.validate(self.link_limit(link))
            .map_err(wire_to_send_error)?;
        Ok(f.encode(self.inner.compress_threshold))
    }

    /// The common case of a unicast to another node: the next hop's queue has room and the
    /// payload is too small to compress, so the packet is encoded straight into the queue,
    /// with no buffer of its own. `None` sends the caller down the general path: a full
    /// queue (to wait or fail), a link closing (to retry on its replacement), compression,
    /// a payload big enough to be queued by reference, a message to this node itself.
    fn unicast_in_place(&self, u: &Unicast<'_>) -> Option<Result<(), SendError>> {
        let threshold = self.inner.compress_threshold;
        let len = u.payload.len();
        let big = len >= crate::session::BIG_FRAME;
        if u.dst == self.inner.id || big || (threshold > 0 && len > threshold) {
            return None;
        }
        let session = match self.next_hop_session(&u.dst) {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        };
        let f = self.unicast_data(Some(&session), u);
        if let Err(e) = f.validate(self.link_limit(Some(&session))) {
            return Some(Err(wire_to_send_error(e)));
        }
        session
            .offer_encoded(f.plain_len(), |out| f.encode_plain_into(out))
            .ok()
            .map(Ok)
    }

    /// The part of a unicast that never waits: a message to this node itself is encoded
    /// for local delivery, one to another node goes straight into its next hop's queue if
    /// it can ([`unicast_in_place`](Self::unicast_in_place)).
    fn unicast_attempt(&self, u: &Unicast<'_>) -> Result<Attempt, SendError> {
        if u.dst == self.inner.id {
            return Ok(Attempt::Loopback(self.unicast_frame(None, u)?));
        }
        match self.unicast_in_place(u) {
            Some(sent) => sent.map(|()| Attempt::Queued),
            None => Ok(Attempt::General),
        }
    }

    /// Sends a unicast, waiting for queue room: checks the size, finds the next hop,
    /// encodes, queues. A message to this node itself is delivered locally.
    async fn unicast(&self, u: Unicast<'_>) -> Result<(), SendError> {
        let attempt = self.unicast_attempt(&u)?;
        self.unicast_finish(attempt, u).await
    }

    /// Completes a unicast that [`unicast_attempt`](Self::unicast_attempt) began: delivers
    /// it locally, or queues it the general way, waiting for room.
    async fn unicast_finish(&self, attempt: Attempt, u: Unicast<'_>) -> Result<(), SendError> {
        match attempt {
            Attempt::Queued => Ok(()),
            Attempt::Loopback(frame) => self.loopback(frame).await,
            Attempt::General => {
                self.queue_routed(u.dst, |s| self.unicast_frame(Some(s), &u))
                    .await
            }
        }
    }

    /// [`unicast`](Self::unicast) without waiting: a full queue is [`SendError::QueueFull`]
    /// (counted as a drop on that link).
    fn unicast_now(&self, u: Unicast<'_>) -> Result<(), SendError> {
        match self.unicast_attempt(&u)? {
            Attempt::Queued => Ok(()),
            // Only a local delivery to a full module queue can wait; fail-fast treats it as
            // full.
            Attempt::Loopback(frame) => futures_util::FutureExt::now_or_never(self.loopback(frame))
                .unwrap_or(Err(SendError::QueueFull(u.dst))),
            Attempt::General => {
                let encode = |s: &SessionHandle| self.unicast_frame(Some(s), &u);
                match self.queue_now(u.dst, &encode)? {
                    None => Ok(()),
                    Some((session, _)) => {
                        session.count_drop();
                        Err(SendError::QueueFull(session.peer))
                    }
                }
            }
        }
    }

    /// Queues the frame `encode` makes for `dst` on the link to its next hop, waiting for
    /// room.
    ///
    /// Everything up to a full queue happens in [`queue_now`](Self::queue_now), without an
    /// await; only the wait is a future of its own (boxed: it is rare, and keeping it out
    /// of line keeps every send's future small).
    async fn queue_routed(
        &self,
        dst: NodeId,
        encode: impl Fn(&SessionHandle) -> Result<Bytes, SendError>,
    ) -> Result<(), SendError> {
        let Some((session, frame)) = self.queue_now(dst, &encode)? else {
            return Ok(());
        };
        if Box::pin(session.send(frame)).await.is_ok() {
            return Ok(());
        }
        // The link closed while we waited: once more on whatever replaced it.
        match self.queue_now(dst, &encode)? {
            None => Ok(()),
            Some((session, frame)) => Box::pin(session.send(frame))
                .await
                .map_err(|_| SendError::Unreachable(dst)),
        }
    }

    /// Queues the frame `encode` makes for `dst` on the link to its next hop if there is
    /// room now. Returns `None` when queued, or the link and the frame when its queue is
    /// full. If the link turns out to be closing (typically the loser of a simultaneous
    /// dial, replaced by the winner a moment ago), the frame is made again for the link
    /// that replaced it, which may be a different hop.
    fn queue_now(
        &self,
        dst: NodeId,
        encode: &impl Fn(&SessionHandle) -> Result<Bytes, SendError>,
    ) -> Result<Option<(SessionHandle, Bytes)>, SendError> {
        let mut session = self.next_hop_session(&dst)?;
        // A few attempts cover a replaced link; a link that keeps closing means the route
        // is going away, which the caller hears as unreachable.
        for _ in 0..3 {
            match session.offer(encode(&session)?) {
                Ok(()) => return Ok(None),
                Err((QueueError::Full, frame)) => return Ok(Some((session, frame))),
                Err((QueueError::Closed, _)) => match self.next_hop_session(&dst) {
                    Ok(next) if next.id != session.id => session = next,
                    _ => break,
                },
            }
        }
        Err(SendError::Unreachable(dst))
    }

    /// Delivers a frame this node sent to itself, as if it had arrived.
    async fn loopback(&self, frame: Bytes) -> Result<(), SendError> {
        let packet = Packet::decode_exact(&frame, u32::MAX).map_err(wire_to_send_error)?;
        if let Some(wait) = self.deliver_local(None, packet) {
            wait.await;
        }
        Ok(())
    }

    /// Sends `payload` to module `module` of node `dst`, relayed along routes when `dst` is
    /// not a neighbour. Returns once the packet is queued for the next hop, waiting while
    /// that hop's queue is full.
    ///
    /// Delivery: at most once. A queued message is lost if a link on its path drops before
    /// it crosses; use [`request`](Self::request) to know it arrived.
    ///
    /// Errors: [`SendError::Unreachable`] (no link or route), [`SendError::TooLarge`] (the
    /// packet would exceed `p2p.max_packet_size`), [`SendError::Invalid`].
    pub async fn send(&self, dst: NodeId, module: u16, payload: Bytes) -> Result<(), SendError> {
        let seq = self.next_seq();
        self.unicast(Unicast {
            dst,
            module,
            seq,
            ext: Ext(0),
            payload: &payload,
        })
        .await
    }

    /// Like [`send`](Self::send), but never waits: fails with [`SendError::QueueFull`] when
    /// the next hop's queue has no room (the drop is counted in that peer's
    /// `dropped_out`).
    pub fn try_send(&self, dst: NodeId, module: u16, payload: Bytes) -> Result<(), SendError> {
        let seq = self.next_seq();
        self.unicast_now(Unicast {
            dst,
            module,
            seq,
            ext: Ext(0),
            payload: &payload,
        })
    }

    /// Sends a request to module `module` of node `dst` and waits for its response, which
    /// travels back along the routes. Every outcome arrives, within `timeout` at the latest
    /// (a timeout is noticed by a sweep every [`REQUEST_SWEEP`], so it is reported up to
    /// 5 ms after it expires):
    ///
    /// - `Ok(payload)`: the handler's response;
    /// - [`RequestError::Remote`]: the handler failed, dropped the request, or there is no
    ///   handler for the module;
    /// - [`RequestError::Timeout`]: nothing came back in time (waiting for queue room
    ///   counts);
    /// - [`RequestError::PeerDisconnected`] / [`RequestError::Unreachable`]: the node's link,
    ///   or its last route, went down while waiting;
    /// - [`RequestError::Send`]: it could not be sent at all;
    /// - [`RequestError::Stopped`]: this node is shutting down.
    pub async fn request(
        &self,
        dst: NodeId,
        module: u16,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, RequestError> {
        self.request_reply(dst, module, &payload, timeout)
            .await
            .map(|r| r.payload)
    }

    async fn request_reply(
        &self,
        dst: NodeId,
        module: u16,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<Reply, RequestError> {
        let seq = self.next_seq();
        let (tx, rx) = oneshot::channel();
        let deadline = tokio::time::Instant::now() + timeout;
        let pending = PendingRequest {
            dst,
            reply: tx,
            deadline,
            timeout,
        };
        self.inner.pending.insert(seq, pending);
        // Removes the entry however this future ends, including when the caller drops it.
        let _guard = PendingGuard { node: self, seq };
        let u = Unicast {
            dst,
            module,
            seq,
            ext: Ext::REQUEST,
            payload,
        };
        match self.unicast_attempt(&u)? {
            Attempt::Queued => {}
            // Waiting for queue room counts against the timeout.
            attempt => tokio::time::timeout_at(deadline, self.unicast_finish(attempt, u))
                .await
                .map_err(|_| RequestError::Timeout(timeout))??,
        }
        // Answered by the response, by the sweeper once the deadline passes, or by the
        // reachability watch if the destination goes away.
        match rx.await {
            Ok(result) => result,
            // The table was dropped: the node is going away.
            Err(_) => Err(RequestError::Stopped),
        }
    }

    /// Sends a request to the built-in echo module of `dst` and measures the round trip.
    /// The reply's `hops` counts the links the response crossed (from the TTL it has left).
    pub async fn ping(
        &self,
        dst: NodeId,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<PingReply, RequestError> {
        let started = Instant::now();
        let reply = self
            .request_reply(dst, ECHO_MODULE, &payload, timeout)
            .await?;
        Ok(PingReply {
            rtt: started.elapsed(),
            hops: reply.hops,
        })
    }

    /// Sends the response to request `seq` from `to`. Never waits: it runs inside handlers
    /// and drops. A response too large to send becomes an error response saying so.
    fn respond(
        &self,
        to: NodeId,
        module: u16,
        seq: u32,
        result: Result<Bytes, String>,
    ) -> Result<(), SendError> {
        let (ext, payload) = match result {
            Ok(p) => (Ext::RESPONSE, p),
            Err(e) => (Ext::RESPONSE | Ext::ERROR, Bytes::from(e.into_bytes())),
        };
        let response = Unicast {
            dst: to,
            module,
            seq,
            ext,
            payload: &payload,
        };
        let sent = self.unicast_now(response);
        if let Err(SendError::TooLarge { size, max }) = sent {
            let text = format!("the response of {size} bytes exceeds the {max}-byte limit");
            let _ = self.unicast_now(Unicast {
                ext: Ext::RESPONSE | Ext::ERROR,
                payload: text.as_bytes(),
                ..response
            });
        }
        sent
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

    /// The fail-fast form of [`fan`](Self::fan): it never waits, so it completes at once.
    fn fan_now(&self, to: Audience<'_>, module: u16, payload: &Bytes) -> Result<Fanout, SendError> {
        futures_util::FutureExt::now_or_never(self.fan(to, module, payload, false))
            .unwrap_or(Err(SendError::QueueFull(self.inner.id)))
    }

    /// Sends to a group (broadcast) or a topic's subscribers (multicast), as the
    /// [`Membership`] lists them.
    async fn fan(
        &self,
        to: Audience<'_>,
        module: u16,
        payload: &Bytes,
        wait: bool,
    ) -> Result<Fanout, SendError> {
        match to {
            Audience::Group(group) => {
                let targets = self.membership().group_members(group);
                self.fanout(
                    PacketType::BROADCAST,
                    group,
                    &[],
                    module,
                    payload,
                    &targets,
                    wait,
                )
                .await
            }
            Audience::Topic(topic) => {
                let targets = self.membership().topic_subscribers(topic);
                let mut prefix = Vec::with_capacity(2 + topic.len());
                encode_topic_prefix(topic, &mut prefix).map_err(wire_to_send_error)?;
                let group = self.default_group().to_owned();
                self.fanout(
                    PacketType::MULTICAST,
                    &group,
                    &prefix,
                    module,
                    payload,
                    &targets,
                    wait,
                )
                .await
            }
        }
    }

    /// The next hop of `dst` as fan-out planning sees it.
    fn hop_of(&self, dst: &NodeId) -> Option<NodeId> {
        if self.inner.peers.is_connected(dst) {
            return Some(*dst);
        }
        self.inner.router.next_hop(dst)
    }

    #[allow(clippy::too_many_arguments)]
    async fn fanout(
        &self,
        packet_type: PacketType,
        group: &str,
        prefix: &[u8],
        module: u16,
        payload: &[u8],
        targets: &[NodeId],
        wait: bool,
    ) -> Result<Fanout, SendError> {
        let seq = self.next_seq();
        let id = self.inner.id;
        // Compress once for every copy.
        let joined;
        let plain: &[u8] = if prefix.is_empty() {
            payload
        } else {
            joined = [prefix, payload].concat();
            &joined
        };
        let threshold = self.inner.compress_threshold;
        let mut compressed = Vec::new();
        let (body, ext) = if threshold > 0
            && plain.len() > threshold
            && compress_append(&mut compressed, plain)
        {
            (&compressed[..], Ext::COMPRESSED)
        } else {
            (plain, Ext::default())
        };
        let base = DataFrame {
            version: MAX_PROTOCOL_VERSION,
            packet_type,
            seq,
            ext: ext.with_ttl(DEFAULT_TTL),
            group,
            src: &id,
            dsts: &[],
            module,
            prefix: &[],
            payload: body,
        };
        // The size limit counts the uncompressed payload, as for unicast.
        let plain_base = DataFrame {
            payload: plain,
            ..base
        };
        plain_base
            .validate(self.inner.max_packet)
            .map_err(wire_to_send_error)?;
        let plan = plan(targets, &id, |t| self.hop_of(t));
        let mut out = Fanout {
            seq,
            unreachable: plan.unreachable.clone(),
            ..Fanout::default()
        };
        // A neighbour that is itself the target gets the direct form: one encoding shared
        // by all of them. The full form only for a link of an older version.
        let direct = (!plan.leaves.is_empty()).then(|| {
            DataFrame {
                ext: base.ext | Ext::DIRECT,
                ..base
            }
            .encode(0)
        });
        let mut full_form = None;
        // Each copy: the neighbour it goes to, and for a relay the targets it lists and its
        // own encoding (leaves share `direct`).
        let mut copies: Vec<(NodeId, Option<RelayCopy>)> =
            plan.leaves.iter().map(|leaf| (*leaf, None)).collect();
        for (hop, list) in &plan.relays {
            let f = DataFrame { dsts: list, ..base };
            if let Err(e) = f.validate(self.inner.max_packet) {
                debug!(next_hop = %hop.short(), error = %e, "relay copy too large; dropped");
                out.dropped.extend(list);
                continue;
            }
            copies.push((
                *hop,
                Some(RelayCopy {
                    targets: list,
                    frame: f.encode(0),
                }),
            ));
        }
        let mut blocked = Vec::new();
        'copies: for (hop, relay) in copies {
            let list = match &relay {
                Some(r) => r.targets,
                None => std::slice::from_ref(&hop),
            };
            let mut closed = None;
            // A second attempt covers a link replaced a moment ago (see `queue_now`).
            for _ in 0..2 {
                let Some(s) = self.inner.peers.session(&hop) else {
                    break;
                };
                if closed == Some(s.id) {
                    break;
                }
                // The peer's own limit, on the uncompressed size as it will check it.
                let copy = match &relay {
                    Some(r) => DataFrame {
                        dsts: r.targets,
                        ..plain_base
                    },
                    None if s.version >= DIRECT_FORM_VERSION => DataFrame {
                        ext: base.ext | Ext::DIRECT,
                        ..plain_base
                    },
                    None => plain_base,
                };
                if copy.validate(self.link_limit(Some(&s))).is_err() {
                    debug!(next_hop = %hop.short(), limit = s.peer_max_packet,
                        "copy larger than the neighbour accepts; dropped");
                    break;
                }
                let shared = match (&relay, &direct) {
                    (Some(r), _) => &r.frame,
                    (None, Some(d)) if s.version >= DIRECT_FORM_VERSION => d,
                    (None, _) => full_form.get_or_insert_with(|| base.encode(0)),
                };
                // Encoded at our newest version; a link that agreed an older one gets a
                // patched copy.
                let patched;
                let frame = if s.version == MAX_PROTOCOL_VERSION {
                    shared
                } else {
                    patched = for_link(shared, s.version);
                    &patched
                };
                match s.offer_shared(frame) {
                    Ok(()) => {
                        out.queued.extend_from_slice(list);
                        continue 'copies;
                    }
                    Err(QueueError::Full) => {
                        blocked.push((s, list.to_vec(), frame.clone()));
                        continue 'copies;
                    }
                    Err(QueueError::Closed) => closed = Some(s.id),
                }
            }
            out.dropped.extend_from_slice(list);
        }
        for (s, list, frame) in blocked {
            let queued = if wait {
                s.send(frame).await.is_ok()
            } else {
                s.count_drop();
                false
            };
            if queued {
                out.queued.extend(list);
            } else {
                out.dropped.extend(list);
            }
        }
        Ok(out)
    }

    // ----- packets for protocol extensions -----------------------------------------------

    /// Sends any packet with options (status synchronization, AMOP) to `dst` through its
    /// next hop, waiting for queue room. Routing fills in what it owns: source = this node,
    /// destinations = `[dst]`, TTL = default, Version per link, and a fresh Seq if the
    /// packet's is 0. The payload is compressed like any message's.
    ///
    /// Errors as for [`send`](Self::send); a packet type without options is
    /// [`SendError::Invalid`].
    pub async fn send_packet(&self, dst: NodeId, packet: Packet) -> Result<(), SendError> {
        let Some(opts) = packet.options.as_ref() else {
            return Err(SendError::Invalid(format!(
                "packet type {} carries no options and cannot be routed",
                packet.packet_type
            )));
        };
        let seq = if packet.seq == 0 {
            self.next_seq()
        } else {
            packet.seq
        };
        let u = Unicast {
            dst,
            module: opts.module,
            seq,
            ext: packet.ext,
            payload: &packet.payload,
        };
        self.queue_routed(dst, |s| {
            let f = DataFrame {
                packet_type: packet.packet_type,
                group: &opts.group,
                ..self.unicast_data(Some(s), &u)
            };
            self.checked_encode(f, Some(s))
        })
        .await
    }

    // ----- outstanding requests ----------------------------------------------------------

    /// Fails every request waiting on `node`, which just became unreachable.
    fn fail_pending_to(&self, node: NodeId, was_neighbour: bool) {
        for p in self.inner.pending.take_where(|p| p.dst == node) {
            let e = if was_neighbour {
                RequestError::PeerDisconnected(node)
            } else {
                RequestError::Unreachable(node)
            };
            let _ = p.reply.send(Err(e));
        }
    }

    fn is_reachable(&self, node: &NodeId) -> bool {
        self.inner.peers.session(node).is_some() || self.inner.router.next_hop(node).is_some()
    }

    /// Answers every request past its deadline with [`RequestError::Timeout`], every
    /// [`REQUEST_SWEEP`] while any are outstanding.
    fn sweep_expired_requests(&self) {
        let now = tokio::time::Instant::now();
        for p in self.inner.pending.take_where(|p| p.deadline <= now) {
            let _ = p.reply.send(Err(RequestError::Timeout(p.timeout)));
        }
    }

    fn spawn_request_sweeper(&self, mut woken: mpsc::Receiver<()>, stop: CancellationToken) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                let idle = match weak.upgrade() {
                    Some(inner) => inner.pending.is_empty(),
                    None => return,
                };
                if idle {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        // `None`: the node is gone.
                        w = woken.recv() => if w.is_none() { return },
                    }
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(REQUEST_SWEEP) => {}
                }
                let Some(inner) = weak.upgrade() else { return };
                NodeHandle { inner }.sweep_expired_requests();
            }
        });
    }

    fn spawn_reachability_watch(&self, stop: CancellationToken) {
        let mut events = self.reachability_events();
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    _ = stop.cancelled() => return,
                    ev = events.recv() => ev,
                };
                let Some(inner) = weak.upgrade() else { return };
                let node = NodeHandle { inner };
                match ev {
                    Ok(Reachability::Unreachable {
                        node: gone,
                        was_neighbour,
                    }) => {
                        // A direct link may have come back meanwhile.
                        if !node.is_reachable(&gone) {
                            node.inner.status.on_unreachable(&gone);
                            node.fail_pending_to(gone, was_neighbour);
                        }
                    }
                    Ok(Reachability::Reachable { node: back, .. }) => {
                        node.inner.status.on_reachable(back);
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Missed events: fail whatever waits on a node that is gone.
                        let gone: Vec<NodeId> = node
                            .inner
                            .pending
                            .destinations()
                            .into_iter()
                            .filter(|d| !node.is_reachable(d))
                            .collect();
                        for g in gone {
                            node.fail_pending_to(g, false);
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }
}

struct PendingGuard<'a> {
    node: &'a NodeHandle,
    seq: u32,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.node.inner.pending.remove(self.seq);
    }
}
