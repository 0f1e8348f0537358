//! Where sessions hand decoded packets. A link-local packet goes to the protocol of its type;
//! an addressed one is classified by [`decide`] and relayed towards destinations that are
//! not this node, and delivered here when this node is one (`deliver`).

use std::sync::Weak;
use std::time::Duration;

use bytes::Bytes;
use tracing::{debug, warn};

use super::copies::Copies;
use super::deliver::PeerName;
use super::stats;
use super::{Inner, NodeHandle};
use crate::auth::Tag;
use crate::identity::NodeId;
use crate::routing::{decide, DropReason, FanoutPlan, Onward};
use crate::session::{
    CloseReason, Inbound, Lane, Leftover, Pending, QueueError, SessionHandle, BIG_FRAME,
};
use crate::wire::{patch_for_relay, relay_frame, DataFrame, Options, Packet, MAX_PROTOCOL_VERSION};

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
        if node.flow_drops_type(from, packet.packet_type) {
            return None;
        }
        if packet.packet_type.has_options() {
            node.on_addressed(from, packet, frame)
        } else {
            node.to_protocol(PeerName(Some(from.peer)), from.peer, packet)
        }
    }

    fn on_leftover(&self, from: &SessionHandle, left: Leftover, reason: &CloseReason) {
        if let Some(inner) = self.node.upgrade() {
            NodeHandle { inner }.on_leftover(from, left, reason);
        }
    }
}

/// The tags of a received packet, by destination.
struct ReceivedTags<'a> {
    /// Destinations with the index of their tag, sorted: a broadcast may list thousands.
    index: Vec<(&'a NodeId, usize)>,
    opts: &'a Options,
}

impl<'a> ReceivedTags<'a> {
    fn of(opts: &'a Options) -> Self {
        let mut index: Vec<(&NodeId, usize)> =
            opts.dsts.iter().enumerate().map(|(i, d)| (d, i)).collect();
        index.sort_unstable();
        ReceivedTags { index, opts }
    }

    fn get(&self, dst: &NodeId) -> Option<Tag> {
        let at = self.index.binary_search_by(|(d, _)| (*d).cmp(dst)).ok()?;
        let (_, i) = self.index.get(at)?;
        self.opts.tag(*i)?.try_into().ok()
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
async fn wait_for_room(session: SessionHandle, lane: Lane, frame: Bytes, wait: Duration) {
    if tokio::time::timeout(wait, session.send_in(lane, frame))
        .await
        .is_err()
    {
        session.count_drop();
        debug!(peer = %session.peer.short(), "relay queue stayed full; packet dropped");
    }
}

/// Queues a relayed frame in `lane`, or returns the wait for room.
fn offer_relayed(
    session: SessionHandle,
    lane: Lane,
    frame: Bytes,
    wait: Duration,
) -> Option<Pending> {
    match session.offer_in(lane, frame) {
        Ok(()) => None,
        Err((QueueError::Full, frame)) => Some(Box::pin(wait_for_room(session, lane, frame, wait))),
        Err((QueueError::Closed, _)) => None,
    }
}

/// Counts and logs a relayed packet dropped because the next hop would refuse it (`why`):
/// sending it would make that peer close the link.
fn too_large_for(session: &SessionHandle, why: &dyn std::fmt::Display) {
    session.count_drop();
    debug!(peer = %session.peer.short(), limit = session.peer_max_packet, error = %why,
        "relayed packet larger than the next hop accepts; dropped");
}

/// A packet in full form without tags breaks version 3, whoever its source is: the
/// neighbour that handed it over did not check it, or made it.
fn untagged(from: &SessionHandle, src: &NodeId) {
    let why = "a packet in full form without tags (Ext 0x0040)";
    warn!(peer = %from.peer.short(), conn = from.id, src = %src.short(), reason = why,
        "malformed packet, closing the connection");
    from.close(CloseReason::Protocol(why.to_owned()));
}

fn malformed(from: &SessionHandle, why: DropReason) {
    warn!(peer = %from.peer.short(), conn = from.id, reason = %why,
        "malformed packet, closing the connection");
    from.close(CloseReason::Protocol(why.to_string()));
}

impl NodeHandle {
    /// A packet with options: relay what is for others, deliver what is for us.
    ///
    /// A packet in full form that lists this node is taken only if its source is proven
    /// ([`source_proven`](Self::source_proven)): otherwise it is neither delivered nor, when
    /// it is a broadcast for others too, passed on, and the duplicate filter never sees it,
    /// so a forger cannot use up another node's Seqs. A relay that is no destination passes
    /// a packet on unchecked (it has no tag to check); its destinations check it.
    fn on_addressed(&self, from: &SessionHandle, packet: Packet, frame: Bytes) -> Option<Pending> {
        let opts = packet.options.as_ref()?;
        if !packet.ext.is_direct() && !packet.ext.is_auth() {
            untagged(from, &opts.src);
            return None;
        }
        let decision = decide(&self.inner.id, packet.packet_type, packet.ext, opts, |t| {
            self.link_for(t).map(|s| s.peer)
        });
        if decision.deliver && !packet.ext.is_direct() && !self.source_proven(from, &packet) {
            self.reject_unproven(from, &opts.src, &packet);
            return None;
        }
        let relayed = match decision.onward {
            Onward::Nowhere => None,
            // One destination, not this node: nothing to deliver here.
            Onward::Relay { next_hop, ttl } => return self.relay_one(packet, frame, next_hop, ttl),
            Onward::Split { plan, ttl } => self.relay_split(&packet, &plan, ttl),
            Onward::Dropped(why) if why.is_malformed() => {
                malformed(from, why);
                return None;
            }
            Onward::Dropped(why) => {
                match why {
                    DropReason::TtlExhausted => stats::count(&self.inner.stats.ttl_dropped),
                    DropReason::NoRoute => stats::count(&self.inner.stats.no_route_dropped),
                    _ => {}
                }
                debug!(peer = %from.peer.short(), src = %opts.src.short(), seq = packet.seq,
                    reason = %why, "not passed on");
                None
            }
        };
        let local = if decision.deliver {
            self.deliver_local(Some(from), packet)
        } else {
            None
        };
        chain(relayed, local)
    }

    /// Forwards a packet with one destination: the received bytes with `ttl` left. A small
    /// frame is copied straight into the next session's queue; a big one is patched where
    /// it lies when `frame` is its only holder.
    fn relay_one(
        &self,
        packet: Packet,
        frame: Bytes,
        next_hop: NodeId,
        ttl: u8,
    ) -> Option<Pending> {
        let opts = packet.options.as_ref()?;
        let Some(session) = self.inner.peers.session(&next_hop) else {
            debug!(next_hop = %next_hop.short(), "next hop just went away; not relaying");
            return None;
        };
        let len = frame.len();
        if len > session.peer_max_packet as usize {
            too_large_for(&session, &format_args!("{len} bytes"));
            return None;
        }
        // The lane of the module as this relay configures it.
        let lane = self.inner.lanes.of(packet.packet_type, opts.module);
        stats::count(&self.inner.stats.relayed);
        self.flow_charge(&session, opts.module, &opts.group, len);
        // The decoded fields are slices of `frame`: dropped, they leave it the only holder.
        drop(packet);
        let version = session.version;
        if len < BIG_FRAME {
            let queued = session.offer_encoded_in(lane, len, |out| {
                let at = out.len();
                out.extend_from_slice(&frame);
                if let Some(copy) = out.get_mut(at..) {
                    patch_for_relay(copy, ttl, version);
                }
            });
            match queued {
                Ok(()) | Err(QueueError::Closed) => return None,
                // Waits below for room, with a copy of its own.
                Err(QueueError::Full) => {}
            }
        }
        offer_relayed(
            session,
            lane,
            relay_frame(frame, ttl, version),
            self.inner.relay_wait,
        )
    }

    /// Forwards a broadcast or multicast to the destinations listed (other than us), split
    /// by our own next hops exactly as the sender split it, with `ttl` left.
    fn relay_split(&self, packet: &Packet, plan: &FanoutPlan, ttl: u8) -> Option<Pending> {
        let opts = packet.options.as_ref()?;
        for t in &plan.unreachable {
            debug!(dst = %t.short(), seq = packet.seq, "no route; not relaying to it");
        }
        let base = DataFrame {
            version: MAX_PROTOCOL_VERSION,
            packet_type: packet.packet_type,
            seq: packet.seq,
            // COMPRESSED and the other flags pass through: the payload is forwarded as is.
            ext: packet.ext.with_ttl(ttl),
            group: &opts.group,
            src: &opts.src,
            dsts: &[],
            module: opts.module,
            tags: &[],
            prefix: &[],
            payload: &packet.payload,
        };
        // The payload as received is what the next hops check: a relay does not decompress.
        let copies = Copies::new(base, &packet.payload, false);
        // Each target's tag goes on with it, as received.
        let tags = ReceivedTags::of(opts);
        // Never larger than what arrived: the lists only shrink along the way.
        let planned = copies.for_plan(plan, self.inner.max_packet, |t| tags.get(t));
        for t in &planned.too_large {
            debug!(dst = %t.short(), seq = packet.seq, "relay copy too large; not relaying");
        }
        for t in &planned.untagged {
            debug!(dst = %t.short(), seq = packet.seq, "no tag for the target; not relaying");
        }
        let list = planned.copies;
        let lane = self.inner.lanes.of(packet.packet_type, opts.module);
        let mut waits = None;
        for copy in &list {
            let Some(s) = self.inner.peers.session(&copy.hop) else {
                continue;
            };
            match copies.frame(copy, s.version, self.link_limit(Some(&s))) {
                Ok(frame) => {
                    stats::count(&self.inner.stats.relayed);
                    self.flow_charge(&s, opts.module, &opts.group, frame.len());
                    let queued = offer_relayed(s, lane, frame.into_owned(), self.inner.relay_wait);
                    waits = chain(waits, queued);
                }
                Err(e) => too_large_for(&s, &e),
            }
        }
        waits
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::session::{new_session, Direction, Lane, SessionInfo, MIN_QUEUE_BYTES};

    fn link() -> SessionHandle {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let info = SessionInfo {
            peer: NodeId::from_bytes([2; 64]),
            addr,
            local_addr: addr,
            direction: Direction::Inbound,
            version: MAX_PROTOCOL_VERSION,
            peer_listen_port: 1,
            peer_max_packet: 1 << 20,
        };
        new_session(1, info, MIN_QUEUE_BYTES)
    }

    fn counting(n: &Arc<AtomicUsize>, order: usize) -> Option<Pending> {
        let n = n.clone();
        Some(Box::pin(async move {
            assert_eq!(n.fetch_add(1, Ordering::SeqCst), order);
        }))
    }

    #[tokio::test]
    async fn chained_waits_run_in_order_and_none_is_no_wait() {
        let n = Arc::new(AtomicUsize::new(0));
        assert!(chain(None, None).is_none());
        chain(counting(&n, 0), None).unwrap().await;
        chain(None, counting(&n, 1)).unwrap().await;
        chain(counting(&n, 2), counting(&n, 3)).unwrap().await;
        assert_eq!(n.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_relay_queues_while_there_is_room_then_waits_and_gives_up() {
        let s = link();
        let frame = Bytes::from(vec![0u8; MIN_QUEUE_BYTES / 2]);
        assert!(offer_relayed(s.clone(), Lane::Bulk, frame.clone(), Duration::ZERO).is_none());
        assert!(offer_relayed(s.clone(), Lane::Bulk, frame.clone(), Duration::ZERO).is_none());
        let wait = offer_relayed(s.clone(), Lane::Bulk, frame, Duration::from_millis(1))
            .expect("a full queue makes the relay wait");
        wait.await;
        assert_eq!(s.stats.dropped_out.load(Ordering::Relaxed), 1);
        assert_eq!(s.queued_bytes(), MIN_QUEUE_BYTES);
    }
}
