//! Counters of the neighbour lists the routing task refused, and of the links it closed.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::table::Rejection;

/// Neighbour lists refused since the node started, by reason, and links closed for them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RoutingCounters {
    /// Lists whose signature did not verify.
    pub bad_signature: u64,
    /// Lists naming more neighbours than `limits.max_neighbours_per_list`.
    pub too_many_neighbours: u64,
    /// Lists of new nodes refused because `limits.max_routing_nodes` were held.
    pub table_full: u64,
    /// Lists of new nodes that no reachable node confirms, dropped: nothing anchored them
    /// while they were held, or there was no room to hold them.
    pub unanchored: u64,
    /// Links closed because the neighbour sent a list no honest node sends.
    pub links_closed: u64,
}

/// The routing task's live counters, read as a [`RoutingCounters`] snapshot.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) bad_signature: AtomicU64,
    too_many_neighbours: AtomicU64,
    table_full: AtomicU64,
    unanchored: AtomicU64,
    pub(super) links_closed: AtomicU64,
}

impl Counters {
    pub(super) fn count(&self, r: &Rejection) {
        self.count_many(r, 1);
    }

    pub(super) fn count_many(&self, r: &Rejection, n: usize) {
        let c = match r {
            Rejection::BadSignature => &self.bad_signature,
            Rejection::TooManyNeighbours { .. } => &self.too_many_neighbours,
            Rejection::TableFull { .. } => &self.table_full,
            Rejection::Unanchored => &self.unanchored,
        };
        c.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> RoutingCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RoutingCounters {
            bad_signature: get(&self.bad_signature),
            too_many_neighbours: get(&self.too_many_neighbours),
            table_full: get(&self.table_full),
            unanchored: get(&self.unanchored),
            links_closed: get(&self.links_closed),
        }
    }
}
