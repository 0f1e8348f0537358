//! Connections that heal themselves and a peer set that changes at runtime: real node
//! processes (killed, stopped, reloaded) and in-process nodes over real TLS on 127.0.0.1.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chainmesh::identity::{generate_node_files, Curve, GeneratedNode};
use chainmesh::peers::{PeerEvent, RefusalReason};
use chainmesh::session::CloseReason;
use chainmesh::wire::{Handshake, VersionRanges};
use chainmesh::{Node, NodeHandle, NodeId};
use chainmesh_testkit::raw::RawPeer;
use chainmesh_testkit::{config_for, connected_peers, wait_until};
use chainmesh_testkit::{LocalNet, LocalNetOptions};
use common::Signal;

const MODULE: u16 = 9;

async fn start_in_process(g: &GeneratedNode) -> Node {
    Node::start(config_for(g), None).await.unwrap()
}

/// Waits for a disconnect of `peer` and returns its reason.
async fn next_disconnect(
    events: &mut tokio::sync::broadcast::Receiver<PeerEvent>,
    peer: NodeId,
    timeout: Duration,
) -> Option<CloseReason> {
    tokio::time::timeout(timeout, async {
        loop {
            match events.recv().await {
                Ok(PeerEvent::Disconnected { peer: p, reason }) if p == peer => return reason,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("events closed: {e}"),
            }
        }
    })
    .await
    .ok()
}

fn connected_to(h: &NodeHandle, peer: &str) -> bool {
    h.peers()
        .sessions()
        .iter()
        .any(|s| s.peer.to_string() == peer)
}

/// Counts one-way messages for MODULE on `h`.
fn count_messages(h: &NodeHandle) -> Arc<AtomicUsize> {
    let n = Arc::new(AtomicUsize::new(0));
    let c = n.clone();
    chainmesh_testkit::serve_echo(h, MODULE, 4096, move |_| {
        c.fetch_add(1, Ordering::SeqCst);
    });
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_peer_is_noticed_and_reconnects_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate_node_files(dir.path(), 3, Curve::Secp256k1).unwrap();
    let n0 = start_in_process(&g[0]).await;
    let n1 = start_in_process(&g[1]).await;
    let (h0, h1) = (n0.handle(), n1.handle());
    h0.peers().add_target(&h1.listen_addr().to_string());
    let mut cfg2 = config_for(&g[2]);
    cfg2.p2p.peers = vec![h0.listen_addr().to_string(), h1.listen_addr().to_string()];
    let cfg_path = g[2].dir.join("config.toml");
    let mut p2 = common::start_node(&cfg2, &cfg_path);
    let mesh = wait_until(Duration::from_secs(10), || {
        h0.peers().sessions().len() == 2 && h1.peers().sessions().len() == 2
    })
    .await;
    assert!(mesh, "no full mesh; node2 log:\n{}", p2.log());

    let got = count_messages(&h1);
    let mut events = h0.events();
    let id2: NodeId = p2.node_id.parse().unwrap();
    p2.signal(Signal::Kill).unwrap();
    let t_kill = Instant::now();
    // Keep the survivors talking across the death of node 2.
    let mut sent = 0;
    for i in 0..200 {
        h0.send(h1.node_id(), MODULE, Bytes::from(format!("m{i}")))
            .await
            .unwrap();
        sent += 1;
    }
    let reason = next_disconnect(&mut events, id2, Duration::from_secs(5))
        .await
        .expect("node 0 notices the death");
    let noticed = t_kill.elapsed();
    assert!(
        matches!(
            reason,
            CloseReason::ClosedByPeer | CloseReason::Io(_) | CloseReason::IdleTimeout
        ),
        "{reason:?}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || got.load(Ordering::SeqCst)
            == sent)
        .await,
        "nothing lost between the survivors: {} of {sent}",
        got.load(Ordering::SeqCst)
    );

    let _ = p2.wait_exit(Duration::from_secs(10));
    let t_restart = Instant::now();
    let p2 = common::start_existing(&cfg_path);
    let back = wait_until(Duration::from_secs(10), || {
        connected_to(&h0, &p2.node_id) && connected_to(&h1, &p2.node_id)
    })
    .await;
    assert!(back, "node 2 not reconnected; its log:\n{}", p2.log());
    println!(
        "death noticed after {noticed:?}; reconnected {:?} after restart",
        t_restart.elapsed()
    );
    drop(p2);
    n0.shutdown().await;
    n1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_peer_is_dropped_on_idle_timeout_and_reconnected() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate_node_files(dir.path(), 2, Curve::Secp256k1).unwrap();
    let n0 = start_in_process(&g[0]).await;
    let h0 = n0.handle();
    let mut cfg1 = config_for(&g[1]);
    cfg1.p2p.peers = vec![h0.listen_addr().to_string()];
    let p1 = common::start_node(&cfg1, &g[1].dir.join("config.toml"));
    assert!(wait_until(Duration::from_secs(10), || connected_to(&h0, &p1.node_id)).await);
    let mut events = h0.events();
    p1.signal(Signal::Stop).unwrap();
    let t_stop = Instant::now();
    let reason = next_disconnect(
        &mut events,
        p1.node_id.parse().unwrap(),
        Duration::from_secs(5),
    )
    .await;
    let dropped_after = t_stop.elapsed();
    p1.signal(Signal::Cont).unwrap();
    assert_eq!(reason, Some(CloseReason::IdleTimeout));
    assert!(
        wait_until(Duration::from_secs(10), || connected_to(&h0, &p1.node_id)).await,
        "resumed node not reconnected; its log:\n{}",
        p1.log()
    );
    println!("hung peer dropped after {dropped_after:?} (idle timeout 300 ms)");
    drop(p1);
    n0.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_dials_keep_one_agreed_connection() {
    let net = LocalNet::start(LocalNetOptions::new(2)).await.unwrap();
    let (a, b) = (net.handle(0), net.handle(1));
    let (addr_a, addr_b) = (net.addr(0), net.addr(1));
    let trials = 100;
    let mut agreed = 0;
    for trial in 0..trials {
        // Both sides dial at once.
        a.peers().add_target(&addr_b);
        b.peers().add_target(&addr_a);
        // Settled: both dialers have finished (won or lost) and one connection is left.
        let settled = |h: &NodeHandle| {
            h.peers()
                .targets()
                .iter()
                .all(|t| t.state == chainmesh::peers::TargetState::Connected)
        };
        let same = wait_until(Duration::from_secs(10), || {
            let (sa, sb) = (a.peers().sessions(), b.peers().sessions());
            settled(&a)
                && settled(&b)
                && sa.len() == 1
                && sb.len() == 1
                && sa[0].local_addr == sb[0].addr
                && sa[0].addr == sb[0].local_addr
        })
        .await;
        assert!(
            same,
            "trial {trial}: sides disagree: {:?} vs {:?}",
            a.peers().sessions(),
            b.peers().sessions()
        );
        // The kept connection is the one the smaller node ID dialed.
        let s = &a.peers().sessions()[0];
        let a_dialed = s.direction == chainmesh::session::Direction::Outbound;
        assert_eq!(a_dialed, a.node_id() < b.node_id(), "trial {trial}");
        agreed += 1;
        a.peers().remove_target(&addr_b);
        b.peers().remove_target(&addr_a);
        assert!(
            wait_until(Duration::from_secs(10), || {
                a.peers().sessions().is_empty() && b.peers().sessions().is_empty()
            })
            .await,
            "trial {trial}: removal did not close the link"
        );
    }
    println!("{agreed}/{trials} simultaneous-dial trials ended with exactly one agreed connection");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_added_at_runtime_are_written_back_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate_node_files(dir.path(), 2, Curve::Secp256k1).unwrap();
    let n1 = start_in_process(&g[1]).await;
    let h1 = n1.handle();
    let addr1 = h1.listen_addr().to_string();
    let path = g[0].dir.join("config.toml");
    let mut cfg0 = config_for(&g[0]);
    cfg0.p2p.groups = vec!["group0".into(), "audit".into()];
    let p0 = common::start_node(&cfg0, &path);
    // The node made its admin token beside its config file at first start.
    let token = g[0].dir.join("admin.token");
    let token = token.to_str().unwrap();
    let add = |addr: &str| {
        common::chainmesh_ok([
            "peers",
            "add",
            "--admin",
            &p0.admin,
            "--token-file",
            token,
            addr,
        ]);
    };
    add(&addr1);
    let id1 = h1.node_id().to_string();
    assert!(wait_until(Duration::from_secs(10), || connected_peers(&p0.admin) == 1).await);
    let saved = chainmesh::Config::load(&path).unwrap();
    assert_eq!(saved.p2p.peers, vec![addr1.clone()]);
    assert_eq!(
        saved.p2p.groups, cfg0.p2p.groups,
        "the rest of the file is kept"
    );

    // A bad address is refused with a clear error and changes nothing.
    let out = common::chainmesh([
        "peers",
        "add",
        "--admin",
        &p0.admin,
        "--token-file",
        token,
        "no-port",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-port"));
    assert_eq!(
        chainmesh::Config::load(&path).unwrap().p2p.peers,
        vec![addr1.clone()]
    );

    // Restart: the runtime-added peer comes back from the file.
    drop(p0);
    let p0 = common::start_existing(&path);
    assert!(wait_until(Duration::from_secs(10), || connected_to(&h1, &p0.node_id)).await);

    // Remove it: the link closes and the file forgets it.
    common::chainmesh_ok([
        "peers",
        "remove",
        "--admin",
        &p0.admin,
        "--token-file",
        token,
        &addr1,
    ]);
    assert!(wait_until(Duration::from_secs(10), || !connected_to(&h1, &p0.node_id)).await);
    assert!(chainmesh::Config::load(&path).unwrap().p2p.peers.is_empty());
    let listed = common::chainmesh_ok(["peers", "list", "--admin", &p0.admin]);
    assert!(!String::from_utf8_lossy(&listed.stdout).contains(&id1[..8]));
    drop(p0);
    n1.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reload_applies_peers_and_blacklist_and_refuses_a_corrupt_file() {
    let dir = tempfile::tempdir().unwrap();
    let g = generate_node_files(dir.path(), 3, Curve::Secp256k1).unwrap();
    let n1 = start_in_process(&g[1]).await;
    let n2 = start_in_process(&g[2]).await;
    let (h1, h2) = (n1.handle(), n2.handle());
    let path = g[0].dir.join("config.toml");
    let mut cfg0 = config_for(&g[0]);
    cfg0.p2p.peers = vec![h1.listen_addr().to_string()];
    let p0 = common::start_node(&cfg0, &path);
    h2.peers().add_target(&p0.p2p);
    assert!(wait_until(Duration::from_secs(10), || connected_peers(&p0.admin) == 2).await);

    // Reload: drop node 1 from the peers, blacklist node 2.
    let mut next = cfg0.clone();
    next.p2p.peers.clear();
    next.p2p.blacklist = vec![h2.node_id()];
    std::fs::write(&path, next.to_toml()).unwrap();
    let mut ev1 = h1.events();
    p0.signal(Signal::Hup).unwrap();
    let id0: NodeId = p0.node_id.parse().unwrap();
    assert!(next_disconnect(&mut ev1, id0, Duration::from_secs(5))
        .await
        .is_some());
    assert!(wait_until(Duration::from_secs(10), || connected_peers(&p0.admin) == 0).await);
    assert!(wait_until(Duration::from_secs(5), || p0.log().contains("blacklisted")).await);
    // Node 2 keeps redialing but is refused every time.
    let t = Instant::now();
    assert!(
        !wait_until(Duration::from_millis(800), || connected_peers(&p0.admin)
            > 0)
        .await
    );
    assert!(t.elapsed() >= Duration::from_millis(800));

    // A corrupt file is refused; the node keeps running with what it had.
    h1.peers().add_target(&p0.p2p);
    assert!(wait_until(Duration::from_secs(10), || connected_peers(&p0.admin) == 1).await);
    std::fs::write(&path, "this is [not toml").unwrap();
    p0.signal(Signal::Hup).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || p0
            .log()
            .contains("reload refused"))
        .await
    );
    assert_eq!(connected_peers(&p0.admin), 1);
    assert!(chainmesh_testkit::get_json(&p0.admin, "/v1/node")["node_id"] == p0.node_id.as_str());
    drop(p0);
    n1.shutdown().await;
    n2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaving_node_is_dropped_at_once_not_after_the_idle_timeout() {
    let mut opts = LocalNetOptions::new(2);
    // An idle timeout far longer than the test waits.
    opts.timers.heartbeat_interval = Duration::from_secs(20);
    let mut net = LocalNet::start(opts).await.unwrap();
    net.connect(0, 1);
    assert!(
        net.wait_for(Duration::from_secs(10), LocalNet::is_full_mesh)
            .await
    );
    let mut events = net.handle(0).events();
    let id1 = net.handle(1).node_id();
    net.stop(1).await;
    let reason = next_disconnect(&mut events, id1, Duration::from_secs(10)).await;
    assert!(
        matches!(reason, Some(CloseReason::PeerLeft(_))),
        "{reason:?}"
    );
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disjoint_protocol_versions_are_refused_with_a_clear_reason() {
    let net = LocalNet::start(LocalNetOptions::new(2)).await.unwrap();
    let mut events = net.handle(0).events();
    let mut raw = RawPeer::dial_as(&net, 1, 0).await.unwrap();
    let future = Handshake {
        min_version: 7,
        max_version: 9,
        listen_port: 0,
        max_packet_size: 1 << 20,
        incarnation: None,
    };
    let r = raw.handshake_with(&future).await;
    assert!(r.is_err(), "we cannot agree either");
    let reason = chainmesh_testkit::next_refusal(&mut events).await;
    assert!(
        matches!(
            reason,
            RefusalReason::NoCommonVersion(VersionRanges {
                theirs_min: 7,
                theirs_max: 9,
                ..
            })
        ),
        "{reason}"
    );
    assert!(net.handle(0).peers().sessions().is_empty());
    net.shutdown().await;
}
