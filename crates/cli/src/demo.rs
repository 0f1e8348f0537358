//! `chainmesh demo`: a local network on generated certificates that exercises every
//! capability and prints what happened.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;

use chainmesh::identity::NodeId;
use chainmesh_testkit::{serve_echo, LocalNet, LocalNetOptions};

mod amop;

/// The module the demo's messages are addressed to.
const DEMO_MODULE: u16 = 100;
/// The module the demo's broadcasts and multicasts are addressed to.
const FANOUT_MODULE: u16 = 101;

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
    let mut opts = LocalNetOptions::for_traffic(n);
    opts.amop = true;
    let net = LocalNet::start(opts)
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

    status_and_fanout(&net).await?;
    amop::amop(&net).await?;
    net.shutdown().await;
    relayed().await?;
    println!("\ndemo passed: every message arrived");
    Ok(())
}

/// Status synchronization, then broadcast to the group and multicast to a topic, each
/// checked to reach exactly the nodes it should, once.
async fn status_and_fanout(net: &LocalNet) -> anyhow::Result<()> {
    let n = net.len();
    let origin = net.handle(0).node_id();
    let t = Instant::now();
    net.handle(0)
        .set_app_status(Bytes::from_static(b"height=1024"))
        .context("setting node0's application status")?;
    let seen = net
        .wait_for(Duration::from_secs(10), |net| {
            (1..n).all(|i| {
                net.handle(i)
                    .peer_status(&origin)
                    .is_some_and(|s| s.status.app.as_ref() == b"height=1024")
            })
        })
        .await;
    if !seen {
        bail!("node0's status change did not reach every node within 10 s");
    }
    println!(
        "\nstatus: node0 set its application status to \"height=1024\"; all {} other nodes held it after {:.0?}",
        n - 1,
        t.elapsed()
    );

    // Odd nodes subscribe to a topic; every node is in group0.
    let subscribers: Vec<usize> = (1..n).step_by(2).collect();
    for &i in &subscribers {
        net.handle(i).subscribe("blocks")?;
    }
    let want: Vec<NodeId> = subscribers
        .iter()
        .map(|&i| net.handle(i).node_id())
        .collect();
    let known = net
        .wait_for(Duration::from_secs(10), |net| {
            let mut got = net.handle(0).status().network_topic_subscribers("blocks");
            got.sort();
            let mut w = want.clone();
            w.sort();
            got == w
        })
        .await;
    if !known {
        bail!("node0 did not learn the subscribers of \"blocks\" within 10 s");
    }
    let inboxes: Vec<_> = (0..n)
        .map(|i| net.handle(i).register(FANOUT_MODULE, 64))
        .collect();
    let b = net
        .handle(0)
        .broadcast("group0", FANOUT_MODULE, Bytes::from_static(b"new block"))
        .await
        .context("broadcast from node0")?;
    let m = net
        .handle(0)
        .multicast("blocks", FANOUT_MODULE, Bytes::from_static(b"block 1024"))
        .await
        .context("multicast from node0")?;
    let mut got = vec![Vec::new(); n];
    for (i, mut inbox) in inboxes.into_iter().enumerate().skip(1) {
        let expect = 1 + usize::from(subscribers.contains(&i));
        while got[i].len() < expect {
            match tokio::time::timeout(Duration::from_secs(5), inbox.recv()).await {
                Ok(Some(msg)) => got[i].push(String::from_utf8_lossy(&msg.payload).into_owned()),
                _ => bail!("node{i} is missing a broadcast or multicast"),
            }
        }
        // Nothing more may come: each message exactly once, nothing for non-subscribers.
        if let Ok(Some(extra)) =
            tokio::time::timeout(Duration::from_millis(100), inbox.recv()).await
        {
            bail!("node{i} got an extra message: {:?}", extra.payload);
        }
    }
    println!(
        "broadcast to group0: queued for {} nodes, each got it once",
        b.queued.len()
    );
    println!(
        "multicast to \"blocks\" (subscribers: {}): queued for {}, delivered to exactly those",
        subscribers
            .iter()
            .map(|i| format!("node{i}"))
            .collect::<Vec<_>>()
            .join(", "),
        m.queued.len()
    );
    Ok(())
}

/// Whether node `i` of `net` reaches node `j` at `distance` hops.
fn reaches(net: &LocalNet, i: usize, j: usize, distance: u8) -> bool {
    let (Some(from), Some(to)) = (net.try_handle(i), net.try_handle(j)) else {
        return false;
    };
    from.reachable_nodes()
        .iter()
        .any(|(n, d)| *n == to.node_id() && *d == distance)
}

fn print_routes(net: &LocalNet, i: usize) {
    let names: Vec<(NodeId, usize)> = (0..net.len())
        .map(|k| (net.handle(k).node_id(), k))
        .collect();
    let name = |id: &NodeId| {
        names
            .iter()
            .find(|(n, _)| n == id)
            .map(|(_, k)| format!("line{k}"))
            .unwrap_or_else(|| id.short())
    };
    for r in net.handle(i).routes() {
        println!(
            "  line{i} -> {}: next hop {}, {} hop(s)",
            name(&r.dst),
            name(&r.next_hop),
            r.distance
        );
    }
}

/// Four nodes in a line, each configured with its neighbour only: routes are learnt, messages
/// relayed, and a moved link reroutes them.
async fn relayed() -> anyhow::Result<()> {
    println!("\nrelaying: 4 more nodes in a line line0 - line1 - line2 - line3, each configured");
    println!("with its right-hand neighbour only");
    let line = LocalNet::start(LocalNetOptions::for_traffic(4))
        .await
        .context("starting the line")?;
    line.connect_line();
    if !line
        .wait_for(Duration::from_secs(20), |n| {
            reaches(n, 0, 3, 3) && reaches(n, 3, 0, 3)
        })
        .await
    {
        bail!("line0 did not learn a route to line3 within 20 s");
    }
    print_routes(&line, 0);

    let (first, last) = (line.handle(0), line.handle(3));
    serve_echo(&last, DEMO_MODULE, 16, |msg| {
        println!(
            "unicast: line3 got \"{}\" from {} over {} hop(s)",
            String::from_utf8_lossy(&msg.payload),
            msg.src.short(),
            msg.hops
        )
    });
    first
        .send(
            last.node_id(),
            DEMO_MODULE,
            Bytes::from_static(b"hello from line0"),
        )
        .await
        .context("unicast line0 -> line3")?;
    let answer = first
        .request(
            last.node_id(),
            DEMO_MODULE,
            Bytes::from_static(b"relayed request"),
            Duration::from_secs(5),
        )
        .await
        .context("request line0 -> line3")?;
    println!(
        "request/response: line3 answered \"{}\"",
        String::from_utf8_lossy(&answer)
    );
    let ping = first
        .ping(last.node_id(), Bytes::new(), Duration::from_secs(5))
        .await
        .context("ping line0 -> line3")?;
    println!("ping line0 -> line3: {:.0?}, {} hops", ping.rtt, ping.hops);

    // Status and broadcast cross the relays too.
    last.set_app_status(Bytes::from_static(b"view=7"))
        .context("setting line3's status")?;
    let last_id = last.node_id();
    if !line
        .wait_for(Duration::from_secs(10), |n| {
            n.handle(0)
                .peer_status(&last_id)
                .is_some_and(|s| s.status.app.as_ref() == b"view=7")
        })
        .await
    {
        bail!("line3's status did not reach line0 within 10 s");
    }
    println!("status: line0 holds line3's \"view=7\", learnt across two relays");
    let inboxes: Vec<_> = (1..4)
        .map(|i| line.handle(i).register(FANOUT_MODULE, 16))
        .collect();
    let members_known = line
        .wait_for(Duration::from_secs(10), |n| {
            n.handle(0).status().network_group_members("group0").len() == 4
        })
        .await;
    if !members_known {
        bail!("line0 did not learn group0's members within 10 s");
    }
    first
        .broadcast("group0", FANOUT_MODULE, Bytes::from_static(b"to all"))
        .await
        .context("broadcast along the line")?;
    let mut hops = Vec::new();
    for (k, mut inbox) in inboxes.into_iter().enumerate() {
        match tokio::time::timeout(Duration::from_secs(5), inbox.recv()).await {
            Ok(Some(msg)) => hops.push(format!("line{} ({} hop(s))", k + 1, msg.hops)),
            _ => bail!("line{} missed the broadcast", k + 1),
        }
    }
    println!("broadcast from line0 reached {}", hops.join(", "));

    println!("\ncutting line1 - line2 and linking line0 - line2");
    line.handle(1).peers().remove_target(&line.addr(2));
    line.handle(2).peers().remove_target(&line.addr(1));
    line.connect(0, 2);
    if !line
        .wait_for(Duration::from_secs(20), |n| {
            reaches(n, 0, 3, 2) && reaches(n, 3, 0, 2)
        })
        .await
    {
        bail!("line0 did not reroute to line3 within 20 s");
    }
    print_routes(&line, 0);
    let ping = first
        .ping(last.node_id(), Bytes::new(), Duration::from_secs(5))
        .await
        .context("ping line0 -> line3 after the reroute")?;
    println!("ping line0 -> line3: {:.0?}, {} hops", ping.rtt, ping.hops);
    if ping.hops != 2 {
        bail!("expected 2 hops after the reroute, got {}", ping.hops);
    }
    line.shutdown().await;
    Ok(())
}
