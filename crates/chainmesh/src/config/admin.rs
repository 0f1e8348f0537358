//! `[admin]`: the admin HTTP API's listeners and bounds, and how its live network page
//! (`GET /`) samples and refreshes.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ms, secs, Check, ConfigError};

/// The admin HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address the admin API listens on; empty turns it off.
    pub listen: String,
    /// A second address serving only the read-only routes (GET); empty turns it off.
    pub read_listen: String,
    /// Host names, besides the listener's own address and `localhost`, that requests may
    /// name in their `Host` header (`name` or `name:port`).
    pub allowed_hosts: Vec<String>,
    /// Connections open at once on each admin listener; further ones are refused.
    pub max_connections: usize,
    /// Longest wait for a request's headers (also how long an idle connection stays open).
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Longest wait for a request's body once its headers are in.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Largest payload `POST /v1/ping` may ask to echo, in bytes.
    pub max_ping_bytes: usize,
    /// How often an open live page asks for `/v1/network` again.
    #[serde(with = "humantime_serde")]
    pub page_refresh: Duration,
    /// Shortest span a link's throughput on the page is computed over.
    #[serde(with = "humantime_serde")]
    pub page_rate_window: Duration,
    /// Least time between two rounds of the page's pings to this node's neighbours.
    #[serde(with = "humantime_serde")]
    pub page_ping_interval: Duration,
    /// How long each of those pings waits for its echo.
    #[serde(with = "humantime_serde")]
    pub page_ping_timeout: Duration,
    /// Recent peer and reachability events the page keeps.
    pub page_max_events: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: "127.0.0.1:0".into(),
            read_listen: String::new(),
            allowed_hosts: Vec::new(),
            max_connections: 64,
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(10),
            max_body_bytes: 2 * 1024 * 1024,
            max_ping_bytes: 64 * 1024,
            page_refresh: Duration::from_secs(1),
            page_rate_window: Duration::from_secs(1),
            page_ping_interval: Duration::from_secs(2),
            page_ping_timeout: Duration::from_secs(1),
            page_max_events: 200,
        }
    }
}

impl AdminConfig {
    /// Checks the addresses, the allowed host names, and every bound against its minimum
    /// and maximum (docs/config.md lists them).
    pub(super) fn validate(&self, c: &Check<'_>) -> Result<(), ConfigError> {
        for (key, addr) in [
            ("admin.listen", &self.listen),
            ("admin.read_listen", &self.read_listen),
        ] {
            if !addr.is_empty() {
                c.socket_addr(key, addr)?;
            }
        }
        for (i, h) in self.allowed_hosts.iter().enumerate() {
            if h.is_empty()
                || h.len() > 255
                || h.contains(|ch: char| ch.is_whitespace() || ch == '/')
            {
                return Err(c.bad(
                    &format!("admin.allowed_hosts[{i}]"),
                    format!("`{h}` is not a host name or host:port"),
                ));
            }
        }
        c.range("admin.max_connections", self.max_connections, 1, 4096)?;
        c.range(
            "admin.header_timeout",
            self.header_timeout,
            ms(100),
            secs(300),
        )?;
        c.range("admin.body_timeout", self.body_timeout, ms(100), secs(300))?;
        c.range("admin.max_body_bytes", self.max_body_bytes, 1024, 256 << 20)?;
        c.range("admin.max_ping_bytes", self.max_ping_bytes, 0, 16 << 20)?;
        self.validate_page(c)
    }

    /// The live page's keys: a page refreshes at most ten times a second, samples no faster
    /// than that, and holds at most 10000 events (what one `/v1/network` answer carries).
    fn validate_page(&self, c: &Check<'_>) -> Result<(), ConfigError> {
        c.range("admin.page_refresh", self.page_refresh, ms(100), secs(60))?;
        c.range(
            "admin.page_rate_window",
            self.page_rate_window,
            ms(100),
            secs(300),
        )?;
        c.range(
            "admin.page_ping_interval",
            self.page_ping_interval,
            ms(100),
            secs(3600),
        )?;
        c.range(
            "admin.page_ping_timeout",
            self.page_ping_timeout,
            ms(10),
            secs(60),
        )?;
        c.range("admin.page_max_events", self.page_max_events, 1, 10_000)
    }
}
