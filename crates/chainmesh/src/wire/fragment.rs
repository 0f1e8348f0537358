//! Link-level fragments (protocol version 4): one packet too big to hold a link for its whole
//! length, written as a run of Fragment packets (type `0x10`) that the receiving end of the
//! link joins back before decoding it.
//!
//! A Fragment is a bare header and a piece of the inner packet's bytes: Seq is the piece's
//! byte offset in the inner packet, Ext is 0. The inner packet's own Length, in the first
//! piece, says when the run is complete, so a fragment needs no header of its own beyond the
//! packet's.

use super::HEADER_LEN;

/// First protocol version whose links may carry [`PacketType::FRAGMENT`](super::PacketType::FRAGMENT).
pub const FRAGMENT_VERSION: u16 = 4;

/// The header of the Fragment carrying `piece_len` bytes of an inner packet from byte
/// `offset`, on a link that agreed `version`. `None` when the Fragment's Length or the
/// offset does not fit its u32 field.
pub fn fragment_header(version: u16, offset: usize, piece_len: usize) -> Option<[u8; HEADER_LEN]> {
    let length = u32::try_from(piece_len.checked_add(HEADER_LEN)?).ok()?;
    let offset = u32::try_from(offset).ok()?;
    let mut head = [0u8; HEADER_LEN];
    head[0..4].copy_from_slice(&length.to_be_bytes());
    head[4..6].copy_from_slice(&version.to_be_bytes());
    head[6..8].copy_from_slice(&super::PacketType::FRAGMENT.0.to_be_bytes());
    head[8..12].copy_from_slice(&offset.to_be_bytes());
    // Ext (12..14) stays 0.
    Some(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Packet, PacketType};

    #[test]
    fn a_fragment_header_and_its_piece_decode_as_a_fragment_packet() {
        let piece = [7u8; 5];
        let mut bytes = fragment_header(4, 65_536, piece.len()).unwrap().to_vec();
        bytes.extend_from_slice(&piece);
        let p = Packet::decode_exact(&bytes, 1 << 20).unwrap();
        assert_eq!(p.packet_type, PacketType::FRAGMENT);
        assert_eq!((p.version, p.seq, p.ext.0), (4, 65_536, 0));
        assert_eq!(&p.payload[..], &piece);
    }

    #[test]
    fn an_offset_past_u32_has_no_header() {
        assert!(fragment_header(4, usize::MAX, 1).is_none());
    }
}
