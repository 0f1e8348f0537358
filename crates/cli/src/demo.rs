//! `chainmesh demo`: a tour of every capability on a local network on generated
//! certificates, step by step, with what happened at each.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;

use chainmesh_testkit::{serve_echo, LocalNet, LocalNetOptions};

mod amop;
mod audience;
mod fanout;
mod relay;
mod restart;

/// The module the demo's messages are addressed to.
const DEMO_MODULE: u16 = 100;
/// The module the demo's broadcasts and multicasts are addressed to.
const FANOUT_MODULE: u16 = 101;
/// The steps of the tour, in order; each prints what it did and fails the demo when it did
/// not work.
const STEPS: [&str; 8] = [
    "links",
    "unicast",
    "request/response",
    "status sync",
    "broadcast and multicast",
    "AMOP",
    "a node stopped and rejoining",
    "relay",
];

/// Arguments of `demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(2..=32))]
    nodes: u16,
    /// After the tour, keep the network running (with a little traffic, for the live page)
    /// until Ctrl-C.
    #[arg(long)]
    keep: bool,
}

/// Runs the tour; fails, naming the step, unless every step worked.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    super::runtime()?.block_on(demo(usize::from(args.nodes), args.keep))
}

/// Numbers the steps as they start and names the one that failed.
struct Tour {
    next: usize,
}

impl Tour {
    /// Runs the next step of [`STEPS`].
    async fn step<T>(
        &mut self,
        work: impl Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        let name = STEPS.get(self.next).copied().unwrap_or("extra step");
        self.next = self.next.saturating_add(1);
        println!("\n[{}/{}] {name}", self.next, STEPS.len());
        work.await
            .with_context(|| format!("demo step {} ({name}) failed", self.next))
    }
}

async fn demo(n: usize, keep: bool) -> anyhow::Result<()> {
    println!("chainmesh demo: {n} nodes on 127.0.0.1, secp256k1 certificates from a fresh CA");
    let mut opts = options(n);
    opts.amop = true;
    opts.admin = true;
    let mut net = LocalNet::start(opts)
        .await
        .context("starting the local network")?;
    for i in 0..n {
        let h = net.handle(i);
        println!("  node{i}  {}  {}", h.listen_addr(), h.node_id());
    }
    if let Some(admin) = net.admin_addr(0) {
        println!("live network page (node0's admin port): http://{admin}/");
    }
    let mut tour = Tour { next: 0 };
    tour.step(links(&net)).await?;
    tour.step(unicast(&net)).await?;
    tour.step(request_response(&net)).await?;
    tour.step(fanout::status(&net)).await?;
    tour.step(fanout::fanout(&net)).await?;
    tour.step(amop::amop(&net)).await?;
    tour.step(restart::stop_and_rejoin(&mut net)).await?;
    tour.step(relay::relayed()).await?;
    println!("\ndemo passed: all {} steps worked", STEPS.len());
    if keep {
        keep_running(&net).await?;
    }
    net.shutdown().await;
    Ok(())
}

/// The demo's networks: fast timers, so that links, routes and status settle in moments,
/// but a link is only dropped as dead after 2 s of silence (10 heartbeats), not 0.6 s: on a
/// loaded machine a node can fall silent that long, and a dropped link in the middle of a
/// step loses what was queued on it. A stopped node says goodbye, so the failure step does
/// not wait for the timeout.
fn options(n: usize) -> LocalNetOptions {
    let mut opts = LocalNetOptions::for_traffic(n);
    opts.timers.idle_timeout_intervals = 10;
    opts
}

/// Every node dials every other; one link per pair.
async fn links(net: &LocalNet) -> anyhow::Result<()> {
    let n = net.len();
    let started = Instant::now();
    net.connect_full_mesh();
    if !net
        .wait_for(Duration::from_secs(20), LocalNet::is_full_mesh)
        .await
    {
        bail!("the network did not reach a full mesh within 20 s");
    }
    println!(
        "full mesh of {} mutual-TLS connections in {:.0?} (one per pair, both sides agree)",
        n * (n - 1) / 2,
        started.elapsed()
    );
    for i in 0..n {
        let mut links: Vec<String> = net
            .handle(i)
            .peers()
            .sessions()
            .iter()
            .map(|s| format!("{} ({:?})", s.peer.short(), s.direction))
            .collect();
        links.sort();
        println!("  node{i} -> {}", links.join(", "));
    }
    Ok(())
}

/// Every node sends to every other; each counts what it got and echoes requests (the next
/// step's).
async fn unicast(net: &LocalNet) -> anyhow::Result<()> {
    let n = net.len();
    let received: Vec<Arc<AtomicUsize>> = (0..n).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    for (i, count) in received.iter().enumerate() {
        let count = count.clone();
        serve_echo(&net.handle(i), DEMO_MODULE, 1024, move |_| {
            count.fetch_add(1, Ordering::Relaxed);
        });
    }
    let mut sent = 0usize;
    for i in 0..n {
        for j in 0..n {
            if i != j {
                let to = net.handle(j).node_id();
                let text = format!("hello node{j}, from node{i}");
                net.handle(i)
                    .send(to, DEMO_MODULE, Bytes::from(text))
                    .await
                    .with_context(|| format!("unicast node{i} -> node{j}"))?;
                sent += 1;
            }
        }
    }
    let all_in = net
        .wait_for(Duration::from_secs(10), |_| {
            received
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .sum::<usize>()
                == sent
        })
        .await;
    let got: usize = received.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    println!("{got}/{sent} messages delivered (every ordered pair)");
    if !all_in {
        bail!("only {got} of {sent} unicast messages arrived");
    }
    Ok(())
}

/// Every node asks every other and checks the echo.
async fn request_response(net: &LocalNet) -> anyhow::Result<()> {
    let n = net.len();
    let mut rtts = Vec::new();
    for i in 0..n {
        for j in 0..n {
            if i != j {
                let to = net.handle(j).node_id();
                let payload = Bytes::from(format!("ping {i}->{j}"));
                let t = Instant::now();
                let answer = net
                    .handle(i)
                    .request(to, DEMO_MODULE, payload.clone(), Duration::from_secs(5))
                    .await
                    .with_context(|| format!("request node{i} -> node{j}"))?;
                rtts.push(t.elapsed());
                if answer != payload {
                    bail!("node{j} answered node{i} with the wrong payload");
                }
            }
        }
    }
    rtts.sort();
    println!(
        "{}/{} answered; round trip min {:.0?}, median {:.0?}, max {:.0?}",
        rtts.len(),
        n * (n - 1),
        rtts[0],
        rtts[rtts.len() / 2],
        rtts[rtts.len() - 1]
    );
    Ok(())
}

/// Keeps the network up with a ping from every node to every other each second, so that
/// the live page has traffic to show, until Ctrl-C.
async fn keep_running(net: &LocalNet) -> anyhow::Result<()> {
    let page = net
        .admin_addr(0)
        .map(|a| format!(" (live page: http://{a}/)"))
        .unwrap_or_default();
    println!("keeping the network running{page}; Ctrl-C stops it");
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            got = &mut stop => {
                got.context("waiting for Ctrl-C")?;
                println!("stopping");
                return Ok(());
            }
            _ = tick.tick() => {
                for i in 0..net.len() {
                    for j in (0..net.len()).filter(|&j| j != i) {
                        let (from, to) = (net.handle(i), net.handle(j).node_id());
                        // A lost ping is no failure here: the tour is over, this is scenery.
                        tokio::spawn(async move {
                            let _ = from.ping(to, Bytes::new(), Duration::from_secs(2)).await;
                        });
                    }
                }
            }
        }
    }
}
