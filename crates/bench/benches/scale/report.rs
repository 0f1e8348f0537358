//! The scale benchmark's tables: one per topology over the node counts, the growth per node
//! from the smallest to the largest size, and the goals.

use std::fmt::Write as _;
use std::time::Duration;

use chainmesh::routing::ANNOUNCE_INTERVAL;

use super::network::Figures;
use super::topology::Topology;

/// The goal for idle link bytes per node, 128-node sparse network.
const IDLE_GOAL: f64 = 1024.0;

/// The goal for convergence after a node leaves, in routing intervals.
const LEAVE_GOAL: f64 = 3.0;

/// One network size of one topology.
pub struct Row {
    nodes: usize,
    result: Result<(Figures, f64), String>,
}

impl Row {
    /// A measured network and its merge cost in seconds.
    pub fn measured(figures: Figures, merge: f64) -> Row {
        Row {
            nodes: figures.nodes,
            result: Ok((figures, merge)),
        }
    }

    /// A size not measured, and why.
    pub fn skipped(nodes: usize, why: String) -> Row {
        Row {
            nodes,
            result: Err(why),
        }
    }
}

/// Every size of one topology.
pub struct Section {
    /// The topology.
    pub topology: Topology,
    /// One row per size, in run order.
    pub rows: Vec<Row>,
}

/// Milliseconds, and routing intervals in brackets.
fn time(d: Duration) -> String {
    format!(
        "{:.0} ms ({:.2})",
        d.as_secs_f64() * 1e3,
        d.as_secs_f64() / ANNOUNCE_INTERVAL.as_secs_f64()
    )
}

fn kib(b: u64) -> String {
    format!("{:.0} KiB", b as f64 / 1024.0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

/// The report as Markdown.
pub fn render(sections: &[Section], quick: bool, window: Duration, took: Duration) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Scale: {} run, idle window {:.0} s, {:.0} s in all, load average {} at the end\n",
        if quick { "quick" } else { "full" },
        window.as_secs_f64(),
        took.as_secs_f64(),
        load_average()
    );
    let _ = writeln!(
        s,
        "All nodes in one process on 127.0.0.1, TLS 1.2 on secp256k1 certificates (the default curve), \
         default timers (heartbeat 5 s, status interval 1 s; routing announces every {} s). Times \
         in ms with routing intervals ({} s) in brackets. Routes count as converged when \
         every node's table equals the shortest paths over the live links, up to 9 hops \
         (10 is unreachable); statuses when every node holds the current status of every \
         node it reaches. Idle bytes: TLS payload written per node per second (routing, \
         status, heartbeats), status: the status packets' payload among it. RSS: the \
         process's, divided by the nodes; growth: over the process before the network \
         started. Merge: one received neighbour list that changes a link, stored and the \
         routes recomputed, in the pure table of node 0.\n",
        ANNOUNCE_INTERVAL.as_secs(),
        ANNOUNCE_INTERVAL.as_secs()
    );
    for sec in sections {
        let _ = writeln!(s, "## {}\n", sec.topology.name());
        let _ = writeln!(
            s,
            "| nodes | links | routes up | statuses up | routes after leave | statuses after \
             leave | idle B/s per node | of it status | RSS per node | RSS growth per node | \
             merge |"
        );
        let _ = writeln!(
            s,
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for row in &sec.rows {
            match &row.result {
                Ok((f, merge)) => {
                    let _ = writeln!(
                        s,
                        "| {} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {} | {} | {:.1} µs |",
                        f.nodes,
                        f.links,
                        time(f.routes_start),
                        time(f.statuses_start),
                        time(f.routes_leave),
                        time(f.statuses_leave),
                        f.idle_link,
                        f.idle_status,
                        kib(f.rss_per_node),
                        kib(f.rss_growth_per_node),
                        merge * 1e6
                    );
                }
                Err(why) => {
                    let _ = writeln!(s, "| {} | | {why} | | | | | | | | |", row.nodes);
                }
            }
        }
        growth(&mut s, sec);
        s.push('\n');
    }
    goals(&mut s, sections);
    s
}

/// Per-node growth between the smallest and the largest size measured.
fn growth(s: &mut String, sec: &Section) {
    let measured: Vec<&(Figures, f64)> = sec
        .rows
        .iter()
        .filter_map(|r| r.result.as_ref().ok())
        .collect();
    let (Some(first), Some(last)) = (measured.first(), measured.last()) else {
        return;
    };
    if first.0.nodes == last.0.nodes {
        return;
    }
    let ratio = |a: f64, b: f64| if a > 0.0 { b / a } else { f64::NAN };
    let _ = writeln!(
        s,
        "\nPer node, {} to {} nodes (×{:.0} the nodes): idle bytes ×{:.1}, RSS growth ×{:.1}, \
         merge ×{:.1}, routes after leave ×{:.1}.",
        first.0.nodes,
        last.0.nodes,
        ratio(first.0.nodes as f64, last.0.nodes as f64),
        ratio(first.0.idle_link, last.0.idle_link),
        ratio(
            first.0.rss_growth_per_node as f64,
            last.0.rss_growth_per_node as f64
        ),
        ratio(first.1, last.1),
        ratio(
            first.0.routes_leave.as_secs_f64(),
            last.0.routes_leave.as_secs_f64()
        ),
    );
}

/// The goals, on the 128-node sparse network if it ran.
fn goals(s: &mut String, sections: &[Section]) {
    let row = sections
        .iter()
        .filter(|sec| sec.topology == Topology::Sparse)
        .flat_map(|sec| &sec.rows)
        .filter_map(|r| r.result.as_ref().ok())
        .find(|(f, _)| f.nodes == 128);
    let _ = writeln!(s, "## Goals (128-node sparse network)\n");
    let Some((f, _)) = row else {
        let _ = writeln!(s, "Not measured in this run.");
        return;
    };
    let verdict = |ok: bool| if ok { "met" } else { "missed" };
    let leave =
        f.routes_leave.max(f.statuses_leave).as_secs_f64() / ANNOUNCE_INTERVAL.as_secs_f64();
    let _ = writeln!(
        s,
        "- idle link bytes per node {:.0} B/s, goal <= {IDLE_GOAL:.0} B/s: {}",
        f.idle_link,
        verdict(f.idle_link <= IDLE_GOAL)
    );
    let _ = writeln!(
        s,
        "- converged {leave:.2} routing intervals after a node left (routes and statuses), \
         goal <= {LEAVE_GOAL:.0}: {}",
        verdict(leave <= LEAVE_GOAL)
    );
}
