//! The client against a small in-test channel node that answers frames as the protocol notes
//! say a node does (one node, no failover), over real TLS on 127.0.0.1.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::{Mutex, RwLock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::*;
use crate::identity::{Curve, NetworkCa};
use crate::wire::ChannelDecoder;

/// What the test node saw and holds.
#[derive(Default)]
struct NodeState {
    next_conn: u64,
    conns: HashMap<u64, NodeConn>,
    /// Unicasts pushed to a subscriber, by seq: the publisher's connection.
    waiting: HashMap<ChannelSeq, u64>,
    /// Every 0x32's topics, in order.
    subscribes: Vec<Vec<String>>,
    heartbeats: u64,
}

struct NodeConn {
    topics: Vec<String>,
    tx: mpsc::UnboundedSender<Bytes>,
    hang_up: bool,
}

struct TestNode {
    addr: SocketAddr,
    state: Arc<Mutex<NodeState>>,
    ca: NetworkCa,
}

fn answer(pack: &ChannelPack, result: i32, data: Bytes) -> Bytes {
    let mut a = pack.answer(ChannelType::AMOP_RESPONSE, result, data);
    a.kind = if pack.kind == ChannelType::RPC {
        ChannelType::RPC
    } else {
        ChannelType::AMOP_RESPONSE
    };
    a.to_bytes(u32::MAX).unwrap()
}

/// The node's side of one frame from connection `from`.
fn on_frame(st: &mut NodeState, from: u64, pack: ChannelPack, raw: Bytes) {
    let send = |st: &NodeState, to: u64, frame: Bytes| {
        if let Some(c) = st.conns.get(&to) {
            let _ = c.tx.send(frame);
        }
    };
    let holders = |st: &NodeState, topic: &str| -> Vec<u64> {
        let mut ids: Vec<u64> = st
            .conns
            .iter()
            .filter(|(_, c)| c.topics.iter().any(|t| t == topic))
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        ids
    };
    match pack.kind {
        ChannelType::SUBSCRIBE => {
            let topics: Vec<String> = serde_json::from_slice(&pack.data).unwrap();
            st.subscribes.push(topics.clone());
            if let Some(c) = st.conns.get_mut(&from) {
                c.topics = topics;
            }
        }
        ChannelType::HEARTBEAT => st.heartbeats += 1,
        ChannelType::AMOP_REQUEST => {
            let topic = amop_topic_of(&pack);
            match holders(st, &topic).first() {
                None => send(st, from, answer(&pack, 100, Bytes::new())),
                Some(&to) => {
                    st.waiting.insert(pack.seq, from);
                    send(st, to, raw);
                }
            }
        }
        ChannelType::AMOP_RESPONSE => {
            if let Some(publisher) = st.waiting.remove(&pack.seq) {
                send(st, publisher, raw);
            }
        }
        ChannelType::AMOP_MULTICAST => {
            for to in holders(st, &amop_topic_of(&pack)) {
                send(st, to, raw.clone());
            }
            send(st, from, answer(&pack, 0, pack.data.clone()));
        }
        ChannelType::RPC => {
            let req: serde_json::Value = serde_json::from_slice(&pack.data).unwrap();
            let id = req["id"].clone();
            let body = match req["method"].as_str() {
                Some("getBlockNumber") => {
                    serde_json::json!({"jsonrpc": "2.0", "id": id, "result": "0x1"})
                }
                Some("silent") => return,
                Some("hangUp") => {
                    if let Some(c) = st.conns.get_mut(&from) {
                        c.hang_up = true;
                        // Wakes the connection's task to notice.
                        let _ = c.tx.send(Bytes::new());
                    }
                    return;
                }
                _ => serde_json::json!({"jsonrpc": "2.0", "id": id,
                    "error": {"code": -32601, "message": "Method not found"}}),
            };
            send(
                st,
                from,
                answer(&pack, 0, serde_json::to_vec(&body).unwrap().into()),
            );
        }
        _ => {}
    }
}

fn amop_topic_of(pack: &ChannelPack) -> String {
    split_amop(&pack.data).unwrap().0.to_string()
}

impl TestNode {
    async fn start() -> TestNode {
        let ca = NetworkCa::generate(Curve::Secp256k1).unwrap();
        let node = ca.issue_node("node0").unwrap().identity().unwrap();
        let tls = TlsContext::new(&node, Arc::new(RwLock::new(Admission::default()))).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(NodeState::default()));
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (tls, st) = (tls.clone(), st.clone());
                tokio::spawn(async move {
                    let Ok((mut stream, _)) = tls.accept(tcp).await else {
                        return;
                    };
                    let (tx, mut rx) = mpsc::unbounded_channel();
                    let id = {
                        let mut s = st.lock();
                        s.next_conn += 1;
                        let id = s.next_conn;
                        s.conns.insert(
                            id,
                            NodeConn {
                                topics: Vec::new(),
                                tx,
                                hang_up: false,
                            },
                        );
                        id
                    };
                    let mut decoder = ChannelDecoder::new(1 << 20);
                    let mut buf = BytesMut::new();
                    loop {
                        tokio::select! {
                            n = stream.read_buf(&mut buf) => {
                                if !matches!(n, Ok(n) if n > 0) { break; }
                                while let Ok(Some((pack, raw))) = decoder.decode(&mut buf) {
                                    on_frame(&mut st.lock(), id, pack, raw);
                                }
                            }
                            Some(frame) = rx.recv() => {
                                if st.lock().conns.get(&id).is_some_and(|c| c.hang_up) { break; }
                                if stream.write_all(&frame).await.is_err() { break; }
                            }
                        }
                    }
                    st.lock().conns.remove(&id);
                });
            }
        });
        TestNode { addr, state, ca }
    }

    async fn client(&self) -> Client {
        let sdk = self.ca.issue_sdk().unwrap().identity().unwrap();
        Client::connect(&self.addr.to_string(), &sdk, ClientOptions::default())
            .await
            .unwrap()
    }

    fn last_subscribe(&self) -> Option<Vec<String>> {
        self.state.lock().subscribes.last().cloned()
    }
}

/// Waits for `cond`, polling; fails after 10 s.
async fn until(mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "condition not met");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("finished in time")
}

#[test]
fn seqs_are_32_lowercase_hex_characters_and_never_repeat() {
    let gen = SeqGen::new();
    let seqs: BTreeSet<ChannelSeq> = (0..10_000).map(|_| gen.next()).collect();
    assert_eq!(seqs.len(), 10_000);
    for s in &seqs {
        assert!(
            s.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')),
            "{s:?}"
        );
    }
    // Two clients on one node draw different halves.
    assert_ne!(SeqGen::new().next()[..16], gen.next()[..16]);
}

#[test]
fn the_topic_set_sent_is_the_union_of_live_subscriptions() {
    let mut subs = Subs::default();
    let (tx, _rx) = mpsc::channel(1);
    let topics = |t: &[&str]| t.iter().map(|s| s.to_string()).collect();
    subs.entries.insert(
        1,
        SubEntry {
            topics: topics(&["a", "b"]),
            tx: tx.clone(),
        },
    );
    subs.entries.insert(
        2,
        SubEntry {
            topics: topics(&["b", "c"]),
            tx,
        },
    );
    assert_eq!(
        subs.union().into_iter().collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    let frame = subs.subscribe_frame(ZERO).unwrap();
    let pack = ChannelPack::decode_exact(&frame, u32::MAX).unwrap();
    assert_eq!(pack.kind, ChannelType::SUBSCRIBE);
    assert_eq!(&pack.data[..], br#"["a","b","c"]"#);
    subs.entries.remove(&1);
    assert_eq!(subs.union().into_iter().collect::<Vec<_>>(), ["b", "c"]);
}

const ZERO: ChannelSeq = crate::wire::ZERO_SEQ;

#[test]
fn answers_map_to_typed_outcomes() {
    let ack = |result: i32, data: &'static [u8]| {
        let mut p = ChannelPack::new(ChannelType::AMOP_RESPONSE, ZERO, Bytes::from_static(data));
        p.result = result;
        PublishOutcome::from_answer(p)
    };
    assert_eq!(
        ack(0, b"\x03t1ack:hello"),
        PublishOutcome::Acked {
            result: 0,
            topic: "t1".into(),
            payload: Bytes::from_static(b"ack:hello")
        }
    );
    assert_eq!(ack(100, b""), PublishOutcome::NoSubscriber);
    assert_eq!(ack(104, b"\x03t1hello"), PublishOutcome::Failed(104));
    assert_eq!(ack(103, b""), PublishOutcome::Failed(103));
    // A subscriber's own result, and data that is not AMOP data, come through as they are.
    assert_eq!(
        ack(7, b""),
        PublishOutcome::Acked {
            result: 7,
            topic: String::new(),
            payload: Bytes::new()
        }
    );
}

#[test]
fn rpc_answers_give_their_result_or_their_error() {
    assert_eq!(
        rpc_result(br#"{"jsonrpc":"2.0","id":1,"result":"0x1"}"#).unwrap(),
        serde_json::json!("0x1")
    );
    match rpc_result(br#"{"id":1,"error":{"code":-32601,"message":"Method not found"}}"#) {
        Err(ClientError::Rpc { code, message }) => {
            assert_eq!((code, message.as_str()), (-32601, "Method not found"))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(rpc_result(b"{}"), Err(ClientError::BadAnswer(_))));
    assert!(matches!(
        rpc_result(b"nope"),
        Err(ClientError::BadAnswer(_))
    ));
}

#[tokio::test]
async fn a_unicast_is_acked_by_its_subscriber_byte_for_byte() {
    let node = TestNode::start().await;
    let sub_client = node.client().await;
    let publisher = node.client().await;
    let mut sub = sub_client.subscribe(["t1"]).unwrap();
    until(|| node.last_subscribe() == Some(vec!["t1".into()])).await;

    let acker = tokio::spawn(async move {
        let msg = sub.recv().await.unwrap();
        assert_eq!(
            (msg.kind, msg.topic.as_str(), &msg.payload[..]),
            (AmopKind::Unicast, "t1", &b"hello"[..])
        );
        msg.ack(b"ack:hello").unwrap();
        sub
    });
    let outcome = within(publisher.publish("t1", b"hello", Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        PublishOutcome::Acked {
            result: 0,
            topic: "t1".into(),
            payload: Bytes::from_static(b"ack:hello")
        }
    );
    let sub = acker.await.unwrap();
    drop(sub);
}

#[tokio::test]
async fn a_unicast_without_subscriber_is_no_subscriber_and_an_unanswered_one_times_out() {
    let node = TestNode::start().await;
    let client = node.client().await;
    let outcome = within(client.publish("nobody", b"x", Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(outcome, PublishOutcome::NoSubscriber);

    // A subscriber that never acks: the test node has no failover, so only the timeout ends it.
    let _sub = client.subscribe(["quiet"]).unwrap();
    until(|| node.last_subscribe() == Some(vec!["quiet".into()])).await;
    let outcome = within(client.publish("quiet", b"x", Duration::from_millis(200)))
        .await
        .unwrap();
    assert_eq!(outcome, PublishOutcome::TimedOut);
    assert!(
        client.conn.shared.waiters.lock().map.is_empty(),
        "the waiter is gone"
    );
}

#[tokio::test]
async fn a_multicast_reaches_every_subscription_and_a_unicast_only_one() {
    let node = TestNode::start().await;
    let client = node.client().await;
    let other = node.client().await;
    let mut a = client.subscribe(["m"]).unwrap();
    let mut b = client.subscribe(["m", "x"]).unwrap();
    let mut c = other.subscribe(["m"]).unwrap();
    until(|| {
        node.state
            .lock()
            .conns
            .values()
            .filter(|c| !c.topics.is_empty())
            .count()
            == 2
    })
    .await;

    assert_eq!(within(other.multicast("m", b"all")).await.unwrap(), 0);
    for s in [&mut a, &mut b, &mut c] {
        let m = within(s.recv()).await.unwrap();
        assert_eq!((m.kind, &m.payload[..]), (AmopKind::Multicast, &b"all"[..]));
        assert!(matches!(m.ack(b"no"), Err(ClientError::NotUnicast)));
    }
    // A multicast with no subscriber is still answered 0.
    assert_eq!(within(client.multicast("nobody", b"x")).await.unwrap(), 0);

    // The node pushes a unicast to the session; only the older subscription gets it.
    let publish = other.publish("x", b"one", Duration::from_secs(10));
    let (outcome, got) = within(async {
        tokio::join!(publish, async {
            let m = b.recv().await.unwrap();
            m.ack(b"ok").unwrap();
            m
        })
    })
    .await;
    assert_eq!(&got.payload[..], b"one");
    assert!(matches!(
        outcome.unwrap(),
        PublishOutcome::Acked { result: 0, .. }
    ));
    let publish = other.publish("m", b"two", Duration::from_secs(10));
    let (outcome, got) = within(async {
        tokio::join!(publish, async {
            // Session `other` subscribed later than `client` on the node, so the node picks
            // `client`, and there subscription `a` is the older of the two holding "m".
            let m = a.recv().await.unwrap();
            m.ack(b"ok").unwrap();
            m
        })
    })
    .await;
    assert_eq!(&got.payload[..], b"two");
    assert!(matches!(outcome.unwrap(), PublishOutcome::Acked { .. }));
    assert!(
        b.rx.try_recv().is_err(),
        "only one subscription got the unicast"
    );
}

#[tokio::test]
async fn the_node_always_holds_the_union_of_live_subscriptions() {
    let node = TestNode::start().await;
    let client = node.client().await;
    let a = client.subscribe(["a"]).unwrap();
    let b = client.subscribe(["b", "a"]).unwrap();
    until(|| node.last_subscribe() == Some(vec!["a".into(), "b".into()])).await;
    drop(b);
    until(|| node.last_subscribe() == Some(vec!["a".into()])).await;
    drop(a);
    until(|| node.last_subscribe() == Some(vec![])).await;
    assert!(matches!(
        client.subscribe([""]),
        Err(ClientError::Frame(ChannelError::TopicLength { len: 0 }))
    ));
}

#[tokio::test]
async fn rpc_calls_are_answered_by_seq() {
    let node = TestNode::start().await;
    let client = node.client().await;
    let (n, missing) = within(async {
        tokio::join!(
            client.rpc("getBlockNumber", serde_json::json!([1])),
            client.rpc("noSuchMethod", serde_json::json!([]))
        )
    })
    .await;
    assert_eq!(n.unwrap(), serde_json::json!("0x1"));
    assert!(matches!(
        missing,
        Err(ClientError::Rpc { code: -32601, .. })
    ));
}

#[tokio::test]
async fn a_session_that_ends_fails_its_waiters_and_ends_its_subscriptions() {
    let node = TestNode::start().await;
    let client = node.client().await;
    let mut sub = client.subscribe(["t"]).unwrap();
    until(|| node.last_subscribe().is_some()).await;
    let silent = client.rpc("silent", serde_json::json!([]));
    let hang_up = client.rpc("hangUp", serde_json::json!([]));
    // Both end well before the 10 s request timeout, with an error naming the session's end.
    let (silent, hang_up) = within(async { tokio::join!(silent, hang_up) }).await;
    assert!(
        matches!(silent, Err(ClientError::Closed { .. })),
        "{silent:?}"
    );
    assert!(
        matches!(hang_up, Err(ClientError::Closed { .. })),
        "{hang_up:?}"
    );
    assert!(within(sub.recv()).await.is_none());
    let later = within(client.publish("t", b"x", Duration::from_secs(10))).await;
    assert!(
        matches!(later, Err(ClientError::Closed { .. })),
        "{later:?}"
    );
    assert!(client.is_closed());
    assert!(matches!(
        client.subscribe(["t"]),
        Err(ClientError::Closed { .. })
    ));
}

#[tokio::test]
async fn a_quiet_session_sends_heartbeats() {
    let node = TestNode::start().await;
    let sdk = node.ca.issue_sdk().unwrap().identity().unwrap();
    let opts = ClientOptions {
        heartbeat_interval: Duration::from_millis(100),
        ..ClientOptions::default()
    };
    let _client = Client::connect(&node.addr.to_string(), &sdk, opts)
        .await
        .unwrap();
    until(|| node.state.lock().heartbeats >= 2).await;
}

#[tokio::test]
async fn connect_errors_name_the_address() {
    let node = TestNode::start().await;
    // A certificate of another chain: the node refuses it during the handshake.
    let stranger = NetworkCa::generate(Curve::Secp256k1)
        .unwrap()
        .issue_sdk()
        .unwrap()
        .identity()
        .unwrap();
    let addr = node.addr.to_string();
    let e = Client::connect(&addr, &stranger, ClientOptions::default())
        .await
        .unwrap_err();
    // The refusal may surface in the handshake or as the session's first read.
    match e {
        ClientError::Tls { addr: a, .. } => assert_eq!(a, addr),
        ClientError::Connect { addr: a, .. } => assert_eq!(a, addr),
        other => panic!("{other}"),
    }

    let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let free_addr = free.local_addr().unwrap().to_string();
    drop(free);
    let sdk = node.ca.issue_sdk().unwrap().identity().unwrap();
    let e = Client::connect(&free_addr, &sdk, ClientOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Connect { .. }), "{e}");
    assert!(e.to_string().contains(&free_addr), "{e}");
}

#[test]
fn a_unicast_goes_to_one_subscription_with_room_and_a_multicast_to_all() {
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let session = session::new_framed_session::<ChannelFraming>(
        0,
        SessionInfo {
            peer: NodeId::from_slice(&[1; 64]).unwrap(),
            addr,
            local_addr: addr,
            direction: Direction::Outbound,
            version: 0,
            peer_listen_port: 0,
            peer_max_packet: 1024,
        },
        1024,
    );
    let msg = |kind| AmopMessage {
        topic: "t".into(),
        payload: Bytes::from_static(b"p"),
        kind,
        seq: ZERO,
        session: session.clone(),
    };
    let mut subs = Subs::default();
    let mut rxs = Vec::new();
    for id in 0..3 {
        let (tx, rx) = mpsc::channel(1);
        let topics = ["t".to_string()].into_iter().collect();
        subs.entries.insert(id, SubEntry { topics, tx });
        rxs.push(rx);
    }
    // The oldest takes the first unicast; being full, the second goes to the next one.
    subs.deliver(msg(AmopKind::Unicast));
    subs.deliver(msg(AmopKind::Unicast));
    assert!(rxs[0].try_recv().is_ok());
    assert!(rxs[1].try_recv().is_ok());
    assert!(rxs[2].try_recv().is_err());
    assert_eq!(subs.dropped, 0);
    subs.deliver(msg(AmopKind::Multicast));
    for rx in &mut rxs {
        assert_eq!(rx.try_recv().unwrap().kind, AmopKind::Multicast);
    }
    // Every queue full: counted, not queued.
    for _ in 0..2 {
        subs.deliver(msg(AmopKind::Multicast));
    }
    assert_eq!(subs.dropped, 1);
}
