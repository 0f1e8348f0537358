//! The engine over an in-memory network, on tokio's paused clock: propagation through relays,
//! restarts, loss, reordering, and the traffic of a network where nothing changes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::codec::{SeqAnnounce, StatusAnswer, StatusQuery};
use super::*;
use crate::identity::NodeId;
use crate::test_support::id;
use crate::wire::PacketType;

const INTERVAL: Duration = Duration::from_secs(1);
const HOP: Duration = Duration::from_millis(5);

/// A network of nodes on a fixed topology; a node reaches every node connected to it through
/// nodes that are up, and each hop takes [`HOP`]. Packets are delivered to whichever service
/// is registered for the destination when they arrive, so a restarted node gets the packets
/// meant for its previous life.
struct Net {
    links: HashSet<(NodeId, NodeId)>,
    up: Mutex<HashSet<NodeId>>,
    services: Mutex<HashMap<NodeId, Arc<StatusService>>>,
    /// Packet types to drop, once each, in order.
    drops: Mutex<VecDeque<PacketType>>,
    /// Wire bytes (payload + overhead) each node has sent.
    sent: Mutex<HashMap<NodeId, u64>>,
    /// (from, to) pairs whose sends fail as unreachable, as before a route is learnt.
    unroutable: Mutex<HashSet<(NodeId, NodeId)>>,
}

impl Net {
    fn new(links: &[(u8, u8)]) -> Arc<Net> {
        Arc::new(Net {
            links: links
                .iter()
                .flat_map(|&(a, b)| [(id(a), id(b)), (id(b), id(a))])
                .collect(),
            up: Mutex::new(HashSet::new()),
            services: Mutex::new(HashMap::new()),
            drops: Mutex::new(VecDeque::new()),
            sent: Mutex::new(HashMap::new()),
            unroutable: Mutex::new(HashSet::new()),
        })
    }

    /// Hops from `a` to every node it reaches through nodes that are up.
    fn distances(&self, a: NodeId) -> HashMap<NodeId, u32> {
        let up = self.up.lock().clone();
        let mut dist = HashMap::new();
        if !up.contains(&a) {
            return dist;
        }
        let mut queue = VecDeque::from([(a, 0u32)]);
        dist.insert(a, 0);
        while let Some((n, d)) = queue.pop_front() {
            for &(x, y) in &self.links {
                if x == n && up.contains(&y) && !dist.contains_key(&y) {
                    dist.insert(y, d + 1);
                    queue.push_back((y, d + 1));
                }
            }
        }
        dist
    }

    /// Starts (or restarts: a new epoch, seq 1) node `i` with `status`.
    fn start(
        self: &Arc<Self>,
        i: usize,
        status: NodeStatus,
        config: StatusConfig,
    ) -> (Arc<StatusService>, CancellationToken) {
        let me = id(i as u8);
        let transport = Arc::new(FakeTransport {
            me,
            net: self.clone(),
        });
        let svc = StatusService::with_config(me, config, status, transport).unwrap();
        self.services.lock().insert(me, svc.clone());
        self.up.lock().insert(me);
        let stop = CancellationToken::new();
        svc.spawn(stop.clone());
        (svc, stop)
    }

    fn sent_by(&self, i: usize) -> u64 {
        self.sent.lock().get(&id(i as u8)).copied().unwrap_or(0)
    }
}

struct FakeTransport {
    me: NodeId,
    net: Arc<Net>,
}

impl StatusTransport for FakeTransport {
    fn reachable(&self) -> Vec<NodeId> {
        self.net.distances(self.me).into_keys().collect()
    }

    fn send(
        &self,
        dst: NodeId,
        packet_type: PacketType,
        payload: Bytes,
    ) -> Result<(), TransportError> {
        if self.net.unroutable.lock().contains(&(self.me, dst)) {
            return Err(TransportError::Unreachable);
        }
        let hops = *self
            .net
            .distances(self.me)
            .get(&dst)
            .ok_or(TransportError::Unreachable)?;
        *self.net.sent.lock().entry(self.me).or_default() +=
            (payload.len() + PACKET_OVERHEAD) as u64;
        {
            let mut drops = self.net.drops.lock();
            if drops.front() == Some(&packet_type) {
                drops.pop_front();
                return Ok(());
            }
        }
        let net = self.net.clone();
        let src = self.me;
        tokio::spawn(async move {
            tokio::time::sleep(HOP * hops).await;
            let svc = net.services.lock().get(&dst).cloned();
            if let Some(svc) = svc {
                if net.up.lock().contains(&dst) {
                    svc.on_packet(src, packet_type, payload).unwrap();
                }
            }
        });
        Ok(())
    }
}

fn with_app(app: &str) -> NodeStatus {
    NodeStatus {
        app: Bytes::copy_from_slice(app.as_bytes()),
        ..NodeStatus::with_groups(["group0"])
    }
}

/// Five nodes in a line, 0-1-2-3-4: node 0 reaches node 4 only through three relays.
fn line() -> Arc<Net> {
    Net::new(&[(0, 1), (1, 2), (2, 3), (3, 4)])
}

fn start_all(net: &Arc<Net>, n: usize, config: &StatusConfig) -> Vec<Arc<StatusService>> {
    (0..n)
        .map(|i| {
            net.start(i, with_app(&format!("boot {i}")), config.clone())
                .0
        })
        .collect()
}

/// Whether every service holds every other's current version.
fn converged(svcs: &[Arc<StatusService>]) -> bool {
    svcs.iter().all(|a| {
        svcs.iter()
            .filter(|b| b.local_id() != a.local_id())
            .all(|b| a.get(&b.local_id()).map(|p| p.version) == Some(b.local_version()))
    })
}

/// Advances the paused clock in 10 ms steps until `cond` holds; returns the time it took.
async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = tokio::time::Instant::now();
    while !cond() {
        assert!(
            start.elapsed() <= limit,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

#[tokio::test(start_paused = true)]
async fn a_change_reaches_every_node_through_relays_within_two_intervals() {
    let net = line();
    let config = StatusConfig::with_interval(INTERVAL);
    let svcs = start_all(&net, 5, &config);
    let startup = wait_until(2 * INTERVAL, || converged(&svcs)).await;
    assert!(startup < INTERVAL, "startup took {startup:?}");

    let mut events = svcs[4].subscribe();
    let v = svcs[0].set_app_status(&b"height-1"[..]).unwrap();
    assert_eq!(v.seq, 2);
    let took = wait_until(2 * INTERVAL, || {
        svcs[1..]
            .iter()
            .all(|s| s.get(&id(0)).is_some_and(|p| p.status.app == "height-1"))
    })
    .await;
    // Announce, query and answer over four hops each: far below one interval.
    assert!(took <= Duration::from_millis(100), "took {took:?}");
    let e = events.recv().await.unwrap();
    assert_eq!(
        e,
        StatusEvent {
            node: id(0),
            version: v,
            kind: StatusEventKind::Updated
        }
    );
    assert!(converged(&svcs));
}

#[tokio::test(start_paused = true)]
async fn group_and_topic_lookups_follow_the_table() {
    let net = line();
    let config = StatusConfig::with_interval(INTERVAL);
    let svcs = start_all(&net, 3, &config);
    wait_until(2 * INTERVAL, || converged(&svcs)).await;
    svcs[2].add_topic("blocks").unwrap();
    svcs[1].set_groups(["group0", "group1"]).unwrap();
    svcs[1].add_amop_topic("sdk").unwrap();
    wait_until(2 * INTERVAL, || converged(&svcs)).await;
    assert_eq!(svcs[0].topic_subscribers("blocks"), vec![id(2)]);
    assert_eq!(svcs[0].group_members("group1"), vec![id(1)]);
    assert_eq!(svcs[0].group_members("group0"), vec![id(1), id(2)]);
    assert_eq!(svcs[0].amop_subscribers("sdk"), vec![id(1)]);
    assert_eq!(
        svcs[0].network_group_members("group0"),
        vec![id(0), id(1), id(2)]
    );
    assert_eq!(svcs[2].network_topic_subscribers("blocks"), vec![id(2)]);
    svcs[2].remove_topic("blocks").unwrap();
    wait_until(2 * INTERVAL, || converged(&svcs)).await;
    assert!(svcs[0].topic_subscribers("blocks").is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_fast_restart_is_resynced_even_without_a_disconnect() {
    let net = line();
    let config = StatusConfig::with_interval(INTERVAL);
    let mut svcs = start_all(&net, 5, &config);
    wait_until(2 * INTERVAL, || converged(&svcs)).await;
    for h in 0..5 {
        svcs[2].set_app_status(format!("old life {h}")).unwrap();
    }
    wait_until(2 * INTERVAL, || converged(&svcs)).await;
    let old = svcs[2].local_version();
    assert!(old.seq > 1);

    // Node 3 has a query out to node 2 that node 2's old life will never answer.
    net.drops.lock().push_back(PacketType::STATUS_RESPONSE);
    svcs[2].set_app_status("last words").unwrap();
    wait_until(INTERVAL, || net.drops.lock().is_empty()).await;
    // Node 2 restarts between two packets: nobody sees it go, nobody calls on_unreachable.
    let (new, _stop) = net.start(2, with_app("new life"), config.clone());
    svcs[2] = new;
    assert_eq!(svcs[2].local_version().seq, 1);
    let took = wait_until(2 * INTERVAL, || converged(&svcs)).await;
    for (i, s) in svcs.iter().enumerate() {
        if i != 2 {
            let p = s.get(&id(2)).unwrap();
            assert_eq!(p.version, svcs[2].local_version());
            assert_eq!(p.status.app, "new life");
        }
    }
    // The restarted node announces at its first tick, at once.
    assert!(took <= Duration::from_millis(100), "took {took:?}");
}

#[tokio::test(start_paused = true)]
async fn unreachable_nodes_are_removed_and_a_restart_resyncs() {
    let net = line();
    let config = StatusConfig::with_interval(INTERVAL);
    let mut svcs = start_all(&net, 5, &config);
    wait_until(2 * INTERVAL, || converged(&svcs)).await;
    svcs[2].set_app_status("before").unwrap();
    wait_until(2 * INTERVAL, || converged(&svcs)).await;

    let mut events = svcs[0].subscribe();
    // Node 2 goes down, cutting the line in two.
    net.up.lock().remove(&id(2));
    svcs[1].on_unreachable(&id(2)); // its neighbour sees the link drop at once
    assert!(svcs[1].get(&id(2)).is_none());
    wait_until(2 * INTERVAL, || {
        svcs[0].get(&id(2)).is_none()
            && svcs[0].get(&id(3)).is_none()
            && svcs[4].get(&id(0)).is_none()
            && svcs[4].get(&id(2)).is_none()
    })
    .await;
    let mut removed = HashSet::new();
    while let Ok(e) = events.try_recv() {
        assert_eq!(e.kind, StatusEventKind::Removed);
        removed.insert(e.node);
    }
    assert_eq!(removed, HashSet::from([id(2), id(3), id(4)]));
    assert!(svcs[0].get(&id(1)).is_some());

    let (new, _stop) = net.start(2, with_app("after"), config.clone());
    svcs[2] = new;
    wait_until(2 * INTERVAL, || converged(&svcs)).await;
    assert_eq!(svcs[4].get(&id(2)).unwrap().status.app, "after");
    assert_eq!(svcs[4].get(&id(2)).unwrap().version.seq, 1);
}

#[tokio::test(start_paused = true)]
async fn lost_packets_are_recovered_by_retries() {
    let net = line();
    let config = StatusConfig::with_interval(INTERVAL);
    let svcs = start_all(&net, 3, &config);
    wait_until(2 * INTERVAL, || converged(&svcs)).await;
    for (round, lost) in [
        // Unconfirmed, so announced again at the next tick.
        PacketType::STATUS_SEQ,
        // The query times out (2 intervals) and is resent at the tick after.
        PacketType::STATUS_REQUEST,
        PacketType::STATUS_RESPONSE,
    ]
    .into_iter()
    .enumerate()
    {
        net.drops.lock().push_back(lost);
        svcs[0].set_app_status(format!("round {round}")).unwrap();
        let took = wait_until(4 * INTERVAL, || converged(&svcs)).await;
        assert!(net.drops.lock().is_empty(), "{lost} was never sent");
        if lost != PacketType::STATUS_SEQ {
            assert!(took >= 2 * INTERVAL, "{lost}: took {took:?}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_node_without_a_route_back_yet_is_queried_as_soon_as_it_is_reachable() {
    let net = line();
    // Node 1 hears node 0 before it has a route back to it.
    net.unroutable.lock().insert((id(1), id(0)));
    let config = StatusConfig::with_interval(INTERVAL);
    let svcs = start_all(&net, 2, &config);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(svcs[1].get(&id(0)).is_none());
    // Node 1 could not answer node 0's query either.
    assert!(svcs[0].get(&id(1)).is_none());
    assert!(svcs[1].stats().send_failures > 0);

    net.unroutable.lock().clear();
    svcs[1].on_reachable(id(0));
    // Both directions complete within a few hops, long before the query timeout or a tick.
    let took = wait_until(INTERVAL, || converged(&svcs)).await;
    assert!(took <= Duration::from_millis(50), "took {took:?}");
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_changes_is_announced_once() {
    let net = line();
    let config = StatusConfig::with_interval(INTERVAL);
    let svcs = start_all(&net, 2, &config);
    wait_until(2 * INTERVAL, || converged(&svcs)).await;
    let before = svcs[0].stats();
    for h in 0..100 {
        svcs[0].set_app_status(format!("h{h}")).unwrap();
    }
    wait_until(INTERVAL, || converged(&svcs)).await;
    let after = svcs[0].stats();
    assert_eq!(svcs[1].get(&id(0)).unwrap().status.app, "h99");
    assert_eq!(after.seq_packets - before.seq_packets, 1);
    assert_eq!(after.response_packets - before.response_packets, 1);
}

/// Bytes per second per node when nothing changes, against FISCO BCOS's scheme (every node
/// sends its 4-byte seq to every reachable node every second).
#[tokio::test(start_paused = true)]
async fn steady_state_traffic_is_a_fraction_of_fiscos() {
    const N: usize = 5;
    const SECONDS: u64 = 120;
    for refresh_every in [30u32, 0] {
        let net = line();
        let config = StatusConfig {
            refresh_every,
            ..StatusConfig::with_interval(INTERVAL)
        };
        let svcs = start_all(&net, N, &config);
        wait_until(2 * INTERVAL, || converged(&svcs)).await;
        // Let the start-up round settle.
        tokio::time::sleep(2 * INTERVAL).await;
        let before: Vec<u64> = (0..N).map(|i| net.sent_by(i)).collect();
        let stats_before: Vec<StatusStats> = svcs.iter().map(|s| s.stats()).collect();
        tokio::time::sleep(Duration::from_secs(SECONDS)).await;
        let peers = (N - 1) as u64;
        let fisco = peers * (PACKET_OVERHEAD as u64 + 4);
        for i in 0..N {
            let bytes = net.sent_by(i) - before[i];
            let stats = svcs[i].stats();
            assert_eq!(
                stats.wire_bytes() - stats_before[i].wire_bytes(),
                bytes,
                "the service's own counters agree with the transport's"
            );
            let per_second = bytes as f64 / SECONDS as f64;
            let expected = match refresh_every {
                0 => 0,
                r => {
                    peers * (PACKET_OVERHEAD + codec::SEQ_ANNOUNCE_LEN) as u64 * SECONDS
                        / u64::from(r)
                }
            };
            assert_eq!(bytes, expected, "node {i}, refresh_every {refresh_every}");
            assert!(per_second * 20.0 < fisco as f64);
            eprintln!(
                "steady state, N={N}, refresh_every={refresh_every}: node {i} sends \
                 {per_second:.1} B/s (FISCO-style: {fisco} B/s)"
            );
        }
        assert!(converged(&svcs));
    }
}

/// With more reachable nodes than `refresh_every`, the safety net goes to one node per
/// interval, each node in turn: a node's idle traffic stays one StatusSeq per interval
/// however large the network, instead of a burst to every node.
#[tokio::test(start_paused = true)]
async fn the_safety_net_sends_one_announcement_per_interval_in_a_large_network() {
    const LEAVES: u8 = 40;
    let links: Vec<(u8, u8)> = (1..=LEAVES).map(|i| (0, i)).collect();
    let net = Net::new(&links);
    let config = StatusConfig {
        refresh_every: 30,
        ..StatusConfig::with_interval(INTERVAL)
    };
    let svcs = start_all(&net, usize::from(LEAVES) + 1, &config);
    wait_until(4 * INTERVAL, || converged(&svcs)).await;
    tokio::time::sleep(2 * INTERVAL).await;
    let seq = (PACKET_OVERHEAD + codec::SEQ_ANNOUNCE_LEN) as u64;
    let start = net.sent_by(0);
    let mut last = start;
    // Two whole cycles of 40 intervals: every leaf has its turn twice.
    for _ in 0..2 * u32::from(LEAVES) {
        tokio::time::sleep(INTERVAL).await;
        let now = net.sent_by(0);
        assert!(
            now - last <= seq,
            "more than one announcement in an interval"
        );
        last = now;
    }
    assert_eq!(last - start, 2 * u64::from(LEAVES) * seq);
    assert!(converged(&svcs));
}

/// A transport that records what it is asked to send and reaches one fixed peer, and any
/// others a test adds.
struct Recorder {
    peer: NodeId,
    others: Mutex<Vec<NodeId>>,
    sent: Mutex<Vec<(NodeId, PacketType, Bytes)>>,
}

fn recorder(peer: NodeId) -> Arc<Recorder> {
    Arc::new(Recorder {
        peer,
        others: Mutex::new(Vec::new()),
        sent: Mutex::new(Vec::new()),
    })
}

impl StatusTransport for Recorder {
    fn reachable(&self) -> Vec<NodeId> {
        let mut v = vec![self.peer];
        v.extend(self.others.lock().iter().copied());
        v
    }

    fn send(&self, dst: NodeId, t: PacketType, payload: Bytes) -> Result<(), TransportError> {
        self.sent.lock().push((dst, t, payload));
        Ok(())
    }
}

impl Recorder {
    fn take(&self) -> Vec<(PacketType, Bytes)> {
        self.sent.lock().drain(..).map(|(_, t, p)| (t, p)).collect()
    }

    /// The ID of the one query sent since the last call.
    fn query_id(&self) -> u32 {
        let q: Vec<u32> = self
            .take()
            .into_iter()
            .filter(|(t, _)| *t == PacketType::STATUS_REQUEST)
            .map(|(_, p)| StatusQuery::decode(&p).unwrap().query_id)
            .collect();
        assert_eq!(q.len(), 1, "expected exactly one query, got {q:?}");
        q[0]
    }

    fn no_query(&self) {
        assert!(!self
            .take()
            .iter()
            .any(|(t, _)| *t == PacketType::STATUS_REQUEST));
    }
}

fn announce(epoch: u64, seq: u32) -> Bytes {
    SeqAnnounce {
        version: StatusVersion::new(epoch, seq),
        reply_wanted: false,
        view: None,
    }
    .encode()
}

fn answer(query_id: u32, epoch: u64, seq: u32, app: &str) -> Bytes {
    StatusAnswer {
        query_id,
        version: StatusVersion::new(epoch, seq),
        status: with_app(app),
    }
    .encode()
}

#[tokio::test(start_paused = true)]
async fn duplicate_reordered_and_stale_answers_never_roll_back() {
    let peer = id(9);
    let rec = recorder(peer);
    let svc = StatusService::new(id(0), INTERVAL, NodeStatus::default(), rec.clone()).unwrap();
    let mut events = svc.subscribe();
    let feed = |t: PacketType, p: Bytes| svc.on_packet(peer, t, p).unwrap();
    let app = |svc: &StatusService| svc.get(&peer).map(|p| p.status.app.clone());
    const E: u64 = 0xaaaa;
    const E2: u64 = 0x5555;

    feed(PacketType::STATUS_SEQ, announce(E, 1));
    let q1 = rec.query_id();
    feed(PacketType::STATUS_RESPONSE, answer(q1, E, 1, "one"));
    assert_eq!(app(&svc).unwrap(), "one");
    // The same answer again: its query is done.
    feed(PacketType::STATUS_RESPONSE, answer(q1, E, 1, "one"));
    assert_eq!(svc.stats().unmatched_answers, 1);

    // Seq 3 is announced, then (reordered) seq 2: one query for both.
    feed(PacketType::STATUS_SEQ, announce(E, 3));
    let q2 = rec.query_id();
    feed(PacketType::STATUS_SEQ, announce(E, 2));
    rec.no_query();
    // The answer carries seq 2 (it was produced before the change to 3): applied, and since
    // 3 is still to be fetched, a new query follows at once.
    feed(PacketType::STATUS_RESPONSE, answer(q2, E, 2, "two"));
    assert_eq!(app(&svc).unwrap(), "two");
    let q3 = rec.query_id();
    feed(PacketType::STATUS_RESPONSE, answer(q3, E, 3, "three"));
    assert_eq!(app(&svc).unwrap(), "three");
    // A late duplicate of the seq-2 answer: no match, no rollback.
    feed(PacketType::STATUS_RESPONSE, answer(q2, E, 2, "two"));
    assert_eq!(app(&svc).unwrap(), "three");

    // The node restarts in epoch E2.
    feed(PacketType::STATUS_SEQ, announce(E2, 1));
    let q4 = rec.query_id();
    // A zombie answer from the old life with a high seq and a stale query ID: ignored.
    feed(PacketType::STATUS_RESPONSE, answer(q3, E, 9, "zombie"));
    feed(PacketType::STATUS_RESPONSE, answer(q4, E2, 1, "reborn"));
    assert_eq!(app(&svc).unwrap(), "reborn");
    assert_eq!(svc.get(&peer).unwrap().version, StatusVersion::new(E2, 1));
    // A delayed announcement of the old life makes us ask; the live node answers with what
    // we hold, which changes nothing.
    feed(PacketType::STATUS_SEQ, announce(E, 9));
    let q5 = rec.query_id();
    feed(PacketType::STATUS_RESPONSE, answer(q5, E2, 1, "reborn"));
    assert_eq!(svc.get(&peer).unwrap().version, StatusVersion::new(E2, 1));
    rec.no_query();

    let updates: Vec<u32> = std::iter::from_fn(|| events.try_recv().ok())
        .map(|e| e.version.seq)
        .collect();
    assert_eq!(updates, vec![1, 2, 3, 1]);
    assert_eq!(svc.stats().unmatched_answers, 3);
}

#[tokio::test(start_paused = true)]
async fn announcements_stop_once_acknowledged_and_queries_are_answered() {
    let peer = id(9);
    let rec = recorder(peer);
    let svc = StatusService::new(id(0), INTERVAL, with_app("x"), rec.clone()).unwrap();
    let me = svc.local_version();
    svc.tick();
    let first = rec.take();
    let types: Vec<PacketType> = first.iter().map(|(t, _)| *t).collect();
    assert_eq!(
        types,
        vec![PacketType::STATUS_SEQ, PacketType::STATUS_REQUEST]
    );
    let a = SeqAnnounce::decode(&first[0].1).unwrap();
    assert!(a.reply_wanted);
    assert_eq!(a.version, me);
    assert_eq!(a.view, None);

    // Still unacknowledged: announced again (the query is not yet due for a retry).
    svc.tick();
    let again: Vec<PacketType> = rec.take().iter().map(|(t, _)| *t).collect();
    assert_eq!(again, vec![PacketType::STATUS_SEQ]);

    // The peer asks for our status: answered, and that counts as its acknowledgement.
    svc.on_packet(
        peer,
        PacketType::STATUS_REQUEST,
        StatusQuery { query_id: 77 }.encode(),
    )
    .unwrap();
    let sent = rec.take();
    assert_eq!(sent.len(), 1);
    let ans = StatusAnswer::decode(&sent[0].1).unwrap();
    assert_eq!(ans.query_id, 77);
    assert_eq!(ans.version, me);
    assert_eq!(ans.status, with_app("x"));
    tokio::time::advance(3 * INTERVAL).await;
    svc.tick();
    // Acknowledged, so no announcement; the query timed out and is retried.
    let types: Vec<PacketType> = rec.take().iter().map(|(t, _)| *t).collect();
    assert_eq!(types, vec![PacketType::STATUS_REQUEST]);

    // A change un-acknowledges; a StatusSeq whose view holds the new version acknowledges.
    let v2 = svc.set_app_status("y").unwrap();
    svc.tick();
    assert!(rec.take().iter().any(|(t, _)| *t == PacketType::STATUS_SEQ));
    let view = SeqAnnounce {
        version: StatusVersion::new(3, 1),
        reply_wanted: true,
        view: Some(v2),
    };
    svc.on_packet(peer, PacketType::STATUS_SEQ, view.encode())
        .unwrap();
    rec.take();
    svc.tick();
    assert!(!rec.take().iter().any(|(t, _)| *t == PacketType::STATUS_SEQ));
}

#[tokio::test(start_paused = true)]
async fn malformed_packets_are_errors_and_change_nothing() {
    let peer = id(9);
    let rec = recorder(peer);
    let svc = StatusService::new(id(0), INTERVAL, NodeStatus::default(), rec.clone()).unwrap();
    for (t, p) in [
        (PacketType::STATUS_SEQ, Bytes::from_static(&[1, 2, 3])),
        (PacketType::STATUS_REQUEST, Bytes::new()),
        (PacketType::STATUS_RESPONSE, Bytes::from_static(&[0; 20])),
    ] {
        assert!(matches!(
            svc.on_packet(peer, t, p),
            Err(StatusError::Malformed { .. })
        ));
    }
    assert_eq!(
        svc.on_packet(peer, PacketType::UNICAST, Bytes::new()),
        Err(StatusError::NotStatusPacket(PacketType::UNICAST))
    );
    assert_eq!(svc.stats().malformed, 3);
    assert!(svc.all().is_empty());
    assert!(rec.take().is_empty());
    // Our own packets looped back are ignored.
    svc.on_packet(id(0), PacketType::STATUS_SEQ, announce(1, 1))
        .unwrap();
    assert!(rec.take().is_empty());
}

/// Requests, announcements and reachability from `n` nodes, 1..=n, all reachable.
fn reach_many(rec: &Recorder, n: u8) {
    rec.others.lock().extend((1..=n).map(id));
}

#[tokio::test(start_paused = true)]
async fn the_table_is_bounded_whatever_asks_to_be_tracked() {
    let rec = recorder(id(9));
    reach_many(&rec, 8);
    let config = StatusConfig {
        max_nodes: 2,
        ..StatusConfig::with_interval(INTERVAL)
    };
    let svc =
        StatusService::with_config(id(0), config, NodeStatus::default(), rec.clone()).unwrap();
    for i in 1..=5 {
        svc.on_packet(id(i), PacketType::STATUS_SEQ, announce(1, 1))
            .unwrap();
    }
    let queried: HashSet<NodeId> = rec
        .sent
        .lock()
        .iter()
        .filter(|(_, t, _)| *t == PacketType::STATUS_REQUEST)
        .map(|(d, _, _)| *d)
        .collect();
    assert_eq!(queried.len(), 2);
    // Queries from, reachability of, and the periodic work over more nodes track none of
    // them: the table stays at its bound.
    for i in 6..=8 {
        svc.on_packet(
            id(i),
            PacketType::STATUS_REQUEST,
            StatusQuery { query_id: 1 }.encode(),
        )
        .unwrap();
        svc.on_reachable(id(i));
    }
    svc.tick();
    let stats = svc.stats();
    assert_eq!(stats.tracked_nodes, 2);
    assert!(stats.untracked >= 3 + 3 + 3, "{stats:?}");
}

#[tokio::test(start_paused = true)]
async fn an_oversized_answer_is_dropped_undecoded_and_its_query_fails() {
    let peer = id(9);
    let rec = recorder(peer);
    let config = StatusConfig {
        max_status_len: 1024,
        ..StatusConfig::with_interval(INTERVAL)
    };
    let svc =
        StatusService::with_config(id(0), config, NodeStatus::default(), rec.clone()).unwrap();
    svc.on_packet(peer, PacketType::STATUS_SEQ, announce(5, 1))
        .unwrap();
    let q = rec.query_id();
    let big = StatusAnswer {
        query_id: q,
        version: StatusVersion::new(5, 1),
        status: with_app(&"x".repeat(2000)),
    }
    .encode();
    svc.on_packet(peer, PacketType::STATUS_RESPONSE, big)
        .unwrap();
    assert!(svc.get(&peer).is_none());
    let stats = svc.stats();
    assert_eq!((stats.oversized, stats.malformed), (1, 0));
    assert_eq!(stats.held_status_bytes, 0);
    // The query failed rather than waiting out its timeout: the next interval asks again,
    // and a status within the limit is taken.
    svc.tick();
    let q2 = rec.query_id();
    assert_ne!(q2, q);
    svc.on_packet(peer, PacketType::STATUS_RESPONSE, answer(q2, 5, 1, "fits"))
        .unwrap();
    assert_eq!(svc.get(&peer).unwrap().status.app, "fits");
}

#[tokio::test(start_paused = true)]
async fn held_statuses_stay_within_their_total() {
    let rec = recorder(id(9));
    reach_many(&rec, 20);
    let one = with_app(&"s".repeat(3000)).held_bytes();
    let config = StatusConfig {
        max_held_bytes: 5 * one,
        ..StatusConfig::with_interval(INTERVAL)
    };
    let svc =
        StatusService::with_config(id(0), config, NodeStatus::default(), rec.clone()).unwrap();
    for i in 1..=20u8 {
        svc.on_packet(id(i), PacketType::STATUS_SEQ, announce(7, 1))
            .unwrap();
        let q = rec.query_id();
        svc.on_packet(
            id(i),
            PacketType::STATUS_RESPONSE,
            answer(q, 7, 1, &"s".repeat(3000)),
        )
        .unwrap();
    }
    let stats = svc.stats();
    assert_eq!(svc.all().len(), 5);
    assert_eq!(stats.held_status_bytes, 5 * one as u64);
    assert_eq!(stats.over_total, 15);
    // A node already held may still replace its copy with one of the same size.
    svc.on_packet(id(1), PacketType::STATUS_SEQ, announce(7, 2))
        .unwrap();
    let q = rec.query_id();
    svc.on_packet(
        id(1),
        PacketType::STATUS_RESPONSE,
        answer(q, 7, 2, &"t".repeat(3000)),
    )
    .unwrap();
    assert_eq!(svc.get(&id(1)).unwrap().version, StatusVersion::new(7, 2));
    assert_eq!(svc.stats().held_status_bytes, 5 * one as u64);
}

#[tokio::test(start_paused = true)]
async fn announcements_and_queries_from_unreachable_nodes_are_ignored() {
    let rec = recorder(id(9));
    let svc = StatusService::new(id(0), INTERVAL, NodeStatus::default(), rec.clone()).unwrap();
    let stranger = id(66);
    svc.on_packet(stranger, PacketType::STATUS_SEQ, announce(1, 1))
        .unwrap();
    svc.on_packet(
        stranger,
        PacketType::STATUS_REQUEST,
        StatusQuery { query_id: 3 }.encode(),
    )
    .unwrap();
    assert!(
        rec.take().is_empty(),
        "nothing sent towards an unreachable node"
    );
    let stats = svc.stats();
    assert_eq!(stats.unreachable_sources, 2);
    assert_eq!(stats.tracked_nodes, 0);
    // Reachable, the same packets are handled.
    rec.others.lock().push(stranger);
    svc.on_packet(
        stranger,
        PacketType::STATUS_REQUEST,
        StatusQuery { query_id: 3 }.encode(),
    )
    .unwrap();
    let sent = rec.take();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, PacketType::STATUS_RESPONSE);
}

#[tokio::test(start_paused = true)]
async fn query_ids_are_drawn_afresh_for_every_query() {
    let peer = id(9);
    let rec = recorder(peer);
    let svc = StatusService::new(id(0), INTERVAL, NodeStatus::default(), rec.clone()).unwrap();
    let mut ids = Vec::new();
    for epoch in 1..=64u64 {
        // Every new epoch supersedes the outstanding query with a new one.
        svc.on_packet(peer, PacketType::STATUS_SEQ, announce(epoch, 1))
            .unwrap();
        ids.push(rec.query_id());
    }
    let distinct: HashSet<u32> = ids.iter().copied().collect();
    assert_eq!(distinct.len(), ids.len());
    // A counter would make each the last plus one; 64 random draws in a row never are.
    let steps = ids
        .windows(2)
        .filter(|w| w[1] == w[0].wrapping_add(1))
        .count();
    assert!(steps < 2, "{ids:?}");
}

#[tokio::test(start_paused = true)]
async fn answers_per_requester_are_rate_limited() {
    let peer = id(9);
    let rec = recorder(peer);
    reach_many(&rec, 1);
    let config = StatusConfig {
        requests_per_sec: 20,
        ..StatusConfig::with_interval(INTERVAL)
    };
    let svc = StatusService::with_config(id(0), config, with_app("x"), rec.clone()).unwrap();
    let flood = |from: NodeId, n: u32| {
        for q in 0..n {
            svc.on_packet(
                from,
                PacketType::STATUS_REQUEST,
                StatusQuery { query_id: q }.encode(),
            )
            .unwrap();
        }
        rec.take()
            .iter()
            .filter(|(t, _)| *t == PacketType::STATUS_RESPONSE)
            .count()
    };
    assert_eq!(flood(peer, 1000), 20, "the burst, then nothing");
    assert_eq!(svc.stats().rate_limited, 980);
    // Another requester has a bucket of its own.
    assert_eq!(flood(id(1), 5), 5);
    // Half a second refills half the bucket.
    tokio::time::advance(INTERVAL / 2).await;
    assert_eq!(flood(peer, 1000), 10);
    let stats = svc.stats();
    assert_eq!(stats.response_packets, 35);
}

#[test]
fn local_updates_are_validated() {
    let rec = recorder(id(9));
    let config = StatusConfig {
        max_status_len: 64,
        ..StatusConfig::default()
    };
    let svc = StatusService::with_config(id(0), config, NodeStatus::default(), rec).unwrap();
    let v = svc.local_version();
    assert!(matches!(
        svc.set_app_status(vec![0u8; 100]),
        Err(StatusError::TooLarge { max: 64, .. })
    ));
    assert_eq!(
        svc.add_topic(""),
        Err(StatusError::EmptyName { field: "topic" })
    );
    assert_eq!(
        svc.set_versions(3, 2),
        Err(StatusError::VersionRange { min: 3, max: 2 })
    );
    assert_eq!(svc.local_version(), v);
    assert_eq!(svc.add_topic("t").unwrap().seq, 2);
    assert_eq!(svc.add_topic("t").unwrap().seq, 2);
    assert_eq!(svc.remove_topic("t").unwrap().seq, 3);
}

#[test]
fn local_groups_and_topics_follow_every_accepted_change_only() {
    let rec = recorder(id(9));
    let initial = LocalStatus::new(7, NodeStatus::with_groups(["g2", "g1"]), 1024).unwrap();
    let config = StatusConfig {
        max_status_len: 1024,
        ..StatusConfig::default()
    };
    let svc = StatusService::with_local(id(0), config, initial, rec);
    assert_eq!(svc.local_version(), StatusVersion::new(7, 1));
    assert_eq!(svc.local_groups(), ["g1", "g2"]);
    assert!(svc.local_in_group("g1") && svc.local_in_group("g2"));
    assert!(!svc.local_in_group("g3") && !svc.local_has_topic("t"));

    svc.set_topics(["t2", "t1"]).unwrap();
    svc.set_groups(["g3"]).unwrap();
    assert_eq!(svc.local_topics(), ["t1", "t2"]);
    assert!(svc.local_has_topic("t1") && svc.local_has_topic("t2"));
    assert!(svc.local_in_group("g3") && !svc.local_in_group("g1"));

    // A refused change leaves what is delivered here as it was.
    assert!(svc.set_topics(["t3", ""]).is_err());
    assert_eq!(svc.local_topics(), ["t1", "t2"]);
    assert!(!svc.local_has_topic("t3"));
    assert_eq!(svc.local().1.topics, svc.local_topics());
}

/// The StatusSeq, StatusRequest and StatusResponse examples in `docs/protocol.md` decode with
/// this codec (`tests/wire_golden.rs` checks their headers and options).
#[test]
fn protocol_examples_decode() {
    let doc = include_str!("../../../../../docs/protocol.md");
    let mut seen = HashSet::new();
    let mut rest = doc;
    while let Some(at) = rest.find("```hex\n") {
        let body = &rest[at + 7..];
        let end = body.find("```").unwrap();
        let digits: String = body[..end].split_whitespace().collect();
        rest = &body[end + 3..];
        let bytes = hex::decode(digits.trim_start_matches("0x")).unwrap();
        let p = match crate::wire::Packet::decode_exact(&bytes, crate::wire::DEFAULT_MAX_PACKET) {
            // Direct-form examples need their link; none of them is a status packet.
            Err(crate::wire::WireError::DirectOffLink) => continue,
            other => other.unwrap(),
        };
        let status_type = [
            PacketType::STATUS_SEQ,
            PacketType::STATUS_REQUEST,
            PacketType::STATUS_RESPONSE,
        ]
        .contains(&p.packet_type);
        if !status_type {
            continue;
        }
        let o = p.options.as_ref().unwrap();
        assert_eq!(o.group, "");
        assert_eq!(o.module, 0);
        assert_eq!(o.dsts.len(), 1);
        assert_eq!(p.encoded_len(), PACKET_OVERHEAD + p.payload.len());
        match p.packet_type {
            PacketType::STATUS_SEQ => {
                let a = SeqAnnounce::decode(&p.payload).unwrap();
                assert!(a.reply_wanted);
            }
            PacketType::STATUS_REQUEST => {
                StatusQuery::decode(&p.payload).unwrap();
            }
            _ => {
                let a = StatusAnswer::decode(&p.payload).unwrap();
                assert_eq!(a.status.app, "height=42");
                assert_eq!(a.status.encoded_len(), 39);
            }
        }
        seen.insert(p.packet_type);
    }
    assert_eq!(seen.len(), 3, "an example of each status packet");
}

#[tokio::test(start_paused = true)]
async fn a_path_slower_than_the_query_timeout_still_gets_its_answer_in() {
    // Every answer arrives 3 s after its query, longer than the 2 s query timeout: only the
    // latest query's answer is taken, so with a fixed timeout each answer would come in just
    // after its query was superseded, for ever. (Found by the network simulation over a link
    // of 1.1 s latency.)
    const ROUND_TRIP: Duration = Duration::from_secs(3);
    let peer = id(9);
    let rec = recorder(peer);
    let svc = StatusService::new(id(0), INTERVAL, NodeStatus::default(), rec.clone()).unwrap();
    const E: u64 = 0xbbbb;
    svc.on_packet(peer, PacketType::STATUS_SEQ, announce(E, 1))
        .unwrap();
    let start = tokio::time::Instant::now();
    let mut asked = vec![(start, rec.query_id())];
    while svc.get(&peer).is_none() {
        assert!(
            start.elapsed() < 20 * INTERVAL,
            "no answer taken in {asked:?}"
        );
        tokio::time::advance(INTERVAL).await;
        let now = tokio::time::Instant::now();
        for &(_, q) in asked.iter().filter(|(at, _)| *at + ROUND_TRIP == now) {
            svc.on_packet(peer, PacketType::STATUS_RESPONSE, answer(q, E, 1, "far"))
                .unwrap();
        }
        svc.tick();
        for (t, p) in rec.take() {
            if t == PacketType::STATUS_REQUEST {
                asked.push((now, StatusQuery::decode(&p).unwrap().query_id));
            }
        }
    }
    assert_eq!(svc.get(&peer).unwrap().status.app, "far");
    assert!(
        svc.stats().unmatched_answers >= 1,
        "the first answer came too late"
    );
    assert!(
        start.elapsed() <= 6 * INTERVAL,
        "took {:?}",
        start.elapsed()
    );
}
