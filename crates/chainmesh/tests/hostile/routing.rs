//! Routing attacks. A line network A - B - C, and a member M linked to A only, that claims to
//! be linked to C: with a forged list, with a list it signs itself that C does not confirm,
//! and with lists of tens of thousands of invented nodes. A's route to C must still go
//! through B, no invented node may become reachable, the table must stay within its caps,
//! A's requests to C must keep being answered, and the lying link is closed with the reason
//! counted. Also: a node that leaves cleanly is reported unreachable once, never reachable
//! again at a growing distance.

use std::time::{Duration, Instant};

use bytes::Bytes;
use chainmesh::identity::keys::sign;
use chainmesh::identity::{Identity, NodeId, NODE_ID_LEN};
use chainmesh::routing::Reachability;
use chainmesh::wire::{
    encode_lists, Ext, ListVersion, NeighbourList, Packet, PacketType, LIST_SIGNATURE_LEN,
};
use chainmesh::NodeHandle;
use chainmesh_testkit::raw::{RawPeer, Received};
use chainmesh_testkit::{wait_until, LocalNet, LocalNetOptions};

const WAIT: Duration = Duration::from_secs(10);
const A: usize = 0;
const B: usize = 1;
const C: usize = 2;
const M: usize = 3;

/// A - B - C with M's node stopped: the attacker is a raw peer holding M's certificate.
async fn line_with_attacker() -> LocalNet {
    let mut opts = LocalNetOptions::new(4);
    // The raw peer sends no heartbeats of its own: a long idle timeout keeps its link.
    opts.timers.idle_timeout_intervals = 100;
    let mut net = LocalNet::start(opts).await.unwrap();
    net.stop(M).await;
    net.connect(A, B);
    net.connect(B, C);
    let c = net.handle(C).node_id();
    let b = net.handle(B).node_id();
    assert!(
        wait_until(WAIT, || net
            .handle(A)
            .routes()
            .iter()
            .any(|r| r.dst == c && r.next_hop == b && r.distance == 2))
        .await,
        "A never reached C through B"
    );
    net
}

async fn attacker(net: &LocalNet) -> (RawPeer, Identity) {
    let identity = net.generated(M).load_identity().unwrap();
    let mut m = RawPeer::dial_as(net, M, A).await.unwrap();
    m.handshake().await.unwrap();
    (m, identity)
}

/// A routing or heartbeat packet on M's link, at the agreed version.
fn packet(m: &RawPeer, packet_type: PacketType, payload: Bytes) -> Packet {
    Packet {
        version: m.version,
        packet_type,
        seq: 0,
        ext: Ext::default(),
        options: None,
        payload,
    }
}

fn list_of(origin: NodeId, seq: u32, mut neighbours: Vec<NodeId>) -> NeighbourList {
    neighbours.sort();
    neighbours.dedup();
    NeighbourList {
        origin,
        version: ListVersion {
            epoch: u64::MAX,
            seq,
        },
        neighbours,
        signature: [0; LIST_SIGNATURE_LEN],
    }
}

fn signed_by(identity: &Identity, mut list: NeighbourList) -> NeighbourList {
    list.signature = sign(identity, &list.signed_message()).unwrap();
    list
}

/// `n` node IDs that belong to nobody.
fn invented(n: usize) -> Vec<NodeId> {
    (0..n)
        .map(|i| {
            let mut b = [0x5a; NODE_ID_LEN];
            b[..8].copy_from_slice(&(i as u64).to_be_bytes());
            NodeId::from_bytes(b)
        })
        .collect()
}

/// Whether A still reaches C through B, answers pings from C, and holds no more than the
/// honest network's lists.
async fn a_still_reaches_c_through_b(net: &LocalNet) {
    let a = net.handle(A);
    let b = net.handle(B).node_id();
    let c = net.handle(C).node_id();
    let route = a.routes().into_iter().find(|r| r.dst == c).unwrap();
    assert_eq!((route.next_hop, route.distance), (b, 2));
    a.ping(c, Bytes::from_static(b"still there?"), WAIT)
        .await
        .unwrap();
    assert!(a.reachable_nodes().len() <= 3, "{:?}", a.reachable_nodes());
    assert!(a.routing_lists() <= 3, "lists held: {}", a.routing_lists());
}

async fn sends_and_gets_closed(m: &mut RawPeer, p: &Packet) -> bool {
    m.send(p).await.unwrap();
    m.closed_within(WAIT).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_list_for_another_node_closes_the_link_and_changes_no_route() {
    let net = line_with_attacker().await;
    let a = net.handle(A);
    let c = net.handle(C).node_id();
    let (mut m, me) = attacker(&net).await;
    // C's name, naming M, and no signature at all.
    let forged = list_of(c, 1, vec![me.node_id, a.node_id()]);
    let p = packet(&m, PacketType::ROUTER_RESPONSE, encode_lists([&forged]));
    assert!(sends_and_gets_closed(&mut m, &p).await);
    // C's name again, signed with M's own key.
    let (mut m, me) = attacker(&net).await;
    let forged = signed_by(&me, list_of(c, 2, vec![me.node_id, a.node_id()]));
    let p = packet(&m, PacketType::ROUTER_RESPONSE, encode_lists([&forged]));
    assert!(sends_and_gets_closed(&mut m, &p).await);
    let counters = a.routing_counters();
    assert_eq!(counters.bad_signature, 2);
    assert_eq!(counters.links_closed, 2);
    a_still_reaches_c_through_b(&net).await;
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_that_the_other_end_does_not_confirm_attracts_no_traffic() {
    let net = line_with_attacker().await;
    let a = net.handle(A);
    let c = net.handle(C).node_id();
    let (mut m, me) = attacker(&net).await;
    // Properly signed by M, claiming links to A and to C; C's own list does not name M.
    let lie = signed_by(&me, list_of(me.node_id, 1, vec![a.node_id(), c]));
    m.send(&packet(
        &m,
        PacketType::ROUTER_RESPONSE,
        encode_lists([&lie]),
    ))
    .await
    .unwrap();
    // A took the list (M is A's neighbour and signed it) and still routes C through B.
    assert!(wait_until(WAIT, || a.routing_lists() == 3).await);
    assert!(!m.closed_within(Duration::from_millis(200)).await);
    a_still_reaches_c_through_b(&net).await;
    assert_eq!(a.routing_counters().links_closed, 0);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_of_invented_nodes_make_none_reachable_and_stay_within_the_caps() {
    let net = line_with_attacker().await;
    let a = net.handle(A);
    let (mut m, me) = attacker(&net).await;
    let m_id = me.node_id;
    // 20 000 invented nodes each "naming" M, with garbage signatures: nobody reachable
    // confirms them, so they are dropped before any signature is checked.
    let claims: Vec<NeighbourList> = invented(20_000)
        .into_iter()
        .map(|n| list_of(n, 1, vec![m_id]))
        .collect();
    m.send(&packet(
        &m,
        PacketType::ROUTER_RESPONSE,
        encode_lists(&claims),
    ))
    .await
    .unwrap();
    assert!(
        wait_until(WAIT, || a.routing_counters().unanchored >= 20_000).await,
        "{:?}",
        a.routing_counters()
    );
    a_still_reaches_c_through_b(&net).await;
    // M's own list naming 65 535 invented nodes: over `limits.max_neighbours_per_list`.
    let huge = signed_by(&me, list_of(m_id, 2, invented(65_535)));
    let p = packet(&m, PacketType::ROUTER_RESPONSE, encode_lists([&huge]));
    assert!(sends_and_gets_closed(&mut m, &p).await);
    let counters = a.routing_counters();
    assert_eq!(counters.too_many_neighbours, 1);
    assert_eq!(counters.links_closed, 1);
    a_still_reaches_c_through_b(&net).await;
    net.shutdown().await;
}

/// Reachability events of `handle` about `node` until it is unreachable, or `WAIT` passes.
async fn events_until_unreachable(
    events: &mut tokio::sync::broadcast::Receiver<Reachability>,
    node: NodeId,
) -> Vec<Reachability> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while let Ok(Ok(ev)) = tokio::time::timeout_at(deadline, events.recv()).await {
        let about = match &ev {
            Reachability::Reachable { node: n, .. } | Reachability::Unreachable { node: n, .. } => {
                *n
            }
        };
        if about != node {
            continue;
        }
        let done = matches!(ev, Reachability::Unreachable { .. });
        seen.push(ev);
        if done {
            break;
        }
    }
    seen
}

fn next_hop_of(h: &NodeHandle, dst: &NodeId) -> Option<NodeId> {
    h.routes()
        .into_iter()
        .find(|r| r.dst == *dst)
        .map(|r| r.next_hop)
}

fn node_ids(net: &LocalNet) -> Vec<NodeId> {
    (0..net.len()).map(|i| net.handle(i).node_id()).collect()
}

async fn everyone_reaches_everyone(net: &LocalNet, handles: &[NodeHandle]) -> bool {
    let n = net.len();
    wait_until(Duration::from_secs(20), || {
        handles.iter().all(|h| h.reachable_nodes().len() == n - 1)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_leave_is_unreachable_at_once_without_counting_up() {
    // A ring of 10, so that every node has two paths to the one that leaves, as in the
    // loops where distance vectors counted up.
    let nodes = 10;
    let mut net = LocalNet::start(LocalNetOptions::new(nodes)).await.unwrap();
    for i in 0..nodes {
        net.connect(i, (i + 1) % nodes);
    }
    let handles: Vec<NodeHandle> = (0..nodes).map(|i| net.handle(i)).collect();
    assert!(everyone_reaches_everyone(&net, &handles).await);
    let ids = node_ids(&net);
    let leaving = ids[5];
    let mut subs: Vec<_> = handles
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 5)
        .map(|(_, h)| h.reachability_events())
        .collect();
    let start = Instant::now();
    net.stop(5).await;
    let mut slowest = Duration::ZERO;
    for sub in &mut subs {
        let seen = events_until_unreachable(sub, leaving).await;
        slowest = slowest.max(start.elapsed());
        assert!(
            matches!(seen.as_slice(), [Reachability::Unreachable { .. }]),
            "events about the departed node: {seen:?}"
        );
    }
    eprintln!("leave of 1 node in a ring of {nodes}: every other node saw it unreachable within {slowest:?}");
    // And it stays so: the survivors reach each other and not it.
    for (i, h) in handles.iter().enumerate() {
        if i != 5 {
            assert!(wait_until(WAIT, || h.reachable_nodes().len() == nodes - 2).await);
            assert!(h.reachable_nodes().iter().all(|(n, _)| *n != leaving));
        }
    }
    net.shutdown().await;
}

/// M's half-honest relaying: what D sends towards A goes on, what A sends towards D is
/// dropped. Heartbeats keep both links up.
fn relay_one_way(mut to_a: RawPeer, mut to_d: RawPeer) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let beat_a = packet(&to_a, PacketType::HEARTBEAT, Bytes::new());
            let beat_d = packet(&to_d, PacketType::HEARTBEAT, Bytes::new());
            if to_a.send(&beat_a).await.is_err() || to_d.send(&beat_d).await.is_err() {
                return;
            }
            match to_d.recv(Duration::from_millis(50)).await {
                Ok(Received::Packet(p)) if p.options.is_some() => {
                    if to_a.send(&p).await.is_err() {
                        return;
                    }
                }
                Ok(Received::Closed) | Err(_) => return,
                Ok(_) => {}
            }
            // Whatever A sent is read and dropped.
            if let Ok(Received::Closed) | Err(_) = to_a.recv(Duration::from_millis(1)).await {
                return;
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_hop_that_drops_what_it_should_relay_is_routed_around() {
    // A and D are joined through C and through M. M is linked to both and attests both links
    // properly, but drops what A sends through it. M's node ID is the smaller of the two, so
    // A's route to D starts through M.
    let mut opts = LocalNetOptions::new(4);
    opts.timers.idle_timeout_intervals = 100;
    let mut net = LocalNet::start(opts).await.unwrap();
    let (a, d) = (0, 3);
    let ids = node_ids(&net);
    let (m, c) = if ids[1] < ids[2] { (1, 2) } else { (2, 1) };
    net.stop(m).await;
    net.connect(a, c);
    net.connect(c, d);
    let identity = net.generated(m).load_identity().unwrap();
    let mut to_a = RawPeer::dial_as(&net, m, a).await.unwrap();
    to_a.handshake().await.unwrap();
    let mut to_d = RawPeer::dial_as(&net, m, d).await.unwrap();
    to_d.handshake().await.unwrap();
    let honest = signed_by(&identity, list_of(ids[m], 1, vec![ids[a], ids[d]]));
    for link in [&mut to_a, &mut to_d] {
        let p = packet(link, PacketType::ROUTER_RESPONSE, encode_lists([&honest]));
        link.send(&p).await.unwrap();
    }
    let relay = relay_one_way(to_a, to_d);
    let node_a = net.handle(a);
    assert!(
        wait_until(WAIT, || next_hop_of(&node_a, &ids[d]) == Some(ids[m])).await,
        "{:?}",
        node_a.routes()
    );
    // Requests through M go unanswered; after three in a row A goes through C.
    for _ in 0..3 {
        assert!(node_a
            .ping(
                ids[d],
                Bytes::from_static(b"hello?"),
                Duration::from_millis(300)
            )
            .await
            .is_err());
    }
    assert!(
        wait_until(WAIT, || next_hop_of(&node_a, &ids[d]) == Some(ids[c])).await,
        "{:?}",
        node_a.routes()
    );
    node_a
        .ping(ids[d], Bytes::from_static(b"hello"), WAIT)
        .await
        .unwrap();
    relay.abort();
    net.shutdown().await;
}
