//! What the status engine reports: changes to the status table and its traffic counters.

use std::sync::atomic::AtomicU64;

use super::transport::PACKET_OVERHEAD;
use super::StatusVersion;
use crate::identity::NodeId;

/// What happened to a node's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusEventKind {
    /// A new status was received (the first, or a newer one).
    Updated,
    /// The node left or became unreachable; its status is gone.
    Removed,
}

/// One change to the status table. Only other nodes' statuses produce events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusEvent {
    /// The node.
    pub node: NodeId,
    /// The version received, or for [`StatusEventKind::Removed`] the version that was held.
    pub version: StatusVersion,
    /// What happened.
    pub kind: StatusEventKind,
}

/// Packets and bytes the engine has sent, by type, and what went wrong on the way in and out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusStats {
    /// StatusSeq packets sent.
    pub seq_packets: u64,
    /// Their payload bytes.
    pub seq_bytes: u64,
    /// StatusRequest packets sent.
    pub request_packets: u64,
    /// Their payload bytes.
    pub request_bytes: u64,
    /// StatusResponse packets sent.
    pub response_packets: u64,
    /// Their payload bytes.
    pub response_bytes: u64,
    /// Sends the transport refused.
    pub send_failures: u64,
    /// Status packets received that did not decode.
    pub malformed: u64,
    /// Answers that matched no outstanding query (late, duplicated, or unsolicited).
    pub unmatched_answers: u64,
    /// StatusResponses larger than `limits.max_status_bytes` allows, dropped undecoded.
    pub oversized: u64,
    /// Packets of, or exchanges with, nodes left untracked because `limits.max_tracked_nodes`
    /// nodes were tracked already.
    pub untracked: u64,
    /// Statuses not stored because the held total would pass
    /// `limits.max_status_total_bytes`.
    pub over_total: u64,
    /// StatusSeqs and StatusRequests ignored because their source is not reachable.
    pub unreachable_sources: u64,
    /// StatusRequests left unanswered because their requester was over
    /// `limits.status_requests_per_sec`.
    pub rate_limited: u64,
    /// Nodes tracked now (a gauge, not a count).
    pub tracked_nodes: u64,
    /// Memory the held statuses take now, as [`NodeStatus::held_bytes`] counts it (a gauge).
    ///
    /// [`NodeStatus::held_bytes`]: super::NodeStatus::held_bytes
    pub held_status_bytes: u64,
}

impl StatusStats {
    /// Status packets sent.
    pub fn packets(&self) -> u64 {
        self.seq_packets + self.request_packets + self.response_packets
    }

    /// Bytes those packets take on the wire, counting [`PACKET_OVERHEAD`] per packet.
    pub fn wire_bytes(&self) -> u64 {
        self.seq_bytes
            + self.request_bytes
            + self.response_bytes
            + self.packets() * PACKET_OVERHEAD as u64
    }
}

/// The engine's running counts, read out as a [`StatusStats`].
#[derive(Default)]
pub(super) struct Counters {
    pub(super) seq_packets: AtomicU64,
    pub(super) seq_bytes: AtomicU64,
    pub(super) request_packets: AtomicU64,
    pub(super) request_bytes: AtomicU64,
    pub(super) response_packets: AtomicU64,
    pub(super) response_bytes: AtomicU64,
    pub(super) send_failures: AtomicU64,
    pub(super) malformed: AtomicU64,
    pub(super) unmatched_answers: AtomicU64,
    pub(super) oversized: AtomicU64,
    pub(super) untracked: AtomicU64,
    pub(super) over_total: AtomicU64,
    pub(super) unreachable_sources: AtomicU64,
    pub(super) rate_limited: AtomicU64,
}

/// Lets a kind of log line through once per engine interval, so a flood is logged as one
/// line per interval with the counters telling how much was refused.
pub(super) struct LogGate(AtomicU64);

impl Default for LogGate {
    fn default() -> Self {
        LogGate(AtomicU64::new(u64::MAX))
    }
}

impl LogGate {
    /// Whether to log now, in interval `tick`: true for the first call of each interval.
    pub(super) fn open(&self, tick: u64) -> bool {
        self.0.swap(tick, std::sync::atomic::Ordering::Relaxed) != tick
    }
}

/// One gate per kind of refusal.
#[derive(Default)]
pub(super) struct LogGates {
    pub(super) oversized: LogGate,
    pub(super) untracked: LogGate,
    pub(super) over_total: LogGate,
    pub(super) rate_limited: LogGate,
}
