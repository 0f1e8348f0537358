//! What the soak records at each sampling time, per node and in total, and its CSV form: one
//! row per node and one `total` row per time, every column a number (empty when the node
//! could not be read, as while it restarts).

use std::fmt::Write;

use super::admin::AdminSample;
use super::amop::AmopCounts;
use super::report::Counts;
use chainmesh_testkit::procs::procfs::ProcSample;

/// One node at one sampling time.
#[derive(Debug, Clone, Default)]
pub struct NodeSample {
    /// Index of the node.
    pub node: usize,
    /// Its process, when one runs.
    pub pid: Option<u32>,
    /// RSS and descriptors, when `/proc` could be read.
    pub proc_: Option<ProcSample>,
    /// Queue and link gauges, when the admin API answered.
    pub admin: Option<AdminSample>,
    /// Load-generator counters over the whole run.
    pub counts: Counts,
    /// AMOP client counters over the whole run.
    pub amop: AmopCounts,
    /// Times the node was restarted so far.
    pub restarts: u32,
}

/// Every node at one sampling time.
#[derive(Debug, Clone, Default)]
pub struct Tick {
    /// Seconds since the network was started.
    pub t_s: f64,
    /// One sample per node, in node order.
    pub nodes: Vec<NodeSample>,
}

impl Tick {
    /// Message counters added up over the nodes.
    pub fn total_counts(&self) -> (Counts, AmopCounts) {
        let mut counts = Counts::default();
        let mut amop = AmopCounts::default();
        for n in &self.nodes {
            counts.add(&n.counts);
            amop.add(&n.amop);
        }
        (counts, amop)
    }

    /// Messages sent of every kind (load generator and AMOP) over the nodes.
    pub fn messages_sent(&self) -> u64 {
        let (c, a) = self.total_counts();
        c.sent()
            .saturating_add(a.sent)
            .saturating_add(a.mc_published)
    }
}

/// The CSV columns, in order.
pub const COLUMNS: &[&str] = &[
    "t_s",
    "node",
    "pid",
    "rss_kb",
    "fds",
    "peers",
    "dropped_out",
    "amop_sessions",
    "amop_queued_bytes",
    "req_sent",
    "req_answered",
    "req_failed",
    "req_lost",
    "req_in_flight",
    "uni_sent",
    "uni_send_failed",
    "uni_received",
    "bc_sent",
    "bc_received",
    "bc_duplicates",
    "amop_sent",
    "amop_acked",
    "amop_no_subscriber",
    "amop_failed",
    "amop_timed_out",
    "amop_errors",
    "amop_lost",
    "amop_mc_published",
    "amop_mc_sent",
    "amop_mc_received",
    "amop_mc_duplicates",
    "restarts",
];

/// The header line, with its newline.
pub fn header() -> String {
    let mut s = COLUMNS.join(",");
    s.push('\n');
    s
}

/// The rows of `tick`: one per node, then `total` (gauges and counters summed over the nodes
/// that could be read).
pub fn rows(tick: &Tick) -> String {
    let mut out = String::new();
    for n in &tick.nodes {
        row(
            &mut out,
            tick.t_s,
            &n.node.to_string(),
            n.pid,
            n.proc_,
            n.admin,
            &n.counts,
            &n.amop,
            n.restarts,
        );
    }
    let proc_ = tick
        .nodes
        .iter()
        .filter_map(|n| n.proc_)
        .reduce(|a, b| ProcSample {
            rss_kb: a.rss_kb.saturating_add(b.rss_kb),
            fds: a.fds.saturating_add(b.fds),
        });
    let admin = tick
        .nodes
        .iter()
        .filter_map(|n| n.admin)
        .reduce(|a, b| AdminSample {
            peers: a.peers.saturating_add(b.peers),
            dropped_out: a.dropped_out.saturating_add(b.dropped_out),
            amop_queued_bytes: a.amop_queued_bytes.saturating_add(b.amop_queued_bytes),
            amop_sessions: a.amop_sessions.saturating_add(b.amop_sessions),
        });
    let (counts, amop) = tick.total_counts();
    let restarts = tick
        .nodes
        .iter()
        .map(|n| n.restarts)
        .fold(0, u32::saturating_add);
    row(
        &mut out, tick.t_s, "total", None, proc_, admin, &counts, &amop, restarts,
    );
    out
}

#[allow(clippy::too_many_arguments)] // one row's columns, from two kinds of line
fn row(
    out: &mut String,
    t_s: f64,
    node: &str,
    pid: Option<u32>,
    proc_: Option<ProcSample>,
    admin: Option<AdminSample>,
    c: &Counts,
    a: &AmopCounts,
    restarts: u32,
) {
    let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
    let values = [
        format!("{t_s:.1}"),
        node.to_owned(),
        opt(pid.map(u64::from)),
        opt(proc_.map(|p| p.rss_kb)),
        opt(proc_.map(|p| p.fds)),
        opt(admin.map(|a| a.peers)),
        opt(admin.map(|a| a.dropped_out)),
        opt(admin.map(|a| a.amop_sessions)),
        opt(admin.map(|a| a.amop_queued_bytes)),
        c.req_sent.to_string(),
        c.req_answered.to_string(),
        c.req_failed_total().to_string(),
        c.req_lost.to_string(),
        c.req_in_flight.to_string(),
        c.uni_sent.to_string(),
        c.uni_send_failed.to_string(),
        c.uni_received.to_string(),
        c.bc_sent.to_string(),
        c.bc_received.to_string(),
        c.bc_duplicates.to_string(),
        a.sent.to_string(),
        a.acked.to_string(),
        a.no_subscriber.to_string(),
        a.failed.to_string(),
        a.timed_out.to_string(),
        a.errors.to_string(),
        a.lost.to_string(),
        a.mc_published.to_string(),
        a.mc_sent.to_string(),
        a.mc_received.to_string(),
        a.mc_duplicates.to_string(),
        restarts.to_string(),
    ];
    debug_assert_eq!(values.len(), COLUMNS.len());
    let _ = writeln!(out, "{}", values.join(","));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick() -> Tick {
        let node = |i: usize, up: bool| NodeSample {
            node: i,
            pid: up.then_some(100 + i as u32),
            proc_: up.then_some(ProcSample {
                rss_kb: 1000,
                fds: 20,
            }),
            admin: up.then_some(AdminSample {
                peers: 4,
                ..AdminSample::default()
            }),
            counts: Counts {
                req_sent: 10,
                ..Counts::default()
            },
            amop: AmopCounts {
                sent: 3,
                ..AmopCounts::default()
            },
            restarts: u32::from(!up),
        };
        Tick {
            t_s: 12.34,
            nodes: vec![node(0, true), node(1, true), node(2, false)],
        }
    }

    fn column(line: &str, name: &str) -> String {
        let i = COLUMNS.iter().position(|c| *c == name).expect("a column");
        line.split(',').nth(i).expect("a value").to_owned()
    }

    #[test]
    fn every_row_has_one_value_per_column() {
        let text = rows(&tick());
        assert_eq!(header().trim_end().split(',').count(), COLUMNS.len());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        for l in &lines {
            assert_eq!(l.split(',').count(), COLUMNS.len(), "{l}");
        }
    }

    #[test]
    fn a_node_that_could_not_be_read_has_empty_gauges_and_its_counters() {
        let text = rows(&tick());
        let down = text.lines().nth(2).expect("node 2");
        assert_eq!(column(down, "node"), "2");
        assert_eq!(column(down, "rss_kb"), "");
        assert_eq!(column(down, "peers"), "");
        assert_eq!(column(down, "req_sent"), "10");
        assert_eq!(column(down, "restarts"), "1");
    }

    #[test]
    fn the_total_row_sums_the_nodes_that_could_be_read() {
        let text = rows(&tick());
        let total = text.lines().last().expect("total");
        assert_eq!(column(total, "t_s"), "12.3");
        assert_eq!(column(total, "node"), "total");
        assert_eq!(column(total, "rss_kb"), "2000");
        assert_eq!(column(total, "fds"), "40");
        assert_eq!(column(total, "peers"), "8");
        assert_eq!(column(total, "req_sent"), "30");
        assert_eq!(column(total, "amop_sent"), "9");
        assert_eq!(tick().messages_sent(), 39);
    }
}
