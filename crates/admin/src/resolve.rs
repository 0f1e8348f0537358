//! Node IDs as operators give them to the admin API: a full node ID, or a unique prefix (at
//! least [`MIN_PREFIX_DIGITS`](chainmesh::identity::MIN_PREFIX_DIGITS) hex digits,
//! optionally after `0x`) of one this node knows.

use chainmesh::identity::{NodeId, PrefixError};
use chainmesh::node::NodeHandle;

use super::ApiError;

/// Every node ID this node knows: itself, its peers (connected or configured), the nodes it
/// reaches and those whose status it holds. May repeat.
fn known_ids(node: &NodeHandle) -> Vec<NodeId> {
    let peers = node.peers();
    std::iter::once(node.node_id())
        .chain(peers.sessions().iter().map(|s| s.peer))
        .chain(peers.targets().iter().filter_map(|t| t.node_id))
        .chain(node.reachable_nodes().into_iter().map(|(id, _)| id))
        .chain(node.peer_statuses().into_iter().map(|s| s.node))
        .collect()
}

/// The node `spec` names (`field` says where it was given, for the error): 400 when it is
/// no node ID or prefix or matches several known nodes (naming them), 404 when no known
/// node's ID starts with it.
pub(crate) fn node_id(node: &NodeHandle, field: &str, spec: &str) -> Result<NodeId, ApiError> {
    NodeId::resolve_prefix(spec, known_ids(node)).map_err(|e| match e {
        PrefixError::Unknown(_) => ApiError::not_found(format!(
            "{field}: {e} (this node's peers, reachable nodes and status table)"
        )),
        PrefixError::NotHex(_) | PrefixError::TooShort(_) | PrefixError::Ambiguous { .. } => {
            ApiError::bad_request(format!("{field}: {e}"))
        }
    })
}
