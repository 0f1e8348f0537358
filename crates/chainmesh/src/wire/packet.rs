//! The P2P packet: header, Ext flags, addressing options, payload; one-shot encode and decode.

use std::fmt;
use std::ops::{BitOr, BitOrAssign};

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::error::WireError;
use super::HEADER_LEN;
use crate::identity::{NodeId, NODE_ID_LEN};

/// Default relay hop count put in the TTL of a packet with options.
pub const DEFAULT_TTL: u8 = 10;

/// Bytes of one destination's tag in a packet with [`Ext::AUTH`].
pub const TAG_LEN: usize = 16;

/// Byte offset of the Ext field inside the header; its first (high) byte is the TTL.
const EXT_OFFSET: usize = 12;

/// The NodeID length field as written by us, checked on receipt.
const NODE_ID_LEN_U16: u16 = NODE_ID_LEN as u16;

/// Largest value of a u16 length or count prefix.
const U16_MAX: usize = u16::MAX as usize;

/// A packet's type: what its payload is and whether it carries [`Options`].
///
/// The numbering is FISCO BCOS 3.x's. Unknown values are kept as they are so that a packet
/// from a newer peer can be decoded and skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PacketType(pub u16);

impl PacketType {
    /// Link keep-alive; no options, empty payload, seq 0.
    pub const HEARTBEAT: PacketType = PacketType(0x01);
    /// Protocol handshake, first packet each way; payload is a [`Handshake`](super::Handshake).
    pub const HANDSHAKE: PacketType = PacketType(0x02);
    /// Asks a node for its status.
    pub const STATUS_REQUEST: PacketType = PacketType(0x03);
    /// A node's status.
    pub const STATUS_RESPONSE: PacketType = PacketType(0x04);
    /// Application data to one node.
    pub const UNICAST: PacketType = PacketType(0x05);
    /// Application data to every node of a group.
    pub const BROADCAST: PacketType = PacketType(0x06);
    /// AMOP (topic-based messaging) data.
    pub const AMOP: PacketType = PacketType(0x07);
    /// A node's status sequence number, for status synchronisation.
    pub const STATUS_SEQ: PacketType = PacketType(0x09);
    /// A router's table sequence number; neighbours only.
    pub const ROUTER_SEQ: PacketType = PacketType(0x0a);
    /// A router table; neighbours only.
    pub const ROUTER_RESPONSE: PacketType = PacketType(0x0b);
    /// Asks a neighbour for its router table.
    pub const ROUTER_REQUEST: PacketType = PacketType(0x0c);
    /// Topic multicast; payload starts with a u16-prefixed topic.
    pub const MULTICAST: PacketType = PacketType(0x0e);
    /// A node is leaving; payload is a UTF-8 reason.
    pub const GOODBYE: PacketType = PacketType(0x0f);
    /// A piece of a packet too big to hold a link for its whole length (protocol version 4);
    /// neighbours only. Seq is the piece's byte offset in that packet.
    pub const FRAGMENT: PacketType = PacketType(0x10);

    /// Whether packets of this type carry [`Options`] between header and payload.
    ///
    /// Unknown types are taken to carry none, which is what lets them be framed and skipped.
    pub const fn has_options(self) -> bool {
        matches!(self.0, 0x03..=0x07 | 0x09 | 0x0e)
    }

    /// The type's name, or `None` for a type this version does not know.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0x01 => "Heartbeat",
            0x02 => "Handshake",
            0x03 => "StatusRequest",
            0x04 => "StatusResponse",
            0x05 => "Unicast",
            0x06 => "Broadcast",
            0x07 => "Amop",
            0x09 => "StatusSeq",
            0x0a => "RouterSeq",
            0x0b => "RouterResponse",
            0x0c => "RouterRequest",
            0x0e => "Multicast",
            0x0f => "Goodbye",
            0x10 => "Fragment",
            _ => return None,
        })
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}({:#04x})", self.0),
            None => write!(f, "unknown({:#06x})", self.0),
        }
    }
}

/// The header's Ext field: flag bits in the low byte, the relay TTL in the high byte.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Ext(pub u16);

impl Ext {
    /// The packet answers a request with the same Seq.
    pub const RESPONSE: Ext = Ext(0x0001);
    /// The response reports a failure; its payload is the remote handler's UTF-8 error text.
    /// Always sent together with [`Ext::RESPONSE`].
    pub const ERROR: Ext = Ext(0x0002);
    /// The sender waits for a response with the same Seq; a receiver with no handler for the
    /// module answers at once with [`Ext::ERROR`] instead of leaving it to time out.
    pub const REQUEST: Ext = Ext(0x0004);
    /// Set with [`Ext::RESPONSE`] and [`Ext::ERROR`]: the responder's node refused the
    /// request before any handler saw it, over its module's incoming rate limit. The payload
    /// is still the error text, so a receiver that ignores the bit reads an error response.
    pub const REFUSED: Ext = Ext(0x0008);
    /// The payload is zstd-compressed.
    pub const COMPRESSED: Ext = Ext(0x0010);
    /// Direct form (protocol version 2 on): the options leave out the NodeID length, the
    /// source and the destination list, because the link says them. The source is the node
    /// at the other end of the link the packet arrived on, and the receiver is its only
    /// destination, so it is never relayed. Saves 132 bytes on every packet between
    /// neighbours; a link that agreed version 1 never carries it.
    pub const DIRECT: Ext = Ext(0x0020);
    /// Source-authenticated (protocol version 3): right after ModuleID the options carry one
    /// [`TAG_LEN`]-byte tag per listed destination, in list order, by which each destination
    /// checks that the source named made the packet. Only in the full form.
    pub const AUTH: Ext = Ext(0x0040);
    /// The bits holding the TTL.
    pub const TTL_MASK: u16 = 0xff00;
    /// Bits with no meaning yet: sent as 0, ignored on receipt.
    pub const RESERVED_MASK: u16 =
        !(Ext::TTL_MASK | 0x0001 | 0x0002 | 0x0004 | 0x0008 | 0x0010 | 0x0020 | 0x0040);

    /// Remaining relay hops; only meaningful on packets with options.
    pub const fn ttl(self) -> u8 {
        (self.0 >> 8) as u8
    }

    /// The same flags with the TTL replaced.
    #[must_use]
    pub const fn with_ttl(self, ttl: u8) -> Ext {
        Ext((self.0 & !Ext::TTL_MASK) | ((ttl as u16) << 8))
    }

    /// Whether [`Ext::RESPONSE`] is set.
    pub const fn is_response(self) -> bool {
        self.0 & Ext::RESPONSE.0 != 0
    }

    /// Whether [`Ext::ERROR`] is set.
    pub const fn is_error(self) -> bool {
        self.0 & Ext::ERROR.0 != 0
    }

    /// Whether [`Ext::COMPRESSED`] is set.
    pub const fn is_compressed(self) -> bool {
        self.0 & Ext::COMPRESSED.0 != 0
    }

    /// Whether [`Ext::DIRECT`] is set: the options are in direct form.
    pub const fn is_direct(self) -> bool {
        self.0 & Ext::DIRECT.0 != 0
    }

    /// Whether [`Ext::AUTH`] is set: the options end with the destinations' tags.
    pub const fn is_auth(self) -> bool {
        self.0 & Ext::AUTH.0 != 0
    }

    /// Whether every bit of `other` is set in `self`.
    pub const fn contains(self, other: Ext) -> bool {
        self.0 & other.0 == other.0
    }

    /// The reserved bits that are set; a conforming sender leaves this 0.
    pub const fn reserved_bits(self) -> u16 {
        self.0 & Ext::RESERVED_MASK
    }
}

impl BitOr for Ext {
    type Output = Ext;

    fn bitor(self, rhs: Ext) -> Ext {
        Ext(self.0 | rhs.0)
    }
}

impl BitOrAssign for Ext {
    fn bitor_assign(&mut self, rhs: Ext) {
        self.0 |= rhs.0;
    }
}

/// Addressing carried by data packets (types where [`PacketType::has_options`] holds).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Options {
    /// The group the packet belongs to; may be empty. Decoded, it shares the packet's buffer.
    pub group: ByteString,
    /// The node that created the packet (not the relay that forwarded it).
    pub src: NodeId,
    /// The nodes the packet is for; empty for broadcast and multicast.
    pub dsts: Vec<NodeId>,
    /// The module (application handler) the payload is for.
    pub module: u16,
    /// With [`Ext::AUTH`]: one [`TAG_LEN`]-byte tag per destination, in the order of `dsts`,
    /// back to back; empty otherwise. Decoded, it shares the packet's buffer.
    pub tags: Bytes,
}

impl Options {
    /// Bytes with no variable part: GroupID length, NodeID length, source, count, ModuleID.
    pub const FIXED_LEN: usize = 2 + 2 + NODE_ID_LEN + 2 + 2;

    /// Bytes with no variable part in the direct form ([`Ext::DIRECT`]): GroupID length and
    /// ModuleID.
    pub const DIRECT_FIXED_LEN: usize = 2 + 2;

    /// Bytes these options take on the wire, in the direct form when `ext` says so.
    pub fn encoded_len(&self, ext: Ext) -> usize {
        let group = self.group.len().min(U16_MAX);
        if ext.is_direct() {
            Options::DIRECT_FIXED_LEN + group
        } else {
            let tags = if ext.is_auth() { self.tags.len() } else { 0 };
            Options::FIXED_LEN + group + NODE_ID_LEN * self.dsts.len().min(U16_MAX) + tags
        }
    }

    /// The tag of the destination at `index` in `dsts`, if the options carry one.
    pub fn tag(&self, index: usize) -> Option<&[u8]> {
        let start = index.checked_mul(TAG_LEN)?;
        self.tags.get(start..start.checked_add(TAG_LEN)?)
    }

    fn encode(&self, dst: &mut BytesMut, ext: Ext) {
        // Cut over-long fields to what their prefix can say so the frame stays well-formed;
        // `Packet::validate` reports them before it comes to that.
        let group: &[u8] = self.group.as_ref();
        let group = group.get(..U16_MAX).unwrap_or(group);
        dst.put_u16(group.len() as u16);
        dst.put_slice(group);
        if !ext.is_direct() {
            let dsts = self.dsts.get(..U16_MAX).unwrap_or(&self.dsts);
            dst.put_u16(NODE_ID_LEN_U16);
            dst.put_slice(self.src.as_bytes());
            dst.put_u16(dsts.len() as u16);
            for d in dsts {
                dst.put_slice(d.as_bytes());
            }
        }
        dst.put_u16(self.module);
        if ext.is_auth() && !ext.is_direct() {
            dst.put_slice(&self.tags);
        }
    }

    /// Parses options from `frame` (a whole packet) starting right after the header; returns
    /// them and the offset where the payload starts. `link` is the node at the other end of
    /// the link the packet came on: the source of a packet in direct form.
    fn decode(
        frame: &Bytes,
        h: &Header,
        link: Option<&NodeId>,
    ) -> Result<(Options, usize), WireError> {
        let length = h.length;
        let mut r = Reader {
            frame,
            pos: HEADER_LEN,
            length,
        };
        let group_len = r.u16("GroupID length")?;
        let group_at = r.pos;
        let group = r.take(usize::from(group_len), "GroupID")?;
        if let Err(e) = std::str::from_utf8(group) {
            return Err(WireError::GroupNotUtf8 {
                offset: group_at,
                bad_offset: group_at + e.valid_up_to(),
            });
        }
        let group =
            ByteString::try_from(frame.slice_ref(group)).map_err(|_| WireError::GroupNotUtf8 {
                offset: group_at,
                bad_offset: group_at,
            })?;
        if h.ext.is_direct() {
            if h.ext.is_auth() {
                return Err(WireError::AuthInDirectForm);
            }
            let src = *link.ok_or(WireError::DirectOffLink)?;
            let module = r.u16("ModuleID")?;
            let options = Options {
                group,
                src,
                dsts: Vec::new(),
                module,
                tags: Bytes::new(),
            };
            return Ok((options, r.pos));
        }
        let id_len_at = r.pos;
        let id_len = r.u16("NodeID length")?;
        if id_len != NODE_ID_LEN_U16 {
            return Err(WireError::BadNodeIdLength {
                length: id_len,
                offset: id_len_at,
            });
        }
        let src = node_id(r.take(NODE_ID_LEN, "source NodeID")?);
        let count = r.u16("destination count")?;
        let needed = usize::from(count) * NODE_ID_LEN;
        let list_at = r.pos;
        // Checked here rather than by `take` so the error names the count, and so that the
        // ModuleID after the list is accounted for before the Vec is allocated.
        let available = frame.len().saturating_sub(list_at);
        if needed.saturating_add(2) > available {
            return Err(WireError::DestinationsOverrun {
                count,
                offset: list_at,
                needed,
                available,
                length,
            });
        }
        let list = r.take(needed, "destination NodeIDs")?;
        let dsts = list.chunks_exact(NODE_ID_LEN).map(node_id).collect();
        let module = r.u16("ModuleID")?;
        let tags = if h.ext.is_auth() {
            // The count is a u16, so this cannot overflow.
            let tags = r.take(usize::from(count) * TAG_LEN, "destination tags")?;
            frame.slice_ref(tags)
        } else {
            Bytes::new()
        };
        Ok((
            Options {
                group,
                src,
                dsts,
                module,
                tags,
            },
            r.pos,
        ))
    }
}

/// A node ID from a slice that the caller has already cut to exactly [`NODE_ID_LEN`] bytes.
fn node_id(bytes: &[u8]) -> NodeId {
    let mut id = [0u8; NODE_ID_LEN];
    // Lengths are equal by construction; copying into a zeroed array instead of
    // `try_into().expect()` keeps this free of panics even if that ever changed.
    let n = bytes.len().min(NODE_ID_LEN);
    if let (Some(to), Some(from)) = (id.get_mut(..n), bytes.get(..n)) {
        to.copy_from_slice(from);
    }
    NodeId::from_bytes(id)
}

/// A bounds-checked cursor over one packet, for the options.
struct Reader<'a> {
    frame: &'a [u8],
    pos: usize,
    length: u32,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        let end = self.pos.saturating_add(n);
        match self.frame.get(self.pos..end) {
            Some(bytes) => {
                self.pos = end;
                Ok(bytes)
            }
            None => Err(WireError::OptionsOverrun {
                field,
                offset: self.pos,
                needed: n,
                available: self.frame.len().saturating_sub(self.pos),
                length: self.length,
            }),
        }
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        let b = self.take(2, field)?;
        match *b {
            [hi, lo] => Ok(u16::from_be_bytes([hi, lo])),
            // `take` returned exactly 2 bytes.
            _ => Err(WireError::OptionsOverrun {
                field,
                offset: self.pos,
                needed: 2,
                available: b.len(),
                length: self.length,
            }),
        }
    }
}

/// The fixed header fields of a packet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub(crate) length: u32,
    pub(crate) version: u16,
    pub(crate) packet_type: PacketType,
    pub(crate) seq: u32,
    pub(crate) ext: Ext,
}

impl Header {
    /// Reads the header from the first [`HEADER_LEN`] bytes, or `None` if there are fewer.
    pub(crate) fn parse(bytes: &[u8]) -> Option<Header> {
        let h: &[u8; HEADER_LEN] = bytes.get(..HEADER_LEN)?.try_into().ok()?;
        let [l0, l1, l2, l3, v0, v1, t0, t1, s0, s1, s2, s3, e0, e1] = *h;
        Some(Header {
            length: u32::from_be_bytes([l0, l1, l2, l3]),
            version: u16::from_be_bytes([v0, v1]),
            packet_type: PacketType(u16::from_be_bytes([t0, t1])),
            seq: u32::from_be_bytes([s0, s1, s2, s3]),
            ext: Ext(u16::from_be_bytes([e0, e1])),
        })
    }
}

/// Reads the Length field, if 4 bytes are there.
pub(crate) fn peek_length(bytes: &[u8]) -> Option<u32> {
    let l: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(l))
}

/// Checks a Length field against the header size and the limit.
pub(crate) fn check_length(length: u32, max_len: u32) -> Result<(), WireError> {
    if (length as usize) < HEADER_LEN {
        return Err(WireError::LengthTooSmall {
            length,
            header: HEADER_LEN,
        });
    }
    if length > max_len {
        return Err(WireError::LengthTooLarge {
            length: u64::from(length),
            max: max_len,
        });
    }
    Ok(())
}

/// Parses one whole packet whose Length was checked and equals `frame.len()`. Returns the
/// packet with an empty payload and the offset where the payload starts, so callers can
/// attach the payload without copying when they own the buffer. `link` is the peer the
/// packet arrived from, which a packet in direct form names as its source.
pub(crate) fn parse_frame(
    frame: &Bytes,
    link: Option<&NodeId>,
) -> Result<(Packet, usize), WireError> {
    let h = Header::parse(frame).ok_or(WireError::Truncated {
        needed: HEADER_LEN,
        available: frame.len(),
    })?;
    let (options, payload_at) = if h.packet_type.has_options() {
        let (o, at) = Options::decode(frame, &h, link)?;
        (Some(o), at)
    } else {
        (None, HEADER_LEN)
    };
    Ok((
        Packet {
            version: h.version,
            packet_type: h.packet_type,
            seq: h.seq,
            ext: h.ext,
            options,
            payload: Bytes::new(),
        },
        payload_at,
    ))
}

/// One P2P packet.
///
/// Options are written exactly when `options` is `Some`, while the receiver reads them exactly
/// when [`PacketType::has_options`] holds; the two must agree, which [`Packet::validate`]
/// checks before sending.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Packet {
    /// The protocol version agreed in the handshake; 0 before.
    pub version: u16,
    /// What the packet is.
    pub packet_type: PacketType,
    /// The sender's message counter; a response carries its request's; link-control packets
    /// (heartbeat, handshake, goodbye) use 0.
    pub seq: u32,
    /// Flags and TTL.
    pub ext: Ext,
    /// Addressing, for types that carry it.
    pub options: Option<Options>,
    /// The body.
    pub payload: Bytes,
}

impl Packet {
    /// A heartbeat for a link that agreed on `version`.
    pub fn heartbeat(version: u16) -> Packet {
        Packet {
            version,
            packet_type: PacketType::HEARTBEAT,
            seq: 0,
            ext: Ext::default(),
            options: None,
            payload: Bytes::new(),
        }
    }

    /// The handshake packet; its Version is 0 because nothing is agreed yet.
    pub fn handshake(hs: &super::Handshake) -> Packet {
        Packet {
            version: 0,
            packet_type: PacketType::HANDSHAKE,
            seq: 0,
            ext: Ext::default(),
            options: None,
            payload: Bytes::copy_from_slice(&hs.encode()),
        }
    }

    /// A goodbye carrying `reason`, for a link that agreed on `version`.
    pub fn goodbye(version: u16, reason: &str) -> Packet {
        Packet {
            version,
            packet_type: PacketType::GOODBYE,
            seq: 0,
            ext: Ext::default(),
            options: None,
            payload: super::encode_goodbye(reason),
        }
    }

    /// Bytes the packet takes on the wire, which is also its Length field.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + self.options.as_ref().map_or(0, |o| o.encoded_len(self.ext))
            + self.payload.len()
    }

    /// Checks that the packet can be sent to a peer whose limit is `max_len`: options present
    /// exactly when the type carries them, GroupID and destination list within their u16
    /// prefixes, and the whole packet within the limit.
    pub fn validate(&self, max_len: u32) -> Result<(), WireError> {
        let type_has_options = self.packet_type.has_options();
        if type_has_options != self.options.is_some() {
            return Err(WireError::OptionsMismatch {
                packet_type: self.packet_type.0,
                type_has_options,
            });
        }
        if let Some(o) = &self.options {
            if o.group.len() > U16_MAX {
                return Err(WireError::GroupTooLong {
                    length: o.group.len(),
                });
            }
            if o.dsts.len() > U16_MAX {
                return Err(WireError::TooManyDestinations {
                    count: o.dsts.len(),
                });
            }
            if self.ext.is_direct() && !o.dsts.is_empty() {
                return Err(WireError::DirectWithDestinations {
                    count: o.dsts.len(),
                });
            }
            check_tags(self.ext, o.dsts.len(), o.tags.len())?;
        }
        let len = self.encoded_len();
        if len > max_len as usize {
            return Err(WireError::LengthTooLarge {
                length: len as u64,
                max: max_len,
            });
        }
        Ok(())
    }

    /// Appends the encoded packet to `dst`.
    ///
    /// Never fails: the caller checks the size limit with [`Packet::encoded_len`] (or
    /// everything with [`Packet::validate`]) first. A GroupID or destination list too long for
    /// its u16 prefix is cut to 65535, and a Length above `u32::MAX` saturates; neither can
    /// happen to a packet that passes `validate`.
    pub fn encode(&self, dst: &mut BytesMut) {
        let len = self.encoded_len();
        dst.reserve(len);
        dst.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
        dst.put_u16(self.version);
        dst.put_u16(self.packet_type.0);
        dst.put_u32(self.seq);
        dst.put_u16(self.ext.0);
        if let Some(o) = &self.options {
            o.encode(dst, self.ext);
        }
        dst.put_slice(&self.payload);
    }

    /// The encoded packet as its own buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut b);
        b.freeze()
    }

    /// Decodes exactly one packet: `bytes` must hold the whole packet and nothing else.
    /// A packet in direct form ([`Ext::DIRECT`]) names no source and fails with
    /// [`WireError::DirectOffLink`]; [`decode_exact_from`](Self::decode_exact_from) reads it.
    ///
    /// The payload is copied; the streaming [`Decoder`](super::Decoder) avoids that.
    pub fn decode_exact(bytes: &[u8], max_len: u32) -> Result<Packet, WireError> {
        Packet::decode_exact_on(bytes, max_len, None)
    }

    /// Like [`decode_exact`](Self::decode_exact), for a packet that arrived on a link from
    /// `peer`: a packet in direct form gets `peer` as its source.
    pub fn decode_exact_from(
        bytes: &[u8],
        max_len: u32,
        peer: &NodeId,
    ) -> Result<Packet, WireError> {
        Packet::decode_exact_on(bytes, max_len, Some(peer))
    }

    fn decode_exact_on(
        bytes: &[u8],
        max_len: u32,
        link: Option<&NodeId>,
    ) -> Result<Packet, WireError> {
        let length = peek_length(bytes).ok_or(WireError::Truncated {
            needed: HEADER_LEN,
            available: bytes.len(),
        })?;
        check_length(length, max_len)?;
        let needed = length as usize;
        if bytes.len() < needed {
            return Err(WireError::Truncated {
                needed,
                available: bytes.len(),
            });
        }
        if bytes.len() > needed {
            return Err(WireError::TrailingBytes {
                length,
                extra: bytes.len() - needed,
            });
        }
        let bytes = Bytes::copy_from_slice(bytes);
        let (mut packet, payload_at) = parse_frame(&bytes, link)?;
        packet.payload = bytes.slice(payload_at.min(bytes.len())..);
        Ok(packet)
    }
}

/// Checks that a packet to send with `ext` and `dsts` destinations carries `tags` bytes of
/// tags as [`Ext::AUTH`] says: one per destination with it (never in direct form), none
/// without.
pub(crate) fn check_tags(ext: Ext, dsts: usize, tags: usize) -> Result<(), WireError> {
    if ext.is_auth() && ext.is_direct() {
        return Err(WireError::AuthInDirectForm);
    }
    let want = if ext.is_auth() {
        dsts.saturating_mul(TAG_LEN)
    } else {
        0
    };
    if tags != want {
        return Err(WireError::TagsMismatch {
            tags,
            expected: want,
        });
    }
    Ok(())
}

/// Rewrites the TTL of an encoded packet, so a relay can forward a copy without re-encoding.
///
/// Does nothing to a `frame` shorter than the header, which cannot be an encoded packet.
pub fn set_ttl_in_place(frame: &mut [u8], ttl: u8) {
    if frame.len() >= HEADER_LEN {
        if let Some(b) = frame.get_mut(EXT_OFFSET) {
            *b = ttl;
        }
    }
}
