//! `GET /v1/amop` and the AMOP families of `/metrics`, on real nodes with channel ports and
//! raw SDK sessions.

use std::time::Duration;

use chainmesh_testkit::channel::RawChannel;
use chainmesh_testkit::{get_json, wait_until, LocalNet, LocalNetOptions};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

async fn amop_net(nodes: usize, amop: bool) -> LocalNet {
    let mut opts = LocalNetOptions::new(nodes);
    opts.admin = true;
    opts.amop = amop;
    let net = LocalNet::start(opts).await.unwrap();
    net.connect_full_mesh();
    assert!(net.wait_for(WAIT, |n| n.is_full_mesh()).await);
    net
}

fn admin(net: &LocalNet, i: usize) -> String {
    net.admin_addr(i).unwrap().to_string()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amop_view_shows_a_local_session_its_topics_and_a_remote_nodes_topics() {
    let net = amop_net(2, true).await;
    let id0 = net.generated(0).load_identity().unwrap();
    let id1 = net.generated(1).load_identity().unwrap();
    let mut local = RawChannel::dial(&id0, &net.channel_addr(0)).await.unwrap();
    local.subscribe(&["orders", "prices"]).await.unwrap();
    let mut remote = RawChannel::dial(&id1, &net.channel_addr(1)).await.unwrap();
    remote.subscribe(&["audit"]).await.unwrap();

    let addr = admin(&net, 0);
    let node1 = net.handle(1).node_id().to_string();
    let shown = wait_until(WAIT, || {
        let v = get_json(&addr, "/v1/amop");
        strings(&v["local_topics"]) == ["orders", "prices"]
            && v["remote"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| r["node"] == node1.as_str() && strings(&r["topics"]) == ["audit"])
    })
    .await;
    let v = get_json(&addr, "/v1/amop");
    assert!(shown, "{v:#}");
    assert_eq!(v["listen"], net.channel_addr(0));
    let sessions = v["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{v:#}");
    let s = &sessions[0];
    assert_eq!(strings(&s["topics"]), ["orders", "prices"]);
    assert!(s["addr"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(s["key"], id0.node_id.to_string());
    assert!(s["frames_in"].as_u64().unwrap() >= 1);
    assert!(s["since_unix_ms"].as_u64().unwrap() > 0);
    assert!(s["queued_bytes"].is_u64());
    assert_eq!(v["stats"]["sessions_open"], 1);
    assert_eq!(v["stats"]["sessions_accepted"], 1);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_carry_the_amop_families_only_where_a_channel_port_runs() {
    let net = amop_net(1, true).await;
    let id = net.generated(0).load_identity().unwrap();
    let mut c = RawChannel::dial(&id, &net.channel_addr(0)).await.unwrap();
    c.subscribe(&["t1"]).await.unwrap();
    let addr = admin(&net, 0);
    let metrics = || metrics_of(&addr);
    let open = wait_until(WAIT, || {
        metrics()
            .lines()
            .any(|l| l == "chainmesh_amop_sessions_open 1.0")
    })
    .await;
    let text = metrics();
    assert!(open, "{text}");
    for family in [
        "# TYPE chainmesh_amop_sessions_open gauge",
        "# TYPE chainmesh_amop_frames_in counter",
        "# TYPE chainmesh_amop_unicasts counter",
        "# TYPE chainmesh_amop_multicast_deliveries counter",
        "# TYPE chainmesh_amop_forwarded_out counter",
        "# TYPE chainmesh_amop_handshakes_failed counter",
    ] {
        assert!(text.contains(family), "{family} missing:\n{text}");
    }
    net.shutdown().await;

    let plain = amop_net(1, false).await;
    let addr = admin(&plain, 0);
    let text = metrics_of(&addr);
    assert!(!text.contains("chainmesh_amop_"), "{text}");
    plain.shutdown().await;
}

fn metrics_of(addr: &str) -> String {
    ureq::get(&format!("http://{addr}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amop_view_is_404_with_a_json_error_without_a_channel_port() {
    let net = amop_net(1, false).await;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent
        .get(&format!("http://{}/v1/amop", admin(&net, 0)))
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let body: Value = resp.body_mut().read_json().unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("channel port"),
        "{body}"
    );
    net.shutdown().await;
}
