//! The dialer: one task per configured peer that keeps it connected, redialing with backoff
//! and never giving up on it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::net::TcpStream;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use super::addr::Host;
use super::backoff::Backoff;
use super::refusal::RefusalReason;
use super::repeat::RepeatWarnings;
use super::setup::{Established, SetupError};
use super::target::TargetStatus;
use super::{PeerEvent, Peers};
use crate::identity::NodeId;
use crate::session::{CloseReason, Direction};

/// More than the kinds of [`RefusalReason`], so that a dialer remembers every kind it meets.
const KINDS_OF_REFUSAL: usize = 32;

/// Why a dial did not produce a session.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    /// The address is not `host:port`, or its name did not resolve to any address.
    #[error("could not resolve {0}")]
    Resolve(String),
    /// The TCP connection failed (to the last of the resolved addresses tried).
    #[error("tcp connect: {0}")]
    Tcp(Arc<std::io::Error>),
    /// The TCP connection did not succeed within the connect timeout.
    #[error("tcp connect timed out after {0:?}")]
    TcpTimeout(Duration),
    /// The node at the address is this node itself.
    #[error("the address is this node itself")]
    Itself,
    /// TLS or the protocol handshake failed or refused the link.
    #[error("{0}")]
    Refused(#[from] RefusalReason),
}

impl From<SetupError> for ConnectError {
    fn from(e: SetupError) -> Self {
        match e {
            SetupError::Itself => ConnectError::Itself,
            SetupError::Refused(reason) => ConnectError::Refused(reason),
        }
    }
}

impl Peers {
    /// Starts the task keeping `address` connected until `cancel` fires.
    pub(super) fn spawn_dialer(&self, address: String, cancel: CancellationToken) {
        let me = self.clone();
        let span = tracing::info_span!("dialer", addr = %address);
        self.inner
            .tasks
            .spawn(async move { me.dial_loop(address, cancel).await }.instrument(span));
    }

    /// Keeps `address` connected until the target is removed or the node shuts down.
    ///
    /// This task lives as long as the target, session included, so what it holds while the
    /// session runs is per-link memory: the connection is bound out of a temporary (not a
    /// named result, which would keep its storage beside the session) and handed whole to
    /// [`start_dialed`](Self::start_dialed).
    async fn dial_loop(self, address: String, cancel: CancellationToken) {
        let mut backoff = {
            let t = &self.inner.settings.timers;
            Backoff::new(t.backoff_initial, t.backoff_max)
        };
        // One target, keyed by kind of refusal alone: room for every kind there is.
        let mut warning = RepeatWarnings::new(KINDS_OF_REFUSAL);
        loop {
            // A node already connected through another path needs no second connection.
            if let Some(peer) = self.inner.registry.target_node(&address) {
                if self.inner.registry.is_connected(&peer) {
                    self.update_target(&address, |t| t.session_up(peer));
                    if !self.wait_disconnected(peer, &cancel).await {
                        return;
                    }
                    continue;
                }
            }
            self.update_target(&address, TargetStatus::attempt);
            let started = Instant::now();
            let est = match self.dial_unless_cancelled(&address, &cancel).await {
                None => return,
                Some(Ok(est)) => est,
                Some(Err(ConnectError::Itself)) => {
                    info!("configured peer is this node itself; not dialing it again");
                    let local = self.inner.local;
                    self.update_target(&address, |t| t.found_itself(local));
                    cancel.cancelled().await;
                    return;
                }
                Some(Err(e)) => {
                    debug!(reason = %e, "dial failed");
                    if let ConnectError::Refused(reason) = &e {
                        self.inner.registry.count_refusal(reason);
                    }
                    // A peer silent during TLS is as unreachable as one silent to TCP; only
                    // a peer that answered and then failed the handshakes is worth a warning.
                    match &e {
                        ConnectError::Refused(RefusalReason::TlsTimedOut(_)) => {}
                        ConnectError::Refused(r) => match warning.due(r.kind(), Instant::now()) {
                            None => {}
                            // A TLS alert is how a peer refuses this node's certificate or ID.
                            Some(held_back) if matches!(r, RefusalReason::PeerAlert(_)) => warn!(
                                reason = %e, held_back,
                                "refused by the peer: it ended the TLS handshake (it may not \
                                 trust this chain's CA, or blacklist this node)"
                            ),
                            Some(held_back) => warn!(
                                reason = %e, held_back, "handshake with configured peer failed"
                            ),
                        },
                        _ => {}
                    }
                    let failures = backoff.failures().saturating_add(1);
                    self.update_target(&address, |t| t.dial_failed(e, failures));
                    if !self.back_off(&address, &mut backoff, &cancel).await {
                        return;
                    }
                    continue;
                }
            };
            let (session, registered) = self.start_dialed(&address, est, &cancel);
            let reason = session.await;
            if !registered {
                // Another connection to the same node won: it is connected.
                continue;
            }
            self.update_target(&address, |t| t.session_ended(reason));
            backoff.connection_ended(started.elapsed());
            if !self.back_off(&address, &mut backoff, &cancel).await {
                return;
            }
        }
    }

    /// Applies a transition to the target at `address`, if it is still one.
    fn update_target(&self, address: &str, f: impl FnOnce(&mut TargetStatus)) {
        self.inner.registry.update_target(address, f);
    }

    /// Dials `address`; `None` if `cancel` fires first.
    async fn dial_unless_cancelled(
        &self,
        address: &str,
        cancel: &CancellationToken,
    ) -> Option<Result<Established, ConnectError>> {
        tokio::select! {
            _ = cancel.cancelled() => None,
            r = self.dial(address) => Some(r),
        }
    }

    /// Records a dialed connection on its target and returns the session's future and
    /// whether the connection was registered (false: another connection to the same node
    /// won). Not `async`, so that `est` is consumed before the caller awaits the session.
    fn start_dialed(
        &self,
        address: &str,
        est: Established,
        cancel: &CancellationToken,
    ) -> (impl Future<Output = CloseReason> + Send + '_, bool) {
        let peer = est.handle.peer;
        let registered = est.registered;
        if cancel.is_cancelled() {
            // Removed while the handshake was finishing: wind the session down.
            est.handle.close(CloseReason::Removed);
        }
        self.update_target(address, |t| t.dialed(peer, registered));
        (self.run_session(est), registered)
    }

    /// Waits out the next backoff delay, showing it on the target. Returns false if
    /// cancelled first.
    async fn back_off(
        &self,
        address: &str,
        backoff: &mut Backoff,
        cancel: &CancellationToken,
    ) -> bool {
        let delay = backoff.next_delay(rand::random::<f64>());
        let next_attempt_ms = (SystemTime::now() + delay)
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        self.update_target(address, |t| t.backing_off(next_attempt_ms));
        tokio::select! {
            _ = cancel.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }

    /// Waits until `peer` has no session. Returns false if cancelled first.
    async fn wait_disconnected(&self, peer: NodeId, cancel: &CancellationToken) -> bool {
        let mut events = self.inner.registry.subscribe();
        loop {
            if !self.inner.registry.is_connected(&peer) {
                return true;
            }
            tokio::select! {
                _ = cancel.cancelled() => return false,
                ev = events.recv() => match ev {
                    Ok(PeerEvent::Disconnected { peer: p, .. }) if p == peer => return true,
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return false,
                },
            }
        }
    }

    /// Connects to the target at `address` (trying each address it resolves to, in order)
    /// and sets the connection up.
    async fn dial(&self, address: &str) -> Result<Established, ConnectError> {
        let timeout = self.inner.settings.timers.connect_timeout;
        let connect = async {
            let mut last = ConnectError::Resolve(address.to_owned());
            for a in self.resolve(address).await? {
                match TcpStream::connect(a).await {
                    Ok(s) => return Ok((s, a)),
                    Err(e) => last = ConnectError::Tcp(Arc::new(e)),
                }
            }
            Err(last)
        };
        let (tcp, addr) = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| ConnectError::TcpTimeout(timeout))??;
        Ok(self.establish(tcp, addr, Direction::Outbound).await?)
    }

    /// The socket addresses of the target at `address`. A name's are recorded on the target,
    /// so that sessions from them are recognised as this target's.
    async fn resolve(&self, address: &str) -> Result<Vec<SocketAddr>, ConnectError> {
        let unresolved = || ConnectError::Resolve(address.to_owned());
        let target = self
            .inner
            .registry
            .target_addr(address)
            .ok_or_else(unresolved)?;
        match target.host() {
            Host::Ip(ip) => Ok(vec![SocketAddr::new(*ip, target.port())]),
            Host::Name(name) => {
                let found: Vec<SocketAddr> =
                    tokio::net::lookup_host((name.as_str(), target.port()))
                        .await
                        .map_err(|_| unresolved())?
                        .collect();
                self.inner.registry.set_resolved(address, &found);
                Ok(found)
            }
        }
    }
}
