//! The admin API on real nodes: groups listed, joined and left at run time (`/v1/groups`,
//! served by the same handlers as `/v1/topics`), and node IDs taken by unique prefix where a
//! request names a node (`/v1/ping`, `/v1/messages`, `DELETE /v1/peers/{peer}`).

use std::time::Duration;

use chainmesh::NodeHandle;
use chainmesh_testkit::{http_agent, status_and_json, wait_until, LocalNet, LocalNetOptions};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);
const MODULE: u16 = 3200;

fn agent() -> ureq::Agent {
    http_agent(WAIT)
}

fn answer(resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
    status_and_json(resp)
}

/// A request to node `i`'s admin API, with its token unless `token` is false.
fn call(net: &LocalNet, i: usize, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let addr = net.admin_addr(i).expect("admin API");
    let url = format!("http://{addr}{path}");
    let auth = format!("Bearer {}", net.admin_token(i).expect("admin token"));
    match (method, body) {
        ("GET", _) => answer(agent().get(url).call()),
        ("DELETE", _) => answer(agent().delete(url).header("Authorization", auth).call()),
        (_, Some(b)) => answer(agent().post(url).header("Authorization", auth).send_json(b)),
        (_, None) => answer(agent().post(url).send_json(json!({}))),
    }
}

async fn pair() -> LocalNet {
    let mut opts = LocalNetOptions::for_traffic(2);
    opts.admin = true;
    let net = LocalNet::start(opts).await.expect("local network starts");
    net.connect(0, 1);
    assert!(net.wait_for(WAIT, |n| n.has_peers(0, 1)).await);
    net
}

async fn sees_in_group(node: &NodeHandle, other: &NodeHandle, group: &str) -> bool {
    let other = other.node_id();
    wait_until(WAIT, || {
        node.peer_status(&other)
            .is_some_and(|s| s.status.groups.iter().any(|g| g == group))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_are_listed_joined_and_left_through_the_admin_api() {
    let net = pair().await;
    let (a, b) = (net.handle(0), net.handle(1));
    assert_eq!(
        call(&net, 1, "GET", "/v1/groups", None),
        (200, json!({"groups": ["group0"]}))
    );
    // A change needs the token.
    let addr = net.admin_addr(1).expect("admin API");
    let refused = answer(
        agent()
            .post(format!("http://{addr}/v1/groups"))
            .send_json(json!({"group": "g1"})),
    );
    assert_eq!(refused.0, 401);

    let join = |body| call(&net, 1, "POST", "/v1/groups", Some(body));
    assert_eq!(
        join(json!({"group": "g1"})),
        (200, json!({"groups": ["g1", "group0"], "changed": true}))
    );
    assert_eq!(join(json!({"group": "g1"})).1["changed"], false);
    let (status, body) = join(json!({"group": ""}));
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("group"), "{body}");
    assert_eq!(join(json!({"topic": "g2"})).0, 400);
    assert_eq!(b.groups(), ["g1", "group0"]);
    // Topics are apart.
    assert_eq!(
        call(&net, 1, "GET", "/v1/topics", None),
        (200, json!({"topics": []}))
    );

    assert!(sees_in_group(&a, &b, "g1").await, "node 0 never learnt it");
    let sent = call(
        &net,
        0,
        "POST",
        "/v1/messages",
        Some(json!({"group": "g1", "module": MODULE, "data": "x"})),
    );
    assert_eq!(sent.0, 200, "{}", sent.1);
    assert_eq!(sent.1["queued"], json!([b.node_id().to_string()]));

    let leave = || call(&net, 1, "DELETE", "/v1/groups/g1", None);
    assert_eq!(
        leave(),
        (200, json!({"groups": ["group0"], "changed": true}))
    );
    assert_eq!(leave().1["changed"], false);
    assert_eq!(b.groups(), ["group0"]);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_is_named_by_a_unique_prefix_of_its_id_and_a_bad_one_says_why() {
    let net = pair().await;
    let (a, b) = (net.handle(0), net.handle(1));
    let full = b.node_id().to_string();
    let ping = |to: &str| call(&net, 0, "POST", "/v1/ping", Some(json!({"to": to})));

    let (status, body) = ping(&full[..8]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["from"], full.as_str());
    let upper = format!("0x{}", full[..6].to_uppercase());
    assert_eq!(ping(&upper).0, 200);

    let (status, body) = ping(&full[..3]);
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("too short"),
        "{body}"
    );
    assert_eq!(ping("node1").0, 400);
    // A prefix neither node's ID starts with.
    let own = a.node_id().to_string();
    let unknown = ["0000", "1111", "2222", "3333"]
        .into_iter()
        .find(|p| !full.starts_with(p) && !own.starts_with(p))
        .expect("one of four prefixes matches neither ID");
    let (status, body) = ping(unknown);
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().unwrap().contains(unknown), "{body}");

    let sent = call(
        &net,
        0,
        "POST",
        "/v1/messages",
        Some(json!({"to": &full[..10], "module": MODULE, "data": "x"})),
    );
    assert_eq!(sent.0, 200, "{}", sent.1);
    assert_eq!(sent.1["queued"], json!([full]));

    // A configured peer is removed by its node ID as well as by its address.
    let (status, body) = call(
        &net,
        0,
        "DELETE",
        &format!("/v1/peers/{}", &full[..8]),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["address"], net.addr(1).as_str());
    assert!(a.peers().targets().is_empty());
    net.shutdown().await;
}
