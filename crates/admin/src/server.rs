//! The admin listeners: every connection and request passes the same guards before a route
//! sees it. A listener holds at most `admin.max_connections` connections (more are answered
//! 503 and closed); a request's headers must arrive within `admin.header_timeout` (which also
//! closes idle connections) and its body within `admin.body_timeout`, at most
//! `admin.max_body_bytes` long; its `Host` must name this listener (against DNS rebinding: a
//! web page of another origin cannot make a browser talk to it); and anything but GET or HEAD
//! (and the ping diagnostic) needs the token, or is refused outright on a read-only listener.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH, HOST, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower_service::Service;
use tracing::{debug, warn};

use super::{AdminToken, ApiError};
use chainmesh::config::AdminConfig;

/// Largest request head (request line and headers) a listener reads.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Pause after a failed accept (e.g. out of file descriptors) before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What a listener lets its clients do.
#[derive(Debug, Clone)]
pub enum Access {
    /// Every route; writes (anything but GET and HEAD) need this token.
    ReadWrite(AdminToken),
    /// Only GET and HEAD: for a metrics or monitoring listener.
    ReadOnly,
}

/// What every request on one listener is checked against.
struct Guard {
    app: Router,
    access: Access,
    allowed_hosts: Vec<String>,
    body_timeout: Duration,
    max_body: usize,
}

/// `POST /v1/ping` changes nothing on the node, so it needs no token on the read-write
/// listener (as a read would); it sends traffic into the network, so the read-only listener,
/// which may face a monitoring network, still refuses it. Its payload is capped by
/// `admin.max_ping_bytes`.
fn is_ping(req: &Request<Incoming>) -> bool {
    req.method() == Method::POST && req.uri().path() == "/v1/ping"
}

fn refusal(status: StatusCode, message: impl Into<String>) -> Response {
    ApiError {
        status,
        message: message.into(),
    }
    .into_response()
}

impl Guard {
    async fn handle(&self, req: Request<Incoming>, local: SocketAddr) -> Response {
        if !host_allowed(req.headers().get(HOST), local, &self.allowed_hosts) {
            return refusal(
                StatusCode::MISDIRECTED_REQUEST,
                "the Host header names neither this listener nor an entry of admin.allowed_hosts",
            );
        }
        let reads = matches!(*req.method(), Method::GET | Method::HEAD);
        let open = reads || is_ping(&req);
        match &self.access {
            Access::ReadOnly if !reads => {
                return refusal(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "this listener serves only the read-only (GET) routes",
                )
            }
            Access::ReadWrite(token)
                if !open && !bearer(&req).is_some_and(|t| token.matches(t)) =>
            {
                let mut r = refusal(
                    StatusCode::UNAUTHORIZED,
                    "this endpoint needs `Authorization: Bearer <token>`; the node keeps the \
                     token in admin.token beside its config file",
                );
                r.headers_mut()
                    .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return r;
            }
            _ => {}
        }
        let (parts, body) = req.into_parts();
        let announced = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let too_large = || {
            refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body exceeds {} bytes", self.max_body),
            )
        };
        if announced.is_some_and(|n| n > self.max_body as u64) {
            return too_large();
        }
        let read = axum::body::to_bytes(Body::new(body), self.max_body);
        let bytes = match tokio::time::timeout(self.body_timeout, read).await {
            Err(_) => {
                return refusal(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the request body did not arrive within {:?}",
                        self.body_timeout
                    ),
                )
            }
            Ok(Err(_)) => return too_large(),
            Ok(Ok(b)) => b,
        };
        let mut app = self.app.clone();
        match app
            .call(Request::from_parts(parts, Body::from(bytes)))
            .await
        {
            Ok(r) => r,
            Err(never) => match never {},
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer<B>(req: &Request<B>) -> Option<&str> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Splits a `Host` value into its name and port; `None` as the port when there is none,
/// `Some(None)` when there is one that is no port number.
fn split_host(host: &str) -> (&str, Option<Option<u16>>) {
    let (name, port) = match host.strip_prefix('[').and_then(|h| h.split_once(']')) {
        Some((v6, rest)) => (v6, rest.strip_prefix(':')),
        None => match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        },
    };
    (name, port.map(|p| p.parse().ok()))
}

/// Whether a request's `Host` names the listener it came in on: its address as the client
/// dialed it, any loopback address or `localhost`, or an entry of `admin.allowed_hosts`
/// (`name:port` as written, or `name` on this listener's port).
fn host_allowed(host: Option<&HeaderValue>, local: SocketAddr, allowed: &[String]) -> bool {
    let Some(host) = host.and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let host = host.trim().to_ascii_lowercase();
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(&host)) {
        return true;
    }
    let (name, port) = split_host(&host);
    let port_ok = match port {
        Some(p) => p == Some(local.port()),
        None => local.port() == 80,
    };
    if !port_ok {
        return false;
    }
    if name == "localhost" || allowed.iter().any(|a| a.eq_ignore_ascii_case(name)) {
        return true;
    }
    name.parse::<IpAddr>().is_ok_and(|ip| {
        let ip = ip.to_canonical();
        ip.is_loopback() || ip == local.ip().to_canonical()
    })
}

/// Answers a connection over the cap with 503 and closes it, without waiting on it.
fn refuse(tcp: TcpStream, refused: &AtomicU64, cap: usize) {
    const BODY: &str = r#"{"error":"too many admin API connections"}"#;
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tcp.try_write(head.as_bytes());
    let n = refused.fetch_add(1, Ordering::Relaxed);
    // A flood of connections must not become a flood of log lines.
    if n.is_power_of_two() || n == 0 {
        warn!(
            cap,
            refused = n + 1,
            "admin API connection refused: admin.max_connections are open"
        );
    }
}

/// Serves `app` on `listener` behind the guards of `settings` until `stop` is cancelled.
pub(crate) fn spawn(
    listener: TcpListener,
    app: Router,
    access: Access,
    settings: &AdminConfig,
    stop: CancellationToken,
) {
    let guard = Arc::new(Guard {
        app,
        access,
        allowed_hosts: settings.allowed_hosts.clone(),
        body_timeout: settings.body_timeout,
        max_body: settings.max_body_bytes,
    });
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    let cap = settings.max_connections;
    let slots = Arc::new(Semaphore::new(cap));
    tokio::spawn(async move {
        let refused = AtomicU64::new(0);
        loop {
            let accepted = tokio::select! {
                _ = stop.cancelled() => break,
                a = listener.accept() => a,
            };
            let tcp = match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    warn!(error = %e, "admin API: accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                refuse(tcp, &refused, cap);
                continue;
            };
            let Ok(local) = tcp.local_addr() else {
                continue;
            };
            let guard = guard.clone();
            let stop = stop.clone();
            let conn = http.serve_connection(
                TokioIo::new(tcp),
                hyper::service::service_fn(move |req| {
                    let guard = guard.clone();
                    async move { Ok::<_, Infallible>(guard.handle(req, local).await) }
                }),
            );
            tokio::spawn(async move {
                let _slot = slot;
                tokio::pin!(conn);
                let served = tokio::select! {
                    r = conn.as_mut() => r,
                    _ = stop.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                };
                if let Err(e) = served {
                    debug!(error = %e, "admin API connection ended");
                }
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(host: &str, local: &str, names: &[&str]) -> bool {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        host_allowed(
            Some(&HeaderValue::from_str(host).unwrap()),
            local.parse().unwrap(),
            &names,
        )
    }

    #[test]
    fn host_must_name_this_listener_or_a_configured_name() {
        assert!(allowed("127.0.0.1:8080", "127.0.0.1:8080", &[]));
        assert!(allowed("localhost:8080", "127.0.0.1:8080", &[]));
        assert!(allowed("[::1]:8080", "127.0.0.1:8080", &[]));
        assert!(allowed("10.0.0.5:8080", "10.0.0.5:8080", &[]));
        assert!(allowed("[::1]:8080", "[::ffff:127.0.0.1]:8080", &[]));
        assert!(!allowed("127.0.0.1:8081", "127.0.0.1:8080", &[]));
        assert!(!allowed("127.0.0.1", "127.0.0.1:8080", &[]));
        assert!(!allowed("evil.example:8080", "127.0.0.1:8080", &[]));
        assert!(!allowed("10.0.0.6:8080", "10.0.0.5:8080", &[]));
        assert!(!allowed("localhost:x", "127.0.0.1:8080", &[]));
        assert!(allowed(
            "Node0.Example:8080",
            "10.0.0.5:8080",
            &["node0.example"]
        ));
        assert!(allowed(
            "proxy.example",
            "10.0.0.5:8080",
            &["proxy.example"]
        ));
        assert!(!allowed(
            "proxy.example:9",
            "10.0.0.5:8080",
            &["proxy.example:8"]
        ));
        assert!(!host_allowed(None, "127.0.0.1:80".parse().unwrap(), &[]));
    }

    #[test]
    fn bearer_takes_the_token_of_a_bearer_header_only() {
        let req = |v: &str| {
            Request::builder()
                .header(AUTHORIZATION, v)
                .body(())
                .unwrap()
        };
        assert_eq!(bearer(&req("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&req("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(&req("Basic abc")), None);
        assert_eq!(bearer(&Request::new(())), None);
    }
}
