//! The write lanes of a session: three outboxes, each bounded in bytes, that the session's
//! writer serves in order of urgency.
//!
//! Each lane is the outbox described in the module docs (a shared batch buffer, and chunks
//! for big frames), with its own byte budget: a full bulk lane never makes a control or
//! priority sender wait. One lock covers all three, so a send costs what it did with one
//! outbox, and the writer fills both of its write slots with one lock.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio::sync::TryAcquireError;

use super::{Framing, QueueError, SessionHandle, SessionStats, BIG_FRAME};

/// A traffic class of a link: which of its three write queues a frame waits in.
///
/// The session's writer serves [`Control`](Lane::Control) first, then
/// [`Priority`](Lane::Priority), then [`Bulk`](Lane::Bulk), switching only between whole
/// writes: a control or priority frame waits for at most one piece of bulk data already on
/// its way (see [`PIECE`](super::PIECE)), however much bulk is queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lane {
    /// Link and network upkeep: heartbeats, goodbyes, routing, status synchronization.
    Control,
    /// Latency-sensitive application traffic: the modules of `p2p.priority_modules`, or a
    /// send that asks for it.
    Priority,
    /// Everything else.
    Bulk,
}

impl Lane {
    /// Every lane, in the order the writer serves them.
    pub const ALL: [Lane; 3] = [Lane::Control, Lane::Priority, Lane::Bulk];

    /// The lane's name as configuration and metrics spell it.
    pub fn name(self) -> &'static str {
        match self {
            Lane::Control => "control",
            Lane::Priority => "priority",
            Lane::Bulk => "bulk",
        }
    }

    pub(super) fn index(self) -> usize {
        match self {
            Lane::Control => 0,
            Lane::Priority => 1,
            Lane::Bulk => 2,
        }
    }
}

/// First allocation of a lane's batch: enough for a burst of small frames.
const BATCH_INITIAL: usize = 16 * 1024;

/// Frames of one lane queued and not yet taken by the session's task, in order: `chunks`
/// first, then `batch`.
#[derive(Debug, Default)]
pub(super) struct LaneQueue {
    /// Big frames, and the part of the batch queued before each of them, with their permits;
    /// for a framing that does not coalesce, every frame.
    chunks: VecDeque<(Bytes, usize)>,
    /// Small frames back to back.
    batch: BytesMut,
    batch_permits: usize,
}

impl LaneQueue {
    fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.batch.is_empty()
    }

    /// Makes room for `len` more bytes in the batch.
    fn reserve(&mut self, len: usize) {
        if self.batch.capacity() - self.batch.len() < len {
            self.batch.reserve(len.max(BATCH_INITIAL));
        }
    }

    /// Queues a frame as a chunk of its own, after everything already in the batch.
    fn push_chunk(&mut self, frame: Bytes, permits: usize) {
        if !self.batch.is_empty() {
            let before = self.batch.split().freeze();
            self.chunks
                .push_back((before, std::mem::take(&mut self.batch_permits)));
        }
        self.chunks.push_back((frame, permits));
    }

    /// The oldest chunk, else the whole batch swapped with `spare` (empty; its allocation
    /// becomes the senders' next batch).
    fn take(&mut self, spare: &mut BytesMut, coalesce: bool) -> Option<Taken> {
        if let Some((chunk, permits)) = self.chunks.pop_front() {
            return Some(Taken::Chunk(chunk, permits));
        }
        if self.batch.is_empty() {
            if !coalesce {
                // Frames of this mode are split off the batch and the writer's buffer is not
                // swapped in, so the batch would keep its allocation on an idle link.
                self.batch = BytesMut::new();
            }
            return None;
        }
        std::mem::swap(&mut self.batch, spare);
        Some(Taken::Batch(std::mem::take(&mut self.batch_permits)))
    }
}

/// The three lanes of a session and what they share.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    lanes: [LaneQueue; 3],
    /// Frames queued since the task last took any, for the packets-out counter.
    frames: u64,
    /// The session has ended: nothing more is taken.
    pub(super) closed: bool,
}

impl Outbox {
    fn is_empty(&self) -> bool {
        self.lanes.iter().all(LaneQueue::is_empty)
    }

    fn lane(&mut self, lane: Lane) -> &mut LaneQueue {
        &mut self.lanes[lane.index()]
    }

    #[cfg(test)]
    pub(super) fn batch_capacity(&self, lane: Lane) -> usize {
        self.lanes[lane.index()].batch.capacity()
    }
}

/// What the session's task takes from a lane to write next.
#[derive(Debug)]
pub(crate) enum Taken {
    /// A chunk to write from its own buffer, and its permits.
    Chunk(Bytes, usize),
    /// The batch, swapped into the task's buffer; its permits.
    Batch(usize),
}

/// What one [`SessionHandle::take`] found for the writer's two slots.
#[derive(Debug, Default)]
pub(crate) struct Took {
    /// For the urgent slot: from the control lane, else the priority lane.
    pub(crate) urgent: Option<(Lane, Taken)>,
    /// For the bulk slot.
    pub(crate) bulk: Option<Taken>,
    /// Frames queued since the last take, in any lane.
    pub(crate) frames: u64,
}

impl<F: Framing> SessionHandle<F> {
    /// Queues one encoded packet in the bulk lane (see [`try_send_in`](Self::try_send_in)).
    pub fn try_send(&self, frame: Bytes) -> Result<(), QueueError> {
        self.try_send_in(Lane::Bulk, frame)
    }

    /// Queues one encoded packet in `lane`, failing at once when the lane has no room for
    /// its bytes. A refusal is counted in [`SessionStats::dropped_out`].
    pub fn try_send_in(&self, lane: Lane, frame: Bytes) -> Result<(), QueueError> {
        self.offer_in(lane, frame).map_err(|(e, _)| {
            if e == QueueError::Full {
                self.count_drop();
            }
            e
        })
    }

    /// Queues one encoded packet in the bulk lane (see [`offer_in`](Self::offer_in)).
    pub fn offer(&self, frame: Bytes) -> Result<(), (QueueError, Bytes)> {
        self.offer_in(Lane::Bulk, frame)
    }

    /// Queues one encoded packet in `lane` if there is room now, and hands it back
    /// otherwise. Unlike [`try_send_in`](Self::try_send_in) a refusal is not counted as a
    /// drop, since the caller may still [`send_in`](Self::send_in) it; a caller that gives
    /// up calls [`count_drop`](Self::count_drop).
    pub fn offer_in(&self, lane: Lane, frame: Bytes) -> Result<(), (QueueError, Bytes)> {
        let permits = self.permits_for(frame.len());
        match self.budget(lane).try_acquire_many(permits) {
            // The writer returns the permits once the bytes are on the stream.
            Ok(permit) => permit.forget(),
            Err(TryAcquireError::NoPermits) => return Err((QueueError::Full, frame)),
            Err(TryAcquireError::Closed) => return Err((QueueError::Closed, frame)),
        }
        self.append(lane, frame, permits as usize)
    }

    /// Like [`offer_in`](Self::offer_in) for a frame shared with other queues (the copies
    /// of a broadcast): a small frame is copied in from the reference, so the shared
    /// buffer's count is not touched; a big one is queued by reference.
    pub fn offer_shared_in(&self, lane: Lane, frame: &Bytes) -> Result<(), QueueError> {
        if frame.len() >= BIG_FRAME {
            return self.offer_in(lane, frame.clone()).map_err(|(e, _)| e);
        }
        let len = frame.len();
        self.offer_encoded_in(lane, len, |out| out.extend_from_slice(frame))
    }

    /// [`offer_shared_in`](Self::offer_shared_in) in the bulk lane.
    pub fn offer_shared(&self, frame: &Bytes) -> Result<(), QueueError> {
        self.offer_shared_in(Lane::Bulk, frame)
    }

    /// [`offer_encoded_in`](Self::offer_encoded_in) in the bulk lane.
    pub fn offer_encoded(
        &self,
        len: usize,
        encode: impl FnOnce(&mut BytesMut),
    ) -> Result<(), QueueError> {
        self.offer_encoded_in(Lane::Bulk, len, encode)
    }

    /// Queues a packet of exactly `len` bytes that `encode` writes straight into `lane`, if
    /// there is room now: no buffer of its own, no copy. Fails without calling `encode`.
    /// A refusal is not counted as a drop (see [`offer_in`](Self::offer_in)).
    ///
    /// `encode` runs under the queue's lock: it must only write its `len` bytes.
    pub fn offer_encoded_in(
        &self,
        lane: Lane,
        len: usize,
        encode: impl FnOnce(&mut BytesMut),
    ) -> Result<(), QueueError> {
        let permits = self.permits_for(len);
        match self.budget(lane).try_acquire_many(permits) {
            Ok(permit) => permit.forget(),
            Err(TryAcquireError::NoPermits) => return Err(QueueError::Full),
            Err(TryAcquireError::Closed) => return Err(QueueError::Closed),
        }
        let mut outbox = self.outbox.lock();
        if outbox.closed {
            return Err(QueueError::Closed);
        }
        let was_empty = outbox.is_empty();
        let queue = outbox.lane(lane);
        queue.reserve(len);
        encode(&mut queue.batch);
        // An empty frame is never a chunk: the writer takes a write of zero bytes for a
        // closed stream.
        if F::COALESCE || queue.batch.is_empty() {
            queue.batch_permits += permits as usize;
        } else {
            // The batch holds nothing else in this mode: the split is exactly this frame,
            // sharing the batch's allocation.
            let frame = queue.batch.split().freeze();
            queue.chunks.push_back((frame, permits as usize));
        }
        outbox.frames += 1;
        drop(outbox);
        self.wake_if(was_empty);
        Ok(())
    }

    /// Queues one encoded packet in the bulk lane (see [`send_in`](Self::send_in)).
    pub async fn send(&self, frame: Bytes) -> Result<(), QueueError> {
        self.send_in(Lane::Bulk, frame).await
    }

    /// Queues one encoded packet in `lane`, waiting until the lane has room for its bytes.
    /// Fails only when the session ends.
    pub async fn send_in(&self, lane: Lane, frame: Bytes) -> Result<(), QueueError> {
        let permits = self.permits_for(frame.len());
        match self.budget(lane).acquire_many(permits).await {
            Ok(permit) => permit.forget(),
            Err(_) => return Err(QueueError::Closed),
        }
        self.append(lane, frame, permits as usize)
            .map_err(|(e, _)| e)
    }

    /// Puts a frame whose permits are taken into `lane`.
    fn append(&self, lane: Lane, frame: Bytes, permits: usize) -> Result<(), (QueueError, Bytes)> {
        let mut outbox = self.outbox.lock();
        if outbox.closed {
            return Err((QueueError::Closed, frame));
        }
        let was_empty = outbox.is_empty();
        let queue = outbox.lane(lane);
        // As in `offer_encoded_in`, an empty frame is never a chunk.
        if frame.len() >= BIG_FRAME || (!F::COALESCE && !frame.is_empty()) {
            queue.push_chunk(frame, permits);
        } else {
            queue.reserve(frame.len());
            queue.batch.extend_from_slice(&frame);
            queue.batch_permits += permits;
        }
        outbox.frames += 1;
        drop(outbox);
        self.wake_if(was_empty);
        Ok(())
    }

    /// Wakes the session's task for an outbox that was empty, unless the task is delivering
    /// and so writes again before it rests; an outbox that was not empty already has a
    /// wake-up on its way, and the writer looks at every lane before it rests.
    fn wake_if(&self, was_empty: bool) {
        if was_empty && self.shared.delivering.must_wake() {
            self.shared.waker.wake();
        }
    }

    /// The session's task starts delivering what it read (see `Delivering`).
    pub(super) fn begin_delivering(&self) {
        self.shared.delivering.begin();
    }

    /// The session's task stops delivering; whether frames were queued meanwhile without a
    /// wake-up, so that it must write before it rests.
    pub(super) fn end_delivering(&self) -> bool {
        self.shared.delivering.end()
    }

    /// Takes what the session's task writes next, with one lock: into `urgent` (when the
    /// writer's urgent slot is free) the next thing of the control lane, else of the
    /// priority lane; into `bulk` (when its bulk slot is free) the next thing of the bulk
    /// lane. Each spare buffer must be empty; a batch is swapped into it.
    pub(crate) fn take(&self, urgent: Option<&mut BytesMut>, bulk: Option<&mut BytesMut>) -> Took {
        let mut outbox = self.outbox.lock();
        let mut took = Took {
            frames: std::mem::take(&mut outbox.frames),
            ..Took::default()
        };
        if let Some(spare) = urgent {
            took.urgent = [Lane::Control, Lane::Priority]
                .into_iter()
                .find_map(|lane| {
                    outbox
                        .lane(lane)
                        .take(spare, F::COALESCE)
                        .map(|t| (lane, t))
                });
        }
        if let Some(spare) = bulk {
            took.bulk = outbox.lane(Lane::Bulk).take(spare, F::COALESCE);
        }
        took
    }

    /// Ends the queue, for the session's task as it stops: later sends fail with
    /// [`QueueError::Closed`], senders waiting for room are woken to fail, and what was
    /// still queued is returned, lane by lane, each in queue order.
    pub(crate) fn close_queue(&self) -> Vec<Bytes> {
        for budget in &self.budgets {
            budget.close();
        }
        let mut outbox = self.outbox.lock();
        outbox.closed = true;
        let mut left = Vec::new();
        for queue in &mut outbox.lanes {
            left.extend(queue.chunks.drain(..).map(|(chunk, _)| chunk));
            let batch = std::mem::take(&mut queue.batch);
            if !batch.is_empty() {
                left.push(batch.freeze());
            }
        }
        left
    }

    /// Gives back the permits of bytes of `lane` now written to the stream.
    pub(crate) fn written(&self, lane: Lane, permits: usize) {
        self.budget(lane).add_permits(permits);
    }

    /// Counts one packet given up for lack of queue room in [`SessionStats::dropped_out`].
    pub fn count_drop(&self) {
        SessionStats::add(&self.stats.dropped_out, 1);
    }

    /// Bytes queued in every lane and not yet written to the stream.
    pub fn queued_bytes(&self) -> usize {
        Lane::ALL.iter().map(|&l| self.queued_bytes_in(l)).sum()
    }

    /// Bytes queued in `lane` and not yet written to the stream (the frame being written
    /// counts until its last byte is taken). At most [`queue_capacity`](Self::queue_capacity).
    pub fn queued_bytes_in(&self, lane: Lane) -> usize {
        self.capacity
            .saturating_sub(self.budget(lane).available_permits())
    }

    /// The bound of each lane in bytes.
    pub fn queue_capacity(&self) -> usize {
        self.capacity
    }
}
