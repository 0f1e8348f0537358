//! The session task over in-memory pipes, on a paused clock: heartbeats, idle timeout, write
//! batching, graceful close, malformed input and backpressure, with the P2P framing and with
//! a toy framing that must not coalesce frames. Every test runs under a watchdog so a hang
//! fails instead of stalling the suite.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chainmesh::session::{
    self, CloseReason, Direction, Framing, Handler, Inbound, P2pFraming, Pending, SessionConfig,
    SessionHandle, SessionInfo,
};
use chainmesh::wire::{Decoder, Packet, PacketType};
use chainmesh_testkit::{id, wait_until};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::sync::{mpsc, Notify};

#[path = "session/toy.rs"]
mod toy;

use toy::{read_toy, toy_data, toy_frame, Toy};

const WATCHDOG: Duration = Duration::from_secs(60);

fn cfg() -> SessionConfig {
    SessionConfig {
        heartbeat_interval: Duration::from_millis(100),
        idle_timeout: Duration::from_millis(300),
        max_packet: 1 << 20,
        version: 1,
        linger: Duration::from_millis(500),
        read_budget_bytes: 256 * 1024,
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

/// Hands every packet (or toy frame) to a channel; when `gate` is set, each delivery waits
/// for it.
struct Collect<T> {
    tx: mpsc::UnboundedSender<T>,
    gate: Option<Arc<Notify>>,
}

impl<T> Collect<T> {
    fn deliver(&self, item: T) -> Option<Pending> {
        let _ = self.tx.send(item);
        let gate = self.gate.clone()?;
        Some(Box::pin(async move { gate.notified().await }))
    }
}

impl Inbound for Collect<Packet> {
    fn on_packet(&self, _: &SessionHandle, packet: Packet, _: Bytes) -> Option<Pending> {
        self.deliver(packet)
    }
}

impl Handler<Toy> for Collect<Bytes> {
    fn on_frame(&self, _: &SessionHandle<Toy>, frame: Bytes) -> Option<Pending> {
        self.deliver(frame)
    }
}

/// One completed write call: the buffer the session offered, and how much of it the stream
/// took.
#[derive(Debug, Clone)]
struct Write {
    offered: Vec<u8>,
    taken: usize,
}

type Writes = Arc<Mutex<Vec<Write>>>;

/// Records every completed write call on the stream under the session.
struct Recording {
    inner: DuplexStream,
    writes: Writes,
}

impl AsyncRead for Recording {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Recording {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(taken)) = r {
            me.writes.lock().unwrap().push(Write {
                offered: buf.to_vec(),
                taken,
            });
        }
        r
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

struct Harness<F = P2pFraming, T = Packet> {
    handle: SessionHandle<F>,
    task: tokio::task::JoinHandle<CloseReason>,
    peer: DuplexStream,
    inbox: mpsc::UnboundedReceiver<T>,
    writes: Writes,
}

/// A pipe of `capacity` bytes whose session end records its writes.
fn recorded_pipe(capacity: usize) -> (Recording, DuplexStream, Writes) {
    let (ours, peer) = tokio::io::duplex(capacity);
    let writes = Writes::default();
    let stream = Recording {
        inner: ours,
        writes: writes.clone(),
    };
    (stream, peer, writes)
}

fn start(cfg: SessionConfig, gate: Option<Arc<Notify>>, prequeue: &[Bytes]) -> Harness {
    let (stream, peer, writes) = recorded_pipe(4 << 20);
    let handle = session::new_session(1, info(), 8 << 20);
    for f in prequeue {
        handle.try_send(f.clone()).unwrap();
    }
    let (tx, inbox) = mpsc::unbounded_channel();
    let inbound = Arc::new(Collect { tx, gate });
    let task = tokio::spawn(session::run(
        stream,
        handle.clone(),
        inbound,
        cfg,
        BytesMut::new(),
    ));
    Harness {
        handle,
        task,
        peer,
        inbox,
        writes,
    }
}

/// A session over the toy framing, on a pipe of `capacity` bytes.
fn start_toy(capacity: usize, prequeue: &[Bytes]) -> Harness<Toy, Bytes> {
    let (stream, peer, writes) = recorded_pipe(capacity);
    let handle = session::new_framed_session::<Toy>(1, info(), 8 << 20);
    for f in prequeue {
        handle.try_send(f.clone()).unwrap();
    }
    let (tx, inbox) = mpsc::unbounded_channel();
    let cfg = cfg();
    let framing = Toy {
        max: cfg.max_packet,
    };
    let handler = Arc::new(Collect { tx, gate: None });
    let task = tokio::spawn(session::run_framed(
        stream,
        handle.clone(),
        framing,
        handler,
        cfg,
        BytesMut::new(),
    ));
    Harness {
        handle,
        task,
        peer,
        inbox,
        writes,
    }
}

/// Reads packets from the raw end until `n` arrived or end of file.
async fn read_packets<R: AsyncRead + Unpin>(peer: &mut R, n: usize) -> Vec<Packet> {
    let mut dec = Decoder::new(1 << 24);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    while out.len() < n {
        while let Some(p) = dec.decode(&mut buf).unwrap() {
            out.push(p);
        }
        if out.len() >= n || peer.read_buf(&mut buf).await.unwrap() == 0 {
            break;
        }
    }
    out
}

fn frame(seq: u32, len: usize) -> Bytes {
    Packet {
        version: 1,
        // A type this version does not define: the session passes it on as it is.
        packet_type: PacketType(0x7f),
        seq,
        ext: chainmesh::wire::Ext(0),
        options: None,
        payload: Bytes::from(vec![0xab; len]),
    }
    .to_bytes()
}

async fn watchdog<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(WATCHDOG, f)
        .await
        .expect("watchdog: the session hung")
}

#[tokio::test(start_paused = true)]
async fn heartbeat_goes_out_only_when_the_link_is_idle() {
    watchdog(async {
        let mut h = start(cfg(), None, &[]);
        // Idle: a heartbeat per interval. Keep the session alive by answering with heartbeats.
        let hb = Packet::heartbeat(1).to_bytes();
        let got = read_packets(&mut h.peer, 1).await;
        assert_eq!(got[0].packet_type, PacketType::HEARTBEAT);
        h.peer.write_all(&hb).await.unwrap();
        // Busy: a frame every 20 ms for a second carries no heartbeat. The raw peer keeps
        // heartbeating meanwhile, as a real peer would, so it is not dropped as idle.
        let sender = h.handle.clone();
        let busy = tokio::spawn(async move {
            for i in 0..50 {
                sender.send(frame(i + 1, 8)).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let (mut rd, mut wr) = tokio::io::split(h.peer);
        let beats = tokio::spawn(async move {
            for _ in 0..12 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                wr.write_all(&hb).await.unwrap();
            }
            wr
        });
        let got = read_packets(&mut rd, 50).await;
        busy.await.unwrap();
        let wr = beats.await.unwrap();
        let peer = rd.unsplit(wr);
        assert_eq!(got.len(), 50);
        assert!(
            got.iter().all(|p| p.packet_type != PacketType::HEARTBEAT),
            "no heartbeat on a busy link"
        );
        h.handle.close(CloseReason::Shutdown);
        drop(peer);
        h.task.await.unwrap();
    })
    .await;
}

/// Waits for a session whose peer stays silent and checks it ends with the idle timeout
/// (300 ms in `cfg()` and the toy harness), not sooner and not much later.
async fn ends_on_idle_timeout(task: tokio::task::JoinHandle<CloseReason>) {
    let started = tokio::time::Instant::now();
    assert_eq!(task.await.unwrap(), CloseReason::IdleTimeout);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_millis(400),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_is_dropped_after_the_idle_timeout() {
    watchdog(async {
        let h = start(cfg(), None, &[]);
        ends_on_idle_timeout(h.task).await;
        drop(h.peer);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn malformed_input_closes_the_session_with_a_protocol_reason() {
    watchdog(async {
        let mut h = start(cfg(), None, &[]);
        h.peer.write_all(&[0, 0, 0, 3, 1, 2, 3]).await.unwrap();
        match h.task.await.unwrap() {
            CloseReason::Protocol(m) => assert!(m.contains("Length"), "{m}"),
            other => panic!("expected a protocol error, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn queued_packets_are_batched_into_few_writes() {
    watchdog(async {
        let frames: Vec<Bytes> = (0..2000).map(|i| frame(i + 1, 50)).collect();
        let mut h = start(cfg(), None, &frames);
        let got = read_packets(&mut h.peer, 2000).await;
        assert_eq!(got.len(), 2000);
        assert!(
            got.windows(2).all(|w| w[0].seq + 1 == w[1].seq),
            "order kept"
        );
        let writes = h.writes.lock().unwrap().len();
        assert!(writes <= 4, "2000 queued packets took {writes} writes");
        h.handle.close(CloseReason::Shutdown);
        drop(h.peer);
        h.task.await.unwrap();
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn big_small_and_in_place_frames_keep_their_order_and_give_the_budget_back() {
    watchdog(async {
        let mut h = start(cfg(), None, &[]);
        let big = session::BIG_FRAME + 100;
        // Small frames around big ones (queued as their own chunks) and frames encoded
        // straight into the queue: all in the order they were queued.
        for i in 0..60u32 {
            let seq = i + 1;
            match i % 3 {
                0 => h.handle.try_send(frame(seq, 40)).unwrap(),
                1 => {
                    let f = frame(seq, 30);
                    h.handle
                        .offer_encoded(f.len(), |out| out.extend_from_slice(&f))
                        .unwrap();
                }
                _ => h.handle.try_send(frame(seq, big)).unwrap(),
            }
        }
        let got = read_packets(&mut h.peer, 60).await;
        let seqs: Vec<u32> = got.iter().map(|p| p.seq).collect();
        assert_eq!(seqs, (1..=60).collect::<Vec<_>>());
        assert!(got
            .iter()
            .skip(2)
            .step_by(3)
            .all(|p| p.payload.len() == big));
        let drained = wait_until(WATCHDOG, || h.handle.queued_bytes() == 0).await;
        assert!(drained, "every written byte's permit came back");
        h.handle.close(CloseReason::Shutdown);
        drop(h.peer);
        h.task.await.unwrap();
        assert_eq!(
            h.handle.try_send(frame(99, 8)),
            Err(session::QueueError::Closed)
        );
        assert_eq!(
            h.handle
                .offer_encoded(8, |_| unreachable!("not called when closed")),
            Err(session::QueueError::Closed)
        );
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn close_flushes_what_was_queued_then_ends_the_stream() {
    watchdog(async {
        let frames: Vec<Bytes> = (0..100).map(|i| frame(i + 1, 1000)).collect();
        let mut h = start(cfg(), None, &frames);
        h.handle.close(CloseReason::Shutdown);
        let got = read_packets(&mut h.peer, usize::MAX).await;
        assert_eq!(got.len(), 100, "everything queued before the close arrives");
        drop(h.peer);
        assert_eq!(h.task.await.unwrap(), CloseReason::Shutdown);
        assert!(
            h.handle.try_send(frame(1, 1)).is_err(),
            "a closed session takes nothing"
        );
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_slow_consumer_pauses_reading_but_not_writing() {
    watchdog(async {
        let gate = Arc::new(Notify::new());
        let mut h = start(cfg(), Some(gate.clone()), &[]);
        // Two packets; delivery of the first waits on the gate.
        let mut two = BytesMut::new();
        two.extend_from_slice(&frame(1, 4));
        two.extend_from_slice(&frame(2, 4));
        h.peer.write_all(&two).await.unwrap();
        let first = h.inbox.recv().await.unwrap();
        assert_eq!(first.seq, 1);
        // While blocked for longer than the idle timeout, the session still heartbeats, is not
        // dropped as idle (the peer is not silent: we are not listening), and the second
        // packet stays undelivered.
        let hb = Packet::heartbeat(1).to_bytes();
        for _ in 0..5 {
            h.peer.write_all(&hb).await.unwrap();
            let got = read_packets(&mut h.peer, 1).await;
            assert_eq!(got[0].packet_type, PacketType::HEARTBEAT);
            assert!(
                h.inbox.try_recv().is_err(),
                "no delivery past a full consumer"
            );
        }
        gate.notify_one();
        let second = h.inbox.recv().await.unwrap();
        assert_eq!(second.seq, 2);
        h.handle.close(CloseReason::Shutdown);
        drop(h.peer);
        h.task.await.unwrap();
    })
    .await;
}

/// Checks that no write offered bytes of two frames: each write's buffer must be the stream
/// from where the previous write stopped, and end within the frame it starts in. Returns how
/// many writes there were.
fn assert_one_frame_per_write(writes: &Writes, frames: &[Bytes]) -> usize {
    let stream: Vec<u8> = frames.iter().flat_map(|f| f.to_vec()).collect();
    let mut ends = frames.iter().scan(0, |end, f| {
        *end += f.len();
        Some(*end)
    });
    let mut frame_end = ends.next().unwrap_or(0);
    let mut at = 0;
    let writes = writes.lock().unwrap();
    for (i, w) in writes.iter().enumerate() {
        while at >= frame_end {
            frame_end = ends.next().expect("writes past the last frame");
        }
        assert!(
            at + w.offered.len() <= frame_end,
            "write {i} offered {} bytes at offset {at}, past its frame's end at {frame_end}",
            w.offered.len()
        );
        assert_eq!(w.offered, stream[at..at + w.offered.len()], "write {i}");
        at += w.taken;
    }
    assert_eq!(at, stream.len(), "every frame was written");
    writes.len()
}

#[tokio::test(start_paused = true)]
async fn without_coalescing_queued_frames_go_out_one_per_write_big_ones_too() {
    watchdog(async {
        // Some queued before the session runs, the rest in one go while it is running: with
        // coalescing, either lot would share writes.
        let before: Vec<Bytes> = (0..20).map(|i| toy_data(i, 50)).collect();
        let mut h = start_toy(8 << 20, &before);
        assert_eq!(read_toy(&mut h.peer, 20).await, before);
        let mut after = Vec::new();
        for i in 0..40u8 {
            let f = match i % 4 {
                3 => toy_data(i, session::BIG_FRAME + 10),
                _ => toy_data(i, 30 + usize::from(i)),
            };
            match i % 4 {
                0 | 3 => h.handle.try_send(f.clone()).unwrap(),
                1 => h
                    .handle
                    .offer_encoded(f.len(), |out| out.extend_from_slice(&f))
                    .unwrap(),
                _ => h.handle.offer_shared(&f).unwrap(),
            }
            after.push(f);
        }
        assert_eq!(read_toy(&mut h.peer, 40).await, after);
        let all: Vec<Bytes> = before.iter().chain(&after).cloned().collect();
        assert_eq!(assert_one_frame_per_write(&h.writes, &all), 60);
        assert_eq!(h.handle.stats.packets_out.load(Ordering::Relaxed), 60);
        assert_eq!(h.handle.queued_bytes(), 0, "the budget is given back");
        h.handle.close(CloseReason::Shutdown);
        drop(h.peer);
        assert_eq!(h.task.await.unwrap(), CloseReason::Shutdown);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn without_coalescing_a_stream_taking_frames_in_pieces_gets_no_write_across_frames() {
    watchdog(async {
        // A pipe smaller than most frames: writes are partial and often blocked.
        let frames: Vec<Bytes> = (0..30u8)
            .map(|i| toy_data(i, 100 + 700 * usize::from(i % 5)))
            .chain([toy_data(99, session::BIG_FRAME)])
            .collect();
        let mut h = start_toy(1000, &frames);
        assert_eq!(read_toy(&mut h.peer, frames.len()).await, frames);
        let writes = assert_one_frame_per_write(&h.writes, &frames);
        assert!(writes > frames.len(), "the stream took frames in pieces");
        assert_eq!(h.handle.queued_bytes(), 0, "the budget is given back");
        h.handle.close(CloseReason::Shutdown);
        drop(h.peer);
        h.task.await.unwrap();
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn with_the_p2p_framing_frames_queued_on_a_running_session_share_one_write() {
    watchdog(async {
        let mut h = start(cfg(), None, &[]);
        let hb = Packet::heartbeat(1).to_bytes();
        h.peer.write_all(&hb).await.unwrap();
        let got = read_packets(&mut h.peer, 1).await;
        assert_eq!(got[0].packet_type, PacketType::HEARTBEAT);
        let beats = h.writes.lock().unwrap().len();
        for i in 0..90u32 {
            let f = frame(i + 1, 40);
            match i % 3 {
                0 => h.handle.try_send(f).unwrap(),
                1 => h
                    .handle
                    .offer_encoded(f.len(), |out| out.extend_from_slice(&f))
                    .unwrap(),
                _ => h.handle.offer_shared(&f).unwrap(),
            }
        }
        let got = read_packets(&mut h.peer, 90).await;
        assert_eq!(got.len(), 90);
        assert_eq!(h.writes.lock().unwrap().len() - beats, 1);
        assert_eq!(h.handle.queued_bytes(), 0, "the budget is given back");
        h.handle.close(CloseReason::Shutdown);
        drop(h.peer);
        h.task.await.unwrap();
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn without_coalescing_an_idle_link_gets_heartbeats_and_consumes_the_peers() {
    watchdog(async {
        let mut h = start_toy(1 << 16, &[]);
        let beat = toy_frame(1, b"");
        let started = tokio::time::Instant::now();
        // Longer than the idle timeout: the peer's heartbeats keep the session up.
        for _ in 0..5 {
            assert_eq!(read_toy(&mut h.peer, 1).await, std::slice::from_ref(&beat));
            h.peer.write_all(&beat).await.unwrap();
        }
        assert!(started.elapsed() >= Duration::from_millis(500));
        assert!(h.inbox.try_recv().is_err(), "heartbeats are not data");
        assert!(!h.task.is_finished());
        assert_one_frame_per_write(&h.writes, &vec![beat; 5]);
        h.handle.close(CloseReason::Shutdown);
        drop(h.peer);
        assert_eq!(h.task.await.unwrap(), CloseReason::Shutdown);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn without_coalescing_a_silent_peer_is_dropped_after_the_idle_timeout() {
    watchdog(async {
        let h = start_toy(1 << 16, &[]);
        ends_on_idle_timeout(h.task).await;
        drop(h.peer);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_goodbye_of_the_framing_ends_the_session_after_the_data_before_it() {
    watchdog(async {
        let mut h = start_toy(1 << 16, &[]);
        let data = toy_data(1, 10);
        let bye = Toy { max: 64 }.goodbye("done").unwrap();
        h.peer
            .write_all(&[data.clone(), bye].concat())
            .await
            .unwrap();
        assert_eq!(h.task.await.unwrap(), CloseReason::PeerLeft("done".into()));
        assert_eq!(h.inbox.recv().await, Some(data));
        assert!(h.inbox.recv().await.is_none(), "the goodbye is not data");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_decode_error_of_the_framing_closes_with_a_protocol_reason() {
    watchdog(async {
        let mut h = start_toy(1 << 16, &[]);
        h.peer.write_all(&toy_frame(9, b"x")).await.unwrap();
        match h.task.await.unwrap() {
            CloseReason::Protocol(m) => assert_eq!(m, "kind 9 at offset 4"),
            other => panic!("expected a protocol error, got {other:?}"),
        }
    })
    .await;
}
