//! The channel protocol as the session task sees it: ChannelPack frames, one per write.

use bytes::{Bytes, BytesMut};

use crate::session::{FrameKind, Framing};
use crate::wire::{ChannelDecoder, ChannelError, ChannelPack, ChannelType, ZERO_SEQ};

/// The framing of a channel session, on the node's side or on a client's.
///
/// Frames are never coalesced: FISCO's SDKs read one frame per TLS record and mis-parse a
/// record carrying two (behaviour case A13), so every frame goes out in a write of its own.
#[derive(Debug, Clone)]
pub struct ChannelFraming {
    decoder: ChannelDecoder,
    heartbeat: Bytes,
}

impl ChannelFraming {
    /// The node's side of an SDK session, accepting frames of up to `max_frame` bytes. It
    /// sends no heartbeats of its own (SDKs send them, and FISCO nodes only answer them), and
    /// it hands every heartbeat that carries data to the handler, which answers it.
    pub fn node_side(max_frame: u32) -> ChannelFraming {
        ChannelFraming {
            decoder: ChannelDecoder::new(max_frame),
            heartbeat: Bytes::new(),
        }
    }

    /// A client's side: it sends an empty 0x13 on a quiet session, as FISCO's SDKs do.
    pub fn client_side(max_frame: u32) -> ChannelFraming {
        let beat = ChannelPack::new(ChannelType::HEARTBEAT, ZERO_SEQ, Bytes::new());
        let mut buf = BytesMut::with_capacity(beat.encoded_len());
        // 42 bytes always fit the 1024-byte minimum of any limit.
        let heartbeat = match beat.encode_into(&mut buf, u32::MAX) {
            Ok(()) => buf.freeze(),
            Err(_) => Bytes::new(),
        };
        ChannelFraming {
            decoder: ChannelDecoder::new(max_frame),
            heartbeat,
        }
    }
}

impl Framing for ChannelFraming {
    /// The frame, and its bytes as received (to forward unchanged).
    type Frame = (ChannelPack, Bytes);
    type Error = ChannelError;

    const COALESCE: bool = false;

    #[inline]
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Frame>, ChannelError> {
        self.decoder.decode(buf)
    }

    fn kind(&self, (pack, _): &Self::Frame) -> FrameKind {
        // An empty heartbeat only keeps the session alive; one with data asks for an answer.
        if pack.kind == ChannelType::HEARTBEAT && pack.data.is_empty() {
            FrameKind::Heartbeat
        } else {
            FrameKind::Data
        }
    }

    fn heartbeat(&self) -> &[u8] {
        &self.heartbeat
    }

    fn goodbye(&self, _reason: &str) -> Option<Bytes> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_heartbeats_are_consumed_and_others_reach_the_handler() {
        let f = ChannelFraming::node_side(1024);
        let empty = ChannelPack::new(ChannelType::HEARTBEAT, ZERO_SEQ, Bytes::new());
        let query = ChannelPack::new(ChannelType::HEARTBEAT, ZERO_SEQ, Bytes::from_static(b"0"));
        assert_eq!(f.kind(&(empty, Bytes::new())), FrameKind::Heartbeat);
        assert_eq!(f.kind(&(query, Bytes::new())), FrameKind::Data);
    }

    #[test]
    fn only_the_client_side_sends_heartbeats() {
        assert!(ChannelFraming::node_side(1024).heartbeat().is_empty());
        let beat = Bytes::copy_from_slice(ChannelFraming::client_side(1024).heartbeat());
        let pack = ChannelPack::decode_exact(&beat, 1024).unwrap();
        assert_eq!((pack.kind, pack.data.len()), (ChannelType::HEARTBEAT, 0));
    }
}
