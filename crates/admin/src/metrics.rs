//! `GET /metrics`: Prometheus text exposition of the node's counters.

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Extension;

use chainmesh::amop::AmopHandle;
use chainmesh::node::NodeHandle;

/// Escapes a Prometheus label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders every metric in the Prometheus text format (version 0.0.4); the AMOP families
/// only when the node runs a channel port.
pub fn render(node: &NodeHandle, amop: Option<&AmopHandle>) -> String {
    let mut out = String::new();
    let peers = node.peers();
    let sessions = peers.sessions();
    let targets = peers.targets();
    let _ = writeln!(
        out,
        "# HELP chainmesh_build_info Build and identity of this node."
    );
    let _ = writeln!(out, "# TYPE chainmesh_build_info gauge");
    let _ = writeln!(
        out,
        "chainmesh_build_info{{version=\"{}\",node_id=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        node.node_id()
    );
    let _ = writeln!(
        out,
        "# HELP chainmesh_peers_connected Peers with a live session."
    );
    let _ = writeln!(out, "# TYPE chainmesh_peers_connected gauge");
    let _ = writeln!(out, "chainmesh_peers_connected {}", sessions.len());
    let _ = writeln!(
        out,
        "# HELP chainmesh_peers_configured Configured peer addresses."
    );
    let _ = writeln!(out, "# TYPE chainmesh_peers_configured gauge");
    let _ = writeln!(out, "chainmesh_peers_configured {}", targets.len());
    type Counter = fn(&chainmesh::session::SessionStats) -> u64;
    let per_peer: [(&str, &str, &str, Counter); 5] = [
        (
            "chainmesh_peer_bytes_in_total",
            "counter",
            "TLS payload bytes read from the peer.",
            |s| s.bytes_in.load(Relaxed),
        ),
        (
            "chainmesh_peer_bytes_out_total",
            "counter",
            "TLS payload bytes written to the peer.",
            |s| s.bytes_out.load(Relaxed),
        ),
        (
            "chainmesh_peer_packets_in_total",
            "counter",
            "Packets decoded from the peer.",
            |s| s.packets_in.load(Relaxed),
        ),
        (
            "chainmesh_peer_packets_out_total",
            "counter",
            "Packets written to the peer.",
            |s| s.packets_out.load(Relaxed),
        ),
        (
            "chainmesh_peer_dropped_out_total",
            "counter",
            "Packets refused because the peer's write queue was full.",
            |s| s.dropped_out.load(Relaxed),
        ),
    ];
    for (name, kind, help, get) in per_peer {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for s in &sessions {
            let _ = writeln!(
                out,
                "{name}{{peer=\"{}\",address=\"{}\"}} {}",
                s.peer.short(),
                label(&s.addr.to_string()),
                get(&s.stats)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP chainmesh_refusals_total Connections refused, by kind of reason."
    );
    let _ = writeln!(out, "# TYPE chainmesh_refusals_total counter");
    for (kind, n) in peers.refusal_counts() {
        let _ = writeln!(out, "chainmesh_refusals_total{{reason=\"{kind}\"}} {n}");
    }
    undelivered(&mut out, node);
    if let Some(amop) = amop {
        super::amop::render(&mut out, amop);
    }
    out
}

/// What closing links still held: this node's messages by whether they may have arrived,
/// relayed packets, requests failed for it.
fn undelivered(out: &mut String, node: &NodeHandle) {
    let c = node.undelivered_counts();
    let _ = writeln!(
        out,
        "# HELP chainmesh_undelivered_total This node's messages a closing link still held, per \
         destination: never written (unsent) or with their write under way (maybe-sent)."
    );
    let _ = writeln!(out, "# TYPE chainmesh_undelivered_total counter");
    let _ = writeln!(
        out,
        "chainmesh_undelivered_total{{fate=\"unsent\"}} {}",
        c.unsent
    );
    let _ = writeln!(
        out,
        "chainmesh_undelivered_total{{fate=\"maybe-sent\"}} {}",
        c.maybe_sent
    );
    let families = [
        (
            "chainmesh_undelivered_relayed_total",
            "Packets relayed for other nodes that a closing link still held.",
            c.relayed,
        ),
        (
            "chainmesh_undelivered_requests_failed_total",
            "Requests failed at once because their link closed before writing them.",
            c.requests_failed,
        ),
        (
            "chainmesh_undelivered_undecoded_bytes_total",
            "Bytes a closing link held that did not decode as packets.",
            c.undecoded_bytes,
        ),
    ];
    for (name, help, n) in families {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        let _ = writeln!(out, "{name} {n}");
    }
}

pub(super) async fn metrics(
    State(node): State<NodeHandle>,
    Extension(amop): Extension<super::amop::MaybeAmop>,
) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&node, amop.as_ref()),
    )
}
