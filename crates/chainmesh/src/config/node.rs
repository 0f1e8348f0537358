//! `[node]`: how this node names itself to its operators, the topics it subscribes to from
//! the start, and how much its message taps hold.

use serde::{Deserialize, Serialize};

use super::{Check, ConfigError};

/// Longest node name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Default `node.tap_buffer`.
pub const DEFAULT_TAP_BUFFER: usize = 1024;

/// Settings about the node itself rather than its network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// The operator's name for this node (`node0`, `bank-a-1`): it is on every log line and
    /// in the inventory `init` writes. Empty means the short node ID stands in for it.
    pub name: String,
    /// Topics this node subscribes to at start: multicasts to them are delivered here.
    /// More can be added and removed while it runs (admin API `/v1/topics`).
    pub topics: Vec<String>,
    /// Messages a tap of one module (`/v1/listen`) holds for its slowest reader; a reader
    /// further behind loses the oldest and is told how many.
    pub tap_buffer: usize,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            name: String::new(),
            topics: Vec::new(),
            tap_buffer: DEFAULT_TAP_BUFFER,
        }
    }
}

impl NodeConfig {
    /// Checks the name: at most [`MAX_NAME_LEN`] bytes of ASCII letters, digits, `.`, `_`
    /// and `-`, so that it can stand in a file name, a log line and a label unquoted; the
    /// topics: names the status can carry; the tap buffer: 16 to 65536.
    pub(super) fn validate(&self, c: &Check<'_>) -> Result<(), ConfigError> {
        let ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
        if self.name.len() > MAX_NAME_LEN || !self.name.bytes().all(ok) {
            return Err(c.bad(
                "node.name",
                format!(
                    "`{}` is not a node name: at most {MAX_NAME_LEN} ASCII letters, digits, `.`, `_` or `-`",
                    self.name.escape_debug()
                ),
            ));
        }
        for (i, t) in self.topics.iter().enumerate() {
            if t.is_empty() || t.len() > u16::MAX as usize {
                return Err(c.bad(
                    &format!("node.topics[{i}]"),
                    "a topic name must be 1 to 65535 bytes".into(),
                ));
            }
        }
        c.range("node.tap_buffer", self.tap_buffer, 16, 65536)
    }
}
