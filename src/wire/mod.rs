//! Pure codecs: no I/O.

/// Length of the fixed P2P packet header.
pub const HEADER_LEN: usize = 14;
