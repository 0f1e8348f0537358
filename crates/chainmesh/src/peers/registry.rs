//! The registry: live sessions by node ID (one per peer), the configured peers and their
//! standing, the reason each peer's last connection ended, and peer events.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::addr::PeerAddr;
use super::duplicate::{self, Existing, Verdict};
use super::refusal::RefusalReason;
use super::target::{TargetInfo, TargetStatus};
use super::traffic::{Closed, PeerTraffic};
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

/// A peer's live session, with what the one-session-per-identity rule needs to know.
struct Live {
    handle: SessionHandle,
    /// The incarnation the peer's process named in its handshake.
    incarnation: Option<NonZeroU64>,
    /// A duplicate connection of the peer that is draining (at most one at a time).
    retired: Option<SessionHandle>,
}

/// What [`Registry::register`] made of a new connection.
#[derive(Debug)]
pub(super) enum Registration {
    /// The connection is the peer's session now.
    Registered,
    /// The connection lost to another of the same process under the one-connection-per-pair
    /// rule: it is closing (draining, or at once if another duplicate drains already).
    Retired,
    /// The connection is refused and never becomes a session: the peer is connected
    /// already from another process.
    Refused(RefusalReason),
}

/// The shared tables of a peer set. Lock order, where two are taken: sessions, then targets.
pub(super) struct Registry {
    local: NodeId,
    /// A live session from which nothing has been read for this long gives way to a new
    /// incarnation of its peer.
    stale_after: Duration,
    /// Keyed by certificate-derived IDs only, so the cheap hasher is safe here.
    sessions: RwLock<PeerMap<Live>>,
    /// Keyed by the address as configured.
    targets: Mutex<BTreeMap<String, Target>>,
    last_reason: Mutex<HashMap<NodeId, CloseReason>>,
    /// Refusals counted by [`RefusalReason::kind`].
    refusals: Mutex<BTreeMap<&'static str, u64>>,
    /// What peers' closed connections carried. Taken with `sessions` held, so that a
    /// connection's counters move from live to closed in one step for a reader.
    closed: Mutex<Closed>,
    /// Peers that became connected.
    connects: AtomicU64,
    /// Peers that stopped being connected, by [`CloseReason::kind`].
    disconnects: Mutex<BTreeMap<&'static str, u64>>,
    events: broadcast::Sender<PeerEvent>,
}

impl Registry {
    /// Empty tables for node `local`; a live session silent for `stale_after` gives way to a
    /// new incarnation of its peer; the traffic of at most `remembered` peers is kept while
    /// they are not connected.
    pub(super) fn new(local: NodeId, stale_after: Duration, remembered: usize) -> Self {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        Registry {
            local,
            stale_after,
            sessions: RwLock::new(PeerMap::default()),
            targets: Mutex::new(BTreeMap::new()),
            last_reason: Mutex::new(HashMap::new()),
            refusals: Mutex::new(BTreeMap::new()),
            closed: Mutex::new(Closed::new(remembered)),
            connects: AtomicU64::new(0),
            disconnects: Mutex::new(BTreeMap::new()),
            events,
        }
    }

    /// Adds a live session of a peer whose process named `incarnation`.
    ///
    /// One live session per identity: a connection from another incarnation than the live
    /// session's is refused, unless the live session has been silent for `stale_after` (the
    /// peer restarted and its old connection is dead): then the new one replaces it at once.
    /// Connections of the same incarnation follow the one-connection-per-pair rule
    /// ([`duplicate::decide`]); the loser is retired, and at most one retired connection per
    /// peer drains at a time.
    pub(super) fn register(
        &self,
        new: &SessionHandle,
        incarnation: Option<NonZeroU64>,
    ) -> Registration {
        let mut sessions = self.sessions.write();
        let existing = match sessions.get(&new.peer) {
            None => Existing::None,
            Some(old) if old.handle.is_closed() => Existing::Closed,
            Some(old) if old.incarnation != incarnation => {
                if old.handle.silent_for() < self.stale_after {
                    let reason = RefusalReason::AlreadyConnected {
                        peer: new.peer,
                        existing: old.handle.addr,
                        new: new.addr,
                    };
                    return Registration::Refused(reason);
                }
                Existing::Closed
            }
            Some(old) => Existing::Live(old.handle.direction),
        };
        let verdict = duplicate::decide(&self.local, &new.peer, existing, new.direction);
        let mut outcome = Registration::Registered;
        match (verdict, sessions.get_mut(&new.peer)) {
            (Verdict::KeepExisting, Some(live)) => {
                debug!(peer = %new.peer.short(), conn = new.id, "duplicate connection, keeping the existing one");
                outcome = self.retire(live, new.clone());
            }
            (Verdict::Replace, Some(live)) => {
                debug!(peer = %new.peer.short(), old = live.handle.id, new = new.id,
                    "duplicate connection, keeping the one the smaller node ID dialed");
                let old = std::mem::replace(&mut live.handle, new.clone());
                live.incarnation = incarnation;
                // The old one drains; whatever drained before may have to stop at once.
                let _ = self.retire(live, old);
            }
            (_, previous) => {
                let retired = previous.and_then(|p| p.retired.take());
                let replaced = sessions.insert(
                    new.peer,
                    Live {
                        handle: new.clone(),
                        incarnation,
                        retired,
                    },
                );
                if let Some(old) = replaced.filter(|old| !old.handle.is_closed()) {
                    // A live session of another incarnation, silent for too long.
                    info!(peer = %new.peer.short(), old = %old.handle.addr, new = %new.addr,
                        silent = ?old.handle.silent_for(),
                        "peer restarted: its new connection replaces the silent old one");
                    old.handle.close(CloseReason::Restarted);
                    self.disconnected(new.peer, &CloseReason::Restarted);
                }
                info!(peer = %new.peer.short(), addr = %new.addr, direction = ?new.direction, "peer connected");
                self.connects.fetch_add(1, Relaxed);
                let _ = self.events.send(PeerEvent::Connected {
                    peer: new.peer,
                    addr: new.addr,
                    direction: new.direction,
                });
            }
        }
        drop(sessions);
        if let Registration::Registered = outcome {
            for t in self.targets.lock().values_mut() {
                t.status.session_up(new.peer);
            }
        }
        outcome
    }

    /// Retires `conn`, a duplicate of `live`'s peer: it drains, unless another duplicate
    /// still drains, in which case it closes at once (a peer cannot pile up connections by
    /// redialing).
    fn retire(&self, live: &mut Live, conn: SessionHandle) -> Registration {
        if live.retired.as_ref().is_some_and(|r| !r.is_finished()) {
            let reason = RefusalReason::TooManyDuplicates(conn.peer);
            warn!(peer = %conn.peer.short(), addr = %conn.addr, %reason, "closing a duplicate connection");
            self.count_refusal(&reason);
            conn.close_now(CloseReason::Duplicate);
            return Registration::Retired;
        }
        conn.close(CloseReason::Duplicate);
        live.retired = Some(conn);
        Registration::Retired
    }

    /// Records that `peer` is no longer connected, with `reason`.
    fn disconnected(&self, peer: NodeId, reason: &CloseReason) {
        info!(peer = %peer.short(), %reason, "peer disconnected");
        count_in(&mut self.disconnects.lock(), reason.kind());
        self.last_reason.lock().insert(peer, reason.clone());
        let _ = self.events.send(PeerEvent::Disconnected {
            peer,
            reason: reason.clone(),
        });
    }

    /// Removes connection `ended`, which has stopped, and keeps what it carried; the peer is
    /// disconnected unless `ended` is not its session (a retired duplicate, or one a new
    /// connection replaced: the peer is then still connected).
    pub(super) fn unregister(&self, ended: &SessionHandle, reason: &CloseReason) {
        let (peer, conn) = (ended.peer, ended.id);
        let mut sessions = self.sessions.write();
        self.closed.lock().add(ended);
        let Some(live) = sessions.get_mut(&peer) else {
            return;
        };
        if live.retired.as_ref().is_some_and(|r| r.id == conn) {
            live.retired = None;
        }
        if live.handle.id != conn {
            return;
        }
        sessions.remove(&peer);
        drop(sessions);
        self.disconnected(peer, reason);
    }

    /// Reports an inbound connection refused during set-up, and counts it.
    pub(super) fn refused(&self, addr: SocketAddr, reason: RefusalReason) {
        self.count_refusal(&reason);
        let _ = self.events.send(PeerEvent::Refused { addr, reason });
    }

    /// Counts a refusal under its kind.
    pub(super) fn count_refusal(&self, reason: &RefusalReason) {
        count_in(&mut self.refusals.lock(), reason.kind());
    }

    /// Peers that became connected since start.
    pub(super) fn connects(&self) -> u64 {
        self.connects.load(Relaxed)
    }

    /// Peers that stopped being connected since start, by [`CloseReason::kind`].
    pub(super) fn disconnect_counts(&self) -> BTreeMap<&'static str, u64> {
        self.disconnects.lock().clone()
    }

    /// Every peer's traffic since start, across its connections, by node ID.
    pub(super) fn traffic(&self) -> Vec<PeerTraffic> {
        let sessions = self.sessions.read();
        let live = sessions
            .values()
            .map(|l| (&l.handle, l.retired.as_ref().filter(|r| !r.is_finished())));
        self.closed.lock().view(live)
    }

    /// Refusals so far, by [`RefusalReason::kind`].
    pub(super) fn refusal_counts(&self) -> BTreeMap<&'static str, u64> {
        self.refusals.lock().clone()
    }

    /// The session to `peer`, if connected.
    pub(super) fn session(&self, peer: &NodeId) -> Option<SessionHandle> {
        self.sessions.read().get(peer).map(|l| l.handle.clone())
    }

    /// Whether there is a live session to `peer`.
    pub(super) fn is_connected(&self, peer: &NodeId) -> bool {
        self.sessions.read().contains_key(peer)
    }

    /// Every live session.
    pub(super) fn sessions(&self) -> Vec<SessionHandle> {
        self.sessions
            .read()
            .values()
            .map(|l| l.handle.clone())
            .collect()
    }

    /// Closes every live session `why` gives a reason for.
    pub(super) fn close_where(&self, why: impl Fn(&SessionHandle) -> Option<CloseReason>) {
        for l in self.sessions.read().values() {
            if let Some(reason) = why(&l.handle) {
                l.handle.close(reason);
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

/// Adds one to `kind`'s count.
fn count_in(counts: &mut BTreeMap<&'static str, u64>, kind: &'static str) {
    let n = counts.entry(kind).or_insert(0);
    *n = n.saturating_add(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::target::TargetState;
    use crate::session::{new_session, SessionInfo};

    fn id(b: u8) -> NodeId {
        NodeId::from_bytes([b; 64])
    }

    const STALE: Duration = Duration::from_secs(3600);
    const INC: Option<NonZeroU64> = NonZeroU64::new(1);

    /// Registers `s` as incarnation [`INC`]; whether it became the peer's session.
    fn registered(r: &Registry, s: &SessionHandle) -> bool {
        matches!(r.register(s, INC), Registration::Registered)
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
        let r = Registry::new(id(1), STALE, 16);
        let mut events = r.subscribe();
        assert!(r.add_target("127.0.0.1:30302", CancellationToken::new()));
        r.update_target("127.0.0.1:30302", |t| t.dialed(id(2), false));
        let s = handle(1, id(2), "127.0.0.1:40000", 30302, Direction::Inbound);
        assert!(registered(&r, &s));
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
        let r = Registry::new(id(1), STALE, 16);
        let theirs = handle(1, id(2), "127.0.0.1:40000", 30302, Direction::Inbound);
        assert!(registered(&r, &theirs));
        let mut events = r.subscribe();
        let ours = handle(2, id(2), "127.0.0.1:30302", 30302, Direction::Outbound);
        assert!(registered(&r, &ours));
        assert!(theirs.is_closed() && !ours.is_closed());
        assert_eq!(r.session(&id(2)).map(|s| s.id), Some(2));
        // The retired one ending does not disconnect the peer.
        r.unregister(
            &handle(1, id(2), "127.0.0.1:1", 1, Direction::Inbound),
            &CloseReason::Duplicate,
        );
        assert!(r.is_connected(&id(2)));
        assert_eq!(drain(&mut events), []);
        assert_eq!(r.last_reason(&id(2)), None);
    }

    #[test]
    fn a_losing_duplicate_is_closed_and_not_registered() {
        let r = Registry::new(id(1), STALE, 16);
        let first = handle(1, id(2), "127.0.0.1:30302", 30302, Direction::Outbound);
        assert!(registered(&r, &first));
        let mut events = r.subscribe();
        let second = handle(2, id(2), "127.0.0.2:30302", 30302, Direction::Outbound);
        assert!(!registered(&r, &second));
        assert!(second.is_closed() && !first.is_closed());
        assert_eq!(r.session(&id(2)).map(|s| s.id), Some(1));
        assert_eq!(drain(&mut events), []);
    }

    #[test]
    fn the_current_session_ending_disconnects_with_its_reason() {
        let r = Registry::new(id(1), STALE, 16);
        assert!(registered(
            &r,
            &handle(1, id(2), "127.0.0.1:30302", 30302, Direction::Outbound)
        ));
        let mut events = r.subscribe();
        r.unregister(
            &handle(1, id(2), "127.0.0.1:1", 1, Direction::Inbound),
            &CloseReason::IdleTimeout,
        );
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
        let r = Registry::new(id(1), STALE, 16);
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
        assert!(registered(&r, &at_target) && registered(&r, &elsewhere));
        assert!(r.remove_target("127.0.0.1:30302"));
        assert!(cancel.is_cancelled());
        assert!(at_target.is_closed());
        assert!(!elsewhere.is_closed());
        assert!(r.targets().is_empty());
        assert!(!r.remove_target("127.0.0.1:30302"), "no longer a target");
    }

    #[test]
    fn removing_a_named_target_closes_sessions_from_what_it_resolved_to() {
        let r = Registry::new(id(1), STALE, 16);
        assert!(r.add_target("node2.example:30302", CancellationToken::new()));
        r.set_resolved("node2.example:30302", &["10.0.0.2:30302".parse().unwrap()]);
        let s = handle(1, id(2), "10.0.0.2:30302", 30302, Direction::Outbound);
        let other = handle(2, id(3), "10.0.0.3:30302", 30302, Direction::Outbound);
        assert!(registered(&r, &s) && registered(&r, &other));
        assert!(r.remove_target("node2.example:30302"));
        assert!(s.is_closed() && !other.is_closed());
    }

    #[test]
    fn removing_a_target_closes_the_node_found_there_at_any_address() {
        let r = Registry::new(id(1), STALE, 16);
        assert!(r.add_target("127.0.0.1:30302", CancellationToken::new()));
        r.update_target("127.0.0.1:30302", |t| t.dialed(id(2), false));
        let s = handle(1, id(2), "10.9.9.9:51000", 0, Direction::Inbound);
        assert!(registered(&r, &s));
        assert!(r.remove_target("127.0.0.1:30302"));
        assert!(s.is_closed());
    }

    #[test]
    fn another_incarnation_is_refused_while_the_live_session_is_heard() {
        let r = Registry::new(id(1), STALE, 16);
        let real = handle(1, id(2), "127.0.0.1:30302", 30302, Direction::Outbound);
        assert!(registered(&r, &real));
        let mut events = r.subscribe();
        let copy = handle(2, id(2), "127.0.0.1:40000", 0, Direction::Inbound);
        match r.register(&copy, NonZeroU64::new(2)) {
            Registration::Refused(reason) => {
                let text = reason.to_string();
                assert!(
                    text.contains("already connected from 127.0.0.1:30302")
                        && text.contains("127.0.0.1:40000"),
                    "{text}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(!real.is_closed());
        assert_eq!(r.session(&id(2)).map(|s| s.id), Some(1));
        // The copy's end does not disconnect the real one.
        r.unregister(
            &handle(2, id(2), "127.0.0.1:1", 1, Direction::Inbound),
            &CloseReason::ClosedByPeer,
        );
        assert!(r.is_connected(&id(2)));
        assert_eq!(drain(&mut events), []);
    }

    #[test]
    fn another_incarnation_replaces_a_silent_session_at_once() {
        let r = Registry::new(id(1), Duration::ZERO, 16);
        let old = handle(1, id(2), "127.0.0.1:30302", 30302, Direction::Outbound);
        assert!(registered(&r, &old));
        let mut events = r.subscribe();
        let new = handle(2, id(2), "127.0.0.1:40000", 30302, Direction::Inbound);
        assert!(matches!(
            r.register(&new, NonZeroU64::new(2)),
            Registration::Registered
        ));
        assert!(old.is_closed());
        assert_eq!(r.session(&id(2)).map(|s| s.id), Some(2));
        assert_eq!(
            drain(&mut events),
            [
                PeerEvent::Disconnected {
                    peer: id(2),
                    reason: CloseReason::Restarted
                },
                PeerEvent::Connected {
                    peer: id(2),
                    addr: new.addr,
                    direction: Direction::Inbound
                }
            ]
        );
        // The old one ending later changes nothing.
        r.unregister(
            &handle(1, id(2), "127.0.0.1:1", 1, Direction::Inbound),
            &CloseReason::Restarted,
        );
        assert!(r.is_connected(&id(2)));
    }

    #[test]
    fn at_most_one_retired_duplicate_drains_per_peer() {
        let r = Registry::new(id(1), STALE, 16);
        let first = handle(1, id(2), "127.0.0.1:30302", 30302, Direction::Outbound);
        assert!(registered(&r, &first));
        let second = handle(2, id(2), "127.0.0.2:30302", 30302, Direction::Outbound);
        assert!(matches!(r.register(&second, INC), Registration::Retired));
        let third = handle(3, id(2), "127.0.0.3:30302", 30302, Direction::Outbound);
        assert!(matches!(r.register(&third, INC), Registration::Retired));
        assert!(second.is_closed() && third.is_closed() && !first.is_closed());
        assert!(third.closes_at_once() && !second.closes_at_once());
        assert_eq!(r.refusal_counts().get("too-many-duplicates"), Some(&1));
    }

    #[test]
    fn a_target_is_added_once() {
        let r = Registry::new(id(1), STALE, 16);
        assert!(r.add_target("127.0.0.1:30302", CancellationToken::new()));
        assert!(!r.add_target("127.0.0.1:30302", CancellationToken::new()));
        assert_eq!(r.targets().len(), 1);
        assert_eq!(
            r.target_addr("127.0.0.1:30302").map(|a| a.port()),
            Some(30302)
        );
    }
}
