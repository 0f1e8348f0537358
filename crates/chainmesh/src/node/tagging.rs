//! Source authentication on the node's paths (see [`crate::auth`]): the tags of what this
//! node sends in full form, and the check of what it receives in full form from a source at
//! the other end of another link. Direct-form packets need neither: their link proves them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tracing::{debug, warn};

use super::{NodeHandle, SendError};
use crate::auth::{Covered, Digest, TAG_LEN};
use crate::identity::NodeId;
use crate::session::SessionHandle;
use crate::wire::{compress_append, DataFrame, Ext, Packet};

/// At most one warning a second about packets whose source is not proven: a forger must
/// not be able to flood the log. The rest go to debug.
const WARN_EVERY: Duration = Duration::from_secs(1);

/// Packets refused because their tag did not prove their source, and when that was last
/// warned about.
#[derive(Default)]
pub(super) struct AuthStats {
    rejected: AtomicU64,
    last_warn: Mutex<Option<Instant>>,
}

impl AuthStats {
    /// Whether this refusal gets a warning (else a debug line).
    fn warn_now(&self) -> bool {
        let now = Instant::now();
        let mut last = self.last_warn.lock();
        match *last {
            Some(t) if now.saturating_duration_since(t) < WARN_EVERY => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }
}

/// The payload as it goes on the wire, and the flag saying how: compressed (into
/// `scratch`) when it is over a non-zero `threshold` and compression makes it smaller, else
/// as it is. Tags cover these bytes, so a tagged packet is compressed before it is tagged.
pub(super) fn on_the_wire<'a>(
    plain: &'a [u8],
    threshold: usize,
    scratch: &'a mut Vec<u8>,
) -> (&'a [u8], Ext) {
    if threshold > 0 && plain.len() > threshold && compress_append(scratch, plain) {
        (&scratch[..], Ext::COMPRESSED)
    } else {
        (plain, Ext::default())
    }
}

/// The digest the tags of `f` cover; `f.ext` must already have [`Ext::AUTH`].
pub(super) fn frame_digest(f: &DataFrame<'_>) -> Digest {
    let covered = Covered {
        packet_type: f.packet_type,
        seq: f.seq,
        ext: f.ext,
        group: f.group.as_bytes(),
        src: f.src,
        module: f.module,
    };
    Digest::of(&covered, &[f.prefix, f.payload])
}

impl NodeHandle {
    /// `f`, a frame in full form from this node with its payload as it goes on the wire,
    /// with [`Ext::AUTH`] and a tag for each of its destinations, written into `buf`. A
    /// destination whose node ID is no key on the network's curve cannot be given a tag: it
    /// is unreachable.
    pub(super) fn tagged<'a>(
        &self,
        f: DataFrame<'a>,
        buf: &'a mut Vec<u8>,
    ) -> Result<DataFrame<'a>, SendError> {
        let f = DataFrame {
            ext: f.ext | Ext::AUTH,
            ..f
        };
        let digest = frame_digest(&f);
        buf.clear();
        buf.reserve(f.dsts.len().saturating_mul(TAG_LEN));
        for d in f.dsts {
            let tag = self
                .inner
                .keys
                .tag(d, &digest)
                .map_err(|_| SendError::Unreachable(*d))?;
            buf.extend_from_slice(&tag);
        }
        Ok(DataFrame { tags: buf, ..f })
    }

    /// Whether a packet in full form that `from` handed over and that lists this node may
    /// be taken as coming from its source: the source is the link's peer (TLS proves it),
    /// or this node's tag verifies under the key it shares with the source.
    pub(super) fn source_proven(&self, from: &SessionHandle, packet: &Packet) -> bool {
        let Some(opts) = packet.options.as_ref() else {
            return false;
        };
        if opts.src == from.peer {
            return true;
        }
        let me = self.inner.id;
        let Some(tag) = opts
            .dsts
            .iter()
            .position(|d| *d == me)
            .and_then(|i| opts.tag(i))
        else {
            return false;
        };
        Digest::of_packet(packet).is_some_and(|d| self.inner.keys.verify(&opts.src, &d, tag))
    }

    /// Counts and logs a packet refused because its source is not proven.
    pub(super) fn reject_unproven(&self, from: &SessionHandle, src: &NodeId, packet: &Packet) {
        let auth = &self.inner.auth;
        let n = auth
            .rejected
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if auth.warn_now() {
            warn!(peer = %from.peer.short(), addr = %from.addr, conn = from.id, src = %src.short(),
                packet_type = %packet.packet_type, seq = packet.seq, rejected = n,
                "packet whose tag does not prove its source dropped");
        } else {
            debug!(peer = %from.peer.short(), conn = from.id, src = %src.short(),
                seq = packet.seq, "packet whose tag does not prove its source dropped");
        }
    }

    /// Packets addressed to this node that were dropped because their tag did not prove
    /// the source they name (see `docs/protocol.md`, Source authentication), since start.
    pub fn auth_rejected(&self) -> u64 {
        self.inner.auth.rejected.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::decompress;

    #[test]
    fn a_payload_is_compressed_once_only_when_it_is_large_and_that_pays() {
        let text = vec![b'a'; 5000];
        let mut scratch = Vec::new();
        let (body, ext) = on_the_wire(&text, 1024, &mut scratch);
        assert_eq!(ext, Ext::COMPRESSED);
        assert!(body.len() < 100);
        assert_eq!(decompress(body, 1 << 20).unwrap().as_ref(), &text[..]);
        let random: Vec<u8> = (0..5000).map(|_| rand::random::<u8>()).collect();
        // (payload, threshold): at the threshold, off, or not worth it.
        for (payload, threshold) in [(&text[..1024], 1024), (&text[..], 0), (&random[..], 1024)] {
            let mut scratch = Vec::new();
            let (body, ext) = on_the_wire(payload, threshold, &mut scratch);
            assert_eq!(
                (body, ext),
                (payload, Ext::default()),
                "threshold {threshold}"
            );
        }
    }

    #[test]
    fn warnings_about_unproven_sources_come_at_most_once_a_second() {
        let stats = AuthStats::default();
        assert!(stats.warn_now());
        assert!(!stats.warn_now());
        *stats.last_warn.lock() = Instant::now().checked_sub(WARN_EVERY);
        assert!(stats.warn_now());
    }
}
