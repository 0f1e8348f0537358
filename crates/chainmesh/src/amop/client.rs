//! A Rust client of a node's channel port, speaking FISCO BCOS 2.x's channel protocol as
//! FISCO's SDKs do: subscribe to AMOP topics, publish (unicast, answered by one subscriber's
//! ack), multicast, and JSON-RPC calls.
//!
//! One TLS session per [`Client`], run by the same session task as P2P links (over
//! [`ChannelFraming::client_side`]: one frame per write, an empty 0x13 heartbeat on a quiet
//! session). Answers are matched to requests by (seq, type), as the SDKs match them; the
//! node's pushes (0x30 unicast, 0x35 multicast) go to the subscriptions holding their topic.
//! Every request ends in an answer, a timeout or an error, never silence: waiters are woken
//! with an error when the session ends. Queues are bounded: the write queue in bytes,
//! requests in flight in number, each subscription's backlog in messages.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use parking_lot::{Mutex, RwLock};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing::{debug, warn};

pub use error::ClientError;

use super::ChannelFraming;
use crate::admission::Admission;
use crate::identity::{Identity, NodeId};
use crate::session::{
    self, CloseReason, Direction, Handler, Pending, QueueError, SessionConfig, SessionHandle,
    SessionInfo,
};
use crate::tls::TlsContext;
use crate::wire::{
    channel_result, encode_amop, split_amop, ChannelError, ChannelPack, ChannelSeq, ChannelType,
    MAX_AMOP_TOPIC_LEN, SEQ_LEN,
};

/// A node sends nothing on a quiet channel session (only SDKs send heartbeats), so silence
/// from it says nothing: the client never drops the session for it. A dead node shows as a
/// failed heartbeat write instead.
const NODE_SILENCE_TOLERATED: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// How long a closing session may flush what is queued.
const LINGER: Duration = Duration::from_secs(1);
/// The smallest frame limit used, whatever the options say: room for any answer's header
/// and a topic.
const MIN_FRAME_LIMIT: u32 = 1024;
/// Bytes read per wake before the session task yields.
const READ_BUDGET_BYTES: usize = 256 * 1024;

/// Timers and bounds of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Longest wait for the TCP connection and the TLS handshake together.
    pub connect_timeout: Duration,
    /// An empty 0x13 goes out when nothing was written for this long (FISCO's Java SDK: 2 s,
    /// python-sdk: 3 s; a node drops a session silent for 60 s).
    pub heartbeat_interval: Duration,
    /// How long [`Client::multicast`] and [`Client::rpc`] wait for their answer.
    pub request_timeout: Duration,
    /// Largest frame accepted from the node, header included.
    pub max_frame: u32,
    /// Bytes queued for writing before a send waits (or an ack or subscribe fails).
    pub queue_bytes: usize,
    /// Requests waiting for their answer at once; one more waits for a free slot (within
    /// its own timeout).
    pub max_in_flight: usize,
    /// Messages a subscription holds unread; a message beyond that is dropped with a
    /// warning (for a unicast, the node then offers it to another subscriber).
    pub subscription_queue: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
            max_frame: 16 * 1024 * 1024,
            queue_bytes: 4 * 1024 * 1024,
            max_in_flight: 256,
            subscription_queue: 1024,
        }
    }
}

/// How an AMOP message was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmopKind {
    /// 0x30: to one subscriber, which answers with an ack.
    Unicast,
    /// 0x35: to every subscriber; no answer.
    Multicast,
}

/// An AMOP message pushed to a subscription.
#[derive(Debug, Clone)]
pub struct AmopMessage {
    /// The topic it was sent to.
    pub topic: String,
    /// What the publisher sent.
    pub payload: Bytes,
    /// Unicast or multicast.
    pub kind: AmopKind,
    /// The publisher's seq, which the ack repeats.
    pub seq: ChannelSeq,
    session: SessionHandle<ChannelFraming>,
}

impl AmopMessage {
    /// Acknowledges a unicast with `payload` (result 0): the publisher receives this 0x31
    /// byte for byte. Does not wait: fails when the write queue is full.
    pub fn ack(&self, payload: &[u8]) -> Result<(), ClientError> {
        self.answer(channel_result::OK, payload)
    }

    /// Answers a unicast with `result` and `payload`.
    pub fn answer(&self, result: i32, payload: &[u8]) -> Result<(), ClientError> {
        if self.kind != AmopKind::Unicast {
            return Err(ClientError::NotUnicast);
        }
        let mut pack = ChannelPack::new(
            ChannelType::AMOP_RESPONSE,
            self.seq,
            encode_amop(&self.topic, payload)?,
        );
        pack.result = result;
        let frame = pack.to_bytes(u32::MAX)?;
        self.session.try_send(frame).map_err(|e| match e {
            QueueError::Full => ClientError::QueueFull {
                addr: self.session.addr,
            },
            QueueError::Closed => ClientError::Closed {
                addr: self.session.addr,
                reason: "closed".into(),
            },
        })
    }
}

/// What became of a unicast [`Client::publish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishOutcome {
    /// A subscriber answered; its 0x31 unchanged. `topic` and `payload` are its data split
    /// (an ack whose data is not AMOP data has an empty topic and the data as payload).
    Acked {
        /// The subscriber's result (0 for a plain ack).
        result: i32,
        /// The topic of the ack.
        topic: String,
        /// The ack's payload.
        payload: Bytes,
    },
    /// No node holds a subscriber of the topic (result 100).
    NoSubscriber,
    /// The network could not deliver it: 104 when every subscriber failed or timed out,
    /// 103 over a limit, 101/102 as FISCO uses them.
    Failed(i32),
    /// No answer within the publish's timeout.
    TimedOut,
}

impl PublishOutcome {
    /// The outcome an 0x31 answer stands for.
    fn from_answer(ack: ChannelPack) -> PublishOutcome {
        match ack.result {
            channel_result::NO_SUBSCRIBER => PublishOutcome::NoSubscriber,
            code @ channel_result::CLIENT_UNAVAILABLE..=channel_result::ALL_FAILED => {
                PublishOutcome::Failed(code)
            }
            result => {
                let (topic, payload) = match split_amop(&ack.data) {
                    Ok((topic, payload)) => (topic.to_string(), payload),
                    Err(_) => (String::new(), ack.data),
                };
                PublishOutcome::Acked {
                    result,
                    topic,
                    payload,
                }
            }
        }
    }
}

/// Seqs of 32 lowercase hex characters, as FISCO's SDKs make them: a random half per client
/// (so two clients' seqs differ) and a counter.
#[derive(Debug)]
pub(crate) struct SeqGen {
    prefix: u64,
    next: AtomicU64,
}

impl SeqGen {
    pub(crate) fn new() -> SeqGen {
        SeqGen {
            prefix: rand::random(),
            next: AtomicU64::new(1),
        }
    }

    pub(crate) fn next(&self) -> ChannelSeq {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut seq = [b'0'; SEQ_LEN];
        let bytes = self.prefix.to_be_bytes().into_iter().chain(n.to_be_bytes());
        for (pair, b) in seq.chunks_exact_mut(2).zip(bytes) {
            pair[0] = HEX[usize::from(b >> 4)];
            pair[1] = HEX[usize::from(b & 0x0f)];
        }
        seq
    }
}

/// Requests waiting for their answer, by (seq, answer type).
#[derive(Debug, Default)]
struct Waiters {
    map: HashMap<(ChannelSeq, u16), oneshot::Sender<ChannelPack>>,
    /// Set when the session ended: nothing more is registered.
    ended: Option<String>,
}

/// The live subscriptions, in the order they were made.
#[derive(Debug, Default)]
struct Subs {
    next_id: u64,
    entries: BTreeMap<u64, SubEntry>,
    ended: Option<String>,
    /// Messages dropped because their subscription was not being read.
    dropped: u64,
}

#[derive(Debug)]
struct SubEntry {
    topics: BTreeSet<String>,
    tx: mpsc::Sender<AmopMessage>,
}

impl Subs {
    /// Every topic of every subscription: a 0x32 replaces the session's whole topic set, so
    /// it must always carry them all.
    fn union(&self) -> BTreeSet<&str> {
        self.entries
            .values()
            .flat_map(|e| e.topics.iter().map(String::as_str))
            .collect()
    }

    /// The 0x32 frame announcing [`union`](Self::union).
    fn subscribe_frame(&self, seq: ChannelSeq) -> Result<Bytes, ClientError> {
        let topics: Vec<&str> = self.union().into_iter().collect();
        let json =
            serde_json::to_vec(&topics).map_err(|e| ClientError::BadAnswer(e.to_string()))?;
        Ok(ChannelPack::new(ChannelType::SUBSCRIBE, seq, json.into()).to_bytes(u32::MAX)?)
    }

    /// Hands a push to its subscriptions: a unicast to the oldest subscription holding the
    /// topic that has room (only one may ack it), a multicast to each of them.
    fn deliver(&mut self, msg: AmopMessage) {
        let mut holders = 0;
        let mut taken = 0;
        for e in self.entries.values() {
            if !e.topics.contains(&msg.topic) {
                continue;
            }
            holders += 1;
            if e.tx.try_send(msg.clone()).is_ok() {
                taken += 1;
                if msg.kind == AmopKind::Unicast {
                    return;
                }
            }
        }
        if holders == 0 {
            debug!(topic = %msg.topic, "AMOP push for a topic no subscription holds; dropped");
        } else if taken < holders {
            self.dropped = self.dropped.saturating_add(1);
            // Logged at 1, 2, 4, 8... so a subscription left unread cannot flood the log.
            if self.dropped.is_power_of_two() {
                warn!(topic = %msg.topic, kind = ?msg.kind, dropped = self.dropped,
                    "AMOP messages dropped: a subscription is not being read");
            }
        }
    }
}

/// What the session task and the client share.
#[derive(Debug, Default)]
struct Shared {
    waiters: Mutex<Waiters>,
    subs: Mutex<Subs>,
}

impl Shared {
    /// The session ended: wake every waiter with an error and end every subscription.
    fn end(&self, reason: &CloseReason) {
        let mut w = self.waiters.lock();
        w.ended = Some(reason.to_string());
        w.map.clear();
        drop(w);
        let mut s = self.subs.lock();
        s.ended = Some(reason.to_string());
        s.entries.clear();
    }
}

/// The session's handler: answers to their waiters, pushes to subscriptions.
struct Dispatch {
    shared: Arc<Shared>,
}

impl Handler<ChannelFraming> for Dispatch {
    fn on_frame(
        &self,
        from: &SessionHandle<ChannelFraming>,
        (pack, _): (ChannelPack, Bytes),
    ) -> Option<Pending> {
        let kind = match pack.kind {
            ChannelType::AMOP_REQUEST => AmopKind::Unicast,
            ChannelType::AMOP_MULTICAST => AmopKind::Multicast,
            other => {
                let waiter = self.shared.waiters.lock().map.remove(&(pack.seq, other.0));
                match waiter {
                    Some(tx) => {
                        // The requester may have timed out meanwhile; nothing to do then.
                        let _ = tx.send(pack);
                    }
                    None => debug!(kind = %other, "channel frame answering no request; dropped"),
                }
                return None;
            }
        };
        match split_amop(&pack.data) {
            Ok((topic, payload)) => self.shared.subs.lock().deliver(AmopMessage {
                topic: topic.to_string(),
                payload,
                kind,
                seq: pack.seq,
                session: from.clone(),
            }),
            Err(e) => warn!("AMOP push with bad data dropped: {e}"),
        }
        None
    }
}

/// The connection, shared by the client and its subscriptions.
#[derive(Debug)]
struct Conn {
    session: SessionHandle<ChannelFraming>,
    shared: Arc<Shared>,
    seqs: SeqGen,
    in_flight: Semaphore,
    opts: ClientOptions,
    rpc_ids: AtomicU64,
}

impl Conn {
    fn ended(&self, reason: Option<&String>) -> ClientError {
        ClientError::Closed {
            addr: self.session.addr,
            reason: reason.cloned().unwrap_or_else(|| "closed".into()),
        }
    }

    fn closed(&self) -> ClientError {
        let reason = self.shared.waiters.lock().ended.clone();
        self.ended(reason.as_ref())
    }

    /// Sends a frame of `kind` and waits for the answer of type `answer` with its seq;
    /// `None` when none came within `timeout`.
    async fn request(
        &self,
        kind: ChannelType,
        answer: ChannelType,
        data: Bytes,
        timeout: Duration,
    ) -> Result<Option<ChannelPack>, ClientError> {
        let exchange = async {
            let _slot = self.in_flight.acquire().await.map_err(|_| self.closed())?;
            let seq = self.seqs.next();
            let frame = ChannelPack::new(kind, seq, data).to_bytes(self.opts.max_frame)?;
            let key = (seq, answer.0);
            let (tx, rx) = oneshot::channel();
            {
                let mut w = self.shared.waiters.lock();
                if w.ended.is_some() {
                    return Err(self.ended(w.ended.as_ref()));
                }
                w.map.insert(key, tx);
            }
            // Unregisters on every way out, the timeout's cancellation included.
            let _registered = Registered {
                shared: &self.shared,
                key,
            };
            self.session.send(frame).await.map_err(|_| self.closed())?;
            rx.await.map_err(|_| self.closed())
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(answer) => answer.map(Some),
            Err(_) => Ok(None),
        }
    }

    fn unsubscribe(&self, id: u64) {
        let mut subs = self.shared.subs.lock();
        // A session that is ending keeps no topics anyway.
        if subs.entries.remove(&id).is_none() || subs.ended.is_some() || self.session.is_closed() {
            return;
        }
        let sent = subs
            .subscribe_frame(self.seqs.next())
            .map(|f| self.session.try_send(f));
        if !matches!(sent, Ok(Ok(()))) {
            warn!("cannot tell the node a subscription ended; its topics stay subscribed");
        }
    }
}

/// A waiter's registration, removed when the request ends however it ends.
struct Registered<'a> {
    shared: &'a Shared,
    key: (ChannelSeq, u16),
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.shared.waiters.lock().map.remove(&self.key);
    }
}

/// Process-unique numbers of client sessions, for logs.
static SESSION_IDS: AtomicU64 = AtomicU64::new(1);

/// A session with a node's channel port. Dropping it closes the session, which ends its
/// subscriptions.
#[derive(Debug)]
pub struct Client {
    conn: Arc<Conn>,
    node: NodeId,
}

impl Client {
    /// Opens a TLS session to the channel port at `addr` (`host:port`) with `identity`
    /// (an SDK certificate from [`load_sdk_identity`](crate::identity::load_sdk_identity), or
    /// any certificate of the chain) and starts its task on the current tokio runtime.
    pub async fn connect(
        addr: &str,
        identity: &Identity,
        opts: ClientOptions,
    ) -> Result<Client, ClientError> {
        let opts = ClientOptions {
            max_frame: opts.max_frame.max(MIN_FRAME_LIMIT),
            ..opts
        };
        let tls_err = |source| ClientError::Tls {
            addr: addr.to_owned(),
            source,
        };
        // SDK certificates are not node IDs of the network: no peer list applies to them.
        let tls = TlsContext::new(identity, Arc::new(RwLock::new(Admission::default())))
            .map_err(tls_err)?;
        let dial = async {
            let tcp = TcpStream::connect(addr)
                .await
                .map_err(|source| ClientError::Connect {
                    addr: addr.to_owned(),
                    source,
                })?;
            let (peer_addr, local_addr) = match (tcp.peer_addr(), tcp.local_addr()) {
                (Ok(p), Ok(l)) => (p, l),
                (Err(source), _) | (_, Err(source)) => {
                    return Err(ClientError::Connect {
                        addr: addr.to_owned(),
                        source,
                    })
                }
            };
            let _ = tcp.set_nodelay(true);
            let (stream, node) = tls.connect(tcp).await.map_err(tls_err)?;
            Ok((stream, node, peer_addr, local_addr))
        };
        let (stream, node, peer_addr, local_addr) =
            tokio::time::timeout(opts.connect_timeout, dial)
                .await
                .map_err(|_| ClientError::ConnectTimeout {
                    addr: addr.to_owned(),
                    after: opts.connect_timeout,
                })??;

        let info = SessionInfo {
            peer: node,
            addr: peer_addr,
            local_addr,
            direction: Direction::Outbound,
            version: 0,
            peer_listen_port: 0,
            peer_max_packet: opts.max_frame,
        };
        let id = SESSION_IDS.fetch_add(1, Ordering::Relaxed);
        let handle = session::new_framed_session::<ChannelFraming>(id, info, opts.queue_bytes);
        let cfg = SessionConfig {
            heartbeat_interval: opts.heartbeat_interval.max(Duration::from_millis(100)),
            idle_timeout: NODE_SILENCE_TOLERATED,
            max_packet: opts.max_frame,
            version: 0,
            linger: LINGER,
            read_budget_bytes: READ_BUDGET_BYTES,
        };
        let shared = Arc::new(Shared::default());
        let task = session::run_framed(
            stream,
            handle.clone(),
            ChannelFraming::client_side(opts.max_frame),
            Arc::new(Dispatch {
                shared: shared.clone(),
            }),
            cfg,
            BytesMut::new(),
        );
        let ended = shared.clone();
        tokio::spawn(async move {
            let reason = task.await;
            debug!(%peer_addr, %reason, "channel session ended");
            ended.end(&reason);
        });
        Ok(Client {
            conn: Arc::new(Conn {
                session: handle,
                shared,
                seqs: SeqGen::new(),
                in_flight: Semaphore::new(opts.max_in_flight.max(1)),
                rpc_ids: AtomicU64::new(1),
                opts,
            }),
            node,
        })
    }

    /// The node ID of the node's certificate.
    pub fn node_id(&self) -> NodeId {
        self.node
    }

    /// The node's address.
    pub fn node_addr(&self) -> SocketAddr {
        self.conn.session.addr
    }

    /// Whether the session has ended (or is ending).
    pub fn is_closed(&self) -> bool {
        self.conn.session.is_closed()
    }

    /// Subscribes to `topics`, returning the stream of their messages. The node is sent the
    /// union of the topics of all live subscriptions, since its 0x32 replaces the set. Does
    /// not wait for room in the write queue: fails when it is full.
    pub fn subscribe<I, T>(&self, topics: I) -> Result<Subscription, ClientError>
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let topics: BTreeSet<String> = topics.into_iter().map(Into::into).collect();
        if let Some(t) = topics
            .iter()
            .find(|t| t.is_empty() || t.len() > MAX_AMOP_TOPIC_LEN)
        {
            return Err(ChannelError::TopicLength { len: t.len() }.into());
        }
        let (tx, rx) = mpsc::channel(self.conn.opts.subscription_queue.max(1));
        let mut subs = self.conn.shared.subs.lock();
        if subs.ended.is_some() {
            return Err(self.conn.ended(subs.ended.as_ref()));
        }
        let id = subs.next_id;
        subs.next_id = subs.next_id.wrapping_add(1);
        subs.entries.insert(id, SubEntry { topics, tx });
        // Sent under the lock, so the node sees the sets in the order they were made.
        let sent = subs
            .subscribe_frame(self.conn.seqs.next())
            .and_then(|frame| {
                self.conn.session.try_send(frame).map_err(|e| match e {
                    QueueError::Full => ClientError::QueueFull {
                        addr: self.conn.session.addr,
                    },
                    QueueError::Closed => self.conn.ended(None),
                })
            });
        if let Err(e) = sent {
            subs.entries.remove(&id);
            return Err(e);
        }
        Ok(Subscription {
            id,
            rx,
            conn: self.conn.clone(),
        })
    }

    /// Sends `payload` to one subscriber of `topic` (0x30) and waits up to `timeout` for the
    /// outcome: its ack, no subscriber, a failure code, or a timeout.
    pub async fn publish(
        &self,
        topic: &str,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<PublishOutcome, ClientError> {
        let data = encode_amop(topic, payload)?;
        let answer = self
            .conn
            .request(
                ChannelType::AMOP_REQUEST,
                ChannelType::AMOP_RESPONSE,
                data,
                timeout,
            )
            .await?;
        Ok(answer.map_or(PublishOutcome::TimedOut, PublishOutcome::from_answer))
    }

    /// Sends `payload` to every subscriber of `topic` (0x35); returns the node's result (0
    /// when it took the message, even with no subscriber; 103 over a limit).
    pub async fn multicast(&self, topic: &str, payload: &[u8]) -> Result<i32, ClientError> {
        let data = encode_amop(topic, payload)?;
        let timeout = self.conn.opts.request_timeout;
        self.conn
            .request(
                ChannelType::AMOP_MULTICAST,
                ChannelType::AMOP_RESPONSE,
                data,
                timeout,
            )
            .await?
            .map(|answer| answer.result)
            .ok_or(ClientError::TimedOut(timeout))
    }

    /// Calls JSON-RPC `method` with `params` over the channel (0x12); returns the result, or
    /// the node's JSON-RPC error as [`ClientError::Rpc`].
    pub async fn rpc(
        &self,
        method: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        let id = self.conn.rpc_ids.fetch_add(1, Ordering::Relaxed);
        let body =
            serde_json::json!({"jsonrpc": "2.0", "method": method, "params": params, "id": id});
        let data = serde_json::to_vec(&body).map_err(|e| ClientError::BadAnswer(e.to_string()))?;
        let timeout = self.conn.opts.request_timeout;
        let answer = self
            .conn
            .request(ChannelType::RPC, ChannelType::RPC, data.into(), timeout)
            .await?
            .ok_or(ClientError::TimedOut(timeout))?;
        rpc_result(&answer.data)
    }

    /// Closes the session after writing what is queued.
    pub fn close(&self) {
        self.conn.session.close(CloseReason::Shutdown);
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.close();
    }
}

/// The result of a JSON-RPC response, or its error.
fn rpc_result(data: &[u8]) -> Result<serde_json::Value, ClientError> {
    let mut v: serde_json::Value = serde_json::from_slice(data).map_err(|e| {
        ClientError::BadAnswer(format!(
            "a JSON-RPC answer that is not JSON ({e}): {}",
            String::from_utf8_lossy(data)
        ))
    })?;
    if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
        return Err(ClientError::Rpc {
            code: err
                .get("code")
                .and_then(serde_json::Value::as_i64)
                .unwrap_or(0),
            message: err
                .get("message")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        });
    }
    match v.get_mut("result") {
        Some(result) => Ok(result.take()),
        None => Err(ClientError::BadAnswer(format!(
            "a JSON-RPC answer with neither result nor error: {}",
            String::from_utf8_lossy(data)
        ))),
    }
}

/// The messages of the topics subscribed to; ends (`None`) when the session ends. Dropping
/// it unsubscribes its topics that no other subscription holds.
#[derive(Debug)]
pub struct Subscription {
    id: u64,
    rx: mpsc::Receiver<AmopMessage>,
    conn: Arc<Conn>,
}

impl Subscription {
    /// The next message; `None` once the session has ended.
    pub async fn recv(&mut self) -> Option<AmopMessage> {
        self.rx.recv().await
    }
}

impl Stream for Subscription {
    type Item = AmopMessage;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<AmopMessage>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.conn.unsubscribe(self.id);
    }
}

mod error;
#[cfg(test)]
mod tests;
