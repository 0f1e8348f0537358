//! The load report: one JSON object per line, written by `chainmesh node --load` and read
//! back by [`ProcNet`](super::ProcNet). The node writes these types and the harness parses
//! them, so the format has one definition.

use std::collections::BTreeMap;
use std::path::Path;

use chainmesh::NodeId;
use serde::{Deserialize, Serialize};

/// One line of a load report. Counters are cumulative since the reporting process started;
/// a restarted node starts from zero with a new `incarnation`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// When the line was written, milliseconds since the Unix epoch.
    pub t_ms: u64,
    /// Milliseconds since the load generator started.
    pub uptime_ms: u64,
    /// The reporting node.
    pub node: NodeId,
    /// A random number drawn when the load generator started: tells the runs of one node
    /// apart, and with `(node, seq)` identifies a broadcast.
    pub incarnation: u64,
    /// Whether this is the last line, written when the node was asked to stop (SIGTERM or
    /// SIGINT) after its outstanding requests resolved.
    #[serde(rename = "final")]
    pub is_final: bool,
    /// Echo requests this node sent.
    pub requests: RequestCounts,
    /// One-way unicasts.
    pub unicasts: UnicastCounts,
    /// Broadcasts to the load group.
    pub broadcasts: BroadcastCounts,
    /// Resident set size in kB (`VmRSS` of `/proc/self/status`); absent where there is no
    /// `/proc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_kb: Option<u64>,
    /// Open file descriptors (entries of `/proc/self/fd`); absent where there is no `/proc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fds: Option<u64>,
    /// Live sessions.
    pub peers: u64,
    /// Nodes this node has a route to.
    pub reachable: u64,
}

/// Request counters. Every request ends in exactly one of `answered`, `failed` and `lost`,
/// or is still `in_flight`: `sent = answered + Σ failed + lost + in_flight`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCounts {
    /// Requests handed to the node.
    pub sent: u64,
    /// Requests answered with their own payload echoed.
    pub answered: u64,
    /// Requests that failed, by typed error kind (`timeout`, `peer_disconnected`,
    /// `unreachable`, `remote`, `stopped`, `too_many_pending`, `send_unreachable`,
    /// `send_queue_full`, `send_too_large`, `send_invalid`, `unsent`, `mismatch`: an answer that is not
    /// the echo; `send_bandwidth_exceeded`, `qps_exceeded`: over a `[flow_control]` limit).
    pub failed: BTreeMap<String, u64>,
    /// Requests that resolved neither way within twice their timeout (at least their
    /// timeout and a second): "got neither"; must stay 0.
    pub lost: u64,
    /// Requests waiting for their outcome when the line was written.
    pub in_flight: u64,
    /// Requests not sent: no reachable node, or the in-flight cap was reached.
    pub skipped: u64,
    /// Load requests from other nodes this node answered.
    #[serde(default)]
    pub echoed: u64,
    /// Answers this node could not queue (the requester then times out).
    #[serde(default)]
    pub echo_failed: u64,
}

impl RequestCounts {
    /// All failures, whatever their kind.
    pub fn failed_total(&self) -> u64 {
        self.failed.values().fold(0, |a, n| a.saturating_add(*n))
    }
}

/// Unicast counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnicastCounts {
    /// Unicasts queued for their next hop.
    pub sent: u64,
    /// Unicasts refused with a typed error (no route, queue full, ...).
    pub send_failed: u64,
    /// Unicasts not sent because no node was reachable.
    pub skipped: u64,
    /// Load unicasts this node received.
    pub received: u64,
    /// Unicasts the node reported undelivered: still queued, or in the write under way, when
    /// their link closed (`chainmesh::node::Undelivered`).
    #[serde(default)]
    pub undelivered: u64,
    /// Undelivered reports (of any kind) the load generator missed because it lagged behind
    /// the node's bounded report channel.
    #[serde(default)]
    pub undelivered_missed: u64,
}

/// Broadcast counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastCounts {
    /// Broadcasts handed to the node (each reaches many targets).
    pub sent: u64,
    /// Broadcasts refused as a whole with a typed error.
    pub send_failed: u64,
    /// Targets whose copy was queued, summed over every broadcast sent.
    pub targets_queued: u64,
    /// Targets with no route, summed.
    pub targets_unreachable: u64,
    /// Targets dropped because their next hop's queue was full or its link had just closed,
    /// summed.
    pub targets_dropped: u64,
    /// Distinct load broadcasts this node received.
    pub received: u64,
    /// Broadcast copies the node reported undelivered (as for unicasts), summed.
    #[serde(default)]
    pub undelivered: u64,
    /// Broadcasts received again with a (node, incarnation, seq) already seen; must stay 0.
    pub duplicates: u64,
    /// Broadcasts too old for the de-duplication window, which cannot be told apart from
    /// duplicates and are counted on their own.
    pub stale: u64,
    /// Load messages (of any kind) too short for their header.
    #[serde(default)]
    pub malformed: u64,
}

/// Why a report file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// A complete line is not a report.
    #[error("{file}:{line}: {source}")]
    Parse {
        /// The file.
        file: String,
        /// The line number, from 1.
        line: usize,
        /// Why.
        source: serde_json::Error,
    },
}

/// Every complete line of a report file (a missing file has none). A last line without its
/// newline is being written and is left out.
pub fn read_reports(file: &Path) -> Result<Vec<LoadReport>, ReportError> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ReportError::Read {
                file: file.display().to_string(),
                source,
            })
        }
    };
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    complete
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|source| ReportError::Parse {
                file: file.display().to_string(),
                line: i + 1,
                source,
            })
        })
        .collect()
}

/// The last line of each incarnation, in the order they ran: what to add up over the runs
/// of a node that was restarted (a run killed with SIGKILL ends on its last periodic line).
pub fn last_per_incarnation(reports: &[LoadReport]) -> Vec<LoadReport> {
    let mut out: Vec<LoadReport> = Vec::new();
    for r in reports {
        match out.last_mut() {
            Some(last) if last.incarnation == r.incarnation => *last = r.clone(),
            _ => out.push(r.clone()),
        }
    }
    out
}

/// Counters added up over many report lines: over the runs of a node, or over a network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// Runs (incarnations) counted.
    pub runs: u64,
    /// Runs that ended with a final line (stopped with SIGTERM or SIGINT).
    pub final_lines: u64,
    /// Requests.
    pub requests: RequestCounts,
    /// Unicasts.
    pub unicasts: UnicastCounts,
    /// Broadcasts.
    pub broadcasts: BroadcastCounts,
}

impl Totals {
    /// The totals of the last line of each run in `reports` (see [`last_per_incarnation`]).
    pub fn of(reports: &[LoadReport]) -> Totals {
        let mut t = Totals::default();
        for r in last_per_incarnation(reports) {
            t.add_line(&r);
        }
        t
    }

    /// Adds one line's counters (the last of a run).
    pub fn add_line(&mut self, r: &LoadReport) {
        self.runs = self.runs.saturating_add(1);
        self.final_lines = self.final_lines.saturating_add(u64::from(r.is_final));
        self.add_counts(&r.requests, &r.unicasts, &r.broadcasts);
    }

    /// Adds another total (another node's).
    pub fn add(&mut self, other: &Totals) {
        self.runs = self.runs.saturating_add(other.runs);
        self.final_lines = self.final_lines.saturating_add(other.final_lines);
        self.add_counts(&other.requests, &other.unicasts, &other.broadcasts);
    }

    fn add_counts(&mut self, q: &RequestCounts, u: &UnicastCounts, b: &BroadcastCounts) {
        fn add(a: &mut u64, b: u64) {
            *a = a.saturating_add(b);
        }
        let t = &mut self.requests;
        add(&mut t.sent, q.sent);
        add(&mut t.answered, q.answered);
        for (k, n) in &q.failed {
            add(t.failed.entry(k.clone()).or_default(), *n);
        }
        add(&mut t.lost, q.lost);
        add(&mut t.in_flight, q.in_flight);
        add(&mut t.skipped, q.skipped);
        add(&mut t.echoed, q.echoed);
        add(&mut t.echo_failed, q.echo_failed);
        let t = &mut self.unicasts;
        add(&mut t.sent, u.sent);
        add(&mut t.send_failed, u.send_failed);
        add(&mut t.skipped, u.skipped);
        add(&mut t.received, u.received);
        add(&mut t.undelivered, u.undelivered);
        add(&mut t.undelivered_missed, u.undelivered_missed);
        let t = &mut self.broadcasts;
        add(&mut t.sent, b.sent);
        add(&mut t.send_failed, b.send_failed);
        add(&mut t.targets_queued, b.targets_queued);
        add(&mut t.targets_unreachable, b.targets_unreachable);
        add(&mut t.targets_dropped, b.targets_dropped);
        add(&mut t.received, b.received);
        add(&mut t.undelivered, b.undelivered);
        add(&mut t.duplicates, b.duplicates);
        add(&mut t.stale, b.stale);
        add(&mut t.malformed, b.malformed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(incarnation: u64, answered: u64, is_final: bool) -> LoadReport {
        LoadReport {
            t_ms: 1,
            uptime_ms: 1,
            node: crate::id(1),
            incarnation,
            is_final,
            requests: RequestCounts {
                sent: answered + 1,
                answered,
                failed: [("timeout".to_owned(), 1)].into(),
                ..RequestCounts::default()
            },
            unicasts: UnicastCounts::default(),
            broadcasts: BroadcastCounts::default(),
            rss_kb: Some(1000),
            fds: None,
            peers: 2,
            reachable: 2,
        }
    }

    #[test]
    fn a_line_still_being_written_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("load.jsonl");
        assert!(read_reports(&file).unwrap().is_empty());
        let whole = serde_json::to_string(&line(7, 3, false)).unwrap();
        std::fs::write(&file, format!("{whole}\n{}", &whole[..20])).unwrap();
        let got = read_reports(&file).unwrap();
        assert_eq!(got, [line(7, 3, false)]);
        // `fds` absent (no /proc) stays absent; `final` is the key on the wire.
        assert!(!whole.contains("fds") && whole.contains("\"final\":false"));
        std::fs::write(&file, "not json\n").unwrap();
        assert!(matches!(
            read_reports(&file),
            Err(ReportError::Parse { line: 1, .. })
        ));
    }

    #[test]
    fn totals_add_the_last_line_of_each_run() {
        let reports = [
            line(1, 5, false),
            line(1, 9, false),
            line(2, 1, false),
            line(2, 4, true),
        ];
        let last = last_per_incarnation(&reports);
        assert_eq!(last, [line(1, 9, false), line(2, 4, true)]);
        let t = Totals::of(&reports);
        assert_eq!((t.runs, t.final_lines), (2, 1));
        assert_eq!(t.requests.answered, 13);
        assert_eq!(t.requests.failed_total(), 2);
        let mut sum = Totals::default();
        sum.add(&t);
        sum.add(&t);
        assert_eq!((sum.runs, sum.requests.sent), (4, 30));
    }
}
