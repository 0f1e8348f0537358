//! Per-call send options, and which lane a packet takes on a link by default.

use crate::session::Lane;
use crate::wire::PacketType;

/// Options of one [`send_with`](super::NodeHandle::send_with) or
/// [`request_with`](super::NodeHandle::request_with).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SendOptions {
    /// The lane the packet takes on the link to its next hop; `None` (the default) is the
    /// module's lane: [`Lane::Priority`] for the modules of `p2p.priority_modules`,
    /// [`Lane::Bulk`] for the others. Relays choose again by their own configuration.
    pub lane: Option<Lane>,
}

impl SendOptions {
    /// The options with `lane` for the packet.
    #[must_use]
    pub fn lane(lane: Lane) -> Self {
        SendOptions { lane: Some(lane) }
    }
}

/// The lanes of this node's traffic: `p2p.priority_modules`, sorted for lookup.
#[derive(Debug, Default)]
pub(super) struct Lanes {
    priority: Box<[u16]>,
}

impl Lanes {
    /// The lanes of a node whose priority modules are `modules`.
    pub(super) fn new(modules: &[u16]) -> Self {
        let mut priority = modules.to_vec();
        priority.sort_unstable();
        priority.dedup();
        Lanes {
            priority: priority.into_boxed_slice(),
        }
    }

    /// The lane of a packet of `packet_type` for `module`: link and network upkeep
    /// (status synchronization) goes in the control lane, the priority modules in the
    /// priority lane, the rest in bulk.
    pub(super) fn of(&self, packet_type: PacketType, module: u16) -> Lane {
        match packet_type {
            PacketType::STATUS_SEQ | PacketType::STATUS_REQUEST | PacketType::STATUS_RESPONSE => {
                Lane::Control
            }
            _ => self.of_module(module),
        }
    }

    /// The lane of application data for `module`.
    #[inline]
    pub(super) fn of_module(&self, module: u16) -> Lane {
        if !self.priority.is_empty() && self.priority.binary_search(&module).is_ok() {
            Lane::Priority
        } else {
            Lane::Bulk
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_control_priority_modules_are_priority_and_the_rest_bulk() {
        let lanes = Lanes::new(&[7, 3, 7]);
        assert_eq!(lanes.of(PacketType::STATUS_SEQ, 3), Lane::Control);
        assert_eq!(lanes.of(PacketType::UNICAST, 3), Lane::Priority);
        assert_eq!(lanes.of(PacketType::BROADCAST, 7), Lane::Priority);
        assert_eq!(lanes.of(PacketType::UNICAST, 4), Lane::Bulk);
        assert_eq!(Lanes::new(&[]).of_module(0), Lane::Bulk);
        assert_eq!(SendOptions::default().lane, None);
    }
}
