//! A packet as JSON, for `chainmesh inspect` and for the examples in `docs/protocol.md`.

use serde::Serialize;

use super::handshake::Handshake;
use super::packet::{Ext, Options, Packet, PacketType, TAG_LEN};
use super::router::{decode_lists, split_topic, NeighbourList, RouterSummary};
use crate::identity::NodeId;

/// Everything `chainmesh inspect` shows about a packet, in the order it shows it.
///
/// The first fields mirror the wire format; the rest (`packet_type_name`, `flags`, `ttl`,
/// `payload_len` and the decoded payloads) are readings of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PacketView {
    /// The Length field: the whole packet in bytes.
    pub length: usize,
    /// The Version field.
    pub version: u16,
    /// The PacketType field.
    pub packet_type: u16,
    /// The type's name, `null` when this version does not know it.
    pub packet_type_name: Option<&'static str>,
    /// The Seq field.
    pub seq: u32,
    /// The whole Ext field, TTL included.
    pub ext: u16,
    /// Names of the flags set in Ext: `RESPONSE`, `ERROR`, `REQUEST`, `COMPRESSED`, `DIRECT`,
    /// `AUTH`, and `reserved:0x…` for each reserved bit that is set.
    pub flags: Vec<String>,
    /// The TTL byte of Ext.
    pub ttl: u8,
    /// The options, `null` when the type carries none.
    pub options: Option<OptionsView>,
    /// Payload length in bytes.
    pub payload_len: usize,
    /// The payload as lowercase hex.
    pub payload_hex: String,
    /// A Handshake's decoded payload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handshake: Option<Handshake>,
    /// Why a Handshake's payload does not decode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handshake_error: Option<String>,
    /// A Goodbye's reason (invalid UTF-8 replaced by U+FFFD).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goodbye_reason: Option<String>,
    /// An error response's text (invalid UTF-8 replaced by U+FFFD).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_text: Option<String>,
    /// A RouterSeq's summary of the lists its sender holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub router_summary: Option<RouterSummary>,
    /// A RouterResponse's signed neighbour lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub neighbour_lists: Option<Vec<NeighbourList>>,
    /// An uncompressed Multicast's topic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Why a RouterSeq, RouterResponse or Multicast payload does not decode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_error: Option<String>,
}

/// The options of a packet, with node IDs as 128-character lowercase hex.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OptionsView {
    /// The GroupID.
    pub group_id: String,
    /// The source node ID.
    pub src_node_id: NodeId,
    /// The destination node IDs.
    pub dst_node_ids: Vec<NodeId>,
    /// The ModuleID.
    pub module_id: u16,
    /// With AUTH: each destination's tag as 32 lowercase hex characters, in the order of
    /// `dst_node_ids`; left out when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

impl From<&Options> for OptionsView {
    fn from(o: &Options) -> Self {
        OptionsView {
            group_id: o.group.to_string(),
            src_node_id: o.src,
            dst_node_ids: o.dsts.clone(),
            module_id: o.module,
            tags: o.tags.chunks(TAG_LEN).map(hex::encode).collect(),
        }
    }
}

/// Names of the flags set in `ext`.
pub fn flag_names(ext: Ext) -> Vec<String> {
    let mut names: Vec<String> = [
        (Ext::RESPONSE, "RESPONSE"),
        (Ext::ERROR, "ERROR"),
        (Ext::REQUEST, "REQUEST"),
        (Ext::REFUSED, "REFUSED"),
        (Ext::COMPRESSED, "COMPRESSED"),
        (Ext::DIRECT, "DIRECT"),
        (Ext::AUTH, "AUTH"),
    ]
    .into_iter()
    .filter(|(flag, _)| ext.contains(*flag))
    .map(|(_, name)| name.to_owned())
    .collect();
    let reserved = ext.reserved_bits();
    names.extend(
        (0..16)
            .map(|bit| 1u16 << bit)
            .filter(|b| reserved & b != 0)
            .map(|b| format!("reserved:{b:#06x}")),
    );
    names
}

/// The view of a packet that `chainmesh inspect` prints.
pub fn inspect_view(p: &Packet) -> PacketView {
    let (handshake, handshake_error) = if p.packet_type == PacketType::HANDSHAKE {
        match Handshake::decode(&p.payload) {
            Ok(h) => (Some(h), None),
            Err(e) => (None, Some(e.to_string())),
        }
    } else {
        (None, None)
    };
    let text = || String::from_utf8_lossy(&p.payload).into_owned();
    let mut payload_error = None;
    let mut fail = |e: super::WireError| payload_error = Some(e.to_string());
    let router_summary = match p.packet_type {
        PacketType::ROUTER_SEQ => RouterSummary::decode(&p.payload).map_err(&mut fail).ok(),
        _ => None,
    };
    let neighbour_lists = match p.packet_type {
        PacketType::ROUTER_RESPONSE => decode_lists(&p.payload).map_err(&mut fail).ok(),
        _ => None,
    };
    let topic = match p.packet_type {
        PacketType::MULTICAST if !p.ext.is_compressed() => split_topic(&p.payload)
            .map(|(t, _)| t.to_owned())
            .map_err(&mut fail)
            .ok(),
        _ => None,
    };
    PacketView {
        length: p.encoded_len(),
        version: p.version,
        packet_type: p.packet_type.0,
        packet_type_name: p.packet_type.name(),
        seq: p.seq,
        ext: p.ext.0,
        flags: flag_names(p.ext),
        ttl: p.ext.ttl(),
        options: p.options.as_ref().map(OptionsView::from),
        payload_len: p.payload.len(),
        payload_hex: hex::encode(&p.payload),
        handshake,
        handshake_error,
        goodbye_reason: (p.packet_type == PacketType::GOODBYE).then(text),
        error_text: p.ext.is_error().then(text),
        router_summary,
        neighbour_lists,
        topic,
        payload_error,
    }
}

/// [`inspect_view`] as a JSON value, for comparing against documented examples.
pub fn inspect_json(p: &Packet) -> serde_json::Value {
    // Serialising plain numbers, strings and node IDs cannot fail; Null stands in regardless.
    serde_json::to_value(inspect_view(p)).unwrap_or(serde_json::Value::Null)
}
