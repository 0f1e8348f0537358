//! The load generator of `chainmesh node --load`, on real processes: every node sends
//! requests, unicasts and broadcasts, answers and counts the others', and reports its
//! counters; nothing is lost or delivered twice on a healthy mesh.

mod common;

use std::time::Duration;

use chainmesh_testkit::procs::{ProcNet, ProcNetOptions};

fn options() -> ProcNetOptions {
    let mut opts = ProcNetOptions::new(env!("CARGO_BIN_EXE_chainmesh"));
    opts.load = Some("requests=40,unicasts=40,broadcasts=10,size=512".into());
    opts.load_interval = Duration::from_millis(100);
    opts
}

#[test]
fn three_loaded_nodes_answer_everything_and_report_a_final_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut net = ProcNet::new(dir.path(), 3, options()).unwrap();
    net.wait_whole_mesh(Duration::from_secs(30)).unwrap();
    let busy = net.wait_for(Duration::from_secs(30), |net| {
        (0..net.len()).all(|i| {
            net.last_report(i).ok().flatten().is_some_and(|r| {
                r.requests.answered > 20
                    && r.requests.echoed > 20
                    && r.unicasts.received > 20
                    && r.broadcasts.received > 5
            })
        })
    });
    assert!(busy, "no steady traffic; node0 log:\n{}", net.log(0));
    assert!(net.terminate_all().unwrap(), "a node did not exit cleanly");

    for i in 0..net.len() {
        let reports = net.reports(i).unwrap();
        let last = reports.last().expect("report lines");
        println!("node{i}: {}", serde_json::to_string(last).unwrap());
        assert!(last.is_final, "node{i}: no final line");
        assert_eq!(reports.iter().filter(|r| r.is_final).count(), 1);
        assert_eq!(last.node, net.node_id(i));
        let r = &last.requests;
        assert!(r.answered > 0, "node{i}: {r:?}");
        assert_eq!(r.lost, 0, "node{i}: {r:?}");
        assert_eq!(r.in_flight, 0, "node{i}: {r:?}");
        assert_eq!(
            r.sent,
            r.answered + r.failed_total() + r.lost,
            "node{i}: every request has one outcome: {r:?}"
        );
        assert_eq!(
            last.broadcasts.duplicates, 0,
            "node{i}: {:?}",
            last.broadcasts
        );
        assert!(last.broadcasts.sent > 0 && last.unicasts.sent > 0);
        if cfg!(target_os = "linux") {
            assert!(last.rss_kb.is_some_and(|kb| kb > 0));
            assert!(last.fds.is_some_and(|n| n > 0));
        }
    }
}

#[test]
fn a_bad_load_spec_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    for (spec, key) in [("speed=3", "speed"), ("requests=fast", "requests")] {
        let out = common::chainmesh([
            "node",
            "--config",
            path.to_str().unwrap(),
            "--load",
            spec,
            "--load-report",
            dir.path().join("r.jsonl").to_str().unwrap(),
        ]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{spec}: {err}");
    }
    // A report needs a load, and a load needs a report.
    let out = common::chainmesh(["node", "--config", "x.toml", "--load", "requests=1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--load-report"));
}
