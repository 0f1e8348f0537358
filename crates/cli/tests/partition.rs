//! Partitions: `chainmesh node` processes, each in its own network namespace with its own
//! address (`chainmesh_testkit::netns`), under request load while nftables rules cut, heal and
//! slow the links between them. Needs root, iproute2 and nftables; elsewhere every test prints
//! `skipped: ...` and passes. docs/reliability.md (Partitions) has the topology and figures.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chainmesh::config::{Config, IdentityConfig, TimersConfig};
use chainmesh::identity::{generate_node_files, Curve};
use chainmesh_testkit::netns::NetNs;
use serde_json::{json, Value};

/// P2P and admin ports: each node is alone in its namespace, on its own address, so a fixed
/// port cannot clash with anything.
const P2P_PORT: u16 = 30300;
const ADMIN_PORT: u16 = 31300;
/// Longest wait for a condition the test expects.
const WAIT: Duration = Duration::from_secs(30);
/// How long a ping may take before the node answers with a typed timeout.
const REQUEST_TIMEOUT_MS: u64 = 2000;
/// The outer deadline on a ping's HTTP call: a ping the node has neither answered nor failed
/// by then is counted lost.
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

/// A `chainmesh node` process in a namespace.
struct NsNode {
    child: Child,
    log: PathBuf,
    // Held open so the node's later writes to stdout never hit a closed pipe.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl NsNode {
    fn start(wrap: &[String], config: &Path) -> NsNode {
        let log = config.with_extension("log");
        let file = std::fs::File::create(&log).expect("log file");
        let (program, prefix) = wrap.split_first().expect("a command prefix");
        let mut child = Command::new(program)
            .args(prefix)
            .arg(env!("CARGO_BIN_EXE_chainmesh"))
            .args(["node", "--config"])
            .arg(config)
            .env("RUST_LOG", "chainmesh=info")
            .stdout(Stdio::piped())
            .stderr(file)
            .spawn()
            .expect("spawn chainmesh node");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("ready line");
        assert!(
            line.starts_with("chainmesh node "),
            "no ready line: {line:?}; log: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        NsNode {
            child,
            log,
            _stdout: stdout,
        }
    }
}

impl Drop for NsNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` nodes in `n` namespaces, every node configured with every other as a peer.
struct Net {
    nodes: Vec<NsNode>,
    ids: Vec<String>,
    admin: Vec<String>,
    agent: ureq::Agent,
    _dir: tempfile::TempDir,
    // Last: the nodes are stopped before their namespaces go.
    ns: NetNs,
}

impl Net {
    /// Starts the network, or `None` (after `skipped: ...`) where namespaces cannot be made.
    fn start(n: usize) -> Option<Net> {
        Self::start_with(n, |_| {})
    }

    /// [`start`](Self::start), with `tweak` applied to every node's config.
    fn start_with(n: usize, tweak: fn(&mut Config)) -> Option<Net> {
        let ns = NetNs::or_skip(n)?;
        let dir = tempfile::Builder::new()
            .prefix("chainmesh-partition-")
            .tempdir()
            .expect("temp dir");
        let generated = generate_node_files(dir.path(), n, Curve::Secp256k1).expect("certs");
        let p2p = |i: usize| format!("{}:{P2P_PORT}", ns.addr(i));
        let mut nodes = Vec::new();
        for (i, g) in generated.iter().enumerate() {
            let mut cfg = Config::new(
                IdentityConfig {
                    ca_cert: g.ca_cert(),
                    node_cert: g.node_cert(),
                    node_key: g.node_key(),
                },
                p2p(i),
            );
            cfg.timers = timers();
            cfg.p2p.peers = (0..n).filter(|&j| j != i).map(p2p).collect();
            cfg.admin.listen = format!("{}:{ADMIN_PORT}", ns.addr(i));
            tweak(&mut cfg);
            let file = g.dir.join("config.toml");
            std::fs::write(&file, cfg.to_toml()).expect("write config");
            nodes.push(NsNode::start(&ns.wrap(i), &file));
        }
        Some(Net {
            nodes,
            ids: generated.iter().map(|g| g.node_id.to_string()).collect(),
            admin: (0..n)
                .map(|i| format!("{}:{ADMIN_PORT}", ns.addr(i)))
                .collect(),
            agent: agent(Duration::from_secs(5)),
            _dir: dir,
            ns,
        })
    }

    fn get(&self, i: usize, path: &str) -> Value {
        let url = format!("http://{}{path}", self.admin[i]);
        match self.agent.get(&url).call() {
            Ok(mut resp) => resp.body_mut().read_json().unwrap_or(Value::Null),
            Err(e) => panic!("GET {url}: {e}; log: {}", self.log(i)),
        }
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
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

    /// Whether every node of `group` holds the current status (seq and epoch) of every
    /// other node of `group`.
    fn statuses_current(&self, group: &[usize]) -> bool {
        let own: Vec<(u64, String)> = group
            .iter()
            .map(|&j| {
                let s = self.get(j, "/v1/status");
                (
                    s["self"]["seq"].as_u64().unwrap_or(0),
                    s["self"]["epoch"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        group.iter().all(|&i| {
            let view = self.get(i, "/v1/status");
            let held: BTreeMap<&str, (u64, &str)> = view["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| {
                    Some((
                        n["node_id"].as_str()?,
                        (n["seq"].as_u64()?, n["epoch"].as_str()?),
                    ))
                })
                .collect();
            group.iter().zip(&own).all(|(&j, (seq, epoch))| {
                j == i || held.get(self.ids[j].as_str()) == Some(&(*seq, epoch.as_str()))
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
                tail(&self.log(0))
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        start.elapsed()
    }

    /// One ping from `from` to `to` through the admin API.
    fn ping(&self, from: usize, to: usize, size: usize) -> Outcome {
        ping(
            &self.agent,
            &self.admin[from],
            &self.ids[to],
            size,
            REQUEST_TIMEOUT_MS,
        )
    }

    /// Starts request load: one request at a time from `from` to `to`, one every `every`,
    /// for each pair, each pair on a thread of its own so a slow pair holds up no other.
    fn load(&self, pairs: &[(usize, usize)], size: usize, every: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = pairs
            .iter()
            .map(|&(from, to)| {
                let stop = stop.clone();
                let (admin, id) = (self.admin[from].clone(), self.ids[to].clone());
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
        Load { stop, threads }
    }
}

/// Every ordered pair of distinct nodes of `nodes`.
fn pairs(nodes: &[usize]) -> Vec<(usize, usize)> {
    nodes
        .iter()
        .flat_map(|&a| nodes.iter().filter(move |&&b| b != a).map(move |&b| (a, b)))
        .collect()
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

/// One request of the load.
#[derive(Debug, Clone)]
struct Sample {
    from: usize,
    to: usize,
    at: Instant,
    outcome: Outcome,
}

/// Running request load.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Vec<Sample>>>,
}

impl Load {
    /// Stops the load and returns every request it made.
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

/// Six nodes, split into {0,1,2} and {3,4,5} for a few seconds under request load from every
/// node, then healed. Every request ends answered or with a typed error, none lost; each half
/// keeps its own links (the same sessions throughout) and routes; after the heal the mesh,
/// the routes and the statuses are whole again.
#[test]
fn split_in_halves_under_load_resolves_every_request_and_heals() {
    let Some(net) = Net::start(6) else { return };
    let all: Vec<usize> = (0..6).collect();
    let (a, b) = ([0, 1, 2], [3, 4, 5]);
    let t = net.wait("the mesh forms", |n| n.is_whole_mesh(&all));
    println!("mesh of 6 formed in {t:?}");
    net.wait("statuses are current", |n| n.statuses_current(&all));

    let load = net.load(&pairs(&all), 256, Duration::from_millis(100));
    let before: Vec<BTreeMap<String, u64>> = all.iter().map(|&i| net.sessions(i)).collect();
    let split_at = Instant::now();
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
    let heal_at = Instant::now();
    net.ns.heal_all().expect("heal");
    // Convergence counts from the moment the last rule is gone.
    let healed = Instant::now();
    net.wait("the mesh is whole again", |n| n.is_whole_mesh(&all));
    let mesh = healed.elapsed();
    net.wait("statuses are current again", |n| n.statuses_current(&all));
    let statuses = healed.elapsed();
    println!(
        "heal (rules removed in {:?}): mesh and routes whole after {mesh:?}, statuses current \
         after {statuses:?}",
        healed - heal_at
    );
    // Requests across the former split get through again.
    net.wait("requests across the former split are answered", |n| {
        matches!(n.ping(0, 5, 0), Outcome::Answered { .. })
    });
    let samples = load.finish();

    let half_of = |i: usize| usize::from(i >= 3);
    let during = |s: &&Sample| s.at >= split_at && s.at < heal_at;
    let within = Tally::of(
        samples
            .iter()
            .filter(during)
            .filter(|s| half_of(s.from) == half_of(s.to)),
    );
    let across = Tally::of(
        samples
            .iter()
            .filter(during)
            .filter(|s| half_of(s.from) != half_of(s.to)),
    );
    let total = Tally::of(&samples);
    println!("requests during the split, within a half: {within:?}");
    println!("requests during the split, across: {across:?}");
    println!("all requests: {total:?}");
    assert!(total.lost.is_empty(), "requests lost: {:?}", total.lost);
    assert!(within.answered > 0, "no request answered within a half");
    assert!(
        across.failed_total() > 0,
        "no request across the split failed"
    );
}

/// Four nodes; every packet from node 1 to node 0 is dropped while node 0's still reach
/// node 1. The link between them dies (node 0 hears nothing; no TCP handshake completes either
/// way), both route to each other through a relay, requests between them are answered over
/// two hops; on heal the direct link returns. Then node 1 only may not dial node 0 (its
/// SYNs dropped): node 0's dial gives them their direct link back.
#[test]
fn one_way_cut_is_routed_around_and_heals() {
    let Some(net) = Net::start(4) else { return };
    let all: Vec<usize> = (0..4).collect();
    net.wait("the mesh forms", |n| n.is_whole_mesh(&all));
    let load = net.load(&pairs(&all), 256, Duration::from_millis(100));
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
    net.ns.heal(0, 1).expect("heal");
    net.ns.block_dial(1, 0).expect("block dial");
    let redial_at = Instant::now();
    net.wait("node 0's dial restores the direct link", |n| {
        n.is_whole_mesh(&all)
    });
    println!(
        "direct link back {:?} with only node 0 able to dial",
        redial_at.elapsed()
    );
    let direction = net.get(0, "/v1/peers")["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["node_id"] == net.ids[1].as_str())
        .map(|p| p["direction"].clone());
    assert_eq!(direction, Some(json!("outbound")));
    net.ns.heal_all().expect("heal");

    let samples = load.finish();
    let tally = Tally::of(&samples);
    let between = |s: &&Sample| (s.from, s.to) == (0, 1) || (s.from, s.to) == (1, 0);
    let pair = Tally::of(
        samples
            .iter()
            .filter(between)
            .filter(|s| s.at >= cut_at && s.at < heal_at),
    );
    let through_relay = Tally::of(
        samples
            .iter()
            .filter(between)
            .filter(|s| s.at >= relayed_at && s.at < heal_at),
    );
    println!("requests between 0 and 1 during the one-way cut: {pair:?}");
    println!("of those, sent once the routes went through the relay: {through_relay:?}");
    println!("all requests: {tally:?}");
    assert!(tally.lost.is_empty(), "requests lost: {:?}", tally.lost);
    assert!(
        through_relay.answered > 0,
        "no request between 0 and 1 got through"
    );
    assert!(
        through_relay.failed.is_empty(),
        "requests through the relay failed: {:?}",
        through_relay.failed
    );
}

/// Four nodes; node 3's link limited to 256 kbit/s both ways while every node sends 8 KiB
/// requests to every other. Requests to and from node 3 still resolve (answered or a typed
/// timeout), none is lost, and requests among the other three are all answered: the slow
/// link holds up only its own traffic.
#[test]
fn slow_link_resolves_its_traffic_without_holding_up_the_rest() {
    // Compression off: the echo payload is one repeated byte, which would shrink to nothing.
    let Some(net) = Net::start_with(4, |c| c.p2p.compress_threshold = 0) else {
        return;
    };
    let all: Vec<usize> = (0..4).collect();
    net.wait("the mesh forms", |n| n.is_whole_mesh(&all));
    net.ns.slow(3, "256kbit").expect("slow");
    let slow_at = Instant::now();
    let load = net.load(&pairs(&all), 8 * 1024, Duration::from_millis(100));
    // The slow phase lasts a chosen interval.
    std::thread::sleep(Duration::from_secs(8));
    let samples = load.finish();
    let slow_end = Instant::now();
    net.ns.unslow(3).expect("unslow");
    net.wait("the mesh is whole after the slow phase", |n| {
        n.is_whole_mesh(&all)
    });

    let slow = Tally::of(samples.iter().filter(|s| s.from == 3 || s.to == 3));
    let fast = Tally::of(samples.iter().filter(|s| s.from != 3 && s.to != 3));
    println!(
        "slow phase {:?}: requests through node 3's link {slow:?}; among the others {fast:?}",
        slow_end - slow_at
    );
    assert!(slow.lost.is_empty(), "requests lost: {:?}", slow.lost);
    assert!(fast.lost.is_empty(), "requests lost: {:?}", fast.lost);
    assert!(slow.answered > 0, "nothing through the slow link");
    assert_eq!(
        fast.failed_total(),
        0,
        "requests among the fast nodes failed: {:?}",
        fast.failed
    );
    assert!(fast.answered > 0);
}
