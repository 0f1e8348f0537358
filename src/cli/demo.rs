//! `chainmesh demo`: a local network on generated certificates that exercises every
//! capability and prints what happened.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;

use crate::localnet::{LocalNet, LocalNetOptions};

/// The module the demo's messages are addressed to.
const DEMO_MODULE: u16 = 100;

/// Arguments of `demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 4)]
    nodes: usize,
}

/// Runs the demo; fails unless every message arrived.
pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    if args.nodes < 2 {
        bail!("the demo needs at least 2 nodes");
    }
    super::runtime()?.block_on(demo(args.nodes))
}

async fn demo(n: usize) -> anyhow::Result<()> {
    println!("chainmesh demo: {n} nodes on 127.0.0.1, secp256k1 certificates from a fresh CA\n");
    let net = LocalNet::start(LocalNetOptions::new(n))
        .await
        .context("starting the local network")?;
    for i in 0..n {
        let h = net.handle(i);
        println!("  node{i}  {}  {}", h.listen_addr(), h.node_id());
    }

    let started = Instant::now();
    net.connect_full_mesh();
    if !net
        .wait_for(Duration::from_secs(20), LocalNet::is_full_mesh)
        .await
    {
        bail!("the network did not reach a full mesh within 20 s");
    }
    println!(
        "\nlinks: full mesh of {} mutual-TLS connections in {:.0?} (one per pair, both sides agree)",
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

    // Each node counts one-way messages and echoes requests.
    let received: Vec<Arc<AtomicUsize>> = (0..n).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    for (i, count) in received.iter().enumerate() {
        let mut inbox = net.handle(i).register(DEMO_MODULE, 1024);
        let count = count.clone();
        tokio::spawn(async move {
            while let Some(mut msg) = inbox.recv().await {
                match msg.take_responder() {
                    Some(r) => {
                        let _ = r.respond(msg.payload.clone());
                    }
                    None => {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
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
    println!("\nunicast: {got}/{sent} messages delivered (every ordered pair)");
    if !all_in {
        bail!("only {got} of {sent} unicast messages arrived");
    }

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
        "request/response: {}/{} answered; round trip min {:.0?}, median {:.0?}, max {:.0?}",
        rtts.len(),
        n * (n - 1),
        rtts[0],
        rtts[rtts.len() / 2],
        rtts[rtts.len() - 1]
    );

    net.shutdown().await;
    println!("\ndemo passed: every message arrived");
    Ok(())
}
