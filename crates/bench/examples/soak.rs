//! The soak: a network of `chainmesh node` processes under mixed load for a long time,
//! sampled every few seconds for RSS, open descriptors, queue depths and message counts, with
//! one node restarted every few minutes. Writes `soak.csv`, `soak.svg` and `summary.txt` into
//! `--out` and prints the summary, ending in a verdict line; exits 1 when the verdict fails.
//!
//! `scripts/soak --help` builds and runs it; docs/reliability.md (Soak) explains the load, the
//! flatness criterion and the figures of a 30-minute run. The run itself is
//! `chainmesh_bench::soak::runner`.

use std::time::Duration;

use chainmesh_bench::soak::runner::{run, Args};
use clap::Parser;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let summary = rt.block_on(run(&args))?;
    // Aborted tasks of the AMOP load must not hold the exit.
    rt.shutdown_timeout(Duration::from_secs(1));
    if !summary.passed() {
        std::process::exit(1);
    }
    Ok(())
}
