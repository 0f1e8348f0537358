//! The live SDK sessions of this node and their topics.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use parking_lot::{Mutex, RwLock};

use super::topics::TopicTable;
use super::view::SdkSessionView;
use super::ChannelFraming;
use crate::session::SessionHandle;

/// The channel protocol version of a session that sent no 0x14 handshake.
pub(crate) const DEFAULT_PROTOCOL: u8 = 1;

/// One SDK session, as dispatch and delivery see it.
pub(crate) struct SdkSession {
    /// The session: its queue, counters, and the client's address and key.
    pub(crate) handle: SessionHandle<ChannelFraming>,
    /// The version agreed in its 0x14 handshake.
    protocol: AtomicU8,
    /// Its requests (unicasts, RPC calls) not answered yet.
    in_flight: AtomicUsize,
}

/// A place among a session's requests in flight; dropping it gives the place back.
pub(crate) struct InFlight(Arc<SdkSession>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl SdkSession {
    pub(crate) fn protocol(&self) -> u8 {
        self.protocol.load(Ordering::Relaxed)
    }

    pub(crate) fn set_protocol(&self, version: u8) {
        self.protocol.store(version, Ordering::Relaxed);
    }

    /// Takes a place among its requests in flight, if fewer than `max` are.
    pub(crate) fn start_request(self: &Arc<Self>, max: usize) -> Option<InFlight> {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| InFlight(self.clone()))
    }
}

/// The sessions by ID, and the topic table over them.
#[derive(Default)]
pub(crate) struct Sessions {
    map: RwLock<HashMap<u64, Arc<SdkSession>>>,
    topics: Mutex<TopicTable>,
}

impl Sessions {
    pub(crate) fn insert(&self, handle: SessionHandle<ChannelFraming>) -> Arc<SdkSession> {
        let s = Arc::new(SdkSession {
            handle,
            protocol: AtomicU8::new(DEFAULT_PROTOCOL),
            in_flight: AtomicUsize::new(0),
        });
        self.map.write().insert(s.handle.id, s.clone());
        s
    }

    pub(crate) fn get(&self, id: u64) -> Option<Arc<SdkSession>> {
        self.map.read().get(&id).cloned()
    }

    pub(crate) fn len(&self) -> usize {
        self.map.read().len()
    }

    pub(crate) fn all(&self) -> Vec<Arc<SdkSession>> {
        self.map.read().values().cloned().collect()
    }

    /// Removes session `id` and its topics; `publish` runs with the held topics when they
    /// changed, under the table's lock so that publications keep their order.
    pub(crate) fn remove(&self, id: u64, publish: impl FnOnce(Vec<String>)) {
        self.map.write().remove(&id);
        let mut topics = self.topics.lock();
        if topics.remove(id) {
            publish(topics.topics());
        }
    }

    /// Replaces session `id`'s topics, as [`remove`](Self::remove) publishes.
    pub(crate) fn subscribe(
        &self,
        id: u64,
        set: BTreeSet<String>,
        publish: impl FnOnce(Vec<String>),
    ) {
        let mut topics = self.topics.lock();
        if topics.replace(id, set) {
            publish(topics.topics());
        }
    }

    pub(crate) fn subscribers(&self, topic: &str) -> Vec<u64> {
        self.topics.lock().subscribers(topic)
    }

    pub(crate) fn holds(&self, topic: &str) -> bool {
        self.topics.lock().holds(topic)
    }

    pub(crate) fn topics(&self) -> Vec<String> {
        self.topics.lock().topics()
    }

    /// Every session for the admin view, by ID.
    pub(crate) fn views(&self) -> Vec<SdkSessionView> {
        let mut sessions = self.all();
        sessions.sort_by_key(|s| s.handle.id);
        let topics = self.topics.lock();
        sessions
            .iter()
            .map(|s| {
                let h = &s.handle;
                SdkSessionView {
                    id: h.id,
                    addr: h.addr.to_string(),
                    key: h.peer.to_string(),
                    topics: topics.topics_of(h.id),
                    protocol: s.protocol(),
                    since_unix_ms: h
                        .since
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                    frames_in: h.stats.packets_in.load(Ordering::Relaxed),
                    frames_out: h.stats.packets_out.load(Ordering::Relaxed),
                    queued_bytes: h.queued_bytes(),
                }
            })
            .collect()
    }
}
