//! What a sample measures: resident memory, live heap, open file descriptors, threads,
//! and the greenlets alive on this thread's hub. Linux only (it reads `/proc/self`).

use std::time::{Duration, Instant};

/// One measurement of the process and of the calling thread's hub.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Since the soak started.
    pub elapsed: Duration,
    /// Resident set size, KiB (`/proc/self/statm`).
    pub rss_kib: u64,
    /// Heap bytes allocated and not freed, KiB (the soak's counting allocator).
    pub heap_kib: i64,
    /// Heap blocks allocated and not freed.
    pub heap_blocks: i64,
    /// Open file descriptors (entries of `/proc/self/fd`).
    pub fds: u64,
    /// OS threads of the process (`/proc/self/task`).
    pub threads: u64,
    /// Greenlets alive on this thread's hub: spawned minus finished.
    pub greenlets: u64,
}

impl Sample {
    /// Measures now. Reading `/proc` does not block in practice, so this runs on the hub.
    pub fn take(started: Instant) -> Sample {
        let hub = verdant::hub::stats();
        let (heap_bytes, heap_blocks) = super::heap::live();
        Sample {
            elapsed: started.elapsed(),
            rss_kib: rss_kib(),
            heap_kib: heap_bytes / 1024,
            heap_blocks,
            fds: open_fds(),
            threads: std::fs::read_dir("/proc/self/task").map_or(0, |dir| dir.count() as u64),
            greenlets: hub.spawned - hub.finished,
        }
    }
}

/// The resident set size in KiB (0 if `/proc` cannot be read).
fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no memory effects.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(0) as u64;
    pages * page_size / 1024
}

/// How many file descriptors are open (not counting the one used to list them).
fn open_fds() -> u64 {
    let listed = std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count() as u64);
    listed.saturating_sub(1)
}
