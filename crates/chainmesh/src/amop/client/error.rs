//! Why a client call failed.

use std::net::SocketAddr;
use std::time::Duration;

use crate::tls::TlsError;
use crate::wire::ChannelError;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TCP connection could not be opened.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address dialled.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TLS handshake (or the TLS setup from the certificates) failed.
    #[error("TLS with {addr} failed: {source}")]
    Tls {
        /// The address dialled.
        addr: String,
        /// Why.
        source: TlsError,
    },
    /// No session was up within [`ClientOptions::connect_timeout`](super::ClientOptions::connect_timeout).
    #[error("cannot connect to {addr}: no TLS session within {after:?}")]
    ConnectTimeout {
        /// The address dialled.
        addr: String,
        /// The timeout.
        after: Duration,
    },
    /// The session with the node has ended.
    #[error("the session with {addr} has ended: {reason}")]
    Closed {
        /// The node's address.
        addr: SocketAddr,
        /// Why it ended.
        reason: String,
    },
    /// The write queue is full (a subscribe or an ack, which do not wait for room).
    #[error("the write queue to {addr} is full")]
    QueueFull {
        /// The node's address.
        addr: SocketAddr,
    },
    /// No answer came within the request's timeout.
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    /// A topic that AMOP cannot carry, or a frame over the size limit.
    #[error(transparent)]
    Frame(#[from] ChannelError),
    /// The node answered a JSON-RPC call with an error.
    #[error("JSON-RPC error {code}: {message}")]
    Rpc {
        /// The JSON-RPC error code, e.g. -32601 (method not found).
        code: i64,
        /// The error message.
        message: String,
    },
    /// The node's answer is not what the protocol says it should be.
    #[error("unexpected answer from the node: {0}")]
    BadAnswer(String),
    /// [`AmopMessage::ack`](super::AmopMessage::ack) on a multicast, which has nobody to answer.
    #[error("a multicast message is not acknowledged")]
    NotUnicast,
}
