//! The checks behind chainmesh's fuzz targets, as plain functions over bytes.
//!
//! Each libFuzzer target in `fuzz_targets/` calls one of these, and the stable test
//! `crates/chainmesh/tests/fuzz_corpus.rs` calls the same functions on every committed corpus
//! and regression input, so what the long runs found stays checked on every CI run.
//!
//! A check panics only when the code under test breaks a property (a decoded value that does
//! not re-encode to its bytes, an output over its limit, a streaming decode that depends on
//! how the stream was split); a malformed input that is refused with a typed error passes.

pub mod channel;
pub mod compress;
pub mod config;
pub mod packet;
pub mod payloads;
pub mod stream;

pub use channel::{channel_json, channel_stream};
pub use compress::decompress;
pub use config::config;
pub use packet::{handshake, packet_stream};
pub use payloads::{router, status};

/// A target's check: panics when the code under test breaks a property on `data`.
pub type Check = fn(&[u8]);

/// Every target by its name: the name of its file in `fuzz_targets/` and of its directories in
/// `corpus/` and `regressions/`.
pub const TARGETS: &[(&str, Check)] = &[
    ("packet_stream", packet_stream),
    ("handshake", handshake),
    ("router", router),
    ("status", status),
    ("channel_stream", channel_stream),
    ("channel_json", channel_json),
    ("decompress", decompress),
    ("config", config),
];
