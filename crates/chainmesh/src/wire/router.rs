//! Payloads of the routing packets, RouterSeq (0x0a) and RouterResponse (0x0b), and the
//! topic prefix of Multicast (0x0e). RouterRequest (0x0c) has an empty payload.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;

use super::error::WireError;
use crate::identity::{NodeId, NODE_ID_LEN};

/// Bytes of one RouterResponse entry: node ID and distance.
pub const ROUTER_ENTRY_LEN: usize = NODE_ID_LEN + 1;

/// Bytes of a RouterResponse payload before its entries: table seq and entry count.
pub const ROUTER_TABLE_HEAD: usize = 4 + 2;

/// Largest number of entries a RouterResponse can carry (its count is a u16).
pub const MAX_ROUTER_ENTRIES: usize = u16::MAX as usize;

/// The RouterSeq payload: the sender's routing-table seq, u32 big-endian.
pub fn encode_router_seq(seq: u32) -> Bytes {
    Bytes::copy_from_slice(&seq.to_be_bytes())
}

/// Reads a RouterSeq payload.
pub fn decode_router_seq(payload: &[u8]) -> Result<u32, WireError> {
    let b: [u8; 4] = payload.try_into().map_err(|_| WireError::RouterSeqSize {
        length: payload.len(),
    })?;
    Ok(u32::from_be_bytes(b))
}

/// One destination the sender of a RouterResponse can reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RouterEntry {
    /// The destination.
    pub node: NodeId,
    /// Hops from the sender to it: 0 for the sender itself, 1 for its direct neighbours.
    pub distance: u8,
}

/// The RouterResponse payload: the sender's table seq and the destinations it advertises to
/// the receiver (its routes minus those through the receiver: split horizon).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouterTable {
    /// The table seq this content belongs to, as the sender's RouterSeq announces it.
    pub seq: u32,
    /// The advertised destinations.
    pub entries: Vec<RouterEntry>,
}

impl RouterTable {
    /// The payload bytes. Entries beyond [`MAX_ROUTER_ENTRIES`] are left out; callers never
    /// hold that many.
    pub fn encode(&self) -> Bytes {
        let entries = self
            .entries
            .get(..MAX_ROUTER_ENTRIES)
            .unwrap_or(&self.entries);
        let mut b = BytesMut::with_capacity(ROUTER_TABLE_HEAD + entries.len() * ROUTER_ENTRY_LEN);
        b.put_u32(self.seq);
        b.put_u16(entries.len() as u16);
        for e in entries {
            b.put_slice(e.node.as_bytes());
            b.put_u8(e.distance);
        }
        b.freeze()
    }

    /// Reads a RouterResponse payload; its length must match its entry count exactly.
    pub fn decode(payload: &[u8]) -> Result<RouterTable, WireError> {
        let (head, rest) =
            payload
                .split_first_chunk::<ROUTER_TABLE_HEAD>()
                .ok_or(WireError::RouterTableSize {
                    count: 0,
                    needed: ROUTER_TABLE_HEAD,
                    length: payload.len(),
                })?;
        let [s0, s1, s2, s3, c0, c1] = *head;
        let seq = u32::from_be_bytes([s0, s1, s2, s3]);
        let count = u16::from_be_bytes([c0, c1]);
        let needed = ROUTER_TABLE_HEAD + usize::from(count) * ROUTER_ENTRY_LEN;
        if payload.len() != needed {
            return Err(WireError::RouterTableSize {
                count,
                needed,
                length: payload.len(),
            });
        }
        let entries = rest
            .chunks_exact(ROUTER_ENTRY_LEN)
            .filter_map(|chunk| {
                let (id, distance) = chunk.split_at_checked(NODE_ID_LEN)?;
                Some(RouterEntry {
                    node: NodeId::from_slice(id).ok()?,
                    distance: *distance.first()?,
                })
            })
            .collect();
        Ok(RouterTable { seq, entries })
    }
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

    #[test]
    fn router_seq_round_trip_and_size() {
        assert_eq!(encode_router_seq(0x0102_0304).as_ref(), [1, 2, 3, 4]);
        assert_eq!(decode_router_seq(&[0, 0, 0, 7]), Ok(7));
        assert_eq!(
            decode_router_seq(&[0, 0, 7]),
            Err(WireError::RouterSeqSize { length: 3 })
        );
    }

    #[test]
    fn router_table_round_trip() {
        let t = RouterTable {
            seq: 9,
            entries: vec![
                RouterEntry {
                    node: id(0x11),
                    distance: 0,
                },
                RouterEntry {
                    node: id(0x22),
                    distance: 2,
                },
            ],
        };
        let b = t.encode();
        assert_eq!(b.len(), 6 + 2 * 65);
        assert_eq!(&b[..6], &[0, 0, 0, 9, 0, 2]);
        assert_eq!(RouterTable::decode(&b), Ok(t));
    }

    #[test]
    fn router_table_length_must_match_count() {
        let t = RouterTable {
            seq: 1,
            entries: vec![RouterEntry {
                node: id(1),
                distance: 1,
            }],
        };
        let b = t.encode();
        assert_eq!(
            RouterTable::decode(&b[..b.len() - 1]),
            Err(WireError::RouterTableSize {
                count: 1,
                needed: 71,
                length: 70
            })
        );
        let mut longer = b.to_vec();
        longer.push(0);
        assert!(RouterTable::decode(&longer).is_err());
        assert!(RouterTable::decode(&[0, 0]).is_err());
        assert_eq!(
            RouterTable::decode(&[0, 0, 0, 5, 0, 0]),
            Ok(RouterTable {
                seq: 5,
                entries: vec![]
            })
        );
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
