//! The figures the benchmark reports, their targets, and the markdown table and SVG chart
//! made from the repetitions.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::harness::Summary;
use crate::scenarios::Measured;

/// The three contenders, in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SystemId {
    Chainmesh,
    Baseline,
    Libp2p,
}

impl SystemId {
    pub const ALL: [SystemId; 3] = [SystemId::Chainmesh, SystemId::Baseline, SystemId::Libp2p];

    pub fn name(self) -> &'static str {
        use crate::harness::System;
        match self {
            SystemId::Chainmesh => crate::chainmesh::Chainmesh::NAME,
            SystemId::Baseline => crate::baseline::Baseline::NAME,
            SystemId::Libp2p => crate::libp2p::Libp2p::NAME,
        }
    }

    pub fn short(self) -> &'static str {
        use crate::harness::System;
        match self {
            SystemId::Chainmesh => crate::chainmesh::Chainmesh::SHORT,
            SystemId::Baseline => crate::baseline::Baseline::SHORT,
            SystemId::Libp2p => crate::libp2p::Libp2p::SHORT,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

/// A goal from the issue, checked on the medians of one run.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// chainmesh / baseline at least this.
    BaselineAtLeast(f64),
    /// chainmesh / baseline at most this.
    BaselineAtMost(f64),
    /// chainmesh / rust-libp2p at least this.
    Libp2pAtLeast(f64),
    /// chainmesh's own figure at most this.
    OwnAtMost(f64),
    /// chainmesh's own figure at least this (a ratio it computes itself).
    OwnAtLeast(f64),
}

impl Target {
    fn text(self) -> String {
        match self {
            Target::BaselineAtLeast(x) => format!("≥ {x} × baseline"),
            Target::BaselineAtMost(x) => format!("≤ {x} × baseline"),
            Target::Libp2pAtLeast(x) => format!("≥ {x} × libp2p"),
            Target::OwnAtMost(x) => format!("≤ {x}"),
            Target::OwnAtLeast(x) => format!("≥ {x}"),
        }
    }

    /// Whether the medians meet the target; `None` when a figure is missing.
    fn met(self, own: Option<f64>, vs_base: Option<f64>, vs_p2p: Option<f64>) -> Option<bool> {
        Some(match self {
            Target::BaselineAtLeast(x) => vs_base? >= x,
            Target::BaselineAtMost(x) => vs_base? <= x,
            Target::Libp2pAtLeast(x) => vs_p2p? >= x,
            Target::OwnAtMost(x) => own? <= x,
            Target::OwnAtLeast(x) => own? >= x,
        })
    }
}

/// One row of the table.
pub struct Metric {
    pub id: String,
    /// The scenario id the figure comes from (for its placement).
    pub scenario: String,
    pub what: String,
    pub figure: &'static str,
    pub better: Better,
    pub targets: Vec<Target>,
}

pub fn metric(
    id: &str,
    scenario: &str,
    what: &str,
    figure: &'static str,
    better: Better,
    targets: &[Target],
) -> Metric {
    Metric {
        id: id.into(),
        scenario: scenario.into(),
        what: what.into(),
        figure,
        better,
        targets: targets.to_vec(),
    }
}

/// Every row, in order.
pub fn metrics() -> Vec<Metric> {
    use Better::*;
    use Target::*;
    let mut m = vec![
        metric(
            "unicast-256-rate",
            "unicast-256",
            "unicast stream, 256 B",
            "messages/s",
            Higher,
            &[BaselineAtLeast(0.6), Libp2pAtLeast(20.0)],
        ),
        metric(
            "unicast-256-mbs",
            "unicast-256",
            "unicast stream, 256 B",
            "payload MB/s",
            Higher,
            &[],
        ),
        metric(
            "unicast-4k-rate",
            "unicast-4k",
            "unicast stream, 4 KiB",
            "messages/s",
            Higher,
            &[],
        ),
        metric(
            "unicast-4k-mbs",
            "unicast-4k",
            "unicast stream, 4 KiB",
            "payload MB/s",
            Higher,
            &[],
        ),
        metric(
            "bulk-mbs",
            "bulk",
            "bulk, 1 MiB messages",
            "payload MB/s",
            Higher,
            &[BaselineAtLeast(0.8)],
        ),
    ];
    for (on_task, n) in [false, true]
        .into_iter()
        .flat_map(|t| [1, 16, 128].map(|n| (t, n)))
    {
        let what = if on_task {
            format!(
                "request/response 256 B, {n} in flight, answered on the session task (chainmesh: register_handler)"
            )
        } else {
            format!("request/response 256 B, {n} in flight")
        };
        let scenario = crate::scenarios::RoundTrips::name(n, on_task);
        let rate_targets: &[Target] = if n == 128 && !on_task {
            &[BaselineAtLeast(0.5), Libp2pAtLeast(20.0)]
        } else {
            &[]
        };
        let p50_targets: &[Target] = if n == 1 && !on_task {
            &[BaselineAtMost(1.5)]
        } else {
            &[]
        };
        m.push(metric(
            &format!("{scenario}-rate"),
            &scenario,
            &what,
            "round trips/s",
            Higher,
            rate_targets,
        ));
        m.push(metric(
            &format!("{scenario}-p50"),
            &scenario,
            &what,
            "p50 latency, µs",
            Lower,
            p50_targets,
        ));
        m.push(metric(
            &format!("{scenario}-p99"),
            &scenario,
            &what,
            "p99 latency, µs",
            Lower,
            &[],
        ));
        m.push(metric(
            &format!("{scenario}-p999"),
            &scenario,
            &what,
            "p99.9 latency, µs",
            Lower,
            &[],
        ));
    }
    m.extend(crate::priority::metrics());
    m.extend(crate::relay::metrics());
    m.extend([
        metric(
            "bcast-rate",
            "broadcast",
            "broadcast to 8 peers, 256 B",
            "messages delivered/s",
            Higher,
            &[],
        ),
        metric(
            "bcast-cpu",
            "broadcast",
            "broadcast to 8 peers, 256 B",
            "sender CPU per delivered message, µs",
            Lower,
            &[],
        ),
        metric(
            "bcast-unicast-cpu",
            "broadcast",
            "unicast to 1 peer, 256 B (reference)",
            "sender CPU per message, µs",
            Lower,
            &[],
        ),
        metric(
            "bcast-cost",
            "broadcast",
            "broadcast to 8 peers, 256 B",
            "per-peer sender cost ÷ unicast's",
            Lower,
            &[OwnAtMost(1.2)],
        ),
        metric(
            "handshakes",
            "handshakes",
            "connection set-up, 32 clients at once (secp256k1, TLS 1.2)",
            "full mutual-TLS handshakes/s",
            Higher,
            &[],
        ),
        metric(
            "handshakes-p256",
            "handshakes-p256",
            "connection set-up, 32 clients at once (prime256v1, TLS 1.3)",
            "full mutual-TLS handshakes/s",
            Higher,
            &[],
        ),
        metric(
            "idle-kib",
            "idle-memory",
            "idle connections (33-node full mesh, 528)",
            "RSS per connection end, KiB",
            Lower,
            &[OwnAtMost(100.0)],
        ),
        metric(
            "stall-peak",
            "stall",
            "sender into a stalled receiver, 64 KiB messages",
            "peak RSS growth, MiB",
            Lower,
            &[],
        ),
        metric(
            "stall-accepted",
            "stall",
            "sender into a stalled receiver, 64 KiB messages",
            "accepted before the sender waits, MiB",
            Lower,
            &[],
        ),
        metric(
            "status",
            "status",
            "status convergence, 32 nodes",
            "time to converge, ms",
            Lower,
            &[],
        ),
        metric(
            "status-engine-bytes",
            "status",
            "status sync, 32 idle nodes, steady state",
            "status payload bytes/s sent per node",
            Lower,
            &[],
        ),
        metric(
            "status-link-bytes",
            "status",
            "status sync, 32 idle nodes, steady state",
            "all link bytes/s written per node (status, routing, heartbeats)",
            Lower,
            &[],
        ),
    ]);
    m
}

/// What one system got on one metric.
#[derive(Debug, Clone)]
enum Cell {
    Values(Vec<f64>),
    Pending(String),
}

/// Everything a run measured.
#[derive(Default)]
pub struct Results {
    cells: HashMap<(String, SystemId), Cell>,
    failures: HashMap<(String, SystemId), String>,
    placements: HashMap<String, String>,
    notes: Vec<(String, SystemId, String)>,
}

impl Results {
    pub fn record(&mut self, who: SystemId, m: Measured) {
        for (metric, v) in m.figures {
            if let Cell::Values(vs) = self
                .cells
                .entry((metric, who))
                .or_insert_with(|| Cell::Values(Vec::new()))
            {
                vs.push(v);
            }
        }
        for (metric, note) in m.notes {
            if !self
                .notes
                .iter()
                .any(|(m, w, n)| *m == metric && *w == who && *n == note)
            {
                self.notes.push((metric, who, note));
            }
        }
    }

    /// Marks every metric of `scenario` failed for `who`.
    pub fn fail(&mut self, scenario: &str, who: SystemId, why: String) {
        self.failures.insert((scenario.to_string(), who), why);
    }

    pub fn pending(&mut self, metric: &str, who: SystemId, why: &str) {
        self.cells
            .insert((metric.to_string(), who), Cell::Pending(why.into()));
    }

    pub fn placement(&mut self, scenario: &str, placement: &str) {
        self.placements
            .entry(scenario.to_string())
            .or_insert_with(|| placement.to_string());
    }

    fn summary(&self, metric: &str, who: SystemId) -> Option<Summary> {
        match self.cells.get(&(metric.to_string(), who))? {
            Cell::Values(v) => Summary::of(v),
            _ => None,
        }
    }

    fn cell_text(&self, m: &Metric, who: SystemId) -> String {
        if let Some(why) = self.failures.get(&(m.scenario.clone(), who)) {
            let first = why.lines().next().unwrap_or_default();
            return format!("failed: {}", first.chars().take(60).collect::<String>());
        }
        match self.cells.get(&(m.id.clone(), who)) {
            Some(Cell::Values(v)) => match Summary::of(v) {
                Some(s) => format!("{} [{}–{}]", short(s.median), short(s.min), short(s.max)),
                None => "–".into(),
            },
            Some(Cell::Pending(why)) => why.clone(),
            None => "–".into(),
        }
    }
}

/// A number in 3-4 significant digits with k/M suffixes.
pub fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1} k", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn ratio(a: Option<Summary>, b: Option<Summary>) -> Option<f64> {
    let (a, b) = (a?.median, b?.median);
    (b != 0.0).then(|| a / b)
}

/// One table row's ratios and verdict, shared by the table and the chart.
struct Row<'a> {
    metric: &'a Metric,
    vs_base: Option<f64>,
    vs_p2p: Option<f64>,
    verdict: String,
}

fn rows<'a>(results: &Results, metrics: &'a [Metric]) -> Vec<Row<'a>> {
    metrics
        .iter()
        .map(|m| {
            let own = results.summary(&m.id, SystemId::Chainmesh);
            let vs_base = ratio(own, results.summary(&m.id, SystemId::Baseline));
            let vs_p2p = ratio(own, results.summary(&m.id, SystemId::Libp2p));
            let verdict = m
                .targets
                .iter()
                .map(|t| {
                    let mark = match t.met(own.map(|s| s.median), vs_base, vs_p2p) {
                        Some(true) => "met",
                        Some(false) => "**missed**",
                        None => "n/a",
                    };
                    format!("{}: {mark}", t.text())
                })
                .collect::<Vec<_>>()
                .join("; ");
            Row {
                metric: m,
                vs_base,
                vs_p2p,
                verdict,
            }
        })
        .collect()
}

/// The markdown report: a heading, the table, notes.
pub fn markdown(results: &Results, metrics: &[Metric], heading: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{heading}\n");
    let _ = writeln!(
        out,
        "Each cell: median [min–max] of the repetitions. Ratios divide chainmesh's median by the \
         other system's (for latency, CPU and memory, lower is better, so a ratio below 1 favours \
         chainmesh).\n"
    );
    let _ = writeln!(
        out,
        "| scenario | figure | {} | {} | {} | chainmesh / baseline | chainmesh / libp2p | target | placement |",
        SystemId::Chainmesh.name(),
        SystemId::Baseline.name(),
        SystemId::Libp2p.name()
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for row in rows(results, metrics) {
        let m = row.metric;
        let r = |x: Option<f64>| x.map(|v| format!("{v:.2}")).unwrap_or_else(|| "–".into());
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            m.what,
            m.figure,
            results.cell_text(m, SystemId::Chainmesh),
            results.cell_text(m, SystemId::Baseline),
            results.cell_text(m, SystemId::Libp2p),
            r(row.vs_base),
            r(row.vs_p2p),
            if row.verdict.is_empty() {
                "–".into()
            } else {
                row.verdict.clone()
            },
            results
                .placements
                .get(&m.scenario)
                .map(String::as_str)
                .unwrap_or("–"),
        );
    }
    if !results.notes.is_empty() {
        let _ = writeln!(out, "\nNotes:");
        for (metric, who, note) in &results.notes {
            let _ = writeln!(out, "- {metric}, {}: {note}", who.name());
        }
    }
    let mut failures: Vec<_> = results.failures.iter().collect();
    failures.sort_by(|a, b| a.0 .0.cmp(&b.0 .0));
    if !failures.is_empty() {
        let _ = writeln!(out, "\nFailures:");
        for ((scenario, who), why) in failures {
            let _ = writeln!(out, "- {scenario}, {}: {why}", who.name());
        }
    }
    out
}

/// A horizontal bar chart of chainmesh's advantage over each other system, on a log scale:
/// the ratio turned so that right of 1 always favours chainmesh.
pub fn svg(results: &Results, metrics: &[Metric], title: &str) -> String {
    let rows: Vec<(String, Option<f64>, Option<f64>)> = rows(results, metrics)
        .into_iter()
        .filter(|r| r.vs_base.is_some() || r.vs_p2p.is_some())
        .map(|r| {
            let turn = |x: Option<f64>| match r.metric.better {
                Better::Higher => x,
                Better::Lower => x.filter(|v| *v > 0.0).map(|v| 1.0 / v),
            };
            let label = format!("{} — {}", r.metric.what, r.metric.figure);
            (label, turn(r.vs_base), turn(r.vs_p2p))
        })
        .collect();
    let (left, width, row_h, top) = (640.0, 1260.0, 30.0, 70.0);
    let plot_w = width - left - 30.0;
    let (lo, hi) = (0.01f64.log10(), 1000f64.log10());
    let x = |v: f64| left + (v.clamp(0.01, 1000.0).log10() - lo) / (hi - lo) * plot_w;
    let height = top + row_h * rows.len() as f64 + 40.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="22" font-size="15" font-weight="bold">{}</text>"#,
        esc(title)
    );
    let _ = writeln!(
        s,
        r#"<text x="10" y="42">chainmesh advantage (median ratio, right of 1 = chainmesh better), log scale.</text>"#
    );
    let _ = writeln!(
        s,
        r##"<rect x="{}" y="30" width="12" height="12" fill="#3b6fb6"/><text x="{}" y="41">vs bare-TLS baseline</text>"##,
        width - 330.0,
        width - 314.0
    );
    let _ = writeln!(
        s,
        r##"<rect x="{}" y="30" width="12" height="12" fill="#e08a2c"/><text x="{}" y="41">vs rust-libp2p</text>"##,
        width - 170.0,
        width - 154.0
    );
    for tick in [0.01, 0.1, 0.5, 1.0, 2.0, 10.0, 100.0, 1000.0] {
        let tx = x(tick);
        let stroke = if tick == 1.0 { "#000" } else { "#ddd" };
        let _ = writeln!(
            s,
            r#"<line x1="{tx:.1}" y1="{}" x2="{tx:.1}" y2="{}" stroke="{stroke}"/>"#,
            top - 8.0,
            height - 30.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{tx:.1}" y="{}" text-anchor="middle">{tick}</text>"#,
            height - 15.0
        );
    }
    for (i, (label, base, p2p)) in rows.iter().enumerate() {
        let y = top + row_h * i as f64;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            left - 8.0,
            y + 15.0,
            esc(label)
        );
        for (k, (v, color)) in [(base, "#3b6fb6"), (p2p, "#e08a2c")]
            .into_iter()
            .enumerate()
        {
            if let Some(v) = v {
                let (x0, x1) = (x(1.0), x(*v));
                let _ = writeln!(
                    s,
                    r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="11" fill="{color}"><title>{:.3}</title></rect>"#,
                    x0.min(x1),
                    y + 3.0 + 12.0 * k as f64,
                    (x1 - x0).abs().max(1.0),
                    v
                );
            }
        }
    }
    let _ = writeln!(s, "</svg>");
    s
}

fn esc(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
