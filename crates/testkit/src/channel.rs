//! An SDK client that speaks the channel protocol by hand, written from the protocol notes
//! rather than from the node's code: it sends whatever frames (or bytes) a test gives it
//! and reports what the node sent back, frame by frame.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chainmesh::admission::Admission;
use chainmesh::identity::Identity;
use chainmesh::tls::TlsStream;
use chainmesh::wire::{
    encode_amop, ChannelDecoder, ChannelPack, ChannelSeq, ChannelType, DEFAULT_MAX_CHANNEL_FRAME,
    SEQ_LEN,
};
use parking_lot::RwLock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::raw::RawError;

/// What the node did while the client waited for a frame.
#[derive(Debug)]
pub enum ChannelReceived {
    /// The node sent this frame.
    Frame(ChannelPack),
    /// The node closed the connection (EOF or reset).
    Closed,
    /// Nothing arrived within the wait.
    Nothing,
}

/// A TLS session to a node's channel port, driven frame by frame from a test.
pub struct RawChannel {
    stream: TlsStream<TcpStream>,
    decoder: ChannelDecoder,
    buf: BytesMut,
    next_seq: u64,
}

impl RawChannel {
    /// Opens a TLS session to the channel port at `addr` with `identity`'s certificate
    /// (an SDK certificate, or any certificate of the chain).
    pub async fn dial(identity: &Identity, addr: &str) -> Result<RawChannel, RawError> {
        let tls =
            chainmesh::tls::TlsContext::new(identity, Arc::new(RwLock::new(Admission::default())))?;
        let tcp = TcpStream::connect(addr).await?;
        let (stream, _) = tls.connect(tcp).await?;
        Ok(RawChannel {
            stream,
            decoder: ChannelDecoder::new(DEFAULT_MAX_CHANNEL_FRAME),
            buf: BytesMut::new(),
            next_seq: 1,
        })
    }

    /// A fresh seq of 32 lowercase hex characters, as FISCO's SDKs make them.
    pub fn seq(&mut self) -> ChannelSeq {
        let n = self.next_seq;
        self.next_seq += 1;
        let text = format!("{:0width$x}", n, width = SEQ_LEN);
        let mut seq = [b'0'; SEQ_LEN];
        seq.copy_from_slice(&text.as_bytes()[..SEQ_LEN]);
        seq
    }

    /// Writes `bytes` as they are and flushes them.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), RawError> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// Encodes `pack` and sends it.
    pub async fn send(&mut self, pack: &ChannelPack) -> Result<(), RawError> {
        let mut buf = BytesMut::new();
        pack.encode_into(&mut buf, u32::MAX)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        self.send_raw(&buf).await
    }

    /// Sends a frame of `kind` with a fresh seq and `data`; returns the seq.
    pub async fn send_new(
        &mut self,
        kind: ChannelType,
        data: impl Into<Bytes>,
    ) -> Result<ChannelSeq, RawError> {
        let seq = self.seq();
        self.send(&ChannelPack::new(kind, seq, data.into())).await?;
        Ok(seq)
    }

    /// Subscribes to `topics` (a 0x32 with their JSON array, replacing the session's set).
    pub async fn subscribe(&mut self, topics: &[&str]) -> Result<(), RawError> {
        let json = serde_json::to_vec(topics).map_err(std::io::Error::other)?;
        self.send_new(ChannelType::SUBSCRIBE, json).await?;
        Ok(())
    }

    /// Sends an AMOP frame of `kind` (0x30 or 0x35) on `topic`; returns its seq.
    pub async fn publish(
        &mut self,
        kind: ChannelType,
        topic: &str,
        payload: &[u8],
    ) -> Result<ChannelSeq, RawError> {
        let data = encode_amop(topic, payload).map_err(|e| std::io::Error::other(e.to_string()))?;
        self.send_new(kind, data).await
    }

    /// Waits up to `wait` for the node's next frame.
    pub async fn recv(&mut self, wait: Duration) -> Result<ChannelReceived, RawError> {
        let read = async {
            loop {
                match self.decoder.decode(&mut self.buf) {
                    Ok(Some((pack, _))) => return Ok(ChannelReceived::Frame(pack)),
                    Ok(None) => {}
                    Err(e) => return Err(RawError::Io(std::io::Error::other(e.to_string()))),
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return Ok(ChannelReceived::Closed),
                    Ok(_) => {}
                }
            }
        };
        match tokio::time::timeout(wait, read).await {
            Ok(r) => r,
            Err(_) => Ok(ChannelReceived::Nothing),
        }
    }

    /// The bytes of the node's next TLS record, read with nothing buffered before it: a
    /// record holding one whole frame is what a FISCO SDK can parse (behaviour case A13).
    /// `None` when nothing came within `wait` or the session closed.
    pub async fn read_record(&mut self, wait: Duration) -> Option<Bytes> {
        if !self.buf.is_empty() {
            return Some(self.buf.split().freeze());
        }
        let mut record = vec![0u8; 64 * 1024];
        match tokio::time::timeout(wait, self.stream.read(&mut record)).await {
            Ok(Ok(n)) if n > 0 => {
                record.truncate(n);
                Some(Bytes::from(record))
            }
            _ => None,
        }
    }

    /// The next frame of `kind` within `wait`, skipping others; `None` if none came (or the
    /// node closed the session).
    pub async fn recv_kind(&mut self, kind: ChannelType, wait: Duration) -> Option<ChannelPack> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await {
                Ok(ChannelReceived::Frame(p)) if p.kind == kind => return Some(p),
                Ok(ChannelReceived::Frame(_)) => {}
                _ => return None,
            }
        }
    }

    /// Reads and discards frames until the node closes the session (true) or `wait` passes
    /// (false).
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            match self.recv(left).await {
                Ok(ChannelReceived::Closed) | Err(_) => return true,
                Ok(ChannelReceived::Nothing) => return false,
                Ok(ChannelReceived::Frame(_)) => {}
            }
        }
    }
}
