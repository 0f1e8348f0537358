//! Streaming decoder: cuts packets out of a byte stream however it was split into reads.

use bytes::{Bytes, BytesMut};

use super::error::WireError;
use super::packet::{check_length, parse_frame, peek_length, Packet};
use crate::identity::NodeId;

/// Most room reserved for the rest of a partial packet beyond what has arrived. A peer can
/// announce a Length up to the limit and then send nothing more; the buffer grows with the
/// bytes that actually come, never with the announcement.
pub const RESERVE_STEP: usize = 64 * 1024;

/// Cuts packets out of a receive buffer, one per call.
///
/// The caller appends whatever the transport delivered to a [`BytesMut`] and calls
/// [`Decoder::decode`] until it returns `Ok(None)`. Packets may be split across reads or
/// several may arrive in one; neither matters.
#[derive(Debug, Clone)]
pub struct Decoder {
    max_len: u32,
    link: Option<NodeId>,
}

impl Decoder {
    /// A decoder that refuses packets longer than `max_len` bytes. It knows no link, so a
    /// packet in direct form ([`Ext::DIRECT`](super::Ext::DIRECT)) is an error.
    pub fn new(max_len: u32) -> Self {
        Decoder {
            max_len,
            link: None,
        }
    }

    /// A decoder for the stream of a link to `peer`: packets in direct form get `peer` as
    /// their source.
    pub fn on_link(max_len: u32, peer: NodeId) -> Self {
        Decoder {
            max_len,
            link: Some(peer),
        }
    }

    /// The largest packet accepted.
    pub fn max_len(&self) -> u32 {
        self.max_len
    }

    /// Takes the next packet off the front of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` does not yet hold a whole packet; nothing is consumed
    /// then. A bad Length is reported as soon as its 4 bytes are in, before any of the body is
    /// waited for, so a peer cannot make the node buffer an oversized packet; nothing is
    /// consumed since the stream cannot be resynchronised, and the connection must be closed.
    /// An error inside a complete packet consumes that packet, leaving `buf` at the next one.
    ///
    /// The payload shares `buf`'s allocation instead of being copied; a payload kept for long
    /// keeps that allocation alive, so a handler that stores it should copy it.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, WireError> {
        Ok(self.decode_frame(buf)?.map(|(packet, _)| packet))
    }

    /// Like [`decode`](Self::decode), and also returns the whole packet's bytes, so a relay
    /// can forward it without re-encoding. The payload is a slice of those bytes: neither is
    /// copied.
    pub fn decode_frame(
        &mut self,
        buf: &mut BytesMut,
    ) -> Result<Option<(Packet, Bytes)>, WireError> {
        let Some(length) = peek_length(buf) else {
            return Ok(None);
        };
        check_length(length, self.max_len)?;
        let length = length as usize;
        if buf.len() < length {
            // Room for the next stretch of the packet, not for all of it: the Length is only
            // the peer's word. Each call reserves at most one step beyond what is in, and
            // `BytesMut` grows geometrically, so a big packet still costs few reallocations.
            buf.reserve((length - buf.len()).min(RESERVE_STEP));
            return Ok(None);
        }
        self.packet_of(buf.split_to(length).freeze()).map(Some)
    }

    /// Like [`decode_frame`](Self::decode_frame), for bytes already frozen (a queue's
    /// leftover): cuts the next packet off the front of `bytes`, sharing their allocation,
    /// never copying. Returns `Ok(None)`, consuming nothing, when `bytes` does not hold a
    /// whole packet.
    pub fn decode_shared(
        &mut self,
        bytes: &mut Bytes,
    ) -> Result<Option<(Packet, Bytes)>, WireError> {
        let Some(length) = peek_length(bytes) else {
            return Ok(None);
        };
        check_length(length, self.max_len)?;
        let length = length as usize;
        if bytes.len() < length {
            return Ok(None);
        }
        self.packet_of(bytes.split_to(length)).map(Some)
    }

    /// The packet in `frame`, a whole one whose Length was checked, with its payload a slice
    /// of `frame`.
    fn packet_of(&self, frame: Bytes) -> Result<(Packet, Bytes), WireError> {
        let (mut packet, payload_at) = parse_frame(&frame, self.link.as_ref())?;
        // `parse_frame` never points past the frame; `min` keeps `slice` from panicking
        // even so.
        packet.payload = frame.slice(payload_at.min(frame.len())..);
        Ok((packet, frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Packet, DEFAULT_MAX_PACKET};

    /// A header announcing `length` bytes, and nothing else.
    fn announce(length: u32) -> BytesMut {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&length.to_be_bytes());
        buf.extend_from_slice(&[0, 1, 0, 5, 0, 0, 0, 1, 0, 0]);
        buf
    }

    #[test]
    fn a_huge_announced_length_reserves_one_step_not_the_whole_packet() {
        let mut d = Decoder::new(DEFAULT_MAX_PACKET);
        let mut buf = announce(DEFAULT_MAX_PACKET);
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert!(
            buf.capacity() <= buf.len() + RESERVE_STEP,
            "capacity {} for {} bytes in",
            buf.capacity(),
            buf.len()
        );
        // Feeding the packet slowly: growing geometrically, the buffer stays within twice
        // what arrived plus a step.
        let chunk = vec![0u8; 1000];
        for _ in 0..500 {
            buf.extend_from_slice(&chunk);
            assert_eq!(d.decode(&mut buf), Ok(None));
            assert!(buf.capacity() <= 2 * (buf.len() + RESERVE_STEP));
        }
    }

    #[test]
    fn a_big_packet_arriving_in_pieces_still_decodes() {
        let mut d = Decoder::new(DEFAULT_MAX_PACKET);
        let mut p = Packet::heartbeat(1);
        p.payload = bytes::Bytes::from(vec![7u8; 300_000]);
        let bytes = p.to_bytes();
        let mut buf = BytesMut::new();
        let mut got = None;
        for piece in bytes.chunks(16 * 1024) {
            buf.extend_from_slice(piece);
            if let Some(packet) = d.decode(&mut buf).unwrap() {
                got = Some(packet);
            }
        }
        assert_eq!(got, Some(p));
        assert!(buf.is_empty());
    }
}
