//! chainmesh: a peer-to-peer network layer for permissioned blockchains.
//!
//! Layers, bottom up: [`wire`] (pure codecs), [`identity`] (keys, certificates, node IDs),
//! [`tls`] (mutual TLS), [`session`] (one task per connection), [`peers`] (the peer set,
//! dialing, reconnect, admission), [`routing`] (routes, relaying, dedup, membership),
//! [`node`] (the application API), [`admin`] (HTTP API) and
//! [`cli`] (the `chainmesh` binary).

pub mod admin;
pub mod cli;
pub mod config;
pub mod identity;
pub mod localnet;
pub mod node;
pub mod peers;
pub mod routing;
pub mod session;
pub mod status;
pub mod tls;
pub mod wire;

pub use config::Config;
pub use identity::NodeId;
pub use node::{
    Fanout, Message, MessageKind, Node, NodeHandle, RequestError, Responder, SendError,
};
