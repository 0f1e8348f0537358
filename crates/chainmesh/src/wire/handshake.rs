//! Payloads of the link-control packets: Handshake (type 0x02) and Goodbye (type 0x0f).

use std::num::NonZeroU64;

use bytes::Bytes;

use super::error::{VersionRanges, WireError};
use super::HEADER_LEN;

/// Lowest protocol version this build speaks: 3, the first that authenticates the source
/// of relayed packets. A node that also took older links would let any member downgrade its
/// relayed traffic to unauthenticated.
pub const MIN_PROTOCOL_VERSION: u16 = 3;
/// Highest protocol version this build speaks: 4, which adds link-level fragments
/// ([`FRAGMENT_VERSION`](super::FRAGMENT_VERSION)).
pub const MAX_PROTOCOL_VERSION: u16 = 4;
/// First protocol version with the direct form of options ([`Ext::DIRECT`](super::Ext::DIRECT)).
pub const DIRECT_FORM_VERSION: u16 = 2;

/// Largest Length a packet may announce before the protocol handshake is done. The Handshake
/// itself takes 32 bytes (or 24 in the older form); a peer announcing more has nothing to say
/// that the protocol allows, so it cannot make a node buffer anything before it agreed a
/// version.
pub const MAX_HANDSHAKE_PACKET: u32 = 64;

/// The payload of a Handshake packet: what a node supports, sent first thing on every link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Handshake {
    /// Lowest protocol version the sender speaks.
    pub min_version: u16,
    /// Highest protocol version the sender speaks.
    pub max_version: u16,
    /// Port the sender accepts P2P connections on, 0 for none; lets the receiver of an
    /// inbound link learn a dialable address (the link's remote IP with this port).
    pub listen_port: u16,
    /// Largest packet the sender accepts; the receiver must not send it anything larger.
    pub max_packet_size: u32,
    /// The sender's incarnation: drawn at random, never 0, when its node starts, so two
    /// processes holding the same certificate (a restarted node, or a copy) can be told
    /// apart. `None` for the older 10-byte form, which has no such field.
    pub incarnation: Option<NonZeroU64>,
}

impl Handshake {
    /// Encoded size of the payload.
    pub const LEN: usize = 18;
    /// Encoded size of the older payload, without the incarnation.
    pub const LEGACY_LEN: usize = 10;

    /// Our handshake: the versions this build speaks, with the given port, limit and
    /// incarnation.
    pub fn ours(listen_port: u16, max_packet_size: u32, incarnation: NonZeroU64) -> Handshake {
        Handshake {
            min_version: MIN_PROTOCOL_VERSION,
            max_version: MAX_PROTOCOL_VERSION,
            listen_port,
            max_packet_size,
            incarnation: Some(incarnation),
        }
    }

    /// The payload: 18 bytes, or the older 10 when there is no incarnation.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Handshake::LEN);
        out.extend_from_slice(&self.min_version.to_be_bytes());
        out.extend_from_slice(&self.max_version.to_be_bytes());
        out.extend_from_slice(&self.listen_port.to_be_bytes());
        out.extend_from_slice(&self.max_packet_size.to_be_bytes());
        if let Some(i) = self.incarnation {
            out.extend_from_slice(&i.get().to_be_bytes());
        }
        out
    }

    /// Parses a Handshake payload, refusing a wrong size, an empty version range, a packet
    /// limit too small for a header, or an incarnation of 0. The older 10-byte form is read
    /// with no incarnation, so that version negotiation can still name both ranges.
    pub fn decode(payload: &[u8]) -> Result<Handshake, WireError> {
        let size_error = || WireError::HandshakeSize {
            length: payload.len(),
            expected: Handshake::LEN,
        };
        let (fixed, rest) = match payload.len() {
            Handshake::LEN | Handshake::LEGACY_LEN => payload.split_at(Handshake::LEGACY_LEN),
            _ => return Err(size_error()),
        };
        let b: &[u8; Handshake::LEGACY_LEN] = fixed.try_into().map_err(|_| size_error())?;
        let [a0, a1, b0, b1, p0, p1, m0, m1, m2, m3] = *b;
        let incarnation = match <[u8; 8]>::try_from(rest) {
            Ok(raw) => Some(
                NonZeroU64::new(u64::from_be_bytes(raw))
                    .ok_or(WireError::HandshakeIncarnationZero)?,
            ),
            Err(_) => None,
        };
        let hs = Handshake {
            min_version: u16::from_be_bytes([a0, a1]),
            max_version: u16::from_be_bytes([b0, b1]),
            listen_port: u16::from_be_bytes([p0, p1]),
            max_packet_size: u32::from_be_bytes([m0, m1, m2, m3]),
            incarnation,
        };
        if hs.min_version > hs.max_version {
            return Err(WireError::HandshakeVersionRange {
                min: hs.min_version,
                max: hs.max_version,
            });
        }
        if (hs.max_packet_size as usize) < HEADER_LEN {
            return Err(WireError::HandshakeMaxPacketTooSmall {
                max_packet_size: hs.max_packet_size,
                header: HEADER_LEN,
            });
        }
        Ok(hs)
    }

    /// The version both sides use: the smaller of the two maximum versions, provided the
    /// ranges overlap. Version 0 means "not agreed yet" and is never chosen.
    ///
    /// Symmetric, so both ends of a link reach the same answer independently.
    pub fn negotiate(&self, theirs: &Handshake) -> Result<u16, WireError> {
        let low = self.min_version.max(theirs.min_version).max(1);
        let high = self.max_version.min(theirs.max_version);
        if low > high {
            return Err(WireError::NoCommonVersion(VersionRanges {
                ours_min: self.min_version,
                ours_max: self.max_version,
                theirs_min: theirs.min_version,
                theirs_max: theirs.max_version,
            }));
        }
        Ok(high)
    }
}

/// The payload of a Goodbye packet: the reason as UTF-8.
pub fn encode_goodbye(reason: &str) -> Bytes {
    Bytes::copy_from_slice(reason.as_bytes())
}

/// The reason from a Goodbye payload.
///
/// The peer is leaving whatever this returns; the error only says its reason is unreadable
/// (`String::from_utf8_lossy` gives a printable version).
pub fn decode_goodbye(payload: &[u8]) -> Result<&str, WireError> {
    std::str::from_utf8(payload).map_err(|e| WireError::GoodbyeNotUtf8 {
        bad_offset: e.valid_up_to(),
    })
}
