//! The fault run of `crates/cli/tests/faults.rs` with default timers and longer phases, as
//! figures: seven `chainmesh node` processes under request, unicast and broadcast load from
//! every node; two killed with SIGKILL and restarted, one frozen with SIGSTOP for twice the
//! idle timeout, one restarted on a new certificate of the same CA. It prints, per fault, how
//! long links, routes and statuses took to be whole again, and the counts of the whole run.
//!
//! Run `cargo build --release` first, then
//! `cargo run --release -p chainmesh-bench --example faults [STEADY_SECONDS]` (default 10:
//! how long the load runs between faults). `CHAINMESH_BIN` names the binary (default
//! `target/release/chainmesh`); `FAULTS_LOAD` the load SPEC of every node.

use std::time::{Duration, Instant};

use anyhow::Context;
use chainmesh::config::TimersConfig;
use chainmesh_testkit::procs::{default_bin, run_faults, FaultPlan, ProcNet, ProcNetOptions};

const NODES: usize = 7;
const LOAD: &str = "requests=50,unicasts=50,broadcasts=10,size=256";

fn main() -> anyhow::Result<()> {
    let steady = match std::env::args().nth(1) {
        Some(s) => s
            .parse()
            .with_context(|| format!("STEADY_SECONDS `{s}` is not a whole number"))?,
        None => 10,
    };
    let load = std::env::var("FAULTS_LOAD").unwrap_or_else(|_| LOAD.into());
    let timers = TimersConfig::default();
    let idle = timers.heartbeat_interval * timers.idle_timeout_intervals;
    let mut opts = ProcNetOptions::new(default_bin());
    opts.timers = timers;
    opts.load = Some(load.clone());
    opts.load_interval = Duration::from_secs(1);
    let dir = tempfile::Builder::new()
        .prefix("chainmesh-faults-")
        .tempdir()?;
    let mut net = ProcNet::new(dir.path(), NODES, opts)?;
    let mut plan = FaultPlan::new(idle, Duration::from_secs(steady));
    plan.whole_timeout = Duration::from_secs(120);
    println!(
        "{NODES} nodes, default timers (idle timeout {idle:?}), load per node `{load}`, \
         {steady} s of load between faults"
    );
    let started = Instant::now();
    let run = run_faults(&mut net, &plan)?;
    println!("run took {:.0?}\n", started.elapsed());

    println!("| fault | links whole | routes whole | statuses whole | mesh whole |");
    println!("|---|---|---|---|---|");
    for s in &run.steps {
        let t = &s.times;
        println!(
            "| {} | {} | {} | {} | {} |",
            s.fault,
            ms(t.links),
            ms(t.routes),
            ms(t.statuses),
            ms(t.whole)
        );
    }

    let t = &run.total;
    let q = &t.requests;
    let failed: Vec<String> = q.failed.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!("\n| count | value |");
    println!("|---|---|");
    println!(
        "| node runs (final report lines) | {} ({}) |",
        t.runs, t.final_lines
    );
    println!("| requests sent | {} |", q.sent);
    println!("| requests answered | {} |", q.answered);
    println!(
        "| requests failed with a typed error | {} ({}) |",
        q.failed_total(),
        if failed.is_empty() {
            "none".into()
        } else {
            failed.join(", ")
        }
    );
    println!("| requests that got neither | {} |", q.lost);
    println!(
        "| requests in flight when their sender was killed | {} |",
        q.in_flight
    );
    println!(
        "| requests skipped (no route, in-flight cap) | {} |",
        q.skipped
    );
    let b = &t.broadcasts;
    println!(
        "| broadcasts sent (copies queued / no route / dropped) | {} ({} / {} / {}) |",
        b.sent, b.targets_queued, b.targets_unreachable, b.targets_dropped
    );
    println!("| broadcasts received | {} |", b.received);
    println!("| broadcasts received twice | {} |", b.duplicates);
    println!(
        "| broadcast copies reported undelivered (their link closed first) | {} |",
        b.undelivered
    );
    let u = &t.unicasts;
    println!(
        "| unicasts sent / refused / received / reported undelivered | {} / {} / {} / {} |",
        u.sent, u.send_failed, u.received, u.undelivered
    );
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}
