//! AMOP between nodes: the [`Protocol`] for packet type 7. A unicast request is pushed to
//! this node's local subscribers and answered; an answer wakes the unicast waiting for it;
//! a multicast goes to every local subscriber. A node becoming unreachable fails the
//! unicasts waiting on it over at once.

use std::sync::{Arc, Weak};

use tracing::debug;

use super::deliver::{self, Pushed};
use super::multicast;
use super::shared::{DeliverySlot, Shared};
use super::view::Counters;
use crate::identity::NodeId;
use crate::node::{Origin, Protocol, ProtocolContext};
use crate::routing::Reachability;
use crate::session::Pending;
use crate::wire::{amop_topic, AmopForward, AmopForwardKind, ChannelPack, Packet, PacketType};

/// The type-7 protocol of one node's AMOP. Holds it weakly: the node keeps its protocols
/// for its whole life.
pub(crate) struct Forwarding {
    shared: Weak<Shared>,
}

impl Forwarding {
    pub(crate) fn new(shared: &Arc<Shared>) -> Forwarding {
        Forwarding {
            shared: Arc::downgrade(shared),
        }
    }
}

impl Protocol for Forwarding {
    fn packet_types(&self) -> &[PacketType] {
        &[PacketType::AMOP]
    }

    fn on_packet(&self, _: &ProtocolContext, from: Origin, packet: Packet) -> Option<Pending> {
        let shared = self.shared.upgrade()?;
        Counters::add(&shared.stats.forwarded_in);
        let (forward, pack) = match AmopForward::decode(&packet.payload, shared.cfg.max_frame) {
            Ok(f) => f,
            Err(e) => {
                invalid(&shared, from.src, &e.to_string());
                return None;
            }
        };
        match forward.kind {
            AmopForwardKind::UnicastRequest => match amop_topic(&pack.data) {
                Ok(topic) => match deliver::slot(&shared) {
                    Ok(slot) => {
                        let topic = topic.to_string();
                        tokio::spawn(answer(shared, from.src, forward, pack, topic, slot));
                    }
                    // Refused at once, without a task: a flood costs one answer each.
                    Err(over) => reply(&shared, from.src, forward.request, over, &pack),
                },
                Err(e) => invalid(&shared, from.src, &e.to_string()),
            },
            AmopForwardKind::UnicastAnswer => {
                if !shared
                    .forwards
                    .resolve(&forward.request, &from.src, forward.frame)
                {
                    invalid(&shared, from.src, "an answer to no pending unicast");
                }
            }
            AmopForwardKind::Multicast => match amop_topic(&pack.data) {
                Ok(topic) => multicast::deliver_local(&shared, &topic, &forward.frame),
                Err(e) => invalid(&shared, from.src, &e.to_string()),
            },
        }
        None
    }

    fn on_reachability(&self, _: &ProtocolContext, event: &Reachability) {
        if let (Some(shared), Reachability::Unreachable { node, .. }) =
            (self.shared.upgrade(), event)
        {
            shared.forwards.fail_owner(node);
        }
    }
}

fn invalid(shared: &Shared, src: NodeId, why: &str) {
    Counters::add(&shared.stats.forwarded_invalid);
    debug!(node = %src.short(), why, "AMOP packet dropped");
}

/// Pushes a unicast forwarded by `src` to the local subscribers, within `slot`, and sends
/// `src` the answer.
async fn answer(
    shared: Arc<Shared>,
    src: NodeId,
    request: AmopForward,
    pack: ChannelPack,
    topic: String,
    slot: DeliverySlot,
) {
    let pushed = deliver::push(&shared, slot, &pack, &request.frame, &topic).await;
    let Some(answer) = answer_of(&shared, request.request, pushed, &pack) else {
        return;
    };
    let sent = tokio::time::timeout(shared.cfg.forward_timeout, shared.send_to(src, &answer)).await;
    if !matches!(sent, Ok(Ok(()))) {
        debug!(node = %src.short(), "AMOP answer not sent");
    }
}

/// Answers request `request` of `src` now, without waiting for queue room.
fn reply(shared: &Shared, src: NodeId, request: u64, pushed: Pushed, pack: &ChannelPack) {
    if let Some(answer) = answer_of(shared, request, pushed, pack) {
        if let Err(e) = shared.try_send_to(src, &answer) {
            debug!(node = %src.short(), error = %e, "AMOP answer not sent");
        }
    }
}

/// The type-7 answer to `request` for the outcome `pushed`.
fn answer_of(
    shared: &Shared,
    request: u64,
    pushed: Pushed,
    pack: &ChannelPack,
) -> Option<AmopForward> {
    Some(AmopForward {
        kind: AmopForwardKind::UnicastAnswer,
        request,
        frame: pushed.into_answer(shared, pack)?,
    })
}
