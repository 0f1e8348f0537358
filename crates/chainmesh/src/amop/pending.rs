//! Deliveries waiting for an answer frame: pushes to a local subscriber waiting for its 0x31
//! (keyed by session and seq, owned by the session), and unicasts forwarded to another node
//! waiting for its type-7 answer (keyed by request ID, owned by that node). When an owner
//! goes away every delivery waiting on it is woken at once with no answer, so it fails over
//! without waiting out its timeout.

use std::collections::HashMap;
use std::hash::Hash;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::oneshot;

/// What a waiting delivery receives: the answer frame, or `None` when its owner went away.
pub(crate) type Answer = oneshot::Receiver<Option<Bytes>>;

/// Where a waiting delivery's answer goes.
type Wake = oneshot::Sender<Option<Bytes>>;

/// Waiting deliveries by key, each with its owner.
pub(crate) struct Waiters<K, O> {
    map: Mutex<HashMap<K, (O, Wake)>>,
}

impl<K, O> Default for Waiters<K, O> {
    fn default() -> Self {
        Waiters {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq, O: PartialEq> Waiters<K, O> {
    /// Starts waiting on `key`, owned by `owner`. `None` if `key` is already waited on.
    pub(crate) fn wait(&self, key: K, owner: O) -> Option<Answer> {
        let mut map = self.map.lock();
        if map.contains_key(&key) {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        map.insert(key, (owner, tx));
        Some(rx)
    }

    /// Hands `frame` to the delivery waiting on `key`, if `owner` is the one it waits on.
    /// Returns whether one was waiting.
    pub(crate) fn resolve(&self, key: &K, owner: &O, frame: Bytes) -> bool {
        let mut map = self.map.lock();
        if !matches!(map.get(key), Some((o, _)) if o == owner) {
            return false;
        }
        match map.remove(key) {
            // A delivery that gave up meanwhile drops its receiver; it was still waiting.
            Some((_, tx)) => {
                let _ = tx.send(Some(frame));
                true
            }
            None => false,
        }
    }

    /// Stops waiting on `key` (the delivery timed out or is done).
    pub(crate) fn cancel(&self, key: &K) {
        self.map.lock().remove(key);
    }

    /// Wakes every delivery waiting on `owner` with no answer. Returns how many.
    pub(crate) fn fail_owner(&self, owner: &O) -> usize {
        let failed: HashMap<K, (O, Wake)> = {
            let mut map = self.map.lock();
            let (failed, kept) = std::mem::take(&mut *map)
                .into_iter()
                .partition(|(_, (o, _))| o == owner);
            *map = kept;
            failed
        };
        let n = failed.len();
        for (_, (_, tx)) in failed {
            let _ = tx.send(None);
        }
        n
    }

    /// Deliveries waiting now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_reaches_the_delivery_waiting_on_its_key() {
        let w: Waiters<u64, u8> = Waiters::default();
        let mut rx = w.wait(1, 7).unwrap();
        assert!(w.resolve(&1, &7, Bytes::from_static(b"ack")));
        assert_eq!(rx.try_recv().unwrap(), Some(Bytes::from_static(b"ack")));
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn an_answer_from_another_owner_or_for_no_key_is_refused() {
        let w: Waiters<u64, u8> = Waiters::default();
        let mut rx = w.wait(1, 7).unwrap();
        assert!(
            !w.resolve(&1, &8, Bytes::new()),
            "not the node it was sent to"
        );
        assert!(!w.resolve(&2, &7, Bytes::new()));
        assert!(rx.try_recv().is_err(), "still waiting");
        assert!(w.wait(1, 9).is_none(), "one delivery per key");
    }

    #[test]
    fn an_owner_going_away_wakes_its_deliveries_at_once_and_no_others() {
        let w: Waiters<u64, u8> = Waiters::default();
        let mut a = w.wait(1, 7).unwrap();
        let mut b = w.wait(2, 7).unwrap();
        let mut c = w.wait(3, 8).unwrap();
        assert_eq!(w.fail_owner(&7), 2);
        assert_eq!(a.try_recv().unwrap(), None);
        assert_eq!(b.try_recv().unwrap(), None);
        assert!(c.try_recv().is_err());
        w.cancel(&3);
        assert_eq!(w.len(), 0);
    }
}
