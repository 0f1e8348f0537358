//! Groups changed while a node runs (`NodeHandle::join_group`, `leave_group`): a node that
//! joins a group receives broadcasts to it once the others have learnt its status, and none
//! after it leaves. Real nodes over TLS on 127.0.0.1; every wait is on a condition.

use std::time::Duration;

use bytes::Bytes;
use chainmesh::node::{Message, MessageKind};
use chainmesh::status::StatusError;
use chainmesh::NodeHandle;
use chainmesh_testkit::{wait_until, LocalNet, LocalNetOptions};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(20);
const MODULE: u16 = 3100;

/// Waits until `node` holds a status of `other` whose groups do (or do not) list `group`.
async fn wait_sees(node: &NodeHandle, other: &NodeHandle, group: &str, member: bool) -> bool {
    let other = other.node_id();
    wait_until(WAIT, || {
        node.peer_status(&other)
            .is_some_and(|s| s.status.groups.iter().any(|g| g == group) == member)
    })
    .await
}

async fn recv(inbox: &mut mpsc::Receiver<Message>) -> Message {
    tokio::time::timeout(WAIT, inbox.recv())
        .await
        .expect("a message within the wait")
        .expect("inbox open")
}

/// What `to` received from its inbox before a unicast marker `from` sends after it: the
/// marker travels the same link, so whatever was delivered before it has arrived.
async fn before_marker(
    from: &NodeHandle,
    to: &NodeHandle,
    inbox: &mut mpsc::Receiver<Message>,
) -> Vec<Bytes> {
    from.send(to.node_id(), MODULE, Bytes::from_static(b"marker"))
        .await
        .expect("marker queued");
    let mut got = Vec::new();
    loop {
        let m = recv(inbox).await;
        if m.payload.as_ref() == b"marker" {
            return got;
        }
        got.push(m.payload);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_joins_a_group_at_run_time_receives_its_broadcasts_until_it_leaves() {
    let net = LocalNet::start(LocalNetOptions::for_traffic(2))
        .await
        .expect("local network starts");
    net.connect(0, 1);
    assert!(net.wait_for(WAIT, |n| n.has_peers(0, 1)).await);
    let (a, b) = (net.handle(0), net.handle(1));
    let mut inbox = b.register(MODULE, 16);

    let before = a
        .broadcast("g1", MODULE, Bytes::from_static(b"before"))
        .await
        .expect("broadcast sent");
    assert!(before.queued.is_empty(), "nobody is in g1 yet");

    let seq = b.status().local_version().seq;
    assert_eq!(b.join_group("g1"), Ok(true));
    assert_eq!(b.join_group("g1"), Ok(false));
    assert_eq!(b.status().local_version().seq, seq + 1);
    assert_eq!(b.groups(), ["g1", "group0"]);
    assert_eq!(
        b.join_group(""),
        Err(StatusError::EmptyName { field: "group" })
    );
    assert!(
        wait_sees(&a, &b, "g1", true).await,
        "a never learnt b joined g1"
    );
    let sent = a
        .broadcast("g1", MODULE, Bytes::from_static(b"while in"))
        .await
        .expect("broadcast sent");
    assert_eq!(sent.queued, [b.node_id()]);
    let m = recv(&mut inbox).await;
    assert_eq!(
        (m.payload.as_ref(), m.kind),
        (&b"while in"[..], MessageKind::Broadcast)
    );

    assert!(b.leave_group("g1"));
    assert!(!b.leave_group("g1"));
    assert_eq!(b.groups(), ["group0"]);
    // Delivery asks b's own status: even a broadcast sent before a learns of the change is
    // not delivered.
    a.broadcast("g1", MODULE, Bytes::from_static(b"racing"))
        .await
        .expect("broadcast sent");
    assert!(
        wait_sees(&a, &b, "g1", false).await,
        "a never learnt b left g1"
    );
    let after = a
        .broadcast("g1", MODULE, Bytes::from_static(b"after"))
        .await
        .expect("broadcast sent");
    assert!(after.queued.is_empty());
    assert!(before_marker(&a, &b, &mut inbox).await.is_empty());
    net.shutdown().await;
}
