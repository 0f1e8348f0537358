//! What can go wrong starting a node, sending, and requesting.

use std::time::Duration;

use crate::identity::NodeId;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The node's certificates or key are unusable.
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    /// The TLS context could not be built.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// A listener could not be opened.
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The configured address.
        addr: String,
        /// The socket error.
        source: std::io::Error,
    },
}

/// Why a message was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No session or route leads to the node.
    #[error("node {} is unreachable", .0.short())]
    Unreachable(NodeId),
    /// The next hop's write queue is full (fail-fast sends only).
    #[error("write queue to {} is full", .0.short())]
    QueueFull(NodeId),
    /// The packet would exceed the maximum packet size.
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
}

/// Why a request produced no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The request could not be sent.
    #[error(transparent)]
    Send(#[from] SendError),
    /// No response came in time.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The connection to the node ended before its response arrived.
    #[error("node {} disconnected before responding", .0.short())]
    PeerDisconnected(NodeId),
    /// The remote handler answered with an error.
    #[error("remote error: {0}")]
    Remote(String),
}
