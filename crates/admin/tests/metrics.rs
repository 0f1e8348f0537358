//! `GET /metrics` on a real network, read as a Prometheus scraper reads it.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use chainmesh::session::CloseReason;
use chainmesh_testkit::{wait_until, LocalNet, LocalNetOptions};
use prometheus_parse::{Sample, Scrape, Value};

const WAIT: Duration = Duration::from_secs(10);

fn scrape(addr: &str) -> Scrape {
    let text = ureq::get(&format!("http://{addr}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

fn value(s: &Sample) -> f64 {
    match &s.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        _ => f64::NAN,
    }
}

/// The `chainmesh_peer_*` samples about `peer`: (metric, sorted labels) -> value.
fn peer_series(s: &Scrape, peer: &str) -> Vec<(String, String, f64)> {
    let mut out: Vec<_> = s
        .samples
        .iter()
        .filter(|x| {
            x.metric.starts_with("chainmesh_peer_") && x.labels.get("node_id") == Some(peer)
        })
        .map(|x| {
            let labels: BTreeSet<String> =
                x.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            (
                x.metric.clone(),
                labels.into_iter().collect::<Vec<_>>().join(","),
                value(x),
            )
        })
        .collect();
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    out
}

fn get(s: &Scrape, metric: &str, peer: &str) -> f64 {
    peer_series(s, peer)
        .into_iter()
        .find(|x| x.0 == metric)
        .map_or(f64::NAN, |x| x.2)
}

async fn two_nodes() -> LocalNet {
    let mut opts = LocalNetOptions::new(2);
    opts.admin = true;
    let net = LocalNet::start(opts).await.unwrap();
    net.connect(0, 1);
    assert!(net.wait_for(WAIT, |n| n.is_full_mesh()).await);
    net
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_carry_every_documented_kind_of_family() {
    let net = two_nodes().await;
    let peer = net.handle(1).node_id();
    net.handle(0)
        .request(
            peer,
            chainmesh::node::ECHO_MODULE,
            Bytes::from_static(b"x"),
            WAIT,
        )
        .await
        .unwrap();
    let addr = net.admin_addr(0).unwrap().to_string();
    let s = scrape(&addr);
    let families: BTreeSet<&str> = s
        .samples
        .iter()
        .map(|x| x.metric.as_str())
        .filter(|m| m.starts_with("chainmesh_"))
        .collect();
    for family in [
        "chainmesh_peer_received_bytes_total",
        "chainmesh_peer_sent_packets_total",
        "chainmesh_peer_up",
        "chainmesh_peer_connects_total",
        "chainmesh_request_duration_seconds",
        "chainmesh_link_rtt_seconds",
        "chainmesh_relayed_packets_total",
        "chainmesh_duplicate_packets_total",
        "chainmesh_ttl_dropped_packets_total",
        "chainmesh_routes",
        "chainmesh_status_sync_lag_seconds",
        "chainmesh_peer_queue_bytes",
    ] {
        assert!(families.contains(family), "{family} missing: {families:?}");
    }
    let request = s
        .samples
        .iter()
        .find(|x| x.metric == "chainmesh_request_duration_seconds")
        .map(|x| x.value.clone());
    match request {
        Some(Value::Histogram(buckets)) => {
            assert_eq!(buckets.last().map(|b| b.count), Some(1.0), "{buckets:?}");
        }
        other => panic!("not a histogram: {other:?}"),
    }
    let id = peer.to_string();
    let up = s
        .samples
        .iter()
        .find(|x| x.metric == "chainmesh_peer_up" && x.labels.get("node_id") == Some(&id));
    assert_eq!(up.map(value), Some(1.0));
    assert!(get(&s, "chainmesh_peer_received_bytes_total", &id) > 0.0);
    assert!(process_gauges(&s));
    net.shutdown().await;
}

fn process_gauges(s: &Scrape) -> bool {
    ["process_resident_memory_bytes", "process_open_fds"]
        .iter()
        .all(|m| s.samples.iter().any(|x| x.metric == *m && value(x) > 0.0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peers_series_survive_its_reconnect_and_its_counters_do_not_go_down() {
    let net = two_nodes().await;
    let (a, b) = (net.handle(0), net.handle(1));
    let addr = net.admin_addr(0).unwrap().to_string();
    let id = b.node_id().to_string();
    a.request(
        b.node_id(),
        chainmesh::node::ECHO_MODULE,
        Bytes::from_static(b"x"),
        WAIT,
    )
    .await
    .unwrap();
    let before = peer_series(&scrape(&addr), &id);
    let connects = |s: &Scrape| {
        s.samples
            .iter()
            .find(|x| x.metric == "chainmesh_peer_connects_total")
            .map_or(0.0, value)
    };
    let first = connects(&scrape(&addr));

    let link = a.peers().session(&b.node_id()).unwrap();
    link.close(CloseReason::IdleTimeout);
    let back = wait_until(WAIT, || {
        let s = scrape(&addr);
        connects(&s) > first && get(&s, "chainmesh_peer_up", &id) == 1.0
    })
    .await;
    assert!(back, "the link did not come back");
    let after = peer_series(&scrape(&addr), &id);

    let keys = |v: &[(String, String, f64)]| -> Vec<(String, String)> {
        v.iter().map(|x| (x.0.clone(), x.1.clone())).collect()
    };
    assert_eq!(keys(&before), keys(&after), "label sets changed");
    for (old, new) in before.iter().zip(&after) {
        if old.0.ends_with("_total") {
            assert!(
                new.2 >= old.2,
                "{} went down: {} -> {}",
                old.0,
                old.2,
                new.2
            );
        }
    }
    let disconnects = scrape(&addr)
        .samples
        .into_iter()
        .any(|x| x.metric == "chainmesh_peer_disconnects_total" && value(&x) >= 1.0);
    assert!(disconnects);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_control_limits_rates_and_refusals_are_in_the_metrics_and_v1_flow() {
    let mut opts = LocalNetOptions::new(2);
    opts.admin = true;
    opts.tweak = Some(|i, c| {
        if i == 0 {
            c.flow_control = chainmesh::config::FlowConfig {
                enable: true,
                time_window: Duration::from_millis(100),
                total_outgoing_bytes_per_sec: 64 * 1024,
                ..Default::default()
            };
        }
    });
    let net = LocalNet::start(opts).await.unwrap();
    net.connect(0, 1);
    assert!(net.wait_for(WAIT, |n| n.is_full_mesh()).await);
    let (a, b) = (net.handle(0), net.handle(1));
    let refused = (0..10).any(|_| {
        a.try_send(b.node_id(), 7, Bytes::from(vec![0u8; 4000]))
            .is_err()
    });
    assert!(refused);
    let addr = net.admin_addr(0).unwrap().to_string();
    let s = scrape(&addr);
    let find = |metric: &str, label: (&str, &str)| {
        s.samples
            .iter()
            .find(|x| x.metric == metric && x.labels.get(label.0) == Some(label.1))
            .map(value)
    };
    let enabled = s
        .samples
        .iter()
        .find(|x| x.metric == "chainmesh_flow_enabled");
    assert_eq!(enabled.map(value), Some(1.0));
    assert_eq!(
        find(
            "chainmesh_flow_outgoing_limit_bytes_per_second",
            ("limit", "total")
        ),
        Some(65536.0)
    );
    assert!(find("chainmesh_flow_sends_failed_total", ("module", "7")).is_some_and(|v| v >= 1.0));
    let flow = chainmesh_testkit::get_json(&addr, "/v1/flow");
    assert_eq!(flow["enabled"], true);
    assert_eq!(flow["total"]["limit"], 65536);
    assert_eq!(flow["modules"][0][0], 7);
    assert!(flow["modules"][0][1]["sends_failed"].as_u64() >= Some(1));
    net.shutdown().await;
}
