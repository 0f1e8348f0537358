//! Each peer's traffic since start, across its connections: what its closed connections
//! carried, kept by node ID, plus what its live ones carry. A peer that reconnects keeps
//! counting from where it was, so a scraper sees one series that never goes down.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;

use serde::Serialize;

use crate::identity::{NodeId, PeerMap};
use crate::session::{SessionHandle, SessionStats};

/// One peer's traffic since this node started, over every connection it had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerTraffic {
    /// The peer.
    pub peer: NodeId,
    /// Its live session's socket address; `None` while it is not connected.
    pub addr: Option<SocketAddr>,
    /// Counters summed over its connections, closed and live.
    #[serde(flatten)]
    pub totals: Totals,
    /// Bytes waiting in its live session's write queue.
    pub queued_bytes: u64,
    /// The bound of that queue, 0 while not connected.
    pub queue_capacity: u64,
}

/// Traffic counters summed over connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// TLS payload bytes read.
    pub bytes_in: u64,
    /// TLS payload bytes written.
    pub bytes_out: u64,
    /// Packets decoded.
    pub packets_in: u64,
    /// Packets written, heartbeats included.
    pub packets_out: u64,
    /// Packets refused because the write queue was full.
    pub dropped_out: u64,
}

impl Totals {
    /// A session's counters as they stand.
    pub(super) fn of(s: &SessionStats) -> Self {
        Totals {
            bytes_in: s.bytes_in.load(Relaxed),
            bytes_out: s.bytes_out.load(Relaxed),
            packets_in: s.packets_in.load(Relaxed),
            packets_out: s.packets_out.load(Relaxed),
            dropped_out: s.dropped_out.load(Relaxed),
        }
    }

    fn add(&mut self, o: Totals) {
        self.bytes_in = self.bytes_in.saturating_add(o.bytes_in);
        self.bytes_out = self.bytes_out.saturating_add(o.bytes_out);
        self.packets_in = self.packets_in.saturating_add(o.packets_in);
        self.packets_out = self.packets_out.saturating_add(o.packets_out);
        self.dropped_out = self.dropped_out.saturating_add(o.dropped_out);
    }
}

/// What closed connections carried, by peer, for at most `cap` peers: past that the peer
/// whose last connection closed longest ago is forgotten (its series restarts from zero if
/// it ever comes back), so peers that come and go cannot grow the node.
#[derive(Debug)]
pub(super) struct Closed {
    cap: usize,
    /// Totals and the order in which the peer's last connection closed.
    by_peer: PeerMap<(Totals, u64)>,
    closes: u64,
}

impl Closed {
    pub(super) fn new(cap: usize) -> Self {
        Closed {
            cap: cap.max(1),
            by_peer: PeerMap::default(),
            closes: 0,
        }
    }

    /// Adds what `session` carried, now that it is closed.
    pub(super) fn add(&mut self, session: &SessionHandle) {
        self.closes = self.closes.saturating_add(1);
        if !self.by_peer.contains_key(&session.peer) && self.by_peer.len() >= self.cap {
            let oldest = self
                .by_peer
                .iter()
                .min_by_key(|(_, (_, order))| *order)
                .map(|(id, _)| *id);
            if let Some(id) = oldest {
                self.by_peer.remove(&id);
            }
        }
        let entry = self
            .by_peer
            .entry(session.peer)
            .or_insert((Totals::default(), 0));
        entry.0.add(Totals::of(&session.stats));
        entry.1 = self.closes;
    }

    /// Each peer's traffic: the live sessions' (a draining duplicate's included) added to
    /// what the peer's closed connections carried, then the peers with none live.
    pub(super) fn view<'a>(
        &self,
        live: impl Iterator<Item = (&'a SessionHandle, Option<&'a SessionHandle>)>,
    ) -> Vec<PeerTraffic> {
        let mut out = Vec::new();
        for (handle, retired) in live {
            let mut totals = self
                .by_peer
                .get(&handle.peer)
                .map(|(t, _)| *t)
                .unwrap_or_default();
            totals.add(Totals::of(&handle.stats));
            if let Some(r) = retired {
                totals.add(Totals::of(&r.stats));
            }
            out.push(PeerTraffic {
                peer: handle.peer,
                addr: Some(handle.addr),
                totals,
                queued_bytes: u64::try_from(handle.queued_bytes()).unwrap_or(u64::MAX),
                queue_capacity: u64::try_from(handle.queue_capacity()).unwrap_or(u64::MAX),
            });
        }
        let connected: Vec<NodeId> = out.iter().map(|p| p.peer).collect();
        for (peer, (totals, _)) in &self.by_peer {
            if !connected.contains(peer) {
                out.push(PeerTraffic {
                    peer: *peer,
                    addr: None,
                    totals: *totals,
                    queued_bytes: 0,
                    queue_capacity: 0,
                });
            }
        }
        out.sort_by_key(|p| p.peer);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{new_session, Direction, SessionInfo};

    fn session(conn: u64, peer: u8) -> SessionHandle {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let info = SessionInfo {
            peer: NodeId::from_bytes([peer; 64]),
            addr,
            local_addr: addr,
            direction: Direction::Inbound,
            version: 2,
            peer_listen_port: 1,
            peer_max_packet: 1 << 20,
        };
        let s = new_session(conn, info, 1 << 16);
        s.stats.bytes_in.store(100, Relaxed);
        s
    }

    #[test]
    fn a_reconnected_peer_counts_on_from_its_closed_connections() {
        let mut closed = Closed::new(8);
        closed.add(&session(1, 2));
        let again = session(2, 2);
        let view = closed.view(std::iter::once((&again, None)));
        assert_eq!(view.len(), 1);
        assert_eq!(view[0].totals.bytes_in, 200);
        assert!(view[0].addr.is_some());
        let gone = closed.view(std::iter::empty());
        assert_eq!((gone[0].totals.bytes_in, gone[0].addr), (100, None));
    }

    #[test]
    fn past_the_cap_the_peer_gone_longest_is_forgotten() {
        let mut closed = Closed::new(2);
        closed.add(&session(1, 2));
        closed.add(&session(2, 3));
        closed.add(&session(3, 2));
        closed.add(&session(4, 4));
        let peers: Vec<u8> = closed
            .view(std::iter::empty())
            .iter()
            .map(|p| p.peer.as_bytes()[0])
            .collect();
        assert_eq!(peers, [2, 4]);
    }
}
