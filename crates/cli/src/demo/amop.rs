//! The demo's AMOP part: SDK clients on different nodes' channel ports publish to each
//! other through the network (unicast with its ack, multicast, a topic nobody holds).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use chainmesh::amop::{AmopMessage, Client, ClientOptions, PublishOutcome, Subscription};
use chainmesh_testkit::LocalNet;

/// How long any one step may take before the demo gives up.
const STEP: Duration = Duration::from_secs(10);

/// A client on node `i`'s channel port, with that node's certificate (any certificate of
/// the chain is accepted there, as an SDK certificate is).
async fn client(net: &LocalNet, i: usize) -> anyhow::Result<Client> {
    let identity = net
        .generated(i)
        .load_identity()
        .with_context(|| format!("node{i}'s certificate"))?;
    Client::connect(&net.channel_addr(i), &identity, ClientOptions::default())
        .await
        .with_context(|| format!("connecting to node{i}'s channel port"))
}

/// Waits until node `at` knows every node of `holders` holds `topic`.
async fn learnt(net: &LocalNet, at: usize, topic: &str, holders: &[usize]) -> anyhow::Result<()> {
    let ids: Vec<String> = holders
        .iter()
        .map(|&i| net.handle(i).node_id().to_string())
        .collect();
    let amop = net.amop(at);
    let known = chainmesh_testkit::wait_until(STEP, || {
        let view = amop.view();
        ids.iter().all(|id| {
            view.remote
                .iter()
                .any(|r| &r.node == id && r.topics.iter().any(|t| t == topic))
        })
    })
    .await;
    if !known {
        bail!("node{at} did not learn the holders of \"{topic}\" within {STEP:?}");
    }
    Ok(())
}

async fn next(sub: &mut Subscription, who: &str) -> anyhow::Result<AmopMessage> {
    match tokio::time::timeout(STEP, sub.recv()).await {
        Ok(Some(msg)) => Ok(msg),
        Ok(None) => bail!("{who}'s session ended"),
        Err(_) => bail!("{who} got nothing within {STEP:?}"),
    }
}

/// Runs the AMOP part on `net` (AMOP on, nodes connected); node0 publishes.
pub(super) async fn amop(net: &LocalNet) -> anyhow::Result<()> {
    let n = net.len();
    let far = n - 1;
    println!("SDK clients on the channel ports (FISCO's 2.x channel protocol)");
    for i in 0..n {
        println!("  node{i}  channel {}", net.channel_addr(i));
    }
    let publisher = client(net, 0).await?;

    // Unicast: the subscriber on node1 acks, and its ack comes back to node0's client.
    let subscriber = client(net, 1).await?;
    let mut orders = subscriber.subscribe(["orders"])?;
    learnt(net, 0, "orders", &[1]).await?;
    let t = Instant::now();
    let sent = publisher.publish("orders", b"order 42", STEP);
    let received = async {
        let msg = next(&mut orders, "node1's subscriber").await?;
        let ack = format!("ack:{}", String::from_utf8_lossy(&msg.payload));
        msg.ack(ack.as_bytes())?;
        anyhow::Ok(msg)
    };
    let (outcome, msg) = tokio::join!(sent, received);
    let (outcome, msg) = (outcome?, msg?);
    let rtt = t.elapsed();
    println!(
        "unicast: node0's client -> \"orders\" \"order 42\"; node1's subscriber got {:?}",
        String::from_utf8_lossy(&msg.payload)
    );
    match outcome {
        PublishOutcome::Acked {
            result: 0, payload, ..
        } if payload.as_ref() == b"ack:order 42" => println!(
            "  ack back at node0's client: result 0, \"ack:order 42\", round trip {rtt:.0?}"
        ),
        other => bail!("the unicast ended as {other:?}, not with node1's ack"),
    }

    // Multicast: one subscriber on node1 and one on the last node.
    let other = client(net, far).await?;
    let mut prices = [
        (1, subscriber.subscribe(["prices"])?),
        (far, other.subscribe(["prices"])?),
    ];
    learnt(net, 0, "prices", &[1, far]).await?;
    let result = publisher.multicast("prices", b"BTC 1").await?;
    if result != 0 {
        bail!("the multicast was answered {result}, not 0");
    }
    let mut reached = Vec::new();
    for (i, sub) in &mut prices {
        let msg = next(sub, &format!("node{i}'s subscriber")).await?;
        if msg.payload.as_ref() != b"BTC 1" {
            bail!("node{i}'s subscriber got {:?}", msg.payload);
        }
        reached.push(format!("node{i}"));
    }
    println!(
        "multicast: node0's client -> \"prices\" \"BTC 1\": answered result 0 at once; delivered on {}",
        reached.join(" and ")
    );

    // Nobody holds this topic anywhere.
    match publisher.publish("nobody-listens", b"hello?", STEP).await? {
        PublishOutcome::NoSubscriber => {
            println!("no subscriber: node0's client -> \"nobody-listens\": result 100")
        }
        other => bail!("a publish to a topic nobody holds ended as {other:?}"),
    }

    let s = net.amop(0).stats();
    println!(
        "  node0's AMOP counters: {} unicasts ({} acked, {} without subscriber), {} multicasts, {} packets forwarded out, {} in",
        s.unicasts, s.unicast_acked, s.unicast_no_subscriber, s.multicasts, s.forwarded_out, s.forwarded_in
    );
    for c in [&publisher, &subscriber, &other] {
        c.close();
    }
    Ok(())
}
