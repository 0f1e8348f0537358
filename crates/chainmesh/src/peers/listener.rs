//! The listener: accepts connections and runs each in a task of its own, with a bound on the
//! inbound handshakes under way at once.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use super::limits::Slot;
use super::refusal::RefusalReason;
use super::setup::SetupError;
use super::Peers;
use crate::session::Direction;

/// How long the accept loop pauses after a failed accept.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

impl Peers {
    /// Starts the accept loop on `listener`; it runs until shutdown.
    pub(super) fn spawn_listener(&self, listener: TcpListener) {
        if let Ok(addr) = listener.local_addr() {
            self.inner.listen_port.store(addr.port(), Ordering::Relaxed);
        }
        let me = self.clone();
        // Handshakes cost CPU (ECDSA) and memory before the peer has proven anything: bound
        // how many run at once. Past the bound, new connections wait in the kernel's backlog.
        let slots = Arc::new(Semaphore::new(me.inner.settings.inbound_handshakes));
        self.inner.tasks.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = me.inner.shutdown.cancelled() => return,
                    r = async {
                        let permit = slots.clone().acquire_owned().await;
                        (permit, listener.accept().await)
                    } => r,
                };
                match accepted {
                    (Ok(permit), Ok((tcp, addr))) => {
                        // Counted per address before anything is spent on the connection; a
                        // refused one is dropped at once, which closes it.
                        let Some(slots) = me.address_slots(addr) else {
                            continue;
                        };
                        let me2 = me.clone();
                        me.inner.tasks.spawn(async move {
                            me2.serve_inbound(tcp, addr, permit, slots).await
                        });
                    }
                    // The semaphore is never closed.
                    (Err(_), _) => return,
                    (_, Err(e)) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_RETRY).await;
                    }
                }
            }
        });
    }

    /// Takes a connection slot and a handshake slot of `addr`'s IP, or refuses the
    /// connection (logged, counted, reported) when either is used up.
    fn address_slots(&self, addr: SocketAddr) -> Option<AddressSlots> {
        let ip = addr.ip();
        let inner = &*self.inner;
        let refuse = |reason| self.refused_inbound(addr, reason);
        let Some(connection) = inner.connections_per_ip.take(ip) else {
            refuse(RefusalReason::TooManyConnectionsFromIp {
                ip,
                limit: inner.connections_per_ip.limit(),
            });
            return None;
        };
        let Some(handshake) = inner.handshakes_per_ip.take(ip) else {
            refuse(RefusalReason::TooManyHandshakesFromIp {
                ip,
                limit: inner.handshakes_per_ip.limit(),
            });
            return None;
        };
        Some(AddressSlots {
            connection,
            handshake,
        })
    }

    /// Counts and reports every refusal of an inbound connection from `addr`, and logs the
    /// first of each kind from its IP per
    /// [`REPEAT_WARN_EVERY`](super::repeat::REPEAT_WARN_EVERY) with how many were held back:
    /// a member redialing a node that refuses it must not fill the log.
    fn refused_inbound(&self, addr: SocketAddr, reason: RefusalReason) {
        if let Some(held_back) = self.warning_due(addr.ip(), reason.kind()) {
            warn!(%addr, %reason, held_back, "refused inbound connection");
        }
        self.inner.registry.refused(addr, reason);
    }

    /// Whether a warning of `kind` about `ip` is due now, and how many were held back since
    /// the last one (see [`RepeatWarnings`](super::repeat::RepeatWarnings)).
    pub(super) fn warning_due(&self, ip: IpAddr, kind: &'static str) -> Option<u64> {
        self.inner
            .refusal_log
            .lock()
            .due((ip, kind), Instant::now())
    }

    /// Sets up one accepted connection, holding a handshake slot until it is past both
    /// handshakes, then runs its session.
    async fn serve_inbound(
        &self,
        tcp: TcpStream,
        addr: SocketAddr,
        slot: OwnedSemaphorePermit,
        slots: AddressSlots,
    ) {
        // Bound out of a temporary, not a named result: this task lives as long as the
        // session, and a named result would keep its storage (~300 B) beside it.
        let est = match self.establish(tcp, addr, Direction::Inbound).await {
            Ok(est) => est,
            Err(SetupError::Itself) => {
                debug!(%addr, "inbound connection from ourselves");
                return;
            }
            Err(SetupError::Refused(reason)) => {
                self.refused_inbound(addr, reason);
                return;
            }
        };
        drop(slot);
        let AddressSlots {
            connection,
            handshake,
        } = slots;
        drop(handshake);
        self.run_session(est).await;
        drop(connection);
    }
}

/// What an inbound connection holds of its IP address's allowance.
struct AddressSlots {
    /// For the connection's whole life.
    connection: Slot<IpAddr>,
    /// Until it is past both handshakes.
    handshake: Slot<IpAddr>,
}
