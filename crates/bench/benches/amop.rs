//! AMOP beside its ceiling, in one run with repetitions interleaved: unicast round trips
//! (0x30 published, the subscriber's 0x31 ack back at the publisher) with the publisher and
//! the subscriber on one node and on two linked nodes, and multicast deliveries to 4
//! subscribers on one node and spread over two, each against a bare-TLS ChannelPack server
//! on the same OpenSSL configuration and certificates (`amop/echo.rs`): an echo (two records a
//! round trip) and a forwarder that passes each unicast to a subscriber and its ack back (the
//! four records of AMOP on one node, with nothing between them). Every side uses the
//! library client `chainmesh::amop::Client`, so the client's cost is the same in the ceiling
//! and in AMOP; a subscriber acks at once with the payload it got (what the echo returns).
//!
//! ```text
//! cargo bench -p chainmesh-bench --bench amop              # full run (about 3 minutes after build)
//! cargo bench -p chainmesh-bench --bench amop -- --quick   # short run (under a minute)
//! cargo bench -p chainmesh-bench --bench amop -- --only echo-1,amop-1node-1 --reps 3
//! ```
//!
//! Options: `--quick`; `--reps N`; `--secs S` (measured seconds per repetition); `--only
//! ID,...`; `--no-pin`. Everything runs on one 2-worker runtime pinned to two CPUs: nodes,
//! clients and the echo server share them as they would share a small machine. The table
//! goes to stdout, progress to stderr. Nothing here asserts a rate.
//!
//! A bench target of its own rather than a scenario of `side_by_side`: that harness compares
//! three P2P systems through one `System` interface (stars of senders and receivers), and
//! AMOP has no libp2p counterpart and a different shape (SDK clients at nodes).

#[path = "amop/echo.rs"]
mod echo;
// Shared with side_by_side, which uses all of it; this bench takes the runtime and the
// statistics.
#[allow(dead_code)]
#[path = "side_by_side/harness.rs"]
mod harness;
// The allocator of every benchmark binary; the harness's RSS sampler reads through it.
#[allow(dead_code)]
#[path = "common/memory.rs"]
mod memory;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use bytes::Bytes;
use chainmesh::amop::{AmopKind, Client, ClientOptions, PublishOutcome};
use chainmesh::config::TimersConfig;
use chainmesh::identity::Identity;
use chainmesh_testkit::{LocalNet, LocalNetOptions};

use echo::{EchoServer, FORWARD_TOPIC};
use harness::{Pinned, Summary};

const PAYLOAD: usize = 256;
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Longer than any answer takes; a publish that waits this long counts as a failure.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
const SUBSCRIBERS: usize = 4;

struct Options {
    quick: bool,
    reps: Option<usize>,
    secs: Option<f64>,
    only: Option<Vec<String>>,
    pin: bool,
}

impl Options {
    fn parse(args: impl Iterator<Item = String>) -> Result<Options> {
        let mut o = Options {
            quick: false,
            reps: None,
            secs: None,
            only: None,
            pin: true,
        };
        let mut args = args.peekable();
        while let Some(a) = args.next() {
            let mut value =
                |name: &str| args.next().with_context(|| format!("{name} needs a value"));
            match a.as_str() {
                "--quick" => o.quick = true,
                "--no-pin" => o.pin = false,
                "--reps" => o.reps = Some(value("--reps")?.parse().context("--reps")?),
                "--secs" => o.secs = Some(value("--secs")?.parse().context("--secs")?),
                "--only" => o.only = Some(value("--only")?.split(',').map(str::to_owned).collect()),
                // cargo passes `--bench` to every bench target.
                "--bench" => {}
                other => eprintln!("amop: ignoring unknown argument `{other}`"),
            }
        }
        Ok(o)
    }
}

/// What one worker repeats.
#[derive(Clone)]
enum Op {
    /// A unicast publish; counts acks.
    Publish { client: Arc<Client>, topic: String },
    /// A multicast; counts what the subscribers behind `received` get.
    Multicast {
        client: Arc<Client>,
        topic: String,
        received: Arc<AtomicU64>,
    },
}

struct Scenario {
    id: &'static str,
    what: &'static str,
    in_flight: usize,
    op: Op,
    /// The scenarios this one is compared with.
    ceilings: &'static [&'static str],
}

/// Everything that must stay alive while the scenarios run.
struct Rig {
    scenarios: Vec<Scenario>,
    _net: LocalNet,
    _echo: EchoServer,
    _clients: Vec<Arc<Client>>,
}

async fn connect(
    addr: &str,
    identity: &Identity,
    keep: &mut Vec<Arc<Client>>,
) -> Result<Arc<Client>> {
    let c = Arc::new(
        Client::connect(addr, identity, ClientOptions::default())
            .await
            .with_context(|| format!("connecting to {addr}"))?,
    );
    keep.push(c.clone());
    Ok(c)
}

/// A subscriber that acks each unicast at once and counts each message in `received`.
async fn subscriber(
    addr: &str,
    identity: &Identity,
    topic: &str,
    received: &Arc<AtomicU64>,
    keep: &mut Vec<Arc<Client>>,
) -> Result<()> {
    let client = connect(addr, identity, keep).await?;
    let mut sub = client.subscribe([topic])?;
    let received = received.clone();
    tokio::spawn(async move {
        while let Some(m) = sub.recv().await {
            received.fetch_add(1, Ordering::Relaxed);
            if m.kind == AmopKind::Unicast && m.ack(&m.payload).is_err() {
                eprintln!("amop: an ack did not fit the subscriber's queue");
            }
        }
    });
    Ok(())
}

async fn wait_for(what: &str, cond: impl Fn() -> bool) -> Result<()> {
    harness::wait_until(SETUP_TIMEOUT, what, cond).await
}

/// Node `i` has heard that node `holder` holds `topic`.
fn knows(net: &LocalNet, i: usize, holder: usize, topic: &str) -> bool {
    let holder = net.handle(holder).node_id().to_string();
    net.amop(i)
        .view()
        .remote
        .iter()
        .any(|r| r.node == holder && r.topics.iter().any(|t| t == topic))
}

fn holds(net: &LocalNet, i: usize, topic: &str) -> bool {
    net.amop(i).view().local_topics.iter().any(|t| t == topic)
}

async fn rig() -> Result<Rig> {
    // The default timers: a test's status every 100 ms (each signed) would be background
    // load no deployment has.
    let net = LocalNet::start(LocalNetOptions {
        amop: true,
        timers: TimersConfig::default(),
        ..LocalNetOptions::new(2)
    })
    .await?;
    net.connect(0, 1);
    ensure!(
        net.wait_for(SETUP_TIMEOUT, |n| n.has_peers(0, 1) && n.has_peers(1, 1))
            .await,
        "the two nodes never connected"
    );
    // The echo server presents node 0's certificate, so both ceilings and AMOP run the same
    // TLS; every client presents node 1's (a channel port takes any certificate of the chain).
    let server = net.generated(0).load_identity()?;
    let me = net.generated(1).load_identity()?;
    let echo = EchoServer::start(&server).await?;
    let echo_addr = echo.addr.to_string();
    let (n0, n1) = (net.channel_addr(0), net.channel_addr(1));
    let mut keep = Vec::new();
    // What the unicast subscribers receive: the acks that come back are what is counted.
    let unicast_received = Arc::new(AtomicU64::new(0));

    let echo_pub = connect(&echo_addr, &me, &mut keep).await?;
    let fan_pub = connect(&echo_addr, &me, &mut keep).await?;
    let fan_received = Arc::new(AtomicU64::new(0));
    for _ in 0..SUBSCRIBERS {
        subscriber(&echo_addr, &me, "fan", &fan_received, &mut keep).await?;
    }
    let fwd_pub = connect(&echo_addr, &me, &mut keep).await?;
    subscriber(&echo_addr, &me, FORWARD_TOPIC, &unicast_received, &mut keep).await?;
    wait_for("the echo server's subscribers", || {
        echo.subscribers() == SUBSCRIBERS && echo.forwarding()
    })
    .await?;

    subscriber(&n0, &me, "u1", &unicast_received, &mut keep).await?;
    let u1_pub = connect(&n0, &me, &mut keep).await?;
    subscriber(&n1, &me, "u2", &unicast_received, &mut keep).await?;
    let u2_pub = connect(&n0, &me, &mut keep).await?;

    let m1_received = Arc::new(AtomicU64::new(0));
    for _ in 0..SUBSCRIBERS {
        subscriber(&n0, &me, "m1", &m1_received, &mut keep).await?;
    }
    let m1_pub = connect(&n0, &me, &mut keep).await?;
    let m2_received = Arc::new(AtomicU64::new(0));
    for i in 0..SUBSCRIBERS {
        let at = if i % 2 == 0 { &n0 } else { &n1 };
        subscriber(at, &me, "m2", &m2_received, &mut keep).await?;
    }
    let m2_pub = connect(&n0, &me, &mut keep).await?;
    wait_for("the topics to reach node 0", || {
        holds(&net, 0, "u1")
            && holds(&net, 0, "m1")
            && holds(&net, 0, "m2")
            && knows(&net, 0, 1, "u2")
            && knows(&net, 0, 1, "m2")
    })
    .await?;

    let publish = |client: &Arc<Client>, topic: &str| Op::Publish {
        client: client.clone(),
        topic: topic.into(),
    };
    let multicast = |client: &Arc<Client>, topic: &str, received: &Arc<AtomicU64>| Op::Multicast {
        client: client.clone(),
        topic: topic.into(),
        received: received.clone(),
    };
    let mut scenarios = Vec::new();
    for in_flight in [1, 64] {
        let (echo_id, fwd_id, one_id, two_id, ceilings): (_, _, _, _, &[&str]) = match in_flight {
            1 => (
                "echo-1",
                "forward-1",
                "amop-1node-1",
                "amop-2nodes-1",
                &["echo-1", "forward-1"],
            ),
            _ => (
                "echo-64",
                "forward-64",
                "amop-1node-64",
                "amop-2nodes-64",
                &["echo-64", "forward-64"],
            ),
        };
        scenarios.push(Scenario {
            id: echo_id,
            what: "bare-TLS echo, round trips/s",
            in_flight,
            op: publish(&echo_pub, "echo"),
            ceilings: &[],
        });
        scenarios.push(Scenario {
            id: fwd_id,
            what: "bare-TLS forward to a subscriber and back, round trips/s",
            in_flight,
            op: publish(&fwd_pub, FORWARD_TOPIC),
            ceilings: &[],
        });
        scenarios.push(Scenario {
            id: one_id,
            what: "unicast, one node, round trips/s",
            in_flight,
            op: publish(&u1_pub, "u1"),
            ceilings,
        });
        scenarios.push(Scenario {
            id: two_id,
            what: "unicast, node 0 to node 1, round trips/s",
            in_flight,
            op: publish(&u2_pub, "u2"),
            ceilings,
        });
    }
    scenarios.push(Scenario {
        id: "echo-fanout",
        what: "bare-TLS fan-out to 4, deliveries/s",
        in_flight: 64,
        op: multicast(&fan_pub, "fan", &fan_received),
        ceilings: &[],
    });
    scenarios.push(Scenario {
        id: "multicast-1node",
        what: "multicast to 4 on one node, deliveries/s",
        in_flight: 64,
        op: multicast(&m1_pub, "m1", &m1_received),
        ceilings: &["echo-fanout"],
    });
    scenarios.push(Scenario {
        id: "multicast-2nodes",
        what: "multicast to 2+2 on two nodes, deliveries/s",
        in_flight: 64,
        op: multicast(&m2_pub, "m2", &m2_received),
        ceilings: &["echo-fanout"],
    });
    Ok(Rig {
        scenarios,
        _net: net,
        _echo: echo,
        _clients: keep,
    })
}

/// One repetition: `in_flight` workers repeat `op`; what completes within `run` after
/// `warm` is counted. Returns the rate and how many operations failed.
async fn measure(op: &Op, in_flight: usize, warm: Duration, run: Duration) -> (f64, u64) {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let payload = Bytes::from(vec![0xa5u8; PAYLOAD]);
    let workers: Vec<_> = (0..in_flight)
        .map(|_| {
            let (op, done, failed, stop, payload) = (
                op.clone(),
                done.clone(),
                failed.clone(),
                stop.clone(),
                payload.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let ok = match &op {
                        Op::Publish { client, topic } => matches!(
                            client.publish(topic, &payload, PUBLISH_TIMEOUT).await,
                            Ok(PublishOutcome::Acked { .. })
                        ),
                        Op::Multicast { client, topic, .. } => {
                            matches!(client.multicast(topic, &payload).await, Ok(0))
                        }
                    };
                    let counter = if ok { &done } else { &failed };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let count = || match op {
        Op::Publish { .. } => done.load(Ordering::Relaxed),
        Op::Multicast { received, .. } => received.load(Ordering::Relaxed),
    };
    tokio::time::sleep(warm).await;
    let (c0, t0) = (count(), Instant::now());
    tokio::time::sleep(run).await;
    let (c1, elapsed) = (count(), t0.elapsed());
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    (
        c1.saturating_sub(c0) as f64 / elapsed.as_secs_f64(),
        failed.load(Ordering::Relaxed),
    )
}

fn main() {
    if let Err(e) = run() {
        eprintln!("amop: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let opts = Options::parse(std::env::args().skip(1))?;
    let reps = opts.reps.unwrap_or(if opts.quick { 3 } else { 5 }).max(1);
    let run = Duration::from_secs_f64(opts.secs.unwrap_or(if opts.quick { 1.0 } else { 3.0 }));
    let warm = run / 5;
    let cpus = harness::available_cpus();
    let pinned = match cpus[..] {
        [a, b, ..] if opts.pin => Some([a, b]),
        _ => None,
    };
    let rt = Pinned::new("amop-bench", 2, pinned.as_ref().map(|c| &c[..]))?;
    let placement = rt.placement.clone();
    let only = opts.only.clone();
    let started = Instant::now();
    let table = rt.run(async move {
        let rig = rig().await?;
        let wanted: Vec<&Scenario> = rig
            .scenarios
            .iter()
            .filter(|s| only.as_ref().map_or(true, |o| o.iter().any(|i| i == s.id)))
            .collect();
        if wanted.is_empty() {
            bail!("no scenario selected");
        }
        let mut rates = vec![Vec::new(); wanted.len()];
        let mut failures = vec![0u64; wanted.len()];
        for rep in 0..reps {
            for (i, s) in wanted.iter().enumerate() {
                let (rate, failed) = measure(&s.op, s.in_flight, warm, run).await;
                eprintln!(
                    "rep {}/{reps} {:<17} {rate:>10.0}/s{}",
                    rep + 1,
                    s.id,
                    if failed > 0 {
                        format!(" ({failed} failed)")
                    } else {
                        String::new()
                    }
                );
                rates[i].push(rate);
                failures[i] += failed;
            }
        }
        Ok(report(&wanted, &rates, &failures))
    })??;
    println!(
        "## AMOP beside its ceiling\n\n{} run, {reps} repetitions of {:.1} s, {:.0} s in all; {}; \
         secp256k1 certificates (TLS 1.2); {placement}; {PAYLOAD} B payloads.\n\n{table}",
        if opts.quick { "quick" } else { "full" },
        run.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        openssl::version::version(),
    );
    Ok(())
}

/// The markdown table: median (min-max) of each scenario and its ratios to its ceilings.
fn report(wanted: &[&Scenario], rates: &[Vec<f64>], failures: &[u64]) -> String {
    let summaries: Vec<Option<Summary>> = rates.iter().map(|r| Summary::of(r)).collect();
    let median = |id: &str| {
        wanted
            .iter()
            .position(|s| s.id == id)
            .and_then(|i| summaries[i])
            .map(|s| s.median)
    };
    let mut t = String::from(
        "| scenario | what | in flight | median /s | min-max /s | vs ceiling | failed |\n\
         |---|---|---:|---:|---:|---:|---:|\n",
    );
    for ((s, sum), failed) in wanted.iter().zip(&summaries).zip(failures) {
        let Some(sum) = sum else { continue };
        let ratios: Vec<String> = s
            .ceilings
            .iter()
            .filter_map(|c| Some(format!("{:.2}x {c}", sum.median / median(c)?)))
            .collect();
        let ratio = if ratios.is_empty() {
            "-".to_owned()
        } else {
            ratios.join(", ")
        };
        t.push_str(&format!(
            "| {} | {} | {} | {:.0} | {:.0}-{:.0} | {ratio} | {failed} |\n",
            s.id, s.what, s.in_flight, sum.median, sum.min, sum.max
        ));
    }
    t
}
