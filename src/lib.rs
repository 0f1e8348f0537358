//! chainmesh: a peer-to-peer network layer for permissioned blockchains.

pub mod cli;
pub mod config;
pub mod identity;
pub mod peers;
pub mod wire;
