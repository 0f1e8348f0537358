//! AMOP (Advanced Messages Onchain Protocol): SDK clients on the channel port talk to each
//! other through the node network, with FISCO BCOS 2.x's channel protocol, so FISCO's own
//! SDKs work unchanged.
//!
//! `docs/amop.md` explains the flows with the real bytes; `wire::ChannelPack` is the frame
//! codec. This module sits above [`node`](crate::node): it serves the channel port, keeps the
//! SDK sessions and their topics, publishes which topics this node holds in its status, and
//! forwards AMOP frames to the nodes that hold a topic as packets of type 7 through the
//! node's [`Protocol`](crate::node::Protocol) plug-in point.
//!
//! # Inside
//!
//! `server` (the channel port: caps, TLS, one session task per client), `dispatch` (where
//! each SDK frame type is handled), `control` (0x13 and 0x14 answers), `unicast` (the
//! publisher's side: which node, failover between nodes), `deliver` (the subscriber's side:
//! which local session, failover between sessions), `multicast`, `forward` (packet type 7
//! between nodes), `pending` (deliveries waiting for an answer), `topics` and `sessions`
//! (who subscribes to what), `failover` (the random choice among untried candidates), `caps`,
//! `private` (which other nodes' private topics are verified) and `verify` (its 0x37/0x38
//! traffic), `rpc` (0x12), `view` (what the admin API shows) and `shared` (the state they all use).

mod caps;
mod client;
pub mod control;
mod deliver;
mod dispatch;
mod failover;
mod forward;
mod framing;
mod multicast;
mod pending;
mod private;
mod rpc;
mod server;
mod sessions;
mod shared;
mod subscribe;
mod topics;
mod unicast;
mod verify;
mod view;

use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::RwLock;
use tokio::net::TcpListener;

use crate::admission::Admission;
use crate::config::Config;
use crate::identity::{Identity, IdentityError};
use crate::node::{NodeHandle, ProtocolError};
use crate::tls::{TlsContext, TlsError};

pub use client::{
    AmopKind, AmopMessage, Client, ClientError, ClientOptions, PublishOutcome, Subscription,
};
pub use framing::ChannelFraming;
pub use rpc::{parse_call, RpcCall, RpcError, RpcFuture, RpcHandler};
pub use subscribe::{parse_subscription, SubscribeError};
pub use view::{
    AmopStats, AmopView, PrivateTopicView, RemoteTopicsView, SdkSessionView, VerifyStatus,
};

use shared::Shared;

/// Why AMOP did not start.
#[derive(Debug, thiserror::Error)]
pub enum AmopError {
    /// The node's certificate files did not load.
    #[error("loading the node identity for the channel port: {0}")]
    Identity(#[from] IdentityError),
    /// The channel port's TLS context could not be built.
    #[error("channel port TLS: {0}")]
    Tls(#[from] TlsError),
    /// `channel.listen` could not be bound.
    #[error("channel.listen: cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// Packet type 7 already has a protocol on this node (AMOP started twice).
    #[error("AMOP forwarding: {0}")]
    Protocol(#[from] ProtocolError),
}

/// Starts AMOP on a node.
#[derive(Debug)]
pub struct Amop;

impl Amop {
    /// Starts AMOP on `node` with `config` (the node's own): registers packet type 7 and,
    /// when `channel.listen` is set, opens the channel port with the node's certificate.
    /// It stops when the node shuts down, or at [`AmopHandle::shutdown`].
    pub async fn start(node: &NodeHandle, config: &Config) -> Result<AmopHandle, AmopError> {
        let cfg = config.channel.clone();
        let listen = cfg.listen.clone();
        let ctx = node.protocol_context();
        let shared = Arc::new(Shared::new(
            ctx.clone(),
            node.status().clone(),
            cfg,
            rpc::Rpc::new(node.clone()),
        ));
        let mut local_addr = None;
        let port = if listen.is_empty() {
            None
        } else {
            let identity = Identity::load(
                &config.identity.ca_cert,
                &config.identity.node_cert,
                &config.identity.node_key,
            )?;
            // SDK keys are not node IDs: the P2P blacklist and whitelist do not apply.
            let tls = TlsContext::new(&identity, Arc::new(RwLock::new(Admission::default())))?;
            let listener = TcpListener::bind(&listen)
                .await
                .map_err(|source| AmopError::Bind {
                    addr: listen.clone(),
                    source,
                })?;
            local_addr = listener.local_addr().ok();
            Some((listener, tls))
        };
        node.register_protocol(Arc::new(forward::Forwarding::new(&shared)))?;
        tokio::spawn(verify::run(shared.clone()));
        match port {
            Some((listener, tls)) => {
                let budget = config.limits.read_budget_bytes;
                tokio::spawn(server::serve(shared.clone(), listener, tls, budget));
            }
            None => shared.finished.cancel(),
        }
        let stop = shared.stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = ctx.stopped() => stop.cancel(),
                _ = stop.cancelled() => {}
            }
        });
        Ok(AmopHandle { shared, local_addr })
    }
}

/// A cloneable handle to a node's running AMOP.
#[derive(Clone)]
pub struct AmopHandle {
    shared: Arc<Shared>,
    local_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for AmopHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmopHandle")
            .field("node", &self.shared.id)
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

impl AmopHandle {
    /// The address the channel port listens on; `None` when `channel.listen` is empty.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// The SDK sessions, the topics this node holds and which other nodes hold which.
    pub fn view(&self) -> AmopView {
        self.shared.view()
    }

    /// Counters since start.
    pub fn stats(&self) -> AmopStats {
        self.shared.stats()
    }

    /// Hands the JSON-RPC methods the node does not answer itself to `handler`.
    pub fn set_rpc_handler(&self, handler: Arc<dyn RpcHandler>) {
        self.shared.rpc.set_handler(handler);
    }

    /// Closes the channel port and every SDK session, and waits until they are closed.
    /// Forwarding between nodes goes on until the node stops.
    pub async fn shutdown(&self) {
        self.shared.stop.cancel();
        self.shared.finished.cancelled().await;
    }
}
