//! What the kernel says about a process: its resident set and its open descriptors, read
//! from `/proc/<pid>/status` and `/proc/<pid>/fd` (Linux). `/metrics` reads its own
//! process; the soak reads node processes from outside, as the operating system sees them;
//! the load generator reads its own process for its report lines.

use std::path::Path;

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcSample {
    /// Resident set size in KiB (`VmRSS`).
    pub rss_kb: u64,
    /// Open file descriptors (entries of `/proc/<pid>/fd`).
    pub fds: u64,
}

/// Reads `pid`'s RSS and descriptor count; `None` when the process is gone or `/proc` does not
/// describe it (a node being restarted between two samples).
pub fn sample(pid: u32) -> Option<ProcSample> {
    sample_at(&Path::new("/proc").join(pid.to_string()))
}

/// Reads this process's RSS and descriptor count, leaving out the descriptor that lists them.
pub fn sample_self() -> Option<ProcSample> {
    let s = sample_at(Path::new("/proc/self"))?;
    Some(ProcSample {
        fds: s.fds.saturating_sub(1),
        ..s
    })
}

fn sample_at(dir: &Path) -> Option<ProcSample> {
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    let rss_kb = vm_rss_kb(&status)?;
    let fds = std::fs::read_dir(dir.join("fd")).ok()?.count();
    Some(ProcSample {
        rss_kb,
        fds: u64::try_from(fds).unwrap_or(u64::MAX),
    })
}

/// The `VmRSS:` line of a `/proc/<pid>/status` text, in KiB.
pub fn vm_rss_kb(status: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix("VmRSS:")?;
        let mut words = rest.split_whitespace();
        let value: u64 = words.next()?.parse().ok()?;
        // The kernel has always written kB here; another unit would be a different format.
        (words.next() == Some("kB")).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_from_its_line_in_kib() {
        let status = "Name:\tchainmesh\nVmPeak:\t  900000 kB\nVmRSS:\t   23456 kB\nThreads:\t5\n";
        assert_eq!(vm_rss_kb(status), Some(23456));
    }

    #[test]
    fn a_status_without_vm_rss_or_with_another_unit_gives_nothing() {
        assert_eq!(vm_rss_kb("Name:\tkthreadd\nState:\tS\n"), None);
        assert_eq!(vm_rss_kb("VmRSS:\t12 MB\n"), None);
        assert_eq!(vm_rss_kb("VmRSS:\tlots kB\n"), None);
    }

    #[test]
    fn this_process_can_be_sampled_and_a_missing_one_cannot() {
        let me = sample(std::process::id()).expect("own /proc entry");
        assert!(me.rss_kb > 0);
        let own = sample_self().expect("/proc/self");
        assert!(own.rss_kb > 0 && own.fds >= 3);
        // stdin, stdout and stderr at least, and the descriptor read_dir itself held.
        assert!(me.fds >= 3);
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(sample_at(dir.path()), None);
    }
}
