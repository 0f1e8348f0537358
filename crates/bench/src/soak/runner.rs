//! The soak run itself: start the network, drive the load, sample, restart, stop, judge.
//! `examples/soak.rs` (and `scripts/soak`) parse the command line into [`Args`] and call
//! [`run`]; the smoke test calls it for a few seconds.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chainmesh::identity::load_sdk_identity;
use tokio::sync::watch;

use super::amop::{AmopLoad, AmopOptions};
use super::nodes::Nodes;
use super::record::{self, NodeSample, Tick};
use super::report::NodeTally;
use super::schedule::{self, Restart};
use super::summary::Summary;
use super::svg::{Chart, Line, Panel};
use super::{admin, procfs};

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
    /// Load-generator SPEC for every node (`chainmesh node --load SPEC`); empty for none.
    #[arg(long, default_value = "")]
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
    /// RUST_LOG of the nodes (their logs: OUT/net/nodeK/node.log).
    #[arg(long, default_value = "info")]
    pub node_log: String,
}

/// The AMOP topic of the run.
const TOPIC: &str = "soak";
/// How long a node may take after start to link to every other one.
const MESH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a restart waits for the mesh to be whole again (sampling waits meanwhile).
const REJOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// The plot is rewritten this often during the run, so a run cut short still has one.
const PLOT_EVERY: Duration = Duration::from_secs(60);
/// How long the AMOP load's publishes in flight may take to end after it stops publishing.
const DRAIN: Duration = Duration::from_secs(20);

/// Where the run writes what.
struct Outputs {
    csv: std::fs::File,
    svg: PathBuf,
    summary: PathBuf,
}

/// What the runner keeps per node between samples.
struct NodeState {
    tally: NodeTally,
    report: PathBuf,
    report_offset: u64,
    restarts: u32,
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
    // Nodes run in their own directories: the binary's path must not be relative.
    let bin = std::fs::canonicalize(&args.bin).with_context(|| {
        format!(
            "--bin {} (build it: cargo build --release)",
            args.bin.display()
        )
    })?;
    let net_dir = args.out.join("net");
    let _ = std::fs::remove_dir_all(&net_dir);
    let load = args.load.clone();
    let mut nodes = Nodes::init(
        &bin,
        &net_dir,
        args.nodes,
        |_| {
            if load.is_empty() {
                Vec::new()
            } else {
                vec![
                    "--load".into(),
                    load.clone(),
                    "--load-report".into(),
                    "load.jsonl".into(),
                ]
            }
        },
        &args.node_log,
    )?;
    for k in 0..nodes.len() {
        nodes.start(k)?;
    }
    let agent = admin::agent(Duration::from_secs(2));
    let meshed = wait_mesh(&nodes, &agent, MESH_TIMEOUT).await;
    eprintln!(
        "soak: {} nodes up{}; running {} with a sample every {}, warm-up {}, {}",
        nodes.len(),
        meshed.map_or(" (not yet a full mesh)".into(), |d| format!(
            ", full mesh after {:.1} s",
            d.as_secs_f64()
        )),
        humantime::format_duration(args.duration),
        humantime::format_duration(args.interval),
        humantime::format_duration(warmup),
        restart_text(args),
    );

    let mut states: Vec<NodeState> = (0..nodes.len())
        .map(|k| NodeState {
            tally: NodeTally::default(),
            report: nodes.node_dir(k).join("load.jsonl"),
            report_offset: 0,
            restarts: 0,
        })
        .collect();
    let (channel_tx, channel_rx): (Vec<_>, Vec<_>) = (0..nodes.len())
        .map(|k| watch::channel(nodes.channel(k).map(str::to_owned)))
        .unzip();
    let identity = load_sdk_identity(&nodes.sdk_dir()).context("the SDK certificate")?;
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

    let mut out = Outputs {
        csv: std::fs::File::create(args.out.join("soak.csv"))?,
        svg: args.out.join("soak.svg"),
        summary: args.out.join("summary.txt"),
    };
    out.csv.write_all(record::header().as_bytes())?;
    let mut plan = schedule::plan(args.duration, args.restart_every, &args.restart_nodes)
        .into_iter()
        .peekable();
    let mut restarts_done: Vec<(f64, usize)> = Vec::new();
    let mut ticks: Vec<Tick> = Vec::new();
    let started = Instant::now();
    let mut next_sample = started;
    let mut last_plot = started;
    let mut last_status = started;
    loop {
        tokio::time::sleep_until(next_sample.into()).await;
        next_sample += args.interval;
        let elapsed = started.elapsed();
        let tick = sample(&nodes, &mut states, amop.as_ref(), &agent, elapsed).await;
        out.csv.write_all(record::rows(&tick).as_bytes())?;
        out.csv.flush()?;
        ticks.push(tick);
        if last_status.elapsed() >= Duration::from_secs(60) {
            last_status = Instant::now();
            if let Some(t) = ticks.last() {
                eprintln!("{}", status_line(t));
            }
        }
        if last_plot.elapsed() >= PLOT_EVERY {
            last_plot = Instant::now();
            std::fs::write(&out.svg, plot(&ticks, &restarts_done))?;
        }
        while let Some(Restart { node, .. }) = plan.next_if(|r| r.at <= started.elapsed()) {
            let at = started.elapsed().as_secs_f64();
            restart(&mut nodes, node, &channel_tx, &agent).await?;
            if let Some(s) = states.get_mut(node) {
                s.restarts = s.restarts.saturating_add(1);
            }
            restarts_done.push((at, node));
        }
        if elapsed >= args.duration {
            break;
        }
    }

    // The end: let the AMOP load's last publishes end, take the closing sample, then stop the
    // nodes so their load generators write their final counters.
    if let Some(a) = &amop {
        a.stop_publishing();
        let drain_until = Instant::now() + DRAIN;
        while Instant::now() < drain_until && (0..nodes.len()).any(|k| a.counts(k).in_flight() > 0)
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let mut last = sample(
        &nodes,
        &mut states,
        amop.as_ref(),
        &agent,
        started.elapsed(),
    )
    .await;
    drop(amop);
    let stopping = nodes;
    let stopped = tokio::task::spawn_blocking(move || {
        let mut nodes = stopping;
        for k in 0..nodes.len() {
            nodes.terminate(k);
        }
        nodes
    })
    .await?;
    for (k, n) in last.nodes.iter_mut().enumerate() {
        if let Some(s) = states.get_mut(k) {
            read_report(s);
            n.counts = s.tally.total();
        }
    }
    drop(stopped);
    out.csv.write_all(record::rows(&last).as_bytes())?;
    ticks.push(last);
    std::fs::write(&out.svg, plot(&ticks, &restarts_done))?;

    let summary = Summary::new(&ticks, warmup.as_secs_f64());
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
    std::fs::write(&out.summary, &text)?;
    print!("{text}");
    eprintln!(
        "soak: wrote {}, {} and {}",
        args.out.join("soak.csv").display(),
        out.svg.display(),
        out.summary.display()
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

/// Waits until every node has a live link to every other; the time it took, or `None` after
/// `timeout`.
async fn wait_mesh(nodes: &Nodes, agent: &ureq::Agent, timeout: Duration) -> Option<Duration> {
    let started = Instant::now();
    let admins: Vec<String> = (0..nodes.len())
        .filter_map(|k| nodes.admin(k).map(str::to_owned))
        .collect();
    let want = u64::try_from(nodes.len().saturating_sub(1)).unwrap_or(u64::MAX);
    while started.elapsed() < timeout {
        let (agent, admins) = (agent.clone(), admins.clone());
        let whole = tokio::task::spawn_blocking(move || {
            admins
                .iter()
                .all(|a| admin::sample(&agent, a).is_some_and(|s| s.peers >= want))
        })
        .await
        .unwrap_or(false);
        if whole {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// Stops node K, starts it again on its config, and tells its AMOP client where it is.
async fn restart(
    nodes: &mut Nodes,
    k: usize,
    channels: &[watch::Sender<Option<String>>],
    agent: &ureq::Agent,
) -> anyhow::Result<()> {
    let t = Instant::now();
    if let Some(tx) = channels.get(k) {
        tx.send_replace(None);
    }
    tokio::task::block_in_place(|| {
        nodes.terminate(k);
        nodes.start(k)
    })?;
    if let Some(tx) = channels.get(k) {
        tx.send_replace(nodes.channel(k).map(str::to_owned));
    }
    let rejoined = wait_mesh(nodes, agent, REJOIN_TIMEOUT).await;
    eprintln!(
        "soak: restarted node{k} in {:.1} s; {}",
        t.elapsed().as_secs_f64(),
        rejoined.map_or("the mesh was not whole again within 30 s".into(), |d| {
            format!("full mesh again {:.1} s after its start", d.as_secs_f64())
        })
    );
    Ok(())
}

/// Reads the lines node K's load generator appended since the last call.
fn read_report(state: &mut NodeState) {
    let Ok(mut file) = std::fs::File::open(&state.report) else {
        return;
    };
    use std::io::Seek;
    if file
        .seek(std::io::SeekFrom::Start(state.report_offset))
        .is_err()
    {
        return;
    }
    let mut reader = std::io::BufReader::new(file);
    let mut line = String::new();
    while let Ok(n) = reader.read_line(&mut line) {
        // A line still being written has no newline yet: it is read whole next time.
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        state.report_offset = state
            .report_offset
            .saturating_add(u64::try_from(n).unwrap_or(0));
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
            state.tally.observe(&v);
        }
        line.clear();
    }
}

/// Every node now: `/proc`, the admin API, its load report and its AMOP client.
async fn sample(
    nodes: &Nodes,
    states: &mut [NodeState],
    amop: Option<&AmopLoad>,
    agent: &ureq::Agent,
    elapsed: Duration,
) -> Tick {
    let targets: Vec<(Option<u32>, Option<String>)> = (0..nodes.len())
        .map(|k| (nodes.pid(k), nodes.admin(k).map(str::to_owned)))
        .collect();
    let agent = agent.clone();
    let read = tokio::task::spawn_blocking(move || {
        targets
            .into_iter()
            .map(|(pid, addr)| {
                (
                    pid,
                    pid.and_then(procfs::sample),
                    addr.and_then(|a| admin::sample(&agent, &a)),
                )
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let nodes = read
        .into_iter()
        .zip(states.iter_mut())
        .enumerate()
        .map(|(k, ((pid, proc_, admin), state))| {
            read_report(state);
            NodeSample {
                node: k,
                pid,
                proc_,
                admin,
                counts: state.tally.total(),
                amop: amop.map(|a| a.counts(k)).unwrap_or_default(),
                restarts: state.restarts,
            }
        })
        .collect();
    Tick {
        t_s: elapsed.as_secs_f64(),
        nodes,
    }
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

/// The figure: RSS and descriptors per node, the message rate, and queue depths.
fn plot(ticks: &[Tick], restarts: &[(f64, usize)]) -> String {
    let n = ticks.iter().map(|t| t.nodes.len()).max().unwrap_or(0);
    let per_node = |f: &dyn Fn(&NodeSample) -> Option<f64>| -> Vec<Line> {
        (0..n)
            .map(|k| Line {
                label: format!("node{k}"),
                segments: segments(ticks.iter().map(|t| (t.t_s, t.nodes.get(k).and_then(f)))),
            })
            .collect()
    };
    let rate = |f: &dyn Fn(&Tick) -> u64| -> Vec<(f64, f64)> {
        ticks
            .windows(2)
            .filter(|w| w[1].t_s > w[0].t_s)
            .map(|w| {
                let d = f(&w[1]).saturating_sub(f(&w[0]));
                (w[1].t_s, d as f64 / (w[1].t_s - w[0].t_s))
            })
            .collect()
    };
    let queue = |label: &str, f: &dyn Fn(&Tick) -> u64| Line {
        label: label.into(),
        segments: vec![ticks.iter().map(|t| (t.t_s, f(t) as f64)).collect()],
    };
    let chart = Chart {
        title: format!("chainmesh soak: {n} nodes"),
        panels: vec![
            Panel {
                title: "RSS (MiB) per node".into(),
                lines: per_node(&|s| s.proc_.map(|p| p.rss_kb as f64 / 1024.0)),
            },
            Panel {
                title: "open file descriptors per node".into(),
                lines: per_node(&|s| s.proc_.map(|p| p.fds as f64)),
            },
            Panel {
                title: "messages per second, all nodes".into(),
                lines: vec![
                    Line {
                        label: "sent, all kinds".into(),
                        segments: vec![rate(&Tick::messages_sent)],
                    },
                    Line {
                        label: "load generator".into(),
                        segments: vec![rate(&|t| t.total_counts().0.sent())],
                    },
                    Line {
                        label: "AMOP".into(),
                        segments: vec![rate(&|t| {
                            let a = t.total_counts().1;
                            a.sent.saturating_add(a.mc_published)
                        })],
                    },
                ],
            },
            Panel {
                title: "queues, all nodes: in flight (messages), AMOP queued (KiB)".into(),
                lines: vec![
                    queue("requests in flight", &|t| t.total_counts().0.req_in_flight),
                    queue("AMOP in flight", &|t| t.total_counts().1.in_flight()),
                    queue("AMOP queued KiB", &|t| {
                        t.nodes
                            .iter()
                            .filter_map(|n| n.admin)
                            .map(|a| a.amop_queued_bytes / 1024)
                            .sum()
                    }),
                ],
            },
        ],
        markers: restarts
            .iter()
            .map(|(t, k)| (*t, format!("node{k} restarted")))
            .collect(),
    };
    super::svg::render(&chart)
}

/// Runs of consecutive present values.
fn segments(values: impl Iterator<Item = (f64, Option<f64>)>) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for (t, v) in values {
        match (v, out.last_mut()) {
            (Some(v), Some(run)) => run.push((t, v)),
            (None, Some(run)) if !run.is_empty() => out.push(Vec::new()),
            _ => {}
        }
    }
    out.retain(|r| !r.is_empty());
    out
}
