//! The scenarios, each written once and run on every system through [`System`] and
//! [`Sender`], and the driver that interleaves their repetitions across systems.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bytes::Bytes;

use crate::harness::{quantile, wait_until, Pinned, Receive, RssPeak, Sender, Sides, Star, System};
use crate::memory::{rss_bytes, trim_heap};
use crate::report::{Results, SystemId};

/// How long and how often to measure.
#[derive(Debug, Clone)]
pub struct Plan {
    pub quick: bool,
    /// Recorded repetitions of each scenario on each system.
    pub reps: usize,
    /// Measuring time of one stream or round-trip repetition.
    pub window: Duration,
    /// 1 MiB messages per bulk repetition.
    pub bulk_messages: u64,
    /// Clients connecting at once in the set-up scenario, and bursts per repetition.
    pub burst_clients: usize,
    pub bursts: usize,
    /// Nodes of the idle full mesh (n(n-1)/2 connections).
    pub mesh_nodes: usize,
    /// Longest a stalled-receiver repetition sends for.
    pub stall_window: Duration,
    /// Pin worker threads to CPUs.
    pub pin: bool,
    /// A fixed message count for every stream repetition instead of a time window: for
    /// profiling, where the cost per message is what matters.
    pub messages: Option<u64>,
}

impl Plan {
    pub fn new(quick: bool, pin: bool, reps: Option<usize>, messages: Option<u64>) -> Plan {
        let base = if quick {
            Plan {
                quick,
                reps: 3,
                window: Duration::from_millis(200),
                bulk_messages: 192,
                burst_clients: 32,
                bursts: 1,
                mesh_nodes: 33,
                stall_window: Duration::from_millis(600),
                pin,
                messages,
            }
        } else {
            Plan {
                quick,
                reps: 5,
                window: Duration::from_secs(1),
                bulk_messages: 768,
                burst_clients: 32,
                bursts: 3,
                mesh_nodes: 33,
                stall_window: Duration::from_secs(2),
                pin,
                messages,
            }
        };
        Plan {
            reps: reps.unwrap_or(base.reps),
            ..base
        }
    }
}

/// What one repetition produced: figures by metric id, and optional notes.
#[derive(Debug, Default)]
pub struct Measured {
    pub figures: Vec<(String, f64)>,
    pub notes: Vec<(String, String)>,
}

impl Measured {
    pub fn figure(&mut self, metric: impl Into<String>, value: f64) {
        self.figures.push((metric.into(), value));
    }
}

/// A measurement run the same way on every system.
pub trait Scenario {
    /// What one system keeps across repetitions.
    type Env<S: System>;
    /// Name for `--only` and progress lines.
    fn id(&self) -> String;
    /// Builds the system's environment.
    fn setup<S: System>(&self, sys: &S, plan: &Plan) -> Result<Self::Env<S>>;
    /// Where the threads ran, for the report.
    fn placement<S: System>(&self, env: &Self::Env<S>) -> String;
    /// One repetition.
    fn run<S: System>(&self, sys: &S, env: &mut Self::Env<S>, plan: &Plan) -> Result<Measured>;
    /// Whether to run one unrecorded repetition first.
    fn warm_up(&self) -> bool {
        true
    }
}

/// The three contenders, and the systems the command line selected.
pub struct Contenders {
    pub chainmesh: crate::chainmesh::Chainmesh,
    pub baseline: crate::baseline::Baseline,
    pub libp2p: crate::libp2p::Libp2p,
    pub enabled: Vec<SystemId>,
}

/// Runs `sc` on every selected system, repetitions interleaved (chainmesh, baseline, libp2p,
/// chainmesh, ...) so that slow drifts of the machine hit all three alike. A system whose
/// set-up or repetition fails is reported as failed; the others go on.
pub fn compare<Sc: Scenario>(sc: &Sc, who: &Contenders, plan: &Plan, results: &mut Results) {
    let mut cm = Slot::new(sc, &who.chainmesh, SystemId::Chainmesh, who, plan, results);
    let mut base = Slot::new(sc, &who.baseline, SystemId::Baseline, who, plan, results);
    let mut p2p = Slot::new(sc, &who.libp2p, SystemId::Libp2p, who, plan, results);
    let warm = usize::from(sc.warm_up());
    for rep in 0..warm + plan.reps {
        let label = if rep < warm {
            "warm-up".to_string()
        } else {
            format!("rep {}/{}", rep + 1 - warm, plan.reps)
        };
        let record = rep >= warm;
        cm.run(sc, &who.chainmesh, plan, results, &label, record);
        base.run(sc, &who.baseline, plan, results, &label, record);
        p2p.run(sc, &who.libp2p, plan, results, &label, record);
    }
}

/// One system's environment for one scenario; `None` once it failed or when not selected.
struct Slot<E> {
    id: SystemId,
    env: Option<E>,
}

impl<E> Slot<E> {
    fn new<Sc, S>(
        sc: &Sc,
        sys: &S,
        id: SystemId,
        who: &Contenders,
        plan: &Plan,
        results: &mut Results,
    ) -> Self
    where
        Sc: Scenario<Env<S> = E>,
        S: System,
    {
        if !who.enabled.contains(&id) {
            return Slot { id, env: None };
        }
        match sc.setup(sys, plan) {
            Ok(env) => {
                results.placement(&sc.id(), &sc.placement::<S>(&env));
                Slot { id, env: Some(env) }
            }
            Err(e) => {
                eprintln!("  {:<9} {}: set-up failed: {e:#}", S::SHORT, sc.id());
                results.fail(&sc.id(), id, format!("{e:#}"));
                Slot { id, env: None }
            }
        }
    }

    fn run<Sc, S>(
        &mut self,
        sc: &Sc,
        sys: &S,
        plan: &Plan,
        results: &mut Results,
        label: &str,
        record: bool,
    ) where
        Sc: Scenario<Env<S> = E>,
        S: System,
    {
        let Some(env) = self.env.as_mut() else { return };
        let started = Instant::now();
        match sc.run(sys, env, plan) {
            Ok(m) => {
                let shown: Vec<String> = m
                    .figures
                    .iter()
                    .take(3)
                    .map(|(k, v)| format!("{k}={}", crate::report::short(*v)))
                    .collect();
                eprintln!(
                    "  {:<9} {} {label}: {} ({:.1} s)",
                    S::SHORT,
                    sc.id(),
                    shown.join(" "),
                    started.elapsed().as_secs_f64()
                );
                if record {
                    results.record(self.id, m);
                }
            }
            Err(e) => {
                eprintln!("  {:<9} {} {label}: failed: {e:#}", S::SHORT, sc.id());
                results.fail(&sc.id(), self.id, format!("{e:#}"));
                self.env = None;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Traffic over a star: streams, round trips, broadcast
// ---------------------------------------------------------------------------------------------

/// A sender and its receivers, and the runtimes they run on. The star is dropped before the
/// runtimes (field order).
pub struct Topology<S: System> {
    pub star: Star<S::Sender>,
    pub sides: Sides,
}

pub fn topology<S: System>(
    sys: &S,
    sides: Sides,
    receivers: usize,
    mode: Receive,
) -> Result<Topology<S>> {
    let star = sys.star(&sides, receivers, mode)?;
    Ok(Topology { star, sides })
}

/// `size` pseudo-random bytes (xorshift64*): payloads that no system can compress, so that
/// every system moves every byte. (A constant fill would let a compressing system skip most
/// of the work.)
pub fn incompressible(size: usize) -> Bytes {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ size as u64;
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(size);
    Bytes::from(out)
}

/// How long delivery may lag behind sending before the benchmark gives up.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Who a pump sends to.
#[derive(Clone, Copy)]
pub enum To {
    One(usize),
    All,
}

/// Messages delivered and the time from the first send to the last delivery.
pub struct Pumped {
    pub delivered: u64,
    pub elapsed: Duration,
}

/// Sends `payload` as fast as the system takes it, until `max` messages or `window` has
/// passed, then waits until every receiver has counted every message.
pub async fn pump<T: Sender>(
    star_sender: Arc<T>,
    sink: Arc<crate::harness::Sink>,
    to: To,
    payload: Bytes,
    window: Duration,
    max: u64,
) -> Result<Pumped> {
    let fanout = match to {
        To::One(_) => 1,
        To::All => star_sender.receivers() as u64,
    };
    let first = sink.messages();
    let start = Instant::now();
    let deadline = start + window;
    let mut sent = 0u64;
    while sent < max && (sent % 16 != 0 || Instant::now() < deadline) {
        match to {
            To::One(i) => star_sender.send(i, payload.clone()).await?,
            To::All => star_sender.send_to_all(payload.clone()).await?,
        }
        sent += 1;
    }
    let want = sent * fanout;
    let what = format!("{want} deliveries");
    wait_until(DRAIN_TIMEOUT, &what, || sink.messages() - first >= want).await?;
    Ok(Pumped {
        delivered: want,
        elapsed: start.elapsed(),
    })
}

/// One producer streaming one-way messages of `size` bytes to one receiver.
pub struct Stream {
    pub size: usize,
    /// Metric id prefix: `unicast-256`, `unicast-4k`, `bulk`.
    pub name: &'static str,
    /// Messages per repetition at most (the plan's window bounds it too).
    pub max: fn(&Plan) -> u64,
}

impl Scenario for Stream {
    type Env<S: System> = Topology<S>;

    fn id(&self) -> String {
        self.name.to_string()
    }

    fn setup<S: System>(&self, sys: &S, plan: &Plan) -> Result<Topology<S>> {
        topology(sys, Sides::shared(plan.pin)?, 1, Receive::Serve)
    }

    fn placement<S: System>(&self, env: &Topology<S>) -> String {
        env.sides.placement.clone()
    }

    fn run<S: System>(&self, _: &S, env: &mut Topology<S>, plan: &Plan) -> Result<Measured> {
        let payload = incompressible(self.size);
        // Bulk and profiling runs are bounded by their message count; the window is then
        // only a safety net.
        let (window, max) = match plan.messages {
            Some(n) => (Duration::from_secs(600), n),
            None if self.size >= 1 << 20 => (plan.window * 10, (self.max)(plan)),
            None => (plan.window, (self.max)(plan)),
        };
        let p = env.sides.sender.run(pump(
            env.star.sender.clone(),
            env.star.sink.clone(),
            To::One(0),
            payload,
            window,
            max,
        ))??;
        let secs = p.elapsed.as_secs_f64();
        let mut m = Measured::default();
        m.figure(format!("{}-rate", self.name), p.delivered as f64 / secs);
        m.figure(
            format!("{}-mbs", self.name),
            (p.delivered * self.size as u64) as f64 / secs / 1e6,
        );
        Ok(m)
    }
}

/// Requests of 256 B echoed back, `in_flight` outstanding at all times; with `on_task`, to
/// a module answered on the task that read the request ([`Class::OnTask`](crate::harness::Class::OnTask)).
pub struct RoundTrips {
    pub in_flight: usize,
    pub on_task: bool,
}

impl RoundTrips {
    /// The scenario's name, which its figures' names start with.
    pub fn name(in_flight: usize, on_task: bool) -> String {
        if on_task {
            format!("rr{in_flight}-on-task")
        } else {
            format!("rr{in_flight}")
        }
    }
}

pub const RR_PAYLOAD: usize = 256;

impl Scenario for RoundTrips {
    type Env<S: System> = Topology<S>;

    fn id(&self) -> String {
        Self::name(self.in_flight, self.on_task)
    }

    fn setup<S: System>(&self, sys: &S, plan: &Plan) -> Result<Topology<S>> {
        topology(sys, Sides::shared(plan.pin)?, 1, Receive::Serve)
    }

    fn placement<S: System>(&self, env: &Topology<S>) -> String {
        env.sides.placement.clone()
    }

    fn run<S: System>(&self, _: &S, env: &mut Topology<S>, plan: &Plan) -> Result<Measured> {
        let t = env.sides.sender.run(timed_requests(
            env.star.sender.clone(),
            0,
            self.on_task.then_some(crate::harness::Class::OnTask),
            self.in_flight,
            plan.window,
        ))??;
        let n = self.id();
        let mut m = Measured::default();
        m.figure(format!("{n}-rate"), t.rate());
        m.figure(format!("{n}-p50"), t.us(0.50));
        m.figure(format!("{n}-p99"), t.us(0.99));
        m.figure(format!("{n}-p999"), t.us(0.999));
        Ok(m)
    }
}

/// The latencies of timed requests, sorted, and how long they took in all.
pub struct Timed {
    pub sorted_ns: Vec<u64>,
    pub elapsed: Duration,
}

impl Timed {
    /// Round trips per second.
    pub fn rate(&self) -> f64 {
        self.sorted_ns.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// The `q`-quantile in microseconds.
    pub fn us(&self, q: f64) -> f64 {
        quantile(&self.sorted_ns, q) as f64 / 1e3
    }
}

/// Requests of [`RR_PAYLOAD`] bytes to receiver `to` (in `class`, or the plain
/// [`Sender::request`] when `None`), `in_flight` outstanding, until `window` has passed.
pub async fn timed_requests<T: Sender>(
    sender: Arc<T>,
    to: usize,
    class: Option<crate::harness::Class>,
    in_flight: usize,
    window: Duration,
) -> Result<Timed> {
    let payload = incompressible(RR_PAYLOAD);
    let start = Instant::now();
    let end = start + window;
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| {
            let (s, p) = (sender.clone(), payload.clone());
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(16 * 1024);
                while Instant::now() < end {
                    let t = Instant::now();
                    let r = match class {
                        Some(c) => s.request_in(to, c, p.clone()).await?,
                        None => s.request(to, p.clone()).await?,
                    };
                    lat.push(t.elapsed().as_nanos() as u64);
                    if r.len() != p.len() {
                        bail!("a {} B request came back as {} B", p.len(), r.len());
                    }
                }
                anyhow::Ok(lat)
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = start.elapsed();
    all.sort_unstable();
    Ok(Timed {
        sorted_ns: all,
        elapsed,
    })
}

/// One sender, `peers` receivers, the sender alone on its own CPU so that its CPU time can
/// be read: the same 256 B payload to every peer, against a unicast to one peer.
pub struct Broadcast {
    pub peers: usize,
}

const BROADCAST_PAYLOAD: usize = 256;

impl Scenario for Broadcast {
    type Env<S: System> = Topology<S>;

    fn id(&self) -> String {
        "broadcast".into()
    }

    fn setup<S: System>(&self, sys: &S, plan: &Plan) -> Result<Topology<S>> {
        topology(sys, Sides::split(plan.pin)?, self.peers, Receive::Serve)
    }

    fn placement<S: System>(&self, env: &Topology<S>) -> String {
        env.sides.placement.clone()
    }

    fn run<S: System>(&self, _: &S, env: &mut Topology<S>, plan: &Plan) -> Result<Measured> {
        let payload = incompressible(BROADCAST_PAYLOAD);
        let sender_rt = &env.sides.sender;
        let measure = |to: To| -> Result<(Pumped, f64)> {
            let before = sender_rt.cpu();
            let p = sender_rt.run(pump(
                env.star.sender.clone(),
                env.star.sink.clone(),
                to,
                payload.clone(),
                plan.window,
                u64::MAX,
            ))??;
            let cpu_us = sender_rt.cpu().since(&before).as_secs_f64() * 1e6;
            let per_message = cpu_us / p.delivered as f64;
            Ok((p, per_message))
        };
        let (_, unicast_cpu) = measure(To::One(0))?;
        let (all, broadcast_cpu) = measure(To::All)?;
        let mut m = Measured::default();
        m.figure(
            "bcast-rate",
            all.delivered as f64 / all.elapsed.as_secs_f64(),
        );
        m.figure("bcast-cpu", broadcast_cpu);
        m.figure("bcast-unicast-cpu", unicast_cpu);
        m.figure("bcast-cost", broadcast_cpu / unicast_cpu);
        m.notes.push((
            "bcast-rate".into(),
            env.star.sender.send_to_all_label().to_string(),
        ));
        Ok(m)
    }
}

// ---------------------------------------------------------------------------------------------
// Connections: set-up rate, idle memory, a stalled receiver
// ---------------------------------------------------------------------------------------------

/// Node 0 and the runtime it and its clients run on.
pub struct Hub<S: System> {
    nodes: S::Nodes,
    rt: Pinned,
}

/// Clients connecting to one node all at once: full mutual-TLS handshakes per second.
pub struct Handshakes {
    /// Metric and scenario id: one per certificate curve.
    pub metric: &'static str,
}

pub fn shared_runtime(name: &str, plan: &Plan) -> Result<Pinned> {
    let cpus: Vec<usize> = crate::harness::available_cpus()
        .into_iter()
        .take(2)
        .collect();
    let pin = plan.pin && cpus.len() == 2;
    Pinned::new(name, 2, pin.then_some(&cpus[..]))
}

impl Scenario for Handshakes {
    type Env<S: System> = Hub<S>;

    fn id(&self) -> String {
        self.metric.into()
    }

    fn setup<S: System>(&self, sys: &S, plan: &Plan) -> Result<Hub<S>> {
        let rt = shared_runtime("hub", plan)?;
        let nodes = sys.nodes(&rt, plan.burst_clients + 1)?;
        Ok(Hub { nodes, rt })
    }

    fn placement<S: System>(&self, env: &Hub<S>) -> String {
        format!(
            "one runtime, {} (both ends of every handshake)",
            env.rt.placement
        )
    }

    fn run<S: System>(&self, sys: &S, env: &mut Hub<S>, plan: &Plan) -> Result<Measured> {
        let mut total = Duration::ZERO;
        for _ in 0..plan.bursts {
            total += sys.connect_burst(&env.rt, &env.nodes)?;
        }
        let mut m = Measured::default();
        m.figure(
            self.metric,
            (plan.burst_clients * plan.bursts) as f64 / total.as_secs_f64(),
        );
        Ok(m)
    }
}

/// RSS growth per idle connection in a full mesh; both ends live in this process, so the
/// growth is divided by two ends per connection.
pub struct IdleMemory;

/// Lets the nodes finish what set-up started before memory is read: in a 33-node mesh that
/// has just connected, chainmesh's nodes are still flooding neighbour-list versions for a
/// few seconds (at 500 ms the lists in flight read as 130-560 KiB per connection end, at
/// 5 s as 79). Every system gets the same wait.
const SETTLE: Duration = Duration::from_secs(5);

/// Where the memory scenarios run, for the report.
const MEMORY_PLACEMENT: &str = "one runtime, 2 workers (memory does not depend on placement)";

/// The process's RSS once what is under way has settled and freed memory has gone back to
/// the kernel: a reading that counts what is live.
fn settled_rss() -> Result<u64> {
    std::thread::sleep(SETTLE);
    trim_heap();
    rss_bytes()
}

impl Scenario for IdleMemory {
    type Env<S: System> = ();

    fn id(&self) -> String {
        "idle-memory".into()
    }

    fn setup<S: System>(&self, _: &S, _: &Plan) -> Result<()> {
        Ok(())
    }

    fn placement<S: System>(&self, _: &()) -> String {
        MEMORY_PLACEMENT.into()
    }

    fn warm_up(&self) -> bool {
        false
    }

    fn run<S: System>(&self, sys: &S, _: &mut (), plan: &Plan) -> Result<Measured> {
        let rt = shared_runtime("mesh", plan)?;
        let nodes = sys.nodes(&rt, plan.mesh_nodes)?;
        let before = settled_rss()?;
        sys.connect_mesh(&rt, &nodes)?;
        let after = settled_rss()?;
        drop(nodes);
        drop(rt);
        let n = plan.mesh_nodes;
        let ends = (n * (n - 1)) as f64;
        let mut m = Measured::default();
        m.figure(
            "idle-kib",
            after.saturating_sub(before) as f64 / ends / 1024.0,
        );
        Ok(m)
    }
}

/// A sender pushing 64 KiB messages at a receiver that never reads: how much memory piles up
/// before the sender's API makes it wait.
pub struct Stall;

const STALL_PAYLOAD: usize = 64 * 1024;
/// A send that waits this long means backpressure has reached the sender.
const BLOCKED: Duration = Duration::from_millis(250);

impl Scenario for Stall {
    type Env<S: System> = ();

    fn id(&self) -> String {
        "stall".into()
    }

    fn setup<S: System>(&self, _: &S, _: &Plan) -> Result<()> {
        Ok(())
    }

    fn placement<S: System>(&self, _: &()) -> String {
        MEMORY_PLACEMENT.into()
    }

    fn warm_up(&self) -> bool {
        false
    }

    fn run<S: System>(&self, sys: &S, _: &mut (), plan: &Plan) -> Result<Measured> {
        let t = topology(sys, Sides::shared(plan.pin)?, 1, Receive::Stall)?;
        let before = settled_rss()?;
        let peak = RssPeak::start(Duration::from_millis(2));
        let (sender, window) = (t.star.sender.clone(), plan.stall_window);
        let accepted = t.sides.sender.run(async move {
            let payload = incompressible(STALL_PAYLOAD);
            let end = Instant::now() + window;
            let mut n = 0u64;
            while Instant::now() < end {
                match tokio::time::timeout(BLOCKED, sender.send(0, payload.clone())).await {
                    Ok(r) => r?,
                    Err(_) => break,
                }
                n += 1;
            }
            anyhow::Ok(n)
        })??;
        let peak = peak.finish();
        drop(t);
        let mib = |b: f64| b / (1024.0 * 1024.0);
        let mut m = Measured::default();
        m.figure("stall-peak", mib(peak.saturating_sub(before) as f64));
        m.figure(
            "stall-accepted",
            mib((accepted * STALL_PAYLOAD as u64) as f64),
        );
        Ok(m)
    }
}

/// Status convergence for 32 nodes, chainmesh only (the other systems have no equivalent):
/// a 32-node full mesh with the default `timers.status_interval` (1 s); the steady-state
/// status traffic per node, then the time from `set_app_status` on node 0 until all 31
/// others hold the new version, once per repetition.
pub fn status_convergence(sys: &crate::chainmesh::Chainmesh, plan: &Plan) -> Result<Measured> {
    let rt = shared_runtime("status", plan)?;
    // A full run measures over 31 s: one whole refresh cycle of the engine (it re-announces
    // every 30 intervals even when nothing changed). A quick run's 5 s may miss it.
    let window = if plan.quick {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(31)
    };
    let f = sys.status_convergence(&rt, 32, plan.reps.max(3), window)?;
    let mut m = Measured::default();
    for c in f.converge {
        m.figure("status", c * 1e3);
    }
    m.figure("status-engine-bytes", f.engine_bytes);
    m.figure("status-link-bytes", f.link_bytes);
    m.notes.push((
        "status".into(),
        "32-node full mesh (496 links), timers.status_interval 1 s, heartbeats every 5 s".into(),
    ));
    Ok(m)
}
