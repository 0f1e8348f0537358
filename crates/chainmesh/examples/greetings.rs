//! A protocol of one's own on chainmesh: every node greets each node that becomes reachable
//! (a neighbour, or one behind relays) with a packet of the protocol's type, and reports the
//! greetings it gets. Three nodes in a line (A - B - C): A and C greet each other through B,
//! which relays the packets without knowing the protocol.
//!
//! Run with `cargo run --release --example greetings`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chainmesh::node::{Origin, Protocol, ProtocolContext};
use chainmesh::routing::Reachability;
use chainmesh::session::Pending;
use chainmesh::wire::{Ext, Options, Packet, PacketType};
use chainmesh::NodeId;
use chainmesh_testkit::{LocalNet, LocalNetOptions};
use tokio::sync::mpsc;

/// The greeting's packet type: an addressed one (it carries options), so it is routed.
const GREETING: PacketType = PacketType::AMOP;

/// Greets every node that becomes reachable and passes on the greetings it hears.
struct Greeter {
    name: &'static str,
    heard: mpsc::UnboundedSender<String>,
}

impl Protocol for Greeter {
    fn packet_types(&self) -> &[PacketType] {
        &[GREETING]
    }

    fn on_packet(&self, _: &ProtocolContext, from: Origin, packet: Packet) -> Option<Pending> {
        let text = String::from_utf8_lossy(&packet.payload);
        let line = format!(
            "{} heard \"{text}\" from {} by way of {}",
            self.name,
            from.src.short(),
            from.link.short()
        );
        let _ = self.heard.send(line);
        None
    }

    fn on_reachability(&self, ctx: &ProtocolContext, event: &Reachability) {
        let Reachability::Reachable { node, distance } = event else {
            return;
        };
        let text = format!("hello from {}, {distance} hop(s) away", self.name);
        // Never wait on the watch that reports reachability: a full queue drops the greeting.
        if let Err(e) = ctx.try_send_packet(*node, greeting(ctx.node_id(), text)) {
            eprintln!("{} could not greet {}: {e}", self.name, node.short());
        }
    }
}

/// A greeting from `src`: routing fills in the destination, the TTL and the Seq.
fn greeting(src: NodeId, text: String) -> Packet {
    Packet {
        version: 0,
        packet_type: GREETING,
        seq: 0,
        ext: Ext::default(),
        options: Some(Options {
            group: "greetings".into(),
            src,
            dsts: Vec::new(),
            module: 0,
            tags: Bytes::new(),
        }),
        payload: Bytes::from(text),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let net = LocalNet::start(LocalNetOptions::new(3)).await?;
    let (heard, mut lines) = mpsc::unbounded_channel();
    for (i, name) in ["A", "B", "C"].into_iter().enumerate() {
        let greeter = Greeter {
            name,
            heard: heard.clone(),
        };
        // Registered before the links come up, so no reachability change is missed.
        net.handle(i).register_protocol(Arc::new(greeter))?;
    }
    net.connect_line();

    // A and C each greet B and each other; B greets both.
    let mut from_afar = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while from_afar < 2 {
        let Ok(Some(line)) = tokio::time::timeout_at(deadline, lines.recv()).await else {
            net.shutdown().await;
            return Err("A and C did not greet each other within 10 s".into());
        };
        println!("{line}");
        if line.contains("2 hop(s)") {
            from_afar += 1;
        }
    }
    net.shutdown().await;
    Ok(())
}
