//! Where sessions hand decoded packets: responses go to waiting requests, messages to their
//! module's queue.

use std::sync::Weak;

use tokio::sync::mpsc::error::TrySendError;
use tracing::debug;

use super::{Inner, Message, NodeHandle, RequestError, Responder};
use crate::session::{Inbound, Pending, SessionHandle};
use crate::wire::{Ext, Packet, PacketType};

/// The node's [`Inbound`] sink. Holds the node weakly: sessions must not keep a stopped node
/// alive.
pub(super) struct Dispatch {
    node: Weak<Inner>,
}

impl Dispatch {
    pub(super) fn new(node: Weak<Inner>) -> Self {
        Dispatch { node }
    }
}

impl Inbound for Dispatch {
    fn on_packet(&self, from: &SessionHandle, packet: Packet) -> Option<Pending> {
        let node = NodeHandle {
            inner: self.node.upgrade()?,
        };
        match packet.packet_type {
            PacketType::UNICAST => node.on_unicast(from, packet),
            other => {
                debug!(peer = %from.peer.short(), packet_type = other.0, "ignoring packet type");
                None
            }
        }
    }
}

impl NodeHandle {
    fn on_unicast(&self, from: &SessionHandle, packet: Packet) -> Option<Pending> {
        let Some(opts) = packet.options else {
            debug!(peer = %from.peer.short(), "unicast without options");
            return None;
        };
        if !opts.dsts.contains(&self.inner.id) {
            debug!(peer = %from.peer.short(), "unicast for another node; relaying is not enabled");
            return None;
        }
        if packet.ext.contains(Ext::RESPONSE) {
            let mut pending = self.inner.pending.lock();
            // A seq is only ours to match if the response comes from the node we asked.
            if pending.get(&packet.seq).map(|p| p.dst) == Some(opts.src) {
                if let Some(p) = pending.remove(&packet.seq) {
                    let result = if packet.ext.contains(Ext::ERROR) {
                        Err(RequestError::Remote(
                            String::from_utf8_lossy(&packet.payload).into_owned(),
                        ))
                    } else {
                        Ok(packet.payload)
                    };
                    let _ = p.reply.send(result);
                }
            }
            return None;
        }
        let responder = packet
            .ext
            .contains(Ext::REQUEST)
            .then(|| Responder::new(self.clone(), opts.src, opts.module, packet.seq));
        let Some(tx) = self.inner.modules.read().get(&opts.module).cloned() else {
            if let Some(r) = responder {
                let _ = r.fail(format!("no handler for module {}", opts.module));
            }
            debug!(peer = %from.peer.short(), module = opts.module, "no handler for module");
            return None;
        };
        let msg = Message::new(
            opts.src,
            opts.group,
            opts.module,
            packet.seq,
            packet.payload,
            responder,
        );
        match tx.try_send(msg) {
            Ok(()) => None,
            Err(TrySendError::Closed(_)) => None,
            Err(TrySendError::Full(msg)) => Some(Box::pin(async move {
                let _ = tx.send(msg).await;
            })),
        }
    }
}
