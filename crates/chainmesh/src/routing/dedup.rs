//! Duplicate suppression: a node handles each message, identified by (source node ID, Seq),
//! once, even when it arrives along two paths.
//!
//! Memory is bounded twice over: each source gets a fixed sliding window of the last
//! [`WINDOW`] seqs (a bitmap, like IPsec's anti-replay window), and at most a configured
//! number of sources are remembered.
//!
//! A seq far behind the window is not treated as a duplicate but as a restart: each node's
//! Seq starts at a random value at boot, so a restarted node's messages land far from its
//! previous incarnation's and simply restart the window. The cost of that choice is that a
//! copy delayed by more than [`WINDOW`] newer messages from the same source is delivered again;
//! the benefit is that no genuine message is ever dropped for being late.

use std::collections::HashMap;

use parking_lot::{Mutex, RwLock};

use crate::identity::NodeId;

/// Seqs remembered per source.
pub const WINDOW: u32 = 1024;

const WORDS: usize = (WINDOW / 64) as usize;

/// The seqs seen recently from one source: the highest, and a bitmap of the [`WINDOW`]
/// seqs up to it.
#[derive(Debug, Clone)]
pub struct SeqWindow {
    highest: u32,
    bits: [u64; WORDS],
}

impl SeqWindow {
    /// A window that has seen only `seq`.
    pub fn new(seq: u32) -> Self {
        let mut w = SeqWindow {
            highest: seq,
            bits: [0; WORDS],
        };
        w.set(seq);
        w
    }

    fn slot(seq: u32) -> (usize, u64) {
        let i = seq % WINDOW;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    fn set(&mut self, seq: u32) {
        let (w, bit) = Self::slot(seq);
        if let Some(word) = self.bits.get_mut(w) {
            *word |= bit;
        }
    }

    fn clear(&mut self, seq: u32) {
        let (w, bit) = Self::slot(seq);
        if let Some(word) = self.bits.get_mut(w) {
            *word &= !bit;
        }
    }

    fn is_set(&self, seq: u32) -> bool {
        let (w, bit) = Self::slot(seq);
        self.bits.get(w).is_some_and(|word| word & bit != 0)
    }

    /// Records `seq` and returns true if it was not seen before. Seqs compare in serial
    /// number arithmetic (RFC 1982), so the window works across the wrap from `u32::MAX`.
    pub fn first_time(&mut self, seq: u32) -> bool {
        let ahead = seq.wrapping_sub(self.highest);
        if ahead == 0 {
            return false;
        }
        if ahead < 1 << 31 {
            // Newer: slide the window, forgetting the seqs that fall out of it.
            if ahead >= WINDOW {
                self.bits = [0; WORDS];
            } else {
                for s in 1..=ahead {
                    self.clear(self.highest.wrapping_add(s));
                }
            }
            self.highest = seq;
            self.set(seq);
            return true;
        }
        let behind = self.highest.wrapping_sub(seq);
        if behind < WINDOW {
            if self.is_set(seq) {
                return false;
            }
            self.set(seq);
            return true;
        }
        // Far behind: a restarted source (see the module docs). Start over from here.
        *self = SeqWindow::new(seq);
        true
    }
}

/// The windows of every source, safe to use from every session at once.
///
/// The hot path takes the map's read lock and the one source's own lock, so sessions
/// delivering messages from different sources never wait for each other.
///
/// Sources come from packets, so their IDs may be chosen by a hostile node: the map hashes
/// them with a per-process random seed (foldhash), not with a fixed function of the ID.
#[derive(Debug)]
pub struct Dedup {
    sources: RwLock<HashMap<NodeId, Mutex<SeqWindow>, foldhash::fast::RandomState>>,
    max_sources: usize,
}

impl Dedup {
    /// Remembers at most `max_sources` sources (at least 1).
    pub fn new(max_sources: usize) -> Self {
        Dedup {
            sources: RwLock::new(HashMap::default()),
            max_sources: max_sources.max(1),
        }
    }

    /// Records message (`src`, `seq`) and returns true if it was not seen before.
    pub fn first_time(&self, src: &NodeId, seq: u32) -> bool {
        if let Some(w) = self.sources.read().get(src) {
            return w.lock().first_time(seq);
        }
        let mut map = self.sources.write();
        if let Some(w) = map.get(src) {
            // Another session added it meanwhile.
            return w.lock().first_time(seq);
        }
        if map.len() >= self.max_sources {
            // Sources are nodes of a permissioned network, far fewer than the bound, unless a
            // node forges source IDs. Forgetting an arbitrary one then costs at most a
            // duplicate delivery, never a lost message.
            if let Some(victim) = map.keys().next().copied() {
                map.remove(&victim);
            }
        }
        map.insert(*src, Mutex::new(SeqWindow::new(seq)));
        true
    }

    /// Forgets everything about `src`.
    pub fn forget(&self, src: &NodeId) {
        self.sources.write().remove(src);
    }

    /// How many sources are remembered.
    pub fn sources(&self) -> usize {
        self.sources.read().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::id;

    #[test]
    fn each_seq_once_in_any_order() {
        let mut w = SeqWindow::new(100);
        assert!(!w.first_time(100));
        assert!(w.first_time(102));
        assert!(w.first_time(101));
        assert!(!w.first_time(101));
        assert!(!w.first_time(102));
        assert!(w.first_time(50));
        assert!(!w.first_time(50));
    }

    #[test]
    fn window_slides_and_forgets_old_bits() {
        let mut w = SeqWindow::new(1);
        for s in 2..5000 {
            assert!(w.first_time(s));
        }
        // Within the window: remembered.
        assert!(!w.first_time(4999 - WINDOW + 1));
        assert!(!w.first_time(4000));
        // A slot reused by a newer seq does not make the newer one look old.
        assert!(w.first_time(5000 + WINDOW - 1));
        assert!(w.first_time(5000));
    }

    #[test]
    fn a_jump_forward_clears_the_window() {
        let mut w = SeqWindow::new(10);
        assert!(w.first_time(10 + 5 * WINDOW));
        assert!(w.first_time(10 + 5 * WINDOW - 3));
        assert!(!w.first_time(10 + 5 * WINDOW - 3));
    }

    #[test]
    fn wraps_around_u32() {
        let mut w = SeqWindow::new(u32::MAX - 1);
        assert!(w.first_time(u32::MAX));
        assert!(w.first_time(0));
        assert!(w.first_time(1));
        assert!(!w.first_time(u32::MAX));
        assert!(!w.first_time(0));
        assert!(w.first_time(u32::MAX - 2));
    }

    #[test]
    fn a_restarted_source_far_behind_is_accepted() {
        let mut w = SeqWindow::new(3_000_000_000);
        assert!(w.first_time(1_000));
        assert!(w.first_time(1_001));
        assert!(!w.first_time(1_000));
    }

    #[test]
    fn dedup_is_per_source_and_bounded() {
        let d = Dedup::new(2);
        assert!(d.first_time(&id(1), 7));
        assert!(!d.first_time(&id(1), 7));
        assert!(d.first_time(&id(2), 7));
        assert!(!d.first_time(&id(2), 7));
        assert_eq!(d.sources(), 2);
        assert!(d.first_time(&id(3), 7));
        assert_eq!(d.sources(), 2);
        d.forget(&id(3));
        assert!(d.first_time(&id(3), 7));
    }

    #[test]
    fn concurrent_sessions_deliver_each_message_once() {
        let d = std::sync::Arc::new(Dedup::new(16));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let d = d.clone();
                std::thread::spawn(move || {
                    // Each source's seqs span less than the window, so however far the
                    // threads drift apart no copy counts as a restart.
                    (0..3000u32)
                        .filter(|s| d.first_time(&id((s % 3) as u8), s / 3))
                        .count()
                })
            })
            .collect();
        let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(total, 3000);
    }
}
