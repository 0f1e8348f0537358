//! Criterion micro-benchmarks of the codec hot paths: what every message pays on its way
//! out (`Packet::encode`, `Packet::to_bytes`) and in (`Decoder::decode`), at the sizes the
//! side-by-side benchmark uses.
//!
//! ```text
//! cargo bench --bench codec
//! cargo bench --bench codec -- decode      # one group
//! cargo bench --bench codec -- auth        # source authentication: digest, tag, verify
//! ```
//!
//! The routing hot paths (next hop, route and status updates, dedup, fan-out) have their own
//! target: `benches/routing.rs`, `cargo bench --bench routing`.

use bytes::{Bytes, BytesMut};
use chainmesh::auth::{Digest, Keyring};
use chainmesh::identity::{generate_node_files, Curve};
use chainmesh::wire::{set_ttl_in_place, Decoder, Ext, Handshake, Options, Packet, PacketType};
use chainmesh_testkit::id;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};

/// Payload sizes: the unicast and request sizes of the side-by-side benchmark, and bulk.
const SIZES: [(usize, &str); 3] = [(256, "256B"), (4096, "4KiB"), (1 << 20, "1MiB")];

/// A unicast packet as `NodeHandle::send` builds it: group0, one destination, a module.
fn unicast(payload: usize) -> Packet {
    Packet {
        version: 1,
        packet_type: PacketType::UNICAST,
        seq: 42,
        ext: Ext(0).with_ttl(10),
        options: Some(Options {
            group: "group0".into(),
            src: id(0x11),
            dsts: vec![id(0x22)],
            module: 7,
            tags: Bytes::new(),
        }),
        payload: Bytes::from(vec![0x5a; payload]),
    }
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    for (size, name) in SIZES {
        let p = unicast(size);
        g.throughput(Throughput::Elements(1));
        // What the node does per send: a fresh buffer holding one packet.
        g.bench_function(format!("to_bytes/{name}"), |b| {
            b.iter(|| black_box(&p).to_bytes())
        });
        // Into a reused buffer, as a batching writer could.
        let mut buf = BytesMut::with_capacity(p.encoded_len());
        g.bench_function(format!("into_reused_buffer/{name}"), |b| {
            b.iter(|| {
                buf.clear();
                black_box(&p).encode(&mut buf);
            })
        });
    }
    g.finish();
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for (size, name) in SIZES {
        // Enough packets back to back for one read's worth of work, like a session's buffer.
        let count = (256 * 1024 / (size + 200)).max(1);
        let one = unicast(size).to_bytes();
        let mut stream = BytesMut::new();
        for _ in 0..count {
            stream.extend_from_slice(&one);
        }
        let stream = stream.freeze();
        g.throughput(Throughput::Elements(count as u64));
        g.bench_function(format!("stream/{name}"), |b| {
            b.iter_batched(
                || BytesMut::from(&stream[..]),
                |mut buf| {
                    let mut d = Decoder::new(32 << 20);
                    while let Ok(Some(p)) = d.decode(&mut buf) {
                        black_box(p);
                    }
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

fn link_control(c: &mut Criterion) {
    let mut g = c.benchmark_group("link_control");
    let hs = Handshake::ours(30300, 32 << 20, std::num::NonZeroU64::MIN);
    let encoded = hs.encode();
    g.bench_function("handshake_encode", |b| b.iter(|| black_box(&hs).encode()));
    g.bench_function("handshake_decode", |b| {
        b.iter(|| Handshake::decode(black_box(&encoded)))
    });
    let mut frame = unicast(256).to_bytes().to_vec();
    g.bench_function("set_ttl_in_place", |b| {
        b.iter(|| set_ttl_in_place(black_box(&mut frame), 9))
    });
    g.finish();
}

/// Source authentication (protocol version 3): what a relayed packet costs its source and
/// its destination beyond the codec. The digest is once per packet (it reads the payload);
/// each destination adds one short MAC at the source and one check at the destination; a
/// pairwise key is agreed once per peer (ECDH) and then cached.
fn source_auth(c: &mut Criterion) {
    let mut g = c.benchmark_group("auth");
    let dir = tempfile::tempdir().expect("temp dir");
    let nodes = generate_node_files(dir.path(), 2, Curve::Secp256k1).expect("node files");
    let a = nodes[0].load_identity().expect("identity");
    let b = nodes[1].load_identity().expect("identity");
    let keys_a = Keyring::new(&a, 16).expect("keyring");
    let keys_b = Keyring::new(&b, 16).expect("keyring");
    for (size, name) in SIZES {
        let mut p = unicast(size);
        p.ext |= Ext::AUTH;
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("digest/{name}"), |bench| {
            bench.iter(|| Digest::of_packet(black_box(&p)))
        });
    }
    let p = unicast(256);
    let digest = Digest::of_packet(&p).expect("options");
    let tag = keys_a.tag(&b.node_id, &digest).expect("tag");
    g.throughput(Throughput::Elements(1));
    g.bench_function("tag", |bench| {
        bench.iter(|| keys_a.tag(black_box(&b.node_id), black_box(&digest)))
    });
    g.bench_function("verify", |bench| {
        bench.iter(|| keys_b.verify(black_box(&a.node_id), black_box(&digest), &tag))
    });
    g.bench_function("key-agreement", |bench| {
        bench.iter_batched(
            || Keyring::new(&a, 16).expect("keyring"),
            |fresh| fresh.key_for(black_box(&b.node_id)),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, encode, decode, link_control, source_auth);
criterion_main!(benches);
