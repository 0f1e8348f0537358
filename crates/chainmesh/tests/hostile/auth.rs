//! Forged sources: a member (node 3, played by hand) linked to the middle of the line
//! 0 - 1 - 2 claims that its packets come from other nodes. Version 3's tags must keep every
//! forgery from being delivered, matched or stored, while honest relayed traffic goes on.

use std::time::Duration;

use bytes::Bytes;
use chainmesh::auth::{Covered, Digest, Keyring};
use chainmesh::status::NodeStatus;
use chainmesh::wire::{DataFrame, Ext, PacketType, DEFAULT_TTL, MAX_PROTOCOL_VERSION};
use chainmesh::{NodeHandle, NodeId};
use chainmesh_testkit::raw::RawPeer;
use chainmesh_testkit::{wait_until, LocalNet, LocalNetOptions};

const WAIT: Duration = Duration::from_secs(20);
const MODULE: u16 = 100;

/// The line 0 - 1 - 2 and the hostile member, node 3, linked to node 1.
struct Line {
    net: LocalNet,
    member: RawPeer,
    /// The member's own keys: what it can tag with is its own pairwise keys only.
    keys: Keyring,
    ids: [NodeId; 4],
}

impl Line {
    async fn start() -> Line {
        let mut opts = LocalNetOptions::new(4);
        // The member is played by hand between test steps: give it time to send before its
        // link counts as idle.
        opts.timers.heartbeat_interval = Duration::from_secs(1);
        opts.timers.idle_timeout_intervals = 10;
        let mut net = LocalNet::start(opts).await.unwrap();
        net.stop(3).await;
        net.connect(0, 1);
        net.connect(1, 2);
        let ids = [0, 1, 2, 3].map(|i| net.generated(i).node_id);
        assert!(
            net.wait_for(WAIT, |n| n.hops(0, 2) == Some(2) && n.hops(2, 0) == Some(2))
                .await
        );
        let identity = net.generated(3).load_identity().unwrap();
        let keys = Keyring::new(&identity, 16).unwrap();
        let mut member = RawPeer::dial_as(&net, 3, 1).await.unwrap();
        member.handshake().await.unwrap();
        // Its signed neighbour list, so that the others route to it through node 1.
        member
            .announce_neighbours(&identity, 1, &[ids[1]])
            .await
            .unwrap();
        let middle = net.handle(1);
        assert!(wait_until(WAIT, || middle.peers().session(&ids[3]).is_some()).await);
        Line {
            net,
            member,
            keys,
            ids,
        }
    }

    fn node(&self, i: usize) -> NodeHandle {
        self.net.handle(i)
    }

    /// A packet in full form that claims to come from node `src` for node `dst`, tagged as
    /// well as the member can: under the key it shares with `dst` itself.
    fn forged(&self, f: Forgery<'_>, src: usize, dst: usize) -> Bytes {
        let dsts = [self.ids[dst]];
        let ext = (f.ext | Ext::AUTH).with_ttl(DEFAULT_TTL);
        let covered = Covered {
            packet_type: f.packet_type,
            seq: f.seq,
            ext,
            group: f.group.as_bytes(),
            src: &self.ids[src],
            module: f.module,
        };
        let tag = self
            .keys
            .tag(&self.ids[dst], &Digest::of(&covered, &[f.payload]))
            .unwrap();
        DataFrame {
            version: MAX_PROTOCOL_VERSION,
            packet_type: f.packet_type,
            seq: f.seq,
            ext,
            group: f.group,
            src: &self.ids[src],
            dsts: &dsts,
            module: f.module,
            tags: &tag,
            prefix: &[],
            payload: f.payload,
        }
        .encode(0)
    }

    async fn send_forged(&mut self, f: Forgery<'_>, src: usize, dst: usize) {
        let bytes = self.forged(f, src, dst);
        self.member.send_raw(&bytes).await.unwrap();
    }

    /// Waits until node `i` has refused `n` packets for their tags in all.
    async fn rejected(&self, i: usize, n: u64) {
        let node = self.node(i);
        assert!(
            wait_until(WAIT, || node.auth_rejected() >= n).await,
            "node {i} refused {} of {n}",
            node.auth_rejected()
        );
    }

    /// An honest request from node 0 to node 2's echo, through node 1.
    async fn honest_round_trip(&self) {
        let reply = self
            .node(0)
            .ping(self.ids[2], Bytes::from_static(b"honest"), WAIT)
            .await
            .unwrap();
        assert_eq!(reply.hops, 2);
    }
}

/// What a forged packet says besides its source and destination.
#[derive(Clone, Copy)]
struct Forgery<'a> {
    packet_type: PacketType,
    seq: u32,
    ext: Ext,
    group: &'a str,
    module: u16,
    payload: &'a [u8],
}

fn unicast(seq: u32, payload: &[u8]) -> Forgery<'_> {
    Forgery {
        packet_type: PacketType::UNICAST,
        seq,
        ext: Ext::default(),
        group: "group0",
        module: MODULE,
        payload,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unicast_claiming_another_source_is_not_delivered() {
    let mut line = Line::start().await;
    let mut inbox_1 = line.node(1).register(MODULE, 16);
    let mut inbox_2 = line.node(2).register(MODULE, 16);
    // To the node it is linked to, and through it to the next.
    line.send_forged(unicast(7, b"forged"), 0, 1).await;
    line.send_forged(unicast(8, b"forged"), 0, 2).await;
    line.rejected(1, 1).await;
    line.rejected(2, 1).await;
    let honest = Bytes::from_static(b"honest");
    for dst in [1, 2] {
        line.node(0)
            .send(line.ids[dst], MODULE, honest.clone())
            .await
            .unwrap();
    }
    for inbox in [&mut inbox_1, &mut inbox_2] {
        let m = tokio::time::timeout(WAIT, inbox.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((m.src, m.payload), (line.ids[0], honest.clone()));
        assert!(inbox.try_recv().is_err(), "nothing forged behind it");
    }
    line.honest_round_trip().await;
    line.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_request_never_reaches_the_module_and_is_not_answered() {
    let mut line = Line::start().await;
    let mut inbox = line.node(2).register(MODULE, 16);
    let request = Forgery {
        ext: Ext::REQUEST,
        ..unicast(9, b"forged request")
    };
    line.send_forged(request, 0, 2).await;
    // The built-in echo would answer node 0 in node 2's name.
    let echo = Forgery {
        module: chainmesh::node::ECHO_MODULE,
        ..request
    };
    line.send_forged(echo, 0, 2).await;
    line.rejected(2, 2).await;
    assert!(inbox.try_recv().is_err());
    // Node 0 got no stray answer: the only response it matches is its own request's.
    line.honest_round_trip().await;
    let requester = line.node(0);
    let honest = requester.request(line.ids[2], MODULE, Bytes::from_static(b"q"), WAIT);
    let serve = async {
        let mut m = inbox.recv().await.unwrap();
        assert_eq!(m.src, line.ids[0]);
        m.take_responder()
            .unwrap()
            .respond(Bytes::from_static(b"a"))
            .unwrap();
    };
    let (reply, ()) = tokio::join!(honest, serve);
    assert_eq!(reply.unwrap(), Bytes::from_static(b"a"));
    line.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_response_to_a_pending_request_is_not_matched() {
    let mut line = Line::start().await;
    let mut inbox = line.node(2).register(MODULE, 16);
    let requester = line.node(0);
    let dst = line.ids[2];
    let pending = tokio::spawn(async move {
        requester
            .request(dst, MODULE, Bytes::from_static(b"question"), WAIT)
            .await
    });
    // The request is held at node 2 while the member answers it in node 2's name, with the
    // right Seq.
    let mut held = tokio::time::timeout(WAIT, inbox.recv())
        .await
        .unwrap()
        .unwrap();
    let response = Forgery {
        ext: Ext::RESPONSE,
        ..unicast(held.seq, b"forged answer")
    };
    line.send_forged(response, 2, 0).await;
    let error = Forgery {
        ext: Ext::RESPONSE | Ext::ERROR,
        ..response
    };
    line.send_forged(error, 2, 0).await;
    line.rejected(0, 2).await;
    held.take_responder()
        .unwrap()
        .respond(Bytes::from_static(b"real answer"))
        .unwrap();
    let reply = pending.await.unwrap().unwrap();
    assert_eq!(reply, Bytes::from_static(b"real answer"));
    line.honest_round_trip().await;
    line.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_status_packets_for_another_node_are_not_stored() {
    let mut line = Line::start().await;
    let (source, viewer) = (line.node(0), line.node(2));
    source
        .set_app_status(Bytes::from_static(b"honest"))
        .unwrap();
    let src = line.ids[0];
    let holds = |app: &'static [u8]| {
        let viewer = viewer.clone();
        move || {
            viewer
                .peer_status(&src)
                .is_some_and(|s| s.status.app == app)
        }
    };
    assert!(wait_until(WAIT, holds(b"honest")).await);
    let held = viewer.peer_status(&src).unwrap().version;
    // A new run of node 0, announced, and answers to every likely query, all in its name.
    let forged_epoch = held.epoch ^ 0x5a5a;
    let mut seq_payload = Vec::new();
    seq_payload.extend_from_slice(&forged_epoch.to_be_bytes());
    seq_payload.extend_from_slice(&1u32.to_be_bytes());
    seq_payload.push(0);
    seq_payload.extend_from_slice(&[0; 12]);
    let status = Forgery {
        packet_type: PacketType::STATUS_SEQ,
        seq: 11,
        ext: Ext::default(),
        group: "",
        module: 0,
        payload: &seq_payload,
    };
    line.send_forged(status, 0, 2).await;
    let body = NodeStatus {
        app: Bytes::from_static(b"forged"),
        ..NodeStatus::with_groups(["group0"])
    }
    .encode();
    let mut sent = 1;
    for query_id in 0..4u32 {
        let mut answer = query_id.to_be_bytes().to_vec();
        answer.extend_from_slice(&forged_epoch.to_be_bytes());
        answer.extend_from_slice(&1u32.to_be_bytes());
        answer.extend_from_slice(&body);
        let response = Forgery {
            packet_type: PacketType::STATUS_RESPONSE,
            seq: 12 + query_id,
            payload: &answer,
            ..status
        };
        line.send_forged(response, 0, 2).await;
        sent += 1;
    }
    line.rejected(2, sent).await;
    let now = viewer.peer_status(&src).unwrap();
    assert_eq!(
        (now.version, now.status.app),
        (held, Bytes::from_static(b"honest"))
    );
    // Status from the real node 0 still flows.
    source.set_app_status(Bytes::from_static(b"later")).unwrap();
    assert!(wait_until(WAIT, holds(b"later")).await);
    line.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn future_seqs_sent_in_another_nodes_name_do_not_silence_it() {
    let mut line = Line::start().await;
    let mut inbox = line.node(2).register(MODULE, 64);
    let source = line.node(0);
    // Node 0's next Seqs, taken ahead of it by the member.
    let next = source.next_seq();
    const BURNT: u32 = 20;
    for k in 1..=BURNT {
        line.send_forged(unicast(next.wrapping_add(k), b"burn"), 0, 2)
            .await;
    }
    line.rejected(2, u64::from(BURNT)).await;
    for k in 0..BURNT {
        source
            .send(line.ids[2], MODULE, Bytes::from(k.to_be_bytes().to_vec()))
            .await
            .unwrap();
    }
    for k in 0..BURNT {
        let m = tokio::time::timeout(WAIT, inbox.recv())
            .await
            .expect("every real message arrives")
            .unwrap();
        assert_eq!(m.src, line.ids[0]);
        assert_eq!(m.payload.as_ref(), k.to_be_bytes());
    }
    line.honest_round_trip().await;
    line.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untagged_packet_in_full_form_closes_the_link_it_came_on() {
    let mut line = Line::start().await;
    let dsts = [line.ids[2]];
    let untagged = DataFrame {
        version: MAX_PROTOCOL_VERSION,
        packet_type: PacketType::UNICAST,
        seq: 5,
        ext: Ext::default().with_ttl(DEFAULT_TTL),
        group: "group0",
        src: &line.ids[0],
        dsts: &dsts,
        module: MODULE,
        tags: &[],
        prefix: &[],
        payload: b"version 2 style",
    }
    .encode(0);
    line.member.send_raw(&untagged).await.unwrap();
    assert!(line.member.closed_within(WAIT).await);
    line.honest_round_trip().await;
    line.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_members_own_packets_still_go_through() {
    let mut line = Line::start().await;
    let mut inbox = line.node(2).register(MODULE, 16);
    // Its own source, to a node behind its neighbour: tagged under its own key, it verifies.
    let wait_for_route = {
        let far = line.node(2);
        let member = line.ids[3];
        move || far.reachable_nodes().iter().any(|(n, _)| *n == member)
    };
    assert!(wait_until(WAIT, wait_for_route).await);
    line.send_forged(unicast(21, b"mine"), 3, 2).await;
    let m = tokio::time::timeout(WAIT, inbox.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((m.src, m.payload.as_ref()), (line.ids[3], &b"mine"[..]));
    assert_eq!(line.node(2).auth_rejected(), 0);
    line.net.shutdown().await;
}
