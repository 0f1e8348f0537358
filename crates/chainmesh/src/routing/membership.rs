//! Who is in a group and who subscribes to a topic: the seam between routing, which picks
//! the targets of a broadcast or multicast, and status synchronization, which knows every
//! node's groups and topics.
//!
//! The node asks a [`Membership`] for targets. Until the status module provides one that
//! knows the whole network, the node uses [`LocalMembership`], which knows only the node
//! itself. [`StaticMembership`] is a table set by hand, for tests and for deployments whose
//! membership is fixed.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::identity::NodeId;

/// Answers which nodes a broadcast or multicast is for.
pub trait Membership: Send + Sync + 'static {
    /// Every node of `group`, this node included if it is a member.
    fn group_members(&self, group: &str) -> Vec<NodeId>;
    /// Every node subscribed to `topic`, this node included if it is.
    fn topic_subscribers(&self, topic: &str) -> Vec<NodeId>;
}

/// This node's own groups and topics, shared between the node and its [`LocalMembership`].
#[derive(Debug, Default)]
pub struct LocalInterests {
    groups: RwLock<BTreeSet<String>>,
    topics: RwLock<BTreeSet<String>>,
}

impl LocalInterests {
    /// Interests starting with `groups` and no topics.
    pub fn new(groups: impl IntoIterator<Item = String>) -> Self {
        LocalInterests {
            groups: RwLock::new(groups.into_iter().collect()),
            topics: RwLock::new(BTreeSet::new()),
        }
    }

    /// Whether this node is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.read().contains(group)
    }

    /// Whether this node subscribes to `topic`.
    pub fn subscribed(&self, topic: &str) -> bool {
        self.topics.read().contains(topic)
    }

    /// Adds a topic; returns false if it was already there.
    pub fn subscribe(&self, topic: &str) -> bool {
        self.topics.write().insert(topic.to_owned())
    }

    /// Removes a topic; returns false if it was not there.
    pub fn unsubscribe(&self, topic: &str) -> bool {
        self.topics.write().remove(topic)
    }

    /// This node's topics, sorted.
    pub fn topics(&self) -> Vec<String> {
        self.topics.read().iter().cloned().collect()
    }

    /// This node's groups, sorted.
    pub fn groups(&self) -> Vec<String> {
        self.groups.read().iter().cloned().collect()
    }
}

/// Membership known from this node alone: it lists this node where it belongs and nobody
/// else. A broadcast or multicast through it reaches no other node.
#[derive(Debug, Clone)]
pub struct LocalMembership {
    id: NodeId,
    local: Arc<LocalInterests>,
}

impl LocalMembership {
    /// Membership of node `id` with interests `local`.
    pub fn new(id: NodeId, local: Arc<LocalInterests>) -> Self {
        LocalMembership { id, local }
    }
}

impl Membership for LocalMembership {
    fn group_members(&self, group: &str) -> Vec<NodeId> {
        if self.local.in_group(group) {
            vec![self.id]
        } else {
            Vec::new()
        }
    }

    fn topic_subscribers(&self, topic: &str) -> Vec<NodeId> {
        if self.local.subscribed(topic) {
            vec![self.id]
        } else {
            Vec::new()
        }
    }
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
    fn local_membership_knows_only_itself() {
        let local = Arc::new(LocalInterests::new(["group0".to_owned()]));
        let m = LocalMembership::new(id(1), local.clone());
        assert_eq!(m.group_members("group0"), vec![id(1)]);
        assert!(m.group_members("other").is_empty());
        assert!(m.topic_subscribers("t").is_empty());
        assert!(local.subscribe("t"));
        assert!(!local.subscribe("t"));
        assert_eq!(m.topic_subscribers("t"), vec![id(1)]);
        assert!(local.unsubscribe("t"));
        assert!(m.topic_subscribers("t").is_empty());
    }

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
