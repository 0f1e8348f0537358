//! Log lines of a real node process as an operator's log collector sees them: JSON objects
//! line by line, text without colour codes in a file, every line naming the local node, lines
//! about a peer naming it, levels from the config or `RUST_LOG`.

mod common;

use std::path::Path;
use std::time::Duration;

use chainmesh::identity::{generate_node_files, Curve, GeneratedNode};
use chainmesh::Node;
use chainmesh_testkit::{config_for, wait_until};
use common::{Launch, NodeProcess, Signal};

/// Starts `g` as a node process named `name` with `[log]` set to `level`, `RUST_LOG` set to
/// `rust_log` and `extra` arguments, and an in-process node that dials it; returns both once
/// they are linked, and the in-process node's short ID.
async fn linked_process(
    g: &[GeneratedNode],
    name: &str,
    level: &str,
    rust_log: &str,
    extra: &[&str],
) -> (NodeProcess, Node, String) {
    let mut cfg = config_for(&g[0]);
    cfg.node.name = name.into();
    cfg.log.level = level.into();
    let path = g[0].dir.join("config.toml");
    std::fs::write(&path, cfg.to_toml()).unwrap();
    let mut launch = Launch::new(env!("CARGO_BIN_EXE_chainmesh"), &path);
    launch.log_filter = rust_log.into();
    launch.args = extra.iter().map(Into::into).collect();
    let p = NodeProcess::spawn(&launch).unwrap_or_else(|e| panic!("{e}"));
    let other = Node::start(config_for(&g[1]), None).await.unwrap();
    let h = other.handle();
    h.peers().add_target(&p.p2p);
    let linked = wait_until(Duration::from_secs(10), || !h.peers().sessions().is_empty()).await;
    assert!(linked, "no link; the node's log:\n{}", p.log());
    // The process logs its side of the link too; wait for it rather than for a fixed time.
    let logged = wait_until(Duration::from_secs(10), || {
        p.log().contains("peer connected")
    })
    .await;
    assert!(logged, "no `peer connected` line:\n{}", p.log());
    let short = h.node_id().short();
    (p, other, short)
}

/// Stops the process cleanly, so that its last lines (shutting down, peer gone) are written.
fn stop(mut p: NodeProcess) -> String {
    p.signal(Signal::Term).unwrap();
    assert!(p.wait_exit(Duration::from_secs(10)).unwrap(), "no exit");
    p.log()
}

fn files(dir: &Path) -> Vec<GeneratedNode> {
    generate_node_files(dir, 2, Curve::Secp256k1).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_parse_line_by_line_and_name_the_node_and_its_peers() {
    let dir = tempfile::tempdir().unwrap();
    let g = files(dir.path());
    // RUST_LOG wins over the config's level: debug lines appear though the config says info.
    let (p, other, peer) = linked_process(
        &g,
        "bank-a-1",
        "info",
        "chainmesh=debug",
        &["--log-format", "json"],
    )
    .await;
    let log = stop(p);
    other.shutdown().await;

    let mut about_peer = 0;
    let mut debug = 0;
    for (i, line) in log
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("line {}: not JSON ({e}): {line}", i + 1));
        let obj = v
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {line}"));
        for key in ["timestamp", "level", "target", "message"] {
            assert!(obj.contains_key(key), "no `{key}`: {line}");
        }
        assert_eq!(obj["node"], "bank-a-1", "{line}");
        if obj.get("peer").and_then(|p| p.as_str()) == Some(peer.as_str()) {
            about_peer += 1;
        }
        debug += usize::from(obj["level"] == "DEBUG");
    }
    assert!(
        about_peer >= 2,
        "connect and disconnect name the peer:\n{log}"
    );
    assert!(
        debug > 0,
        "RUST_LOG=chainmesh=debug gives debug lines:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_logs_in_a_file_have_no_colour_and_follow_the_config_level() {
    let dir = tempfile::tempdir().unwrap();
    let g = files(dir.path());
    // No RUST_LOG: the config's level decides. No name: the short node ID stands in.
    let (p, other, peer) = linked_process(&g, "", "info,chainmesh::routing=warn", "", &[]).await;
    let own = p.node_id[..8].to_owned();
    let log = stop(p);
    other.shutdown().await;

    assert!(!log.contains('\u{1b}'), "colour codes in a file:\n{log}");
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let mut words = line.split_whitespace();
        let (_time, name) = (words.next(), words.next());
        assert_eq!(name, Some(own.as_str()), "{line}");
        assert!(!line.contains("DEBUG"), "debug line at level info: {line}");
        // chainmesh::routing is at warn: its info lines on route changes are filtered out.
        assert!(!line.contains("routing::service"), "{line}");
    }
    assert!(
        lines.iter().any(|l| l.contains(&format!("peer={peer}"))),
        "{log}"
    );
}

#[test]
fn a_bad_log_format_is_refused_by_the_command_line() {
    let out = common::chainmesh(["node", "--config", "x.toml", "--log-format", "xml"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("text or json"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_node_says_the_peer_refused_it_once_not_at_every_redial() {
    let dir = tempfile::tempdir().unwrap();
    let g = files(dir.path());
    let mut cfg = config_for(&g[1]);
    cfg.p2p.blacklist = vec![g[0].node_id];
    let refuser = Node::start(cfg, None).await.unwrap();
    let h = refuser.handle();
    let mut events = h.events();

    let mut cfg = config_for(&g[0]);
    cfg.p2p.peers = vec![h.listen_addr().to_string()];
    cfg.timers.backoff_max = Duration::from_millis(200);
    let path = g[0].dir.join("config.toml");
    std::fs::write(&path, cfg.to_toml()).unwrap();
    let mut launch = Launch::new(env!("CARGO_BIN_EXE_chainmesh"), &path);
    launch.log_filter = "info".into();
    let p = NodeProcess::spawn(&launch).unwrap_or_else(|e| panic!("{e}"));
    // Five refusals seen by the refusing side: five dials by the refused one.
    let refused = tokio::time::timeout(Duration::from_secs(20), async {
        let mut n = 0;
        while n < 5 {
            match events.recv().await {
                Ok(chainmesh::peers::PeerEvent::Refused { .. }) => n += 1,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("events closed: {e}"),
            }
        }
    })
    .await;
    assert!(refused.is_ok(), "fewer than 5 dials; the log:\n{}", p.log());
    let log = stop(p);
    refuser.shutdown().await;
    let said = log.matches("refused by the peer").count();
    assert_eq!(said, 1, "one warning for the repeated refusal:\n{log}");
}
