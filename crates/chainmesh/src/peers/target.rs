//! Where a configured peer stands, as a small state machine without I/O: the dial loop and
//! the registry drive it, the admin API reads it.

use serde::{Serialize, Serializer};

use super::dialer::ConnectError;
use crate::identity::NodeId;
use crate::session::CloseReason;

/// Where a configured peer stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum TargetState {
    /// A dial or handshake is under way.
    Connecting,
    /// A session to this peer is up (dialed by us or by it).
    Connected,
    /// Waiting before the next attempt.
    BackingOff {
        /// When the next attempt starts, in milliseconds since the Unix epoch.
        next_attempt_ms: u64,
    },
    /// The address is this node itself; it is not dialed again.
    Itself,
}

/// Why a configured peer has no session: its last dial failed, or its last session ended.
///
/// Displays (and serializes) as the reason in words.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TargetError {
    /// The last dial did not produce a session.
    #[error("{0}")]
    Connect(ConnectError),
    /// The last session dialed to this address ended.
    #[error("{0}")]
    Closed(CloseReason),
}

impl Serialize for TargetError {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A configured peer as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TargetInfo {
    /// The configured address.
    pub address: String,
    /// The node ID found at the address, once a handshake succeeded.
    pub node_id: Option<NodeId>,
    /// Current state.
    #[serde(flatten)]
    pub state: TargetState,
    /// The last failure or disconnect reason.
    pub last_error: Option<TargetError>,
    /// Consecutive failed attempts.
    pub failures: u32,
}

/// One configured peer's standing. Changed only through the transitions below; once the
/// address turned out to be this node itself, nothing changes it any more.
#[derive(Debug, Clone)]
pub(super) struct TargetStatus {
    node_id: Option<NodeId>,
    state: TargetState,
    last_error: Option<TargetError>,
    failures: u32,
}

impl TargetStatus {
    /// A target just added: about to be dialed, nothing known yet.
    pub(super) fn new() -> Self {
        TargetStatus {
            node_id: None,
            state: TargetState::Connecting,
            last_error: None,
            failures: 0,
        }
    }

    /// The node ID found at the address, once a dial reached it.
    pub(super) fn node_id(&self) -> Option<NodeId> {
        self.node_id
    }

    /// The target as the admin API shows it.
    pub(super) fn info(&self, address: &str) -> TargetInfo {
        TargetInfo {
            address: address.to_owned(),
            node_id: self.node_id,
            state: self.state.clone(),
            last_error: self.last_error.clone(),
            failures: self.failures,
        }
    }

    /// The transitions' common guard: an address that is this node stays so.
    fn changeable(&mut self) -> Option<&mut Self> {
        (self.state != TargetState::Itself).then_some(self)
    }

    /// A dial starts.
    pub(super) fn attempt(&mut self) {
        if let Some(t) = self.changeable() {
            t.state = TargetState::Connecting;
        }
    }

    /// The dial reached this node itself (`local`): it is never dialed again.
    pub(super) fn found_itself(&mut self, local: NodeId) {
        if let Some(t) = self.changeable() {
            t.state = TargetState::Itself;
            t.node_id = Some(local);
        }
    }

    /// The dial failed with `error`; `failures` counts it and the consecutive failures
    /// before it, as the redial schedule does.
    pub(super) fn dial_failed(&mut self, error: ConnectError, failures: u32) {
        if let Some(t) = self.changeable() {
            t.last_error = Some(TargetError::Connect(error));
            t.failures = failures;
        }
    }

    /// The dial reached `peer` through both handshakes. `registered` is false when another
    /// connection to the same node was kept instead; that one marks the target connected
    /// once the dial loop sees it.
    pub(super) fn dialed(&mut self, peer: NodeId, registered: bool) {
        if let Some(t) = self.changeable() {
            t.node_id = Some(peer);
            t.failures = 0;
            if registered {
                t.state = TargetState::Connected;
            }
        }
    }

    /// A session to `peer` came up, dialed by anyone; it concerns this target only when
    /// `peer` is the node found at its address.
    pub(super) fn session_up(&mut self, peer: NodeId) {
        if let Some(t) = self.changeable() {
            if t.node_id == Some(peer) {
                t.state = TargetState::Connected;
            }
        }
    }

    /// The session dialed to this address ended with `reason`.
    pub(super) fn session_ended(&mut self, reason: CloseReason) {
        if let Some(t) = self.changeable() {
            t.last_error = Some(TargetError::Closed(reason));
        }
    }

    /// Waiting until `next_attempt_ms` (milliseconds since the Unix epoch) to dial again.
    pub(super) fn backing_off(&mut self, next_attempt_ms: u64) {
        if let Some(t) = self.changeable() {
            t.state = TargetState::BackingOff { next_attempt_ms };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn id(b: u8) -> NodeId {
        NodeId::from_bytes([b; 64])
    }

    fn timeout() -> ConnectError {
        ConnectError::TcpTimeout(Duration::from_secs(1))
    }

    #[test]
    fn a_new_target_is_connecting_with_nothing_known() {
        let info = TargetStatus::new().info("10.0.0.1:30300");
        assert_eq!(info.address, "10.0.0.1:30300");
        assert_eq!(info.state, TargetState::Connecting);
        assert_eq!((info.node_id, info.failures), (None, 0));
        assert!(info.last_error.is_none());
    }

    #[test]
    fn failures_back_off_and_a_dial_clears_the_count() {
        let mut t = TargetStatus::new();
        t.dial_failed(timeout(), 1);
        t.backing_off(1_000);
        t.attempt();
        t.dial_failed(timeout(), 2);
        t.backing_off(2_000);
        let info = t.info("a:1");
        assert_eq!(
            info.state,
            TargetState::BackingOff {
                next_attempt_ms: 2_000
            }
        );
        assert_eq!(info.failures, 2);
        assert!(matches!(
            info.last_error,
            Some(TargetError::Connect(ConnectError::TcpTimeout(_)))
        ));

        t.attempt();
        assert_eq!(t.info("a:1").state, TargetState::Connecting);
        t.dialed(id(2), true);
        let info = t.info("a:1");
        assert_eq!(info.state, TargetState::Connected);
        assert_eq!((info.node_id, info.failures), (Some(id(2)), 0));
    }

    #[test]
    fn a_dial_that_lost_to_another_connection_stays_connecting() {
        let mut t = TargetStatus::new();
        t.dialed(id(2), false);
        assert_eq!(t.info("a:1").state, TargetState::Connecting);
        assert_eq!(t.node_id(), Some(id(2)));
    }

    #[test]
    fn a_session_up_marks_only_the_target_of_that_node() {
        let mut t = TargetStatus::new();
        t.session_up(id(2));
        assert_eq!(
            t.info("a:1").state,
            TargetState::Connecting,
            "node unknown yet"
        );
        t.dialed(id(2), false);
        t.backing_off(5);
        t.session_up(id(3));
        assert_eq!(
            t.info("a:1").state,
            TargetState::BackingOff { next_attempt_ms: 5 }
        );
        t.session_up(id(2));
        assert_eq!(t.info("a:1").state, TargetState::Connected);
    }

    #[test]
    fn a_session_ending_is_the_last_error_until_the_next_failure() {
        let mut t = TargetStatus::new();
        t.dialed(id(2), true);
        t.session_ended(CloseReason::IdleTimeout);
        let info = t.info("a:1");
        assert!(matches!(
            info.last_error,
            Some(TargetError::Closed(CloseReason::IdleTimeout))
        ));
        assert_eq!(
            info.last_error.map(|e| e.to_string()).as_deref(),
            Some("idle-timeout")
        );
        t.dial_failed(ConnectError::Resolve("a:1".into()), 3);
        assert_eq!(
            t.info("a:1").last_error.map(|e| e.to_string()).as_deref(),
            Some("could not resolve a:1")
        );
    }

    #[test]
    fn itself_is_final() {
        let mut t = TargetStatus::new();
        t.found_itself(id(1));
        t.attempt();
        t.dial_failed(timeout(), 1);
        t.dialed(id(2), true);
        t.session_up(id(1));
        t.backing_off(9);
        t.found_itself(id(4));
        let info = t.info("a:1");
        assert_eq!(info.state, TargetState::Itself);
        assert_eq!((info.node_id, info.failures), (Some(id(1)), 0));
        assert!(info.last_error.is_none());
    }

    #[test]
    fn target_errors_serialize_as_their_words() {
        let json = serde_json::to_value(TargetError::Closed(CloseReason::Removed)).unwrap();
        assert_eq!(json, "removed");
    }
}
