//! Helpers shared by the unit tests of every module. The integration tests and the other
//! crates have `chainmesh-testkit`; unit tests cannot use it, because it depends on this crate
//! and its types would be a second, distinct copy of ours.

use crate::identity::{NodeId, NODE_ID_LEN};

/// A node ID made of one repeated byte: distinct, ordered and readable in test output.
pub(crate) fn id(b: u8) -> NodeId {
    NodeId::from_bytes([b; NODE_ID_LEN])
}
