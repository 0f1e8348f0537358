//! Seeing traffic: `chainmesh listen` (the admin API's `/v1/listen` stream) prints the
//! unicasts, multicasts and broadcasts another node sends, beside the application's own
//! handler; topics subscribed from the config (`node.topics`), the CLI (`chainmesh topics`)
//! and the admin API (`/v1/topics`) receive multicasts.
//!
//! Tests wait on conditions, never on fixed sleeps, and assert nothing about wall-clock time.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use chainmesh::node::MessageKind;
use chainmesh::NodeHandle;
use chainmesh_testkit::{LocalNet, LocalNetOptions};

mod common;

/// Generous bound for anything to happen; only reached when something is broken.
const WAIT: Duration = Duration::from_secs(20);
const MODULE: u16 = 42;

/// Two linked nodes with admin APIs; node 1 subscribes to "blocks" from its config.
async fn pair() -> LocalNet {
    let mut opts = LocalNetOptions::for_traffic(2);
    opts.admin = true;
    opts.tweak = Some(|i, cfg| {
        if i == 1 {
            cfg.node.topics = vec!["blocks".into()];
        }
    });
    let net = LocalNet::start(opts).await.expect("local network starts");
    net.connect(0, 1);
    assert!(net.wait_for(WAIT, |n| n.has_peers(0, 1)).await);
    net
}

/// Waits until `node` knows that `other` subscribes to `topic`, which a multicast needs.
async fn wait_knows_topic(net: &LocalNet, node: &NodeHandle, other: &NodeHandle, topic: &str) {
    let other = other.node_id();
    let knows = || {
        node.peer_status(&other)
            .is_some_and(|s| s.status.topics.iter().any(|t| t == topic))
    };
    assert!(
        net.wait_for(WAIT, |_| knows()).await,
        "node never learnt the subscription to {topic}"
    );
}

/// Starts `chainmesh listen` with `args` and returns once it says it is listening.
async fn start_listen(args: Vec<String>) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chainmesh"))
        .arg("listen")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run chainmesh listen");
    let stderr = child.stderr.take().expect("stderr piped");
    let ready = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stderr).lines();
        let said = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.starts_with("listening"));
        // The rest of stderr is drained so the process never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        said
    });
    let ready = tokio::time::timeout(WAIT, ready).await;
    assert!(
        matches!(ready, Ok(Ok(true))),
        "chainmesh listen did not start listening"
    );
    child
}

/// The JSON lines `chainmesh listen --json` printed before it exited.
async fn json_lines(child: Child) -> Vec<serde_json::Value> {
    let out = tokio::time::timeout(
        WAIT,
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await
    .expect("chainmesh listen exits after its count")
    .expect("the waiting thread")
    .expect("the process output");
    assert!(out.status.success(), "chainmesh listen failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_prints_a_unicast_a_multicast_and_a_broadcast_sent_by_another_node() {
    let net = pair().await;
    let (a, b) = (net.handle(0), net.handle(1));
    wait_knows_topic(&net, &a, &b, "blocks").await;
    // The application's own handler on node 1 still gets everything the listener sees.
    let mut inbox = b.register(MODULE, 16);
    let admin = net.admin_addr(1).expect("admin API").to_string();
    let listen = start_listen(vec![
        "--admin".into(),
        admin,
        "--module".into(),
        MODULE.to_string(),
        "--json".into(),
        "--count".into(),
        "3".into(),
    ])
    .await;
    a.send(b.node_id(), MODULE, Bytes::from_static(b"one"))
        .await
        .expect("unicast queued");
    let m = a
        .multicast("blocks", MODULE, Bytes::from_static(b"two"))
        .await
        .expect("multicast queued");
    assert_eq!(m.queued, vec![b.node_id()]);
    let g = a
        .broadcast("group0", MODULE, Bytes::from_static(b"three"))
        .await
        .expect("broadcast queued");
    assert_eq!(g.queued, vec![b.node_id()]);

    let lines = json_lines(listen).await;
    let seen: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l["kind"].as_str().unwrap(), l["data"].as_str().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [
            ("unicast", "one"),
            ("multicast", "two"),
            ("broadcast", "three")
        ]
    );
    assert_eq!(lines[1]["topic"], "blocks");
    let src = a.node_id().to_string();
    assert!(lines.iter().all(|l| l["src"] == src.as_str()));
    for want in ["one", "two", "three"] {
        let got = tokio::time::timeout(WAIT, inbox.recv())
            .await
            .expect("the handler gets it too")
            .expect("inbox open");
        assert_eq!(got.payload.as_ref(), want.as_bytes());
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_subscribed_from_the_cli_and_the_admin_api_receive_multicasts() {
    let net = pair().await;
    let (a, b) = (net.handle(0), net.handle(1));
    let admin = net.admin_addr(1).expect("admin API").to_string();
    let token = net.admin_token(1).expect("admin token");

    let out = tokio::task::spawn_blocking({
        let (admin, token) = (admin.clone(), token.clone());
        move || {
            Command::new(env!("CARGO_BIN_EXE_chainmesh"))
                .args(["topics", "add", "news", "--admin", &admin])
                .env("CHAINMESH_ADMIN_TOKEN", token)
                .output()
                .expect("run chainmesh topics")
        }
    })
    .await
    .unwrap();
    common::assert_ok(&out);
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(listed.lines().collect::<Vec<_>>(), ["blocks", "news"]);

    let added: serde_json::Value = ureq::post(&format!("http://{admin}/v1/topics"))
        .header("Authorization", &format!("Bearer {token}"))
        .send_json(serde_json::json!({ "topic": "api" }))
        .expect("POST /v1/topics")
        .body_mut()
        .read_json()
        .unwrap();
    assert_eq!(added["changed"], true);
    assert_eq!(b.topics(), ["api", "blocks", "news"]);
    // A change needs the token.
    let refused = ureq::post(&format!("http://{admin}/v1/topics"))
        .send_json(serde_json::json!({ "topic": "sneaky" }));
    assert!(refused.is_err());

    let mut inbox = b.register(MODULE, 16);
    for topic in ["blocks", "news", "api"] {
        wait_knows_topic(&net, &a, &b, topic).await;
        a.multicast(topic, MODULE, Bytes::from(topic.as_bytes().to_vec()))
            .await
            .expect("multicast queued");
        let got = tokio::time::timeout(WAIT, inbox.recv())
            .await
            .expect("the subscriber gets it")
            .expect("inbox open");
        assert_eq!(
            got.kind,
            MessageKind::Multicast {
                topic: topic.into()
            }
        );
    }

    let out = common::chainmesh_async(vec![
        "topics".into(),
        "remove".into(),
        "news".into(),
        "--admin".into(),
        admin.clone(),
        "--token-file".into(),
        write_token(&net, &token),
    ])
    .await;
    common::assert_ok(&out);
    assert_eq!(b.topics(), ["api", "blocks"]);
    let out = common::chainmesh_async(vec![
        "topics".into(),
        "list".into(),
        "--admin".into(),
        admin,
    ])
    .await;
    common::assert_ok(&out);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "api\nblocks\n");
    net.shutdown().await;
}

/// The token in a file beside the network's certificates, for `--token-file`.
fn write_token(net: &LocalNet, token: &str) -> String {
    let file = net.dir().join("listen-test.token");
    std::fs::write(&file, token).expect("write the token file");
    file.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_on_a_topic_shows_only_that_topics_multicasts() {
    let net = pair().await;
    let (a, b) = (net.handle(0), net.handle(1));
    b.subscribe("other").expect("subscribe");
    wait_knows_topic(&net, &a, &b, "other").await;
    let admin = net.admin_addr(1).expect("admin API").to_string();
    let listen = start_listen(vec![
        "--admin".into(),
        admin,
        "--module".into(),
        MODULE.to_string(),
        "--topic".into(),
        "blocks".into(),
        "--json".into(),
        "--count".into(),
        "1".into(),
    ])
    .await;
    a.send(b.node_id(), MODULE, Bytes::from_static(b"unicast"))
        .await
        .expect("unicast queued");
    a.multicast("other", MODULE, Bytes::from_static(b"other"))
        .await
        .expect("multicast queued");
    a.multicast("blocks", MODULE, Bytes::from_static(b"wanted"))
        .await
        .expect("multicast queued");
    let lines = json_lines(listen).await;
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["data"], "wanted");
    assert_eq!(lines[0]["topic"], "blocks");
    net.shutdown().await;
}
