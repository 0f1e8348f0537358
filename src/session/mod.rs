//! One task per live connection: framing, heartbeats, idle timeout, and a write queue bounded
//! in bytes whose writer batches queued packets into large TLS writes.
//!
//! The queue's bound is a [`Semaphore`] holding one permit per byte: a sender takes a frame's
//! length in permits before queuing it (waiting for them, or failing at once), and the
//! writer gives them back once the frame is written to the stream. Memory held for a peer is
//! therefore bounded by its queue budget plus one write batch, however slow the peer reads.
//!
//! A session knows nothing of routing or of the peer set: it moves encoded packets out of its
//! queue onto the stream, and hands each decoded packet to an [`Inbound`] sink. Sessions are
//! generic over the stream so tests can drive them over in-memory duplex pipes.

mod driver;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::{mpsc, Semaphore, TryAcquireError};

use crate::identity::NodeId;
use crate::wire::Packet;

pub use driver::run;

/// Timers and limits of one session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// A heartbeat goes out when nothing has been written for this long.
    pub heartbeat_interval: Duration,
    /// The peer is dropped when nothing has been read for this long.
    pub idle_timeout: Duration,
    /// Largest packet accepted from the peer.
    pub max_packet: u32,
    /// Protocol version agreed in the handshake; written into heartbeats.
    pub version: u16,
    /// How long a closing session may spend flushing its queue and reading the peer's last
    /// packets before it drops the connection.
    pub linger: Duration,
}

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
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::IdleTimeout => f.write_str("idle-timeout"),
            CloseReason::ClosedByPeer => f.write_str("closed-by-peer"),
            CloseReason::PeerLeft(why) => write!(f, "peer-left: {why}"),
            CloseReason::Io(e) => write!(f, "io: {e}"),
            CloseReason::Protocol(e) => write!(f, "protocol: {e}"),
            CloseReason::Duplicate => f.write_str("duplicate"),
            CloseReason::Shutdown => f.write_str("shutdown"),
            CloseReason::Removed => f.write_str("removed"),
            CloseReason::Blacklisted => f.write_str("blacklisted"),
            CloseReason::NotWhitelisted => f.write_str("not-whitelisted"),
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
    waker: AtomicWaker,
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

/// A cloneable handle to a live session: queue packets, read counters, ask it to close.
#[derive(Clone)]
pub struct SessionHandle {
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
    /// Traffic counters.
    pub stats: Arc<SessionStats>,
    // Unbounded as a channel, bounded in bytes by `budget`: nothing is sent on it without
    // first taking its length in permits.
    tx: mpsc::UnboundedSender<Bytes>,
    budget: Arc<Semaphore>,
    capacity: usize,
    shared: Arc<Shared>,
}

impl fmt::Debug for SessionHandle {
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
}

/// The receiving end of a session's write queue, passed to [`run`].
pub struct SessionQueue {
    rx: mpsc::UnboundedReceiver<Bytes>,
    budget: Arc<Semaphore>,
    capacity: usize,
    shared: Arc<Shared>,
    stats: Arc<SessionStats>,
}

/// Smallest queue budget: room for a few ordinary packets whatever the caller asks for.
pub const MIN_QUEUE_BYTES: usize = 64 * 1024;

/// Permits a frame of `len` bytes takes from a queue of `capacity` bytes. A frame larger than
/// the whole budget takes all of it, so it waits for an empty queue instead of never fitting.
fn permits_for(len: usize, capacity: usize) -> u32 {
    // `capacity` is at most u32::MAX (see `new_session`), so this cannot truncate.
    len.min(capacity) as u32
}

/// Creates the handle and the queue of a new session. `queue_bytes` bounds the bytes of the
/// packets waiting to be written (at least [`MIN_QUEUE_BYTES`], at most `u32::MAX`).
pub fn new_session(
    id: u64,
    info: SessionInfo,
    queue_bytes: usize,
) -> (SessionHandle, SessionQueue) {
    let capacity = queue_bytes.clamp(MIN_QUEUE_BYTES, u32::MAX as usize);
    let (tx, rx) = mpsc::unbounded_channel();
    let budget = Arc::new(Semaphore::new(capacity));
    let shared = Arc::new(Shared::default());
    let stats = Arc::new(SessionStats::default());
    let handle = SessionHandle {
        id,
        peer: info.peer,
        addr: info.addr,
        local_addr: info.local_addr,
        direction: info.direction,
        since: SystemTime::now(),
        version: info.version,
        peer_listen_port: info.peer_listen_port,
        stats: stats.clone(),
        tx,
        budget: budget.clone(),
        capacity,
        shared: shared.clone(),
    };
    (
        handle,
        SessionQueue {
            rx,
            budget,
            capacity,
            shared,
            stats,
        },
    )
}

impl SessionHandle {
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
        match self
            .budget
            .try_acquire_many(permits_for(frame.len(), self.capacity))
        {
            Ok(permit) => {
                // The writer returns the permits once the bytes are on the stream.
                permit.forget();
                self.tx.send(frame).map_err(|e| (QueueError::Closed, e.0))
            }
            Err(TryAcquireError::NoPermits) => Err((QueueError::Full, frame)),
            Err(TryAcquireError::Closed) => Err((QueueError::Closed, frame)),
        }
    }

    /// Counts one packet given up for lack of queue room in [`SessionStats::dropped_out`].
    pub fn count_drop(&self) {
        SessionStats::add(&self.stats.dropped_out, 1);
    }

    /// Queues one encoded packet, waiting until the queue has room for its bytes. Fails only
    /// when the session ends.
    pub async fn send(&self, frame: Bytes) -> Result<(), QueueError> {
        match self
            .budget
            .acquire_many(permits_for(frame.len(), self.capacity))
            .await
        {
            Ok(permit) => {
                permit.forget();
                self.tx.send(frame).map_err(|_| QueueError::Closed)
            }
            Err(_) => Err(QueueError::Closed),
        }
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

    /// Whether the session's task has stopped or been asked to stop.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed() || self.shared.close.lock().is_some()
    }
}

/// A delivery that could not complete at once (the receiver's queue was full). The session
/// stops reading until it completes, so a slow consumer slows its sender down instead of
/// growing memory; writes and heartbeats go on meanwhile.
pub type Pending = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Where a session hands the packets it decodes.
pub trait Inbound: Send + Sync + 'static {
    /// Takes one packet from `from`. `frame` is the whole packet as received (the packet's
    /// payload is a slice of it), for forwarding without re-encoding. Returns a future when
    /// delivery has to wait for room.
    fn on_packet(&self, from: &SessionHandle, packet: Packet, frame: Bytes) -> Option<Pending>;
}
