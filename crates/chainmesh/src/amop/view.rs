//! What AMOP shows the admin API and `/metrics`: plain data, no behaviour.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// The channel port as it is now: SDK sessions, the topics this node holds, and which
/// other nodes hold which topics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AmopView {
    /// Live SDK sessions, by ID.
    pub sessions: Vec<SdkSessionView>,
    /// Topics at least one local session subscribes to, sorted.
    pub local_topics: Vec<String>,
    /// Other nodes whose status lists AMOP topics, by node ID.
    pub remote: Vec<RemoteTopicsView>,
    /// Other nodes' private topics (`#!$TopicNeedVerify_...`) and their verification, by
    /// node ID then topic.
    pub private: Vec<PrivateTopicView>,
}

/// Where the verification of another node's private topic stands (FISCO's topic status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VerifyStatus {
    /// Listed by the node, no verdict yet: it gets none of the topic's messages.
    Verifying,
    /// A local publisher verified the node's subscriber: it gets the topic's messages.
    VerifySuccess,
    /// A local publisher refused the node's subscriber: it gets none of them.
    VerifyFailed,
}

/// One other node's private topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrivateTopicView {
    /// The node's ID (hex).
    pub node: String,
    /// The private topic, `#!$TopicNeedVerify_<t>`.
    pub topic: String,
    /// The `#!$VerifyChannel_...` topic the challenge goes to, when the node lists one.
    pub topic_for_cert: Option<String>,
    /// Where its verification stands.
    pub status: VerifyStatus,
    /// The local session asked to verify it, while a 0x37 is outstanding.
    pub asked_session: Option<u64>,
}

/// One SDK session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SdkSessionView {
    /// Process-unique session number.
    pub id: u64,
    /// The client's socket address.
    pub addr: String,
    /// The client's public key (hex), from its certificate.
    pub key: String,
    /// The topics it subscribes to, sorted.
    pub topics: Vec<String>,
    /// Channel protocol version from its 0x14 handshake (1 without one).
    pub protocol: u8,
    /// When it connected, in milliseconds since the Unix epoch.
    pub since_unix_ms: u64,
    /// Frames read from it.
    pub frames_in: u64,
    /// Frames written to it.
    pub frames_out: u64,
    /// Bytes queued for it and not yet written.
    pub queued_bytes: usize,
}

/// The AMOP topics another node holds, from its status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemoteTopicsView {
    /// The node's ID (hex).
    pub node: String,
    /// Its AMOP topics, as its status lists them.
    pub topics: Vec<String>,
}

/// Defines the counters once: the public snapshot and the atomics it is read from.
macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// AMOP's counters since start.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
        pub struct AmopStats {
            /// SDK sessions open now.
            pub sessions_open: u64,
            $($(#[$doc])* pub $name: u64,)*
        }

        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $(pub(crate) $name: AtomicU64,)*
        }

        impl Counters {
            pub(crate) fn snapshot(&self, sessions_open: u64) -> AmopStats {
                AmopStats {
                    sessions_open,
                    $($name: self.$name.load(Ordering::Relaxed),)*
                }
            }
        }
    };
}

counters! {
    /// SDK sessions that completed the TLS handshake and were admitted.
    sessions_accepted,
    /// Connections refused by `max_sessions`, `max_sessions_per_ip` or `max_sessions_per_cert`.
    sessions_refused,
    /// TLS handshakes that failed or timed out.
    handshakes_failed,
    /// Sessions closed for a protocol violation (bad frame, bad subscribe, bad handshake).
    protocol_errors,
    /// Frames read from SDK sessions.
    frames_in,
    /// Frames queued to SDK sessions.
    frames_out,
    /// Frames that found an SDK session's queue full (or closed) and were dropped.
    frames_dropped,
    /// 0x30 frames published by local sessions.
    unicasts,
    /// Unicasts answered by a subscriber's 0x31.
    unicast_acked,
    /// Unicasts answered 100: no node held the topic.
    unicast_no_subscriber,
    /// Unicasts answered 104: every holder failed.
    unicast_failed,
    /// Pushes to a local subscriber that were not acked in time (each one failed over).
    subscriber_failures,
    /// 0x31 frames that matched no pending push.
    unmatched_acks,
    /// 0x35 frames published by local sessions.
    multicasts,
    /// 0x35 frames queued to local subscribers.
    multicast_deliveries,
    /// 0x35 frames dropped on a full queue (a local subscriber's or a next hop's).
    multicast_dropped,
    /// Type-7 packets received from other nodes.
    forwarded_in,
    /// Type-7 packets sent to other nodes.
    forwarded_out,
    /// Type-7 packets that did not decode, or answered nothing pending.
    forwarded_invalid,
    /// 0x12 JSON-RPC requests answered.
    rpc_calls,
    /// Requests refused with 103 by `max_in_flight_per_session` or `max_in_flight_total`.
    over_limit,
    /// 0x37 verify requests sent to local publishers (retries included).
    verifications_started,
    /// Other nodes' private topics marked VERIFY_SUCCESS by a 0x38.
    verifications_succeeded,
    /// Other nodes' private topics marked VERIFY_FAILED by a 0x38.
    verifications_failed,
    /// 0x37 and 0x38 frames ignored: unmatched, malformed, from a session not subscribed to
    /// the push channel, or for a node's topic that is not pending.
    verify_frames_ignored,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
