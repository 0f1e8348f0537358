//! Node status synchronization across real nodes over TLS on 127.0.0.1: changes spread to
//! every node (also behind relays), restarts resync, departures are forgotten, and the admin
//! API and CLI show it.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use chainmesh::NodeId;
use chainmesh_testkit::{LocalNet, LocalNetOptions};

const INTERVAL: Duration = Duration::from_secs(1);

async fn line(n: usize) -> LocalNet {
    let mut o = LocalNetOptions::new(n);
    o.timers.status_interval = INTERVAL;
    o.admin = true;
    let net = LocalNet::start(o).await.unwrap();
    net.connect_line();
    let routed = net
        .wait_for(Duration::from_secs(20), |net| {
            (0..net.len()).all(|i| net.handle(i).reachable_nodes().len() == net.len() - 1)
        })
        .await;
    assert!(routed, "the line never became fully routed");
    net
}

/// Whether node `i` holds `app` as `of`'s application status.
fn sees(net: &LocalNet, i: usize, of: NodeId, app: &[u8]) -> bool {
    net.try_handle(i)
        .and_then(|h| h.peer_status(&of))
        .is_some_and(|s| s.status.app.as_ref() == app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_reaches_every_node_even_behind_relays_within_two_intervals() {
    let net = line(5).await;
    let origin = net.handle(0).node_id();
    // Let the initial statuses settle first, so the change below is measured alone.
    assert!(
        net.wait_for(Duration::from_secs(20), |n| {
            (1..5).all(|i| n.handle(i).peer_status(&origin).is_some())
        })
        .await
    );
    let mut events = net.handle(4).status_events();
    let t = Instant::now();
    net.handle(0)
        .set_app_status(Bytes::from_static(b"height=42"))
        .unwrap();
    let everywhere = net
        .wait_for(2 * INTERVAL, |n| {
            (1..5).all(|i| sees(n, i, origin, b"height=42"))
        })
        .await;
    assert!(
        everywhere,
        "not every node saw the change within two intervals"
    );
    println!(
        "change seen on all 5 nodes (4 hops away at most) after {:?}",
        t.elapsed()
    );
    // Node 4, four hops away, was told by an event.
    let ev = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let e = events.recv().await.unwrap();
            if e.node == origin {
                return e;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(ev.kind, chainmesh::status::StatusEventKind::Updated);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_is_resynced_and_its_old_status_dropped() {
    let mut net = line(3).await;
    let id2 = net.handle(2).node_id();
    net.handle(2)
        .set_app_status(Bytes::from_static(b"before"))
        .unwrap();
    assert!(
        net.wait_for(Duration::from_secs(10), |n| sees(n, 0, id2, b"before"))
            .await
    );
    let before = net.handle(0).peer_status(&id2).unwrap().version;

    net.restart(2).await.unwrap();
    net.connect(2, 1);
    // The new incarnation starts with an empty application status and seq back at its start.
    assert!(
        net.wait_for(Duration::from_secs(10), |n| sees(n, 0, id2, b""))
            .await,
        "node 0 kept the old incarnation's status"
    );
    let after = net.handle(0).peer_status(&id2).unwrap().version;
    assert_ne!(after.epoch, before.epoch, "a restart is a new epoch");
    assert!(
        after.seq <= before.seq,
        "seq restarted: {after:?} vs {before:?}"
    );
    net.handle(2)
        .set_app_status(Bytes::from_static(b"after"))
        .unwrap();
    assert!(
        net.wait_for(Duration::from_secs(10), |n| sees(n, 0, id2, b"after"))
            .await
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_leaves_is_forgotten() {
    let mut net = line(3).await;
    let id2 = net.handle(2).node_id();
    assert!(
        net.wait_for(Duration::from_secs(10), |n| n
            .handle(0)
            .peer_status(&id2)
            .is_some())
            .await
    );
    net.stop(2).await;
    assert!(
        net.wait_for(Duration::from_secs(10), |n| n
            .handle(0)
            .peer_status(&id2)
            .is_none()
            && n.handle(1).peer_status(&id2).is_none())
            .await,
        "the departed node's status stayed"
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_and_cli_show_and_set_status() {
    let net = line(3).await;
    let a0 = net.admin_addr(0).unwrap().to_string();
    let a2 = net.admin_addr(2).unwrap().to_string();
    let bearer = format!("Bearer {}", net.admin_token(0).unwrap());
    let resp = ureq::put(&format!("http://{a0}/v1/status/app"))
        .header("Authorization", &bearer)
        .send("view-7")
        .unwrap();
    assert!(resp.status().is_success());
    let id0 = net.handle(0).node_id();
    assert!(
        net.wait_for(Duration::from_secs(10), |n| sees(n, 2, id0, b"view-7"))
            .await
    );
    let view = chainmesh_testkit::get_json(&a2, "/v1/status");
    let nodes = view["nodes"].as_array().unwrap();
    let entry = nodes
        .iter()
        .find(|e| e["node_id"] == id0.to_string())
        .expect("node 0 in node 2's view");
    assert_eq!(entry["app_text"], "view-7");
    let out = common::chainmesh_ok(["status", "--admin", &a2]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains(&id0.short()) && table.contains("view-7"),
        "{table}"
    );
    net.shutdown().await;
}
