//! A quick throughput measurement of the messaging API between two in-process nodes over
//! real TLS on 127.0.0.1: 256-byte unicast messages per second, and request/response round
//! trips per second with 1 and 128 requests in flight. Not the benchmark suite; a sanity
//! figure.
//!
//! Run with `cargo run --release -p chainmesh-bench --example messaging_bench [SECONDS]`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
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
    let net = LocalNet::start(LocalNetOptions::for_traffic(2)).await?;
    net.connect(0, 1);
    anyhow::ensure!(
        net.wait_for(Duration::from_secs(10), |n| n.has_peers(0, 1))
            .await,
        "nodes did not connect"
    );
    let (a, b) = (net.handle(0), net.handle(1));

    // Receiver: count one-way messages; answer requests with their payload.
    let received = Arc::new(AtomicU64::new(0));
    let count = received.clone();
    serve_echo(&b, SINK, 65536, move |_| {
        count.fetch_add(1, Ordering::Relaxed);
    });
    serve_echo(&b, ECHO, 65536, |_| {});

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
    let elapsed = started.elapsed();
    println!(
        "unicast 256 B: {sent} messages in {elapsed:.2?}: {:.0} msg/s",
        sent as f64 / elapsed.as_secs_f64()
    );

    for inflight in [1usize, 128] {
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
        let elapsed = started.elapsed();
        let n = done.load(Ordering::Relaxed);
        println!(
            "request/response, {inflight} in flight: {n} round trips in {elapsed:.2?}: {:.0}/s",
            n as f64 / elapsed.as_secs_f64()
        );
    }
    net.shutdown().await;
    Ok(())
}
