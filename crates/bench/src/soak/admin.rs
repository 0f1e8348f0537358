//! What a node's admin API says about its queues and links: `GET /metrics` (Prometheus text)
//! and `GET /v1/amop`, fetched with a short timeout, since a node being restarted or stopped
//! must cost the sampler one empty reading, not a stall.

use std::time::Duration;

/// Queue and link gauges of one node at one time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdminSample {
    /// Peers with a live session (`chainmesh_peers_connected`).
    pub peers: u64,
    /// Packets refused because a peer's write queue was full, summed over peers
    /// (`chainmesh_peer_dropped_packets_total`).
    pub dropped_out: u64,
    /// Bytes queued for the node's SDK sessions, summed (`/v1/amop` `sessions[].queued_bytes`).
    pub amop_queued_bytes: u64,
    /// SDK sessions open (`chainmesh_amop_sessions_open`).
    pub amop_sessions: u64,
}

/// Fetches [`AdminSample`] from the admin API at `addr`; `None` when the node does not answer.
pub fn sample(agent: &ureq::Agent, addr: &str) -> Option<AdminSample> {
    let metrics = get(agent, addr, "/metrics")?;
    let mut s = AdminSample {
        peers: metric_sum(&metrics, "chainmesh_peers_connected")?,
        dropped_out: metric_sum(&metrics, "chainmesh_peer_dropped_packets_total").unwrap_or(0),
        amop_sessions: metric_sum(&metrics, "chainmesh_amop_sessions_open").unwrap_or(0),
        amop_queued_bytes: 0,
    };
    if s.amop_sessions > 0 {
        let amop = get(agent, addr, "/v1/amop")?;
        s.amop_queued_bytes = serde_json::from_str::<serde_json::Value>(&amop)
            .ok()
            .map_or(0, |v| amop_queued_bytes(&v));
    }
    Some(s)
}

/// An agent whose every request ends within `timeout`.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(true)
        .build()
        .into()
}

fn get(agent: &ureq::Agent, addr: &str, path: &str) -> Option<String> {
    agent
        .get(&format!("http://{addr}{path}"))
        .call()
        .ok()?
        .body_mut()
        .read_to_string()
        .ok()
}

/// The sum of every sample of metric `name` (any labels) in Prometheus text; `None` when it
/// has none. Values are counters and gauges of whole numbers; a fractional or negative one is
/// not a value this node writes and is skipped.
pub fn metric_sum(text: &str, name: &str) -> Option<u64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        // The name must end here: `chainmesh_peers_connected` is not `..._connected_total`.
        let rest = match rest.chars().next() {
            Some('{') => rest.split_once('}').map_or("", |(_, v)| v),
            Some(' ') => rest,
            _ => continue,
        };
        if let Some(v) = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
        {
            found = Some(found.unwrap_or(0u64).saturating_add(v));
        }
    }
    found
}

/// Bytes queued for SDK sessions in a `/v1/amop` answer.
pub fn amop_queued_bytes(amop: &serde_json::Value) -> u64 {
    amop["sessions"].as_array().map_or(0, |sessions| {
        sessions
            .iter()
            .filter_map(|s| s["queued_bytes"].as_u64())
            .fold(0u64, u64::saturating_add)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = "\
# HELP chainmesh_peers_connected Peers with a live session.
# TYPE chainmesh_peers_connected gauge
chainmesh_peers_connected 4
chainmesh_peers_connected_total 99
chainmesh_peer_dropped_packets_total{peer=\"b306b4c8\",address=\"127.0.0.1:47320\"} 3
chainmesh_peer_dropped_packets_total{peer=\"a0\",address=\"127.0.0.1:47321\"} 5
chainmesh_amop_sessions_open 1.5
";

    #[test]
    fn a_metric_is_summed_over_its_labels_and_not_confused_with_a_longer_name() {
        assert_eq!(metric_sum(METRICS, "chainmesh_peers_connected"), Some(4));
        assert_eq!(
            metric_sum(METRICS, "chainmesh_peer_dropped_packets_total"),
            Some(8)
        );
    }

    #[test]
    fn a_missing_or_unreadable_metric_gives_nothing() {
        assert_eq!(metric_sum(METRICS, "chainmesh_refusals_total"), None);
        assert_eq!(metric_sum(METRICS, "chainmesh_amop_sessions_open"), None);
    }

    #[test]
    fn amop_queued_bytes_are_summed_over_sessions() {
        let v = serde_json::json!({"sessions": [{"queued_bytes": 10}, {"queued_bytes": 32}, {}]});
        assert_eq!(amop_queued_bytes(&v), 42);
        assert_eq!(amop_queued_bytes(&serde_json::json!({"error": "x"})), 0);
    }
}
