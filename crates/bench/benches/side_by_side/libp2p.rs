//! rust-libp2p as most Rust users would reach for it: tokio, TCP (no Nagle), TLS, yamux and
//! the request-response behaviour, with a raw length-prefixed codec.
//!
//! Request-response has no one-way message: a one-way send is a request answered with an
//! empty response, with at most [`WINDOW`] of them unanswered so the sender's memory stays
//! bounded (libp2p itself would queue without limit). Every request opens a yamux substream
//! and negotiates the protocol on it; that is libp2p's cost, not the codec's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _, Result};
use bytes::Bytes;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, Codec, Event, Message, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::harness::{wait_until, Pinned, Receive, Sender, Sides, Sink, Star, System};

const PROTOCOL: StreamProtocol = StreamProtocol::new("/chainmesh-bench/1.0.0");
/// One-way messages sent and not yet acknowledged, per sender.
const WINDOW: usize = 256;
/// Substreams a connection may have open; above every window used here.
const MAX_STREAMS: usize = 1024;
/// Largest message the codec accepts.
const MAX_MESSAGE: usize = 8 << 20;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// rust-libp2p 0.57 swarms.
pub struct Libp2p;

/// A request: one-way (answered with nothing) or echoed back.
pub struct Req {
    echo: bool,
    body: Bytes,
}

/// Frames: a u32 length, then (requests only) one byte saying whether to echo, then the body.
#[derive(Clone, Default)]
pub struct RawCodec;

async fn read_body<T: AsyncRead + Unpin + Send>(io: &mut T, len: usize) -> std::io::Result<Bytes> {
    if len > MAX_MESSAGE {
        return Err(std::io::Error::other("message too large"));
    }
    let mut body = vec![0u8; len];
    io.read_exact(&mut body).await?;
    Ok(Bytes::from(body))
}

async fn read_len<T: AsyncRead + Unpin + Send>(io: &mut T) -> std::io::Result<usize> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    Ok(u32::from_be_bytes(len) as usize)
}

impl Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Req;
    type Response = Bytes;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> std::io::Result<Req>
    where
        T: AsyncRead + Unpin + Send,
    {
        let len = read_len(io).await?;
        let mut echo = [0u8; 1];
        io.read_exact(&mut echo).await?;
        Ok(Req {
            echo: echo[0] == 1,
            body: read_body(io, len).await?,
        })
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> std::io::Result<Bytes>
    where
        T: AsyncRead + Unpin + Send,
    {
        let len = read_len(io).await?;
        read_body(io, len).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Req,
    ) -> std::io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let mut head = [0u8; 5];
        head[..4].copy_from_slice(&(req.body.len() as u32).to_be_bytes());
        head[4] = u8::from(req.echo);
        io.write_all(&head).await?;
        io.write_all(&req.body).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Bytes,
    ) -> std::io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&(res.len() as u32).to_be_bytes()).await?;
        io.write_all(&res).await
    }
}

type Behaviour = request_response::Behaviour<RawCodec>;

fn build_swarm() -> Result<Swarm<Behaviour>> {
    let cfg = request_response::Config::default()
        .with_request_timeout(REQUEST_TIMEOUT)
        .with_max_concurrent_streams(MAX_STREAMS);
    Ok(libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default().nodelay(true),
            libp2p::tls::Config::new,
            libp2p::yamux::Config::default,
        )?
        .with_behaviour(|_| {
            Behaviour::with_codec(RawCodec, [(PROTOCOL, ProtocolSupport::Full)], cfg)
        })?
        // Keep idle connections: the memory scenario measures them idle.
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build())
}

/// What the swarm task is asked to do.
enum Cmd {
    Dial(Multiaddr),
    DisconnectAll,
    Request { peer: PeerId, req: Req, done: Done },
}

/// Who waits for a request's outcome.
enum Done {
    /// A one-way send: the window slot is freed when the empty response arrives.
    Ack(OwnedSemaphorePermit),
    Reply(oneshot::Sender<Result<Bytes, String>>),
}

/// A swarm running in its own task.
#[derive(Clone)]
pub struct P2pNode {
    cmds: mpsc::Sender<Cmd>,
    peer: PeerId,
    addr: Multiaddr,
    connections: Arc<AtomicUsize>,
    failures: Arc<AtomicU64>,
}

impl P2pNode {
    /// Builds a swarm listening on an ephemeral loopback port and starts its task on the
    /// current runtime.
    async fn start(mode: Receive, sink: Arc<Sink>) -> Result<P2pNode> {
        let mut swarm = build_swarm()?;
        swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
        let addr = loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                break address;
            }
        };
        let peer = *swarm.local_peer_id();
        let (cmds, rx) = mpsc::channel(1024);
        let node = P2pNode {
            cmds,
            addr: addr.with(Protocol::P2p(peer)),
            peer,
            connections: Arc::default(),
            failures: Arc::default(),
        };
        tokio::spawn(drive(swarm, rx, mode, sink, node.clone()));
        Ok(node)
    }

    async fn cmd(&self, cmd: Cmd) -> Result<()> {
        self.cmds
            .send(cmd)
            .await
            .map_err(|_| anyhow!("libp2p swarm task ended"))
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

/// The swarm's event loop: runs commands, answers requests, completes outbound requests.
/// A stalled receiver stops polling its swarm once its first connection is up.
async fn drive(
    mut swarm: Swarm<Behaviour>,
    mut cmds: mpsc::Receiver<Cmd>,
    mode: Receive,
    sink: Arc<Sink>,
    node: P2pNode,
) {
    let mut waiting: HashMap<OutboundRequestId, Done> = HashMap::new();
    loop {
        tokio::select! {
            cmd = cmds.recv() => match cmd {
                None => return,
                Some(Cmd::Dial(addr)) => {
                    if swarm.dial(addr).is_err() {
                        node.failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Some(Cmd::DisconnectAll) => {
                    let peers: Vec<PeerId> = swarm.connected_peers().copied().collect();
                    for p in peers {
                        let _ = swarm.disconnect_peer_id(p);
                    }
                }
                Some(Cmd::Request { peer, req, done }) => {
                    let id = swarm.behaviour_mut().send_request(&peer, req);
                    waiting.insert(id, done);
                }
            },
            ev = swarm.select_next_some() => match ev {
                SwarmEvent::ConnectionEstablished { .. } => {
                    node.connections.fetch_add(1, Ordering::Relaxed);
                    if mode == Receive::Stall {
                        // Hold the swarm and never poll it again.
                        let _unpolled = swarm;
                        std::future::pending::<()>().await;
                        return;
                    }
                }
                SwarmEvent::ConnectionClosed { .. } => {
                    node.connections.fetch_sub(1, Ordering::Relaxed);
                }
                SwarmEvent::Behaviour(Event::Message { message, .. }) => match message {
                    Message::Request { request, channel, .. } => {
                        sink.record(request.body.len());
                        let response = if request.echo { request.body } else { Bytes::new() };
                        let _ = swarm.behaviour_mut().send_response(channel, response);
                    }
                    Message::Response { request_id, response } => match waiting.remove(&request_id) {
                        Some(Done::Reply(tx)) => {
                            let _ = tx.send(Ok(response));
                        }
                        // Frees the window slot.
                        Some(Done::Ack(permit)) => drop(permit),
                        None => {}
                    },
                },
                SwarmEvent::Behaviour(Event::OutboundFailure { request_id, error, .. }) => {
                    node.failures.fetch_add(1, Ordering::Relaxed);
                    if let Some(Done::Reply(tx)) = waiting.remove(&request_id) {
                        let _ = tx.send(Err(error.to_string()));
                    }
                }
                SwarmEvent::Behaviour(Event::InboundFailure { .. }) => {
                    node.failures.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
    }
}

/// A swarm connected to one swarm per receiver.
pub struct Libp2pSender {
    node: P2pNode,
    peers: Vec<PeerId>,
    window: Arc<Semaphore>,
}

impl Sender for Libp2pSender {
    fn receivers(&self) -> usize {
        self.peers.len()
    }

    async fn send(&self, to: usize, payload: Bytes) -> Result<()> {
        let failures = self.node.failures.load(Ordering::Relaxed);
        if failures > 0 {
            anyhow::bail!("libp2p reported {failures} failed requests");
        }
        let permit = self.window.clone().acquire_owned().await?;
        let req = Req {
            echo: false,
            body: payload,
        };
        self.node
            .cmd(Cmd::Request {
                peer: self.peers[to],
                req,
                done: Done::Ack(permit),
            })
            .await
    }

    async fn request(&self, to: usize, payload: Bytes) -> Result<Bytes> {
        let (tx, rx) = oneshot::channel();
        let req = Req {
            echo: true,
            body: payload,
        };
        self.node
            .cmd(Cmd::Request {
                peer: self.peers[to],
                req,
                done: Done::Reply(tx),
            })
            .await?;
        rx.await
            .map_err(|_| anyhow!("libp2p swarm task ended"))?
            .map_err(|e| anyhow!("libp2p request failed: {e}"))
    }
}

impl System for Libp2p {
    const NAME: &'static str = "rust-libp2p";
    const SHORT: &'static str = "libp2p";
    type Sender = Libp2pSender;
    type Nodes = Vec<P2pNode>;

    fn star(&self, sides: &Sides, receivers: usize, mode: Receive) -> Result<Star<Libp2pSender>> {
        let sink = Arc::new(Sink::default());
        let mut peers = Vec::with_capacity(receivers);
        let mut addrs = Vec::with_capacity(receivers);
        let mut keep = Vec::with_capacity(receivers);
        for _ in 0..receivers {
            let s = sink.clone();
            let node = sides.receiver.run(P2pNode::start(mode, s))??;
            peers.push(node.peer);
            addrs.push(node.addr.clone());
            keep.push(node);
        }
        let node = sides
            .sender
            .run(P2pNode::start(Receive::Serve, Arc::new(Sink::default())))??;
        let n = node.clone();
        sides.sender.run(async move {
            for a in addrs {
                n.cmd(Cmd::Dial(a)).await?;
            }
            wait_until(SETUP_TIMEOUT, "libp2p sender's connections", || {
                n.connections() == receivers
            })
            .await
        })??;
        Ok(Star {
            sender: Arc::new(Libp2pSender {
                node,
                peers,
                window: Arc::new(Semaphore::new(WINDOW)),
            }),
            sink,
            _keep: Box::new(keep),
        })
    }

    fn nodes(&self, rt: &Pinned, n: usize) -> Result<Vec<P2pNode>> {
        (0..n)
            .map(|_| rt.run(P2pNode::start(Receive::Serve, Arc::new(Sink::default())))?)
            .collect()
    }

    fn connect_mesh(&self, rt: &Pinned, nodes: &Vec<P2pNode>) -> Result<()> {
        let nodes = nodes.clone();
        rt.run(async move {
            for (i, node) in nodes.iter().enumerate() {
                for other in &nodes[i + 1..] {
                    node.cmd(Cmd::Dial(other.addr.clone())).await?;
                }
            }
            let want = nodes.len() - 1;
            wait_until(SETUP_TIMEOUT, "a libp2p full mesh", || {
                nodes.iter().all(|n| n.connections() == want)
            })
            .await
        })?
    }

    fn connect_burst(&self, rt: &Pinned, nodes: &Vec<P2pNode>) -> Result<Duration> {
        let nodes = nodes.clone();
        rt.run(async move {
            let (hub, clients) = nodes.split_first().context("no nodes")?;
            let start = Instant::now();
            for c in clients {
                c.cmd(Cmd::Dial(hub.addr.clone())).await?;
            }
            wait_until(SETUP_TIMEOUT, "libp2p clients to connect", || {
                hub.connections() == clients.len() && clients.iter().all(|c| c.connections() == 1)
            })
            .await?;
            let elapsed = start.elapsed();
            for c in clients {
                c.cmd(Cmd::DisconnectAll).await?;
            }
            wait_until(SETUP_TIMEOUT, "libp2p clients to disconnect", || {
                nodes.iter().all(|n| n.connections() == 0)
            })
            .await?;
            anyhow::Ok(elapsed)
        })?
    }
}
