//! Shared stacks: many greenlets take turns on a few guarded stacks, the way Python's
//! greenlet does, so that 100,000 idle greenlets fit under `vm.max_map_count`.
//!
//! # Why
//!
//! A guarded stack costs two kernel memory maps, and the kernel allows 65,530 per process
//! by default: about 32k guarded stacks. In [`StackMode::Shared`](crate::StackMode) (and in
//! the default adaptive mode, past its switch-over) a hub keeps a handful of guarded stacks (16 by default) and binds each greenlet to one of them
//! for its whole life. Only one greenlet's frames can sit on a shared stack at a time; the
//! others keep a heap copy of just the part of the stack they were using.
//!
//! # How a switch works
//!
//! ```text
//!   shared stack k (guarded)                       heap
//!   ┌───────┬──────────────────────┬─────────┐
//!   │ guard │        unused        │ A's live│  ← A is the occupant (suspended or running)
//!   └───────┴──────────────────────┴─────────┘
//!                                  ^ A's sp − switch depth    top ^
//!
//!   the loop wants to resume B (also bound to k):
//!     1. copy A's live bytes [A's low, top) to A's heap buffer          (save A)
//!     2. copy B's heap buffer back to the top of the stack              (restore B)
//!     3. B is the occupant; resume it — its frames are exactly where they were
//! ```
//!
//! The copy goes back to the same addresses, so every pointer into the stack stays valid
//! *as long as nothing dereferences it while its greenlet is swapped out*. Spawned closures
//! are `'static`, the thread pool's too, `block_on` keeps its future on the heap in these
//! greenlets, and the hub keeps no pointers into stacks. But a scoped thread
//! (`std::thread::scope`, safe Rust) borrowing the greenlet's locals while the greenlet
//! parks inside the scope, a DMA/io_uring buffer, or a raw pointer handed to another
//! greenlet would see another greenlet's bytes. That is the price of sharing; guarded
//! stacks (`StackMode::Guarded`, or an explicit `Builder::stack_size`) have no such
//! caveat.
//!
//! # Where the live part starts
//!
//! corosensei keeps a suspended coroutine's stack pointer private, so shared-mode greenlets
//! suspend through one function, [`suspend_recording_sp`], which records the stack pointer
//! just before the switch. The switch itself pushes a fixed amount below that point; the
//! hub measures that depth once per process ([`suspend_depth`]) by running a probe
//! coroutine on a stack filled with a pattern and finding the lowest byte it changed.

use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::sync::OnceLock;

use corosensei::stack::StackPointer;
use corosensei::{Coroutine, CoroutineResult, Yielder};

use crate::stack::{GuardedStack, StackPool};
use crate::task::{Core, TaskRef};

/// Extra bytes saved below the measured depth, for safety.
const DEPTH_SLACK: usize = 64;

/// A handle to one shared stack, given to corosensei as a coroutine's stack. It owns no
/// memory: the [`SharedStacks`] pool owns the mapping and outlives every handle.
pub(crate) struct SharedStackHandle {
    base: usize,
    limit: usize,
}

/// One shared stack and the greenlet whose frames are on it now.
struct SharedStack {
    memory: GuardedStack,
    /// The greenlet whose live frames are in place (it may be suspended or running).
    occupant: Option<TaskRef>,
    /// Greenlets bound to this stack and not finished (for picking the least busy one).
    bound: usize,
}

/// The shared stacks of one hub.
pub(crate) struct SharedStacks {
    stacks: Vec<SharedStack>,
    /// Where suspended greenlets' frames are kept while they are swapped out.
    arena: SaveArena,
    /// Bytes copied out and in, for the stats.
    pub(crate) bytes_copied: u64,
}

impl SharedStacks {
    pub(crate) fn new() -> SharedStacks {
        SharedStacks { stacks: Vec::new(), arena: SaveArena::new(), bytes_copied: 0 }
    }

    /// Binds a greenlet that is about to start to a shared stack of `size` usable bytes: an
    /// idle one if there is one, else a new one while fewer than `count` of that size exist
    /// (and one can be mapped), else the least busy. Returns the stack's index.
    pub(crate) fn bind(
        &mut self,
        count: usize,
        size: usize,
        pool: &mut StackPool,
        max_stacks: Option<usize>,
    ) -> io::Result<usize> {
        // One pass over the stacks of this size (`stack_size` may have been changed since
        // others were mapped): the first idle one, else the least busy.
        let mut least: Option<(usize, usize)> = None;
        let mut of_size = 0;
        for (index, stack) in self.stacks.iter().enumerate() {
            if stack.memory.usable() != size {
                continue;
            }
            of_size += 1;
            if least.is_none_or(|(_, bound)| stack.bound < bound) {
                least = Some((index, stack.bound));
                if stack.bound == 0 {
                    break;
                }
            }
        }
        if let Some((index, 0)) = least {
            self.stacks[index].bound += 1;
            return Ok(index);
        }
        if of_size < count.max(1) {
            match pool.take(size, max_stacks) {
                Ok(memory) => {
                    self.stacks.push(SharedStack { memory, occupant: None, bound: 1 });
                    return Ok(self.stacks.len() - 1);
                }
                // With a shared stack to fall back on, a failed mapping just means fewer.
                Err(err) if least.is_none() => return Err(err),
                Err(_) => {}
            }
        }
        let (index, _) = least.expect("a stack of the size: mapped above, or mapping failed");
        self.stacks[index].bound += 1;
        Ok(index)
    }

    /// The corosensei stack handle for shared stack `index`.
    pub(crate) fn handle(&self, index: usize) -> SharedStackHandle {
        let memory = &self.stacks[index].memory;
        let (guard_low, _) = memory.guard();
        SharedStackHandle {
            base: guard_low + memory.usable() + crate::stack::page_size(),
            limit: guard_low,
        }
    }

    /// The guard page of shared stack `index`, for the overflow reporter.
    pub(crate) fn guard(&self, index: usize) -> (usize, usize) {
        self.stacks[index].memory.guard()
    }

    /// Makes `task`'s frames the ones on its shared stack: saves the current occupant's
    /// live bytes to its heap buffer and restores `task`'s, unless `task` is already the
    /// occupant.
    pub(crate) fn make_resident(&mut self, task: &TaskRef) {
        let core = task.core();
        let index = core.shared_index().expect("a shared-stack greenlet has a stack index");
        let top = self.handle(index).base;
        let stack = &mut self.stacks[index];
        if let Some(occupant) = &stack.occupant {
            if TaskRef::ptr_eq(occupant, task) {
                return;
            }
            self.bytes_copied += save(&mut self.arena, occupant.core(), top) as u64;
        }
        self.bytes_copied += restore(core, top) as u64;
        stack.occupant = Some(task.clone());
    }

    /// A greenlet bound to stack `index` finished: free its place.
    pub(crate) fn release(&mut self, index: usize, task: &TaskRef) {
        self.arena.free(task.core().saved_stack.take());
        let stack = &mut self.stacks[index];
        stack.bound -= 1;
        if stack.occupant.as_ref().is_some_and(|o| TaskRef::ptr_eq(o, task)) {
            stack.occupant = None;
        }
    }

    /// Number of shared stacks mapped.
    pub(crate) fn len(&self) -> usize {
        self.stacks.len()
    }

    /// Gives the stacks back to the pool (the hub is shutting down). Occupants are
    /// abandoned, never resumed.
    pub(crate) fn abandon(&mut self) {
        for stack in self.stacks.drain(..) {
            std::mem::forget(stack.occupant);
            drop(stack.memory);
        }
        self.arena.unmap();
    }
}

/// Copies a suspended occupant's live bytes `[low, top)` into its saved-bytes block.
/// Returns the number of bytes copied.
fn save(arena: &mut SaveArena, core: &Core, top: usize) -> usize {
    let sp = core.suspended_sp.get();
    debug_assert!(sp != 0 && sp < top, "a suspended shared-stack greenlet recorded its sp");
    let len = top - live_low(sp);
    let mut block = core.saved_stack.take();
    if block.capacity() < len || block.capacity() > 2 * len + 4096 {
        arena.free(block);
        block = arena.alloc(len);
    }
    // SAFETY: `[top - len, top)` lies inside the shared stack (a live mapping owned by the
    // hub) and holds the suspended occupant's frames; the block has room for `len` bytes.
    unsafe { std::ptr::copy_nonoverlapping((top - len) as *const u8, block.ptr, len) };
    block.set_len(len);
    core.saved_stack.set(block);
    len
}

/// Copies a greenlet's saved bytes back to `[top - len, top)`. Returns the bytes copied
/// (0 for a greenlet that has never run, whose stack is created in place).
fn restore(core: &Core, top: usize) -> usize {
    let block = core.saved_stack.get();
    let len = block.len();
    if len > 0 {
        // SAFETY: the destination is the top `len` bytes of the greenlet's own shared
        // stack, whose previous occupant was just saved; the block holds `len` bytes.
        unsafe { std::ptr::copy_nonoverlapping(block.ptr, (top - len) as *mut u8, len) };
    }
    len
}

/// A block of saved frames: `capacity` bytes at `ptr`, of which the first `len` are used.
/// The empty block (capacity 0) owns nothing. Sizes are `u32` (stacks are at most 1 GiB):
/// every greenlet carries one of these in its `Core`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SavedBytes {
    ptr: *mut u8,
    len: u32,
    capacity: u32,
}

impl Default for SavedBytes {
    fn default() -> Self {
        SavedBytes { ptr: std::ptr::null_mut(), len: 0, capacity: 0 }
    }
}

impl SavedBytes {
    /// An empty block of `capacity` bytes at `ptr`.
    fn new(ptr: *mut u8, capacity: usize) -> SavedBytes {
        let capacity = u32::try_from(capacity).expect("saved frames fit a stack: at most 1 GiB");
        SavedBytes { ptr, len: 0, capacity }
    }

    fn len(&self) -> usize {
        self.len as usize
    }

    fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// Records that the first `len` bytes (at most the capacity) are in use.
    fn set_len(&mut self, len: usize) {
        debug_assert!(len <= self.capacity());
        self.len = len as u32; // at most the capacity, a u32
    }
}

/// Memory for saved frames: blocks in 64-byte size classes up to 16 KiB, with a free list
/// per class (no allocator coalescing on the hot path), bump-allocated from 2 MiB chunks
/// that ask for transparent huge pages, so 100,000 saved stacks cost a few dozen page
/// faults rather than fifteen thousand. Larger blocks come from the global allocator.
struct SaveArena {
    /// Mapped chunks, for unmapping at hub shutdown.
    chunks: Vec<(usize, usize)>,
    bump: usize,
    bump_end: usize,
    free: Vec<Vec<*mut u8>>,
}

const CLASS_BYTES: usize = 64;
const MAX_CLASSED: usize = 16 * 1024;
const CHUNK_BYTES: usize = 2 << 20;

impl SaveArena {
    fn new() -> SaveArena {
        SaveArena {
            chunks: Vec::new(),
            bump: 0,
            bump_end: 0,
            free: vec![Vec::new(); MAX_CLASSED / CLASS_BYTES + 1],
        }
    }

    fn alloc(&mut self, len: usize) -> SavedBytes {
        if len > MAX_CLASSED {
            let mut vec = std::mem::ManuallyDrop::new(Vec::<u8>::with_capacity(len));
            return SavedBytes::new(vec.as_mut_ptr(), vec.capacity());
        }
        let class = len.div_ceil(CLASS_BYTES);
        let capacity = class * CLASS_BYTES;
        if let Some(ptr) = self.free[class].pop() {
            return SavedBytes::new(ptr, capacity);
        }
        if self.bump + capacity > self.bump_end {
            self.map_chunk();
        }
        let ptr = self.bump as *mut u8;
        self.bump += capacity;
        SavedBytes::new(ptr, capacity)
    }

    fn free(&mut self, block: SavedBytes) {
        if block.capacity() == 0 {
            return;
        }
        if block.capacity() > MAX_CLASSED {
            // SAFETY: blocks this large came from `Vec::with_capacity` in `alloc`, with
            // exactly this pointer and capacity.
            drop(unsafe { Vec::from_raw_parts(block.ptr, 0, block.capacity()) });
            return;
        }
        self.free[block.capacity() / CLASS_BYTES].push(block.ptr);
    }

    /// Maps a 2 MiB chunk aligned to 2 MiB (so the kernel can back it with one huge page)
    /// and makes it the bump region.
    fn map_chunk(&mut self) {
        let len = 2 * CHUNK_BYTES;
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
        // SAFETY: an anonymous mapping at an address of the kernel's choosing.
        let raw = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, flags, -1, 0)
        };
        if raw == libc::MAP_FAILED {
            panic!(
                "verdant: cannot map 2 MiB to keep suspended greenlets' stacks: {}",
                io::Error::last_os_error()
            );
        }
        let raw = raw as usize;
        let start = raw.next_multiple_of(CHUNK_BYTES);
        // SAFETY: both trimmed ranges lie inside the mapping we just made and nothing uses
        // them; the kept range is advised only, which cannot fail destructively.
        unsafe {
            if start > raw {
                libc::munmap(raw as *mut libc::c_void, start - raw);
            }
            let tail = start + CHUNK_BYTES;
            libc::munmap(tail as *mut libc::c_void, raw + len - tail);
            libc::madvise(start as *mut libc::c_void, CHUNK_BYTES, libc::MADV_HUGEPAGE);
        }
        self.chunks.push((start, CHUNK_BYTES));
        self.bump = start;
        self.bump_end = start + CHUNK_BYTES;
    }

    /// Unmaps every chunk (the hub is shutting down; no greenlet will be resumed).
    fn unmap(&mut self) {
        for (start, len) in self.chunks.drain(..) {
            // SAFETY: each chunk is a mapping this arena made and owns.
            unsafe { libc::munmap(start as *mut libc::c_void, len) };
        }
        self.free.iter_mut().for_each(Vec::clear);
        self.bump = 0;
        self.bump_end = 0;
    }
}

// Several coroutines use the same memory, but never at the same time: the hub copies one
// greenlet's frames out before another's are copied in (`make_resident`).
// SAFETY: a guarded mapping (the limit includes the guard page) of at least 16 KiB that
// the hub's `SharedStacks` owns for longer than any coroutine using it.
unsafe impl corosensei::stack::Stack for SharedStackHandle {
    fn base(&self) -> StackPointer {
        StackPointer::new(self.base).expect("stack top is non-null")
    }

    fn limit(&self) -> StackPointer {
        StackPointer::new(self.limit).expect("stack limit is non-null")
    }
}

/// The stack pointer right now (approximately, for the functions below).
#[inline(always)]
fn stack_pointer() -> usize {
    let sp: usize;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: reads a register; no memory is touched.
    unsafe {
        std::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags))
    };
    #[cfg(target_arch = "aarch64")]
    // SAFETY: reads a register; no memory is touched.
    unsafe {
        std::arch::asm!("mov {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags))
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let marker = 0u8;
        sp = std::hint::black_box(&marker) as *const u8 as usize;
    }
    sp
}

/// Suspends a shared-stack greenlet, first recording its stack pointer in `suspended_sp`.
///
/// Every shared-stack suspension goes through this one function, so that the bytes the
/// switch writes below the recorded pointer are the same each time ([`suspend_depth`]);
/// it must never be inlined.
///
/// # Safety
///
/// `yielder` must be the running coroutine's own yielder (the `Core::yielder` invariant).
#[inline(never)]
pub(crate) unsafe fn suspend_recording_sp(
    yielder: *const Yielder<(), ()>,
    suspended_sp: &Cell<usize>,
) {
    suspended_sp.set(stack_pointer());
    // SAFETY: guaranteed by the caller.
    unsafe { (*yielder).suspend(()) };
}

/// The lowest live address of a greenlet suspended through [`suspend_recording_sp`] with
/// the stack pointer `sp`.
fn live_low(sp: usize) -> usize {
    (sp - suspend_depth() - DEPTH_SLACK) & !15
}

/// How many bytes below the recorded stack pointer the switch in [`suspend_recording_sp`]
/// writes (return addresses, saved registers). Measured once per process, with two
/// patterns in case a written word happens to equal one of them.
pub(crate) fn suspend_depth() -> usize {
    static DEPTH: OnceLock<usize> = OnceLock::new();
    *DEPTH.get_or_init(|| measure_depth(0xA5).max(measure_depth(0x5A)))
}

/// Runs a probe coroutine on a stack filled with `pattern`, suspends it through
/// [`suspend_recording_sp`], and returns how far below the recorded stack pointer the
/// lowest changed byte lies.
fn measure_depth(pattern: u8) -> usize {
    let probe = GuardedStack::probe(64 * 1024).expect("cannot map a probe stack");
    let usable_low = probe.guard().1;
    // SAFETY: this is the writable part of the probe mapping, which nothing runs on yet.
    unsafe { std::ptr::write_bytes(usable_low as *mut u8, pattern, probe.usable()) };
    let recorded = Rc::new(Cell::new(0usize));
    let recorder = recorded.clone();
    let mut coroutine = Coroutine::with_stack(probe, move |yielder: &Yielder<(), ()>, ()| {
        // SAFETY: `yielder` is this coroutine's own yielder.
        unsafe { suspend_recording_sp(yielder, &recorder) };
    });
    assert!(matches!(coroutine.resume(()), CoroutineResult::Yield(())), "the probe suspends");
    let sp = recorded.get();
    let lowest = (usable_low..sp)
        // SAFETY: every address is inside the probe's writable mapping, now suspended.
        .find(|&address| unsafe { *(address as *const u8) } != pattern)
        .unwrap_or(sp);
    assert!(matches!(coroutine.resume(()), CoroutineResult::Return(())), "the probe ends");
    sp - lowest
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe behind shared stacks: what corosensei's switch writes below the stack
    /// pointer it was given. If a corosensei upgrade changed its switch, this is where it
    /// shows (corosensei is pinned to one version for that reason).
    #[test]
    fn the_switch_depth_probe_finds_a_small_stable_depth() {
        let a = measure_depth(0xA5);
        let b = measure_depth(0x5A);
        // A debug build does not inline corosensei's `suspend`: its frames lie below too.
        let bound = if cfg!(debug_assertions) { 4096 } else { 512 };
        assert!(a > 0 && a <= bound, "the switch writes {a} bytes below the recorded sp");
        assert_eq!(a, b, "the depth does not depend on the fill pattern");
        assert_eq!(measure_depth(0xA5), a, "the depth is the same every time");
        assert_eq!(suspend_depth(), a);
    }
}
