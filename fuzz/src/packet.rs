//! The P2P packet stream and the Handshake payload.

use bytes::{Bytes, BytesMut};
use chainmesh::wire::{
    encode_topic_prefix, relay_frame, split_topic, DataFrame, Decoder, Handshake, Packet,
    PacketType, RESERVE_STEP,
};
use chainmesh::NodeId;

use super::stream::{split_invariant, Split};

/// Largest packet the stream decoder takes: small enough that an input can cross it, large
/// enough for any packet an input of libFuzzer's usual sizes can hold.
const MAX_PACKET: u32 = 1 << 16;

/// The node at the other end of the link, for packets in direct form.
const PEER: NodeId = NodeId::from_bytes([0x5a; 64]);

/// Flag: decode as the stream of a link to [`PEER`] (direct form allowed) rather than
/// without a link.
const ON_LINK: u8 = 0x1;

/// The P2P packet decoder fed a stream in pieces the input chooses ([`Split`]).
///
/// Checks: the pieces change nothing; each packet re-encodes to exactly the bytes it was cut
/// from, passes `validate`, decodes the same way one-shot, encodes the same through the send
/// path's [`DataFrame`], and survives a relay's TTL and version patch; a Multicast's topic
/// prefix re-encodes to its bytes.
pub fn packet_stream(data: &[u8]) {
    let split = Split::of(data);
    let link = split.flags & ON_LINK != 0;
    let decoded = split_invariant(
        &split,
        RESERVE_STEP,
        || {
            if link {
                Decoder::on_link(MAX_PACKET, PEER)
            } else {
                Decoder::new(MAX_PACKET)
            }
        },
        |d, buf| d.decode_frame(buf),
    );
    for (packet, frame) in decoded.items.iter().flatten() {
        check_packet(packet, frame, link);
    }
}

fn check_packet(packet: &Packet, frame: &Bytes, link: bool) {
    assert_eq!(&packet.to_bytes(), frame, "re-encoding changed the packet");
    assert_eq!(packet.encoded_len(), frame.len());
    assert_eq!(
        packet.validate(MAX_PACKET),
        Ok(()),
        "decoded but not sendable"
    );
    let again = if link {
        Packet::decode_exact_from(frame, MAX_PACKET, &PEER)
    } else {
        Packet::decode_exact(frame, MAX_PACKET)
    };
    assert_eq!(again.as_ref(), Ok(packet), "one-shot decode differs");

    let ttl = packet.ext.ttl().wrapping_sub(1);
    let version = packet.version.wrapping_add(1);
    let mut relayed = packet.clone();
    relayed.ext = relayed.ext.with_ttl(ttl);
    relayed.version = version;
    // A buffer of its own: patched in place, as a relay does with a reassembled packet.
    let own = Bytes::copy_from_slice(frame);
    assert_eq!(relay_frame(own, ttl, version), relayed.to_bytes());

    if let Some(o) = &packet.options {
        let df = DataFrame {
            version: packet.version,
            packet_type: packet.packet_type,
            seq: packet.seq,
            ext: packet.ext,
            group: &o.group,
            src: &o.src,
            dsts: &o.dsts,
            module: o.module,
            tags: &o.tags,
            prefix: &[],
            payload: &packet.payload,
        };
        assert_eq!(df.validate(MAX_PACKET), Ok(()));
        let mut out = BytesMut::new();
        df.encode_plain_into(&mut out);
        assert_eq!(&out.freeze(), frame, "the send path encodes it differently");
    }

    if packet.packet_type == PacketType::MULTICAST && !packet.ext.is_compressed() {
        if let Ok((topic, rest)) = split_topic(&packet.payload) {
            let mut again = Vec::new();
            assert!(encode_topic_prefix(topic, &mut again).is_ok());
            again.extend_from_slice(&rest);
            assert_eq!(again, packet.payload.as_ref());
        }
    }
}

/// A Handshake payload, and the same bytes as the first packet of a link.
///
/// Checks: a payload that decodes re-encodes to itself; negotiation with this build's own
/// handshake is symmetric and picks a version both ranges hold; the packet decoder with the
/// pre-handshake limit refuses anything longer before reading it.
pub fn handshake(data: &[u8]) {
    if let Ok(hs) = Handshake::decode(data) {
        assert_eq!(hs.encode(), data, "re-encoding changed the handshake");
        assert_eq!(Handshake::decode(&hs.encode()), Ok(hs));
        let incarnation = std::num::NonZeroU64::MIN;
        let ours = Handshake::ours(30300, chainmesh::wire::DEFAULT_MAX_PACKET, incarnation);
        // The error names the sides as seen from the caller, so only the outcome is compared.
        let agreed = ours.negotiate(&hs).ok();
        assert_eq!(
            agreed,
            hs.negotiate(&ours).ok(),
            "negotiation is not symmetric"
        );
        if let Some(v) = agreed {
            assert!(v >= 1, "version 0 agreed");
            for side in [&ours, &hs] {
                assert!(
                    (side.min_version..=side.max_version).contains(&v),
                    "{v} is outside one side's range"
                );
            }
        }
    }
    let mut d = Decoder::new(chainmesh::wire::MAX_HANDSHAKE_PACKET);
    let mut buf = BytesMut::from(data);
    if let Ok(Some(p)) = d.decode(&mut buf) {
        assert!(p.encoded_len() <= chainmesh::wire::MAX_HANDSHAKE_PACKET as usize);
        if p.packet_type == PacketType::HANDSHAKE {
            // The session reads the payload of the first packet exactly like this.
            let _ = Handshake::decode(&p.payload);
        }
    }
}
