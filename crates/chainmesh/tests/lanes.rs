//! The write lanes of a session over in-memory pipes: a priority frame overtakes bulk data
//! already queued, a big bulk frame goes out as Fragments on a version 4 link and whole on a
//! version 3 one, a session writing bulk still reads what comes in, and what the lanes still
//! held when a session ends is handed back. Orders of arrival and byte counts are asserted,
//! never times.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chainmesh::session::{
    self, CloseReason, Direction, Fate, Framing, Inbound, Lane, Leftover, P2pFraming, Pending,
    SessionConfig, SessionHandle, SessionInfo, PIECE,
};
use chainmesh::wire::{Decoder, Ext, Packet, PacketType, HEADER_LEN};
use chainmesh_testkit::id;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

const WATCHDOG: Duration = Duration::from_secs(120);
const BIG: u32 = 64 << 20;

fn cfg(version: u16) -> SessionConfig {
    SessionConfig {
        heartbeat_interval: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(90),
        max_packet: BIG,
        version,
        linger: Duration::from_millis(500),
        read_budget_bytes: 256 * 1024,
    }
}

fn info(version: u16) -> SessionInfo {
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    SessionInfo {
        peer: id(7),
        addr,
        local_addr: addr,
        direction: Direction::Outbound,
        version,
        peer_listen_port: 0,
        peer_max_packet: BIG,
    }
}

fn frame(version: u16, seq: u32, len: usize) -> Bytes {
    Packet {
        version,
        packet_type: PacketType(0x7f),
        seq,
        ext: Ext(0),
        options: None,
        payload: Bytes::from((0..len).map(|i| (i % 253) as u8).collect::<Vec<u8>>()),
    }
    .to_bytes()
}

/// Keeps what the session left over, decoded, and for each packet it delivered the bytes it
/// had written by then.
#[derive(Default)]
struct Keep {
    left: Mutex<Option<Vec<(Packet, Fate)>>>,
    delivered: Mutex<Vec<(u32, u64)>>,
}

impl Inbound for Keep {
    fn on_packet(&self, s: &SessionHandle, p: Packet, _: Bytes) -> Option<Pending> {
        let written = s.stats.bytes_out.load(std::sync::atomic::Ordering::Relaxed);
        self.delivered.lock().unwrap().push((p.seq, written));
        None
    }

    fn on_leftover(&self, _: &SessionHandle, left: Leftover, _: &CloseReason) {
        let cut = left.packets(&mut Decoder::on_link(u32::MAX, id(1)));
        *self.left.lock().unwrap() = Some(cut.packets);
    }
}

struct Running {
    handle: SessionHandle,
    task: tokio::task::JoinHandle<CloseReason>,
    peer: DuplexStream,
    keep: Arc<Keep>,
}

/// A session of `version` on a pipe of `capacity` bytes, with `queued` in its lanes first.
fn start(version: u16, capacity: usize, queued: &[(Lane, Bytes)]) -> Running {
    let (ours, peer) = tokio::io::duplex(capacity);
    let handle = session::new_session(1, info(version), 8 << 20);
    for (lane, f) in queued {
        handle.try_send_in(*lane, f.clone()).unwrap();
    }
    let keep = Arc::new(Keep::default());
    let task = tokio::spawn(session::run(
        ours,
        handle.clone(),
        keep.clone(),
        cfg(version),
        BytesMut::new(),
    ));
    Running {
        handle,
        task,
        peer,
        keep,
    }
}

/// Reads the next packet as it is on the wire (a Fragment is one), skipping heartbeats, and
/// keeps its bytes in `wire`.
async fn next_raw(peer: &mut DuplexStream, buf: &mut BytesMut, wire: &mut Vec<u8>) -> Packet {
    let mut dec = Decoder::new(BIG);
    loop {
        if let Some((p, bytes)) = dec.decode_frame(buf).unwrap() {
            if p.packet_type == PacketType::HEARTBEAT {
                continue;
            }
            wire.extend_from_slice(&bytes);
            return p;
        }
        assert!(peer.read_buf(buf).await.unwrap() > 0, "the stream ended");
    }
}

/// The packets `wire` holds as the receiving session hands them up: Fragments joined.
fn joined(version: u16, wire: &[u8]) -> Vec<(Packet, Bytes)> {
    let mut framing = P2pFraming::on_link(BIG, version, id(1));
    let mut buf = BytesMut::from(wire);
    let mut out = Vec::new();
    while let Some(p) = framing.decode(&mut buf).unwrap() {
        out.push(p);
    }
    assert!(buf.is_empty(), "nothing partial left");
    out
}

#[tokio::test(start_paused = true)]
async fn a_priority_frame_queued_behind_32_mib_of_bulk_is_read_before_the_bulk_frame_ends() {
    tokio::time::timeout(WATCHDOG, async {
        let bulk = frame(4, 1, 32 << 20);
        let pipe = 256 * 1024;
        let mut s = start(4, pipe, &[(Lane::Bulk, bulk.clone())]);
        let (mut buf, mut wire) = (BytesMut::new(), Vec::new());
        // The bulk frame is on its way: its first Fragment is in.
        let first = next_raw(&mut s.peer, &mut buf, &mut wire).await;
        assert_eq!((first.packet_type, first.seq), (PacketType::FRAGMENT, 0));
        assert_eq!(first.payload.len(), PIECE);
        let urgent = frame(4, 2, 200);
        s.handle
            .try_send_in(Lane::Priority, urgent.clone())
            .unwrap();
        assert!(s.handle.queued_bytes_in(Lane::Priority) > 0);
        // Before it: what the pipe already held, and the one Fragment being written.
        let mut fragments_before = 0usize;
        loop {
            let p = next_raw(&mut s.peer, &mut buf, &mut wire).await;
            if p.packet_type != PacketType::FRAGMENT {
                assert_eq!(p.seq, 2, "the priority frame");
                break;
            }
            fragments_before += 1;
        }
        assert!(
            fragments_before <= pipe / PIECE + 2,
            "{fragments_before} Fragments went ahead of the priority frame"
        );
        let total = bulk.len().div_ceil(PIECE);
        assert!(fragments_before + 1 < total, "the bulk frame was not over");
        // The rest of the bulk frame follows, and joins byte for byte.
        while wire.len() < bulk.len() + urgent.len() + total * HEADER_LEN {
            next_raw(&mut s.peer, &mut buf, &mut wire).await;
        }
        let got = joined(4, &wire);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1, urgent);
        assert_eq!(got[1].1, bulk);
        assert_eq!(s.handle.queued_bytes(), 0, "every lane's budget came back");
        s.handle.close(CloseReason::Shutdown);
        drop(s.peer);
        s.task.await.unwrap();
    })
    .await
    .expect("watchdog: the session hung");
}

#[tokio::test(start_paused = true)]
async fn control_goes_before_priority_and_priority_before_bulk_queued_earlier() {
    tokio::time::timeout(WATCHDOG, async {
        let queued = [
            (Lane::Bulk, frame(4, 1, 100)),
            (Lane::Priority, frame(4, 2, 100)),
            (Lane::Control, frame(4, 3, 100)),
            (Lane::Bulk, frame(4, 4, 100)),
        ];
        let mut s = start(4, 1 << 20, &queued);
        let (mut buf, mut wire) = (BytesMut::new(), Vec::new());
        let mut seqs = Vec::new();
        for _ in 0..4 {
            seqs.push(next_raw(&mut s.peer, &mut buf, &mut wire).await.seq);
        }
        assert_eq!(seqs, [3, 2, 1, 4]);
        s.handle.close(CloseReason::Shutdown);
        drop(s.peer);
        s.task.await.unwrap();
    })
    .await
    .expect("watchdog: the session hung");
}

#[tokio::test(start_paused = true)]
async fn a_version_3_link_gets_a_big_bulk_frame_whole() {
    tokio::time::timeout(WATCHDOG, async {
        let bulk = frame(3, 1, 1 << 20);
        let mut s = start(3, 64 * 1024, &[(Lane::Bulk, bulk.clone())]);
        let (mut buf, mut wire) = (BytesMut::new(), Vec::new());
        let p = next_raw(&mut s.peer, &mut buf, &mut wire).await;
        assert_eq!(p.packet_type, PacketType(0x7f), "no Fragment on version 3");
        assert_eq!(Bytes::from(wire), bulk);
        s.handle.close(CloseReason::Shutdown);
        drop(s.peer);
        s.task.await.unwrap();
    })
    .await
    .expect("watchdog: the session hung");
}

#[tokio::test(start_paused = true)]
async fn what_every_lane_still_held_is_handed_back_when_the_session_ends() {
    tokio::time::timeout(WATCHDOG, async {
        // A pipe smaller than any frame that nobody reads: nothing gets written whole.
        let queued = [
            (Lane::Bulk, frame(4, 1, 200_000)),
            (Lane::Bulk, frame(4, 2, 4000)),
            (Lane::Priority, frame(4, 3, 4000)),
            (Lane::Control, frame(4, 4, 4000)),
            (Lane::Priority, frame(4, 5, 4000)),
        ];
        let s = start(4, 1024, &queued);
        assert!(
            chainmesh_testkit::wait_until(Duration::from_secs(5), || {
                s.handle
                    .stats
                    .bytes_out
                    .load(std::sync::atomic::Ordering::Relaxed)
                    > 0
            })
            .await
        );
        s.handle.close_now(CloseReason::Shutdown);
        assert_eq!(s.task.await.unwrap(), CloseReason::Shutdown);
        let left = s.keep.left.lock().unwrap().take().expect("a leftover");
        let seqs: BTreeSet<u32> = left.iter().map(|(p, _)| p.seq).collect();
        assert_eq!(seqs, BTreeSet::from([1, 2, 3, 4, 5]));
        // Only the control frame, the one the writer began, may have reached the peer.
        let maybe: Vec<u32> = left
            .iter()
            .filter(|(_, f)| *f == Fate::MaybeSent)
            .map(|(p, _)| p.seq)
            .collect();
        assert_eq!(maybe, [4]);
        drop(s.peer);
    })
    .await
    .expect("watchdog: the session hung");
}

#[tokio::test(start_paused = true)]
async fn a_packet_that_comes_in_while_bulk_is_written_is_delivered_after_one_write_slice() {
    tokio::time::timeout(WATCHDOG, async {
        // 4 MiB of bulk into a pipe that takes all of it: nothing makes the writes wait, so
        // only the slicing of the wake's 1 MiB write budget lets the session read early.
        let queued: Vec<(Lane, Bytes)> = (0..4)
            .map(|seq| (Lane::Bulk, frame(4, seq, 1 << 20)))
            .collect();
        let mut s = start(4, 8 << 20, &queued);
        // In before the session's first poll: a response to something we asked, say.
        s.peer.write_all(&frame(4, 99, 100)).await.unwrap();
        assert!(
            chainmesh_testkit::wait_until(Duration::from_secs(5), || {
                !s.keep.delivered.lock().unwrap().is_empty()
            })
            .await
        );
        let (seq, written) = s.keep.delivered.lock().unwrap()[0];
        assert_eq!(seq, 99);
        assert!(written > 0, "the bulk had started");
        assert!(
            written < 4 * PIECE as u64,
            "{written} bytes written before the incoming packet was delivered"
        );
        s.handle.close(CloseReason::Shutdown);
        drop(s.peer);
        s.task.await.unwrap();
    })
    .await
    .expect("watchdog: the session hung");
}
