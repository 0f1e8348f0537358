//! `GET /v1/network`, what the live page draws, follows the `admin.page_*` keys: it tells
//! the page how often to refresh, keeps no more events than configured, pings this node's
//! neighbours as often as configured, and gives no figures for a link between two others.

use std::time::Duration;

use chainmesh::config::Config;
use chainmesh_testkit::{get_json, wait_until, LocalNet, LocalNetOptions};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

fn page_keys(_: usize, cfg: &mut Config) {
    cfg.admin.page_refresh = Duration::from_millis(300);
    cfg.admin.page_ping_interval = Duration::from_millis(100);
    cfg.admin.page_max_events = 2;
}

fn link<'a>(view: &'a Value, a: &str, b: &str) -> Option<&'a Value> {
    view["links"].as_array()?.iter().find(|l| {
        let (x, y) = (l["a"].as_str(), l["b"].as_str());
        (x, y) == (Some(a), Some(b)) || (x, y) == (Some(b), Some(a))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_network_view_follows_the_page_keys_and_has_no_figures_for_others_links() {
    let mut o = LocalNetOptions::new(3);
    o.admin = true;
    o.tweak = Some(page_keys);
    let net = LocalNet::start(o).await.unwrap();
    // 0 - 1 - 2: node 0 sees the link 1-2 only through routing. Connecting and two nodes
    // becoming reachable are three events, one more than node 0 keeps.
    net.connect(0, 1);
    net.connect(1, 2);
    let ids: Vec<String> = (0..3)
        .map(|i| net.handle(i).node_id().to_string())
        .collect();
    let admin = net.admin_addr(0).unwrap().to_string();

    let mut view = Value::Null;
    let settled = wait_until(WAIT, || {
        view = get_json(&admin, "/v1/network");
        let events = view["events"].as_array().map_or(0, Vec::len);
        assert!(
            events <= 2,
            "more events than admin.page_max_events: {view}"
        );
        let reached_2 = view["events"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["event"] == "reachable" && e["node"] == ids[2].as_str());
        let pinged = link(&view, &ids[0], &ids[1]).is_some_and(|l| l["rtt_us"].is_u64());
        reached_2 && events == 2 && pinged && link(&view, &ids[1], &ids[2]).is_some()
    })
    .await;
    assert!(settled, "node 0 never showed the line measured: {view}");
    assert_eq!(view["refresh_ms"], 300);
    let learnt = link(&view, &ids[1], &ids[2]).unwrap();
    assert_eq!(learnt["kind"], "learnt");
    for figure in ["bytes_in", "bytes_out", "in_per_s", "out_per_s", "rtt_us"] {
        assert!(
            learnt[figure].is_null(),
            "{figure} of a learnt link: {learnt}"
        );
    }
    assert_eq!(learnt["ping_failed"], false);
    net.shutdown().await;
}
