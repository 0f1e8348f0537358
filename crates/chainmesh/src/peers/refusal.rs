//! Why a connection did not get past TLS or the protocol handshake, as data.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Serialize, Serializer};

use super::handshake::HandshakeError;
use crate::admission::Refusal;
use crate::identity::NodeId;
use crate::tls::TlsError;
use crate::wire::{VersionRanges, WireError};

/// Why a connection was refused during TLS or the protocol handshake: by this node, by the
/// peer, or because the link failed on the way.
///
/// Displays as the reason in words, which is what logs and the admin API show; serializes as
/// that text too.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefusalReason {
    /// The peer's certificate chain did not verify against `ca.crt`.
    #[error("peer certificate did not verify: {reason} (depth {depth}, `{subject}`)")]
    CertificateNotVerified {
        /// OpenSSL's verification result, e.g. "unable to get local issuer certificate".
        reason: String,
        /// Position in the peer's chain of the certificate that failed; 0 is the leaf.
        depth: u32,
        /// Subject of the certificate that failed.
        subject: String,
    },
    /// The peer sent no certificate.
    #[error("peer presented no certificate")]
    NoCertificate,
    /// The peer's certificate key cannot give a node ID (e.g. an RSA certificate).
    #[error("peer certificate unusable: {0}")]
    UnusableCertificate(String),
    /// The peer's node ID is on the blacklist.
    #[error("peer refused: blacklisted {}", .0.short())]
    Blacklisted(NodeId),
    /// A whitelist is set and the peer's node ID is not on it.
    #[error("peer refused: not-whitelisted {}", .0.short())]
    NotWhitelisted(NodeId),
    /// The peer aborted TLS with an alert, usually because it refused us.
    #[error("TLS handshake failed: peer sent alert `{0}`")]
    PeerAlert(String),
    /// TLS failed otherwise: I/O errors, protocol or cipher mismatches.
    #[error("TLS handshake failed: {0}")]
    TlsFailed(String),
    /// This node could not set up its side of TLS.
    #[error("{0}")]
    TlsSetup(String),
    /// TLS did not finish within the handshake timeout.
    #[error("tls handshake timed out after {0:?}")]
    TlsTimedOut(Duration),
    /// The two sides' protocol version ranges do not overlap.
    #[error("no common protocol version: {0}")]
    NoCommonVersion(VersionRanges),
    /// The peer's first packet after TLS was not a handshake.
    #[error("expected a handshake packet first, got packet type {0}")]
    NotAHandshake(u16),
    /// The peer's handshake did not decode.
    #[error("malformed handshake: {0}")]
    MalformedHandshake(WireError),
    /// The stream failed or closed during the protocol handshake.
    #[error("handshake i/o: {0}")]
    HandshakeIo(String),
    /// The protocol handshake did not finish within the handshake timeout.
    #[error("handshake timed out after {0:?}")]
    HandshakeTimedOut(Duration),
    /// The peer's certificate chained to the CA but is not a node (leaf) certificate.
    #[error("peer certificate `{subject}` is not a node certificate: {problem}")]
    NotALeaf {
        /// The certificate's subject.
        subject: String,
        /// What makes it no leaf, e.g. "basicConstraints says CA:TRUE".
        problem: String,
    },
    /// The node is connected already, from another process holding its certificate (a copy,
    /// or a restart whose old connection is still alive): the live session is kept.
    #[error(
        "node {} is {ALREADY_CONNECTED} from {existing}; refusing a second connection from \
         {new} (another incarnation)",
        .peer.short()
    )]
    AlreadyConnected {
        /// The node.
        peer: NodeId,
        /// The address of its live session.
        existing: SocketAddr,
        /// The address of the refused connection.
        new: SocketAddr,
    },
    /// A duplicate connection arrived while another duplicate of the same peer was still
    /// draining; it is closed at once instead of draining too.
    #[error("node {} has a duplicate connection draining already; closing another one at once", .0.short())]
    TooManyDuplicates(NodeId),
    /// The address has `limit` handshakes under way already (`limits.handshakes_per_ip`).
    #[error("{ip} has {limit} handshakes under way already (limits.handshakes_per_ip)")]
    TooManyHandshakesFromIp {
        /// The remote IP address.
        ip: IpAddr,
        /// The limit.
        limit: usize,
    },
    /// The address has `limit` connections already (`limits.connections_per_ip`).
    #[error("{ip} has {limit} connections already (limits.connections_per_ip)")]
    TooManyConnectionsFromIp {
        /// The remote IP address.
        ip: IpAddr,
        /// The limit.
        limit: usize,
    },
    /// The node has `limit` handshakes under way already (`limits.handshakes_per_identity`).
    #[error(
        "node {} has {limit} handshakes under way already (limits.handshakes_per_identity)",
        .peer.short()
    )]
    TooManyHandshakesForIdentity {
        /// The node.
        peer: NodeId,
        /// The limit.
        limit: usize,
    },
}

/// The words every "already connected" refusal contains, also in the Goodbye that tells the
/// refused process, so that it can recognise and log it.
pub const ALREADY_CONNECTED: &str = "already connected";

impl RefusalReason {
    /// A short stable name for the kind of refusal, the key it is counted under.
    pub fn kind(&self) -> &'static str {
        match self {
            RefusalReason::CertificateNotVerified { .. } => "certificate-not-verified",
            RefusalReason::NoCertificate => "no-certificate",
            RefusalReason::UnusableCertificate(_) => "unusable-certificate",
            RefusalReason::Blacklisted(_) => "blacklisted",
            RefusalReason::NotWhitelisted(_) => "not-whitelisted",
            RefusalReason::PeerAlert(_) => "peer-alert",
            RefusalReason::TlsFailed(_) => "tls-failed",
            RefusalReason::TlsSetup(_) => "tls-setup",
            RefusalReason::TlsTimedOut(_) => "tls-timed-out",
            RefusalReason::NoCommonVersion(_) => "no-common-version",
            RefusalReason::NotAHandshake(_) => "not-a-handshake",
            RefusalReason::MalformedHandshake(_) => "malformed-handshake",
            RefusalReason::HandshakeIo(_) => "handshake-io",
            RefusalReason::HandshakeTimedOut(_) => "handshake-timed-out",
            RefusalReason::NotALeaf { .. } => "not-a-leaf",
            RefusalReason::AlreadyConnected { .. } => "already-connected",
            RefusalReason::TooManyDuplicates(_) => "too-many-duplicates",
            RefusalReason::TooManyHandshakesFromIp { .. } => "too-many-handshakes-from-ip",
            RefusalReason::TooManyConnectionsFromIp { .. } => "too-many-connections-from-ip",
            RefusalReason::TooManyHandshakesForIdentity { .. } => {
                "too-many-handshakes-for-identity"
            }
        }
    }

    /// The reason for a peer the admission policy excludes.
    pub fn excluded(peer: NodeId, refusal: Refusal) -> Self {
        match refusal {
            Refusal::Blacklisted => RefusalReason::Blacklisted(peer),
            Refusal::NotWhitelisted => RefusalReason::NotWhitelisted(peer),
        }
    }
}

impl From<TlsError> for RefusalReason {
    fn from(e: TlsError) -> Self {
        match e {
            TlsError::Verify {
                reason,
                depth,
                subject,
            } => RefusalReason::CertificateNotVerified {
                reason,
                depth,
                subject,
            },
            TlsError::NoPeerCertificate => RefusalReason::NoCertificate,
            TlsError::PeerKey(problem) => RefusalReason::UnusableCertificate(problem),
            TlsError::NotALeaf { subject, problem } => RefusalReason::NotALeaf { subject, problem },
            TlsError::Refused { id, refusal } => RefusalReason::excluded(id, refusal),
            TlsError::PeerAlert { alert } => RefusalReason::PeerAlert(alert),
            TlsError::Handshake(what) => RefusalReason::TlsFailed(what),
            e @ (TlsError::Setup { .. } | TlsError::BadIdentity(_)) => {
                RefusalReason::TlsSetup(e.to_string())
            }
        }
    }
}

impl From<HandshakeError> for RefusalReason {
    fn from(e: HandshakeError) -> Self {
        match e {
            HandshakeError::Unexpected(packet_type) => RefusalReason::NotAHandshake(packet_type),
            HandshakeError::Wire(WireError::NoCommonVersion(ranges)) => {
                RefusalReason::NoCommonVersion(ranges)
            }
            HandshakeError::Wire(e) => RefusalReason::MalformedHandshake(e),
            HandshakeError::Io(e) => RefusalReason::HandshakeIo(e.to_string()),
            HandshakeError::Timeout(after) => RefusalReason::HandshakeTimedOut(after),
        }
    }
}

impl Serialize for RefusalReason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> NodeId {
        NodeId::from_bytes([b; 64])
    }

    #[test]
    fn tls_refusals_keep_their_words() {
        let verify = TlsError::Verify {
            reason: "unable to get local issuer certificate".into(),
            depth: 1,
            subject: "CN=agency".into(),
        };
        let text = verify.to_string();
        let reason = RefusalReason::from(verify);
        assert!(matches!(
            &reason,
            RefusalReason::CertificateNotVerified { reason, depth: 1, .. }
                if reason == "unable to get local issuer certificate"
        ));
        assert_eq!(reason.to_string(), text);
        for e in [
            TlsError::NoPeerCertificate,
            TlsError::PeerKey("not an EC key".into()),
            TlsError::PeerAlert {
                alert: "unknown CA".into(),
            },
            TlsError::Handshake("connection reset".into()),
            TlsError::BadIdentity("the identity has no certificate".into()),
        ] {
            let text = e.to_string();
            assert_eq!(RefusalReason::from(e).to_string(), text);
        }
    }

    #[test]
    fn admission_refusals_name_the_list_and_the_peer() {
        let e = TlsError::Refused {
            id: id(7),
            refusal: Refusal::Blacklisted,
        };
        let text = e.to_string();
        assert_eq!(RefusalReason::from(e), RefusalReason::Blacklisted(id(7)));
        assert_eq!(RefusalReason::Blacklisted(id(7)).to_string(), text);
        assert_eq!(
            RefusalReason::excluded(id(8), Refusal::NotWhitelisted),
            RefusalReason::NotWhitelisted(id(8))
        );
        assert_eq!(
            RefusalReason::NotWhitelisted(id(8)).to_string(),
            format!("peer refused: not-whitelisted {}", id(8).short())
        );
    }

    #[test]
    fn disjoint_versions_name_both_ranges() {
        let ranges = VersionRanges {
            ours_min: 1,
            ours_max: 2,
            theirs_min: 7,
            theirs_max: 9,
        };
        let e = HandshakeError::Wire(WireError::NoCommonVersion(ranges));
        let reason = RefusalReason::from(e);
        assert_eq!(reason, RefusalReason::NoCommonVersion(ranges));
        assert_eq!(
            reason.to_string(),
            "no common protocol version: we support 1..=2, the peer 7..=9"
        );
    }

    #[test]
    fn other_handshake_failures_keep_their_words() {
        let malformed = WireError::HandshakeSize {
            length: 3,
            expected: 10,
        };
        for e in [
            HandshakeError::Unexpected(5),
            HandshakeError::Wire(malformed.clone()),
            HandshakeError::Io(std::io::ErrorKind::UnexpectedEof.into()),
            HandshakeError::Timeout(Duration::from_millis(50)),
        ] {
            let text = e.to_string();
            assert_eq!(RefusalReason::from(e).to_string(), text);
        }
        assert_eq!(
            RefusalReason::from(HandshakeError::Wire(malformed.clone())),
            RefusalReason::MalformedHandshake(malformed)
        );
    }

    #[test]
    fn serializes_as_its_words() {
        let json = serde_json::to_value(RefusalReason::NoCertificate).unwrap();
        assert_eq!(json, "peer presented no certificate");
    }
}
