//! chainmesh's benchmarks: `cargo bench --workspace --bench side_by_side` (chainmesh beside a
//! bare-TLS baseline and rust-libp2p), `--bench codec` and `--bench routing`. The harness
//! lives in `benches/`; `docs/performance.md` explains the scenarios and figures.

pub mod soak;
