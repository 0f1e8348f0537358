//! Who is in a group and who subscribes to a topic: the seam between routing, which picks
//! the targets of a broadcast or multicast, and status synchronization, which knows every
//! node's groups and topics.
//!
//! The node asks a [`Membership`] for targets; it starts with one that reads the
//! synchronized status table. [`StaticMembership`] is a table set by hand, for tests and for
//! deployments whose membership is fixed.

use std::collections::{BTreeSet, HashMap};

use parking_lot::RwLock;

use crate::identity::NodeId;

/// Answers which nodes a broadcast or multicast is for.
pub trait Membership: Send + Sync + 'static {
    /// Every node of `group`, this node included if it is a member.
    fn group_members(&self, group: &str) -> Vec<NodeId>;
    /// Every node subscribed to `topic`, this node included if it is.
    fn topic_subscribers(&self, topic: &str) -> Vec<NodeId>;
}

/// Membership set by hand: group and topic member lists that the owner replaces at will.
#[derive(Debug, Default)]
pub struct StaticMembership {
    groups: RwLock<HashMap<String, Vec<NodeId>>>,
    topics: RwLock<HashMap<String, Vec<NodeId>>>,
}

impl StaticMembership {
    /// An empty table: every group and topic has no members.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the members of `group`.
    pub fn set_group(&self, group: &str, members: impl IntoIterator<Item = NodeId>) {
        self.groups
            .write()
            .insert(group.to_owned(), sorted(members));
    }

    /// Sets the subscribers of `topic`.
    pub fn set_topic(&self, topic: &str, subscribers: impl IntoIterator<Item = NodeId>) {
        self.topics
            .write()
            .insert(topic.to_owned(), sorted(subscribers));
    }
}

fn sorted(ids: impl IntoIterator<Item = NodeId>) -> Vec<NodeId> {
    let set: BTreeSet<NodeId> = ids.into_iter().collect();
    set.into_iter().collect()
}

impl Membership for StaticMembership {
    fn group_members(&self, group: &str) -> Vec<NodeId> {
        self.groups.read().get(group).cloned().unwrap_or_default()
    }

    fn topic_subscribers(&self, topic: &str) -> Vec<NodeId> {
        self.topics.read().get(topic).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::id;

    #[test]
    fn static_membership_dedups_and_sorts() {
        let m = StaticMembership::new();
        m.set_group("g", [id(3), id(1), id(3)]);
        m.set_topic("t", [id(2)]);
        assert_eq!(m.group_members("g"), vec![id(1), id(3)]);
        assert_eq!(m.topic_subscribers("t"), vec![id(2)]);
        assert!(m.topic_subscribers("g").is_empty());
    }
}
