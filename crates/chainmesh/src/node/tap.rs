//! Taps: a copy of every message delivered to a module, for observers such as the admin
//! API's `/v1/listen`, without taking it from the module's own handler.
//!
//! A tap is a bounded broadcast channel per module (`node.tap_buffer` messages). Delivery
//! never waits for a tap: a reader that falls behind loses the oldest copies and learns how
//! many from its receiver ([`broadcast::error::RecvError::Lagged`]), so a slow observer
//! cannot slow the network down nor grow the node. With no tap on a module, delivery pays
//! one read lock on an empty map.

use std::collections::HashMap;

use bytes::Bytes;
use bytestring::ByteString;
use parking_lot::RwLock;
use tokio::sync::broadcast;

use super::message::Envelope;
use super::{MessageKind, NodeHandle};
use crate::identity::NodeId;

/// A copy of a message delivered to a tapped module.
#[derive(Debug, Clone)]
pub struct TappedMessage {
    /// The node that sent it.
    pub src: NodeId,
    /// The group it was sent in.
    pub group: ByteString,
    /// The module it is addressed to.
    pub module: u16,
    /// The sender's sequence number.
    pub seq: u32,
    /// How it was addressed.
    pub kind: MessageKind,
    /// Links it crossed.
    pub hops: u8,
    /// Whether the sender waits for a response (the module's handler gives it, not the tap).
    pub request: bool,
    /// The application data (decompressed).
    pub payload: Bytes,
}

/// The taps of one node, by module.
pub(super) struct Taps {
    capacity: usize,
    by_module: RwLock<HashMap<u16, broadcast::Sender<TappedMessage>>>,
}

impl Taps {
    pub(super) fn new(capacity: usize) -> Self {
        Taps {
            capacity: capacity.max(1),
            by_module: RwLock::new(HashMap::new()),
        }
    }

    /// Whether anyone taps `module`: then its messages are worth decompressing even with no
    /// handler.
    pub(super) fn wants(&self, module: u16) -> bool {
        self.by_module
            .read()
            .get(&module)
            .is_some_and(|tx| tx.receiver_count() > 0)
    }

    /// Hands a copy of a message to the tap of its module, if there is one.
    pub(super) fn offer(&self, env: &Envelope, payload: &Bytes, request: bool) {
        let taps = self.by_module.read();
        let Some(tx) = taps.get(&env.module) else {
            return;
        };
        if tx.receiver_count() == 0 {
            return;
        }
        // Fails only when the last reader just left: nobody to tell.
        let _ = tx.send(TappedMessage {
            src: env.src,
            group: env.group.clone(),
            module: env.module,
            seq: env.seq,
            kind: env.kind.clone(),
            hops: env.hops,
            request,
            payload: payload.clone(),
        });
    }

    fn subscribe(&self, module: u16) -> broadcast::Receiver<TappedMessage> {
        let mut taps = self.by_module.write();
        // Taps whose readers are all gone are dropped here, so the map holds at most the
        // modules someone taps now (plus this one).
        taps.retain(|_, tx| tx.receiver_count() > 0);
        taps.entry(module)
            .or_insert_with(|| broadcast::channel(self.capacity).0)
            .subscribe()
    }
}

impl NodeHandle {
    /// A copy of every message delivered to `module` from now on, whether or not the module
    /// has a handler ([`register`](Self::register)); the handler still gets each message.
    /// The receiver holds `node.tap_buffer` messages: one that falls further behind gets
    /// `Lagged(n)` for the `n` copies it lost. Messages to [`ECHO_MODULE`](super::ECHO_MODULE)
    /// are answered by the node and not tapped.
    pub fn tap(&self, module: u16) -> broadcast::Receiver<TappedMessage> {
        self.inner.taps.subscribe(module)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(module: u16, seq: u32) -> Envelope {
        Envelope {
            src: NodeId::from_bytes([1; 64]),
            group: ByteString::from_static("group0"),
            module,
            seq,
            kind: MessageKind::Unicast,
            hops: 1,
        }
    }

    #[test]
    fn a_tap_sees_its_module_only_and_a_slow_reader_is_told_what_it_lost() {
        let taps = Taps::new(2);
        assert!(!taps.wants(7));
        let mut rx = taps.subscribe(7);
        assert!(taps.wants(7) && !taps.wants(8));
        taps.offer(&envelope(8, 1), &Bytes::new(), false);
        for seq in 1..=3 {
            taps.offer(&envelope(7, seq), &Bytes::from_static(b"x"), false);
        }
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(1))
        ));
        assert_eq!(rx.try_recv().map(|m| m.seq).ok(), Some(2));
        assert_eq!(rx.try_recv().map(|m| m.seq).ok(), Some(3));
        drop(rx);
        assert!(!taps.wants(7));
        let _other = taps.subscribe(9);
        assert!(taps.by_module.read().get(&7).is_none());
    }
}
