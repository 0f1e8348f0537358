//! One packet to one node: messages, requests and their responses, and protocol packets.
//!
//! The common case, a small message to another node whose next hop has room, is encoded
//! straight into that hop's write queue without a buffer of its own
//! ([`unicast_in_place`](NodeHandle::unicast_in_place)); everything else (a full queue, a
//! closing link, compression, big payloads, a message to this node itself) takes the general
//! path, which encodes a frame and may wait.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::pending::{PendingRequest, Reply};
use super::tagging::on_the_wire;
use super::{NodeHandle, RequestError, SendError};
use crate::identity::NodeId;
use crate::session::{Lane, QueueError, SessionHandle};
use crate::wire::{
    DataFrame, Ext, Options, Packet, PacketType, WireError, DEFAULT_TTL, DIRECT_FORM_VERSION,
    MAX_PROTOCOL_VERSION,
};

/// The outcome of one [`NodeHandle::ping`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingReply {
    /// Time from sending the request to receiving the response.
    pub rtt: Duration,
    /// Links the response crossed: 1 from a neighbour, one more per relay.
    pub hops: u8,
}

/// A unicast to send: the fields that are the message's own (the node adds source, group,
/// TTL and the addressing form).
#[derive(Clone, Copy)]
pub(super) struct Unicast<'a> {
    pub(super) dst: NodeId,
    pub(super) module: u16,
    seq: u32,
    pub(super) ext: Ext,
    payload: &'a [u8],
    /// The caller's lane; `None` is the module's.
    lane: Option<Lane>,
}

impl<'a> Unicast<'a> {
    pub(super) fn new(dst: NodeId, module: u16, seq: u32, ext: Ext, payload: &'a [u8]) -> Self {
        Unicast {
            dst,
            module,
            seq,
            ext,
            payload,
            lane: None,
        }
    }

    /// The same unicast in `lane` (`None`: the module's).
    pub(super) fn in_lane(self, lane: Option<Lane>) -> Self {
        Unicast { lane, ..self }
    }

    /// Its length leaving by `link` from `node`, uncompressed: what bandwidth limits count.
    pub(super) fn wire_len(&self, node: &NodeHandle, link: &SessionHandle) -> usize {
        unicast_data(&node.inner.id, node.default_group(), Some(link), self).plain_len()
    }
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

/// The unicast `u` from `src` in `group`, leaving by `link` (`None`: to this node itself).
/// On the direct link to its destination it takes the direct form, without the two node
/// IDs, when the link's version has it.
fn unicast_data<'a>(
    src: &'a NodeId,
    group: &'a str,
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
        group,
        src,
        dsts,
        module: u.module,
        tags: &[],
        prefix: &[],
        payload: u.payload,
    }
}

/// A packet that cannot be encoded, as a send error: one over the size limit is
/// [`SendError::TooLarge`], anything else [`SendError::Invalid`].
pub(super) fn wire_to_send_error(e: WireError) -> SendError {
    match e {
        WireError::LengthTooLarge { length, max } => SendError::TooLarge {
            size: usize::try_from(length).unwrap_or(usize::MAX),
            max: max as usize,
        },
        other => SendError::Invalid(other),
    }
}

/// The options of a protocol packet to route: its type must carry them, and it must have
/// them (routing reads the group and module from them and fills in the rest).
fn routable(packet: &Packet) -> Result<&Options, SendError> {
    let packet_type = packet.packet_type.0;
    match (packet.packet_type.has_options(), &packet.options) {
        (true, Some(opts)) => Ok(opts),
        (true, None) => Err(SendError::Invalid(WireError::OptionsMismatch {
            packet_type,
            type_has_options: true,
        })),
        (false, _) => Err(SendError::Invalid(WireError::Unroutable { packet_type })),
    }
}

impl NodeHandle {
    /// The lane `u` takes on its next hop's link.
    fn lane_of(&self, u: &Unicast<'_>) -> Lane {
        u.lane
            .unwrap_or_else(|| self.inner.lanes.of_module(u.module))
    }

    /// The group a unicast carries: the node's first.
    pub(super) fn default_group(&self) -> &str {
        &self.inner.default_group
    }

    /// The largest packet that may leave by `link`: the smaller of our limit and the one the
    /// peer stated in its handshake (a larger one would make the peer close the link). For
    /// a packet to this node itself (`None`), our own.
    pub(super) fn link_limit(&self, link: Option<&SessionHandle>) -> u32 {
        link.map_or(self.inner.max_packet, |s| {
            self.inner.max_packet.min(s.peer_max_packet)
        })
    }

    /// [`unicast_data`] from this node, as a frame of its own, checked against the size
    /// limit and compressed when that pays.
    fn unicast_frame(
        &self,
        link: Option<&SessionHandle>,
        u: &Unicast<'_>,
    ) -> Result<Bytes, SendError> {
        let f = unicast_data(&self.inner.id, self.default_group(), link, u);
        self.checked_encode(f, link)
    }

    /// `f` as a frame of its own, checked against the limit of `link` and compressed when
    /// that pays. A frame in full form leaving by a link (it may be relayed) is compressed
    /// first and then tagged for its destination; the direct form and a frame to this node
    /// itself need no tag.
    fn checked_encode(
        &self,
        f: DataFrame<'_>,
        link: Option<&SessionHandle>,
    ) -> Result<Bytes, SendError> {
        let limit = self.link_limit(link);
        let threshold = self.inner.compress_threshold;
        if link.is_none() || f.ext.is_direct() {
            f.validate(limit).map_err(wire_to_send_error)?;
            return Ok(f.encode(threshold));
        }
        // Refused before anything is compressed or hashed: tags only add to the size.
        f.validate(limit).map_err(wire_to_send_error)?;
        let joined;
        let plain: &[u8] = if f.prefix.is_empty() {
            f.payload
        } else {
            joined = [f.prefix, f.payload].concat();
            &joined
        };
        let mut scratch = Vec::new();
        let (body, compressed) = on_the_wire(plain, threshold, &mut scratch);
        let wire = DataFrame {
            ext: f.ext | compressed,
            prefix: &[],
            payload: body,
            ..f
        };
        let mut tags = Vec::new();
        let wire = self.tagged(wire, &mut tags)?;
        // The limit counts the packet uncompressed, as the receiver checks it.
        DataFrame {
            payload: plain,
            ..wire
        }
        .validate(limit)
        .map_err(wire_to_send_error)?;
        Ok(wire.encode(0))
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
        let Some(session) = self.link_for(&u.dst) else {
            return Some(Err(SendError::Unreachable(u.dst)));
        };
        let f = unicast_data(&self.inner.id, self.default_group(), Some(&session), u);
        let mut tag = Vec::new();
        let f = if f.ext.is_direct() {
            f
        } else {
            match self.tagged(f, &mut tag) {
                Ok(f) => f,
                Err(e) => return Some(Err(e)),
            }
        };
        if let Err(e) = f.validate(self.link_limit(Some(&session))) {
            return Some(Err(wire_to_send_error(e)));
        }
        session
            .offer_encoded_in(self.lane_of(u), f.plain_len(), |out| {
                f.encode_plain_into(out)
            })
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
    pub(super) async fn unicast(&self, u: Unicast<'_>) -> Result<(), SendError> {
        if self.flow().enabled() {
            Box::pin(self.flow_unicast(&u, true)).await?;
        }
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
                let lane = self.lane_of(&u);
                self.queue_routed(u.dst, lane, |s| self.unicast_frame(Some(s), &u))
                    .await
            }
        }
    }

    /// [`unicast`](Self::unicast) without waiting: a full queue is [`SendError::QueueFull`]
    /// (counted as a drop on that link).
    pub(super) fn unicast_now(&self, u: Unicast<'_>) -> Result<(), SendError> {
        self.flow_unicast_now(&u)?;
        match self.unicast_attempt(&u)? {
            Attempt::Queued => Ok(()),
            // Only a local delivery to a full module queue can wait; fail-fast treats it as
            // full.
            Attempt::Loopback(frame) => futures_util::FutureExt::now_or_never(self.loopback(frame))
                .unwrap_or(Err(SendError::QueueFull(u.dst))),
            Attempt::General => {
                let lane = self.lane_of(&u);
                self.queue_or_drop(u.dst, lane, &|s| self.unicast_frame(Some(s), &u))
            }
        }
    }

    /// Queues the frame `encode` makes for `dst` in `lane` of the link to its next hop,
    /// waiting for room.
    ///
    /// Everything up to a full queue happens in [`queue_now`](Self::queue_now), without an
    /// await; only the wait is a future of its own (boxed: it is rare, and keeping it out
    /// of line keeps every send's future small).
    async fn queue_routed(
        &self,
        dst: NodeId,
        lane: Lane,
        encode: impl Fn(&SessionHandle) -> Result<Bytes, SendError>,
    ) -> Result<(), SendError> {
        let Some((session, frame)) = self.queue_now(dst, lane, &encode)? else {
            return Ok(());
        };
        if Box::pin(session.send_in(lane, frame)).await.is_ok() {
            return Ok(());
        }
        // The link closed while we waited: once more on whatever replaced it.
        match self.queue_now(dst, lane, &encode)? {
            None => Ok(()),
            Some((session, frame)) => Box::pin(session.send_in(lane, frame))
                .await
                .map_err(|_| SendError::Unreachable(dst)),
        }
    }

    /// Queues the frame `encode` makes for `dst` if there is room now; a full queue is
    /// [`SendError::QueueFull`], counted as a drop on that link.
    fn queue_or_drop(
        &self,
        dst: NodeId,
        lane: Lane,
        encode: &impl Fn(&SessionHandle) -> Result<Bytes, SendError>,
    ) -> Result<(), SendError> {
        match self.queue_now(dst, lane, encode)? {
            None => Ok(()),
            Some((session, _)) => {
                session.count_drop();
                Err(SendError::QueueFull(session.peer))
            }
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
        lane: Lane,
        encode: &impl Fn(&SessionHandle) -> Result<Bytes, SendError>,
    ) -> Result<Option<(SessionHandle, Bytes)>, SendError> {
        let unreachable = SendError::Unreachable(dst);
        let mut session = self.link_for(&dst).ok_or(unreachable.clone())?;
        // A few attempts cover a replaced link; a link that keeps closing means the route
        // is going away, which the caller hears as unreachable.
        for _ in 0..3 {
            match session.offer_in(lane, encode(&session)?) {
                Ok(()) => return Ok(None),
                Err((QueueError::Full, frame)) => return Ok(Some((session, frame))),
                Err((QueueError::Closed, _)) => match self.link_for(&dst) {
                    Some(next) if next.id != session.id => session = next,
                    _ => break,
                },
            }
        }
        Err(unreachable)
    }

    /// Delivers a frame this node sent to itself, as if it had arrived.
    async fn loopback(&self, frame: Bytes) -> Result<(), SendError> {
        let packet = Packet::decode_exact(&frame, u32::MAX).map_err(wire_to_send_error)?;
        if let Some(wait) = self.deliver_local(None, packet) {
            wait.await;
        }
        Ok(())
    }

    /// Sends a request and waits for its outcome (see [`NodeHandle::request`]).
    pub(super) async fn request_reply(
        &self,
        dst: NodeId,
        module: u16,
        payload: &[u8],
        timeout: Duration,
        lane: Option<Lane>,
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
        // Removes the entry however this future ends, including when the caller drops it.
        let _guard = self.inner.pending.insert(seq, pending)?;
        let u = Unicast::new(dst, module, seq, Ext::REQUEST, payload).in_lane(lane);
        if self.flow().enabled() {
            tokio::time::timeout_at(deadline, Box::pin(self.flow_unicast(&u, true)))
                .await
                .map_err(|_| RequestError::Timeout(timeout))??;
        }
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

    /// Sends the response to request `seq` from `to`. Never waits: it runs inside handlers
    /// and drops. A response too large to send becomes an error response saying so.
    pub(super) fn respond(
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
        let response = Unicast::new(to, module, seq, ext, &payload);
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

    /// The unicast a protocol packet to `dst` travels as, and its options; the Seq is a
    /// fresh one if the packet's is 0.
    fn packet_unicast<'p>(
        &self,
        dst: NodeId,
        packet: &'p Packet,
    ) -> Result<(Unicast<'p>, &'p Options), SendError> {
        let opts = routable(packet)?;
        let seq = if packet.seq == 0 {
            self.next_seq()
        } else {
            packet.seq
        };
        // The addressing form and its tags are routing's to choose, not the protocol's.
        let ext = Ext(packet.ext.0 & !(Ext::DIRECT.0 | Ext::AUTH.0));
        let u = Unicast::new(dst, opts.module, seq, ext, &packet.payload);
        Ok((u, opts))
    }

    /// Protocol packet `u` of `packet_type` leaving by `link`: the unicast framing with the
    /// packet's own type, group and module, checked and compressed like any message.
    fn packet_frame(
        &self,
        link: &SessionHandle,
        u: &Unicast<'_>,
        packet_type: PacketType,
        opts: &Options,
    ) -> Result<Bytes, SendError> {
        let f = DataFrame {
            packet_type,
            group: &opts.group,
            ..unicast_data(&self.inner.id, self.default_group(), Some(link), u)
        };
        self.checked_encode(f, Some(link))
    }

    /// Routes a protocol packet to `dst`, waiting for queue room (see
    /// [`NodeHandle::send_packet`]).
    pub(super) async fn routed_packet(
        &self,
        dst: NodeId,
        packet: &Packet,
    ) -> Result<(), SendError> {
        let (u, opts) = self.packet_unicast(dst, packet)?;
        let lane = self.inner.lanes.of(packet.packet_type, opts.module);
        self.queue_routed(dst, lane, |s| {
            self.packet_frame(s, &u, packet.packet_type, opts)
        })
        .await
    }

    /// [`routed_packet`](Self::routed_packet) without waiting: a full queue is
    /// [`SendError::QueueFull`], counted as a drop on that link.
    pub(super) fn routed_packet_now(&self, dst: NodeId, packet: &Packet) -> Result<(), SendError> {
        let (u, opts) = self.packet_unicast(dst, packet)?;
        let lane = self.inner.lanes.of(packet.packet_type, opts.module);
        self.queue_or_drop(dst, lane, &|s| {
            self.packet_frame(s, &u, packet.packet_type, opts)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use bytestring::ByteString;

    use super::*;
    use crate::session::{new_session, Direction, SessionInfo};

    fn id(b: u8) -> NodeId {
        NodeId::from_bytes([b; 64])
    }

    fn link(peer: u8, version: u16) -> SessionHandle {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let info = SessionInfo {
            peer: id(peer),
            addr,
            local_addr: addr,
            direction: Direction::Outbound,
            version,
            peer_listen_port: 1,
            peer_max_packet: 1 << 20,
        };
        new_session(1, info, 1 << 20)
    }

    #[test]
    fn a_unicast_takes_the_direct_form_only_on_a_new_link_to_its_destination() {
        let src = id(1);
        let u = Unicast::new(id(2), 9, 77, Ext::REQUEST, b"hi");
        // (link, direct form expected)
        for (link, direct) in [(link(2, 2), true), (link(2, 1), false), (link(3, 2), false)] {
            let f = unicast_data(&src, "group0", Some(&link), &u);
            assert_eq!(f.version, link.version);
            // As the link's peer reads it, having got it from `src`.
            let p = Packet::decode_exact_from(&f.encode(0), 1 << 20, &src).unwrap();
            assert_eq!(p.ext.is_direct(), direct, "via {}", link.peer.short());
            assert!(p.ext.contains(Ext::REQUEST));
            assert_eq!((p.seq, p.ext.ttl()), (77, DEFAULT_TTL));
            let opts = p.options.unwrap();
            // Either way the receiver reads the same source and module.
            assert_eq!((opts.src, opts.module), (src, 9));
            let want: &[NodeId] = if direct { &[] } else { &[id(2)] };
            assert_eq!(opts.dsts, want);
        }
        // To this node itself: the full form at the newest version.
        let f = unicast_data(&src, "group0", None, &u);
        assert_eq!(f.version, MAX_PROTOCOL_VERSION);
        assert_eq!(f.dsts, [id(2)]);
    }

    #[test]
    fn oversize_is_too_large_and_other_encoding_errors_are_invalid() {
        let e = wire_to_send_error(WireError::LengthTooLarge {
            length: 100,
            max: 50,
        });
        assert_eq!(e, SendError::TooLarge { size: 100, max: 50 });
        let long = WireError::TopicTooLong { length: 70_000 };
        let e = wire_to_send_error(long.clone());
        assert_eq!(e, SendError::Invalid(long));
        assert!(e.to_string().contains("70000"), "{e}");
    }

    #[test]
    fn only_packets_with_options_can_be_routed() {
        let opts = Options {
            group: ByteString::new(),
            src: id(1),
            dsts: vec![],
            module: 0,
            tags: Bytes::new(),
        };
        let packet = |packet_type, options| Packet {
            version: 0,
            packet_type,
            seq: 0,
            ext: Ext::default(),
            options,
            payload: Bytes::new(),
        };
        assert!(routable(&packet(PacketType::AMOP, Some(opts.clone()))).is_ok());
        assert_eq!(
            routable(&packet(PacketType::AMOP, None)),
            Err(SendError::Invalid(WireError::OptionsMismatch {
                packet_type: PacketType::AMOP.0,
                type_has_options: true,
            }))
        );
        assert_eq!(
            routable(&packet(PacketType::ROUTER_SEQ, Some(opts))),
            Err(SendError::Invalid(WireError::Unroutable {
                packet_type: PacketType::ROUTER_SEQ.0,
            }))
        );
    }
}
