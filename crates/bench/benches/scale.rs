//! How chainmesh grows with the network: 8 to 128 nodes in one process on 127.0.0.1, real
//! TLS, wired as a line, a ring, a random sparse graph (degree 4-8, fixed seed) and a full
//! mesh. For each network: the time until routes and statuses converge after start and
//! after one node leaves, the idle link bytes per node, the RSS per node, and the cost of
//! one route-table merge at that size.
//!
//! ```text
//! cargo bench --bench scale                   # full run: 8-128 nodes, 30 s idle windows
//! cargo bench --bench scale -- --quick        # short run: 8-64 nodes, 6 s idle windows
//! cargo bench --bench scale -- --nodes 32,128 --topology sparse,ring
//! ```
//!
//! Options: `--quick`; `--nodes N,...`; `--topology line,ring,sparse,mesh`; `--window SECS`
//! (idle window); `--mesh-max N` (largest full mesh, default 64); `--out DIR` (default
//! `target/bench`). The tables go to stdout and to `DIR/scale.md`; progress to stderr.
//! Nothing here asserts a rate: it measures, and says which of the issue's goals a figure
//! meets.
//!
//! Layout: `scale/topology.rs` (the graphs and the routes they should give),
//! `scale/network.rs` (one network run), `scale/merge.rs` (the merge micro-benchmark),
//! `scale/process.rs` (the descriptor limit), `common/memory.rs` (the allocator, shared
//! with the side-by-side benchmark, and RSS), `scale/report.rs` (tables).

#[path = "common/memory.rs"]
mod memory;
#[path = "scale/merge.rs"]
mod merge;
#[path = "scale/network.rs"]
mod network;
#[path = "scale/process.rs"]
mod process;
#[path = "scale/report.rs"]
mod report;
#[path = "scale/topology.rs"]
mod topology;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use report::{Row, Section};
use topology::Topology;

/// The largest full mesh run unless `--mesh-max` says otherwise: a mesh of n nodes has
/// n(n-1)/2 links, and while it forms every node re-signs its list once per new link and
/// floods it to every other, about n^3 list deliveries; at 128 nodes that is 2 million
/// signature checks on two cores before the network is even up.
const MESH_MAX: usize = 64;

/// Command-line options.
struct Options {
    quick: bool,
    nodes: Option<Vec<usize>>,
    topologies: Vec<Topology>,
    window: Option<Duration>,
    mesh_max: usize,
    out: PathBuf,
}

impl Options {
    fn parse(args: impl Iterator<Item = String>) -> Result<Options> {
        let mut o = Options {
            quick: false,
            nodes: None,
            topologies: Topology::ALL.to_vec(),
            window: None,
            mesh_max: MESH_MAX,
            out: default_out_dir(),
        };
        let mut args = args.peekable();
        while let Some(a) = args.next() {
            let mut value =
                |name: &str| args.next().with_context(|| format!("{name} needs a value"));
            match a.as_str() {
                "--quick" => o.quick = true,
                "--nodes" => {
                    let list = value("--nodes")?;
                    let nodes = list
                        .split(',')
                        .map(|n| n.parse::<usize>().with_context(|| format!("--nodes `{n}`")))
                        .collect::<Result<Vec<_>>>()?;
                    o.nodes = Some(nodes);
                }
                "--topology" => {
                    o.topologies = value("--topology")?
                        .split(',')
                        .map(Topology::parse)
                        .collect::<Result<_>>()?;
                }
                "--window" => {
                    let secs: f64 = value("--window")?.parse().context("--window")?;
                    o.window = Some(Duration::try_from_secs_f64(secs).context("--window")?);
                }
                "--mesh-max" => o.mesh_max = value("--mesh-max")?.parse().context("--mesh-max")?,
                "--out" => o.out = PathBuf::from(value("--out")?),
                // cargo passes `--bench` to every bench target.
                "--bench" => {}
                other => eprintln!("scale: ignoring unknown argument `{other}`"),
            }
        }
        Ok(o)
    }

    fn nodes(&self) -> Vec<usize> {
        match &self.nodes {
            Some(n) => n.clone(),
            None if self.quick => vec![8, 16, 32, 64],
            None => vec![8, 16, 32, 64, 128],
        }
    }

    /// The idle window: the full run's spans the status refresh cycle (30 intervals of 1 s).
    fn window(&self) -> Duration {
        self.window.unwrap_or(if self.quick {
            Duration::from_secs(6)
        } else {
            Duration::from_secs(30)
        })
    }
}

/// `target/bench` next to the bench binary (`target/release/deps/scale-*`).
fn default_out_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(|t| t.join("bench")))
        .unwrap_or_else(|| PathBuf::from("target/bench"))
}

/// Runs every network of `topology` and the merge benchmark at each size.
async fn section(topology: Topology, opts: &Options) -> Section {
    let mut rows = Vec::new();
    for n in opts.nodes() {
        if topology == Topology::Mesh && n > opts.mesh_max {
            rows.push(Row::skipped(
                n,
                format!(
                    "full mesh above {} nodes not run (--mesh-max)",
                    opts.mesh_max
                ),
            ));
            continue;
        }
        eprintln!("scale: {} of {n} nodes", topology.name());
        let started = Instant::now();
        let row = match one(topology, n, opts).await {
            Ok(row) => row,
            Err(e) => Row::skipped(n, format!("failed: {e:#}")),
        };
        eprintln!(
            "scale: {} of {n} nodes: {:.1?}",
            topology.name(),
            started.elapsed()
        );
        rows.push(row);
    }
    Section { topology, rows }
}

async fn one(topology: Topology, n: usize, opts: &Options) -> Result<Row> {
    let graph = topology.edges(n)?;
    process::ensure_descriptors(process::descriptors_needed(n, graph.edges().len()))?;
    let merge = merge::merge_cost(&graph)?;
    let figures = network::run(topology, n, opts.window()).await?;
    Ok(Row::measured(figures, merge))
}

fn main() -> Result<()> {
    let opts = Options::parse(std::env::args().skip(1))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the runtime")?;
    let started = Instant::now();
    let sections: Vec<Section> = rt.block_on(async {
        let mut sections = Vec::new();
        for t in &opts.topologies {
            sections.push(section(*t, &opts).await);
        }
        sections
    });
    let text = report::render(&sections, opts.quick, opts.window(), started.elapsed());
    print!("{text}");
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;
    let path = opts.out.join("scale.md");
    std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("scale: wrote {}", path.display());
    Ok(())
}
