//! Readings and settings of the benchmark's own process: its resident memory, and the
//! descriptor limit a network of many in-process nodes needs.

use anyhow::{bail, Context as _, Result};

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

/// Returns freed heap memory to the kernel, so that an RSS reading counts what is live
/// rather than what an earlier, larger network left in the allocator's free lists.
pub fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// File descriptors a network of `nodes` nodes with `links` links takes in one process:
/// both ends of every link, a listener per node, and room for dials in flight, files and
/// the runtime.
pub fn descriptors_needed(nodes: usize, links: usize) -> u64 {
    (2 * links + 2 * nodes + 256) as u64
}

/// Raises the soft limit on open files to the hard limit if it is below `needed`; fails if
/// even the hard limit is.
pub fn ensure_descriptors(needed: u64) -> Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        bail!("getrlimit: {}", std::io::Error::last_os_error());
    }
    if lim.rlim_cur >= needed {
        return Ok(lim.rlim_cur);
    }
    if lim.rlim_max < needed {
        bail!(
            "{needed} file descriptors needed, the hard limit is {} (raise it with ulimit -Hn)",
            lim.rlim_max
        );
    }
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: setrlimit reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        bail!("setrlimit: {}", std::io::Error::last_os_error());
    }
    Ok(lim.rlim_cur)
}
