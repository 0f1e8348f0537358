//! The plug-in point for subsystems that own packet types: the [`Protocol`] trait, the
//! [`ProtocolContext`] it sends through, and the table dispatch looks packet types up in.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use parking_lot::RwLock;

use super::{Inner, NodeHandle, SendError};
use crate::identity::NodeId;
use crate::routing::Reachability;
use crate::session::Pending;
use crate::wire::{Packet, PacketType};

/// A subsystem that owns packet types: status synchronization and the routing exchange
/// today, AMOP's forwarding next, and whatever an embedding application adds
/// (`docs/protocols.md` is the guide).
///
/// It lists its packet types and handles the packets of those types that reach
/// this node; it reaches other nodes through a [`ProtocolContext`]. Whether a type travels
/// between any two nodes or only over one link is the wire format's to say
/// ([`PacketType::has_options`]):
///
/// - **addressed** types (with options) are routed like messages: a node relays the packets
///   that are for others, drops duplicates, and hands the protocol those addressed to it,
///   decompressed. Send them with [`ProtocolContext::send_packet`].
/// - **link-local** types (without options) go from a neighbour to this node and no
///   further; the protocol gets every one that arrives. Send them on a session
///   ([`NodeHandle::peers`](crate::NodeHandle::peers)).
///
/// The built-in messaging (unicast, broadcast, multicast to registered modules) is not a
/// protocol: it is the node's fast path, delivered without a table lookup.
///
/// ```no_run
/// use std::sync::Arc;
/// use chainmesh::node::{Origin, Protocol, ProtocolContext};
/// use chainmesh::session::Pending;
/// use chainmesh::wire::{Packet, PacketType};
///
/// /// Prints every AMOP packet addressed to this node.
/// struct Printer;
///
/// impl Protocol for Printer {
///     fn packet_types(&self) -> &[PacketType] {
///         &[PacketType::AMOP]
///     }
///
///     fn on_packet(&self, _: &ProtocolContext, from: Origin, packet: Packet) -> Option<Pending> {
///         println!("{} bytes from {}", packet.payload.len(), from.src.short());
///         None
///     }
/// }
///
/// # fn run(node: chainmesh::NodeHandle) -> Result<(), chainmesh::node::ProtocolError> {
/// node.register_protocol(Arc::new(Printer))?;
/// # Ok(()) }
/// ```
pub trait Protocol: Send + Sync + 'static {
    /// The packet types it handles. Read once, when it is registered.
    fn packet_types(&self) -> &[PacketType];

    /// Handles one packet of its types, addressed to this node (or, for a link-local type,
    /// from a neighbour). A compressed payload has been decompressed and
    /// [`Ext::COMPRESSED`](crate::wire::Ext::COMPRESSED) cleared. It runs on the task of the
    /// session the packet came on, so it must not block; returning a future makes that
    /// session stop reading until it completes (backpressure), while it keeps writing.
    fn on_packet(&self, ctx: &ProtocolContext, from: Origin, packet: Packet) -> Option<Pending>;

    /// A node became reachable or unreachable (an unreachable one is reported only if it is
    /// still unreachable when the change is handled). Runs on the node's reachability
    /// watch, shared by every protocol: it must not block. Does nothing by default.
    fn on_reachability(&self, ctx: &ProtocolContext, event: &Reachability) {
        let _ = (ctx, event);
    }
}

/// Where a packet handed to a [`Protocol`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The node that made the packet: the source in its options, or for a link-local type
    /// the neighbour.
    pub src: NodeId,
    /// The neighbour it arrived from, which relayed it unless it is `src`.
    pub link: NodeId,
}

/// Why [`NodeHandle::register_protocol`] refused a protocol; nothing of it was registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The type is link control (heartbeat, handshake, goodbye) or the node's own messaging
    /// (unicast, broadcast, multicast).
    #[error("packet type {0} belongs to the node itself")]
    Reserved(PacketType),
    /// Another protocol handles the type already.
    #[error("packet type {0} already has a protocol")]
    Taken(PacketType),
}

/// Types no protocol may take: the sessions handle link control, and the node delivers
/// messages to modules itself.
const RESERVED: [PacketType; 6] = [
    PacketType::HEARTBEAT,
    PacketType::HANDSHAKE,
    PacketType::GOODBYE,
    PacketType::UNICAST,
    PacketType::BROADCAST,
    PacketType::MULTICAST,
];

/// What a [`Protocol`] uses to reach the other nodes. Cheap to clone; it holds the node
/// weakly, so once the node is gone every node is unreachable.
#[derive(Clone)]
pub struct ProtocolContext {
    id: NodeId,
    node: Weak<Inner>,
}

impl std::fmt::Debug for ProtocolContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProtocolContext")
            .field("node", &self.id)
            .finish()
    }
}

impl ProtocolContext {
    pub(super) fn new(id: NodeId, node: Weak<Inner>) -> Self {
        ProtocolContext { id, node }
    }

    fn node(&self) -> Option<NodeHandle> {
        self.node.upgrade().map(|inner| NodeHandle { inner })
    }

    /// This node's ID.
    pub fn node_id(&self) -> NodeId {
        self.id
    }

    /// Sends `packet` (an addressed type, with options) to `dst` along the routes, waiting
    /// for queue room; see [`NodeHandle::send_packet`] for what routing fills in.
    pub async fn send_packet(&self, dst: NodeId, packet: Packet) -> Result<(), SendError> {
        match self.node() {
            Some(node) => node.routed_packet(dst, &packet).await,
            None => Err(SendError::Unreachable(dst)),
        }
    }

    /// Like [`send_packet`](Self::send_packet), but never waits: fails with
    /// [`SendError::QueueFull`] when the next hop's queue has no room (the drop is counted
    /// in that peer's `dropped_out`).
    pub fn try_send_packet(&self, dst: NodeId, packet: Packet) -> Result<(), SendError> {
        match self.node() {
            Some(node) => node.routed_packet_now(dst, &packet),
            None => Err(SendError::Unreachable(dst)),
        }
    }

    /// Every node this one can reach, with its distance in hops, sorted by node ID.
    pub fn reachable_nodes(&self) -> Vec<(NodeId, u8)> {
        self.node().map(|n| n.reachable_nodes()).unwrap_or_default()
    }

    /// Completes once the node shuts down (at once if it is gone): the signal for a
    /// protocol's own tasks to end.
    pub async fn stopped(&self) {
        let Some(stop) = self.node.upgrade().map(|inner| inner.stop.clone()) else {
            return;
        };
        stop.cancelled().await;
    }
}

/// The registered protocols by packet type.
#[derive(Default)]
pub(super) struct Protocols {
    table: RwLock<Table>,
}

#[derive(Default)]
struct Table {
    by_type: HashMap<PacketType, Arc<dyn Protocol>, foldhash::fast::RandomState>,
    /// Each protocol once, in registration order.
    all: Vec<Arc<dyn Protocol>>,
}

impl Protocols {
    /// Adds `protocol` for all of its types, or for none if one is reserved or taken.
    pub(super) fn register(&self, protocol: Arc<dyn Protocol>) -> Result<(), ProtocolError> {
        let types = protocol.packet_types();
        let mut table = self.table.write();
        for t in types {
            if RESERVED.contains(t) {
                return Err(ProtocolError::Reserved(*t));
            }
            if table.by_type.contains_key(t) {
                return Err(ProtocolError::Taken(*t));
            }
        }
        for t in types {
            table.by_type.insert(*t, protocol.clone());
        }
        table.all.push(protocol);
        Ok(())
    }

    /// The protocol for `packet_type`, if any.
    pub(super) fn get(&self, packet_type: PacketType) -> Option<Arc<dyn Protocol>> {
        self.table.read().by_type.get(&packet_type).cloned()
    }

    /// Every protocol, once each.
    pub(super) fn all(&self) -> Vec<Arc<dyn Protocol>> {
        self.table.read().all.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Owns(Vec<PacketType>);

    impl Protocol for Owns {
        fn packet_types(&self) -> &[PacketType] {
            &self.0
        }

        fn on_packet(&self, _: &ProtocolContext, _: Origin, _: Packet) -> Option<Pending> {
            None
        }
    }

    fn owns(types: &[u16]) -> Arc<dyn Protocol> {
        Arc::new(Owns(types.iter().map(|t| PacketType(*t)).collect()))
    }

    #[test]
    fn packets_are_looked_up_by_type() {
        let p = Protocols::default();
        let status = owns(&[0x03, 0x04, 0x09]);
        let routing = owns(&[0x0a, 0x0b, 0x0c]);
        p.register(status.clone()).unwrap();
        p.register(routing.clone()).unwrap();
        assert!(Arc::ptr_eq(
            &p.get(PacketType::STATUS_SEQ).unwrap(),
            &status
        ));
        assert!(Arc::ptr_eq(
            &p.get(PacketType::ROUTER_REQUEST).unwrap(),
            &routing
        ));
        assert!(p.get(PacketType::AMOP).is_none());
        let all = p.all();
        assert_eq!(all.len(), 2, "each protocol once, whatever its types");
        assert!(Arc::ptr_eq(&all[0], &status) && Arc::ptr_eq(&all[1], &routing));
    }

    #[test]
    fn the_nodes_own_types_cannot_be_taken() {
        let p = Protocols::default();
        for t in RESERVED {
            assert_eq!(p.register(owns(&[t.0])), Err(ProtocolError::Reserved(t)));
        }
        assert!(p.all().is_empty());
    }

    #[test]
    fn a_refused_protocol_registers_none_of_its_types() {
        let p = Protocols::default();
        p.register(owns(&[0x07])).unwrap();
        assert_eq!(
            p.register(owns(&[0x20, 0x07])),
            Err(ProtocolError::Taken(PacketType::AMOP))
        );
        assert_eq!(
            p.register(owns(&[0x21, 0x05])),
            Err(ProtocolError::Reserved(PacketType::UNICAST))
        );
        assert!(p.get(PacketType(0x20)).is_none() && p.get(PacketType(0x21)).is_none());
        assert_eq!(p.all().len(), 1);
    }
}
