//! Where the node meets [`crate::flow`]: outgoing bandwidth checks before a packet is queued
//! for its next hop, incoming rate checks before a message is delivered, and the typed
//! refusal a request over its module's limit is answered with.
//!
//! Who waits and who fails: awaiting sends (`send`, `request`, `broadcast`, `multicast`)
//! wait for tokens, a request within its timeout; fail-fast sends (`try_send`,
//! `try_broadcast`, `try_multicast`) fail with [`SendError::BandwidthExceeded`]. Responses
//! and relayed packets are charged, never held: they count against every limit they fall
//! under (so the node's own sends leave room for them), but holding a relayed packet would
//! stall the read loop of the link it came on, control traffic included, and a refused
//! response would only turn into the requester's timeout.

use std::time::Instant;

use tracing::debug;

use super::unicast::Unicast;
use super::{NodeHandle, SendError, RESERVED_MODULES};
use crate::flow::{FlowControl, FlowSnapshot, Outgoing, OverLimit};
use crate::identity::NodeId;
use crate::session::SessionHandle;
use crate::wire::{Ext, Options, PacketType};

/// Time as the buckets see it: tokio's clock, so tests with a paused clock step it.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

fn exceeded(over: OverLimit) -> SendError {
    SendError::BandwidthExceeded {
        limit: over.limit,
        bytes_per_sec: over.bytes_per_sec,
    }
}

impl NodeHandle {
    /// The node's flow control: limits, counters, current rates.
    pub fn flow(&self) -> &FlowControl {
        &self.inner.flow
    }

    /// Every flow-control limit in use and its counters, now.
    pub fn flow_snapshot(&self) -> FlowSnapshot {
        self.inner.flow.snapshot(now())
    }

    /// Waits until a packet of `module` in `group`, `bytes` long, may leave by `link`, or
    /// fails if it never may. `wait` false: fails at once instead of waiting.
    pub(super) async fn flow_gate(
        &self,
        link: &SessionHandle,
        module: u16,
        group: &str,
        bytes: usize,
        wait: bool,
    ) -> Result<(), SendError> {
        let flow = &self.inner.flow;
        if !flow.enabled() {
            return Ok(());
        }
        let p = Outgoing {
            module,
            group,
            link: (link.peer, link.addr.ip()),
            bytes: bytes as u64,
        };
        let mut delayed = false;
        loop {
            let over = match flow.outgoing(&p, now()) {
                Ok(()) => return Ok(()),
                Err(over) => over,
            };
            match over.wait {
                Some(d) if wait => {
                    if !delayed {
                        delayed = true;
                        flow.count_delayed(module);
                    }
                    tokio::time::sleep(d).await;
                }
                _ => {
                    flow.count_failed(module);
                    debug!(module, bytes, limit = %over.limit, "send over a bandwidth limit refused");
                    return Err(exceeded(over));
                }
            }
        }
    }

    /// The bandwidth check of unicast `u` from this node: a response is charged, anything
    /// else waits (`wait`) or fails. A unicast to this node itself uses no link.
    pub(super) async fn flow_unicast(&self, u: &Unicast<'_>, wait: bool) -> Result<(), SendError> {
        if !self.inner.flow.enabled() || u.dst == self.inner.id {
            return Ok(());
        }
        let Some(link) = self.link_for(&u.dst) else {
            return Ok(());
        };
        let bytes = u.wire_len(self, &link);
        if u.ext.is_response() {
            self.flow_charge(&link, u.module, self.default_group(), bytes);
            return Ok(());
        }
        self.flow_gate(&link, u.module, self.default_group(), bytes, wait)
            .await
    }

    /// [`flow_unicast`](Self::flow_unicast) without waiting.
    pub(super) fn flow_unicast_now(&self, u: &Unicast<'_>) -> Result<(), SendError> {
        futures_util::FutureExt::now_or_never(self.flow_unicast(u, false)).unwrap_or(Ok(()))
    }

    /// Counts a packet that leaves by `link` against the limits without holding it.
    pub(super) fn flow_charge(&self, link: &SessionHandle, module: u16, group: &str, bytes: usize) {
        let flow = &self.inner.flow;
        if flow.enabled() {
            let p = Outgoing {
                module,
                group,
                link: (link.peer, link.addr.ip()),
                bytes: bytes as u64,
            };
            flow.charge(&p, now());
        }
    }

    /// Whether a packet of this type arriving on `from` is over its type's incoming limit
    /// (and so dropped; counted by the flow control).
    pub(super) fn flow_drops_type(&self, from: &SessionHandle, packet_type: PacketType) -> bool {
        // Without limits the clock is not read: this runs for every packet received.
        let flow = &self.inner.flow;
        let refused = flow.enabled() && !flow.incoming_type(packet_type.0, now());
        if refused {
            debug!(peer = %from.peer.short(), packet_type = packet_type.0,
                "packet over its type's incoming limit dropped");
        }
        refused
    }

    /// Whether a message or request to `opts.module` is over the module's incoming limit. A
    /// request is answered with the typed refusal ([`Ext::REFUSED`], which the requester
    /// sees as [`RequestError::QpsExceeded`](super::RequestError::QpsExceeded)); anything
    /// else is dropped. Either way it is counted. The node's own modules are never limited.
    pub(super) fn flow_refuses(&self, opts: &Options, seq: u32, ext: Ext) -> bool {
        if opts.module >= RESERVED_MODULES || !self.inner.flow.enabled() {
            return false;
        }
        let Err(limit) = self.inner.flow.incoming_module(opts.module, now()) else {
            return false;
        };
        debug!(src = %opts.src.short(), module = opts.module, limit,
            "message over its module's incoming limit refused");
        if ext.contains(Ext::REQUEST) {
            self.refuse_request(opts.src, opts.module, seq, limit);
        }
        true
    }

    fn refuse_request(&self, to: NodeId, module: u16, seq: u32, limit: u64) {
        let text = format!("1005 module {module} is over its incoming limit of {limit} per second");
        let ext = Ext::RESPONSE | Ext::ERROR | Ext::REFUSED;
        let _ = self.unicast_now(Unicast::new(to, module, seq, ext, text.as_bytes()));
    }
}
