//! chainmesh: a peer-to-peer network layer for permissioned blockchains.
//!
//! Layers, bottom up: [`identity`] (keys, certificates, node IDs), [`wire`] (pure codecs),
//! [`admission`] (who may connect, as data), [`config`] (the config file), [`tls`] (mutual
//! TLS), [`session`] (one task per connection), [`peers`] (the peer set, dialing, reconnect),
//! [`routing`] (routes, relaying, dedup, membership), [`status`] (status synchronization),
//! [`auth`] (the tags that prove a relayed packet's source) and
//! [`node`] (the application API), and above it [`amop`] (the SDK channel port). A module imports only the layers below it
//! (`docs/architecture.md` draws the graph; the `layers` test enforces it). The admin HTTP
//! API and the `chainmesh` binary are crates of their own (`chainmesh-admin`,
//! `chainmesh-cli`), so an application embedding this library ships neither.
//!
//! # A node in an application
//!
//! ```no_run
//! use std::time::Duration;
//! use bytes::Bytes;
//! use chainmesh::{Config, Node, NodeId};
//!
//! # async fn run(peer: NodeId) -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::load("node0/config.toml".as_ref())?;
//! let node = Node::start(config, None).await?;
//! let net = node.handle(); // cloneable, usable from any task
//! let mut inbox = net.register(1000, 1024); // messages for module 1000
//! tokio::spawn(async move {
//!     while let Some(mut msg) = inbox.recv().await {
//!         if let Some(reply) = msg.take_responder() {
//!             let _ = reply.respond(msg.payload.clone());
//!         }
//!     }
//! });
//! net.send(peer, 1000, Bytes::from_static(b"hello")).await?;
//! let answer = net
//!     .request(peer, 1000, Bytes::from_static(b"ping"), Duration::from_secs(3))
//!     .await?;
//! net.set_app_status(Bytes::from_static(b"height=42"))?;
//! node.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # The wire format, without I/O
//!
//! ```
//! use chainmesh::wire::{Packet, PacketType};
//!
//! let bytes = Packet::heartbeat(1).to_bytes();
//! assert_eq!(bytes.len(), 14);
//! let back = Packet::decode_exact(&bytes, 1 << 20).unwrap();
//! assert_eq!(back.packet_type, PacketType::HEARTBEAT);
//! ```

#![warn(missing_docs)]

pub mod admission;
pub mod amop;
pub mod auth;
pub mod config;
pub mod flow;
pub mod identity;
pub mod node;
pub mod peers;
pub mod routing;
pub mod session;
pub mod status;
pub mod tls;
pub mod wire;

#[cfg(test)]
mod test_support;

// The README's Rust snippets run as doc tests of this crate, so they follow the API.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

pub use config::Config;
pub use identity::NodeId;
pub use node::{
    Fanout, Message, MessageKind, Node, NodeHandle, RequestError, Responder, SendError, SendOptions,
};
pub use session::Lane;
