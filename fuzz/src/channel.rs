//! The SDK channel: the frame stream, AMOP's topic framing, and the JSON a session parses
//! (the topic list of a subscribe frame, JSON-RPC requests, the session-control frames).

use bytes::Bytes;
use chainmesh::amop::control::{handshake_answer, heartbeat_answer, PROTOCOLS};
use chainmesh::amop::{parse_call, parse_subscription, RpcError};
use chainmesh::wire::{
    amop_topic, encode_amop, split_amop, ChannelDecoder, ChannelPack, ChannelType,
    MAX_AMOP_TOPIC_LEN, RESERVE_STEP,
};
use serde_json::Value;

use super::stream::{split_invariant, Split};

/// Largest frame the stream decoder takes: `channel.max_frame` can be set this low, and an
/// input can cross it.
const MAX_FRAME: u32 = 1 << 16;

/// The channel frame decoder fed a stream in pieces the input chooses ([`Split`]).
///
/// Checks: the pieces change nothing; each frame re-encodes to exactly the bytes it was cut
/// from and decodes the same one-shot; the data of an AMOP frame that splits into topic and
/// payload joins again to the same bytes; the JSON of a subscribe or RPC frame goes through
/// the node's own parsers ([`parse_subscription`], [`parse_call`]).
pub fn channel_stream(data: &[u8]) {
    let decoded = split_invariant(
        &Split::of(data),
        RESERVE_STEP,
        || ChannelDecoder::new(MAX_FRAME),
        |d, buf| d.decode(buf),
    );
    for (pack, frame) in decoded.items.iter().flatten() {
        assert_eq!(pack.to_bytes(MAX_FRAME).as_ref(), Ok(frame));
        assert_eq!(
            ChannelPack::decode_exact(frame, MAX_FRAME).as_ref(),
            Ok(pack)
        );
        match pack.kind {
            ChannelType::AMOP_REQUEST
            | ChannelType::AMOP_RESPONSE
            | ChannelType::AMOP_MULTICAST => check_amop(&pack.data),
            ChannelType::SUBSCRIBE => check_topics(&pack.data),
            ChannelType::RPC => check_rpc(&pack.data),
            _ => {}
        }
    }
}

fn check_amop(data: &Bytes) {
    if let Ok((topic, payload)) = split_amop(data) {
        assert!((1..=MAX_AMOP_TOPIC_LEN).contains(&topic.len()));
        assert_eq!(encode_amop(&topic, &payload).as_ref(), Ok(data));
        assert_eq!(amop_topic(data).as_ref(), Ok(&topic));
    }
}

/// The JSON payloads of a channel session, from the same bytes, through the node's own
/// readers: a subscribe frame's topic list, a JSON-RPC request, a 0x14 handshake and a 0x13
/// heartbeat.
///
/// Checks: an accepted topic list keeps the node's bounds and every topic frames as AMOP data;
/// it and a request survive serialising and parsing again to the same outcome; a request's
/// answer id is one JSON-RPC allows and its error code the one the bytes call for; an agreed
/// handshake names a protocol the node speaks; nothing recurses without bound.
pub fn channel_json(data: &[u8]) {
    check_topics(data);
    check_rpc(data);
    check_control(data);
}

/// Topics one subscribe frame may name: `channel.max_topics_per_session`'s default.
pub const MAX_TOPICS: usize = 256;

fn check_topics(data: &[u8]) {
    if let Ok(topics) = parse_subscription(data, MAX_TOPICS) {
        for t in &topics {
            assert!(
                encode_amop(t, b"").is_ok(),
                "accepted topic {t:?} cannot be framed"
            );
        }
        let again = serde_json::to_vec(&topics).unwrap_or_default();
        assert_eq!(parse_subscription(&again, MAX_TOPICS), Ok(topics));
    }
}

/// The node's own JSON-RPC reader ([`parse_call`]), checked against what the bytes are.
fn check_rpc(data: &[u8]) {
    let parsed = parse_call(data);
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        let code = parsed.map(|_| ()).map_err(|(id, e)| (id, e.code));
        assert_eq!(code, Err((Value::Null, RpcError::PARSE_ERROR)));
        return;
    };
    match &parsed {
        Ok(call) => {
            assert!(v.is_object());
            assert_eq!(
                v.get("method").and_then(Value::as_str),
                Some(call.method.as_str())
            );
            assert!(call.params.is_null() || call.params.is_array() || call.params.is_object());
            assert!(call.id.is_null() || call.id.is_number() || call.id.is_string());
        }
        Err((id, e)) => {
            assert_eq!(e.code, RpcError::INVALID_REQUEST);
            assert!(id.is_null() || id.is_number() || id.is_string());
        }
    }
    // Without serde_json's float_roundtrip a float may come back one unit in the last place
    // off; everything else must survive a round trip exactly, and parse the same.
    if !has_float(&v) {
        let text = serde_json::to_vec(&v).unwrap_or_default();
        assert_eq!(serde_json::from_slice::<Value>(&text).ok(), Some(v));
        assert_eq!(parse_call(&text), parsed);
    }
}

/// The session-control frames' JSON, through the node's own answers: a 0x14 handshake that
/// is agreed picks a protocol the node speaks and answers it; a 0x13 answer is one of the two
/// the notes give.
fn check_control(data: &[u8]) {
    if let Ok((version, answer)) = handshake_answer(data) {
        assert!(PROTOCOLS.contains(&u64::from(version)));
        let v: Value = serde_json::from_str(&answer).unwrap_or_default();
        assert_eq!(
            v.get("protocol").and_then(Value::as_u64),
            Some(u64::from(version))
        );
    }
    for protocol in 1..=3 {
        if let Some(answer) = heartbeat_answer(protocol, data) {
            assert!(answer == b"1" || answer == b"{\"heartBeat\":1}\n");
        }
    }
}

fn has_float(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_f64(),
        Value::Array(a) => a.iter().any(has_float),
        Value::Object(o) => o.values().any(has_float),
        _ => false,
    }
}
