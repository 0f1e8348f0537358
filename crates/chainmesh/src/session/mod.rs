//! One task per live connection: framing, heartbeats, idle timeout, and three write lanes
//! bounded in bytes whose writer batches queued packets into large TLS writes.
//!
//! Each [`Lane`] is an outbox: senders append small frames to the lane's batch buffer
//! (encoding a unicast straight into it), and the session's task swaps that buffer for its
//! own empty one and writes the whole batch. Frames of [`BIG_FRAME`] bytes or more are queued
//! as they are instead of copied. Two buffers, swapped: no allocation and one copy per frame
//! on a busy link.
//!
//! The writer serves the control lane, then the priority lane, then the bulk lane, and hands
//! the stream at most [`PIECE`] bytes of bulk before it looks at the other two again: bulk
//! batches are cut at frame boundaries, and on a link of protocol version 4 a bulk frame
//! longer than a piece goes out as Fragments, which the receiving session joins back
//! before decoding (`docs/protocol.md`, "Lanes and fragments").
//!
//! A lane's bound is a [`Semaphore`] holding one permit per byte: a sender takes a frame's
//! length in permits before queuing it (waiting for them, or failing at once), and the
//! writer gives them back once the frame is written to the stream. Memory held for a peer is
//! therefore bounded by its lanes' budgets plus one write batch per write slot, however slow
//! the peer reads.
//!
//! A framing that does not coalesce ([`Framing::COALESCE`]) gets every frame queued as a chunk
//! of its own, so that each write carries one frame.
//!
//! A session knows nothing of routing or of the peer set: it moves encoded frames out of its
//! lanes onto the stream, and hands each decoded data frame to a [`Handler`] (for the P2P
//! framing, an [`Inbound`] sink). When it ends with frames not written, it hands those over
//! too, once, as a [`Leftover`]: what was never handed to the stream, and what was being
//! written. Nothing is recorded per frame on the way in; the leftover is cut into frames
//! only then. Sessions are generic over the stream so tests can drive them
//! over in-memory duplex pipes, and over the [`Framing`], monomorphised.

mod driver;
mod fragment;
mod framing;
mod lanes;
mod leftover;
#[cfg(test)]
mod tests;
mod writer;

use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::task::AtomicWaker;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::identity::NodeId;

pub use driver::{run, run_framed};
pub use fragment::FragmentError;
pub use framing::{FrameKind, Framing, Handler, Inbound, LinkError, P2pFraming, Pending};
pub use lanes::Lane;
use lanes::Outbox;
pub(crate) use lanes::Taken;
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
    /// The peer's Fragments do not join into a packet (out of order, too big, malformed).
    Fragment(FragmentError),
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
            CloseReason::Fragment(_) => "fragment",
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::PeerLeft(why) => write!(f, "peer-left: {why}"),
            CloseReason::Io(e) => write!(f, "io: {e}"),
            CloseReason::Protocol(e) => write!(f, "protocol: {e}"),
            CloseReason::Fragment(e) => write!(f, "fragment: {e}"),
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
    /// Whether the task is delivering what it read, so frames queued now need no wake-up.
    delivering: Delivering,
}

/// While the session's task delivers what it read, a frame queued into an empty outbox
/// needs no wake-up: the task writes once more before it rests. Waking a task from inside
/// its own poll would only run it again for nothing, and on tokio's scheduler that keeps a
/// worker from parking in the I/O driver just when the peer's answer to what was written
/// arrives. A handler answering on the session's task ([`crate::NodeHandle::register_handler`])
/// queues its response exactly then.
#[derive(Debug, Default)]
struct Delivering(AtomicU8);

impl Delivering {
    const IDLE: u8 = 0;
    const DELIVERING: u8 = 1;
    const QUEUED: u8 = 2;

    /// The task starts delivering. Only the task calls this and [`end`](Self::end).
    fn begin(&self) {
        self.0.store(Self::DELIVERING, Ordering::Release);
    }

    /// The task stops delivering; whether a frame was queued meanwhile without a wake-up.
    /// Acquire: the frames queued before [`must_wake`](Self::must_wake) said no are seen.
    fn end(&self) -> bool {
        self.0.swap(Self::IDLE, Ordering::AcqRel) == Self::QUEUED
    }

    /// A frame was just queued into an empty outbox: whether the task must be woken, which
    /// it need not while delivering (the state says so from now on).
    fn must_wake(&self) -> bool {
        match self.0.compare_exchange(
            Self::DELIVERING,
            Self::QUEUED,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) | Err(Self::QUEUED) => false,
            Err(_) => true,
        }
    }
}

/// Frames at least this long are queued as they are rather than copied into the batch.
pub const BIG_FRAME: usize = 64 * 1024;

/// Most bytes of the bulk lane the writer hands the stream before it looks at the other
/// lanes again: batches are written up to the first frame boundary past it, and on a link
/// of protocol version 4 a bigger frame is sent as Fragments of this many bytes each.
pub const PIECE: usize = 64 * 1024;

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
    // Each lane is bounded in bytes by its budget: nothing goes in without first taking its
    // length in permits.
    outbox: Mutex<Outbox>,
    /// One per lane, in [`Lane::index`] order; each holds `capacity` permits.
    budgets: [Semaphore; 3],
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

impl<F> Session<F> {
    /// Permits a frame of `len` bytes takes from a lane. A frame larger than the whole
    /// budget takes all of it, so it waits for an empty lane instead of never fitting.
    fn permits_for(&self, len: usize) -> u32 {
        // `capacity` is at most u32::MAX (see `new_session`), so this cannot truncate.
        len.min(self.capacity) as u32
    }

    /// The byte budget of `lane`.
    fn budget(&self, lane: Lane) -> &Semaphore {
        &self.budgets[lane.index()]
    }
}

/// Creates the handle of a new P2P session, to pass to [`run`]. `queue_bytes` bounds the
/// bytes of the packets waiting to be written in each [`Lane`] (at least
/// [`MIN_QUEUE_BYTES`], at most `u32::MAX`).
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
        budgets: [(); 3].map(|()| Semaphore::new(capacity)),
        capacity,
        shared: Shared::default(),
        framing: PhantomData,
    }))
}

impl<F: Framing> SessionHandle<F> {
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
