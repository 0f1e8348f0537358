//! The routing payloads (RouterSeq, RouterResponse, one neighbour list) and the status
//! payloads (StatusSeq, StatusRequest, StatusResponse, NodeStatus).

use bytes::{Bytes, BytesMut};
use chainmesh::status::codec::{SeqAnnounce, StatusAnswer, StatusQuery};
use chainmesh::status::NodeStatus;
use chainmesh::wire::{decode_lists, encode_lists, NeighbourList, RouterSummary};

/// The same bytes as each routing payload.
///
/// Checks: whatever decodes re-encodes to exactly its bytes (the formats have one encoding
/// per value), a neighbour list's rest is what follows it, and a list's neighbours are strictly
/// ascending without the origin, as the decoder promises.
pub fn router(data: &[u8]) {
    if let Ok(lists) = decode_lists(data) {
        assert_eq!(encode_lists(&lists).as_ref(), data);
        for list in &lists {
            check_list(list);
        }
    }
    if let Ok((list, rest)) = NeighbourList::decode_prefix(data) {
        check_list(&list);
        let mut again = BytesMut::new();
        list.encode_into(&mut again);
        assert_eq!(again.len(), list.encoded_len());
        again.extend_from_slice(rest);
        assert_eq!(again.as_ref(), data);
    }
    if let Ok(summary) = RouterSummary::decode(data) {
        assert_eq!(summary.encode().as_ref(), data);
    }
}

fn check_list(list: &NeighbourList) {
    assert!(list.neighbours.windows(2).all(|w| w[0] < w[1]));
    assert!(!list.names(&list.origin));
    for n in &list.neighbours {
        assert!(list.names(n));
    }
    let signed = list.signed_message();
    assert_eq!(
        signed.len(),
        chainmesh::wire::LIST_SIGNING_CONTEXT.len() + list.encoded_len()
            - chainmesh::wire::LIST_SIGNATURE_LEN
    );
}

/// The same bytes as each status payload.
///
/// Checks: a StatusRequest, StatusResponse or NodeStatus that decodes re-encodes to exactly
/// its bytes, and the status in it passes the checks a sender applies; a StatusSeq (whose
/// unknown flag bits are ignored) decodes again to the same value from its re-encoding.
pub fn status(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    if let Ok(s) = NodeStatus::decode(&bytes) {
        assert_eq!(s.encode(), bytes);
        assert_eq!(s.encoded_len(), data.len());
        assert_eq!(s.validate(data.len()), Ok(()));
    }
    if let Ok(a) = StatusAnswer::decode(&bytes) {
        assert_eq!(a.encode(), bytes);
        assert_eq!(a.status.validate(data.len()), Ok(()));
    }
    if let Ok(q) = StatusQuery::decode(data) {
        assert_eq!(q.encode().as_ref(), data);
    }
    if let Ok(s) = SeqAnnounce::decode(data) {
        let again = s.encode();
        assert_eq!(again.len(), data.len());
        assert_eq!(SeqAnnounce::decode(&again), Ok(s));
    }
}
