//! Mutual TLS between nodes: both sides present their CA-issued chain, both verify the other's
//! against `ca.crt` alone, and the peer's node ID is taken from its leaf certificate.
//!
//! Protocol versions: a secp256k1 certificate can only sign in TLS 1.2 (TLS 1.3 has no
//! signature scheme for that curve), while prime256v1 works in both. Both versions are offered
//! and the certificates decide: a server holding a secp256k1 certificate negotiates TLS 1.2 by
//! itself (OpenSSL checks whether its certificate is usable in 1.3), and a node holding one
//! caps its own maximum at TLS 1.2 so that, as a client, it is not talked into a 1.3
//! handshake in which it could not sign. The groups list includes secp256k1 because in TLS 1.2
//! a server only uses an ECDSA certificate on a curve the client listed; without it the
//! handshake fails with "no shared cipher".
//!
//! Admission (blacklist and whitelist by node ID) is applied inside the certificate check, so
//! a refused peer never completes a handshake.
//!
//! One TLS 1.3 property callers must know: the client finishes its side of the handshake
//! before the server has checked the client's certificate. A client refused by the server in
//! TLS 1.3 therefore sees [`TlsContext::connect`] succeed and its first read fail with the
//! server's alert. The protocol handshake that follows TLS catches that.

use std::sync::Arc;

use openssl::error::ErrorStack;
use openssl::nid::Nid;
use openssl::ssl::{
    SslAlert, SslContext, SslContextBuilder, SslMethod, SslMode, SslOptions, SslRef,
    SslSessionCacheMode, SslVerifyMode, SslVersion,
};
use openssl::x509::{X509StoreContextRef, X509VerifyResult};
use parking_lot::{Mutex, RwLock};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_openssl::SslStream;

mod stream;

pub use stream::TlsStream;

use crate::admission::{Admission, Refusal};
use crate::identity::{check_leaf, node_id_of_cert, subject_of, Identity, NodeId};

/// Key exchange groups offered, most preferred first. X25519 and P-256 for speed and
/// interoperability; secp256k1 so that TLS 1.2 servers may use secp256k1 certificates.
const GROUPS: &str = "X25519:P-256:secp256k1";

/// TLS 1.2 suites: ECDHE with ECDSA (node keys are EC) and AEAD ciphers only. TLS 1.3 suites
/// are configured separately and keep OpenSSL's defaults, which are all AEAD.
const TLS12_CIPHERS: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:\
                             ECDHE-ECDSA-CHACHA20-POLY1305";

/// Session ID context, needed by OpenSSL on servers that verify clients.
const SESSION_ID_CONTEXT: &[u8] = b"chainmesh";

/// OpenSSL's reason code `SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE` (ssl/sslerr.h). Reason
/// codes are part of OpenSSL's stable ABI; the crate does not re-export this one.
const REASON_PEER_DID_NOT_RETURN_A_CERTIFICATE: i32 = 199;

/// Why a TLS link could not be set up or was refused.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The local identity could not be installed into a TLS context.
    #[error("TLS setup: cannot {what}: {source}")]
    Setup {
        /// The step that failed.
        what: &'static str,
        /// OpenSSL's reason.
        source: ErrorStack,
    },
    /// The local identity is unusable (e.g. it has no certificate).
    #[error("TLS setup: {0}")]
    BadIdentity(String),
    /// The peer's certificate chain did not verify against `ca.crt`.
    #[error("peer certificate did not verify: {reason} (depth {depth}, `{subject}`)")]
    Verify {
        /// OpenSSL's verification result, e.g. "unable to get local issuer certificate".
        reason: String,
        /// Position in the peer's chain of the certificate that failed; 0 is the leaf.
        depth: u32,
        /// Subject of the certificate that failed.
        subject: String,
    },
    /// The peer sent no certificate.
    #[error("peer presented no certificate")]
    NoPeerCertificate,
    /// The peer's certificate key cannot give a node ID (e.g. an RSA certificate).
    #[error("peer certificate unusable: {0}")]
    PeerKey(String),
    /// The peer's certificate chains to the CA but is not a node certificate
    /// ([`check_leaf`]).
    #[error("peer certificate `{subject}` is not a node certificate: {problem}")]
    NotALeaf {
        /// The certificate's subject.
        subject: String,
        /// What makes it no leaf.
        problem: String,
    },
    /// The peer is refused by the admission policy.
    #[error("peer refused: {refusal} {}", id.short())]
    Refused {
        /// The peer's node ID.
        id: NodeId,
        /// Why: blacklisted or not whitelisted.
        refusal: Refusal,
    },
    /// The peer aborted the handshake with an alert, usually because it refused us.
    #[error("TLS handshake failed: peer sent alert `{alert}`")]
    PeerAlert {
        /// The alert's description, e.g. "unknown CA" or "bad certificate".
        alert: String,
    },
    /// Any other handshake failure: I/O errors, protocol or cipher mismatches.
    #[error("TLS handshake failed: {0}")]
    Handshake(String),
}

impl TlsError {
    /// Whether this side refused the peer (as opposed to the peer refusing us, or the link
    /// failing).
    pub fn is_local_refusal(&self) -> bool {
        matches!(
            self,
            TlsError::Verify { .. }
                | TlsError::NoPeerCertificate
                | TlsError::PeerKey(_)
                | TlsError::NotALeaf { .. }
                | TlsError::Refused { .. }
        )
    }
}

/// The TLS configuration of a node, cheap to clone and shared by all its links.
#[derive(Clone)]
pub struct TlsContext {
    inner: Arc<Inner>,
}

struct Inner {
    client: SslContext,
    server: SslContext,
    admission: Arc<RwLock<Admission>>,
    local_id: NodeId,
}

impl std::fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsContext")
            .field("local_id", &self.inner.local_id)
            .finish_non_exhaustive()
    }
}

/// The first reason the verify callback refused a peer, kept so the error names the real
/// cause rather than OpenSSL's generic "certificate verify failed".
#[derive(Debug, Clone)]
enum Rejection {
    Verify {
        result: X509VerifyResult,
        depth: u32,
        subject: String,
    },
    Key(String),
    NotALeaf {
        subject: String,
        problem: String,
    },
    Refused(NodeId, Refusal),
}

impl TlsContext {
    /// Builds client and server contexts from `identity`; `admission` is read during every
    /// handshake, so changes to it apply to the next handshake.
    pub fn new(identity: &Identity, admission: Arc<RwLock<Admission>>) -> Result<Self, TlsError> {
        Ok(TlsContext {
            inner: Arc::new(Inner {
                client: build_context(identity, false)?,
                server: build_context(identity, true)?,
                admission,
                local_id: identity.node_id,
            }),
        })
    }

    /// This node's ID.
    pub fn local_id(&self) -> NodeId {
        self.inner.local_id
    }

    /// The admission policy checked during handshakes.
    pub fn admission(&self) -> &Arc<RwLock<Admission>> {
        &self.inner.admission
    }

    /// Runs the client side of the handshake over `stream`; returns the TLS stream and the
    /// server's node ID. No timeout is applied: wrap the call in one.
    pub async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
    ) -> Result<(TlsStream<S>, NodeId), TlsError> {
        self.handshake(stream, false).await
    }

    /// Runs the server side of the handshake over `stream`; returns the TLS stream and the
    /// client's node ID. No timeout is applied: wrap the call in one.
    pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
    ) -> Result<(TlsStream<S>, NodeId), TlsError> {
        self.handshake(stream, true).await
    }

    async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: S,
        server: bool,
    ) -> Result<(TlsStream<S>, NodeId), TlsError> {
        let ctx = if server {
            &self.inner.server
        } else {
            &self.inner.client
        };
        let mut ssl = openssl::ssl::Ssl::new(ctx).map_err(setup("create a TLS session"))?;
        let rejection = Arc::new(Mutex::new(None::<Rejection>));
        let mode = if server {
            SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT
        } else {
            SslVerifyMode::PEER
        };
        {
            // A per-session callback, so the rejection slot belongs to this handshake alone.
            let rejection = Arc::clone(&rejection);
            let admission = Arc::clone(&self.inner.admission);
            ssl.set_verify_callback(mode, move |ok, x509| {
                verify_peer(ok, x509, &admission, &rejection)
            });
        }
        let tls = SslStream::new(ssl, stream).map_err(setup("create a TLS stream"))?;
        let role = if server { "accept" } else { "connect" };
        let tls = match TlsStream::handshake(tls, server).await {
            Ok(tls) => tls,
            Err((e, tls)) => {
                let rejection = rejection.lock().take();
                let err = classify(e, tls.ssl(), rejection);
                if err.is_local_refusal() {
                    tracing::warn!(role, "TLS peer refused: {err}");
                } else {
                    tracing::debug!(role, "TLS handshake failed: {err}");
                }
                return Err(err);
            }
        };
        let Some(cert) = tls.ssl().peer_certificate() else {
            tracing::warn!(role, "TLS peer refused: peer presented no certificate");
            return Err(TlsError::NoPeerCertificate);
        };
        // The verify callback checked this key already; this cannot fail for a verified peer.
        let id = node_id_of_cert(&cert).map_err(|e| TlsError::PeerKey(e.to_string()))?;
        tracing::debug!(role, peer = %id.short(), version = tls.ssl().version_str(), "TLS link up");
        Ok((tls, id))
    }
}

fn setup(what: &'static str) -> impl Fn(ErrorStack) -> TlsError {
    move |source| TlsError::Setup { what, source }
}

/// One side's context. Server and client differ only in the verify mode, which is set per
/// session anyway; they are separate so that OpenSSL's per-context state stays per role.
fn build_context(identity: &Identity, server: bool) -> Result<SslContext, TlsError> {
    let leaf = identity
        .chain
        .first()
        .ok_or_else(|| TlsError::BadIdentity("the identity has no certificate".into()))?;
    let curve = identity
        .key
        .ec_key()
        .ok()
        .and_then(|k| k.group().curve_name());
    let max_version = if curve == Some(Nid::SECP256K1) {
        SslVersion::TLS1_2
    } else {
        SslVersion::TLS1_3
    };

    let mut b = SslContextBuilder::new(SslMethod::tls()).map_err(setup("create a TLS context"))?;
    b.set_min_proto_version(Some(SslVersion::TLS1_2))
        .map_err(setup("set the minimum TLS version"))?;
    b.set_max_proto_version(Some(max_version))
        .map_err(setup("set the maximum TLS version"))?;
    b.set_groups_list(GROUPS)
        .map_err(setup("set the key exchange groups"))?;
    b.set_cipher_list(TLS12_CIPHERS)
        .map_err(setup("set the TLS 1.2 cipher suites"))?;
    // No resumption is used: links are long-lived. Tickets would only cost a post-handshake
    // write from the server (TLS 1.3) or an extension (TLS 1.2).
    b.set_num_tickets(0)
        .map_err(setup("turn off TLS 1.3 session tickets"))?;
    b.set_options(SslOptions::NO_TICKET | SslOptions::NO_RENEGOTIATION);
    b.set_session_cache_mode(SslSessionCacheMode::OFF);
    b.set_session_id_context(SESSION_ID_CONTEXT)
        .map_err(setup("set the session ID context"))?;
    // Measured: freeing and reallocating the read/write buffers whenever a link goes idle
    // costs more than the memory it saves. A bare context never sets RELEASE_BUFFERS (only
    // the crate's SslConnector/SslAcceptor builders do), and there is no clear_mode in the
    // crate; `set_mode` with no bits reports the mode so a future default is caught in tests.
    debug_assert!(!b
        .set_mode(SslMode::empty())
        .contains(SslMode::RELEASE_BUFFERS));
    // A session retries a write that would block with a longer buffer once more frames are
    // queued (batching); OpenSSL must accept the retry from a moved, grown buffer or it fails
    // the link with "bad write retry".
    b.set_mode(SslMode::ACCEPT_MOVING_WRITE_BUFFER);
    // Read ahead: OpenSSL fills its own record buffer with as much as the socket has (up to
    // one maximum record plus overhead, ~17 KiB) instead of reading each record's 5-byte
    // header and then its body in two system calls. Links therefore need no read buffer of
    // their own under the TLS stream: 15 KiB less per idle connection (docs/performance.md).
    // Bytes read ahead stay inside the `SSL` until `SSL_read` hands them out; the session
    // reads until the stream returns `Pending`, which only happens once the socket itself
    // would block, so nothing is left waiting there without a wake-up.
    b.set_read_ahead(true);

    b.set_certificate(leaf)
        .map_err(setup("install the node certificate"))?;
    for extra in &identity.chain[1..] {
        b.add_extra_chain_cert(extra.clone())
            .map_err(setup("install the agency certificate"))?;
    }
    b.set_private_key(&identity.key)
        .map_err(setup("install the node key"))?;
    b.check_private_key()
        .map_err(setup("match the node key with its certificate"))?;
    // Only ca.crt is trusted: no system roots are loaded.
    for ca in &identity.ca {
        b.cert_store_mut()
            .add_cert(ca.clone())
            .map_err(setup("add a CA certificate to the trust store"))?;
    }
    let mode = if server {
        SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT
    } else {
        SslVerifyMode::PEER
    };
    b.set_verify(mode);
    Ok(b.build())
}

/// The verify callback: keeps OpenSSL's verdict on the chain, and at the leaf derives the node
/// ID and applies admission. Returns whether the handshake may go on.
fn verify_peer(
    preverify_ok: bool,
    x509: &mut X509StoreContextRef,
    admission: &RwLock<Admission>,
    rejection: &Mutex<Option<Rejection>>,
) -> bool {
    let record = |r: Rejection| {
        let mut slot = rejection.lock();
        if slot.is_none() {
            *slot = Some(r);
        }
    };
    if !preverify_ok {
        record(Rejection::Verify {
            result: x509.error(),
            depth: x509.error_depth(),
            subject: x509
                .current_cert()
                .map(subject_of)
                .unwrap_or_else(|| "(no certificate)".into()),
        });
        return false;
    }
    if x509.error_depth() != 0 {
        return true;
    }
    let Some(cert) = x509.current_cert() else {
        // OpenSSL always sets the current certificate before calling back; be safe anyway.
        record(Rejection::Key("no leaf certificate to check".into()));
        x509.set_error(X509VerifyResult::APPLICATION_VERIFICATION);
        return false;
    };
    let id = match node_id_of_cert(cert) {
        Ok(id) => id,
        Err(e) => {
            record(Rejection::Key(e.to_string()));
            x509.set_error(X509VerifyResult::APPLICATION_VERIFICATION);
            return false;
        }
    };
    // Chained through the CA is not enough: a CA certificate (or one that does not say it
    // is none) issued under the chain must not act as a node.
    if let Err(problem) = check_leaf(cert) {
        record(Rejection::NotALeaf {
            subject: subject_of(cert),
            problem: problem.to_string(),
        });
        x509.set_error(X509VerifyResult::APPLICATION_VERIFICATION);
        return false;
    }
    match admission.read().check(&id) {
        Ok(()) => true,
        Err(refusal) => {
            record(Rejection::Refused(id, refusal));
            x509.set_error(X509VerifyResult::APPLICATION_VERIFICATION);
            false
        }
    }
}

/// Turns a failed handshake into the most precise error available.
fn classify(e: openssl::ssl::Error, ssl: &SslRef, rejection: Option<Rejection>) -> TlsError {
    match rejection {
        Some(Rejection::Verify {
            result,
            depth,
            subject,
        }) => {
            return TlsError::Verify {
                reason: result.error_string().to_owned(),
                depth,
                subject,
            }
        }
        Some(Rejection::Key(problem)) => return TlsError::PeerKey(problem),
        Some(Rejection::NotALeaf { subject, problem }) => {
            return TlsError::NotALeaf { subject, problem }
        }
        Some(Rejection::Refused(id, refusal)) => return TlsError::Refused { id, refusal },
        None => {}
    }
    let verify = ssl.verify_result();
    if verify != X509VerifyResult::OK {
        return TlsError::Verify {
            reason: verify.error_string().to_owned(),
            depth: 0,
            subject: ssl
                .peer_certificate()
                .map(|c| subject_of(&c))
                .unwrap_or_else(|| "(unknown)".into()),
        };
    }
    if let Some(stack) = e.ssl_error() {
        for err in stack.errors() {
            let reason = err.reason_code();
            if reason == REASON_PEER_DID_NOT_RETURN_A_CERTIFICATE {
                return TlsError::NoPeerCertificate;
            }
            if let Some(alert) = SslAlert::from_reason_code(reason) {
                return TlsError::PeerAlert {
                    alert: alert.to_string(),
                };
            }
        }
    }
    TlsError::Handshake(describe(&e))
}

/// A one-line description of a handshake error: OpenSSL's reasons, or the I/O error.
fn describe(e: &openssl::ssl::Error) -> String {
    if let Some(io) = e.io_error() {
        return io.to_string();
    }
    if let Some(stack) = e.ssl_error() {
        let reasons: Vec<String> = stack
            .errors()
            .iter()
            .map(|err| {
                err.reason()
                    .map(str::to_owned)
                    .unwrap_or_else(|| err.to_string())
            })
            .collect();
        if !reasons.is_empty() {
            return reasons.join("; ");
        }
    }
    if e.code() == openssl::ssl::ErrorCode::SYSCALL {
        return "connection closed by peer during the handshake".into();
    }
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Curve, NetworkCa};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    fn ctx(creds: &crate::identity::NodeCredentials, admission: Admission) -> TlsContext {
        TlsContext::new(&creds.identity().unwrap(), Arc::new(RwLock::new(admission))).unwrap()
    }

    #[test]
    fn bare_contexts_do_not_release_buffers() {
        let mut b = SslContextBuilder::new(SslMethod::tls()).unwrap();
        assert!(!b
            .set_mode(SslMode::empty())
            .contains(SslMode::RELEASE_BUFFERS));
    }

    #[tokio::test]
    async fn handshake_over_a_pipe_learns_both_ids() {
        for (curve, version) in [
            (Curve::Secp256k1, "TLSv1.2"),
            (Curve::Prime256v1, "TLSv1.3"),
        ] {
            let ca = NetworkCa::generate(curve).unwrap();
            let (a, b) = (ca.issue_node("a").unwrap(), ca.issue_node("b").unwrap());
            let (ca_ctx, cb_ctx) = (ctx(&a, Admission::default()), ctx(&b, Admission::default()));
            let (x, y) = tokio::io::duplex(64 * 1024);
            let (client, server) = tokio::join!(ca_ctx.connect(x), cb_ctx.accept(y));
            let (mut cs, server_id) = client.unwrap();
            let (mut ss, client_id) = server.unwrap();
            assert_eq!(server_id, b.node_id);
            assert_eq!(client_id, a.node_id);
            assert_eq!(cs.ssl().version_str(), version);
            cs.write_all(b"ping").await.unwrap();
            let mut buf = [0u8; 4];
            ss.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ping");
        }
    }

    /// A TLS pair over real loopback TCP, as sessions run (read ahead reads from the socket).
    async fn tcp_pair(curve: Curve) -> (TlsStream<TcpStream>, TlsStream<TcpStream>) {
        let ca = NetworkCa::generate(curve).unwrap();
        let (a, b) = (ca.issue_node("a").unwrap(), ca.issue_node("b").unwrap());
        let (ca_ctx, cb_ctx) = (ctx(&a, Admission::default()), ctx(&b, Admission::default()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, server) = tokio::join!(
            async {
                ca_ctx
                    .connect(TcpStream::connect(addr).await.unwrap())
                    .await
            },
            async { cb_ctx.accept(listener.accept().await.unwrap().0).await },
        );
        (client.unwrap().0, server.unwrap().0)
    }

    #[tokio::test]
    async fn records_read_ahead_are_handed_out_without_waiting_for_the_socket() {
        for curve in [Curve::Secp256k1, Curve::Prime256v1] {
            let (mut cs, mut ss) = tcp_pair(curve).await;
            // Three records sent before the receiver reads: its first read takes all of them
            // from the socket into OpenSSL's buffer, and the next two reads must be served
            // from there, with nothing more arriving on the socket to wake them.
            for msg in [b"one", b"two", b"six"] {
                cs.write_all(msg).await.unwrap();
            }
            cs.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            for want in [b"one", b"two", b"six"] {
                let mut got = [0u8; 3];
                tokio::time::timeout(Duration::from_secs(5), ss.read_exact(&mut got))
                    .await
                    .expect("a record already read ahead must not wait for the socket")
                    .unwrap();
                assert_eq!(&got, want);
            }
        }
    }

    /// Leaves an entry on this thread's OpenSSL error queue, as a check that answers "no"
    /// without returning an error does: an ECDSA signature whose `r` is zero is "not valid"
    /// and also queues "bad signature".
    fn leave_an_openssl_error() {
        use openssl::bn::BigNum;
        let group = openssl::ec::EcGroup::from_curve_name(Nid::SECP256K1).unwrap();
        let key = openssl::ec::EcKey::generate(&group).unwrap();
        let (r, s) = (BigNum::from_u32(0).unwrap(), BigNum::from_u32(1).unwrap());
        let sig = openssl::ecdsa::EcdsaSig::from_private_components(r, s).unwrap();
        assert!(!sig.verify(&[1u8; 32], &key).unwrap());
    }

    #[tokio::test]
    async fn an_error_left_on_the_thread_by_other_code_does_not_fail_a_link() {
        for curve in [Curve::Secp256k1, Curve::Prime256v1] {
            let (mut cs, mut ss) = tcp_pair(curve).await;
            let mut got = [0u8; 4];
            // Nothing has arrived, so OpenSSL would block; with the stale entry on the queue
            // it would report the entry instead, and the link would end.
            leave_an_openssl_error();
            let read = futures_util::FutureExt::now_or_never(ss.read(&mut got));
            assert!(
                read.is_none(),
                "a read with nothing to read ended: {read:?}"
            );
            leave_an_openssl_error();
            cs.write_all(b"ping").await.unwrap();
            cs.flush().await.unwrap();
            leave_an_openssl_error();
            ss.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"ping");
        }
    }

    #[tokio::test]
    async fn large_transfers_survive_partial_records() {
        let (mut cs, mut ss) = tcp_pair(Curve::Secp256k1).await;
        // Odd-sized writes and reads, so records and reads straddle each other.
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let writer = async {
            for chunk in data.chunks(40_009) {
                cs.write_all(chunk).await.unwrap();
            }
            cs.flush().await.unwrap();
        };
        let reader = async {
            let mut got = Vec::with_capacity(data.len());
            let mut buf = vec![0u8; 7_001];
            while got.len() < data.len() {
                let n = ss.read(&mut buf).await.unwrap();
                assert_ne!(n, 0, "stream ended early");
                got.extend_from_slice(&buf[..n]);
            }
            got
        };
        let ((), got) = tokio::join!(writer, reader);
        assert!(got == data, "bytes differ after {} B", got.len());
    }

    #[tokio::test]
    async fn blacklisted_client_is_refused_by_the_server() {
        let ca = NetworkCa::generate(Curve::Secp256k1).unwrap();
        let (a, b) = (ca.issue_node("a").unwrap(), ca.issue_node("b").unwrap());
        let client = ctx(&a, Admission::default());
        let server = ctx(&b, Admission::new([a.node_id], []));
        let (x, y) = tokio::io::duplex(64 * 1024);
        let (c, s) = tokio::join!(client.connect(x), server.accept(y));
        let s = s.unwrap_err();
        assert!(s.is_local_refusal());
        assert_eq!(
            s.to_string(),
            format!("peer refused: blacklisted {}", a.node_id.short())
        );
        let c = c.unwrap_err();
        assert!(matches!(c, TlsError::PeerAlert { .. }), "{c}");
    }
}
