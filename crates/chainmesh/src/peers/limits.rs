//! Caps on what one remote address or one identity may hold at once: handshakes under way and
//! connections. Each unit is a [`Slot`] that gives itself back when dropped, so a count can
//! never leak whichever way a connection ends.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use parking_lot::Mutex;

/// How many of something each key holds, up to a limit per key.
pub(super) struct PerKey<K: Eq + Hash + Clone> {
    limit: usize,
    counts: Mutex<HashMap<K, usize>>,
}

/// One unit of a [`PerKey`] count, held for as long as what it counts lasts.
pub(super) struct Slot<K: Eq + Hash + Clone> {
    owner: Arc<PerKey<K>>,
    key: K,
}

impl<K: Eq + Hash + Clone> PerKey<K> {
    /// Counts of at most `limit` per key.
    pub(super) fn new(limit: usize) -> Arc<Self> {
        Arc::new(PerKey {
            limit,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// The limit per key.
    pub(super) fn limit(&self) -> usize {
        self.limit
    }

    /// Takes a unit for `key`, or `None` when the key holds `limit` already.
    pub(super) fn take(self: &Arc<Self>, key: K) -> Option<Slot<K>> {
        let mut counts = self.counts.lock();
        let n = counts.entry(key.clone()).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(Slot {
            owner: Arc::clone(self),
            key,
        })
    }

    /// Units `key` holds now.
    #[cfg(test)]
    fn held(&self, key: &K) -> usize {
        self.counts.lock().get(key).copied().unwrap_or(0)
    }
}

impl<K: Eq + Hash + Clone> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut counts = self.owner.counts.lock();
        if let Some(n) = counts.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                // Keys come from the network: an idle one must not stay in the map.
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_holds_at_most_its_limit_and_gets_units_back_on_drop() {
        let counts = PerKey::new(2);
        let a = counts.take("a").unwrap();
        let b = counts.take("a").unwrap();
        assert!(counts.take("a").is_none());
        assert!(counts.take("b").is_some(), "other keys are counted apart");
        drop(a);
        let c = counts.take("a").unwrap();
        drop((b, c));
        assert_eq!(counts.held(&"a"), 0);
        assert!(counts.counts.lock().is_empty(), "idle keys are forgotten");
    }
}
