//! `/v1/status`: this node's status and every status it holds of other nodes, and
//! `/v1/status/app`: setting this node's application status.
//!
//! The handlers need only the status engine, so they come as their own [`router`] to merge
//! into the admin API's: `router(node).merge(status::router(svc))`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use chainmesh::identity::NodeId;
use chainmesh::status::view::{status_view, StatusView};
use chainmesh::status::{StatusError, StatusService};

/// The answer to `PUT /v1/status/app`: the version now current.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppStatusSet {
    /// This node's ID.
    pub node_id: NodeId,
    /// The status seq now current (unchanged if the body equals the current status).
    pub seq: u32,
    /// The epoch, as 16 hex digits.
    pub epoch: String,
}

/// `GET /v1/status`.
pub async fn get_status(State(svc): State<Arc<StatusService>>) -> Json<StatusView> {
    Json(status_view(&svc))
}

/// `PUT /v1/status/app`: the raw request body becomes this node's application status.
pub async fn put_app(State(svc): State<Arc<StatusService>>, body: Bytes) -> Response {
    match svc.set_app_status(body) {
        Ok(v) => Json(AppStatusSet {
            node_id: svc.local_id(),
            seq: v.seq,
            epoch: v.epoch_hex(),
        })
        .into_response(),
        Err(e) => {
            let status = match e {
                StatusError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::BAD_REQUEST,
            };
            (status, Json(serde_json::json!({ "error": e.to_string() }))).into_response()
        }
    }
}

/// The status routes, ready to merge into the admin API's router.
pub fn router(svc: Arc<StatusService>) -> Router {
    Router::new()
        .route("/v1/status", get(get_status))
        .route("/v1/status/app", axum::routing::put(put_app))
        .with_state(svc)
}
