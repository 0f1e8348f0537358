//! Partitions: `chainmesh node` processes (`chainmesh_testkit::procs`), each in its own
//! network namespace with its own address (`chainmesh_testkit::netns`), under the nodes' own
//! load generator while nftables rules cut, heal and slow the links between them. Needs root,
//! iproute2 and nftables; elsewhere every test prints `skipped: ...` and passes.
//! docs/reliability.md (Partitions) has the topology and the figures.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chainmesh::config::TimersConfig;
use chainmesh_testkit::netns::NetNs;
use chainmesh_testkit::procs::{LoadReport, ProcNet, ProcNetOptions, RequestCounts};
use serde_json::{json, Value};

/// Longest wait for a condition the test expects.
const WAIT: Duration = Duration::from_secs(30);
/// How long a probe request may take before the node answers with a typed timeout.
const REQUEST_TIMEOUT_MS: u64 = 2000;
/// The outer deadline on a probe's HTTP call: a probe the node has neither answered nor
/// failed by then is counted lost.
const OUTER_DEADLINE: Duration = Duration::from_millis(REQUEST_TIMEOUT_MS + 3000);

/// Heartbeat 200 ms, a peer silent for 1 s is dropped, redial backoff 50-500 ms, statuses
/// every 200 ms: a cut is noticed in about a second, and a 2-core machine running six nodes
/// and other builds does not drop healthy links for a scheduling hiccup.
fn timers() -> TimersConfig {
    TimersConfig {
        heartbeat_interval: Duration::from_millis(200),
        idle_timeout_intervals: 5,
        connect_timeout: Duration::from_secs(1),
        handshake_timeout: Duration::from_secs(2),
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        status_interval: Duration::from_millis(200),
    }
}

/// `n` node processes in `n` namespaces, joined into a full mesh, each running `load`.
struct Net {
    procs: ProcNet,
    ids: Vec<String>,
    agent: ureq::Agent,
    _dir: tempfile::TempDir,
    // Last: the nodes are stopped before their namespaces go.
    ns: NetNs,
}

impl Net {
    /// Starts the network, or `None` (after `skipped: ...`) where namespaces cannot be made.
    fn start(n: usize, load: &str) -> Option<Net> {
        let ns = NetNs::or_skip(n)?;
        let dir = tempfile::Builder::new()
            .prefix("chainmesh-partition-")
            .tempdir()
            .expect("temp dir");
        let mut opts = ProcNetOptions::new(env!("CARGO_BIN_EXE_chainmesh"));
        opts.wrap = (0..n)
            .map(|i| ns.wrap(i).into_iter().map(OsString::from).collect())
            .collect();
        opts.hosts = (0..n).map(|i| ns.addr(i).to_string()).collect();
        opts.timers = timers();
        opts.load = Some(load.into());
        let procs = ProcNet::new(dir.path(), n, opts).expect("start the nodes");
        Some(Net {
            ids: (0..n).map(|i| procs.node_id(i).to_string()).collect(),
            procs,
            agent: agent(Duration::from_secs(5)),
            _dir: dir,
            ns,
        })
    }

    fn get(&self, i: usize, path: &str) -> Value {
        self.procs.get_json(i, path).unwrap_or(Value::Null)
    }

    fn admin(&self, i: usize) -> String {
        self.procs.admin(i).expect("the node runs")
    }

    /// Node `i`'s connected peers: node ID -> when the session started.
    fn sessions(&self, i: usize) -> BTreeMap<String, u64> {
        self.get(i, "/v1/peers")["peers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["connected"] == true)
            .filter_map(|p| {
                Some((
                    p["node_id"].as_str()?.to_owned(),
                    p["connected_since_ms"].as_u64()?,
                ))
            })
            .collect()
    }

    /// Node `i`'s routes: node ID -> (next hop, distance).
    fn routes(&self, i: usize) -> BTreeMap<String, (String, u64)> {
        self.get(i, "/v1/routes")["routes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| {
                Some((
                    r["dst"].as_str()?.to_owned(),
                    (r["next_hop"].as_str()?.to_owned(), r["distance"].as_u64()?),
                ))
            })
            .collect()
    }

    /// Whether every node of `group` has a session with, and a one-hop route to, every other
    /// node of `group`, and neither to a node outside it.
    fn is_whole_mesh(&self, group: &[usize]) -> bool {
        self.mesh_within(group, true)
    }

    /// Whether every node of `group` has a session with, and a one-hop route to, every other
    /// node of `group`; with `only`, also none to a node outside it.
    fn mesh_within(&self, group: &[usize], only: bool) -> bool {
        group.iter().all(|&i| {
            let sessions = self.sessions(i);
            let routes = self.routes(i);
            let want: Vec<&String> = group
                .iter()
                .filter(|&&j| j != i)
                .map(|&j| &self.ids[j])
                .collect();
            let exact = !only || (sessions.len() == want.len() && routes.len() == want.len());
            exact
                && want.iter().all(|id| sessions.contains_key(*id))
                && want.iter().all(|id| {
                    routes
                        .get(*id)
                        .is_some_and(|(hop, d)| hop == *id && *d == 1)
                })
        })
    }

    /// Polls `cond` every 20 ms until it holds; returns how long that took, or panics after
    /// [`WAIT`] naming `what`.
    fn wait(&self, what: &str, mut cond: impl FnMut(&Net) -> bool) -> Duration {
        let start = Instant::now();
        while !cond(self) {
            assert!(
                start.elapsed() < WAIT,
                "{what}: not within {WAIT:?}; node 0 log tail: {}",
                tail(&self.procs.log(0))
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        start.elapsed()
    }

    /// One echo request from `from` to `to` through the admin API (`POST /v1/ping`).
    fn ping(&self, from: usize, to: usize, size: usize) -> Outcome {
        ping(
            &self.agent,
            &self.admin(from),
            &self.ids[to],
            size,
            REQUEST_TIMEOUT_MS,
        )
    }

    /// Probes pairs on top of the load generator's random targets: one echo request at a
    /// time from `from` to `to`, one every `every`, each pair on a thread of its own so a
    /// slow pair holds up no other, every outcome kept.
    fn probe(&self, pairs: &[(usize, usize)], size: usize, every: Duration) -> Probes {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = pairs
            .iter()
            .map(|&(from, to)| {
                let stop = stop.clone();
                let (admin, id) = (self.admin(from), self.ids[to].clone());
                std::thread::spawn(move || {
                    let agent = agent(OUTER_DEADLINE);
                    let mut seen = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let at = Instant::now();
                        let outcome = ping(&agent, &admin, &id, size, REQUEST_TIMEOUT_MS);
                        seen.push(Sample {
                            from,
                            to,
                            at,
                            outcome,
                        });
                        std::thread::sleep(every);
                    }
                    seen
                })
            })
            .collect();
        Probes { stop, threads }
    }

    /// Every node's last load report line.
    fn snapshot(&self) -> Vec<RequestCounts> {
        (0..self.procs.len())
            .map(|i| {
                self.procs
                    .last_report(i)
                    .ok()
                    .flatten()
                    .map(|r| r.requests)
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Stops every node (SIGTERM: each writes its final report line once its requests have
    /// resolved) and checks every node's final counts: each request answered or failed with
    /// a typed error, none lost or left in flight, no broadcast delivered twice.
    fn finish(&mut self) -> Vec<LoadReport> {
        assert!(
            self.procs.terminate_all().expect("stop the nodes"),
            "a node did not exit cleanly"
        );
        (0..self.procs.len())
            .map(|i| {
                let last = self
                    .procs
                    .last_report(i)
                    .expect("read the report")
                    .expect("a report line");
                let r = &last.requests;
                assert!(last.is_final, "node {i}: no final report line");
                assert_eq!(r.lost, 0, "node {i}: requests lost: {r:?}");
                assert_eq!(r.in_flight, 0, "node {i}: requests unresolved: {r:?}");
                assert_eq!(
                    r.sent,
                    r.answered + r.failed_total(),
                    "node {i}: every request has one outcome: {r:?}"
                );
                assert_eq!(
                    last.broadcasts.duplicates, 0,
                    "node {i}: {:?}",
                    last.broadcasts
                );
                last
            })
            .collect()
    }
}

/// Every ordered pair of distinct nodes of `nodes`.
fn pairs(nodes: &[usize]) -> Vec<(usize, usize)> {
    nodes
        .iter()
        .flat_map(|&a| nodes.iter().filter(move |&&b| b != a).map(move |&b| (a, b)))
        .collect()
}

/// `later - earlier`, summed over nodes: the requests of an interval.
fn requests_between(earlier: &[RequestCounts], later: &[RequestCounts]) -> RequestCounts {
    let mut d = RequestCounts::default();
    for (e, l) in earlier.iter().zip(later) {
        d.sent += l.sent.saturating_sub(e.sent);
        d.answered += l.answered.saturating_sub(e.answered);
        d.lost += l.lost.saturating_sub(e.lost);
        for (kind, n) in &l.failed {
            let before = e.failed.get(kind).copied().unwrap_or(0);
            *d.failed.entry(kind.clone()).or_default() += n.saturating_sub(before);
        }
    }
    d.failed.retain(|_, n| *n > 0);
    d
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

/// How one request ended.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// Answered; the response crossed this many links.
    Answered { hops: u64 },
    /// Failed with the node's typed error: HTTP status and message.
    Failed(u16, String),
    /// Neither by the outer deadline (or no answer from the admin API at all).
    Lost(String),
}

fn ping(agent: &ureq::Agent, admin: &str, to: &str, size: usize, timeout_ms: u64) -> Outcome {
    let body = json!({"to": to, "size": size, "timeout_ms": timeout_ms});
    match agent
        .post(format!("http://{admin}/v1/ping"))
        .send_json(body)
    {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let v: Value = resp.body_mut().read_json().unwrap_or(Value::Null);
            match (status, v["hops"].as_u64()) {
                (200, Some(hops)) => Outcome::Answered { hops },
                _ => Outcome::Failed(status, v["error"].as_str().unwrap_or_default().into()),
            }
        }
        Err(e) => Outcome::Lost(e.to_string()),
    }
}

/// One probe request.
#[derive(Debug, Clone)]
struct Sample {
    from: usize,
    to: usize,
    at: Instant,
    outcome: Outcome,
}

/// Running probes.
struct Probes {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Vec<Sample>>>,
}

impl Probes {
    /// Stops the probes and returns every request they made.
    fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .flat_map(|t| t.join().expect("load thread"))
            .collect()
    }
}

/// A typed failure's kind: its HTTP status and message with the node ID left out, e.g.
/// `404 node _ is unreachable`.
fn error_kind(status: u16, msg: &str) -> String {
    let words: Vec<&str> = msg
        .split_whitespace()
        .map(|w| {
            let hex = w.len() >= 8 && w.bytes().all(|b| b.is_ascii_hexdigit());
            if hex {
                "_"
            } else {
                w
            }
        })
        .collect();
    format!("{status} {}", words.join(" "))
}

/// Counts of outcomes, with the typed failures by kind.
#[derive(Debug, Default)]
struct Tally {
    answered: usize,
    failed: BTreeMap<String, usize>,
    lost: Vec<String>,
}

impl Tally {
    fn of<'a>(samples: impl IntoIterator<Item = &'a Sample>) -> Tally {
        let mut t = Tally::default();
        for s in samples {
            match &s.outcome {
                Outcome::Answered { .. } => t.answered += 1,
                Outcome::Failed(status, msg) => {
                    *t.failed.entry(error_kind(*status, msg)).or_default() += 1;
                }
                Outcome::Lost(why) => t.lost.push(why.clone()),
            }
        }
        t
    }

    fn failed_total(&self) -> usize {
        self.failed.values().sum()
    }
}

/// Load of every node in the split test: echo requests, unicasts and broadcasts to random
/// reachable nodes.
const SPLIT_LOAD: &str = "requests=20,unicasts=10,broadcasts=5,size=256";

/// Six nodes, split into {0,1,2} and {3,4,5} for a few seconds under load from every node,
/// then healed. Every request ends answered or with a typed error, none lost, no broadcast
/// delivered twice; each half keeps its own links (the same sessions throughout) and
/// routes; after the heal the links, routes and statuses are whole again.
#[test]
fn split_in_halves_under_load_resolves_every_request_and_heals() {
    let Some(mut net) = Net::start(6, SPLIT_LOAD) else {
        return;
    };
    let all: Vec<usize> = (0..6).collect();
    let (a, b) = ([0, 1, 2], [3, 4, 5]);
    let formed = net.procs.wait_whole(WAIT).expect("the mesh forms");
    println!("mesh of 6 whole in {:?}", formed.whole);
    net.wait("one-hop routes everywhere", |n| n.is_whole_mesh(&all));

    let before: Vec<BTreeMap<String, u64>> = all.iter().map(|&i| net.sessions(i)).collect();
    let at_split = net.snapshot();
    net.ns.split(&a, &b).expect("split");
    let detected = net.wait("each half sees only itself", |n| {
        n.is_whole_mesh(&a) && n.is_whole_mesh(&b)
    });
    println!("split detected in {detected:?}");
    // The split lasts a chosen interval past its detection, with the load running.
    std::thread::sleep(Duration::from_secs(3));
    assert!(net.is_whole_mesh(&a) && net.is_whole_mesh(&b));
    for half in [&a[..], &b[..]] {
        for &i in half {
            let now = net.sessions(i);
            for &j in half.iter().filter(|&&j| j != i) {
                let id = &net.ids[j];
                assert_eq!(
                    now.get(id),
                    before[i].get(id),
                    "node {i}'s session with {j} (same half) was replaced during the split"
                );
            }
        }
    }
    let at_heal = net.snapshot();

    let heal_at = Instant::now();
    net.ns.heal_all().expect("heal");
    // Convergence counts from the moment the last rule is gone.
    let healed = Instant::now();
    let times = net
        .procs
        .wait_whole(WAIT)
        .expect("whole again after the heal");
    net.wait("one-hop routes everywhere again", |n| n.is_whole_mesh(&all));
    let one_hop = healed.elapsed();
    println!(
        "heal (rules removed in {:?}): links whole after {:?}, routes {:?}, statuses {:?}, \
         all three {:?}; every route one hop after {one_hop:?}",
        healed - heal_at,
        times.links,
        times.routes,
        times.statuses,
        times.whole
    );
    // Requests across the former split get through again.
    net.wait("requests across the former split are answered", |n| {
        matches!(n.ping(0, 5, 0), Outcome::Answered { .. })
    });

    let during = requests_between(&at_split, &at_heal);
    println!("requests during the split: {during:?}");
    assert!(during.answered > 0, "no request answered during the split");
    assert!(
        during.failed_total() > 0,
        "no request to the other half failed while the cut was being noticed"
    );
    let finals = net.finish();
    print_totals(&finals);
}

/// What the final report lines add up to.
fn print_totals(finals: &[LoadReport]) {
    let mut requests = RequestCounts::default();
    let (mut uni, mut bc) = ((0, 0, 0), (0, 0, 0));
    for r in finals {
        requests.sent += r.requests.sent;
        requests.answered += r.requests.answered;
        requests.lost += r.requests.lost;
        for (kind, n) in &r.requests.failed {
            *requests.failed.entry(kind.clone()).or_default() += n;
        }
        uni = (
            uni.0 + r.unicasts.sent,
            uni.1 + r.unicasts.send_failed,
            uni.2 + r.unicasts.received,
        );
        bc = (
            bc.0 + r.broadcasts.sent,
            bc.1 + r.broadcasts.received,
            bc.2 + r.broadcasts.duplicates,
        );
    }
    requests.failed.retain(|_, n| *n > 0);
    println!("requests in all: {requests:?}");
    println!(
        "unicasts: {} sent, {} failed to send, {} received; broadcasts: {} sent, {} received, \
         {} duplicates",
        uni.0, uni.1, uni.2, bc.0, bc.1, bc.2
    );
}

/// Four nodes; every packet from node 1 to node 0 is dropped while node 0's still reach
/// node 1. The link between them dies (node 0 hears nothing; no TCP handshake completes either
/// way), both route to each other through a relay, requests between them are answered over
/// two hops; on heal the direct link returns. Then node 1 only may not dial node 0 (its
/// SYNs dropped): node 0's dial gives them their direct link back.
#[test]
fn one_way_cut_is_routed_around_and_heals() {
    let Some(mut net) = Net::start(4, "requests=10,broadcasts=2,size=256") else {
        return;
    };
    let all: Vec<usize> = (0..4).collect();
    net.wait("the mesh forms", |n| n.is_whole_mesh(&all));
    let probes = net.probe(&[(0, 1), (1, 0)], 64, Duration::from_millis(100));
    let cut_at = Instant::now();
    net.ns.cut_one_way(1, 0).expect("cut");
    let relayed = |n: &Net, i: usize, j: usize| {
        !n.sessions(i).contains_key(&n.ids[j])
            && n.routes(i)
                .get(&n.ids[j])
                .is_some_and(|(hop, d)| *d == 2 && hop != &n.ids[j])
    };
    let around = net.wait("0 and 1 route around the cut", |n| {
        relayed(n, 0, 1) && relayed(n, 1, 0)
    });
    println!("routed around the one-way cut in {around:?}");
    for (from, to) in [(0, 1), (1, 0)] {
        net.wait(
            "a request across the cut is answered through a relay",
            |n| n.ping(from, to, 64) == Outcome::Answered { hops: 2 },
        );
    }
    let relayed_at = Instant::now();
    // The cut lasts a chosen interval more, with the load running through the relay.
    std::thread::sleep(Duration::from_secs(2));
    assert!(net.mesh_within(&[0, 2, 3], false) && net.mesh_within(&[1, 2, 3], false));

    let heal_at = Instant::now();
    net.ns.heal(0, 1).expect("heal");
    let healed = net.wait("the direct link returns", |n| n.is_whole_mesh(&all));
    println!("direct link back {healed:?} after the heal");
    assert_eq!(net.ping(0, 1, 64), Outcome::Answered { hops: 1 });

    // Now node 1 cannot open a connection to node 0, but node 0 can to node 1. Cutting the
    // link both ways for a moment makes both sides dial again.
    net.ns.cut(0, 1).expect("cut");
    net.wait("the link drops", |n| relayed(n, 0, 1) && relayed(n, 1, 0));
    net.ns.block_dial(1, 0).expect("block dial");
    net.ns.uncut(0, 1).expect("uncut");
    let redial = net.wait("node 0's dial restores the direct link", |n| {
        n.is_whole_mesh(&all)
    });
    println!("direct link back {redial:?} with only node 0 able to dial");
    let direction = net.get(0, "/v1/peers")["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["node_id"] == net.ids[1].as_str())
        .map(|p| p["direction"].clone());
    assert_eq!(direction, Some(json!("outbound")));
    net.ns.heal_all().expect("heal");

    let samples = probes.finish();
    let in_cut = |s: &&Sample| s.at >= cut_at && s.at < heal_at;
    let pair = Tally::of(samples.iter().filter(in_cut));
    let through_relay = Tally::of(samples.iter().filter(in_cut).filter(|s| s.at >= relayed_at));
    println!("probes between 0 and 1 during the one-way cut: {pair:?}");
    println!("of those, sent once the routes went through the relay: {through_relay:?}");
    let all_probes = Tally::of(&samples);
    assert!(
        all_probes.lost.is_empty(),
        "probes lost: {:?}",
        all_probes.lost
    );
    assert!(
        through_relay.answered > 0,
        "no probe between 0 and 1 got through"
    );
    assert!(
        through_relay.failed.is_empty(),
        "probes through the relay failed: {:?}",
        through_relay.failed
    );
    print_totals(&net.finish());
}

/// Four nodes; node 3's link limited to 256 kbit/s both ways while every node's load
/// generator sends 4 KiB requests and unicasts (random bytes: they do not compress) to random
/// nodes, more than the slow link carries. Requests to and from node 3 still resolve (answered
/// or a typed error), none is lost, and probes among the other three are all answered: the
/// slow link holds up only its own traffic.
#[test]
fn slow_link_resolves_its_traffic_without_holding_up_the_rest() {
    let Some(mut net) = Net::start(4, "requests=10,unicasts=5,size=4096") else {
        return;
    };
    let all: Vec<usize> = (0..4).collect();
    net.wait("the mesh forms", |n| n.is_whole_mesh(&all));
    net.ns.slow(3, "256kbit").expect("slow");
    let at_slow = net.snapshot();
    let probes = net.probe(&pairs(&all), 1024, Duration::from_millis(100));
    // The slow phase lasts a chosen interval.
    std::thread::sleep(Duration::from_secs(8));
    let samples = probes.finish();
    let at_end = net.snapshot();
    net.ns.unslow(3).expect("unslow");
    net.wait("the mesh is whole after the slow phase", |n| {
        n.is_whole_mesh(&all)
    });

    let slow = Tally::of(samples.iter().filter(|s| s.from == 3 || s.to == 3));
    let fast = Tally::of(samples.iter().filter(|s| s.from != 3 && s.to != 3));
    println!("probes through node 3's link: {slow:?}; among the others: {fast:?}");
    println!(
        "load requests during the slow phase: {:?}",
        requests_between(&at_slow, &at_end)
    );
    assert!(slow.lost.is_empty(), "probes lost: {:?}", slow.lost);
    assert!(fast.lost.is_empty(), "probes lost: {:?}", fast.lost);
    assert!(slow.answered > 0, "nothing through the slow link");
    assert_eq!(
        fast.failed_total(),
        0,
        "probes among the fast nodes failed: {:?}",
        fast.failed
    );
    assert!(fast.answered > 0);
    print_totals(&net.finish());
}
