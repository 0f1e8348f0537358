//! `[socket]`: TCP options of P2P connections. They decide how much data the kernel holds
//! ahead of what a session's lanes have chosen to send: a priority frame can only overtake
//! bulk that is still in the session's queues, never bulk already handed to the socket.

use serde::{Deserialize, Serialize};

use super::{Check, ConfigError};

/// Smallest non-zero value of either key: below it every write wakes the task again.
const MIN_BYTES: u32 = 16 * 1024;
/// Largest value of either key.
const MAX_BYTES: u32 = 64 * 1024 * 1024;

/// Socket options applied to every P2P connection, inbound and outbound.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SocketConfig {
    /// Bytes a connection may hold in the kernel not yet sent (`TCP_NOTSENT_LOWAT`, Linux).
    /// The session keeps the rest in its lanes, where a priority frame can overtake it, at
    /// the cost of more wake-ups of the session task per byte sent (docs/performance.md
    /// measures both). 0 leaves the kernel's setting (no limit by default).
    pub unsent_bytes: u32,
    /// The receive buffer of a connection (`SO_RCVBUF`), which bounds what a sender can have
    /// in flight to us. Smaller keeps a priority frame closer behind the bulk already sent,
    /// and caps a link's rate at this size per round trip. 0 leaves the kernel to size it.
    pub receive_buffer: u32,
}

impl SocketConfig {
    /// Checks each key: 0, or 16 KiB to 64 MiB.
    pub(super) fn validate(&self, c: &Check<'_>) -> Result<(), ConfigError> {
        for (key, value) in [
            ("socket.unsent_bytes", self.unsent_bytes),
            ("socket.receive_buffer", self.receive_buffer),
        ] {
            if value != 0 {
                c.range(key, value, MIN_BYTES, MAX_BYTES)?;
            }
        }
        Ok(())
    }
}
