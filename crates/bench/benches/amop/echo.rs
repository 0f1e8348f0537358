//! The ceilings for AMOP: a bare-TLS ChannelPack server on the node's own OpenSSL
//! configuration (`chainmesh::tls::TlsContext`, the node's certificate), with nothing between
//! the socket and the answer. A 0x30 is answered at once with its 0x31 (same seq, same data),
//! unless its topic is [`FORWARD_TOPIC`] and a session subscribed to that topic: then the
//! frame is passed on to that session unchanged and the 0x31 it sends back is passed to the
//! publisher by seq (the four records of an AMOP unicast on one node, with no node between
//! them). A 0x35 is answered with 0x31 result 0 and copied to every other session that sent a
//! 0x32 (no topic matching: every such session is a subscriber). One task per connection, one
//! frame per TLS write, as the channel port must write.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use bytes::{Bytes, BytesMut};
use chainmesh::admission::Admission;
use chainmesh::amop::parse_subscription;
use chainmesh::identity::Identity;
use chainmesh::tls::TlsContext;
use chainmesh::wire::{amop_topic, channel_result, ChannelDecoder, ChannelSeq, ChannelType};
use parking_lot::{Mutex, RwLock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Frames a subscriber session holds unwritten; a multicast beyond that is dropped, as the
/// node drops one for a full session queue.
const SUBSCRIBER_QUEUE: usize = 1024;
const MAX_FRAME: u32 = 1 << 20;

/// The topic whose unicasts are forwarded to its subscriber rather than answered.
pub const FORWARD_TOPIC: &str = "fwd";

/// Who gets what the server passes on: the fan-out subscribers by connection number, the
/// forwarder's subscriber, and the publishers waiting for a forwarded unicast's answer.
#[derive(Default)]
struct Routes {
    fanout: HashMap<u64, mpsc::Sender<Bytes>>,
    forward_to: Option<(u64, mpsc::Sender<Bytes>)>,
    waiting: HashMap<ChannelSeq, mpsc::Sender<Bytes>>,
}

type Subscribers = Arc<Mutex<Routes>>;

/// A running echo server.
pub struct EchoServer {
    pub addr: SocketAddr,
    subscribers: Subscribers,
}

impl EchoServer {
    /// Listens on 127.0.0.1 with `identity`, serving on the current runtime.
    pub async fn start(identity: &Identity) -> Result<EchoServer> {
        let tls = TlsContext::new(identity, Arc::new(RwLock::new(Admission::default())))
            .context("echo server TLS context")?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let subscribers = Subscribers::default();
        let subs = subscribers.clone();
        let next_id = Arc::new(AtomicU64::new(1));
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (tls, subs) = (tls.clone(), subs.clone());
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    if let Ok((stream, _)) = tls.accept(tcp).await {
                        serve(stream, id, &subs).await;
                    }
                    let mut routes = subs.lock();
                    routes.fanout.remove(&id);
                    if routes.forward_to.as_ref().is_some_and(|(f, _)| *f == id) {
                        routes.forward_to = None;
                    }
                });
            }
        });
        Ok(EchoServer { addr, subscribers })
    }

    /// Sessions that sent a 0x32 for the fan-out.
    pub fn subscribers(&self) -> usize {
        self.subscribers.lock().fanout.len()
    }

    /// Whether a session subscribed to [`FORWARD_TOPIC`].
    pub fn forwarding(&self) -> bool {
        self.subscribers.lock().forward_to.is_some()
    }
}

async fn serve<S>(mut stream: S, id: u64, subs: &Subscribers)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (tx, mut rx) = mpsc::channel::<Bytes>(SUBSCRIBER_QUEUE);
    let mut decoder = ChannelDecoder::new(MAX_FRAME);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut out = Vec::new();
    loop {
        tokio::select! {
            n = stream.read_buf(&mut buf) => {
                if !matches!(n, Ok(n) if n > 0) {
                    return;
                }
                while let Ok(Some((pack, raw))) = decoder.decode(&mut buf) {
                    match pack.kind {
                        ChannelType::AMOP_REQUEST => {
                            let forwarded = amop_topic(&pack.data).is_ok_and(|t| &*t == FORWARD_TOPIC) && {
                                let mut routes = subs.lock();
                                match routes.forward_to.clone() {
                                    Some((_, to)) => {
                                        routes.waiting.insert(pack.seq, tx.clone());
                                        let sent = to.try_send(raw.clone()).is_ok();
                                        if !sent {
                                            routes.waiting.remove(&pack.seq);
                                        }
                                        sent
                                    }
                                    None => false,
                                }
                            };
                            if !forwarded {
                                out.push(pack.answer(ChannelType::AMOP_RESPONSE, channel_result::OK, pack.data.clone()));
                            }
                        }
                        ChannelType::AMOP_RESPONSE => {
                            if let Some(publisher) = subs.lock().waiting.remove(&pack.seq) {
                                let _ = publisher.try_send(raw.clone());
                            }
                        }
                        ChannelType::AMOP_MULTICAST => {
                            for sub in subs.lock().fanout.values() {
                                let _ = sub.try_send(raw.clone());
                            }
                            out.push(pack.answer(ChannelType::AMOP_RESPONSE, channel_result::OK, Bytes::new()));
                        }
                        ChannelType::SUBSCRIBE => {
                            let forward = parse_subscription(&pack.data, 16).is_ok_and(|t| t.contains(FORWARD_TOPIC));
                            let mut routes = subs.lock();
                            if forward {
                                routes.forward_to = Some((id, tx.clone()));
                            } else {
                                routes.fanout.insert(id, tx.clone());
                            }
                        }
                        _ => {}
                    }
                }
                for answer in out.drain(..) {
                    let Ok(frame) = answer.to_bytes(MAX_FRAME) else { return };
                    if stream.write_all(&frame).await.is_err() {
                        return;
                    }
                }
            }
            Some(frame) = rx.recv() => {
                if stream.write_all(&frame).await.is_err() {
                    return;
                }
            }
        }
    }
}
