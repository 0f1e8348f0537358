//! Splitting the targets of a broadcast or multicast by next hop, as pure logic.
//!
//! The sender (and every relay after it) groups the targets by the neighbour each is reached
//! through. A neighbour that is the only target of its group gets the packet with an empty
//! destination list, meaning "for you, do not forward"; all such neighbours get the very
//! same bytes, encoded once. A neighbour that relays for other targets gets a packet whose
//! destination list names its group, and splits it further by its own next hops.

use crate::identity::NodeId;

/// Where the copies of one broadcast or multicast go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FanoutPlan {
    /// Neighbours that are targets and relay for nobody: they all get the shared packet with
    /// an empty destination list.
    pub leaves: Vec<NodeId>,
    /// Neighbours that relay, each with the targets (itself possibly among them) to list in
    /// its copy's destinations.
    pub relays: Vec<(NodeId, Vec<NodeId>)>,
    /// Targets with no route.
    pub unreachable: Vec<NodeId>,
}

impl FanoutPlan {
    /// Targets that have a next hop.
    pub fn reachable(&self) -> usize {
        self.leaves.len() + self.relays.iter().map(|(_, t)| t.len()).sum::<usize>()
    }
}

/// Groups `targets` by next hop. `local` is left out (a node never sends to itself) and so
/// are repeated targets. `next_hop` says through which neighbour a target is reached (the
/// target itself for a neighbour), or `None` when it is unreachable.
pub fn plan(
    targets: &[NodeId],
    local: &NodeId,
    mut next_hop: impl FnMut(&NodeId) -> Option<NodeId>,
) -> FanoutPlan {
    let mut out = FanoutPlan::default();
    // (next hop, target), sorted so each hop's targets are adjacent and a repeated target
    // sits next to itself: one allocation for the whole plan, where a map of lists would
    // take one per neighbour. Runs on every broadcast.
    let mut routed: Vec<(NodeId, NodeId)> = Vec::with_capacity(targets.len());
    for t in targets.iter().filter(|t| *t != local) {
        match next_hop(t) {
            Some(hop) if hop != *local => routed.push((hop, *t)),
            _ => out.unreachable.push(*t),
        }
    }
    out.unreachable.sort_unstable();
    out.unreachable.dedup();
    routed.sort_unstable();
    routed.dedup();
    for run in routed.chunk_by(|a, b| a.0 == b.0) {
        let Some(&(hop, first)) = run.first() else {
            continue;
        };
        if run.len() == 1 && hop == first {
            out.leaves.push(hop);
        } else {
            out.relays.push((hop, run.iter().map(|r| r.1).collect()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::membership::{Membership, StaticMembership};
    use crate::test_support::id;

    /// Star around 1 with a tail: 1-2, 1-3, 1-4, 4-5, 5-6.
    fn hop_from_1(t: &NodeId) -> Option<NodeId> {
        match t.as_bytes()[0] {
            2..=4 => Some(*t),
            5 | 6 => Some(id(4)),
            _ => None,
        }
    }

    #[test]
    fn neighbours_alone_share_one_packet_and_relays_get_lists() {
        let m = StaticMembership::new();
        m.set_group("g", [1, 2, 3, 4, 5, 6, 9].map(id));
        let p = plan(&m.group_members("g"), &id(1), hop_from_1);
        assert_eq!(p.leaves, vec![id(2), id(3)]);
        assert_eq!(p.relays, vec![(id(4), vec![id(4), id(5), id(6)])]);
        assert_eq!(p.unreachable, vec![id(9)]);
        assert_eq!(p.reachable(), 5);
    }

    #[test]
    fn a_relay_that_is_not_a_target_lists_only_the_others() {
        let m = StaticMembership::new();
        m.set_topic("t", [5, 6].map(id));
        let p = plan(&m.topic_subscribers("t"), &id(1), hop_from_1);
        assert!(p.leaves.is_empty());
        assert_eq!(p.relays, vec![(id(4), vec![id(5), id(6)])]);
    }

    #[test]
    fn self_and_repeats_are_left_out() {
        let p = plan(&[id(1), id(2), id(2), id(1)], &id(1), hop_from_1);
        assert_eq!(p.leaves, vec![id(2)]);
        assert!(p.relays.is_empty() && p.unreachable.is_empty());
        // A route that would lead back to ourselves is no route.
        let p = plan(&[id(7)], &id(1), |_| Some(id(1)));
        assert_eq!(p.unreachable, vec![id(7)]);
    }
}
