//! The soak run itself: start the network, drive the load, sample, restart, stop, judge.
//! `examples/soak.rs` (and `scripts/soak`) parse the command line into [`Args`] and call
//! [`run`]; the smoke test calls it for a few seconds.
//!
//! The nodes are `chainmesh_testkit::procs` processes with the production timers, each
//! running the load generator and a channel port; the runner adds one AMOP client per node
//! ([`super::amop`]). Every blocking call (processes, `/proc`, the admin API) runs with
//! `block_in_place`, so the AMOP load keeps going on the runtime's other worker meanwhile.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chainmesh::config::{Config, TimersConfig};
use chainmesh::identity::{load_sdk_identity, NetworkCa};
use chainmesh_testkit::procs::{read_reports, ProcNet, ProcNetOptions};
use tokio::sync::watch;
use tokio::task::block_in_place;

use super::admin;
use super::amop::{AmopLoad, AmopOptions};
use super::figure;
use super::record::{self, NodeSample, Tick};
use super::report::Counts;
use super::schedule::{self, Restart};
use super::summary::Summary;
use chainmesh_testkit::procs::procfs;

/// Run a chainmesh network under mixed load for a long time and record RSS, descriptors,
/// queue depths and message counts.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "soak")]
pub struct Args {
    /// How long to run after the network is up (`30m`, `90s`, `1h 30m`).
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Nodes in the network.
    #[arg(long, default_value_t = 5)]
    pub nodes: usize,
    /// Time between two samples.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Samples before this are not judged for flatness (at most a quarter of the run).
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Restart one node this often (`0s`: never).
    #[arg(long, default_value = "3m", value_parser = humantime::parse_duration)]
    pub restart_every: Duration,
    /// Which nodes are restarted, in turn (comma-separated indices).
    #[arg(long, default_value = "4", value_delimiter = ',')]
    pub restart_nodes: Vec<usize>,
    /// Load-generator SPEC of every node (`chainmesh node --load SPEC`: rates per second
    /// for the whole node); empty for none.
    #[arg(
        long,
        default_value = "requests=20,unicasts=20,broadcasts=5,size=256,request_timeout_ms=2000"
    )]
    pub load: String,
    /// AMOP unicasts per second from each node's SDK client.
    #[arg(long, default_value_t = 5.0)]
    pub amop_unicasts: f64,
    /// AMOP multicasts per second from each node's SDK client.
    #[arg(long, default_value_t = 1.0)]
    pub amop_multicasts: f64,
    /// AMOP payload bytes.
    #[arg(long, default_value_t = 256)]
    pub amop_size: usize,
    /// Where the network, the CSV, the plot and the summary go.
    #[arg(long, default_value = "target/soak")]
    pub out: PathBuf,
    /// The chainmesh binary.
    #[arg(long, default_value = "target/release/chainmesh")]
    pub bin: PathBuf,
    /// RUST_LOG of the nodes (their logs: OUT/net/nodeK/config.log).
    #[arg(long, default_value = "info")]
    pub node_log: String,
}

/// The AMOP topic of the run.
const TOPIC: &str = "soak";
/// How long the network may take to be whole: at the start, and after each restart.
const MESH_TIMEOUT: Duration = Duration::from_secs(60);
/// How often each node's load generator appends a report line.
const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// The plot is rewritten this often during the run, so a run cut short still has one.
const PLOT_EVERY: Duration = Duration::from_secs(60);
/// How long the AMOP load's publishes in flight may take to end after it stops publishing.
const DRAIN: Duration = Duration::from_secs(20);

/// Every node's config tweak: a channel port for the AMOP clients.
fn with_channel(_: usize, cfg: &mut Config) {
    cfg.channel.listen = "127.0.0.1:0".into();
}

/// Runs a soak as `args` say and returns its summary (also printed and written to
/// `OUT/summary.txt`).
pub async fn run(args: &Args) -> anyhow::Result<Summary> {
    if args.nodes < 2 {
        bail!("--nodes must be at least 2");
    }
    if let Some(k) = args.restart_nodes.iter().find(|k| **k >= args.nodes) {
        bail!(
            "--restart-nodes: there is no node {k} in {} nodes",
            args.nodes
        );
    }
    if args.interval.is_zero() {
        bail!("--interval must be more than zero");
    }
    let warmup = args.warmup.min(args.duration / 4);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let net_dir = args.out.join("net");
    let _ = std::fs::remove_dir_all(&net_dir);
    // Nodes run in their own directories: the binary's path must not be relative.
    let bin = std::fs::canonicalize(&args.bin).with_context(|| {
        format!(
            "--bin {} (build it: cargo build --release)",
            args.bin.display()
        )
    })?;
    let mut opts = ProcNetOptions::new(bin);
    opts.load = (!args.load.is_empty()).then(|| args.load.clone());
    opts.load_interval = REPORT_INTERVAL;
    opts.timers = TimersConfig::default();
    opts.tweak = Some(with_channel);
    opts.log_filter = args.node_log.clone();
    let mut net = block_in_place(|| ProcNet::new(&net_dir, args.nodes, opts))?;
    let meshed = block_in_place(|| net.wait_whole_mesh(MESH_TIMEOUT))?;
    eprintln!(
        "soak: {} nodes up, mesh whole (links, routes, statuses) after {:.1} s; running {} with a sample every {}, warm-up {}, {}",
        net.len(),
        meshed.as_secs_f64(),
        humantime::format_duration(args.duration),
        humantime::format_duration(args.interval),
        humantime::format_duration(warmup),
        restart_text(args),
    );

    let (channel_tx, channel_rx): (Vec<_>, Vec<_>) = (0..net.len())
        .map(|k| watch::channel(channel(&net, k)))
        .unzip();
    let sdk = net.dir().join("sdk");
    NetworkCa::load(net.dir())
        .and_then(|ca| ca.write_sdk(&sdk))
        .context("an SDK certificate from the network's CA")?;
    let identity = load_sdk_identity(&sdk).context("the SDK certificate")?;
    let amop_on = args.amop_unicasts > 0.0 || args.amop_multicasts > 0.0;
    let amop = amop_on.then(|| {
        AmopLoad::start(
            channel_rx,
            identity,
            AmopOptions {
                topic: TOPIC.into(),
                unicasts_per_sec: args.amop_unicasts,
                multicasts_per_sec: args.amop_multicasts,
                size: args.amop_size,
                timeout: Duration::from_secs(10),
            },
        )
    });

    let csv_path = args.out.join("soak.csv");
    let svg_path = args.out.join("soak.svg");
    let mut csv = std::fs::File::create(&csv_path)
        .with_context(|| format!("creating {}", csv_path.display()))?;
    csv.write_all(record::header().as_bytes())?;
    let mut plan = schedule::plan(args.duration, args.restart_every, &args.restart_nodes)
        .into_iter()
        .peekable();
    let mut restarts: Vec<u32> = vec![0; net.len()];
    let mut markers: Vec<(f64, usize)> = Vec::new();
    let mut rejoins: Vec<Duration> = Vec::new();
    let mut ticks: Vec<Tick> = Vec::new();
    let started = Instant::now();
    let mut next_sample = started;
    let mut last_plot = started;
    let mut last_status = started;
    loop {
        tokio::time::sleep_until(next_sample.into()).await;
        next_sample += args.interval;
        let elapsed = started.elapsed();
        let tick = sample(&net, amop.as_ref(), &restarts, elapsed);
        csv.write_all(record::rows(&tick).as_bytes())?;
        csv.flush()?;
        ticks.push(tick);
        if last_status.elapsed() >= Duration::from_secs(60) {
            last_status = Instant::now();
            if let Some(t) = ticks.last() {
                eprintln!("{}", status_line(t));
            }
        }
        if last_plot.elapsed() >= PLOT_EVERY {
            last_plot = Instant::now();
            write_plot(&svg_path, &ticks, &markers)?;
        }
        while let Some(Restart { node, .. }) = plan.next_if(|r| r.at <= started.elapsed()) {
            markers.push((started.elapsed().as_secs_f64(), node));
            let took = restart(&mut net, node, &channel_tx)?;
            rejoins.push(took);
            if let Some(r) = restarts.get_mut(node) {
                *r = r.saturating_add(1);
            }
        }
        if elapsed >= args.duration {
            break;
        }
    }

    // The end: let the AMOP load's last publishes end, take the closing sample, then stop the
    // nodes so their load generators write their final counters.
    if let Some(a) = &amop {
        a.stop_publishing();
        // A publish spawned just before the stop counts itself as sent when it first runs.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let drain_until = Instant::now() + DRAIN;
        while Instant::now() < drain_until && (0..net.len()).any(|k| a.counts(k).in_flight() > 0) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let mut last = sample(&net, amop.as_ref(), &restarts, started.elapsed());
    drop(amop);
    let clean = block_in_place(|| net.terminate_all())?;
    if !clean {
        eprintln!(
            "soak: a node did not exit cleanly on SIGTERM; see its log in {}",
            net_dir.display()
        );
    }
    for (k, n) in last.nodes.iter_mut().enumerate() {
        n.counts = counts(&net, k);
    }
    csv.write_all(record::rows(&last).as_bytes())?;
    ticks.push(last);
    write_plot(&svg_path, &ticks, &markers)?;

    let mut summary = Summary::new(&ticks, warmup.as_secs_f64());
    summary.rejoins = rejoins;
    let text = format!(
        "soak: {} nodes for {} (sampled every {}, warm-up {}), {}; load {}; AMOP {} unicasts/s and {} multicasts/s per node\n{summary}\n",
        args.nodes,
        humantime::format_duration(args.duration),
        humantime::format_duration(args.interval),
        humantime::format_duration(warmup),
        restart_text(args),
        if args.load.is_empty() { "none" } else { &args.load },
        args.amop_unicasts,
        args.amop_multicasts,
    );
    let summary_path = args.out.join("summary.txt");
    std::fs::write(&summary_path, &text)?;
    print!("{text}");
    eprintln!(
        "soak: wrote {}, {} and {}",
        csv_path.display(),
        svg_path.display(),
        summary_path.display()
    );
    Ok(summary)
}

fn restart_text(args: &Args) -> String {
    if args.restart_every.is_zero() || args.restart_nodes.is_empty() {
        return "no restarts".into();
    }
    let which: Vec<String> = args
        .restart_nodes
        .iter()
        .map(|k| format!("node{k}"))
        .collect();
    format!(
        "restarting {} every {}",
        which.join(", "),
        humantime::format_duration(args.restart_every)
    )
}

/// Node K's channel port while it runs.
fn channel(net: &ProcNet, k: usize) -> Option<String> {
    net.process(k).and_then(|p| p.channel.clone())
}

/// Node K's load-generator counters over all its runs so far (none when its report cannot
/// be read: a line being written is left for the next time).
fn counts(net: &ProcNet, k: usize) -> Counts {
    read_reports(net.report_path(k))
        .map(|r| Counts::of_runs(&r))
        .unwrap_or_default()
}

/// Stops node K with SIGTERM, starts it again on the same P2P port, tells its AMOP client
/// where its channel port is now, and waits for the mesh to be whole; returns how long that
/// took from the restart.
fn restart(
    net: &mut ProcNet,
    k: usize,
    channels: &[watch::Sender<Option<String>>],
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    if let Some(tx) = channels.get(k) {
        tx.send_replace(None);
    }
    block_in_place(|| net.restart(k))?;
    if let Some(tx) = channels.get(k) {
        tx.send_replace(channel(net, k));
    }
    let whole = block_in_place(|| net.wait_whole_mesh(MESH_TIMEOUT));
    let took = t.elapsed();
    match whole {
        Ok(_) => eprintln!(
            "soak: restarted node{k}; mesh whole again {:.1} s after the restart began",
            took.as_secs_f64()
        ),
        Err(e) => eprintln!("soak: restarted node{k}; {e}"),
    }
    Ok(took)
}

/// Every node now: `/proc`, the admin API, its load report and its AMOP client.
fn sample(net: &ProcNet, amop: Option<&AmopLoad>, restarts: &[u32], elapsed: Duration) -> Tick {
    let agent = admin::agent(Duration::from_secs(2));
    let nodes = block_in_place(|| {
        (0..net.len())
            .map(|k| {
                let pid = net.pid(k);
                NodeSample {
                    node: k,
                    pid,
                    proc_: pid.and_then(procfs::sample),
                    admin: net.admin(k).and_then(|a| admin::sample(&agent, &a)),
                    counts: counts(net, k),
                    amop: amop.map(|a| a.counts(k)).unwrap_or_default(),
                    restarts: restarts.get(k).copied().unwrap_or(0),
                }
            })
            .collect()
    });
    Tick {
        t_s: elapsed.as_secs_f64(),
        nodes,
    }
}

fn write_plot(path: &Path, ticks: &[Tick], markers: &[(f64, usize)]) -> anyhow::Result<()> {
    std::fs::write(path, figure::render(ticks, markers))
        .with_context(|| format!("writing {}", path.display()))
}

fn status_line(t: &Tick) -> String {
    let rss: Vec<String> = t
        .nodes
        .iter()
        .map(|n| {
            n.proc_
                .map_or("-".into(), |p| format!("{:.1}", p.rss_kb as f64 / 1024.0))
        })
        .collect();
    let fds: Vec<String> = t
        .nodes
        .iter()
        .map(|n| n.proc_.map_or("-".into(), |p| p.fds.to_string()))
        .collect();
    let (c, a) = t.total_counts();
    format!(
        "soak: {:>6.0} s  RSS MiB {}  fds {}  sent {}  lost {} (AMOP {})  duplicates {} (AMOP {})",
        t.t_s,
        rss.join("/"),
        fds.join("/"),
        t.messages_sent(),
        c.req_lost,
        a.lost.saturating_add(a.mc_lost),
        c.bc_duplicates,
        a.mc_duplicates
    )
}
