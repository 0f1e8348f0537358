//! The ceiling for AMOP: a bare-TLS ChannelPack server on the node's own OpenSSL
//! configuration (`chainmesh::tls::TlsContext`, the node's certificate), with nothing between
//! the socket and the answer. A 0x30 is answered at once with its 0x31 (same seq, same data);
//! a 0x35 is answered with 0x31 result 0 and copied to every session that sent a 0x32 (no
//! topic matching: every such session is a subscriber). One task per connection, one frame per
//! TLS write, as the channel port must write.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use bytes::{Bytes, BytesMut};
use chainmesh::admission::Admission;
use chainmesh::identity::Identity;
use chainmesh::tls::TlsContext;
use chainmesh::wire::{channel_result, ChannelDecoder, ChannelType};
use parking_lot::{Mutex, RwLock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Frames a subscriber session holds unwritten; a multicast beyond that is dropped, as the
/// node drops one for a full session queue.
const SUBSCRIBER_QUEUE: usize = 1024;
const MAX_FRAME: u32 = 1 << 20;

/// The sessions that subscribed, by connection number.
type Subscribers = Arc<Mutex<HashMap<u64, mpsc::Sender<Bytes>>>>;

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
                    subs.lock().remove(&id);
                });
            }
        });
        Ok(EchoServer { addr, subscribers })
    }

    /// Sessions that sent a 0x32.
    pub fn subscribers(&self) -> usize {
        self.subscribers.lock().len()
    }
}

async fn serve<S>(mut stream: S, id: u64, subs: &Subscribers)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (tx, mut rx) = mpsc::channel::<Bytes>(SUBSCRIBER_QUEUE);
    let mut tx = Some(tx);
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
                            out.push(pack.answer(ChannelType::AMOP_RESPONSE, channel_result::OK, pack.data.clone()));
                        }
                        ChannelType::AMOP_MULTICAST => {
                            for sub in subs.lock().values() {
                                let _ = sub.try_send(raw.clone());
                            }
                            out.push(pack.answer(ChannelType::AMOP_RESPONSE, channel_result::OK, Bytes::new()));
                        }
                        ChannelType::SUBSCRIBE => {
                            if let Some(tx) = tx.take() {
                                subs.lock().insert(id, tx);
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
