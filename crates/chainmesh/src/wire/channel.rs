//! The SDK channel protocol of FISCO BCOS 2.x: ChannelPack frames, and the topic framing of
//! AMOP data. Pure: no I/O, no clocks.
//!
//! A channel stream is a sequence of frames, each a 42-byte header and its data:
//!
//! ```text
//! offset size field
//! 0      4    length  u32, the whole frame's length, header included
//! 4      2    type    u16 (ChannelType)
//! 6      32   seq     opaque; SDKs send 32 lowercase hex characters
//! 38     4    result  i32, 0 = ok
//! 42     n    data    length - 42 bytes
//! ```
//!
//! All integers are big-endian. AMOP frames (0x30, 0x31, 0x35) carry
//! `u8 L | topic (L - 1 bytes, UTF-8) | payload` as their data ([`split_amop`],
//! [`encode_amop`]). `docs/amop.md` shows each frame with real bytes.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::decoder::RESERVE_STEP;

/// Length of the fixed ChannelPack header.
pub const CHANNEL_HEADER_LEN: usize = 42;

/// Length of a frame's seq field.
pub const SEQ_LEN: usize = 32;

/// Default largest channel frame accepted: 100 MiB, the limit of FISCO BCOS 2.x nodes.
pub const DEFAULT_MAX_CHANNEL_FRAME: u32 = 100 * 1024 * 1024;

/// Longest AMOP topic, in bytes: the length byte L is `len + 1` and at most 255.
pub const MAX_AMOP_TOPIC_LEN: usize = 254;

/// A frame's seq: 32 opaque bytes the answer to a request repeats.
pub type ChannelSeq = [u8; SEQ_LEN];

/// The seq FISCO nodes put on pushes that answer nothing (block notify): 32 ASCII `'0'`.
pub const ZERO_SEQ: ChannelSeq = [b'0'; SEQ_LEN];

/// The type field of a ChannelPack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelType(pub u16);

impl ChannelType {
    /// JSON-RPC 2.0 request or answer; the answer repeats the request's seq.
    pub const RPC: ChannelType = ChannelType(0x12);
    /// Keep-alive (and, at channel protocol v2+, a `{"heartBeat":0}` query).
    pub const HEARTBEAT: ChannelType = ChannelType(0x13);
    /// Protocol version negotiation (the Java SDK's first frame).
    pub const HANDSHAKE: ChannelType = ChannelType(0x14);
    /// Registers an event-log filter.
    pub const EVENT_REGISTER: ChannelType = ChannelType(0x15);
    /// Unregisters an event-log filter.
    pub const EVENT_UNREGISTER: ChannelType = ChannelType(0x16);
    /// AMOP unicast request: to one subscriber of the topic.
    pub const AMOP_REQUEST: ChannelType = ChannelType(0x30);
    /// AMOP response: a subscriber's ack, or the node's answer to a publisher.
    pub const AMOP_RESPONSE: ChannelType = ChannelType(0x31);
    /// Subscribe: a JSON array of topics that replaces the session's topic set.
    pub const SUBSCRIBE: ChannelType = ChannelType(0x32);
    /// AMOP multicast: to every subscriber of the topic.
    pub const AMOP_MULTICAST: ChannelType = ChannelType(0x35);
    /// Private-topic verify request, node to SDK (and the SDK's ack of it).
    pub const VERIFY: ChannelType = ChannelType(0x37);
    /// Private-topic verify result, SDK to node.
    pub const UPDATE_TOPIC_STATUS: ChannelType = ChannelType(0x38);
    /// Transaction receipt notify.
    pub const TX_NOTIFY: ChannelType = ChannelType(0x1000);
    /// Block notify.
    pub const BLOCK_NOTIFY: ChannelType = ChannelType(0x1001);
    /// Event-log push.
    pub const EVENT_LOG_PUSH: ChannelType = ChannelType(0x1002);

    /// The type's name in logs and in `chainmesh inspect`, `None` for an unknown type.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            ChannelType::RPC => "rpc",
            ChannelType::HEARTBEAT => "heartbeat",
            ChannelType::HANDSHAKE => "handshake",
            ChannelType::EVENT_REGISTER => "event-register",
            ChannelType::EVENT_UNREGISTER => "event-unregister",
            ChannelType::AMOP_REQUEST => "amop-request",
            ChannelType::AMOP_RESPONSE => "amop-response",
            ChannelType::SUBSCRIBE => "subscribe",
            ChannelType::AMOP_MULTICAST => "amop-multicast",
            ChannelType::VERIFY => "verify",
            ChannelType::UPDATE_TOPIC_STATUS => "update-topic-status",
            ChannelType::TX_NOTIFY => "tx-notify",
            ChannelType::BLOCK_NOTIFY => "block-notify",
            ChannelType::EVENT_LOG_PUSH => "event-log-push",
            _ => return None,
        })
    }
}

impl std::fmt::Display for ChannelType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(name) => write!(f, "0x{:02x} ({name})", self.0),
            None => write!(f, "0x{:02x}", self.0),
        }
    }
}

/// Result codes of AMOP answers.
pub mod result {
    /// Done.
    pub const OK: i32 = 0;
    /// No node has a subscriber for the topic (FISCO: REMOTE_PEER_UNAVAILABLE).
    pub const NO_SUBSCRIBER: i32 = 100;
    /// The subscriber's client is gone (FISCO: REMOTE_CLIENT_PEER_UNAVAILABLE).
    pub const CLIENT_UNAVAILABLE: i32 = 101;
    /// No answer in time.
    pub const TIMEOUT: i32 = 102;
    /// Refused: the sender is over its limit (FISCO: over the bandwidth limit).
    pub const OVER_LIMIT: i32 = 103;
    /// Every subscriber failed or timed out.
    pub const ALL_FAILED: i32 = 104;
}

/// Why bytes are not a valid channel frame, or AMOP data. Offsets count from the frame's
/// first byte.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// The length field is smaller than the header it is part of.
    #[error("channel frame length field is {length}, smaller than the 42-byte header")]
    LengthTooSmall {
        /// The length field as received.
        length: u32,
    },
    /// The length field exceeds the largest frame accepted.
    #[error("channel frame length field is {length} bytes, larger than the {max}-byte limit")]
    LengthTooLarge {
        /// The length field as received (or as it would be, when encoding).
        length: u64,
        /// The limit.
        max: u32,
    },
    /// Fewer bytes than the frame needs (one-shot decoding only).
    #[error("channel frame is truncated: it needs {needed} bytes but only {available} were given")]
    Truncated {
        /// Bytes the frame needs.
        needed: usize,
        /// Bytes given.
        available: usize,
    },
    /// More bytes than the frame's length covers (one-shot decoding only).
    #[error("{extra} trailing bytes after the {length}-byte channel frame")]
    TrailingBytes {
        /// The frame's length field.
        length: u32,
        /// Bytes left over.
        extra: usize,
    },
    /// AMOP data without even its topic length byte.
    #[error("AMOP data at offset 42 is empty: it needs a topic length byte")]
    NoTopicLength,
    /// The topic length byte is 0 or 1: no room for a topic (L counts itself).
    #[error("AMOP topic length byte at offset 42 is {byte}: the topic would be empty")]
    EmptyTopic {
        /// The byte.
        byte: u8,
    },
    /// The topic runs past the end of the data.
    #[error(
        "AMOP topic length byte at offset 42 is {byte}, but only {available} bytes of data \
         follow it"
    )]
    TopicOverrun {
        /// The byte (topic length + 1).
        byte: u8,
        /// Data bytes after the length byte.
        available: usize,
    },
    /// The topic is not UTF-8.
    #[error("AMOP topic at offset 43 is not UTF-8 (invalid byte at offset {offset})")]
    TopicNotUtf8 {
        /// Offset of the first invalid byte, from the frame's start.
        offset: usize,
    },
    /// A topic to encode is empty or longer than [`MAX_AMOP_TOPIC_LEN`].
    #[error("an AMOP topic must be 1 to 254 bytes long, and this one is {len}")]
    TopicLength {
        /// The topic's length in bytes.
        len: usize,
    },
}

/// One channel frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelPack {
    /// What the frame is.
    pub kind: ChannelType,
    /// Chosen by the side that starts an exchange; answers repeat it.
    pub seq: ChannelSeq,
    /// 0 for ok; an error code otherwise (see [`result`]).
    pub result: i32,
    /// The frame's data.
    pub data: Bytes,
}

impl ChannelPack {
    /// A frame of `kind` with result 0.
    pub fn new(kind: ChannelType, seq: ChannelSeq, data: Bytes) -> ChannelPack {
        ChannelPack {
            kind,
            seq,
            result: result::OK,
            data,
        }
    }

    /// The answer to this frame: same seq, the given type, result and data.
    pub fn answer(&self, kind: ChannelType, result: i32, data: Bytes) -> ChannelPack {
        ChannelPack {
            kind,
            seq: self.seq,
            result,
            data,
        }
    }

    /// Length of the encoded frame, header included.
    pub fn encoded_len(&self) -> usize {
        CHANNEL_HEADER_LEN.saturating_add(self.data.len())
    }

    /// Appends the encoded frame to `dst`. Fails if it would be longer than `max` bytes
    /// (which is also what keeps the length within its 32 bits).
    pub fn encode_into(&self, dst: &mut BytesMut, max: u32) -> Result<(), ChannelError> {
        let len = self.encoded_len();
        let length =
            u32::try_from(len)
                .ok()
                .filter(|l| *l <= max)
                .ok_or(ChannelError::LengthTooLarge {
                    length: len as u64,
                    max,
                })?;
        dst.reserve(len);
        dst.put_u32(length);
        dst.put_u16(self.kind.0);
        dst.put_slice(&self.seq);
        dst.put_i32(self.result);
        dst.put_slice(&self.data);
        Ok(())
    }

    /// The encoded frame. Fails if it would be longer than `max` bytes.
    pub fn to_bytes(&self, max: u32) -> Result<Bytes, ChannelError> {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.encode_into(&mut buf, max)?;
        Ok(buf.freeze())
    }

    /// Decodes exactly one frame: `bytes` must hold the whole frame and nothing more. The
    /// data is a slice of `bytes`.
    pub fn decode_exact(bytes: &Bytes, max: u32) -> Result<ChannelPack, ChannelError> {
        let Some(length) = peek_length(bytes) else {
            return Err(ChannelError::Truncated {
                needed: CHANNEL_HEADER_LEN,
                available: bytes.len(),
            });
        };
        let length = check_length(length, max)?;
        if bytes.len() < length {
            return Err(ChannelError::Truncated {
                needed: length,
                available: bytes.len(),
            });
        }
        if bytes.len() > length {
            return Err(ChannelError::TrailingBytes {
                length: length as u32,
                extra: bytes.len() - length,
            });
        }
        Ok(parse(bytes.clone()))
    }
}

/// The length field at the front of `buf`, once its 4 bytes are in.
fn peek_length(buf: &[u8]) -> Option<u32> {
    let head: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(head))
}

/// The frame length as a `usize` if it is within `[CHANNEL_HEADER_LEN, max]`.
fn check_length(length: u32, max: u32) -> Result<usize, ChannelError> {
    if (length as usize) < CHANNEL_HEADER_LEN {
        return Err(ChannelError::LengthTooSmall { length });
    }
    if length > max {
        return Err(ChannelError::LengthTooLarge {
            length: u64::from(length),
            max,
        });
    }
    Ok(length as usize)
}

/// Splits a whole frame (its length already checked) into its fields.
fn parse(mut frame: Bytes) -> ChannelPack {
    let mut head = frame.split_to(CHANNEL_HEADER_LEN);
    head.advance(4);
    let kind = ChannelType(head.get_u16());
    let mut seq = [0u8; SEQ_LEN];
    head.copy_to_slice(&mut seq);
    let result = head.get_i32();
    ChannelPack {
        kind,
        seq,
        result,
        data: frame,
    }
}

/// Cuts channel frames out of a receive buffer, one per call, however the stream was split
/// into reads.
#[derive(Debug, Clone)]
pub struct ChannelDecoder {
    max_len: u32,
}

impl ChannelDecoder {
    /// A decoder that refuses frames longer than `max_len` bytes.
    pub fn new(max_len: u32) -> ChannelDecoder {
        ChannelDecoder { max_len }
    }

    /// The largest frame accepted.
    pub fn max_len(&self) -> u32 {
        self.max_len
    }

    /// Takes the next frame off the front of `buf`, with the frame's bytes as received (the
    /// data is a slice of them), so that it can be forwarded unchanged.
    ///
    /// Returns `Ok(None)` when `buf` does not hold a whole frame yet; nothing is consumed then.
    /// A length under 42 or over the limit is reported as soon as its 4 bytes are in; the
    /// stream cannot be resynchronised after it and must be closed.
    pub fn decode(
        &mut self,
        buf: &mut BytesMut,
    ) -> Result<Option<(ChannelPack, Bytes)>, ChannelError> {
        let Some(length) = peek_length(buf) else {
            return Ok(None);
        };
        let length = check_length(length, self.max_len)?;
        if buf.len() < length {
            // Room for the next stretch only: the length is the client's word, and memory
            // grows with the bytes that come, not with the announcement.
            buf.reserve((length - buf.len()).min(RESERVE_STEP));
            return Ok(None);
        }
        let frame = buf.split_to(length).freeze();
        Ok(Some((parse(frame.clone()), frame)))
    }
}

/// Splits AMOP data into its topic and payload (both slices of `data`, no copy).
pub fn split_amop(data: &Bytes) -> Result<(ByteString, Bytes), ChannelError> {
    let &byte = data.first().ok_or(ChannelError::NoTopicLength)?;
    if byte < 2 {
        return Err(ChannelError::EmptyTopic { byte });
    }
    let topic_len = usize::from(byte) - 1;
    let available = data.len() - 1;
    if available < topic_len {
        return Err(ChannelError::TopicOverrun { byte, available });
    }
    let topic = data.slice(1..1 + topic_len);
    let payload = data.slice(1 + topic_len..);
    let topic = ByteString::try_from(topic).map_err(|e| ChannelError::TopicNotUtf8 {
        offset: CHANNEL_HEADER_LEN + 1 + e.valid_up_to(),
    })?;
    Ok((topic, payload))
}

/// Only the topic of AMOP data, without splitting off the payload.
pub fn amop_topic(data: &Bytes) -> Result<ByteString, ChannelError> {
    split_amop(data).map(|(topic, _)| topic)
}

/// AMOP data for `topic` and `payload`: `u8 (len + 1) | topic | payload`.
pub fn encode_amop(topic: &str, payload: &[u8]) -> Result<Bytes, ChannelError> {
    let len = topic.len();
    if len == 0 || len > MAX_AMOP_TOPIC_LEN {
        return Err(ChannelError::TopicLength { len });
    }
    let mut buf = BytesMut::with_capacity(1 + len + payload.len());
    // In range by the check above: 2..=255.
    buf.put_u8((len + 1) as u8);
    buf.put_slice(topic.as_bytes());
    buf.put_slice(payload);
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEQ: &[u8; 32] = b"d13f1ca0e8a611f1970302fc00000001";

    fn hex(s: &str) -> Bytes {
        Bytes::from(::hex::decode(s.replace([' ', '\n'], "")).unwrap())
    }

    fn seq_hex() -> String {
        ::hex::encode(SEQ)
    }

    #[test]
    fn the_captured_python_sdk_publish_decodes_and_re_encodes_byte_for_byte() {
        let wire = hex(&format!(
            "00000032 0030 {} 00000000 03 7431 68656c6c6f",
            seq_hex()
        ));
        let pack = ChannelPack::decode_exact(&wire, DEFAULT_MAX_CHANNEL_FRAME).unwrap();
        assert_eq!(pack.kind, ChannelType::AMOP_REQUEST);
        assert_eq!(&pack.seq, SEQ);
        assert_eq!(pack.result, 0);
        let (topic, payload) = split_amop(&pack.data).unwrap();
        assert_eq!((&*topic, &payload[..]), ("t1", &b"hello"[..]));
        assert_eq!(pack.to_bytes(DEFAULT_MAX_CHANNEL_FRAME).unwrap(), wire);
        assert_eq!(encode_amop("t1", b"hello").unwrap(), pack.data);
    }

    #[test]
    fn the_no_subscriber_answer_is_42_bytes_with_result_100() {
        let request = ChannelPack::new(ChannelType::AMOP_REQUEST, *SEQ, hex("037431"));
        let answer = request.answer(
            ChannelType::AMOP_RESPONSE,
            result::NO_SUBSCRIBER,
            Bytes::new(),
        );
        assert_eq!(
            answer.to_bytes(DEFAULT_MAX_CHANNEL_FRAME).unwrap(),
            hex(&format!("0000002a 0031 {} 00000064", seq_hex()))
        );
    }

    #[test]
    fn the_captured_subscribe_and_heartbeat_decode() {
        let sub = hex(&format!(
            "0000003c 0032 {} 00000000 5b227431222c20226d7920746f706963225d",
            seq_hex()
        ));
        let pack = ChannelPack::decode_exact(&sub, DEFAULT_MAX_CHANNEL_FRAME).unwrap();
        assert_eq!(pack.kind, ChannelType::SUBSCRIBE);
        assert_eq!(&pack.data[..], br#"["t1", "my topic"]"#);
        let hb = hex(&format!("0000002a 0013 {} 00000000", seq_hex()));
        let pack = ChannelPack::decode_exact(&hb, DEFAULT_MAX_CHANNEL_FRAME).unwrap();
        assert_eq!((pack.kind, pack.data.len()), (ChannelType::HEARTBEAT, 0));
    }

    #[test]
    fn a_negative_result_round_trips() {
        let pack = ChannelPack {
            kind: ChannelType::RPC,
            seq: ZERO_SEQ,
            result: -1,
            data: Bytes::from_static(b"{}"),
        };
        let bytes = pack.to_bytes(1024).unwrap();
        assert_eq!(&bytes[38..42], &[0xff; 4]);
        assert_eq!(ChannelPack::decode_exact(&bytes, 1024).unwrap(), pack);
    }

    #[test]
    fn the_decoder_cuts_frames_however_the_stream_is_split() {
        let a = ChannelPack::new(ChannelType::HEARTBEAT, *SEQ, Bytes::new());
        let b = ChannelPack::new(
            ChannelType::AMOP_REQUEST,
            ZERO_SEQ,
            encode_amop("t", b"x").unwrap(),
        );
        let mut stream = BytesMut::new();
        a.encode_into(&mut stream, 1024).unwrap();
        b.encode_into(&mut stream, 1024).unwrap();
        let stream = stream.freeze();
        for cut in 0..stream.len() {
            let mut dec = ChannelDecoder::new(1024);
            let mut buf = BytesMut::from(&stream[..cut]);
            let mut got = Vec::new();
            while let Some((pack, _)) = dec.decode(&mut buf).unwrap() {
                got.push(pack);
            }
            buf.extend_from_slice(&stream[cut..]);
            while let Some((pack, frame)) = dec.decode(&mut buf).unwrap() {
                assert_eq!(frame, pack.to_bytes(1024).unwrap());
                got.push(pack);
            }
            assert_eq!(got, vec![a.clone(), b.clone()], "cut at {cut}");
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn lengths_under_the_header_or_over_the_limit_fail_on_their_first_four_bytes() {
        let mut dec = ChannelDecoder::new(1000);
        let mut buf = BytesMut::from(&[0u8, 0, 0, 41][..]);
        assert_eq!(
            dec.decode(&mut buf),
            Err(ChannelError::LengthTooSmall { length: 41 })
        );
        let mut buf = BytesMut::from(&[0u8, 0, 3, 233][..]);
        assert_eq!(
            dec.decode(&mut buf),
            Err(ChannelError::LengthTooLarge {
                length: 1001,
                max: 1000
            })
        );
        // A length within the limit waits for the rest, reserving one step at most.
        let mut buf = BytesMut::from(&[0u8, 0, 3, 232][..]);
        assert_eq!(dec.decode(&mut buf), Ok(None));
        assert_eq!(buf.len(), 4);
    }

    #[test]
    fn one_shot_decoding_refuses_short_and_long_inputs() {
        let frame = ChannelPack::new(ChannelType::RPC, ZERO_SEQ, Bytes::from_static(b"ab"))
            .to_bytes(100)
            .unwrap();
        assert_eq!(
            ChannelPack::decode_exact(&frame.slice(..43), 100),
            Err(ChannelError::Truncated {
                needed: 44,
                available: 43
            })
        );
        let mut long = BytesMut::from(&frame[..]);
        long.put_u8(0);
        assert_eq!(
            ChannelPack::decode_exact(&long.freeze(), 100),
            Err(ChannelError::TrailingBytes {
                length: 44,
                extra: 1
            })
        );
        assert!(matches!(
            ChannelPack::new(ChannelType::RPC, ZERO_SEQ, Bytes::from(vec![0; 59])).to_bytes(100),
            Err(ChannelError::LengthTooLarge { length: 101, .. })
        ));
    }

    #[test]
    fn amop_data_errors_name_what_is_wrong() {
        assert_eq!(split_amop(&Bytes::new()), Err(ChannelError::NoTopicLength));
        assert_eq!(
            split_amop(&hex("01")),
            Err(ChannelError::EmptyTopic { byte: 1 })
        );
        assert_eq!(
            split_amop(&hex("05 7431")),
            Err(ChannelError::TopicOverrun {
                byte: 5,
                available: 2
            })
        );
        assert_eq!(
            split_amop(&hex("03 74ff")),
            Err(ChannelError::TopicNotUtf8 { offset: 44 })
        );
        // Empty payload is fine.
        assert_eq!(split_amop(&hex("03 7431")).unwrap().1, Bytes::new());
    }

    #[test]
    fn topics_of_254_bytes_encode_and_longer_ones_do_not() {
        let t254 = "t".repeat(254);
        let data = encode_amop(&t254, b"p").unwrap();
        assert_eq!(data[0], 255);
        assert_eq!(&*split_amop(&data).unwrap().0, t254);
        assert_eq!(
            encode_amop(&"t".repeat(255), b""),
            Err(ChannelError::TopicLength { len: 255 })
        );
        assert_eq!(
            encode_amop("", b""),
            Err(ChannelError::TopicLength { len: 0 })
        );
    }

    #[test]
    fn types_print_with_their_names() {
        assert_eq!(ChannelType::AMOP_REQUEST.to_string(), "0x30 (amop-request)");
        assert_eq!(ChannelType(0x99).to_string(), "0x99");
    }
}
