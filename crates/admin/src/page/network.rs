//! `GET /v1/network`: every node this node knows, the links between them, and recent
//! events: what the page draws.
//!
//! A node is known from this node's sessions and configured peers, its routing table, the
//! links routing knows of ([`NodeHandle::route_links`]) and the statuses it holds. Links
//! are `direct` (this node's sessions, with traffic figures) or `learnt` (between two other
//! nodes, attested by both ends' signed neighbour lists).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use serde::Serialize;

use super::events::{now_ms, EventEntry, EventRing};
use super::samples::Samples;
use crate::peers::peers_view;
use chainmesh::identity::NodeId;
use chainmesh::node::NodeHandle;
use chainmesh::session::SessionHandle;
use chainmesh::status::view::{status_view, StatusFields};

/// `GET /v1/network`.
#[derive(Debug, Serialize)]
pub struct NetworkView {
    /// This node.
    pub node_id: NodeId,
    /// Where it accepts P2P connections.
    pub listen: SocketAddr,
    /// The chainmesh version.
    pub version: &'static str,
    /// The routing table's seq.
    pub route_seq: u32,
    /// When this view was made, milliseconds since the Unix epoch.
    pub now_ms: u64,
    /// How long the page waits before it asks again, in milliseconds
    /// (`admin.page_refresh`).
    pub refresh_ms: u64,
    /// Every known node, this one first, then by node ID.
    pub nodes: Vec<NodeEntry>,
    /// Every known link, by its ends.
    pub links: Vec<LinkEntry>,
    /// Recent events, newest first (at most `admin.page_max_events`).
    pub events: Vec<EventEntry>,
}

/// A node of [`NetworkView`].
#[derive(Debug, Serialize)]
pub struct NodeEntry {
    /// Its ID.
    pub node_id: NodeId,
    /// `self`, `direct` (a live session), `relayed` (reached through other nodes),
    /// `connecting` (configured, being dialed) or `unreachable` (known, no route now).
    pub state: &'static str,
    /// Hops to it, when reachable.
    pub distance: Option<u8>,
    /// The neighbour packets for it leave by, when reachable.
    pub next_hop: Option<NodeId>,
    /// Its configured address, or for an inbound peer its IP and listen port.
    pub address: Option<String>,
    /// Why its last connection ended or the last dial failed.
    pub last_error: Option<String>,
    /// Milliseconds since its status copy arrived (0 for this node).
    pub status_age_ms: Option<u64>,
    /// Its status as this node holds it: seq, epoch, groups, topics, application status.
    pub status: Option<StatusFields>,
}

/// A link of [`NetworkView`].
#[derive(Debug, Serialize)]
pub struct LinkEntry {
    /// One end (the smaller node ID).
    pub a: NodeId,
    /// The other end.
    pub b: NodeId,
    /// `direct` (a session of this node) or `learnt` (from routing). Only a direct link has
    /// figures: this node measures its own sessions, and nothing of a link between two
    /// others, so every figure below is `None` for a learnt link.
    pub kind: &'static str,
    /// Bytes read from the peer over this session, for a direct link.
    pub bytes_in: Option<u64>,
    /// Bytes written to it.
    pub bytes_out: Option<u64>,
    /// Bytes per second read lately, once measured.
    pub in_per_s: Option<u64>,
    /// Bytes per second written lately.
    pub out_per_s: Option<u64>,
    /// The last ping's round trip in microseconds, once measured.
    pub rtt_us: Option<u64>,
    /// Whether the last ping got no answer in time.
    pub ping_failed: bool,
}

fn node_entry(node_id: NodeId, state: &'static str) -> NodeEntry {
    NodeEntry {
        node_id,
        state,
        distance: None,
        next_hop: None,
        address: None,
        last_error: None,
        status_age_ms: None,
        status: None,
    }
}

fn pair(a: NodeId, b: NodeId) -> (NodeId, NodeId) {
    if a < b {
        (a, b)
    } else {
        (b, a)
    }
}

fn link_entry(
    (a, b): (NodeId, NodeId),
    session: Option<&SessionHandle>,
    samples: &Samples,
) -> LinkEntry {
    let Some(s) = session else {
        return LinkEntry {
            a,
            b,
            kind: "learnt",
            bytes_in: None,
            bytes_out: None,
            in_per_s: None,
            out_per_s: None,
            rtt_us: None,
            ping_failed: false,
        };
    };
    let rate = samples.rate(&s.peer);
    let rtt = samples.rtt(&s.peer);
    LinkEntry {
        a,
        b,
        kind: "direct",
        bytes_in: Some(s.stats.bytes_in.load(Relaxed)),
        bytes_out: Some(s.stats.bytes_out.load(Relaxed)),
        in_per_s: rate.map(|r| r.in_per_s),
        out_per_s: rate.map(|r| r.out_per_s),
        rtt_us: rtt
            .flatten()
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        ping_failed: matches!(rtt, Some(None)),
    }
}

/// The view of `node` now, for a page that asks again after `refresh`.
pub(super) fn network_view(
    node: &NodeHandle,
    events: &EventRing,
    samples: &Samples,
    refresh: Duration,
) -> NetworkView {
    let me = node.node_id();
    let mut nodes: BTreeMap<NodeId, NodeEntry> = BTreeMap::new();
    let status = status_view(node.status());
    let mut own = node_entry(me, "self");
    own.address = Some(node.listen_addr().to_string());
    own.status_age_ms = Some(0);
    own.status = Some(status.own);
    for p in status.nodes {
        let n = nodes
            .entry(p.node_id)
            .or_insert_with(|| node_entry(p.node_id, "unreachable"));
        n.status_age_ms = Some(p.age_ms);
        n.status = Some(p.status);
    }
    // A session routing has not taken in yet is a link all the same.
    let sessions = node.peers().sessions();
    let mut links: BTreeSet<(NodeId, NodeId)> = node.route_links().into_iter().collect();
    links.extend(sessions.iter().map(|s| pair(me, s.peer)));
    for end in links
        .iter()
        .flat_map(|(a, b)| [*a, *b])
        .filter(|e| *e != me)
    {
        nodes
            .entry(end)
            .or_insert_with(|| node_entry(end, "unreachable"));
    }
    for r in node.routes() {
        let n = nodes
            .entry(r.dst)
            .or_insert_with(|| node_entry(r.dst, "relayed"));
        n.state = if r.distance <= 1 { "direct" } else { "relayed" };
        n.distance = Some(r.distance);
        n.next_hop = Some(r.next_hop);
    }
    for p in peers_view(node).peers {
        let Some(id) = p.node_id.filter(|id| *id != me) else {
            continue;
        };
        let n = nodes
            .entry(id)
            .or_insert_with(|| node_entry(id, "unreachable"));
        if p.connected {
            n.state = "direct";
        } else if n.distance.is_none() && p.state == "connecting" {
            n.state = "connecting";
        }
        n.address = Some(p.address);
        n.last_error = p.last_error;
    }
    let links = links
        .into_iter()
        .map(|(a, b)| {
            let peer = if a == me { b } else { a };
            let own_link = a == me || b == me;
            let session = sessions.iter().find(|s| own_link && s.peer == peer);
            link_entry((a, b), session, samples)
        })
        .collect();
    NetworkView {
        node_id: me,
        listen: node.listen_addr(),
        version: env!("CARGO_PKG_VERSION"),
        route_seq: node.route_seq(),
        now_ms: now_ms(),
        refresh_ms: u64::try_from(refresh.as_millis()).unwrap_or(u64::MAX),
        nodes: std::iter::once(own).chain(nodes.into_values()).collect(),
        links,
        events: events.newest_first(),
    }
}
