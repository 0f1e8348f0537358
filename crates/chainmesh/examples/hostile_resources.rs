//! What a member holding a valid certificate costs an honest node with the default
//! `[limits]`: a compression bomb flood and a StatusRequest flood against node 0, while
//! node 1 pings node 0. Prints the attacker's bytes, what node 0 decompressed or answered,
//! the process's peak RSS growth (all nodes run in this process), and the honest ping p50
//! before and during each attack.
//!
//! `cargo run --release --example hostile_resources`

use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;
use chainmesh::wire::{Ext, Options, Packet, PacketType, DEFAULT_TTL};
use chainmesh::{NodeHandle, NodeId};
use chainmesh_testkit::raw::{RawPeer, Received};
use chainmesh_testkit::{serve_echo, LocalNet, LocalNetOptions};

const MODULE: u16 = 2000;
const ATTACK: Duration = Duration::from_secs(3);

/// The process's peak resident set, in KiB, from `/proc/self/status` (0 where there is none).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Median round trip of pings from `from` to `to` for `time`.
async fn ping_p50(from: &NodeHandle, to: NodeId, time: Duration) -> (Duration, usize) {
    let end = Instant::now() + time;
    let mut rtts = Vec::new();
    let mut failed = 0;
    while Instant::now() < end {
        match from.ping(to, Bytes::new(), Duration::from_secs(2)).await {
            Ok(r) => rtts.push(r.rtt),
            Err(_) => failed += 1,
        }
    }
    rtts.sort_unstable();
    let p50 = rtts.get(rtts.len() / 2).copied().unwrap_or_default();
    (p50, failed)
}

fn packet(raw: &RawPeer, me: NodeId, t: PacketType, seq: u32, ext: Ext, payload: Bytes) -> Packet {
    Packet {
        version: raw.version,
        packet_type: t,
        seq,
        ext: (ext | Ext::DIRECT).with_ttl(DEFAULT_TTL),
        options: Some(Options {
            group: ByteString::new(),
            src: me,
            dsts: Vec::new(),
            module: MODULE,
            tags: Bytes::new(),
        }),
        payload,
    }
}

async fn attacker(net: &LocalNet, me: NodeId) -> anyhow::Result<RawPeer> {
    let mut raw = RawPeer::dial_as(net, 2, 0).await?;
    raw.handshake().await?;
    let node0 = net.handle(0);
    let ok = chainmesh_testkit::wait_until(Duration::from_secs(10), || {
        node0.reachable_nodes().iter().any(|(n, _)| *n == me)
    })
    .await;
    anyhow::ensure!(ok, "the attacker never became reachable");
    Ok(raw)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut net = LocalNet::start(LocalNetOptions::for_traffic(3)).await?;
    let me = net.handle(2).node_id();
    net.stop(2).await;
    for i in 0..2 {
        serve_echo(&net.handle(i), MODULE, 1024, |_| {});
    }
    net.connect(0, 1);
    net.wait_for(Duration::from_secs(10), |n| n.has_peers(0, 1))
        .await;
    let (node0, node1) = (net.handle(0), net.handle(1));
    let target = node0.node_id();
    let (before, _) = ping_p50(&node1, target, Duration::from_secs(1)).await;
    println!("honest ping p50 before any attack: {before:?}");

    // Compression bombs: 32 MiB of zeros (the default cap) in about a kilobyte each, to a
    // served module, as fast as the link takes them.
    let rss0 = peak_rss_kib();
    let bomb = Bytes::from(zstd::bulk::compress(&vec![0u8; 32 << 20], 19)?);
    let mut raw = attacker(&net, me).await?;
    let flood = tokio::spawn(async move {
        let (mut sent, mut seq) = (0usize, 0u32);
        let end = Instant::now() + ATTACK;
        while Instant::now() < end {
            seq += 1;
            let p = packet(
                &raw,
                me,
                PacketType::UNICAST,
                seq,
                Ext::COMPRESSED,
                bomb.clone(),
            );
            sent += p.encoded_len();
            if raw.send(&p).await.is_err() {
                break;
            }
        }
        let closed = raw.closed_within(Duration::from_secs(2)).await;
        (sent, seq, closed)
    });
    let (during, failed) = ping_p50(&node1, target, ATTACK).await;
    let (sent, packets, closed) = flood.await?;
    let d = node0.decompress_stats();
    println!(
        "compression bomb: {packets} packets, {sent} bytes sent; node 0 decompressed {} bytes \
         ({} offloaded, {} over budget, link closed: {closed}); peak RSS +{} KiB; \
         honest ping p50 during: {during:?} ({failed} failed)",
        d.decompressed_bytes,
        d.offloaded,
        d.over_budget,
        peak_rss_kib().saturating_sub(rss0)
    );

    // StatusRequests, as fast as the link takes them.
    let rss0 = peak_rss_kib();
    let mut raw = attacker(&net, me).await?;
    let before_stats = node0.status().stats();
    let flood = tokio::spawn(async move {
        let (mut sent, mut seq, mut answers) = (0usize, 0u32, 0u64);
        let end = Instant::now() + ATTACK;
        while Instant::now() < end {
            for _ in 0..100 {
                seq += 1;
                let q = Bytes::copy_from_slice(&seq.to_be_bytes());
                let p = packet(&raw, me, PacketType::STATUS_REQUEST, seq, Ext(0), q);
                sent += p.encoded_len();
                if raw.send(&p).await.is_err() {
                    return (sent, seq, answers);
                }
            }
            // Read what came back meanwhile, without waiting.
            while let Ok(Received::Packet(p)) = raw.recv(Duration::from_millis(1)).await {
                if p.packet_type == PacketType::STATUS_RESPONSE {
                    answers += 1;
                }
            }
        }
        (sent, seq, answers)
    });
    let (during, failed) = ping_p50(&node1, target, ATTACK).await;
    let (sent, requests, answers) = flood.await?;
    let s = node0.status().stats();
    println!(
        "status request flood: {requests} requests, {sent} bytes sent; {answers} answers \
         received in {ATTACK:?} ({} answered by node 0 in all, {} refused over the rate); \
         peak RSS +{} KiB; honest ping p50 during: {during:?} ({failed} failed)",
        s.response_packets - before_stats.response_packets,
        s.rate_limited - before_stats.rate_limited,
        peak_rss_kib().saturating_sub(rss0)
    );
    net.shutdown().await;
    Ok(())
}
