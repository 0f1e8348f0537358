//! The peer set.

pub mod admission;
