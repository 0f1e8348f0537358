//! AMOP (Advanced Messages Onchain Protocol): SDK clients on the channel port talk to each
//! other through the node network, with FISCO BCOS 2.x's channel protocol, so FISCO's own
//! SDKs work unchanged.
//!
//! `docs/amop.md` explains the flows with the real bytes; `wire::ChannelPack` is the frame
//! codec. This module sits above [`node`](crate::node): it serves the channel port, keeps the
//! SDK sessions and their topics, publishes which topics this node holds in its status, and
//! forwards AMOP frames to the nodes that hold a topic as packets of type 7 through the
//! node's [`Protocol`](crate::node::Protocol) plug-in point.

mod framing;

pub use framing::ChannelFraming;
mod client;
pub use client::{
    AmopKind, AmopMessage, Client, ClientError, ClientOptions, PublishOutcome, Subscription,
};
