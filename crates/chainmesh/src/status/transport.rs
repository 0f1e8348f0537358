//! How the status engine reaches other nodes: the [`StatusTransport`] the node implements on
//! top of its router (an in-memory fake in tests).

use bytes::Bytes;

use crate::identity::NodeId;
use crate::wire::{Options, PacketType, HEADER_LEN};

/// Bytes a status packet takes on the wire besides its payload: the header and options with
/// an empty GroupID and one destination.
pub const PACKET_OVERHEAD: usize = HEADER_LEN + Options::FIXED_LEN + crate::identity::NODE_ID_LEN;

/// How the engine sends: implemented by the node on top of its router, which fills in the
/// options (source = this node, one destination, empty GroupID, ModuleID 0), the header Seq
/// and the TTL, and relays to nodes that are not neighbours.
///
/// The engine sends every answer to the source it was given with the request
/// ([`StatusService::on_packet`]), so a transport never needs a reply address of its own:
/// whoever feeds the engine vouches for that source.
///
/// [`StatusService::on_packet`]: super::StatusService::on_packet
pub trait StatusTransport: Send + Sync + 'static {
    /// Every node this node can currently reach, directly or through relays. The local node
    /// may be included; it is ignored.
    fn reachable(&self) -> Vec<NodeId>;
    /// Whether `node` is among [`reachable`](Self::reachable): the engine ignores
    /// announcements and queries from any other node. Override it when the transport can
    /// answer without listing every node.
    fn is_reachable(&self, node: &NodeId) -> bool {
        self.reachable().contains(node)
    }
    /// Queues a packet of `packet_type` with `payload` for `dst` without waiting. A failure
    /// is not retried by the transport: the engine's own timers take care of that.
    fn send(
        &self,
        dst: NodeId,
        packet_type: PacketType,
        payload: Bytes,
    ) -> Result<(), TransportError>;
}

/// Why the transport could not queue a packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// No route leads to the node.
    #[error("unreachable")]
    Unreachable,
    /// The next hop's queue is full.
    #[error("queue full")]
    QueueFull,
    /// Anything else, in words.
    #[error("{0}")]
    Other(String),
}
