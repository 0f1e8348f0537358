//! Payloads of the routing packets of protocol version 3, RouterSeq (0x0a), RouterResponse
//! (0x0b) and RouterRequest (0x0c), and the topic prefix of Multicast (0x0e).
//!
//! Routing is link state: every node signs a [`NeighbourList`] (the nodes it has live links
//! to) and the lists are flooded neighbour to neighbour. RouterSeq announces a
//! [`RouterSummary`] of the lists the sender holds, an empty RouterRequest asks for all of
//! them, and RouterResponse carries signed lists ([`encode_lists`], [`decode_lists`]).

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Serialize, Serializer};

use super::error::WireError;
use crate::identity::{NodeId, NODE_ID_LEN};

/// Bytes of a signature: `r || s`, as `identity::keys` makes them.
pub const LIST_SIGNATURE_LEN: usize = 64;

/// Bytes of a neighbour list before its neighbours: origin, epoch, seq and count.
pub const LIST_HEAD: usize = NODE_ID_LEN + 8 + 4 + 2;

/// Bytes of a RouterSeq payload: the summary's count and digest.
pub const ROUTER_SUMMARY_LEN: usize = 4 + 32;

/// Largest number of neighbours the wire format can carry in one list (its count is a u16);
/// the configured `limits.max_neighbours_per_list` is lower.
pub const MAX_LIST_NEIGHBOURS: usize = u16::MAX as usize;

/// What is signed before the list's own bytes, so a neighbour-list signature can never be
/// taken for a signature of anything else the node key signs.
pub const LIST_SIGNING_CONTEXT: &[u8] = b"chainmesh neighbour list v3\0";

/// A neighbour list's version: a new `epoch` each time the node starts, then `seq` counts
/// the lists it signed in that epoch. Versions are ordered by epoch, then seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ListVersion {
    /// Chosen when the node starts.
    pub epoch: u64,
    /// Rises by one per list within the epoch.
    pub seq: u32,
}

/// A node's signed statement of the nodes it has live links to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NeighbourList {
    /// The node that signed it.
    pub origin: NodeId,
    /// Its version; a newer one replaces an older one.
    pub version: ListVersion,
    /// The origin's neighbours, strictly ascending, never the origin itself.
    pub neighbours: Vec<NodeId>,
    /// The origin's ECDSA signature of [`NeighbourList::signed_message`].
    #[serde(serialize_with = "hex_bytes")]
    pub signature: [u8; LIST_SIGNATURE_LEN],
}

fn hex_bytes<S: Serializer>(b: &[u8; LIST_SIGNATURE_LEN], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(b))
}

impl NeighbourList {
    /// Bytes of this list on the wire.
    pub fn encoded_len(&self) -> usize {
        LIST_HEAD + self.neighbours.len() * NODE_ID_LEN + LIST_SIGNATURE_LEN
    }

    /// The bytes before the signature: origin, epoch, seq, count, neighbours. At most
    /// [`MAX_LIST_NEIGHBOURS`] neighbours are written; callers never hold more.
    fn put_body(&self, b: &mut BytesMut) {
        let neighbours = self
            .neighbours
            .get(..MAX_LIST_NEIGHBOURS)
            .unwrap_or(&self.neighbours);
        b.put_slice(self.origin.as_bytes());
        b.put_u64(self.version.epoch);
        b.put_u32(self.version.seq);
        b.put_u16(neighbours.len() as u16);
        for n in neighbours {
            b.put_slice(n.as_bytes());
        }
    }

    /// What the origin signs: [`LIST_SIGNING_CONTEXT`], then the list's bytes up to its
    /// signature.
    pub fn signed_message(&self) -> Vec<u8> {
        let mut b = BytesMut::with_capacity(LIST_SIGNING_CONTEXT.len() + self.encoded_len());
        b.put_slice(LIST_SIGNING_CONTEXT);
        self.put_body(&mut b);
        b.to_vec()
    }

    /// Appends the list's bytes.
    pub fn encode_into(&self, b: &mut BytesMut) {
        self.put_body(b);
        b.put_slice(&self.signature);
    }

    /// Whether `node` is one of the origin's neighbours.
    pub fn names(&self, node: &NodeId) -> bool {
        self.neighbours.binary_search(node).is_ok()
    }

    /// Reads one list from the front of `bytes` and returns it with the bytes after it.
    /// Neighbours must be strictly ascending and must not include the origin.
    pub fn decode_prefix(bytes: &[u8]) -> Result<(NeighbourList, &[u8]), WireError> {
        let short = |needed: usize| WireError::RouterListSize {
            needed,
            available: bytes.len(),
        };
        let (head, rest) = bytes
            .split_first_chunk::<LIST_HEAD>()
            .ok_or_else(|| short(LIST_HEAD))?;
        let (origin, rest_head) = head.split_at(NODE_ID_LEN);
        let origin = NodeId::from_slice(origin).map_err(|_| short(LIST_HEAD))?;
        let mut epoch = [0u8; 8];
        epoch.copy_from_slice(&rest_head[..8]);
        let mut seq = [0u8; 4];
        seq.copy_from_slice(&rest_head[8..12]);
        let count = usize::from(u16::from_be_bytes([rest_head[12], rest_head[13]]));
        let body = count * NODE_ID_LEN;
        let needed = LIST_HEAD + body + LIST_SIGNATURE_LEN;
        let (ids, rest) = rest.split_at_checked(body).ok_or_else(|| short(needed))?;
        let (sig, rest) = rest
            .split_first_chunk::<LIST_SIGNATURE_LEN>()
            .ok_or_else(|| short(needed))?;
        let mut neighbours = Vec::with_capacity(count);
        for chunk in ids.chunks_exact(NODE_ID_LEN) {
            let n = NodeId::from_slice(chunk).map_err(|_| short(needed))?;
            if n == origin || neighbours.last().is_some_and(|last| *last >= n) {
                return Err(WireError::RouterListOrder);
            }
            neighbours.push(n);
        }
        let list = NeighbourList {
            origin,
            version: ListVersion {
                epoch: u64::from_be_bytes(epoch),
                seq: u32::from_be_bytes(seq),
            },
            neighbours,
            signature: *sig,
        };
        Ok((list, rest))
    }
}

/// The RouterSeq payload: how many lists the sender offers and a digest of their origins and
/// versions. Two nodes holding the same lists announce the same summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RouterSummary {
    /// Lists the sender would send in answer to a RouterRequest.
    pub count: u32,
    /// SHA-256 of every such list's origin, epoch and seq, in origin order.
    #[serde(serialize_with = "hex_digest")]
    pub digest: [u8; 32],
}

fn hex_digest<S: Serializer>(b: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(b))
}

impl RouterSummary {
    /// The payload bytes.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(ROUTER_SUMMARY_LEN);
        b.put_u32(self.count);
        b.put_slice(&self.digest);
        b.freeze()
    }

    /// Reads a RouterSeq payload: exactly [`ROUTER_SUMMARY_LEN`] bytes.
    pub fn decode(payload: &[u8]) -> Result<RouterSummary, WireError> {
        let b: &[u8; ROUTER_SUMMARY_LEN] =
            payload.try_into().map_err(|_| WireError::RouterSeqSize {
                length: payload.len(),
            })?;
        let (count, digest) = b.split_at(4);
        let mut c = [0u8; 4];
        c.copy_from_slice(count);
        let mut d = [0u8; 32];
        d.copy_from_slice(digest);
        Ok(RouterSummary {
            count: u32::from_be_bytes(c),
            digest: d,
        })
    }
}

/// A RouterResponse payload: list count `u16`, then the lists back to back.
pub fn encode_lists<'a>(lists: impl IntoIterator<Item = &'a NeighbourList>) -> Bytes {
    let lists: Vec<&NeighbourList> = lists.into_iter().take(usize::from(u16::MAX)).collect();
    let len = 2 + lists.iter().map(|l| l.encoded_len()).sum::<usize>();
    let mut b = BytesMut::with_capacity(len);
    b.put_u16(lists.len() as u16);
    for l in lists {
        l.encode_into(&mut b);
    }
    b.freeze()
}

/// Reads a RouterResponse payload; it must end exactly after its last list. Nothing is
/// reserved ahead of the bytes that are there, so a lying count costs nothing.
pub fn decode_lists(payload: &[u8]) -> Result<Vec<NeighbourList>, WireError> {
    let (count, mut rest) = payload
        .split_first_chunk::<2>()
        .ok_or(WireError::RouterListSize {
            needed: 2,
            available: payload.len(),
        })?;
    let count = u16::from_be_bytes(*count);
    let mut lists = Vec::new();
    for _ in 0..count {
        let (list, after) = NeighbourList::decode_prefix(rest)?;
        lists.push(list);
        rest = after;
    }
    if !rest.is_empty() {
        return Err(WireError::RouterTrailing { extra: rest.len() });
    }
    Ok(lists)
}

/// Writes the Multicast topic prefix: topic length u16, topic.
pub fn encode_topic_prefix(topic: &str, out: &mut Vec<u8>) -> Result<(), WireError> {
    let len = u16::try_from(topic.len()).map_err(|_| WireError::TopicTooLong {
        length: topic.len(),
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(topic.as_bytes());
    Ok(())
}

/// Splits a (decompressed) Multicast payload into its topic and its data, without copying
/// the data.
pub fn split_topic(payload: &Bytes) -> Result<(&str, Bytes), WireError> {
    let (len, rest) = payload
        .split_first_chunk::<2>()
        .ok_or(WireError::TopicOverrun {
            needed: 2,
            available: payload.len(),
        })?;
    let len = usize::from(u16::from_be_bytes(*len));
    let topic = rest.get(..len).ok_or(WireError::TopicOverrun {
        needed: 2 + len,
        available: payload.len(),
    })?;
    let topic = std::str::from_utf8(topic).map_err(|_| WireError::TopicNotUtf8)?;
    Ok((topic, payload.slice(2 + len..)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::id;

    fn list(origin: u8, neighbours: &[u8]) -> NeighbourList {
        NeighbourList {
            origin: id(origin),
            version: ListVersion {
                epoch: 0x0102_0304_0506_0708,
                seq: 9,
            },
            neighbours: neighbours.iter().map(|b| id(*b)).collect(),
            signature: [0xab; LIST_SIGNATURE_LEN],
        }
    }

    #[test]
    fn summary_round_trip_and_size() {
        let s = RouterSummary {
            count: 3,
            digest: [7; 32],
        };
        let b = s.encode();
        assert_eq!(b.len(), ROUTER_SUMMARY_LEN);
        assert_eq!(&b[..4], &[0, 0, 0, 3]);
        assert_eq!(RouterSummary::decode(&b), Ok(s));
        assert_eq!(
            RouterSummary::decode(&[0, 0, 0, 7]),
            Err(WireError::RouterSeqSize { length: 4 })
        );
    }

    #[test]
    fn lists_round_trip_and_sign_their_body_only() {
        let lists = vec![list(0x11, &[0x22, 0x33]), list(0x22, &[])];
        let b = encode_lists(&lists);
        assert_eq!(b.len(), 2 + (LIST_HEAD + 2 * 64 + 64) + (LIST_HEAD + 64));
        assert_eq!(decode_lists(&b), Ok(lists.clone()));
        let msg = lists[0].signed_message();
        assert!(msg.starts_with(LIST_SIGNING_CONTEXT));
        assert_eq!(msg.len(), LIST_SIGNING_CONTEXT.len() + LIST_HEAD + 2 * 64);
        assert!(lists[0].names(&id(0x33)) && !lists[0].names(&id(0x11)));
    }

    #[test]
    fn lists_must_fit_their_counts_exactly() {
        let b = encode_lists(&[list(1, &[2, 3])]);
        assert!(matches!(
            decode_lists(&b[..b.len() - 1]),
            Err(WireError::RouterListSize { .. })
        ));
        let mut longer = b.to_vec();
        longer.push(0);
        assert_eq!(
            decode_lists(&longer),
            Err(WireError::RouterTrailing { extra: 1 })
        );
        assert!(decode_lists(&[0]).is_err());
        assert_eq!(decode_lists(&[0, 0]), Ok(vec![]));
        // A count of 65 535 lists with no bytes behind it fails without reserving them.
        assert!(decode_lists(&[0xff, 0xff]).is_err());
    }

    #[test]
    fn neighbours_must_be_ascending_and_not_the_origin() {
        for bad in [list(1, &[3, 2]), list(1, &[2, 2]), list(2, &[1, 2])] {
            assert_eq!(
                decode_lists(&encode_lists(&[bad])),
                Err(WireError::RouterListOrder)
            );
        }
    }

    #[test]
    fn topic_prefix_round_trip_and_errors() {
        let mut v = Vec::new();
        encode_topic_prefix("blocks", &mut v).unwrap();
        v.extend_from_slice(b"data");
        let b = Bytes::from(v);
        let (topic, data) = split_topic(&b).unwrap();
        assert_eq!(topic, "blocks");
        assert_eq!(data.as_ref(), b"data");
        assert!(matches!(
            split_topic(&Bytes::from_static(&[0])),
            Err(WireError::TopicOverrun { .. })
        ));
        assert!(matches!(
            split_topic(&Bytes::from_static(&[0, 5, b'a'])),
            Err(WireError::TopicOverrun {
                needed: 7,
                available: 3
            })
        ));
        assert_eq!(
            split_topic(&Bytes::from_static(&[0, 1, 0xff])),
            Err(WireError::TopicNotUtf8)
        );
        assert!(encode_topic_prefix(&"x".repeat(70_000), &mut Vec::new()).is_err());
    }
}
