//! The hub's stacks subsystem: every stack a greenlet runs on comes from here and goes
//! back here, under one policy.
//!
//! * A guarded stack is taken from the free list, or mapped while the hub's `max_stacks`
//!   and the process-wide cap allow (`stack.rs`).
//! * One that comes back is kept for reuse while fewer than `max_free_stacks` wait, and
//!   unmapped otherwise.
//! * A shared-stack greenlet is bound to one of the hub's few shared stacks when it first
//!   runs and swapped in before every resume (`shared_stack.rs`).
//! * An adaptive greenlet (the default mode) takes a guarded stack when it first runs
//!   unless they are running short (`StackPool::running_short`), and is a shared-stack
//!   greenlet otherwise, for the rest of its life.
//!
//! The limits are a copy of the hub's configuration, set with [`Stacks::set_limits`]
//! whenever it changes.

use std::cell::{Cell, RefCell};
use std::io;

use crate::config::HubConfig;
use crate::shared_stack::SharedStacks;
use crate::stack::{GuardedStack, Stack, StackPool};
use crate::task::{StackKind, TaskRef};

/// The limits [`Stacks`] enforces, copied from [`HubConfig`].
#[derive(Clone, Copy)]
struct Limits {
    /// The most guarded stacks held at once (in use plus free); `None`: only the
    /// process-wide cap.
    max_stacks: Option<usize>,
    /// The most finished greenlets' stacks kept for reuse.
    max_free: usize,
    /// How many shared stacks shared-stack greenlets spread over.
    shared_count: usize,
    /// How many adaptive greenlets may hold guarded stacks at once.
    adaptive_guarded: usize,
}

/// Guarded and shared stacks of one hub.
pub(crate) struct Stacks {
    guarded: RefCell<StackPool>,
    shared: RefCell<SharedStacks>,
    limits: Cell<Limits>,
}

impl Stacks {
    pub(crate) fn new(config: &HubConfig) -> Stacks {
        let stacks = Stacks {
            guarded: RefCell::new(StackPool::new()),
            shared: RefCell::new(SharedStacks::new()),
            limits: Cell::new(Limits {
                max_stacks: None,
                max_free: 0,
                shared_count: 0,
                adaptive_guarded: 0,
            }),
        };
        stacks.set_limits(config);
        stacks
    }

    /// Applies the limits of a new configuration (to stacks taken or given back from now
    /// on).
    pub(crate) fn set_limits(&self, config: &HubConfig) {
        self.limits.set(Limits {
            max_stacks: config.max_stacks,
            max_free: config.max_free_stacks,
            shared_count: config.shared_stacks,
            adaptive_guarded: config.adaptive_guarded,
        });
    }

    /// Fails, without mapping anything, if a guarded stack of `size` could not be had now.
    pub(crate) fn check_can_take(&self, size: usize) -> io::Result<()> {
        self.guarded.borrow().check_can_take(size, self.limits.get().max_stacks)
    }

    /// A guarded stack with `size` usable bytes: a recycled one, or a new mapping within
    /// the limits.
    pub(crate) fn take(&self, size: usize) -> io::Result<GuardedStack> {
        self.guarded.borrow_mut().take(size, self.limits.get().max_stacks)
    }

    /// Takes back a guarded stack nobody runs on any more.
    pub(crate) fn give_back(&self, stack: GuardedStack) {
        self.guarded.borrow_mut().give_back(stack, self.limits.get().max_free);
    }

    /// The stack a greenlet that is about to run for the first time runs on: the one it
    /// reserved at spawn, a guarded one, or a shared one it is bound to (and made
    /// resident on); an adaptive greenlet's kind is settled here, for good. Records the
    /// guard page in its `Core` for the overflow reporter.
    pub(crate) fn attach(&self, task: &TaskRef) -> io::Result<Stack> {
        let core = task.core();
        let guarded = match core.stack_kind() {
            StackKind::Shared => None,
            StackKind::Guarded => Some(match core.take_reserved_stack() {
                Some(stack) => stack,
                None => self.take(core.stack_size())?,
            }),
            StackKind::Either => {
                let stack = self.take_adaptive(core.stack_size());
                core.settle_stack_kind(match stack {
                    Some(_) => StackKind::Guarded,
                    None => StackKind::Shared,
                });
                stack
            }
        };
        match guarded {
            Some(stack) => {
                core.guard_low.set(stack.guard().0);
                Ok(Stack::Guarded(stack))
            }
            None => self.attach_shared(task),
        }
    }

    /// For an adaptive greenlet: a guarded stack if fewer than `adaptive_guarded`
    /// greenlets hold one and they are not running short, else `None` (it goes on a
    /// shared stack).
    fn take_adaptive(&self, size: usize) -> Option<GuardedStack> {
        let limits = self.limits.get();
        let mut guarded = self.guarded.borrow_mut();
        let shared_stacks = self.shared.borrow().len();
        if guarded.in_use() - shared_stacks >= limits.adaptive_guarded {
            return None;
        }
        if let Some(stack) = guarded.take_free(size) {
            return Some(stack);
        }
        if guarded.running_short(limits.max_stacks) {
            return None;
        }
        guarded.map_new(size, limits.max_stacks).ok()
    }

    /// Binds a greenlet to a shared stack and makes it resident there.
    fn attach_shared(&self, task: &TaskRef) -> io::Result<Stack> {
        let core = task.core();
        let limits = self.limits.get();
        let mut shared = self.shared.borrow_mut();
        let index = shared.bind(
            limits.shared_count,
            core.stack_size(),
            &mut self.guarded.borrow_mut(),
            limits.max_stacks,
        )?;
        core.set_shared_index(index);
        core.guard_low.set(shared.guard(index).0);
        shared.make_resident(task);
        Ok(Stack::Shared(shared.handle(index)))
    }

    /// Takes back the stack of a greenlet whose coroutine returned.
    pub(crate) fn detach(&self, task: &TaskRef, stack: Stack) {
        match stack {
            Stack::Guarded(stack) => self.give_back(stack),
            Stack::Shared(_) => {
                let index = task.core().shared_index().expect("bound to a shared stack");
                self.shared.borrow_mut().release(index, task);
            }
        }
    }

    /// Before resuming a shared-stack greenlet: puts its frames back on its shared stack.
    #[inline]
    pub(crate) fn make_resident(&self, task: &TaskRef) {
        self.shared.borrow_mut().make_resident(task);
    }

    /// Whether code left the pools borrowed (see `Hub::end_overflowed`).
    pub(crate) fn in_use_by_code(&self) -> bool {
        self.guarded.try_borrow_mut().is_err() || self.shared.try_borrow_mut().is_err()
    }

    /// Guarded stacks in use by running or suspended greenlets.
    pub(crate) fn in_use(&self) -> usize {
        self.guarded.borrow().in_use()
    }

    /// Guarded stacks kept for reuse.
    pub(crate) fn free_count(&self) -> usize {
        self.guarded.borrow().free_count()
    }

    /// Shared stacks mapped.
    pub(crate) fn shared_count(&self) -> usize {
        self.shared.borrow().len()
    }

    /// Bytes copied between shared stacks and greenlets' heap buffers.
    pub(crate) fn shared_bytes_copied(&self) -> u64 {
        self.shared.borrow().bytes_copied
    }

    /// The hub is going away: shared stacks' occupants are abandoned (never resumed) and
    /// every free stack is unmapped.
    pub(crate) fn abandon(&self) {
        self.shared.borrow_mut().abandon();
        self.guarded.borrow_mut().release_free();
    }
}
