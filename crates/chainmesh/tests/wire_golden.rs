//! The examples in `docs/protocol.md` are the golden vectors of the wire format: each ```hex
//! block must decode to the fields of the ```json block after it (as `chainmesh inspect`
//! shows them) and re-encode to the same bytes.

use chainmesh::auth::{Digest, PairKey};
use chainmesh::config::DEFAULT_MAX_PACKET;
use chainmesh::identity::NodeId;
use chainmesh::wire::{inspect_json, Packet, WireError};
use serde_json::Value;

const SPEC: &str = include_str!("../../../docs/protocol.md");

/// Fields every example must state, so that an example cannot silently check nothing.
const REQUIRED: [&str; 7] = [
    "length",
    "version",
    "packet_type",
    "seq",
    "ext",
    "options",
    "payload_hex",
];

struct Example {
    /// 1-based line of the ```hex fence, for messages.
    line: usize,
    hex: String,
    json: String,
}

/// Every ```hex block with the ```json block that follows it.
fn examples(doc: &str) -> Vec<Example> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() != "```hex" {
            i += 1;
            continue;
        }
        let line = i + 1;
        let (hex, after_hex) = block(&lines, i + 1)
            .unwrap_or_else(|| panic!("protocol.md:{line}: ```hex block is not closed"));
        let json_at = (after_hex..lines.len())
            .find(|&j| !lines[j].trim().is_empty())
            .filter(|&j| lines[j].trim() == "```json")
            .unwrap_or_else(|| {
                panic!("protocol.md:{line}: ```hex block is not followed by a ```json block")
            });
        let (json, next) = block(&lines, json_at + 1)
            .unwrap_or_else(|| panic!("protocol.md:{}: ```json block is not closed", json_at + 1));
        out.push(Example { line, hex, json });
        i = next;
    }
    out
}

/// The lines from `start` up to the closing fence, and the index after that fence.
fn block(lines: &[&str], start: usize) -> Option<(String, usize)> {
    let end = (start..lines.len()).find(|&j| lines[j].trim() == "```")?;
    Some((lines[start..end].join("\n"), end + 1))
}

#[test]
fn protocol_examples_decode_to_their_json_and_re_encode_identically() {
    let examples = examples(SPEC);
    assert!(
        examples.len() >= 4,
        "protocol.md has {} hex examples, want at least 4",
        examples.len()
    );
    for ex in &examples {
        let at = format!("protocol.md:{}", ex.line);
        let digits: String = ex.hex.split_whitespace().collect();
        let digits = digits.strip_prefix("0x").unwrap_or(&digits);
        let bytes = hex::decode(digits).unwrap_or_else(|e| panic!("{at}: bad hex: {e}"));
        let want: Value =
            serde_json::from_str(&ex.json).unwrap_or_else(|e| panic!("{at}: bad json: {e}"));
        let want = want
            .as_object()
            .unwrap_or_else(|| panic!("{at}: the json is not an object"));
        let packet = match Packet::decode_exact(&bytes, DEFAULT_MAX_PACKET) {
            // Direct form: the example's source is the peer of the link it came in on.
            Err(WireError::DirectOffLink) => {
                let peer: NodeId = want["options"]["src_node_id"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("{at}: direct form needs options.src_node_id"));
                Packet::decode_exact_from(&bytes, DEFAULT_MAX_PACKET, &peer)
            }
            other => other,
        }
        .unwrap_or_else(|e| panic!("{at}: does not decode: {e}"));
        for key in REQUIRED {
            assert!(want.contains_key(key), "{at}: json lacks `{key}`");
        }
        let got = inspect_json(&packet);
        for (key, value) in want {
            assert_eq!(
                got.get(key),
                Some(value),
                "{at}: field `{key}` differs\n got: {got:#}"
            );
        }

        assert_eq!(
            hex::encode(packet.to_bytes()),
            hex::encode(&bytes),
            "{at}: re-encoding gives other bytes"
        );
        assert_eq!(packet.validate(DEFAULT_MAX_PACKET), Ok(()), "{at}");
    }
}

/// The pairwise secret the examples of `Source authentication` stand in for ECDH with.
const EXAMPLE_SECRET: [u8; 32] = [0x5a; 32];

#[test]
fn every_tag_in_the_examples_is_the_one_its_source_computes() {
    let mut tags = 0;
    for ex in examples(SPEC) {
        let digits: String = ex.hex.split_whitespace().collect();
        let Ok(bytes) = hex::decode(&digits) else {
            continue;
        };
        let Ok(packet) = Packet::decode_exact(&bytes, DEFAULT_MAX_PACKET) else {
            continue;
        };
        let Some(opts) = packet.options.as_ref().filter(|_| packet.ext.is_auth()) else {
            continue;
        };
        let digest = Digest::of_packet(&packet).unwrap();
        for (i, dst) in opts.dsts.iter().enumerate() {
            let key = PairKey::derive(&EXAMPLE_SECRET, &opts.src, dst);
            let tag = opts.tag(i).unwrap();
            assert_eq!(
                hex::encode(tag),
                hex::encode(key.tag(&digest)),
                "protocol.md:{}: tag {i}",
                ex.line
            );
            tags += 1;
        }
        // The digest each example states is the one its fields give.
        let stated = hex::encode(digest.0);
        let text = SPEC.replace([' ', '\n'], "");
        assert!(
            text.contains(&stated),
            "protocol.md:{}: digest {stated} not stated",
            ex.line
        );
    }
    assert!(tags >= 4, "the examples show {tags} tags");
}

#[test]
fn amop_examples_carry_a_valid_forward_of_each_kind_that_re_encodes_identically() {
    use chainmesh::wire::{AmopForward, AmopForwardKind, PacketType, DEFAULT_MAX_CHANNEL_FRAME};
    let mut kinds = Vec::new();
    for ex in examples(SPEC) {
        let digits: String = ex.hex.split_whitespace().collect();
        let Ok(bytes) = hex::decode(&digits) else {
            continue;
        };
        let Ok(packet) = Packet::decode_exact(&bytes, DEFAULT_MAX_PACKET) else {
            continue;
        };
        if packet.packet_type != PacketType::AMOP {
            continue;
        }
        let at = format!("protocol.md:{}", ex.line);
        let (forward, pack) = AmopForward::decode(&packet.payload, DEFAULT_MAX_CHANNEL_FRAME)
            .unwrap_or_else(|e| panic!("{at}: {e}"));
        assert_eq!(forward.encode(), packet.payload, "{at}");
        assert_eq!(&pack.seq, b"d13f1ca0e8a611f1970302fc00000001", "{at}");
        kinds.push(forward.kind);
    }
    assert_eq!(
        kinds,
        [
            AmopForwardKind::UnicastRequest,
            AmopForwardKind::UnicastAnswer,
            AmopForwardKind::Multicast
        ]
    );
}

#[test]
fn extractor_pairs_blocks() {
    let doc = "x\n```hex\n00 01\n0x\n```\n\n```json\n{\"a\": 1}\n```\n```text\n```hex\n```\n";
    let found = examples(&doc[..doc.find("```text").unwrap()]);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].hex, "00 01\n0x");
    assert_eq!(found[0].json, "{\"a\": 1}");
    assert_eq!(found[0].line, 2);
}

#[test]
fn routing_examples_carry_a_real_signature_and_the_digest_of_what_they_offer() {
    use chainmesh::routing::signing::verify_list;
    use chainmesh::wire::{decode_lists, PacketType, RouterSummary};
    let routing: Vec<Packet> = examples(SPEC)
        .iter()
        .map(|ex| {
            let digits: String = ex.hex.split_whitespace().collect();
            Packet::decode_exact(&hex::decode(digits).unwrap(), DEFAULT_MAX_PACKET)
        })
        .filter_map(Result::ok)
        .filter(|p| {
            p.packet_type == PacketType::ROUTER_RESPONSE || p.packet_type == PacketType::ROUTER_SEQ
        })
        .collect();
    let response = routing
        .iter()
        .find(|p| p.packet_type == PacketType::ROUTER_RESPONSE)
        .expect("a RouterResponse example");
    let lists = decode_lists(&response.payload).unwrap();
    assert_eq!(lists.len(), 1);
    let list = &lists[0];
    assert!(
        verify_list(openssl::nid::Nid::SECP256K1, list),
        "the example's signature"
    );
    let mut bent = list.clone();
    bent.version.seq += 1;
    assert!(!verify_list(openssl::nid::Nid::SECP256K1, &bent));
    // The RouterSeq example summarizes that list and two others, in origin order.
    let seq = routing
        .iter()
        .find(|p| p.packet_type == PacketType::ROUTER_SEQ)
        .expect("a RouterSeq example");
    let summary = RouterSummary::decode(&seq.payload).unwrap();
    let mut held: Vec<(Vec<u8>, u64, u32)> = vec![
        (
            list.origin.as_bytes().to_vec(),
            list.version.epoch,
            list.version.seq,
        ),
        (vec![0x22; 64], 0x19a_d9c3_e000, 5),
        (vec![0x33; 64], 0x19a_d9c3_e100, 1),
    ];
    held.sort();
    let mut h = openssl::sha::Sha256::new();
    for (origin, epoch, seq) in &held {
        h.update(origin);
        h.update(&epoch.to_be_bytes());
        h.update(&seq.to_be_bytes());
    }
    assert_eq!(summary.count, 3);
    assert_eq!(summary.digest, h.finish());
}

/// The hex block of the example under `heading`, as bytes.
fn example_bytes(heading: &str) -> Vec<u8> {
    let at = SPEC
        .find(heading)
        .unwrap_or_else(|| panic!("protocol.md has no {heading:?}"));
    let ex = examples(&SPEC[at..])
        .into_iter()
        .next()
        .expect("an example");
    let digits: String = ex.hex.split_whitespace().collect();
    hex::decode(digits).expect("hex")
}

#[test]
fn the_fragment_example_is_the_header_a_version_4_link_writes_before_its_piece() {
    let bytes = example_bytes("### Fragment\n");
    let (head, piece) = bytes.split_at(chainmesh::wire::HEADER_LEN);
    assert_eq!(
        chainmesh::wire::fragment_header(4, 0, piece.len()).unwrap(),
        head,
        "Length 14 + piece, Version 4, type 0x10, Seq = offset, Ext 0"
    );
    // The piece starts the inner packet: its own Length says how long the run is.
    assert_eq!(&piece[..4], &100_000u32.to_be_bytes());
    let next = chainmesh::wire::fragment_header(4, 16, 100).unwrap();
    assert_eq!(
        &next[8..12],
        &[0, 0, 0, 0x10],
        "the next piece's Seq is its offset"
    );
}
