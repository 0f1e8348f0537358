//! chainmesh side by side with a bare-TLS baseline (the ceiling: chainmesh's own OpenSSL
//! configuration and framing with nothing above it) and rust-libp2p (what most Rust users
//! would reach for), every scenario run on all three in one process, repetitions
//! interleaved.
//!
//! ```text
//! cargo bench --bench side_by_side                 # full run (about 10 minutes after build)
//! cargo bench --bench side_by_side -- --quick      # short run (about 6 minutes on a loaded machine)
//! cargo bench --bench side_by_side -- --only unicast-256,rr1 --systems chainmesh,baseline
//! ```
//!
//! Options: `--quick`; `--reps N`; `--only ID,...` (scenario ids: unicast-256, unicast-4k,
//! bulk, rr1, rr16, rr128, priority, relay-unicast, relay-rr, relay-16m, broadcast,
//! handshakes, idle-memory, stall, status); `--systems
//! chainmesh,baseline,libp2p`; `--no-pin` (leave threads unpinned); `--messages N` (stream
//! repetitions send exactly N messages, however long it takes: for profiling under
//! valgrind); `--out DIR` (default
//! `target/bench`). The table goes to stdout and to `DIR/side_by_side.md`, the chart to
//! `DIR/side_by_side.svg`; progress goes to stderr. Nothing here asserts a rate: it measures.
//!
//! Layout: `side_by_side/harness.rs` (the interface the systems implement, runtimes, CPU and
//! memory readings; the allocator and RSS are in `common/memory.rs`), `scenarios.rs` (each
//! scenario written once), one file per system, `priority.rs` (a priority request behind
//! bulk traffic), `relay.rs` (relayed paths, chainmesh only; its 16 MiB row runs the relay as
//! a second process of this binary), and `report.rs` (metrics, targets, table, chart).

#[path = "side_by_side/baseline.rs"]
mod baseline;
#[path = "side_by_side/chainmesh.rs"]
mod chainmesh;
#[path = "side_by_side/flow.rs"]
mod flow;
#[path = "side_by_side/harness.rs"]
mod harness;
#[path = "side_by_side/libp2p.rs"]
mod libp2p;
#[path = "common/memory.rs"]
mod memory;
#[path = "side_by_side/priority.rs"]
mod priority;
#[path = "side_by_side/relay.rs"]
mod relay;
#[path = "side_by_side/report.rs"]
mod report;
#[path = "side_by_side/scenarios.rs"]
mod scenarios;

use std::path::PathBuf;
use std::time::Instant;

use ::chainmesh::identity::Curve;
use anyhow::{bail, Context as _, Result};

use report::{Results, SystemId};
use scenarios::{
    compare, Broadcast, Contenders, Handshakes, IdleMemory, Plan, RoundTrips, Stall, Stream,
};

/// Command-line options.
struct Options {
    quick: bool,
    reps: Option<usize>,
    messages: Option<u64>,
    only: Option<Vec<String>>,
    systems: Vec<SystemId>,
    pin: bool,
    out: PathBuf,
}

impl Options {
    fn parse(args: impl Iterator<Item = String>) -> Result<Options> {
        let mut o = Options {
            quick: false,
            reps: None,
            messages: None,
            only: None,
            systems: SystemId::ALL.to_vec(),
            pin: true,
            out: default_out_dir(),
        };
        let mut args = args.peekable();
        while let Some(a) = args.next() {
            let mut value =
                |name: &str| args.next().with_context(|| format!("{name} needs a value"));
            match a.as_str() {
                "--quick" => o.quick = true,
                "--no-pin" => o.pin = false,
                "--reps" => o.reps = Some(value("--reps")?.parse().context("--reps")?),
                "--messages" => {
                    o.messages = Some(value("--messages")?.parse().context("--messages")?)
                }
                "--only" => o.only = Some(value("--only")?.split(',').map(str::to_owned).collect()),
                "--out" => o.out = PathBuf::from(value("--out")?),
                "--systems" => {
                    let list = value("--systems")?;
                    o.systems = Vec::new();
                    for name in list.split(',') {
                        match SystemId::ALL.iter().find(|s| s.short() == name) {
                            Some(s) => o.systems.push(*s),
                            None => bail!("unknown system `{name}` (chainmesh, baseline, libp2p)"),
                        }
                    }
                }
                // cargo passes `--bench` to every bench target.
                "--bench" => {}
                other => eprintln!("side_by_side: ignoring unknown argument `{other}`"),
            }
        }
        Ok(o)
    }

    fn wants(&self, scenario: &str) -> bool {
        self.only
            .as_ref()
            .map_or(true, |only| only.iter().any(|s| s == scenario))
    }
}

/// `target/bench` next to the bench binary (`target/release/deps/side_by_side-*`).
fn default_out_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(|t| t.join("bench")))
        .unwrap_or_else(|| PathBuf::from("target/bench"))
}

/// The status-convergence rows: chainmesh only.
fn status_row(who: &Contenders, plan: &Plan, results: &mut Results) {
    if who.enabled.contains(&SystemId::Chainmesh) {
        eprintln!("status: chainmesh");
        match scenarios::status_convergence(&who.chainmesh, plan) {
            Ok(m) => results.record(SystemId::Chainmesh, m),
            Err(e) => results.fail("status", SystemId::Chainmesh, format!("{e:#}")),
        }
    }
    for metric in ["status", "status-engine-bytes", "status-link-bytes"] {
        for other in [SystemId::Baseline, SystemId::Libp2p] {
            results.pending(metric, other, "no equivalent");
        }
    }
}

/// The 1-minute load average: other work on this machine skews every figure.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

fn main() {
    // The relay-16m scenario starts this binary again as its relay process.
    if let Some(config) = std::env::var_os(relay::RELAY_ENV) {
        if let Err(e) = relay::relay_process(std::path::Path::new(&config)) {
            eprintln!("side_by_side relay: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    if let Err(e) = run() {
        eprintln!("side_by_side: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let opts = Options::parse(std::env::args().skip(1))?;
    let plan = Plan::new(opts.quick, opts.pin, opts.reps, opts.messages);
    let curve = Curve::Secp256k1;
    let who = Contenders {
        chainmesh: chainmesh::Chainmesh { curve },
        baseline: baseline::Baseline { curve },
        libp2p: libp2p::Libp2p,
        enabled: opts.systems.clone(),
    };
    let started = Instant::now();
    let load_start = load_average();
    let cpus = harness::available_cpus();
    eprintln!(
        "side_by_side: {} run, {} repetitions, cpus {:?}, pinning {}",
        if plan.quick { "quick" } else { "full" },
        plan.reps,
        cpus,
        if plan.pin && cpus.len() >= 2 {
            "on"
        } else {
            "off"
        }
    );
    let mut results = Results::default();
    let streams = [
        Stream {
            size: 256,
            name: "unicast-256",
            max: |_| u64::MAX,
        },
        Stream {
            size: 4096,
            name: "unicast-4k",
            max: |_| u64::MAX,
        },
        Stream {
            size: 1 << 20,
            name: "bulk",
            max: |p| p.bulk_messages,
        },
    ];
    for s in &streams {
        if opts.wants(s.name) {
            compare(s, &who, &plan, &mut results);
        }
    }
    for on_task in [false, true] {
        for in_flight in [1, 16, 128] {
            let rr = RoundTrips { in_flight, on_task };
            if opts.wants(&RoundTrips::name(in_flight, on_task)) {
                compare(&rr, &who, &plan, &mut results);
            }
        }
    }
    if opts.wants("priority") {
        compare(&priority::Priority, &who, &plan, &mut results);
        priority::single_queue_rows(&mut results);
    }
    let relays = relay::Wanted {
        unicast: opts.wants("relay-unicast"),
        rr: opts.wants("relay-rr"),
        big: opts.wants("relay-16m"),
    };
    if relays.unicast || relays.rr || relays.big {
        relay::relay_rows(&who, &plan, &mut results, &relays);
    }
    if opts.wants("broadcast") {
        compare(&Broadcast { peers: 8 }, &who, &plan, &mut results);
    }
    if opts.wants("handshakes") {
        compare(
            &Handshakes {
                metric: "handshakes",
            },
            &who,
            &plan,
            &mut results,
        );
        // The curve decides the handshake cost: the same on prime256v1 (TLS 1.3), where
        // OpenSSL has fast P-256 code. rust-libp2p has no such choice and is not run again.
        let p256 = Contenders {
            chainmesh: chainmesh::Chainmesh {
                curve: Curve::Prime256v1,
            },
            baseline: baseline::Baseline {
                curve: Curve::Prime256v1,
            },
            libp2p: libp2p::Libp2p,
            enabled: who
                .enabled
                .iter()
                .copied()
                .filter(|s| *s != SystemId::Libp2p)
                .collect(),
        };
        compare(
            &Handshakes {
                metric: "handshakes-p256",
            },
            &p256,
            &plan,
            &mut results,
        );
    }
    if opts.wants("idle-memory") {
        compare(&IdleMemory, &who, &plan, &mut results);
    }
    if opts.wants("stall") {
        compare(&Stall, &who, &plan, &mut results);
    }
    if opts.wants("status") {
        status_row(&who, &plan, &mut results);
    }
    if opts.wants("rate-limit") {
        let chainmesh = who.enabled.contains(&SystemId::Chainmesh);
        flow::rate_limit_row(chainmesh, &plan, &mut results);
    }

    let heading = format!(
        "## chainmesh side by side\n\n{} run, {} repetitions, {:.0} s; {}; certificates on {} \
         (TLS 1.2) unless a row says otherwise; load average {} at the start, {} at the end.",
        if plan.quick { "quick" } else { "full" },
        plan.reps,
        started.elapsed().as_secs_f64(),
        openssl::version::version(),
        curve.name(),
        load_start,
        load_average(),
    );
    let mut metrics = report::metrics();
    metrics.extend(flow::metrics());
    let table = report::markdown(&results, &metrics, &heading);
    println!("\n{table}");
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;
    let md = opts.out.join("side_by_side.md");
    let svg = opts.out.join("side_by_side.svg");
    std::fs::write(&md, &table).with_context(|| format!("writing {}", md.display()))?;
    std::fs::write(
        &svg,
        report::svg(&results, &metrics, "chainmesh side by side"),
    )
    .with_context(|| format!("writing {}", svg.display()))?;
    println!("written: {} and {}", md.display(), svg.display());
    Ok(())
}
