//! The P2P wire format: packets as bytes and back. Pure codecs: no I/O, no clocks.
//!
//! Every link carries a stream of concatenated packets inside TLS. Each packet is a 14-byte
//! header (Length, Version, PacketType, Seq, Ext), then, for addressed data types, the
//! [`Options`] (group, source, destinations, module), then the payload. `docs/protocol.md`
//! is the specification; this module implements it:
//!
//! - [`Packet`] encodes and decodes one packet ([`Packet::decode_exact`]);
//! - [`Decoder`] cuts packets out of a stream however it was split into reads;
//! - [`fragment_header`] frames a piece of a packet too big to hold a link (version 4);
//! - [`Handshake`], [`encode_goodbye`] and [`decode_goodbye`] handle the link-control payloads;
//! - [`set_ttl_in_place`] and [`patch_for_relay`] let a relay patch an encoded packet where
//!   it lies, and [`relay_frame`] makes what a relay forwards;
//! - [`DataFrame`] encodes a data packet from borrowed parts, compressing its payload with
//!   zstd when that pays ([`compress_append`], [`decompress`]);
//! - [`NeighbourList`], [`RouterSummary`], [`encode_lists`] and [`split_topic`] handle the
//!   routing and multicast payloads;
//! - [`Ext::AUTH`] and [`Options::tags`] carry the tags that prove a relayed packet's source
//!   (computed by `crate::auth`, which sits above this module);
//! - [`ChannelPack`] and [`ChannelDecoder`] are the SDK channel protocol's frames (FISCO BCOS
//!   2.x), and [`split_amop`] / [`encode_amop`] the topic framing of AMOP data;
//! - [`inspect_view`] and [`inspect_json`] show a packet as `chainmesh inspect` prints it.
//!
//! The codec checks structure only. Per-type rules (one destination on a Unicast, an empty
//! heartbeat payload, the Version agreed on the link) belong to the session layer, which
//! treats a violation like any other malformed input.

mod amop;
mod channel;
mod compress;
mod decoder;
mod error;
mod fragment;
mod frame;
mod handshake;
mod packet;
mod router;
mod view;

#[cfg(test)]
mod tests;

pub use amop::{AmopForward, AmopForwardKind, AmopWireError, AMOP_FORWARD_HEADER_LEN};
pub use channel::{
    amop_topic, encode_amop, result as channel_result, split_amop, ChannelDecoder, ChannelError,
    ChannelPack, ChannelSeq, ChannelType, CHANNEL_HEADER_LEN, DEFAULT_MAX_CHANNEL_FRAME,
    MAX_AMOP_TOPIC_LEN, SEQ_LEN, ZERO_SEQ,
};
pub use compress::{
    compress_append, declared_size, decompress, COMPRESSION_LEVEL, DEFAULT_COMPRESS_THRESHOLD,
    MAX_WINDOW_LOG,
};
pub use decoder::{Decoder, RESERVE_STEP};
pub use error::{VersionRanges, WireError};
pub use fragment::{fragment_header, FRAGMENT_VERSION};
pub use frame::{ext_of, for_link, patch_for_relay, relay_frame, set_version_in_place, DataFrame};
pub use handshake::{
    decode_goodbye, encode_goodbye, Handshake, DIRECT_FORM_VERSION, MAX_HANDSHAKE_PACKET,
    MAX_PROTOCOL_VERSION, MIN_PROTOCOL_VERSION,
};
pub use packet::{set_ttl_in_place, Ext, Options, Packet, PacketType, DEFAULT_TTL, TAG_LEN};
pub use router::{
    decode_lists, encode_lists, encode_topic_prefix, split_topic, ListVersion, NeighbourList,
    RouterSummary, LIST_HEAD, LIST_SIGNATURE_LEN, LIST_SIGNING_CONTEXT, MAX_LIST_NEIGHBOURS,
    ROUTER_SUMMARY_LEN,
};
pub use view::{flag_names, inspect_json, inspect_view, OptionsView, PacketView};

/// Length of the fixed P2P packet header.
pub const HEADER_LEN: usize = 14;

/// Default largest packet accepted or sent: 32 MiB, as FISCO BCOS (`p2p.max_packet_size`).
pub const DEFAULT_MAX_PACKET: u32 = 32 * 1024 * 1024;
