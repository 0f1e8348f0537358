//! Per-link throughput and round-trip time for the page, measured only while someone polls
//! `/v1/network`: an unwatched node sends no pings for it.
//!
//! Throughput is the change of a session's byte counters between two polls at least
//! `admin.page_rate_window` apart. The round trip is a ping to the built-in echo module of
//! each direct neighbour, at most every `admin.page_ping_interval`, all neighbours at once,
//! each waiting at most `admin.page_ping_timeout`; a round is never started while the
//! previous one runs. Both maps hold only peers with a live session, so they are bounded by
//! the session limit. Links between two other nodes get no figures: only their ends could
//! measure them.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::task::JoinSet;

use chainmesh::identity::NodeId;
use chainmesh::node::NodeHandle;

/// When samples are taken, from `[admin]`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timing {
    /// Shortest span a throughput figure is computed over (`admin.page_rate_window`).
    pub(super) rate_window: Duration,
    /// Least time between two rounds of pings (`admin.page_ping_interval`).
    pub(super) ping_interval: Duration,
    /// How long one ping waits for its echo (`admin.page_ping_timeout`).
    pub(super) ping_timeout: Duration,
}

/// One session's throughput.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Rate {
    /// Bytes per second read from the peer.
    pub(super) in_per_s: u64,
    /// Bytes per second written to it.
    pub(super) out_per_s: u64,
}

/// Counters seen at one poll, and the rate computed at the last window's end.
#[derive(Debug, Clone, Copy)]
struct Mark {
    at: Instant,
    bytes_in: u64,
    bytes_out: u64,
    rate: Option<Rate>,
}

#[derive(Debug, Default)]
struct Inner {
    marks: HashMap<NodeId, Mark>,
    /// Last round trip per neighbour; `None` when its last ping got no answer.
    rtt: HashMap<NodeId, Option<Duration>>,
    last_round: Option<Instant>,
    round_running: bool,
}

/// The samples of every live link.
#[derive(Debug)]
pub(super) struct Samples {
    timing: Timing,
    inner: Mutex<Inner>,
}

/// Bytes per second from a counter's change over `dt`; a counter that went down (a new
/// session) gives no rate.
fn per_second(before: u64, now: u64, dt: Duration) -> Option<u64> {
    let delta = now.checked_sub(before)?;
    let ms = u64::try_from(dt.as_millis()).ok().filter(|ms| *ms > 0)?;
    Some(delta.saturating_mul(1000) / ms)
}

impl Samples {
    /// No samples yet, to be taken as `timing` says.
    pub(super) fn new(timing: Timing) -> Self {
        Samples {
            timing,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the throughput marks of `node`'s sessions and starts a round of pings when one
    /// is due.
    pub(super) fn refresh(self: &Arc<Self>, node: &NodeHandle) {
        let now = Instant::now();
        let sessions = node.peers().sessions();
        let due = {
            let mut inner = self.lock();
            inner
                .marks
                .retain(|id, _| sessions.iter().any(|s| s.peer == *id));
            inner
                .rtt
                .retain(|id, _| sessions.iter().any(|s| s.peer == *id));
            for s in &sessions {
                let (bytes_in, bytes_out) = (
                    s.stats.bytes_in.load(Relaxed),
                    s.stats.bytes_out.load(Relaxed),
                );
                let fresh = Mark {
                    at: now,
                    bytes_in,
                    bytes_out,
                    rate: None,
                };
                let mark = inner.marks.entry(s.peer).or_insert(fresh);
                let dt = now.saturating_duration_since(mark.at);
                if dt >= self.timing.rate_window {
                    let rate = per_second(mark.bytes_in, bytes_in, dt)
                        .zip(per_second(mark.bytes_out, bytes_out, dt))
                        .map(|(in_per_s, out_per_s)| Rate {
                            in_per_s,
                            out_per_s,
                        });
                    *mark = Mark { rate, ..fresh };
                }
            }
            let due = !inner.round_running
                && inner.last_round.map_or(true, |t| {
                    now.saturating_duration_since(t) >= self.timing.ping_interval
                });
            if due {
                inner.round_running = true;
                inner.last_round = Some(now);
            }
            due
        };
        if due {
            let peers: Vec<NodeId> = sessions.iter().map(|s| s.peer).collect();
            tokio::spawn(Arc::clone(self).ping_round(node.clone(), peers));
        }
    }

    async fn ping_round(self: Arc<Self>, node: NodeHandle, peers: Vec<NodeId>) {
        let mut pings = JoinSet::new();
        let timeout = self.timing.ping_timeout;
        for peer in peers {
            let node = node.clone();
            pings.spawn(async move {
                let rtt = node.ping(peer, Bytes::new(), timeout).await;
                (peer, rtt.ok().map(|r| r.rtt))
            });
        }
        while let Some(done) = pings.join_next().await {
            if let Ok((peer, rtt)) = done {
                self.lock().rtt.insert(peer, rtt);
            }
        }
        self.lock().round_running = false;
    }

    /// The last throughput of the session with `peer`, once a window has passed.
    pub(super) fn rate(&self, peer: &NodeId) -> Option<Rate> {
        self.lock().marks.get(peer).and_then(|m| m.rate)
    }

    /// The last round trip to `peer`: `Some(None)` when its last ping got no answer.
    pub(super) fn rtt(&self, peer: &NodeId) -> Option<Option<Duration>> {
        self.lock().rtt.get(peer).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_is_the_change_over_the_window_and_none_after_a_reset() {
        assert_eq!(
            per_second(1000, 3000, Duration::from_millis(2000)),
            Some(1000)
        );
        assert_eq!(per_second(5000, 10, Duration::from_secs(1)), None);
        assert_eq!(per_second(0, 10, Duration::ZERO), None);
        assert_eq!(
            per_second(0, u64::MAX, Duration::from_secs(1)),
            Some(u64::MAX / 1000)
        );
    }
}
