//! An application on chainmesh: three nodes in a line (A - B - C), a "price" service on C
//! answering requests, and A using it through B without knowing there is a relay.
//!
//! Run with `cargo run --release --example request_response`.

use std::time::Duration;

use bytes::Bytes;
use chainmesh::{Message, NodeHandle, RequestError};
use chainmesh_testkit::{LocalNet, LocalNetOptions};

/// The module (application protocol) of the price service.
const PRICES: u16 = 2000;

/// Serves the price service on `node`: a request names an asset, the answer is its price;
/// an unknown asset is answered with an error. One-way messages are printed.
fn serve_prices(node: &NodeHandle) {
    let mut inbox = node.register(PRICES, 256);
    tokio::spawn(async move {
        while let Some(mut msg) = inbox.recv().await {
            handle(&mut msg);
        }
    });
}

fn handle(msg: &mut Message) {
    let asset = String::from_utf8_lossy(&msg.payload).into_owned();
    let Some(responder) = msg.take_responder() else {
        println!(
            "C got a one-way message from {} over {} hop(s): {asset}",
            msg.src.short(),
            msg.hops
        );
        return;
    };
    let result = match asset.as_str() {
        "gold" => responder.respond(Bytes::from_static(b"2400.50")),
        "silver" => responder.respond(Bytes::from_static(b"31.20")),
        other => responder.fail(format!("no price for {other}")),
    };
    if let Err(e) = result {
        eprintln!("could not answer: {e}");
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let net = LocalNet::start(LocalNetOptions::for_traffic(3)).await?;
    net.connect_line();
    let (a, c) = (net.handle(0), net.handle(2));
    serve_prices(&c);

    // Wait until A has learnt a route to C (through B).
    let ready = net
        .wait_for(Duration::from_secs(10), |n| {
            n.handle(0)
                .reachable_nodes()
                .iter()
                .any(|(id, _)| *id == n.handle(2).node_id())
        })
        .await;
    anyhow::ensure!(ready, "no route from A to C");
    for r in a.routes() {
        println!(
            "A routes to {} via {} ({} hop(s))",
            r.dst.short(),
            r.next_hop.short(),
            r.distance
        );
    }

    for asset in ["gold", "silver", "platinum"] {
        let answer = a
            .request(
                c.node_id(),
                PRICES,
                Bytes::from(asset),
                Duration::from_secs(2),
            )
            .await;
        match answer {
            Ok(price) => println!("{asset}: {}", String::from_utf8_lossy(&price)),
            Err(RequestError::Remote(why)) => println!("{asset}: C says {why}"),
            Err(e) => println!("{asset}: failed: {e}"),
        }
    }

    a.send(
        c.node_id(),
        PRICES,
        Bytes::from_static(b"market closes at 17:00"),
    )
    .await?;
    let ping = a
        .ping(c.node_id(), Bytes::new(), Duration::from_secs(2))
        .await?;
    println!("ping A -> C: {:?}, {} hop(s)", ping.rtt, ping.hops);

    net.shutdown().await;
    Ok(())
}
