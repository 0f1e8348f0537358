//! Next hops that silently drop what they should relay, as pure logic: the node reports how
//! its requests to a destination ended, and a next hop that fails [`FAILURES_TO_EXCLUDE`]
//! times in a row for that destination is excluded for it for [`HOLD_DOWN`]. Times are
//! passed in, so the rules are tested on explicit instants.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::identity::NodeId;

/// Consecutive failures through one next hop, with no success between, that exclude it.
pub const FAILURES_TO_EXCLUDE: u32 = 3;

/// How long an excluded next hop stays excluded for its destination.
pub const HOLD_DOWN: Duration = Duration::from_secs(60);

/// (destination, next hop) pairs tracked at once. Reports come from this node's own
/// requests, but an application may ask many nodes; beyond this, new pairs are not tracked.
pub const MAX_TRACKED: usize = 1024;

/// Failure streaks and exclusions by (destination, next hop).
#[derive(Debug, Default, Clone)]
pub struct Failures {
    streaks: HashMap<(NodeId, NodeId), u32>,
    excluded: HashMap<(NodeId, NodeId), Instant>,
}

impl Failures {
    /// Records that something sent to `dst` through `via` got no answer. Returns whether
    /// this excluded `via` for `dst` just now.
    pub fn report_failure(&mut self, dst: NodeId, via: NodeId, now: Instant) -> bool {
        if dst == via || self.excluded.contains_key(&(dst, via)) {
            // A direct link has no relay to blame.
            return false;
        }
        if !self.streaks.contains_key(&(dst, via))
            && self.streaks.len().saturating_add(self.excluded.len()) >= MAX_TRACKED
        {
            return false;
        }
        let streak = self.streaks.entry((dst, via)).or_insert(0);
        *streak = streak.saturating_add(1);
        if *streak < FAILURES_TO_EXCLUDE {
            return false;
        }
        self.streaks.remove(&(dst, via));
        self.excluded.insert((dst, via), now + HOLD_DOWN);
        true
    }

    /// Records an answer from `dst` through `via`: its streak ends, and so does its
    /// exclusion. Returns whether an exclusion ended.
    pub fn report_success(&mut self, dst: NodeId, via: NodeId) -> bool {
        self.streaks.remove(&(dst, via));
        self.excluded.remove(&(dst, via)).is_some()
    }

    /// Ends the exclusions whose hold-down is over at `now`. Returns whether any ended.
    pub fn expire(&mut self, now: Instant) -> bool {
        let before = self.excluded.len();
        self.excluded.retain(|_, until| *until > now);
        self.excluded.len() != before
    }

    /// (destination, next hop) pairs with a failure streak or an exclusion.
    pub fn tracked(&self) -> usize {
        self.streaks.len() + self.excluded.len()
    }

    /// Destinations with excluded next hops, and those next hops.
    pub fn exclusions(&self) -> HashMap<NodeId, HashSet<NodeId>> {
        let mut out: HashMap<NodeId, HashSet<NodeId>> = HashMap::new();
        for (dst, via) in self.excluded.keys() {
            out.entry(*dst).or_default().insert(*via);
        }
        out
    }

    /// Forgets everything about next hop `via`: its link went down, so a new link starts
    /// with a clean record.
    pub fn forget_hop(&mut self, via: &NodeId) {
        self.streaks.retain(|(_, v), _| v != via);
        self.excluded.retain(|(_, v), _| v != via);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::id;

    #[test]
    fn consecutive_failures_exclude_a_hop_until_the_hold_down_ends() {
        let mut f = Failures::default();
        let t0 = Instant::now();
        assert!(!f.report_failure(id(9), id(2), t0));
        assert!(!f.report_failure(id(9), id(2), t0));
        assert!(f.report_failure(id(9), id(2), t0));
        assert!(f.exclusions()[&id(9)].contains(&id(2)));
        assert!(!f.expire(t0 + HOLD_DOWN - Duration::from_millis(1)));
        assert!(f.expire(t0 + HOLD_DOWN));
        assert!(f.exclusions().is_empty());
    }

    #[test]
    fn a_success_resets_the_streak_and_lifts_an_exclusion() {
        let mut f = Failures::default();
        let t0 = Instant::now();
        f.report_failure(id(9), id(2), t0);
        f.report_failure(id(9), id(2), t0);
        assert!(!f.report_success(id(9), id(2)));
        assert!(!f.report_failure(id(9), id(2), t0));
        f.report_failure(id(9), id(2), t0);
        assert!(f.report_failure(id(9), id(2), t0));
        assert!(f.report_success(id(9), id(2)));
        assert!(f.exclusions().is_empty());
    }

    #[test]
    fn a_direct_neighbour_is_never_excluded_and_tracking_is_bounded() {
        let mut f = Failures::default();
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(!f.report_failure(id(2), id(2), t0));
        }
        for i in 0..(MAX_TRACKED + 10) {
            let mut b = [0u8; 64];
            b[..8].copy_from_slice(&(i as u64).to_be_bytes());
            f.report_failure(NodeId::from_bytes(b), id(2), t0);
        }
        assert!(f.tracked() <= MAX_TRACKED);
        f.forget_hop(&id(2));
        assert!(f.streaks.is_empty());
    }
}
