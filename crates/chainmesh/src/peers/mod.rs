//! The peer set: configured and runtime-added peers, dialing and reconnect backoff, accepting,
//! the one-connection-per-pair rule, admission, and peer events.
//!
//! Each configured address has a dialer task (`dialer`) that never gives up on it. Each
//! accepted (`listener`) or dialed connection goes through TLS and the protocol handshake
//! (`setup`, [`handshake`]), is registered under the peer's node ID (`registry`), and then
//! runs as a [`session`] in the task that made it. The rules those follow are
//! pure data, without I/O: `duplicate` (which of two connections to one peer to keep),
//! `target` (a configured peer's standing, [`TargetState`]), [`backoff`] (redial delays),
//! `addr` ([`PeerAddr`]) and `refusal` ([`RefusalReason`]).

mod addr;
pub mod backoff;
mod dialer;
mod duplicate;
pub mod handshake;
mod limits;
mod listener;
mod refusal;
mod registry;
mod repeat;
mod setup;
mod socket;
mod target;
mod traffic;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU16, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::RwLock;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::{Admission, Refusal};
use crate::config::{SocketConfig, TimersConfig};
use crate::identity::NodeId;
use crate::session::{self, CloseReason, Inbound, Lane, SessionHandle};
use crate::tls::TlsContext;
use crate::wire::Packet;

pub use addr::{Host, PeerAddr, PeerAddrError};
pub use dialer::ConnectError;
pub use refusal::{RefusalReason, ALREADY_CONNECTED};
pub use registry::PeerEvent;
pub use target::{TargetError, TargetInfo, TargetState};
pub use traffic::{PeerTraffic, Totals};

/// Settings of the connection layer.
#[derive(Debug, Clone)]
pub struct PeerSettings {
    /// Timers from the config.
    pub timers: TimersConfig,
    /// Largest packet accepted.
    pub max_packet: u32,
    /// Bytes a session's write queue holds before senders wait or fail.
    pub queue_bytes: usize,
    /// Inbound TLS and protocol handshakes under way at once (`limits.inbound_handshakes`).
    pub inbound_handshakes: usize,
    /// Inbound handshakes under way at once from one IP address (`limits.handshakes_per_ip`).
    pub handshakes_per_ip: usize,
    /// Inbound connections at once from one IP address, handshakes included
    /// (`limits.connections_per_ip`).
    pub connections_per_ip: usize,
    /// Protocol handshakes under way at once for one node ID, either direction
    /// (`limits.handshakes_per_identity`).
    pub handshakes_per_identity: usize,
    /// Bytes a session reads per wake before it yields (`limits.read_budget_bytes`).
    pub read_budget_bytes: usize,
    /// Peers whose traffic counters are kept while they are not connected: as many as the
    /// nodes routed to (`limits.max_routing_nodes`).
    pub remembered_peers: usize,
    /// TCP options of every connection (`[socket]`).
    pub socket: SocketConfig,
}

/// The peer set. Cloning gives another handle to the same set.
#[derive(Clone)]
pub struct Peers {
    inner: Arc<Inner>,
}

struct Inner {
    local: NodeId,
    tls: TlsContext,
    admission: Arc<RwLock<Admission>>,
    settings: PeerSettings,
    inbound: Arc<dyn Inbound>,
    registry: registry::Registry,
    conn_ids: AtomicU64,
    /// Drawn at start, sent in every handshake: tells this process from another holding the
    /// same certificate.
    incarnation: NonZeroU64,
    handshakes_per_ip: Arc<limits::PerKey<IpAddr>>,
    connections_per_ip: Arc<limits::PerKey<IpAddr>>,
    handshakes_per_identity: Arc<limits::PerKey<NodeId>>,
    /// When a refusal of each kind from each source IP was last logged (`listener`).
    refusal_log: parking_lot::Mutex<repeat::RepeatWarnings<(IpAddr, &'static str)>>,
    listen_port: AtomicU16,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Peers {
    /// A peer set for the node `local`, handing inbound packets to `inbound`.
    pub fn new(
        local: NodeId,
        tls: TlsContext,
        admission: Arc<RwLock<Admission>>,
        settings: PeerSettings,
        inbound: Arc<dyn Inbound>,
    ) -> Self {
        // A live session silent this long has missed a heartbeat by half an interval: its
        // peer's process is gone, and a new incarnation may take its place. A healthy quiet
        // link hears something every interval.
        let stale_after = settings.timers.heartbeat_interval.saturating_mul(3) / 2;
        Peers {
            inner: Arc::new(Inner {
                local,
                tls,
                admission,
                registry: registry::Registry::new(local, stale_after, settings.remembered_peers),
                conn_ids: AtomicU64::new(1),
                incarnation: random_incarnation(),
                handshakes_per_ip: limits::PerKey::new(settings.handshakes_per_ip),
                connections_per_ip: limits::PerKey::new(settings.connections_per_ip),
                handshakes_per_identity: limits::PerKey::new(settings.handshakes_per_identity),
                refusal_log: parking_lot::Mutex::new(repeat::RepeatWarnings::new(
                    repeat::REMEMBERED_SOURCES,
                )),
                settings,
                inbound,
                listen_port: AtomicU16::new(0),
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
            }),
        }
    }

    /// This node's ID.
    pub fn local_id(&self) -> NodeId {
        self.inner.local
    }

    /// This process's incarnation, as sent in its handshakes.
    pub fn incarnation(&self) -> NonZeroU64 {
        self.inner.incarnation
    }

    /// Connections refused so far, in either direction, counted by
    /// [`RefusalReason::kind`].
    pub fn refusal_counts(&self) -> BTreeMap<&'static str, u64> {
        self.inner.registry.refusal_counts()
    }

    /// Peers that became connected since start.
    pub fn connects(&self) -> u64 {
        self.inner.registry.connects()
    }

    /// Peers that stopped being connected since start, by [`CloseReason::kind`].
    pub fn disconnect_counts(&self) -> BTreeMap<&'static str, u64> {
        self.inner.registry.disconnect_counts()
    }

    /// Every peer's traffic since start, summed over its connections and kept by node ID
    /// across reconnects (for up to `remembered_peers` peers not connected), sorted.
    pub fn traffic(&self) -> Vec<PeerTraffic> {
        self.inner.registry.traffic()
    }

    /// Accepts connections on `listener` until shutdown.
    pub fn listen(&self, listener: TcpListener) {
        self.spawn_listener(listener);
    }

    /// Starts keeping a connection to `address` (`host:port`). Returns false if it was
    /// already a target.
    pub fn add_target(&self, address: &str) -> bool {
        let cancel = self.inner.shutdown.child_token();
        if !self.inner.registry.add_target(address, cancel.clone()) {
            return false;
        }
        self.spawn_dialer(address.to_owned(), cancel);
        true
    }

    /// Stops keeping a connection to `address` and closes the session of the node found
    /// there. Returns false if it was not a target.
    pub fn remove_target(&self, address: &str) -> bool {
        self.inner.registry.remove_target(address)
    }

    /// The configured peer addresses and their states.
    pub fn targets(&self) -> Vec<TargetInfo> {
        self.inner.registry.targets()
    }

    /// The session to `peer`, if connected.
    pub fn session(&self, peer: &NodeId) -> Option<SessionHandle> {
        self.inner.registry.session(peer)
    }

    /// Whether there is a live session to `peer` (without taking a handle to it).
    pub fn is_connected(&self, peer: &NodeId) -> bool {
        self.inner.registry.is_connected(peer)
    }

    /// Every live session.
    pub fn sessions(&self) -> Vec<SessionHandle> {
        self.inner.registry.sessions()
    }

    /// The reason the peer's last connection ended, if it ever did.
    pub fn last_reason(&self, peer: &NodeId) -> Option<CloseReason> {
        self.inner.registry.last_reason(peer)
    }

    /// Peer events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<PeerEvent> {
        self.inner.registry.subscribe()
    }

    /// Replaces the admission policy and closes live sessions it now excludes.
    pub fn set_admission(&self, policy: Admission) {
        *self.inner.admission.write() = policy;
        let admission = self.inner.admission.read();
        self.inner
            .registry
            .close_where(|s| admission.check(&s.peer).err().map(excluded));
    }

    /// Tells every peer we are leaving, closes every session, stops dialing and accepting,
    /// and waits (at most `grace`) for the sessions to flush.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.shutdown.cancel();
        for s in self.sessions() {
            let goodbye = Packet::goodbye(s.version, "shutdown").to_bytes();
            let _ = s.try_send_in(Lane::Control, goodbye);
            s.close(CloseReason::Shutdown);
        }
        self.inner.tasks.close();
        let _ = tokio::time::timeout(grace, self.inner.tasks.wait()).await;
    }

    /// Queues an encoded packet to a directly connected peer without waiting.
    pub fn try_send_to(&self, peer: &NodeId, frame: Bytes) -> Result<(), session::QueueError> {
        match self.session(peer) {
            Some(s) => s.try_send(frame),
            None => Err(session::QueueError::Closed),
        }
    }
}

/// Why a live session the admission policy now excludes is closed.
fn excluded(refusal: Refusal) -> CloseReason {
    match refusal {
        Refusal::Blacklisted => CloseReason::Blacklisted,
        Refusal::NotWhitelisted => CloseReason::NotWhitelisted,
    }
}

/// A random incarnation for a process's handshakes; 0 means "none" and is never drawn.
pub fn random_incarnation() -> NonZeroU64 {
    loop {
        if let Some(i) = NonZeroU64::new(rand::random()) {
            return i;
        }
    }
}
