//! Node status synchronization: every node's groups, topics, protocol versions and opaque
//! application status, kept in step across the network.
//!
//! Each node owns a [`NodeStatus`] tagged with a [`StatusVersion`]: a random per-boot `epoch`
//! and a `seq` that rises on every change. Nodes announce their version (StatusSeq, 0x09); a
//! node that sees a version it does not hold asks for the full status (StatusRequest, 0x03) and
//! gets it back (StatusResponse, 0x04). `docs/protocol.md`, "Status synchronization", is the
//! specification; this module implements it in layers that can each be tested alone:
//!
//! - [`codec`]: the three payloads and the [`NodeStatus`] encoding; pure, strict, panic-free;
//! - [`LocalStatus`]: this node's own status and version;
//! - [`StatusTable`]: the pure merge logic for other nodes' statuses;
//! - [`StatusService`]: the gossip and query engine, written against [`StatusTransport`] so it
//!   runs the same over the real router and over an in-memory fake;
//! - [`view`]: the JSON shape of `GET /v1/status` and the table `chainmesh status` prints.

pub mod codec;
mod events;
mod local;
mod rate;
mod service;
mod sync;
mod table;
mod transport;
pub mod view;

#[cfg(test)]
mod tests;

use std::fmt;

use bytes::Bytes;

use crate::wire::{PacketType, MAX_PROTOCOL_VERSION, MIN_PROTOCOL_VERSION};

pub use codec::CodecError;
pub use local::LocalStatus;
pub use rate::TokenBucket;
pub use service::{
    random_epoch, StatusConfig, StatusEvent, StatusEventKind, StatusService, StatusStats,
    StatusTransport, TransportError, PACKET_OVERHEAD,
};
pub use table::{ApplyResult, PeerStatus, QueryNeeded, StatusTable};

/// Longest group or topic name, in bytes: its length travels as a `u16`.
pub const MAX_NAME_LEN: usize = u16::MAX as usize;
/// Most groups, topics or AMOP topics one status can list: the count travels as a `u16`.
pub const MAX_LIST_LEN: usize = u16::MAX as usize;
/// Default limit on an encoded [`NodeStatus`], published or received
/// (`limits.max_status_bytes`); it must also fit in one packet.
pub const DEFAULT_MAX_STATUS_LEN: usize = 64 * 1024;

/// What a node tells the network about itself.
///
/// The local holder ([`LocalStatus`]) keeps every list sorted and free of duplicates, so two
/// statuses with the same content compare equal; statuses decoded from other nodes are kept as
/// they were sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeStatus {
    /// The groups the node belongs to; broadcast to a group goes to these nodes.
    pub groups: Vec<String>,
    /// Node-level topics the node subscribes to; multicast to a topic goes to these nodes.
    pub topics: Vec<String>,
    /// Topics the node's AMOP (SDK) clients subscribe to.
    pub amop_topics: Vec<String>,
    /// Lowest P2P protocol version the node speaks.
    pub min_version: u16,
    /// Highest P2P protocol version the node speaks.
    pub max_version: u16,
    /// Opaque application status (a block height, say), set with
    /// [`StatusService::set_app_status`].
    pub app: Bytes,
}

impl Default for NodeStatus {
    /// No groups, topics or application status; this build's protocol versions.
    fn default() -> Self {
        NodeStatus {
            groups: Vec::new(),
            topics: Vec::new(),
            amop_topics: Vec::new(),
            min_version: MIN_PROTOCOL_VERSION,
            max_version: MAX_PROTOCOL_VERSION,
            app: Bytes::new(),
        }
    }
}

impl NodeStatus {
    /// A default status in the given groups.
    pub fn with_groups<I, S>(groups: I) -> NodeStatus
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        NodeStatus {
            groups: groups.into_iter().map(Into::into).collect(),
            ..NodeStatus::default()
        }
    }

    /// Whether the node belongs to `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// Whether the node subscribes to node-level `topic`.
    pub fn has_topic(&self, topic: &str) -> bool {
        self.topics.iter().any(|t| t == topic)
    }

    /// Whether one of the node's AMOP clients subscribes to `topic`.
    pub fn has_amop_topic(&self, topic: &str) -> bool {
        self.amop_topics.iter().any(|t| t == topic)
    }

    /// Checks what the encoding can carry and what receivers accept: non-empty names of at most
    /// [`MAX_NAME_LEN`] bytes, at most [`MAX_LIST_LEN`] entries per list, a non-empty version
    /// range, and an encoding of at most `max_len` bytes.
    pub fn validate(&self, max_len: usize) -> Result<(), StatusError> {
        for (field, list) in [
            ("group", &self.groups),
            ("topic", &self.topics),
            ("AMOP topic", &self.amop_topics),
        ] {
            if list.len() > MAX_LIST_LEN {
                return Err(StatusError::TooMany {
                    field,
                    count: list.len(),
                });
            }
            for name in list {
                if name.is_empty() {
                    return Err(StatusError::EmptyName { field });
                }
                if name.len() > MAX_NAME_LEN {
                    return Err(StatusError::NameTooLong {
                        field,
                        len: name.len(),
                    });
                }
            }
        }
        if self.min_version > self.max_version {
            return Err(StatusError::VersionRange {
                min: self.min_version,
                max: self.max_version,
            });
        }
        let len = self.encoded_len();
        if len > max_len {
            return Err(StatusError::TooLarge { len, max: max_len });
        }
        Ok(())
    }

    /// Memory a held copy of the status takes, roughly: each name with its `String` header,
    /// the lists' headers, and the application status. What the table's total is capped by
    /// (`limits.max_status_total_bytes`): a status of many short names takes several times
    /// its encoded size.
    pub fn held_bytes(&self) -> usize {
        let list = |l: &[String]| {
            l.iter()
                .map(|s| std::mem::size_of::<String>().saturating_add(s.len()))
                .fold(0usize, usize::saturating_add)
        };
        std::mem::size_of::<NodeStatus>()
            .saturating_add(list(&self.groups))
            .saturating_add(list(&self.topics))
            .saturating_add(list(&self.amop_topics))
            .saturating_add(self.app.len())
    }

    /// Sorts every list and drops duplicates, so equal content means equal statuses.
    pub(crate) fn normalize(&mut self) {
        for list in [&mut self.groups, &mut self.topics, &mut self.amop_topics] {
            list.sort_unstable();
            list.dedup();
        }
    }
}

/// Which status of a node a packet talks about: `(epoch, seq)`.
///
/// `epoch` is drawn at random (never 0) when a node starts, and again if its `seq` would wrap;
/// `seq` starts at 1 and rises by one on every change. Versions of one epoch are ordered by
/// `seq`; versions of different epochs are not ordered at all (see [`StatusTable`] for how a
/// restart is told from a reordered packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusVersion {
    /// The node's incarnation; 0 is reserved for "none" on the wire.
    pub epoch: u64,
    /// The change counter within the epoch; 0 is reserved.
    pub seq: u32,
}

impl StatusVersion {
    /// A version.
    pub const fn new(epoch: u64, seq: u32) -> StatusVersion {
        StatusVersion { epoch, seq }
    }

    /// The epoch as the 16 hex digits the admin API shows (JSON numbers lose precision past
    /// 2^53).
    pub fn epoch_hex(&self) -> String {
        format!("{:016x}", self.epoch)
    }
}

impl fmt::Display for StatusVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}/{}", self.epoch, self.seq)
    }
}

/// Why a status change or a status packet was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    /// A group or topic name is empty.
    #[error("{field} name is empty")]
    EmptyName {
        /// `group`, `topic` or `AMOP topic`.
        field: &'static str,
    },
    /// A group or topic name is longer than [`MAX_NAME_LEN`].
    #[error("{field} name is {len} bytes, at most {MAX_NAME_LEN} are allowed")]
    NameTooLong {
        /// `group`, `topic` or `AMOP topic`.
        field: &'static str,
        /// The name's length in bytes.
        len: usize,
    },
    /// A list has more than [`MAX_LIST_LEN`] entries.
    #[error("{count} entries in the {field} list, at most {MAX_LIST_LEN} are allowed")]
    TooMany {
        /// `group`, `topic` or `AMOP topic`.
        field: &'static str,
        /// Entries in the list.
        count: usize,
    },
    /// The encoded status exceeds the configured limit.
    #[error("the status would be {len} bytes encoded, larger than the {max}-byte limit")]
    TooLarge {
        /// Encoded length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// `min_version > max_version`.
    #[error("protocol version range is empty: min {min} > max {max}")]
    VersionRange {
        /// The minimum version.
        min: u16,
        /// The maximum version.
        max: u16,
    },
    /// A status packet's payload is malformed.
    #[error("malformed {packet_type} payload: {source}")]
    Malformed {
        /// The packet's type.
        packet_type: PacketType,
        /// What is wrong with it.
        source: CodecError,
    },
    /// The packet is not one of the three status types.
    #[error("{0} is not a status packet")]
    NotStatusPacket(PacketType),
}
