//! The soak runner end to end for a few seconds: a real network of `chainmesh node`
//! processes with one restart and AMOP load, checked for what it writes, not for its verdict
//! (a few seconds are too short to call anything flat).

use std::path::PathBuf;

use chainmesh_bench::soak::record::COLUMNS;
use chainmesh_bench::soak::runner::{run, Args};
use clap::Parser;

/// The release binary the soak runs (`CHAINMESH_BIN` overrides it).
fn chainmesh_bin() -> PathBuf {
    std::env::var_os("CHAINMESH_BIN").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release/chainmesh"),
        PathBuf::from,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_soak_restarts_a_node_and_writes_its_csv_plot_and_summary() {
    let bin = chainmesh_bin();
    if !bin.exists() {
        eprintln!(
            "skipped: no chainmesh binary at {} (cargo build --release -p chainmesh-cli first)",
            bin.display()
        );
        return;
    }
    let out = tempfile::tempdir().expect("temp dir");
    let args = Args::parse_from([
        "soak",
        "--duration",
        "6s",
        "--interval",
        "1s",
        "--warmup",
        "1s",
        "--restart-every",
        "3s",
        "--amop-unicasts",
        "20",
        "--amop-multicasts",
        "5",
        "--out",
        &out.path().display().to_string(),
        "--bin",
        &bin.display().to_string(),
    ]);
    let summary = run(&args).await.expect("the run");

    assert_eq!(summary.nodes.len(), 5);
    assert_eq!(summary.nodes[4].restarts, 1);
    assert!(summary.nodes[..4].iter().all(|n| n.restarts == 0));
    assert!(summary
        .nodes
        .iter()
        .all(|n| n.rss_kb.is_some() && n.fds.is_some()));
    assert!(summary.amop.acked > 0, "{summary}");
    assert!(summary.amop.mc_received > 0, "{summary}");
    assert_eq!(summary.amop.lost, 0, "{summary}");
    assert_eq!(summary.amop.mc_duplicates, 0, "{summary}");

    let csv = std::fs::read_to_string(out.path().join("soak.csv")).expect("the CSV");
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some(COLUMNS.join(",").as_str()));
    let rows: Vec<&str> = lines.collect();
    // Six rows (five nodes and the total) per sample, at least one sample a second.
    assert_eq!(rows.len() % 6, 0, "{csv}");
    assert!(rows.len() >= 6 * 6, "{csv}");
    assert!(rows.iter().all(|r| r.split(',').count() == COLUMNS.len()));

    let svg = std::fs::read_to_string(out.path().join("soak.svg")).expect("the plot");
    assert!(svg.starts_with("<svg ") && svg.contains("<polyline"));
    assert!(svg.contains("node4 restarted"));
    let text = std::fs::read_to_string(out.path().join("summary.txt")).expect("the summary");
    assert!(
        text.lines()
            .last()
            .is_some_and(|l| l.starts_with("VERDICT: ")),
        "{text}"
    );
}
