//! Faults with real processes: seven `chainmesh node` processes under request, unicast and
//! broadcast load from every node; two killed with SIGKILL and restarted, one frozen with
//! SIGSTOP for longer than the idle timeout, one restarted on a new certificate of the same
//! CA. After each fault the mesh, the routes and the statuses are whole again; at the end
//! no request got neither an answer nor a typed error, and no broadcast arrived twice. The
//! same scenario with default timers and longer phases is `crates/bench/examples/faults.rs`.

use std::time::Duration;

use chainmesh::config::TimersConfig;
use chainmesh_testkit::procs::{run_faults, FaultPlan, ProcNet, ProcNetOptions};

/// Request failures the load generator may report: each a typed error of the library.
const TYPED: [&str; 11] = [
    "timeout",
    "unsent",
    "peer_disconnected",
    "unreachable",
    "remote",
    "stopped",
    "too_many_pending",
    "send_unreachable",
    "send_queue_full",
    "send_too_large",
    "send_invalid",
];

/// Short enough for a run of well under a minute, long enough that seven loaded processes on
/// two cores do not miss heartbeats: heartbeat 200 ms, idle timeout 1 s.
fn timers() -> TimersConfig {
    TimersConfig {
        heartbeat_interval: Duration::from_millis(200),
        idle_timeout_intervals: 5,
        connect_timeout: Duration::from_secs(2),
        handshake_timeout: Duration::from_secs(2),
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        status_interval: Duration::from_millis(200),
    }
}

#[test]
fn seven_loaded_processes_survive_kills_a_freeze_and_a_new_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = ProcNetOptions::new(env!("CARGO_BIN_EXE_chainmesh"));
    let timers = timers();
    let idle = timers.heartbeat_interval * timers.idle_timeout_intervals;
    opts.timers = timers;
    opts.load = Some("requests=20,unicasts=20,broadcasts=5,request_timeout_ms=2000".into());
    opts.load_interval = Duration::from_millis(200);
    let mut net = ProcNet::new(dir.path(), 7, opts).unwrap();
    let mut plan = FaultPlan::new(idle, Duration::from_secs(1));
    plan.whole_timeout = Duration::from_secs(30);
    let old_id = net.node_id(plan.renewed);

    let run = match run_faults(&mut net, &plan) {
        Ok(run) => run,
        Err(e) => panic!("{e}\nnode0 log:\n{}", net.log(0)),
    };
    for s in &run.steps {
        println!(
            "{:<40} links {:>6.2?} routes {:>6.2?} statuses {:>6.2?} whole {:>6.2?}",
            s.fault, s.times.links, s.times.routes, s.times.statuses, s.times.whole
        );
    }
    println!("{:?}", run.total);
    assert_ne!(
        net.node_id(plan.renewed),
        old_id,
        "the new certificate is a new node ID"
    );

    for (i, t) in run.nodes.iter().enumerate() {
        let q = &t.requests;
        assert_eq!(q.lost, 0, "node{i}: requests that got neither: {q:?}");
        assert!(q.answered > 0, "node{i}: {q:?}");
        for kind in q.failed.keys() {
            assert!(
                TYPED.contains(&kind.as_str()),
                "node{i}: untyped failure {kind}"
            );
        }
        assert_eq!(t.broadcasts.duplicates, 0, "node{i}: {:?}", t.broadcasts);
        assert!(t.broadcasts.received > 0, "node{i}: {:?}", t.broadcasts);
        assert!(t.unicasts.received > 0, "node{i}: {:?}", t.unicasts);

        // The last run ended on SIGTERM: every request it sent has its one outcome.
        let last = net.last_report(i).unwrap().expect("report lines");
        assert!(last.is_final, "node{i}: no final line");
        let r = &last.requests;
        assert_eq!(r.in_flight, 0, "node{i}: {r:?}");
        assert_eq!(
            r.sent,
            r.answered + r.failed_total() + r.lost,
            "node{i}: {r:?}"
        );
    }
    let runs: Vec<u64> = run.nodes.iter().map(|t| t.runs).collect();
    assert_eq!(runs, [1, 2, 2, 1, 2, 1, 1], "restarts start new runs");
    assert_eq!(run.total.requests.lost, 0);
    assert_eq!(run.total.broadcasts.duplicates, 0);
}
