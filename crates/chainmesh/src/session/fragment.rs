//! Joining a peer's Fragments (protocol version 4) back into the packet they carry.
//!
//! One packet at a time per link, pieces in order: that is all a sender ever produces (its
//! bulk lane is written in order and only bulk frames are fragmented), so anything else is
//! a broken or hostile peer and closes the link. The buffer grows with the pieces that
//! actually arrive, never past the inner packet's Length, itself at most the link's packet
//! limit; it is handed up as the packet's bytes, not copied again.

use bytes::Bytes;
use serde::Serialize;

use crate::wire::{Ext, Packet, HEADER_LEN};

/// Why a peer's Fragments do not join into a packet. Each closes the link with
/// [`CloseReason::Fragment`](super::CloseReason::Fragment).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FragmentError {
    /// A Fragment on a link whose version has none.
    #[error("a Fragment on a link that agreed version {version}; Fragments need version 4")]
    NotNegotiated {
        /// The agreed version.
        version: u16,
    },
    /// A Fragment with no bytes, or with Ext bits set.
    #[error("a Fragment with {len} bytes and Ext {ext:#06x}; it needs bytes and Ext 0")]
    Malformed {
        /// Its payload's length.
        len: usize,
        /// Its Ext field.
        ext: u16,
    },
    /// A Fragment that does not continue the packet being joined (or starts one while
    /// another is being joined).
    #[error("a Fragment at offset {got}, the packet being joined is at {expected}")]
    OutOfOrder {
        /// Bytes joined so far.
        expected: u64,
        /// The Fragment's offset (its Seq).
        got: u64,
    },
    /// A first Fragment too short to hold its packet's header.
    #[error("a first Fragment of {len} bytes, shorter than a packet header")]
    ShortStart {
        /// Its payload's length.
        len: usize,
    },
    /// The packet the Fragments carry is larger than the link accepts.
    #[error("Fragments of a {length}-byte packet; the limit is {max}")]
    Oversized {
        /// The inner packet's Length.
        length: u64,
        /// The link's packet limit.
        max: u32,
    },
    /// A Fragment reaching past the end of its packet.
    #[error("a Fragment ending at byte {end} of a {length}-byte packet")]
    Overrun {
        /// Where the Fragment ends.
        end: u64,
        /// The inner packet's Length.
        length: u64,
    },
    /// The joined packet is itself a Fragment or a Handshake.
    #[error("the joined packet is of type {packet_type:#06x}, which is never fragmented")]
    Nested {
        /// The inner packet's type.
        packet_type: u16,
    },
}

/// The packet being joined on one link: nothing while no Fragment run is under way.
#[derive(Debug, Default)]
pub(super) struct Reassembly {
    buf: Vec<u8>,
    /// The inner packet's Length; 0 while nothing is being joined.
    length: usize,
}

impl Reassembly {
    /// Adds the Fragment `packet` to the packet being joined; returns that packet's bytes
    /// once they are all in. `max` is the link's packet limit.
    pub(super) fn push(
        &mut self,
        packet: &Packet,
        max: u32,
    ) -> Result<Option<Bytes>, FragmentError> {
        let piece = &packet.payload[..];
        if piece.is_empty() || packet.ext != Ext(0) {
            return Err(FragmentError::Malformed {
                len: piece.len(),
                ext: packet.ext.0,
            });
        }
        let offset = packet.seq as usize;
        if offset != self.buf.len() {
            return Err(FragmentError::OutOfOrder {
                expected: self.buf.len() as u64,
                got: u64::from(packet.seq),
            });
        }
        if offset == 0 {
            self.length = inner_length(piece, max)?;
        }
        let end = offset.saturating_add(piece.len());
        if end > self.length {
            return Err(FragmentError::Overrun {
                end: end as u64,
                length: self.length as u64,
            });
        }
        if self.buf.capacity() - self.buf.len() < piece.len() {
            // Doubling, capped at the packet's Length: the buffer never outgrows what the
            // peer has sent by more than that, nor the packet.
            let grow = piece.len().max(self.buf.len()).min(self.length - offset);
            self.buf.reserve_exact(grow);
        }
        self.buf.extend_from_slice(piece);
        if self.buf.len() < self.length {
            return Ok(None);
        }
        self.length = 0;
        Ok(Some(Bytes::from(std::mem::take(&mut self.buf))))
    }
}

/// The Length of the packet a first Fragment starts, checked against the link's limit and
/// against the types that are never fragmented.
fn inner_length(piece: &[u8], max: u32) -> Result<usize, FragmentError> {
    let Some(head) = piece.get(..HEADER_LEN) else {
        return Err(FragmentError::ShortStart { len: piece.len() });
    };
    let length = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if length > max {
        return Err(FragmentError::Oversized {
            length: u64::from(length),
            max,
        });
    }
    let packet_type = u16::from_be_bytes([head[6], head[7]]);
    if packet_type == crate::wire::PacketType::FRAGMENT.0
        || packet_type == crate::wire::PacketType::HANDSHAKE.0
    {
        return Err(FragmentError::Nested { packet_type });
    }
    Ok(length as usize)
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};

    use super::FragmentError;
    use crate::identity::NodeId;
    use crate::session::{CloseReason, Framing, LinkError, P2pFraming};
    use crate::wire::{fragment_header, Ext, Packet, PacketType};

    const PEER: NodeId = NodeId::from_bytes([7; 64]);

    fn inner(version: u16, len: usize) -> Bytes {
        Packet {
            version,
            packet_type: PacketType(0x7f),
            seq: 9,
            ext: Ext(0),
            options: None,
            payload: Bytes::from((0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>()),
        }
        .to_bytes()
    }

    /// The Fragment carrying `bytes` from `offset`.
    fn fragment(offset: usize, bytes: &[u8]) -> Vec<u8> {
        let mut out = fragment_header(4, offset, bytes.len()).unwrap().to_vec();
        out.extend_from_slice(bytes);
        out
    }

    /// `frame` cut into Fragments of `piece` bytes, back to back.
    fn fragments(frame: &[u8], piece: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, part) in frame.chunks(piece).enumerate() {
            out.extend(fragment(i * piece, part));
        }
        out
    }

    fn decode_all(f: &mut P2pFraming, bytes: &[u8]) -> Result<Vec<(Packet, Bytes)>, LinkError> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(p) = f.decode(&mut buf)? {
            out.push(p);
        }
        Ok(out)
    }

    fn fragment_error(f: &mut P2pFraming, bytes: &[u8]) -> FragmentError {
        match decode_all(f, bytes) {
            Err(LinkError::Fragment(e)) => e,
            other => panic!("expected a Fragment error, got {other:?}"),
        }
    }

    #[test]
    fn fragments_join_into_the_packet_byte_for_byte_between_whole_packets() {
        let mut f = P2pFraming::on_link(1 << 20, 4, PEER);
        let big = inner(4, 200_000);
        let small = Packet::heartbeat(4).to_bytes();
        let pieces = fragments(&big, 65_536);
        // A whole packet may come between two Fragments.
        let split = fragment(0, &big[..65_536]).len();
        let mut stream = pieces[..split].to_vec();
        stream.extend_from_slice(&inner(4, 10));
        stream.extend_from_slice(&pieces[split..]);
        stream.extend_from_slice(&small);
        let got = decode_all(&mut f, &stream).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].1, inner(4, 10));
        assert_eq!(got[1].1, big, "the joined bytes are the packet's");
        assert_eq!(got[1].0, Packet::decode_exact(&big, 1 << 20).unwrap());
        assert_eq!(got[2].1, small);
        // And again: the link joins one packet after another.
        assert_eq!(decode_all(&mut f, &pieces).unwrap()[0].1, big);
    }

    #[test]
    fn fragments_out_of_order_or_a_second_run_close_the_link() {
        let big = inner(4, 100_000);
        let mut f = P2pFraming::on_link(1 << 20, 4, PEER);
        let mut skip = fragment(0, &big[..1000]);
        skip.extend(fragment(2000, &big[2000..3000]));
        assert_eq!(
            fragment_error(&mut f, &skip),
            FragmentError::OutOfOrder {
                expected: 1000,
                got: 2000
            }
        );
        let mut f = P2pFraming::on_link(1 << 20, 4, PEER);
        let mut again = fragment(0, &big[..1000]);
        again.extend(fragment(0, &big[..1000]));
        assert!(matches!(
            fragment_error(&mut f, &again),
            FragmentError::OutOfOrder {
                expected: 1000,
                got: 0
            }
        ));
        let mut f = P2pFraming::on_link(1 << 20, 4, PEER);
        assert!(matches!(
            fragment_error(&mut f, &fragment(5, &big[5..100])),
            FragmentError::OutOfOrder {
                expected: 0,
                got: 5
            }
        ));
    }

    #[test]
    fn fragments_of_a_packet_over_the_limit_or_past_its_end_close_the_link() {
        let big = inner(4, 100_000);
        let mut f = P2pFraming::on_link(50_000, 4, PEER);
        assert_eq!(
            fragment_error(&mut f, &fragment(0, &big[..1000])),
            FragmentError::Oversized {
                length: big.len() as u64,
                max: 50_000
            }
        );
        let mut f = P2pFraming::on_link(1 << 20, 4, PEER);
        let mut long = big.to_vec();
        long.extend_from_slice(b"extra");
        let e = fragment_error(&mut f, &fragments(&long, 65_536));
        assert_eq!(
            e,
            FragmentError::Overrun {
                end: long.len() as u64,
                length: big.len() as u64
            }
        );
        assert_eq!(
            P2pFraming::close_reason(LinkError::Fragment(e.clone())),
            CloseReason::Fragment(e)
        );
    }

    #[test]
    fn malformed_fragments_close_the_link() {
        let big = inner(4, 100_000);
        let mut f = P2pFraming::on_link(1 << 20, 4, PEER);
        assert_eq!(
            fragment_error(&mut f, &fragment(0, &[])),
            FragmentError::Malformed { len: 0, ext: 0 }
        );
        let mut f = P2pFraming::on_link(1 << 20, 4, PEER);
        assert_eq!(
            fragment_error(&mut f, &fragment(0, &big[..10])),
            FragmentError::ShortStart { len: 10 }
        );
        let mut flagged = fragment(0, &big[..1000]);
        flagged[13] = 1;
        let mut f = P2pFraming::on_link(1 << 20, 4, PEER);
        assert_eq!(
            fragment_error(&mut f, &flagged),
            FragmentError::Malformed { len: 1000, ext: 1 }
        );
        // A Fragment inside a Fragment.
        let nested = fragments(&fragment(0, &big[..70_000]), 65_536);
        let mut f = P2pFraming::on_link(1 << 20, 4, PEER);
        assert_eq!(
            fragment_error(&mut f, &nested),
            FragmentError::Nested {
                packet_type: PacketType::FRAGMENT.0
            }
        );
    }

    #[test]
    fn a_fragment_on_a_version_3_link_closes_it() {
        let mut f = P2pFraming::on_link(1 << 20, 3, PEER);
        let mut frag = fragment(0, &inner(3, 100)[..50]);
        // The link's Version, so that only the type is wrong.
        frag[5] = 3;
        assert_eq!(
            fragment_error(&mut f, &frag),
            FragmentError::NotNegotiated { version: 3 }
        );
    }

    #[test]
    fn the_joined_packet_obeys_the_link_rules() {
        let mut f = P2pFraming::on_link(1 << 20, 4, PEER);
        let wrong = inner(3, 100_000);
        assert!(matches!(
            decode_all(&mut f, &fragments(&wrong, 65_536)),
            Err(LinkError::WrongVersion {
                expected: 4,
                got: 3,
                ..
            })
        ));
    }
}
