//! `[flow_control]` families: the limits in use, their current rates, and what they held
//! back (sends delayed or failed, incoming messages refused, packets dropped by type).

use std::fmt;

use prometheus_client::encoding::DescriptorEncoder;

use super::families::{counters, gauge, gauges, Labels};
use chainmesh::flow::{FlowSnapshot, LimiterView};
use chainmesh::node::NodeHandle;

/// Every outgoing limiter with its labels: which limit and, for a link or group, which one.
fn outgoing(s: &FlowSnapshot) -> Vec<(Labels, &LimiterView)> {
    let mut rows: Vec<(Labels, &LimiterView)> = Vec::new();
    if let Some(t) = &s.total {
        rows.push((vec![("limit", "total".into()), ("key", String::new())], t));
    }
    for (peer, v) in &s.connections {
        rows.push((
            vec![("limit", "connection".into()), ("key", peer.to_string())],
            v,
        ));
    }
    for (group, v) in &s.groups {
        rows.push((vec![("limit", "group".into()), ("key", group.clone())], v));
    }
    rows
}

/// Every incoming limiter with its labels.
fn incoming(s: &FlowSnapshot) -> Vec<(Labels, &LimiterView)> {
    let modules = s
        .incoming_modules
        .iter()
        .map(|(m, v)| (vec![("limit", "module".into()), ("key", m.to_string())], v));
    let types = s.incoming_types.iter().map(|(t, v)| {
        (
            vec![("limit", "packet_type".into()), ("key", t.to_string())],
            v,
        )
    });
    modules.chain(types).collect()
}

pub(super) fn encode(enc: &mut DescriptorEncoder, node: &NodeHandle) -> fmt::Result {
    let s = node.flow_snapshot();
    gauge(
        enc,
        "chainmesh_flow_enabled",
        "1 when [flow_control] limits apply.",
        if s.enabled { 1.0 } else { 0.0 },
    )?;
    let out = outgoing(&s);
    gauges(
        enc,
        "chainmesh_flow_outgoing_limit_bytes_per_second",
        "Outgoing bandwidth limits in use.",
        out.iter().map(|(l, v)| (l.clone(), v.limit as f64)),
    )?;
    gauges(
        enc,
        "chainmesh_flow_outgoing_rate_bytes_per_second",
        "Bytes per second that passed each outgoing limit over its last complete window.",
        out.iter().map(|(l, v)| (l.clone(), v.rate as f64)),
    )?;
    let inc = incoming(&s);
    gauges(
        enc,
        "chainmesh_flow_incoming_limit_per_second",
        "Incoming rate limits in use, per module or packet type.",
        inc.iter().map(|(l, v)| (l.clone(), v.limit as f64)),
    )?;
    gauges(
        enc,
        "chainmesh_flow_incoming_rate_per_second",
        "Packets per second that passed each incoming limit over its last complete window.",
        inc.iter().map(|(l, v)| (l.clone(), v.rate as f64)),
    )?;
    let by_module = |f: fn(&chainmesh::flow::ModuleCounters) -> u64| {
        s.modules
            .iter()
            .map(move |(m, c)| (vec![("module", m.to_string())], f(c)))
    };
    counters(
        enc,
        "chainmesh_flow_sends_delayed",
        "Sends that waited for bandwidth tokens, by module.",
        by_module(|c| c.sends_delayed),
    )?;
    counters(
        enc,
        "chainmesh_flow_sends_failed",
        "Fail-fast sends refused over a bandwidth limit, by module.",
        by_module(|c| c.sends_failed),
    )?;
    counters(
        enc,
        "chainmesh_flow_incoming_refused",
        "Messages and requests refused over their module's incoming limit, by module.",
        by_module(|c| c.incoming_refused),
    )?;
    counters(
        enc,
        "chainmesh_flow_incoming_dropped",
        "Packets dropped over their type's incoming limit, by packet type.",
        s.types_dropped
            .iter()
            .map(|(t, n)| (vec![("packet_type", t.to_string())], *n)),
    )
}
