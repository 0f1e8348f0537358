//! What a node does with an addressed packet (a type with options) that a neighbour handed
//! it, as pure logic: deliver it here, pass it on towards its other destinations, or drop it,
//! and why.
//!
//! The rules, in the order they apply (`docs/protocol.md`, section Relaying):
//!
//! 1. a packet in direct form is for this node alone: the link names both its ends;
//! 2. a Unicast naming other than exactly one destination is malformed;
//! 3. a packet whose source is this node came back along a loop and is dropped;
//! 4. it is delivered here when its destination list is empty or names this node;
//! 5. what is for other nodes goes on with one TTL less, if any is left: to the next hop of
//!    a single destination, or split by next hop (as the sender split it, see [`plan`]) for
//!    several.
//!
//! [`link_for`] is the one rule for which link a packet leaves by.

use super::fanout::{plan, FanoutPlan};
use crate::identity::NodeId;
use crate::wire::{Ext, Options, PacketType};

/// Why a packet, or the part of it meant for other nodes, goes no further.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DropReason {
    /// The packet's source is this node: it came back along a loop.
    #[error("this node's own packet came back")]
    OwnPacket,
    /// The packet has no relay hops left.
    #[error("TTL exhausted")]
    TtlExhausted,
    /// No route leads to the (single) destination.
    #[error("no route to the destination")]
    NoRoute,
    /// A Unicast names other than exactly one destination. The neighbour that sent it broke
    /// the protocol, whoever the source is: relays check it too.
    #[error("a Unicast must name exactly one destination, this one names {0}")]
    UnicastDestinations(usize),
}

impl DropReason {
    /// Whether the neighbour that handed over the packet broke the protocol, so that its
    /// link is to be closed (rather than the packet merely dropped).
    pub fn is_malformed(self) -> bool {
        matches!(self, DropReason::UnicastDestinations(_))
    }
}

/// Where a packet goes beyond this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Onward {
    /// Nowhere: it was for this node alone (or for nobody).
    Nowhere,
    /// To the next hop of its one destination, the received bytes with `ttl` left.
    Relay {
        /// The neighbour to hand it to.
        next_hop: NodeId,
        /// The TTL the forwarded copy carries.
        ttl: u8,
    },
    /// To several destinations: one copy per next hop, as `plan` groups them.
    Split {
        /// The destinations other than this node, by next hop.
        plan: FanoutPlan,
        /// The TTL every copy carries.
        ttl: u8,
    },
    /// Nowhere, although other nodes were meant.
    Dropped(DropReason),
}

/// What to do with one addressed packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether this node is one of its destinations.
    pub deliver: bool,
    /// What goes on to other nodes.
    pub onward: Onward,
}

impl Decision {
    const fn drop(reason: DropReason) -> Decision {
        Decision {
            deliver: false,
            onward: Onward::Dropped(reason),
        }
    }
}

/// Classifies an addressed packet of `packet_type` with `ext` and `opts` that arrived at node
/// `local`. `next_hop` says through which neighbour a node is reached (the node itself for a
/// neighbour), `None` when it is unreachable; it is only asked about destinations other than
/// `local`, and not at all for a packet this node just delivers.
pub fn decide(
    local: &NodeId,
    packet_type: PacketType,
    ext: Ext,
    opts: &Options,
    mut next_hop: impl FnMut(&NodeId) -> Option<NodeId>,
) -> Decision {
    if ext.is_direct() {
        return Decision {
            deliver: true,
            onward: Onward::Nowhere,
        };
    }
    let dsts = opts.dsts.as_slice();
    if packet_type == PacketType::UNICAST && dsts.len() != 1 {
        return Decision::drop(DropReason::UnicastDestinations(dsts.len()));
    }
    if opts.src == *local {
        return Decision::drop(DropReason::OwnPacket);
    }
    let deliver = dsts.is_empty() || dsts.contains(local);
    let onward = match dsts {
        [] => Onward::Nowhere,
        [only] if only == local => Onward::Nowhere,
        others => match ext.ttl().checked_sub(1) {
            None => Onward::Dropped(DropReason::TtlExhausted),
            Some(ttl) => match others {
                [only] => match next_hop(only) {
                    Some(hop) if hop != *local => Onward::Relay { next_hop: hop, ttl },
                    _ => Onward::Dropped(DropReason::NoRoute),
                },
                many => Onward::Split {
                    plan: plan(many, local, next_hop),
                    ttl,
                },
            },
        },
    };
    Decision { deliver, onward }
}

/// The link a packet for `dst` leaves by: the direct link when there is one, else the link
/// to the route's next hop. `link` finds a neighbour's live link, `next_hop` the route's
/// next hop; `None`: `dst` is unreachable (no route, or its next hop's link just went).
pub fn link_for<L>(
    dst: &NodeId,
    mut link: impl FnMut(&NodeId) -> Option<L>,
    next_hop: impl FnOnce(&NodeId) -> Option<NodeId>,
) -> Option<L> {
    link(dst).or_else(|| link(&next_hop(dst)?))
}

#[cfg(test)]
mod tests {
    use bytestring::ByteString;

    use super::*;

    fn id(b: u8) -> NodeId {
        NodeId::from_bytes([b; 64])
    }

    /// Seen from node 1: 2 and 3 are neighbours, 4 is behind 3, 9 is unreachable.
    fn hop_from_1(t: &NodeId) -> Option<NodeId> {
        match t.as_bytes()[0] {
            2 | 3 => Some(*t),
            4 => Some(id(3)),
            _ => None,
        }
    }

    fn opts(src: u8, dsts: &[u8]) -> Options {
        Options {
            group: ByteString::from_static("group0"),
            src: id(src),
            dsts: dsts.iter().map(|d| id(*d)).collect(),
            module: 7,
            tags: bytes::Bytes::new(),
        }
    }

    const DELIVER: Decision = Decision {
        deliver: true,
        onward: Onward::Nowhere,
    };

    /// What the case is, the packet's type, Ext, source and destinations, and the decision.
    type Case = (&'static str, PacketType, Ext, u8, Vec<u8>, Decision);

    fn relay(hop: u8, ttl: u8) -> Onward {
        Onward::Relay {
            next_hop: id(hop),
            ttl,
        }
    }

    #[test]
    fn classifies_every_kind_of_addressed_packet() {
        let ttl = Ext::default().with_ttl(5);
        let no_ttl = Ext::default().with_ttl(0);
        let uni = PacketType::UNICAST;
        let bc = PacketType::BROADCAST;
        let both = |onward| Decision {
            deliver: true,
            onward,
        };
        let onward_only = |onward| Decision {
            deliver: false,
            onward,
        };
        // (what, type, ext, src, dsts, expected)
        let cases: Vec<Case> = vec![
            ("unicast for us", uni, ttl, 2, vec![1], DELIVER),
            (
                "unicast to relay",
                uni,
                ttl,
                2,
                vec![4],
                onward_only(relay(3, 4)),
            ),
            (
                "unicast to a neighbour",
                uni,
                ttl,
                4,
                vec![2],
                onward_only(relay(2, 4)),
            ),
            (
                "unicast with no route",
                uni,
                ttl,
                2,
                vec![9],
                Decision::drop(DropReason::NoRoute),
            ),
            (
                "unicast out of hops",
                uni,
                no_ttl,
                2,
                vec![4],
                Decision::drop(DropReason::TtlExhausted),
            ),
            (
                "unicast for us with no hops left",
                uni,
                no_ttl,
                2,
                vec![1],
                DELIVER,
            ),
            (
                "unicast with no destination",
                uni,
                ttl,
                2,
                vec![],
                Decision::drop(DropReason::UnicastDestinations(0)),
            ),
            (
                "unicast with two destinations",
                uni,
                ttl,
                2,
                vec![1, 4],
                Decision::drop(DropReason::UnicastDestinations(2)),
            ),
            (
                "our own unicast",
                uni,
                ttl,
                1,
                vec![4],
                Decision::drop(DropReason::OwnPacket),
            ),
            (
                "our own broadcast",
                bc,
                ttl,
                1,
                vec![],
                Decision::drop(DropReason::OwnPacket),
            ),
            ("broadcast copy for us alone", bc, ttl, 2, vec![], DELIVER),
            ("broadcast listing only us", bc, ttl, 2, vec![1], DELIVER),
            (
                "broadcast for us and others",
                bc,
                ttl,
                2,
                vec![1, 3, 4],
                both(Onward::Split {
                    plan: FanoutPlan {
                        leaves: vec![],
                        relays: vec![(id(3), vec![id(3), id(4)])],
                        unreachable: vec![],
                    },
                    ttl: 4,
                }),
            ),
            (
                "broadcast for others, one unreachable",
                bc,
                ttl,
                2,
                vec![3, 9],
                onward_only(Onward::Split {
                    plan: FanoutPlan {
                        leaves: vec![id(3)],
                        relays: vec![],
                        unreachable: vec![id(9)],
                    },
                    ttl: 4,
                }),
            ),
            (
                "broadcast for us and others, out of hops",
                bc,
                no_ttl,
                2,
                vec![1, 3],
                both(Onward::Dropped(DropReason::TtlExhausted)),
            ),
            (
                "broadcast relayed to one other",
                bc,
                ttl,
                2,
                vec![4],
                onward_only(relay(3, 4)),
            ),
            (
                "direct form, even if it names destinations",
                uni,
                ttl | Ext::DIRECT,
                2,
                vec![],
                DELIVER,
            ),
        ];
        for (what, t, ext, src, dsts, want) in cases {
            let got = decide(&id(1), t, ext, &opts(src, &dsts), hop_from_1);
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn next_hops_are_only_asked_about_other_nodes() {
        let mut asked = Vec::new();
        let ext = Ext::default().with_ttl(3);
        let d = decide(
            &id(1),
            PacketType::UNICAST,
            ext,
            &opts(2, &[1]),
            |t: &NodeId| {
                asked.push(*t);
                None
            },
        );
        assert_eq!(d, DELIVER);
        assert!(asked.is_empty());
        // A route that would hand the packet back to this node is no route.
        let d = decide(&id(1), PacketType::UNICAST, ext, &opts(2, &[4]), |_| {
            Some(id(1))
        });
        assert_eq!(d, Decision::drop(DropReason::NoRoute));
    }

    #[test]
    fn the_direct_link_comes_before_the_route() {
        // Links (to neighbours 2 and 3, named by their peer) and routes seen from node 1.
        let link = |n: &NodeId| [2, 3].contains(&n.as_bytes()[0]).then_some(n.as_bytes()[0]);
        let route = |n: &NodeId| match n.as_bytes()[0] {
            // A stale route to a neighbour: its own link still wins.
            2 => Some(id(3)),
            4 => Some(id(3)),
            // A next hop whose link is gone.
            5 => Some(id(6)),
            _ => None,
        };
        // (destination, the link's peer expected)
        let cases = [
            (2, Some(2)),
            (3, Some(3)),
            (4, Some(3)),
            (5, None),
            (9, None),
        ];
        for (dst, want) in cases {
            assert_eq!(link_for(&id(dst), link, route), want, "to {dst}");
        }
    }

    #[test]
    fn only_a_malformed_packet_closes_the_link() {
        assert!(DropReason::UnicastDestinations(2).is_malformed());
        for r in [
            DropReason::OwnPacket,
            DropReason::TtlExhausted,
            DropReason::NoRoute,
        ] {
            assert!(!r.is_malformed(), "{r}");
        }
    }
}
