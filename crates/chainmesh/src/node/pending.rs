//! Requests waiting for their response: a table sharded by Seq, and the sweeper that times
//! them out without a timer per request.
//!
//! The sweeper sleeps until the earliest deadline in the table (rounded up to the next
//! [`REQUEST_SWEEP`]), not on a fixed period: on a link whose requests are answered it
//! wakes about once per request timeout instead of 200 times a second, and each of those
//! periodic wake-ups used to take every shard's lock and land between a request and its
//! response.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{NodeHandle, RequestError};
use crate::identity::NodeId;

/// The granularity of request timeouts: the sweeper wakes at the earliest deadline rounded
/// up to a multiple of this, so a timeout is reported up to this much after it expires and
/// requests expiring close together are answered by one sweep. In exchange a request costs
/// no timer of its own, whose registration and removal were a sixth of a round trip's CPU.
pub const REQUEST_SWEEP: Duration = Duration::from_millis(5);

/// [`PendingTable::next_sweep`] while the sweeper waits for a request to time.
const NO_SWEEP: u64 = u64::MAX;

/// Shards of the table, so responses arriving on different sessions rarely take the same
/// lock.
const SHARDS: usize = 32;

/// A response as the requester receives it.
pub(super) struct Reply {
    pub(super) payload: Bytes,
    /// Links the response crossed.
    pub(super) hops: u8,
}

/// One request waiting for its response.
pub(super) struct PendingRequest {
    /// The node asked: only a response from it matches.
    pub(super) dst: NodeId,
    pub(super) reply: oneshot::Sender<Result<Reply, RequestError>>,
    /// When the sweeper answers it with a timeout.
    pub(super) deadline: Instant,
    pub(super) timeout: Duration,
}

/// Outstanding requests of one shard by Seq. Seqs are ours (a response can only look one
/// up), so a fast hash is safe here.
type Shard = HashMap<u32, PendingRequest, foldhash::fast::RandomState>;

/// One shard's lock and map on cache lines of their own: a request is inserted on the
/// requester's thread and taken on the thread that reads its response, and neighbouring
/// shards sharing a line would make every such pair fight over it.
#[repr(align(128))]
struct PaddedShard(Mutex<Shard>);

/// Requests outstanding per destination, in shards of their own (by the destination's
/// first byte, random for a real node ID).
type Counts = HashMap<NodeId, usize, foldhash::fast::RandomState>;

/// Outstanding requests by Seq, sharded by Seq, with at most `per_dst` to one destination.
pub(super) struct PendingTable {
    shards: [PaddedShard; SHARDS],
    per_dst: [Mutex<Counts>; SHARDS],
    /// `limits.pending_requests_per_peer`.
    max_per_dst: usize,
    /// When the sweeper wakes next, in [`REQUEST_SWEEP`]s since `epoch`, or [`NO_SWEEP`]. A
    /// request whose deadline falls before it lowers it and wakes the sweeper; any other
    /// request only reads it.
    next_sweep: AtomicU64,
    epoch: Instant,
    /// Wakes the sweeper to look at `next_sweep` again; dropped with the node, which ends
    /// the sweeper.
    earlier: mpsc::Sender<()>,
}

impl PendingTable {
    /// The table, allowing `max_per_dst` requests to one destination at once, and the
    /// receiver that hears when the sweeper must wake earlier than it planned.
    pub(super) fn new(max_per_dst: usize) -> (Self, mpsc::Receiver<()>) {
        let (earlier, woken) = mpsc::channel(1);
        let table = PendingTable {
            shards: std::array::from_fn(|_| PaddedShard(Mutex::new(HashMap::default()))),
            per_dst: std::array::from_fn(|_| Mutex::new(HashMap::default())),
            max_per_dst,
            next_sweep: AtomicU64::new(NO_SWEEP),
            epoch: Instant::now(),
            earlier,
        };
        (table, woken)
    }

    /// The sweep that answers a request expiring at `deadline`: the first multiple of
    /// [`REQUEST_SWEEP`] since `epoch` at or after it.
    fn sweep_for(&self, deadline: Instant) -> u64 {
        let since = deadline.saturating_duration_since(self.epoch).as_nanos();
        let step = REQUEST_SWEEP.as_nanos();
        u64::try_from(since.div_ceil(step)).unwrap_or(NO_SWEEP - 1)
    }

    /// When sweep `n` is due; `None` past what the clock can represent.
    fn sweep_at(&self, n: u64) -> Option<Instant> {
        let step = u64::try_from(REQUEST_SWEEP.as_millis()).unwrap_or(u64::MAX);
        self.epoch
            .checked_add(Duration::from_millis(n.checked_mul(step)?))
    }

    fn shard(&self, seq: u32) -> &Mutex<Shard> {
        &self.shards[seq as usize % SHARDS].0
    }

    fn counts(&self, dst: &NodeId) -> &Mutex<Counts> {
        &self.per_dst[usize::from(dst.as_bytes()[0]) % SHARDS]
    }

    /// Counts one more request to `dst`, unless `max_per_dst` are outstanding already.
    fn reserve(&self, dst: NodeId) -> Result<(), RequestError> {
        let mut counts = self.counts(&dst).lock();
        let n = counts.entry(dst).or_insert(0);
        if *n >= self.max_per_dst {
            return Err(RequestError::TooManyPending {
                dst,
                limit: self.max_per_dst,
            });
        }
        *n += 1;
        Ok(())
    }

    /// Counts one request to `dst` fewer; the destination is forgotten at none.
    fn release(&self, dst: &NodeId) {
        let mut counts = self.counts(dst).lock();
        if let Some(n) = counts.get_mut(dst) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(dst);
            }
        }
    }

    /// Adds request `seq`; [`PendingGuard`] removes it again however the request ends.
    /// Fails with [`RequestError::TooManyPending`], adding nothing, when `max_per_dst`
    /// requests to the same destination are outstanding.
    pub(super) fn insert(
        &self,
        seq: u32,
        p: PendingRequest,
    ) -> Result<PendingGuard<'_>, RequestError> {
        self.reserve(p.dst)?;
        let due = self.sweep_for(p.deadline);
        if let Some(old) = self.shard(seq).lock().insert(seq, p) {
            // A Seq reused after 2^32 requests while one is still waiting: the old one can
            // no longer be told apart, so it ends now.
            self.release(&old.dst);
            let _ = old.reply.send(Err(RequestError::Timeout(old.timeout)));
        }
        // Read after the entry is in its shard: a sweeper that has started scanning since
        // either sees the entry or left `next_sweep` past `due`, and is told below. Requests
        // with equal timeouts expire in the order they were made, so this is almost always
        // a read and nothing more.
        if due < self.next_sweep.load(Ordering::Acquire)
            && due < self.next_sweep.fetch_min(due, Ordering::AcqRel)
        {
            // Full means a wake-up is already waiting for the sweeper.
            let _ = self.earlier.try_send(());
        }
        Ok(PendingGuard { table: self, seq })
    }

    /// Accounts for requests taken out of the shards.
    fn taken<'a>(&self, gone: impl IntoIterator<Item = &'a PendingRequest>) {
        for p in gone {
            self.release(&p.dst);
        }
    }

    fn remove(&self, seq: u32) {
        let gone = self.shard(seq).lock().remove(&seq);
        self.taken(gone.as_ref());
    }

    /// Requests outstanding to `dst`.
    #[cfg(test)]
    fn pending_to(&self, dst: &NodeId) -> usize {
        self.counts(dst).lock().get(dst).copied().unwrap_or(0)
    }

    /// Takes request `seq` if it was sent to `from`: a Seq is only ours to match if the
    /// response comes from the node we asked.
    pub(super) fn take_from(&self, seq: u32, from: &NodeId) -> Option<PendingRequest> {
        let mut shard = self.shard(seq).lock();
        let p = match shard.get(&seq) {
            Some(p) if p.dst == *from => shard.remove(&seq),
            _ => None,
        };
        drop(shard);
        self.taken(p.as_ref());
        p
    }

    /// The sweep: takes every request whose deadline is `now` or earlier and sets the next
    /// sweep for the earliest deadline left. Returns what it took.
    fn sweep(&self, now: Instant) -> Vec<PendingRequest> {
        // Before the scan, so that a request added during it, and missed, finds the sweep
        // unplanned and plans it itself.
        self.next_sweep.store(NO_SWEEP, Ordering::Release);
        let mut earliest: Option<Instant> = None;
        let expired = self.take_where(|p| {
            if p.deadline <= now {
                return true;
            }
            earliest = Some(earliest.map_or(p.deadline, |e| e.min(p.deadline)));
            false
        });
        if let Some(e) = earliest {
            self.next_sweep
                .fetch_min(self.sweep_for(e), Ordering::AcqRel);
        }
        expired
    }

    /// When the sweeper should wake next, if any request is waiting.
    fn next_sweep_at(&self) -> Option<Instant> {
        match self.next_sweep.load(Ordering::Acquire) {
            NO_SWEEP => None,
            n => self.sweep_at(n),
        }
    }

    /// Takes every request sent to `node`.
    pub(super) fn take_to(&self, node: &NodeId) -> Vec<PendingRequest> {
        self.take_where(|p| p.dst == *node)
    }

    /// Takes every request.
    pub(super) fn take_all(&self) -> Vec<PendingRequest> {
        self.take_where(|_| true)
    }

    fn take_where(&self, mut pred: impl FnMut(&PendingRequest) -> bool) -> Vec<PendingRequest> {
        let mut out = Vec::new();
        for PaddedShard(shard) in &self.shards {
            let mut shard = shard.lock();
            let seqs: Vec<u32> = shard
                .iter()
                .filter(|(_, p)| pred(p))
                .map(|(s, _)| *s)
                .collect();
            out.extend(seqs.into_iter().filter_map(|s| shard.remove(&s)));
        }
        self.taken(&out);
        out
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.shards.iter().all(|PaddedShard(s)| s.lock().is_empty())
    }

    /// The nodes requests wait on, once per request.
    pub(super) fn destinations(&self) -> Vec<NodeId> {
        let mut out = Vec::new();
        for PaddedShard(shard) in &self.shards {
            out.extend(shard.lock().values().map(|p| p.dst));
        }
        out
    }
}

/// Removes its request from the table when dropped: when the response came, and also when
/// the caller dropped the request's future.
pub(super) struct PendingGuard<'a> {
    table: &'a PendingTable,
    seq: u32,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.table.remove(self.seq);
    }
}

impl NodeHandle {
    /// Fails every request waiting on `node`, which just became unreachable.
    pub(super) fn fail_pending_to(&self, node: NodeId, was_neighbour: bool) {
        for p in self.inner.pending.take_to(&node) {
            let e = if was_neighbour {
                RequestError::PeerDisconnected(node)
            } else {
                RequestError::Unreachable(node)
            };
            let _ = p.reply.send(Err(e));
        }
    }

    /// Answers every request past its deadline with [`RequestError::Timeout`], at most
    /// [`REQUEST_SWEEP`] after it, until `stop` or until the node is gone.
    pub(super) fn spawn_request_sweeper(
        &self,
        mut woken: mpsc::Receiver<()>,
        stop: CancellationToken,
    ) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                let due = match weak.upgrade() {
                    Some(inner) => inner.pending.next_sweep_at(),
                    None => return,
                };
                let sleep = async {
                    match due {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = stop.cancelled() => return,
                    // An earlier deadline came in: look again. `None`: the node is gone.
                    w = woken.recv() => match w {
                        Some(()) => continue,
                        None => return,
                    },
                    _ = sleep => {}
                }
                let Some(inner) = weak.upgrade() else { return };
                for p in inner.pending.sweep(Instant::now()) {
                    // Unanswered through a relay: routing counts it against the relay.
                    inner.router.report_failure(&p.dst);
                    let _ = p.reply.send(Err(RequestError::Timeout(p.timeout)));
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> NodeId {
        NodeId::from_bytes([b; 64])
    }

    type Answer = oneshot::Receiver<Result<Reply, RequestError>>;

    impl PendingTable {
        fn insert_ok(&self, seq: u32, p: PendingRequest) -> PendingGuard<'_> {
            self.insert(seq, p).unwrap()
        }
    }

    fn request(dst: u8, deadline: Instant) -> (PendingRequest, Answer) {
        let (reply, rx) = oneshot::channel();
        let p = PendingRequest {
            dst: id(dst),
            reply,
            deadline,
            timeout: Duration::from_secs(1),
        };
        (p, rx)
    }

    #[test]
    fn a_response_matches_only_from_the_node_asked() {
        let (table, _woken) = PendingTable::new(16);
        let (p, _rx) = request(2, Instant::now());
        let guard = table.insert_ok(7, p);
        assert!(table.take_from(7, &id(3)).is_none());
        assert!(table.take_from(8, &id(2)).is_none());
        assert!(!table.is_empty());
        let taken = table.take_from(7, &id(2)).unwrap();
        assert_eq!(taken.dst, id(2));
        assert!(table.is_empty());
        // Its guard finds nothing left to remove, and the count stays right.
        drop(guard);
        assert!(table.is_empty());
    }

    #[test]
    fn a_dropped_guard_removes_its_request() {
        let (table, _woken) = PendingTable::new(16);
        let (p, _rx) = request(2, Instant::now());
        drop(table.insert_ok(1, p));
        assert!(table.is_empty());
        assert!(table.take_from(1, &id(2)).is_none());
    }

    #[test]
    fn the_sweep_takes_expired_requests_only() {
        let (table, _woken) = PendingTable::new(16);
        let now = Instant::now();
        let (early, _a) = request(2, now);
        let (late, _b) = request(3, now + Duration::from_secs(5));
        let _g1 = table.insert_ok(1, early);
        let _g2 = table.insert_ok(2, late);
        let expired = table.sweep(now);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].dst, id(2));
        assert_eq!(table.destinations(), [id(3)]);
        assert!(table.sweep(now).is_empty());
        assert_eq!(table.sweep(now + Duration::from_secs(5)).len(), 1);
        assert!(table.is_empty());
    }

    #[test]
    fn requests_are_taken_by_destination_or_all_at_once() {
        let (table, _woken) = PendingTable::new(16);
        let now = Instant::now();
        let mut guards = Vec::new();
        for (seq, dst) in [(1, 2), (2, 3), (3, 2), (40, 4)] {
            guards.push(table.insert_ok(seq, request(dst, now).0));
        }
        let to_2 = table.take_to(&id(2));
        assert_eq!(to_2.len(), 2);
        assert!(to_2.iter().all(|p| p.dst == id(2)));
        let mut rest = table.destinations();
        rest.sort();
        assert_eq!(rest, [id(3), id(4)]);
        assert_eq!(table.take_all().len(), 2);
        assert!(table.is_empty());
    }

    #[test]
    fn a_reused_seq_ends_the_request_it_replaces() {
        let (table, _woken) = PendingTable::new(16);
        let now = Instant::now();
        let (first, mut first_rx) = request(2, now);
        let (second, _second_rx) = request(3, now);
        let _g1 = table.insert_ok(9, first);
        let _g2 = table.insert_ok(9, second);
        assert!(matches!(
            first_rx.try_recv(),
            Ok(Err(RequestError::Timeout(_)))
        ));
        assert_eq!(table.destinations(), [id(3)]);
        assert!(table.take_from(9, &id(3)).is_some());
        assert!(table.is_empty());
    }

    #[test]
    fn requests_to_one_destination_are_bounded_and_others_are_not_affected() {
        let (table, _woken) = PendingTable::new(3);
        let now = Instant::now();
        let mut guards: Vec<PendingGuard<'_>> = (1..=3)
            .map(|seq| table.insert_ok(seq, request(2, now).0))
            .collect();
        assert_eq!(
            table.insert(4, request(2, now).0).err(),
            Some(RequestError::TooManyPending {
                dst: id(2),
                limit: 3
            })
        );
        assert_eq!(table.pending_to(&id(2)), 3);
        // The refused request left nothing behind, and another destination has room.
        assert!(table.take_from(4, &id(2)).is_none());
        guards.push(table.insert_ok(5, request(3, now).0));
        // Every way out gives the room back: a response, a dropped guard, a sweep.
        assert!(table.take_from(1, &id(2)).is_some());
        guards.push(table.insert_ok(6, request(2, now).0));
        assert_eq!(table.pending_to(&id(2)), 3);
        drop(guards);
        assert_eq!(table.pending_to(&id(2)), 0);
        assert_eq!(table.pending_to(&id(3)), 0);
        let _g = table.insert_ok(7, request(2, now).0);
        let _h = table.insert_ok(7, request(2, now).0);
        // A reused Seq ended the request it replaced: one is outstanding, not two.
        assert_eq!(table.pending_to(&id(2)), 1);
        assert_eq!(table.sweep(now).len(), 1);
        assert_eq!(table.pending_to(&id(2)), 0);
        assert!(table.is_empty());
    }

    #[test]
    fn only_a_request_due_before_the_planned_sweep_wakes_the_sweeper() {
        let (table, mut woken) = PendingTable::new(16);
        let now = Instant::now();
        let secs = Duration::from_secs;
        assert_eq!(table.next_sweep_at(), None);
        let _g1 = table.insert_ok(1, request(2, now + secs(30)).0);
        assert!(woken.try_recv().is_ok());
        let planned = table.next_sweep_at().unwrap();
        assert!(planned >= now + secs(30) && planned <= now + secs(30) + REQUEST_SWEEP);
        // Later deadlines are covered by the sweep planned for the first.
        let _g2 = table.insert_ok(2, request(2, now + secs(31)).0);
        assert!(woken.try_recv().is_err());
        assert_eq!(table.next_sweep_at(), Some(planned));
        // An earlier one moves the sweep forward and says so.
        let _g3 = table.insert_ok(3, request(2, now + secs(1)).0);
        assert!(woken.try_recv().is_ok());
        let sooner = table.next_sweep_at().unwrap();
        assert!(sooner >= now + secs(1) && sooner < planned);
    }

    #[test]
    fn a_sweep_plans_the_next_for_the_earliest_deadline_left() {
        let (table, _woken) = PendingTable::new(16);
        let now = Instant::now();
        let secs = Duration::from_secs;
        let _g1 = table.insert_ok(1, request(2, now).0);
        let _g2 = table.insert_ok(2, request(3, now + secs(7)).0);
        let _g3 = table.insert_ok(3, request(4, now + secs(9)).0);
        assert_eq!(table.sweep(now).len(), 1);
        let next = table.next_sweep_at().unwrap();
        assert!(next >= now + secs(7) && next <= now + secs(7) + REQUEST_SWEEP);
        // Nothing waiting once the rest is gone: the sweeper sleeps until a request comes.
        table.take_all();
        assert!(table.sweep(now + secs(7)).is_empty());
        assert_eq!(table.next_sweep_at(), None);
    }
}
