//! The `[socket]` options, set on a connection before its TLS handshake.

use socket2::SockRef;
use tokio::net::TcpStream;
use tracing::debug;

use crate::config::SocketConfig;

/// Applies `cfg` to `tcp`. A refused option is logged and the connection goes on with the
/// kernel's setting: it changes latency under load, never whether the link works.
pub(super) fn tune(tcp: &TcpStream, cfg: &SocketConfig) {
    let sock = SockRef::from(tcp);
    // Small frames must not wait for Nagle: the session batches writes itself.
    if let Err(e) = sock.set_tcp_nodelay(true) {
        debug!(error = %e, "TCP_NODELAY refused");
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if cfg.unsent_bytes > 0 {
        if let Err(e) = sock.set_tcp_notsent_lowat(cfg.unsent_bytes) {
            debug!(error = %e, "TCP_NOTSENT_LOWAT refused");
        }
    }
    if cfg.receive_buffer > 0 {
        if let Err(e) = sock.set_recv_buffer_size(cfg.receive_buffer as usize) {
            debug!(error = %e, "SO_RCVBUF refused");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_configured_options_are_set_on_the_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tcp, _) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let tcp = tcp.unwrap();
        let cfg = SocketConfig {
            unsent_bytes: 64 * 1024,
            receive_buffer: 128 * 1024,
        };
        tune(&tcp, &cfg);
        let sock = SockRef::from(&tcp);
        assert!(sock.tcp_nodelay().unwrap());
        #[cfg(target_os = "linux")]
        assert_eq!(sock.tcp_notsent_lowat().unwrap(), 64 * 1024);
        // Linux doubles SO_RCVBUF for its bookkeeping; at least what was asked is there.
        assert!(sock.recv_buffer_size().unwrap() >= 128 * 1024);
    }
}
