//! The recent events the page lists: peers connecting, disconnecting and refused, and
//! nodes becoming reachable or unreachable through routing, each with the time it was
//! seen. A ring of at most `admin.page_max_events`: the oldest go first.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;

use chainmesh::identity::NodeId;
use chainmesh::node::NodeHandle;
use chainmesh::peers::PeerEvent;
use chainmesh::routing::Reachability;

/// One event as `/v1/network` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventEntry {
    /// When this node saw it, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// `connected`, `disconnected`, `refused`, `reachable`, `unreachable`, or `missed`
    /// (events lost because recording fell behind; `detail` says how many).
    pub event: &'static str,
    /// The node it is about, when known.
    pub node: Option<NodeId>,
    /// The reason, the remote address or the distance, in words.
    pub detail: String,
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl EventEntry {
    fn peer(e: PeerEvent) -> Self {
        let (event, node, detail) = match e {
            PeerEvent::Connected {
                peer,
                addr,
                direction,
            } => (
                "connected",
                Some(peer),
                format!("{} {addr}", format!("{direction:?}").to_lowercase()),
            ),
            PeerEvent::Disconnected { peer, reason } => {
                ("disconnected", Some(peer), reason.to_string())
            }
            PeerEvent::Refused { addr, reason } => ("refused", None, format!("{addr}: {reason}")),
        };
        EventEntry {
            at_ms: now_ms(),
            event,
            node,
            detail,
        }
    }

    fn route(e: Reachability) -> Self {
        let (event, node, detail) = match e {
            Reachability::Reachable { node, distance } => {
                ("reachable", node, format!("{distance} hop(s) away"))
            }
            Reachability::Unreachable {
                node,
                was_neighbour,
            } => (
                "unreachable",
                node,
                if was_neighbour {
                    "its direct link went down".to_owned()
                } else {
                    "no route left".to_owned()
                },
            ),
        };
        EventEntry {
            at_ms: now_ms(),
            event,
            node: Some(node),
            detail,
        }
    }

    fn missed(n: u64) -> Self {
        EventEntry {
            at_ms: now_ms(),
            event: "missed",
            node: None,
            detail: format!("{n} event(s) not recorded"),
        }
    }
}

/// The ring of recent events.
#[derive(Debug)]
pub(super) struct EventRing {
    /// The most it holds; at least one.
    max: usize,
    events: Mutex<VecDeque<EventEntry>>,
}

impl EventRing {
    fn new(max: usize) -> Self {
        EventRing {
            max: max.max(1),
            events: Mutex::default(),
        }
    }

    fn push(&self, e: EventEntry) {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if events.len() >= self.max {
            events.pop_front();
        }
        events.push_back(e);
    }

    /// The events held, newest first.
    pub(super) fn newest_first(&self) -> Vec<EventEntry> {
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        events.iter().rev().cloned().collect()
    }

    /// A ring of at most `max` events that records `node`'s events from now on. The
    /// recording task holds the ring weakly: it ends at the first event after the routes
    /// serving the page are dropped, or when the node stops. Without a Tokio runtime nothing
    /// is recorded.
    pub(super) fn record(node: &NodeHandle, max: usize) -> Arc<EventRing> {
        let ring = Arc::new(EventRing::new(max));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (peers, routes) = (node.events(), node.reachability_events());
            rt.spawn(run(Arc::downgrade(&ring), peers, routes));
        }
        ring
    }
}

/// What became of one receive: an event to keep, a count of lost ones, or the end.
fn entry<T>(got: Result<T, RecvError>, make: fn(T) -> EventEntry) -> Option<EventEntry> {
    match got {
        Ok(e) => Some(make(e)),
        Err(RecvError::Lagged(n)) => Some(EventEntry::missed(n)),
        Err(RecvError::Closed) => None,
    }
}

async fn run(
    ring: Weak<EventRing>,
    mut peers: Receiver<PeerEvent>,
    mut routes: Receiver<Reachability>,
) {
    loop {
        let e = tokio::select! {
            got = peers.recv() => entry(got, EventEntry::peer),
            got = routes.recv() => entry(got, EventEntry::route),
        };
        let (Some(e), Some(ring)) = (e, ring.upgrade()) else {
            return;
        };
        ring.push(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_events_and_no_more() {
        const MAX: usize = 7;
        let ring = EventRing::new(MAX);
        for n in 0..(MAX as u64 + 5) {
            ring.push(EventEntry::missed(n));
        }
        let held = ring.newest_first();
        assert_eq!(held.len(), MAX);
        let newest = format!("{} event(s) not recorded", MAX + 4);
        assert_eq!(held[0].detail, newest);
        assert_eq!(held[MAX - 1].detail, "5 event(s) not recorded");
    }

    #[test]
    fn a_ring_holds_at_least_one_event() {
        let ring = EventRing::new(0);
        ring.push(EventEntry::missed(1));
        ring.push(EventEntry::missed(2));
        let held = ring.newest_first();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].detail, "2 event(s) not recorded");
    }
}
