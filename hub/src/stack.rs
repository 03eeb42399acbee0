//! Greenlet stacks: guarded `mmap` regions, recycled through a per-hub free list.
//!
//! # Layout
//!
//! ```text
//!   low addresses                                            high addresses
//!   ┌──────────────┬──────────────────────────────────────────────────────┐
//!   │  guard page  │ usable stack (PROT_READ|PROT_WRITE, lazily committed) │
//!   │ (PROT_NONE)  │                       grows ◀──────────────────── top │
//!   └──────────────┴──────────────────────────────────────────────────────┘
//!   ^ limit()                                                      base() ^
//! ```
//!
//! A stack overflow runs into the guard page and faults; `overflow.rs` turns that fault
//! into the end of that greenlet alone ([`StackOverflow`], naming it and its stack size)
//! instead of a bare segfault. Pages are committed only when touched, so a 256 KiB stack
//! whose greenlet never goes deep costs one or two pages of memory.
//!
//! # Limits
//!
//! Each guarded stack is two kernel memory maps (the guard and the usable part have
//! different protections, so they cannot merge). The kernel allows `vm.max_map_count`
//! maps per process (65530 by default), which caps guarded stacks at about 32k alive at
//! once, process-wide. Past the cap, or past the hub's own `max_stacks`, allocation fails
//! with an error that says so, never with a crash.
//!
//! Stacks are allocated lazily, when a greenlet first runs, so 100,000 greenlets that are
//! spawned and joined in turn reuse one stack from the free list.
//!
//! [`StackOverflow`]: crate::GreenletError::StackOverflow

use std::io;
use std::ptr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use corosensei::stack::StackPointer;

/// The default usable size of a greenlet stack: 256 KiB of address space, of which only
/// the touched pages cost memory.
pub const DEFAULT_STACK_SIZE: usize = 256 * 1024;

/// The smallest stack a greenlet may ask for. Unwinding a panic and formatting its
/// message need a few KiB; 16 KiB leaves room for modest bodies.
pub const MIN_STACK_SIZE: usize = 16 * 1024;

/// The largest stack a greenlet may ask for (1 GiB).
pub const MAX_STACK_SIZE: usize = 1 << 30;

/// Maps the process keeps for everything that is not a greenlet stack (libraries, heap
/// arenas, thread stacks) when deriving the stack cap from `vm.max_map_count`.
const MAPS_RESERVED_FOR_OTHERS: usize = 2048;

/// Guarded stacks currently mapped by every hub of this process (in use or free-listed).
static GUARDED_STACKS: AtomicUsize = AtomicUsize::new(0);

/// The system page size.
pub(crate) fn page_size() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf has no memory-safety preconditions.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if size > 0 { size as usize } else { 4096 }
    })
}

/// The kernel's `vm.max_map_count` (65530 when it cannot be read).
pub fn max_map_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/vm/max_map_count")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(65530)
    })
}

/// The process-wide cap on guarded stacks derived from `vm.max_map_count`: two maps per
/// stack, after keeping some maps for the rest of the process. About 31,700 by default.
pub fn process_stack_limit() -> usize {
    max_map_count().saturating_sub(MAPS_RESERVED_FOR_OTHERS) / 2
}

/// Number of guarded stacks mapped right now by all hubs of the process.
pub fn guarded_stacks_mapped() -> usize {
    GUARDED_STACKS.load(Ordering::Relaxed)
}

/// Rounds a requested usable size up to whole pages, or explains why it is not allowed.
pub(crate) fn checked_stack_size(requested: usize) -> io::Result<usize> {
    if !(MIN_STACK_SIZE..=MAX_STACK_SIZE).contains(&requested) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "greenlet stack size {requested} bytes is out of range: it must be between \
                 {MIN_STACK_SIZE} bytes (16 KiB) and {MAX_STACK_SIZE} bytes (1 GiB)"
            ),
        ));
    }
    let page = page_size();
    Ok(requested.div_ceil(page) * page)
}

/// One `mmap`'d stack with a guard page at its low end.
///
/// # Invariant
///
/// `low..low + len` is a mapping this value owns: its first page is `PROT_NONE`, the rest
/// readable and writable. It is unmapped exactly once, when this value is dropped.
pub(crate) struct GuardedStack {
    low: usize,
    len: usize,
}

impl GuardedStack {
    /// Maps a new stack with `usable` bytes (a multiple of the page size) above a guard page.
    fn map(usable: usize) -> io::Result<GuardedStack> {
        let page = page_size();
        let len = usable + page;
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK;
        // SAFETY: an anonymous mapping at an address of the kernel's choosing touches no
        // existing memory.
        let low = unsafe {
            libc::mmap(ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, flags, -1, 0)
        };
        if low == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the first page lies inside the mapping we just created and own.
        if unsafe { libc::mprotect(low, page, libc::PROT_NONE) } != 0 {
            let err = io::Error::last_os_error();
            // SAFETY: the mapping is ours and nothing else knows about it yet.
            unsafe { libc::munmap(low, len) };
            return Err(err);
        }
        Ok(GuardedStack { low: low as usize, len })
    }

    /// Maps a stack outside any pool (for one-off probes), still counted process-wide.
    pub(crate) fn probe(usable: usize) -> io::Result<GuardedStack> {
        GUARDED_STACKS.fetch_add(1, Ordering::Relaxed);
        GuardedStack::map(checked_stack_size(usable)?).inspect_err(|_| {
            GUARDED_STACKS.fetch_sub(1, Ordering::Relaxed);
        })
    }

    /// Usable bytes (excluding the guard page).
    pub(crate) fn usable(&self) -> usize {
        self.len - page_size()
    }

    /// The guard page's address range, for the overflow reporter.
    pub(crate) fn guard(&self) -> (usize, usize) {
        (self.low, self.low + page_size())
    }
}

impl Drop for GuardedStack {
    fn drop(&mut self) {
        // SAFETY: by the invariant we own this mapping and nothing runs on it any more
        // (a stack is only dropped after its coroutine returned, or from the free list).
        unsafe { libc::munmap(self.low as *mut libc::c_void, self.len) };
        GUARDED_STACKS.fetch_sub(1, Ordering::Relaxed);
    }
}

// SAFETY: `base` and `limit` describe the owned mapping of the invariant; the limit
// includes the guard page, as corosensei requires, and usable size is at least 16 KiB.
unsafe impl corosensei::stack::Stack for GuardedStack {
    fn base(&self) -> StackPointer {
        StackPointer::new(self.low + self.len).expect("stack top is non-null")
    }

    fn limit(&self) -> StackPointer {
        StackPointer::new(self.low).expect("stack mapping is non-null")
    }
}

/// The stack a greenlet coroutine runs on: its own guarded stack, or a handle to one of
/// the hub's shared stacks (see `shared_stack.rs`).
pub(crate) enum Stack {
    Guarded(GuardedStack),
    Shared(crate::shared_stack::SharedStackHandle),
}

// SAFETY: both variants satisfy corosensei's contract (a guard page below at least 16 KiB
// of memory that stays mapped while the coroutine lives); see their own impls.
unsafe impl corosensei::stack::Stack for Stack {
    fn base(&self) -> StackPointer {
        match self {
            Stack::Guarded(stack) => corosensei::stack::Stack::base(stack),
            Stack::Shared(handle) => corosensei::stack::Stack::base(handle),
        }
    }

    fn limit(&self) -> StackPointer {
        match self {
            Stack::Guarded(stack) => corosensei::stack::Stack::limit(stack),
            Stack::Shared(handle) => corosensei::stack::Stack::limit(handle),
        }
    }
}

/// A hub's stacks: a free list per size, and the counts that enforce the limits.
pub(crate) struct StackPool {
    /// Free stacks, grouped by usable size (nearly always a single group).
    free: Vec<(usize, Vec<GuardedStack>)>,
    free_count: usize,
    /// Stacks this hub has mapped (in use plus free).
    held: usize,
    /// Stacks in use right now by running or suspended greenlets.
    in_use: usize,
}

impl StackPool {
    pub(crate) fn new() -> StackPool {
        StackPool { free: Vec::new(), free_count: 0, held: 0, in_use: 0 }
    }

    pub(crate) fn in_use(&self) -> usize {
        self.in_use
    }

    pub(crate) fn free_count(&self) -> usize {
        self.free_count
    }

    /// Whether a stack of `size` could be handed out without mapping a new one.
    fn has_free(&self, size: usize) -> bool {
        self.free.iter().any(|(s, list)| *s == size && !list.is_empty())
    }

    /// Fails fast, without mapping anything, if taking one more stack of `size` would
    /// exceed a limit. `spawn` uses this so that exhaustion is reported to the spawner.
    pub(crate) fn check_can_take(&self, size: usize, max_stacks: Option<usize>) -> io::Result<()> {
        if self.has_free(size) {
            return Ok(());
        }
        self.check_limits(max_stacks)
    }

    /// Whether an adaptive greenlet that found no free stack should go on a shared stack
    /// rather than map a new guarded one: the hub is one short of its `max_stacks` (the
    /// last is kept for a shared stack), or the process maps seven eighths of its cap (the
    /// rest is kept for greenlets with an explicit stack size and for shared stacks).
    pub(crate) fn running_short(&self, max_stacks: Option<usize>) -> bool {
        let cap = process_stack_limit();
        max_stacks.is_some_and(|max| self.held + 1 >= max)
            || GUARDED_STACKS.load(Ordering::Relaxed) >= cap - cap / 8
    }

    fn check_limits(&self, max_stacks: Option<usize>) -> io::Result<()> {
        if let Some(max) = max_stacks
            && self.held >= max
        {
            return Err(exhausted(format!(
                "this hub already holds {} guarded stacks and its max_stacks setting is {max}",
                self.held
            )));
        }
        let mapped = GUARDED_STACKS.load(Ordering::Relaxed);
        if mapped >= process_stack_limit() {
            return Err(exhausted(format!(
                "the process already maps {mapped} guarded stacks, the most that \
                 vm.max_map_count = {} allows (two maps per stack)",
                max_map_count()
            )));
        }
        Ok(())
    }

    /// Hands out a stack with `size` usable bytes: a recycled one if possible, else a new
    /// mapping, unless a limit forbids it.
    pub(crate) fn take(
        &mut self,
        size: usize,
        max_stacks: Option<usize>,
    ) -> io::Result<GuardedStack> {
        match self.take_free(size) {
            Some(stack) => Ok(stack),
            None => self.map_new(size, max_stacks),
        }
    }

    /// A recycled stack with `size` usable bytes, if one is free.
    #[inline]
    pub(crate) fn take_free(&mut self, size: usize) -> Option<GuardedStack> {
        let (_, list) = self.free.iter_mut().find(|(s, _)| *s == size)?;
        let stack = list.pop()?;
        self.free_count -= 1;
        self.in_use += 1;
        Some(stack)
    }

    /// Maps a new stack with `size` usable bytes, unless a limit forbids it.
    pub(crate) fn map_new(
        &mut self,
        size: usize,
        max_stacks: Option<usize>,
    ) -> io::Result<GuardedStack> {
        self.check_limits(max_stacks)?;
        GUARDED_STACKS.fetch_add(1, Ordering::Relaxed);
        let stack = GuardedStack::map(size).map_err(|err| {
            GUARDED_STACKS.fetch_sub(1, Ordering::Relaxed);
            if err.raw_os_error() == Some(libc::ENOMEM) {
                exhausted(format!(
                    "mmap of a {} KiB stack failed with ENOMEM ({err}); the process may \
                     have reached vm.max_map_count = {} memory maps",
                    size / 1024,
                    max_map_count()
                ))
            } else {
                err
            }
        })?;
        self.held += 1;
        self.in_use += 1;
        Ok(stack)
    }

    /// Takes back a stack whose coroutine has returned. Keeps it for reuse unless
    /// `max_free` stacks are already waiting, in which case it is unmapped.
    pub(crate) fn give_back(&mut self, stack: GuardedStack, max_free: usize) {
        self.in_use -= 1;
        if self.free_count >= max_free {
            self.held -= 1;
            return; // dropping unmaps it
        }
        let size = stack.usable();
        match self.free.iter_mut().find(|(s, _)| *s == size) {
            Some((_, list)) => list.push(stack),
            None => self.free.push((size, vec![stack])),
        }
        self.free_count += 1;
    }

    /// Unmaps every free stack.
    pub(crate) fn release_free(&mut self) {
        self.held -= self.free_count;
        self.free_count = 0;
        self.free.clear();
    }
}

/// The error for "no more stacks", with the advice that applies whatever the cause.
fn exhausted(cause: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::OutOfMemory,
        format!(
            "cannot allocate a greenlet stack: {cause}. Each guarded stack costs two of the \
             kernel's memory maps and vm.max_map_count (now {}) caps a process at about {} \
             of them alive at once. Let some greenlets finish, raise vm.max_map_count, or \
             let this hub use shared stacks, which have no such cap (HubConfig::stack_mode = \
             StackMode::Adaptive, the default, for greenlets without an explicit stack size)",
            max_map_count(),
            process_stack_limit()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_up_to_pages_and_reject_extremes() {
        let page = page_size();
        assert_eq!(checked_stack_size(MIN_STACK_SIZE + 1).unwrap(), MIN_STACK_SIZE + page);
        assert!(checked_stack_size(1024).is_err());
        assert!(checked_stack_size(MAX_STACK_SIZE + 1).is_err());
    }

    #[test]
    fn free_list_recycles_and_hub_limit_is_reported() {
        let mut pool = StackPool::new();
        let a = pool.take(MIN_STACK_SIZE, Some(1)).unwrap();
        let (lo, _) = a.guard();
        let err = pool.take(MIN_STACK_SIZE, Some(1)).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::OutOfMemory);
        assert!(err.to_string().contains("vm.max_map_count"), "{err}");
        pool.give_back(a, 8);
        let b = pool.take(MIN_STACK_SIZE, Some(1)).unwrap();
        assert_eq!(b.guard().0, lo, "the freed stack is handed out again");
        pool.give_back(b, 0);
        assert_eq!(pool.free_count(), 0, "max_free = 0 unmaps at once");
    }
}
