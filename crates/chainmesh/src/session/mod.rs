//! One task per live connection: framing, heartbeats, idle timeout, and a write queue bounded
//! in bytes whose writer batches queued packets into large TLS writes.
//!
//! The queue is an outbox: senders append small frames to one shared batch buffer (encoding
//! a unicast straight into it), and the session's task swaps that buffer for its own empty
//! one and writes the whole batch in one TLS write. Frames of [`BIG_FRAME`] bytes or more are
//! queued as they are instead of copied. Two buffers, swapped: no allocation and one copy per
//! frame on a busy link.
//!
//! The queue's bound is a [`Semaphore`] holding one permit per byte: a sender takes a frame's
//! length in permits before queuing it (waiting for them, or failing at once), and the
//! writer gives them back once the frame is written to the stream. Memory held for a peer is
//! therefore bounded by its queue budget plus one write batch, however slow the peer reads.
//!
//! A framing that does not coalesce ([`Framing::COALESCE`]) gets every frame queued as a chunk
//! of its own, so that each write carries one frame.
//!
//! A session knows nothing of routing or of the peer set: it moves encoded frames out of its
//! queue onto the stream, and hands each decoded data frame to a [`Handler`] (for the P2P
//! framing, an [`Inbound`] sink). When it ends with frames not written, it hands those over
//! too, once, as a [`Leftover`]: what was never handed to the stream, and what was being
//! written. Nothing is recorded per frame on the way in; the leftover is cut into frames
//! only then. Sessions are generic over the stream so tests can drive them
//! over in-memory duplex pipes, and over the [`Framing`], monomorphised.

mod driver;
mod framing;
mod leftover;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::{Semaphore, TryAcquireError};
use tokio::time::Instant;

use crate::identity::NodeId;

pub use driver::{run, run_framed};
pub use framing::{FrameKind, Framing, Handler, Inbound, LinkError, P2pFraming, Pending};
pub use leftover::{Fate, LeftPackets, Leftover};

/// Timers and limits of one session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// A heartbeat goes out when nothing has been written for this long.
    pub heartbeat_interval: Duration,
    /// The peer is dropped when nothing has been read for this long.
    pub idle_timeout: Duration,
    /// Largest packet accepted from the peer (read by [`run`], which builds the framing).
    pub max_packet: u32,
    /// Protocol version agreed in the handshake; written into heartbeats (read by [`run`]).
    pub version: u16,
    /// How long a closing session may spend flushing its queue and reading the peer's last
    /// packets before it drops the connection.
    pub linger: Duration,
    /// Bytes read from the stream per wake before the task yields, beside the packet count
    /// ([`READ_BUDGET_PACKETS`]): a peer sending big packets gets no more of the worker than
    /// one sending small ones.
    pub read_budget_bytes: usize,
}

/// Packets handled per wake before the session's task yields, so one busy peer cannot starve
/// the others sharing its worker thread.
pub const READ_BUDGET_PACKETS: usize = 256;

/// Which side opened the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// We dialed the peer.
    Outbound,
    /// The peer dialed us.
    Inbound,
}

/// Why a session ended. Shown to operators and carried in peer events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "kebab-case")]
pub enum CloseReason {
    /// Nothing was read from the peer for the idle timeout.
    IdleTimeout,
    /// The peer closed the connection.
    ClosedByPeer,
    /// The peer said it is leaving.
    PeerLeft(String),
    /// Reading or writing the stream failed.
    Io(String),
    /// The peer sent bytes that are not a valid packet.
    Protocol(String),
    /// Another connection to the same peer was kept instead of this one.
    Duplicate,
    /// This node is shutting down.
    Shutdown,
    /// The peer was removed from this node's peer list.
    Removed,
    /// The peer is now on the blacklist.
    Blacklisted,
    /// A whitelist is set and the peer is no longer on it.
    NotWhitelisted,
    /// The peer connected again as a new incarnation (it restarted) while this connection
    /// had gone silent: the new connection replaced it.
    Restarted,
}

impl CloseReason {
    /// The reason without its detail, for counting closes by reason: one of a fixed set
    /// of words, whatever the peer or the stream said.
    pub fn kind(&self) -> &'static str {
        match self {
            CloseReason::IdleTimeout => "idle-timeout",
            CloseReason::ClosedByPeer => "closed-by-peer",
            CloseReason::PeerLeft(_) => "peer-left",
            CloseReason::Io(_) => "io",
            CloseReason::Protocol(_) => "protocol",
            CloseReason::Duplicate => "duplicate",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Removed => "removed",
            CloseReason::Blacklisted => "blacklisted",
            CloseReason::NotWhitelisted => "not-whitelisted",
            CloseReason::Restarted => "restarted",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::PeerLeft(why) => write!(f, "peer-left: {why}"),
            CloseReason::Io(e) => write!(f, "io: {e}"),
            CloseReason::Protocol(e) => write!(f, "protocol: {e}"),
            other => f.write_str(other.kind()),
        }
    }
}

/// Traffic counters of one session, updated by its task and read by the admin API.
#[derive(Debug, Default)]
pub struct SessionStats {
    /// Bytes read from the peer, TLS payload.
    pub bytes_in: AtomicU64,
    /// Bytes written to the peer, TLS payload.
    pub bytes_out: AtomicU64,
    /// Packets decoded.
    pub packets_in: AtomicU64,
    /// Packets written (queued packets plus heartbeats).
    pub packets_out: AtomicU64,
    /// Packets refused because the write queue was full (fail-fast sends and relays).
    pub dropped_out: AtomicU64,
}

impl SessionStats {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// State shared between a session's task and its handles.
#[derive(Debug, Default)]
struct Shared {
    close: Mutex<Option<CloseReason>>,
    /// The close is to happen at once: nothing more is written, read or delivered.
    abort: AtomicBool,
    /// Wakes the session's task: a close request, or frames in an outbox that was empty.
    waker: AtomicWaker,
}

/// Frames at least this long are queued as they are rather than copied into the batch.
pub const BIG_FRAME: usize = 64 * 1024;

/// First allocation of an outbox batch: enough for a burst of small frames.
const BATCH_INITIAL: usize = 16 * 1024;

/// Frames queued and not yet taken by the session's task, in order: `chunks` first, then
/// `batch`.
#[derive(Debug, Default)]
struct Outbox {
    /// Big frames, and the part of the batch queued before each of them, with their permits;
    /// for a framing that does not coalesce, every frame.
    chunks: VecDeque<(Bytes, usize)>,
    /// Small frames back to back.
    batch: BytesMut,
    batch_permits: usize,
    /// Frames queued since the task last took them, for the packets-out counter.
    frames: u64,
    /// The session has ended: nothing more is taken.
    closed: bool,
}

impl Outbox {
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
}

/// What the session's task takes from the outbox to write next.
pub(crate) enum Taken {
    /// A chunk to write from its own buffer.
    Chunk(Bytes, usize),
    /// The batch, swapped into the task's buffer; its permits.
    Batch(usize),
}

/// Why a packet could not be queued on a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The write queue is at its bound.
    #[error("write queue full")]
    Full,
    /// The session has ended.
    #[error("session closed")]
    Closed,
}

/// A cloneable handle to a live session over framing `F`: queue frames, read counters, ask it
/// to close.
///
/// One `Arc` inside, so that the per-message lookup of a peer's session costs one reference
/// count; the fields are read through [`Session`].
pub struct SessionHandle<F = P2pFraming>(Arc<Session<F>>);

impl<F> Clone for SessionHandle<F> {
    fn clone(&self) -> Self {
        SessionHandle(self.0.clone())
    }
}

/// A live session as its handles see it: who is at the other end, traffic counters, and the
/// sending side of its write queue.
pub struct Session<F = P2pFraming> {
    /// Process-unique number of this connection, to tell two connections to one peer apart.
    pub id: u64,
    /// The peer's node ID, from its certificate.
    pub peer: NodeId,
    /// The peer's socket address.
    pub addr: SocketAddr,
    /// Our end of the connection.
    pub local_addr: SocketAddr,
    /// Who dialed.
    pub direction: Direction,
    /// When the session was established.
    pub since: SystemTime,
    /// Protocol version agreed in the handshake.
    pub version: u16,
    /// The port the peer listens on, from its handshake (0 if it does not listen).
    pub peer_listen_port: u16,
    /// The largest packet the peer accepts, from its handshake: nothing larger may be sent
    /// on this link.
    pub peer_max_packet: u32,
    /// Traffic counters.
    pub stats: SessionStats,
    /// When the session was created, on the clock the session's task keeps time by.
    created: Instant,
    /// Milliseconds after `created` when the task last read from the peer.
    heard_ms: AtomicU64,
    // Bounded in bytes by `budget`: nothing goes in without first taking its length in
    // permits.
    outbox: Mutex<Outbox>,
    budget: Semaphore,
    capacity: usize,
    shared: Shared,
    // How queued frames are laid out depends on the framing; a function pointer type keeps
    // the session `Send` and `Sync` whatever the framing holds.
    framing: PhantomData<fn() -> F>,
}

impl<F> std::ops::Deref for SessionHandle<F> {
    type Target = Session<F>;

    fn deref(&self) -> &Session<F> {
        &self.0
    }
}

impl<F> fmt::Debug for SessionHandle<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionHandle")
            .field("id", &self.id)
            .field("peer", &self.peer)
            .field("addr", &self.addr)
            .field("direction", &self.direction)
            .finish()
    }
}

/// What a session needs at creation, besides its stream.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// The peer's node ID.
    pub peer: NodeId,
    /// The peer's socket address.
    pub addr: SocketAddr,
    /// Our end of the connection.
    pub local_addr: SocketAddr,
    /// Who dialed.
    pub direction: Direction,
    /// Agreed protocol version.
    pub version: u16,
    /// The peer's listen port from its handshake.
    pub peer_listen_port: u16,
    /// The largest packet the peer accepts, from its handshake.
    pub peer_max_packet: u32,
}

/// Smallest queue budget: room for a few ordinary packets whatever the caller asks for.
pub const MIN_QUEUE_BYTES: usize = crate::config::LimitsConfig::MIN_SESSION_QUEUE_BYTES;

/// Permits a frame of `len` bytes takes from a queue of `capacity` bytes. A frame larger than
/// the whole budget takes all of it, so it waits for an empty queue instead of never fitting.
fn permits_for(len: usize, capacity: usize) -> u32 {
    // `capacity` is at most u32::MAX (see `new_session`), so this cannot truncate.
    len.min(capacity) as u32
}

/// Creates the handle of a new P2P session, to pass to [`run`]. `queue_bytes` bounds the
/// bytes of the packets waiting to be written (at least [`MIN_QUEUE_BYTES`], at most
/// `u32::MAX`).
pub fn new_session(id: u64, info: SessionInfo, queue_bytes: usize) -> SessionHandle {
    new_framed_session(id, info, queue_bytes)
}

/// Like [`new_session`] for a session over framing `F`, to pass to [`run_framed`].
pub fn new_framed_session<F: Framing>(
    id: u64,
    info: SessionInfo,
    queue_bytes: usize,
) -> SessionHandle<F> {
    let capacity = queue_bytes.clamp(MIN_QUEUE_BYTES, u32::MAX as usize);
    SessionHandle(Arc::new(Session {
        id,
        peer: info.peer,
        addr: info.addr,
        local_addr: info.local_addr,
        direction: info.direction,
        since: SystemTime::now(),
        version: info.version,
        peer_listen_port: info.peer_listen_port,
        peer_max_packet: info.peer_max_packet,
        stats: SessionStats::default(),
        created: Instant::now(),
        heard_ms: AtomicU64::new(0),
        outbox: Mutex::new(Outbox::default()),
        budget: Semaphore::new(capacity),
        capacity,
        shared: Shared::default(),
        framing: PhantomData,
    }))
}

impl<F: Framing> SessionHandle<F> {
    /// Queues one encoded packet, failing at once when the queue has no room for its bytes.
    /// A refusal is counted in [`SessionStats::dropped_out`].
    pub fn try_send(&self, frame: Bytes) -> Result<(), QueueError> {
        self.offer(frame).map_err(|(e, _)| {
            if e == QueueError::Full {
                self.count_drop();
            }
            e
        })
    }

    /// Queues one encoded packet if there is room now, and hands it back otherwise. Unlike
    /// [`try_send`](Self::try_send) a refusal is not counted as a drop, since the caller may
    /// still [`send`](Self::send) it; a caller that gives up calls
    /// [`count_drop`](Self::count_drop).
    pub fn offer(&self, frame: Bytes) -> Result<(), (QueueError, Bytes)> {
        let permits = permits_for(frame.len(), self.capacity);
        match self.budget.try_acquire_many(permits) {
            // The writer returns the permits once the bytes are on the stream.
            Ok(permit) => permit.forget(),
            Err(TryAcquireError::NoPermits) => return Err((QueueError::Full, frame)),
            Err(TryAcquireError::Closed) => return Err((QueueError::Closed, frame)),
        }
        self.append(frame, permits as usize)
    }

    /// Like [`offer`](Self::offer) for a frame shared with other queues (the copies of a
    /// broadcast): a small frame is copied in from the reference, so the shared buffer's
    /// count is not touched; a big one is queued by reference.
    pub fn offer_shared(&self, frame: &Bytes) -> Result<(), QueueError> {
        if frame.len() >= BIG_FRAME {
            return self.offer(frame.clone()).map_err(|(e, _)| e);
        }
        let len = frame.len();
        self.offer_encoded(len, |out| out.extend_from_slice(frame))
    }

    /// Queues a packet of exactly `len` bytes that `encode` writes straight into the queue,
    /// if there is room now: no buffer of its own, no copy. Fails without calling `encode`.
    /// A refusal is not counted as a drop (see [`offer`](Self::offer)).
    ///
    /// `encode` runs under the queue's lock: it must only write its `len` bytes.
    pub fn offer_encoded(
        &self,
        len: usize,
        encode: impl FnOnce(&mut BytesMut),
    ) -> Result<(), QueueError> {
        let permits = permits_for(len, self.capacity);
        match self.budget.try_acquire_many(permits) {
            Ok(permit) => permit.forget(),
            Err(TryAcquireError::NoPermits) => return Err(QueueError::Full),
            Err(TryAcquireError::Closed) => return Err(QueueError::Closed),
        }
        let mut outbox = self.outbox.lock();
        if outbox.closed {
            return Err(QueueError::Closed);
        }
        let was_empty = outbox.is_empty();
        outbox.reserve(len);
        encode(&mut outbox.batch);
        // An empty frame is never a chunk: the writer takes a write of zero bytes for a
        // closed stream.
        if F::COALESCE || outbox.batch.is_empty() {
            outbox.batch_permits += permits as usize;
        } else {
            // The batch holds nothing else in this mode: the split is exactly this frame,
            // sharing the batch's allocation.
            let frame = outbox.batch.split().freeze();
            outbox.chunks.push_back((frame, permits as usize));
        }
        outbox.frames += 1;
        drop(outbox);
        self.wake_if(was_empty);
        Ok(())
    }

    /// Puts a frame whose permits are taken into the outbox.
    fn append(&self, frame: Bytes, permits: usize) -> Result<(), (QueueError, Bytes)> {
        let mut outbox = self.outbox.lock();
        if outbox.closed {
            return Err((QueueError::Closed, frame));
        }
        let was_empty = outbox.is_empty();
        // As in `offer_encoded`, an empty frame is never a chunk.
        if frame.len() >= BIG_FRAME || (!F::COALESCE && !frame.is_empty()) {
            outbox.push_chunk(frame, permits);
        } else {
            outbox.reserve(frame.len());
            outbox.batch.extend_from_slice(&frame);
            outbox.batch_permits += permits;
        }
        outbox.frames += 1;
        drop(outbox);
        self.wake_if(was_empty);
        Ok(())
    }

    /// Wakes the session's task for an outbox that was empty; one that was not already has
    /// a wake-up on its way.
    fn wake_if(&self, was_empty: bool) {
        if was_empty {
            self.shared.waker.wake();
        }
    }

    /// Takes the next thing to write, for the session's task: the oldest chunk, else the
    /// whole batch swapped with `spare` (which must be empty; its allocation becomes the
    /// senders' next batch). Also returns how many frames were queued since the last take.
    pub(crate) fn take(&self, spare: &mut BytesMut) -> (Option<Taken>, u64) {
        let mut outbox = self.outbox.lock();
        let frames = std::mem::take(&mut outbox.frames);
        let taken = if let Some((chunk, permits)) = outbox.chunks.pop_front() {
            Some(Taken::Chunk(chunk, permits))
        } else if outbox.batch.is_empty() {
            if !F::COALESCE {
                // Frames of this mode are split off the batch and the writer's buffer is not
                // swapped in, so the batch would keep its allocation on an idle link.
                outbox.batch = BytesMut::new();
            }
            None
        } else {
            std::mem::swap(&mut outbox.batch, spare);
            Some(Taken::Batch(std::mem::take(&mut outbox.batch_permits)))
        };
        (taken, frames)
    }

    /// Ends the queue, for the session's task as it stops: later sends fail with
    /// [`QueueError::Closed`], senders waiting for room are woken to fail, and what was
    /// still queued is returned, in queue order.
    pub(crate) fn close_queue(&self) -> Vec<Bytes> {
        self.budget.close();
        let mut outbox = self.outbox.lock();
        outbox.closed = true;
        let mut left: Vec<Bytes> = outbox.chunks.drain(..).map(|(chunk, _)| chunk).collect();
        let batch = std::mem::take(&mut outbox.batch);
        if !batch.is_empty() {
            left.push(batch.freeze());
        }
        left
    }

    /// Counts one packet given up for lack of queue room in [`SessionStats::dropped_out`].
    pub fn count_drop(&self) {
        SessionStats::add(&self.stats.dropped_out, 1);
    }

    /// Queues one encoded packet, waiting until the queue has room for its bytes. Fails only
    /// when the session ends.
    pub async fn send(&self, frame: Bytes) -> Result<(), QueueError> {
        let permits = permits_for(frame.len(), self.capacity);
        match self.budget.acquire_many(permits).await {
            Ok(permit) => permit.forget(),
            Err(_) => return Err(QueueError::Closed),
        }
        self.append(frame, permits as usize).map_err(|(e, _)| e)
    }

    /// Bytes queued and not yet written to the stream.
    pub fn queued_bytes(&self) -> usize {
        self.capacity
            .saturating_sub(self.budget.available_permits())
    }

    /// The queue's bound in bytes.
    pub fn queue_capacity(&self) -> usize {
        self.capacity
    }

    /// Asks the session to end: it writes what is already queued, shuts the stream down, reads
    /// what the peer still sends for a short while, and stops. The first reason given wins.
    pub fn close(&self, reason: CloseReason) {
        let mut slot = self.shared.close.lock();
        if slot.is_none() {
            *slot = Some(reason);
        }
        drop(slot);
        self.shared.waker.wake();
    }

    /// Ends the session at once: unlike [`close`](Self::close) nothing queued is flushed and
    /// nothing more is read or delivered. The first reason given wins.
    pub fn close_now(&self, reason: CloseReason) {
        self.shared.abort.store(true, Ordering::Release);
        self.close(reason);
    }

    /// Whether the session's task has stopped or been asked to stop.
    pub fn is_closed(&self) -> bool {
        self.outbox.lock().closed || self.shared.close.lock().is_some()
    }

    /// Whether [`close_now`](Self::close_now) was asked for.
    #[cfg(test)]
    pub(crate) fn closes_at_once(&self) -> bool {
        self.shared.abort.load(Ordering::Acquire)
    }

    /// Whether the session's task has stopped (a close that is still draining is not).
    pub fn is_finished(&self) -> bool {
        self.outbox.lock().closed
    }

    /// How long nothing has been read from the peer.
    pub fn silent_for(&self) -> Duration {
        let heard = self.created + Duration::from_millis(self.heard_ms.load(Ordering::Relaxed));
        Instant::now().saturating_duration_since(heard)
    }

    /// Records a read from the peer at `now`, for [`silent_for`](Self::silent_for).
    pub(crate) fn heard(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.created).as_millis();
        self.heard_ms
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}
