//! The gate: one word of memory shared by the pool and one worker, through which every
//! task the pool sends that worker is *decided* exactly once: started by the worker, or
//! taken back by the pool (to give it to an idle worker) before the worker started it.
//!
//! ```text
//!   tasks sent to the worker, numbered 1, 2, 3, … in the order sent (their seq)
//!   decided = the seq of the last decided one
//!
//!   worker, before it runs task s:   decided: s-1 → s   (lost: the pool took s; skip it)
//!   pool, taking back task d+1:      decided: d → d+1   (lost: the worker started it)
//! ```
//!
//! Both sides advance the word only with the same compare-and-swap, so for every seq
//! exactly one of them wins. Since the worker decides its tasks in order, the word also
//! tells the pool, once the worker is dead, which of the tasks it held had started (seq
//! ≤ decided) and which never did (seq > decided).
//!
//! The word lives in a memfd, mapped by the pool and, through the fd
//! [`WORKER_GATE_FD`](crate::worker::WORKER_GATE_FD) it inherits, by the worker.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

/// One mapping of a gate's word.
///
/// # Invariant
///
/// `word` points to the start of a live, page-aligned, read-write `MAP_SHARED` mapping of
/// at least 8 bytes, which this value owns (unmaps when dropped). Other processes touch
/// the word only through atomic operations.
#[derive(Debug)]
pub(crate) struct Gate {
    word: NonNull<AtomicU64>,
}

impl Gate {
    /// A new gate (decided = 0), and the fd a worker maps it from.
    pub(crate) fn new() -> io::Result<(Gate, OwnedFd)> {
        // SAFETY: memfd_create reads the NUL-terminated name and returns a new fd or -1.
        let fd =
            unsafe { libc::memfd_create(c"verdant-processpool-gate".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            let err = io::Error::last_os_error();
            return Err(io::Error::new(err.kind(), format!("memfd_create for a worker: {err}")));
        }
        // SAFETY: `fd` was just created and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        std::fs::File::from(fd.try_clone()?).set_len(8)?; // zero-filled: decided = 0
        Ok((Gate::map(fd.as_raw_fd())?, fd))
    }

    /// Maps the gate whose memfd is `fd` (in a worker: the inherited one).
    pub(crate) fn map(fd: RawFd) -> io::Result<Gate> {
        // SAFETY: a new shared mapping of 8 bytes of `fd`; the kernel picks the address and
        // checks the fd. No existing memory is affected.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                8,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if address == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let word = NonNull::new(address.cast()).expect("mmap returns no null mapping");
        Ok(Gate { word })
    }

    /// The seq of the last task decided (0: none yet).
    pub(crate) fn decided(&self) -> u64 {
        self.word().load(Ordering::Acquire)
    }

    /// Decides task `seq` for the caller if it is the next undecided one; false if the
    /// other side decided it first (or it is not the next one).
    pub(crate) fn try_decide(&self, seq: u64) -> bool {
        let previous = seq.wrapping_sub(1);
        self.word().compare_exchange(previous, seq, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    fn word(&self) -> &AtomicU64 {
        // SAFETY: by the invariant, `word` is a live, aligned mapping of 8 bytes that is
        // only accessed atomically.
        unsafe { self.word.as_ref() }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        // SAFETY: by the invariant this value owns the mapping; no reference into it
        // outlives `self`.
        unsafe { libc::munmap(self.word.as_ptr().cast(), 8) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_seq_is_decided_once_by_either_side() {
        let (pool_side, fd) = Gate::new().unwrap();
        let worker_side = Gate::map(fd.as_raw_fd()).unwrap(); // a second mapping, as a worker's
        assert_eq!(pool_side.decided(), 0);
        assert!(worker_side.try_decide(1), "the worker starts task 1");
        assert!(!pool_side.try_decide(1), "too late to take it back");
        assert!(pool_side.try_decide(2), "the pool takes task 2 back");
        assert!(!worker_side.try_decide(2), "so the worker skips it");
        assert!(!worker_side.try_decide(4), "only the next seq can be decided");
        assert!(worker_side.try_decide(3));
        assert_eq!((pool_side.decided(), worker_side.decided()), (3, 3));
    }
}
