//! Module handlers that run on the receiving task (`NodeHandle::register_handler`), between
//! real nodes: they answer requests from a neighbour, through a relay and from the node
//! itself, see one-way messages and broadcasts as a queue would, and replace (and are
//! replaced by) a queue registration of the same module.

use std::time::Duration;

use bytes::Bytes;
use chainmesh::node::{MessageKind, NodeHandle};
use chainmesh::RequestError;
use chainmesh_testkit::{LocalNet, LocalNetOptions};
use tokio::sync::mpsc;

/// Generous bound for anything to happen; only reached when something is broken.
const WAIT: Duration = Duration::from_secs(20);
const MODULE: u16 = 300;

/// `n` nodes in a line, node 0 reaching the last at `n - 1` hops.
async fn line(n: usize) -> LocalNet {
    let net = LocalNet::start(LocalNetOptions::for_traffic(n))
        .await
        .expect("local network starts");
    net.connect_line();
    let far = u8::try_from(n - 1).expect("a short line");
    assert!(
        net.wait_for(WAIT, |net| net.hops(0, n - 1) == Some(far))
            .await
    );
    net
}

/// Answers every request to `module` with `tag` followed by its payload, on the receiving
/// task; forwards one-way messages (their kind, source and hops) to the returned receiver.
fn tagged_echo(
    node: &NodeHandle,
    module: u16,
    tag: &'static [u8],
) -> mpsc::UnboundedReceiver<(MessageKind, chainmesh::NodeId, u8)> {
    let (tx, rx) = mpsc::unbounded_channel();
    node.register_handler(module, move |mut msg| match msg.take_responder() {
        Some(r) => {
            let _ = r.respond(Bytes::from([tag, &msg.payload[..]].concat()));
        }
        None => {
            let _ = tx.send((msg.kind.clone(), msg.src, msg.hops));
        }
    });
    rx
}

/// `count` requests to `to` at once, each with its own payload; checks every answer.
async fn requests_all_answered(from: &NodeHandle, to: chainmesh::NodeId, count: u32) {
    let mut tasks = Vec::new();
    for i in 0..count {
        let from = from.clone();
        tasks.push(tokio::spawn(async move {
            let p = Bytes::from(i.to_be_bytes().to_vec());
            (from.request(to, MODULE, p.clone(), WAIT).await, p)
        }));
    }
    for t in tasks {
        let (answer, p) = t.await.expect("request task");
        let answer = answer.expect("answered");
        assert_eq!(&answer[..2], b"h:");
        assert_eq!(&answer[2..], &p[..]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_answers_requests_from_a_neighbour_through_a_relay_and_from_itself() {
    let net = line(3).await;
    let (a, b, c) = (net.handle(0), net.handle(1), net.handle(2));
    let _a_seen = tagged_echo(&a, MODULE, b"h:");
    let _b_seen = tagged_echo(&b, MODULE, b"h:");
    let mut c_seen = tagged_echo(&c, MODULE, b"h:");

    requests_all_answered(&a, b.node_id(), 200).await;
    requests_all_answered(&a, c.node_id(), 200).await;
    requests_all_answered(&a, a.node_id(), 10).await;

    a.send(c.node_id(), MODULE, Bytes::from_static(b"one way"))
        .await
        .expect("queued");
    let seen = tokio::time::timeout(WAIT, c_seen.recv())
        .await
        .expect("the one-way message reaches the handler")
        .expect("handler alive");
    assert_eq!(seen, (MessageKind::Unicast, a.node_id(), 2));
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_reaches_the_handlers_of_its_group() {
    let net = line(3).await;
    let (a, b, c) = (net.handle(0), net.handle(1), net.handle(2));
    let mut b_seen = tagged_echo(&b, MODULE, b"h:");
    let mut c_seen = tagged_echo(&c, MODULE, b"h:");
    let group = a.groups().first().cloned().expect("a node is in a group");
    // Every node learns the others' groups from their status.
    assert!(
        net.wait_for(WAIT, |_| a.peer_statuses().len() == 2
            && b.peer_statuses().len() == 2)
            .await
    );
    let f = a
        .broadcast(&group, MODULE, Bytes::from_static(b"block"))
        .await
        .expect("broadcast");
    assert_eq!(f.queued.len(), 2, "{f:?}");
    for (seen, hops) in [(&mut b_seen, 1), (&mut c_seen, 2)] {
        let got = tokio::time::timeout(WAIT, seen.recv())
            .await
            .expect("the broadcast reaches the handler")
            .expect("handler alive");
        assert_eq!(got, (MessageKind::Broadcast, a.node_id(), hops));
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_and_a_handler_replace_each_other_and_unregister_removes_either() {
    let net = line(2).await;
    let (a, b) = (net.handle(0), net.handle(1));
    let ask = || a.request(b.node_id(), MODULE, Bytes::from_static(b"x"), WAIT);

    let _seen = tagged_echo(&b, MODULE, b"h:");
    assert_eq!(ask().await.expect("handler answers").as_ref(), b"h:x");

    let mut inbox = b.register(MODULE, 8);
    tokio::spawn(async move {
        while let Some(mut msg) = inbox.recv().await {
            if let Some(r) = msg.take_responder() {
                let _ = r.respond(Bytes::from_static(b"queue"));
            }
        }
    });
    assert_eq!(ask().await.expect("queue answers").as_ref(), b"queue");

    let _seen = tagged_echo(&b, MODULE, b"h:");
    assert_eq!(ask().await.expect("handler again").as_ref(), b"h:x");

    b.unregister(MODULE);
    match ask().await {
        Err(RequestError::Remote(why)) => assert!(why.contains("no handler"), "{why}"),
        other => panic!("expected the no-handler error, got {other:?}"),
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_drops_a_request_fails_it_at_once() {
    let net = line(2).await;
    let (a, b) = (net.handle(0), net.handle(1));
    b.register_handler(MODULE, drop);
    let started = tokio::time::Instant::now();
    match a
        .request(b.node_id(), MODULE, Bytes::from_static(b"x"), WAIT)
        .await
    {
        Err(RequestError::Remote(why)) => assert!(why.contains("without answering"), "{why}"),
        other => panic!("expected the dropped-request error, got {other:?}"),
    }
    // Answered by the dropped responder, not by the request's timeout.
    assert!(started.elapsed() < WAIT);
    net.shutdown().await;
}
