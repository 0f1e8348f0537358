//! The load generator's counters over a whole run (`chainmesh node --load SPEC`, read back as
//! [`LoadReport`]s by `chainmesh_testkit::procs`). A restarted node starts again from zero
//! under a new incarnation, so a node's counters for the run are the last line of each
//! incarnation added up.

use std::collections::BTreeMap;

use chainmesh_testkit::procs::{last_per_incarnation, LoadReport};

/// Cumulative message counters of a node (or of several, added up).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Echo requests sent.
    pub req_sent: u64,
    /// Requests answered.
    pub req_answered: u64,
    /// Requests failed with a typed error, by kind.
    pub req_failed: BTreeMap<String, u64>,
    /// Requests that got neither an answer nor an error by their outer deadline.
    pub req_lost: u64,
    /// Requests waiting for their outcome (a gauge: only the running incarnation's).
    pub req_in_flight: u64,
    /// Unicasts sent.
    pub uni_sent: u64,
    /// Unicasts refused at send time with a typed error.
    pub uni_send_failed: u64,
    /// Unicasts received from other nodes.
    pub uni_received: u64,
    /// Broadcasts sent.
    pub bc_sent: u64,
    /// Broadcast copies queued for their targets.
    pub bc_targets_queued: u64,
    /// Broadcast copies dropped at a full or just-closed link, or without a route.
    pub bc_targets_missed: u64,
    /// Broadcasts received (each once).
    pub bc_received: u64,
    /// Broadcasts received again after the first time.
    pub bc_duplicates: u64,
}

impl Counts {
    /// The counters of one report line.
    pub fn from_report(r: &LoadReport) -> Counts {
        Counts {
            req_sent: r.requests.sent,
            req_answered: r.requests.answered,
            req_failed: r
                .requests
                .failed
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| (k.clone(), *n))
                .collect(),
            req_lost: r.requests.lost,
            req_in_flight: r.requests.in_flight,
            uni_sent: r.unicasts.sent,
            uni_send_failed: r.unicasts.send_failed,
            uni_received: r.unicasts.received,
            bc_sent: r.broadcasts.sent,
            bc_targets_queued: r.broadcasts.targets_queued,
            bc_targets_missed: r
                .broadcasts
                .targets_dropped
                .saturating_add(r.broadcasts.targets_unreachable),
            bc_received: r.broadcasts.received,
            bc_duplicates: r.broadcasts.duplicates,
        }
    }

    /// A node's counters over every run in `reports` (its report file, in order): each
    /// incarnation's last line added up; in flight, the last incarnation's only.
    pub fn of_runs(reports: &[LoadReport]) -> Counts {
        let runs = last_per_incarnation(reports);
        let mut total = Counts::default();
        for r in &runs {
            total.add(&Counts::from_report(r));
        }
        total.req_in_flight = runs.last().map_or(0, |r| r.requests.in_flight);
        total
    }

    /// Requests failed with a typed error, all kinds.
    pub fn req_failed_total(&self) -> u64 {
        self.req_failed
            .values()
            .fold(0, |a, b| a.saturating_add(*b))
    }

    /// Messages sent of every kind.
    pub fn sent(&self) -> u64 {
        self.req_sent
            .saturating_add(self.uni_sent)
            .saturating_add(self.bc_sent)
    }

    /// Adds `other`'s counters to these (the in-flight gauge too: the caller decides whether
    /// the two were at the same time).
    pub fn add(&mut self, other: &Counts) {
        let f = |a: &mut u64, b: u64| *a = a.saturating_add(b);
        f(&mut self.req_sent, other.req_sent);
        f(&mut self.req_answered, other.req_answered);
        for (kind, n) in &other.req_failed {
            f(self.req_failed.entry(kind.clone()).or_insert(0), *n);
        }
        f(&mut self.req_lost, other.req_lost);
        f(&mut self.req_in_flight, other.req_in_flight);
        f(&mut self.uni_sent, other.uni_sent);
        f(&mut self.uni_send_failed, other.uni_send_failed);
        f(&mut self.uni_received, other.uni_received);
        f(&mut self.bc_sent, other.bc_sent);
        f(&mut self.bc_targets_queued, other.bc_targets_queued);
        f(&mut self.bc_targets_missed, other.bc_targets_missed);
        f(&mut self.bc_received, other.bc_received);
        f(&mut self.bc_duplicates, other.bc_duplicates);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn line(inc: u64, sent: u64, answered: u64, timeouts: u64, in_flight: u64) -> LoadReport {
        serde_json::from_value(json!({
            "t_ms": 1000, "uptime_ms": 10, "node": "ab".repeat(64), "incarnation": inc,
            "final": false,
            "requests": {"sent": sent, "answered": answered, "failed": {"timeout": timeouts,
                         "unreachable": 0}, "lost": 0, "in_flight": in_flight, "skipped": 0},
            "unicasts": {"sent": 5, "send_failed": 1, "skipped": 0, "received": 4},
            "broadcasts": {"sent": 2, "send_failed": 0, "targets_queued": 8,
                           "targets_unreachable": 1, "targets_dropped": 1, "received": 8,
                           "duplicates": 0, "stale": 0},
            "peers": 4, "reachable": 4}))
        .expect("a report line")
    }

    #[test]
    fn a_report_line_gives_its_counters_without_empty_failure_kinds() {
        let c = Counts::from_report(&line(7, 10, 8, 1, 1));
        assert_eq!(
            (c.req_sent, c.req_answered, c.req_failed_total()),
            (10, 8, 1)
        );
        assert_eq!(c.req_failed, BTreeMap::from([("timeout".to_owned(), 1)]));
        assert_eq!((c.uni_sent, c.uni_send_failed, c.uni_received), (5, 1, 4));
        assert_eq!(
            (c.bc_sent, c.bc_targets_queued, c.bc_targets_missed),
            (2, 8, 2)
        );
        assert_eq!((c.bc_received, c.bc_duplicates), (8, 0));
        assert_eq!(c.sent(), 17);
    }

    #[test]
    fn the_runs_of_a_restarted_node_add_up_with_only_the_last_in_flight() {
        let reports = [
            line(1, 10, 9, 0, 1),
            line(1, 20, 18, 1, 1),
            // Restarted: the counters start again under another incarnation.
            line(2, 5, 5, 0, 0),
            line(2, 7, 6, 0, 1),
        ];
        let total = Counts::of_runs(&reports);
        assert_eq!(total.req_sent, 27);
        assert_eq!(total.req_answered, 24);
        assert_eq!(total.req_failed_total(), 1);
        assert_eq!(total.req_in_flight, 1);
        assert_eq!(total.uni_sent, 10);
        assert_eq!(Counts::of_runs(&[]), Counts::default());
    }
}
