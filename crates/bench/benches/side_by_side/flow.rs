//! The rate-limit rows, chainmesh only (the other systems have no bandwidth limit): node 0
//! streams 64 KiB messages to node 1 with `flow_control.total_outgoing_bytes_per_sec` = R,
//! and the receiver's count of payload bytes over the measuring window, divided by R, says
//! how closely the limit holds. The window is 10 s in a full run, 2.5 s in a quick one; the
//! bucket's initial burst is sent first and not measured.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use bytes::Bytes;
use chainmesh::config::{Config, FlowConfig};
use chainmesh_testkit::{LocalNet, LocalNetOptions};

use crate::report::{Better, Metric, Results, SystemId, Target};
use crate::scenarios::{incompressible, Measured, Plan};

/// The limit R: 16 MiB/s.
const RATE: u64 = 16 << 20;
const PAYLOAD: usize = 64 * 1024;
const MODULE: u16 = 0x0b0c;
/// The bucket's window: a burst of R / 10.
const WINDOW: Duration = Duration::from_millis(100);
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

fn limited(i: usize, c: &mut Config) {
    if i == 0 {
        c.flow_control = FlowConfig {
            enable: true,
            time_window: WINDOW,
            total_outgoing_bytes_per_sec: RATE,
            ..FlowConfig::default()
        };
    }
}

/// The rows, for the table.
pub fn metrics() -> Vec<Metric> {
    let what = "rate limit, R = 16 MiB/s total, one stream of 64 KiB messages".to_string();
    vec![
        Metric {
            id: "rate-limit-ratio".into(),
            scenario: "rate-limit".into(),
            what: what.clone(),
            figure: "measured / R (payload bytes)",
            better: Better::Higher,
            targets: vec![Target::OwnAtMost(1.05)],
        },
        Metric {
            id: "rate-limit-mbs".into(),
            scenario: "rate-limit".into(),
            what,
            figure: "payload MB/s received",
            better: Better::Higher,
            targets: vec![],
        },
    ]
}

/// Runs the rate-limit repetitions on chainmesh (when selected) and marks the others as
/// having no equivalent.
pub fn rate_limit_row(chainmesh: bool, plan: &Plan, results: &mut Results) {
    if chainmesh {
        eprintln!("rate-limit: chainmesh");
        if let Err(e) = run(plan, results) {
            results.fail("rate-limit", SystemId::Chainmesh, format!("{e:#}"));
        }
    }
    for metric in ["rate-limit-ratio", "rate-limit-mbs"] {
        for other in [SystemId::Baseline, SystemId::Libp2p] {
            results.pending(metric, other, "no bandwidth limit");
        }
    }
}

fn run(plan: &Plan, results: &mut Results) -> Result<()> {
    let window = if plan.quick {
        Duration::from_millis(2500)
    } else {
        Duration::from_secs(10)
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("building the runtime")?;
    rt.block_on(async {
        let net = LocalNet::start(LocalNetOptions {
            tweak: Some(limited),
            ..LocalNetOptions::for_traffic(2)
        })
        .await
        .context("starting two nodes")?;
        net.connect(0, 1);
        if !net.wait_for(SETUP_TIMEOUT, LocalNet::is_full_mesh).await {
            bail!("the two nodes did not connect");
        }
        for rep in 0..plan.reps {
            let m = repetition(&net, window).await?;
            let shown = m.figures.first().map_or(0.0, |f| f.1);
            eprintln!(
                "  chainmesh rate-limit rep {}/{}: ratio={shown:.4}",
                rep + 1,
                plan.reps
            );
            results.record(SystemId::Chainmesh, m);
        }
        net.shutdown().await;
        Ok(())
    })
}

/// One measuring window: sends as fast as the limit lets `send` return, counts what the
/// receiver gets inside the window.
async fn repetition(net: &LocalNet, window: Duration) -> Result<Measured> {
    let (a, b) = (net.handle(0), net.handle(1));
    let mut rx = b.register(MODULE, 1024);
    let counter = tokio::spawn(async move {
        let mut arrivals = Vec::new();
        while let Some(m) = rx.recv().await {
            if m.payload.is_empty() {
                break;
            }
            arrivals.push((Instant::now(), m.payload.len()));
        }
        arrivals
    });
    let payload = incompressible(PAYLOAD);
    let to = b.node_id();
    // The bucket may hold a burst (it starts full, and refills between repetitions):
    // spend it before measuring.
    let settled = Instant::now() + 5 * WINDOW;
    while Instant::now() < settled {
        a.send(to, MODULE, payload.clone()).await?;
    }
    let start = Instant::now();
    let end = start + window;
    while Instant::now() < end {
        a.send(to, MODULE, payload.clone()).await?;
    }
    a.send(to, MODULE, Bytes::new()).await?;
    let arrivals = tokio::time::timeout(SETUP_TIMEOUT, counter)
        .await
        .context("the receiver did not get the end marker")??;
    let bytes: usize = arrivals
        .iter()
        .filter(|(t, _)| *t >= start && *t < end)
        .map(|(_, n)| n)
        .sum();
    let rate = bytes as f64 / window.as_secs_f64();
    let mut m = Measured::default();
    m.figures
        .push(("rate-limit-ratio".into(), rate / RATE as f64));
    m.figures.push(("rate-limit-mbs".into(), rate / 1e6));
    Ok(m)
}
