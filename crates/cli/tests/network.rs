//! Multi-node behaviour over real TLS on 127.0.0.1: meshes, unicast, request/response,
//! refusals, and malformed input.

mod common;

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use chainmesh::config::Config;
use chainmesh::identity::{generate_node_files, Curve};
use chainmesh::peers::{ConnectError, PeerEvent, RefusalReason, TargetError};
use chainmesh::session::CloseReason;
use chainmesh::{Node, RequestError};
use chainmesh_testkit::raw::RawPeer;
use chainmesh_testkit::{config_for, connected_peers, wait_until};
use chainmesh_testkit::{LocalNet, LocalNetOptions};
use tokio::net::TcpStream;

const MODULE: u16 = 7;

/// Echoes requests and counts one-way messages on every node of `net`.
fn serve_echo(net: &LocalNet, counts: &Arc<Vec<std::sync::atomic::AtomicUsize>>) {
    for i in 0..net.len() {
        let counts = counts.clone();
        chainmesh_testkit::serve_echo(&net.handle(i), MODULE, 256, move |_| {
            counts[i].fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_from_init_reach_a_full_mesh() {
    let dir = tempfile::tempdir().unwrap();
    let net_dir = dir.path().join("net");
    common::chainmesh_ok([
        OsStr::new("init"),
        OsStr::new("--nodes"),
        OsStr::new("3"),
        OsStr::new("--dir"),
        net_dir.as_os_str(),
    ]);
    // Run init's configs as they are, except on ephemeral ports; peers are added once the
    // ports are known.
    let mut nodes = Vec::new();
    for k in 0..3 {
        let mut cfg = Config::load(&net_dir.join(format!("node{k}/config.toml"))).unwrap();
        assert_eq!(cfg.p2p.peers.len(), 2, "init lists every other node");
        cfg.p2p.listen = "127.0.0.1:0".into();
        cfg.p2p.peers.clear();
        cfg.timers = chainmesh_testkit::fast_timers();
        nodes.push(Node::start(cfg, None).await.unwrap());
    }
    for a in &nodes {
        for b in &nodes {
            if a.handle().node_id() != b.handle().node_id() {
                a.handle()
                    .peers()
                    .add_target(&b.handle().listen_addr().to_string());
            }
        }
    }
    let mut admins = Vec::new();
    let admin_stop = tokio_util::sync::CancellationToken::new();
    for n in &nodes {
        let addr = chainmesh_admin::serve(
            "127.0.0.1:0",
            n.handle(),
            None,
            chainmesh_admin::Access::ReadOnly,
            &chainmesh::config::AdminConfig::default(),
            admin_stop.clone(),
        )
        .await
        .unwrap();
        admins.push(addr.to_string());
    }
    let meshed = wait_until(Duration::from_secs(10), || {
        admins.iter().all(|a| connected_peers(a) == 2)
    })
    .await;
    assert!(meshed, "no full mesh");
    let info = chainmesh_testkit::get_json(&admins[0], "/v1/node");
    assert_eq!(info["node_id"], nodes[0].handle().node_id().to_string());
    for n in nodes {
        n.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unicast_and_request_reach_every_pair() {
    let net = LocalNet::start(LocalNetOptions::new(3)).await.unwrap();
    net.connect_full_mesh();
    assert!(
        net.wait_for(Duration::from_secs(10), LocalNet::is_full_mesh)
            .await
    );
    let counts = Arc::new((0..3).map(|_| Default::default()).collect::<Vec<_>>());
    serve_echo(&net, &counts);
    for i in 0..3 {
        for j in 0..3 {
            if i == j {
                continue;
            }
            let to = net.handle(j).node_id();
            net.handle(i)
                .send(to, MODULE, Bytes::from(format!("{i}->{j}")))
                .await
                .unwrap();
            let payload = Bytes::from(format!("req {i}->{j}"));
            let answer = net
                .handle(i)
                .request(to, MODULE, payload.clone(), Duration::from_secs(5))
                .await
                .unwrap();
            assert_eq!(answer, payload);
        }
    }
    let all = net
        .wait_for(Duration::from_secs(5), |_| {
            counts
                .iter()
                .all(|c| c.load(std::sync::atomic::Ordering::SeqCst) == 2)
        })
        .await;
    assert!(all, "every node gets one message from each other node");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_times_out_when_the_handler_never_answers() {
    let net = LocalNet::start(LocalNetOptions::new(2)).await.unwrap();
    net.connect(0, 1);
    assert!(
        net.wait_for(Duration::from_secs(10), LocalNet::is_full_mesh)
            .await
    );
    // Keep every request without answering it.
    let mut inbox = net.handle(1).register(MODULE, 16);
    let (keep_tx, mut keep_rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        while let Some(m) = inbox.recv().await {
            let _ = keep_tx.send(m).await;
        }
    });
    let r = net
        .handle(0)
        .request(
            net.handle(1).node_id(),
            MODULE,
            Bytes::new(),
            Duration::from_millis(200),
        )
        .await;
    assert_eq!(r, Err(RequestError::Timeout(Duration::from_millis(200))));
    assert!(keep_rx.recv().await.is_some(), "the request did arrive");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_to_a_module_without_handler_fails_at_once() {
    let net = LocalNet::start(LocalNetOptions::new(2)).await.unwrap();
    net.connect(0, 1);
    assert!(
        net.wait_for(Duration::from_secs(10), LocalNet::is_full_mesh)
            .await
    );
    let r = net
        .handle(0)
        .request(
            net.handle(1).node_id(),
            999,
            Bytes::new(),
            Duration::from_secs(30),
        )
        .await;
    match r {
        Err(RequestError::Remote(text)) => assert!(text.contains("999"), "{text}"),
        other => panic!("expected a remote error, got {other:?}"),
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_from_another_ca_is_refused_and_honest_nodes_keep_working() {
    let net = LocalNet::start(LocalNetOptions::new(2)).await.unwrap();
    net.connect(0, 1);
    assert!(
        net.wait_for(Duration::from_secs(10), LocalNet::is_full_mesh)
            .await
    );
    let mut events = net.handle(0).events();

    // A node of a different chain, configured to dial node 0.
    let other = tempfile::tempdir().unwrap();
    let g = generate_node_files(other.path(), 1, Curve::Secp256k1).unwrap();
    let mut cfg = config_for(&g[0]);
    cfg.p2p.peers = vec![net.addr(0)];
    let stranger = Node::start(cfg, None).await.unwrap();

    let refused = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(PeerEvent::Refused { reason, .. }) = events.recv().await {
                return reason;
            }
        }
    })
    .await
    .expect("node 0 reports the refusal");
    // As TLS server, node 0 hears the stranger reject its chain first; either side of the
    // refusal names the certificate problem.
    assert!(
        matches!(&refused, RefusalReason::PeerAlert(alert) if alert.contains("unknown CA"))
            || matches!(refused, RefusalReason::CertificateNotVerified { .. }),
        "{refused}"
    );
    // The stranger says why in its peer list: our chain does not verify against its CA.
    let stranger_handle = stranger.handle();
    let told = wait_until(Duration::from_secs(10), || {
        matches!(
            stranger_handle.peers().targets()[0].last_error,
            Some(TargetError::Connect(ConnectError::Refused(
                RefusalReason::CertificateNotVerified { .. }
            )))
        )
    })
    .await;
    assert!(told, "{:?}", stranger_handle.peers().targets());
    assert!(stranger_handle.peers().sessions().is_empty());
    assert!(net.has_peers(0, 1), "the stranger never joins");
    let answer = net
        .handle(1)
        .request(
            net.handle(0).node_id(),
            1234,
            Bytes::new(),
            Duration::from_secs(5),
        )
        .await;
    assert!(
        matches!(answer, Err(RequestError::Remote(_))),
        "honest link still answers"
    );
    stranger.shutdown().await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_without_certificate_is_refused() {
    let net = LocalNet::start(LocalNetOptions::new(1)).await.unwrap();
    let mut events = net.handle(0).events();
    let tcp = TcpStream::connect(net.addr(0)).await.unwrap();
    let mut b = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls()).unwrap();
    b.set_verify(openssl::ssl::SslVerifyMode::NONE);
    b.set_groups_list("X25519:P-256:secp256k1").unwrap();
    let ssl = b.build().configure().unwrap().into_ssl("node").unwrap();
    let mut s = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
    let connected = std::pin::Pin::new(&mut s).connect().await;
    // Depending on the TLS version the refusal shows at connect or at the first read.
    if connected.is_ok() {
        let mut buf = [0u8; 16];
        let r = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await;
        assert!(
            matches!(r, Ok(0) | Err(_)),
            "no data for an unauthenticated client"
        );
    }
    let reason = chainmesh_testkit::next_refusal(&mut events).await;
    assert_eq!(reason, RefusalReason::NoCertificate, "{reason}");
    assert!(net.handle(0).peers().sessions().is_empty());
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packet_closes_only_that_connection() {
    let net = LocalNet::start(LocalNetOptions::new(3)).await.unwrap();
    net.connect(0, 1);
    assert!(
        net.wait_for(Duration::from_secs(10), |n| n.has_peers(0, 1))
            .await
    );
    let mut events = net.handle(0).events();

    // Act as a second, hand-written node with a valid certificate of this chain.
    let mut raw = RawPeer::dial_as(&net, 2, 0).await.unwrap();
    assert_eq!(raw.peer, net.handle(0).node_id());
    raw.handshake().await.unwrap();
    // Length 5: smaller than the 14-byte header.
    let mut bad = BytesMut::new();
    bad.put_u32(5);
    bad.put_slice(&[0; 10]);
    raw.send_raw(&bad).await.unwrap();

    let reason = chainmesh_testkit::next_disconnect(&mut events, &net.handle(2).node_id()).await;
    assert!(
        matches!(reason, CloseReason::Protocol(ref m) if m.contains("Length")),
        "{reason:?}"
    );
    // The honest link is untouched.
    assert!(net.has_peers(1, 1));
    let r = net
        .handle(1)
        .request(
            net.handle(0).node_id(),
            4321,
            Bytes::new(),
            Duration::from_secs(5),
        )
        .await;
    assert!(matches!(r, Err(RequestError::Remote(_))), "{r:?}");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_listing_its_own_address_stops_dialing_itself() {
    let net = LocalNet::start(LocalNetOptions::new(1)).await.unwrap();
    let me = net.addr(0);
    net.handle(0).peers().add_target(&me);
    let stopped = net
        .wait_for(Duration::from_secs(5), |n| {
            matches!(
                n.handle(0).peers().targets()[0].state,
                chainmesh::peers::TargetState::Itself
            )
        })
        .await;
    assert!(stopped, "{:?}", net.handle(0).peers().targets());
    assert!(net.handle(0).peers().sessions().is_empty());
    net.shutdown().await;
}
