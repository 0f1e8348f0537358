//! The live network page in headless Chromium, against a real 4-node network on 127.0.0.1:
//! the page's own script draws every node, and a stopped node is shown unreachable.
//! Without Chromium (`/usr/bin/chromium`, Debian's package) the test says it was skipped
//! and passes; CI installs it.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use chainmesh::NodeId;
use chainmesh_testkit::{LocalNet, LocalNetOptions};

const CHROMIUM: &str = "/usr/bin/chromium";

/// The document after the page's script ran for a while, as headless Chromium serializes
/// it. Each load has a profile of its own, so nothing is cached between loads.
fn dump_dom(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=3000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The state the page's graph shows for `node`, if it shows the node at all.
fn shown_state(dom: &str, node: &NodeId) -> Option<String> {
    let key = format!("data-node=\"{node}\" data-state=\"");
    let at = dom.find(&key)? + key.len();
    let rest = &dom[at..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// Loads the page until `cond` holds of the DOM or `timeout` passes; the last DOM.
async fn load_until(url: &str, timeout: Duration, cond: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let u = url.to_owned();
        let dom = tokio::task::spawn_blocking(move || dump_dom(&u))
            .await
            .unwrap();
        if cond(&dom) || start.elapsed() > timeout {
            return dom;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_shows_every_node_of_a_four_node_line_and_a_stopped_one_as_unreachable() {
    if !Path::new(CHROMIUM).exists() {
        eprintln!("skipped: chromium not installed");
        return;
    }
    let mut o = LocalNetOptions::new(4);
    o.admin = true;
    let mut net = LocalNet::start(o).await.unwrap();
    // 0 - 1 - 2 - 3: node 0 knows 2 and 3 only through routing.
    net.connect_line();
    let routed = net
        .wait_for(Duration::from_secs(20), |net| {
            net.handle(0).reachable_nodes().len() == 3
        })
        .await;
    assert!(routed, "node 0 never reached the whole line");
    let ids: Vec<NodeId> = (0..4).map(|i| net.handle(i).node_id()).collect();
    let url = format!("http://{}/", net.admin_addr(0).unwrap());

    let want = [(0, "self"), (1, "direct"), (2, "relayed"), (3, "relayed")];
    let shows_all = |dom: &str| {
        want.iter()
            .all(|(i, state)| shown_state(dom, &ids[*i]).as_deref() == Some(*state))
    };
    let dom = load_until(&url, Duration::from_secs(30), shows_all).await;
    assert!(shows_all(&dom), "the page does not show the line: {dom}");
    assert!(
        dom.contains("data-polls="),
        "the page's script never polled: {dom}"
    );
    // The learnt links are drawn as well as node 0's own.
    assert_eq!(dom.matches("<line ").count(), 3, "{dom}");

    net.stop(3).await;
    let gone = |dom: &str| {
        shown_state(dom, &ids[3]).map_or(true, |s| s == "unreachable")
            && shown_state(dom, &ids[2]).as_deref() == Some("relayed")
    };
    let dom = load_until(&url, Duration::from_secs(30), gone).await;
    assert!(gone(&dom), "the page still shows node 3 reachable: {dom}");
    net.shutdown().await;
}
