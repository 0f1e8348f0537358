//! `GET /v1/topics`, `POST /v1/topics` and `DELETE /v1/topics/{topic}`: the topics this node
//! subscribes to, changed while it runs. A change lasts until the node stops; `node.topics`
//! is what it subscribes to at start. Groups come from `p2p.groups` (`GET /v1/node` shows
//! them).

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::ApiError;
use chainmesh::node::NodeHandle;

/// `GET /v1/topics` answer, and the answer of a change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopicsView {
    /// The topics subscribed to now, sorted.
    pub topics: Vec<String>,
    /// Whether the request changed them (false: already subscribed, or not subscribed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed: Option<bool>,
}

/// `POST /v1/topics` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicRequest {
    /// The topic to subscribe to.
    pub topic: String,
}

fn view(node: &NodeHandle, changed: Option<bool>) -> Json<TopicsView> {
    Json(TopicsView {
        topics: node.topics(),
        changed,
    })
}

/// `GET /v1/topics`.
pub async fn list(State(node): State<NodeHandle>) -> Json<TopicsView> {
    view(&node, None)
}

/// `POST /v1/topics`.
pub async fn add(
    State(node): State<NodeHandle>,
    Json(req): Json<TopicRequest>,
) -> Result<Json<TopicsView>, ApiError> {
    let added = node
        .subscribe(&req.topic)
        .map_err(|e| ApiError::bad_request(format!("topic `{}`: {e}", req.topic)))?;
    Ok(view(&node, Some(added)))
}

/// `DELETE /v1/topics/{topic}`.
pub async fn remove(State(node): State<NodeHandle>, Path(topic): Path<String>) -> Json<TopicsView> {
    let removed = node.unsubscribe(&topic);
    view(&node, Some(removed))
}
