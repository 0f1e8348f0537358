//! Decompressing received payloads without letting a peer take the node's CPU or memory:
//! a hard output cap, a budget of decompressed bytes per second per link, and a small pool
//! of blocking threads with a bounded queue for the large ones, so a session's task never
//! spends more than a small payload's worth of time on one.
//!
//! Order: a payload sent to the pool makes its session stop reading until it is delivered
//! (the session awaits the returned future, as it does for a full module queue), so what
//! arrives on one link is still delivered in the order it arrived.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Semaphore;
use tracing::warn;

use super::NodeHandle;
use crate::config::LimitsConfig;
use crate::identity::NodeId;
use crate::session::{CloseReason, Pending, SessionHandle};
use crate::status::TokenBucket;
use crate::wire::{declared_size, decompress, WireError};

/// Payloads whose frame records at most this many bytes, and which are no larger
/// themselves, are decompressed on the session's task: at zstd's speed that is well under a
/// millisecond, less than handing them to a thread would cost. Anything larger, or whose
/// frame records no size, goes to the pool.
pub(super) const INLINE_MAX: usize = 256 * 1024;

/// Over-budget payloads from one link within [`STRIKE_WINDOW`] after which the link is
/// closed: a peer that keeps sending more than its budget is not an honest burst.
const STRIKES_TO_CLOSE: u32 = 8;
const STRIKE_WINDOW: Duration = Duration::from_secs(1);

/// What the node's decompression did, since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecompressStats {
    /// Bytes produced by decompression.
    pub decompressed_bytes: u64,
    /// Payloads decompressed on their session's task.
    pub inline: u64,
    /// Payloads decompressed in the worker pool.
    pub offloaded: u64,
    /// Payloads dropped undecompressed: their link was over
    /// `limits.decompress_bytes_per_sec_per_peer`.
    pub over_budget: u64,
    /// Payloads dropped undecompressed: the pool's queue (`limits.decompress_queue`) was
    /// full.
    pub queue_full: u64,
    /// Payloads that did not decompress, or would have exceeded the output cap.
    pub failed: u64,
    /// Links closed for staying over their budget.
    pub links_closed: u64,
}

#[derive(Default)]
struct Counters {
    decompressed_bytes: AtomicU64,
    inline: AtomicU64,
    offloaded: AtomicU64,
    over_budget: AtomicU64,
    queue_full: AtomicU64,
    failed: AtomicU64,
    links_closed: AtomicU64,
}

/// One link's budget and its recent overruns.
struct Budget {
    bucket: TokenBucket,
    strikes: u32,
    window_start: Instant,
}

/// What the budget says about a payload.
#[derive(Debug, PartialEq, Eq)]
enum Charge {
    Granted,
    /// Over budget, for the `strikes`th time in the current window: the first is logged,
    /// and at [`STRIKES_TO_CLOSE`] the link is closed.
    Refused {
        strikes: u32,
    },
}

/// The node's decompression limits and state.
pub(super) struct Inflater {
    /// Most bytes one payload may decompress to.
    cap: usize,
    /// Decompressed bytes per second per link.
    rate: f64,
    budgets: Mutex<HashMap<NodeId, Budget, foldhash::fast::RandomState>>,
    workers: Arc<Semaphore>,
    /// Payloads in the pool, running or waiting.
    admitted: Arc<AtomicUsize>,
    /// Workers plus queue.
    max_admitted: usize,
    counters: Counters,
}

/// A place in the pool, given back when dropped.
struct Ticket(Arc<AtomicUsize>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

impl Inflater {
    /// The limits of `limits`, with output capped also by the packet size limit.
    pub(super) fn new(limits: &LimitsConfig, max_packet: u32) -> Inflater {
        Inflater {
            cap: limits.max_decompressed_bytes.min(max_packet as usize),
            rate: limits.decompress_bytes_per_sec_per_peer as f64,
            budgets: Mutex::new(HashMap::default()),
            workers: Arc::new(Semaphore::new(limits.decompress_workers)),
            admitted: Arc::new(AtomicUsize::new(0)),
            max_admitted: limits
                .decompress_workers
                .saturating_add(limits.decompress_queue),
            counters: Counters::default(),
        }
    }

    /// Takes `n` bytes from `peer`'s budget. The bucket holds a second's worth, and at
    /// least one payload of the largest size, so an honest maximal message always fits.
    fn charge(&self, peer: NodeId, n: u64, now: Instant, live: impl Fn(&NodeId) -> bool) -> Charge {
        let mut budgets = self.budgets.lock();
        if !budgets.contains_key(&peer) && budgets.len() >= 64 {
            // Links come and go: forget those that are gone before adding one.
            budgets.retain(|n, _| live(n));
        }
        let capacity = self.rate.max(self.cap as f64);
        let b = budgets.entry(peer).or_insert_with(|| Budget {
            bucket: TokenBucket::new(self.rate, capacity, now),
            strikes: 0,
            window_start: now,
        });
        if b.bucket.try_take(n, now) {
            return Charge::Granted;
        }
        if now.saturating_duration_since(b.window_start) > STRIKE_WINDOW {
            b.window_start = now;
            b.strikes = 0;
        }
        b.strikes = b.strikes.saturating_add(1);
        Charge::Refused { strikes: b.strikes }
    }

    /// Gives back to `peer` what was charged for output that was not produced.
    fn refund(&self, peer: Option<NodeId>, n: u64) {
        let Some(peer) = peer else { return };
        if n == 0 {
            return;
        }
        if let Some(b) = self.budgets.lock().get_mut(&peer) {
            b.bucket.give_back(n);
        }
    }

    /// A place in the pool, if its queue has room.
    fn admit(&self) -> Option<Ticket> {
        let mut now = self.admitted.load(Relaxed);
        loop {
            if now >= self.max_admitted {
                return None;
            }
            match self
                .admitted
                .compare_exchange_weak(now, now + 1, Relaxed, Relaxed)
            {
                Ok(_) => return Some(Ticket(self.admitted.clone())),
                Err(seen) => now = seen,
            }
        }
    }

    fn done(&self, result: &Result<Bytes, WireError>) {
        match result {
            Ok(b) => {
                self.counters
                    .decompressed_bytes
                    .fetch_add(b.len() as u64, Relaxed);
            }
            Err(_) => {
                self.counters.failed.fetch_add(1, Relaxed);
            }
        }
    }
}

/// What to do with a payload once it is decompressed: deliver it, or report why it could
/// not be read.
pub(super) type Then = Box<dyn FnOnce(Result<Bytes, WireError>) -> Option<Pending> + Send>;

impl NodeHandle {
    /// What the node's decompression did: bytes produced, where, and what it refused.
    pub fn decompress_stats(&self) -> DecompressStats {
        let c = &self.inner.inflate.counters;
        DecompressStats {
            decompressed_bytes: c.decompressed_bytes.load(Relaxed),
            inline: c.inline.load(Relaxed),
            offloaded: c.offloaded.load(Relaxed),
            over_budget: c.over_budget.load(Relaxed),
            queue_full: c.queue_full.load(Relaxed),
            failed: c.failed.load(Relaxed),
            links_closed: c.links_closed.load(Relaxed),
        }
    }

    /// Decompresses `payload`, which came on link `from` (`None`: this node's own), and
    /// hands the result to `then`: inline for a small payload, else in the pool with the
    /// session waiting for it. A payload over its link's budget, or finding the pool's
    /// queue full, is dropped (counted and logged): `then` is not called.
    pub(super) fn inflate_then(
        &self,
        from: Option<&SessionHandle>,
        payload: Bytes,
        then: Then,
    ) -> Option<Pending> {
        let inflater = &self.inner.inflate;
        let declared = match declared_size(&payload) {
            Ok(d) => d,
            Err(e) => {
                inflater.counters.failed.fetch_add(1, Relaxed);
                return then(Err(e));
            }
        };
        if declared.is_some_and(|d| d > inflater.cap as u64) {
            inflater.counters.failed.fetch_add(1, Relaxed);
            return then(Err(WireError::DecompressedTooLarge { max: inflater.cap }));
        }
        // What the work may cost: the recorded size, or without one the cap. Charged before,
        // refunded after for what was not produced.
        let charge = declared.unwrap_or(inflater.cap as u64);
        let peer = from.map(|s| s.peer);
        if let Some(link) = from {
            let live = |n: &NodeId| self.inner.peers.session(n).is_some();
            if let Charge::Refused { strikes } =
                inflater.charge(link.peer, charge, Instant::now(), live)
            {
                self.over_budget(link, charge, strikes);
                return None;
            }
        }
        let small = declared.is_some_and(|d| d <= INLINE_MAX as u64) && payload.len() <= INLINE_MAX;
        if small {
            let cap = declared.map_or(inflater.cap, |d| d as usize);
            let result = decompress(&payload, cap);
            inflater.counters.inline.fetch_add(1, Relaxed);
            inflater.done(&result);
            let used = result.as_ref().map_or(0, |b| b.len() as u64);
            inflater.refund(peer, charge.saturating_sub(used));
            return then(result);
        }
        let Some(ticket) = inflater.admit() else {
            inflater.counters.queue_full.fetch_add(1, Relaxed);
            inflater.refund(peer, charge);
            if let Some(link) = from {
                warn!(peer = %link.peer.short(), len = payload.len(),
                    "decompression queue full; compressed packet dropped");
            }
            return None;
        };
        let node = self.clone();
        let cap = inflater.cap;
        Some(Box::pin(async move {
            let inflater = &node.inner.inflate;
            let result = match inflater.workers.clone().acquire_owned().await {
                Ok(permit) => {
                    let job = tokio::task::spawn_blocking(move || {
                        let r = decompress(&payload, cap);
                        drop(permit);
                        r
                    });
                    job.await.unwrap_or_else(|e| {
                        Err(WireError::Decompress {
                            reason: e.to_string(),
                        })
                    })
                }
                // Never closed while the node lives.
                Err(_) => return,
            };
            drop(ticket);
            inflater.counters.offloaded.fetch_add(1, Relaxed);
            inflater.done(&result);
            let used = result.as_ref().map_or(0, |b| b.len() as u64);
            inflater.refund(peer, charge.saturating_sub(used));
            if let Some(wait) = then(result) {
                wait.await;
            }
        }))
    }

    /// Counts a payload dropped over `link`'s budget, logs the first of a window, and closes
    /// the link at the window's [`STRIKES_TO_CLOSE`]th.
    fn over_budget(&self, link: &SessionHandle, charge: u64, strikes: u32) {
        let c = &self.inner.inflate.counters;
        c.over_budget.fetch_add(1, Relaxed);
        if strikes == STRIKES_TO_CLOSE {
            c.links_closed.fetch_add(1, Relaxed);
            warn!(peer = %link.peer.short(), conn = link.id,
                "peer keeps exceeding limits.decompress_bytes_per_sec_per_peer; closing the link");
            link.close(CloseReason::Protocol(
                "compressed traffic over limits.decompress_bytes_per_sec_per_peer".into(),
            ));
        } else if strikes == 1 {
            warn!(peer = %link.peer.short(), conn = link.id, bytes = charge,
                "compressed packets over the peer's decompression budget; dropping");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: usize, workers: usize, queue: usize) -> LimitsConfig {
        LimitsConfig {
            max_decompressed_bytes: 1 << 20,
            decompress_bytes_per_sec_per_peer: rate,
            decompress_workers: workers,
            decompress_queue: queue,
            ..LimitsConfig::default()
        }
    }

    fn id(b: u8) -> NodeId {
        NodeId::from_bytes([b; 64])
    }

    #[test]
    fn the_output_cap_is_the_smaller_of_the_limit_and_the_packet_size() {
        assert_eq!(Inflater::new(&limits(1 << 20, 1, 1), 4096).cap, 4096);
        assert_eq!(Inflater::new(&limits(1 << 20, 1, 1), u32::MAX).cap, 1 << 20);
    }

    #[test]
    fn a_link_over_its_budget_is_refused_and_closed_when_it_keeps_on() {
        // 2 MiB/s, cap 1 MiB: a bucket of 2 MiB.
        let inf = Inflater::new(&limits(2 << 20, 1, 1), u32::MAX);
        let t0 = Instant::now();
        let live = |_: &NodeId| true;
        assert_eq!(inf.charge(id(1), 1 << 20, t0, live), Charge::Granted);
        assert_eq!(inf.charge(id(1), 1 << 20, t0, live), Charge::Granted);
        for strikes in 1..=STRIKES_TO_CLOSE {
            assert_eq!(
                inf.charge(id(1), 1 << 20, t0, live),
                Charge::Refused { strikes }
            );
        }
        // Another link has its own budget; a refund or half a second refills this one.
        assert_eq!(inf.charge(id(2), 1 << 20, t0, live), Charge::Granted);
        inf.refund(Some(id(1)), 1 << 20);
        assert_eq!(inf.charge(id(1), 1 << 20, t0, live), Charge::Granted);
        let later = t0 + Duration::from_millis(500);
        assert_eq!(inf.charge(id(1), 1 << 20, later, live), Charge::Granted);
        // Past the window, the count of strikes starts again.
        let next = later + STRIKE_WINDOW + Duration::from_millis(1);
        assert_eq!(
            inf.charge(id(1), 64 << 20, next, live),
            Charge::Refused { strikes: 1 }
        );
    }

    #[test]
    fn the_budgets_of_links_that_are_gone_are_forgotten() {
        let inf = Inflater::new(&limits(2 << 20, 1, 1), u32::MAX);
        let t0 = Instant::now();
        for b in 0..64 {
            inf.charge(id(b), 1, t0, |_| true);
        }
        inf.charge(id(200), 1, t0, |n| *n == id(3));
        let budgets = inf.budgets.lock();
        assert_eq!(budgets.len(), 2);
        assert!(budgets.contains_key(&id(3)) && budgets.contains_key(&id(200)));
    }

    #[test]
    fn the_pool_admits_workers_plus_queue_and_tickets_give_places_back() {
        let inf = Inflater::new(&limits(1 << 20, 2, 3), u32::MAX);
        let tickets: Vec<Ticket> = (0..5).map_while(|_| inf.admit()).collect();
        assert_eq!(tickets.len(), 5);
        assert!(inf.admit().is_none());
        drop(tickets);
        assert!(inf.admit().is_some());
    }
}
