//! The soak runner's parts (`cargo run --release -p chainmesh-bench --example soak`, or
//! `scripts/soak`): a network of `chainmesh node` processes under mixed load for a long time,
//! sampled for RSS, descriptors, queue depths and message counts, written as CSV and an SVG
//! plot, and judged at the end. The example drives the processes; what it computes from
//! them lives here, where it is unit-tested.

pub mod admin;
pub mod amop;
pub mod figure;
pub mod flat;
pub mod record;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod summary;
pub mod svg;
