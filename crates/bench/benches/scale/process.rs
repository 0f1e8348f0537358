//! The descriptor limit a network of many in-process nodes needs.

use anyhow::{bail, Result};

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
