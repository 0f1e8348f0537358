use super::*;
use crate::identity::{generate_node_files, Curve};
use crate::test_support::id;
use crate::wire::{relay_frame, DataFrame, DEFAULT_MAX_PACKET, DEFAULT_TTL};

const SECRET: [u8; SHARED_SECRET_LEN] = [0x5a; SHARED_SECRET_LEN];

fn covered(src: &NodeId) -> Covered<'_> {
    Covered {
        packet_type: PacketType::UNICAST,
        seq: 42,
        ext: Ext::AUTH.with_ttl(DEFAULT_TTL),
        group: b"group0",
        src,
        module: 1000,
    }
}

#[test]
fn a_tag_verifies_under_the_pair_key_only() {
    let (s, d, other) = (id(0x11), id(0x22), id(0x33));
    let digest = Digest::of(&covered(&s), &[b"hello"]);
    let key = PairKey::derive(&SECRET, &s, &d);
    let tag = key.tag(&digest);
    assert!(key.verify(&digest, &tag));
    // Either end derives the same key.
    assert!(PairKey::derive(&SECRET, &d, &s).verify(&digest, &tag));
    // Another pair, or another secret, does not.
    assert!(!PairKey::derive(&SECRET, &s, &other).verify(&digest, &tag));
    assert!(!PairKey::derive(&[0x5b; SHARED_SECRET_LEN], &s, &d).verify(&digest, &tag));
    // Cut or bent tags fail.
    assert!(!key.verify(&digest, &tag[..8]));
    assert!(!key.verify(&digest, &[]));
    let mut bent = tag;
    bent[15] ^= 1;
    assert!(!key.verify(&digest, &bent));
}

#[test]
fn every_covered_field_changes_the_digest_but_the_ttl_does_not() {
    let (s, other) = (id(0x11), id(0x44));
    let base = covered(&s);
    let d = Digest::of(&base, &[b"hello"]);
    let tampered: Vec<(&str, Covered<'_>, &[u8])> = vec![
        (
            "type",
            Covered {
                packet_type: PacketType::BROADCAST,
                ..base
            },
            b"hello",
        ),
        ("seq", Covered { seq: 43, ..base }, b"hello"),
        (
            "flags",
            Covered {
                ext: base.ext | Ext::REQUEST,
                ..base
            },
            b"hello",
        ),
        (
            "group",
            Covered {
                group: b"group1",
                ..base
            },
            b"hello",
        ),
        (
            "source",
            Covered {
                src: &other,
                ..base
            },
            b"hello",
        ),
        (
            "module",
            Covered {
                module: 1001,
                ..base
            },
            b"hello",
        ),
        ("payload", base, b"hellp"),
    ];
    for (what, c, payload) in tampered {
        assert_ne!(Digest::of(&c, &[payload]), d, "{what}");
    }
    let relayed = Covered {
        ext: base.ext.with_ttl(3),
        ..base
    };
    assert_eq!(Digest::of(&relayed, &[b"hello"]), d);
    // The payload may come in parts (a multicast's topic, then its data).
    assert_eq!(Digest::of(&base, &[b"he", b"llo"]), d);
}

#[test]
fn a_relayed_copy_keeps_its_digest_and_a_bent_byte_loses_it() {
    let (s, d) = (id(0x11), id(0x22));
    let key = PairKey::derive(&SECRET, &s, &d);
    let dsts = [d];
    let f = DataFrame {
        version: 3,
        packet_type: PacketType::UNICAST,
        seq: 42,
        ext: Ext::AUTH.with_ttl(DEFAULT_TTL),
        group: "group0",
        src: &s,
        dsts: &dsts,
        module: 1000,
        tags: &[0; TAG_LEN],
        prefix: &[],
        payload: b"hello",
    };
    let digest = Digest::of(&covered(&s), &[b"hello"]);
    let tag = key.tag(&digest);
    let bytes = DataFrame { tags: &tag, ..f }.encode(0);
    let decode = |b: &[u8]| Packet::decode_exact(b, DEFAULT_MAX_PACKET).unwrap();
    let check = |p: &Packet| {
        let Some(tag) = p.options.as_ref().and_then(|o| o.tag(0)) else {
            return false;
        };
        key.verify(&Digest::of_packet(p).unwrap(), tag)
    };
    assert!(check(&decode(&bytes)));
    // A relay patches TTL and Version: still the source's packet.
    assert!(check(&decode(&relay_frame(bytes.clone(), 4, 7))));
    // Any other byte after the Length, bent, fails (or no longer decodes). The destination
    // (offsets 90..154) is bound by the key instead: another node checks with another key.
    for at in 6..bytes.len() {
        if at == 12 || (90..154).contains(&at) {
            continue;
        }
        let mut bent = bytes.to_vec();
        bent[at] ^= 0x01;
        if let Ok(p) = Packet::decode_exact(&bent, DEFAULT_MAX_PACKET) {
            assert!(!check(&p), "byte {at}");
        }
    }
}

#[test]
fn both_ends_agree_on_their_key_and_the_cache_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = generate_node_files(dir.path(), 4, Curve::Secp256k1).unwrap();
    let ids: Vec<Identity> = nodes.iter().map(|n| n.load_identity().unwrap()).collect();
    let a = Keyring::new(&ids[0], 2).unwrap();
    let b = Keyring::new(&ids[1], 2).unwrap();
    let digest = Digest::of(&covered(&ids[0].node_id), &[b"x"]);
    let tag = a.tag(&ids[1].node_id, &digest).unwrap();
    assert!(b.verify(&ids[0].node_id, &digest, &tag));
    // Claimed by another source, or checked by a third node, it proves nothing.
    assert!(!b.verify(&ids[2].node_id, &digest, &tag));
    let c = Keyring::new(&ids[2], 2).unwrap();
    assert!(!c.verify(&ids[0].node_id, &digest, &tag));
    // A node ID that is no key fails without an error escaping.
    assert!(!b.verify(&id(7), &digest, &tag));
    assert!(a.tag(&id(7), &digest).is_err());
    for other in &ids[1..] {
        a.key_for(&other.node_id).unwrap();
    }
    assert_eq!(a.cached(), 2);
    // An evicted key is derived again, the same.
    assert_eq!(a.tag(&ids[1].node_id, &digest).unwrap(), tag);
}
