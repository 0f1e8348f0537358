//! Handling what is addressed to this node: responses go to the request waiting for them,
//! messages to their module's queue (the fast path: a `match` on the three messaging
//! types, no table), and any other type to the protocol registered for it.

use std::sync::Arc;

use bytes::Bytes;
use bytestring::ByteString;
use tokio::sync::mpsc::{self, error::TrySendError};
use tracing::{debug, warn};

use super::message::Envelope;
use super::pending::Reply;
use super::protocol::Origin;
use super::stats;
use super::{Message, MessageKind, NodeHandle, RequestError, Responder, ECHO_MODULE};
use crate::identity::NodeId;
use crate::session::{Pending, SessionHandle};
use crate::wire::{split_topic, Ext, Options, Packet, PacketType, WireError, DEFAULT_TTL};

/// Where a registered module's messages go.
pub(super) enum ModuleSink {
    /// Into the queue [`NodeHandle::register`] returned the other end of.
    Queue(mpsc::Sender<Message>),
    /// To the function [`NodeHandle::register_handler`] was given, called on the receiving
    /// task.
    Handler(Arc<dyn Fn(Message) + Send + Sync>),
}

/// The short node ID of the link a packet came on, or "self" for a message to itself;
/// formatted only when a log line is written.
#[derive(Clone, Copy)]
pub(super) struct PeerName(pub(super) Option<NodeId>);

impl std::fmt::Display for PeerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(id) => f.write_str(&id.short()),
            None => f.write_str("self"),
        }
    }
}

/// Links crossed by a packet that arrives with `ttl` left.
pub(super) fn hops_from_ttl(ttl: u8) -> u8 {
    DEFAULT_TTL.saturating_sub(ttl).saturating_add(1)
}

/// Why a broadcast or multicast is not for this node's modules.
#[derive(Debug, PartialEq, Eq)]
enum NotForUs {
    /// A broadcast to a group this node is not in.
    Group,
    /// A multicast to a topic this node does not subscribe to.
    Topic(String),
    /// A multicast payload without a readable topic.
    Malformed(WireError),
}

/// How a broadcast or multicast in `group` with (plain) `payload` is delivered, given what
/// this node is in and subscribes to: its kind and the application's part of the payload.
fn fanout_delivery(
    packet_type: PacketType,
    group: &str,
    payload: Bytes,
    in_group: impl FnOnce(&str) -> bool,
    has_topic: impl FnOnce(&str) -> bool,
) -> Result<(MessageKind, Bytes), NotForUs> {
    if packet_type != PacketType::MULTICAST {
        return if in_group(group) {
            Ok((MessageKind::Broadcast, payload))
        } else {
            Err(NotForUs::Group)
        };
    }
    let (topic, data) = split_topic(&payload).map_err(NotForUs::Malformed)?;
    if !has_topic(topic) {
        return Err(NotForUs::Topic(topic.to_owned()));
    }
    let kind = MessageKind::Multicast {
        topic: topic.to_owned(),
    };
    Ok((kind, data))
}

impl NodeHandle {
    /// Handles a packet addressed to this node. `from` is `None` for a message to itself.
    ///
    /// A compressed payload is decompressed only once it is known to be wanted here (a
    /// registered module or protocol, a waiting request, a group this node is in), and then
    /// within the limits of [`inflate_then`](Self::inflate_then).
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
            stats::count(&self.inner.stats.duplicates);
            debug!(peer = %peer, src = %opts.src.short(), seq = packet.seq, "duplicate message dropped");
            return None;
        }
        match packet.packet_type {
            PacketType::UNICAST if response => self.complete_request(from, packet),
            PacketType::UNICAST => self.on_unicast(peer, from, packet),
            PacketType::BROADCAST | PacketType::MULTICAST => self.on_fanout(peer, from, packet),
            _ => {
                let link = from.map_or(self.inner.id, |s| s.peer);
                self.to_protocol(peer, link, packet)
            }
        }
    }

    /// Hands a packet to the protocol registered for its type. `link` is the neighbour it
    /// came from.
    pub(super) fn to_protocol(
        &self,
        peer: PeerName,
        link: NodeId,
        mut packet: Packet,
    ) -> Option<Pending> {
        let Some(protocol) = self.inner.protocols.get(packet.packet_type) else {
            debug!(peer = %peer, packet_type = packet.packet_type.0, "ignoring packet type");
            return None;
        };
        let origin = Origin {
            src: packet.options.as_ref().map_or(link, |o| o.src),
            link,
        };
        if !packet.ext.is_compressed() {
            return protocol.on_packet(&self.inner.ctx, origin, packet);
        }
        // Compressed protocol packets are rare: the link's session is looked up only for them.
        let session = (link != self.inner.id)
            .then(|| self.inner.peers.session(&link))
            .flatten();
        let node = self.clone();
        let payload = std::mem::take(&mut packet.payload);
        self.inflate_then(
            session.as_ref(),
            payload,
            Box::new(move |plain| match plain {
                Ok(plain) => {
                    packet.payload = plain;
                    packet.ext = Ext(packet.ext.0 & !Ext::COMPRESSED.0);
                    protocol.on_packet(&node.inner.ctx, origin, packet)
                }
                Err(e) => {
                    debug!(peer = %peer, src = %origin.src.short(), error = %e,
                        "undecodable payload dropped");
                    None
                }
            }),
        )
    }

    /// Hands a response to the request waiting for it; one that matches no request is
    /// dropped before its payload is even decompressed.
    fn complete_request(&self, from: Option<&SessionHandle>, packet: Packet) -> Option<Pending> {
        let opts = packet.options.as_ref()?;
        let Some(p) = self.inner.pending.take_from(packet.seq, &opts.src) else {
            debug!(src = %opts.src.short(), seq = packet.seq, "response matches no request");
            return None;
        };
        self.inner.router.report_success(&opts.src);
        let is_error = packet.ext.is_error();
        if is_error && packet.ext.contains(Ext::REFUSED) {
            let refused = RequestError::QpsExceeded {
                node: opts.src,
                module: opts.module,
            };
            let _ = p.reply.send(Err(refused));
            return None;
        }
        let hops = hops_from_ttl(packet.ext.ttl());
        let finish = move |payload: Result<Bytes, WireError>| {
            let result = match payload {
                Ok(payload) if is_error => Err(RequestError::Remote(
                    String::from_utf8_lossy(&payload).into_owned(),
                )),
                Ok(payload) => Ok(Reply { payload, hops }),
                Err(e) => Err(RequestError::Remote(format!(
                    "the response cannot be read: {e}"
                ))),
            };
            let _ = p.reply.send(result);
            None
        };
        if packet.ext.is_compressed() {
            self.inflate_then(from, packet.payload, Box::new(finish))
        } else {
            finish(Ok(packet.payload))
        }
    }

    fn on_unicast(
        &self,
        peer: PeerName,
        from: Option<&SessionHandle>,
        packet: Packet,
    ) -> Option<Pending> {
        let Packet {
            seq,
            ext,
            options,
            payload,
            ..
        } = packet;
        let opts = options?;
        if self.flow_refuses(&opts, seq, ext) {
            return None;
        }
        let responder = ext
            .contains(Ext::REQUEST)
            .then(|| Responder::new(self.clone(), opts.src, opts.module, seq));
        if !ext.is_compressed() {
            return self.unicast_plain(peer, opts, seq, ext, responder, Ok(payload));
        }
        // Known before any decompression: a payload for no handler costs nothing to drop.
        let handled = opts.module == ECHO_MODULE || self.wanted(opts.module);
        if !handled {
            return self.no_handler(peer, opts.module, responder);
        }
        let node = self.clone();
        self.inflate_then(
            from,
            payload,
            Box::new(move |plain| node.unicast_plain(peer, opts, seq, ext, responder, plain)),
        )
    }

    /// Delivers a unicast whose payload is now plain (or could not be made so).
    fn unicast_plain(
        &self,
        peer: PeerName,
        opts: Options,
        seq: u32,
        ext: Ext,
        responder: Option<Responder>,
        payload: Result<Bytes, WireError>,
    ) -> Option<Pending> {
        let payload = match payload {
            Ok(p) => p,
            Err(e) => {
                // Counted by the decompression stats; a line per packet would let a peer
                // flood the log.
                debug!(peer = %peer, src = %opts.src.short(), error = %e, "undecodable payload dropped");
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
        let env = Envelope::of(opts, seq, ext, MessageKind::Unicast);
        self.to_module(peer, env, payload, responder)
    }

    fn on_fanout(
        &self,
        peer: PeerName,
        from: Option<&SessionHandle>,
        packet: Packet,
    ) -> Option<Pending> {
        let Packet {
            packet_type,
            seq,
            ext,
            options,
            payload,
            ..
        } = packet;
        let opts = options?;
        if self.flow_refuses(&opts, seq, ext) {
            return None;
        }
        if !ext.is_compressed() {
            return self.fanout_plain(peer, packet_type, seq, ext, opts, Ok(payload));
        }
        // What can be known before decompressing: the module, and a broadcast's group (a
        // multicast's topic is inside the payload).
        if !self.wanted(opts.module) {
            debug!(peer = %peer, module = opts.module, "no handler for module");
            return None;
        }
        if packet_type == PacketType::BROADCAST && !self.inner.status.local_in_group(&opts.group) {
            log_not_for_us(peer, &opts.src, &opts.group, NotForUs::Group);
            return None;
        }
        let node = self.clone();
        self.inflate_then(
            from,
            payload,
            Box::new(move |plain| node.fanout_plain(peer, packet_type, seq, ext, opts, plain)),
        )
    }

    /// Delivers a broadcast or multicast whose payload is now plain (or could not be made
    /// so), if this node is in its group or subscribes to its topic.
    fn fanout_plain(
        &self,
        peer: PeerName,
        packet_type: PacketType,
        seq: u32,
        ext: Ext,
        opts: Options,
        payload: Result<Bytes, WireError>,
    ) -> Option<Pending> {
        let payload = match payload {
            Ok(p) => p,
            Err(e) => {
                debug!(peer = %peer, error = %e, "undecodable payload dropped");
                return None;
            }
        };
        let status = &self.inner.status;
        let delivery = fanout_delivery(
            packet_type,
            &opts.group,
            payload,
            |g| status.local_in_group(g),
            |t| status.local_has_topic(t),
        );
        let (kind, payload) = match delivery {
            Ok(d) => d,
            Err(why) => {
                log_not_for_us(peer, &opts.src, &opts.group, why);
                return None;
            }
        };
        let env = Envelope::of(opts, seq, ext, kind);
        self.to_module(peer, env, payload, None)
    }

    /// Whether a message to `module` is handled or tapped here.
    fn wanted(&self, module: u16) -> bool {
        self.inner.modules.read().contains_key(&module) || self.inner.taps.wants(module)
    }

    /// Answers a request for a module nobody handles with an error; drops anything else.
    fn no_handler(
        &self,
        peer: PeerName,
        module: u16,
        responder: Option<Responder>,
    ) -> Option<Pending> {
        debug!(peer = %peer, module, "no handler for module");
        if let Some(r) = responder {
            let _ = r.fail(format!("no handler for module {module}"));
        }
        None
    }

    /// Puts a message in its module's queue, or returns the wait for room; or calls the
    /// module's handler.
    fn to_module(
        &self,
        peer: PeerName,
        env: Envelope,
        payload: Bytes,
        responder: Option<Responder>,
    ) -> Option<Pending> {
        self.inner.taps.offer(&env, &payload, responder.is_some());
        // The common case, room in the queue, needs only the read lock: the `Sender` is
        // cloned (an atomic increment and, on drop, a decrement) only to wait for room.
        let modules = self.inner.modules.read();
        let tx = match modules.get(&env.module) {
            Some(ModuleSink::Queue(tx)) => tx,
            Some(ModuleSink::Handler(handler)) => {
                self.inner.stats.delivered(env.module);
                // Called outside the lock: a handler may register or unregister modules.
                let handler = handler.clone();
                drop(modules);
                handler(Message::new(env, payload, responder));
                return None;
            }
            None => {
                drop(modules);
                stats::count(&self.inner.stats.unhandled);
                return self.no_handler(peer, env.module, responder);
            }
        };
        self.inner.stats.delivered(env.module);
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

fn log_not_for_us(peer: PeerName, src: &NodeId, group: &ByteString, why: NotForUs) {
    match why {
        NotForUs::Group => {
            debug!(peer = %peer, group = %group, "broadcast for a group this node is not in; dropped");
        }
        NotForUs::Topic(topic) => {
            debug!(peer = %peer, topic, "multicast for a topic not subscribed here; dropped");
        }
        NotForUs::Malformed(e) => {
            warn!(peer = %peer, src = %src.short(), error = %e, "bad multicast payload dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::encode_topic_prefix;

    fn multicast_payload(topic: &str, data: &[u8]) -> Bytes {
        let mut p = Vec::new();
        encode_topic_prefix(topic, &mut p).unwrap();
        p.extend_from_slice(data);
        Bytes::from(p)
    }

    fn deliver(
        t: PacketType,
        group: &str,
        payload: Bytes,
    ) -> Result<(MessageKind, Bytes), NotForUs> {
        // This node: in group0, subscribed to "blocks".
        fanout_delivery(t, group, payload, |g| g == "group0", |t| t == "blocks")
    }

    #[test]
    fn broadcasts_are_delivered_in_our_groups_only() {
        let data = Bytes::from_static(b"data");
        assert_eq!(
            deliver(PacketType::BROADCAST, "group0", data.clone()),
            Ok((MessageKind::Broadcast, data.clone()))
        );
        assert_eq!(
            deliver(PacketType::BROADCAST, "group1", data),
            Err(NotForUs::Group)
        );
    }

    #[test]
    fn multicasts_are_delivered_for_our_topics_only_without_the_topic_prefix() {
        let (kind, data) = deliver(
            PacketType::MULTICAST,
            "any",
            multicast_payload("blocks", b"h=1"),
        )
        .unwrap();
        assert_eq!(
            kind,
            MessageKind::Multicast {
                topic: "blocks".into()
            }
        );
        assert_eq!(data.as_ref(), b"h=1");
        assert_eq!(
            deliver(
                PacketType::MULTICAST,
                "group0",
                multicast_payload("txs", b"")
            ),
            Err(NotForUs::Topic("txs".into()))
        );
        assert!(matches!(
            deliver(
                PacketType::MULTICAST,
                "group0",
                Bytes::from_static(&[0, 9, b'x'])
            ),
            Err(NotForUs::Malformed(WireError::TopicOverrun { .. }))
        ));
    }

    #[test]
    fn hops_count_the_links_crossed() {
        assert_eq!(hops_from_ttl(DEFAULT_TTL), 1);
        assert_eq!(hops_from_ttl(DEFAULT_TTL - 2), 3);
        // A TTL above the default (another implementation's) still counts one link.
        assert_eq!(hops_from_ttl(u8::MAX), 1);
    }

    #[test]
    fn the_link_is_named_only_when_logged() {
        let id = NodeId::from_bytes([0xab; 64]);
        assert_eq!(PeerName(Some(id)).to_string(), id.short());
        assert_eq!(PeerName(None).to_string(), "self");
    }
}
