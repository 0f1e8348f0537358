//! `/v1/peers`: list, add and remove peers.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::ApiError;
use chainmesh::identity::NodeId;
use chainmesh::node::{NodeHandle, PeerChangeError};
use chainmesh::peers::TargetState;
use chainmesh::session::Direction;

/// One entry of `GET /v1/peers`: a connected peer, or a configured one that is not.
#[derive(Debug, Serialize)]
pub struct PeerEntry {
    /// The peer's node ID, when known.
    pub node_id: Option<NodeId>,
    /// Its address: the configured one, or for an inbound peer its IP and listen port.
    pub address: String,
    /// Whether a session is up.
    pub connected: bool,
    /// `connected`, `connecting`, `backing-off` or `itself`.
    pub state: &'static str,
    /// Who dialed, when connected.
    pub direction: Option<Direction>,
    /// When the session was established, milliseconds since the Unix epoch.
    pub connected_since_ms: Option<u64>,
    /// Traffic counters, when connected.
    pub bytes_in: u64,
    /// 〃
    pub bytes_out: u64,
    /// 〃
    pub packets_in: u64,
    /// 〃
    pub packets_out: u64,
    /// Packets refused because the write queue was full.
    pub dropped_out: u64,
    /// When the next dial starts, for a peer backing off.
    pub next_attempt_ms: Option<u64>,
    /// Why the last connection to this peer ended or the last dial failed.
    pub last_error: Option<String>,
}

/// `GET /v1/peers`.
#[derive(Debug, Serialize)]
pub struct PeersView {
    /// Connected peers first, then configured peers that are not connected.
    pub peers: Vec<PeerEntry>,
}

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Builds the peers view: every session, then every configured peer without one.
pub fn peers_view(node: &NodeHandle) -> PeersView {
    use std::sync::atomic::Ordering::Relaxed;
    let peers = node.peers();
    let targets = peers.targets();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut sessions = peers.sessions();
    sessions.sort_by_key(|s| s.peer);
    for s in sessions {
        seen.insert(s.peer);
        let configured = targets.iter().find(|t| t.node_id == Some(s.peer));
        let address = match configured {
            Some(t) => t.address.clone(),
            None if s.direction == Direction::Inbound && s.peer_listen_port != 0 => {
                SocketAddr::new(s.addr.ip(), s.peer_listen_port).to_string()
            }
            None => s.addr.to_string(),
        };
        out.push(PeerEntry {
            node_id: Some(s.peer),
            address,
            connected: true,
            state: "connected",
            direction: Some(s.direction),
            connected_since_ms: Some(epoch_ms(s.since)),
            bytes_in: s.stats.bytes_in.load(Relaxed),
            bytes_out: s.stats.bytes_out.load(Relaxed),
            packets_in: s.stats.packets_in.load(Relaxed),
            packets_out: s.stats.packets_out.load(Relaxed),
            dropped_out: s.stats.dropped_out.load(Relaxed),
            next_attempt_ms: None,
            last_error: peers.last_reason(&s.peer).map(|r| r.to_string()),
        });
    }
    for t in targets {
        if t.node_id.is_some_and(|id| seen.contains(&id)) {
            continue;
        }
        let (state, next) = match t.state {
            TargetState::Connecting => ("connecting", None),
            // Connected through another address or racing a disconnect.
            TargetState::Connected => ("connecting", None),
            TargetState::BackingOff { next_attempt_ms } => ("backing-off", Some(next_attempt_ms)),
            TargetState::Itself => ("itself", None),
        };
        out.push(PeerEntry {
            node_id: t.node_id,
            address: t.address,
            connected: false,
            state,
            direction: None,
            connected_since_ms: None,
            bytes_in: 0,
            bytes_out: 0,
            packets_in: 0,
            packets_out: 0,
            dropped_out: 0,
            next_attempt_ms: next,
            last_error: t.last_error.map(|e| e.to_string()),
        });
    }
    PeersView { peers: out }
}

pub(super) async fn list(State(node): State<NodeHandle>) -> Json<PeersView> {
    Json(peers_view(&node))
}

/// Body of `POST /v1/peers`.
#[derive(Debug, Deserialize)]
pub(super) struct AddPeer {
    address: String,
}

fn change_error(e: PeerChangeError) -> ApiError {
    match e {
        PeerChangeError::Address(m) => ApiError::bad_request(m),
        PeerChangeError::Config(c) => ApiError::internal(c.to_string()),
    }
}

pub(super) async fn add(
    State(node): State<NodeHandle>,
    Json(body): Json<AddPeer>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let added = node.add_peer(&body.address).map_err(change_error)?;
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(serde_json::json!({ "address": body.address, "added": added })),
    ))
}

/// `DELETE /v1/peers/{peer}`: `peer` is a configured address (`host:port`), or the node ID
/// (or a unique prefix of it) of a configured peer.
pub(super) async fn remove(
    State(node): State<NodeHandle>,
    Path(peer): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let address = configured_address(&node, &peer)?;
    if node.remove_peer(&address).map_err(change_error)? {
        Ok(Json(
            serde_json::json!({ "address": address, "removed": true }),
        ))
    } else {
        Err(ApiError::not_found(format!(
            "{address} is not a configured peer"
        )))
    }
}

/// The address `peer` names: itself when it is one (every address has a port, so a `:`),
/// else the configured address of the peer whose node ID it names.
fn configured_address(node: &NodeHandle, peer: &str) -> Result<String, ApiError> {
    if peer.contains(':') {
        return Ok(peer.to_owned());
    }
    let id = super::resolve::node_id(node, "peer", peer)?;
    node.peers()
        .targets()
        .into_iter()
        .find(|t| t.node_id == Some(id))
        .map(|t| t.address)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "node {} is not a configured peer (or has not been reached at its configured address yet)",
                id.short()
            ))
        })
}
