//! The node: starts every layer from a config and offers the application a cloneable
//! [`NodeHandle`] to send, request, and receive messages by module.

mod dispatch;
mod error;
mod message;
mod runtime;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::Config;
use crate::identity::{Identity, NodeId};
use crate::peers::admission::Admission;
use crate::peers::{PeerEvent, PeerSettings, Peers};
use crate::tls::TlsContext;
use crate::wire::{Ext, Options, Packet, PacketType, DEFAULT_TTL};

pub use error::{NodeError, RequestError, SendError};
pub use message::{Message, Responder};
pub use runtime::PeerChangeError;

/// Packets a session's write queue holds before senders wait or fail.
const SESSION_QUEUE_LEN: usize = 4096;
/// How long shutdown waits for sessions to flush their queues.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// A running node. Dropping it does not stop it; call [`Node::shutdown`].
pub struct Node {
    handle: NodeHandle,
    admin_addr: Option<SocketAddr>,
    stop: CancellationToken,
}

/// A cloneable handle to a running node, usable from any task.
#[derive(Clone)]
pub struct NodeHandle {
    inner: Arc<Inner>,
}

struct Inner {
    id: NodeId,
    listen: SocketAddr,
    groups: Vec<String>,
    max_packet: u32,
    config_path: Option<PathBuf>,
    peers: Peers,
    seq: AtomicU32,
    pending: Mutex<HashMap<u32, PendingRequest>>,
    modules: RwLock<HashMap<u16, mpsc::Sender<Message>>>,
}

struct PendingRequest {
    dst: NodeId,
    reply: oneshot::Sender<Result<Bytes, RequestError>>,
}

impl Node {
    /// Starts a node: loads its identity, listens, dials its peers and serves the admin API.
    /// `config_path` is where runtime changes are written back; `None` keeps them in memory.
    pub async fn start(config: Config, config_path: Option<PathBuf>) -> Result<Node, NodeError> {
        let identity = Identity::load(
            &config.identity.ca_cert,
            &config.identity.node_cert,
            &config.identity.node_key,
        )?;
        let admission = Arc::new(RwLock::new(Admission::new(
            config.p2p.blacklist.iter().copied(),
            config.p2p.whitelist.iter().copied(),
        )));
        let tls = TlsContext::new(&identity, admission.clone())?;
        let listener = TcpListener::bind(&config.p2p.listen)
            .await
            .map_err(|source| NodeError::Bind {
                what: "p2p",
                addr: config.p2p.listen.clone(),
                source,
            })?;
        let listen = listener.local_addr().map_err(|source| NodeError::Bind {
            what: "p2p",
            addr: config.p2p.listen.clone(),
            source,
        })?;
        let settings = PeerSettings {
            timers: config.timers.clone(),
            max_packet: config.p2p.max_packet_size,
            queue_len: SESSION_QUEUE_LEN,
        };
        let id = identity.node_id;
        let inner = Arc::new_cyclic(|weak| Inner {
            id,
            listen,
            groups: config.p2p.groups.clone(),
            max_packet: config.p2p.max_packet_size,
            config_path,
            peers: Peers::new(
                id,
                tls,
                admission,
                settings,
                Arc::new(dispatch::Dispatch::new(weak.clone())),
            ),
            seq: AtomicU32::new(1),
            pending: Mutex::new(HashMap::new()),
            modules: RwLock::new(HashMap::new()),
        });
        let handle = NodeHandle { inner };
        let stop = CancellationToken::new();
        handle.inner.peers.listen(listener);
        for p in &config.p2p.peers {
            handle.inner.peers.add_target(p);
        }
        handle.spawn_disconnect_watch(stop.clone());
        let admin_addr = if config.admin.listen.is_empty() {
            None
        } else {
            let l = TcpListener::bind(&config.admin.listen)
                .await
                .map_err(|source| NodeError::Bind {
                    what: "admin",
                    addr: config.admin.listen.clone(),
                    source,
                })?;
            let addr = l.local_addr().ok();
            crate::admin::spawn(l, handle.clone(), stop.clone());
            addr
        };
        info!(node = %id.short(), p2p = %listen, admin = ?admin_addr, "node started");
        Ok(Node {
            handle,
            admin_addr,
            stop,
        })
    }

    /// A handle to use the node from anywhere.
    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// The address the admin API listens on, if it is on.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Tells every peer this node is leaving, closes all sessions and stops every task.
    pub async fn shutdown(self) {
        self.stop.cancel();
        self.handle.inner.peers.shutdown(SHUTDOWN_GRACE).await;
        info!(node = %self.handle.inner.id.short(), "node stopped");
    }
}

impl NodeHandle {
    /// This node's ID.
    pub fn node_id(&self) -> NodeId {
        self.inner.id
    }

    /// The address this node accepts P2P connections on.
    pub fn listen_addr(&self) -> SocketAddr {
        self.inner.listen
    }

    /// The groups this node belongs to.
    pub fn groups(&self) -> &[String] {
        &self.inner.groups
    }

    /// The config file runtime changes are written to, if any.
    pub fn config_path(&self) -> Option<&PathBuf> {
        self.inner.config_path.as_ref()
    }

    /// The peer set: sessions, configured peers, events.
    pub fn peers(&self) -> &Peers {
        &self.inner.peers
    }

    /// Peer events from now on.
    pub fn events(&self) -> broadcast::Receiver<PeerEvent> {
        self.inner.peers.subscribe()
    }

    /// Receives every message addressed to `module`. Replaces an earlier registration of the
    /// same module. `capacity` bounds the messages waiting in the returned queue; when it is
    /// full, the sessions delivering to it stop reading, which slows the senders down.
    pub fn register(&self, module: u16, capacity: usize) -> mpsc::Receiver<Message> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.inner.modules.write().insert(module, tx);
        rx
    }

    fn next_seq(&self) -> u32 {
        loop {
            let s = self.inner.seq.fetch_add(1, Ordering::Relaxed);
            // Seq 0 is what heartbeats carry; never hand it to a message.
            if s != 0 {
                return s;
            }
        }
    }

    fn unicast_packet(
        &self,
        dst: NodeId,
        module: u16,
        seq: u32,
        ext: Ext,
        payload: Bytes,
    ) -> Packet {
        Packet {
            // Set per hop from the session's agreed version when the packet is queued.
            version: 0,
            packet_type: PacketType::UNICAST,
            seq,
            ext: ext.with_ttl(DEFAULT_TTL),
            options: Some(Options {
                group: self.inner.groups.first().cloned().unwrap_or_default(),
                src: self.inner.id,
                dsts: vec![dst],
                module,
            }),
            payload,
        }
    }

    /// Encodes `packet` for the session to `dst` and queues it, waiting for room when `wait`
    /// is set.
    async fn queue(&self, dst: NodeId, mut packet: Packet, wait: bool) -> Result<(), SendError> {
        let session = self
            .inner
            .peers
            .session(&dst)
            .ok_or(SendError::Unreachable(dst))?;
        packet.version = session.version;
        let size = packet.encoded_len();
        if size > self.inner.max_packet as usize {
            return Err(SendError::TooLarge {
                size,
                max: self.inner.max_packet as usize,
            });
        }
        let frame = packet.to_bytes();
        let r = if wait {
            session.send(frame).await
        } else {
            session.try_send(frame)
        };
        r.map_err(|e| match e {
            crate::session::QueueError::Full => SendError::QueueFull(dst),
            crate::session::QueueError::Closed => SendError::Unreachable(dst),
        })
    }

    /// Sends `payload` to module `module` of node `dst`. Returns once the packet is queued
    /// for the next hop, waiting while that hop's queue is full.
    pub async fn send(&self, dst: NodeId, module: u16, payload: Bytes) -> Result<(), SendError> {
        let packet = self.unicast_packet(dst, module, self.next_seq(), Ext(0), payload);
        self.queue(dst, packet, true).await
    }

    /// Like [`send`](Self::send), but fails with [`SendError::QueueFull`] instead of waiting.
    pub async fn try_send(
        &self,
        dst: NodeId,
        module: u16,
        payload: Bytes,
    ) -> Result<(), SendError> {
        let packet = self.unicast_packet(dst, module, self.next_seq(), Ext(0), payload);
        self.queue(dst, packet, false).await
    }

    /// Sends a request to module `module` of node `dst` and waits for its response. Every
    /// outcome arrives: the response, the remote handler's error, a timeout, or the peer
    /// becoming unreachable.
    pub async fn request(
        &self,
        dst: NodeId,
        module: u16,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, RequestError> {
        let seq = self.next_seq();
        let packet = self.unicast_packet(dst, module, seq, Ext::REQUEST, payload);
        let (tx, rx) = oneshot::channel();
        self.inner
            .pending
            .lock()
            .insert(seq, PendingRequest { dst, reply: tx });
        // Removes the entry however this future ends, including when the caller drops it.
        let _guard = PendingGuard { node: self, seq };
        self.queue(dst, packet, true).await?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(RequestError::PeerDisconnected(dst)),
            Err(_) => Err(RequestError::Timeout(timeout)),
        }
    }

    /// Sends the response to request `seq` from `to`. Never waits: it runs inside handlers
    /// and drops; if the queue is full the requester times out, which it is told about.
    fn respond(
        &self,
        to: NodeId,
        module: u16,
        seq: u32,
        result: Result<Bytes, String>,
    ) -> Result<(), SendError> {
        let (ext, payload) = match result {
            Ok(p) => (Ext::RESPONSE, p),
            Err(e) => (Ext::RESPONSE | Ext::ERROR, Bytes::from(e.into_bytes())),
        };
        let packet = self.unicast_packet(to, module, seq, ext, payload);
        futures_util::FutureExt::now_or_never(self.queue(to, packet, false))
            .unwrap_or(Err(SendError::QueueFull(to)))
    }

    /// Fails every request waiting on `peer`.
    fn fail_pending_to(&self, peer: NodeId) {
        let mut pending = self.inner.pending.lock();
        let seqs: Vec<u32> = pending
            .iter()
            .filter(|(_, p)| p.dst == peer)
            .map(|(s, _)| *s)
            .collect();
        for s in seqs {
            if let Some(p) = pending.remove(&s) {
                let _ = p.reply.send(Err(RequestError::PeerDisconnected(peer)));
            }
        }
    }

    fn spawn_disconnect_watch(&self, stop: CancellationToken) {
        let mut events = self.events();
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    _ = stop.cancelled() => return,
                    ev = events.recv() => ev,
                };
                let Some(inner) = weak.upgrade() else { return };
                let node = NodeHandle { inner };
                match ev {
                    Ok(PeerEvent::Disconnected { peer, .. }) => node.fail_pending_to(peer),
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Missed events: fail whatever waits on a peer that is gone.
                        let gone: Vec<NodeId> = node
                            .inner
                            .pending
                            .lock()
                            .values()
                            .map(|p| p.dst)
                            .filter(|d| node.inner.peers.session(d).is_none())
                            .collect();
                        for g in gone {
                            node.fail_pending_to(g);
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }
}

struct PendingGuard<'a> {
    node: &'a NodeHandle,
    seq: u32,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.node.inner.pending.lock().remove(&self.seq);
    }
}
