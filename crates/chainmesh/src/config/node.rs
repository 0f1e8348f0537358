//! `[node]`: how this node names itself to its operators.

use serde::{Deserialize, Serialize};

use super::{Check, ConfigError};

/// Longest node name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Settings about the node itself rather than its network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// The operator's name for this node (`node0`, `bank-a-1`): it is on every log line and
    /// in the inventory `init` writes. Empty means the short node ID stands in for it.
    pub name: String,
}

impl NodeConfig {
    /// Checks the name: at most [`MAX_NAME_LEN`] bytes of ASCII letters, digits, `.`, `_`
    /// and `-`, so that it can stand in a file name, a log line and a label unquoted.
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
        Ok(())
    }
}
