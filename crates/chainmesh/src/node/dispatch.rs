//! Where sessions hand decoded packets. Routing packets go to the routing task; addressed
//! packets are relayed towards destinations that are not this node and delivered here when
//! this node is one: responses to waiting requests, messages to their module's queue.

use std::sync::Weak;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc::error::TrySendError;
use tracing::{debug, warn};

use super::message::Envelope;
use super::ECHO_MODULE;
use super::{
    hops_from_ttl, Inner, Message, MessageKind, NodeHandle, Reply, RequestError, Responder,
};
use crate::identity::NodeId;
use crate::routing::plan;
use crate::session::{CloseReason, Inbound, Pending, QueueError, SessionHandle};
use crate::wire::{
    decompress, relay_copy, split_topic, DataFrame, Ext, Packet, PacketType, MAX_PROTOCOL_VERSION,
};

/// The node's [`Inbound`] sink. Holds the node weakly: sessions must not keep a stopped node
/// alive.
pub(super) struct Dispatch {
    node: Weak<Inner>,
}

impl Dispatch {
    pub(super) fn new(node: Weak<Inner>) -> Self {
        Dispatch { node }
    }
}

impl Inbound for Dispatch {
    fn on_packet(&self, from: &SessionHandle, packet: Packet, frame: Bytes) -> Option<Pending> {
        let node = NodeHandle {
            inner: self.node.upgrade()?,
        };
        match packet.packet_type {
            PacketType::ROUTER_SEQ | PacketType::ROUTER_REQUEST | PacketType::ROUTER_RESPONSE => {
                node.inner.router.on_packet(from.peer, packet);
                None
            }
            t if t.has_options() => node.on_addressed(from, packet, frame),
            other => {
                debug!(peer = %from.peer.short(), packet_type = other.0, "ignoring packet type");
                None
            }
        }
    }
}

/// One future that runs `a` then `b`.
fn chain(a: Option<Pending>, b: Option<Pending>) -> Option<Pending> {
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(a), Some(b)) => Some(Box::pin(async move {
            a.await;
            b.await;
        })),
    }
}

/// Waits (at most `limits.relay_wait`) for room for a relayed frame, counting a drop if none
/// comes.
async fn wait_for_room(session: SessionHandle, frame: Bytes, wait: Duration) {
    if tokio::time::timeout(wait, session.send(frame))
        .await
        .is_err()
    {
        session.count_drop();
        debug!(peer = %session.peer.short(), "relay queue stayed full; packet dropped");
    }
}

/// Queues a relayed frame, or returns the wait for room. A frame larger than the next hop
/// accepts is dropped: sending it would make that peer close the link.
fn offer_one(session: SessionHandle, frame: Bytes, wait: Duration) -> Option<Pending> {
    if frame.len() > session.peer_max_packet as usize {
        session.count_drop();
        debug!(peer = %session.peer.short(), len = frame.len(), limit = session.peer_max_packet,
            "relayed packet larger than the next hop accepts; dropped");
        return None;
    }
    match session.offer(frame) {
        Ok(()) => None,
        Err((QueueError::Full, frame)) => Some(Box::pin(wait_for_room(session, frame, wait))),
        Err((QueueError::Closed, _)) => None,
    }
}

/// The short node ID of the link a packet came on, or "self" for a message to itself;
/// formatted only when a log line is written.
#[derive(Clone, Copy)]
struct PeerName(Option<NodeId>);

impl std::fmt::Display for PeerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(id) => f.write_str(&id.short()),
            None => f.write_str("self"),
        }
    }
}

fn malformed(from: &SessionHandle, why: &str) {
    warn!(peer = %from.peer.short(), conn = from.id, reason = why,
        "malformed packet, closing the connection");
    from.close(CloseReason::Protocol(why.to_owned()));
}

impl NodeHandle {
    /// A packet with options: relay what is for others, deliver what is for us.
    fn on_addressed(&self, from: &SessionHandle, packet: Packet, frame: Bytes) -> Option<Pending> {
        let opts = packet.options.as_ref()?;
        if packet.ext.is_direct() {
            // The link names both ends: from the peer, for this node alone.
            return self.deliver_local(Some(from), packet);
        }
        let me = self.inner.id;
        if packet.packet_type == PacketType::UNICAST && opts.dsts.len() != 1 {
            malformed(from, "a Unicast must name exactly one destination");
            return None;
        }
        if opts.src == me {
            debug!(peer = %from.peer.short(), seq = packet.seq, "own packet came back; dropped");
            return None;
        }
        let for_me = opts.dsts.is_empty() || opts.dsts.contains(&me);
        let relayed = match opts.dsts.as_slice() {
            [] => None,
            [only] if *only == me => None,
            [only] => self.relay_one(&packet, &frame, *only),
            many => self.relay_many(&packet, many),
        };
        let local = if for_me {
            self.deliver_local(Some(from), packet)
        } else {
            None
        };
        chain(relayed, local)
    }

    /// Forwards a packet with one destination: the received bytes with TTL one less.
    fn relay_one(&self, packet: &Packet, frame: &Bytes, dst: NodeId) -> Option<Pending> {
        let ttl = packet.ext.ttl();
        if ttl == 0 {
            debug!(dst = %dst.short(), seq = packet.seq, "TTL exhausted; not relaying");
            return None;
        }
        let session = match self.next_hop_session(&dst) {
            Ok(s) => s,
            Err(e) => {
                debug!(dst = %dst.short(), seq = packet.seq, error = %e, "cannot relay");
                return None;
            }
        };
        let out = relay_copy(frame, ttl - 1, session.version);
        offer_one(session, out, self.inner.relay_wait)
    }

    /// Forwards a broadcast or multicast to the destinations listed (other than us), split
    /// by our own next hops exactly as the sender split it.
    fn relay_many(&self, packet: &Packet, dsts: &[NodeId]) -> Option<Pending> {
        let ttl = packet.ext.ttl();
        let opts = packet.options.as_ref()?;
        if ttl == 0 {
            debug!(src = %opts.src.short(), seq = packet.seq, "TTL exhausted; not relaying");
            return None;
        }
        let plan = plan(dsts, &self.inner.id, |t| self.hop_of(t));
        for t in &plan.unreachable {
            debug!(dst = %t.short(), seq = packet.seq, "no route; not relaying to it");
        }
        let base = DataFrame {
            version: MAX_PROTOCOL_VERSION,
            packet_type: packet.packet_type,
            seq: packet.seq,
            // COMPRESSED and the other flags pass through: the payload is forwarded as is.
            ext: packet.ext.with_ttl(ttl - 1),
            group: &opts.group,
            src: &opts.src,
            dsts: &[],
            module: opts.module,
            prefix: &[],
            payload: &packet.payload,
        };
        let mut waits: Option<Pending> = None;
        let mut queue = |hop: &NodeId, frame: &Bytes| {
            if let Some(s) = self.inner.peers.session(hop) {
                let frame = crate::wire::for_link(frame, s.version);
                waits = chain(waits.take(), offer_one(s, frame, self.inner.relay_wait));
            }
        };
        if !plan.leaves.is_empty() {
            let shared = base.encode(0);
            for leaf in &plan.leaves {
                queue(leaf, &shared);
            }
        }
        for (hop, list) in &plan.relays {
            // Never larger than what arrived: the list only shrinks along the way.
            queue(hop, &DataFrame { dsts: list, ..base }.encode(0));
        }
        waits
    }

    /// The payload as the application sees it: decompressed when COMPRESSED is set, bounded
    /// by the packet size limit.
    fn plain_payload(&self, packet: &Packet) -> Result<Bytes, crate::wire::WireError> {
        if packet.ext.is_compressed() {
            decompress(&packet.payload, self.inner.max_packet as usize)
        } else {
            Ok(packet.payload.clone())
        }
    }

    /// Handles a packet addressed to this node. `from` is `None` for a message to itself.
    pub(super) fn deliver_local(
        &self,
        from: Option<&SessionHandle>,
        packet: Packet,
    ) -> Option<Pending> {
        // Formatted only if a log line is actually written: no allocation per packet.
        let peer = PeerName(from.map(|s| s.peer));
        let opts = packet.options.as_ref()?;
        let response = packet.ext.is_response();
        // Responses reuse their request's Seq, so they are matched, not deduplicated. A
        // packet in direct form came straight from its source over one TLS stream, which
        // neither duplicates nor replays, and its source sends it on no other path: it
        // cannot be a duplicate, so it skips the window.
        let check = !response && !packet.ext.is_direct();
        if check && !self.inner.dedup.first_time(&opts.src, packet.seq) {
            debug!(peer = %peer, src = %opts.src.short(), seq = packet.seq, "duplicate message dropped");
            return None;
        }
        match packet.packet_type {
            PacketType::UNICAST if response => {
                self.complete_request(&packet);
                None
            }
            PacketType::UNICAST => self.on_unicast(peer, packet),
            PacketType::BROADCAST | PacketType::MULTICAST => self.on_fanout(peer, packet),
            // Status synchronization: requests and announcements addressed to this node.
            // A malformed one is logged, not answered by closing the link: status packets
            // are relayed, so the link's peer may not be the one that sent the bad bytes.
            PacketType::STATUS_REQUEST | PacketType::STATUS_RESPONSE | PacketType::STATUS_SEQ => {
                let src = packet.options.as_ref().map(|o| o.src)?;
                match self.plain_payload(&packet) {
                    Ok(payload) => {
                        if let Err(e) =
                            self.inner
                                .status
                                .on_packet(src, packet.packet_type, payload)
                        {
                            debug!(peer = %peer, src = %src.short(), error = %e, "bad status packet");
                        }
                    }
                    Err(e) => debug!(peer = %peer, error = %e, "undecodable status payload"),
                }
                None
            }
            other => {
                debug!(
                    peer = %peer,
                    packet_type = other.0,
                    "ignoring addressed packet type"
                );
                None
            }
        }
    }

    /// Hands a response to the request waiting for it.
    fn complete_request(&self, packet: &Packet) {
        let Some(opts) = packet.options.as_ref() else {
            return;
        };
        let Some(p) = self.inner.pending.take_from(packet.seq, &opts.src) else {
            debug!(src = %opts.src.short(), seq = packet.seq, "response matches no request");
            return;
        };
        let result = match self.plain_payload(packet) {
            Ok(payload) if packet.ext.is_error() => Err(RequestError::Remote(
                String::from_utf8_lossy(&payload).into_owned(),
            )),
            Ok(payload) => Ok(Reply {
                payload,
                hops: hops_from_ttl(packet.ext.ttl()),
            }),
            Err(e) => Err(RequestError::Remote(format!(
                "the response cannot be read: {e}"
            ))),
        };
        let _ = p.reply.send(result);
    }

    fn on_unicast(&self, peer: PeerName, packet: Packet) -> Option<Pending> {
        let payload = self.plain_payload(&packet);
        let Packet {
            seq, ext, options, ..
        } = packet;
        let opts = options?;
        let responder = ext
            .contains(Ext::REQUEST)
            .then(|| Responder::new(self.clone(), opts.src, opts.module, seq));
        let payload = match payload {
            Ok(p) => p,
            Err(e) => {
                warn!(peer = %peer, src = %opts.src.short(), error = %e, "undecodable payload dropped");
                if let Some(r) = responder {
                    let _ = r.fail(format!("cannot read the request: {e}"));
                }
                return None;
            }
        };
        if opts.module == ECHO_MODULE {
            if let Some(r) = responder {
                let _ = r.respond(payload);
            }
            return None;
        }
        let env = Envelope {
            src: opts.src,
            group: opts.group,
            module: opts.module,
            seq,
            kind: MessageKind::Unicast,
            hops: hops_from_ttl(ext.ttl()),
        };
        self.to_module(peer, env, payload, responder)
    }

    fn on_fanout(&self, peer: PeerName, packet: Packet) -> Option<Pending> {
        let payload = match self.plain_payload(&packet) {
            Ok(p) => p,
            Err(e) => {
                warn!(peer = %peer, error = %e, "undecodable payload dropped");
                return None;
            }
        };
        let Packet {
            packet_type,
            seq,
            ext,
            options,
            ..
        } = packet;
        let opts = options?;
        let (kind, payload) = if packet_type == PacketType::MULTICAST {
            let (topic, data) = match split_topic(&payload) {
                Ok(x) => x,
                Err(e) => {
                    warn!(peer = %peer, src = %opts.src.short(), error = %e, "bad multicast payload dropped");
                    return None;
                }
            };
            if !self.inner.interests.subscribed(topic) {
                debug!(
                    peer = %peer,
                    topic, "multicast for a topic not subscribed here; dropped"
                );
                return None;
            }
            (
                MessageKind::Multicast {
                    topic: topic.to_owned(),
                },
                data,
            )
        } else {
            if !self.inner.interests.in_group(&opts.group) {
                debug!(peer = %peer, group = %opts.group, "broadcast for a group this node is not in; dropped");
                return None;
            }
            (MessageKind::Broadcast, payload)
        };
        let env = Envelope {
            src: opts.src,
            group: opts.group,
            module: opts.module,
            seq,
            kind,
            hops: hops_from_ttl(ext.ttl()),
        };
        self.to_module(peer, env, payload, None)
    }

    /// Puts a message in its module's queue, or returns the wait for room.
    fn to_module(
        &self,
        peer: PeerName,
        env: Envelope,
        payload: Bytes,
        responder: Option<Responder>,
    ) -> Option<Pending> {
        // The common case, room in the queue, needs only the read lock: the `Sender` is
        // cloned (an atomic increment and, on drop, a decrement) only to wait for room.
        let modules = self.inner.modules.read();
        let Some(tx) = modules.get(&env.module) else {
            drop(modules);
            debug!(peer = %peer, module = env.module, "no handler for module");
            if let Some(r) = responder {
                let _ = r.fail(format!("no handler for module {}", env.module));
            }
            return None;
        };
        match tx.try_send(Message::new(env, payload, responder)) {
            Ok(()) => None,
            Err(TrySendError::Closed(msg)) => {
                // Dropping a message may answer its request: not under the lock.
                drop(modules);
                drop(msg);
                None
            }
            Err(TrySendError::Full(msg)) => {
                let tx = tx.clone();
                drop(modules);
                Some(Box::pin(async move {
                    let _ = tx.send(msg).await;
                }))
            }
        }
    }
}
