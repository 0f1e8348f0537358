//! Naming nodes the way operators do: a full node ID, a unique prefix of one, or a name from
//! the inventory (`nodes.json`).

use chainmesh::identity::{NodeId, PrefixError};

use crate::client::AdminClient;
use crate::inventory::Inventory;

/// Why a node could not be named.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    /// Neither a node ID, nor a prefix of a known one, nor a name in the inventory.
    #[error("`{0}` is not a node ID, a prefix of a known node ID or a node name{1}")]
    Unknown(String, &'static str),
    /// A hex prefix shorter than [`MIN_PREFIX_DIGITS`](chainmesh::identity::MIN_PREFIX_DIGITS),
    /// or one that several known node IDs start with.
    #[error(transparent)]
    Prefix(PrefixError),
}

/// The hint an unknown name gets when there is no inventory to look in.
fn hint(inventory: Option<&Inventory>) -> &'static str {
    if inventory.is_some() {
        ""
    } else {
        " (no nodes.json found: pass --inventory FILE to use names)"
    }
}

/// The node `spec` names: a full ID, a name in `inventory`, or a unique prefix of an ID in
/// `inventory` or `known` (the IDs a running node knows).
pub fn node_id(
    spec: &str,
    inventory: Option<&Inventory>,
    known: &[NodeId],
) -> Result<NodeId, ResolveError> {
    let spec = spec.trim();
    if let Some(n) = inventory.and_then(|inv| inv.nodes.iter().find(|n| n.name == spec)) {
        return Ok(n.node_id);
    }
    let listed = inventory
        .into_iter()
        .flat_map(|inv| inv.nodes.iter().map(|n| n.node_id));
    NodeId::resolve_prefix(spec, listed.chain(known.iter().copied())).map_err(|e| match e {
        PrefixError::NotHex(s) | PrefixError::Unknown(s) => {
            ResolveError::Unknown(s, hint(inventory))
        }
        e @ (PrefixError::TooShort(_) | PrefixError::Ambiguous { .. }) => ResolveError::Prefix(e),
    })
}

/// The P2P address `spec` names: an address (anything with a `:`) as it is, or the address of
/// a node named by name or node ID (prefix) in `inventory`.
pub fn p2p_address(spec: &str, inventory: Option<&Inventory>) -> Result<String, ResolveError> {
    let spec = spec.trim();
    if spec.contains(':') {
        return Ok(spec.to_owned());
    }
    let Some(inv) = inventory else {
        return Err(ResolveError::Unknown(spec.to_owned(), hint(inventory)));
    };
    let id = node_id(spec, Some(inv), &[])?;
    inv.nodes
        .iter()
        .find(|n| n.node_id == id)
        .map(|n| n.p2p.clone())
        .ok_or_else(|| ResolveError::Unknown(spec.to_owned(), ""))
}

/// The node IDs the node at `client` knows: its peers and its routes. Empty when it cannot
/// say: resolving then falls back to the inventory.
pub fn known_ids(client: &AdminClient) -> Vec<NodeId> {
    let mut ids = Vec::new();
    for (path, list, field) in [
        ("/v1/peers", "peers", "node_id"),
        ("/v1/routes", "routes", "dst"),
    ] {
        let Ok(v) = client.get::<serde_json::Value>(path) else {
            continue;
        };
        ids.extend(
            v[list]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e[field].as_str()?.parse::<NodeId>().ok()),
        );
    }
    ids
}

/// [`node_id`] for a command talking to the node at `client`: a full ID or a name needs no
/// question to the node; a prefix is looked up in the inventory and in what the node knows.
pub fn node_id_via(
    spec: &str,
    inventory: Option<&Inventory>,
    client: &AdminClient,
) -> anyhow::Result<NodeId> {
    match node_id(spec, inventory, &[]) {
        Ok(id) => Ok(id),
        Err(ResolveError::Unknown(..)) => Ok(node_id(spec, inventory, &known_ids(client))?),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::InventoryNode;

    fn id(fill: u8) -> NodeId {
        NodeId::from_bytes([fill; 64])
    }

    fn inventory() -> Inventory {
        let node = |name: &str, fill: u8, p2p: &str| InventoryNode {
            name: name.into(),
            host: "10.0.0.1".into(),
            p2p: p2p.into(),
            admin: "127.0.0.1:31300".into(),
            channel: "10.0.0.1:20200".into(),
            node_id: id(fill),
            dir: name.into(),
        };
        Inventory {
            nodes: vec![
                node("node0", 0xab, "10.0.0.1:30300"),
                node("node1", 0xac, "10.0.0.1:30301"),
            ],
        }
    }

    #[test]
    fn a_name_a_full_id_and_a_unique_prefix_name_one_node() {
        let inv = inventory();
        assert_eq!(node_id("node1", Some(&inv), &[]), Ok(id(0xac)));
        assert_eq!(node_id(&id(0x11).to_string(), None, &[]), Ok(id(0x11)));
        assert_eq!(node_id("abab", Some(&inv), &[]), Ok(id(0xab)));
        assert_eq!(node_id("0xACAC", Some(&inv), &[]), Ok(id(0xac)));
        // A node the running node knows but the inventory does not list.
        assert_eq!(node_id("1111", Some(&inv), &[id(0x11)]), Ok(id(0x11)));
    }

    #[test]
    fn an_ambiguous_short_or_unknown_name_is_refused_and_says_why() {
        let inv = inventory();
        let e = node_id(
            "abab",
            Some(&inv),
            &[NodeId::from_bytes([0xab; 64]), {
                let mut b = [0xab; 64];
                b[63] = 0;
                NodeId::from_bytes(b)
            }],
        );
        assert!(
            matches!(e, Err(ResolveError::Prefix(PrefixError::Ambiguous { .. }))),
            "{e:?}"
        );
        assert_eq!(
            node_id("ab", Some(&inv), &[]),
            Err(ResolveError::Prefix(PrefixError::TooShort("ab".into())))
        );
        let e = node_id("node9", None, &[]).unwrap_err().to_string();
        assert!(e.contains("--inventory"), "{e}");
        assert!(node_id("cdcd", Some(&inv), &[]).is_err());
    }

    #[test]
    fn an_address_stays_and_a_name_becomes_its_p2p_address() {
        let inv = inventory();
        assert_eq!(p2p_address("10.9.9.9:1", None).as_deref(), Ok("10.9.9.9:1"));
        assert_eq!(
            p2p_address("node1", Some(&inv)).as_deref(),
            Ok("10.0.0.1:30301")
        );
        assert_eq!(
            p2p_address("abab", Some(&inv)).as_deref(),
            Ok("10.0.0.1:30300")
        );
        assert!(p2p_address("node1", None).is_err());
    }
}
