//! The simulated network: nodes made of the library's real router (its task, table,
//! signing and flooding), real status engine and real P2P sessions, linked by in-memory
//! pipes whose pumps can stop carrying bytes, reset, or slow down.
//!
//! What stands in for the rest of a node is the glue only: the peer set is a map of live
//! sessions with its Connected / Disconnected events (a link's "dialer" is the network
//! re-making a connection that died while its link is up), and the inbound handler does what
//! `node/inbound.rs` does with the library's pure `routing::decide`: routing packets to the
//! router, status packets to the engine, unicasts delivered or relayed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chainmesh::identity::{Curve, Identity, NetworkCa};
use chainmesh::peers::PeerEvent;
use chainmesh::routing::{decide, link_for, Links, Onward, Reachability, Router, RoutingLimits};
use chainmesh::session::{
    self, CloseReason, Direction, Inbound, Pending, QueueError, SessionConfig, SessionHandle,
    SessionInfo,
};
use chainmesh::status::{NodeStatus, StatusConfig, StatusService, StatusTransport, TransportError};
use chainmesh::wire::{Ext, Options, Packet, PacketType, DEFAULT_TTL, MAX_PROTOCOL_VERSION};
use chainmesh::NodeId;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::invariants::{Ledger, Outcome};

/// The module simulated unicasts are for.
const MODULE: u16 = 77;
/// Bytes a session may queue, as `limits.session_queue_bytes` would say.
pub const QUEUE_BYTES: usize = 256 * 1024;
/// Bytes each direction of a pipe buffers, like a socket's buffers.
const PIPE_BYTES: usize = 64 * 1024;
const MAX_PACKET: u32 = 1 << 20;

/// Heartbeat and idle timeout of every session; the status interval.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(3);
pub const STATUS_INTERVAL: Duration = Duration::from_secs(1);

fn session_config() -> SessionConfig {
    SessionConfig {
        heartbeat_interval: HEARTBEAT,
        idle_timeout: IDLE_TIMEOUT,
        max_packet: MAX_PACKET,
        version: MAX_PROTOCOL_VERSION,
        linger: Duration::from_millis(200),
        read_budget_bytes: 256 * 1024,
    }
}

/// Node identities, made once per test process. On P-256, whose signatures OpenSSL makes and
/// checks several times faster than secp256k1's: signing and checking neighbour lists is most
/// of the simulation's work.
pub fn identities() -> &'static [Identity] {
    static IDS: OnceLock<Vec<Identity>> = OnceLock::new();
    IDS.get_or_init(|| {
        let ca = NetworkCa::generate(Curve::Prime256v1).expect("test CA");
        // The schedules' nodes, and the 12 of the line longer than the hop limit.
        (0..crate::schedule::MAX_NODES.max(12))
            .map(|i| {
                ca.issue_node(&format!("node{i}"))
                    .and_then(|c| c.identity())
                    .expect("test node identity")
            })
            .collect()
    })
}

/// A node's live sessions, by peer: the peer set as the router sees it.
struct NodeLinks {
    sessions: Mutex<HashMap<NodeId, SessionHandle>>,
    events: broadcast::Sender<PeerEvent>,
}

impl Links for NodeLinks {
    fn session(&self, peer: &NodeId) -> Option<SessionHandle> {
        self.sessions.lock().get(peer).cloned()
    }

    fn sessions(&self) -> Vec<SessionHandle> {
        self.sessions.lock().values().cloned().collect()
    }
}

impl NodeLinks {
    fn add(&self, handle: SessionHandle) {
        let peer = handle.peer;
        self.sessions.lock().insert(peer, handle.clone());
        let _ = self.events.send(PeerEvent::Connected {
            peer,
            addr: handle.addr,
            direction: handle.direction,
        });
    }

    /// The session ended: it stops being the peer's, if it still was.
    fn ended(&self, handle: &SessionHandle, reason: CloseReason) {
        let mut sessions = self.sessions.lock();
        if sessions
            .get(&handle.peer)
            .is_some_and(|s| s.id == handle.id)
        {
            sessions.remove(&handle.peer);
            drop(sessions);
            let _ = self.events.send(PeerEvent::Disconnected {
                peer: handle.peer,
                reason,
            });
        }
    }

    /// The link a packet for `dst` leaves by, as the node picks it.
    fn link_to(&self, router: &Router, dst: &NodeId) -> Option<SessionHandle> {
        link_for(dst, |n| self.session(n), |d| router.next_hop(d))
    }
}

/// One running process of a node.
pub struct SimNode {
    pub id: NodeId,
    pub router: Arc<Router>,
    pub status: Arc<StatusService>,
    links: Arc<NodeLinks>,
    handler: Arc<dyn Inbound>,
    stop: CancellationToken,
}

/// The status engine's way out: addressed packets over the node's links.
struct Transport {
    id: NodeId,
    router: Arc<Router>,
    links: Arc<NodeLinks>,
}

impl StatusTransport for Transport {
    fn reachable(&self) -> Vec<NodeId> {
        self.router
            .reachable()
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    }

    fn send(
        &self,
        dst: NodeId,
        packet_type: PacketType,
        payload: Bytes,
    ) -> Result<(), TransportError> {
        let link = self
            .links
            .link_to(&self.router, &dst)
            .ok_or(TransportError::Unreachable)?;
        let frame = addressed(link.version, packet_type, self.id, dst, 0, payload);
        link.try_send(frame).map_err(|e| match e {
            QueueError::Full => TransportError::QueueFull,
            QueueError::Closed => TransportError::Other("link closed".into()),
        })
    }
}

/// An addressed packet from `src` to `dst`, encoded.
fn addressed(
    version: u16,
    packet_type: PacketType,
    src: NodeId,
    dst: NodeId,
    module: u16,
    payload: Bytes,
) -> Bytes {
    Packet {
        version,
        packet_type,
        seq: 0,
        ext: Ext::default().with_ttl(DEFAULT_TTL),
        options: Some(Options {
            group: bytestring::ByteString::new(),
            src,
            dsts: vec![dst],
            module,
            tags: Bytes::new(),
        }),
        payload,
    }
    .to_bytes()
}

/// What a node does with the packets its sessions decode.
struct Handler {
    index: usize,
    id: NodeId,
    router: Arc<Router>,
    status: Arc<StatusService>,
    links: Arc<NodeLinks>,
    ledger: Arc<Ledger>,
}

/// The send number a simulated unicast carries.
fn send_number(payload: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(payload.get(..8)?.try_into().ok()?))
}

impl Inbound for Handler {
    fn on_packet(&self, from: &SessionHandle, packet: Packet, _frame: Bytes) -> Option<Pending> {
        let t = packet.packet_type;
        let Some(opts) = packet.options.as_ref() else {
            if matches!(
                t,
                PacketType::ROUTER_SEQ | PacketType::ROUTER_REQUEST | PacketType::ROUTER_RESPONSE
            ) {
                self.router.on_packet(from.peer, packet);
            }
            return None;
        };
        let sim = t == PacketType::UNICAST && opts.module == MODULE;
        let number = if sim {
            send_number(&packet.payload)
        } else {
            None
        };
        let decision = decide(&self.id, t, packet.ext, opts, |n| {
            self.links.link_to(&self.router, n).map(|s| s.peer)
        });
        if decision.deliver {
            if let Some(n) = number {
                self.ledger.delivered(n, self.index);
            } else if matches!(
                t,
                PacketType::STATUS_SEQ | PacketType::STATUS_REQUEST | PacketType::STATUS_RESPONSE
            ) {
                let _ = self.status.on_packet(opts.src, t, packet.payload.clone());
            }
        }
        match decision.onward {
            Onward::Nowhere | Onward::Split { .. } => {}
            Onward::Dropped(reason) => {
                if let Some(n) = number {
                    self.ledger.resolve(n, Outcome::Dropped(drop_kind(reason)));
                }
            }
            Onward::Relay { next_hop, ttl } => {
                let Some(link) = self.links.session(&next_hop) else {
                    if let Some(n) = number {
                        self.ledger.resolve(n, Outcome::Dropped("no link"));
                    }
                    return None;
                };
                let onward = Packet {
                    ext: packet.ext.with_ttl(ttl),
                    version: link.version,
                    ..packet
                };
                match link.try_send(onward.to_bytes()) {
                    Ok(()) => {
                        if let Some(n) = number {
                            self.ledger.queued(n, link);
                        }
                    }
                    Err(e) => {
                        if let Some(n) = number {
                            self.ledger.resolve(n, Outcome::Dropped(queue_kind(e)));
                        }
                    }
                }
            }
        }
        None
    }
}

fn drop_kind(r: chainmesh::routing::DropReason) -> &'static str {
    use chainmesh::routing::DropReason::*;
    match r {
        OwnPacket => "own packet",
        TtlExhausted => "ttl exhausted",
        NoRoute => "no route",
        UnicastDestinations(_) => "malformed",
    }
}

fn queue_kind(e: QueueError) -> &'static str {
    match e {
        QueueError::Full => "queue full",
        QueueError::Closed => "link closed",
    }
}

impl SimNode {
    /// Starts a fresh process of node `index`: new router (new list epoch), new status
    /// engine (new random epoch), no sessions.
    fn start(index: usize, ledger: Arc<Ledger>) -> SimNode {
        let identity = &identities()[index];
        let id = identity.node_id;
        let (events, _) = broadcast::channel(1024);
        let links = Arc::new(NodeLinks {
            sessions: Mutex::new(HashMap::new()),
            events,
        });
        let limits = RoutingLimits {
            max_nodes: 64,
            max_neighbours: 64,
        };
        let router = Router::new(identity, limits).expect("router");
        let stop = CancellationToken::new();
        let reach = router.subscribe();
        router.spawn_over(links.clone(), links.events.subscribe(), stop.clone());
        let transport = Arc::new(Transport {
            id,
            router: router.clone(),
            links: links.clone(),
        });
        let status = StatusService::with_config(
            id,
            StatusConfig::with_interval(STATUS_INTERVAL),
            NodeStatus::default(),
            transport,
        )
        .expect("status engine");
        status.spawn(stop.clone());
        tokio::spawn(follow_reachability(reach, status.clone(), stop.clone()));
        let handler: Arc<dyn Inbound> = Arc::new(Handler {
            index,
            id,
            router: router.clone(),
            status: status.clone(),
            links: links.clone(),
            ledger,
        });
        SimNode {
            id,
            router,
            status,
            links,
            handler,
            stop,
        }
    }

    /// The process dies: its tasks stop and its sessions end at once, queues unsent.
    fn crash(&self) {
        self.stop.cancel();
        for s in self.links.sessions() {
            s.close_now(CloseReason::Shutdown);
        }
    }

    pub fn sessions(&self) -> Vec<SessionHandle> {
        self.links.sessions()
    }

    pub fn is_linked(&self, peer: &NodeId) -> bool {
        self.links.session(peer).is_some_and(|s| !s.is_closed())
    }
}

/// What the node does on reachability changes, as `node/builtin.rs` does: start or end the
/// status exchange with the node.
async fn follow_reachability(
    mut events: broadcast::Receiver<Reachability>,
    status: Arc<StatusService>,
    stop: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => return,
            e = events.recv() => e,
        };
        match event {
            Ok(Reachability::Reachable { node, .. }) => status.on_reachable(node),
            Ok(Reachability::Unreachable { node, .. }) => status.on_unreachable(&node),
            // The engine's tick finds what a missed event would have said.
            Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// One connection over a link: a session at each end, and the pumps between them.
struct Pair {
    ends: [SessionHandle; 2],
    /// Cancelled once both sessions ended, to stop the pumps.
    done: CancellationToken,
}

impl Pair {
    fn finished(&self) -> bool {
        self.ends.iter().all(SessionHandle::is_finished)
    }
}

/// A link of the topology.
struct Link {
    /// Whether the link carries bytes.
    carry: watch::Sender<bool>,
    /// One-way latency, in milliseconds.
    latency: Arc<AtomicU64>,
    pair: Option<Pair>,
}

/// The whole simulated network.
pub struct Net {
    nodes: Vec<Option<SimNode>>,
    links: BTreeMap<(usize, usize), Link>,
    pub ledger: Arc<Ledger>,
    conn_ids: u64,
}

fn fake_addr(index: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, index as u8 + 1], 30300))
}

impl Net {
    /// Every node running, the initial links up (their connections made at the next
    /// [`maintain`](Self::maintain)).
    pub fn new(nodes: usize, links: &[((usize, usize), u64)]) -> Net {
        let ledger = Arc::new(Ledger::new());
        let nodes = (0..nodes)
            .map(|i| Some(SimNode::start(i, ledger.clone())))
            .collect();
        let links = links
            .iter()
            .map(|&(e, ms)| {
                let (carry, _) = watch::channel(true);
                let link = Link {
                    carry,
                    latency: Arc::new(AtomicU64::new(ms)),
                    pair: None,
                };
                (e, link)
            })
            .collect();
        Net {
            nodes,
            links,
            ledger,
            conn_ids: 1,
        }
    }

    pub fn node(&self, i: usize) -> Option<&SimNode> {
        self.nodes.get(i).and_then(Option::as_ref)
    }

    pub fn ids(&self) -> Vec<NodeId> {
        (0..self.nodes.len())
            .map(|i| identities()[i].node_id)
            .collect()
    }

    pub fn running(&self) -> BTreeSet<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.node(i).is_some())
            .collect()
    }

    /// The links that carry bytes between running nodes: the topology routes must match.
    pub fn true_links(&self) -> BTreeSet<(usize, usize)> {
        let running = self.running();
        self.links
            .iter()
            .filter(|(&(a, b), l)| {
                *l.carry.borrow() && running.contains(&a) && running.contains(&b)
            })
            .map(|(&e, _)| e)
            .collect()
    }

    pub fn crash(&mut self, i: usize) {
        if let Some(node) = self.nodes.get_mut(i).and_then(Option::take) {
            node.crash();
        }
    }

    pub fn start(&mut self, i: usize) {
        if self.nodes.get(i).is_some_and(Option::is_none) {
            self.nodes[i] = Some(SimNode::start(i, self.ledger.clone()));
        }
    }

    pub fn cut(&mut self, e: (usize, usize)) {
        if let Some(l) = self.links.get(&e) {
            l.carry.send_replace(false);
        }
    }

    pub fn reset(&mut self, e: (usize, usize)) {
        if let Some(l) = self.links.get(&e) {
            l.carry.send_replace(false);
            for s in l.pair.iter().flat_map(|p| &p.ends) {
                s.close_now(CloseReason::Io("connection reset".into()));
            }
        }
    }

    pub fn repair(&mut self, e: (usize, usize)) {
        if let Some(l) = self.links.get(&e) {
            l.carry.send_replace(true);
        }
    }

    pub fn set_latency(&mut self, e: (usize, usize), ms: u64) {
        if let Some(l) = self.links.get(&e) {
            l.latency.store(ms, Ordering::Relaxed);
        }
    }

    /// Node `from` sends one unicast to `to`, as `NodeHandle::try_send` would: queued on
    /// the link towards it, or refused with a typed error.
    pub fn send(&self, from: usize, to: usize) {
        let Some(node) = self.node(from) else {
            return;
        };
        let n = self.ledger.new_send(from, to);
        let dst = identities()[to].node_id;
        let Some(link) = node.links.link_to(&node.router, &dst) else {
            self.ledger.resolve(n, Outcome::Refused("unreachable"));
            return;
        };
        let payload = Bytes::copy_from_slice(&n.to_be_bytes());
        let frame = addressed(
            link.version,
            PacketType::UNICAST,
            node.id,
            dst,
            MODULE,
            payload,
        );
        match link.try_send(frame) {
            Ok(()) => self.ledger.queued(n, link),
            Err(e) => self.ledger.resolve(n, Outcome::Refused(queue_kind(e))),
        }
    }

    /// What a dialer does: a link that carries bytes between running nodes and has no live
    /// connection gets a new one (once both sessions of the old one have ended).
    pub fn maintain(&mut self) {
        let running = self.running();
        let edges: Vec<(usize, usize)> = self.links.keys().copied().collect();
        for (a, b) in edges {
            let link = &self.links[&(a, b)];
            let dead = link.pair.as_ref().map_or(true, Pair::finished);
            if !dead || !*link.carry.borrow() || !running.contains(&a) || !running.contains(&b) {
                continue;
            }
            if let Some(p) = &link.pair {
                p.done.cancel();
            }
            let pair = self.connect(a, b);
            if let Some(l) = self.links.get_mut(&(a, b)) {
                l.pair = Some(pair);
            }
        }
    }

    /// A new connection over link `a`-`b`: `a` dialed.
    fn connect(&mut self, a: usize, b: usize) -> Pair {
        let link = &self.links[&(a, b)];
        let (a_end, a_pipe) = tokio::io::duplex(PIPE_BYTES);
        let (b_end, b_pipe) = tokio::io::duplex(PIPE_BYTES);
        let (a_read, a_write) = tokio::io::split(a_pipe);
        let (b_read, b_write) = tokio::io::split(b_pipe);
        let done = CancellationToken::new();
        for (from, to) in [(a_read, b_write), (b_read, a_write)] {
            tokio::spawn(pump(
                from,
                to,
                link.carry.subscribe(),
                link.latency.clone(),
                done.clone(),
            ));
        }
        // The pumps stop once both sessions have ended.
        let alive = Arc::new(AtomicU64::new(2));
        let ends = [
            self.open(
                a,
                b,
                Direction::Outbound,
                a_end,
                (alive.clone(), done.clone()),
            ),
            self.open(b, a, Direction::Inbound, b_end, (alive, done.clone())),
        ];
        Pair { ends, done }
    }

    /// Node `at`'s session to `peer` over `stream`, running.
    fn open(
        &mut self,
        at: usize,
        peer: usize,
        direction: Direction,
        stream: DuplexStream,
        (alive, done): (Arc<AtomicU64>, CancellationToken),
    ) -> SessionHandle {
        let id = self.conn_ids;
        self.conn_ids += 1;
        let info = SessionInfo {
            peer: identities()[peer].node_id,
            addr: fake_addr(peer),
            local_addr: fake_addr(at),
            direction,
            version: MAX_PROTOCOL_VERSION,
            peer_listen_port: 30300,
            peer_max_packet: MAX_PACKET,
        };
        let handle = session::new_session(id, info, QUEUE_BYTES);
        let node = self.node(at).expect("a running node");
        let links = node.links.clone();
        let run = session::run(
            stream,
            handle.clone(),
            node.handler.clone(),
            session_config(),
            BytesMut::new(),
        );
        links.add(handle.clone());
        let h = handle.clone();
        tokio::spawn(async move {
            let reason = run.await;
            links.ended(&h, reason);
            if alive.fetch_sub(1, Ordering::AcqRel) == 1 {
                done.cancel();
            }
        });
        handle
    }
}

/// Chunks in flight on one direction of a link: with the pipe's buffer, what bounds the
/// bytes a link holds (its bandwidth-delay product).
const IN_FLIGHT_CHUNKS: usize = 64;

/// Carries bytes one way over a link: each chunk arrives its latency after it was sent,
/// chunks in order; while the link does not carry, they wait (as in a TCP connection whose
/// path is gone) until it carries again or the connection is over.
async fn pump(
    mut from: ReadHalf<DuplexStream>,
    mut to: WriteHalf<DuplexStream>,
    mut carry: watch::Receiver<bool>,
    latency: Arc<AtomicU64>,
    done: CancellationToken,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT_CHUNKS);
    let sending = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let ms = latency.load(Ordering::Relaxed);
                    let due = Instant::now() + Duration::from_millis(ms);
                    if tx.send((due, buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            }
        }
        // Dropping `tx` tells the receiving side the stream ended.
    };
    let receiving = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            // The guard `wait_for` returns must not live across the write.
            let carrying = carry.wait_for(|c| *c).await.is_ok();
            if !carrying || to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        // The sender's end closed: the receiver reads the end of the stream once the link
        // carries it there.
        if carry.wait_for(|c| *c).await.is_ok() {
            let _ = to.shutdown().await;
        }
    };
    tokio::select! {
        _ = done.cancelled() => {}
        _ = async { tokio::join!(sending, receiving) } => {}
    }
}
