//! The end of a soak in a few lines: per node RSS and descriptors at the start (the first
//! sample after warm-up) and at the end, whether they stayed flat ([`super::flat`]), the
//! messages of every kind, the losses, and one verdict line.
//!
//! Only nodes that were never restarted are judged for flatness: a restarted node starts
//! again from an empty process, so its curve says nothing about growth over the run (the
//! nodes that stay up are the ones that saw every reconnect). The verdict passes when every
//! judged node is flat in RSS and descriptors and nothing was lost or delivered twice:
//! requests with neither an answer nor an error, broadcasts received twice, AMOP publishes
//! without an outcome, AMOP multicasts pushed twice, AMOP acks carrying another payload.

use chainmesh_testkit::procs::procfs::ProcSample;
use std::fmt;
use std::time::Duration;

use super::amop::AmopCounts;
use super::flat::{judge, Flatness, Tolerance};
use super::record::Tick;
use super::report::Counts;

/// One node's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSummary {
    /// Index of the node.
    pub node: usize,
    /// Restarts during the run.
    pub restarts: u32,
    /// RSS in KiB at the first sample after warm-up and at the last one.
    pub rss_kb: Option<(u64, u64)>,
    /// Open descriptors at the same two samples.
    pub fds: Option<(u64, u64)>,
    /// The largest RSS seen after warm-up, KiB.
    pub rss_peak_kb: Option<u64>,
    /// The RSS judgement (never-restarted nodes with enough samples).
    pub rss_flat: Option<Flatness>,
    /// The descriptor judgement.
    pub fds_flat: Option<Flatness>,
}

/// The figures of a run and its verdict.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Per node.
    pub nodes: Vec<NodeSummary>,
    /// Load-generator counters over every node and incarnation.
    pub counts: Counts,
    /// AMOP counters over every client.
    pub amop: AmopCounts,
    /// What failed the verdict; empty when it passed.
    pub problems: Vec<String>,
    /// How long the mesh took to be whole again after each restart (the runner fills it).
    pub rejoins: Vec<Duration>,
}

impl Summary {
    /// Summarises `ticks` (in time order) with the first `warmup_s` seconds ignored for
    /// flatness.
    pub fn new(ticks: &[Tick], warmup_s: f64) -> Summary {
        let n = ticks.iter().map(|t| t.nodes.len()).max().unwrap_or(0);
        let steady: Vec<&Tick> = ticks.iter().filter(|t| t.t_s >= warmup_s).collect();
        let mut problems = Vec::new();
        let mut nodes = Vec::new();
        for i in 0..n {
            let read = |f: &dyn Fn(&ProcSample) -> u64| -> Vec<(f64, f64)> {
                ticks
                    .iter()
                    .filter_map(|t| {
                        let p = t.nodes.get(i)?.proc_?;
                        Some((t.t_s, f(&p) as f64))
                    })
                    .collect()
            };
            let first_last = |f: &dyn Fn(&ProcSample) -> u64| {
                let mut vals = steady
                    .iter()
                    .filter_map(|t| t.nodes.get(i).and_then(|s| s.proc_).map(|p| f(&p)));
                let first = vals.next()?;
                Some((first, vals.last().unwrap_or(first)))
            };
            let restarts = ticks
                .last()
                .and_then(|t| t.nodes.get(i))
                .map_or(0, |s| s.restarts);
            let (rss_flat, fds_flat) = if restarts == 0 {
                (
                    judge(&read(&|p| p.rss_kb), warmup_s, Tolerance::RSS_KB),
                    judge(&read(&|p| p.fds), warmup_s, Tolerance::FDS),
                )
            } else {
                (None, None)
            };
            for (what, f) in [("RSS", &rss_flat), ("fds", &fds_flat)] {
                if let Some(f) = f.filter(|f| !f.flat) {
                    problems.push(format!(
                        "node{i} {what} grew: baseline {:.0}, end {:.0}, trend {:+.0}",
                        f.baseline, f.end, f.trend
                    ));
                }
            }
            nodes.push(NodeSummary {
                node: i,
                restarts,
                rss_kb: first_last(&|p| p.rss_kb),
                fds: first_last(&|p| p.fds),
                rss_peak_kb: steady
                    .iter()
                    .filter_map(|t| t.nodes.get(i).and_then(|s| s.proc_).map(|p| p.rss_kb))
                    .max(),
                rss_flat,
                fds_flat,
            });
        }
        if !nodes
            .iter()
            .any(|s| s.rss_flat.is_some() && s.fds_flat.is_some())
        {
            problems.push("no node ran the whole time with enough samples after warm-up".into());
        }
        let (counts, amop) = ticks.last().map(Tick::total_counts).unwrap_or_default();
        let mut loss = |n: u64, what: &str| {
            if n > 0 {
                problems.push(format!("{n} {what}"));
            }
        };
        loss(
            counts.req_lost,
            "requests got neither an answer nor an error",
        );
        loss(counts.bc_duplicates, "broadcasts were received twice");
        loss(amop.lost, "AMOP unicasts got no outcome");
        loss(
            amop.mc_lost,
            "AMOP multicasts got no answer from their node",
        );
        loss(amop.mc_duplicates, "AMOP multicasts were pushed twice");
        loss(amop.bad_acks, "AMOP acks carried another payload");
        Summary {
            nodes,
            counts,
            amop,
            problems,
            rejoins: Vec::new(),
        }
    }

    /// Whether the run passed.
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

fn pair(p: Option<(u64, u64)>, f: fn(u64) -> String) -> (String, String) {
    p.map_or(("-".into(), "-".into()), |(a, b)| (f(a), f(b)))
}

fn judged(f: Option<Flatness>) -> &'static str {
    match f {
        Some(f) if f.flat => "flat",
        Some(_) => "GREW",
        None => "-",
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            out,
            "{:<6} {:>8} {:>11} {:>11} {:>11} {:>9} {:>7} {:>6} {:>6}",
            "node",
            "restarts",
            "RSS start",
            "RSS end",
            "RSS peak",
            "fds start",
            "fds end",
            "RSS",
            "fds"
        )?;
        for n in &self.nodes {
            let (rs, re) = pair(n.rss_kb, mib);
            let (fs, fe) = pair(n.fds, |v| v.to_string());
            writeln!(
                out,
                "{:<6} {:>8} {:>11} {:>11} {:>11} {:>9} {:>7} {:>6} {:>6}",
                format!("node{}", n.node),
                n.restarts,
                rs,
                re,
                n.rss_peak_kb.map_or("-".into(), mib),
                fs,
                fe,
                judged(n.rss_flat),
                judged(n.fds_flat)
            )?;
        }
        let c = &self.counts;
        let failed = c
            .req_failed
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        writeln!(
            out,
            "requests: {} sent, {} answered, {} failed with a typed error{}, {} lost, {} in flight at the end",
            c.req_sent,
            c.req_answered,
            c.req_failed_total(),
            if failed.is_empty() { String::new() } else { format!(" ({failed})") },
            c.req_lost,
            c.req_in_flight
        )?;
        writeln!(
            out,
            "unicasts: {} sent, {} refused at send, {} received",
            c.uni_sent, c.uni_send_failed, c.uni_received
        )?;
        writeln!(
            out,
            "broadcasts: {} sent, {} copies queued, {} copies without a route or dropped at a closing link, {} received, {} duplicates",
            c.bc_sent, c.bc_targets_queued, c.bc_targets_missed, c.bc_received, c.bc_duplicates
        )?;
        writeln!(
            out,
            "queued but not received (on a link that closed under them, around restarts): {} unicasts, {} broadcast copies",
            c.uni_sent.saturating_sub(c.uni_received),
            c.bc_targets_queued.saturating_sub(c.bc_received)
        )?;
        let a = &self.amop;
        writeln!(
            out,
            "AMOP unicasts: {} sent, {} acked, {} no subscriber, {} failed, {} timed out, {} client errors, {} lost, {} bad acks; pushed {} ({} again after a failover)",
            a.sent, a.acked, a.no_subscriber, a.failed, a.timed_out, a.errors, a.lost, a.bad_acks,
            a.uni_received, a.uni_repeats
        )?;
        writeln!(
            out,
            "AMOP multicasts: {} published, {} taken, {} refused, {} lost; pushed {}, {} duplicates; {} client sessions",
            a.mc_published, a.mc_sent, a.mc_failed, a.mc_lost, a.mc_received, a.mc_duplicates, a.connects
        )?;
        if !self.rejoins.is_empty() {
            let mut secs: Vec<f64> = self.rejoins.iter().map(Duration::as_secs_f64).collect();
            secs.sort_by(f64::total_cmp);
            writeln!(
                out,
                "restarts: {}; mesh whole again (links, routes, statuses) after {:.1} s median, {:.1} s at most",
                secs.len(),
                secs[secs.len() / 2],
                secs[secs.len() - 1]
            )?;
        }
        if self.passed() {
            let judged: Vec<String> = self
                .nodes
                .iter()
                .filter(|n| n.rss_flat.is_some())
                .map(|n| format!("node{}", n.node))
                .collect();
            write!(
                out,
                "VERDICT: PASS: RSS and fds flat after warm-up on {}; nothing lost, nothing delivered twice",
                judged.join(", ")
            )
        } else {
            write!(out, "VERDICT: FAIL: {}", self.problems.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::soak::record::NodeSample;

    /// Two nodes sampled every 10 s for 10 minutes; node 1 restarted once, node 0's RSS
    /// given by `rss`.
    fn run(rss: impl Fn(f64) -> u64) -> Vec<Tick> {
        (0u32..=60)
            .map(|i| {
                let t = f64::from(i) * 10.0;
                let sample = |node: usize, rss_kb: u64, restarts: u32| NodeSample {
                    node,
                    pid: Some(1),
                    proc_: Some(ProcSample { rss_kb, fds: 30 }),
                    restarts,
                    counts: Counts {
                        req_sent: u64::from(i),
                        req_answered: u64::from(i),
                        ..Counts::default()
                    },
                    ..NodeSample::default()
                };
                Tick {
                    t_s: t,
                    nodes: vec![
                        sample(0, rss(t), 0),
                        sample(1, 40_000 + u64::from(i) * 1000, u32::from(t > 300.0)),
                    ],
                }
            })
            .collect()
    }

    #[test]
    fn a_flat_lossless_run_passes_judging_only_the_node_never_restarted() {
        let s = Summary::new(&run(|_| 50_000), 120.0);
        assert!(s.passed(), "{s}");
        assert_eq!(s.nodes[0].rss_kb, Some((50_000, 50_000)));
        assert_eq!(s.nodes[0].fds, Some((30, 30)));
        assert!(s.nodes[0].rss_flat.is_some_and(|f| f.flat));
        // Node 1 grew, but it was restarted: reported, not judged.
        assert_eq!(s.nodes[1].restarts, 1);
        assert_eq!(s.nodes[1].rss_flat, None);
        assert_eq!(s.nodes[1].rss_peak_kb, Some(100_000));
        assert_eq!(s.counts.req_sent, 120);
        let text = s.to_string();
        assert!(text.ends_with("VERDICT: PASS: RSS and fds flat after warm-up on node0; nothing lost, nothing delivered twice"), "{text}");
    }

    #[test]
    fn growth_on_a_judged_node_fails_the_verdict() {
        let s = Summary::new(&run(|t| 50_000 + (t * 50.0) as u64), 120.0);
        assert!(!s.passed());
        assert!(
            s.to_string().contains("VERDICT: FAIL: node0 RSS grew"),
            "{s}"
        );
    }

    #[test]
    fn losses_and_duplicates_fail_the_verdict() {
        let mut ticks = run(|_| 50_000);
        if let Some(last) = ticks.last_mut() {
            last.nodes[0].counts.req_lost = 2;
            last.nodes[1].counts.bc_duplicates = 1;
            last.nodes[1].amop.mc_duplicates = 3;
        }
        let s = Summary::new(&ticks, 120.0);
        assert_eq!(s.problems.len(), 3, "{:?}", s.problems);
        assert!(s.problems[0].starts_with("2 requests got neither"));
    }

    #[test]
    fn a_run_too_short_to_judge_does_not_pass() {
        let ticks = run(|_| 50_000);
        let s = Summary::new(&ticks[..14], 120.0);
        assert!(!s.passed());
        assert!(s.problems[0].starts_with("no node ran the whole time"));
    }
}
