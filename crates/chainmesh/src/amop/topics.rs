//! Which local SDK session subscribes to which topic. Pure: the sessions are numbers.

use std::collections::{BTreeSet, HashMap};

/// The local topic table: each session's set, and each topic's sessions.
#[derive(Debug, Default)]
pub(crate) struct TopicTable {
    by_session: HashMap<u64, BTreeSet<String>>,
    by_topic: HashMap<String, BTreeSet<u64>>,
}

impl TopicTable {
    /// Replaces `session`'s topics with `topics` (0x32 replaces, it does not merge). Returns
    /// whether the set of topics held by any session changed.
    pub(crate) fn replace(&mut self, session: u64, topics: BTreeSet<String>) -> bool {
        let old = self.by_session.remove(&session).unwrap_or_default();
        let mut changed = false;
        for topic in old.difference(&topics) {
            if let Some(subs) = self.by_topic.get_mut(topic) {
                subs.remove(&session);
                if subs.is_empty() {
                    self.by_topic.remove(topic);
                    changed = true;
                }
            }
        }
        for topic in topics.difference(&old) {
            let subs = self.by_topic.entry(topic.clone()).or_default();
            changed |= subs.is_empty();
            subs.insert(session);
        }
        if !topics.is_empty() {
            self.by_session.insert(session, topics);
        }
        changed
    }

    /// Drops `session`'s topics. Returns whether the set of held topics changed.
    pub(crate) fn remove(&mut self, session: u64) -> bool {
        self.replace(session, BTreeSet::new())
    }

    /// The sessions subscribed to `topic`, in ascending order.
    pub(crate) fn subscribers(&self, topic: &str) -> Vec<u64> {
        self.by_topic
            .get(topic)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Whether any session subscribes to `topic`.
    pub(crate) fn holds(&self, topic: &str) -> bool {
        self.by_topic.contains_key(topic)
    }

    /// `session`'s topics, sorted.
    pub(crate) fn topics_of(&self, session: u64) -> Vec<String> {
        self.by_session
            .get(&session)
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Every topic some session subscribes to, sorted.
    pub(crate) fn topics(&self) -> Vec<String> {
        let mut all: Vec<String> = self.by_topic.keys().cloned().collect();
        all.sort();
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(topics: &[&str]) -> BTreeSet<String> {
        topics.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn a_subscribe_replaces_the_sessions_set() {
        let mut t = TopicTable::default();
        assert!(t.replace(1, set(&["t1"])));
        assert!(t.replace(1, set(&["t2"])));
        assert!(t.subscribers("t1").is_empty());
        assert_eq!(t.subscribers("t2"), vec![1]);
        assert_eq!(t.topics_of(1), vec!["t2"]);
    }

    #[test]
    fn the_held_set_changes_only_when_a_topic_appears_or_vanishes() {
        let mut t = TopicTable::default();
        assert!(t.replace(1, set(&["a", "b"])));
        assert!(!t.replace(2, set(&["a"])), "a is held already");
        assert!(!t.replace(1, set(&["a", "b"])), "the same set again");
        assert!(!t.remove(2), "a is still held by 1");
        assert!(t.replace(1, set(&["b"])), "a vanished");
        assert_eq!(t.topics(), vec!["b"]);
    }

    #[test]
    fn a_removed_session_leaves_every_topic() {
        let mut t = TopicTable::default();
        t.replace(1, set(&["a", "b"]));
        t.replace(2, set(&["b"]));
        assert!(t.remove(1));
        assert!(!t.holds("a"));
        assert_eq!(t.subscribers("b"), vec![2]);
        assert!(t.topics_of(1).is_empty());
        assert!(!t.remove(1), "twice is nothing");
    }
}
