//! Counters of what this node did with the packets it handled, and latency histograms, as
//! plain atomics for the admin API to map to its metrics (`docs/metrics.md`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use parking_lot::Mutex;

/// Upper bounds of the histogram buckets, in seconds: 0.5 ms to 10 s, roughly 2.5x apart,
/// which covers a LAN link's RTT up to a request that waits on a busy handler.
pub const BUCKETS_SECONDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Modules whose deliveries are counted one by one; the rest are counted together, so a
/// node registering modules without end cannot grow the table.
pub const COUNTED_MODULES: usize = 256;

/// A histogram of durations over [`BUCKETS_SECONDS`], lock-free.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last one is above every bound.
    counts: [AtomicU64; BUCKETS_SECONDS.len() + 1],
    sum_micros: AtomicU64,
}

/// A reading of a [`Histogram`].
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound in seconds, observations at or below it)`, cumulative, ascending.
    pub buckets: Vec<(f64, u64)>,
    /// Every observation, the ones above the last bound included.
    pub count: u64,
    /// Their sum, in seconds.
    pub sum_seconds: f64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BUCKETS_SECONDS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS_SECONDS.len());
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Relaxed);
        }
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        // Saturates rather than wraps: a sum that stopped growing is visibly wrong, a
        // wrapped one silently so.
        let _ = self
            .sum_micros
            .fetch_update(Relaxed, Relaxed, |s| Some(s.saturating_add(micros)));
    }

    /// The buckets as they stand.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0u64;
        let mut buckets = Vec::with_capacity(BUCKETS_SECONDS.len());
        for (bound, c) in BUCKETS_SECONDS.iter().zip(&self.counts) {
            running = running.saturating_add(c.load(Relaxed));
            buckets.push((*bound, running));
        }
        let above = self.counts.last().map_or(0, |c| c.load(Relaxed));
        HistogramSnapshot {
            buckets,
            count: running.saturating_add(above),
            // Microseconds as f64 lose nothing below 2^53 µs (285 years).
            sum_seconds: self.sum_micros.load(Relaxed) as f64 / 1e6,
        }
    }
}

/// What this node did with the packets it handled, since start.
#[derive(Debug, Default)]
pub struct NodeStats {
    /// Copies of other nodes' packets queued towards their next hop.
    pub relayed: AtomicU64,
    /// Messages dropped because this node had handled them already (they came by two paths).
    pub duplicates: AtomicU64,
    /// Packets for other nodes dropped because they had no relay hops left.
    pub ttl_dropped: AtomicU64,
    /// Packets for other nodes dropped because no route led to their destination.
    pub no_route_dropped: AtomicU64,
    /// Messages for a module no handler is registered for.
    pub unhandled: AtomicU64,
    /// How long [`NodeHandle::request`](super::NodeHandle::request) calls took to be
    /// answered (successfully or with an error from the other side).
    pub request_latency: Histogram,
    /// Round trips of pings answered by a direct neighbour (one hop each way): the link's
    /// RTT, with both ends' queueing.
    pub link_rtt: Histogram,
    delivered: Mutex<ModuleCounts>,
}

#[derive(Debug, Default)]
struct ModuleCounts {
    per_module: BTreeMap<u16, u64>,
    /// Deliveries to modules past [`COUNTED_MODULES`].
    other: u64,
}

impl NodeStats {
    /// Counts a message handed to `module`'s handler.
    pub(super) fn delivered(&self, module: u16) {
        let mut d = self.delivered.lock();
        let counted = d.per_module.len() < COUNTED_MODULES || d.per_module.contains_key(&module);
        if counted {
            let n = d.per_module.entry(module).or_insert(0);
            *n = n.saturating_add(1);
        } else {
            d.other = d.other.saturating_add(1);
        }
    }

    /// Messages handed to each module's handler, and those to modules past
    /// [`COUNTED_MODULES`] together.
    pub fn delivered_by_module(&self) -> (BTreeMap<u16, u64>, u64) {
        let d = self.delivered.lock();
        (d.per_module.clone(), d.other)
    }
}

/// Adds one to a counter of [`NodeStats`].
pub(super) fn count(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_cumulatively_and_keeps_slow_ones_in_the_total() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(20));
        h.observe(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.buckets.first(), Some(&(0.0005, 1)));
        assert_eq!(s.buckets.iter().find(|b| b.0 == 0.025), Some(&(0.025, 2)));
        assert_eq!(s.buckets.last(), Some(&(10.0, 2)));
        assert_eq!(s.count, 3);
        assert!((s.sum_seconds - 60.0203).abs() < 1e-9);
    }

    #[test]
    fn deliveries_past_the_counted_modules_are_counted_together() {
        let s = NodeStats::default();
        for m in 0..=u16::try_from(COUNTED_MODULES).unwrap_or(u16::MAX) {
            s.delivered(m);
        }
        s.delivered(0);
        let (per, other) = s.delivered_by_module();
        assert_eq!(per.len(), COUNTED_MODULES);
        assert_eq!(per.get(&0), Some(&2));
        assert_eq!(other, 1);
    }
}
