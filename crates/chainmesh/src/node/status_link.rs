//! Status synchronization inside the node: the status engine's transport is the router (so
//! status packets reach nodes behind relays), and broadcast and multicast take their targets
//! from the synchronized status table.

use std::sync::{Arc, OnceLock, Weak};

use bytes::Bytes;

use super::{Inner, NodeHandle, SendError};
use crate::identity::NodeId;
use crate::routing::Membership;
use crate::status::{
    PeerStatus, StatusError, StatusEvent, StatusService, StatusTransport, StatusVersion,
    TransportError,
};
use crate::wire::{Ext, Options, Packet, PacketType};

/// The status engine's way out: packets with options, routed like any unicast. Holds the
/// node weakly: the engine must not keep a stopped node alive.
#[derive(Default)]
pub(super) struct StatusLink {
    node: OnceLock<Weak<Inner>>,
}

impl StatusLink {
    /// Connects the link to its node, once the node exists.
    pub(super) fn attach(&self, node: Weak<Inner>) {
        let _ = self.node.set(node);
    }

    fn node(&self) -> Option<NodeHandle> {
        let inner = self.node.get()?.upgrade()?;
        Some(NodeHandle { inner })
    }
}

impl StatusTransport for StatusLink {
    fn reachable(&self) -> Vec<NodeId> {
        let Some(node) = self.node() else {
            return Vec::new();
        };
        node.reachable_nodes().into_iter().map(|(n, _)| n).collect()
    }

    fn send(
        &self,
        dst: NodeId,
        packet_type: PacketType,
        payload: Bytes,
    ) -> Result<(), TransportError> {
        let node = self.node().ok_or(TransportError::Unreachable)?;
        let packet = Packet {
            version: 0,
            packet_type,
            seq: 0,
            ext: Ext(0),
            options: Some(Options {
                group: bytestring::ByteString::new(),
                src: node.node_id(),
                dsts: vec![dst],
                module: 0,
            }),
            payload,
        };
        // The engine must not wait: a full queue is reported and retried on its next tick.
        match futures_util::FutureExt::now_or_never(node.send_packet(dst, packet)) {
            Some(Ok(())) => Ok(()),
            Some(Err(SendError::Unreachable(_))) => Err(TransportError::Unreachable),
            Some(Err(SendError::QueueFull(_))) | None => Err(TransportError::QueueFull),
            Some(Err(e)) => Err(TransportError::Other(e.to_string())),
        }
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

impl NodeHandle {
    /// The status engine: this node's status and every known node's.
    pub fn status(&self) -> &Arc<StatusService> {
        &self.inner.status
    }

    /// Sets this node's application status (e.g. its block height); every node sees the
    /// change within a few round trips.
    pub fn set_app_status(&self, app: impl Into<Bytes>) -> Result<StatusVersion, StatusError> {
        self.inner.status.set_app_status(app)
    }

    /// The status of `node` as last synchronized, if known.
    pub fn peer_status(&self, node: &NodeId) -> Option<PeerStatus> {
        self.inner.status.get(node)
    }

    /// Every known node's status (not this node's own: see [`StatusService::local`]).
    pub fn peer_statuses(&self) -> Vec<PeerStatus> {
        self.inner.status.all()
    }

    /// Status updates and removals of other nodes, from now on.
    pub fn status_events(&self) -> tokio::sync::broadcast::Receiver<StatusEvent> {
        self.inner.status.subscribe()
    }
}
