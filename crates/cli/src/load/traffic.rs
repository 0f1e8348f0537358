//! The sending side of the load generator: paced requests, unicasts and broadcasts to
//! random reachable nodes. Nothing queues without bound: unicasts and broadcasts use the
//! fail-fast sends, and requests outstanding at once are capped (one over the cap is
//! skipped, not sent).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use chainmesh::node::{NodeHandle, UndeliveredKind};
use chainmesh::NodeId;
use rand::Rng;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::Semaphore;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::report::{Counters, FailKind};
use super::spec::{LoadSpec, HEADER_LEN};

/// How often the senders wake to send what their rate allows.
const TICK: Duration = Duration::from_millis(10);
/// How long a request may take to resolve, either way, before it counts as lost: its
/// timeout and as long again (at least a second). The margin is that wide so that a node
/// frozen (SIGSTOP) for up to its request timeout, whose timers all fire at once when it
/// runs again, does not take its own pause for a lost request.
pub fn lost_after(timeout: Duration) -> Duration {
    timeout.saturating_add(timeout.max(Duration::from_secs(1)))
}

/// Sends one message of a kind.
type Sender = fn(&Arc<Traffic>);

/// What the senders share.
pub struct Traffic {
    node: NodeHandle,
    spec: LoadSpec,
    group: String,
    incarnation: u64,
    counters: Arc<Counters>,
    /// Random bytes that fill every payload after its header: load that compresses like
    /// real data, not like zeros.
    filler: Bytes,
    seq: AtomicU64,
    in_flight: Arc<Semaphore>,
    /// The pacing tasks, so that stopping can wait until none sends any more.
    pacers: TaskTracker,
    /// Every request task, so that stopping can wait for their outcomes.
    requests: TaskTracker,
}

impl Traffic {
    /// The senders of `spec` on `node`, broadcasting to `group`.
    pub fn new(
        node: NodeHandle,
        spec: LoadSpec,
        group: String,
        incarnation: u64,
        counters: Arc<Counters>,
    ) -> Arc<Traffic> {
        let mut filler = vec![0u8; spec.size.saturating_sub(HEADER_LEN)];
        rand::rng().fill(&mut filler[..]);
        Arc::new(Traffic {
            in_flight: Arc::new(Semaphore::new(spec.in_flight)),
            node,
            group,
            incarnation,
            counters,
            filler: filler.into(),
            seq: AtomicU64::new(0),
            pacers: TaskTracker::new(),
            requests: TaskTracker::new(),
            spec,
        })
    }

    /// Requests waiting for their outcome.
    pub fn in_flight(&self) -> u64 {
        self.spec
            .in_flight
            .saturating_sub(self.in_flight.available_permits()) as u64
    }

    /// Starts one pacing task per kind with a rate; they stop when `stop` is cancelled.
    pub fn spawn(self: &Arc<Self>, stop: &CancellationToken) {
        let kinds: [(f64, Sender); 3] = [
            (self.spec.requests, Traffic::request),
            (self.spec.unicasts, Traffic::unicast),
            (self.spec.broadcasts, Traffic::broadcast),
        ];
        for (rate, send) in kinds {
            if rate > 0.0 {
                self.pacers
                    .spawn(pace(rate, stop.clone(), self.clone(), send));
            }
        }
    }

    /// After `stop` was cancelled: waits until the pacing tasks have stopped (one may be in
    /// the middle of a burst), then for every request sent to resolve (each is bounded by
    /// [`lost_after`]).
    pub async fn drain(&self) {
        self.pacers.close();
        self.pacers.wait().await;
        self.requests.close();
        self.requests.wait().await;
    }

    fn payload(&self) -> Bytes {
        let seq = self.seq.fetch_add(1, Relaxed);
        let mut b = BytesMut::with_capacity(HEADER_LEN + self.filler.len());
        b.put_u64(self.incarnation);
        b.put_u64(seq);
        b.put_slice(&self.filler);
        b.freeze()
    }

    fn target(&self) -> Option<NodeId> {
        let nodes = self.node.reachable_nodes();
        if nodes.is_empty() {
            return None;
        }
        let k = rand::rng().random_range(0..nodes.len());
        nodes.get(k).map(|(id, _)| *id)
    }

    fn request(self: &Arc<Self>) {
        let c = &self.counters;
        let Some(dst) = self.target() else {
            c.req_skipped.inc();
            return;
        };
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            c.req_skipped.inc();
            return;
        };
        c.req_sent.inc();
        let payload = self.payload();
        let this = self.clone();
        self.requests.spawn(async move {
            let timeout = this.spec.request_timeout;
            let asked = this
                .node
                .request(dst, this.spec.module, payload.clone(), timeout);
            let c = &this.counters;
            match tokio::time::timeout(lost_after(timeout), asked).await {
                Err(_) => c.req_lost.inc(),
                Ok(Ok(answer)) if answer == payload => c.req_answered.inc(),
                Ok(Ok(_)) => c.failed(FailKind::Mismatch),
                Ok(Err(e)) => c.failed(FailKind::of(&e)),
            }
            drop(permit);
        });
    }

    fn unicast(self: &Arc<Self>) {
        let c = &self.counters;
        let Some(dst) = self.target() else {
            c.uni_skipped.inc();
            return;
        };
        match self.node.try_send(dst, self.spec.module, self.payload()) {
            Ok(()) => c.uni_sent.inc(),
            Err(_) => c.uni_failed.inc(),
        }
    }

    fn broadcast(self: &Arc<Self>) {
        let c = &self.counters;
        match self
            .node
            .try_broadcast(&self.group, self.spec.module, self.payload())
        {
            Ok(f) => {
                c.bc_sent.inc();
                c.bc_queued.add(f.queued.len() as u64);
                c.bc_unreachable.add(f.unreachable.len() as u64);
                c.bc_dropped.add(f.dropped.len() as u64);
            }
            Err(_) => c.bc_failed.inc(),
        }
    }
}

/// Calls `send` `rate` times a second until `stop`; a late wake-up sends what fell due, at
/// most one second's worth.
async fn pace(rate: f64, stop: CancellationToken, traffic: Arc<Traffic>, send: fn(&Arc<Traffic>)) {
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last = Instant::now();
    let mut due = 0.0f64;
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let now = Instant::now();
        due = (due + rate * now.duration_since(last).as_secs_f64()).min(rate.max(1.0));
        last = now;
        while due >= 1.0 {
            due -= 1.0;
            send(&traffic);
        }
    }
}

/// Counts what the node reports of this load's sends still queued when their link closed
/// (`unicasts.undelivered`, `broadcasts.undelivered`), until the node stops. Events missed
/// while the reader lags are counted as such: the node's own counters stay exact.
pub fn watch_undelivered(node: &NodeHandle, module: u16, c: Arc<Counters>) {
    let mut reports = node.undelivered();
    tokio::spawn(async move {
        loop {
            match reports.recv().await {
                Ok(u) if u.module == module => match u.kind {
                    UndeliveredKind::Unicast => c.uni_undelivered.inc(),
                    UndeliveredKind::Broadcast | UndeliveredKind::Multicast => {
                        c.bc_undelivered.inc()
                    }
                    // Requests fail with their own typed error; responses are the other
                    // node's requests.
                    _ => {}
                },
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => c.undelivered_missed.add(n),
                Err(RecvError::Closed) => return,
            }
        }
    });
}
