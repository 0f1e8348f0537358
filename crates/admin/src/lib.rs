//! The admin HTTP API of a chainmesh node: JSON views and controls and Prometheus metrics,
//! served from a [`NodeHandle`] ([`serve`]). Kept out of the core library so an application that embeds a node ships no HTTP server unless it wants one.
//!
//! Errors come back as `{"error": "..."}` with a 4xx or 5xx status.
//!
//! Reads (GET) are open; every write needs `Authorization: Bearer <token>` with the node's
//! [`AdminToken`]; each listener caps its connections, times out slow heads and bodies and
//! checks the `Host` header (see [`Access`] and `docs/admin.md`).

#![warn(missing_docs)]

mod amop;
mod listen;
mod messages;
mod metrics;
mod names;
mod page;
mod peers;
pub mod procfs;
mod resolve;
mod server;
pub mod status;
mod token;

use std::net::SocketAddr;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use chainmesh::amop::AmopHandle;
use chainmesh::config::AdminConfig;
use chainmesh::identity::NodeId;
use chainmesh::node::NodeHandle;

pub use amop::AmopInfo;
pub use listen::{ListenQuery, ListenedMessage, KEEPALIVE};
pub use messages::{PingRequest, PingResult, RoutesView, SendRequest, SendResult};
pub use names::{name_request, NameKind, NamesView};
pub use page::{EventEntry, LinkEntry, NetworkView, NodeEntry};
pub use peers::{peers_view, PeerEntry, PeersView};
pub use server::Access;
pub use token::{token_path, AdminToken, TokenError, TOKEN_FILE};

/// An error answer: a status and a message, sent as `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// A 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// A 404 Not Found.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }

    /// A 500 Internal Server Error.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

/// `GET /v1/node`.
#[derive(Debug, Serialize)]
pub struct NodeInfo {
    /// This node's ID.
    pub node_id: NodeId,
    /// Where it accepts P2P connections.
    pub listen: SocketAddr,
    /// The chainmesh version.
    pub version: &'static str,
    /// The groups it belongs to.
    pub groups: Vec<String>,
    /// What closing links still held, since start ([`NodeHandle::undelivered_counts`]).
    pub undelivered: chainmesh::node::UndeliveredCounts,
}

async fn get_node(State(node): State<NodeHandle>) -> Json<NodeInfo> {
    Json(NodeInfo {
        node_id: node.node_id(),
        listen: node.listen_addr(),
        version: env!("CARGO_PKG_VERSION"),
        groups: node.groups(),
        undelivered: node.undelivered_counts(),
    })
}

/// `GET /v1/flow`: the `[flow_control]` limits in use, their current rates and counters.
async fn get_flow(State(node): State<NodeHandle>) -> Json<chainmesh::flow::FlowSnapshot> {
    Json(node.flow_snapshot())
}

/// Bounds the handlers apply themselves, from `[admin]`.
#[derive(Debug, Clone, Copy)]
struct HandlerLimits {
    /// `admin.max_ping_bytes`.
    max_ping: usize,
}

/// The admin API's routes, with the bounds of `settings`; [`serve`] puts the guards of
/// [`Access`] in front of them. `amop` is the node's AMOP when it runs a channel port
/// (`/v1/amop` answers 404 without one).
pub fn router(node: NodeHandle, amop: Option<AmopHandle>, settings: &AdminConfig) -> Router {
    let status = status::router(node.status().clone());
    let node_for_page = node.clone();
    Router::new()
        .route("/metrics", get(metrics::metrics))
        .route("/v1/node", get(get_node))
        .route("/v1/peers", get(peers::list).post(peers::add))
        .route("/v1/peers/{peer}", delete(peers::remove))
        .route("/v1/messages", post(messages::send))
        .route("/v1/ping", post(messages::ping))
        .route("/v1/routes", get(messages::routes))
        .route("/v1/flow", get(get_flow))
        .route("/v1/amop", get(amop::get))
        .route("/v1/listen", get(listen::listen))
        .merge(names::routes(names::NameKind::Topic))
        .merge(names::routes(names::NameKind::Group))
        .with_state(node)
        .merge(status)
        .merge(page::router(node_for_page, settings))
        .layer(Extension::<amop::MaybeAmop>(amop))
        .layer(Extension(HandlerLimits {
            max_ping: settings.max_ping_bytes,
        }))
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
}

/// Listens on `addr` (`host:port`; port 0 picks one) and serves the admin API there (with
/// `amop`'s views when given), as `access` allows and within the bounds of `settings`, until
/// `stop` is cancelled. Returns the address it listens on.
pub async fn serve(
    addr: &str,
    node: NodeHandle,
    amop: Option<AmopHandle>,
    access: Access,
    settings: &AdminConfig,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    if !bound.ip().is_loopback() {
        let exposed = match access {
            Access::ReadWrite(_) => {
                "reads are open to anyone who reaches it, writes to anyone holding the token"
            }
            Access::ReadOnly => "reads are open to anyone who reaches it",
        };
        warn!(addr = %bound, "the admin API listens on a non-loopback address: {exposed}");
    }
    spawn(listener, node, amop, access, settings, stop);
    Ok(bound)
}

/// Serves the admin API on `listener` (with `amop`'s views when given), as `access` allows,
/// until `stop` is cancelled.
pub fn spawn(
    listener: TcpListener,
    node: NodeHandle,
    amop: Option<AmopHandle>,
    access: Access,
    settings: &AdminConfig,
    stop: CancellationToken,
) {
    server::spawn(
        listener,
        router(node, amop, settings),
        access,
        settings,
        stop,
    );
}
