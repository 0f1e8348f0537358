//! The network methods of FISCO BCOS 2.x's JSON-RPC, answered from the node itself with
//! FISCO's result shapes.
//!
//! FISCO groups are integers and chainmesh's are names, so a group takes part here only when
//! its name is a FISCO group ID: `N` or `groupN`, with `N` in decimal without leading zeros
//! (`"1"` and `"group1"` are both FISCO group 1, `"group0"` is group 0). Other names
//! (`"ops"`, `"group01"`) have no FISCO ID: `getGroupList` leaves them out and no group ID
//! reaches them.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::{RpcError, SUPPORTED_VERSION};
use crate::identity::NodeId;
use crate::node::NodeHandle;

/// A connected peer as `getPeers` shows it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Peer {
    pub(super) id: NodeId,
    /// Where it listens for P2P connections if its handshake said, else the connection's
    /// remote address.
    pub(super) addr: String,
    /// The AMOP topics its SDK clients subscribe to, as its status says.
    pub(super) topics: Vec<String>,
}

/// What the built-in methods read from a node.
pub(super) trait Network {
    /// This node.
    fn local_id(&self) -> NodeId;
    /// The connected peers, one entry each, by node ID.
    fn connected(&self) -> Vec<Peer>;
    /// This node's groups.
    fn local_groups(&self) -> Vec<String>;
    /// Every node of `group` this node knows of, itself included if it is a member.
    fn group_members(&self, group: &str) -> Vec<NodeId>;
}

impl Network for NodeHandle {
    fn local_id(&self) -> NodeId {
        self.node_id()
    }

    fn connected(&self) -> Vec<Peer> {
        let mut sessions = self.peers().sessions();
        sessions.sort_by_key(|s| s.peer);
        // Two connections to one peer can be live for a moment, while the duplicate rule
        // picks one.
        sessions.dedup_by_key(|s| s.peer);
        sessions
            .iter()
            .map(|s| {
                let addr = if s.peer_listen_port == 0 {
                    s.addr
                } else {
                    std::net::SocketAddr::new(s.addr.ip(), s.peer_listen_port)
                };
                Peer {
                    id: s.peer,
                    addr: addr.to_string(),
                    topics: self
                        .peer_status(&s.peer)
                        .map(|p| p.status.amop_topics)
                        .unwrap_or_default(),
                }
            })
            .collect()
    }

    fn local_groups(&self) -> Vec<String> {
        self.groups()
    }

    fn group_members(&self, group: &str) -> Vec<NodeId> {
        self.status().network_group_members(group)
    }
}

/// The answer of the built-in `method`, or `None` when it is not one.
pub(super) fn call<N: Network + ?Sized>(
    net: &N,
    method: &str,
    params: &Value,
) -> Option<Result<Value, RpcError>> {
    // FISCO's getPeers and getNodeIDList take a group ID and ignore it; so do these, and
    // any params of the methods that take none.
    Some(match method {
        "getClientVersion" | "getNodeVersion" => Ok(client_version()),
        "getPeers" => Ok(peers(&net.connected())),
        "getNodeIDList" => Ok(node_id_list(net.local_id(), &net.connected())),
        "getGroupList" => Ok(group_list(&net.local_groups())),
        "getGroupPeers" => group_param(params).and_then(|g| group_peers(net, g)),
        _ => return None,
    })
}

/// FISCO's version object, filled with this build's values.
fn client_version() -> Value {
    let profile = if cfg!(debug_assertions) {
        "Debug"
    } else {
        "Release"
    };
    json!({
        "Build Time": option_env!("CHAINMESH_BUILD_TIME").unwrap_or("unknown"),
        "Build Type": format!("{}/{}/rustc/{profile}", std::env::consts::OS, std::env::consts::ARCH),
        // chainmesh has no chain ID; FISCO's default keeps SDKs that sign with it working.
        "Chain Id": "1",
        "FISCO-BCOS Version": concat!("chainmesh ", env!("CARGO_PKG_VERSION")),
        "Git Branch": option_env!("CHAINMESH_GIT_BRANCH").unwrap_or("unknown"),
        "Git Commit Hash": option_env!("CHAINMESH_GIT_COMMIT").unwrap_or("unknown"),
        "Supported Version": SUPPORTED_VERSION,
    })
}

fn peers(connected: &[Peer]) -> Value {
    connected
        .iter()
        .map(|p| {
            json!({
                "IPAndPort": p.addr,
                "NodeID": p.id.to_string(),
                "Topic": p.topics,
            })
        })
        .collect()
}

fn node_id_list(local: NodeId, connected: &[Peer]) -> Value {
    std::iter::once(local)
        .chain(connected.iter().map(|p| p.id))
        .map(|id| Value::String(id.to_string()))
        .collect()
}

fn group_list(groups: &[String]) -> Value {
    let ids: BTreeSet<u64> = groups.iter().filter_map(|g| fisco_group_id(g)).collect();
    ids.into_iter().map(Value::from).collect()
}

fn group_peers<N: Network + ?Sized>(net: &N, group: u64) -> Result<Value, RpcError> {
    // As in FISCO, a group this node is not in does not exist for it.
    let names: Vec<String> = net
        .local_groups()
        .into_iter()
        .filter(|g| fisco_group_id(g) == Some(group))
        .collect();
    if names.is_empty() {
        return Err(RpcError::new(
            RpcError::GROUP_NOT_FOUND,
            "GroupID does not exist",
        ));
    }
    let members: BTreeSet<NodeId> = names.iter().flat_map(|g| net.group_members(g)).collect();
    Ok(members
        .into_iter()
        .map(|id| Value::String(id.to_string()))
        .collect())
}

/// The group ID a method takes as its first param: a JSON integer, or decimal digits in a
/// string.
fn group_param(params: &Value) -> Result<u64, RpcError> {
    let id = match params.get(0) {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => decimal(s),
        _ => None,
    };
    id.ok_or_else(|| {
        RpcError::new(
            RpcError::INVALID_PARAMS,
            "Invalid params: expected [groupID], a non-negative integer",
        )
    })
}

/// The FISCO group ID of the chainmesh group `name`, if it has one (see the module doc).
pub(super) fn fisco_group_id(name: &str) -> Option<u64> {
    decimal(name.strip_prefix("group").unwrap_or(name))
}

/// `s` as a decimal number written without sign or leading zeros.
fn decimal(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if canonical {
        s.parse().ok()
    } else {
        None
    }
}
