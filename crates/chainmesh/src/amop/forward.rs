//! AMOP between nodes: the [`Protocol`] for packet type 7. A unicast request is pushed to
//! this node's local subscribers and answered; an answer wakes the unicast waiting for it;
//! a multicast goes to every local subscriber. A node becoming unreachable fails the
//! unicasts waiting on it over at once.

use std::sync::{Arc, Weak};

use bytes::Bytes;
use tracing::debug;

use super::deliver;
use super::multicast;
use super::shared::Shared;
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
                Ok(topic) => {
                    let topic = topic.to_string();
                    tokio::spawn(answer(shared, from.src, forward, pack, topic));
                }
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

/// Pushes a unicast forwarded by `src` to the local subscribers and sends `src` the answer.
async fn answer(
    shared: Arc<Shared>,
    src: NodeId,
    request: AmopForward,
    pack: ChannelPack,
    topic: String,
) {
    let pushed = deliver::push(&shared, &pack, &request.frame, &topic).await;
    let Some(frame): Option<Bytes> = pushed.into_answer(&shared, &pack) else {
        return;
    };
    let answer = AmopForward {
        kind: AmopForwardKind::UnicastAnswer,
        request: request.request,
        frame,
    };
    let sent = tokio::time::timeout(shared.cfg.forward_timeout, shared.send_to(src, &answer)).await;
    if !matches!(sent, Ok(Ok(()))) {
        debug!(node = %src.short(), "AMOP answer not sent");
    }
}
