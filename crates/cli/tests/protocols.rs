//! Protocols plugged into running nodes over real TLS on 127.0.0.1: addressed packets routed
//! through relays that do not know the protocol, link-local packets from a neighbour,
//! reachability changes, shutdown; and the status as the one source of this node's groups
//! and topics, deciding what is delivered.
//!
//! Tests wait on conditions and events, never on fixed sleeps.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chainmesh::node::{Origin, Protocol, ProtocolContext, ProtocolError};
use chainmesh::routing::{Reachability, StaticMembership};
use chainmesh::session::Pending;
use chainmesh::status::StatusError;
use chainmesh::wire::{Ext, Options, Packet, PacketType};
use chainmesh::{Message, MessageKind, NodeHandle, NodeId};
use chainmesh_testkit::{LocalNet, LocalNetOptions};
use tokio::sync::mpsc;

/// Generous bound for anything to happen; only reached when something is broken.
const WAIT: Duration = Duration::from_secs(20);
const MODULE: u16 = 100;
/// A type no one uses, hence link-local (it carries no options).
const LINK_LOCAL: PacketType = PacketType(0x30);

/// What a [`Recorder`] saw.
#[derive(Debug)]
enum Seen {
    Packet(Origin, Box<Packet>),
    Reachability(Reachability),
}

/// A protocol that owns `types` and reports everything it is handed.
struct Recorder {
    types: Vec<PacketType>,
    tx: mpsc::UnboundedSender<Seen>,
}

impl Protocol for Recorder {
    fn packet_types(&self) -> &[PacketType] {
        &self.types
    }

    fn on_packet(&self, _: &ProtocolContext, from: Origin, packet: Packet) -> Option<Pending> {
        let _ = self.tx.send(Seen::Packet(from, Box::new(packet)));
        None
    }

    fn on_reachability(&self, _: &ProtocolContext, event: &Reachability) {
        let _ = self.tx.send(Seen::Reachability(event.clone()));
    }
}

fn record(node: &NodeHandle, types: &[PacketType]) -> mpsc::UnboundedReceiver<Seen> {
    let (tx, rx) = mpsc::unbounded_channel();
    let recorder = Recorder {
        types: types.to_vec(),
        tx,
    };
    node.register_protocol(Arc::new(recorder))
        .expect("the type is free");
    rx
}

/// The next packet `rx` reports, skipping reachability changes.
async fn next_packet(rx: &mut mpsc::UnboundedReceiver<Seen>) -> (Origin, Packet) {
    let next = tokio::time::timeout(WAIT, async {
        loop {
            match rx.recv().await {
                Some(Seen::Packet(from, p)) => return (from, *p),
                Some(Seen::Reachability(_)) => {}
                None => panic!("the protocol is gone"),
            }
        }
    });
    next.await.expect("a packet within the wait bound")
}

/// Waits until `rx` reports that `node` is reachable (`true`) or unreachable (`false`).
async fn wait_reachability(rx: &mut mpsc::UnboundedReceiver<Seen>, node: NodeId, reachable: bool) {
    let found = tokio::time::timeout(WAIT, async {
        loop {
            match rx.recv().await {
                Some(Seen::Reachability(Reachability::Reachable { node: n, .. }))
                    if reachable && n == node =>
                {
                    return
                }
                Some(Seen::Reachability(Reachability::Unreachable { node: n, .. }))
                    if !reachable && n == node =>
                {
                    return
                }
                Some(_) => {}
                None => panic!("the protocol is gone"),
            }
        }
    });
    found
        .await
        .unwrap_or_else(|_| panic!("no reachability change to {reachable} for the node"));
}

fn amop(src: NodeId, module: u16, payload: Bytes) -> Packet {
    Packet {
        version: 0,
        packet_type: PacketType::AMOP,
        seq: 0,
        ext: Ext::default(),
        options: Some(Options {
            group: "amop".into(),
            src,
            dsts: Vec::new(),
            module,
            tags: Bytes::new(),
        }),
        payload,
    }
}

async fn net(n: usize) -> LocalNet {
    LocalNet::start(LocalNetOptions::new(n))
        .await
        .expect("local network starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_addressed_protocol_reaches_a_node_through_a_relay_that_does_not_know_it() {
    let mut net = net(3).await;
    let (a, c) = (net.handle(0), net.handle(2));
    // Registered before any link is up: both ends see each other become reachable.
    let mut at_a = record(&a, &[PacketType::AMOP]);
    let mut at_c = record(&c, &[PacketType::AMOP]);
    net.connect_line();
    assert!(
        net.wait_for(WAIT, |n| n.hops(0, 2).is_some() && n.hops(2, 0).is_some())
            .await
    );
    wait_reachability(&mut at_c, a.node_id(), true).await;
    wait_reachability(&mut at_a, c.node_id(), true).await;

    let ctx = a.protocol_context();
    assert_eq!(ctx.node_id(), a.node_id());
    assert!(ctx
        .reachable_nodes()
        .iter()
        .any(|(n, d)| *n == c.node_id() && *d == 2));
    ctx.send_packet(
        c.node_id(),
        amop(a.node_id(), 7, Bytes::from_static(b"over B")),
    )
    .await
    .unwrap();
    let (from, p) = next_packet(&mut at_c).await;
    assert_eq!(from.src, a.node_id());
    assert_eq!(from.link, net.handle(1).node_id(), "relayed by B");
    assert_eq!(p.packet_type, PacketType::AMOP);
    assert_eq!(p.payload.as_ref(), b"over B");
    let opts = p.options.unwrap();
    assert_eq!((opts.module, &*opts.group), (7, "amop"));

    // Compressed on the way, handed over plain; the non-waiting form goes the same way.
    let big = Bytes::from(vec![b'z'; 100_000]);
    ctx.try_send_packet(c.node_id(), amop(a.node_id(), 8, big.clone()))
        .unwrap();
    let (_, p) = next_packet(&mut at_c).await;
    assert!(p.payload == big, "the payload came back changed");
    assert!(!p.ext.is_compressed());

    // The answer goes back along the same routes, to a direct neighbour too.
    let back = c.protocol_context();
    back.send_packet(
        a.node_id(),
        amop(c.node_id(), 9, Bytes::from_static(b"back")),
    )
    .await
    .unwrap();
    let (from, p) = next_packet(&mut at_a).await;
    assert_eq!((from.src, p.payload.as_ref()), (c.node_id(), &b"back"[..]));

    // A packet type that carries no addressing cannot be routed.
    let mut unroutable = amop(a.node_id(), 1, Bytes::new());
    unroutable.packet_type = LINK_LOCAL;
    assert!(matches!(
        ctx.try_send_packet(c.node_id(), unroutable),
        Err(chainmesh::SendError::Invalid(_))
    ));

    net.stop(2).await;
    wait_reachability(&mut at_a, c.node_id(), false).await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_link_local_protocol_hears_its_neighbour_and_stops_with_the_node() {
    let mut net = net(2).await;
    let (a, b) = (net.handle(0), net.handle(1));
    let mut at_b = record(&b, &[LINK_LOCAL]);
    net.connect(0, 1);
    assert!(net.wait_for(WAIT, |n| n.hops(0, 1).is_some()).await);
    let session = a.peers().session(&b.node_id()).unwrap();
    let packet = Packet {
        version: session.version,
        packet_type: LINK_LOCAL,
        seq: 0,
        ext: Ext::default(),
        options: None,
        payload: Bytes::from_static(b"hello, neighbour"),
    };
    session.try_send(packet.to_bytes()).unwrap();
    let (from, p) = next_packet(&mut at_b).await;
    assert_eq!(
        from,
        Origin {
            src: a.node_id(),
            link: a.node_id()
        }
    );
    assert_eq!(p.payload.as_ref(), b"hello, neighbour");

    let ctx = b.protocol_context();
    let stopped = tokio::spawn(async move { ctx.stopped().await });
    net.stop(1).await;
    tokio::time::timeout(WAIT, stopped)
        .await
        .expect("stopped() completes once the node shuts down")
        .unwrap();
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_nodes_own_packet_types_cannot_be_taken() {
    let net = net(1).await;
    let node = net.handle(0);
    let (tx, _rx) = mpsc::unbounded_channel();
    let register = |types: &[PacketType]| {
        node.register_protocol(Arc::new(Recorder {
            types: types.to_vec(),
            tx: tx.clone(),
        }))
    };
    assert_eq!(
        register(&[PacketType::UNICAST]),
        Err(ProtocolError::Reserved(PacketType::UNICAST))
    );
    assert_eq!(
        register(&[PacketType::HEARTBEAT]),
        Err(ProtocolError::Reserved(PacketType::HEARTBEAT))
    );
    for built_in in [PacketType::STATUS_SEQ, PacketType::ROUTER_RESPONSE] {
        assert_eq!(register(&[built_in]), Err(ProtocolError::Taken(built_in)));
    }
    // Nothing of a refused protocol was registered: its free type is still free.
    assert_eq!(
        register(&[PacketType::AMOP, PacketType::STATUS_REQUEST]),
        Err(ProtocolError::Taken(PacketType::STATUS_REQUEST))
    );
    assert_eq!(register(&[PacketType::AMOP]), Ok(()));
    net.shutdown().await;
}

async fn recv(inbox: &mut mpsc::Receiver<Message>) -> Message {
    tokio::time::timeout(WAIT, inbox.recv())
        .await
        .expect("a message within the wait bound")
        .expect("inbox open")
}

/// Sends a unicast marker from `from` to `to`'s `MODULE` and returns the payloads `inbox`
/// received before it: the link delivers in order, so that is everything sent before it.
async fn until_marker(
    from: &NodeHandle,
    to: &NodeHandle,
    inbox: &mut mpsc::Receiver<Message>,
) -> Vec<(Bytes, MessageKind)> {
    from.send(to.node_id(), MODULE, Bytes::from_static(b"marker"))
        .await
        .unwrap();
    let mut got = Vec::new();
    loop {
        let m = recv(inbox).await;
        if m.payload.as_ref() == b"marker" {
            return got;
        }
        got.push((m.payload, m.kind));
    }
}

/// Multicasts to topic "t" and broadcasts to group "g9" from `a`, whose membership lists
/// `b` for both.
async fn fan(a: &NodeHandle, b: &NodeHandle, payload: &'static [u8]) {
    let f = a
        .multicast("t", MODULE, Bytes::from_static(payload))
        .await
        .unwrap();
    assert_eq!(f.queued, [b.node_id()]);
    let f = a
        .broadcast("g9", MODULE, Bytes::from_static(payload))
        .await
        .unwrap();
    assert_eq!(f.queued, [b.node_id()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_status_decides_which_topics_and_groups_are_delivered() {
    let net = net(2).await;
    net.connect(0, 1);
    assert!(net.wait_for(WAIT, |n| n.hops(0, 1).is_some()).await);
    let (a, b) = (net.handle(0), net.handle(1));
    // A sends to B whatever B's status says: only B's own status decides what B delivers.
    let members = StaticMembership::new();
    members.set_topic("t", [b.node_id()]);
    members.set_group("g9", [b.node_id()]);
    a.set_membership(Arc::new(members));
    let mut inbox = b.register(MODULE, 64);
    fan(&a, &b, b"before").await;
    assert!(until_marker(&a, &b, &mut inbox).await.is_empty());

    b.status().set_topics(["t"]).unwrap();
    b.status().set_groups(["group0", "g9"]).unwrap();
    assert_eq!(b.topics(), ["t"]);
    assert_eq!(b.groups(), ["g9", "group0"]);
    fan(&a, &b, b"while in").await;
    let got = until_marker(&a, &b, &mut inbox).await;
    let topic = MessageKind::Multicast {
        topic: "t".to_owned(),
    };
    assert_eq!(
        got,
        [
            (Bytes::from_static(b"while in"), topic),
            (Bytes::from_static(b"while in"), MessageKind::Broadcast)
        ]
    );

    b.status().set_topics(Vec::<String>::new()).unwrap();
    b.status().set_groups(["group0"]).unwrap();
    assert!(b.topics().is_empty());
    fan(&a, &b, b"after").await;
    assert!(until_marker(&a, &b, &mut inbox).await.is_empty());
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscribing_writes_the_status() {
    let net = net(1).await;
    let node = net.handle(0);
    let before = node.status().local_version();
    assert_eq!(node.subscribe("blocks"), Ok(true));
    assert_eq!(node.subscribe("blocks"), Ok(false));
    assert_eq!(node.status().local().1.topics, ["blocks"]);
    assert_eq!(node.status().local_version().seq, before.seq + 1);
    assert_eq!(
        node.subscribe(""),
        Err(StatusError::EmptyName { field: "topic" })
    );
    assert!(node.unsubscribe("blocks"));
    assert!(!node.unsubscribe("blocks"));
    assert!(node.topics().is_empty());
    assert_eq!(node.groups(), net.config(0).p2p.groups);
    net.shutdown().await;
}
