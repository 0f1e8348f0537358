//! The status table as the admin API serves it (`GET /v1/status`) and as `chainmesh status`
//! prints it. The same types serialize on the node and deserialize in the CLI.

use std::fmt::Write as _;
use std::time::Instant;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{NodeStatus, PeerStatus, StatusService, StatusVersion};
use crate::identity::NodeId;

/// Longest application status shown in the table, in characters.
const APP_COLUMN: usize = 40;

/// `GET /v1/status`: this node's status and every status it holds of other nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusView {
    /// This node's ID.
    pub node_id: NodeId,
    /// This node's own status.
    #[serde(rename = "self")]
    pub own: OwnStatusView,
    /// Other nodes' statuses, by node ID.
    pub nodes: Vec<PeerStatusView>,
}

/// A status's version and content, as both views show them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusFields {
    /// The status seq.
    pub seq: u32,
    /// The epoch, as 16 hex digits.
    pub epoch: String,
    /// Lowest protocol version.
    pub min_version: u16,
    /// Highest protocol version.
    pub max_version: u16,
    /// Groups.
    pub groups: Vec<String>,
    /// Node-level topics.
    pub topics: Vec<String>,
    /// AMOP topics.
    pub amop_topics: Vec<String>,
    /// The application status as lowercase hex.
    pub app_hex: String,
    /// The application status as UTF-8, invalid bytes replaced by U+FFFD.
    pub app_text: String,
}

/// This node's status in [`StatusView`].
pub type OwnStatusView = StatusFields;

/// Another node's status in [`StatusView`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerStatusView {
    /// The node.
    pub node_id: NodeId,
    /// Milliseconds since this copy arrived.
    pub age_ms: u64,
    /// Its version and content.
    #[serde(flatten)]
    pub status: StatusFields,
}

fn app_text(app: &Bytes) -> String {
    String::from_utf8_lossy(app).into_owned()
}

fn fields(version: StatusVersion, s: &NodeStatus) -> StatusFields {
    StatusFields {
        seq: version.seq,
        epoch: version.epoch_hex(),
        min_version: s.min_version,
        max_version: s.max_version,
        groups: s.groups.clone(),
        topics: s.topics.clone(),
        amop_topics: s.amop_topics.clone(),
        app_hex: hex::encode(&s.app),
        app_text: app_text(&s.app),
    }
}

fn peer_view(p: &PeerStatus, now: Instant) -> PeerStatusView {
    PeerStatusView {
        node_id: p.node,
        age_ms: u64::try_from(now.saturating_duration_since(p.received_at).as_millis())
            .unwrap_or(u64::MAX),
        status: fields(p.version, &p.status),
    }
}

/// The view of `svc` at `now` (ages are measured against it).
pub fn status_view_at(svc: &StatusService, now: Instant) -> StatusView {
    let (version, own) = svc.local();
    StatusView {
        node_id: svc.local_id(),
        own: fields(version, &own),
        nodes: svc.all().iter().map(|p| peer_view(p, now)).collect(),
    }
}

/// The view of `svc` now.
pub fn status_view(svc: &StatusService) -> StatusView {
    status_view_at(svc, tokio::time::Instant::now().into_std())
}

/// An application status fit for one table cell: text if it is printable UTF-8, else hex,
/// cut to [`APP_COLUMN`] characters.
fn app_cell(text: &str, hex: &str) -> String {
    let printable = !text.contains('\u{fffd}') && !text.chars().any(char::is_control);
    let s = if printable {
        text.to_owned()
    } else {
        format!("0x{hex}")
    };
    if s.chars().count() > APP_COLUMN {
        let cut: String = s.chars().take(APP_COLUMN - 1).collect();
        format!("{cut}…")
    } else {
        s
    }
}

fn age_cell(ms: u64) -> String {
    if ms < 10_000 {
        format!("{}.{}s", ms / 1000, (ms % 1000) / 100)
    } else if ms < 3_600_000 {
        format!("{}s", ms / 1000)
    } else {
        format!("{}h", ms / 3_600_000)
    }
}

fn list_cell(l: &[String]) -> String {
    if l.is_empty() {
        "-".to_owned()
    } else {
        l.join(",")
    }
}

/// The table `chainmesh status` prints: one line per node, this node first and marked `*`.
pub fn format_table(view: &StatusView) -> String {
    let mut rows: Vec<[String; 6]> = vec![[
        "NODE".into(),
        "SEQ".into(),
        "AGE".into(),
        "GROUPS".into(),
        "TOPICS".into(),
        "APP".into(),
    ]];
    let o = &view.own;
    let topics = |t: &[String], a: &[String]| {
        let mut all: Vec<String> = t.to_vec();
        all.extend(a.iter().map(|x| format!("amop:{x}")));
        list_cell(&all)
    };
    rows.push([
        format!("*{}", view.node_id.short()),
        o.seq.to_string(),
        "-".into(),
        list_cell(&o.groups),
        topics(&o.topics, &o.amop_topics),
        app_cell(&o.app_text, &o.app_hex),
    ]);
    for p in &view.nodes {
        let n = &p.status;
        rows.push([
            format!(" {}", p.node_id.short()),
            n.seq.to_string(),
            age_cell(p.age_ms),
            list_cell(&n.groups),
            topics(&n.topics, &n.amop_topics),
            app_cell(&n.app_text, &n.app_hex),
        ]);
    }
    let mut widths = [0usize; 6];
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in r.iter().zip(widths).enumerate() {
            if i + 1 == r.len() {
                line.push_str(cell);
            } else {
                // Writing to a String cannot fail.
                let _ = write!(line, "{cell:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_and_table() {
        let view = StatusView {
            node_id: NodeId::from_bytes([0xab; 64]),
            own: fields(
                StatusVersion::new(0x1f, 3),
                &NodeStatus {
                    app: Bytes::from_static(b"height=7"),
                    ..NodeStatus::with_groups(["group0"])
                },
            ),
            nodes: vec![PeerStatusView {
                node_id: NodeId::from_bytes([0x01; 64]),
                age_ms: 1234,
                status: StatusFields {
                    seq: 12,
                    epoch: "00000000000000ff".into(),
                    min_version: 1,
                    max_version: 1,
                    groups: vec!["group0".into(), "group1".into()],
                    topics: vec!["blocks".into()],
                    amop_topics: vec!["sdk".into()],
                    app_hex: "00ff".into(),
                    app_text: "\0\u{fffd}".into(),
                },
            }],
        };
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["self"]["epoch"], "000000000000001f");
        assert_eq!(json["self"]["app_text"], "height=7");
        assert_eq!(json["self"]["app_hex"], hex::encode("height=7"));
        assert_eq!(json["nodes"][0]["age_ms"], 1234);
        assert_eq!(
            json["nodes"][0]["seq"], 12,
            "the status fields sit flat in each entry"
        );
        let back: StatusView = serde_json::from_value(json).unwrap();
        assert_eq!(back, view);
        let table = format_table(&view);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("NODE"));
        assert!(lines[1].starts_with("*abababab"));
        assert!(lines[1].ends_with("height=7"));
        assert!(lines[2].contains("1.2s"));
        assert!(lines[2].contains("group0,group1"));
        assert!(lines[2].contains("blocks,amop:sdk"));
        assert!(lines[2].ends_with("0x00ff"));
    }

    #[test]
    fn cells() {
        assert_eq!(age_cell(999), "0.9s");
        assert_eq!(age_cell(65_000), "65s");
        assert_eq!(age_cell(7_300_000), "2h");
        let long = "x".repeat(100);
        assert_eq!(app_cell(&long, "").chars().count(), APP_COLUMN);
        assert_eq!(app_cell("", ""), "");
    }
}
