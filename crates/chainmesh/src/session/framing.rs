//! What a session needs to know about the protocol on its stream, and where it hands what it
//! reads.
//!
//! The session task is the same for every protocol: outbox, batching, budgets, heartbeats,
//! idle timeout, close. A [`Framing`] supplies the rest: how frames are cut out of the read
//! buffer, which of them are heartbeats or goodbyes, what a heartbeat is on the wire, and
//! whether queued frames may share one write. The session is monomorphised over it, so a
//! framing costs nothing per packet beyond its own decoding.

use std::future::Future;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};

use super::fragment::{FragmentError, Reassembly};
use super::{CloseReason, Leftover, SessionHandle};
use crate::identity::NodeId;
use crate::wire::{
    fragment_header, Decoder, Ext, Packet, PacketType, WireError, FRAGMENT_VERSION, HEADER_LEN,
};

/// A protocol's framing as the session task sees it.
pub trait Framing: Sized + Send + 'static {
    /// A decoded frame, as handed to the session's [`Handler`].
    type Frame;
    /// Why bytes on the stream are not a valid frame.
    type Error: std::error::Error;

    /// Whether frames queued on a session may be written together in one write. A framing
    /// whose peers cannot cut coalesced frames apart says no: each frame then gets writes of
    /// its own, and no write carries bytes of two frames.
    const COALESCE: bool;

    /// Takes the next frame off the front of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` does not hold a whole frame yet, having consumed nothing
    /// (it may reserve room for the rest). An error means the stream cannot be read on and
    /// the session closes with [`CloseReason::Protocol`](super::CloseReason::Protocol); it
    /// must be reported as soon as the bytes that prove it are in, so a peer cannot make the
    /// session buffer an oversized frame.
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Frame>, Self::Error>;

    /// What a decoded frame means to the session.
    fn kind(&self, frame: &Self::Frame) -> FrameKind;

    /// The frame written on a link that has been quiet for a heartbeat interval; empty for a
    /// protocol in which only the other side sends heartbeats.
    fn heartbeat(&self) -> &[u8];

    /// The frame that tells the peer this side is leaving, with `reason`; `None` when the
    /// protocol has no such frame and leaving is just closing the stream.
    fn goodbye(&self, reason: &str) -> Option<Bytes>;

    /// The length of the frame `queued` starts with, as this side encoded it, so the writer
    /// can stop between frames of a bulk batch to let the other lanes go; `None` (the
    /// default) when the framing cannot tell, and batches are written whole.
    fn frame_len(_queued: &[u8]) -> Option<usize> {
        None
    }

    /// The header that sends `len` bytes from `offset` of one frame as a fragment of its
    /// own; `None` (the default) when the link cannot carry fragments, and frames are
    /// written whole.
    fn fragment_header(&self, _offset: usize, _len: usize) -> Option<[u8; HEADER_LEN]> {
        None
    }

    /// The close reason for a decoding error.
    fn close_reason(error: Self::Error) -> CloseReason {
        CloseReason::Protocol(error.to_string())
    }
}

/// What a decoded frame means to the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameKind {
    /// For the handler.
    Data,
    /// Keeps the link alive; the session consumes it.
    Heartbeat,
    /// The peer is leaving, for this reason: the session ends with
    /// [`CloseReason::PeerLeft`](super::CloseReason::PeerLeft).
    Goodbye(String),
}

/// A delivery that could not complete at once (the receiver's queue was full). The session
/// stops reading until it completes, so a slow consumer slows its sender down instead of
/// growing memory; writes and heartbeats go on meanwhile.
pub type Pending = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Where a session over framing `F` hands the data frames it decodes.
pub trait Handler<F: Framing>: Send + Sync + 'static {
    /// Takes one frame from `from`. Returns a future when delivery has to wait for room.
    fn on_frame(&self, from: &SessionHandle<F>, frame: F::Frame) -> Option<Pending>;

    /// Takes what the session `from` had not written when it ended for `reason`: called
    /// once, from the session's task, and only when something was left. Dropped by default.
    fn on_leftover(&self, _from: &SessionHandle<F>, _left: Leftover, _reason: &CloseReason) {}
}

/// Where a session hands the packets it decodes.
pub trait Inbound: Send + Sync + 'static {
    /// Takes one packet from `from`. `frame` is the whole packet as received (the packet's
    /// payload is a slice of it), for forwarding without re-encoding. Returns a future when
    /// delivery has to wait for room.
    fn on_packet(&self, from: &SessionHandle, packet: Packet, frame: Bytes) -> Option<Pending>;

    /// Takes what the session `from` had not written when it ended for `reason` (see
    /// [`Handler::on_leftover`]); its packets come out of [`Leftover::packets`]. Dropped by
    /// default.
    fn on_leftover(&self, _from: &SessionHandle, _left: Leftover, _reason: &CloseReason) {}
}

impl<T: Inbound + ?Sized> Handler<P2pFraming> for T {
    #[inline]
    fn on_frame(&self, from: &SessionHandle, (packet, frame): (Packet, Bytes)) -> Option<Pending> {
        self.on_packet(from, packet, frame)
    }

    fn on_leftover(&self, from: &SessionHandle, left: Leftover, reason: &CloseReason) {
        Inbound::on_leftover(self, from, left, reason);
    }
}

/// Why bytes on a P2P link are not acceptable: they do not decode, or they decode to a packet
/// the protocol forbids once the handshake is done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The bytes are not a packet.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// A packet carries another Version than the one agreed in the handshake.
    #[error(
        "packet type {packet_type} carries Version {got}, but the link agreed version {expected}"
    )]
    WrongVersion {
        /// The agreed version.
        expected: u16,
        /// The packet's Version field.
        got: u16,
        /// The packet's type.
        packet_type: u16,
    },
    /// A Handshake after the handshake.
    #[error("a second Handshake on a link that agreed version {version}")]
    SecondHandshake {
        /// The agreed version.
        version: u16,
    },
    /// A Heartbeat with a payload.
    #[error("a Heartbeat with a {len}-byte payload; heartbeats are empty")]
    HeartbeatPayload {
        /// The payload's length.
        len: usize,
    },
    /// Fragments that do not join into a packet.
    #[error(transparent)]
    Fragment(#[from] FragmentError),
}

/// The P2P framing of `docs/protocol.md`: packets back to back, which may share a write.
/// Besides cutting packets, it applies the link rules the codec leaves to it: every packet
/// carries the agreed Version, no second Handshake, no Heartbeat payload; and it joins
/// Fragments (version 4) back into the packet they carry, which it hands up as if it had
/// come whole.
#[derive(Debug)]
pub struct P2pFraming {
    decoder: Decoder,
    version: u16,
    heartbeat: Bytes,
    reassembly: Reassembly,
}

impl P2pFraming {
    /// The framing of a link to `peer` that agreed on `version` and accepts packets of up to
    /// `max_packet` bytes.
    pub fn on_link(max_packet: u32, version: u16, peer: NodeId) -> Self {
        P2pFraming {
            decoder: Decoder::on_link(max_packet, peer),
            version,
            heartbeat: Packet::heartbeat(version).to_bytes(),
            reassembly: Reassembly::default(),
        }
    }

    /// The link rules every packet obeys, whole or joined from Fragments.
    fn check(&self, packet: &Packet) -> Result<(), LinkError> {
        if packet.version != self.version {
            return Err(LinkError::WrongVersion {
                expected: self.version,
                got: packet.version,
                packet_type: packet.packet_type.0,
            });
        }
        match packet.packet_type {
            PacketType::HANDSHAKE => Err(LinkError::SecondHandshake {
                version: self.version,
            }),
            PacketType::HEARTBEAT if !packet.payload.is_empty() => {
                Err(LinkError::HeartbeatPayload {
                    len: packet.payload.len(),
                })
            }
            _ => Ok(()),
        }
    }

    /// Adds a Fragment to the packet being joined; that packet, decoded and checked, once
    /// its last piece is in.
    #[cold]
    fn join(&mut self, fragment: &Packet) -> Result<Option<(Packet, Bytes)>, LinkError> {
        if self.version < FRAGMENT_VERSION {
            return Err(FragmentError::NotNegotiated {
                version: self.version,
            }
            .into());
        }
        let Some(mut whole) = self.reassembly.push(fragment, self.decoder.max_len())? else {
            return Ok(None);
        };
        // Its Length is the joined length, checked against the limit: it decodes whole.
        let Some((packet, frame)) = self.decoder.decode_shared(&mut whole)? else {
            return Err(WireError::Truncated {
                needed: HEADER_LEN,
                available: whole.len(),
            }
            .into());
        };
        self.check(&packet)?;
        Ok(Some((packet, frame)))
    }
}

impl Framing for P2pFraming {
    /// The packet, and the whole packet as received (see [`Decoder::decode_frame`]).
    type Frame = (Packet, Bytes);
    type Error = LinkError;

    const COALESCE: bool = true;

    #[inline]
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Frame>, LinkError> {
        loop {
            let Some((packet, frame)) = self.decoder.decode_frame(buf)? else {
                return Ok(None);
            };
            self.check(&packet)?;
            if packet.packet_type != PacketType::FRAGMENT {
                return Ok(Some((packet, frame)));
            }
            if let Some(joined) = self.join(&packet)? {
                return Ok(Some(joined));
            }
        }
    }

    #[inline]
    fn kind(&self, (packet, _): &Self::Frame) -> FrameKind {
        match packet.packet_type {
            PacketType::HEARTBEAT => FrameKind::Heartbeat,
            // Only a plain Goodbye announces a leave; one flagged as a response is the
            // handler's to judge.
            PacketType::GOODBYE if !packet.ext.contains(Ext::RESPONSE) => {
                FrameKind::Goodbye(String::from_utf8_lossy(&packet.payload).into_owned())
            }
            _ => FrameKind::Data,
        }
    }

    fn heartbeat(&self) -> &[u8] {
        &self.heartbeat
    }

    fn goodbye(&self, reason: &str) -> Option<Bytes> {
        Some(Packet::goodbye(self.version, reason).to_bytes())
    }

    #[inline]
    fn frame_len(queued: &[u8]) -> Option<usize> {
        let length = queued.get(..4)?;
        Some(u32::from_be_bytes([length[0], length[1], length[2], length[3]]) as usize)
    }

    fn fragment_header(&self, offset: usize, len: usize) -> Option<[u8; HEADER_LEN]> {
        if self.version < FRAGMENT_VERSION {
            return None;
        }
        fragment_header(self.version, offset, len)
    }

    fn close_reason(error: LinkError) -> CloseReason {
        match error {
            LinkError::Fragment(e) => CloseReason::Fragment(e),
            other => CloseReason::Protocol(other.to_string()),
        }
    }
}
