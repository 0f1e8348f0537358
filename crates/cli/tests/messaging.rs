//! Messaging end to end over real TLS on 127.0.0.1: unicast and request/response relayed
//! along learnt routes, rerouting, typed errors, large and compressed payloads,
//! backpressure, broadcast and multicast on ring and star topologies, and the admin API and
//! CLI commands that send and ping.
//!
//! Tests wait on conditions, never on fixed sleeps, and assert nothing about wall-clock time.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use chainmesh::config::LimitsConfig;
use chainmesh::node::MessageKind;
use chainmesh::{Message, NodeHandle, NodeId, RequestError, SendError};
use chainmesh_testkit::{LocalNet, LocalNetOptions};
use tokio::sync::mpsc;

mod common;

/// Generous bound for anything to happen; only reached when something is broken.
const WAIT: Duration = Duration::from_secs(20);
const MODULE: u16 = 100;

async fn net(n: usize) -> LocalNet {
    LocalNet::start(LocalNetOptions::for_traffic(n))
        .await
        .expect("local network starts")
}

/// Two linked nodes, each with a route to the other.
async fn pair() -> (LocalNet, NodeHandle, NodeHandle) {
    let net = net(2).await;
    net.connect(0, 1);
    assert!(net.wait_for(WAIT, |n| n.hops(0, 1) == Some(1)).await);
    let (a, b) = (net.handle(0), net.handle(1));
    (net, a, b)
}

/// The next message of an inbox (`recv(inbox.recv())`, for module inboxes and [`echo`]'s
/// alike), within the wait bound.
async fn recv(next: impl std::future::Future<Output = Option<Message>>) -> Message {
    tokio::time::timeout(WAIT, next)
        .await
        .expect("a message within the wait bound")
        .expect("inbox open")
}

/// Answers every request to `module` on `node` with its payload; forwards one-way messages
/// to the returned receiver.
fn echo(node: &NodeHandle, module: u16) -> mpsc::UnboundedReceiver<Message> {
    let (tx, rx) = mpsc::unbounded_channel();
    chainmesh_testkit::serve_echo(node, module, 1024, move |msg| {
        // The test may have stopped listening; the echo goes on for the requests.
        let _ = tx.send(msg);
    });
    rx
}

/// Waits until every node reaches every other at the distance `distance(i, j)` says.
async fn wait_all_routes(net: &LocalNet, distance: impl Fn(usize, usize) -> u8) {
    let n = net.len();
    assert!(
        net.wait_for(WAIT, |net| (0..n).all(|i| (0..n)
            .filter(|j| *j != i)
            .all(|j| net.hops(i, j) == Some(distance(i, j)))))
            .await,
        "routes did not converge"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn line_relays_and_reroutes_when_a_link_moves() {
    // A-B-C-D, each node configured only with its neighbour.
    let net = net(4).await;
    net.connect_line();
    assert!(net.wait_for(WAIT, |n| n.hops(0, 3) == Some(3)).await);
    assert!(net.wait_for(WAIT, |n| n.hops(3, 0) == Some(3)).await);
    let (a, d) = (net.handle(0), net.handle(3));
    let mut inbox = echo(&d, MODULE);

    a.send(d.node_id(), MODULE, Bytes::from_static(b"over three links"))
        .await
        .unwrap();
    let msg = recv(inbox.recv()).await;
    assert_eq!(msg.payload.as_ref(), b"over three links");
    assert_eq!(msg.src, a.node_id());
    assert_eq!(msg.hops, 3);
    assert_eq!(msg.kind, MessageKind::Unicast);

    let answer = a
        .request(d.node_id(), MODULE, Bytes::from_static(b"ping"), WAIT)
        .await
        .unwrap();
    assert_eq!(answer.as_ref(), b"ping");
    let ping = a.ping(d.node_id(), Bytes::new(), WAIT).await.unwrap();
    assert_eq!(ping.hops, 3);
    let route = a
        .routes()
        .into_iter()
        .find(|r| r.dst == d.node_id())
        .unwrap();
    assert_eq!(route.next_hop, net.handle(1).node_id());

    // Cut B-C both ways: A can no longer reach C or D.
    net.handle(1).peers().remove_target(&net.addr(2));
    net.handle(2).peers().remove_target(&net.addr(1));
    assert!(
        net.wait_for(WAIT, |n| n.hops(0, 3).is_none() && n.hops(0, 2).is_none())
            .await
    );
    assert_eq!(
        a.send(d.node_id(), MODULE, Bytes::new()).await,
        Err(SendError::Unreachable(d.node_id()))
    );

    // Add A-C at runtime: the route to D now goes through C.
    net.connect(0, 2);
    assert!(net.wait_for(WAIT, |n| n.hops(0, 3) == Some(2)).await);
    assert!(net.wait_for(WAIT, |n| n.hops(3, 0) == Some(2)).await);
    a.send(d.node_id(), MODULE, Bytes::from_static(b"rerouted"))
        .await
        .unwrap();
    let msg = recv(inbox.recv()).await;
    assert_eq!(msg.payload.as_ref(), b"rerouted");
    assert_eq!(msg.hops, 2);
    let ping = a.ping(d.node_id(), Bytes::new(), WAIT).await.unwrap();
    assert_eq!(ping.hops, 2);
    // B still reaches D, now through A.
    assert!(net.wait_for(WAIT, |n| n.hops(1, 3) == Some(3)).await);
    let b = net.handle(1);
    let answer = b
        .request(d.node_id(), MODULE, Bytes::from_static(b"from B"), WAIT)
        .await
        .unwrap();
    assert_eq!(answer.as_ref(), b"from B");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_fail_with_typed_errors() {
    let mut opts = LocalNetOptions::for_traffic(3);
    opts.tweak = Some(|_, cfg| cfg.p2p.max_packet_size = 64 * 1024);
    let net = LocalNet::start(opts).await.unwrap();
    net.connect_line();
    assert!(net.wait_for(WAIT, |n| n.hops(0, 2) == Some(2)).await);
    let (a, b, c) = (net.handle(0), net.handle(1), net.handle(2));

    // Timeout: C's handler keeps the request and never answers.
    let mut held = c.register(MODULE, 16);
    let r = a
        .request(
            c.node_id(),
            MODULE,
            Bytes::new(),
            Duration::from_millis(200),
        )
        .await;
    assert_eq!(r, Err(RequestError::Timeout(Duration::from_millis(200))));
    let _kept = recv(held.recv()).await;

    // No handler for the module: the remote error comes back at once.
    let r = a.request(c.node_id(), MODULE + 1, Bytes::new(), WAIT).await;
    assert_eq!(
        r,
        Err(RequestError::Remote(format!(
            "no handler for module {}",
            MODULE + 1
        )))
    );

    // Unknown destination.
    let nowhere = chainmesh_testkit::id(7);
    let r = a.request(nowhere, MODULE, Bytes::new(), WAIT).await;
    assert_eq!(r, Err(RequestError::Send(SendError::Unreachable(nowhere))));
    assert_eq!(
        a.try_send(nowhere, MODULE, Bytes::new()),
        Err(SendError::Unreachable(nowhere))
    );

    // Oversized payload, checked before compression.
    let big = Bytes::from(vec![0u8; 64 * 1024]);
    let r = a.request(c.node_id(), MODULE, big.clone(), WAIT).await;
    assert!(
        matches!(r, Err(RequestError::Send(SendError::TooLarge { max, .. })) if max == 64 * 1024),
        "{r:?}"
    );
    assert!(matches!(
        a.send(c.node_id(), MODULE, big).await,
        Err(SendError::TooLarge { .. })
    ));

    // The relayed destination becomes unreachable while a request waits.
    let waiting = request_in_background(&a, c.node_id());
    let _kept2 = recv(held.recv()).await;
    b.peers().remove_target(&net.addr(2));
    let r = tokio::time::timeout(WAIT, waiting).await.unwrap().unwrap();
    assert_eq!(r, Err(RequestError::Unreachable(c.node_id())));

    // A direct neighbour disconnects while a request waits.
    let mut held_b = b.register(MODULE, 16);
    let waiting = request_in_background(&a, b.node_id());
    let _kept3 = recv(held_b.recv()).await;
    a.peers().remove_target(&net.addr(1));
    let r = tokio::time::timeout(WAIT, waiting).await.unwrap().unwrap();
    assert_eq!(r, Err(RequestError::PeerDisconnected(b.node_id())));
    net.shutdown().await;
}

/// A request from `from` to `to` in a task of its own, so that the test can break the path
/// while the request waits.
fn request_in_background(
    from: &NodeHandle,
    to: NodeId,
) -> tokio::task::JoinHandle<Result<Bytes, RequestError>> {
    let from = from.clone();
    tokio::spawn(async move { from.request(to, MODULE, Bytes::new(), WAIT).await })
}

fn bytes_out(from: &NodeHandle, to: &NodeId) -> u64 {
    from.peers()
        .session(to)
        .map(|s| s.stats.bytes_out.load(std::sync::atomic::Ordering::Relaxed))
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_and_compressed_payloads_round_trip() {
    let net = net(3).await;
    net.connect_line();
    assert!(net.wait_for(WAIT, |n| n.hops(0, 2) == Some(2)).await);
    let (a, b, c) = (net.handle(0), net.handle(1), net.handle(2));
    let _inbox = echo(&c, MODULE);

    // 16 MiB of random bytes: incompressible, sent as is, relayed through B, echoed back.
    let random: Vec<u8> = (0..16 << 20).map(|_| rand::random::<u8>()).collect();
    let random = Bytes::from(random);
    let before = bytes_out(&a, &b.node_id());
    let answer = a
        .request(c.node_id(), MODULE, random.clone(), Duration::from_secs(60))
        .await
        .unwrap();
    assert!(answer == random, "16 MiB payload came back changed");
    assert!(bytes_out(&a, &b.node_id()) - before >= 16 << 20);

    // 4 MiB of text: compressed on the wire (far fewer bytes out), intact on arrival.
    let text: Vec<u8> = b"block 1234 tx 5678 "
        .iter()
        .copied()
        .cycle()
        .take(4 << 20)
        .collect();
    let text = Bytes::from(text);
    let before = bytes_out(&a, &b.node_id());
    let answer = a
        .request(c.node_id(), MODULE, text.clone(), WAIT)
        .await
        .unwrap();
    assert!(answer == text, "compressible payload came back changed");
    assert!(bytes_out(&a, &b.node_id()) - before < 1 << 20);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_receiver_bounds_the_senders_queue() {
    let (net, a, b) = pair().await;
    // B's handler does not read: its queue of 1 fills, B stops reading from A, A's queue
    // fills up to its byte bound.
    let mut stuck = b.register(MODULE, 1);
    let chunk: Bytes = (0..64 * 1024)
        .map(|_| rand::random::<u8>())
        .collect::<Vec<u8>>()
        .into();
    let mut accepted = 0usize;
    let limit = 8 * LimitsConfig::default().session_queue_bytes / chunk.len();
    let full = loop {
        match a.try_send(b.node_id(), MODULE, chunk.clone()) {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < limit, "the queue never filled");
        // Give B's session time to take what the socket lets through.
        tokio::task::yield_now().await;
    };
    assert_eq!(full, SendError::QueueFull(b.node_id()));
    let session = a.peers().session(&b.node_id()).unwrap();
    assert!(session.queued_bytes() <= session.queue_capacity());
    assert_eq!(
        session.queue_capacity(),
        LimitsConfig::default().session_queue_bytes
    );
    assert!(
        session
            .stats
            .dropped_out
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );

    // A waiting send goes through once the receiver catches up, and nothing was lost.
    let waiting = {
        let a = a.clone();
        let to = b.node_id();
        let chunk = chunk.clone();
        tokio::spawn(async move { a.send(to, MODULE, chunk).await })
    };
    let mut got = 0usize;
    while got < accepted + 1 {
        let m = recv(stuck.recv()).await;
        assert_eq!(m.payload.len(), chunk.len());
        got += 1;
    }
    assert_eq!(waiting.await.unwrap(), Ok(()));
    net.shutdown().await;
}

/// Subscribes `subscribers` to topic `t` and waits until status synchronization has told
/// every node who is in `group0` (everyone) and who subscribes to `t`.
async fn membership(net: &LocalNet, subscribers: &[usize]) {
    for i in subscribers {
        assert!(net.handle(*i).subscribe("t").unwrap());
    }
    let mut want_topic: Vec<NodeId> = subscribers
        .iter()
        .map(|i| net.handle(*i).node_id())
        .collect();
    want_topic.sort();
    let mut want_group: Vec<NodeId> = (0..net.len()).map(|i| net.handle(i).node_id()).collect();
    want_group.sort();
    let synced = net
        .wait_for(WAIT, |net| {
            (0..net.len()).all(|i| {
                let st = net.handle(i).status().clone();
                let mut t = st.network_topic_subscribers("t");
                let mut g = st.network_group_members("group0");
                t.sort();
                g.sort();
                t == want_topic && g == want_group
            })
        })
        .await;
    assert!(synced, "status sync did not spread groups and topics");
}

/// Per node: payloads received on `MODULE`, in order.
struct Inboxes {
    rx: Vec<mpsc::UnboundedReceiver<Message>>,
    got: Vec<Vec<(Bytes, MessageKind, u8)>>,
}

impl Inboxes {
    fn new(net: &LocalNet) -> Self {
        let rx: Vec<_> = (0..net.len())
            .map(|i| echo(&net.handle(i), MODULE))
            .collect();
        let got = vec![Vec::new(); net.len()];
        Inboxes { rx, got }
    }

    /// Collects until every node in `nodes` has received `marker`.
    async fn until_marker(&mut self, nodes: &[usize], marker: &[u8]) {
        for &i in nodes {
            loop {
                if self.got[i].iter().any(|(p, _, _)| p.as_ref() == marker) {
                    break;
                }
                let m = tokio::time::timeout(WAIT, self.rx[i].recv())
                    .await
                    .unwrap_or_else(|_| panic!("node {i} did not get the marker"))
                    .unwrap();
                self.got[i].push((m.payload, m.kind, m.hops));
            }
        }
    }

    fn count(&self, i: usize, payload: &[u8]) -> usize {
        self.got[i]
            .iter()
            .filter(|(p, _, _)| p.as_ref() == payload)
            .count()
    }
}

/// Broadcasts and multicasts from `from` and checks each target gets each message exactly
/// once and non-subscribers none. Every message is followed by a broadcast marker, which
/// travels the same paths behind it.
async fn check_fanout(net: &LocalNet, from: usize, subscribers: &[usize], max_hops: u8) {
    let n = net.len();
    let others: Vec<usize> = (0..n).filter(|i| *i != from).collect();
    let mut inboxes = Inboxes::new(net);
    let h = net.handle(from);

    let f = h
        .broadcast("group0", MODULE, Bytes::from_static(b"to the group"))
        .await
        .unwrap();
    assert_eq!(f.queued.len(), n - 1);
    assert!(f.unreachable.is_empty() && f.dropped.is_empty());
    // Compressible and large: compressed once, relayed compressed, delivered plain.
    let big = Bytes::from(vec![b'x'; 200_000]);
    h.broadcast("group0", MODULE, big.clone()).await.unwrap();
    let f = h
        .multicast("t", MODULE, Bytes::from_static(b"to the topic"))
        .await
        .unwrap();
    let targets = subscribers.iter().filter(|s| **s != from).count();
    assert_eq!(f.queued.len(), targets);
    h.broadcast("group0", MODULE, Bytes::from_static(b"marker"))
        .await
        .unwrap();
    inboxes.until_marker(&others, b"marker").await;
    for &i in &others {
        assert_eq!(inboxes.count(i, b"to the group"), 1, "node {i}");
        assert_eq!(inboxes.count(i, &big), 1, "node {i}");
        let want = usize::from(subscribers.contains(&i));
        assert_eq!(inboxes.count(i, b"to the topic"), want, "node {i}");
        for (p, kind, hops) in &inboxes.got[i] {
            assert!(*hops >= 1 && *hops <= max_hops, "node {i}: {hops} hops");
            if p.as_ref() == b"to the topic" {
                assert_eq!(
                    *kind,
                    MessageKind::Multicast {
                        topic: "t".to_owned()
                    }
                );
            } else {
                assert_eq!(*kind, MessageKind::Broadcast);
            }
        }
    }
    assert_eq!(
        inboxes.got[from].len(),
        0,
        "the sender does not get its own"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broadcast_and_multicast_on_a_ring() {
    let net = net(6).await;
    for i in 0..6 {
        net.connect(i, (i + 1) % 6);
    }
    wait_all_routes(&net, |i, j| {
        let d = i.abs_diff(j);
        d.min(6 - d) as u8
    })
    .await;
    membership(&net, &[0, 2, 3, 5]).await;
    check_fanout(&net, 0, &[0, 2, 3, 5], 3).await;
    check_fanout(&net, 4, &[0, 2, 3, 5], 3).await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broadcast_and_multicast_on_a_star() {
    let net = net(5).await;
    for leaf in 1..5 {
        net.connect(leaf, 0);
    }
    wait_all_routes(&net, |i, j| if i == 0 || j == 0 { 1 } else { 2 }).await;
    membership(&net, &[1, 3, 4]).await;
    // From the hub: every leaf is a neighbour and gets the same bytes.
    check_fanout(&net, 0, &[1, 3, 4], 1).await;
    // From a leaf: the hub delivers and relays to the other leaves.
    check_fanout(&net, 1, &[1, 3, 4], 2).await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_to_itself_and_many_in_flight() {
    let (net, a, b) = pair().await;
    let _a_inbox = echo(&a, MODULE);
    let _b_inbox = echo(&b, MODULE);
    let answer = a
        .request(a.node_id(), MODULE, Bytes::from_static(b"me"), WAIT)
        .await
        .unwrap();
    assert_eq!(answer.as_ref(), b"me");
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let a = a.clone();
        let to = b.node_id();
        tasks.push(tokio::spawn(async move {
            let p = Bytes::from(i.to_be_bytes().to_vec());
            (a.request(to, MODULE, p.clone(), WAIT).await, p)
        }));
    }
    let mut seen = HashMap::new();
    for t in tasks {
        let (r, p) = t.await.unwrap();
        assert_eq!(r.unwrap(), p);
        *seen.entry(p).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 200);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_api_and_cli_send_ping_and_routes() {
    let mut opts = LocalNetOptions::for_traffic(3);
    opts.admin = true;
    let net = LocalNet::start(opts).await.unwrap();
    net.connect_line();
    assert!(net.wait_for(WAIT, |n| n.hops(0, 2) == Some(2)).await);
    let admin = net.admin_addr(0).unwrap().to_string();
    let token = net.admin_token(0).unwrap();
    let bearer = format!("Bearer {token}");
    let token_file = net.dir().join("admin0.token");
    std::fs::write(&token_file, &token).unwrap();
    let token_file = token_file.to_string_lossy().into_owned();
    let c = net.handle(2);
    let mut inbox = echo(&c, MODULE);

    let routes: serde_json::Value = ureq::get(&format!("http://{admin}/v1/routes"))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    let to_c = routes["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["dst"] == c.node_id().to_string())
        .unwrap();
    assert_eq!(to_c["distance"], 2);
    assert_eq!(to_c["next_hop"], net.handle(1).node_id().to_string());

    let sent: serde_json::Value = ureq::post(&format!("http://{admin}/v1/messages"))
        .header("Authorization", &bearer)
        .send_json(serde_json::json!({"to": c.node_id(), "module": MODULE, "data_hex": "c0ffee"}))
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    assert_eq!(sent["kind"], "unicast");
    let m = recv(inbox.recv()).await;
    assert_eq!(m.payload.as_ref(), [0xc0, 0xff, 0xee]);

    let ping: serde_json::Value = ureq::post(&format!("http://{admin}/v1/ping"))
        .header("Authorization", &bearer)
        .send_json(serde_json::json!({"to": c.node_id(), "size": 100}))
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    assert_eq!(ping["hops"], 2);

    let bad = ureq::post(&format!("http://{admin}/v1/messages"))
        .header("Authorization", &bearer)
        .send_json(serde_json::json!({"module": MODULE, "data": "x"}))
        .unwrap_err();
    assert!(matches!(bad, ureq::Error::StatusCode(400)), "{bad}");

    // The CLI, as an operator runs it (blocking: off the async workers).
    let cid = c.node_id().to_string();
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let out = common::chainmesh_async(args(&[
        "send",
        "--admin",
        &admin,
        "--token-file",
        &token_file,
        "--to",
        &cid,
        "--module",
        "100",
        "from the CLI",
    ]))
    .await;
    common::assert_ok(&out);
    let m = recv(inbox.recv()).await;
    assert_eq!(m.payload.as_ref(), b"from the CLI");

    let out = common::chainmesh_async(args(&[
        "ping",
        "--admin",
        &admin,
        "--token-file",
        &token_file,
        "--to",
        &cid,
        "--count",
        "2",
        "--interval-ms",
        "1",
    ]))
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert_eq!(stdout.matches("hops=2").count(), 2, "{stdout}");

    // Nothing comes back from an unknown node: non-zero exit.
    let out = common::chainmesh_async(args(&[
        "ping",
        "--admin",
        &admin,
        "--token-file",
        &token_file,
        "--to",
        &"07".repeat(64),
        "--count",
        "1",
    ]))
    .await;
    assert!(!out.status.success());
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_small_messages_all_arrive_in_order() {
    // Many small frames batched into large TLS writes that the socket takes only in part:
    // the writer must retry each blocked write with the same buffer.
    let (net, a, b) = pair().await;
    let mut inbox = b.register(MODULE, 4096);
    const N: u32 = 200_000;
    let sender = {
        let (a, to) = (a.clone(), b.node_id());
        tokio::spawn(async move {
            for i in 0..N {
                let mut p = vec![0u8; 256];
                p[..4].copy_from_slice(&i.to_be_bytes());
                a.send(to, MODULE, Bytes::from(p)).await.unwrap();
            }
        })
    };
    for i in 0..N {
        let m = recv(inbox.recv()).await;
        assert_eq!(m.payload[..4], i.to_be_bytes());
    }
    sender.await.unwrap();
    net.shutdown().await;
}

/// The bytes one unicast takes on a link: header, options in direct or full form, payload.
fn unicast_len(group: &str, direct: bool, payload: usize) -> u64 {
    let options = if direct { 4 } else { 72 + 64 };
    (14 + options + group.len() + payload) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn neighbours_send_the_direct_form_and_relays_the_full_form() {
    let net = net(3).await;
    net.connect_line();
    assert!(net.wait_for(WAIT, |n| n.hops(0, 2) == Some(2)).await);
    let (a, b, c) = (net.handle(0), net.handle(1), net.handle(2));
    let group = net.config(0).p2p.groups[0].clone();
    let mut at_b = b.register(MODULE, 256);
    let mut at_c = c.register(MODULE, 256);
    // 100 random payloads of 1000 bytes (under the compression threshold): the link's byte
    // count tells the form apart, 132 bytes a message, far beyond the odd heartbeat.
    let payload = Bytes::from((0..1000).map(|_| rand::random::<u8>()).collect::<Vec<_>>());
    let count = 100u64;
    // Status and routing packets share the link; under load a few more of them fall inside
    // the window. Half the two forms' difference still tells them apart beyond doubt.
    let slack = count * (unicast_len(&group, false, 0) - unicast_len(&group, true, 0)) / 2;

    let before = bytes_out(&a, &b.node_id());
    for _ in 0..count {
        a.send(b.node_id(), MODULE, payload.clone()).await.unwrap();
    }
    for _ in 0..count {
        let m = recv(at_b.recv()).await;
        assert_eq!(
            (m.src, m.hops),
            (a.node_id(), 1),
            "source read from the link"
        );
        assert_eq!(m.group, group);
        assert!(m.payload == payload);
    }
    let direct = bytes_out(&a, &b.node_id()) - before;
    let want = count * unicast_len(&group, true, payload.len());
    assert!(
        (want..want + slack).contains(&direct),
        "{direct} bytes for {count} direct messages, want {want}"
    );

    // To C through B: the full form, relayed byte for byte.
    let before = bytes_out(&a, &b.node_id());
    for _ in 0..count {
        a.send(c.node_id(), MODULE, payload.clone()).await.unwrap();
    }
    for _ in 0..count {
        let m = recv(at_c.recv()).await;
        assert_eq!((m.src, m.hops), (a.node_id(), 2));
    }
    let full = bytes_out(&a, &b.node_id()) - before;
    let want = count * unicast_len(&group, false, payload.len());
    assert!(
        (want..want + slack).contains(&full),
        "{full} bytes for {count} relayed messages, want {want}"
    );

    // A request and its response between neighbours, both in direct form.
    let _echo = echo(&b, MODULE + 1);
    let got = a
        .request(b.node_id(), MODULE + 1, payload.clone(), WAIT)
        .await
        .unwrap();
    assert!(got == payload);
    net.shutdown().await;
}

/// A peer that speaks only protocol version 1, played by hand over real TLS with the
/// identity of a stopped node.
/// Peers of older protocol versions: version 3 authenticates relayed packets, and a node
/// that still took version 1 or 2 would let any member relay unauthenticated traffic.
mod version_one_peer {
    use super::*;
    use bytes::BytesMut;
    use chainmesh::peers::handshake;
    use chainmesh::peers::RefusalReason;
    use chainmesh::wire::{
        DataFrame, Decoder, Ext, Handshake, Packet, PacketType, VersionRanges, MAX_PROTOCOL_VERSION,
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// Our handshake as node 1 of a test, offering versions `min` to `max`.
    fn offering(min: u16, max: u16) -> Handshake {
        Handshake {
            min_version: min,
            max_version: max,
            ..Handshake::ours(0, 1 << 20, chainmesh::peers::random_incarnation())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_peer_offering_only_versions_one_and_two_is_refused_with_the_reason() {
        let mut net = net(2).await;
        net.stop(1).await;
        let a = net.handle(0);
        let mut events = a.events();
        let (mut stream, _) = crate::common::dial_as(&net, 1, 0).await;
        let r = handshake::exchange(&mut stream, &offering(1, 2), 1 << 20, WAIT).await;
        assert!(r.is_err(), "we cannot agree either");
        let reason = chainmesh_testkit::next_refusal(&mut events).await;
        assert!(
            matches!(
                reason,
                RefusalReason::NoCommonVersion(VersionRanges {
                    ours_min: 3,
                    ours_max: 4,
                    theirs_min: 1,
                    theirs_max: 2,
                })
            ),
            "{reason}"
        );
        assert!(
            reason.to_string().contains("no common protocol version"),
            "{reason}"
        );
        assert!(a.peers().sessions().is_empty());
        net.shutdown().await;
    }

    /// Reads until the first Unicast, skipping link and status traffic.
    async fn next_unicast(
        stream: &mut chainmesh::tls::TlsStream<TcpStream>,
        buf: &mut BytesMut,
        from: NodeId,
    ) -> Packet {
        let mut decoder = Decoder::on_link(1 << 20, from);
        loop {
            while let Some(p) = decoder.decode(buf).unwrap() {
                if p.packet_type == PacketType::UNICAST {
                    return p;
                }
            }
            let n = tokio::time::timeout(WAIT, stream.read_buf(buf))
                .await
                .expect("a packet within the wait bound")
                .unwrap();
            assert!(n > 0, "node closed the link");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_peer_offering_a_wider_range_agrees_version_three_and_the_direct_form() {
        let mut net = net(2).await;
        net.stop(1).await;
        let a = net.handle(0);
        let me = net.generated(1).node_id;
        let mut inbox = a.register(MODULE, 16);
        let (mut stream, _) = crate::common::dial_as(&net, 1, 0).await;
        let agreed = handshake::exchange(&mut stream, &offering(1, 9), 1 << 20, WAIT)
            .await
            .unwrap();
        assert_eq!(agreed.version, MAX_PROTOCOL_VERSION);
        let mut buf = agreed.leftover;
        assert!(chainmesh_testkit::wait_until(WAIT, || a.peers().session(&me).is_some()).await);
        a.send(me, MODULE, Bytes::from_static(b"hi")).await.unwrap();
        let p = next_unicast(&mut stream, &mut buf, a.node_id()).await;
        assert_eq!(p.version, MAX_PROTOCOL_VERSION);
        assert!(p.ext.is_direct() && !p.ext.is_auth(), "{:?}", p.ext);
        assert_eq!(p.options.as_ref().unwrap().src, a.node_id());
        assert_eq!(&p.payload[..], b"hi");
        // And the node reads what such a peer sends it in direct form.
        let frame = DataFrame {
            version: MAX_PROTOCOL_VERSION,
            packet_type: PacketType::UNICAST,
            seq: 7,
            ext: Ext::DIRECT.with_ttl(10),
            group: "group0",
            src: &me,
            dsts: &[],
            module: MODULE,
            tags: &[],
            prefix: &[],
            payload: b"from the hand-played peer",
        }
        .encode(0);
        stream.write_all(&frame).await.unwrap();
        let m = recv(inbox.recv()).await;
        assert_eq!(
            (m.src, &m.payload[..]),
            (me, &b"from the hand-played peer"[..])
        );
        net.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_neighbours_smaller_packet_limit_is_honoured() {
    let mut opts = LocalNetOptions::for_traffic(3);
    // B accepts packets of at most 64 KiB; A and C the default 32 MiB.
    opts.tweak = Some(|i, cfg| {
        if i == 1 {
            cfg.p2p.max_packet_size = 64 * 1024;
        }
    });
    let net = LocalNet::start(opts).await.unwrap();
    net.connect_line();
    assert!(net.wait_for(WAIT, |n| n.hops(0, 2) == Some(2)).await);
    let (a, b, c) = (net.handle(0), net.handle(1), net.handle(2));
    let _echo_b = echo(&b, MODULE);
    let _echo_c = echo(&c, MODULE);
    let mut events = a.events();
    let big = Bytes::from(
        (0..100 * 1024)
            .map(|_| rand::random::<u8>())
            .collect::<Vec<_>>(),
    );

    // To B itself, and to C through B: refused at A, before anything reaches B.
    for dst in [b.node_id(), c.node_id()] {
        match a.send(dst, MODULE, big.clone()).await {
            Err(SendError::TooLarge { max, .. }) => assert_eq!(max, 64 * 1024),
            other => panic!("a 100 KiB message over a 64 KiB link: {other:?}"),
        }
        match a.request(dst, MODULE, big.clone(), WAIT).await {
            Err(RequestError::Send(SendError::TooLarge { .. })) => {}
            other => panic!("a 100 KiB request over a 64 KiB link: {other:?}"),
        }
    }
    // The links stayed up and carry what fits.
    let small = Bytes::from_static(b"fits");
    assert_eq!(
        a.request(c.node_id(), MODULE, small.clone(), WAIT)
            .await
            .unwrap(),
        small
    );
    assert!(a.peers().session(&b.node_id()).is_some());
    assert!(
        !matches!(
            events.try_recv(),
            Ok(chainmesh::peers::PeerEvent::Disconnected { .. })
        ),
        "no link was closed"
    );
    net.shutdown().await;
}
