//! The load generator of `chainmesh node --load SPEC --load-report FILE`: steady requests,
//! unicasts and broadcasts from this node to random reachable nodes, the module that
//! answers and counts other nodes' load, and a JSON-lines report of the counters (see
//! `chainmesh_testkit::procs::LoadReport` for the format).
//!
//! Parts, by job: [`spec`] (the SPEC, pure), [`traffic`] (the senders), [`receipts`] (the
//! receivers) and [`report`] (the counters and the report writer).

mod receipts;
mod report;
mod spec;
mod traffic;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use chainmesh::node::NodeHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

pub use spec::LoadSpec;

use report::{Counters, Reporter};
use traffic::{Traffic, LOST_MARGIN};

/// A running load generator; [`finish`](Self::finish) stops it.
pub struct LoadGen {
    stop: CancellationToken,
    traffic: Arc<Traffic>,
    reporter: tokio::task::JoinHandle<Reporter>,
    counters: Arc<Counters>,
    drain_limit: Duration,
}

impl LoadGen {
    /// Registers the load module on `node`, starts sending what `spec` says and appends a
    /// report line to `report` every `interval`.
    pub fn start(
        node: &NodeHandle,
        spec: LoadSpec,
        report: &Path,
        interval: Duration,
    ) -> anyhow::Result<LoadGen> {
        let group = match spec
            .group
            .clone()
            .or_else(|| node.groups().into_iter().next())
        {
            Some(g) => g,
            None if spec.broadcasts > 0.0 => {
                bail!("--load: broadcasts need a group: set group= or p2p.groups")
            }
            None => String::new(),
        };
        let incarnation: u64 = rand::random();
        let reporter = Reporter::open(report, node.clone(), incarnation)?;
        let counters = Arc::new(Counters::default());
        receipts::spawn(node, spec.module, counters.clone());
        let drain_limit = spec.request_timeout + 2 * LOST_MARGIN;
        let traffic = Traffic::new(node.clone(), spec, group, incarnation, counters.clone());
        let stop = CancellationToken::new();
        traffic.spawn(&stop);
        let reporter = tokio::spawn(report_every(
            interval,
            reporter,
            counters.clone(),
            traffic.clone(),
            stop.clone(),
        ));
        Ok(LoadGen {
            stop,
            traffic,
            reporter,
            counters,
            drain_limit,
        })
    }

    /// Stops sending, waits for the requests outstanding to resolve, and writes the final
    /// report line. The node keeps answering other nodes' load meanwhile.
    pub async fn finish(self) {
        self.stop.cancel();
        // Each request ends by its own deadline; the bound only guards against a bug.
        let _ = tokio::time::timeout(self.drain_limit, self.traffic.drain()).await;
        if let Ok(mut reporter) = self.reporter.await {
            let line = reporter.line(&self.counters, self.traffic.in_flight(), true);
            reporter.write(&line);
        }
    }
}

/// Writes a line every `interval` until `stop`, then hands the reporter back.
async fn report_every(
    interval: Duration,
    mut reporter: Reporter,
    counters: Arc<Counters>,
    traffic: Arc<Traffic>,
    stop: CancellationToken,
) -> Reporter {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return reporter,
            _ = ticks.tick() => {
                let line = reporter.line(&counters, traffic.in_flight(), false);
                reporter.write(&line);
            }
        }
    }
}
