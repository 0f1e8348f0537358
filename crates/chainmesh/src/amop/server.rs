//! The channel port: accept, the caps (in total, per address, per certificate key), the TLS
//! handshake within `handshake_timeout`, and one session task per SDK client, unregistered
//! as it ends.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::caps::{CapRefusal, Caps, IpTicket};
use super::dispatch::Dispatch;
use super::shared::Shared;
use super::view::Counters;
use super::ChannelFraming;
use crate::config::TimersConfig;
use crate::session::{
    new_framed_session, run_framed, CloseReason, Direction, SessionConfig, SessionInfo,
};
use crate::tls::TlsContext;

/// Pause after a failed accept (out of file descriptors, say) before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Session numbers of SDK sessions, process-wide so that two nodes' never collide in logs.
static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// What a connection needs beside its socket.
struct Port {
    shared: Arc<Shared>,
    tls: TlsContext,
    caps: Caps,
    dispatch: Arc<Dispatch>,
    session: SessionConfig,
}

/// Serves `listener` until AMOP stops, then closes every session and waits for them.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    tls: TlsContext,
    read_budget_bytes: usize,
) {
    let cfg = &shared.cfg;
    let port = Arc::new(Port {
        caps: Caps::new(
            cfg.max_sessions,
            cfg.max_sessions_per_ip,
            cfg.max_sessions_per_cert,
        ),
        dispatch: Arc::new(Dispatch::new(shared.clone())),
        session: SessionConfig {
            // The node side sends no heartbeats (its framing has none); SDKs do.
            heartbeat_interval: cfg.idle_timeout.min(TimersConfig::MAX_TIMER),
            idle_timeout: cfg.idle_timeout.min(TimersConfig::MAX_TIMER),
            max_packet: cfg.max_frame,
            version: 0,
            linger: cfg.handshake_timeout.min(TimersConfig::MAX_TIMER),
            read_budget_bytes,
        },
        tls,
        shared: shared.clone(),
    });
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            _ = shared.stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, addr)) => match port.caps.enter_ip(addr.ip()) {
                    Ok(ticket) => {
                        tasks.spawn(connection(port.clone(), tcp, addr, ticket));
                    }
                    Err(refusal) => refused(&shared, addr, refusal),
                },
                Err(e) => {
                    warn!(error = %e, "channel port: accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    for s in shared.sessions.all() {
        s.handle.close(CloseReason::Shutdown);
    }
    while tasks.join_next().await.is_some() {}
    shared.finished.cancel();
}

fn refused(shared: &Shared, addr: SocketAddr, refusal: CapRefusal) {
    Counters::add(&shared.stats.sessions_refused);
    warn!(%addr, reason = %refusal, "SDK connection refused");
}

/// One SDK connection, from its TLS handshake to its end.
async fn connection(port: Arc<Port>, tcp: TcpStream, addr: SocketAddr, _ip: IpTicket) {
    let shared = &port.shared;
    let Ok(local_addr) = tcp.local_addr() else {
        return;
    };
    let handshake = tokio::select! {
        r = tokio::time::timeout(shared.cfg.handshake_timeout, port.tls.accept(tcp)) => r,
        _ = shared.stop.cancelled() => return,
    };
    let (stream, key) = match handshake {
        Ok(Ok(accepted)) => accepted,
        Ok(Err(e)) => {
            Counters::add(&shared.stats.handshakes_failed);
            info!(%addr, error = %e, "SDK TLS handshake failed");
            return;
        }
        Err(_) => {
            Counters::add(&shared.stats.handshakes_failed);
            info!(%addr, "SDK TLS handshake timed out");
            return;
        }
    };
    let _key = match port.caps.enter_key(key) {
        Ok(ticket) => ticket,
        Err(refusal) => return refused(shared, addr, refusal),
    };
    let id = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
    let info = SessionInfo {
        peer: key,
        addr,
        local_addr,
        direction: Direction::Inbound,
        version: 0,
        peer_listen_port: 0,
        peer_max_packet: shared.cfg.max_frame,
    };
    let handle = new_framed_session::<ChannelFraming>(id, info, shared.cfg.session_queue_bytes);
    shared.sessions.insert(handle.clone());
    Counters::add(&shared.stats.sessions_accepted);
    info!(conn = id, %addr, key = %key.short(), "SDK session open");
    if shared.stop.is_cancelled() {
        handle.close(CloseReason::Shutdown);
    }
    let framing = ChannelFraming::node_side(shared.cfg.max_frame);
    let reason = run_framed(
        stream,
        handle,
        framing,
        port.dispatch.clone(),
        port.session.clone(),
        BytesMut::new(),
    )
    .await;
    if matches!(reason, CloseReason::Protocol(_)) {
        Counters::add(&shared.stats.protocol_errors);
    }
    info!(conn = id, %addr, %reason, "SDK session closed");
    shared.session_ended(id);
}
