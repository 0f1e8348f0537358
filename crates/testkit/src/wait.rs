//! Waiting for conditions and events, and reading the admin API, without fixed sleeps.

use std::time::Duration;

use chainmesh::peers::{PeerEvent, RefusalReason};
use chainmesh::session::CloseReason;
use chainmesh::NodeId;
use tokio::sync::broadcast;
use tokio::time::Instant;

/// How often [`wait_until`] looks at its condition again.
const POLL: Duration = Duration::from_millis(10);

/// Polls `cond` every 10 ms until it holds or `timeout` passes; returns whether it held.
pub async fn wait_until(timeout: Duration, cond: impl FnMut() -> bool) -> bool {
    wait_until_every(timeout, POLL, cond).await
}

/// Polls `cond` every `every` until it holds or `timeout` passes; returns whether it held.
///
/// The one polling loop of the tests, the examples and the benchmarks: a benchmark that
/// times how long a condition takes polls more often than a test that only waits for it.
/// The clock is tokio's, so on a paused test clock the timeout is in paused time too.
pub async fn wait_until_every(
    timeout: Duration,
    every: Duration,
    mut cond: impl FnMut() -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(every).await;
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

/// Waits (at most 10 s) until `peer` is disconnected and returns why.
///
/// # Panics
/// When that does not happen: the caller is a test expecting it.
pub async fn next_disconnect(
    events: &mut broadcast::Receiver<PeerEvent>,
    peer: &NodeId,
) -> CloseReason {
    let next = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Ok(PeerEvent::Disconnected { peer: p, reason }) if p == *peer => return reason,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("peer events ended"),
            }
        }
    });
    match next.await {
        Ok(reason) => reason,
        Err(_) => panic!("{} was not disconnected within 10 s", peer.short()),
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

/// An HTTP client for admin API tests: every status is an answer (not an error), and each
/// request gives up after `timeout`.
pub fn http_agent(timeout: std::time::Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// The status and the JSON body of an answer (`Null` for a body that is not JSON).
///
/// # Panics
/// When the request got no answer: the caller is a test.
pub fn status_and_json(
    resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> (u16, serde_json::Value) {
    let mut resp = resp.unwrap_or_else(|e| panic!("the admin API did not answer: {e}"));
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .read_json::<serde_json::Value>()
        .unwrap_or(serde_json::Value::Null);
    (status, body)
}

/// Connected peers in a node's `GET /v1/peers` answer.
pub fn connected_peers(addr: &str) -> usize {
    get_json(addr, "/v1/peers")["peers"]
        .as_array()
        .map(|a| a.iter().filter(|p| p["connected"] == true).count())
        .unwrap_or(0)
}
