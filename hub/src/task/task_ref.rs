//! [`TaskRef`]: the hub's counted reference to a task, an `Rc<dyn Task>` that points at
//! the task itself.
//!
//! An `Rc<dyn Task>` points at its allocation's counts; the task lies after them, at an
//! offset that depends on the task's alignment, which only the vtable knows. So every
//! `task.core()` through an `Rc` loads the vtable's alignment first: a dependent load on
//! the scheduler's hottest path (perf showed the loop stalling on it). A `TaskRef` holds
//! the pointer `Rc::into_raw` gives, which points at the task, whose first field is its
//! [`Core`]: reaching the `Core` is no load at all. Cloning and dropping, rarer than
//! reaching the `Core`, go through `Rc` as before.
//!
//! It is `!Send` and `!Sync` like the `Rc` it stands for (it holds a raw pointer).

use std::fmt;
use std::ops::Deref;
use std::ptr::NonNull;
use std::rc::{Rc, Weak};

use super::{Core, Task};

/// A counted reference to a task: what the run queue, wakers, timers and handles hold.
///
/// # Invariant
///
/// `ptr` came from `Rc::into_raw` of an `Rc<dyn Task>` whose strong count this `TaskRef`
/// owns one of.
pub(crate) struct TaskRef {
    ptr: NonNull<dyn Task>,
}

impl TaskRef {
    /// Takes over `rc`'s count.
    #[inline]
    pub(crate) fn new(rc: Rc<dyn Task>) -> TaskRef {
        let raw = Rc::into_raw(rc).cast_mut();
        // SAFETY: `Rc::into_raw` never returns null.
        TaskRef { ptr: unsafe { NonNull::new_unchecked(raw) } }
    }

    /// A new reference to the task at `ptr`, which a live `TaskRef` (or `Rc`) points at.
    ///
    /// # Safety
    ///
    /// `ptr` must come from [`as_ptr`] (or `Rc::into_raw`) of a reference to a task that
    /// is alive for the duration of this call; a pointer derived from a `&dyn Task` will
    /// not do, as it does not cover the counts `Rc` keeps before the task.
    ///
    /// [`as_ptr`]: TaskRef::as_ptr
    #[inline]
    pub(crate) unsafe fn clone_from_ptr(ptr: NonNull<dyn Task>) -> TaskRef {
        // SAFETY: by the caller, `ptr` is a live `Rc`'s task pointer; the increment gives
        // the new `TaskRef` its own count.
        unsafe { Rc::increment_strong_count(ptr.as_ptr().cast_const()) };
        TaskRef { ptr }
    }

    /// The task's scheduler-facing state: at the task pointer itself (see [`Task`]).
    #[inline(always)]
    pub(crate) fn core(&self) -> &Core {
        // SAFETY: by the invariant the task is alive while `self` is, and by the contract
        // of `Task` it starts with its `Core`.
        unsafe { &*self.ptr.as_ptr().cast_const().cast::<Core>() }
    }

    /// The task pointer (the `Core`'s address), for identity and [`clone_from_ptr`].
    ///
    /// [`clone_from_ptr`]: TaskRef::clone_from_ptr
    #[inline]
    pub(crate) fn as_ptr(&self) -> NonNull<dyn Task> {
        self.ptr
    }

    /// Whether both refer to the same task.
    #[inline]
    pub(crate) fn ptr_eq(a: &TaskRef, b: &TaskRef) -> bool {
        std::ptr::addr_eq(a.ptr.as_ptr(), b.ptr.as_ptr())
    }

    /// A weak reference to the task (run information keeps these).
    pub(crate) fn downgrade(&self) -> Weak<dyn Task> {
        // SAFETY: by the invariant `ptr` came from `Rc::into_raw` and `self` owns a count;
        // `ManuallyDrop` keeps that count with `self`.
        let rc = std::mem::ManuallyDrop::new(unsafe { Rc::from_raw(self.ptr.as_ptr()) });
        Rc::downgrade(&rc)
    }

    /// Gives back one strong count that something other than a `TaskRef` took and will
    /// never return (the frames of a greenlet whose stack overflowed).
    ///
    /// # Safety
    ///
    /// That count must exist, and `self` must keep the task alive past the decrement.
    pub(crate) unsafe fn release_lost_count(&self) {
        // SAFETY: guaranteed by the caller.
        unsafe { Rc::decrement_strong_count(self.ptr.as_ptr().cast_const()) };
    }
}

impl Clone for TaskRef {
    #[inline]
    fn clone(&self) -> TaskRef {
        // SAFETY: `self` is live, so its pointer is a live `Rc`'s task pointer.
        unsafe { TaskRef::clone_from_ptr(self.ptr) }
    }
}

impl Drop for TaskRef {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: by the invariant `ptr` came from `Rc::into_raw` and `self` owns one
        // count, given back here exactly once.
        drop(unsafe { Rc::from_raw(self.ptr.as_ptr().cast_const()) });
    }
}

impl Deref for TaskRef {
    type Target = dyn Task;

    #[inline]
    fn deref(&self) -> &(dyn Task + 'static) {
        // SAFETY: the task is alive while `self` is (invariant).
        unsafe { self.ptr.as_ref() }
    }
}

impl fmt::Debug for TaskRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.core(), f)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use super::TaskRef;
    use crate::error::GreenletError;
    use crate::task::{Core, Kind, StackKind, Task};

    #[repr(C)]
    struct Counted {
        core: Core,
        drops: Rc<Cell<u32>>,
    }

    // SAFETY: `Counted` is `#[repr(C)]` and `core` is its first field.
    unsafe impl Task for Counted {
        fn run(&self) {}
        fn abort(&self, _error: GreenletError) {}
    }

    impl Drop for Counted {
        fn drop(&mut self) {
            self.drops.set(self.drops.get() + 1);
        }
    }

    fn counted(id: u64, drops: &Rc<Cell<u32>>) -> Rc<dyn Task> {
        let location = std::panic::Location::caller();
        let core = Core::new(id, None, Kind::Greenlet, 0, StackKind::Guarded, location);
        Rc::new(Counted { core, drops: drops.clone() })
    }

    #[test]
    fn the_task_is_dropped_once_when_the_last_reference_goes() {
        let drops = Rc::new(Cell::new(0));
        let task = TaskRef::new(counted(7, &drops));
        let (second, weak) = (task.clone(), task.downgrade());
        // SAFETY: `task` is live and stays so during the call.
        let third = unsafe { TaskRef::clone_from_ptr(task.as_ptr()) };
        assert_eq!(task.core().id, 7);
        assert!(TaskRef::ptr_eq(&task, &third));
        drop(task);
        drop(second);
        assert_eq!(drops.get(), 0);
        assert!(weak.upgrade().is_some());
        drop(third);
        assert_eq!(drops.get(), 1);
        assert!(weak.upgrade().is_none());
    }

    #[test]
    fn references_to_different_tasks_differ() {
        let drops = Rc::new(Cell::new(0));
        let (a, b) = (TaskRef::new(counted(1, &drops)), TaskRef::new(counted(2, &drops)));
        assert!(!TaskRef::ptr_eq(&a, &b));
        assert_eq!((a.core().id, b.core().id), (1, 2));
        drop((a, b));
        assert_eq!(drops.get(), 2);
    }
}
