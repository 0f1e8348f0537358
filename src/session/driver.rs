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

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};
use tracing::{debug, warn};

use super::{
    CloseReason, Inbound, Pending, SessionConfig, SessionHandle, SessionQueue, SessionStats,
};
use crate::wire::{Decoder, Ext, Packet, PacketType};

/// Stop pulling from the queue once this much is waiting to be written: large enough that a
/// TLS write carries many records' worth, small enough to keep latency and memory flat.
const WRITE_BATCH: usize = 256 * 1024;
/// Read at most this much per system call.
const READ_CHUNK: usize = 64 * 1024;
/// Packets handled per wake before yielding, so one busy peer cannot starve the others
/// sharing this worker thread.
const BUDGET: usize = 256;

/// Runs a session until it ends and returns why. `initial` holds bytes already read from the
/// stream (after the handshake packet) that belong to this session.
pub async fn run<S>(
    mut stream: S,
    handle: SessionHandle,
    queue: SessionQueue,
    inbound: Arc<dyn Inbound>,
    cfg: SessionConfig,
    initial: BytesMut,
) -> CloseReason
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let now = Instant::now();
    let mut st = State {
        rx: queue.rx,
        shared: queue.shared,
        stats: queue.stats,
        wbuf: BytesMut::with_capacity(WRITE_BATCH),
        rbuf: initial,
        decoder: Decoder::new(cfg.max_packet),
        pending: None,
        timer: Box::pin(tokio::time::sleep_until(now + cfg.heartbeat_interval)),
        last_read: now,
        last_write: now,
        closing: None,
        shut_down: false,
        heartbeat: Packet::heartbeat(cfg.version).to_bytes(),
        cfg,
    };
    let reason = poll_fn(|cx| st.poll(cx, &mut stream, &handle, &*inbound)).await;
    // Make later sends fail fast instead of filling a queue nobody drains.
    st.rx.close();
    debug!(peer = %handle.peer.short(), conn = handle.id, %reason, "session ended");
    reason
}

struct State {
    rx: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    shared: Arc<super::Shared>,
    stats: Arc<SessionStats>,
    wbuf: BytesMut,
    rbuf: BytesMut,
    decoder: Decoder,
    pending: Option<Pending>,
    timer: Pin<Box<Sleep>>,
    last_read: Instant,
    last_write: Instant,
    /// Set once the session is winding down, with the reason and the deadline.
    closing: Option<(CloseReason, Instant)>,
    shut_down: bool,
    heartbeat: bytes::Bytes,
    cfg: SessionConfig,
}

impl State {
    fn poll<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        stream: &mut S,
        handle: &SessionHandle,
        inbound: &dyn Inbound,
    ) -> Poll<CloseReason> {
        if self.closing.is_none() {
            if let Some(reason) = self.close_requested(cx) {
                self.begin_close(reason);
            }
        }
        if let Err(reason) = self.poll_write(cx, stream) {
            return Poll::Ready(self.finish(reason));
        }
        match self.poll_read(cx, stream, handle, inbound) {
            Err(reason) => return Poll::Ready(self.finish(reason)),
            Ok(true) => {
                // Budget used up: let other tasks run, then come straight back.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Ok(false) => {}
        }
        if let Some(reason) = self.poll_timers(cx) {
            return Poll::Ready(self.finish(reason));
        }
        Poll::Pending
    }

    fn close_requested(&mut self, cx: &mut Context<'_>) -> Option<CloseReason> {
        // Registering first and then checking the slot closes the race with `close`.
        self.shared.waker.register(cx.waker());
        self.shared.close.lock().clone()
    }

    fn begin_close(&mut self, reason: CloseReason) {
        debug!(%reason, "session closing");
        self.closing = Some((reason, Instant::now() + self.cfg.linger));
        self.timer.as_mut().reset(Instant::now() + self.cfg.linger);
    }

    /// The reason the session ends with: a requested close outranks what happened after it.
    fn finish(&mut self, reason: CloseReason) -> CloseReason {
        match self.closing.take() {
            Some((requested, _)) => requested,
            None => reason,
        }
    }

    /// Moves queued frames into the write buffer and the buffer onto the stream until the
    /// stream would block or nothing is left.
    fn poll_write<S: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        stream: &mut S,
    ) -> Result<(), CloseReason> {
        loop {
            let mut pulled = 0u64;
            while self.wbuf.len() < WRITE_BATCH && !self.shut_down {
                match self.rx.poll_recv(cx) {
                    Poll::Ready(Some(frame)) => {
                        self.wbuf.extend_from_slice(&frame);
                        pulled += 1;
                    }
                    // All handles gone: the peer manager dropped us.
                    Poll::Ready(None) => {
                        if self.closing.is_none() {
                            self.begin_close(CloseReason::Removed);
                        }
                        break;
                    }
                    Poll::Pending => break,
                }
            }
            SessionStats::add(&self.stats.packets_out, pulled);
            if self.wbuf.is_empty() {
                if self.closing.is_some() && !self.shut_down {
                    match Pin::new(&mut *stream).poll_shutdown(cx) {
                        Poll::Ready(_) => self.shut_down = true,
                        Poll::Pending => return Ok(()),
                    }
                }
                return Ok(());
            }
            match Pin::new(&mut *stream).poll_write(cx, &self.wbuf) {
                Poll::Ready(Ok(0)) => return Err(CloseReason::Io("write returned zero".into())),
                Poll::Ready(Ok(n)) => {
                    self.wbuf.advance(n);
                    self.last_write = Instant::now();
                    SessionStats::add(&self.stats.bytes_out, n as u64);
                    if self.wbuf.is_empty() {
                        // Keep the allocation but drop the offset so the buffer stays compact.
                        self.wbuf.clear();
                        if let Poll::Ready(Err(e)) = Pin::new(&mut *stream).poll_flush(cx) {
                            return Err(CloseReason::Io(e.to_string()));
                        }
                    }
                }
                Poll::Ready(Err(e)) => return Err(CloseReason::Io(e.to_string())),
                Poll::Pending => return Ok(()),
            }
        }
    }

    /// Delivers decoded packets and reads more. Returns `Ok(true)` when it stopped because the
    /// per-wake budget ran out.
    fn poll_read<S: AsyncRead + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        stream: &mut S,
        handle: &SessionHandle,
        inbound: &dyn Inbound,
    ) -> Result<bool, CloseReason> {
        let mut handled = 0usize;
        loop {
            if let Some(p) = self.pending.as_mut() {
                match p.as_mut().poll(cx) {
                    Poll::Ready(()) => self.pending = None,
                    Poll::Pending => return Ok(false),
                }
            }
            // Finish the bytes already read before reading more.
            loop {
                if handled >= BUDGET {
                    return Ok(true);
                }
                let packet = match self.decoder.decode(&mut self.rbuf) {
                    Ok(Some(p)) => p,
                    Ok(None) => break,
                    Err(e) => {
                        warn!(peer = %handle.peer.short(), conn = handle.id, error = %e,
                            "malformed packet, closing the connection");
                        return Err(CloseReason::Protocol(e.to_string()));
                    }
                };
                handled += 1;
                SessionStats::add(&self.stats.packets_in, 1);
                match packet.packet_type {
                    PacketType::HEARTBEAT => continue,
                    PacketType::GOODBYE if !packet.ext.contains(Ext::RESPONSE) => {
                        let why = String::from_utf8_lossy(&packet.payload).into_owned();
                        return Err(CloseReason::PeerLeft(why));
                    }
                    _ => {}
                }
                if let Some(mut p) = inbound.on_packet(handle, packet) {
                    match p.as_mut().poll(cx) {
                        Poll::Ready(()) => {}
                        Poll::Pending => {
                            self.pending = Some(p);
                            return Ok(false);
                        }
                    }
                }
            }
            self.rbuf.reserve(READ_CHUNK);
            match tokio_util::io::poll_read_buf(Pin::new(&mut *stream), cx, &mut self.rbuf) {
                Poll::Ready(Ok(0)) => return Err(CloseReason::ClosedByPeer),
                Poll::Ready(Ok(n)) => {
                    self.last_read = Instant::now();
                    SessionStats::add(&self.stats.bytes_in, n as u64);
                }
                Poll::Ready(Err(e)) => return Err(CloseReason::Io(e.to_string())),
                Poll::Pending => return Ok(false),
            }
        }
    }

    /// Sends a heartbeat on a link idle for a heartbeat interval, drops a silent peer, and
    /// ends a close that has lingered long enough.
    fn poll_timers(&mut self, cx: &mut Context<'_>) -> Option<CloseReason> {
        loop {
            let now = Instant::now();
            if let Some((reason, deadline)) = &self.closing {
                if now >= *deadline {
                    return Some(reason.clone());
                }
                self.timer.as_mut().reset(*deadline);
            } else {
                let idle_at = self.last_read + self.cfg.idle_timeout;
                if now >= idle_at {
                    return Some(CloseReason::IdleTimeout);
                }
                let beat_at = self.last_write + self.cfg.heartbeat_interval;
                if now >= beat_at {
                    if self.wbuf.is_empty() {
                        self.wbuf.extend_from_slice(&self.heartbeat);
                        SessionStats::add(&self.stats.packets_out, 1);
                    }
                    // Counts as written for scheduling even if the stream is slow to take it.
                    self.last_write = now;
                    // The heartbeat was buffered outside `poll_write`: get polled again so
                    // it goes out.
                    cx.waker().wake_by_ref();
                    continue;
                }
                self.timer.as_mut().reset(idle_at.min(beat_at));
            }
            return match self.timer.as_mut().poll(cx) {
                Poll::Ready(()) => continue,
                Poll::Pending => None,
            };
        }
    }
}
