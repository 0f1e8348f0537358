//! The one-connection-per-pair rule, as a pure function over what the set holds.
//!
//! Both ends apply the same rule, so both keep the same TCP connection: of two connections
//! in opposite directions, keep the one dialed by the node with the smaller node ID
//! (byte-wise). Of two in the same direction, keep the older one: the peer (or we) simply
//! reached the same node at a second address. A connection already closed is replaced.

use crate::identity::NodeId;
use crate::session::Direction;

/// What the set holds for the peer a new connection reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Existing {
    /// No connection.
    None,
    /// A connection that has closed but is not unregistered yet.
    Closed,
    /// A live connection, dialed in this direction.
    Live(Direction),
}

/// What becomes of a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The peer had no live connection: the new one is its session, and it is connected.
    Register,
    /// The new connection wins over the live one, which is retired; the peer stays connected.
    Replace,
    /// The live connection wins; the new one is retired.
    KeepExisting,
}

/// The rule, seen from node `local` for a new connection to `peer` dialed in `new`.
pub(super) fn decide(local: &NodeId, peer: &NodeId, existing: Existing, new: Direction) -> Verdict {
    match existing {
        Existing::None | Existing::Closed => Verdict::Register,
        Existing::Live(old) if old == new => Verdict::KeepExisting,
        Existing::Live(_) => {
            let smaller_dials = if local < peer {
                Direction::Outbound
            } else {
                Direction::Inbound
            };
            if new == smaller_dials {
                Verdict::Replace
            } else {
                Verdict::KeepExisting
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Direction::{Inbound, Outbound};

    fn id(b: u8) -> NodeId {
        NodeId::from_bytes([b; 64])
    }

    #[test]
    fn a_first_connection_registers_either_way() {
        for dir in [Inbound, Outbound] {
            assert_eq!(
                decide(&id(1), &id(2), Existing::None, dir),
                Verdict::Register
            );
        }
    }

    #[test]
    fn a_closed_old_connection_is_replaced() {
        for dir in [Inbound, Outbound] {
            assert_eq!(
                decide(&id(2), &id(1), Existing::Closed, dir),
                Verdict::Register
            );
        }
    }

    #[test]
    fn same_direction_keeps_the_older() {
        for dir in [Inbound, Outbound] {
            for (a, b) in [(1, 2), (2, 1)] {
                assert_eq!(
                    decide(&id(a), &id(b), Existing::Live(dir), dir),
                    Verdict::KeepExisting
                );
            }
        }
    }

    #[test]
    fn opposite_directions_keep_the_one_the_smaller_id_dialed() {
        // We are the smaller: our dial wins, whichever came first.
        assert_eq!(
            decide(&id(1), &id(2), Existing::Live(Inbound), Outbound),
            Verdict::Replace
        );
        assert_eq!(
            decide(&id(1), &id(2), Existing::Live(Outbound), Inbound),
            Verdict::KeepExisting
        );
        // We are the larger: the peer's dial wins.
        assert_eq!(
            decide(&id(2), &id(1), Existing::Live(Outbound), Inbound),
            Verdict::Replace
        );
        assert_eq!(
            decide(&id(2), &id(1), Existing::Live(Inbound), Outbound),
            Verdict::KeepExisting
        );
    }

    #[test]
    fn both_ends_keep_the_same_connection_whatever_the_arrival_order() {
        // Connection "x" is dialed by `a`, "y" by `b`: each is outbound at its dialer and
        // inbound at the other end.
        let (a, b) = (id(3), id(9));
        let kept = |local: &NodeId,
                    peer: &NodeId,
                    first: (&'static str, Direction),
                    second: (&'static str, Direction)| {
            match decide(local, peer, Existing::Live(first.1), second.1) {
                Verdict::Replace => second.0,
                Verdict::KeepExisting => first.0,
                Verdict::Register => "neither",
            }
        };
        let (x_at_a, y_at_a) = (("x", Outbound), ("y", Inbound));
        let (x_at_b, y_at_b) = (("x", Inbound), ("y", Outbound));
        let outcomes = [
            kept(&a, &b, x_at_a, y_at_a),
            kept(&a, &b, y_at_a, x_at_a),
            kept(&b, &a, x_at_b, y_at_b),
            kept(&b, &a, y_at_b, x_at_b),
        ];
        assert_eq!(
            outcomes, ["x"; 4],
            "the smaller ID's dial is kept everywhere"
        );
    }
}
