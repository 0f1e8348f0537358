//! Resource bounds against a member that floods: compression bombs, maximal statuses for
//! made-up nodes, StatusRequest floods, and more requests than a destination may have
//! outstanding.

use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;
use chainmesh::config::Config;
use chainmesh::status::codec::{StatusAnswer, StatusQuery};
use chainmesh::status::{NodeStatus, StatusVersion};
use chainmesh::wire::{Ext, Options, Packet, PacketType, DEFAULT_TTL};
use chainmesh::{NodeId, RequestError};
use chainmesh_testkit::raw::{RawPeer, Received};
use chainmesh_testkit::{fast_timers, serve_echo, LocalNet, LocalNetOptions};

/// The module the honest nodes serve.
const MODULE: u16 = 2000;
/// A module nobody registers.
const NOBODY: u16 = 3000;
const WAIT: Duration = Duration::from_secs(10);

/// Three nodes: 0 and 1 honest and linked, 2's certificate held by the attacker (node 2
/// itself is stopped). Heartbeats every second, so a raw peer busy flooding is not dropped
/// as idle; statuses every 100 ms.
async fn network(tweak: fn(usize, &mut Config)) -> (LocalNet, NodeId) {
    let timers = chainmesh::config::TimersConfig {
        heartbeat_interval: Duration::from_secs(1),
        ..fast_timers()
    };
    let mut net = LocalNet::start(LocalNetOptions {
        timers,
        tweak: Some(tweak),
        ..LocalNetOptions::new(3)
    })
    .await
    .unwrap();
    let attacker = net.handle(2).node_id();
    net.stop(2).await;
    for i in 0..2 {
        serve_echo(&net.handle(i), MODULE, 1024, |_| {});
    }
    net.connect(0, 1);
    assert!(
        net.wait_for(WAIT, |n| n.has_peers(0, 1) && n.has_peers(1, 1))
            .await
    );
    (net, attacker)
}

/// The attacker's link to node 0, once node 0 counts the attacker as reachable.
async fn attacker(net: &LocalNet) -> RawPeer {
    let mut raw = RawPeer::dial_as(net, 2, 0).await.unwrap();
    raw.handshake().await.unwrap();
    let me = net.generated(2).node_id;
    let node0 = net.handle(0);
    let reachable = chainmesh_testkit::wait_until(WAIT, || {
        node0.reachable_nodes().iter().any(|(n, _)| *n == me)
    })
    .await;
    assert!(reachable);
    raw
}

/// A packet from the attacker (its own node ID, so TLS vouches for it) to the node it is
/// linked to.
fn from_attacker(
    raw: &RawPeer,
    me: NodeId,
    packet_type: PacketType,
    seq: u32,
    ext: Ext,
    module: u16,
    payload: Bytes,
) -> Packet {
    Packet {
        version: raw.version,
        packet_type,
        seq,
        // Direct form: the link itself names the attacker as the source.
        ext: (ext | Ext::DIRECT).with_ttl(DEFAULT_TTL),
        options: Some(Options {
            group: ByteString::new(),
            src: me,
            dsts: Vec::new(),
            module,
            tags: Bytes::new(),
        }),
        payload,
    }
}

/// Honest request/response from node 1 to node 0 still works.
async fn honest_ping_works(net: &LocalNet) {
    let r = net
        .handle(1)
        .request(
            net.handle(0).node_id(),
            MODULE,
            Bytes::from_static(b"still there?"),
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(r.unwrap(), Bytes::from_static(b"still there?"));
}

fn small_decompression_limits(_: usize, c: &mut Config) {
    c.limits.max_decompressed_bytes = 1 << 20;
    c.limits.decompress_bytes_per_sec_per_peer = 4 << 20;
}

#[tokio::test]
async fn a_compression_bomb_costs_bounded_work_and_closes_the_link() {
    let (net, me) = network(small_decompression_limits).await;
    let node0 = net.handle(0);
    let mut raw = attacker(&net).await;
    // 1 MiB of zeros (the cap) in about a hundred bytes, and 64 MiB (over the cap) in a few
    // kilobytes.
    let bomb = Bytes::from(zstd::bulk::compress(&vec![0u8; 1 << 20], 19).unwrap());
    let huge = Bytes::from(zstd::bulk::compress(&vec![0u8; 64 << 20], 19).unwrap());
    assert!(bomb.len() < 1024 && huge.len() < 8 * 1024);
    let compressed_request = Ext::COMPRESSED | Ext::REQUEST;

    // To a module nobody serves: answered "no handler" without decompressing anything.
    for seq in 1..=50 {
        let p = from_attacker(
            &raw,
            me,
            PacketType::UNICAST,
            seq,
            compressed_request,
            NOBODY,
            bomb.clone(),
        );
        raw.send(&p).await.unwrap();
    }
    let mut no_handler = 0;
    while no_handler < 50 {
        match raw.recv(WAIT).await.unwrap() {
            Received::Packet(p) if p.ext.is_error() && p.packet_type == PacketType::UNICAST => {
                assert!(String::from_utf8_lossy(&p.payload).contains("no handler"));
                no_handler += 1;
            }
            Received::Packet(_) => {}
            other => panic!("expected the no-handler answers, got {other:?}"),
        }
    }
    assert_eq!(node0.decompress_stats().decompressed_bytes, 0);

    // Over the cap: refused from the frame header, before any work.
    let p = from_attacker(
        &raw,
        me,
        PacketType::UNICAST,
        100,
        Ext::COMPRESSED,
        MODULE,
        huge,
    );
    raw.send(&p).await.unwrap();

    // To the served module: bombs at the cap until the budget runs out and the link closes.
    let started = Instant::now();
    let mut sent_bytes = 0usize;
    let mut seq = 1000;
    let closed = loop {
        seq += 1;
        let p = from_attacker(
            &raw,
            me,
            PacketType::UNICAST,
            seq,
            Ext::COMPRESSED,
            MODULE,
            bomb.clone(),
        );
        sent_bytes += p.encoded_len();
        if raw.send(&p).await.is_err() || seq > 1000 + 10_000 {
            break raw.closed_within(WAIT).await;
        }
    };
    let elapsed = started.elapsed();
    assert!(closed, "the attacker's link was not closed");
    let stats = node0.decompress_stats();
    // The budget: a bucket of 4 MiB plus 4 MiB/s, give or take a payload.
    let allowed = (4u64 << 20) * (1 + elapsed.as_secs() + 1) + (1 << 20);
    assert!(
        stats.decompressed_bytes <= allowed,
        "{} bytes decompressed in {elapsed:?}, {stats:?}",
        stats.decompressed_bytes
    );
    assert!(
        stats.over_budget > 0 && stats.links_closed >= 1,
        "{stats:?}"
    );
    assert!(
        stats.failed >= 1,
        "the bomb over the cap was refused: {stats:?}"
    );
    eprintln!(
        "compression bomb: {sent_bytes} bytes sent, {} decompressed, {stats:?}",
        stats.decompressed_bytes
    );
    honest_ping_works(&net).await;
    net.shutdown().await;
}

/// The status engine's bounds made small enough to reach.
fn small_status_limits(_: usize, c: &mut Config) {
    c.limits.max_status_bytes = 16 * 1024;
    c.limits.max_tracked_nodes = 8;
    c.limits.max_status_total_bytes = 64 * 1024;
    c.limits.status_requests_per_sec = 20;
}

/// A status whose encoding takes exactly `len` bytes.
fn status_of_len(len: usize) -> NodeStatus {
    let mut s = NodeStatus::default();
    let base = s.encoded_len();
    s.app = Bytes::from(vec![b'z'; len - base]);
    assert_eq!(s.encoded_len(), len);
    s
}

/// Reads the node's packets until its own next StatusRequest (node 1's come relayed on the
/// same link); returns its query ID.
async fn next_query(raw: &mut RawPeer) -> u32 {
    loop {
        match raw.recv(WAIT).await.unwrap() {
            Received::Packet(p)
                if p.packet_type == PacketType::STATUS_REQUEST
                    && p.options.as_ref().is_some_and(|o| o.src == raw.peer) =>
            {
                return StatusQuery::decode(&p.payload).unwrap().query_id;
            }
            Received::Packet(_) => {}
            other => panic!("no status query came: {other:?}"),
        }
    }
}

#[tokio::test]
async fn maximal_statuses_and_made_up_nodes_stay_within_the_status_caps() {
    let (net, me) = network(small_status_limits).await;
    let node0 = net.handle(0);
    let mut raw = attacker(&net).await;
    let version = StatusVersion::new(0x5eed, 1);
    let mut seq = 1;
    let mut send_status = |raw: &RawPeer, query: u32, status: &NodeStatus| {
        seq += 1;
        let payload = StatusAnswer::encode_with(query, version, &status.encode());
        from_attacker(
            raw,
            me,
            PacketType::STATUS_RESPONSE,
            seq,
            Ext(0),
            0,
            payload,
        )
    };

    // Larger than limits.max_status_bytes: dropped undecoded, and the query asked again.
    let q = next_query(&mut raw).await;
    let p = send_status(&raw, q, &status_of_len(16 * 1024 + 1));
    raw.send(&p).await.unwrap();
    let q2 = next_query(&mut raw).await;
    assert_ne!(q, q2);
    assert!(chainmesh_testkit::wait_until(WAIT, || node0.status().stats().oversized >= 1).await);
    assert!(node0.peer_status(&me).is_none());
    // Exactly the limit is taken.
    let p = send_status(&raw, q2, &status_of_len(16 * 1024));
    raw.send(&p).await.unwrap();
    let stored = chainmesh_testkit::wait_until(WAIT, || node0.peer_status(&me).is_some()).await;
    assert!(stored, "{q} {q2} {:?}", node0.status().stats());

    // Announcements and answers in the name of made-up nodes: none is tracked or stored.
    let made_up: Vec<NodeId> = (0..2000u32)
        .map(|i| {
            let mut b = [0x77u8; 64];
            b[..4].copy_from_slice(&i.to_be_bytes());
            NodeId::from_bytes(b)
        })
        .collect();
    let mut attacker_bytes = 0;
    for (i, fake) in made_up.iter().enumerate() {
        let announce = chainmesh::status::codec::SeqAnnounce {
            version,
            reply_wanted: true,
            view: None,
        }
        .encode();
        let answer =
            StatusAnswer::encode_with(i as u32, version, &status_of_len(16 * 1024).encode());
        for (t, payload) in [
            (PacketType::STATUS_SEQ, announce),
            (PacketType::STATUS_RESPONSE, answer),
        ] {
            let mut p = from_attacker(
                &raw,
                me,
                t,
                10_000 + 2 * i as u32 + u32::from(t == PacketType::STATUS_SEQ),
                Ext(0),
                0,
                payload,
            );
            // In full form, claiming the made-up node as its source (and with no tag).
            p.ext = Ext(p.ext.0 & !Ext::DIRECT.0);
            if let Some(o) = p.options.as_mut() {
                o.src = *fake;
                o.dsts = vec![raw.peer];
            }
            attacker_bytes += p.encoded_len();
            // A node that drops forged sources may close the link: that is a bound too.
            if raw.send(&p).await.is_err() {
                break;
            }
        }
    }
    // Let the node work through what it read, then check what it holds.
    honest_ping_works(&net).await;
    let stats = node0.status().stats();
    assert!(stats.tracked_nodes <= 8, "{stats:?}");
    assert!(stats.held_status_bytes <= 64 * 1024, "{stats:?}");
    assert!(made_up.iter().all(|n| node0.peer_status(n).is_none()));
    eprintln!(
        "made-up statuses: {attacker_bytes} bytes sent, node holds {} status bytes for {} nodes; {stats:?}",
        stats.held_status_bytes, stats.tracked_nodes
    );
    net.shutdown().await;
}

#[tokio::test]
async fn a_status_request_flood_is_answered_within_the_rate_limit() {
    let (net, me) = network(small_status_limits).await;
    let node0 = net.handle(0);
    let mut events = node0.events();
    let mut raw = attacker(&net).await;
    let started = Instant::now();
    const FLOOD: u32 = 2000;
    for i in 0..FLOOD {
        let payload = StatusQuery { query_id: i }.encode();
        let p = from_attacker(
            &raw,
            me,
            PacketType::STATUS_REQUEST,
            i + 1,
            Ext(0),
            0,
            payload,
        );
        raw.send(&p).await.unwrap();
    }
    // Count the answers until the node has seen the whole flood, and for a moment after
    // for those still on their way.
    let mut answers = 0u64;
    let mut seen_all_at = None;
    loop {
        if seen_all_at.is_none() {
            let s = node0.status().stats();
            if s.rate_limited + s.response_packets >= u64::from(FLOOD) {
                seen_all_at = Some(Instant::now());
            }
        }
        if seen_all_at.is_some_and(|t| t.elapsed() > Duration::from_millis(500)) {
            break;
        }
        match raw.recv(Duration::from_millis(100)).await.unwrap() {
            Received::Packet(p) if p.packet_type == PacketType::STATUS_RESPONSE => answers += 1,
            Received::Packet(_) | Received::Nothing => {}
            Received::Closed => {
                let why: Vec<_> = std::iter::from_fn(|| events.try_recv().ok()).collect();
                panic!("the node closed the link: {why:?}")
            }
        }
        assert!(
            started.elapsed() < 3 * WAIT,
            "the flood was not worked through"
        );
    }
    let elapsed = started.elapsed().as_secs_f64();
    let bound = 20.0 + 20.0 * elapsed + 1.0;
    assert!(
        (answers as f64) <= bound,
        "{answers} answers in {elapsed:.2} s, at most {bound:.0} allowed"
    );
    assert!(answers >= 1);
    let stats = node0.status().stats();
    assert!(
        stats.rate_limited >= u64::from(FLOOD) - bound as u64,
        "{stats:?}"
    );
    eprintln!("status request flood: {FLOOD} requests, {answers} answers in {elapsed:.2} s");
    honest_ping_works(&net).await;
    net.shutdown().await;
}

fn few_pending(_: usize, c: &mut Config) {
    c.limits.pending_requests_per_peer = 4;
}

#[tokio::test]
async fn requests_to_a_silent_member_are_bounded_per_destination() {
    let (net, me) = network(few_pending).await;
    let node0 = net.handle(0);
    // Connected, and never answering.
    let _raw = attacker(&net).await;
    assert!(chainmesh_testkit::wait_until(WAIT, || node0.peers().session(&me).is_some()).await);
    let waiting: Vec<_> = (0..4)
        .map(|_| {
            let n = node0.clone();
            tokio::spawn(async move {
                n.request(
                    me,
                    MODULE,
                    Bytes::from_static(b"?"),
                    Duration::from_secs(30),
                )
                .await
            })
        })
        .collect();
    // The test runs on one thread: a few yields let each spawned request reach its wait.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    // With the four outstanding, a fifth fails at once.
    let fifth = match node0
        .request(me, MODULE, Bytes::from_static(b"?"), WAIT)
        .await
    {
        Err(RequestError::TooManyPending { dst, limit }) => (dst, limit),
        other => panic!("expected TooManyPending, got {other:?}"),
    };
    assert_eq!(fifth, (me, 4));
    // Other destinations are not affected.
    honest_ping_works(&net).await;
    let r = node0
        .request(
            net.handle(1).node_id(),
            MODULE,
            Bytes::from_static(b"x"),
            WAIT,
        )
        .await;
    assert!(r.is_ok());
    for w in waiting {
        w.abort();
    }
    net.shutdown().await;
}
