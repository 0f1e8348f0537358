//! `[flow_control]` between real nodes: fail-fast sends over a bandwidth limit fail with the
//! typed error and are counted, awaiting sends wait and the bytes that pass stay within what
//! the limit allows, exempt modules pass, requests over their module's incoming limit are
//! answered with the typed refusal, and a config reload replaces the limits.
//!
//! The rate is checked by the flow control's own byte accounting against tokio's clock: what
//! passed can never exceed one burst plus the rate times the time taken, whatever the
//! machine's speed.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use chainmesh::config::{Config, FlowConfig};
use chainmesh::flow::BandwidthLimit;
use chainmesh::node::NodeHandle;
use chainmesh::{RequestError, SendError};
use chainmesh_testkit::{LocalNet, LocalNetOptions};

const WAIT: Duration = Duration::from_secs(10);
const MODULE: u16 = 7;
const EXEMPT: u16 = 1000;

/// 64 KiB/s in total with a 100 ms window: a burst of 6553 bytes.
fn total_limit() -> FlowConfig {
    FlowConfig {
        enable: true,
        time_window: Duration::from_millis(100),
        total_outgoing_bytes_per_sec: 64 * 1024,
        modules_without_limit: vec![EXEMPT],
        ..FlowConfig::default()
    }
}

async fn pair(tweak: fn(usize, &mut Config)) -> LocalNet {
    let net = LocalNet::start(LocalNetOptions {
        tweak: Some(tweak),
        ..LocalNetOptions::for_traffic(2)
    })
    .await
    .expect("network starts");
    net.connect(0, 1);
    assert!(net.wait_for(WAIT, LocalNet::is_full_mesh).await);
    net
}

/// Fail-fast sends of `size` bytes to `module` until one fails (at most `n`).
fn try_until_refused(
    a: &NodeHandle,
    b: &NodeHandle,
    module: u16,
    size: usize,
    n: usize,
) -> Option<SendError> {
    (0..n).find_map(|_| {
        a.try_send(b.node_id(), module, Bytes::from(vec![1u8; size]))
            .err()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_send_over_the_total_limit_fails_with_the_typed_error_and_is_counted() {
    let net = pair(|i, c| {
        if i == 0 {
            c.flow_control = total_limit();
        }
    })
    .await;
    let (a, b) = (net.handle(0), net.handle(1));
    let err = try_until_refused(&a, &b, MODULE, 4000, 10).expect("a send is refused");
    assert_eq!(
        err,
        SendError::BandwidthExceeded {
            limit: BandwidthLimit::Total,
            bytes_per_sec: 64 * 1024,
        }
    );
    let snap = a.flow_snapshot();
    let (module, counters) = snap.modules[0];
    assert_eq!(module, MODULE);
    assert!(counters.sends_failed >= 1);
    assert_eq!(counters.sends_delayed, 0);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awaiting_sends_wait_and_what_passes_stays_within_the_limit() {
    let net = pair(|i, c| {
        if i == 0 {
            c.flow_control = FlowConfig {
                total_outgoing_bytes_per_sec: 256 * 1024,
                ..total_limit()
            };
        }
    })
    .await;
    let (a, b) = (net.handle(0), net.handle(1));
    let mut rx = b.register(MODULE, 64);
    let count = 20;
    let started = tokio::time::Instant::now();
    for _ in 0..count {
        a.send(b.node_id(), MODULE, Bytes::from(vec![2u8; 16 * 1024]))
            .await
            .expect("an awaiting send waits, never fails");
    }
    let took = started.elapsed();
    let snap = a.flow_snapshot();
    let total = snap.total.expect("the total limit is in use");
    assert!(total.total >= count * 16 * 1024, "{total:?}");
    // What passed never exceeds one burst plus the rate times the time taken.
    let allowed = total.burst as f64 + total.limit as f64 * took.as_secs_f64();
    assert!(
        total.total as f64 <= allowed,
        "{} bytes passed in {took:?}; the limit allows {allowed}",
        total.total
    );
    assert!(snap.modules[0].1.sends_delayed >= 1, "{:?}", snap.modules);
    for _ in 0..count {
        tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("every message arrives")
            .expect("the module is registered");
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exempt_module_is_not_limited() {
    let net = pair(|i, c| {
        if i == 0 {
            c.flow_control = total_limit();
        }
    })
    .await;
    let (a, b) = (net.handle(0), net.handle(1));
    // Twenty times the burst, at once: none refused.
    assert_eq!(try_until_refused(&a, &b, EXEMPT, 6000, 20), None);
    assert!(try_until_refused(&a, &b, MODULE, 6000, 20).is_some());
    let snap = a.flow_snapshot();
    assert!(snap.modules.iter().all(|(m, _)| *m != EXEMPT));
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_its_modules_incoming_limit_is_answered_with_the_typed_refusal() {
    let net = pair(|i, c| {
        if i == 1 {
            c.flow_control = FlowConfig {
                enable: true,
                time_window: Duration::from_secs(1),
                incoming_module_qps_by_module: BTreeMap::from([(MODULE.to_string(), 1)]),
                ..FlowConfig::default()
            };
        }
    })
    .await;
    let (a, b) = (net.handle(0), net.handle(1));
    let mut rx = b.register(MODULE, 16);
    tokio::spawn(async move {
        while let Some(mut m) = rx.recv().await {
            if let Some(r) = m.take_responder() {
                let _ = r.respond(m.payload.clone());
            }
        }
    });
    let mut refused = None;
    for _ in 0..5 {
        match a
            .request(b.node_id(), MODULE, Bytes::from_static(b"hi"), WAIT)
            .await
        {
            Ok(reply) => assert_eq!(&reply[..], b"hi"),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    assert_eq!(
        refused,
        Some(RequestError::QpsExceeded {
            node: b.node_id(),
            module: MODULE
        })
    );
    let snap = b.flow_snapshot();
    assert_eq!(snap.modules, vec![(MODULE, snap.modules[0].1)]);
    assert!(snap.modules[0].1.incoming_refused >= 1);
    // The built-in echo is the node's own: never limited.
    for _ in 0..5 {
        a.ping(b.node_id(), Bytes::new(), WAIT)
            .await
            .expect("echo answers");
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_reload_replaces_the_limits() {
    let net = pair(|_, _| {}).await;
    let (a, b) = (net.handle(0), net.handle(1));
    assert_eq!(try_until_refused(&a, &b, MODULE, 4000, 10), None);
    let mut cfg = net.config(0).clone();
    // The link to b was added at run time; a reload whose peer list lacks it would close it
    // (as the config file says), and the sends below would race that close.
    cfg.p2p.peers = vec![net.addr(1)];
    cfg.flow_control = total_limit();
    a.apply_config(&cfg);
    assert!(matches!(
        try_until_refused(&a, &b, MODULE, 4000, 10),
        Some(SendError::BandwidthExceeded { .. })
    ));
    assert_eq!(a.flow_snapshot().total.map(|t| t.limit), Some(64 * 1024));
    cfg.flow_control.enable = false;
    a.apply_config(&cfg);
    assert_eq!(try_until_refused(&a, &b, MODULE, 4000, 10), None);
    assert!(!a.flow_snapshot().enabled);
    net.shutdown().await;
}
