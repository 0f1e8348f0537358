//! Connection set-up: TLS, identity checks and the protocol handshake, then registration and
//! the session run in the connection's task.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use futures_util::FutureExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::{warn, Instrument};

use super::handshake;
use super::refusal::{RefusalReason, ALREADY_CONNECTED};
use super::registry::Registration;
use super::Peers;
use crate::config::TimersConfig;
use crate::session::{self, CloseReason, Direction, SessionConfig, SessionHandle, SessionInfo};
use crate::wire::{Handshake, Packet};

/// The stream under a session: TLS straight over the TCP socket. No read buffer sits in
/// between: the TLS context reads ahead into OpenSSL's own record buffer (`crate::tls`), so a
/// `BufReader` here would only hold a second copy of the same bytes.
type Stream = crate::tls::TlsStream<TcpStream>;

/// The kind under which the peer's "already connected" refusals of this node are logged;
/// apart from this node's own refusals of that kind from the same address.
const REFUSED_AS_ALREADY_CONNECTED: &str = "refused-by-peer-already-connected";

/// Why set-up did not produce a session.
#[derive(Debug)]
pub(super) enum SetupError {
    /// The peer is this node itself.
    Itself,
    /// TLS or the protocol handshake failed or refused the link.
    Refused(RefusalReason),
}

impl From<RefusalReason> for SetupError {
    fn from(reason: RefusalReason) -> Self {
        SetupError::Refused(reason)
    }
}

/// A connection past both handshakes, registered or about to wind down as a duplicate.
pub(super) struct Established {
    stream: Stream,
    pub(super) handle: SessionHandle,
    leftover: bytes::BytesMut,
    pub(super) registered: bool,
}

impl Peers {
    /// TLS, identity checks and the protocol handshake, then registration.
    pub(super) async fn establish(
        &self,
        tcp: TcpStream,
        addr: SocketAddr,
        direction: Direction,
    ) -> Result<Established, SetupError> {
        let inner = &*self.inner;
        let timeout = inner.settings.timers.handshake_timeout;
        super::socket::tune(&tcp, &inner.settings.socket);
        let local_addr = tcp
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let tls = match direction {
            Direction::Outbound => tokio::time::timeout(timeout, inner.tls.connect(tcp)).await,
            Direction::Inbound => tokio::time::timeout(timeout, inner.tls.accept(tcp)).await,
        };
        let (mut stream, peer) = tls
            .map_err(|_| RefusalReason::TlsTimedOut(timeout))?
            .map_err(RefusalReason::from)?;
        if peer == inner.local {
            // Before the protocol handshake, so that a process holding this node's
            // certificate never learns this process's incarnation.
            return Err(SetupError::Itself);
        }
        // Held until the connection is registered or refused.
        let _handshake_slot = inner.handshakes_per_identity.take(peer).ok_or(
            RefusalReason::TooManyHandshakesForIdentity {
                peer,
                limit: inner.handshakes_per_identity.limit(),
            },
        )?;
        // Also checked inside TLS; repeated here because a reload may have changed the lists
        // while this handshake was in flight.
        inner
            .admission
            .read()
            .check(&peer)
            .map_err(|refusal| RefusalReason::excluded(peer, refusal))?;
        let ours = Handshake::ours(
            inner.listen_port.load(Ordering::Relaxed),
            inner.settings.max_packet,
            inner.incarnation,
        );
        let agreed = handshake::exchange(&mut stream, &ours, inner.settings.max_packet, timeout)
            .await
            .map_err(RefusalReason::from)?;
        let id = inner.conn_ids.fetch_add(1, Ordering::Relaxed);
        let handle = session::new_session(
            id,
            SessionInfo {
                peer,
                addr,
                local_addr,
                direction,
                version: agreed.version,
                peer_listen_port: agreed.peer.listen_port,
                peer_max_packet: agreed.peer.max_packet_size,
            },
            inner.settings.queue_bytes,
        );
        let registered = match inner.registry.register(&handle, agreed.peer.incarnation) {
            Registration::Registered => {
                // A reload between the check above and the registration swept the sessions
                // before this one was among them; checked again now that it is, so either
                // the sweep or this check sees it.
                if let Err(refusal) = inner.admission.read().check(&peer) {
                    handle.close(super::excluded(refusal));
                }
                true
            }
            Registration::Retired => false,
            Registration::Refused(reason) => {
                // Told in a Goodbye, so the refused process can say why it was turned away.
                let goodbye = Packet::goodbye(agreed.version, &reason.to_string()).to_bytes();
                let _ = tokio::time::timeout(timeout, async {
                    stream.write_all(&goodbye).await?;
                    stream.shutdown().await
                })
                .await;
                return Err(reason.into());
            }
        };
        Ok(Established {
            stream,
            handle,
            leftover: agreed.leftover,
            registered,
        })
    }

    /// Runs an established connection's session to its end and unregisters it.
    ///
    /// The returned future lives in the connection's task for as long as the link is up, so
    /// it is built to hold only what it needs: the session's own future and the connection's
    /// identity for unregistering afterwards. An `async fn` (or `async` block) would also keep
    /// its arguments or captures beside the future it awaits, here the whole `Established` or
    /// a second copy of the session future (measured: 0.7 KiB more per connection).
    pub(super) fn run_session(
        &self,
        est: Established,
    ) -> impl Future<Output = CloseReason> + Send + '_ {
        let Established {
            stream,
            handle,
            leftover,
            registered: _,
        } = est;
        let (peer, conn) = (handle.peer, handle.id);
        // A second handle, one pointer wide, for the registry to read the ended connection's
        // counters from.
        let ended = handle.clone();
        let t = &self.inner.settings.timers;
        let cfg = SessionConfig {
            // Capped, so that the session's clock arithmetic cannot overflow even for a
            // hand-built config that never went through validation.
            heartbeat_interval: t.heartbeat_interval.min(TimersConfig::MAX_TIMER),
            idle_timeout: t.idle_timeout(),
            max_packet: self.inner.settings.max_packet,
            version: handle.version,
            linger: t.handshake_timeout.min(TimersConfig::MAX_TIMER),
            read_budget_bytes: self.inner.settings.read_budget_bytes,
        };
        let span = tracing::info_span!("session", peer = %peer.short(), conn);
        let session = session::run(stream, handle, self.inner.inbound.clone(), cfg, leftover)
            .instrument(span);
        session.map(move |reason| {
            if let CloseReason::PeerLeft(why) = &reason {
                // A copy of this node that keeps redialing is refused every time: logged
                // like the refusing side's inbound refusals, once per interval.
                if why.contains(ALREADY_CONNECTED) {
                    if let Some(held_back) =
                        self.warning_due(ended.addr.ip(), REFUSED_AS_ALREADY_CONNECTED)
                    {
                        warn!(peer = %peer.short(), conn, held_back,
                            "the peer refused this connection: {why}; another process \
                            holding this node's certificate is connected to it");
                    }
                }
            }
            // A no-op for a connection that is not the peer's session (a retired duplicate):
            // its end never disconnects the peer.
            self.inner.registry.unregister(&ended, &reason);
            reason
        })
    }
}
