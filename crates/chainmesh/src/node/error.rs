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
    /// The node's initial status is invalid (e.g. a group name too long for the wire).
    #[error("initial status: {0}")]
    Status(#[from] crate::status::StatusError),
    /// The node key cannot sign routing lists or make the keys that authenticate relayed
    /// packets (for example, its curve has no name).
    #[error("node key: {0}")]
    Key(#[from] crate::identity::keys::KeyError),
    /// A built-in protocol could not be registered.
    #[error(transparent)]
    Protocol(#[from] super::ProtocolError),
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

/// Why a message was not queued for its next hop.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No link or route leads to the node: it is unknown, or every route to it is down.
    #[error("node {} is unreachable", .0.short())]
    Unreachable(NodeId),
    /// The write queue to the next hop (the named neighbour) has no room for the packet's
    /// bytes. Only fail-fast sends report it; waiting sends wait for room instead.
    #[error("write queue to {} is full", .0.short())]
    QueueFull(NodeId),
    /// The packet would exceed the maximum packet size (checked before compression).
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Encoded size, uncompressed.
        size: usize,
        /// The limit, `p2p.max_packet_size`.
        max: usize,
    },
    /// The packet cannot be put on the wire: a group name or topic longer than 65535 bytes,
    /// or (for [`NodeHandle::send_packet`](super::NodeHandle::send_packet)) a packet whose
    /// type carries no addressing.
    #[error("cannot encode the message: {0}")]
    Invalid(crate::wire::WireError),
    /// The packet is over a `[flow_control]` bandwidth limit (FISCO BCOS's `OutBWOverflow`,
    /// 1004). Only fail-fast sends report it, and awaiting sends whose packet is larger than
    /// the limit's burst (`flow_control.allow_exceed_burst` off); others wait for tokens.
    #[error("over {limit} of {bytes_per_sec} bytes/s")]
    BandwidthExceeded {
        /// The limit it is over.
        limit: crate::flow::BandwidthLimit,
        /// That limit.
        bytes_per_sec: u64,
    },
}

/// Why a request produced no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The request could not be sent.
    #[error(transparent)]
    Send(#[from] SendError),
    /// No response came within the timeout (which covers waiting for queue room too).
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The node was a direct neighbour, its link closed before it responded, and no other
    /// route leads to it.
    #[error("node {} disconnected before responding", .0.short())]
    PeerDisconnected(NodeId),
    /// Every route to the (relayed) node went down before it responded.
    #[error("node {} became unreachable before responding", .0.short())]
    Unreachable(NodeId),
    /// The link to the next hop closed while the request was still in its queue: it was
    /// never written, so the destination never saw it and sending it again cannot make it
    /// run twice. Reported when the link closes, not at the timeout.
    #[error("the link to {} closed ({reason}) before the request was written", .link.short())]
    Unsent {
        /// The neighbour whose link held it: the destination, or the next hop towards it.
        link: NodeId,
        /// Why that link closed.
        reason: crate::session::CloseReason,
    },
    /// The remote handler answered with an error (or had none for the module).
    #[error("remote error: {0}")]
    Remote(String),
    /// The destination refused the request, unseen by any handler: its module is over its
    /// incoming rate limit there (FISCO BCOS's `GatewayQPSOverFlow`, 1005). Sending again
    /// later may succeed.
    #[error("node {} refused the request: module {module} is over its incoming rate limit", .node.short())]
    QpsExceeded {
        /// The node that refused it.
        node: NodeId,
        /// The module asked.
        module: u16,
    },
    /// This node is shutting down.
    #[error("the node is shutting down")]
    Stopped,
    /// `limit` requests to the node are outstanding already (`limits.pending_requests_per_peer`);
    /// nothing was sent.
    #[error("{limit} requests to {} are outstanding already", .dst.short())]
    TooManyPending {
        /// The node asked.
        dst: NodeId,
        /// The limit.
        limit: usize,
    },
}
