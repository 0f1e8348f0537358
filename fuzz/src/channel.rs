//! The SDK channel: the frame stream, AMOP's topic framing, and the JSON a session parses
//! (the topic list of a subscribe frame, JSON-RPC requests).

use bytes::Bytes;
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
/// [`parse_topics`] and [`parse_rpc`].
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

/// The JSON payloads of a channel session, from the same bytes: a subscribe frame's topic
/// list and a JSON-RPC request.
///
/// Checks: an accepted topic list keeps the node's bounds and every topic frames as AMOP data;
/// it and an accepted request survive serialising and parsing again; nothing recurses
/// without bound.
pub fn channel_json(data: &[u8]) {
    check_topics(data);
    check_rpc(data);
}

/// Topics one subscribe frame may name: `channel.max_topics_per_session`'s default.
pub const MAX_TOPICS: usize = 256;

/// Why a subscribe frame's topic list is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicsError {
    /// Not a JSON array of strings.
    Json(String),
    /// More topics than the session may hold.
    TooMany(usize),
    /// A topic that cannot be AMOP framed: empty or over [`MAX_AMOP_TOPIC_LEN`] bytes.
    Length(usize),
}

/// A subscribe frame's data (`["t1", "t2"]`, FISCO BCOS 2.x's 0x32) with the bounds the
/// node applies: at most `max` topics, each 1 to [`MAX_AMOP_TOPIC_LEN`] bytes.
pub fn parse_topics(data: &[u8], max: usize) -> Result<Vec<String>, TopicsError> {
    let topics: Vec<String> =
        serde_json::from_slice(data).map_err(|e| TopicsError::Json(e.to_string()))?;
    if topics.len() > max {
        return Err(TopicsError::TooMany(topics.len()));
    }
    if let Some(bad) = topics
        .iter()
        .find(|t| !(1..=MAX_AMOP_TOPIC_LEN).contains(&t.len()))
    {
        return Err(TopicsError::Length(bad.len()));
    }
    Ok(topics)
}

fn check_topics(data: &[u8]) {
    if let Ok(topics) = parse_topics(data, MAX_TOPICS) {
        for t in &topics {
            assert!(
                encode_amop(t, b"").is_ok(),
                "accepted topic {t:?} cannot be framed"
            );
        }
        let again = serde_json::to_vec(&topics).unwrap_or_default();
        assert_eq!(parse_topics(&again, MAX_TOPICS), Ok(topics));
    }
}

/// A JSON-RPC 2.0 call as a channel session reads it from an 0x12 frame.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcCall {
    /// The method's name.
    pub method: String,
    /// Its parameters; `null` when the request has none.
    pub params: Value,
    /// The id the answer repeats; `null` when the request has none.
    pub id: Value,
}

/// JSON-RPC 2.0's error codes for a request that is not a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcReject {
    /// -32700: not JSON.
    Parse,
    /// -32600: JSON, but not a request object with a string `method`.
    Invalid,
}

/// Reads a JSON-RPC request: an object with a string `method`, optional `params` and `id`.
pub fn parse_rpc(data: &[u8]) -> Result<RpcCall, RpcReject> {
    let v: Value = serde_json::from_slice(data).map_err(|_| RpcReject::Parse)?;
    let Value::Object(mut o) = v else {
        return Err(RpcReject::Invalid);
    };
    let Some(Value::String(method)) = o.remove("method") else {
        return Err(RpcReject::Invalid);
    };
    Ok(RpcCall {
        method,
        params: o.remove("params").unwrap_or(Value::Null),
        id: o.remove("id").unwrap_or(Value::Null),
    })
}

fn check_rpc(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        assert_eq!(parse_rpc(data), Err(RpcReject::Parse));
        return;
    };
    // Without serde_json's float_roundtrip a float may come back one unit in the last place
    // off; everything else must survive a round trip exactly.
    if !has_float(&v) {
        let text = serde_json::to_vec(&v).unwrap_or_default();
        assert_eq!(serde_json::from_slice::<Value>(&text).ok(), Some(v));
        if let Ok(call) = parse_rpc(data) {
            assert_eq!(parse_rpc(&text), Ok(call));
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
