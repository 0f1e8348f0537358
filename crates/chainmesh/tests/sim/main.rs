//! A deterministic network simulation: seeded random schedules of link cuts, resets,
//! repairs, latency changes, crashes and restarts, with unicasts and status changes, run on
//! a paused clock over an in-process network of the library's real routers, status engines
//! and P2P sessions (`network.rs`). After every step and once the network has settled, the
//! invariants of `invariants.rs` are checked.
//!
//! - `CHAINMESH_SIM_SCHEDULES=<n>`: how many schedules (seeds `first..first + n`; default 100);
//! - `CHAINMESH_SIM_FIRST_SEED=<s>`: the first seed (default 1);
//! - `CHAINMESH_SIM_SEED=<s>`: run only that seed, printing its schedule.
//!
//! A failing schedule prints its seed, its schedule and what broke.

mod invariants;
mod network;
mod schedule;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chainmesh::routing::Route;
use chainmesh::NodeId;
use invariants::{library_routes, true_routes, Ledger, Outcome, Totals, Violation, SEND_DEADLINE};
use network::{Net, QUEUE_BYTES};
use schedule::{Event, Schedule};
use tokio::time::Instant;

/// Simulated time between two checks while time passes.
const STEP: Duration = Duration::from_millis(250);
/// Longest the network may take to settle after the last event: the idle timeout, a few
/// routing announcements (3 s) and status intervals, with room to spare.
const SETTLE_MAX: Duration = Duration::from_secs(60);

/// What one schedule did.
struct Report {
    events: usize,
    totals: Totals,
    /// Simulated time from the last event until the mesh, the routes and the statuses were
    /// whole; `None` if they never were within [`SETTLE_MAX`].
    settled: Option<Duration>,
    simulated: Duration,
    violations: Vec<Violation>,
}

/// A fresh single-threaded runtime whose clock only moves when every task waits.
fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a runtime")
}

/// Runs `schedule` on a fresh runtime with a paused clock.
fn run(schedule: &Schedule) -> Report {
    paused_runtime().block_on(async {
        let began = Instant::now();
        let mut net = Net::new(schedule.nodes, &schedule.links);
        net.maintain();
        // Faults start on a whole network, as they would on a deployed one.
        let formed = settle(&mut net).await;
        if let Err(why) = formed {
            net.ledger
                .violation(format!("the initial network never formed: {why}"));
        }
        for event in &schedule.events {
            apply(&mut net, event).await;
        }
        let settled = settle(&mut net).await;
        let settled = match settled {
            Ok(took) => Some(took),
            Err(why) => {
                net.ledger.violation(format!(
                    "not settled {} s after the last event: {why}",
                    SETTLE_MAX.as_secs()
                ));
                None
            }
        };
        cross_check_reference(&net);
        // Every send is now past its deadline: each must have resolved.
        advance(&mut net, SEND_DEADLINE).await;
        Report {
            events: schedule.events.len(),
            totals: net.ledger.totals(),
            settled,
            simulated: began.elapsed(),
            violations: net.ledger.violations(),
        }
    })
}

async fn apply(net: &mut Net, event: &Event) {
    match *event {
        Event::Delay(ms) => return advance(net, Duration::from_millis(ms)).await,
        Event::Cut(a, b) => net.cut((a, b)),
        Event::Reset(a, b) => net.reset((a, b)),
        Event::Repair(a, b) => net.repair((a, b)),
        Event::Latency(a, b, ms) => net.set_latency((a, b), ms),
        Event::Crash(n) => net.crash(n),
        Event::Start(n) => net.start(n),
        Event::Send { from, to, count } => {
            for _ in 0..count {
                net.send(from, to);
            }
        }
        Event::SetStatus(n) => {
            if let Some(node) = net.node(n) {
                let next = node.status.local_version().seq;
                if let Err(e) = node.status.set_app_status(format!("height={next}")) {
                    net.ledger
                        .violation(format!("node {n} could not set its status: {e}"));
                }
            }
        }
    }
    // Events a moment apart, so the tasks they wake run before the next one.
    advance(net, Duration::from_millis(10)).await;
}

/// Lets `d` of simulated time pass, reconnecting and checking every [`STEP`].
async fn advance(net: &mut Net, d: Duration) {
    let end = Instant::now() + d;
    loop {
        let now = Instant::now();
        if now >= end {
            return;
        }
        tokio::time::sleep((end - now).min(STEP)).await;
        net.maintain();
        check_step(net);
    }
}

/// What must hold at every moment: no queue over its bound, no table holding more nodes than
/// exist, no send pending past its deadline on a live link.
fn check_step(net: &Net) {
    let nodes = net.ids().len();
    for i in net.running() {
        let Some(node) = net.node(i) else { continue };
        for s in node.sessions() {
            if s.queued_bytes() > s.queue_capacity() || s.queue_capacity() > QUEUE_BYTES {
                net.ledger.violation(format!(
                    "node {i}: session to {} queues {} bytes, bound {}",
                    s.peer.short(),
                    s.queued_bytes(),
                    s.queue_capacity()
                ));
            }
        }
        if node.router.list_count() >= nodes {
            net.ledger.violation(format!(
                "node {i} holds {} neighbour lists in a network of {nodes}",
                node.router.list_count()
            ));
        }
        let tracked = node.status.stats().tracked_nodes;
        if tracked >= nodes as u64 {
            net.ledger.violation(format!(
                "node {i} tracks the status of {tracked} nodes in a network of {nodes}"
            ));
        }
    }
    net.ledger.check_deadlines();
}

/// Waits until the network is whole (see [`whole`]) and returns how long it took.
async fn settle(net: &mut Net) -> Result<Duration, String> {
    let began = Instant::now();
    loop {
        match whole(net) {
            Ok(()) => return Ok(began.elapsed()),
            Err(why) if began.elapsed() >= SETTLE_MAX => return Err(why),
            Err(_) => advance(net, STEP).await,
        }
    }
}

/// Whether the network is whole: every link that carries bytes between running nodes has a
/// live session at both ends and no other session is left; every running node's routes are
/// the shortest paths of that topology; every running node holds the current status of
/// every node it reaches and none of any other.
fn whole(net: &Net) -> Result<(), String> {
    let ids = net.ids();
    let running = net.running();
    let links = net.true_links();
    for &(a, b) in &links {
        let (Some(na), Some(nb)) = (net.node(a), net.node(b)) else {
            continue;
        };
        if !na.is_linked(&ids[b]) || !nb.is_linked(&ids[a]) {
            return Err(format!("link {a}-{b} carries but has no live connection"));
        }
    }
    let index: BTreeMap<NodeId, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let expected = true_routes(&ids, &running, &links);
    for &i in &running {
        let Some(node) = net.node(i) else { continue };
        for s in node.sessions() {
            let j = index.get(&s.peer).copied().unwrap_or(usize::MAX);
            if !links.contains(&(i.min(j), i.max(j))) {
                return Err(format!(
                    "node {i} still has a session to {j}, whose link is down"
                ));
            }
        }
        let held: BTreeMap<NodeId, Route> = node
            .router
            .routes()
            .into_iter()
            .map(|r| {
                (
                    r.dst,
                    Route {
                        next_hop: r.next_hop,
                        distance: r.distance,
                    },
                )
            })
            .collect();
        let want = &expected[&i];
        if &held != want {
            return Err(format!(
                "node {i} routes {} but the topology says {}",
                show_routes(&held, &index),
                show_routes(want, &index)
            ));
        }
        for (j, other) in ids.iter().enumerate() {
            if j == i {
                continue;
            }
            let got = node.status.get(other).map(|p| p.version);
            let current = if want.contains_key(other) {
                net.node(j).map(|n| n.status.local_version())
            } else {
                None
            };
            if got != current {
                return Err(format!(
                    "node {i} holds status {} of node {j}, whose current one is {}",
                    got.map_or("none".into(), |v| v.to_string()),
                    current.map_or("none (unreachable)".into(), |v| v.to_string()),
                ));
            }
        }
    }
    Ok(())
}

fn show_routes(routes: &BTreeMap<NodeId, Route>, index: &BTreeMap<NodeId, usize>) -> String {
    let name = |n: &NodeId| index.get(n).map_or("?".to_string(), |i| i.to_string());
    let mut v: Vec<String> = routes
        .iter()
        .map(|(d, r)| format!("{}:via{}/{}", name(d), name(&r.next_hop), r.distance))
        .collect();
    v.sort();
    format!("[{}]", v.join(" "))
}

/// The reference routes must agree with the library's shortest paths over exact lists, or
/// the comparison above would prove nothing.
fn cross_check_reference(net: &Net) {
    let ids = net.ids();
    let links = net.true_links();
    let reference = true_routes(&ids, &net.running(), &links);
    for (i, want) in reference {
        if library_routes(&ids, i, &links) != want {
            net.ledger.violation(format!(
                "reference routes of node {i} disagree with shortest_paths"
            ));
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    match v.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => panic!("{name}={v} is not a number"),
    }
}

#[test]
fn every_seeded_schedule_keeps_the_invariants() {
    let seeds: Vec<u64> = match env_u64("CHAINMESH_SIM_SEED") {
        Some(seed) => vec![seed],
        None => {
            let first = env_u64("CHAINMESH_SIM_FIRST_SEED").unwrap_or(1);
            let n = env_u64("CHAINMESH_SIM_SCHEDULES").unwrap_or(100);
            (first..first.saturating_add(n)).collect()
        }
    };
    let single = seeds.len() == 1;
    let mut totals = Totals::default();
    let (mut events, mut simulated) = (0usize, Duration::ZERO);
    let mut settle_times = Vec::new();
    let mut failed = Vec::new();
    for &seed in &seeds {
        let schedule = Schedule::generate(seed);
        if single {
            println!("{schedule}");
        }
        let report = run(&schedule);
        events += report.events;
        totals += report.totals;
        simulated += report.simulated;
        settle_times.extend(report.settled);
        if !report.violations.is_empty() {
            if failed.len() < 5 {
                println!("FAILED {schedule}");
                for v in &report.violations {
                    println!("  {v}");
                }
            }
            failed.push(seed);
        }
    }
    settle_times.sort();
    let max = settle_times.last().copied().unwrap_or_default();
    let p99 = settle_times
        .get(settle_times.len().saturating_sub(1) * 99 / 100)
        .copied()
        .unwrap_or_default();
    let mean = settle_times
        .iter()
        .sum::<Duration>()
        .checked_div(settle_times.len().max(1) as u32)
        .unwrap_or_default();
    println!(
        "simulation: {} schedules (seeds {}..={}), {events} events, {} s simulated; sends {} \
         (delivered {}, refused {}, dropped by a relay {}, lost with their link {}); settled \
         after the last event in mean {} ms, p99 {} ms, max {} ms; {} schedules broke an \
         invariant",
        seeds.len(),
        seeds.first().copied().unwrap_or_default(),
        seeds.last().copied().unwrap_or_default(),
        simulated.as_secs(),
        totals.sent,
        totals.delivered,
        totals.refused,
        totals.dropped,
        totals.lost_with_link,
        mean.as_millis(),
        p99.as_millis(),
        max.as_millis(),
        failed.len(),
    );
    assert!(
        failed.is_empty(),
        "schedules broke invariants; replay one with \
         CHAINMESH_SIM_SEED=<seed> cargo test --release -p chainmesh --test sim -- --nocapture: \
         seeds {failed:?}"
    );
}

#[test]
fn a_schedule_is_drawn_from_its_seed_alone() {
    for seed in 0..200 {
        let s = Schedule::generate(seed);
        assert_eq!(s, Schedule::generate(seed), "seed {seed}");
        assert!((schedule::MIN_NODES..=schedule::MAX_NODES).contains(&s.nodes));
        // Every crash hits a running node, every start a stopped one, every send leaves a
        // running node for another.
        let mut running: BTreeSet<usize> = (0..s.nodes).collect();
        for e in &s.events {
            match *e {
                Event::Crash(n) => assert!(running.remove(&n), "seed {seed}: {e}"),
                Event::Start(n) => assert!(running.insert(n), "seed {seed}: {e}"),
                Event::Send { from, to, .. } => {
                    assert!(running.contains(&from) && from != to, "seed {seed}: {e}")
                }
                _ => {}
            }
        }
    }
    assert_ne!(Schedule::generate(1), Schedule::generate(2));
}

#[test]
fn the_reference_routes_agree_with_the_librarys_shortest_paths() {
    use rand::{Rng, SeedableRng};
    let ids: Vec<NodeId> = network::identities().iter().map(|i| i.node_id).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..500 {
        let n = rng.random_range(2..=ids.len());
        let mut links = BTreeSet::new();
        for a in 0..n {
            for b in a + 1..n {
                if rng.random_bool(0.3) {
                    links.insert((a, b));
                }
            }
        }
        let running: BTreeSet<usize> = (0..n).collect();
        for (i, want) in true_routes(&ids, &running, &links) {
            assert_eq!(library_routes(&ids, i, &links), want, "{links:?} from {i}");
        }
    }
}

#[test]
fn the_ledger_reports_a_duplicate_a_misdelivery_and_a_send_stuck_on_a_live_link() {
    paused_runtime().block_on(async {
        let net = Net::new(2, &[((0, 1), 0)]);
        let ledger: &Ledger = &net.ledger;
        let twice = ledger.new_send(0, 1);
        ledger.delivered(twice, 1);
        ledger.delivered(twice, 1);
        let wrong = ledger.new_send(0, 1);
        ledger.delivered(wrong, 0);
        let refused = ledger.new_send(0, 1);
        ledger.resolve(refused, Outcome::Refused("unreachable"));
        ledger.delivered(refused, 1);
        assert_eq!(ledger.violations().len(), 3, "{:?}", ledger.violations());
        // A send queued on a session that stays up, never delivered.
        let mut net = net;
        net.maintain();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let session = net
            .node(0)
            .and_then(|n| n.sessions().pop())
            .expect("a session");
        let stuck = net.ledger.new_send(0, 1);
        net.ledger.queued(stuck, session);
        tokio::time::sleep(SEND_DEADLINE).await;
        net.ledger.check_deadlines();
        let v = net.ledger.violations();
        assert_eq!(v.len(), 4, "{v:?}");
        assert!(v[3].what.contains("its link alive"), "{}", v[3]);
    });
}

#[test]
fn a_cut_link_is_routed_around_and_sends_arrive_the_other_way() {
    // A square 0-1-2-3-0 whose link 0-1 is cut: 0 reaches 1 through 3 and 2.
    let schedule = Schedule {
        seed: 0,
        nodes: 4,
        links: vec![((0, 1), 5), ((1, 2), 5), ((2, 3), 5), ((0, 3), 5)],
        events: vec![
            Event::Cut(0, 1),
            Event::Delay(8000),
            Event::Send {
                from: 0,
                to: 1,
                count: 5,
            },
            Event::SetStatus(1),
        ],
    };
    let report = run(&schedule);
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    assert_eq!(report.totals.sent, 5);
    assert_eq!(report.totals.delivered, 5, "{:?}", report.totals);
    assert!(report.settled.is_some());
}

#[test]
fn a_status_behind_a_path_slower_than_the_query_timeout_converges() {
    // Node 0 reaches 2 over a path whose round trip (2.2 s) is longer than the status query
    // timeout (2 s): before queries backed off, 0 and 2 never learnt each other's status.
    // Seeds 4, 5, 10, 13, 16 and 17 found it, each with a link of over a second.
    let schedule = Schedule {
        seed: 0,
        nodes: 3,
        links: vec![((0, 1), 1100), ((1, 2), 10)],
        events: vec![Event::SetStatus(2), Event::Delay(1000), Event::SetStatus(0)],
    };
    let report = run(&schedule);
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    for seed in [4, 5, 10, 13, 16, 17] {
        let report = run(&Schedule::generate(seed));
        assert!(
            report.violations.is_empty(),
            "seed {seed}: {:?}",
            report.violations
        );
    }
}

#[test]
fn a_line_longer_than_the_hop_limit_stops_moving_every_list_once_formed() {
    // In a line of 12 nodes neighbours reach different sets of nodes (9 hops at most each
    // way), so their routing summaries never match. When each differing announcement asked
    // for every list, every list crossed every link every 3 s: about 1.7 KB/s per link
    // direction here, against the 0.3 KB/s of heartbeats, announcements, the status safety
    // net and one full answer per 30 s.
    paused_runtime().block_on(async {
        const NODES: usize = 12;
        let links: Vec<((usize, usize), u64)> = (1..NODES).map(|i| ((i - 1, i), 5)).collect();
        let mut net = Net::new(NODES, &links);
        net.maintain();
        settle(&mut net).await.expect("the line forms");
        advance(&mut net, Duration::from_secs(10)).await;
        let written = |net: &Net| -> u64 {
            net.running()
                .into_iter()
                .filter_map(|i| net.node(i))
                .flat_map(|n| n.sessions())
                .map(|s| s.stats.bytes_out.load(std::sync::atomic::Ordering::Relaxed))
                .sum()
        };
        let before = written(&net);
        let window = Duration::from_secs(60);
        advance(&mut net, window).await;
        let directions = 2.0 * (NODES - 1) as f64;
        let per_direction =
            written(&net).saturating_sub(before) as f64 / window.as_secs_f64() / directions;
        assert!(
            per_direction < 800.0,
            "{per_direction:.0} B/s per link direction"
        );
        assert!(whole(&net).is_ok(), "{:?}", whole(&net));
        assert!(net.ledger.violations().is_empty());
    });
}

#[test]
fn a_hub_whose_links_come_up_together_signs_one_list_for_all_of_them() {
    paused_runtime().block_on(async {
        let leaves = 8;
        let links: Vec<((usize, usize), u64)> = (1..=leaves).map(|i| ((0, i), 1)).collect();
        let mut net = Net::new(leaves + 1, &links);
        // The hub signs its first, empty list when its routing task starts.
        tokio::time::sleep(Duration::from_millis(10)).await;
        let hub = net.node(0).expect("the hub").router.clone();
        let before = hub.list_version();
        net.maintain();
        advance(&mut net, Duration::from_secs(2)).await;
        for i in 1..=leaves {
            let reached = net.node(i).expect("a leaf").router.reachable().len();
            assert_eq!(
                reached, leaves,
                "leaf {i} reaches the hub and the other leaves"
            );
        }
        let after = hub.list_version();
        assert_eq!(after.epoch, before.epoch);
        let signed = after.seq.saturating_sub(before.seq);
        assert!(
            (1..=2).contains(&signed),
            "{leaves} links up at once made the hub sign {signed} lists"
        );
    });
}
