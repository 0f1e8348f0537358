//! `chainmesh groups list|add|remove`: a running node's group memberships changed from the
//! CLI, as `chainmesh topics` changes its subscriptions; a node that joins a group receives
//! the broadcasts to it once the sender has learnt its status.
//!
//! Tests wait on conditions, never on fixed sleeps.

use std::time::Duration;

use bytes::Bytes;
use chainmesh::node::MessageKind;
use chainmesh_testkit::{LocalNet, LocalNetOptions};

mod common;

const WAIT: Duration = Duration::from_secs(20);
const MODULE: u16 = 43;

/// `chainmesh groups ARGS --admin ADDR` with the token in the environment.
async fn groups(admin: &str, token: &str, args: &[&str]) -> std::process::Output {
    let mut argv: Vec<String> = ["groups"]
        .iter()
        .chain(args)
        .map(|s| s.to_string())
        .collect();
    argv.extend(["--admin".to_string(), admin.to_string()]);
    let token = token.to_owned();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_chainmesh"))
            .args(argv)
            .env("CHAINMESH_ADMIN_TOKEN", token)
            .output()
            .expect("run chainmesh groups")
    })
    .await
    .expect("the waiting thread")
}

fn lines(out: &std::process::Output) -> Vec<String> {
    common::assert_ok(out);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_joined_from_the_cli_receive_broadcasts_and_leaving_stops_them() {
    let mut opts = LocalNetOptions::for_traffic(2);
    opts.admin = true;
    let net = LocalNet::start(opts).await.expect("local network starts");
    net.connect(0, 1);
    assert!(net.wait_for(WAIT, |n| n.has_peers(0, 1)).await);
    let (a, b) = (net.handle(0), net.handle(1));
    let admin = net.admin_addr(1).expect("admin API").to_string();
    let token = net.admin_token(1).expect("admin token");

    assert_eq!(lines(&groups(&admin, &token, &["list"]).await), ["group0"]);
    assert_eq!(
        lines(&groups(&admin, &token, &["add", "blocks"]).await),
        ["blocks", "group0"]
    );
    let again = groups(&admin, &token, &["add", "blocks"]).await;
    assert!(String::from_utf8_lossy(&again.stderr).contains("already a member"));
    assert_eq!(b.groups(), ["blocks", "group0"]);

    let mut inbox = b.register(MODULE, 16);
    let id = b.node_id();
    let learnt = || {
        a.peer_status(&id)
            .is_some_and(|s| s.status.groups.iter().any(|g| g == "blocks"))
    };
    assert!(net.wait_for(WAIT, |_| learnt()).await, "never learnt");
    let f = a
        .broadcast("blocks", MODULE, Bytes::from_static(b"h=1"))
        .await
        .expect("broadcast sent");
    assert_eq!(f.queued, [id]);
    let got = tokio::time::timeout(WAIT, inbox.recv())
        .await
        .expect("the member gets it")
        .expect("inbox open");
    assert_eq!(got.kind, MessageKind::Broadcast);
    assert_eq!(got.payload.as_ref(), b"h=1");

    assert_eq!(
        lines(&groups(&admin, &token, &["remove", "blocks"]).await),
        ["group0"]
    );
    assert_eq!(b.groups(), ["group0"]);
    let out = common::chainmesh_async(vec![
        "groups".into(),
        "remove".into(),
        "blocks".into(),
        "--admin".into(),
        admin,
    ])
    .await;
    assert!(!out.status.success(), "a change needs the token");
    net.shutdown().await;
}
