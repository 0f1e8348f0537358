//! The demo's failure step: a node goes away, its peers see it leave with the reason, and
//! once it is back (on a new port, as after a redeploy) it rejoins and answers again.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use tokio::sync::broadcast::error::RecvError;

use chainmesh::peers::PeerEvent;
use chainmesh_testkit::LocalNet;

/// How long the network may take to notice the loss or to heal.
const HEAL: Duration = Duration::from_secs(20);

/// Stops the last node of `net`, checks node0 sees it leave, restarts it and checks it is
/// linked to every node and reachable again.
pub(super) async fn stop_and_rejoin(net: &mut LocalNet) -> anyhow::Result<()> {
    let n = net.len();
    let victim = n - 1;
    let id = net.handle(victim).node_id();
    let mut events = net.handle(0).events();
    let t = Instant::now();
    net.stop(victim).await;
    let reason = tokio::time::timeout(HEAL, async {
        loop {
            match events.recv().await {
                Ok(PeerEvent::Disconnected { peer, reason }) if peer == id => return Some(reason),
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return None,
            }
        }
    })
    .await
    .ok()
    .flatten();
    let Some(reason) = reason else {
        bail!("node0 did not see node{victim} leave within {HEAL:?}");
    };
    println!(
        "node{victim} stopped: node0 saw it leave after {:.0?} (reason: {reason})",
        t.elapsed()
    );
    let gone = net
        .wait_for(HEAL, |net| {
            (0..victim).all(|i| {
                net.handle(i)
                    .peers()
                    .sessions()
                    .iter()
                    .all(|s| s.peer != id)
            })
        })
        .await;
    if !gone {
        bail!("the other nodes still hold a link to node{victim} after {HEAL:?}");
    }

    let t = Instant::now();
    net.restart(victim)
        .await
        .with_context(|| format!("restarting node{victim}"))?;
    // It comes back on a new port, so it dials the others, as a redeployed node configured
    // with its peers does.
    for j in 0..victim {
        net.connect(victim, j);
    }
    if !net.wait_for(HEAL, LocalNet::is_full_mesh).await {
        bail!("node{victim} did not rejoin every node within {HEAL:?}");
    }
    println!(
        "node{victim} restarted on {}: linked to all {} others again after {:.0?}",
        net.addr(victim),
        victim,
        t.elapsed()
    );
    let ping = net
        .handle(0)
        .ping(id, Bytes::new(), Duration::from_secs(5))
        .await
        .with_context(|| format!("ping node0 -> node{victim} after the restart"))?;
    println!(
        "ping node0 -> node{victim}: {:.0?}, {} hop(s)",
        ping.rtt, ping.hops
    );
    Ok(())
}
