//! Streaming decoder: cuts packets out of a byte stream however it was split into reads.

use bytes::{Bytes, BytesMut};

use super::error::WireError;
use super::packet::{check_length, parse_frame, peek_length, Packet};
use crate::identity::NodeId;

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
            // Room for the rest now saves the reader from growing the buffer step by step;
            // the length was bounded by the limit above.
            buf.reserve(length - buf.len());
            return Ok(None);
        }
        let frame = buf.split_to(length).freeze();
        let (mut packet, payload_at) = parse_frame(&frame, self.link.as_ref())?;
        // `parse_frame` never points past the frame; `min` keeps `slice` from panicking
        // even so.
        packet.payload = frame.slice(payload_at.min(frame.len())..);
        Ok(Some((packet, frame)))
    }
}
