//! The receiving side of the load generator: answers load requests with their own payload,
//! counts unicasts, and counts broadcasts once per (origin, incarnation, seq) in a bounded
//! de-duplication window, counting the duplicates.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Buf;
use chainmesh::node::{Message, MessageKind, NodeHandle};
use chainmesh::NodeId;
use tokio::sync::mpsc;

use super::report::Counters;
use super::spec::HEADER_LEN;

/// Messages the load module's queue holds; when full, the links delivering to it wait.
const INBOX: usize = 1024;
/// Seqs per origin the window remembers behind the highest one seen.
const WINDOW: u64 = 4096;
/// Origins (node, incarnation) remembered; the oldest is forgotten first.
const MAX_ORIGINS: usize = 1024;

/// What the window says of a broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First time.
    New,
    /// Seen before.
    Duplicate,
    /// Too far behind the newest seen from its origin to tell.
    Stale,
}

/// The seqs seen from one origin: a bitmap of the [`WINDOW`] seqs below `top`.
#[derive(Debug)]
struct SeqWindow {
    /// One above the highest seq seen.
    top: u64,
    bits: Vec<u64>,
}

impl SeqWindow {
    fn new() -> Self {
        SeqWindow {
            top: 0,
            bits: vec![0; (WINDOW / 64) as usize],
        }
    }

    fn slot(seq: u64) -> (usize, u64) {
        let pos = seq % WINDOW;
        ((pos / 64) as usize, 1 << (pos % 64))
    }

    fn observe(&mut self, seq: u64) -> Seen {
        if seq >= self.top {
            let advance = seq.saturating_add(1) - self.top;
            if advance >= WINDOW {
                self.bits.iter_mut().for_each(|w| *w = 0);
            } else {
                for s in self.top..=seq {
                    let (w, b) = Self::slot(s);
                    self.bits[w] &= !b;
                }
            }
            self.top = seq.saturating_add(1);
        } else if self.top - seq > WINDOW {
            return Seen::Stale;
        }
        let (w, b) = Self::slot(seq);
        if self.bits[w] & b != 0 {
            return Seen::Duplicate;
        }
        self.bits[w] |= b;
        Seen::New
    }
}

/// Broadcasts seen, per origin, bounded in origins and in seqs per origin.
#[derive(Debug, Default)]
pub struct DedupWindow {
    origins: HashMap<(NodeId, u64), SeqWindow>,
    order: VecDeque<(NodeId, u64)>,
}

impl DedupWindow {
    /// Records broadcast `seq` of `origin`'s run `incarnation`.
    pub fn observe(&mut self, origin: NodeId, incarnation: u64, seq: u64) -> Seen {
        let key = (origin, incarnation);
        if !self.origins.contains_key(&key) {
            if self.order.len() >= MAX_ORIGINS {
                if let Some(old) = self.order.pop_front() {
                    self.origins.remove(&old);
                }
            }
            self.order.push_back(key);
        }
        self.origins
            .entry(key)
            .or_insert_with(SeqWindow::new)
            .observe(seq)
    }
}

/// The (incarnation, seq) header of a load payload.
pub fn header(payload: &[u8]) -> Option<(u64, u64)> {
    let mut h = payload.get(..HEADER_LEN)?;
    Some((h.get_u64(), h.get_u64()))
}

/// Registers the load module on `node` and handles what arrives until the node stops.
pub fn spawn(node: &NodeHandle, module: u16, counters: Arc<Counters>) {
    let inbox = node.register(module, INBOX);
    tokio::spawn(receive(inbox, counters));
}

async fn receive(mut inbox: mpsc::Receiver<Message>, c: Arc<Counters>) {
    let mut window = DedupWindow::default();
    while let Some(mut msg) = inbox.recv().await {
        if let Some(responder) = msg.take_responder() {
            match responder.respond(msg.payload.clone()) {
                Ok(()) => c.req_echoed.inc(),
                Err(_) => c.req_echo_failed.inc(),
            }
            continue;
        }
        let Some((incarnation, seq)) = header(&msg.payload) else {
            c.malformed.inc();
            continue;
        };
        match msg.kind {
            MessageKind::Unicast => c.uni_received.inc(),
            MessageKind::Broadcast | MessageKind::Multicast { .. } => {
                match window.observe(msg.src, incarnation, seq) {
                    Seen::New => c.bc_received.inc(),
                    Seen::Duplicate => c.bc_duplicates.inc(),
                    Seen::Stale => c.bc_stale.inc(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chainmesh_testkit::id;

    #[test]
    fn second_copy_is_a_duplicate_in_any_order() {
        let mut w = DedupWindow::default();
        for seq in [5, 3, 9, 4] {
            assert_eq!(w.observe(id(1), 7, seq), Seen::New);
        }
        for seq in [3, 4, 5, 9] {
            assert_eq!(w.observe(id(1), 7, seq), Seen::Duplicate);
        }
        // Another origin, or another run of the same node, is another sequence.
        assert_eq!(w.observe(id(2), 7, 5), Seen::New);
        assert_eq!(w.observe(id(1), 8, 5), Seen::New);
    }

    #[test]
    fn seqs_behind_the_window_are_stale_and_slots_are_reused() {
        let mut w = DedupWindow::default();
        assert_eq!(w.observe(id(1), 0, 0), Seen::New);
        assert_eq!(w.observe(id(1), 0, WINDOW), Seen::New);
        // 0 shares WINDOW's slot, but is a window behind: never taken for a duplicate of it.
        assert_eq!(w.observe(id(1), 0, 0), Seen::Stale);
        assert_eq!(w.observe(id(1), 0, 1), Seen::New);
        assert_eq!(w.observe(id(1), 0, 1), Seen::Duplicate);
        // A jump past the whole window forgets everything behind it.
        assert_eq!(w.observe(id(1), 0, 10 * WINDOW), Seen::New);
        assert_eq!(w.observe(id(1), 0, 10 * WINDOW - 1), Seen::New);
        assert_eq!(w.observe(id(1), 0, WINDOW), Seen::Stale);
    }

    #[test]
    fn origins_are_bounded() {
        let mut w = DedupWindow::default();
        for inc in 0..(MAX_ORIGINS as u64 + 10) {
            w.observe(id(1), inc, 1);
        }
        assert_eq!(w.origins.len(), MAX_ORIGINS);
        assert_eq!(w.order.len(), MAX_ORIGINS);
        // The oldest were forgotten; the newest are still known.
        assert_eq!(w.observe(id(1), MAX_ORIGINS as u64 + 9, 1), Seen::Duplicate);
    }

    #[test]
    fn header_needs_sixteen_bytes() {
        let mut p = 7u64.to_be_bytes().to_vec();
        p.extend(9u64.to_be_bytes());
        assert_eq!(header(&p), Some((7, 9)));
        assert_eq!(header(&p[..15]), None);
    }
}
