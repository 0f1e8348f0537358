//! `GET /metrics`: Prometheus text exposition of the node's counters, and `GET /`: a small
//! human status page. Both read the same live data as `/v1/peers`.

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::Extension;

use super::peers::peers_view;
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

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The status page: who this node is and how its peers are doing; refreshes itself.
pub(super) async fn page(State(node): State<NodeHandle>) -> Html<String> {
    let view = peers_view(&node);
    let mut rows = String::new();
    for p in &view.peers {
        let _ = write!(
            rows,
            "<tr class=\"{cls}\"><td><code>{id}</code></td><td>{addr}</td><td>{state}</td><td>{dir}</td>\
             <td class=n>{bi}</td><td class=n>{bo}</td><td class=n>{pi}</td><td class=n>{po}</td><td>{err}</td></tr>",
            cls = if p.connected { "up" } else { "down" },
            id = p.node_id.map(|i| i.short()).unwrap_or_else(|| "-".into()),
            addr = esc(&p.address),
            state = p.state,
            dir = p.direction.map(|d| format!("{d:?}").to_lowercase()).unwrap_or_default(),
            bi = p.bytes_in,
            bo = p.bytes_out,
            pi = p.packets_in,
            po = p.packets_out,
            err = esc(p.last_error.as_deref().unwrap_or("")),
        );
    }
    let connected = view.peers.iter().filter(|p| p.connected).count();
    Html(format!(
        "<!doctype html><html><head><meta charset=utf-8><meta http-equiv=refresh content=2>\
         <title>chainmesh {short}</title><style>\
         body{{font:14px system-ui,sans-serif;margin:2em;color:#222}}\
         table{{border-collapse:collapse}}td,th{{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}}\
         td.n{{text-align:right;font-variant-numeric:tabular-nums}}tr.up td:first-child{{border-left:4px solid #2a2}}\
         tr.down td:first-child{{border-left:4px solid #c33}}code{{font-size:13px}}</style></head><body>\
         <h1>chainmesh node <code>{short}</code></h1>\
         <p>node ID <code>{id}</code><br>P2P listen {listen} &middot; groups {groups} &middot; version {version}</p>\
         <h2>Peers: {connected} connected of {total}</h2>\
         <table><tr><th>node</th><th>address</th><th>state</th><th>direction</th><th>bytes in</th>\
         <th>bytes out</th><th>packets in</th><th>packets out</th><th>last event</th></tr>{rows}</table>\
         <p><a href=/v1/peers>/v1/peers</a> &middot; <a href=/v1/node>/v1/node</a> &middot; \
         <a href=/metrics>/metrics</a></p></body></html>",
        short = node.node_id().short(),
        id = node.node_id(),
        listen = node.listen_addr(),
        groups = esc(&node.groups().join(", ")),
        version = env!("CARGO_PKG_VERSION"),
        total = view.peers.len(),
    ))
}
