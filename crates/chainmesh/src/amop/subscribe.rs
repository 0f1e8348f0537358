//! The data of an SDK's 0x32 subscribe frame: a JSON array of topic names that replaces the
//! session's whole set. Pure, so the channel fuzz target runs exactly what a session runs.

use std::collections::BTreeSet;

use crate::wire::MAX_AMOP_TOPIC_LEN;

/// Why a 0x32 frame closes its session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// The data is not a JSON array of strings.
    #[error("0x32 is not a JSON array of strings: {0}")]
    NotJson(String),
    /// More topics than `channel.max_topics_per_session`.
    #[error("0x32 lists {count} topics; channel.max_topics_per_session is {max}")]
    TooMany {
        /// Topics the frame lists.
        count: usize,
        /// The session's bound.
        max: usize,
    },
    /// A topic an AMOP frame cannot carry: empty, or longer than 254 bytes (its length byte
    /// counts itself).
    #[error("0x32 lists a topic of {0} bytes; topics are 1 to {MAX_AMOP_TOPIC_LEN} bytes")]
    Length(usize),
}

/// The topic set a 0x32 frame's `data` subscribes to, holding at most `max_topics` topics
/// (duplicates count once they are merged: the bound is on what the frame lists).
pub fn parse_subscription(
    data: &[u8],
    max_topics: usize,
) -> Result<BTreeSet<String>, SubscribeError> {
    let topics: Vec<String> =
        serde_json::from_slice(data).map_err(|e| SubscribeError::NotJson(e.to_string()))?;
    if topics.len() > max_topics {
        return Err(SubscribeError::TooMany {
            count: topics.len(),
            max: max_topics,
        });
    }
    if let Some(t) = topics
        .iter()
        .find(|t| !(1..=MAX_AMOP_TOPIC_LEN).contains(&t.len()))
    {
        return Err(SubscribeError::Length(t.len()));
    }
    Ok(topics.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_list_becomes_the_set_it_names() {
        let set = parse_subscription(br#"["b","a","b"]"#, 3).unwrap();
        assert_eq!(set.into_iter().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(parse_subscription(b"[]", 0), Ok(BTreeSet::new()));
    }

    #[test]
    fn anything_but_an_array_of_strings_is_refused() {
        for bad in [&b"{}"[..], b"[1]", b"\"t\"", b"", b"[\"a\""] {
            assert!(
                matches!(parse_subscription(bad, 8), Err(SubscribeError::NotJson(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_bounds_are_the_sessions_and_the_amop_frames() {
        assert_eq!(
            parse_subscription(br#"["a","b"]"#, 1),
            Err(SubscribeError::TooMany { count: 2, max: 1 })
        );
        let long = format!("[\"{}\"]", "t".repeat(MAX_AMOP_TOPIC_LEN + 1));
        assert_eq!(
            parse_subscription(long.as_bytes(), 1),
            Err(SubscribeError::Length(MAX_AMOP_TOPIC_LEN + 1))
        );
        assert_eq!(
            parse_subscription(br#"["a",""]"#, 2),
            Err(SubscribeError::Length(0))
        );
        let longest = format!("[\"{}\"]", "t".repeat(MAX_AMOP_TOPIC_LEN));
        assert_eq!(
            parse_subscription(longest.as_bytes(), 1).map(|s| s.len()),
            Ok(1)
        );
    }
}
