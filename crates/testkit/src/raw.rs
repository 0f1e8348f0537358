//! A peer that speaks the P2P protocol by hand: it holds a valid certificate of the chain and
//! sends whatever bytes a test gives it. The hostile-member tests use it to be the member that
//! lies, floods or breaks the rules, against real nodes over real TLS.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chainmesh::admission::Admission;
use chainmesh::identity::keys::{sign, KeyError};
use chainmesh::identity::{Identity, IdentityError};
use chainmesh::peers::handshake::{self, Agreed, HandshakeError};
use chainmesh::peers::random_incarnation;
use chainmesh::tls::{TlsContext, TlsError, TlsStream};
use chainmesh::wire::{
    encode_lists, Decoder, Ext, Handshake, ListVersion, NeighbourList, Packet, PacketType,
    WireError, DEFAULT_MAX_PACKET, LIST_SIGNATURE_LEN,
};
use chainmesh::NodeId;
use parking_lot::RwLock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::LocalNet;

/// Why a raw peer could not do what a test asked.
#[derive(Debug, thiserror::Error)]
pub enum RawError {
    /// The certificate files would not load.
    #[error("identity: {0}")]
    Identity(#[from] IdentityError),
    /// TLS setup or handshake failed.
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    /// The protocol handshake failed.
    #[error("protocol handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// Reading or writing failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Signing failed.
    #[error("signing: {0}")]
    Key(#[from] KeyError),
    /// The node sent bytes that do not decode.
    #[error("the node sent a malformed packet: {0}")]
    Wire(#[from] WireError),
}

/// What the node did with the link while the raw peer waited for a packet.
#[derive(Debug)]
// A test reads one packet at a time: boxing it would only make every match clumsier.
#[allow(clippy::large_enum_variant)]
pub enum Received {
    /// The node sent this packet.
    Packet(Packet),
    /// The node closed the connection (EOF or reset).
    Closed,
    /// Nothing arrived within the wait.
    Nothing,
}

/// A TLS link to one node, driven packet by packet from a test.
pub struct RawPeer {
    stream: TlsStream<TcpStream>,
    decoder: Decoder,
    buf: BytesMut,
    /// The node ID the other side proved in TLS.
    pub peer: NodeId,
    /// The version agreed in the protocol handshake, once [`RawPeer::handshake`] ran.
    pub version: u16,
}

impl RawPeer {
    /// Opens a TLS link to `addr` holding `identity`'s certificate; no protocol handshake yet.
    pub async fn dial(identity: &Identity, addr: &str) -> Result<RawPeer, RawError> {
        let tls = TlsContext::new(identity, Arc::new(RwLock::new(Admission::default())))?;
        let tcp = TcpStream::connect(addr).await?;
        let (stream, peer) = tls.connect(tcp).await?;
        Ok(RawPeer {
            stream,
            decoder: Decoder::on_link(DEFAULT_MAX_PACKET, peer),
            buf: BytesMut::new(),
            peer,
            version: 0,
        })
    }

    /// Opens a TLS link to node `to` of `net` with node `from`'s certificate.
    pub async fn dial_as(net: &LocalNet, from: usize, to: usize) -> Result<RawPeer, RawError> {
        let identity = net.generated(from).load_identity()?;
        Self::dial(&identity, &net.addr(to)).await
    }

    /// Runs the protocol handshake with `ours` and keeps the agreed version.
    pub async fn handshake_with(&mut self, ours: &Handshake) -> Result<Agreed, RawError> {
        let agreed = handshake::exchange(
            &mut self.stream,
            ours,
            DEFAULT_MAX_PACKET,
            Duration::from_secs(5),
        )
        .await?;
        self.version = agreed.version;
        self.buf = agreed.leftover.clone();
        Ok(agreed)
    }

    /// Runs the protocol handshake as an ordinary node of this version would, as a process
    /// of its own (a fresh incarnation).
    pub async fn handshake(&mut self) -> Result<Agreed, RawError> {
        self.handshake_with(&Handshake::ours(
            0,
            DEFAULT_MAX_PACKET,
            random_incarnation(),
        ))
        .await
    }

    /// Runs the protocol handshake in two halves, as an ordinary node of this version would:
    /// reads the node's Handshake (it sends it only once it has admitted the link), calls
    /// `between`, then answers. A test puts in `between` what must happen after the node's
    /// admission check and before the session is registered.
    pub async fn handshake_around(&mut self, between: impl FnOnce()) -> Result<u16, RawError> {
        let mut decoder = Decoder::new(DEFAULT_MAX_PACKET);
        let theirs = loop {
            if let Some(p) = decoder.decode(&mut self.buf)? {
                break Handshake::decode(&p.payload)?;
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
        };
        between();
        let ours = Handshake::ours(0, DEFAULT_MAX_PACKET, random_incarnation());
        self.send(&Packet::handshake(&ours)).await?;
        self.version = ours.negotiate(&theirs)?;
        Ok(self.version)
    }

    /// Publishes a neighbour list signed with `identity` that names `neighbours`, as an
    /// honest node of that identity would: with it, the other ends of those links (which name
    /// this node in their own lists) route to this peer. Version `seq` of a fixed epoch.
    pub async fn announce_neighbours(
        &mut self,
        identity: &Identity,
        seq: u32,
        neighbours: &[NodeId],
    ) -> Result<(), RawError> {
        let mut neighbours = neighbours.to_vec();
        neighbours.sort();
        neighbours.dedup();
        let mut list = NeighbourList {
            origin: identity.node_id,
            version: ListVersion { epoch: 1, seq },
            neighbours,
            signature: [0; LIST_SIGNATURE_LEN],
        };
        list.signature = sign(identity, &list.signed_message())?;
        let packet = Packet {
            version: self.version,
            packet_type: PacketType::ROUTER_RESPONSE,
            seq: 0,
            ext: Ext::default(),
            options: None,
            payload: encode_lists([&list]),
        };
        self.send(&packet).await
    }

    /// Writes `bytes` as they are and flushes them.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), RawError> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// Encodes `packet` (its Version as given) and sends it.
    pub async fn send(&mut self, packet: &Packet) -> Result<(), RawError> {
        let bytes: Bytes = packet.to_bytes();
        self.send_raw(&bytes).await
    }

    /// Waits up to `wait` for the node's next packet, heartbeats included.
    pub async fn recv(&mut self, wait: Duration) -> Result<Received, RawError> {
        let read = async {
            loop {
                if let Some(p) = self.decoder.decode(&mut self.buf)? {
                    return Ok(Received::Packet(p));
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return Ok(Received::Closed),
                    Ok(_) => {}
                }
            }
        };
        match tokio::time::timeout(wait, read).await {
            Ok(r) => r,
            Err(_) => Ok(Received::Nothing),
        }
    }

    /// Reads and discards the node's packets until it closes the link (true) or `wait` passes
    /// (false).
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            match self.recv(left).await {
                Ok(Received::Closed) | Err(_) => return true,
                Ok(Received::Nothing) => return false,
                Ok(Received::Packet(_)) => {}
            }
        }
    }
}
