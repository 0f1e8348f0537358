//! The payload of packet type 7 (AMOP): one channel frame carried from node to node,
//! unchanged, behind a 9-byte header that says what it is and which exchange it belongs to.
//! Pure: no I/O, no clocks.
//!
//! ```text
//! offset size field
//! 0      1    kind     1 unicast request (a 0x30 frame), 2 unicast answer (a 0x31 frame),
//!                      3 multicast (a 0x35 frame)
//! 1      8    request  u64 big-endian: the publisher's node picks it for a request, the
//!                      answer repeats it; 0 in a multicast
//! 9      n    frame    one whole ChannelPack, exactly as the SDK sent it
//! ```
//!
//! `docs/protocol.md` (packet type 7) specifies it with hex examples.

use bytes::{BufMut, Bytes, BytesMut};

use super::channel::{ChannelError, ChannelPack, ChannelType};

/// Bytes before the carried frame: kind and request ID.
pub const AMOP_FORWARD_HEADER_LEN: usize = 9;

/// What a type-7 payload carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmopForwardKind {
    /// A 0x30 for the receiving node's local subscribers; answered with a
    /// [`UnicastAnswer`](Self::UnicastAnswer) of the same request ID.
    UnicastRequest,
    /// The 0x31 that ends a unicast: a subscriber's ack, or the receiving node's 104/103.
    UnicastAnswer,
    /// A 0x35 for every local subscriber of the receiving node; never answered.
    Multicast,
}

impl AmopForwardKind {
    /// The kind's byte on the wire.
    pub fn byte(self) -> u8 {
        match self {
            AmopForwardKind::UnicastRequest => 1,
            AmopForwardKind::UnicastAnswer => 2,
            AmopForwardKind::Multicast => 3,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(AmopForwardKind::UnicastRequest),
            2 => Some(AmopForwardKind::UnicastAnswer),
            3 => Some(AmopForwardKind::Multicast),
            _ => None,
        }
    }

    /// The channel frame type this kind carries.
    pub fn frame_type(self) -> ChannelType {
        match self {
            AmopForwardKind::UnicastRequest => ChannelType::AMOP_REQUEST,
            AmopForwardKind::UnicastAnswer => ChannelType::AMOP_RESPONSE,
            AmopForwardKind::Multicast => ChannelType::AMOP_MULTICAST,
        }
    }
}

/// Why a type-7 payload is not valid. Offsets count from the payload's first byte.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmopWireError {
    /// Fewer bytes than the header.
    #[error("AMOP payload of {len} bytes is shorter than its 9-byte header")]
    Short {
        /// The payload's length.
        len: usize,
    },
    /// The kind byte at offset 0 is none of 1, 2, 3.
    #[error("AMOP payload kind byte at offset 0 is {kind}; only 1, 2 and 3 are defined")]
    UnknownKind {
        /// The byte.
        kind: u8,
    },
    /// The bytes from offset 9 are not exactly one channel frame.
    #[error("AMOP payload: the channel frame at offset 9 is invalid: {source}")]
    Frame {
        /// Why, with offsets from the frame's start.
        source: ChannelError,
    },
    /// The frame's type (at offset 13) does not match the kind.
    #[error("AMOP payload of kind {kind} carries a frame of type {frame_type:#x} at offset 13, not {expected:#x}")]
    FrameType {
        /// The kind byte.
        kind: u8,
        /// The frame's type.
        frame_type: u16,
        /// The type the kind carries.
        expected: u16,
    },
}

/// One type-7 payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmopForward {
    /// What it carries.
    pub kind: AmopForwardKind,
    /// The exchange it belongs to (0 for a multicast).
    pub request: u64,
    /// The channel frame, as the SDK sent it.
    pub frame: Bytes,
}

impl AmopForward {
    /// Encodes the payload.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(AMOP_FORWARD_HEADER_LEN + self.frame.len());
        buf.put_u8(self.kind.byte());
        buf.put_u64(self.request);
        buf.put_slice(&self.frame);
        buf.freeze()
    }

    /// Decodes a payload whose frame is at most `max_frame` bytes, and the frame itself (its
    /// data a slice of `payload`).
    pub fn decode(
        payload: &Bytes,
        max_frame: u32,
    ) -> Result<(AmopForward, ChannelPack), AmopWireError> {
        if payload.len() < AMOP_FORWARD_HEADER_LEN {
            return Err(AmopWireError::Short { len: payload.len() });
        }
        let kind = AmopForwardKind::from_byte(payload[0])
            .ok_or(AmopWireError::UnknownKind { kind: payload[0] })?;
        let mut id = [0u8; 8];
        id.copy_from_slice(&payload[1..AMOP_FORWARD_HEADER_LEN]);
        let frame = payload.slice(AMOP_FORWARD_HEADER_LEN..);
        let pack = ChannelPack::decode_exact(&frame, max_frame)
            .map_err(|source| AmopWireError::Frame { source })?;
        if pack.kind != kind.frame_type() {
            return Err(AmopWireError::FrameType {
                kind: kind.byte(),
                frame_type: pack.kind.0,
                expected: kind.frame_type().0,
            });
        }
        let forward = AmopForward {
            kind,
            request: u64::from_be_bytes(id),
            frame,
        };
        Ok((forward, pack))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{encode_amop, ZERO_SEQ};

    fn frame(kind: ChannelType) -> Bytes {
        let data = encode_amop("t1", b"hello").unwrap();
        ChannelPack::new(kind, ZERO_SEQ, data)
            .to_bytes(1024)
            .unwrap()
    }

    #[test]
    fn every_kind_round_trips_with_its_frame_unchanged() {
        for (kind, t) in [
            (AmopForwardKind::UnicastRequest, ChannelType::AMOP_REQUEST),
            (AmopForwardKind::UnicastAnswer, ChannelType::AMOP_RESPONSE),
            (AmopForwardKind::Multicast, ChannelType::AMOP_MULTICAST),
        ] {
            let f = AmopForward {
                kind,
                request: 0x0102_0304_0506_0708,
                frame: frame(t),
            };
            let bytes = f.encode();
            assert_eq!(bytes[0], kind.byte());
            assert_eq!(&bytes[1..9], &[1, 2, 3, 4, 5, 6, 7, 8]);
            let (back, pack) = AmopForward::decode(&bytes, 1024).unwrap();
            assert_eq!(back, f);
            assert_eq!((pack.kind, &pack.data[1..3]), (t, &b"t1"[..]));
        }
    }

    #[test]
    fn a_short_payload_is_refused() {
        let err = AmopForward::decode(&Bytes::from_static(&[1, 0, 0]), 1024).unwrap_err();
        assert_eq!(err, AmopWireError::Short { len: 3 });
    }

    #[test]
    fn an_unknown_kind_is_refused_with_its_byte() {
        let mut bytes = BytesMut::from(&[9u8; 9][..]);
        bytes.extend_from_slice(&frame(ChannelType::AMOP_REQUEST));
        let err = AmopForward::decode(&bytes.freeze(), 1024).unwrap_err();
        assert_eq!(err, AmopWireError::UnknownKind { kind: 9 });
        assert!(err.to_string().contains("offset 0"));
    }

    #[test]
    fn a_frame_that_is_not_exactly_one_channel_frame_is_refused() {
        let f = AmopForward {
            kind: AmopForwardKind::Multicast,
            request: 0,
            frame: frame(ChannelType::AMOP_MULTICAST).slice(..45),
        };
        let err = AmopForward::decode(&f.encode(), 1024).unwrap_err();
        assert!(matches!(
            err,
            AmopWireError::Frame {
                source: ChannelError::Truncated {
                    needed: 50,
                    available: 45
                }
            }
        ));
        assert!(err.to_string().contains("offset 9"));
    }

    #[test]
    fn a_frame_of_the_wrong_type_for_the_kind_is_refused() {
        let f = AmopForward {
            kind: AmopForwardKind::UnicastAnswer,
            request: 7,
            frame: frame(ChannelType::AMOP_REQUEST),
        };
        let err = AmopForward::decode(&f.encode(), 1024).unwrap_err();
        assert_eq!(
            err,
            AmopWireError::FrameType {
                kind: 2,
                frame_type: 0x30,
                expected: 0x31
            }
        );
    }
}
