//! The session task: one poll loop that writes, reads and keeps time on a single stream.
//!
//! Reading and writing happen in the same task on purpose: splitting an OpenSSL stream into
//! halves puts a lock on every call and has been seen to hang when a read needed to write.
//! Every branch below is non-blocking, so the writer keeps flushing (and heartbeating) even
//! while delivery of an inbound packet waits for a slow consumer.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};
use tracing::{debug, warn};

use super::writer::{WriteStop, Writer, WRITE_BUDGET};
use super::{
    CloseReason, FrameKind, Framing, Handler, Inbound, Leftover, P2pFraming, Pending,
    SessionConfig, SessionHandle, SessionStats, READ_BUDGET_PACKETS,
};

/// Room made in the read buffer before each read: one whole TLS record (OpenSSL hands out at
/// most one record's 16 KiB of plaintext per read) plus a partial frame's worth.
const READ_CHUNK: usize = 17 * 1024;

/// Runs a P2P session until it ends and returns why. `initial` holds bytes already read from
/// the stream (after the handshake packet) that belong to this session.
pub fn run<S>(
    stream: S,
    handle: SessionHandle,
    inbound: Arc<dyn Inbound>,
    cfg: SessionConfig,
    initial: BytesMut,
) -> impl Future<Output = CloseReason>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let framing = P2pFraming::on_link(cfg.max_packet, cfg.version, handle.peer);
    run_framed(stream, handle, framing, inbound, cfg, initial)
}

/// Runs a session over `framing` until it ends and returns why, handing data frames to
/// `handler`. `initial` holds bytes already read from the stream that belong to this session.
/// `cfg`'s packet limit and version are the caller's to build `framing` from; they are not
/// read here.
pub fn run_framed<S, F, H>(
    mut stream: S,
    handle: SessionHandle<F>,
    framing: F,
    handler: Arc<H>,
    cfg: SessionConfig,
    initial: BytesMut,
) -> impl Future<Output = CloseReason>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Framing,
    H: Handler<F> + ?Sized,
{
    // The state is built here and moved into the future whole: an `async fn` would keep its
    // arguments beside the state they are moved into, in every connection's task.
    let now = Instant::now();
    let mut st = State {
        writer: Writer::new(handle.peer_max_packet),
        session: handle,
        rbuf: initial,
        framing,
        pending: None,
        timer: None,
        last_read: now,
        last_write: now,
        closing: None,
        shut_down: false,
        cfg,
    };
    async move {
        // The clocks start when the task first runs, not when its future was made.
        let now = Instant::now();
        st.last_read = now;
        st.last_write = now;
        let reason = poll_fn(|cx| st.poll(cx, &mut stream, &*handler)).await;
        // Make later sends fail fast, and wake senders waiting for room, instead of filling a
        // queue nobody drains.
        let queued = st.session.close_queue();
        debug!(peer = %st.session.peer.short(), conn = st.session.id, %reason, "session ended");
        // What was not written is handed over rather than dropped, while the stream is still
        // held: by the time the peer sees the link close, it has been reported.
        let left = st.leftover(queued);
        if !left.is_empty() {
            handler.on_leftover(&st.session, left, &reason);
        }
        reason
    }
}

/// What the reads of one wake have used: the packets decoded and the bytes read.
#[derive(Default)]
struct ReadBudget {
    packets: usize,
    bytes: usize,
}

/// What one call of `State::poll_read` did.
#[derive(Default)]
struct ReadOutcome {
    /// It stopped because the wake's read budget is spent.
    spent: bool,
    /// It handed at least one data frame to the handler.
    delivered: bool,
}

struct State<F> {
    /// The shared side: the queue's byte budget (permits come back there once their bytes
    /// are written), the close request, the counters.
    session: SessionHandle<F>,
    /// The two write slots and the order they are served in.
    writer: Writer,
    rbuf: BytesMut,
    framing: F,
    pending: Option<Pending>,
    /// Made on the first poll, since a timer needs the runtime and the future may be made
    /// outside it.
    timer: Option<Pin<Box<Sleep>>>,
    last_read: Instant,
    last_write: Instant,
    /// Set once the session is winding down, with the reason and the deadline.
    closing: Option<(CloseReason, Instant)>,
    shut_down: bool,
    cfg: SessionConfig,
}

impl<F: Framing> State<F> {
    fn poll<S: AsyncRead + AsyncWrite + Unpin, H: Handler<F> + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        stream: &mut S,
        handler: &H,
    ) -> Poll<CloseReason> {
        // Registered before the outbox and the close slot are looked at, so a frame queued
        // or a close asked for after the look still wakes us.
        self.session.shared.waker.register(cx.waker());
        if self
            .session
            .shared
            .abort
            .load(std::sync::atomic::Ordering::Acquire)
        {
            if let Some(reason) = self.close_requested() {
                return Poll::Ready(reason);
            }
        }
        if self.closing.is_none() {
            if let Some(reason) = self.close_requested() {
                self.begin_close(reason);
            }
        }
        // The wake's budget is spent in slices, writing then reading: a session writing a
        // bulk stream still reads what comes back after each slice, and yields once it has
        // delivered something, so that whoever waits for it (a response's requester) runs
        // before the rest of the bulk does.
        let mut write_left = WRITE_BUDGET;
        let mut reads = ReadBudget::default();
        let budget_used = loop {
            let wrote = match self.poll_write(cx, stream, &mut write_left) {
                Err(reason) => return Poll::Ready(self.finish(reason)),
                Ok(stop) => stop,
            };
            self.session.begin_delivering();
            let read = self.poll_read(cx, stream, handler, &mut reads);
            // Frames queued while delivering woke nobody: written in the next slice, or
            // (budget spent) on the wake-up this poll gives itself below. A request answered
            // on this task and its response then cost the session one poll.
            let queued = self.session.end_delivering();
            let read = match read {
                Err(reason) => return Poll::Ready(self.finish(reason)),
                Ok(read) => read,
            };
            // A blocked stream wakes us when it takes more, queued frames or not.
            let write_more = match wrote {
                WriteStop::Slice => true,
                WriteStop::Empty => queued,
                WriteStop::Blocked => false,
            };
            if !write_more {
                break read.spent;
            }
            if write_left == 0 {
                break true;
            }
            if read.spent || read.delivered {
                // Yield now, but first send what the delivery queued (a response made on
                // this task).
                let more = if queued {
                    match self.poll_write(cx, stream, &mut write_left) {
                        Err(reason) => return Poll::Ready(self.finish(reason)),
                        Ok(stop) => stop == WriteStop::Slice,
                    }
                } else {
                    true
                };
                break read.spent || more;
            }
        };
        // Timers run even when the read budget ran out: a link busy only inbound must still
        // send heartbeats, or the peer, which hears nothing back, drops it as idle.
        if let Some(reason) = self.poll_timers(cx) {
            return Poll::Ready(self.finish(reason));
        }
        if budget_used {
            // Let other tasks run, then come straight back.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }

    /// What the writer had not finished when the session ended, with `queued`, what the
    /// outbox still held: the chunk being written counts from its start, with the bytes the
    /// stream took of it.
    fn leftover(&mut self, queued: Vec<Bytes>) -> Leftover {
        let (writing, mut unsent) = self.writer.leftover();
        unsent.extend(queued);
        Leftover::new(writing, unsent)
    }

    fn close_requested(&self) -> Option<CloseReason> {
        self.session.shared.close.lock().clone()
    }

    fn begin_close(&mut self, reason: CloseReason) {
        debug!(%reason, "session closing");
        // `poll_timers` arms the timer for the deadline before this poll returns.
        self.closing = Some((reason, Instant::now() + self.cfg.linger));
    }

    /// The reason the session ends with: a requested close outranks what happened after it.
    fn finish(&mut self, reason: CloseReason) -> CloseReason {
        match self.closing.take() {
            Some((requested, _)) => requested,
            None => reason,
        }
    }

    /// Moves queued frames onto the stream until it would block, nothing is left, or a slice
    /// of the `left` write budget went out with more to write.
    fn poll_write<S: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        stream: &mut S,
        left: &mut usize,
    ) -> Result<WriteStop, CloseReason> {
        self.writer.poll_write(
            cx,
            stream,
            &self.session,
            &self.framing,
            self.closing.is_some(),
            &mut self.shut_down,
            &mut self.last_write,
            left,
        )
    }

    /// Delivers decoded frames and reads more, until the stream has nothing or the wake's
    /// read budget, shared by its slices, is spent.
    fn poll_read<S: AsyncRead + Unpin, H: Handler<F> + ?Sized>(
        &mut self,
        cx: &mut Context<'_>,
        stream: &mut S,
        handler: &H,
        budget: &mut ReadBudget,
    ) -> Result<ReadOutcome, CloseReason> {
        let mut out = ReadOutcome::default();
        loop {
            if let Some(p) = self.pending.as_mut() {
                match p.as_mut().poll(cx) {
                    Poll::Ready(()) => self.pending = None,
                    Poll::Pending => return Ok(out),
                }
            }
            // Finish the bytes already read before reading more.
            loop {
                if budget.packets >= READ_BUDGET_PACKETS {
                    out.spent = true;
                    return Ok(out);
                }
                if let Some((_, deadline)) = &self.closing {
                    // A closing connection (a retired duplicate) delivers until its drain
                    // deadline and not after: `poll_timers` ends it then.
                    if Instant::now() >= *deadline {
                        return Ok(out);
                    }
                }
                let frame = match self.framing.decode(&mut self.rbuf) {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => {
                        warn!(peer = %self.session.peer.short(), conn = self.session.id, error = %e,
                            "malformed packet, closing the connection");
                        return Err(F::close_reason(e));
                    }
                };
                budget.packets += 1;
                SessionStats::add(&self.session.stats.packets_in, 1);
                match self.framing.kind(&frame) {
                    FrameKind::Data => out.delivered = true,
                    FrameKind::Heartbeat => continue,
                    FrameKind::Goodbye(why) => return Err(CloseReason::PeerLeft(why)),
                }
                if let Some(mut p) = handler.on_frame(&self.session, frame) {
                    match p.as_mut().poll(cx) {
                        Poll::Ready(()) => {}
                        Poll::Pending => {
                            self.pending = Some(p);
                            return Ok(out);
                        }
                    }
                }
            }
            self.make_read_room();
            match tokio_util::io::poll_read_buf(Pin::new(&mut *stream), cx, &mut self.rbuf) {
                Poll::Ready(Ok(0)) => return Err(CloseReason::ClosedByPeer),
                Poll::Ready(Ok(n)) => {
                    self.last_read = Instant::now();
                    self.session.heard(self.last_read);
                    SessionStats::add(&self.session.stats.bytes_in, n as u64);
                    budget.bytes = budget.bytes.saturating_add(n);
                    if budget.bytes >= self.cfg.read_budget_bytes {
                        // Decode what is in on the next wake; yield the worker now.
                        out.spent = true;
                        return Ok(out);
                    }
                }
                Poll::Ready(Err(e)) => return Err(CloseReason::Io(e.to_string())),
                Poll::Pending => {
                    if self.rbuf.is_empty() {
                        // Nothing partial is waiting: hold no read buffer while the link is
                        // quiet (frames already delivered keep their own share alive).
                        self.rbuf = BytesMut::new();
                    }
                    return Ok(out);
                }
            }
        }
    }

    /// Makes room in `rbuf` for the next read without copying what was already consumed.
    ///
    /// Decoded frames are slices of `rbuf`'s allocation. `BytesMut::reserve` on a buffer whose
    /// frames are all gone may grow the allocation in place, copying the consumed front
    /// along (16 KiB a read at small frames); a fresh buffer with only the partial frame
    /// copied costs one allocation instead. A partial frame larger than a read chunk has
    /// room reserved by the decoder (one step of the rest at most), so it reads into that.
    fn make_read_room(&mut self) {
        let spare = self.rbuf.capacity() - self.rbuf.len();
        if spare >= READ_CHUNK || self.rbuf.try_reclaim(READ_CHUNK) {
            return;
        }
        if self.rbuf.len() <= READ_CHUNK {
            let mut fresh = BytesMut::with_capacity(READ_CHUNK + self.rbuf.len());
            fresh.extend_from_slice(&self.rbuf);
            self.rbuf = fresh;
        } else if spare == 0 {
            self.rbuf.reserve(READ_CHUNK);
        }
    }

    /// Sends a heartbeat on a link idle for a heartbeat interval, drops a silent peer, and
    /// ends a close that has lingered long enough.
    fn poll_timers(&mut self, cx: &mut Context<'_>) -> Option<CloseReason> {
        loop {
            let now = Instant::now();
            let wake_at = if let Some((reason, deadline)) = &self.closing {
                if now >= *deadline {
                    return Some(reason.clone());
                }
                *deadline
            } else {
                // While a delivery waits for a slow consumer we are not reading, so silence
                // says nothing about the peer: restart the idle clock instead of dropping it.
                if self.pending.is_some() {
                    self.last_read = now;
                    self.session.heard(now);
                }
                let idle_at = self.last_read + self.cfg.idle_timeout;
                if now >= idle_at {
                    return Some(CloseReason::IdleTimeout);
                }
                let beat_at = self.last_write + self.cfg.heartbeat_interval;
                if now >= beat_at {
                    // Only between frames: a large frame may be half written.
                    // A framing whose clients send the heartbeats has an empty one.
                    let beat = self.framing.heartbeat();
                    if !beat.is_empty() && self.writer.between_frames() {
                        // Alone in the urgent slot, so it is a write of its own even for a
                        // framing that does not coalesce.
                        self.writer.push_heartbeat(beat);
                        SessionStats::add(&self.session.stats.packets_out, 1);
                    }
                    // Counts as written for scheduling even if the stream is slow to take it.
                    self.last_write = now;
                    // The heartbeat was buffered outside `poll_write`: get polled again so
                    // it goes out.
                    cx.waker().wake_by_ref();
                    continue;
                }
                idle_at.min(beat_at)
            };
            if let Some(timer) = self.timer.as_mut() {
                timer.as_mut().reset(wake_at);
            }
            let timer = self
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(wake_at)));
            return match timer.as_mut().poll(cx) {
                Poll::Ready(()) => continue,
                Poll::Pending => None,
            };
        }
    }
}
