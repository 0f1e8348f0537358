//! Unit and property tests of the wire codec.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::identity::NodeId;
use crate::test_support::id;
use crate::wire::{VersionRanges, DEFAULT_MAX_PACKET};

const MAX: u32 = DEFAULT_MAX_PACKET;

fn unicast() -> Packet {
    Packet {
        version: 1,
        packet_type: PacketType::UNICAST,
        seq: 42,
        ext: Ext::default().with_ttl(DEFAULT_TTL),
        options: Some(Options {
            group: "group0".into(),
            src: id(0x11),
            dsts: vec![id(0x22)],
            module: 1000,
            tags: Bytes::new(),
        }),
        payload: Bytes::from_static(b"hello"),
    }
}

/// `unicast()` encoded, with the offsets of its options fields.
fn unicast_bytes() -> Vec<u8> {
    unicast().to_bytes().to_vec()
}

/// Offsets in `unicast_bytes()`.
const GROUP_LEN_AT: usize = 14;
const GROUP_AT: usize = 16;
const ID_LEN_AT: usize = 22;
const COUNT_AT: usize = 24 + 64;
const DSTS_AT: usize = COUNT_AT + 2;

/// Replaces the Length field with `len` and the body with the first `len` bytes.
fn cut(mut bytes: Vec<u8>, len: usize) -> Vec<u8> {
    bytes.truncate(len);
    bytes[..4].copy_from_slice(&(len as u32).to_be_bytes());
    bytes
}

#[test]
fn header_layout_is_big_endian() {
    let p = Packet {
        version: 0x0102,
        packet_type: PacketType(0x0304),
        seq: 0x0506_0708,
        ext: Ext(0x090a),
        options: None,
        payload: Bytes::from_static(b"\xff"),
    };
    assert_eq!(
        p.to_bytes().as_ref(),
        b"\x00\x00\x00\x0f\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\xff"
    );
    assert_eq!(Packet::decode_exact(&p.to_bytes(), MAX).unwrap(), p);
}

#[test]
fn unicast_round_trips_and_lengths_agree() {
    let p = unicast();
    let b = p.to_bytes();
    assert_eq!(b.len(), p.encoded_len());
    assert_eq!(b.len(), 14 + 2 + 6 + 2 + 64 + 2 + 64 + 2 + 5);
    assert_eq!(Packet::decode_exact(&b, MAX).unwrap(), p);
    let mut dst = BytesMut::from(&b"prefix"[..]);
    p.encode(&mut dst);
    assert_eq!(&dst[6..], b.as_ref());
}

#[test]
fn packet_types_and_options() {
    let with: Vec<u16> = (0..=0xffff)
        .filter(|t| PacketType(*t).has_options())
        .collect();
    assert_eq!(with, vec![3, 4, 5, 6, 7, 9, 0x0e]);
    assert_eq!(PacketType::GOODBYE.name(), Some("Goodbye"));
    assert_eq!(PacketType(0x0d).name(), None);
    assert_eq!(PacketType(0x08).name(), None);
    assert_eq!(PacketType::UNICAST.to_string(), "Unicast(0x05)");
    assert_eq!(PacketType(0x1234).to_string(), "unknown(0x1234)");
}

#[test]
fn unknown_type_decodes_without_options() {
    let p = Packet {
        version: 7,
        packet_type: PacketType(0x4000),
        seq: 9,
        ext: Ext(0),
        options: None,
        payload: Bytes::from_static(&[0; 100]),
    };
    assert_eq!(Packet::decode_exact(&p.to_bytes(), MAX).unwrap(), p);
}

#[test]
fn ext_flags_and_ttl() {
    let e = Ext::RESPONSE | Ext::ERROR;
    assert!(e.is_response() && e.is_error() && !e.is_compressed());
    assert!(e.contains(Ext::RESPONSE) && e.contains(Ext::RESPONSE | Ext::ERROR));
    assert!(!e.contains(Ext::COMPRESSED));
    let e = e.with_ttl(10);
    assert_eq!(e, Ext(0x0a03));
    assert_eq!(e.ttl(), 10);
    assert_eq!(e.with_ttl(0), Ext(0x0003));
    assert_eq!(Ext(0xffff).reserved_bits(), 0x0080);
    assert!(Ext::AUTH.is_auth() && !Ext::DIRECT.is_auth());
    assert!(Ext::DIRECT.is_direct() && !Ext::COMPRESSED.is_direct());
    let mut e = Ext::default();
    e |= Ext::COMPRESSED;
    assert_eq!(e, Ext(0x0010));
    assert_eq!(
        flag_names(Ext(0x0a1f)),
        vec!["RESPONSE", "ERROR", "REQUEST", "REFUSED", "COMPRESSED"]
    );
}

#[test]
fn set_ttl_in_place_patches_only_the_ttl() {
    let mut b = unicast_bytes();
    set_ttl_in_place(&mut b, 3);
    let p = Packet::decode_exact(&b, MAX).unwrap();
    let mut want = unicast();
    want.ext = want.ext.with_ttl(3);
    assert_eq!(p, want);
    let mut short = [0u8; 13];
    set_ttl_in_place(&mut short, 3);
    assert_eq!(short, [0u8; 13]);
}

#[test]
fn err_length_too_small() {
    let b = hex::decode("0000000d0000000100000007").unwrap();
    assert_eq!(
        Packet::decode_exact(&b, MAX),
        Err(WireError::LengthTooSmall {
            length: 13,
            header: 14
        })
    );
    let mut buf = BytesMut::from(&b"\x00\x00\x00\x00"[..]);
    assert!(matches!(
        Decoder::new(MAX).decode(&mut buf),
        Err(WireError::LengthTooSmall { length: 0, .. })
    ));
}

#[test]
fn err_length_too_large_before_the_body_arrives() {
    let mut buf = BytesMut::from(&b"\x02\x00\x00\x01"[..]);
    let e = Decoder::new(MAX).decode(&mut buf).unwrap_err();
    assert_eq!(
        e,
        WireError::LengthTooLarge {
            length: 0x0200_0001,
            max: MAX
        }
    );
    assert_eq!(buf.len(), 4, "nothing consumed");
    assert!(e.to_string().contains("33554433") && e.to_string().contains("33554432"));
    assert!(matches!(
        Packet::decode_exact(&unicast_bytes(), 100),
        Err(WireError::LengthTooLarge { max: 100, .. })
    ));
}

#[test]
fn err_truncated_and_trailing() {
    let b = unicast_bytes();
    assert_eq!(
        Packet::decode_exact(&b[..3], MAX),
        Err(WireError::Truncated {
            needed: 14,
            available: 3
        })
    );
    assert_eq!(
        Packet::decode_exact(&b[..10], MAX),
        Err(WireError::Truncated {
            needed: b.len(),
            available: 10
        })
    );
    assert_eq!(
        Packet::decode_exact(&b[..b.len() - 1], MAX),
        Err(WireError::Truncated {
            needed: b.len(),
            available: b.len() - 1
        })
    );
    let mut long = b.clone();
    long.extend_from_slice(b"xy");
    assert_eq!(
        Packet::decode_exact(&long, MAX),
        Err(WireError::TrailingBytes {
            length: b.len() as u32,
            extra: 2
        })
    );
}

#[test]
fn err_options_overrun_names_field_and_offset() {
    let b = cut(unicast_bytes(), 15);
    assert_eq!(
        Packet::decode_exact(&b, MAX),
        Err(WireError::OptionsOverrun {
            field: "GroupID length",
            offset: 14,
            needed: 2,
            available: 1,
            length: 15
        })
    );
    let mut b = unicast_bytes();
    b[GROUP_LEN_AT..GROUP_AT].copy_from_slice(&1000u16.to_be_bytes());
    assert!(matches!(
        Packet::decode_exact(&b, MAX),
        Err(WireError::OptionsOverrun {
            field: "GroupID",
            offset: 16,
            needed: 1000,
            ..
        })
    ));
    let b = cut(unicast_bytes(), 50);
    let e = Packet::decode_exact(&b, MAX).unwrap_err();
    assert!(matches!(
        e,
        WireError::OptionsOverrun {
            field: "source NodeID",
            offset: 24,
            needed: 64,
            available: 26,
            length: 50
        }
    ));
    assert!(e.to_string().contains("source NodeID") && e.to_string().contains("offset 24"));
}

#[test]
fn err_destinations_overrun() {
    let mut b = unicast_bytes();
    b[COUNT_AT..DSTS_AT].copy_from_slice(&2u16.to_be_bytes());
    assert_eq!(
        Packet::decode_exact(&b, MAX),
        Err(WireError::DestinationsOverrun {
            count: 2,
            offset: DSTS_AT,
            needed: 128,
            available: 64 + 2 + 5,
            length: b.len() as u32
        })
    );
    // The list fits but leaves no room for the ModuleID.
    let b = cut(unicast_bytes(), DSTS_AT + 64 + 1);
    assert!(matches!(
        Packet::decode_exact(&b, MAX),
        Err(WireError::DestinationsOverrun { count: 1, .. })
    ));
    let mut b = unicast_bytes();
    b[COUNT_AT..DSTS_AT].copy_from_slice(&u16::MAX.to_be_bytes());
    assert!(matches!(
        Packet::decode_exact(&b, MAX),
        Err(WireError::DestinationsOverrun {
            count: 65535,
            needed: 4_194_240,
            ..
        })
    ));
}

#[test]
fn err_bad_node_id_length() {
    let mut b = unicast_bytes();
    b[ID_LEN_AT..ID_LEN_AT + 2].copy_from_slice(&33u16.to_be_bytes());
    assert_eq!(
        Packet::decode_exact(&b, MAX),
        Err(WireError::BadNodeIdLength {
            length: 33,
            offset: ID_LEN_AT
        })
    );
}

#[test]
fn err_group_not_utf8() {
    let mut b = unicast_bytes();
    b[GROUP_AT + 2] = 0xff;
    assert_eq!(
        Packet::decode_exact(&b, MAX),
        Err(WireError::GroupNotUtf8 {
            offset: GROUP_AT,
            bad_offset: GROUP_AT + 2
        })
    );
}

#[test]
fn handshake_round_trip_and_negotiation() {
    let h = Handshake::ours(30300, MAX, INCARNATION);
    assert_eq!(
        h.encode(),
        b"\x00\x03\x00\x04\x76\x5c\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x2a"
    );
    assert_eq!(Handshake::decode(&h.encode()), Ok(h));
    // The older form: no incarnation, 10 bytes, read as such.
    let old = Handshake {
        incarnation: None,
        ..h
    };
    assert_eq!(old.encode().len(), Handshake::LEGACY_LEN);
    assert_eq!(Handshake::decode(&old.encode()), Ok(old));
    let p = Packet::handshake(&h);
    assert_eq!(p.version, 0);
    assert_eq!(Packet::decode_exact(&p.to_bytes(), MAX).unwrap(), p);

    let range = |min, max| Handshake {
        min_version: min,
        max_version: max,
        ..h
    };
    assert_eq!(range(1, 3).negotiate(&range(2, 5)), Ok(3));
    assert_eq!(range(2, 5).negotiate(&range(1, 3)), Ok(3));
    assert_eq!(range(1, 1).negotiate(&range(0, 9)), Ok(1));
    assert_eq!(
        range(0, 0).negotiate(&range(0, 0)),
        Err(no_common(0, 0, 0, 0))
    );
    // This build speaks versions 3 and 4: a peer without source authentication is refused
    // rather than let the link fall back to unauthenticated relaying; a version 3 peer gets
    // a link without fragments.
    assert_eq!(h.negotiate(&range(1, 2)), Err(no_common(3, 4, 1, 2)));
    assert_eq!(h.negotiate(&range(1, 3)), Ok(3));
    assert_eq!(h.negotiate(&range(1, 9)), Ok(4));
}

const INCARNATION: std::num::NonZeroU64 = match std::num::NonZeroU64::new(42) {
    Some(i) => i,
    None => std::num::NonZeroU64::MIN,
};

fn no_common(a: u16, b: u16, c: u16, d: u16) -> WireError {
    WireError::NoCommonVersion(VersionRanges {
        ours_min: a,
        ours_max: b,
        theirs_min: c,
        theirs_max: d,
    })
}

#[test]
fn err_no_common_version() {
    let h = |min, max| Handshake {
        min_version: min,
        max_version: max,
        listen_port: 0,
        max_packet_size: MAX,
        incarnation: None,
    };
    let e = h(1, 1).negotiate(&h(2, 4)).unwrap_err();
    assert_eq!(e, no_common(1, 1, 2, 4));
    assert!(e.to_string().contains("1..=1") && e.to_string().contains("2..=4"));
}

#[test]
fn err_handshake_payload() {
    assert_eq!(
        Handshake::decode(&[0; 9]),
        Err(WireError::HandshakeSize {
            length: 9,
            expected: 18
        })
    );
    assert_eq!(
        Handshake::decode(b"\x00\x01\x00\x01\x00\x00\x00\x01\x00\x00\0\0\0\0\0\0\0\0"),
        Err(WireError::HandshakeIncarnationZero)
    );
    assert_eq!(
        Handshake::decode(b"\x00\x03\x00\x02\x00\x00\x00\x01\x00\x00"),
        Err(WireError::HandshakeVersionRange { min: 3, max: 2 })
    );
    assert_eq!(
        Handshake::decode(b"\x00\x01\x00\x01\x00\x00\x00\x00\x00\x0d"),
        Err(WireError::HandshakeMaxPacketTooSmall {
            max_packet_size: 13,
            header: 14
        })
    );
}

#[test]
fn goodbye_reason() {
    let p = Packet::goodbye(1, "shutting down");
    let q = Packet::decode_exact(&p.to_bytes(), MAX).unwrap();
    assert_eq!(decode_goodbye(&q.payload), Ok("shutting down"));
    assert_eq!(
        decode_goodbye(b"ab\xc3"),
        Err(WireError::GoodbyeNotUtf8 { bad_offset: 2 })
    );
}

#[test]
fn err_validate() {
    assert_eq!(unicast().validate(MAX), Ok(()));
    assert_eq!(Packet::heartbeat(1).validate(MAX), Ok(()));

    let mut p = unicast();
    p.options = None;
    let e = p.validate(MAX).unwrap_err();
    assert_eq!(
        e,
        WireError::OptionsMismatch {
            packet_type: 5,
            type_has_options: true
        }
    );
    assert_eq!(
        e.to_string(),
        "packet type 0x0005 carries options, but the packet has none"
    );
    let mut p = unicast();
    p.packet_type = PacketType::HEARTBEAT;
    assert_eq!(
        p.validate(MAX),
        Err(WireError::OptionsMismatch {
            packet_type: 1,
            type_has_options: false
        })
    );

    let mut p = unicast();
    p.options.as_mut().unwrap().group = "g".repeat(65536).into();
    assert_eq!(
        p.validate(MAX),
        Err(WireError::GroupTooLong { length: 65536 })
    );
    // Still framed consistently, cut to what the prefix can say.
    assert_eq!(p.to_bytes().len(), p.encoded_len());
    let mut q = Packet::decode_exact(&p.to_bytes(), MAX).unwrap();
    assert_eq!(q.options.as_ref().unwrap().group.len(), 65535);
    q.options.as_mut().unwrap().group = format!("{}g", q.options.as_ref().unwrap().group).into();
    assert_eq!(q, p);

    let mut p = unicast();
    p.options.as_mut().unwrap().dsts = vec![id(1); 65536];
    assert_eq!(
        p.validate(u32::MAX),
        Err(WireError::TooManyDestinations { count: 65536 })
    );
    assert_eq!(p.to_bytes().len(), p.encoded_len());
    let q = Packet::decode_exact(&p.to_bytes(), u32::MAX).unwrap();
    assert_eq!(q.options.unwrap().dsts.len(), 65535);

    assert_eq!(
        unicast().validate(100),
        Err(WireError::LengthTooLarge {
            length: 161,
            max: 100
        })
    );
}

#[test]
fn decoder_handles_split_and_coalesced_packets() {
    let a = unicast();
    let b = Packet::heartbeat(1);
    let mut stream = BytesMut::new();
    a.encode(&mut stream);
    b.encode(&mut stream);
    let mut d = Decoder::new(MAX);
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for byte in stream.iter() {
        buf.extend_from_slice(&[*byte]);
        while let Some(p) = d.decode(&mut buf).unwrap() {
            got.push(p);
        }
    }
    assert_eq!(got, vec![a.clone(), b.clone()]);
    assert!(buf.is_empty());

    let mut buf = stream.clone();
    assert_eq!(d.decode(&mut buf).unwrap(), Some(a));
    assert_eq!(d.decode(&mut buf).unwrap(), Some(b));
    assert_eq!(d.decode(&mut buf).unwrap(), None);
}

#[test]
fn decoder_payload_is_zero_copy() {
    let mut buf = BytesMut::from(unicast().to_bytes().as_ref());
    let start = buf.as_ptr() as usize;
    let end = start + buf.len();
    let p = Decoder::new(MAX).decode(&mut buf).unwrap().unwrap();
    let at = p.payload.as_ptr() as usize;
    assert!(at >= start && at + p.payload.len() == end);
}

#[test]
fn decoder_consumes_a_bad_frame_and_continues() {
    let mut bad = unicast_bytes();
    bad[GROUP_AT] = 0xff;
    let mut buf = BytesMut::from(&bad[..]);
    Packet::heartbeat(1).encode(&mut buf);
    let mut d = Decoder::new(MAX);
    assert!(matches!(
        d.decode(&mut buf),
        Err(WireError::GroupNotUtf8 { .. })
    ));
    assert_eq!(d.decode(&mut buf).unwrap(), Some(Packet::heartbeat(1)));
}

#[test]
fn inspect_view_of_a_handshake_and_an_error_response() {
    let v = inspect_json(&Packet::handshake(&Handshake::ours(
        30300,
        MAX,
        INCARNATION,
    )));
    assert_eq!(v["packet_type_name"], "Handshake");
    assert_eq!(v["options"], serde_json::Value::Null);
    assert_eq!(v["handshake"]["listen_port"], 30300);
    assert_eq!(v["handshake"]["max_packet_size"], MAX);
    assert_eq!(v["handshake"]["incarnation"], 42);

    let mut p = unicast();
    p.ext = Ext::RESPONSE | Ext::ERROR;
    p.payload = Bytes::from_static(b"no handler");
    let v = inspect_json(&p);
    assert_eq!(v["flags"], serde_json::json!(["RESPONSE", "ERROR"]));
    assert_eq!(v["error_text"], "no handler");
    assert_eq!(v["options"]["src_node_id"], "11".repeat(64));
    assert_eq!(v["options"]["dst_node_ids"][0], "22".repeat(64));
    assert_eq!(v["length"], p.encoded_len());
}

// --- Property tests -----------------------------------------------------------------------

fn arb_node_id() -> impl Strategy<Value = NodeId> {
    prop::collection::vec(any::<u8>(), 64).prop_map(|v| NodeId::from_slice(&v).unwrap())
}

fn arb_type() -> impl Strategy<Value = PacketType> {
    prop_oneof![
        3 => prop::sample::select(vec![1u16, 2, 3, 4, 5, 6, 7, 9, 0x0a, 0x0b, 0x0c, 0x0e, 0x0f]),
        1 => any::<u16>(),
    ]
    .prop_map(PacketType)
}

fn arb_options() -> impl Strategy<Value = Options> {
    (
        ".{0,12}",
        arb_node_id(),
        prop::collection::vec(arb_node_id(), 0..4),
        any::<u16>(),
    )
        .prop_map(|(group, src, dsts, module)| Options {
            group: group.into(),
            src,
            dsts,
            module,
            tags: Bytes::new(),
        })
}

fn arb_packet() -> impl Strategy<Value = Packet> {
    (
        arb_type(),
        any::<u16>(),
        any::<u32>(),
        any::<u16>(),
        arb_options(),
        prop::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(packet_type, version, seq, ext, options, payload)| {
            let mut ext = Ext(ext);
            // What a packet in direct form can say: the link's peer as source, no list, no
            // tags.
            let options = if ext.is_direct() {
                ext = Ext(ext.0 & !Ext::AUTH.0);
                Options {
                    src: LINK,
                    dsts: Vec::new(),
                    ..options
                }
            } else if ext.is_auth() {
                let tags = Bytes::from(vec![0xab; TAG_LEN * options.dsts.len()]);
                Options { tags, ..options }
            } else {
                options
            };
            Packet {
                version,
                packet_type,
                seq,
                ext,
                options: packet_type.has_options().then_some(options),
                payload: Bytes::from(payload),
            }
        })
}

/// `unicast()` in direct form, as node `0x11` sends it on its link to `0x22`.
fn direct_unicast() -> Packet {
    let mut p = unicast();
    p.version = DIRECT_FORM_VERSION;
    p.ext |= Ext::DIRECT;
    if let Some(o) = p.options.as_mut() {
        o.dsts.clear();
    }
    p
}

#[test]
fn direct_form_leaves_out_both_node_ids_and_reads_the_source_from_the_link() {
    let p = direct_unicast();
    let b = p.to_bytes();
    assert_eq!(b.len(), 14 + 2 + 6 + 2 + 5);
    assert_eq!(b.len(), p.encoded_len());
    assert_eq!(unicast().encoded_len() - b.len(), 2 + 64 + 2 + 64);
    assert_eq!(Packet::decode_exact(&b, MAX), Err(WireError::DirectOffLink));
    assert_eq!(Packet::decode_exact_from(&b, MAX, &id(0x11)).unwrap(), p);
    let mut buf = BytesMut::from(b.as_ref());
    assert_eq!(
        Decoder::new(MAX).decode(&mut buf),
        Err(WireError::DirectOffLink)
    );
    let mut buf = BytesMut::from(b.as_ref());
    let got = Decoder::on_link(MAX, id(0x11))
        .decode(&mut buf)
        .unwrap()
        .unwrap();
    assert_eq!(got.options.unwrap().src, id(0x11));
}

#[test]
fn direct_form_from_borrowed_parts_matches_the_packet_encoding() {
    let p = direct_unicast();
    let f = DataFrame {
        version: p.version,
        packet_type: p.packet_type,
        seq: p.seq,
        ext: p.ext,
        group: "group0",
        src: &id(0x11),
        dsts: &[],
        module: 1000,
        tags: &[],
        prefix: &[],
        payload: b"hello",
    };
    assert_eq!(f.validate(MAX), Ok(()));
    assert_eq!(f.plain_len(), p.encoded_len());
    assert_eq!(f.encode(0), p.to_bytes());
}

#[test]
fn direct_form_cannot_list_destinations() {
    let mut p = direct_unicast();
    p.options.as_mut().unwrap().dsts.push(id(0x22));
    assert_eq!(
        p.validate(MAX),
        Err(WireError::DirectWithDestinations { count: 1 })
    );
    let dsts = [id(0x22)];
    let f = DataFrame {
        version: 2,
        packet_type: PacketType::UNICAST,
        seq: 1,
        ext: Ext::DIRECT,
        group: "",
        src: &dsts[0],
        dsts: &dsts,
        module: 1,
        tags: &[],
        prefix: &[],
        payload: &[],
    };
    assert_eq!(
        f.validate(MAX),
        Err(WireError::DirectWithDestinations { count: 1 })
    );
}

#[test]
fn truncated_direct_options_are_malformed() {
    let b = direct_unicast().to_bytes().to_vec();
    // Cut inside the ModuleID: 14 header + 8 group bytes + 1.
    let e = Packet::decode_exact_from(&cut(b, 23), MAX, &id(0x11)).unwrap_err();
    assert!(
        matches!(
            e,
            WireError::OptionsOverrun {
                field: "ModuleID",
                ..
            }
        ),
        "{e}"
    );
}

/// The peer at the other end of the link the property tests' packets arrive on.
const LINK: NodeId = NodeId::from_bytes([0x5a; 64]);

/// Feeds `stream` to a decoder in pieces ending at `cuts` (any order, any values), collecting
/// packets until the first error.
fn decode_in_chunks(
    stream: &[u8],
    cuts: &[usize],
    max: u32,
) -> (Vec<Packet>, Option<WireError>, usize) {
    let mut ends: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    ends.push(stream.len());
    ends.sort_unstable();
    let mut d = Decoder::on_link(max, LINK);
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    let mut from = 0;
    for end in ends {
        buf.extend_from_slice(&stream[from..end]);
        from = end;
        loop {
            match d.decode(&mut buf) {
                Ok(Some(p)) => got.push(p),
                Ok(None) => break,
                Err(e) => return (got, Some(e), buf.len()),
            }
        }
    }
    (got, None, buf.len())
}

proptest! {
    #[test]
    fn prop_round_trip(p in arb_packet()) {
        prop_assert_eq!(p.validate(MAX), Ok(()));
        let b = p.to_bytes();
        prop_assert_eq!(b.len(), p.encoded_len());
        prop_assert_eq!(&Packet::decode_exact_from(&b, MAX, &LINK).unwrap(), &p);
        let mut buf = BytesMut::from(b.as_ref());
        prop_assert_eq!(Decoder::on_link(MAX, LINK).decode(&mut buf).unwrap(), Some(p));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn prop_stream_in_arbitrary_chunks(
        packets in prop::collection::vec(arb_packet(), 1..6),
        cuts in prop::collection::vec(any::<usize>(), 0..20),
    ) {
        let mut stream = BytesMut::new();
        for p in &packets {
            p.encode(&mut stream);
        }
        let (got, err, left) = decode_in_chunks(&stream, &cuts, MAX);
        prop_assert_eq!(err, None);
        prop_assert_eq!(left, 0);
        prop_assert_eq!(got, packets);
    }

    #[test]
    fn prop_arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..400),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
        max in prop_oneof![Just(MAX), 0u32..500],
    ) {
        let _ = Packet::decode_exact(&bytes, max);
        let _ = Packet::decode_exact_from(&bytes, max, &LINK);
        let (got, _, _) = decode_in_chunks(&bytes, &cuts, max);
        for p in got {
            prop_assert!(p.encoded_len() <= max as usize);
            let _ = inspect_json(&p);
        }
    }

    #[test]
    fn prop_mutated_packets_never_panic(
        p in arb_packet(),
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cuts in prop::collection::vec(any::<usize>(), 0..4),
    ) {
        let mut b = p.to_bytes().to_vec();
        for (at, v) in flips {
            let n = b.len();
            b[at % n] = v;
        }
        if let Ok(q) = Packet::decode_exact_from(&b, MAX, &LINK) {
            // Whatever decodes re-encodes to the same bytes.
            let again = q.to_bytes();
            prop_assert_eq!(again.as_ref(), &b[..]);
        }
        let _ = decode_in_chunks(&b, &cuts, MAX);
    }

    #[test]
    fn prop_set_ttl_in_place(p in arb_packet(), ttl in any::<u8>()) {
        let mut b = p.to_bytes().to_vec();
        set_ttl_in_place(&mut b, ttl);
        let q = Packet::decode_exact_from(&b, MAX, &LINK).unwrap();
        prop_assert_eq!(q.ext, p.ext.with_ttl(ttl));
        prop_assert_eq!(Packet { ext: p.ext, ..q }, p);
    }

    #[test]
    fn prop_handshake_round_trip(min in 0u16..10, extra in 0u16..10, port in any::<u16>(), max in 14u32.., inc in any::<u64>()) {
        let incarnation = std::num::NonZeroU64::new(inc);
        let h = Handshake { min_version: min, max_version: min + extra, listen_port: port, max_packet_size: max, incarnation };
        prop_assert_eq!(Handshake::decode(&h.encode()), Ok(h));
    }
}

/// `unicast()` with AUTH and one tag, as a source sends it when it may be relayed.
fn tagged_unicast() -> Packet {
    let mut p = unicast();
    p.version = 3;
    p.ext |= Ext::AUTH;
    if let Some(o) = p.options.as_mut() {
        o.tags = Bytes::from_static(&[0x7e; TAG_LEN]);
    }
    p
}

#[test]
fn tags_follow_the_module_id_one_per_destination() {
    let p = tagged_unicast();
    let b = p.to_bytes();
    assert_eq!(b.len(), unicast().encoded_len() + TAG_LEN);
    let module_end = DSTS_AT + 64 + 2;
    assert_eq!(&b[module_end..module_end + TAG_LEN], &[0x7e; TAG_LEN]);
    assert_eq!(&b[module_end + TAG_LEN..], b"hello");
    let back = Packet::decode_exact(&b, MAX).unwrap();
    assert_eq!(back, p);
    let opts = back.options.unwrap();
    assert_eq!(opts.tag(0), Some(&[0x7e; TAG_LEN][..]));
    assert_eq!(opts.tag(1), None);
    assert_eq!(back.payload.as_ref(), b"hello");
    assert_eq!(flag_names(back.ext), ["AUTH"]);
    let view = inspect_view(&p);
    assert_eq!(view.options.unwrap().tags, ["7e".repeat(TAG_LEN)]);
}

#[test]
fn tags_must_match_the_destinations_and_never_come_in_direct_form() {
    let mut p = tagged_unicast();
    p.options.as_mut().unwrap().tags = Bytes::from_static(&[1; 8]);
    assert_eq!(
        p.validate(MAX),
        Err(WireError::TagsMismatch {
            tags: 8,
            expected: TAG_LEN
        })
    );
    let mut untagged = unicast();
    untagged.options.as_mut().unwrap().tags = Bytes::from_static(&[1; TAG_LEN]);
    assert_eq!(
        untagged.validate(MAX),
        Err(WireError::TagsMismatch {
            tags: TAG_LEN,
            expected: 0
        })
    );
    // Tags cut short by the Length are malformed.
    let b = tagged_unicast().to_bytes().to_vec();
    let short = b.len() - 5 - 1;
    let mut cut_tags = b[..short].to_vec();
    cut_tags[..4].copy_from_slice(&(short as u32).to_be_bytes());
    assert!(matches!(
        Packet::decode_exact(&cut_tags, MAX),
        Err(WireError::OptionsOverrun {
            field: "destination tags",
            ..
        })
    ));
    // AUTH in direct form is malformed on receipt and refused on sending.
    let mut direct = direct_unicast();
    direct.ext |= Ext::AUTH;
    assert_eq!(direct.validate(MAX), Err(WireError::AuthInDirectForm));
    let mut raw = direct_unicast().to_bytes().to_vec();
    raw[13] |= Ext::AUTH.0 as u8;
    assert_eq!(
        Packet::decode_exact_from(&raw, MAX, &id(0x11)),
        Err(WireError::AuthInDirectForm)
    );
}

#[test]
fn a_tagged_frame_from_borrowed_parts_is_never_compressed_by_the_encoder() {
    let dsts = [id(0x22)];
    let payload = vec![b'z'; 4096];
    let f = DataFrame {
        version: 3,
        packet_type: PacketType::UNICAST,
        seq: 1,
        ext: Ext::AUTH.with_ttl(DEFAULT_TTL),
        group: "group0",
        src: &dsts[0],
        dsts: &dsts,
        module: 1,
        tags: &[9; TAG_LEN],
        prefix: &[],
        payload: &payload,
    };
    assert_eq!(f.validate(MAX), Ok(()));
    let b = f.encode(1024);
    assert_eq!(b.len(), f.plain_len());
    let p = Packet::decode_exact(&b, MAX).unwrap();
    assert!(!p.ext.is_compressed());
    assert_eq!(p.options.unwrap().tags.as_ref(), &[9; TAG_LEN]);
    assert_eq!(
        DataFrame { tags: &[], ..f }.validate(MAX),
        Err(WireError::TagsMismatch {
            tags: 0,
            expected: TAG_LEN
        })
    );
}
