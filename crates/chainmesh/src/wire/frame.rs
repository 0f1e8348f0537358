//! Building data packets straight from borrowed parts, with optional compression, and the
//! byte patches a relay applies to a received packet.
//!
//! [`Packet`](super::Packet) owns its options and payload, which suits decoding and tests.
//! Sending builds the frame from references instead, so a message costs one allocation (the
//! frame) and one copy of its payload, and a multicast is encoded once for every peer.

use bytes::{BufMut, Bytes};

use super::compress::compress_append;
use super::error::WireError;
use super::packet::{check_tags, Ext, Options, PacketType};
use super::HEADER_LEN;
use crate::identity::{NodeId, NODE_ID_LEN};

/// Byte offset of the Version field.
const VERSION_OFFSET: usize = 4;
/// Byte offset of the Ext field.
const EXT_OFFSET: usize = 12;
const U16_MAX: usize = u16::MAX as usize;

/// A data packet (a type with options) to encode, by reference.
#[derive(Debug, Clone, Copy)]
pub struct DataFrame<'a> {
    /// Protocol version written in the header.
    pub version: u16,
    /// The packet type; must be one that carries options.
    pub packet_type: PacketType,
    /// The message's Seq.
    pub seq: u32,
    /// Flags and TTL; [`Ext::COMPRESSED`] is added by [`DataFrame::encode`] when it compresses.
    /// With [`Ext::DIRECT`] the frame is in direct form: `src` is not written and `dsts` must
    /// be empty.
    pub ext: Ext,
    /// GroupID.
    pub group: &'a str,
    /// Source node ID.
    pub src: &'a NodeId,
    /// Destination node IDs.
    pub dsts: &'a [NodeId],
    /// ModuleID.
    pub module: u16,
    /// With [`Ext::AUTH`]: the destinations' tags, [`TAG_LEN`](super::TAG_LEN) bytes each in
    /// the order of `dsts`; empty otherwise. They cover the payload as it goes on the wire,
    /// so a tagged frame is never compressed by [`DataFrame::encode`]: the caller compresses
    /// first.
    pub tags: &'a [u8],
    /// Bytes that start the payload, before `payload` (a Multicast's topic prefix).
    pub prefix: &'a [u8],
    /// The rest of the payload.
    pub payload: &'a [u8],
}

impl DataFrame<'_> {
    fn options_len(&self) -> usize {
        if self.ext.is_direct() {
            Options::DIRECT_FIXED_LEN + self.group.len()
        } else {
            let tags = if self.ext.is_auth() {
                self.tags.len()
            } else {
                0
            };
            Options::FIXED_LEN + self.group.len() + NODE_ID_LEN * self.dsts.len() + tags
        }
    }

    /// Length of the packet without compression.
    pub fn plain_len(&self) -> usize {
        HEADER_LEN + self.options_len() + self.prefix.len() + self.payload.len()
    }

    /// Checks what [`encode`](Self::encode) relies on: a type with options, GroupID and
    /// destination list within their u16 prefixes, and the uncompressed packet within
    /// `max_len`. The limit applies before compression so that the receiver, which bounds
    /// decompression by the same limit, can always take it.
    pub fn validate(&self, max_len: u32) -> Result<(), WireError> {
        if !self.packet_type.has_options() {
            return Err(WireError::OptionsMismatch {
                packet_type: self.packet_type.0,
                type_has_options: false,
            });
        }
        if self.group.len() > U16_MAX {
            return Err(WireError::GroupTooLong {
                length: self.group.len(),
            });
        }
        if self.dsts.len() > U16_MAX {
            return Err(WireError::TooManyDestinations {
                count: self.dsts.len(),
            });
        }
        if self.ext.is_direct() && !self.dsts.is_empty() {
            return Err(WireError::DirectWithDestinations {
                count: self.dsts.len(),
            });
        }
        check_tags(self.ext, self.dsts.len(), self.tags.len())?;
        let len = self.plain_len();
        if len > max_len as usize {
            return Err(WireError::LengthTooLarge {
                length: len as u64,
                max: max_len,
            });
        }
        Ok(())
    }

    /// Encodes the packet. The payload (prefix included) is zstd-compressed when
    /// `compress_threshold` is not 0, the payload is larger than it, and compression makes it
    /// smaller; [`Ext::COMPRESSED`] then says so. A tagged frame ([`Ext::AUTH`]) is never
    /// compressed here.
    ///
    /// Call [`validate`](Self::validate) first: fields too long for their prefixes are cut
    /// so the frame stays well-formed, but the packet would not say what was meant.
    pub fn encode(&self, compress_threshold: usize) -> Bytes {
        let body_len = self.prefix.len() + self.payload.len();
        let head_len = HEADER_LEN + self.options_len();
        if compress_threshold > 0 && body_len > compress_threshold && !self.ext.is_auth() {
            let mut out = Vec::with_capacity(head_len + body_len - 1);
            // Length is patched once the compressed size is known.
            self.put_head(&mut out, self.ext | Ext::COMPRESSED, 0);
            let shrunk = if self.prefix.is_empty() {
                compress_append(&mut out, self.payload)
            } else {
                compress_append(&mut out, &[self.prefix, self.payload].concat())
            };
            if shrunk {
                patch_length(&mut out);
                return Bytes::from(out);
            }
            out.clear();
        }
        let mut out = Vec::with_capacity(head_len + body_len);
        self.encode_plain_into(&mut out);
        Bytes::from(out)
    }

    /// Appends the packet uncompressed ([`plain_len`](Self::plain_len) bytes) to `out`, such
    /// as a session's write queue. Call [`validate`](Self::validate) first.
    pub fn encode_plain_into(&self, out: &mut impl BufMut) {
        let len = u32::try_from(self.plain_len()).unwrap_or(u32::MAX);
        self.put_head(out, self.ext, len);
        out.put_slice(self.prefix);
        out.put_slice(self.payload);
    }

    /// Header, with `length` as its Length, and options.
    fn put_head(&self, out: &mut impl BufMut, ext: Ext, length: u32) {
        let group = self.group.as_bytes();
        let group = group.get(..U16_MAX).unwrap_or(group);
        out.put_u32(length);
        out.put_u16(self.version);
        out.put_u16(self.packet_type.0);
        out.put_u32(self.seq);
        out.put_u16(ext.0);
        out.put_u16(group.len() as u16);
        out.put_slice(group);
        if !ext.is_direct() {
            let dsts = self.dsts.get(..U16_MAX).unwrap_or(self.dsts);
            out.put_u16(NODE_ID_LEN as u16);
            out.put_slice(self.src.as_bytes());
            out.put_u16(dsts.len() as u16);
            for d in dsts {
                out.put_slice(d.as_bytes());
            }
        }
        out.put_u16(self.module);
        if ext.is_auth() && !ext.is_direct() {
            out.put_slice(self.tags);
        }
    }
}

/// Writes the buffer's length into its Length field (saturating; validated frames fit).
fn patch_length(out: &mut [u8]) {
    let len = u32::try_from(out.len()).unwrap_or(u32::MAX);
    if let Some(l) = out.get_mut(..4) {
        l.copy_from_slice(&len.to_be_bytes());
    }
}

/// Rewrites the Version of an encoded packet, for a link that agreed another version.
pub fn set_version_in_place(frame: &mut [u8], version: u16) {
    if let Some(v) = frame.get_mut(VERSION_OFFSET..VERSION_OFFSET + 2) {
        v.copy_from_slice(&version.to_be_bytes());
    }
}

/// The Ext field of an encoded packet, or `None` if `frame` is shorter than a header.
pub fn ext_of(frame: &[u8]) -> Option<Ext> {
    let b = frame.get(EXT_OFFSET..EXT_OFFSET + 2)?;
    Some(Ext(u16::from_be_bytes(b.try_into().ok()?)))
}

/// Turns an encoded packet into the one a relay forwards: TTL set to `ttl`, Version to the
/// outgoing link's. Everything else, the payload included, is left byte for byte.
pub fn patch_for_relay(frame: &mut [u8], ttl: u8, version: u16) {
    super::set_ttl_in_place(frame, ttl);
    set_version_in_place(frame, version);
}

/// A copy of a received packet to forward, patched by [`patch_for_relay`].
fn relay_copy(frame: &[u8], ttl: u8, version: u16) -> Bytes {
    let mut out = frame.to_vec();
    patch_for_relay(&mut out, ttl, version);
    Bytes::from(out)
}

/// What a relay forwards of a received packet it owns: the packet patched by
/// [`patch_for_relay`], in place when nothing else refers to its buffer (a packet
/// reassembled from Fragments, once its decoded fields are dropped), so a relay holds one
/// copy of a big packet instead of two; in a copy otherwise.
pub fn relay_frame(frame: Bytes, ttl: u8, version: u16) -> Bytes {
    match frame.try_into_mut() {
        Ok(mut own) => {
            patch_for_relay(&mut own, ttl, version);
            own.freeze()
        }
        Err(shared) => relay_copy(&shared, ttl, version),
    }
}

/// `frame` as it must go out on a link that agreed `version`: the same bytes when the
/// version matches (the usual case, no copy), otherwise a patched copy.
pub fn for_link(frame: &Bytes, version: u16) -> Bytes {
    let current = frame
        .get(VERSION_OFFSET..VERSION_OFFSET + 2)
        .and_then(|v| <[u8; 2]>::try_from(v).ok())
        .map(u16::from_be_bytes);
    if current == Some(version) {
        return frame.clone();
    }
    let mut out = frame.to_vec();
    set_version_in_place(&mut out, version);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::id;
    use crate::wire::DEFAULT_MAX_PACKET;
    use crate::wire::{split_topic, Packet, DEFAULT_TTL};

    fn frame<'a>(dsts: &'a [NodeId], src: &'a NodeId, payload: &'a [u8]) -> DataFrame<'a> {
        DataFrame {
            version: 1,
            packet_type: PacketType::UNICAST,
            seq: 42,
            ext: Ext::default().with_ttl(DEFAULT_TTL),
            group: "group0",
            src,
            dsts,
            module: 1000,
            tags: &[],
            prefix: &[],
            payload,
        }
    }

    #[test]
    fn matches_the_owned_packet_encoding() {
        let src = id(0x11);
        let dsts = [id(0x22)];
        let f = frame(&dsts, &src, b"hello");
        let bytes = f.encode(1024);
        let p = Packet::decode_exact(&bytes, DEFAULT_MAX_PACKET).unwrap();
        assert_eq!(p.to_bytes(), bytes);
        assert_eq!(bytes.len(), f.plain_len());
        assert_eq!(p.options.unwrap().dsts, dsts);
        assert!(!p.ext.is_compressed());
    }

    #[test]
    fn compressible_payload_is_compressed_and_flagged() {
        let src = id(1);
        let dsts = [id(2)];
        let payload: Vec<u8> = b"abcabcabc ".iter().copied().cycle().take(50_000).collect();
        let bytes = frame(&dsts, &src, &payload).encode(1024);
        assert!(bytes.len() < 2000, "{}", bytes.len());
        let p = Packet::decode_exact(&bytes, DEFAULT_MAX_PACKET).unwrap();
        assert!(p.ext.is_compressed());
        assert_eq!(p.ext.ttl(), DEFAULT_TTL);
        let plain = crate::wire::decompress(&p.payload, DEFAULT_MAX_PACKET as usize).unwrap();
        assert_eq!(plain.as_ref(), &payload[..]);
    }

    #[test]
    fn incompressible_small_or_disabled_is_sent_plain() {
        let src = id(1);
        let dsts = [id(2)];
        let random: Vec<u8> = (0..50_000).map(|_| rand::random::<u8>()).collect();
        let zeros = vec![0u8; 50_000];
        for (payload, threshold) in [(&random[..], 1024), (&zeros[..1024], 1024), (&zeros[..], 0)] {
            let bytes = frame(&dsts, &src, payload).encode(threshold);
            let p = Packet::decode_exact(&bytes, DEFAULT_MAX_PACKET).unwrap();
            assert!(!p.ext.is_compressed(), "threshold {threshold}");
            assert_eq!(p.payload.as_ref(), payload);
        }
        // One byte over the threshold is compressed.
        let bytes = frame(&dsts, &src, &zeros[..1025]).encode(1024);
        assert!(ext_of(&bytes).unwrap().is_compressed());
    }

    #[test]
    fn multicast_prefix_is_part_of_the_payload_and_compressed_with_it() {
        let src = id(1);
        let mut prefix = Vec::new();
        crate::wire::encode_topic_prefix("blocks", &mut prefix).unwrap();
        let data = vec![b'z'; 4096];
        let mut f = frame(&[], &src, &data);
        f.packet_type = PacketType::MULTICAST;
        f.prefix = &prefix;
        for threshold in [0, 1024] {
            let p = Packet::decode_exact(&f.encode(threshold), DEFAULT_MAX_PACKET).unwrap();
            assert_eq!(p.ext.is_compressed(), threshold > 0);
            let payload = if p.ext.is_compressed() {
                crate::wire::decompress(&p.payload, 1 << 20).unwrap()
            } else {
                p.payload
            };
            let (topic, body) = split_topic(&payload).unwrap();
            assert_eq!(topic, "blocks");
            assert_eq!(body.as_ref(), &data[..]);
        }
    }

    #[test]
    fn validate_checks_limits_before_compression() {
        let src = id(1);
        let dsts = [id(2)];
        let zeros = vec![0u8; 1000];
        let f = frame(&dsts, &src, &zeros);
        assert_eq!(f.validate(f.plain_len() as u32), Ok(()));
        assert!(matches!(
            f.validate(f.plain_len() as u32 - 1),
            Err(WireError::LengthTooLarge { .. })
        ));
        let mut heartbeat = f;
        heartbeat.packet_type = PacketType::HEARTBEAT;
        assert!(heartbeat.validate(DEFAULT_MAX_PACKET).is_err());
    }

    #[test]
    fn relay_patches_ttl_and_version_only() {
        let src = id(1);
        let dsts = [id(2)];
        let bytes = frame(&dsts, &src, b"payload").encode(0);
        let relayed = relay_copy(&bytes, 9, 3);
        assert_eq!(relayed.len(), bytes.len());
        let p = Packet::decode_exact(&relayed, DEFAULT_MAX_PACKET).unwrap();
        assert_eq!((p.ext.ttl(), p.version, p.seq), (9, 3, 42));
        assert_eq!(&relayed[14..], &bytes[14..]);
        // A frame of its own is patched where it lies; a shared one is copied.
        let own = Bytes::from(bytes.to_vec());
        let at = own.as_ptr();
        let patched = relay_frame(own, 9, 3);
        assert_eq!((patched.as_ptr(), &patched[..]), (at, &relayed[..]));
        let shared = bytes.clone();
        let copied = relay_frame(shared, 9, 3);
        assert_ne!(copied.as_ptr(), bytes.as_ptr());
        assert_eq!(copied, relayed);
        assert_eq!(for_link(&bytes, 1).as_ptr(), bytes.as_ptr());
        assert_eq!(
            Packet::decode_exact(&for_link(&bytes, 2), DEFAULT_MAX_PACKET)
                .unwrap()
                .version,
            2
        );
    }
}
