//! Node identity: keys, certificates, node IDs, certificate generation.
//!
//! [`Identity::load`] reads and checks a node's `ca.crt`, `node.crt` and `node.key`;
//! [`node_id_of_cert`] and [`node_id_of_file`] derive node IDs; [`NetworkCa`] and
//! [`generate_node_files`] make a chain CA, an agency and node certificates as FISCO BCOS's
//! `build_chain.sh` does, and SDK certificates ([`NetworkCa::issue_sdk`],
//! [`load_sdk_identity`]); [`keys`] signs and agrees on secrets with the node key.

mod certgen;
mod certs;
pub mod keys;
mod node_id;

pub use certgen::{
    generate_node_files, load_sdk_identity, Curve, GeneratedNode, NetworkCa, NodeCredentials,
    SdkCredentials, UnknownCurve, SDK_CA_FILE, SDK_CERT_FILE, SDK_KEY_FILE,
};
pub use certs::{
    check_leaf, node_id_of_cert, node_id_of_file, node_id_of_key, subject_of, Identity,
    IdentityError, KeyProblem, LeafProblem,
};
pub use node_id::{
    NodeId, NodeIdError, NodeIdHashBuilder, NodeIdHasher, PeerMap, PrefixError, MIN_PREFIX_DIGITS,
    NODE_ID_LEN,
};
