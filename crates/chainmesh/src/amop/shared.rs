//! What every part of AMOP works on: the sessions, the waiting deliveries, the counters,
//! and the ways out (to an SDK session, to another node, to the status).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::client::SeqGen;
use super::pending::Waiters;
use super::private::{self, PrivateTopics};
use super::rpc::Rpc;
use super::sessions::{SdkSession, Sessions};
use super::view::{AmopStats, AmopView, Counters, RemoteTopicsView};
use crate::config::ChannelConfig;
use crate::identity::NodeId;
use crate::node::{ProtocolContext, SendError};
use crate::status::StatusService;
use crate::wire::{AmopForward, ChannelPack, ChannelSeq, ChannelType, Options, Packet, PacketType};

/// The state of one node's AMOP.
pub(crate) struct Shared {
    /// This node.
    pub(crate) id: NodeId,
    pub(crate) ctx: ProtocolContext,
    pub(crate) status: Arc<StatusService>,
    pub(crate) cfg: ChannelConfig,
    pub(crate) sessions: Sessions,
    /// Pushes to local subscribers waiting for their 0x31, by (session, seq).
    pub(crate) acks: Waiters<(u64, ChannelSeq), u64>,
    /// Unicasts forwarded to another node waiting for its answer, by request ID.
    pub(crate) forwards: Waiters<u64, NodeId>,
    next_request: AtomicU64,
    /// Unicasts being pushed to local subscribers, bounded by `max_in_flight_total`.
    deliveries: AtomicUsize,
    pub(crate) stats: Counters,
    pub(crate) rpc: Rpc,
    /// Other nodes' private topics and their verification.
    pub(crate) private: Mutex<PrivateTopics>,
    /// Wakes the verify driver when local topics or sessions change.
    pub(crate) private_wake: Notify,
    /// Seqs of the 0x37 requests this node sends.
    pub(crate) seqs: SeqGen,
    /// Cancelled to stop the channel port; the node's shutdown cancels it.
    pub(crate) stop: CancellationToken,
    /// Cancelled once the channel port and all its sessions are closed.
    pub(crate) finished: CancellationToken,
}

/// A place among the unicasts being pushed to local subscribers.
pub(crate) struct DeliverySlot(Arc<Shared>);

impl Drop for DeliverySlot {
    fn drop(&mut self) {
        self.0.deliveries.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Shared {
    pub(crate) fn new(
        ctx: ProtocolContext,
        status: Arc<StatusService>,
        cfg: ChannelConfig,
        rpc: Rpc,
    ) -> Shared {
        let private = PrivateTopics::new(cfg.ack_timeout, cfg.forward_timeout);
        Shared {
            id: ctx.node_id(),
            ctx,
            status,
            cfg,
            sessions: Sessions::default(),
            acks: Waiters::default(),
            forwards: Waiters::default(),
            next_request: AtomicU64::new(1),
            deliveries: AtomicUsize::new(0),
            stats: Counters::default(),
            rpc,
            private: Mutex::new(private),
            private_wake: Notify::new(),
            seqs: SeqGen::new(),
            stop: CancellationToken::new(),
            finished: CancellationToken::new(),
        }
    }

    // ----- to SDK sessions --------------------------------------------------------------

    /// Queues `frame` to `to` without waiting: a full (or closed) queue drops it, counted.
    /// Returns whether it was queued.
    pub(crate) fn send_frame(&self, to: &SdkSession, frame: Bytes) -> bool {
        match to.handle.offer(frame) {
            Ok(()) => {
                Counters::add(&self.stats.frames_out);
                true
            }
            Err((e, _)) => {
                to.handle.count_drop();
                Counters::add(&self.stats.frames_dropped);
                debug!(conn = to.handle.id, error = %e, "SDK session did not take a frame");
                false
            }
        }
    }

    /// Answers `pack` on `to` with a frame of `kind`, `result` and `data`, same seq.
    pub(crate) fn answer(
        &self,
        to: &SdkSession,
        pack: &ChannelPack,
        kind: ChannelType,
        result: i32,
        data: Bytes,
    ) {
        if let Some(frame) = self.encode(&pack.answer(kind, result, data)) {
            self.send_frame(to, frame);
        }
    }

    /// `pack` on the wire. Answers the node builds are never larger than the request they
    /// answer, so only a bug fails here; it is logged and the answer dropped.
    pub(crate) fn encode(&self, pack: &ChannelPack) -> Option<Bytes> {
        match pack.to_bytes(self.cfg.max_frame) {
            Ok(b) => Some(b),
            Err(e) => {
                warn!(error = %e, "cannot encode a channel frame");
                None
            }
        }
    }

    // ----- to other nodes ---------------------------------------------------------------

    fn packet(&self, dst: NodeId, forward: &AmopForward) -> Packet {
        Packet {
            version: 0,
            packet_type: PacketType::AMOP,
            seq: 0,
            ext: crate::wire::Ext(0),
            options: Some(Options {
                group: bytestring::ByteString::new(),
                src: self.id,
                dsts: vec![dst],
                module: 0,
                tags: Bytes::new(),
            }),
            payload: forward.encode(),
        }
    }

    /// Sends a type-7 packet to `dst` along the routes, waiting for queue room.
    pub(crate) async fn send_to(
        &self,
        dst: NodeId,
        forward: &AmopForward,
    ) -> Result<(), SendError> {
        let r = self.ctx.send_packet(dst, self.packet(dst, forward)).await;
        if r.is_ok() {
            Counters::add(&self.stats.forwarded_out);
        }
        r
    }

    /// Like [`send_to`](Self::send_to) without waiting.
    pub(crate) fn try_send_to(&self, dst: NodeId, forward: &AmopForward) -> Result<(), SendError> {
        let r = self.ctx.try_send_packet(dst, self.packet(dst, forward));
        if r.is_ok() {
            Counters::add(&self.stats.forwarded_out);
        }
        r
    }

    /// A fresh ID for a forwarded unicast.
    pub(crate) fn next_request(&self) -> u64 {
        self.next_request.fetch_add(1, Ordering::Relaxed)
    }

    // ----- who holds a topic ------------------------------------------------------------

    /// Other reachable nodes whose status lists AMOP `topic`; for a private topic, only
    /// those a local publisher verified.
    pub(crate) fn remote_holders(&self, topic: &str) -> Vec<NodeId> {
        let mut holders = self.status.amop_subscribers(topic);
        if !holders.is_empty() {
            let reachable = self.ctx.reachable_nodes();
            holders.retain(|n| reachable.binary_search_by(|(r, _)| r.cmp(n)).is_ok());
        }
        if !holders.is_empty() && private::is_private(topic) {
            let private = self.private.lock();
            holders.retain(|n| private.verified(n, topic));
        }
        holders
    }

    /// Every node a unicast on `topic` may go to: this one when a local session subscribes,
    /// and the reachable nodes whose status lists it.
    pub(crate) fn holders(&self, topic: &str) -> Vec<NodeId> {
        let mut holders = self.remote_holders(topic);
        if self.sessions.holds(topic) {
            holders.push(self.id);
        }
        holders
    }

    /// Publishes the topics local sessions hold in this node's status.
    pub(crate) fn publish_topics(&self, topics: Vec<String>) {
        // A new push-channel subscriber may have verify requests to take.
        self.private_wake.notify_one();
        if let Err(e) = self.status.set_amop_topics(topics) {
            warn!(error = %e, "the status cannot carry this node's AMOP topics");
        }
    }

    // ----- bounds and bookkeeping -------------------------------------------------------

    /// A place among the unicasts pushed to local subscribers, if fewer than
    /// `max_in_flight_total` are.
    pub(crate) fn start_delivery(self: &Arc<Self>) -> Option<DeliverySlot> {
        let max = self.cfg.max_in_flight_total;
        self.deliveries
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| DeliverySlot(self.clone()))
    }

    /// Forgets session `id`: its topics leave the table and the status, and the pushes
    /// waiting on it fail over at once.
    pub(crate) fn session_ended(&self, id: u64) {
        self.sessions
            .remove(id, |topics| self.publish_topics(topics));
        self.acks.fail_owner(&id);
        self.private.lock().session_ended(id);
        self.private_wake.notify_one();
    }

    pub(crate) fn view(&self) -> AmopView {
        let mut remote: Vec<RemoteTopicsView> = self
            .status
            .all()
            .into_iter()
            .filter(|p| !p.status.amop_topics.is_empty())
            .map(|p| RemoteTopicsView {
                node: p.node.to_string(),
                topics: p.status.amop_topics.clone(),
            })
            .collect();
        remote.sort_by(|a, b| a.node.cmp(&b.node));
        AmopView {
            sessions: self.sessions.views(),
            local_topics: self.sessions.topics(),
            remote,
            private: self.private.lock().views(),
        }
    }

    pub(crate) fn stats(&self) -> AmopStats {
        self.stats.snapshot(self.sessions.len() as u64)
    }
}
