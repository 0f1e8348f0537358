//! The engine's state under its lock: the local status, the table of other nodes' statuses,
//! and per node where the exchange with it stands (what it holds of ours, our query to it,
//! an answer we owe it). Pure: no I/O and no clock of its own; the caller passes deadlines.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::codec::{SeqAnnounce, StatusAnswer, StatusQuery};
use super::local::LocalStatus;
use super::rate::TokenBucket;
use super::table::{PeerStatus, StatusTable};
use super::StatusVersion;
use crate::identity::NodeId;
use crate::wire::PacketType;

/// A query waiting for its answer.
#[derive(Debug, Clone, Copy)]
pub(super) struct InFlight {
    pub(super) id: u32,
    pub(super) deadline: Instant,
}

/// What this node knows about its exchange with one other node.
#[derive(Debug, Default)]
pub(super) struct PeerSync {
    /// Our version the node is known to hold: it said so in a StatusSeq view, or we answered
    /// its query with it. Announcements stop while this equals our current version.
    pub(super) acked: Option<StatusVersion>,
    /// Our outstanding query to the node, at most one.
    pub(super) query: Option<InFlight>,
    /// Queries to the node in a row that timed out unanswered. Each retry waits twice as
    /// long as the one before (at most [`MAX_QUERY_BACKOFF`] doublings): an answer is only
    /// taken for the latest query, so with a fixed timeout a path whose round trip is longer
    /// than it would never deliver one.
    pub(super) missed: u32,
    /// The ID of the node's latest query whose answer the transport refused: sent as soon as
    /// the node is reachable, so the node need not wait out its query timeout.
    pub(super) owed_answer: Option<u32>,
    /// The node's StatusRequests this node may still answer: made at its first request.
    pub(super) answers: Option<TokenBucket>,
}

pub(super) struct Outgoing {
    pub(super) dst: NodeId,
    pub(super) packet_type: PacketType,
    pub(super) payload: Bytes,
    /// For a StatusResponse, the query it answers.
    pub(super) answers: Option<u32>,
}

pub(super) struct State {
    pub(super) local: LocalStatus,
    pub(super) table: StatusTable,
    pub(super) sync: HashMap<NodeId, PeerSync>,
    /// Answers to requesters there was no room to track, all sharing one bucket.
    pub(super) untracked_answers: TokenBucket,
    pub(super) ticks: u64,
}

/// Most doublings of the query timeout for a node whose queries keep timing out: 16 times
/// the timeout (32 intervals by default).
pub(super) const MAX_QUERY_BACKOFF: u32 = 4;

/// A query ID the last one, `previous`, is not: drawn afresh for every query, so an
/// attacker that sees one query cannot predict the next one to forge its answer, and a late
/// answer to a query of a previous run of this node is unlikely to match.
fn fresh_query_id(previous: Option<u32>) -> u32 {
    loop {
        let id = rand::random::<u32>();
        if Some(id) != previous {
            return id;
        }
    }
}

impl State {
    pub(super) fn knows(&self, node: &NodeId) -> bool {
        self.sync.contains_key(node) || self.table.contains(node)
    }

    /// Nodes tracked: every node with a status, announcement or exchange held.
    pub(super) fn tracked(&self) -> usize {
        self.sync.len().max(self.table.len())
    }

    pub(super) fn announce(&self, dst: NodeId, reply_wanted: bool) -> Outgoing {
        Outgoing {
            dst,
            packet_type: PacketType::STATUS_SEQ,
            payload: SeqAnnounce {
                version: self.local.version(),
                reply_wanted,
                view: self.table.held(&dst),
            }
            .encode(),
            answers: None,
        }
    }

    /// Answers query `query_id` of `dst` with our current status; answering confirms it.
    pub(super) fn answer(&mut self, dst: NodeId, query_id: u32, track: bool) -> Outgoing {
        let version = self.local.version();
        if track {
            let ps = self.sync.entry(dst).or_default();
            ps.acked = Some(version);
            // This answer supersedes any owed one: the node waits for its latest query only.
            ps.owed_answer = None;
        }
        Outgoing {
            dst,
            packet_type: PacketType::STATUS_RESPONSE,
            payload: StatusAnswer::encode_with(query_id, version, self.local.encoded()),
            answers: Some(query_id),
        }
    }

    /// The answer owed to `dst`, if any.
    pub(super) fn owed(&mut self, dst: NodeId) -> Option<Outgoing> {
        let id = self.sync.get_mut(&dst)?.owed_answer.take()?;
        Some(self.answer(dst, id, true))
    }

    /// Sends a new query to `dst` at `now`, superseding any outstanding one: only the newest
    /// query's answer will be accepted. It waits `timeout`, doubled for each query to `dst`
    /// in a row that timed out.
    pub(super) fn start_query(&mut self, dst: NodeId, now: Instant, timeout: Duration) -> Outgoing {
        let ps = self.sync.entry(dst).or_default();
        let id = fresh_query_id(ps.query.map(|q| q.id));
        let wait = timeout.saturating_mul(1 << ps.missed.min(MAX_QUERY_BACKOFF));
        ps.query = Some(InFlight {
            id,
            deadline: now + wait,
        });
        Outgoing {
            dst,
            packet_type: PacketType::STATUS_REQUEST,
            payload: StatusQuery { query_id: id }.encode(),
            answers: None,
        }
    }

    pub(super) fn forget(&mut self, node: &NodeId) -> Option<PeerStatus> {
        self.sync.remove(node);
        self.table.remove(node)
    }
}
