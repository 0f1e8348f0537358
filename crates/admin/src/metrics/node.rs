//! Node-wide families: identity, what the node did with the packets it handled, latency
//! histograms, routes, status synchronization, closing links, and the process.

use std::fmt;
use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::encoding::DescriptorEncoder;

use super::families::{counter, counters, gauge, gauges, histogram, Labels};
use crate::procfs;
use chainmesh::node::NodeHandle;

/// Bytes in the KiB the kernel reports.
const KIB: f64 = 1024.0;

pub(super) fn encode(enc: &mut DescriptorEncoder, node: &NodeHandle) -> fmt::Result {
    let info: Labels = vec![
        ("version", env!("CARGO_PKG_VERSION").to_owned()),
        ("node_id", node.node_id().to_string()),
    ];
    gauges(
        enc,
        "chainmesh_build_info",
        "Build and identity of this node; always 1.",
        [(info, 1.0)],
    )?;
    packets(enc, node)?;
    histogram(
        enc,
        "chainmesh_request_duration_seconds",
        "Requests made by this node until their response or remote error.",
        &node.stats().request_latency.snapshot(),
    )?;
    histogram(
        enc,
        "chainmesh_link_rtt_seconds",
        "Round trips of pings answered by a direct neighbour.",
        &node.stats().link_rtt.snapshot(),
    )?;
    gauge(
        enc,
        "chainmesh_routes",
        "Destinations in the routing table.",
        node.routes().len() as f64,
    )?;
    gauge(
        enc,
        "chainmesh_routing_lists",
        "Other nodes' signed neighbour lists held.",
        node.routing_lists() as f64,
    )?;
    status(enc, node)?;
    undelivered(enc, node)?;
    process(enc)
}

/// Relays, drops and deliveries.
fn packets(enc: &mut DescriptorEncoder, node: &NodeHandle) -> fmt::Result {
    let s = node.stats();
    let plain = [
        (
            "chainmesh_relayed_packets",
            "Copies of other nodes' packets handed to their next hop.",
            &s.relayed,
        ),
        (
            "chainmesh_duplicate_packets",
            "Messages dropped because they had been handled already (deduplicated).",
            &s.duplicates,
        ),
        (
            "chainmesh_ttl_dropped_packets",
            "Packets for other nodes dropped with no relay hops left.",
            &s.ttl_dropped,
        ),
        (
            "chainmesh_no_route_dropped_packets",
            "Packets for other nodes dropped with no route to their destination.",
            &s.no_route_dropped,
        ),
        (
            "chainmesh_unhandled_messages",
            "Messages for a module no handler is registered for.",
            &s.unhandled,
        ),
    ];
    for (name, help, c) in plain {
        counter(enc, name, help, c.load(Relaxed))?;
    }
    let (per_module, other) = s.delivered_by_module();
    let rows = per_module
        .into_iter()
        .map(|(m, n)| (vec![("module", m.to_string())], n))
        .chain((other > 0).then(|| (vec![("module", "other".to_owned())], other)));
    counters(
        enc,
        "chainmesh_module_messages",
        "Messages handed to each module's handler.",
        rows,
    )
}

/// How current the other nodes' statuses are.
fn status(enc: &mut DescriptorEncoder, node: &NodeHandle) -> fmt::Result {
    let statuses = node.peer_statuses();
    let ages: Vec<(Labels, f64)> = statuses
        .iter()
        .map(|s| {
            let age = s.received_at.elapsed().as_secs_f64();
            (vec![("node_id", s.node.to_string())], age)
        })
        .collect();
    gauge(
        enc,
        "chainmesh_status_nodes",
        "Other nodes whose status this node holds.",
        statuses.len() as f64,
    )?;
    gauge(
        enc,
        "chainmesh_status_sync_lag_seconds",
        "Age of the stalest status held: how far behind status synchronization is.",
        ages.iter().map(|(_, a)| *a).fold(0.0, f64::max),
    )?;
    gauges(
        enc,
        "chainmesh_status_age_seconds",
        "Time since each node's status was last received.",
        ages,
    )
}

/// What closing links still held.
fn undelivered(enc: &mut DescriptorEncoder, node: &NodeHandle) -> fmt::Result {
    let c = node.undelivered_counts();
    counters(
        enc,
        "chainmesh_undelivered_messages",
        "This node's messages a closing link still held: never written (unsent) or with \
         their write under way (maybe-sent).",
        [
            (vec![("fate", "unsent".to_owned())], c.unsent),
            (vec![("fate", "maybe-sent".to_owned())], c.maybe_sent),
        ],
    )?;
    counter(
        enc,
        "chainmesh_undelivered_relayed_packets",
        "Packets relayed for other nodes that a closing link still held.",
        c.relayed,
    )?;
    counter(
        enc,
        "chainmesh_undelivered_requests_failed",
        "Requests failed at once because their link closed before writing them.",
        c.requests_failed,
    )?;
    counter(
        enc,
        "chainmesh_undelivered_undecoded_bytes",
        "Bytes a closing link held that did not decode as packets.",
        c.undecoded_bytes,
    )
}

/// The process as the kernel sees it (Linux; absent elsewhere).
fn process(enc: &mut DescriptorEncoder) -> fmt::Result {
    let Some(p) = procfs::sample_self() else {
        return Ok(());
    };
    gauge(
        enc,
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        p.rss_kb as f64 * KIB,
    )?;
    gauge(
        enc,
        "process_open_fds",
        "Open file descriptors.",
        p.fds as f64,
    )
}
