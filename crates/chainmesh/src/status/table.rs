//! Other nodes' statuses and the rules for merging what arrives. Pure: no I/O, and the time
//! is passed in.

use std::collections::HashMap;
use std::time::Instant;

use super::{NodeStatus, StatusVersion};
use crate::identity::NodeId;

/// Another node's status as this node holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// The node.
    pub node: NodeId,
    /// The version of `status`.
    pub version: StatusVersion,
    /// The status.
    pub status: NodeStatus,
    /// When this copy arrived.
    pub received_at: Instant,
}

/// A node announced a version this table does not hold: ask it for its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryNeeded {
    /// The node to ask.
    pub node: NodeId,
    /// The newest version it announced.
    pub want: StatusVersion,
    /// The announcement came from a new epoch (the node restarted, or this is the first
    /// announcement heard from it).
    pub new_epoch: bool,
}

/// What [`StatusTable::apply_response`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyResult {
    /// The status replaced the held copy (or became the first one).
    Applied {
        /// The version replaced, `None` if there was no copy.
        previous: Option<StatusVersion>,
    },
    /// The status is not newer than the held copy, which stays.
    Stale {
        /// The version kept.
        held: StatusVersion,
    },
}

#[derive(Debug, Clone, Default)]
struct Entry {
    /// The newest version the node announced: within the announced epoch the highest seq.
    announced: Option<StatusVersion>,
    copy: Option<PeerStatus>,
}

impl Entry {
    fn wants(&self) -> Option<StatusVersion> {
        let want = self.announced?;
        match &self.copy {
            Some(c) if c.version.epoch == want.epoch && c.version.seq >= want.seq => None,
            _ => Some(want),
        }
    }
}

/// Other nodes' statuses, with the merge rules of status synchronization.
///
/// **Within one epoch** versions are ordered by seq: a copy is replaced only by a higher seq,
/// so duplicated and reordered answers can never roll it back.
///
/// **Across epochs** there is no order (epochs are random), and a different epoch means the
/// node restarted (or wrapped its seq). An answer from another epoch replaces the copy
/// whatever its seq. That is safe only for answers known to be fresh, so the caller must
/// pass only an answer to its *latest* query to that node (the [`StatusService`] matches the
/// query ID): such an answer was produced after the query was sent, hence after anything the
/// table learnt before, and a delayed answer from a dead incarnation cannot match.
///
/// [`StatusService`]: super::StatusService
#[derive(Debug, Clone, Default)]
pub struct StatusTable {
    entries: HashMap<NodeId, Entry>,
    /// [`NodeStatus::held_bytes`] of every copy, summed.
    held: usize,
}

impl StatusTable {
    /// An empty table.
    pub fn new() -> StatusTable {
        StatusTable::default()
    }

    /// Records that `node` announced `version`, and says whether to query it.
    ///
    /// A query is needed when the table holds no copy, a copy of another epoch, or a lower
    /// seq. Announcements are remembered (the highest seq per epoch; a new epoch replaces the
    /// old) so that [`StatusTable::needs_query`] can tell, after an answer, whether a newer
    /// version is still to be fetched.
    pub fn observe_seq(&mut self, node: NodeId, version: StatusVersion) -> Option<QueryNeeded> {
        let entry = self.entries.entry(node).or_default();
        let new_epoch = match entry.announced {
            Some(a) if a.epoch == version.epoch => {
                if version.seq > a.seq {
                    entry.announced = Some(version);
                }
                false
            }
            _ => {
                entry.announced = Some(version);
                true
            }
        };
        entry.wants().map(|want| QueryNeeded {
            node,
            want,
            new_epoch,
        })
    }

    /// Merges `node`'s answer `status` at `version`, received at `now`.
    ///
    /// Same epoch as the copy: applied only if `version.seq` is higher. Another epoch, or no
    /// copy: applied (see the type's documentation for why the caller must only pass fresh
    /// answers). An answer also counts as an announcement of its version; one from another
    /// epoch than announced replaces the announcement, because it is fresher than any
    /// announcement heard before the query went out.
    pub fn apply_response(
        &mut self,
        node: NodeId,
        version: StatusVersion,
        status: NodeStatus,
        now: Instant,
    ) -> ApplyResult {
        let entry = self.entries.entry(node).or_default();
        entry.announced = match entry.announced {
            Some(a) if a.epoch == version.epoch && a.seq >= version.seq => Some(a),
            _ => Some(version),
        };
        let previous = entry.copy.as_ref().map(|c| c.version);
        if let Some(held) = previous {
            if held.epoch == version.epoch && held.seq >= version.seq {
                return ApplyResult::Stale { held };
            }
        }
        let added = status.held_bytes();
        let old = entry
            .copy
            .replace(PeerStatus {
                node,
                version,
                status,
                received_at: now,
            })
            .map_or(0, |c| c.status.held_bytes());
        self.held = self.held.saturating_sub(old).saturating_add(added);
        ApplyResult::Applied { previous }
    }

    /// Whether a version `node` announced is still to be fetched.
    pub fn needs_query(&self, node: &NodeId) -> Option<QueryNeeded> {
        let entry = self.entries.get(node)?;
        entry.wants().map(|want| QueryNeeded {
            node: *node,
            want,
            new_epoch: entry.copy.as_ref().map(|c| c.version.epoch) != Some(want.epoch),
        })
    }

    /// Forgets `node`; returns its copy if there was one.
    pub fn remove(&mut self, node: &NodeId) -> Option<PeerStatus> {
        let copy = self.entries.remove(node).and_then(|e| e.copy)?;
        self.held = self.held.saturating_sub(copy.status.held_bytes());
        Some(copy)
    }

    /// Memory the held copies take, as [`NodeStatus::held_bytes`] counts it.
    pub fn held_bytes(&self) -> usize {
        self.held
    }

    /// `node`'s status, if held.
    pub fn get(&self, node: &NodeId) -> Option<&PeerStatus> {
        self.entries.get(node)?.copy.as_ref()
    }

    /// The version of `node`'s status held, if any.
    pub fn held(&self, node: &NodeId) -> Option<StatusVersion> {
        self.get(node).map(|c| c.version)
    }

    /// Whether the table knows `node` at all (a copy or an announcement).
    pub fn contains(&self, node: &NodeId) -> bool {
        self.entries.contains_key(node)
    }

    /// Nodes the table knows (with a copy or only an announcement).
    pub fn nodes(&self) -> impl Iterator<Item = &NodeId> {
        self.entries.keys()
    }

    /// Number of nodes known.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no node is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every held status, by node ID.
    pub fn all(&self) -> Vec<&PeerStatus> {
        let mut v: Vec<&PeerStatus> = self
            .entries
            .values()
            .filter_map(|e| e.copy.as_ref())
            .collect();
        v.sort_unstable_by_key(|c| c.node);
        v
    }

    fn select(&self, pred: impl Fn(&NodeStatus) -> bool) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self
            .entries
            .values()
            .filter_map(|e| e.copy.as_ref())
            .filter(|c| pred(&c.status))
            .map(|c| c.node)
            .collect();
        v.sort_unstable();
        v
    }

    /// Nodes whose status lists `group`, by node ID.
    pub fn group_members(&self, group: &str) -> Vec<NodeId> {
        self.select(|s| s.in_group(group))
    }

    /// Nodes whose status lists node-level `topic`, by node ID.
    pub fn topic_subscribers(&self, topic: &str) -> Vec<NodeId> {
        self.select(|s| s.has_topic(topic))
    }

    /// Nodes whose status lists AMOP `topic`, by node ID.
    pub fn amop_subscribers(&self, topic: &str) -> Vec<NodeId> {
        self.select(|s| s.has_amop_topic(topic))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::id;
    use bytes::Bytes;

    fn st(app: &str) -> NodeStatus {
        NodeStatus {
            app: Bytes::copy_from_slice(app.as_bytes()),
            ..NodeStatus::with_groups(["g"])
        }
    }

    fn v(epoch: u64, seq: u32) -> StatusVersion {
        StatusVersion::new(epoch, seq)
    }

    #[test]
    fn unknown_node_is_queried_and_first_answer_applies() {
        let mut t = StatusTable::new();
        let now = Instant::now();
        let q = t.observe_seq(id(1), v(5, 3)).unwrap();
        assert_eq!(q.want, v(5, 3));
        assert!(q.new_epoch);
        assert_eq!(
            t.apply_response(id(1), v(5, 3), st("a"), now),
            ApplyResult::Applied { previous: None }
        );
        assert_eq!(t.get(&id(1)).unwrap().status, st("a"));
        assert_eq!(t.get(&id(1)).unwrap().received_at, now);
        assert_eq!(t.needs_query(&id(1)), None);
        // The same announcement again needs nothing.
        assert_eq!(t.observe_seq(id(1), v(5, 3)), None);
        assert_eq!(t.observe_seq(id(1), v(5, 2)), None);
    }

    #[test]
    fn newer_seq_replaces_older_and_duplicates_are_stale() {
        let mut t = StatusTable::new();
        let now = Instant::now();
        t.apply_response(id(1), v(5, 3), st("a"), now);
        let q = t.observe_seq(id(1), v(5, 4)).unwrap();
        assert!(!q.new_epoch);
        assert_eq!(
            t.apply_response(id(1), v(5, 4), st("b"), now),
            ApplyResult::Applied {
                previous: Some(v(5, 3))
            }
        );
        assert_eq!(
            t.apply_response(id(1), v(5, 4), st("b"), now),
            ApplyResult::Stale { held: v(5, 4) }
        );
        assert_eq!(t.get(&id(1)).unwrap().status, st("b"));
        // A replaced copy no longer counts.
        assert_eq!(t.held_bytes(), st("b").held_bytes());
    }

    #[test]
    fn reordered_answers_never_roll_back() {
        let mut t = StatusTable::new();
        let now = Instant::now();
        t.observe_seq(id(1), v(5, 7));
        assert!(matches!(
            t.apply_response(id(1), v(5, 7), st("seven"), now),
            ApplyResult::Applied { .. }
        ));
        for old in [6, 2, 7] {
            assert_eq!(
                t.apply_response(id(1), v(5, old), st("old"), now),
                ApplyResult::Stale { held: v(5, 7) }
            );
        }
        assert_eq!(t.get(&id(1)).unwrap().status, st("seven"));
        assert_eq!(t.needs_query(&id(1)), None);
    }

    #[test]
    fn an_answer_older_than_announced_leaves_a_query_pending() {
        let mut t = StatusTable::new();
        let now = Instant::now();
        t.observe_seq(id(1), v(5, 9));
        t.apply_response(id(1), v(5, 8), st("eight"), now);
        assert_eq!(t.needs_query(&id(1)).unwrap().want, v(5, 9));
        t.apply_response(id(1), v(5, 9), st("nine"), now);
        assert_eq!(t.needs_query(&id(1)), None);
    }

    #[test]
    fn restart_with_new_epoch_replaces_even_with_lower_seq() {
        let mut t = StatusTable::new();
        let now = Instant::now();
        t.apply_response(id(1), v(5, 40), st("old life"), now);
        let q = t.observe_seq(id(1), v(9, 1)).unwrap();
        assert!(q.new_epoch);
        assert_eq!(q.want, v(9, 1));
        // Until the answer comes the old copy is what there is.
        assert_eq!(t.held(&id(1)), Some(v(5, 40)));
        assert_eq!(
            t.apply_response(id(1), v(9, 1), st("new life"), now),
            ApplyResult::Applied {
                previous: Some(v(5, 40))
            }
        );
        assert_eq!(t.get(&id(1)).unwrap().status, st("new life"));
        // Old-epoch announcements arriving late still ask (the answer, from the live node,
        // will be a duplicate), but never change the copy by themselves.
        assert!(t.observe_seq(id(1), v(5, 41)).is_some());
        assert_eq!(t.get(&id(1)).unwrap().version, v(9, 1));
        assert_eq!(
            t.apply_response(id(1), v(9, 1), st("new life"), now),
            ApplyResult::Stale { held: v(9, 1) }
        );
        // The fresh answer settled the announcement back on the live epoch.
        assert_eq!(t.needs_query(&id(1)), None);
    }

    #[test]
    fn removal_forgets_everything() {
        let mut t = StatusTable::new();
        let now = Instant::now();
        t.apply_response(id(1), v(5, 1), st("a"), now);
        t.observe_seq(id(2), v(6, 1));
        assert_eq!(t.len(), 2);
        assert_eq!(t.held_bytes(), st("a").held_bytes());
        assert_eq!(t.remove(&id(1)).unwrap().version, v(5, 1));
        assert_eq!(t.held_bytes(), 0);
        // A node that only announced has no copy to return but is forgotten too.
        assert_eq!(t.remove(&id(2)), None);
        assert!(t.is_empty());
        assert!(t.get(&id(1)).is_none());
        // After removal the node is unknown again: its next announcement asks.
        assert!(t.observe_seq(id(1), v(5, 1)).is_some());
    }

    #[test]
    fn lookups_select_by_group_and_topic() {
        let mut t = StatusTable::new();
        let now = Instant::now();
        let mut a = NodeStatus::with_groups(["g1", "g2"]);
        a.topics = vec!["blocks".into()];
        let mut b = NodeStatus::with_groups(["g2"]);
        b.amop_topics = vec!["sdk".into()];
        t.apply_response(id(2), v(1, 1), b, now);
        t.apply_response(id(1), v(1, 1), a, now);
        t.observe_seq(id(3), v(1, 1)); // announced only: in no lookup
        assert_eq!(t.group_members("g2"), vec![id(1), id(2)]);
        assert_eq!(t.group_members("g1"), vec![id(1)]);
        assert_eq!(t.group_members("nope"), Vec::<NodeId>::new());
        assert_eq!(t.topic_subscribers("blocks"), vec![id(1)]);
        assert_eq!(t.amop_subscribers("sdk"), vec![id(2)]);
        let all: Vec<NodeId> = t.all().iter().map(|p| p.node).collect();
        assert_eq!(all, vec![id(1), id(2)]);
    }
}
