//! The peer set: configured and runtime-added peers, dialing and reconnect backoff, accepting,
//! the one-connection-per-pair rule, admission, and peer events.
//!
//! Each configured address has a dialer task that never gives up on it. Each accepted or
//! dialed connection goes through TLS and the protocol handshake, is registered under the
//! peer's node ID, and then runs as a [`session`](crate::session) in the task that made it.

pub mod backoff;
pub mod handshake;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::FutureExt;
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn, Instrument};

use crate::admission::{Admission, Refusal};
use crate::config::TimersConfig;
use crate::identity::{NodeId, PeerMap};
use crate::session::{
    self, CloseReason, Direction, Inbound, SessionConfig, SessionHandle, SessionInfo,
};
use crate::tls::TlsContext;
use crate::wire::{Handshake, Packet};
use backoff::Backoff;

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
    /// A connection was refused during the TLS or protocol handshake.
    Refused {
        /// The remote address.
        addr: SocketAddr,
        /// Why, in words.
        reason: String,
    },
}

/// Where a configured peer stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum TargetState {
    /// A dial or handshake is under way.
    Connecting,
    /// A session to this peer is up (dialed by us or by it).
    Connected,
    /// Waiting before the next attempt.
    BackingOff {
        /// When the next attempt starts, in milliseconds since the Unix epoch.
        next_attempt_ms: u64,
    },
    /// The address is this node itself; it is not dialed again.
    Itself,
}

/// A configured peer as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TargetInfo {
    /// The configured address.
    pub address: String,
    /// The node ID found at the address, once a handshake succeeded.
    pub node_id: Option<NodeId>,
    /// Current state.
    #[serde(flatten)]
    pub state: TargetState,
    /// The last failure or disconnect reason.
    pub last_error: Option<String>,
    /// Consecutive failed attempts.
    pub failures: u32,
}

/// Settings of the connection layer.
#[derive(Debug, Clone)]
pub struct PeerSettings {
    /// Timers from the config.
    pub timers: TimersConfig,
    /// Largest packet accepted.
    pub max_packet: u32,
    /// Bytes a session's write queue holds before senders wait or fail.
    pub queue_bytes: usize,
    /// Inbound TLS and protocol handshakes under way at once.
    pub inbound_handshakes: usize,
}

struct Target {
    node_id: Option<NodeId>,
    state: TargetState,
    last_error: Option<String>,
    failures: u32,
    cancel: CancellationToken,
}

/// Why a connection attempt did not produce a session.
#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error("tcp connect: {0}")]
    Tcp(std::io::Error),
    #[error("tcp connect timed out after {0:?}")]
    TcpTimeout(Duration),
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("tls handshake timed out after {0:?}")]
    TlsTimeout(Duration),
    #[error("{0}")]
    Handshake(#[from] handshake::HandshakeError),
    #[error("the address is this node itself")]
    Itself,
    #[error("refused: {0}")]
    Refused(Refusal),
    #[error("could not resolve {0}")]
    Resolve(String),
}

/// The stream under a session: TLS straight over the TCP socket. No read buffer sits in
/// between: the TLS context reads ahead into OpenSSL's own record buffer (`crate::tls`), so a
/// `BufReader` here would only hold a second copy of the same bytes.
type Stream = tokio_openssl::SslStream<TcpStream>;

/// A connection past both handshakes, registered or about to wind down as a duplicate.
struct Established {
    stream: Stream,
    handle: SessionHandle,
    leftover: bytes::BytesMut,
    registered: bool,
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
    /// Keyed by certificate-derived IDs only, so the cheap hasher is safe here.
    sessions: RwLock<PeerMap<SessionHandle>>,
    targets: Mutex<BTreeMap<String, Target>>,
    last_reason: Mutex<HashMap<NodeId, String>>,
    events: broadcast::Sender<PeerEvent>,
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
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        Peers {
            inner: Arc::new(Inner {
                local,
                tls,
                admission,
                settings,
                inbound,
                sessions: RwLock::new(PeerMap::default()),
                targets: Mutex::new(BTreeMap::new()),
                last_reason: Mutex::new(HashMap::new()),
                events,
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
        if let Ok(addr) = listener.local_addr() {
            self.inner.listen_port.store(addr.port(), Ordering::Relaxed);
        }
        let me = self.clone();
        // Handshakes cost CPU (ECDSA) and memory before the peer has proven anything: bound
        // how many run at once. Past the bound, new connections wait in the kernel's backlog.
        let slots = Arc::new(tokio::sync::Semaphore::new(
            me.inner.settings.inbound_handshakes,
        ));
        self.inner.tasks.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = me.inner.shutdown.cancelled() => return,
                    r = async {
                        let permit = slots.clone().acquire_owned().await;
                        (permit, listener.accept().await)
                    } => r,
                };
                match accepted {
                    (Ok(permit), Ok((tcp, addr))) => {
                        let me2 = me.clone();
                        me.inner
                            .tasks
                            .spawn(async move { me2.serve_inbound(tcp, addr, permit).await });
                    }
                    // The semaphore is never closed.
                    (Err(_), _) => return,
                    (_, Err(e)) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }

    async fn serve_inbound(
        &self,
        tcp: TcpStream,
        addr: SocketAddr,
        slot: tokio::sync::OwnedSemaphorePermit,
    ) {
        // Bound out of a temporary, not a named result: this task lives as long as the
        // session, and a named result would keep its storage (~300 B) beside it.
        let est = match self.establish(tcp, addr, Direction::Inbound).await {
            Ok(est) => est,
            Err(ConnectError::Itself) => {
                debug!(%addr, "inbound connection from ourselves");
                return;
            }
            Err(e) => {
                warn!(%addr, reason = %e, "refused inbound connection");
                let _ = self.inner.events.send(PeerEvent::Refused {
                    addr,
                    reason: e.to_string(),
                });
                return;
            }
        };
        drop(slot);
        self.run_session(est).await;
    }

    /// TLS, identity checks and the protocol handshake, then registration.
    async fn establish(
        &self,
        tcp: TcpStream,
        addr: SocketAddr,
        direction: Direction,
    ) -> Result<Established, ConnectError> {
        let timers = &self.inner.settings.timers;
        // Small frames must not wait for Nagle: the session batches writes itself.
        let _ = tcp.set_nodelay(true);
        let local_addr = tcp
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let tls = match direction {
            Direction::Outbound => {
                tokio::time::timeout(timers.handshake_timeout, self.inner.tls.connect(tcp)).await
            }
            Direction::Inbound => {
                tokio::time::timeout(timers.handshake_timeout, self.inner.tls.accept(tcp)).await
            }
        };
        let (mut stream, peer) =
            tls.map_err(|_| ConnectError::TlsTimeout(timers.handshake_timeout))??;
        if peer == self.inner.local {
            return Err(ConnectError::Itself);
        }
        // Also checked inside TLS; repeated here because a reload may have changed the lists
        // while this handshake was in flight.
        self.inner
            .admission
            .read()
            .check(&peer)
            .map_err(ConnectError::Refused)?;
        let ours = Handshake::ours(
            self.inner.listen_port.load(Ordering::Relaxed),
            self.inner.settings.max_packet,
        );
        let agreed = handshake::exchange(
            &mut stream,
            &ours,
            self.inner.settings.max_packet,
            timers.handshake_timeout,
        )
        .await?;
        let id = self.inner.conn_ids.fetch_add(1, Ordering::Relaxed);
        let handle = session::new_session(
            id,
            SessionInfo {
                peer,
                addr,
                local_addr,
                direction,
                version: agreed.version,
                peer_listen_port: agreed.peer.listen_port,
                peer_max_packet: agreed.peer.max_packet_size,
            },
            self.inner.settings.queue_bytes,
        );
        let registered = self.register(&handle);
        Ok(Established {
            stream,
            handle,
            leftover: agreed.leftover,
            registered,
        })
    }

    /// Adds a live session to the set, applying the one-connection-per-pair rule. Returns
    /// false when the new connection lost to an existing one.
    ///
    /// The rule, identical on both ends so both keep the same TCP connection: of two
    /// connections in opposite directions, keep the one dialed by the node with the smaller
    /// node ID (byte-wise). Of two in the same direction, keep the older one: the peer (or
    /// we) simply reached the same node at a second address.
    fn register(&self, new: &SessionHandle) -> bool {
        let mut sessions = self.inner.sessions.write();
        let keep_new = match sessions.get(&new.peer) {
            None => true,
            Some(old) if old.is_closed() => true,
            Some(old) if old.direction == new.direction => false,
            Some(_) => {
                let smaller_dials = if self.inner.local < new.peer {
                    Direction::Outbound
                } else {
                    Direction::Inbound
                };
                new.direction == smaller_dials
            }
        };
        if !keep_new {
            drop(sessions);
            debug!(peer = %new.peer.short(), conn = new.id, "duplicate connection, keeping the existing one");
            new.close(CloseReason::Duplicate);
            return false;
        }
        let replaced = sessions.insert(new.peer, new.clone());
        drop(sessions);
        match replaced {
            Some(old) if !old.is_closed() => {
                debug!(peer = %new.peer.short(), old = old.id, new = new.id,
                    "duplicate connection, keeping the one the smaller node ID dialed");
                old.close(CloseReason::Duplicate);
            }
            _ => {
                info!(peer = %new.peer.short(), addr = %new.addr, direction = ?new.direction, "peer connected");
                let _ = self.inner.events.send(PeerEvent::Connected {
                    peer: new.peer,
                    addr: new.addr,
                    direction: new.direction,
                });
            }
        }
        self.update_targets_for(new, TargetState::Connected);
        true
    }

    /// Runs an established connection's session to its end and unregisters it.
    ///
    /// The returned future lives in the connection's task for as long as the link is up, so
    /// it is built to hold only what it needs: the session's own future and the connection's
    /// identity for unregistering afterwards. An `async fn` (or `async` block) would also keep
    /// its arguments or captures beside the future it awaits, here the whole `Established` or
    /// a second copy of the session future (measured: 0.7 KiB more per connection).
    fn run_session(&self, est: Established) -> impl Future<Output = CloseReason> + Send + '_ {
        let Established {
            stream,
            handle,
            leftover,
            registered,
        } = est;
        let (peer, conn) = (handle.peer, handle.id);
        let t = &self.inner.settings.timers;
        let cfg = SessionConfig {
            heartbeat_interval: t.heartbeat_interval,
            idle_timeout: t.heartbeat_interval * t.idle_timeout_intervals,
            max_packet: self.inner.settings.max_packet,
            version: handle.version,
            linger: t.handshake_timeout,
        };
        let span = tracing::info_span!("session", peer = %peer.short(), conn);
        let session = session::run(stream, handle, self.inner.inbound.clone(), cfg, leftover)
            .instrument(span);
        session.map(move |reason| {
            if registered {
                self.unregister(peer, conn, &reason);
            }
            reason
        })
    }

    /// Removes connection `conn` to `peer` from the set, unless a preferred duplicate has
    /// replaced it already.
    fn unregister(&self, peer: NodeId, conn: u64, reason: &CloseReason) {
        let mut sessions = self.inner.sessions.write();
        let current = sessions.get(&peer).map(|s| s.id);
        if current != Some(conn) {
            // Replaced by a preferred duplicate: the peer is still connected.
            return;
        }
        sessions.remove(&peer);
        drop(sessions);
        info!(peer = %peer.short(), %reason, "peer disconnected");
        self.inner
            .last_reason
            .lock()
            .insert(peer, reason.to_string());
        let _ = self.inner.events.send(PeerEvent::Disconnected {
            peer,
            reason: reason.clone(),
        });
    }

    fn update_targets_for(&self, handle: &SessionHandle, state: TargetState) {
        let mut targets = self.inner.targets.lock();
        for t in targets.values_mut() {
            if t.node_id == Some(handle.peer) {
                t.state = state.clone();
            }
        }
    }

    /// Starts keeping a connection to `address` (`host:port`). Returns false if it was
    /// already a target.
    pub fn add_target(&self, address: &str) -> bool {
        let cancel = self.inner.shutdown.child_token();
        {
            let mut targets = self.inner.targets.lock();
            if targets.contains_key(address) {
                return false;
            }
            targets.insert(
                address.to_owned(),
                Target {
                    node_id: None,
                    state: TargetState::Connecting,
                    last_error: None,
                    failures: 0,
                    cancel: cancel.clone(),
                },
            );
        }
        let me = self.clone();
        let address = address.to_owned();
        let span = tracing::info_span!("dialer", addr = %address);
        self.inner
            .tasks
            .spawn(async move { me.dial_loop(address, cancel).await }.instrument(span));
        true
    }

    /// Stops keeping a connection to `address` and closes the session of the node found
    /// there. Returns false if it was not a target.
    pub fn remove_target(&self, address: &str) -> bool {
        let Some(target) = self.inner.targets.lock().remove(address) else {
            return false;
        };
        target.cancel.cancel();
        let sessions = self.inner.sessions.read();
        for s in sessions.values() {
            let listen = SocketAddr::new(s.addr.ip(), s.peer_listen_port).to_string();
            if Some(s.peer) == target.node_id || listen == address || s.addr.to_string() == address
            {
                s.close(CloseReason::Removed);
            }
        }
        true
    }

    /// The configured peer addresses and their states.
    pub fn targets(&self) -> Vec<TargetInfo> {
        self.inner
            .targets
            .lock()
            .iter()
            .map(|(address, t)| TargetInfo {
                address: address.clone(),
                node_id: t.node_id,
                state: t.state.clone(),
                last_error: t.last_error.clone(),
                failures: t.failures,
            })
            .collect()
    }

    /// The session to `peer`, if connected.
    pub fn session(&self, peer: &NodeId) -> Option<SessionHandle> {
        self.inner.sessions.read().get(peer).cloned()
    }

    /// Whether there is a live session to `peer` (without taking a handle to it).
    pub fn is_connected(&self, peer: &NodeId) -> bool {
        self.inner.sessions.read().contains_key(peer)
    }

    /// Every live session.
    pub fn sessions(&self) -> Vec<SessionHandle> {
        self.inner.sessions.read().values().cloned().collect()
    }

    /// The reason the peer's last connection ended, if it ever did.
    pub fn last_reason(&self, peer: &NodeId) -> Option<String> {
        self.inner.last_reason.lock().get(peer).cloned()
    }

    /// Peer events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<PeerEvent> {
        self.inner.events.subscribe()
    }

    /// Replaces the admission policy and closes live sessions it now excludes.
    pub fn set_admission(&self, policy: Admission) {
        *self.inner.admission.write() = policy;
        let admission = self.inner.admission.read();
        for s in self.inner.sessions.read().values() {
            match admission.check(&s.peer) {
                Ok(()) => {}
                Err(Refusal::Blacklisted) => s.close(CloseReason::Blacklisted),
                Err(Refusal::NotWhitelisted) => s.close(CloseReason::NotWhitelisted),
            }
        }
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

    fn set_target(&self, address: &str, f: impl FnOnce(&mut Target)) {
        if let Some(t) = self.inner.targets.lock().get_mut(address) {
            f(t);
        }
    }

    /// Keeps `address` connected until the target is removed or the node shuts down.
    ///
    /// This task lives as long as the target, session included, so what it holds while the
    /// session runs is per-link memory: the connection is bound out of a temporary (not a
    /// named result, which would keep its storage beside the session) and handed whole to
    /// [`start_dialed`](Self::start_dialed).
    async fn dial_loop(self, address: String, cancel: CancellationToken) {
        let t = &self.inner.settings.timers;
        let mut backoff = Backoff::new(t.backoff_initial, t.backoff_max);
        loop {
            // A node already connected through another path needs no second connection.
            let known = self
                .inner
                .targets
                .lock()
                .get(&address)
                .and_then(|t| t.node_id);
            if let Some(peer) = known {
                if self.session(&peer).is_some() {
                    self.set_target(&address, |t| t.state = TargetState::Connected);
                    if !self.wait_disconnected(peer, &cancel).await {
                        return;
                    }
                    continue;
                }
            }
            self.set_target(&address, |t| t.state = TargetState::Connecting);
            let started = Instant::now();
            let est = match self.dial_unless_cancelled(&address, &cancel).await {
                None => return,
                Some(Ok(est)) => est,
                Some(Err(ConnectError::Itself)) => {
                    info!("configured peer is this node itself; not dialing it again");
                    self.set_target(&address, |t| {
                        t.state = TargetState::Itself;
                        t.node_id = Some(self.inner.local);
                    });
                    cancel.cancelled().await;
                    return;
                }
                Some(Err(e)) => {
                    debug!(reason = %e, "dial failed");
                    if let ConnectError::Tls(_)
                    | ConnectError::Refused(_)
                    | ConnectError::Handshake(_) = e
                    {
                        warn!(reason = %e, "handshake with configured peer failed");
                    }
                    let failures = backoff.failures() + 1;
                    self.set_target(&address, |t| {
                        t.last_error = Some(e.to_string());
                        t.failures = failures;
                    });
                    if !self.back_off(&address, &mut backoff, &cancel).await {
                        return;
                    }
                    continue;
                }
            };
            let (session, registered) = self.start_dialed(&address, est, &cancel);
            let reason = session.await;
            if !registered {
                // Another connection to the same node won: it is connected.
                continue;
            }
            self.set_target(&address, |t| t.last_error = Some(reason.to_string()));
            // Only a connection that stayed up proves the peer healthy; one that drops at
            // once keeps backing off instead of hammering.
            if started.elapsed() >= t.backoff_max {
                backoff.reset();
            }
            if !self.back_off(&address, &mut backoff, &cancel).await {
                return;
            }
        }
    }

    /// Dials `address`; `None` if `cancel` fires first.
    async fn dial_unless_cancelled(
        &self,
        address: &str,
        cancel: &CancellationToken,
    ) -> Option<Result<Established, ConnectError>> {
        tokio::select! {
            _ = cancel.cancelled() => None,
            r = self.dial(address) => Some(r),
        }
    }

    /// Records a dialed connection on its target and returns the session's future and
    /// whether the connection was registered (false: another connection to the same node
    /// won). Not `async`, so that `est` is consumed before the caller awaits the session.
    fn start_dialed(
        &self,
        address: &str,
        est: Established,
        cancel: &CancellationToken,
    ) -> (impl Future<Output = CloseReason> + Send + '_, bool) {
        let peer = est.handle.peer;
        let registered = est.registered;
        if cancel.is_cancelled() {
            // Removed while the handshake was finishing: wind the session down.
            est.handle.close(CloseReason::Removed);
        }
        self.set_target(address, |t| {
            t.node_id = Some(peer);
            t.failures = 0;
            // Registration could not mark this target: its node ID was unknown.
            if registered {
                t.state = TargetState::Connected;
            }
        });
        (self.run_session(est), registered)
    }

    /// Waits out the next backoff delay, showing it on the target. Returns false if
    /// cancelled first.
    async fn back_off(
        &self,
        address: &str,
        backoff: &mut Backoff,
        cancel: &CancellationToken,
    ) -> bool {
        let delay = backoff.next_delay(rand::random::<f64>());
        let next = SystemTime::now() + delay;
        let next_attempt_ms = next
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.set_target(address, |t| {
            t.state = TargetState::BackingOff { next_attempt_ms }
        });
        tokio::select! {
            _ = cancel.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }

    /// Waits until `peer` has no session. Returns false if cancelled first.
    async fn wait_disconnected(&self, peer: NodeId, cancel: &CancellationToken) -> bool {
        let mut events = self.subscribe();
        loop {
            if self.session(&peer).is_none() {
                return true;
            }
            tokio::select! {
                _ = cancel.cancelled() => return false,
                ev = events.recv() => match ev {
                    Ok(PeerEvent::Disconnected { peer: p, .. }) if p == peer => return true,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return false,
                },
            }
        }
    }

    async fn dial(&self, address: &str) -> Result<Established, ConnectError> {
        let timeout = self.inner.settings.timers.connect_timeout;
        let connect = async {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host(address)
                .await
                .map_err(|_| ConnectError::Resolve(address.to_owned()))?
                .collect();
            let mut last = ConnectError::Resolve(address.to_owned());
            for a in addrs {
                match TcpStream::connect(a).await {
                    Ok(s) => return Ok((s, a)),
                    Err(e) => last = ConnectError::Tcp(e),
                }
            }
            Err(last)
        };
        let (tcp, addr) = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| ConnectError::TcpTimeout(timeout))??;
        self.establish(tcp, addr, Direction::Outbound).await
    }

    /// Queues an encoded packet to a directly connected peer without waiting.
    pub fn try_send_to(&self, peer: &NodeId, frame: Bytes) -> Result<(), session::QueueError> {
        match self.session(peer) {
            Some(s) => s.try_send(frame),
            None => Err(session::QueueError::Closed),
        }
    }
}
