//! The TLS stream every link runs on: OpenSSL's, with this thread's error queue emptied before
//! each operation.
//!
//! OpenSSL classifies the outcome of a TLS read, write or handshake step (`SSL_get_error`) by
//! looking at the calling thread's error queue, and requires it to be empty beforehand. A
//! runtime worker runs many links and whatever else the embedding node does with OpenSSL; an
//! entry one of them left behind would make the next link polled on that thread fail with
//! it, "would block" read as a fatal error. Emptying the queue first keeps each link's
//! outcome its own.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use openssl::ssl::SslRef;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_openssl::SslStream;

use crate::identity::keys::discard_thread_errors;

/// A TLS stream over `S` whose operations start on an empty OpenSSL error queue.
#[derive(Debug)]
pub struct TlsStream<S>(SslStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream<S> {
    /// Runs the handshake of `stream` to its end, as the server or as a client. A failed
    /// one is returned with the stream, whose session says why.
    pub(super) async fn handshake(
        mut stream: SslStream<S>,
        server: bool,
    ) -> Result<Self, (openssl::ssl::Error, SslStream<S>)> {
        let result = std::future::poll_fn(|cx| {
            discard_thread_errors();
            let s = Pin::new(&mut stream);
            if server {
                s.poll_accept(cx)
            } else {
                s.poll_connect(cx)
            }
        })
        .await;
        match result {
            Ok(()) => Ok(TlsStream(stream)),
            Err(e) => Err((e, stream)),
        }
    }
}

impl<S> TlsStream<S> {
    /// The TLS session: the peer's certificate, the negotiated version.
    pub fn ssl(&self) -> &SslRef {
        self.0.ssl()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        discard_thread_errors();
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        discard_thread_errors();
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        discard_thread_errors();
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        discard_thread_errors();
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
