//! Node identity: keys, certificates, node IDs, certificate generation.

mod node_id;

pub use node_id::{NodeId, NodeIdError, NODE_ID_LEN};
