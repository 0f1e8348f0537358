//! Per-peer families, labelled by what stays the same across reconnects: `node_id` (the full
//! hex node ID) and `address` (the configured address, empty for a peer that only dials in).
//! The traffic counters are the core's per node ID totals, so a peer that reconnects goes on
//! in the same series.

use std::collections::HashMap;
use std::fmt;

use prometheus_client::encoding::DescriptorEncoder;

use super::families::{counter, counters, gauge, gauges, Labels};
use chainmesh::identity::NodeId;
use chainmesh::node::NodeHandle;
use chainmesh::peers::{TargetState, Totals};

type Get = fn(&Totals) -> u64;

pub(super) fn encode(enc: &mut DescriptorEncoder, node: &NodeHandle) -> fmt::Result {
    let peers = node.peers();
    let targets = peers.targets();
    let configured: HashMap<NodeId, &str> = targets
        .iter()
        .filter_map(|t| Some((t.node_id?, t.address.as_str())))
        .collect();
    let labels = |id: &NodeId| -> Labels {
        vec![
            ("node_id", id.to_string()),
            (
                "address",
                configured.get(id).copied().unwrap_or("").to_owned(),
            ),
        ]
    };
    let traffic = peers.traffic();
    let per_peer: [(&str, &str, Get); 5] = [
        (
            "chainmesh_peer_received_bytes",
            "TLS payload bytes read from the peer, over all its connections.",
            |t| t.bytes_in,
        ),
        (
            "chainmesh_peer_sent_bytes",
            "TLS payload bytes written to the peer, over all its connections.",
            |t| t.bytes_out,
        ),
        (
            "chainmesh_peer_received_packets",
            "Packets decoded from the peer.",
            |t| t.packets_in,
        ),
        (
            "chainmesh_peer_sent_packets",
            "Packets written to the peer, heartbeats included.",
            |t| t.packets_out,
        ),
        (
            "chainmesh_peer_dropped_packets",
            "Packets for the peer given up because its write queue was full.",
            |t| t.dropped_out,
        ),
    ];
    for (name, help, get) in per_peer {
        let rows = traffic.iter().map(|p| (labels(&p.peer), get(&p.totals)));
        counters(enc, name, help, rows)?;
    }
    let live = || traffic.iter().filter(|p| p.addr.is_some());
    gauges(
        enc,
        "chainmesh_peer_queue_bytes",
        "Bytes waiting in the peer's write queue.",
        live().map(|p| (labels(&p.peer), p.queued_bytes as f64)),
    )?;
    gauges(
        enc,
        "chainmesh_peer_queue_capacity_bytes",
        "The bound of the peer's write queue.",
        live().map(|p| (labels(&p.peer), p.queue_capacity as f64)),
    )?;
    let up = targets.iter().map(|t| {
        let id = t.node_id.map(|i| i.to_string()).unwrap_or_default();
        let is_up = matches!(t.state, TargetState::Connected);
        (
            vec![("node_id", id), ("address", t.address.clone())],
            if is_up { 1.0 } else { 0.0 },
        )
    });
    gauges(
        enc,
        "chainmesh_peer_up",
        "Whether each configured peer is connected (1) or not (0).",
        up,
    )?;
    gauge(
        enc,
        "chainmesh_peers_connected",
        "Peers with a live session.",
        live().count() as f64,
    )?;
    counter(
        enc,
        "chainmesh_peer_connects",
        "Peers that became connected.",
        peers.connects(),
    )?;
    let reason = |(kind, n): (&str, u64)| (vec![("reason", kind.to_owned())], n);
    counters(
        enc,
        "chainmesh_peer_disconnects",
        "Peers that stopped being connected, by reason.",
        peers.disconnect_counts().into_iter().map(reason),
    )?;
    counters(
        enc,
        "chainmesh_handshake_failures",
        "Connections refused during or right after the TLS and protocol handshakes, \
         either direction, by reason.",
        peers.refusal_counts().into_iter().map(reason),
    )
}
