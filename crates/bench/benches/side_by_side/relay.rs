//! Relayed paths, chainmesh only (the baseline and rust-libp2p as benchmarked here have no
//! relaying; their rows say n/a).
//!
//! `relay-unicast` and `relay-rr`: four nodes in a line, each dialing only the next, on one
//! 2-worker runtime; node 0 reaches node 1 directly, node 2 through one relay and node 3
//! through two, on routes learnt by the routing protocol (set-up checks that node 0 has one
//! session only). Each repetition measures the three paths in turn, so the ratios to the
//! direct figure come from the same nodes a moment apart.
//!
//! `relay-16m`: one 16 MiB message from one end to the other through a relay that runs as a
//! process of its own (this benchmark binary started again with [`RELAY_ENV`] set), so that
//! the kernel's accounting of that process is the relay's alone: its `VmHWM` is reset
//! (`/proc/PID/clear_refs`, 5) once the routes are up, and read after the delivery.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use chainmesh::config::Config;
use chainmesh::{Node, NodeHandle};

use crate::chainmesh::{config, serve, Chainmesh, ChainmeshSender, MODULE};
use crate::harness::{wait_until, Pinned, Sink, Star};
use crate::report::{metric, Better, Metric, Results, SystemId, Target};
use crate::scenarios::{
    incompressible, pump, shared_runtime, timed_requests, Contenders, Measured, Plan, To,
    DRAIN_TIMEOUT,
};

/// Set in the environment of a relay process: the path of its config file.
pub const RELAY_ENV: &str = "CHAINMESH_BENCH_RELAY_CONFIG";
/// The relayed payload.
const BIG: usize = 16 << 20;
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Destinations of the line's sender: (row name, receiver index = relays on the path).
const PATHS: [(&str, usize); 3] = [("direct", 0), ("1relay", 1), ("2relays", 2)];

/// Which relay scenarios the command line asked for.
pub struct Wanted {
    pub unicast: bool,
    pub rr: bool,
    pub big: bool,
}

impl Wanted {
    fn scenario(&self, id: &str) -> bool {
        match id {
            "relay-unicast" => self.unicast,
            "relay-rr" => self.rr,
            _ => self.big,
        }
    }
}

/// Runs the wanted relay scenarios on chainmesh and records them.
pub fn relay_rows(who: &Contenders, plan: &Plan, results: &mut Results, want: &Wanted) {
    for m in metrics() {
        if want.scenario(&m.scenario) {
            for other in [SystemId::Baseline, SystemId::Libp2p] {
                results.pending(&m.id, other, "n/a: no relays");
            }
        }
    }
    if !who.enabled.contains(&SystemId::Chainmesh) {
        return;
    }
    if want.unicast || want.rr {
        line_rows(&who.chainmesh, plan, results, want);
    }
    if want.big {
        big_rows(&who.chainmesh, plan, results);
    }
}

/// A line of nodes and their runtime; the nodes are dropped first (field order).
struct Line {
    star: Star<ChainmeshSender>,
    rt: Pinned,
}

/// One repetition of a line scenario.
type Measure = fn(&Line, &Plan) -> Result<Measured>;

fn line_rows(sys: &Chainmesh, plan: &Plan, results: &mut Results, want: &Wanted) {
    let setup = || -> Result<Line> {
        let rt = shared_runtime("relay", plan)?;
        let star = sys.line(&rt, 4)?;
        Ok(Line { star, rt })
    };
    let mut scenarios: Vec<(&str, Measure)> = Vec::new();
    if want.unicast {
        scenarios.push(("relay-unicast", unicast));
    }
    if want.rr {
        scenarios.push(("relay-rr", round_trips));
    }
    let line = match setup() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("  chainmesh relay: set-up failed: {e:#}");
            for (id, _) in &scenarios {
                results.fail(id, SystemId::Chainmesh, format!("{e:#}"));
            }
            return;
        }
    };
    for (id, _) in &scenarios {
        results.placement(
            id,
            &format!("one runtime, {} (all 4 nodes)", line.rt.placement),
        );
    }
    for rep in 0..=plan.reps {
        scenarios.retain(|(id, measure)| {
            let label = progress_label(rep, plan);
            let started = Instant::now();
            match measure(&line, plan) {
                Ok(m) => {
                    progress(id, &label, &m, started);
                    if rep > 0 {
                        results.record(SystemId::Chainmesh, m);
                    }
                    true
                }
                Err(e) => {
                    eprintln!("  chainmesh {id} {label}: failed: {e:#}");
                    results.fail(id, SystemId::Chainmesh, format!("{e:#}"));
                    false
                }
            }
        });
    }
}

fn progress_label(rep: usize, plan: &Plan) -> String {
    if rep == 0 {
        "warm-up".into()
    } else {
        format!("rep {rep}/{}", plan.reps)
    }
}

fn progress(id: &str, label: &str, m: &Measured, started: Instant) {
    let shown: Vec<String> = m
        .figures
        .iter()
        .take(3)
        .map(|(k, v)| format!("{k}={}", crate::report::short(*v)))
        .collect();
    eprintln!(
        "  chainmesh {id} {label}: {} ({:.1} s)",
        shown.join(" "),
        started.elapsed().as_secs_f64()
    );
}

/// 256 B one-way messages for one window on each path.
fn unicast(line: &Line, plan: &Plan) -> Result<Measured> {
    let mut m = Measured::default();
    let mut direct = f64::NAN;
    // A profiling run sends exactly `--messages` on each path; the window is then only a
    // safety net.
    let (window, max) = match plan.messages {
        Some(n) => (Duration::from_secs(600), n),
        None => (plan.window, u64::MAX),
    };
    for (name, to) in PATHS {
        let p = line.rt.run(pump(
            line.star.sender.clone(),
            line.star.sink.clone(),
            To::One(to),
            incompressible(crate::scenarios::RR_PAYLOAD),
            window,
            max,
        ))??;
        let rate = p.delivered as f64 / p.elapsed.as_secs_f64();
        m.figure(format!("relay-unicast-{name}"), rate);
        if to == 0 {
            direct = rate;
        } else {
            m.figure(format!("relay-unicast-{name}-ratio"), rate / direct);
        }
    }
    Ok(m)
}

/// 256 B requests, 1 in flight, for one window on each path.
fn round_trips(line: &Line, plan: &Plan) -> Result<Measured> {
    let mut m = Measured::default();
    let mut direct = f64::NAN;
    for (name, to) in PATHS {
        let t = line.rt.run(timed_requests(
            line.star.sender.clone(),
            to,
            None,
            1,
            plan.window,
        ))??;
        m.figure(format!("relay-rr-{name}-rate"), t.rate());
        m.figure(format!("relay-rr-{name}-p50"), t.us(0.50));
        m.figure(format!("relay-rr-{name}-p99"), t.us(0.99));
        if to == 0 {
            direct = t.rate();
        } else {
            m.figure(format!("relay-rr-{name}-ratio"), t.rate() / direct);
        }
    }
    Ok(m)
}

fn big_rows(sys: &Chainmesh, plan: &Plan, results: &mut Results) {
    let id = "relay-16m";
    results.placement(
        id,
        "ends: one runtime, 2 workers pinned as the other rows; relay: its own process, 2 unpinned workers",
    );
    // A fresh relay process each time: nothing left from an earlier transfer in its heap.
    for rep in 1..=plan.reps {
        let label = progress_label(rep, plan);
        let started = Instant::now();
        match big_once(sys, plan) {
            Ok(m) => {
                progress(id, &label, &m, started);
                results.record(SystemId::Chainmesh, m);
            }
            Err(e) => {
                eprintln!("  chainmesh {id} {label}: failed: {e:#}");
                results.fail(id, SystemId::Chainmesh, format!("{e:#}"));
                return;
            }
        }
    }
}

/// Whether `from` reaches `to` at `hops`.
fn reaches(from: &NodeHandle, to: &NodeHandle, hops: u8) -> bool {
    from.reachable_nodes()
        .iter()
        .any(|(id, d)| *id == to.node_id() && *d == hops)
}

/// One 16 MiB message from node 0 to node 2 through a relay process.
fn big_once(sys: &Chainmesh, plan: &Plan) -> Result<Measured> {
    let (dir, generated) = sys.certificates(3)?;
    let relay_config = dir.path().join("relay.toml");
    std::fs::write(&relay_config, config(&generated[1]).to_toml())
        .with_context(|| format!("writing {}", relay_config.display()))?;
    let rt = shared_runtime("relay-16m", plan)?;
    let (cfg_a, cfg_b) = (config(&generated[0]), config(&generated[2]));
    let a = rt.run(Node::start(cfg_a, None))??;
    let b = rt.run(Node::start(cfg_b, None))??;
    let sink = Arc::new(Sink::default());
    rt.spawn(serve(b.handle().register(MODULE, 16), sink.clone()));
    let relay = RelayProcess::spawn(&relay_config)?;

    let (ha, hb, addr) = (a.handle(), b.handle(), relay.addr.clone());
    rt.run(async move {
        ha.peers().add_target(&addr);
        hb.peers().add_target(&addr);
        wait_until(SETUP_TIMEOUT, "routes through the relay process", || {
            reaches(&ha, &hb, 2) && reaches(&hb, &ha, 2)
        })
        .await
    })??;
    let sessions = a.handle().peers().sessions().len();
    if sessions != 1 {
        bail!("the sending end has {sessions} sessions, not 1");
    }
    let idle = relay.status_kb("VmRSS:")?;
    let reset = std::fs::write(format!("/proc/{}/clear_refs", relay.child.id()), "5").is_ok();

    let (ha, dst) = (a.handle(), b.handle().node_id());
    let start = Instant::now();
    rt.run(async move {
        ha.send(dst, MODULE, incompressible(BIG)).await?;
        wait_until(DRAIN_TIMEOUT, "the 16 MiB message to arrive", || {
            sink.messages() >= 1
        })
        .await
    })??;
    let elapsed = start.elapsed();
    let peak = relay.status_kb("VmHWM:")?;
    drop(relay);
    drop((a, b));
    drop(rt);

    let mib = |kb: u64| kb as f64 / 1024.0;
    let mut m = Measured::default();
    m.figure("relay-16m-ms", elapsed.as_secs_f64() * 1e3);
    m.figure("relay-16m-growth", mib(peak.saturating_sub(idle)));
    m.figure("relay-16m-peak", mib(peak));
    m.figure("relay-16m-idle", mib(idle));
    if !reset {
        m.notes.push((
            "relay-16m-growth".into(),
            "the kernel refused to reset VmHWM: the peak includes the relay's start".into(),
        ));
    }
    Ok(m)
}

/// A relay node in a child process. Dropping it kills the process.
struct RelayProcess {
    child: Child,
    /// Its P2P listen address.
    addr: String,
}

impl RelayProcess {
    fn spawn(config: &Path) -> Result<RelayProcess> {
        let exe = std::env::current_exe().context("finding the benchmark binary")?;
        let mut child = Command::new(exe)
            .env(RELAY_ENV, config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the relay process")?;
        let mut line = String::new();
        let read = child
            .stdout
            .take()
            .map(|out| BufReader::new(out).read_line(&mut line));
        let addr = line.trim().to_string();
        if !matches!(read, Some(Ok(n)) if n > 0) || addr.is_empty() {
            let _ = child.kill();
            let status = child.wait();
            bail!("the relay process did not say where it listens ({status:?})");
        }
        Ok(RelayProcess { child, addr })
    }

    /// A `Vm...:` line of the process's `/proc/PID/status`, in KiB.
    fn status_kb(&self, field: &str) -> Result<u64> {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        status
            .lines()
            .find_map(|l| {
                let mut words = l.strip_prefix(field)?.split_whitespace();
                let kb = words.next()?.parse().ok()?;
                (words.next() == Some("kB")).then_some(kb)
            })
            .with_context(|| format!("no {field} line in {path}"))
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The relay process: starts a node from the config at `config`, prints its listen address
/// on stdout, and runs until its stdin closes (the benchmark ended or dropped it).
pub fn relay_process(config: &Path) -> Result<()> {
    let cfg = Config::load(config).with_context(|| format!("loading {}", config.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("building the relay's runtime")?;
    rt.block_on(async move {
        let node = Node::start(cfg, None).await?;
        let mut out = std::io::stdout();
        writeln!(out, "{}", node.handle().listen_addr())?;
        out.flush()?;
        tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new())).await??;
        node.shutdown().await;
        anyhow::Ok(())
    })
}

/// The rows, in table order.
pub fn metrics() -> Vec<Metric> {
    use Better::*;
    let path_text = |name: &str| match name {
        "direct" => "direct (neighbours)",
        "1relay" => "through 1 relay (line of 3)",
        _ => "through 2 relays (line of 4)",
    };
    let mut m = Vec::new();
    for (name, to) in PATHS {
        m.push(metric(
            &format!("relay-unicast-{name}"),
            "relay-unicast",
            &format!("relay: unicast stream 256 B, {}", path_text(name)),
            "messages/s",
            Higher,
            &[],
        ));
        if to > 0 {
            let targets: &[Target] = if to == 1 {
                &[Target::OwnAtLeast(0.45)]
            } else {
                &[]
            };
            m.push(metric(
                &format!("relay-unicast-{name}-ratio"),
                "relay-unicast",
                &format!("relay: unicast stream 256 B, {}", path_text(name)),
                "÷ direct rate",
                Higher,
                targets,
            ));
        }
    }
    for (name, to) in PATHS {
        let what = format!(
            "relay: request/response 256 B, 1 in flight, {}",
            path_text(name)
        );
        for (suffix, figure, better) in [
            ("rate", "round trips/s", Higher),
            ("p50", "p50 latency, µs", Lower),
            ("p99", "p99 latency, µs", Lower),
        ] {
            m.push(metric(
                &format!("relay-rr-{name}-{suffix}"),
                "relay-rr",
                &what,
                figure,
                better,
                &[],
            ));
        }
        if to > 0 {
            m.push(metric(
                &format!("relay-rr-{name}-ratio"),
                "relay-rr",
                &what,
                "÷ direct round trips/s",
                Higher,
                &[],
            ));
        }
    }
    let what = "relay: one 16 MiB message through a relay process";
    m.extend([
        metric(
            "relay-16m-ms",
            "relay-16m",
            what,
            "time to deliver, ms",
            Lower,
            &[],
        ),
        metric(
            "relay-16m-growth",
            "relay-16m",
            what,
            "relay peak RSS above its idle RSS, MiB",
            Lower,
            &[],
        ),
        metric(
            "relay-16m-peak",
            "relay-16m",
            what,
            "relay peak RSS (VmHWM), MiB",
            Lower,
            &[],
        ),
        metric(
            "relay-16m-idle",
            "relay-16m",
            what,
            "relay RSS before the message, MiB",
            Lower,
            &[],
        ),
    ]);
    m
}
