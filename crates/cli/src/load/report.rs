//! The load report: the counters every part of the load generator adds to, and the writer
//! that appends them to the report file as one JSON line every interval (the format is
//! `chainmesh_testkit::procs::LoadReport`, which the harness reads back).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use chainmesh::node::{NodeHandle, RequestError, SendError};
use chainmesh_testkit::procs::procfs;
use chainmesh_testkit::procs::{BroadcastCounts, LoadReport, RequestCounts, UnicastCounts};
use tracing::warn;

/// How a request failed, as the report names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailKind {
    Timeout,
    PeerDisconnected,
    Unreachable,
    Remote,
    Stopped,
    TooManyPending,
    SendUnreachable,
    SendQueueFull,
    SendTooLarge,
    SendInvalid,
    /// Never written before its link closed: failed at once.
    Unsent,
    /// Answered, but not with the payload sent.
    Mismatch,
    /// Over a `[flow_control]` bandwidth limit of the sender.
    SendBandwidth,
    /// Refused over the destination's incoming rate limit for the module.
    QpsExceeded,
}

const FAIL_KINDS: [FailKind; 14] = [
    FailKind::Timeout,
    FailKind::PeerDisconnected,
    FailKind::Unreachable,
    FailKind::Remote,
    FailKind::Stopped,
    FailKind::TooManyPending,
    FailKind::SendUnreachable,
    FailKind::SendQueueFull,
    FailKind::SendTooLarge,
    FailKind::SendInvalid,
    FailKind::Unsent,
    FailKind::Mismatch,
    FailKind::SendBandwidth,
    FailKind::QpsExceeded,
];

impl FailKind {
    /// The typed error a request ended with.
    pub fn of(e: &RequestError) -> FailKind {
        match e {
            RequestError::Timeout(_) => FailKind::Timeout,
            RequestError::PeerDisconnected(_) => FailKind::PeerDisconnected,
            RequestError::Unreachable(_) => FailKind::Unreachable,
            RequestError::Remote(_) => FailKind::Remote,
            RequestError::Stopped => FailKind::Stopped,
            RequestError::TooManyPending { .. } => FailKind::TooManyPending,
            RequestError::Send(SendError::Unreachable(_)) => FailKind::SendUnreachable,
            RequestError::Send(SendError::QueueFull(_)) => FailKind::SendQueueFull,
            RequestError::Send(SendError::TooLarge { .. }) => FailKind::SendTooLarge,
            RequestError::Send(SendError::Invalid(_)) => FailKind::SendInvalid,
            RequestError::Unsent { .. } => FailKind::Unsent,
            RequestError::Send(SendError::BandwidthExceeded { .. }) => FailKind::SendBandwidth,
            RequestError::QpsExceeded { .. } => FailKind::QpsExceeded,
        }
    }

    fn name(self) -> &'static str {
        match self {
            FailKind::Timeout => "timeout",
            FailKind::PeerDisconnected => "peer_disconnected",
            FailKind::Unreachable => "unreachable",
            FailKind::Remote => "remote",
            FailKind::Stopped => "stopped",
            FailKind::TooManyPending => "too_many_pending",
            FailKind::SendUnreachable => "send_unreachable",
            FailKind::SendQueueFull => "send_queue_full",
            FailKind::SendTooLarge => "send_too_large",
            FailKind::Unsent => "unsent",
            FailKind::SendInvalid => "send_invalid",
            FailKind::Mismatch => "mismatch",
            FailKind::SendBandwidth => "send_bandwidth_exceeded",
            FailKind::QpsExceeded => "qps_exceeded",
        }
    }

    /// Its place in [`FAIL_KINDS`] and [`Counters::req_failed`]: the declaration order.
    fn index(self) -> usize {
        self as usize
    }
}

/// A counter shared by the tasks of the load generator.
#[derive(Debug, Default)]
pub struct Count(AtomicU64);

impl Count {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Every counter of the report, cumulative since start.
#[derive(Debug, Default)]
pub struct Counters {
    pub req_sent: Count,
    pub req_answered: Count,
    pub req_failed: [Count; FAIL_KINDS.len()],
    pub req_lost: Count,
    pub req_skipped: Count,
    pub req_echoed: Count,
    pub req_echo_failed: Count,
    pub uni_sent: Count,
    pub uni_failed: Count,
    pub uni_skipped: Count,
    pub uni_received: Count,
    pub uni_undelivered: Count,
    pub bc_sent: Count,
    pub bc_failed: Count,
    pub bc_queued: Count,
    pub bc_unreachable: Count,
    pub bc_dropped: Count,
    pub bc_received: Count,
    pub bc_undelivered: Count,
    pub undelivered_missed: Count,
    pub bc_duplicates: Count,
    pub bc_stale: Count,
    pub malformed: Count,
}

impl Counters {
    /// Counts a request that failed with `kind`.
    pub fn failed(&self, kind: FailKind) {
        self.req_failed[kind.index()].inc();
    }

    fn requests(&self, in_flight: u64) -> RequestCounts {
        let failed: BTreeMap<String, u64> = FAIL_KINDS
            .iter()
            .map(|k| (k.name().to_owned(), self.req_failed[k.index()].get()))
            .filter(|(_, n)| *n > 0)
            .collect();
        RequestCounts {
            sent: self.req_sent.get(),
            answered: self.req_answered.get(),
            failed,
            lost: self.req_lost.get(),
            in_flight,
            skipped: self.req_skipped.get(),
            echoed: self.req_echoed.get(),
            echo_failed: self.req_echo_failed.get(),
        }
    }
}

/// Where the report goes and what a line says besides the counters.
pub struct Reporter {
    file: File,
    path: PathBuf,
    node: NodeHandle,
    incarnation: u64,
    started: Instant,
}

impl Reporter {
    /// Opens (creating) `path` for appending.
    pub fn open(path: &Path, node: NodeHandle, incarnation: u64) -> anyhow::Result<Reporter> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("--load-report {}: cannot open", path.display()))?;
        Ok(Reporter {
            file,
            path: path.to_owned(),
            node,
            incarnation,
            started: Instant::now(),
        })
    }

    /// The line the counters make now.
    pub fn line(&self, c: &Counters, in_flight: u64, is_final: bool) -> LoadReport {
        let own = procfs::sample_self();
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        LoadReport {
            t_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(ms)
                .unwrap_or(0),
            uptime_ms: ms(self.started.elapsed()),
            node: self.node.node_id(),
            incarnation: self.incarnation,
            is_final,
            requests: c.requests(in_flight),
            unicasts: UnicastCounts {
                sent: c.uni_sent.get(),
                send_failed: c.uni_failed.get(),
                skipped: c.uni_skipped.get(),
                received: c.uni_received.get(),
                undelivered: c.uni_undelivered.get(),
                undelivered_missed: c.undelivered_missed.get(),
            },
            broadcasts: BroadcastCounts {
                sent: c.bc_sent.get(),
                send_failed: c.bc_failed.get(),
                targets_queued: c.bc_queued.get(),
                targets_unreachable: c.bc_unreachable.get(),
                targets_dropped: c.bc_dropped.get(),
                received: c.bc_received.get(),
                undelivered: c.bc_undelivered.get(),
                duplicates: c.bc_duplicates.get(),
                stale: c.bc_stale.get(),
                malformed: c.malformed.get(),
            },
            rss_kb: own.map(|p| p.rss_kb),
            fds: own.map(|p| p.fds),
            peers: self.node.peers().sessions().len() as u64,
            reachable: self.node.reachable_nodes().len() as u64,
        }
    }

    /// Appends `line` to the file; a failed write is logged, and the next line tries again.
    pub fn write(&mut self, line: &LoadReport) {
        let mut text = match serde_json::to_string(line) {
            Ok(t) => t,
            Err(e) => {
                warn!(error = %e, "load report: cannot encode a line");
                return;
            }
        };
        text.push('\n');
        if let Err(e) = self.file.write_all(text.as_bytes()) {
            warn!(file = %self.path.display(), error = %e, "load report: cannot write");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_failures_are_listed_by_kind_and_zeros_left_out() {
        let c = Counters::default();
        c.failed(FailKind::Timeout);
        c.failed(FailKind::Timeout);
        c.failed(FailKind::Mismatch);
        let r = c.requests(0);
        assert_eq!(r.failed.len(), 2);
        assert_eq!(r.failed["timeout"], 2);
        assert_eq!(r.failed["mismatch"], 1);
        assert_eq!(
            FailKind::of(&RequestError::Send(SendError::QueueFull(
                chainmesh_testkit::id(1)
            ))),
            FailKind::SendQueueFull
        );
    }
}
