//! One warning per kind of repeated failure, source and interval, not one per attempt: a
//! configured peer that keeps refusing this node is redialed for ever, and a member this
//! node refuses may redial it every few milliseconds; neither must fill the log. The events
//! and counters still see every attempt: only the log line is held back.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// How often the same kind of failure from one source is logged at warning level.
pub(super) const REPEAT_WARN_EVERY: Duration = Duration::from_secs(60);

/// Source addresses (times kinds of refusal) whose inbound refusals the log remembers at once:
/// a few hundred entries of under 100 bytes, some 20 KiB at most. Past it the oldest is
/// evicted (see [`RepeatWarnings`]).
pub(super) const REMEMBERED_SOURCES: usize = 256;

/// Remembers, per key (a kind of failure, with its source where one limiter serves many),
/// when it was last warned about and how many were held back since.
///
/// At most `capacity` keys are remembered; a new key past that evicts the one warned about
/// longest ago, so that a hostile range of addresses cannot grow it. An evicted key's
/// held-back count is lost and its next failure is warned about at once: more lines, never
/// more memory.
#[derive(Debug)]
pub(super) struct RepeatWarnings<K> {
    capacity: usize,
    last: HashMap<K, Last>,
}

#[derive(Debug)]
struct Last {
    at: Instant,
    held_back: u64,
}

impl<K: Eq + Hash + Copy> RepeatWarnings<K> {
    /// A limiter remembering at most `capacity` keys (at least one).
    pub(super) fn new(capacity: usize) -> Self {
        RepeatWarnings {
            capacity: capacity.max(1),
            last: HashMap::new(),
        }
    }

    /// Whether a failure under `key` at `now` is to be warned about; if so, how many were
    /// held back since the last warning. A new key is always warned about.
    pub(super) fn due(&mut self, key: K, now: Instant) -> Option<u64> {
        if let Some(last) = self.last.get_mut(&key) {
            if now.saturating_duration_since(last.at) < REPEAT_WARN_EVERY {
                last.held_back = last.held_back.saturating_add(1);
                return None;
            }
            last.at = now;
            return Some(std::mem::take(&mut last.held_back));
        }
        if self.last.len() >= self.capacity {
            // A scan of at most `capacity` entries, only when a new key arrives at a full
            // limiter: cheap beside the TLS handshake that precedes every refusal.
            let oldest = self.last.iter().min_by_key(|(_, l)| l.at).map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                self.last.remove(&oldest);
            }
        }
        self.last.insert(
            key,
            Last {
                at: now,
                held_back: 0,
            },
        );
        Some(0)
    }

    /// How many keys are remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.last.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_failure_is_warned_once_per_interval_with_the_count_held_back() {
        let mut w = RepeatWarnings::new(8);
        let t = Instant::now();
        assert_eq!(w.due("peer-alert", t), Some(0));
        for k in 1..=20 {
            assert_eq!(
                w.due("peer-alert", t + Duration::from_millis(k * 100)),
                None
            );
        }
        assert_eq!(w.due("peer-alert", t + REPEAT_WARN_EVERY), Some(20));
        // Another kind is news: warned at once.
        assert_eq!(w.due("tls-failed", t + REPEAT_WARN_EVERY), Some(0));
        // The count starts again after each warning.
        assert_eq!(w.due("peer-alert", t + REPEAT_WARN_EVERY * 2), Some(0));
    }

    #[test]
    fn kinds_alternating_from_one_source_are_each_held_back() {
        let mut w = RepeatWarnings::new(8);
        let t = Instant::now();
        assert_eq!(w.due("blacklisted", t), Some(0));
        assert_eq!(w.due("tls-failed", t), Some(0));
        for k in 1..=10 {
            let at = t + Duration::from_millis(k * 100);
            assert_eq!(w.due("blacklisted", at), None);
            assert_eq!(w.due("tls-failed", at), None);
        }
        assert_eq!(w.due("blacklisted", t + REPEAT_WARN_EVERY), Some(10));
    }

    #[test]
    fn sources_are_held_back_apart() {
        let mut w = RepeatWarnings::new(8);
        let t = Instant::now();
        assert_eq!(w.due((1u8, "blacklisted"), t), Some(0));
        assert_eq!(w.due((2u8, "blacklisted"), t), Some(0));
        assert_eq!(w.due((1u8, "blacklisted"), t), None);
        assert_eq!(w.due((2u8, "blacklisted"), t), None);
    }

    #[test]
    fn a_flood_of_sources_never_grows_it_past_its_capacity() {
        let mut w = RepeatWarnings::new(4);
        let t = Instant::now();
        for source in 0..10_000u32 {
            let at = t + Duration::from_millis(u64::from(source));
            assert_eq!(w.due((source, "blacklisted"), at), Some(0));
            assert!(w.len() <= 4);
        }
        // The most recent sources are still held back; the oldest were evicted.
        let late = t + Duration::from_millis(10_000);
        assert_eq!(w.due((9_999, "blacklisted"), late), None);
        assert_eq!(w.due((0, "blacklisted"), late), Some(0));
        assert_eq!(w.len(), 4);
    }

    #[test]
    fn the_source_warned_about_longest_ago_is_evicted_first() {
        let mut w = RepeatWarnings::new(2);
        let t = Instant::now();
        w.due("a", t);
        w.due("b", t + Duration::from_secs(1));
        // "a" keeps failing: held back, but still warned about longest ago.
        assert_eq!(w.due("a", t + Duration::from_secs(2)), None);
        w.due("c", t + Duration::from_secs(3));
        assert_eq!(w.due("b", t + Duration::from_secs(4)), None);
        assert_eq!(w.due("a", t + Duration::from_secs(5)), Some(0));
    }
}
