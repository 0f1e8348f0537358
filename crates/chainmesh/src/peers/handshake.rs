//! The protocol handshake that follows TLS: both sides state their version range and limits,
//! and agree on a version before any other packet.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::wire::{Decoder, Handshake, Packet, PacketType, WireError, MAX_HANDSHAKE_PACKET};

/// Why the protocol handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The first packet was not a handshake.
    #[error("expected a handshake packet first, got packet type {0}")]
    Unexpected(u16),
    /// The peer's bytes did not decode.
    #[error("malformed handshake: {0}")]
    Wire(#[from] WireError),
    /// The stream failed or closed.
    #[error("handshake i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The peer took too long.
    #[error("handshake timed out after {0:?}")]
    Timeout(Duration),
}

/// What both sides agreed on.
#[derive(Debug, Clone)]
pub struct Agreed {
    /// The version every later packet carries.
    pub version: u16,
    /// The peer's handshake as sent.
    pub peer: Handshake,
    /// Bytes read after the handshake packet: the start of the session's traffic.
    pub leftover: BytesMut,
}

/// Sends our handshake, reads the peer's, and agrees on a version, all within `timeout`.
///
/// The peer's first packet may announce at most [`MAX_HANDSHAKE_PACKET`] bytes (or
/// `max_packet`, if smaller): a larger Length fails at once as malformed, before any of it is
/// buffered.
pub async fn exchange<S>(
    stream: &mut S,
    ours: &Handshake,
    max_packet: u32,
    timeout: Duration,
) -> Result<Agreed, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let run = async {
        let frame = Packet::handshake(ours).to_bytes();
        stream.write_all(&frame).await?;
        stream.flush().await?;
        let mut decoder = Decoder::new(max_packet.min(MAX_HANDSHAKE_PACKET));
        let mut buf = BytesMut::with_capacity(4096);
        let packet = loop {
            if let Some(p) = decoder.decode(&mut buf)? {
                break p;
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(HandshakeError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        };
        if packet.packet_type != PacketType::HANDSHAKE {
            return Err(HandshakeError::Unexpected(packet.packet_type.0));
        }
        let peer = Handshake::decode(&packet.payload)?;
        let version = ours.negotiate(&peer)?;
        Ok(Agreed {
            version,
            peer,
            leftover: buf,
        })
    };
    tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| HandshakeError::Timeout(timeout))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs(min: u16, max: u16) -> Handshake {
        Handshake {
            min_version: min,
            max_version: max,
            listen_port: 30300,
            max_packet_size: 1 << 20,
            incarnation: std::num::NonZeroU64::new(9),
        }
    }

    #[tokio::test]
    async fn exchange_over_a_duplex_keeps_trailing_bytes() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let (ha, hb) = (hs(1, 2), hs(1, 1));
        let (ra, rb) = tokio::join!(
            exchange(&mut a, &ha, 1 << 20, Duration::from_secs(5)),
            async {
                let r = exchange(&mut b, &hb, 1 << 20, Duration::from_secs(5)).await;
                b.write_all(&Packet::heartbeat(1).to_bytes()).await.unwrap();
                r
            }
        );
        assert_eq!(ra.unwrap().version, 1);
        assert_eq!(rb.unwrap().peer.max_version, 2);
    }

    #[tokio::test]
    async fn a_big_first_packet_is_malformed_before_its_body_arrives() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        // Only the header of a 1 MiB packet: the exchange must not wait for the rest.
        let mut header = (1u32 << 20).to_be_bytes().to_vec();
        header.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 0, 0, 0]);
        b.write_all(&header).await.unwrap();
        let e = exchange(&mut a, &hs(1, 1), 1 << 20, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                HandshakeError::Wire(WireError::LengthTooLarge {
                    max: MAX_HANDSHAKE_PACKET,
                    ..
                })
            ),
            "{e}"
        );
    }

    #[tokio::test]
    async fn silent_peer_times_out() {
        let (mut a, _b) = tokio::io::duplex(1 << 16);
        let e = exchange(&mut a, &hs(1, 1), 1 << 20, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(e, HandshakeError::Timeout(_)));
    }
}
