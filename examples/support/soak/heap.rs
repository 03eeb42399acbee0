//! Live heap, counted: the soak's global allocator is the system's, wrapped to count the
//! bytes and blocks allocated and not yet freed. Unlike RSS, which moves in pages and
//! keeps what the allocator holds on to, these counts return to the same level when
//! nothing leaks.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};

/// The system allocator, counting.
#[derive(Debug)]
pub struct Counting;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static LIVE_BLOCKS: AtomicI64 = AtomicI64::new(0);

/// Bytes and blocks allocated and not freed, now.
pub fn live() -> (i64, i64) {
    (LIVE_BYTES.load(Relaxed), LIVE_BLOCKS.load(Relaxed))
}

fn counted(ptr: *mut u8, bytes: usize, blocks: i64) -> *mut u8 {
    if !ptr.is_null() {
        LIVE_BYTES.fetch_add(bytes as i64, Relaxed);
        LIVE_BLOCKS.fetch_add(blocks, Relaxed);
    }
    ptr
}

// SAFETY: every call is passed on to `System` with the caller's arguments unchanged, so
// `System`'s guarantees hold; the counting touches only atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract, passed on as is.
        counted(unsafe { System.alloc(layout) }, layout.size(), 1)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        counted(unsafe { System.alloc_zeroed(layout) }, layout.size(), 1)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through us) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size() as i64, Relaxed);
        LIVE_BLOCKS.fetch_sub(1, Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; `new_size` is the caller's, valid per `realloc`.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Relaxed);
        }
        new
    }
}
