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
mod listener;
mod refusal;
mod registry;
mod setup;
mod target;

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
use crate::config::TimersConfig;
use crate::identity::NodeId;
use crate::session::{self, CloseReason, Inbound, SessionHandle};
use crate::tls::TlsContext;
use crate::wire::Packet;

pub use addr::{Host, PeerAddr, PeerAddrError};
pub use dialer::ConnectError;
pub use refusal::RefusalReason;
pub use registry::PeerEvent;
pub use target::{TargetError, TargetInfo, TargetState};

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
        Peers {
            inner: Arc::new(Inner {
                local,
                tls,
                admission,
                settings,
                inbound,
                registry: registry::Registry::new(local),
                conn_ids: AtomicU64::new(1),
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
            .close_where(|s| match admission.check(&s.peer) {
                Ok(()) => None,
                Err(Refusal::Blacklisted) => Some(CloseReason::Blacklisted),
                Err(Refusal::NotWhitelisted) => Some(CloseReason::NotWhitelisted),
            });
    }

    /// Tells every peer we are leaving, closes every session, stops dialing and accepting,
    /// and waits (at most `grace`) for the sessions to flush.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.shutdown.cancel();
        for s in self.sessions() {
            let _ = s.try_send(Packet::goodbye(s.version, "shutdown").to_bytes());
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
