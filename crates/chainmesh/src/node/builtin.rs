//! The node's own protocols: status synchronization (addressed packets, routed like any
//! unicast, so status reaches nodes behind relays) and the routing exchange (link-local
//! packets between neighbours). Also the status engine's way out, and the membership that
//! broadcast and multicast take their targets from: the synchronized status table.

use std::sync::Arc;

use bytes::Bytes;
use tracing::debug;

use super::protocol::{Origin, Protocol, ProtocolContext};
use super::SendError;
use crate::identity::NodeId;
use crate::routing::{Membership, Reachability, Router};
use crate::session::Pending;
use crate::status::{StatusService, StatusTransport, TransportError};
use crate::wire::{Ext, Options, Packet, PacketType};

/// Status synchronization as a protocol: StatusSeq, StatusRequest and StatusResponse
/// addressed to this node go to the engine, and reachability changes start or end the
/// exchange with a node.
pub(super) struct StatusSync(pub(super) Arc<StatusService>);

impl Protocol for StatusSync {
    fn packet_types(&self) -> &[PacketType] {
        &[
            PacketType::STATUS_REQUEST,
            PacketType::STATUS_RESPONSE,
            PacketType::STATUS_SEQ,
        ]
    }

    fn on_packet(&self, _: &ProtocolContext, from: Origin, packet: Packet) -> Option<Pending> {
        // A malformed one is logged, not answered by closing the link: status packets are
        // relayed, so the link's peer may not be the one that sent the bad bytes.
        if let Err(e) = self
            .0
            .on_packet(from.src, packet.packet_type, packet.payload)
        {
            debug!(peer = %from.link.short(), src = %from.src.short(), error = %e,
                "bad status packet");
        }
        None
    }

    fn on_reachability(&self, _: &ProtocolContext, event: &Reachability) {
        match event {
            Reachability::Unreachable { node, .. } => self.0.on_unreachable(node),
            Reachability::Reachable { node, .. } => self.0.on_reachable(*node),
        }
    }
}

/// The status engine's transport: packets with options, routed like any unicast; never
/// waiting, since the engine retries on its next tick.
pub(super) struct StatusTransportOver(pub(super) ProtocolContext);

/// What the engine hears of a send that failed.
fn transport_error(e: SendError) -> TransportError {
    match e {
        SendError::Unreachable(_) => TransportError::Unreachable,
        SendError::QueueFull(_) => TransportError::QueueFull,
        other => TransportError::Other(other.to_string()),
    }
}

impl StatusTransport for StatusTransportOver {
    fn reachable(&self) -> Vec<NodeId> {
        self.0
            .reachable_nodes()
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    }

    fn is_reachable(&self, node: &NodeId) -> bool {
        // Sorted by node ID.
        self.0
            .reachable_nodes()
            .binary_search_by(|(n, _)| n.cmp(node))
            .is_ok()
    }

    fn send(
        &self,
        dst: NodeId,
        packet_type: PacketType,
        payload: Bytes,
    ) -> Result<(), TransportError> {
        let packet = Packet {
            version: 0,
            packet_type,
            seq: 0,
            ext: Ext(0),
            options: Some(Options {
                group: bytestring::ByteString::new(),
                src: self.0.node_id(),
                dsts: vec![dst],
                module: 0,
                tags: Bytes::new(),
            }),
            payload,
        };
        self.0.try_send_packet(dst, packet).map_err(transport_error)
    }
}

/// Group members and topic subscribers as the status table knows them (this node included).
pub(super) struct StatusMembership(pub(super) Arc<StatusService>);

impl Membership for StatusMembership {
    fn group_members(&self, group: &str) -> Vec<NodeId> {
        self.0.network_group_members(group)
    }

    fn topic_subscribers(&self, topic: &str) -> Vec<NodeId> {
        self.0.network_topic_subscribers(topic)
    }
}

/// The routing exchange as a protocol: RouterSeq, RouterRequest and RouterResponse from a
/// neighbour go to the routing task.
pub(super) struct RouteExchange(pub(super) Arc<Router>);

impl Protocol for RouteExchange {
    fn packet_types(&self) -> &[PacketType] {
        &[
            PacketType::ROUTER_SEQ,
            PacketType::ROUTER_REQUEST,
            PacketType::ROUTER_RESPONSE,
        ]
    }

    fn on_packet(&self, _: &ProtocolContext, from: Origin, packet: Packet) -> Option<Pending> {
        self.0.on_packet(from.link, packet);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::WireError;

    fn id(b: u8) -> NodeId {
        NodeId::from_bytes([b; 64])
    }

    #[test]
    fn the_engine_hears_why_a_status_packet_was_not_sent() {
        assert_eq!(
            transport_error(SendError::Unreachable(id(2))),
            TransportError::Unreachable
        );
        assert_eq!(
            transport_error(SendError::QueueFull(id(3))),
            TransportError::QueueFull
        );
        let big = SendError::TooLarge { size: 10, max: 5 };
        assert_eq!(
            transport_error(big.clone()),
            TransportError::Other(big.to_string())
        );
        let bad = SendError::Invalid(WireError::GroupTooLong { length: 70_000 });
        assert!(matches!(transport_error(bad), TransportError::Other(s) if s.contains("70000")));
    }

    #[test]
    fn status_and_routing_own_disjoint_link_and_addressed_types() {
        let status = crate::status::StatusService::with_config(
            id(1),
            crate::status::StatusConfig::default(),
            crate::status::NodeStatus::default(),
            Arc::new(StatusTransportOver(ProtocolContext::new(
                id(1),
                std::sync::Weak::new(),
            ))),
        )
        .unwrap();
        let sync = StatusSync(status);
        let dir = tempfile::tempdir().unwrap();
        let nodes =
            crate::identity::generate_node_files(dir.path(), 1, crate::identity::Curve::Secp256k1)
                .unwrap();
        let identity = nodes[0].load_identity().unwrap();
        let limits = crate::routing::RoutingLimits {
            max_nodes: 16,
            max_neighbours: 16,
        };
        let routes = RouteExchange(Router::new(&identity, limits).unwrap());
        // Status packets are routed; routing packets never leave their link.
        assert!(sync.packet_types().iter().all(|t| t.has_options()));
        assert!(routes.packet_types().iter().all(|t| !t.has_options()));
        let protocols = super::super::protocol::Protocols::default();
        protocols.register(Arc::new(sync)).unwrap();
        protocols.register(Arc::new(routes)).unwrap();
        assert_eq!(protocols.all().len(), 2);
    }

    #[test]
    fn a_context_without_its_node_reaches_nobody() {
        let transport = StatusTransportOver(ProtocolContext::new(id(1), std::sync::Weak::new()));
        assert!(transport.reachable().is_empty());
        assert_eq!(
            transport.send(id(2), PacketType::STATUS_SEQ, Bytes::new()),
            Err(TransportError::Unreachable)
        );
    }
}
