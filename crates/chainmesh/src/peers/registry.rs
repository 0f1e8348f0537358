//! The registry: live sessions by node ID (one per peer), the configured peers and their
//! standing, the reason each peer's last connection ended, and peer events.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::addr::PeerAddr;
use super::duplicate::{self, Existing, Verdict};
use super::refusal::RefusalReason;
use super::target::{TargetInfo, TargetStatus};
use crate::identity::{NodeId, PeerMap};
use crate::session::{CloseReason, Direction, SessionHandle};

/// Peer events kept for slow subscribers before they start missing some.
const EVENT_BUFFER: usize = 1024;

/// Something that happened to a peer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum PeerEvent {
    /// A peer became connected.
    Connected {
        /// The peer.
        peer: NodeId,
        /// Its socket address.
        addr: SocketAddr,
        /// Who dialed.
        direction: Direction,
    },
    /// A peer's connection ended and no other connection to it remains.
    Disconnected {
        /// The peer.
        peer: NodeId,
        /// Why.
        reason: CloseReason,
    },
    /// An inbound connection was refused during the TLS or protocol handshake.
    Refused {
        /// The remote address.
        addr: SocketAddr,
        /// Why (serialized as the reason in words).
        reason: RefusalReason,
    },
}

/// A configured peer: its standing, its address as data, and its dialer's stop signal.
struct Target {
    status: TargetStatus,
    /// `None` when the text is not `host:port`; such a target never resolves.
    addr: Option<PeerAddr>,
    /// What the address's host name last resolved to.
    resolved: Vec<SocketAddr>,
    cancel: CancellationToken,
}

/// The shared tables of a peer set. Lock order, where two are taken: sessions, then targets.
pub(super) struct Registry {
    local: NodeId,
    /// Keyed by certificate-derived IDs only, so the cheap hasher is safe here.
    sessions: RwLock<PeerMap<SessionHandle>>,
    /// Keyed by the address as configured.
    targets: Mutex<BTreeMap<String, Target>>,
    last_reason: Mutex<HashMap<NodeId, CloseReason>>,
    events: broadcast::Sender<PeerEvent>,
}

impl Registry {
    /// Empty tables for node `local`.
    pub(super) fn new(local: NodeId) -> Self {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        Registry {
            local,
            sessions: RwLock::new(PeerMap::default()),
            targets: Mutex::new(BTreeMap::new()),
            last_reason: Mutex::new(HashMap::new()),
            events,
        }
    }

    /// Adds a live session, applying the one-connection-per-pair rule
    /// ([`duplicate::decide`]). Returns false when the new connection lost to an existing
    /// one; it is closed as a duplicate.
    pub(super) fn register(&self, new: &SessionHandle) -> bool {
        let mut sessions = self.sessions.write();
        let existing = match sessions.get(&new.peer) {
            None => Existing::None,
            Some(old) if old.is_closed() => Existing::Closed,
            Some(old) => Existing::Live(old.direction),
        };
        let verdict = duplicate::decide(&self.local, &new.peer, existing, new.direction);
        if verdict == Verdict::KeepExisting {
            drop(sessions);
            debug!(peer = %new.peer.short(), conn = new.id, "duplicate connection, keeping the existing one");
            new.close(CloseReason::Duplicate);
            return false;
        }
        let replaced = sessions.insert(new.peer, new.clone());
        drop(sessions);
        match (verdict, replaced) {
            (Verdict::Replace, Some(old)) => {
                debug!(peer = %new.peer.short(), old = old.id, new = new.id,
                    "duplicate connection, keeping the one the smaller node ID dialed");
                old.close(CloseReason::Duplicate);
            }
            _ => {
                info!(peer = %new.peer.short(), addr = %new.addr, direction = ?new.direction, "peer connected");
                let _ = self.events.send(PeerEvent::Connected {
                    peer: new.peer,
                    addr: new.addr,
                    direction: new.direction,
                });
            }
        }
        for t in self.targets.lock().values_mut() {
            t.status.session_up(new.peer);
        }
        true
    }

    /// Removes connection `conn` to `peer`, unless a preferred duplicate has replaced it
    /// already (the peer is then still connected).
    pub(super) fn unregister(&self, peer: NodeId, conn: u64, reason: &CloseReason) {
        let mut sessions = self.sessions.write();
        if sessions.get(&peer).map(|s| s.id) != Some(conn) {
            return;
        }
        sessions.remove(&peer);
        drop(sessions);
        info!(peer = %peer.short(), %reason, "peer disconnected");
        self.last_reason.lock().insert(peer, reason.clone());
        let _ = self.events.send(PeerEvent::Disconnected {
            peer,
            reason: reason.clone(),
        });
    }

    /// Reports an inbound connection refused during set-up.
    pub(super) fn refused(&self, addr: SocketAddr, reason: RefusalReason) {
        let _ = self.events.send(PeerEvent::Refused { addr, reason });
    }

    /// The session to `peer`, if connected.
    pub(super) fn session(&self, peer: &NodeId) -> Option<SessionHandle> {
        self.sessions.read().get(peer).cloned()
    }

    /// Whether there is a live session to `peer`.
    pub(super) fn is_connected(&self, peer: &NodeId) -> bool {
        self.sessions.read().contains_key(peer)
    }

    /// Every live session.
    pub(super) fn sessions(&self) -> Vec<SessionHandle> {
        self.sessions.read().values().cloned().collect()
    }

    /// Closes every live session `why` gives a reason for.
    pub(super) fn close_where(&self, why: impl Fn(&SessionHandle) -> Option<CloseReason>) {
        for s in self.sessions.read().values() {
            if let Some(reason) = why(s) {
                s.close(reason);
            }
        }
    }

    /// The reason the peer's last connection ended, if it ever did.
    pub(super) fn last_reason(&self, peer: &NodeId) -> Option<CloseReason> {
        self.last_reason.lock().get(peer).cloned()
    }

    /// Peer events from now on.
    pub(super) fn subscribe(&self) -> broadcast::Receiver<PeerEvent> {
        self.events.subscribe()
    }

    /// Adds a target at `address`, whose dialer stops on `cancel`. Returns false if it was
    /// one already.
    pub(super) fn add_target(&self, address: &str, cancel: CancellationToken) -> bool {
        let mut targets = self.targets.lock();
        if targets.contains_key(address) {
            return false;
        }
        targets.insert(
            address.to_owned(),
            Target {
                status: TargetStatus::new(),
                addr: address.parse().ok(),
                resolved: Vec::new(),
                cancel,
            },
        );
        true
    }

    /// Removes the target at `address`, stops its dialer and closes the session of the node
    /// found there: the one with the node ID found at the address, or one whose address (or
    /// the peer's listen port at its IP) is the configured one. Returns false if it was not
    /// a target.
    pub(super) fn remove_target(&self, address: &str) -> bool {
        let Some(target) = self.targets.lock().remove(address) else {
            return false;
        };
        target.cancel.cancel();
        let node_id = target.status.node_id();
        let is_target = |a: SocketAddr| {
            target
                .addr
                .as_ref()
                .is_some_and(|t| t.is(a, &target.resolved))
        };
        self.close_where(|s| {
            let listen = SocketAddr::new(s.addr.ip(), s.peer_listen_port);
            (Some(s.peer) == node_id || is_target(listen) || is_target(s.addr))
                .then_some(CloseReason::Removed)
        });
        true
    }

    /// The targets and their standing, ordered by address.
    pub(super) fn targets(&self) -> Vec<TargetInfo> {
        self.targets
            .lock()
            .iter()
            .map(|(address, t)| t.status.info(address))
            .collect()
    }

    /// Applies a transition to the target at `address`, if it is still one.
    pub(super) fn update_target(&self, address: &str, f: impl FnOnce(&mut TargetStatus)) {
        if let Some(t) = self.targets.lock().get_mut(address) {
            f(&mut t.status);
        }
    }

    /// The node ID found at `address`, once a dial reached it.
    pub(super) fn target_node(&self, address: &str) -> Option<NodeId> {
        self.targets
            .lock()
            .get(address)
            .and_then(|t| t.status.node_id())
    }

    /// The target's address as data; `None` if it is not a target or not `host:port`.
    pub(super) fn target_addr(&self, address: &str) -> Option<PeerAddr> {
        self.targets
            .lock()
            .get(address)
            .and_then(|t| t.addr.clone())
    }

    /// Records what the target's host name resolved to.
    pub(super) fn set_resolved(&self, address: &str, found: &[SocketAddr]) {
        if let Some(t) = self.targets.lock().get_mut(address) {
            t.resolved.clear();
            t.resolved.extend_from_slice(found);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::target::TargetState;
    use crate::session::{new_session, SessionInfo};

    fn id(b: u8) -> NodeId {
        NodeId::from_bytes([b; 64])
    }

    fn handle(
        conn: u64,
        peer: NodeId,
        addr: &str,
        listen_port: u16,
        direction: Direction,
    ) -> SessionHandle {
        new_session(
            conn,
            SessionInfo {
                peer,
                addr: addr.parse().unwrap(),
                local_addr: "127.0.0.1:30300".parse().unwrap(),
                direction,
                version: 2,
                peer_listen_port: listen_port,
                peer_max_packet: 1 << 20,
            },
            1 << 20,
        )
    }

    fn drain(events: &mut broadcast::Receiver<PeerEvent>) -> Vec<PeerEvent> {
        std::iter::from_fn(|| events.try_recv().ok()).collect()
    }

    #[test]
    fn a_first_session_connects_the_peer_and_its_target() {
        let r = Registry::new(id(1));
        let mut events = r.subscribe();
        assert!(r.add_target("127.0.0.1:30302", CancellationToken::new()));
        r.update_target("127.0.0.1:30302", |t| t.dialed(id(2), false));
        let s = handle(1, id(2), "127.0.0.1:40000", 30302, Direction::Inbound);
        assert!(r.register(&s));
        assert!(r.is_connected(&id(2)));
        assert_eq!(r.targets()[0].state, TargetState::Connected);
        assert_eq!(
            drain(&mut events),
            [PeerEvent::Connected {
                peer: id(2),
                addr: s.addr,
                direction: Direction::Inbound
            }]
        );
    }

    #[test]
    fn a_winning_duplicate_replaces_the_live_session_without_events() {
        // We (1) are smaller: our dial wins over the peer's.
        let r = Registry::new(id(1));
        let theirs = handle(1, id(2), "127.0.0.1:40000", 30302, Direction::Inbound);
        assert!(r.register(&theirs));
        let mut events = r.subscribe();
        let ours = handle(2, id(2), "127.0.0.1:30302", 30302, Direction::Outbound);
        assert!(r.register(&ours));
        assert!(theirs.is_closed() && !ours.is_closed());
        assert_eq!(r.session(&id(2)).map(|s| s.id), Some(2));
        // The retired one ending does not disconnect the peer.
        r.unregister(id(2), 1, &CloseReason::Duplicate);
        assert!(r.is_connected(&id(2)));
        assert_eq!(drain(&mut events), []);
        assert_eq!(r.last_reason(&id(2)), None);
    }

    #[test]
    fn a_losing_duplicate_is_closed_and_not_registered() {
        let r = Registry::new(id(1));
        let first = handle(1, id(2), "127.0.0.1:30302", 30302, Direction::Outbound);
        assert!(r.register(&first));
        let mut events = r.subscribe();
        let second = handle(2, id(2), "127.0.0.2:30302", 30302, Direction::Outbound);
        assert!(!r.register(&second));
        assert!(second.is_closed() && !first.is_closed());
        assert_eq!(r.session(&id(2)).map(|s| s.id), Some(1));
        assert_eq!(drain(&mut events), []);
    }

    #[test]
    fn the_current_session_ending_disconnects_with_its_reason() {
        let r = Registry::new(id(1));
        assert!(r.register(&handle(
            1,
            id(2),
            "127.0.0.1:30302",
            30302,
            Direction::Outbound
        )));
        let mut events = r.subscribe();
        r.unregister(id(2), 1, &CloseReason::IdleTimeout);
        assert!(!r.is_connected(&id(2)));
        assert_eq!(r.last_reason(&id(2)), Some(CloseReason::IdleTimeout));
        assert_eq!(
            drain(&mut events),
            [PeerEvent::Disconnected {
                peer: id(2),
                reason: CloseReason::IdleTimeout
            }]
        );
    }

    #[test]
    fn removing_a_target_closes_the_session_at_its_address() {
        let r = Registry::new(id(1));
        let cancel = CancellationToken::new();
        assert!(r.add_target("127.0.0.1:30302", cancel.clone()));
        // Node 2 dialed us from its IPv4-mapped address before our dial learned its ID.
        let at_target = handle(
            1,
            id(2),
            "[::ffff:127.0.0.1]:51000",
            30302,
            Direction::Inbound,
        );
        let elsewhere = handle(2, id(3), "127.0.0.1:30303", 30303, Direction::Outbound);
        assert!(r.register(&at_target) && r.register(&elsewhere));
        assert!(r.remove_target("127.0.0.1:30302"));
        assert!(cancel.is_cancelled());
        assert!(at_target.is_closed());
        assert!(!elsewhere.is_closed());
        assert!(r.targets().is_empty());
        assert!(!r.remove_target("127.0.0.1:30302"), "no longer a target");
    }

    #[test]
    fn removing_a_named_target_closes_sessions_from_what_it_resolved_to() {
        let r = Registry::new(id(1));
        assert!(r.add_target("node2.example:30302", CancellationToken::new()));
        r.set_resolved("node2.example:30302", &["10.0.0.2:30302".parse().unwrap()]);
        let s = handle(1, id(2), "10.0.0.2:30302", 30302, Direction::Outbound);
        let other = handle(2, id(3), "10.0.0.3:30302", 30302, Direction::Outbound);
        assert!(r.register(&s) && r.register(&other));
        assert!(r.remove_target("node2.example:30302"));
        assert!(s.is_closed() && !other.is_closed());
    }

    #[test]
    fn removing_a_target_closes_the_node_found_there_at_any_address() {
        let r = Registry::new(id(1));
        assert!(r.add_target("127.0.0.1:30302", CancellationToken::new()));
        r.update_target("127.0.0.1:30302", |t| t.dialed(id(2), false));
        let s = handle(1, id(2), "10.9.9.9:51000", 0, Direction::Inbound);
        assert!(r.register(&s));
        assert!(r.remove_target("127.0.0.1:30302"));
        assert!(s.is_closed());
    }

    #[test]
    fn a_target_is_added_once() {
        let r = Registry::new(id(1));
        assert!(r.add_target("127.0.0.1:30302", CancellationToken::new()));
        assert!(!r.add_target("127.0.0.1:30302", CancellationToken::new()));
        assert_eq!(r.targets().len(), 1);
        assert_eq!(
            r.target_addr("127.0.0.1:30302").map(|a| a.port()),
            Some(30302)
        );
    }
}
