//! Signing this node's neighbour list and checking other nodes' lists: the origin's node ID
//! is its public key, so any node can check any list without a certificate.

use openssl::nid::Nid;

use crate::identity::keys::{self, KeyError};
use crate::identity::{Identity, NodeId};
use crate::wire::{ListVersion, NeighbourList};

/// Signs a list of `neighbours` (sorted, without this node) at `version` with the node key.
pub fn sign_list(
    identity: &Identity,
    version: ListVersion,
    neighbours: Vec<NodeId>,
) -> Result<NeighbourList, KeyError> {
    let mut list = NeighbourList {
        origin: identity.node_id,
        version,
        neighbours,
        signature: [0; keys::SIGNATURE_LEN],
    };
    list.signature = keys::sign(identity, &list.signed_message())?;
    Ok(list)
}

/// Whether `list` is signed by its origin, whose node ID is read as a key on `curve`. An
/// origin that is not a point on the curve signed nothing.
pub fn verify_list(curve: Nid, list: &NeighbourList) -> bool {
    keys::public_key_of(&list.origin, curve)
        .map(|key| keys::verify(&key, &list.signed_message(), &list.signature))
        .unwrap_or(false)
}

/// The version after `v`: the next seq, or the next epoch when the seq is used up.
pub fn next_version(v: ListVersion) -> ListVersion {
    match v.seq.checked_add(1) {
        Some(seq) => ListVersion {
            epoch: v.epoch,
            seq,
        },
        None => ListVersion {
            epoch: v.epoch.saturating_add(1),
            seq: 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{generate_node_files, Curve};
    use crate::test_support::id;

    #[test]
    fn a_list_verifies_only_as_its_origin_signed_it() {
        for curve in [Curve::Secp256k1, Curve::Prime256v1] {
            let dir = tempfile::tempdir().unwrap();
            let nodes = generate_node_files(dir.path(), 2, curve).unwrap();
            let a = nodes[0].load_identity().unwrap();
            let b = nodes[1].load_identity().unwrap();
            let nid = keys::curve_of(&a).unwrap();
            let v = ListVersion { epoch: 5, seq: 1 };
            let list = sign_list(&a, v, vec![b.node_id]).unwrap();
            assert!(verify_list(nid, &list));
            // Another neighbour, another version, another origin or a bent signature: no.
            let mut other = list.clone();
            other.neighbours.push(id(0xff));
            assert!(!verify_list(nid, &other));
            let mut other = list.clone();
            other.version.seq = 2;
            assert!(!verify_list(nid, &other));
            let mut other = list.clone();
            other.origin = b.node_id;
            assert!(!verify_list(nid, &other));
            let mut other = list.clone();
            other.signature[0] ^= 1;
            assert!(!verify_list(nid, &other));
            // An ID that is not a key at all, and an unsigned list.
            let mut other = list.clone();
            other.origin = id(7);
            assert!(!verify_list(nid, &other));
            let mut other = list;
            other.signature = [0; 64];
            assert!(!verify_list(nid, &other));
        }
    }

    #[test]
    fn versions_order_by_epoch_then_seq_and_never_wrap() {
        let a = ListVersion { epoch: 1, seq: 9 };
        let b = ListVersion { epoch: 2, seq: 0 };
        assert!(a < b);
        assert!(next_version(a) > a);
        let last = ListVersion {
            epoch: 1,
            seq: u32::MAX,
        };
        assert_eq!(next_version(last), ListVersion { epoch: 2, seq: 0 });
        assert!(next_version(last) > last);
    }
}
