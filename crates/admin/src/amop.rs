//! `GET /v1/amop` and the AMOP families of `/metrics`: what the node's channel port is doing.

use std::fmt;

use prometheus_client::encoding::DescriptorEncoder;

use axum::{Extension, Json};
use serde::Serialize;

use super::ApiError;
use chainmesh::amop::{AmopHandle, AmopStats, AmopView};

/// The node's AMOP, when it runs a channel port; handlers reach it as an [`Extension`].
pub(super) type MaybeAmop = Option<AmopHandle>;

/// `GET /v1/amop`: the channel port's sessions and topics, and AMOP's counters.
#[derive(Debug, Serialize)]
pub struct AmopInfo {
    /// Where the channel port listens.
    pub listen: String,
    /// Sessions, local topics, and which other nodes hold which topics.
    #[serde(flatten)]
    pub view: AmopView,
    /// Counters since start.
    pub stats: AmopStats,
}

pub(super) async fn get(Extension(amop): Extension<MaybeAmop>) -> Result<Json<AmopInfo>, ApiError> {
    let amop = amop.ok_or_else(|| {
        ApiError::not_found(
            "this node runs no channel port (set [channel] listen to serve SDK clients)",
        )
    })?;
    Ok(Json(AmopInfo {
        listen: amop.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        view: amop.view(),
        stats: amop.stats(),
    }))
}

/// Writes the `chainmesh_amop_*` families of `/metrics`.
pub(super) fn encode(enc: &mut DescriptorEncoder, amop: &AmopHandle) -> fmt::Result {
    let s = amop.stats();
    super::metrics::gauge(
        enc,
        "chainmesh_amop_sessions_open",
        "SDK sessions open on the channel port.",
        s.sessions_open as f64,
    )?;
    let counters: [(&str, &str, u64); 21] = [
        (
            "sessions_accepted",
            "SDK sessions admitted after their TLS handshake.",
            s.sessions_accepted,
        ),
        (
            "sessions_refused",
            "SDK connections refused by a session cap.",
            s.sessions_refused,
        ),
        (
            "handshakes_failed",
            "Channel TLS handshakes that failed or timed out.",
            s.handshakes_failed,
        ),
        (
            "protocol_errors",
            "SDK sessions closed for a protocol violation.",
            s.protocol_errors,
        ),
        ("frames_in", "Frames read from SDK sessions.", s.frames_in),
        ("frames_out", "Frames queued to SDK sessions.", s.frames_out),
        (
            "frames_dropped",
            "Frames dropped on a full or closed SDK session queue.",
            s.frames_dropped,
        ),
        (
            "unicasts",
            "0x30 frames published by local sessions.",
            s.unicasts,
        ),
        (
            "unicast_acked",
            "Unicasts answered by a subscriber's 0x31.",
            s.unicast_acked,
        ),
        (
            "unicast_no_subscriber",
            "Unicasts answered 100: no node held the topic.",
            s.unicast_no_subscriber,
        ),
        (
            "unicast_failed",
            "Unicasts answered 104: every holder failed.",
            s.unicast_failed,
        ),
        (
            "subscriber_failures",
            "Pushes to a local subscriber not acked in time.",
            s.subscriber_failures,
        ),
        (
            "unmatched_acks",
            "0x31 frames that matched no pending push.",
            s.unmatched_acks,
        ),
        (
            "multicasts",
            "0x35 frames published by local sessions.",
            s.multicasts,
        ),
        (
            "multicast_deliveries",
            "0x35 frames queued to local subscribers.",
            s.multicast_deliveries,
        ),
        (
            "multicast_dropped",
            "0x35 frames dropped on a full queue.",
            s.multicast_dropped,
        ),
        (
            "forwarded_in",
            "AMOP packets (type 7) received from other nodes.",
            s.forwarded_in,
        ),
        (
            "forwarded_out",
            "AMOP packets (type 7) sent to other nodes.",
            s.forwarded_out,
        ),
        (
            "forwarded_invalid",
            "AMOP packets that did not decode or answered nothing pending.",
            s.forwarded_invalid,
        ),
        (
            "rpc_calls",
            "JSON-RPC requests (0x12) answered.",
            s.rpc_calls,
        ),
        (
            "over_limit",
            "Requests refused with 103 by an in-flight cap.",
            s.over_limit,
        ),
    ];
    for (name, help, value) in counters {
        super::metrics::counter(enc, &format!("chainmesh_amop_{name}"), help, value)?;
    }
    Ok(())
}
