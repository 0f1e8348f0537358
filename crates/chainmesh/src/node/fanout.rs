//! Broadcast and multicast from this node: the targets from the [`Membership`], split by
//! next hop ([`plan`]), one copy per neighbour ([`Copies`]), and per target what became of it.
//!
//! [`Membership`]: crate::routing::Membership

use tracing::debug;

use super::copies::Copies;
use super::tagging::{frame_digest, on_the_wire};
use super::unicast::wire_to_send_error;
use super::{NodeHandle, SendError};
use crate::identity::NodeId;
use crate::routing::plan;
use crate::session::QueueError;
use crate::wire::{encode_topic_prefix, DataFrame, PacketType, DEFAULT_TTL, MAX_PROTOCOL_VERSION};

/// Who a broadcast or multicast is for.
#[derive(Clone, Copy)]
pub(super) enum Audience<'a> {
    /// Every node of a group.
    Group(&'a str),
    /// Every subscriber of a topic.
    Topic(&'a str),
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

/// One packet to fan out: what the caller says (the node adds source, Seq and TTL).
struct Outgoing<'a> {
    packet_type: PacketType,
    group: &'a str,
    /// Bytes that start the payload (a multicast's topic).
    prefix: &'a [u8],
    module: u16,
    payload: &'a [u8],
}

impl NodeHandle {
    /// The fail-fast form of [`fan`](Self::fan): it never waits, so it completes at once.
    pub(super) fn fan_now(
        &self,
        to: Audience<'_>,
        module: u16,
        payload: &[u8],
    ) -> Result<Fanout, SendError> {
        futures_util::FutureExt::now_or_never(self.fan(to, module, payload, false))
            .unwrap_or(Err(SendError::QueueFull(self.inner.id)))
    }

    /// Sends to a group (broadcast) or a topic's subscribers (multicast), as the
    /// [`Membership`](crate::routing::Membership) lists them.
    pub(super) async fn fan(
        &self,
        to: Audience<'_>,
        module: u16,
        payload: &[u8],
        wait: bool,
    ) -> Result<Fanout, SendError> {
        match to {
            Audience::Group(group) => {
                let targets = self.membership().group_members(group);
                let out = Outgoing {
                    packet_type: PacketType::BROADCAST,
                    group,
                    prefix: &[],
                    module,
                    payload,
                };
                self.fanout(out, &targets, wait).await
            }
            Audience::Topic(topic) => {
                let targets = self.membership().topic_subscribers(topic);
                let mut prefix = Vec::with_capacity(topic.len().saturating_add(2));
                encode_topic_prefix(topic, &mut prefix).map_err(wire_to_send_error)?;
                let out = Outgoing {
                    packet_type: PacketType::MULTICAST,
                    group: self.default_group(),
                    prefix: &prefix,
                    module,
                    payload,
                };
                self.fanout(out, &targets, wait).await
            }
        }
    }

    async fn fanout(
        &self,
        out: Outgoing<'_>,
        targets: &[NodeId],
        wait: bool,
    ) -> Result<Fanout, SendError> {
        let seq = self.next_seq();
        let id = self.inner.id;
        // Compress once for every copy.
        let joined;
        let plain: &[u8] = if out.prefix.is_empty() {
            out.payload
        } else {
            joined = [out.prefix, out.payload].concat();
            &joined
        };
        let mut compressed = Vec::new();
        let (body, ext) = on_the_wire(plain, self.inner.compress_threshold, &mut compressed);
        let base = DataFrame {
            version: MAX_PROTOCOL_VERSION,
            packet_type: out.packet_type,
            seq,
            ext: ext.with_ttl(DEFAULT_TTL),
            group: out.group,
            src: &id,
            dsts: &[],
            module: out.module,
            tags: &[],
            prefix: &[],
            payload: body,
        };
        // The size limit counts the uncompressed payload, as for unicast.
        DataFrame {
            payload: plain,
            ..base
        }
        .validate(self.inner.max_packet)
        .map_err(wire_to_send_error)?;
        let plan = plan(targets, &id, |t| self.link_for(t).map(|s| s.peer));
        let copies = Copies::new(base, plain, true);
        // Hashed once, and only when a target is behind a relay (neighbours get the direct
        // form, which has no tags); each such target then costs one short MAC.
        let mut digest = None;
        let keys = &self.inner.keys;
        let planned = copies.for_plan(&plan, self.inner.max_packet, |t| {
            let d = digest.get_or_insert_with(|| frame_digest(&copies.tagged_form()));
            keys.tag(t, d).ok()
        });
        let list = planned.copies;
        let mut report = Fanout {
            seq,
            unreachable: plan.unreachable.clone(),
            ..Fanout::default()
        };
        for t in &planned.too_large {
            debug!(dst = %t.short(), "relay copy too large; dropped");
        }
        // A target whose node ID is no key cannot be given a tag, so it cannot be reached.
        for t in &planned.untagged {
            debug!(dst = %t.short(), "target's node ID is no public key; unreachable");
        }
        report.dropped = planned.too_large;
        report.unreachable.extend(planned.untagged);
        let mut blocked = Vec::new();
        let lane = self.inner.lanes.of(out.packet_type, out.module);
        let mut over_limit = None;
        'copies: for copy in &list {
            let mut closed = None;
            // A second attempt covers a link replaced a moment ago (see `queue_now`).
            for _ in 0..2 {
                let Some(s) = self.inner.peers.session(&copy.hop) else {
                    break;
                };
                if closed == Some(s.id) {
                    break;
                }
                let frame = match copies.frame(copy, s.version, self.link_limit(Some(&s))) {
                    Ok(f) => f,
                    Err(_) => {
                        debug!(next_hop = %copy.hop.short(), limit = s.peer_max_packet,
                            "copy larger than the neighbour accepts; dropped");
                        break;
                    }
                };
                if self.flow().enabled() {
                    let gate = self.flow_gate(&s, out.module, out.group, frame.len(), wait);
                    if let Err(e) = Box::pin(gate).await {
                        over_limit.get_or_insert(e);
                        break;
                    }
                }
                match s.offer_shared_in(lane, &frame) {
                    Ok(()) => {
                        report.queued.extend_from_slice(&copy.targets);
                        continue 'copies;
                    }
                    Err(QueueError::Full) => {
                        blocked.push((s, &copy.targets[..], frame.into_owned()));
                        continue 'copies;
                    }
                    Err(QueueError::Closed) => closed = Some(s.id),
                }
            }
            report.dropped.extend_from_slice(&copy.targets);
        }
        for (s, list, frame) in blocked {
            let queued = if wait {
                s.send_in(lane, frame).await.is_ok()
            } else {
                s.count_drop();
                false
            };
            if queued {
                report.queued.extend_from_slice(list);
            } else {
                report.dropped.extend_from_slice(list);
            }
        }
        // Over a bandwidth limit with nothing queued: the typed error, not an empty report.
        match over_limit {
            Some(e) if report.queued.is_empty() => Err(e),
            _ => Ok(report),
        }
    }
}
