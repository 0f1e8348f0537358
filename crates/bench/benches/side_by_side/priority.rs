//! Priority traffic behind bulk: a 256 B request, 1 in flight, timed on an idle link and
//! again while a stream of 1 MiB messages saturates the same link in the same direction.
//! What a consensus vote sees while a block is being synced.
//!
//! The link is saturated twice. In the loaded phase the bulk stream goes as fast as the
//! sender's queue takes it, so on loopback the two cores are the bottleneck, not the link.
//! In the limited phase (chainmesh only) the sender's per-link bandwidth limit holds the
//! stream to [`LINK_RATE`], as a 1 Gbit/s link would, with the priority modules exempt from
//! it (`flow_control.modules_without_limit`, as FISCO BCOS exempts consensus).
//!
//! chainmesh is measured three times in each phase, on the same nodes: requests to a module
//! in `p2p.priority_modules` (rows `priority-*`, the priority lane), to one that is also
//! answered on the session task (rows `priority-on-task-*`, `NodeHandle::register_handler`,
//! as a consensus engine would answer its votes), and to a module that is not a priority
//! module (rows `priority-single-*`, sharing the bulk queue as every module did before
//! lanes). The baseline has one TLS stream, so its requests queue behind the bulk frames
//! already in its write queue; rust-libp2p opens a yamux substream per request next to the
//! bulk ones.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;

use crate::harness::{wait_until, Class, Sender, Sides, Sink, System};
use crate::report::{metric, Better, Metric, Results, SystemId, Target};
use crate::scenarios::{
    incompressible, timed_requests, topology, Measured, Plan, Scenario, Timed, Topology,
    DRAIN_TIMEOUT,
};

/// Bulk message size.
const BULK: usize = 1 << 20;
/// Bulk messages delivered before the loaded measurement starts: by then the sender's queue
/// is full and the link busy.
const BULK_STARTED: u64 = 4;
/// The loaded window is this many times the plan's window: requests are slower there, and
/// the p99 needs samples.
const LOADED_WINDOWS: u32 = 5;

/// The priority scenario (`--only priority`).
pub struct Priority;

/// Row prefixes: the priority module, and (chainmesh only) one answered on the session task
/// and a module outside the lane.
const LANE: &str = "priority";
const ON_TASK: &str = "priority-on-task";
const SINGLE: &str = "priority-single";

impl Scenario for Priority {
    type Env<S: System> = Topology<S>;

    fn id(&self) -> String {
        LANE.into()
    }

    fn setup<S: System>(&self, sys: &S, plan: &Plan) -> Result<Topology<S>> {
        topology(
            sys,
            Sides::shared(plan.pin)?,
            1,
            crate::harness::Receive::Serve,
        )
    }

    fn placement<S: System>(&self, env: &Topology<S>) -> String {
        env.sides.placement.clone()
    }

    fn run<S: System>(&self, _: &S, env: &mut Topology<S>, plan: &Plan) -> Result<Measured> {
        let (sender, sink) = (env.star.sender.clone(), env.star.sink.clone());
        let (idle_window, loaded_window) = (plan.window, plan.window * LOADED_WINDOWS);
        env.sides.sender.run(async move {
            let mut classes = vec![(Class::Priority, LANE)];
            if sender.has_classes() {
                classes.push((Class::PriorityOnTask, ON_TASK));
                classes.push((Class::Ordinary, SINGLE));
            }
            let mut m = Measured::default();
            let mut idle_p99 = Vec::new();
            for &(class, prefix) in &classes {
                let t = timed_requests(sender.clone(), 0, Some(class), 1, idle_window).await?;
                quantiles(&mut m, prefix, "idle", &t);
                idle_p99.push(t.us(0.99));
            }
            let phase = Phase {
                classes: &classes,
                idle_p99: &idle_p99,
                window: loaded_window,
            };
            phase.run(&sender, &sink, LOADED, &mut m).await?;
            if sender.limit_links(Some(LINK_RATE)) {
                let limited = phase.run(&sender, &sink, LIMITED, &mut m).await;
                sender.limit_links(None);
                limited?;
            }
            anyhow::Ok(m)
        })?
    }
}

/// The phase where the CPU is the bottleneck: the bulk stream as fast as both nodes go.
const LOADED: &str = "loaded";
/// The phase where the link is: the bulk stream held to [`LINK_RATE`] by the sender's
/// per-link bandwidth limit, the priority modules exempt from it.
const LIMITED: &str = "limited";
/// The limited phase's link: 100 MB/s, about what a 1 Gbit/s link carries.
const LINK_RATE: u64 = 100_000_000;

/// Timed requests of each class while a bulk stream runs.
struct Phase<'a> {
    classes: &'a [(Class, &'static str)],
    /// Per class, the p99 on the idle link.
    idle_p99: &'a [f64],
    window: std::time::Duration,
}

impl Phase<'_> {
    /// Starts the bulk stream, times each class in turn, stops the stream and waits until
    /// everything sent has arrived. Rows `{prefix}-{name}-*`, the ratio to the idle p99 and
    /// the bulk stream's rate meanwhile.
    async fn run<T: Sender>(
        &self,
        sender: &Arc<T>,
        sink: &Arc<Sink>,
        name: &str,
        m: &mut Measured,
    ) -> Result<()> {
        let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
        let first = sink.messages();
        let bulk = tokio::spawn(bulk_stream(sender.clone(), stop.0.clone()));
        wait_until(DRAIN_TIMEOUT, "the bulk stream to start", || {
            sink.messages() - first >= BULK_STARTED
        })
        .await?;
        let (loaded_from, loaded_start) = (sink.messages(), Instant::now());
        let timed = self.time_classes(sender, name, m).await;
        let (bulk_delivered, loaded_for) = (sink.messages() - loaded_from, loaded_start.elapsed());
        drop(stop);
        let sent = bulk.await??;
        let requests = timed?;
        m.figure(
            bulk_id(name),
            (bulk_delivered.saturating_sub(requests) * BULK as u64) as f64
                / loaded_for.as_secs_f64()
                / 1e6,
        );
        // Every request was counted by the receiver before it answered.
        wait_until(DRAIN_TIMEOUT, "the bulk stream to drain", || {
            sink.messages() - first >= sent + requests
        })
        .await
    }

    /// Times each class in turn for the phase's window; rows `{prefix}-{name}-*` and the
    /// ratio to the idle p99. Returns how many requests were answered.
    async fn time_classes<T: Sender>(
        &self,
        sender: &Arc<T>,
        name: &str,
        m: &mut Measured,
    ) -> Result<u64> {
        let mut requests = 0u64;
        for (&(class, prefix), idle) in self.classes.iter().zip(self.idle_p99) {
            let t = timed_requests(sender.clone(), 0, Some(class), 1, self.window).await?;
            quantiles(m, prefix, name, &t);
            m.figure(ratio_id(prefix, name), t.us(0.99) / idle);
            requests += t.sorted_ns.len() as u64;
        }
        Ok(requests)
    }
}

/// Stops the bulk stream when dropped, so that a phase which fails half-way (a timed
/// request that errs, a stream that never starts) does not leave it running into the next
/// phase or scenario.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The row of loaded p99 ÷ idle p99 (the CPU-bound phase keeps its old id).
fn ratio_id(prefix: &str, phase: &str) -> String {
    if phase == LOADED {
        format!("{prefix}-ratio")
    } else {
        format!("{prefix}-{phase}-ratio")
    }
}

/// The row of the bulk stream's rate during `phase`.
fn bulk_id(phase: &str) -> String {
    if phase == LOADED {
        "priority-bulk-mbs".into()
    } else {
        format!("priority-{phase}-bulk-mbs")
    }
}

/// p50, p99 and p99.9 of `t` as `{prefix}-{phase}-p50` and so on.
fn quantiles(m: &mut Measured, prefix: &str, phase: &str, t: &Timed) {
    for (q, name) in [(0.50, "p50"), (0.99, "p99"), (0.999, "p999")] {
        m.figure(format!("{prefix}-{phase}-{name}"), t.us(q));
    }
}

/// Sends 1 MiB messages to receiver 0 as fast as the sender takes them until `stop`; returns
/// how many it sent.
async fn bulk_stream<T: Sender>(sender: Arc<T>, stop: Arc<AtomicBool>) -> Result<u64> {
    let payload = incompressible(BULK);
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        sender.send(0, payload.clone()).await?;
        sent += 1;
    }
    Ok(sent)
}

/// The rows, in table order.
pub fn metrics() -> Vec<Metric> {
    use Better::*;
    let phases = [
        ("idle", "idle link".to_string()),
        (LOADED, "1 MiB bulk saturating the link".to_string()),
        (
            LIMITED,
            format!(
                "1 MiB bulk saturating a link of {} MB/s (chainmesh: flow_control per link, priority modules exempt)",
                LINK_RATE / 1_000_000
            ),
        ),
    ];
    let mut m = Vec::new();
    for (prefix, what) in [
        (LANE, "priority request 256 B, 1 in flight (chainmesh: module in p2p.priority_modules)"),
        (
            ON_TASK,
            "priority request 256 B, 1 in flight, answered on the session task (chainmesh: module in p2p.priority_modules, register_handler)",
        ),
        (
            SINGLE,
            "priority request 256 B, 1 in flight, single queue (chainmesh: module not in p2p.priority_modules)",
        ),
    ] {
        for (phase, when) in &phases {
            for (q, label) in [
                ("p50", "p50 latency, µs"),
                ("p99", "p99 latency, µs"),
                ("p999", "p99.9 latency, µs"),
            ] {
                m.push(metric(
                    &format!("{prefix}-{phase}-{q}"),
                    LANE,
                    &format!("{what}, {when}"),
                    label,
                    Lower,
                    &[],
                ));
            }
        }
        let targets: &[Target] = if prefix != SINGLE {
            &[Target::OwnAtMost(2.0)]
        } else {
            &[]
        };
        for (phase, when) in &phases[1..] {
            m.push(metric(
                &ratio_id(prefix, phase),
                LANE,
                &format!("{what}, {when}"),
                "loaded p99 ÷ idle p99",
                Lower,
                targets,
            ));
        }
    }
    for (phase, when) in &phases[1..] {
        m.push(metric(
            &bulk_id(phase),
            LANE,
            &format!("priority: the bulk stream while requests are timed, {when}"),
            "payload MB/s",
            Higher,
            &[],
        ));
    }
    m
}

/// Marks the rows of the systems that have one queue only, and the limited-link rows of
/// those without a bandwidth limit.
pub fn single_queue_rows(results: &mut Results) {
    for m in metrics() {
        let why = if m.id.contains(LIMITED) {
            "no bandwidth limit"
        } else if m.id.starts_with(SINGLE) || m.id.starts_with(ON_TASK) {
            "one class only: see the rows above"
        } else {
            continue;
        };
        for who in [SystemId::Baseline, SystemId::Libp2p] {
            results.pending(&m.id, who, why);
        }
    }
}
