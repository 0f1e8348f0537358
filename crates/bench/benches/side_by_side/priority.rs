//! Priority traffic behind bulk: a 256 B request, 1 in flight, timed on an idle link and
//! again while a stream of 1 MiB messages saturates the same link in the same direction
//! (sent as fast as the sender's queue takes them). What a consensus vote sees while a block
//! is being synced.
//!
//! chainmesh is measured twice in each repetition, on the same nodes: requests to a module in
//! `p2p.priority_modules` (rows `priority-*`, the priority lane) and to a module that is not
//! (rows `priority-single-*`, sharing the bulk queue as every module did before lanes). The
//! baseline has one TLS stream, so its requests queue behind the bulk frames already in its
//! write queue; rust-libp2p opens a yamux substream per request next to the bulk ones.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;

use crate::harness::{wait_until, Class, Sender, Sides, System};
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

/// Row prefixes: the priority module, and (chainmesh only) a module outside the lane.
const LANE: &str = "priority";
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
                classes.push((Class::Ordinary, SINGLE));
            }
            let mut m = Measured::default();
            let mut idle_p99 = Vec::new();
            for &(class, prefix) in &classes {
                let t = timed_requests(sender.clone(), 0, Some(class), 1, idle_window).await?;
                quantiles(&mut m, prefix, "idle", &t);
                idle_p99.push(t.us(0.99));
            }

            let stop = Arc::new(AtomicBool::new(false));
            let first = sink.messages();
            let bulk = tokio::spawn(bulk_stream(sender.clone(), stop.clone()));
            wait_until(DRAIN_TIMEOUT, "the bulk stream to start", || {
                sink.messages() - first >= BULK_STARTED
            })
            .await?;
            let (loaded_from, loaded_start) = (sink.messages(), Instant::now());
            let mut requests = 0u64;
            for (&(class, prefix), idle) in classes.iter().zip(&idle_p99) {
                let t = timed_requests(sender.clone(), 0, Some(class), 1, loaded_window).await?;
                quantiles(&mut m, prefix, "loaded", &t);
                m.figure(format!("{prefix}-ratio"), t.us(0.99) / idle);
                requests += t.sorted_ns.len() as u64;
            }
            let bulk_delivered = (sink.messages() - loaded_from).saturating_sub(requests);
            m.figure(
                "priority-bulk-mbs",
                (bulk_delivered * BULK as u64) as f64 / loaded_start.elapsed().as_secs_f64() / 1e6,
            );
            stop.store(true, Ordering::Relaxed);
            let sent = bulk.await??;
            // Every request was counted by the receiver before it answered.
            wait_until(DRAIN_TIMEOUT, "the bulk stream to drain", || {
                sink.messages() - first >= sent + requests
            })
            .await?;
            anyhow::Ok(m)
        })?
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
    let mut m = Vec::new();
    for (prefix, what) in [
        (LANE, "priority request 256 B, 1 in flight (chainmesh: module in p2p.priority_modules)"),
        (
            SINGLE,
            "priority request 256 B, 1 in flight, single queue (chainmesh: module not in p2p.priority_modules)",
        ),
    ] {
        for (phase, when) in [
            ("idle", "idle link"),
            ("loaded", "1 MiB bulk saturating the link"),
        ] {
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
        let targets: &[Target] = if prefix == LANE {
            &[Target::OwnAtMost(2.0)]
        } else {
            &[]
        };
        m.push(metric(
            &format!("{prefix}-ratio"),
            LANE,
            what,
            "loaded p99 ÷ idle p99",
            Lower,
            targets,
        ));
    }
    m.push(metric(
        "priority-bulk-mbs",
        LANE,
        "priority: the 1 MiB bulk stream while requests are timed",
        "payload MB/s",
        Higher,
        &[],
    ));
    m
}

/// Marks the single-queue rows of the systems that have one queue only.
pub fn single_queue_rows(results: &mut Results) {
    for m in metrics() {
        if m.id.starts_with(SINGLE) {
            for who in [SystemId::Baseline, SystemId::Libp2p] {
                results.pending(&m.id, who, "one class only: see the rows above");
            }
        }
    }
}
