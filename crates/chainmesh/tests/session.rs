//! The session task over in-memory pipes, on a paused clock: heartbeats, idle timeout, write
//! batching, graceful close, malformed input and backpressure. Every test runs under a
//! watchdog so a hang fails instead of stalling the suite.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chainmesh::session::{
    self, CloseReason, Direction, Inbound, Pending, SessionConfig, SessionHandle, SessionInfo,
};
use chainmesh::wire::{Decoder, Packet, PacketType};
use chainmesh_testkit::{id, wait_until};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::sync::{mpsc, Notify};

const WATCHDOG: Duration = Duration::from_secs(60);

fn cfg() -> SessionConfig {
    SessionConfig {
        heartbeat_interval: Duration::from_millis(100),
        idle_timeout: Duration::from_millis(300),
        max_packet: 1 << 20,
        version: 1,
        linger: Duration::from_millis(500),
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

/// Hands every packet to a channel; when `gate` is set, each delivery waits for it.
struct Collect {
    tx: mpsc::UnboundedSender<Packet>,
    gate: Option<Arc<Notify>>,
}

impl Inbound for Collect {
    fn on_packet(&self, _: &SessionHandle, packet: Packet, _: Bytes) -> Option<Pending> {
        let _ = self.tx.send(packet);
        let gate = self.gate.clone()?;
        Some(Box::pin(async move { gate.notified().await }))
    }
}

/// Counts write calls on the stream under the session.
struct CountingWrites {
    inner: DuplexStream,
    writes: Arc<AtomicUsize>,
}

impl AsyncRead for CountingWrites {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountingWrites {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.inner).poll_write(cx, buf);
        if r.is_ready() {
            me.writes.fetch_add(1, Ordering::SeqCst);
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

struct Harness {
    handle: SessionHandle,
    task: tokio::task::JoinHandle<CloseReason>,
    peer: DuplexStream,
    inbox: mpsc::UnboundedReceiver<Packet>,
    writes: Arc<AtomicUsize>,
}

fn start(cfg: SessionConfig, gate: Option<Arc<Notify>>, prequeue: &[Bytes]) -> Harness {
    let (ours, peer) = tokio::io::duplex(4 << 20);
    let writes = Arc::new(AtomicUsize::new(0));
    let stream = CountingWrites {
        inner: ours,
        writes: writes.clone(),
    };
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

#[tokio::test(start_paused = true)]
async fn a_silent_peer_is_dropped_after_the_idle_timeout() {
    watchdog(async {
        let h = start(cfg(), None, &[]);
        let started = tokio::time::Instant::now();
        let reason = h.task.await.unwrap();
        assert_eq!(reason, CloseReason::IdleTimeout);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(300) && waited < Duration::from_millis(400),
            "{waited:?}"
        );
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
        let writes = h.writes.load(Ordering::SeqCst);
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
