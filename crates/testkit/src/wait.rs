//! Waiting for conditions and events, and reading the admin API, without fixed sleeps.

use std::time::{Duration, Instant};

use chainmesh::peers::{PeerEvent, RefusalReason};
use tokio::sync::broadcast;

/// How often the waiting helpers look at their condition again.
const POLL: Duration = Duration::from_millis(10);

/// Polls `cond` every 10 ms until it holds or `timeout` passes; returns whether it held.
pub async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The same as [`wait_until`] for synchronous code (tests driving processes).
pub fn wait_until_blocking(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// Waits (at most 5 s) for the next refused handshake and returns its reason.
///
/// # Panics
/// When none comes: the caller is a test expecting one.
pub async fn next_refusal(events: &mut broadcast::Receiver<PeerEvent>) -> RefusalReason {
    let next = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.recv().await {
                Ok(PeerEvent::Refused { reason, .. }) => return reason,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("peer events ended"),
            }
        }
    });
    match next.await {
        Ok(reason) => reason,
        Err(_) => panic!("no refusal within 5 s"),
    }
}

/// `GET http://addr/path` as JSON.
///
/// # Panics
/// When the request fails or the body is not JSON: the caller is a test.
pub fn get_json(addr: &str, path: &str) -> serde_json::Value {
    let mut resp = ureq::get(&format!("http://{addr}{path}"))
        .call()
        .unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"));
    resp.body_mut()
        .read_json()
        .unwrap_or_else(|e| panic!("GET {path} on {addr}: body is not JSON: {e}"))
}

/// Connected peers in a node's `GET /v1/peers` answer.
pub fn connected_peers(addr: &str) -> usize {
    get_json(addr, "/v1/peers")["peers"]
        .as_array()
        .map(|a| a.iter().filter(|p| p["connected"] == true).count())
        .unwrap_or(0)
}
