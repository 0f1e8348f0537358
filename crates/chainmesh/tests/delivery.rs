//! Delivery when a link drops: every packet a session still held when it ended is either
//! received by the peer or reported, exactly once; a request that was never written fails at
//! once with a typed error. First over an in-memory pipe the peer never reads (where exactly
//! which bytes crossed is known), then between real nodes over TLS with a raw peer that stops
//! reading.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chainmesh::config::TimersConfig;
use chainmesh::node::{UndeliveredKind, UndeliveredReason};
use chainmesh::session::{
    self, CloseReason, Direction, Fate, Inbound, Leftover, Pending, SessionConfig, SessionHandle,
    SessionInfo,
};
use chainmesh::wire::{Decoder, Ext, Packet, PacketType};
use chainmesh::{NodeId, RequestError};
use chainmesh_testkit::raw::{RawPeer, Received};
use chainmesh_testkit::{fast_timers, id, wait_until, LocalNet, LocalNetOptions};
use tokio::io::AsyncReadExt;

const WAIT: Duration = Duration::from_secs(10);
const MODULE: u16 = 2000;

// ----- one session over a pipe --------------------------------------------------------------

/// A leftover as the test reads it: its packets with their fates, the bytes that did not
/// decode, and why the session ended.
type Kept = (Vec<(Packet, Fate)>, usize, CloseReason);

/// Keeps what the session left over, decoded.
#[derive(Default)]
struct Keep {
    left: Mutex<Option<Kept>>,
}

impl Inbound for Keep {
    fn on_packet(&self, _: &SessionHandle, _: Packet, _: Bytes) -> Option<Pending> {
        None
    }

    fn on_leftover(&self, _: &SessionHandle, left: Leftover, reason: &CloseReason) {
        let cut = left.packets(&mut Decoder::on_link(u32::MAX, id(1)));
        *self.left.lock().unwrap() = Some((cut.packets, cut.undecoded, reason.clone()));
    }
}

fn info() -> SessionInfo {
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    SessionInfo {
        peer: id(7),
        addr,
        local_addr: addr,
        direction: Direction::Outbound,
        version: 1,
        peer_listen_port: 0,
        peer_max_packet: 1 << 20,
    }
}

fn frame(seq: u32, len: usize) -> Bytes {
    Packet {
        version: 1,
        packet_type: PacketType(0x7f),
        seq,
        ext: Ext(0),
        options: None,
        payload: Bytes::from(vec![0xab; len]),
    }
    .to_bytes()
}

/// The seqs of the whole data packets in `bytes`, in order (heartbeats left out).
fn whole_packets(mut bytes: BytesMut) -> Vec<u32> {
    let mut d = Decoder::new(u32::MAX);
    let mut seqs = Vec::new();
    while let Ok(Some(p)) = d.decode(&mut bytes) {
        if p.packet_type != PacketType::HEARTBEAT {
            seqs.push(p.seq);
        }
    }
    seqs
}

/// Queues 40 packets (every fourth one big) on a session over a 64 KiB pipe nobody reads,
/// lets it end by `end`, and checks that every packet is either wholly in the pipe or in the
/// leftover, never both, never neither, and that the leftover splits at what the stream took.
async fn every_packet_is_written_or_left_over(end: fn(&SessionHandle)) -> CloseReason {
    let (ours, mut peer) = tokio::io::duplex(64 * 1024);
    let handle = session::new_session(1, info(), 4 << 20);
    let seqs: Vec<u32> = (1..=40).collect();
    for &s in &seqs {
        let len = if s % 4 == 0 { 100_000 } else { 300 };
        handle.try_send(frame(s, len)).unwrap();
    }
    let keep = Arc::new(Keep::default());
    let cfg = SessionConfig {
        heartbeat_interval: Duration::from_millis(100),
        idle_timeout: Duration::from_millis(300),
        max_packet: 1 << 20,
        version: 1,
        linger: Duration::from_millis(500),
        read_budget_bytes: 256 * 1024,
    };
    let task = tokio::spawn(session::run(
        ours,
        handle.clone(),
        keep.clone(),
        cfg,
        BytesMut::new(),
    ));
    // The pipe is full: the writer is stuck inside a chunk.
    let stuck = wait_until(WAIT, || {
        handle
            .stats
            .bytes_out
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 64 * 1024
    })
    .await;
    assert!(stuck);
    end(&handle);
    let reason = tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
    // The session's end of the pipe is gone: the rest reads to its end.
    let mut crossed = Vec::new();
    peer.read_to_end(&mut crossed).await.unwrap();
    let received = whole_packets(BytesMut::from(&crossed[..]));

    let (left, undecoded, said) = keep.left.lock().unwrap().take().expect("a leftover");
    assert_eq!(said, reason);
    assert_eq!(undecoded, 0);
    let unsent: Vec<u32> = left
        .iter()
        .filter(|(_, f)| *f == Fate::Unsent)
        .map(|(p, _)| p.seq)
        .collect();
    let maybe: Vec<u32> = left
        .iter()
        .filter(|(_, f)| *f == Fate::MaybeSent)
        .map(|(p, _)| p.seq)
        .collect();
    assert!(
        !maybe.is_empty(),
        "the chunk being written is possibly sent"
    );
    assert!(
        !unsent.is_empty(),
        "chunks behind it were never handed over"
    );
    // In queue order: what crossed, then the chunk cut short, then what never left.
    let all: Vec<u32> = [received.clone(), maybe, unsent].concat();
    assert_eq!(all, seqs, "received {received:?}");
    reason
}

#[tokio::test(start_paused = true)]
async fn a_session_that_times_out_leaves_what_it_could_not_write_and_nothing_else() {
    let reason = every_packet_is_written_or_left_over(|_| {}).await;
    assert_eq!(reason, CloseReason::IdleTimeout);
}

#[tokio::test(start_paused = true)]
async fn a_session_closed_on_request_leaves_what_its_linger_could_not_flush() {
    let reason = every_packet_is_written_or_left_over(|h| h.close(CloseReason::Removed)).await;
    assert_eq!(reason, CloseReason::Removed);
}

#[tokio::test(start_paused = true)]
async fn a_session_closed_at_once_leaves_its_whole_queue() {
    let reason =
        every_packet_is_written_or_left_over(|h| h.close_now(CloseReason::Blacklisted)).await;
    assert_eq!(reason, CloseReason::Blacklisted);
}

// ----- real nodes ---------------------------------------------------------------------------

/// Payload of the big unicasts: over the size queued by reference, so each is a chunk of its
/// own and the writer takes them one at a time.
const BIG: usize = 80 * 1024;
/// Node 0's queue per link: six big unicasts and half of a seventh.
const QUEUE: usize = 6 * BIG + BIG / 2;

/// Every unicast of `MODULE` in what the raw peer reads until the link closes.
async fn read_to_close(raw: &mut RawPeer) -> Vec<u32> {
    let mut seqs = Vec::new();
    loop {
        match raw.recv(WAIT).await {
            Ok(Received::Packet(p)) => {
                let ours = p.packet_type == PacketType::UNICAST
                    && p.options.as_ref().is_some_and(|o| o.module == MODULE);
                if ours {
                    seqs.push(p.seq);
                }
            }
            Ok(Received::Closed) | Err(_) => return seqs,
            Ok(Received::Nothing) => panic!("the node never closed the link"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_send_to_a_peer_that_stopped_reading_is_received_or_reported_once() {
    // Idle after a second of silence; the raw peer keeps the link alive while the queue fills.
    let timers = TimersConfig {
        heartbeat_interval: Duration::from_millis(200),
        idle_timeout_intervals: 5,
        ..fast_timers()
    };
    let mut net = LocalNet::start(LocalNetOptions {
        timers,
        tweak: Some(|_, c| {
            c.limits.session_queue_bytes = QUEUE;
            c.p2p.compress_threshold = 0;
        }),
        ..LocalNetOptions::new(2)
    })
    .await
    .unwrap();
    let peer: NodeId = net.generated(1).node_id;
    net.stop(1).await;
    let node = net.handle(0);
    let mut undelivered = node.undelivered();
    let mut raw = RawPeer::dial_as(&net, 1, 0).await.unwrap();
    // A version 3 peer: it gets every packet whole, so it can count what it read.
    let ours = chainmesh::wire::Handshake::ours(
        0,
        chainmesh::wire::DEFAULT_MAX_PACKET,
        std::num::NonZeroU64::new(0x5eed).unwrap(),
    );
    raw.handshake_with(&chainmesh::wire::Handshake {
        max_version: 3,
        ..ours
    })
    .await
    .unwrap();
    assert!(wait_until(WAIT, || node.peers().is_connected(&peer)).await);
    let beat = Packet::heartbeat(raw.version);

    // Big unicasts until the queue stays full: the kernel's buffers are full too, and the
    // node's writer is stuck inside one of them.
    let big = Bytes::from(vec![0x5a; BIG]);
    let mut sent = 0usize;
    let mut stuck = 0;
    while stuck < 2 {
        raw.send(&beat).await.unwrap();
        match tokio::time::timeout(
            Duration::from_millis(400),
            node.send(peer, MODULE, big.clone()),
        )
        .await
        {
            Ok(sent_ok) => {
                sent_ok.unwrap();
                sent += 1;
                stuck = 0;
            }
            Err(_) => stuck += 1,
        }
    }
    // A request and ten small unicasts in the room left (about half a big one, less a few
    // status packets): behind the stuck writer, in the queue.
    let asker = node.clone();
    let request = tokio::spawn(async move {
        asker
            .request(
                peer,
                MODULE,
                Bytes::from_static(b"there?"),
                Duration::from_secs(60),
            )
            .await
    });
    let small = Bytes::from(vec![0x11; 1000]);
    for _ in 0..10 {
        node.try_send(peer, MODULE, small.clone()).unwrap();
        sent += 1;
    }
    raw.send(&beat).await.unwrap();

    // The raw peer falls silent: the node drops the link as idle. The request fails then,
    // with the typed error that says it never left, not at its timeout.
    let answer = tokio::time::timeout(WAIT, request).await.unwrap().unwrap();
    assert_eq!(
        answer,
        Err(RequestError::Unsent {
            link: peer,
            reason: CloseReason::IdleTimeout
        })
    );
    // Everything the node wrote before it closed is still readable.
    let received = read_to_close(&mut raw).await;

    let mut unsent = Vec::new();
    let mut maybe = Vec::new();
    let mut requests = Vec::new();
    while let Ok(u) = undelivered.try_recv() {
        assert_eq!((u.link, u.dst), (peer, peer));
        if u.module != MODULE {
            continue;
        }
        match (u.kind, u.reason) {
            (UndeliveredKind::Request, UndeliveredReason::LinkClosed(r)) => {
                assert_eq!(r, CloseReason::IdleTimeout);
                requests.push(u.seq);
            }
            (UndeliveredKind::Unicast, UndeliveredReason::LinkClosed(r)) => {
                assert_eq!(r, CloseReason::IdleTimeout);
                unsent.push(u.seq);
            }
            (UndeliveredKind::Unicast, UndeliveredReason::MaybeSent(_)) => maybe.push(u.seq),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(requests.len(), 1, "the request is reported once");
    assert!(!unsent.is_empty(), "the small unicasts never left");
    let received_set: BTreeSet<u32> = received.iter().copied().collect();
    let unsent_set: BTreeSet<u32> = unsent.iter().copied().collect();
    let maybe_set: BTreeSet<u32> = maybe.iter().copied().collect();
    assert_eq!(received_set.len(), received.len(), "nothing received twice");
    assert_eq!(
        unsent_set.len() + maybe_set.len(),
        unsent.len() + maybe.len(),
        "reported once"
    );
    assert!(unsent_set.is_disjoint(&maybe_set));
    assert!(
        received_set.is_disjoint(&unsent_set),
        "a packet reported never written was received"
    );
    // Every send that returned Ok is accounted for: received, or reported.
    let accounted: BTreeSet<u32> = received_set
        .union(&unsent_set)
        .chain(&maybe_set)
        .copied()
        .collect();
    assert_eq!(
        accounted.len(),
        sent,
        "{} received, {} unsent, {} maybe sent, of {sent}",
        received.len(),
        unsent.len(),
        maybe.len()
    );
    let counts = node.undelivered_counts();
    assert_eq!(counts.requests_failed, 1);
    assert!(counts.unsent >= (unsent.len() + 1) as u64);
    assert!(counts.maybe_sent >= maybe.len() as u64);
    assert_eq!(counts.undecoded_bytes, 0);
    net.shutdown().await;
}
