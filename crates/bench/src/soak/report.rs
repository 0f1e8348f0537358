//! Message counters of the node-side load generator (`chainmesh node --load SPEC
//! --load-report FILE`): one JSON object per line, counters cumulative since its process
//! started. A restarted node starts again from zero under a new `incarnation`, so
//! [`NodeTally`] adds up the incarnations to give counts for the whole run.

use std::collections::BTreeMap;

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
    /// Requests waiting for their outcome (a gauge: not added across incarnations).
    pub req_in_flight: u64,
    /// Unicasts sent.
    pub uni_sent: u64,
    /// Unicasts refused at send time.
    pub uni_send_failed: u64,
    /// Unicasts received from other nodes.
    pub uni_received: u64,
    /// Broadcasts sent.
    pub bc_sent: u64,
    /// Broadcasts received (each once).
    pub bc_received: u64,
    /// Broadcasts received again after the first time.
    pub bc_duplicates: u64,
}

impl Counts {
    /// Reads the counters of one report line; `None` when it is not a JSON object.
    pub fn from_report(line: &serde_json::Value) -> Option<Counts> {
        line.as_object()?;
        let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
        let req = &line["requests"];
        let req_failed = match &req["failed"] {
            serde_json::Value::Object(kinds) => kinds
                .iter()
                .map(|(k, v)| (k.clone(), n(v)))
                .filter(|(_, v)| *v > 0)
                .collect(),
            // A plain number: failures without their kinds.
            v => match n(v) {
                0 => BTreeMap::new(),
                total => BTreeMap::from([("error".to_owned(), total)]),
            },
        };
        Some(Counts {
            req_sent: n(&req["sent"]),
            req_answered: n(&req["answered"]),
            req_failed,
            req_lost: n(&req["lost"]),
            req_in_flight: n(&req["in_flight"]),
            uni_sent: n(&line["unicasts"]["sent"]),
            uni_send_failed: n(&line["unicasts"]["send_failed"]),
            uni_received: n(&line["unicasts"]["received"]),
            bc_sent: n(&line["broadcasts"]["sent"]),
            bc_received: n(&line["broadcasts"]["received"]),
            bc_duplicates: n(&line["broadcasts"]["duplicates"]),
        })
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
        self.req_sent = self.req_sent.saturating_add(other.req_sent);
        self.req_answered = self.req_answered.saturating_add(other.req_answered);
        for (kind, n) in &other.req_failed {
            let e = self.req_failed.entry(kind.clone()).or_insert(0);
            *e = e.saturating_add(*n);
        }
        self.req_lost = self.req_lost.saturating_add(other.req_lost);
        self.req_in_flight = self.req_in_flight.saturating_add(other.req_in_flight);
        self.uni_sent = self.uni_sent.saturating_add(other.uni_sent);
        self.uni_send_failed = self.uni_send_failed.saturating_add(other.uni_send_failed);
        self.uni_received = self.uni_received.saturating_add(other.uni_received);
        self.bc_sent = self.bc_sent.saturating_add(other.bc_sent);
        self.bc_received = self.bc_received.saturating_add(other.bc_received);
        self.bc_duplicates = self.bc_duplicates.saturating_add(other.bc_duplicates);
    }
}

/// A node's counters over every incarnation seen.
#[derive(Debug, Clone, Default)]
pub struct NodeTally {
    /// Incarnations that have been replaced, added up.
    done: Counts,
    /// The latest incarnation and its latest counters.
    current: Option<(u64, Counts)>,
    /// Incarnations seen.
    incarnations: usize,
}

impl NodeTally {
    /// Takes one report line. A line of a new incarnation closes the previous one at its last
    /// counters; a later line of the same incarnation replaces its counters (they only grow).
    pub fn observe(&mut self, line: &serde_json::Value) {
        let Some(counts) = Counts::from_report(line) else {
            return;
        };
        let incarnation = line["incarnation"].as_u64().unwrap_or(0);
        match &mut self.current {
            Some((inc, c)) if *inc == incarnation => *c = counts,
            _ => {
                self.incarnations = self.incarnations.saturating_add(1);
                if let Some((_, mut old)) = self.current.replace((incarnation, counts)) {
                    // A replaced process waits for nothing any more.
                    old.req_in_flight = 0;
                    self.done.add(&old);
                }
            }
        }
    }

    /// The counters of the whole run so far.
    pub fn total(&self) -> Counts {
        let mut t = self.done.clone();
        if let Some((_, c)) = &self.current {
            t.add(c);
        }
        t
    }

    /// Incarnations seen.
    pub fn incarnations(&self) -> usize {
        self.incarnations
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn line(inc: u64, sent: u64, answered: u64, failed: u64, in_flight: u64) -> serde_json::Value {
        json!({"t_ms": 1000, "node": "ab", "incarnation": inc, "final": false,
               "requests": {"sent": sent, "answered": answered, "failed": {"timeout": failed},
                            "lost": 0, "in_flight": in_flight},
               "unicasts": {"sent": 5, "send_failed": 1, "received": 4},
               "broadcasts": {"sent": 2, "received": 8, "duplicates": 0}})
    }

    #[test]
    fn a_report_line_gives_its_counters() {
        let c = Counts::from_report(&line(7, 10, 8, 1, 1)).expect("an object");
        assert_eq!(
            (c.req_sent, c.req_answered, c.req_failed_total()),
            (10, 8, 1)
        );
        assert_eq!(c.req_failed.get("timeout"), Some(&1));
        assert_eq!((c.uni_sent, c.uni_send_failed, c.uni_received), (5, 1, 4));
        assert_eq!((c.bc_sent, c.bc_received, c.bc_duplicates), (2, 8, 0));
        assert_eq!(c.sent(), 17);
        assert_eq!(Counts::from_report(&json!([1, 2])), None);
    }

    #[test]
    fn missing_fields_count_zero_and_a_plain_failed_number_is_kept() {
        let c =
            Counts::from_report(&json!({"requests": {"sent": 3, "failed": 2}})).expect("an object");
        assert_eq!(c.req_sent, 3);
        assert_eq!(c.req_failed_total(), 2);
        assert_eq!(c.bc_received, 0);
    }

    #[test]
    fn a_tally_adds_incarnations_and_keeps_only_the_live_ones_in_flight() {
        let mut t = NodeTally::default();
        t.observe(&line(1, 10, 9, 0, 1));
        t.observe(&line(1, 20, 18, 1, 1));
        // Restarted: the counters start again under another incarnation.
        t.observe(&line(2, 5, 5, 0, 0));
        t.observe(&line(2, 7, 6, 0, 1));
        let total = t.total();
        assert_eq!(total.req_sent, 27);
        assert_eq!(total.req_answered, 24);
        assert_eq!(total.req_failed_total(), 1);
        assert_eq!(total.req_in_flight, 1);
        assert_eq!(total.uni_sent, 10);
        assert_eq!(t.incarnations(), 2);
    }
}
