//! The demo's relaying step: a network of its own, four nodes in a line, where routes are
//! learnt, messages, requests, status and broadcasts relayed, and a moved link reroutes them.

use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;

use chainmesh::identity::NodeId;
use chainmesh_testkit::{serve_echo, LocalNet};

use super::audience::Audience;
use super::{DEMO_MODULE, FANOUT_MODULE};

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
pub(super) async fn relayed() -> anyhow::Result<()> {
    println!("4 more nodes in a line line0 - line1 - line2 - line3, each configured");
    println!("with its right-hand neighbour only");
    let line = LocalNet::start(super::options(4))
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
    let group = Audience {
        net: &line,
        prefix: "line",
        from: 0,
        want: (1..4).collect(),
    };
    group
        .known("group0's members", |h| h.status().group_members("group0"))
        .await?;
    let b = first
        .broadcast("group0", FANOUT_MODULE, Bytes::from_static(b"to all"))
        .await
        .context("broadcast along the line")?;
    group.all_queued("the broadcast along the line", &b)?;
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
