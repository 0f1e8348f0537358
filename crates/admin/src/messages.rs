//! Messaging through the admin API: `POST /v1/messages` (unicast, multicast or broadcast
//! from this node), `POST /v1/ping` (one echo request) and `GET /v1/routes` (the routing
//! table).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::ApiError;
use chainmesh::identity::NodeId;
use chainmesh::node::{Fanout, NodeHandle, RequestError, SendError};
use chainmesh::routing::RouteInfo;

/// Longest wait for queue room before `POST /v1/messages` gives up with 503.
const SEND_WAIT: Duration = Duration::from_secs(10);
/// Default timeout of `POST /v1/ping`.
const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest timeout a ping may ask for.
const PING_TIMEOUT_MAX: Duration = Duration::from_secs(60);

fn error(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        message: message.into(),
    }
}

fn send_error(e: SendError) -> ApiError {
    let status = match &e {
        SendError::Unreachable(_) => StatusCode::NOT_FOUND,
        SendError::QueueFull(_) => StatusCode::SERVICE_UNAVAILABLE,
        SendError::BandwidthExceeded { .. } => StatusCode::TOO_MANY_REQUESTS,
        SendError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        SendError::Invalid(_) => StatusCode::BAD_REQUEST,
    };
    error(status, e.to_string())
}

fn request_error(e: RequestError) -> ApiError {
    let status = match &e {
        RequestError::Send(s) => return send_error(s.clone()),
        RequestError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        RequestError::PeerDisconnected(_) | RequestError::Unreachable(_) => StatusCode::NOT_FOUND,
        RequestError::Remote(_) => StatusCode::BAD_GATEWAY,
        RequestError::Stopped | RequestError::Unsent { .. } => StatusCode::SERVICE_UNAVAILABLE,
        RequestError::TooManyPending { .. } | RequestError::QpsExceeded { .. } => {
            StatusCode::TOO_MANY_REQUESTS
        }
    };
    error(status, e.to_string())
}

/// `POST /v1/messages` body: exactly one of `to`, `topic` and `group`, a module, and the
/// data as UTF-8 `data` or as `data_hex`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// Unicast to this node: its ID, or a unique prefix of the ID of a node this node knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Multicast to this topic's subscribers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Broadcast to this group's members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The module the data is for.
    pub module: u16,
    /// The data as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// The data as hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_hex: Option<String>,
}

/// `POST /v1/messages` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendResult {
    /// `unicast`, `multicast` or `broadcast`.
    pub kind: String,
    /// Targets whose copy was queued for its next hop.
    pub queued: Vec<NodeId>,
    /// Targets with no route.
    pub unreachable: Vec<NodeId>,
    /// Targets whose next hop could not take the copy.
    pub dropped: Vec<NodeId>,
}

impl SendResult {
    fn from_fanout(kind: &str, f: Fanout) -> Self {
        SendResult {
            kind: kind.into(),
            queued: f.queued,
            unreachable: f.unreachable,
            dropped: f.dropped,
        }
    }
}

fn payload_of(req: &SendRequest) -> Result<Bytes, ApiError> {
    match (&req.data, &req.data_hex) {
        (Some(text), None) => Ok(Bytes::from(text.clone().into_bytes())),
        (None, Some(h)) => {
            let digits: String = h.split_whitespace().collect();
            let digits = digits.strip_prefix("0x").unwrap_or(&digits);
            hex::decode(digits)
                .map(Bytes::from)
                .map_err(|e| ApiError::bad_request(format!("data_hex is not hex: {e}")))
        }
        (None, None) => Ok(Bytes::new()),
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "give the data as `data` or as `data_hex`, not both",
        )),
    }
}

/// Runs a send, giving up with 503 when it waits for queue room longer than [`SEND_WAIT`].
async fn within<T>(f: impl std::future::Future<Output = T>) -> Result<T, ApiError> {
    tokio::time::timeout(SEND_WAIT, f).await.map_err(|_| {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no queue room within {SEND_WAIT:?}"),
        )
    })
}

/// `POST /v1/messages`.
pub async fn send(
    State(node): State<NodeHandle>,
    Json(req): Json<SendRequest>,
) -> Result<Json<SendResult>, ApiError> {
    let payload = payload_of(&req)?;
    match (&req.to, &req.topic, &req.group) {
        (Some(to), None, None) => {
            let to = super::resolve::node_id(&node, "to", to)?;
            within(node.send(to, req.module, payload))
                .await?
                .map_err(send_error)?;
            Ok(Json(SendResult {
                kind: "unicast".into(),
                queued: vec![to],
                unreachable: Vec::new(),
                dropped: Vec::new(),
            }))
        }
        (None, Some(topic), None) => {
            let f = within(node.multicast(topic, req.module, payload))
                .await?
                .map_err(send_error)?;
            Ok(Json(SendResult::from_fanout("multicast", f)))
        }
        (None, None, Some(group)) => {
            let f = within(node.broadcast(group, req.module, payload))
                .await?
                .map_err(send_error)?;
            Ok(Json(SendResult::from_fanout("broadcast", f)))
        }
        _ => Err(ApiError::bad_request(
            "name exactly one of `to` (unicast), `topic` (multicast) and `group` (broadcast)",
        )),
    }
}

/// `POST /v1/ping` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PingRequest {
    /// The node to ping: its ID, or a unique prefix of the ID of a node this node knows.
    pub to: String,
    /// Timeout in milliseconds (default 5000, at most 60000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Bytes of payload to echo (default 0, at most `admin.max_ping_bytes`).
    #[serde(default)]
    pub size: usize,
}

/// `POST /v1/ping` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PingResult {
    /// The node that answered.
    pub from: NodeId,
    /// Round-trip time in microseconds.
    pub rtt_us: u64,
    /// Links the response crossed: 1 from a neighbour, one more per relay.
    pub hops: u8,
    /// Payload bytes echoed.
    pub size: usize,
}

/// `POST /v1/ping`: one request to the built-in echo module of `to`.
pub(crate) async fn ping(
    State(node): State<NodeHandle>,
    Extension(limits): Extension<super::HandlerLimits>,
    Json(req): Json<PingRequest>,
) -> Result<Json<PingResult>, ApiError> {
    let timeout = req
        .timeout_ms
        .map(Duration::from_millis)
        .unwrap_or(PING_TIMEOUT)
        .min(PING_TIMEOUT_MAX);
    let limit = limits.max_ping.min(node.max_packet_size() as usize / 2);
    if req.size > limit {
        return Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("size must be at most {limit} bytes (admin.max_ping_bytes)"),
        ));
    }
    let to = super::resolve::node_id(&node, "to", &req.to)?;
    let payload = Bytes::from(vec![0x5a; req.size]);
    let reply = node
        .ping(to, payload, timeout)
        .await
        .map_err(request_error)?;
    Ok(Json(PingResult {
        from: to,
        rtt_us: u64::try_from(reply.rtt.as_micros()).unwrap_or(u64::MAX),
        hops: reply.hops,
        size: req.size,
    }))
}

/// `GET /v1/routes` answer.
#[derive(Debug, Clone, Serialize)]
pub struct RoutesView {
    /// This node.
    pub node_id: NodeId,
    /// The routing table's seq, as announced to the neighbours.
    pub seq: u32,
    /// Every reachable node: destination, next hop, distance.
    pub routes: Vec<RouteInfo>,
}

/// `GET /v1/routes`.
pub async fn routes(State(node): State<NodeHandle>) -> Json<RoutesView> {
    Json(RoutesView {
        node_id: node.node_id(),
        seq: node.route_seq(),
        routes: node.routes(),
    })
}
