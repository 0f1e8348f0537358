//! The session-control frames an SDK sends and the node answers itself: 0x13 heartbeats
//! that ask for an answer, and the 0x14 protocol handshake. Pure: bytes in, bytes out.

use serde_json::Value;

use super::rpc::SUPPORTED_VERSION as NODE_VERSION;

/// Channel protocol versions the node speaks.
pub const PROTOCOLS: std::ops::RangeInclusive<u64> = 1..=3;

/// Why a 0x14 handshake closes its session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The data is not a JSON object.
    #[error("0x14 handshake data is not a JSON object: {0}")]
    NotJson(String),
    /// `maximumSupport` is missing or not a number.
    #[error("0x14 handshake has no numeric maximumSupport")]
    NoMaximum,
    /// The client's range and the node's (1 to 3) do not overlap.
    #[error("0x14 handshake asks for protocols {min} to {max}; this node speaks 1 to 3")]
    NoOverlap {
        /// The client's `minimumSupport`.
        min: u64,
        /// The client's `maximumSupport`.
        max: u64,
    },
}

/// The answer to a 0x13 that carries data, at channel protocol `protocol`; `None` when it
/// gets none. Version 1 answers `"0"` with `"1"`; versions 2 and 3 answer a JSON
/// `{"heartBeat":0}` with `{"heartBeat":1}` and the newline FISCO's JSON writer adds.
pub fn heartbeat_answer(protocol: u8, data: &[u8]) -> Option<&'static [u8]> {
    if protocol <= 1 {
        return (data == b"0").then_some(b"1");
    }
    let asks = serde_json::from_slice::<Value>(data)
        .ok()
        .is_some_and(|v| v.get("heartBeat").is_some());
    asks.then_some(b"{\"heartBeat\":1}\n")
}

/// The protocol agreed by a 0x14 with `data`, and the answer's data: keys sorted, a
/// trailing newline, as FISCO's node writes it.
pub fn handshake_answer(data: &[u8]) -> Result<(u8, String), HandshakeError> {
    let v: Value =
        serde_json::from_slice(data).map_err(|e| HandshakeError::NotJson(e.to_string()))?;
    if !v.is_object() {
        return Err(HandshakeError::NotJson("not an object".into()));
    }
    let max = v
        .get("maximumSupport")
        .and_then(Value::as_u64)
        .ok_or(HandshakeError::NoMaximum)?;
    let min = v
        .get("minimumSupport")
        .and_then(Value::as_u64)
        .unwrap_or(*PROTOCOLS.start());
    if min > max || min > *PROTOCOLS.end() || max < *PROTOCOLS.start() {
        return Err(HandshakeError::NoOverlap { min, max });
    }
    let agreed = max.min(*PROTOCOLS.end());
    // In range: at most 3.
    let agreed = u8::try_from(agreed).unwrap_or(1);
    let answer = format!("{{\"nodeVersion\":\"{NODE_VERSION}\",\"protocol\":{agreed}}}\n");
    Ok((agreed, answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_java_sdk_handshake_agrees_on_version_3() {
        let (v, answer) =
            handshake_answer(br#"{"minimumSupport":1,"maximumSupport":3,"clientType":"java-sdk"}"#)
                .unwrap();
        assert_eq!(v, 3);
        assert_eq!(answer, "{\"nodeVersion\":\"2.11.0\",\"protocol\":3}\n");
    }

    #[test]
    fn a_client_that_speaks_more_gets_the_nodes_highest_and_one_that_speaks_less_its_own() {
        assert_eq!(
            handshake_answer(br#"{"minimumSupport":2,"maximumSupport":9}"#)
                .unwrap()
                .0,
            3
        );
        assert_eq!(
            handshake_answer(br#"{"minimumSupport":1,"maximumSupport":2}"#)
                .unwrap()
                .0,
            2
        );
    }

    #[test]
    fn ranges_that_do_not_overlap_or_bad_json_are_refused() {
        assert_eq!(
            handshake_answer(br#"{"minimumSupport":4,"maximumSupport":5}"#),
            Err(HandshakeError::NoOverlap { min: 4, max: 5 })
        );
        assert_eq!(
            handshake_answer(br#"{"minimumSupport":0,"maximumSupport":0}"#),
            Err(HandshakeError::NoOverlap { min: 0, max: 0 })
        );
        assert!(matches!(
            handshake_answer(b"nope"),
            Err(HandshakeError::NotJson(_))
        ));
        assert_eq!(
            handshake_answer(br#"{"minimumSupport":1}"#),
            Err(HandshakeError::NoMaximum)
        );
    }

    #[test]
    fn heartbeats_are_answered_as_their_version_says() {
        assert_eq!(heartbeat_answer(1, b"0"), Some(&b"1"[..]));
        assert_eq!(heartbeat_answer(1, br#"{"heartBeat":0}"#), None);
        assert_eq!(
            heartbeat_answer(3, br#"{"heartBeat":0}"#),
            Some(&b"{\"heartBeat\":1}\n"[..])
        );
        assert_eq!(heartbeat_answer(2, b"0"), None);
    }
}
