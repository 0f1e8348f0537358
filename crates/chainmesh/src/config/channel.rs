//! `[channel]`: the SDK channel port (AMOP and JSON-RPC for FISCO BCOS 2.x SDKs).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ms, secs, Check, ConfigError};

/// The SDK channel port and the bounds on its clients.
///
/// Each SDK client is bounded like a peer: sessions per address and per certificate, topics
/// per session, unicasts waiting for an answer per session, and bytes queued for it. A client
/// over a bound loses its own session or its own request, nothing more.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelConfig {
    /// Address the channel port listens on (FISCO's `channel_listen_port`); empty turns it
    /// off.
    pub listen: String,
    /// A session from which nothing was read for this long is dropped.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Longest wait for a client's TLS handshake.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Largest frame accepted from a client, header included; a longer one closes its
    /// session.
    pub max_frame: u32,
    /// Bytes queued for one client before frames for it are refused: a client that does not
    /// read loses its own messages and holds up no one.
    pub session_queue_bytes: usize,
    /// SDK sessions open at once.
    pub max_sessions: usize,
    /// SDK sessions open at once from one IP address.
    pub max_sessions_per_ip: usize,
    /// SDK sessions open at once with one certificate key.
    pub max_sessions_per_cert: usize,
    /// Topics one session may subscribe to.
    pub max_topics_per_session: usize,
    /// Unicasts (and RPC calls) of one session waiting for their answer; one more is
    /// answered at once with result 103.
    pub max_in_flight_per_session: usize,
    /// Unicasts forwarded for other nodes waiting for a local subscriber's answer, for the
    /// whole node; one more is answered with result 103.
    pub max_in_flight_total: usize,
    /// How long a subscriber has to answer a unicast before the next subscriber is tried.
    #[serde(with = "humantime_serde")]
    pub ack_timeout: Duration,
    /// How long another node has to answer a unicast forwarded to it before the next node
    /// holding the topic is tried.
    #[serde(with = "humantime_serde")]
    pub forward_timeout: Duration,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            listen: String::new(),
            idle_timeout: secs(60),
            handshake_timeout: secs(10),
            max_frame: 16 * 1024 * 1024,
            session_queue_bytes: 4 * 1024 * 1024,
            max_sessions: 1024,
            max_sessions_per_ip: 64,
            max_sessions_per_cert: 32,
            max_topics_per_session: 256,
            max_in_flight_per_session: 256,
            max_in_flight_total: 16384,
            ack_timeout: secs(5),
            forward_timeout: secs(30),
        }
    }
}

impl ChannelConfig {
    /// Checks every key against its range (docs/config.md lists them).
    pub(super) fn validate(&self, c: &Check<'_>) -> Result<(), ConfigError> {
        if !self.listen.is_empty() {
            c.socket_addr("channel.listen", &self.listen)?;
        }
        c.range(
            "channel.idle_timeout",
            self.idle_timeout,
            ms(100),
            secs(3600),
        )?;
        c.range(
            "channel.handshake_timeout",
            self.handshake_timeout,
            ms(100),
            secs(300),
        )?;
        c.range(
            "channel.max_frame",
            self.max_frame,
            1024,
            crate::wire::DEFAULT_MAX_CHANNEL_FRAME,
        )?;
        c.range(
            "channel.session_queue_bytes",
            self.session_queue_bytes,
            64 * 1024,
            1 << 30,
        )?;
        c.range("channel.max_sessions", self.max_sessions, 1, 65536)?;
        c.range(
            "channel.max_sessions_per_ip",
            self.max_sessions_per_ip,
            1,
            65536,
        )?;
        c.range(
            "channel.max_sessions_per_cert",
            self.max_sessions_per_cert,
            1,
            65536,
        )?;
        c.range(
            "channel.max_topics_per_session",
            self.max_topics_per_session,
            1,
            65536,
        )?;
        c.range(
            "channel.max_in_flight_per_session",
            self.max_in_flight_per_session,
            1,
            65536,
        )?;
        c.range(
            "channel.max_in_flight_total",
            self.max_in_flight_total,
            1,
            1 << 20,
        )?;
        c.range("channel.ack_timeout", self.ack_timeout, ms(10), secs(300))?;
        c.range(
            "channel.forward_timeout",
            self.forward_timeout,
            ms(10),
            secs(600),
        )
    }
}
