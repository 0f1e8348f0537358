//! The ceiling: bare mutual TLS with chainmesh's own OpenSSL configuration
//! (`chainmesh::tls::TlsContext` on both ends, reading ahead into OpenSSL's record buffer, and
//! the `TlsStream` straight over the TCP socket as in `crates/chainmesh/src/peers/setup.rs`),
//! carrying length-prefixed frames with chainmesh's 14-byte header layout but no addressing
//! options, written in batches by one task per connection that reads and writes the stream in
//! one poll loop as `src/session/driver.rs` does. Each frame is built in its own buffer and
//! copied into the batch (chainmesh's session encodes a unicast straight into its batch
//! instead, one allocation and one copy fewer). No node layer: no peer set, no per-module
//! queues, no application task; receivers count frames where they decode them.

use std::collections::HashMap;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use chainmesh::admission::Admission;
use chainmesh::identity::{Curve, NetworkCa};
use chainmesh::tls::{TlsContext, TlsStream};
use parking_lot::{Mutex, RwLock};
use tokio::io::AsyncWrite;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::harness::{wait_until, Pinned, Receive, Sender, Sides, Sink, Star, System};

/// chainmesh's fixed header: Length u32, Version u16, PacketType u16, Seq u32, Ext u16.
const HEADER: usize = 14;
/// Ext flags, as chainmesh uses them.
const EXT_RESPONSE: u16 = 0x0001;
const EXT_REQUEST: u16 = 0x0004;
/// chainmesh's Unicast packet type.
const UNICAST: u16 = 5;
/// At most this much is copied into one batch before it is written.
const WRITE_BATCH: usize = 256 * 1024;
/// Room made in the read buffer before each read, as chainmesh's session: one TLS record.
const READ_CHUNK: usize = 17 * 1024;
/// The write queue's bound, in bytes, as chainmesh's session queue (a frame larger than the
/// whole budget waits for an empty queue).
const QUEUE_BYTES: usize = 8 * 1024 * 1024;
/// Frames at least this large are written from their own buffer, not copied into a batch.
const DIRECT_WRITE: usize = 64 * 1024;
/// Loop rounds per wake before yielding to other tasks.
const ROUNDS: usize = 64;
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

type Tls = TlsStream<TcpStream>;
type Pending = Arc<Mutex<HashMap<u32, oneshot::Sender<Bytes>>>>;

/// Bare TLS links between two TLS identities of one CA on `curve`.
pub struct Baseline {
    pub curve: Curve,
}

/// A client and a server TLS context issued by one CA.
#[derive(Clone)]
struct Contexts {
    client: TlsContext,
    server: TlsContext,
}

impl Baseline {
    fn contexts(&self) -> Result<Contexts> {
        let ca = NetworkCa::generate(self.curve).context("generating a CA")?;
        let ctx = |name: &str| -> Result<TlsContext> {
            let identity = ca
                .issue_node(name)
                .and_then(|c| c.identity())
                .context("issuing a certificate")?;
            TlsContext::new(&identity, Arc::new(RwLock::new(Admission::default())))
                .context("building a TLS context")
        };
        Ok(Contexts {
            client: ctx("client")?,
            server: ctx("server")?,
        })
    }
}

/// TCP connect, then the client side of the TLS handshake, as chainmesh dials.
async fn dial(ctx: &TlsContext, addr: SocketAddr) -> Result<Tls> {
    let tcp = TcpStream::connect(addr).await.context("tcp connect")?;
    tcp.set_nodelay(true)?;
    let (tls, _) = ctx.connect(tcp).await?;
    Ok(tls)
}

/// The server side of the TLS handshake on an accepted connection.
async fn accept(ctx: &TlsContext, tcp: TcpStream) -> Result<Tls> {
    tcp.set_nodelay(true)?;
    let (tls, _) = ctx.accept(tcp).await?;
    Ok(tls)
}

fn put_frame(buf: &mut BytesMut, seq: u32, ext: u16, payload: &[u8]) {
    buf.reserve(HEADER + payload.len());
    buf.put_u32((HEADER + payload.len()) as u32);
    buf.put_u16(1);
    buf.put_u16(UNICAST);
    buf.put_u32(seq);
    buf.put_u16(ext);
    buf.put_slice(payload);
}

/// One frame as its own buffer: a copy of the payload, as chainmesh's encoder makes.
fn frame(seq: u32, ext: u16, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(HEADER + payload.len());
    put_frame(&mut b, seq, ext, payload);
    b.freeze()
}

/// One connection's task state: writes queued frames in batches, reads and handles frames.
///
/// Small frames are copied into `next` while `wbuf` is being written, and the two swap once
/// `wbuf` is fully written: OpenSSL requires a write that returned "would block" to be
/// retried with the same buffer, unless the context sets `SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER`.
/// A frame of [`DIRECT_WRITE`] bytes or more that arrives with nothing batched is written from
/// its own buffer instead of being copied.
struct Link {
    stream: Tls,
    queue: mpsc::UnboundedReceiver<Bytes>,
    queue_open: bool,
    /// The queue's byte budget: a frame's permits come back once it is written.
    budget: Arc<Semaphore>,
    wbuf: BytesMut,
    wbuf_permits: usize,
    next: BytesMut,
    next_permits: usize,
    direct: Option<Bytes>,
    direct_permits: usize,
    rbuf: BytesMut,
    sink: Option<Arc<Sink>>,
    pending: Pending,
}

impl Link {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        for _ in 0..ROUNDS {
            let mut progress = false;
            while self.queue_open && self.direct.is_none() && self.next.len() < WRITE_BATCH {
                match self.queue.poll_recv(cx) {
                    Poll::Ready(Some(f)) => {
                        let permits = f.len().min(QUEUE_BYTES);
                        if f.len() >= DIRECT_WRITE && self.wbuf.is_empty() && self.next.is_empty() {
                            self.direct = Some(f);
                            self.direct_permits = permits;
                        } else {
                            self.next.extend_from_slice(&f);
                            self.next_permits += permits;
                        }
                    }
                    Poll::Ready(None) => self.queue_open = false,
                    Poll::Pending => break,
                }
            }
            // Oldest bytes first: the batch being written, then a direct frame, then the
            // next batch.
            loop {
                if self.wbuf.is_empty() && self.direct.is_none() && !self.next.is_empty() {
                    self.wbuf.clear();
                    std::mem::swap(&mut self.wbuf, &mut self.next);
                    self.wbuf_permits = std::mem::take(&mut self.next_permits);
                }
                let chunk: &[u8] = match (&self.direct, self.wbuf.is_empty()) {
                    (_, false) => &self.wbuf,
                    (Some(d), true) => d,
                    (None, true) => break,
                };
                match Pin::new(&mut self.stream).poll_write(cx, chunk) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                    }
                    Poll::Ready(Ok(n)) => {
                        progress = true;
                        if !self.wbuf.is_empty() {
                            self.wbuf.advance(n);
                            if self.wbuf.is_empty() {
                                self.budget
                                    .add_permits(std::mem::take(&mut self.wbuf_permits));
                            }
                        } else if let Some(d) = &mut self.direct {
                            d.advance(n);
                            if d.is_empty() {
                                self.direct = None;
                                self.budget
                                    .add_permits(std::mem::take(&mut self.direct_permits));
                            }
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => break,
                }
            }
            // Responses are batched into `next` while reading: stop reading while it is full.
            if self.next.len() < WRITE_BATCH {
                self.rbuf.reserve(READ_CHUNK);
                match tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.rbuf)
                {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Ok(())),
                    Poll::Ready(Ok(_)) => {
                        self.handle_frames()?;
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {}
                }
            }
            if !progress {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn handle_frames(&mut self) -> std::io::Result<()> {
        while self.rbuf.len() >= HEADER {
            let len = u32::from_be_bytes([self.rbuf[0], self.rbuf[1], self.rbuf[2], self.rbuf[3]])
                as usize;
            if len < HEADER {
                return Err(std::io::Error::other("frame shorter than its header"));
            }
            if self.rbuf.len() < len {
                self.rbuf.reserve(len - self.rbuf.len());
                break;
            }
            let mut f = self.rbuf.split_to(len);
            let seq = u32::from_be_bytes([f[8], f[9], f[10], f[11]]);
            let ext = u16::from_be_bytes([f[12], f[13]]);
            f.advance(HEADER);
            if ext & EXT_RESPONSE != 0 {
                if let Some(reply) = self.pending.lock().remove(&seq) {
                    let _ = reply.send(f.freeze());
                }
                continue;
            }
            if let Some(sink) = &self.sink {
                sink.record(f.len());
            }
            if ext & EXT_REQUEST != 0 {
                put_frame(&mut self.next, seq, EXT_RESPONSE, &f);
            }
        }
        Ok(())
    }
}

/// A link over `stream` and the end its sender uses. Run the link with [`Link::run`].
fn new_link(stream: Tls, sink: Option<Arc<Sink>>) -> (LinkEnd, Link) {
    let (queue, rx) = mpsc::unbounded_channel();
    let budget = Arc::new(Semaphore::new(QUEUE_BYTES));
    let pending = Pending::default();
    let link = Link {
        stream,
        queue: rx,
        queue_open: true,
        budget: budget.clone(),
        wbuf_permits: 0,
        next_permits: 0,
        direct_permits: 0,
        wbuf: BytesMut::with_capacity(WRITE_BATCH),
        next: BytesMut::with_capacity(WRITE_BATCH),
        direct: None,
        rbuf: BytesMut::new(),
        sink,
        pending: pending.clone(),
    };
    (
        LinkEnd {
            queue,
            budget,
            pending,
        },
        link,
    )
}

impl Link {
    /// Runs until the peer closes the connection or it fails.
    async fn run(mut self) {
        let _ = poll_fn(|cx| self.poll(cx)).await;
    }
}

/// The sending end of one link.
struct LinkEnd {
    queue: mpsc::UnboundedSender<Bytes>,
    budget: Arc<Semaphore>,
    pending: Pending,
}

impl LinkEnd {
    /// Queues a frame once the byte budget has room for it.
    async fn push(&self, frame: Bytes) -> Result<()> {
        let permits = frame.len().min(QUEUE_BYTES) as u32;
        self.budget
            .acquire_many(permits)
            .await
            .map_err(|_| anyhow!("baseline link closed"))?
            .forget();
        self.queue
            .send(frame)
            .map_err(|_| anyhow!("baseline link closed"))
    }
}

/// The client side of one link per receiver.
pub struct BaselineSender {
    links: Vec<LinkEnd>,
    seq: AtomicU32,
}

impl Sender for BaselineSender {
    fn receivers(&self) -> usize {
        self.links.len()
    }

    async fn send(&self, to: usize, payload: Bytes) -> Result<()> {
        self.links[to].push(frame(0, 0, &payload)).await
    }

    async fn request(&self, to: usize, payload: Bytes) -> Result<Bytes> {
        let link = &self.links[to];
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        link.pending.lock().insert(seq, tx);
        link.push(frame(seq, EXT_REQUEST, &payload)).await?;
        rx.await
            .map_err(|_| anyhow!("baseline link closed before the response"))
    }
}

/// A listener on the current runtime. Every accepted connection completes the server
/// handshake and is counted in `accepted`; then, serving, a link task reads it (counting
/// messages in `sink` and answering requests), or, stalled, nobody ever reads it again.
async fn listen(
    ctx: TlsContext,
    mode: Receive,
    sink: Option<Arc<Sink>>,
    accepted: Arc<Sink>,
) -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (ctx, sink, accepted) = (ctx.clone(), sink.clone(), accepted.clone());
            tokio::spawn(async move {
                let Ok(stream) = accept(&ctx, tcp).await else {
                    return;
                };
                accepted.record(0);
                match mode {
                    // The server end's queue is dropped at once: responses go straight
                    // into its write buffer.
                    Receive::Serve => new_link(stream, sink).1.run().await,
                    Receive::Stall => {
                        let _unread = stream;
                        std::future::pending::<()>().await;
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// Plain listeners for the connection scenarios, all with one server identity.
pub struct Plain {
    ctx: Contexts,
    addrs: Vec<SocketAddr>,
    /// Connections accepted so far, over every listener.
    accepted: Arc<Sink>,
    /// Client ends of the mesh, kept open.
    clients: Mutex<Vec<LinkEnd>>,
}

impl System for Baseline {
    const NAME: &'static str = "bare-TLS baseline";
    const SHORT: &'static str = "baseline";
    type Sender = BaselineSender;
    type Nodes = Plain;

    fn star(&self, sides: &Sides, receivers: usize, mode: Receive) -> Result<Star<BaselineSender>> {
        let ctx = self.contexts()?;
        let sink = Arc::new(Sink::default());
        let accepted = Arc::new(Sink::default());
        let mut links = Vec::with_capacity(receivers);
        for _ in 0..receivers {
            let (server, s, a) = (ctx.server.clone(), sink.clone(), accepted.clone());
            let addr = sides
                .receiver
                .run(async move { listen(server, mode, Some(s), a).await })??;
            let client = ctx.client.clone();
            links.push(sides.sender.run(async move {
                let (end, link) = new_link(dial(&client, addr).await?, None);
                tokio::spawn(link.run());
                anyhow::Ok(end)
            })??);
        }
        let want = receivers as u64;
        sides.receiver.run(async move {
            wait_until(SETUP_TIMEOUT, "baseline accepts", || {
                accepted.messages() >= want
            })
            .await
        })??;
        Ok(Star {
            sender: Arc::new(BaselineSender {
                links,
                seq: AtomicU32::new(1),
            }),
            sink,
            _keep: Box::new(()),
        })
    }

    fn nodes(&self, rt: &Pinned, n: usize) -> Result<Plain> {
        let ctx = self.contexts()?;
        let accepted = Arc::new(Sink::default());
        let mut addrs = Vec::with_capacity(n);
        for _ in 0..n {
            let (server, a) = (ctx.server.clone(), accepted.clone());
            addrs.push(rt.run(async move { listen(server, Receive::Serve, None, a).await })??);
        }
        Ok(Plain {
            ctx,
            addrs,
            accepted,
            clients: Mutex::new(Vec::new()),
        })
    }

    fn connect_mesh(&self, rt: &Pinned, nodes: &Plain) -> Result<()> {
        let n = nodes.addrs.len();
        // Node i dials every node after it: one connection per pair.
        let targets: Vec<SocketAddr> = (0..n)
            .flat_map(|i| nodes.addrs[i + 1..].iter().copied())
            .collect();
        let want = targets.len() as u64;
        let before = nodes.accepted.messages();
        let ctx = nodes.ctx.client.clone();
        let ends = rt.run(async move {
            let streams = dial_all(ctx, targets).await?;
            // Each client end gets an idle link task, as a live connection has.
            let ends: Vec<LinkEnd> = streams
                .into_iter()
                .map(|s| {
                    let (end, link) = new_link(s, None);
                    tokio::spawn(link.run());
                    end
                })
                .collect();
            anyhow::Ok(ends)
        })??;
        nodes.clients.lock().extend(ends);
        let accepted = nodes.accepted.clone();
        rt.run(async move {
            wait_until(SETUP_TIMEOUT, "baseline mesh accepts", || {
                accepted.messages() - before >= want
            })
            .await
        })?
    }

    fn connect_burst(&self, rt: &Pinned, nodes: &Plain) -> Result<Duration> {
        let clients = nodes.addrs.len() - 1;
        let before = nodes.accepted.messages();
        let (ctx, hub, accepted) = (
            nodes.ctx.client.clone(),
            nodes.addrs[0],
            nodes.accepted.clone(),
        );
        rt.run(async move {
            let start = Instant::now();
            let streams = dial_all(ctx, vec![hub; clients]).await?;
            wait_until(SETUP_TIMEOUT, "baseline accepts", || {
                accepted.messages() - before >= clients as u64
            })
            .await?;
            let elapsed = start.elapsed();
            // Closes the connections; the server ends see them close and stop.
            drop(streams);
            anyhow::Ok(elapsed)
        })?
    }
}

/// Dials every address at once; returns the TLS streams once every handshake is done.
async fn dial_all(ctx: TlsContext, targets: Vec<SocketAddr>) -> Result<Vec<Tls>> {
    let tasks: Vec<_> = targets
        .into_iter()
        .map(|addr| {
            let ctx = ctx.clone();
            tokio::spawn(async move { dial(&ctx, addr).await })
        })
        .collect();
    let mut streams = Vec::with_capacity(tasks.len());
    for t in tasks {
        streams.push(t.await.map_err(|e| anyhow!("dial task failed: {e}"))??);
    }
    Ok(streams)
}
