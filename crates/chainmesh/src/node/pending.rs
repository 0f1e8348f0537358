//! Requests waiting for their response: a table sharded by Seq, and the sweeper that times
//! them out without a timer per request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{NodeHandle, RequestError};
use crate::identity::NodeId;

/// How often outstanding requests are checked for their deadline, while there are any. A
/// timeout is reported up to this much after it expires; in exchange a request costs no
/// timer of its own, whose registration and removal were a sixth of a round trip's CPU.
pub const REQUEST_SWEEP: Duration = Duration::from_millis(5);

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
    /// Entries in all shards, so the sweeper can sleep while there are none.
    count: AtomicUsize,
    /// Wakes the sweeper when the first request goes in; dropped with the node, which
    /// ends the sweeper.
    not_empty: mpsc::Sender<()>,
}

impl PendingTable {
    /// The table, allowing `max_per_dst` requests to one destination at once, and the
    /// receiver that hears when it stops being empty.
    pub(super) fn new(max_per_dst: usize) -> (Self, mpsc::Receiver<()>) {
        let (not_empty, woken) = mpsc::channel(1);
        let table = PendingTable {
            shards: std::array::from_fn(|_| PaddedShard(Mutex::new(HashMap::default()))),
            per_dst: std::array::from_fn(|_| Mutex::new(HashMap::default())),
            max_per_dst,
            count: AtomicUsize::new(0),
            not_empty,
        };
        (table, woken)
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
        if let Some(old) = self.shard(seq).lock().insert(seq, p) {
            // A Seq reused after 2^32 requests while one is still waiting: the old one can
            // no longer be told apart, so it ends now.
            self.release(&old.dst);
            let _ = old.reply.send(Err(RequestError::Timeout(old.timeout)));
        } else if self.count.fetch_add(1, Ordering::AcqRel) == 0 {
            // Full means a wake-up is already waiting for the sweeper.
            let _ = self.not_empty.try_send(());
        }
        Ok(PendingGuard { table: self, seq })
    }

    /// Accounts for requests taken out of the shards.
    fn taken<'a>(&self, gone: impl IntoIterator<Item = &'a PendingRequest>) {
        let mut n = 0;
        for p in gone {
            self.release(&p.dst);
            n += 1;
        }
        if n > 0 {
            self.count.fetch_sub(n, Ordering::AcqRel);
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

    /// Takes every request whose deadline is `now` or earlier.
    pub(super) fn take_expired(&self, now: Instant) -> Vec<PendingRequest> {
        self.take_where(|p| p.deadline <= now)
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

    pub(super) fn is_empty(&self) -> bool {
        self.count.load(Ordering::Acquire) == 0
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

    /// Answers every request past its deadline with [`RequestError::Timeout`], every
    /// [`REQUEST_SWEEP`] while any are outstanding, until `stop` or until the node is gone.
    pub(super) fn spawn_request_sweeper(
        &self,
        mut woken: mpsc::Receiver<()>,
        stop: CancellationToken,
    ) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                let idle = match weak.upgrade() {
                    Some(inner) => inner.pending.is_empty(),
                    None => return,
                };
                if idle {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        // `None`: the node is gone.
                        w = woken.recv() => if w.is_none() { return },
                    }
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(REQUEST_SWEEP) => {}
                }
                let Some(inner) = weak.upgrade() else { return };
                for p in inner.pending.take_expired(Instant::now()) {
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
        let expired = table.take_expired(now);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].dst, id(2));
        assert_eq!(table.destinations(), [id(3)]);
        assert!(table.take_expired(now).is_empty());
        assert_eq!(table.take_expired(now + Duration::from_secs(5)).len(), 1);
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
        assert_eq!(table.take_expired(now).len(), 1);
        assert_eq!(table.pending_to(&id(2)), 0);
        assert!(table.is_empty());
    }

    #[test]
    fn the_first_request_wakes_the_sweeper_once() {
        let (table, mut woken) = PendingTable::new(16);
        let now = Instant::now();
        let _g1 = table.insert_ok(1, request(2, now).0);
        let _g2 = table.insert_ok(2, request(2, now).0);
        assert!(woken.try_recv().is_ok());
        assert!(woken.try_recv().is_err());
        table.take_all();
        let _g3 = table.insert_ok(3, request(2, now).0);
        assert!(woken.try_recv().is_ok());
    }
}
