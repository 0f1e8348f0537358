//! The allocator every benchmark binary runs on, and readings of the process's memory that
//! both the side-by-side and the scale benchmark take.

use anyhow::{Context as _, Result};

// Every benchmark runs on the allocator the chainmesh binary uses, so that its latency and
// memory figures are the node program's. With glibc's, each 1 MiB message a receiver
// reassembles or reads is a fresh mapping, and its page faults (2 million in a quick priority
// run) were most of a loaded link's p99 (docs/performance.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Resident memory of the whole process, in bytes, from `/proc/self/statm`.
pub fn rss_bytes() -> Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").context("reading /proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .context("unexpected /proc/self/statm format")?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Ok(pages * u64::try_from(page).unwrap_or(4096))
}

/// Returns freed heap memory to the kernel, so that a later RSS reading counts what is live
/// rather than what earlier work left in the allocator's free lists: jemalloc purges the
/// dirty pages of every arena, which it would otherwise keep for up to ten seconds.
pub fn trim_heap() {
    // `MALLCTL_ARENAS_ALL`: the index that names every arena.
    const PURGE_ALL: &std::ffi::CStr = c"arena.4096.purge";
    // SAFETY: a purge takes no argument and returns nothing, so every pointer is null; it
    // only gives unused pages back.
    let status = unsafe {
        tikv_jemalloc_sys::mallctl(
            PURGE_ALL.as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
    if status != 0 {
        eprintln!("jemalloc purge failed ({status}): RSS readings include freed pages");
    }
}
