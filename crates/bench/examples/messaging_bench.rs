//! A quick throughput measurement of the messaging API between in-process nodes over real TLS
//! on 127.0.0.1: 256-byte unicast messages per second, and request/response round trips per
//! second with 1 and 128 requests in flight, to a neighbour (direct form, no tags) and to a
//! node one relay further (full form with source-authentication tags, checked at the far
//! end), in one run so the two can be compared. Not the benchmark suite; a sanity figure.
//!
//! Run with `cargo run --release -p chainmesh-bench --example messaging_bench [SECONDS]`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chainmesh::NodeHandle;
use chainmesh_testkit::{serve_echo, wait_until_every, LocalNet, LocalNetOptions};

const SINK: u16 = 1;
const ECHO: u16 = 2;
/// Generous bound for the last queued messages to arrive; only reached when something is
/// broken.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let secs: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let run = Duration::from_secs(secs);
    // 0 - 1 - 2: node 1 is node 0's neighbour, node 2 is reached through it.
    let net = LocalNet::start(LocalNetOptions::for_traffic(3)).await?;
    net.connect_line();
    let far = net.handle(2).node_id();
    anyhow::ensure!(
        net.wait_for(Duration::from_secs(10), |n| n
            .handle(0)
            .reachable_nodes()
            .iter()
            .any(|(id, d)| *id == far && *d == 2))
            .await,
        "node 0 never reached node 2 through node 1"
    );
    let mut rows = Vec::new();
    for (name, dst) in [("direct", 1), ("relayed", 2)] {
        let figures = measure(&net.handle(0), &net.handle(dst), run).await?;
        println!(
            "{name:>8}: unicast 256 B {:.0} msg/s; request/response {:.0}/s at 1 in flight, {:.0}/s at 128",
            figures[0], figures[1], figures[2]
        );
        rows.push(figures);
    }
    println!(
        "relayed / direct: unicast {:.2}x, request/response {:.2}x at 1, {:.2}x at 128",
        rows[1][0] / rows[0][0],
        rows[1][1] / rows[0][1],
        rows[1][2] / rows[0][2]
    );
    net.shutdown().await;
    Ok(())
}

/// Messages per second from `a` to `b`, then round trips per second with 1 and 128 in flight.
async fn measure(a: &NodeHandle, b: &NodeHandle, run: Duration) -> anyhow::Result<[f64; 3]> {
    // Receiver: count one-way messages; answer requests with their payload.
    let received = Arc::new(AtomicU64::new(0));
    let count = received.clone();
    serve_echo(b, SINK, 65536, move |_| {
        count.fetch_add(1, Ordering::Relaxed);
    });
    serve_echo(b, ECHO, 65536, |_| {});

    // 256-byte unicast, one sender task waiting for queue room.
    let payload = Bytes::from(vec![0xab; 256]);
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < run {
        for _ in 0..1024 {
            a.send(b.node_id(), SINK, payload.clone()).await?;
        }
        sent += 1024;
    }
    // Polled every millisecond: the wait ends the measured interval.
    let drained = wait_until_every(DRAIN_TIMEOUT, Duration::from_millis(1), || {
        received.load(Ordering::Relaxed) >= sent
    })
    .await;
    anyhow::ensure!(
        drained,
        "not every message arrived within {DRAIN_TIMEOUT:?}"
    );
    let mut out = [sent as f64 / started.elapsed().as_secs_f64(), 0.0, 0.0];

    for (slot, inflight) in [(1usize, 1usize), (2, 128)] {
        let done = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..inflight {
            let (a, to, done) = (a.clone(), b.node_id(), done.clone());
            let p = Bytes::from(vec![0xcd; 64]);
            tasks.push(tokio::spawn(async move {
                while started.elapsed() < run {
                    if a.request(to, ECHO, p.clone(), Duration::from_secs(5))
                        .await
                        .is_ok()
                    {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        for t in tasks {
            t.await?;
        }
        out[slot] = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    }
    b.unregister(SINK);
    b.unregister(ECHO);
    Ok(out)
}
