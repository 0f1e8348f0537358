//! Starting a node from its config, in the order the layers need (routing subscribes to peer
//! events before any link can come up), and stopping it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::builtin::{RouteExchange, StatusMembership, StatusSync, StatusTransportOver};
use super::inbound::Dispatch;
use super::inflate::Inflater;
use super::pending::PendingTable;
use super::protocol::{ProtocolContext, Protocols};
use super::{Inner, Node, NodeError, NodeHandle, RequestError};
use crate::admission::Admission;
use crate::auth::Keyring;
use crate::config::Config;
use crate::identity::Identity;
use crate::peers::{PeerSettings, Peers};
use crate::routing::{Dedup, Membership, Router, RoutingLimits};
use crate::status::{
    random_epoch, LocalStatus, NodeStatus, StatusConfig, StatusError, StatusService,
};
use crate::tls::TlsContext;

/// How long shutdown waits for sessions to flush their queues.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// A fresh node's first Seq: random, so a restarted node's messages are not mistaken for its
/// previous incarnation's by nodes that still remember those.
fn initial_seq() -> u32 {
    loop {
        let s = rand::random::<u32>();
        if s != 0 {
            return s;
        }
    }
}

/// The status a node starts with: its configured groups and topics, checked against what
/// the status engine of `config` accepts.
fn initial_status(
    groups: &[String],
    topics: &[String],
    config: &StatusConfig,
) -> Result<LocalStatus, StatusError> {
    let mut status = NodeStatus::with_groups(groups.iter().cloned());
    status.topics = topics.to_vec();
    LocalStatus::new(random_epoch(), status, config.max_status_len)
}

/// The status engine's settings: its interval and its `[limits]`.
fn status_config(config: &Config) -> StatusConfig {
    let l = &config.limits;
    StatusConfig {
        max_status_len: l.max_status_bytes,
        max_nodes: l.max_tracked_nodes,
        max_held_bytes: l.max_status_total_bytes,
        requests_per_sec: l.status_requests_per_sec,
        ..StatusConfig::with_interval(config.timers.status_interval)
    }
}

fn peer_settings(config: &Config) -> PeerSettings {
    PeerSettings {
        timers: config.timers.clone(),
        max_packet: config.p2p.max_packet_size,
        queue_bytes: config.limits.session_queue_bytes,
        inbound_handshakes: config.limits.inbound_handshakes,
        handshakes_per_ip: config.limits.handshakes_per_ip,
        connections_per_ip: config.limits.connections_per_ip,
        handshakes_per_identity: config.limits.handshakes_per_identity,
        read_budget_bytes: config.limits.read_budget_bytes,
        remembered_peers: config.limits.max_routing_nodes,
        socket: config.socket.clone(),
    }
}

impl Node {
    /// Starts a node: loads its identity, listens and dials its peers. The admin API is not
    /// part of the library: `chainmesh-admin` serves it from a [`NodeHandle`].
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
        let bind_error = |source| NodeError::Bind {
            what: "p2p",
            addr: config.p2p.listen.clone(),
            source,
        };
        let listener = TcpListener::bind(&config.p2p.listen)
            .await
            .map_err(bind_error)?;
        let listen = listener.local_addr().map_err(bind_error)?;
        let id = identity.node_id;
        let status_config = status_config(&config);
        let local_status = initial_status(&config.p2p.groups, &config.node.topics, &status_config)?;
        let router = Router::new(
            &identity,
            RoutingLimits {
                max_nodes: config.limits.max_routing_nodes,
                max_neighbours: config.limits.max_neighbours_per_list,
            },
        )?;
        let keys = Keyring::new(&identity, config.limits.auth_keys)?;
        let stop = CancellationToken::new();
        let (pending, woken) = PendingTable::new(config.limits.pending_requests_per_peer);
        // The status engine and the sessions reach the node through weak references to it,
        // so it is built around them.
        let inner = Arc::new_cyclic(|weak| {
            let ctx = ProtocolContext::new(id, weak.clone());
            let status = StatusService::with_local(
                id,
                status_config,
                local_status,
                Arc::new(StatusTransportOver(ctx.clone())),
            );
            let membership: Arc<dyn Membership> = Arc::new(StatusMembership(status.clone()));
            Inner {
                id,
                listen,
                default_group: config.p2p.groups.first().cloned().unwrap_or_default(),
                max_packet: config.p2p.max_packet_size,
                compress_threshold: config.p2p.compress_threshold,
                lanes: super::options::Lanes::new(&config.p2p.priority_modules),
                config_path,
                peers: Peers::new(
                    id,
                    tls,
                    admission,
                    peer_settings(&config),
                    Arc::new(Dispatch::new(weak.clone())),
                ),
                router,
                seq: AtomicU32::new(initial_seq()),
                pending,
                modules: RwLock::new(HashMap::default()),
                taps: super::tap::Taps::new(config.node.tap_buffer),
                dedup: Dedup::new(config.limits.dedup_sources),
                keys,
                auth: Default::default(),
                relay_wait: config.limits.relay_wait,
                membership: RwLock::new(membership),
                status,
                protocols: Protocols::default(),
                inflate: Inflater::new(&config.limits, config.p2p.max_packet_size),
                ctx,
                stop: stop.clone(),
                undelivered: Default::default(),
                stats: Default::default(),
                flow: crate::flow::FlowControl::new(&config.flow_control),
            }
        });
        let handle = NodeHandle { inner };
        let inner = &handle.inner;
        inner
            .protocols
            .register(Arc::new(RouteExchange(inner.router.clone())))?;
        inner
            .protocols
            .register(Arc::new(StatusSync(inner.status.clone())))?;
        // Routing subscribes to peer events before any link can come up.
        inner.router.spawn(inner.peers.clone(), stop.clone());
        handle.spawn_reachability_watch(stop.clone());
        handle.spawn_request_sweeper(woken, stop.clone());
        inner.status.spawn(stop.clone());
        inner.peers.listen(listener);
        for p in &config.p2p.peers {
            inner.peers.add_target(p);
        }
        info!(node = %id.short(), p2p = %listen, "node started");
        Ok(Node { handle })
    }

    /// A handle to use the node from anywhere.
    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// Tells every peer this node is leaving, closes all sessions and stops every task.
    /// Requests still waiting fail with [`RequestError::Stopped`].
    pub async fn shutdown(self) {
        let inner = &self.handle.inner;
        inner.router.farewell(&inner.peers);
        inner.stop.cancel();
        for p in inner.pending.take_all() {
            let _ = p.reply.send(Err(RequestError::Stopped));
        }
        inner.peers.shutdown(SHUTDOWN_GRACE).await;
        info!(node = %inner.id.short(), "node stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_initial_status_holds_the_configured_groups_and_topics_and_refuses_bad_names() {
        let config = StatusConfig::default();
        let groups = ["group1".to_owned(), "group0".to_owned()];
        let topics = ["blocks".to_owned()];
        let local = initial_status(&groups, &topics, &config).unwrap();
        assert_eq!(local.status().groups, ["group0", "group1"]);
        assert_eq!(local.status().topics, ["blocks"]);
        assert_eq!(local.version().seq, 1);
        assert_eq!(
            initial_status(&[String::new()], &[], &config).unwrap_err(),
            StatusError::EmptyName { field: "group" }
        );
    }

    #[test]
    fn a_first_seq_is_never_zero() {
        assert!((0..1000).all(|_| initial_seq() != 0));
    }
}
