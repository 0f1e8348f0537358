//! Everything that can be wrong with bytes on the wire, or with a packet about to be sent.

use std::fmt;

/// Why bytes are not a valid packet (or handshake, or goodbye), or why a packet cannot be sent.
///
/// Offsets count from the first byte of the packet, so they can be matched against
/// `chainmesh inspect` output or a hex dump.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The Length field is smaller than the fixed header it is part of.
    #[error("packet Length field is {length}, smaller than the {header}-byte header")]
    LengthTooSmall {
        /// The Length field as received.
        length: u32,
        /// The header length, [`HEADER_LEN`](super::HEADER_LEN).
        header: usize,
    },
    /// The Length field exceeds the largest packet this node accepts.
    #[error("packet Length field is {length} bytes, larger than the {max}-byte limit")]
    LengthTooLarge {
        /// The Length field as received.
        length: u64,
        /// The configured maximum packet size.
        max: u32,
    },
    /// Fewer bytes were given than the packet needs (only from one-shot decoding; the
    /// streaming decoder waits for more instead).
    #[error("packet is truncated: it needs {needed} bytes but only {available} were given")]
    Truncated {
        /// Bytes the packet needs: its Length, or the header length while Length is unknown.
        needed: usize,
        /// Bytes given.
        available: usize,
    },
    /// More bytes were given than the packet's Length covers (only from one-shot decoding).
    #[error("{extra} trailing bytes after the {length}-byte packet")]
    TrailingBytes {
        /// The packet's Length field.
        length: u32,
        /// Bytes left over after it.
        extra: usize,
    },
    /// A packet in direct form ([`Ext::DIRECT`](super::Ext::DIRECT)) was read without the link
    /// it arrived on, which is what names its source.
    #[error(
        "the packet is in direct form (Ext 0x0020): its source is the link's peer, and no \
         link was given"
    )]
    DirectOffLink,
    /// A packet to send in direct form lists destinations, which that form cannot carry.
    #[error(
        "a packet in direct form (Ext 0x0020) cannot list destinations, and {count} were given"
    )]
    DirectWithDestinations {
        /// Destinations listed.
        count: usize,
    },
    /// A packet in direct form has [`Ext::AUTH`](super::Ext::AUTH) set: the direct form lists
    /// no destinations, so it has no tags to carry (and needs none: the link proves it).
    #[error("a packet in direct form (Ext 0x0020) cannot carry tags (Ext 0x0040)")]
    AuthInDirectForm,
    /// A packet to send carries other than one tag per destination with
    /// [`Ext::AUTH`](super::Ext::AUTH), or tags without it.
    #[error("the packet carries {tags} bytes of tags where its destinations need {expected}")]
    TagsMismatch {
        /// Bytes of tags given.
        tags: usize,
        /// Bytes its destinations need: 16 each with AUTH, else 0.
        expected: usize,
    },
    /// An options field runs past the end of the packet.
    #[error(
        "options field {field} at offset {offset} needs {needed} bytes, but the {length}-byte \
         packet has only {available} left"
    )]
    OptionsOverrun {
        /// The field being read, e.g. `"source NodeID"`.
        field: &'static str,
        /// Where the field starts.
        offset: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the packet from `offset` on.
        available: usize,
        /// The packet's Length field.
        length: u32,
    },
    /// The destination list announced by the destination count does not fit in the packet.
    #[error(
        "destination count {count} at offset {offset} needs {needed} bytes of node IDs (plus 2 \
         for ModuleID), but the {length}-byte packet has only {available} left"
    )]
    DestinationsOverrun {
        /// The destination count as received.
        count: u16,
        /// Where the destination list starts.
        offset: usize,
        /// Bytes the list needs: `count` × the NodeID length.
        needed: usize,
        /// Bytes left in the packet from `offset` on.
        available: usize,
        /// The packet's Length field.
        length: u32,
    },
    /// The NodeID length field is not 64.
    #[error("NodeID length field at offset {offset} is {length}, but a node ID is 64 bytes")]
    BadNodeIdLength {
        /// The NodeID length as received.
        length: u16,
        /// Where the field is.
        offset: usize,
    },
    /// The GroupID is not UTF-8.
    #[error("GroupID at offset {offset} is not UTF-8 (invalid byte at offset {bad_offset})")]
    GroupNotUtf8 {
        /// Where the GroupID bytes start.
        offset: usize,
        /// Where the first invalid byte is.
        bad_offset: usize,
    },
    /// A Handshake payload is neither 18 bytes nor the older form's 10.
    #[error("handshake payload is {length} bytes, expected {expected} (or 10 in the older form)")]
    HandshakeSize {
        /// Payload length as received.
        length: usize,
        /// The length of the current form, [`Handshake::LEN`](super::Handshake::LEN).
        expected: usize,
    },
    /// A Handshake names incarnation 0, which is never drawn.
    #[error("handshake incarnation is 0; a node's incarnation is never 0")]
    HandshakeIncarnationZero,
    /// A Handshake's version range is empty.
    #[error("handshake version range is empty: min_version {min} > max_version {max}")]
    HandshakeVersionRange {
        /// min_version as received.
        min: u16,
        /// max_version as received.
        max: u16,
    },
    /// A Handshake announces a packet limit too small to carry even a heartbeat.
    #[error(
        "handshake max_packet_size is {max_packet_size}, smaller than the {header}-byte header"
    )]
    HandshakeMaxPacketTooSmall {
        /// max_packet_size as received.
        max_packet_size: u32,
        /// The header length, [`HEADER_LEN`](super::HEADER_LEN).
        header: usize,
    },
    /// The two sides of a handshake support no common protocol version.
    #[error("no common protocol version: {0}")]
    NoCommonVersion(VersionRanges),
    /// A Goodbye reason is not UTF-8.
    #[error("goodbye reason is not UTF-8 (invalid byte at payload offset {bad_offset})")]
    GoodbyeNotUtf8 {
        /// Where the first invalid byte is, counted from the start of the payload.
        bad_offset: usize,
    },
    /// A packet to send has options although its type carries none, or lacks them although
    /// its type needs them.
    #[error(
        "packet type {packet_type:#06x} {} options, but the packet {}",
        if *.type_has_options { "carries" } else { "carries no" },
        if *.type_has_options { "has none" } else { "has some" }
    )]
    OptionsMismatch {
        /// The packet type.
        packet_type: u16,
        /// Whether that type carries options on the wire.
        type_has_options: bool,
    },
    /// A packet to route has a type that carries no options, so nothing in it says where it
    /// goes.
    #[error("packet type {packet_type:#06x} carries no options, so it cannot be routed")]
    Unroutable {
        /// The packet type.
        packet_type: u16,
    },
    /// A GroupID to send is longer than its u16 length prefix can say.
    #[error("GroupID is {length} bytes, more than the 65535 its length field can hold")]
    GroupTooLong {
        /// The GroupID's length in bytes.
        length: usize,
    },
    /// A destination list to send is longer than its u16 count can say.
    #[error("{count} destinations, more than the 65535 the destination count can hold")]
    TooManyDestinations {
        /// The number of destinations.
        count: usize,
    },
    /// A COMPRESSED payload is not a valid zstd frame.
    #[error("compressed payload does not decompress: {reason}")]
    Decompress {
        /// What zstd said.
        reason: String,
    },
    /// A COMPRESSED payload would decompress to more than the packet size limit.
    #[error("compressed payload would decompress to more than the {max}-byte limit")]
    DecompressedTooLarge {
        /// The limit: the receiver's maximum packet size.
        max: usize,
    },
    /// A RouterSeq payload is not exactly the 36 bytes of a summary.
    #[error("RouterSeq payload is {length} bytes, expected 36")]
    RouterSeqSize {
        /// Payload length as received.
        length: usize,
    },
    /// A RouterResponse ends inside a neighbour list (or before its list count).
    #[error("RouterResponse needs {needed} bytes for its next part, but only {available} remain")]
    RouterListSize {
        /// Bytes the next part needs.
        needed: usize,
        /// Bytes left in the payload.
        available: usize,
    },
    /// A neighbour list's neighbours are not strictly ascending, or name the origin.
    #[error("neighbour list is not strictly ascending or names its own origin")]
    RouterListOrder,
    /// A RouterResponse has bytes after its last list.
    #[error("RouterResponse has {extra} bytes after its last list")]
    RouterTrailing {
        /// The extra bytes.
        extra: usize,
    },
    /// A RouterRequest has a payload; version 3's is empty.
    #[error("RouterRequest payload is {length} bytes, expected none")]
    RouterRequestSize {
        /// Payload length as received.
        length: usize,
    },
    /// A Multicast payload is too short for the topic its length prefix announces.
    #[error("multicast topic needs {needed} bytes, but the payload has only {available}")]
    TopicOverrun {
        /// Bytes the topic length and topic need.
        needed: usize,
        /// Payload length.
        available: usize,
    },
    /// A Multicast topic is not UTF-8.
    #[error("multicast topic is not UTF-8")]
    TopicNotUtf8,
    /// A topic to send is longer than its u16 length prefix can say.
    #[error("topic is {length} bytes, more than the 65535 its length field can hold")]
    TopicTooLong {
        /// The topic's length in bytes.
        length: usize,
    },
}

/// Both sides' protocol version ranges, when they do not overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRanges {
    /// Our lowest version.
    pub ours_min: u16,
    /// Our highest version.
    pub ours_max: u16,
    /// The peer's lowest version.
    pub theirs_min: u16,
    /// The peer's highest version.
    pub theirs_max: u16,
}

impl fmt::Display for VersionRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "we support {}..={}, the peer {}..={}",
            self.ours_min, self.ours_max, self.theirs_min, self.theirs_max
        )
    }
}
