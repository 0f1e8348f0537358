//! AMOP load from SDK clients: one [`Client`] per node, subscribed to one topic, publishing
//! unicasts (answered by whichever subscriber the network picks, which acks with the payload)
//! and multicasts (to every subscriber) at fixed rates. Every publish ends in an outcome the
//! client names (ack, no subscriber, a failure code, its timeout, a client error) or, past an
//! outer deadline, counts as `lost`; subscribers count messages seen twice.
//!
//! A node being restarted ends its client's session: the client reconnects when the runner
//! publishes the node's channel address again.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chainmesh::amop::{AmopKind, Client, ClientOptions, PublishOutcome, Subscription};
use chainmesh::identity::Identity;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// Rates and sizes of the AMOP load, per node.
#[derive(Debug, Clone)]
pub struct AmopOptions {
    /// The topic every client subscribes to and publishes on.
    pub topic: String,
    /// Unicasts per second from each node's client.
    pub unicasts_per_sec: f64,
    /// Multicasts per second from each node's client.
    pub multicasts_per_sec: f64,
    /// Payload bytes (at least the key each payload starts with).
    pub size: usize,
    /// How long a unicast waits for its outcome.
    pub timeout: Duration,
}

/// How long past its own timeout a publish may take before it counts as lost.
const LOST_MARGIN: Duration = Duration::from_secs(5);
/// Wait between two connection attempts to a node that refused or is down.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);
/// Sequence numbers remembered per publisher to find repeats (more than a long run sends).
const SEEN_PER_PUBLISHER: usize = 1 << 17;

/// AMOP counters of one node's client (or of several, added up).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AmopCounts {
    /// Unicasts published.
    pub sent: u64,
    /// Unicasts acked with result 0 and the payload sent.
    pub acked: u64,
    /// Acks whose payload was not the one sent.
    pub bad_acks: u64,
    /// Unicasts answered 100: no subscriber known (a restarted node's topics not yet known).
    pub no_subscriber: u64,
    /// Unicasts answered with a failure code (104: every subscriber failed; 103: a limit).
    pub failed: u64,
    /// Unicasts without an answer within their timeout (the client's own, typed outcome).
    pub timed_out: u64,
    /// Publishes that ended in a client error (the session closed under them).
    pub errors: u64,
    /// Unicasts with no outcome at all by their outer deadline.
    pub lost: u64,
    /// Multicasts published.
    pub mc_published: u64,
    /// Multicasts the node took (result 0).
    pub mc_sent: u64,
    /// Multicasts refused or failed (a client error or a result code).
    pub mc_failed: u64,
    /// Multicasts with no answer from the node by their outer deadline.
    pub mc_lost: u64,
    /// Unicasts pushed to this node's subscriber.
    pub uni_received: u64,
    /// Unicasts pushed again after the first time (a failover after an ack timeout).
    pub uni_repeats: u64,
    /// Multicasts pushed to this node's subscriber.
    pub mc_received: u64,
    /// Multicasts pushed again after the first time.
    pub mc_duplicates: u64,
    /// Sessions opened to the node.
    pub connects: u64,
}

impl AmopCounts {
    /// Adds `other` to these.
    pub fn add(&mut self, o: &AmopCounts) {
        let f = |a: &mut u64, b: u64| *a = a.saturating_add(b);
        f(&mut self.sent, o.sent);
        f(&mut self.acked, o.acked);
        f(&mut self.bad_acks, o.bad_acks);
        f(&mut self.no_subscriber, o.no_subscriber);
        f(&mut self.failed, o.failed);
        f(&mut self.timed_out, o.timed_out);
        f(&mut self.errors, o.errors);
        f(&mut self.lost, o.lost);
        f(&mut self.mc_published, o.mc_published);
        f(&mut self.mc_sent, o.mc_sent);
        f(&mut self.mc_failed, o.mc_failed);
        f(&mut self.mc_lost, o.mc_lost);
        f(&mut self.uni_received, o.uni_received);
        f(&mut self.uni_repeats, o.uni_repeats);
        f(&mut self.mc_received, o.mc_received);
        f(&mut self.mc_duplicates, o.mc_duplicates);
        f(&mut self.connects, o.connects);
    }

    /// Publishes (unicast and multicast) still waiting for their outcome.
    pub fn in_flight(&self) -> u64 {
        let unicasts = self.sent.saturating_sub(
            self.acked
                .saturating_add(self.bad_acks)
                .saturating_add(self.no_subscriber)
                .saturating_add(self.failed)
                .saturating_add(self.timed_out)
                .saturating_add(self.errors)
                .saturating_add(self.lost),
        );
        let multicasts = self.mc_published.saturating_sub(
            self.mc_sent
                .saturating_add(self.mc_failed)
                .saturating_add(self.mc_lost),
        );
        unicasts.saturating_add(multicasts)
    }
}

/// Sequence numbers seen per publisher, to tell a repeat from a first delivery.
#[derive(Debug, Default)]
pub struct Seen {
    by_publisher: HashMap<u64, BTreeSet<u64>>,
}

impl Seen {
    /// Records `seq` of `publisher`; false when it was seen before. The oldest numbers are
    /// forgotten past `SEEN_PER_PUBLISHER` (2^17).
    pub fn first_time(&mut self, publisher: u64, seq: u64) -> bool {
        let set = self.by_publisher.entry(publisher).or_default();
        let new = set.insert(seq);
        if set.len() > SEEN_PER_PUBLISHER {
            set.pop_first();
        }
        new
    }
}

/// The payload of message `seq` from `publisher`: a key the subscriber reads back
/// ([`parse_key`]), padded to `size` bytes.
pub fn payload(kind: AmopKind, publisher: u64, seq: u64, size: usize) -> Vec<u8> {
    let tag = match kind {
        AmopKind::Unicast => 'u',
        AmopKind::Multicast => 'm',
    };
    let mut p = format!("{tag}:{publisher}:{seq}:").into_bytes();
    let len = p.len().max(size);
    p.resize(len, b'.');
    p
}

/// The publisher and seq of a [`payload`]; `None` for anything else.
pub fn parse_key(payload: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(payload.get(..payload.len().min(64))?).ok()?;
    let mut parts = text.split(':');
    let _tag = parts.next()?;
    let publisher = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    parts.next()?;
    Some((publisher, seq))
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    acked: AtomicU64,
    bad_acks: AtomicU64,
    no_subscriber: AtomicU64,
    failed: AtomicU64,
    timed_out: AtomicU64,
    errors: AtomicU64,
    lost: AtomicU64,
    mc_published: AtomicU64,
    mc_sent: AtomicU64,
    mc_failed: AtomicU64,
    mc_lost: AtomicU64,
    uni_received: AtomicU64,
    uni_repeats: AtomicU64,
    mc_received: AtomicU64,
    mc_duplicates: AtomicU64,
    connects: AtomicU64,
    seq: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> AmopCounts {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        AmopCounts {
            sent: g(&self.sent),
            acked: g(&self.acked),
            bad_acks: g(&self.bad_acks),
            no_subscriber: g(&self.no_subscriber),
            failed: g(&self.failed),
            timed_out: g(&self.timed_out),
            errors: g(&self.errors),
            lost: g(&self.lost),
            mc_published: g(&self.mc_published),
            mc_sent: g(&self.mc_sent),
            mc_failed: g(&self.mc_failed),
            mc_lost: g(&self.mc_lost),
            uni_received: g(&self.uni_received),
            uni_repeats: g(&self.uni_repeats),
            mc_received: g(&self.mc_received),
            mc_duplicates: g(&self.mc_duplicates),
            connects: g(&self.connects),
        }
    }
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

struct NodeLoad {
    index: u64,
    /// Cleared by [`AmopLoad::stop_publishing`]; shared by every node's task.
    publishing: Arc<AtomicBool>,
    counters: Counters,
    uni_seen: Mutex<Seen>,
    mc_seen: Mutex<Seen>,
}

/// The running AMOP load; stops when dropped.
pub struct AmopLoad {
    publishing: Arc<AtomicBool>,
    nodes: Vec<Arc<NodeLoad>>,
    tasks: Vec<JoinHandle<()>>,
}

impl AmopLoad {
    /// Starts one client per entry of `addrs`, each following its node's channel address
    /// (`None` while the node is down), on the current tokio runtime.
    pub fn start(
        addrs: Vec<watch::Receiver<Option<String>>>,
        identity: Identity,
        opts: AmopOptions,
    ) -> AmopLoad {
        let identity = Arc::new(identity);
        let opts = Arc::new(opts);
        let publishing = Arc::new(AtomicBool::new(true));
        let mut nodes = Vec::new();
        let mut tasks = Vec::new();
        for (i, addr) in addrs.into_iter().enumerate() {
            let node = Arc::new(NodeLoad {
                index: u64::try_from(i).unwrap_or(u64::MAX),
                publishing: publishing.clone(),
                counters: Counters::default(),
                uni_seen: Mutex::default(),
                mc_seen: Mutex::default(),
            });
            nodes.push(node.clone());
            tasks.push(tokio::spawn(run_node(
                node,
                addr,
                identity.clone(),
                opts.clone(),
            )));
        }
        AmopLoad {
            publishing,
            nodes,
            tasks,
        }
    }

    /// Stops publishing; subscribers keep answering, so publishes in flight can end.
    pub fn stop_publishing(&self) {
        self.publishing.store(false, Ordering::Relaxed);
    }

    /// The counters of node `i`'s client so far.
    pub fn counts(&self, i: usize) -> AmopCounts {
        self.nodes
            .get(i)
            .map_or_else(AmopCounts::default, |n| n.counters.snapshot())
    }
}

impl Drop for AmopLoad {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Keeps a session to the node open while it is up and drives the load through it.
async fn run_node(
    node: Arc<NodeLoad>,
    mut addr: watch::Receiver<Option<String>>,
    identity: Arc<Identity>,
    opts: Arc<AmopOptions>,
) {
    loop {
        let Some(target) = addr.borrow_and_update().clone() else {
            if addr.changed().await.is_err() {
                return;
            }
            continue;
        };
        let client_opts = ClientOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: opts.timeout,
            ..ClientOptions::default()
        };
        let client = match Client::connect(&target, &identity, client_opts).await {
            Ok(c) => Arc::new(c),
            Err(e) => {
                tracing::debug!(%target, error = %e, "AMOP client: no session yet");
                tokio::time::sleep(RECONNECT_DELAY).await;
                continue;
            }
        };
        let sub = match client.subscribe([opts.topic.clone()]) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%target, error = %e, "AMOP client: subscribe failed");
                tokio::time::sleep(RECONNECT_DELAY).await;
                continue;
            }
        };
        bump(&node.counters.connects);
        tokio::select! {
            () = drive(&node, &client, sub, &opts) => {}
            _ = addr.changed() => {}
        }
        client.close();
    }
}

/// Publishes at the configured rates and answers the subscription until the session ends.
async fn drive(
    node: &Arc<NodeLoad>,
    client: &Arc<Client>,
    mut sub: Subscription,
    opts: &Arc<AmopOptions>,
) {
    let mut uni = ticker(opts.unicasts_per_sec);
    let mut mc = ticker(opts.multicasts_per_sec);
    loop {
        tokio::select! {
            msg = sub.recv() => {
                let Some(msg) = msg else { return };
                receive(node, &msg);
                if msg.kind == AmopKind::Unicast {
                    // A full queue leaves the push unanswered: the node then fails it over.
                    let _ = msg.ack(&msg.payload);
                }
            }
            _ = tick(&mut uni), if node.publishing.load(Ordering::Relaxed) => {
                // Looked at again: the flag may have been cleared while this arm waited.
                if node.publishing.load(Ordering::Relaxed) {
                    tokio::spawn(publish(node.clone(), client.clone(), opts.clone()));
                }
            }
            _ = tick(&mut mc), if node.publishing.load(Ordering::Relaxed) => {
                if node.publishing.load(Ordering::Relaxed) {
                    tokio::spawn(multicast(node.clone(), client.clone(), opts.clone()));
                }
            }
        }
        if client.is_closed() {
            return;
        }
    }
}

fn receive(node: &NodeLoad, msg: &chainmesh::amop::AmopMessage) {
    let c = &node.counters;
    let key = parse_key(&msg.payload);
    let (received, repeats, seen) = match msg.kind {
        AmopKind::Unicast => (&c.uni_received, &c.uni_repeats, &node.uni_seen),
        AmopKind::Multicast => (&c.mc_received, &c.mc_duplicates, &node.mc_seen),
    };
    bump(received);
    if let Some((publisher, seq)) = key {
        if !seen.lock().first_time(publisher, seq) {
            bump(repeats);
        }
    }
}

async fn publish(node: Arc<NodeLoad>, client: Arc<Client>, opts: Arc<AmopOptions>) {
    let c = &node.counters;
    let seq = c.seq.fetch_add(1, Ordering::Relaxed);
    let body = payload(AmopKind::Unicast, node.index, seq, opts.size);
    bump(&c.sent);
    let outcome = tokio::time::timeout(
        opts.timeout.saturating_add(LOST_MARGIN),
        client.publish(&opts.topic, &body, opts.timeout),
    )
    .await;
    let counter = match outcome {
        Err(_) => &c.lost,
        Ok(Err(_)) => &c.errors,
        Ok(Ok(PublishOutcome::Acked {
            result: 0, payload, ..
        })) if payload.as_ref() == body.as_slice() => &c.acked,
        Ok(Ok(PublishOutcome::Acked { result: 0, .. })) => &c.bad_acks,
        Ok(Ok(PublishOutcome::Acked { .. } | PublishOutcome::Failed(_))) => &c.failed,
        Ok(Ok(PublishOutcome::NoSubscriber)) => &c.no_subscriber,
        Ok(Ok(PublishOutcome::TimedOut)) => &c.timed_out,
    };
    bump(counter);
}

async fn multicast(node: Arc<NodeLoad>, client: Arc<Client>, opts: Arc<AmopOptions>) {
    let c = &node.counters;
    let seq = c.seq.fetch_add(1, Ordering::Relaxed);
    let body = payload(AmopKind::Multicast, node.index, seq, opts.size);
    bump(&c.mc_published);
    let outcome = tokio::time::timeout(
        opts.timeout.saturating_add(LOST_MARGIN),
        client.multicast(&opts.topic, &body),
    )
    .await;
    bump(match outcome {
        Err(_) => &c.mc_lost,
        Ok(Ok(0)) => &c.mc_sent,
        Ok(_) => &c.mc_failed,
    });
}

fn ticker(per_sec: f64) -> Option<tokio::time::Interval> {
    (per_sec.is_finite() && per_sec > 0.0).then(|| {
        let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / per_sec));
        // A stalled runner sends fewer messages, not a burst.
        t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        t
    })
}

async fn tick(t: &mut Option<tokio::time::Interval>) {
    match t {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_carries_its_key_and_has_the_size_asked_for() {
        let p = payload(AmopKind::Unicast, 3, 41, 64);
        assert_eq!(p.len(), 64);
        assert_eq!(parse_key(&p), Some((3, 41)));
        // Shorter than its key: the key is kept whole.
        let p = payload(AmopKind::Multicast, 12, 123_456, 4);
        assert_eq!(parse_key(&p), Some((12, 123_456)));
        assert_eq!(parse_key(b"hello"), None);
        assert_eq!(parse_key(b"u:1:x:"), None);
    }

    #[test]
    fn a_repeat_is_told_from_a_first_delivery_per_publisher() {
        let mut seen = Seen::default();
        assert!(seen.first_time(1, 7));
        assert!(seen.first_time(2, 7));
        assert!(!seen.first_time(1, 7));
        assert!(seen.first_time(1, 8));
    }

    #[test]
    fn in_flight_is_what_has_no_outcome_yet() {
        let c = AmopCounts {
            sent: 10,
            acked: 6,
            no_subscriber: 1,
            errors: 1,
            ..AmopCounts::default()
        };
        assert_eq!(c.in_flight(), 2);
        let mut t = c;
        t.add(&c);
        assert_eq!((t.sent, t.acked, t.in_flight()), (20, 12, 4));
    }
}
