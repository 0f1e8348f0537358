//! The demo's status and fan-out steps on the main network: status synchronization, a
//! broadcast to a group and a multicast to a topic.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;

use chainmesh_testkit::LocalNet;

use super::audience::Audience;
use super::FANOUT_MODULE;

/// Node0's application status reaches every other node.
pub(super) async fn status(net: &LocalNet) -> anyhow::Result<()> {
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
        "node0 set its application status to \"height=1024\"; all {} other nodes held it after {:.0?}",
        n - 1,
        t.elapsed()
    );
    Ok(())
}

/// A broadcast to the group and a multicast to a topic, each checked to reach exactly the
/// nodes it should, once.
pub(super) async fn fanout(net: &LocalNet) -> anyhow::Result<()> {
    let n = net.len();
    // Odd nodes subscribe to a topic; every node is in group0.
    let subscribers: Vec<usize> = (1..n).step_by(2).collect();
    for &i in &subscribers {
        net.handle(i).subscribe("blocks")?;
    }
    let group = Audience {
        net,
        prefix: "node",
        from: 0,
        want: (1..n).collect(),
    };
    let topic = Audience {
        want: subscribers.clone(),
        ..group
    };
    // Both fan-outs go to whom node0's status table lists at the moment they are sent.
    group
        .known("group0's members", |h| h.status().group_members("group0"))
        .await?;
    topic
        .known("the subscribers of \"blocks\"", |h| {
            h.status().topic_subscribers("blocks")
        })
        .await?;
    let inboxes: Vec<_> = (0..n)
        .map(|i| net.handle(i).register(FANOUT_MODULE, 64))
        .collect();
    let b = net
        .handle(0)
        .broadcast("group0", FANOUT_MODULE, Bytes::from_static(b"new block"))
        .await
        .context("broadcast from node0")?;
    group.all_queued("the broadcast to group0", &b)?;
    let m = net
        .handle(0)
        .multicast("blocks", FANOUT_MODULE, Bytes::from_static(b"block 1024"))
        .await
        .context("multicast from node0")?;
    topic.all_queued("the multicast to \"blocks\"", &m)?;
    let mut got = vec![Vec::new(); n];
    for (i, mut inbox) in inboxes.into_iter().enumerate().skip(1) {
        let expect = 1 + usize::from(subscribers.contains(&i));
        while got[i].len() < expect {
            match tokio::time::timeout(Duration::from_secs(5), inbox.recv()).await {
                Ok(Some(msg)) => got[i].push(String::from_utf8_lossy(&msg.payload).into_owned()),
                _ => bail!(
                    "node{i} is missing a broadcast or multicast (got {:?})",
                    got[i]
                ),
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
