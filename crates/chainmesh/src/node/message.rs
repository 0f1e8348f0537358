//! An incoming message as an application module receives it, and the means to answer it.

use bytestring::ByteString;
use std::fmt;

use bytes::Bytes;

use super::{NodeHandle, SendError};
use crate::identity::NodeId;
use crate::wire::{Ext, Options};

/// How a message was addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageKind {
    /// Sent to this node alone ([`NodeHandle::send`] or [`NodeHandle::request`]).
    Unicast,
    /// Sent to every node of [`Message::group`] ([`NodeHandle::broadcast`]).
    Broadcast,
    /// Sent to every subscriber of a topic ([`NodeHandle::multicast`]).
    Multicast {
        /// The topic.
        topic: String,
    },
}

/// A message delivered to a registered module.
pub struct Message {
    /// The node that sent it.
    pub src: NodeId,
    /// The group it was sent in: a `str` (it derefs to one) sharing the received packet's
    /// buffer.
    pub group: ByteString,
    /// The module it is addressed to.
    pub module: u16,
    /// The sender's sequence number: with `src`, the message's unique identity.
    pub seq: u32,
    /// How it was addressed.
    pub kind: MessageKind,
    /// Links it crossed: 1 from a direct neighbour, one more per relay.
    pub hops: u8,
    /// The application data (decompressed).
    pub payload: Bytes,
    responder: Option<Responder>,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("src", &self.src)
            .field("group", &self.group)
            .field("module", &self.module)
            .field("seq", &self.seq)
            .field("kind", &self.kind)
            .field("hops", &self.hops)
            .field("len", &self.payload.len())
            .field("request", &self.responder.is_some())
            .finish()
    }
}

/// What a message is, besides its payload; built by the dispatcher.
pub(super) struct Envelope {
    pub(super) src: NodeId,
    pub(super) group: ByteString,
    pub(super) module: u16,
    pub(super) seq: u32,
    pub(super) kind: MessageKind,
    pub(super) hops: u8,
}

impl Envelope {
    /// The envelope of a received packet's message: who sent it, where it belongs, how far
    /// it came (from the TTL it has left).
    pub(super) fn of(opts: Options, seq: u32, ext: Ext, kind: MessageKind) -> Self {
        Envelope {
            src: opts.src,
            group: opts.group,
            module: opts.module,
            seq,
            kind,
            hops: super::deliver::hops_from_ttl(ext.ttl()),
        }
    }
}

impl Message {
    pub(super) fn new(env: Envelope, payload: Bytes, responder: Option<Responder>) -> Self {
        Message {
            src: env.src,
            group: env.group,
            module: env.module,
            seq: env.seq,
            kind: env.kind,
            hops: env.hops,
            payload,
            responder,
        }
    }

    /// Whether the sender waits for a response.
    pub fn is_request(&self) -> bool {
        self.responder.is_some()
    }

    /// Takes the means to answer, leaving the message readable. `None` for one-way messages
    /// (broadcasts and multicasts are always one-way).
    pub fn take_responder(&mut self) -> Option<Responder> {
        self.responder.take()
    }
}

/// Answers one request. Dropping it unanswered tells the requester so at once, instead of
/// letting it wait for its timeout.
///
/// A response travels back along the routes like any unicast, addressed to the requester.
/// Answering never waits: if the next hop's queue is full the response is dropped and the
/// call fails with [`SendError::QueueFull`], and the requester sees its timeout.
pub struct Responder {
    node: NodeHandle,
    to: NodeId,
    module: u16,
    seq: u32,
    answered: bool,
}

impl Responder {
    pub(super) fn new(node: NodeHandle, to: NodeId, module: u16, seq: u32) -> Self {
        Responder {
            node,
            to,
            module,
            seq,
            answered: false,
        }
    }

    /// Sends the response. A payload too large to send is replaced by an error response
    /// saying so (and the call returns [`SendError::TooLarge`]), so the requester learns it.
    pub fn respond(mut self, payload: Bytes) -> Result<(), SendError> {
        self.answered = true;
        self.node
            .respond(self.to, self.module, self.seq, Ok(payload))
    }

    /// Sends an error response; the requester gets [`RequestError::Remote`](super::RequestError::Remote).
    pub fn fail(mut self, error: impl Into<String>) -> Result<(), SendError> {
        self.answered = true;
        self.node
            .respond(self.to, self.module, self.seq, Err(error.into()))
    }

    /// The node waiting for this response.
    pub fn requester(&self) -> NodeId {
        self.to
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if !self.answered {
            let _ = self.node.respond(
                self.to,
                self.module,
                self.seq,
                Err("the handler dropped the request without answering".into()),
            );
        }
    }
}
