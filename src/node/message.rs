//! An incoming message as an application module receives it, and the means to answer it.

use std::fmt;

use bytes::Bytes;

use super::{NodeHandle, SendError};
use crate::identity::NodeId;

/// A message delivered to a registered module.
pub struct Message {
    /// The node that sent it.
    pub src: NodeId,
    /// The group it was sent in.
    pub group: String,
    /// The module it is addressed to.
    pub module: u16,
    /// The sender's sequence number: with `src`, the message's unique identity.
    pub seq: u32,
    /// The application data.
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
            .field("len", &self.payload.len())
            .field("request", &self.responder.is_some())
            .finish()
    }
}

impl Message {
    pub(super) fn new(
        src: NodeId,
        group: String,
        module: u16,
        seq: u32,
        payload: Bytes,
        responder: Option<Responder>,
    ) -> Self {
        Message {
            src,
            group,
            module,
            seq,
            payload,
            responder,
        }
    }

    /// Whether the sender waits for a response.
    pub fn is_request(&self) -> bool {
        self.responder.is_some()
    }

    /// Takes the means to answer, leaving the message readable. `None` for one-way messages.
    pub fn take_responder(&mut self) -> Option<Responder> {
        self.responder.take()
    }
}

/// Answers one request. Dropping it unanswered tells the requester so at once, instead of
/// letting it wait for its timeout.
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

    /// Sends the response.
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
