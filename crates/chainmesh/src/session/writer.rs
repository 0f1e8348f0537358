//! The session's writer: two write slots filled from the lanes, and the order it serves them.
//!
//! The urgent slot holds what the control or priority lane had queued (a swapped batch or a
//! chunk), written whole. The bulk slot holds what the bulk lane had, written in segments:
//! up to the first frame boundary past [`PIECE`] bytes for a batch, one Fragment (a header
//! and a piece) at a time for a frame longer than a piece on a link that has Fragments.
//! Between segments the writer looks at the lanes again, and the urgent slot goes first: a
//! control or priority frame waits for at most the one segment already on its way.
//!
//! Within a segment nothing else is written: once the stream has taken part of a frame, the
//! rest of it must follow, and a write the stream refused (Pending) must be retried with the
//! same bytes at the same address, as OpenSSL requires.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWrite;
use tokio::time::Instant;

use super::{CloseReason, Framing, Lane, SessionHandle, SessionStats, Taken, PIECE};
use crate::wire::HEADER_LEN;

/// A written batch smaller than this marks a lightly used link, whose buffer is given back
/// instead of kept for the next batch: idle connections hold no write buffer, busy ones keep
/// theirs.
const LIGHT_BATCH: usize = 16 * 1024;

/// Bytes written per wake of the session's task before it reads and keeps time again: a
/// peer that reads as fast as we write never makes a write block, and without this bound a
/// sender that keeps the queue full would keep the task writing while the peer's packets,
/// heartbeats included, go unread until the link times out.
pub(super) const WRITE_BUDGET: usize = 1 << 20;

/// Bytes written before the session looks at its read side again within one wake. A
/// response that comes back while a bulk stream is being written is read (and its waiter
/// woken) after at most this much more bulk, not after the whole [`WRITE_BUDGET`].
const WRITE_SLICE: usize = 2 * PIECE;

/// Why [`Writer::poll_write`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WriteStop {
    /// A slice went out and more is queued.
    Slice,
    /// Everything queued is written.
    Empty,
    /// The stream takes no more now; it wakes the task when it does.
    Blocked,
}

/// One thing taken from a lane and being written.
struct Slot {
    /// A batch swapped out of a lane (its frames were encoded or copied there by the
    /// senders), kept whole until written, so that what is left of it when the session ends
    /// can be cut into frames from its start. Empty while the slot holds a chunk.
    batch: BytesMut,
    /// A chunk taken from a lane (a big frame, or the frames queued before one; any one
    /// frame for a framing that does not coalesce), written from its own buffer.
    chunk: Option<Bytes>,
    /// Bytes of the batch or chunk the stream has taken.
    written: usize,
    /// The stream has been handed bytes of it (a write it refused may still have sent some).
    begun: bool,
    /// Permits of what the slot holds, returned to `lane` once it is all written.
    permits: usize,
    lane: Lane,
    /// Bytes in the batch, to tell a light link from a busy one.
    batch_len: usize,
    /// Where the segment being written ends.
    seg_end: usize,
    /// The chunk is one frame sent as Fragments.
    fragmented: bool,
    /// The header of the Fragment being written, and how much of it the stream took.
    head: [u8; HEADER_LEN],
    head_len: usize,
    head_written: usize,
}

impl Slot {
    fn new() -> Self {
        Slot {
            batch: BytesMut::new(),
            chunk: None,
            written: 0,
            begun: false,
            permits: 0,
            lane: Lane::Bulk,
            batch_len: 0,
            seg_end: 0,
            fragmented: false,
            head: [0; HEADER_LEN],
            head_len: 0,
            head_written: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.batch.is_empty() && self.chunk.is_none()
    }

    fn data(&self) -> &[u8] {
        if !self.batch.is_empty() {
            &self.batch
        } else {
            self.chunk.as_deref().unwrap_or_default()
        }
    }

    /// Whether a segment is under way: nothing else may be written until it ends.
    fn in_segment(&self) -> bool {
        self.head_written < self.head_len || self.written < self.seg_end
    }

    /// Takes what a lane handed over; the batch, if that is it, is already in `batch`.
    fn fill(&mut self, lane: Lane, taken: Taken) {
        self.lane = lane;
        self.written = 0;
        self.begun = false;
        self.seg_end = 0;
        self.fragmented = false;
        match taken {
            Taken::Chunk(chunk, permits) => {
                self.chunk = Some(chunk);
                self.permits = permits;
            }
            Taken::Batch(permits) => {
                self.batch_len = self.batch.len();
                self.permits = permits;
            }
        }
    }

    /// Sets up the next segment of the bulk slot: the next Fragment of a fragmented chunk,
    /// else frames up to the first boundary at or past `piece` bytes on.
    fn next_segment<F: Framing>(&mut self, framing: &F, piece: usize) -> Result<(), CloseReason> {
        let from = self.written;
        let data = self.data();
        let end = data.len();
        if self.fragmented {
            let len = (end - from).min(piece);
            // The chunk's whole length was checked to have a header when it was taken.
            let Some(head) = framing.fragment_header(from, len) else {
                return Err(CloseReason::Io(format!(
                    "no Fragment header for offset {from}"
                )));
            };
            self.head = head;
            self.head_len = HEADER_LEN;
            self.head_written = 0;
            self.seg_end = from + len;
            return Ok(());
        }
        let mut at = from;
        while at < end && at - from < piece {
            match data.get(at..).and_then(F::frame_len) {
                Some(len) if len > 0 => at = at.saturating_add(len),
                _ => at = end,
            }
        }
        self.seg_end = at.min(end);
        Ok(())
    }

    /// What the stream is to take next: the rest of the Fragment header, else the rest of
    /// the segment.
    fn next_bytes(&self) -> &[u8] {
        if self.head_written < self.head_len {
            self.head
                .get(self.head_written..self.head_len)
                .unwrap_or_default()
        } else {
            self.data()
                .get(self.written..self.seg_end)
                .unwrap_or_default()
        }
    }

    /// Counts `n` bytes taken by the stream. Returns whether the slot is all written.
    fn advance(&mut self, n: usize) -> bool {
        if self.head_written < self.head_len {
            self.head_written = self.head_written.saturating_add(n);
            if self.head_written >= self.head_len {
                self.head_len = 0;
                self.head_written = 0;
            }
            return false;
        }
        self.written = self.written.saturating_add(n);
        self.written >= self.data().len()
    }

    /// Empties a slot that is all written; returns whose permits it held and how many.
    fn finish(&mut self) -> (Lane, usize) {
        if self.chunk.take().is_none() {
            if std::mem::take(&mut self.batch_len) < LIGHT_BATCH {
                // A light link: give the buffer back rather than hold it idle.
                self.batch = BytesMut::new();
            } else {
                // A busy one: keep the allocation for the next batch.
                self.batch.clear();
            }
        }
        self.written = 0;
        self.begun = false;
        self.seg_end = 0;
        self.fragmented = false;
        (self.lane, std::mem::take(&mut self.permits))
    }

    /// What the slot holds, whole, with the bytes the stream took of it.
    fn leftover(&mut self) -> Option<(Bytes, usize)> {
        if !self.batch.is_empty() {
            return Some((self.batch.split().freeze(), self.written));
        }
        self.chunk.take().map(|chunk| (chunk, self.written))
    }
}

/// The writing half of a session's task.
pub(super) struct Writer {
    urgent: Slot,
    bulk: Slot,
    /// Bulk bytes per segment on this link: [`PIECE`], or less if the peer's packet limit
    /// leaves no room for a Fragment of that size.
    piece: usize,
}

impl Writer {
    /// The writer of a link to a peer that accepts packets of up to `peer_max_packet` bytes.
    pub(super) fn new(peer_max_packet: u32) -> Self {
        let room = (peer_max_packet as usize).saturating_sub(HEADER_LEN);
        Writer {
            urgent: Slot::new(),
            bulk: Slot::new(),
            piece: PIECE.min(room).max(1),
        }
    }

    /// Whether a frame written now would go between two frames (or two Fragments), as a
    /// heartbeat must.
    pub(super) fn between_frames(&self) -> bool {
        self.urgent.is_empty() && !self.bulk.in_segment()
    }

    /// Puts a heartbeat ahead of everything not yet begun; only [`between_frames`](Self::between_frames).
    pub(super) fn push_heartbeat(&mut self, beat: &[u8]) {
        self.urgent.batch.extend_from_slice(beat);
        self.urgent.lane = Lane::Control;
        self.urgent.batch_len = self.urgent.batch.len();
        self.urgent.seg_end = self.urgent.batch.len();
    }

    /// What the writer had not finished when the session ended: what the stream was
    /// handed, each with the bytes it took, and what was taken from a lane but never handed
    /// over.
    pub(super) fn leftover(&mut self) -> (Vec<(Bytes, usize)>, Vec<Bytes>) {
        let (mut writing, mut unsent) = (Vec::new(), Vec::new());
        for slot in [&mut self.urgent, &mut self.bulk] {
            let begun = slot.begun;
            match slot.leftover() {
                Some(left) if begun => writing.push(left),
                Some((bytes, _)) => unsent.push(bytes),
                None => {}
            }
        }
        (writing, unsent)
    }

    /// Fills the empty slots from the lanes, with one lock.
    fn refill<F: Framing>(&mut self, session: &SessionHandle<F>, framing: &F) {
        let want_urgent = self.urgent.is_empty();
        let want_bulk = self.bulk.is_empty();
        if !want_urgent && !want_bulk {
            return;
        }
        let took = session.take(
            want_urgent.then_some(&mut self.urgent.batch),
            want_bulk.then_some(&mut self.bulk.batch),
        );
        SessionStats::add(&session.stats.packets_out, took.frames);
        if let Some((lane, taken)) = took.urgent {
            self.urgent.fill(lane, taken);
            self.urgent.seg_end = self.urgent.data().len();
        }
        if let Some(taken) = took.bulk {
            self.bulk.fill(Lane::Bulk, taken);
            if let Some(chunk) = &self.bulk.chunk {
                // One frame longer than a piece, on a link that has Fragments for all of it.
                self.bulk.fragmented = chunk.len() > self.piece
                    && F::frame_len(chunk) == Some(chunk.len())
                    && framing.fragment_header(chunk.len(), 0).is_some();
            }
        }
    }

    /// Moves queued frames onto the stream, urgent slot first, until the stream would block,
    /// nothing is left, or a [`WRITE_SLICE`] of what is `left` of the wake's write budget went
    /// out (then it stops between two segments, and the session reads before it writes
    /// more), and takes what it wrote off `left`. Once all is written, if the session is
    /// `closing`, shuts the stream down.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn poll_write<S: AsyncWrite + Unpin, F: Framing>(
        &mut self,
        cx: &mut Context<'_>,
        stream: &mut S,
        session: &SessionHandle<F>,
        framing: &F,
        closing: bool,
        shut_down: &mut bool,
        last_write: &mut Instant,
        left: &mut usize,
    ) -> Result<WriteStop, CloseReason> {
        let limit = (*left).min(WRITE_SLICE);
        let mut wrote = 0usize;
        let outcome = loop {
            if wrote >= limit && !self.bulk.in_segment() {
                break Ok(WriteStop::Slice);
            }
            if !self.bulk.in_segment() && !*shut_down {
                self.refill(session, framing);
            }
            let slot = if self.bulk.in_segment() {
                &mut self.bulk
            } else if !self.urgent.is_empty() {
                &mut self.urgent
            } else if !self.bulk.is_empty() {
                self.bulk.next_segment(framing, self.piece)?;
                &mut self.bulk
            } else {
                if closing && !*shut_down {
                    match Pin::new(&mut *stream).poll_shutdown(cx) {
                        Poll::Ready(_) => *shut_down = true,
                        Poll::Pending => break Ok(WriteStop::Blocked),
                    }
                }
                break Ok(WriteStop::Empty);
            };
            slot.begun = true;
            let n = match Pin::new(&mut *stream).poll_write(cx, slot.next_bytes()) {
                Poll::Ready(Ok(0)) => break Err(CloseReason::Io("write returned zero".into())),
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => break Err(CloseReason::Io(e.to_string())),
                Poll::Pending => break Ok(WriteStop::Blocked),
            };
            wrote = wrote.saturating_add(n);
            *last_write = Instant::now();
            SessionStats::add(&session.stats.bytes_out, n as u64);
            if slot.advance(n) {
                let (lane, permits) = slot.finish();
                session.written(lane, permits);
                if self.urgent.is_empty() && self.bulk.is_empty() {
                    if let Poll::Ready(Err(e)) = Pin::new(&mut *stream).poll_flush(cx) {
                        break Err(CloseReason::Io(e.to_string()));
                    }
                }
            }
        };
        *left = left.saturating_sub(wrote);
        outcome
    }
}
