//! What a node does with the messages a closing link still held: its own are reported to the
//! application ([`NodeHandle::undelivered`]) and counted, a request among them that was never
//! written fails at once, and packets relayed for other nodes are counted (their sources
//! cannot be told across the network).
//!
//! Nothing here runs on the send path: the session hands over its leftover bytes once, when
//! it ends ([`Leftover`]), and they are decoded then.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use tokio::sync::broadcast;
use tracing::info;

use super::{NodeHandle, RequestError};
use crate::identity::NodeId;
use crate::session::{CloseReason, Fate, Leftover, SessionHandle};
use crate::wire::{Decoder, Ext, Packet, PacketType};

/// Undelivered events kept for slow subscribers before they start missing some (the
/// counters stay exact).
pub const UNDELIVERED_BUFFER: usize = 4096;

/// A message this node originated that a link still held, unwritten or half-written, when the
/// link closed. One per destination: a broadcast copy queued to a relay for several targets
/// is one event per target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Undelivered {
    /// The neighbour whose link held it: the destination itself, or the next hop towards it.
    pub link: NodeId,
    /// The node it was for.
    pub dst: NodeId,
    /// Its module.
    pub module: u16,
    /// Its Seq: what the receiver would have seen as [`Message::seq`](super::Message::seq),
    /// and a request's identity.
    pub seq: u32,
    /// What it was.
    pub kind: UndeliveredKind,
    /// Whether it may have arrived, and why the link closed.
    pub reason: UndeliveredReason,
}

/// What an undelivered message was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UndeliveredKind {
    /// A unicast ([`NodeHandle::send`], [`NodeHandle::try_send`]).
    Unicast,
    /// A request ([`NodeHandle::request`]); one never written also failed with
    /// [`RequestError::Unsent`].
    Request,
    /// A response to another node's request.
    Response,
    /// A broadcast copy.
    Broadcast,
    /// A multicast copy.
    Multicast,
    /// A packet of a [`Protocol`](super::Protocol) (status synchronization, AMOP, ...), by
    /// its packet type.
    Protocol(u16),
}

/// Why a message is reported undelivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "fate", content = "closed", rename_all = "kebab-case")]
pub enum UndeliveredReason {
    /// It was still queued when the link closed for this reason: never written, so the
    /// destination did not get it over this link, and sending it again cannot duplicate it.
    LinkClosed(CloseReason),
    /// Its write had begun when the link closed for this reason: it may have arrived or not,
    /// and only an answer from the destination can tell.
    MaybeSent(CloseReason),
}

/// Counts of what closing links held, since the node started. Exact, whether or not anyone
/// receives the events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UndeliveredCounts {
    /// This node's messages never written (one per destination):
    /// [`UndeliveredReason::LinkClosed`] events.
    pub unsent: u64,
    /// This node's messages whose write had begun: [`UndeliveredReason::MaybeSent`] events.
    pub maybe_sent: u64,
    /// Packets relayed for other nodes that a closing link held, written or not.
    pub relayed: u64,
    /// Requests failed with [`RequestError::Unsent`].
    pub requests_failed: u64,
    /// Leftover bytes that did not decode as packets (none from this node's own encoders).
    pub undecoded_bytes: u64,
}

/// The events and the counters.
pub(super) struct Undelivery {
    events: broadcast::Sender<Undelivered>,
    unsent: AtomicU64,
    maybe_sent: AtomicU64,
    relayed: AtomicU64,
    requests_failed: AtomicU64,
    undecoded_bytes: AtomicU64,
}

impl Default for Undelivery {
    fn default() -> Self {
        Undelivery {
            events: broadcast::channel(UNDELIVERED_BUFFER).0,
            unsent: AtomicU64::new(0),
            maybe_sent: AtomicU64::new(0),
            relayed: AtomicU64::new(0),
            requests_failed: AtomicU64::new(0),
            undecoded_bytes: AtomicU64::new(0),
        }
    }
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// What one left-over packet is to this node.
#[derive(Debug, PartialEq, Eq)]
enum Left {
    /// Link control (heartbeats, goodbyes, the routing exchange): meaningless once the link
    /// is gone.
    Control,
    /// Relayed for another node.
    Relayed,
    /// This node's own, one entry per destination.
    Ours(Vec<Undelivered>),
}

/// Classifies a packet the link to `link` held when it closed for `reason`; `local` is this
/// node. Packets in direct form were decoded with this node as their source.
fn classify(
    local: &NodeId,
    link: NodeId,
    packet: &Packet,
    fate: Fate,
    reason: &CloseReason,
) -> Left {
    let Some(opts) = &packet.options else {
        return Left::Control;
    };
    if opts.src != *local {
        return Left::Relayed;
    }
    let kind = match packet.packet_type {
        PacketType::UNICAST if packet.ext.is_response() => UndeliveredKind::Response,
        PacketType::UNICAST if packet.ext.contains(Ext::REQUEST) => UndeliveredKind::Request,
        PacketType::UNICAST => UndeliveredKind::Unicast,
        PacketType::BROADCAST => UndeliveredKind::Broadcast,
        PacketType::MULTICAST => UndeliveredKind::Multicast,
        other => UndeliveredKind::Protocol(other.0),
    };
    let reason = match fate {
        Fate::Unsent => UndeliveredReason::LinkClosed(reason.clone()),
        Fate::MaybeSent => UndeliveredReason::MaybeSent(reason.clone()),
    };
    // The direct form names no one: its only destination is the link's peer.
    let dsts = if opts.dsts.is_empty() {
        std::slice::from_ref(&link)
    } else {
        &opts.dsts[..]
    };
    let each = dsts.iter().map(|dst| Undelivered {
        link,
        dst: *dst,
        module: opts.module,
        seq: packet.seq,
        kind,
        reason: reason.clone(),
    });
    Left::Ours(each.collect())
}

impl NodeHandle {
    /// Messages this node originated that a link still held, never written or half-written,
    /// when it closed, from now on: nothing queued is lost silently. A message written to the
    /// socket before the link closed is not reported (whether the peer read it cannot be
    /// known without an answer: use [`request`](Self::request)). `docs/messaging.md`,
    /// "Delivery when a link drops", defines the cases.
    ///
    /// The channel holds [`UNDELIVERED_BUFFER`] events; a receiver that falls further behind
    /// misses the oldest ([`broadcast::error::RecvError::Lagged`] says how many), while
    /// [`undelivered_counts`](Self::undelivered_counts) stays exact.
    pub fn undelivered(&self) -> broadcast::Receiver<Undelivered> {
        self.inner.undelivered.events.subscribe()
    }

    /// What closing links held, counted since the node started.
    pub fn undelivered_counts(&self) -> UndeliveredCounts {
        let u = &self.inner.undelivered;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        UndeliveredCounts {
            unsent: get(&u.unsent),
            maybe_sent: get(&u.maybe_sent),
            relayed: get(&u.relayed),
            requests_failed: get(&u.requests_failed),
            undecoded_bytes: get(&u.undecoded_bytes),
        }
    }

    /// Reports and counts what the session `from` held when it ended for `reason`, and fails
    /// the requests among it that were never written.
    pub(super) fn on_leftover(&self, from: &SessionHandle, left: Leftover, reason: &CloseReason) {
        let u = &self.inner.undelivered;
        let local = self.inner.id;
        let cut = left.packets(&mut Decoder::on_link(u32::MAX, local));
        add(&u.undecoded_bytes, cut.undecoded as u64);
        let (mut unsent, mut maybe_sent, mut relayed) = (0u64, 0u64, 0u64);
        for (packet, fate) in &cut.packets {
            let ours = match classify(&local, from.peer, packet, *fate, reason) {
                Left::Control => continue,
                Left::Relayed => {
                    relayed += 1;
                    continue;
                }
                Left::Ours(ours) => ours,
            };
            for event in ours {
                match fate {
                    Fate::Unsent => unsent += 1,
                    Fate::MaybeSent => maybe_sent += 1,
                }
                if event.kind == UndeliveredKind::Request && *fate == Fate::Unsent {
                    self.fail_unsent_request(&event, reason);
                }
                // No receiver is not an error: the counters keep the tally.
                let _ = u.events.send(event);
            }
        }
        add(&u.unsent, unsent);
        add(&u.maybe_sent, maybe_sent);
        add(&u.relayed, relayed);
        if unsent + maybe_sent + relayed > 0 || cut.undecoded > 0 {
            info!(peer = %from.peer.short(), conn = from.id, %reason, unsent, maybe_sent, relayed,
                undecoded_bytes = cut.undecoded, "link closed holding packets not written");
        }
    }

    /// Fails the request `event` names, if it still waits: it never left this node.
    fn fail_unsent_request(&self, event: &Undelivered, reason: &CloseReason) {
        if let Some(p) = self.inner.pending.take_from(event.seq, &event.dst) {
            add(&self.inner.undelivered.requests_failed, 1);
            let _ = p.reply.send(Err(RequestError::Unsent {
                link: event.link,
                reason: reason.clone(),
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use bytestring::ByteString;

    use super::*;
    use crate::wire::Options;

    fn id(b: u8) -> NodeId {
        NodeId::from_bytes([b; 64])
    }

    fn packet(packet_type: PacketType, ext: Ext, src: NodeId, dsts: Vec<NodeId>) -> Packet {
        Packet {
            version: 3,
            packet_type,
            seq: 42,
            ext,
            options: Some(Options {
                group: ByteString::from_static("group0"),
                src,
                dsts,
                module: 7,
                tags: Bytes::new(),
            }),
            payload: Bytes::new(),
        }
    }

    fn ours(left: Left) -> Vec<(NodeId, UndeliveredKind)> {
        match left {
            Left::Ours(v) => v.into_iter().map(|u| (u.dst, u.kind)).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn our_packets_are_reported_per_destination_with_their_kind() {
        let (us, link) = (id(1), id(2));
        let why = CloseReason::IdleTimeout;
        let unsent = Fate::Unsent;
        let cases = [
            (
                PacketType::UNICAST,
                Ext::DIRECT,
                vec![],
                vec![(link, UndeliveredKind::Unicast)],
            ),
            (
                PacketType::UNICAST,
                Ext::REQUEST,
                vec![id(5)],
                vec![(id(5), UndeliveredKind::Request)],
            ),
            (
                PacketType::UNICAST,
                Ext::RESPONSE | Ext::ERROR,
                vec![id(5)],
                vec![(id(5), UndeliveredKind::Response)],
            ),
            (
                PacketType::BROADCAST,
                Ext::AUTH,
                vec![id(2), id(6)],
                vec![
                    (id(2), UndeliveredKind::Broadcast),
                    (id(6), UndeliveredKind::Broadcast),
                ],
            ),
            (
                PacketType::MULTICAST,
                Ext::DIRECT,
                vec![],
                vec![(link, UndeliveredKind::Multicast)],
            ),
            (
                PacketType::STATUS_SEQ,
                Ext::DIRECT,
                vec![],
                vec![(link, UndeliveredKind::Protocol(9))],
            ),
        ];
        for (t, ext, dsts, want) in cases {
            let p = packet(t, ext, us, dsts);
            assert_eq!(ours(classify(&us, link, &p, unsent, &why)), want, "{t}");
        }
    }

    #[test]
    fn the_fate_says_whether_it_may_have_arrived() {
        let (us, link) = (id(1), id(2));
        let p = packet(PacketType::UNICAST, Ext::DIRECT, us, vec![]);
        let why = CloseReason::Io("reset".into());
        let Left::Ours(v) = classify(&us, link, &p, Fate::MaybeSent, &why) else {
            panic!("ours");
        };
        assert_eq!(
            v,
            [Undelivered {
                link,
                dst: link,
                module: 7,
                seq: 42,
                kind: UndeliveredKind::Unicast,
                reason: UndeliveredReason::MaybeSent(why),
            }]
        );
    }

    #[test]
    fn relayed_packets_and_link_control_are_not_ours_to_report() {
        let (us, link) = (id(1), id(2));
        let relayed = packet(PacketType::UNICAST, Ext::AUTH, id(9), vec![id(2)]);
        let why = CloseReason::ClosedByPeer;
        assert_eq!(
            classify(&us, link, &relayed, Fate::Unsent, &why),
            Left::Relayed
        );
        let beat = Packet::heartbeat(3);
        assert_eq!(
            classify(&us, link, &beat, Fate::Unsent, &why),
            Left::Control
        );
    }
}
