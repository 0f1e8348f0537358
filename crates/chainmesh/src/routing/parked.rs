//! Neighbour lists that arrived before the list that anchors them, held for a moment
//! instead of dropped.
//!
//! A flood does not keep its order across paths: node C may get P's new list, naming B,
//! from one neighbour before B's list naming P arrives from another. The table refuses P's
//! list then ([`Rejection::Unanchored`](super::Rejection::Unanchored)): nothing C reaches
//! confirms P yet. Dropped, it would only come back with the next summary exchange, a whole
//! [`ANNOUNCE_INTERVAL`](super::ANNOUNCE_INTERVAL) later, and in a forming network every such
//! wait adds up. Held here, it is offered again as soon as another list is stored.
//!
//! Nothing here is trusted: a parked list's signature has not been checked (it is checked
//! only once the list would be stored), so a neighbour may park junk. Each neighbour has a
//! byte budget of its own, and a list leaves after the hold time or when its neighbour's
//! link goes, so junk costs only the room of the link that sent it. Pure: no I/O, no clock
//! of its own.

use std::time::{Duration, Instant};

use crate::identity::{NodeId, PeerMap};
use crate::wire::NeighbourList;

/// Lists waiting for an anchor, one per origin (the newest offered), each with the
/// neighbour that sent it.
#[derive(Debug)]
pub struct Parked {
    /// By origin: the list, the neighbour that sent it, and when it arrived.
    lists: PeerMap<Waiting>,
    /// Encoded bytes parked per sending neighbour.
    bytes: PeerMap<usize>,
    /// Bytes one neighbour may have parked.
    budget: usize,
    /// Bytes parked in all, and the most allowed.
    total: usize,
    total_budget: usize,
}

#[derive(Debug)]
struct Waiting {
    list: NeighbourList,
    from: NodeId,
    since: Instant,
}

impl Parked {
    /// Room for `budget` bytes of encoded lists per neighbour and `total_budget` in all.
    pub fn new(budget: usize, total_budget: usize) -> Parked {
        Parked {
            lists: PeerMap::default(),
            bytes: PeerMap::default(),
            budget,
            total: 0,
            total_budget,
        }
    }

    /// Holds `list`, sent by neighbour `from` at `since`, unless a list of the same origin
    /// at least as new is parked already, or `from` or all together have used their budget.
    /// Returns whether it
    /// was parked. A list offered again after [`Parked::take`] keeps its first `since`, so
    /// offering it again does not extend its hold.
    pub fn park(&mut self, from: NodeId, list: NeighbourList, since: Instant) -> bool {
        if let Some(held) = self.lists.get(&list.origin) {
            if held.list.version >= list.version {
                return false;
            }
        }
        let size = list.encoded_len();
        let used = self.bytes.get(&from).copied().unwrap_or(0);
        // A newer list from the same neighbour replaces its own older one.
        let freed = match self.lists.get(&list.origin) {
            Some(held) if held.from == from => held.list.encoded_len(),
            _ => 0,
        };
        if used.saturating_sub(freed).saturating_add(size) > self.budget
            || self.total.saturating_sub(freed).saturating_add(size) > self.total_budget
        {
            return false;
        }
        self.remove(&list.origin);
        *self.bytes.entry(from).or_insert(0) += size;
        self.total += size;
        self.lists
            .insert(list.origin, Waiting { list, from, since });
        true
    }

    /// Takes every parked list out, each with its sender and arrival time, to be offered
    /// again.
    pub fn take(&mut self) -> Vec<(NodeId, NeighbourList, Instant)> {
        self.bytes.clear();
        self.total = 0;
        self.lists
            .drain()
            .map(|(_, w)| (w.from, w.list, w.since))
            .collect()
    }

    /// Drops the lists parked longer than `hold` before `now`; returns how many.
    pub fn expire(&mut self, now: Instant, hold: Duration) -> usize {
        let old: Vec<NodeId> = self
            .lists
            .iter()
            .filter(|(_, w)| now.saturating_duration_since(w.since) > hold)
            .map(|(origin, _)| *origin)
            .collect();
        for origin in &old {
            self.remove(origin);
        }
        old.len()
    }

    /// Drops what neighbour `from` parked: its link is gone.
    pub fn forget(&mut self, from: &NodeId) {
        let theirs: Vec<NodeId> = self
            .lists
            .iter()
            .filter(|(_, w)| w.from == *from)
            .map(|(origin, _)| *origin)
            .collect();
        for origin in theirs {
            self.remove(&origin);
        }
    }

    /// Lists parked.
    pub fn len(&self) -> usize {
        self.lists.len()
    }

    /// Whether nothing is parked.
    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }

    fn remove(&mut self, origin: &NodeId) {
        if let Some(w) = self.lists.remove(origin) {
            self.total = self.total.saturating_sub(w.list.encoded_len());
            if let Some(used) = self.bytes.get_mut(&w.from) {
                *used = used.saturating_sub(w.list.encoded_len());
                if *used == 0 {
                    self.bytes.remove(&w.from);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::id;
    use crate::wire::{ListVersion, LIST_SIGNATURE_LEN};

    fn list(origin: u8, seq: u32, neighbours: &[u8]) -> NeighbourList {
        NeighbourList {
            origin: id(origin),
            version: ListVersion { epoch: 1, seq },
            neighbours: neighbours.iter().map(|n| id(*n)).collect(),
            signature: [0; LIST_SIGNATURE_LEN],
        }
    }

    #[test]
    fn only_the_newest_list_of_an_origin_is_held() {
        let now = Instant::now();
        let mut p = Parked::new(1 << 20, 1 << 20);
        assert!(p.park(id(1), list(9, 2, &[3]), now));
        assert!(!p.park(id(2), list(9, 1, &[3]), now), "older");
        assert!(!p.park(id(2), list(9, 2, &[3]), now), "as new");
        assert!(p.park(id(2), list(9, 3, &[3]), now));
        let taken = p.take();
        assert_eq!(taken.len(), 1);
        let (from, l, _) = &taken[0];
        assert_eq!((*from, l.version.seq), (id(2), 3));
        assert!(p.is_empty());
    }

    #[test]
    fn a_neighbour_parks_no_more_than_its_budget_and_others_keep_theirs() {
        let now = Instant::now();
        let one = list(10, 1, &[3]).encoded_len();
        let mut p = Parked::new(3 * one, 5 * one);
        for origin in 10..20 {
            p.park(id(1), list(origin, 1, &[3]), now);
        }
        assert_eq!(p.len(), 3, "the junk of neighbour 1 stops at its budget");
        assert!(
            p.park(id(2), list(30, 1, &[3]), now),
            "neighbour 2 has its own room"
        );
        assert!(
            p.park(id(1), list(10, 2, &[3]), now),
            "a newer list replaces its own"
        );
        assert_eq!(p.len(), 4);
        p.forget(&id(1));
        assert_eq!(p.len(), 1);
        assert!(
            p.park(id(1), list(11, 1, &[3]), now),
            "room again once forgotten"
        );
        assert!(p.park(id(3), list(40, 1, &[3]), now));
        assert!(p.park(id(3), list(41, 1, &[3]), now));
        assert!(p.park(id(4), list(50, 1, &[3]), now));
        assert!(
            !p.park(id(4), list(51, 1, &[3]), now),
            "the total budget holds over all neighbours"
        );
        assert_eq!(p.len(), 5);
    }

    #[test]
    fn lists_leave_after_the_hold_even_when_parked_again() {
        let start = Instant::now();
        let hold = Duration::from_secs(3);
        let mut p = Parked::new(1 << 20, 1 << 20);
        p.park(id(1), list(9, 1, &[3]), start);
        for (from, l, since) in p.take() {
            assert!(p.park(from, l, since));
        }
        assert_eq!(p.expire(start + Duration::from_secs(2), hold), 0);
        assert_eq!(p.len(), 1);
        assert_eq!(p.expire(start + Duration::from_secs(4), hold), 1);
        assert!(p.is_empty());
    }
}
